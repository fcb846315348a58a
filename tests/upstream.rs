//! shadowdiff playing the gateways' upstreams (`--baseline-upstream`, `--candidate-upstream`),
//! end to end against real gateways from their real configs. The recording is captured from
//! an in-process backend (production at capture time); during the replays that backend must
//! get nothing: each gateway version forwards to the address shadowdiff plays.
//!
//! The old gateway is haproxy forwarding `/rpc/` by prefix and stamping `X-Auth-Scope` on
//! the billing service's requests. The new one is nginx with a location per service and
//! five changes in what reaches the upstream:
//!
//! - `X-Auth-Scope` forgotten for billing (`upstream.header:x-auth-scope`, two interfaces);
//! - `/rpc/search/` rewritten to `/search/v2/` (`upstream.path`, two interfaces);
//! - `UpdateOrder` through a body filter that drops `$.note` (`upstream.body:$.note`); the
//!   filter is an in-process hyper server, since neither nginx nor haproxy edits JSON;
//! - `auth_request` before every users call (`upstream.calls`, two interfaces);
//! - no location for `QueryReservations`: answered 403 by the catch-all, a status outside
//!   the missing-rule set, found because nothing was forwarded (`missing_rule`).
//!
//! Both versions stamp a fresh `X-Request-Id` on every forwarded request: a difference on
//! every exchange that the noise probe (which forwards too) shows to be noise.

use crate::util::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use shadowdiff::exchange::{Exchange, Request, Response};
use shadowdiff::recording::format::now_us;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Every interface with how many exchanges of it the recording holds.
const INTERFACES: [(&str, usize); 13] = [
    ("/rpc/orders/CreateOrder", 16),
    ("/rpc/orders/UpdateOrder", 16),
    ("/rpc/orders/GetOrder", 20),
    ("/rpc/catalog/GetItem", 24),
    ("/rpc/catalog/ListItems", 16),
    ("/rpc/billing/Charge", 16),
    ("/rpc/billing/GetInvoice", 16),
    ("/rpc/search/Search", 16),
    ("/rpc/search/Suggest", 12),
    ("/rpc/users/GetUser", 16),
    ("/rpc/users/UpdateProfile", 12),
    ("/rpc/inventory/GetStock", 16),
    ("/rpc/inventory/QueryReservations", 6),
];

/// Where each planted change is, and the path (with its kind of change) that must find it.
const PLANTED: [(&str, &str, Option<&str>); 8] = [
    (
        "/rpc/billing/Charge",
        "upstream.header:x-auth-scope",
        Some("removed"),
    ),
    (
        "/rpc/billing/GetInvoice",
        "upstream.header:x-auth-scope",
        Some("removed"),
    ),
    ("/rpc/search/Search", "upstream.path", None),
    ("/rpc/search/Suggest", "upstream.path", None),
    (
        "/rpc/orders/UpdateOrder",
        "upstream.body:$.note",
        Some("removed"),
    ),
    ("/rpc/users/GetUser", "upstream.calls", Some("added")),
    ("/rpc/users/UpdateProfile", "upstream.calls", Some("added")),
    ("/rpc/inventory/QueryReservations", "missing_rule", None),
];

fn key(path: &str) -> String {
    format!("POST {path}")
}

/// The backend production had: answers every call with JSON that carries per-call noise (a
/// request id and the time), and counts what it was sent.
async fn backend(count: Arc<AtomicU64>) -> TestServer {
    TestServer::start(move |s| {
        count.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&s.body).unwrap_or(Value::Null);
        let mut a = Answer::json(
            200,
            json!({
                "path": s.path_and_query,
                "id": body["id"],
                "request_id": format!("{:016x}", rand::random::<u64>()),
                "at_us": now_us(),
            })
            .to_string(),
        );
        a.headers.push(("server", "rpc-backend".into()));
        a
    })
    .await
}

/// The recording: each request sent straight to the backend, with the answer it gave.
async fn capture(backend: &TestServer, path: &std::path::Path) -> PathBuf {
    let c: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut out = Vec::new();
    let mut n = 0;
    for (uri, count) in INTERFACES {
        for i in 0..count {
            let mut body = json!({"id": 1000 + i, "tenant": "shop-eu"});
            if uri.ends_with("UpdateOrder") {
                body["note"] = json!(format!("leave at door {i}"));
            }
            let body = body.to_string();
            let req = http::Request::post(format!("{}{uri}", backend.url()))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            let resp = c.request(req).await.unwrap();
            let (parts, b) = resp.into_parts();
            let rbody = b.collect().await.unwrap().to_bytes();
            out.push(Exchange {
                id: format!("x{n:04}"),
                ts_us: now_us(),
                interface: None,
                tenant: None,
                request: Request {
                    method: "POST".into(),
                    uri: uri.into(),
                    version: "HTTP/1.1".into(),
                    headers: vec![
                        ("host".into(), "rpc.prod.example".into()),
                        ("content-type".into(), "application/json".into()),
                    ],
                    body: Bytes::from(body),
                    body_truncated: false,
                    tls: None,
                },
                response: Some(Response {
                    status: parts.status.as_u16(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                        .collect(),
                    trailers: None,
                    body: rbody,
                    body_truncated: false,
                }),
                latency_us: Some(300),
            });
            n += 1;
        }
    }
    // Interleaved, as production traffic is, the same way every run.
    out.shuffle(&mut rand::rngs::StdRng::seed_from_u64(25));
    for (i, e) in out.iter_mut().enumerate() {
        e.ts_us = 1_800_000_000_000_000 + i as i64;
    }
    write_recording(path, &out)
}

/// A hyper "gateway stage" in front of `upstream`: forwards every request as it came, with
/// the body's `$.note` dropped.
async fn note_dropper(upstream: u16) -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let c: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        while let Ok((s, _)) = l.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let c = c.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let mut v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            if let Some(m) = v.as_object_mut() {
                                m.remove("note");
                            }
                            let mut fwd =
                                http::Request::builder().method(parts.method).uri(format!(
                                    "http://127.0.0.1:{upstream}{}",
                                    parts.uri.path_and_query().unwrap()
                                ));
                            for (k, val) in &parts.headers {
                                if !["host", "content-length", "connection"].contains(&k.as_str()) {
                                    fwd = fwd.header(k, val);
                                }
                            }
                            let resp = c
                                .request(fwd.body(Full::new(Bytes::from(v.to_string()))).unwrap())
                                .await;
                            let out = match resp {
                                Ok(r) => {
                                    let (p, b) = r.into_parts();
                                    let b = b.collect().await.unwrap().to_bytes();
                                    http::Response::from_parts(p, Full::new(b))
                                }
                                Err(_) => http::Response::builder()
                                    .status(502)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            };
                            Ok::<_, std::convert::Infallible>(out)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (port, task)
}

/// The old gateway: `/rpc/` by prefix to `upstream`, `X-Auth-Scope` on billing calls;
/// `extra` lines go first (a rule that strips a header, say).
fn haproxy_old(upstream: u16, extra: &str) -> String {
    format!(
        "{extra}  unique-id-format %[uuid()]\n  unique-id-header X-Request-Id\n  acl billing path_beg /rpc/billing/\n  http-request set-header X-Auth-Scope billing if billing\n  default_backend up\nbackend up\n  server s 127.0.0.1:{upstream}\n"
    )
}

/// The new gateway: a location per service, with the five changes planted.
fn nginx_new(upstream: u16, dropper: u16) -> String {
    let pass =
        "proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_pass_header Server; \
                proxy_set_header X-Request-Id $request_id;";
    format!(
        "    location /rpc/orders/ {{ proxy_pass http://127.0.0.1:{upstream}; {pass} }}\n\
         location = /rpc/orders/UpdateOrder {{ proxy_pass http://127.0.0.1:{dropper}; {pass} }}\n\
         location /rpc/catalog/ {{ proxy_pass http://127.0.0.1:{upstream}; {pass} }}\n\
         location /rpc/billing/ {{ proxy_pass http://127.0.0.1:{upstream}; {pass} }}\n\
         location /rpc/search/ {{ proxy_pass http://127.0.0.1:{upstream}/search/v2/; {pass} }}\n\
         location /rpc/users/ {{ auth_request /_auth; proxy_pass http://127.0.0.1:{upstream}; {pass} }}\n\
         location = /_auth {{ internal; proxy_pass http://127.0.0.1:{upstream}/auth/check; proxy_pass_request_body off; proxy_set_header Content-Length \"\"; {pass} }}\n\
         location = /rpc/inventory/GetStock {{ proxy_pass http://127.0.0.1:{upstream}; {pass} }}\n\
         location / {{ return 403 '{{\"error\":\"denied\"}}'; }}"
    )
}

struct Setup {
    rec: PathBuf,
    dir: tempfile::TempDir,
    backend_calls: Arc<AtomicU64>,
    captured: u64,
    _backend: TestServer,
}

async fn setup() -> Option<Setup> {
    nginx_binary()?;
    haproxy_binary()?;
    let calls = Arc::new(AtomicU64::new(0));
    let b = backend(calls.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let rec = capture(&b, &dir.path().join("rpc.jsonl")).await;
    let captured = calls.load(Ordering::SeqCst);
    Some(Setup {
        rec,
        dir,
        backend_calls: calls,
        captured,
        _backend: b,
    })
}

/// Two loopback ports held until the replay: the gateways, started first, and other tests
/// cannot take them meanwhile.
fn held_ports() -> ((std::net::TcpListener, std::net::TcpListener), (u16, u16)) {
    let l = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (l(), l());
    let ports = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    ((a, b), ports)
}

/// Replays `s.rec` with shadowdiff playing the upstreams at `ports`.
async fn replay_playing(
    s: &Setup,
    name: &str,
    baseline: &str,
    candidate: &str,
    ports: (u16, u16),
    more: &[&str],
) -> (std::process::Output, Value) {
    let json = s.dir.path().join(format!("{name}.json"));
    let (b, c) = (
        format!("127.0.0.1:{}", ports.0),
        format!("127.0.0.1:{}", ports.1),
    );
    let mut extra = vec![
        "--baseline-upstream",
        &b,
        "--candidate-upstream",
        &c,
        "--timeout",
        "5s",
    ];
    extra.extend(more);
    replay_json(&s.rec, baseline, candidate, &json, &extra).await
}

/// Each planted path, whether it was flagged, and which other interfaces were flagged.
fn flagged(r: &Value, iface: &str) -> Vec<String> {
    let i = interface(r, &key(iface));
    let mut f: Vec<String> = i["fields"]
        .as_array()
        .unwrap()
        .iter()
        .chain(i["headers"].as_array().unwrap())
        .chain(i["status"].as_array().unwrap())
        .filter(|p| p["regression"] == true)
        .map(|p| match p["change"].as_str() {
            Some(c) => format!("{} ({c})", p["path"].as_str().unwrap()),
            None => p["path"].as_str().unwrap().to_string(),
        })
        .collect();
    if i["missing_rule"].as_u64().unwrap() > 0 {
        f.push("missing_rule".into());
    }
    for e in ["candidate_error", "baseline_error"] {
        if i[e].as_u64().unwrap() > 0 {
            f.push(e.into());
        }
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_each_gateway_forwarded_is_compared_and_every_planted_change_found() {
    let Some(s) = setup().await else { return };
    let (held, (bup, cup)) = held_ports();
    let (dropper, _d) = note_dropper(cup).await;
    let (nginx, haproxy) = (nginx_binary().unwrap(), haproxy_binary().unwrap());
    let (old, new) = tokio::task::spawn_blocking(move || {
        (
            Haproxy::start(&haproxy, &haproxy_old(bup, "")),
            Nginx::start(&nginx, &nginx_new(cup, dropper)),
        )
    })
    .await
    .unwrap();
    let d = s.dir.path();
    let (html, junit, md, diffs) = (
        d.join("r.html"),
        d.join("r.xml"),
        d.join("r.md"),
        d.join("diffs.jsonl"),
    );
    let report_flags: Vec<String> = vec![
        "--html".into(),
        html.display().to_string(),
        "--junit".into(),
        junit.display().to_string(),
        "--markdown".into(),
        md.display().to_string(),
        "--diffs".into(),
        diffs.display().to_string(),
    ];
    let report_flags: Vec<&str> = report_flags.iter().map(String::as_str).collect();
    drop(held);
    let (o, r) = replay_playing(
        &s,
        "old-new",
        &old.url(),
        &new.url(),
        (bup, cup),
        &report_flags,
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));

    // Nothing reached the backend: every forwarded request went to shadowdiff.
    assert_eq!(s.backend_calls.load(Ordering::SeqCst), s.captured);
    // Every exchange is a POST, and none was skipped.
    let total: usize = INTERFACES.iter().map(|(_, n)| n).sum();
    assert_eq!(r["summary"]["total"], total as u64);
    assert_eq!(r["summary"]["skipped"], 0, "{:#}", r["summary"]);
    let up = &r["run"]["upstream"];
    for side in ["baseline", "candidate"] {
        assert_eq!(up[side]["unmatched"], 0, "{up:#}");
        assert_eq!(up[side]["without_header"], 0, "{up:#}");
    }
    // The pair and the probe (the baseline again, the candidate's twin with it): four
    // requests per exchange, each forwarded once, and users calls twice on the candidate.
    let users: usize = INTERFACES
        .iter()
        .filter(|(p, _)| p.starts_with("/rpc/users/"))
        .map(|(_, n)| n)
        .sum();
    let reservations = 6;
    assert_eq!(up["baseline"]["forwarded"], (2 * total) as u64, "{up:#}");
    assert_eq!(
        up["candidate"]["forwarded"],
        (2 * (total + users - reservations)) as u64,
        "{up:#}"
    );

    let mut table = Vec::new();
    for (iface, _) in INTERFACES {
        let f = flagged(&r, iface);
        let planted: Vec<String> = PLANTED
            .iter()
            .filter(|(p, _, _)| *p == iface)
            .map(|(_, path, change)| match change {
                Some(c) => format!("{path} ({c})"),
                None => path.to_string(),
            })
            .collect();
        let mut planted = planted;
        planted.dedup();
        let found = planted.iter().all(|p| f.contains(p));
        let stray: Vec<&String> = f.iter().filter(|x| !planted.contains(x)).collect();
        table.push(format!(
            "{iface:36} planted {planted:?} found {found} stray {stray:?}"
        ));
        assert!(found, "{iface}: planted {planted:?}, flagged {f:?}");
        assert!(stray.is_empty(), "{iface}: also flagged {stray:?}");
    }
    eprintln!("{}", table.join("\n"));
    // The missing rule's signature is the forwarding, not the status.
    let q = interface(&r, &key("/rpc/inventory/QueryReservations"));
    assert_eq!(q["missing_rule"], 6);
    assert_eq!(q["missing_rule_answer"]["status"], 403);
    // What the baseline forwarded where the candidate forwarded nothing.
    let f = &q["missing_rule_answer"]["forwarded"];
    assert_eq!(f["baseline"][0]["uri"], "/rpc/inventory/QueryReservations");
    assert_eq!(f["candidate"], json!([]));

    // Every report shows the upstream side: the two forwarded requests of one exchange.
    // Prose is wrapped to the terminal's width: words are compared, not line breaks.
    let stdout = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        stdout.contains("upstream.header:x-auth-scope (removed): differed in 16"),
        "{stdout}"
    );
    assert!(stdout.contains("forwarded upstream for "), "{stdout}");
    assert!(stdout.contains("≠ x-auth-scope: billing"), "{stdout}");
    assert!(
        stdout.contains("≠ POST /rpc/inventory/QueryReservations | (absent)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shadowdiff played the upstreams"),
        "{stdout}"
    );
    assert!(stdout.contains("what each gateway itself adds"), "{stdout}");
    let charge = interface(&r, &key("/rpc/billing/Charge"));
    let kept = charge["sample_requests"].as_object().unwrap();
    let fwd = kept
        .values()
        .find_map(|s| s.get("forwarded"))
        .expect("forwarded kept");
    assert_eq!(fwd["baseline"][0]["uri"], "/rpc/billing/Charge");
    let scope = |side: &str| {
        fwd[side][0]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "x-auth-scope")
    };
    assert!(scope("baseline") && !scope("candidate"), "{fwd:#}");
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("Forwarded upstream in exchange"));
    assert!(html.contains("<code>/search/v2/Search</code>") || html.contains("/search/v2/Search"));
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(junit.contains("upstream.path"), "{junit}");
    assert!(junit.contains("forwarded upstream for"), "{junit}");
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.contains("Forwarded upstream for"), "{md}");
    let diffs = std::fs::read_to_string(&diffs).unwrap();
    let line: Value = diffs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["interface"] == key("/rpc/orders/UpdateOrder"))
        .unwrap();
    let keys: Vec<&str> = line["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"upstream.body:$.note (removed)"), "{keys:?}");
    assert_eq!(line["outcome"], "different");
    assert!(line["forwarded"]["baseline"][0]["body"]
        .as_str()
        .unwrap()
        .contains("note"));
    assert!(!line["forwarded"]["candidate"][0]["body"]
        .as_str()
        .unwrap()
        .contains("note"));

    // `show` plays the upstreams too, and puts the two forwarded requests side by side.
    let id = charge["fields"][0]["samples"][0]
        .as_str()
        .unwrap()
        .to_string();
    let args: Vec<String> = [
        "show",
        &s.rec.display().to_string(),
        &id,
        "--baseline",
        &old.url(),
        "--candidate",
        &new.url(),
        "--baseline-upstream",
        &format!("127.0.0.1:{bup}"),
        "--candidate-upstream",
        &format!("127.0.0.1:{cup}"),
    ]
    .map(String::from)
    .to_vec();
    let o = shadowdiff_async(args).await;
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("forwarded upstream: baseline 1 call | candidate 1 call"),
        "{}",
        describe(&o)
    );
    assert!(text.contains("≠ x-auth-scope: billing"), "{text}");
    assert!(text.contains("upstream.header:x-auth-scope"), "{text}");
    assert_eq!(s.backend_calls.load(Ordering::SeqCst), s.captured);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_gateway_config_twice_is_clean() {
    let Some(s) = setup().await else { return };
    let (held, (bup, cup)) = held_ports();
    let (bdrop, _bd) = note_dropper(bup).await;
    let (cdrop, _cd) = note_dropper(cup).await;
    let nginx = nginx_binary().unwrap();
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            Nginx::start(&nginx, &nginx_new(bup, bdrop)),
            Nginx::start(&nginx, &nginx_new(cup, cdrop)),
        )
    })
    .await
    .unwrap();
    drop(held);
    let (o, r) = replay_playing(&s, "aa", &a.url(), &b.url(), (bup, cup), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["summary"]["skipped"], 0);
    assert_eq!(r["summary"]["different"], 0, "{:#}", r["summary"]);
    for (iface, _) in INTERFACES {
        assert!(
            flagged(&r, iface).is_empty(),
            "{iface}: {:?}",
            flagged(&r, iface)
        );
    }
    assert_eq!(s.backend_calls.load(Ordering::SeqCst), s.captured);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_stripping_the_correlation_header_is_reported_and_still_matched() {
    let Some(s) = setup().await else { return };
    let (held, (bup, cup)) = held_ports();
    let haproxy = haproxy_binary().unwrap();
    let (old, again) = tokio::task::spawn_blocking(move || {
        (
            Haproxy::start(
                &haproxy,
                &haproxy_old(bup, "  http-request del-header x-shadowdiff-exchange\n"),
            ),
            Haproxy::start(&haproxy, &haproxy_old(cup, "")),
        )
    })
    .await
    .unwrap();
    drop(held);
    let (o, r) = replay_playing(&s, "stripped", &old.url(), &again.url(), (bup, cup), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let up = &r["run"]["upstream"];
    let forwarded = up["baseline"]["forwarded"].as_u64().unwrap();
    assert!(forwarded > 0);
    assert_eq!(up["baseline"]["without_header"], forwarded, "{up:#}");
    assert_eq!(up["baseline"]["by_match"], forwarded, "{up:#}");
    assert_eq!(up["baseline"]["unmatched"], 0, "{up:#}");
    assert_eq!(up["candidate"]["without_header"], 0, "{up:#}");
    let warned = r["run"]["warnings"].as_array().unwrap().iter().any(|w| {
        w.as_str().unwrap().contains("baseline gateway forwarded")
            && w.as_str().unwrap().contains("x-shadowdiff-exchange")
    });
    assert!(warned, "{:#}", r["run"]["warnings"]);
    for (iface, _) in INTERFACES {
        assert!(
            flagged(&r, iface).is_empty(),
            "{iface}: {:?}",
            flagged(&r, iface)
        );
    }
    assert_eq!(s.backend_calls.load(Ordering::SeqCst), s.captured);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_addresses_that_cannot_be_played_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(&dir.path().join("r.jsonl"), &numbered_gets(2, "/a"));
    let gw = TestServer::start(|_| Answer::json(200, "{}")).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let free = format!("127.0.0.1:{}", free_port());
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--baseline-upstream",
                "old-gw:9001",
                "--candidate-upstream",
                &free,
            ],
            "--baseline-upstream: expected an address to listen on as IP:PORT",
        ),
        (
            &["--baseline-upstream", &free, "--candidate-upstream", &free],
            "the same address as --baseline-upstream",
        ),
        (
            &["--baseline-upstream", &taken, "--candidate-upstream", &free],
            "cannot listen there",
        ),
        (&["--baseline-upstream", &free], "--candidate-upstream"),
    ];
    for (flags, says) in cases {
        let extra: Vec<&dyn std::fmt::Display> =
            flags.iter().map(|f| f as &dyn std::fmt::Display).collect();
        let o = replay_run(&rec, &gw.url(), &gw.url(), &extra).await;
        assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{flags:?}: {}",
            describe(&o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_counted_not_a_difference() {
    let Some(nginx) = nginx_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Production answered these 502: a gateway that retries on 502 calls again.
    let items: Vec<Exchange> = numbered_gets(10, "/api/flaky")
        .into_iter()
        .map(|mut e| {
            e.response = Some(Response {
                status: 502,
                headers: vec![("content-type".into(), "application/json".into())],
                trailers: None,
                body: Bytes::from_static(br#"{"error":"busy"}"#),
                body_truncated: false,
            });
            e
        })
        .collect();
    let rec = write_recording(&dir.path().join("flaky.jsonl"), &items);
    let (held, (bup, cup)) = held_ports();
    let pass = "proxy_http_version 1.1; proxy_set_header Connection \"\";";
    // Both name their upstream `flaky` (and so send `Host: flaky`); the new one lists the
    // same address twice, never marked down, and tries the next on a 502: the retry goes
    // to shadowdiff again.
    let once = format!("    location / {{ proxy_pass http://flaky; {pass} }}");
    let twice = format!(
        "    location / {{ proxy_pass http://flaky; {pass} proxy_next_upstream error timeout http_502; }}"
    );
    let (a, b) = tokio::task::spawn_blocking(move || {
        let a = Nginx::start_with_http(
            &nginx,
            &format!("upstream flaky {{ server 127.0.0.1:{bup}; }}"),
            &once,
        );
        let b = Nginx::start_with_http(
            &nginx,
            &format!(
                "upstream flaky {{ server 127.0.0.1:{cup} max_fails=0; server 127.0.0.1:{cup} max_fails=0; }}"
            ),
            &twice,
        );
        (a, b)
    })
    .await
    .unwrap();
    let s = Setup {
        rec,
        dir,
        backend_calls: Arc::new(AtomicU64::new(0)),
        captured: 0,
        _backend: TestServer::start(|_| Answer::json(200, "{}")).await,
    };
    drop(held);
    let (o, r) = replay_playing(&s, "retry", &a.url(), &b.url(), (bup, cup), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let up = &r["run"]["upstream"];
    // The pair's request and the probe's twin, each forwarded twice.
    assert_eq!(up["candidate"]["retries"], 20, "{up:#}");
    assert_eq!(up["candidate"]["forwarded"], 40, "{up:#}");
    assert_eq!(up["baseline"]["retries"], 0, "{up:#}");
    assert_eq!(r["summary"]["identical"], 10, "{:#}", r["summary"]);
    let stdout = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        stdout.contains("retries (the same call again in one exchange): baseline 0, candidate 20"),
        "{stdout}"
    );
}
