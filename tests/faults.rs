//! Fault injection against real sockets: a candidate that dies and comes back, never
//! answers, stalls mid-body, resets, speaks garbage, sends oversized answers, or closes an
//! HTTP/2 connection with GOAWAY; a baseline that dies. Every exchange still gets exactly one
//! outcome, the run finishes, and the report says what happened.

use crate::util::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn recording(dir: &std::path::Path, n: i64) -> std::path::PathBuf {
    let items: Vec<_> = (0..n)
        .map(|i| get(&format!("e{i}"), &format!("/users/{i}"), i * 1000))
        .collect();
    write_recording(&dir.join("r.jsonl"), &items)
}

/// A raw TCP server: reads a request head, then does `act` with the socket.
async fn raw_server<F, Fut>(act: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let act = Arc::new(act);
    let h = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                break;
            };
            let act = act.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                act(s).await;
            });
        }
    });
    (url, h)
}

async fn replay(
    rec: &std::path::Path,
    base: &str,
    cand: &str,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    replay_json(rec, base, cand, &rec.with_extension("result.json"), extra).await
}

fn error_kinds(r: &serde_json::Value, side: &str) -> Vec<String> {
    let mut k: Vec<String> = r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["errors"].as_array().unwrap().iter())
        .filter(|e| e["side"] == side)
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k.dedup();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidate_that_never_answers_or_stalls_mid_body_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 6);
    let ok = TestServer::start(|_| Answer::json(200, "{}")).await;
    let (silent, _h1) = raw_server(|s| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let (stall, _h2) = raw_server(|mut s| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":").await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    for cand in [silent, stall] {
        let (o, r) = replay(&rec, &ok.url(), &cand, &["--timeout", "300ms"]).await;
        assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
        assert_eq!(r["summary"]["total"], 6);
        assert_eq!(r["summary"]["candidate_error"], 6);
        assert_eq!(error_kinds(&r, "candidate"), ["timeout"]);
        assert!(
            r["gate_failures"][0]
                .as_str()
                .unwrap()
                .starts_with("candidate_error"),
            "{:#}",
            r["gate_failures"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_and_malformed_answers_are_candidate_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 4);
    let ok = TestServer::start(|_| Answer::json(200, "{}")).await;
    let (reset, _h1) = raw_server(|s| async move {
        let mut s = s;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial")
            .await;
        // Linger 0: close with RST, not FIN.
        let std = s.into_std().unwrap();
        let sock = socket2::SockRef::from(&std);
        let _ = sock.set_linger(Some(Duration::ZERO));
        drop(std);
    })
    .await;
    let (garbage, _h2) = raw_server(|mut s| async move {
        let _ = s.write_all(b"HELLO THIS IS NOT HTTP\r\n\r\n").await;
    })
    .await;
    let (o, r) = replay(&rec, &ok.url(), &reset, &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(r["summary"]["candidate_error"], 4);
    assert_eq!(error_kinds(&r, "candidate"), ["reset"]);
    let (o, r) = replay(&rec, &ok.url(), &garbage, &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(r["summary"]["candidate_error"], 4);
    assert_eq!(error_kinds(&r, "candidate"), ["malformed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_bodies_are_refused_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 3);
    let ok = TestServer::start(|_| Answer::json(200, "{}")).await;
    let big_body =
        TestServer::start(|_| Answer::json(200, format!("\"{}\"", "x".repeat(3 << 20)))).await;
    let (big_head, _h) = raw_server(|mut s| async move {
        let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 2 << 20));
        head.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\n{}");
        let _ = s.write_all(&head).await;
    })
    .await;
    let (o, r) = replay(&rec, &ok.url(), &big_body.url(), &["--max-body", "1048576"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(r["summary"]["candidate_error"], 3);
    assert_eq!(error_kinds(&r, "candidate"), ["too_large"]);
    let (o, r) = replay(&rec, &ok.url(), &big_head, &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(r["summary"]["candidate_error"], 3);
    assert_eq!(error_kinds(&r, "candidate"), ["malformed"]);
}

/// A hyper server that can be killed (listener and every connection) and restarted on the
/// same port.
struct Killable {
    port: u16,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    served: Arc<AtomicU64>,
}

impl Killable {
    async fn start(port: u16, served: Arc<AtomicU64>) -> std::io::Result<Killable> {
        let l = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = l.local_addr()?.port();
        let tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let t2 = tasks.clone();
        let s2 = served.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = l.accept().await else {
                    break;
                };
                let s3 = s2.clone();
                let conn = tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        s3.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                        b"{}",
                                    )))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
                t2.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Ok(Killable {
            port,
            tasks,
            served,
        })
    }

    fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidate_killed_mid_run_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 300);
    let ok = TestServer::start(|_| Answer::json(200, "{}")).await;
    let served = Arc::new(AtomicU64::new(0));
    let cand = Killable::start(0, served.clone()).await.unwrap();
    let port = cand.port;
    let url = format!("http://127.0.0.1:{port}");
    // Kill the candidate once it has served 60 requests; bring it back 300 ms later.
    let chaos = tokio::spawn(async move {
        while served.load(Ordering::SeqCst) < 60 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cand.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let first = cand.served.load(Ordering::SeqCst);
        let mut back = None;
        for _ in 0..100 {
            // A counter of its own: what it shows was served after the restart.
            if let Ok(k) = Killable::start(port, Arc::new(AtomicU64::new(0))).await {
                back = Some(k);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (back.expect("candidate restarted on its port"), first)
    });
    let (o, r) = replay(
        &rec,
        &ok.url(),
        &url,
        &["--rate", "300", "--concurrency", "8", "--timeout", "2s"],
    )
    .await;
    let (restarted, first) = chaos.await.unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let s = &r["summary"];
    assert_eq!(s["total"], 300, "every exchange read has an outcome");
    let errors = s["candidate_error"].as_u64().unwrap();
    let identical = s["identical"].as_u64().unwrap();
    assert!(errors > 0, "the outage is reported: {s:#}");
    assert!(
        identical >= 60,
        "before the outage and after the restart: {s:#}"
    );
    assert_eq!(errors + identical, 300, "{s:#}");
    let after = restarted.served.load(Ordering::SeqCst);
    assert!(after > 0, "the candidate served again after its restart");
    // More exchanges were judged identical than the first instance ever saw: the run went
    // on against the restarted one, not only up to the outage.
    assert!(
        identical > first,
        "{identical} identical, {first} seen before the kill, {after} after: {s:#}"
    );
    let kinds = error_kinds(&r, "candidate");
    assert!(
        kinds.iter().all(|k| k == "connect" || k == "reset"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_goaway_mid_run_loses_no_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 120);
    // Every connection is told to go away (GOAWAY) after 10 requests; the client must move
    // to a new connection.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("h2c://{}", l.local_addr().unwrap());
    let goaways = Arc::new(AtomicU64::new(0));
    let g2 = goaways.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                break;
            };
            let g3 = g2.clone();
            tokio::spawn(async move {
                let count = Arc::new(AtomicU64::new(0));
                let c2 = count.clone();
                let svc = hyper::service::service_fn(move |_req| {
                    c2.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                                .unwrap(),
                        )
                    }
                });
                let conn =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                tokio::pin!(conn);
                loop {
                    tokio::select! {
                        _ = conn.as_mut() => break,
                        _ = tokio::time::sleep(Duration::from_millis(2)) => {
                            if count.load(Ordering::SeqCst) >= 10 {
                                conn.as_mut().graceful_shutdown();
                                g3.fetch_add(1, Ordering::SeqCst);
                                let _ = conn.as_mut().await;
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let ok = TestServer::start(|_| Answer::json(200, "{}")).await;
    let ok_h2 = format!("h2c://{}", ok.addr);
    let (o, r) = replay(&rec, &ok_h2, &url, &["--concurrency", "4"]).await;
    let s = &r["summary"];
    assert_eq!(s["total"], 120, "{}", describe(&o));
    assert!(
        goaways.load(Ordering::SeqCst) >= 2,
        "the server did send GOAWAY"
    );
    // Requests in flight when GOAWAY arrives are either retried on a new connection or
    // reported; none disappears.
    let identical = s["identical"].as_u64().unwrap();
    let errors = s["candidate_error"].as_u64().unwrap();
    assert_eq!(identical + errors, 120, "{s:#}");
    assert!(
        identical >= 100,
        "most exchanges survive connection turnover: {s:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_dying_mid_run_gives_baseline_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 200);
    let served = Arc::new(AtomicU64::new(0));
    let base = Killable::start(0, served.clone()).await.unwrap();
    let url = format!("http://127.0.0.1:{}", base.port);
    let cand = TestServer::start(|_| Answer::json(200, "{}")).await;
    tokio::spawn(async move {
        while served.load(Ordering::SeqCst) < 50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        base.kill();
    });
    let (o, r) = replay(
        &rec,
        &url,
        &cand.url(),
        &["--rate", "400", "--fail-on", "missing_rule,baseline_error"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let s = &r["summary"];
    assert_eq!(s["total"], 200);
    assert!(s["baseline_error"].as_u64().unwrap() > 0, "{s:#}");
    assert!(r["gate_failures"][0]
        .as_str()
        .unwrap()
        .starts_with("baseline_error"));
}

/// A server that answers a large upload before reading its body (413 at once, as gateways
/// with a body limit do) leaves that connection busy sending the rest: the next exchange
/// must go on another connection, not wait behind it until its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_an_upload_does_not_block_the_next_exchange() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                loop {
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if head.starts_with(b"POST") {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                        // Never reads the body: the client's write stalls on a full buffer.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    let body = br#"{"ok":true}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err()
                        || s.write_all(body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut upload = get("upload", "/upload", 0);
    upload.request.method = "POST".into();
    upload.request.body = bytes::Bytes::from(vec![b'a'; 32 << 20]);
    let items = vec![upload, get("a", "/a", 1000), get("b", "/b", 2000)];
    let rec = write_recording(&dir.path().join("r.jsonl"), &items);
    let (o, r) = replay(
        &rec,
        &url,
        &url,
        &[
            "--allow-side-effects",
            "--threads",
            "1",
            "--concurrency",
            "1",
            "--timeout",
            "3s",
            "--no-noise-probe",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["identical"], 3, "{:#}", r["summary"]);
    let a = &interface(&r, "GET /a")["latency"]["baseline"];
    assert!(a["max_us"].as_u64().unwrap() < 1_000_000, "{a:#}");
    server.abort();
}

/// A candidate that closes kept-alive connections instead of answering: every request after
/// a connection's first is read and the connection closed unanswered. Replay sends each such
/// request again on a new connection (no error), and counts it per side and interface, in
/// the JSON (through `report` and `merge` too) and in the report, with a note on the share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_re_sent_after_a_connection_closed_unanswered_are_counted_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 40);
    let base = TestServer::start(|_| Answer::json(200, r#"{"ok":true}"#)).await;
    let (cand, _h) = raw_server(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}")
            .await;
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
    })
    .await;
    let (o, r) = replay(
        &rec,
        &base.url(),
        &cand,
        &["--concurrency", "1", "--no-noise-probe"],
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(r["summary"]["candidate_error"], 0, "{r}");
    assert_eq!(r["summary"]["identical"], 40, "{r}");
    assert_eq!(r["summary"]["resent"]["candidate"], 39, "{r}");
    assert!(r["summary"]["resent"].get("baseline").is_none(), "{r}");
    assert_eq!(
        interface(&r, "GET /users/{id}")["resent"]["candidate"],
        39,
        "{r}"
    );
    assert!(
        out.contains("candidate: 39 requests re-sent after the connection closed unanswered (97.5% of 40 exchanges sent)"),
        "{out}"
    );
    // The count survives `report` and adds up under `merge`.
    let json = rec.with_extension("result.json");
    let shown = shadowdiff(&["report", json.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("candidate: 39 requests re-sent"),
        "{}",
        describe(&shown)
    );
    let copy = dir.path().join("copy.json");
    let mut other = r.clone();
    other["run"]["created"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(&copy, other.to_string()).unwrap();
    let merged = dir.path().join("merged.json");
    let m = shadowdiff(&[
        "merge",
        json.to_str().unwrap(),
        copy.to_str().unwrap(),
        "--json",
        merged.to_str().unwrap(),
    ]);
    let m_json = read_json(&merged);
    assert_eq!(
        m_json["summary"]["resent"]["candidate"],
        78,
        "{}",
        describe(&m)
    );
}
