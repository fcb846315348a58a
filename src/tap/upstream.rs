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
use crate::tls::TlsConnector;
use http::{Request, Response};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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
    /// Connections to `authority` (`host:port`), over TLS with `tls`, none opened yet.
    pub fn new(authority: &str, tls: Option<TlsConnector>) -> Self {
        ConnUpstream {
            conns: ConnSet::new(authority, tls, MAX_IDLE),
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
            Err(SendError::Connect(kind, message)) => Err((kind, message)),
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
    /// The TLS handshake with an `https://` upstream failed (its certificate refused, no
    /// protocol in common, ...).
    Tls,
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
    pub(super) const ALL: [UpstreamError; 6] = [
        UpstreamError::Connect,
        UpstreamError::Tls,
        UpstreamError::Timeout,
        UpstreamError::Reset,
        UpstreamError::Malformed,
        UpstreamError::Body,
    ];

    /// The label used in metrics.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Tls => "tls",
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
            crate::failure::Failure::Tls(_) => UpstreamError::Tls,
        }
    }
}

/// A connection to production: plain TCP, or a TLS session over it for `https://`.
#[derive(Debug)]
pub enum UpStream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<crate::tls::TlsStream>),
}

impl UpStream {
    /// The socket under the connection, to see whether production closed it or sent
    /// something unasked.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpStream::Plain(s) => s,
            UpStream::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether the TLS session agreed on HTTP/2 by ALPN.
    pub fn is_h2(&self) -> bool {
        match self {
            UpStream::Plain(_) => false,
            UpStream::Tls(s) => s.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2),
        }
    }
}

/// Opens a connection to `authority`, with a TLS handshake when `tls` is set. The error
/// says which: a connection refused or unreachable ([`UpstreamError::Connect`]), or a
/// handshake that failed ([`UpstreamError::Tls`], with the reason in words).
pub async fn connect(
    authority: &str,
    tls: Option<&TlsConnector>,
) -> Result<UpStream, (UpstreamError, String)> {
    let tcp = TcpStream::connect(authority).await.map_err(|e| {
        (
            UpstreamError::Connect,
            format!("cannot connect to {authority}: {e}"),
        )
    })?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(UpStream::Plain(tcp));
    };
    match tls.connect(tcp).await {
        Ok((s, _)) => Ok(UpStream::Tls(Box::new(s))),
        Err(e) => {
            let why = match crate::tls::classify(&e) {
                Some((reason, detail)) => format!("{reason} ({detail})"),
                None => e.to_string(),
            };
            Err((
                UpstreamError::Tls,
                format!("TLS handshake with {authority}: {why}"),
            ))
        }
    }
}

impl AsyncRead for UpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpStream::Plain(s) => s.is_write_vectored(),
            UpStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// The connector of the tap's pooled clients (HTTP/2 clients' requests, gRPC, `h2c://`):
/// a TCP connection to the upstream, with TLS for `https://`, telling the pool when ALPN
/// agreed on HTTP/2.
#[derive(Clone, Debug)]
pub struct PoolConnector {
    tls: Option<TlsConnector>,
}

impl PoolConnector {
    /// Plain connections, or TLS sessions made by `tls`.
    pub fn new(tls: Option<TlsConnector>) -> Self {
        PoolConnector { tls }
    }
}

impl tower_service::Service<http::Uri> for PoolConnector {
    type Response = PoolConn;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<PoolConn, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .ok_or_else(|| std::io::Error::other(format!("no authority in {uri}")))?;
            let stream = connect(&authority, tls.as_ref())
                .await
                .map_err(|(kind, message)| match kind {
                    UpstreamError::Tls => std::io::Error::other(HandshakeFailed(message)),
                    _ => std::io::Error::other(message),
                })?;
            Ok(PoolConn(hyper_util::rt::TokioIo::new(stream)))
        })
    }
}

/// A pooled client's connection.
#[derive(Debug)]
pub struct PoolConn(hyper_util::rt::TokioIo<UpStream>);

impl hyper_util::client::legacy::connect::Connection for PoolConn {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        let c = hyper_util::client::legacy::connect::Connected::new();
        if self.0.inner().is_h2() {
            c.negotiated_h2()
        } else {
            c
        }
    }
}

impl hyper::rt::Read for PoolConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PoolConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A pooled connection's TLS handshake failed: carried through the client's error so that
/// the failure is counted as [`UpstreamError::Tls`], not as a refused connection.
#[derive(Debug)]
pub struct HandshakeFailed(pub String);

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeFailed {}

/// Whether a [`HandshakeFailed`] is anywhere in `e`'s chain of causes.
pub fn is_handshake_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<HandshakeFailed>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps, so that one is looked at here.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_handshake_failure(inner) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}
