//! The recorder, the tap's and `capture`'s: a thread of its own behind a bounded queue, so
//! production traffic never waits for the disk. The proxy (or the capture's ring reader) hands over a finished exchange with [`RecorderHandle::submit`],
//! which never blocks: when the queue is full (in exchanges or in bytes), the exchange is
//! dropped and counted as `queue_full`. The thread makes the final sampling decision (the
//! per-file minimum is exact because only it knows the file), redacts, writes, rotates by
//! size and age, and never stops on a failed create or write: what it could not write is
//! dropped and counted (`disk_full`, or `write_error`), and it tries again after a pause.
//!
//! An exchange is counted as recorded only when a flush has handed its line to the operating
//! system; a failed write cuts the file back to its last flush, so the recorded count is
//! exactly what the files hold (see `Files`). The same file is written on after a failure:
//! no stream of new files while a disk stays full, and a file that holds no exchange when it
//! cannot be completed is removed. [`Recorder::close`] lists every file written, a `.partial`
//! that could not be completed with the reason.
//!
//! Files are written by [`RecordingWriter`]: `NAME.partial`, mode 0600, renamed when
//! complete; zstd when the name ends in `.zst`. An existing `.partial` is never replaced.
//! What is written reaches the operating system within about a second: the file is flushed
//! when the queue runs dry and at least every [`FLUSH_EVERY`] while it does not, so a tap
//! killed without warning (SIGKILL, the OOM killer) leaves a `.partial` holding all but its
//! last second or so. It is synced to the disk when complete, not every second: a sync a
//! second would write out data the kernel may never have to (a file deleted soon after) and
//! stall the recorder on a busy disk, for a gain only when the whole machine fails.

use super::heads::{RawHeads, SpareHeaders};
use super::redact::Redactor;
use super::sample::{Admit, Coverage, Quota};
use crate::error::{Error, Result};
use crate::exchange::Exchange;
use crate::interface::{interface_of, InterfaceKey};
use crate::recording::writer::{partial_path, Flushed};
use crate::recording::{RecordingHeader, RecordingWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the recorder pauses after a failed create or write before it writes again;
/// each failure in a row doubles the pause, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);

/// The longest pause between two tries while writing fails: a disk that has room again is
/// written to within this.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Pause between batches while traffic flows: long enough that exchanges gather (the queue
/// holds thousands), short enough that the queue never fills at any realistic rate.
const BATCH_PAUSE: Duration = Duration::from_millis(2);

/// How long the queue must stay empty before the recorder blocks on it.
const IDLE_BEFORE_BLOCKING: Duration = Duration::from_millis(50);

/// The longest written data waits in the recorder's buffers: a busy recorder flushes this
/// often, an idle one before it blocks. Once a second costs one write (and, for zstd, one
/// block boundary) per second on the recorder's thread, nothing on the proxy's.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Settings of the recorder.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// The recording file, or the name rotated files are derived from.
    pub out: PathBuf,
    /// Rotate at this many uncompressed bytes.
    pub rotate_size: Option<u64>,
    /// Rotate at this file age.
    pub rotate_interval: Option<Duration>,
    /// Exchanges kept per interface per file whatever the sample.
    pub min_per_interface: u32,
    /// Queue length.
    pub queue_size: usize,
    /// Queue bytes (bodies).
    pub queue_bytes: u64,
    /// Interface key rule (for the per-interface minimum).
    pub interface_key: InterfaceKey,
    /// Simulated slow disk.
    pub write_delay: Option<Duration>,
    /// What made the recording, for its header's `source` (`tap`, `capture`).
    pub source: &'static str,
}

/// Why an exchange did not reach the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full (the disk is slower than the traffic).
    QueueFull,
    /// The file could not be created or written, for another reason than a full disk.
    WriteError,
    /// The file system had no room (or the quota was reached).
    DiskFull,
    /// The tap was shutting down and the recorder had closed.
    Shutdown,
}

impl DropReason {
    /// Every reason, for metrics.
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::WriteError,
        DropReason::DiskFull,
        DropReason::Shutdown,
    ];

    /// The label used in metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::WriteError => "write_error",
            DropReason::DiskFull => "disk_full",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// Counters of the recorder, read by `/metrics`.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Exchanges in the files: written and handed to the operating system by a flush.
    pub recorded: AtomicU64,
    /// Exchanges kept only because their interface was below the per-file minimum.
    pub kept_for_minimum: AtomicU64,
    /// Exchanges not kept by the sample.
    pub sampled_out: AtomicU64,
    dropped: [AtomicU64; 4],
    /// Exchanges waiting in the queue.
    pub queue_len: AtomicU64,
    /// Exchanges written to the current file's buffers, not yet handed to the operating
    /// system by a flush: neither recorded nor dropped yet.
    pub pending: AtomicU64,
    /// Body bytes waiting in the queue.
    pub queue_bytes: AtomicU64,
    /// Files completed (renamed into place).
    pub files_completed: AtomicU64,
    /// Uncompressed bytes in the files (handed to the operating system).
    pub bytes_written: AtomicU64,
    /// Create or write failures (events, not exchanges).
    pub write_failures: AtomicU64,
    /// Bodies dropped from the copy because they could not be searched for secrets.
    pub redaction_bodies_dropped: AtomicU64,
    /// Exchanges not given the minimum because too many interfaces were tracked.
    pub untracked_interfaces: AtomicU64,
}

impl RecorderStats {
    /// Exchanges dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    fn drop_one(&self, reason: DropReason) {
        self.drop_many(reason, 1);
    }

    fn drop_many(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Ordering::Relaxed);
    }
}

/// One finished exchange on its way to the recorder.
#[derive(Debug)]
pub struct Captured {
    /// The exchange, not yet redacted; `interface` is filled in by the recorder if absent.
    pub exchange: Exchange,
    /// The hash sample picked it.
    pub sampled: bool,
    /// Heads as they came over the wire, still to be parsed into `exchange` (whose method,
    /// target and header lists are empty meanwhile): the proxy thread that serves traffic
    /// hands on bytes, and this thread builds the strings.
    pub heads: Option<RawHeads>,
}

enum Msg {
    Exchange(Box<Captured>, u64),
    Shutdown,
}

/// The proxy's side of the recorder: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct RecorderHandle {
    tx: SyncSender<Msg>,
    stats: Arc<RecorderStats>,
    coverage: Arc<Coverage>,
    closed: Arc<AtomicBool>,
    queue_bytes: u64,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Exchange(c, _) => write!(f, "Exchange({})", c.exchange.id),
            Msg::Shutdown => f.write_str("Shutdown"),
        }
    }
}

impl RecorderHandle {
    /// Hands an exchange to the recorder without waiting; a full queue drops it (counted).
    pub fn submit(&self, c: Captured) -> Result<(), DropReason> {
        if self.closed.load(Ordering::Relaxed) {
            self.stats.drop_one(DropReason::Shutdown);
            return Err(DropReason::Shutdown);
        }
        let size = queued_size(&c);
        let before = self.stats.queue_bytes.fetch_add(size, Ordering::Relaxed);
        if before + size > self.queue_bytes && before > 0 {
            self.stats.queue_bytes.fetch_sub(size, Ordering::Relaxed);
            self.stats.drop_one(DropReason::QueueFull);
            return Err(DropReason::QueueFull);
        }
        self.stats.queue_len.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Exchange(Box::new(c), size)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.queue_bytes.fetch_sub(size, Ordering::Relaxed);
                self.stats.queue_len.fetch_sub(1, Ordering::Relaxed);
                let reason = match e {
                    TrySendError::Full(_) => DropReason::QueueFull,
                    TrySendError::Disconnected(_) => DropReason::Shutdown,
                };
                self.stats.drop_one(reason);
                Err(reason)
            }
        }
    }

    /// Hands an exchange to the recorder, waiting while the queue is full instead of
    /// dropping it: for a producer that is not in the traffic path (`capture`, whose
    /// kernel ring holds the packets meanwhile). Dropped (counted) only once the recorder
    /// has closed.
    pub fn submit_waiting(&self, c: Captured) -> Result<(), DropReason> {
        let size = queued_size(&c);
        let mut msg = Msg::Exchange(Box::new(c), size);
        let mut pause = Duration::from_micros(50);
        loop {
            if self.closed.load(Ordering::Relaxed) {
                self.stats.drop_one(DropReason::Shutdown);
                return Err(DropReason::Shutdown);
            }
            let before = self.stats.queue_bytes.load(Ordering::Relaxed);
            if before == 0 || before + size <= self.queue_bytes {
                self.stats.queue_bytes.fetch_add(size, Ordering::Relaxed);
                self.stats.queue_len.fetch_add(1, Ordering::Relaxed);
                match self.tx.try_send(msg) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        self.stats.queue_bytes.fetch_sub(size, Ordering::Relaxed);
                        self.stats.queue_len.fetch_sub(1, Ordering::Relaxed);
                        msg = match e {
                            TrySendError::Full(m) => m,
                            TrySendError::Disconnected(_) => {
                                self.stats.drop_one(DropReason::Shutdown);
                                return Err(DropReason::Shutdown);
                            }
                        };
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// True when an exchange of `interface` that the sample did not pick may still be kept.
    pub fn needs(&self, interface: &str) -> bool {
        self.coverage.needs(interface)
    }

    /// The recorder's counters.
    pub fn stats(&self) -> &Arc<RecorderStats> {
        &self.stats
    }
}

/// Lowers this thread's CPU priority below the proxy's: Linux `SCHED_BATCH` (a waking
/// recorder never preempts a running proxy thread) at nice 10. When CPU is short the copy
/// for the disk waits, not the traffic; if it waits too long the queue fills and exchanges
/// are dropped and counted, which is the order of priorities the tap promises.
fn yield_to_traffic() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread with a valid, initialised argument;
    // failure only leaves the default priority, which is harmless.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) != 0 {
            tracing::debug!("tap: recorder keeps the default scheduling policy");
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// What an exchange weighs in the queue: bodies and header text (parsed, or still the
/// heads' bytes), plus a fixed share for the structure itself, so the byte bound holds for
/// header-heavy traffic too.
fn queued_size(c: &Captured) -> u64 {
    let mut n = c.exchange.approx_size();
    if let Some(h) = &c.heads {
        n += h.request.as_ref().map_or(0, |b| b.len()) + h.response.as_ref().map_or(0, |b| b.len());
    }
    n as u64
}

/// The recorder thread and its handle.
#[derive(Debug)]
pub struct Recorder {
    handle: RecorderHandle,
    thread: Option<std::thread::JoinHandle<Vec<Written>>>,
}

impl Recorder {
    /// Starts the recorder thread. The first file is created at once, so a directory that
    /// cannot be written is reported at start (as a warning: traffic still flows).
    pub fn start(cfg: RecorderConfig, redactor: Redactor) -> Result<Self> {
        Self::start_with(cfg, redactor, None)
    }

    /// Starts the recorder thread like [`Recorder::start`], and hands the exchanges it is
    /// done with back through the receiver returned, in batches, for the producer to free.
    /// An allocator frees memory fastest on the thread that allocated it: for a producer
    /// that builds every string of an exchange on one thread (`capture`'s ring reader),
    /// freeing them there costs a fraction of freeing them here. The channel has no bound
    /// of its own: an exchange is in it only after it left the queue, so what the queue and
    /// the channel hold together is at most the queue's bound plus what the producer queued
    /// since it last emptied the channel.
    pub fn start_returning(
        cfg: RecorderConfig,
        redactor: Redactor,
    ) -> Result<(Self, mpsc::Receiver<Vec<Exchange>>)> {
        let (tx, rx) = mpsc::channel();
        Ok((Self::start_with(cfg, redactor, Some(tx))?, rx))
    }

    fn start_with(
        cfg: RecorderConfig,
        redactor: Redactor,
        spent: Option<mpsc::Sender<Vec<Exchange>>>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel(cfg.queue_size);
        let stats = Arc::new(RecorderStats::default());
        let coverage = Arc::new(Coverage::new(cfg.min_per_interface));
        let handle = RecorderHandle {
            tx,
            stats: stats.clone(),
            coverage: coverage.clone(),
            closed: Arc::new(AtomicBool::new(false)),
            queue_bytes: cfg.queue_bytes,
        };
        let mut state = Files::new(cfg, stats, coverage, redactor);
        state.spent = spent.map(|tx| Spent {
            tx,
            batch: Vec::new(),
            bytes: 0,
        });
        state.open_if_needed();
        let thread = std::thread::Builder::new()
            .name("shadowdiff-recorder".into())
            .spawn(move || {
                yield_to_traffic();
                state.run(rx)
            })
            .map_err(|e| Error::internal("cannot start the recorder thread", e))?;
        Ok(Recorder {
            handle,
            thread: Some(thread),
        })
    }

    /// The proxy's handle.
    pub fn handle(&self) -> RecorderHandle {
        self.handle.clone()
    }

    /// Stops taking exchanges, writes what is queued, completes the file and returns every
    /// file written during the run. Blocks: call it off the async runtime.
    pub fn close(mut self) -> Vec<Written> {
        self.handle.closed.store(true, Ordering::Relaxed);
        // Blocking send: waits for room behind what is queued, which the thread drains.
        let _ = self.handle.tx.send(Msg::Shutdown);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(files)) => files,
            _ => Vec::new(),
        }
    }
}

/// A file the recorder wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Its name: the final one, or `NAME.partial` when it could not be completed.
    pub path: PathBuf,
    /// The exchanges it holds (each counted as recorded).
    pub exchanges: u64,
    /// Why it is still `NAME.partial`: it could not be completed or renamed. It holds its
    /// exchanges whole all the same, and reads like any recording.
    pub not_completed: Option<String>,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(why) = &self.not_completed {
            write!(
                f,
                " (not completed: {why}; it holds {}, readable as it is)",
                crate::report::words::count_of(self.exchanges, "whole exchange", "whole exchanges"),
            )?;
        }
        Ok(())
    }
}

/// Why a write failed: a full disk (or quota), or anything else.
fn drop_reason(e: &Error) -> DropReason {
    let Error::Io { source, .. } = e else {
        return DropReason::WriteError;
    };
    let full = source.kind() == std::io::ErrorKind::StorageFull || {
        #[cfg(unix)]
        {
            matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        }
        #[cfg(not(unix))]
        {
            false
        }
    };
    if full {
        DropReason::DiskFull
    } else {
        DropReason::WriteError
    }
}

/// The thread's state: the open file, its quota, and the naming of the next one.
///
/// An exchange counts as recorded only once a flush has handed its line to the operating
/// system: until then it is pending in the writer's buffers. A failed write or flush cuts the
/// file back to its last flush ([`RecordingWriter::rollback`]) and counts the pending
/// exchanges as dropped, by reason; the same file is written on after a pause that doubles
/// with each failure in a row ([`RETRY_FIRST`] up to [`RETRY_MAX`]), exchanges arriving
/// meanwhile dropped at once. So the files hold exactly the exchanges counted as recorded.
struct Files {
    cfg: RecorderConfig,
    stats: Arc<RecorderStats>,
    coverage: Arc<Coverage>,
    redactor: Redactor,
    quota: Quota,
    writer: Option<RecordingWriter>,
    opened_at: Instant,
    /// No write is tried before this, after a failure.
    retry_at: Option<Instant>,
    /// The pause after the next failure.
    backoff: Duration,
    /// Why the last write failed, while failures go on: exchanges dropped in the pause are
    /// counted under it.
    failing: Option<DropReason>,
    seq: u32,
    written: Vec<Written>,
    warned: bool,
    /// Written to the current file since it was last flushed.
    dirty: bool,
    flushed_at: Instant,
    /// Header lists of exchanges this thread is done with, for the next heads to be parsed into.
    spare: SpareHeaders,
    /// Where exchanges this thread is done with go back to their producer, if they do.
    spent: Option<Spent>,
}

/// Exchanges written, gathered for their producer to free.
struct Spent {
    tx: mpsc::Sender<Vec<Exchange>>,
    batch: Vec<Exchange>,
    /// What the batch weighs, as the queue weighs exchanges.
    bytes: u64,
}

/// Exchanges in one batch handed back to the producer.
const SPENT_EXCHANGES: usize = 64;
/// The most one batch handed back may weigh.
const SPENT_BYTES: u64 = 1 << 20;

impl Spent {
    fn put(&mut self, ex: Exchange, size: u64) {
        self.batch.push(ex);
        self.bytes += size;
        if self.batch.len() >= SPENT_EXCHANGES || self.bytes >= SPENT_BYTES {
            self.send();
        }
    }

    /// Hands the batch over (freed here if the producer is gone).
    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.bytes = 0;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(SPENT_EXCHANGES));
        let _ = self.tx.send(batch);
    }
}

impl Files {
    fn new(
        cfg: RecorderConfig,
        stats: Arc<RecorderStats>,
        coverage: Arc<Coverage>,
        redactor: Redactor,
    ) -> Self {
        Files {
            quota: Quota::new(cfg.min_per_interface),
            cfg,
            stats,
            coverage,
            redactor,
            writer: None,
            opened_at: Instant::now(),
            retry_at: None,
            backoff: RETRY_FIRST,
            failing: None,
            seq: 0,
            written: Vec::new(),
            warned: false,
            dirty: false,
            flushed_at: Instant::now(),
            spare: SpareHeaders::default(),
            spent: None,
        }
    }

    fn rotating(&self) -> bool {
        self.cfg.rotate_size.is_some() || self.cfg.rotate_interval.is_some()
    }

    /// The name of the next file: `--out` itself for the first file of a non-rotating run,
    /// otherwise `STEM-YYYYMMDDTHHMMSSZ-SEQ.EXT` beside it, never an existing name (nor one
    /// whose `.partial` exists).
    fn next_path(&mut self) -> PathBuf {
        loop {
            self.seq += 1;
            if self.seq == 1 && !self.rotating() {
                return self.cfg.out.clone();
            }
            let p = rotated_name(&self.cfg.out, self.seq);
            if !p.exists() && !partial_path(&p).exists() {
                return p;
            }
        }
    }

    /// True while a failure's pause lasts: nothing is written.
    fn pausing(&self) -> bool {
        self.retry_at.is_some_and(|t| Instant::now() < t)
    }

    fn open_if_needed(&mut self) -> bool {
        if self.writer.is_some() {
            return true;
        }
        if self.pausing() {
            return false;
        }
        let path = self.next_path();
        match RecordingWriter::create_new(&path, &RecordingHeader::new(self.cfg.source)) {
            Ok(mut w) => {
                w.stream_to_disk();
                self.writer = Some(w);
                self.opened_at = Instant::now();
                // The header line is data too: a killed tap leaves a readable file.
                self.dirty = true;
                if self.retry_at.is_some() {
                    // Counts made while no file could be opened belong to no file.
                    self.quota.reset(&self.coverage);
                }
                true
            }
            Err(e) => {
                self.fail(&e);
                false
            }
        }
    }

    /// Starts (or lengthens) the pause after a failure, counts it, and warns once per streak.
    fn fail(&mut self, e: &Error) {
        let reason = drop_reason(e);
        self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
        self.failing = Some(reason);
        // One warning per failure streak: a full disk must not also flood the log.
        if !self.warned {
            tracing::warn!(
                "tap: recording is failing, exchanges are dropped (counted as {}) until it recovers: {e}",
                reason.name()
            );
            self.warned = true;
        }
    }

    /// A flush handed lines to the operating system: they are recorded, and a failure streak
    /// is over.
    fn flushed(&mut self, f: Flushed) {
        self.stats
            .recorded
            .fetch_add(f.exchanges, Ordering::Relaxed);
        self.stats
            .bytes_written
            .fetch_add(f.bytes, Ordering::Relaxed);
        self.dirty = false;
        self.flushed_at = Instant::now();
        // A flush with nothing to hand over proves nothing about the disk.
        if f == Flushed::default() {
            return;
        }
        if self.failing.take().is_some() {
            tracing::warn!("tap: recording works again");
        }
        self.retry_at = None;
        self.backoff = RETRY_FIRST;
        self.warned = false;
    }

    /// A write or flush of the current file failed with `e`, `lost` exchanges with it besides
    /// those pending: the file is cut back to its last flush and the pending ones dropped.
    /// A file that cannot be cut back is closed as it is and another started after the pause.
    fn write_failed(&mut self, e: &Error, lost: u64) {
        let reason = drop_reason(e);
        let mut pending = 0;
        if let Some(w) = self.writer.as_mut() {
            pending = w.written() - w.flushed();
            if let Err(cut) = w.rollback() {
                tracing::warn!("tap: {cut}");
                // Its reason is the one just given.
                let _ = self.close_current();
            }
        }
        self.stats.drop_many(reason, pending + lost);
        // What was cut back may have held the minimum of some interface: they may take
        // another.
        self.quota.reset(&self.coverage);
        // What is buffered now (the header again, or the end of a zstd frame) goes out with
        // the next flush after the pause.
        self.dirty = self.writer.is_some();
        self.fail(e);
    }

    /// Flushes and completes the current file. A flush that fails drops what was pending,
    /// as any failed write; a file that cannot be completed stays `.partial`, cut back to
    /// its last flush so it holds only whole exchanges, and is listed with the reason (or
    /// removed, when it holds none).
    fn finish_current(&mut self) {
        // The minimum is per file: the next file starts counting from zero.
        self.quota.reset(&self.coverage);
        if let Some(w) = self.writer.as_mut() {
            match w.flush(false) {
                Ok(f) => self.flushed(f),
                Err(e) => self.write_failed(&e, 0),
            }
        }
        if let Some(e) = self.close_current() {
            self.fail(&e);
        }
        self.dirty = false;
        self.note_pending();
    }

    /// Completes the current file as it stands (its pending exchanges already counted);
    /// returns why it could not be.
    fn close_current(&mut self) -> Option<Error> {
        let w = self.writer.take()?;
        let (partial, keep, exchanges) = (w.partial().to_path_buf(), w.flush_point(), w.flushed());
        match w.finish() {
            Ok(p) => {
                self.stats.files_completed.fetch_add(1, Ordering::Relaxed);
                tracing::info!("tap: completed {}", p.display());
                self.written.push(Written {
                    path: p,
                    exchanges,
                    not_completed: None,
                });
                None
            }
            Err(e) => {
                // What the failed completion wrote after the last flush is not whole.
                let cut = keep.cut(&partial);
                if let Err(c) = &cut {
                    tracing::warn!(
                        "tap: {}: cannot end it at its last whole exchange: {c}",
                        partial.display()
                    );
                }
                if exchanges == 0 && cut.is_ok() {
                    // Nothing recorded in it: not worth a file left behind.
                    let _ = std::fs::remove_file(&partial);
                } else {
                    tracing::warn!("tap: {} left as it is: {e}", partial.display());
                    self.written.push(Written {
                        path: partial,
                        exchanges,
                        not_completed: Some(e.to_string()),
                    });
                }
                Some(e)
            }
        }
    }

    fn write(&mut self, c: &mut Captured) {
        if let Some(heads) = c.heads.take() {
            heads.fill(&mut c.exchange, &mut self.spare);
        }
        let ex = &mut c.exchange;
        let interface = ex
            .interface
            .get_or_insert_with(|| interface_of(&ex.request, &self.cfg.interface_key));
        match self.quota.admit(interface, c.sampled, &self.coverage) {
            Admit::Out => {
                self.stats.sampled_out.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Admit::Minimum => {
                self.stats.kept_for_minimum.fetch_add(1, Ordering::Relaxed);
            }
            Admit::Sampled => {}
        }
        self.stats
            .untracked_interfaces
            .store(self.quota.untracked, Ordering::Relaxed);
        if self.pausing() || !self.open_if_needed() {
            self.stats
                .drop_one(self.failing.unwrap_or(DropReason::WriteError));
            return;
        }
        let dropped_bodies = self.redactor.exchange(ex);
        if dropped_bodies > 0 {
            self.stats
                .redaction_bodies_dropped
                .fetch_add(dropped_bodies, Ordering::Relaxed);
        }
        if let Some(d) = self.cfg.write_delay {
            std::thread::sleep(d);
        }
        let Some(w) = self.writer.as_mut() else {
            self.stats.drop_one(DropReason::WriteError);
            return;
        };
        match w.write(ex) {
            Ok(()) => {
                self.dirty = true;
                if self.cfg.rotate_size.is_some_and(|max| w.bytes() >= max) {
                    self.finish_current();
                }
            }
            // This line is lost with the pending ones.
            Err(e) => self.write_failed(&e, 1),
        }
        self.note_pending();
    }

    fn note_pending(&self) {
        let n = self
            .writer
            .as_ref()
            .map_or(0, |w| w.written() - w.flushed());
        self.stats.pending.store(n, Ordering::Relaxed);
    }

    fn rotate_if_old(&mut self) {
        if let (Some(max), Some(w)) = (self.cfg.rotate_interval, &self.writer) {
            // An empty file is kept open rather than producing a stream of empty files.
            if w.written() > 0 && self.opened_at.elapsed() >= max {
                self.finish_current();
            }
        }
    }

    /// Flushes what was written when it has waited long enough: at once when `idle` (the
    /// queue ran dry), otherwise once [`FLUSH_EVERY`] has passed since the last flush. Not
    /// during a failure's pause.
    fn flush_if_due(&mut self, idle: bool) {
        if self.pausing() {
            return;
        }
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        if !self.dirty || !idle && self.flushed_at.elapsed() < FLUSH_EVERY {
            return;
        }
        match w.flush(false) {
            Ok(f) => self.flushed(f),
            Err(e) => self.write_failed(&e, 0),
        }
        self.note_pending();
    }

    fn take(&mut self, c: Box<Captured>, size: u64) {
        self.stats.queue_len.fetch_sub(1, Ordering::Relaxed);
        self.stats.queue_bytes.fetch_sub(size, Ordering::Relaxed);
        let mut c = *c;
        self.write(&mut c);
        match self.spent.as_mut() {
            Some(spent) => spent.put(c.exchange, size),
            None => self.spare.give_back(c.exchange),
        }
    }

    /// Drains the queue in batches. While traffic flows the thread sleeps a moment between
    /// batches instead of blocking on the channel, so senders find no waiting receiver to
    /// wake: the proxy path makes no system call and causes no context switch per exchange.
    /// Only an idle recorder blocks (and is woken once, by the next exchange).
    fn run(mut self, rx: mpsc::Receiver<Msg>) -> Vec<Written> {
        let tick = self
            .cfg
            .rotate_interval
            .map_or(Duration::from_secs(1), |d| {
                (d / 4).min(Duration::from_secs(1))
            });
        let mut idle_since = Instant::now();
        'run: loop {
            let mut took = 0usize;
            loop {
                match rx.try_recv() {
                    Ok(Msg::Exchange(c, size)) => {
                        self.take(c, size);
                        took += 1;
                    }
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => break 'run,
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.rotate_if_old();
            if took > 0 {
                idle_since = Instant::now();
            }
            // Recently busy: keep polling, so a momentarily empty queue does not make every
            // sender pay for waking this thread.
            if idle_since.elapsed() < IDLE_BEFORE_BLOCKING {
                self.flush_if_due(false);
                std::thread::sleep(BATCH_PAUSE);
                continue;
            }
            self.flush_if_due(true);
            if let Some(spent) = self.spent.as_mut() {
                spent.send();
            }
            // What a failure left buffered is flushed when its pause ends, traffic or not.
            let wait = match self.retry_at {
                Some(t) if self.dirty => t.saturating_duration_since(Instant::now()).min(tick),
                _ => tick,
            };
            match rx.recv_timeout(wait) {
                Ok(Msg::Exchange(c, size)) => self.take(c, size),
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.flush_if_due(true),
            }
        }
        // Whatever raced past the closed flag is still written.
        while let Ok(Msg::Exchange(c, size)) = rx.try_recv() {
            self.take(c, size);
        }
        // The last flush is tried whatever pause a failure left.
        self.retry_at = None;
        self.finish_current();
        self.written
    }
}

/// `dir/traffic.jsonl.zst` -> `dir/traffic-20261102T090000Z-0003.jsonl.zst`.
pub fn rotated_name(out: &Path, seq: u32) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recording.jsonl".into());
    let (stem, ext) = match name.find('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name.as_str(), ""),
    };
    let t = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    out.with_file_name(format!("{stem}-{stamp}-{seq:04}{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Request, Response};
    use crate::recording::{ReadOptions, RecordingReader};

    fn ex(id: &str, path: &str, body: &str) -> Exchange {
        Exchange {
            id: id.into(),
            ts_us: 1,
            interface: None,
            tenant: None,
            request: Request {
                method: "GET".into(),
                uri: path.into(),
                version: "HTTP/1.1".into(),
                headers: vec![("authorization".into(), "Bearer s3cret".into())],
                ..Default::default()
            },
            response: Some(Response {
                status: 200,
                body: bytes::Bytes::copy_from_slice(body.as_bytes()),
                ..Default::default()
            }),
            latency_us: Some(10),
        }
    }

    fn cfg(out: PathBuf) -> RecorderConfig {
        RecorderConfig {
            out,
            rotate_size: None,
            rotate_interval: None,
            min_per_interface: 1,
            queue_size: 64,
            queue_bytes: 1 << 20,
            interface_key: InterfaceKey::Default,
            write_delay: None,
            source: "tap",
        }
    }

    fn read_all(files: &[Written]) -> Vec<Exchange> {
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        let mut r = RecordingReader::open(&paths, ReadOptions::default()).unwrap();
        let mut out = Vec::new();
        while let Some(e) = r.next_exchange().unwrap() {
            out.push(e);
        }
        let warnings = r.take_warnings();
        assert!(warnings.is_empty(), "{warnings:?}");
        out
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "condition not met in 10s");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn writes_redacted_exchanges_and_completes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rec.jsonl.zst");
        let r = Recorder::start(cfg(out.clone()), Redactor::new(&[], &[]).unwrap()).unwrap();
        let h = r.handle();
        assert!(crate::recording::writer::partial_path(&out).exists());
        for i in 0..10 {
            h.submit(Captured {
                exchange: ex(&format!("e{i}"), "/a", "ok"),
                sampled: i % 2 == 1,
                heads: None,
            })
            .unwrap();
        }
        let files = r.close();
        assert_eq!(
            files,
            [Written {
                path: out,
                exchanges: 6,
                not_completed: None
            }]
        );
        let got = read_all(&files);
        // 5 sampled + 1 kept for the interface minimum.
        assert_eq!(got.len(), 6);
        assert_eq!(got[0].interface.as_deref(), Some("GET /a"));
        assert_eq!(
            got[0].request.headers[0].1,
            super::super::redact::redact_value(b"Bearer s3cret")
        );
        assert_eq!(h.stats().sampled_out.load(Ordering::Relaxed), 4);
        assert_eq!(h.stats().kept_for_minimum.load(Ordering::Relaxed), 1);
        assert_eq!(
            h.submit(Captured {
                exchange: ex("late", "/a", ""),
                sampled: true,
                heads: None,
            }),
            Err(DropReason::Shutdown)
        );
    }

    #[test]
    fn rotates_by_size_with_a_minimum_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rec.jsonl");
        let mut c = cfg(out);
        c.rotate_size = Some(600);
        let r = Recorder::start(c, Redactor::new(&[], &[]).unwrap()).unwrap();
        let h = r.handle();
        for i in 0..30 {
            let rare = i % 10 == 9;
            h.submit(Captured {
                exchange: ex(&format!("e{i}"), if rare { "/rare" } else { "/a" }, "x"),
                sampled: !rare,
                heads: None,
            })
            .unwrap();
        }
        let files = r.close();
        assert!(files.len() >= 3, "{files:?}");
        for f in &files {
            let name = f.path.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                name.starts_with("rec-") && name.ends_with(".jsonl"),
                "{name}"
            );
        }
        assert_eq!(read_all(&files).len(), 30);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty());
    }

    /// `capture` hands exchanges over in capture order and the recording claims that
    /// order, so nothing here may reorder: not the queue, the sample, nor rotation.
    #[test]
    fn lines_keep_the_order_they_were_handed_over_in_across_files_and_the_sample() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path().join("rec.jsonl"));
        c.rotate_size = Some(2_000);
        c.queue_size = 4;
        let r = Recorder::start(c, Redactor::new(&[], &[]).unwrap()).unwrap();
        let h = r.handle();
        let mut kept = Vec::new();
        for i in 0..300 {
            let id = format!("e{i:03}");
            let sampled = i % 3 != 0;
            if sampled {
                kept.push(id.clone());
            }
            let mut e = ex(&id, &format!("/p{}", i % 7), "x");
            e.ts_us = i;
            h.submit_waiting(Captured {
                exchange: e,
                sampled,
                heads: None,
            })
            .unwrap();
        }
        let files = r.close();
        assert!(files.len() >= 3, "{files:?}");
        let mut got = Vec::new();
        for f in &files {
            let mut rd =
                RecordingReader::open(std::slice::from_ref(&f.path), ReadOptions::default())
                    .unwrap();
            while let Some(e) = rd.next_exchange().unwrap() {
                got.push(e.id);
            }
        }
        // Each interface's first exchange of a file may be kept for the minimum too.
        let picked: Vec<&String> = got.iter().filter(|id| kept.contains(id)).collect();
        assert_eq!(picked, kept.iter().collect::<Vec<_>>());
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted);
    }

    #[test]
    fn an_unwritable_directory_drops_and_counts_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        // A path under a regular file cannot be created, even by root.
        let r = Recorder::start(
            cfg(file.join("rec.jsonl")),
            Redactor::new(&[], &[]).unwrap(),
        )
        .unwrap();
        let h = r.handle();
        for i in 0..20 {
            let _ = h.submit(Captured {
                exchange: ex(&format!("e{i}"), "/a", "ok"),
                sampled: true,
                heads: None,
            });
        }
        let stats = h.stats().clone();
        wait_for(|| stats.dropped(DropReason::WriteError) == 20);
        assert!(r.close().is_empty());
        assert_eq!(stats.recorded.load(Ordering::Relaxed), 0);
        assert!(stats.write_failures.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn a_slow_disk_fills_the_queue_and_submit_never_waits() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path().join("rec.jsonl"));
        c.queue_size = 4;
        c.write_delay = Some(Duration::from_millis(50));
        let r = Recorder::start(c, Redactor::new(&[], &[]).unwrap()).unwrap();
        let h = r.handle();
        let start = Instant::now();
        let mut full = 0;
        for i in 0..100 {
            if h.submit(Captured {
                exchange: ex(&format!("e{i}"), "/a", "ok"),
                sampled: true,
                heads: None,
            }) == Err(DropReason::QueueFull)
            {
                full += 1;
            }
        }
        // 100 writes would take 5s; submitting took no disk time at all.
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(full >= 90, "{full}");
        assert_eq!(h.stats().dropped(DropReason::QueueFull), full);
        let files = r.close();
        assert_eq!(read_all(&files).len() as u64, 100 - full);
    }

    #[test]
    fn submit_waiting_waits_for_room_and_drops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path().join("rec.jsonl"));
        c.queue_size = 2;
        c.queue_bytes = 600;
        c.write_delay = Some(Duration::from_millis(5));
        let r = Recorder::start(c, Redactor::new(&[], &[]).unwrap()).unwrap();
        let h = r.handle();
        for i in 0..30 {
            let body = if i % 2 == 0 {
                "x".repeat(400)
            } else {
                "ok".into()
            };
            h.submit_waiting(Captured {
                exchange: ex(&format!("e{i}"), "/a", &body),
                sampled: true,
                heads: None,
            })
            .unwrap();
        }
        for reason in DropReason::ALL {
            assert_eq!(h.stats().dropped(reason), 0, "{reason:?}");
        }
        let files = r.close();
        assert_eq!(read_all(&files).len(), 30);
    }

    #[test]
    fn written_exchanges_come_back_to_the_producer_every_one_once() {
        let dir = tempfile::tempdir().unwrap();
        let (r, spent) = Recorder::start_returning(
            cfg(dir.path().join("rec.jsonl")),
            Redactor::new(&[], &[]).unwrap(),
        )
        .unwrap();
        let h = r.handle();
        let n = 3 * SPENT_EXCHANGES + 5;
        for i in 0..n {
            h.submit_waiting(Captured {
                exchange: ex(&format!("e{i}"), "/a", "ok"),
                sampled: true,
                heads: None,
            })
            .unwrap();
        }
        // The last, partial batch comes back once the queue has run dry.
        let mut back = Vec::new();
        while back.len() < n {
            back.extend(spent.recv_timeout(Duration::from_secs(30)).unwrap());
        }
        let files = r.close();
        assert_eq!(read_all(&files).len(), n);
        let mut ids: Vec<String> = back.into_iter().map(|e| e.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert!(spent.try_recv().is_err());
    }

    /// The byte bound holds for bodies and for heads still to be parsed, which weigh what
    /// their bytes weigh.
    #[test]
    fn queue_bytes_bound_memory() {
        let big = "x".repeat(600);
        let head = format!("GET /a HTTP/1.1\r\ncookie: {big}\r\n\r\n");
        for raw in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut c = cfg(dir.path().join("rec.jsonl"));
            c.queue_bytes = 1000;
            c.write_delay = Some(Duration::from_millis(200));
            let r = Recorder::start(c, Redactor::new(&[], &[]).unwrap()).unwrap();
            let h = r.handle();
            let results: Vec<_> = (0..3)
                .map(|i| {
                    h.submit(Captured {
                        exchange: ex(&format!("e{i}"), "/a", if raw { "" } else { &big }),
                        sampled: true,
                        heads: raw.then(|| RawHeads {
                            request: Some(bytes::Bytes::from(head.clone())),
                            response: None,
                        }),
                    })
                })
                .collect();
            assert!(
                results.contains(&Err(DropReason::QueueFull)),
                "raw heads {raw}: {results:?}"
            );
            r.close();
        }
    }

    /// The check, end to end through the queue, the thread and the file: one call
    /// among 100,000 at `--sample 0.01 --min-per-interface 1` is in the recording.
    #[test]
    fn a_rare_interface_among_100k_at_one_percent_reaches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("strat.jsonl.zst");
        let mut c = cfg(out.clone());
        c.queue_size = 200_000;
        c.queue_bytes = 1 << 30;
        let r = Recorder::start(c, Redactor::new(&[], &[]).unwrap()).unwrap();
        let h = r.handle();
        let s = super::super::sample::Sampler::new(0.01, 0);
        for i in 0..100_000 {
            let id = format!("x-{i}");
            let (path, iface) = if i == 77_777 {
                (
                    "/api/reports/annual-export".to_string(),
                    "GET /api/reports/annual-export",
                )
            } else {
                (format!("/api/users/{i}"), "GET /api/users/{id}")
            };
            let sampled = s.picks(&id);
            // What the proxy does: copy only what the sample picked or the minimum may want.
            if !(sampled || h.needs(iface)) {
                continue;
            }
            h.submit(Captured {
                exchange: ex(&id, &path, ""),
                sampled,
                heads: None,
            })
            .unwrap();
        }
        let files = r.close();
        let got = read_all(&files);
        assert_eq!(
            got.iter()
                .filter(|e| e.request.uri == "/api/reports/annual-export")
                .count(),
            1
        );
        assert!((800..1200).contains(&got.len()), "{}", got.len());
    }

    #[test]
    fn rotates_by_age_but_never_into_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path().join("age.jsonl"));
        c.rotate_interval = Some(Duration::from_millis(30));
        let r = Recorder::start(c, Redactor::new(&[], &[]).unwrap()).unwrap();
        let h = r.handle();
        let stats = h.stats().clone();
        for round in 0..2 {
            h.submit(Captured {
                exchange: ex(&format!("e{round}"), "/a", "ok"),
                sampled: true,
                heads: None,
            })
            .unwrap();
            wait_for(|| stats.files_completed.load(Ordering::Relaxed) == round + 1);
        }
        let files = r.close();
        // Two full files; the idle third one was never created.
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(read_all(&files).len(), 2);
    }

    /// Submits exchanges `ids` (bodies long enough to fill buffers) as sampled.
    fn submit_range(h: &RecorderHandle, ids: std::ops::Range<usize>) {
        for i in ids {
            let body = format!("{i:0>400}");
            h.submit(Captured {
                exchange: ex(&format!("e{i}"), "/a", &body),
                sampled: true,
                heads: None,
            })
            .unwrap();
        }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A disk that fills up part-way through a line, then has room again, twice: every
    /// exchange is counted once, as recorded only when its line reached the file, or as
    /// dropped for `disk_full`; the file holds exactly the recorded ones, whole, and is the
    /// only file ever created.
    #[test]
    fn on_a_full_disk_recorded_counts_exactly_the_lines_in_the_file() {
        use crate::recording::streamed::small_disk;
        const ROOM: u64 = 64 << 20;
        for name in ["full.jsonl", "full.jsonl.zst"] {
            let dir = tempfile::tempdir().unwrap();
            let room = small_disk::mount(dir.path(), ROOM);
            let mut c = cfg(dir.path().join(name));
            c.queue_size = 10_000;
            c.queue_bytes = 1 << 30;
            let r = Recorder::start(c, Redactor::new(&[], &[]).unwrap()).unwrap();
            let h = r.handle();
            let stats = h.stats().clone();
            let recorded = || stats.recorded.load(Ordering::Relaxed);
            let full = || stats.dropped(DropReason::DiskFull);
            let mut next = 0;
            let mut want = Vec::new();
            // Sends one exchange at a time until one is recorded (the pause after the last
            // failure is over), then 20 more, which are recorded too.
            let until_written_again = |next: &mut usize, want: &mut Vec<usize>| {
                let before = recorded();
                while recorded() == before {
                    assert!(*next < 100_000, "{name}: the recorder never wrote again");
                    submit_range(&h, *next..*next + 1);
                    *next += 1;
                    wait_for(|| recorded() + full() == *next as u64);
                }
                want.push(*next - 1);
                submit_range(&h, *next..*next + 20);
                want.extend(*next..*next + 20);
                *next += 20;
                wait_for(|| recorded() == want.len() as u64);
            };
            // Room enough: the first 50 reach the file.
            submit_range(&h, 0..50);
            want.extend(0..50);
            next += 50;
            wait_for(|| recorded() == 50);
            // Room for a few bytes: 1,000 lines, more than the buffer holds, fail part-way
            // through a write.
            room.store(10, Ordering::Relaxed);
            submit_range(&h, next..next + 1000);
            next += 1000;
            wait_for(|| full() == 1000);
            assert_eq!(recorded(), 50, "{name}");
            // Still one file: no new one per try.
            assert_eq!(files_in(dir.path()), [format!("{name}.partial")], "{name}");
            room.store(ROOM, Ordering::Relaxed);
            until_written_again(&mut next, &mut want);
            // Full again: 30 lines fail part-way through a flush.
            room.store(10, Ordering::Relaxed);
            let dropped = full();
            submit_range(&h, next..next + 30);
            next += 30;
            wait_for(|| full() == dropped + 30);
            room.store(ROOM, Ordering::Relaxed);
            until_written_again(&mut next, &mut want);
            let files = r.close();
            assert_eq!(recorded() + full(), next as u64, "{name}");
            assert_eq!(stats.dropped(DropReason::WriteError), 0, "{name}");
            assert!(stats.write_failures.load(Ordering::Relaxed) >= 2, "{name}");
            assert_eq!(files.len(), 1, "{name}: {files:?}");
            assert_eq!(files[0].not_completed, None, "{name}");
            assert_eq!(files[0].exchanges, recorded(), "{name}");
            let got: Vec<String> = read_all(&files).into_iter().map(|e| e.id).collect();
            let want: Vec<String> = want.iter().map(|i| format!("e{i}")).collect();
            assert_eq!(got, want, "{name}");
            assert_eq!(files_in(dir.path()), [name.to_string()], "{name}");
            if name.ends_with(".zst") {
                // Frames ended where the file was cut back are valid zstd for any decoder.
                let f = std::fs::File::open(&files[0].path).unwrap();
                let text = zstd::stream::decode_all(f).unwrap();
                let lines = text
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count();
                assert_eq!(lines, want.len() + 1, "{name}");
            }
        }
    }

    /// A file that cannot be completed at the end stays `.partial`, listed with the reason,
    /// holding exactly the exchanges counted; one that holds none is removed.
    #[test]
    fn a_file_the_full_disk_keeps_from_completing_is_listed_or_removed() {
        use crate::recording::streamed::small_disk;
        let dir = tempfile::tempdir().unwrap();
        let room = small_disk::mount(dir.path(), 64 << 20);
        let out = dir.path().join("kept.jsonl.zst");
        let r = Recorder::start(cfg(out.clone()), Redactor::new(&[], &[]).unwrap()).unwrap();
        let h = r.handle();
        submit_range(&h, 0..20);
        wait_for(|| h.stats().recorded.load(Ordering::Relaxed) == 20);
        // Not even the end of the zstd frame fits.
        room.store(0, Ordering::Relaxed);
        let files = r.close();
        assert_eq!(files.len(), 1, "{files:?}");
        let partial = partial_path(&out);
        assert_eq!(files[0].path, partial);
        assert_eq!(files[0].exchanges, 20);
        let why = files[0].not_completed.clone().unwrap();
        assert!(why.contains("kept.jsonl.zst.partial"), "{why}");
        let shown = files[0].to_string();
        assert!(
            shown.contains("not completed") && shown.contains("20 whole exchanges"),
            "{shown}"
        );
        assert_eq!(read_all(&files).len(), 20);
        assert_eq!(h.stats().recorded.load(Ordering::Relaxed), 20);

        // Full from the start: nothing reaches the file, which is not left behind.
        let dir = tempfile::tempdir().unwrap();
        small_disk::mount(dir.path(), 0);
        let r = Recorder::start(
            cfg(dir.path().join("empty.jsonl")),
            Redactor::new(&[], &[]).unwrap(),
        )
        .unwrap();
        let h = r.handle();
        submit_range(&h, 0..5);
        let stats = h.stats().clone();
        wait_for(|| stats.dropped(DropReason::DiskFull) == 5);
        assert_eq!(r.close(), []);
        assert_eq!(stats.recorded.load(Ordering::Relaxed), 0);
        assert!(
            files_in(dir.path()).is_empty(),
            "{:?}",
            files_in(dir.path())
        );
    }

    #[test]
    fn rotated_names_keep_the_extension() {
        let p = rotated_name(Path::new("/d/traffic.jsonl.zst"), 3);
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            n.starts_with("traffic-") && n.ends_with("-0003.jsonl.zst"),
            "{n}"
        );
        assert_eq!(p.parent(), Some(Path::new("/d")));
    }
}
