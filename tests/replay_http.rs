//! Replay against in-process hyper servers: outcomes, noise, side effects, header rewriting,
//! HTTP/2, readiness, pacing, and the JSON result against its schema.

use crate::util::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn rand_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn now_rfc3339() -> String {
    shadowdiff::recording::format::format_ts_us(shadowdiff::recording::format::now_us())
}

/// A shop-like API. `price` is what /products/{id} answers; `legacy` whether the rare route exists.
fn shop(price: &'static str, legacy: bool) -> impl Fn(Seen) -> Answer + Send + Sync + 'static {
    move |s: Seen| {
        let p = s.path_and_query.clone();
        let volatile = format!(
            r#""served_at":"{}","request_id":"{}""#,
            now_rfc3339(),
            rand_hex()
        );
        if let Some(id) = p.strip_prefix("/products/") {
            Answer::json(200, format!(r#"{{"id":{id},"price":{price},{volatile}}}"#))
        } else if let Some(id) = p.strip_prefix("/users/") {
            Answer::json(
                200,
                format!(r#"{{"id":{id},"name":"user {id}",{volatile}}}"#),
            )
        } else if p == "/legacy/export" && legacy {
            Answer::json(200, format!(r#"{{"rows":3,{volatile}}}"#))
        } else if p == "/orders" && s.method == "POST" {
            Answer::json(201, format!(r#"{{"created":true,{volatile}}}"#))
        } else {
            Answer::json(404, r#"{"error":"no route"}"#)
        }
    }
}

fn shop_recording(dir: &std::path::Path) -> std::path::PathBuf {
    let mut items = Vec::new();
    for i in 0..30 {
        items.push(get(
            &format!("u{i}"),
            &format!("/users/{i}"),
            1_000_000 + i * 10,
        ));
        items.push(get(
            &format!("p{i}"),
            &format!("/products/{}", 100 + i),
            1_000_005 + i * 10,
        ));
    }
    items.push(get("legacy-1", "/legacy/export", 2_000_000));
    let mut post = get("post-1", "/orders", 2_000_001);
    post.request.method = "POST".into();
    post.request.body = bytes::Bytes::from_static(br#"{"sku":"a"}"#);
    items.push(post);
    write_recording(&dir.join("shop.jsonl"), &items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_field_a_missing_route_and_noise_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let rec = shop_recording(dir.path());
    let old = TestServer::start(shop("12.5", true)).await;
    let new = TestServer::start(shop("\"12.50\"", false)).await;
    let json = dir.path().join("result.json");
    let diffs = dir.path().join("diffs.jsonl");
    let o = replay_run(
        &rec,
        &old.url(),
        &new.url(),
        &[&"--json", &json.display(), &"--diffs", &diffs.display()],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    // The diffs file marks measured noise and real differences per exchange.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&diffs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        62,
        "every exchange differs at least in request_id"
    );
    let p0 = lines.iter().find(|l| l["id"] == "p0").unwrap();
    assert_eq!(p0["outcome"], "different");
    for d in p0["differences"].as_array().unwrap() {
        match d["path"].as_str().unwrap() {
            "$.price" => assert_eq!(
                (d["noise"].as_bool(), d["why"].as_str()),
                (Some(false), None)
            ),
            "$.request_id" => assert_eq!(d["why"], "measured_noise"),
            "$.served_at" => assert_eq!(d["why"], "time_tolerance"),
            other => panic!("unexpected difference at {other}"),
        }
    }
    let u0 = lines.iter().find(|l| l["id"] == "u0").unwrap();
    assert_eq!(u0["outcome"], "noise_only");
    let post = lines.iter().find(|l| l["id"] == "post-1").unwrap();
    assert_eq!(
        (post["outcome"].as_str(), post["skip_reason"].as_str()),
        (Some("skipped"), Some("side_effect"))
    );
    assert_counts_consistent(&r);
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["summary"]["total"], 62);
    assert_eq!(r["summary"]["skipped"], 1);
    assert_eq!(r["summary"]["skipped_reasons"]["side_effect"], 1);

    let users = interface(&r, "GET /users/{id}");
    assert_eq!(users["different"], 0, "{users:#}");
    assert_eq!(
        users["noise_only"], 30,
        "request_id differs on every call: noise"
    );
    let rid = users["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "$.request_id")
        .unwrap();
    assert_eq!(rid["regression"], false);
    assert_eq!(rid["raw"], 30);
    assert_eq!(rid["noise"], 30);
    let served = users["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "$.served_at")
        .unwrap();
    assert_eq!(served["regression"], false);

    let products = interface(&r, "GET /products/{id}");
    assert_eq!(products["different"], 30);
    let price = &products["fields"][0];
    assert_eq!(price["path"], "$.price");
    assert_eq!(price["regression"], true);
    assert_eq!(price["samples"].as_array().unwrap().len(), 5);
    assert_eq!(price["example"]["baseline"], "12.5");
    assert_eq!(price["example"]["candidate"], "\"12.50\"");
    // The request of the example's exchange, for the report's command that sends it again.
    let id = price["example"]["id"].as_str().unwrap();
    let sent = &products["sample_requests"][id];
    assert_eq!(sent["method"], "GET", "{products:#}");
    let n: u32 = id[1..].parse().unwrap();
    assert_eq!(
        sent["uri"].as_str().unwrap(),
        format!("/products/{}", 100 + n)
    );
    assert_eq!(products["sample_requests"].as_object().unwrap().len(), 1);

    let legacy = interface(&r, "GET /legacy/export");
    assert_eq!(legacy["missing_rule"], 1);
    assert_eq!(legacy["missing_rule_samples"][0], "legacy-1");
    // What the candidate answered where it had no route.
    assert_eq!(
        legacy["missing_rule_answer"],
        serde_json::json!({"id": "legacy-1", "status": 404, "body": "{\"error\":\"no route\"}"})
    );

    let gates = r["gate_failures"].as_array().unwrap();
    assert!(
        gates
            .iter()
            .any(|g| g.as_str().unwrap().starts_with("missing_rule")
                && g.as_str().unwrap().contains("GET /legacy/export")),
        "{gates:?}"
    );
    assert!(
        gates
            .iter()
            .any(|g| g.as_str().unwrap().starts_with("different")
                && g.as_str().unwrap().contains("GET /products/{id}")),
        "{gates:?}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("--allow-side-effects"), "{}", describe(&o));

    // The real output validates against the committed schema.
    assert_valid_result(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_against_itself_passes_on_long_lists_with_a_volatile_field_each() {
    // 200 elements, each with its own random trace id: more differences per answer than
    // an exchange lists, all at one path that the noise probe sees differ too.
    let list = TestServer::start(|_| {
        let items: Vec<String> = (0..200)
            .map(|i| format!(r#"{{"sku":{i},"trace":"{}"}}"#, rand_hex()))
            .collect();
        Answer::json(200, format!(r#"{{"items":[{}]}}"#, items.join(",")))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<_> = (0..40)
        .map(|i| get(&format!("e{i}"), &format!("/list/{i}"), 1_000 + i))
        .collect();
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let (o, r) = replay_json(
        &rec,
        &list.url(),
        &list.url(),
        &dir.path().join("r.json"),
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(r["summary"]["noise_only"], 40, "{:#}", r["summary"]);
    assert_eq!(r["verdict"], "pass", "{:#}", r["summary"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_noise_probe_volatile_fields_count_and_side_effects_can_be_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let rec = shop_recording(dir.path());
    let posts = Arc::new(AtomicU64::new(0));
    let p2 = posts.clone();
    let inner = shop("12.5", true);
    let server = TestServer::start(move |s| {
        if s.method == "POST" {
            assert_eq!(
                &s.body[..],
                br#"{"sku":"a"}"#,
                "the recorded body is replayed"
            );
            p2.fetch_add(1, Ordering::SeqCst);
        }
        inner(s)
    })
    .await;
    let json = dir.path().join("r.json");
    let o = replay_run(
        &rec,
        &server.url(),
        &server.url(),
        &[
            &"--no-noise-probe",
            &"--allow-side-effects",
            &"--json",
            &json.display(),
        ],
    )
    .await;
    // Same server, but request_id is random and nothing measured it as noise.
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["skipped"], 0);
    assert_eq!(
        posts.load(Ordering::SeqCst),
        2,
        "POST sent to baseline and candidate, no probe"
    );
    assert_eq!(r["run"]["secondary"], serde_json::Value::Null);
    let users = interface(&r, "GET /users/{id}");
    assert_eq!(users["different"], 30);
    assert_eq!(users["probed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_is_rewritten_and_set_header_replaces_recorded_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut ex = get("a", "/users/1", 1);
    ex.request
        .headers
        .push(("authorization".into(), "redacted:abcdef012345".into()));
    ex.request
        .headers
        .push(("connection".into(), "close".into()));
    let rec = write_recording(&dir.path().join("r.jsonl"), &[ex]);
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let s2 = seen.clone();
    let server = TestServer::start(move |s| {
        let h = |n: &str| {
            s.headers
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        s2.lock().unwrap().push((h("host"), h("authorization")));
        Answer::json(200, "{}")
    })
    .await;
    for (mode, expect_host) in [
        ("target", server.addr.to_string()),
        ("keep", "prod.example".to_string()),
    ] {
        seen.lock().unwrap().clear();
        let o = replay_run(
            &rec,
            &server.url(),
            &server.url(),
            &[
                &"--host-header",
                &mode,
                &"--set-header",
                &"Authorization: Bearer real-token",
            ],
        )
        .await;
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            4,
            "baseline, candidate, noise probe and the candidate's second request"
        );
        for (host, auth) in seen.iter() {
            assert_eq!(host, &expect_host, "{mode}");
            assert_eq!(auth, "Bearer real-token");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_targets_speak_http2_prior_knowledge() {
    let dir = tempfile::tempdir().unwrap();
    let items = numbered_gets(10, "/users");
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let versions: Arc<Mutex<Vec<http::Version>>> = Arc::default();
    let v2 = versions.clone();
    let server = TestServer::start(move |s| {
        v2.lock().unwrap().push(s.version);
        Answer::json(200, r#"{"ok":true}"#)
    })
    .await;
    let h2 = format!("h2c://{}", server.addr);
    let json = dir.path().join("r.json");
    let o = replay_run(&rec, &h2, &h2, &[&"--json", &json.display()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_eq!(r["summary"]["identical"], 10);
    let v = versions.lock().unwrap();
    // Baseline, candidate, the noise probe and the candidate's second request.
    assert_eq!(v.len(), 40);
    assert!(v.iter().all(|v| *v == http::Version::HTTP_2), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_polls_until_the_target_answers_2xx() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(&dir.path().join("r.jsonl"), &[get("a", "/users/1", 1)]);
    let polls = Arc::new(AtomicU64::new(0));
    let p2 = polls.clone();
    let slow_start = TestServer::start(move |s| {
        if s.path_and_query == "/ready" {
            let n = p2.fetch_add(1, Ordering::SeqCst);
            return Answer::json(if n < 3 { 503 } else { 200 }, "{}");
        }
        Answer::json(200, "{}")
    })
    .await;
    let ok = TestServer::start(|_| Answer::json(200, "{}")).await;
    let json = dir.path().join("r.json");
    let o = replay_run(
        &rec,
        &ok.url(),
        &slow_start.url(),
        &[&"--wait-ready", &"/ready", &"--json", &json.display()],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(polls.load(Ordering::SeqCst) >= 4);
    let r = read_json(&json);
    assert!(
        r["run"]["ready_ms"]["candidate"].as_u64().is_some(),
        "{:#}",
        r["run"]
    );
    assert!(r["run"]["ready_ms"]["baseline"].as_u64().is_some());

    // A gateway whose port is not open yet is still starting: polled, not refused at once.
    let late = TestServer::start_after(std::time::Duration::from_millis(1500), |_| {
        Answer::json(200, "{}")
    });
    let o = replay_run(
        &rec,
        &ok.url(),
        &late.url(),
        &[&"--wait-ready", &"/ready", &"--json", &json.display()],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let waited = read_json(&json)["run"]["ready_ms"]["candidate"]
        .as_u64()
        .unwrap();
    assert!(waited >= 1000, "ready after {waited} ms");

    // A target that never gets ready: exit 3 naming it.
    let never = TestServer::start(|_| Answer::json(503, "{}")).await;
    let o = replay_run(
        &rec,
        &ok.url(),
        &never.url(),
        &[&"--wait-ready", &"/ready", &"--ready-timeout", &"1s"],
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("candidate target") && err.contains("status 503"),
        "{}",
        describe(&o)
    );

    // A target that accepts and never answers: the wait ends at `--ready-timeout`, not at
    // the (default 10 s) `--timeout` of the poll it was in.
    let hung = TestServer::start_delayed(|_| {
        (
            Answer::json(200, "{}"),
            Some(std::time::Duration::from_secs(30)),
        )
    })
    .await;
    let started = std::time::Instant::now();
    let o = replay_run(
        &rec,
        &ok.url(),
        &hung.url(),
        &[&"--wait-ready", &"/ready", &"--ready-timeout", &"1s"],
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(6), "took {took:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no complete answer within"),
        "{}",
        describe(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speed_and_rate_pace_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    // 20 exchanges recorded 100 ms apart: 1.9 s of traffic.
    let items: Vec<_> = (0..20)
        .map(|i| get(&format!("e{i}"), "/users/1", i * 100_000))
        .collect();
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    // Timed where the requests arrive, not by the run's own account of itself.
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let server = TestServer::start(move |_| {
        seen.lock().unwrap().push(std::time::Instant::now());
        Answer::json(200, "{}")
    })
    .await;
    for (flag, value) in [("--speed", "4"), ("--rate", "40")] {
        arrivals.lock().unwrap().clear();
        let json = dir.path().join(format!("{flag}.json"));
        let o = replay_run(
            &rec,
            &server.url(),
            &server.url(),
            &[
                &flag,
                &value,
                &"--json",
                &json.display(),
                &"--no-noise-probe",
            ],
        )
        .await;
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        let r = read_json(&json);
        assert_eq!(r["summary"]["identical"], 20);
        let mut at = arrivals.lock().unwrap().clone();
        at.sort();
        assert_eq!(at.len(), 40, "each exchange once to each side");
        // The schedule spreads 19 gaps over 19/40 s (rate) or 1.9/4 s (speed): the last
        // request cannot reach the server sooner than that after the first. Unpaced, all 40
        // arrive within a few milliseconds.
        let spread = at[at.len() - 1] - at[0];
        assert!(
            spread >= std::time::Duration::from_millis(450),
            "{flag} {value}: requests arrived over {spread:?}"
        );
        assert!(
            r["run"]["pacing"].as_str().unwrap().contains(&flag[2..]),
            "{:#}",
            r["run"]
        );
    }
}

/// A paced exchange starts on time while another worker's only slot is busy: with two
/// worker threads of one slot each, a request held 3 s must not hold back the ones due every
/// 200 ms after it, which the other worker is free to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_exchange_is_not_held_behind_a_busy_worker() {
    const HOLD: std::time::Duration = std::time::Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let mut items = vec![get("slow", "/slow", 0)];
    items.extend((1..=5).map(|i| get(&format!("fast-{i}"), "/fast", i * 200_000)));
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let server = TestServer::start_delayed(move |s| {
        let slow = s.path_and_query == "/slow";
        seen.lock().unwrap().push((slow, std::time::Instant::now()));
        (Answer::json(200, "{}"), slow.then_some(HOLD))
    })
    .await;
    let json = dir.path().join("r.json");
    let url = server.url();
    let (o, r) = replay_json(
        &rec,
        &url,
        &url,
        &json,
        &[
            "--speed",
            "1",
            "--threads",
            "2",
            "--concurrency",
            "2",
            "--no-noise-probe",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(r["summary"]["identical"], 6);
    // Ordering, not speed: every fast request reached the server while the first slow one
    // was still held there. Behind the busy worker they would come only after its answer.
    let at = arrivals.lock().unwrap().clone();
    let first_slow = at.iter().filter(|(slow, _)| *slow).map(|(_, t)| *t).min();
    let first_slow = first_slow.expect("the slow request arrived");
    let fast: Vec<_> = at
        .iter()
        .filter(|(slow, _)| !*slow)
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(fast.len(), 10, "five fast exchanges to each side");
    let late = fast
        .iter()
        .filter(|t| t.saturating_duration_since(first_slow) >= HOLD)
        .count();
    assert_eq!(
        late, 0,
        "fast calls waited for the slow one to be answered: {at:?}"
    );
}

/// A small `--concurrency` over several worker threads is still honoured: with two workers
/// of one slot each, two requests are in flight at once, not one after the other behind the
/// worker that took the first batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_concurrency_is_spread_over_the_workers() {
    const HOLD: std::time::Duration = std::time::Duration::from_millis(500);
    let dir = tempfile::tempdir().unwrap();
    let items = numbered_gets(8, "/users");
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let baseline = TestServer::start_delayed(move |_| {
        seen.lock().unwrap().push(std::time::Instant::now());
        (Answer::json(200, "{}"), Some(HOLD))
    })
    .await;
    let candidate = TestServer::start(|_| Answer::json(200, "{}")).await;
    let json = dir.path().join("r.json");
    let (o, r) = replay_json(
        &rec,
        &baseline.url(),
        &candidate.url(),
        &json,
        &["--threads", "2", "--concurrency", "2", "--no-noise-probe"],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(r["summary"]["identical"], 8);
    let mut at = arrivals.lock().unwrap().clone();
    at.sort();
    // Each request is held HOLD at the baseline: one after the other, no request can arrive
    // while the one before is held; two at a time, they arrive in pairs.
    let overlapping = at.windows(2).filter(|w| w[1] - w[0] < HOLD).count();
    assert!(overlapping >= 3, "requests were not concurrent: {at:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidate_failures_are_outcomes_not_silence() {
    let dir = tempfile::tempdir().unwrap();
    let items = numbered_gets(10, "/users");
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let ok = TestServer::start(|_| Answer::json(200, "{}")).await;
    // Answers every other request too slowly for the timeout. The delay is asynchronous: a
    // blocking sleep held a runtime worker, and the baseline server's connection task, parked
    // in that worker's (unstealable) LIFO slot, then missed the deadline itself.
    let n = Arc::new(AtomicU64::new(0));
    let slow = TestServer::start_delayed(move |_| {
        let late = n.fetch_add(1, Ordering::SeqCst) % 2 == 0;
        (
            Answer::json(200, "{}"),
            late.then_some(std::time::Duration::from_millis(1200)),
        )
    })
    .await;
    let json = dir.path().join("r.json");
    let o = replay_run(
        &rec,
        &ok.url(),
        &slow.url(),
        &[
            &"--timeout",
            &"400ms",
            &"--concurrency",
            &"1",
            // Every other request is late: the candidate's second requests would shift which.
            &"--no-noise-probe",
            &"--json",
            &json.display(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["total"], 10);
    assert_eq!(r["summary"]["candidate_error"], 5);
    let i = interface(&r, "GET /users/{id}");
    assert_eq!(i["errors"][0]["side"], "candidate");
    assert_eq!(i["errors"][0]["kind"], "timeout");
    assert_eq!(i["errors"][0]["count"], 5);
}

/// A recorded request no connection can carry (a space in its target, a line break in a
/// header value) is skipped as `unsendable`, with the reason in every report; it is not the
/// baseline's error, and the good exchanges beside it are judged as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_connection_can_carry_is_skipped_not_a_baseline_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad_header = get("bad-header", "/users/2", 2);
    bad_header
        .request
        .headers
        .push(("x-note".into(), "a\r\nx-injected: 1".into()));
    let items = vec![
        get("good", "/users/1", 1),
        bad_header,
        get("bad-target", "/users/3?q=a b", 3),
    ];
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let server = TestServer::start(move |s| {
        s2.lock().unwrap().push(s.path_and_query.clone());
        Answer::json(200, "{}")
    })
    .await;
    let json = dir.path().join("r.json");
    let o = replay_run(
        &rec,
        &server.url(),
        &server.url(),
        &[&"--no-noise-probe", &"--json", &json.display()],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["identical"], 1, "{:#}", r["summary"]);
    assert_eq!(r["summary"]["skipped"], 2);
    assert_eq!(r["summary"]["baseline_error"], 0);
    assert_eq!(r["summary"]["skipped_reasons"]["unsendable"], 2);
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["/users/1".to_string(), "/users/1".to_string()]
    );
    let i = interface(&r, "GET /users/{id}");
    assert_eq!(i["errors"][0]["side"], "request", "{:#}", i["errors"]);
    assert_eq!(i["errors"][0]["count"], 2);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("unsendable: 2") && stdout.contains("cannot go on an HTTP connection"),
        "{stdout}"
    );
}

/// A noise probe that gets no answer loses only the noise sample, and the terminal report
/// says so (before, only the JSON and HTML reports did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_noise_probe_is_told_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let items = numbered_gets(4, "/users");
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let ok = TestServer::start(|_| Answer::json(200, "{}")).await;
    let slow = late_server(1200).await;
    let o = replay_run(
        &rec,
        &ok.url(),
        &ok.url(),
        &[&"--secondary", &slow.url(), &"--timeout", &"300ms"],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("warning: the noise probe failed, or answered with another status than the baseline, for 4 exchanges")
            && stdout.contains("timeout"),
        "{stdout}"
    );
}

/// A noise probe that answers with another status (an overloaded or refusing second
/// baseline) measures nothing about fields: a real change still fails the run, a candidate
/// 404 is not explained by the probe's 503, and the reports say the probe was unusable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_answering_with_another_status_explains_nothing_but_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let items = numbered_gets(20, "/prod");
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let base = TestServer::start(|_| Answer::json(200, r#"{"price":42.5,"name":"a"}"#)).await;
    let cand = TestServer::start(|_| Answer::json(200, r#"{"price":"42.5","name":"a"}"#)).await;
    let gone = TestServer::start(|_| Answer::json(404, r#"{"error":"not found"}"#)).await;
    let busy = TestServer::start(|_| Answer::json(503, r#"{"error":"overloaded"}"#)).await;
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[missing_rule]\nbody = \"no route\"\n").unwrap();
    for (candidate, what) in [(&cand, "$.price"), (&gone, "200 → 404")] {
        let json = dir.path().join("r.json");
        let o = replay_run(
            &rec,
            &base.url(),
            &candidate.url(),
            &[
                &"--secondary",
                &busy.url(),
                &"--config",
                &cfg.display(),
                &"--json",
                &json.display(),
            ],
        )
        .await;
        assert_eq!(o.status.code(), Some(1), "{what}: {}", describe(&o));
        let r = read_json(&json);
        assert_counts_consistent(&r);
        assert_eq!(r["summary"]["different"], 20, "{what}: {:#}", r["summary"]);
        let i = interface(&r, "GET /prod/{id}");
        let flagged: Vec<&str> = ["fields", "status"]
            .iter()
            .flat_map(|k| i[k].as_array().unwrap())
            .filter(|p| p["regression"] == true)
            .map(|p| p["path"].as_str().unwrap())
            .collect();
        assert!(flagged.contains(&what), "{what}: {flagged:?}");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains("answered with another status than the baseline, for 20 exchanges")
                && stdout.contains("answered 503 where the baseline answered 200"),
            "{stdout}"
        );
    }
}

/// The default probe repeats only safe requests on the baseline (a second POST answers
/// "already done", which is no measure of noise), and sends the candidate the same second
/// request at the same moment, so both carry the same load; a `--secondary` of its own gets
/// every request once, as the baseline and candidate do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_is_asked_twice_only_for_safe_requests_and_the_candidate_as_often() {
    let dir = tempfile::tempdir().unwrap();
    let mut items: Vec<_> = (0..10)
        .map(|i| get(&format!("g{i}"), &format!("/items/{i}"), i))
        .collect();
    for i in 0..10 {
        let mut e = get(&format!("p{i}"), "/orders", 100 + i);
        e.request.method = "POST".into();
        e.request.body = bytes::Bytes::from(format!(r#"{{"key":{i}}}"#));
        items.push(e);
    }
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let counter = |n: Arc<Mutex<HashMap<String, u64>>>| {
        move |s: Seen| {
            *n.lock().unwrap().entry(s.method.clone()).or_default() += 1;
            Answer::json(200, "{}")
        }
    };
    // The baseline answers a repeated order as a duplicate; the candidate fails every order.
    let seen_keys = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let base_counts = Arc::new(Mutex::new(HashMap::new()));
    let (bk, bc) = (seen_keys.clone(), base_counts.clone());
    let base = TestServer::start(move |s| {
        *bc.lock().unwrap().entry(s.method.clone()).or_default() += 1;
        if s.method == "POST" {
            if !bk.lock().unwrap().insert(s.body.clone()) {
                return Answer::json(409, r#"{"error":"duplicate"}"#);
            }
            return Answer::json(201, "{}");
        }
        Answer::json(200, "{}")
    })
    .await;
    let cand_counts = Arc::new(Mutex::new(HashMap::new()));
    let cc = cand_counts.clone();
    let cand = TestServer::start(move |s| {
        *cc.lock().unwrap().entry(s.method.clone()).or_default() += 1;
        if s.method == "POST" {
            return Answer::json(500, r#"{"error":"boom"}"#);
        }
        Answer::json(200, "{}")
    })
    .await;
    let json = dir.path().join("r.json");
    let o = replay_run(
        &rec,
        &base.url(),
        &cand.url(),
        &[&"--allow-side-effects", &"--json", &json.display()],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_eq!(r["summary"]["different"], 10, "{:#}", r["summary"]);
    let i = interface(&r, "POST /orders");
    assert_eq!(i["status"][0]["path"], "201 → 500");
    assert_eq!(i["status"][0]["regression"], true);
    let counts = |m: &Arc<Mutex<HashMap<String, u64>>>| {
        let m = m.lock().unwrap();
        (m.get("GET").copied(), m.get("POST").copied())
    };
    assert_eq!(counts(&base_counts), (Some(20), Some(10)));
    assert_eq!(counts(&cand_counts), (Some(20), Some(10)));

    // A secondary of its own gets every request once; the candidate no second one.
    let sec_counts = Arc::new(Mutex::new(HashMap::new()));
    let secondary = TestServer::start(counter(sec_counts.clone())).await;
    let (b2, c2) = (
        Arc::new(Mutex::new(HashMap::new())),
        Arc::new(Mutex::new(HashMap::new())),
    );
    let base2 = TestServer::start(counter(b2.clone())).await;
    let cand2 = TestServer::start(counter(c2.clone())).await;
    let o = replay_run(
        &rec,
        &base2.url(),
        &cand2.url(),
        &[&"--secondary", &secondary.url(), &"--allow-side-effects"],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(counts(&sec_counts), (Some(10), Some(10)));
    assert_eq!(counts(&b2), (Some(10), Some(10)));
    assert_eq!(counts(&c2), (Some(10), Some(10)));
}

/// A run in which the baseline answered nothing compared nothing: it fails, whatever
/// `--fail-on` lists, says so in its headline, and lists the candidate's own failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_compared_nothing_fails_and_keeps_the_candidates_failures() {
    let dir = tempfile::tempdir().unwrap();
    let items = numbered_gets(6, "/users");
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let slow = || {
        TestServer::start_delayed(|_| {
            (
                Answer::json(200, "{}"),
                Some(std::time::Duration::from_millis(1500)),
            )
        })
    };
    let (base, cand) = (slow().await, slow().await);
    let json = dir.path().join("r.json");
    let o = replay_run(
        &rec,
        &base.url(),
        &cand.url(),
        &[
            &"--timeout",
            &"200ms",
            &"--fail-on",
            &"missing_rule",
            &"--json",
            &json.display(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["baseline_error"], 6);
    let gates = r["gate_failures"].to_string();
    assert!(
        gates.contains("nothing compared") && gates.contains("the candidate failed on 6"),
        "{gates}"
    );
    let i = interface(&r, "GET /users/{id}");
    let sides: Vec<&str> = i["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["side"].as_str().unwrap())
        .collect();
    assert!(
        sides.contains(&"candidate") && sides.contains(&"baseline"),
        "{sides:?}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.starts_with("FAIL: nothing was compared, the baseline gave no usable answer"),
        "{stdout}"
    );
}

/// A rare interface whose candidate is much slower is not flagged on a handful of pairs
/// (the latency rule needs 20), but the report says it looked slower instead of only "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_interface_that_looks_slower_is_named_though_not_judged() {
    let dir = tempfile::tempdir().unwrap();
    let items = numbered_gets(5, "/few");
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let fast = TestServer::start(|_| Answer::json(200, "{}")).await;
    let slow = late_server(150).await;
    let md = dir.path().join("r.md");
    let html = dir.path().join("r.html");
    let o = replay_run(
        &rec,
        &fast.url(),
        &slow.url(),
        &[
            &"--no-noise-probe",
            &"--markdown",
            &md.display(),
            &"--html",
            &html.display(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(
            "warning: slower, but over fewer than 20 pairs, so not judged: GET /few/{id}"
        ) && stdout.contains("over 5 pairs"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("fewer than 20 pairs"), "{md}");
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("slower, but over fewer than 20 pairs, so not judged"));
}

/// `--diffs -` streams the differences to standard output, and nothing else goes there: the
/// terminal report would run into the JSON lines a program reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differences_on_standard_output_are_only_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let items = numbered_gets(3, "/users");
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let base = TestServer::start(|_| Answer::json(200, r#"{"a":1}"#)).await;
    let cand = TestServer::start(|_| Answer::json(200, r#"{"a":2}"#)).await;
    let o = replay_run(&rec, &base.url(), &cand.url(), &[&"--diffs", &"-"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{stdout}")))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
}

/// A request recorded with its connection's framing (`transfer-encoding: chunked`, a stale
/// `content-length`) and `expect: 100-continue`, as a tap records an upload: replayed over
/// HTTP/1.1 and over h2c, each server gets the body whole with its true length, and the two
/// sides agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_upload_is_replayed_with_its_own_framing_over_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = get("up", "/upload", 1);
    e.request.method = "POST".into();
    e.request.headers.extend([
        ("content-type".to_string(), "application/json".to_string()),
        ("expect".to_string(), "100-continue".to_string()),
        ("transfer-encoding".to_string(), "chunked".to_string()),
        ("content-length".to_string(), "999".to_string()),
    ]);
    e.request.body = bytes::Bytes::from_static(br#"{"a":1}"#);
    let rec = write_recording(&dir.path().join("r.jsonl"), &[e]);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let server = TestServer::start(move |s: Seen| {
        let len = s
            .headers
            .get("content-length")
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| "none".into());
        let te = s.headers.contains_key("transfer-encoding");
        log.lock().unwrap().push(format!(
            "{:?} {} length {len} chunked {te}",
            s.version,
            String::from_utf8_lossy(&s.body)
        ));
        Answer::json(200, r#"{"ok":true}"#)
    })
    .await;
    let json = dir.path().join("r.json");
    let (o, r) = replay_json(
        &rec,
        &server.url(),
        &format!("h2c://{}", server.addr),
        &json,
        &["--allow-side-effects", "--no-noise-probe"],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(r["summary"]["identical"], 1, "{r:#}");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            r#"HTTP/1.1 {"a":1} length 7 chunked false"#,
            r#"HTTP/2.0 {"a":1} length 7 chunked false"#,
        ]
    );
}

/// A text server whose first line is a fresh request id on every call, and whose second line
/// is `status=STATUS`.
fn text_status(status: &'static str) -> impl Fn(Seen) -> Answer + Send + Sync + 'static {
    move |_| Answer {
        status: 200,
        headers: vec![("content-type", "text/plain".into())],
        body: format!("req={}-{}\nstatus={status}\n", rand_hex(), rand_hex()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_on_one_text_line_does_not_explain_a_change_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<_> = (0..30)
        .map(|i| get(&format!("t{i}"), &format!("/health/{i}"), 1_000 + i))
        .collect();
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let ok = TestServer::start(text_status("OK")).await;
    let failing = TestServer::start(text_status("FAIL")).await;

    let diffs = dir.path().join("diffs.jsonl");
    let diffs_arg = diffs.display().to_string();
    let (o, r) = replay_json(
        &rec,
        &ok.url(),
        &failing.url(),
        &dir.path().join("r.json"),
        &["--diffs", &diffs_arg],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(r["verdict"], "fail");
    let health = interface(&r, "GET /health/{id}");
    assert_eq!(health["different"], 30, "{health:#}");
    let fields = health["fields"].as_array().unwrap();
    let status = fields.iter().find(|f| f["path"] == "body:line 2").unwrap();
    assert_eq!(status["regression"], true, "{fields:#?}");
    assert_eq!(status["example"]["baseline"], "status=OK");
    assert_eq!(status["example"]["candidate"], "status=FAIL");
    let req = fields.iter().find(|f| f["path"] == "body:line 1").unwrap();
    assert_eq!(
        (&req["regression"], &req["noise"]),
        (&false.into(), &30.into())
    );
    // Each exchange's diffs show the changed line, not only the volatile one.
    let t0 = std::fs::read_to_string(&diffs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["id"] == "t0")
        .unwrap();
    let paths: Vec<&str> = t0["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["body:line 1", "body:line 2"], "{t0:#}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("body:line 2"), "{stdout}");

    // The baseline against itself: the volatile line is noise on both sides, and it passes.
    let (o, r) = replay_json(&rec, &ok.url(), &ok.url(), &dir.path().join("aa.json"), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(r["summary"]["noise_only"], 30, "{:#}", r["summary"]);
}

/// The number in a path like `/slow/17`.
fn path_number(s: &Seen) -> u64 {
    s.path_and_query
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tail_is_flagged_by_the_tail_rule_and_jitter_on_both_sides_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<_> = (0..200)
        .map(|i| get(&format!("s{i}"), &format!("/slow/{i}"), 1_000 + i))
        .collect();
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let fast = TestServer::start(|_| Answer::json(200, "{}")).await;
    // One request in ten takes 400 ms: the median does not move, the p99 does.
    let tail = TestServer::start_delayed(|s| {
        let late = path_number(&s) % 10 == 0;
        (
            Answer::json(200, "{}"),
            late.then(|| std::time::Duration::from_millis(400)),
        )
    })
    .await;
    let md = dir.path().join("r.md");
    let html = dir.path().join("r.html");
    let (o, r) = replay_json(
        &rec,
        &fast.url(),
        &tail.url(),
        &dir.path().join("r.json"),
        &[
            "--markdown",
            md.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let l = &interface(&r, "GET /slow/{id}")["latency"];
    assert_eq!(l["regression"], true, "{l:#}");
    assert_eq!(l["rules"], serde_json::json!(["tail"]), "{l:#}");
    assert!(
        l["candidate"]["p99_us"].as_u64().unwrap() >= 400_000,
        "{l:#}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("slower by the tail rule (p99 "), "{stdout}");
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("by the tail rule (p99 "), "{md}");
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("Slower by the tail rule (p99 "), "{html}");

    // Two identical servers, each with its own jitter and occasional spikes: never slower.
    let jittery = || {
        TestServer::start_delayed(|_| {
            let ms = if rand::random::<u8>() % 25 == 0 {
                rand::random::<u64>() % 150 + 50
            } else {
                rand::random::<u64>() % 15
            };
            (
                Answer::json(200, "{}"),
                Some(std::time::Duration::from_millis(ms)),
            )
        })
    };
    let (a, b) = (jittery().await, jittery().await);
    let (o, r) = replay_json(&rec, &a.url(), &b.url(), &dir.path().join("aa.json"), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let l = &interface(&r, "GET /slow/{id}")["latency"];
    assert_eq!(l["regression"], false, "{l:#}");
    assert_eq!(l["rules"], serde_json::json!([]), "{l:#}");
}

/// `n` exchanges against a baseline and a candidate that hold each answer `delay`,
/// `--concurrency c` over two replay workers: for each request the baseline got, in arrival
/// order, how many requests it held at that moment (itself included).
async fn held_at_each_arrival(n: i64, c: usize, delay: std::time::Duration) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<_> = (0..n)
        .map(|i| get(&format!("e{i}"), &format!("/users/{i}"), i * 1000))
        .collect();
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let base = TestServer::start_delayed(move |_| {
        seen.lock().unwrap().push(std::time::Instant::now());
        (Answer::json(200, r#"{"ok":true}"#), Some(delay))
    })
    .await;
    let cand =
        TestServer::start_delayed(move |_| (Answer::json(200, r#"{"ok":true}"#), Some(delay)))
            .await;
    let c = c.to_string();
    let (o, r) = replay_json(
        &rec,
        &base.url(),
        &cand.url(),
        &dir.path().join("result.json"),
        &["--concurrency", &c, "--threads", "2", "--no-noise-probe"],
    )
    .await;
    assert!(o.status.code() == Some(0), "{}", describe(&o));
    assert_eq!(r["summary"]["identical"], n, "{r}");
    let mut at = arrivals.lock().unwrap().clone();
    at.sort();
    // Every request is held `delay` from its arrival, so those that arrived less than
    // `delay` before this one are still held when it comes.
    (0..at.len())
        .map(|i| at[..=i].iter().filter(|t| at[i] - **t < delay).count())
        .collect()
}

/// The concurrency asked for holds whatever the run's size: a batch the reader hands one
/// worker can hold more jobs than that worker has slots, and those must not wait for its
/// slots while the other worker's stand idle. Judged by how many requests the baseline
/// holds at once, which does not depend on how fast this machine is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_asked_for_holds_in_small_runs_and_at_the_end_of_a_run() {
    let delay = std::time::Duration::from_millis(500);
    // 16 exchanges, 16 at once: all held together (one worker starting 8 and holding the
    // other 8 back would never go past 8).
    let held = held_at_each_arrival(16, 16, delay).await;
    assert_eq!(held.iter().max(), Some(&16), "{held:?}");
    // 48 exchanges, 16 at once: the last round too goes past what one worker's 8 slots
    // could hold, and no moment exceeds the 16 asked for.
    let held = held_at_each_arrival(48, 16, delay).await;
    assert!(held.iter().all(|h| *h <= 16), "{held:?}");
    let last_round = &held[held.len() - 16..];
    assert!(
        last_round.iter().any(|h| *h > 8),
        "the last round was held behind one worker: {held:?}"
    );
}

/// The gateway product's own header changes on every interface (`server`): one gateway-wide
/// finding in the result JSON and at the top of the terminal and Markdown reports, with the
/// ignore line that accepts it, instead of one line under each interface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_changed_on_every_interface_is_one_gateway_wide_finding() {
    let product = |name: &'static str| {
        move |_: Seen| {
            let mut a = Answer::json(200, r#"{"ok":true}"#);
            a.headers.push(("server", name.to_string()));
            a
        }
    };
    let old = TestServer::start(product("nginx/1.22.1")).await;
    let new = TestServer::start(product("haproxy")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut items = Vec::new();
    for path in ["/a", "/b", "/c", "/d"] {
        items.extend(numbered_gets(10, path).into_iter().map(|mut e| {
            e.id = format!("{path}-{}", e.id);
            e
        }));
    }
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let json = dir.path().join("r.json");
    let md = dir.path().join("r.md");
    let o = replay_run(
        &rec,
        &old.url(),
        &new.url(),
        &[&"--json", &json.display(), &"--markdown", &md.display()],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_valid_result(&r);
    let g = &r["gateway_wide"];
    assert_eq!(g.as_array().map(Vec::len), Some(1), "{g:#}");
    assert_eq!(
        (
            &g[0]["header"],
            &g[0]["baseline"],
            &g[0]["candidate"],
            &g[0]["of"]
        ),
        (
            &"server".into(),
            &"nginx/1.22.1".into(),
            &"haproxy".into(),
            &4.into()
        )
    );
    assert_eq!(g[0]["interfaces"].as_array().map(Vec::len), Some(4));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        text.matches("gateway-wide: header server").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains(r#"[[ignore]] headers = ["server"]"#),
        "{text}"
    );
    assert!(!text.contains("header server: differed"), "{text}");
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.contains("gateway-wide: header server"), "{md}");
}

/// Baseline and candidate the same server: the candidate is the slower of a pair about as
/// often as the baseline. The two requests of a pair go out, and their answers are read,
/// one after the other on one thread; served always in the same order, one side was the
/// faster in 98% of 3,000 pairs here, which turns the latency rules' sign tests (meant to
/// tell a slower target from jitter) into a test of that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a_a_run_finds_neither_side_faster_in_most_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let items = numbered_gets(600, "/users");
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let server = TestServer::start(|_| Answer::json(200, r#"{"ok":true}"#)).await;
    let json = dir.path().join("r.json");
    let (o, r) = replay_json(
        &rec,
        &server.url(),
        &server.url(),
        &json,
        &["--threads", "1", "--concurrency", "8", "--no-noise-probe"],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let (mut slower, mut faster) = (0.0, 0.0);
    for i in r["interfaces"].as_array().unwrap() {
        let p = &i["latency"]["paired"];
        let count = p["count"].as_f64().unwrap();
        slower += p["slower_share"].as_f64().unwrap() * count;
        faster += p["faster"].as_f64().unwrap();
    }
    let share = slower / (slower + faster);
    // Two equal servers: a half, give or take what 600 pairs allow (0.25 is 12 standard
    // deviations away).
    assert!(
        (0.25..=0.75).contains(&share),
        "the candidate was the slower in {share:.3} of the pairs with a difference ({slower} slower, {faster} faster)"
    );
}
