//! The replay engine: streams recordings, sends each exchange to the baseline and the
//! candidate at the same moment (and, after they answered, to the noise probe), judges the
//! answers, and aggregates per worker. The stages, each in a file of its own:
//!
//! 1. [`dispatch`], the reader thread: streams the recordings, keys each exchange, leaves out
//!    what the shard split and the filters exclude ([`select`]; counted per filter, not
//!    outcomes), skips what must not be replayed (counted, never dropped), stamps the rest
//!    with their start ([`pacing`]: closed loop, `--rate`, or `--speed`) and hands them over
//!    in batches through a bounded channel, so memory stays flat however large the input;
//! 2. [`worker`]: one worker thread per core, each with its own single-threaded runtime and
//!    its own connections ([`target::ConnTarget`]), keeps its share of `concurrency`
//!    exchanges in flight, sends each with [`WorkerTargets`] and judges the answers with
//!    [`judge_answers`] (the steps `show` uses too), and aggregates locally: an exchange
//!    never crosses threads once started, and jobs a worker cannot start yet go to a worker
//!    with free slots that asks for them;
//! 3. [`run`] (this file) checks the targets, starts the threads, and merges the aggregates
//!    once at the end.

pub mod connect;
mod dispatch;
pub mod h1;
pub mod input;
mod pacing;
pub mod recorded;
pub mod resend;
pub mod select;
pub mod target;
pub mod upstream;
mod worker;

use crate::analysis::gate;
use crate::analysis::result::{RunInfo, RunResult};
use crate::analysis::{Aggregator, Resent};
use crate::compare::upstream::{diff_calls, Forwarded};
use crate::compare::{
    judge_for, CompareOptions, FetchErrorKind, Fetched, Judgement, NoiseSource, Outcome,
};
use crate::config::{Pacing, ReplayConfig};
use crate::error::{Error, Result};
use crate::exchange::{Exchange, Request, Side};
use crate::recording::RecordingReader;
use crate::report::diffs::DiffSink;
use dispatch::{dispatch, Dispatched};
use std::borrow::Cow;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use target::{ConnTarget, Target, TargetOptions};
use worker::{worker, Sharing, Unclosed, Worker};

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
    /// shadowdiff playing both gateways' upstreams, when it does.
    plays: Option<Arc<upstream::Plays>>,
}

/// The targets as one replay worker uses them, with that worker's own connections; `show`
/// sends its one exchange through them too, so that it asks and judges as replay does.
pub struct WorkerTargets {
    baseline: ConnTarget,
    candidate: ConnTarget,
    probe: Probe,
    /// Take the recorded answer as the noise sample where no second call is made.
    recorded_noise: bool,
    /// shadowdiff playing both gateways' upstreams, when it does.
    plays: Option<Arc<upstream::Plays>>,
    /// Whether the candidate's request goes out first on the next exchange. The two sends
    /// of a pair, and the two reads, happen one after the other on this thread: the side
    /// served second waits a few microseconds, or a whole preemption on a starved machine.
    /// Alternated, that wait falls on each side equally often, so the latency rules' sign
    /// tests see a difference between the targets, not the order they were served in.
    candidate_first: AtomicBool,
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
    /// What the gateways forwarded, when shadowdiff played their upstreams.
    pub upstream: Option<UpstreamCalls>,
}

/// What the gateways forwarded for one exchange.
#[derive(Debug, Default)]
pub struct UpstreamCalls {
    /// The baseline's and the candidate's calls for the pair's requests.
    pub pair: upstream::Calls,
    /// The noise probe's calls, when the probe went through a gateway to the baseline's
    /// upstream.
    pub probe: Option<Vec<Forwarded>>,
}

impl WorkerTargets {
    fn from_targets(t: Targets) -> Self {
        let plays = t.plays.clone();
        Self::new(t.baseline, t.candidate, t.probe, t.recorded_noise).playing(plays)
    }

    /// The same targets with shadowdiff playing their upstreams (`plays`): each request
    /// carries its exchange's token, and what the gateways forwarded is judged too.
    pub fn playing(mut self, plays: Option<Arc<upstream::Plays>>) -> Self {
        self.plays = plays;
        self
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
            plays: None,
            candidate_first: AtomicBool::new(false),
        }
    }

    /// Sends `req` to the baseline and the candidate at once, the candidate's first when
    /// `candidate_first`; the answers as (baseline, candidate).
    async fn both(
        &self,
        req: &Request,
        start: Instant,
        candidate_first: bool,
    ) -> ((Fetched, bool), (Fetched, bool)) {
        if candidate_first {
            let (c, b) = tokio::join!(
                self.candidate.send_counted(req, start),
                self.baseline.send_counted(req, start)
            );
            (b, c)
        } else {
            tokio::join!(
                self.baseline.send_counted(req, start),
                self.candidate.send_counted(req, start)
            )
        }
    }

    /// Sends `ex`'s request to the baseline and the candidate at the same moment (latency
    /// counted from `start`), then, once both answered, to the noise probe: a `--secondary`
    /// always, the baseline a second time only when `safe` (a request that may be
    /// repeated). When shadowdiff plays the upstreams, each of those requests carries a
    /// token of its own, and what the gateways forwarded under it comes back too.
    pub async fn ask(&self, ex: &Exchange, start: Instant, safe: bool) -> Answers {
        let Some(plays) = &self.plays else {
            return self.ask_request(&ex.request, start, safe, None).await;
        };
        let mut tokens = Tokens {
            pair: plays.open(ex),
            pair_calls: None,
            probe: None,
        };
        let pair_req = with_token(&ex.request, tokens.pair);
        let mut a = self
            .ask_request(&pair_req, start, safe, Some((plays, ex, &mut tokens)))
            .await;
        let pair = match tokens.pair_calls {
            Some(calls) => calls,
            None => plays.close(tokens.pair),
        };
        let probe = tokens.probe.map(|t| plays.close(t).baseline);
        a.upstream = Some(UpstreamCalls { pair, probe });
        a
    }

    async fn ask_request(
        &self,
        req: &Request,
        start: Instant,
        safe: bool,
        mut plays: Option<(&upstream::Plays, &Exchange, &mut Tokens)>,
    ) -> Answers {
        // The probe's requests carry a token of their own, opened once the pair's answers
        // are in and its token closed: a gateway that strips the token is matched by method,
        // body and path among the exchanges in flight, where the pair's token must no longer
        // be to take the probe's calls.
        let mut probe_req = || -> Cow<'_, Request> {
            match plays.as_mut() {
                Some((p, ex, tokens)) => {
                    tokens.pair_calls = Some(p.close(tokens.pair));
                    let t = p.open(ex);
                    tokens.probe = Some(t);
                    Cow::Owned(with_token(&ex.request, t))
                }
                None => Cow::Borrowed(req),
            }
        };
        let candidate_first = self.candidate_first.fetch_xor(true, Ordering::Relaxed);
        let ((b, b_resent), (c, c_resent)) = self.both(req, start, candidate_first).await;
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
                let req = probe_req();
                let (probe, again) = p.send_counted(&req, Instant::now()).await;
                resent.secondary += u8::from(again);
                Some((probe, NoiseSource::Secondary))
            }
            // A request sent to the same baseline twice must be safe to repeat: a second
            // POST answers "already done", which is no measure of noise.
            // Over the baseline's own connections, as the candidate's goes over the
            // candidate's: the same connections, the same load.
            (Probe::Baseline, Ok(_)) if safe => {
                let req = probe_req();
                let now = Instant::now();
                let ((probe, again), (_, cand_again)) = self.both(&req, now, candidate_first).await;
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
            upstream: None,
        }
    }

    /// Judges the answers to `ex` as replay does (see [`judge_answers`]), and what the
    /// gateways forwarded when shadowdiff played their upstreams (see [`judge_forwarded`]).
    pub fn judge(&self, ex: &Exchange, a: &Answers, opts: &CompareOptions) -> Judgement {
        let probe = a.probe.as_ref().map(|(p, source)| (p, *source));
        let mut j = judge_answers(
            ex,
            &a.baseline,
            &a.candidate,
            probe,
            self.recorded_noise,
            opts,
        );
        if let Some(calls) = &a.upstream {
            judge_forwarded(&mut j, calls, opts);
        }
        j
    }
}

/// The tokens of one exchange's requests while shadowdiff plays the upstreams.
struct Tokens {
    /// The pair's token.
    pair: u64,
    /// What was forwarded under it, once it was closed for the probe.
    pair_calls: Option<upstream::Calls>,
    /// The probe's token, when a probe was sent.
    probe: Option<u64>,
}

/// `req` with the correlation header carrying `token`.
fn with_token(req: &Request, token: u64) -> Request {
    let mut r = req.clone();
    r.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case(upstream::CORRELATION_HEADER));
    r.headers
        .push((upstream::CORRELATION_HEADER.to_string(), token.to_string()));
    r
}

/// Adds what the gateways forwarded to a judgement of two answers: the differences between
/// the baseline's and the candidate's calls join the answers' own, and the probe's calls
/// against the baseline's join the noise sample (the probe went through a gateway too). A
/// candidate that made no call where the baseline made some answered without its backend:
/// the missing-rule signature, whatever its status.
pub fn judge_forwarded(j: &mut Judgement, calls: &UpstreamCalls, opts: &CompareOptions) {
    if !matches!(
        j.outcome,
        Outcome::Identical | Outcome::NoiseOnly | Outcome::Different
    ) {
        return;
    }
    let (b, c) = (&calls.pair.baseline, &calls.pair.candidate);
    if !b.is_empty() && c.is_empty() {
        j.outcome = Outcome::MissingRule;
        return;
    }
    j.diffs.extend(diff_calls(b, c, opts));
    j.outcome = Outcome::of_diffs(&j.diffs);
    if j.noise_source != Some(NoiseSource::Recording) {
        if let (Some(probe), Some(p)) = (j.probe.as_mut(), &calls.probe) {
            probe.extend(diff_calls(b, p, opts));
        }
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
            plays: self.plays.clone(),
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
    let topts = |tls: &crate::tls::TlsClientOptions| TargetOptions {
        timeout: cfg.timeout,
        max_body: cfg.max_body,
        pool_size: cfg.concurrency,
        host_header: cfg.host_header,
        set_headers: cfg.set_headers.clone(),
        tls: tls.clone(),
    };
    let targets = Targets {
        baseline: Target::new(Side::Baseline, &cfg.baseline, topts(&cfg.tls.baseline))?,
        candidate: Target::new(Side::Candidate, &cfg.candidate, topts(&cfg.tls.candidate))?,
        probe: match &cfg.secondary {
            Some(url) => Some(Target::new(
                Side::Secondary,
                url,
                topts(&cfg.tls.secondary),
            )?),
            None => None,
        },
        recorded_noise: cfg.recorded_noise,
        plays: None,
    };
    // Listening first: a gateway may check its upstream before it says it is ready.
    let mut targets = targets;
    if let Some(play) = &cfg.upstream {
        let plays = upstream::Plays::start(
            (play.baseline, play.candidate),
            (targets.baseline.authority(), targets.candidate.authority()),
            play.latency,
            cfg.max_body,
        )
        .await?;
        let (b, c) = plays.addrs();
        tracing::info!("playing the baseline's upstream at {b}, the candidate's at {c}");
        targets.plays = Some(Arc::new(plays));
    }
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

    let upstream_run = targets.plays.as_ref().zip(cfg.upstream).map(|(p, play)| {
        let r = p.report(play.latency);
        for w in upstream_warnings(&r) {
            tracing::warn!("{w}");
            warnings.push(w);
        }
        r
    });
    let secondary = cfg.secondary.as_deref().filter(|s| *s != cfg.baseline);
    let insecure = cfg.tls.insecure_sides([
        ("baseline", Some(&cfg.baseline)),
        ("candidate", Some(&cfg.candidate)),
        ("secondary", secondary),
    ]);
    if !insecure.is_empty() {
        warnings.push(format!(
            "TLS certificates were not verified (--insecure) for the {}: another server \
             answering in their place would not have been noticed",
            insecure.join(" and the ")
        ));
    }
    let mut connections = std::collections::BTreeMap::new();
    for t in [
        Some(&targets.baseline),
        Some(&targets.candidate),
        targets.probe.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        let c = t.setup_counts();
        if c.opened > 0 {
            connections.insert(
                t.side.to_string(),
                crate::analysis::result::ConnectionSetup {
                    opened: c.opened,
                    setup_us_total: c.total_us,
                    setup_us_max: c.max_us,
                },
            );
        }
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
            connections,
            thresholds: th,
            warnings,
            filters,
            shard,
            incomplete,
            upstream: upstream_run,
        },
    ))
}

/// What the played upstreams saw that the operator must hear about: a gateway that does not
/// pass the correlation header on, and requests tied to no exchange.
fn upstream_warnings(r: &crate::analysis::result::UpstreamRun) -> Vec<String> {
    let mut out = Vec::new();
    for (side, s) in [("baseline", &r.baseline), ("candidate", &r.candidate)] {
        if s.without_header > 0 {
            out.push(format!(
                "the {side} gateway forwarded {} of {} requests without the {} header (it \
                 strips it): {} were tied to their exchange by method, body and path; let the \
                 header through for an exact match",
                s.without_header,
                s.forwarded,
                upstream::CORRELATION_HEADER,
                s.by_match
            ));
        }
        if s.unmatched > 0 {
            out.push(format!(
                "the {side} gateway forwarded {} requests that belong to no exchange in flight \
                 (answered 502): calls made after its answer, or changed beyond a match",
                s.unmatched
            ));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{judge, Observed};

    fn call(target: &str, headers: &[(&str, &str)]) -> Forwarded {
        Forwarded {
            method: "POST".into(),
            target: target.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn same_answers() -> Judgement {
        let a: Fetched = Ok(Observed {
            status: 403,
            ..Default::default()
        });
        let mut j = judge(&a, &a, Some(&a), &CompareOptions::default());
        j.noise_source = Some(NoiseSource::Baseline);
        j
    }

    #[test]
    fn a_candidate_that_forwarded_nothing_is_a_missing_rule_whatever_its_status() {
        let mut j = same_answers();
        let calls = UpstreamCalls {
            pair: upstream::Calls {
                baseline: vec![call("/o", &[])],
                candidate: Vec::new(),
            },
            probe: None,
        };
        judge_forwarded(&mut j, &calls, &CompareOptions::default());
        assert_eq!(j.outcome, Outcome::MissingRule);
        // Neither forwarded: the gateway answers this itself on both sides.
        let mut j = same_answers();
        judge_forwarded(
            &mut j,
            &UpstreamCalls::default(),
            &CompareOptions::default(),
        );
        assert_eq!(j.outcome, Outcome::Identical);
    }

    #[test]
    fn the_probes_forwarded_requests_are_its_noise_sample() {
        let mut j = same_answers();
        let calls = UpstreamCalls {
            pair: upstream::Calls {
                baseline: vec![call("/o", &[("x-request-id", "1")])],
                candidate: vec![call("/o", &[("x-request-id", "2")])],
            },
            probe: Some(vec![call("/o", &[("x-request-id", "3")])]),
        };
        judge_forwarded(&mut j, &calls, &CompareOptions::default());
        assert_eq!(j.outcome, Outcome::Different);
        let key = |d: &Vec<crate::compare::Difference>| -> Vec<String> {
            d.iter().map(crate::compare::Difference::key).collect()
        };
        assert_eq!(key(&j.diffs), ["upstream.header:x-request-id"]);
        assert_eq!(
            key(j.probe.as_ref().unwrap()),
            ["upstream.header:x-request-id"]
        );
        // A recorded answer as the sample forwarded nothing: no forwarded noise from it.
        let mut j = same_answers();
        j.noise_source = Some(NoiseSource::Recording);
        judge_forwarded(&mut j, &calls, &CompareOptions::default());
        assert!(j.probe.as_ref().unwrap().is_empty());
    }
}
