//! Per-exchange comparison: given what the baseline, the candidate and (optionally) the noise
//! probe answered for one request, list every difference and give the exchange a preliminary
//! outcome. Whether a difference is a regression or noise across many exchanges is decided
//! later, in `analysis`, from counts; this module only sees one exchange at a time.
//!
//! Sub-modules, one job each: [`decode`] undoes content encodings, [`headers`] compares header
//! lists minus the volatile ones, [`body`] picks a comparison by media type, [`json`] is the
//! structural diff with field paths, [`text`] the line diff, [`timeval`] recognises times
//! that may differ by the tolerance. [`grpc`] splits gRPC bodies into messages, [`protobuf`]
//! decodes the wire format (field names from [`descriptor`] when a descriptor set is given),
//! [`form`] handles form-urlencoded and multipart bodies; [`watch`] notes which rules met
//! the fields and headers they name.

pub mod body;
pub mod decode;
pub mod descriptor;
pub mod form;
pub mod grpc;
pub mod headers;
pub mod hints;
pub mod json;
pub mod pathpat;
pub mod protobuf;
pub mod text;
pub mod timeval;
pub mod watch;

use crate::exchange::Headers;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One live answer from a target, as the comparison needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Status code.
    pub status: u16,
    /// Response headers in wire order.
    pub headers: Headers,
    /// Trailers (empty when none were sent).
    pub trailers: Headers,
    /// Body bytes as received (still content-encoded).
    pub body: Bytes,
    /// Time from the intended send time to the end of the body, in microseconds.
    pub latency_us: u64,
}

/// Why a target gave no usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchErrorKind {
    /// TCP connect refused or failed.
    Connect,
    /// No complete answer within `--timeout`.
    Timeout,
    /// Connection closed or reset before the answer was complete.
    Reset,
    /// The answer was not valid HTTP.
    Malformed,
    /// The answer exceeded the body size limit.
    TooLarge,
    /// The request itself could not be built from the recording.
    BadRequest,
    /// TLS failed: the handshake (unknown CA, name mismatch, expired certificate, no shared
    /// protocol, client certificate refused), or a TLS alert in place of an answer; the
    /// message names the reason.
    Tls,
    /// The noise probe answered, but with another status than the baseline: only its status
    /// is a noise sample (never an outcome's error).
    Status,
}

impl fmt::Display for FetchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FetchErrorKind::Connect => "connect",
            FetchErrorKind::Timeout => "timeout",
            FetchErrorKind::Reset => "reset",
            FetchErrorKind::Malformed => "malformed",
            FetchErrorKind::TooLarge => "too_large",
            FetchErrorKind::BadRequest => "bad_request",
            FetchErrorKind::Tls => "tls",
            FetchErrorKind::Status => "status",
        })
    }
}

impl From<crate::failure::Failure> for FetchErrorKind {
    fn from(f: crate::failure::Failure) -> Self {
        match f {
            crate::failure::Failure::Connect => FetchErrorKind::Connect,
            crate::failure::Failure::Reset => FetchErrorKind::Reset,
            crate::failure::Failure::Malformed => FetchErrorKind::Malformed,
            crate::failure::Failure::Tls(_) => FetchErrorKind::Tls,
        }
    }
}

/// A failed fetch: what kind of failure and the underlying message.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchError {
    /// Class of failure, used for grouping in reports.
    pub kind: FetchErrorKind,
    /// Human-readable detail from the client stack.
    pub message: String,
}

/// The result of sending one request to one target.
pub type Fetched = Result<Observed, FetchError>;

/// Knobs of the per-exchange comparison.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Two values that both read as times and differ by at most this much are noise.
    pub time_tolerance: Duration,
    /// Candidate statuses that mean "the gateway has no route for this" when the baseline
    /// answered with a status outside this set.
    pub missing_rule_statuses: Vec<u16>,
    /// At most this many differences are listed per exchange (the rest are counted in a
    /// final `…` difference so nothing is silently lost).
    pub max_diffs: usize,
    /// Header names (lower case) not compared, in addition to the built-in volatile list.
    pub ignore_headers: Vec<String>,
    /// Body field paths not compared (ignore rules): a pattern covers the path and
    /// everything under it.
    pub ignore_paths: Vec<pathpat::PathPattern>,
    /// Numbers at these paths are equal within the tolerance.
    pub tolerances: Vec<NumericTolerance>,
    /// Arrays at these paths compare as multisets: order does not matter.
    pub unordered: Vec<pathpat::PathPattern>,
    /// When set, a candidate answer is a missing rule only if its body also matches this.
    pub missing_rule_body: Option<regex::Regex>,
    /// Candidate `grpc-status` codes that mean "the gateway has no route for this" when the
    /// baseline's status was outside this set (12, UNIMPLEMENTED, by default; gRPC reports
    /// it with HTTP 200, so the HTTP status set cannot see it). Empty disables the check.
    pub missing_rule_grpc_statuses: Vec<u32>,
    /// Protobuf schemas (`--proto-descriptor`): gRPC answers of the methods they describe
    /// are decoded with field names instead of numbers.
    pub proto_descriptor: Option<Arc<descriptor::Descriptors>>,
    /// The fields and headers the rules above name, noted as compared answers hold them.
    pub watch: Option<Arc<watch::Watch>>,
}

/// Two numbers at a path are equal when they differ by at most `absolute`, or by at most
/// `relative` of the larger magnitude.
#[derive(Clone, Debug)]
pub struct NumericTolerance {
    /// Where the tolerance applies (exact match).
    pub path: pathpat::PathPattern,
    /// Absolute tolerance.
    pub absolute: f64,
    /// Relative tolerance (0.01 = 1%).
    pub relative: f64,
}

impl NumericTolerance {
    /// True when `a` and `b` are within this tolerance.
    pub fn accepts(&self, a: f64, b: f64) -> bool {
        let d = (a - b).abs();
        d <= self.absolute || d <= self.relative * a.abs().max(b.abs())
    }
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            time_tolerance: Duration::from_secs(5),
            missing_rule_statuses: vec![404, 501],
            max_diffs: 64,
            ignore_headers: Vec::new(),
            ignore_paths: Vec::new(),
            tolerances: Vec::new(),
            unordered: Vec::new(),
            missing_rule_body: None,
            missing_rule_grpc_statuses: vec![12],
            proto_descriptor: None,
            watch: None,
        }
    }
}

/// Which part of the response a difference is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// The status code.
    Status,
    /// A response header.
    Header,
    /// A trailer (gRPC status and message live here).
    Trailer,
    /// The body: a JSON field path, a text line, or the whole body for binary.
    Body,
}

/// One difference between two answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// Where it is.
    pub kind: DiffKind,
    /// Exact location: `status`, a lower-case header name, `$.a.b[3].c`, a text line
    /// `body:line 2`, `body:lines` (text lines inserted or removed), `body:encoding`, or
    /// `body` (the whole body: bytes).
    pub path: String,
    /// The value on the first side (the baseline), rendered short; `None` when absent there.
    pub baseline: Option<String>,
    /// The value on the second side (candidate or noise probe); `None` when absent there.
    pub candidate: Option<String>,
    /// True when both values read as times within the tolerance: noise by definition.
    pub tolerated: bool,
}

impl Difference {
    /// The exact location as a person reads it: `status`, `header content-type`,
    /// `trailer grpc-status`, or the field path with indices.
    pub fn key_display(&self) -> String {
        match self.kind {
            DiffKind::Status => "status".into(),
            DiffKind::Header => format!("header {}", self.path),
            DiffKind::Trailer => format!("trailer {}", self.path),
            DiffKind::Body => self.path.clone(),
        }
    }

    /// What kind of change this is (see [`Change`]): the class a noise sample must share
    /// with a candidate's difference to explain it.
    pub fn change(&self) -> Change {
        let classed = match self.kind {
            // A trailer's presence goes with the gRPC status, already keyed by transition.
            DiffKind::Status | DiffKind::Trailer => false,
            DiffKind::Header => true,
            // A multipart part's text line (`$.part.NAME:line 2`) is text, not JSON.
            DiffKind::Body => self.path.starts_with('$') && !self.path.contains(":line"),
        };
        if !classed {
            return Change::Value;
        }
        let (a, b) = match (self.baseline.as_deref(), self.candidate.as_deref()) {
            (Some(a), Some(b)) => (a, b),
            (Some(_), None) => return Change::Removed,
            (None, Some(_)) => return Change::Added,
            (None, None) => return Change::Value,
        };
        if self.kind != DiffKind::Body {
            return Change::Value;
        }
        match (json_type(a), json_type(b)) {
            // The structural walk descends into two arrays and reports their elements; it
            // reports two whole arrays only when they hold the same elements in another order.
            (b'[', b'[') => Change::Order,
            (x, y) if x != y => Change::Type,
            _ => Change::Value,
        }
    }

    /// The aggregation key: kind-prefixed, array indices folded to `[*]`.
    /// `status:200 → 404`, `header:content-type`, `trailer:grpc-status 0 → 14`,
    /// `trailer:grpc-message`, `$.items[*].price`, `body:line 2`, `body`. A status (HTTP or
    /// gRPC) is keyed by its transition: a baseline that sometimes answers 500 on a second
    /// call explains a candidate's occasional 500, never its 404.
    pub fn key(&self) -> String {
        let base = self.base_key();
        match self.change().suffix() {
            "" => base,
            suffix => format!("{base}{suffix}"),
        }
    }

    /// The key without its change class: where the difference is, not what kind it is.
    pub fn base_key(&self) -> String {
        match self.kind {
            DiffKind::Status => format!(
                "status:{} → {}",
                self.baseline.as_deref().unwrap_or("-"),
                self.candidate.as_deref().unwrap_or("-")
            ),
            DiffKind::Header => format!("header:{}", self.path),
            // Like the HTTP status, gRPC's is keyed by transition: a second call that
            // sometimes gets UNAVAILABLE explains no NOT_FOUND.
            DiffKind::Trailer if self.path == "grpc-status" => format!(
                "trailer:grpc-status {} → {}",
                self.baseline.as_deref().unwrap_or("-"),
                self.candidate.as_deref().unwrap_or("-")
            ),
            DiffKind::Trailer => format!("trailer:{}", self.path),
            DiffKind::Body => fold_path(&self.path),
        }
    }
}

/// What kind of change a difference is. A noise sample explains a candidate's difference
/// only at the same key and of the same kind: a stock count that drifts between two calls is
/// no excuse for the candidate turning it into a string or dropping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    /// Another value of the same type (and everything that has no finer class: statuses,
    /// text lines, whole bodies).
    Value,
    /// Another JSON type (`12` to `"12"`, an object to `null`).
    Type,
    /// Present on the first side only.
    Removed,
    /// Present on the second side only.
    Added,
    /// The same array elements in another order.
    Order,
}

impl Change {
    /// The machine name, as the result JSON's `change` holds it.
    pub fn name(self) -> &'static str {
        match self {
            Change::Value => "value",
            Change::Type => "type",
            Change::Removed => "removed",
            Change::Added => "added",
            Change::Order => "order",
        }
    }

    /// What an aggregation key carries after the path: nothing for a value change.
    pub fn suffix(self) -> &'static str {
        match self {
            Change::Value => "",
            Change::Type => " (type)",
            Change::Removed => " (removed)",
            Change::Added => " (added)",
            Change::Order => " (order)",
        }
    }

    /// Splits an aggregation key into the key without its class and the class.
    pub fn split_key(key: &str) -> (&str, Change) {
        for c in [Change::Type, Change::Removed, Change::Added, Change::Order] {
            if let Some(base) = key.strip_suffix(c.suffix()) {
                return (base, c);
            }
        }
        (key, Change::Value)
    }

    /// Reads a machine name back; unknown names are value changes.
    pub fn from_name(name: &str) -> Change {
        match name {
            "type" => Change::Type,
            "removed" => Change::Removed,
            "added" => Change::Added,
            "order" => Change::Order,
            _ => Change::Value,
        }
    }
}

/// The JSON type of a rendered value, by its first byte: `"`, `{`, `[`, `t` and `f` alike
/// (booleans), `n`, and `0` for numbers.
fn json_type(rendered: &str) -> u8 {
    match rendered.as_bytes().first() {
        Some(b'"') => b'"',
        Some(b'{') => b'{',
        Some(b'[') => b'[',
        Some(b't' | b'f') => b't',
        Some(b'n') => b'n',
        _ => b'0',
    }
}

/// Folds array indices out of a field path: `$.a.b[3].c` becomes `$.a.b[*].c`, so that the
/// same field in different array elements aggregates as one.
pub fn fold_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars().peekable();
    // Inside a quoted key (`['x[1]']`) brackets are key text, not indices.
    let mut quoted = false;
    while let Some(c) = chars.next() {
        out.push(c);
        if quoted {
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                }
                '\'' => quoted = false,
                _ => {}
            }
            continue;
        }
        if c == '[' && chars.peek() == Some(&'\'') {
            if let Some(q) = chars.next() {
                out.push(q);
            }
            quoted = true;
        } else if c == '[' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            out.push('*');
        }
    }
    out
}

/// Header names that carry the outcome of a gRPC call. A "trailers-only" answer (an error
/// with no messages) sends them in the headers; they are compared as trailers wherever they
/// arrive, so the same status change always has the same key (`trailer:grpc-status`).
pub const GRPC_STATUS_FIELDS: &[&str] = &["grpc-status", "grpc-message", "grpc-status-details-bin"];

fn is_grpc_status_field(name: &str) -> bool {
    GRPC_STATUS_FIELDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
}

/// The headers and trailers of an answer as compared: gRPC status fields found in the
/// headers are moved in front of the trailers. Borrows when there are none (the usual case).
fn status_as_trailers(o: &Observed) -> (Cow<'_, Headers>, Cow<'_, Headers>) {
    if !o.headers.iter().any(|(n, _)| is_grpc_status_field(n)) {
        return (Cow::Borrowed(&o.headers), Cow::Borrowed(&o.trailers));
    }
    let (moved, kept): (Headers, Headers) = o
        .headers
        .iter()
        .cloned()
        .partition(|(n, _)| is_grpc_status_field(n));
    let trailers = moved
        .into_iter()
        .chain(o.trailers.iter().cloned())
        .collect();
    (Cow::Owned(kept), Cow::Owned(trailers))
}

/// The gRPC status code of an answer: from the trailers, else from the headers (a
/// trailers-only answer); `None` when the answer carries none (not gRPC).
pub fn grpc_status(o: &Observed) -> Option<u32> {
    let find = |h: &Headers| {
        h.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("grpc-status"))
            .and_then(|(_, v)| v.trim().parse::<u32>().ok())
    };
    find(&o.trailers).or_else(|| find(&o.headers))
}

/// Lists every difference between two answers: status, headers (minus volatile ones),
/// trailers, and body (decoded, then compared by media type).
pub fn diff(a: &Observed, b: &Observed, opts: &CompareOptions) -> Vec<Difference> {
    diff_for(None, a, b, opts)
}

/// [`diff`] for answers to the request at `request_path` (path only, no query): gRPC bodies
/// are decoded with the field names `opts.proto_descriptor` gives that method.
pub fn diff_for(
    request_path: Option<&str>,
    a: &Observed,
    b: &Observed,
    opts: &CompareOptions,
) -> Vec<Difference> {
    let mut out = Vec::new();
    if a.status != b.status {
        out.push(status_difference(a, b));
    }
    let (ha, ta) = status_as_trailers(a);
    let (hb, tb) = status_as_trailers(b);
    headers::diff_headers(&ha, &hb, DiffKind::Header, opts, &mut out);
    headers::diff_headers(&ta, &tb, DiffKind::Trailer, opts, &mut out);
    body::diff_bodies_for(request_path, a, b, opts, &mut out);
    cap_list(&mut out, opts.max_diffs);
    out
}

/// What sets two answers apart as outcomes: with different statuses (HTTP, or gRPC's
/// `grpc-status`) they are different kinds of documents, a page and an error page, and the
/// status is the one difference; their fields would otherwise count as changed fields no
/// probe could explain, where the probe's own status transition explains the status.
/// Otherwise every difference ([`diff_for`]).
fn answer_differences(
    request_path: Option<&str>,
    a: &Observed,
    b: &Observed,
    opts: &CompareOptions,
) -> Vec<Difference> {
    if a.status != b.status {
        return vec![status_difference(a, b)];
    }
    if grpc_status(a) != grpc_status(b) {
        let (_, ta) = status_as_trailers(a);
        let (_, tb) = status_as_trailers(b);
        let mut out = Vec::new();
        headers::diff_headers(&ta, &tb, DiffKind::Trailer, opts, &mut out);
        return out;
    }
    diff_for(request_path, a, b, opts)
}

/// The difference between two answers' statuses.
fn status_difference(a: &Observed, b: &Observed) -> Difference {
    Difference {
        kind: DiffKind::Status,
        path: "status".into(),
        baseline: Some(a.status.to_string()),
        candidate: Some(b.status.to_string()),
        tolerated: false,
    }
}

/// Path of the difference that closes a list cut at `max_diffs` when some of what was cut
/// is at paths not listed: the exchange cannot be explained by noise.
pub const MORE_NOT_LISTED: &str = "…";

/// Path of the difference that closes a list cut at `max_diffs` when everything cut is at
/// paths already listed (indices folded): the same field in more array elements.
pub const MORE_AT_LISTED: &str = "… (at listed paths)";

/// True for the difference that closes a cut list.
pub fn is_more(d: &Difference) -> bool {
    d.path == MORE_NOT_LISTED || d.path == MORE_AT_LISTED
}

/// The closing difference of a list cut with `n` more differences (`at_least` when the walk
/// stopped counting), `elsewhere` when not all of them are at listed paths.
pub(crate) fn more(n: usize, at_least: bool, elsewhere: bool) -> Difference {
    let n = if at_least {
        format!("at least {n}")
    } else {
        n.to_string()
    };
    Difference {
        kind: DiffKind::Body,
        path: if elsewhere {
            MORE_NOT_LISTED
        } else {
            MORE_AT_LISTED
        }
        .into(),
        baseline: None,
        candidate: Some(if elsewhere {
            format!("{n} more differences not listed, not all at the paths listed")
        } else {
            format!("{n} more differences at the paths listed")
        }),
        tolerated: false,
    }
}

/// How many differences a closing difference made by [`more`] counts, and whether that is
/// a lower bound.
fn more_count(d: &Difference) -> (usize, bool) {
    let text = d.candidate.as_deref().unwrap_or_default();
    let (at_least, rest) = match text.strip_prefix("at least ") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let n = rest
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    (n, at_least)
}

/// Lists at most `max` real differences, closed by one [`more`] difference that counts the
/// rest: the body walks close their own lists, and parts diffed without a cap (headers,
/// text lines, several multipart parts) are cut here. Tolerated differences (bounded by the
/// walk) stay, so they can neither crowd out a real change nor be mistaken for one.
fn cap_list(out: &mut Vec<Difference>, max: usize) {
    let real = out.iter().filter(|d| !d.tolerated && !is_more(d)).count();
    let closers = out.iter().filter(|d| is_more(d)).count();
    if real <= max && closers <= 1 {
        return;
    }
    let mut listed = std::collections::HashSet::new();
    let (mut n, mut at_least, mut elsewhere) = (0, false, false);
    out.retain(|d| {
        if d.tolerated {
            return true;
        }
        if is_more(d) {
            let (k, lower) = more_count(d);
            n += k;
            at_least |= lower;
            elsewhere |= d.path == MORE_NOT_LISTED;
            return false;
        }
        true
    });
    let mut kept = 0;
    out.retain(|d| {
        if d.tolerated {
            return true;
        }
        if kept < max {
            kept += 1;
            listed.insert(d.key());
            return true;
        }
        n += 1;
        elsewhere |= !listed.contains(&d.key());
        false
    });
    out.push(more(n, at_least, elsewhere));
}

/// The class of one replayed exchange (DESIGN.md, "Outcomes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No difference at all.
    Identical,
    /// Every difference is explained as noise.
    NoiseOnly,
    /// Status, a header or the body differs beyond noise.
    Different,
    /// The candidate answered with the gateway's "no route" signature.
    MissingRule,
    /// The candidate gave no usable answer.
    CandidateError,
    /// The baseline gave no usable answer, so nothing could be judged.
    BaselineError,
    /// Not replayed (side-effecting method, truncated body, filtered).
    Skipped,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Identical,
        Outcome::NoiseOnly,
        Outcome::Different,
        Outcome::MissingRule,
        Outcome::CandidateError,
        Outcome::BaselineError,
        Outcome::Skipped,
    ];

    /// The snake_case name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Identical => "identical",
            Outcome::NoiseOnly => "noise_only",
            Outcome::Different => "different",
            Outcome::MissingRule => "missing_rule",
            Outcome::CandidateError => "candidate_error",
            Outcome::BaselineError => "baseline_error",
            Outcome::Skipped => "skipped",
        }
    }

    /// The preliminary outcome of two answers that both came back, from their differences:
    /// none is `identical`, only tolerated ones `noise_only`, anything else `different`
    /// (until analysis has measured the noise).
    pub fn of_diffs(diffs: &[Difference]) -> Outcome {
        if diffs.is_empty() {
            Outcome::Identical
        } else if diffs.iter().all(|d| d.tolerated) {
            Outcome::NoiseOnly
        } else {
            Outcome::Different
        }
    }

    /// Position in [`Outcome::ALL`], for count arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What comparing one exchange produced, before noise is measured across exchanges.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// Preliminary outcome. `Different` here means "has differences not tolerated per
    /// exchange"; analysis turns it into `NoiseOnly` when all of them prove to be noise.
    pub outcome: Outcome,
    /// Baseline-vs-candidate differences (empty for errors and missing rules).
    pub diffs: Vec<Difference>,
    /// Baseline-vs-noise-sample differences, when a noise sample was taken.
    pub probe: Option<Vec<Difference>>,
    /// Where the noise sample in `probe` came from; `None` reads as a second call to the
    /// baseline.
    pub noise_source: Option<NoiseSource>,
    /// The failure behind an error outcome.
    pub error: Option<FetchError>,
}

/// Where a noise sample (a second answer to the same request, compared with the baseline's)
/// came from. Reports say which source judged each path, since they differ in what they can
/// see: a second call shows what changes from one moment to the next; the recorded answer
/// also shows what drifted since capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseSource {
    /// The baseline asked a second time.
    Baseline,
    /// A second instance of the baseline (`--secondary`).
    Secondary,
    /// Production asked a second time (the tap's live shadow).
    Production,
    /// The answer the recording holds, from capture time.
    Recording,
}

impl NoiseSource {
    /// Every source, in report order.
    pub const ALL: [NoiseSource; 4] = [
        NoiseSource::Baseline,
        NoiseSource::Secondary,
        NoiseSource::Production,
        NoiseSource::Recording,
    ];

    /// The machine name used in the result JSON.
    pub fn name(self) -> &'static str {
        match self {
            NoiseSource::Baseline => "baseline",
            NoiseSource::Secondary => "secondary",
            NoiseSource::Production => "production",
            NoiseSource::Recording => "recording",
        }
    }

    /// Reads a machine name back.
    pub fn from_name(name: &str) -> Option<NoiseSource> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// How a report names it.
    pub fn describe(self) -> &'static str {
        match self {
            NoiseSource::Baseline => "the baseline asked twice",
            NoiseSource::Secondary => "the second baseline (--secondary)",
            NoiseSource::Production => "production asked twice",
            NoiseSource::Recording => "the recording (its answer from capture time)",
        }
    }
}

/// Compares one exchange's answers and gives it a preliminary outcome.
///
/// A failed baseline makes the exchange unjudgeable (`baseline_error`) whatever the
/// candidate did; a failed probe only loses the noise sample. The candidate shows the
/// gateway's "no route" signature (`missing_rule`) with an HTTP status in
/// `opts.missing_rule_statuses`, or a gRPC status in `opts.missing_rule_grpc_statuses`,
/// that the baseline's answer did not have.
pub fn judge(
    baseline: &Fetched,
    candidate: &Fetched,
    probe: Option<&Fetched>,
    opts: &CompareOptions,
) -> Judgement {
    judge_for(None, baseline, candidate, probe, opts)
}

/// [`judge`] for answers to the request at `request_path` (see [`diff_for`]).
pub fn judge_for(
    request_path: Option<&str>,
    baseline: &Fetched,
    candidate: &Fetched,
    probe: Option<&Fetched>,
    opts: &CompareOptions,
) -> Judgement {
    let base = match baseline {
        Ok(b) => b,
        Err(e) => {
            return Judgement {
                outcome: Outcome::BaselineError,
                diffs: Vec::new(),
                probe: None,
                noise_source: None,
                error: Some(e.clone()),
            }
        }
    };
    let cand = match candidate {
        Ok(c) => c,
        Err(e) => {
            return Judgement {
                outcome: Outcome::CandidateError,
                diffs: Vec::new(),
                probe: None,
                noise_source: None,
                error: Some(e.clone()),
            }
        }
    };
    // A second answer with another status (an error page, a refusal, a rate limit) says
    // nothing about how the baseline's headers and fields vary: only its status transition
    // is a noise sample. Its page's fields, all "different", would otherwise explain any
    // change the candidate made.
    let probe = match probe {
        Some(Ok(p)) => Some(answer_differences(request_path, base, p, opts)),
        _ => None,
    };
    let grpc_set = &opts.missing_rule_grpc_statuses;
    let missing_grpc = grpc_status(cand).is_some_and(|c| grpc_set.contains(&c))
        && !grpc_status(base).is_some_and(|b| grpc_set.contains(&b));
    let missing_http = opts.missing_rule_statuses.contains(&cand.status)
        && !opts.missing_rule_statuses.contains(&base.status);
    // The body pattern tells a gateway's "no route" page from a backend's own 404; gRPC's
    // UNIMPLEMENTED has no body to match.
    let missing = missing_grpc
        || missing_http
            && opts.missing_rule_body.as_ref().is_none_or(|re| {
                let body =
                    decode::decode_body(&cand.headers, &cand.body, decode::DEFAULT_DECODE_LIMIT)
                        .unwrap_or_else(|_| cand.body.clone());
                re.is_match(&String::from_utf8_lossy(&body))
            });
    let diffs = answer_differences(request_path, base, cand, opts);
    let outcome = if missing {
        Outcome::MissingRule
    } else {
        Outcome::of_diffs(&diffs)
    };
    Judgement {
        outcome,
        diffs,
        probe,
        noise_source: None,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerated_times_never_crowd_out_a_real_change() {
        let doc = |at: &str, total: u32| -> Fetched {
            let events: Vec<String> = (0..70).map(|_| format!(r#"{{"at":"{at}"}}"#)).collect();
            Ok(Observed {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::from(format!(
                    r#"{{"events":[{}],"total":{total}}}"#,
                    events.join(",")
                )),
                ..Default::default()
            })
        };
        let o = CompareOptions::default();
        let j = judge(
            &doc("2026-11-02T09:00:00Z", 5),
            &doc("2026-11-02T09:00:01Z", 6),
            None,
            &o,
        );
        assert_eq!(j.outcome, Outcome::Different);
        assert!(
            j.diffs.iter().any(|d| d.path == "$.total"),
            "{:?}",
            j.diffs.last()
        );
        assert!(j.diffs.iter().all(|d| d.path != "…"));
        // Only tolerated differences, however many: noise, not a truncated difference.
        let j = judge(
            &doc("2026-11-02T09:00:00Z", 5),
            &doc("2026-11-02T09:00:01Z", 5),
            None,
            &o,
        );
        assert_eq!(j.outcome, Outcome::NoiseOnly);
    }

    #[test]
    fn fold_path_folds_indices_only() {
        assert_eq!(fold_path("$.a.b[3].c"), "$.a.b[*].c");
        assert_eq!(fold_path("$[0][12]"), "$[*][*]");
        assert_eq!(fold_path("$['x[1]']"), "$['x[1]']");
        assert_eq!(fold_path("$.plain"), "$.plain");
        assert_eq!(fold_path("$['it\\'s [2]'][3]"), "$['it\\'s [2]'][*]");
        assert_eq!(fold_path("$['a\\\\'][4]['[5]']"), "$['a\\\\'][*]['[5]']");
    }

    fn ok(status: u16, body: &str) -> Fetched {
        Ok(Observed {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::copy_from_slice(body.as_bytes()),
            ..Default::default()
        })
    }

    #[test]
    fn missing_rule_needs_baseline_outside_the_set() {
        let o = CompareOptions::default();
        assert_eq!(
            judge(&ok(200, "{}"), &ok(404, "{}"), None, &o).outcome,
            Outcome::MissingRule
        );
        assert_eq!(
            judge(&ok(404, "{}"), &ok(404, "{}"), None, &o).outcome,
            Outcome::Identical
        );
        assert_eq!(
            judge(&ok(500, "{}"), &ok(501, "{}"), None, &o).outcome,
            Outcome::MissingRule
        );
    }

    #[test]
    fn end_to_end_noise_only_and_different() {
        let answer = |date: &str, body: &str| -> Fetched {
            Ok(Observed {
                status: 200,
                headers: vec![
                    ("Date".into(), date.into()),
                    ("Content-Type".into(), "application/json".into()),
                    ("Content-Length".into(), body.len().to_string()),
                ],
                body: Bytes::copy_from_slice(body.as_bytes()),
                ..Default::default()
            })
        };
        let o = CompareOptions::default();
        let base = answer(
            "Tue, 14 Nov 2023 22:13:20 GMT",
            r#"{"id": 7, "at": "2023-11-14T22:13:20Z", "ts": 1700000000}"#,
        );
        let noise = answer(
            "Tue, 14 Nov 2023 22:13:21 GMT",
            r#"{"id":7,"at":"2023-11-14T22:13:21.5Z","ts":1700000001.0}"#,
        );
        let j = judge(&base, &noise, None, &o);
        assert_eq!(j.outcome, Outcome::NoiseOnly, "{:?}", j.diffs);
        let changed = answer(
            "Tue, 14 Nov 2023 22:13:20 GMT",
            r#"{"id": 8, "at": "2023-11-14T22:13:20Z", "ts": 1700000000}"#,
        );
        let j = judge(&base, &changed, Some(&noise), &o);
        assert_eq!(j.outcome, Outcome::Different);
        assert_eq!(j.diffs.len(), 1);
        assert_eq!(j.diffs[0].key(), "$.id");
        assert!(j.probe.is_some_and(|p| p.iter().all(|d| d.tolerated)));
    }

    #[test]
    fn diff_lists_at_most_max_diffs_plus_summary() {
        let a: Vec<u32> = (0..1000).collect();
        let b: Vec<u32> = (1..1001).collect();
        let mk = |v: &Vec<u32>| mk_json(&serde_json::json!(v));
        let o = CompareOptions::default();
        let d = diff(&mk(&a), &mk(&b), &o);
        assert_eq!(d.len(), o.max_diffs + 1);
        // Every element differs, so everything cut is at the one path listed, `$[*]`.
        assert_eq!(d[o.max_diffs].path, MORE_AT_LISTED);
        assert_eq!(
            d[o.max_diffs].candidate.as_deref(),
            Some("936 more differences at the paths listed")
        );

        // Past the cap, a field not listed closes the list as not explained.
        let objs = |v: &Vec<u32>| -> Vec<serde_json::Value> {
            v.iter().map(|n| serde_json::json!({"id": n})).collect()
        };
        let mut b2 = objs(&b);
        b2[900]["new"] = serde_json::json!(1);
        let d = diff(
            &mk_json(&serde_json::json!(objs(&a))),
            &mk_json(&serde_json::json!(b2)),
            &o,
        );
        assert_eq!(d.len(), o.max_diffs + 1);
        assert_eq!(d[o.max_diffs].path, MORE_NOT_LISTED);
        assert_eq!(
            d[o.max_diffs].candidate.as_deref(),
            Some("at least 838 more differences not listed, not all at the paths listed")
        );
    }

    fn mk_json(v: &serde_json::Value) -> Observed {
        Observed {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(serde_json::to_vec(v).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn lists_cut_outside_the_walk_are_closed_once_and_counted() {
        let o = CompareOptions {
            max_diffs: 3,
            ..Default::default()
        };
        // Five header differences fill the list before the body's walk starts; the body's
        // own two differences are at paths not listed.
        let hdrs = |v: &str| -> Headers {
            let mut h: Headers = (0..5).map(|i| (format!("x-h{i}"), v.to_string())).collect();
            h.push(("content-type".into(), "application/json".into()));
            h
        };
        let a = Observed {
            status: 200,
            headers: hdrs("a"),
            body: Bytes::from_static(br#"{"p":1,"q":1}"#),
            ..Default::default()
        };
        let b = Observed {
            status: 200,
            headers: hdrs("b"),
            body: Bytes::from_static(br#"{"p":2,"q":2}"#),
            ..Default::default()
        };
        let d = diff(&a, &b, &o);
        assert_eq!(d.iter().filter(|d| is_more(d)).count(), 1, "{d:#?}");
        assert_eq!(d.len(), 4);
        assert_eq!(d[3].path, MORE_NOT_LISTED);
        assert_eq!(
            d[3].candidate.as_deref(),
            Some("at least 3 more differences not listed, not all at the paths listed")
        );
    }

    fn grpc(headers: &[(&str, &str)], trailers: &[(&str, &str)], body: &[u8]) -> Fetched {
        let list = |p: &[(&str, &str)]| -> Headers {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut h = list(&[("content-type", "application/grpc")]);
        h.extend(list(headers));
        Ok(Observed {
            status: 200,
            headers: h,
            trailers: list(trailers),
            body: Bytes::copy_from_slice(body),
            ..Default::default()
        })
    }

    #[test]
    fn only_json_paths_and_headers_have_kinds_of_change() {
        let d = |kind, path: &str, a: Option<&str>, b: Option<&str>| Difference {
            kind,
            path: path.into(),
            baseline: a.map(str::to_string),
            candidate: b.map(str::to_string),
            tolerated: false,
        };
        // A multipart text line reads `true` as text, not as a boolean.
        let line = d(
            DiffKind::Body,
            "$.part.note:line 2",
            Some("true"),
            Some("x"),
        );
        assert_eq!(
            (line.change(), line.key()),
            (Change::Value, "$.part.note:line 2".into())
        );
        let gone = d(DiffKind::Header, "cache-control", Some("max-age=60"), None);
        assert_eq!(gone.key(), "header:cache-control (removed)");
        let text = d(DiffKind::Body, "body:line 3", None, Some("x"));
        assert_eq!(text.change(), Change::Value);
    }

    #[test]
    fn grpc_unimplemented_is_a_missing_rule() {
        let o = CompareOptions::default();
        let ok = grpc(&[], &[("grpc-status", "0")], &grpc::frame(&[0x08, 1]));
        // Trailers-only: the status arrives in the headers.
        let unimpl = grpc(&[("grpc-status", "12"), ("grpc-message", "no")], &[], b"");
        let j = judge(&ok, &unimpl, None, &o);
        assert_eq!(j.outcome, Outcome::MissingRule);
        // Unimplemented on both sides is the same answer, not a missing rule.
        assert_eq!(
            judge(&unimpl, &unimpl, None, &o).outcome,
            Outcome::Identical
        );
        // Disabled: a status difference, keyed as a trailer by its transition however it
        // arrived; the message fields of an error answer are no field differences.
        let off = CompareOptions {
            missing_rule_grpc_statuses: Vec::new(),
            ..Default::default()
        };
        let j = judge(&ok, &unimpl, None, &off);
        assert_eq!(j.outcome, Outcome::Different);
        let keys: Vec<String> = j.diffs.iter().map(Difference::key).collect();
        assert_eq!(
            keys,
            ["trailer:grpc-status 0 → 12", "trailer:grpc-message"],
            "{:?}",
            j.diffs
        );
        // A second baseline call that got UNAVAILABLE is a noise sample for that transition
        // only: none for the message's fields.
        let unavailable = grpc(&[], &[("grpc-status", "14")], b"");
        let changed = grpc(&[], &[("grpc-status", "0")], &grpc::frame(&[0x08, 2]));
        let j = judge(&ok, &changed, Some(&unavailable), &o);
        let probe: Vec<String> = j.probe.unwrap().iter().map(Difference::key).collect();
        assert_eq!(probe, ["trailer:grpc-status 0 → 14"]);
        let keys: Vec<String> = j.diffs.iter().map(Difference::key).collect();
        assert_eq!(keys, ["$.msg[*].1"], "{:?}", j.diffs);
        let in_trailers = grpc(&[], &[("grpc-status", "12"), ("grpc-message", "no")], b"");
        assert!(diff(unimpl.as_ref().unwrap(), in_trailers.as_ref().unwrap(), &o).is_empty());
        assert_eq!(grpc_status(in_trailers.as_ref().unwrap()), Some(12));
        assert_eq!(grpc_status(ok.as_ref().unwrap()), Some(0));
    }

    #[test]
    fn baseline_error_wins_over_candidate_error() {
        let e: Fetched = Err(FetchError {
            kind: FetchErrorKind::Connect,
            message: "refused".into(),
        });
        let o = CompareOptions::default();
        assert_eq!(judge(&e, &e, None, &o).outcome, Outcome::BaselineError);
        assert_eq!(
            judge(&ok(200, "{}"), &e, None, &o).outcome,
            Outcome::CandidateError
        );
    }
}
