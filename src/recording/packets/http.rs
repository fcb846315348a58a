//! HTTP/1.x over one reassembled TCP connection: parses the client's bytes into requests
//! and the server's into responses (keep-alive and pipelining: the n-th response answers
//! the n-th request), and hands each pair on as an exchange, which the tracker holds until
//! it can be written in capture order ([`super::order`]): [`Flow::oldest_open_us`] says
//! how early a request still open here began. An exchange's time is the first request
//! packet's; its latency is the first response packet's time minus the last request
//! packet's, so it measures the server, not the transfer.

use super::h2::H2;
use super::marks::Marks;
use super::Ctx;
use crate::error::Result;
use crate::exchange::{header, Request};
use crate::recording::import::http1::{Message, MessageReader, ParseError, Role, Step, MAX_HEAD};
use crate::recording::import::{exchange, INCOMPLETE_BODY_CAP, MAX_BODY};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Bytes one direction may hold unparsed (a capped body plus a header section) before the
/// direction is given up, so a stalled pairing cannot grow without bound.
const MAX_BUFFERED: usize = MAX_BODY + MAX_HEAD + (1 << 20);
/// Requests that may wait for their responses at once on one connection.
const MAX_UNANSWERED: usize = 10_000;

const SKIP_NOT_HTTP: &str =
    "TCP streams that are not HTTP/1.x (the client's first bytes are not a request)";
const SKIP_TLS: &str = "TCP streams that are TLS (a handshake record, 0x16 0x03, at the client's \
     first byte): encrypted, they cannot be read from the wire; record them with the tap \
     terminating TLS (--tls-cert), or capture where the traffic is plain";
/// The client preface of HTTP/2 with prior knowledge (RFC 9113 section 3.4) up to its
/// first line's end, enough to tell it from an HTTP/1 request.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
const SKIP_BAD_REQUEST: &str = "malformed HTTP/1 requests (rest of the client's stream unusable)";
const SKIP_BAD_RESPONSE: &str = "malformed HTTP/1 responses (rest of the server's stream unusable)";
pub(crate) const SKIP_CUT_REQUEST: &str = "requests cut short (the stream ends inside them)";
const SKIP_CUT_RESPONSE: &str = "responses cut short (the stream ends inside them)";
pub(crate) const SKIP_ORPHAN: &str =
    "responses with no request in the stream (its request was lost or cut)";
const SKIP_SWITCHED: &str =
    "TCP streams that switched protocols (101 or CONNECT): bytes after the switch are not HTTP/1";
const SKIP_PILED: &str =
    "stream directions given up: too many bytes or requests waiting to be paired";
pub(crate) const NOTE_NO_RESPONSE: &str =
    "requests with no response in the capture (written without one)";

/// The role of each direction's messages: 0 client, 1 server.
const ROLES: [Role; 2] = [Role::Request, Role::Response];

/// What holding a parsed request costs, roughly: its strings, header fields and body.
fn request_cost(r: &Request) -> usize {
    const FIELD_COST: usize = 2 * std::mem::size_of::<String>();
    std::mem::size_of::<Pending>()
        + r.method.len()
        + r.uri.len()
        + r.version.len()
        + r.body.len()
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + FIELD_COST)
            .sum::<usize>()
}

/// How a direction of the stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// FIN: the sender closed it.
    Closed,
    /// RST.
    Reset,
    /// The capture ended (or the addresses were reused) first.
    CaptureOver,
    /// A segment was lost; nothing after the hole is usable.
    Lost,
    /// The importer stopped following the connection (idle too long, or too many open at
    /// once) to keep its memory bounded.
    GivenUp,
}

impl End {
    /// What the end was, for messages.
    pub(crate) fn says(self) -> &'static str {
        match self {
            End::Closed => "connection closed",
            End::Reset => "connection reset",
            End::CaptureOver => "capture ended",
            End::Lost => "segment lost",
            End::GivenUp => "stream given up (idle too long, or too many open at once)",
        }
    }
}

struct Side {
    reader: MessageReader,
    /// (stream offset one past a delivered piece, its capture time), oldest first.
    marks: Marks,
    pushed: u64,
    end: Option<End>,
    stopped: bool,
}

impl Side {
    fn new(role: Role, max_body: usize) -> Self {
        Side {
            reader: MessageReader::with_max_body(role, max_body),
            marks: Marks::default(),
            pushed: 0,
            end: None,
            stopped: false,
        }
    }

    /// Bytes held: unparsed bytes, a body being read and the time marks.
    fn held(&self) -> usize {
        self.reader.buffered() + self.marks.held()
    }

    /// Stops reading this direction and lets go of what it held.
    fn stop(&mut self, role: Role) {
        self.stopped = true;
        self.reader = MessageReader::new(role);
        self.marks = Marks::default();
    }

    /// Notes that bytes up to stream offset `pushed` arrived at `ts_us`.
    fn mark(&mut self, ts_us: i64) {
        self.marks.push(self.pushed, ts_us);
    }

    /// Capture time of the piece that carried stream offset `off`.
    fn ts_at(&self, off: u64) -> i64 {
        self.marks.ts_at(off)
    }

    fn drop_marks(&mut self, upto: u64) {
        self.marks.drop_upto(upto);
    }
}

struct Pending {
    n: u64,
    /// What `request` costs to hold, roughly.
    bytes: usize,
    request: Request,
    first_us: i64,
    last_us: i64,
    switches: bool,
}

/// The HTTP/1 side of one TCP connection.
pub(crate) struct Flow {
    stream: u64,
    label: String,
    sides: [Side; 2],
    pending: VecDeque<Pending>,
    /// The sum of `pending`'s `bytes`.
    pending_bytes: usize,
    requests: u64,
    /// The client sent a request that may switch protocols; its answer decides.
    paused: bool,
    switched: bool,
    after_switch: u64,
    /// The client's first bytes were looked at for a protocol other than HTTP/1.
    sniffed: bool,
    /// The client began with HTTP/2's preface: every byte goes to its decoder.
    h2: Option<Box<H2>>,
    /// Bytes kept of each body, HTTP/2's too.
    max_body: usize,
}

impl Flow {
    /// A new flow for stream number `stream`, keeping at most `max_body` bytes of each
    /// body.
    pub fn new(stream: u64, client: SocketAddr, server: SocketAddr, max_body: usize) -> Self {
        Flow {
            stream,
            label: format!("stream {stream} ({client} -> {server})"),
            sides: [
                Side::new(Role::Request, max_body),
                Side::new(Role::Response, max_body),
            ],
            pending: VecDeque::new(),
            pending_bytes: 0,
            requests: 0,
            paused: false,
            switched: false,
            after_switch: 0,
            sniffed: false,
            h2: None,
            max_body,
        }
    }

    /// The stream number.
    pub fn stream(&self) -> u64 {
        self.stream
    }

    /// Bytes this flow holds: both directions' buffers and the requests waiting for their
    /// answers.
    pub fn held(&self) -> usize {
        self.sides[0].held()
            + self.sides[1].held()
            + self.pending_bytes
            + self.h2.as_ref().map_or(0, |h| h.held())
    }

    /// `stream N (client -> server)`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Capture time of the first packet of the oldest request begun on this connection and
    /// not yet handed on as an exchange: the exchanges of other connections that began
    /// after it wait for it, so they are written in capture order.
    pub fn oldest_open_us(&self) -> Option<i64> {
        if let Some(p) = self.pending.front() {
            return Some(p.first_us);
        }
        if let Some(h2) = &self.h2 {
            return h2.oldest_open_us();
        }
        let client = &self.sides[0];
        if client.stopped || self.switched {
            return None;
        }
        client.reader.in_progress().map(|off| client.ts_at(off))
    }

    /// Bytes that arrived in order on direction `d` (0 client, 1 server) at `ts_us`.
    pub fn data(&mut self, d: usize, bytes: &[u8], ts_us: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        if let Some(h2) = self.h2.as_mut() {
            return h2.data(d, bytes, ts_us, ctx);
        }
        if self.switched {
            self.after_switch += bytes.len() as u64;
            return Ok(());
        }
        let side = &mut self.sides[d];
        if side.stopped {
            return Ok(());
        }
        side.pushed += bytes.len() as u64;
        side.mark(ts_us);
        side.reader.push(bytes);
        if side.reader.buffered() > MAX_BUFFERED || self.pending.len() > MAX_UNANSWERED {
            side.stop(ROLES[d]);
            let at = format!("{}: {}", ctx.at(), self.label);
            ctx.report.skip(SKIP_PILED, || at);
            return self.write_unanswerable(ctx);
        }
        self.pump(ctx)?;
        self.write_unanswerable(ctx)
    }

    /// Direction `d` ends as `end`: a read-until-close body completes, a partial message
    /// is counted as cut.
    pub fn end(&mut self, d: usize, end: End, ctx: &mut Ctx<'_>) -> Result<()> {
        if let Some(h2) = self.h2.as_mut() {
            return h2.end(d, end, ctx);
        }
        self.sides[d].end.get_or_insert(end);
        self.pump(ctx)?;
        self.write_unanswerable(ctx)
    }

    /// Once the server's direction has ended or stopped being read, no request waiting on
    /// this connection can be answered: each is written now, without a response, rather
    /// than when the connection ends, since until then it would hold every exchange begun
    /// after it, on any connection, back from the recording (capture order).
    fn write_unanswerable(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        let server = &self.sides[1];
        if server.stopped || server.end.is_some() {
            self.write_unanswered(ctx)?;
        }
        Ok(())
    }

    /// Writes every request still waiting, without a response.
    fn write_unanswered(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        while let Some(p) = self.pending.pop_front() {
            self.pending_bytes -= p.bytes;
            ctx.report.note(NOTE_NO_RESPONSE);
            let ex = exchange(
                format!("pcap-{}-{}", self.stream, p.n),
                p.first_us,
                p.request,
                None,
                None,
            );
            ctx.sink.put(ex)?;
        }
        Ok(())
    }

    /// Tells a stream that is not HTTP/1 by its client's first bytes: TLS (a handshake
    /// record, 0x16 0x03), counted once, whole, and never parsed, so its bytes are never
    /// read as broken HTTP/1; or HTTP/2's preface, whose stream goes to the HTTP/2
    /// decoder with every byte buffered so far.
    fn sniff(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        let first = self.sides[0].reader.unread();
        let eof = self.sides[0].end.is_some();
        if !eof
            && (first.len() < 2
                || (first.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(first)))
        {
            // Too few bytes to tell yet (the preface's whole first line is waited for).
            return Ok(());
        }
        self.sniffed = true;
        if first.starts_with(&[0x16, 0x03]) {
            self.sides[0].stop(Role::Request);
            self.sides[1].stop(Role::Response);
            let at = format!("{}: {}", ctx.at(), self.label);
            ctx.report.skip(SKIP_TLS, || at);
        } else if first.starts_with(H2_PREFACE) {
            // Nothing was parsed yet: the buffered bytes are all that was delivered.
            let h2 = Box::new(H2::new(self.stream, self.label.clone(), self.max_body));
            self.hand_over(h2, ctx)?;
        }
        Ok(())
    }

    /// Parses and pairs whatever the buffered bytes allow.
    fn pump(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        if !self.sniffed && self.requests == 0 && !self.sides[0].stopped {
            if self.sides[0].reader.unread().is_empty() && self.sides[0].end.is_none() {
                // Nothing from the client yet: the server's bytes wait too.
                if !self.sides[1].reader.unread().is_empty() {
                    return Ok(());
                }
            } else {
                self.sniff(ctx)?;
                if !self.sniffed || self.h2.is_some() {
                    return Ok(());
                }
            }
        }
        loop {
            if self.h2.is_some() {
                return Ok(());
            }
            let mut progress = false;
            if !self.paused && !self.sides[0].stopped && !self.switched {
                let eof = self.sides[0].end.is_some();
                match self.sides[0].reader.next(eof, None) {
                    Ok(Step::Message(m)) => {
                        self.on_request(*m, ctx);
                        progress = true;
                    }
                    Ok(_) => {}
                    Err(e) => self.stop(0, e, ctx),
                }
            }
            if !self.sides[1].stopped && !self.switched {
                let eof = self.sides[1].end.is_some();
                let method = self.pending.front().map(|p| p.request.method.as_str());
                match self.sides[1].reader.next(eof, method) {
                    Ok(Step::Message(m)) => {
                        self.on_response(*m, ctx)?;
                        progress = true;
                    }
                    Ok(_) => {}
                    Err(e) => self.stop(1, e, ctx),
                }
            }
            if !progress {
                return Ok(());
            }
        }
    }

    fn on_request(&mut self, m: Message, ctx: &mut Ctx<'_>) {
        self.requests += 1;
        ctx.report.requests += 1;
        let side = &mut self.sides[0];
        let first_us = side.ts_at(m.begin);
        let last_us = side.ts_at(m.end.saturating_sub(1));
        side.drop_marks(m.end);
        if m.body_truncated {
            let at = format!("{}: {}", ctx.at(), self.label);
            ctx.report.incomplete(INCOMPLETE_BODY_CAP, || at);
        }
        let switches = m.switches;
        let request = m.into_request();
        let bytes = request_cost(&request);
        self.pending_bytes += bytes;
        self.pending.push_back(Pending {
            n: self.requests,
            bytes,
            request,
            first_us,
            last_us,
            switches,
        });
        if switches {
            // After `Upgrade` or CONNECT the client's next bytes may be another protocol;
            // they are read as HTTP/1 only once the answer says the switch was refused.
            self.paused = true;
        }
    }

    fn on_response(&mut self, m: Message, ctx: &mut Ctx<'_>) -> Result<()> {
        let status = m.status();
        let side = &mut self.sides[1];
        let first_us = side.ts_at(m.begin);
        side.drop_marks(m.end);
        if (100..200).contains(&status) && status != 101 {
            // An interim answer (100 Continue, 103 Early Hints): the final one follows.
            return Ok(());
        }
        let Some(p) = self.pending.pop_front() else {
            return Ok(());
        };
        self.pending_bytes -= p.bytes;
        if status == 101 && p.switches && m.switches && is_h2c(&p.request, &m) {
            // The upgrade's request is HTTP/2's stream 1; its answer comes in HTTP/2.
            return self.start_h2c(p, ctx);
        }
        ctx.report.responses += 1;
        if m.body_truncated {
            let at = format!("{}: {}", ctx.at(), self.label);
            ctx.report.incomplete(INCOMPLETE_BODY_CAP, || at);
        }
        let switches = m.switches;
        let latency = u64::try_from(first_us.saturating_sub(p.last_us)).unwrap_or(0);
        let ex = exchange(
            format!("pcap-{}-{}", self.stream, p.n),
            p.first_us,
            p.request,
            Some(m.into_response()),
            Some(latency),
        );
        ctx.sink.put(ex)?;
        if switches {
            self.switched = true;
            self.after_switch +=
                (self.sides[0].reader.buffered() + self.sides[1].reader.buffered()) as u64;
            // Nothing after the switch is read: what was buffered is counted, not kept.
            self.sides[0].stop(Role::Request);
            self.sides[1].stop(Role::Response);
        } else if p.switches {
            self.paused = false;
        }
        Ok(())
    }

    /// Hands the connection to the HTTP/2 decoder after `101 Switching Protocols` to h2c:
    /// the request that asked for it is stream 1, the client's `HTTP2-Settings` count as
    /// its first SETTINGS, and the bytes each side sent after the switch go on there.
    fn start_h2c(&mut self, p: Pending, ctx: &mut Ctx<'_>) -> Result<()> {
        use base64::Engine as _;
        let settings = header(&p.request.headers, "http2-settings").and_then(|v| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.trim().trim_end_matches('='))
                .ok()
        });
        let mut h2 = Box::new(H2::new(self.stream, self.label.clone(), self.max_body));
        h2.upgraded(p.request, p.first_us, p.last_us, settings.as_deref());
        self.paused = false;
        self.hand_over(h2, ctx)
    }

    /// Gives the connection to the HTTP/2 decoder: the bytes buffered and not yet read,
    /// piece by piece with their capture times, and any end already seen; from then on
    /// every byte goes to it and the HTTP/1 sides let go of what they held.
    fn hand_over(&mut self, mut h2: Box<H2>, ctx: &mut Ctx<'_>) -> Result<()> {
        for d in 0..2 {
            let side = &self.sides[d];
            for (piece, ts) in side
                .marks
                .pieces(side.reader.offset(), side.reader.unread())
            {
                h2.data(d, piece, ts, ctx)?;
            }
        }
        for d in 0..2 {
            if let Some(end) = self.sides[d].end {
                h2.end(d, end, ctx)?;
            }
        }
        self.sides[0].stop(Role::Request);
        self.sides[1].stop(Role::Response);
        self.h2 = Some(h2);
        Ok(())
    }

    fn stop(&mut self, d: usize, e: ParseError, ctx: &mut Ctx<'_>) {
        self.sides[d].stop(ROLES[d]);
        let (reason, detail) = match (d, e) {
            (0, ParseError::Malformed(m)) if self.requests == 0 => (SKIP_NOT_HTTP, m),
            (0, ParseError::Malformed(m)) => (SKIP_BAD_REQUEST, m),
            (_, ParseError::Malformed(m)) => (SKIP_BAD_RESPONSE, m),
            (0, ParseError::Incomplete(m)) => (SKIP_CUT_REQUEST, self.cut(0, &m)),
            (_, ParseError::Incomplete(m)) => (SKIP_CUT_RESPONSE, self.cut(1, &m)),
        };
        let at = format!("{}: {}: {detail}", ctx.at(), self.label);
        ctx.report.skip(reason, || at);
    }

    fn cut(&self, d: usize, m: &str) -> String {
        let why = self.sides[d].end.map_or("stream ended", End::says);
        format!("{why}: {m}")
    }

    /// Both directions have ended: writes unanswered requests without a response and
    /// counts what was left over.
    pub fn finish(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        if let Some(h2) = self.h2.as_mut() {
            return h2.finish(ctx);
        }
        for d in 0..2 {
            self.sides[d].end.get_or_insert(End::CaptureOver);
        }
        self.pump(ctx)?;
        let server_left = !self.sides[1].stopped && !self.sides[1].reader.is_idle();
        let client_left = !self.sides[0].stopped && self.paused && !self.sides[0].reader.is_idle();
        if self.switched && self.after_switch > 0 || client_left {
            let at = format!("{}: {}: {} bytes", ctx.at(), self.label, self.after_switch);
            ctx.report.skip(SKIP_SWITCHED, || at);
        } else if server_left && self.pending.is_empty() {
            let at = format!("{}: {}", ctx.at(), self.label);
            ctx.report.skip(SKIP_ORPHAN, || at);
        }
        self.write_unanswered(ctx)
    }
}

/// An upgrade to h2c: the request asked for it and the `101` agreed.
fn is_h2c(request: &Request, answer: &Message) -> bool {
    let names_h2c = |v: Option<&str>| {
        v.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c")))
    };
    names_h2c(header(&request.headers, "upgrade")) && names_h2c(header(&answer.headers, "upgrade"))
}
