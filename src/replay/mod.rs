//! The replay engine: streams recordings, sends each exchange to the baseline and the
//! candidate at the same moment (and, after they answered, to the noise probe), judges the
//! answers, and aggregates per worker. The stages:
//!
//! 1. a reader thread streams the recordings (blocking file and zstd I/O stays off the
//!    runtime) into a bounded channel, so memory stays flat however large the input;
//! 2. the dispatcher keys each exchange, leaves out what the shard split and the filters
//!    exclude ([`select`]; counted per filter, not outcomes), skips what must not be replayed
//!    (counted, never dropped), and paces the rest: closed loop, `--rate`, or `--speed`;
//! 3. `concurrency` workers send, judge and aggregate locally; their aggregates are merged
//!    once at the end.

pub mod input;
pub mod select;
pub mod target;

use crate::analysis::result::{RunInfo, RunResult, RESULT_FORMAT};
use crate::analysis::{Aggregator, PairLatency};
use crate::compare::{judge, CompareOptions};
use crate::config::{Pacing, ReplayConfig};
use crate::error::{Error, Result};
use crate::exchange::{Exchange, Side};
use crate::recording::RecordingReader;
use crate::report::gate;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use target::{Target, TargetOptions};
use tokio::time::Instant as TokioInstant;

/// One exchange on its way to a worker.
struct Job {
    exchange: Exchange,
    interface: String,
    /// When the exchange was scheduled to start; `None` in closed loop (start when taken).
    scheduled: Option<Instant>,
}

/// The three targets of a run.
#[derive(Clone)]
struct Targets {
    baseline: Target,
    candidate: Target,
    probe: Option<Target>,
}

/// Live counters readable while a replay runs (for progress display).
#[derive(Debug, Default)]
pub struct Progress {
    /// Exchanges read from the recordings.
    pub read: AtomicU64,
    /// Exchanges that have their outcome.
    pub done: AtomicU64,
    /// Exchanges the shard split or a filter left out (they get no outcome).
    pub excluded: AtomicU64,
    /// Bytes of the recording files consumed so far (compressed bytes for `.zst`).
    pub bytes_read: Arc<AtomicU64>,
    /// Total size of the recording files, 0 when unknown.
    pub bytes_total: AtomicU64,
}

/// Replays the recordings in `cfg` and returns the decided result.
pub async fn replay(cfg: &ReplayConfig, progress: Arc<Progress>) -> Result<RunResult> {
    let reader = input::open_counted(&cfg.recordings, cfg.read, &progress)?;
    let names: Vec<String> = cfg
        .recordings
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    replay_reader(cfg, reader, names, progress).await
}

/// Replays from an already opened reader (the demo reads its embedded recording this way).
pub async fn replay_reader(
    cfg: &ReplayConfig,
    mut reader: RecordingReader,
    recording_names: Vec<String>,
    progress: Arc<Progress>,
) -> Result<RunResult> {
    let topts = TargetOptions {
        timeout: cfg.timeout,
        max_body: cfg.max_body,
        pool_size: cfg.concurrency,
        host_header: cfg.host_header,
        set_headers: cfg.set_headers.clone(),
    };
    let targets = Targets {
        baseline: Target::new(Side::Baseline, &cfg.baseline, topts.clone())?,
        candidate: Target::new(Side::Candidate, &cfg.candidate, topts.clone())?,
        probe: match &cfg.secondary {
            Some(url) => Some(Target::new(Side::Secondary, url, topts)?),
            None => None,
        },
    };
    let all: Vec<&Target> = [
        Some(&targets.baseline),
        Some(&targets.candidate),
        targets.probe.as_ref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    for t in &all {
        t.preflight().await?;
    }
    let mut ready_ms = std::collections::BTreeMap::new();
    if let Some(path) = &cfg.wait_ready {
        // All targets are polled at once: a gateway that takes ten minutes to start should
        // not make the others wait their turn.
        let waits: Vec<_> = all
            .iter()
            .map(|t| {
                let (t, path, deadline) = ((*t).clone(), path.clone(), cfg.ready_timeout);
                tokio::spawn(async move { t.wait_ready(&path, deadline).await })
            })
            .collect();
        for (t, w) in all.iter().zip(waits) {
            let took = w.await.map_err(|e| Error::Runtime {
                side: t.side,
                message: format!("readiness check failed: {e}"),
            })??;
            tracing::info!("{} ready after {:.1}s", t.side, took.as_secs_f64());
            ready_ms.insert(t.side.to_string(), took.as_millis() as u64);
        }
    }

    let started = Instant::now();
    // Reader thread -> dispatcher: bounded, so reading never runs far ahead of replay.
    let (ex_tx, ex_rx) = async_channel::bounded::<Exchange>(1024);
    let read_progress = progress.clone();
    let reader_thread = std::thread::Builder::new()
        .name("shadowdiff-reader".into())
        .spawn(move || -> (Result<()>, u64, Vec<String>) {
            let mut warnings = Vec::new();
            let res = loop {
                match reader.next_exchange() {
                    Ok(Some(ex)) => {
                        read_progress.read.fetch_add(1, Ordering::Relaxed);
                        warnings.extend(reader.take_warnings());
                        if ex_tx.send_blocking(ex).is_err() {
                            break Ok(()); // the run stopped early
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            warnings.extend(reader.take_warnings());
            (res, reader.exchanges_read(), warnings)
        })
        .map_err(|e| Error::Runtime {
            side: Side::Input,
            message: format!("cannot start the reader thread: {e}"),
        })?;

    let (job_tx, job_rx) = async_channel::bounded::<Job>(cfg.concurrency);
    let mut workers = Vec::with_capacity(cfg.concurrency);
    for _ in 0..cfg.concurrency {
        let rx = job_rx.clone();
        let t = targets.clone();
        let opts = cfg.compare.clone();
        let progress = progress.clone();
        workers.push(tokio::spawn(worker(rx, t, opts, progress)));
    }
    drop(job_rx);

    let (dispatcher_agg, selected) = dispatch(cfg, ex_rx, job_tx, &progress).await;

    let mut agg = dispatcher_agg;
    for w in workers {
        match w.await {
            Ok(a) => agg.merge(a),
            Err(e) => {
                return Err(Error::Runtime {
                    side: Side::Input,
                    message: format!("a replay worker failed: {e}"),
                })
            }
        }
    }
    let (read_result, exchanges_read, warnings) =
        tokio::task::spawn_blocking(move || reader_thread.join())
            .await
            .map_err(|e| Error::Runtime {
                side: Side::Input,
                message: format!("reader thread: {e}"),
            })?
            .map_err(|_| Error::Runtime {
                side: Side::Input,
                message: "the reader thread panicked".into(),
            })?;
    read_result?;
    let (filters, shard, selection_warnings) = cfg.selection.report(&selected);
    let mut warnings = warnings;
    warnings.extend(selection_warnings);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    debug_assert_eq!(agg.total() + selected.excluded(), exchanges_read);

    let th = cfg.thresholds.clone();
    let (summary, interfaces) = agg.finish(&th);
    let (verdict, gate_failures) = gate::evaluate(&summary, &interfaces, &th);
    Ok(RunResult {
        shadowdiff_result: RESULT_FORMAT,
        verdict,
        gate_failures,
        summary,
        interfaces,
        run: RunInfo {
            created: crate::recording::format::format_ts_us(crate::recording::format::now_us()),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            recordings: recording_names,
            baseline: cfg.baseline.clone(),
            candidate: cfg.candidate.clone(),
            secondary: cfg.secondary.clone(),
            exchanges_read,
            duration_ms: started.elapsed().as_millis() as u64,
            pacing: match cfg.pacing {
                Pacing::Closed => format!("closed loop, concurrency {}", cfg.concurrency),
                p => format!("{p}, at most {} in flight", cfg.concurrency),
            },
            ready_ms,
            thresholds: th,
            warnings,
            filters,
            shard,
        },
        trend: None,
    })
}

/// Keys, selects, filters and paces exchanges; returns the aggregate of the skipped ones and
/// what the selection kept.
async fn dispatch(
    cfg: &ReplayConfig,
    rx: async_channel::Receiver<Exchange>,
    tx: async_channel::Sender<Job>,
    progress: &Progress,
) -> (Aggregator, select::SelectionCounter) {
    let mut skipped = Aggregator::new();
    let mut selected = cfg.selection.counter();
    let start = Instant::now();
    let mut first_ts: Option<i64> = None;
    let mut n: u64 = 0;
    while let Ok(mut ex) = rx.recv().await {
        let interface = select::exchange_interface(&ex, &cfg.interface_key);
        if let Some(h) = &cfg.tenant_header {
            if let Some(v) = crate::exchange::header(&ex.request.headers, h) {
                ex.tenant = Some(v.to_string());
            }
        }
        if !cfg.selection.admit(&ex, &interface, &mut selected) {
            progress.excluded.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let reason = if ex.request.is_side_effecting() && !cfg.allow_side_effects {
            Some("side_effect")
        } else if ex.request.body_truncated {
            Some("truncated_body")
        } else {
            None
        };
        if let Some(reason) = reason {
            skipped.record_skip(&interface, reason);
            progress.done.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let scheduled = match cfg.pacing {
            Pacing::Closed => None,
            Pacing::Rate(r) => Some(start + Duration::from_secs_f64(n as f64 / r)),
            Pacing::Speed(x) => {
                let first = *first_ts.get_or_insert(ex.ts_us);
                let offset_us = (ex.ts_us - first).max(0) as f64 / x;
                Some(start + Duration::from_micros(offset_us as u64))
            }
        };
        n += 1;
        if let Some(at) = scheduled {
            tokio::time::sleep_until(TokioInstant::from_std(at)).await;
        }
        let job = Job {
            exchange: ex,
            interface,
            scheduled,
        };
        if tx.send(job).await.is_err() {
            break;
        }
    }
    (skipped, selected)
}

/// Takes jobs until the channel closes; returns its own aggregate.
async fn worker(
    rx: async_channel::Receiver<Job>,
    t: Targets,
    opts: CompareOptions,
    progress: Arc<Progress>,
) -> Aggregator {
    let mut agg = Aggregator::new();
    while let Ok(job) = rx.recv().await {
        let start = job.scheduled.unwrap_or_else(Instant::now);
        let req = &job.exchange.request;
        let (b, c) = tokio::join!(t.baseline.send(req, start), t.candidate.send(req, start));
        // The probe goes after the pair has answered, so it never adds load to the baseline
        // while the baseline's latency is being measured against the candidate's.
        let probe = match (&t.probe, &b) {
            (Some(p), Ok(_)) => Some(p.send(req, Instant::now()).await),
            _ => None,
        };
        if let Some(Err(e)) = &probe {
            agg.record_probe_error(&job.interface, &job.exchange.id, e);
        }
        let probe_ok = probe.as_ref().filter(|p| p.is_ok());
        let judgement = judge(&b, &c, probe_ok, &opts);
        let lat = match (&b, &c) {
            (Ok(b), Ok(c)) => Some(PairLatency {
                baseline_us: b.latency_us,
                candidate_us: c.latency_us,
            }),
            _ => None,
        };
        agg.record(&job.interface, &job.exchange.id, &judgement, lat);
        progress.done.fetch_add(1, Ordering::Relaxed);
    }
    agg
}
