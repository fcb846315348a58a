//! hyper's request path: every request the tap's own HTTP/1.1 code does not take (HTTP/2,
//! HTTP/1.0, `Expect`, chunked or large uploads, ...) is served by hyper's server, which calls
//! [`Tap::handle`]. It refuses what a reverse proxy for one upstream must not forward, keeps
//! the head as the client sent it, rewrites it for production, and streams both bodies
//! through the tees; deciding, failures and the hand-on are the code both paths share, in
//! [`super::shared`].

use super::metrics::Refusal;
use super::shared::{
    head_interface, header_list, is_grpc_type, Ctx, InFlight, Pending, Tap, UNASKED_UPGRADE,
};
use super::tee::{BodyCopy, RequestEnd, RequestState, RequestTee, ResponseTee};
use super::upstream::UpstreamError;
use super::upstream::{ConnUpstream, PoolConnector};
use crate::exchange::{Request as CapturedRequest, Tls};
use crate::http1::headers::{is_hop_by_hop, Direction, FieldPolicy, Forward, TE_FORWARDED};
use crate::recording::format::now_us;
use crate::tls::TlsConnector;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl Tap {
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
pub(super) fn client(tls: Option<TlsConnector>, http2: bool) -> Client<PoolConnector, RequestTee> {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(http2)
        .set_host(false);
    b.build(PoolConnector::new(tls))
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
