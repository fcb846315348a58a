//! The demo flags exactly the three interfaces version 2 broke; the bundled recording
//! replayed A/A against one version reports nothing.

use crate::util::*;
use shadowdiff::demo::gateway::{spawn, GatewayVersion};

fn flagged(r: &serde_json::Value) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for i in r["interfaces"].as_array().unwrap() {
        let name = i["interface"].as_str().unwrap().to_string();
        if i["missing_rule"] != 0 {
            out.push((name.clone(), "missing_rule"));
        }
        if i["different"] != 0 {
            out.push((name.clone(), "different"));
        }
        if i["latency"]["regression"] == true {
            out.push((name.clone(), "latency"));
        }
        if i["candidate_error"] != 0 || i["baseline_error"] != 0 {
            out.push((name, "error"));
        }
    }
    out
}

#[test]
fn demo_flags_exactly_the_three_broken_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    // Run from another directory: the recording is compiled into the binary.
    let o = std::process::Command::new(bin())
        .arg("demo")
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&dir.path().join("demo-report.json"));
    assert_counts_consistent(&r);
    assert_eq!(r["verdict"], "fail");
    let mut f = flagged(&r);
    f.sort();
    assert_eq!(
        f,
        [
            ("GET /api/products/{id}".to_string(), "different"),
            ("GET /api/reports/annual-export".to_string(), "missing_rule"),
            ("GET /api/search".to_string(), "latency"),
        ]
    );
    assert!(r["summary"]["total"].as_u64().unwrap() >= 500);
    assert!(r["summary"]["interfaces"].as_u64().unwrap() >= 12);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.trim_start().starts_with("FAIL"), "{}", describe(&o));
}

#[test]
fn demo_json_to_standard_output_is_only_the_json() {
    let o = shadowdiff(&["demo", "--json", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", describe(&o)));
    assert_eq!(r["verdict"], "fail");
    assert_counts_consistent(&r);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("wrote -"),
        "{}",
        describe(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_recording_a_a_reports_nothing() {
    let gw = spawn(GatewayVersion::V1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let rec = concat!(env!("CARGO_MANIFEST_DIR"), "/recordings/demo.jsonl");
    let o = shadowdiff_async(vec![
        "replay".into(),
        rec.into(),
        "--baseline".into(),
        gw.url(),
        "--candidate".into(),
        gw.url(),
        "--json".into(),
        json.display().to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(flagged(&r), Vec::<(String, &str)>::new());
    assert_eq!(r["summary"]["latency_regressions"], 0);
    assert!(
        r["summary"]["noise_only"].as_u64().unwrap() > 0,
        "served_at/request_id are noise"
    );
}

#[test]
fn demo_writes_every_report_replay_writes_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin())
        .args([
            "demo",
            "--html",
            "d.html",
            "--junit",
            "d.xml",
            "--markdown",
            "d.md",
            "--diffs",
            "d.jsonl",
        ])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let html = std::fs::read_to_string(dir.path().join("d.html")).unwrap();
    assert!(
        html.contains("GET /api/reports/annual-export"),
        "{html:.300}"
    );
    let junit = std::fs::read_to_string(dir.path().join("d.xml")).unwrap();
    assert!(junit.contains("<testsuite"), "{junit:.300}");
    let md = std::fs::read_to_string(dir.path().join("d.md")).unwrap();
    assert!(md.contains("FAIL"), "{md:.300}");
    let diffs = std::fs::read_to_string(dir.path().join("d.jsonl")).unwrap();
    assert!(
        diffs.lines().count() >= 95,
        "{} diff lines",
        diffs.lines().count()
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let wrote = err
        .lines()
        .find(|l| l.starts_with("wrote "))
        .unwrap_or_else(|| panic!("no 'wrote' line: {err}"));
    for name in ["d.jsonl", "demo-report.json", "d.html", "d.xml", "d.md"] {
        assert!(wrote.contains(name), "{wrote}");
    }

    // Rendering the saved result again says what it wrote too; with -q it says nothing.
    let o = std::process::Command::new(bin())
        .args(["report", "demo-report.json", "--html", "again.html"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "wrote again.html"
    );
    assert!(dir.path().join("again.html").exists());
    let o = std::process::Command::new(bin())
        .args(["report", "-q", "demo-report.json", "--html", "again.html"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        (o.status.code(), o.stderr.len()),
        (Some(1), 0),
        "{}",
        describe(&o)
    );
}
