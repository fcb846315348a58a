//! One client connection's own HTTP/1 connections to production.
//!
//! An HTTP/1 client sends its requests one after another, so the connection that carried
//! its last request is free again when the next one arrives: each client connection keeps
//! the upstream connection it used, and a request goes straight to it. There is no pool
//! shared between client connections to lock and search, and on a current-thread runtime
//! the client's connection, the upstream connection and the exchange all run on one
//! thread. HTTP/2 clients (many streams at once) and gRPC use the tap's shared clients.
//!
//! A request without a body (most reads) goes through the lean HTTP/1 client replay uses:
//! its head is written in one system call, the answer's head is parsed with `httparse`,
//! and the body is passed on piece by piece as it arrives, read straight from the socket by
//! [`LeanBody`], with no connection task and no channel between the two. A request with a
//! body goes through hyper's client, whose request side streams an upload.

use super::metrics::UpstreamError;
use super::tee::RequestTee;
use crate::connset::{ConnSet, SendError};
use crate::replay::h1::{BodyDecoder, H1Conn, H1Error, Piece};
use crate::replay::target::error_chain;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Idle upstream connections one client connection keeps. One is enough: hyper's server
/// reads an HTTP/1 client's next request only once the previous exchange has ended, so the
/// connection that carried it is free again. An idle client therefore holds one upstream
/// connection until either side closes it (production's own keep-alive timeout, or the
/// client leaving); the connection is closed when the client connection is.
const MAX_IDLE: usize = 1;

/// The error a body passed on to the client may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The kept connection for requests without a body.
type Slot = Arc<Mutex<Option<H1Conn>>>;

/// The upstream connections of one client connection.
#[derive(Debug)]
pub struct ConnUpstream {
    authority: String,
    conns: ConnSet<RequestTee>,
    lean: Slot,
}

impl ConnUpstream {
    /// Connections to `authority` (`host:port`), none opened yet.
    pub fn new(authority: &str) -> Self {
        ConnUpstream {
            authority: authority.to_string(),
            conns: ConnSet::new(authority, MAX_IDLE),
            lean: Arc::default(),
        }
    }

    /// Sends `req` (origin-form URI) and returns production's response head; the body
    /// streams as the caller reads it. The connection is kept at once: hyper takes its next
    /// request only once that body is read to the end.
    pub async fn send(
        &self,
        req: Request<RequestTee>,
    ) -> Result<Response<UpstreamBody>, (UpstreamError, String)> {
        match self.conns.send(req).await {
            Ok((resp, conn)) => {
                self.conns.put_back(conn);
                Ok(resp.map(UpstreamBody::Hyper))
            }
            Err(SendError::Connect(message)) => Err((UpstreamError::Connect, message)),
            Err(SendError::Http(e)) => Err(classify(&e)),
        }
    }

    /// Sends a request without a body, given as its complete head (request line in origin
    /// form, fields, empty line), and returns production's response head. The body streams
    /// from the connection as the caller reads it; the connection is kept for the next
    /// request once the body has been read to its end.
    pub async fn send_bodiless(
        &self,
        method: &Method,
        head: &[u8],
    ) -> Result<Response<UpstreamBody>, (UpstreamError, String)> {
        let kept = self.lean.lock().ok().and_then(|mut s| s.take());
        // An idle connection production closed is known without a system call.
        let kept = kept.filter(|c| !c.is_stale());
        let reused = kept.is_some();
        let mut conn = match kept {
            Some(c) => c,
            None => self.connect().await?,
        };
        let head_request = method == Method::HEAD;
        let mut fields = HeaderMap::new();
        let mut answer = conn.send_head(head, head_request, &mut fields).await;
        if let Err(H1Error::Io {
            nothing_received: true,
            unsent,
            ..
        }) = &answer
        {
            // A kept connection production closed just as the request went out: nothing
            // came back, so the request goes once more on a new connection, if the server
            // cannot have acted on it or acting twice is harmless.
            if reused && (*unsent || method.is_idempotent()) {
                conn = self.connect().await?;
                fields.clear();
                answer = conn.send_head(head, head_request, &mut fields).await;
            }
        }
        let head = answer.map_err(|e| match e {
            H1Error::Io { message, .. } => (UpstreamError::Reset, message),
            H1Error::Malformed(m) | H1Error::TooLarge(m) => (UpstreamError::Malformed, m),
        })?;
        let status = StatusCode::from_u16(head.status).map_err(|_| {
            (
                UpstreamError::Malformed,
                format!("status {} is not valid", head.status),
            )
        })?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // The tap does not forward upgrades, so production has no reason to switch.
            return Err((
                UpstreamError::Malformed,
                "production switched protocols, which was not asked for".into(),
            ));
        }
        let mut resp = Response::new(UpstreamBody::Lean(LeanBody {
            conn: Some(conn),
            body: head.body,
            home: self.lean.clone(),
        }));
        *resp.status_mut() = status;
        *resp.version_mut() = Version::HTTP_11;
        *resp.headers_mut() = fields;
        Ok(resp)
    }

    async fn connect(&self) -> Result<H1Conn, (UpstreamError, String)> {
        H1Conn::connect(&self.authority).await.map_err(|e| {
            (
                UpstreamError::Connect,
                format!("cannot connect to {}: {e}", self.authority),
            )
        })
    }
}

/// A response body read from production's connection as it arrives; at its end, the
/// connection goes back to the client connection's slot for the next request.
#[derive(Debug)]
pub struct LeanBody {
    conn: Option<H1Conn>,
    body: BodyDecoder,
    home: Slot,
}

impl Body for LeanBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        match conn.poll_body(&mut this.body, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Piece::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Ok(Piece::Trailers(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Poll::Ready(Ok(Piece::End)) => {
                this.go_home();
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                this.conn = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.body.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.body.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl LeanBody {
    /// Hands the connection back when the whole body has been read and nothing says the
    /// connection is done; otherwise it closes here.
    fn go_home(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if conn.reusable_after(&mut self.body) {
                if let Ok(mut slot) = self.home.lock() {
                    *slot = Some(conn);
                }
            }
        }
    }
}

impl Drop for LeanBody {
    fn drop(&mut self) {
        // hyper stops polling a body it knows is complete, so a body read to its last byte
        // (or empty) is often dropped rather than polled to its end.
        self.go_home();
    }
}

/// Production's response body: from hyper's client (HTTP/2, gRPC, requests with a body) or
/// read by the tap itself from its own HTTP/1 connection.
#[derive(Debug)]
pub enum UpstreamBody {
    /// A body from hyper's client.
    Hyper(Incoming),
    /// A body read from the client connection's own upstream connection.
    Lean(LeanBody),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            UpstreamBody::Lean(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper(b) => b.is_end_stream(),
            UpstreamBody::Lean(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Hyper(b) => b.size_hint(),
            UpstreamBody::Lean(b) => b.size_hint(),
        }
    }
}

/// What failed, for the 502 and the metrics: an answer that was not HTTP, or a connection
/// that broke.
pub fn classify(e: &(dyn std::error::Error + 'static)) -> (UpstreamError, String) {
    let message = error_chain(e);
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return (UpstreamError::Malformed, message);
            }
        }
        cur = err.source();
    }
    (UpstreamError::Reset, message)
}
