//! An incremental decoder of the chunked transfer coding (RFC 9112 section 7.1). It is fed
//! the bytes as they arrive and says which ranges of them are content, so a caller that
//! passes the body on untouched copies nothing; only a chunk-size line or trailer section
//! split across reads is kept, and both are bounded.

use super::framing::Mode;
use std::ops::Range;

/// Longest chunk-size line (size and extensions) accepted.
pub const MAX_SIZE_LINE: usize = 4 * 1024;
/// Largest trailer section accepted.
pub const MAX_TRAILERS: usize = 64 * 1024;

/// Why a chunked body is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkError {
    /// Offset, in the slice last fed, of the byte that gave it away (or where the line it
    /// is in ended).
    pub at: usize,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataCr,
    DataLf,
    Trailers,
    Done,
}

/// The state of one chunked body between reads.
#[derive(Debug)]
pub struct ChunkedDecoder {
    mode: Mode,
    state: State,
    /// A chunk-size line read in part.
    line: Vec<u8>,
    /// The trailer section read so far, line ends included.
    trailers: Vec<u8>,
    /// Where in `trailers` the line being read starts.
    trailer_line: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new(mode: Mode) -> Self {
        ChunkedDecoder {
            mode,
            state: State::Size,
            line: Vec::new(),
            trailers: Vec::new(),
            trailer_line: 0,
        }
    }

    /// Looks at `buf`, the bytes that follow those fed before: how many of them belong to
    /// the body, and whether the body ends there. The ranges of `buf` that are content
    /// rather than framing are appended to `data`. Until the end, every byte is taken.
    pub fn feed(
        &mut self,
        buf: &[u8],
        data: &mut Vec<Range<usize>>,
    ) -> Result<(usize, bool), ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Size => {
                    let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(&buf[i..]);
                        if self.line.len() > MAX_SIZE_LINE {
                            return Err(error(
                                buf.len(),
                                format!("chunk-size line longer than {MAX_SIZE_LINE} bytes"),
                            ));
                        }
                        return Ok((buf.len(), false));
                    };
                    self.line.extend_from_slice(&buf[i..=i + nl]);
                    i += nl + 1;
                    if self.line.len() > MAX_SIZE_LINE {
                        return Err(error(
                            i,
                            format!("chunk-size line longer than {MAX_SIZE_LINE} bytes"),
                        ));
                    }
                    let size = chunk_size(&self.line, self.mode).ok_or_else(|| {
                        let shown = &self.line[..self.line.len().min(40)];
                        error(
                            i,
                            format!(
                                "expected a hex chunk size and CRLF, found {:?}",
                                String::from_utf8_lossy(shown)
                            ),
                        )
                    })?;
                    self.line.clear();
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(buf.len() - i);
                    data.push(i..i + take);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                }
                State::DataCr => {
                    match buf[i] {
                        b'\r' => self.state = State::DataLf,
                        b'\n' if self.mode == Mode::Lenient => self.state = State::Size,
                        _ => return Err(error(i, "chunk data longer than its size".into())),
                    }
                    i += 1;
                }
                State::DataLf => {
                    if buf[i] != b'\n' {
                        return Err(error(i, "chunk data not followed by CRLF".into()));
                    }
                    self.state = State::Size;
                    i += 1;
                }
                State::Trailers => {
                    let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') else {
                        self.trailers.extend_from_slice(&buf[i..]);
                        if self.trailers.len() > MAX_TRAILERS {
                            return Err(error(buf.len(), too_many_trailers()));
                        }
                        return Ok((buf.len(), false));
                    };
                    self.trailers.extend_from_slice(&buf[i..=i + nl]);
                    i += nl + 1;
                    if self.trailers.len() > MAX_TRAILERS {
                        return Err(error(i, too_many_trailers()));
                    }
                    let line = &self.trailers[self.trailer_line..];
                    self.trailer_line = self.trailers.len();
                    let Some(line) = line_content(line, self.mode) else {
                        return Err(error(i, "a trailer line does not end with CRLF".into()));
                    };
                    // An empty line ends the trailer section and the body.
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok((i, true));
                    }
                    if field(line, self.mode).is_none() {
                        return Err(error(
                            i,
                            format!(
                                "expected a `Name: value` trailer field, found {:?}",
                                String::from_utf8_lossy(&line[..line.len().min(40)])
                            ),
                        ));
                    }
                }
                State::Done => return Ok((i, true)),
            }
        }
        Ok((i, self.state == State::Done))
    }

    /// Bytes of the current chunk still to come: the least the body will yet grow by.
    pub fn chunk_left(&self) -> u64 {
        match self.state {
            State::Data(n) => n,
            _ => 0,
        }
    }

    /// Where in the body the decoder stands, for a message about a body cut short.
    pub fn stage(&self) -> &'static str {
        match self.state {
            State::Size => "inside a chunk-size line",
            State::Data(_) => "inside chunk data",
            State::DataCr | State::DataLf => "after chunk data",
            State::Trailers => "inside the trailer section",
            State::Done => "after the end",
        }
    }

    /// The trailer fields, name and value, in order (none until the body has ended).
    pub fn trailer_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mode = self.mode;
        self.trailers
            .split_inclusive(|&b| b == b'\n')
            .filter_map(move |l| line_content(l, mode))
            .filter_map(move |l| field(l, mode))
    }
}

fn error(at: usize, message: String) -> ChunkError {
    ChunkError { at, message }
}

fn too_many_trailers() -> String {
    format!("trailer section longer than {} KiB", MAX_TRAILERS >> 10)
}

/// A line (through its LF) without its line end; `None` when Strict and it does not end in
/// CRLF, or a CR is left inside it.
fn line_content(line: &[u8], mode: Mode) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\n")?;
    match line.strip_suffix(b"\r") {
        Some(l) if mode == Mode::Lenient || !l.contains(&b'\r') => Some(l),
        Some(_) => None,
        None if mode == Mode::Lenient => Some(line),
        None => None,
    }
}

/// The size of a chunk-size line (through its LF), extensions ignored.
fn chunk_size(line: &[u8], mode: Mode) -> Option<u64> {
    let line = line_content(line, mode)?;
    let (size, ext) = match line.iter().position(|&b| b == b';') {
        Some(semi) => (&line[..semi], Some(&line[semi + 1..])),
        None => (line, None),
    };
    let size = match mode {
        Mode::Lenient => size.trim_ascii(),
        // Whitespace may follow the size (before an extension), never precede it.
        Mode::Strict => size.trim_ascii_end(),
    };
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    // Extensions carry no CR or LF of their own, nor other control characters but tab.
    if mode == Mode::Strict
        && ext.is_some_and(|e| e.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f))
    {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

/// A trailer line as name and value: Strict wants a token name right before the colon.
fn field(line: &[u8], mode: Mode) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
    let name = match mode {
        Mode::Lenient => name.trim_ascii(),
        Mode::Strict => name,
    };
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if name.is_empty() || (mode == Mode::Strict && !name.iter().all(token)) {
        return None;
    }
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `body` in pieces of `step` bytes, as reads would bring it, keeping what is not
    /// taken for the next read; returns the content, the bytes taken, whether the end was
    /// found, and the decoder.
    fn decode(
        body: &[u8],
        step: usize,
        mode: Mode,
    ) -> Result<(Vec<u8>, usize, bool, ChunkedDecoder), ChunkError> {
        let mut d = ChunkedDecoder::new(mode);
        let (mut content, mut taken, mut data) = (Vec::new(), 0, Vec::new());
        let mut pending: Vec<u8> = Vec::new();
        for piece in body.chunks(step.max(1)) {
            pending.extend_from_slice(piece);
            data.clear();
            let (take, done) = d.feed(&pending, &mut data)?;
            for r in &data {
                content.extend_from_slice(&pending[r.clone()]);
            }
            pending.drain(..take);
            taken += take;
            if done {
                return Ok((content, taken, true, d));
            }
        }
        Ok((content, taken, false, d))
    }

    fn trailers(d: &ChunkedDecoder) -> Vec<(String, String)> {
        d.trailer_fields()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_chunked_body_ends_where_its_last_chunk_and_trailers_do_however_it_arrives() {
        let body =
            b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-checksum: 9\r\ngrpc-status: 0\r\n\r\nNEXT";
        let end = body.len() - 4;
        for mode in [Mode::Strict, Mode::Lenient] {
            for step in [1, 2, 3, 7, body.len()] {
                let (content, taken, done, d) = decode(body, step, mode).unwrap();
                assert!(done, "step {step}");
                assert_eq!(content, b"hello, world", "step {step}");
                assert_eq!(taken, end, "step {step}");
                assert_eq!(
                    trailers(&d),
                    [
                        ("x-checksum".into(), "9".into()),
                        ("grpc-status".into(), "0".into())
                    ]
                );
            }
        }
        let (content, taken, done, d) = decode(b"0\r\n\r\n", 1, Mode::Strict).unwrap();
        assert!(done && content.is_empty() && taken == 5 && trailers(&d).is_empty());
        let (_, _, done, d) = decode(b"5\r\nhel", 2, Mode::Strict).unwrap();
        assert!(!done);
        assert_eq!((d.chunk_left(), d.stage()), (2, "inside chunk data"));
    }

    #[test]
    fn strict_refuses_what_peers_read_differently_and_lenient_takes_bare_lf() {
        let cases: [(&[u8], bool); 12] = [
            (b"zz\r\n", false),
            (b";ext\r\nhello\r\n", false),
            (b"5\nhello\r\n0\r\n\r\n", true),
            (b"5\r\nhello\n0\r\n\r\n", true),
            (b"0\r\nx-t: 1\n\r\n", true),
            (b"0\r\nx-t: 1\n\n", true),
            (b"2\r\nhello\r\n", false),
            (b" 5\r\nhello\r\n0\r\n\r\n", true),
            (b"5;a\rb\r\nhello\r\n0\r\n\r\n", true),
            (b"0\r\nno colon\r\n\r\n", false),
            (b"0\r\nbad name: 1\r\n\r\n", true),
            (b"11111111111111111\r\n", false),
        ];
        for (bad, lenient_takes) in cases {
            let strict = decode(bad, bad.len(), Mode::Strict);
            assert!(
                strict.is_err(),
                "strict took {:?}",
                String::from_utf8_lossy(bad)
            );
            let lenient = decode(bad, bad.len(), Mode::Lenient);
            assert_eq!(
                lenient.is_ok(),
                lenient_takes,
                "lenient on {:?}: {lenient:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let (content, _, done, d) = decode(
            b"3;x=y\r\nabc\r\n2\nde\n0\r\nGrpc-Status: 0\n\n",
            1,
            Mode::Lenient,
        )
        .unwrap();
        assert!(done);
        assert_eq!(content, b"abcde");
        assert_eq!(trailers(&d), [("Grpc-Status".into(), "0".into())]);
    }

    #[test]
    fn size_lines_and_trailers_are_bounded() {
        for step in [1, 1000, 6000] {
            let e = decode(&[b'1'; 5000], step, Mode::Strict).unwrap_err();
            assert!(e.message.contains("chunk-size line longer"), "{e:?}");
        }
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_SIZE_LINE));
        long.extend_from_slice(b"\r\n");
        assert!(decode(&long, long.len(), Mode::Lenient).is_err());
        let mut t = b"0\r\n".to_vec();
        while t.len() <= MAX_TRAILERS + 10 {
            t.extend_from_slice(b"x-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        t.extend_from_slice(b"\r\n");
        let e = decode(&t, 4096, Mode::Strict).unwrap_err();
        assert!(e.message.contains("trailer section longer"), "{e:?}");
    }

    /// `body` in chunks of `sizes`, what is left in one more, then the last chunk with
    /// `trailers`.
    fn encode(body: &[u8], sizes: &[usize], ext: bool, trailer: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut sizes = sizes.iter();
        while !rest.is_empty() {
            let n = sizes.next().map_or(rest.len(), |n| (*n).min(rest.len()));
            out.extend_from_slice(format!("{n:X}").as_bytes());
            if ext {
                out.extend_from_slice(b";name=\"v\"");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n");
        if trailer {
            out.extend_from_slice(b"grpc-status: 0\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::fuzz_cases(256), ..ProptestConfig::default() })]

        /// Any chunking of any body, read in any pieces and either mode, gives back the
        /// body, ends exactly at its last byte, and leaves what follows alone.
        #[test]
        fn any_chunking_read_in_any_pieces_gives_back_the_body(
            body in prop::collection::vec(any::<u8>(), 0..300),
            sizes in prop::collection::vec(1usize..40, 0..10),
            ext in any::<bool>(),
            trailer in any::<bool>(),
            step in 1usize..64,
            lenient in any::<bool>(),
        ) {
            let mode = if lenient { Mode::Lenient } else { Mode::Strict };
            let mut wire = encode(&body, &sizes, ext, trailer);
            let end = wire.len();
            wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let (content, taken, done, d) = decode(&wire, step, mode).unwrap();
            prop_assert!(done);
            prop_assert_eq!(content, body);
            prop_assert_eq!(taken, end);
            prop_assert_eq!(trailers(&d).len(), usize::from(trailer));
        }

        /// Whatever the bytes, the decoder ends, errs or asks for more; it never panics,
        /// and never claims more content than it was given.
        #[test]
        fn any_bytes_are_decoded_or_refused_without_panic(
            wire in prop::collection::vec(any::<u8>(), 0..200),
            step in 1usize..32,
            lenient in any::<bool>(),
        ) {
            let mode = if lenient { Mode::Lenient } else { Mode::Strict };
            if let Ok((content, taken, _, _)) = decode(&wire, step, mode) {
                prop_assert!(content.len() <= taken && taken <= wire.len());
            }
        }
    }
}
