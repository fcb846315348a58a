//! Reading zstd-compressed recordings so that a corrupt stream costs only what is corrupt.
//! zstd's own streaming reader hands nothing back from a call that fails, and one call may
//! decode several blocks: the blocks before a corrupt one would be lost with it. This
//! reader walks the frame format just far enough to know where each block ends and feeds
//! the decoder one block at a time, so every block before the corruption is handed out
//! before the error. Compression is recognised by the frame magic, not by the file name.

use std::io::{self, BufRead, Read};
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

/// The first bytes of a zstd frame (0xFD2FB528, little-endian).
const FRAME_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// True when `prefix`, the first bytes of a file, starts a zstd stream: a zstd frame, or a
/// skippable frame (magic 0x184D2A50 to 0x184D2A5F), which zstd tools may put first.
pub fn looks_like_zstd(prefix: &[u8]) -> bool {
    prefix.starts_with(&FRAME_MAGIC)
        || (prefix.len() >= 4 && prefix[0] & 0xf0 == 0x50 && prefix[1..4] == [0x2a, 0x4d, 0x18])
}

/// Where in the frame format the next input byte belongs.
#[derive(Clone, Copy, Debug)]
enum Walk {
    /// A frame's 4-byte magic number, `got` bytes of it seen.
    Magic { got: u8, bytes: [u8; 4] },
    /// The frame header descriptor byte, which says how long the rest of the header is.
    Descriptor,
    /// The 4-byte size of a skippable frame.
    SkipSize { got: u8, bytes: [u8; 4] },
    /// A 3-byte block header.
    BlockHeader {
        got: u8,
        bytes: [u8; 3],
        checksum: bool,
    },
    /// The rest of a block (`last` says whether the frame ends with it).
    Block {
        left: u32,
        last: bool,
        checksum: bool,
    },
    /// Bytes to pass over: the rest of a frame header, a checksum, a skippable frame.
    Skip { left: u32, then: Then },
    /// Not the frame format: left to the decoder, which reports it.
    Unknown,
}

#[derive(Clone, Copy, Debug)]
enum Then {
    Blocks { checksum: bool },
    NextFrame,
}

const FRAME_START: Walk = Walk::Magic {
    got: 0,
    bytes: [0; 4],
};

/// What follows a block: the next block, the frame's checksum, or the next frame.
fn after_block(last: bool, checksum: bool) -> Walk {
    match (last, checksum) {
        (false, _) => Walk::BlockHeader {
            got: 0,
            bytes: [0; 3],
            checksum,
        },
        (true, true) => Walk::Skip {
            left: 4,
            then: Then::NextFrame,
        },
        (true, false) => FRAME_START,
    }
}

impl Walk {
    /// Passes over `input` up to and including the last byte of the next block; returns
    /// how many bytes that is (all of `input` when no block ends in it).
    fn advance(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self {
                Walk::Magic { got, bytes } => {
                    bytes[*got as usize] = b;
                    *got += 1;
                    i += 1;
                    if *got == 4 {
                        *self = if *bytes == FRAME_MAGIC {
                            Walk::Descriptor
                        } else if looks_like_zstd(bytes) {
                            Walk::SkipSize {
                                got: 0,
                                bytes: [0; 4],
                            }
                        } else {
                            Walk::Unknown
                        };
                    }
                }
                Walk::Descriptor => {
                    i += 1;
                    let fcs_flag = b >> 6;
                    let single_segment = b & 0x20 != 0;
                    let checksum = b & 0x04 != 0;
                    let window = u32::from(!single_segment);
                    let dict = [0, 1, 2, 4][usize::from(b & 3)];
                    let fcs = match fcs_flag {
                        0 => u32::from(single_segment),
                        1 => 2,
                        2 => 4,
                        _ => 8,
                    };
                    *self = Walk::Skip {
                        left: window + dict + fcs,
                        then: Then::Blocks { checksum },
                    };
                }
                Walk::SkipSize { got, bytes } => {
                    bytes[*got as usize] = b;
                    *got += 1;
                    i += 1;
                    if *got == 4 {
                        *self = Walk::Skip {
                            left: u32::from_le_bytes(*bytes),
                            then: Then::NextFrame,
                        };
                    }
                }
                Walk::BlockHeader {
                    got,
                    bytes,
                    checksum,
                } => {
                    bytes[*got as usize] = b;
                    *got += 1;
                    i += 1;
                    if *got == 3 {
                        let h = u32::from(bytes[0])
                            | u32::from(bytes[1]) << 8
                            | u32::from(bytes[2]) << 16;
                        let rle = (h >> 1) & 3 == 1;
                        let left = if rle { 1 } else { h >> 3 };
                        let (last, checksum) = (h & 1 == 1, *checksum);
                        if left == 0 {
                            *self = after_block(last, checksum);
                            return i;
                        }
                        *self = Walk::Block {
                            left,
                            last,
                            checksum,
                        };
                    }
                }
                Walk::Block {
                    left,
                    last,
                    checksum,
                } => {
                    let n = (*left as usize).min(input.len() - i);
                    i += n;
                    *left -= n as u32;
                    if *left == 0 {
                        *self = after_block(*last, *checksum);
                        return i;
                    }
                }
                Walk::Skip { left, then } => {
                    let n = (*left as usize).min(input.len() - i);
                    i += n;
                    *left -= n as u32;
                    if *left == 0 {
                        *self = match *then {
                            Then::Blocks { checksum } => Walk::BlockHeader {
                                got: 0,
                                bytes: [0; 3],
                                checksum,
                            },
                            Then::NextFrame => FRAME_START,
                        };
                    }
                }
                Walk::Unknown => return input.len(),
            }
        }
        i
    }

    fn between_frames(&self) -> bool {
        matches!(self, Walk::Magic { got: 0, .. })
    }
}

/// A zstd stream read block by block: see the module docs.
pub struct BlockReader<R> {
    input: R,
    decoder: Decoder<'static>,
    walk: Walk,
    /// The last call filled the caller's buffer: the decoder may still hold part of that
    /// block, which must come out before it is given the next one.
    draining: bool,
}

/// Largest window (log2 bytes) a recording's frames may ask the decoder to hold: 128 MiB,
/// what `zstd --long` and `--ultra -22` write and libzstd's own default, set here so the
/// bound does not move with the library. The tap's level 3 needs 2 MiB.
const WINDOW_LOG_MAX: u32 = 27;

impl<R: BufRead> BlockReader<R> {
    /// Decodes the zstd stream `input`.
    pub fn new(input: R) -> io::Result<Self> {
        let mut decoder = Decoder::new()?;
        decoder.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(WINDOW_LOG_MAX))?;
        Ok(BlockReader {
            input,
            decoder,
            walk: FRAME_START,
            draining: false,
        })
    }
}

fn corrupt(e: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt zstd data ({e})"),
    )
}

impl<R: BufRead> Read for BlockReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.draining {
                let mut out = OutBuffer::around(&mut *buf);
                self.decoder
                    .run(&mut InBuffer::around(&[]), &mut out)
                    .map_err(corrupt)?;
                let n = out.pos();
                self.draining = n == buf.len();
                if n > 0 {
                    return Ok(n);
                }
            }
            let available = self.input.fill_buf()?;
            if available.is_empty() {
                return if self.walk.between_frames() {
                    Ok(0)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "zstd stream ends mid-frame",
                    ))
                };
            }
            let mut ahead = self.walk;
            let offer = ahead.advance(available);
            let mut src = InBuffer::around(&available[..offer]);
            let mut out = OutBuffer::around(&mut *buf);
            self.decoder.run(&mut src, &mut out).map_err(corrupt)?;
            let (used, n) = (src.pos(), out.pos());
            if used == 0 && n == 0 {
                // Never expected of zstd; an error here is better than spinning forever.
                return Err(corrupt(io::Error::other("the decoder takes no more input")));
            }
            self.walk.advance(&available[..used]);
            self.input.consume(used);
            self.draining = n == buf.len();
            if n > 0 {
                return Ok(n);
            }
        }
    }
}

/// Where each block of a zstd stream ends (byte offsets), for tests that corrupt one.
#[cfg(test)]
pub(crate) fn block_ends(data: &[u8]) -> Vec<usize> {
    let mut walk = FRAME_START;
    let mut ends = Vec::new();
    let mut at = 0;
    while at < data.len() {
        at += walk.advance(&data[at..]);
        ends.push(at);
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend_from_slice(format!("line {i} {}\n", "x".repeat(i % 200)).as_bytes());
        }
        v
    }

    fn read_all(data: &[u8]) -> (Vec<u8>, Option<io::Error>) {
        let mut r = BlockReader::new(io::BufReader::with_capacity(4096, data)).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0; 7000];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn decodes_whole_streams_with_several_frames_and_checksums() {
        let plain = lines(5000);
        let mut packed = zstd::encode_all(&plain[..], 3).unwrap();
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        enc.include_checksum(true).unwrap();
        enc.set_pledged_src_size(Some(plain.len() as u64)).unwrap();
        io::Write::write_all(&mut enc, &plain).unwrap();
        packed.extend(enc.finish().unwrap());
        // A skippable frame between the two, as some zstd tools write.
        let mut skippable = vec![0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
        skippable.extend(zstd::encode_all(&b"tail\n"[..], 19).unwrap());
        packed.extend(skippable);
        let (out, err) = read_all(&packed);
        assert!(err.is_none(), "{err:?}");
        let mut want = plain.clone();
        want.extend_from_slice(&plain);
        want.extend_from_slice(b"tail\n");
        assert_eq!(out, want);
    }

    #[test]
    fn everything_before_a_corrupt_block_is_handed_out() {
        let plain = lines(20000);
        let packed = zstd::encode_all(&plain[..], 3).unwrap();
        let ends = block_ends(&packed);
        assert!(ends.len() > 4, "{ends:?}");
        let mut bad = packed.clone();
        let victim = (ends[2] + ends[3]) / 2;
        for b in &mut bad[victim..victim + 64] {
            *b ^= 0x5a;
        }
        let (out, err) = read_all(&bad);
        let err = err.expect("corruption is reported");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        // The first three blocks decode to 3 x 128 KiB (zstd's largest block).
        assert!(out.len() >= 3 * (128 << 10), "{}", out.len());
        assert_eq!(out[..3 * (128 << 10)], plain[..3 * (128 << 10)]);
    }

    #[test]
    fn a_cut_stream_ends_early_after_its_whole_blocks() {
        let plain = lines(20000);
        let packed = zstd::encode_all(&plain[..], 3).unwrap();
        let (out, err) = read_all(&packed[..packed.len() / 2]);
        assert_eq!(err.unwrap().kind(), io::ErrorKind::UnexpectedEof);
        assert!(!out.is_empty());
        assert_eq!(out[..], plain[..out.len()]);
    }

    #[test]
    fn magic_bytes_are_recognised() {
        assert!(looks_like_zstd(&zstd::encode_all(&b"x"[..], 1).unwrap()));
        assert!(looks_like_zstd(&[0x50, 0x2a, 0x4d, 0x18]));
        assert!(!looks_like_zstd(b"{\"shadowdiff_recording\":1}"));
        assert!(!looks_like_zstd(b""));
    }

    /// A frame whose header asks for a window of `2^log` bytes, whatever its content.
    fn with_window(plain: &[u8], log: u32) -> Vec<u8> {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        enc.window_log(log).unwrap();
        io::Write::write_all(&mut enc, plain).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn a_frame_asking_for_more_than_a_128_mib_window_is_refused() {
        let plain = lines(100);
        let (out, err) = read_all(&with_window(&plain, WINDOW_LOG_MAX));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out, plain);
        let (out, err) = read_all(&with_window(&plain, WINDOW_LOG_MAX + 1));
        let err = err.expect("refused");
        assert!(out.is_empty());
        assert!(err.to_string().contains("memory"), "{err}");
    }
}
