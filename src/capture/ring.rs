//! The kernel's packets, read without a copy per packet: a Linux `AF_PACKET` socket
//! (`SOCK_DGRAM`, so every frame starts at its IP header whatever the link) with a
//! `TPACKET_V3` receive ring mapped into memory. The kernel fills blocks of packets and
//! hands each whole block over by its status word; the reader walks the block and hands it
//! back. The filter of [`super::bpf`] runs in the kernel, before a packet takes ring room.
//!
//! What the kernel could not deliver is counted by the kernel itself and read with
//! `PACKET_STATISTICS` (which resets its counters on each read, so they are summed here):
//! packets dropped because the ring was full, and how often the ring froze for that reason.
//!
//! The ring's memory is written by the kernel while this process reads it; every length and
//! offset in it is checked against the block before it is used ([`walk_block`]), so a
//! kernel that wrote something unexpected costs the block, never a read out of bounds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// Block status bit: the block belongs to the reader.
const TP_STATUS_USER: u32 = 1;
/// Block status: the block belongs to the kernel.
const TP_STATUS_KERNEL: u32 = 0;
/// Packet header length (`struct tpacket3_hdr`) before the link address.
const HDR3_LEN: usize = 48;
/// `PACKET_OUTGOING`, the packet type of a packet this host sent.
pub const PACKET_OUTGOING: u8 = 4;

/// Why the ring could not be set up; the caller turns each into a message for the operator.
#[derive(Debug)]
pub enum OpenError {
    /// The process may not open packet sockets (no `CAP_NET_RAW`).
    NoPrivilege(io::Error),
    /// No device has that name.
    NoDevice,
    /// Anything else, with the step that failed.
    Other(&'static str, io::Error),
}

/// The size of the ring.
#[derive(Clone, Copy, Debug)]
pub struct RingSize {
    /// Bytes per block (a power of two, a multiple of the page size).
    pub block_size: u32,
    /// Blocks in the ring.
    pub blocks: u32,
    /// How long the kernel may keep a partly filled block before handing it over, in
    /// milliseconds: bounds the delay between a packet and its reading on a quiet link.
    /// (`retire_ms`)
    pub retire_ms: u32,
}

impl RingSize {
    /// A ring of about `bytes` in blocks of 256 KiB (room for the largest IP packet; at
    /// least 16 blocks). The kernel hands over a block when it is full or `retire_ms`
    /// after its first packet: many smaller blocks mean a reader kept off the CPU on a
    /// quiet link (each block retired nearly empty) still has seconds before the ring is full.
    pub fn of(bytes: u64) -> RingSize {
        let block: u64 = 256 << 10;
        RingSize {
            block_size: block as u32,
            blocks: (bytes / block).clamp(16, 1 << 18) as u32,
            retire_ms: 50,
        }
    }
}

/// Totals the kernel reported for the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets that passed the filter (delivered or dropped).
    pub packets: u64,
    /// Packets dropped because the ring was full.
    pub drops: u64,
    /// Times the ring was found full (a block frozen).
    pub freezes: u64,
}

/// One packet in a block: where its bytes are, and what the kernel said of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRef {
    /// Offset of the packet's first byte (its IP header) in the block.
    pub start: usize,
    /// Bytes kept.
    pub snaplen: usize,
    /// Bytes on the wire.
    pub len: usize,
    /// Capture time, microseconds since the epoch.
    pub ts_us: i64,
    /// Linux packet type (`PACKET_HOST`, `PACKET_OUTGOING`, ...).
    pub pkttype: u8,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

/// The packets of one block (`struct tpacket_block_desc` then `struct tpacket3_hdr`s),
/// each checked to lie inside it. The second value is false when the block's layout was
/// not what the kernel documents (its remaining packets are not read).
pub fn walk_block(block: &[u8]) -> (Vec<PacketRef>, bool) {
    let mut out = Vec::new();
    let (Some(num), Some(first)) = (u32_at(block, 12), u32_at(block, 16)) else {
        return (out, false);
    };
    let mut at = first as usize;
    for i in 0..num {
        let Some(hdr) = block.get(at..).filter(|h| h.len() >= HDR3_LEN + 12) else {
            return (out, false);
        };
        let (Some(next), Some(sec), Some(nsec), Some(snap), Some(len), Some(mac)) = (
            u32_at(hdr, 0),
            u32_at(hdr, 4),
            u32_at(hdr, 8),
            u32_at(hdr, 12),
            u32_at(hdr, 16),
            u16_at(hdr, 24),
        ) else {
            return (out, false);
        };
        let start = at + usize::from(mac);
        let end = start.checked_add(snap as usize);
        if end.is_none_or(|e| e > block.len()) || usize::from(mac) < HDR3_LEN {
            return (out, false);
        }
        out.push(PacketRef {
            start,
            snaplen: snap as usize,
            len: len as usize,
            ts_us: i64::from(sec) * 1_000_000 + i64::from(nsec / 1000),
            pkttype: hdr[HDR3_LEN + 10],
        });
        if i + 1 < num {
            if next == 0 {
                return (out, false);
            }
            at = match at.checked_add(next as usize) {
                Some(a) if a < block.len() => a,
                _ => return (out, false),
            };
        }
    }
    (out, true)
}

/// An open packet socket with its ring mapped.
pub struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    size: RingSize,
    /// The block to read next.
    cur: u32,
    stats: KernelStats,
}

// SAFETY: the mapping belongs to the ring alone and is only touched through `&mut self`.
unsafe impl Send for Ring {}

fn last_error(step: &'static str) -> OpenError {
    OpenError::Other(step, io::Error::last_os_error())
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live, initialised `T` of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

#[repr(C)]
#[derive(Default)]
struct StatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// The interface index of `device`, if there is one.
pub fn device_index(device: &str) -> Option<u32> {
    let name = std::ffi::CString::new(device).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (i != 0).then_some(i)
}

/// True when `device` is a loopback device (each packet passes it twice).
pub fn is_loopback(device: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{device}/type"))
        .is_ok_and(|t| t.trim() == "772")
}

/// The network devices there are, by name.
pub fn devices() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Ring {
    /// Opens a packet socket on `device` with `filter` attached and a ring of `size`.
    /// Packets flow only once the socket is bound, after the filter is in place, so
    /// nothing unfiltered enters the ring.
    pub fn open(
        device: &str,
        filter: &[super::bpf::Insn],
        size: RingSize,
    ) -> Result<Ring, OpenError> {
        // SAFETY: plain socket creation; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => OpenError::NoPrivilege(e),
                _ => OpenError::Other("socket(AF_PACKET)", e),
            });
        }
        // SAFETY: `raw` is a new descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ifindex = device_index(device).ok_or(OpenError::NoDevice)?;
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
            .map_err(|e| OpenError::Other("setsockopt(SO_ATTACH_FILTER)", e))?;
        let version: libc::c_int = 2; // TPACKET_V3
        setsockopt(&fd, libc::SOL_PACKET, 10, &version)
            .map_err(|e| OpenError::Other("setsockopt(PACKET_VERSION, TPACKET_V3)", e))?;
        let req = TpacketReq3 {
            block_size: size.block_size,
            block_nr: size.blocks,
            frame_size: 2048,
            frame_nr: (u64::from(size.block_size) * u64::from(size.blocks) / 2048) as u32,
            retire_blk_tov: size.retire_ms,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, 5, &req)
            .map_err(|e| OpenError::Other("setsockopt(PACKET_RX_RING)", e))?;
        let map_len = size.block_size as usize * size.blocks as usize;
        // SAFETY: maps the ring the kernel just allocated for this socket; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(last_error("mmap of the ring"));
        }
        let ring = Ring {
            fd,
            map: map.cast(),
            map_len,
            size,
            cur: 0,
            stats: KernelStats::default(),
        };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set are plain integers.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(last_error("bind to the device"));
        }
        Ok(ring)
    }

    fn status(&self, block: u32) -> &AtomicU32 {
        let off = block as usize * self.size.block_size as usize + 8;
        // SAFETY: the status word of a block inside the mapping, 4-byte aligned (blocks
        // are page aligned); the kernel writes it concurrently, hence the atomic.
        unsafe { &*(self.map.add(off) as *const AtomicU32) }
    }

    /// Waits up to `timeout_ms` for the next block and calls `each(packet bytes, packet)`
    /// for every packet in it, then hands the block back. Returns `None` when no block was
    /// ready in time, otherwise how many blocks had a layout that could not be read whole
    /// (0 or 1).
    pub fn next_block(
        &mut self,
        timeout_ms: i32,
        each: &mut dyn FnMut(&[u8], &PacketRef),
    ) -> io::Result<Option<u64>> {
        if self.status(self.cur).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(None);
                }
                return Err(e);
            }
            if self.status(self.cur).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                return Ok(None);
            }
        }
        let bs = self.size.block_size as usize;
        // SAFETY: the block lies inside the mapping, and the kernel does not write a block
        // while its status says it is the reader's.
        let block = unsafe { std::slice::from_raw_parts(self.map.add(self.cur as usize * bs), bs) };
        let (packets, whole) = walk_block(block);
        for p in &packets {
            each(&block[p.start..p.start + p.snaplen], p);
        }
        fence(Ordering::Release);
        self.status(self.cur)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.cur = (self.cur + 1) % self.size.blocks;
        Ok(Some(u64::from(!whole)))
    }

    /// How long the kernel keeps a partly filled block, in milliseconds.
    pub fn retire_ms(&self) -> u32 {
        self.size.retire_ms
    }

    /// The kernel's totals so far (read and summed: the kernel resets them on each read).
    pub fn stats(&mut self) -> KernelStats {
        let mut s = StatsV3::default();
        let mut len = std::mem::size_of::<StatsV3>() as libc::socklen_t;
        // SAFETY: `s` is a writable buffer of `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                6, // PACKET_STATISTICS
                (&mut s as *mut StatsV3).cast(),
                &mut len,
            )
        };
        if r == 0 {
            self.stats.packets += u64::from(s.packets);
            self.stats.drops += u64::from(s.drops);
            self.stats.freezes += u64::from(s.freeze_q_cnt);
        }
        self.stats
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, used by nothing after this.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(packets: &[(&[u8], u8)]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[12..16].copy_from_slice(&(packets.len() as u32).to_ne_bytes());
        b[16..20].copy_from_slice(&48u32.to_ne_bytes());
        let mut at = 48;
        for (i, (data, ty)) in packets.iter().enumerate() {
            let mac = 80u16;
            let total = (usize::from(mac) + data.len() + 15) & !15;
            let next = if i + 1 < packets.len() {
                total as u32
            } else {
                0
            };
            b[at..at + 4].copy_from_slice(&next.to_ne_bytes());
            b[at + 4..at + 8].copy_from_slice(&7u32.to_ne_bytes());
            b[at + 8..at + 12].copy_from_slice(&5000u32.to_ne_bytes());
            b[at + 12..at + 16].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            b[at + 16..at + 20].copy_from_slice(&(data.len() as u32 + 1).to_ne_bytes());
            b[at + 24..at + 26].copy_from_slice(&mac.to_ne_bytes());
            b[at + 58] = *ty;
            b[at + 80..at + 80 + data.len()].copy_from_slice(data);
            at += total;
        }
        b
    }

    #[test]
    fn a_block_is_walked_packet_by_packet() {
        let b = block(&[(b"abc", 0), (b"defgh", PACKET_OUTGOING)]);
        let (p, whole) = walk_block(&b);
        assert!(whole);
        assert_eq!(p.len(), 2);
        assert_eq!(&b[p[0].start..p[0].start + p[0].snaplen], b"abc");
        assert_eq!(&b[p[1].start..p[1].start + p[1].snaplen], b"defgh");
        assert_eq!((p[1].pkttype, p[1].len, p[0].ts_us), (4, 6, 7_000_005));
    }

    #[test]
    fn a_malformed_block_costs_its_packets_never_a_read_out_of_bounds() {
        let good = block(&[(b"abc", 0), (b"defgh", 0)]);
        let mut cases: Vec<Vec<u8>> = vec![vec![], vec![0; 15], good[..200].to_vec()];
        for (at, v) in [
            (12, u32::MAX),  // more packets than there are
            (16, u32::MAX),  // first packet beyond the block
            (16, 4090),      // first header cut by the end
            (48, 0),         // next offset 0 with a packet to come
            (48, u32::MAX),  // next offset beyond the block
            (48 + 12, 5000), // snap length beyond the block
            (48 + 24, 2),    // data inside the header
        ] {
            let mut b = good.clone();
            b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            cases.push(b);
        }
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..2000 {
            let mut b = good.clone();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let i = seed as usize % 256;
                b[i] = (seed >> 8) as u8;
            }
            cases.push(b);
        }
        for b in &cases {
            let (p, _) = walk_block(b);
            for r in p {
                assert!(r.start + r.snaplen <= b.len());
            }
        }
        assert!(!walk_block(&cases[3]).1);
    }
}
