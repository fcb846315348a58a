//! Redaction: secrets never reach the disk or the live report. Header values (a built-in list
//! plus `--redact-header`) and JSON body fields (`--redact-json-path`) are replaced by
//! `redacted:<first 12 hex of sha256(value)>`, so equal secrets stay equal (a replay still
//! sees that two requests carried the same token) while the value itself is gone. Replay puts
//! real credentials back with `--set-header`.
//!
//! A body that should be searched for JSON fields but cannot be (content-encoded, or cut at
//! `--max-body` so it does not parse) is dropped from the copy rather than written with its
//! secrets; the exchange is then marked `body_truncated`, which replay skips. A body that can
//! be searched keeps every byte but those of the redacted values.
//!
//! The live shadow compares the real answers and redacts only the values its report keeps
//! ([`Redactor::differences`]): redacting first could make two different answers equal. The
//! copy it sends the candidate carries the credentials as production got them, unless
//! `--shadow-redact` asks for it to be redacted as the recording is.

use crate::compare::pathpat::{parse_path, Step as PathStep};
use crate::compare::{DiffKind, Difference, Observed};
use crate::exchange::{header, Exchange, Headers};
use bytes::Bytes;

/// Headers redacted whatever the flags say.
pub const DEFAULT_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

use crate::recording::format::redact_shown;
pub use crate::recording::format::redact_value;

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    /// `[*]` or `.*`: every element or member.
    Any,
}

/// A JSON body path like `$.user.password`, `$.cards[*].number` or `$['x-token']`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses the `$.a.b` form; the error says what was expected where.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix('$')
            .ok_or_else(|| "expected a path starting with `$`, like $.user.password".to_string())?;
        let b = rest.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        while i < b.len() {
            match b[i] {
                b'.' => {
                    if b.get(i + 1) == Some(&b'.') {
                        return Err(
                            "recursive descent (`..`) is not supported; name the full path".into(),
                        );
                    }
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                        j += 1;
                    }
                    let name = &rest[start..j];
                    if name.is_empty() {
                        return Err(format!(
                            "expected a field name after `.` at offset {}",
                            start + 1
                        ));
                    }
                    steps.push(if name == "*" {
                        Step::Any
                    } else {
                        Step::Key(name.to_string())
                    });
                    i = j;
                }
                b'[' => {
                    let close = rest[i..]
                        .find(']')
                        .map(|k| i + k)
                        .ok_or_else(|| format!("unclosed `[` at offset {}", i + 1))?;
                    let inner = &rest[i + 1..close];
                    let step = if inner == "*" {
                        Step::Any
                    } else if let Ok(n) = inner.parse::<usize>() {
                        Step::Index(n)
                    } else if inner.len() >= 2
                        && ((inner.starts_with('\'') && inner.ends_with('\''))
                            || (inner.starts_with('"') && inner.ends_with('"')))
                    {
                        Step::Key(inner[1..inner.len() - 1].to_string())
                    } else {
                        return Err(format!(
                            "expected [*], [N] or ['name'] at offset {}, found [{inner}]",
                            i + 1
                        ));
                    };
                    steps.push(step);
                    i = close + 1;
                }
                _ => {
                    return Err(format!(
                        "expected `.` or `[` at offset {}, found {:?}",
                        i + 1,
                        &rest[i..]
                    ))
                }
            }
        }
        if steps.is_empty() {
            return Err("the whole body (`$`) cannot be redacted by path; name a field".into());
        }
        Ok(JsonPath { steps })
    }

    /// Appends the byte spans of every value at this path in the JSON text `b`, whose
    /// top-level value starts at `start`.
    fn spans(&self, b: &[u8], start: usize, out: &mut Vec<(usize, usize)>) {
        walk(b, start, &self.steps, out);
    }

    /// True when the value at `path` (a concrete path as differences report it) holds, is,
    /// or lies inside a value this path redacts.
    fn touches(&self, path: &[PathStep]) -> bool {
        self.steps.iter().zip(path).all(|(s, p)| match (s, p) {
            (Step::Any, _) => true,
            (Step::Key(a), PathStep::Key(b)) => a == b,
            (Step::Index(a), PathStep::Index(b)) => a == b,
            _ => false,
        })
    }
}

// A span-preserving walk over JSON text already known to be valid (serde_json checked it):
// only the bytes of redacted values change, so numbers keep their precision and spelling,
// members their order and the text its spacing. Every byte is read through `at` and every
// loop moves forward, so even text that is not valid JSON cannot make the walk panic.

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(at(b, i), b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The index after the string whose opening quote is at `i`.
fn string_end(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The index after the value that starts at `i`.
fn value_end(b: &[u8], i: usize) -> usize {
    match at(b, i) {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            j
        }
    }
}

/// True when the JSON string `raw` (quotes included) spells `key`.
fn key_is(raw: &[u8], key: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw.len() >= 2 && &raw[1..raw.len() - 1] == key.as_bytes();
    }
    serde_json::from_slice::<String>(raw).is_ok_and(|k| k == key)
}

/// Collects the spans of the values `steps` name below the value at `i`; returns the index
/// after that value.
fn walk(b: &[u8], i: usize, steps: &[Step], out: &mut Vec<(usize, usize)>) -> usize {
    let Some((first, rest)) = steps.split_first() else {
        let end = value_end(b, i);
        out.push((i, end));
        return end;
    };
    let object = match at(b, i) {
        b'{' => true,
        b'[' => false,
        _ => return value_end(b, i),
    };
    let mut j = skip_ws(b, i + 1);
    if matches!(at(b, j), b'}' | b']') {
        return j + 1;
    }
    let mut index = 0usize;
    while j < b.len() {
        let picked = if object {
            let key_end = string_end(b, j);
            let picked = match first {
                Step::Key(k) => key_is(&b[j..key_end], k),
                Step::Any => true,
                Step::Index(_) => false,
            };
            // Past the colon, to the member's value.
            j = skip_ws(b, skip_ws(b, key_end) + 1);
            picked
        } else {
            match first {
                Step::Index(n) => *n == index,
                Step::Any => true,
                Step::Key(_) => false,
            }
        };
        let end = if picked {
            walk(b, j, rest, out)
        } else {
            value_end(b, j)
        };
        index += 1;
        j = skip_ws(b, end.max(j + 1));
        if at(b, j) != b',' {
            return j + 1;
        }
        j = skip_ws(b, j + 1);
    }
    b.len()
}

/// The JSON string that replaces the secret whose JSON text is `raw`; `None` when it is
/// already a redaction, so that redacting twice changes nothing.
fn replacement(raw: &[u8]) -> Option<String> {
    let secret: Vec<u8> = if at(raw, 0) == b'"' {
        let s = serde_json::from_slice::<String>(raw).ok()?;
        if s.starts_with("redacted:") {
            return None;
        }
        s.into_bytes()
    } else {
        raw.to_vec()
    };
    Some(format!("\"{}\"", redact_value(&secret)))
}

/// What redacting one body did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyOutcome {
    /// Fields replaced.
    pub fields: usize,
    /// True when the body had to be dropped because it could not be searched.
    pub dropped: bool,
}

/// The redaction rules of one tap.
#[derive(Clone, Debug)]
pub struct Redactor {
    headers: Vec<String>,
    json: Vec<JsonPath>,
}

impl Redactor {
    /// The built-in header list plus `extra_headers` (lower case) and `json_paths`.
    pub fn new(extra_headers: &[String], json_paths: &[String]) -> Result<Self, String> {
        let mut headers: Vec<String> = DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect();
        for h in extra_headers {
            let h = h.to_ascii_lowercase();
            if !headers.contains(&h) {
                headers.push(h);
            }
        }
        let json = json_paths
            .iter()
            .map(|p| JsonPath::parse(p).map_err(|e| format!("{p:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Redactor { headers, json })
    }

    /// Redacts secret header values in place.
    pub fn headers(&self, h: &mut Headers) {
        for (k, v) in h.iter_mut() {
            if self.is_secret_header(k) {
                *v = redact_value(v.as_bytes());
            }
        }
    }

    /// True when a body of a message with `headers` is searched for JSON fields: there are
    /// JSON paths to redact, and it is declared or looks like JSON.
    fn searches(&self, headers: &Headers, body: &[u8]) -> bool {
        if self.json.is_empty() || body.is_empty() {
            return false;
        }
        header(headers, "content-type").is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
            || body
                .iter()
                .find(|c| !c.is_ascii_whitespace())
                .is_some_and(|c| *c == b'{' || *c == b'[')
    }

    /// Redacts JSON fields in a body whose message has `headers`. Only the redacted values
    /// change; every other byte stays as it came, so what replay sends is what the client
    /// sent, secrets aside.
    pub fn body(&self, headers: &Headers, body: &mut Bytes, truncated: &mut bool) -> BodyOutcome {
        let mut out = BodyOutcome::default();
        if !self.searches(headers, body) {
            return out;
        }
        let encoded = header(headers, "content-encoding")
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity") && !e.trim().is_empty());
        if encoded || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
            // Cannot look inside, so it cannot be proven free of secrets: keep nothing.
            *body = Bytes::new();
            *truncated = true;
            out.dropped = true;
            return out;
        }
        let start = skip_ws(body, 0);
        let mut spans = Vec::new();
        for p in &self.json {
            p.spans(body, start, &mut spans);
        }
        if spans.is_empty() {
            return out;
        }
        // A value inside another redacted one goes with it.
        spans.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut text = Vec::with_capacity(body.len());
        let mut done = 0;
        for (s, e) in spans {
            if s < done {
                continue;
            }
            let (Some(kept), Some(raw)) = (body.get(done..s), body.get(s..e)) else {
                continue;
            };
            let Some(r) = replacement(raw) else {
                continue;
            };
            text.extend_from_slice(kept);
            text.extend_from_slice(r.as_bytes());
            done = e;
            out.fields += 1;
        }
        if out.fields > 0 {
            text.extend_from_slice(body.get(done..).unwrap_or_default());
            *body = Bytes::from(text);
        }
        out
    }

    /// Redacts a whole exchange; returns the number of bodies dropped.
    pub fn exchange(&self, ex: &mut Exchange) -> u64 {
        let mut dropped = 0;
        let r = &mut ex.request;
        self.headers(&mut r.headers);
        dropped += u64::from(
            self.body(&r.headers, &mut r.body, &mut r.body_truncated)
                .dropped,
        );
        if let Some(resp) = &mut ex.response {
            self.headers(&mut resp.headers);
            if let Some(t) = &mut resp.trailers {
                self.headers(t);
            }
            dropped += u64::from(
                self.body(&resp.headers, &mut resp.body, &mut resp.body_truncated)
                    .dropped,
            );
        }
        dropped
    }

    /// Redacts the values that differences between two live answers show. The answers are
    /// compared as they came, since redacting them first could make different answers equal
    /// (a body that cannot be searched is emptied on both sides); what the report keeps must
    /// still hold no secret. A value becomes `redacted:<hash>` when it is a secret header's,
    /// a body field a JSON path names (or a value holding one, or inside one), or a whole
    /// body that would be searched for JSON fields.
    pub fn differences(&self, diffs: &mut [Difference], a: &Observed, b: &Observed) {
        for d in diffs {
            let secret = match d.kind {
                DiffKind::Status => false,
                DiffKind::Upstream => match d.path.strip_prefix("upstream.header:") {
                    Some(name) => self.is_secret_header(name),
                    None => true,
                },
                DiffKind::Header | DiffKind::Trailer => self.is_secret_header(&d.path),
                DiffKind::Body => match parse_path(&d.path) {
                    Some(path) => self.json.iter().any(|p| p.touches(&path)),
                    None => {
                        self.searches(&a.headers, &a.body) || self.searches(&b.headers, &b.body)
                    }
                },
            };
            if secret {
                for v in [&mut d.baseline, &mut d.candidate].into_iter().flatten() {
                    *v = redact_shown(v);
                }
            }
        }
    }

    fn is_secret_header(&self, name: &str) -> bool {
        self.headers.iter().any(|r| r.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_become_stable_hashes() {
        let v = redact_value(b"Bearer s3cret");
        assert!(v.starts_with("redacted:") && v.len() == 21, "{v}");
        assert_eq!(v, redact_value(b"Bearer s3cret"));
        assert_ne!(v, redact_value(b"Bearer other"));
        // sha256("abc") = ba7816bf8f01...
        assert_eq!(redact_value(b"abc"), "redacted:ba7816bf8f01");
    }

    #[test]
    fn default_and_extra_headers_are_redacted_case_insensitively() {
        let r = Redactor::new(&["x-session".into()], &[]).unwrap();
        let mut hs = h(&[
            ("Authorization", "Bearer a"),
            ("cookie", "sid=1"),
            ("X-Session", "abc"),
            ("accept", "*/*"),
        ]);
        r.headers(&mut hs);
        assert_eq!(hs[0].1, redact_value(b"Bearer a"));
        assert_eq!(hs[1].1, redact_value(b"sid=1"));
        assert_eq!(hs[2].1, redact_value(b"abc"));
        assert_eq!(hs[3].1, "*/*");
    }

    #[test]
    fn json_paths() {
        for bad in ["a.b", "$", "$..x", "$.a[", "$.a[x]", "$.", "$a"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        let r = Redactor::new(
            &[],
            &[
                "$.password".into(),
                "$.cards[*].number".into(),
                "$['x-token']".into(),
                "$.nested.*".into(),
            ],
        )
        .unwrap();
        let hs = h(&[("content-type", "application/json")]);
        let mut body = Bytes::from_static(
            br#"{"user":"ann","password":"hunter2","cards":[{"number":4111,"exp":"12/30"},{"number":5500}],"x-token":"t","nested":{"a":1,"b":[2]}}"#,
        );
        let mut truncated = false;
        let o = r.body(&hs, &mut body, &mut truncated);
        assert_eq!(o.fields, 6);
        assert!(!truncated);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["user"], "ann");
        assert_eq!(v["password"], redact_value(b"hunter2"));
        assert_eq!(v["cards"][0]["number"], redact_value(b"4111"));
        assert_eq!(v["cards"][0]["exp"], "12/30");
        assert_eq!(v["x-token"], redact_value(b"t"));
        assert_eq!(v["nested"]["b"], redact_value(b"[2]"));
        let text = String::from_utf8_lossy(&body).to_string();
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn unsearchable_bodies_are_dropped_not_leaked() {
        let r = Redactor::new(&[], &["$.password".into()]).unwrap();
        let hs = h(&[("content-type", "application/json")]);
        let mut cut = Bytes::from_static(br#"{"password":"hunter2","more":"#);
        let mut truncated = true;
        assert!(r.body(&hs, &mut cut, &mut truncated).dropped);
        assert!(cut.is_empty() && truncated);
        let gz = h(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ]);
        let mut body = Bytes::from_static(b"\x1f\x8b...");
        let mut t = false;
        assert!(r.body(&gz, &mut body, &mut t).dropped);
        // Plain text without JSON rules' shape is left alone.
        let mut text = Bytes::from_static(b"password=hunter2");
        let mut t = false;
        let plain = h(&[("content-type", "text/plain")]);
        assert_eq!(r.body(&plain, &mut text, &mut t), BodyOutcome::default());
        assert_eq!(&text[..], b"password=hunter2");
        // Without JSON rules nothing is parsed at all.
        let none = Redactor::new(&[], &[]).unwrap();
        let mut b = Bytes::from_static(b"{not json");
        assert!(!none.body(&hs, &mut b, &mut t).dropped);
    }

    #[test]
    fn only_redacted_values_change_byte_for_byte() {
        let r = Redactor::new(&[], &["$.password".into(), "$.cards[*].number".into()]).unwrap();
        let hs = h(&[("content-type", "application/json")]);
        let mut t = false;
        let mut body = Bytes::from_static(
            br#"{"z":1,"amount":12345678901234567890123,"price":1.10,"password":"x"}"#,
        );
        assert_eq!(r.body(&hs, &mut body, &mut t).fields, 1);
        let want = format!(
            r#"{{"z":1,"amount":12345678901234567890123,"price":1.10,"password":"{}"}}"#,
            redact_value(b"x")
        );
        assert_eq!(std::str::from_utf8(&body).unwrap(), want);
        // Spacing, escaped keys, nesting and values of other types are kept as they were.
        let mut body = Bytes::from_static(
            b" { \"cards\" : [ {\"n\":\"a\\\"]\" , \"number\" : 4111 } , {\"number\":{\"x\":[1,\"}\"]}} ],\n\"pass\\u0077ord\":null }\n",
        );
        assert_eq!(r.body(&hs, &mut body, &mut t).fields, 3);
        let want = format!(
            " {{ \"cards\" : [ {{\"n\":\"a\\\"]\" , \"number\" : \"{}\" }} , {{\"number\":\"{}\"}} ],\n\"pass\\u0077ord\":\"{}\" }}\n",
            redact_value(b"4111"),
            redact_value(br#"{"x":[1,"}"]}"#),
            redact_value(b"null"),
        );
        assert_eq!(std::str::from_utf8(&body).unwrap(), want);
        assert!(!t);
        // Redacting again changes nothing; a body no path names is not touched at all.
        let before = body.clone();
        assert_eq!(r.body(&hs, &mut body, &mut t).fields, 0);
        assert_eq!(body, before);
        let untouched: &[u8] = br#"{"b":1.50,  "a":[1e2, 12345678901234567890123]}"#;
        let mut body = Bytes::from_static(untouched);
        assert_eq!(r.body(&hs, &mut body, &mut t), BodyOutcome::default());
        assert_eq!(&body[..], untouched);
        // Duplicate keys: every occurrence is a secret.
        let mut body = Bytes::from_static(br#"{"password":"a","password":"b"}"#);
        assert_eq!(r.body(&hs, &mut body, &mut t).fields, 2);
        let text = String::from_utf8_lossy(&body).to_string();
        assert!(
            !text.contains(r#""a""#) && !text.contains(r#""b""#),
            "{text}"
        );
    }

    #[test]
    fn live_differences_show_no_secret_and_keep_the_rest() {
        let r = Redactor::new(&["x-session".into()], &["$.user.password".into()]).unwrap();
        let json = Observed {
            headers: h(&[("content-type", "application/json")]),
            body: Bytes::from_static(b"{}"),
            ..Default::default()
        };
        let d = |kind, path: &str, a: &str, b: &str| Difference {
            kind,
            path: path.into(),
            baseline: Some(a.into()),
            candidate: Some(b.into()),
            tolerated: false,
        };
        let mut diffs = vec![
            d(DiffKind::Status, "status", "200", "500"),
            d(DiffKind::Header, "set-cookie", "sid=1", "sid=2"),
            d(DiffKind::Header, "x-session", "s1", "s2"),
            d(DiffKind::Header, "content-type", "a/json", "a/xml"),
            d(
                DiffKind::Body,
                "$.user.password",
                "\"hunter2\"",
                "\"other\"",
            ),
            d(
                DiffKind::Body,
                "$.user",
                r#"{"password":"hunter2"}"#,
                "null",
            ),
            d(DiffKind::Body, "$.user.password.x", "1", "2"),
            d(DiffKind::Body, "$.price", "10", "99"),
            d(DiffKind::Body, "$.user.name", "\"ann\"", "\"bob\""),
            d(DiffKind::Body, "body", "hunter2", "other"),
        ];
        r.differences(&mut diffs, &json, &json);
        let shown: Vec<(&str, &str)> = diffs
            .iter()
            .map(|d| {
                (
                    d.baseline.as_deref().unwrap(),
                    d.candidate.as_deref().unwrap(),
                )
            })
            .collect();
        let red = redact_value;
        assert_eq!(shown[0], ("200", "500"));
        assert_eq!(shown[1], (red(b"sid=1").as_str(), red(b"sid=2").as_str()));
        assert_eq!(shown[2], (red(b"s1").as_str(), red(b"s2").as_str()));
        assert_eq!(shown[3], ("a/json", "a/xml"));
        // A JSON string is hashed as the text it spells, as in the recording.
        assert_eq!(shown[4].0, red(b"hunter2"));
        for (a, b) in &shown[5..7] {
            assert!(a.starts_with("redacted:") && b.starts_with("redacted:"));
        }
        assert_eq!(shown[7], ("10", "99"));
        assert_eq!(shown[8], ("\"ann\"", "\"bob\""));
        assert!(shown[9].0.starts_with("redacted:"));
        // A whole-body difference between bodies never searched for fields stays readable.
        let text = Observed {
            headers: h(&[("content-type", "text/plain")]),
            body: Bytes::from_static(b"hello"),
            ..Default::default()
        };
        let mut diffs = vec![d(DiffKind::Body, "body", "hello", "hullo")];
        r.differences(&mut diffs, &text, &text);
        assert_eq!(diffs[0].baseline.as_deref(), Some("hello"));
    }
}
