//! Against nginx, a third-party gateway: a new config that lost one `location` gives
//! `missing_rule` for exactly that interface, a changed `return` body gives the field path,
//! and nginx's `$msec` / `$request_id` in bodies are noise, not differences.

use crate::util::*;

const USERS: &str = r#"    location ~ ^/api/users/(\d+)$ { return 200 '{"id":$1,"name":"user $1","t":$msec,"rid":"$request_id"}'; }"#;
const LEGACY: &str =
    r#"    location = /api/legacy/export { return 200 '{"rows":[1,2,3],"rid":"$request_id"}'; }"#;
const NOT_FOUND: &str = r#"    location / { return 404 '{"error":"no route"}'; }"#;

fn prices(price: &str) -> String {
    format!(
        r#"    location ~ ^/api/prices/(\d+)$ {{ return 200 '{{"sku":$1,"price":{price},"currency":"EUR","at":"$time_iso8601"}}'; }}"#
    )
}

fn recording(dir: &std::path::Path) -> std::path::PathBuf {
    let mut items = Vec::new();
    for i in 0..30 {
        items.push(get(
            &format!("u{i}"),
            &format!("/api/users/{}", 1000 + i),
            i * 1000,
        ));
        items.push(get(
            &format!("p{i}"),
            &format!("/api/prices/{}", 77 + i),
            i * 1000 + 1,
        ));
    }
    items.push(get("rare-1", "/api/legacy/export", 99_000));
    write_recording(&dir.join("nginx.jsonl"), &items)
}

#[test]
fn nginx_missing_location_changed_body_and_noise() {
    let Some(bin) = nginx_binary() else { return };
    let old = Nginx::start(
        &bin,
        &[USERS, LEGACY, &prices("10.5"), NOT_FOUND].join("\n"),
    );
    let new = Nginx::start(&bin, &[USERS, &prices("11.0"), NOT_FOUND].join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path());
    let json = dir.path().join("r.json");
    let o = shadowdiff(&[
        "replay",
        rec.to_str().unwrap(),
        "--baseline",
        &old.url(),
        "--candidate",
        &new.url(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["total"], 61);
    assert_eq!(r["summary"]["missing_rule"], 1);
    assert_eq!(interface(&r, "GET /api/legacy/export")["missing_rule"], 1);

    let users = interface(&r, "GET /api/users/{id}");
    assert_eq!(users["different"], 0, "{users:#}");
    assert_eq!(users["noise_only"], 30);
    for f in users["fields"].as_array().unwrap() {
        assert_eq!(f["regression"], false, "{f:#}");
    }
    let paths: Vec<&str> = users["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"$.rid"), "{paths:?}");

    let p = interface(&r, "GET /api/prices/{id}");
    assert_eq!(p["different"], 30);
    let regressions: Vec<&str> = p["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["regression"] == true)
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(regressions, ["$.price"]);

    let flagged: Vec<&str> = r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["missing_rule"] != 0 || i["different"] != 0 || i["latency"]["regression"] == true
        })
        .map(|i| i["interface"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, ["GET /api/legacy/export", "GET /api/prices/{id}"]);
}

#[test]
fn nginx_a_a_run_passes() {
    let Some(bin) = nginx_binary() else { return };
    let gw = Nginx::start(
        &bin,
        &[USERS, LEGACY, &prices("10.5"), NOT_FOUND].join("\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path());
    let json = dir.path().join("r.json");
    let o = shadowdiff(&[
        "replay",
        rec.to_str().unwrap(),
        "--baseline",
        &gw.url(),
        "--candidate",
        &gw.url(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    let s = &r["summary"];
    assert_eq!(
        (s["different"].as_u64(), s["missing_rule"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(s["latency_regressions"], 0);
    assert_eq!(r["verdict"], "pass");
}

/// Replay keeps its own kept-alive connections per worker: connections nginx closes, with
/// `connection: close` after `keepalive_requests` or silently after `keepalive_timeout`,
/// must be replaced, never turned into errors.
#[test]
fn connections_nginx_closes_are_replaced_without_errors() {
    let Some(bin) = nginx_binary() else { return };
    // Without USERS' millisecond clock: whether baseline and candidate answer in the same
    // millisecond is chance, and six paced exchanges are too few for the noise probe to
    // settle it; this test is about connections. The request id still differs every call.
    let users = r#"    location ~ ^/api/users/(\d+)$ { return 200 '{"id":$1,"name":"user $1","rid":"$request_id"}'; }"#;
    let body =
        format!("    keepalive_requests 3;\n    keepalive_timeout 100ms;\n{users}\n{NOT_FOUND}");
    let old = Nginx::start(&bin, &body);
    let new = Nginx::start(&bin, &body);
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<_> = (0..60)
        .map(|i| get(&format!("u{i}"), &format!("/api/users/{i}"), i * 1000))
        .collect();
    let rec = write_recording(&dir.path().join("ka.jsonl"), &items);
    let paced = write_recording(&dir.path().join("paced.jsonl"), &items[..6]);
    let (old_url, new_url) = (old.url(), new.url());
    // Closed loop (closes after every third request) and paced 200 ms apart (every
    // connection has gone idle past nginx's timeout before it is used again).
    for (rec, extra, n) in [
        (&rec, vec!["--concurrency", "4"], 60),
        (&paced, vec!["--rate", "5", "--concurrency", "1"], 6),
    ] {
        let json = dir.path().join("r.json");
        let mut args = vec![
            "replay",
            rec.to_str().unwrap(),
            "--baseline",
            &old_url,
            "--candidate",
            &new_url,
            "--json",
            json.to_str().unwrap(),
        ];
        args.extend(extra.iter());
        let o = shadowdiff(&args);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", describe(&o));
        let r = read_json(&json);
        let s = &r["summary"];
        assert_eq!(s["total"], n, "{extra:?}");
        assert_eq!(
            s["identical"].as_u64().unwrap() + s["noise_only"].as_u64().unwrap(),
            n,
            "{extra:?}: {s:#}"
        );
        assert_eq!(
            (s["baseline_error"].as_u64(), s["candidate_error"].as_u64()),
            (Some(0), Some(0))
        );
    }
}
