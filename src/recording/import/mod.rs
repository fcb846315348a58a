//! `shadowdiff import`: turns captures made by other tools (GoReplay `.gor` files, HAR
//! files, pcap/pcapng captures) into a recording (format v1), and accounts for every input
//! unit it read: written as an exchange (whole, or incomplete with a reason), ignored (not
//! HTTP traffic by nature), or skipped with a reason. [`gor`], [`har`] and [`pcap`] each turn one format into [`Exchange`]s
//! through a [`Sink`]; [`http1`] is the HTTP/1.x framing that gor and pcap share; [`detect`]
//! tells the format when `--from` is not given; this file
//! holds the [`ImportReport`], the output and `--strict`.

pub mod detect;
pub mod gor;
pub mod har;
pub mod http1;
mod json_cut;
pub mod pcap;

use crate::cli::{ImportArgs, ImportFormat};
use crate::error::{Error, Result};
use crate::exchange::{Exchange, Request, Response};
use crate::interface::{interface_of, InterfaceKey};
use crate::recording::format::exchange_to_line;
use crate::recording::writer::partial_path;
use crate::recording::{RecordingHeader, RecordingWriter};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Largest body kept for one message; longer bodies keep this prefix and are marked
/// truncated, so a hostile or corrupt input cannot make the importer allocate without bound.
pub const MAX_BODY: usize = 64 << 20;

/// Incomplete reason for a body cut at [`MAX_BODY`] (the exchange is written, marked
/// truncated).
pub const INCOMPLETE_BODY_CAP: &str = "body longer than 64 MiB (written with a truncated prefix)";

/// Exit code of an import that failed `--strict` (the same as bad input).
const EXIT_STRICT: u8 = 2;

/// How many example locations are kept per skip reason for the summary.
const EXAMPLES_PER_REASON: usize = 3;

/// Where imported exchanges go: the recording writer, or a `Vec` in tests.
pub trait Sink {
    /// Takes one finished exchange.
    fn put(&mut self, ex: Exchange) -> Result<()>;
}

impl Sink for Vec<Exchange> {
    fn put(&mut self, ex: Exchange) -> Result<()> {
        self.push(ex);
        Ok(())
    }
}

/// What one import read, wrote, ignored and skipped. Every unit read ends in exactly one of
/// these places (written, ignored, skipped), so the summary can be checked against the
/// input; `incomplete` says which of the written exchanges lack a part, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Input files read.
    pub files: u64,
    /// Name of the unit counted by `read` (`records`, `entries`, `packets`).
    pub unit: &'static str,
    /// Units read (gor records, HAR entries, pcap packets).
    pub read: u64,
    /// HTTP requests found in the input.
    pub requests: u64,
    /// HTTP responses found in the input.
    pub responses: u64,
    /// Exchanges written.
    pub written: u64,
    /// Exchanges written with a response.
    pub with_response: u64,
    /// Input that is not an HTTP exchange by nature (gor replayed responses, non-TCP
    /// packets), by reason. `--strict` does not fail on these.
    pub ignored: BTreeMap<String, u64>,
    /// Input that could not be used, by reason. `--strict` fails on any of these.
    pub skipped: BTreeMap<String, u64>,
    /// Written exchanges that lack a part of what was captured (a body the capture did
    /// not keep, a body cut at [`MAX_BODY`]), by reason. They are counted in `written`,
    /// never in `skipped`; `--strict` fails on these too, since something was lost.
    pub incomplete: BTreeMap<String, u64>,
    /// Things handled that the user may want to know (retransmissions dropped, requests
    /// with no response in the capture), by kind.
    pub notes: BTreeMap<String, u64>,
    /// A few locations per skip or incomplete reason (`file:line: detail`), for the summary.
    pub examples: BTreeMap<String, Vec<String>>,
}

impl ImportReport {
    /// An empty report counting `unit`.
    pub fn new(unit: &'static str) -> Self {
        ImportReport {
            unit,
            ..Default::default()
        }
    }

    /// Counts one skip for `reason`, keeping `location` as an example.
    pub fn skip(&mut self, reason: &str, location: impl FnOnce() -> String) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
        let ex = self.examples.entry(reason.to_string()).or_default();
        if ex.len() < EXAMPLES_PER_REASON {
            ex.push(location());
        }
    }

    /// Counts one written exchange that lacks a part, for `reason`, keeping `location` as
    /// an example.
    pub fn incomplete(&mut self, reason: &str, location: impl FnOnce() -> String) {
        *self.incomplete.entry(reason.to_string()).or_default() += 1;
        let ex = self.examples.entry(reason.to_string()).or_default();
        if ex.len() < EXAMPLES_PER_REASON {
            ex.push(location());
        }
    }

    /// Counts one ignored unit for `reason`.
    pub fn ignore(&mut self, reason: &str) {
        *self.ignored.entry(reason.to_string()).or_default() += 1;
    }

    /// Adds one to the note `kind`.
    pub fn note(&mut self, kind: &str) {
        *self.notes.entry(kind.to_string()).or_default() += 1;
    }

    /// Total skips over all reasons.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Total incomplete marks over all reasons.
    pub fn incomplete_total(&self) -> u64 {
        self.incomplete.values().sum()
    }

    /// Records that `ex` was written.
    fn wrote(&mut self, ex: &Exchange) {
        self.written += 1;
        if ex.response.is_some() {
            self.with_response += 1;
        }
    }

    /// The human summary: what was read, written, ignored and skipped by reason. With
    /// `dropped` (why), the recording was not kept and the summary says so instead of
    /// claiming the exchanges were written.
    pub fn summary(&self, format: &str, out: &str, dropped: Option<&str>) -> String {
        let mut s = String::new();
        let plural = |n: u64, one: &str, many: &str| {
            if n == 1 {
                format!("{n} {one}")
            } else {
                format!("{n} {many}")
            }
        };
        let _ = writeln!(
            s,
            "import --from {format}: {}",
            plural(self.files, "file", "files")
        );
        let unit = match (self.read, self.unit) {
            (1, "entries") => "entry",
            (1, u) => u.strip_suffix('s').unwrap_or(u),
            (_, u) => u,
        };
        let _ = writeln!(
            s,
            "  read     {} {unit}: {}, {}",
            self.read,
            plural(self.requests, "request", "requests"),
            plural(self.responses, "response", "responses")
        );
        match dropped {
            None => {
                let _ = writeln!(
                    s,
                    "  wrote    {} to {out} ({} with a response, {} without)",
                    plural(self.written, "exchange", "exchanges"),
                    self.with_response,
                    self.written - self.with_response
                );
            }
            Some(why) => {
                let _ = writeln!(
                    s,
                    "  wrote    nothing to {out}: {why}; {} {} ready",
                    plural(self.written, "exchange", "exchanges"),
                    if self.written == 1 { "was" } else { "were" },
                );
            }
        }
        let section = |s: &mut String, title: &str, map: &BTreeMap<String, u64>, ex: bool| {
            let total: u64 = map.values().sum();
            if total == 0 {
                let _ = writeln!(s, "  {title:<8} none");
                return;
            }
            let _ = writeln!(s, "  {title:<8} {total}");
            for (reason, n) in map {
                let _ = writeln!(s, "    {n:>7}  {reason}");
                if ex {
                    for e in self.examples.get(reason).into_iter().flatten() {
                        let _ = writeln!(s, "             e.g. {e}");
                    }
                }
            }
        };
        if !self.incomplete.is_empty() {
            section(&mut s, "incomplete", &self.incomplete, true);
        }
        section(&mut s, "ignored", &self.ignored, false);
        section(&mut s, "skipped", &self.skipped, true);
        if !self.notes.is_empty() {
            let _ = writeln!(s, "  notes");
            for (kind, n) in &self.notes {
                let _ = writeln!(s, "    {n:>7}  {kind}");
            }
        }
        s
    }
}

/// Builds an exchange with its interface key computed as replay computes it.
pub fn exchange(
    id: String,
    ts_us: i64,
    request: Request,
    response: Option<Response>,
    latency_us: Option<u64>,
) -> Exchange {
    let interface = Some(interface_of(&request, &InterfaceKey::Default));
    Exchange {
        id,
        ts_us,
        interface,
        tenant: None,
        request,
        response,
        latency_us,
    }
}

/// Hands a finished exchange to the sink and counts it as written.
pub fn emit(sink: &mut dyn Sink, report: &mut ImportReport, ex: Exchange) -> Result<()> {
    report.wrote(&ex);
    sink.put(ex)
}

/// Skip reason for the part of a file past a read error or a corrupt or cut compressed
/// stream; that rest counts as one unit read.
const SKIP_UNREADABLE: &str =
    "files unreadable past a point (compressed stream cut or corrupt, or a read error): what came before is kept, the rest is lost";

/// Skip reason for the part of a file past damage its format cannot resynchronise after (a
/// HAR cut or broken inside its entries, a pcap record length no capture writes); that
/// rest counts as one unit read.
pub const SKIP_REST_UNUSABLE: &str =
    "files damaged past a point (cut, or not the format from there on): what came before is kept, the rest is lost";

/// Where and why reading an input stopped early.
#[derive(Clone, Debug, Default)]
pub struct ReadStop(Rc<RefCell<Option<(String, String)>>>);

impl ReadStop {
    /// Where reading stopped (`byte N ...`) and why, once it has.
    pub fn take(&self) -> Option<(String, String)> {
        self.0.borrow_mut().take()
    }
}

/// A buffered reader that counts the bytes its consumer took, so a decompression error
/// can say how far into the compressed file it is.
struct Counted<R> {
    inner: R,
    consumed: Rc<Cell<u64>>,
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let avail = self.inner.fill_buf()?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.consumed.set(self.consumed.get() + n as u64);
        self.inner.consume(n);
    }
}

/// An input file as the importers read it: gzip undone, and a read error (a cut or
/// corrupt compressed stream, a failing disk) turned into the end of the input, so what
/// came before it is still imported; the [`ReadStop`] then says where and why.
pub struct Input {
    inner: Box<dyn Read>,
    /// Bytes handed to the importer (decompressed).
    delivered: u64,
    /// Compressed bytes the decoder took, when the file is gzipped.
    compressed: Option<Rc<Cell<u64>>>,
    stop: ReadStop,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.0.borrow().is_some() {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.delivered += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let (at, what) = match &self.compressed {
                    Some(c) => (
                        format!(
                            "byte {} of the gzip file (byte {} of its content)",
                            c.get(),
                            self.delivered
                        ),
                        format!(
                            "{e}; expected a complete gzip stream (the file is cut or corrupt)"
                        ),
                    ),
                    None => (
                        format!("byte {}", self.delivered),
                        format!("read error: {e}"),
                    ),
                };
                *self.stop.0.borrow_mut() = Some((at, format!("{what}; reading stopped here")));
                Ok(0)
            }
        }
    }
}

/// Opens an input file, undoing gzip when the file starts with the gzip magic (whatever
/// its name), so `capture.gor.gz` and a gzipped pcap need no flag.
pub fn open_input(path: &Path) -> Result<(Input, ReadStop)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::with_capacity(256 << 10, file);
    let head = r.fill_buf().map_err(|e| Error::io(path, e))?;
    let stop = ReadStop::default();
    let input = if head.starts_with(&[0x1f, 0x8b]) {
        let consumed = Rc::new(Cell::new(0));
        let counted = Counted {
            inner: r,
            consumed: consumed.clone(),
        };
        Input {
            inner: Box::new(flate2::bufread::MultiGzDecoder::new(counted)),
            delivered: 0,
            compressed: Some(consumed),
            stop: stop.clone(),
        }
    } else {
        Input {
            inner: Box::new(r),
            delivered: 0,
            compressed: None,
            stop: stop.clone(),
        }
    };
    Ok((input, stop))
}

/// Reads one input file with `read`, then accounts for a read that stopped early: as a
/// skip when the importer made what it could of the bytes before, or as the error when the
/// importer found nothing it could read (the stop is then the better explanation).
fn read_file(
    path: &Path,
    report: &mut ImportReport,
    read: impl FnOnce(Input, &mut ImportReport) -> Result<()>,
) -> Result<()> {
    report.files += 1;
    let (input, stop) = open_input(path)?;
    let result = read(input, report);
    match (stop.take(), result) {
        (Some((at, message)), Err(Error::Input { .. } | Error::InputAt { .. })) => {
            Err(Error::InputAt {
                file: path.to_path_buf(),
                at,
                message,
            })
        }
        (Some((at, message)), Ok(())) => {
            report.read += 1;
            report.skip(SKIP_UNREADABLE, || {
                format!("{}: {at}: {message}", path.display())
            });
            Ok(())
        }
        (_, result) => result,
    }
}

/// Imports `inputs` of `format` into `sink`, filling `report`. Errors name the file and
/// where in it; data that cannot be used is counted in the report instead, and damage
/// part-way through a file ends the reading of that file with a counted skip, keeping
/// what came before it.
pub fn import(
    format: ImportFormat,
    inputs: &[PathBuf],
    sink: &mut dyn Sink,
    report: &mut ImportReport,
) -> Result<()> {
    match format {
        ImportFormat::Gor => {
            report.unit = "records";
            let mut g = gor::GorImporter::new();
            for path in inputs {
                read_file(path, report, |r, report| g.read(path, r, sink, report))?;
            }
            g.finish(sink, report)
        }
        ImportFormat::Har => {
            report.unit = "entries";
            let mut h = har::HarImporter::new();
            for path in inputs {
                read_file(path, report, |r, report| h.read(path, r, sink, report))?;
            }
            Ok(())
        }
        ImportFormat::Pcap => {
            report.unit = "packets";
            let mut p = pcap::PcapImporter::new();
            for path in inputs {
                read_file(path, report, |r, report| p.read(path, r, sink, report))?;
            }
            p.finish(sink, report)
        }
    }
}

/// Where the recording goes: a file written safely, or standard output for `--out -`.
enum Output {
    // Boxed: the writer is several times the size of the standard output's buffer.
    File(Box<RecordingWriter>),
    Stdout(std::io::BufWriter<std::io::Stdout>, Vec<u8>),
}

impl Sink for Output {
    fn put(&mut self, ex: Exchange) -> Result<()> {
        match self {
            Output::File(w) => w.write(&ex),
            Output::Stdout(w, line) => {
                line.clear();
                exchange_to_line(&ex, line);
                line.push(b'\n');
                w.write_all(line).map_err(|e| Error::io("-", e))
            }
        }
    }
}

/// Runs `shadowdiff import`: imports, prints the summary on standard error, and returns
/// the exit code (0, or 2 when `--strict` and anything was skipped or written incomplete;
/// errors are 2 too).
/// On an error or a strict failure no recording file is left behind.
pub fn run(args: &ImportArgs, quiet: bool) -> Result<u8> {
    let from = match args.from {
        Some(f) => f,
        None => detect::infer(&args.inputs)?,
    };
    let format_name = match from {
        ImportFormat::Gor => "gor",
        ImportFormat::Har => "har",
        ImportFormat::Pcap => "pcap",
    };
    let to_stdout = args.out == Path::new("-");
    let mut out = if to_stdout {
        let mut w = std::io::BufWriter::new(std::io::stdout());
        let head = serde_json::to_vec(&RecordingHeader::new(&format!("import:{format_name}")))
            .map_err(|e| Error::internal("serializing the recording header", e))?;
        w.write_all(&head)
            .and_then(|_| w.write_all(b"\n"))
            .map_err(|e| Error::io("-", e))?;
        Output::Stdout(w, Vec::new())
    } else {
        Output::File(Box::new(RecordingWriter::create(
            &args.out,
            &RecordingHeader::new(&format!("import:{format_name}")),
        )?))
    };
    let mut report = ImportReport::new("");
    let result = import(from, &args.inputs, &mut out, &mut report);
    let strict_failed =
        args.strict && (report.skipped_total() > 0 || report.incomplete_total() > 0);
    let finished = match (result, strict_failed) {
        (Ok(()), false) => finish_output(out, &args.out),
        (Ok(()), true) => {
            discard_output(out, &args.out);
            Ok(())
        }
        (Err(e), _) => {
            discard_output(out, &args.out);
            Err(e)
        }
    };
    let shown = if to_stdout {
        "standard output".to_string()
    } else {
        args.out.display().to_string()
    };
    // Lines already sent to standard output cannot be taken back; a file is only kept
    // when the import finished and passed --strict.
    let dropped = match (&finished, strict_failed) {
        _ if to_stdout => None,
        (Err(_), _) => Some("the import stopped at the error below"),
        (Ok(()), true) => Some("--strict failed"),
        (Ok(()), false) => None,
    };
    if !quiet || strict_failed {
        eprint!("{}", report.summary(format_name, &shown, dropped));
    }
    finished?;
    if strict_failed {
        let kept = if to_stdout {
            "the recording on standard output is incomplete"
        } else {
            "no recording written"
        };
        eprintln!(
            "shadowdiff: error: --strict: {} skipped, {} written incomplete (reasons above); {kept}",
            report.skipped_total(),
            report.incomplete_total()
        );
        return Ok(EXIT_STRICT);
    }
    Ok(crate::EXIT_PASS)
}

fn finish_output(out: Output, path: &Path) -> Result<()> {
    match out {
        Output::File(w) => w.finish().map(|_| ()),
        Output::Stdout(mut w, _) => w.flush().map_err(|e| Error::io(path, e)),
    }
}

/// Drops a half-written recording so nothing downstream mistakes it for a whole import.
fn discard_output(out: Output, path: &Path) {
    if let Output::File(w) = out {
        drop(w);
        let _ = std::fs::remove_file(partial_path(path));
    }
}
