//! Incident replay: pick a time window, an interface, ids, a header or a tenant, and replay
//! only those; the summary says what each filter kept, and excluded exchanges are not
//! outcomes. Also the progress output: plain lines off a terminal, nothing with --quiet.

use crate::util::*;

/// 30 exchanges one second apart: users and orders, tenants acme and globex (by header),
/// one POST.
fn incident(dir: &std::path::Path) -> std::path::PathBuf {
    let mut items = Vec::new();
    for i in 0..30i64 {
        let uri = if i % 3 == 0 {
            format!("/orders/{i}")
        } else {
            format!("/users/{i}")
        };
        let mut e = get(
            &format!("ex-{i:02}"),
            &uri,
            1_800_000_000_000_000 + i * 1_000_000,
        );
        e.request.headers.push((
            "x-tenant".into(),
            ["acme", "globex"][(i % 2) as usize].into(),
        ));
        if i == 29 {
            e.request.method = "POST".into();
        }
        items.push(e);
    }
    write_recording(&dir.join("incident.jsonl"), &items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_form_a_counted_funnel() {
    let dir = tempfile::tempdir().unwrap();
    let rec = incident(dir.path());
    let server = TestServer::start(|_| Answer::json(200, r#"{"ok":true}"#)).await;
    let json = dir.path().join("r.json");
    // 2027-01-15T08:00:00Z is 1_800_000_000 s; keep seconds 5..25 (20 exchanges), users only,
    // tenant acme: even i in 5..25 that are not multiples of 3.
    let o = shadowdiff_async(vec![
        "replay".into(),
        rec.display().to_string(),
        "--baseline".into(),
        server.url(),
        "--candidate".into(),
        server.url(),
        "--tenant-header".into(),
        "X-Tenant".into(),
        "--since".into(),
        "2027-01-15T08:00:05Z".into(),
        "--until".into(),
        "2027-01-15T08:00:25Z".into(),
        "--filter".into(),
        "interface=GET /users/*".into(),
        "--filter".into(),
        "tenant=acme".into(),
        "--json".into(),
        json.display().to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    let expected: Vec<i64> = (5..25).filter(|i| i % 3 != 0 && i % 2 == 0).collect();
    assert_eq!(r["summary"]["total"], expected.len(), "{:#}", r["summary"]);
    assert_eq!(r["summary"]["identical"], expected.len());
    assert_eq!(r["run"]["exchanges_read"], 30);
    let funnel: Vec<(String, u64, u64)> = r["run"]["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["filter"].as_str().unwrap().to_string(),
                f["kept"].as_u64().unwrap(),
                f["excluded"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        funnel,
        [
            ("--since 2027-01-15T08:00:05Z".to_string(), 25, 5),
            ("--until 2027-01-15T08:00:25Z".to_string(), 20, 5),
            ("--filter interface=GET /users/*".to_string(), 13, 7),
            (
                "--filter tenant=acme".to_string(),
                expected.len() as u64,
                13 - expected.len() as u64
            ),
        ]
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let kept = expected.len();
    assert!(
        out.contains(&format!(
            "--filter tenant=acme: kept {kept} of 13 exchanges"
        )),
        "{out}"
    );
    // Not a TTY: the closing progress line, with what the filters left out.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("replayed {kept} exchanges in"))
            && err.contains(&format!(
                "{} left out by the shard split or filters",
                30 - kept
            )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_header_filters_and_quiet_means_silent() {
    let dir = tempfile::tempdir().unwrap();
    let rec = incident(dir.path());
    let server = TestServer::start(|_| Answer::json(200, "{}")).await;
    let json = dir.path().join("r.json");
    let o = shadowdiff_async(vec![
        "replay".into(),
        rec.display().to_string(),
        "--baseline".into(),
        server.url(),
        "--candidate".into(),
        server.url(),
        "--id".into(),
        "ex-03".into(),
        "--id".into(),
        "ex-04".into(),
        "--id".into(),
        "ex-29".into(),
        "--id".into(),
        "no-such-id".into(),
        "--filter".into(),
        "header:x-tenant!=globex".into(),
        "--json".into(),
        json.display().to_string(),
        "--quiet".into(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "{}",
        describe(&o)
    );
    let r = read_json(&json);
    // Of the ids found, ex-03 and ex-29 are globex (odd): only ex-04 is replayed.
    assert_eq!(r["summary"]["total"], 1, "{:#}", r["summary"]);
    assert_eq!(r["run"]["filters"][0]["filter"], "--id (4 ids)");
    assert_eq!(r["run"]["filters"][0]["kept"], 3);
    assert_eq!(r["run"]["filters"][1]["kept"], 1);
    let warnings = r["run"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w == "--id no-such-id: no exchange with this id in the recordings"),
        "{warnings:?}"
    );
}

#[test]
fn bad_filters_exit_2_saying_what_was_expected() {
    for (flag, value, expect) in [
        ("--filter", "colour=red", "unknown key \"colour\""),
        ("--since", "yesterday", "RFC 3339"),
        (
            "--filter",
            "status=teapot",
            "not a status like 404, 5xx or 4*",
        ),
    ] {
        let o = shadowdiff(&[
            "replay",
            "x.jsonl",
            "--baseline",
            "http://127.0.0.1:1",
            "--candidate",
            "http://127.0.0.1:1",
            flag,
            value,
        ]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(expect),
            "{}",
            describe(&o)
        );
    }
}
