//! Undoes `Content-Encoding` (gzip, deflate, br, zstd) so bodies are compared as content,
//! not as the bytes one particular compressor happened to produce.

use bytes::Bytes;
use std::io::Read;

/// Default cap on a decoded body: large enough for any API answer, small enough that a
/// decompression bomb cannot exhaust memory.
pub const DEFAULT_DECODE_LIMIT: usize = 64 << 20;

/// How a decoding error caused by the size limit (not by corrupt data) begins its message.
const LIMIT_PHRASE: &str = "decoded body exceeds the limit of";

/// True when an error from [`decode_body`] or `decode_one` means the output outgrew the
/// limit, rather than that the data is corrupt.
pub(crate) fn is_limit_error(message: &str) -> bool {
    message.contains(LIMIT_PHRASE)
}

/// Decodes `body` according to the `Content-Encoding` headers in `headers`.
///
/// Codings are undone in reverse order of listing (the last applied is the first removed),
/// whether listed in one header or several. With no coding, or only `identity`, the same
/// buffer is returned without copying. Fails on an unknown coding (naming it), on corrupt
/// data, or when the decoded size would exceed `limit` bytes.
pub fn decode_body(
    headers: &[(String, String)],
    body: &Bytes,
    limit: usize,
) -> Result<Bytes, String> {
    let codings = content_codings(headers);
    if codings.is_empty() {
        return Ok(body.clone());
    }
    // HEAD answers, 204s and 304s carry the header of the representation without its body;
    // an empty body is not a corrupt stream.
    if body.is_empty() {
        return Ok(body.clone());
    }
    let mut current = body.clone();
    for coding in codings.iter().rev() {
        current = Bytes::from(decode_one(coding, &current, limit)?);
    }
    Ok(current)
}

/// The codings listed across all `Content-Encoding` headers, lower-cased, `identity` dropped.
fn content_codings(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-encoding"))
        .flat_map(|(_, value)| value.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect()
}

/// Largest zstd window (log2 bytes) a body may ask for: 8 MiB, the most RFC 9659 lets a
/// `zstd` content coding use. Bodies are decoded by many workers at once, and a frame header
/// may otherwise ask each for 128 MiB whatever the body's size.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Undoes one coding (`gzip`, `x-gzip`, `deflate`, `br`, `zstd`), failing past `limit`
/// bytes. Also used for gRPC's per-message compression, which names codings the same way.
pub(crate) fn decode_one(coding: &str, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    match coding {
        // Multi-member: concatenated gzip members are one valid gzip stream.
        "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(data), limit)
            .map_err(|e| format!("gzip: {e}")),
        "deflate" => decode_deflate(data, limit).map_err(|e| format!("deflate: {e}")),
        "br" => read_limited(brotli::Decompressor::new(data, 8 << 10), limit)
            .map_err(|e| format!("br: {e}")),
        "zstd" => zstd::stream::read::Decoder::new(data)
            .and_then(|mut d| {
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                read_limited(d, limit)
            })
            .map_err(|e| format!("zstd: {e}")),
        other => Err(format!("unsupported content-encoding {other:?}")),
    }
}

/// `deflate` is specified as zlib-wrapped, but some servers send raw deflate; both are
/// accepted, zlib first.
fn decode_deflate(data: &[u8], limit: usize) -> Result<Vec<u8>, std::io::Error> {
    let zlib = read_limited(flate2::read::ZlibDecoder::new(data), limit);
    match zlib {
        Ok(v) => Ok(v),
        // Exceeding the limit is final: trying the other framing would just hit it again.
        Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => Err(e),
        Err(zlib_err) => {
            read_limited(flate2::read::DeflateDecoder::new(data), limit).map_err(|raw_err| {
                std::io::Error::new(
                    raw_err.kind(),
                    format!("not zlib ({zlib_err}) nor raw deflate ({raw_err})"),
                )
            })
        }
    }
}

/// Reads the whole decoder output, failing once it passes `limit` rather than after
/// allocating whatever a bomb expands to.
fn read_limited<R: Read>(reader: R, limit: usize) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("{LIMIT_PHRASE} {limit} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn hdr(v: &str) -> Vec<(String, String)> {
        vec![
            ("Content-Type".to_string(), "text/plain".to_string()),
            ("Content-Encoding".to_string(), v.to_string()),
        ]
    }

    fn sample() -> Vec<u8> {
        (0..5000)
            .flat_map(|i| format!("line {i} of the sample\n").into_bytes())
            .collect()
    }

    fn gzip(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    fn zlib(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    fn brotli(d: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(d).unwrap();
        }
        out
    }

    fn zstd(d: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(d, 3).unwrap()
    }

    fn roundtrip(coding: &str, encoded: Vec<u8>) {
        let got = decode_body(&hdr(coding), &Bytes::from(encoded), DEFAULT_DECODE_LIMIT).unwrap();
        assert_eq!(got.as_ref(), sample().as_slice(), "{coding}");
    }

    #[test]
    fn gzip_roundtrip() {
        roundtrip("gzip", gzip(&sample()));
        roundtrip("x-gzip", gzip(&sample()));
        roundtrip("GZIP", gzip(&sample()));
    }

    #[test]
    fn deflate_zlib_and_raw() {
        roundtrip("deflate", zlib(&sample()));
        roundtrip("deflate", raw_deflate(&sample()));
    }

    #[test]
    fn br_and_zstd_roundtrip() {
        roundtrip("br", brotli(&sample()));
        roundtrip("zstd", zstd(&sample()));
    }

    #[test]
    fn stacked_codings_undone_in_reverse() {
        // Applied gzip first, then br: listed in application order.
        roundtrip("gzip, br", brotli(&gzip(&sample())));
        roundtrip("identity, zstd ,gzip", gzip(&zstd(&sample())));
        let headers = vec![
            ("content-encoding".to_string(), "deflate".to_string()),
            ("content-encoding".to_string(), "zstd".to_string()),
        ];
        let got = decode_body(&headers, &Bytes::from(zstd(&zlib(&sample()))), usize::MAX).unwrap();
        assert_eq!(got.as_ref(), sample().as_slice());
    }

    #[test]
    fn no_encoding_returns_same_buffer() {
        let body = Bytes::from(sample());
        for headers in [vec![], hdr("identity"), hdr("")] {
            let got = decode_body(&headers, &body, 10).unwrap();
            assert_eq!(got.as_ptr(), body.as_ptr());
            assert_eq!(got.len(), body.len());
        }
    }

    #[test]
    fn empty_body_with_encoding_is_empty() {
        assert!(decode_body(&hdr("gzip"), &Bytes::new(), 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn unknown_encoding_is_named() {
        let e = decode_body(&hdr("gzip, compress"), &Bytes::from_static(b"x"), 100).unwrap_err();
        assert!(e.contains("compress"), "{e}");
    }

    #[test]
    fn corrupt_data_is_an_error() {
        for c in ["gzip", "deflate", "br", "zstd"] {
            let e = decode_body(
                &hdr(c),
                &Bytes::from_static(b"definitely not compressed"),
                1000,
            );
            assert!(e.is_err(), "{c}");
        }
    }

    #[test]
    fn a_zstd_body_asking_for_more_than_an_8_mib_window_is_refused() {
        let plain = b"{\"a\":1}".repeat(100);
        let frame = |log: u32| {
            let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
            enc.window_log(log).unwrap();
            std::io::Write::write_all(&mut enc, &plain).unwrap();
            Bytes::from(enc.finish().unwrap())
        };
        let ok = decode_body(&hdr("zstd"), &frame(ZSTD_WINDOW_LOG_MAX), 1 << 20).unwrap();
        assert_eq!(ok[..], plain[..]);
        let e = decode_body(&hdr("zstd"), &frame(ZSTD_WINDOW_LOG_MAX + 1), 1 << 20).unwrap_err();
        assert!(e.contains("zstd") && e.contains("memory"), "{e}");
    }

    #[test]
    fn decompression_limit() {
        let bomb = vec![0u8; 1 << 20];
        for (c, enc) in [
            ("gzip", gzip(&bomb)),
            ("deflate", zlib(&bomb)),
            ("br", brotli(&bomb)),
            ("zstd", zstd(&bomb)),
        ] {
            assert!(enc.len() < 10_000, "{c} compresses zeros well");
            let body = Bytes::from(enc);
            let e = decode_body(&hdr(c), &body, 1000).unwrap_err();
            assert!(is_limit_error(&e), "{c}: {e}");
            // Exactly at the limit is fine.
            assert_eq!(decode_body(&hdr(c), &body, 1 << 20).unwrap().len(), 1 << 20);
        }
    }
}
