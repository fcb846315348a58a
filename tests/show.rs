//! `show`: one exchange in full, checked against a snapshot with the volatile parts (ports,
//! latencies, dates, request ids) normalised.

use crate::util::*;
use shadowdiff::demo::gateway::{spawn, GatewayVersion};

/// The output with ports, timings and dates made stable. Each distinct request id and time
/// gets a numbered stand-in of its own (`RID-1`, `TIME-2`), so a snapshot still shows which
/// values differ and which are the same.
fn normalise(text: &str) -> String {
    let rules = [
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
        (r"\d+\.\d ms", "N ms"),
        (r"(?m)^(\s*date: ).*$", "${1}DATE"),
    ];
    let mut s = text.to_string();
    for (re, to) in rules {
        s = regex::Regex::new(re)
            .unwrap()
            .replace_all(&s, to)
            .into_owned();
    }
    for (re, stand_in) in [
        (r#""[0-9a-f]{16}""#, "RID"),
        (r#""\d{4}-\d\d-\d\dT[0-9:.]+Z""#, "TIME"),
    ] {
        let mut seen: Vec<String> = Vec::new();
        s = regex::Regex::new(re)
            .unwrap()
            .replace_all(&s, |c: &regex::Captures| {
                let value = c[0].to_string();
                let n = match seen.iter().position(|v| *v == value) {
                    Some(i) => i + 1,
                    None => {
                        seen.push(value);
                        seen.len()
                    }
                };
                format!("\"{stand_in}-{n}\"")
            })
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

/// What a test server saw of one request.
#[derive(Clone, Debug)]
struct Got {
    method: String,
    path_and_query: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<Got>>>;

/// A shop version: the price (a number, or a string on the broken candidate), a request id
/// new on every call, the moment it answered, and a stock count. Every request is logged.
fn shop(
    price_as_string: bool,
    stock: u32,
    log: Log,
) -> impl Fn(Seen) -> Answer + Send + Sync + 'static {
    move |s: Seen| {
        // Counted across every server of the process: no two answers share an id.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        log.lock().unwrap().push(Got {
            method: s.method.clone(),
            path_and_query: s.path_and_query.clone(),
            headers: s.headers.clone(),
            body: s.body.to_vec(),
        });
        let price = if price_as_string { "\"12.50\"" } else { "12.5" };
        // Two servers may answer within the same microsecond: every answer's time is kept
        // strictly later than the one before, so `$.at` always differs and is judged.
        static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        let now = shadowdiff::recording::format::now_us();
        let prev = LAST
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |last| Some(now.max(last + 1)),
            )
            .unwrap_or(now);
        let at = shadowdiff::recording::format::format_ts_us(now.max(prev + 1));
        Answer::json(
            200,
            format!(r#"{{"price":{price},"rid":"r-{n}","at":"{at}","stock":{stock}}}"#),
        )
    }
}

fn log() -> Log {
    Log::default()
}

/// An exchange `id` for `method uri` whose recorded answer is `answer`.
fn recorded(id: &str, method: &str, uri: &str, answer: &str) -> shadowdiff::exchange::Exchange {
    let mut ex = get(id, uri, 1_000);
    ex.request.method = method.into();
    ex.response = Some(shadowdiff::exchange::Response {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        trailers: None,
        body: answer.to_string().into(),
        body_truncated: false,
    });
    ex
}

async fn show_out(args: Vec<String>) -> String {
    let o = shadowdiff_async(args).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// The mark `show` printed for `path`: the first word(s) of its line.
fn mark_of<'a>(out: &'a str, path: &str) -> &'a str {
    let line = out
        .lines()
        .find(|l| l.contains(&format!("  {path}: ")))
        .unwrap_or_else(|| panic!("no line for {path} in:\n{out}"));
    line.trim_start()
        .split("  ")
        .next()
        .unwrap_or_default()
        .trim()
}

const RECORDED: &str = r#"{"price":12.5,"rid":"r-recorded","at":"2026-11-02T09:00:00Z","stock":3}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_marks_each_difference_as_a_replay_of_the_exchange_marks_it() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(
        &dir.path().join("shop.jsonl"),
        &[recorded("p1", "GET", "/products/7", RECORDED)],
    );
    let (old_log, new_log) = (log(), log());
    let old = TestServer::start(shop(false, 5, old_log.clone())).await;
    let new = TestServer::start(shop(true, 5, new_log.clone())).await;
    let rec_arg = rec.display().to_string();
    let out = show_out(vec![
        "show".into(),
        rec_arg.clone(),
        "p1".into(),
        "--baseline".into(),
        old.url(),
        "--candidate".into(),
        new.url(),
    ])
    .await;
    // The baseline is asked twice (a GET may be repeated) and the candidate gets the twin
    // request, as in a replay.
    assert_eq!(old_log.lock().unwrap().len(), 2, "{out}");
    assert_eq!(new_log.lock().unwrap().len(), 2, "{out}");
    assert!(
        out.contains("noise sample  the baseline asked twice: 200  "),
        "{out}"
    );
    assert!(out.contains("outcome: different\n"), "{out}");
    assert_eq!(mark_of(&out, "$.price"), "regression", "{out}");
    assert_eq!(mark_of(&out, "$.rid"), "noise", "{out}");
    assert_eq!(mark_of(&out, "$.at"), "within tolerance", "{out}");
    assert!(
        out.contains("(differs between the baseline's two answers too)"),
        "{out}"
    );

    // The replay's own verdict on the same exchange, from its --diffs line, is the same.
    let diffs = dir.path().join("diffs.jsonl");
    let o = replay_run(
        &rec,
        &old.url(),
        &new.url(),
        &[&"--diffs", &diffs.display()],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&diffs).unwrap().trim()).unwrap();
    assert_eq!(line["outcome"], "different");
    for d in line["differences"].as_array().unwrap() {
        let path = d["path"].as_str().unwrap();
        let replay_mark = match (d["noise"].as_bool(), d["why"].as_str()) {
            (Some(false), _) => "regression",
            (_, Some("time_tolerance")) => "within tolerance",
            _ => "noise",
        };
        assert_eq!(mark_of(&out, path), replay_mark, "{path}: {line:#}\n{out}");
    }
    assert_eq!(line["differences"].as_array().unwrap().len(), 3, "{line:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_takes_the_recorded_answer_as_noise_where_a_request_is_not_asked_twice() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(
        &dir.path().join("orders.jsonl"),
        &[recorded("o1", "POST", "/orders/lookup", RECORDED)],
    );
    let (old_log, new_log) = (log(), log());
    let old = TestServer::start(shop(false, 3, old_log.clone())).await;
    let new = TestServer::start(shop(true, 3, new_log.clone())).await;
    let base = vec![
        "show".to_string(),
        rec.display().to_string(),
        "o1".into(),
        "--baseline".into(),
        old.url(),
        "--candidate".into(),
        new.url(),
    ];
    let out = show_out(base.clone()).await;
    // A POST may change state: sent once to each, the recorded answer is the other answer.
    assert_eq!(old_log.lock().unwrap().len(), 1, "{out}");
    assert_eq!(new_log.lock().unwrap().len(), 1, "{out}");
    assert!(
        out.contains("noise sample  the recording (its answer from capture time)\n"),
        "{out}"
    );
    assert_eq!(mark_of(&out, "$.price"), "regression", "{out}");
    assert_eq!(mark_of(&out, "$.rid"), "noise", "{out}");
    assert!(
        out.contains("(differs between the baseline's and the recorded answer too)"),
        "{out}"
    );

    // Declared a read, it is asked twice like a GET.
    let mut safe = base.clone();
    safe.extend(["--safe".to_string(), "POST /orders/*".to_string()]);
    let out = show_out(safe).await;
    assert_eq!(old_log.lock().unwrap().len(), 3, "{out}");
    assert!(
        out.contains("noise sample  the baseline asked twice: 200"),
        "{out}"
    );
    assert_eq!(mark_of(&out, "$.rid"), "noise", "{out}");

    // Without a recorded answer and not asked twice, nothing measures noise: the request id
    // counts, and show says why.
    let bare = write_recording(
        &dir.path().join("bare.jsonl"),
        &[{
            let mut ex = get("o2", "/orders/lookup", 1);
            ex.request.method = "POST".into();
            ex
        }],
    );
    let mut no_sample = base.clone();
    no_sample[1] = bare.display().to_string();
    no_sample[2] = "o2".into();
    let out = show_out(no_sample).await;
    assert!(
        out.contains(
            "noise sample  none: POST /orders/lookup may change state and is not asked twice \
             (declare a read with --safe or [side_effects] safe); the recording holds no \
             answer; every difference counts"
        ),
        "{out}"
    );
    assert_eq!(mark_of(&out, "$.rid"), "regression", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_with_a_baseline_alone_compares_its_live_answer_with_the_recorded_one() {
    let dir = tempfile::tempdir().unwrap();
    let recorded_answer = r#"{"price":12.5,"rid":"r-recorded","stock":3}"#;
    let rec = write_recording(
        &dir.path().join("shop.jsonl"),
        &[recorded("p1", "GET", "/products/7", recorded_answer)],
    );
    let old_log = log();
    let old = TestServer::start(move |s: Seen| {
        let answer = shop(false, 5, old_log.clone())(s);
        // Without the time: this test is about drift since capture.
        let mut v: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        v.as_object_mut().unwrap().remove("at");
        Answer::json(200, v.to_string())
    })
    .await;
    let out = show_out(vec![
        "show".into(),
        rec.display().to_string(),
        "p1".into(),
        "--baseline".into(),
        old.url(),
    ])
    .await;
    assert!(!out.contains("candidate"), "{out}");
    assert!(
        out.contains("noise sample  the baseline asked twice: 200"),
        "{out}"
    );
    assert!(out.contains("differences (recorded → live):"), "{out}");
    // The stock drifted since capture; the request id differs on every call.
    assert_eq!(mark_of(&out, "$.stock"), "changed", "{out}");
    assert!(out.contains("  $.stock: 3 → 5\n"), "{out}");
    assert_eq!(mark_of(&out, "$.rid"), "noise", "{out}");
    assert!(!out.contains("$.price"), "{out}");
    assert!(
        out.contains("--- recorded body\n+++ baseline body"),
        "{out}"
    );
}

#[test]
fn show_takes_the_id_after_several_recordings_or_with_id() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_recording(&dir.path().join("a.jsonl"), &[get("a1", "/a", 1)]);
    let b = write_recording(&dir.path().join("b.jsonl"), &[get("b1", "/b", 2)]);
    let (a, b) = (a.display().to_string(), b.display().to_string());
    for args in [
        vec!["show", &a, &b, "b1"],
        vec!["show", &a, &b, "--id", "b1"],
        vec!["show", "--id", "b1", &a, &b],
    ] {
        let o = shadowdiff(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("GET /b HTTP/1.1"),
            "{args:?}: {}",
            describe(&o)
        );
    }
    for (args, says) in [
        (
            vec!["show", &a],
            "expected the exchange id after the recordings",
        ),
        (
            vec!["show", &a, &b],
            "b.jsonl is a file; expected the exchange id",
        ),
    ] {
        let o = shadowdiff(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{args:?}: {}",
            describe(&o)
        );
    }
    let help = shadowdiff(&["show", "--help"]);
    assert!(
        String::from_utf8_lossy(&help.stdout)
            .contains("shadowdiff show [OPTIONS] <RECORDING>... <ID>"),
        "{}",
        describe(&help)
    );
}

/// The command lines under the heading `heading` in show's output.
fn commands_under(out: &str, heading: &str) -> Vec<String> {
    out.split("\n\n")
        .find(|block| block.starts_with(heading))
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{out}"))
        .lines()
        .skip(1)
        .map(|l| l.trim_start().to_string())
        .collect()
}

/// Runs `script` with bash in `dir`, `TARGET` set to `target`, off the runtime.
async fn bash(
    bash: &std::path::Path,
    script: String,
    dir: &std::path::Path,
    target: String,
) -> std::process::Output {
    let (bash, dir) = (bash.to_path_buf(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(bash)
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("TARGET", target)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_command_show_prints_sends_the_same_request_to_a_real_server() {
    let (Some(_curl), Some(sh)) = (
        required_tool(
            &["/usr/bin/curl", "/usr/local/bin/curl"],
            "SHADOWDIFF_REQUIRE_CURL",
            "curl",
        ),
        required_tool(
            &["/bin/bash", "/usr/bin/bash"],
            "SHADOWDIFF_REQUIRE_CURL",
            "bash",
        ),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = shadowdiff::recording::format::redact_value(b"Bearer s3cret");
    let text_body = "{\"note\":\"it's here\\nand there\",\"n\":1}\n";
    let binary_body: Vec<u8> = (0..5000u32).map(|i| (i % 256) as u8).collect();
    let mut post = get("post-1", "/api/notes?tag=a%20b&x[1]={y}", 1);
    post.request.method = "POST".into();
    post.request.headers.extend([
        ("content-type".to_string(), "application/json".to_string()),
        ("x-trace".to_string(), "t-1".to_string()),
        ("authorization".to_string(), secret.clone()),
        ("content-length".to_string(), "999".to_string()),
        ("connection".to_string(), "keep-alive".to_string()),
    ]);
    post.request.body = text_body.as_bytes().to_vec().into();
    let mut put = get("put-bin", "/upload/blob", 2);
    put.request.method = "PUT".into();
    put.request
        .headers
        .push(("content-type".into(), "application/octet-stream".into()));
    put.request.body = binary_body.clone().into();
    let rec = write_recording(&dir.path().join("sent.jsonl"), &[post.clone(), put.clone()]);
    let rec_arg = rec.display().to_string();
    let seen = log();
    let server = TestServer::start(shop(false, 1, seen.clone())).await;

    // No target named: the command goes to $TARGET.
    let out = show_out(vec!["show".into(), rec_arg.clone(), "post-1".into()]).await;
    let cmds = commands_under(&out, "re-send (set TARGET");
    assert_eq!(
        cmds[0],
        "# redacted at capture (header authorization): the command sends the redaction; put \
         the real values in",
        "{out}"
    );
    assert!(
        cmds[1].starts_with("curl ") && cmds[1].contains("--data-binary $'"),
        "{out}"
    );
    let o = bash(&sh, cmds.join("\n"), dir.path(), server.url()).await;
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("HTTP/1.1 200"),
        "{}",
        describe(&o)
    );
    let got = seen.lock().unwrap().pop().unwrap();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path_and_query, "/api/notes?tag=a%20b&x[1]={y}");
    assert_eq!(got.body, text_body.as_bytes());
    assert_eq!(got.headers["x-trace"], "t-1");
    assert_eq!(
        got.headers["authorization"],
        secret.as_str(),
        "stays redacted"
    );
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["content-length"], text_body.len().to_string());
    assert!(got.headers.get("user-agent").is_none(), "{:?}", got.headers);
    assert!(got.headers.get("accept").is_none(), "{:?}", got.headers);

    // A binary body is read from the file --save-body writes, as the comment says.
    let out = show_out(vec![
        "show".into(),
        rec_arg.clone(),
        "put-bin".into(),
        "--baseline".into(),
        server.url(),
    ])
    .await;
    seen.lock().unwrap().clear();
    let cmds = commands_under(&out, "re-send to the baseline");
    let hint = format!(
        "# the body (5000 bytes, binary) is read from body-put-bin.bin; write it with: \
         shadowdiff show {rec_arg} put-bin --save-body body-put-bin.bin"
    );
    assert_eq!(cmds[0], hint, "{out}");
    let save = vec![
        "show".to_string(),
        rec_arg.clone(),
        "put-bin".into(),
        "--save-body".into(),
        dir.path().join("body-put-bin.bin").display().to_string(),
    ];
    show_out(save).await;
    let o = bash(&sh, cmds[1].clone(), dir.path(), String::new()).await;
    assert!(o.status.success(), "{}", describe(&o));
    let got = seen.lock().unwrap().pop().unwrap();
    assert_eq!(
        (got.method.as_str(), got.path_and_query.as_str()),
        ("PUT", "/upload/blob")
    );
    assert_eq!(got.body, binary_body);
    assert_eq!(got.headers["content-type"], "application/octet-stream");
    assert!(got.headers.get("expect").is_none(), "{:?}", got.headers);
}
