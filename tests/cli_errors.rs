//! Bad flags, bad recordings and unusable targets: each gives its exit code and a message
//! that names the problem.

use crate::util::*;

#[test]
fn malformed_flag_exits_2_naming_the_flag() {
    let o = shadowdiff(&[
        "replay",
        "x.jsonl",
        "--baseline",
        "http://127.0.0.1:1",
        "--candidate",
        "http://127.0.0.1:1",
        "--concurrency",
        "lots",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--concurrency"),
        "{}",
        describe(&o)
    );
}

#[test]
fn invalid_values_exit_2_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(&dir.path().join("r.jsonl"), &[get("a", "/", 1)]);
    let rec = rec.to_str().unwrap();
    for (flag, value, expect) in [
        (
            "--baseline",
            "ftp://x",
            "expected a URL like http://host:port, https://host:port",
        ),
        (
            "--baseline-tls",
            "insecure=maybe",
            "insecure takes true or false",
        ),
        ("--timeout", "soon", "expected a duration"),
        (
            "--fail-on",
            "different,slowness",
            "unknown class \"slowness\"",
        ),
        ("--set-header", "NoColon", "expected 'Name: value'"),
        (
            "--set-header",
            "Content-Length: 0",
            "content-length belongs to the connection",
        ),
        (
            "--interface",
            "cookie:x",
            "expected `default`, `header:NAME` or `json:/pointer`",
        ),
        (
            "--rate",
            "1e-300",
            "--rate: expected exchanges per second from 0.001",
        ),
        ("--speed", "1e-300", "--speed: expected a factor from 0.001"),
        ("--max-body", "1TiB", "expected a size like 65536, 64KiB"),
        (
            "--max-diff-rate",
            "150%",
            "expected a share between 0 and 1 (0.01 or 1%)",
        ),
        ("--max-latency-regression", "fast", "a percentage like 1%"),
        (
            "--latency-min-slowdown",
            "1.5",
            "expected a duration like 500ms, 1.5s",
        ),
        ("--speed", "inf", "--speed: expected a factor"),
        (
            "--html",
            "-",
            "--json and --html: only one output can go to standard output",
        ),
    ] {
        let mut args = vec![
            "replay",
            rec,
            "--baseline",
            "http://127.0.0.1:1",
            "--candidate",
            "http://127.0.0.1:1",
        ];
        if flag == "--host-header" {
            args[5] = "h2c://127.0.0.1:1";
        }
        if flag == "--html" {
            args.extend(["--json", "-"]);
        }
        if flag == "--baseline" {
            args[3] = value;
        } else {
            args.extend([flag, value]);
        }
        let o = shadowdiff(&args);
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(expect),
            "{flag}: {}",
            describe(&o)
        );
    }
}

/// Sizes, shares and durations read the same on every command: what `tap --max-body`
/// takes, `replay --max-body` takes.
#[test]
fn one_grammar_for_sizes_shares_and_durations() {
    use clap::Parser;
    use shadowdiff::cli::{Cli, Command};
    let cli = Cli::try_parse_from([
        "shadowdiff",
        "replay",
        "r.jsonl",
        "--baseline",
        "http://a",
        "--candidate",
        "http://b",
        "--max-body",
        "1MiB",
        "--max-diff-rate",
        "1%",
        "--max-latency-regression",
        "50%",
        "--timeout",
        "1.5s",
    ])
    .unwrap();
    let Command::Replay(a) = cli.command else {
        panic!("not a replay")
    };
    assert_eq!(
        (a.max_body, a.max_diff_rate, a.max_latency_regression),
        (1 << 20, Some(0.01), Some(0.5))
    );
    let cfg = shadowdiff::config::ReplayConfig::from_args(&a).unwrap();
    assert_eq!(cfg.timeout, std::time::Duration::from_millis(1500));
    let cli = Cli::try_parse_from([
        "shadowdiff",
        "tap",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://a",
        "--out",
        "t.jsonl",
        "--max-body",
        "1MiB",
        "--sample",
        "10%",
        "--shadow",
        "http://b",
        "--shadow-sample",
        "0.5%",
    ])
    .unwrap();
    let Command::Tap(t) = cli.command else {
        panic!("not a tap")
    };
    assert_eq!((t.sample, t.shadow_sample), (0.1, 0.005));
    // The help shows the forms it takes.
    let help = Cli::command_worded()
        .find_subcommand_mut("replay")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(help.contains("[default: 64MiB]"), "{help}");
    assert!(help.contains("--max-diff-rate <SHARE>"), "{help}");
}

#[test]
fn bad_recording_line_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        concat!(
            "{\"shadowdiff_recording\":1,\"created\":\"2026-11-02T09:00:00Z\",\"source\":\"test\"}\n",
            "{\"id\":\"a\",\"ts\":\"2026-11-02T09:00:00Z\",\"request\":{\"method\":\"GET\",\"uri\":\"/\"}}\n",
            "{\"id\":\"b\",\"ts\":\"2026-11-02T09:00:01Z\",\"request\":{\"method\":\"GET\"}}\n",
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start(|_| Answer::json(200, "{}")));
    let o = shadowdiff(&[
        "replay",
        path.to_str().unwrap(),
        "--baseline",
        &server.url(),
        "--candidate",
        &server.url(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.jsonl:3:") && err.contains("uri"),
        "{}",
        describe(&o)
    );
}

const HEADER: &str =
    "{\"shadowdiff_recording\":1,\"created\":\"2026-11-02T09:00:00Z\",\"source\":\"test\"}\n";

/// One exchange line, with `extra` fields added and `request` as given.
fn line(id: &str, request: &str, extra: &str) -> String {
    format!("{{\"id\":\"{id}\",\"ts\":\"2026-11-02T09:00:00Z\",\"request\":{request}{extra}}}\n")
}

const GET: &str = r#"{"method":"GET","uri":"/a"}"#;

#[test]
fn replay_sends_the_exchanges_before_a_bad_line_then_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        [
            HEADER,
            &line("a", GET, ""),
            "not json\n",
            &line("b", GET, ""),
        ]
        .concat(),
    )
    .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = seen.clone();
    let server = rt.block_on(TestServer::start(move |s| {
        log.lock().unwrap().push(s.path_and_query);
        Answer::json(200, "{}")
    }));
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let o = shadowdiff(&[
        "replay",
        path.to_str().unwrap(),
        "--baseline",
        &server.url(),
        "--candidate",
        &server.url(),
        "--json",
        &out("r.json"),
        "--html",
        &out("r.html"),
        "--junit",
        &out("r.xml"),
        "--markdown",
        &out("r.md"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.jsonl:3: not valid JSON"),
        "{}",
        describe(&o)
    );
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|p| p == "/a"),
        "exchange a was not replayed: {seen:?}"
    );
    // What was judged is written, and every report says it is not the whole recording.
    let r = read_json(&dir.path().join("r.json"));
    assert_eq!(r["summary"]["total"], 1, "{r}");
    assert_eq!(r["verdict"], "fail", "{r}");
    let why = r["run"]["incomplete"].as_str().unwrap();
    assert!(why.contains("bad.jsonl:3"), "{why}");
    for name in ["r.html", "r.xml", "r.md"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(
            text.contains("incomplete: reading stopped at") && text.contains("bad.jsonl:3"),
            "{name} does not say the run is incomplete"
        );
    }
    let terminal = String::from_utf8_lossy(&o.stdout);
    assert!(
        terminal.contains("incomplete: reading stopped at"),
        "{terminal}"
    );
}

/// A replay that cannot start says why before anything else: no request reaches a target,
/// and no "replayed 0 exchanges" line comes before the error.
#[test]
fn what_stops_a_replay_is_said_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(&dir.path().join("r.jsonl"), &[get("a", "/", 1)]);
    let not_rec = dir.path().join("notes.txt");
    std::fs::write(&not_rec, "hello\n").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = seen.clone();
    let server = rt.block_on(TestServer::start(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Answer::json(200, "{}")
    }));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (rec, not_rec) = (rec.to_str().unwrap(), not_rec.to_str().unwrap());
    for (input, candidate, code, says) in [
        (
            "/nonexistent/cap.jsonl",
            server.url(),
            2,
            "/nonexistent/cap.jsonl",
        ),
        (not_rec, server.url(), 2, "expected the header line"),
        (rec, dead.clone(), 3, dead.as_str()),
    ] {
        let o = shadowdiff(&[
            "replay",
            input,
            "--baseline",
            &server.url(),
            "--candidate",
            &candidate,
        ]);
        assert_eq!(o.status.code(), Some(code), "{}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("shadowdiff: error:") && first.contains(says),
            "{input}: {err}"
        );
        assert!(!err.contains("replay"), "{input}: {err}");
    }
    // Reaching the baseline is a connection, not a request.
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Once everything is reached, the run says what it is about to do, then does it.
    let o = shadowdiff(&[
        "replay",
        rec,
        "--baseline",
        &server.url(),
        "--candidate",
        &server.url(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "replaying 1 exchange against baseline {0} and candidate {0}\n",
            server.url()
        )),
        "{err}"
    );
    assert!(err.contains("replayed 1 exchange in"), "{err}");
}

#[test]
fn bad_recording_fields_are_named_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, want) in [
        (
            // Whole, but wrong: not a line cut by a stopped writer, although it has no newline.
            "last.jsonl",
            [HEADER, &line("a", GET, ""), line("b", GET, "").replace("2026-11-02T09:00:00Z", "yesterday").trim_end()].concat(),
            "last.jsonl:3: field ts: expected an RFC 3339 time",
        ),
        (
            "latency.jsonl",
            [HEADER, &line("a", GET, r#","latency_us":-1"#)].concat(),
            "latency.jsonl:2: field latency_us: expected a whole number of microseconds, 0 or more, found integer `-1`",
        ),
        (
            "status.jsonl",
            [HEADER, &line("a", GET, r#","response":{"status":99999}"#)].concat(),
            "status.jsonl:2: field response.status: expected an HTTP status code",
        ),
        (
            "headers.jsonl",
            [HEADER, &line("a", r#"{"method":"GET","uri":"/a","headers":[["a"]]}"#, "")].concat(),
            "headers.jsonl:2: field request.headers[0]: expected [name, value], a pair of strings, found a list of 1",
        ),
        (
            "method.jsonl",
            [HEADER, &line("a", r#"{"method":"","uri":""}"#, "")].concat(),
            "method.jsonl:2: field request.method: expected an HTTP method",
        ),
        (
            "uri.jsonl",
            [HEADER, &line("a", r#"{"method":"GET","uri":""}"#, "")].concat(),
            "uri.jsonl:2: field request.uri: expected a request target",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let o = shadowdiff(&["interfaces", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", describe(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(want), "{name}: {}", describe(&o));
    }
}

#[test]
fn zstd_is_read_by_content_and_a_corrupt_stream_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<_> = (0..20_000)
        .map(|i| get(&format!("e{i}"), &format!("/e/{i}"), i))
        .collect();
    let zstd = write_recording(&dir.path().join("r.jsonl.zst"), &items);
    let plain = write_recording(&dir.path().join("r.jsonl"), &items[..3]);
    // Each file under the other's name.
    let zstd_named_plain = dir.path().join("z.jsonl");
    let plain_named_zstd = dir.path().join("p.jsonl.zst");
    std::fs::copy(&zstd, &zstd_named_plain).unwrap();
    std::fs::copy(&plain, &plain_named_zstd).unwrap();
    for (path, count) in [
        (&zstd_named_plain, "20000 exchanges"),
        (&plain_named_zstd, "3 exchanges"),
    ] {
        let o = shadowdiff(&["interfaces", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(count),
            "{}",
            describe(&o)
        );
    }

    let mut bytes = std::fs::read(&zstd).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&zstd, &bytes).unwrap();
    let o = shadowdiff(&["interfaces", zstd.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let at =
        regex::Regex::new(r"r\.jsonl\.zst:(\d+): reading stopped at this line: corrupt zstd data")
            .unwrap();
    let line: u64 = at
        .captures(&err)
        .unwrap_or_else(|| panic!("{}", describe(&o)))[1]
        .parse()
        .unwrap();
    assert!(line > 2 && line < 20_000, "{}", describe(&o));
}

#[test]
fn missing_recording_exits_2_naming_the_file() {
    let o = shadowdiff(&[
        "replay",
        "/nonexistent/cap.jsonl",
        "--baseline",
        "http://127.0.0.1:1",
        "--candidate",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent/cap.jsonl"),
        "{}",
        describe(&o)
    );
}

#[test]
fn unreachable_target_exits_3_naming_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(&dir.path().join("r.jsonl"), &[get("a", "/", 1)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start(|_| Answer::json(200, "{}")));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let o = shadowdiff(&[
        "replay",
        rec.to_str().unwrap(),
        "--baseline",
        &server.url(),
        "--candidate",
        &dead,
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("candidate target") && err.contains(&dead),
        "{}",
        describe(&o)
    );
}

#[test]
fn an_unwritable_report_path_is_refused_before_any_request_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(&dir.path().join("r.jsonl"), &[get("a", "/", 1)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = seen.clone();
    let server = rt.block_on(TestServer::start(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Answer::json(200, "{}")
    }));
    let json = dir.path().join("ok.json");
    let o = shadowdiff(&[
        "replay",
        rec.to_str().unwrap(),
        "--baseline",
        &server.url(),
        "--candidate",
        &server.url(),
        "--json",
        json.to_str().unwrap(),
        "--html",
        "/nonexistent/dir/x.html",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent/dir/x.html"),
        "{}",
        describe(&o)
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The check leaves no file of its own behind.
    assert!(!json.exists());
}

/// A request target longer than `format!` takes as a column width (65,535) reaches the
/// terminal report through `replay`, `report` and `merge`: each cuts it and exits with its
/// verdict, none panics.
#[test]
fn a_seventy_thousand_character_target_is_cut_in_every_terminal_report() {
    let dir = tempfile::tempdir().unwrap();
    let target = format!("/{}", "z".repeat(70_000));
    let rec = write_recording(&dir.path().join("r.jsonl"), &[get("a", &target, 1)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start(|_| Answer::json(200, "{}")));
    let json = dir.path().join("r.json");
    let url = server.url();
    let runs: [Vec<&str>; 3] = [
        vec![
            "replay",
            rec.to_str().unwrap(),
            "--baseline",
            &url,
            "--candidate",
            &url,
            "--json",
            json.to_str().unwrap(),
        ],
        vec!["report", json.to_str().unwrap()],
        vec!["merge", json.to_str().unwrap()],
    ];
    for args in runs {
        let o = shadowdiff(&args);
        // The target is too long for an HTTP request line, so the exchange is skipped as
        // unsendable and the run fails for having compared nothing.
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", describe(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("GET /zzz") && out.contains("unsendable"),
            "{args:?}: {out:.300}"
        );
        let widest = out.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(widest <= 120, "{args:?}: a line of {widest} columns");
    }
}
