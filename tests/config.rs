//! `--config shadowdiff.toml`: every option is shown to change the result, by replaying the
//! same recording without the file and with it.

use crate::util::*;

/// Answers of the baseline (`old`) or the candidate, each path exercising one option.
fn gateway(old: bool) -> impl Fn(Seen) -> Answer + Send + Sync + 'static {
    move |s: Seen| {
        let pick = |a: &str, b: &str| if old { a.to_string() } else { b.to_string() };
        let path = s.path_and_query.as_str();
        match path {
            "/h" => Answer {
                status: 200,
                headers: vec![
                    ("content-type", "application/json".into()),
                    ("x-served-by", pick("node-a", "node-b")),
                ],
                body: "{}".into(),
            },
            "/trace/1" => Answer::json(
                200,
                pick(
                    r#"{"a":{"traceId":"t1"},"meta":{"v":1},"k":1}"#,
                    r#"{"a":{"traceId":"t2"},"meta":{"v":2},"k":1}"#,
                ),
            ),
            "/scoped" => Answer::json(200, pick(r#"{"meta":{"v":1}}"#, r#"{"meta":{"v":2}}"#)),
            "/price" => Answer::json(200, pick(r#"{"price":10.0}"#, r#"{"price":10.004}"#)),
            "/list" => Answer::json(200, pick(r#"{"items":[1,2,3]}"#, r#"{"items":[3,1,2]}"#)),
            "/users/alice/orders" => Answer::json(200, "[]"),
            "/gone" if !old => Answer::json(410, r#"{"error":"no route for /gone"}"#),
            "/backend404" if !old => Answer::json(404, r#"{"error":"user not found"}"#),
            "/time" => Answer::json(
                200,
                format!(
                    r#"{{"at":"{}"}}"#,
                    // The new gateway's clock runs 1.5 ms ahead, so the two answers never
                    // carry the same instant however fast they come.
                    shadowdiff::recording::format::format_ts_us(
                        shadowdiff::recording::format::now_us() + if old { 0 } else { 1_500 }
                    )
                ),
            ),
            _ => Answer::json(200, "{}"),
        }
    }
}

const CONFIG: &str = r#"
tenant_header = "x-tenant"
[interface]
templates = ["/users/{name}/orders"]
[missing_rule]
statuses = [404, 410]
body = "no route"
[[ignore]]
headers = ["X-Served-By"]
[[ignore]]
interfaces = "GET /trace*"
paths = ["$..traceId", "$.meta.*"]
[[tolerance]]
path = "$.price"
absolute = 0.01
[[unordered]]
interfaces = "GET /list"
paths = ["$.items"]
"#;

fn recording(dir: &std::path::Path) -> std::path::PathBuf {
    let paths = [
        "/h",
        "/trace/1",
        "/scoped",
        "/price",
        "/list",
        "/users/alice/orders",
        "/gone",
        "/backend404",
    ];
    let mut items = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let mut e = get(&format!("e{i}"), p, i as i64);
        e.request.headers.push((
            "x-tenant".into(),
            if i % 2 == 0 { "acme" } else { "globex" }.into(),
        ));
        items.push(e);
    }
    write_recording(&dir.join("r.jsonl"), &items)
}

async fn run(
    rec: &std::path::Path,
    base: &TestServer,
    cand: &TestServer,
    extra: &[&str],
) -> serde_json::Value {
    let json = rec.with_extension(format!("{}.json", extra.len()));
    let mut args = vec!["--no-noise-probe"];
    args.extend_from_slice(extra);
    let (o, r) = replay_json(rec, &base.url(), &cand.url(), &json, &args).await;
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", describe(&o));
    r
}

fn outcome(r: &serde_json::Value, iface: &str) -> &'static str {
    let i = interface(r, iface);
    for class in [
        "identical",
        "noise_only",
        "different",
        "missing_rule",
        "candidate_error",
    ] {
        if i[class] == 1 {
            return class;
        }
    }
    panic!("{i:#}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_changes_the_outcome_it_is_for() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path());
    let cfg = dir.path().join("shadowdiff.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let old = TestServer::start(gateway(true)).await;
    let new = TestServer::start(gateway(false)).await;

    let plain = run(&rec, &old, &new, &[]).await;
    let ruled = run(&rec, &old, &new, &["--config", cfg.to_str().unwrap()]).await;

    // [[ignore]] headers
    assert_eq!(outcome(&plain, "GET /h"), "different");
    assert_eq!(outcome(&ruled, "GET /h"), "identical");
    // [[ignore]] paths with `..` and `.*`, scoped by an interface glob
    assert_eq!(outcome(&plain, "GET /trace/{id}"), "different");
    assert_eq!(outcome(&ruled, "GET /trace/{id}"), "identical");
    assert_eq!(
        outcome(&ruled, "GET /scoped"),
        "different",
        "the glob does not cover /scoped"
    );
    // [[tolerance]]
    assert_eq!(outcome(&plain, "GET /price"), "different");
    assert_eq!(outcome(&ruled, "GET /price"), "noise_only");
    // [[unordered]]
    assert_eq!(outcome(&plain, "GET /list"), "different");
    assert_eq!(outcome(&ruled, "GET /list"), "identical");
    // [interface] templates
    interface(&plain, "GET /users/alice/orders");
    interface(&ruled, "GET /users/{name}/orders");
    // [missing_rule] statuses
    assert_eq!(outcome(&plain, "GET /gone"), "different");
    assert_eq!(outcome(&ruled, "GET /gone"), "missing_rule");
    // [missing_rule] body: a backend's own 404 is not the gateway's "no route"
    assert_eq!(outcome(&plain, "GET /backend404"), "missing_rule");
    assert_eq!(outcome(&ruled, "GET /backend404"), "different");
    // tenant_header
    assert!(interface(&plain, "GET /h").get("tenants").is_none());
    assert_eq!(interface(&ruled, "GET /h")["tenants"]["acme"], 1);
    assert_eq!(interface(&ruled, "GET /trace/{id}")["tenants"]["globex"], 1);

    // [interface] key
    let keyed_cfg = dir.path().join("keyed.toml");
    std::fs::write(&keyed_cfg, "[interface]\nkey = \"header:x-tenant\"\n").unwrap();
    let keyed = run(
        &rec,
        &old,
        &new,
        &[
            "--config",
            keyed_cfg.to_str().unwrap(),
            "--fail-on",
            "missing_rule",
        ],
    )
    .await;
    let names: Vec<&str> = keyed["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["interface"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "globex"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diffs_file_lists_every_non_identical_exchange_with_final_noise_flags() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path());
    let old = TestServer::start(gateway(true)).await;
    let new = TestServer::start(gateway(false)).await;
    let diffs = dir.path().join("diffs.jsonl");
    let r = run(&rec, &old, &new, &["--diffs", diffs.to_str().unwrap()]).await;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&diffs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let non_identical =
        r["summary"]["total"].as_u64().unwrap() - r["summary"]["identical"].as_u64().unwrap();
    assert_eq!(lines.len() as u64, non_identical);
    let price = lines.iter().find(|l| l["id"] == "e3").unwrap();
    assert_eq!(price["interface"], "GET /price");
    assert_eq!(price["outcome"], "different");
    let d = &price["differences"][0];
    assert_eq!(
        (
            d["path"].as_str(),
            d["baseline"].as_str(),
            d["candidate"].as_str()
        ),
        (Some("$.price"), Some("10.0"), Some("10.004"))
    );
    assert_eq!(d["noise"], false);
    let missing = lines.iter().find(|l| l["id"] == "e7").unwrap();
    assert_eq!(missing["outcome"], "missing_rule");
    // No provisional files are left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".part"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_tolerance_gate_and_threshold_options() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<_> = (0..25).map(|i| get(&format!("t{i}"), "/time", i)).collect();
    let rec = write_recording(&dir.path().join("t.jsonl"), &items);
    let old = TestServer::start(gateway(true)).await;
    let new = TestServer::start(gateway(false)).await;
    let plain = run(&rec, &old, &new, &[]).await;
    assert_eq!(
        interface(&plain, "GET /time")["noise_only"],
        25,
        "times within 5 s are noise: {}",
        interface(&plain, "GET /time")
    );

    let cfg = dir.path().join("strict.toml");
    std::fs::write(&cfg, "time_tolerance = \"0s\"\n[gate]\nfail_on = [\"missing_rule\"]\n[latency]\nmin_samples = 7\nabsolute = \"1s\"\nrelative = 3.0\ntail_min_samples = 300\ntail_absolute = \"2s\"\ntail_relative = 4.0\n[noise]\nrelative = 0.5\nabsolute_pct = 2.0\n[[noise_rule]]\ninterfaces = \"GET /x*\"\nrelative = 0.9\n").unwrap();
    let strict = run(&rec, &old, &new, &["--config", cfg.to_str().unwrap()]).await;
    assert_eq!(
        interface(&strict, "GET /time")["different"],
        25,
        "tolerance 0 s"
    );
    assert_eq!(
        strict["verdict"], "pass",
        "only missing_rule fails this run"
    );
    let th = &strict["run"]["thresholds"];
    assert_eq!(th["fail_on"], serde_json::json!(["missing_rule"]));
    assert_eq!(th["latency_min_samples"], 7);
    assert_eq!(th["latency_absolute_us"], 1_000_000);
    assert_eq!(th["latency_relative"], 3.0);
    assert_eq!(th["latency_tail_min_samples"], 300);
    assert_eq!(th["latency_tail_absolute_us"], 2_000_000);
    assert_eq!(th["latency_tail_relative"], 4.0);
    assert_eq!(th["noise_relative"], 0.5);
    assert_eq!(th["noise_absolute_pct"], 2.0);
    assert_eq!(th["noise_rules"][0]["relative"], 0.9);
    assert_eq!(
        th["noise_rules"][0]["absolute_pct"], 2.0,
        "unset margins inherit [noise]"
    );
    assert_eq!(th["time_tolerance_ms"], 0);

    // Flags win over the file.
    let flagged = run(
        &rec,
        &old,
        &new,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--time-tolerance",
            "5s",
            "--fail-on",
            "different",
        ],
    )
    .await;
    assert_eq!(interface(&flagged, "GET /time")["noise_only"], 25);
    assert_eq!(
        flagged["run"]["thresholds"]["fail_on"],
        serde_json::json!(["different"])
    );
}

/// The latency thresholds of a config file decide the latency verdict, not only what the
/// result echoes: a candidate 40 ms slower on every call is a regression under the
/// defaults and none where the file asks for at least 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_thresholds_from_the_file_change_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<_> = (0..30).map(|i| get(&format!("s{i}"), "/slow", i)).collect();
    let rec = write_recording(&dir.path().join("s.jsonl"), &items);
    let old = TestServer::start(|_| Answer::json(200, "{}")).await;
    let new = TestServer::start_delayed(|_| {
        (
            Answer::json(200, "{}"),
            Some(std::time::Duration::from_millis(40)),
        )
    })
    .await;
    let slower = |r: &serde_json::Value| interface(r, "GET /slow")["latency"]["regression"].clone();
    let defaults = run(&rec, &old, &new, &[]).await;
    assert_eq!(slower(&defaults), true, "{:#}", defaults["summary"]);
    assert_eq!(defaults["verdict"], "fail");

    let cfg = dir.path().join("lenient.toml");
    std::fs::write(&cfg, "[latency]\nabsolute = \"1s\"\n").unwrap();
    let lenient = run(&rec, &old, &new, &["--config", cfg.to_str().unwrap()]).await;
    assert_eq!(slower(&lenient), false, "{:#}", lenient["summary"]);
    assert_eq!(lenient["verdict"], "pass");

    // Too few samples for the file's minimum: no latency verdict either way.
    std::fs::write(&cfg, "[latency]\nmin_samples = 100\n").unwrap();
    let few = run(&rec, &old, &new, &["--config", cfg.to_str().unwrap()]).await;
    assert_eq!(slower(&few), false, "{:#}", few["summary"]);
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(&dir.path().join("r.jsonl"), &[get("a", "/", 1)]);
    for (text, expect) in [
        (
            "[[ignore]]\npaths = [\"meta.*\"]\n",
            "bad.toml:2: ignore.paths: expected a path starting with `$`",
        ),
        ("\n[[ignore]]\nheaderz = [\"x\"]\n", "bad.toml:3:"),
        (
            "[missing_rule]\nbody = \"(unclosed\"\n",
            "bad.toml:2: missing_rule.body: not a valid regular expression",
        ),
        (
            "[gate]\nfail_on = [\"slowness\"]\n",
            "bad.toml:2: gate.fail_on",
        ),
        (
            "[[tolerance]]\npath = \"$.a\"\n",
            "bad.toml:2: tolerance: expected `absolute`, `relative` or both",
        ),
        (
            "[noise]\nrelative = \"x\"\n",
            "bad.toml:2: noise.relative: expected a number like 0.01 or a percentage like 1%, found \"x\"",
        ),
        (
            "[noise]\nrelative = 0.2\nabsolute_pct = 500\n",
            "bad.toml:3: noise.absolute_pct: expected percentage points between 0 and 100, found 500",
        ),
        (
            "[noise]\nrelative = -5\n",
            "bad.toml:2: noise.relative: expected a share, 0 or more",
        ),
        (
            "[latency]\nrelative = -1\n",
            "bad.toml:2: latency.relative: expected a share, 0 or more",
        ),
        (
            "[gate]\nmax_diff_rate = 5\n",
            "bad.toml:2: gate.max_diff_rate: expected a share between 0 and 1, found 5",
        ),
        (
            "[[noise_rule]]\ninterfaces = \"GET /x\"\nabsolute_pct = -1\n",
            "bad.toml:3: noise_rule.absolute_pct: expected percentage points",
        ),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let o = shadowdiff(&[
            "replay",
            rec.to_str().unwrap(),
            "--baseline",
            "http://127.0.0.1:1",
            "--candidate",
            "http://127.0.0.1:1",
            "--config",
            cfg.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{text}: {}", describe(&o));
    }
}

/// A long `[missing_rule] body` made the regex builder allocate gigabytes: 6,000,000 `a`
/// then `|b` aborted the process, 10 MB of `a` failed only after 1.09 GB. Both, and a short
/// pattern that compiles huge, are refused naming the file, line and key.
#[test]
fn a_huge_missing_rule_pattern_is_refused_before_it_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(&dir.path().join("r.jsonl"), &[get("a", "/", 1)]);
    let cfg = dir.path().join("huge.toml");
    let cfg_s = cfg.to_str().unwrap();
    for (body, expect) in [
        (
            format!("{}|b", "a".repeat(6_000_000)),
            "huge.toml:2: missing_rule.body: a pattern of 6000002 bytes; expected a regular expression of at most 4096 bytes",
        ),
        (
            "a".repeat(10_000_000),
            "huge.toml:2: missing_rule.body: a pattern of 10000000 bytes",
        ),
        (
            "(a{1000}){1000}".to_string(),
            "huge.toml:2: missing_rule.body: the regular expression compiles to more than",
        ),
    ] {
        std::fs::write(&cfg, format!("[missing_rule]\nbody = \"{body}\"\n")).unwrap();
        let Some(o) = shadowdiff_limited(&[
            "replay",
            rec.to_str().unwrap(),
            "--baseline",
            "http://127.0.0.1:1",
            "--candidate",
            "http://127.0.0.1:1",
            "--config",
            cfg_s,
        ]) else {
            return;
        };
        assert_clean_exit_naming(&o, cfg_s);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{}", describe(&o));
    }
}

/// Shares in the rules file take the flags' grammar: `0.01` or `"1%"`; a bad one names the
/// file, line and key.
#[test]
fn rules_file_shares_take_percentages_like_the_flags() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let load = |toml: &str| {
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, toml).unwrap();
        let cli = shadowdiff::cli::Cli::try_parse_from([
            "shadowdiff",
            "replay",
            "r.jsonl",
            "--baseline",
            "http://a",
            "--candidate",
            "http://b",
            "--config",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let shadowdiff::cli::Command::Replay(args) = cli.command else {
            panic!("not a replay")
        };
        shadowdiff::config::ReplayConfig::from_args(&args)
    };
    let cfg = load("[gate]\nmax_diff_rate = \"1%\"\n[latency]\nrelative = \"50%\"\n").unwrap();
    assert_eq!(cfg.thresholds.max_diff_rate, Some(0.01));
    assert_eq!(cfg.thresholds.latency_relative, 0.5);
    let cfg = load("[gate]\nmax_diff_rate = 0.02\n").unwrap();
    assert_eq!(cfg.thresholds.max_diff_rate, Some(0.02));
    let e = load("[gate]\nmax_diff_rate = \"lots\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("rules.toml:2") && e.contains("1%"), "{e}");
}
