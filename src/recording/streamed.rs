//! A recording file that goes to the disk steadily as it is written, and leaves the page
//! cache once it is there.
//!
//! Left to itself, the kernel keeps what a process writes in the page cache, dirty, for up to
//! half a minute or until a tenth or more of the memory is dirty, and then writes it back in
//! a burst on the same cores that serve traffic. A tap records for days: its files would also
//! push the gateway's own files out of the cache, though nobody reads a recording back soon.
//! So, every [`STEP`] bytes, the writer starts the disk write of the step just completed
//! (`sync_file_range`, which does not wait) and, for the step before that, waits until it is
//! on the disk and drops it from the cache (`posix_fadvise(DONTNEED)`). What the file holds
//! in memory stays near two steps, and the wait falls on the recorder's thread, whose queue
//! is what absorbs a slow disk.
//!
//! Both calls are advice: where a file system does not take them, the file is written as any
//! other. Off Linux they are not made at all. A write error they report (the disk failed, or
//! is full) is the file's, though: the kernel reports it once per descriptor, so the writer
//! keeps it and fails every later write, flush and [`Streamed::finish`] with it, and the file
//! is never taken for complete.

use std::fs::File;
use std::io::{self, Write};

/// Bytes between two writeback steps.
pub const STEP: u64 = 8 << 20;

/// The page size the cache is dropped in (Linux's smallest; a larger page only keeps a
/// little more).
const PAGE: u64 = 4096;

/// A file that can be written in steps to the disk (see the module documentation).
#[derive(Debug)]
pub struct Streamed {
    file: File,
    /// Writeback every this many bytes; `None` leaves the file to the kernel.
    step: Option<u64>,
    /// Bytes handed to the kernel.
    handed: u64,
    /// Bytes whose writeback has been started.
    started: u64,
    /// Bytes known to be on the disk and dropped from the cache.
    dropped: u64,
    /// The write error the kernel reported while the file went to the disk.
    failed: Option<io::Error>,
    /// Bytes the file system has room for, in tests that stand a full disk in for a real one.
    #[cfg(test)]
    free: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Streamed {
    /// `file`, written as any other until [`Streamed::stream`] is called.
    pub fn new(file: File) -> Self {
        Streamed {
            file,
            step: None,
            handed: 0,
            started: 0,
            dropped: 0,
            failed: None,
            #[cfg(test)]
            free: None,
        }
    }

    /// Bytes handed to the kernel so far: the length of the file.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// Cuts the file back to its first `len` bytes and writes on from there: what was
    /// written after `len` is gone, and the room it took is free again. A write error the
    /// kernel reported while the file went to the disk is not undone by this: it stays.
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        self.check()?;
        let len = len.min(self.handed);
        self.file.set_len(len)?;
        self.file.seek(SeekFrom::Start(len))?;
        #[cfg(test)]
        if let Some(free) = &self.free {
            free.fetch_add(self.handed - len, std::sync::atomic::Ordering::Relaxed);
        }
        self.handed = len;
        self.started = self.started.min(len);
        self.dropped = self.dropped.min(len / PAGE * PAGE);
        Ok(())
    }

    /// Makes this file behave as one on a file system with `free` bytes of room (shared by
    /// every file given the same counter): a write past it writes what fits, then fails
    /// with `ENOSPC`, as a full disk does.
    #[cfg(test)]
    pub fn limit(&mut self, free: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        self.free = Some(free);
    }

    /// From now on, writes what is written to the disk every `step` bytes.
    pub fn stream(&mut self, step: u64) {
        self.step = Some(step.max(1));
    }

    /// The file itself.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file itself, to be synced and closed; the write error the kernel reported while
    /// it went to the disk, if it did.
    pub fn finish(self) -> io::Result<File> {
        self.check()?;
        Ok(self.file)
    }

    /// Fails with the write error kept, if there is one.
    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }

    /// Bytes dropped from the page cache so far.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn advance(&mut self) -> io::Result<()> {
        let (started, handed, dropped) = (self.started, self.handed, self.dropped);
        if !writeback(&self.file, started, handed - started, false)? {
            // Not taken here (a file system without it): the kernel keeps its own ways.
            self.step = None;
            return Ok(());
        }
        // Whole pages only: the kernel keeps a page that is partly outside the range, so the
        // page a step ends in is dropped with the next step.
        let upto = started / PAGE * PAGE;
        if upto > dropped && writeback(&self.file, dropped, upto - dropped, true)? {
            drop_cached(&self.file, dropped, upto - dropped);
            self.dropped = upto;
        }
        self.started = handed;
        Ok(())
    }
}

impl Write for Streamed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        #[cfg(test)]
        let buf = match &self.free {
            Some(free) => {
                let room = free.load(std::sync::atomic::Ordering::Relaxed);
                let n = (room as usize).min(buf.len());
                if n == 0 && !buf.is_empty() {
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                free.fetch_sub(n as u64, std::sync::atomic::Ordering::Relaxed);
                &buf[..n]
            }
            None => buf,
        };
        let n = self.file.write(buf)?;
        self.handed += n as u64;
        if let Some(step) = self.step {
            if self.handed - self.started >= step {
                if let Err(e) = self.advance() {
                    self.step = None;
                    self.failed = Some(io::Error::new(e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.file.flush()
    }
}

/// Starts the disk write of `len` bytes from `at`; with `wait`, also waits until they are
/// on the disk. `Ok(false)` when the file system does not take it; an error when writing
/// failed.
#[cfg(target_os = "linux")]
fn writeback(file: &File, at: u64, len: u64, wait: bool) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (i64::try_from(at), i64::try_from(len)) else {
        return Ok(false);
    };
    let mut flags = libc::SYNC_FILE_RANGE_WRITE;
    if wait {
        flags |= libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    }
    // SAFETY: a plain system call on a descriptor `file` keeps open; it reads no memory.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), at, len, flags) };
    let outcome = if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    // A failing disk, in this module's tests.
    #[cfg(test)]
    let outcome = match tests::FAIL_WRITEBACK.with(|f| f.get()) {
        Some(code) => Err(io::Error::from_raw_os_error(code)),
        None => outcome,
    };
    match outcome {
        Ok(()) => Ok(true),
        Err(e) if unsupported(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// True for the answers of a file or file system that does not take `sync_file_range`.
#[cfg(target_os = "linux")]
fn unsupported(e: &io::Error) -> bool {
    let not_taken = [libc::EINVAL, libc::ESPIPE, libc::ENOSYS, libc::EOPNOTSUPP];
    if e.raw_os_error().is_some_and(|c| not_taken.contains(&c)) {
        tracing::debug!("recording: sync_file_range not taken here: {e}");
        return true;
    }
    false
}

#[cfg(not(target_os = "linux"))]
fn writeback(_: &File, _: u64, _: u64, _: bool) -> io::Result<bool> {
    Ok(false)
}

/// Drops `len` bytes from `at`, already on the disk, from the page cache.
#[cfg(target_os = "linux")]
fn drop_cached(file: &File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (i64::try_from(at), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain system call on a descriptor `file` keeps open; it reads no memory.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), at, len, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        tracing::debug!(
            "recording: posix_fadvise: {}",
            io::Error::from_raw_os_error(r)
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn drop_cached(_: &File, _: u64, _: u64) {}

/// Small disks for tests: files created in a directory given a size here behave as on a
/// file system with that much room ([`Streamed::limit`]), so a full disk can be tested
/// without one.
#[cfg(test)]
pub(crate) mod small_disk {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    static DISKS: Mutex<Vec<(PathBuf, Arc<AtomicU64>)>> = Mutex::new(Vec::new());

    /// Files created in `dir` from now on share `free` bytes of room; the counter returned
    /// is that room, to be read or changed (a file deleted, more room made).
    pub fn mount(dir: &Path, free: u64) -> Arc<AtomicU64> {
        let room = Arc::new(AtomicU64::new(free));
        let mut disks = DISKS.lock().unwrap_or_else(|p| p.into_inner());
        disks.push((dir.to_path_buf(), room.clone()));
        room
    }

    /// The room of the small disk `file` is on, if it is on one.
    pub fn room_for(file: &Path) -> Option<Arc<AtomicU64>> {
        let disks = DISKS.lock().unwrap_or_else(|p| p.into_inner());
        disks
            .iter()
            .find(|(dir, _)| file.parent() == Some(dir.as_path()))
            .map(|(_, room)| room.clone())
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Read;

    thread_local! {
        /// The error `sync_file_range` answers on this thread, to stand for a failing disk.
        pub(crate) static FAIL_WRITEBACK: Cell<Option<i32>> = const { Cell::new(None) };
    }

    /// How many of the first `len` bytes' pages of `file` are in the page cache.
    fn resident_pages(file: &File, len: usize) -> usize {
        use std::os::fd::AsRawFd;
        let pages = len.div_ceil(PAGE as usize);
        // SAFETY: a shared read-only mapping of `len` bytes of a file at least that long,
        // unmapped before returning; `mincore` writes one byte per page into `vec`, which has
        // room for every page of the mapping.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let mut vec = vec![0u8; pages];
            let r = libc::mincore(map, len, vec.as_mut_ptr());
            libc::munmap(map, len);
            assert_eq!(r, 0);
            vec.iter().filter(|v| *v & 1 == 1).count()
        }
    }

    /// True when `path` is on tmpfs, where the page cache is the only copy and stays.
    fn on_tmpfs(path: &std::path::Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid C string and `s` a writable statfs the call fills in.
        unsafe {
            let mut s: libc::statfs = std::mem::zeroed();
            libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type == libc::TMPFS_MAGIC
        }
    }

    #[test]
    fn a_streamed_file_leaves_the_cache_behind_it_and_keeps_every_byte() {
        // Under target/, which is on the disk that builds go to (/tmp may be tmpfs).
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/target");
        std::fs::create_dir_all(base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let path = dir.path().join("r.jsonl");
        let step = 256 << 10;
        let mut w = Streamed::new(File::create(&path).unwrap());
        w.stream(step);
        let mut want = Vec::new();
        for i in 0..(6 * step as usize / 100) {
            let line = format!("{i:099}\n");
            w.write_all(line.as_bytes()).unwrap();
            want.extend_from_slice(line.as_bytes());
        }
        w.flush().unwrap();
        // Four steps behind the one being written are on the disk and out of the cache.
        assert!(w.dropped() >= 4 * step, "{} bytes dropped", w.dropped());
        let dropped = w.dropped() as usize;
        drop(w.finish().unwrap());
        let mut file = File::open(&path).unwrap();
        if !on_tmpfs(dir.path()) {
            assert_eq!(resident_pages(&file, dropped), 0);
            // What came after is still there, as for any file just written.
            assert!(resident_pages(&file, want.len()) > 0);
        }
        let mut got = Vec::new();
        file.read_to_end(&mut got).unwrap();
        assert!(got == want, "the file differs from what was written");
    }

    #[test]
    fn a_failed_writeback_fails_every_later_write_and_the_finish() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Streamed::new(File::create(dir.path().join("r")).unwrap());
        w.stream(4096);
        w.write_all(&[b'a'; 1000]).unwrap();
        FAIL_WRITEBACK.with(|f| f.set(Some(libc::EIO)));
        let e = w.write_all(&[b'b'; 4096]).unwrap_err();
        FAIL_WRITEBACK.with(|f| f.set(None));
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        // The kernel would not say it again: the writer does.
        assert!(w.write(b"c").is_err());
        assert!(w.flush().is_err());
        assert!(w.finish().is_err());

        // A file system that does not take the call is written as any other.
        let mut w = Streamed::new(File::create(dir.path().join("s")).unwrap());
        w.stream(4096);
        FAIL_WRITEBACK.with(|f| f.set(Some(libc::EINVAL)));
        let wrote = w.write_all(&[b'a'; 3 * 4096]);
        FAIL_WRITEBACK.with(|f| f.set(None));
        wrote.unwrap();
        assert!(w.step.is_none());
        w.finish().unwrap();
    }

    #[test]
    fn a_file_not_streamed_is_left_to_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Streamed::new(File::create(dir.path().join("r")).unwrap());
        w.write_all(&vec![b'x'; 3 << 20]).unwrap();
        assert_eq!(w.dropped(), 0);
    }
}
