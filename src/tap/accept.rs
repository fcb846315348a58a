//! Accepting client connections and serving each: by the tap's own HTTP/1.1 code
//! ([`super::h1_conn`]) while its requests are plain, then by hyper's server, which hands
//! every request to [`Tap::handle`]. Here live what holds a connection to account: the
//! head and idle timeouts, the count of answers hyper gives itself, and the backoff when
//! accepting fails.

use super::h1_conn;
use super::hyper_path::ProxyBody;
use super::metrics::{Metrics, Refusal, Timeout};
use super::rewind::Rewind;
use super::shared::Tap;
use super::tls::{ClientStream, Negotiated, ServerTls};
use super::upstream::ConnUpstream;
use bytes::Bytes;
use http::header::HeaderValue;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a connection closed for `--head-timeout` or `--idle-timeout` gets to take its
/// GOAWAY (one round trip: hyper waits for the client's answer to a PING) before it is
/// dropped. A client that reads nothing would otherwise hold it open for good.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The first failed accept of a run is reported at once; later ones at most this often,
/// with their count.
const ACCEPT_REPORT_EVERY: Duration = Duration::from_secs(10);

/// The wait after a failed accept starts here and doubles up to [`ACCEPT_BACKOFF_MAX`]:
/// out of file descriptors, every accept fails at once until a connection closes.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Counts the answer hyper's server gave a request head itself, before any handler ran:
/// the error its connection ends with is the only trace of it. A head too large gets 431
/// (414 for the target alone); one that does not parse (a bad method, target, version,
/// header name or value, a `content-length` or `transfer-encoding` that frames nothing) 400.
/// hyper answers no other error (a broken connection, an HTTP/2 preface sent as HTTP/1).
fn count_own_answer(metrics: &Metrics, e: &(dyn std::error::Error + Send + Sync + 'static)) {
    let Some(e) = e.downcast_ref::<hyper::Error>() else {
        return;
    };
    if e.is_parse_too_large() {
        metrics.refuse(Refusal::HeadTooLarge);
    } else if e.is_parse() && !e.is_parse_version_h2() && !e.is_parse_status() {
        metrics.refuse(Refusal::BadRequest);
    }
}

/// The three ways hyper's server may take a connection over.
struct Builders {
    /// Either protocol: the connection's first bytes tell (the HTTP/2 preface, or not).
    auto: Builder,
    /// HTTP/1 only: a connection the tap's own code has served an exchange on, or one
    /// whose TLS session agreed on `http/1.1`.
    h1_only: Builder,
    /// HTTP/2 only: a TLS session that agreed on `h2`.
    h2_only: Builder,
}

type Builder = hyper_util::server::conn::auto::Builder<TokioExecutor>;

/// Accepts client connections until `shutdown` fires, then lets open connections finish
/// their in-flight exchanges (HTTP/1 closes after the current response, HTTP/2 sends
/// GOAWAY) for at most `grace`. Returns the number of connections still open at the end.
/// With `tls`, every connection is a TLS session, its handshake held to `--head-timeout`.
pub async fn serve(
    tap: Arc<Tap>,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> usize {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(tap.cfg.head_timeout)
        .max_buf_size(tap.cfg.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(tap.cfg.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(tap.cfg.http2_max_streams);
    let builders = Arc::new(Builders {
        h1_only: builder.clone().http1_only(),
        h2_only: builder.clone().http2_only(),
        auto: builder,
    });
    // Every connection task holds a sender; when all are gone, recv() returns None.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut backoff = AcceptBackoff::new(true);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.accepted();
                a
            }
            Err(e) => {
                tap.metrics.accept_failures.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.failed(&e);
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        tap.metrics.connections.fetch_add(1, Ordering::Relaxed);
        tap.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        let (tap, builders, shutdown, open) = (
            tap.clone(),
            builders.clone(),
            shutdown.clone(),
            open_tx.clone(),
        );
        // The acceptor is taken now: a certificate reloaded meanwhile serves the next one.
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            let metrics = tap.metrics.clone();
            match acceptor {
                None => serve_connection(tap, builders, stream, peer, None, shutdown).await,
                Some(acceptor) => {
                    if let Some((stream, negotiated)) =
                        handshake(&tap, acceptor, stream, peer, shutdown.clone()).await
                    {
                        serve_connection(tap, builders, stream, peer, Some(negotiated), shutdown)
                            .await;
                    }
                }
            }
            metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(open);
        });
    }
    drop(listener);
    drop(open_tx);
    let _ = tokio::time::timeout(grace, open_rx.recv()).await;
    usize::try_from(tap.metrics.connections_open.load(Ordering::Relaxed)).unwrap_or(0)
}

/// The TLS handshake of a client connection, within `--head-timeout` of its accept: a
/// client that never sends its ClientHello (or trickles it) is closed and counted as a
/// `handshake` timeout, one that sends something else or breaks off as a failed handshake.
async fn handshake(
    tap: &Tap,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> Option<(TlsStream<TcpStream>, Negotiated)> {
    let metrics = &tap.metrics;
    let done = tokio::select! {
        r = tokio::time::timeout(tap.cfg.head_timeout, acceptor.accept(stream)) => r,
        // No request has begun on a connection still shaking hands.
        _ = shutdown.changed() => return None,
    };
    match done {
        Ok(Ok(s)) => {
            metrics.tls_handshakes[0].fetch_add(1, Ordering::Relaxed);
            let alpn = s
                .get_ref()
                .1
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            Some((s, Negotiated { alpn }))
        }
        Ok(Err(e)) => {
            metrics.tls_handshakes[1].fetch_add(1, Ordering::Relaxed);
            tracing::debug!("tap: TLS handshake with {peer}: {e}");
            None
        }
        Err(_) => {
            metrics.time_out(Timeout::Handshake);
            tracing::debug!("tap: closing connection from {peer}: TLS handshake timeout");
            None
        }
    }
}

/// Serves one client connection to its end: by hand while its requests are plain HTTP/1.1,
/// then by hyper, closing it when it is too slow to send a request head or idle too long.
/// `tls` is what its TLS session agreed on, when it is one.
async fn serve_connection<S: ClientStream>(
    tap: Arc<Tap>,
    builders: Arc<Builders>,
    stream: S,
    peer: SocketAddr,
    tls: Option<Negotiated>,
    mut shutdown: watch::Receiver<bool>,
) {
    let metrics = tap.metrics.clone();
    let (head_timeout, idle_timeout) = (tap.cfg.head_timeout, tap.cfg.idle_timeout);
    // Formatted once per connection, not once per request.
    let ip = HeaderValue::from_str(&peer.ip().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let alpn_h2 = tls.as_ref().is_some_and(Negotiated::is_h2);
    let alpn_h1 = tls.as_ref().is_some_and(|t| t.alpn.is_some()) && !alpn_h2;
    let note = tls.as_ref().map(Negotiated::tls);
    // Plain HTTP/1.1 requests are served by hand; the first other one hands the
    // connection to hyper. An upstream spoken to in HTTP/2, and a client that chose h2 by
    // ALPN, are hyper's throughout.
    let (stream, builder) = if alpn_h2 {
        (Rewind::new(stream, Bytes::new()), &builders.h2_only)
    } else if tap.cfg.upstream.http2 {
        let b = if alpn_h1 {
            &builders.h1_only
        } else {
            &builders.auto
        };
        (Rewind::new(stream, Bytes::new()), b)
    } else {
        match h1_conn::serve(
            tap.clone(),
            stream,
            ip.clone(),
            note.clone(),
            shutdown.clone(),
        )
        .await
        {
            h1_conn::End::Closed => return,
            h1_conn::End::Handoff {
                stream,
                read,
                fresh,
            } => (
                Rewind::new(stream, read),
                // Only a connection's first bytes may be the HTTP/2 preface, and only
                // where ALPN did not settle on HTTP/1.1.
                if fresh && !alpn_h1 {
                    &builders.auto
                } else {
                    &builders.h1_only
                },
            ),
        }
    };
    let up = Arc::new(ConnUpstream::new(
        &tap.cfg.upstream.authority,
        tap.upstream_tls().cloned(),
    ));
    let activity = Arc::new(Activity::default());
    let seen = activity.clone();
    let svc = hyper::service::service_fn(move |req| {
        let busy = Busy::new(&seen);
        let (tap, ip, up, note) = (tap.clone(), ip.clone(), up.clone(), note.clone());
        async move {
            let resp = tap.handle(ip, up, note, req).await;
            Ok::<_, Infallible>(resp.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    // hyper bounds each HTTP/1 head itself, but an HTTP/2 connection that never completes
    // a request head (only the preface, or a HEADERS frame without its end), or that keeps
    // no stream open, would be held for good: watched here, for both protocols alike.
    let mut idle_since = tokio::time::Instant::now();
    loop {
        let idle = activity.open.load(Ordering::Acquire) == 0;
        let heads = activity.heads.load(Ordering::Acquire);
        let (limit, why) = if heads == 0 {
            (head_timeout, Timeout::Head)
        } else {
            (idle_timeout, Timeout::Idle)
        };
        tokio::select! {
            // A change of activity is seen before a deadline that it may have moved.
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout)
                    {
                        metrics.time_out(Timeout::Head);
                    }
                    count_own_answer(&metrics, e.as_ref());
                    tracing::debug!("tap: connection from {peer}: {e}");
                }
                return;
            }
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                if let Err(e) = conn.await {
                    count_own_answer(&metrics, e.as_ref());
                    tracing::debug!("tap: connection from {peer}: {e}");
                }
                return;
            }
            _ = activity.changed.notified() => {
                if activity.open.load(Ordering::Acquire) == 0 {
                    idle_since = tokio::time::Instant::now();
                }
            }
            _ = tokio::time::sleep_until(idle_since + limit), if idle => {
                // A request that began (or came and went) meanwhile: look again.
                if activity.open.load(Ordering::Acquire) != 0
                    || activity.heads.load(Ordering::Acquire) != heads
                {
                    idle_since = tokio::time::Instant::now();
                    continue;
                }
                metrics.time_out(why);
                tracing::debug!("tap: closing connection from {peer}: {why:?} timeout");
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(CLOSE_WAIT, conn.as_mut()).await;
                return;
            }
        }
    }
}

/// What one client connection served by hyper is doing, for closing it when it is slow or
/// idle.
#[derive(Debug, Default)]
struct Activity {
    /// Requests between their head and the end of their answer (HTTP/2: open streams).
    open: AtomicUsize,
    /// Requests whose head has arrived.
    heads: AtomicUsize,
    /// Woken whenever `open` goes to or from 0.
    changed: tokio::sync::Notify,
}

/// One request's place in [`Activity::open`], from its head until its answer has been
/// sent or given up (dropped with the answer's body).
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Self {
        a.heads.fetch_add(1, Ordering::AcqRel);
        if a.open.fetch_add(1, Ordering::AcqRel) == 0 {
            a.changed.notify_one();
        }
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// An answer's body that keeps its request counted as open until it ends.
#[derive(Debug)]
struct Tracked {
    body: ProxyBody,
    _busy: Busy,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Waits between failed accepts, and reports them without flooding the log: out of file
/// descriptors, every accept fails at once until a connection closes, thousands a second.
/// At most two lines per [`ACCEPT_REPORT_EVERY`]: the failures with their count, and the
/// first accept that succeeds after them.
#[derive(Debug)]
pub(super) struct AcceptBackoff {
    /// Report to the log (the admin listener retries silently).
    report: bool,
    wait: Duration,
    /// Failures not yet in a line.
    unreported: u64,
    /// Failures counted in the lines since the last one saying accepts succeed again, and
    /// after them.
    since_recovery: u64,
    /// A failure line was written and no line since says accepts succeed again.
    owe_recovery: bool,
    reported_at: Option<tokio::time::Instant>,
}

impl AcceptBackoff {
    pub(super) fn new(report: bool) -> Self {
        AcceptBackoff {
            report,
            wait: ACCEPT_BACKOFF_MIN,
            unreported: 0,
            since_recovery: 0,
            owe_recovery: false,
            reported_at: None,
        }
    }

    /// Counts a failed accept; returns how long to wait before the next one.
    pub(super) fn failed(&mut self, e: &std::io::Error) -> Duration {
        let wait = self.wait;
        self.wait = (self.wait * 2).min(ACCEPT_BACKOFF_MAX);
        self.unreported += 1;
        if self.owe_recovery {
            self.since_recovery += 1;
        }
        let now = tokio::time::Instant::now();
        let due = self
            .reported_at
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_REPORT_EVERY);
        if self.report && due {
            tracing::warn!(
                "tap: {} failed{}: {e}; new connections wait in the listen queue, \
                 retried with a backoff of up to {}s",
                crate::report::words::count_of(self.unreported, "accept", "accepts"),
                match self.reported_at {
                    Some(at) => format!(" in the last {}s", now.duration_since(at).as_secs()),
                    None => String::new(),
                },
                ACCEPT_BACKOFF_MAX.as_secs()
            );
            if !self.owe_recovery {
                self.since_recovery = self.unreported;
            }
            self.unreported = 0;
            self.owe_recovery = true;
            self.reported_at = Some(now);
        }
        wait
    }

    /// An accept succeeded: the next failure waits the least again.
    pub(super) fn accepted(&mut self) {
        self.wait = ACCEPT_BACKOFF_MIN;
        if self.owe_recovery {
            tracing::warn!(
                "tap: accepting connections again after {}",
                crate::report::words::count_of(
                    self.since_recovery,
                    "failed accept",
                    "failed accepts"
                )
            );
            self.owe_recovery = false;
            self.since_recovery = 0;
            self.unreported = 0;
        }
    }
}
