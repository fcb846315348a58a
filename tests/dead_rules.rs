//! No rule is silently dead: a rule of the rules file, a `--safe` glob or a `--filter` that
//! matched nothing in a run is a warning in every report, naming where it is written; an
//! interfaces glob that no interface key can match is refused before anything is sent.

use crate::util::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Line numbers matter: the warnings name them.
const RULES: &str = r#"# rules for the products API
[[ignore]]
interfaces = "* /api/products/*"
paths = ["$.prise"]

[[ignore]]
interfaces = "GET /api/products/*"
paths = ["$.price"]
headers = ["x-served-by", "x-nope"]

[[tolerance]]
interfaces = "GET /api/orders/*"
path = "$.total"
absolute = 1

[[unordered]]
paths = ["$.tags"]

[[noise_rule]]
interfaces = "POST /api/*"
relative = 0.5

[side_effects]
safe = ["POST /rpc/*"]
"#;

/// The warnings the run must give, each the start of one warning.
const DEAD: &[&str] = &[
    "rules.toml:4: [[ignore]] path \"$.prise\" matched no field of GET /api/products/{id}",
    "rules.toml:9: [[ignore]] header \"x-nope\" matched no header of GET /api/products/{id}",
    "rules.toml:12: [[tolerance]] matched nothing in this run: interfaces \"GET /api/orders/*\" \
     matches no interface (keys look like \"GET /api/products/{id}\")",
    "rules.toml:17: [[unordered]] path \"$.tags\" matched no field of GET /api/products/{id}",
    "rules.toml:20: [[noise_rule]] matched nothing in this run: interfaces \"POST /api/*\"",
    "rules.toml:24: [side_effects] safe \"POST /rpc/*\" matched nothing in this run: no request \
     of this run that may change state matches it",
    "--safe PUT /x/*: matched nothing in this run",
    "--filter interface!=GET /api/prodcts/*: matched none of the 6 exchanges it saw, so it \
     excluded nothing",
];

/// A products API whose answers are the same on both sides, so the rules that match have
/// identical fields to meet; counts the requests it is sent.
async fn products() -> (TestServer, Arc<AtomicUsize>) {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let server = TestServer::start(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Answer {
            status: 200,
            headers: vec![
                ("content-type", "application/json".into()),
                ("x-served-by", "node-a".into()),
            ],
            body: r#"{"price":10,"name":"lamp"}"#.into(),
        }
    })
    .await;
    (server, sent)
}

fn unescape_html(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_flags_that_matched_nothing_are_warned_in_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(
        &dir.path().join("r.jsonl"),
        &numbered_gets(6, "/api/products"),
    );
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let (server, _) = products().await;
    let (json, html, md, junit) = (
        dir.path().join("r.json"),
        dir.path().join("r.html"),
        dir.path().join("r.md"),
        dir.path().join("junit.xml"),
    );
    // Relative, so the warnings name the file as it was given.
    let o = tokio::task::spawn_blocking({
        let (dir, rec, url) = (dir.path().to_path_buf(), rec.clone(), server.url());
        let (json, html, md, junit) = (json.clone(), html.clone(), md.clone(), junit.clone());
        move || {
            std::process::Command::new(bin())
                .current_dir(&dir)
                .env("NO_COLOR", "1")
                .args(["replay", rec.to_str().unwrap(), "--baseline", &url])
                .args(["--candidate", &url, "--no-noise-probe", "--config"])
                .args(["rules.toml", "--safe", "PUT /x/*"])
                .args(["--filter", "interface!=GET /api/prodcts/*"])
                .args(["--json", json.to_str().unwrap()])
                .args(["--html", html.to_str().unwrap()])
                .args(["--markdown", md.to_str().unwrap()])
                .args(["--junit", junit.to_str().unwrap()])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_eq!(r["summary"]["identical"], 6, "{:#}", r["summary"]);
    let warnings: Vec<&str> = r["run"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for dead in DEAD {
        assert!(
            warnings.iter().any(|w| w.starts_with(dead)),
            "no warning {dead:?} in {warnings:#?}"
        );
    }
    // The rules that met what they name say nothing: line 7's glob, line 8's path and the
    // header on line 9 that the answers carry.
    let about_rules = warnings
        .iter()
        .filter(|w| w.starts_with("rules.toml:") || w.starts_with("--"))
        .count();
    assert_eq!(about_rules, DEAD.len(), "{warnings:#?}");
    for quiet in [
        "rules.toml:3:",
        "rules.toml:7:",
        "rules.toml:8:",
        "x-served-by",
    ] {
        assert!(!warnings.iter().any(|w| w.contains(quiet)), "{warnings:#?}");
    }

    let terminal = String::from_utf8_lossy(&o.stdout).replace('\n', " ");
    let html = unescape_html(&std::fs::read_to_string(&html).unwrap());
    let md = std::fs::read_to_string(&md).unwrap().replace('\\', "");
    let junit = unescape_html(&std::fs::read_to_string(&junit).unwrap());
    for dead in DEAD {
        // The terminal wraps long lines; every report holds each warning's start.
        let start: String = dead.chars().take(40).collect();
        assert!(
            terminal.contains(&start),
            "terminal lacks {start:?}:\n{terminal}"
        );
        assert!(html.contains(dead), "HTML lacks {dead:?}");
        assert!(md.contains(dead), "Markdown lacks {dead:?}:\n{md}");
        assert!(junit.contains(dead), "JUnit lacks {dead:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_without_a_method_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(
        &dir.path().join("r.jsonl"),
        &numbered_gets(3, "/api/products"),
    );
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[ignore]]\ninterfaces = \"/api/products/*\"\npaths = [\"$.price\"]\n",
    )
    .unwrap();
    let (server, sent) = products().await;
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "replay",
            rec.to_str().unwrap(),
            "--baseline",
            &server.url(),
            "--candidate",
            &server.url(),
            "--config",
            rules.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let o = shadowdiff_async(args(&[])).await;
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for part in [
        "rules.toml:2:",
        "ignore.interfaces",
        "\"/api/products/*\"",
        "\"GET /api/products/*\" or \"* /api/products/*\"",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    assert_eq!(sent.load(Ordering::SeqCst), 0);

    // Keyed by a header, any text is a key: the same glob is taken, and said to match
    // nothing once the run has seen the keys.
    let json = dir.path().join("r.json");
    let o = shadowdiff_async(args(&[
        "--interface",
        "header:x-op",
        "--json",
        json.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    let warnings = r["run"]["warnings"].to_string();
    assert!(
        warnings.contains(
            "rules.toml:2: [[ignore]] matched nothing in this run: interfaces \\\"/api/products/*\\\" matches no interface (keys look like \\\"GET /api/products/{id}\\\")"
        ),
        "{warnings}"
    );
    assert!(sent.load(Ordering::SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_flag_without_a_method_is_refused() {
    let o = shadowdiff_async(
        [
            "replay",
            "missing.jsonl",
            "--baseline",
            "http://127.0.0.1:1",
            "--candidate",
            "http://127.0.0.1:1",
            "--safe",
            "/rpc/*/Get*",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--safe"), "{err}");
    assert!(
        err.contains("\"GET /rpc/*/Get*\" or \"* /rpc/*/Get*\""),
        "{err}"
    );
}
