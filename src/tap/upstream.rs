//! One client connection's own HTTP/1 connections to production.
//!
//! An HTTP/1 client sends its requests one after another, so the connection that carried
//! its last request is free again when the next one arrives: each client connection keeps
//! the upstream connection it used, and a request goes straight to it. There is no pool
//! shared between client connections to lock and search, and on a current-thread runtime
//! the client's connection, the upstream connection and the exchange all run on one
//! thread. HTTP/2 clients (many streams at once) and gRPC use the tap's shared clients.

use super::connset::{ConnSet, SendError};
use super::tee::RequestTee;
use http::{Request, Response};
use hyper::body::Incoming;

/// Idle upstream connections one client connection keeps. One is enough: hyper's server
/// reads an HTTP/1 client's next request only once the previous exchange has ended, so the
/// connection that carried it is free again. An idle client therefore holds one upstream
/// connection until either side closes it (production's own keep-alive timeout, or the
/// client leaving); the connection is closed when the client connection is.
const MAX_IDLE: usize = 1;

/// The upstream connections of one client connection.
#[derive(Debug)]
pub struct ConnUpstream {
    conns: ConnSet<RequestTee>,
}

impl ConnUpstream {
    /// Connections to `authority` (`host:port`), none opened yet.
    pub fn new(authority: &str) -> Self {
        ConnUpstream {
            conns: ConnSet::new(authority, MAX_IDLE),
        }
    }

    /// Sends `req` (origin-form URI) and returns production's response head; the body
    /// streams as the caller reads it. The connection is kept at once: hyper takes its next
    /// request only once that body is read to the end.
    pub async fn send(
        &self,
        req: Request<RequestTee>,
    ) -> Result<Response<Incoming>, (UpstreamError, String)> {
        match self.conns.send(req).await {
            Ok((resp, conn)) => {
                self.conns.put_back(conn);
                Ok(resp)
            }
            Err(SendError::Connect(message)) => Err((UpstreamError::Connect, message)),
            Err(SendError::Http(e)) => {
                let (failure, message) = crate::failure::of_error(&e);
                Err((failure.into(), message))
            }
        }
    }
}

/// How production failed (the client got 502 or 504).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// No connection could be made.
    Connect,
    /// No response head within `--upstream-timeout`.
    Timeout,
    /// The connection broke before the response head.
    Reset,
    /// The response was not valid HTTP.
    Malformed,
    /// The response body broke off after the head was sent on.
    Body,
}

impl UpstreamError {
    /// Every kind, in the order the metrics list them.
    pub(super) const ALL: [UpstreamError; 5] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::Reset,
        UpstreamError::Malformed,
        UpstreamError::Body,
    ];

    /// The label used in metrics.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Reset => "reset",
            UpstreamError::Malformed => "malformed",
            UpstreamError::Body => "body",
        }
    }
}

impl From<crate::failure::Failure> for UpstreamError {
    fn from(f: crate::failure::Failure) -> Self {
        match f {
            crate::failure::Failure::Connect => UpstreamError::Connect,
            crate::failure::Failure::Reset => UpstreamError::Reset,
            crate::failure::Failure::Malformed => UpstreamError::Malformed,
            crate::failure::Failure::Tls(_) => UpstreamError::Connect,
        }
    }
}
