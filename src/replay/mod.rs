//! The replay engine: streams recordings, sends each exchange to the baseline and the
//! candidate at the same moment (and, after they answered, to the noise probe), judges the
//! answers, and aggregates per worker. The stages:
//!
//! 1. the reader thread streams the recordings (blocking file and zstd I/O stays off the
//!    runtimes), keys each exchange, leaves out what the shard split and the filters exclude
//!    ([`select`]; counted per filter, not outcomes), skips what must not be replayed
//!    (counted, never dropped), stamps the rest with their start (closed loop, `--rate`, or
//!    `--speed`) and hands them over in batches through a bounded channel, so memory stays
//!    flat however large the input;
//! 2. one worker thread per core, each with its own single-threaded runtime and its own
//!    connections ([`target::ConnTarget`]), keeps its share of `concurrency` exchanges in
//!    flight, judges the answers and aggregates locally: an exchange never crosses threads
//!    once started. Jobs a worker took but cannot start yet go to a worker with free slots
//!    that asks for them ([`Sharing`]), so the whole `concurrency` is used however few
//!    exchanges are left;
//! 3. the aggregates are merged once at the end.

pub mod h1;
pub mod input;
pub mod recorded;
pub mod resend;
pub mod select;
pub mod target;

use crate::analysis::gate;
use crate::analysis::result::{RunInfo, RunResult, UNSENDABLE};
use crate::analysis::{Aggregator, PairLatency, Resent};
use crate::compare::{
    judge_for, CompareOptions, FetchErrorKind, Fetched, Judgement, NoiseSource, Outcome,
};
use crate::config::{Pacing, ReplayConfig, Rules};
use crate::error::{Error, Result};
use crate::exchange::{Exchange, Request, Side};
use crate::recording::RecordingReader;
use crate::report::diffs::{DiffLine, DiffSink};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use target::{ConnTarget, Target, TargetOptions};
use tokio::time::Instant as TokioInstant;

/// Exchanges the reader thread hands over at a time, at most (never more than twice a
/// worker's slots; what the worker taking a batch cannot start goes to idle workers that
/// ask for it).
const READ_BATCH: usize = 64;

/// One exchange on its way to a worker.
struct Job {
    exchange: Exchange,
    interface: String,
    /// When the exchange was scheduled to start; `None` in closed loop (start when taken).
    scheduled: Option<Instant>,
    /// The request may be sent more than once (a safe method, or declared safe).
    safe: bool,
}

/// The three targets of a run.
#[derive(Clone)]
struct Targets {
    baseline: Target,
    candidate: Target,
    probe: Option<Target>,
    recorded_noise: bool,
}

/// The targets as one replay worker uses them, with that worker's own connections; `show`
/// sends its one exchange through them too, so that it asks and judges as replay does.
pub struct WorkerTargets {
    baseline: ConnTarget,
    candidate: ConnTarget,
    probe: Probe,
    /// Take the recorded answer as the noise sample where no second call is made.
    recorded_noise: bool,
}

/// Where the noise probe goes.
enum Probe {
    /// `--no-noise-probe`.
    Off,
    /// The baseline again, over the baseline's own connections (no `--secondary` of its own).
    Baseline,
    /// A `--secondary` of its own.
    Own(Box<ConnTarget>),
}

/// What the targets answered to one exchange's request.
#[derive(Debug)]
pub struct Answers {
    /// The baseline's answer.
    pub baseline: Fetched,
    /// The candidate's answer.
    pub candidate: Fetched,
    /// The noise probe's answer, when one was asked for, with where it came from.
    pub probe: Option<(Fetched, NoiseSource)>,
    /// Requests sent a second time, per side.
    pub resent: Resent,
}

impl WorkerTargets {
    fn from_targets(t: Targets) -> Self {
        Self::new(t.baseline, t.candidate, t.probe, t.recorded_noise)
    }

    /// The targets with connections of their own: `probe` is where the noise probe goes
    /// (the baseline's URL again means the baseline asked twice, over its own connections;
    /// `None` sends none), and `recorded_noise` takes the recorded answer as the noise
    /// sample where no second call is made.
    pub fn new(
        baseline: Target,
        candidate: Target,
        probe: Option<Target>,
        recorded_noise: bool,
    ) -> Self {
        let probe = match probe {
            None => Probe::Off,
            Some(p) if p.url.trim_end_matches('/') == baseline.url.trim_end_matches('/') => {
                Probe::Baseline
            }
            Some(p) => Probe::Own(Box::new(ConnTarget::new(p))),
        };
        WorkerTargets {
            baseline: ConnTarget::new(baseline),
            candidate: ConnTarget::new(candidate),
            probe,
            recorded_noise,
        }
    }

    /// Sends `req` to the baseline and the candidate at the same moment (latency counted
    /// from `start`), then, once both answered, to the noise probe: a `--secondary` always,
    /// the baseline a second time only when `safe` (a request that may be repeated).
    pub async fn ask(&self, req: &Request, start: Instant, safe: bool) -> Answers {
        let ((b, b_resent), (c, c_resent)) = tokio::join!(
            self.baseline.send_counted(req, start),
            self.candidate.send_counted(req, start)
        );
        let mut resent = Resent {
            baseline: u8::from(b_resent),
            candidate: u8::from(c_resent),
            secondary: 0,
        };
        // The probe goes after the pair has answered. With other exchanges in flight it
        // still overlaps their pairs, so when it is the baseline again the candidate gets
        // the same second request at the same moment (its answer unused): both carry the
        // same load, and a baseline busier than the candidate cannot hide a slower candidate.
        let probe = match (&self.probe, &b) {
            (Probe::Own(p), Ok(_)) => {
                let (probe, again) = p.send_counted(req, Instant::now()).await;
                resent.secondary += u8::from(again);
                Some((probe, NoiseSource::Secondary))
            }
            // A request sent to the same baseline twice must be safe to repeat: a second
            // POST answers "already done", which is no measure of noise.
            // Over the baseline's own connections, as the candidate's goes over the
            // candidate's: the same connections, the same load.
            (Probe::Baseline, Ok(_)) if safe => {
                let now = Instant::now();
                let ((probe, again), (_, cand_again)) = tokio::join!(
                    self.baseline.send_counted(req, now),
                    self.candidate.send_counted(req, now)
                );
                resent.secondary += u8::from(again);
                resent.candidate += u8::from(cand_again);
                Some((probe, NoiseSource::Baseline))
            }
            _ => None,
        };
        Answers {
            baseline: b,
            candidate: c,
            probe,
            resent,
        }
    }

    /// Judges the answers to `ex` as replay does (see [`judge_answers`]).
    pub fn judge(&self, ex: &Exchange, a: &Answers, opts: &CompareOptions) -> Judgement {
        let probe = a.probe.as_ref().map(|(p, source)| (p, *source));
        judge_answers(
            ex,
            &a.baseline,
            &a.candidate,
            probe,
            self.recorded_noise,
            opts,
        )
    }
}

/// Judges one exchange's answers: the baseline's, the candidate's, and the second answer
/// that is the noise sample, when one was asked for (`probe`, with its source). Where none
/// was asked for and `recorded_noise` holds, the answer the recording holds is the sample
/// (see [`recorded`]); a second call that failed gives no sample at all. A request that no
/// HTTP connection can carry never reached the baseline, and is `skipped`, with its error.
pub fn judge_answers(
    ex: &Exchange,
    baseline: &Fetched,
    candidate: &Fetched,
    probe: Option<(&Fetched, NoiseSource)>,
    recorded_noise: bool,
    opts: &CompareOptions,
) -> Judgement {
    // Counting it as the baseline's error would pass an unsendable request off as an outage.
    if let Err(e) = baseline {
        if e.kind == FetchErrorKind::BadRequest {
            return Judgement {
                outcome: Outcome::Skipped,
                diffs: Vec::new(),
                probe: None,
                noise_source: None,
                error: Some(e.clone()),
            };
        }
    }
    // No second call was made (a write, or the probe is off): the answer production gave
    // at capture time is the other answer to this request.
    let recorded: Option<Fetched> = if probe.is_none() && recorded_noise && baseline.is_ok() {
        recorded::observed(ex.response.as_ref()).ok().map(Ok)
    } else {
        None
    };
    let (sample, source) = match probe {
        Some((p, source)) => (Some(p), source),
        None => (recorded.as_ref(), NoiseSource::Recording),
    };
    let sample = sample.filter(|p| p.is_ok());
    let mut judgement = judge_for(Some(&ex.request.path()), baseline, candidate, sample, opts);
    if let Some(p) = judgement.probe.as_mut() {
        if source == NoiseSource::Recording {
            recorded::drop_equal_redactions(p);
        }
        judgement.noise_source = Some(source);
    }
    judgement
}

impl Targets {
    /// The same targets with clients of their own (a worker's connections are its own).
    fn fresh(&self) -> Result<Targets> {
        Ok(Targets {
            baseline: self.baseline.fresh()?,
            candidate: self.candidate.fresh()?,
            probe: self.probe.as_ref().map(Target::fresh).transpose()?,
            recorded_noise: self.recorded_noise,
        })
    }
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
    /// Exchanges in the recordings as counted before the replay (lines of uncompressed
    /// files), 0 when not counted.
    pub exchanges_total: AtomicU64,
    /// Set when the reader has read the last exchange: `read` is then the exact total.
    pub read_finished: std::sync::atomic::AtomicBool,
}

/// A replay ready to start: every input opened and its header read, every target reached
/// (or ready under `--wait-ready`). Nothing has been sent that the comparison depends on.
pub struct Prepared {
    reader: RecordingReader,
    recording_names: Vec<String>,
    targets: Targets,
    ready_ms: std::collections::BTreeMap<String, u64>,
}

impl Prepared {
    /// Exchanges counted in the recordings before the replay, when they could be counted
    /// cheaply.
    pub fn counted(progress: &Progress) -> Option<u64> {
        match progress.exchanges_total.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }
}

/// Replays the recordings in `cfg` and returns the decided result.
pub async fn replay(cfg: &ReplayConfig, progress: Arc<Progress>) -> Result<RunResult> {
    let prepared = prepare(cfg, &progress).await?;
    run(cfg, prepared, progress).await
}

/// Replays from an already opened reader (the demo reads its embedded recording this way).
pub async fn replay_reader(
    cfg: &ReplayConfig,
    reader: RecordingReader,
    recording_names: Vec<String>,
    progress: Arc<Progress>,
) -> Result<RunResult> {
    let prepared = prepare_reader(cfg, reader, recording_names).await?;
    run(cfg, prepared, progress).await
}

/// Everything that can fail before the first request, done first: a missing file, a file
/// that is not a recording or a target that cannot be reached is said before a replay
/// starts, not after it reports having replayed nothing.
pub async fn prepare(cfg: &ReplayConfig, progress: &Progress) -> Result<Prepared> {
    let reader = input::open_counted(&cfg.recordings, cfg.read, progress)?;
    let names: Vec<String> = cfg
        .recordings
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    prepare_reader(cfg, reader, names).await
}

/// [`prepare`] for an already opened reader.
pub async fn prepare_reader(
    cfg: &ReplayConfig,
    reader: RecordingReader,
    recording_names: Vec<String>,
) -> Result<Prepared> {
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
        recorded_noise: cfg.recorded_noise,
    };
    let all: Vec<&Target> = [
        Some(&targets.baseline),
        Some(&targets.candidate),
        targets.probe.as_ref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    // With --wait-ready a refused connection means "still starting", which the poll below
    // waits out; without it, a target that cannot be reached is said at once, not as one
    // error per exchange.
    if cfg.wait_ready.is_none() {
        for t in &all {
            t.preflight().await?;
        }
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
            let took = w
                .await
                .map_err(|e| Error::internal(format!("{} readiness check", t.side), e))??;
            tracing::info!("{} ready after {:.1}s", t.side, took.as_secs_f64());
            ready_ms.insert(t.side.to_string(), took.as_millis() as u64);
        }
    }
    Ok(Prepared {
        reader,
        recording_names,
        targets,
        ready_ms,
    })
}

/// Replays a prepared run. A recording line that cannot be read (without
/// `--skip-bad-lines`) stops the reading, not the run: what was read before it is judged and
/// the result says it is incomplete (`run.incomplete`), so no judged exchange is lost.
pub async fn run(
    cfg: &ReplayConfig,
    prepared: Prepared,
    progress: Arc<Progress>,
) -> Result<RunResult> {
    let Prepared {
        reader,
        recording_names,
        targets,
        ready_ms,
    } = prepared;

    let started = Instant::now();
    // One worker thread per core, each with its own single-threaded runtime, its own
    // connections and its own aggregate: an exchange's requests, answers and judgement never
    // cross threads, so the hot path needs no locks and no cross-thread wake-ups. The
    // reader thread reads, selects and paces, and hands jobs over in batches.
    let n_workers = tokio::runtime::Handle::current()
        .metrics()
        .num_workers()
        .max(1)
        .min(cfg.concurrency);
    let (job_tx, job_rx) = async_channel::bounded::<Vec<Job>>(2 * n_workers);
    // Every file is created before any thread starts, so a failure here leaves nothing
    // running behind the error.
    // Part 0 is the reader's (skipped exchanges), part n + 1 worker n's.
    let mut sinks = (0..=n_workers)
        .map(|n| {
            cfg.diffs
                .as_ref()
                .map(|p| DiffSink::create(p, n))
                .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    let skip_sink = sinks.remove(0);
    let slots_of =
        |n: usize| cfg.concurrency / n_workers + usize::from(n < cfg.concurrency % n_workers);
    // A worker takes a batch only when it has a free slot, and a batch holds at most twice
    // a worker's slots: with few slots (a small --concurrency over many cores) jobs still
    // spread over the workers instead of queueing behind one. Batches of 64 instead of 32
    // at 32 slots per worker were 7% faster (fewer hand-offs with the reader thread).
    // A batch can hold more than a worker can start: the surplus it holds is handed on to
    // a worker that runs out of work ([`Sharing`]), so the concurrency asked for holds in
    // small runs and in a run's last exchanges too.
    let batch_size = READ_BATCH.min(2 * slots_of(n_workers - 1));
    let sharing = Arc::new(Sharing::new(n_workers));
    let dispatch_cfg = Arc::new(cfg.clone());
    let read_progress = progress.clone();
    let reader_thread = std::thread::Builder::new()
        .name("shadowdiff-reader".into())
        .spawn(move || {
            dispatch(
                &dispatch_cfg,
                reader,
                job_tx,
                skip_sink,
                &read_progress,
                batch_size,
            )
        })
        .map_err(|e| Error::internal("cannot start the reader thread", e))?;

    let paced = !matches!(cfg.pacing, Pacing::Closed);
    let mut workers = Vec::with_capacity(n_workers);
    for (n, sink) in sinks.into_iter().enumerate() {
        let slots = slots_of(n);
        let rx = job_rx.clone();
        let t = targets.clone();
        let rules = cfg.rules.clone();
        let progress = progress.clone();
        let sharing = sharing.clone();
        let handle = std::thread::Builder::new()
            .name(format!("shadowdiff-worker-{n}"))
            .spawn(move || -> Result<(Aggregator, Option<DiffSink>)> {
                let unclosed = Unclosed::new(sharing.clone());
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::internal("cannot start a worker runtime", e))?;
                // Each worker's clients (and so connections) are its own.
                let t = Rc::new(WorkerTargets::from_targets(t.fresh()?));
                let w = Worker {
                    n,
                    slots,
                    paced,
                    sharing,
                    unclosed,
                };
                Ok(rt.block_on(worker(rx, t, rules, sink, progress, w)))
            })
            .map_err(|e| Error::internal("cannot start a worker thread", e))?;
        workers.push(handle);
    }
    drop(job_rx);

    let mut agg = Aggregator::new();
    let mut parts: Vec<PathBuf> = Vec::new();
    let mut sink_failures: Vec<String> = Vec::new();
    let mut close = |sink: Option<DiffSink>| {
        if let Some((path, failed)) = sink.map(DiffSink::close) {
            if let Some(e) = failed {
                sink_failures.push(format!(
                    "writing {} failed ({e}): the diffs file lacks the exchanges after that point",
                    path.display()
                ));
            }
            parts.push(path);
        }
    };
    let dispatched = join_thread(reader_thread, "the reader thread").await?;
    agg.merge(dispatched.skipped);
    close(dispatched.sink);
    for w in workers {
        let (a, sink) = join_thread(w, "a replay worker").await??;
        agg.merge(a);
        close(sink);
    }
    let Dispatched {
        read_result,
        exchanges_read,
        warnings,
        selected,
        ..
    } = dispatched;
    let incomplete = read_result.err().map(|e| e.to_string());
    let (filters, shard, selection_warnings) = cfg.selection.report(&selected);
    let mut warnings = warnings;
    warnings.extend(selection_warnings);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    debug_assert_eq!(agg.total() + selected.excluded(), exchanges_read);
    if let Some(w) = agg
        .oldest_recorded_us()
        .and_then(|ts| recorded::age_warning(ts, crate::recording::format::now_us()))
    {
        tracing::warn!("{w}");
        warnings.push(w);
    }

    let th = cfg.thresholds.clone();
    let (summary, interfaces) = agg.finish(&th);
    let keys: Vec<&str> = interfaces.iter().map(|i| i.interface.as_str()).collect();
    for w in cfg.rules.unmatched(&keys, &cfg.safety) {
        tracing::warn!("{w}");
        warnings.push(w);
    }
    if let Some(path) = &cfg.diffs {
        let (_, cut) = crate::report::diffs::finish(path, &parts, &interfaces)?;
        for w in sink_failures.into_iter().chain(cut) {
            tracing::warn!("{w}");
            warnings.push(w);
        }
    }
    Ok(gate::decided(
        summary,
        interfaces,
        RunInfo {
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
            incomplete,
        },
    ))
}

/// What the reader thread hands back when the recordings are exhausted.
struct Dispatched {
    /// Why reading stopped early, if it did.
    read_result: Result<()>,
    exchanges_read: u64,
    warnings: Vec<String>,
    /// The aggregate of the exchanges skipped (not sent).
    skipped: Aggregator,
    sink: Option<DiffSink>,
    selected: select::SelectionCounter,
}

/// Runs on the reader thread: reads the recordings, keys, selects and filters exchanges,
/// skips what must not be replayed (counted, never dropped), stamps each job with its
/// scheduled start, and hands jobs to the workers in batches, so the threads wake each
/// other once per batch, not once per exchange. The bounded channel keeps reading from
/// running far ahead of replay.
fn dispatch(
    cfg: &ReplayConfig,
    mut reader: RecordingReader,
    tx: async_channel::Sender<Vec<Job>>,
    mut sink: Option<DiffSink>,
    progress: &Progress,
    batch_size: usize,
) -> Dispatched {
    let mut skipped = Aggregator::new();
    let mut selected = cfg.selection.counter();
    let mut warnings = Vec::new();
    let start = Instant::now();
    let mut first_ts: Option<i64> = None;
    let mut n: u64 = 0;
    let mut batch = Vec::with_capacity(batch_size);
    let read_result = loop {
        let mut ex = match reader.next_exchange() {
            Ok(Some(ex)) => ex,
            Ok(None) => {
                progress.read_finished.store(true, Ordering::Relaxed);
                break Ok(());
            }
            // What was read before a bad line is still replayed.
            Err(e) => {
                progress.read_finished.store(true, Ordering::Relaxed);
                break Err(e);
            }
        };
        progress.read.fetch_add(1, Ordering::Relaxed);
        warnings.extend(reader.take_warnings());
        let interface = select::exchange_interface(&ex, &cfg.keyer);
        if let Some(h) = &cfg.tenant_header {
            if let Some(v) = crate::exchange::header(&ex.request.headers, h) {
                ex.tenant = Some(v.to_string());
            }
        }
        if !cfg.selection.admit(&ex, &interface, &mut selected) {
            progress.excluded.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Some(t) = &ex.tenant {
            skipped.record_tenant(&interface, t);
        }
        let safe = cfg.safety.is_safe(&ex.request, &interface);
        if !safe {
            skipped.record_side_effecting(&interface);
        }
        let reason = if !safe && !cfg.allow_side_effects {
            Some("side_effect")
        } else if ex.request.body_truncated {
            Some("truncated_body")
        } else {
            None
        };
        if let Some(reason) = reason {
            skipped.record_skip(&interface, reason);
            if let Some(s) = sink.as_mut() {
                s.write(&DiffLine::skipped(&ex.id, &interface, reason));
            }
            progress.done.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let scheduled = match cfg.pacing {
            Pacing::Closed => None,
            // Checked: a far moment waits long, it never panics.
            Pacing::Rate(r) => Some(at(start, n as f64 / r)),
            Pacing::Speed(x) => {
                let first = *first_ts.get_or_insert(ex.ts_us);
                let offset_us = ex.ts_us.saturating_sub(first).max(0) as f64 / x;
                Some(at(start, offset_us / 1e6))
            }
        };
        n += 1;
        batch.push(Job {
            exchange: ex,
            interface,
            scheduled,
            safe,
        });
        // A paced job is handed over at once so that it is not held back until its batch
        // fills; closed-loop jobs go in full batches.
        if batch.len() >= batch_size || scheduled.is_some() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            if tx.send_blocking(full).is_err() {
                break Ok(()); // every worker has stopped
            }
        }
    };
    if !batch.is_empty() {
        let _ = tx.send_blocking(batch);
    }
    warnings.extend(reader.take_warnings());
    Dispatched {
        read_result,
        exchanges_read: reader.exchanges_read(),
        warnings,
        skipped,
        sink,
        selected,
    }
}

/// `secs` after `start`, or a year after it when that is further or not a time at all.
fn at(start: Instant, secs: f64) -> Instant {
    let far = Duration::from_secs(365 * 24 * 3600);
    let d = Duration::try_from_secs_f64(secs).map_or(far, |d| d.min(far));
    start + d
}

/// Waits, off the runtime, for a thread to finish; a panic becomes an error.
async fn join_thread<T: Send + 'static>(
    handle: std::thread::JoinHandle<T>,
    what: &'static str,
) -> Result<T> {
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .map_err(|e| Error::internal(what, e))?
        .map_err(|_| Error::internal(what, "panicked"))
}

/// What one exchange's replay produced, handed back to its worker for aggregation.
struct Replayed {
    job: Job,
    judgement: crate::compare::Judgement,
    lat: Option<PairLatency>,
    probe_error: Option<crate::compare::FetchError>,
    /// The candidate's failure on an exchange the baseline failed too.
    candidate_error: Option<crate::compare::FetchError>,
    /// Requests of this exchange sent a second time, per side.
    resent: Resent,
    /// The candidate's answer, when it was its no-route answer.
    missing_rule_answer: Option<crate::compare::Observed>,
}

/// Sends one exchange to the targets and judges the answers.
async fn replay_one(job: Job, t: Rc<WorkerTargets>, opts: Arc<CompareOptions>) -> Replayed {
    let start = match job.scheduled {
        Some(at) => {
            tokio::time::sleep_until(TokioInstant::from_std(at)).await;
            at
        }
        None => Instant::now(),
    };
    let answers = t.ask(&job.exchange.request, start, job.safe).await;
    let judgement = t.judge(&job.exchange, &answers, &opts);
    let Answers {
        baseline: b,
        candidate: c,
        probe,
        resent,
    } = answers;
    if judgement.outcome == Outcome::Skipped {
        return Replayed {
            judgement,
            job,
            lat: None,
            probe_error: None,
            candidate_error: None,
            resent,
            missing_rule_answer: None,
        };
    }
    let probe_error = match probe {
        Some((Err(e), _)) => Some(e),
        _ => None,
    };
    // The outcome is the baseline's error; a candidate that failed as well must not vanish
    // behind it (both down is what a too short `--timeout` or a shared dependency gives).
    let (lat, candidate_error) = match (&b, &c) {
        (Ok(b), Ok(c)) => (
            Some(PairLatency {
                baseline_us: b.latency_us,
                candidate_us: c.latency_us,
            }),
            None,
        ),
        (Err(_), Err(e)) => (None, Some(e.clone())),
        _ => (None, None),
    };
    let missing_rule_answer = c.ok().filter(|_| judgement.outcome == Outcome::MissingRule);
    Replayed {
        job,
        judgement,
        lat,
        probe_error,
        candidate_error,
        resent,
        missing_rule_answer,
    }
}

/// Jobs handed from a worker that holds more than it can start to workers that ran out of
/// work. A batch from the reader can hold more jobs than the worker that takes it has free
/// slots (batches of up to 64 keep hand-offs with the reader rare), and in closed loop a
/// worker fetches its next batch while its slots are busy; without this, the jobs it holds
/// would wait for its own slots while another worker's stand idle, which halves the
/// concurrency of a small run and of a run's last exchanges.
///
/// A worker that has free slots and nothing to start asks (adds its free slots to
/// `wanted` and wakes the holders); a holder moves what was asked for to `spare` and rings
/// `given`. In the common case (the reader ahead, no worker idle) this costs a worker one
/// relaxed load per exchange and a few atomic operations per batch; locks and wake-ups
/// happen only when a worker would otherwise wait with free slots.
struct Sharing {
    /// Jobs given away, for any worker with free slots.
    spare: Mutex<Vec<Job>>,
    /// Jobs in `spare`, read without the lock.
    spare_len: AtomicUsize,
    /// Free slots of workers waiting for work.
    wanted: AtomicUsize,
    /// Workers holding jobs they have not started.
    holding: AtomicUsize,
    /// Workers that have not yet found the reader's channel closed. One may have taken the
    /// last batch and not yet said it holds jobs: until every worker has seen the channel
    /// closed, no idle worker may conclude that nothing is left.
    unclosed: AtomicUsize,
    /// Rung when jobs are given and when the last holder stops holding.
    given: tokio::sync::Notify,
    /// Each worker's wake-up while it holds jobs, so that an ask reaches it while all its
    /// slots are busy.
    asked: Vec<AtomicWaker>,
}

impl Sharing {
    fn new(workers: usize) -> Self {
        Sharing {
            spare: Mutex::new(Vec::new()),
            spare_len: AtomicUsize::new(0),
            wanted: AtomicUsize::new(0),
            holding: AtomicUsize::new(0),
            unclosed: AtomicUsize::new(workers),
            given: tokio::sync::Notify::new(),
            asked: (0..workers).map(|_| AtomicWaker::new()).collect(),
        }
    }

    /// Whether workers want more than has been given.
    fn short(&self) -> bool {
        self.wanted.load(Ordering::SeqCst) > self.spare_len.load(Ordering::SeqCst)
    }

    /// Moves up to what is wanted and not yet given from the back of `pending` to `spare`.
    fn give(&self, pending: &mut VecDeque<Job>) {
        let Ok(mut spare) = self.spare.lock() else {
            return;
        };
        let short = self
            .wanted
            .load(Ordering::SeqCst)
            .saturating_sub(spare.len());
        let n = short.min(pending.len());
        if n == 0 {
            return;
        }
        let from = pending.len() - n;
        spare.extend(pending.drain(from..));
        self.spare_len.store(spare.len(), Ordering::SeqCst);
        drop(spare);
        self.given.notify_waiters();
    }

    /// Moves up to `n` spare jobs to `pending`.
    fn take(&self, n: usize, pending: &mut VecDeque<Job>) {
        let Ok(mut spare) = self.spare.lock() else {
            return;
        };
        let from = spare.len() - n.min(spare.len());
        pending.extend(spare.drain(from..));
        self.spare_len.store(spare.len(), Ordering::SeqCst);
    }

    /// Adds `free` slots to what is wanted and wakes every worker holding jobs.
    fn ask(&self, free: usize) {
        self.wanted.fetch_add(free, Ordering::SeqCst);
        if self.holding.load(Ordering::SeqCst) > 0 {
            for w in &self.asked {
                w.wake();
            }
        }
    }

    /// Withdraws an ask.
    fn withdraw(&self, free: usize) {
        self.wanted.fetch_sub(free, Ordering::SeqCst);
    }

    /// Counts a worker that found the channel closed (once per worker).
    fn closed_seen(&self) {
        if self.unclosed.fetch_sub(1, Ordering::SeqCst) == 1
            && self.wanted.load(Ordering::SeqCst) > 0
        {
            // An idle worker may be waiting only to learn that every batch is accounted for.
            self.given.notify_waiters();
        }
    }

    /// Whether no job can come any more from the reader or another worker.
    fn drained(&self) -> bool {
        self.unclosed.load(Ordering::SeqCst) == 0 && self.holding.load(Ordering::SeqCst) == 0
    }

    /// Publishes that this worker now holds jobs, or no longer does.
    fn set_holding(&self, holds: bool) {
        if holds {
            self.holding.fetch_add(1, Ordering::SeqCst);
        } else if self.holding.fetch_sub(1, Ordering::SeqCst) == 1
            && self.wanted.load(Ordering::SeqCst) > 0
        {
            // An idle worker may be waiting only to learn that nobody holds jobs any more.
            self.given.notify_waiters();
        }
    }
}

/// Whether a worker holds jobs it has not started, published in [`Sharing::holding`]. A
/// worker that stops for any reason, a panic included, stops holding: idle workers wait
/// while anyone holds jobs, and would otherwise wait for ever, and the run never end.
struct Holding<'a> {
    sharing: &'a Sharing,
    on: bool,
}

impl<'a> Holding<'a> {
    fn new(sharing: &'a Sharing) -> Self {
        Holding { sharing, on: false }
    }

    fn set(&mut self, on: bool) {
        if self.on != on {
            self.on = on;
            self.sharing.set_holding(on);
        }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// A worker thread's place in [`Sharing::unclosed`], taken first thing in the thread: it is
/// given up once, when the worker finds the reader's channel closed, or when the thread ends
/// any other way (its runtime or targets failed to start, a panic), so that idle workers
/// never wait for a worker that will not come.
struct Unclosed {
    sharing: Arc<Sharing>,
    open: bool,
}

impl Unclosed {
    fn new(sharing: Arc<Sharing>) -> Self {
        Unclosed {
            sharing,
            open: true,
        }
    }

    /// This worker found the reader's channel closed.
    fn saw_close(&mut self) {
        if std::mem::replace(&mut self.open, false) {
            self.sharing.closed_seen();
        }
    }
}

impl Drop for Unclosed {
    fn drop(&mut self) {
        self.saw_close();
    }
}

/// One worker's place in the pool.
struct Worker {
    /// Its index (for its wake-up in [`Sharing::asked`]).
    n: usize,
    /// Exchanges it keeps in flight at most.
    slots: usize,
    /// Whether jobs carry a scheduled start.
    paced: bool,
    sharing: Arc<Sharing>,
    /// Its place in [`Sharing::unclosed`].
    unclosed: Unclosed,
}

/// Takes jobs until the channel closes, keeping up to `slots` exchanges in flight, and
/// aggregates their results itself. A few workers each with many exchanges in flight keep
/// the number of aggregates (and their histograms) at the number of workers, not at the
/// concurrency.
async fn worker(
    rx: async_channel::Receiver<Vec<Job>>,
    t: Rc<WorkerTargets>,
    rules: Arc<Rules>,
    mut sink: Option<DiffSink>,
    progress: Arc<Progress>,
    w: Worker,
) -> (Aggregator, Option<DiffSink>) {
    let Worker {
        n,
        slots,
        paced,
        sharing,
        mut unclosed,
    } = w;
    let mut agg = Aggregator::new();
    // Rules resolved once per interface, then reused for every exchange of it.
    let mut options: HashMap<String, Arc<CompareOptions>> = HashMap::new();
    // Polled by this worker itself rather than spawned: an exchange's requests, answers and
    // aggregation stay on one thread, with no hand-off between tasks per exchange.
    let mut in_flight = FuturesUnordered::new();
    let mut pending: VecDeque<Job> = VecDeque::new();
    let mut open = true;
    let mut holds = Holding::new(&sharing);
    loop {
        while in_flight.len() < slots {
            let Some(job) = pending.pop_front() else {
                break;
            };
            let opts = match options.get(&job.interface) {
                Some(o) => o.clone(),
                None => {
                    let o = Arc::new(rules.options_for(&job.interface));
                    options.insert(job.interface.clone(), o.clone());
                    o
                }
            };
            in_flight.push(replay_one(job, t.clone(), opts));
        }
        let free = slots - in_flight.len();
        if free > 0 && sharing.spare_len.load(Ordering::Relaxed) > 0 {
            // Free slots mean nothing is pending: start what others gave away first.
            sharing.take(free, &mut pending);
            if !pending.is_empty() {
                continue;
            }
        }
        if !pending.is_empty() && sharing.wanted.load(Ordering::Relaxed) > 0 {
            sharing.give(&mut pending);
        }
        if holds.on == pending.is_empty() {
            holds.set(!holds.on);
        }
        let r = if holds.on {
            // Every slot is busy: wait for an answer, or for a worker that asks for what
            // this one holds.
            let asked = std::future::poll_fn(|cx| {
                sharing.asked[n].register(cx.waker());
                if sharing.short() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            tokio::select! {
                biased;
                Some(done) = in_flight.next() => done,
                _ = asked => continue,
            }
        } else if free == 0 && (paced || !open) {
            // A paced job is taken only when a slot is free: taken by a busy worker it would
            // start late while another worker may be idle.
            match in_flight.next().await {
                Some(done) => done,
                None => continue,
            }
        } else if open && (free == 0 || !rx.is_empty()) {
            // In closed loop the next batch is fetched while the slots are busy (latency
            // counts from the send, and fetching ahead measured 5% faster).
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => done,
                batch = rx.recv() => {
                    match batch {
                        Ok(batch) => pending.extend(batch),
                        Err(_) => {
                            open = false;
                            unclosed.saw_close();
                        }
                    }
                    continue;
                }
            }
        } else {
            // Free slots and nothing to start: ask the workers that hold jobs, and wait for
            // an answer, a batch, or jobs given. The wake-up is armed before anything is
            // checked, so a gift or the last holder letting go cannot slip past.
            let given = sharing.given.notified();
            tokio::pin!(given);
            given.as_mut().enable();
            sharing.ask(free);
            if sharing.spare_len.load(Ordering::SeqCst) > 0 {
                // Given before the wake-up was armed: taken at the top of the loop.
                sharing.withdraw(free);
                continue;
            }
            if !open && in_flight.is_empty() && sharing.drained() {
                // Nothing will come from the reader, nobody holds jobs or may yet: done.
                sharing.withdraw(free);
                break;
            }
            let r = tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => Some(done),
                batch = rx.recv(), if open => {
                    match batch {
                        Ok(batch) => pending.extend(batch),
                        Err(_) => {
                            open = false;
                            unclosed.saw_close();
                        }
                    }
                    None
                }
                _ = &mut given => None,
            };
            sharing.withdraw(free);
            match r {
                Some(done) => done,
                None => continue,
            }
        };
        let (id, interface) = (&r.job.exchange.id, &r.job.interface);
        if let Some(e) = &r.probe_error {
            agg.record_probe_error(interface, id, e);
        }
        if let Some(e) = &r.candidate_error {
            agg.record_candidate_failure(interface, id, e);
        }
        if r.resent != Resent::default() {
            agg.record_resent(interface, r.resent);
        }
        if r.judgement.outcome == Outcome::Skipped {
            agg.record_skip(interface, UNSENDABLE);
            if let Some(e) = &r.judgement.error {
                agg.record_unsendable(interface, id, e);
            }
        } else {
            agg.record_exchange(interface, &r.job.exchange, &r.judgement, r.lat);
            if let Some(answer) = &r.missing_rule_answer {
                agg.record_missing_answer(interface, id, answer);
            }
            if r.judgement.probe.is_some()
                && r.judgement.noise_source == Some(NoiseSource::Recording)
            {
                agg.record_recorded_sample_at(r.job.exchange.ts_us);
            }
        }
        if let Some(s) = sink.as_mut() {
            if let Some(mut line) = DiffLine::judged(id, interface, &r.judgement) {
                if line.outcome == Outcome::Skipped {
                    line.skip_reason = Some(UNSENDABLE.to_string());
                }
                s.write(&line);
            }
        }
        progress.done.fetch_add(1, Ordering::Relaxed);
    }
    (agg, sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP/1.1 server on a real socket that answers every request after `delay`.
    async fn slow_server(delay: Duration) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            tokio::time::sleep(delay).await;
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        url
    }

    fn job(i: usize) -> Job {
        Job {
            exchange: Exchange {
                id: format!("e{i}"),
                ts_us: 0,
                interface: None,
                tenant: None,
                request: crate::exchange::Request {
                    method: "GET".into(),
                    uri: format!("/x/{i}"),
                    version: "HTTP/1.1".into(),
                    ..Default::default()
                },
                response: None,
                latency_us: None,
            },
            interface: "GET /x/{id}".into(),
            scheduled: None,
            safe: true,
        }
    }

    /// Runs `batches` through two workers of `slots` slots each, as a replay does; returns
    /// how long until both were done and how many exchanges they judged.
    /// Baseline and candidate both at `url`, no probe.
    fn same_targets(url: &str, slots: usize) -> Targets {
        let opts = TargetOptions {
            timeout: Duration::from_secs(10),
            max_body: 1024,
            pool_size: slots,
            host_header: crate::cli::HostHeaderMode::Target,
            set_headers: Vec::new(),
        };
        Targets {
            baseline: Target::new(Side::Baseline, url, opts.clone()).unwrap(),
            candidate: Target::new(Side::Candidate, url, opts).unwrap(),
            probe: None,
            recorded_noise: false,
        }
    }

    /// Worker `n` with `slots` slots on a thread and runtime of its own, as a replay runs it.
    fn spawn_worker(
        n: usize,
        slots: usize,
        rx: async_channel::Receiver<Vec<Job>>,
        targets: &Targets,
        sharing: &Arc<Sharing>,
    ) -> std::thread::JoinHandle<Aggregator> {
        let (t, sharing) = (targets.fresh().unwrap(), sharing.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let w = Worker {
                n,
                slots,
                paced: false,
                unclosed: Unclosed::new(sharing.clone()),
                sharing,
            };
            let t = Rc::new(WorkerTargets::from_targets(t));
            let progress = Arc::new(Progress::default());
            rt.block_on(worker(rx, t, Arc::default(), None, progress, w))
                .0
        })
    }

    async fn two_workers(url: &str, slots: usize, batches: Vec<Vec<Job>>) -> (Duration, u64) {
        let targets = same_targets(url, slots);
        let (tx, rx) = async_channel::bounded::<Vec<Job>>(4);
        let sharing = Arc::new(Sharing::new(2));
        let started = Instant::now();
        let handles: Vec<_> = (0..2)
            .map(|n| spawn_worker(n, slots, rx.clone(), &targets, &sharing))
            .collect();
        drop(rx);
        for b in batches {
            tx.send(b).await.unwrap();
        }
        drop(tx);
        let mut total = 0;
        for h in handles {
            let agg = tokio::task::spawn_blocking(move || h.join().unwrap())
                .await
                .unwrap();
            total += agg.total();
        }
        (started.elapsed(), total)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_a_worker_cannot_start_go_to_a_worker_with_free_slots() {
        let delay = Duration::from_millis(300);
        let url = slow_server(delay).await;
        // One batch of 16 for two workers of 8 slots: one round, not two.
        let (took, done) = two_workers(&url, 8, vec![(0..16).map(job).collect()]).await;
        assert_eq!(done, 16);
        assert!(took < Duration::from_millis(550), "took {took:?}");
        // Batches of 16 with fetching ahead: four rounds for 64 exchanges, not five or six.
        let batches = (0..4)
            .map(|b| (b * 16..b * 16 + 16).map(job).collect())
            .collect();
        let (took, done) = two_workers(&url, 8, batches).await;
        assert_eq!(done, 64);
        assert!(took < Duration::from_millis(1450), "took {took:?}");
    }

    #[test]
    fn a_worker_that_stops_while_holding_jobs_stops_holding() {
        let sharing = Arc::new(Sharing::new(1));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _unclosed = Unclosed::new(sharing.clone());
            let mut h = Holding::new(&sharing);
            h.set(true);
            assert_eq!(sharing.holding.load(Ordering::SeqCst), 1);
            assert!(!sharing.drained());
            panic!("a bug in judging");
        }));
        assert!(outcome.is_err());
        // Idle workers wait while anyone holds jobs or may yet: a worker gone must not count.
        assert_eq!(sharing.holding.load(Ordering::SeqCst), 0);
        assert!(sharing.drained());
    }

    /// A worker thread that ends before it ever takes a job (its runtime or its targets
    /// failed to start) must not leave the others waiting for it: with the channel closed at
    /// once, the one healthy worker of two still ends.
    #[test]
    fn a_worker_that_never_started_is_not_waited_for() {
        let targets = same_targets("http://127.0.0.1:9", 1);
        let sharing = Arc::new(Sharing::new(2));
        // The other worker's thread ended before `worker` ran.
        drop(Unclosed::new(sharing.clone()));
        let (tx, rx) = async_channel::bounded::<Vec<Job>>(1);
        drop(tx);
        let w = spawn_worker(0, 4, rx, &targets, &sharing);
        let waited = Instant::now();
        while !w.is_finished() && waited.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            w.is_finished(),
            "the worker waited for one that never started"
        );
    }

    #[test]
    fn what_is_asked_for_is_given_once_and_taken() {
        let s = Sharing::new(2);
        let mut held: VecDeque<Job> = (0..10).map(job).collect();
        s.set_holding(true);
        assert!(!s.short());
        s.ask(4);
        assert!(s.short());
        s.give(&mut held);
        assert_eq!((held.len(), s.spare_len.load(Ordering::SeqCst)), (6, 4));
        // Given already: asked again before the asker took it, nothing more goes.
        assert!(!s.short());
        s.give(&mut held);
        assert_eq!(held.len(), 6);
        s.withdraw(4);
        let mut mine = VecDeque::new();
        s.take(8, &mut mine);
        assert_eq!((mine.len(), s.spare_len.load(Ordering::SeqCst)), (4, 0));
        s.set_holding(false);
        assert_eq!(s.holding.load(Ordering::SeqCst), 0);
    }
}
