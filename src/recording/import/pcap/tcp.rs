//! TCP reassembly for the pcap importer: follows each connection from its handshake,
//! puts each direction's segments back in sequence order (retransmissions dropped,
//! out-of-order segments held until the hole fills, partial overlaps trimmed) and hands
//! the in-order bytes to the connection's [`Flow`]. A stream whose start was not captured
//! is counted and skipped: without the initial sequence numbers nothing says where a
//! message begins, and guessing could invent requests.

use super::http::{End, Flow};
use super::{Ctx, Segment};
use crate::error::Result;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// Out-of-order bytes held per direction before the hole counts as lost.
const MAX_PENDING: usize = 16 << 20;
/// A closed or skipped connection's addresses are remembered this long (capture time), so
/// its late retransmissions and ACKs are not taken for a new mid-connection stream.
const FORGET_AFTER_US: i64 = 300_000_000;
/// Segments between sweeps of forgotten connections.
const SWEEP_EVERY: u64 = 65_536;

const SKIP_MIDSTREAM: &str = "TCP streams that start mid-connection (no SYN or SYN-ACK captured)";
const SKIP_NO_SYNACK: &str =
    "TCP streams whose SYN-ACK was not captured (server bytes cannot be placed)";
const SKIP_GAP: &str = "TCP stream directions with a lost segment (bytes after it unusable)";
const NOTE_RETRANSMIT: &str = "retransmitted TCP segments (duplicate bytes dropped)";
const NOTE_OUT_OF_ORDER: &str = "out-of-order TCP segments (put back in order)";
const NOTE_OPEN: &str = "TCP streams still open when the capture ended";
const NOTE_AFTER_CLOSE: &str = "TCP segments with data after their stream ended (dropped)";

/// A connection's addresses, the same for both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key(SocketAddr, SocketAddr);

impl Key {
    fn of(a: SocketAddr, b: SocketAddr) -> Key {
        if a <= b {
            Key(a, b)
        } else {
            Key(b, a)
        }
    }
}

enum Entry {
    Live(Box<Conn>),
    /// Seen without its handshake; `counted` once it carried data.
    Mid {
        counted: bool,
        last_us: i64,
    },
    /// Ended; its initial sequence numbers tell a late duplicate SYN from a new
    /// connection on the same addresses.
    Closed {
        last_us: i64,
        isns: [Option<u32>; 2],
    },
}

/// Every connection of a capture.
#[derive(Default)]
pub(crate) struct Tracker {
    conns: HashMap<Key, Entry>,
    streams: u64,
    since_sweep: u64,
}

struct Conn {
    client: SocketAddr,
    dirs: [Dir; 2],
    flow: Flow,
    synack_missing_counted: bool,
}

/// One direction: 0 is client to server, 1 server to client.
#[derive(Default)]
struct Dir {
    /// Initial sequence number (the SYN's); data starts at `isn + 1`.
    isn: Option<u32>,
    /// Stream offset of the next byte expected in order.
    next: u64,
    /// Segments ahead of `next`, by offset.
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    /// Stream offset of the FIN.
    fin_at: Option<u64>,
    ended: bool,
}

enum Accept {
    InOrder,
    Overlap,
    Duplicate,
    OutOfOrder,
    Overflow,
}

impl Dir {
    /// The stream offset of sequence number `seq`, taken as the one nearest to `next`
    /// (sequence numbers wrap at 2^32).
    fn offset_of(&self, seq: u32, isn: u32) -> i64 {
        let rel = seq.wrapping_sub(isn.wrapping_add(1));
        let delta = rel.wrapping_sub(self.next as u32) as i32;
        self.next as i64 + i64::from(delta)
    }

    fn accept(
        &mut self,
        off: i64,
        data: &[u8],
        deliver: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Accept> {
        let next = self.next as i64;
        let end = off + data.len() as i64;
        if end <= next {
            return Ok(Accept::Duplicate);
        }
        if off > next {
            let key = off as u64;
            if self
                .pending
                .get(&key)
                .is_some_and(|d| d.len() >= data.len())
            {
                return Ok(Accept::Duplicate);
            }
            if let Some(old) = self.pending.insert(key, data.to_vec()) {
                self.pending_bytes -= old.len();
            }
            self.pending_bytes += data.len();
            return Ok(if self.pending_bytes > MAX_PENDING {
                Accept::Overflow
            } else {
                Accept::OutOfOrder
            });
        }
        let skip = (next - off) as usize;
        deliver(&data[skip..])?;
        self.next = end as u64;
        // Held segments that the new bytes reach are now in order too.
        while let Some(entry) = self.pending.first_entry() {
            let at = *entry.key();
            if at > self.next {
                break;
            }
            let held = entry.remove();
            self.pending_bytes -= held.len();
            let held_end = at + held.len() as u64;
            if held_end > self.next {
                deliver(&held[(self.next - at) as usize..])?;
                self.next = held_end;
            }
        }
        Ok(if skip > 0 {
            Accept::Overlap
        } else {
            Accept::InOrder
        })
    }

    /// True when bytes before the FIN or held segments show a hole that never filled.
    fn has_hole(&self) -> bool {
        !self.pending.is_empty() || self.fin_at.is_some_and(|f| f > self.next)
    }
}

impl Tracker {
    /// Takes one TCP segment.
    pub fn segment(&mut self, seg: &Segment<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            let now = seg.ts_us;
            self.conns.retain(|_, e| match e {
                Entry::Live(_) => true,
                Entry::Mid { last_us, .. } | Entry::Closed { last_us, .. } => {
                    now.saturating_sub(*last_us) < FORGET_AFTER_US
                }
            });
        }
        let key = Key::of(seg.src, seg.dst);
        let opens = seg.syn;
        match self.conns.get_mut(&key) {
            Some(Entry::Live(conn)) => {
                let reuse = opens
                    && !seg.has_ack
                    && seg.src == conn.client
                    && conn.dirs[0].isn != Some(seg.seq);
                if !reuse {
                    if conn.segment(seg, ctx)? {
                        self.close(key, seg.ts_us, ctx)?;
                    }
                    return Ok(());
                }
                // A new SYN on the same addresses: the old connection is over (port reuse).
                self.close_as(key, End::CaptureOver, seg.ts_us, ctx)?;
            }
            Some(Entry::Mid { counted, last_us }) if !opens => {
                *last_us = seg.ts_us;
                if !seg.payload.is_empty() && !*counted {
                    *counted = true;
                    let at = ctx.at();
                    ctx.report.skip(SKIP_MIDSTREAM, || {
                        format!("{at}: {} -> {}", seg.src, seg.dst)
                    });
                }
                return Ok(());
            }
            Some(Entry::Closed { last_us, isns }) if !opens || isns.contains(&Some(seg.seq)) => {
                *last_us = seg.ts_us;
                if opens {
                    ctx.report.note(NOTE_RETRANSMIT);
                } else if !seg.payload.is_empty() {
                    ctx.report.note(NOTE_AFTER_CLOSE);
                }
                return Ok(());
            }
            None if !opens => {
                let counted = !seg.payload.is_empty();
                if counted {
                    let at = ctx.at();
                    ctx.report.skip(SKIP_MIDSTREAM, || {
                        format!("{at}: {} -> {}", seg.src, seg.dst)
                    });
                }
                self.conns.insert(
                    key,
                    Entry::Mid {
                        counted,
                        last_us: seg.ts_us,
                    },
                );
                return Ok(());
            }
            _ => {}
        }
        self.open(key, seg, ctx)
    }

    /// Starts following a connection at its SYN (or SYN-ACK, which names both ISNs).
    fn open(&mut self, key: Key, seg: &Segment<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        let mut dirs: [Dir; 2] = Default::default();
        let (client, server) = if seg.has_ack {
            dirs[1].isn = Some(seg.seq);
            dirs[0].isn = Some(seg.ack.wrapping_sub(1));
            (seg.dst, seg.src)
        } else {
            dirs[0].isn = Some(seg.seq);
            (seg.src, seg.dst)
        };
        self.streams += 1;
        let mut conn = Box::new(Conn {
            client,
            dirs,
            flow: Flow::new(self.streams, client, server),
            synack_missing_counted: false,
        });
        let done = conn.segment(seg, ctx)?;
        self.conns.insert(key, Entry::Live(conn));
        if done {
            self.close(key, seg.ts_us, ctx)?;
        }
        Ok(())
    }

    /// Finishes a connection whose directions have both ended.
    fn close(&mut self, key: Key, now_us: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        let closed = Entry::Closed {
            last_us: now_us,
            isns: [None, None],
        };
        if let Some(Entry::Live(mut conn)) = self.conns.insert(key, closed) {
            conn.flow.finish(ctx)?;
            let isns = [conn.dirs[0].isn, conn.dirs[1].isn];
            self.conns.insert(
                key,
                Entry::Closed {
                    last_us: now_us,
                    isns,
                },
            );
        }
        Ok(())
    }

    /// Ends both directions of a live connection as `end` and finishes it.
    fn close_as(&mut self, key: Key, end: End, now_us: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        if let Some(Entry::Live(conn)) = self.conns.get_mut(&key) {
            conn.end_dir(0, end, ctx)?;
            conn.end_dir(1, end, ctx)?;
        }
        self.close(key, now_us, ctx)
    }

    /// The capture is over: every connection still open ends here, in stream order.
    pub fn finish(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        let mut open: Vec<(u64, Key)> = self
            .conns
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Live(c) => Some((c.flow.stream(), *k)),
                _ => None,
            })
            .collect();
        open.sort_by_key(|(stream, _)| *stream);
        for (_, key) in open {
            ctx.report.note(NOTE_OPEN);
            self.close_as(key, End::CaptureOver, 0, ctx)?;
        }
        self.conns.clear();
        Ok(())
    }
}

impl Conn {
    /// Takes one segment; true when both directions have ended.
    fn segment(&mut self, seg: &Segment<'_>, ctx: &mut Ctx<'_>) -> Result<bool> {
        let d = usize::from(seg.src != self.client);
        if seg.syn && seg.has_ack && d == 1 && self.dirs[1].isn.is_none() {
            self.dirs[1].isn = Some(seg.seq);
        }
        if seg.rst {
            self.end_dir(0, End::Reset, ctx)?;
            self.end_dir(1, End::Reset, ctx)?;
            return Ok(true);
        }
        if self.dirs[d].ended {
            if !seg.payload.is_empty() && !self.dirs[d].has_hole() {
                ctx.report.note(NOTE_AFTER_CLOSE);
            }
            return Ok(self.both_ended());
        }
        let Some(isn) = self.dirs[d].isn else {
            if !seg.payload.is_empty() || seg.fin {
                if !self.synack_missing_counted {
                    self.synack_missing_counted = true;
                    let at = ctx.at();
                    let label = self.flow.label().to_string();
                    ctx.report.skip(SKIP_NO_SYNACK, || format!("{at}: {label}"));
                }
                self.end_dir(d, End::Lost, ctx)?;
            }
            return Ok(self.both_ended());
        };
        let data_seq = if seg.syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        let off = self.dirs[d].offset_of(data_seq, isn);
        if !seg.payload.is_empty() {
            let (dirs, flow) = (&mut self.dirs, &mut self.flow);
            let ts = seg.ts_us;
            let accepted =
                dirs[d].accept(off, seg.payload, &mut |bytes| flow.data(d, bytes, ts, ctx))?;
            match accepted {
                Accept::InOrder => {}
                Accept::Overlap | Accept::Duplicate => ctx.report.note(NOTE_RETRANSMIT),
                Accept::OutOfOrder => ctx.report.note(NOTE_OUT_OF_ORDER),
                Accept::Overflow => {
                    let at = ctx.at();
                    let label = self.flow.label().to_string();
                    ctx.report.skip(SKIP_GAP, || {
                        format!("{at}: {label}: more than 16 MiB waiting behind a hole")
                    });
                    self.dirs[d].pending.clear();
                    self.dirs[d].pending_bytes = 0;
                    self.end_dir(d, End::Lost, ctx)?;
                    return Ok(self.both_ended());
                }
            }
        }
        if seg.fin {
            let fin_at = off + seg.payload.len() as i64;
            if fin_at >= 0 && self.dirs[d].fin_at.is_none() {
                self.dirs[d].fin_at = Some(fin_at as u64);
            }
        }
        let dir = &self.dirs[d];
        if dir.fin_at.is_some_and(|f| dir.next >= f) {
            self.end_dir(d, End::Closed, ctx)?;
        }
        Ok(self.both_ended())
    }

    fn both_ended(&self) -> bool {
        self.dirs[0].ended && self.dirs[1].ended
    }

    /// Ends direction `d`; a hole that never filled turns the end into a loss.
    fn end_dir(&mut self, d: usize, end: End, ctx: &mut Ctx<'_>) -> Result<()> {
        let dir = &mut self.dirs[d];
        if dir.ended {
            return Ok(());
        }
        dir.ended = true;
        let end = if end != End::Lost && dir.has_hole() {
            let at = ctx.at();
            let label = self.flow.label().to_string();
            let next = dir.next;
            ctx.report.skip(SKIP_GAP, || {
                format!("{at}: {label}: bytes missing from offset {next}")
            });
            End::Lost
        } else {
            end
        };
        dir.pending.clear();
        dir.pending_bytes = 0;
        self.flow.end(d, end, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dir: &mut Dir, segs: &[(i64, &[u8])]) -> (Vec<u8>, Vec<&'static str>) {
        let mut out = Vec::new();
        let mut kinds = Vec::new();
        for (off, data) in segs {
            let k = dir
                .accept(*off, data, &mut |b| {
                    out.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
            kinds.push(match k {
                Accept::InOrder => "in",
                Accept::Overlap => "overlap",
                Accept::Duplicate => "dup",
                Accept::OutOfOrder => "ooo",
                Accept::Overflow => "overflow",
            });
        }
        (out, kinds)
    }

    #[test]
    fn reorders_drops_duplicates_and_trims_overlaps() {
        let mut d = Dir::default();
        let (out, kinds) = collect(
            &mut d,
            &[
                (0, b"abc"),
                (6, b"ghi"),
                (3, b"def"),
                (3, b"def"),
                (7, b"hij"),
                (12, b"mn"),
                (10, b"kl"),
            ],
        );
        assert_eq!(out, b"abcdefghijklmn");
        assert_eq!(kinds, ["in", "ooo", "in", "dup", "overlap", "ooo", "in"]);
        assert!(!d.has_hole());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let d = Dir {
            isn: Some(u32::MAX - 1),
            ..Default::default()
        };
        // Data starts at isn + 1 = u32::MAX, then wraps to 0.
        assert_eq!(d.offset_of(u32::MAX, u32::MAX - 1), 0);
        assert_eq!(d.offset_of(4, u32::MAX - 1), 5);
    }

    #[test]
    fn a_hole_is_reported_and_memory_is_bounded() {
        let mut d = Dir::default();
        let big = vec![0u8; 1 << 20];
        let mut last = "";
        for i in 0..20 {
            let (_, k) = collect(&mut d, &[(1 + i * (1 << 20), &big)]);
            last = k[0];
            if last == "overflow" {
                break;
            }
        }
        assert_eq!(last, "overflow");
        assert!(d.has_hole());
    }
}
