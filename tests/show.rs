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

/// Retitles the terminal window and clears the screen when printed raw.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_control_characters_reach_neither_show_nor_the_replay_report_raw() {
    let dir = tempfile::tempdir().unwrap();
    let mut ex = get("evil-1", "/page", 1);
    // A request no target would take: shown, never sent.
    let mut unsendable = get("evil-2", "/page", 2);
    unsendable
        .request
        .headers
        .push(("x-note".into(), format!("hi{HOSTILE}")));
    ex.response = Some(shadowdiff::exchange::Response {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/plain".into()),
            ("x-evil".into(), format!("{HOSTILE}\r\nx-forged: 1")),
        ],
        trailers: None,
        body: format!("same\n{HOSTILE}recorded\n").into(),
        body_truncated: false,
    });
    let rec = write_recording(&dir.path().join("evil.jsonl"), &[ex, unsendable]);
    let text = |version: &'static str| {
        move |_: Seen| Answer {
            status: 200,
            headers: vec![("content-type", "text/plain".into())],
            body: format!("same\n{HOSTILE}{version}\n"),
        }
    };
    let old = TestServer::start(text("old")).await;
    let new = TestServer::start(text("new")).await;
    let check = |what: &str, o: &std::process::Output| {
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(!out.contains('\u{1b}'), "{what}: {}", describe(o));
        assert!(out.contains("␛]0;pwned␇␛[2J"), "{what}: {}", describe(o));
    };

    let o = shadowdiff_async(vec![
        "show".into(),
        rec.display().to_string(),
        "--id".into(),
        "evil-1".into(),
        "--baseline".into(),
        old.url(),
        "--candidate".into(),
        new.url(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    check("show", &o);
    let out = String::from_utf8_lossy(&o.stdout);
    // A header value stays on its line; the body diff shows both live lines.
    assert!(
        out.contains("  x-evil: ␛]0;pwned␇␛[2J␍␊x-forged: 1\n"),
        "{out}"
    );
    assert!(
        out.contains("-␛]0;pwned␇␛[2Jold") && out.contains("+␛]0;pwned␇␛[2Jnew"),
        "{out}"
    );
    let o = shadowdiff(&["show", &rec.display().to_string(), "--id", "evil-2"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    check("show without targets", &o);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("  x-note: hi␛]0;pwned␇␛[2J\n"),
        "{}",
        describe(&o)
    );

    let json = dir.path().join("r.json");
    let (o, _) = replay_json(&rec, &old.url(), &new.url(), &json, &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    check("replay", &o);
}
