//! HTTP/1.x message framing for the importers: an incremental reader that takes one byte
//! stream (a GoReplay record, or one direction of a reassembled TCP connection) and yields
//! whole requests or responses, bodies de-chunked and capped. gor and pcap share it; where
//! a message ends is decided by [`crate::http1`], as everywhere else in the crate, in its
//! lenient mode (captures written on Unix end lines with a bare LF).

use super::MAX_BODY;
use crate::exchange::{Headers, Request, Response};
use crate::http1::framing::{BodyFields, Mode};
use crate::http1::ChunkedDecoder;
use bytes::Bytes;

/// Largest header section accepted; real ones are a few KiB.
pub const MAX_HEAD: usize = 1 << 20;
/// Most header fields accepted in one message.
const MAX_HEADERS: usize = 256;
/// How much of an unfinished header section is checked for a valid beginning.
const PROBE: usize = 4096;
/// Consumed bytes are dropped from the buffer once this many have piled up.
const COMPACT_AT: usize = 64 << 10;

/// Which kind of message a reader expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

/// The first line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD target HTTP/1.x`.
    Request {
        /// Method as sent.
        method: String,
        /// Request target as sent.
        target: String,
    },
    /// `HTTP/1.x status reason`.
    Response {
        /// Status code.
        status: u16,
    },
}

/// One whole HTTP/1.x message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Request or status line.
    pub start: StartLine,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// Header fields in order.
    pub headers: Headers,
    /// The body with transfer coding undone (content coding kept).
    pub body: Vec<u8>,
    /// True when the body was longer than [`MAX_BODY`] and only a prefix is kept.
    pub body_truncated: bool,
    /// Chunked trailer fields, when any were sent.
    pub trailers: Option<Headers>,
    /// Stream offset of the message's first byte.
    pub begin: u64,
    /// Stream offset one past the message's last byte.
    pub end: u64,
    /// After this message the connection stops speaking HTTP/1 (a `101` answer, a `2xx`
    /// to CONNECT, or a request asking for that), so the caller must stop reading.
    pub switches: bool,
}

impl Message {
    /// The status code of a response (0 for a request).
    pub fn status(&self) -> u16 {
        match self.start {
            StartLine::Response { status } => status,
            StartLine::Request { .. } => 0,
        }
    }

    /// The method of a request (empty for a response).
    pub fn method(&self) -> &str {
        match &self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => "",
        }
    }

    /// The message as a captured request (a response gives an empty method and target).
    pub fn into_request(self) -> Request {
        let (method, uri) = match self.start {
            StartLine::Request { method, target } => (method, target),
            StartLine::Response { .. } => (String::new(), String::new()),
        };
        Request {
            method,
            uri,
            version: self.version,
            headers: self.headers,
            body: Bytes::from(self.body),
            body_truncated: self.body_truncated,
            tls: None,
        }
    }

    /// The message as a captured response.
    pub fn into_response(self) -> Response {
        Response {
            status: self.status(),
            headers: self.headers,
            trailers: self.trailers,
            body: Bytes::from(self.body),
            body_truncated: self.body_truncated,
        }
    }
}

/// Why a stream could not be read as HTTP/1.x.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes are not a valid message (the text says what was expected).
    Malformed(String),
    /// The stream ended inside a message.
    Incomplete(String),
}

/// What [`MessageReader::next`] found.
#[derive(Debug)]
pub enum Step {
    /// A whole message.
    Message(Box<Message>),
    /// The buffered bytes end inside a message; feed more.
    NeedMore,
    /// A response is buffered but its framing depends on the request it answers (HEAD,
    /// CONNECT), which is not known yet.
    NeedRequest,
    /// Nothing is buffered.
    Idle,
}

/// Where the body being read ends.
enum Framing {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    UntilClose,
}

struct Partial {
    start: StartLine,
    version: String,
    headers: Headers,
    body: Vec<u8>,
    body_truncated: bool,
    /// Body bytes kept at most; the rest is read past.
    max_body: usize,
    trailers: Headers,
    begin: u64,
    switches: bool,
}

enum State {
    /// Looking for the end of a header section; `scanned` bytes after `pos` hold none.
    Head {
        scanned: usize,
    },
    Body(Box<Partial>, Framing),
}

/// Reads HTTP/1.x messages of one role from a byte stream fed in pieces.
pub struct MessageReader {
    role: Role,
    buf: Vec<u8>,
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    state: State,
    /// Body bytes kept per message.
    max_body: usize,
}

impl MessageReader {
    /// A reader for messages of `role`, starting at stream offset 0.
    pub fn new(role: Role) -> Self {
        MessageReader {
            role,
            buf: Vec::new(),
            pos: 0,
            base: 0,
            state: State::Head { scanned: 0 },
            max_body: MAX_BODY,
        }
    }

    /// A reader that keeps at most `max_body` bytes of each body (and at most
    /// [`MAX_BODY`]), marking longer ones truncated: a caller that writes only a prefix
    /// need not hold the rest.
    pub fn with_max_body(role: Role, max_body: usize) -> Self {
        MessageReader {
            max_body: max_body.min(MAX_BODY),
            ..Self::new(role)
        }
    }

    /// Appends bytes that follow what was pushed before.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Stream offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes buffered and not yet part of a returned message.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
            + match &self.state {
                State::Body(p, _) => p.body.len() + 1,
                State::Head { .. } => 0,
            }
    }

    /// The bytes buffered and not yet read into a message (before the first message: the
    /// stream's first bytes, for telling its protocol).
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// True when the reader is between messages with nothing buffered.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head { .. }) && self.pos == self.buf.len()
    }

    /// Stream offset where the message being read began, when one has begun (bytes past
    /// the last message are buffered, or its body is being read).
    pub fn in_progress(&self) -> Option<u64> {
        match &self.state {
            State::Body(p, _) => Some(p.begin),
            State::Head { .. } if self.pos < self.buf.len() => Some(self.offset()),
            State::Head { .. } => None,
        }
    }

    /// Reads the next message. `eof` says no more bytes will come (so a read-until-close
    /// body ends here); `request_method` is the method of the request the next response
    /// answers (ignored for requests).
    pub fn next(&mut self, eof: bool, request_method: Option<&str>) -> Result<Step, ParseError> {
        let step = self.step(eof, request_method);
        self.compact();
        step
    }

    fn step(&mut self, eof: bool, request_method: Option<&str>) -> Result<Step, ParseError> {
        loop {
            match &mut self.state {
                State::Head { scanned } => {
                    if *scanned == 0 {
                        // Empty lines between messages are allowed (RFC 9112 §2.2).
                        while self.pos < self.buf.len()
                            && matches!(self.buf[self.pos], b'\r' | b'\n')
                        {
                            self.pos += 1;
                        }
                    }
                    if self.pos == self.buf.len() {
                        return Ok(Step::Idle);
                    }
                    if self.role == Role::Response && request_method.is_none() {
                        return Ok(Step::NeedRequest);
                    }
                    let avail = &self.buf[self.pos..];
                    let Some(len) = head_end(avail, *scanned) else {
                        if avail.len() > MAX_HEAD {
                            return Err(ParseError::Malformed(format!(
                                "header section longer than {} KiB",
                                MAX_HEAD >> 10
                            )));
                        }
                        // What has arrived must at least begin like a message; a stream
                        // of another protocol is told apart now, not after 1 MiB.
                        if *scanned < PROBE {
                            probe(self.role, &avail[..avail.len().min(PROBE)])?;
                        }
                        if eof {
                            return Err(ParseError::Incomplete(format!(
                                "the stream ends inside a header section ({} bytes, no empty line)",
                                avail.len()
                            )));
                        }
                        *scanned = avail.len().saturating_sub(3);
                        return Ok(Step::NeedMore);
                    };
                    if len > MAX_HEAD {
                        return Err(ParseError::Malformed(format!(
                            "header section longer than {} KiB",
                            MAX_HEAD >> 10
                        )));
                    }
                    let begin = self.offset();
                    let (mut partial, framing) =
                        parse_head(self.role, &avail[..len], begin, request_method)?;
                    partial.max_body = self.max_body;
                    self.pos += len;
                    match framing {
                        None => {
                            self.state = State::Head { scanned: 0 };
                            let end = self.offset();
                            return Ok(Step::Message(Box::new(finish(*partial, end))));
                        }
                        Some(f) => self.state = State::Body(partial, f),
                    }
                }
                State::Body(partial, framing) => {
                    let done =
                        read_body(partial, framing, &self.buf, &mut self.pos, eof, self.base)?;
                    if !done {
                        return Ok(Step::NeedMore);
                    }
                    let previous = std::mem::replace(&mut self.state, State::Head { scanned: 0 });
                    if let State::Body(partial, _) = previous {
                        let end = self.offset();
                        return Ok(Step::Message(Box::new(finish(*partial, end))));
                    }
                }
            }
        }
    }

    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.base += self.pos as u64;
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= COMPACT_AT {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
    }
}

fn finish(p: Partial, end: u64) -> Message {
    Message {
        start: p.start,
        version: p.version,
        headers: p.headers,
        body: p.body,
        body_truncated: p.body_truncated,
        trailers: (!p.trailers.is_empty()).then_some(p.trailers),
        begin: p.begin,
        end,
        switches: p.switches,
    }
}

/// Length of the header section at the start of `b` (through its empty line), looking for
/// the end from `from` on. Bare LF line ends are accepted, as servers and GoReplay files
/// written on Unix use them.
fn head_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(off) = b.get(i..)?.iter().position(|&c| c == b'\n') {
        let nl = i + off;
        match (b.get(nl + 1), b.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Fails when `partial`, the start of a header section, cannot begin a valid message.
fn probe(role: Role, partial: &[u8]) -> Result<(), ParseError> {
    let mut slots = uninit_slots();
    let r = match role {
        Role::Request => Mode::Lenient
            .head_parser()
            .parse_request_with_uninit_headers(
                &mut httparse::Request::new(&mut []),
                partial,
                &mut slots,
            )
            .map(|_| ()),
        Role::Response => Mode::Lenient
            .head_parser()
            .parse_response_with_uninit_headers(
                &mut httparse::Response::new(&mut []),
                partial,
                &mut slots,
            )
            .map(|_| ()),
    };
    match r {
        // Too many fields is decided on the whole section, not on a prefix.
        Ok(()) | Err(httparse::Error::TooManyHeaders) => Ok(()),
        Err(e) => {
            let end = partial
                .iter()
                .position(|&c| c == b'\n')
                .unwrap_or(partial.len());
            let what = match role {
                Role::Request => "request",
                Role::Response => "response",
            };
            Err(ParseError::Malformed(format!(
                "expected an HTTP/1.x {what}, found {:?} ({e})",
                text(&partial[..end.min(40)]).trim_end()
            )))
        }
    }
}

/// Room for the header fields of one head, left uninitialised: httparse writes only the
/// slots it fills, so a head costs no 8 KiB of initialisation before it is parsed.
fn uninit_slots<'b>() -> [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// `b` as text, invalid UTF-8 replaced. Valid text (nearly every header value) is checked
/// by `from_utf8`'s fast path and copied once.
fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn version_name(v: Option<u8>) -> String {
    match v {
        Some(0) => "HTTP/1.0".into(),
        _ => "HTTP/1.1".into(),
    }
}

/// Parses a header section and decides how the body is framed (`None`: no body).
fn parse_head(
    role: Role,
    head: &[u8],
    begin: u64,
    request_method: Option<&str>,
) -> Result<(Box<Partial>, Option<Framing>), ParseError> {
    let mut slots = uninit_slots();
    let first_line = || {
        let end = head.iter().position(|&c| c == b'\n').unwrap_or(head.len());
        let line = text(&head[..end.min(120)]);
        line.trim_end().to_string()
    };
    let bad = |what: &str, e: httparse::Error| {
        let hint = match e {
            httparse::Error::TooManyHeaders => format!("more than {MAX_HEADERS} header fields"),
            httparse::Error::Version => "not HTTP/1.0 or HTTP/1.1".to_string(),
            other => other.to_string(),
        };
        ParseError::Malformed(format!(
            "expected an HTTP/1.x {what}, found {:?} ({hint})",
            first_line()
        ))
    };
    let (start, version, raw_headers): (StartLine, String, Vec<(String, String)>) = match role {
        Role::Request => {
            let mut req = httparse::Request::new(&mut []);
            let status = Mode::Lenient
                .head_parser()
                .parse_request_with_uninit_headers(&mut req, head, &mut slots)
                .map_err(|e| bad("request", e))?;
            if status.is_partial() {
                return Err(ParseError::Malformed(format!(
                    "expected an HTTP/1.x request header section, found {:?}",
                    first_line()
                )));
            }
            let (method, target) = (req.method.unwrap_or_default(), req.path.unwrap_or_default());
            // A target the recording format does not take would make the whole recording
            // unreadable later; refused here, it is one skipped message.
            if !crate::recording::format::is_request_target(method, target) {
                return Err(ParseError::Malformed(format!(
                    "expected a request target (a path, an absolute URI, `*`, or host:port \
                     for CONNECT), found {target:?}"
                )));
            }
            let start = StartLine::Request {
                method: method.to_string(),
                target: target.to_string(),
            };
            let headers = req
                .headers
                .iter()
                .map(|h| (h.name.to_string(), text(h.value)))
                .collect();
            (start, version_name(req.version), headers)
        }
        Role::Response => {
            let mut resp = httparse::Response::new(&mut []);
            let status = Mode::Lenient
                .head_parser()
                .parse_response_with_uninit_headers(&mut resp, head, &mut slots)
                .map_err(|e| bad("response", e))?;
            if status.is_partial() {
                return Err(ParseError::Malformed(format!(
                    "expected an HTTP/1.x response header section, found {:?}",
                    first_line()
                )));
            }
            let start = StartLine::Response {
                status: resp.code.unwrap_or_default(),
            };
            let headers = resp
                .headers
                .iter()
                .map(|h| (h.name.to_string(), text(h.value)))
                .collect();
            (start, version_name(resp.version), headers)
        }
    };
    let framing = framing(&start, &raw_headers, request_method)?;
    let switches = match &start {
        StartLine::Request { method, .. } => {
            method.eq_ignore_ascii_case("CONNECT")
                || raw_headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("upgrade"))
        }
        StartLine::Response { status } => {
            *status == 101
                || (request_method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"))
                    && (200..300).contains(status))
        }
    };
    let partial = Partial {
        start,
        version,
        headers: raw_headers,
        body: Vec::new(),
        body_truncated: false,
        max_body: MAX_BODY,
        trailers: Vec::new(),
        begin,
        switches,
    };
    Ok((Box::new(partial), framing))
}

/// How the body after this header section ends (RFC 9112 §6.3); `None` when there is none.
fn framing(
    start: &StartLine,
    headers: &[(String, String)],
    request_method: Option<&str>,
) -> Result<Option<Framing>, ParseError> {
    let mut fields = BodyFields::default();
    for (name, value) in headers {
        fields.field(name, value.as_bytes());
    }
    let framing = match start {
        StartLine::Request { .. } => fields.request(),
        StartLine::Response { status } => {
            let method = request_method.unwrap_or("GET");
            fields
                .answer(
                    *status,
                    method.eq_ignore_ascii_case("HEAD"),
                    method.eq_ignore_ascii_case("CONNECT"),
                    true,
                )
                .map(|(framing, _)| framing)
        }
    };
    Ok(match framing.map_err(ParseError::Malformed)? {
        crate::http1::Framing::Empty | crate::http1::Framing::Length(0) => None,
        crate::http1::Framing::Length(n) => Some(Framing::Length(n)),
        crate::http1::Framing::Chunked => Some(Framing::Chunked(Box::new(ChunkedDecoder::new(
            Mode::Lenient,
        )))),
        crate::http1::Framing::UntilClose => Some(Framing::UntilClose),
    })
}

/// Appends body bytes, keeping at most the reader's cap.
fn keep(p: &mut Partial, data: &[u8]) {
    let room = p.max_body.saturating_sub(p.body.len());
    if data.len() > room {
        p.body_truncated = true;
    }
    p.body.extend_from_slice(&data[..data.len().min(room)]);
}

/// Moves body bytes from `buf[*pos..]` into the message; true when the body is complete.
fn read_body(
    p: &mut Partial,
    framing: &mut Framing,
    buf: &[u8],
    pos: &mut usize,
    eof: bool,
    base: u64,
) -> Result<bool, ParseError> {
    match framing {
        Framing::Length(rem) => {
            let avail = (buf.len() - *pos) as u64;
            let n = avail.min(*rem) as usize;
            keep(p, &buf[*pos..*pos + n]);
            *pos += n;
            *rem -= n as u64;
            if *rem == 0 {
                Ok(true)
            } else if eof {
                Err(ParseError::Incomplete(format!(
                    "the stream ends {rem} bytes before the end of a Content-Length body"
                )))
            } else {
                Ok(false)
            }
        }
        Framing::UntilClose => {
            keep(p, &buf[*pos..]);
            *pos = buf.len();
            Ok(eof)
        }
        Framing::Chunked(chunks) => {
            let mut data = Vec::new();
            let (used, done) = chunks.feed(&buf[*pos..], &mut data).map_err(|e| {
                ParseError::Malformed(format!(
                    "{} at offset {}",
                    e.message,
                    base + (*pos + e.at) as u64
                ))
            })?;
            for r in data {
                keep(p, &buf[*pos + r.start..*pos + r.end]);
            }
            *pos += used;
            if done {
                for (name, value) in chunks.trailer_fields() {
                    p.trailers.push((text(name), text(value)));
                }
                Ok(true)
            } else if eof {
                Err(ParseError::Incomplete(format!(
                    "the stream ends {} of a chunked body",
                    chunks.stage()
                )))
            } else {
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(role: Role, input: &[u8], pieces: usize, method: &str) -> Vec<Message> {
        let mut r = MessageReader::new(role);
        let mut out = Vec::new();
        let step = input.len().div_ceil(pieces.max(1)).max(1);
        for chunk in input.chunks(step) {
            r.push(chunk);
            while let Step::Message(m) = r.next(false, Some(method)).unwrap() {
                out.push(*m);
            }
        }
        while let Step::Message(m) = r.next(true, Some(method)).unwrap() {
            out.push(*m);
        }
        out
    }

    #[test]
    fn pipelined_requests_in_any_split() {
        let input = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\r\nGET /c HTTP/1.0\n\n";
        for pieces in [1, 2, 7, input.len()] {
            let got = all(Role::Request, input, pieces, "GET");
            assert_eq!(got.len(), 3, "{pieces}");
            assert_eq!(
                got[1].start,
                StartLine::Request {
                    method: "POST".into(),
                    target: "/b".into()
                }
            );
            assert_eq!(got[1].body, b"abc");
            assert_eq!(got[2].version, "HTTP/1.0");
            assert_eq!((got[0].begin, got[0].end), (0, 28));
            assert_eq!(got[1].begin, 28);
        }
    }

    #[test]
    fn chunked_with_extensions_trailers_and_bare_lf() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\nde\n0\r\nGrpc-Status: 0\r\n\r\n";
        for pieces in [1, 3, input.len()] {
            let got = all(Role::Response, input, pieces, "GET");
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].body, b"abcde");
            assert_eq!(
                got[0].trailers,
                Some(vec![("Grpc-Status".into(), "0".into())])
            );
        }
    }

    #[test]
    fn response_framing_follows_the_request() {
        let head = b"HTTP/1.1 301 Moved\r\nContent-Length: 219\r\n\r\n";
        let got = all(Role::Response, head, 1, "HEAD");
        assert_eq!(got.len(), 1);
        assert!(got[0].body.is_empty());
        let got = all(
            Role::Response,
            b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 NM\r\n\r\n",
            1,
            "GET",
        );
        assert_eq!(got.len(), 2);
        let got = all(
            Role::Response,
            b"HTTP/1.0 200 OK\r\n\r\nuntil close",
            2,
            "GET",
        );
        assert_eq!(got[0].body, b"until close");
        let mut r = MessageReader::new(Role::Response);
        r.push(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(r.next(false, None), Ok(Step::NeedRequest)));
        let got = all(
            Role::Response,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
            1,
            "GET",
        );
        assert!(got[0].switches);
    }

    #[test]
    fn incomplete_and_malformed_are_told_apart() {
        let mut r = MessageReader::new(Role::Request);
        r.push(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
        assert!(matches!(r.next(false, None), Ok(Step::NeedMore)));
        assert!(matches!(r.next(true, None), Err(ParseError::Incomplete(_))));
        let mut r = MessageReader::new(Role::Request);
        r.push(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n");
        let e = r.next(false, None).unwrap_err();
        assert!(
            matches!(e, ParseError::Malformed(ref m) if m.contains("expected an HTTP/1.x request")),
            "{e:?}"
        );
        let mut r = MessageReader::new(Role::Request);
        r.push(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        assert!(
            matches!(r.next(false, None), Err(ParseError::Malformed(m)) if m.contains("conflicting"))
        );
        let mut r = MessageReader::new(Role::Response);
        r.push(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert!(
            matches!(r.next(false, Some("GET")), Err(ParseError::Malformed(m)) if m.contains("hex chunk size"))
        );
    }

    #[test]
    fn bodies_over_the_cap_keep_a_prefix() {
        let mut r = MessageReader::new(Role::Response);
        let n = MAX_BODY + 10;
        r.push(format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").as_bytes());
        let block = vec![b'x'; 1 << 20];
        let mut sent = 0;
        while sent < n {
            let k = (n - sent).min(block.len());
            r.push(&block[..k]);
            sent += k;
            assert!(r.buffered() <= MAX_BODY + (2 << 20));
            if sent < n {
                assert!(matches!(r.next(false, Some("GET")), Ok(Step::NeedMore)));
            }
        }
        let Ok(Step::Message(m)) = r.next(false, Some("GET")) else {
            panic!("expected a message")
        };
        assert!(m.body_truncated);
        assert_eq!(m.body.len(), MAX_BODY);
    }
}
