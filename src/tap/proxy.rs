//! The reverse proxy's requests: forwards every request to the one upstream, streams both
//! bodies through tee wrappers, and hands each finished exchange to the recorder and the
//! shadow without waiting for either. Connections are accepted in [`super::accept`]; a
//! connection's plain HTTP/1.1 requests are served by [`super::h1_conn`], the rest by
//! hyper's server, which calls [`Tap::handle`] here. The stages of one request are listed in
//! order in the module docs of [`crate::tap`]; this file implements them in the same order
//! in [`Tap::handle`] and [`InFlight::finish`], and shares deciding (`Tap::plan`), the
//! answers to production's failures and the hand-on with [`super::h1_conn`].

use super::config::TapConfig;

use super::heads::{RawHeads, SpareHeaders};
use super::metrics::{Metrics, Refusal};
use super::recorder::{Captured, RecorderHandle};
use super::sample::Sampler;
use super::shadow::{Production, Shadow};
use super::tee::{
    BodyCopy, Finish, RequestEnd, RequestState, RequestTee, ResponseEnd, ResponseTee,
};
use super::upstream::UpstreamError;
use super::upstream::{ConnUpstream, PoolConnector};
use crate::compare::{FetchError, FetchErrorKind, Observed};
use crate::exchange::{
    Exchange, Headers, Request as CapturedRequest, Response as CapturedResponse, Tls,
};
use crate::http1::headers::{is_hop_by_hop, Direction, FieldPolicy, Forward, TE_FORWARDED};
use crate::interface::{interface_of, InterfaceKey};
use crate::recording::format::now_us;
use crate::tls::TlsConnector;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Salt of the recording sample.
const RECORD_SALT: u64 = 0;

/// Why production's `101 Switching Protocols` is answered 502 on every path: the tap never
/// forwards an `Upgrade`, so no request through it asked for one.
pub(super) const UNASKED_UPGRADE: &str =
    "101 Switching Protocols to a request that asked for no upgrade";

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The tap's shared state: configuration, clients, counters, recorder and shadow handles.
#[derive(Debug)]
pub struct Tap {
    pub(super) cfg: TapConfig,
    /// Proxy counters.
    pub metrics: Arc<Metrics>,
    /// The recorder's queue.
    pub recorder: RecorderHandle,
    /// The live shadow, when `--shadow` is set.
    pub shadow: Option<Arc<Shadow>>,
    sampler: Sampler,
    h1: Client<PoolConnector, RequestTee>,
    h2: Client<PoolConnector, RequestTee>,
    /// TLS to an `https://` upstream, offering HTTP/1.1 (each client connection's own
    /// upstream connections speak it).
    upstream_tls: Option<TlsConnector>,
    authority: Authority,
    /// Authorities (lower case) an absolute-form request target may name.
    own: Vec<String>,
    id_prefix: String,
    seq: AtomicU64,
}

/// What is done with one exchange, decided when its request arrives.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    /// Hand it to the recorder (which makes the final sampling call).
    pub(super) record: bool,
    /// The recording sample picked it.
    pub(super) sampled: bool,
    /// The shadow sample picked it.
    pub(super) shadow: bool,
    /// Bodies are copied (recorded, or shadowed with a method that may be shadowed).
    pub(super) copy_bodies: bool,
    /// The request had no body at all.
    pub(super) request_empty: bool,
}

/// One exchange between its request and the end of its response.
#[derive(Debug)]
pub(super) struct Ctx {
    pub(super) id: String,
    pub(super) ts_us: i64,
    pub(super) start: Instant,
    pub(super) plan: Plan,
    /// The request head as the client sent it, when the exchange may be kept.
    pub(super) head: Option<CapturedRequest>,
    /// That head's bytes, when `head` is still to be filled from them (by the recorder).
    pub(super) raw_head: Option<Bytes>,
    pub(super) request: Arc<RequestState>,
}

impl Tap {
    /// Builds the tap. `listen` is the bound address (absolute-form targets naming it are
    /// accepted).
    pub fn new(
        cfg: TapConfig,
        listen: SocketAddr,
        metrics: Arc<Metrics>,
        recorder: RecorderHandle,
        shadow: Option<Arc<Shadow>>,
    ) -> Result<Self, String> {
        let authority: Authority = cfg
            .upstream
            .authority
            .parse()
            .map_err(|e| format!("--upstream {}: {e}", cfg.upstream.url))?;
        let mut own = vec![
            cfg.upstream.authority.to_ascii_lowercase(),
            listen.to_string(),
            format!("localhost:{}", listen.port()),
        ];
        if let Some(h) = cfg.upstream.authority.strip_suffix(":80") {
            own.push(h.to_ascii_lowercase());
        }
        let connector = |alpn: &[u8]| -> Result<Option<TlsConnector>, String> {
            if !cfg.upstream.tls {
                return Ok(None);
            }
            let host = cfg.upstream.host();
            TlsConnector::new(&cfg.upstream_tls, host, &[alpn])
                .map(Some)
                .map_err(|e| format!("--upstream {}: {e}", cfg.upstream.url))
        };
        let upstream_tls = connector(crate::tls::ALPN_H1)?;
        let h1 = client(upstream_tls.clone(), false);
        let h2 = client(connector(crate::tls::ALPN_H2)?, true);
        Ok(Tap {
            sampler: Sampler::new(cfg.sample, RECORD_SALT),
            h1,
            h2,
            upstream_tls,
            authority,
            own,
            id_prefix: format!("{:08x}", rand::random::<u32>()),
            seq: AtomicU64::new(0),
            cfg,
            metrics,
            recorder,
            shadow,
        })
    }

    /// TLS to the upstream for its HTTP/1.1 connections, when it is `https://`.
    pub(super) fn upstream_tls(&self) -> Option<&TlsConnector> {
        self.upstream_tls.as_ref()
    }

    pub(super) fn next_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        use std::fmt::Write;
        // Sized for any sequence number at once, not grown while it is written.
        let mut id = String::with_capacity(self.id_prefix.len() + 21);
        let _ = write!(id, "{}-{n}", self.id_prefix);
        id
    }

    fn is_own(&self, a: &Authority) -> bool {
        let s = a.as_str().to_ascii_lowercase();
        self.own.contains(&s)
    }

    /// The interface of a request from its head alone, when the key allows it (a JSON
    /// pointer needs the body: then `None`).
    fn head_interface(&self, parts: &http::request::Parts) -> Option<String> {
        head_interface(
            &self.cfg.interface_key,
            parts.method.as_str(),
            parts.uri.path(),
            |name| parts.headers.get(name).map(|v| v.as_bytes()),
        )
    }

    /// Proxies one request. Never fails: every problem becomes the answer a proxy gives.
    /// `peer` is the client's address as an `x-forwarded-for` value.
    /// `up` holds the client connection's own upstream connections (HTTP/1 clients);
    /// `tls` what the client's TLS session agreed on, when the tap terminated one.
    pub async fn handle(
        self: Arc<Self>,
        peer: HeaderValue,
        up: Arc<ConnUpstream>,
        tls: Option<Tls>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        // 1. Refuse what would make this an open proxy, and what is too large to forward.
        if req.method() == Method::CONNECT {
            self.metrics.refuse(Refusal::Connect);
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is not supported: this is a reverse proxy for one upstream\n",
            );
        }
        // RFC 9110 section 4.2.4: a recipient should treat userinfo in an http URI as an
        // error. Forwarded, it would reach production; recorded, its password would be kept.
        if has_userinfo(&req) {
            self.metrics.refuse(Refusal::Userinfo);
            return plain(
                StatusCode::BAD_REQUEST,
                "credentials (user:password@) in the request target or Host are not accepted\n",
            );
        }
        if req.version() < Version::HTTP_2 {
            if let Some(a) = req.uri().authority() {
                if !self.is_own(a) {
                    self.metrics.refuse(Refusal::ForeignHost);
                    return plain(
                        StatusCode::MISDIRECTED_REQUEST,
                        "this proxy forwards only to its configured upstream\n",
                    );
                }
            }
        }
        if let Some(limit) = self.cfg.max_request_body {
            if content_length(req.headers()).is_some_and(|n| n > limit) {
                self.metrics.refuse(Refusal::TooLarge);
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
            }
        }
        let mut pending = Pending::start(self.clone());

        // 2. Name the exchange and decide what happens to it, from the head alone.
        let id = self.next_id();
        let ts_us = now_us();
        let h2_client = req.version() >= Version::HTTP_2;
        let head_request = req.method() == Method::HEAD;
        let (mut parts, body) = req.into_parts();
        let plan = self.plan(&id, &parts.method, body.is_end_stream(), || {
            self.head_interface(&parts)
        });
        // 3. Keep the request head as the client sent it, before anything is rewritten.
        let head = (plan.record || plan.shadow).then(|| capture_head(&parts, tls));

        // 4. Rewrite for the upstream and forward, the body streaming through the tee.
        let state = Arc::new(RequestState::default());
        let tee = RequestTee::new(
            body,
            plan.copy_bodies.then(|| BodyCopy::new(self.cfg.max_body)),
            self.cfg.max_request_body,
            state.clone(),
        );
        let use_h2 = self.cfg.upstream.http2 || is_grpc(&parts.headers);
        if let Err(msg) = self.prepare_upstream(&mut parts, &peer, use_h2) {
            pending.settle();
            self.metrics.refuse(Refusal::BadRequest);
            tracing::debug!("tap: refused {id}: {msg}");
            return plain(StatusCode::BAD_REQUEST, "bad request\n");
        }
        // An HTTP/1 client's requests come one at a time: they go on its own upstream
        // connection. HTTP/2 clients and gRPC share the pooled clients.
        let own_connection = !use_h2 && parts.version < Version::HTTP_2 && !h2_client;
        let mut upstream_req = Request::from_parts(parts, tee);
        // hyper's server sends no interim answer but its own `100 Continue`, and an HTTP/1.0
        // client may not get one at all: production's are dropped here, and counted.
        let metrics = self.metrics.clone();
        hyper::ext::on_informational(&mut upstream_req, move |_| {
            metrics.interim_dropped.fetch_add(1, Ordering::Relaxed);
        });
        let send = async {
            if own_connection {
                // The upstream connection is ours alone: the request line takes the origin form.
                let mut uri = http::uri::Parts::default();
                uri.path_and_query = upstream_req.uri().path_and_query().cloned();
                *upstream_req.uri_mut() =
                    Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
                up.send(upstream_req).await
            } else {
                let client = if use_h2 { &self.h2 } else { &self.h1 };
                client.request(upstream_req).await.map_err(|e| classify(&e))
            }
        };
        let sent = tokio::time::timeout(self.cfg.upstream_timeout, send).await;
        let ctx = Ctx {
            id,
            ts_us,
            start,
            plan,
            head,
            raw_head: None,
            request: state,
        };

        // 5. Pass the answer on, or answer as a proxy does when production failed.
        let resp = match sent {
            // The tap forwards no upgrade: this answer switches to a protocol nobody asked
            // for, and HTTP/2 has no such status at all.
            Ok(Ok(resp)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                pending.settle();
                return self.fail(
                    ctx,
                    StatusCode::BAD_GATEWAY,
                    UpstreamError::Malformed,
                    UNASKED_UPGRADE.into(),
                );
            }
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                match ctx.request.end() {
                    RequestEnd::TooLarge => {
                        pending.settle();
                        self.metrics.refuse(Refusal::TooLarge);
                        return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
                    }
                    RequestEnd::ClientError => {
                        // The client broke its own request off: an abort, whether or not
                        // it is still there to read the answer.
                        drop(pending);
                        self.metrics.responses[3].fetch_add(1, Ordering::Relaxed);
                        return plain(StatusCode::BAD_REQUEST, "request body broken off\n");
                    }
                    RequestEnd::Open | RequestEnd::Complete => {}
                }
                let (kind, message) = e;
                pending.settle();
                return self.fail(ctx, StatusCode::BAD_GATEWAY, kind, message);
            }
            Err(_) => {
                let message = format!(
                    "no response head within {:?} (--upstream-timeout)",
                    self.cfg.upstream_timeout
                );
                pending.settle();
                return self.fail(
                    ctx,
                    StatusCode::GATEWAY_TIMEOUT,
                    UpstreamError::Timeout,
                    message,
                );
            }
        };
        let (mut rparts, rbody) = resp.into_parts();
        let response_headers = ctx.head.as_ref().map(|_| header_list(&rparts.headers));
        // hyper's client reads a body framed by a transfer coding by that coding, and leaves
        // a length beside it in the head: passed on, that length would tell the client
        // another end (RFC 9112 section 6.3). 204 and 304 have no body to measure. The
        // tap's own path leaves the length out in the same cases.
        let coded = rparts.headers.contains_key(header::TRANSFER_ENCODING);
        if (coded && !head_request)
            || rparts.status == StatusCode::NO_CONTENT
            || rparts.status == StatusCode::NOT_MODIFIED
        {
            rparts.headers.remove(header::CONTENT_LENGTH);
        }
        apply_field_policy(&mut rparts.headers, Direction::Response);
        // hyper writes the client's own protocol; the upstream's version means nothing here.
        rparts.version = Version::HTTP_11;
        let copy = plan.copy_bodies.then(|| BodyCopy::new(self.cfg.max_body));
        let keep_trailers = ctx.head.is_some();
        let in_flight = InFlight {
            status: rparts.status.as_u16(),
            response_headers,
            raw_head: None,
            pending,
            ctx,
        };
        Response::from_parts(
            rparts,
            ProxyBody::Stream(ResponseTee::new(rbody, copy, keep_trailers, in_flight)),
        )
    }

    /// Decides what happens to exchange `id` from its request head: `interface` names its
    /// interface when it can be told from the head, and is asked only when the per-file
    /// minimum needs it.
    pub(super) fn plan(
        &self,
        id: &str,
        method: &Method,
        request_empty: bool,
        interface: impl FnOnce() -> Option<String>,
    ) -> Plan {
        let sampled = self.sampler.picks(id);
        let record = sampled
            || (self.cfg.min_per_interface > 0
                && interface().is_none_or(|i| self.recorder.needs(&i)));
        let shadow = self.shadow.as_ref().is_some_and(|s| s.picks(id));
        let shadow_body = shadow && self.shadow.as_ref().is_some_and(|s| s.may_send(method));
        Plan {
            record,
            sampled,
            shadow,
            copy_bodies: record || shadow_body,
            request_empty,
        }
    }

    /// Rewrites a client request into the upstream request.
    fn prepare_upstream(
        &self,
        parts: &mut http::request::Parts,
        peer: &HeaderValue,
        h2: bool,
    ) -> Result<(), String> {
        let h = &mut parts.headers;
        // Answered by the tap itself: hyper sends `100 Continue` when the body is first read.
        h.remove(header::EXPECT);
        apply_field_policy(h, Direction::Request);
        if h2 {
            // HTTP/2 carries the authority in the request line; a Host header would repeat it.
            h.remove(header::HOST);
        } else if !h.contains_key(header::HOST) {
            // An HTTP/2 client named the host in :authority; HTTP/1.1 needs it as Host.
            let host = parts
                .uri
                .authority()
                .map(|a| a.as_str())
                .unwrap_or(self.authority.as_str());
            let v = HeaderValue::from_str(host).map_err(|e| format!("host {host:?}: {e}"))?;
            h.insert(header::HOST, v);
        }
        match h.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) => {
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "{prev}, {}",
                    String::from_utf8_lossy(peer.as_bytes())
                )) {
                    h.insert(X_FORWARDED_FOR, v);
                }
            }
            None => {
                h.insert(X_FORWARDED_FOR, peer.clone());
            }
        }
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let pq = if self.cfg.upstream.prefix.is_empty() {
            pq
        } else {
            format!("{}{}", self.cfg.upstream.prefix, pq)
                .parse()
                .map_err(|e| format!("path: {e}"))?
        };
        let mut up = http::uri::Parts::default();
        up.scheme = Some(if self.cfg.upstream.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        });
        up.authority = Some(self.authority.clone());
        up.path_and_query = Some(pq);
        parts.uri = Uri::from_parts(up).map_err(|e| format!("uri: {e}"))?;
        parts.version = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        Ok(())
    }

    /// Answers a production failure with 502/504, counted and recorded as such.
    fn fail(
        self: &Arc<Self>,
        ctx: Ctx,
        status: StatusCode,
        kind: UpstreamError,
        message: String,
    ) -> Response<ProxyBody> {
        plain(status, self.failed(ctx, status, kind, message))
    }

    /// Counts and records a production failure answered with `status` (502 or 504), and
    /// returns the text of that answer.
    pub(super) fn failed(
        &self,
        ctx: Ctx,
        status: StatusCode,
        kind: UpstreamError,
        message: String,
    ) -> &'static str {
        self.metrics.upstream_error(kind);
        let text: &'static str = if status == StatusCode::GATEWAY_TIMEOUT {
            "gateway timeout\n"
        } else {
            "bad gateway\n"
        };
        let latency_us = ctx.start.elapsed().as_micros() as u64;
        self.answered(&ctx.plan, status.as_u16(), latency_us);
        tracing::debug!("tap: {} {}: {message}", ctx.id, kind.name());
        if ctx.head.is_some() {
            let response = CapturedResponse {
                status: status.as_u16(),
                headers: vec![(
                    "content-type".to_string(),
                    "text/plain; charset=utf-8".to_string(),
                )],
                trailers: None,
                body: Bytes::from_static(text.as_bytes()),
                body_truncated: false,
            };
            let fetch_kind = match kind {
                UpstreamError::Connect | UpstreamError::Tls => FetchErrorKind::Connect,
                UpstreamError::Timeout => FetchErrorKind::Timeout,
                UpstreamError::Malformed => FetchErrorKind::Malformed,
                UpstreamError::Reset | UpstreamError::Body => FetchErrorKind::Reset,
            };
            self.hand_on(
                ctx,
                response,
                None,
                latency_us,
                Some(FetchError {
                    kind: fetch_kind,
                    message,
                }),
            );
        }
        text
    }

    /// Counts an exchange answered to its client: status and latency, and `sampled_out` when
    /// the sample left it out (then it never reaches the recorder, which counts the rest).
    fn answered(&self, plan: &Plan, status: u16, latency_us: u64) {
        self.metrics.answered(status, latency_us);
        if !plan.record {
            self.recorder
                .stats()
                .sampled_out
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The end of an exchange: hands it to the shadow and the recorder, waiting for neither.
    /// `raw_response` is production's response head when `response`'s headers are still
    /// to be read from it.
    fn hand_on(
        &self,
        ctx: Ctx,
        response: CapturedResponse,
        raw_response: Option<Bytes>,
        latency_us: u64,
        production_failed: Option<FetchError>,
    ) {
        let Some(mut request) = ctx.head else {
            return;
        };
        let mut heads = (ctx.raw_head.is_some() || raw_response.is_some()).then(|| RawHeads {
            request: ctx.raw_head,
            response: raw_response,
        });
        if !ctx.plan.request_empty {
            let (body, cut) = ctx
                .request
                .take_copy()
                .map(BodyCopy::into_parts)
                .unwrap_or_default();
            request.body = body;
            // A body not seen to its end (production answered early) is only a prefix.
            request.body_truncated = cut || ctx.request.end() != RequestEnd::Complete;
        }
        let mut exchange = Exchange {
            id: ctx.id,
            ts_us: ctx.ts_us,
            interface: None,
            tenant: None,
            request,
            response: Some(response),
            latency_us: Some(latency_us),
        };
        if ctx.plan.shadow {
            // The shadow compares heads now: they cannot wait for the recorder.
            if let Some(h) = heads.take() {
                h.fill(&mut exchange, &mut SpareHeaders::default());
            }
            if let (Some(shadow), Some(resp)) = (&self.shadow, &exchange.response) {
                let interface = interface_of(&exchange.request, &self.cfg.interface_key);
                let production: Production = match production_failed {
                    Some(e) => Err(e),
                    None => Ok(Observed {
                        status: resp.status,
                        headers: resp.headers.clone(),
                        trailers: resp.trailers.clone().unwrap_or_default(),
                        body: resp.body.clone(),
                        latency_us,
                    }),
                };
                let truncated = resp.body_truncated;
                let request = if ctx.plan.record {
                    exchange.request.clone()
                } else {
                    std::mem::take(&mut exchange.request)
                };
                shadow.submit(
                    interface.clone(),
                    exchange.id.clone(),
                    request,
                    production,
                    truncated,
                );
                exchange.interface = Some(interface);
            }
        }
        if ctx.plan.record {
            // A full queue drops the exchange; the handle counts it by reason.
            let _ = self.recorder.submit(Captured {
                exchange,
                sampled: ctx.plan.sampled,
                heads,
            });
        }
    }
}

/// An exchange's place in the `in_flight` gauge, from its request head to its end. hyper
/// drops a request's handler when its client goes away before the answer head, and the
/// answer's body when the client goes away during it; either way this is dropped unsettled,
/// which takes the exchange off the gauge and counts the abort. Every other way out of an
/// exchange settles it first.
#[derive(Debug)]
pub(super) struct Pending {
    tap: Arc<Tap>,
    open: bool,
}

impl Pending {
    /// Puts an exchange on the gauge.
    pub(super) fn start(tap: Arc<Tap>) -> Self {
        tap.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        Pending { tap, open: true }
    }

    /// Takes the exchange off the gauge: it ended with an answer or a refusal.
    pub(super) fn settle(&mut self) {
        if std::mem::replace(&mut self.open, false) {
            self.tap.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.open {
            let m = &self.tap.metrics;
            m.in_flight.fetch_sub(1, Ordering::Relaxed);
            m.client_aborted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An exchange whose response is streaming to the client.
#[derive(Debug)]
pub struct InFlight {
    pub(super) pending: Pending,
    pub(super) ctx: Ctx,
    pub(super) status: u16,
    /// Production's response headers as received, when the exchange may be kept.
    pub(super) response_headers: Option<Headers>,
    /// Production's response head, when the headers are still to be read from it.
    pub(super) raw_head: Option<Bytes>,
}

impl Finish for InFlight {
    fn finish(self, end: ResponseEnd, copy: Option<BodyCopy>, trailers: Option<HeaderMap>) {
        let InFlight {
            mut pending,
            ctx,
            status,
            response_headers,
            raw_head,
        } = self;
        match end {
            // Dropping `pending` unsettled counts the abort.
            ResponseEnd::ClientGone => return,
            ResponseEnd::UpstreamError => pending.tap.metrics.upstream_error(UpstreamError::Body),
            ResponseEnd::Complete => {}
        }
        pending.settle();
        let tap = &pending.tap;
        let latency_us = ctx.start.elapsed().as_micros() as u64;
        tap.answered(&ctx.plan, status, latency_us);
        if ctx.head.is_none() {
            return;
        }
        let (body, cut) = copy.map(BodyCopy::into_parts).unwrap_or_default();
        let broken = end == ResponseEnd::UpstreamError;
        let response = CapturedResponse {
            status,
            headers: response_headers.unwrap_or_default(),
            trailers: trailers.as_ref().map(header_list),
            body,
            body_truncated: cut || broken,
        };
        let failed = broken.then(|| FetchError {
            kind: FetchErrorKind::Reset,
            message: "production broke the response body off".into(),
        });
        tap.hand_on(ctx, response, raw_head, latency_us, failed);
    }
}

/// The body of a response to a client: production's stream, or the tap's own answer.
// The stream is the common case; boxing it would cost an allocation on every response to
// save bytes only on the rare refusals.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ProxyBody {
    /// Production's body through the tee.
    Stream(ResponseTee<InFlight>),
    /// A complete body the tap made (refusals, 502, 504).
    Full(Option<Bytes>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Stream(s) => Pin::new(s).poll_frame(cx),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Stream(s) => s.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Stream(s) => s.size_hint(),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Full(Some(Bytes::from_static(text.as_bytes()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A pooled client to the upstream (HTTP/2 when `http2`; over TLS with `tls`). Connecting
/// has no deadline of its own: `--upstream-timeout` bounds the whole exchange.
fn client(tls: Option<TlsConnector>, http2: bool) -> Client<PoolConnector, RequestTee> {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(http2)
        .set_host(false);
    b.build(PoolConnector::new(tls))
}

/// The interface of a request from its method, path (no query) and header fields, when
/// the key allows it (a JSON pointer needs the body: then `None`). Both the hyper path and
/// the tap's own HTTP/1.1 path decide the per-file minimum with it.
pub(super) fn head_interface<'a>(
    key: &InterfaceKey,
    method: &str,
    path: &str,
    header: impl Fn(&str) -> Option<&'a [u8]>,
) -> Option<String> {
    if matches!(key, InterfaceKey::JsonPointer(_)) {
        return None;
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut headers = Vec::new();
    if let Some(ct) = header("content-type") {
        headers.push(("content-type".to_string(), text(ct)));
    }
    if let InterfaceKey::Header(h) = key {
        if let Some(v) = header(h) {
            headers.push((h.clone(), text(v)));
        }
    }
    let r = CapturedRequest {
        method: method.to_string(),
        uri: path.to_string(),
        headers,
        ..Default::default()
    };
    Some(interface_of(&r, key))
}

fn lossy(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

/// Header fields as the recording keeps them: lower-case names, in order, repeats kept.
pub fn header_list(h: &HeaderMap) -> Headers {
    h.iter()
        .map(|(k, v)| (k.as_str().to_string(), lossy(v)))
        .collect()
}

fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn capture_head(parts: &http::request::Parts, tls: Option<Tls>) -> CapturedRequest {
    // The recording keeps the origin form (`/a/b?x=1`), whatever form the client used: an
    // HTTP/2 request (and an HTTP/1 absolute-form one) names scheme and authority in its
    // target, which would otherwise be recorded with the tap's own address in it.
    let uri = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str().to_string(),
        None => parts.uri.to_string(),
    };
    let mut headers = header_list(&parts.headers);
    // HTTP/2 carries the authority in `:authority`, not in a Host header: kept as `host`, as
    // the HAR importer does, so the recording says which host was asked for either way.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(a) = parts.uri.authority() {
            headers.push(("host".to_string(), a.as_str().to_string()));
        }
    }
    CapturedRequest {
        method: parts.method.as_str().to_string(),
        uri,
        version: version_name(parts.version).to_string(),
        headers,
        body: Bytes::new(),
        body_truncated: false,
        tls,
    }
}

/// The request names userinfo (`user:pw@host`) in its authority (an HTTP/2 `:authority`,
/// an HTTP/1 absolute-form target) or in a Host header.
fn has_userinfo<B>(req: &Request<B>) -> bool {
    req.uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
        || req
            .headers()
            .get_all(header::HOST)
            .iter()
            .any(|v| v.as_bytes().contains(&b'@'))
}

fn is_grpc(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .is_some_and(|ct| is_grpc_type(ct.as_bytes()))
}

/// A gRPC content type (`application/grpc`, `application/grpc+proto`, ...).
pub(super) fn is_grpc_type(ct: &[u8]) -> bool {
    ct.len() >= 16 && ct[..16].eq_ignore_ascii_case(b"application/grpc")
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Leaves out the fields that belong to one connection, by the policy the tap's own path
/// follows too ([`FieldPolicy`]): the hop-by-hop list, what `Connection` names, and of
/// `te` only `te: trailers`.
pub(super) fn apply_field_policy(h: &mut HeaderMap, direction: Direction) {
    // Most messages carry none of them: a look at the few names present is cheaper than
    // building the policy.
    if !h.keys().any(|k| is_hop_by_hop(k.as_str().as_bytes())) {
        return;
    }
    let fields = || h.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    let policy = FieldPolicy::new(direction, fields);
    let mut trailers = false;
    let dropped: Vec<HeaderName> = h
        .keys()
        .filter(|k| match policy.field(k.as_str().as_bytes()) {
            Forward::Keep => false,
            Forward::Drop => true,
            Forward::Trailers => {
                trailers = true;
                false
            }
        })
        .cloned()
        .collect();
    for n in dropped {
        h.remove(n);
    }
    if trailers {
        h.insert(header::TE, HeaderValue::from_static(TE_FORWARDED));
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> (UpstreamError, String) {
    let (failure, message) = crate::failure::of_client_error(e);
    if e.is_connect() && super::upstream::is_handshake_failure(e) {
        return (UpstreamError::Tls, message);
    }
    (failure.into(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop, te"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.append(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        apply_field_policy(&mut h, Direction::Request);
        let mut fields: Vec<(&str, &str)> = h
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        fields.sort();
        assert_eq!(fields, [("te", "trailers"), ("x-kept", "1")]);
    }

    #[test]
    fn grpc_is_recognised_by_content_type() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_grpc(&h));
    }
}
