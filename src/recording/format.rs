//! Recording format v1 on the wire: the serde shapes of the header line and of one exchange
//! line, and the conversion to and from the in-memory [`Exchange`]. Kept apart from the
//! reader and writer so both agree on one definition of the format. Exchange lines are
//! written by [`super::line`], by hand, to the bytes serde_json writes for these shapes.

use crate::exchange::{Exchange, Request, Response, Tls};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Current value of the `shadowdiff_recording` marker in the header line.
pub const FORMAT_VERSION: u64 = 1;

/// What a recording holds in place of a secret value: `redacted:` and the first 12 hex
/// digits of its SHA-256, so that equal secrets stay equal and a replay can still tell
/// whether a live value is the one that was recorded.
pub fn redact_value(v: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(v);
    let mut out = String::with_capacity(9 + 12);
    out.push_str("redacted:");
    for b in &digest[..6] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The redaction of a value as a difference shows it: a JSON string is hashed as the text it
/// spells, as the recording hashes it, anything else as shown.
pub fn redact_shown(shown: &str) -> String {
    match serde_json::from_str::<String>(shown) {
        Ok(s) => redact_value(s.as_bytes()),
        Err(_) => redact_value(shown.as_bytes()),
    }
}

/// True for a value written by [`redact_value`].
pub fn is_redacted(v: &str) -> bool {
    v.strip_prefix("redacted:")
        .is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

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

/// One exchange line: what a line is read into, and (in tests) the serde shape the lines
/// [`super::line`] writes must match byte for byte.
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
    /// `https` when the request came over TLS; absent (or `http`) for plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheme: Option<Cow<'a, str>>,
    /// The ALPN protocol of that TLS session, when one was agreed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alpn: Option<Cow<'a, str>>,
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

/// Why a line is not a recording exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// What was wrong, naming the field and what was expected.
    pub message: String,
    /// The line stops before its JSON does: what a writer stopped mid-write leaves, as
    /// opposed to a whole line that is wrong.
    pub cut: bool,
}

impl LineError {
    fn bad(message: String) -> Self {
        LineError {
            message,
            cut: false,
        }
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LineError {}

/// What `request.method` must hold.
const METHOD_EXPECTED: &str =
    "an HTTP method such as \"GET\" (a token: letters, digits, !#$%&'*+-.^_`|~)";
/// What `request.uri` must hold: every request-target form HTTP/1.1 has (RFC 9112 3.2).
const URI_EXPECTED: &str = "a request target: a path such as \"/a/b?x=1\", an absolute URI such as \"http://host/a\", \"*\", or host:port for CONNECT";

/// Parses one exchange line. The error names the field that was wrong and what was expected.
pub fn parse_exchange(line: &[u8]) -> Result<Exchange, LineError> {
    // Validating the whole line once lets serde_json skip validating every string in it.
    let text = std::str::from_utf8(line).map_err(|e| LineError {
        message: format!(
            "not valid UTF-8 at byte {} (recording lines are UTF-8 JSON; binary bodies use \"body_encoding\":\"base64\")",
            e.valid_up_to()
        ),
        // A character cut in half at the end of the line is a cut line, not a bad one.
        cut: e.error_len().is_none(),
    })?;
    let w: WireExchange = serde_json::from_str(text).map_err(|e| describe_json_error(text, &e))?;
    let ts_us = parse_ts_us(&w.ts).ok_or_else(|| {
        LineError::bad(format!(
            "field ts: expected an RFC 3339 time like 2026-11-02T09:00:00.000001Z, found {:?}",
            w.ts
        ))
    })?;
    if w.id.is_empty() {
        return Err(LineError::bad(
            "field id: expected a non-empty string, found \"\"".into(),
        ));
    }
    if !is_token(&w.request.method) {
        return Err(LineError::bad(format!(
            "field request.method: expected {METHOD_EXPECTED}, found {:?}",
            w.request.method
        )));
    }
    if !is_request_target(&w.request.method, &w.request.uri) {
        return Err(LineError::bad(format!(
            "field request.uri: expected {URI_EXPECTED}, found {:?}",
            w.request.uri
        )));
    }
    let tls = match (w.request.scheme.as_deref(), w.request.alpn) {
        (None | Some("http"), None) => None,
        (Some("https"), alpn) => Some(Tls {
            alpn: alpn.map(Cow::into_owned),
        }),
        (None | Some("http"), Some(_)) => {
            return Err(LineError::bad(
                "field request.alpn: expected only with \"scheme\":\"https\" (ALPN is agreed on in a TLS handshake)".to_string(),
            ))
        }
        (Some(other), _) => {
            return Err(LineError::bad(format!(
                "field request.scheme: expected \"http\" or \"https\", found {other:?}"
            )))
        }
    };
    // What serde reads into a `Cow` is owned, so `into_owned` below moves, not copies.
    let request = Request {
        tls,
        body: decode_body(w.request.body.into_owned(), w.request.body_encoding)
            .map_err(|e| LineError::bad(format!("field request.body: {e}")))?,
        method: w.request.method.into_owned(),
        uri: w.request.uri.into_owned(),
        version: w.request.version.into_owned(),
        headers: w.request.headers.into_owned(),
        body_truncated: w.request.body_truncated,
    };
    let response = match w.response {
        Some(r) => Some(Response {
            body: decode_body(r.body.into_owned(), r.body_encoding)
                .map_err(|e| LineError::bad(format!("field response.body: {e}")))?,
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

/// An HTTP token (RFC 9110 5.6.2), which is what a method is.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A request target in one of HTTP/1.1's forms. `*` is taken with any method and
/// host:port with CONNECT only: the tap records whatever target its HTTP parser accepted,
/// and importers write the request line as captured, so the reader takes what they write.
pub fn is_request_target(method: &str, uri: &str) -> bool {
    if uri.starts_with('/') {
        // Nearly every line: the one check a good line pays.
        return true;
    }
    let absolute = uri.split_once("://").is_some_and(|(scheme, _)| {
        scheme
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    uri == "*" || absolute || (method.eq_ignore_ascii_case("CONNECT") && !uri.is_empty())
}

/// Serializes one exchange as a line (without the trailing newline), by hand: see
/// [`super::line`].
pub fn exchange_to_line(ex: &Exchange, out: &mut Vec<u8>) {
    super::line::write_exchange(ex, out);
}

/// The line serde_json writes for `ex` from the wire shapes: what [`super::line`] must
/// match byte for byte.
#[cfg(test)]
pub(super) fn serde_line(ex: &Exchange) -> Vec<u8> {
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
            scheme: ex.request.tls.as_ref().map(|_| Cow::Borrowed("https")),
            alpn: ex
                .request
                .tls
                .as_ref()
                .and_then(|t| t.alpn.as_deref())
                .map(Cow::Borrowed),
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
    serde_json::to_vec(&w).unwrap()
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

#[cfg(test)]
fn encode_body(body: &Bytes) -> (Cow<'_, str>, BodyEncoding) {
    match std::str::from_utf8(body) {
        Ok(s) => (Cow::Borrowed(s), BodyEncoding::Utf8),
        Err(_) => (
            Cow::Owned(base64::engine::general_purpose::STANDARD.encode(body)),
            BodyEncoding::Base64,
        ),
    }
}

/// Describes a line that serde_json refused. A line that is not JSON says at which column;
/// a JSON line that is not an exchange is parsed again, only now, with the path tracked
/// (so the good lines pay nothing for it), to name the field and what it should hold.
fn describe_json_error(text: &str, e: &serde_json::Error) -> LineError {
    use serde_json::error::Category;
    let bare = serde_message(e);
    match e.classify() {
        Category::Eof => LineError {
            message: format!("incomplete JSON: the line ends before its object does ({bare})"),
            cut: true,
        },
        Category::Syntax => {
            LineError::bad(format!("not valid JSON at column {}: {bare}", e.column()))
        }
        Category::Data => {
            let mut de = serde_json::Deserializer::from_str(text);
            LineError::bad(
                match serde_path_to_error::deserialize::<_, WireExchange>(&mut de) {
                    Err(pe) => describe_field(&pe.path().to_string(), &serde_message(pe.inner())),
                    Ok(_) => format!("not a recording exchange: {bare}"),
                },
            )
        }
        Category::Io => LineError::bad(format!("read error: {bare}")),
    }
}

/// serde_json's message without its " at line 1 column N": every line is line 1 to it.
fn serde_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&position).unwrap_or(&full).to_string()
}

/// "field PATH: expected WHAT, found WHAT" from serde's path and message.
fn describe_field(path: &str, message: &str) -> String {
    let child = |name: &str| {
        if path == "." {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = |rest: &str| rest.split('`').nth(1).unwrap_or_default().to_string();
    if let Some(rest) = message.strip_prefix("missing field ") {
        let field = child(&quoted(rest));
        return match expected(&field) {
            Some(what) => format!("field {field}: missing; expected {what}"),
            None => format!("field {field}: missing"),
        };
    }
    if let Some(rest) = message.strip_prefix("duplicate field ") {
        return format!("field {}: given twice", child(&quoted(rest)));
    }
    if path.starts_with('[') {
        return "expected a JSON object (one exchange per line), found a list".into();
    }
    if path == "." {
        return match found(message) {
            Some(f) => format!("expected a JSON object (one exchange per line), found {f}"),
            None => format!("not a recording exchange: {message}"),
        };
    }
    match (expected(path), found(message)) {
        (Some(what), Some(f)) => format!("field {path}: expected {what}, found {f}"),
        _ => format!("field {path}: {message}"),
    }
}

/// What the field at `path` holds, in words.
fn expected(path: &str) -> Option<&'static str> {
    // Indices do not change what a field holds: request.headers[3][0] is request.headers[][].
    let mut generic = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                generic.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => generic.push(c),
        }
    }
    Some(match generic.as_str() {
        "id" => "a non-empty string",
        "ts" => "an RFC 3339 time like 2026-11-02T09:00:00.000001Z",
        "interface" | "tenant" => "a string",
        "request" => "an object {\"method\":...,\"uri\":...}",
        "response" => "an object {\"status\":...}",
        "request.method" => METHOD_EXPECTED,
        "request.uri" => URI_EXPECTED,
        "request.version" => "a string such as \"HTTP/1.1\"",
        "response.status" => "an HTTP status code such as 200 (a whole number up to 65535)",
        "latency_us" => "a whole number of microseconds, 0 or more",
        _ => match generic.rsplit('.').next().unwrap_or_default() {
            "headers" | "trailers" => "a list of [name, value] pairs",
            "headers[]" | "trailers[]" => "[name, value], a pair of strings",
            "headers[][]" | "trailers[][]" => "a string",
            "body" => "a string (base64 when body_encoding is \"base64\")",
            "body_encoding" => "\"utf8\" or \"base64\"",
            "body_truncated" => "true or false",
            _ => return None,
        },
    })
}

/// What serde found instead, from its message ("invalid type: string \"x\", expected ...").
fn found(message: &str) -> Option<String> {
    for prefix in ["invalid type: ", "invalid value: ", "unknown variant "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let what = rest.rsplit_once(", expected").map_or(rest, |(w, _)| w);
            return Some(what.to_string());
        }
    }
    let rest = message.strip_prefix("invalid length ")?;
    let n = rest.split_once(',').map_or(rest, |(n, _)| n);
    Some(format!("a list of {n}"))
}

/// Parses an RFC 3339 time to microseconds since the epoch.
pub fn parse_ts_us(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// Formats microseconds since the epoch as RFC 3339 UTC with six fraction digits.
pub fn format_ts_us(us: i64) -> String {
    format_time_us(ts_time(us))
}

fn ts_time(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// [`format_ts_us`] as bytes on the stack, for years 0-9999 (any clock's); `None` outside
/// them. The recorder writes one per exchange, straight into its line.
pub fn ts_digits(us: i64) -> Option<[u8; 27]> {
    time_digits(ts_time(us))
}

/// Formats a time as RFC 3339 UTC with six fraction digits (`2026-11-02T09:00:00.123456Z`),
/// the precision recordings use. Built by hand: the `time` formatters are fallible, and
/// nothing here can fail.
pub fn format_time_us(t: OffsetDateTime) -> String {
    match time_digits(t) {
        // The digits and separators are ASCII.
        Some(d) => d.iter().map(|&b| char::from(b)).collect(),
        // Outside what four digits hold (never from a clock).
        None => format_time_general(t),
    }
}

/// Digit by digit rather than through `format!`: the tap's recorder writes one per
/// exchange, and the formatting machinery was a tenth of its time.
fn time_digits(t: OffsetDateTime) -> Option<[u8; 27]> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut s = *b"0000-00-00T00:00:00.000000Z";
    let mut digits = |at: usize, v: u32, width: u32| {
        for i in 0..width {
            s[at + i as usize] = b'0' + (v / 10u32.pow(width - 1 - i) % 10) as u8;
        }
    };
    digits(0, year.unsigned_abs(), 4);
    digits(5, u32::from(u8::from(t.month())), 2);
    digits(8, u32::from(t.day()), 2);
    digits(11, u32::from(t.hour()), 2);
    digits(14, u32::from(t.minute()), 2);
    digits(17, u32::from(t.second()), 2);
    digits(20, t.microsecond(), 6);
    Some(s)
}

/// [`format_time_us`] through `format!`, for any year.
fn format_time_general(t: OffsetDateTime) -> String {
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
    fn timestamps_are_formatted_digit_by_digit_as_format_would() {
        for us in [
            0i64,
            1,
            999_999,
            1_795_000_000_123_456,
            253_402_300_799_999_999,
            -1,
            -62_135_596_800_000_000,
        ] {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap();
            assert_eq!(format_time_us(t), format_time_general(t), "{us}");
        }
        // Across every year the digits hold, every month and day of month in turn, against
        // `format!`: 41 days and a few hours apart, at changing times of day and fractions.
        let (first, last) = (-62_167_219_200_000_000i64, 253_402_300_799_999_999i64);
        let step = (41 * 86_400 + 3 * 3_600 + 7 * 60 + 11) * 1_000_000 + 123_457;
        let mut us = first;
        while us <= last {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap();
            let want = format_time_general(t);
            assert_eq!(
                ts_digits(us).map(|d| d.to_vec()),
                Some(want.into_bytes()),
                "{us}"
            );
            us += step;
        }
        // Outside years 0-9999, the general form.
        assert_eq!(ts_digits(first - 1), None);
    }

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
                tls: None,
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
        exchange_to_line(&ex, &mut line);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.contains("\"body_encoding\":\"base64\""), "{text}");
        assert_eq!(parse_exchange(&line).unwrap(), ex);
    }

    #[test]
    fn the_scheme_and_alpn_of_a_tls_request_are_read_back_and_checked() {
        let line = |request_tail: &str| {
            format!(
                r#"{{"id":"a","ts":"2026-11-02T09:00:00Z","request":{{"method":"GET","uri":"/"{request_tail}}}}}"#
            )
        };
        let tls = |tail: &str| parse_exchange(line(tail).as_bytes()).map(|e| e.request.tls);
        assert_eq!(tls(""), Ok(None));
        assert_eq!(tls(r#","scheme":"http""#), Ok(None));
        assert_eq!(tls(r#","scheme":"https""#), Ok(Some(Tls { alpn: None })));
        assert_eq!(
            tls(r#","scheme":"https","alpn":"h2""#),
            Ok(Some(Tls {
                alpn: Some("h2".into())
            }))
        );
        let e = tls(r#","scheme":"ftp""#).unwrap_err();
        assert!(e.message.contains("field request.scheme"), "{e}");
        let e = tls(r#","alpn":"h2""#).unwrap_err();
        assert!(e.message.contains("field request.alpn"), "{e}");
        // Written as read.
        let ex = parse_exchange(line(r#","scheme":"https","alpn":"http/1.1""#).as_bytes()).unwrap();
        let mut out = Vec::new();
        exchange_to_line(&ex, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#""body_truncated":false,"scheme":"https","alpn":"http/1.1"}"#),
            "{text}"
        );
    }

    #[test]
    fn non_utf8_lines_say_where() {
        let e = parse_exchange(b"{\"id\":\"a\xff\"}").unwrap_err();
        assert!(e.message.contains("not valid UTF-8 at byte 8"), "{e}");
        assert!(!e.cut);
        // Half a character at the end is what a cut leaves.
        assert!(parse_exchange(b"{\"id\":\"\xc3").unwrap_err().cut);
    }

    /// The message for one bad line, `{}` in `line` standing for the fields of a good one.
    fn error_of(line: &str) -> LineError {
        let good = r#""id":"a","ts":"2026-11-02T09:00:00Z","request":{"method":"GET","uri":"/"}"#;
        parse_exchange(line.replace("{}", good).as_bytes()).unwrap_err()
    }

    #[test]
    fn bad_fields_are_named_with_what_was_expected() {
        for (line, want) in [
            (
                r#"{"id":"a","ts":"yesterday","request":{"method":"GET","uri":"/"}}"#,
                r#"field ts: expected an RFC 3339 time like 2026-11-02T09:00:00.000001Z, found "yesterday""#,
            ),
            (
                r#"{"id":"a","ts":"2026-11-02T09:00:00Z"}"#,
                "field request: missing; expected an object",
            ),
            (
                r#"{"id":"a","ts":"2026-11-02T09:00:00Z","request":{"method":"GET"}}"#,
                "field request.uri: missing; expected a request target",
            ),
            (
                r#"{"id":"a","ts":"2026-11-02T09:00:00Z","request":{"method":"GET","uri":"/","body":"!!","body_encoding":"base64"}}"#,
                "field request.body: expected base64",
            ),
            (
                r#"{"latency_us":-1,{}}"#,
                "field latency_us: expected a whole number of microseconds, 0 or more, found integer `-1`",
            ),
            (
                r#"{{},"response":{"status":99999}}"#,
                "field response.status: expected an HTTP status code such as 200 (a whole number up to 65535), found integer `99999`",
            ),
            (
                r#"{"id":"a","ts":"2026-11-02T09:00:00Z","request":{"method":"GET","uri":"/","headers":[["a","1"],["b"]]}}"#,
                "field request.headers[1]: expected [name, value], a pair of strings, found a list of 1",
            ),
            (
                r#"{{},"response":{"status":200,"trailers":[["grpc-status",0]]}}"#,
                "field response.trailers[0][1]: expected a string, found integer `0`",
            ),
            (
                r#"{{},"response":{"status":200,"body_encoding":"gzip"}}"#,
                r#"field response.body_encoding: expected "utf8" or "base64", found `gzip`"#,
            ),
            (
                r#""x""#,
                r#"expected a JSON object (one exchange per line), found string "x""#,
            ),
            (
                r#"[1,2]"#,
                "expected a JSON object (one exchange per line), found a list",
            ),
            ("not json", "not valid JSON at column 2: expected ident"),
        ] {
            let e = error_of(line);
            assert!(e.message.starts_with(want), "{line}\n got: {e}\nwant: {want}");
            assert!(!e.message.contains("line 1"), "{e}");
            assert!(!e.cut, "{line}");
        }
    }

    #[test]
    fn method_and_uri_must_be_what_http_allows() {
        for (method, uri, field) in [
            ("", "", "request.method"),
            ("GET", "", "request.uri"),
            ("GET POST", "/", "request.method"),
            ("GET", "a/b", "request.uri"),
            ("GET", "host:443", "request.uri"),
        ] {
            let e = error_of(&format!(
                r#"{{"id":"a","ts":"2026-11-02T09:00:00Z","request":{{"method":"{method}","uri":"{uri}"}}}}"#
            ));
            assert!(
                e.message.starts_with(&format!("field {field}: expected")),
                "{e}"
            );
        }
        // What the tap and the importers write: origin form, the absolute form of HAR
        // entries and proxies, `*`, and CONNECT's host:port.
        for (method, uri) in [
            ("GET", "/a/b?x=1"),
            ("POST", "/pkg.Service/Method"),
            ("GET", "https://api.example/orders/17?x=1"),
            ("OPTIONS", "*"),
            ("CONNECT", "api.example:443"),
            ("PURGE", "/"),
        ] {
            let line = format!(
                r#"{{"id":"a","ts":"2026-11-02T09:00:00Z","request":{{"method":"{method}","uri":"{uri}"}}}}"#
            );
            parse_exchange(line.as_bytes()).unwrap();
        }
    }

    #[test]
    fn only_an_unfinished_line_counts_as_cut() {
        assert!(error_of(r#"{"id":"a","ts":"2026-11-02T09:0"#).cut);
        assert!(
            !error_of(r#"{"id":"a","ts":"yesterday","request":{"method":"GET","uri":"/"}}"#).cut
        );
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
