//! An RPC gateway rebuilt on an allow-list, replayed end to end: every call is a POST, every
//! answer is noisy, and five changes are planted in the new gateway. The backend is an
//! in-process hyper server answering `POST /rpc/<service>/<Method>`; the old gateway is
//! nginx forwarding `/rpc/` by prefix; the new one is haproxy serving only the paths listed
//! in a file built from monitoring. The recording is made at the start of each test by
//! sending its requests through the old gateway, so the answers it holds are real answers
//! with their own noise, from an earlier moment.
//!
//! The planted changes: two rare interfaces absent from the allow-list (`missing_rule`),
//! `Cache-Control` dropped on one interface, `*_cents` numbers sent as strings on one, and
//! one interface 40 ms slower. A run is scored by which of the five it flags and which other
//! interfaces it flags (falsely). `verdict_table` prints that score for each way of running
//! (`cargo test --test tests rpc::verdict_table -- --ignored --nocapture`).

use crate::util::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shadowdiff::exchange::{Exchange, Request, Response};
use shadowdiff::recording::format::{format_ts_us, now_us};
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every interface with how many exchanges of it the recording holds: hot reads often,
/// writes less, and the two that monitoring never saw only a handful of times.
const INTERFACES: [(&str, usize); 21] = [
    ("/rpc/catalog/GetItem", 120),
    ("/rpc/catalog/ListItems", 60),
    ("/rpc/catalog/SearchItems", 60),
    ("/rpc/catalog/GetPrice", 80),
    ("/rpc/catalog/QueryCategories", 30),
    ("/rpc/orders/GetOrder", 80),
    ("/rpc/orders/ListOrders", 50),
    ("/rpc/orders/CreateOrder", 40),
    ("/rpc/orders/UpdateOrder", 30),
    ("/rpc/orders/QueryOrderStatus", 40),
    ("/rpc/users/GetUser", 90),
    ("/rpc/users/ListUsers", 30),
    ("/rpc/users/UpdateProfile", 25),
    ("/rpc/users/GetPreferences", 4),
    ("/rpc/search/Search", 60),
    ("/rpc/search/QuerySuggest", 50),
    ("/rpc/search/SearchFacets", 30),
    ("/rpc/inventory/GetStock", 70),
    ("/rpc/inventory/ListWarehouses", 25),
    ("/rpc/inventory/UpdateStock", 30),
    ("/rpc/inventory/QueryReservations", 3),
];

/// The reads, declared as an RPC gateway's users declare them: by verb.
const READS: [&str; 4] = [
    "POST /rpc/*/Get*",
    "POST /rpc/*/List*",
    "POST /rpc/*/Search*",
    "POST /rpc/*/Query*",
];

/// Interfaces called too rarely to show up in a month of monitoring: the allow-list lacks them.
const UNLISTED: [&str; 2] = [
    "/rpc/users/GetPreferences",
    "/rpc/inventory/QueryReservations",
];
/// The new gateway drops `Cache-Control` from this interface's answers.
const UNCACHED: &str = "/rpc/catalog/GetItem";
/// Behind the new gateway, this interface's `*_cents` numbers come back as strings.
const STRINGLY: &str = "/rpc/orders/GetOrder";
/// Behind the new gateway, this interface answers 40 ms later.
const SLOW: &str = "/rpc/search/Search";
const SLOW_BY: Duration = Duration::from_millis(40);

/// The header the new gateway adds to every request it forwards: how the backend knows which
/// path a request took, so that a change can be confined to the new one.
const NEW_GATEWAY: (&str, &str) = ("x-gw", "new");

/// How old the capture is when it is replayed. Real captures are days old; the backend's
/// clock runs this far behind while the recording is made, so the recorded times are as far
/// from the replay's as a real capture's would be, and not a few seconds apart by chance.
const CAPTURE_AGE_US: i64 = 24 * 3600 * 1_000_000;

fn key(path: &str) -> String {
    format!("POST {path}")
}

fn hex(n: usize) -> String {
    let mut r = rand::thread_rng();
    (0..n)
        .map(|_| char::from_digit(r.gen_range(0..16), 16).unwrap())
        .collect()
}

fn uuid() -> String {
    format!("{}-{}-4{}-a{}-{}", hex(8), hex(4), hex(3), hex(3), hex(12))
}

fn token(prefix: &str) -> String {
    let mut r = rand::thread_rng();
    let s: String = (0..24)
        .map(|_| char::from(r.sample(rand::distributions::Alphanumeric)))
        .collect();
    format!("{prefix}{s}")
}

/// One catalog entry; everything in it follows from `n`, so two calls agree.
fn item(service: &str, n: u64) -> Value {
    let mut v = json!({
        "id": n,
        "name": format!("{service} item {n}"),
        "price_cents": 199 + n * 37 % 9000,
        "stock": n * 13 % 250,
    });
    if service == "orders" {
        v["qty"] = json!(1 + n % 4);
    }
    v
}

/// The real data of an answer, determined by the request alone.
fn data(service: &str, method: &str, id: u64) -> Value {
    let count = if method.starts_with("Get") { 1 } else { 3 };
    let items: Vec<Value> = (0..count).map(|k| item(service, id + k)).collect();
    let mut d = if method.starts_with("Create") || method.starts_with("Update") {
        json!({"id": id, "status": if method.starts_with("Create") { "created" } else { "updated" }, "item": items[0]})
    } else if count == 1 {
        json!({ "item": items[0] })
    } else {
        json!({ "items": items, "total": count })
    };
    if service == "orders" {
        let total: u64 = items
            .iter()
            .map(|i| i["price_cents"].as_u64().unwrap() * i["qty"].as_u64().unwrap())
            .sum();
        d["total_cents"] = json!(total);
    }
    d
}

/// Rewrites every `*_cents` number in `v` as a string: the planted type change.
fn cents_as_strings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k.ends_with("_cents") && x.is_number() {
                    *x = Value::String(x.to_string());
                } else {
                    cents_as_strings(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(cents_as_strings),
        _ => {}
    }
}

/// The backend both gateways forward to. Every answer carries what real services put in
/// theirs and no two calls share: a request id (header and body), the time as RFC 3339 and
/// as epoch milliseconds, a trace token, an access token, a paging cursor, and a set of tags
/// in no particular order. `age_us` sets its clock back (see [`CAPTURE_AGE_US`]).
fn backend(age_us: Arc<AtomicI64>) -> impl Fn(Seen) -> (Answer, Option<Duration>) + Send + Sync {
    move |s: Seen| {
        let path = s.path_and_query.split('?').next().unwrap_or("").to_string();
        let known = INTERFACES.iter().any(|(p, _)| *p == path);
        let Some((service, method)) = path.strip_prefix("/rpc/").and_then(|r| r.split_once('/'))
        else {
            return (Answer::json(404, r#"{"error":"no such service"}"#), None);
        };
        if !known {
            return (Answer::json(404, r#"{"error":"no such method"}"#), None);
        }
        if s.method != "POST" {
            return (Answer::json(405, r#"{"error":"POST only"}"#), None);
        }
        let body: Value = serde_json::from_slice(&s.body).unwrap_or(Value::Null);
        let id = body["id"].as_u64().unwrap_or(0);
        let new_path = s
            .headers
            .get(NEW_GATEWAY.0)
            .is_some_and(|v| v == NEW_GATEWAY.1);
        let mut d = data(service, method, id);
        if new_path && path == STRINGLY {
            cents_as_strings(&mut d);
        }
        let now = now_us() - age_us.load(Ordering::Relaxed);
        let rid = uuid();
        let mut tags: Vec<&str> = ["new", "sale", "eco", "bulk", "gift", "local"]
            .into_iter()
            .cycle()
            .skip(id as usize % 6)
            .take(4)
            .collect();
        tags.shuffle(&mut rand::thread_rng());
        let answer = json!({
            "request_id": rid,
            "time": format_ts_us(now),
            "server_time_ms": now / 1000,
            "trace": hex(32),
            "session": {"access_token": token("at_")},
            "cursor": token("q_"),
            "tags": tags,
            "data": d,
        });
        let write = method.starts_with("Create") || method.starts_with("Update");
        let cache = if write {
            "no-store"
        } else {
            "private, max-age=30"
        };
        let a = Answer {
            status: 200,
            headers: vec![
                ("content-type", "application/json".into()),
                ("cache-control", cache.into()),
                ("x-request-id", rid),
                ("server", "rpc-backend".into()),
            ],
            body: answer.to_string(),
        };
        let delay = (new_path && path == SLOW).then_some(SLOW_BY);
        (a, delay)
    }
}

/// The old gateway: every `/rpc/` path goes to the backend. The backend's `Server` header is
/// passed on (haproxy passes it too), so the two gateways differ only where a change was
/// planted.
fn nginx_body(backend: &TestServer) -> String {
    format!(
        "    location /rpc/ {{\n      proxy_pass http://{};\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_pass_header Server;\n    }}\n    location / {{ return 404 '{{\"error\":\"no route\"}}'; }}",
        backend.addr
    )
}

/// The new gateway: only the paths in `allow` are served (404 otherwise, its no-route
/// answer), every forwarded request says it came this way, and `Cache-Control` is dropped
/// from one interface's answers.
fn haproxy_body(backend: &TestServer, allow: &std::path::Path) -> String {
    format!(
        "  acl listed path -f {allow}\n  http-request deny deny_status 404 unless listed\n  http-request set-header {h} {v}\n  http-request set-var(txn.path) path\n  http-response del-header cache-control if {{ var(txn.path) -m str {UNCACHED} }}\n  default_backend rpc\nbackend rpc\n  server app {addr}\n",
        allow = allow.display(),
        h = NEW_GATEWAY.0,
        v = NEW_GATEWAY.1,
        addr = backend.addr,
    )
}

/// One request of the recording: its path and JSON body.
fn requests() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (k, (path, n)) in INTERFACES.iter().enumerate() {
        for i in 0..*n {
            let id = 1000 + (k * 7919 + i * 104_729) % 5000;
            out.push((*path, json!({"id": id, "tenant": "shop-eu"}).to_string()));
        }
    }
    // Interleaved the same way every run, so runs compare like with like.
    out.shuffle(&mut rand::rngs::StdRng::seed_from_u64(19));
    out
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one recorded-style request to `base` and returns what came back and how long it
/// took to come back whole.
async fn call(c: &HttpClient, base: &str, path: &str, body: &str) -> (Response, u64) {
    let req = http::Request::post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let start = Instant::now();
    let resp = c.request(req).await.expect("gateway answers");
    let (parts, b) = resp.into_parts();
    let body = b.collect().await.expect("whole answer").to_bytes();
    let latency_us = start.elapsed().as_micros() as u64;
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let r = Response {
        status: parts.status.as_u16(),
        headers,
        trailers: None,
        body,
        body_truncated: false,
    };
    (r, latency_us)
}

/// Makes the recording: every request goes through `gateway` (production at capture time)
/// and is written with the answer it got and its latency, in the order it reached the gateway.
async fn capture(gateway: &str, age_us: &AtomicI64, path: &std::path::Path) -> PathBuf {
    const WORKERS: usize = 8;
    let reqs = Arc::new(requests());
    let age = age_us.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (reqs, base, c) = (reqs.clone(), gateway.to_string(), client());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (w..reqs.len()).step_by(WORKERS) {
                let (uri, body) = &reqs[i];
                let ts_us = now_us() - age;
                let (response, latency) = call(&c, &base, uri, body).await;
                out.push(Exchange {
                    id: format!("x{i:04}"),
                    ts_us,
                    interface: None,
                    tenant: None,
                    request: Request {
                        method: "POST".into(),
                        uri: uri.to_string(),
                        version: "HTTP/1.1".into(),
                        headers: vec![
                            ("host".into(), "rpc.prod.example".into()),
                            ("content-type".into(), "application/json".into()),
                        ],
                        body: Bytes::from(body.clone()),
                        body_truncated: false,
                        tls: None,
                    },
                    response: Some(response),
                    latency_us: Some(latency),
                });
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|e| e.ts_us);
    write_recording(path, &all)
}

/// Backend, gateways and recording of one test.
struct Scenario {
    old: Nginx,
    /// A second instance of the old gateway, for runs of the old against itself.
    old_again: Nginx,
    new: Haproxy,
    rec: PathBuf,
    dir: tempfile::TempDir,
    _backend: TestServer,
}

impl Scenario {
    /// `None` when nginx or haproxy is missing and not required.
    async fn start() -> Option<Scenario> {
        let nginx = nginx_binary()?;
        let haproxy = haproxy_binary()?;
        let age = Arc::new(AtomicI64::new(CAPTURE_AGE_US));
        let backend = TestServer::start_delayed(backend(age.clone())).await;
        let dir = tempfile::tempdir().unwrap();
        // The allow-list is what a month of monitoring saw.
        let allow = dir.path().join("allow.lst");
        let monitored: Vec<&str> = INTERFACES
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !UNLISTED.contains(p))
            .collect();
        std::fs::write(&allow, monitored.join("\n") + "\n").unwrap();
        let (ob, hb) = (nginx_body(&backend), haproxy_body(&backend, &allow));
        // The helpers wait for the port in a blocking loop; off the runtime so the backend
        // keeps serving.
        let (old, old_again, new) = tokio::task::spawn_blocking(move || {
            (
                Nginx::start(&nginx, &ob),
                Nginx::start(&nginx, &ob),
                Haproxy::start(&haproxy, &hb),
            )
        })
        .await
        .unwrap();
        let rec = capture(&old.url(), &age, &dir.path().join("rpc.jsonl")).await;
        age.store(0, Ordering::Relaxed);
        Some(Scenario {
            old,
            old_again,
            new,
            rec,
            dir,
            _backend: backend,
        })
    }
}

/// The ways of running replay that the table compares.
#[derive(Clone, Copy, Debug)]
enum How {
    /// Old against new, no flags.
    Defaults,
    /// Old against new, POSTs replayed.
    SideEffects,
    /// Old against new, POSTs replayed, a second old instance as the noise probe.
    SideEffectsSecondary,
    /// Old against a second instance of itself, POSTs replayed: nothing may be flagged.
    AA,
    /// Old against new, the reads declared safe, writes not replayed.
    Safe,
}

impl How {
    fn label(self) -> &'static str {
        match self {
            How::Defaults => "nginx vs haproxy, defaults",
            How::SideEffects => "nginx vs haproxy, --allow-side-effects",
            How::SideEffectsSecondary => {
                "nginx vs haproxy, --allow-side-effects --secondary nginx2"
            }
            How::AA => "A/A nginx vs nginx2, --allow-side-effects",
            How::Safe => "nginx vs haproxy, --safe for Get*, List*, Search*, Query*",
        }
    }
}

async fn run(s: &Scenario, how: How) -> (Output, Value) {
    let json = s.dir.path().join(format!("{how:?}.json"));
    let second = s.old_again.url();
    let (candidate, extra): (String, Vec<&str>) = match how {
        How::Defaults => (s.new.url(), vec![]),
        How::SideEffects => (s.new.url(), vec!["--allow-side-effects"]),
        How::SideEffectsSecondary => (
            s.new.url(),
            vec!["--allow-side-effects", "--secondary", &second],
        ),
        How::AA => (second.clone(), vec!["--allow-side-effects"]),
        How::Safe => (
            s.new.url(),
            READS.iter().flat_map(|g| ["--safe", g]).collect(),
        ),
    };
    replay_json(&s.rec, &s.old.url(), &candidate, &json, &extra).await
}

fn regressed(paths: &Value) -> Vec<String> {
    paths
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["regression"] == true)
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect()
}

/// Everything a result flags on one interface, as short words.
fn flags(i: &Value) -> Vec<String> {
    let mut f = Vec::new();
    if i["missing_rule"].as_u64().unwrap() > 0 {
        f.push("missing_rule".into());
    }
    if i["different"].as_u64().unwrap() > 0 {
        f.push(format!("different {}", i["different"]));
    }
    for kind in ["status", "headers", "fields"] {
        f.extend(
            regressed(&i[kind])
                .into_iter()
                .map(|p| format!("{kind} {p}")),
        );
    }
    if i["latency"]["regression"] == true {
        f.push("latency".into());
    }
    let errors = i["candidate_error"].as_u64().unwrap() + i["baseline_error"].as_u64().unwrap();
    if errors > 0 {
        f.push(format!("errors {errors}"));
    }
    f
}

/// One planted change: where, its name in the table, the flag that finds it, and which
/// flags on its interface it accounts for (a dropped header also makes exchanges differ).
struct Planted {
    path: &'static str,
    name: &'static str,
    finds: fn(&str) -> bool,
    explains: fn(&str) -> bool,
}

fn planted() -> [Planted; 5] {
    let missing = |f: &str| f == "missing_rule";
    [
        Planted {
            path: UNLISTED[0],
            name: "missing GetPreferences",
            finds: missing,
            explains: missing,
        },
        Planted {
            path: UNLISTED[1],
            name: "missing QueryReservations",
            finds: missing,
            explains: missing,
        },
        Planted {
            path: UNCACHED,
            name: "cache-control",
            finds: |f| f == "headers cache-control",
            explains: |f| f == "headers cache-control" || f.starts_with("different "),
        },
        Planted {
            path: STRINGLY,
            name: "price_cents",
            finds: |f| f.starts_with("fields $.") && f.ends_with("price_cents"),
            explains: |f| {
                (f.starts_with("fields $.") && f.ends_with("_cents")) || f.starts_with("different ")
            },
        },
        Planted {
            path: SLOW,
            name: "latency",
            finds: |f| f == "latency",
            explains: |f| f == "latency",
        },
    ]
}

/// How a result scores against the planted changes.
struct Score {
    /// Names of the planted changes it flagged.
    found: Vec<&'static str>,
    /// Interfaces with nothing planted that it flagged, with what it flagged.
    false_flags: Vec<(String, Vec<String>)>,
    /// Flags on the changed interfaces that their change does not account for.
    stray: Vec<(String, Vec<String>)>,
}

impl Score {
    /// `changed`: whether the candidate is the new gateway (else nothing was planted, and
    /// every flag is false).
    fn of(r: &Value, changed: bool) -> Score {
        let planted = planted();
        let mut s = Score {
            found: Vec::new(),
            false_flags: Vec::new(),
            stray: Vec::new(),
        };
        for i in r["interfaces"].as_array().unwrap() {
            let name = i["interface"].as_str().unwrap().to_string();
            let f = flags(i);
            let here = planted.iter().find(|p| changed && key(p.path) == name);
            match here {
                None if f.is_empty() => {}
                None => s.false_flags.push((name, f)),
                Some(p) => {
                    if f.iter().any(|x| (p.finds)(x)) {
                        s.found.push(p.name);
                    }
                    let other: Vec<String> = f.into_iter().filter(|x| !(p.explains)(x)).collect();
                    if !other.is_empty() {
                        s.stray.push((name, other));
                    }
                }
            }
        }
        s
    }
}

/// The recording holds every interface, all answered by the old gateway, all noisy.
fn check_recording(s: &Scenario) {
    let text = std::fs::read_to_string(&s.rec).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let total: usize = INTERFACES.iter().map(|(_, n)| n).sum();
    assert_eq!(lines.len(), total);
    for l in &lines {
        assert_eq!(l["request"]["method"], "POST");
        assert_eq!(l["response"]["status"], 200, "{l:#}");
        let body: Value = serde_json::from_str(l["response"]["body"].as_str().unwrap()).unwrap();
        let t = body["server_time_ms"].as_i64().unwrap();
        // Made a day before the replay, as a real capture is older than the replay.
        assert!(now_us() / 1000 - t > CAPTURE_AGE_US / 1000 / 2, "{body}");
        assert!(body["cursor"].as_str().unwrap().starts_with("q_"));
    }
}

/// What the harness itself must do, whatever replay makes of it: the gateways answer the
/// same data with different noise; the new gateway refuses the unlisted interfaces, drops
/// `Cache-Control` on one, sends cents as strings on one, and is slower on one; and a
/// replay with POSTs allowed sees all of that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_scenario_plants_five_changes_a_replay_can_see() {
    let Some(s) = Scenario::start().await else {
        return;
    };
    check_recording(&s);
    let c = client();
    let body = r#"{"id":1234,"tenant":"shop-eu"}"#;
    let (old, _) = call(&c, &s.old.url(), UNCACHED, body).await;
    let (new, _) = call(&c, &s.new.url(), UNCACHED, body).await;
    assert_eq!((old.status, new.status), (200, 200));
    let (ob, nb): (Value, Value) = (
        serde_json::from_slice(&old.body).unwrap(),
        serde_json::from_slice(&new.body).unwrap(),
    );
    assert_eq!(ob["data"], nb["data"]);
    assert_ne!(ob["request_id"], nb["request_id"]);
    let has_cache = |r: &Response| r.headers.iter().any(|(k, _)| k == "cache-control");
    assert!(has_cache(&old) && !has_cache(&new));
    for unlisted in UNLISTED {
        assert_eq!(call(&c, &s.old.url(), unlisted, body).await.0.status, 200);
        assert_eq!(call(&c, &s.new.url(), unlisted, body).await.0.status, 404);
    }
    let (old, _) = call(&c, &s.old.url(), STRINGLY, body).await;
    let (new, _) = call(&c, &s.new.url(), STRINGLY, body).await;
    let price = |r: &Response| {
        serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["item"]["price_cents"].clone()
    };
    assert!(price(&old).is_u64() && price(&new).is_string());

    // Nothing declared, nothing allowed: every exchange is skipped, and a run that
    // compared nothing does not pass.
    let (o, r) = run(&s, How::Defaults).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let failures = r["gate_failures"].to_string();
    assert!(
        failures.contains("nothing compared") && failures.contains("--safe"),
        "{failures}"
    );

    let (o, r) = run(&s, How::SideEffects).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let total: usize = INTERFACES.iter().map(|(_, n)| n).sum();
    assert_eq!(r["summary"]["total"], total);
    assert_eq!(r["summary"]["skipped"], 0);
    assert_eq!(r["summary"]["interfaces"], INTERFACES.len());
    for (path, n) in INTERFACES {
        let i = interface(&r, &key(path));
        let missing = if UNLISTED.contains(&path) { n } else { 0 };
        assert_eq!(i["missing_rule"], missing, "{path}");
    }
    let score = Score::of(&r, true);
    assert_eq!(score.found.len(), planted().len(), "{:?}", score.found);
    let slow = &interface(&r, &key(SLOW))["latency"];
    let p50 = |side: &str| slow[side]["p50_us"].as_u64().unwrap();
    assert!(p50("candidate") >= p50("baseline") + 30_000, "{slow:#}");
}

/// With POSTs replayed and no second baseline, the recorded answers are the only noise
/// sample there is; with them, exactly the five planted changes are flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_side_effects_allowed_exactly_the_planted_changes_are_flagged() {
    let Some(s) = Scenario::start().await else {
        return;
    };
    let (o, r) = run(&s, How::SideEffects).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let score = Score::of(&r, true);
    assert_eq!(score.found.len(), planted().len(), "{:?}", score.found);
    assert!(score.false_flags.is_empty(), "{:#?}", score.false_flags);
    assert!(score.stray.is_empty(), "{:#?}", score.stray);
    // The report says what measured the noise of the regressing field (its prose wraps at
    // the report's width, so words are compared, not line breaks).
    let text = words(&o.stdout);
    assert!(
        text.contains("(noise from the recording (its answer from capture time): 0 of "),
        "{text}"
    );
    // Every compared exchange had the recorded answer as its noise sample, and every path
    // says so.
    for (path, _) in INTERFACES.iter().filter(|(p, _)| !UNLISTED.contains(p)) {
        let i = interface(&r, &key(path));
        assert_eq!(
            i["noise_samples"]["recording"], i["compared"],
            "{path}: {i:#}"
        );
        assert!(i.get("unmeasured").is_none(), "{path}: {i:#}");
        for p in i["fields"].as_array().unwrap() {
            assert_eq!(p["noise_source"], "recording", "{p:#}");
        }
    }
}

/// The reads declared with `--safe`, no `--allow-side-effects`: the reads are replayed and
/// asked twice like GETs, so all five changes (each on a read) are found and nothing else;
/// the writes are skipped and counted, and the report says which interfaces were not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_reads_are_judged_and_the_writes_skipped_and_counted() {
    let Some(s) = Scenario::start().await else {
        return;
    };
    let (o, r) = run(&s, How::Safe).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let score = Score::of(&r, true);
    assert_eq!(score.found.len(), planted().len(), "{:?}", score.found);
    assert!(score.false_flags.is_empty(), "{:#?}", score.false_flags);
    let writes: Vec<(&str, usize)> = INTERFACES
        .iter()
        .copied()
        .filter(|(p, _)| p.contains("/Create") || p.contains("/Update"))
        .collect();
    let skipped: usize = writes.iter().map(|(_, n)| n).sum();
    assert_eq!(r["summary"]["skipped"], skipped);
    assert_eq!(r["summary"]["skipped_reasons"]["side_effect"], skipped);
    for (path, n) in &writes {
        let i = interface(&r, &key(path));
        assert_eq!(
            (&i["skipped"], &i["side_effecting"]),
            (&(*n).into(), &(*n).into())
        );
    }
    let read = interface(&r, &key("/rpc/users/GetUser"));
    assert_eq!(
        read["noise_samples"]["baseline"], read["compared"],
        "{read:#}"
    );
    assert!(read.get("side_effecting").is_none(), "{read:#}");
    // The terminal report names the writes that were not asked twice.
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("4 interfaces may change state and were never asked twice"),
        "{text}"
    );
}

/// The old gateway against a second instance of itself, POSTs replayed: a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_gateway_against_itself_passes() {
    let Some(s) = Scenario::start().await else {
        return;
    };
    let (o, r) = run(&s, How::AA).await;
    let score = Score::of(&r, false);
    assert!(score.false_flags.is_empty(), "{:#?}", score.false_flags);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
}

/// Flagged interfaces by short name, then the distinct kinds of flag they carry (the same
/// volatile fields tend to be flagged on every interface; one line says so).
fn briefly(flagged: &[(String, Vec<String>)]) -> String {
    if flagged.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = flagged
        .iter()
        .map(|(n, _)| n.rsplit('/').next().unwrap_or(n))
        .collect();
    let mut kinds: Vec<&str> = flagged
        .iter()
        .flat_map(|(_, f)| f.iter())
        .map(|f| {
            if f.starts_with("different ") {
                "different"
            } else {
                f.as_str()
            }
        })
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    format!(
        "{} ({}), with {}",
        names.len(),
        names.join(", "),
        kinds.join(", ")
    )
}

/// Prints, for each way of running, which planted changes were found and which other
/// interfaces were flagged: the figure to compare before and after a change to the noise
/// rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a report, not a check: run with --ignored --nocapture"]
async fn verdict_table() {
    let Some(s) = Scenario::start().await else {
        return;
    };
    let others = INTERFACES.len() - planted().len();
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for how in [
        How::Defaults,
        How::SideEffects,
        How::SideEffectsSecondary,
        How::AA,
        How::Safe,
    ] {
        let (o, r) = run(&s, how).await;
        let changed = !matches!(how, How::AA);
        let score = Score::of(&r, changed);
        let found = if changed {
            format!("{}/{}", score.found.len(), planted().len())
        } else {
            "n/a (none planted)".into()
        };
        let of = if changed { others } else { INTERFACES.len() };
        rows.push(format!(
            "| {} | {} | {}/{} | {} |",
            how.label(),
            found,
            score.false_flags.len(),
            of,
            o.status.code().map_or("signal".into(), |c| c.to_string()),
        ));
        details.push(format!(
            "{}: {} skipped; found {:?}\n  falsely flagged: {}\n  other flags on the changed interfaces: {}",
            how.label(),
            r["summary"]["skipped"],
            score.found,
            briefly(&score.false_flags),
            briefly(&score.stray),
        ));
    }
    println!("\n| how it was run | regressions found | interfaces falsely flagged | exit |");
    println!("| --- | --- | --- | --- |");
    for row in rows {
        println!("{row}");
    }
    println!();
    for d in details {
        println!("{d}");
    }
}

/// The words of a report, one space between them: prose wraps at the terminal's width.
fn words(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
