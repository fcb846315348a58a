//! Opens the recordings for a replay the way [`RecordingReader::open`] does, but counts the
//! file bytes consumed, so the progress display can estimate how many exchanges there are in
//! all (and so an ETA) without a first pass over the files.

use super::Progress;
use crate::error::{Error, Result};
use crate::recording::{FileReader, ReadOptions, RecordingReader};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A reader that adds every byte it reads to a shared counter.
struct Counted<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens every recording (headers checked first, as `RecordingReader::open` does), counting
/// the raw bytes read into `progress.bytes_read` and their total into `progress.bytes_total`.
pub fn open_counted(
    paths: &[PathBuf],
    opts: ReadOptions,
    progress: &Progress,
) -> Result<RecordingReader> {
    let mut files = Vec::with_capacity(paths.len());
    let mut total = 0u64;
    for path in paths {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        total += file.metadata().map(|m| m.len()).unwrap_or(0);
        let counted = Counted {
            inner: file,
            bytes: progress.bytes_read.clone(),
        };
        // Counting below the decompressor measures the file, which is what the total is.
        files.push(FileReader::from_file_bytes(path.clone(), counted, opts)?);
    }
    progress.bytes_total.store(total, Ordering::Relaxed);
    if let Some(n) = count_exchanges(paths) {
        progress.exchanges_total.store(n, Ordering::Relaxed);
    }
    RecordingReader::from_files(files)
}

/// The most uncompressed bytes counted before a replay: counting reads the files once more,
/// which on a cold disk costs about what the replay's own reading does.
const COUNT_LIMIT: u64 = 1 << 30;

/// Counts the exchanges (lines after each header) of uncompressed recordings, so the
/// progress display knows its total from the start even when the reader runs ahead of a
/// paced replay. `None` for compressed files (a second decompression is the cost of a
/// replay's reading) and past [`COUNT_LIMIT`].
fn count_exchanges(paths: &[PathBuf]) -> Option<u64> {
    let mut budget = COUNT_LIMIT;
    let mut count = 0u64;
    for path in paths {
        let mut file = File::open(path).ok()?;
        budget = budget.checked_sub(file.metadata().ok()?.len())?;
        let mut buf = vec![0u8; 1 << 20];
        let mut lines = 0u64;
        let mut last = b'\n';
        let mut first = true;
        loop {
            let n = file.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            if first && is_compressed(&buf[..n]) {
                return None;
            }
            first = false;
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            last = buf[n - 1];
        }
        if last != b'\n' {
            lines += 1;
        }
        // The first line is the file's header, not an exchange.
        count += lines.saturating_sub(1);
    }
    Some(count)
}

/// zstd or gzip magic.
fn is_compressed(head: &[u8]) -> bool {
    head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || head.starts_with(&[0x1f, 0x8b])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Exchange, Request};
    use crate::recording::{RecordingHeader, RecordingWriter};

    #[test]
    fn counts_every_byte_of_plain_and_zstd_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for name in ["a.jsonl", "b.jsonl.zst"] {
            let mut w = RecordingWriter::create(&dir.path().join(name), &RecordingHeader::new("t"))
                .unwrap();
            for i in 0..300 {
                w.write(&Exchange {
                    id: format!("{name}-{i}"),
                    ts_us: i,
                    interface: None,
                    tenant: None,
                    request: Request {
                        method: "GET".into(),
                        uri: format!("/x/{i}"),
                        ..Default::default()
                    },
                    response: None,
                    latency_us: None,
                })
                .unwrap();
            }
            paths.push(w.finish().unwrap());
        }
        let progress = Progress::default();
        let mut r = open_counted(&paths, ReadOptions::default(), &progress).unwrap();
        let mut n = 0;
        while r.next_exchange().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 600);
        let total: u64 = paths
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(progress.bytes_total.load(Ordering::Relaxed), total);
        assert_eq!(progress.bytes_read.load(Ordering::Relaxed), total);
        // One file is compressed: no cheap count, the estimate from bytes stands in.
        assert_eq!(progress.exchanges_total.load(Ordering::Relaxed), 0);
        assert_eq!(count_exchanges(&paths[..1]), Some(300));
        assert_eq!(count_exchanges(&paths[1..]), None);
    }
}
