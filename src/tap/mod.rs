//! The tap: a reverse proxy in front of production that records traffic, keeps rare
//! interfaces, and shadows a share of it live — without production ever waiting for it,
//! failing because of it, or leaking secrets through it.
//!
//! # One request's path through the tap, in order
//!
//! 1. **Accept** ([`accept::serve`]): HTTP/1.1 or HTTP/2 prior knowledge on one port, or
//!    with `--tls-cert` a TLS session ([`tls`]; h2 or http/1.1 by ALPN) whose handshake
//!    must be done within `--head-timeout`; request heads are capped by `--max-header-bytes` and must be complete within
//!    `--head-timeout`; a connection with no request in progress is closed after
//!    `--idle-timeout`, and an HTTP/2 client may open `--http2-max-streams` streams. Plain
//!    HTTP/1.1 requests (origin form, a body of at most 64 KiB framed by its length, no
//!    `Expect` or upgrade) are served by hand in `h1_conn`, the rest by hyper-util's auto
//!    server, which takes a connection over at its first such request. Both run the steps
//!    below with the same code for deciding, recording and shadowing.
//! 2. **Refuse** ([`shared::Tap::handle`], in [`hyper_path`]): CONNECT (405), credentials
//!    (`user:pw@`) in the authority or Host (400), an HTTP/1 absolute-form target naming
//!    another host (421), a declared body over `--max-request-body` (413). The tap forwards
//!    only to `--upstream`; it is never an open proxy.
//! 3. **Decide** from the head alone: an exchange id; whether the recording sample
//!    ([`sample::Sampler`]) picks it or its interface may still need its per-file minimum
//!    ([`sample::Coverage`]), counted as sampled out when neither (the recorder never sees
//!    it); whether the shadow sample picks it and its method may be shadowed. Only
//!    exchanges that may be kept have their bodies copied. From here the exchange is in
//!    flight until it ends, or its client gives up (counted as an abort).
//! 4. **Forward**: hop-by-hop headers go, `x-forwarded-for` is appended, the request body
//!    streams to production through a [`tee::RequestTee`] (a copy of at most `--max-body`,
//!    the `--max-request-body` limit enforced on the way). An HTTP/1 client's requests go on
//!    that client connection's own upstream connection ([`upstream`]); HTTP/2 clients share
//!    pooled clients; gRPC goes over h2c (h2 by ALPN to an `https://` upstream).
//! 5. **Answer**: production's head within `--upstream-timeout` is passed on and its body
//!    streams back through a [`tee::ResponseTee`], trailers included; a failed connect or a
//!    broken connection becomes 502, a timeout 504 — counted and recorded as such.
//! 6. **Hand on** ([`tee::Finish`], at the end of the response body): latency and status
//!    go to [`metrics`]; the exchange goes to the [`recorder`] queue with a non-blocking
//!    `try_send` (full: dropped and counted) and, when picked, to the [`shadow`], which
//!    sends the copy to the candidate in a task of its own (cap reached: dropped and
//!    counted). Nothing on this path waits for the disk or the candidate.
//! 7. **Record** (recorder thread): the per-file minimum decides, [`redact`] replaces
//!    secrets, the line is written to `NAME.partial` (0600) and reaches the operating
//!    system within about a second (so a killed tap loses at most that), rotation and
//!    rename follow.
//! 8. **Stop** ([`run`]): on SIGTERM or SIGINT the listener closes, open connections finish
//!    their exchanges within `--shutdown-grace`, the recorder drains its queue and renames
//!    the file: the recording is complete and valid.
//!
//! `--metrics ADDR` serves [`admin`]: `/metrics`, `/healthz`, `/report`, `/report.html`.

pub mod accept;
pub mod admin;
pub mod config;
pub mod connset;
pub mod h1_conn;
pub mod heads;
pub mod hyper_path;
pub mod metrics;
pub mod recorder;
pub mod redact;
pub mod rewind;
pub mod sample;
pub mod shadow;
pub mod shared;
pub mod tee;
pub mod tls;
pub mod upstream;

pub use config::TapConfig;

use crate::error::{Error, Result};
use crate::exchange::Side;
use crate::recording::writer::refuse_existing_out;
use metrics::Metrics;
use recorder::{Recorder, RecorderConfig};
use redact::Redactor;
use shadow::Shadow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The runtime for `--threads N`. With one thread the tap runs on a current-thread runtime:
/// every task of an exchange (client connection, upstream connection) then wakes on the same
/// thread with no cross-thread hand-off, which is what one nginx worker does too.
pub fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut b = match threads {
        Some(0) => return Err(Error::Usage("--threads: expected at least 1".into())),
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all()
        .build()
        .map_err(|e| Error::internal("cannot start the async runtime", e))
}

async fn bind(flag: &str, addr: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| Error::Runtime {
        side: Side::Tap,
        message: format!("--{flag}: cannot listen on {addr}: {e}"),
    })
}

/// Resolves when SIGTERM or SIGINT arrives.
/// SIGTERM and SIGINT, watched from the moment this is called: a signal that arrives before
/// the stop is awaited still stops the tap gracefully, instead of killing it by the
/// default disposition (an orchestrator may stop a tap the moment it reports listening).
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    let e = term
                        .err()
                        .or(int.err())
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    tracing::warn!(
                        "tap: cannot watch SIGTERM/SIGINT ({e}); stopping on Ctrl-C only"
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the tap until SIGTERM or SIGINT; returns once the recording is complete.
///
/// The bound addresses are printed on standard error as `listening on ADDR` and
/// `metrics on ADDR` (unless `quiet`), so `--listen 127.0.0.1:0` can be used.
pub async fn run(cfg: TapConfig, quiet: bool) -> Result<()> {
    // Watched before anything is announced, so no signal finds the default disposition.
    let stop = stop_signal();
    let rotating = cfg.rotate_size.is_some() || cfg.rotate_interval.is_some();
    refuse_existing_out(&cfg.out, rotating, "the tap")?;
    let redactor = Redactor::new(&cfg.redact_headers, &cfg.redact_json_paths)
        .map_err(|e| Error::Usage(format!("--redact-json-path {e}")))?;
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(Arc::new(tls::ServerTls::load(cert, key)?)),
        None => None,
    };
    let listener = bind("listen", cfg.listen).await?;
    let listen_addr = listener.local_addr().map_err(|e| Error::Runtime {
        side: Side::Tap,
        message: format!("--listen: {e}"),
    })?;
    let admin_listener = match cfg.metrics {
        Some(a) => Some(bind("metrics", a).await?),
        None => None,
    };
    // Everything that can refuse to start does so before the recording file is created.
    if cfg.upstream.tls {
        crate::tls::TlsConnector::new(&cfg.upstream_tls, cfg.upstream.host(), &[])
            .map_err(|e| Error::Usage(format!("--upstream {}: {e}", cfg.upstream.url)))?;
    }
    let shadow = Shadow::new(&cfg, redactor.clone())?.map(Arc::new);
    let recorder = Recorder::start(
        RecorderConfig {
            out: cfg.out.clone(),
            rotate_size: cfg.rotate_size,
            rotate_interval: cfg.rotate_interval,
            min_per_interface: cfg.min_per_interface,
            queue_size: cfg.queue_size,
            queue_bytes: cfg.queue_bytes,
            interface_key: cfg.interface_key.clone(),
            write_delay: cfg.write_delay,
            source: "tap",
        },
        redactor,
    )?;
    let grace = cfg.shutdown_grace;
    let upstream = cfg.upstream.url.clone();
    let metrics = Arc::new(Metrics::default());
    // Watched before the listener is announced, like the stop signals.
    let reload = tls
        .clone()
        .map(|t| tokio::spawn(tls::reload_on_sighup(t, metrics.clone(), quiet)));
    let tap = Arc::new(
        shared::Tap::new(cfg, listen_addr, metrics.clone(), recorder.handle(), shadow)
            .map_err(Error::Usage)?,
    );
    let admin = match admin_listener {
        Some(l) => {
            if !quiet {
                if let Ok(a) = l.local_addr() {
                    eprintln!("metrics on {a}");
                }
            }
            Some(tokio::spawn(admin::serve(tap.clone(), l)))
        }
        None => None,
    };
    if !quiet {
        eprintln!(
            "listening on {listen_addr}{} (forwarding to {upstream})",
            if tls.is_some() { " with TLS" } else { "" }
        );
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
        // Kept alive so connection tasks see one change, not a closed channel.
        std::future::pending::<()>().await;
    });
    let left_open = accept::serve(tap.clone(), listener, tls, stop_rx, grace).await;
    if let Some(r) = reload {
        r.abort();
    }
    if left_open > 0 {
        tracing::warn!(
            "tap: {} still open after --shutdown-grace; {} not recorded",
            crate::report::words::count_of(left_open as u64, "connection", "connections"),
            if left_open == 1 {
                "its exchanges are"
            } else {
                "their exchanges are"
            }
        );
    }
    let handle = recorder.handle();
    let files = tokio::task::spawn_blocking(move || recorder.close())
        .await
        .map_err(|e| Error::internal("the recorder did not stop cleanly", e))?;
    if let Some(a) = admin {
        a.abort();
    }
    if !quiet {
        let s = handle.stats();
        let dropped: u64 = recorder::DropReason::ALL
            .iter()
            .map(|r| s.dropped(*r))
            .sum();
        eprintln!(
            "stopped: {} proxied, {} recorded, {} sampled out, {} dropped; files: {}",
            crate::report::words::count_of(
                metrics.proxied.load(Ordering::Relaxed),
                "exchange",
                "exchanges"
            ),
            s.recorded.load(Ordering::Relaxed),
            s.sampled_out.load(Ordering::Relaxed),
            dropped,
            if files.is_empty() {
                "none".to_string()
            } else {
                files
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    Ok(())
}
