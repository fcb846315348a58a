//! How a target's connections are made: TCP, and for an `https://` target a TLS handshake
//! that agrees on HTTP/2 or HTTP/1.1 by ALPN; each connection's setup (connect and
//! handshake) is timed and counted per target, apart from the latency of the requests it
//! carries. [`Connector`] makes the pooled client's connections; [`TlsTarget::open_h1`]
//! makes a worker's own HTTP/1 ones.

use super::h1::{H1Conn, Stream};
use crate::compare::{FetchError, FetchErrorKind};
use crate::tls::{TlsConnector, ALPN_H2};
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Connections one target opened and the time their setup took, shared by every copy of
/// the target (the workers' and the pooled client's), read once the run is over.
#[derive(Debug, Default)]
pub struct SetupStats {
    opened: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

/// What [`SetupStats`] counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupCounts {
    /// Connections opened.
    pub opened: u64,
    /// Their setup time summed, µs.
    pub total_us: u64,
    /// The longest setup, µs.
    pub max_us: u64,
}

impl SetupStats {
    /// Counts one connection whose setup took `took`.
    pub fn record(&self, took: Duration) {
        let us = took.as_micros() as u64;
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// What was counted so far.
    pub fn counts(&self) -> SetupCounts {
        SetupCounts {
            opened: self.opened.load(Ordering::Relaxed),
            total_us: self.total_us.load(Ordering::Relaxed),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }
}

/// The TLS side of an `https://` target: its connector, and whether the server chose
/// HTTP/2 (then every request goes through the pooled client, which speaks it).
#[derive(Clone, Debug)]
pub struct TlsTarget {
    /// Offers `h2` and `http/1.1`.
    pub connector: TlsConnector,
    /// Set once any handshake agreed on `h2`.
    pub h2: Arc<AtomicBool>,
}

/// A new HTTP/1 connection of a worker, or word that the server speaks HTTP/2.
pub enum Opened {
    /// An HTTP/1.1 connection and how long its setup took.
    H1(H1Conn, Duration),
    /// The server agreed on HTTP/2: the request goes through the pooled client.
    H2,
}

impl TlsTarget {
    /// Connects to `authority` and shakes hands.
    pub async fn open_h1(&self, authority: &str) -> Result<Opened, FetchError> {
        let start = Instant::now();
        let (stream, alpn) = self.handshake(authority).await?;
        if alpn.as_deref() == Some(ALPN_H2) {
            self.h2.store(true, Ordering::Relaxed);
            return Ok(Opened::H2);
        }
        Ok(Opened::H1(
            H1Conn::over(Stream::Tls(Box::new(stream))),
            start.elapsed(),
        ))
    }

    /// Checks that a handshake with `authority` succeeds and that the server keeps the
    /// connection after it. Under TLS 1.3 the server judges the client's certificate only
    /// after the client thinks the handshake is done, and says so with an alert; that
    /// alert is waited for a moment (`linger`), so a refused client certificate is named
    /// here rather than on every exchange.
    pub async fn check(&self, authority: &str, linger: Duration) -> Result<(), FetchError> {
        use tokio::io::AsyncReadExt;
        let (mut stream, alpn) = self.handshake(authority).await?;
        if alpn.as_deref() == Some(ALPN_H2) {
            // Workers go straight to the pooled client instead of each learning it anew.
            self.h2.store(true, Ordering::Relaxed);
        }
        if stream.get_ref().1.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return Ok(());
        }
        let mut probe = [0u8; 1];
        match tokio::time::timeout(linger, stream.read(&mut probe)).await {
            Ok(Err(e)) => Err(handshake_error(authority, &e)),
            Ok(Ok(0)) => Err(FetchError {
                kind: FetchErrorKind::Tls,
                message: format!("{authority} closed the connection right after the TLS handshake"),
            }),
            // Nothing came (the server waits for a request), or bytes nobody asked for:
            // either way the handshake was taken.
            Err(_) | Ok(Ok(_)) => Ok(()),
        }
    }

    /// TCP connect and TLS handshake: the stream and the protocol ALPN agreed on.
    async fn handshake(
        &self,
        authority: &str,
    ) -> Result<(crate::tls::TlsStream, Option<Vec<u8>>), FetchError> {
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .and_then(|s| s.set_nodelay(true).map(|()| s))
            .map_err(|e| FetchError {
                kind: FetchErrorKind::Connect,
                message: format!("cannot connect to {authority}: {e}"),
            })?;
        self.connector
            .connect(tcp)
            .await
            .map_err(|e| handshake_error(authority, &e))
    }
}

/// A failed handshake with `authority`, named by its reason.
pub fn handshake_error(authority: &str, e: &io::Error) -> FetchError {
    match crate::tls::classify(e) {
        Some((reason, detail)) => FetchError {
            kind: FetchErrorKind::Tls,
            message: format!("TLS handshake with {authority} failed: {reason} ({detail})"),
        },
        // Not TLS's doing: the connection broke during the handshake.
        None => FetchError {
            kind: FetchErrorKind::Connect,
            message: format!("TLS handshake with {authority} broke off: {e}"),
        },
    }
}

/// The pooled client's connector: TCP through hyper-util's connector (its timeout and
/// `TCP_NODELAY`), then TLS for an `https://` target, telling hyper when ALPN agreed on
/// HTTP/2.
#[derive(Clone, Debug)]
pub struct Connector {
    /// TCP.
    pub http: HttpConnector,
    /// TLS, for an `https://` target.
    pub tls: Option<TlsTarget>,
    /// Where the setup of each connection is counted.
    pub stats: Arc<SetupStats>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = self.http.call(uri);
        let tls = self.tls.clone();
        let stats = self.stats.clone();
        Box::pin(async move {
            let start = Instant::now();
            let tcp = tcp.await?;
            let conn = match tls {
                None => Conn::Plain(tcp),
                Some(t) => {
                    let (stream, alpn) = t.connector.connect(tcp.into_inner()).await?;
                    let h2 = alpn.as_deref() == Some(ALPN_H2);
                    if h2 {
                        t.h2.store(true, Ordering::Relaxed);
                    }
                    Conn::Tls(Box::new(TokioIo::new(stream)), h2)
                }
            };
            stats.record(start.elapsed());
            Ok(conn)
        })
    }
}

/// A pooled client's connection: plain, or TLS with whether ALPN agreed on HTTP/2.
pub enum Conn {
    /// Plain TCP.
    Plain(TokioIo<tokio::net::TcpStream>),
    /// TLS over TCP (boxed: its buffers are large).
    Tls(Box<TokioIo<crate::tls::TlsStream>>, bool),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Plain(io) => io.connected(),
            Conn::Tls(io, h2) => {
                let c = io.inner().get_ref().0.connected();
                if *h2 {
                    c.negotiated_h2()
                } else {
                    c
                }
            }
        }
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io, _) => Pin::new(&mut **io).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Conn::Tls(io, _) => Pin::new(&mut **io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_flush(cx),
            Conn::Tls(io, _) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io, _) => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(io) => io.is_write_vectored(),
            Conn::Tls(io, _) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Conn::Tls(io, _) => Pin::new(&mut **io).poll_write_vectored(cx, bufs),
        }
    }
}
