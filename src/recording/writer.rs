//! Streaming writer for recording files. A file is written as `NAME.partial`, created with
//! mode 0600 (it holds production data), and renamed to `NAME` only when finished, so a
//! reader never sees half a file. A name ending in `.zst` is zstd-compressed.
//!
//! [`RecordingWriter::flush`] hands what is buffered to the operating system (for zstd, the
//! blocks so far, the frame left open), so a writer killed later leaves a `.partial` that
//! reads up to that point: its cut last line or last block is skipped by the reader.

use super::format::{exchange_to_line, RecordingHeader};
use super::reader::is_zstd;
use super::streamed::{Streamed, STEP};
use crate::error::{Error, Result};
use crate::exchange::Exchange;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

enum Sink {
    Plain(BufWriter<Streamed>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<Streamed>>),
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

/// The refusal to replace `PATH.partial`, saying what it may be and how to keep it.
pub fn partial_exists_message(path: &Path) -> String {
    let partial = partial_path(path);
    format!(
        "{}: the file exists, probably left by a tap that was killed before it completed it; \
         it is not overwritten: to keep what it holds, rename it (e.g. `mv {} {}`, readable like \
         any recording), or move it away",
        partial.display(),
        partial.display(),
        path.display()
    )
}

/// The temporary name a file has while it is being written.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

impl RecordingWriter {
    /// Creates `PATH.partial` (replacing one that exists) and writes the header line.
    pub fn create(path: &Path, header: &RecordingHeader) -> Result<Self> {
        Self::open(path, header, false)
    }

    /// Like [`create`](Self::create), but an existing `PATH.partial` is never replaced: it
    /// may be all that is left of a recording whose writer was killed. The error names it and
    /// says how to keep it.
    pub fn create_new(path: &Path, header: &RecordingHeader) -> Result<Self> {
        Self::open(path, header, true)
    }

    fn open(path: &Path, header: &RecordingHeader, keep_existing: bool) -> Result<Self> {
        let partial = partial_path(path);
        let mut opts = OpenOptions::new();
        opts.write(true);
        if keep_existing {
            opts.create_new(true);
        } else {
            opts.create(true).truncate(true);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&partial).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Usage(partial_exists_message(path))
            } else {
                Error::io(&partial, e)
            }
        })?;
        let buffered = BufWriter::with_capacity(256 << 10, Streamed::new(file));
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
        let mut head = serde_json::to_vec(header)
            .map_err(|e| Error::internal("serializing the recording header", e))?;
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
        exchange_to_line(ex, &mut line);
        line.push(b'\n');
        let r = self.write_raw(&line);
        self.line = line;
        r?;
        self.written += 1;
        Ok(())
    }

    /// Hands everything written so far to the operating system: the buffer, and for zstd the
    /// compressed blocks so far (the frame stays open, so compression goes on across the
    /// flush at the cost of a few bytes). With `sync`, waits for the data to reach the disk
    /// too. After this, a killed process leaves a file readable up to here.
    pub fn flush(&mut self, sync: bool) -> Result<()> {
        let file = match self.sink.as_mut() {
            Some(Sink::Plain(w)) => {
                w.flush().map_err(|e| Error::io(&self.partial, e))?;
                w.get_ref()
            }
            Some(Sink::Zstd(enc)) => {
                enc.flush().map_err(|e| Error::io(&self.partial, e))?;
                enc.get_ref().get_ref()
            }
            None => return Ok(()),
        };
        if sync {
            file.file()
                .sync_data()
                .map_err(|e| Error::io(&self.partial, e))?;
        }
        Ok(())
    }

    /// From now on, the file goes to the disk every few MiB as it is written, and what is on
    /// the disk leaves the page cache ([`super::streamed`]): for a writer that runs for days,
    /// such as the tap's recorder.
    pub fn stream_to_disk(&mut self) {
        match self.sink.as_mut() {
            Some(Sink::Plain(w)) => w.get_mut().stream(STEP),
            Some(Sink::Zstd(enc)) => enc.get_mut().get_mut().stream(STEP),
            None => {}
        }
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
                .map_err(|e| Error::io(&partial, e.into_error()))?
                .finish()
                .map_err(|e| Error::io(&partial, e))?,
            Some(Sink::Zstd(enc)) => {
                let w = enc.finish().map_err(|e| Error::io(&partial, e))?;
                w.into_inner()
                    .map_err(|e| Error::io(&partial, e.into_error()))?
                    .finish()
                    .map_err(|e| Error::io(&partial, e))?
            }
            None => return Ok(self.path.clone()),
        };
        file.sync_all().map_err(|e| Error::io(&partial, e))?;
        drop(file);
        std::fs::rename(&partial, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Request;
    use crate::recording::{ReadOptions, RecordingReader};

    fn ex(i: usize) -> Exchange {
        Exchange {
            id: format!("e{i}"),
            ts_us: i as i64,
            interface: None,
            tenant: None,
            request: Request {
                method: "GET".into(),
                uri: format!("/x/{i}/{}", "y".repeat(i * 37 % 200)),
                version: "HTTP/1.1".into(),
                ..Default::default()
            },
            response: None,
            latency_us: None,
        }
    }

    fn ids(path: &Path) -> (Vec<String>, Vec<String>) {
        let mut r = RecordingReader::open(&[path.to_path_buf()], ReadOptions::default()).unwrap();
        let mut ids = Vec::new();
        while let Some(e) = r.next_exchange().unwrap() {
            ids.push(e.id);
        }
        (ids, r.take_warnings())
    }

    /// What a writer flushed reads back whole from a file cut anywhere after it (a writer
    /// killed mid-way), plain or zstd: the cut line or block is skipped with a warning.
    #[test]
    fn a_file_cut_after_a_flush_reads_everything_flushed() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["c.jsonl", "c.jsonl.zst"] {
            let path = dir.path().join(name);
            let mut w = RecordingWriter::create_new(&path, &RecordingHeader::new("t")).unwrap();
            for i in 0..30 {
                w.write(&ex(i)).unwrap();
            }
            w.flush(true).unwrap();
            let partial = partial_path(&path);
            let flushed = std::fs::read(&partial).unwrap();
            for i in 30..200 {
                w.write(&ex(i)).unwrap();
            }
            w.flush(false).unwrap();
            let later = std::fs::read(&partial).unwrap();
            assert!(later.len() > flushed.len() + 2);
            let cut = dir.path().join(format!("cut-{name}"));
            for end in [
                flushed.len(),
                flushed.len() + 1,
                (flushed.len() + later.len()) / 2,
            ] {
                std::fs::write(&cut, &later[..end]).unwrap();
                let (got, warnings) = ids(&cut);
                assert!(got.len() >= 30, "{name} cut at {end}: {}", got.len());
                let want: Vec<String> = (0..got.len()).map(|i| format!("e{i}")).collect();
                assert_eq!(got, want, "{name} cut at {end}");
                assert!(
                    end == flushed.len() || !warnings.is_empty(),
                    "{name} cut at {end}"
                );
            }
            drop(w);
        }
    }

    /// A recording whose writeback failed is not taken for complete: it stays `.partial`
    /// and its finish says why, as when the final sync itself fails.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_streamed_recording_whose_writeback_failed_stays_partial() {
        use crate::recording::streamed::tests::FAIL_WRITEBACK;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut w = RecordingWriter::create_new(&path, &RecordingHeader::new("t")).unwrap();
        w.stream_to_disk();
        FAIL_WRITEBACK.with(|f| f.set(Some(libc::EIO)));
        let mut i = 0;
        // Until a full step has gone to the kernel and its writeback is asked for.
        let failed = loop {
            if let Err(e) = w.write(&ex(i)) {
                break e;
            }
            i += 1;
            assert!(i < 200_000, "no writeback was asked for");
        };
        FAIL_WRITEBACK.with(|f| f.set(None));
        assert!(failed.to_string().contains("r.jsonl.partial"), "{failed}");
        let e = w.finish().unwrap_err();
        assert!(e.to_string().contains("r.jsonl.partial"), "{e}");
        assert!(!path.exists() && partial_path(&path).exists());
    }

    /// An existing `.partial` is never replaced by `create_new`; the refusal names it and
    /// says how to keep it.
    #[test]
    fn create_new_keeps_an_existing_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.jsonl");
        std::fs::write(partial_path(&path), b"left by a killed tap").unwrap();
        let e = RecordingWriter::create_new(&path, &RecordingHeader::new("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("k.jsonl.partial") && e.contains("rename"), "{e}");
        assert_eq!(
            std::fs::read(partial_path(&path)).unwrap(),
            b"left by a killed tap"
        );
    }
}
