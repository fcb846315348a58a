//! A target: one server that replayed requests go to, with the request rewriting replay
//! needs (target authority, Host header, hop-by-hop headers, set headers), a per-request
//! deadline, and errors classified by what failed. [`Target`] sends through a pooled hyper
//! client (readiness checks, HTTP/2); [`ConnTarget`] keeps HTTP/1 connections of its own
//! ([`super::h1`]), one set per replay worker and one for the tap's shadow, so the
//! baseline's connections never queue behind the candidate's and a worker never waits on
//! another thread. An `https://` target speaks TLS on both ([`super::connect`]): HTTP/1.1
//! over a worker's own connections, or HTTP/2 through the pooled client when the server
//! chose it by ALPN.

use super::connect::{Connector, Opened, SetupCounts, SetupStats, TlsTarget};
use super::h1::{self, H1Conn, H1Error};
use crate::cli::HostHeaderMode;
use crate::compare::{FetchError, FetchErrorKind, Fetched, Observed};
use crate::error::{Error, Result};
use crate::exchange::{header, origin_form, Request, Side};
use crate::http1::headers::{Direction, FieldPolicy, Forward, TE_FORWARDED};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Uri};
use http_body_util::{BodyExt, Collected, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Request headers the client stack sets itself rather than replaying them as recorded
/// (`content-length` from the body, `host` per `--host-header`); the fields of one
/// connection go by [`FieldPolicy`].
const SET_BY_CLIENT: &[&str] = &["content-length", "host"];

/// Settings shared by every target of a run.
#[derive(Clone, Debug)]
pub struct TargetOptions {
    /// Deadline for a complete answer.
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_body: usize,
    /// Idle connections kept per target.
    pub pool_size: usize,
    /// Host header mode.
    pub host_header: HostHeaderMode,
    /// Headers set on every request (lower-case names).
    pub set_headers: Vec<(String, String)>,
    /// How an `https://` target is spoken to (ignored for the others).
    pub tls: crate::tls::TlsClientOptions,
}

/// One server replayed requests go to.
#[derive(Clone, Debug)]
pub struct Target {
    /// Which side this target plays.
    pub side: Side,
    /// The URL as given.
    pub url: String,
    /// `scheme://authority` used to build request URIs.
    origin: String,
    /// `host:port` for connecting and for the Host header.
    authority: String,
    /// Path prefix from the URL, without trailing slash.
    prefix: String,
    http2: bool,
    /// For an `https://` target.
    tls: Option<TlsTarget>,
    client: Client<Connector, Full<Bytes>>,
    /// Connections opened and their setup time, shared by every copy of this target.
    setup: Arc<SetupStats>,
    opts: TargetOptions,
}

impl Target {
    /// Builds a target for `url` (`http://`, `https://` or `h2c://`, optionally with a path
    /// prefix). The TLS files of an `https://` target are read here.
    pub fn new(side: Side, url: &str, opts: TargetOptions) -> Result<Self> {
        let (http2, tls, rest) = if let Some(r) = url.strip_prefix("h2c://") {
            (true, false, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (false, true, r)
        } else {
            return Err(Error::Target {
                side,
                url: url.into(),
                message: "expected http://, https:// or h2c://".into(),
            });
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let uri: Uri = format!("http://{authority}/")
            .parse()
            .map_err(|e| Error::Usage(format!("--{side} {url}: not a valid URL ({e})")))?;
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = if uri.port().is_some() {
            authority.to_string()
        } else {
            format!("{host}:{port}")
        };
        let tls = if tls {
            let alpn: &[&[u8]] = &[crate::tls::ALPN_H2, crate::tls::ALPN_H1];
            let connector = crate::tls::TlsConnector::new(&opts.tls, host, alpn)
                .map_err(|e| Error::Usage(format!("--{side} {url}: TLS settings: {e}")))?;
            Some(TlsTarget {
                connector,
                h2: Arc::new(AtomicBool::new(false)),
            })
        } else {
            None
        };
        let setup = Arc::new(SetupStats::default());
        let client = pooled_client(&opts, http2, tls.clone(), setup.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(Target {
            side,
            url: url.to_string(),
            origin: format!("{scheme}://{authority}"),
            authority,
            prefix: prefix.to_string(),
            http2,
            tls,
            client,
            setup,
            opts,
        })
    }

    /// The same target with a client (and so a connection pool) of its own; the TLS
    /// configuration (and its session cache) and the setup counts are shared.
    pub fn fresh(&self) -> Result<Self> {
        let mut t = self.clone();
        t.client = pooled_client(&self.opts, self.http2, self.tls.clone(), self.setup.clone());
        Ok(t)
    }

    /// Connections this target (and its copies) opened so far, and their setup time.
    pub fn setup_counts(&self) -> SetupCounts {
        self.setup.counts()
    }

    /// The TLS settings of an `https://` target; `None` for the others.
    pub fn tls_options(&self) -> Option<&crate::tls::TlsClientOptions> {
        self.tls.as_ref().map(|_| &self.opts.tls)
    }

    /// Whether requests go through the pooled client: HTTP/2 with prior knowledge, or TLS
    /// where the server chose HTTP/2.
    fn pooled(&self) -> bool {
        self.http2
            || self
                .tls
                .as_ref()
                .is_some_and(|t| t.h2.load(Ordering::Relaxed))
    }

    /// `host:port` of the target.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request for this target. `absolute` gives an absolute-form URI (what the pooled
    /// client routes by); a worker's own HTTP/1 connection takes the origin form.
    fn build(
        &self,
        req: &Request,
        path_and_query: &str,
        absolute: bool,
    ) -> Result<http::Request<Full<Bytes>>, FetchError> {
        let method = Method::from_bytes(req.method.as_bytes())
            .map_err(|_| bad(format!("method {:?} is not valid", req.method)))?;
        let origin = if absolute { self.origin.as_str() } else { "" };
        let uri = format!("{origin}{}{path_and_query}", self.prefix);
        let mut r = http::Request::builder()
            .method(method)
            .uri(&uri)
            .body(Full::new(req.body.clone()))
            .map_err(|e| bad(format!("URI {uri:?} is not valid: {e}")))?;
        let h = r.headers_mut();
        self.each_header(req, |name, value| {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("header name {name:?} is not valid")))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| bad(format!("value of header {name} is not valid")))?;
            h.append(n, v);
            Ok(())
        })?;
        Ok(r)
    }

    /// Calls `emit` with every header field the target gets, names lower-cased (see
    /// [`each_replayed_header`]), with `host` last (HTTP/1 only; over HTTP/2 the authority
    /// travels in the URI).
    fn each_header(
        &self,
        req: &Request,
        emit: impl FnMut(&str, &str) -> Result<(), FetchError>,
    ) -> Result<(), FetchError> {
        let host = match self.opts.host_header {
            HostHeaderMode::Target => Some(self.authority.as_str()),
            HostHeaderMode::Keep => header(&req.headers, "host"),
        };
        each_replayed_header(
            req,
            &self.opts.set_headers,
            host.filter(|_| !self.pooled()),
            emit,
        )
    }

    /// The header fields this target gets for `req`, in the order they are sent: what a
    /// command that sends the request by hand must send to send the same request.
    pub fn sent_headers(&self, req: &Request) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(req.headers.len() + 1);
        // The closure never fails, so neither does the walk.
        let _ = self.each_header(req, |name, value| {
            out.push((name.to_string(), value.to_string()));
            Ok(())
        });
        out
    }

    /// The URL this target gets `req` at: its origin and path prefix, then the recorded
    /// path and query.
    pub fn url_of(&self, req: &Request) -> String {
        format!("{}{}{}", self.origin, self.prefix, origin_form(&req.uri))
    }

    /// True for an `h2c://` target (HTTP/2 with prior knowledge).
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// True for an `https://` target.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The HTTP/1.1 request head for this target, as bytes, checked as [`Target::build`]
    /// checks the request it builds.
    fn head_bytes(&self, req: &Request, path_and_query: &str) -> Result<Vec<u8>, FetchError> {
        if !h1::is_token(&req.method) {
            return Err(bad(format!("method {:?} is not valid", req.method)));
        }
        let mut head = Vec::with_capacity(256 + req.headers.len() * 48);
        head.extend_from_slice(req.method.as_bytes());
        head.push(b' ');
        // A short target of plain characters is sent as it is; anything else is parsed as
        // the pooled and HTTP/2 path parses it (which also caps the length), so both sides
        // of a run accept the same targets and send the same request line (a fragment is
        // never sent).
        let plain = |s: &str| s.bytes().all(is_plain_target_byte);
        if path_and_query.starts_with('/')
            && self.prefix.len() + path_and_query.len() < 8 * 1024
            && plain(&self.prefix)
            && plain(path_and_query)
        {
            head.extend_from_slice(self.prefix.as_bytes());
            head.extend_from_slice(path_and_query.as_bytes());
        } else {
            let uri = format!("{}{}{path_and_query}", self.origin, self.prefix);
            let parsed: Uri = uri
                .parse()
                .map_err(|e| bad(format!("URI {uri:?} is not valid: {e}")))?;
            let target = parsed.path_and_query().map_or("/", |pq| pq.as_str());
            head.extend_from_slice(target.as_bytes());
        }
        head.extend_from_slice(b" HTTP/1.1\r\n");
        self.each_header(req, |name, value| {
            if !h1::is_token(name) {
                return Err(bad(format!("header name {name:?} is not valid")));
            }
            if !h1::is_field_value(value) {
                return Err(bad(format!("value of header {name} is not valid")));
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
            Ok(())
        })?;
        // A length for any body, and an explicit zero where the method defines a meaning for
        // content (RFC 9110 section 8.6), so a server never waits for a body that is not coming.
        let len = req.body.len();
        if len > 0 || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
            head.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        Ok(head)
    }

    /// Sends `req` and reads the whole answer. Latency counts from `started` (the scheduled
    /// start), so time spent waiting for a free slot is not hidden.
    pub async fn send(&self, req: &Request, started: Instant) -> Fetched {
        let pq = origin_form(&req.uri);
        self.send_path(req, &pq, started).await
    }

    async fn send_path(&self, req: &Request, pq: &str, started: Instant) -> Fetched {
        let request = self.build(req, pq, true)?;
        let work = async {
            let resp = self
                .client
                .request(request)
                .await
                .map_err(classify_client_error)?;
            let (parts, body) = resp.into_parts();
            let collected = collect(body, self.opts.max_body).await?;
            Ok(observed(parts, collected, started))
        };
        self.within_deadline(work).await
    }

    async fn within_deadline(&self, work: impl Future<Output = Fetched>) -> Fetched {
        match tokio::time::timeout(self.opts.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError {
                kind: FetchErrorKind::Timeout,
                message: format!("no complete answer within {:?}", self.opts.timeout),
            }),
        }
    }

    /// Checks that a TCP connection can be made, and for an `https://` target that the TLS
    /// handshake succeeds (preflight); a handshake failure is named by its reason.
    pub async fn preflight(&self) -> Result<()> {
        if let Some(tls) = &self.tls {
            let check = tls.check(&self.authority, Duration::from_millis(200));
            return match tokio::time::timeout(Duration::from_secs(5), check).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(Error::Target {
                    side: self.side,
                    url: self.url.clone(),
                    message: e.message,
                }),
                Err(_) => Err(Error::Target {
                    side: self.side,
                    url: self.url.clone(),
                    message: format!(
                        "connecting to {} and the TLS handshake did not finish within 5s",
                        self.authority
                    ),
                }),
            };
        }
        let connect = tokio::net::TcpStream::connect(&self.authority);
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::Target {
                side: self.side,
                url: self.url.clone(),
                message: format!("cannot connect to {}: {e}", self.authority),
            }),
            Err(_) => Err(Error::Target {
                side: self.side,
                url: self.url.clone(),
                message: format!("connecting to {} timed out after 5s", self.authority),
            }),
        }
    }

    /// Polls `GET path` until it answers 2xx; returns how long that took.
    pub async fn wait_ready(&self, path: &str, deadline: Duration) -> Result<Duration> {
        let start = Instant::now();
        let probe = Request {
            method: "GET".into(),
            uri: path.into(),
            version: "HTTP/1.1".into(),
            ..Default::default()
        };
        loop {
            // One poll never runs past the deadline: a hung target must not stretch a short
            // `--ready-timeout` to the whole `--timeout`.
            let left = deadline
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(50));
            let poll = self.send_path(&probe, path, Instant::now());
            let last = match tokio::time::timeout(left, poll).await {
                Ok(Ok(o)) if (200..300).contains(&o.status) => return Ok(start.elapsed()),
                Ok(Ok(o)) => format!("status {}", o.status),
                // A server that refuses the handshake is up: waiting will not change its
                // certificate.
                Ok(Err(e)) if e.kind == FetchErrorKind::Tls => {
                    return Err(Error::Target {
                        side: self.side,
                        url: self.url.clone(),
                        message: e.message,
                    })
                }
                Ok(Err(e)) => e.message,
                Err(_) => format!(
                    "no complete answer within {}",
                    humantime::format_duration(left)
                ),
            };
            if start.elapsed() >= deadline {
                return Err(Error::Target {
                    side: self.side,
                    url: self.url.clone(),
                    message: format!(
                        "not ready: GET {path} did not answer 2xx within {} (last: {last})",
                        humantime::format_duration(deadline)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A whole answer body, at most `max_body` bytes.
async fn collect(body: Incoming, max_body: usize) -> Result<Collected<Bytes>, FetchError> {
    Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| classify_body_error(e, max_body))
}

fn observed(
    parts: http::response::Parts,
    collected: Collected<Bytes>,
    started: Instant,
) -> Observed {
    let trailers = collected.trailers().map(header_list).unwrap_or_default();
    Observed {
        status: parts.status.as_u16(),
        headers: header_list(&parts.headers),
        trailers,
        body: collected.to_bytes(),
        latency_us: started.elapsed().as_micros() as u64,
    }
}

/// A target with HTTP/1 connections of its own ([`h1::H1Conn`]): each replay worker has its
/// own (on its single-threaded runtime, so an answer never crosses threads), and so has the
/// tap's live shadow. Over HTTP/2 it uses the target's multiplexing client.
#[derive(Debug)]
pub struct ConnTarget {
    target: Target,
    /// Connections free for the next request, most recently used last. A replay worker's
    /// lock is taken by that worker alone; the shadow's by its tasks, for a push or a pop.
    idle: Mutex<Vec<H1Conn>>,
}

impl ConnTarget {
    /// `target` with connections of its own, none opened yet.
    pub fn new(target: Target) -> Self {
        ConnTarget {
            target,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` and reads the whole answer, as [`Target::send`] does.
    pub async fn send(&self, req: &Request, started: Instant) -> Fetched {
        self.send_counted(req, started).await.0
    }

    /// Sends `req` as [`ConnTarget::send`] does, and says whether it went a second time: a
    /// kept-alive connection the server closed before any byte of an answer came back is
    /// replaced and the request sent again (see `send_http1`). That is right, but a server
    /// that does it often should be seen, so replay counts it.
    pub async fn send_counted(&self, req: &Request, started: Instant) -> (Fetched, bool) {
        let t = &self.target;
        if t.pooled() {
            // Boxed: the pooled client's future is large, and would otherwise be carried
            // in every HTTP/1 exchange's state.
            return (Box::pin(t.send(req, started)).await, false);
        }
        let head = match t.head_bytes(req, &origin_form(&req.uri)) {
            Ok(h) => h,
            Err(e) => return (Err(e), false),
        };
        let mut resent = false;
        // Boxed: the exchange's state is a few KB, and the per-exchange future that holds
        // two of them is moved into the worker's set of futures; a pointer moves cheaper.
        let fetched = t
            .within_deadline(Box::pin(self.send_http1(req, head, started, &mut resent)))
            .await;
        (fetched, resent)
    }

    async fn send_http1(
        &self,
        req: &Request,
        head: Vec<u8>,
        started: Instant,
        resent: &mut bool,
    ) -> Fetched {
        let head_request = req.method == "HEAD";
        let max_body = self.target.opts.max_body;
        let (mut conn, reused, mut setup) = match self.checkout() {
            Some(c) => (c, true, Duration::ZERO),
            None => match self.connect().await? {
                Some((c, took)) => (c, false, took),
                // The server chose HTTP/2.
                None => return Box::pin(self.target.send(req, started)).await,
            },
        };
        let answer = match conn
            .exchange(&head, &req.body, head_request, max_body)
            .await
        {
            // A kept-alive connection the server closed just as the request went out: the
            // request goes once more on a new connection if the server cannot have acted
            // on it (it was not all written) or acting twice is harmless (idempotent).
            Err(H1Error::Io {
                nothing_received: true,
                unsent,
                ..
            }) if reused && (unsent || idempotent(&req.method)) => {
                *resent = true;
                let Some((c, took)) = self.connect().await? else {
                    return Box::pin(self.target.send(req, started)).await;
                };
                conn = c;
                setup = took;
                conn.exchange(&head, &req.body, head_request, max_body)
                    .await
            }
            other => other,
        }
        .map_err(fetch_error)?;
        if answer.reusable {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < self.target.opts.pool_size {
                    idle.push(conn);
                }
            }
        }
        Ok(Observed {
            status: answer.status,
            headers: answer.headers,
            trailers: answer.trailers,
            body: answer.body,
            // The setup of a connection opened for this request is counted apart.
            latency_us: started.elapsed().saturating_sub(setup).as_micros() as u64,
        })
    }

    /// A kept connection the server has not closed meanwhile.
    fn checkout(&self) -> Option<H1Conn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(mut c) = idle.pop() {
            if !c.is_stale() {
                return Some(c);
            }
        }
        None
    }

    /// A new connection and how long its setup took; `None` when the server chose HTTP/2
    /// in the TLS handshake (the request then goes through the pooled client).
    async fn connect(&self) -> Result<Option<(H1Conn, Duration)>, FetchError> {
        let t = &self.target;
        let authority = &t.authority;
        let start = Instant::now();
        let opened = match &t.tls {
            Some(tls) => match tls.open_h1(authority).await? {
                Opened::H1(c, took) => (c, took),
                Opened::H2 => return Ok(None),
            },
            None => {
                let c = H1Conn::connect(authority).await.map_err(|e| FetchError {
                    kind: FetchErrorKind::Connect,
                    message: format!("cannot connect to {authority}: {e}"),
                })?;
                (c, start.elapsed())
            }
        };
        t.setup.record(opened.1);
        Ok(Some(opened))
    }
}

/// Bytes every URI parser takes as they are in a path or query (RFC 3986 unreserved,
/// sub-delims, `:@/?%`), so a target made only of them needs no parse.
fn is_plain_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'%'
        )
}

/// A request the target cannot be sent, as the outcome says it.
fn bad(message: String) -> FetchError {
    FetchError {
        kind: FetchErrorKind::BadRequest,
        message,
    }
}

/// Methods whose repetition has the effect of one request (RFC 9110 section 9.2.2).
fn idempotent(method: &str) -> bool {
    Method::from_bytes(method.as_bytes()).is_ok_and(|m| m.is_idempotent())
}

fn fetch_error(e: H1Error) -> FetchError {
    match e {
        H1Error::Io { message, .. } => FetchError {
            kind: FetchErrorKind::Reset,
            message,
        },
        H1Error::Malformed(message) => FetchError {
            kind: FetchErrorKind::Malformed,
            message,
        },
        H1Error::TooLarge(message) => FetchError {
            kind: FetchErrorKind::TooLarge,
            message,
        },
        H1Error::Tls(reason, detail) => FetchError {
            kind: FetchErrorKind::Tls,
            message: format!("TLS: {reason} ({detail})"),
        },
    }
}

/// Calls `emit` with every header field a replayed request carries, names lower-cased: the
/// recorded ones but hop-by-hop fields and those `set` replaces, then the `set` ones, then
/// `host` when given and sendable. Replay and the commands that re-send a request by hand
/// both go through here, so the two send the same fields.
pub fn each_replayed_header(
    req: &Request,
    set: &[(String, String)],
    host: Option<&str>,
    mut emit: impl FnMut(&str, &str) -> Result<(), FetchError>,
) -> Result<(), FetchError> {
    let fields = || {
        req.headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    };
    let policy = FieldPolicy::new(Direction::Request, fields);
    let mut te_sent = false;
    for (k, v) in &req.headers {
        let lk: Cow<str> = if k.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(k.to_ascii_lowercase())
        } else {
            Cow::Borrowed(k)
        };
        if k.starts_with(':') || SET_BY_CLIENT.contains(&lk.as_ref()) {
            continue;
        }
        if set.iter().any(|(n, _)| *n == lk) {
            continue;
        }
        match policy.field(lk.as_bytes()) {
            Forward::Keep => emit(&lk, v)?,
            Forward::Drop => {}
            Forward::Trailers if !te_sent => {
                te_sent = true;
                emit(&lk, TE_FORWARDED)?;
            }
            Forward::Trailers => {}
        }
    }
    for (i, (k, v)) in set.iter().enumerate() {
        // Set twice: the last one wins. (Values were checked when the flag was read.)
        if set[i + 1..].iter().any(|(n, _)| n == k) || !h1::is_field_value(v) {
            continue;
        }
        emit(k, v)?;
    }
    // A recorded host that cannot be sent is left out, and the client's default used.
    if let Some(host) = host {
        if !set.iter().any(|(n, _)| n == "host") && h1::is_field_value(host) {
            emit("host", host)?;
        }
    }
    Ok(())
}

/// The pooled client of a target: HTTP/2 only for `h2c://`; over TLS, HTTP/2 when ALPN
/// agrees on it.
fn pooled_client(
    opts: &TargetOptions,
    http2: bool,
    tls: Option<TlsTarget>,
    stats: Arc<SetupStats>,
) -> Client<Connector, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(opts.timeout));
    // The URI says https; the TLS is ours, after the TCP connection.
    http.enforce_http(false);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_max_idle_per_host(opts.pool_size)
        .pool_idle_timeout(Duration::from_secs(30))
        .http2_only(http2)
        .set_host(false);
    builder.build(Connector { http, tls, stats })
}

fn header_list(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn classify_client_error(e: hyper_util::client::legacy::Error) -> FetchError {
    let (failure, message) = crate::failure::of_client_error(&e);
    FetchError {
        kind: failure.into(),
        message,
    }
}

fn classify_body_error(e: Box<dyn std::error::Error + Send + Sync>, limit: usize) -> FetchError {
    if e.is::<http_body_util::LengthLimitError>() {
        return FetchError {
            kind: FetchErrorKind::TooLarge,
            message: format!("body larger than {limit} bytes (--max-body)"),
        };
    }
    let (failure, message) = crate::failure::of_error(e.as_ref());
    FetchError {
        kind: failure.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> TargetOptions {
        TargetOptions {
            timeout: Duration::from_secs(1),
            max_body: 1024,
            pool_size: 1,
            host_header: HostHeaderMode::Target,
            set_headers: vec![("authorization".into(), "Bearer real".into())],
            tls: Default::default(),
        }
    }

    #[tokio::test]
    async fn requests_are_rewritten_for_the_target() {
        let t = Target::new(Side::Baseline, "http://127.0.0.1:9/prefix/", opts()).unwrap();
        let req = Request {
            method: "GET".into(),
            uri: "/a?x=1".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), "prod.example".into()),
                ("Connection".into(), "keep-alive".into()),
                ("Authorization".into(), "redacted:0123".into()),
                ("X-A".into(), "1".into()),
                ("X-A".into(), "2".into()),
            ],
            ..Default::default()
        };
        let r = t.build(&req, "/a?x=1", true).unwrap();
        assert_eq!(r.uri(), "http://127.0.0.1:9/prefix/a?x=1");
        assert_eq!(r.headers()["host"], "127.0.0.1:9");
        assert!(r.headers().get("connection").is_none());
        assert_eq!(r.headers()["authorization"], "Bearer real");
        let xa: Vec<_> = r.headers().get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        let mut keep = opts();
        keep.host_header = HostHeaderMode::Keep;
        let t = Target::new(Side::Baseline, "http://127.0.0.1:9", keep).unwrap();
        assert_eq!(
            t.build(&req, "/a", true).unwrap().headers()["host"],
            "prod.example"
        );
        assert_eq!(t.authority(), "127.0.0.1:9");
    }

    #[tokio::test]
    async fn the_http1_head_accepts_and_sends_what_the_pooled_path_does() {
        let t = Target::new(Side::Baseline, "http://127.0.0.1:9/p", opts()).unwrap();
        for uri in [
            "/a?x=1",
            "/a#frag",
            "/caf\u{e9}",
            "/a b",
            "/a<b>",
            "*",
            "//double",
            "/a;b=c,d/(e)*~!$&'+:@%20?q=1&r=%zz",
            "/a/{id}",
            "/\"q\"",
            "/a?b=c|d",
            &format!("/{}", "a".repeat(70_000)),
        ] {
            let req = Request {
                method: "GET".into(),
                uri: uri.into(),
                ..Default::default()
            };
            let pq = origin_form(uri);
            let built = t.build(&req, &pq, true);
            let head = t.head_bytes(&req, &pq);
            assert_eq!(built.is_ok(), head.is_ok(), "{uri}: {head:?}");
            if let (Ok(b), Ok(h)) = (built, head) {
                let line = String::from_utf8(h).unwrap();
                let target = line.split(' ').nth(1).unwrap().to_string();
                assert_eq!(target, b.uri().path_and_query().unwrap().as_str(), "{uri}");
            }
        }
        let req = Request {
            method: "POST".into(),
            uri: "/a".into(),
            headers: vec![
                ("Host".into(), "prod".into()),
                ("Content-Length".into(), "99".into()),
                ("Authorization".into(), "redacted:0123".into()),
                ("X-Evil".into(), "a\r\nInjected: 1".into()),
            ],
            ..Default::default()
        };
        let e = t.head_bytes(&req, "/a").unwrap_err();
        assert_eq!(e.kind, FetchErrorKind::BadRequest);
        let mut req = req;
        req.headers.pop();
        let head = String::from_utf8(t.head_bytes(&req, "/a").unwrap()).unwrap();
        assert_eq!(
            head,
            "POST /p/a HTTP/1.1\r\nauthorization: Bearer real\r\nhost: 127.0.0.1:9\r\n\
             content-length: 0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn connect_failures_are_classified() {
        // A port that was just free: nothing listens there.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let t = Target::new(Side::Candidate, &format!("http://127.0.0.1:{port}"), opts()).unwrap();
        let req = Request {
            method: "GET".into(),
            uri: "/".into(),
            ..Default::default()
        };
        let e = t.send(&req, Instant::now()).await.unwrap_err();
        assert_eq!(e.kind, FetchErrorKind::Connect, "{e:?}");
        let e = t.preflight().await.unwrap_err();
        assert!(e.to_string().starts_with("candidate target"), "{e}");
        assert_eq!(e.exit_code(), 3);
    }

    #[tokio::test]
    async fn a_request_sent_again_on_a_new_connection_is_told() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Every connection answers its first request and closes on the second unanswered.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    let _ = s.write_all(answer).await;
                    // The next request is read, then the connection closed unanswered.
                    let _ = s.read(&mut buf).await;
                });
            }
        });
        let mut o = opts();
        o.pool_size = 4;
        let t = ConnTarget::new(Target::new(Side::Candidate, &url, o).unwrap());
        let req = Request {
            method: "GET".into(),
            uri: "/".into(),
            ..Default::default()
        };
        let (first, again) = t.send_counted(&req, Instant::now()).await;
        assert_eq!((first.unwrap().status, again), (200, false));
        let (second, again) = t.send_counted(&req, Instant::now()).await;
        assert_eq!((second.unwrap().status, again), (200, true));
    }
}
