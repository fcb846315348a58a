//! The tap as a real process in front of real servers: curl and wrk through it to nginx, an
//! in-process HTTP/1.1 and HTTP/2 upstream, gRPC-shaped streams with trailers, SIGTERM under
//! load, a recorder that cannot write, stratified sampling over HTTP, redaction on the bytes
//! on disk, open-proxy refusals, 502/504, rotation, and the live shadow report.

use crate::util::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shadowdiff::exchange::{header, Exchange};
use shadowdiff::recording::{ReadOptions, RecordingReader};
use shadowdiff::tap::redact::redact_value;
use shadowdiff::tap::sample::Sampler;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The tap binary running as a child process.
pub(crate) struct TapProc {
    child: Child,
    pub(crate) addr: SocketAddr,
    metrics: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    done: mpsc::Receiver<()>,
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

impl TapProc {
    /// Starts `shadowdiff tap --listen 127.0.0.1:0 ARGS` and waits for its bound addresses.
    pub(crate) fn start(args: &[&str]) -> TapProc {
        let mut tap = Command::new(bin());
        tap.arg("tap").args(["--listen", "127.0.0.1:0"]).args(args);
        Self::spawn(tap, args.contains(&"--metrics"))
    }

    /// Runs `tap`, a whole tap command line, and waits for its bound addresses (the metrics
    /// address too when `want_metrics`).
    pub(crate) fn spawn(mut tap: Command, want_metrics: bool) -> TapProc {
        let mut child = tap
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the tap");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (line_tx, line_rx) = mpsc::channel::<String>();
        let (done_tx, done) = mpsc::channel::<()>();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
                let _ = line_tx.send(line);
            }
            let _ = done_tx.send(());
        });
        let (mut addr, mut metrics) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while addr.is_none() || (want_metrics && metrics.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(line) => {
                    addr = addr.or_else(|| addr_after(&line, "listening on "));
                    metrics = metrics.or_else(|| addr_after(&line, "metrics on "));
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("tap did not start: {}", stderr.lock().unwrap());
                }
            }
        }
        TapProc {
            child,
            addr: addr.unwrap(),
            metrics,
            stderr,
            done,
        }
    }

    /// The tap's process id, for signals.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the tap process in KiB, from `/proc`.
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM and waits for a clean exit; returns standard error.
    pub(crate) fn stop(mut self) -> String {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "tap did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = self.done.recv_timeout(Duration::from_secs(5));
        let err = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "tap exited with {status}: {err}");
        err
    }

    pub(crate) async fn stop_async(self) -> String {
        tokio::task::spawn_blocking(move || self.stop())
            .await
            .unwrap()
    }

    /// `/metrics` as text.
    pub(crate) async fn metrics_text(&self) -> String {
        get_text(self.metrics.expect("started with --metrics"), "/metrics")
            .await
            .1
    }

    /// One sample of `/metrics` (the line starting with `series `), 0 when absent.
    pub(crate) async fn metric(&self, series: &str) -> u64 {
        metric_in(&self.metrics_text().await, series)
    }
}

impl Drop for TapProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn metric_in(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

/// The sum of a labelled series over all its labels (`shadowdiff_tap_dropped_total`).
pub(crate) fn metric_sum(text: &str, name: &str) -> u64 {
    let labelled = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&labelled))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A raw HTTP/1.0 GET, for the admin endpoint.
async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    raw_response(&buf)
}

/// Sends raw bytes on a new connection and reads everything until the tap closes it, so a
/// caller comparing the body sees every byte the tap sent, stray ones included. A tap still
/// holding the connection after 10 s fails the test (the bound only stops a hang: the tap
/// answers these at once).
async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!(
            "reading the answer to {request:?}: {e} after {:?}",
            String::from_utf8_lossy(&buf)
        ),
        Err(_) => panic!(
            "the tap still holds the connection after 10 s; {request:?} got {:?}",
            String::from_utf8_lossy(&buf)
        ),
    }
    raw_response(&buf)
}

/// Sends raw bytes on a new connection and reads one answer, framed by its content-length,
/// without waiting for the tap to close: for answers on a connection the tap may keep.
async fn raw_answer(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_answer(&mut s, request.starts_with("HEAD ")).await;
    let (status, _) = raw_response(head.as_bytes());
    (status, String::from_utf8_lossy(&body).to_string())
}

fn raw_response(buf: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    c: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Bytes) {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// Waits until `f` returns true, checking every 20 ms, for at most 20 s.
pub(crate) async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn read_recordings(paths: &[PathBuf]) -> Vec<Exchange> {
    let mut r = RecordingReader::open(paths, ReadOptions::default()).unwrap();
    let mut out = Vec::new();
    while let Some(e) = r.next_exchange().unwrap() {
        out.push(e);
    }
    let warnings = r.take_warnings();
    assert!(warnings.is_empty(), "{warnings:?}");
    out
}

pub(crate) fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

pub(crate) const NGINX_API: &str = r#"    location ~ ^/api/users/(\d+)$ { return 200 '{"id":$1,"name":"user $1"}'; }
    location = /api/orders { return 201 '{"created":true}'; }
    location / { return 404 '{"error":"no route"}'; }"#;

pub(crate) fn curl(args: &[&str]) -> String {
    let o = Command::new("curl")
        .args(["-s", "-S", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed (.ci/run installs it)");
    assert!(o.status.success(), "curl {args:?}: {}", describe(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The issue's first check: curl through the tap in front of nginx; the recording replays
/// with `shadowdiff replay` to identical outcomes, and holds no secret in its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_tap_to_nginx_replays_identical_and_keeps_no_secret() {
    let Some(nginx) = nginx_binary() else { return };
    let gw = Nginx::start(&nginx, NGINX_API);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prod.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &gw.url(),
        "--out",
        out.to_str().unwrap(),
        "--redact-header",
        "X-Session",
        "--redact-json-path",
        "$.card.number",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let url = tap.url();
    let mut expected = Vec::new();
    let out_of_curl = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for i in 1..=5 {
            seen.push(curl(&[
                "-H",
                "Authorization: Bearer topsecret",
                "-H",
                "Cookie: sid=abc123",
                "-H",
                "X-Session: sess-value",
                &format!("{url}/api/users/{i}"),
            ]));
        }
        seen.push(curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"sku":"a-1","card":{"number":"4111111111111111","exp":"12/30"}}"#,
            &format!("{url}/api/orders"),
        ]));
        seen.push(curl(&[&format!("{url}/nope")]));
        seen.push(curl(&[
            "--http2-prior-knowledge",
            &format!("{url}/api/users/9"),
        ]));
        seen
    })
    .await
    .unwrap();
    for (s, want) in out_of_curl
        .iter()
        .zip(["200", "200", "200", "200", "200", "201", "404", "200"].iter())
    {
        assert!(s.ends_with(want), "{s}");
        expected.push(s.clone());
    }
    assert!(expected[0].starts_with(r#"{"id":1,"name":"user 1"}"#));
    let (status, health) = get_text(tap.metrics.unwrap(), "/healthz").await;
    assert_eq!((status, health.as_str()), (200, "ok\n"));
    until("8 recorded", || async {
        tap.metric("shadowdiff_tap_recorded_total").await == 8
    })
    .await;
    let err = tap.stop_async().await;
    assert!(err.contains("8 recorded"), "{err}");

    let bytes = std::fs::read_to_string(&out).unwrap();
    for secret in ["topsecret", "abc123", "sess-value", "4111111111111111"] {
        assert!(!bytes.contains(secret), "{secret} reached the disk");
    }
    assert!(bytes.contains(&redact_value(b"Bearer topsecret")));
    assert!(bytes.contains(&redact_value(b"4111111111111111")));
    let got = read_recordings(std::slice::from_ref(&out));
    assert_eq!(got.len(), 8);
    let statuses: Vec<u16> = got
        .iter()
        .map(|e| e.response.as_ref().unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 201, 404, 200]);
    assert_eq!(got[7].request.version, "HTTP/2");
    assert_eq!(got[0].interface.as_deref(), Some("GET /api/users/{id}"));
    assert_eq!(
        &got[0].response.as_ref().unwrap().body[..],
        br#"{"id":1,"name":"user 1"}"#
    );
    let order: serde_json::Value = serde_json::from_slice(&got[5].request.body).unwrap();
    assert_eq!(order["card"]["exp"], "12/30");

    let json = dir.path().join("replay.json");
    let o = shadowdiff_async(vec![
        "replay".into(),
        out.display().to_string(),
        "--baseline".into(),
        gw.url(),
        "--candidate".into(),
        gw.url(),
        "--no-noise-probe".into(),
        "--allow-side-effects".into(),
        "--set-header".into(),
        "Authorization: Bearer topsecret".into(),
        "--json".into(),
        json.display().to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["total"], 8);
    assert_eq!(r["summary"]["identical"], 8, "{:#}", r["summary"]);
}

/// wrk running against one URL with 16 connections, killed when dropped.
pub(crate) struct Wrk {
    child: Option<Child>,
}

/// What wrk said it did, from the summary it prints when it stops.
#[derive(Debug)]
pub(crate) struct WrkSummary {
    /// Answers wrk read whole.
    pub(crate) requests: u64,
    /// Requests wrk saw outstanding for longer than its `--timeout` (still counted in
    /// `requests` if answered later).
    pub(crate) timeouts: u64,
    /// Answers whose status was not 2xx or 3xx.
    pub(crate) non_2xx: u64,
    pub(crate) text: String,
}

impl Wrk {
    /// Starts `wrk` against `url` for at most `secs` seconds. Its timeout is longer than any
    /// test runs, so a timeout it reports is a request never answered, not a slow machine.
    pub(crate) fn start(wrk: &Path, url: &str, secs: u32) -> Wrk {
        let child = Command::new(wrk)
            .args([
                "-t1",
                "-c16",
                &format!("-d{secs}s"),
                "--timeout",
                "120s",
                url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wrk");
        Wrk { child: Some(child) }
    }

    /// Stops wrk with SIGINT, on which it stops sending and prints its summary.
    pub(crate) fn stop(mut self) -> WrkSummary {
        let child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "wrk ended before it was stopped");
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // `  1234 requests in 3.00s, 1.2MB read`
        let requests = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in ")?.0.parse().ok())
            .unwrap_or_else(|| panic!("no request count in wrk's summary:\n{text}"));
        // `  Socket errors: connect 16, read 3, write 0, timeout 0` (absent when all are 0)
        let timeouts = text
            .lines()
            .find_map(|l| l.split("timeout ").nth(1)?.trim().parse().ok())
            .unwrap_or(0);
        // `  Non-2xx or 3xx responses: 5` (absent when there are none)
        let non_2xx = text
            .lines()
            .find_map(|l| {
                l.split("Non-2xx or 3xx responses: ")
                    .nth(1)?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        WrkSummary {
            requests,
            timeouts,
            non_2xx,
            text,
        }
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The counts of the tap's last line, `stopped: N exchanges proxied, R recorded, S sampled
/// out, D dropped; files: ...`, read from its standard error.
pub(crate) struct StopLine {
    pub(crate) line: String,
    pub(crate) proxied: u64,
    pub(crate) recorded: u64,
    pub(crate) sampled_out: u64,
    pub(crate) dropped: u64,
}

impl StopLine {
    pub(crate) fn of(stderr: &str) -> StopLine {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("stopped: "))
            .unwrap_or_else(|| panic!("no stop line in {stderr}"))
            .to_string();
        let number = |after: &str| -> u64 {
            line.split(after)
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .replace(',', "")
                .parse()
                .unwrap_or_else(|e| panic!("{after}: {e} in {line}"))
        };
        StopLine {
            proxied: number(" exchanges proxied"),
            recorded: number(" recorded"),
            sampled_out: number(" sampled out"),
            dropped: number(" dropped"),
            line,
        }
    }
}

/// The issue's second check: SIGTERM in the middle of a wrk run leaves a recording that
/// parses completely, with every exchange whole, and holds every exchange proxied: with
/// the whole sample and a queue that cannot fill, proxied = recorded = the exchanges in the
/// file = the answers wrk read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_wrk_leaves_a_complete_recording() {
    let Some(nginx) = nginx_binary() else { return };
    let Some(wrk) = wrk_binary() else { return };
    let gw = Nginx::start(&nginx, NGINX_API);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("load.jsonl.zst");
    let tap = TapProc::start(&[
        "--upstream",
        &gw.url(),
        "--out",
        out.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
        "--shutdown-grace",
        "5s",
        "--sample",
        "1",
        "--queue-size",
        "1000000",
    ]);
    let load = Wrk::start(&wrk, &format!("{}/api/users/7", tap.url()), 60);
    until("load to flow", || async {
        tap.metric("shadowdiff_tap_proxied_total").await >= 300
    })
    .await;
    let err = tap.stop_async().await;
    let wrk = tokio::task::spawn_blocking(move || load.stop())
        .await
        .unwrap();
    assert!(!shadowdiff::recording::writer::partial_path(&out).exists());
    let stop = StopLine::of(&err);
    let line = &stop.line;
    assert!(stop.proxied >= 300, "{line}");
    assert_eq!((stop.sampled_out, stop.dropped), (0, 0), "{line}");
    assert_eq!(stop.recorded, stop.proxied, "{line}");
    let got = read_recordings(std::slice::from_ref(&out));
    assert_eq!(got.len() as u64, stop.proxied, "{line}");
    // wrk's own count: every answer it read whole is one the tap proxied, and the other way
    // round. Its socket errors are connections the tap closed while stopping, each with a
    // request the tap never read (so never proxied); none may have gone unanswered.
    assert_eq!(wrk.timeouts, 0, "{}", wrk.text);
    assert_eq!(wrk.non_2xx, 0, "{}", wrk.text);
    assert_eq!(wrk.requests, stop.proxied, "{line}\n{}", wrk.text);
    for e in &got {
        let r = e.response.as_ref().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], br#"{"id":7,"name":"user 7"}"#);
    }
}

fn echo_server() -> impl Fn(Seen) -> Answer + Send + Sync + 'static {
    |s: Seen| Answer::json(200, format!(r#"{{"path":"{}"}}"#, s.path_and_query))
}

/// The issue's third check: a recorder that cannot write (a directory that cannot be
/// created, a slow disk) changes nothing for clients, and the drops are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_that_cannot_write_does_not_touch_traffic_and_drops_are_counted() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let out = blocker.join("rec.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        out.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let c = client();
    for i in 0..200 {
        let (status, body) = send(&c, "GET", &format!("{}/x/{i}", tap.url()), &[], "").await;
        assert_eq!(status, 200);
        assert_eq!(body, format!(r#"{{"path":"/x/{i}"}}"#));
    }
    until("200 write_error drops", || async {
        tap.metric("shadowdiff_tap_dropped_total{reason=\"write_error\"}")
            .await
            == 200
    })
    .await;
    assert_eq!(tap.metric("shadowdiff_tap_recorded_total").await, 0);
    assert!(tap.metric("shadowdiff_tap_write_failures_total").await >= 1);
    assert_every_exchange_accounted(&tap).await;
    let log = tap.stop_async().await;
    // Standard error is a pipe here, as in a log file or a journal: no colour codes.
    assert!(log.contains("recording is failing"), "{log}");
    assert!(!log.contains('\x1b'), "{log:?}");

    // A slow disk: a second per write behind a queue of 2. Clients that waited for the disk
    // would each get their answer after a write, so at least 48 would be written by the
    // last answer; these get all 50 answers while the recorder is a few writes in, and the
    // overflow is counted.
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        dir.path().join("slow.jsonl").to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
        "--debug-write-delay",
        "1s",
        "--queue-size",
        "2",
    ]);
    for i in 0..50 {
        let (status, _) = send(&c, "GET", &format!("{}/y/{i}", tap.url()), &[], "").await;
        assert_eq!(status, 200);
    }
    let m = tap.metrics_text().await;
    // Written: recorded (flushed) or still in the writer's buffers. Half of the 50, the
    // bound, would mean 25 s for 50 local requests, which no loaded machine takes.
    let written = metric_in(&m, "shadowdiff_tap_recorded_total")
        + metric_in(&m, "shadowdiff_tap_recorder_pending");
    assert!(written < 25, "{written} written by the last answer\n{m}");
    let full = metric_in(&m, "shadowdiff_tap_dropped_total{reason=\"queue_full\"}");
    assert!(full >= 40, "{full}\n{m}");
    assert_every_exchange_accounted(&tap).await;
    tap.stop_async().await;
}

/// Every proxied exchange is recorded, sampled out, or dropped (and counted by reason), or
/// still queued or pending in the recorder's buffers: the counters add up exactly.
async fn assert_every_exchange_accounted(tap: &TapProc) {
    let accounted = |text: &str| {
        let dropped = metric_sum(text, "shadowdiff_tap_dropped_total");
        (
            metric_in(text, "shadowdiff_tap_proxied_total"),
            metric_in(text, "shadowdiff_tap_recorded_total")
                + metric_in(text, "shadowdiff_tap_sampled_out_total")
                + dropped
                + metric_in(text, "shadowdiff_tap_queue_length")
                + metric_in(text, "shadowdiff_tap_recorder_pending"),
        )
    };
    until("proxied = recorded + sampled out + dropped", || async {
        let (proxied, sum) = accounted(&tap.metrics_text().await);
        proxied > 0 && proxied == sum
    })
    .await;
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped; `None` (with a
/// note) where mounting is not permitted, unless `SHADOWDIFF_REQUIRE_MOUNT` is set.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                if std::env::var_os("SHADOWDIFF_REQUIRE_MOUNT").is_some() {
                    panic!("mounting a tmpfs is required (SHADOWDIFF_REQUIRE_MOUNT is set): {why}");
                }
                eprintln!(
                    "skipped: cannot mount a tmpfs here ({why}); run as root to test a full disk"
                );
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A full disk under wrk: a 2 MB tmpfs as the `--out` directory, most of it taken by a
/// filler file, fills within the first second; the filler is deleted and recording goes on.
/// Every exchange the tap counts as recorded is in the file, the rest are counted as dropped
/// by reason, proxied = recorded + sampled out + dropped, and the stop line names the one
/// file written (no empty `.partial` per second of failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_counted_exchange_and_leaves_no_empty_files() {
    let Some(disk) = Tmpfs::mount("2m") else {
        return;
    };
    let Some(wrk) = wrk_binary() else { return };
    let filler = disk.path().join("filler");
    // 128 KiB left: a few hundred exchanges fill it, however slowly a loaded machine
    // drives the load.
    std::fs::write(&filler, vec![0u8; 1920 << 10]).unwrap();
    let up = TestServer::start(echo_server()).await;
    let out = disk.path().join("full.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        out.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let load = Wrk::start(&wrk, &format!("{}/api/users/7", tap.url()), 15);
    const FULL: &str = "shadowdiff_tap_dropped_total{reason=\"disk_full\"}";
    const RECORDED: &str = "shadowdiff_tap_recorded_total";
    until("the disk to be full", || async {
        tap.metric(FULL).await > 0
    })
    .await;
    std::fs::remove_file(&filler).unwrap();
    let before = tap.metric(RECORDED).await;
    until("recording again after room was made", || async {
        tap.metric(RECORDED).await > before
    })
    .await;
    drop(load);
    assert_every_exchange_accounted(&tap).await;
    until("the recorder to have flushed what it took", || async {
        let m = tap.metrics_text().await;
        metric_in(&m, "shadowdiff_tap_recorder_pending") == 0
            && metric_in(&m, "shadowdiff_tap_queue_length") == 0
    })
    .await;
    let m = tap.metrics_text().await;
    let err = tap.stop_async().await;
    let StopLine {
        line,
        proxied,
        recorded,
        sampled_out,
        dropped,
    } = StopLine::of(&err);
    assert_eq!(proxied, recorded + sampled_out + dropped, "{line}");
    assert!(dropped > 0 && recorded > 0, "{line}");
    // What the metrics said after the load is what the tap said at the end: nothing changed.
    assert_eq!(metric_in(&m, RECORDED), recorded, "{m}");
    let by_reason = metric_sum(&m, "shadowdiff_tap_dropped_total");
    assert_eq!(by_reason, dropped, "{m}");
    assert!(metric_in(&m, FULL) > 0, "{m}");
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_dropped_total{reason=\"write_error\"}"),
        0,
        "{m}"
    );
    // One file, the one the stop line names, holding exactly the exchanges counted.
    assert_eq!(files_in(disk.path()), std::slice::from_ref(&out), "{err}");
    assert!(
        line.ends_with(&format!("files: {}", out.display())),
        "{line}"
    );
    let got = read_recordings(std::slice::from_ref(&out));
    assert_eq!(got.len() as u64, recorded, "{line}");
    for e in &got {
        assert_eq!(e.response.as_ref().unwrap().status, 200);
    }
}

/// The issue's stratified-sampling check over real HTTP (the 100,000-exchange version runs
/// in-process in `tap::sample`): one call among thousands at 1% is in the recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_interface_is_recorded_at_one_percent_over_http() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sampled.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        out.to_str().unwrap(),
        "--sample",
        "0.01",
        "--min-per-interface",
        "1",
    ]);
    let c = client();
    let n = 3000;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (c, next, url) = (c.clone(), next.clone(), tap.url());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let path = if i == 1717 {
                    "/api/reports/annual-export".to_string()
                } else {
                    format!("/api/users/{i}")
                };
                let (status, _) = send(&c, "GET", &format!("{url}{path}"), &[], "").await;
                assert_eq!(status, 200);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    tap.stop_async().await;
    let got = read_recordings(&[out]);
    let rare: Vec<_> = got
        .iter()
        .filter(|e| e.interface.as_deref() == Some("GET /api/reports/annual-export"))
        .collect();
    assert_eq!(rare.len(), 1);
    let users: Vec<_> = got
        .iter()
        .filter(|e| e.interface.as_deref() == Some("GET /api/users/{id}"))
        .collect();
    assert!((5..=70).contains(&users.len()), "{}", users.len());
    // Every recorded exchange is picked by the hash of its id, except at most one per
    // interface kept for the minimum.
    let s = Sampler::new(0.01, 0);
    assert!(users.iter().filter(|e| !s.picks(&e.id)).count() <= 1);
}

/// The tap forwards only to its upstream: absolute-form targets for other hosts and CONNECT
/// are refused before anything reaches production; size limits answer 413 and 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_proxy_requests_and_oversized_requests_are_refused() {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let up = TestServer::start(move |s: Seen| {
        h.fetch_add(1, Ordering::Relaxed);
        Answer::json(200, format!(r#"{{"path":"{}"}}"#, s.path_and_query))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        dir.path().join("r.jsonl").to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
        "--max-request-body",
        "1KiB",
        "--max-header-bytes",
        "8KiB",
    ]);
    let (s, _) = raw_answer(
        tap.addr,
        "GET http://evil.example/steal HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(s, 421);
    let (s, _) = raw_answer(
        tap.addr,
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    )
    .await;
    assert_eq!(s, 405);
    let (s, _) = raw_answer(
        tap.addr,
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
    )
    .await;
    assert_eq!(s, 413);
    let big = "x".repeat(16 << 10);
    let (s, _) = raw_answer(
        tap.addr,
        &format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n"),
    )
    .await;
    assert_eq!(s, 431);
    assert_eq!(
        hits.load(Ordering::Relaxed),
        0,
        "a refused request reached the upstream"
    );
    // A chunked body that grows past the limit is cut off too.
    let c = client();
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
        "y".repeat(0x800)
    );
    let (s, _) = raw_answer(tap.addr, &chunked).await;
    assert!(s == 413 || s == 502, "{s}");
    // Absolute form naming the upstream itself is an ordinary request.
    let (s, body) = raw(
        tap.addr,
        &format!(
            "GET {}/fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            up.url()
        ),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, r#"{"path":"/fine"}"#));
    let (s, _) = send(&c, "GET", &format!("{}/ok", tap.url()), &[], "").await;
    assert_eq!(s, 200);
    // hyper answers the oversized head itself; the tap counts it when the connection ends.
    until("the 431 counted", || async {
        tap.metric("shadowdiff_tap_refused_total{reason=\"head_too_large\"}")
            .await
            == 1
    })
    .await;
    let m = tap.metrics_text().await;
    // Every refusal is an answer, counted by its class.
    let refused = metric_sum(&m, "shadowdiff_tap_refused_total");
    assert!(refused >= 4, "{m}");
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_responses_total{class=\"4xx\"}"),
        refused,
        "{m}"
    );
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_refused_total{reason=\"foreign_host\"}"),
        1
    );
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_refused_total{reason=\"connect\"}"),
        1
    );
    assert!(metric_in(&m, "shadowdiff_tap_refused_total{reason=\"too_large\"}") >= 1);
    tap.stop_async().await;
}

/// Heads the tap's own HTTP/1.1 code leaves to hyper, which answers 400 itself before any
/// handler runs: each is counted as a `bad_request` refusal and a 4xx answer, and none
/// reaches production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_heads_hyper_answers_400_itself_are_counted_as_refusals() {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let up = TestServer::start(move |_: Seen| {
        h.fetch_add(1, Ordering::Relaxed);
        Answer::json(200, "{}")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        dir.path().join("r.jsonl").to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let malformed = [
        "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Ctl: a\x01b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/9.1\r\nHost: a\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://[::1 HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: five\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    ];
    for req in malformed {
        let (s, _) = raw(tap.addr, req).await;
        assert_eq!(s, 400, "{req:?}");
    }
    // On a kept connection too: the tap's own code served the first request, hyper the rest.
    let mut c = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    c.write_all(b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut both = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut both)).await;
    let both = String::from_utf8_lossy(&both).to_string();
    assert!(
        both.starts_with("HTTP/1.1 200") && both.contains("HTTP/1.1 400"),
        "{both:?}"
    );
    assert_eq!(
        hits.load(Ordering::Relaxed),
        1,
        "only /fine reached production"
    );
    // A chunked body whose framing breaks is hyper's to read but the tap's to answer: a 400
    // counted as the client's abort, not a refusal (production got the head already).
    let (s, body) = raw(
        tap.addr,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!((s, body.as_str()), (400, "request body broken off\n"));
    until("eleven 400s counted", || async {
        tap.metric("shadowdiff_tap_refused_total{reason=\"bad_request\"}")
            .await
            == 11
    })
    .await;
    let m = tap.metrics_text().await;
    let refused = metric_sum(&m, "shadowdiff_tap_refused_total");
    assert_eq!(refused, 11, "{m}");
    // Every 4xx the tap gave itself is a refusal, by reason, or a client's abort.
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_client_aborted_total"),
        1,
        "{m}"
    );
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_responses_total{class=\"4xx\"}"),
        11 + 1,
        "{m}"
    );
    tap.stop_async().await;
}

/// Production down: the client gets 502; production too slow: 504. Both are recorded as
/// the client saw them and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_answer_502_and_504_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = dir.path().join("dead.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &dead,
        "--out",
        out.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let c = client();
    let (s, body) = send(&c, "GET", &format!("{}/a", tap.url()), &[], "").await;
    assert_eq!((s, &body[..]), (502, &b"bad gateway\n"[..]));
    assert_eq!(
        tap.metric("shadowdiff_tap_upstream_errors_total{kind=\"connect\"}")
            .await,
        1
    );
    tap.stop_async().await;
    let got = read_recordings(&[out]);
    assert_eq!(got[0].response.as_ref().unwrap().status, 502);

    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let slow = TestServer::start(move |_s: Seen| {
        // Held until the test has seen the 504 (bounded, so the server never hangs).
        let t = Instant::now();
        while !r.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Answer::json(200, "{}")
    })
    .await;
    let out = dir.path().join("slow.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &slow.url(),
        "--out",
        out.to_str().unwrap(),
        "--upstream-timeout",
        "300ms",
    ]);
    let (s, _) = send(&c, "GET", &format!("{}/slow", tap.url()), &[], "").await;
    release.store(true, Ordering::Relaxed);
    assert_eq!(s, 504);
    tap.stop_async().await;
    let got = read_recordings(&[out]);
    assert_eq!(got[0].response.as_ref().unwrap().status, 504);
}

/// Rotation by size into zstd files: every file complete, private, none left `.partial`;
/// an existing `--out` is never overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_zstd_files_are_complete_and_private() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traffic.jsonl.zst");
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        out.to_str().unwrap(),
        "--rotate-size",
        "4KiB",
    ]);
    let c = client();
    for i in 0..60 {
        let (s, _) = send(&c, "GET", &format!("{}/r/{i}", tap.url()), &[], "").await;
        assert_eq!(s, 200);
    }
    tap.stop_async().await;
    let files = files_in(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("traffic-") && name.ends_with(".jsonl.zst"),
            "{name}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    assert_eq!(read_recordings(&files).len(), 60);

    std::fs::write(dir.path().join("taken.jsonl"), b"precious").unwrap();
    let o = shadowdiff_async(vec![
        "tap".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--upstream".into(),
        up.url(),
        "--out".into(),
        dir.path().join("taken.jsonl").display().to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists"));
    assert_eq!(
        std::fs::read(dir.path().join("taken.jsonl")).unwrap(),
        b"precious"
    );
}

/// A streaming response body: frames sent as they are produced, then trailers.
struct ChanBody(tokio::sync::mpsc::Receiver<Frame<Bytes>>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// A gRPC message frame: flag, 4-byte big-endian length, payload.
pub(crate) fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut v = vec![0u8];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    Bytes::from(v)
}

/// A gRPC-shaped h2c server: `/demo.Greeter/Stream` answers three messages and
/// `grpc-status: 0` in trailers. The first call holds its last message until `go` fires,
/// which proves the tap streams instead of buffering.
pub(crate) async fn grpc_server(
    go: Arc<tokio::sync::Notify>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = Arc::new(AtomicBool::new(true));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let (go, first) = (go.clone(), first.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (go, first) = (go.clone(), first.clone());
                        async move {
                            assert_eq!(req.version(), http::Version::HTTP_2);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let name = String::from_utf8_lossy(&body[5..]).to_string();
                            let (tx, rx) = tokio::sync::mpsc::channel(4);
                            let hold = first.swap(false, Ordering::SeqCst);
                            tokio::spawn(async move {
                                let _ = tx
                                    .send(Frame::data(grpc_frame(
                                        format!("hello {name}").as_bytes(),
                                    )))
                                    .await;
                                let _ = tx.send(Frame::data(grpc_frame(b"second"))).await;
                                if hold {
                                    let _ = tokio::time::timeout(
                                        Duration::from_secs(10),
                                        go.notified(),
                                    )
                                    .await;
                                }
                                let _ = tx.send(Frame::data(grpc_frame(b"third"))).await;
                                let mut t = http::HeaderMap::new();
                                t.insert("grpc-status", "0".parse().unwrap());
                                t.insert("grpc-message", "done".parse().unwrap());
                                let _ = tx.send(Frame::trailers(t)).await;
                            });
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/grpc")
                                    .body(ChanBody(rx))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// gRPC-shaped traffic (HTTP/2, length-prefixed `application/grpc` frames, `grpc-status`
/// trailers) streams through the tap frame by frame, is recorded with its trailers, and
/// replays to identical outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streams_pass_through_with_trailers_and_replay() {
    let go = Arc::new(tokio::sync::Notify::new());
    let (addr, server) = grpc_server(go.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grpc.jsonl");
    // `http://` upstream: gRPC is recognised by content type and sent over h2c anyway.
    let tap = TapProc::start(&[
        "--upstream",
        &format!("http://{addr}"),
        "--out",
        out.to_str().unwrap(),
    ]);
    let c: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("{}/demo.Greeter/Stream", tap.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(grpc_frame(b"ann")))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut data = Vec::new();
    // Two messages arrive while the server still holds the third: nothing is buffered.
    while data.len() < 2 * 5 + "hello ann".len() + "second".len() {
        let f = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("frames stream through before the response ends")
            .unwrap()
            .unwrap();
        data.extend_from_slice(f.data_ref().unwrap());
    }
    go.notify_one();
    let mut trailers = None;
    while let Some(f) = body.frame().await {
        let f = f.unwrap();
        if let Some(d) = f.data_ref() {
            data.extend_from_slice(d);
        } else {
            trailers = f.into_trailers().ok();
        }
    }
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    assert!(data.ends_with(&grpc_frame(b"third")));
    tap.stop_async().await;

    let got = read_recordings(std::slice::from_ref(&out));
    assert_eq!(got.len(), 1);
    let e = &got[0];
    assert_eq!(e.interface.as_deref(), Some("/demo.Greeter/Stream"));
    assert_eq!(e.request.version, "HTTP/2");
    assert_eq!(e.request.body, grpc_frame(b"ann"));
    let r = e.response.as_ref().unwrap();
    assert_eq!(&r.body[..], &data[..]);
    let t = r.trailers.as_ref().unwrap();
    assert!(
        t.contains(&("grpc-status".to_string(), "0".to_string())),
        "{t:?}"
    );

    let json = dir.path().join("r.json");
    let h2 = format!("h2c://{addr}");
    let o = shadowdiff_async(vec![
        "replay".into(),
        out.display().to_string(),
        "--baseline".into(),
        h2.clone(),
        "--candidate".into(),
        h2,
        "--no-noise-probe".into(),
        "--allow-side-effects".into(),
        "--json".into(),
        json.display().to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_eq!(
        interface(&r, "/demo.Greeter/Stream")["identical"],
        1,
        "{r:#}"
    );
    server.abort();
}

/// A tap recording into `dir` that shadows every request from `upstream` to `candidate`
/// and serves `/report` on its metrics address, with `extra` flags.
fn shadow_tap(dir: &Path, upstream: &str, candidate: &str, extra: &[&str]) -> TapProc {
    let out = dir.join("s.jsonl");
    let mut args = vec![
        "--upstream",
        upstream,
        "--out",
        out.to_str().unwrap(),
        "--shadow",
        candidate,
        "--shadow-sample",
        "1",
        "--metrics",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    TapProc::start(&args)
}

fn shop(price: &'static str) -> impl Fn(Seen) -> Answer + Send + Sync + 'static {
    move |s: Seen| {
        let p = s.path_and_query.clone();
        if let Some(id) = p.strip_prefix("/products/") {
            Answer::json(200, format!(r#"{{"id":{id},"price":{price}}}"#))
        } else if let Some(id) = p.strip_prefix("/users/") {
            Answer::json(200, format!(r#"{{"id":{id},"name":"user {id}"}}"#))
        } else if p == "/orders" {
            Answer::json(201, r#"{"created":true}"#)
        } else {
            Answer::json(404, r#"{"error":"no route"}"#)
        }
    }
}

/// Live shadow: copies go to the candidate after production answered; `/report` has the
/// `replay --json` schema and finds the changed field; side-effecting methods are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_shadow_reports_differences_with_the_replay_schema() {
    let prod = TestServer::start(shop("12.5")).await;
    let cand_hits = Arc::new(AtomicU64::new(0));
    let ch = cand_hits.clone();
    let inner = shop("\"12.50\"");
    let cand = TestServer::start(move |s: Seen| {
        ch.fetch_add(1, Ordering::Relaxed);
        inner(s)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tap = shadow_tap(dir.path(), &prod.url(), &cand.url(), &[]);
    let c = client();
    for i in 0..25 {
        let (s, b) = send(&c, "GET", &format!("{}/users/{i}", tap.url()), &[], "").await;
        assert_eq!(s, 200);
        assert_eq!(b, format!(r#"{{"id":{i},"name":"user {i}"}}"#));
        let (s, b) = send(&c, "GET", &format!("{}/products/{i}", tap.url()), &[], "").await;
        // The client always gets production's answer.
        assert_eq!(
            (s, b),
            (200, Bytes::from(format!(r#"{{"id":{i},"price":12.5}}"#)))
        );
    }
    for _ in 0..3 {
        let (s, _) = send(&c, "POST", &format!("{}/orders", tap.url()), &[], "{}").await;
        assert_eq!(s, 201);
    }
    let m = tap.metrics.unwrap();
    until("every shadow judged", || async {
        let (_, body) = get_text(m, "/report").await;
        let r: serde_json::Value = serde_json::from_str(&body).unwrap();
        r["summary"]["total"] == 53
    })
    .await;
    let (status, body) = get_text(m, "/report").await;
    assert_eq!(status, 200);
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Validates against the result schema too.
    assert_counts_consistent(&r);
    assert_eq!(r["verdict"], "fail");
    assert_eq!(interface(&r, "GET /users/{id}")["identical"], 25);
    let products = interface(&r, "GET /products/{id}");
    assert_eq!(products["different"], 25);
    assert_eq!(products["fields"][0]["path"], "$.price");
    assert_eq!(products["fields"][0]["regression"], true);
    assert_eq!(interface(&r, "POST /orders")["skipped"], 3);
    assert_eq!(r["summary"]["skipped_reasons"]["side_effect"], 3);
    // POSTs never reached the candidate.
    assert_eq!(cand_hits.load(Ordering::Relaxed), 50);
    let (status, page) = get_text(m, "/report.html").await;
    assert_eq!(status, 200);
    assert!(page.contains("live shadow") && page.contains("GET /products/{id}"));
    let text = tap.metrics_text().await;
    assert_eq!(metric_in(&text, "shadowdiff_tap_shadow_sent_total"), 50);
    assert_eq!(
        metric_in(
            &text,
            "shadowdiff_tap_shadow_not_sent_total{reason=\"side_effect\"}"
        ),
        3
    );
    tap.stop_async().await;
    // Shadowed and recorded: the recording holds each exchange whole, heads included.
    let recorded = read_recordings(&[dir.path().join("s.jsonl")]);
    assert_eq!(recorded.len(), 53);
    let e = recorded
        .iter()
        .find(|e| e.request.uri == "/products/7")
        .expect("GET /products/7 recorded");
    assert_eq!(
        (e.request.method.as_str(), e.request.version.as_str()),
        ("GET", "HTTP/1.1")
    );
    assert_eq!(e.interface.as_deref(), Some("GET /products/{id}"));
    assert!(header(&e.request.headers, "host").is_some(), "{e:?}");
    let resp = e.response.as_ref().unwrap();
    assert_eq!(resp.body, r#"{"id":7,"price":12.5}"#);
    assert_eq!(header(&resp.headers, "content-length"), Some("21"));
}

/// What a server was sent: method, path, the `authorization` and `x-session` values, body.
type Received = (String, String, Option<String>, Option<String>, String);

/// A `shop` server that keeps what it was sent.
async fn keeping_server(price: &'static str) -> (TestServer, Arc<Mutex<Vec<Received>>>) {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let k = kept.clone();
    let inner = shop(price);
    let server = TestServer::start(move |s: Seen| {
        let value = |name: &str| {
            s.headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        k.lock().unwrap().push((
            s.method.clone(),
            s.path_and_query.clone(),
            value("authorization"),
            value("x-session"),
            String::from_utf8_lossy(&s.body).into_owned(),
        ));
        inner(s)
    })
    .await;
    (server, kept)
}

/// The live shadow sends the candidate the credentials as production got them, since a
/// candidate usually needs them to answer the same; `--shadow-redact` sends it the request
/// as the recording keeps it instead (secret headers, `--redact-header` and
/// `--redact-json-path` fields redacted), while production, asked again for noise, still
/// gets the real ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_shadow_sends_real_credentials_unless_shadow_redact() {
    const BODY: &str = r#"{"item":7,"password":"hunter2"}"#;
    for redact in [false, true] {
        let (prod, at_prod) = keeping_server("1").await;
        let (cand, at_cand) = keeping_server("1").await;
        let dir = tempfile::tempdir().unwrap();
        let mut extra = vec![
            "--redact-header",
            "x-session",
            "--redact-json-path",
            "$.password",
            "--allow-side-effects",
            "--shadow-noise-sample",
            "1",
        ];
        if redact {
            extra.push("--shadow-redact");
        }
        let tap = shadow_tap(dir.path(), &prod.url(), &cand.url(), &extra);
        let c = client();
        let creds = [("authorization", "Bearer s3cret"), ("x-session", "sess-42")];
        let (s, _) = send(&c, "GET", &format!("{}/users/1", tap.url()), &creds, "").await;
        assert_eq!(s, 200);
        let json = [("content-type", "application/json"), creds[0], creds[1]];
        let (s, _) = send(&c, "POST", &format!("{}/orders", tap.url()), &json, BODY).await;
        assert_eq!(s, 201);
        // A body that cannot be searched for the JSON field could hold it: under
        // --shadow-redact it is not sent, and counted.
        let (s, _) = send(
            &c,
            "POST",
            &format!("{}/orders", tap.url()),
            &json,
            "{broken",
        )
        .await;
        assert_eq!(s, 201);
        let m = tap.metrics.unwrap();
        until("every copy judged or skipped", || async {
            let (_, body) = get_text(m, "/report").await;
            let r: serde_json::Value = serde_json::from_str(&body).unwrap();
            r["summary"]["total"] == 3
        })
        .await;
        let (_, body) = get_text(m, "/report").await;
        let r: serde_json::Value = serde_json::from_str(&body).unwrap();
        let unsearchable = metric_in(
            &tap.metrics_text().await,
            "shadowdiff_tap_shadow_not_sent_total{reason=\"unsearchable_body\"}",
        );
        if redact {
            assert_eq!(
                r["summary"]["skipped_reasons"]["unsearchable_body"], 1,
                "{r:#}"
            );
            assert_eq!(unsearchable, 1);
        } else {
            assert_eq!(unsearchable, 0);
        }
        tap.stop_async().await;
        let recorded = read_recordings(&[dir.path().join("s.jsonl")]);
        let at_cand = at_cand.lock().unwrap().clone();
        assert_eq!(
            at_cand.len(),
            if redact { 2 } else { 3 },
            "redact {redact}: {at_cand:?}"
        );
        for (method, path, authorization, session, body) in &at_cand {
            if redact {
                // Exactly what the recording keeps.
                let e = recorded
                    .iter()
                    .find(|e| &e.request.uri == path)
                    .unwrap_or_else(|| panic!("{path} recorded"));
                assert_eq!(
                    authorization.as_deref(),
                    Some(redact_value(b"Bearer s3cret").as_str())
                );
                assert_eq!(
                    authorization.as_deref(),
                    header(&e.request.headers, "authorization")
                );
                assert_eq!(session.as_deref(), Some(redact_value(b"sess-42").as_str()));
                assert_eq!(body.as_bytes(), &e.request.body[..], "{method} {path}");
                assert!(!body.contains("hunter2"), "{body}");
            } else {
                assert_eq!(authorization.as_deref(), Some("Bearer s3cret"), "{path}");
                assert_eq!(session.as_deref(), Some("sess-42"), "{path}");
                if method == "POST" {
                    assert!(body == BODY || body == "{broken", "{body}");
                }
            }
        }
        // Production got the real ones every time, its second answer for noise included.
        let at_prod = at_prod.lock().unwrap().clone();
        assert_eq!(at_prod.len(), 4, "redact {redact}: {at_prod:?}");
        for (_, path, authorization, session, _) in &at_prod {
            assert_eq!(authorization.as_deref(), Some("Bearer s3cret"), "{path}");
            assert_eq!(session.as_deref(), Some("sess-42"), "{path}");
        }
    }
}

/// Clients that hang up mid-body, upstreams that are down: the tap answers what it can,
/// counts everything, and the next client is served as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_body_do_not_disturb_the_tap() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        dir.path().join("rec.jsonl").to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    for i in 0..20 {
        // Promise 1000 bytes, send 10, hang up.
        let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
        s.write_all(
            format!(
                "POST /upload/{i} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        drop(s);
    }
    let c = client();
    for i in 0..20 {
        let (status, body) = send(&c, "GET", &format!("{}/after/{i}", tap.url()), &[], "").await;
        assert_eq!(status, 200);
        assert_eq!(body, format!(r#"{{"path":"/after/{i}"}}"#));
    }
    assert_every_exchange_accounted(&tap).await;
    tap.stop_async().await;
}

/// Each HTTP/1 client connection keeps its own upstream connection: when nginx closes it
/// (`connection: close` after `keepalive_requests`, silently after `keepalive_timeout`), the
/// next request goes on a new one and the client never sees an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_production_closes_are_replaced() {
    let Some(nginx) = nginx_binary() else { return };
    let gw = Nginx::start(
        &nginx,
        &format!("    keepalive_requests 3;\n    keepalive_timeout 100ms;\n{NGINX_API}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ka.jsonl");
    let tap = TapProc::start(&[
        "--threads",
        "1",
        "--upstream",
        &gw.url(),
        "--out",
        out.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    // One kept-alive client connection, so every request after the first reuses the tap's
    // upstream connection unless production closed it.
    let c = client();
    for i in 0..12 {
        if i % 4 == 3 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (status, body) =
            send(&c, "GET", &format!("{}/api/users/{i}", tap.url()), &[], "").await;
        assert_eq!(
            status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            body,
            format!(r#"{{"id":{i},"name":"user {i}"}}"#),
            "request {i}"
        );
    }
    let text = tap.metrics_text().await;
    for kind in ["connect", "timeout", "reset", "malformed", "body"] {
        let series = format!("shadowdiff_tap_upstream_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(metric_in(&text, &series), 0, "{series}");
    }
    // The client's pool may open another connection while the last one is being returned
    // (seen once in five runs with 3); either way most of the 12 requests came on a
    // kept-alive client connection.
    assert!(
        metric_in(&text, "shadowdiff_tap_connections_total") <= 4,
        "{text}"
    );
    tap.stop_async().await;
    let recorded = read_recordings(&files_in(dir.path()));
    assert_eq!(recorded.len(), 12);
    assert!(recorded
        .iter()
        .all(|e| e.response.as_ref().map(|r| r.status) == Some(200)));
}

/// An HTTP/1.1 upstream answering `GET /s` with a chunked body: "first", then (on the first
/// call, once `go` fires) "second", then an `x-t` trailer. Counts the connections it takes.
async fn h1_stream_server(
    go: Arc<tokio::sync::Notify>,
) -> (SocketAddr, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let first = Arc::new(AtomicBool::new(true));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (go, first) = (go.clone(), first.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (go, first) = (go.clone(), first.clone());
                        async move {
                            assert_eq!(req.headers()["te"], "trailers");
                            let (tx, rx) = tokio::sync::mpsc::channel(4);
                            let hold = first.swap(false, Ordering::SeqCst);
                            tokio::spawn(async move {
                                let _ = tx.send(Frame::data(Bytes::from_static(b"first"))).await;
                                if hold {
                                    let _ = tokio::time::timeout(
                                        Duration::from_secs(10),
                                        go.notified(),
                                    )
                                    .await;
                                }
                                let _ = tx.send(Frame::data(Bytes::from_static(b"second"))).await;
                                let mut t = http::HeaderMap::new();
                                t.insert("x-t", "done".parse().unwrap());
                                let _ = tx.send(Frame::trailers(t)).await;
                            });
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .header("content-type", "text/plain")
                                    .header("trailer", "x-t")
                                    .body(ChanBody(rx))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, accepted, task)
}

/// Reads from `s` into `buf` until `buf` ends with `end`, for at most five seconds.
pub(crate) async fn read_until_end(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, end: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !buf.ends_with(end) {
        let mut piece = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut piece))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {:?} in {:?}",
                    String::from_utf8_lossy(end),
                    String::from_utf8_lossy(buf)
                )
            })
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&piece[..n]);
    }
}

/// An HTTP/1.1 chunked answer with a trailer streams to the client piece by piece (the first
/// arrives while production still holds the second), its trailer reaches the client and the
/// recording, and the next request reuses the upstream connection. hyper's HTTP/1 server
/// drops a body right after writing its trailers, so the exchange must count as complete
/// then, not as a client gone (which would leave it out of the recording).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_answers_stream_through_with_trailers_and_the_connection_is_kept() {
    let go = Arc::new(tokio::sync::Notify::new());
    let (addr, accepted, server) = h1_stream_server(go.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h1.jsonl");
    let tap = TapProc::start(&[
        "--threads",
        "1",
        "--upstream",
        &format!("http://{addr}"),
        "--out",
        out.to_str().unwrap(),
    ]);
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    let get = b"GET /s HTTP/1.1\r\nhost: shop\r\nte: trailers\r\n\r\n";
    s.write_all(get).await.unwrap();
    let mut got = Vec::new();
    read_until_end(&mut s, &mut got, b"first\r\n").await;
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("second"));
    go.notify_one();
    read_until_end(&mut s, &mut got, b"x-t: done\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&got).contains("second"));
    // The same client connection again: the tap's upstream connection is reused.
    s.write_all(get).await.unwrap();
    let mut again = Vec::new();
    read_until_end(&mut s, &mut again, b"x-t: done\r\n\r\n").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    drop(s);
    tap.stop_async().await;
    server.abort();

    let got = read_recordings(std::slice::from_ref(&out));
    assert_eq!(got.len(), 2);
    for e in &got {
        let r = e.response.as_ref().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"firstsecond");
        assert!(!r.body_truncated);
        assert_eq!(
            r.trailers.as_deref(),
            Some(&[("x-t".to_string(), "done".to_string())][..])
        );
    }
}

/// A chunked HTTP/1.1 upload that ends with a trailer is recorded whole: hyper's client drops
/// a request body right after writing its trailers, and the copy must count as complete then,
/// not as cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_ending_in_trailers_is_recorded_whole() {
    let up = TestServer::start(|s: Seen| {
        Answer::json(
            200,
            format!(r#"{{"got":"{}"}}"#, String::from_utf8_lossy(&s.body)),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("up.jsonl");
    let tap = TapProc::start(&["--upstream", &up.url(), "--out", out.to_str().unwrap()]);
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nhost: shop\r\ncontent-type: text/plain\r\n\
          transfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
          3\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 5\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    read_until_end(&mut s, &mut got, br#"{"got":"abcde"}"#).await;
    drop(s);
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0].request;
    assert_eq!(&r.body[..], b"abcde");
    assert!(!r.body_truncated, "{r:?}");
}

/// Answers without a body (HEAD, 204, 304) and an upload sent only after `100 Continue` are
/// proxied as they came and recorded as complete exchanges, none taken for a client that
/// went away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_answers_and_expect_continue_uploads_are_recorded_whole() {
    let up = TestServer::start(|s: Seen| match s.path_and_query.as_str() {
        "/gone" => Answer {
            status: 204,
            headers: vec![],
            body: String::new(),
        },
        "/same" => Answer {
            status: 304,
            headers: vec![("etag", "\"v1\"".into())],
            body: String::new(),
        },
        _ => Answer::json(
            200,
            format!(
                r#"{{"method":"{}","got":"{}"}}"#,
                s.method,
                String::from_utf8_lossy(&s.body)
            ),
        ),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        out.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    for (request, want) in [
        ("HEAD /items HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n", 200),
        ("GET /gone HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n", 204),
        (
            "GET /same HTTP/1.1\r\nhost: shop\r\nif-none-match: \"v1\"\r\nconnection: close\r\n\r\n",
            304,
        ),
    ] {
        let (status, body) = raw(tap.addr, request).await;
        assert_eq!((status, body.as_str()), (want, ""), "{request}");
    }
    // The body goes only once the tap has said `100 Continue`.
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nhost: shop\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\
          connection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    read_until_end(&mut s, &mut got, b"100 Continue\r\n\r\n").await;
    s.write_all(b"hello").await.unwrap();
    read_until_end(&mut s, &mut got, br#"{"method":"POST","got":"hello"}"#).await;
    drop(s);
    assert_eq!(
        tap.metric("shadowdiff_tap_client_aborted_total").await,
        0,
        "{}",
        tap.metrics_text().await
    );
    tap.stop_async().await;

    let recorded = read_recordings(std::slice::from_ref(&out));
    let seen: Vec<(&str, &str, u16)> = recorded
        .iter()
        .map(|e| {
            (
                e.request.method.as_str(),
                e.request.uri.as_str(),
                e.response.as_ref().unwrap().status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("HEAD", "/items", 200),
            ("GET", "/gone", 204),
            ("GET", "/same", 304),
            ("POST", "/up", 200)
        ]
    );
    let post = &recorded[3];
    assert_eq!(&post.request.body[..], b"hello");
    assert!(!post.request.body_truncated);
    assert!(recorded
        .iter()
        .all(|e| !e.response.as_ref().unwrap().body_truncated));
}

/// Requests an HTTP/1.1 client pipelines (sent together before any answer) are answered in
/// order on the same connection and each recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_and_recorded() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.jsonl");
    let tap = TapProc::start(&["--upstream", &up.url(), "--out", out.to_str().unwrap()]);
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(
        b"GET /one HTTP/1.1\r\nhost: shop\r\n\r\n\
          GET /two HTTP/1.1\r\nhost: shop\r\n\r\n\
          GET /three HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    read_until_end(&mut s, &mut got, br#"{"path":"/three"}"#).await;
    let text = String::from_utf8_lossy(&got);
    let at = |p: &str| {
        text.find(&format!(r#"{{"path":"{p}"}}"#))
            .unwrap_or(usize::MAX)
    };
    assert!(
        at("/one") < at("/two") && at("/two") < at("/three"),
        "{text}"
    );
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    drop(s);
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    let uris: Vec<&str> = recorded.iter().map(|e| e.request.uri.as_str()).collect();
    assert_eq!(uris, ["/one", "/two", "/three"]);
}

/// Exchanges that follow each other on one kept connection, with different fields each
/// way, are passed on and recorded with their own fields only: nothing of an earlier head
/// stays in the next one, although the tap parses each into the lists of the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_carries_each_exchange_with_its_own_fields() {
    let up = TestServer::start(|s: Seen| {
        let mut a = Answer::json(200, format!(r#"{{"path":"{}"}}"#, s.path_and_query));
        match s.path_and_query.as_str() {
            "/one" => a
                .headers
                .extend([("x-one", "1".into()), ("x-more", "m".into())]),
            "/three" => a.headers.push(("x-three", "3".into())),
            _ => a.headers.clear(),
        }
        a
    })
    .await;
    let (tap, out, _dir) = recording_tap(&up.url(), &[]);
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    let mut got = Vec::new();
    for (request, end) in [
        (
            &b"GET /one HTTP/1.1\r\nhost: shop\r\nx-a: 1\r\nx-b: 2\r\nx-c: 3\r\n\r\n"[..],
            &br#"{"path":"/one"}"#[..],
        ),
        (
            b"GET /two HTTP/1.1\r\nhost: shop\r\n\r\n",
            br#"{"path":"/two"}"#,
        ),
        (
            b"GET /three HTTP/1.1\r\nhost: shop\r\nx-d: 4\r\nconnection: close\r\n\r\n",
            br#"{"path":"/three"}"#,
        ),
    ] {
        s.write_all(request).await.unwrap();
        read_until_end(&mut s, &mut got, end).await;
    }
    drop(s);
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let answers: Vec<&str> = text.split("http/1.1 200").skip(1).collect();
    assert_eq!(answers.len(), 3, "{text}");
    assert!(answers[0].contains("x-one: 1") && answers[0].contains("x-more: m"));
    assert!(!answers[1].contains("x-") && !answers[1].contains("content-type"));
    assert!(answers[2].contains("x-three: 3") && !answers[2].contains("x-one"));
    tap.stop_async().await;

    let recorded = read_recordings(std::slice::from_ref(&out));
    let names = |h: &[(String, String)]| {
        let mut n: Vec<String> = h
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k.starts_with("x-") || k == "host" || k == "connection")
            .collect();
        n.sort();
        n
    };
    let seen: Vec<(&str, Vec<String>, Vec<String>)> = recorded
        .iter()
        .map(|e| {
            let resp = e.response.as_ref().unwrap();
            (
                e.request.uri.as_str(),
                names(&e.request.headers),
                names(&resp.headers),
            )
        })
        .collect();
    let v = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        seen,
        [
            (
                "/one",
                v(&["host", "x-a", "x-b", "x-c"]),
                v(&["x-more", "x-one"])
            ),
            ("/two", v(&["host"]), v(&[])),
            ("/three", v(&["connection", "host", "x-d"]), v(&["x-three"])),
        ]
    );
}

/// A tap in front of `upstream` recording to a file in a fresh directory, with `extra`
/// flags: the tap, the recording's path, and the directory (kept alive by the caller).
pub(crate) fn recording_tap(
    upstream: &str,
    extra: &[&str],
) -> (TapProc, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec.jsonl");
    let mut args = vec!["--upstream", upstream, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    (TapProc::start(&args), out, dir)
}

/// A connection whose plain requests the tap serves by hand moves to hyper at its first
/// request that needs more (a chunked upload here), with the bytes already read: every
/// answer still comes in order, and every exchange is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_handed_over_mid_way_keeps_its_order() {
    let up = TestServer::start(|s: Seen| {
        Answer::json(
            200,
            format!(
                r#"{{"path":"{}","body":"{}"}}"#,
                s.path_and_query,
                String::from_utf8_lossy(&s.body)
            ),
        )
    })
    .await;
    let (tap, out, _dir) = recording_tap(&up.url(), &[]);
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nhost: shop\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until_end(&mut s, &mut got, br#""path":"/one","body":""}"#).await;
    // The upload and the request after it arrive together: both are hyper's to serve.
    s.write_all(
        b"POST /two HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /three HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    read_until_end(&mut s, &mut got, br#""path":"/three","body":""}"#).await;
    let text = String::from_utf8_lossy(&got);
    let at = |needle: &str| text.find(needle).unwrap_or(usize::MAX);
    assert!(
        at("/one") < at(r#""path":"/two","body":"abc""#) && at("/two") < at("/three"),
        "{text}"
    );
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    drop(s);
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    let seen: Vec<(&str, &[u8])> = recorded
        .iter()
        .map(|e| (e.request.uri.as_str(), &e.request.body[..]))
        .collect();
    assert_eq!(
        seen,
        [
            ("/one", &b""[..]),
            ("/two", &b"abc"[..]),
            ("/three", &b""[..])
        ]
    );
}

/// An upstream that reads requests one after another on each connection and answers the
/// n-th request of the whole run with `script(n, request head)`: pieces written after their
/// delays, then the connection closed when the last piece is `None`. Counts the requests
/// and the pieces written (a piece counts once it is in the tap's receive buffer).
async fn scripted_upstream<F>(script: F) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>)
where
    F: Fn(usize, &str) -> Vec<(u64, Option<&'static [u8]>)> + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let (script, count, pieces) = (Arc::new(script), seen.clone(), written.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (script, count, pieces) = (script.clone(), count.clone(), pieces.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let head = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            buf.drain(..end + 4);
                            break head;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    for (delay, piece) in script(n, &head) {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        match piece {
                            Some(p) => {
                                if s.write_all(p).await.is_err() {
                                    return;
                                }
                                pieces.fetch_add(1, Ordering::SeqCst);
                            }
                            None => return,
                        }
                    }
                }
            });
        }
    });
    (addr, seen, written)
}

/// Reads one answer framed by its content-length (or bodiless: to HEAD, 1xx, 204, 304) from
/// `s`. Any other framing fails the test rather than being read as an empty body.
async fn read_answer(s: &mut tokio::net::TcpStream, head_request: bool) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: Option<usize> = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            });
            let status = head.split_whitespace().nth(1).unwrap_or_default();
            let bodiless =
                head_request || status.starts_with('1') || status == "204" || status == "304";
            let want = match len {
                _ if bodiless => 0,
                Some(len) => len,
                None => panic!("an answer not framed by content-length: {head}"),
            };
            while buf.len() < end + 4 + want {
                let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                    .await
                    .expect("the rest of the body")
                    .unwrap();
                assert!(n > 0, "closed mid-body: {head}");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (head, buf[end + 4..end + 4 + want].to_vec());
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("an answer head")
            .unwrap();
        assert!(
            n > 0,
            "closed before an answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Production answering oddly on a kept connection: a status line without a reason phrase
/// is passed on; bytes it sends after an answer has ended (a body after HEAD) are not taken
/// for the next request's answer; a DELETE it closes on without answering is answered 502
/// and never sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_answers_on_a_kept_connection_are_not_misread() {
    let (up, seen, written) = scripted_upstream(|_, head| {
        if head.starts_with("HEAD") {
            vec![
                (0, Some(&b"HTTP/1.1 200\r\ncontent-length: 4\r\n\r\n"[..])),
                // A body HEAD must not have, a moment later.
                (50, Some(b"EVIL")),
            ]
        } else if head.starts_with("DELETE") {
            vec![(0, None)]
        } else {
            vec![(
                0,
                Some(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..]),
            )]
        }
    })
    .await;
    let (tap, out, _dir) = recording_tap(&format!("http://{up}"), &[]);
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(b"HEAD /h HTTP/1.1\r\nhost: shop\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_answer(&mut s, true).await;
    assert!(head.starts_with("HTTP/1.1 200 \r\n"), "{head}");
    // The next request goes only once production has sent its stray body: the tap must
    // have it waiting on the connection, not racing the next answer.
    until("production to send a body after HEAD", || async {
        written.load(Ordering::SeqCst) == 2
    })
    .await;
    s.write_all(b"GET /g HTTP/1.1\r\nhost: shop\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_answer(&mut s, false).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, b"ok");
    s.write_all(b"DELETE /d HTTP/1.1\r\nhost: shop\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_answer(&mut s, false).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "a request went twice");
    drop(s);
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    let got: Vec<(&str, u16, &[u8])> = recorded
        .iter()
        .map(|e| {
            let r = e.response.as_ref().unwrap();
            (e.request.uri.as_str(), r.status, &r.body[..])
        })
        .collect();
    assert_eq!(
        got,
        [
            ("/h", 200, &b""[..]),
            ("/g", 200, &b"ok"[..]),
            ("/d", 502, &b"bad gateway\n"[..])
        ]
    );
}

/// A request body that stops coming is answered 504 within `--upstream-timeout` on a
/// connection then closed, counted, and recorded with the part that came, marked cut; a
/// complete head longer than `--max-header-bytes` is answered 431 and never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_gets_504_and_an_oversized_head_431() {
    let (up, seen, _) = scripted_upstream(|_, _| {
        vec![(
            0,
            Some(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..]),
        )]
    })
    .await;
    let (tap, out, _dir) = recording_tap(
        &format!("http://{up}"),
        &[
            "--upstream-timeout",
            "1s",
            "--max-header-bytes",
            "16KiB",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nhost: shop\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let mut got = Vec::new();
    // The 20 s bound only stops a hang: the tap closes after `--upstream-timeout` (1 s).
    let closed = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "the connection was left open");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    let big = format!(
        "GET /big HTTP/1.1\r\nhost: shop\r\nx-pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (status, _) = raw(tap.addr, &big).await;
    assert_eq!(status, 431);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "production saw a request");
    let m = tap.metrics_text().await;
    assert_eq!(metric_in(&m, "shadowdiff_tap_in_flight"), 0);
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_upstream_errors_total{kind=\"timeout\"}"),
        1
    );
    assert_eq!(
        metric_in(
            &m,
            "shadowdiff_tap_refused_total{reason=\"head_too_large\"}"
        ),
        1
    );
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    assert_eq!(recorded.len(), 1);
    let e = &recorded[0];
    assert_eq!(
        (&e.request.body[..], e.request.body_truncated),
        (&b"abc"[..], true)
    );
    assert_eq!(e.response.as_ref().unwrap().status, 504);
}

/// An answer with neither a length nor chunks ends when production closes: the client gets
/// all of it and then its connection closed (the only way to tell it where the end is), and
/// the exchange is recorded whole, not as cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_ending_at_the_close_is_passed_on_whole() {
    let OneAnswer {
        tap,
        out,
        got,
        _dir,
    } = one_answer_through_the_tap(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the very end",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("\r\nconnection: close\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nuntil the very end"), "{got}");
    assert_eq!(
        tap.metric("shadowdiff_tap_upstream_errors_total{kind=\"body\"}")
            .await,
        0
    );
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    assert_eq!(recorded.len(), 1);
    let r = recorded[0].response.as_ref().unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"until the very end"[..]));
    assert!(!r.body_truncated);
}

/// `--max-body` caps only the recorded copy: the client gets every byte both ways, and the
/// recording keeps the first bytes of each body marked `body_truncated`. An HTTP/2 client's
/// exchange is recorded with its own version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_caps_the_recorded_copy_not_the_traffic() {
    let up = TestServer::start(|s: Seen| {
        Answer::json(200, format!("{}:{}", s.body.len(), "x".repeat(100_000)))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        out.to_str().unwrap(),
        "--max-body",
        "1000",
    ]);
    let upload = "u".repeat(50_000);
    let (status, body) = send(
        &client(),
        "POST",
        &format!("{}/big", tap.url()),
        &[],
        &upload,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), "50000:".len() + 100_000);
    assert!(body.starts_with(b"50000:"));
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let (status, body) = send(&h2, "GET", &format!("{}/small", tap.url()), &[], "").await;
    assert_eq!((status, body.len()), (200, "0:".len() + 100_000));
    tap.stop_async().await;

    let recorded = read_recordings(std::slice::from_ref(&out));
    assert_eq!(recorded.len(), 2);
    let post = &recorded[0];
    assert_eq!(post.request.body.len(), 1000);
    assert!(post.request.body_truncated);
    let r = post.response.as_ref().unwrap();
    assert_eq!(&r.body[..6], b"50000:");
    assert_eq!(r.body.len(), 1000);
    assert!(r.body_truncated);
    let get = &recorded[1];
    assert_eq!(get.request.version, "HTTP/2");
    assert!(!get.request.body_truncated);
    assert!(get.response.as_ref().unwrap().body_truncated);
}

/// An upstream that takes one connection, reads a request head and writes `answer` as it
/// is; then it closes at once, or with `hold` keeps the connection until the tap closes it.
async fn one_answer_upstream(
    answer: &'static [u8],
    hold: bool,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = vec![0u8; 4096];
        let _ = s.read(&mut head).await.unwrap();
        s.write_all(answer).await.unwrap();
        if hold {
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        }
    });
    (addr, task)
}

/// Production answers one GET with `answer` and closes: the tap in front of it (with
/// metrics), what its client got until the tap closed the connection, and the recording.
struct OneAnswer {
    tap: TapProc,
    out: PathBuf,
    got: String,
    _dir: tempfile::TempDir,
}

async fn one_answer_through_the_tap(answer: &'static [u8]) -> OneAnswer {
    let (up, server) = one_answer_upstream(answer, false).await;
    let (tap, out, dir) = recording_tap(&format!("http://{up}"), &["--metrics", "127.0.0.1:0"]);
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nhost: shop\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "the client's connection was left open");
    server.await.unwrap();
    OneAnswer {
        tap,
        out,
        got: String::from_utf8_lossy(&got).to_string(),
        _dir: dir,
    }
}

/// Production breaking its answer off mid-body: the client sees the head, the bytes that
/// came and then its connection closed (a proxy cannot turn a started answer into a 502);
/// the break is counted as an upstream body error and the exchange is recorded with the
/// part that arrived, marked truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_breaking_an_answer_off_is_counted_and_recorded_as_cut() {
    // Closed with 90 bytes still owed.
    let OneAnswer {
        tap,
        out,
        got,
        _dir,
    } = one_answer_through_the_tap(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("0123456789"), "{got}");
    until("the body error to be counted", || async {
        tap.metric("shadowdiff_tap_upstream_errors_total{kind=\"body\"}")
            .await
            == 1
    })
    .await;
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    assert_eq!(recorded.len(), 1);
    let r = recorded[0].response.as_ref().unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"0123456789"[..]));
    assert!(r.body_truncated);
}

/// An HTTP/1.0 client that names no host still reaches production, with the upstream's
/// host in `host`, and is recorded with its own version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_request_without_a_host_is_forwarded_and_recorded() {
    let up = TestServer::start(|s: Seen| {
        let host = s
            .headers
            .get("host")
            .map(|h| h.to_str().unwrap_or("?").to_string())
            .unwrap_or_default();
        Answer::json(
            200,
            format!(r#"{{"host":"{host}","version":"{:?}"}}"#, s.version),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h10.jsonl");
    let tap = TapProc::start(&["--upstream", &up.url(), "--out", out.to_str().unwrap()]);
    let (status, body) = raw(tap.addr, "GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{body}");
    let want_host = up.url().trim_start_matches("http://").to_string();
    assert_eq!(
        body,
        format!(r#"{{"host":"{want_host}","version":"HTTP/1.1"}}"#)
    );
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].request.version, "HTTP/1.0");
    assert_eq!(recorded[0].response.as_ref().unwrap().status, 200);
}

/// A request with both `transfer-encoding: chunked` and `content-length` (a smuggling
/// pattern): the transfer coding frames it, as RFC 9112 section 6.3 says, and the length is
/// not forwarded, so production sees the whole body and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_beside_chunked_framing_is_not_forwarded() {
    let up = TestServer::start(|s: Seen| {
        let len = s
            .headers
            .get("content-length")
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| "none".into());
        Answer::json(
            200,
            format!(
                r#"{{"body":"{}","length":"{len}"}}"#,
                String::from_utf8_lossy(&s.body)
            ),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("te.jsonl");
    let tap = TapProc::start(&["--upstream", &up.url(), "--out", out.to_str().unwrap()]);
    let (status, body) = raw(
        tap.addr,
        "POST /x HTTP/1.1\r\nhost: shop\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n8\r\nabcdefgh\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"body":"abcdefgh","length":"none"}"#);
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    assert_eq!(recorded.len(), 1);
    assert_eq!(&recorded[0].request.body[..], b"abcdefgh");
    assert!(!recorded[0].request.body_truncated);
}

/// Fifty requests at once on one HTTP/2 client connection reach an HTTP/1.1 upstream
/// through the tap's pooled connections; every one is answered with its own body and
/// recorded, its target in origin form and its authority as `host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_http2_streams_are_each_answered_and_recorded() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h2.jsonl");
    let tap = TapProc::start(&["--upstream", &up.url(), "--out", out.to_str().unwrap()]);
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let calls = (0..50).map(|i| {
        let (h2, url) = (h2.clone(), format!("{}/s/{i}", tap.url()));
        async move { send(&h2, "GET", &url, &[], "").await }
    });
    let answers = futures_util::future::join_all(calls).await;
    let host = tap.addr.to_string();
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200);
        assert_eq!(&body[..], format!(r#"{{"path":"/s/{i}"}}"#).as_bytes());
    }
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    let mut uris: Vec<String> = recorded.iter().map(|e| e.request.uri.clone()).collect();
    uris.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("/s/{i}")).collect();
    want.sort();
    // Recorded in origin form, as every recording is, with the authority as `host`.
    assert_eq!(uris, want);
    for e in &recorded {
        assert_eq!(e.request.version, "HTTP/2");
        assert!(
            e.request
                .headers
                .contains(&("host".to_string(), host.clone())),
            "{:?}",
            e.request.headers
        );
    }
}

/// The tap's count of production's interim answers passed on and dropped.
fn assert_interim(m: &str, forwarded: u64, dropped: u64) {
    let count = |outcome: &str| {
        metric_in(
            m,
            &format!("shadowdiff_tap_interim_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(
        (count("forwarded"), count("dropped")),
        (forwarded, dropped),
        "{m}"
    );
}

/// Production that answers one request with `interim` at once, and with `last` only once
/// `go` fires, so a test can see what reached the client before the final answer existed.
async fn interim_then_final_upstream(
    interim: &'static [u8],
    last: &'static [u8],
    go: tokio::sync::oneshot::Receiver<()>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = vec![0u8; 4096];
        let _ = s.read(&mut head).await.unwrap();
        s.write_all(interim).await.unwrap();
        if go.await.is_ok() {
            let _ = s.write_all(last).await;
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    (addr, task)
}

/// 103 Early Hints is passed on as it comes, before production has its final answer (RFC
/// 9110 section 15.2: a proxy forwards the 1xx answers it did not ask for), without
/// production's hop-by-hop fields; the final answer follows on the same connection and is
/// the one recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_the_client_before_the_final_answer() {
    let (go, wait) = tokio::sync::oneshot::channel();
    let (up, server) = interim_then_final_upstream(
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\nconnection: x-hop\r\nx-hop: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nfinal",
        wait,
    )
    .await;
    let (tap, out, _dir) = recording_tap(&format!("http://{up}"), &["--metrics", "127.0.0.1:0"]);
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(b"GET /page HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let hints = tokio::time::timeout(
        Duration::from_secs(10),
        read_until_end(&mut s, &mut got, b"\r\n\r\n"),
    )
    .await;
    assert!(
        hints.is_ok(),
        "no interim answer before the final one: {got:?}"
    );
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 103 "), "{text}");
    assert!(text.contains("link: </a.css>; rel=preload\r\n"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("x-hop"), "{text}");
    go.send(()).unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(rest.is_ok(), "the tap left the connection open");
    let text = String::from_utf8_lossy(&got).to_string();
    let last = text.rfind("HTTP/1.1 ").unwrap();
    assert!(text[last..].starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.ends_with("\r\n\r\nfinal"), "{text}");
    let m = tap.metrics_text().await;
    assert_interim(&m, 1, 0);
    tap.stop_async().await;
    server.abort();
    let recorded = read_recordings(std::slice::from_ref(&out));
    assert_eq!(recorded.len(), 1);
    let r = recorded[0].response.as_ref().unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"final"[..]));
}

/// An HTTP/1.0 client may not be sent a 1xx answer (RFC 9110 section 15.2): it gets only
/// the final one, and the interim answer it did not get is counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_gets_no_interim_answer_and_the_drop_is_counted() {
    let (up, server) = one_answer_upstream(
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nfinal",
        true,
    )
    .await;
    let (tap, _out, _dir) = recording_tap(&format!("http://{up}"), &["--metrics", "127.0.0.1:0"]);
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(b"GET /page HTTP/1.0\r\nhost: shop\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the tap left the connection open");
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.0 200 "), "{text}");
    assert!(!text.contains(" 103 "), "{text}");
    assert!(text.ends_with("final"), "{text}");
    let m = tap.metrics_text().await;
    assert_interim(&m, 0, 1);
    tap.stop_async().await;
    server.abort();
}

/// An upstream URL with a path (`http://host:port/v2`): production gets every request under
/// that prefix, query included, and the recording keeps the path the client asked for, so
/// a replay against the same kind of deployment asks the same thing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_path_prefix_is_added_on_the_way_and_not_recorded() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pre.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &format!("{}/v2", up.url()),
        "--out",
        out.to_str().unwrap(),
    ]);
    let (status, body) = send(
        &client(),
        "GET",
        &format!("{}/items?page=2", tap.url()),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], br#"{"path":"/v2/items?page=2"}"#);
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].request.uri, "/items?page=2");
}

/// An HTTP/1.1 upstream that answers every request with `headers` and the bytes `body`.
async fn bytes_upstream(
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = Bytes::from(body);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (headers, body) = (headers.clone(), body.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let mut b = http::Response::builder();
                    for (k, v) in &headers {
                        b = b.header(*k, v);
                    }
                    let resp = b.body(Full::new(body.clone())).unwrap();
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, task)
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// Redaction never hides a difference: with a JSON path to redact, gzip'd JSON answers
/// (which redaction cannot search) are still compared, field by field, on what production
/// and the candidate really sent; the live report then shows no secret, in a redacted field
/// or a secret header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_shadow_compares_real_answers_and_its_report_shows_no_secret() {
    let answer = |cookie: &str, doc: &str| {
        (
            vec![
                ("content-type", "application/json".to_string()),
                ("content-encoding", "gzip".to_string()),
                ("set-cookie", cookie.to_string()),
            ],
            gzip(doc),
        )
    };
    let (h, b) = answer(
        "sid=prod-cookie-secret",
        r#"{"price":10,"password":"prod-json-secret"}"#,
    );
    let (prod, _p) = bytes_upstream(h, b).await;
    let (h, b) = answer(
        "sid=cand-cookie-secret",
        r#"{"price":99,"password":"cand-json-secret"}"#,
    );
    let (cand, _c) = bytes_upstream(h, b).await;
    let dir = tempfile::tempdir().unwrap();
    let tap = shadow_tap(
        dir.path(),
        &prod,
        &cand,
        &["--redact-json-path", "$.password"],
    );
    let c = client();
    for _ in 0..3 {
        let (s, _) = send(&c, "GET", &format!("{}/item", tap.url()), &[], "").await;
        assert_eq!(s, 200);
    }
    let m = tap.metrics.unwrap();
    until("3 shadows judged", || async {
        let (_, body) = get_text(m, "/report").await;
        let r: serde_json::Value = serde_json::from_str(&body).unwrap();
        r["summary"]["total"] == 3
    })
    .await;
    let (_, body) = get_text(m, "/report").await;
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_counts_consistent(&r);
    assert_eq!(r["verdict"], "fail", "{r:#}");
    let item = interface(&r, "GET /item");
    assert_eq!(item["different"], 3, "{r:#}");
    let paths: Vec<&str> = item["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(paths.contains(&"$.price"), "{paths:?}");
    assert!(paths.contains(&"$.password"), "{paths:?}");
    let (_, page) = get_text(m, "/report.html").await;
    for secret in [
        "prod-json-secret",
        "cand-json-secret",
        "prod-cookie-secret",
        "cand-cookie-secret",
    ] {
        assert!(!body.contains(secret), "{secret} in /report");
        assert!(!page.contains(secret), "{secret} in /report.html");
    }
    tap.stop_async().await;
}

/// The exchanges in a recording that may end in a cut line or block (a killed writer), and
/// the ids of those that read whole; 0 when not even the header is there yet.
fn readable(path: &Path) -> Vec<String> {
    let Ok(mut r) = RecordingReader::open(&[path.to_path_buf()], ReadOptions::default()) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    while let Ok(Some(e)) = r.next_exchange() {
        ids.push(e.id);
    }
    ids
}

/// Runs the binary with `args` in `dir`; a run still going after 10 s is killed (its output
/// then shows it started when it should have refused).
async fn run_bounded(dir: &Path, args: Vec<String>) -> std::process::Output {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(bin())
            .args(&args)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// A tap killed without warning (SIGKILL, the OOM killer, a power cut) leaves in its
/// `.partial` what it recorded up to about a second before, plain or zstd; a tap started
/// again with the same `--out` refuses to overwrite it and says how to keep it; renamed,
/// it reads like any recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tap_leaves_what_it_recorded_and_a_restart_keeps_it() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    for name in ["killed.jsonl", "killed.jsonl.zst"] {
        let out = dir.path().join(name);
        let partial = dir.path().join(format!("{name}.partial"));
        let mut tap = TapProc::start(&["--upstream", &up.url(), "--out", out.to_str().unwrap()]);
        for i in 0..40 {
            let (s, _) = send(&c, "GET", &format!("{}/x/{i}", tap.url()), &[], "").await;
            assert_eq!(s, 200);
        }
        // Read as it is on disk, under a name that says its format, while the tap runs.
        let copy = dir.path().join(format!("copy-{name}"));
        until("40 exchanges on disk", || async {
            std::fs::copy(&partial, &copy).is_ok() && readable(&copy).len() == 40
        })
        .await;
        tap.child.kill().unwrap();
        tap.child.wait().unwrap();
        let before = std::fs::read(&partial).unwrap();

        let o = run_bounded(
            dir.path(),
            vec![
                "tap".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--upstream".into(),
                up.url(),
                "--out".into(),
                out.display().to_string(),
            ],
        )
        .await;
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
        assert!(
            err.contains(&partial.display().to_string()) && err.contains("rename"),
            "{err}"
        );
        assert_eq!(std::fs::read(&partial).unwrap(), before);

        std::fs::rename(&partial, &out).unwrap();
        let ids = readable(&out);
        assert_eq!(ids.len(), 40);
        let o = shadowdiff_async(vec![
            "show".into(),
            out.display().to_string(),
            "--id".into(),
            ids[39].clone(),
        ])
        .await;
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("/x/39"),
            "{}",
            describe(&o)
        );
    }
}

/// JSON body redaction changes the secret values and nothing else: key order, number
/// spelling and precision, spacing, so replay sends what the client sent; a body no path
/// names is recorded byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_redaction_changes_only_the_secret_values() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.jsonl");
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        out.to_str().unwrap(),
        "--redact-json-path",
        "$.password",
    ]);
    let secret = r#"{"z":1,"amount":12345678901234567890123,"price":1.10,"password":"x"}"#;
    let plain = "{ \"b\" : 1.50,\n  \"a\": [1e2, 12345678901234567890123] }";
    let c = client();
    let json = [("content-type", "application/json")];
    for (path, body) in [("/pay", secret), ("/other", plain)] {
        let (s, _) = send(&c, "POST", &format!("{}{path}", tap.url()), &json, body).await;
        assert_eq!(s, 200);
    }
    tap.stop_async().await;
    let got = read_recordings(&[out]);
    let body = |uri: &str| {
        let e = got.iter().find(|e| e.request.uri == uri).unwrap();
        String::from_utf8(e.request.body.to_vec()).unwrap()
    };
    assert_eq!(
        body("/pay"),
        format!(
            r#"{{"z":1,"amount":12345678901234567890123,"price":1.10,"password":"{}"}}"#,
            redact_value(b"x")
        )
    );
    assert_eq!(body("/other"), plain);
}

/// A client that gives up before the answer head (hyper then drops the request's handler)
/// leaves no exchange counted in flight, and is counted as an abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_giving_up_before_the_answer_are_counted_and_not_left_in_flight() {
    // Production answers only after the test has ended: the clients give up first however
    // slowly the machine runs.
    let up = TestServer::start_delayed(|_s: Seen| {
        (Answer::json(200, "{}"), Some(Duration::from_secs(3600)))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        dir.path().join("r.jsonl").to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
        s.write_all(format!("GET /slow/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .unwrap();
        clients.push(s);
    }
    until("3 in flight", || async {
        tap.metric("shadowdiff_tap_in_flight").await == 3
    })
    .await;
    drop(clients);
    until("no exchange in flight, 3 aborts", || async {
        let m = tap.metrics_text().await;
        metric_in(&m, "shadowdiff_tap_in_flight") == 0
            && metric_in(&m, "shadowdiff_tap_client_aborted_total") == 3
    })
    .await;
    assert_eq!(tap.metric("shadowdiff_tap_proxied_total").await, 0);
    tap.stop_async().await;
}

/// Exchanges the sample leaves out are counted where the tap decides it, so that proxied =
/// recorded + sampled out + dropped holds with a sample below 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_the_sample_leaves_out_are_counted() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(&[
        "--upstream",
        &up.url(),
        "--out",
        dir.path().join("r.jsonl").to_str().unwrap(),
        "--sample",
        "0.1",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let c = client();
    for i in 0..100 {
        let (s, _) = send(&c, "GET", &format!("{}/x/{i}", tap.url()), &[], "").await;
        assert_eq!(s, 200);
    }
    assert_every_exchange_accounted(&tap).await;
    let m = tap.metrics_text().await;
    assert_eq!(metric_in(&m, "shadowdiff_tap_proxied_total"), 100);
    assert!(
        metric_in(&m, "shadowdiff_tap_sampled_out_total") >= 50,
        "{m}"
    );
    tap.stop_async().await;
}

/// `--upstream` and `--shadow` URLs that would fail every request (a query, a fragment,
/// credentials, a path that is not one) are refused at start with exit 2, naming the flag
/// and what was expected, before any file is created; so is `--out -`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upstream_urls_and_out_are_refused_before_any_file_is_created() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let u = up.url();
    let host = u.trim_start_matches("http://");
    let good = u.clone();
    let cases = [
        ("--upstream", format!("{u}?x=1"), "query"),
        ("--upstream", format!("{u}#f"), "fragment"),
        ("--upstream", format!("http://user@{host}"), "credentials"),
        ("--upstream", format!("{u}/a b"), "path prefix"),
        ("--shadow", format!("http://user:pw@{host}/"), "credentials"),
    ];
    for (flag, url, says) in cases {
        let mut args: Vec<String> = ["tap", "--listen", "127.0.0.1:0", "--out", "r.jsonl"]
            .map(String::from)
            .to_vec();
        if flag == "--shadow" {
            args.extend(["--upstream".into(), good.clone()]);
        }
        args.extend([flag.to_string(), url.clone()]);
        let o = run_bounded(dir.path(), args).await;
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{url}: {}", describe(&o));
        assert!(err.contains(flag) && err.contains(says), "{url}: {err}");
        assert!(
            files_in(dir.path()).is_empty(),
            "{url}: {:?}",
            files_in(dir.path())
        );
    }
    let o = run_bounded(
        dir.path(),
        [
            "tap",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &good,
            "--out",
            "-",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        err.contains("--out") && err.contains("a recording is a file"),
        "{err}"
    );
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

/// SIGTERM the moment the tap says it is listening (as an orchestrator that starts and
/// stops it at once may send it) stops it gracefully, with a valid, empty recording: the
/// signal is watched before the tap announces itself, so it is neither lost nor fatal.
#[test]
fn a_stop_right_after_start_is_graceful() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let tap = TapProc::start(&[
            "--upstream",
            "http://127.0.0.1:9",
            "--out",
            out.to_str().unwrap(),
        ]);
        tap.stop();
        assert!(out.exists(), "round {round}: no recording");
        assert!(read_recordings(std::slice::from_ref(&out)).is_empty());
    }
}

/// The live shadow's own noise measure, in front of a real gateway: production is nginx, the
/// candidate a second nginx that lacks one route, drops `Cache-Control` on one interface,
/// and (through a header the backend sees) sends cents as strings on one and answers 40 ms
/// later on another. Every answer carries a request id in a header and the body and an epoch
/// stamp. All calls are POSTs declared as reads with `--safe`; with the shadow's default
/// noise sample, `/report` flags exactly the four changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_shadow_measures_noise_and_flags_only_real_changes() {
    let Some(bin) = nginx_binary() else { return };
    let seq = Arc::new(AtomicU64::new(0));
    let backend = TestServer::start_delayed(move |s: Seen| {
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let new = s.headers.contains_key("x-gw");
        let path = s.path_and_query.clone();
        let id: u64 = serde_json::from_slice::<serde_json::Value>(&s.body)
            .ok()
            .and_then(|v| v["id"].as_u64())
            .unwrap_or(0);
        let cents = if new && path == "/rpc/orders/GetOrder" {
            format!("\"{}\"", id * 100)
        } else {
            (id * 100).to_string()
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        // A per-answer id, as a gateway's $request_id would be.
        let rid = format!("{:016x}", (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut a = Answer::json(
            200,
            format!(
                r#"{{"rid":"{rid}","served_at_ms":{now_ms},"data":{{"id":{id},"price_cents":{cents}}}}}"#
            ),
        );
        a.headers.push(("x-request-id", rid));
        let delay = (new && path == "/rpc/search/Search").then(|| Duration::from_millis(40));
        (a, delay)
    })
    .await;
    let up = backend.url();
    let routes = |new: bool| {
        let gw = if new {
            "proxy_set_header x-gw new;"
        } else {
            ""
        };
        let common =
            format!("proxy_pass {up}; {gw} add_header cache-control \"max-age=60\" always;");
        let mut conf = format!("location /rpc/ {{ {common} }}\n");
        if new {
            conf.push_str(&format!(
                "location = /rpc/catalog/GetItem {{ proxy_pass {up}; {gw} }}\n\
                 location = /rpc/users/GetPreferences {{ return 404 '{{\"error\":\"no route\"}}'; }}\n"
            ));
        }
        conf
    };
    let prod = Nginx::start(&bin, &routes(false));
    let cand = Nginx::start(&bin, &routes(true));
    let dir = tempfile::tempdir().unwrap();
    // The rules file's latency margin judges the live shadow too: 15 ms, well under the
    // planted 40 ms and over what a busy test machine adds to one side.
    let rules = dir.path().join("shadowdiff.toml");
    std::fs::write(&rules, "[latency]\nabsolute = \"15ms\"\n").unwrap();
    let tap = shadow_tap(
        dir.path(),
        &prod.url(),
        &cand.url(),
        &[
            "--config",
            rules.to_str().unwrap(),
            "--safe",
            "POST /rpc/*/Get*",
            "--safe",
            "POST /rpc/*/List*",
            "--safe",
            "POST /rpc/*/Search*",
        ],
    );
    let interfaces = [
        "/rpc/catalog/GetItem",
        "/rpc/catalog/ListItems",
        "/rpc/orders/GetOrder",
        "/rpc/users/GetUser",
        "/rpc/users/GetPreferences",
        "/rpc/search/Search",
    ];
    const EACH: u64 = 40;
    let c = client();
    for i in 0..EACH {
        for path in interfaces {
            let (s, _) = send(
                &c,
                "POST",
                &format!("{}{path}", tap.url()),
                &[("content-type", "application/json")],
                &format!(r#"{{"id":{i}}}"#),
            )
            .await;
            assert_eq!(s, 200, "{path}");
        }
    }
    let m = tap.metrics.unwrap();
    let total = EACH * interfaces.len() as u64;
    until("every shadow judged", || async {
        let (_, body) = get_text(m, "/report").await;
        let r: serde_json::Value = serde_json::from_str(&body).unwrap();
        r["summary"]["total"] == total
    })
    .await;
    let (_, body) = get_text(m, "/report").await;
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_counts_consistent(&r);
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["run"]["thresholds"]["latency_absolute_us"], 15_000);
    let regressed = |i: &serde_json::Value, list: &str| -> Vec<String> {
        i[list]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["regression"] == true)
            .map(|p| {
                let change = p["change"].as_str().map(|c| format!(" ({c})"));
                format!(
                    "{}{}",
                    p["path"].as_str().unwrap(),
                    change.unwrap_or_default()
                )
            })
            .collect()
    };
    let mut flagged = Vec::new();
    for path in interfaces {
        let i = interface(&r, &format!("POST {path}"));
        let mut f: Vec<String> = regressed(i, "fields");
        f.extend(
            regressed(i, "headers")
                .into_iter()
                .map(|h| format!("header {h}")),
        );
        if i["missing_rule"].as_u64().unwrap() > 0 {
            f.push(format!("missing_rule {}", i["missing_rule"]));
        }
        if i["latency"]["regression"] == true {
            f.push("slower".into());
        }
        flagged.push((path, f));
    }
    assert_eq!(
        flagged,
        [
            (
                "/rpc/catalog/GetItem",
                vec!["header cache-control (removed)".to_string()]
            ),
            ("/rpc/catalog/ListItems", vec![]),
            (
                "/rpc/orders/GetOrder",
                vec!["$.data.price_cents (type)".to_string()]
            ),
            ("/rpc/users/GetUser", vec![]),
            (
                "/rpc/users/GetPreferences",
                vec![format!("missing_rule {EACH}")]
            ),
            ("/rpc/search/Search", vec!["slower".to_string()]),
        ]
    );
    // The request id differed on every answer and production's second answers said so.
    let clean = interface(&r, "POST /rpc/users/GetUser");
    assert_eq!(clean["different"], 0, "{clean:#}");
    let probes = clean["noise_samples"]["production"].as_u64().unwrap();
    assert!(probes > 0 && probes < EACH, "{clean:#}");
    let rid = clean["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "$.rid")
        .unwrap();
    assert_eq!(rid["noise_source"], "production");
    let text = tap.metrics_text().await;
    assert!(metric_in(&text, "shadowdiff_tap_shadow_noise_probes_total") > 0);
    tap.stop_async().await;
}

/// Credentials in a request's authority are refused with 400 and counted as refusals,
/// never forwarded nor recorded: in an HTTP/2 `:authority`, an HTTP/1 absolute-form target
/// and an HTTP/1 Host header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_authority_or_host_are_refused_and_never_recorded() {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let up = TestServer::start(move |s: Seen| {
        h.fetch_add(1, Ordering::Relaxed);
        Answer::json(200, format!(r#"{{"path":"{}"}}"#, s.path_and_query))
    })
    .await;
    let (tap, out, _dir) = recording_tap(&up.url(), &["--metrics", "127.0.0.1:0"]);

    let tcp = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let req = http::Request::get(format!("http://user:pw@{}/secret", tap.addr))
        .body(())
        .unwrap();
    let (answer, _) = h2.send_request(req, true).unwrap();
    assert_eq!(answer.await.unwrap().status(), 400, "HTTP/2 :authority");

    let (s, body) = raw_answer(
        tap.addr,
        &format!(
            "GET http://user:pw@{}/secret HTTP/1.1\r\nHost: {}\r\n\r\n",
            up.addr, up.addr
        ),
    )
    .await;
    assert_eq!(s, 400, "absolute form: {body}");
    assert!(body.contains("credentials"), "{body}");
    let (s, _) = raw_answer(
        tap.addr,
        &format!("GET /secret HTTP/1.1\r\nHost: user:pw@{}\r\n\r\n", tap.addr),
    )
    .await;
    assert_eq!(s, 400, "Host header");

    let (s, _) = raw(
        tap.addr,
        "GET /fine HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        hits.load(Ordering::Relaxed),
        1,
        "a request with credentials reached production"
    );
    assert_eq!(
        tap.metric("shadowdiff_tap_refused_total{reason=\"userinfo\"}")
            .await,
        3
    );
    assert_eq!(
        tap.metric("shadowdiff_tap_responses_total{class=\"4xx\"}")
            .await,
        3
    );
    tap.stop_async().await;
    let bytes = std::fs::read_to_string(&out).unwrap();
    assert!(!bytes.contains("pw"), "{bytes}");
    let recorded = read_recordings(std::slice::from_ref(&out));
    let uris: Vec<&str> = recorded.iter().map(|e| e.request.uri.as_str()).collect();
    assert_eq!(uris, ["/fine"]);
}

/// Out of file descriptors, the tap backs off between failed accepts and reports them in a
/// few lines with their count, not one line per attempt; once the held connections close,
/// the tap says it accepts again, and a new client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_backs_off_and_reports_failed_accepts_with_a_count() {
    let up = TestServer::start(echo_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec.jsonl");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", bin()])
        .args(["tap", "--listen", "127.0.0.1:0", "--upstream", &up.url()])
        .args(["--out", out.to_str().unwrap(), "--metrics", "127.0.0.1:0"]);
    let tap = TapProc::spawn(cmd, true);
    let failure_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("accept") && l.contains("fail"))
            .count()
    };
    // More connections than the tap has descriptors left: the rest wait in its listen queue.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(tokio::net::TcpStream::connect(tap.addr).await.unwrap());
    }
    until("a failed accept reported", || async {
        failure_lines(&tap.stderr.lock().unwrap()) > 0
    })
    .await;
    // Accepts keep failing for a while: a line for each would be a line every few ms.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(held);
    until("a new client served", || async {
        let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(tap.addr),
        )
        .await
        else {
            return false;
        };
        let _ = s
            .write_all(b"GET /after HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
        buf.starts_with(b"HTTP/1.1 200")
    })
    .await;
    let log = tap.stderr.lock().unwrap().clone();
    assert!(
        failure_lines(&log) <= 3,
        "{} lines:\n{log}",
        failure_lines(&log)
    );
    until("the recovery reported", || async {
        tap.stderr
            .lock()
            .unwrap()
            .contains("accepting connections again")
    })
    .await;
    let log = tap.stderr.lock().unwrap().clone();
    assert!(
        failure_lines(&log) <= 3,
        "{} lines:\n{log}",
        failure_lines(&log)
    );
    let again = log
        .lines()
        .find_map(|l| l.split("accepting connections again after ").nth(1))
        .unwrap();
    let n: u64 = again.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n >= 3, "{log}");
    assert!(tap.metric("shadowdiff_tap_accept_failures_total").await >= n);
    tap.stop_async().await;
}

/// Waits until `n` connections are counted as timed out for `reason`, and checks that none
/// was counted for `other`.
pub(crate) async fn assert_timed_out(tap: &TapProc, reason: &str, n: u64, other: &str) {
    let series = |r: &str| format!("shadowdiff_tap_timed_out_total{{reason=\"{r}\"}}");
    until(&format!("{n} counted as {reason} timeouts"), || async {
        tap.metric(&series(reason)).await == n
    })
    .await;
    assert_eq!(tap.metric(&series(other)).await, 0, "{other} timeouts");
}

pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(crate) const H2_HEADERS: u8 = 0x1;
pub(crate) const H2_RST_STREAM: u8 = 0x3;
pub(crate) const H2_SETTINGS: u8 = 0x4;
pub(crate) const H2_END_STREAM: u8 = 0x1;
pub(crate) const H2_END_HEADERS: u8 = 0x4;

/// One HTTP/2 frame as it goes on the wire.
pub(crate) fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The HPACK block of `GET http://AUTHORITY/PATH`: `:method GET` and `:scheme http` from the
/// static table, `:authority` and `:path` as literals without Huffman coding.
pub(crate) fn hpack_get(authority: &str, path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    for (index, value) in [(0x01u8, authority), (0x04, path)] {
        assert!(value.len() < 127);
        b.extend([index, value.len() as u8]);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

/// Reads one frame: its type, flags, stream and payload; `None` once the peer has closed.
pub(crate) async fn read_h2_frame(s: &mut tokio::net::TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// An HTTP/2 client that opens many streams and reads none of their answers (an initial
/// window of 0) holds one production connection per open stream, each with an answer
/// waiting in it: at most `--http2-max-streams` (100 by default); the streams beyond are
/// refused (RST_STREAM), never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_reading_no_answer_holds_at_most_http2_max_streams_production_connections()
{
    // Production answers every request with a large body: until the tap reads it all, the
    // connection carrying it is taken.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                read_until_end(&mut s, &mut buf, b"\r\n\r\n").await;
                let body = vec![b'x'; 1 << 20];
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                if s.write_all(head.as_bytes()).await.is_ok() {
                    let _ = s.write_all(&body).await;
                }
                // Held until the tap lets go of it.
                let _ = s.read(&mut [0u8; 1]).await;
            });
        }
    });
    let (tap, _out, _dir) = recording_tap(&format!("http://{up_addr}"), &[]);
    const STREAMS: u32 = 150;
    let mut s = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    let mut bytes = H2_PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = 0: the tap may send no byte of any answer body.
    bytes.extend(h2_frame(H2_SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]));
    let authority = tap.addr.to_string();
    for i in 0..STREAMS {
        let block = hpack_get(&authority, &format!("/s/{i}"));
        bytes.extend(h2_frame(
            H2_HEADERS,
            H2_END_STREAM | H2_END_HEADERS,
            2 * i + 1,
            &block,
        ));
    }
    s.write_all(&bytes).await.unwrap();
    let (mut answered, mut refused) = (0u32, 0u32);
    let read_all = tokio::time::timeout(Duration::from_secs(20), async {
        while answered + refused < STREAMS {
            let (kind, flags, _, _) = read_h2_frame(&mut s).await.expect("the tap closed");
            match kind {
                H2_SETTINGS if flags & 1 == 0 => {
                    s.write_all(&h2_frame(H2_SETTINGS, 1, 0, &[]))
                        .await
                        .unwrap();
                }
                H2_HEADERS => answered += 1,
                H2_RST_STREAM => refused += 1,
                _ => {}
            }
        }
    })
    .await;
    assert!(
        read_all.is_ok(),
        "every stream is answered or refused: {answered} answered, {refused} refused"
    );
    // Every answer head came through a production connection of its own.
    assert!(
        answered <= 100,
        "{answered} streams held open, each on a production connection of its own"
    );
    assert_eq!((answered, refused), (100, STREAMS - 100));
    assert_eq!(accepted.load(Ordering::SeqCst), 100);
    drop(s);
    tap.stop_async().await;
}

/// Reads and discards what the tap sends until it closes the connection. The 10 s bound
/// only keeps a failing test from hanging; the flags under test are far shorter.
async fn assert_closed_by_the_tap(s: &mut tokio::net::TcpStream, what: &str) {
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{what}: the tap still holds the connection after 10 s"
    );
}

/// An HTTP/2 client that sends the connection preface and nothing more, or a HEADERS frame
/// whose header block never ends, is closed once `--head-timeout` has passed without a
/// complete request head, and counted; so is a client that sends nothing at all to a tap
/// whose upstream is h2c (where hyper serves a connection from its first byte).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_never_completes_a_request_head_is_closed() {
    let up = TestServer::start(echo_server()).await;
    let (tap, _out, _dir) = recording_tap(
        &up.url(),
        &["--head-timeout", "300ms", "--metrics", "127.0.0.1:0"],
    );
    let mut preface_only = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    preface_only.write_all(H2_PREFACE).await.unwrap();
    let mut open_block = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    let mut bytes = H2_PREFACE.to_vec();
    bytes.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
    // END_STREAM but not END_HEADERS: the block goes on in a CONTINUATION that never comes.
    let block = hpack_get(&tap.addr.to_string(), "/never");
    bytes.extend(h2_frame(H2_HEADERS, H2_END_STREAM, 1, &block[..4]));
    open_block.write_all(&bytes).await.unwrap();
    assert_closed_by_the_tap(&mut preface_only, "the preface alone").await;
    assert_closed_by_the_tap(&mut open_block, "a header block without its end").await;
    assert_timed_out(&tap, "head", 2, "idle").await;
    tap.stop_async().await;

    let h2c = up.url().replace("http://", "h2c://");
    let (tap, _out, _dir) = recording_tap(&h2c, &["--head-timeout", "300ms"]);
    let mut silent = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    assert_closed_by_the_tap(&mut silent, "a silent client of an h2c tap").await;
    tap.stop_async().await;
}

/// A connection with no request in progress is closed after `--idle-timeout`: an HTTP/2
/// connection with no open stream (with GOAWAY: the client's connection ends cleanly) and a
/// kept HTTP/1.1 connection after its answer. A stream whose answer takes longer than the
/// idle timeout is not idle, and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let up = TestServer::start_delayed(|s: Seen| {
        let slow = s.path_and_query == "/slow";
        (
            Answer::json(200, format!(r#"{{"path":"{}"}}"#, s.path_and_query)),
            slow.then(|| Duration::from_secs(3)),
        )
    })
    .await;
    let (tap, _out, _dir) = recording_tap(
        &up.url(),
        &["--idle-timeout", "300ms", "--metrics", "127.0.0.1:0"],
    );
    let tcp = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = ended_tx.send(connection.await);
    });
    let ask = |h2: &mut h2::client::SendRequest<Bytes>, path: &str| {
        let req = http::Request::get(format!("http://{}{path}", tap.addr))
            .body(())
            .unwrap();
        let (answer, _) = h2
            .send_request(req, true)
            .unwrap_or_else(|e| panic!("{path} refused: {e}"));
        answer
    };
    let slow = ask(&mut h2, "/slow");
    // Three idle timeouts with /slow open, a wait that a busy machine only makes longer
    // (well short of the 3 s /slow takes): a connection wrongly taken for idle would have
    // had its GOAWAY by now and would refuse /fast.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let fast = ask(&mut h2, "/fast");
    for (path, answer) in [("/fast", fast), ("/slow", slow)] {
        let answer = answer.await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(answer.status(), 200, "{path}");
        let mut body = answer.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, format!(r#"{{"path":"{path}"}}"#).as_bytes());
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), ended).await;
    let ended = ended.expect("the idle HTTP/2 connection is still open after 10 s");
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");

    let mut h1 = tokio::net::TcpStream::connect(tap.addr).await.unwrap();
    h1.write_all(b"GET /kept HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_answer(&mut h1, false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, br#"{"path":"/kept"}"#);
    assert_closed_by_the_tap(&mut h1, "a kept HTTP/1.1 connection").await;

    assert_timed_out(&tap, "idle", 2, "head").await;
    tap.stop_async().await;
}
