//! What both request paths share: the tap's state ([`Tap`]: configuration, clients,
//! counters, the recorder and shadow handles), deciding from a head what happens to an
//! exchange (`Tap::plan`), the answers to production's failures (`Tap::failed`) and the
//! hand-on at the end of an answer ([`InFlight::finish`]) to the metrics, the recorder and the
//! shadow, without waiting for either. Connections are accepted in [`super::accept`]; a
//! connection's plain HTTP/1.1 requests are served by [`super::h1_conn`], the rest by
//! hyper's server through [`super::hyper_path`]. The stages of one request are listed in order
//! in the module docs of [`crate::tap`].

use super::config::TapConfig;
use super::hyper_path::client;

use super::heads::{RawHeads, SpareHeaders};
use super::metrics::Metrics;
use super::recorder::{Captured, RecorderHandle};
use super::sample::Sampler;
use super::shadow::{Production, Shadow};
use super::tee::{BodyCopy, Finish, RequestEnd, RequestState, RequestTee, ResponseEnd};
use super::upstream::PoolConnector;
use super::upstream::UpstreamError;
use crate::compare::{FetchError, FetchErrorKind, Observed};
use crate::exchange::{
    Exchange, Headers, Request as CapturedRequest, Response as CapturedResponse,
};
use crate::interface::{interface_of, InterfaceKey};
use crate::tls::TlsConnector;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::uri::Authority;
use http::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Salt of the recording sample.
const RECORD_SALT: u64 = 0;

/// Why production's `101 Switching Protocols` is answered 502 on every path: the tap never
/// forwards an `Upgrade`, so no request through it asked for one.
pub(super) const UNASKED_UPGRADE: &str =
    "101 Switching Protocols to a request that asked for no upgrade";

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
    /// Pooled clients of hyper's path: HTTP/1.1, and HTTP/2 (h2c or h2 by ALPN, gRPC).
    pub(super) h1: Client<PoolConnector, RequestTee>,
    pub(super) h2: Client<PoolConnector, RequestTee>,
    /// TLS to an `https://` upstream, offering HTTP/1.1 (each client connection's own
    /// upstream connections speak it).
    upstream_tls: Option<TlsConnector>,
    /// The upstream's authority, for the requests hyper's path rewrites.
    pub(super) authority: Authority,
    /// Authorities (lower case) an absolute-form request target may name.
    pub(super) own: Vec<String>,
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

/// A gRPC content type (`application/grpc`, `application/grpc+proto`, ...).
pub(super) fn is_grpc_type(ct: &[u8]) -> bool {
    ct.len() >= 16 && ct[..16].eq_ignore_ascii_case(b"application/grpc")
}
