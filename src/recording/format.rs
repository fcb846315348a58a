//! Recording format v1 on the wire: the serde shapes of the header line and of one exchange
//! line, and the conversion to and from the in-memory [`Exchange`]. Kept apart from the
//! reader and writer so both agree on one definition of the format.

use crate::exchange::{Exchange, Request, Response};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Current value of the `shadowdiff_recording` marker in the header line.
pub const FORMAT_VERSION: u64 = 1;

/// The header line (line 1 of every recording file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// Format version; readers refuse versions they do not know.
    pub shadowdiff_recording: u64,
    /// When the file was started, RFC 3339.
    #[serde(default)]
    pub created: String,
    /// Who produced it: `tap`, `import:gor`, `import:har`, `import:pcap`, `demo`, ...
    #[serde(default)]
    pub source: String,
    /// Any further producer-specific fields, kept so a rewrite loses nothing.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl RecordingHeader {
    /// A header for a file created now by `source`.
    pub fn new(source: &str) -> Self {
        RecordingHeader {
            shadowdiff_recording: FORMAT_VERSION,
            created: format_ts_us(now_us()),
            source: source.to_string(),
            extra: serde_json::Map::new(),
        }
    }
}

/// One exchange line. The fields borrow from the [`Exchange`] being written (a line is
/// written without copying a header or a body first) and own what a line is read into.
#[derive(Serialize, Deserialize)]
struct WireExchange<'a> {
    id: Cow<'a, str>,
    ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<Cow<'a, str>>,
    request: WireRequest<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<WireResponse<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_us: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct WireRequest<'a> {
    method: Cow<'a, str>,
    uri: Cow<'a, str>,
    #[serde(default = "default_version")]
    version: Cow<'a, str>,
    #[serde(default)]
    headers: Cow<'a, [(String, String)]>,
    #[serde(default)]
    body: Cow<'a, str>,
    #[serde(default)]
    body_encoding: BodyEncoding,
    #[serde(default)]
    body_truncated: bool,
}

#[derive(Serialize, Deserialize)]
struct WireResponse<'a> {
    status: u16,
    #[serde(default)]
    headers: Cow<'a, [(String, String)]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trailers: Option<Cow<'a, [(String, String)]>>,
    #[serde(default)]
    body: Cow<'a, str>,
    #[serde(default)]
    body_encoding: BodyEncoding,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    body_truncated: bool,
}

#[derive(Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BodyEncoding {
    #[default]
    Utf8,
    Base64,
}

fn default_version() -> Cow<'static, str> {
    Cow::Borrowed("HTTP/1.1")
}

/// Parses one exchange line. The error says which field was wrong and what was expected.
pub fn parse_exchange(line: &[u8]) -> Result<Exchange, String> {
    // Validating the whole line once lets serde_json skip validating every string in it.
    let text = std::str::from_utf8(line).map_err(|e| {
        format!(
            "not valid UTF-8 at byte {} (recording lines are UTF-8 JSON; binary bodies use \"body_encoding\":\"base64\")",
            e.valid_up_to()
        )
    })?;
    let w: WireExchange = serde_json::from_str(text).map_err(|e| describe_json_error(&e))?;
    let ts_us = parse_ts_us(&w.ts).ok_or_else(|| {
        format!(
            "field \"ts\": expected an RFC 3339 time like 2026-11-02T09:00:00.000001Z, found {:?}",
            w.ts
        )
    })?;
    if w.id.is_empty() {
        return Err("field \"id\": expected a non-empty string".into());
    }
    // What serde reads into a `Cow` is owned, so `into_owned` below moves, not copies.
    let request = Request {
        body: decode_body(w.request.body.into_owned(), w.request.body_encoding)
            .map_err(|e| format!("field \"request.body\": {e}"))?,
        method: w.request.method.into_owned(),
        uri: w.request.uri.into_owned(),
        version: w.request.version.into_owned(),
        headers: w.request.headers.into_owned(),
        body_truncated: w.request.body_truncated,
    };
    let response = match w.response {
        Some(r) => Some(Response {
            body: decode_body(r.body.into_owned(), r.body_encoding)
                .map_err(|e| format!("field \"response.body\": {e}"))?,
            status: r.status,
            headers: r.headers.into_owned(),
            trailers: r.trailers.map(Cow::into_owned),
            body_truncated: r.body_truncated,
        }),
        None => None,
    };
    Ok(Exchange {
        id: w.id.into_owned(),
        ts_us,
        interface: w.interface.map(Cow::into_owned),
        tenant: w.tenant.map(Cow::into_owned),
        request,
        response,
        latency_us: w.latency_us,
    })
}

/// Serializes one exchange as a line (without the trailing newline).
pub fn exchange_to_line(ex: &Exchange, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let (body, body_encoding) = encode_body(&ex.request.body);
    let w = WireExchange {
        id: Cow::Borrowed(&ex.id),
        ts: format_ts_us(ex.ts_us),
        interface: ex.interface.as_deref().map(Cow::Borrowed),
        tenant: ex.tenant.as_deref().map(Cow::Borrowed),
        request: WireRequest {
            method: Cow::Borrowed(&ex.request.method),
            uri: Cow::Borrowed(&ex.request.uri),
            version: Cow::Borrowed(&ex.request.version),
            headers: Cow::Borrowed(&ex.request.headers),
            body,
            body_encoding,
            body_truncated: ex.request.body_truncated,
        },
        response: ex.response.as_ref().map(|r| {
            let (body, body_encoding) = encode_body(&r.body);
            WireResponse {
                status: r.status,
                headers: Cow::Borrowed(&r.headers),
                trailers: r.trailers.as_deref().map(Cow::Borrowed),
                body,
                body_encoding,
                body_truncated: r.body_truncated,
            }
        }),
        latency_us: ex.latency_us,
    };
    serde_json::to_writer(out, &w)
}

fn decode_body(body: String, enc: BodyEncoding) -> Result<Bytes, String> {
    match enc {
        BodyEncoding::Utf8 => Ok(Bytes::from(body)),
        BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map(Bytes::from)
            .map_err(|e| format!("expected base64 (body_encoding is \"base64\"): {e}")),
    }
}

fn encode_body(body: &Bytes) -> (Cow<'_, str>, BodyEncoding) {
    match std::str::from_utf8(body) {
        Ok(s) => (Cow::Borrowed(s), BodyEncoding::Utf8),
        Err(_) => (
            Cow::Owned(base64::engine::general_purpose::STANDARD.encode(body)),
            BodyEncoding::Base64,
        ),
    }
}

/// Turns serde's message into one that names the field and what was expected.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => format!("incomplete JSON object ({e})"),
        Category::Syntax => format!("not valid JSON ({e})"),
        Category::Data => format!("not a recording exchange: {e}"),
        Category::Io => format!("read error: {e}"),
    }
}

/// Parses an RFC 3339 time to microseconds since the epoch.
pub fn parse_ts_us(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// Formats microseconds since the epoch as RFC 3339 UTC with six fraction digits.
pub fn format_ts_us(us: i64) -> String {
    format_time_us(
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

/// Formats a time as RFC 3339 UTC with six fraction digits (`2026-11-02T09:00:00.123456Z`),
/// the precision recordings use. Built by hand: the `time` formatters are fallible, and
/// nothing here can fail.
pub fn format_time_us(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_microseconds() {
        let us = parse_ts_us("2026-11-02T09:00:00.123456Z").unwrap();
        assert_eq!(format_ts_us(us), "2026-11-02T09:00:00.123456Z");
        assert_eq!(
            parse_ts_us("2026-11-02T10:00:00+01:00"),
            parse_ts_us("2026-11-02T09:00:00Z")
        );
    }

    #[test]
    fn binary_bodies_use_base64() {
        let ex = Exchange {
            id: "x".into(),
            ts_us: 1,
            interface: None,
            tenant: None,
            request: Request {
                method: "POST".into(),
                uri: "/".into(),
                version: "HTTP/1.1".into(),
                headers: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
                body: Bytes::from_static(&[0xff, 0x00, 0x01]),
                body_truncated: true,
            },
            response: Some(Response {
                status: 200,
                body: Bytes::from_static(b"ok"),
                trailers: Some(vec![("grpc-status".into(), "0".into())]),
                ..Default::default()
            }),
            latency_us: Some(5),
        };
        let mut line = Vec::new();
        exchange_to_line(&ex, &mut line).unwrap();
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.contains("\"body_encoding\":\"base64\""), "{text}");
        assert_eq!(parse_exchange(&line).unwrap(), ex);
    }

    #[test]
    fn non_utf8_lines_say_where() {
        let e = parse_exchange(b"{\"id\":\"a\xff\"}").unwrap_err();
        assert!(e.contains("not valid UTF-8 at byte 8"), "{e}");
    }

    #[test]
    fn bad_fields_are_named() {
        let e =
            parse_exchange(br#"{"id":"a","ts":"yesterday","request":{"method":"GET","uri":"/"}}"#)
                .unwrap_err();
        assert!(e.contains("\"ts\""), "{e}");
        let e = parse_exchange(br#"{"id":"a","ts":"2026-11-02T09:00:00Z"}"#).unwrap_err();
        assert!(e.contains("request"), "{e}");
        let e = parse_exchange(br#"{"id":"a","ts":"2026-11-02T09:00:00Z","request":{"method":"GET","uri":"/","body":"!!","body_encoding":"base64"}}"#).unwrap_err();
        assert!(e.contains("request.body"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(512)))]

        /// No line, however broken, panics the parser.
        #[test]
        fn random_lines_never_panic(line in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_exchange(&line);
        }

        /// Cutting a valid line anywhere gives an error, never a panic or a wrong exchange.
        #[test]
        fn truncated_lines_are_errors(cut in 0usize..400) {
            let line = br#"{"id":"x","ts":"2026-11-02T09:00:00Z","request":{"method":"GET","uri":"/a","headers":[["a","b"]],"body":"aGk=","body_encoding":"base64"},"response":{"status":200,"body":""},"latency_us":5}"#;
            let cut = cut.min(line.len() - 1);
            proptest::prop_assert!(parse_exchange(&line[..cut]).is_err());
        }
    }
}
