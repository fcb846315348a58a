//! One client connection's own HTTP/1 connections to production.
//!
//! An HTTP/1 client sends its requests one after another, so the connection that carried
//! its last request is free again when the next one arrives: each client connection keeps
//! the upstream connection it used, and a request goes straight to it. There is no pool
//! shared between client connections to lock and search, and on a current-thread runtime
//! the client's connection, the upstream connection and the exchange all run on one
//! thread. HTTP/2 clients (many streams at once) and gRPC use the tap's shared clients.

use super::metrics::UpstreamError;
use super::tee::RequestTee;
use crate::connset::{ConnSet, SendError};
use crate::replay::target::error_chain;
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
            Err(SendError::Http(e)) => Err(classify(&e)),
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
