//! pcap and pcapng captures (tcpdump, dumpcap, Wireshark): reads the file's records
//! (pcap-file), peels the link and IP layers (etherparse; Ethernet, Linux cooked v1/v2, raw
//! IP, BSD loopback; IPv4 and IPv6) and hands TCP segments to [`tcp`], which reassembles
//! each connection and passes its two byte streams to [`http`] for HTTP/1.x pairing.
//! Several files are one capture (tcpdump `-C`/`-G` rotation), so a connection may span
//! them. Checksums are not verified: captures taken on the sending host carry the
//! unfinished checksums of checksum offload.

mod http;
mod tcp;

use super::{ImportReport, Sink, MAX_BODY, SKIP_REST_UNUSABLE};
use crate::error::{Error, Result};
use etherparse::{EtherType, IpNumber, NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// Largest packet record or pcapng block accepted; beyond any real snap length, so a
/// larger length field means a corrupt file, and memory stays bounded.
const MAX_RECORD: usize = MAX_BODY;
/// Bytes read from the file at a time.
const READ_CHUNK: usize = 1 << 20;

const IGN_NOT_IP: &str = "frames that are not IP (ARP, LLDP, ...)";
const IGN_NOT_TCP: &str = "IP packets that are not TCP (UDP, ICMP, ...)";
const SKIP_LINK: &str = "packets of a link type this importer does not read";
const SKIP_BAD: &str = "packets whose headers are malformed or cut short";
const SKIP_SNAPLEN: &str = "packets cut short by the capture's snap length";
const SKIP_FRAGMENT: &str = "IP fragments (not reassembled)";
const SKIP_LAST: &str = "last packet cut short (the file ends inside it)";
const SKIP_BLOCK: &str = "pcapng packet blocks that could not be decoded";
const SKIP_SIMPLE: &str = "pcapng simple packet blocks (no timestamp, no interface)";
const SKIP_NO_IFACE: &str = "pcapng packets naming an interface the file does not describe";

/// One TCP segment as the reassembler needs it.
#[derive(Clone, Debug)]
pub(crate) struct Segment<'a> {
    /// Sender address and port.
    pub src: SocketAddr,
    /// Receiver address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when `has_ack`).
    pub ack: u32,
    /// SYN flag.
    pub syn: bool,
    /// ACK flag.
    pub has_ack: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// TCP payload.
    pub payload: &'a [u8],
    /// Capture time, microseconds since the epoch.
    pub ts_us: i64,
}

/// Where the current packet is, for skip examples and errors.
pub(crate) struct Ctx<'a> {
    /// Where exchanges go.
    pub sink: &'a mut dyn Sink,
    /// What is counted.
    pub report: &'a mut ImportReport,
    /// The file being read.
    pub file: &'a Path,
    /// 1-based packet number in `file`; 0 once the capture is over.
    pub packet: u64,
}

impl Ctx<'_> {
    /// `file: packet N` (or `file: end of capture` once the packets are read).
    pub fn at(&self) -> String {
        if self.packet == 0 {
            format!("{}: end of capture", self.file.display())
        } else {
            format!("{}: packet {}", self.file.display(), self.packet)
        }
    }
}

/// Imports one or more capture files as one capture.
#[derive(Default)]
pub struct PcapImporter {
    tracker: tcp::Tracker,
    last_file: Option<std::path::PathBuf>,
}

impl PcapImporter {
    /// An importer with nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one pcap or pcapng file (told apart by their magic numbers).
    pub fn read(
        &mut self,
        path: &Path,
        input: impl Read,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        self.last_file = Some(path.to_path_buf());
        let mut inp = Buffered::new(input);
        while inp.avail().len() < 4 {
            if !inp.fill(4).map_err(|e| Error::io(path, e))? {
                return Err(Error::InputAt {
                    file: path.to_path_buf(),
                    at: "byte 0".into(),
                    message: format!(
                        "the file has {} bytes; expected a pcap or pcapng capture",
                        inp.avail().len()
                    ),
                });
            }
        }
        let magic = [
            inp.avail()[0],
            inp.avail()[1],
            inp.avail()[2],
            inp.avail()[3],
        ];
        let tracker = &mut self.tracker;
        let mut on_frame = |frame: Frame<'_>, report: &mut ImportReport| -> Result<()> {
            let mut ctx = Ctx {
                sink: &mut *sink,
                report,
                file: path,
                packet: frame.n,
            };
            match decode(&frame) {
                Decoded::Tcp(seg) => tracker.segment(&seg, &mut ctx),
                Decoded::Ignore(reason) => {
                    ctx.report.ignore(reason);
                    Ok(())
                }
                Decoded::Skip(reason) => {
                    let at = ctx.at();
                    ctx.report.skip(reason, || at);
                    Ok(())
                }
            }
        };
        match magic {
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => read_pcap(path, &mut inp, report, &mut on_frame),
            [0x0a, 0x0d, 0x0d, 0x0a] => read_pcapng(path, &mut inp, report, &mut on_frame),
            _ => Err(Error::InputAt {
                file: path.to_path_buf(),
                at: "byte 0".into(),
                message: format!(
                    "expected a pcap (magic a1b2c3d4) or pcapng (0a0d0d0a) capture, found {}",
                    magic.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ),
            }),
        }
    }

    /// Ends the capture: connections still open give up what they completed.
    pub fn finish(mut self, sink: &mut dyn Sink, report: &mut ImportReport) -> Result<()> {
        let file = self.last_file.take().unwrap_or_default();
        let mut ctx = Ctx {
            sink,
            report,
            file: &file,
            packet: 0,
        };
        self.tracker.finish(&mut ctx)
    }
}

/// A file read in pieces, with at most one record (capped) buffered.
struct Buffered<R> {
    r: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[start]`.
    offset: u64,
}

impl<R: Read> Buffered<R> {
    fn new(r: R) -> Self {
        Buffered {
            r,
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
        }
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.offset += n as u64;
    }

    /// Reads more, making room for a record of `want` bytes; false at the end of the file.
    fn fill(&mut self, want: usize) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let need = want.max(self.end + READ_CHUNK);
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        loop {
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// One captured frame.
struct Frame<'a> {
    /// 1-based packet number within its file.
    n: u64,
    ts_us: i64,
    link: DataLink,
    data: &'a [u8],
    /// The capture kept fewer bytes than were on the wire.
    cut: bool,
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    if big {
        u32::from_be_bytes(x)
    } else {
        u32::from_le_bytes(x)
    }
}

fn corrupt(path: &Path, at: String, message: String) -> Error {
    Error::InputAt {
        file: path.to_path_buf(),
        at,
        message,
    }
}

/// Counts the rest of a file, unusable from `at` on, as one unit read and skipped.
fn rest_unusable(path: &Path, report: &mut ImportReport, at: String, message: String) {
    report.read += 1;
    report.skip(SKIP_REST_UNUSABLE, || {
        format!("{}: {at}: {message}; reading stopped here", path.display())
    });
}

/// Reads a classic pcap file (micro- or nanosecond, either byte order).
fn read_pcap<R: Read>(
    path: &Path,
    inp: &mut Buffered<R>,
    report: &mut ImportReport,
    on_frame: &mut dyn FnMut(Frame<'_>, &mut ImportReport) -> Result<()>,
) -> Result<()> {
    let io = |e| Error::io(path, e);
    while inp.avail().len() < 24 {
        if !inp.fill(24).map_err(io)? {
            return Err(corrupt(
                path,
                "byte 0".into(),
                format!(
                    "the file ends inside the 24-byte pcap header ({} bytes)",
                    inp.avail().len()
                ),
            ));
        }
    }
    let (_, parser) = PcapParser::new(inp.avail()).map_err(|e| {
        corrupt(
            path,
            "byte 0".into(),
            format!("expected a pcap file header: {e}"),
        )
    })?;
    inp.consume(24);
    let header = parser.header();
    let big = header.endianness == Endianness::Big;
    let nanos = header.ts_resolution == TsResolution::NanoSecond;
    let mut n: u64 = 0;
    loop {
        let avail = inp.avail();
        let want = if avail.len() >= 16 {
            let incl = u32_at(avail, 8, big) as usize;
            if incl > MAX_RECORD {
                // Nothing marks where the next record starts: the packets before are kept.
                rest_unusable(
                    path,
                    report,
                    format!("packet {} (byte {})", n + 1, inp.offset),
                    format!(
                        "record length {incl} is beyond any snap length; expected at most {MAX_RECORD} (the file is corrupt here)"
                    ),
                );
                return Ok(());
            }
            16 + incl
        } else {
            16
        };
        if avail.len() >= want {
            let (rem, raw) = match parser.next_raw_packet(avail) {
                Ok(r) => r,
                Err(e) => {
                    rest_unusable(
                        path,
                        report,
                        format!("packet {} (byte {})", n + 1, inp.offset),
                        format!("expected a pcap packet record: {e}"),
                    );
                    return Ok(());
                }
            };
            n += 1;
            report.read += 1;
            let frac = u64::from(raw.ts_frac);
            let frac_us = if nanos { frac / 1000 } else { frac };
            let ts_us = (i64::from(raw.ts_sec))
                .saturating_mul(1_000_000)
                .saturating_add(frac_us as i64);
            let frame = Frame {
                n,
                ts_us,
                link: header.datalink,
                data: &raw.data,
                cut: raw.orig_len > raw.incl_len,
            };
            let used = avail.len() - rem.len();
            on_frame(frame, report)?;
            inp.consume(used);
            continue;
        }
        if !inp.fill(want).map_err(io)? && inp.avail().len() < want {
            if !inp.avail().is_empty() {
                report.read += 1;
                let at = format!("{}: packet {} (byte {})", path.display(), n + 1, inp.offset);
                report.skip(SKIP_LAST, || at);
            }
            return Ok(());
        }
    }
}

/// How long the pcapng block at the start of `b` is.
enum BlockLen {
    Need(usize),
    Len(usize),
    Bad(String),
}

fn block_len(b: &[u8], section_big: bool) -> BlockLen {
    if b.len() < 12 {
        return BlockLen::Need(12);
    }
    let big = if b[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        match b[8..12] {
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            _ => {
                return BlockLen::Bad(
                    "section header block with an unknown byte-order magic".into(),
                )
            }
        }
    } else {
        section_big
    };
    let len = u32_at(b, 4, big) as usize;
    if len < 12 || len % 4 != 0 || len > MAX_RECORD {
        return BlockLen::Bad(format!(
            "block length {len}; expected a multiple of 4 between 12 and {MAX_RECORD}"
        ));
    }
    if b.len() < len {
        BlockLen::Need(len)
    } else {
        BlockLen::Len(len)
    }
}

/// Timestamp units per second and offset in seconds of a pcapng interface.
fn ts_scale(options: &[InterfaceDescriptionOption<'_>]) -> (u128, i64) {
    let mut units: u128 = 1_000_000;
    let mut offset: i64 = 0;
    for o in options {
        match o {
            InterfaceDescriptionOption::IfTsResol(r) => {
                let v = u32::from(r & 0x7f);
                let u = if r & 0x80 == 0 {
                    10u128.checked_pow(v)
                } else {
                    2u128.checked_pow(v)
                };
                if let Some(u) = u.filter(|u| *u > 0) {
                    units = u;
                }
            }
            InterfaceDescriptionOption::IfTsOffset(s) => offset = i64::try_from(*s).unwrap_or(0),
            _ => {}
        }
    }
    (units, offset)
}

fn ticks_to_us(ticks: u128, units: u128, offset_s: i64) -> i64 {
    let us = ticks.saturating_mul(1_000_000) / units.max(1);
    i64::try_from(us)
        .unwrap_or(i64::MAX)
        .saturating_add(offset_s.saturating_mul(1_000_000))
}

/// Reads a pcapng file (any number of sections and interfaces).
fn read_pcapng<R: Read>(
    path: &Path,
    inp: &mut Buffered<R>,
    report: &mut ImportReport,
    on_frame: &mut dyn FnMut(Frame<'_>, &mut ImportReport) -> Result<()>,
) -> Result<()> {
    let io = |e| Error::io(path, e);
    let first = loop {
        match block_len(inp.avail(), true) {
            BlockLen::Len(l) => break l,
            BlockLen::Bad(m) => return Err(corrupt(path, "block 1 (byte 0)".into(), m)),
            BlockLen::Need(w) => {
                if !inp.fill(w).map_err(io)? && inp.avail().len() < w {
                    return Err(corrupt(
                        path,
                        "block 1 (byte 0)".into(),
                        "the file ends inside the section header block".into(),
                    ));
                }
            }
        }
    };
    let (_, mut parser) = PcapNgParser::new(&inp.avail()[..first]).map_err(|e| {
        corrupt(
            path,
            "block 1 (byte 0)".into(),
            format!("expected a pcapng section header block: {e}"),
        )
    })?;
    inp.consume(first);
    let mut block_no: u64 = 1;
    let mut n: u64 = 0;
    loop {
        let big = parser.section().endianness == Endianness::Big;
        let len = match block_len(inp.avail(), big) {
            BlockLen::Len(l) => l,
            BlockLen::Bad(m) => {
                let at = format!("block {} (byte {})", block_no + 1, inp.offset);
                rest_unusable(path, report, at, m);
                return Ok(());
            }
            BlockLen::Need(w) => {
                if !inp.fill(w).map_err(io)? && inp.avail().len() < w {
                    if !inp.avail().is_empty() {
                        report.read += 1;
                        let at = format!(
                            "{}: block {} (byte {})",
                            path.display(),
                            block_no + 1,
                            inp.offset
                        );
                        report.skip(SKIP_LAST, || at);
                    }
                    return Ok(());
                }
                continue;
            }
        };
        block_no += 1;
        let at = format!("block {block_no} (byte {})", inp.offset);
        let bytes = &inp.avail()[..len];
        let ty = u32_at(bytes, 0, big);
        let is_packet = matches!(ty, 2 | 3 | 6);
        match parser.next_block(bytes) {
            Ok((_, Block::EnhancedPacket(epb))) => {
                n += 1;
                report.read += 1;
                match parser.interfaces().get(epb.interface_id as usize) {
                    Some(iface) => {
                        let (units, off) = ts_scale(&iface.options);
                        let frame = Frame {
                            n,
                            ts_us: ticks_to_us(epb.timestamp.as_nanos(), units, off),
                            link: iface.linktype,
                            data: &epb.data,
                            cut: (epb.original_len as usize) > epb.data.len(),
                        };
                        on_frame(frame, report)?;
                    }
                    None => report.skip(SKIP_NO_IFACE, || format!("{}: {at}", path.display())),
                }
            }
            Ok((_, Block::Packet(pb))) => {
                n += 1;
                report.read += 1;
                match parser.interfaces().get(usize::from(pb.interface_id)) {
                    Some(iface) => {
                        let (units, off) = ts_scale(&iface.options);
                        let frame = Frame {
                            n,
                            ts_us: ticks_to_us(u128::from(pb.timestamp), units, off),
                            link: iface.linktype,
                            data: &pb.data,
                            cut: (pb.original_len as usize) > pb.data.len(),
                        };
                        on_frame(frame, report)?;
                    }
                    None => report.skip(SKIP_NO_IFACE, || format!("{}: {at}", path.display())),
                }
            }
            Ok((_, Block::SimplePacket(_))) => {
                n += 1;
                report.read += 1;
                report.skip(SKIP_SIMPLE, || format!("{}: {at}", path.display()));
            }
            Ok(_) => {}
            // Section and interface blocks define how every later packet is read: without
            // them nothing after can be trusted.
            Err(e) if !is_packet => {
                if ty == 0x0a0d_0d0a || ty == 1 {
                    let what = if ty == 1 {
                        "interface description"
                    } else {
                        "section header"
                    };
                    rest_unusable(
                        path,
                        report,
                        at,
                        format!("expected a valid {what} block: {e}"),
                    );
                    return Ok(());
                }
            }
            Err(e) => {
                n += 1;
                report.read += 1;
                report.skip(SKIP_BLOCK, || format!("{}: {at}: {e}", path.display()));
            }
        }
        inp.consume(len);
    }
}

/// What a frame turned out to be.
enum Decoded<'a> {
    Tcp(Segment<'a>),
    Ignore(&'static str),
    Skip(&'static str),
}

/// Slices what follows a Linux cooked header of `len` bytes whose protocol (an EtherType)
/// is at `proto_at`; `None` when the frame is shorter than the header.
fn cooked(
    d: &[u8],
    proto_at: usize,
    len: usize,
) -> Option<Result<SlicedPacket<'_>, etherparse::err::packet::SliceError>> {
    let proto = d.get(proto_at..proto_at + 2)?;
    let rest = d.get(len..)?;
    Some(SlicedPacket::from_ether_type(
        EtherType(u16::from_be_bytes([proto[0], proto[1]])),
        rest,
    ))
}

/// Peels link, IP and TCP headers.
fn decode<'a>(f: &Frame<'a>) -> Decoded<'a> {
    let d = f.data;
    let sliced = match f.link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(d),
        // Linux cooked v1: packet type (2), ARPHRD (2), address length (2), address (8),
        // protocol (2). Read here rather than by etherparse, which refuses ARPHRD types
        // such as loopback (772) that `tcpdump -i any` records for `lo`.
        DataLink::LINUX_SLL => match cooked(d, 14, 16) {
            Some(r) => r,
            None => return Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD }),
        },
        // Linux cooked v2: protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type
        // (1), address length (1), address (8), then the network layer.
        DataLink::LINUX_SLL2 => match cooked(d, 0, 20) {
            Some(r) => r,
            None => return Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD }),
        },
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(d),
        // BSD loopback: a 4-byte address family, then IP.
        DataLink::NULL | DataLink::LOOP => match d.get(4..) {
            Some(rest) => SlicedPacket::from_ip(rest),
            None => return Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD }),
        },
        _ => return Decoded::Skip(SKIP_LINK),
    };
    let p = match sliced {
        Ok(p) => p,
        Err(_) => return Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD }),
    };
    let (src_ip, dst_ip, payload) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
            ip.payload(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
            ip.payload(),
        ),
        _ => return Decoded::Ignore(IGN_NOT_IP),
    };
    if payload.fragmented {
        return Decoded::Skip(SKIP_FRAGMENT);
    }
    match &p.transport {
        // Strict slicing checked the IP length against the captured bytes, so even in a
        // frame cut by the snap length (`f.cut`) the TCP payload here is whole: what was
        // cut is link padding or a trailer. A payload really cut fails slicing above.
        Some(TransportSlice::Tcp(t)) => Decoded::Tcp(Segment {
            src: SocketAddr::new(src_ip, t.source_port()),
            dst: SocketAddr::new(dst_ip, t.destination_port()),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            syn: t.syn(),
            has_ack: t.ack(),
            fin: t.fin(),
            rst: t.rst(),
            payload: t.payload(),
            ts_us: f.ts_us,
        }),
        None if payload.ip_number == IpNumber::TCP => {
            Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD })
        }
        _ => Decoded::Ignore(IGN_NOT_TCP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Exchange;

    /// A scripted TCP conversation, built segment by segment after a full handshake.
    struct Talk {
        segs: Vec<(bool, u32, Vec<u8>, bool, bool)>,
        c: u32,
        s: u32,
    }

    const C_ISN: u32 = u32::MAX - 10; // so client sequence numbers wrap
    const S_ISN: u32 = 5000;

    impl Talk {
        fn new() -> Self {
            Talk {
                segs: vec![
                    (true, C_ISN, vec![], true, false),
                    (false, S_ISN, vec![], true, false),
                ],
                c: C_ISN.wrapping_add(1),
                s: S_ISN + 1,
            }
        }
        fn client(mut self, data: &[u8]) -> Self {
            self.segs.push((true, self.c, data.to_vec(), false, false));
            self.c = self.c.wrapping_add(data.len() as u32);
            self
        }
        fn server(mut self, data: &[u8]) -> Self {
            self.segs.push((false, self.s, data.to_vec(), false, false));
            self.s = self.s.wrapping_add(data.len() as u32);
            self
        }
        /// The next `n` client bytes are never captured.
        fn lose_client(mut self, n: u32) -> Self {
            self.c = self.c.wrapping_add(n);
            self
        }
        fn fin(mut self, client: bool) -> Self {
            let seq = if client { self.c } else { self.s };
            self.segs.push((client, seq, vec![], false, true));
            self
        }
        fn run(self) -> (Vec<Exchange>, ImportReport) {
            let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
            let server: SocketAddr = "10.0.0.2:80".parse().unwrap();
            let mut out = Vec::new();
            let mut report = ImportReport::new("packets");
            let mut tracker = tcp::Tracker::default();
            let file = std::path::PathBuf::from("t.pcap");
            for (i, (from_client, seq, data, syn, fin)) in self.segs.iter().enumerate() {
                let (src, dst) = if *from_client {
                    (client, server)
                } else {
                    (server, client)
                };
                let seg = Segment {
                    src,
                    dst,
                    seq: *seq,
                    ack: if *syn && !from_client {
                        C_ISN.wrapping_add(1)
                    } else {
                        0
                    },
                    syn: *syn,
                    has_ack: !(*syn && *from_client),
                    fin: *fin,
                    rst: false,
                    payload: data,
                    ts_us: 1_000 * i as i64,
                };
                let mut ctx = Ctx {
                    sink: &mut out,
                    report: &mut report,
                    file: &file,
                    packet: i as u64 + 1,
                };
                tracker.segment(&seg, &mut ctx).unwrap();
            }
            let mut ctx = Ctx {
                sink: &mut out,
                report: &mut report,
                file: &file,
                packet: 0,
            };
            tracker.finish(&mut ctx).unwrap();
            (out, report)
        }
    }

    #[test]
    fn tls_streams_are_counted_as_unreadable_not_as_garbage() {
        // A ClientHello's first bytes, then the server's answer and more records.
        let (out, r) = Talk::new()
            .client(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03])
            .server(&[0x16, 0x03, 0x03, 0x00, 0x02, 0x02, 0x00])
            .client(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .fin(true)
            .fin(false)
            .run();
        assert!(out.is_empty());
        assert_eq!(r.skipped.len(), 1, "{r:?}");
        let (reason, n) = r.skipped.iter().next().unwrap();
        assert!(reason.starts_with("TCP streams that are TLS"), "{reason}");
        assert_eq!(*n, 1);
        // Plain HTTP that merely starts with 0x16 later is read as ever.
        let (out, r) = Talk::new()
            .client(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n\x16\x03")
            .fin(true)
            .fin(false)
            .run();
        assert_eq!((out.len(), r.skipped.len()), (1, 0), "{r:?}");
    }

    #[test]
    fn an_upgrade_pairs_the_101_and_counts_what_follows() {
        let (out, r) = Talk::new()
            .client(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
            .client(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .server(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n\x00\x00\x00\x04\x00")
            .fin(true)
            .fin(false)
            .run();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response.as_ref().unwrap().status, 101);
        assert_eq!(r.skipped.len(), 1, "{r:?}");
        assert!(r
            .skipped
            .keys()
            .next()
            .unwrap()
            .contains("switched protocols"));
    }

    #[test]
    fn interim_answers_and_read_until_close_bodies() {
        let (out, r) = Talk::new()
            .client(b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            .server(b"HTTP/1.1 100 Continue\r\n\r\n")
            .client(b"ok")
            .server(b"HTTP/1.0 200 OK\r\n\r\nuntil the ")
            .server(b"end")
            .fin(false)
            .fin(true)
            .run();
        assert!(r.skipped.is_empty(), "{r:?}");
        assert_eq!(out.len(), 1);
        let resp = out[0].response.as_ref().unwrap();
        assert_eq!((resp.status, &resp.body[..]), (200, &b"until the end"[..]));
        assert_eq!(&out[0].request.body[..], b"ok");
        // Last request packet is #5 (4 ms), first final-answer packet #6 (5 ms).
        assert_eq!(out[0].latency_us, Some(1_000));
    }

    #[test]
    fn what_cannot_be_used_is_counted_never_guessed() {
        // Not HTTP at all (an SSH client's banner).
        let (out, r) = Talk::new()
            .client(b"SSH-2.0-OpenSSH_9.6\r\n")
            .fin(true)
            .fin(false)
            .run();
        assert!(out.is_empty());
        assert!(
            r.skipped.keys().any(|k| k.contains("not HTTP/1.x")),
            "{r:?}"
        );

        // A lost client segment: the first request is whole, the second cannot be read.
        let (out, r) = Talk::new()
            .client(b"GET /a HTTP/1.1\r\n\r\n")
            .server(b"HTTP/1.1 204 No Content\r\n\r\n")
            .client(b"GET /b HTT")
            .lose_client(8)
            .client(b"\r\n\r\n")
            .fin(true)
            .fin(false)
            .run();
        assert_eq!(out.len(), 1);
        assert!(
            r.skipped.keys().any(|k| k.contains("lost segment")),
            "{r:?}"
        );
        assert!(
            r.skipped
                .keys()
                .any(|k| k.starts_with("requests cut short")),
            "{r:?}"
        );

        // The capture ends inside a response: the request is kept, without it.
        let (out, r) = Talk::new()
            .client(b"GET /c HTTP/1.1\r\n\r\n")
            .server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .run();
        assert_eq!(out.len(), 1);
        assert!(out[0].response.is_none());
        assert!(
            r.skipped
                .keys()
                .any(|k| k.starts_with("responses cut short")),
            "{r:?}"
        );
        assert!(
            r.examples
                .values()
                .flatten()
                .any(|e| e.contains("capture ended")),
            "{r:?}"
        );
        assert_eq!(
            r.notes.get("TCP streams still open when the capture ended"),
            Some(&1)
        );
    }
}
