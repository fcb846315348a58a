//! pcap and pcapng captures (tcpdump, dumpcap, Wireshark): reads the file's records
//! (pcap-file) and hands each frame to the packet [`Pipeline`] that `capture` uses too
//! (link and IP layers, TCP reassembly, HTTP/1.x pairing). Several files are one capture
//! (tcpdump `-C`/`-G` rotation), so a connection may span them.

use super::{ImportReport, Sink, MAX_BODY, SKIP_REST_UNUSABLE};
use crate::error::{Error, Result};
use crate::recording::packets::{Ctx, Frame, Pipeline};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{Endianness, TsResolution};
use std::io::Read;
use std::path::Path;

/// Largest packet record or pcapng block accepted; beyond any real snap length, so a
/// larger length field means a corrupt file, and memory stays bounded.
const MAX_RECORD: usize = MAX_BODY;
/// Bytes read from the file at a time.
const READ_CHUNK: usize = 1 << 20;

const SKIP_LAST: &str = "last packet cut short (the file ends inside it)";
const SKIP_BLOCK: &str = "pcapng packet blocks that could not be decoded";
const SKIP_SIMPLE: &str = "pcapng simple packet blocks (no timestamp, no interface)";
const SKIP_NO_IFACE: &str = "pcapng packets naming an interface the file does not describe";

/// Imports one or more capture files as one capture.
#[derive(Default)]
pub struct PcapImporter {
    pipeline: Pipeline,
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
        let pipeline = &mut self.pipeline;
        let mut on_frame = |frame: Frame<'_>, report: &mut ImportReport| -> Result<()> {
            let mut ctx = Ctx {
                sink: &mut *sink,
                report,
                file: path,
                packet: frame.n,
            };
            pipeline.frame(&frame, &mut ctx)
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
        self.pipeline.finish(&mut ctx)
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
