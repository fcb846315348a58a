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
    let uncovered: Vec<&str> = out
        .split("NOT COVERED")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(uncovered.len(), 1, "{out}");
    assert!(
        uncovered[0]
            .trim_start()
            .starts_with("GET /api/reports/annual-export"),
        "{out}"
    );
}
