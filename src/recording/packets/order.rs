//! Exchanges written in capture order. A connection's exchange is complete only when its
//! response is, so exchanges complete in a different order than their requests began: a slow
//! request that started first would otherwise be written after faster ones that started
//! later. [`Order`] holds each completed exchange until no request still open on a followed
//! connection began before it, then writes it: exchanges leave in order of their request's
//! capture time, ties in the order they completed.
//!
//! The earliest start of an open request (the low watermark) is kept cheaply: each
//! connection has a slot holding its oldest open request's start; a change appends the new
//! start to a queue sorted by start, whose superseded entries are dropped lazily (an entry is
//! current while its slot still holds that start in the same generation). Requests begin
//! at the capture's present, so a new start almost always goes at the back: appending and
//! taking from the front cost the same however many connections are followed. The watermark is looked up again
//! only when the exchange at the head of the held ones is blocked and the request that
//! blocked it has ended, so the cost does not grow with the connections followed.
//!
//! Bounded: a request open for more than [`MAX_HOLD_US`] of capture time holds nothing back
//! any more (a slowloris, a long poll), and beyond [`MAX_HELD`] exchanges or
//! [`MAX_HELD_BYTES`] held the earliest is written anyway. A connection given up no longer
//! holds anything back. Whatever is then written after an exchange that began later is
//! counted by [`NOTE_OUT_OF_ORDER`], so the order a recording claims is checked, not
//! assumed.

use crate::error::Result;
use crate::exchange::Exchange;
use crate::recording::import::{emit, ImportReport, Sink};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// A request open for longer than this (capture time) no longer holds back the exchanges
/// that began after it.
pub(crate) const MAX_HOLD_US: i64 = 60_000_000;
/// Exchanges held at once; beyond this the earliest is written anyway.
pub(crate) const MAX_HELD: usize = 131_072;
/// Bytes of exchanges held at once (bodies, header fields, a fixed share each); beyond this
/// the earliest is written anyway.
pub(crate) const MAX_HELD_BYTES: usize = 64 << 20;

/// The note for exchanges written after one whose request began later.
pub const NOTE_OUT_OF_ORDER: &str = "exchanges written out of capture order (after one that began later: an earlier request stayed open more than 60 s of capture time, 131,072 exchanges or 64 MiB waited behind it, or the packets came out of time order)";

/// A completed exchange waiting for the requests that began before it.
struct Held {
    ts: i64,
    seq: u64,
    size: usize,
    ex: Box<Exchange>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    /// Reversed, so the max-heap yields the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.ts, o.seq).cmp(&(self.ts, self.seq))
    }
}

/// A connection's place in the watermark.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// Bumped when the slot passes to another connection, so entries of the last one
    /// are never taken for the new one's.
    gen: u32,
    /// Start of the connection's oldest open request.
    since: Option<i64>,
}

/// The starts of open requests, earliest first, and the held exchanges behind them.
#[derive(Default)]
pub(crate) struct Order {
    held: BinaryHeap<Held>,
    held_bytes: usize,
    seq: u64,
    /// Capture time of the latest exchange written, for counting those written after it
    /// that began before it.
    last_out: Option<i64>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots whose `since` is set.
    open: usize,
    /// (start, slot, generation), sorted; an entry is current while its slot still holds
    /// that start in that generation.
    starts: VecDeque<(i64, u32, u32)>,
    /// No current entry is earlier than this (`None`: no request open); it is the watermark
    /// itself unless `stale`.
    low: Option<i64>,
    /// The request at `low` may have ended: look again before holding anything behind it.
    stale: bool,
}

impl Order {
    /// A slot for a new connection, with no open request.
    pub fn attach(&mut self) -> u32 {
        match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// The connection in `slot` ended: its open request holds nothing back any more.
    pub fn detach(&mut self, slot: u32) {
        self.track(slot, None);
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.gen = s.gen.wrapping_add(1);
            self.free.push(slot);
        }
    }

    /// The oldest open request of the connection in `slot` began at `since` (`None`: none
    /// is open). Cheap when nothing changed, as for most segments.
    pub fn track(&mut self, slot: u32, since: Option<i64>) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if s.since == since {
            return;
        }
        let (old, gen) = (std::mem::replace(&mut s.since, since), s.gen);
        if let Some(o) = old {
            self.open -= 1;
            if self.low.is_some_and(|w| o <= w) {
                self.stale = true;
            }
        }
        if let Some(t) = since {
            self.open += 1;
            let entry = (t, slot, gen);
            if self.starts.back().is_none_or(|b| *b <= entry) {
                self.starts.push_back(entry);
            } else {
                // A request that began before one already tracked (pipelined requests, or
                // packets out of time order): rare, so a sorted insert is cheap enough.
                let at = self.starts.partition_point(|e| *e <= entry);
                self.starts.insert(at, entry);
            }
            self.low = Some(self.low.map_or(t, |w| w.min(t)));
            if self.starts.len() > 2 * self.open + 4096 {
                // Superseded entries behind a long-open request are dropped in one pass,
                // so the heap stays within a few entries per connection.
                let slots = &self.slots;
                self.starts.retain(|(t, s, g)| {
                    let cur = slots[*s as usize];
                    cur.gen == *g && cur.since == Some(*t)
                });
            }
        }
    }

    /// Looks up the watermark again: the earliest current start at or after `cutoff`.
    fn refresh(&mut self, cutoff: i64) {
        self.stale = false;
        while let Some((t, s, g)) = self.starts.front().copied() {
            let cur = self.slots[s as usize];
            if t >= cutoff && cur.gen == g && cur.since == Some(t) {
                self.low = Some(t);
                return;
            }
            // Superseded, or open so long that it holds nothing back any more.
            self.starts.pop_front();
        }
        self.low = None;
    }

    /// Exchanges held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes the exchanges completed since the last call, in the order they completed.
    pub fn hold(&mut self, done: &mut Vec<Exchange>) {
        for ex in done.drain(..) {
            let size = ex.approx_size();
            self.held_bytes += size;
            self.seq += 1;
            self.held.push(Held {
                ts: ex.ts_us,
                seq: self.seq,
                size,
                ex: Box::new(ex),
            });
        }
    }

    /// Takes the exchanges completed since the last call and writes those whose turn has
    /// come. The common case, one exchange with nothing held that no open request began
    /// before, is written straight away.
    pub fn take(
        &mut self,
        done: &mut Vec<Exchange>,
        now_us: i64,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        if done.is_empty() {
            return if self.held.is_empty() {
                Ok(())
            } else {
                self.release(now_us, sink, report)
            };
        }
        if done.len() == 1 && self.held.is_empty() {
            let ts = done[0].ts_us;
            let cutoff = now_us.saturating_sub(MAX_HOLD_US);
            if self
                .low
                .is_some_and(|w| ts > w && (self.stale || w < cutoff))
            {
                self.refresh(cutoff);
            }
            if self.low.is_none_or(|w| ts <= w) {
                if let Some(ex) = done.pop() {
                    return self.write(ex, sink, report);
                }
            }
        }
        self.hold(done);
        self.release(now_us, sink, report)
    }

    /// Writes every held exchange that no open request began before, and the earliest
    /// ones beyond the bounds; `now_us` is the latest capture time seen.
    pub fn release(
        &mut self,
        now_us: i64,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        let cutoff = now_us.saturating_sub(MAX_HOLD_US);
        while let Some(head) = self.held.peek() {
            let blocked = self.low.is_some_and(|w| head.ts > w);
            if blocked && (self.stale || self.low.is_some_and(|w| w < cutoff)) {
                self.refresh(cutoff);
                continue;
            }
            if blocked && self.held.len() <= MAX_HELD && self.held_bytes <= MAX_HELD_BYTES {
                return Ok(());
            }
            self.write_head(sink, report)?;
        }
        Ok(())
    }

    /// Writes everything held, in order: the input is over.
    pub fn flush(&mut self, sink: &mut dyn Sink, report: &mut ImportReport) -> Result<()> {
        while !self.held.is_empty() {
            self.write_head(sink, report)?;
        }
        Ok(())
    }

    fn write_head(&mut self, sink: &mut dyn Sink, report: &mut ImportReport) -> Result<()> {
        let Some(h) = self.held.pop() else {
            return Ok(());
        };
        self.held_bytes -= h.size;
        self.write(*h.ex, sink, report)
    }

    fn write(
        &mut self,
        ex: Exchange,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        if self.last_out.is_some_and(|t| ex.ts_us < t) {
            report.note(NOTE_OUT_OF_ORDER);
        } else {
            self.last_out = Some(ex.ts_us);
        }
        emit(sink, report, ex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::import::exchange;

    fn ex(ts: i64) -> Exchange {
        exchange(format!("e{ts}"), ts, Default::default(), None, None)
    }

    fn out_ts(v: &[Exchange]) -> Vec<i64> {
        v.iter().map(|e| e.ts_us).collect()
    }

    #[test]
    fn an_exchange_waits_for_the_open_request_that_began_before_it() {
        let mut o = Order::default();
        let mut r = ImportReport::new("packets");
        let mut out = Vec::new();
        let (a, b) = (o.attach(), o.attach());
        o.track(a, Some(10));
        o.track(b, Some(20));
        o.hold(&mut vec![ex(20)]);
        o.track(b, None);
        o.release(30, &mut out, &mut r).unwrap();
        assert!(out.is_empty());
        assert_eq!(o.held(), 1);
        o.hold(&mut vec![ex(10)]);
        o.track(a, None);
        o.release(40, &mut out, &mut r).unwrap();
        assert_eq!(out_ts(&out), [10, 20]);
        assert_eq!(r.written, 2);
        assert!(r.notes.is_empty(), "{r:?}");
    }

    #[test]
    fn a_request_open_past_the_bound_holds_nothing_back_and_what_follows_is_counted() {
        let mut o = Order::default();
        let mut r = ImportReport::new("packets");
        let mut out = Vec::new();
        let (a, b) = (o.attach(), o.attach());
        o.track(a, Some(0));
        o.track(b, Some(5));
        o.hold(&mut vec![ex(5)]);
        o.track(b, None);
        o.release(MAX_HOLD_US - 1, &mut out, &mut r).unwrap();
        assert!(out.is_empty());
        o.release(MAX_HOLD_US + 1, &mut out, &mut r).unwrap();
        assert_eq!(out_ts(&out), [5]);
        // The slow one comes after all: written, and counted as out of order.
        o.hold(&mut vec![ex(0)]);
        o.track(a, None);
        o.release(MAX_HOLD_US + 2, &mut out, &mut r).unwrap();
        assert_eq!(out_ts(&out), [5, 0]);
        assert_eq!(r.notes[NOTE_OUT_OF_ORDER], 1);
    }

    #[test]
    fn beyond_the_count_bound_the_earliest_is_written_anyway() {
        let mut o = Order::default();
        let mut r = ImportReport::new("packets");
        let mut out = Vec::new();
        let a = o.attach();
        o.track(a, Some(0));
        for i in 0..MAX_HELD + 10 {
            o.hold(&mut vec![ex(1 + i as i64)]);
            o.release(1 + i as i64, &mut out, &mut r).unwrap();
        }
        assert_eq!(o.held(), MAX_HELD);
        assert_eq!(out_ts(&out), (1..=10).collect::<Vec<_>>());
        o.flush(&mut out, &mut r).unwrap();
        assert_eq!(out.len(), MAX_HELD + 10);
        assert!(r.notes.is_empty(), "{r:?}");
    }

    #[test]
    fn a_detached_connection_unblocks_and_its_slot_is_not_mistaken_for_the_next() {
        let mut o = Order::default();
        let mut r = ImportReport::new("packets");
        let mut out = Vec::new();
        let a = o.attach();
        o.track(a, Some(1));
        o.hold(&mut vec![ex(2)]);
        o.release(3, &mut out, &mut r).unwrap();
        assert!(out.is_empty());
        o.detach(a);
        // The slot goes to a new connection whose request begins at the same time.
        let b = o.attach();
        assert_eq!(a, b);
        o.track(b, Some(1));
        o.release(4, &mut out, &mut r).unwrap();
        assert!(out.is_empty(), "the new connection's request began earlier");
        o.track(b, Some(3));
        o.release(5, &mut out, &mut r).unwrap();
        assert_eq!(out_ts(&out), [2]);
    }

    #[test]
    fn a_start_earlier_than_those_tracked_takes_its_place_in_order() {
        let mut o = Order::default();
        let mut r = ImportReport::new("packets");
        let mut out = Vec::new();
        let (a, b, c) = (o.attach(), o.attach(), o.attach());
        o.track(a, Some(30));
        o.track(b, Some(10));
        o.track(c, Some(20));
        let starts: Vec<i64> = o.starts.iter().map(|e| e.0).collect();
        assert_eq!(starts, [10, 20, 30]);
        o.hold(&mut vec![ex(25)]);
        o.track(b, None);
        o.release(40, &mut out, &mut r).unwrap();
        assert!(out.is_empty(), "20 is still open");
        o.track(c, None);
        o.release(40, &mut out, &mut r).unwrap();
        assert_eq!(out_ts(&out), [25]);
    }

    #[test]
    fn superseded_starts_are_dropped_behind_a_long_open_request() {
        let mut o = Order::default();
        let (a, b) = (o.attach(), o.attach());
        o.track(a, Some(0));
        for i in 0..100_000 {
            o.track(b, Some(1 + i));
            o.track(b, None);
        }
        assert!(o.starts.len() <= 2 * o.open + 4097, "{}", o.starts.len());
    }
}
