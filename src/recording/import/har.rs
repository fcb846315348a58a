//! HAR 1.2 files (browser devtools, Charles, Fiddler, mitmproxy): each `log.entries[]`
//! item becomes one exchange: the request (method, URL, headers, `postData` text or
//! params), the response (status, headers, `content` text or base64), `startedDateTime`
//! as the time and `timings.wait` as the latency. Entries are streamed one at a time, so a
//! large HAR never sits in memory whole, and every string is cut as it is read
//! (`json_cut.rs`), so neither does a huge body: it keeps a prefix and is marked
//! truncated, as the other importers do past the body cap.

use super::json_cut::{CutReader, Cuts, Limits, SharedLog};
use super::{
    emit, exchange, ImportReport, Sink, INCOMPLETE_BODY_CAP as INCOMPLETE_TOO_BIG, MAX_BODY,
    SKIP_REST_UNUSABLE,
};
use crate::error::{Error, Result};
use crate::exchange::{header, Headers, Request, Response};
use crate::recording::format::parse_ts_us;
use base64::Engine;
use bytes::Bytes;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::cell::Cell;
use std::io::{BufReader, Read};
use std::path::Path;

const SKIP_NOT_ENTRY: &str =
    "entry does not match HAR 1.2 (request or response fields missing or of the wrong type)";
const SKIP_BAD_TIME: &str = "entry's startedDateTime is not an RFC 3339 time";
const SKIP_BAD_URL: &str = "entry's request.url is not an absolute http(s) URL";
const SKIP_BAD_POST: &str = "entry's postData cannot be turned back into bytes (bad base64, or multipart given only as params)";
const SKIP_LONG_STRING: &str =
    "entry's request holds a string longer than 1 MiB outside its body (URL, header, ...)";
const INCOMPLETE_LONG_STRING: &str =
    "response holds a string longer than 1 MiB outside its body (written without a response)";
const INCOMPLETE_REQ_BODY_MISSING: &str =
    "request body not saved in the HAR (written, marked truncated)";
const INCOMPLETE_RESP_BODY_MISSING: &str =
    "response body not saved in the HAR (kept empty, marked truncated)";
const INCOMPLETE_RESP_BAD_BASE64: &str =
    "response content is not valid base64 (kept empty, marked truncated)";
const INCOMPLETE_BAD_STATUS: &str = "response status outside 100-999 (written without a response)";
const NOTE_NO_RESPONSE: &str = "HAR entries with no response (status 0: failed or blocked)";
const NOTE_DECODED: &str = "HAR responses stored decoded: Content-Encoding header dropped";
const NOTE_NO_WIRE_BODY: &str =
    "HAR responses with a stored body that never crossed the wire (HEAD, 1xx, 204, 304): recorded without it";

#[derive(Deserialize)]
struct HarEntry {
    #[serde(rename = "startedDateTime")]
    started: String,
    request: HarRequest,
    #[serde(default)]
    response: Option<HarResponse>,
    #[serde(default)]
    timings: Option<HarTimings>,
}

#[derive(Deserialize)]
struct HarRequest {
    method: String,
    url: String,
    #[serde(rename = "httpVersion", default)]
    http_version: Option<String>,
    #[serde(default)]
    headers: Option<Vec<HarHeader>>,
    #[serde(rename = "postData", default)]
    post_data: Option<HarPostData>,
    #[serde(rename = "bodySize", default)]
    body_size: Option<f64>,
}

#[derive(Deserialize)]
struct HarHeader {
    name: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct HarPostData {
    #[serde(rename = "mimeType", default)]
    mime_type: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    params: Option<Vec<HarParam>>,
    /// Not in HAR 1.2, but some exporters base64 binary request bodies and say so here.
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct HarParam {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(rename = "fileName", default)]
    file_name: Option<String>,
}

#[derive(Deserialize)]
struct HarResponse {
    status: f64,
    #[serde(default)]
    headers: Option<Vec<HarHeader>>,
    #[serde(default)]
    content: Option<HarContent>,
}

#[derive(Deserialize)]
struct HarContent {
    #[serde(default)]
    size: Option<f64>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct HarTimings {
    #[serde(default)]
    wait: Option<f64>,
}

/// Imports HAR files; entry numbers run on across files so ids stay unique.
#[derive(Default)]
pub struct HarImporter {
    entries: u64,
    limits: Limits,
}

impl HarImporter {
    /// An importer with nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one HAR document, writing an exchange per usable entry.
    pub fn read(
        &mut self,
        path: &Path,
        input: impl Read,
        sink: &mut dyn Sink,
        report: &mut ImportReport,
    ) -> Result<()> {
        let mut failure: Option<Error> = None;
        let log = SharedLog::default();
        let mut in_file: u64 = 0;
        let mut on_entry = |value: serde_json::Value| -> std::result::Result<(), ()> {
            self.entries += 1;
            report.read += 1;
            let n = self.entries;
            in_file += 1;
            let cuts = log.borrow_mut().take_cuts(in_file);
            let at = |detail: &str| format!("{}: entry {n}: {detail}", path.display());
            match convert(value, n, cuts, report, &at) {
                Some(ex) => emit(sink, report, ex).map_err(|e| failure = Some(e)),
                None => Ok(()),
            }
        };
        let in_entries = Cell::new(false);
        let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(
            256 << 10,
            CutReader::new(input, self.limits, log.clone()),
        ));
        let parsed = Root {
            on_entry: &mut on_entry,
            in_entries: &in_entries,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        if let Some(e) = failure {
            return Err(e);
        }
        let stopped = log.borrow_mut().stopped.take();
        match parsed {
            Ok(()) => Ok(()),
            // A limit of the scanner, not damage: its own line and reason say more than
            // serde_json's view of a failed read.
            Err(e) if e.is_io() && stopped.is_some() => {
                let (line, why) = stopped.unwrap_or_default();
                if !in_entries.get() {
                    return Err(Error::Input {
                        file: path.to_path_buf(),
                        line,
                        message: why,
                    });
                }
                report.read += 1;
                report.skip(SKIP_REST_UNUSABLE, || {
                    format!("{}:{line}: {why}; reading stopped here", path.display())
                });
                Ok(())
            }
            // Past the start of `entries` the file is a HAR: the entries before the damage
            // are kept, and the damage (a cut, broken JSON) ends the file as one skip. JSON
            // gives no way to find where the next entry would start.
            Err(e) if in_entries.get() => {
                report.read += 1;
                report.skip(SKIP_REST_UNUSABLE, || {
                    format!(
                        "{}:{}: column {}: {}; expected the rest of the HAR document, reading stopped here",
                        path.display(),
                        e.line(),
                        e.column(),
                        json_problem(&e)
                    )
                });
                Ok(())
            }
            Err(e) => Err(json_error(path, &e)),
        }
    }
}

/// What is wrong at a serde_json error, in words.
fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "the file ends inside the JSON document".to_string(),
        Category::Syntax => format!("not valid JSON ({e})"),
        Category::Data => format!("not a HAR document: {e}"),
        Category::Io => format!("read error: {e}"),
    }
}

/// Turns a serde_json error into one naming the file, line and what was expected.
fn json_error(path: &Path, e: &serde_json::Error) -> Error {
    Error::Input {
        file: path.to_path_buf(),
        line: e.line() as u64,
        message: format!(
            "column {}: {}; expected a HAR 1.2 document {{\"log\": {{\"entries\": [...]}}}}",
            e.column(),
            json_problem(e)
        ),
    }
}

/// The top-level object: only `log` matters.
struct Root<'f> {
    on_entry: &'f mut dyn FnMut(serde_json::Value) -> std::result::Result<(), ()>,
    /// Set once the `entries` array is reached.
    in_entries: &'f Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a HAR object with a `log` member")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "log" && !seen {
                seen = true;
                map.next_value_seed(Log {
                    on_entry: &mut *self.on_entry,
                    in_entries: self.in_entries,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !seen {
            return Err(A::Error::custom("no `log` member"));
        }
        Ok(())
    }
}

/// The `log` object: only `entries` matters.
struct Log<'f> {
    on_entry: &'f mut dyn FnMut(serde_json::Value) -> std::result::Result<(), ()>,
    in_entries: &'f Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Log<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Log<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a `log` object with an `entries` array")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "entries" && !seen {
                seen = true;
                map.next_value_seed(Entries {
                    on_entry: &mut *self.on_entry,
                    in_entries: self.in_entries,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !seen {
            return Err(A::Error::custom("no `log.entries` array"));
        }
        Ok(())
    }
}

/// The `entries` array, handed over one entry at a time.
struct Entries<'f> {
    on_entry: &'f mut dyn FnMut(serde_json::Value) -> std::result::Result<(), ()>,
    in_entries: &'f Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an `entries` array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        self.in_entries.set(true);
        while let Some(v) = seq.next_element::<serde_json::Value>()? {
            (self.on_entry)(v)
                .map_err(|()| A::Error::custom("stopped: writing the recording failed"))?;
        }
        Ok(())
    }
}

/// Converts one entry; `None` (with a counted skip) when it cannot be used.
fn convert(
    value: serde_json::Value,
    n: u64,
    cuts: Cuts,
    report: &mut ImportReport,
    at: &dyn Fn(&str) -> String,
) -> Option<crate::exchange::Exchange> {
    let entry: HarEntry = match serde_json::from_value(value) {
        Ok(e) => e,
        Err(e) => {
            report.skip(SKIP_NOT_ENTRY, || at(&e.to_string()));
            return None;
        }
    };
    if cuts.request_other {
        report.skip(SKIP_LONG_STRING, || at("request"));
        return None;
    }
    let Some(ts_us) = parse_ts_us(&entry.started) else {
        report.skip(SKIP_BAD_TIME, || at(&format!("{:?}", entry.started)));
        return None;
    };
    let request = request(entry.request, cuts.request_body, report, at)?;
    report.requests += 1;
    let head = request.method.eq_ignore_ascii_case("HEAD");
    let response = match entry.response {
        Some(_) if cuts.response_other => {
            report.incomplete(INCOMPLETE_LONG_STRING, || at("response"));
            None
        }
        Some(r) => response(r, head, cuts.response_body, report, at),
        None => None,
    };
    let latency_us = entry
        .timings
        .and_then(|t| t.wait)
        .filter(|w| w.is_finite() && *w >= 0.0)
        .map(|w| (w * 1000.0).round() as u64);
    Some(exchange(
        format!("har-{n}"),
        ts_us,
        request,
        response,
        latency_us,
    ))
}

fn headers(list: Option<Vec<HarHeader>>) -> Headers {
    list.unwrap_or_default()
        .into_iter()
        .map(|h| (h.name, h.value.unwrap_or_default()))
        .collect()
}

/// `HTTP/1.1`, `HTTP/2`, `HTTP/3` from the spellings exporters use (`http/2.0`, `h3`, ``).
fn version(v: Option<String>) -> String {
    let v = v.unwrap_or_default();
    match v.to_ascii_lowercase().as_str() {
        "http/1.0" => "HTTP/1.0".into(),
        "http/2" | "http/2.0" | "h2" | "h2c" => "HTTP/2".into(),
        "http/3" | "http/3.0" | "h3" => "HTTP/3".into(),
        // Unknown or empty (a failed or cached request): the recording format's default.
        "" | "http/1.1" | "unknown" => "HTTP/1.1".into(),
        _ => v,
    }
}

/// The recorded request; `cut` says the scanner cut `postData.text`.
fn request(
    r: HarRequest,
    cut: bool,
    report: &mut ImportReport,
    at: &dyn Fn(&str) -> String,
) -> Option<Request> {
    let Some((authority, uri)) = split_url(&r.url) else {
        report.skip(SKIP_BAD_URL, || at(&format!("{:?}", r.url)));
        return None;
    };
    let mut headers = headers(r.headers);
    // HTTP/2 and HTTP/3 entries carry the authority in `:authority` (or only in the URL),
    // not in a Host header; the recording keeps it as `host`, as the tap does, since the
    // target is in origin form and replay with `--host-header keep` needs one.
    if header(&headers, "host").is_none() {
        let host = header(&headers, ":authority")
            .filter(|a| !a.is_empty())
            .unwrap_or(authority)
            .to_string();
        headers.push(("host".into(), host));
    }
    let mut body_truncated = false;
    let body = match r.post_data {
        Some(pd) => match post_body(pd) {
            Some(b) => b,
            None => {
                report.skip(SKIP_BAD_POST, || at("postData"));
                return None;
            }
        },
        None if r.body_size.is_some_and(|s| s > 0.0) => {
            report.incomplete(INCOMPLETE_REQ_BODY_MISSING, || {
                at(&format!("bodySize {}", r.body_size.unwrap_or_default()))
            });
            body_truncated = true;
            Vec::new()
        }
        None => Vec::new(),
    };
    let (body, capped) = cap(body);
    let cut = capped || cut;
    if cut {
        report.incomplete(INCOMPLETE_TOO_BIG, || at("request body"));
    }
    Some(Request {
        method: r.method,
        uri,
        version: version(r.http_version),
        headers,
        body: Bytes::from(body),
        body_truncated: body_truncated || cut,
        tls: None,
    })
}

/// The request body from `postData`: its text (base64-decoded when marked so), or the
/// params form-encoded again; `None` when the bytes cannot be rebuilt.
fn post_body(pd: HarPostData) -> Option<Vec<u8>> {
    if let Some(text) = pd.text {
        if pd.encoding.as_deref() == Some("base64") {
            return base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .ok();
        }
        return Some(text.into_bytes());
    }
    let params = pd.params.unwrap_or_default();
    if params.is_empty() {
        return Some(Vec::new());
    }
    let mime = pd.mime_type.unwrap_or_default().to_ascii_lowercase();
    if !mime.starts_with("application/x-www-form-urlencoded")
        || params.iter().any(|p| p.file_name.is_some())
    {
        // A multipart body needs its boundary and part headers, which params do not keep.
        return None;
    }
    let mut out = String::new();
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        form_encode(&p.name, &mut out);
        out.push('=');
        form_encode(p.value.as_deref().unwrap_or_default(), &mut out);
    }
    Some(out.into_bytes())
}

/// application/x-www-form-urlencoded encoding of one name or value.
fn form_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

fn cap(mut body: Vec<u8>) -> (Vec<u8>, bool) {
    if body.len() > MAX_BODY {
        body.truncate(MAX_BODY);
        (body, true)
    } else {
        (body, false)
    }
}

/// The recorded response; `head` says the request was a HEAD, whose answer has no body,
/// `cut` that the scanner cut `content.text`.
fn response(
    r: HarResponse,
    head: bool,
    cut: bool,
    report: &mut ImportReport,
    at: &dyn Fn(&str) -> String,
) -> Option<Response> {
    if r.status <= 0.0 {
        report.note(NOTE_NO_RESPONSE);
        return None;
    }
    if !(100.0..=999.0).contains(&r.status) || r.status.fract() != 0.0 {
        report.incomplete(INCOMPLETE_BAD_STATUS, || {
            at(&format!("status {}", r.status))
        });
        return None;
    }
    report.responses += 1;
    let status = r.status as u16;
    let mut headers = headers(r.headers);
    let content = r.content;
    let (text, encoding, size) = match content {
        Some(c) => (c.text, c.encoding, c.size),
        None => (None, None, None),
    };
    // Such answers carry no body on the wire (RFC 9110 sections 6.4.1, 9.3.2); what a
    // browser stores for them is the cached body it showed, which production never sent.
    let bodiless = head || (100..200).contains(&status) || status == 204 || status == 304;
    let mut body_truncated = false;
    let body = match text {
        _ if bodiless => {
            if size.is_some_and(|s| s > 0.0) || text.as_ref().is_some_and(|t| !t.is_empty()) {
                report.note(NOTE_NO_WIRE_BODY);
            }
            Vec::new()
        }
        Some(t) if encoding.as_deref() == Some("base64") => {
            match base64::engine::general_purpose::STANDARD.decode(t.trim().as_bytes()) {
                Ok(b) => b,
                Err(_) => {
                    report.incomplete(INCOMPLETE_RESP_BAD_BASE64, || at("response.content.text"));
                    body_truncated = true;
                    Vec::new()
                }
            }
        }
        Some(t) => t.into_bytes(),
        None => {
            if size != Some(0.0) {
                report.incomplete(INCOMPLETE_RESP_BODY_MISSING, || {
                    at(&format!("status {status}"))
                });
                body_truncated = true;
            }
            Vec::new()
        }
    };
    // HAR keeps the content decoded (HAR 1.2, `content.text`); a Content-Encoding header
    // would claim a coding the stored body no longer has.
    if !body.is_empty() {
        let before = headers.len();
        headers.retain(|(k, v)| {
            !k.eq_ignore_ascii_case("content-encoding") || v.trim().eq_ignore_ascii_case("identity")
        });
        if headers.len() != before {
            report.note(NOTE_DECODED);
        }
    }
    let (body, capped) = cap(body);
    // A body kept empty is already marked for its own reason (not sent, bad base64).
    let cut = capped || (cut && !body.is_empty());
    if cut {
        report.incomplete(INCOMPLETE_TOO_BIG, || at("response body"));
    }
    Some(Response {
        status,
        headers,
        trailers: None,
        body: Bytes::from(body),
        body_truncated: body_truncated || cut,
    })
}

/// Splits an absolute URL into its authority and the request target in origin form (path
/// and query, without fragment), as the recording format and the tap write it.
fn split_url(url: &str) -> Option<(&str, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Userinfo never reaches the server in a request line or Host header.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.is_empty() {
        return None;
    }
    let target = rest[end..].split('#').next().unwrap_or_default();
    let origin_form = if target.starts_with('/') {
        target.to_string()
    } else {
        // `https://a?x=1` and `https://a`: the path is `/` (RFC 9112 section 3.2.1).
        format!("/{target}")
    };
    Some((authority, origin_form))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Exchange;

    fn run(input: &str) -> Result<(Vec<Exchange>, ImportReport)> {
        let mut out = Vec::new();
        let mut report = ImportReport::new("entries");
        HarImporter::new().read(Path::new("t.har"), input.as_bytes(), &mut out, &mut report)?;
        Ok((out, report))
    }

    #[test]
    fn entry_fields_map_to_an_exchange() {
        let har = r#"{"log":{"version":"1.2","creator":{"name":"t"},"entries":[
          {"startedDateTime":"2023-07-25T10:58:25.577252+00:00","time":5,
           "request":{"method":"POST","url":"https://api.example/orders/17?x=1#top","httpVersion":"HTTP/2.0",
             "headers":[{"name":":authority","value":"api.example"}],
             "postData":{"mimeType":"application/x-www-form-urlencoded","params":[{"name":"a b","value":"1&2"}]}},
           "response":{"status":201,"httpVersion":"HTTP/2.0","headers":[{"name":"content-encoding","value":"gzip"}],
             "content":{"size":3,"mimeType":"application/json","text":"e30=","encoding":"base64"}},
           "timings":{"send":0.5,"wait":12.25,"receive":1}}]}}"#;
        let (out, report) = run(har).unwrap();
        assert_eq!(out.len(), 1, "{report:?}");
        let e = &out[0];
        assert_eq!(e.id, "har-1");
        assert_eq!(e.request.uri, "/orders/17?x=1");
        assert_eq!(e.interface.as_deref(), Some("POST /orders/{id}"));
        assert_eq!(e.request.version, "HTTP/2");
        assert_eq!(&e.request.body[..], b"a+b=1%262");
        assert_eq!(header(&e.request.headers, "host"), Some("api.example"));
        let r = e.response.as_ref().unwrap();
        assert_eq!((r.status, &r.body[..]), (201, &b"{}"[..]));
        assert!(header(&r.headers, "content-encoding").is_none());
        assert_eq!(e.latency_us, Some(12250));
        assert_eq!(e.ts_us, parse_ts_us("2023-07-25T10:58:25.577252Z").unwrap());
    }

    #[test]
    fn answers_without_a_body_on_the_wire_are_recorded_without_one() {
        let entry = |method: &str, status: u16| {
            format!(
                r#"{{"startedDateTime":"2023-07-13T12:32:32.676Z","request":{{"method":"{method}","url":"http://a/x"}},
                   "response":{{"status":{status},"headers":[{{"name":"content-encoding","value":"gzip"}}],
                   "content":{{"size":5,"text":"cached"}}}}}}"#
            )
        };
        let har = format!(
            r#"{{"log":{{"entries":[{},{},{},{},{}]}}}}"#,
            entry("GET", 304),
            entry("HEAD", 200),
            entry("GET", 204),
            entry("GET", 103),
            entry("GET", 200)
        );
        let (out, report) = run(&har).unwrap();
        let bodies: Vec<&[u8]> = out
            .iter()
            .map(|e| &e.response.as_ref().unwrap().body[..])
            .collect();
        assert_eq!(bodies, [&b""[..], b"", b"", b"", b"cached"]);
        assert_eq!(report.notes[NOTE_NO_WIRE_BODY], 4);
        assert!(report.incomplete.is_empty() && report.skipped.is_empty());
        // The coding header is what production sent with the (absent) body: kept.
        assert_eq!(
            header(
                &out[0].response.as_ref().unwrap().headers,
                "content-encoding"
            ),
            Some("gzip")
        );
    }

    #[test]
    fn targets_are_recorded_in_origin_form_with_the_authority_as_host() {
        for (url, headers, uri, host) in [
            (
                "https://u:p@a.example:8443/p/q?x=1#frag",
                "",
                "/p/q?x=1",
                "a.example:8443",
            ),
            ("https://a.example?x=1", "", "/?x=1", "a.example"),
            ("http://a.example", "", "/", "a.example"),
            (
                "https://a.example/h2",
                r#"{"name":":authority","value":"b.example"}"#,
                "/h2",
                "b.example",
            ),
            (
                "http://a.example/h1",
                r#"{"name":"Host","value":"c.example"}"#,
                "/h1",
                "c.example",
            ),
        ] {
            let har = format!(
                r#"{{"log":{{"entries":[{{"startedDateTime":"2023-07-13T12:32:32.676Z",
                   "request":{{"method":"GET","url":"{url}","headers":[{headers}]}}}}]}}}}"#
            );
            let (out, report) = run(&har).unwrap();
            assert_eq!(out.len(), 1, "{url}: {report:?}");
            assert_eq!(out[0].request.uri, uri, "{url}");
            assert_eq!(header(&out[0].request.headers, "host"), Some(host), "{url}");
            let hosts = out[0]
                .request
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .count();
            assert_eq!(hosts, 1, "{url}");
        }
    }

    #[test]
    fn failed_entries_and_bad_entries_are_accounted() {
        let har = r#"{"log":{"entries":[
          {"startedDateTime":"2023-07-13T12:32:32.676Z","request":{"method":"GET","url":"https://www.google.com/"},
           "response":{"status":0,"content":{"size":0}},"timings":{"wait":-1}},
          {"startedDateTime":"yesterday","request":{"method":"GET","url":"https://a/"}},
          {"startedDateTime":"2023-07-13T12:32:32.676Z","request":{"url":"https://a/"}},
          {"startedDateTime":"2023-07-13T12:32:32.676Z","request":{"method":"GET","url":"/relative"}},
          {"startedDateTime":"2023-07-13T12:32:32.676Z","request":{"method":"GET","url":"https://a/p.png"},
           "response":{"status":200,"content":{"mimeType":"image/png"}}}
        ]}}"#;
        let (out, report) = run(har).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].response.is_none());
        assert_eq!(out[0].latency_us, None);
        assert!(out[1].response.as_ref().unwrap().body_truncated);
        assert_eq!(report.read, 5);
        // The entry written without its response body is written, not also skipped.
        assert_eq!(report.read, report.written + report.skipped_total());
        assert_eq!(report.skipped[SKIP_BAD_TIME], 1);
        assert_eq!(report.skipped[SKIP_NOT_ENTRY], 1);
        assert_eq!(report.skipped[SKIP_BAD_URL], 1);
        assert_eq!(report.incomplete[INCOMPLETE_RESP_BODY_MISSING], 1);
        assert_eq!(report.notes[NOTE_NO_RESPONSE], 1);
        assert!(
            report.examples[SKIP_NOT_ENTRY][0]
                .starts_with("t.har: entry 3: missing field `method`"),
            "{report:?}"
        );
    }

    #[test]
    fn not_a_har_names_line_and_expectation() {
        for (input, want) in [
            ("{\"log\":\n {,}}", "t.har:2: column 3: not valid JSON"),
            ("[1,2]", "t.har:1: column 1: not a HAR document"),
            ("{\"log\": {}}", "no `log.entries` array"),
        ] {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
            assert!(e.contains("expected a HAR 1.2 document"), "{e}");
        }
    }

    #[test]
    fn damage_inside_the_entries_keeps_the_entries_before_it() {
        let entry = r#"{"startedDateTime":"2023-07-13T12:32:32.676Z","request":{"method":"GET","url":"https://a/x"},
          "response":{"status":200,"content":{"size":2,"text":"ok"}}}"#;
        let whole = format!("{{\"log\": {{\"entries\": [\n{entry},\n{entry}\n]}}}}");
        let cut_at = whole.rfind("\"response\"").unwrap();
        for (input, want) in [
            (
                whole[..cut_at].to_string(),
                "the file ends inside the JSON document",
            ),
            (
                format!("{{\"log\": {{\"entries\": [\n{entry},\n{{,]}}}}"),
                "t.har:4: column 2: not valid JSON",
            ),
            (format!("{whole} x"), "not valid JSON"),
        ] {
            let (out, report) = run(&input).unwrap();
            let want_out = if input.ends_with(" x") { 2 } else { 1 };
            assert_eq!(out.len(), want_out, "{input}: {report:?}");
            assert_eq!(&out[0].response.as_ref().unwrap().body[..], b"ok");
            assert_eq!(report.read, want_out as u64 + 1, "{report:?}");
            assert_eq!(report.skipped[SKIP_REST_UNUSABLE], 1);
            let e = &report.examples[SKIP_REST_UNUSABLE][0];
            assert!(e.starts_with("t.har:") && e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn strings_cut_while_reading_mark_bodies_truncated_and_skip_what_cannot_be_kept() {
        let entry = |request: &str, response: &str| {
            format!(
                r#"{{"startedDateTime":"2023-07-13T12:32:32.676Z","request":{request},"response":{response}}}"#
            )
        };
        let long = "x".repeat(100);
        let har = format!(
            r#"{{"log":{{"entries":[{},{},{},{},{}]}}}}"#,
            entry(
                r#"{"method":"GET","url":"https://a/1"}"#,
                r#"{"status":200,"content":{"text":"0123456789abcdef"}}"#
            ),
            entry(
                &format!(r#"{{"method":"GET","url":"https://a/{long}"}}"#),
                r#"{"status":200}"#
            ),
            entry(
                r#"{"method":"POST","url":"https://a/3","postData":{"text":"MDEyMzQ1Njc4OWFi","encoding":"base64"}}"#,
                &format!(
                    r#"{{"status":200,"headers":[{{"name":"x","value":"{long}"}}],"content":{{"text":"ok"}}}}"#
                )
            ),
            entry(
                r#"{"method":"GET","url":"https://a/4"}"#,
                r#"{"status":200,"content":{"text":"fits"}}"#
            ),
            entry(
                r#"{"method":"GET","url":"https://a/5"}"#,
                r#"{"status":200,"content":{"text":"MDEyMzQ1Njc4OWFi","encoding":"base64"}}"#
            ),
        );
        let mut out = Vec::new();
        let mut report = ImportReport::new("entries");
        let mut importer = HarImporter {
            limits: Limits {
                body: 8,
                string: 64,
                entry: 4096,
                token: 64,
            },
            ..HarImporter::new()
        };
        importer
            .read(Path::new("t.har"), har.as_bytes(), &mut out, &mut report)
            .unwrap();
        let uris: Vec<&str> = out.iter().map(|e| e.request.uri.as_str()).collect();
        assert_eq!(uris, ["/1", "/3", "/4", "/5"], "{report:?}");
        let r1 = out[0].response.as_ref().unwrap();
        assert_eq!((&r1.body[..], r1.body_truncated), (&b"01234567"[..], true));
        assert_eq!(
            (&out[1].request.body[..], out[1].request.body_truncated),
            (&b"012345"[..], true)
        );
        assert!(out[1].response.is_none());
        let r4 = out[2].response.as_ref().unwrap();
        assert_eq!((&r4.body[..], r4.body_truncated), (&b"fits"[..], false));
        let r5 = out[3].response.as_ref().unwrap();
        assert_eq!((&r5.body[..], r5.body_truncated), (&b"012345"[..], true));
        assert_eq!(
            report.incomplete.get(INCOMPLETE_TOO_BIG),
            Some(&3),
            "{report:?}"
        );
        assert_eq!(report.incomplete[INCOMPLETE_LONG_STRING], 1, "{report:?}");
        assert_eq!(report.skipped.get(SKIP_LONG_STRING), Some(&1), "{report:?}");
        assert_eq!(
            report.examples[SKIP_LONG_STRING],
            ["t.har: entry 2: request"]
        );
        assert_eq!(report.read, 5);
    }

    #[test]
    fn an_entry_beyond_the_limits_stops_the_file_naming_the_line() {
        let headers = vec![r#"{"name":"a","value":"b"}"#; 400].join(",\n");
        let har = format!(
            "{{\"log\":{{\"entries\":[\n{{\"startedDateTime\":\"2023-07-13T12:32:32.676Z\",\"request\":{{\"method\":\"GET\",\"url\":\"https://a/1\"}}}},\n{{\"request\":{{\"headers\":[{headers}]}}}}]}}}}"
        );
        let mut out = Vec::new();
        let mut report = ImportReport::new("entries");
        let mut importer = HarImporter {
            limits: Limits {
                entry: 4096,
                ..Limits::default()
            },
            ..HarImporter::new()
        };
        importer
            .read(Path::new("t.har"), har.as_bytes(), &mut out, &mut report)
            .unwrap();
        assert_eq!(out.len(), 1);
        let e = &report.examples[SKIP_REST_UNUSABLE][0];
        assert!(
            e.starts_with("t.har:") && e.contains(": entry 2 holds more than"),
            "{e}"
        );
        let line: u64 = e.split(':').nth(1).unwrap().parse().unwrap();
        assert!((100..250).contains(&line), "{e}");

        let e = HarImporter::new()
            .read(
                Path::new("t.har"),
                format!(r#"{{"log":{{"version":{}}}}}"#, "9".repeat(5000)).as_bytes(),
                &mut out,
                &mut report,
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("t.har:1: a number or literal longer than 4096 bytes"),
            "{e}"
        );
    }
}
