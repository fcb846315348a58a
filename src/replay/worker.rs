//! The workers: one thread per core, each with its own single-threaded runtime and its own
//! connections, keeping its share of `concurrency` exchanges in flight, judging the answers
//! and aggregating locally, so an exchange never crosses threads once started. Jobs a
//! worker took but cannot start yet go to a worker with free slots that asks for them
//! ([`Sharing`]), so the whole `concurrency` is used however few exchanges are left.

use super::{Answers, Job, Progress, WorkerTargets};
use crate::analysis::result::UNSENDABLE;
use crate::analysis::{Aggregator, PairLatency, Resent};
use crate::compare::{CompareOptions, NoiseSource, Outcome};
use crate::config::Rules;
use crate::report::diffs::{DiffLine, DiffSink};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;
use tokio::time::Instant as TokioInstant;

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
pub(super) struct Sharing {
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
    pub(super) fn new(workers: usize) -> Self {
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
pub(super) struct Unclosed {
    sharing: Arc<Sharing>,
    open: bool,
}

impl Unclosed {
    pub(super) fn new(sharing: Arc<Sharing>) -> Self {
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
pub(super) struct Worker {
    /// Its index (for its wake-up in [`Sharing::asked`]).
    pub(super) n: usize,
    /// Exchanges it keeps in flight at most.
    pub(super) slots: usize,
    /// Whether jobs carry a scheduled start.
    pub(super) paced: bool,
    pub(super) sharing: Arc<Sharing>,
    /// Its place in [`Sharing::unclosed`].
    pub(super) unclosed: Unclosed,
}

/// Takes jobs until the channel closes, keeping up to `slots` exchanges in flight, and
/// aggregates their results itself. A few workers each with many exchanges in flight keep
/// the number of aggregates (and their histograms) at the number of workers, not at the
/// concurrency.
pub(super) async fn worker(
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
    use super::super::target::{Target, TargetOptions};
    use super::super::Targets;
    use super::*;
    use crate::exchange::{Exchange, Side};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP/1.1 server on a real socket that answers every request after `delay`, and
    /// notes, for each request in the order they came, how many it held at that moment
    /// (itself included): what concurrency the workers reached, whatever the machine's speed.
    async fn slow_server(delay: Duration) -> (String, Arc<Mutex<Vec<usize>>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let held = Arc::new(AtomicUsize::new(0));
        let seen_held = Arc::new(Mutex::new(Vec::new()));
        let log = seen_held.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (held, log) = (held.clone(), log.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                            log.lock().unwrap().push(now);
                            tokio::time::sleep(delay).await;
                            held.fetch_sub(1, Ordering::SeqCst);
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
        (url, seen_held)
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
            tls: Default::default(),
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

    async fn two_workers(url: &str, slots: usize, batches: Vec<Vec<Job>>) -> u64 {
        let targets = same_targets(url, slots);
        let (tx, rx) = async_channel::bounded::<Vec<Job>>(4);
        let sharing = Arc::new(Sharing::new(2));
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
        total
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_a_worker_cannot_start_go_to_a_worker_with_free_slots() {
        let (url, held) = slow_server(Duration::from_millis(300)).await;
        // Baseline and candidate are this one server: each exchange is two requests held.
        // One batch of 16 for two workers of 8 slots: all 16 in flight at once; the worker
        // that took the batch alone could never go past its 8.
        let done = two_workers(&url, 8, vec![(0..16).map(job).collect()]).await;
        assert_eq!(done, 16);
        let first: Vec<usize> = std::mem::take(&mut *held.lock().unwrap());
        assert_eq!(first.iter().max(), Some(&32), "{first:?}");
        // Batches of 16 with fetching ahead: the last batch too is spread over both
        // workers, and no moment goes past their 16 slots.
        let batches = (0..4)
            .map(|b| (b * 16..b * 16 + 16).map(job).collect())
            .collect();
        let done = two_workers(&url, 8, batches).await;
        assert_eq!(done, 64);
        let all = held.lock().unwrap().clone();
        assert!(all.iter().all(|h| *h <= 32), "{all:?}");
        assert!(all[all.len() - 32..].iter().any(|h| *h > 16), "{all:?}");
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
