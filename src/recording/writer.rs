//! Streaming writer for recording files. A file is written as `NAME.partial`, created with
//! mode 0600 (it holds production data), and renamed to `NAME` only when finished, so a
//! reader never sees half a file. A name ending in `.zst` is zstd-compressed.

use super::format::{exchange_to_line, RecordingHeader};
use super::reader::is_zstd;
use crate::error::{Error, Result};
use crate::exchange::Exchange;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
        }
    }
}

/// Writes one recording file.
pub struct RecordingWriter {
    path: PathBuf,
    partial: PathBuf,
    sink: Option<Sink>,
    line: Vec<u8>,
    written: u64,
    bytes: u64,
}

impl std::fmt::Debug for RecordingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingWriter")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish()
    }
}

/// The temporary name a file has while it is being written.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

impl RecordingWriter {
    /// Creates `PATH.partial` and writes the header line.
    pub fn create(path: &Path, header: &RecordingHeader) -> Result<Self> {
        let partial = partial_path(path);
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&partial).map_err(|e| Error::io(&partial, e))?;
        let buffered = BufWriter::with_capacity(256 << 10, file);
        let sink = if is_zstd(path) {
            let enc = zstd::stream::write::Encoder::new(buffered, 3)
                .map_err(|e| Error::io(&partial, e))?;
            Sink::Zstd(enc)
        } else {
            Sink::Plain(buffered)
        };
        let mut w = RecordingWriter {
            path: path.to_path_buf(),
            partial,
            sink: Some(sink),
            line: Vec::with_capacity(4096),
            written: 0,
            bytes: 0,
        };
        let mut head = serde_json::to_vec(header).map_err(|e| Error::Runtime {
            side: crate::exchange::Side::Input,
            message: format!("serializing the recording header: {e}"),
        })?;
        head.push(b'\n');
        w.write_raw(&head)?;
        Ok(w)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let sink = self.sink.as_mut().ok_or_else(|| {
            Error::io(
                &self.partial,
                std::io::Error::other("writer already finished"),
            )
        })?;
        sink.writer()
            .write_all(bytes)
            .map_err(|e| Error::io(&self.partial, e))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Appends one exchange line.
    pub fn write(&mut self, ex: &Exchange) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        exchange_to_line(ex, &mut line).map_err(|e| Error::io(&self.partial, e.into()))?;
        line.push(b'\n');
        let r = self.write_raw(&line);
        self.line = line;
        r?;
        self.written += 1;
        Ok(())
    }

    /// Exchanges written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Uncompressed bytes written so far (header included); used for size-based rotation.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The final name of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, closes and renames `NAME.partial` to `NAME`.
    pub fn finish(mut self) -> Result<PathBuf> {
        let partial = self.partial.clone();
        let file = match self.sink.take() {
            Some(Sink::Plain(w)) => w
                .into_inner()
                .map_err(|e| Error::io(&partial, e.into_error()))?,
            Some(Sink::Zstd(enc)) => {
                let w = enc.finish().map_err(|e| Error::io(&partial, e))?;
                w.into_inner()
                    .map_err(|e| Error::io(&partial, e.into_error()))?
            }
            None => return Ok(self.path.clone()),
        };
        file.sync_all().map_err(|e| Error::io(&partial, e))?;
        drop(file);
        std::fs::rename(&partial, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path.clone())
    }
}
