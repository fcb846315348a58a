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
use crate::replay::target::error_chain;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::Mutex;
use tokio::net::TcpStream;

/// Idle upstream connections one client connection keeps. One is enough: hyper's server
/// reads an HTTP/1 client's next request only once the previous exchange has ended, so the
/// connection that carried it is free again. An idle client therefore holds one upstream
/// connection until either side closes it (production's own keep-alive timeout, or the
/// client leaving); the connection is closed when the client connection is.
const MAX_IDLE: usize = 1;

/// Why a request on one connection failed.
enum Failure {
    /// The connection had closed before the request went out: it can go on a new one.
    NotSent(Box<Request<RequestTee>>, hyper::Error),
    Failed(UpstreamError, String),
}

/// The upstream connections of one client connection.
#[derive(Debug)]
pub struct ConnUpstream {
    /// `host:port` of production.
    authority: String,
    /// Connections free for the next request. Only this client connection's requests take
    /// from it, one at a time, so the lock is never contended.
    idle: Mutex<Vec<http1::SendRequest<RequestTee>>>,
}

impl ConnUpstream {
    /// Connections to `authority` (`host:port`), none opened yet.
    pub fn new(authority: &str) -> Self {
        ConnUpstream {
            authority: authority.to_string(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` (origin-form URI) and returns production's response head; the body
    /// streams as the caller reads it. The connection is free for the next request once
    /// that body is read to the end.
    pub async fn send(
        &self,
        req: Request<RequestTee>,
    ) -> Result<Response<Incoming>, (UpstreamError, String)> {
        let (mut conn, reused) = self.checkout().await?;
        let result = match send_on(&mut conn, req).await {
            // A kept-alive connection production closed just now: the request did not go
            // out, so it goes once more, on a new connection.
            Err(Failure::NotSent(req, _)) if reused => {
                conn = self.connect().await?;
                send_on(&mut conn, *req).await
            }
            r => r,
        };
        match result {
            Ok(resp) => {
                if !conn.is_closed() {
                    if let Ok(mut idle) = self.idle.lock() {
                        if idle.len() < MAX_IDLE {
                            idle.push(conn);
                        }
                    }
                }
                Ok(resp)
            }
            Err(Failure::NotSent(_, e)) => Err(classify(&e)),
            Err(Failure::Failed(kind, message)) => Err((kind, message)),
        }
    }

    /// A kept connection still open, or a new one; `true` when kept.
    async fn checkout(
        &self,
    ) -> Result<(http1::SendRequest<RequestTee>, bool), (UpstreamError, String)> {
        loop {
            let next = match self.idle.lock() {
                Ok(mut idle) => idle.pop(),
                Err(_) => None,
            };
            match next {
                Some(c) if !c.is_closed() => return Ok((c, true)),
                Some(_) => continue,
                None => break,
            }
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<http1::SendRequest<RequestTee>, (UpstreamError, String)> {
        let stream = TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| {
                (
                    UpstreamError::Connect,
                    format!("cannot connect to {}: {e}", self.authority),
                )
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| (UpstreamError::Connect, error_chain(&e)))?;
        // The connection's task ends when it fails or when its last sender is dropped (the
        // client connection closed); its errors reach the request in flight.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("tap: upstream connection: {e}");
            }
        });
        Ok(sender)
    }
}

/// Sends one request on `conn` and waits for the response head.
async fn send_on(
    conn: &mut http1::SendRequest<RequestTee>,
    req: Request<RequestTee>,
) -> Result<Response<Incoming>, Failure> {
    if let Err(e) = conn.ready().await {
        return Err(Failure::NotSent(Box::new(req), e));
    }
    conn.try_send_request(req).await.map_err(|mut e| {
        let req = e.take_message();
        let err = e.into_error();
        match req {
            Some(req) => Failure::NotSent(Box::new(req), err),
            None => {
                let (kind, message) = classify(&err);
                Failure::Failed(kind, message)
            }
        }
    })
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
