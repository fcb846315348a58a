//! TCP reassembly for the packet pipeline: follows each connection from its handshake,
//! puts each direction's segments back in sequence order (retransmissions dropped,
//! out-of-order segments held until the hole fills, partial overlaps trimmed) and hands
//! the in-order bytes to the connection's [`Flow`]. A stream whose start was not captured
//! is counted and skipped: without the initial sequence numbers nothing says where a
//! message begins, and guessing could invent requests. Memory is bounded whatever the
//! capture holds: a connection idle for [`LIVE_IDLE_US`] of capture time is given up, and
//! so are the least recently active ones beyond [`MAX_LIVE`] open at once (half-open
//! connections from a SYN flood or a scan would otherwise pile up); the small records kept
//! of ended connections are capped at [`MAX_TRACKED`]. Data that arrives on a connection
//! after it was given up is counted as a skip, never dropped silently.

use super::http::{End, Flow};
use super::{Ctx, Segment};
use crate::error::Result;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

/// Out-of-order bytes held per direction before the hole counts as lost.
const MAX_PENDING: usize = 16 << 20;
/// A closed or skipped connection's addresses are remembered this long (capture time), so
/// its late retransmissions and ACKs are not taken for a new mid-connection stream.
const FORGET_AFTER_US: i64 = 300_000_000;
/// Segments between sweeps of forgotten connections.
const SWEEP_EVERY: u64 = 65_536;
/// Capture time between sweeps however few segments came: on a quiet live capture, idle
/// connections are still given up within about [`LIVE_IDLE_US`] of their last segment.
const SWEEP_EVERY_US: i64 = 10_000_000;
/// A live connection with no segment for this long (capture time) is given up: HTTP
/// servers and clients close idle keep-alive connections well before.
pub(crate) const LIVE_IDLE_US: i64 = 600_000_000;
/// Live connections followed at once; beyond this the least recently active quarter is
/// given up. Each costs about a kilobyte before it carries data.
pub(crate) const MAX_LIVE: usize = 32_768;
/// Connections remembered at once, live or ended; beyond this the least recently active
/// quarter of the ended ones is forgotten.
pub(crate) const MAX_TRACKED: usize = 131_072;

const SKIP_MIDSTREAM: &str = "TCP streams that start mid-connection (no SYN or SYN-ACK captured)";
const SKIP_NO_SYNACK: &str =
    "TCP streams whose SYN-ACK was not captured (server bytes cannot be placed)";
const SKIP_GAP: &str = "TCP stream directions with a lost segment (bytes after it unusable)";
const NOTE_RETRANSMIT: &str = "retransmitted TCP segments (duplicate bytes dropped)";
const NOTE_OUT_OF_ORDER: &str = "out-of-order TCP segments (put back in order)";
const NOTE_OPEN: &str = "TCP streams still open when the capture ended";
const NOTE_AFTER_CLOSE: &str = "TCP segments with data after their stream ended (dropped)";
const NOTE_IDLE: &str =
    "TCP streams idle for 10 minutes of capture time (given up there, what they completed kept)";
const NOTE_TOO_MANY: &str =
    "TCP streams given up because more than 32,768 were open at once (the least recently active; what they completed kept)";
const SKIP_AFTER_GIVEN_UP: &str =
    "TCP streams that carried data after they were given up (idle 10 minutes, or too many open at once): that data is lost";

/// A connection's addresses, the same for both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key(SocketAddr, SocketAddr);

/// Both addresses go to the (randomly keyed) hasher as one write: the derived hash made a
/// dozen small writes per lookup, one of the reader's larger costs at one lookup a packet.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut buf = [0u8; 36];
        let mut at = 0;
        for a in [self.0, self.1] {
            let ip: [u8; 16] = match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            buf[at..at + 16].copy_from_slice(&ip);
            buf[at + 16..at + 18].copy_from_slice(&a.port().to_ne_bytes());
            at += 18;
        }
        state.write(&buf);
    }
}

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
    /// No longer followed (idle, or too many open); `counted` once data came after.
    GivenUp {
        counted: bool,
        last_us: i64,
    },
}

impl Entry {
    fn last_us(&self) -> i64 {
        match self {
            Entry::Live(c) => c.last_us,
            Entry::Mid { last_us, .. }
            | Entry::Closed { last_us, .. }
            | Entry::GivenUp { last_us, .. } => *last_us,
        }
    }
}

/// Every connection of a capture.
#[derive(Default)]
pub(crate) struct Tracker {
    conns: HashMap<Key, Entry>,
    /// How many of `conns` are live.
    live: usize,
    streams: u64,
    since_sweep: u64,
    /// Capture time of the last sweep.
    swept_us: i64,
}

struct Conn {
    /// Capture time of its last segment.
    last_us: i64,
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
    /// Connections followed now.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Takes one TCP segment.
    pub fn segment(&mut self, seg: &Segment<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        self.since_sweep += 1;
        if self.swept_us == 0 {
            self.swept_us = seg.ts_us;
        }
        if self.since_sweep >= SWEEP_EVERY
            || seg.ts_us.saturating_sub(self.swept_us) >= SWEEP_EVERY_US
        {
            self.since_sweep = 0;
            self.swept_us = seg.ts_us;
            self.sweep(seg.ts_us, ctx)?;
        }
        self.take(seg, ctx)?;
        if self.live > MAX_LIVE {
            self.give_up_least_active(seg.ts_us, ctx)?;
        }
        if self.conns.len() > MAX_TRACKED {
            self.forget_least_active();
        }
        Ok(())
    }

    /// Gives up live connections idle for [`LIVE_IDLE_US`] and forgets ended ones after
    /// [`FORGET_AFTER_US`].
    fn sweep(&mut self, now: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        let mut idle: Vec<(i64, u64, Key)> = self
            .conns
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Live(c) if now.saturating_sub(c.last_us) >= LIVE_IDLE_US => {
                    Some((c.last_us, c.flow.stream(), *k))
                }
                _ => None,
            })
            .collect();
        idle.sort_unstable_by_key(|(t, stream, _)| (*t, *stream));
        for (_, _, key) in idle {
            ctx.report.note(NOTE_IDLE);
            self.give_up(key, now, ctx)?;
        }
        self.conns.retain(|_, e| match e {
            Entry::Live(_) => true,
            e => now.saturating_sub(e.last_us()) < FORGET_AFTER_US,
        });
        Ok(())
    }

    /// Gives up the least recently active quarter of the live connections.
    fn give_up_least_active(&mut self, now: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        let mut live: Vec<(i64, u64, Key)> = self
            .conns
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Live(c) => Some((c.last_us, c.flow.stream(), *k)),
                _ => None,
            })
            .collect();
        live.sort_unstable_by_key(|(t, stream, _)| (*t, *stream));
        for (_, _, key) in live.into_iter().take(MAX_LIVE / 4) {
            ctx.report.note(NOTE_TOO_MANY);
            self.give_up(key, now, ctx)?;
        }
        Ok(())
    }

    /// Forgets the least recently active quarter of the ended connections. A late segment
    /// of one is then taken as a stream seen without its start, and counted as such.
    fn forget_least_active(&mut self) {
        let mut ended: Vec<(i64, Key)> = self
            .conns
            .iter()
            .filter(|(_, e)| !matches!(e, Entry::Live(_)))
            .map(|(k, e)| (e.last_us(), *k))
            .collect();
        ended.sort_unstable_by_key(|(t, _)| *t);
        for (_, key) in ended.into_iter().take(MAX_TRACKED / 4) {
            self.conns.remove(&key);
        }
    }

    /// Ends a live connection early: what it completed is written, what it had half done
    /// is counted by its flow, and data that comes later is counted as lost.
    fn give_up(&mut self, key: Key, now: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        self.close_as(key, End::GivenUp, now, ctx)?;
        self.conns.insert(
            key,
            Entry::GivenUp {
                counted: false,
                last_us: now,
            },
        );
        Ok(())
    }

    /// Routes one segment to its connection, opening, closing or skipping as it says.
    fn take(&mut self, seg: &Segment<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        let key = Key::of(seg.src, seg.dst);
        let opens = seg.syn;
        match self.conns.get_mut(&key) {
            Some(Entry::Live(conn)) => {
                conn.last_us = seg.ts_us;
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
            Some(Entry::GivenUp { counted, last_us }) if !opens => {
                *last_us = seg.ts_us;
                if !seg.payload.is_empty() && !*counted {
                    *counted = true;
                    let at = ctx.at();
                    ctx.report.skip(SKIP_AFTER_GIVEN_UP, || {
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
            last_us: seg.ts_us,
            client,
            dirs,
            flow: Flow::new(self.streams, client, server),
            synack_missing_counted: false,
        });
        let done = conn.segment(seg, ctx)?;
        if let Some(Entry::Live(_)) = self.conns.insert(key, Entry::Live(conn)) {
            self.live -= 1;
        }
        self.live += 1;
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
            self.live -= 1;
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
        self.live = 0;
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
    use crate::exchange::Exchange;
    use crate::recording::import::ImportReport;
    use std::path::Path;

    struct Run {
        tracker: Tracker,
        out: Vec<Exchange>,
        report: ImportReport,
        packet: u64,
    }

    impl Run {
        fn new() -> Self {
            Run {
                tracker: Tracker::default(),
                out: Vec::new(),
                report: ImportReport::new("packets"),
                packet: 0,
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn seg(
            &mut self,
            src: &str,
            dst: &str,
            seq: u32,
            ack: Option<u32>,
            syn: bool,
            data: &[u8],
            ts_us: i64,
        ) {
            self.packet += 1;
            let seg = Segment {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                seq,
                ack: ack.unwrap_or(0),
                syn,
                has_ack: ack.is_some(),
                fin: false,
                rst: false,
                payload: data,
                ts_us,
            };
            let mut ctx = Ctx {
                sink: &mut self.out,
                report: &mut self.report,
                file: Path::new("t.pcap"),
                packet: self.packet,
            };
            self.tracker.segment(&seg, &mut ctx).unwrap();
        }

        /// A handshake and one whole request from 10.0.0.1:40000 to 10.0.0.2:80.
        fn request(&mut self) {
            let (c, s) = ("10.0.0.1:40000", "10.0.0.2:80");
            self.seg(c, s, 100, None, true, b"", 0);
            self.seg(s, c, 500, Some(101), true, b"", 1);
            self.seg(c, s, 101, Some(501), false, b"GET /a HTTP/1.1\r\n\r\n", 2);
        }

        /// The server's answer to [`Run::request`] at `ts_us`.
        fn answer(&mut self, ts_us: i64) {
            let (c, s) = ("10.0.0.1:40000", "10.0.0.2:80");
            self.seg(
                s,
                c,
                501,
                Some(120),
                false,
                b"HTTP/1.1 204 No Content\r\n\r\n",
                ts_us,
            );
        }
    }

    /// A distinct client address for filler segment `i`.
    fn addr(i: usize) -> String {
        format!(
            "10.{}.{}.{}:{}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            1024 + i % 50_000
        )
    }

    #[test]
    fn half_open_connections_are_bounded_and_what_is_given_up_is_counted() {
        let mut r = Run::new();
        r.request();
        // A SYN flood: each SYN opens a connection that never carries a byte.
        let flood = |r: &mut Run, from: usize, to: usize| {
            for i in from..to {
                r.seg(
                    &addr(i + 1),
                    "10.0.0.2:80",
                    7,
                    None,
                    true,
                    b"",
                    10 + i as i64,
                );
                assert!(r.tracker.live <= MAX_LIVE, "{} live", r.tracker.live);
                assert!(
                    r.tracker.conns.len() <= MAX_TRACKED,
                    "{} tracked",
                    r.tracker.conns.len()
                );
            }
        };
        flood(&mut r, 0, MAX_LIVE);
        // The real connection was given up with its whole request written.
        assert_eq!(r.out.len(), 1);
        assert!(r.out[0].response.is_none());
        assert!(r.report.notes[NOTE_TOO_MANY] >= 1);
        assert!(r.report.skipped.is_empty(), "{:?}", r.report);
        // Its answer comes after: lost, and counted.
        r.answer(1_000_000);
        assert_eq!(r.report.skipped[SKIP_AFTER_GIVEN_UP], 1);
        flood(&mut r, MAX_LIVE, MAX_TRACKED + MAX_LIVE);
    }

    #[test]
    fn an_idle_connection_is_given_up_and_later_data_on_it_counted() {
        let mut r = Run::new();
        r.request();
        // Other traffic, mid-stream ACKs that open nothing, for longer than the idle limit.
        let n = SWEEP_EVERY as usize;
        for i in 0..n {
            let ts = 10 + (6 * LIVE_IDLE_US / 5 / n as i64) * i as i64;
            r.seg(&addr(i + 1), "10.0.0.2:80", 7, Some(9), false, b"", ts);
        }
        assert_eq!(r.tracker.live, 0);
        assert_eq!(r.report.notes[NOTE_IDLE], 1);
        assert_eq!(r.out.len(), 1);
        // Within FORGET_AFTER_US of being given up, so it is still known as given up.
        r.answer(13 * LIVE_IDLE_US / 10);
        assert_eq!(r.report.skipped[SKIP_AFTER_GIVEN_UP], 1);
    }

    #[test]
    fn on_a_quiet_capture_an_idle_connection_is_still_given_up() {
        let mut r = Run::new();
        r.request();
        // One segment a minute: far fewer than a sweep's segment count.
        for i in 0..12 {
            let ts = 10 + 60_000_000 * i as i64;
            r.seg(&addr(i + 1), "10.0.0.2:80", 7, Some(9), false, b"", ts);
        }
        assert_eq!(r.tracker.live, 0);
        assert_eq!(r.report.notes[NOTE_IDLE], 1);
        assert_eq!(r.out.len(), 1);
    }

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
