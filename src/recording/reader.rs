//! Streaming reader for recording files: one file at a time ([`FileReader`]) or several
//! merged in timestamp order ([`RecordingReader`]). Memory does not grow with file size: each
//! file holds one line and one look-ahead exchange.
//!
//! A last line cut off before its JSON ends, without its newline, is what a tap killed
//! mid-write leaves: it is skipped with a warning. Any other bad line stops the read with an
//! error that names the file, the line and what was wrong, unless bad lines are to be
//! skipped; every good exchange before it is handed out first. zstd is recognised by its
//! magic bytes, whatever the file is called.

use super::format::{parse_exchange, RecordingHeader, FORMAT_VERSION};
use super::zst;
use crate::error::{Error, Result};
use crate::exchange::Exchange;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

/// How to treat bad input.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// Skip (with a warning) lines that do not parse instead of failing.
    pub skip_bad_lines: bool,
}

/// Reads one recording file line by line.
pub struct FileReader {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    header: RecordingHeader,
    line_no: u64,
    buf: Vec<u8>,
    opts: ReadOptions,
    warnings: Vec<String>,
    done: bool,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("path", &self.path)
            .field("line_no", &self.line_no)
            .finish()
    }
}

/// Lines longer than this are refused rather than read into memory without bound.
pub const MAX_LINE_BYTES: usize = 256 << 20;

impl FileReader {
    /// Opens a file, plain or zstd-compressed (recognised by its content, not its name).
    pub fn open(path: &Path, opts: ReadOptions) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Self::from_file_bytes(path.to_path_buf(), file, opts)
    }

    /// Reads a recording from the bytes of a file, plain or zstd-compressed (recognised by
    /// zstd's magic bytes); `name` is used in messages.
    pub fn from_file_bytes(
        name: PathBuf,
        raw: impl Read + Send + 'static,
        opts: ReadOptions,
    ) -> Result<Self> {
        let mut raw = BufReader::with_capacity(256 << 10, raw);
        let start = raw.fill_buf().map_err(|e| Error::io(&name, e))?;
        let input: Box<dyn BufRead + Send> = if zst::looks_like_zstd(start) {
            let dec = zst::BlockReader::new(raw).map_err(|e| Error::io(&name, e))?;
            Box::new(BufReader::with_capacity(256 << 10, dec))
        } else {
            Box::new(raw)
        };
        Self::from_reader(name, input, opts)
    }

    /// Reads a recording from any buffered input; `name` is used in messages.
    pub fn from_reader(
        name: PathBuf,
        input: Box<dyn BufRead + Send>,
        opts: ReadOptions,
    ) -> Result<Self> {
        let mut r = FileReader {
            path: name,
            input,
            header: RecordingHeader::new(""),
            line_no: 0,
            buf: Vec::with_capacity(4096),
            opts,
            warnings: Vec::new(),
            done: false,
        };
        r.header = r.read_header()?;
        Ok(r)
    }

    /// The header line of the file.
    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// The file's name as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Warnings raised so far (skipped lines), each naming file and line.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn input_error(&self, line: u64, message: impl Into<String>) -> Error {
        Error::Input {
            file: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    /// Reads the next raw line into `self.buf`. Returns `Ok(false)` at end of input and
    /// whether the line ended with a newline in `complete`.
    fn read_line(&mut self, complete: &mut bool) -> Result<bool> {
        self.buf.clear();
        let mut limited = (&mut self.input).take(MAX_LINE_BYTES as u64 + 1);
        match limited.read_until(b'\n', &mut self.buf) {
            Ok(0) => Ok(false),
            Ok(_) => {
                self.line_no += 1;
                if self.buf.len() > MAX_LINE_BYTES {
                    return Err(self.input_error(
                        self.line_no,
                        format!("line longer than {MAX_LINE_BYTES} bytes"),
                    ));
                }
                *complete = self.buf.last() == Some(&b'\n');
                while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                    self.buf.pop();
                }
                Ok(true)
            }
            // A compressed stream cut short by a killed writer ends like a truncated line.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                self.line_no += 1;
                self.warnings.push(format!(
                    "{}:{}: compressed stream ends early (writer stopped mid-write); the rest is skipped",
                    self.path.display(),
                    self.line_no
                ));
                Ok(false)
            }
            // A corrupt compressed stream cannot be read past; the lines before it were
            // handed out already.
            Err(e) if e.kind() == ErrorKind::InvalidData => Err(self.input_error(
                self.line_no + 1,
                format!(
                    "reading stopped at this line: {e}; the {} before it {} read",
                    crate::report::words::count_of(self.line_no, "line", "lines"),
                    if self.line_no == 1 { "was" } else { "were" }
                ),
            )),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    fn read_header(&mut self) -> Result<RecordingHeader> {
        let mut complete = false;
        if !self.read_line(&mut complete)? {
            return Err(self.input_error(
                1,
                "empty file: expected the header line {\"shadowdiff_recording\":1,...}",
            ));
        }
        let header: RecordingHeader = serde_json::from_slice(&self.buf).map_err(|e| {
            let hint = if std::str::from_utf8(&self.buf).is_ok_and(|t| !t.contains('\0')) {
                "other tools' captures can be converted with `shadowdiff import`".to_string()
            } else {
                let start: Vec<String> =
                    self.buf.iter().take(4).map(|b| format!("{b:02x}")).collect();
                format!(
                    "the file does not look like text (it starts with bytes {}): recordings are \
                     JSON Lines, plain or zstd-compressed",
                    start.join(" ")
                )
            };
            self.input_error(
                1,
                format!(
                    "expected the header line {{\"shadowdiff_recording\":1,\"created\":...,\"source\":...}} ({e}); {hint}"
                ),
            )
        })?;
        if header.shadowdiff_recording != FORMAT_VERSION {
            return Err(self.input_error(
                1,
                format!(
                    "recording format version {} is not supported (this shadowdiff reads version {FORMAT_VERSION})",
                    header.shadowdiff_recording
                ),
            ));
        }
        Ok(header)
    }

    /// The next exchange, or `None` at the end of the file. After an error the file has
    /// nothing more to give.
    pub fn next_exchange(&mut self) -> Result<Option<Exchange>> {
        let next = self.next_inner();
        if next.is_err() {
            self.done = true;
        }
        next
    }

    fn next_inner(&mut self) -> Result<Option<Exchange>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let mut complete = false;
            if !self.read_line(&mut complete)? {
                self.done = true;
                return Ok(None);
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_exchange(&self.buf) {
                Ok(ex) => return Ok(Some(ex)),
                // Only a line whose JSON is unfinished was cut by the writer stopping; a whole
                // line that is wrong is an error wherever it is.
                Err(e) if !complete && e.cut => {
                    // Nothing can follow a line without a newline: this is the last line.
                    self.warnings.push(format!(
                        "{}:{}: last line is incomplete ({} bytes, no newline; the writer was stopped mid-write) and was skipped: {e}",
                        self.path.display(),
                        self.line_no,
                        self.buf.len()
                    ));
                    self.done = true;
                    return Ok(None);
                }
                Err(e) if self.opts.skip_bad_lines => {
                    self.warnings.push(format!(
                        "{}:{}: skipped: {e}",
                        self.path.display(),
                        self.line_no
                    ));
                }
                Err(e) => {
                    return Err(self.input_error(
                        self.line_no,
                        format!("{e} (pass --skip-bad-lines to skip such lines)"),
                    ))
                }
            }
        }
    }
}

/// True when `path` names a recording to be written zstd-compressed.
pub fn is_zstd(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

/// Several recording files read as one stream in timestamp order (a k-way merge: rotated
/// files follow each other, files from several taps interleave).
#[derive(Debug)]
pub struct RecordingReader {
    files: Vec<FileReader>,
    heap: BinaryHeap<Reverse<(i64, usize, u64)>>,
    heads: Vec<Option<Exchange>>,
    /// Errors met while looking ahead, each given out in place of the exchange that could
    /// not be read, after the exchanges already read.
    failed: VecDeque<Error>,
    seq: u64,
    warnings: Vec<String>,
    read: u64,
}

impl RecordingReader {
    /// Opens every file (all headers are checked before anything is read).
    pub fn open(paths: &[PathBuf], opts: ReadOptions) -> Result<Self> {
        let files = paths
            .iter()
            .map(|p| FileReader::open(p, opts))
            .collect::<Result<Vec<_>>>()?;
        Self::from_files(files)
    }

    /// Merges already opened files.
    pub fn from_files(files: Vec<FileReader>) -> Result<Self> {
        let mut r = RecordingReader {
            heads: files.iter().map(|_| None).collect(),
            files,
            heap: BinaryHeap::new(),
            failed: VecDeque::new(),
            seq: 0,
            warnings: Vec::new(),
            read: 0,
        };
        for i in 0..r.files.len() {
            r.refill(i);
        }
        Ok(r)
    }

    /// Reads file `i`'s next exchange into its slot. An error is kept, not returned: the
    /// exchange the caller is about to get was read before it and must reach them first.
    fn refill(&mut self, i: usize) {
        let next = self.files[i].next_exchange();
        self.warnings.extend(self.files[i].take_warnings());
        match next {
            Ok(Some(ex)) => {
                self.seq += 1;
                self.heap.push(Reverse((ex.ts_us, i, self.seq)));
                self.heads[i] = Some(ex);
            }
            Ok(None) => {}
            Err(e) => self.failed.push_back(e),
        }
    }

    /// The next exchange over all files, earliest timestamp first (ties keep file order).
    /// A file's error comes right after the exchanges read before it; the other files can
    /// still be read after that.
    pub fn next_exchange(&mut self) -> Result<Option<Exchange>> {
        if let Some(e) = self.failed.pop_front() {
            return Err(e);
        }
        let Some(Reverse((_, i, _))) = self.heap.pop() else {
            return Ok(None);
        };
        let ex = self.heads[i].take();
        self.refill(i);
        if ex.is_some() {
            self.read += 1;
        }
        Ok(ex)
    }

    /// Exchanges returned so far.
    pub fn exchanges_read(&self) -> u64 {
        self.read
    }

    /// Warnings raised so far by any file.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

impl Iterator for RecordingReader {
    type Item = Result<Exchange>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_exchange().transpose()
    }
}
