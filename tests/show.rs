//! `show`: one exchange in full, checked against a snapshot with the volatile parts (ports,
//! latencies, dates, request ids) normalised.

use crate::util::*;
use shadowdiff::demo::gateway::{spawn, GatewayVersion};

fn normalise(text: &str) -> String {
    let rules = [
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
        (r"\d+\.\d ms", "N ms"),
        (r"(?m)^(\s*date: ).*$", "${1}DATE"),
        (r#""request_id": ?"[0-9a-f]{16}""#, r#""request_id": "RID""#),
        (r#""served_at": ?"[^"]+""#, r#""served_at": "TIME""#),
        (r#""[0-9a-f]{16}""#, r#""RID""#),
        (r#""\d{4}-\d\d-\d\dT[0-9:.]+Z""#, r#""TIME""#),
    ];
    let mut s = text.to_string();
    for (re, to) in rules {
        s = regex::Regex::new(re)
            .unwrap()
            .replace_all(&s, to)
            .into_owned();
    }
    s
}

fn check_snapshot(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_request_recorded_response_and_both_live_diffs() {
    let v1 = spawn(GatewayVersion::V1).await.unwrap();
    let v2 = spawn(GatewayVersion::V2).await.unwrap();
    let rec = concat!(env!("CARGO_MANIFEST_DIR"), "/recordings/demo.jsonl");
    // Both versions stamp `served_at` with the time they answer, to the microsecond; now and
    // then both answer within the same one, and that line of the snapshot is missing. The
    // snapshot is of the usual case, so such a run is repeated.
    let mut attempts = 0;
    let out = loop {
        attempts += 1;
        let o = shadowdiff_async(vec![
            "show".into(),
            rec.into(),
            "--id".into(),
            "demo-000228".into(),
            "--baseline".into(),
            v1.url(),
            "--candidate".into(),
            v2.url(),
        ])
        .await;
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        if out.contains("$.served_at: ") || attempts == 5 {
            break out;
        }
    };
    assert!(!out.contains('\x1b'), "no colour when not a terminal");
    assert!(
        out.contains("-  \"price\": 9.42,") && out.contains("+  \"price\": \"9.42\","),
        "{out}"
    );
    check_snapshot("show_products.txt", &normalise(&out));
}

#[test]
fn show_unknown_id_exits_2() {
    let rec = concat!(env!("CARGO_MANIFEST_DIR"), "/recordings/demo.jsonl");
    let o = shadowdiff(&["show", rec, "--id", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no exchange with id \"nope\""),
        "{}",
        describe(&o)
    );
}

const HEADER: &str =
    "{\"shadowdiff_recording\":1,\"created\":\"2026-11-02T09:00:00Z\",\"source\":\"test\"}\n";

fn line(id: &str, second: u32) -> String {
    format!(
        "{{\"id\":\"{id}\",\"ts\":\"2026-11-02T09:00:{second:02}Z\",\"request\":{{\"method\":\"GET\",\"uri\":\"/{id}\"}}}}\n"
    )
}

#[test]
fn show_finds_what_comes_before_a_bad_line_and_skips_bad_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        [HEADER, &line("a", 0), "not json\n", &line("b", 1)].concat(),
    )
    .unwrap();
    let rec = path.to_str().unwrap();

    let o = shadowdiff(&["show", rec, "--id", "a"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("GET /a HTTP/1.1"),
        "{}",
        describe(&o)
    );

    let o = shadowdiff(&["show", rec, "--id", "b"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.jsonl:3: not valid JSON") && err.contains("--skip-bad-lines"),
        "{}",
        describe(&o)
    );

    let o = shadowdiff(&["show", rec, "--id", "b", "--skip-bad-lines"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("GET /b HTTP/1.1"),
        "{}",
        describe(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.jsonl:3: skipped"),
        "{}",
        describe(&o)
    );
}

#[test]
fn show_warns_that_a_cut_last_line_was_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trunc.jsonl");
    let cut = &line("c", 2)[..30];
    std::fs::write(&path, [HEADER, &line("a", 0), cut].concat()).unwrap();
    let o = shadowdiff(&["show", path.to_str().unwrap(), "--id", "c"]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("trunc.jsonl:3: last line is incomplete")
            && err.contains("no exchange with id \"c\""),
        "{}",
        describe(&o)
    );
}
