//! HTTP/2 with prior knowledge (h2c, gRPC) over one reassembled TCP connection whose
//! client began with the HTTP/2 preface, or switched to it by `Upgrade: h2c` (the upgrading
//! request is then stream 1): both byte streams are cut into frames, each
//! direction's header blocks are decoded by its own HPACK decoder in frame order, and each
//! stream becomes one exchange shaped as the tap records an HTTP/2 exchange (version
//! `HTTP/2`, the target from `:path`, `:authority` kept as `host`, trailers such as
//! `grpc-status` apart from the header fields). Its time is the capture time of the packet
//! that carried the request's first HEADERS frame; its latency runs from the packet that
//! ended the request to the one that began the answer, as on the HTTP/1 path.
//!
//! HPACK state is per direction and cumulative: once a header block of a direction cannot
//! be read (a lost segment, a frame that breaks the protocol, a bound exceeded) no later
//! block of it can be, so the streams that needed that direction are counted as lost by
//! reason, never guessed at. A connection whose start was not captured never reaches
//! here (the reassembler counts it as mid-connection). Memory is bounded: streams open at
//! once, a header block's size, a frame's size (the receiver's SETTINGS_MAX_FRAME_SIZE),
//! the decoded header list, the HPACK table and the bytes held per connection.

use super::http::{End, NOTE_NO_RESPONSE, SKIP_CUT_REQUEST, SKIP_ORPHAN};
use super::marks::Marks;
use super::order::MAX_HOLD_US;
use super::Ctx;
use crate::error::Result;
use crate::exchange::{Headers, Request, Response};
use crate::recording::import::http1::MAX_HEAD;
use crate::recording::import::{exchange, INCOMPLETE_BODY_CAP, MAX_BODY};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// The client connection preface (RFC 9113 section 3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Streams followed at once on one connection; servers allow 100 to 250 by default.
pub(crate) const MAX_STREAMS: usize = 1_000;
/// A header block (HEADERS or PUSH_PROMISE and its CONTINUATIONs) and the header list it
/// decodes to may be this large, as an HTTP/1 head may.
const MAX_BLOCK: usize = MAX_HEAD;
/// Fields a header list may have: many short names fit in [`MAX_BLOCK`], and each costs
/// the parser work.
const MAX_FIELDS: usize = 1_000;
/// HPACK table size followed at most, whatever a peer advertises.
const MAX_TABLE: usize = 1 << 20;
/// Bytes of bodies and header fields held per connection, beyond one capped body, before
/// a stream is given up.
const MAX_HELD_EXTRA: usize = MAX_HEAD + (1 << 20);
/// The largest frame the protocol can carry (a 24-bit length).
const MAX_FRAME_LIMIT: u32 = (1 << 24) - 1;
/// SETTINGS_HEADER_TABLE_SIZE and SETTINGS_MAX_FRAME_SIZE before any SETTINGS.
const DEFAULT_TABLE: usize = 4_096;
const DEFAULT_FRAME: u32 = 16_384;

const SKIP_PREFACE: &str =
    "TCP streams that begin like HTTP/2's preface but do not complete it (nothing decoded)";
const SKIP_FRAMING: &str = "HTTP/2 connection directions unreadable past a frame that breaks the \
     protocol (a bad length, a CONTINUATION out of place, a frame over SETTINGS_MAX_FRAME_SIZE): \
     the rest of that direction is lost";
const SKIP_HPACK: &str = "HTTP/2 connection directions whose header compression (HPACK) could \
     not be followed: no later header block of that direction can be read";
const SKIP_FLOOD: &str = "HTTP/2 header blocks over 1 MiB (a CONTINUATION flood): the rest of \
     that direction is lost";
const SKIP_STREAM_LOST: &str = "HTTP/2 streams lost with a direction of their connection (a lost \
     segment, a broken frame, header compression that could not be followed)";
const SKIP_RESET: &str = "HTTP/2 streams reset (RST_STREAM) before their answer was complete";
const SKIP_REFUSED: &str = "HTTP/2 streams the server refused unprocessed (above its GOAWAY's \
     last stream): the client may send them again";
const SKIP_MALFORMED: &str =
    "HTTP/2 streams with malformed header fields (a pseudo-header missing or wrong)";
const SKIP_TOO_BIG: &str = "HTTP/2 streams given up: a header list over 1 MiB or 1,000 fields, \
     or more bytes held on their connection than a capped body";
const SKIP_TOO_MANY: &str =
    "HTTP/2 streams given up: more than 1,000 open at once on one connection";
const INCOMPLETE_CUT_RESPONSE: &str =
    "HTTP/2 responses cut short (the connection ended inside them): written without them";
const NOTE_PUSH: &str =
    "HTTP/2 server pushes (PUSH_PROMISE): not requests a client sent, not recorded";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// A header block being gathered from HEADERS or PUSH_PROMISE and its CONTINUATIONs.
struct Block {
    stream: u32,
    /// From PUSH_PROMISE: decoded for the HPACK state only.
    push: bool,
    end_stream: bool,
    bytes: Vec<u8>,
    /// Capture time of the packet carrying the block's first frame, and of its last.
    first_us: i64,
    last_us: i64,
}

/// One direction: 0 client to server, 1 server to client.
struct Dir {
    buf: Vec<u8>,
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    pushed: u64,
    /// (stream offset one past a delivered piece, its capture time), oldest first.
    marks: Marks,
    /// Preface bytes still to be checked (client only).
    preface_left: usize,
    hpack: loona_hpack::Decoder<'static>,
    /// Table size the receiver acknowledged being able to hold (what this direction's
    /// encoder may use), and values advertised but not yet acknowledged.
    table_acked: usize,
    table_pending: VecDeque<usize>,
    /// Largest frame this direction may send: the receiver's SETTINGS_MAX_FRAME_SIZE.
    max_frame: u32,
    block: Option<Block>,
    /// Frames are no longer read (lost segment, broken framing): why.
    dead: Option<&'static str>,
    /// Header blocks can no longer be decoded, though frames are still walked: why.
    blind: Option<&'static str>,
    end: Option<End>,
}

impl Dir {
    fn new(client: bool) -> Self {
        Dir {
            buf: Vec::new(),
            pos: 0,
            base: 0,
            pushed: 0,
            marks: Marks::default(),
            preface_left: if client { PREFACE.len() } else { 0 },
            hpack: loona_hpack::Decoder::new(),
            table_acked: DEFAULT_TABLE,
            table_pending: VecDeque::new(),
            max_frame: DEFAULT_FRAME,
            block: None,
            dead: None,
            blind: None,
            end: None,
        }
    }

    /// Why nothing more of this direction can be decoded, if so.
    fn lost(&self) -> Option<&'static str> {
        self.dead.or(self.blind)
    }
}

/// One half of a stream as gathered so far.
#[derive(Default)]
struct Half {
    /// Header fields of the head, once decoded (pseudo-headers apart).
    head: Option<Vec<(String, String)>>,
    body: Vec<u8>,
    truncated: bool,
    trailers: Option<Headers>,
    done: bool,
    /// Capture time of the packet that carried its first frame, and of its last.
    first_us: i64,
    last_us: i64,
}

struct Stream {
    req: Half,
    resp: Half,
    /// The server answered in full and reset the stream: the request ends with the
    /// client's next END_STREAM or reset, or with the connection.
    answered_reset: bool,
    /// The HTTP/1.1 request that upgraded the connection, as stream 1's request.
    upgrade: Option<Request>,
    /// Bytes of this stream counted in the connection's `held`.
    held: usize,
}

/// The HTTP/2 side of one TCP connection.
pub(crate) struct H2 {
    conn: u64,
    label: String,
    dirs: [Dir; 2],
    streams: BTreeMap<u32, Stream>,
    /// Highest client stream id opened; lower ids not in `streams` are closed.
    last_client: u32,
    held: usize,
    /// The latest capture time seen on the connection.
    now_us: i64,
    /// Bytes kept of each body.
    max_body: usize,
}

/// A problem on one stream: it is counted with this reason and forgotten.
struct StreamFail(&'static str, String);

impl H2 {
    /// A connection numbered `conn` (for exchange ids), called `label` in messages, keeping
    /// at most `max_body` bytes of each body (the rest is read past, not held).
    pub fn new(conn: u64, label: String, max_body: usize) -> Self {
        H2 {
            conn,
            label,
            max_body: max_body.min(MAX_BODY),
            now_us: 0,
            dirs: [Dir::new(true), Dir::new(false)],
            streams: BTreeMap::new(),
            last_client: 0,
            held: 0,
        }
    }

    /// Starts a connection upgraded from HTTP/1.1 (`Upgrade: h2c`): `request` is stream 1,
    /// already sent whole, and `settings` the client's `HTTP2-Settings` payload, which the
    /// `101` acknowledged.
    pub fn upgraded(
        &mut self,
        request: Request,
        first_us: i64,
        last_us: i64,
        settings: Option<&[u8]>,
    ) {
        let req = Half {
            head: Some(Vec::new()),
            done: true,
            first_us,
            last_us,
            ..Half::default()
        };
        self.streams.insert(
            1,
            Stream {
                req,
                resp: Half::default(),
                answered_reset: false,
                upgrade: Some(request),
                held: 0,
            },
        );
        self.last_client = 1;
        for s in settings.unwrap_or_default().chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                0x1 => self.dirs[1].table_acked = v as usize,
                0x5 if (DEFAULT_FRAME..=MAX_FRAME_LIMIT).contains(&v) => self.dirs[1].max_frame = v,
                _ => {}
            }
        }
    }

    /// Bytes this connection holds: the streams' heads and bodies, and each direction's
    /// unread frame bytes and time marks, for the bound over all connections.
    pub fn held(&self) -> usize {
        self.held
            + self
                .dirs
                .iter()
                .map(|d| d.buf.len() + d.marks.held())
                .sum::<usize>()
    }

    /// Capture time of the first packet of the oldest stream not yet written, if any: what
    /// a stage putting exchanges in capture order may not pass. A client opens streams in
    /// increasing order, so the lowest open id is the oldest.
    /// A stream open longer than the order's bound (a watch, a server-streaming call)
    /// holds nothing back; the oldest after it does.
    pub fn oldest_open_us(&self) -> Option<i64> {
        let cutoff = self.now_us.saturating_sub(MAX_HOLD_US);
        self.streams
            .values()
            .map(|s| s.req.first_us)
            .find(|&t| t >= cutoff)
    }

    /// Bytes that arrived in order on direction `d` (0 client, 1 server) at `ts_us`.
    pub fn data(&mut self, d: usize, bytes: &[u8], ts_us: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        self.now_us = self.now_us.max(ts_us);
        let dir = &mut self.dirs[d];
        if dir.dead.is_some() || bytes.is_empty() {
            return Ok(());
        }
        dir.pushed += bytes.len() as u64;
        dir.marks.push(dir.pushed, ts_us);
        dir.buf.extend_from_slice(bytes);
        self.pump(d, ctx)
    }

    /// Direction `d` ended as `end`: a lost segment makes the rest of it unusable.
    pub fn end(&mut self, d: usize, end: End, ctx: &mut Ctx<'_>) -> Result<()> {
        if self.dirs[d].end.is_some() {
            return Ok(());
        }
        self.dirs[d].end = Some(end);
        if end == End::Lost && self.dirs[d].dead.is_none() {
            // The reassembler counted the gap itself; the streams it cuts are counted here.
            self.dirs[d].dead = Some("segment lost");
            self.lose_streams_of(d, ctx)?;
        }
        Ok(())
    }

    /// Both directions have ended: complete requests still waiting are written without a
    /// response, everything else left open is counted.
    pub fn finish(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        for d in 0..2 {
            self.dirs[d].end.get_or_insert(End::CaptureOver);
        }
        let streams = std::mem::take(&mut self.streams);
        self.held = 0;
        for (id, s) in streams {
            if s.req.head.is_none() {
                let at = format!("{}: {}: stream {id}", ctx.at(), self.label);
                ctx.report.skip(SKIP_ORPHAN, || at);
            } else if s.answered_reset {
                self.write(id, s, true, ctx)?;
            } else if !s.req.done {
                let why = self.dirs[0].end.map_or("stream ended", End::says);
                let at = format!("{}: {}: stream {id}: {why}", ctx.at(), self.label);
                ctx.report.skip(SKIP_CUT_REQUEST, || at);
            } else {
                if s.resp.head.is_some() {
                    let why = self.dirs[1].end.map_or("stream ended", End::says);
                    let at = format!("{}: {}: stream {id}: {why}", ctx.at(), self.label);
                    ctx.report.incomplete(INCOMPLETE_CUT_RESPONSE, || at);
                } else {
                    ctx.report.note(NOTE_NO_RESPONSE);
                }
                self.write(id, s, false, ctx)?;
            }
        }
        Ok(())
    }

    /// Every open stream whose part in direction `d` is not complete is lost with it.
    fn lose_streams_of(&mut self, d: usize, ctx: &mut Ctx<'_>) -> Result<()> {
        let why = self.dirs[d].lost().unwrap_or("direction lost");
        if d == 0 {
            let done: Vec<u32> = self
                .streams
                .iter()
                .filter(|(_, s)| s.answered_reset)
                .map(|(id, _)| *id)
                .collect();
            for id in done {
                if let Some(s) = self.streams.remove(&id) {
                    self.held -= s.held;
                    self.write(id, s, true, ctx)?;
                }
            }
        }
        let ids: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| if d == 0 { !s.req.done } else { !s.resp.done })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.fail(id, StreamFail(SKIP_STREAM_LOST, why.to_string()), ctx);
        }
        Ok(())
    }

    /// Counts stream `id` as lost for `f` and forgets it.
    fn fail(&mut self, id: u32, f: StreamFail, ctx: &mut Ctx<'_>) {
        if let Some(s) = self.streams.remove(&id) {
            self.held -= s.held;
        }
        let at = format!("{}: {}: stream {id}: {}", ctx.at(), self.label, f.1);
        ctx.report.skip(f.0, || at);
    }

    /// Direction `d` can no longer be read at all.
    fn kill(
        &mut self,
        d: usize,
        reason: &'static str,
        detail: String,
        ctx: &mut Ctx<'_>,
    ) -> Result<()> {
        let dir = &mut self.dirs[d];
        dir.dead = Some(reason_short(reason));
        dir.buf = Vec::new();
        dir.pos = 0;
        dir.block = None;
        let side = if d == 0 { "client" } else { "server" };
        let at = format!("{}: {} ({side} side): {detail}", ctx.at(), self.label);
        ctx.report.skip(reason, || at);
        self.lose_streams_of(d, ctx)
    }

    /// Header blocks of direction `d` can no longer be decoded; frames are still walked.
    fn blind(
        &mut self,
        d: usize,
        reason: &'static str,
        detail: String,
        ctx: &mut Ctx<'_>,
    ) -> Result<()> {
        self.dirs[d].blind = Some(reason_short(reason));
        let side = if d == 0 { "client" } else { "server" };
        let at = format!("{}: {} ({side} side): {detail}", ctx.at(), self.label);
        ctx.report.skip(reason, || at);
        self.lose_streams_of(d, ctx)
    }

    /// Reads every whole frame buffered on direction `d`.
    fn pump(&mut self, d: usize, ctx: &mut Ctx<'_>) -> Result<()> {
        if self.dirs[d].preface_left > 0 {
            let dir = &mut self.dirs[d];
            let have = dir.buf.len() - dir.pos;
            let checked = PREFACE.len() - dir.preface_left;
            let n = have.min(dir.preface_left);
            if dir.buf[dir.pos..dir.pos + n] != PREFACE[checked..checked + n] {
                dir.dead = Some("preface broken");
                dir.buf = Vec::new();
                dir.pos = 0;
                self.dirs[1].dead = Some("preface broken");
                self.dirs[1].buf = Vec::new();
                let at = format!("{}: {}", ctx.at(), self.label);
                ctx.report.skip(SKIP_PREFACE, || at);
                return Ok(());
            }
            dir.pos += n;
            dir.preface_left -= n;
            if dir.preface_left > 0 {
                return Ok(());
            }
        }
        let mut buf = std::mem::take(&mut self.dirs[d].buf);
        let mut pos = self.dirs[d].pos;
        let result = loop {
            if self.dirs[d].dead.is_some() {
                buf.clear();
                pos = 0;
                break Ok(());
            }
            let rest = &buf[pos..];
            if rest.len() < 9 {
                break Ok(());
            }
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]);
            if len > self.dirs[d].max_frame {
                let detail = format!(
                    "a frame of {len} bytes, over the {} SETTINGS_MAX_FRAME_SIZE allows",
                    self.dirs[d].max_frame
                );
                self.kill(d, SKIP_FRAMING, detail, ctx)?;
                continue;
            }
            let total = 9 + len as usize;
            if rest.len() < total {
                break Ok(());
            }
            let begin = self.dirs[d].base + pos as u64;
            let first_us = self.dirs[d].marks.ts_at(begin);
            let last_us = self.dirs[d].marks.ts_at(begin + total as u64 - 1);
            let frame = Frame {
                kind: rest[3],
                flags: rest[4],
                stream: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff,
                payload: &rest[9..total],
                first_us,
                last_us,
            };
            pos += total;
            if let Err(e) = self.frame(d, &frame, ctx) {
                break Err(e);
            }
            let upto = self.dirs[d].base + pos as u64;
            self.dirs[d].marks.drop_upto(upto);
        };
        let dir = &mut self.dirs[d];
        if dir.dead.is_none() {
            // Keep the unread tail at the front, so the buffer holds at most one frame.
            if pos > 0 {
                buf.drain(..pos);
                dir.base += pos as u64;
            }
            dir.pos = 0;
            dir.buf = buf;
        }
        result
    }

    /// One frame of direction `d`.
    fn frame(&mut self, d: usize, f: &Frame<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        if self.dirs[d].block.is_some() {
            if f.kind != CONTINUATION
                || self.dirs[d].block.as_ref().map(|b| b.stream) != Some(f.stream)
            {
                let detail = format!(
                    "a frame of type {} on stream {} inside a header block",
                    f.kind, f.stream
                );
                self.kill(d, SKIP_FRAMING, detail, ctx)?;
                return Ok(());
            }
            return self.fragment(d, f.payload, f.flags & END_HEADERS != 0, f.last_us, ctx);
        }
        match f.kind {
            DATA => self.on_data(d, f, ctx),
            HEADERS | PUSH_PROMISE => {
                let p = match unpad(f) {
                    Ok(p) => p,
                    Err(detail) => return self.kill(d, SKIP_FRAMING, detail, ctx),
                };
                let skip = match f.kind {
                    HEADERS if f.flags & PRIORITY_FLAG != 0 => 5,
                    HEADERS => 0,
                    _ => 4,
                };
                if p.len() < skip || f.stream == 0 {
                    let detail =
                        format!("a header frame of {} bytes on stream {}", p.len(), f.stream);
                    self.kill(d, SKIP_FRAMING, detail, ctx)?;
                    return Ok(());
                }
                let push = f.kind == PUSH_PROMISE;
                if push {
                    ctx.report.note(NOTE_PUSH);
                }
                self.dirs[d].block = Some(Block {
                    stream: f.stream,
                    push,
                    end_stream: !push && f.flags & END_STREAM != 0,
                    bytes: Vec::new(),
                    first_us: f.first_us,
                    last_us: f.last_us,
                });
                self.fragment(d, &p[skip..], f.flags & END_HEADERS != 0, f.last_us, ctx)
            }
            RST_STREAM => {
                let code = f
                    .payload
                    .get(..4)
                    .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                let answered = self
                    .streams
                    .get(&f.stream)
                    .is_some_and(|s| s.resp.done && s.req.head.is_some());
                if answered {
                    // A server that answered in full may stop the rest of the request with
                    // NO_ERROR (RFC 9113 section 8.1), as gRPC servers do when they answer
                    // before reading the body. What the client had sent by then is still on
                    // its way: the exchange waits for the client's END_STREAM or reset, or
                    // the connection's end.
                    let whole = d == 0 || self.streams.get(&f.stream).is_some_and(|s| s.req.done);
                    if whole {
                        if let Some(s) = self.streams.remove(&f.stream) {
                            self.held -= s.held;
                            self.write(f.stream, s, true, ctx)?;
                        }
                    } else if let Some(s) = self.streams.get_mut(&f.stream) {
                        s.answered_reset = true;
                    }
                } else if self.streams.contains_key(&f.stream) {
                    let who = if d == 0 { "client" } else { "server" };
                    let detail = format!("reset by the {who}, error code {code}");
                    self.fail(f.stream, StreamFail(SKIP_RESET, detail), ctx);
                }
                Ok(())
            }
            SETTINGS => self.on_settings(d, f, ctx),
            GOAWAY if d == 1 && f.payload.len() >= 8 => {
                // Streams above the last one the server processed were never acted on; the
                // client may send them again on another connection.
                let p = f.payload;
                let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
                let refused: Vec<u32> = self.streams.range(last + 1..).map(|(id, _)| *id).collect();
                for id in refused {
                    let detail = format!("above the GOAWAY's last stream {last}");
                    self.fail(id, StreamFail(SKIP_REFUSED, detail), ctx);
                }
                Ok(())
            }
            // PRIORITY, PING, GOAWAY, WINDOW_UPDATE and unknown extension frames carry
            // nothing an exchange keeps.
            _ => Ok(()),
        }
    }

    fn on_settings(&mut self, d: usize, f: &Frame<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        let other = 1 - d;
        if f.flags & ACK != 0 {
            // The sender of this ACK now holds the other side's advertised table size: its
            // own encoder (this direction's) may use it from here on.
            if let Some(v) = self.dirs[other].table_pending.pop_front() {
                self.dirs[d].table_acked = v;
            }
            return Ok(());
        }
        if f.payload.len() % 6 != 0 {
            let detail = format!("a SETTINGS frame of {} bytes", f.payload.len());
            return self.kill(d, SKIP_FRAMING, detail, ctx);
        }
        let mut table = None;
        for s in f.payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                // SETTINGS_HEADER_TABLE_SIZE: what the other side's encoder may use once
                // this is acknowledged.
                0x1 => table = Some(v as usize),
                // SETTINGS_MAX_FRAME_SIZE: the largest frame the other side may send.
                0x5 if (DEFAULT_FRAME..=MAX_FRAME_LIMIT).contains(&v) => {
                    self.dirs[other].max_frame = self.dirs[other].max_frame.max(v);
                }
                _ => {}
            }
        }
        // One pending entry per SETTINGS frame, so each ACK takes its own.
        let pending = table.unwrap_or(
            self.dirs[other]
                .table_pending
                .back()
                .copied()
                .unwrap_or(self.dirs[other].table_acked),
        );
        if self.dirs[d].table_pending.len() < 64 {
            self.dirs[d].table_pending.push_back(pending);
        }
        Ok(())
    }

    /// Adds a header block fragment; decodes the block once it is whole.
    fn fragment(
        &mut self,
        d: usize,
        bytes: &[u8],
        end: bool,
        last_us: i64,
        ctx: &mut Ctx<'_>,
    ) -> Result<()> {
        let Some(block) = self.dirs[d].block.as_mut() else {
            return Ok(());
        };
        block.last_us = last_us;
        if block.bytes.len() + bytes.len() > MAX_BLOCK {
            let detail = format!(
                "a header block past {} bytes on stream {}",
                MAX_BLOCK, block.stream
            );
            self.kill(d, SKIP_FLOOD, detail, ctx)?;
            return Ok(());
        }
        block.bytes.extend_from_slice(bytes);
        if !end {
            return Ok(());
        }
        let Some(block) = self.dirs[d].block.take() else {
            return Ok(());
        };
        self.on_block(d, block, ctx)
    }

    /// A whole header block of direction `d`.
    fn on_block(&mut self, d: usize, b: Block, ctx: &mut Ctx<'_>) -> Result<()> {
        let fields = if self.dirs[d].blind.is_some() {
            None
        } else {
            match self.decode(d, &b.bytes) {
                Ok(f) => Some(f),
                Err(detail) => {
                    self.blind(d, SKIP_HPACK, format!("stream {}: {detail}", b.stream), ctx)?;
                    None
                }
            }
        };
        if b.push {
            return Ok(());
        }
        let id = b.stream;
        if d == 0 {
            self.on_request_block(id, b, fields, ctx)
        } else {
            self.on_response_block(id, b, fields, ctx)
        }
    }

    /// HPACK-decodes `block` with direction `d`'s decoder. `Ok(None)` inside means the
    /// list was too long to keep (the table is still updated).
    fn decode(
        &mut self,
        d: usize,
        block: &[u8],
    ) -> std::result::Result<Option<Vec<(String, String)>>, String> {
        // What the receiver acknowledged, or advertised and may not have had acknowledged
        // yet: an encoder may move to a new size as soon as it has read it.
        let allowed = self.dirs[1 - d]
            .table_pending
            .iter()
            .copied()
            .chain([self.dirs[d].table_acked])
            .max()
            .unwrap_or(DEFAULT_TABLE);
        let dir = &mut self.dirs[d];
        dir.hpack.set_max_allowed_table_size(allowed.min(MAX_TABLE));
        let mut fields = Vec::new();
        let mut size = 0usize;
        let mut over = false;
        dir.hpack
            .decode_with_cb(block, |n, v| {
                size += n.len() + v.len() + 32;
                if size > MAX_BLOCK || fields.len() >= MAX_FIELDS {
                    over = true;
                }
                if !over {
                    fields.push((
                        String::from_utf8_lossy(&n).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    ));
                }
            })
            .map_err(|e| {
                if matches!(e, loona_hpack::decoder::DecoderError::InvalidMaxDynamicSize)
                    && allowed > MAX_TABLE
                {
                    format!("table size over the {MAX_TABLE} bytes followed")
                } else {
                    format!("HPACK: {e}")
                }
            })?;
        Ok(if over { None } else { Some(fields) })
    }

    fn on_request_block(
        &mut self,
        id: u32,
        b: Block,
        fields: Option<Option<Vec<(String, String)>>>,
        ctx: &mut Ctx<'_>,
    ) -> Result<()> {
        if id % 2 == 0 {
            let detail = format!("a client header block on even stream {id}");
            self.kill(0, SKIP_FRAMING, detail, ctx)?;
            return Ok(());
        }
        let new = id > self.last_client;
        if new {
            self.last_client = id;
            ctx.report.requests += 1;
        }
        let lost = self.dirs[0].blind.or(self.dirs[1].lost());
        if new {
            if let Some(why) = lost {
                self.fail(id, StreamFail(SKIP_STREAM_LOST, why.to_string()), ctx);
                return Ok(());
            }
            if self.streams.len() >= MAX_STREAMS {
                let detail = format!("{} streams already open", self.streams.len());
                self.fail(id, StreamFail(SKIP_TOO_MANY, detail), ctx);
                return Ok(());
            }
        }
        if new {
            self.streams.insert(
                id,
                Stream {
                    req: Half::default(),
                    resp: Half::default(),
                    answered_reset: false,
                    upgrade: None,
                    held: 0,
                },
            );
        }
        let Some(s) = self.streams.get_mut(&id) else {
            // A stream already written or given up.
            return Ok(());
        };
        let Some(fields) = fields else {
            // Blind: a stream still open then was counted with its direction.
            return Ok(());
        };
        let Some(fields) = fields else {
            self.fail(
                id,
                StreamFail(
                    SKIP_TOO_BIG,
                    "request header list over 1 MiB or 1,000 fields".into(),
                ),
                ctx,
            );
            return Ok(());
        };
        s.req.last_us = b.last_us;
        if s.req.head.is_none() {
            s.req.head = Some(fields);
            s.req.first_us = b.first_us;
        } else if b.end_stream {
            // Request trailers: an exchange has no place for them; the request ends here.
        } else {
            self.fail(
                id,
                StreamFail(
                    SKIP_MALFORMED,
                    "a second request header block without END_STREAM".into(),
                ),
                ctx,
            );
            return Ok(());
        }
        let size: usize = head_size(s.req.head.as_deref().unwrap_or_default());
        s.held += size;
        self.held += size;
        if b.end_stream {
            s.req.done = true;
        }
        self.check_held(id, ctx);
        self.maybe_write(id, ctx)
    }

    fn on_response_block(
        &mut self,
        id: u32,
        b: Block,
        fields: Option<Option<Vec<(String, String)>>>,
        ctx: &mut Ctx<'_>,
    ) -> Result<()> {
        if id % 2 == 0 {
            // A pushed stream's answer: only the HPACK state mattered.
            return Ok(());
        }
        if !self.streams.contains_key(&id) {
            if id > self.last_client {
                // An answer on a stream the client never opened in this capture.
                let at = format!("{}: {}: stream {id}", ctx.at(), self.label);
                ctx.report.skip(SKIP_ORPHAN, || at);
                self.last_client = id;
            }
            return Ok(());
        }
        let Some(fields) = fields else {
            // Blind: the stream was counted when the direction was lost.
            return Ok(());
        };
        let Some(fields) = fields else {
            self.fail(
                id,
                StreamFail(
                    SKIP_TOO_BIG,
                    "response header list over 1 MiB or 1,000 fields".into(),
                ),
                ctx,
            );
            return Ok(());
        };
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let size = head_size(&fields);
        if s.resp.head.is_none() {
            let status = fields
                .iter()
                .find(|(k, _)| k == ":status")
                .and_then(|(_, v)| v.parse::<u16>().ok());
            match status {
                Some(st) if (100..200).contains(&st) => {
                    // An interim answer (100 Continue, 103 Early Hints): the final one follows.
                    return Ok(());
                }
                Some(st) if (200..1000).contains(&st) => {}
                _ => {
                    self.fail(
                        id,
                        StreamFail(SKIP_MALFORMED, "a response without a valid :status".into()),
                        ctx,
                    );
                    return Ok(());
                }
            }
            s.resp.head = Some(fields);
            s.resp.first_us = b.first_us;
            s.resp.last_us = b.last_us;
        } else if b.end_stream {
            s.resp.trailers = Some(
                fields
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with(':'))
                    .collect(),
            );
        } else {
            self.fail(
                id,
                StreamFail(
                    SKIP_MALFORMED,
                    "a second response header block without END_STREAM".into(),
                ),
                ctx,
            );
            return Ok(());
        }
        s.held += size;
        self.held += size;
        if b.end_stream {
            s.resp.done = true;
        }
        self.check_held(id, ctx);
        self.maybe_write(id, ctx)
    }

    fn on_data(&mut self, d: usize, f: &Frame<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        let p = match unpad(f) {
            Ok(p) => p,
            Err(detail) => return self.kill(d, SKIP_FRAMING, detail, ctx),
        };
        if f.stream == 0 {
            self.kill(d, SKIP_FRAMING, "DATA on stream 0".into(), ctx)?;
            return Ok(());
        }
        let Some(s) = self.streams.get_mut(&f.stream) else {
            return Ok(());
        };
        let half = if d == 0 { &mut s.req } else { &mut s.resp };
        if half.head.is_none() || half.done {
            let detail = format!("DATA on stream {} outside a message", f.stream);
            self.fail(f.stream, StreamFail(SKIP_MALFORMED, detail), ctx);
            return Ok(());
        }
        let room = self.max_body.saturating_sub(half.body.len());
        let keep = p.len().min(room);
        half.body.extend_from_slice(&p[..keep]);
        if keep < p.len() {
            half.truncated = true;
        }
        half.last_us = f.last_us;
        s.held += keep;
        self.held += keep;
        if f.flags & END_STREAM != 0 {
            half.done = true;
        }
        self.check_held(f.stream, ctx);
        self.maybe_write(f.stream, ctx)
    }

    /// Gives up stream `id` when the connection holds more than a capped body and
    /// [`MAX_HELD_EXTRA`].
    fn check_held(&mut self, id: u32, ctx: &mut Ctx<'_>) {
        if self.held > self.max_body + MAX_HELD_EXTRA {
            let detail = format!("{} bytes held on the connection", self.held);
            self.fail(id, StreamFail(SKIP_TOO_BIG, detail), ctx);
        }
    }

    /// Writes stream `id` once both its halves are complete.
    fn maybe_write(&mut self, id: u32, ctx: &mut Ctx<'_>) -> Result<()> {
        let ready = self
            .streams
            .get(&id)
            .is_some_and(|s| s.req.done && s.resp.done);
        if !ready {
            return Ok(());
        }
        let Some(s) = self.streams.remove(&id) else {
            return Ok(());
        };
        self.held -= s.held;
        self.write(id, s, true, ctx)
    }

    /// Turns a stream into an exchange (with its response when `answered`).
    fn write(&mut self, id: u32, s: Stream, answered: bool, ctx: &mut Ctx<'_>) -> Result<()> {
        let Stream {
            req, resp, upgrade, ..
        } = s;
        let (first_us, req_last) = (req.first_us, req.last_us);
        let Some(request) = upgrade.or_else(|| request_of(req)) else {
            let at = format!("{}: {}: stream {id}", ctx.at(), self.label);
            ctx.report.skip(SKIP_MALFORMED, || at);
            return Ok(());
        };
        if request.body_truncated {
            let at = format!("{}: {}: stream {id}", ctx.at(), self.label);
            ctx.report.incomplete(INCOMPLETE_BODY_CAP, || at);
        }
        let (response, latency) = if answered {
            let resp_first = resp.first_us;
            let r = response_of(resp);
            if r.body_truncated {
                let at = format!("{}: {}: stream {id}", ctx.at(), self.label);
                ctx.report.incomplete(INCOMPLETE_BODY_CAP, || at);
            }
            ctx.report.responses += 1;
            let latency = u64::try_from(resp_first.saturating_sub(req_last)).unwrap_or(0);
            (Some(r), Some(latency))
        } else {
            (None, None)
        };
        let ex = exchange(
            format!("pcap-{}-{id}", self.conn),
            first_us,
            request,
            response,
            latency,
        );
        ctx.sink.put(ex)
    }
}

/// How a lost direction is named in the examples of the streams it takes down.
/// A frame's payload without its padding (PADDED: a pad length byte first, that many
/// bytes of padding last), or what is wrong with it.
fn unpad<'a>(f: &Frame<'a>) -> std::result::Result<&'a [u8], String> {
    let p = f.payload;
    if f.flags & PADDED == 0 {
        return Ok(p);
    }
    let Some((&pad, rest)) = p.split_first() else {
        return Err(format!(
            "a padded frame (type {}) with no pad length",
            f.kind
        ));
    };
    rest.len()
        .checked_sub(pad as usize)
        .map(|n| &rest[..n])
        .ok_or_else(|| {
            format!(
                "padding of {pad} bytes in a frame (type {}) of {}",
                f.kind,
                p.len()
            )
        })
}

fn reason_short(reason: &'static str) -> &'static str {
    match reason {
        SKIP_FRAMING => "a frame that breaks the protocol",
        SKIP_HPACK => "header compression not followed",
        SKIP_FLOOD => "a header block over 1 MiB",
        _ => "direction lost",
    }
}

fn head_size(h: &[(String, String)]) -> usize {
    h.iter().map(|(k, v)| k.len() + v.len() + 32).sum()
}

/// One frame, borrowed from its direction's buffer.
struct Frame<'a> {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &'a [u8],
    first_us: i64,
    last_us: i64,
}

/// Header fields in the order the tap records them: hyper keeps a `HeaderMap`, which
/// lists every value of a name together, names in the order they first came.
fn grouped(fields: impl Iterator<Item = (String, String)>) -> Headers {
    let mut order: Vec<(String, Vec<String>)> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (k, v) in fields {
        match at.get(&k) {
            Some(&i) => order[i].1.push(v),
            None => {
                at.insert(k.clone(), order.len());
                order.push((k, vec![v]));
            }
        }
    }
    order
        .into_iter()
        .flat_map(|(k, vs)| vs.into_iter().map(move |v| (k.clone(), v)))
        .collect()
}

/// The request as the tap records an HTTP/2 one; `None` without `:method` or `:path`.
fn request_of(h: Half) -> Option<Request> {
    let fields = h.head?;
    let (mut method, mut path, mut authority) = (None, None, None);
    let mut regular = Vec::new();
    for (k, v) in fields {
        match k.as_str() {
            ":method" => method = Some(v),
            ":path" => path = Some(v),
            ":authority" => authority = Some(v),
            k if k.starts_with(':') => {}
            _ => regular.push((k, v)),
        }
    }
    let (method, path) = (method?, path?);
    if method.is_empty() || path.is_empty() {
        return None;
    }
    let mut headers = grouped(regular.into_iter());
    // HTTP/2 carries the authority in `:authority`; the tap keeps it as `host`.
    if !headers.iter().any(|(k, _)| k == "host") {
        if let Some(a) = authority {
            headers.push(("host".to_string(), a));
        }
    }
    Some(Request {
        method,
        uri: path,
        version: "HTTP/2".to_string(),
        headers,
        body: Bytes::from(h.body),
        body_truncated: h.truncated,
        tls: None,
    })
}

fn response_of(h: Half) -> Response {
    let fields = h.head.unwrap_or_default();
    let status = fields
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let headers = grouped(fields.into_iter().filter(|(k, _)| !k.starts_with(':')));
    Response {
        status,
        headers,
        trailers: h.trailers.map(|t| grouped(t.into_iter())),
        body: Bytes::from(h.body),
        body_truncated: h.truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::packets::tests::Talk;

    /// Frame bytes: length, type, flags, stream, payload.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let mut p = Vec::new();
        for (id, v) in pairs {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&v.to_be_bytes());
        }
        frame(SETTINGS, 0, 0, &p)
    }

    fn settings_ack() -> Vec<u8> {
        frame(SETTINGS, ACK, 0, &[])
    }

    struct Enc(loona_hpack::Encoder<'static>);

    impl Enc {
        fn new() -> Self {
            Enc(loona_hpack::Encoder::new())
        }
        fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
            self.0
                .encode(fields.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
        }
    }

    fn grpc_request(enc: &mut Enc, path: &str) -> Vec<u8> {
        enc.block(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "svc:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ])
    }

    /// A whole request without a body: one HEADERS frame that ends stream `id`.
    fn call(enc: &mut Enc, id: u32, path: &str) -> Vec<u8> {
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &grpc_request(enc, path),
        )
    }

    fn grpc_frame(msg: &[u8]) -> Vec<u8> {
        let mut b = vec![0];
        b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        b.extend_from_slice(msg);
        b
    }

    /// An HTTP/2 call that began first holds back the HTTP/1 exchanges of another
    /// connection that completed before it: the recording is in capture order.
    #[test]
    fn a_slow_http2_stream_holds_later_exchanges_for_capture_order() {
        use crate::recording::packets::tests::{get, Net, OK};
        let mut enc = Enc::new();
        let mut senc = Enc::new();
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[]));
        let mut n = Net::new(2);
        n.open(0).open(1);
        n.client(0, &c)
            .server(0, &[settings(&[]), settings_ack()].concat())
            .client(0, &settings_ack());
        let head = grpc_request(&mut enc, "/pkg.Svc/Slow");
        n.client(0, &frame(HEADERS, END_HEADERS, 1, &head));
        n.client(0, &frame(DATA, END_STREAM, 1, &grpc_frame(b"q")));
        n.client(1, &get("/fast")).server(1, OK);
        let answer = senc.block(&[(":status", "200"), ("content-type", "application/grpc")]);
        let trailers = senc.block(&[("grpc-status", "0")]);
        n.server(0, &frame(HEADERS, END_HEADERS, 1, &answer))
            .server(0, &frame(DATA, 0, 1, &grpc_frame(b"a")))
            .server(0, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers));
        n.close(1).close(0);
        let (out, r) = n.run();
        let uris: Vec<&str> = out.iter().map(|e| e.request.uri.as_str()).collect();
        assert_eq!(uris, ["/pkg.Svc/Slow", "/fast"], "{r:?}");
        assert!(out[0].ts_us < out[1].ts_us);
        assert!(!r
            .notes
            .contains_key(crate::recording::packets::order::NOTE_OUT_OF_ORDER));
    }

    fn start() -> Talk {
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[]));
        Talk::new()
            .client(&c)
            .server(&[settings(&[]), settings_ack()].concat())
            .client(&settings_ack())
    }

    #[test]
    fn interleaved_streams_continuation_padding_and_trailers() {
        let (mut ce, mut se) = (Enc::new(), Enc::new());
        let h1 = grpc_request(&mut ce, "/pkg.Svc/A");
        let h3 = grpc_request(&mut ce, "/pkg.Svc/B");
        // Stream 3's block split over HEADERS and two CONTINUATIONs.
        let (a, rest) = h3.split_at(3);
        let (b, c) = rest.split_at(rest.len() / 2);
        let mut padded = vec![4u8];
        padded.extend_from_slice(&grpc_frame(b"one"));
        padded.extend_from_slice(&[0; 4]);
        let resp = se.block(&[(":status", "200"), ("content-type", "application/grpc")]);
        let trailers = se.block(&[("grpc-status", "0"), ("grpc-message", "")]);
        let resp3 = se.block(&[(":status", "200"), ("content-type", "application/grpc")]);
        // A trailers-only answer: its fields stay in the head, as hyper gives them.
        let only = se.block(&[(":status", "200"), ("grpc-status", "5")]);
        let (out, r) = start()
            .client(&frame(HEADERS, END_HEADERS, 1, &h1))
            .client(&frame(HEADERS, 0, 3, a))
            .client(&frame(CONTINUATION, 0, 3, b))
            .client(&frame(CONTINUATION, END_HEADERS, 3, c))
            .client(&frame(DATA, PADDED, 1, &padded))
            .client(&frame(DATA, END_STREAM, 3, &grpc_frame(b"two")))
            .client(&frame(DATA, END_STREAM, 1, &[]))
            .server(&frame(HEADERS, END_HEADERS, 3, &resp3))
            .server(&frame(HEADERS, END_HEADERS, 1, &resp))
            .server(&frame(DATA, 0, 1, &grpc_frame(b"reply")))
            .server(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers))
            .server(&frame(DATA, 0, 3, &grpc_frame(b"r3")))
            .server(&frame(RST_STREAM, 0, 3, &0u32.to_be_bytes()))
            .client(&call(&mut ce, 5, "/pkg.Svc/C"))
            .server(&frame(HEADERS, END_HEADERS | END_STREAM, 5, &only))
            .fin(true)
            .fin(false)
            .run();
        assert_eq!(out.len(), 2, "{r:?}");
        let e1 = &out[0];
        assert_eq!(e1.id, "pcap-1-1");
        assert_eq!(e1.request.method, "POST");
        assert_eq!(e1.request.uri, "/pkg.Svc/A");
        assert_eq!(e1.request.version, "HTTP/2");
        assert_eq!(
            e1.request.headers,
            [
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("host", "svc:50051")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(&e1.request.body[..], &grpc_frame(b"one")[..]);
        assert_eq!(e1.interface.as_deref(), Some("/pkg.Svc/A"));
        let r1 = e1.response.as_ref().unwrap();
        assert_eq!((r1.status, &r1.body[..]), (200, &grpc_frame(b"reply")[..]));
        assert_eq!(
            r1.trailers.as_deref(),
            Some(
                &[
                    ("grpc-status".to_string(), "0".to_string()),
                    ("grpc-message".to_string(), String::new())
                ][..]
            )
        );
        // Packets: 1-4 handshake and settings, 5 stream 1's HEADERS, 10 its last DATA,
        // 12 the first frame of its answer.
        assert_eq!(e1.ts_us, 5_000);
        assert_eq!(e1.latency_us, Some(2_000));
        let e5 = &out[1];
        assert_eq!(e5.request.uri, "/pkg.Svc/C");
        let r5 = e5.response.as_ref().unwrap();
        assert_eq!(r5.trailers, None);
        assert_eq!(r5.headers, [("grpc-status".to_string(), "5".to_string())]);
        // Stream 3 was reset by the server before its answer ended.
        assert_eq!(r.skipped.get(SKIP_RESET), Some(&1), "{r:?}");
        assert_eq!(r.skipped_total(), 1, "{r:?}");
        assert_eq!((r.requests, r.responses, r.written), (3, 2, 2));
    }

    #[test]
    fn a_reset_after_a_whole_answer_keeps_the_exchange() {
        let (mut ce, mut se) = (Enc::new(), Enc::new());
        let ok = se.block(&[(":status", "200")]);
        let end = se.block(&[("grpc-status", "0")]);
        let (out, r) = start()
            .client(&frame(
                HEADERS,
                END_HEADERS,
                1,
                &grpc_request(&mut ce, "/a"),
            ))
            .client(&frame(DATA, 0, 1, &grpc_frame(b"q")))
            .server(&frame(HEADERS, END_HEADERS, 1, &ok))
            .server(&frame(DATA, 0, 1, &grpc_frame(b"a")))
            .server(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &end))
            // The server needs no more of the request: RST_STREAM with NO_ERROR.
            .server(&frame(RST_STREAM, 0, 1, &0u32.to_be_bytes()))
            // The client's END_STREAM crosses it; it belongs to a stream already written.
            .client(&frame(DATA, END_STREAM, 1, &[]))
            .fin(true)
            .fin(false)
            .run();
        assert!(r.skipped.is_empty(), "{r:?}");
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].request.body[..], &grpc_frame(b"q")[..]);
        assert_eq!(
            &out[0].response.as_ref().unwrap().body[..],
            &grpc_frame(b"a")[..]
        );
    }

    #[test]
    fn a_dynamic_table_size_update_after_settings_is_followed() {
        let mut ce = Enc::new();
        let first = grpc_request(&mut ce, "/pkg.Svc/A");
        // The server allows a larger table; the client's encoder moves to it once it has
        // acknowledged, then indexes a large field into it.
        ce.0.set_max_table_size(8_192);
        let big = "x".repeat(5_000);
        let mut second = vec![0x3f, 0xe1, 0x3f]; // size update to 8192
        second.extend(ce.block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/big"),
            (":authority", "a"),
            ("x-big", &big),
        ]));
        let third = ce.block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/again"),
            (":authority", "a"),
            ("x-big", &big),
        ]);
        let mut se = Enc::new();
        let ok = se.block(&[(":status", "204")]);
        let ok2 = se.block(&[(":status", "204")]);
        let ok3 = se.block(&[(":status", "204")]);
        let (out, r) = start()
            .client(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &first))
            .server(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &ok))
            .server(&settings(&[(0x1, 8_192)]))
            .client(&settings_ack())
            .client(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &second))
            .server(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &ok2))
            .client(&frame(HEADERS, END_HEADERS | END_STREAM, 5, &third))
            .server(&frame(HEADERS, END_HEADERS | END_STREAM, 5, &ok3))
            .fin(true)
            .fin(false)
            .run();
        assert!(r.skipped.is_empty(), "{r:?}");
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].request.uri, "/again");
        assert_eq!(
            crate::exchange::header(&out[2].request.headers, "x-big"),
            Some(big.as_str())
        );
        // The third block used the dynamic table: it is far smaller than the field.
        assert!(third.len() < 100, "{}", third.len());
    }

    #[test]
    fn a_table_update_beyond_what_the_server_allowed_loses_the_rest() {
        let mut ce = Enc::new();
        let mut block = vec![0x3f, 0xe1, 0x7f]; // size update to 16384, never allowed
        block.extend(grpc_request(&mut ce, "/pkg.Svc/A"));
        let (out, r) = start()
            .client(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
            .client(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x82]))
            .fin(true)
            .fin(false)
            .run();
        assert!(out.is_empty());
        assert_eq!(r.skipped.get(SKIP_HPACK), Some(&1), "{r:?}");
        // Both requests were seen; neither could be read.
        assert_eq!(r.skipped.get(SKIP_STREAM_LOST), Some(&2), "{r:?}");
        assert_eq!(r.requests, 2);
    }

    #[test]
    fn a_gap_loses_the_streams_that_needed_that_direction() {
        let (mut ce, mut se) = (Enc::new(), Enc::new());
        let ok = se.block(&[(":status", "200")]);
        let (out, r) = start()
            .client(&call(&mut ce, 1, "/a"))
            .server(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &ok))
            .client(&frame(
                HEADERS,
                END_HEADERS,
                3,
                &grpc_request(&mut ce, "/b"),
            ))
            .client(&frame(DATA, 0, 3, b"part"))
            .lose_client(30)
            .client(&call(&mut ce, 5, "/c"))
            .fin(true)
            .fin(false)
            .run();
        assert_eq!(out.len(), 1, "{r:?}");
        assert_eq!(out[0].request.uri, "/a");
        assert!(
            r.skipped.keys().any(|k| k.contains("lost segment")),
            "{r:?}"
        );
        assert_eq!(r.skipped.get(SKIP_STREAM_LOST), Some(&1), "{r:?}");
    }

    #[test]
    fn open_streams_at_the_end_are_written_or_counted() {
        let (mut ce, mut se) = (Enc::new(), Enc::new());
        let ok = se.block(&[(":status", "200")]);
        let (out, r) = start()
            // Whole request, no answer: written without one.
            .client(&call(&mut ce, 1, "/a"))
            // Whole request, answer cut: written without it, marked incomplete.
            .client(&call(&mut ce, 3, "/b"))
            .server(&frame(HEADERS, END_HEADERS, 3, &ok))
            // Request cut: lost.
            .client(&frame(
                HEADERS,
                END_HEADERS,
                5,
                &grpc_request(&mut ce, "/c"),
            ))
            // An answer on a stream never opened.
            .server(&frame(HEADERS, END_HEADERS | END_STREAM, 7, &[0x88]))
            .run();
        assert_eq!(out.len(), 2, "{r:?}");
        assert!(out.iter().all(|e| e.response.is_none()));
        assert_eq!(r.notes.get(NOTE_NO_RESPONSE), Some(&1), "{r:?}");
        assert_eq!(r.incomplete.get(INCOMPLETE_CUT_RESPONSE), Some(&1), "{r:?}");
        assert_eq!(r.skipped.get(SKIP_CUT_REQUEST), Some(&1), "{r:?}");
        assert_eq!(r.skipped.get(SKIP_ORPHAN), Some(&1), "{r:?}");
    }

    #[test]
    fn bounds_give_up_streams_and_directions_and_count_them() {
        let mut ce = Enc::new();
        // A CONTINUATION flood.
        let mut t = start().client(&frame(HEADERS, 0, 1, &grpc_request(&mut ce, "/a")));
        for _ in 0..80 {
            t = t.client(&frame(CONTINUATION, 0, 1, &[0x82; 16_000]));
        }
        let (out, r) = t.fin(true).fin(false).run();
        assert!(out.is_empty());
        assert_eq!(r.skipped.get(SKIP_FLOOD), Some(&1), "{r:?}");

        // A frame over SETTINGS_MAX_FRAME_SIZE.
        let (out, r) = start()
            .client(&frame(DATA, 0, 1, &vec![0; 20_000]))
            .fin(true)
            .fin(false)
            .run();
        assert!(out.is_empty());
        assert_eq!(r.skipped.get(SKIP_FRAMING), Some(&1), "{r:?}");

        // A request head that is too big as stream 1, a small one as stream 3 and its
        // answer: stream 1 is given up and counted, the table kept and stream 3 read.
        let too_big_then_small = |extra: &dyn Fn(&mut Enc) -> Vec<u8>| {
            let mut ce = Enc::new();
            let mut head = grpc_request(&mut ce, "/a");
            head.extend(extra(&mut ce));
            let mut se = Enc::new();
            let (out, r) = start()
                .client(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &head))
                .client(&call(&mut ce, 3, "/b"))
                .server(&frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    3,
                    &se.block(&[(":status", "200")]),
                ))
                .fin(true)
                .fin(false)
                .run();
            assert_eq!(r.skipped.get(SKIP_TOO_BIG), Some(&1), "{r:?}");
            assert_eq!(out.len(), 1, "{r:?}");
            assert_eq!(out[0].request.uri, "/b");
        };
        // A header list over 1 MiB from a small block: one large field indexed, then
        // named 300 times (index 62, the newest table entry).
        too_big_then_small(&|ce| {
            let mut b = ce.block(&[("x-a", &"a".repeat(4_000))]);
            b.extend(std::iter::repeat_n(0xbe, 300));
            b
        });
        // Many short fields in a small list, each a 1-byte index of the static table
        // (16: accept-encoding): past MAX_FIELDS.
        too_big_then_small(&|_| vec![0x90; 3 * MAX_FIELDS]);

        // Too many open streams: the ones past the bound are counted.
        let mut ce = Enc::new();
        let mut t = start();
        let n = MAX_STREAMS as u32 + 5;
        for i in 0..n {
            t = t.client(&frame(
                HEADERS,
                END_HEADERS,
                2 * i + 1,
                &grpc_request(&mut ce, "/x"),
            ));
        }
        let (out, r) = t.run();
        assert!(out.is_empty());
        assert_eq!(r.skipped.get(SKIP_TOO_MANY), Some(&5), "{r:?}");
        assert_eq!(r.skipped.get(SKIP_CUT_REQUEST), Some(&(MAX_STREAMS as u64)));
    }

    #[test]
    fn padding_is_taken_off_and_impossible_padding_named() {
        let f = |flags: u8, payload: &'static [u8]| Frame {
            kind: DATA,
            flags,
            stream: 1,
            payload,
            first_us: 0,
            last_us: 0,
        };
        assert_eq!(unpad(&f(0, b"\x02ab")).unwrap(), b"\x02ab");
        assert_eq!(unpad(&f(PADDED, b"\x02abcd")).unwrap(), b"ab");
        assert_eq!(unpad(&f(PADDED, b"\x00")).unwrap(), b"");
        assert!(unpad(&f(PADDED, b""))
            .unwrap_err()
            .contains("no pad length"));
        let e = unpad(&f(PADDED, b"\x05ab")).unwrap_err();
        assert!(e.contains("padding of 5 bytes"), "{e}");
    }

    /// A call open past the order's bound (a watch) no longer holds anything back, but a
    /// unary call begun beside it on the same connection still does.
    #[test]
    fn a_long_lived_stream_does_not_hide_later_streams_from_the_order() {
        use crate::recording::packets::tests::{get, Net, OK};
        let (mut enc, mut senc) = (Enc::new(), Enc::new());
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[]));
        let mut n = Net::new(2);
        n.open(0).open(1);
        n.client(0, &c)
            .server(0, &[settings(&[]), settings_ack()].concat())
            .client(0, &settings_ack());
        let watch = grpc_request(&mut enc, "/pkg.Svc/Watch");
        n.client(0, &frame(HEADERS, END_HEADERS, 1, &watch));
        n.at(120_000_000);
        let unary = grpc_request(&mut enc, "/pkg.Svc/Unary");
        n.client(0, &frame(HEADERS, END_HEADERS | END_STREAM, 3, &unary));
        n.client(1, &get("/fast")).server(1, OK);
        let answer = senc.block(&[(":status", "200"), ("grpc-status", "0")]);
        n.server(0, &frame(HEADERS, END_HEADERS | END_STREAM, 3, &answer));
        n.close(1);
        let (out, r) = n.run();
        let uris: Vec<&str> = out.iter().map(|e| e.request.uri.as_str()).collect();
        assert_eq!(uris[..2], ["/pkg.Svc/Unary", "/fast"], "{r:?}");
    }

    #[test]
    fn bodies_are_kept_up_to_max_body_and_the_rest_read_past() {
        let mut h = H2::new(1, "t".into(), 4);
        let mut out = Vec::new();
        let mut report = crate::recording::import::ImportReport::new("packets");
        let file = std::path::PathBuf::from("t");
        let mut ctx = Ctx {
            sink: &mut out,
            report: &mut report,
            file: &file,
            packet: 1,
        };
        let (mut ce, mut se) = (Enc::new(), Enc::new());
        h.data(0, PREFACE, 10, &mut ctx).unwrap();
        let head = frame(HEADERS, END_HEADERS, 1, &grpc_request(&mut ce, "/up"));
        h.data(0, &head, 20, &mut ctx).unwrap();
        h.data(0, &frame(DATA, 0, 1, &[7; 3000]), 21, &mut ctx)
            .unwrap();
        h.data(0, &frame(DATA, END_STREAM, 1, &[8; 3000]), 22, &mut ctx)
            .unwrap();
        assert!(h.held() < 1000, "{} held", h.held());
        let ok = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &se.block(&[(":status", "200")]),
        );
        h.data(1, &ok, 30, &mut ctx).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].request.body[..], &[7; 4][..]);
        assert!(out[0].request.body_truncated);
    }

    #[test]
    fn oldest_open_is_the_first_packet_of_the_oldest_unwritten_stream() {
        let mut h = H2::new(1, "t".into(), MAX_BODY);
        let mut out = Vec::new();
        let mut report = crate::recording::import::ImportReport::new("packets");
        let file = std::path::PathBuf::from("t");
        let mut ctx = Ctx {
            sink: &mut out,
            report: &mut report,
            file: &file,
            packet: 1,
        };
        let (mut ce, mut se) = (Enc::new(), Enc::new());
        h.data(0, PREFACE, 10, &mut ctx).unwrap();
        assert_eq!(h.oldest_open_us(), None);
        let a = call(&mut ce, 1, "/a");
        let b = call(&mut ce, 3, "/b");
        // Stream 1's frame arrives in two packets: its time is the first one's.
        h.data(0, &a[..5], 20, &mut ctx).unwrap();
        assert_eq!(h.oldest_open_us(), None);
        h.data(0, &a[5..], 25, &mut ctx).unwrap();
        h.data(0, &b, 30, &mut ctx).unwrap();
        assert_eq!(h.oldest_open_us(), Some(20));
        let ok = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &se.block(&[(":status", "200")]),
        );
        h.data(1, &ok, 40, &mut ctx).unwrap();
        assert_eq!(h.oldest_open_us(), Some(30));
        let ok3 = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &se.block(&[(":status", "200")]),
        );
        h.data(1, &ok3, 50, &mut ctx).unwrap();
        assert_eq!(h.oldest_open_us(), None);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].ts_us, 20);
        assert_eq!(out[0].latency_us, Some(15));
    }

    #[test]
    fn a_broken_preface_is_counted_once_and_nothing_decoded() {
        let (out, r) = Talk::new()
            .client(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
            .server(&settings(&[]))
            .fin(true)
            .fin(false)
            .run();
        assert!(out.is_empty());
        assert_eq!(r.skipped.get(SKIP_PREFACE), Some(&1), "{r:?}");
        assert_eq!(r.skipped_total(), 1, "{r:?}");
    }

    /// A valid conversation of `n` streams, for mutating.
    fn conversation(n: u32) -> Vec<(bool, Vec<u8>)> {
        let (mut ce, mut se) = (Enc::new(), Enc::new());
        let mut v = vec![
            (true, [PREFACE.to_vec(), settings(&[(0x1, 8192)])].concat()),
            (false, [settings(&[(0x5, 32_768)]), settings_ack()].concat()),
            (true, settings_ack()),
        ];
        for i in 0..n {
            let id = 2 * i + 1;
            v.push((
                true,
                frame(HEADERS, END_HEADERS, id, &grpc_request(&mut ce, "/p.S/M")),
            ));
            v.push((true, frame(DATA, END_STREAM, id, &grpc_frame(b"req"))));
            v.push((
                false,
                frame(HEADERS, END_HEADERS, id, &se.block(&[(":status", "200")])),
            ));
            v.push((false, frame(DATA, 0, id, &grpc_frame(b"resp"))));
            v.push((
                false,
                frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    id,
                    &se.block(&[("grpc-status", "0")]),
                ),
            ));
        }
        v
    }

    fn run_pieces(
        pieces: &[(bool, Vec<u8>)],
    ) -> (
        Vec<crate::exchange::Exchange>,
        crate::recording::import::ImportReport,
    ) {
        let mut t = Talk::new();
        for (client, bytes) in pieces {
            t = if *client {
                t.client(bytes)
            } else {
                t.server(bytes)
            };
        }
        t.fin(true).fin(false).run()
    }

    #[test]
    fn an_upgrade_to_h2c_continues_as_stream_1() {
        let (mut ce, mut se) = (Enc::new(), Enc::new());
        // HTTP2-Settings: SETTINGS_MAX_FRAME_SIZE 32,768, base64url without padding.
        let up = b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
            Upgrade: h2c\r\nHTTP2-Settings: AAUAAIAA\r\n\r\n";
        let mut switched = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
            Upgrade: h2c\r\n\r\n"
            .to_vec();
        switched.extend(settings(&[]));
        switched.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &se.block(&[(":status", "200")]),
        ));
        // A frame over the default 16,384 bytes: the client's HTTP2-Settings allowed it.
        switched.extend(frame(DATA, END_STREAM, 1, &vec![b'x'; 20_000]));
        let (out, r) = Talk::new()
            .client(up)
            .server(&switched)
            .client(&[PREFACE.to_vec(), settings(&[]), settings_ack()].concat())
            .client(&call(&mut ce, 3, "/b"))
            .server(&frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                3,
                &se.block(&[(":status", "204")]),
            ))
            .fin(true)
            .fin(false)
            .run();
        assert!(r.skipped.is_empty(), "{r:?}");
        assert_eq!(out.len(), 2, "{r:?}");
        assert_eq!(
            (out[0].request.uri.as_str(), out[0].request.version.as_str()),
            ("/up", "HTTP/1.1")
        );
        let r1 = out[0].response.as_ref().unwrap();
        assert_eq!((r1.status, r1.body.len()), (200, 20_000));
        assert_eq!(out[1].request.uri, "/b");
        assert_eq!(out[1].response.as_ref().unwrap().status, 204);
        assert_eq!((r.requests, r.responses, r.written), (2, 2, 2));
    }

    #[test]
    fn streams_above_a_goaway_are_counted_as_refused() {
        let (mut ce, mut se) = (Enc::new(), Enc::new());
        let ok = se.block(&[(":status", "200")]);
        let mut goaway = 1u32.to_be_bytes().to_vec();
        goaway.extend_from_slice(&0u32.to_be_bytes());
        let (out, r) = start()
            .client(&call(&mut ce, 1, "/a"))
            .client(&call(&mut ce, 3, "/b"))
            .server(&frame(GOAWAY, 0, 0, &goaway))
            .server(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &ok))
            .fin(true)
            .fin(false)
            .run();
        assert_eq!(out.len(), 1, "{r:?}");
        assert_eq!(out[0].request.uri, "/a");
        assert_eq!(r.skipped.get(SKIP_REFUSED), Some(&1), "{r:?}");
    }

    /// Every request seen ends in exactly one place: written, or lost by reason.
    fn assert_accounted(
        out: &[crate::exchange::Exchange],
        r: &crate::recording::import::ImportReport,
    ) {
        assert_eq!(out.len() as u64, r.written);
        let stream_lost: u64 = [
            SKIP_STREAM_LOST,
            SKIP_REFUSED,
            SKIP_RESET,
            SKIP_MALFORMED,
            SKIP_TOO_BIG,
            SKIP_TOO_MANY,
            SKIP_CUT_REQUEST,
        ]
        .iter()
        .filter_map(|k| r.skipped.get(*k))
        .sum();
        assert_eq!(r.requests, r.written + stream_lost, "{r:?}");
    }

    #[test]
    fn a_clean_conversation_is_all_written() {
        let (out, r) = run_pieces(&conversation(4));
        assert_eq!(out.len(), 4, "{r:?}");
        assert!(r.skipped.is_empty(), "{r:?}");
        assert!(out
            .iter()
            .all(|e| e.response.as_ref().unwrap().trailers.is_some()));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(256)))]

        #[test]
        fn mutated_conversations_never_panic_and_stay_accounted(
            flips in proptest::collection::vec((0usize..4096, 0usize..64, proptest::num::u8::ANY), 0..6),
            cut in proptest::option::of(0usize..64),
        ) {
            let mut pieces = conversation(3);
            for (at, piece, byte) in flips {
                let n = pieces.len();
                let p = &mut pieces[piece % n].1;
                let i = at % p.len();
                p[i] = byte;
            }
            if let Some(c) = cut {
                let n = pieces.len();
                pieces.truncate(c % n + 1);
            }
            let (out, r) = run_pieces(&pieces);
            assert_accounted(&out, &r);
            // Each request is written once at most, under its own stream id.
            let mut ids: Vec<&str> = out.iter().map(|e| e.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            proptest::prop_assert_eq!(ids.len(), out.len());
        }

        #[test]
        fn random_bytes_after_the_preface_never_panic(
            client in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            server in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
        ) {
            let (out, r) = run_pieces(&[
                (true, [PREFACE.to_vec(), client].concat()),
                (false, server),
            ]);
            assert_accounted(&out, &r);
        }
    }
}
