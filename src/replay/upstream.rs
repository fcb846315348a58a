//! shadowdiff as the upstream of both gateway versions (`--baseline-upstream`,
//! `--candidate-upstream`): one listener per side (HTTP/1.1 and h2c, gRPC trailers
//! included) that answers every request a gateway forwards with the recorded answer of the
//! exchange it belongs to, and keeps what was forwarded for the comparison
//! ([`crate::compare::upstream`]).
//!
//! A forwarded request is tied to its exchange by the correlation header the replayer adds
//! to each request it sends ([`CORRELATION_HEADER`]); a gateway that does not pass it on is
//! matched by method, body and path among that side's exchanges in flight, and counted, so
//! the report can say the header was stripped. A request that matches no exchange in flight
//! is answered 502 and counted. Nothing a gateway forwards reaches any other server.

use crate::analysis::result::{UpstreamRun, UpstreamSide};
use crate::cli::UpstreamLatency;
use crate::compare::upstream::{without_retries, Forwarded};
use crate::error::{Error, Result};
use crate::exchange::{Exchange, Response, Side};
use crate::http1::headers::is_hop_by_hop;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The request header that carries an exchange's token from the replayer through the
/// gateway to shadowdiff playing its upstream. Gateways must pass it on (most pass unknown
/// headers by default); it is never compared.
pub const CORRELATION_HEADER: &str = "x-shadowdiff-exchange";

/// One exchange in flight on one side: what identifies its forwarded requests when the
/// correlation header is missing, the answer to give, and the calls received.
struct Open {
    method: String,
    path: String,
    body: Bytes,
    answer: Option<Arc<Response>>,
    latency: Option<Duration>,
    calls: Vec<Forwarded>,
}

#[derive(Default)]
struct State {
    open: HashMap<u64, Open>,
    stats: UpstreamSide,
}

/// shadowdiff playing one side's upstream.
pub struct Upstream {
    side: Side,
    /// The address bound.
    addr: SocketAddr,
    /// Authorities that name this side: its listening address and its gateway's.
    own: Vec<String>,
    latency: UpstreamLatency,
    max_body: usize,
    state: Mutex<State>,
}

/// Both sides' upstreams and the tokens of exchanges in flight.
pub struct Plays {
    baseline: Arc<Upstream>,
    candidate: Arc<Upstream>,
    next: AtomicU64,
    tasks: Vec<tokio::task::AbortHandle>,
}

/// What both sides forwarded for one request, taken when their gateways had answered.
#[derive(Clone, Debug, Default)]
pub struct Calls {
    /// What the baseline gateway forwarded.
    pub baseline: Vec<Forwarded>,
    /// What the candidate gateway forwarded.
    pub candidate: Vec<Forwarded>,
}

impl Plays {
    /// Binds both listeners and starts serving on the current runtime. `targets` are the
    /// authorities of the baseline and candidate gateways (a `Host` naming them is the
    /// side's own too).
    pub async fn start(
        addrs: (SocketAddr, SocketAddr),
        targets: (&str, &str),
        latency: UpstreamLatency,
        max_body: usize,
    ) -> Result<Plays> {
        let (b, tb) = Upstream::bind(Side::Baseline, addrs.0, targets.0, latency, max_body).await?;
        let (c, tc) =
            Upstream::bind(Side::Candidate, addrs.1, targets.1, latency, max_body).await?;
        Ok(Plays {
            baseline: b,
            candidate: c,
            next: AtomicU64::new(1),
            tasks: vec![tb, tc],
        })
    }

    /// The addresses actually bound (a port 0 given is a port chosen).
    pub fn addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.baseline.addr, self.candidate.addr)
    }

    /// Opens `ex` on both sides under a fresh token, returned to be sent in
    /// [`CORRELATION_HEADER`].
    pub fn open(&self, ex: &Exchange) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let answer = ex.response.clone().map(Arc::new);
        for side in [&self.baseline, &self.candidate] {
            side.open(token, ex, answer.clone());
        }
        token
    }

    /// Closes a token on both sides and returns what each forwarded under it.
    pub fn close(&self, token: u64) -> Calls {
        Calls {
            baseline: self.baseline.close(token),
            candidate: self.candidate.close(token),
        }
    }

    /// The counts of the run, for the result.
    pub fn report(&self, latency: UpstreamLatency) -> UpstreamRun {
        UpstreamRun {
            baseline_addr: self.baseline.addr.to_string(),
            candidate_addr: self.candidate.addr.to_string(),
            latency: latency.name().to_string(),
            baseline: self.baseline.stats(),
            candidate: self.candidate.stats(),
        }
    }
}

impl Drop for Plays {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Upstream {
    async fn bind(
        side: Side,
        addr: SocketAddr,
        target: &str,
        latency: UpstreamLatency,
        max_body: usize,
    ) -> Result<(Arc<Upstream>, tokio::task::AbortHandle)> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::Usage(format!(
                "--{side}-upstream {addr}: cannot listen there ({e}); expected a free local \
                 address such as 127.0.0.1:9001"
            ))
        })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let port = addr.port();
        let own = vec![
            addr.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
            target.to_string(),
        ];
        let up = Arc::new(Upstream {
            side,
            addr,
            own,
            latency,
            max_body,
            state: Mutex::new(State::default()),
        });
        let task = tokio::spawn(serve(up.clone(), listener)).abort_handle();
        Ok((up, task))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while the lock was held leaves counts, never broken invariants.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, token: u64, ex: &Exchange, answer: Option<Arc<Response>>) {
        let open = Open {
            method: ex.request.method.clone(),
            path: ex.request.path().into_owned(),
            body: ex.request.body.clone(),
            answer,
            latency: ex.latency_us.map(Duration::from_micros),
            calls: Vec::new(),
        };
        self.state().open.insert(token, open);
    }

    fn close(&self, token: u64) -> Vec<Forwarded> {
        let mut st = self.state();
        let calls = st.open.remove(&token).map(|o| o.calls).unwrap_or_default();
        st.stats.retries += without_retries(&calls).1;
        calls
    }

    fn stats(&self) -> UpstreamSide {
        self.state().stats.clone()
    }

    /// Ties a forwarded request to its exchange, notes it, and gives the answer to send
    /// (with the wait before it), or `None` when it belongs to no exchange in flight.
    fn take(
        &self,
        token: Option<&str>,
        call: Forwarded,
    ) -> Option<(Option<Arc<Response>>, Option<Duration>)> {
        let mut st = self.state();
        st.stats.forwarded += 1;
        let by_header = token.and_then(|t| t.trim().parse::<u64>().ok());
        let key = match by_header {
            Some(k) if st.open.contains_key(&k) => {
                st.stats.by_header += 1;
                Some(k)
            }
            // A token of an exchange already closed: a call made after the gateway answered.
            Some(_) => None,
            None => {
                st.stats.without_header += 1;
                let k = fallback(&st.open, &call);
                if k.is_some() {
                    st.stats.by_match += 1;
                }
                k
            }
        };
        let Some(open) = key.and_then(|k| st.open.get_mut(&k)) else {
            st.stats.unmatched += 1;
            return None;
        };
        open.calls.push(call);
        let wait = match self.latency {
            UpstreamLatency::Recorded => open.latency,
            UpstreamLatency::None => None,
        };
        Some((open.answer.clone(), wait))
    }
}

/// The exchange in flight a forwarded request without a token belongs to: the same method
/// and body, and of those the same path, else a path that ends with the other (a prefix
/// added or cut), else the only one.
fn fallback(open: &HashMap<u64, Open>, call: &Forwarded) -> Option<u64> {
    let path = call.target.split(['?', '#']).next().unwrap_or("");
    let same: Vec<(&u64, &Open)> = open
        .iter()
        .filter(|(_, o)| o.method.eq_ignore_ascii_case(&call.method) && o.body == call.body)
        .collect();
    if let Some((k, _)) = same.iter().find(|(_, o)| o.path == path) {
        return Some(**k);
    }
    let suffix: Vec<&u64> = same
        .iter()
        .filter(|(_, o)| o.path.ends_with(path) || path.ends_with(o.path.as_str()))
        .map(|(k, _)| *k)
        .collect();
    match (suffix.as_slice(), same.as_slice()) {
        ([k], _) => Some(**k),
        ([], [(k, _)]) => Some(**k),
        // Several alike (a path cut to a common tail): the first. The correlation header is
        // what tells them apart for sure, and the report says when it was missing.
        ([k, ..], _) => Some(**k),
        _ => None,
    }
}

/// An answer's body: whole, or whole and then trailers (gRPC status).
type Body = Either<
    Full<Bytes>,
    StreamBody<
        futures_util::stream::Iter<
            std::vec::IntoIter<std::result::Result<Frame<Bytes>, Infallible>>,
        >,
    >,
>;

/// Accepts connections for as long as the task runs, each served by hyper's automatic
/// HTTP/1.1 or h2c connection.
async fn serve(up: Arc<Upstream>, listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // spinning on it would only take the CPU the gateways need.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let local = stream.local_addr().ok();
        let _ = stream.set_nodelay(true);
        let up = up.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let up = up.clone();
                async move { Ok::<_, Infallible>(answer(&up, local, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Answers one forwarded request.
async fn answer(
    up: &Upstream,
    local: Option<SocketAddr>,
    req: http::Request<Incoming>,
) -> http::Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, up.max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            up.state().stats.unreadable += 1;
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("shadowdiff could not read the forwarded request: {e}\n"),
            );
        }
    };
    let mut token = None;
    let mut headers = Vec::with_capacity(parts.headers.len() + 1);
    // HTTP/2 carries the authority in the request line; it is compared as the Host it is.
    if parts.version == http::Version::HTTP_2 {
        if let Some(a) = parts.uri.authority() {
            headers.push(("host".to_string(), a.to_string()));
        }
    }
    for (n, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        if n.as_str() == CORRELATION_HEADER {
            token = Some(v);
        } else {
            headers.push((n.as_str().to_string(), v));
        }
    }
    let mut own = up.own.clone();
    if let Some(l) = local {
        own.push(l.to_string());
    }
    let call = Forwarded {
        method: parts.method.as_str().to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
        headers,
        body,
        own,
    };
    let side = up.side;
    let Some((recorded, wait)) = up.take(token.as_deref(), call) else {
        return plain(
            StatusCode::BAD_GATEWAY,
            format!(
                "shadowdiff, playing the {side}'s upstream, found no exchange in flight for \
                 this request\n"
            ),
        );
    };
    let Some(recorded) = recorded else {
        up.state().stats.unanswerable += 1;
        return plain(
            StatusCode::BAD_GATEWAY,
            "shadowdiff has no recorded answer for this exchange\n".into(),
        );
    };
    if let Some(w) = wait {
        tokio::time::sleep(w).await;
    }
    recorded_answer(&recorded)
}

/// The recorded answer as sent again: status, header fields but those of the connection and
/// the body's framing (set anew for this connection), body, and trailers when it had any.
fn recorded_answer(r: &Response) -> http::Response<Body> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = match &r.trailers {
        Some(t) => {
            let frames = vec![
                Ok(Frame::data(r.body.clone())),
                Ok(Frame::trailers(header_map(t))),
            ];
            Either::Right(StreamBody::new(futures_util::stream::iter(frames)))
        }
        None => Either::Left(Full::new(r.body.clone())),
    };
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (n, v) in &r.headers {
        if is_hop_by_hop(n.as_bytes()) || n.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(n, v);
        }
    }
    resp
}

fn header_map(fields: &[(String, String)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in fields {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            m.append(n, v);
        }
    }
    m
}

fn plain(status: StatusCode, text: String) -> http::Response<Body> {
    let mut resp = http::Response::new(Either::Left(Full::new(Bytes::from(text))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Request;

    fn ex(method: &str, uri: &str, body: &str) -> Exchange {
        Exchange {
            id: "e".into(),
            ts_us: 0,
            interface: None,
            tenant: None,
            request: Request {
                method: method.into(),
                uri: uri.into(),
                version: "HTTP/1.1".into(),
                body: Bytes::copy_from_slice(body.as_bytes()),
                ..Default::default()
            },
            response: None,
            latency_us: None,
        }
    }

    fn open_of(e: &Exchange) -> Open {
        Open {
            method: e.request.method.clone(),
            path: e.request.path().into_owned(),
            body: e.request.body.clone(),
            answer: None,
            latency: None,
            calls: Vec::new(),
        }
    }

    fn fwd(method: &str, target: &str, body: &str) -> Forwarded {
        Forwarded {
            method: method.into(),
            target: target.into(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            ..Default::default()
        }
    }

    /// Sends `bytes` on a raw connection (then closes its sending side when `eof`), and
    /// reads until the upstream closes.
    async fn raw(addr: SocketAddr, bytes: &[u8], eof: bool) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(bytes).await;
        if eof {
            let _ = s.shutdown().await;
        }
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out));
        assert!(
            read.await.is_ok(),
            "the upstream neither answered nor closed"
        );
        out
    }

    fn recorded() -> Exchange {
        let mut e = ex("POST", "/pkg.Svc/Get", "\0\0\0\0\x02\x08\x01");
        e.response = Some(Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/grpc".into()),
                ("connection".into(), "keep-alive".into()),
                ("content-length".into(), "999".into()),
            ],
            trailers: Some(vec![("grpc-status".into(), "0".into())]),
            body: Bytes::from_static(b"\0\0\0\0\x02\x08\x07"),
            body_truncated: false,
        });
        e
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_bytes_strays_and_oversized_bodies_get_answers_and_leave_it_serving() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let plays = Plays::start(
            (any, any),
            ("gw-b:80", "gw-c:80"),
            UpstreamLatency::None,
            64,
        )
        .await
        .unwrap();
        let (b, _) = plays.addrs();
        for junk in [
            &b"\x00\xff\xfe\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: \x01\x02\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00",
            b"GET / HTTP/1.1\r\nHost: x\r\nx-shadowdiff-exchange: -1\r\n\r\n",
        ] {
            raw(b, junk, true).await;
        }
        // A request tied to no exchange in flight, and one over the body limit, each counted.
        let before = plays.baseline.stats();
        let stray = raw(
            b,
            b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            false,
        )
        .await;
        assert!(
            stray.starts_with(b"HTTP/1.1 502"),
            "{}",
            String::from_utf8_lossy(&stray)
        );
        let big = format!(
            "POST /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\n\r\n{}",
            "a".repeat(100)
        );
        let big = raw(b, big.as_bytes(), false).await;
        assert!(
            big.starts_with(b"HTTP/1.1 502"),
            "{}",
            String::from_utf8_lossy(&big)
        );
        let st = plays.baseline.stats();
        assert_eq!(st.unreadable, before.unreadable + 1, "{st:?}");
        assert_eq!(st.unmatched, before.unmatched + 1, "{st:?}");

        // Still serving: a gRPC call over h2c gets the recorded answer, trailers included.
        let e = recorded();
        let token = plays.open(&e);
        let io = TokioIo::new(tokio::net::TcpStream::connect(b).await.unwrap());
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(format!("http://{b}/pkg.Svc/Get"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header(CORRELATION_HEADER, token.to_string())
            .body(Full::new(e.request.body.clone()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        let got = resp.into_body().collect().await.unwrap();
        assert_eq!(got.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(got.to_bytes(), Bytes::from_static(b"\0\0\0\0\x02\x08\x07"));
        let calls = plays.close(token);
        assert_eq!(calls.baseline.len(), 1);
        assert!(calls.candidate.is_empty());
        let call = &calls.baseline[0];
        assert_eq!(call.target, "/pkg.Svc/Get");
        assert!(call.headers.iter().all(|(n, _)| n != CORRELATION_HEADER));
        assert!(call
            .headers
            .iter()
            .any(|(n, v)| n == "host" && v == &b.to_string()));
        assert_eq!(plays.baseline.stats().by_header, 1);
    }

    #[test]
    fn the_same_call_again_is_a_retry_counted_at_close() {
        let up = Upstream {
            side: Side::Candidate,
            addr: "127.0.0.1:1".parse().unwrap(),
            own: Vec::new(),
            latency: UpstreamLatency::None,
            max_body: 64,
            state: Mutex::new(State::default()),
        };
        let e = recorded();
        up.open(3, &e, None);
        for _ in 0..3 {
            assert!(up.take(Some("3"), fwd("POST", "/a", "x")).is_some());
        }
        assert!(up.take(Some("3"), fwd("POST", "/b", "x")).is_some());
        assert_eq!(up.close(3).len(), 4);
        let st = up.stats();
        assert_eq!((st.forwarded, st.by_header, st.retries), (4, 4, 2));
        // Closed: a call after the gateway answered belongs to nothing.
        assert!(up.take(Some("3"), fwd("POST", "/a", "x")).is_none());
        assert_eq!(up.stats().unmatched, 1);
    }

    #[test]
    fn recorded_latency_is_waited_only_when_asked_for() {
        for (mode, wait) in [
            (UpstreamLatency::None, None),
            (UpstreamLatency::Recorded, Some(Duration::from_micros(1500))),
        ] {
            let up = Upstream {
                side: Side::Baseline,
                addr: "127.0.0.1:1".parse().unwrap(),
                own: Vec::new(),
                latency: mode,
                max_body: 64,
                state: Mutex::new(State::default()),
            };
            let mut e = recorded();
            e.latency_us = Some(1500);
            up.open(7, &e, e.response.clone().map(Arc::new));
            let (_, w) = up.take(Some("7"), fwd("POST", "/pkg.Svc/Get", "")).unwrap();
            assert_eq!(w, wait);
        }
    }

    #[test]
    fn fallback_matches_method_body_then_path() {
        let mut open = HashMap::new();
        open.insert(1, open_of(&ex("POST", "/api/orders/Create", r#"{"a":1}"#)));
        open.insert(2, open_of(&ex("POST", "/api/users/Update", r#"{"a":1}"#)));
        open.insert(3, open_of(&ex("GET", "/api/x", "")));
        assert_eq!(
            fallback(&open, &fwd("POST", "/api/users/Update", r#"{"a":1}"#)),
            Some(2)
        );
        // A prefix cut by the gateway.
        assert_eq!(
            fallback(&open, &fwd("POST", "/orders/Create", r#"{"a":1}"#)),
            Some(1)
        );
        assert_eq!(fallback(&open, &fwd("GET", "/v2/other", "")), Some(3));
        assert_eq!(fallback(&open, &fwd("POST", "/x", r#"{"a":2}"#)), None);
    }
}
