//! Redaction: secrets never reach the disk or the live report. Header values (a built-in list
//! plus `--redact-header`) and JSON body fields (`--redact-json-path`) are replaced by
//! `redacted:<first 12 hex of sha256(value)>`, so equal secrets stay equal (a replay still
//! sees that two requests carried the same token) while the value itself is gone. Replay puts
//! real credentials back with `--set-header`.
//!
//! A body that should be searched for JSON fields but cannot be (content-encoded, or cut at
//! `--max-body` so it does not parse) is dropped from the copy rather than written with its
//! secrets; the exchange is then marked `body_truncated`, which replay skips.

use crate::compare::Observed;
use crate::exchange::{header, Exchange, Headers};
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Headers redacted whatever the flags say.
pub const DEFAULT_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// The replacement for a secret value.
pub fn redact_value(v: &[u8]) -> String {
    let digest = Sha256::digest(v);
    let mut out = String::with_capacity(9 + 12);
    out.push_str("redacted:");
    for b in &digest[..6] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

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

    /// Replaces every value at this path; returns how many were replaced.
    fn apply(&self, v: &mut Value) -> usize {
        apply_steps(&self.steps, v)
    }
}

fn apply_steps(steps: &[Step], v: &mut Value) -> usize {
    let Some((first, rest)) = steps.split_first() else {
        if v.as_str().is_some_and(|s| s.starts_with("redacted:")) {
            return 0;
        }
        let text = match &*v {
            Value::String(s) => s.as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        };
        *v = Value::String(redact_value(&text));
        return 1;
    };
    match (first, v) {
        (Step::Key(k), Value::Object(m)) => m.get_mut(k).map_or(0, |c| apply_steps(rest, c)),
        (Step::Index(n), Value::Array(a)) => a.get_mut(*n).map_or(0, |c| apply_steps(rest, c)),
        (Step::Any, Value::Array(a)) => a.iter_mut().map(|c| apply_steps(rest, c)).sum(),
        (Step::Any, Value::Object(m)) => m.values_mut().map(|c| apply_steps(rest, c)).sum(),
        _ => 0,
    }
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
            if self.headers.iter().any(|r| r.eq_ignore_ascii_case(k)) {
                *v = redact_value(v.as_bytes());
            }
        }
    }

    /// Redacts JSON fields in a body whose message has `headers`.
    pub fn body(&self, headers: &Headers, body: &mut Bytes, truncated: &mut bool) -> BodyOutcome {
        let mut out = BodyOutcome::default();
        if self.json.is_empty() || body.is_empty() {
            return out;
        }
        let ct_json = header(headers, "content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
        let looks_json = body
            .iter()
            .find(|c| !c.is_ascii_whitespace())
            .is_some_and(|c| *c == b'{' || *c == b'[');
        if !ct_json && !looks_json {
            return out;
        }
        let encoded = header(headers, "content-encoding")
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity") && !e.trim().is_empty());
        let parsed = if encoded {
            None
        } else {
            serde_json::from_slice::<Value>(body).ok()
        };
        let Some(mut v) = parsed else {
            // Cannot look inside, so it cannot be proven free of secrets: keep nothing.
            *body = Bytes::new();
            *truncated = true;
            out.dropped = true;
            return out;
        };
        out.fields = self.json.iter().map(|p| p.apply(&mut v)).sum();
        if out.fields > 0 {
            match serde_json::to_vec(&v) {
                Ok(b) => *body = Bytes::from(b),
                Err(_) => {
                    *body = Bytes::new();
                    *truncated = true;
                    out.dropped = true;
                }
            }
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

    /// Redacts a live answer before it is compared, so the live report shows no secret
    /// (equal secrets still compare equal).
    pub fn observed(&self, o: &mut Observed) {
        self.headers(&mut o.headers);
        self.headers(&mut o.trailers);
        let mut truncated = false;
        self.body(&o.headers, &mut o.body, &mut truncated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
