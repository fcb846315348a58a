//! The bytes of a HAR file on their way to serde_json, with every string cut to a bound as
//! it streams past. serde_json holds a whole string in one buffer before any visitor sees
//! it, so a HAR with one 600 MB `content.text` took 2.4 times that in memory, and no cut
//! made after parsing could help. Here a body (`request.postData.text`,
//! `response.content.text` of an entry) keeps a prefix long enough for the 64 MiB body cap
//! however it is encoded, any other string keeps 1 MiB; a cut leaves valid JSON (whole
//! characters, whole escapes, the closing quote) and is recorded for its entry, so the
//! importer marks the body truncated or skips the entry. An entry bigger than 16 MiB
//! besides its bodies, or a number or literal longer than 4 KiB, stops the reading with an
//! error naming the line: the parsed entry would take many times that in memory.
//!
//! The scanner follows the JSON structure only as far as it must to know where a string
//! sits (objects, arrays, the last key of each object); serde_json still checks the syntax.

use super::MAX_BODY;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::rc::Rc;

/// How much of what is kept.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Decoded bytes kept of a body string: base64 of [`MAX_BODY`] bytes, so a base64 body
    /// cut here still decodes to more than the cap and is cut there like any other.
    pub body: usize,
    /// Decoded bytes kept of any other string (URLs, header values, keys, ...).
    pub string: usize,
    /// Bytes of one entry outside its body strings.
    pub entry: usize,
    /// Bytes of one number or literal.
    pub token: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body: MAX_BODY.div_ceil(3) * 4,
            string: 1 << 20,
            entry: 16 << 20,
            token: 4 << 10,
        }
    }
}

/// What was cut in one entry of `log.entries`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cuts {
    /// `request.postData.text` lost its end.
    pub request_body: bool,
    /// `response.content.text` lost its end.
    pub response_body: bool,
    /// Another string under `request` did.
    pub request_other: bool,
    /// Another string under `response` did.
    pub response_other: bool,
}

/// What the scanner tells the importer: the cuts of the entries it began that the importer
/// has not yet taken (entries numbered from 1 within the file) and, once reading stopped on
/// a limit, the line and why.
#[derive(Debug, Default)]
pub struct Log {
    /// Entries begun and not yet taken, oldest first: no more than the scanner reads ahead
    /// of serde_json.
    entries: VecDeque<(u64, Cuts)>,
    /// Set when a limit stopped the reading: the line and what was too long.
    pub stopped: Option<(u64, String)>,
}

impl Log {
    /// The cuts of entry `n`, once serde_json has handed it over; entries before it are
    /// forgotten.
    pub fn take_cuts(&mut self, n: u64) -> Cuts {
        while let Some(&(k, cuts)) = self.entries.front() {
            if k > n {
                break;
            }
            self.entries.pop_front();
            if k == n {
                return cuts;
            }
        }
        Cuts::default()
    }
}

/// Shared view of the [`Log`].
pub type SharedLog = Rc<RefCell<Log>>;

/// Keys the scanner tells apart; any other key is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Log,
    Entries,
    Request,
    Response,
    PostData,
    Content,
    Text,
    Other,
}

impl Key {
    fn of(name: &[u8]) -> Key {
        match name {
            b"log" => Key::Log,
            b"entries" => Key::Entries,
            b"request" => Key::Request,
            b"response" => Key::Response,
            b"postData" => Key::PostData,
            b"content" => Key::Content,
            b"text" => Key::Text,
            _ => Key::Other,
        }
    }
}

/// The longest key name told apart, in bytes.
const KEY_BYTES: usize = 8;

#[derive(Clone, Copy, Debug)]
enum Frame {
    /// An object: its current key, and whether a key comes next.
    Object {
        key: Key,
        want_key: bool,
    },
    Array,
}

/// Containers tracked by kind; deeper ones are only counted (serde_json refuses nesting
/// beyond 128 anyway).
const TRACKED_DEPTH: usize = 64;

/// Where `log.entries` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entries {
    Before,
    In,
    Done,
}

/// Where the string being read sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Key,
    RequestBody,
    ResponseBody,
    /// Any other value; `Some(true)` under an entry's request, `Some(false)` its response.
    Other(Option<bool>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// Right after a backslash.
    Started,
    /// Inside `\uXXXX`: hex digits still to come, and the value so far.
    Hex(u8, u32),
}

#[derive(Debug)]
struct Str {
    place: Place,
    limit: usize,
    /// Decoded bytes kept so far.
    decoded: usize,
    escape: Escape,
    /// The last escape was a high surrogate: its low half must stay with it.
    high_surrogate: bool,
    /// Past the cut: bytes are dropped up to the closing quote.
    cut: bool,
    /// Its bytes count towards the entry's (inside an entry, not a body).
    counted: bool,
    /// The start of a key, to tell the keys that matter apart.
    key: [u8; KEY_BYTES],
    key_len: usize,
    key_long: bool,
}

/// The scanner's state between bytes.
#[derive(Debug)]
struct Scan {
    limits: Limits,
    stack: Vec<Frame>,
    /// Containers open beyond [`TRACKED_DEPTH`].
    untracked: usize,
    string: Option<Str>,
    /// Bytes of the number or literal being read.
    token: usize,
    entries: Entries,
    /// Entries begun so far in this file.
    entry: u64,
    /// Bytes of the current entry outside its body strings.
    entry_bytes: usize,
    line: u64,
}

/// A reader handing on the bytes of `inner` with strings cut to [`Limits`]; see the module
/// docs. A limit that stops the reading is an `InvalidData` error, also kept in the [`Log`].
pub struct CutReader<R> {
    inner: R,
    scan: Scan,
    log: SharedLog,
    failed: bool,
}

impl<R: Read> CutReader<R> {
    /// Reads `inner` under `limits`, reporting to `log`.
    pub fn new(inner: R, limits: Limits, log: SharedLog) -> Self {
        CutReader {
            inner,
            scan: Scan {
                limits,
                stack: Vec::new(),
                untracked: 0,
                string: None,
                token: 0,
                entries: Entries::Before,
                entry: 0,
                entry_bytes: 0,
                line: 1,
            },
            log,
            failed: false,
        }
    }
}

impl<R: Read> Read for CutReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(stopped_error(&self.log));
        }
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            // Dropped bytes are squeezed out in place: what is kept never moves forward.
            let mut kept = 0;
            let mut i = 0;
            while i < n {
                let run = self.scan.plain_run(&buf[i..n]);
                if run > 0 {
                    buf.copy_within(i..i + run, kept);
                    kept += run;
                    i += run;
                    continue;
                }
                let b = buf[i];
                i += 1;
                match self.scan.byte(b, &self.log) {
                    Ok(true) => {
                        buf[kept] = b;
                        kept += 1;
                    }
                    Ok(false) => {}
                    Err(why) => {
                        self.failed = true;
                        self.log.borrow_mut().stopped = Some((self.scan.line, why));
                        // What was kept before the stop is handed over first; the error
                        // comes with the next read.
                        return if kept > 0 {
                            Ok(kept)
                        } else {
                            Err(stopped_error(&self.log))
                        };
                    }
                }
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

fn stopped_error(log: &SharedLog) -> io::Error {
    let why = match &log.borrow().stopped {
        Some((line, why)) => format!("line {line}: {why}"),
        None => "reading stopped".to_string(),
    };
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Bytes `\uXXXX` stands for in UTF-8 (a surrogate half counts for half of its pair).
fn utf8_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x7ff => 2,
        0xd800..=0xdfff => 2,
        _ => 3,
    }
}

impl Scan {
    /// True when `stack` (fully tracked) starts with `log`, `entries`, the array.
    fn in_entries_array(&self) -> bool {
        self.entries == Entries::In
            && matches!(
                self.stack.as_slice(),
                [
                    Frame::Object { key: Key::Log, .. },
                    Frame::Object {
                        key: Key::Entries,
                        ..
                    },
                    Frame::Array,
                    ..
                ]
            )
    }

    /// True when a byte passed on now counts towards the entry's bytes: inside an entry
    /// object, outside its body strings.
    fn counts_for_entry(&self) -> bool {
        (self.stack.len() > 3 || self.untracked > 0)
            && self.in_entries_array()
            && !matches!(
                self.string,
                Some(Str {
                    place: Place::RequestBody | Place::ResponseBody,
                    ..
                })
            )
    }

    /// Where a value string starting now sits.
    fn place(&self) -> Place {
        if !self.in_entries_array() {
            return Place::Other(None);
        }
        let key = |i: usize| match self.stack.get(i) {
            Some(Frame::Object { key, .. }) => Some(*key),
            _ => None,
        };
        let side = match key(3) {
            Some(Key::Request) => Some(true),
            Some(Key::Response) => Some(false),
            _ => None,
        };
        match (self.stack.len() + self.untracked, side, key(4), key(5)) {
            (6, Some(true), Some(Key::PostData), Some(Key::Text)) => Place::RequestBody,
            (6, Some(false), Some(Key::Content), Some(Key::Text)) => Place::ResponseBody,
            _ => Place::Other(side),
        }
    }

    /// A value (object, array, string, number, literal) begins.
    fn value_starts(&mut self, log: &SharedLog) {
        if self.entries == Entries::In
            && self.untracked == 0
            && self.stack.len() == 3
            && self.in_entries_array()
        {
            self.entry += 1;
            self.entry_bytes = 0;
            log.borrow_mut()
                .entries
                .push_back((self.entry, Cuts::default()));
        }
    }

    fn open(&mut self, frame: Frame) {
        if self.stack.len() < TRACKED_DEPTH && self.untracked == 0 {
            if matches!(frame, Frame::Array)
                && self.entries == Entries::Before
                && matches!(
                    self.stack.as_slice(),
                    [
                        Frame::Object { key: Key::Log, .. },
                        Frame::Object {
                            key: Key::Entries,
                            ..
                        }
                    ]
                )
            {
                self.entries = Entries::In;
            }
            self.stack.push(frame);
        } else {
            self.untracked += 1;
        }
    }

    fn close(&mut self) {
        if self.untracked > 0 {
            self.untracked -= 1;
            return;
        }
        if self.stack.len() == 3 && self.in_entries_array() {
            self.entries = Entries::Done;
        }
        self.stack.pop();
    }

    /// How many bytes at the start of `bytes` pass unchanged as plain characters of the
    /// string being read, below its limit and the entry's: no quote, backslash or newline
    /// among them. The bulk of a HAR is such bytes; everything else goes through
    /// [`Scan::byte`].
    fn plain_run(&mut self, bytes: &[u8]) -> usize {
        let Some(s) = self.string.as_mut() else {
            return 0;
        };
        if s.cut || s.escape != Escape::None || s.high_surrogate || s.place == Place::Key {
            return 0;
        }
        let mut room = s.limit.saturating_sub(s.decoded);
        if s.counted {
            room = room.min(self.limits.entry.saturating_sub(self.entry_bytes));
        }
        let end = memchr::memchr3(b'"', b'\\', b'\n', bytes).unwrap_or(bytes.len());
        let run = end.min(room);
        s.decoded += run;
        if s.counted {
            self.entry_bytes += run;
        }
        run
    }

    /// Takes one byte: `Ok(true)` to pass it on, `Ok(false)` to drop it, `Err` when a
    /// limit stops the reading.
    fn byte(&mut self, b: u8, log: &SharedLog) -> Result<bool, String> {
        if b == b'\n' {
            self.line += 1;
        }
        let keep = if self.string.is_some() {
            self.string_byte(b, log)
        } else {
            self.structure_byte(b, log)?;
            true
        };
        if keep && self.counts_for_entry() {
            self.count_entry_byte()?;
        }
        Ok(keep)
    }

    /// A byte outside any string.
    fn structure_byte(&mut self, b: u8, log: &SharedLog) -> Result<(), String> {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | b':' => self.token = 0,
            b'"' => {
                self.token = 0;
                let want_key = self.untracked == 0
                    && matches!(
                        self.stack.last(),
                        Some(Frame::Object { want_key: true, .. })
                    );
                let place = if want_key {
                    Place::Key
                } else {
                    self.value_starts(log);
                    self.place()
                };
                let body = matches!(place, Place::RequestBody | Place::ResponseBody);
                let limit = if body {
                    self.limits.body
                } else {
                    self.limits.string
                };
                let counted = !body
                    && (self.stack.len() > 3 || self.untracked > 0)
                    && self.in_entries_array();
                self.string = Some(Str {
                    place,
                    limit,
                    decoded: 0,
                    escape: Escape::None,
                    high_surrogate: false,
                    cut: false,
                    counted,
                    key: [0; KEY_BYTES],
                    key_len: 0,
                    key_long: false,
                });
            }
            b'{' | b'[' => {
                self.token = 0;
                self.value_starts(log);
                self.open(if b == b'{' {
                    Frame::Object {
                        key: Key::Other,
                        want_key: true,
                    }
                } else {
                    Frame::Array
                });
            }
            b'}' | b']' => {
                self.token = 0;
                self.close();
            }
            b',' => {
                self.token = 0;
                if self.untracked == 0 {
                    if let Some(Frame::Object { key, want_key }) = self.stack.last_mut() {
                        *key = Key::Other;
                        *want_key = true;
                    }
                }
            }
            _ => {
                if self.token == 0 {
                    self.value_starts(log);
                }
                self.token += 1;
                if self.token > self.limits.token {
                    return Err(format!(
                        "a number or literal longer than {} bytes; expected the JSON of a HAR file",
                        self.limits.token
                    ));
                }
            }
        }
        Ok(())
    }

    fn count_entry_byte(&mut self) -> Result<(), String> {
        self.entry_bytes += 1;
        if self.entry_bytes > self.limits.entry {
            return Err(format!(
                "entry {} holds more than {} MiB besides its bodies; expected a HAR entry (request, response, timings)",
                self.entry,
                self.limits.entry >> 20
            ));
        }
        Ok(())
    }

    /// A byte inside a string: kept unless the string is past its cut.
    fn string_byte(&mut self, b: u8, log: &SharedLog) -> bool {
        let Some(s) = self.string.as_mut() else {
            return true;
        };
        let mut ends = false;
        let keep = if s.cut {
            match (s.escape, b) {
                (Escape::Started, _) => {
                    s.escape = Escape::None;
                    false
                }
                (_, b'\\') => {
                    s.escape = Escape::Started;
                    false
                }
                (_, b'"') => {
                    ends = true;
                    true
                }
                _ => false,
            }
        } else {
            match s.escape {
                Escape::Started => {
                    if b == b'u' {
                        s.escape = Escape::Hex(4, 0);
                    } else {
                        s.escape = Escape::None;
                        s.decoded += 1;
                        s.push_key(b);
                    }
                    true
                }
                Escape::Hex(left, v) => {
                    let digit = (b as char).to_digit(16).unwrap_or(0);
                    let v = v.wrapping_mul(16).wrapping_add(digit);
                    if left > 1 {
                        s.escape = Escape::Hex(left - 1, v);
                    } else {
                        s.escape = Escape::None;
                        s.decoded += utf8_len(v);
                        s.high_surrogate = (0xd800..=0xdbff).contains(&v);
                        s.key_long = true;
                    }
                    true
                }
                Escape::None if b == b'"' => {
                    ends = true;
                    true
                }
                Escape::None => {
                    // A character or an escape starts here, unless this is a UTF-8
                    // continuation byte; only there may the string be cut.
                    let starts = b == b'\\' || b & 0xc0 != 0x80;
                    if starts && s.decoded >= s.limit && !s.high_surrogate {
                        s.cut = true;
                        if b == b'\\' {
                            s.escape = Escape::Started;
                        }
                        let place = s.place;
                        let entry = self.entry;
                        let mut l = log.borrow_mut();
                        if let Some((_, c)) = l.entries.back_mut().filter(|(k, _)| *k == entry) {
                            match place {
                                Place::RequestBody => c.request_body = true,
                                Place::ResponseBody => c.response_body = true,
                                Place::Other(Some(true)) => c.request_other = true,
                                Place::Other(Some(false)) => c.response_other = true,
                                Place::Other(None) | Place::Key => {}
                            }
                        }
                        false
                    } else {
                        if starts {
                            s.high_surrogate = false;
                        }
                        if b == b'\\' {
                            s.escape = Escape::Started;
                        } else {
                            s.decoded += 1;
                            s.push_key(b);
                        }
                        true
                    }
                }
            }
        };
        if ends {
            self.end_string();
        }
        keep
    }

    fn end_string(&mut self) {
        let Some(s) = self.string.take() else {
            return;
        };
        if s.place == Place::Key && self.untracked == 0 {
            if let Some(Frame::Object { key, want_key }) = self.stack.last_mut() {
                *key = if s.key_long || s.cut {
                    Key::Other
                } else {
                    Key::of(&s.key[..s.key_len])
                };
                *want_key = false;
            }
        }
    }
}

impl Str {
    fn push_key(&mut self, b: u8) {
        if self.place != Place::Key {
            return;
        }
        if self.key_len < KEY_BYTES {
            self.key[self.key_len] = b;
            self.key_len += 1;
        } else {
            self.key_long = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        body: 8,
        string: 16,
        entry: 400,
        token: 6,
    };

    /// What serde_json is handed, the cuts of the first entry, and where reading stopped.
    /// Read in pieces of `piece` bytes.
    fn scan_in(input: &str, limits: Limits, piece: usize) -> (String, Cuts, Option<(u64, String)>) {
        let log = SharedLog::default();
        let mut out = Vec::new();
        let mut r = CutReader::new(input.as_bytes(), limits, log.clone());
        let mut b = vec![0u8; piece];
        loop {
            match r.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&b[..n]),
            }
        }
        let mut l = log.borrow_mut();
        let cuts = l.take_cuts(1);
        (String::from_utf8(out).unwrap(), cuts, l.stopped.clone())
    }

    /// [`scan_in`] one byte at a time and in larger pieces, which must agree.
    fn scan(input: &str, limits: Limits) -> (String, Cuts, Option<(u64, String)>) {
        let one = scan_in(input, limits, 1);
        for piece in [7, 4096] {
            assert_eq!(scan_in(input, limits, piece), one, "pieces of {piece}");
        }
        one
    }

    fn entry(request: &str, response: &str) -> String {
        format!(
            r#"{{"log":{{"version":"1.2","entries":[{{"startedDateTime":"t","request":{request},"response":{response}}}]}}}}"#
        )
    }

    #[test]
    fn what_fits_passes_unchanged() {
        let har = entry(
            r#"{"url":"/a","postData":{"text":"12345678"}}"#,
            r#"{"status":200,"content":{"text":"\"\\\n"}}"#,
        );
        let (out, cuts, stopped) = scan(&har, SMALL);
        assert_eq!(out, har);
        assert_eq!((cuts, stopped), (Cuts::default(), None));
        let real = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/har_firefox111_mitmproxy-testdata.har"
        ))
        .unwrap();
        assert_eq!(scan(&real, Limits::default()).0, real);
    }

    #[test]
    fn bodies_and_other_strings_are_cut_at_their_own_limits() {
        let har = entry(
            r#"{"url":"/abcdefghijklmnopqrst","postData":{"text":"0123456789"}}"#,
            r#"{"status":200,"content":{"text":"abcdefghij","mimeType":"text/plain; charset=utf-8"}}"#,
        );
        let (out, cuts, stopped) = scan(&har, SMALL);
        assert_eq!(
            out,
            entry(
                r#"{"url":"/abcdefghijklmno","postData":{"text":"01234567"}}"#,
                r#"{"status":200,"content":{"text":"abcdefgh","mimeType":"text/plain; char"}}"#,
            )
        );
        assert_eq!(stopped, None);
        assert_eq!(
            cuts,
            Cuts {
                request_body: true,
                response_body: true,
                request_other: true,
                response_other: true,
            }
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }

    #[test]
    fn a_cut_keeps_characters_escapes_and_surrogate_pairs_whole() {
        for (text, kept) in [
            // Two-byte characters: the cut falls before a character, never inside one.
            ("ééééé", "éééé"),
            ("aéééé", "aéééé"),
            // An escape counts the bytes it stands for; the cut comes before the next one.
            (r#"\n\t\u00e9\u00e9\u0041zq"#, r#"\n\t\u00e9\u00e9\u0041z"#),
            // A surrogate pair stays together.
            (r#"abcdef\ud83d\ude00xyz"#, r#"abcdef\ud83d\ude00"#),
            (r#"abcdefg\\\\"#, r#"abcdefg\\"#),
            (r#"abcdefgh\"\"\""#, r#"abcdefgh"#),
        ] {
            let har = entry(
                r#"{"url":"/"}"#,
                &format!(r#"{{"status":200,"content":{{"text":"{text}"}}}}"#),
            );
            let want = entry(
                r#"{"url":"/"}"#,
                &format!(r#"{{"status":200,"content":{{"text":"{kept}"}}}}"#),
            );
            let (out, cuts, _) = scan(&har, SMALL);
            assert_eq!(out, want, "{text}");
            assert_eq!(cuts.response_body, kept != text, "{text}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let decoded = v["log"]["entries"][0]["response"]["content"]["text"]
                .as_str()
                .unwrap()
                .len();
            assert!(
                (8..=11).contains(&decoded) || kept == text,
                "{text}: {decoded}"
            );
        }
    }

    #[test]
    fn strings_outside_the_entries_are_cut_without_marking_an_entry() {
        let har = r#"{"log":{"creator":{"name":"abcdefghijklmnopqr"},"pages":[{"title":"xxxxxxxxxxxxxxxxxxxx"}],"entries":[]},"abcdefghijklmnopqrs":1}"#;
        let (out, cuts, stopped) = scan(har, SMALL);
        assert_eq!(
            out,
            r#"{"log":{"creator":{"name":"abcdefghijklmnop"},"pages":[{"title":"xxxxxxxxxxxxxxxx"}],"entries":[]},"abcdefghijklmnop":1}"#
        );
        assert_eq!((cuts, stopped), (Cuts::default(), None));
    }

    #[test]
    fn cuts_are_told_per_entry() {
        let cut = r#"{"request":{"url":"/abcdefghijklmnopqrstu"}}"#;
        let whole = r#"{"request":{"url":"/a"}}"#;
        let log = SharedLog::default();
        let input = format!(r#"{{"log":{{"entries":[{whole},{cut},{whole},{cut}]}}}}"#);
        let mut r = CutReader::new(input.as_bytes(), SMALL, log.clone());
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        let mut l = log.borrow_mut();
        let cuts = Cuts {
            request_other: true,
            ..Cuts::default()
        };
        // Taken in order; an entry not taken (the third) is forgotten with the ones before.
        assert_eq!(l.take_cuts(1), Cuts::default());
        assert_eq!(l.take_cuts(2), cuts);
        assert_eq!(l.take_cuts(4), cuts);
        assert_eq!(l.take_cuts(3), Cuts::default());
        assert!(l.entries.is_empty());
    }

    #[test]
    fn an_oversized_entry_or_number_stops_the_reading_naming_the_line() {
        let headers = vec![r#"{"name":"a","value":"b"}"#; 40].join(",\n");
        let har = entry(&format!(r#"{{"url":"/","headers":[{headers}]}}"#), "{}");
        let (out, _, stopped) = scan(&har, SMALL);
        let (line, why) = stopped.unwrap();
        assert!(line > 1 && line < 40, "{line}");
        assert!(why.contains("entry 1 holds more than"), "{why}");
        assert!(out.len() < 500, "{}", out.len());

        let (_, _, stopped) = scan(r#"{"log":{"version":12345678901}}"#, SMALL);
        assert_eq!(
            stopped,
            Some((
                1,
                "a number or literal longer than 6 bytes; expected the JSON of a HAR file".into()
            ))
        );
    }

    #[test]
    fn base64_bodies_keep_whole_groups_under_the_real_limits() {
        let l = Limits::default();
        assert_eq!(l.body % 4, 0);
        assert!(l.body / 4 * 3 > MAX_BODY);
    }
}
