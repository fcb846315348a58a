//! Writes one exchange line of the recording format by hand: the same bytes serde_json
//! writes for [`super::format`]'s wire shapes (a test holds the two to each other), in a
//! little over half the time. The tap's recorder writes a line for every exchange it keeps, on
//! the same cores that serve production traffic, and serde_json's string escaping, which
//! looks at every byte on its own, was the largest single cost of that thread. Here a
//! string is scanned eight bytes at a time and copied in runs.
//!
//! Reading stays with serde (it must name bad fields); only writing is done here, and it
//! cannot fail: every value of an [`Exchange`] has a JSON form.

use super::format::{format_ts_us, ts_digits};
use crate::exchange::{Exchange, Headers};
use base64::Engine;
use bytes::Bytes;

/// Appends `ex` as one line (without the trailing newline) to `out`.
pub fn write_exchange(ex: &Exchange, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    string(out, &ex.id);
    out.extend_from_slice(b",\"ts\":");
    match ts_digits(ex.ts_us) {
        // Digits and separators: nothing to escape.
        Some(d) => {
            out.push(b'"');
            out.extend_from_slice(&d);
            out.push(b'"');
        }
        None => string(out, &format_ts_us(ex.ts_us)),
    }
    if let Some(i) = &ex.interface {
        out.extend_from_slice(b",\"interface\":");
        string(out, i);
    }
    if let Some(t) = &ex.tenant {
        out.extend_from_slice(b",\"tenant\":");
        string(out, t);
    }
    let r = &ex.request;
    out.extend_from_slice(b",\"request\":{\"method\":");
    string(out, &r.method);
    out.extend_from_slice(b",\"uri\":");
    string(out, &r.uri);
    out.extend_from_slice(b",\"version\":");
    string(out, &r.version);
    out.extend_from_slice(b",\"headers\":");
    headers(out, &r.headers);
    body(out, &r.body);
    // The request always states whether its body was cut; the response only when it was
    // (the wire shapes' serde attributes, kept as they are).
    out.extend_from_slice(if r.body_truncated {
        b",\"body_truncated\":true"
    } else {
        b",\"body_truncated\":false"
    });
    if let Some(tls) = &r.tls {
        out.extend_from_slice(b",\"scheme\":\"https\"");
        if let Some(a) = &tls.alpn {
            out.extend_from_slice(b",\"alpn\":");
            string(out, a);
        }
    }
    out.push(b'}');
    if let Some(resp) = &ex.response {
        out.extend_from_slice(b",\"response\":{\"status\":");
        number(out, u64::from(resp.status));
        out.extend_from_slice(b",\"headers\":");
        headers(out, &resp.headers);
        if let Some(t) = &resp.trailers {
            out.extend_from_slice(b",\"trailers\":");
            headers(out, t);
        }
        body(out, &resp.body);
        if resp.body_truncated {
            out.extend_from_slice(b",\"body_truncated\":true");
        }
        out.push(b'}');
    }
    if let Some(l) = ex.latency_us {
        out.extend_from_slice(b",\"latency_us\":");
        number(out, l);
    }
    out.push(b'}');
}

/// `,"body":...,"body_encoding":...`: the text itself when it is UTF-8, else base64.
fn body(out: &mut Vec<u8>, b: &Bytes) {
    out.extend_from_slice(b",\"body\":");
    match std::str::from_utf8(b) {
        Ok(s) => {
            string(out, s);
            out.extend_from_slice(b",\"body_encoding\":\"utf8\"");
        }
        Err(_) => {
            // Base64 needs no escaping; binary bodies are rare enough for its own `String`.
            out.push(b'"');
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            );
            out.extend_from_slice(b"\",\"body_encoding\":\"base64\"");
        }
    }
}

/// Header fields as a list of `[name, value]` pairs.
fn headers(out: &mut Vec<u8>, h: &Headers) {
    out.push(b'[');
    for (i, (name, value)) in h.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        string(out, name);
        out.push(b',');
        string(out, value);
        out.push(b']');
    }
    out.push(b']');
}

fn number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `at` as one word, the first byte lowest.
fn word(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// A mask with the high bit set in each byte of `w` that must be escaped (a control
/// character below 0x20, `"` or `\`), exact up to and including the first such byte (the
/// borrows of the subtractions can only mark bytes after it), which is all the scan uses.
fn escapes(w: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(LOW) & !x & HIGH;
    let below_space = w.wrapping_sub(LOW * 0x20) & !w & HIGH;
    below_space | zero(w ^ (LOW * u64::from(b'"'))) | zero(w ^ (LOW * u64::from(b'\\')))
}

/// The position of the first byte at or after `from` that must be escaped.
fn next_escape(bytes: &[u8], mut from: usize) -> Option<usize> {
    while let Some(w) = word(bytes, from) {
        let m = escapes(w);
        if m != 0 {
            return Some(from + (m.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|p| from + p)
}

/// The letter after the backslash for each byte [`escapes`] finds: the short form where
/// JSON has one, `u` for `\u00XX`.
const SHORT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t
};

/// A JSON string, escaped as serde_json escapes: `"` and `\` with a backslash, the control
/// characters with their short form where JSON has one and `\u00XX` otherwise, everything
/// else (DEL and non-ASCII included) as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(at) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..at]);
        let b = bytes[at];
        // A table, not a `match`: the jump a match compiles to was mispredicted on JSON
        // bodies, which escape a quote every few bytes.
        let short = SHORT[usize::from(b)];
        out.extend_from_slice(&[b'\\', short]);
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Request, Response};
    use proptest::prelude::*;

    fn serde_string(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    fn mine(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        string(&mut out, s);
        out
    }

    #[test]
    fn every_character_class_is_escaped_as_serde_json_does() {
        // Each byte below 0x80 at each position of a chunk, and across chunk borders.
        for b in 0u8..0x80 {
            for at in 0..17 {
                let mut s = "abcdefghijklmnopq".to_string().into_bytes();
                s[at] = b;
                let s = String::from_utf8(s).unwrap();
                assert_eq!(mine(&s), serde_string(&s), "byte {b:#x} at {at}");
            }
        }
        for s in [
            "",
            "\"",
            "\\\\",
            "é\u{7f}\u{2028}日本",
            "a\u{1}b\u{1f}c\"d\\e\u{0}",
        ] {
            assert_eq!(mine(s), serde_string(s), "{s:?}");
        }
    }

    #[test]
    fn numbers_are_plain_decimals() {
        for n in [0u64, 7, 10, 65535, u64::MAX] {
            let mut out = Vec::new();
            number(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    fn arb_text() -> impl Strategy<Value = String> {
        // Mostly plain text, with control characters, quotes, backslashes and non-ASCII.
        proptest::string::string_regex(
            "([a-z0-9 /:;=.-]|\"|\\\\|[\\x00-\\x1f]|\\x7f|é|日|\u{2028}|\u{1f600}|\u{10ffff}){0,40}",
        )
            .unwrap()
    }

    fn arb_headers() -> impl Strategy<Value = Headers> {
        proptest::collection::vec((arb_text(), arb_text()), 0..4)
    }

    fn arb_body() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            arb_text().prop_map(Bytes::from),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from),
        ]
    }

    prop_compose! {
        fn arb_exchange()(
            id in arb_text(),
            ts_us in -62_135_596_800_000_000i64..253_402_300_799_999_999,
            interface in proptest::option::of(arb_text()),
            tenant in proptest::option::of(arb_text()),
            method in arb_text(),
            uri in arb_text(),
            version in arb_text(),
            req_headers in arb_headers(),
            req_body in arb_body(),
            req_cut in any::<bool>(),
            tls in proptest::option::of(proptest::option::of(arb_text())),
            response in proptest::option::of((
                any::<u16>(), arb_headers(), proptest::option::of(arb_headers()), arb_body(),
                any::<bool>(),
            )),
            latency_us in proptest::option::of(any::<u64>()),
        ) -> Exchange {
            Exchange {
                id,
                ts_us,
                interface,
                tenant,
                request: Request {
                    method,
                    uri,
                    version,
                    headers: req_headers,
                    body: req_body,
                    body_truncated: req_cut,
                    tls: tls.map(|alpn| crate::exchange::Tls { alpn }),
                },
                response: response.map(|(status, headers, trailers, body, body_truncated)| {
                    Response { status, headers, trailers, body, body_truncated }
                }),
                latency_us,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn lines_are_the_bytes_serde_json_writes(ex in arb_exchange()) {
            let mut by_hand = Vec::new();
            write_exchange(&ex, &mut by_hand);
            let by_serde = super::super::format::serde_line(&ex);
            prop_assert!(
                by_hand == by_serde,
                "by hand: {}\nserde:   {}",
                String::from_utf8_lossy(&by_hand),
                String::from_utf8_lossy(&by_serde)
            );
        }
    }
}
