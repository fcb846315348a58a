//! `shadowdiff interfaces`: the inventory of a capture and the rules check that names the
//! rare interface a rule list built from monitoring forgot, without replaying anything.

use crate::util::*;

fn with_tenant(
    mut e: shadowdiff::exchange::Exchange,
    tenant: &str,
) -> shadowdiff::exchange::Exchange {
    e.request.headers.push(("x-tenant".into(), tenant.into()));
    e
}

fn capture(dir: &std::path::Path) -> std::path::PathBuf {
    let mut items = Vec::new();
    for i in 0..40 {
        let tenant = ["acme", "globex"][i % 2];
        items.push(with_tenant(
            get(
                &format!("u{i}"),
                &format!("/api/users/{i}"),
                1_000_000 + i as i64 * 1_000,
            ),
            tenant,
        ));
        items.push(with_tenant(
            get(
                &format!("s{i}"),
                "/api/search?q=x",
                1_000_500 + i as i64 * 1_000,
            ),
            "acme",
        ));
    }
    // Called once in the whole capture.
    items.push(with_tenant(
        get(
            "rare-1",
            "/api/reports/annual-export?year=2025",
            9_000_000_000,
        ),
        "initech",
    ));
    write_recording(&dir.join("cap.jsonl"), &items)
}

#[test]
fn rules_check_names_the_rare_interface_and_unused_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rec = capture(dir.path());
    let rules = dir.path().join("rules.txt");
    std::fs::write(
        &rules,
        "# routes of the new gateway\nGET /api/users/*\nGET /api/search   # the busy one\n\nGET /api/legacy/*\n",
    )
    .unwrap();
    let o = shadowdiff(&[
        "interfaces",
        rec.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--tenant-header",
        "X-Tenant",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "an uncovered interface fails: {}",
        describe(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let uncovered = out
        .split("NOT COVERED")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", describe(&o)));
    assert!(
        uncovered
            .contains("GET /api/reports/annual-export  1 exchange, last seen 1970-01-01T02:30:00Z"),
        "{out}"
    );
    assert!(!uncovered.contains("GET /api/users/{id}  "), "{out}");
    assert!(
        out.contains(&format!("{}:5: GET /api/legacy/*", rules.display())),
        "{out}"
    );
    // The table: counts, first and last seen, tenants.
    let users = out
        .lines()
        .find(|l| l.starts_with("GET /api/users/{id}"))
        .unwrap();
    assert!(
        users.contains(" 40 ") && users.contains("acme, globex"),
        "{users}"
    );
    assert!(out.contains("3 interfaces in 81 exchanges."), "{out}");

    // JSON for scripts.
    let o = shadowdiff(&[
        "interfaces",
        rec.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--json",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["exchanges"], 81);
    assert_eq!(
        v["rules"]["uncovered"][0]["interface"],
        "GET /api/reports/annual-export"
    );
    assert_eq!(v["rules"]["unused"][0]["pattern"], "GET /api/legacy/*");
    assert_eq!(v["rules"]["rules"][0]["exchanges"], 40);
}

#[test]
fn full_coverage_exits_0_and_inventory_alone_lists_everything() {
    let dir = tempfile::tempdir().unwrap();
    let rec = capture(dir.path());
    let rules = dir.path().join("rules.txt");
    std::fs::write(&rules, "GET /api/*\n").unwrap();
    let o = shadowdiff(&[
        "interfaces",
        rec.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Every interface is covered"));
    let o = shadowdiff(&["interfaces", rec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // Most used first; the rare one last.
    let names: Vec<&str> = out
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split("  ").next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "GET /api/search",
            "GET /api/users/{id}",
            "GET /api/reports/annual-export"
        ]
    );
    let o = shadowdiff(&["interfaces", "/nonexistent.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

#[test]
fn the_demo_capture_names_its_rare_interface() {
    let rec = concat!(env!("CARGO_MANIFEST_DIR"), "/recordings/demo.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.txt");
    // The rule list "from one month of monitoring": everything but the annual export.
    std::fs::write(
        &rules,
        "GET /api/products\nGET /api/products/*\nGET /api/search\nGET /api/users/*\nGET /api/cart/*\n\
         GET /api/recommendations/*\nGET /api/inventory/*\nGET /api/stores/*\nGET /api/exchange-rates\n\
         GET /api/config/features\nPOST /api/orders\n",
    )
    .unwrap();
    let o = shadowdiff(&["interfaces", rec, "--rules", rules.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let uncovered = not_covered(&out);
    assert_eq!(uncovered.len(), 1, "{out}");
    assert!(
        uncovered[0]
            .trim_start()
            .starts_with("GET /api/reports/annual-export"),
        "{out}"
    );
}

/// A JSON-RPC style call: every interface is a POST.
fn rpc(id: &str, path: &str, ts_us: i64) -> shadowdiff::exchange::Exchange {
    let mut e = get(id, path, ts_us);
    e.request.method = "POST".into();
    e.request
        .headers
        .push(("content-type".into(), "application/json".into()));
    e.request.body = bytes::Bytes::from_static(b"{}");
    e
}

#[test]
fn a_haproxy_allow_list_is_read_as_paths_and_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let mut items = Vec::new();
    for i in 0..5 {
        items.push(rpc(&format!("g{i}"), "/rpc/catalog/GetItem", 1_000_000 + i));
    }
    for i in 0..3 {
        items.push(rpc(&format!("o{i}"), "/rpc/orders/Create", 2_000_000 + i));
    }
    items.push(rpc("o-id", "/rpc/orders/123/Cancel", 2_500_000));
    // A bare path covers every method, not only the POSTs.
    items.push(get("g-get", "/rpc/catalog/GetItem", 2_600_000));
    // Called once: the allow-list forgot it.
    items.push(rpc("refund", "/rpc/billing/Refund", 3_000_000));
    let rec = write_recording(&dir.path().join("cap.jsonl"), &items);
    let rules = dir.path().join("allowed.lst");
    std::fs::write(
        &rules,
        "# acl allowed path -f allowed.lst / path_beg -f prefixes.lst\n\
         /rpc/catalog/GetItem\n/rpc/orders/\n\n/rpc/legacy/Ping\n/rpc/archive/   # retired\n",
    )
    .unwrap();
    let o = shadowdiff(&[
        "interfaces",
        rec.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let uncovered = not_covered(&out);
    assert_eq!(uncovered.len(), 1, "{out}");
    assert!(
        uncovered[0]
            .trim_start()
            .starts_with("POST /rpc/billing/Refund  1 exchange"),
        "{out}"
    );
    let file = rules.display();
    assert!(
        out.contains(&format!("  {file}:5: /rpc/legacy/Ping\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("  {file}:6: /rpc/archive/ (prefix)\n")),
        "{out}"
    );

    let o = shadowdiff(&[
        "interfaces",
        rec.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--json",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["rules"]["rules"];
    assert_eq!(
        (&r[0]["pattern"], &r[0]["form"], &r[0]["exchanges"]),
        (
            &serde_json::json!("/rpc/catalog/GetItem"),
            &serde_json::json!("path"),
            &serde_json::json!(6)
        )
    );
    // `/rpc/orders/Create` and the templated `/rpc/orders/{id}/Cancel`.
    assert_eq!(
        (&r[1]["form"], &r[1]["exchanges"]),
        (&serde_json::json!("path_prefix"), &serde_json::json!(4))
    );
    assert_eq!(v["rules"]["unused"].as_array().map(Vec::len), Some(2));
}

#[test]
fn an_unreadable_rule_line_exits_2_naming_the_line_and_the_forms() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(
        &dir.path().join("cap.jsonl"),
        &[rpc("a", "/rpc/catalog/GetItem", 1_000_000)],
    );
    for (text, at, bad) in [
        ("/rpc/catalog/GetItem\nGETT /x\n", 2, "\"GETT /x\""),
        ("# prefixes\nrpc/foo\n", 2, "\"rpc/foo\""),
    ] {
        let rules = dir.path().join("allowed.lst");
        std::fs::write(&rules, text).unwrap();
        let o = shadowdiff(&[
            "interfaces",
            rec.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "{}:{at}: cannot read the rule {bad}",
                rules.display()
            )),
            "{err}"
        );
        assert!(
            err.contains("`METHOD /path-glob`") && err.contains("or a bare path"),
            "{err}"
        );
        assert!(o.stdout.is_empty(), "{}", describe(&o));
    }
}

/// The lines of the text report's NOT COVERED list; a report without one fails the test.
fn not_covered(out: &str) -> Vec<&str> {
    out.split("NOT COVERED")
        .nth(1)
        .unwrap_or_else(|| panic!("no NOT COVERED list in:\n{out}"))
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect()
}

/// A column is as wide as its longest cell, and an interface name is as long as the request
/// target: past 65,535 characters Rust's formatter refuses the width and panicked.
#[test]
fn an_interface_name_longer_than_any_column_width_is_listed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("/{}", "z".repeat(65_532));
    let rec = write_recording(
        &dir.path().join("cap.jsonl"),
        &[
            get("a", "/api/users/1", 1_000_000),
            get("b", &long, 2_000_000),
        ],
    );
    let rules = dir.path().join("rules.txt");
    std::fs::write(&rules, "GET /api/users/*\n").unwrap();
    let rec = rec.to_str().unwrap();
    let o = shadowdiff(&["interfaces", rec]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("GET {long}  ")), "{}", describe(&o));
    let o = shadowdiff(&["interfaces", rec, "--rules", rules.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let uncovered = not_covered(&out);
    assert_eq!(uncovered.len(), 1, "{uncovered:?}");
    assert!(
        uncovered[0].starts_with(&format!("  GET {long}  1 exchange, last seen")),
        "{}",
        uncovered[0].chars().take(200).collect::<String>()
    );
}
