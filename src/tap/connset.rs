//! HTTP/1 connections owned by one user (one tap client connection, whose request and
//! answer bodies stream through hyper) rather than a pool shared between threads: taking one is a
//! pop under a lock only its owner takes, and each connection is driven by a task on the
//! runtime it is used from, so on a current-thread runtime an answer never crosses threads.
//! Connections the server closed are skipped, and a request a kept connection closed
//! before it went out is sent once more on a new connection.

use super::upstream::UpstreamError;
use crate::failure::error_chain;
use crate::tls::TlsConnector;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::Mutex;

/// Why a request got no response head.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made, or no TLS session over it (the message says to where
    /// and why).
    Connect(UpstreamError, String),
    /// The connection failed while the request was on it.
    Http(hyper::Error),
}

/// The HTTP/1 connections one user keeps to one server.
#[derive(Debug)]
pub struct ConnSet<B> {
    /// `host:port` to connect to.
    authority: String,
    /// TLS over every connection, for an `https://` server.
    tls: Option<TlsConnector>,
    /// Connections kept at most.
    max_idle: usize,
    /// Connections free for the next request, most recently used last.
    idle: Mutex<Vec<http1::SendRequest<B>>>,
}

/// A request that failed on one connection.
enum Failure<B> {
    /// The connection had closed before the request went out: it can go on another one.
    NotSent(Box<Request<B>>, hyper::Error),
    Failed(hyper::Error),
}

impl<B> ConnSet<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Connections to `authority` (`host:port`), over TLS with `tls`, none opened yet, at
    /// most `max_idle` kept.
    pub fn new(authority: &str, tls: Option<TlsConnector>, max_idle: usize) -> Self {
        ConnSet {
            authority: authority.to_string(),
            tls,
            max_idle,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` (origin-form URI) on a kept connection or a new one and returns the
    /// response head with the connection it came on; the caller reads the body and hands
    /// the connection to [`ConnSet::put_back`] when it may take another request.
    pub async fn send(
        &self,
        req: Request<B>,
    ) -> Result<(Response<Incoming>, http1::SendRequest<B>), SendError> {
        let (mut conn, reused) = self.checkout().await?;
        match send_on(&mut conn, req).await {
            Ok(resp) => Ok((resp, conn)),
            // A kept-alive connection the server closed just now: the request did not go
            // out, so it goes once more, on a new connection.
            Err(Failure::NotSent(req, _)) if reused => {
                let mut conn = self.connect().await?;
                match send_on(&mut conn, *req).await {
                    Ok(resp) => Ok((resp, conn)),
                    Err(Failure::NotSent(_, e) | Failure::Failed(e)) => Err(SendError::Http(e)),
                }
            }
            Err(Failure::NotSent(_, e) | Failure::Failed(e)) => Err(SendError::Http(e)),
        }
    }

    /// Keeps `conn` for a later request, unless it has closed or enough are kept.
    pub fn put_back(&self, conn: http1::SendRequest<B>) {
        if conn.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
    }

    /// A kept connection still open, or a new one; `true` when kept.
    async fn checkout(&self) -> Result<(http1::SendRequest<B>, bool), SendError> {
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

    async fn connect(&self) -> Result<http1::SendRequest<B>, SendError> {
        let stream = super::upstream::connect(&self.authority, self.tls.as_ref())
            .await
            .map_err(|(kind, message)| SendError::Connect(kind, message))?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(UpstreamError::Connect, error_chain(&e)))?;
        // The connection's task ends when it fails or when its last sender is dropped; its
        // errors reach the request in flight.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection to a target or upstream: {e}");
            }
        });
        Ok(sender)
    }
}

/// Sends one request on `conn` and waits for the response head.
async fn send_on<B>(
    conn: &mut http1::SendRequest<B>,
    req: Request<B>,
) -> Result<Response<Incoming>, Failure<B>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Err(e) = conn.ready().await {
        return Err(Failure::NotSent(Box::new(req), e));
    }
    conn.try_send_request(req).await.map_err(|mut e| {
        let req = e.take_message();
        let err = e.into_error();
        match req {
            Some(req) => Failure::NotSent(Box::new(req), err),
            None => Failure::Failed(err),
        }
    })
}
