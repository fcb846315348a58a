//! Form bodies: `application/x-www-form-urlencoded` becomes an object of key -> list of
//! values (so a changed value reads `$.key[0]`), and `multipart/*` is split into parts that
//! are compared one by one, each part's body by its own content type, under `$.part.NAME`
//! (parts with unique names) or `$.parts[i]`.
//!
//! The multipart parser is deliberately small and bounded: it works on the body already in
//! memory, searches delimiters with `memchr::memmem` (linear time), keeps at most
//! [`MAX_PARTS`] parts, and reports a missing closing delimiter instead of failing.

use super::headers::diff_headers;
use super::json::{diff_json, key_path};
use super::{CompareOptions, DiffKind, Difference};
use crate::exchange::{header, Headers};
use serde_json::{Map, Value};

/// Most parts split out of one multipart body; the rest is reported, not compared.
pub const MAX_PARTS: usize = 1000;

/// Multipart bodies nested deeper than this (a `multipart/mixed` part inside a part ...)
/// are compared as plain content.
pub const MAX_NESTING: usize = 4;

/// Undoes percent-encoding; with `plus_as_space`, `+` is a space (form encoding). A `%`
/// not followed by two hex digits is kept as written; bytes that are not UTF-8 afterwards
/// are replaced, so the result is always a string.
pub fn percent_decode(s: &[u8], plus_as_space: bool) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        let hex = |c: u8| (c as char).to_digit(16);
        match b {
            b'%' => {
                let hi = s.get(i + 1).and_then(|&c| hex(c));
                let lo = s.get(i + 2).and_then(|&c| hex(c));
                if let (Some(h), Some(l)) = (hi, lo) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b);
            }
            b'+' if plus_as_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a form-urlencoded body into `{key: [value, ...]}`, values in body order. Empty
/// pairs (`a=1&&b=2`) are skipped; a key without `=` has the value `""`.
pub fn parse_urlencoded(body: &[u8]) -> Value {
    let mut map: Map<String, Value> = Map::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let key = percent_decode(k, true);
        let value = Value::String(percent_decode(v, true));
        match map.get_mut(&key) {
            Some(Value::Array(list)) => list.push(value),
            _ => {
                map.insert(key, Value::Array(vec![value]));
            }
        }
    }
    Value::Object(map)
}

/// The value of parameter `name` in a header value like `multipart/form-data; boundary=x`
/// (quoted or not; names compared case-insensitively).
pub fn header_param(value: &str, name: &str) -> Option<String> {
    for p in value.split(';').skip(1) {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or(v);
            return Some(v.replace("\\\"", "\"").replace("\\\\", "\\"));
        }
    }
    None
}

/// One part of a multipart body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part<'a> {
    /// The part's own headers.
    pub headers: Headers,
    /// Its body bytes.
    pub body: &'a [u8],
}

impl Part<'_> {
    /// The `name` from `Content-Disposition` (form fields and files have one).
    pub fn name(&self) -> Option<String> {
        header(&self.headers, "content-disposition").and_then(|d| header_param(d, "name"))
    }
}

/// Splits a multipart body at `boundary`. Returns the parts and, when the body does not
/// end properly (no closing delimiter, too many parts), a note saying so. A body without
/// even one delimiter gives no parts and a note.
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> (Vec<Part<'a>>, Option<String>) {
    let mut parts = Vec::new();
    if boundary.is_empty() {
        return (parts, Some("multipart boundary is empty".into()));
    }
    let delim = format!("--{boundary}");
    let dbytes = delim.as_bytes();
    // The first delimiter may open the body or follow a preamble line.
    let mut pos = if body.starts_with(dbytes) {
        0
    } else {
        let next_line = format!("\n{delim}");
        match memchr::memmem::find(body, next_line.as_bytes()) {
            Some(i) => i + 1,
            None => return (parts, Some(format!("no multipart delimiter {delim:?}"))),
        }
    };
    // Each later delimiter starts a line; the line break before it belongs to it.
    let finder = memchr::memmem::Finder::new(dbytes);
    loop {
        let after = pos + dbytes.len();
        let rest = &body[after..];
        if rest.starts_with(b"--") {
            return (parts, None);
        }
        // Transport padding, then the line break that ends the delimiter line.
        let pad = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let rest = &rest[pad..];
        let start = after
            + pad
            + if rest.starts_with(b"\r\n") {
                2
            } else if rest.starts_with(b"\n") {
                1
            } else {
                0
            };
        // The next delimiter at the start of a line ends this part.
        let mut search = start;
        let end = loop {
            match finder.find(&body[search..]) {
                None => break None,
                Some(i) => {
                    let at = search + i;
                    // `at >= start`: an empty part may follow its delimiter line at once.
                    if at > 0 && body[at - 1] == b'\n' {
                        break Some(at);
                    }
                    search = at + 1;
                }
            }
        };
        let Some(next) = end else {
            parts.push(parse_part(&body[start..]));
            return (
                parts,
                Some("multipart body ends without the closing delimiter".into()),
            );
        };
        let mut content_end = next - 1;
        if content_end > start && body[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        parts.push(parse_part(&body[start..content_end.max(start)]));
        if parts.len() >= MAX_PARTS {
            return (
                parts,
                Some(format!(
                    "more than {MAX_PARTS} parts; the rest not compared"
                )),
            );
        }
        pos = next;
    }
}

/// Splits one part into its header lines and its body.
fn parse_part(raw: &[u8]) -> Part<'_> {
    // No headers: the part opens with the blank line.
    let (head, body) = if raw.starts_with(b"\r\n") {
        (&raw[..0], &raw[2..])
    } else if raw.starts_with(b"\n") {
        (&raw[..0], &raw[1..])
    } else if let Some(i) = memchr::memmem::find(raw, b"\r\n\r\n") {
        (&raw[..i], &raw[i + 4..])
    } else if let Some(i) = memchr::memmem::find(raw, b"\n\n") {
        (&raw[..i], &raw[i + 2..])
    } else {
        (raw, &raw[raw.len()..])
    };
    let headers = String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect();
    Part { headers, body }
}

/// `123 bytes, text/plain`: what a part is, for a part present on one side only.
fn part_summary(p: &Part<'_>) -> String {
    match header(&p.headers, "content-type") {
        Some(ct) => format!("{} bytes, {ct}", p.body.len()),
        None => format!("{} bytes", p.body.len()),
    }
}

/// Re-roots a difference found inside a part under the part's path: `body` becomes the
/// part's path, `body:line 2` becomes `<prefix>:line 2`, `$.x` becomes `<prefix>.x`.
fn reroot(prefix: &str, mut d: Difference) -> Difference {
    if d.path == "body" {
        d.path = prefix.to_string();
    } else if let Some(rest) = d.path.strip_prefix("body:") {
        d.path = format!("{prefix}:{rest}");
    } else if let Some(rest) = d.path.strip_prefix('$') {
        d.path = format!("{prefix}{rest}");
    }
    d.kind = DiffKind::Body;
    d
}

/// Compares two multipart bodies part by part and appends the differences; returns false
/// (appending nothing) when neither body splits into parts, so the caller can fall back to
/// a plain comparison.
#[allow(clippy::too_many_arguments)]
pub fn diff_multipart(
    headers_a: &[(String, String)],
    a: &[u8],
    headers_b: &[(String, String)],
    b: &[u8],
    opts: &CompareOptions,
    out: &mut Vec<Difference>,
    depth: usize,
) -> bool {
    let bound = |h: &[(String, String)]| {
        header(h, "content-type")
            .and_then(|ct| header_param(ct, "boundary"))
            .unwrap_or_default()
    };
    let (pa, na) = split_multipart(a, &bound(headers_a));
    let (pb, nb) = split_multipart(b, &bound(headers_b));
    if pa.is_empty() && pb.is_empty() {
        return false;
    }
    if na != nb {
        let say = |n: &Option<String>, p: &[Part<'_>]| match n {
            Some(n) => format!("{} parts; {n}", p.len()),
            None => format!("{} parts", p.len()),
        };
        out.push(Difference {
            kind: DiffKind::Body,
            path: "body".into(),
            baseline: Some(say(&na, &pa)),
            candidate: Some(say(&nb, &pb)),
            tolerated: false,
        });
    }
    // By name when names identify parts on both sides; by position otherwise.
    let names = |ps: &[Part<'_>]| -> Option<Vec<String>> {
        let n: Option<Vec<String>> = ps.iter().map(Part::name).collect();
        let n = n?;
        let mut sorted = n.clone();
        sorted.sort();
        sorted.dedup();
        (sorted.len() == n.len()).then_some(n)
    };
    let mut pairs: Vec<(String, Option<&Part<'_>>, Option<&Part<'_>>)> = Vec::new();
    match (names(&pa), names(&pb)) {
        (Some(na), Some(nb)) => {
            for (name, p) in na.iter().zip(&pa) {
                let other = nb.iter().position(|n| n == name).map(|i| &pb[i]);
                pairs.push((key_path("$.part", name), Some(p), other));
            }
            for (name, p) in nb.iter().zip(&pb) {
                if !na.contains(name) {
                    pairs.push((key_path("$.part", name), None, Some(p)));
                }
            }
        }
        _ => {
            for i in 0..pa.len().max(pb.len()) {
                pairs.push((format!("$.parts[{i}]"), pa.get(i), pb.get(i)));
            }
        }
    }
    let stop_at = opts.max_diffs.saturating_add(1);
    for (prefix, x, y) in pairs {
        if out.len() > stop_at {
            break;
        }
        match (x, y) {
            (Some(x), Some(y)) => {
                let mut inner = Vec::new();
                // A part's length is a transfer detail, as for whole bodies.
                let strip = |h: &Headers| -> Headers {
                    h.iter()
                        .filter(|(k, _)| k != "content-length")
                        .cloned()
                        .collect()
                };
                let (hx, hy) = (strip(&x.headers), strip(&y.headers));
                let mut head = Vec::new();
                diff_headers(&hx, &hy, DiffKind::Header, opts, &mut head);
                for mut d in head {
                    d.path = key_path(&format!("{prefix}.headers"), &d.path);
                    d.kind = DiffKind::Body;
                    out.push(d);
                }
                super::body::compare_content(
                    &x.headers,
                    x.body,
                    &y.headers,
                    y.body,
                    None,
                    opts,
                    &mut inner,
                    depth + 1,
                );
                out.extend(inner.into_iter().map(|d| reroot(&prefix, d)));
            }
            (x, y) => out.push(Difference {
                kind: DiffKind::Body,
                path: prefix,
                baseline: x.map(part_summary),
                candidate: y.map(part_summary),
                tolerated: false,
            }),
        }
    }
    true
}

/// Compares two form-urlencoded bodies as `{key: [values]}`.
pub fn diff_urlencoded(a: &[u8], b: &[u8], opts: &CompareOptions, out: &mut Vec<Difference>) {
    diff_json(&parse_urlencoded(a), &parse_urlencoded(b), opts, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b+c", true), "a b c");
        assert_eq!(percent_decode(b"a+b", false), "a+b");
        assert_eq!(percent_decode(b"%e2%82%AC", true), "€");
        assert_eq!(percent_decode(b"100%", true), "100%");
        assert_eq!(percent_decode(b"%4", true), "%4");
        assert_eq!(percent_decode(b"%zz%41", true), "%zzA");
        assert_eq!(percent_decode(b"%ff", true), "\u{fffd}");
    }

    #[test]
    fn urlencoded_as_key_to_values() {
        let v = parse_urlencoded(b"a=1&b=x+y&a=2&&flag&c%5B%5D=%3D");
        assert_eq!(
            v,
            json!({"a": ["1", "2"], "b": ["x y"], "flag": [""], "c[]": ["="]})
        );
        let mut out = Vec::new();
        diff_urlencoded(b"a=1&b=2", b"b=2&a=3", &CompareOptions::default(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].path, "$.a[0]");
        assert_eq!(out[0].baseline.as_deref(), Some("\"1\""));
    }

    #[test]
    fn params() {
        assert_eq!(
            header_param("multipart/form-data; boundary=abc", "boundary").as_deref(),
            Some("abc")
        );
        assert_eq!(
            header_param("form-data; name=\"a b\"; filename=\"f.txt\"", "NAME").as_deref(),
            Some("a b")
        );
        assert_eq!(header_param("text/plain", "boundary"), None);
    }

    fn multipart(parts: &[(&str, &str, &str)]) -> Vec<u8> {
        let mut s = String::from("preamble\r\n");
        for (name, ct, body) in parts {
            s.push_str(&format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n{body}\r\n"
            ));
        }
        s.push_str("--XyZ--\r\nepilogue");
        s.into_bytes()
    }

    #[test]
    fn splits_parts() {
        let body = multipart(&[
            ("a", "text/plain", "one\r\ntwo"),
            ("b", "application/json", "{}"),
        ]);
        let (parts, note) = split_multipart(&body, "XyZ");
        assert_eq!(note, None);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].body, b"one\r\ntwo");
        assert_eq!(parts[0].name().as_deref(), Some("a"));
        assert_eq!(
            header(&parts[1].headers, "content-type"),
            Some("application/json")
        );
        // A delimiter-like string inside a line is content, not a delimiter.
        let body = b"--B\r\n\r\nx --B y\r\n--B--".to_vec();
        let (parts, note) = split_multipart(&body, "B");
        assert_eq!(note, None);
        assert_eq!(parts[0].body, b"x --B y");
        // Unclosed and missing delimiters are notes.
        let (parts, note) = split_multipart(b"--B\r\n\r\nabc", "B");
        assert_eq!(parts.len(), 1);
        assert!(note.unwrap().contains("closing"));
        let (parts, note) = split_multipart(b"nothing here", "B");
        assert!(parts.is_empty() && note.is_some());
    }

    fn run(a: &[u8], b: &[u8]) -> Vec<Difference> {
        let h = vec![(
            "content-type".to_string(),
            "multipart/form-data; boundary=XyZ".to_string(),
        )];
        let mut out = Vec::new();
        assert!(diff_multipart(
            &h,
            a,
            &h,
            b,
            &CompareOptions::default(),
            &mut out,
            0
        ));
        out
    }

    #[test]
    fn parts_compared_by_name_and_type() {
        let a = multipart(&[
            ("meta", "application/json", r#"{"size": 1, "kind": "a"}"#),
            ("note", "text/plain", "hello\nworld"),
            ("gone", "text/plain", "x"),
        ]);
        let b = multipart(&[
            ("note", "text/plain", "hello\nthere"),
            ("meta", "application/json", r#"{"kind": "a", "size": 2}"#),
            ("new", "text/csv", "1,2"),
        ]);
        let d = run(&a, &b);
        let got: Vec<(&str, Option<&str>, Option<&str>)> = d
            .iter()
            .map(|x| {
                (
                    x.path.as_str(),
                    x.baseline.as_deref(),
                    x.candidate.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("$.part.meta.size", Some("1"), Some("2")),
                ("$.part.note:line 2", Some("world"), Some("there")),
                ("$.part.gone", Some("1 bytes, text/plain"), None),
                ("$.part.new", None, Some("3 bytes, text/csv")),
            ]
        );
        assert!(run(&a, &a).is_empty());
    }

    #[test]
    fn unnamed_parts_by_position_with_headers() {
        let mk = |ct: &str| {
            format!("--XyZ\r\nContent-Type: {ct}\r\n\r\nsame\r\n--XyZ--\r\n").into_bytes()
        };
        let d = run(&mk("text/plain"), &mk("text/html"));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "$.parts[0].headers['content-type']");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::fuzz_cases(256), ..ProptestConfig::default() })]

        #[test]
        fn random_multipart_never_panics(body in proptest::collection::vec(
            prop_oneof![Just(b'-'), Just(b'B'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..200)) {
            let (parts, _) = split_multipart(&body, "B");
            prop_assert!(parts.len() <= MAX_PARTS);
            let h = vec![("content-type".to_string(), "multipart/mixed; boundary=B".to_string())];
            let mut out = Vec::new();
            let _ = diff_multipart(&h, &body, &h, b"--B\r\n\r\nx\r\n--B--", &CompareOptions::default(), &mut out, 0);
            let _ = parse_urlencoded(&body);
        }
    }
}
