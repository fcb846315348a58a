//! The result of a run as data: what `--json` writes, what `report` and `merge` read back,
//! and what every report format renders. Field names are a contract (DESIGN.md, "Result
//! JSON"): extend, never rename. `schema/result.schema.json` describes this shape.

use crate::compare::{FetchErrorKind, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Current value of the `shadowdiff_result` format marker.
pub const RESULT_FORMAT: u32 = 1;

/// The verdict of the gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No gate tripped.
    Pass,
    /// At least one gate tripped; `gate_failures` says which.
    Fail,
}

/// A whole run's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Format marker, always [`RESULT_FORMAT`].
    pub shadowdiff_result: u32,
    /// Pass or fail.
    pub verdict: Verdict,
    /// One plain sentence per tripped gate.
    pub gate_failures: Vec<String>,
    /// Counts over all interfaces.
    pub summary: Summary,
    /// One entry per interface, sorted by interface key.
    pub interfaces: Vec<InterfaceResult>,
    /// How the run was made: inputs, targets, thresholds, timing.
    pub run: RunInfo,
    /// What changed since an earlier result (`--previous`); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
    /// Headers that changed the same way on many interfaces (the gateway product's own
    /// `server`, say): one finding each, told once at the top of every report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_wide: Vec<GatewayWide>,
}

/// A header that regressed with the same pair of values on at least three interfaces and on
/// at least half of those compared: one change of the gateway, not of each interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayWide {
    /// The header as the result lists it, with its kind of change (`server`,
    /// `cache-control (removed)`).
    pub header: String,
    /// Its value on the baseline (`(absent)` when it had none).
    pub baseline: String,
    /// Its value on the candidate (`(absent)` when it had none).
    pub candidate: String,
    /// The interfaces where it regressed with these values.
    pub interfaces: Vec<String>,
    /// Interfaces compared at all.
    pub of: usize,
}

/// Counts per outcome; `total` always equals the sum of the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Exchanges that got an outcome.
    pub total: u64,
    /// See [`Outcome::Identical`].
    pub identical: u64,
    /// See [`Outcome::NoiseOnly`].
    pub noise_only: u64,
    /// See [`Outcome::Different`].
    pub different: u64,
    /// See [`Outcome::MissingRule`].
    pub missing_rule: u64,
    /// See [`Outcome::CandidateError`].
    pub candidate_error: u64,
    /// See [`Outcome::BaselineError`].
    pub baseline_error: u64,
    /// See [`Outcome::Skipped`].
    pub skipped: u64,
}

impl Counts {
    /// Adds `n` exchanges with outcome `o` (and to `total`).
    pub fn add(&mut self, o: Outcome, n: u64) {
        *self.get_mut(o) += n;
        self.total += n;
    }

    /// The count for one outcome.
    pub fn get(&self, o: Outcome) -> u64 {
        match o {
            Outcome::Identical => self.identical,
            Outcome::NoiseOnly => self.noise_only,
            Outcome::Different => self.different,
            Outcome::MissingRule => self.missing_rule,
            Outcome::CandidateError => self.candidate_error,
            Outcome::BaselineError => self.baseline_error,
            Outcome::Skipped => self.skipped,
        }
    }

    fn get_mut(&mut self, o: Outcome) -> &mut u64 {
        match o {
            Outcome::Identical => &mut self.identical,
            Outcome::NoiseOnly => &mut self.noise_only,
            Outcome::Different => &mut self.different,
            Outcome::MissingRule => &mut self.missing_rule,
            Outcome::CandidateError => &mut self.candidate_error,
            Outcome::BaselineError => &mut self.baseline_error,
            Outcome::Skipped => &mut self.skipped,
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &Counts) {
        for o in Outcome::ALL {
            self.add(o, other.get(o));
        }
    }

    /// True when `total` equals the sum of the outcome counts.
    pub fn is_consistent(&self) -> bool {
        Outcome::ALL.iter().map(|o| self.get(*o)).sum::<u64>() == self.total
    }
}

/// Counts over the whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Outcome counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Number of interfaces seen.
    pub interfaces: u64,
    /// Number of interfaces flagged with a latency regression.
    pub latency_regressions: u64,
    /// Why skipped exchanges were skipped (`side_effect`, `truncated_body`, ...), with counts.
    pub skipped_reasons: BTreeMap<String, u64>,
    /// Requests sent a second time per side (`baseline`, `candidate`, `secondary`), summed
    /// over the interfaces; absent when none was. See [`InterfaceResult::resent`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resent: BTreeMap<String, u64>,
}

/// Everything known about one interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceResult {
    /// The interface key, e.g. `GET /api/users/{id}`.
    pub interface: String,
    /// Outcome counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Exchanges where both baseline and candidate answered and were compared.
    pub compared: u64,
    /// Exchanges with a noise sample of any source (a second answer with the baseline's
    /// status; an answer with another status is a noise sample for its status transition
    /// only): the denominator of every path's noise rate.
    pub probed: u64,
    /// The noise samples counted in `probed`, by source (`baseline`, `secondary`,
    /// `production`, `recording`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub noise_samples: BTreeMap<String, u64>,
    /// Compared exchanges that had no noise sample of any kind: their differences were
    /// judged as if nothing varied on its own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unmeasured: u64,
    /// Exchanges that may change state (neither a safe method nor declared safe): skipped
    /// without `--allow-side-effects`, and never asked twice with it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub side_effecting: u64,
    /// Status-code differences (path `status`).
    pub status: Vec<PathResult>,
    /// Body field paths that differed (folded: `$.items[*].price`).
    pub fields: Vec<PathResult>,
    /// Header and trailer names that differed (`content-type`, `trailer:grpc-status`).
    pub headers: Vec<PathResult>,
    /// Errors by side and kind. An exchange both sides failed counts once, as
    /// `baseline_error`, and is listed under both sides here.
    pub errors: Vec<ErrorResult>,
    /// Up to 5 exchange ids whose outcome was `missing_rule`.
    pub missing_rule_samples: Vec<String>,
    /// What the candidate answered in the first exchange counted `missing_rule`, so that a
    /// report shows the no-route answer itself. Absent without one, and in results of
    /// earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_rule_answer: Option<MissingRuleAnswer>,
    /// The requests of the exchanges the path examples come from, by exchange id, so that a
    /// report can give the command that sends one again. Absent in results of earlier
    /// versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sample_requests: BTreeMap<String, SampleRequest>,
    /// Latency of both targets and the paired difference.
    pub latency: LatencyResult,
    /// Distinct sets of differing keys with their exchange counts; lets `merge` recompute
    /// `noise_only` vs `different` exactly once noise is known over all shards.
    pub signatures: Vec<Signature>,
    /// Exchanges whose signature did not fit the per-interface cap; counted as `different`.
    pub signature_overflow: u64,
    /// Exchanges per tenant (from the tenant header), when tenants are known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, u64>,
    /// Requests sent a second time per side (`baseline`, `candidate`, `secondary`): the
    /// server closed a kept-alive connection before any byte of an answer came back, and
    /// the request went again on a new one. Not an outcome (the exchange is judged on the
    /// answer to the second request); absent when none was.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resent: BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why an interface needs attention, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Problem {
    /// The candidate gave its no-route answer where the baseline served.
    MissingRule,
    /// Exchanges differ beyond noise, or a path regresses.
    Different,
    /// The latency rule flagged the candidate as slower.
    Slower,
    /// A target gave no usable answer for some exchanges.
    Errors,
}

impl Problem {
    /// The machine name: `missing_rule`, `different`, `latency`, `errors`.
    pub fn name(self) -> &'static str {
        match self {
            Problem::MissingRule => "missing_rule",
            Problem::Different => "different",
            Problem::Slower => "latency",
            Problem::Errors => "errors",
        }
    }

    /// The label reports show: `MISSING RULE`, `DIFFERENT`, `SLOWER`, `ERRORS`.
    pub fn label(self) -> &'static str {
        match self {
            Problem::MissingRule => "MISSING RULE",
            Problem::Different => "DIFFERENT",
            Problem::Slower => "SLOWER",
            Problem::Errors => "ERRORS",
        }
    }
}

impl InterfaceResult {
    /// What needs attention in this interface; empty when it answered like the baseline.
    /// Independent of `--fail-on`: a report shows every problem, the gates decide which fail.
    pub fn problems(&self) -> Vec<Problem> {
        let mut f = Vec::new();
        if self.counts.missing_rule > 0 {
            f.push(Problem::MissingRule);
        }
        let regressed = [&self.status, &self.headers, &self.fields]
            .iter()
            .any(|paths| paths.iter().any(|p| p.regression));
        if self.counts.different > 0 || regressed {
            f.push(Problem::Different);
        }
        if self.latency.regression {
            f.push(Problem::Slower);
        }
        if self.counts.candidate_error + self.counts.baseline_error > 0 {
            f.push(Problem::Errors);
        }
        f
    }
}

/// Aggregated differences at one path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathResult {
    /// Folded path or key.
    pub path: String,
    /// Exchanges where baseline and candidate differed here (not tolerated per exchange).
    pub raw: u64,
    /// Exchanges where baseline and the noise probe differed here.
    pub noise: u64,
    /// Differences here that were times within the tolerance (noise by definition).
    pub tolerated: u64,
    /// True when `raw` exceeds `noise` by the noise rule: a real difference.
    pub regression: bool,
    /// Up to 5 exchange ids with a raw difference here.
    pub samples: Vec<String>,
    /// The first raw difference seen here, as an example.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub example: Option<Example>,
    /// Raw differences here whose two values both looked volatile in the same way.
    #[serde(default)]
    pub volatile_like: u64,
    /// What they looked like (`UUIDs`, `times`, ...), when they did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub volatile_kind: Option<String>,
    /// A suggestion when every raw difference looked volatile: what it looks like and the
    /// ignore rule to add. It never changes the outcome by itself.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hint: Option<String>,
    /// What kind of change this entry counts (`type`, `removed`, `added`, `order`); absent
    /// for another value of the same type. One path can have an entry per kind, and noise
    /// of one kind never explains a change of another.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub change: Option<String>,
    /// Which noise sources judged this path (`baseline`, `secondary`, `production`,
    /// `recording`, joined by `+`), or `none` when its interface had no noise sample.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub noise_source: Option<String>,
}

impl PathResult {
    /// The aggregation key's path part with its change class, as signatures hold it.
    pub fn classed_path(&self) -> String {
        let change = crate::compare::Change::from_name(self.change.as_deref().unwrap_or(""));
        format!("{}{}", self.path, change.suffix())
    }
}

/// One example pair of values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Exchange id the values come from.
    pub id: String,
    /// Exact (unfolded) path.
    pub path: String,
    /// Baseline's value, if present.
    pub baseline: Option<String>,
    /// Candidate's value, if present.
    pub candidate: Option<String>,
}

/// The candidate's no-route answer in one exchange.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MissingRuleAnswer {
    /// The exchange it was given in.
    pub id: String,
    /// Its HTTP status.
    pub status: u16,
    /// Its gRPC status, for a gRPC answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// The start of its body as text (content encodings undone), at most
    /// [`MissingRuleAnswer::EXCERPT`] characters and `…` when cut; for a gRPC answer
    /// without a body, its `grpc-message`.
    #[serde(default)]
    pub body: String,
    /// What each gateway forwarded in that exchange, when shadowdiff played their
    /// upstreams: the baseline's calls where the candidate made none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<ForwardedSample>,
}

impl MissingRuleAnswer {
    /// Characters of the body kept.
    pub const EXCERPT: usize = 200;

    /// The answer `o` of exchange `id`.
    pub fn of(id: &str, o: &crate::compare::Observed) -> Self {
        use crate::compare::decode::decode_body;
        // Enough for the excerpt however the text is encoded; past it a body is not decoded.
        let decoded =
            decode_body(&o.headers, &o.body, 64 * 1024).unwrap_or_else(|_| o.body.clone());
        let text = String::from_utf8_lossy(&decoded);
        let mut body: String = text.chars().take(Self::EXCERPT).collect();
        if text.chars().nth(Self::EXCERPT).is_some() {
            body.push('…');
        }
        let grpc_status = crate::compare::grpc_status(o);
        if body.is_empty() && grpc_status.is_some() {
            let message = |h: &[(String, String)]| {
                crate::exchange::header(h, "grpc-message").map(str::to_string)
            };
            body = message(&o.trailers)
                .or_else(|| message(&o.headers))
                .unwrap_or_default();
        }
        MissingRuleAnswer {
            id: id.to_string(),
            status: o.status,
            grpc_status,
            body,
            forwarded: None,
        }
    }
}

/// A recorded request as a report keeps it, for the command that sends it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRequest {
    /// The method.
    pub method: String,
    /// The recorded target (path and query).
    pub uri: String,
    /// The recorded header fields, in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, when it is text short enough to be written into a command
    /// ([`crate::replay::resend::INLINE_BODY_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body's length in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub body_bytes: u64,
    /// The body is not text (not UTF-8, or holds a NUL byte).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_binary: bool,
    /// The recording kept only the start of the body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    /// What each gateway forwarded for this exchange, when shadowdiff played their
    /// upstreams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<ForwardedSample>,
}

/// What each gateway forwarded to its upstream for one exchange, each call as a
/// [`SampleRequest`] (`uri` is the target the upstream received).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ForwardedSample {
    /// The baseline gateway's calls, in the order they came.
    pub baseline: Vec<SampleRequest>,
    /// The candidate gateway's calls, in the order they came.
    pub candidate: Vec<SampleRequest>,
}

impl ForwardedSample {
    /// Both sides' calls as a report keeps them.
    pub fn of(calls: &crate::replay::upstream::Calls) -> Self {
        let keep = |v: &[crate::compare::upstream::Forwarded]| -> Vec<SampleRequest> {
            v.iter()
                .map(|f| SampleRequest::of(&f.compared_request()))
                .collect()
        };
        ForwardedSample {
            baseline: keep(&calls.baseline),
            candidate: keep(&calls.candidate),
        }
    }
}

impl SampleRequest {
    /// The request as recorded, its body kept or not (see [`SampleRequest::body`]), and
    /// the body as a re-send command sends it.
    pub fn request(&self) -> (crate::exchange::Request, crate::replay::resend::Body<'_>) {
        use crate::replay::resend::Body;
        let body = match &self.body {
            Some(text) => Body::Inline(text.as_bytes()),
            None => Body::File {
                len: self.body_bytes,
                binary: self.body_binary,
            },
        };
        let r = crate::exchange::Request {
            method: self.method.clone(),
            uri: self.uri.clone(),
            version: "HTTP/1.1".into(),
            headers: self.headers.clone(),
            body: self.body.clone().unwrap_or_default().into(),
            body_truncated: self.body_truncated,
            tls: None,
        };
        (r, body)
    }

    /// What a report keeps of `r`: its body only where a command would carry it.
    pub fn of(r: &crate::exchange::Request) -> Self {
        use crate::replay::resend::Body;
        let (body, body_binary) = match Body::of(&r.body) {
            Body::Inline(b) => (Some(String::from_utf8_lossy(b).into_owned()), false),
            Body::File { binary, .. } => (None, binary),
        };
        SampleRequest {
            method: r.method.clone(),
            uri: r.uri.clone(),
            headers: r.headers.clone(),
            body,
            body_bytes: r.body.len() as u64,
            body_binary,
            body_truncated: r.body_truncated,
            forwarded: None,
        }
    }
}

/// Whose failure an [`ErrorResult`] counts. Written in the result as the lower-case name;
/// the order (baseline, candidate, request, secondary) is the order reports list them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorSide {
    /// The baseline gave no usable answer.
    Baseline,
    /// The candidate gave no usable answer.
    Candidate,
    /// The recorded request itself could not be sent (skipped as [`UNSENDABLE`]); it never
    /// reached a target.
    Request,
    /// The noise probe (a second baseline, or the baseline asked again) failed: a noise
    /// sample lost, never an outcome.
    Secondary,
}

impl ErrorSide {
    /// The name the result and the reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSide::Baseline => "baseline",
            ErrorSide::Candidate => "candidate",
            ErrorSide::Request => "request",
            ErrorSide::Secondary => "secondary",
        }
    }
}

impl std::fmt::Display for ErrorSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of one side and kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorResult {
    /// Whose failure.
    pub side: ErrorSide,
    /// Class of failure.
    pub kind: FetchErrorKind,
    /// How many exchanges.
    pub count: u64,
    /// The first message seen.
    pub message: String,
    /// Up to 5 exchange ids.
    pub samples: Vec<String>,
}

/// The skip reason of an exchange whose recorded request no HTTP connection can carry (a
/// target or header value the protocol forbids): nothing was sent, so nothing is judged.
pub const UNSENDABLE: &str = "unsendable";

/// Latency of one interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyResult {
    /// Baseline latencies.
    pub baseline: LatencyStats,
    /// Candidate latencies.
    pub candidate: LatencyStats,
    /// Per-request candidate minus baseline.
    pub paired: PairedStats,
    /// True when the candidate is slower by both the relative and absolute threshold, with
    /// enough samples, by the median rule or the tail rule.
    pub regression: bool,
    /// Which latency rules found the candidate slower: [`MEDIAN_RULE`], [`TAIL_RULE`];
    /// empty when it is not. Absent in results written before the tail rule.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// The latency rule on the paired median: most requests got slower.
pub const MEDIAN_RULE: &str = "median";

/// The latency rule on the tail: the candidate's p99 is beyond the baseline's, and the pairs
/// show the slow answers are the candidate's, not both targets' jitter.
pub const TAIL_RULE: &str = "tail";

/// Percentiles of one target's latencies, with the histogram for exact merging.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Number of samples.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest sample, µs.
    pub max_us: u64,
    /// The HDR histogram, V2 deflate serialization, base64.
    pub hdr: String,
}

/// Paired per-request latency differences (candidate minus baseline).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PairedStats {
    /// Number of pairs.
    pub count: u64,
    /// Median of the differences, µs (negative: candidate faster).
    pub median_diff_us: i64,
    /// Share of pairs where the candidate was slower.
    pub slower_share: f64,
    /// Pairs where the candidate was faster (absent in results of earlier versions, where
    /// every pair not slower counts as faster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faster: Option<u64>,
    /// Histogram of positive differences (candidate slower), serialized like `hdr`.
    pub hdr_slower: String,
    /// Histogram of magnitudes of negative differences (candidate faster).
    pub hdr_faster: String,
}

/// A set of differing keys and how many exchanges had exactly that set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Sorted keys (see `Difference::key`).
    pub keys: Vec<String>,
    /// Exchanges.
    pub count: u64,
}

/// How a run was made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// RFC 3339 time the result was made.
    pub created: String,
    /// shadowdiff version.
    pub tool_version: String,
    /// Recording files read.
    pub recordings: Vec<String>,
    /// Baseline URL.
    pub baseline: String,
    /// Candidate URL.
    pub candidate: String,
    /// Noise probe target (the baseline again, or `--secondary`), if the probe was on.
    pub secondary: Option<String>,
    /// Exchanges read from the recordings (before filters).
    pub exchanges_read: u64,
    /// Wall time of the replay, ms.
    pub duration_ms: u64,
    /// Pacing used: `concurrency N`, `rate N/s` or `speed X`.
    pub pacing: String,
    /// Time each target took to become ready under `--wait-ready`, ms.
    pub ready_ms: BTreeMap<String, u64>,
    /// Connections each target (`baseline`, `candidate`, `secondary`) opened, and the time
    /// their setup took (TCP connect and, for `https://`, the TLS handshake): counted apart
    /// from the latency of the requests they carried. Absent in results of earlier versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connections: BTreeMap<String, ConnectionSetup>,
    /// Thresholds the analysis used.
    pub thresholds: Thresholds,
    /// Warnings raised while reading input (truncated lines and the like).
    pub warnings: Vec<String>,
    /// The selection funnel (`--since`, `--until`, `--id`, `--filter`), in the order applied:
    /// each entry counts what it kept and excluded of what the previous one kept. Excluded
    /// exchanges are not outcomes of the run. Empty when nothing was filtered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterCount>,
    /// Which share of the exchanges this result covers (`--shard K/N`, or several shards
    /// after `merge`); absent for an unsharded run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// Why reading stopped before the end of the recordings (a line that is not a valid
    /// exchange, without `--skip-bad-lines`): the result judges only what was read before
    /// it. Absent for a run that read everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// shadowdiff played both gateways' upstreams (`--baseline-upstream`,
    /// `--candidate-upstream`): where, and what each side forwarded. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamRun>,
}

/// A run in which shadowdiff played both gateways' upstreams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRun {
    /// The address the baseline gateway forwarded to.
    pub baseline_addr: String,
    /// The address the candidate gateway forwarded to.
    pub candidate_addr: String,
    /// `none` (answered at once: latency is the gateway's own) or `recorded` (after the
    /// recorded latency).
    pub latency: String,
    /// What the baseline gateway forwarded.
    pub baseline: UpstreamSide,
    /// What the candidate gateway forwarded.
    pub candidate: UpstreamSide,
}

/// What one gateway forwarded to shadowdiff playing its upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamSide {
    /// Requests received.
    pub forwarded: u64,
    /// Tied to their exchange by the correlation header.
    pub by_header: u64,
    /// Received without the correlation header (the gateway did not pass it on).
    pub without_header: u64,
    /// Of those, tied to their exchange by method, body and path.
    pub by_match: u64,
    /// Tied to no exchange in flight: answered 502.
    pub unmatched: u64,
    /// The same call again within one exchange (same method, target and body).
    pub retries: u64,
    /// Tied to an exchange recorded without an answer: answered 502.
    #[serde(default)]
    pub unanswerable: u64,
    /// Whose body could not be read (over `--max-body`, or cut): answered 502.
    #[serde(default)]
    pub unreadable: u64,
}

impl UpstreamSide {
    /// Adds another run's counts (a shard's) to these.
    pub fn add(&mut self, o: &UpstreamSide) {
        self.forwarded += o.forwarded;
        self.by_header += o.by_header;
        self.without_header += o.without_header;
        self.by_match += o.by_match;
        self.unmatched += o.unmatched;
        self.retries += o.retries;
        self.unanswerable += o.unanswerable;
        self.unreadable += o.unreadable;
    }
}

/// The connections one target opened during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSetup {
    /// Connections opened.
    pub opened: u64,
    /// Their setup time summed, µs.
    pub setup_us_total: u64,
    /// The longest setup, µs.
    pub setup_us_max: u64,
}

impl ConnectionSetup {
    /// Adds another run's connections of the same side.
    pub fn merge(&mut self, o: &ConnectionSetup) {
        self.opened += o.opened;
        self.setup_us_total += o.setup_us_total;
        self.setup_us_max = self.setup_us_max.max(o.setup_us_max);
    }
}

/// What one selection filter kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterCount {
    /// The filter as given, e.g. `--since 2026-11-02T09:00:00Z` or `--filter method=GET`.
    pub filter: String,
    /// Exchanges that passed it.
    pub kept: u64,
    /// Exchanges it excluded (of those the earlier filters kept).
    pub excluded: u64,
}

/// The shards a result covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// N: how many shards the exchanges were split into.
    pub count: u32,
    /// The 0-based shard indices covered, ascending (one for a shard run, several after
    /// `merge`).
    pub indices: Vec<u32>,
    /// Exchanges read that belong to these shards; the others were not outcomes of this run
    /// (`exchanges_read` minus this is what the other shards own).
    pub owned: u64,
}

impl ShardInfo {
    /// The indices in `0..count` not covered.
    pub fn missing(&self) -> Vec<u32> {
        (0..self.count)
            .filter(|i| !self.indices.contains(i))
            .collect()
    }

    /// `2/4`, or `0,1,3/4` for several shards.
    pub fn label(&self) -> String {
        let list: Vec<String> = self.indices.iter().map(u32::to_string).collect();
        format!("{}/{}", list.join(","), self.count)
    }
}

/// Whether an interface or a path fails now compared with an earlier run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendState {
    /// Fails now, did not fail (or was not seen) in the earlier run.
    New,
    /// Failed then and fails now.
    StillFailing,
    /// Failed then, replayed now and no longer fails.
    Fixed,
    /// Failed then, but no exchange of it was replayed now: neither fixed nor failing.
    NotSeen,
}

impl TrendState {
    /// The snake_case name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            TrendState::New => "new",
            TrendState::StillFailing => "still_failing",
            TrendState::Fixed => "fixed",
            TrendState::NotSeen => "not_seen",
        }
    }

    /// Words for people: `new`, `still failing`, `fixed`, `not seen`.
    pub fn label(self) -> &'static str {
        match self {
            TrendState::New => "new",
            TrendState::StillFailing => "still failing",
            TrendState::Fixed => "fixed",
            TrendState::NotSeen => "not seen",
        }
    }
}

/// The comparison with an earlier result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// The earlier result's file as given.
    pub previous: String,
    /// When the earlier result was made.
    pub previous_created: String,
    /// The earlier verdict.
    pub previous_verdict: Verdict,
    /// Interfaces that fail now or failed then, sorted by state then name.
    pub interfaces: Vec<TrendItem>,
    /// Status, header and field paths that regress now or did then.
    pub paths: Vec<TrendItem>,
}

/// One interface or path in a [`Trend`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendItem {
    /// The interface key.
    pub interface: String,
    /// For paths: `status`, `header` or `field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For paths: the folded path or header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// New, still failing, fixed or not seen.
    pub state: TrendState,
    /// For interfaces: what fails now (or failed then, when fixed or not seen):
    /// `missing_rule`, `different`, `latency`, `errors`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Thresholds of the noise rule, the latency rule and the gates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// A field is a regression only if its raw rate exceeds its noise rate by this share of
    /// the larger (Diffy: 0.2).
    pub noise_relative: f64,
    /// ...and by this many percentage points (Diffy: 0.03).
    pub noise_absolute_pct: f64,
    /// Time tolerance, ms.
    pub time_tolerance_ms: u64,
    /// Latency: the paired median must exceed this share of the baseline median...
    pub latency_relative: f64,
    /// ...and this many µs...
    pub latency_absolute_us: u64,
    /// ...with at least this many pairs.
    pub latency_min_samples: u64,
    /// Latency tail: the candidate's p99 must exceed the baseline's by this share of it...
    #[serde(default = "default_tail_relative")]
    pub latency_tail_relative: f64,
    /// ...and by this many µs...
    #[serde(default = "default_tail_absolute_us")]
    pub latency_tail_absolute_us: u64,
    /// ...with at least this many pairs.
    #[serde(default = "default_tail_min_samples")]
    pub latency_tail_min_samples: u64,
    /// Outcome classes (and `latency`) that fail the run.
    pub fail_on: Vec<String>,
    /// Maximum share of compared exchanges that may be `different` (when set).
    pub max_diff_rate: Option<f64>,
    /// Noise thresholds for some interfaces (first matching glob wins).
    #[serde(default)]
    pub noise_rules: Vec<NoiseRule>,
}

/// Noise thresholds for the interfaces a glob matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseRule {
    /// Glob on the interface key.
    pub interfaces: String,
    /// Relative margin (see [`Thresholds::noise_relative`]).
    pub relative: f64,
    /// Absolute margin in percentage points.
    pub absolute_pct: f64,
}

fn default_tail_relative() -> f64 {
    0.5
}

fn default_tail_absolute_us() -> u64 {
    10_000
}

fn default_tail_min_samples() -> u64 {
    100
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            noise_relative: 0.2,
            noise_absolute_pct: 0.03,
            time_tolerance_ms: 5000,
            latency_relative: 0.25,
            latency_absolute_us: 2000,
            latency_min_samples: 20,
            latency_tail_relative: default_tail_relative(),
            latency_tail_absolute_us: default_tail_absolute_us(),
            latency_tail_min_samples: default_tail_min_samples(),
            fail_on: vec![
                "missing_rule".into(),
                "different".into(),
                "latency".into(),
                "candidate_error".into(),
            ],
            max_diff_rate: None,
            noise_rules: Vec::new(),
        }
    }
}
