//! The reader thread: streams the recordings (blocking file and zstd I/O stays off the
//! runtimes), keys each exchange, leaves out what the shard split and the filters exclude,
//! skips what must not be replayed (counted, never dropped), stamps the rest with their
//! start ([`super::pacing`]) and hands them to the workers in batches through a bounded
//! channel, so memory stays flat however large the input.

use super::pacing::Schedule;
use super::{select, Job, Progress};
use crate::analysis::Aggregator;
use crate::config::ReplayConfig;
use crate::error::Result;
use crate::recording::RecordingReader;
use crate::report::diffs::{DiffLine, DiffSink};
use std::sync::atomic::Ordering;

/// What the reader thread hands back when the recordings are exhausted.
pub(super) struct Dispatched {
    /// Why reading stopped early, if it did.
    pub(super) read_result: Result<()>,
    pub(super) exchanges_read: u64,
    pub(super) warnings: Vec<String>,
    /// The aggregate of the exchanges skipped (not sent).
    pub(super) skipped: Aggregator,
    pub(super) sink: Option<DiffSink>,
    pub(super) selected: select::SelectionCounter,
}

/// Runs on the reader thread: reads the recordings, keys, selects and filters exchanges,
/// skips what must not be replayed (counted, never dropped), stamps each job with its
/// scheduled start, and hands jobs to the workers in batches, so the threads wake each
/// other once per batch, not once per exchange. The bounded channel keeps reading from
/// running far ahead of replay.
pub(super) fn dispatch(
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
    let mut schedule = Schedule::new(cfg.pacing);
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
        let writes = !cfg.safety.is_safe(&ex.request, &interface);
        if writes {
            skipped.record_side_effecting(&interface);
        }
        // With shadowdiff playing the upstreams nothing reaches a real backend: a write may
        // be sent, and sent again for the noise probe, like any read.
        let safe = !writes || cfg.upstream.is_some();
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
        let scheduled = schedule.next(ex.ts_us);
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
