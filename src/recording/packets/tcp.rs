//! TCP reassembly for the packet pipeline: follows each connection from its handshake,
//! puts each direction's segments back in sequence order (retransmissions dropped,
//! out-of-order segments held until the hole fills, partial overlaps trimmed) and hands
//! the in-order bytes to the connection's [`Flow`]; the exchanges the flows complete pass
//! through [`Order`], which writes them in capture order. A stream whose start was not captured
//! is counted and skipped: without the initial sequence numbers nothing says where a
//! message begins, and guessing could invent requests. Memory is bounded whatever the
//! capture holds: a connection idle for [`Limits::idle_us`] of capture time is given up
//! (a slowloris), and so are the least recently active ones beyond [`MAX_LIVE`] open at
//! once (half-open connections from a SYN flood or a scan would otherwise pile up); the
//! bytes all connections hold (out-of-order segments, unparsed messages, requests waiting
//! for their answers) are capped at [`Limits::max_held`] by giving up the largest holders;
//! the small records kept of ended connections are capped at [`MAX_TRACKED`]. Each give-up
//! is counted by reason, and data that arrives on a connection after it was given up is
//! counted as a skip, never dropped silently.

use super::http::{End, Flow};
use super::order::Order;
use super::{Ctx, Segment};
use crate::error::Result;
use crate::exchange::Exchange;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

/// Out-of-order bytes held per direction before the hole counts as lost.
const MAX_PENDING: usize = 16 << 20;
/// What holding one out-of-order segment costs beyond its bytes (its allocation and map
/// node), counted against [`MAX_PENDING`] so that tiny segments cannot multiply the cost.
const SEGMENT_COST: usize = 64;
/// A closed or skipped connection's addresses are remembered this long (capture time), so
/// its late retransmissions and ACKs are not taken for a new mid-connection stream.
const FORGET_AFTER_US: i64 = 300_000_000;
/// Segments between sweeps of forgotten connections.
const SWEEP_EVERY: u64 = 65_536;
/// Capture time between sweeps however few segments came: on a quiet live capture, idle
/// connections are still given up within about [`LIVE_IDLE_US`] of their last segment.
const SWEEP_EVERY_US: i64 = 10_000_000;
/// A live connection with no segment for this long (capture time) is given up, unless
/// [`Limits`] say otherwise: HTTP servers and clients close idle keep-alive connections
/// well before.
pub const LIVE_IDLE_US: i64 = 600_000_000;
/// Bytes held over all live connections at once, unless [`Limits`] say otherwise.
pub const MAX_HELD: usize = 256 << 20;
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
const NOTE_TOO_MANY: &str =
    "TCP streams given up because more than 32,768 were open at once (the least recently active; what they completed kept)";
const SKIP_AFTER_GIVEN_UP: &str =
    "TCP streams that carried data after they were given up (idle, too many open at once, or too many bytes held): that data is lost";

/// What the reassembler may hold, set per import or capture.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A live connection with no segment for this long (capture time, microseconds) is
    /// given up.
    pub idle_us: i64,
    /// Bytes held over all live connections; beyond it the largest holders are given up.
    pub max_held: usize,
    /// Body bytes kept per message (at most the importer's 64 MiB); the rest is read past,
    /// the message marked truncated.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_us: LIVE_IDLE_US,
            max_held: MAX_HELD,
            max_body: crate::recording::import::MAX_BODY,
        }
    }
}

/// `10m`, `90s`, `250ms`: a duration as the notes name it.
fn span(us: i64) -> String {
    match us {
        us if us >= 60_000_000 && us % 60_000_000 == 0 => format!("{}m", us / 60_000_000),
        us if us >= 1_000_000 && us % 1_000_000 == 0 => format!("{}s", us / 1_000_000),
        us => format!("{}ms", us / 1_000),
    }
}

/// `256 MiB`, `640 KiB`: a size as the notes name it.
fn size(b: usize) -> String {
    if b >= 1 << 20 && b % (1 << 20) == 0 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{} KiB", b >> 10)
    }
}

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
pub(crate) struct Tracker {
    conns: HashMap<Key, Entry>,
    /// How many of `conns` are live.
    live: usize,
    /// Bytes the live connections hold, as each last counted itself.
    held: usize,
    /// The most `held` has been after a segment was taken.
    peak_held: usize,
    streams: u64,
    since_sweep: u64,
    /// Capture time of the last sweep.
    swept_us: i64,
    /// The latest capture time seen.
    now_us: i64,
    /// Completed exchanges, held until the requests that began before them are done.
    order: Order,
    /// Exchanges the connections completed during the current step, not yet held (kept
    /// between steps for its allocation).
    done: Option<Vec<Exchange>>,
    limits: Limits,
    /// Capture time between sweeps.
    sweep_every_us: i64,
    /// The note of a connection given up idle, which names the limit.
    note_idle: String,
    /// The note of a connection given up for the bytes held, which names the limit.
    note_held: String,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new(Limits::default())
    }
}

struct Conn {
    /// Capture time of its last segment.
    last_us: i64,
    /// Bytes this connection holds, as last added to the tracker's total.
    held: usize,
    client: SocketAddr,
    dirs: [Dir; 2],
    flow: Flow,
    synack_missing_counted: bool,
    /// Its place in the watermark of open requests.
    slot: u32,
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
                self.pending_bytes -= old.len() + SEGMENT_COST;
            }
            self.pending_bytes += data.len() + SEGMENT_COST;
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
            self.pending_bytes -= held.len() + SEGMENT_COST;
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
    /// A tracker that holds no more than `limits` allow.
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            idle_us: limits.idle_us.max(1),
            max_held: limits.max_held.max(1),
            max_body: limits.max_body,
        };
        Tracker {
            conns: HashMap::new(),
            live: 0,
            held: 0,
            peak_held: 0,
            streams: 0,
            since_sweep: 0,
            swept_us: 0,
            now_us: 0,
            order: Order::default(),
            done: None,
            // Often enough that an idle connection is given up within a quarter of the
            // limit past it.
            sweep_every_us: SWEEP_EVERY_US.min(limits.idle_us / 4).max(1),
            note_idle: format!(
                "TCP streams idle for {} of capture time (given up there, what they completed kept)",
                span(limits.idle_us)
            ),
            note_held: format!(
                "TCP streams given up because all streams together held more than {} (the largest holders; what they completed kept)",
                size(limits.max_held)
            ),
            limits,
        }
    }

    /// Connections followed now.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Exchanges completed and waiting for a request that began before them.
    pub fn held_exchanges(&self) -> usize {
        self.order.held()
    }

    /// Runs `step` with the exchanges it completes held back, then writes those whose turn
    /// has come (see [`Order`]).
    fn in_order(
        &mut self,
        ctx: &mut Ctx<'_>,
        step: impl FnOnce(&mut Self, &mut Ctx<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut done = self.done.take().unwrap_or_default();
        let stepped = {
            let mut inner = Ctx {
                sink: &mut done,
                report: &mut *ctx.report,
                file: ctx.file,
                packet: ctx.packet,
            };
            step(self, &mut inner)
        };
        if let Err(e) = stepped {
            self.order.hold(&mut done);
            self.done = Some(done);
            return Err(e);
        }
        let taken = self
            .order
            .take(&mut done, self.now_us, ctx.sink, ctx.report);
        self.done = Some(done);
        taken
    }

    /// Bytes the live connections hold now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The most bytes the live connections held at once.
    pub fn peak_held(&self) -> usize {
        self.peak_held
    }

    /// Connections remembered now, live or ended.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.conns.len()
    }

    /// Takes one TCP segment.
    pub fn segment(&mut self, seg: &Segment<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        self.now_us = self.now_us.max(seg.ts_us);
        self.in_order(ctx, |t, ctx| t.step(seg, ctx))
    }

    fn step(&mut self, seg: &Segment<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        self.since_sweep += 1;
        if self.swept_us == 0 {
            self.swept_us = seg.ts_us;
        }
        if self.since_sweep >= SWEEP_EVERY
            || seg.ts_us.saturating_sub(self.swept_us) >= self.sweep_every_us
        {
            self.since_sweep = 0;
            self.swept_us = seg.ts_us;
            self.sweep(seg.ts_us, ctx)?;
        }
        self.take(seg, ctx)?;
        self.account(Key::of(seg.src, seg.dst));
        if self.held > self.limits.max_held {
            self.give_up_largest(seg.ts_us, ctx)?;
        }
        self.peak_held = self.peak_held.max(self.held);
        if self.live > MAX_LIVE {
            self.give_up_least_active(seg.ts_us, ctx)?;
        }
        if self.conns.len() > MAX_TRACKED {
            self.forget_least_active();
        }
        Ok(())
    }

    /// Capture time goes on without a segment (a quiet link): idle connections are still
    /// given up on time. `now_us` must be no later than any segment still to come.
    /// Exchanges held behind a request open past the order's bound are written too.
    pub fn tick(&mut self, now_us: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        if self.swept_us != 0 && now_us.saturating_sub(self.swept_us) >= self.sweep_every_us {
            self.since_sweep = 0;
            self.swept_us = now_us;
            self.in_order(ctx, |t, ctx| t.sweep(now_us, ctx))?;
        }
        self.now_us = self.now_us.max(now_us);
        self.order.release(self.now_us, ctx.sink, ctx.report)
    }

    /// Brings the total of bytes held up to date with what connection `key` holds now.
    fn account(&mut self, key: Key) {
        if let Some(Entry::Live(conn)) = self.conns.get_mut(&key) {
            let now = conn.held();
            self.held = self.held - conn.held + now;
            conn.held = now;
        }
    }

    /// Gives up the connections holding the most bytes until all together hold no more
    /// than three quarters of the limit, so the next few segments do not repeat the scan.
    fn give_up_largest(&mut self, now: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        let mut live: Vec<(usize, u64, Key)> = self
            .conns
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Live(c) => Some((c.held, c.flow.stream(), *k)),
                _ => None,
            })
            .collect();
        live.sort_unstable_by_key(|(held, stream, _)| (std::cmp::Reverse(*held), *stream));
        let target = self.limits.max_held / 4 * 3;
        for (_, _, key) in live {
            if self.held <= target {
                break;
            }
            ctx.report.note(&self.note_held);
            self.give_up(key, now, ctx)?;
        }
        Ok(())
    }

    /// Gives up live connections idle for [`Limits::idle_us`] and forgets ended ones after
    /// [`FORGET_AFTER_US`].
    fn sweep(&mut self, now: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        let idle_us = self.limits.idle_us;
        let mut idle: Vec<(i64, u64, Key)> = self
            .conns
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Live(c) if now.saturating_sub(c.last_us) >= idle_us => {
                    Some((c.last_us, c.flow.stream(), *k))
                }
                _ => None,
            })
            .collect();
        idle.sort_unstable_by_key(|(t, stream, _)| (*t, *stream));
        for (_, _, key) in idle {
            ctx.report.note(&self.note_idle);
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
                    let ended = conn.segment(seg, ctx)?;
                    self.order.track(conn.slot, conn.flow.oldest_open_us());
                    if ended {
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
            held: 0,
            client,
            dirs,
            flow: Flow::new(self.streams, client, server, self.limits.max_body),
            synack_missing_counted: false,
            slot: self.order.attach(),
        });
        let done = conn.segment(seg, ctx)?;
        self.order.track(conn.slot, conn.flow.oldest_open_us());
        if let Some(Entry::Live(old)) = self.conns.insert(key, Entry::Live(conn)) {
            self.live -= 1;
            self.held -= old.held;
            self.order.detach(old.slot);
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
            self.order.detach(conn.slot);
            self.held -= conn.held;
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

    /// The capture is over: every connection still open ends here, in stream order, and
    /// every exchange held is written, in capture order.
    pub fn finish(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        self.in_order(ctx, Self::close_all)?;
        self.order.flush(ctx.sink, ctx.report)
    }

    fn close_all(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
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
        self.held = 0;
        Ok(())
    }
}

impl Conn {
    /// Bytes this connection holds: segments behind a hole and what its flow keeps.
    fn held(&self) -> usize {
        self.dirs[0].pending_bytes + self.dirs[1].pending_bytes + self.flow.held()
    }

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
            Self::with(Limits::default())
        }

        fn with(limits: Limits) -> Self {
            Run {
                tracker: Tracker::new(limits),
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

        /// One segment with every flag given: (syn, ack, fin, rst).
        #[allow(clippy::too_many_arguments)]
        fn flags(
            &mut self,
            src: SocketAddr,
            dst: SocketAddr,
            seq: u32,
            ack: Option<u32>,
            (syn, fin, rst): (bool, bool, bool),
            data: &[u8],
            ts_us: i64,
        ) {
            self.packet += 1;
            let seg = Segment {
                src,
                dst,
                seq,
                ack: ack.unwrap_or(0),
                syn,
                has_ack: ack.is_some(),
                fin,
                rst,
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

        fn tick(&mut self, now_us: i64) {
            let mut ctx = Ctx {
                sink: &mut self.out,
                report: &mut self.report,
                file: Path::new("t.pcap"),
                packet: self.packet,
            };
            self.tracker.tick(now_us, &mut ctx).unwrap();
        }

        fn finish(&mut self) {
            let mut ctx = Ctx {
                sink: &mut self.out,
                report: &mut self.report,
                file: Path::new("t.pcap"),
                packet: 0,
            };
            self.tracker.finish(&mut ctx).unwrap();
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

    /// How each connection of the simulated day behaves.
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        /// Handshake, a request, its answer, both FINs.
        Whole,
        /// A SYN and nothing else (a flood, a scan).
        SynOnly,
        /// Handshake and half a header section, then silence (a slowloris).
        Slow,
        /// Handshake and a request, then a reset before any answer.
        Unanswered,
    }

    fn kind(i: usize) -> Kind {
        match i % 10 {
            7 => Kind::SynOnly,
            8 => Kind::Slow,
            9 => Kind::Unanswered,
            _ => Kind::Whole,
        }
    }

    #[test]
    fn a_million_connections_over_a_day_keep_state_bounded_and_every_request_accounted() {
        // Short connections in waves of 20,000 open at once, a wave every 86.4 s of capture
        // time over a day; a tenth are bare SYNs, a tenth slowloris, a tenth reset before
        // their answer. Debug builds take a tenth of the day, to keep the suite quick.
        let total: usize = if cfg!(debug_assertions) {
            100_000
        } else {
            1_000_000
        };
        let wave = 20_000;
        let day_us: i64 = 86_400_000_000;
        let gap_us = day_us / (1_000_000 / wave) as i64;
        let limits = Limits::default();
        let mut r = Run::with(limits);
        let server: SocketAddr = "10.255.0.1:80".parse().unwrap();
        let client = |i: usize| -> SocketAddr {
            let a = std::net::Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
            SocketAddr::new(a.into(), 1024 + (i % 50_000) as u16)
        };
        let req = b"GET /day HTTP/1.1\r\nHost: a\r\n\r\n";
        let half = b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: ";
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (c_isn, s_isn) = (1_000u32, 9_000u32);
        let mut max_live = 0;
        let mut max_tracked = 0;
        let mut max_held = 0;
        for start in (0..total).step_by(wave) {
            let ids = start..(start + wave).min(total);
            let mut t = (start / wave) as i64 * gap_us;
            // Each phase sends one segment of every connection in the wave, a microsecond
            // apart, so all of them are open together.
            for phase in 0..5 {
                for i in ids.clone() {
                    t += 1;
                    let (c, k) = (client(i), kind(i));
                    let (cd, sd) = (c_isn + 1, s_isn + 1);
                    let none = (false, false, false);
                    match (phase, k) {
                        (0, _) => r.flags(c, server, c_isn, None, (true, false, false), b"", t),
                        (1, Kind::SynOnly) => {}
                        (1, _) => r.flags(server, c, s_isn, Some(cd), (true, false, false), b"", t),
                        (2, Kind::Slow) => r.flags(c, server, cd, Some(sd), none, half, t),
                        (2, Kind::Whole | Kind::Unanswered) => {
                            r.flags(c, server, cd, Some(sd), none, req, t)
                        }
                        (3, Kind::Whole) => r.flags(server, c, sd, Some(cd), none, resp, t),
                        (3, Kind::Unanswered) => {
                            let seq = cd + req.len() as u32;
                            r.flags(c, server, seq, Some(sd), (false, false, true), b"", t)
                        }
                        (4, Kind::Whole) => {
                            let (cf, sf) = (cd + req.len() as u32, sd + resp.len() as u32);
                            r.flags(c, server, cf, Some(sf), (false, true, false), b"", t);
                            r.flags(server, c, sf, Some(cf + 1), (false, true, false), b"", t);
                        }
                        _ => {}
                    }
                    max_live = max_live.max(r.tracker.live());
                    max_tracked = max_tracked.max(r.tracker.tracked());
                    max_held = max_held.max(r.tracker.held());
                }
            }
        }
        // A quiet end: the clock passes the idle limit, then the capture ends.
        let end = (total / wave) as i64 * gap_us + 2 * limits.idle_us;
        r.tick(end);
        r.finish();

        assert!(max_live <= MAX_LIVE, "{max_live} live");
        assert!(max_tracked <= MAX_TRACKED, "{max_tracked} tracked");
        // Nothing piles up from wave to wave: the peak is one wave's, not the day's.
        assert!(max_live <= wave + wave / 5, "{max_live} live");
        assert!(r.tracker.conns.capacity() <= 2 * MAX_TRACKED);
        // What is held is one wave's requests waiting for answers and slowloris heads,
        // under a kilobyte each, not the day's.
        assert!(max_held <= wave * 1_024, "{max_held} bytes held");
        assert!(r.tracker.peak_held() >= wave / 10 * half.len());

        let n = |k: Kind| (0..total).filter(|i| kind(*i) == k).count() as u64;
        let rep = &r.report;
        assert_eq!(rep.with_response, n(Kind::Whole), "{rep:?}");
        assert_eq!(rep.written, n(Kind::Whole) + n(Kind::Unanswered), "{rep:?}");
        let cut = "requests cut short (the stream ends inside them)";
        assert_eq!(rep.skipped.get(cut), Some(&n(Kind::Slow)), "{rep:?}");
        assert_eq!(rep.skipped.len(), 1, "{rep:?}");
        // Every connection that sent a request ends written or lost, once.
        let sent = n(Kind::Whole) + n(Kind::Slow) + n(Kind::Unanswered);
        assert_eq!(rep.written + rep.skipped_total(), sent);
        assert_eq!(rep.requests, n(Kind::Whole) + n(Kind::Unanswered));
        // The bare SYNs and the slowloris were given up idle, each counted.
        let idle = rep.notes.get(r.tracker.note_idle.as_str()).copied();
        assert_eq!(idle, Some(n(Kind::SynOnly) + n(Kind::Slow)), "{rep:?}");
        assert!(r.tracker.note_idle.contains("idle for 10m"));
        assert!(rep.examples.values().all(|v| v.len() <= 3));
        assert_eq!((r.tracker.live(), r.tracker.held()), (0, 0));
    }

    #[test]
    fn the_bytes_all_connections_hold_are_capped_by_giving_up_the_largest() {
        let limits = Limits {
            max_held: 1 << 20,
            ..Limits::default()
        };
        let mut r = Run::with(limits);
        let server: SocketAddr = "10.255.0.1:80".parse().unwrap();
        let chunk = vec![b'x'; 16 << 10];
        let mut over = 0;
        for i in 0..200u32 {
            let c: SocketAddr = format!("10.1.{}.{}:4000", i / 250, i % 250)
                .parse()
                .unwrap();
            let t = i64::from(i) * 10;
            r.flags(c, server, 100, None, (true, false, false), b"", t);
            r.flags(server, c, 500, Some(101), (true, false, false), b"", t + 1);
            // A request head, then body bytes behind a hole that never fills: each
            // connection holds out-of-order data, and a few hold far more than the rest.
            let head = b"POST /u HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n";
            r.flags(
                c,
                server,
                101,
                Some(501),
                (false, false, false),
                head,
                t + 2,
            );
            let times = if i % 50 == 0 { 40 } else { 1 };
            for k in 0..times {
                let seq = 101 + head.len() as u32 + 10 + k * chunk.len() as u32;
                r.flags(
                    c,
                    server,
                    seq,
                    Some(501),
                    (false, false, false),
                    &chunk,
                    t + 3,
                );
                assert!(r.tracker.held() <= limits.max_held, "{}", r.tracker.held());
            }
            if r.report.notes.contains_key(r.tracker.note_held.as_str()) {
                over += 1;
            }
        }
        assert!(over > 0);
        let given_up = r.report.notes[r.tracker.note_held.as_str()];
        assert!(given_up >= 4, "{:?}", r.report);
        assert!(r.tracker.note_held.contains("more than 1 MiB"));
        // The largest holders went first: each connection holding 640 KiB was given up.
        for i in (0..200u32).step_by(50) {
            let c: SocketAddr = format!("10.1.{}.{}:4000", i / 250, i % 250)
                .parse()
                .unwrap();
            let e = r.tracker.conns.get(&Key::of(c, server));
            assert!(matches!(e, Some(Entry::GivenUp { .. })), "{i}");
        }
        assert!(r.tracker.peak_held() <= limits.max_held);
        r.finish();
    }

    #[test]
    fn a_direction_that_stops_being_read_lets_go_of_what_it_held() {
        let mut r = Run::new();
        r.request();
        let (c, s) = ("10.0.0.1:40000", "10.0.0.2:80");
        // A request that starts well and then breaks the grammar after 60 KiB of header
        // fields: the client's side is malformed, its buffer dropped at once.
        let fields = "X-A: b\r\n".repeat(7_500);
        let body = format!("GET /b HTTP/1.1\r\n{fields}");
        r.seg(c, s, 120, Some(501), false, body.as_bytes(), 3);
        let held = r.tracker.held();
        assert!(held >= 60_000, "{held}");
        let seq = 120 + body.len() as u32;
        r.seg(
            c,
            s,
            seq,
            Some(501),
            false,
            b"\x00\x01 not a field\r\n\r\n",
            4,
        );
        assert!(r.report.skipped_total() >= 1, "{:?}", r.report);
        assert!(r.tracker.held() < 1_024, "{}", r.tracker.held());
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
        assert_eq!(r.report.notes[r.tracker.note_idle.as_str()], 1);
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
        assert_eq!(r.report.notes[r.tracker.note_idle.as_str()], 1);
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
