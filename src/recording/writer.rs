//! Streaming writer for recording files. A file is written as `NAME.partial`, created with
//! mode 0600 (it holds production data), and renamed to `NAME` only when finished, so a
//! reader never sees half a file. A name ending in `.zst` is zstd-compressed.
//!
//! [`RecordingWriter::flush`] hands what is buffered to the operating system (for zstd, the
//! blocks so far, the frame left open), so a writer killed later leaves a `.partial` that
//! reads up to that point: its cut last line or last block is skipped by the reader. A write
//! or flush that fails (a full disk) leaves the file's end unknown: [`RecordingWriter::rollback`]
//! cuts it back to the last flush and goes on from there, so a writer that counts what its
//! flushes handed over knows exactly which exchanges the file holds.

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
    Zstd(ZstdWriter),
}

/// A zstd encoder over the buffered file, the zio writer itself: unlike zstd's `Encoder`, it
/// gives the file back without ending the frame, for [`RecordingWriter::rollback`].
type ZstdWriter =
    zstd::stream::zio::Writer<BufWriter<Streamed>, zstd::stream::raw::Encoder<'static>>;

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
        }
    }

    fn file(&self) -> &Streamed {
        match self {
            Sink::Plain(w) => w.get_ref(),
            Sink::Zstd(enc) => enc.writer().get_ref(),
        }
    }

    /// The file, with what is buffered for it thrown away.
    fn discard(self) -> Streamed {
        match self {
            Sink::Plain(w) => w.into_parts().0,
            Sink::Zstd(enc) => enc.into_inner().0.into_parts().0,
        }
    }
}

/// A zstd block header that ends the frame it is in: an empty raw block marked last, the
/// epilogue zstd itself writes (the tap's frames carry no checksum).
const END_OF_FRAME: [u8; 3] = [1, 0, 0];

/// The point a file was last handed to the operating system whole.
#[derive(Clone, Copy, Debug, Default)]
struct Commit {
    /// Bytes in the file.
    len: u64,
    /// Exchanges in them.
    written: u64,
    /// Uncompressed bytes in them, header included.
    bytes: u64,
    /// A zstd frame is open there: it must be ended before another starts.
    mid_frame: bool,
}

/// What one successful [`RecordingWriter::flush`] handed to the operating system that no
/// flush had before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Whole exchange lines.
    pub exchanges: u64,
    /// Their uncompressed bytes (the header line's too, the first time).
    pub bytes: u64,
}

/// Writes one recording file.
pub struct RecordingWriter {
    path: PathBuf,
    partial: PathBuf,
    sink: Option<Sink>,
    zstd: bool,
    head: Vec<u8>,
    line: Vec<u8>,
    written: u64,
    bytes: u64,
    committed: Commit,
    /// Where in the file the zstd frame being written starts.
    frame_start: u64,
    /// Why the file can no longer be written, after a failed [`RecordingWriter::rollback`].
    broken: Option<String>,
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

/// Refuses, before anything starts, a recording `--out` that would replace one: the file
/// itself, or its `.partial` left by a recorder that was killed. `who` names the command
/// for the message. With rotation each file gets its own name, and this does not apply.
pub fn refuse_existing_out(out: &Path, rotating: bool, who: &str) -> Result<()> {
    if rotating {
        return Ok(());
    }
    if out.exists() {
        return Err(Error::Usage(format!(
            "--out {}: the file exists; move it away, or name another file ({who} never overwrites a recording)",
            out.display()
        )));
    }
    if partial_path(out).exists() {
        return Err(Error::Usage(format!(
            "--out {}: {}",
            out.display(),
            partial_exists_message(out)
        )));
    }
    Ok(())
}

/// The temporary name a file has while it is being written.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// The buffered (and for zstd, compressing) writer over `file`; with `end_frame`, the zstd
/// frame the file ends in is ended first. Returns it and where its first frame starts.
fn sink(file: Streamed, zstd: bool, end_frame: bool) -> std::io::Result<(Sink, u64)> {
    let mut buffered = BufWriter::with_capacity(256 << 10, file);
    if !zstd {
        return Ok((Sink::Plain(buffered), 0));
    }
    if end_frame {
        // Into the empty buffer: no write to the file yet.
        buffered.write_all(&END_OF_FRAME)?;
    }
    let start = buffered.get_ref().handed() + buffered.buffer().len() as u64;
    let enc = zstd::stream::raw::Encoder::new(3)?;
    Ok((Sink::Zstd(ZstdWriter::new(buffered, enc)), start))
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
        #[allow(unused_mut)]
        let mut file = Streamed::new(file);
        #[cfg(test)]
        if let Some(room) = super::streamed::small_disk::room_for(&partial) {
            file.limit(room);
        }
        let zstd = is_zstd(path);
        let (sink, frame_start) = sink(file, zstd, false).map_err(|e| Error::io(&partial, e))?;
        let mut head = serde_json::to_vec(header)
            .map_err(|e| Error::internal("serializing the recording header", e))?;
        head.push(b'\n');
        let mut w = RecordingWriter {
            path: path.to_path_buf(),
            partial,
            sink: Some(sink),
            zstd,
            head: Vec::new(),
            line: Vec::with_capacity(4096),
            written: 0,
            bytes: 0,
            committed: Commit::default(),
            frame_start,
            broken: None,
        };
        w.write_raw(&head)?;
        w.head = head;
        Ok(w)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let sink = self.sink.as_mut().ok_or_else(|| {
            Error::io(
                &self.partial,
                std::io::Error::other(
                    self.broken
                        .clone()
                        .unwrap_or_else(|| "writer already finished".into()),
                ),
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
    /// too. After this, a killed process leaves a file readable up to here, and this is the
    /// point [`rollback`](Self::rollback) goes back to. Returns what it handed over that no
    /// flush had before.
    pub fn flush(&mut self, sync: bool) -> Result<Flushed> {
        let Some(sink) = self.sink.as_mut() else {
            return Ok(Flushed::default());
        };
        sink.writer()
            .flush()
            .map_err(|e| Error::io(&self.partial, e))?;
        if sync {
            sink.file()
                .file()
                .sync_data()
                .map_err(|e| Error::io(&self.partial, e))?;
        }
        let len = sink.file().handed();
        let flushed = Flushed {
            exchanges: self.written - self.committed.written,
            bytes: self.bytes - self.committed.bytes,
        };
        self.committed = Commit {
            len,
            written: self.written,
            bytes: self.bytes,
            mid_frame: self.zstd && len > self.frame_start,
        };
        Ok(flushed)
    }

    /// Throws away what was written since the last successful [`flush`](Self::flush), on
    /// the file too (it is cut back to that point), and goes on writing from there: after a
    /// failed write, the file holds exactly the exchanges flushed, whatever part of the rest
    /// reached it. A zstd frame open at that point is ended and the next lines go in a new
    /// one. Returns the number of exchanges thrown away. When the file cannot be cut back,
    /// nothing more can be written to it (and [`finish`](Self::finish) fails, saying why).
    pub fn rollback(&mut self) -> Result<u64> {
        let lost = self.written - self.committed.written;
        self.written = self.committed.written;
        self.bytes = self.committed.bytes;
        let Some(open) = self.sink.take() else {
            return Ok(lost);
        };
        let mut file = open.discard();
        let cut = file
            .truncate(self.committed.len)
            .and_then(|()| sink(file, self.zstd, self.committed.mid_frame));
        match cut {
            Ok((sink, frame_start)) => {
                self.sink = Some(sink);
                self.frame_start = frame_start;
            }
            Err(e) => {
                let e = Error::io(&self.partial, e);
                self.broken = Some(format!("cutting it back after a failed write failed: {e}"));
                return Err(e);
            }
        }
        if self.committed.len == 0 {
            let head = std::mem::take(&mut self.head);
            let r = self.write_raw(&head);
            self.head = head;
            r?;
        }
        Ok(lost)
    }

    /// From now on, the file goes to the disk every few MiB as it is written, and what is on
    /// the disk leaves the page cache ([`super::streamed`]): for a writer that runs for days,
    /// such as the tap's recorder.
    pub fn stream_to_disk(&mut self) {
        match self.sink.as_mut() {
            Some(Sink::Plain(w)) => w.get_mut().stream(STEP),
            Some(Sink::Zstd(enc)) => enc.writer_mut().get_mut().stream(STEP),
            None => {}
        }
    }

    /// Exchanges written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Exchanges in the file as of the last successful [`flush`](Self::flush).
    pub fn flushed(&self) -> u64 {
        self.committed.written
    }

    /// Uncompressed bytes written so far (header included); used for size-based rotation.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The final name of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name of the file while it is written: `NAME.partial`.
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    /// Flushes, closes and renames `NAME.partial` to `NAME`. When that fails, `NAME.partial`
    /// stays, and after a failed [`rollback`](Self::rollback) the error says why.
    pub fn finish(mut self) -> Result<PathBuf> {
        let partial = self.partial.clone();
        let file = match self.sink.take() {
            Some(Sink::Plain(w)) => w
                .into_inner()
                .map_err(|e| Error::io(&partial, e.into_error()))?
                .finish()
                .map_err(|e| Error::io(&partial, e))?,
            Some(Sink::Zstd(mut enc)) => {
                enc.finish().map_err(|e| Error::io(&partial, e))?;
                enc.into_inner()
                    .0
                    .into_inner()
                    .map_err(|e| Error::io(&partial, e.into_error()))?
                    .finish()
                    .map_err(|e| Error::io(&partial, e))?
            }
            None => {
                return Err(Error::io(
                    &partial,
                    std::io::Error::other(
                        self.broken
                            .take()
                            .unwrap_or_else(|| "writer already finished".into()),
                    ),
                ))
            }
        };
        file.sync_all().map_err(|e| Error::io(&partial, e))?;
        drop(file);
        std::fs::rename(&partial, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path.clone())
    }

    /// Where the file was last flushed: what a file whose [`finish`](Self::finish) failed
    /// is cut back to, to hold only whole exchanges.
    pub fn flush_point(&self) -> FlushPoint {
        FlushPoint {
            len: self.committed.len,
            mid_frame: self.committed.mid_frame,
        }
    }
}

/// Where a recording file was last flushed whole ([`RecordingWriter::flush_point`]).
#[derive(Clone, Copy, Debug)]
pub struct FlushPoint {
    len: u64,
    mid_frame: bool,
}

impl FlushPoint {
    /// Cuts `file` (a `.partial` whose writer is gone) back to this point and ends the zstd
    /// frame open there: it then holds exactly the exchanges flushed, and reads without a
    /// warning. When even the frame's end cannot be written (the disk is full), the file is
    /// left at the point and the error returned: it then reads with a warning about its end.
    pub fn cut(&self, file: &Path) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let mut f = OpenOptions::new().write(true).open(file)?;
        if f.metadata()?.len() > self.len {
            f.set_len(self.len)?;
        }
        if self.mid_frame {
            f.seek(SeekFrom::Start(self.len))?;
            if let Err(e) = f.write_all(&END_OF_FRAME).and_then(|()| f.sync_data()) {
                f.set_len(self.len)?;
                return Err(e);
            }
        }
        Ok(())
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
