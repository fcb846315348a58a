//! Interface keys: the unit a gateway routes by, and so the unit every report groups by.
//! gRPC calls are keyed by `/pkg.Service/Method`; other HTTP by `METHOD /path` with ids
//! templated as `{id}` (numbers, UUIDs, long hex), so `/users/17` and `/users/42` are one
//! interface. A header or a JSON pointer into the request body can be chosen instead, for
//! gateways that route by those (JSON-RPC style).

use crate::exchange::{header, Request};
use std::fmt;
use std::str::FromStr;

/// How to compute an exchange's interface key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InterfaceKey {
    /// gRPC path, else `METHOD /templated/path`.
    #[default]
    Default,
    /// The value of this request header (falls back to the default key when absent).
    Header(String),
    /// The string at this JSON pointer in the request body (falls back likewise).
    JsonPointer(String),
}

impl FromStr for InterfaceKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "default" || s == "path" {
            Ok(InterfaceKey::Default)
        } else if let Some(h) = s.strip_prefix("header:") {
            if h.is_empty() {
                return Err("expected a header name after `header:`".into());
            }
            Ok(InterfaceKey::Header(h.to_ascii_lowercase()))
        } else if let Some(p) = s.strip_prefix("json:") {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!(
                    "expected a JSON pointer starting with `/` after `json:`, found {p:?}"
                ));
            }
            Ok(InterfaceKey::JsonPointer(p.to_string()))
        } else {
            Err(format!(
                "expected `default`, `header:NAME` or `json:/pointer`, found {s:?}"
            ))
        }
    }
}

impl fmt::Display for InterfaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterfaceKey::Default => f.write_str("default"),
            InterfaceKey::Header(h) => write!(f, "header:{h}"),
            InterfaceKey::JsonPointer(p) => write!(f, "json:{p}"),
        }
    }
}

/// A user path template like `/users/{id}/orders`, optionally limited to one method
/// (`GET /users/{id}`): `{name}` matches exactly one non-empty segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    method: Option<String>,
    segments: Vec<Option<String>>,
    text: String,
}

impl FromStr for PathTemplate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (method, path) = match s.split_once(' ') {
            Some((m, p)) => (Some(m.trim().to_ascii_uppercase()), p.trim()),
            None => (None, s.trim()),
        };
        if !path.starts_with('/') {
            return Err(format!(
                "expected a path template starting with '/' (optionally after a method), found {s:?}"
            ));
        }
        let segments = path
            .split('/')
            .skip(1)
            .map(|seg| {
                if seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2 {
                    None
                } else {
                    Some(seg.to_string())
                }
            })
            .collect();
        Ok(PathTemplate {
            method,
            segments,
            text: path.to_string(),
        })
    }
}

impl PathTemplate {
    fn matches(&self, method: &str, path: &str) -> bool {
        if self
            .method
            .as_deref()
            .is_some_and(|m| !m.eq_ignore_ascii_case(method))
        {
            return false;
        }
        let mut segs = path.split('/').skip(1);
        for want in &self.segments {
            match (want, segs.next()) {
                (Some(w), Some(got)) if w == got => {}
                (None, Some(got)) if !got.is_empty() => {}
                _ => return false,
            }
        }
        segs.next().is_none()
    }
}

/// Computes interface keys: the key rule plus user path templates.
#[derive(Clone, Debug, Default)]
pub struct Keyer {
    /// The key rule.
    pub key: InterfaceKey,
    /// Templates tried before the default templating (first match wins).
    pub templates: Vec<PathTemplate>,
}

impl Keyer {
    /// The interface key of `req`.
    pub fn key_of(&self, req: &Request) -> String {
        if let InterfaceKey::Default = self.key {
            if !self.templates.is_empty() {
                let path = req.path();
                if let Some(t) = self
                    .templates
                    .iter()
                    .find(|t| t.matches(&req.method, &path))
                {
                    return format!("{} {}", req.method.to_ascii_uppercase(), t.text);
                }
            }
        }
        interface_of(req, &self.key)
    }
}

/// The interface key of a request under `key`.
pub fn interface_of(req: &Request, key: &InterfaceKey) -> String {
    match key {
        InterfaceKey::Default => default_key(req),
        InterfaceKey::Header(h) => match header(&req.headers, h) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => default_key(req),
        },
        InterfaceKey::JsonPointer(p) => serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| match v.pointer(p) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) if !other.is_null() => Some(other.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| default_key(req)),
    }
}

fn default_key(req: &Request) -> String {
    let path = req.path();
    let is_grpc = header(&req.headers, "content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/grpc"));
    if is_grpc {
        return path.to_string();
    }
    // One string, built in place: the tap's recorder keys every exchange it writes.
    let mut out = String::with_capacity(req.method.len() + 1 + path.len() + 8);
    out.push_str(&req.method);
    out.make_ascii_uppercase();
    out.push(' ');
    push_template(&path, &mut out);
    out
}

/// Replaces id-like path segments by `{id}`.
pub fn template_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    push_template(path, &mut out);
    out
}

/// Appends [`template_path`]`(path)` to `out`.
fn push_template(path: &str, out: &mut String) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id_segment(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
}

/// True for segments that are ids rather than route words: numbers and the [`IdKind`]s.
fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    !b.is_empty() && (b.iter().all(u8::is_ascii_digit) || id_kind(b).is_some())
}

/// The shapes of machine-minted ids, told apart by their form alone. One reading for both
/// the interface keys (an id in a path becomes `{id}`) and the report's hints (a differing
/// value that looks like one is probably per-request), so the two never disagree on what an
/// id is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    /// `8-4-4-4-12` hex digits.
    Uuid,
    /// 26 Crockford base-32 characters whose first is at most `7`.
    Ulid,
    /// A 64-bit number of 17 to 20 digits (Twitter, Discord, Sonyflake).
    Snowflake,
    /// 16 or more hex digits with at least one digit: object ids, hashes, tokens. The
    /// length and the digit keep words like `deadbeef` and `acceptedfeedface` out.
    Hex,
}

/// What kind of id `b` looks like, or `None`.
pub fn id_kind(b: &[u8]) -> Option<IdKind> {
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    if b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
    {
        Some(IdKind::Uuid)
    } else if b.len() == 26
        && b[0] <= b'7'
        && b.iter()
            .all(|c| CROCKFORD.contains(&c.to_ascii_uppercase()))
    {
        Some(IdKind::Ulid)
    } else if (17..=20).contains(&b.len()) && b.iter().all(u8::is_ascii_digit) {
        Some(IdKind::Snowflake)
    } else if b.len() >= 16
        && b.iter().all(u8::is_ascii_hexdigit)
        && b.iter().any(u8::is_ascii_digit)
    {
        Some(IdKind::Hex)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: method.into(),
            uri: uri.into(),
            version: "HTTP/1.1".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            body_truncated: false,
            tls: None,
        }
    }

    #[test]
    fn ids_are_templated() {
        let k = InterfaceKey::Default;
        assert_eq!(
            interface_of(&req("get", "/api/users/17?x=1", &[], ""), &k),
            "GET /api/users/{id}"
        );
        assert_eq!(
            interface_of(
                &req(
                    "GET",
                    "/cart/123e4567-e89b-12d3-a456-426614174000/items",
                    &[],
                    ""
                ),
                &k
            ),
            "GET /cart/{id}/items"
        );
        assert_eq!(
            interface_of(&req("GET", "/sku/0123456789abcdef01", &[], ""), &k),
            "GET /sku/{id}"
        );
        assert_eq!(
            interface_of(&req("GET", "/v2/deadbeef", &[], ""), &k),
            "GET /v2/deadbeef"
        );
        assert_eq!(interface_of(&req("GET", "/", &[], ""), &k), "GET /");
    }

    #[test]
    fn ids_in_paths_are_the_ids_hints_name() {
        // Every id the report's hints call volatile is an `{id}` in a path too.
        for (seg, kind) in [
            ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "ULIDs"),
            ("1541815603606036480", "snowflake ids"),
            ("550e8400-e29b-41d4-a716-446655440000", "UUIDs"),
            ("5f2b9c0e1a3d4e6f7a8b", "hex tokens"),
        ] {
            assert_eq!(template_path(&format!("/o/{seg}")), "/o/{id}", "{seg}");
            assert_eq!(
                crate::compare::hints::volatile_kind(seg),
                Some(kind),
                "{seg}"
            );
        }
        // Hex-lettered words stay route words.
        assert_eq!(template_path("/acceptedfeedface"), "/acceptedfeedface");
        assert_eq!(template_path("/deadbeef"), "/deadbeef");
    }

    #[test]
    fn templates_come_first() {
        let k = Keyer {
            key: InterfaceKey::Default,
            templates: vec![
                "/users/{id}/orders".parse().unwrap(),
                "GET /files/{name}".parse().unwrap(),
            ],
        };
        assert_eq!(
            k.key_of(&req("GET", "/users/alice/orders?x", &[], "")),
            "GET /users/{id}/orders"
        );
        assert_eq!(
            k.key_of(&req("GET", "/files/report.pdf", &[], "")),
            "GET /files/{name}"
        );
        assert_eq!(
            k.key_of(&req("DELETE", "/files/report.pdf", &[], "")),
            "DELETE /files/report.pdf"
        );
        assert_eq!(
            k.key_of(&req("GET", "/users/7", &[], "")),
            "GET /users/{id}"
        );
        assert!("users/{id}".parse::<PathTemplate>().is_err());
    }

    #[test]
    fn grpc_keeps_the_method_path() {
        let r = req(
            "POST",
            "/pkg.Svc/Get",
            &[("Content-Type", "application/grpc+proto")],
            "",
        );
        assert_eq!(interface_of(&r, &InterfaceKey::Default), "/pkg.Svc/Get");
    }

    #[test]
    fn header_and_json_pointer_keys() {
        let h: InterfaceKey = "header:X-Api".parse().unwrap();
        assert_eq!(
            interface_of(&req("POST", "/rpc", &[("x-api", "user.get")], ""), &h),
            "user.get"
        );
        assert_eq!(interface_of(&req("POST", "/rpc", &[], ""), &h), "POST /rpc");
        let j: InterfaceKey = "json:/method".parse().unwrap();
        assert_eq!(
            interface_of(&req("POST", "/rpc", &[], r#"{"method":"order.list"}"#), &j),
            "order.list"
        );
        assert_eq!(
            interface_of(&req("POST", "/rpc", &[], "not json"), &j),
            "POST /rpc"
        );
        assert!("json:method".parse::<InterfaceKey>().is_err());
        assert!("bogus".parse::<InterfaceKey>().is_err());
    }
}
