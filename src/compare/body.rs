//! Body comparison: decodes both bodies, then picks the comparison from the media types and
//! the content: gRPC messages, protobuf, form fields and multipart parts, JSON, text lines,
//! or bytes.

use super::decode::{decode_body, DEFAULT_DECODE_LIMIT};
use super::json::diff_json;
use super::text::diff_text;
use super::{form, grpc, protobuf};
use super::{CompareOptions, DiffKind, Difference, Observed};
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// How a media type says a body should be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// `application/json`, `*+json`.
    Json,
    /// `text/*`, XML, JavaScript, form data.
    Text,
    /// A type known to be binary: images, protobuf, archives, …
    Binary,
    /// No content type, or one not listed here: judged by content.
    Unknown,
}

/// The media type of a header list: the first `Content-Type`, parameters stripped,
/// lower-cased.
pub(crate) fn media_type(headers: &[(String, String)]) -> Option<String> {
    let value = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v)?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.is_empty() {
        None
    } else {
        Some(essence.to_ascii_lowercase())
    }
}

fn family(media: Option<&str>) -> Family {
    let Some(m) = media else {
        return Family::Unknown;
    };
    if m == "application/json" || m.ends_with("+json") {
        return Family::Json;
    }
    if m.starts_with("text/")
        || m == "application/xml"
        || m.ends_with("+xml")
        || m.contains("javascript")
        || m == "application/x-www-form-urlencoded"
    {
        return Family::Text;
    }
    const BINARY_PREFIXES: &[&str] = &["image/", "audio/", "video/", "font/", "application/grpc"];
    const BINARY_TYPES: &[&str] = &[
        "application/octet-stream",
        "application/protobuf",
        "application/x-protobuf",
        "application/pdf",
        "application/zip",
        "application/gzip",
    ];
    if BINARY_PREFIXES.iter().any(|p| m.starts_with(p)) || BINARY_TYPES.contains(&m) {
        return Family::Binary;
    }
    Family::Unknown
}

/// All `Content-Encoding` values, normalised, so that `gzip` and `GZIP` compare equal.
fn encoding_of(headers: &[(String, String)]) -> String {
    let mut s = String::new();
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-encoding"))
    {
        for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&c.to_ascii_lowercase());
        }
    }
    s
}

/// Path of the difference that says one side's content encoding could not be undone.
pub const ENCODING_PATH: &str = "body:encoding";

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

/// `1234 bytes, sha256 0a1b2c3d4e5f`: enough to tell two binaries apart and to match them
/// against files by hash prefix.
fn binary_summary(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("{} bytes, sha256 {}", body.len(), hex_prefix(&digest, 6))
}

fn diff_binary(a: &[u8], b: &[u8], out: &mut Vec<Difference>) {
    let first = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.len().min(b.len()));
    out.push(Difference {
        kind: DiffKind::Body,
        path: "body".into(),
        baseline: Some(binary_summary(a)),
        candidate: Some(format!(
            "{}, first difference at byte {first}",
            binary_summary(b)
        )),
        tolerated: false,
    });
}

/// Decodes one side; on failure returns the raw body and the reason.
fn decode_side(o: &Observed) -> (Bytes, Option<String>) {
    match decode_body(&o.headers, &o.body, DEFAULT_DECODE_LIMIT) {
        Ok(b) => (b, None),
        Err(e) => (o.body.clone(), Some(e)),
    }
}

/// A body as a person reads it: decoded, JSON pretty-printed, text as is, anything else as
/// its size and hash. Used by `show` for side-by-side diffs.
pub fn render_body(headers: &[(String, String)], body: &Bytes) -> String {
    if body.is_empty() {
        return String::new();
    }
    let decoded = decode_body(headers, body, DEFAULT_DECODE_LIMIT).unwrap_or_else(|_| body.clone());
    let media = media_type(headers);
    if let Some(m) = media.as_deref().filter(|m| super::grpc::is_grpc(m)) {
        // gRPC shows as its decoded messages, the same `{"msg":[...]}` the diff paths use.
        let g = super::grpc::decode_grpc_body(headers, m, &decoded, None, DEFAULT_DECODE_LIMIT);
        let mut v = serde_json::json!({ "msg": g.messages });
        if !g.notes.is_empty() {
            v["notes"] = serde_json::json!(g.notes);
        }
        return serde_json::to_string_pretty(&v).unwrap_or_default();
    }
    let fam = family(media.as_deref());
    if matches!(fam, Family::Json | Family::Unknown) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&decoded) {
            if let Ok(s) = serde_json::to_string_pretty(&v) {
                return s;
            }
        }
    }
    match (fam, std::str::from_utf8(&decoded)) {
        (Family::Binary, _) | (_, Err(_)) => format!("({})", binary_summary(&decoded)),
        (_, Ok(text)) => text.to_string(),
    }
}

/// Compares two bodies and appends the differences.
///
/// Identical raw bytes under the same `Content-Encoding` are equal without decoding. Else
/// both are decoded (a decode failure is itself a difference, and the raw bytes are then
/// compared instead) and compared by media type: gRPC ([`super::grpc`]) and protobuf
/// ([`super::protobuf`]) as decoded messages, form-urlencoded and multipart
/// ([`super::form`]) by field and part, JSON structurally ([`diff_json`]), text by lines
/// ([`diff_text`]), anything else as bytes (sizes, hashes, first differing offset).
/// With no recognised type on either side the content decides: JSON if both parse, text if
/// both are UTF-8. A JSON-typed body that does not parse falls back to text or binary.
pub fn diff_bodies(a: &Observed, b: &Observed, opts: &CompareOptions, out: &mut Vec<Difference>) {
    diff_bodies_for(None, a, b, opts, out);
}

/// [`diff_bodies`] for answers to the request at `request_path`: gRPC bodies then decode
/// with the field names `opts.proto_descriptor` gives that method.
pub fn diff_bodies_for(
    request_path: Option<&str>,
    a: &Observed,
    b: &Observed,
    opts: &CompareOptions,
    out: &mut Vec<Difference>,
) {
    let enc_a = encoding_of(&a.headers);
    let enc_b = encoding_of(&b.headers);
    if a.body == b.body && enc_a == enc_b && !watching(opts) {
        return;
    }

    let (mut da, err_a) = decode_side(a);
    let (mut db, err_b) = decode_side(b);
    if err_a.is_some() || err_b.is_some() {
        if err_a != err_b {
            let say = |err: &Option<String>, enc: &str| match err {
                Some(e) => format!("could not decode: {e}"),
                None if enc.is_empty() => "not encoded".to_string(),
                None => format!("decoded {enc}"),
            };
            // A key of its own: a probe whose bytes differ (`body`) says nothing about a
            // candidate whose answer no longer decodes.
            out.push(Difference {
                kind: DiffKind::Body,
                path: ENCODING_PATH.into(),
                baseline: Some(say(&err_a, &enc_a)),
                candidate: Some(say(&err_b, &enc_b)),
                tolerated: false,
            });
        }
        // With one side undecodable there is no common content to compare; the raw bytes at
        // least show whether the encoded payloads differ.
        da = a.body.clone();
        db = b.body.clone();
    }
    compare_content(&a.headers, &da, &b.headers, &db, request_path, opts, out, 0);
}

/// True while a rule for these answers never met what it names: identical bodies are then
/// walked too, to find the rule's fields in them.
fn watching(opts: &CompareOptions) -> bool {
    opts.watch.as_ref().is_some_and(|w| w.pending())
}

/// Media types of protobuf messages sent over plain HTTP (not gRPC framed).
const PROTOBUF_TYPES: &[&str] = &[
    "application/protobuf",
    "application/x-protobuf",
    "application/vnd.google.protobuf",
    "application/x-google-protobuf",
];

/// Compares two decoded bodies by their media types (`headers` are each body's own, of the
/// whole answer or of a multipart part); `depth` counts multipart nesting.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compare_content(
    headers_a: &[(String, String)],
    da: &[u8],
    headers_b: &[(String, String)],
    db: &[u8],
    request_path: Option<&str>,
    opts: &CompareOptions,
    out: &mut Vec<Difference>,
    depth: usize,
) {
    if da == db && !watching(opts) {
        return;
    }
    let ma = media_type(headers_a);
    let mb = media_type(headers_b);
    let (ma_s, mb_s) = (ma.as_deref().unwrap_or(""), mb.as_deref().unwrap_or(""));
    if grpc::is_grpc(ma_s) && grpc::is_grpc(mb_s) {
        grpc::diff_grpc(
            headers_a,
            ma_s,
            da,
            headers_b,
            mb_s,
            db,
            request_path,
            opts,
            out,
        );
        return;
    }
    if PROTOBUF_TYPES.contains(&ma_s) && PROTOBUF_TYPES.contains(&mb_s) {
        if let (Ok(mut ja), Ok(mut jb)) = (protobuf::decode(da), protobuf::decode(db)) {
            protobuf::harmonize(&mut ja, &mut jb);
            diff_json(&ja, &jb, opts, out);
            return;
        }
    }
    const FORM: &str = "application/x-www-form-urlencoded";
    if ma_s == FORM && mb_s == FORM {
        form::diff_urlencoded(da, db, opts, out);
        return;
    }
    if ma_s.starts_with("multipart/")
        && mb_s.starts_with("multipart/")
        && depth < form::MAX_NESTING
        && form::diff_multipart(headers_a, da, headers_b, db, opts, out, depth)
    {
        return;
    }

    let fa = family(ma.as_deref());
    let fb = family(mb.as_deref());
    let both_unknown = fa == Family::Unknown && fb == Family::Unknown;

    if fa == Family::Json || fb == Family::Json || both_unknown {
        if let (Ok(ja), Ok(jb)) = (
            serde_json::from_slice::<serde_json::Value>(da),
            serde_json::from_slice::<serde_json::Value>(db),
        ) {
            diff_json(&ja, &jb, opts, out);
            return;
        }
    }

    let texty = |f: Family| f == Family::Text || f == Family::Json;
    if texty(fa) || texty(fb) || both_unknown {
        if let (Ok(ta), Ok(tb)) = (std::str::from_utf8(da), std::str::from_utf8(db)) {
            diff_text(ta, tb, opts.max_diffs, out);
            return;
        }
    }

    diff_binary(da, db, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_body_shows_grpc_as_decoded_messages_and_json_pretty() {
        let grpc = vec![("content-type".to_string(), "application/grpc".to_string())];
        let body = Bytes::from(crate::compare::grpc::frame(&[0x08, 0x96, 0x01]));
        let shown = render_body(&grpc, &body);
        assert!(
            shown.contains("\"msg\"") && shown.contains("150"),
            "{shown}"
        );
        let json = vec![("content-type".to_string(), "application/json".to_string())];
        assert_eq!(
            render_body(&json, &Bytes::from_static(b"{\"a\":1}")),
            "{\n  \"a\": 1\n}"
        );
        let bin = vec![("content-type".to_string(), "image/png".to_string())];
        assert!(render_body(&bin, &Bytes::from_static(b"\x89PNG")).starts_with("(4 bytes, sha256 "));
    }
    use std::io::Write;

    fn obs(ct: Option<&str>, ce: Option<&str>, body: &[u8]) -> Observed {
        let mut headers = Vec::new();
        if let Some(ct) = ct {
            headers.push(("Content-Type".to_string(), ct.to_string()));
        }
        if let Some(ce) = ce {
            headers.push(("Content-Encoding".to_string(), ce.to_string()));
        }
        Observed {
            status: 200,
            headers,
            body: Bytes::copy_from_slice(body),
            ..Default::default()
        }
    }

    fn run(a: &Observed, b: &Observed) -> Vec<Difference> {
        let mut out = Vec::new();
        diff_bodies(a, b, &CompareOptions::default(), &mut out);
        out
    }

    fn gzip(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn media_type_parsing() {
        let h = vec![(
            "content-type".to_string(),
            " Application/JSON ; charset=utf-8".to_string(),
        )];
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
        assert_eq!(media_type(&[]), None);
        assert_eq!(family(Some("application/problem+json")), Family::Json);
        assert_eq!(family(Some("application/atom+xml")), Family::Text);
        assert_eq!(family(Some("text/html")), Family::Text);
        assert_eq!(family(Some("application/javascript")), Family::Text);
        assert_eq!(
            family(Some("application/x-www-form-urlencoded")),
            Family::Text
        );
        assert_eq!(family(Some("image/png")), Family::Binary);
        assert_eq!(family(Some("application/x-thing")), Family::Unknown);
    }

    #[test]
    fn identical_raw_is_equal() {
        let a = obs(Some("application/json"), None, br#"{"a":1}"#);
        assert!(run(&a, &a.clone()).is_empty());
    }

    #[test]
    fn json_compared_structurally_across_encodings() {
        let a = obs(
            Some("application/json"),
            Some("gzip"),
            &gzip(br#"{"a": 1, "b": [1, 2]}"#),
        );
        let b = obs(
            Some("application/json; charset=utf-8"),
            None,
            br#"{"b":[1,3],"a":1.0}"#,
        );
        let d = run(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "$.b[1]");
    }

    #[test]
    fn same_content_different_encoding_is_equal() {
        let raw = b"hello\nworld\n";
        let a = obs(Some("text/plain"), Some("gzip"), &gzip(raw));
        let b = obs(Some("text/plain"), None, raw);
        assert!(run(&a, &b).is_empty());
    }

    #[test]
    fn unknown_types_sniffed_as_json_or_text() {
        let a = obs(None, None, br#"{"x": 1}"#);
        let b = obs(Some("application/x-custom"), None, br#"{"x": 2}"#);
        assert_eq!(run(&a, &b)[0].path, "$.x");
        let a = obs(None, None, b"plain\n");
        let b = obs(None, None, b"words\n");
        let d = run(&a, &b);
        assert_eq!(d[0].path, "body:line 1");
        assert_eq!(d[0].baseline.as_deref(), Some("plain"));
    }

    #[test]
    fn json_typed_but_not_json_falls_back_to_text() {
        let a = obs(Some("application/json"), None, br#"{"ok": true}"#);
        let b = obs(Some("text/html"), None, b"<html>502 Bad Gateway</html>\n");
        let d = run(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "body:line 1");
        assert_eq!(
            d[0].candidate.as_deref(),
            Some("<html>502 Bad Gateway</html>")
        );
    }

    #[test]
    fn text_line_diff() {
        let a = obs(Some("text/plain"), None, b"a\nb\nc\n");
        let b = obs(Some("text/plain"), None, b"a\nB\nc\n");
        let d = run(&a, &b);
        assert_eq!(d[0].path, "body:line 2");
        assert_eq!(d[0].baseline.as_deref(), Some("b"));
        assert_eq!(d[0].candidate.as_deref(), Some("B"));
    }

    #[test]
    fn binary_offset_and_hash() {
        let mut x = vec![0u8; 1234];
        x[0] = 0xff;
        let mut y = x.clone();
        y[17] = 1;
        y.extend_from_slice(&[9; 66]);
        let a = obs(Some("application/octet-stream"), None, &x);
        let b = obs(Some("application/octet-stream"), None, &y);
        let d = run(&a, &b);
        assert_eq!(d.len(), 1);
        let base = d[0].baseline.as_deref().unwrap();
        let cand = d[0].candidate.as_deref().unwrap();
        assert!(base.starts_with("1234 bytes, sha256 "), "{base}");
        assert_eq!(base.len(), "1234 bytes, sha256 ".len() + 12);
        assert!(cand.starts_with("1300 bytes, sha256 "), "{cand}");
        assert!(cand.ends_with(", first difference at byte 17"), "{cand}");
        let hex = &base["1234 bytes, sha256 ".len()..];
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn binary_prefix_difference_at_shorter_length() {
        let a = obs(Some("image/png"), None, &[0x89, b'P', b'N', b'G']);
        let b = obs(Some("image/png"), None, &[0x89, b'P', b'N', b'G', 0]);
        let d = run(&a, &b);
        assert!(d[0]
            .candidate
            .as_deref()
            .unwrap()
            .ends_with("first difference at byte 4"));
    }

    #[test]
    fn non_utf8_without_type_is_binary() {
        let a = obs(None, None, &[0xff, 0xfe, 1]);
        let b = obs(None, None, &[0xff, 0xfe, 2]);
        let d = run(&a, &b);
        assert!(d[0]
            .candidate
            .as_deref()
            .unwrap()
            .ends_with("first difference at byte 2"));
    }

    #[test]
    fn decode_failure_is_reported_then_raw_compared() {
        let a = obs(Some("text/plain"), Some("gzip"), &gzip(b"hi\n"));
        let b = obs(Some("text/plain"), Some("gzip"), b"not gzip at all\n");
        let d = run(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].path, "body:encoding");
        assert_eq!(d[0].baseline.as_deref(), Some("decoded gzip"));
        let why = d[0].candidate.as_deref().unwrap();
        assert!(why.starts_with("could not decode: gzip"), "{why}");
        // Raw gzip bytes are not UTF-8 text: compared as binary, under a key of its own.
        assert_eq!(d[1].path, "body");
        assert!(d[1]
            .candidate
            .as_deref()
            .unwrap()
            .contains("first difference at byte 0"));
    }

    #[test]
    fn form_bodies_by_key_after_content_decoding() {
        let a = obs(
            Some("application/x-www-form-urlencoded"),
            Some("gzip"),
            &gzip(b"q=red+shoes&page=1"),
        );
        let b = obs(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            None,
            b"page=2&q=red%20shoes",
        );
        let d = run(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "$.page[0]");
    }

    #[test]
    fn multipart_parts_with_their_own_boundaries() {
        let mk = |boundary: &str, size: u32| {
            let body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"meta\"\r\n\
                 Content-Type: application/json\r\n\r\n{{\"size\": {size}}}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"page\"\r\n\
                 Content-Type: text/html\r\n\r\n<p>\nhi\n</p>\r\n--{boundary}--\r\n"
            );
            obs(
                Some(&format!("multipart/form-data; boundary={boundary}")),
                None,
                body.as_bytes(),
            )
        };
        assert!(run(&mk("aaa", 1), &mk("bbb", 1)).is_empty());
        let d = run(&mk("aaa", 1), &mk("bbb", 2));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "$.part.meta.size");
    }

    #[test]
    fn xml_is_compared_by_lines() {
        let a = obs(Some("application/xml"), None, b"<a>\n<b>1</b>\n</a>\n");
        let b = obs(Some("text/xml"), Some("br"), &{
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(b"<a>\n<b>2</b>\n</a>\n").unwrap();
            }
            out
        });
        let d = run(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "body:line 2");
        assert_eq!(d[0].baseline.as_deref(), Some("<b>1</b>"));
        assert_eq!(d[0].candidate.as_deref(), Some("<b>2</b>"));
    }

    #[test]
    fn protobuf_over_http_by_field_number() {
        let a = obs(
            Some("application/x-protobuf"),
            None,
            &[0x08, 0x01, 0x12, 0x01, b'a'],
        );
        let b = obs(
            Some("application/x-protobuf"),
            None,
            &[0x08, 0x02, 0x12, 0x01, b'a'],
        );
        let d = run(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "$.1");
        // Not protobuf on one side: compared as bytes.
        let c = obs(Some("application/x-protobuf"), None, &[0xff]);
        assert!(run(&a, &c)[0]
            .candidate
            .as_deref()
            .unwrap()
            .contains("sha256"));
    }

    #[test]
    fn unknown_encoding_on_one_side_named() {
        let a = obs(Some("text/plain"), None, b"x\n");
        let b = obs(Some("text/plain"), Some("compress"), b"x\n");
        let d = run(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].baseline.as_deref(), Some("not encoded"));
        assert!(d[0].candidate.as_deref().unwrap().contains("compress"));
    }
}
