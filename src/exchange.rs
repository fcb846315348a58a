//! The one data model every stage shares: an [`Exchange`] is one captured request with the
//! response production gave and its timing. The tap and the importers produce exchanges, the
//! recording module stores them, replay sends their requests, compare judges the answers.

use bytes::Bytes;
use std::borrow::Cow;
use std::fmt;

/// Header fields in wire order, repeats kept: a list of pairs, never a map, because order and
/// duplicates (`Set-Cookie`, `Via`) are part of what a gateway may change.
pub type Headers = Vec<(String, String)>;

/// One captured request/response pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    /// Unique id within a recording; used by `--id`, `show`, sharding and samples.
    pub id: String,
    /// When the request reached the tap, in microseconds since the Unix epoch (UTC).
    pub ts_us: i64,
    /// The interface key, when the producer computed one (replay recomputes it if absent).
    pub interface: Option<String>,
    /// The tenant, when the producer knew one.
    pub tenant: Option<String>,
    /// The request as the client sent it.
    pub request: Request,
    /// The answer production gave, if it was captured.
    pub response: Option<Response>,
    /// Production latency as the producer measured it, if known: the tap measures request
    /// start to response end; imports keep what the source records (GoReplay's latency field,
    /// HAR `timings.wait`, and for pcap the first response packet minus the last request
    /// packet). Replay never compares against it; reports show it for context.
    pub latency_us: Option<u64>,
}

impl Exchange {
    /// Roughly what the exchange holds in memory: bodies, header text and the target, plus
    /// a fixed share for the structure, so that bounds in bytes hold for header-heavy
    /// traffic too.
    pub fn approx_size(&self) -> usize {
        let headers =
            |h: &[(String, String)]| h.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let req = &self.request;
        let mut n = 256 + req.body.len() + headers(&req.headers) + req.uri.len();
        if let Some(r) = &self.response {
            n += r.body.len() + headers(&r.headers) + r.trailers.as_deref().map_or(0, headers);
        }
        n
    }
}

/// A captured HTTP request.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Request {
    /// Method as sent, e.g. `GET`.
    pub method: String,
    /// Origin-form target (`/a/b?x=1`), with the authority in a `host` header, as the tap
    /// and the importers write it. Absolute form (`http://h/a`) is still read, since
    /// recordings made by earlier importers hold it.
    pub uri: String,
    /// Protocol version as captured: `HTTP/1.1`, `HTTP/2`, ...
    pub version: String,
    /// Request headers in order.
    pub headers: Headers,
    /// Request body (possibly cut at the capture limit).
    pub body: Bytes,
    /// True when the capture kept only a prefix of the body.
    pub body_truncated: bool,
    /// The TLS session the request came over, when the producer terminated it (the tap's
    /// `--tls-cert` listener); `None` for plain HTTP. Recorded as `scheme` and `alpn`.
    pub tls: Option<Tls>,
}

/// What a client's TLS session was, as the recording notes it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tls {
    /// The protocol agreed on by ALPN (`h2`, `http/1.1`), when the client offered any.
    pub alpn: Option<String>,
}

/// A captured or live HTTP response.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Response headers in order.
    pub headers: Headers,
    /// HTTP trailers (gRPC status lives here), when any were sent.
    pub trailers: Option<Headers>,
    /// Response body as sent on the wire (still content-encoded).
    pub body: Bytes,
    /// True when the capture kept only a prefix of the body.
    pub body_truncated: bool,
}

impl Request {
    /// The path of the request, as its interface key and the rules see it: the
    /// [`origin_form`] target a replay sends, up to its query or fragment.
    pub fn path(&self) -> Cow<'_, str> {
        match origin_form(&self.uri) {
            Cow::Borrowed(t) => Cow::Borrowed(cut_query(t)),
            Cow::Owned(mut t) => {
                t.truncate(cut_query(&t).len());
                Cow::Owned(t)
            }
        }
    }

    /// True for methods that may change server state; replay skips them unless allowed.
    pub fn is_side_effecting(&self) -> bool {
        !is_safe_method(&self.method)
    }
}

/// The request target a replay sends for a recorded URI, in origin form: the path and query
/// of an absolute-form URI (`/` where it has no path), a `/` put before a target recorded
/// without one, `*` kept. Anything else stays byte for byte as recorded, a fragment
/// included: production received it so, and a replay sends what production received.
pub fn origin_form(uri: &str) -> Cow<'_, str> {
    if uri.starts_with('/') || uri == "*" {
        return Cow::Borrowed(uri);
    }
    if let Some(i) = uri.find("://") {
        let after = &uri[i + 3..];
        // The authority ends at the first `/`, `?` or `#`; a `/` inside the query is not
        // the path's.
        return match after.find(['/', '?', '#']) {
            Some(j) if after.as_bytes()[j] == b'/' => Cow::Borrowed(&after[j..]),
            Some(j) => Cow::Owned(format!("/{}", &after[j..])),
            None => Cow::Borrowed("/"),
        };
    }
    Cow::Owned(format!("/{uri}"))
}

fn cut_query(target: &str) -> &str {
    &target[..target.find(['?', '#']).unwrap_or(target.len())]
}

/// True for the methods HTTP defines as safe (`GET`, `HEAD`, `OPTIONS`, `TRACE`, in any
/// case): sending one twice changes nothing.
pub fn is_safe_method(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS", "TRACE"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Which party an error or a response belongs to, so every message can say who failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The recording tap in front of production.
    Tap,
    /// The old version of the gateway.
    Baseline,
    /// The new version of the gateway.
    Candidate,
    /// The second baseline used to measure noise.
    Secondary,
    /// Files and flags given by the user.
    Input,
    /// shadowdiff itself: a thread or runtime that would not start, a worker that panicked.
    /// Neither the user's input nor a target is at fault.
    Internal,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Tap => "tap",
            Side::Baseline => "baseline",
            Side::Candidate => "candidate",
            Side::Secondary => "secondary",
            Side::Input => "input",
            Side::Internal => "internal",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_strips_query_and_authority() {
        let mut r = Request {
            uri: "/a/b?x=1".into(),
            ..Default::default()
        };
        assert_eq!(r.path(), "/a/b");
        r.uri = "http://h:8080/c/d#frag".into();
        assert_eq!(r.path(), "/c/d");
        r.uri = "http://h:8080".into();
        assert_eq!(r.path(), "/");
        // What a replay sends and what the interface key sees come from one reading.
        r.uri = "a/b?c".into();
        assert_eq!(r.path(), "/a/b");
        r.uri = "http://h:1?x=/y".into();
        assert_eq!(r.path(), "/");
    }

    #[test]
    fn origin_form_of_each_recorded_form() {
        assert_eq!(origin_form("/a?b=1"), "/a?b=1");
        assert_eq!(origin_form("/a#frag"), "/a#frag");
        assert_eq!(origin_form("http://h:1/a/b?c"), "/a/b?c");
        assert_eq!(origin_form("http://h:1"), "/");
        assert_eq!(origin_form("http://h:1?x=1"), "/?x=1");
        assert_eq!(origin_form("http://h:1?x=/y"), "/?x=/y");
        assert_eq!(origin_form("a/b"), "/a/b");
        assert_eq!(origin_form("*"), "*");
    }

    #[test]
    fn side_effecting_methods() {
        for (m, se) in [
            ("GET", false),
            ("head", false),
            ("POST", true),
            ("DELETE", true),
        ] {
            let r = Request {
                method: m.into(),
                ..Default::default()
            };
            assert_eq!(r.is_side_effecting(), se, "{m}");
        }
    }
}
