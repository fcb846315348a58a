//! The tap's common case served without hyper: an HTTP/1.1 client sending plain requests.
//!
//! Most traffic in front of a gateway is HTTP/1.1 requests with an empty or small body,
//! answered with a body framed by its length or by chunks. For those, this module reads the
//! request head with httparse, forwards it in one write on the client connection's own
//! upstream connection, and passes the response on as it arrives, its bytes untouched,
//! while it follows the framing to find the end and keeps the copy for the recording.
//! Doing only this much by hand takes hyper's server and client, which were most of the
//! tap's own CPU per request, off the common path.
//!
//! Everything else stays with hyper's server in [`super::accept::serve`]: HTTP/1.0 and
//! HTTP/2 clients, `Expect: 100-continue`, upgrades, chunked or large request bodies,
//! absolute-form targets and CONNECT, malformed or oversized heads and the answers they
//! get. The first request this module does not take hands the connection over, with the
//! bytes already read, so a client never sees which of the two served it. Deciding,
//! recording and shadowing are the same code for both (`Tap::plan`, [`InFlight`]).

use super::heads::{fill_request, fill_response, SpareHeaders};
use super::metrics::{Refusal, Timeout};
use super::shared::{head_interface, is_grpc_type, Ctx, InFlight, Pending, Tap, UNASKED_UPGRADE};
use super::tee::{BodyCopy, Finish, RequestEnd, RequestState, ResponseEnd};
use super::tls::ClientStream;
use super::upstream::{UpStream, UpstreamError};
use crate::exchange::{Headers, Request as CapturedRequest, Tls};
use crate::http1::framing::{parse_length, BodyFields, Framing, Mode};
use crate::http1::headers::{
    connection_option_removes, list_tokens, Direction, FieldPolicy, Forward, TE_FORWARDED,
};
use crate::http1::ChunkedDecoder;
use crate::interface::InterfaceKey;
use crate::recording::format::now_us;
use crate::tls::TlsConnector;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Header fields a head may carry on this path (hyper's server and client allow as many).
pub(super) const MAX_HEADERS: usize = 100;

/// Request bodies up to this size are read whole and forwarded with their head; a larger
/// one goes to hyper, which streams it.
const BODY_MAX: u64 = 64 * 1024;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// A response head longer than this is not HTTP this tap forwards (hyper's client stops
/// near 400 KB).
const RESPONSE_HEAD_MAX: usize = 256 * 1024;

/// The request line of the HTTP/2 connection preface, up to where it stops being HTTP/1.1.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2";

/// How a connection left this path.
pub(super) enum End<S> {
    /// It is closed, or done with.
    Closed,
    /// A request this path does not take: hyper serves the connection from here, starting
    /// with these bytes already read from it. `fresh` when they are the connection's first,
    /// the one place an HTTP/2 connection preface may be.
    Handoff { stream: S, read: Bytes, fresh: bool },
}

/// Serves `client` until it closes, the tap stops, or a request needs hyper. `ip` is the
/// client's address as an `x-forwarded-for` value; `tls` what its TLS session was, when
/// the tap terminated one.
pub(super) async fn serve<S: ClientStream>(
    tap: Arc<Tap>,
    client: S,
    ip: HeaderValue,
    tls: Option<Tls>,
    mut shutdown: watch::Receiver<bool>,
) -> End<S> {
    let mut conn = Conn {
        tap,
        client,
        ip,
        tls,
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: BytesMut::with_capacity(READ_CHUNK),
        up: None,
        fields: Vec::new(),
        resp_fields: Vec::new(),
        body_parts: Vec::new(),
        served: false,
    };
    let mut fresh = true;
    loop {
        let head = match conn.next_head(&mut shutdown).await {
            Next::Head(h) => h,
            Next::Closed => return End::Closed,
            // After an HTTP/1.1 exchange the preface is an HTTP/1 request of a version the
            // tap does not serve: 400, as hyper's HTTP/1 server answers one (to the preface
            // itself it says nothing and closes).
            Next::Refer if !fresh && conn.buf.starts_with(H2_PREFACE_START) => {
                conn.tap.metrics.refuse(Refusal::BadRequest);
                let text = "an HTTP/2 connection preface may only open a connection\n";
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
                     connection: close\r\ncontent-length: {}\r\n\r\n{text}",
                    text.len()
                );
                let _ = send_all(&mut conn.client, answer.as_bytes()).await;
                let _ = conn.client.shutdown().await;
                return End::Closed;
            }
            Next::Refer => {
                return End::Handoff {
                    stream: conn.client,
                    read: conn.buf.freeze(),
                    fresh,
                }
            }
            Next::TooLarge => {
                // Exactly at the limit, which hyper's server checks only between reads.
                conn.tap.metrics.refuse(Refusal::HeadTooLarge);
                let _ = send_all(
                    &mut conn.client,
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
                      connection: close\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
                let _ = conn.client.shutdown().await;
                return End::Closed;
            }
        };
        fresh = false;
        if !conn.exchange(head, &shutdown).await {
            let _ = conn.client.shutdown().await;
            return End::Closed;
        }
        conn.served = true;
    }
}

/// One client connection on this path.
struct Conn<S> {
    tap: Arc<Tap>,
    client: S,
    ip: HeaderValue,
    /// The client's TLS session, noted in every exchange recorded from it.
    tls: Option<Tls>,
    /// Bytes read from the client and not yet used.
    buf: BytesMut,
    /// What is written next (an upstream request, or a response head).
    out: BytesMut,
    /// This client connection's own upstream connection, kept between exchanges.
    up: Option<Upstream>,
    /// Where a request head's fields are collected while it is parsed: the parsed head takes
    /// them, and an exchange that ends well gives them back for the next.
    fields: Vec<Field>,
    /// The same for response heads.
    resp_fields: Vec<Field>,
    /// Where the parts of each read that belong to a response body are noted.
    body_parts: Vec<Range<usize>>,
    /// An exchange has been served: the next head is waited for as on a kept connection.
    served: bool,
}

/// An upstream connection and the bytes read from it and not yet used.
struct Upstream {
    stream: UpStream,
    buf: BytesMut,
    /// Its last answer had no body (HEAD, 204, 304): a server that sends one anyway leaves
    /// it on the connection, so the next reuse asks the kernel, not the runtime's cache.
    suspect: bool,
}

/// A header field: its name and value as ranges of the head's bytes.
#[derive(Clone, Debug)]
struct Field {
    name: Range<usize>,
    value: Range<usize>,
}

/// A request head this path takes.
#[derive(Debug)]
struct ReqHead {
    bytes: Bytes,
    method: Method,
    path: Range<usize>,
    fields: Vec<Field>,
    content_length: u64,
    /// The client asked to close the connection after this exchange.
    close: bool,
}

enum Next {
    Head(ReqHead),
    Closed,
    Refer,
    /// A head longer than `--max-header-bytes`.
    TooLarge,
}

/// What the request head parser says about the bytes so far.
enum Parsed {
    Take(ReqHead, usize),
    Partial,
    /// hyper's to serve (or to refuse).
    Refer,
}

/// A response head from production.
#[derive(Debug)]
struct RespHead {
    bytes: Bytes,
    code: u16,
    reason: Range<usize>,
    fields: Vec<Field>,
    framing: Framing,
    keep_alive: bool,
}

/// Why no response head came.
enum HeadFail {
    /// The connection ended before a byte of the response arrived.
    Silent(String),
    Broken(String),
    Malformed(String),
}

/// Where `part`, a slice httparse returned, lies in `base`.
fn range_in(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

/// The reason phrase of the status line at the start of `head`, as sent (httparse gives
/// none for an empty or non-UTF-8 one): everything after `HTTP/1.x NNN `.
fn reason_in(head: &[u8]) -> Range<usize> {
    let line = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = if line > 0 && head[line - 1] == b'\r' {
        line - 1
    } else {
        line
    };
    13.min(line)..line
}

fn is(name: &[u8], want: &str) -> bool {
    name.eq_ignore_ascii_case(want.as_bytes())
}

/// Parses a request head and tells whether this path takes it: HTTP/1.1 in origin form,
/// one Host, a Content-Length body of at most [`BODY_MAX`] (and `--max-request-body`) or
/// none, and none of the headers whose handling is hyper's.
fn parse_request(buf: &[u8], fields: &mut Vec<Field>, body_limit: u64) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Refer,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Refer;
    };
    // hyper refuses (400) targets with characters a URI may not hold, and drops a fragment.
    let unusual = |b: &u8| b"\"<>{}|^`\\#".contains(b) || !b.is_ascii();
    if method == "CONNECT"
        || method == "PRI"
        || !path.starts_with('/')
        || path.as_bytes().iter().any(unusual)
    {
        return Parsed::Refer;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Refer;
    };
    fields.clear();
    let (mut content_length, mut hosts, mut close) = (None, 0, false);
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if is(name, "content-length") {
            // A second length, even an equal one, is hyper's to merge or refuse.
            match (parse_length(h.value), content_length) {
                (Some(n), None) => content_length = Some(n),
                _ => return Parsed::Refer,
            }
        } else if is(name, "host") {
            // Credentials in the Host are refused on hyper's path, with the same answer.
            if h.value.contains(&b'@') {
                return Parsed::Refer;
            }
            hosts += 1;
        } else if is(name, "connection") {
            for t in list_tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if connection_option_removes(t) {
                    // It names other headers to remove: hyper's path does that.
                    return Parsed::Refer;
                }
            }
        } else if is(name, "transfer-encoding")
            || is(name, "expect")
            || is(name, "upgrade")
            || is(name, "http2-settings")
            || (is(name, "content-type") && is_grpc_type(h.value))
        {
            return Parsed::Refer;
        }
        fields.push(Field {
            name: range_in(buf, name),
            value: range_in(buf, h.value),
        });
    }
    let content_length = content_length.unwrap_or(0);
    if hosts != 1 || content_length > BODY_MAX.min(body_limit) {
        return Parsed::Refer;
    }
    let head = ReqHead {
        bytes: Bytes::new(),
        method,
        path: range_in(buf, path.as_bytes()),
        fields: std::mem::take(fields),
        content_length,
        close,
    };
    Parsed::Take(head, n)
}

impl ReqHead {
    fn slice(&self, r: &Range<usize>) -> &[u8] {
        &self.bytes[r.clone()]
    }

    fn path(&self) -> &str {
        // httparse accepted it as a request target: visible ASCII only.
        std::str::from_utf8(self.slice(&self.path)).unwrap_or("/")
    }

    fn value(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| is(self.slice(&f.name), name))
            .map(|f| self.slice(&f.value))
    }

    /// The interface, as the recorder's per-file minimum counts it.
    fn interface(&self, key: &InterfaceKey) -> Option<String> {
        let path = self.path();
        head_interface(
            key,
            self.method.as_str(),
            path.split('?').next().unwrap_or(path),
            |name| self.value(name),
        )
    }

    /// The head as the recording keeps it.
    fn capture(&self, tls: Option<Tls>) -> CapturedRequest {
        let mut r = CapturedRequest {
            tls,
            ..Default::default()
        };
        fill_request(&self.bytes, &mut r, &mut SpareHeaders::default());
        r
    }

    /// The fields of the head, name and value.
    fn field_slices(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|f| (self.slice(&f.name), self.slice(&f.value)))
    }

    /// Writes the upstream request: the target behind `prefix`, the hop-by-hop headers
    /// left out ([`FieldPolicy`], as on hyper's path), `x-forwarded-for` extended with
    /// `ip`, then the body.
    fn write_upstream(&self, out: &mut BytesMut, prefix: &str, ip: &HeaderValue, body: &[u8]) {
        out.clear();
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(self.slice(&self.path));
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut forwarded_for = None;
        let policy = FieldPolicy::new(Direction::Request, || self.field_slices());
        let mut te_written = false;
        for f in &self.fields {
            let name = self.slice(&f.name);
            match policy.field(name) {
                Forward::Keep => {}
                Forward::Drop => continue,
                Forward::Trailers => {
                    if !std::mem::replace(&mut te_written, true) {
                        out.extend_from_slice(b"te: ");
                        out.extend_from_slice(TE_FORWARDED.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                    continue;
                }
            }
            if is(name, "x-forwarded-for") {
                // Several fields are one list; the first one stands for it, as in hyper's path.
                forwarded_for.get_or_insert(f.value.clone());
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(self.slice(&f.value));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prev) = forwarded_for {
            out.extend_from_slice(self.slice(&prev));
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(ip.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    }
}

/// The part of a read buffer the recording keeps. A small part is copied out: a slice
/// would hold the whole read buffer until the recorder has written the exchange, so that
/// every exchange would take a fresh buffer instead of reusing its connection's.
fn kept(read: &Bytes, part: Range<usize>) -> Bytes {
    if part.len() < READ_CHUNK / 4 {
        Bytes::copy_from_slice(&read[part])
    } else {
        read.slice(part)
    }
}

/// Parses a response head; `Ok(None)` while incomplete.
fn parse_response(
    buf: &[u8],
    fields: &mut Vec<Field>,
    head_request: bool,
) -> Result<Option<(RespHead, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid response head: {e}")),
    };
    let (Some(version), Some(code)) = (resp.version, resp.code) else {
        return Err("invalid response head".into());
    };
    if code < 100 {
        return Err(format!("status {code} is not valid"));
    }
    fields.clear();
    let mut body = BodyFields::default();
    for h in resp.headers.iter() {
        body.field(h.name, h.value);
        fields.push(Field {
            name: range_in(buf, h.name.as_bytes()),
            value: range_in(buf, h.value),
        });
    }
    let (framing, keep_alive) = body.answer(code, head_request, false, version == 1)?;
    let head = RespHead {
        bytes: Bytes::new(),
        code,
        reason: reason_in(buf),
        fields: std::mem::take(fields),
        framing,
        keep_alive,
    };
    Ok(Some((head, n)))
}

impl RespHead {
    /// An interim answer (1xx but 101), with the final one still to come.
    fn is_interim(&self) -> bool {
        (100..200).contains(&self.code) && self.code != 101
    }

    fn slice(&self, r: &Range<usize>) -> &[u8] {
        &self.bytes[r.clone()]
    }

    /// Writes the head the client gets: production's, less its hop-by-hop fields, with
    /// `connection: close` when the client connection ends after it.
    fn write_client(&self, out: &mut BytesMut, close: bool) {
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        // httparse reads exactly three digits.
        let c = self.code;
        out.extend_from_slice(&[
            b'0' + (c / 100 % 10) as u8,
            b'0' + (c / 10 % 10) as u8,
            b'0' + (c % 10) as u8,
        ]);
        out.extend_from_slice(b" ");
        out.extend_from_slice(self.slice(&self.reason));
        out.extend_from_slice(b"\r\n");
        let fields = || {
            self.fields
                .iter()
                .map(|f| (self.slice(&f.name), self.slice(&f.value)))
        };
        let policy = FieldPolicy::new(Direction::Response, fields);
        for f in &self.fields {
            let name = self.slice(&f.name);
            // Chunks pass through as they are, so their coding stays; any other coding's
            // end is the close.
            let passed_chunks = is(name, "transfer-encoding") && self.framing == Framing::Chunked;
            let hop = (policy.field(name) == Forward::Drop && !passed_chunks)
                // A length beside a transfer coding is not what frames the body (RFC 9112
                // section 6.3): passed on, it would tell the client another end. 1xx, 204
                // and 304 have no body to measure: RFC 9110 section 8.6 forbids the length
                // on 1xx and 204, and on 304 hyper's server (serving the other requests)
                // never sends it.
                || (is(name, "content-length")
                    && (matches!(self.framing, Framing::Chunked | Framing::UntilClose)
                        || self.code == 204
                        || self.code == 304
                        || self.code < 200));
            if hop {
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(self.slice(&f.value));
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The fields as the recording keeps them.
    fn header_list(&self) -> Headers {
        let mut h = Headers::new();
        fill_response(&self.bytes, &mut h, &mut SpareHeaders::default());
        h
    }
}

impl<S: ClientStream> Conn<S> {
    /// Reads the next request head within `--head-timeout`, counted as hyper's server counts
    /// it: from the connection's start, or from the end of the previous answer. A kept
    /// connection waits no longer than `--idle-timeout` for it either.
    async fn next_head(&mut self, shutdown: &mut watch::Receiver<bool>) -> Next {
        let (head, idle) = (self.tap.cfg.head_timeout, self.tap.cfg.idle_timeout);
        let (limit, why) = if self.served && idle < head {
            (idle, Timeout::Idle)
        } else {
            (head, Timeout::Head)
        };
        let deadline = tokio::time::Instant::now() + limit;
        let max_head = self.tap.cfg.max_header_bytes;
        let body_limit = self.tap.cfg.max_request_body.unwrap_or(u64::MAX);
        loop {
            if !self.buf.is_empty() {
                match parse_request(&self.buf, &mut self.fields, body_limit) {
                    Parsed::Take(_, n) if n > max_head => return Next::TooLarge,
                    Parsed::Take(mut head, n) => {
                        head.bytes = self.buf.split_to(n).freeze();
                        return Next::Head(head);
                    }
                    Parsed::Refer => return Next::Refer,
                    Parsed::Partial if self.buf.len() >= max_head => return Next::TooLarge,
                    Parsed::Partial => {}
                }
            }
            // Stopping: no request has begun (a head still arriving is not one), as under
            // hyper's graceful shutdown.
            if *shutdown.borrow() {
                return Next::Closed;
            }
            self.buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                r = tokio::time::timeout_at(deadline, self.client.read_buf(&mut self.buf)) => r,
                _ = shutdown.changed() => return Next::Closed,
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                // Too slow: as hyper's server, end without an answer.
                Err(_) => {
                    self.tap.metrics.time_out(why);
                    return Next::Closed;
                }
                // Closed or broken.
                Ok(_) => return Next::Closed,
            }
        }
    }

    /// Reads a request body of `len` bytes; `None` when the client broke it off.
    async fn read_body(&mut self, len: u64) -> Option<Bytes> {
        let len = usize::try_from(len).ok()?;
        while self.buf.len() < len {
            self.buf.reserve(len - self.buf.len());
            match self.client.read_buf(&mut self.buf).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
        Some(self.buf.split_to(len).freeze())
    }

    /// One exchange, from a complete request to the end of its answer. `false` when the
    /// client connection is to be closed.
    async fn exchange(&mut self, head: ReqHead, shutdown: &watch::Receiver<bool>) -> bool {
        let tap = self.tap.clone();
        let start = Instant::now();
        // As under hyper, `--upstream-timeout` covers the request body and the answer head.
        let deadline = tokio::time::Instant::now() + tap.cfg.upstream_timeout;
        let mut pending = Pending::start(tap.clone());
        let id = tap.next_id();
        let ts_us = now_us();
        let plan = tap.plan(&id, &head.method, head.content_length == 0, || {
            head.interface(&tap.cfg.interface_key)
        });
        // An exchange only recorded has its heads parsed into strings by the recorder
        // thread; one the shadow compares needs them here and now.
        let lazy = plan.record && !plan.shadow;
        let captured = if lazy {
            Some(CapturedRequest {
                tls: self.tls.clone(),
                ..Default::default()
            })
        } else {
            plan.shadow.then(|| head.capture(self.tls.clone()))
        };
        let raw_head = lazy.then(|| Bytes::copy_from_slice(&head.bytes));
        let head_request = head.method == Method::HEAD;
        let copy_of = |body: &Bytes| {
            plan.copy_bodies.then(|| {
                let mut c = BodyCopy::new(tap.cfg.max_body);
                c.keep(kept(body, 0..body.len()));
                c
            })
        };
        let read = tokio::time::timeout_at(deadline, self.read_body(head.content_length)).await;
        let (body, end) = match read {
            Ok(Some(body)) => (body, RequestEnd::Complete),
            Ok(None) => {
                // The client broke its request off: an abort (dropping `pending`), and the
                // 400 hyper's path would answer, which nobody is left to read.
                tap.metrics.responses[3].fetch_add(1, Ordering::Relaxed);
                return false;
            }
            // Timed out: answered 504 below, recorded with the part that came.
            Err(_) => (self.buf.split().freeze(), RequestEnd::Open),
        };
        let ctx = Ctx {
            id,
            ts_us,
            start,
            plan,
            head: captured,
            raw_head,
            request: Arc::new(RequestState::settled(end, copy_of(&body))),
        };
        if end != RequestEnd::Complete {
            pending.settle();
            let message = format!(
                "request body not complete within {:?} (--upstream-timeout)",
                tap.cfg.upstream_timeout
            );
            let status = StatusCode::GATEWAY_TIMEOUT;
            let text = tap.failed(ctx, status, UpstreamError::Timeout, message);
            // The rest of the body would be taken for the next request: the connection ends.
            self.answer(status, text, true, head_request, shutdown)
                .await;
            return false;
        }
        head.write_upstream(&mut self.out, &tap.cfg.upstream.prefix, &self.ip, &body);
        let send = send(
            &mut self.up,
            &self.out,
            &mut self.resp_fields,
            &tap.cfg.upstream.authority,
            tap.upstream_tls(),
            head.method.is_safe(),
            head_request,
        );
        let mut sent = tokio::select! {
            biased;
            sent = tokio::time::timeout_at(deadline, send) => sent,
            // A client that leaves before the answer takes its exchange with it, as under
            // hyper: counted as an abort (dropping `pending`), nothing recorded.
            () = gone(self.client.tcp()) => {
                self.up = None;
                return false;
            }
        };
        // A proxy passes on the interim answers it did not ask for (RFC 9110 section 15.2),
        // as they come: 103 Early Hints is of use only before the final answer is ready.
        // The client on this path speaks HTTP/1.1.
        while let Ok(Ok(interim)) = &sent {
            if !interim.is_interim() {
                break;
            }
            let mut out = BytesMut::with_capacity(interim.bytes.len());
            interim.write_client(&mut out, false);
            // A client gone meanwhile is noticed below, while the final answer is awaited.
            if send_all(&mut self.client, &out).await.is_ok() {
                tap.metrics
                    .interim_forwarded
                    .fetch_add(1, Ordering::Relaxed);
            }
            let next = next_head(
                &mut self.up,
                &mut self.resp_fields,
                &tap.cfg.upstream.authority,
                head_request,
            );
            sent = tokio::select! {
                biased;
                sent = tokio::time::timeout_at(deadline, next) => sent,
                () = gone(self.client.tcp()) => {
                    self.up = None;
                    return false;
                }
            };
        }
        let resp = match sent {
            Ok(Ok(resp)) => resp,
            Ok(Err((kind, message))) => {
                pending.settle();
                let text = tap.failed(ctx, StatusCode::BAD_GATEWAY, kind, message);
                return self
                    .answer(
                        StatusCode::BAD_GATEWAY,
                        text,
                        head.close,
                        head_request,
                        shutdown,
                    )
                    .await;
            }
            Err(_) => {
                // The connection may yet answer this request: it cannot carry the next one.
                self.up = None;
                pending.settle();
                let message = format!(
                    "no response head within {:?} (--upstream-timeout)",
                    tap.cfg.upstream_timeout
                );
                let text = tap.failed(
                    ctx,
                    StatusCode::GATEWAY_TIMEOUT,
                    UpstreamError::Timeout,
                    message,
                );
                return self
                    .answer(
                        StatusCode::GATEWAY_TIMEOUT,
                        text,
                        head.close,
                        head_request,
                        shutdown,
                    )
                    .await;
            }
        };
        let close = head.close || resp.framing == Framing::UntilClose || *shutdown.borrow();
        resp.write_client(&mut self.out, close);
        let in_flight = InFlight {
            status: resp.code,
            response_headers: match (&ctx.head, lazy) {
                (Some(_), false) => Some(resp.header_list()),
                _ => None,
            },
            raw_head: lazy.then(|| Bytes::copy_from_slice(&resp.bytes)),
            pending,
            ctx,
        };
        let keep_trailers = in_flight.ctx.head.is_some();
        let copy = in_flight
            .ctx
            .plan
            .copy_bodies
            .then(|| BodyCopy::new(tap.cfg.max_body));
        let (end, copy, trailers, tail) = self.pass_body(resp.framing, copy, keep_trailers).await;
        let reusable = end == ResponseEnd::Complete
            && resp.keep_alive
            && self.up.as_ref().is_some_and(|u| u.buf.is_empty());
        match self.up.as_mut() {
            Some(u) if reusable => u.suspect = resp.framing == Framing::Empty,
            _ => self.up = None,
        }
        self.fields = head.fields;
        self.resp_fields = resp.fields;
        // Handed on before its last bytes go out, as under hyper: a client that waits for
        // one answer before it asks again finds its exchanges recorded in that order.
        in_flight.finish(end, copy, trailers);
        let written = match tail {
            Tail::Nothing => Ok(()),
            Tail::Out => send_all(&mut self.client, &self.out).await,
            Tail::Piece(b) => send_all(&mut self.client, &b).await,
        };
        written.is_ok() && end == ResponseEnd::Complete && !close
    }

    /// Passes the response body on as it arrives, following `framing` to its end, and
    /// keeps its copy; the head in `out` goes with the first bytes. The last bytes of a
    /// body that ends by its framing are left for the caller to write ([`Tail`]).
    async fn pass_body(
        &mut self,
        framing: Framing,
        mut copy: Option<BodyCopy>,
        keep_trailers: bool,
    ) -> (ResponseEnd, Option<BodyCopy>, Option<HeaderMap>, Tail) {
        let Some(up) = self.up.as_mut() else {
            return (ResponseEnd::UpstreamError, copy, None, Tail::Nothing);
        };
        let mut scan = match framing {
            Framing::Empty => Scan::Length(0),
            Framing::Length(n) => Scan::Length(n),
            Framing::Chunked => Scan::Chunked(ChunkedDecoder::new(Mode::Strict)),
            Framing::UntilClose => Scan::Close,
        };
        let mut first = true;
        let mut data = std::mem::take(&mut self.body_parts);
        loop {
            data.clear();
            let (take, done) = match scan.feed(&up.buf, &mut data) {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("tap: response body from production: {e}");
                    return (ResponseEnd::UpstreamError, copy, None, Tail::Nothing);
                }
            };
            let bytes = up.buf.split_to(take).freeze();
            if let Some(c) = &mut copy {
                for r in &data {
                    c.keep(kept(&bytes, r.clone()));
                }
            }
            if done {
                let trailers = match scan {
                    Scan::Chunked(c) if keep_trailers => trailer_map(&c),
                    _ => None,
                };
                let tail = if first {
                    self.out.extend_from_slice(&bytes);
                    Tail::Out
                } else {
                    Tail::Piece(bytes)
                };
                // A read of many small chunks needs a long list: one is not kept per
                // connection.
                if data.capacity() <= 64 {
                    self.body_parts = data;
                }
                return (ResponseEnd::Complete, copy, trailers, tail);
            }
            let written = if first {
                first = false;
                self.out.extend_from_slice(&bytes);
                send_all(&mut self.client, &self.out).await
            } else if bytes.is_empty() {
                Ok(())
            } else {
                send_all(&mut self.client, &bytes).await
            };
            if written.is_err() {
                return (ResponseEnd::ClientGone, copy, None, Tail::Nothing);
            }
            up.buf.reserve(READ_CHUNK);
            match up.stream.read_buf(&mut up.buf).await {
                Ok(n) if n > 0 => {}
                Ok(_) if matches!(scan, Scan::Close) => {
                    return (ResponseEnd::Complete, copy, None, Tail::Nothing)
                }
                _ => return (ResponseEnd::UpstreamError, copy, None, Tail::Nothing),
            }
        }
    }

    /// Answers with the tap's own plain text (502, 504); to HEAD, its head alone.
    async fn answer(
        &mut self,
        status: StatusCode,
        text: &str,
        close: bool,
        head_request: bool,
        shutdown: &watch::Receiver<bool>,
    ) -> bool {
        let close = close || *shutdown.borrow();
        self.out.clear();
        self.out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                text.len(),
                if close { "connection: close\r\n" } else { "" },
            )
            .as_bytes(),
        );
        if !head_request {
            self.out.extend_from_slice(text.as_bytes());
        }
        send_all(&mut self.client, &self.out).await.is_ok() && !close
    }
}

/// Sends the request `out` on the kept upstream connection in `up_slot` or a new one, and
/// reads the response head. A kept connection production closed meanwhile (or left bytes
/// on) is replaced; a safe request (GET, HEAD, ...) it closed on without a byte of answer
/// goes once more, on a new connection, as a kept connection's race with production's idle
/// timeout is no failure of production. Other requests are never sent twice. The slot is
/// emptied when its connection cannot carry another request.
async fn send(
    up_slot: &mut Option<Upstream>,
    out: &[u8],
    fields: &mut Vec<Field>,
    authority: &str,
    tls: Option<&TlsConnector>,
    safe: bool,
    head_request: bool,
) -> Result<RespHead, (UpstreamError, String)> {
    for attempt in 0..2 {
        // A request that may not go twice, or a connection whose last answer had no body,
        // is worth a system call to know the connection is clean.
        let kept = up_slot.take().and_then(|mut u| {
            let ask_kernel = !safe || u.suspect;
            u.open(ask_kernel).then_some(u)
        });
        let reused = kept.is_some();
        let up = match kept {
            Some(u) => up_slot.insert(u),
            None => {
                let stream = super::upstream::connect(authority, tls).await?;
                up_slot.insert(Upstream {
                    stream,
                    buf: BytesMut::with_capacity(READ_CHUNK),
                    suspect: false,
                })
            }
        };
        let retry = reused && attempt == 0;
        // Over TLS the last record may wait in the session until flushed.
        let sent = match up.stream.write_all(out).await {
            Ok(()) => up.stream.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            *up_slot = None;
            if retry {
                continue;
            }
            return Err((
                UpstreamError::Reset,
                format!("sending the request to {authority}: {e}"),
            ));
        }
        match up.read_head(fields, head_request).await {
            Ok(head) => return Ok(head),
            Err(fail) => {
                *up_slot = None;
                match fail {
                    HeadFail::Silent(_) if retry && safe => continue,
                    HeadFail::Silent(m) | HeadFail::Broken(m) => {
                        return Err((UpstreamError::Reset, format!("{authority}: {m}")))
                    }
                    HeadFail::Malformed(m) => {
                        return Err((UpstreamError::Malformed, format!("{authority}: {m}")))
                    }
                }
            }
        }
    }
    Err((
        UpstreamError::Reset,
        format!("{authority} closed the connection twice"),
    ))
}

/// Reads the head after an interim answer on the connection in `up_slot`, which carried
/// the request and heard from production: it is not sent again. The slot is emptied when the
/// connection fails.
async fn next_head(
    up_slot: &mut Option<Upstream>,
    fields: &mut Vec<Field>,
    authority: &str,
    head_request: bool,
) -> Result<RespHead, (UpstreamError, String)> {
    let Some(up) = up_slot.as_mut() else {
        return Err((
            UpstreamError::Reset,
            format!("{authority}: connection lost"),
        ));
    };
    match up.read_head(fields, head_request).await {
        Ok(head) => Ok(head),
        Err(fail) => {
            *up_slot = None;
            Err(match fail {
                HeadFail::Silent(m) | HeadFail::Broken(m) => {
                    (UpstreamError::Reset, format!("{authority}: {m}"))
                }
                HeadFail::Malformed(m) => (UpstreamError::Malformed, format!("{authority}: {m}")),
            })
        }
    }
}

/// Writes `bytes` to the client and pushes them out: over TLS the last record may wait in
/// the session's buffer until flushed (on a plain socket flushing does nothing).
async fn send_all<S: ClientStream>(client: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}

/// Whether the kernel holds nothing to read on `tcp` and no close: one system call.
fn silent(tcp: &TcpStream) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let mut probe = [0u8; 1];
        // SAFETY: `recv` on a socket this stream owns, into a live one-byte buffer; with
        // MSG_PEEK nothing is consumed, with MSG_DONTWAIT it never blocks.
        let n = unsafe {
            libc::recv(
                tcp.as_raw_fd(),
                probe.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
    #[cfg(not(unix))]
    {
        let mut probe = [0u8; 1];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut buf = tokio::io::ReadBuf::new(&mut probe);
        matches!(tcp.poll_peek(&mut cx, &mut buf), Poll::Pending)
    }
}

/// Waits until the client has closed its connection (or broken it). Bytes it sends meanwhile
/// (a pipelined request) are left for later, and then it is not gone.
async fn gone(client: &TcpStream) {
    let mut probe = [0u8; 1];
    match client.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

impl Upstream {
    /// Whether production has left the kept connection open and silent: no close and no
    /// byte (a late body after HEAD or 204, a stray answer) since its last answer.
    ///
    /// By default this asks the runtime, which is free but knows only the events it has
    /// processed: a close or bytes that arrived since its last turn go unseen (a safe
    /// request is then sent again on a new connection; stray bytes make a 502). With
    /// `ask_kernel` it peeks at the socket itself, one system call.
    ///
    /// Over TLS the runtime cannot be asked (bytes on the socket may be a record that holds
    /// nothing for the reader): the kernel is, and the session is asked for what it has
    /// already decrypted and not handed out, or a close from production.
    fn open(&mut self, ask_kernel: bool) -> bool {
        let tcp = match &mut self.stream {
            UpStream::Plain(tcp) => tcp,
            UpStream::Tls(s) => {
                let (tcp, session) = s.get_mut();
                let quiet = match session.process_new_packets() {
                    Ok(io) => io.plaintext_bytes_to_read() == 0 && !io.peer_has_closed(),
                    Err(_) => false,
                };
                return quiet && silent(tcp);
            }
        };
        if ask_kernel {
            return silent(tcp);
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match tcp.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(tcp.try_read(&mut probe),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads a response head: the final one, or an interim (1xx) one before it.
    async fn read_head(
        &mut self,
        fields: &mut Vec<Field>,
        head_request: bool,
    ) -> Result<RespHead, HeadFail> {
        let mut heard = false;
        loop {
            if !self.buf.is_empty() {
                match parse_response(&self.buf, fields, head_request) {
                    Ok(Some((mut head, n))) => {
                        if head.code == 101 {
                            return Err(HeadFail::Malformed(UNASKED_UPGRADE.into()));
                        }
                        head.bytes = self.buf.split_to(n).freeze();
                        return Ok(head);
                    }
                    Ok(None) if self.buf.len() > RESPONSE_HEAD_MAX => {
                        return Err(HeadFail::Malformed(format!(
                            "response head longer than {RESPONSE_HEAD_MAX} bytes"
                        )))
                    }
                    Ok(None) => {}
                    Err(e) => return Err(HeadFail::Malformed(e)),
                }
            }
            self.buf.reserve(READ_CHUNK);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(n) if n > 0 => heard = true,
                Ok(_) if !heard && self.buf.is_empty() => {
                    return Err(HeadFail::Silent(
                        "connection closed before a response".into(),
                    ))
                }
                Ok(_) => {
                    return Err(HeadFail::Broken(
                        "connection closed in the middle of the response head".into(),
                    ))
                }
                Err(e) if !heard => return Err(HeadFail::Silent(e.to_string())),
                Err(e) => return Err(HeadFail::Broken(e.to_string())),
            }
        }
    }
}

/// The last bytes of an answer, still to be written to the client.
enum Tail {
    Nothing,
    /// What `out` holds (the head, with the whole body when it came with it).
    Out,
    Piece(Bytes),
}

/// Where a response body ends, found as its bytes go by.
enum Scan {
    /// This many bytes are left.
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
}

impl Scan {
    /// Looks at `buf`: how many of its bytes belong to the body, whether the body ends
    /// there, and (in `data`) which ranges of them are content rather than framing.
    fn feed(&mut self, buf: &[u8], data: &mut Vec<Range<usize>>) -> Result<(usize, bool), String> {
        match self {
            Scan::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                if take > 0 {
                    data.push(0..take);
                }
                Ok((take, *left == 0))
            }
            Scan::Close => {
                if !buf.is_empty() {
                    data.push(0..buf.len());
                }
                Ok((buf.len(), false))
            }
            Scan::Chunked(c) => c.feed(buf, data).map_err(|e| e.message),
        }
    }
}

/// The trailer fields of a chunked body as a map, when it had any.
fn trailer_map(c: &ChunkedDecoder) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in c.trailer_fields() {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(head: &str) -> ReqHead {
        let mut fields = Vec::new();
        match parse_request(head.as_bytes(), &mut fields, u64::MAX) {
            Parsed::Take(mut h, n) => {
                assert_eq!(n, head.len());
                h.bytes = Bytes::copy_from_slice(head.as_bytes());
                h
            }
            Parsed::Partial => panic!("partial: {head:?}"),
            Parsed::Refer => panic!("referred to hyper: {head:?}"),
        }
    }

    fn referred(head: &str, limit: u64) -> bool {
        matches!(
            parse_request(head.as_bytes(), &mut Vec::new(), limit),
            Parsed::Refer
        )
    }

    #[test]
    fn plain_requests_are_taken_and_the_rest_left_to_hyper() {
        let h = take("GET /a/b?x=1 HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, TE\r\nTE: trailers\r\n\r\n");
        assert_eq!(
            (h.method.as_str(), h.path(), h.close),
            ("GET", "/a/b?x=1", false)
        );
        let h = take(
            "POST /o HTTP/1.1\r\nhost: shop\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
        );
        assert_eq!((h.content_length, h.close), (2, true));
        let partial = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", &mut Vec::new(), 10);
        assert!(matches!(partial, Parsed::Partial));
        for head in [
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET http://other/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-hop\r\nx-hop: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\n",
            "GET /a<b> HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a{b}|^` HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n",
            "POST /s HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc\r\n\r\n",
            "GET / HTTP/1.1\r\nHost a\r\n\r\n",
        ] {
            assert!(referred(head, u64::MAX), "{head:?}");
        }
        // Over --max-request-body: hyper's path refuses it with 413.
        assert!(referred(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
            10
        ));
    }

    #[test]
    fn the_upstream_request_loses_hop_by_hop_fields_and_gains_the_client() {
        let h = take("POST /o?q=1 HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, te\r\nKeep-Alive: 5\r\nTE: gzip, trailers\r\nX-Forwarded-For: 10.0.0.1\r\nX-Id: 7\r\nContent-Length: 2\r\n\r\n");
        let mut out = BytesMut::new();
        h.write_upstream(
            &mut out,
            "/v2",
            &HeaderValue::from_static("127.0.0.1"),
            b"{}",
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "POST /v2/o?q=1 HTTP/1.1\r\nHost: shop\r\nte: trailers\r\nX-Id: 7\r\nContent-Length: 2\r\n\
             x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n\r\n{}"
        );
        let captured = h.capture(None);
        assert_eq!(captured.uri, "/o?q=1");
        assert_eq!(
            captured.headers[0],
            ("host".to_string(), "shop".to_string())
        );
        assert_eq!(captured.headers.len(), 7);
    }

    /// The fields production gets from the tap's own path and from hyper's, for one head:
    /// both go through `FieldPolicy`, so the hop-by-hop list, the names `Connection` lists
    /// and the `te` rule are one for both.
    #[test]
    fn both_tap_paths_forward_the_same_request_fields() {
        for extra in [
            "TE: gzip, trailers\r\n",
            "te: gzip\r\nte: trailers\r\n",
            "te: gzip\r\n",
            "Connection: keep-alive, te\r\nKeep-Alive: 5\r\nTE: trailers\r\n",
            "Proxy-Connection: keep-alive\r\nX-Id: 7\r\n",
            "Connection: close\r\nTrailer: x-checksum\r\n",
        ] {
            let head = format!("GET /o HTTP/1.1\r\nHost: shop\r\n{extra}\r\n");
            let h = take(&head);
            let mut out = BytesMut::new();
            h.write_upstream(&mut out, "", &HeaderValue::from_static("127.0.0.1"), b"");
            let mut fields = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut fields);
            req.parse(&out).unwrap();
            let fast: Vec<(String, String)> = req
                .headers
                .iter()
                .filter(|f| !f.name.eq_ignore_ascii_case("x-forwarded-for"))
                .map(|f| (f.name.to_ascii_lowercase(), lossy(f.value)))
                .collect();
            let mut map = HeaderMap::new();
            for (name, value) in h.field_slices() {
                map.append(
                    HeaderName::from_bytes(name).unwrap(),
                    HeaderValue::from_bytes(value).unwrap(),
                );
            }
            super::super::hyper_path::apply_field_policy(&mut map, Direction::Request);
            let hyper: Vec<(String, String)> = map
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), lossy(v.as_bytes())))
                .collect();
            let sorted = |mut v: Vec<(String, String)>| {
                v.sort();
                v
            };
            assert_eq!(sorted(fast), sorted(hyper), "{extra:?}");
        }
    }

    fn lossy(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    fn response(head: &str, head_request: bool) -> RespHead {
        let (mut h, n) = parse_response(head.as_bytes(), &mut Vec::new(), head_request)
            .unwrap()
            .unwrap();
        assert_eq!(n, head.len());
        h.bytes = Bytes::copy_from_slice(head.as_bytes());
        h
    }

    #[test]
    fn the_response_framing_is_read_from_its_head() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                false,
                Framing::Length(12),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n",
                false,
                Framing::UntilClose,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                true,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                false,
                Framing::UntilClose,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                true,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                true,
            ),
        ];
        for (head, head_request, framing, keep_alive) in cases {
            let h = response(head, head_request);
            assert_eq!((h.framing, h.keep_alive), (framing, keep_alive), "{head:?}");
        }
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(
                parse_response(bad.as_bytes(), &mut Vec::new(), false).is_err(),
                "{bad:?}"
            );
        }
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\n", &mut Vec::new(), false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_client_gets_the_head_without_hop_by_hop_fields() {
        let h = response(
            "HTTP/1.1 200 Fine\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\nx-hop: 1\r\nTransfer-Encoding: chunked\r\nX-Id: 7\r\n\r\n",
            false,
        );
        let mut out = BytesMut::new();
        h.write_client(&mut out, true);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\nX-Id: 7\r\nconnection: close\r\n\r\n"
        );
        // What production said is what is recorded.
        assert_eq!(h.header_list().len(), 5);
        // The fields that frame the body stay, whatever Connection lists; a status line
        // without a reason phrase keeps its form; a length beside a transfer coding goes.
        for (head, want) in [
            (
                "HTTP/1.1 200\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\n",
                "HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n",
                "HTTP/1.1 200 OK\r\n\r\n",
            ),
        ] {
            response(head, false).write_client(&mut out, false);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{head:?}");
        }
    }

    /// Bytes or a close that arrived while the runtime was busy are seen when the kernel is
    /// asked.
    #[tokio::test]
    async fn a_kept_connection_with_bytes_or_a_close_on_it_is_not_reused() {
        use tokio::io::AsyncWriteExt;
        for stray in [true, false] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let stream = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (mut server, _) = l.accept().await.unwrap();
            let mut up = Upstream {
                stream: UpStream::Plain(stream),
                buf: BytesMut::new(),
                suspect: true,
            };
            assert!(up.open(true) && up.open(false));
            if stray {
                server.write_all(b"EVIL").await.unwrap();
            } else {
                drop(server);
            }
            // The kernel has it; this runtime has not turned since.
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!up.open(true), "stray bytes: {stray}");
        }
    }

    #[test]
    fn a_length_body_ends_at_its_length() {
        let mut scan = Scan::Length(5);
        let mut data = Vec::new();
        assert_eq!(scan.feed(b"abc", &mut data).unwrap(), (3, false));
        assert_eq!(scan.feed(b"deNEXT", &mut data).unwrap(), (2, true));
        assert_eq!(data, [0..3, 0..2]);
    }
}
