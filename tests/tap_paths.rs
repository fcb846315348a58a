//! The tap's paths held to one client-visible answer. An HTTP/1 request is served by the
//! tap's own code or by hyper's server depending on its shape (see `src/tap/h1_conn.rs`), and
//! an HTTP/2 request by hyper's: production answering with odd framing (a length beside
//! chunks, no framing at all, interim answers, 101, 204 or 304 with a length, HEAD) must
//! reach the client the same way on each, but for interim (1xx) answers, which only the
//! tap's own path can pass on. Production here is a raw socket writing exact bytes; clients
//! are raw sockets too, or hyper's HTTP/2 client.

use crate::tap::{metric_in, read_recordings, read_until_end, recording_tap};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What production writes for one request: exact bytes, then the close or not.
#[derive(Clone, Debug)]
struct Reply {
    bytes: Vec<u8>,
    close: bool,
}

impl Reply {
    fn new(bytes: &[u8], close: bool) -> Self {
        Reply {
            bytes: bytes.to_vec(),
            close,
        }
    }
}

/// The requests production received: each one's target and bytes.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Production as a raw socket. Each request is read whole (its body by length or by
/// chunks, so that a close never resets an upload it left unread), kept, and answered with
/// the reply registered for its path, or with the default one.
struct RawProduction {
    addr: SocketAddr,
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    /// Every request received.
    received: Received,
    task: tokio::task::JoinHandle<()>,
}

impl RawProduction {
    async fn start(default: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let replies: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let received: Received = Arc::default();
        let (table, log) = (replies.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (table, default, log) = (table.clone(), default.clone(), log.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let (end, path) = loop {
                            if let Some(whole) = whole_request(&buf) {
                                break whole;
                            }
                            let mut piece = [0u8; 16 * 1024];
                            match s.read(&mut piece).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&piece[..n]),
                            }
                        };
                        let request = buf.drain(..end).collect();
                        log.lock().unwrap().push((path.clone(), request));
                        let reply = table
                            .lock()
                            .unwrap()
                            .get(&path)
                            .cloned()
                            .unwrap_or_else(|| default.clone());
                        if s.write_all(&reply.bytes).await.is_err() || reply.close {
                            return;
                        }
                    }
                });
            }
        });
        RawProduction {
            addr,
            replies,
            received,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The values of the `name` fields of the request production received for `path`.
    fn received_values(&self, path: &str, name: &str) -> Vec<String> {
        let received = self.received.lock().unwrap();
        let Some((_, request)) = received.iter().find(|(p, _)| p == path) else {
            panic!("production received no request for {path}");
        };
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut fields);
        req.parse(request).unwrap();
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect()
    }

    /// Answers requests for `path` with `reply` from now on.
    fn set(&self, path: &str, reply: Reply) {
        self.replies.lock().unwrap().insert(path.to_string(), reply);
    }
}

impl Drop for RawProduction {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The length of the complete request at the start of `buf`, body included, and its
/// target; `None` while it is incomplete.
fn whole_request(buf: &[u8]) -> Option<(usize, String)> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut fields);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let value = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_string())
    };
    let end = if value("transfer-encoding").is_some() {
        head + dechunk(&buf[head..]).2
    } else {
        head + value("content-length").map_or(0, |v| v.trim().parse().unwrap())
    };
    let complete = match value("transfer-encoding") {
        Some(_) => dechunk(&buf[head..]).1,
        None => buf.len() >= end,
    };
    complete.then(|| (end, req.path.unwrap_or("/").to_string()))
}

/// Decodes the chunked body at the start of `buf`: its content, whether it ended (last
/// chunk and trailer section), and the bytes it took.
fn dechunk(buf: &[u8]) -> (Vec<u8>, bool, usize) {
    let mut body = Vec::new();
    let mut i = 0;
    loop {
        let Ok(httparse::Status::Complete((n, size))) = httparse::parse_chunk_size(&buf[i..])
        else {
            return (body, false, i);
        };
        if size == 0 {
            let mut at = i + n;
            // Trailer lines, up to an empty one.
            loop {
                let Some(nl) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                    return (body, false, i);
                };
                at += nl + 2;
                if nl == 0 {
                    return (body, true, at);
                }
            }
        }
        let size = size as usize;
        if buf.len() < i + n + size + 2 {
            body.extend_from_slice(&buf[(i + n).min(buf.len())..buf.len().min(i + n + size)]);
            return (body, false, buf.len());
        }
        body.extend_from_slice(&buf[i + n..i + n + size]);
        i += n + size + 2;
    }
}

/// How a client is told where an answer's body ends.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Framing {
    /// No body, by status or method; the length the head names, if any.
    Bodiless(Option<String>),
    /// This many bytes.
    Length(u64),
    /// Chunks, or the close: the length was not known ahead. The tap's own path ends an
    /// answer production framed by its close with the close, hyper's server sends it in
    /// chunks; either way the client reads the body to its end.
    Open,
    /// Chunks and a length both: a client cannot know which to believe.
    Ambiguous,
}

/// What an HTTP/1 client got for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    /// Interim answers before the final one. `100 Continue` is left out: hyper's path sends
    /// it on its own when it reads the body of a request that asked with `Expect`.
    interim: Vec<u16>,
    /// 0 when no complete answer head came.
    status: u16,
    framing: Framing,
    body: Vec<u8>,
    /// The body ended where its framing says, not cut short.
    complete: bool,
    /// Bytes after the end of the answer.
    extra: Vec<u8>,
    /// The final answer has a `date` field. Production here sends none and the tap's own
    /// path adds none, but hyper's server adds one to every answer: this tells which path
    /// served a request.
    dated: bool,
}

/// Reads `buf`, everything the tap sent on one connection, as a client does.
fn read_as_client(buf: &[u8], head_request: bool) -> Got {
    let mut at = 0;
    let mut interim = Vec::new();
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut fields);
        let n = match r.parse(&buf[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => {
                return Got {
                    interim,
                    status: 0,
                    framing: Framing::Bodiless(None),
                    body: Vec::new(),
                    complete: false,
                    extra: buf[at..].to_vec(),
                    dated: false,
                }
            }
        };
        let status = r.code.unwrap_or(0);
        at += n;
        if (100..200).contains(&status) && status != 101 {
            if status != 100 {
                interim.push(status);
            }
            continue;
        }
        let value = |name: &str| {
            r.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_string())
        };
        let length = value("content-length");
        let chunked = value("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().trim_end().ends_with("chunked"));
        let rest = &buf[at..];
        let (framing, body, complete, used) = if head_request || matches!(status, 101 | 204 | 304) {
            (Framing::Bodiless(length), Vec::new(), true, 0)
        } else if chunked {
            let (body, complete, used) = dechunk(rest);
            let framing = if length.is_some() {
                Framing::Ambiguous
            } else {
                Framing::Open
            };
            (framing, body, complete, used)
        } else if let Some(l) = length {
            let n: u64 = l.trim().parse().unwrap_or(u64::MAX);
            let take = usize::try_from(n).unwrap_or(usize::MAX).min(rest.len());
            (
                Framing::Length(n),
                rest[..take].to_vec(),
                take as u64 == n,
                take,
            )
        } else {
            (Framing::Open, rest.to_vec(), true, rest.len())
        };
        return Got {
            interim,
            status,
            framing,
            body,
            complete,
            extra: rest[used..].to_vec(),
            dated: value("date").is_some(),
        };
    }
}

/// Sends `request` on a new connection and reads until the tap closes it.
async fn ask(tap: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(tap).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    // A reset after the answer still leaves what came before it in `buf`.
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the tap left the connection open after {:?}",
        String::from_utf8_lossy(&buf)
    );
    buf
}

/// The shape of a request, which decides the path that serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// The tap's own: GET in origin form.
    Get,
    /// The tap's own: GET with names in odd letter case.
    GetOddCase,
    /// The tap's own: POST of `abc` framed by its length.
    Post,
    /// The tap's own: HEAD.
    Head,
    /// hyper's: HTTP/1.0.
    Get10,
    /// hyper's: an absolute-form target naming the tap.
    GetAbsolute,
    /// hyper's: odd letter case and an empty chunked body.
    GetOddCaseChunked,
    /// hyper's: `Expect: 100-continue`, the body sent at once.
    PostExpect,
    /// hyper's: the body in chunks.
    PostChunked,
    /// hyper's: a body over 64 KiB.
    PostLarge,
    /// hyper's: HEAD in absolute form.
    HeadAbsolute,
}

impl Shape {
    fn head_request(self) -> bool {
        matches!(self, Shape::Head | Shape::HeadAbsolute)
    }

    /// The request's bytes, for `path` on the tap at `tap`.
    fn bytes(self, path: &str, tap: SocketAddr) -> Vec<u8> {
        let close = "connection: close\r\n";
        let odd = "HoSt: shop\r\nCONNECTION: Close\r\nX-Odd-CASE: 1\r\n";
        let text = match self {
            Shape::Get => format!("GET {path} HTTP/1.1\r\nhost: shop\r\n{close}\r\n"),
            Shape::GetOddCase => format!("GET {path} HTTP/1.1\r\n{odd}\r\n"),
            Shape::Post => {
                format!("POST {path} HTTP/1.1\r\nhost: shop\r\ncontent-length: 3\r\n{close}\r\nabc")
            }
            Shape::Head => format!("HEAD {path} HTTP/1.1\r\nhost: shop\r\n{close}\r\n"),
            Shape::Get10 => format!("GET {path} HTTP/1.0\r\nhost: shop\r\n\r\n"),
            Shape::GetAbsolute => {
                format!("GET http://{tap}{path} HTTP/1.1\r\nhost: shop\r\n{close}\r\n")
            }
            Shape::GetOddCaseChunked => {
                format!("GET {path} HTTP/1.1\r\n{odd}TRANSFER-ENCODING: Chunked\r\n\r\n0\r\n\r\n")
            }
            Shape::PostExpect => format!(
                "POST {path} HTTP/1.1\r\nhost: shop\r\ncontent-length: 3\r\n\
                 expect: 100-continue\r\n{close}\r\nabc"
            ),
            Shape::PostChunked => format!(
                "POST {path} HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n{close}\r\n\
                 3\r\nabc\r\n0\r\n\r\n"
            ),
            Shape::PostLarge => format!(
                "POST {path} HTTP/1.1\r\nhost: shop\r\ncontent-length: 70000\r\n{close}\r\n{}",
                "a".repeat(70_000)
            ),
            Shape::HeadAbsolute => {
                format!("HEAD http://{tap}{path} HTTP/1.1\r\nhost: shop\r\n{close}\r\n")
            }
        };
        text.into_bytes()
    }
}

/// A request the tap serves itself, and the same request in a shape hyper serves.
const PAIRS: [(Shape, Shape); 6] = [
    (Shape::Get, Shape::Get10),
    (Shape::Get, Shape::GetAbsolute),
    (Shape::GetOddCase, Shape::GetOddCaseChunked),
    (Shape::Post, Shape::PostExpect),
    (Shape::Post, Shape::PostChunked),
    (Shape::Post, Shape::PostLarge),
];

const HEAD_PAIR: (Shape, Shape) = (Shape::Head, Shape::HeadAbsolute);

/// An HTTP/2 (prior knowledge) client.
fn h2_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A GET over HTTP/2: status, the content-length the head names, and the body, or why the
/// stream failed.
async fn h2_get(url: &str) -> Result<(u16, Option<String>, Bytes), String> {
    let resp = h2_client()
        .get(url.parse().unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let length = resp
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{status} then {e:?}"))?
        .to_bytes();
    Ok((status, length, body))
}

/// Production framing an answer with `Content-Length: 3` and chunks of five bytes: the
/// chunks frame it (RFC 9112 section 6.3) on hyper's path too, for HTTP/1.0, `Expect`,
/// chunked-upload and HTTP/2 clients: each gets all of `hello` and no length of 3, and each
/// exchange is recorded as a complete 200, none counted as a client gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_beside_chunks_from_production_is_dropped_on_hyper_paths() {
    let production = RawProduction::start(Reply::new(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
        false,
    ))
    .await;
    let (tap, out, _dir) = recording_tap(&production.url(), &["--metrics", "127.0.0.1:0"]);
    for shape in [Shape::Get10, Shape::PostExpect, Shape::PostChunked] {
        let got = read_as_client(&ask(tap.addr, &shape.bytes("/a", tap.addr)).await, false);
        assert_eq!(
            (got.status, &got.body[..], got.complete, &got.framing),
            (200, &b"hello"[..], true, &Framing::Open),
            "{shape:?}: {got:?}"
        );
    }
    let h2 = h2_get(&format!("{}/a", tap.url())).await;
    assert_eq!(h2, Ok((200, None, Bytes::from_static(b"hello"))));
    let m = tap.metrics_text().await;
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_client_aborted_total"),
        0,
        "{m}"
    );
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    let seen: Vec<(u16, &[u8], bool)> = recorded
        .iter()
        .map(|e| {
            let r = e.response.as_ref().unwrap();
            (r.status, &r.body[..], r.body_truncated)
        })
        .collect();
    assert_eq!(seen, vec![(200, &b"hello"[..], false); 4]);
}

/// Sends `request` on a new connection, reads its answer (`ok`), then the HTTP/2 preface:
/// what the tap sent back before closing. Fails if the tap leaves the connection open.
async fn preface_after(tap: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(tap).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut first = Vec::new();
    read_until_end(&mut s, &mut first, b"\r\n\r\nok").await;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    let text = String::from_utf8_lossy(&rest).into_owned();
    assert!(read.is_ok(), "the connection was left open, after {text:?}");
    text
}

/// The HTTP/2 connection preface is what a connection may start with, never what follows
/// an HTTP/1.1 exchange: after one the tap served itself, `PRI * HTTP/2.0` is an HTTP/1
/// request of a version the tap does not serve, answered 400 (counted) on a connection then
/// closed; after one hyper served, hyper's server closes at once. No HTTP/2 frame is sent
/// either way. At a connection's start the same bytes still open HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_preface_after_an_http1_request_is_refused_not_switched_to() {
    let production = RawProduction::start(Reply::new(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    ))
    .await;
    let (tap, _out, _dir) = recording_tap(&production.url(), &["--metrics", "127.0.0.1:0"]);
    let text = preface_after(tap.addr, b"GET /one HTTP/1.1\r\nhost: shop\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text:?}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text:?}");
    // A connection hyper took over at its first request is HTTP/1 for good too: hyper's
    // server closes on the preface without a word.
    let text = preface_after(
        tap.addr,
        b"POST /up HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(text, "");
    // At the start of a connection the preface is HTTP/2, as ever.
    let h2 = h2_get(&format!("{}/two", tap.url())).await;
    assert_eq!(h2, Ok((200, Some("2".into()), Bytes::from_static(b"ok"))));
    assert_eq!(
        tap.metric("shadowdiff_tap_refused_total{reason=\"bad_request\"}")
            .await,
        1
    );
}

/// Production answering `101 Switching Protocols` to a request that asked for no upgrade
/// (the tap never forwards one) gets the client 502 on every path, HTTP/1 through the tap's
/// own code or hyper's and HTTP/2, as an answer that is not HTTP: counted as malformed and
/// recorded as a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_protocols_unasked_is_answered_502_on_every_path() {
    let production = RawProduction::start(Reply::new(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        false,
    ))
    .await;
    let (tap, out, _dir) = recording_tap(&production.url(), &["--metrics", "127.0.0.1:0"]);
    let shapes = [
        Shape::Get,
        Shape::Get10,
        Shape::PostExpect,
        Shape::PostChunked,
    ];
    for shape in shapes {
        let got = read_as_client(&ask(tap.addr, &shape.bytes("/ws", tap.addr)).await, false);
        assert_eq!(
            (got.status, &got.body[..], got.complete),
            (502, &b"bad gateway\n"[..], true),
            "{shape:?}: {got:?}"
        );
    }
    let h2 = h2_get(&format!("{}/ws", tap.url())).await;
    assert_eq!(
        h2,
        Ok((502, Some("12".into()), Bytes::from_static(b"bad gateway\n")))
    );
    let m = tap.metrics_text().await;
    assert_eq!(
        metric_in(
            &m,
            "shadowdiff_tap_upstream_errors_total{kind=\"malformed\"}"
        ),
        5,
        "{m}"
    );
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_client_aborted_total"),
        0,
        "{m}"
    );
    tap.stop_async().await;
    let recorded = read_recordings(std::slice::from_ref(&out));
    let statuses: Vec<u16> = recorded
        .iter()
        .map(|e| e.response.as_ref().unwrap().status)
        .collect();
    assert_eq!(statuses, [502; 5]);
}

/// One of production's answers: its name, its bytes, whether production closes the
/// connection after them, and the status and body a client must get.
type OddAnswer = (&'static str, &'static [u8], bool, u16, &'static [u8]);

/// Production's odd answers to anything but HEAD.
const ANSWERS: [OddAnswer; 8] = [
    (
        "a length beside chunks",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
        false,
        200,
        b"hello",
    ),
    (
        "chunks",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
        false,
        200,
        b"hello",
    ),
    (
        "a length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        false,
        200,
        b"hello",
    ),
    (
        "neither, then the close",
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello",
        true,
        200,
        b"hello",
    ),
    (
        "103 before 200",
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        false,
        200,
        b"hello",
    ),
    (
        "101 unasked",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        false,
        502,
        b"bad gateway\n",
    ),
    (
        "204 with a length",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        false,
        204,
        b"",
    ),
    (
        "304 with a length",
        b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\n",
        false,
        304,
        b"",
    ),
];

/// Production's answers to HEAD, heads alone.
const HEAD_ANSWERS: [OddAnswer; 4] = [
    (
        "HEAD: a length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        false,
        200,
        b"",
    ),
    (
        "HEAD: chunks",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
        200,
        b"",
    ),
    (
        "HEAD: a length beside chunks",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
        200,
        b"",
    ),
    (
        "HEAD: 204 with a length",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        false,
        204,
        b"",
    ),
];

/// Why `got` is not the answer a client should get for `want` (status and body), if it
/// is not: a body cut short, bytes after its end, or framing that contradicts itself.
fn wrong(got: &Got, want: (u16, &[u8])) -> Option<String> {
    let length_right = match got.framing {
        Framing::Length(n) => n == got.body.len() as u64,
        Framing::Ambiguous => false,
        Framing::Bodiless(_) | Framing::Open => true,
    };
    let right =
        (got.status, &got.body[..]) == want && got.complete && got.extra.is_empty() && length_right;
    (!right).then(|| format!("{got:?}, wanted {} {:?}", want.0, bytes_text(want.1)))
}

fn bytes_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One odd request in both shapes and one odd answer: what each client got, and what is
/// wrong with it, if anything.
async fn both_paths(
    tap: SocketAddr,
    production: &RawProduction,
    path: &str,
    (fast, hyper): (Shape, Shape),
    (bytes, close): (&[u8], bool),
    want: (u16, &[u8]),
) -> Result<(), String> {
    production.set(path, Reply::new(bytes, close));
    let head_request = fast.head_request();
    let mut by_fast = read_as_client(&ask(tap, &fast.bytes(path, tap)).await, head_request);
    let mut by_hyper = read_as_client(&ask(tap, &hyper.bytes(path, tap)).await, head_request);
    if by_fast.dated || !by_hyper.dated {
        return Err(format!(
            "{fast:?} and {hyper:?} did not take the paths they stand for: {by_fast:?}, {by_hyper:?}"
        ));
    }
    (by_fast.dated, by_hyper.dated) = (false, false);
    // Interim answers are the one thing the paths may not show alike: the tap's own path
    // passes production's on (RFC 9110 section 15.2), hyper's server cannot send them (and an
    // HTTP/1.0 client may not get them), so there they are dropped and counted.
    let sent = read_as_client(bytes, head_request).interim;
    if by_fast.interim != sent {
        return Err(format!(
            "{fast:?} (the tap's own path) got interim answers {:?}, production sent {sent:?}",
            by_fast.interim
        ));
    }
    if !by_hyper.interim.is_empty() {
        return Err(format!(
            "{hyper:?} (hyper's path) got interim answers {:?}",
            by_hyper.interim
        ));
    }
    (by_fast.interim, by_hyper.interim) = (Vec::new(), Vec::new());
    if let Some(w) = wrong(&by_fast, want) {
        return Err(format!("{fast:?} (the tap's own path): {w}"));
    }
    if let Some(w) = wrong(&by_hyper, want) {
        return Err(format!("{hyper:?} (hyper's path): {w}"));
    }
    if by_fast != by_hyper {
        return Err(format!(
            "{fast:?} got {by_fast:?}, but {hyper:?} got {by_hyper:?}"
        ));
    }
    Ok(())
}

/// Odd requests (HTTP/1.0, `Expect: 100-continue`, a chunked upload, names in odd letter
/// case, an absolute-form target naming the tap, HEAD, a body over 64 KiB) against odd
/// answers (a length beside chunks, chunks, a length, neither and then the close, 103
/// before 200, 101, 204 and 304 with a length, HEAD answered with a length or chunks): the
/// same request served by the tap's own HTTP/1.1 code and by hyper's server gets the same
/// status, body and framing, and that body is production's, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_requests_and_answers_look_the_same_on_both_http1_paths() {
    let production =
        RawProduction::start(Reply::new(b"HTTP/1.1 404 Not Found\r\n\r\n", true)).await;
    let (tap, _out, _dir) = recording_tap(&production.url(), &["--metrics", "127.0.0.1:0"]);
    let mut cases = Vec::new();
    for (i, pair) in PAIRS.iter().enumerate() {
        for (j, answer) in ANSWERS.iter().enumerate() {
            cases.push((format!("/d/{i}/{j}"), *pair, *answer));
        }
    }
    for (j, answer) in HEAD_ANSWERS.iter().enumerate() {
        cases.push((format!("/h/{j}"), HEAD_PAIR, *answer));
    }
    let mut failures = Vec::new();
    for (path, pair, (name, bytes, close, status, body)) in &cases {
        let outcome = both_paths(
            tap.addr,
            &production,
            path,
            *pair,
            (bytes, *close),
            (*status, body),
        )
        .await;
        if let Err(e) = outcome {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let m = tap.metrics_text().await;
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_client_aborted_total"),
        0,
        "{m}"
    );
    assert_eq!(metric_in(&m, "shadowdiff_tap_in_flight"), 0, "{m}");
}

/// A framing production may give an answer, with the body it means.
#[derive(Clone, Debug)]
enum Framed {
    /// A Content-Length.
    Length(Vec<u8>),
    /// Chunks of these sizes (what is left in one last chunk).
    Chunked(Vec<u8>, Vec<usize>),
    /// Chunks, beside a Content-Length that says something else.
    Both(Vec<u8>, Vec<usize>, u64),
    /// Neither: the body ends at the close.
    Neither(Vec<u8>),
    /// An interim answer with this status before a length-framed final one.
    Interim(u16, Vec<u8>),
    /// 101, which no request through the tap asks for.
    Switching,
    /// Two Content-Length values that disagree.
    Conflicting(Vec<u8>),
    /// 204, with a length or without.
    NoContent(Option<u64>),
    /// 304, with a length or without.
    NotModified(Option<u64>),
    /// An answer to HEAD, with a length or without, saying it is chunked or not.
    Head(Option<u64>, bool),
}

/// `body` in chunks of `sizes`, what is left in one more, then the last chunk.
fn chunks(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter();
    while !rest.is_empty() {
        let n = sizes.next().map_or(rest.len(), |n| (*n).min(rest.len()));
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

impl Framed {
    fn head_request(&self) -> bool {
        matches!(self, Framed::Head(..))
    }

    /// Production's bytes, whether it closes after them, and the status and body a client
    /// must get.
    fn production(&self) -> (Vec<u8>, bool, u16, Vec<u8>) {
        let length =
            |n: Option<u64>| n.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
        let bad_gateway = b"bad gateway\n".to_vec();
        let mut out = Vec::new();
        let (close, status, body) = match self {
            Framed::Length(b) => {
                out.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes(),
                );
                out.extend_from_slice(b);
                (false, 200, b.clone())
            }
            Framed::Chunked(b, sizes) => {
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                out.extend_from_slice(&chunks(b, sizes));
                (false, 200, b.clone())
            }
            Framed::Both(b, sizes, n) => {
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 200 OK\r\n{}Transfer-Encoding: chunked\r\n\r\n",
                        length(Some(*n))
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(&chunks(b, sizes));
                (false, 200, b.clone())
            }
            Framed::Neither(b) => {
                out.extend_from_slice(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n",
                );
                out.extend_from_slice(b);
                (true, 200, b.clone())
            }
            Framed::Interim(code, b) => {
                out.extend_from_slice(format!("HTTP/1.1 {code} Interim\r\n\r\n").as_bytes());
                out.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes(),
                );
                out.extend_from_slice(b);
                (false, 200, b.clone())
            }
            Framed::Switching => {
                out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n");
                (true, 502, bad_gateway)
            }
            Framed::Conflicting(b) => {
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Length: {}\r\n\r\n",
                        b.len(),
                        b.len() + 1
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(b);
                (true, 502, bad_gateway)
            }
            Framed::NoContent(n) => {
                out.extend_from_slice(
                    format!("HTTP/1.1 204 No Content\r\n{}\r\n", length(*n)).as_bytes(),
                );
                (false, 204, Vec::new())
            }
            Framed::NotModified(n) => {
                out.extend_from_slice(
                    format!("HTTP/1.1 304 Not Modified\r\n{}\r\n", length(*n)).as_bytes(),
                );
                (false, 304, Vec::new())
            }
            Framed::Head(n, chunked) => {
                let coding = if *chunked {
                    "Transfer-Encoding: chunked\r\n"
                } else {
                    ""
                };
                out.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\n{}{coding}\r\n", length(*n)).as_bytes(),
                );
                (false, 200, Vec::new())
            }
        };
        (out, close, status, body)
    }
}

fn framed() -> impl Strategy<Value = Framed> {
    let body = || prop::collection::vec(any::<u8>(), 0..40);
    let sizes = || prop::collection::vec(1usize..12, 0..5);
    let length = || proptest::option::of(0u64..60);
    prop_oneof![
        body().prop_map(Framed::Length),
        (body(), sizes()).prop_map(|(b, s)| Framed::Chunked(b, s)),
        (body(), sizes(), 0u64..60).prop_map(|(b, s, n)| Framed::Both(b, s, n)),
        body().prop_map(Framed::Neither),
        (prop::sample::select(vec![100u16, 102, 103]), body())
            .prop_map(|(c, b)| Framed::Interim(c, b)),
        Just(Framed::Switching),
        body().prop_map(Framed::Conflicting),
        length().prop_map(Framed::NoContent),
        length().prop_map(Framed::NotModified),
        (length(), any::<bool>()).prop_map(|(n, c)| Framed::Head(n, c)),
    ]
}

/// For any framing production gives an answer, a request the tap serves itself and the
/// same request in a shape hyper serves get the same status, body and framing, and the body
/// is the one production meant (or the answer is 502, where production's is not HTTP).
#[test]
fn every_answer_framing_reaches_the_client_alike_on_both_http1_paths() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let production = rt.block_on(RawProduction::start(Reply::new(
        b"HTTP/1.1 404 Not Found\r\n\r\n",
        true,
    )));
    let (tap, _out, _dir) = recording_tap(&production.url(), &["--metrics", "127.0.0.1:0"]);
    let mut runner = TestRunner::new(Config {
        cases: shadowdiff::fuzz_cases(48),
        failure_persistence: None,
        ..Config::default()
    });
    let seq = AtomicUsize::new(0);
    let outcome = runner.run(&(framed(), 0..PAIRS.len()), |(framed, pair)| {
        let path = format!("/p/{}", seq.fetch_add(1, Ordering::Relaxed));
        let pair = if framed.head_request() {
            HEAD_PAIR
        } else {
            PAIRS[pair]
        };
        let (bytes, close, status, body) = framed.production();
        rt.block_on(both_paths(
            tap.addr,
            &production,
            &path,
            pair,
            (&bytes, close),
            (status, &body),
        ))
        .map_err(TestCaseError::fail)
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let m = rt.block_on(tap.metrics_text());
    assert_eq!(
        metric_in(&m, "shadowdiff_tap_client_aborted_total"),
        0,
        "{m}"
    );
    assert_eq!(metric_in(&m, "shadowdiff_tap_in_flight"), 0, "{m}");
}

/// `te` reaches production the same way whichever path serves the request: only
/// `te: trailers` survives, once, whether the client offered it beside a transfer coding in
/// one field or in two, listed `te` in `Connection` or not; a `te` offering only codings is
/// left out. The tap's own path and hyper's (taken by `Expect: 100-continue` and by
/// HTTP/1.0) follow one policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn te_reaches_production_alike_on_both_http1_paths() {
    let production = RawProduction::start(Reply::new(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
    ))
    .await;
    let (tap, _out, _dir) = recording_tap(&production.url(), &["--metrics", "127.0.0.1:0"]);
    let cases: [(&str, &str, &[&str]); 5] = [
        ("one field", "te: gzip, trailers\r\n", &["trailers"]),
        ("two fields", "te: gzip\r\nTE: trailers\r\n", &["trailers"]),
        (
            "trailers first",
            "te: trailers\r\nte: gzip\r\n",
            &["trailers"],
        ),
        ("codings only", "te: gzip, deflate\r\n", &[]),
        (
            "named by connection",
            "connection: te\r\nte: gzip;q=0.5, trailers\r\n",
            &["trailers"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (name, te, want)) in cases.iter().enumerate() {
        let requests = [
            (
                "the tap's own path",
                format!("/te/{i}/fast"),
                format!("GET /te/{i}/fast HTTP/1.1\r\nhost: shop\r\n{te}connection: close\r\n\r\n"),
                false,
            ),
            (
                "hyper's path (Expect)",
                format!("/te/{i}/expect"),
                format!(
                    "POST /te/{i}/expect HTTP/1.1\r\nhost: shop\r\ncontent-length: 3\r\n\
                     expect: 100-continue\r\n{te}connection: close\r\n\r\nabc"
                ),
                true,
            ),
            (
                "hyper's path (HTTP/1.0)",
                format!("/te/{i}/http10"),
                format!("GET /te/{i}/http10 HTTP/1.0\r\nhost: shop\r\n{te}\r\n"),
                true,
            ),
        ];
        for (path_name, path, request, by_hyper) in requests {
            let got = read_as_client(&ask(tap.addr, request.as_bytes()).await, false);
            assert_eq!(
                (got.status, got.dated),
                (200, by_hyper),
                "{name}, {path_name}: {got:?}"
            );
            let te_sent = production.received_values(&path, "te");
            if te_sent != *want {
                failures.push(format!(
                    "{name}: {path_name} sent te {te_sent:?}, wanted {want:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
