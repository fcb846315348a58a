//! GoReplay `.gor` files: records separated by the line `🐵🙈🙉`, each a meta line
//! `TYPE ID TIMESTAMP_NS [LATENCY_NS]` followed by one raw HTTP/1 message. Requests (type 1)
//! are paired with the original response (type 2) by id, in whichever order the two come;
//! replayed responses (type 3) are ignored with a count. Several files (GoReplay's rotated chunks) pair as one capture.

use super::http1::{MessageReader, ParseError, Role, Step};
use super::{emit, exchange, ImportReport, Sink, MAX_BODY};
use crate::error::{Error, Result};
use crate::exchange::{Request, Response};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The record separator GoReplay writes on a line of its own.
pub(super) const SEPARATOR: &[u8] = "🐵🙈🙉".as_bytes();
/// Largest record kept: a capped body plus a generous header section.
const MAX_RECORD: usize = MAX_BODY + (2 << 20);
/// Lines are read in pieces of at most this many bytes, so a huge body without newlines
/// never needs one huge buffer beyond the record cap.
const READ_PIECE: u64 = 64 << 10;
/// A request waits this long (in capture time) for its response before it is written
/// without one; GoReplay writes a response within its own, much shorter, timeouts.
const PAIR_WINDOW_US: i64 = 120_000_000;
/// At most this many requests wait for responses at once; older ones are written first.
/// Responses that came before their request wait under the same bound.
const MAX_PENDING: usize = 100_000;
/// Bytes of responses that may wait for their requests at once; the oldest give way.
const MAX_EARLY_BYTES: usize = 256 << 20;
/// Bytes of requests that may wait for their responses at once; past it the oldest are
/// written without one, as past [`MAX_PENDING`]. A request holds up to a 64 MiB body, so
/// the count alone let a small gzipped file hold gigabytes.
const MAX_PENDING_BYTES: usize = 256 << 20;

const SKIP_BAD_REQUEST: &str = "request record is not a valid HTTP/1 request";
const SKIP_CUT_REQUEST: &str = "request record ends inside the message (cut by the capture)";
const SKIP_BAD_RESPONSE: &str = "response record is not a valid HTTP/1 response";
const SKIP_CUT_RESPONSE: &str = "response record ends inside the message (cut by the capture)";
const SKIP_EXTRA: &str = "record holds bytes after its HTTP message";
const SKIP_DUPLICATE: &str = "request record repeats an id already used";
const SKIP_ORPHAN: &str = "response record whose request is not in the input";
const SKIP_DUPLICATE_RESPONSE: &str =
    "response record repeats the id of a response still waiting for its request";
const SKIP_LATE: &str = "response record for a request already written (duplicate or too late)";
const SKIP_LAST: &str = "last record is incomplete (file cut inside its meta line)";
const SKIP_OVERSIZE: &str = "record longer than 66 MiB";
const SKIP_BAD_META: &str =
    "record whose first line is not a GoReplay meta line `TYPE ID TIMESTAMP_NS [LATENCY_NS]`";

/// One parsed meta line.
struct Meta {
    kind: u8,
    id: String,
    ts_ns: i64,
    latency_ns: Option<i64>,
}

struct Pending {
    seq: u64,
    request: Request,
    ts_us: i64,
}

/// A response record read before its request (GoReplay writes records as its goroutines
/// get to them, so a fast answer can precede its request in the file).
struct Early {
    seq: u64,
    meta: Meta,
    payload: Vec<u8>,
    /// `file:line` of the record.
    at: String,
}

/// Pairs GoReplay records across one or more files.
pub struct GorImporter {
    pending: HashMap<String, Pending>,
    /// Bytes the pending requests hold.
    pending_bytes: usize,
    /// [`MAX_PENDING_BYTES`], smaller in tests.
    max_pending_bytes: usize,
    order: VecDeque<(u64, String)>,
    seq: u64,
    written: HashSet<String>,
    early: HashMap<String, Early>,
    early_order: VecDeque<(u64, String)>,
    early_bytes: usize,
    /// Line of the current file's first record, once one was read.
    file_first_record: Option<u64>,
    /// Whether a record of the current file started with a meta line.
    file_has_meta: bool,
}

impl Default for GorImporter {
    fn default() -> Self {
        GorImporter {
            pending: HashMap::new(),
            pending_bytes: 0,
            max_pending_bytes: MAX_PENDING_BYTES,
            order: VecDeque::new(),
            seq: 0,
            written: HashSet::new(),
            early: HashMap::new(),
            early_order: VecDeque::new(),
            early_bytes: 0,
            file_first_record: None,
            file_has_meta: false,
        }
    }
}

/// Bytes a request holds in memory, near enough to bound many of them.
fn held(r: &Request) -> usize {
    r.body.len()
        + r.uri.len()
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

impl GorImporter {
    /// An importer with nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the pending request `id` out, with its bytes.
    fn take_pending(&mut self, id: &str) -> Option<Pending> {
        let p = self.pending.remove(id)?;
        self.pending_bytes = self.pending_bytes.saturating_sub(held(&p.request));
        Some(p)
    }

    /// Reads one file's records; exchanges are written as they pair up.
    pub fn read(
        &mut self,
        path: &Path,
        input: impl Read,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        let mut r = BufReader::with_capacity(256 << 10, input);
        let mut record: Vec<u8> = Vec::new();
        let mut oversize = false;
        let mut record_line: u64 = 1;
        let mut line_no: u64 = 1;
        let mut at_line_start = true;
        let mut piece = Vec::new();
        self.file_first_record = None;
        self.file_has_meta = false;
        loop {
            piece.clear();
            let n = (&mut r)
                .take(READ_PIECE)
                .read_until(b'\n', &mut piece)
                .map_err(|e| Error::io(path, e))?;
            if n == 0 {
                self.record(path, record_line, &record, oversize, true, sink, report)?;
                // Records with bad meta lines are skips in a gor file; in a file where no
                // record has one, it is the file that is not gor (a HAR, a pcap), and an
                // empty recording would hide that. An empty file is an empty capture.
                if let (Some(line), false) = (self.file_first_record, self.file_has_meta) {
                    return Err(Error::Input {
                        file: path.to_path_buf(),
                        line,
                        message: "not a GoReplay file: no record in it starts with a meta line \
                                  `TYPE ID TIMESTAMP_NS [LATENCY_NS]` (records are separated by \
                                  lines `🐵🙈🙉`); nothing was imported"
                            .into(),
                    });
                }
                return Ok(());
            }
            let ends_line = piece.ends_with(b"\n");
            let is_sep = at_line_start
                && match piece.strip_suffix(b"\n") {
                    Some(l) => l.strip_suffix(b"\r").unwrap_or(l) == SEPARATOR,
                    // A separator as the file's very last bytes, without a newline.
                    None => {
                        piece == SEPARATOR
                            && r.fill_buf().map_err(|e| Error::io(path, e))?.is_empty()
                    }
                };
            if is_sep {
                self.record(path, record_line, &record, oversize, false, sink, report)?;
                record.clear();
                oversize = false;
                record_line = line_no + 1;
            } else if record.len() + piece.len() <= MAX_RECORD {
                record.extend_from_slice(&piece);
            } else {
                oversize = true;
            }
            if ends_line {
                line_no += 1;
            }
            at_line_start = ends_line;
        }
    }

    /// Handles one record (the bytes between two separators) that starts at `line`.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        path: &Path,
        line: u64,
        record: &[u8],
        oversize: bool,
        at_eof: bool,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        if record.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let at = || format!("{}:{line}", path.display());
        report.read += 1;
        self.file_first_record.get_or_insert(line);
        let first_line = record.split(|&c| c == b'\n').next().unwrap_or(record);
        self.file_has_meta |= parse_meta(first_line).is_ok();
        if oversize {
            report.skip(SKIP_OVERSIZE, at);
            return Ok(());
        }
        // A file cut inside the last meta line may still leave a line that parses
        // (`1 id 14462`, its timestamp cut short): without a newline it is not whole.
        if at_eof && !record.contains(&b'\n') {
            report.skip(SKIP_LAST, at);
            return Ok(());
        }
        // GoReplay ends every payload with "\n" before the separator line; that newline
        // belongs to the framing, not to the message.
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let (meta_line, payload) = match record.iter().position(|&c| c == b'\n') {
            Some(i) => (&record[..i], &record[i + 1..]),
            None => (record, &[][..]),
        };
        let meta = match parse_meta(meta_line) {
            Ok(m) => m,
            Err(message) => {
                // The separator lines frame every record, so the records after this one
                // are still read.
                report.skip(SKIP_BAD_META, || format!("{}: {message}", at()));
                return Ok(());
            }
        };
        match meta.kind {
            b'1' => self.request(meta, payload, &at, sink, report),
            b'2' => self.response(meta, payload, &at, sink, report),
            _ => {
                report.ignore("replayed responses (type 3 records)");
                Ok(())
            }
        }
    }

    fn request(
        &mut self,
        meta: Meta,
        payload: &[u8],
        at: &dyn Fn() -> String,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        report.requests += 1;
        if self.pending.contains_key(&meta.id) || self.written.contains(&meta.id) {
            report.skip(SKIP_DUPLICATE, || format!("{}: id {}", at(), meta.id));
            return Ok(());
        }
        let Some(msg) = parse_one(
            Role::Request,
            payload,
            None,
            at,
            report,
            SKIP_BAD_REQUEST,
            SKIP_CUT_REQUEST,
        ) else {
            return Ok(());
        };
        let ts_us = meta.ts_ns / 1000;
        self.seq += 1;
        self.order.push_back((self.seq, meta.id.clone()));
        let id = meta.id;
        let request = msg.into_request();
        self.pending_bytes += held(&request);
        self.pending.insert(
            id.clone(),
            Pending {
                seq: self.seq,
                request,
                ts_us,
            },
        );
        self.flush_early(Some(ts_us), report);
        if let Some(e) = self.early.remove(&id) {
            self.early_bytes -= e.payload.len();
            let at = || e.at.clone();
            self.pair(e.meta, &e.payload, &at, sink, report)?;
        }
        self.flush(Some(ts_us), sink, report)
    }

    fn response(
        &mut self,
        meta: Meta,
        payload: &[u8],
        at: &dyn Fn() -> String,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        report.responses += 1;
        if self.pending.contains_key(&meta.id) {
            return self.pair(meta, payload, at, sink, report);
        }
        if self.written.contains(&meta.id) {
            report.skip(SKIP_LATE, || format!("{}: id {}", at(), meta.id));
            return Ok(());
        }
        if self.early.contains_key(&meta.id) {
            report.skip(SKIP_DUPLICATE_RESPONSE, || {
                format!("{}: id {}", at(), meta.id)
            });
            return Ok(());
        }
        // Its request may still come; it waits, bounded like waiting requests.
        let ts_us = meta.ts_ns / 1000;
        self.seq += 1;
        self.early_order.push_back((self.seq, meta.id.clone()));
        self.early_bytes += payload.len();
        self.early.insert(
            meta.id.clone(),
            Early {
                seq: self.seq,
                meta,
                payload: payload.to_vec(),
                at: at(),
            },
        );
        self.flush_early(Some(ts_us), report);
        Ok(())
    }

    /// Parses a response record whose request is pending and writes the pair.
    fn pair(
        &mut self,
        meta: Meta,
        payload: &[u8],
        at: &dyn Fn() -> String,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        let Some(method) = self.pending.get(&meta.id).map(|p| p.request.method.clone()) else {
            return Ok(());
        };
        let Some(msg) = parse_one(
            Role::Response,
            payload,
            Some(&method),
            at,
            report,
            SKIP_BAD_RESPONSE,
            SKIP_CUT_RESPONSE,
        ) else {
            // The request stays pending and is written without a response.
            return Ok(());
        };
        let Some(p) = self.take_pending(&meta.id) else {
            return Ok(());
        };
        let resp_ts_us = meta.ts_ns / 1000;
        // GoReplay's fourth field is the round trip in ns; 0 (or absent) means it did not
        // measure one, so fall back to the two records' timestamps when they differ.
        let latency_us = match meta.latency_ns {
            Some(ns) if ns > 0 => Some(ns as u64 / 1000),
            _ if resp_ts_us > p.ts_us => Some((resp_ts_us - p.ts_us) as u64),
            _ => None,
        };
        self.write(
            meta.id,
            p.ts_us,
            p.request,
            Some(msg.into_response()),
            latency_us,
            sink,
            report,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        id: String,
        ts_us: i64,
        request: Request,
        response: Option<Response>,
        latency_us: Option<u64>,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        self.written.insert(id.clone());
        emit(
            sink,
            report,
            exchange(id, ts_us, request, response, latency_us),
        )
    }

    /// Writes, without a response, requests that waited longer than the pairing window
    /// before `now_us` (all of them when `now_us` is `None`), oldest first.
    fn flush(
        &mut self,
        now_us: Option<i64>,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        while let Some((seq, id)) = self.order.front() {
            let Some(p) = self.pending.get(id) else {
                self.order.pop_front();
                continue;
            };
            if p.seq != *seq {
                self.order.pop_front();
                continue;
            }
            let due = match now_us {
                None => true,
                Some(now) => {
                    now.saturating_sub(p.ts_us) > PAIR_WINDOW_US
                        || self.pending.len() > MAX_PENDING
                        || self.pending_bytes > self.max_pending_bytes
                }
            };
            if !due {
                break;
            }
            let Some((_, id)) = self.order.pop_front() else {
                break;
            };
            if let Some(p) = self.take_pending(&id) {
                self.write(id, p.ts_us, p.request, None, None, sink, report)?;
            }
        }
        Ok(())
    }

    /// Counts as orphans the responses that waited longer than the pairing window before
    /// `now_us` for their request (all of them when `now_us` is `None`), or that exceed
    /// the bounds, oldest first.
    fn flush_early(&mut self, now_us: Option<i64>, report: &mut ImportReport) {
        while let Some((seq, id)) = self.early_order.front() {
            let Some(e) = self.early.get(id).filter(|e| e.seq == *seq) else {
                self.early_order.pop_front();
                continue;
            };
            let due = match now_us {
                None => true,
                Some(now) => {
                    now.saturating_sub(e.meta.ts_ns / 1000) > PAIR_WINDOW_US
                        || self.early.len() > MAX_PENDING
                        || self.early_bytes > MAX_EARLY_BYTES
                }
            };
            if !due {
                break;
            }
            let Some((_, id)) = self.early_order.pop_front() else {
                break;
            };
            if let Some(e) = self.early.remove(&id) {
                self.early_bytes -= e.payload.len();
                report.skip(SKIP_ORPHAN, || format!("{}: id {id}", e.at));
            }
        }
    }

    /// Writes the requests still waiting for a response, without one, and counts the
    /// responses still waiting for a request as orphans.
    pub fn finish(mut self, sink: &mut dyn Sink, report: &mut ImportReport) -> Result<()> {
        self.flush_early(None, report);
        self.flush(None, sink, report)
    }
}

/// 1xx answers other than 101 are interim: the final answer follows them.
fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// Parses `TYPE ID TIMESTAMP [LATENCY]`.
fn parse_meta(line: &[u8]) -> std::result::Result<Meta, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let expected = || {
        format!(
            "expected a GoReplay meta line `TYPE ID TIMESTAMP_NS [LATENCY_NS]` (TYPE 1, 2 or 3), found {:?}",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        )
    };
    let text = std::str::from_utf8(line).map_err(|_| expected())?;
    let fields: Vec<&str> = text.split(' ').filter(|f| !f.is_empty()).collect();
    if !(3..=4).contains(&fields.len()) {
        return Err(expected());
    }
    let kind = match fields[0] {
        "1" => b'1',
        "2" => b'2',
        "3" => b'3',
        _ => return Err(expected()),
    };
    let ts_ns: i64 = fields[2].parse().map_err(|_| expected())?;
    let latency_ns = match fields.get(3) {
        Some(f) => Some(f.parse::<i64>().map_err(|_| expected())?),
        None => None,
    };
    Ok(Meta {
        kind,
        id: fields[1].to_string(),
        ts_ns,
        latency_ns,
    })
}

/// Parses a record's payload as exactly one message; counts a skip and returns `None`
/// when it is not one.
fn parse_one(
    role: Role,
    payload: &[u8],
    method: Option<&str>,
    at: &dyn Fn() -> String,
    report: &mut ImportReport,
    bad: &str,
    cut: &str,
) -> Option<super::http1::Message> {
    let mut r = MessageReader::new(role);
    r.push(payload);
    let msg = loop {
        match r.next(true, method) {
            // An interim answer (100 Continue) may precede the final one in the record.
            Ok(Step::Message(m)) if role == Role::Response && is_interim(m.status()) => {}
            Ok(Step::Message(m)) => break *m,
            Ok(_) => {
                report.skip(bad, || format!("{}: no HTTP message in the record", at()));
                return None;
            }
            Err(ParseError::Malformed(e)) => {
                report.skip(bad, || format!("{}: {e}", at()));
                return None;
            }
            Err(ParseError::Incomplete(e)) => {
                report.skip(cut, || format!("{}: {e}", at()));
                return None;
            }
        }
    };
    if !r.is_idle() {
        report.skip(SKIP_EXTRA, || {
            format!(
                "{}: {} bytes follow the message",
                at(),
                payload.len() as u64 - msg.end
            )
        });
        return None;
    }
    if msg.body_truncated {
        report.incomplete(super::INCOMPLETE_BODY_CAP, at);
    }
    Some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Exchange;

    fn run(input: &[u8]) -> (Vec<Exchange>, ImportReport) {
        let mut out = Vec::new();
        let mut report = ImportReport::new("records");
        let mut g = GorImporter::new();
        g.read(Path::new("t.gor"), input, &mut out, &mut report)
            .unwrap();
        g.finish(&mut out, &mut report).unwrap();
        (out, report)
    }

    const SEP: &str = "\n🐵🙈🙉\n";

    #[test]
    fn pairs_by_id_and_ignores_replayed_responses() {
        let input = format!(
            "1 aa 1000000 -1\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n{SEP}\
             1 bb 2000000\nHEAD /y HTTP/1.1\r\n\r\n{SEP}\
             2 bb 2500000 7000\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{SEP}\
             3 bb 2600000 7000\nHTTP/1.1 200 OK\r\n\r\n{SEP}\
             1 cc 2700000\nPOST /z HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz{SEP}\
             2 cc 2800000 1000\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n{SEP}\
             2 aa 1000000 3000000\nHTTP/1.1 404\nContent-Length: 2\n\nno{SEP}"
        );
        let (out, report) = run(input.as_bytes());
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].id, "bb");
        assert_eq!(out[0].interface.as_deref(), Some("HEAD /y"));
        assert_eq!(out[0].response.as_ref().unwrap().status, 200);
        assert_eq!(out[0].latency_us, Some(7));
        assert_eq!(
            (out[1].id.as_str(), out[1].response.as_ref().unwrap().status),
            ("cc", 201)
        );
        assert_eq!(out[2].id, "aa");
        assert_eq!(out[2].ts_us, 1000);
        assert_eq!(&out[2].response.as_ref().unwrap().body[..], b"no");
        assert_eq!(out[2].latency_us, Some(3000));
        assert_eq!((report.read, report.requests, report.responses), (7, 3, 3));
        assert_eq!(report.ignored["replayed responses (type 3 records)"], 1);
        assert!(report.skipped.is_empty(), "{report:?}");
    }

    #[test]
    fn waiting_requests_are_bounded_by_their_bytes() {
        let body = "b".repeat(1000);
        let mut input = String::new();
        for i in 0..10 {
            input.push_str(&format!(
                "1 r{i} 1000\nPOST /u HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{body}{SEP}"
            ));
        }
        input.push_str(&format!(
            "2 r9 2000 500\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n{SEP}"
        ));
        input.push_str(&format!(
            "2 r0 2000 500\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n{SEP}"
        ));
        let mut out = Vec::new();
        let mut report = ImportReport::new("records");
        let mut g = GorImporter {
            max_pending_bytes: 3500,
            ..GorImporter::new()
        };
        g.read(Path::new("t.gor"), input.as_bytes(), &mut out, &mut report)
            .unwrap();
        assert!(g.pending_bytes <= 3500, "{}", g.pending_bytes);
        assert_eq!(g.pending.len(), 2, "r7 and r8 still wait");
        g.finish(&mut out, &mut report).unwrap();
        // The oldest went out first, without their answers; r9 was still waiting for its own.
        let ids: Vec<&str> = out.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids[..7], ["r0", "r1", "r2", "r3", "r4", "r5", "r6"]);
        assert!(out[..7].iter().all(|e| e.response.is_none()));
        let r9 = out.iter().find(|e| e.id == "r9").unwrap();
        assert_eq!(r9.response.as_ref().unwrap().status, 200);
        assert_eq!(report.skipped[SKIP_LATE], 1, "{report:?}");
    }

    #[test]
    fn a_response_before_its_request_is_paired() {
        let input = format!(
            "2 a 2000 500\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok{SEP}\
             2 h 2100 500\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{SEP}\
             2 z 2200 500\nHTTP/1.1 200 OK\r\n\r\n{SEP}\
             1 a 1000\nGET /a HTTP/1.1\r\n\r\n{SEP}\
             1 h 1100\nHEAD /h HTTP/1.1\r\n\r\n{SEP}"
        );
        let (out, report) = run(input.as_bytes());
        assert_eq!(out.len(), 2, "{report:?}");
        let a = out.iter().find(|e| e.id == "a").unwrap();
        assert_eq!(a.ts_us, 1);
        assert_eq!(&a.response.as_ref().unwrap().body[..], b"ok");
        // Read once its request said HEAD: the length announces a body that is not there.
        let h = out.iter().find(|e| e.id == "h").unwrap();
        assert_eq!(h.response.as_ref().unwrap().status, 200);
        assert_eq!(report.skipped[SKIP_ORPHAN], 1);
        let e = &report.examples[SKIP_ORPHAN][0];
        assert!(e.starts_with("t.gor:13: id z"), "{e}");
        assert_eq!(
            report.read,
            report.written + report.with_response + report.skipped_total()
        );
    }

    #[test]
    fn a_response_waits_for_its_request_only_within_the_window() {
        let later = PAIR_WINDOW_US * 1000 + 10_000;
        let input = format!(
            "2 a 2000 500\nHTTP/1.1 200 OK\r\n\r\n{SEP}\
             1 b {later}\nGET /b HTTP/1.1\r\n\r\n{SEP}\
             1 a {later}\nGET /a HTTP/1.1\r\n\r\n{SEP}"
        );
        let (out, report) = run(input.as_bytes());
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|e| e.response.is_none()));
        assert_eq!(report.skipped[SKIP_ORPHAN], 1);
    }

    #[test]
    fn last_record_without_separator_and_lf_only() {
        let input = "1 aa 5 \nPOST /p HTTP/1.1\nContent-Length: 2\n\nhi\n";
        let (out, report) = run(input.as_bytes());
        assert_eq!(out.len(), 1, "{report:?}");
        assert_eq!(&out[0].request.body[..], b"hi");
        assert!(out[0].response.is_none());
    }

    #[test]
    fn a_bad_meta_line_is_a_skip_naming_the_line_and_the_records_around_it_are_kept() {
        let input = format!(
            "1 aa 1\nGET /a HTTP/1.1\r\n\r\n{SEP}garbage here\nGET / HTTP/1.1\r\n\r\n{SEP}\
             1 bb 2\nGET /b HTTP/1.1\r\n\r\n{SEP}"
        );
        let (out, report) = run(input.as_bytes());
        let uris: Vec<&str> = out.iter().map(|e| e.request.uri.as_str()).collect();
        assert_eq!(uris, ["/a", "/b"]);
        assert_eq!(report.read, 3);
        assert_eq!(report.skipped[SKIP_BAD_META], 1);
        let e = &report.examples[SKIP_BAD_META][0];
        assert!(
            e.starts_with("t.gor:6: expected a GoReplay meta line") && e.contains("garbage here"),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_a_single_meta_line_is_not_gor_and_an_empty_one_is_an_empty_capture() {
        let har = b"{\"log\": {\"version\": \"1.2\",\n \"entries\": []}}\n";
        let mut out = Vec::new();
        let mut report = ImportReport::new("records");
        let e = GorImporter::new()
            .read(Path::new("x.har"), &har[..], &mut out, &mut report)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("x.har:1: not a GoReplay file: no record in it starts with a meta line"),
            "{e}"
        );
        for empty in ["", "\n\n", "🐵🙈🙉\n"] {
            let (out, report) = run(empty.as_bytes());
            assert!(out.is_empty() && report.read == 0, "{empty:?}: {report:?}");
        }
        // One good record among bad ones is a gor file with skips.
        let (out, report) =
            run(format!("junk\nmore{SEP}1 aa 1\nGET / HTTP/1.1\r\n\r\n{SEP}").as_bytes());
        assert_eq!((out.len(), report.skipped[SKIP_BAD_META]), (1, 1));
    }

    #[test]
    fn unusable_records_are_counted_by_reason() {
        let input = format!(
            "1 aa 1\nGET / HTTP/1.1\r\n\r\n{SEP}1 aa 2\nGET / HTTP/1.1\r\n\r\n{SEP}\
             2 zz 3 1\nHTTP/1.1 200 OK\r\n\r\n{SEP}1 bb 4\nNOT HTTP\r\n\r\n{SEP}\
             1 cc 5\nPOST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc{SEP}1 dd"
        );
        let (out, report) = run(input.as_bytes());
        assert_eq!(out.len(), 1);
        assert_eq!(report.skipped[SKIP_DUPLICATE], 1);
        assert_eq!(report.skipped[SKIP_ORPHAN], 1);
        assert_eq!(report.skipped[SKIP_BAD_REQUEST], 1);
        assert_eq!(report.skipped[SKIP_CUT_REQUEST], 1);
        assert_eq!(report.skipped[SKIP_LAST], 1);
        assert!(
            report.examples[SKIP_BAD_REQUEST][0].starts_with("t.gor:16:"),
            "{report:?}"
        );
    }
}
