//! Per-interface aggregation: turns a stream of per-exchange judgements into counts, field
//! paths with raw and noise rates, latency histograms, and from those the final outcome of
//! every exchange. Each replay worker owns an [`Aggregator`] and they are merged once at the
//! end, so the hot path shares nothing.
//!
//! Exchanges with differences are kept as *signatures* (the set of keys that differed, with a
//! count) because whether such an exchange is `noise_only` or `different` depends on the
//! noise rates of its keys, known only once every exchange has been seen.

pub mod gate;
pub mod latency;
pub mod merge;
pub mod noise;
pub mod result;
pub mod trend;

pub use merge::{merge, MergeError};

use crate::compare::{
    hints, is_more, Change, DiffKind, Difference, FetchError, FetchErrorKind, Judgement,
    NoiseSource, Outcome, MORE_AT_LISTED,
};
use latency::LatencyAgg;
use result::{
    Counts, ErrorResult, ErrorSide, Example, InterfaceResult, LatencyResult, MissingRuleAnswer,
    PathResult, SampleRequest, Signature, Summary, Thresholds,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Sample exchange ids kept per interface and path.
pub const MAX_SAMPLES: usize = 5;

/// Distinct tenants counted per interface; the rest are counted under [`OTHER_TENANTS`].
pub const MAX_TENANTS: usize = 64;

/// The bucket for tenants beyond [`MAX_TENANTS`].
pub const OTHER_TENANTS: &str = "(other)";

/// Counts `n` exchanges for `tenant`, folding tenants past [`MAX_TENANTS`] into one bucket.
pub(crate) fn count_tenant(map: &mut BTreeMap<String, u64>, tenant: &str, n: u64) {
    if let Some(c) = map.get_mut(tenant) {
        *c += n;
    } else if map.len() < MAX_TENANTS {
        map.insert(tenant.to_string(), n);
    } else {
        *map.entry(OTHER_TENANTS.to_string()).or_default() += n;
    }
}

/// Distinct signatures kept per interface; beyond it exchanges count as `different`, which
/// can only make a verdict stricter.
pub const MAX_SIGNATURES: usize = 4096;

#[derive(Clone, Debug)]
struct PathAgg {
    raw: u64,
    noise: u64,
    tolerated: u64,
    samples: Vec<String>,
    example: Option<Example>,
    volatile_like: u64,
    volatile_kind: Option<&'static str>,
}

#[derive(Clone, Debug)]
struct ErrAgg {
    count: u64,
    message: String,
    samples: Vec<String>,
}

/// Everything aggregated about one interface.
#[derive(Clone, Debug, Default)]
struct InterfaceAgg {
    /// Outcomes known per exchange; `different` and `noise_only` come from signatures.
    counts: Counts,
    compared: u64,
    probed: u64,
    /// Noise samples counted in `probed`, per source.
    sampled_by: BTreeMap<NoiseSource, u64>,
    /// Compared exchanges without any noise sample.
    unmeasured: u64,
    /// Exchanges that may change state.
    side_effecting: u64,
    paths: HashMap<String, PathAgg>,
    signatures: HashMap<Vec<String>, u64>,
    overflow: u64,
    errors: BTreeMap<(ErrorSide, FetchErrorKind), ErrAgg>,
    missing_samples: Vec<String>,
    missing_answer: Option<MissingRuleAnswer>,
    /// The requests of the exchanges path examples come from.
    requests: BTreeMap<String, SampleRequest>,
    latency: LatencyAgg,
    tenants: BTreeMap<String, u64>,
    /// Requests sent a second time: baseline, candidate, secondary.
    resent: [u64; 3],
}

/// Requests of one exchange sent a second time, per side: on a kept-alive connection the
/// server closed before any byte of an answer came back, they went again on a new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resent {
    /// To the baseline.
    pub baseline: u8,
    /// To the candidate (twice at most: the probe's twin request goes to it too).
    pub candidate: u8,
    /// To the noise probe's target.
    pub secondary: u8,
}

/// The sides in the order of [`InterfaceAgg::resent`], by their result names.
const RESENT_SIDES: [&str; 3] = ["baseline", "candidate", "secondary"];

fn push_sample(v: &mut Vec<String>, id: &str) {
    if v.len() < MAX_SAMPLES {
        v.push(id.to_string());
    }
}

impl InterfaceAgg {
    fn path(&mut self, key: String) -> &mut PathAgg {
        self.paths.entry(key).or_insert_with(|| PathAgg {
            raw: 0,
            noise: 0,
            tolerated: 0,
            samples: Vec::new(),
            example: None,
            volatile_like: 0,
            volatile_kind: None,
        })
    }

    fn error(&mut self, side: ErrorSide, e: &FetchError, id: &str) {
        let agg = self.errors.entry((side, e.kind)).or_insert_with(|| ErrAgg {
            count: 0,
            message: e.message.clone(),
            samples: Vec::new(),
        });
        agg.count += 1;
        push_sample(&mut agg.samples, id);
    }
}

/// Accumulates judgements; one per worker, merged at the end.
#[derive(Clone, Debug, Default)]
pub struct Aggregator {
    interfaces: HashMap<String, InterfaceAgg>,
    skipped_reasons: BTreeMap<String, u64>,
    /// When the oldest recorded answer taken as a noise sample was captured (µs).
    oldest_recorded_us: Option<i64>,
}

/// Latencies of one exchange's baseline and candidate answers, µs.
#[derive(Clone, Copy, Debug)]
pub struct PairLatency {
    /// Baseline latency.
    pub baseline_us: u64,
    /// Candidate latency.
    pub candidate_us: u64,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    fn iface(&mut self, interface: &str) -> &mut InterfaceAgg {
        if !self.interfaces.contains_key(interface) {
            self.interfaces
                .insert(interface.to_string(), InterfaceAgg::default());
        }
        // The entry was just ensured above.
        self.interfaces
            .get_mut(interface)
            .expect("interface entry present")
    }

    /// Counts an exchange of `interface` that may change state (neither a safe method nor
    /// declared safe): skipped without `--allow-side-effects`, never asked twice with it.
    pub fn record_side_effecting(&mut self, interface: &str) {
        self.iface(interface).side_effecting += 1;
    }

    /// Notes the capture time of a recorded answer taken as a noise sample: the older it is,
    /// the more drift since capture passes for noise.
    pub fn record_recorded_sample_at(&mut self, ts_us: i64) {
        self.oldest_recorded_us = Some(self.oldest_recorded_us.map_or(ts_us, |o| o.min(ts_us)));
    }

    /// The capture time of the oldest recorded answer taken as a noise sample.
    pub fn oldest_recorded_us(&self) -> Option<i64> {
        self.oldest_recorded_us
    }

    /// Records an exchange that was not replayed, with the reason (`side_effect`, ...).
    pub fn record_skip(&mut self, interface: &str, reason: &str) {
        self.iface(interface).counts.add(Outcome::Skipped, 1);
        *self.skipped_reasons.entry(reason.to_string()).or_default() += 1;
    }

    /// Notes why an exchange of `interface` was skipped as [`result::UNSENDABLE`] (the
    /// skip itself is counted by [`Aggregator::record_skip`]).
    pub fn record_unsendable(&mut self, interface: &str, id: &str, e: &FetchError) {
        self.iface(interface).error(ErrorSide::Request, e, id);
    }

    /// Counts one exchange of `interface` for `tenant`.
    pub fn record_tenant(&mut self, interface: &str, tenant: &str) {
        count_tenant(&mut self.iface(interface).tenants, tenant, 1);
    }

    /// Records that the noise probe failed for an exchange (the exchange's outcome is not
    /// affected; the failure is reported so it is not silently lost).
    pub fn record_probe_error(&mut self, interface: &str, id: &str, e: &FetchError) {
        self.iface(interface).error(ErrorSide::Secondary, e, id);
    }

    /// Lists the candidate's failure on an exchange counted as the baseline's error (both
    /// failed): the outcome stays `baseline_error`, and the failure is listed under the
    /// candidate's errors, so a candidate that is down is seen even when the baseline is.
    pub fn record_candidate_failure(&mut self, interface: &str, id: &str, e: &FetchError) {
        self.iface(interface).error(ErrorSide::Candidate, e, id);
    }

    /// Counts the requests of an exchange of `interface` that were sent a second time.
    pub fn record_resent(&mut self, interface: &str, r: Resent) {
        let a = &mut self.iface(interface).resent;
        a[0] += u64::from(r.baseline);
        a[1] += u64::from(r.candidate);
        a[2] += u64::from(r.secondary);
    }

    /// Records one judged exchange.
    pub fn record(&mut self, interface: &str, id: &str, j: &Judgement, lat: Option<PairLatency>) {
        self.record_judged(interface, id, j, lat);
    }

    /// Records one judged exchange as [`Aggregator::record`] does, and keeps its request
    /// when a path example comes from it, for the report's command that sends it again.
    pub fn record_exchange(
        &mut self,
        interface: &str,
        ex: &crate::exchange::Exchange,
        j: &Judgement,
        lat: Option<PairLatency>,
    ) {
        if self.record_judged(interface, &ex.id, j, lat) {
            self.iface(interface)
                .requests
                .entry(ex.id.clone())
                .or_insert_with(|| SampleRequest::of(&ex.request));
        }
    }

    /// Keeps what the gateways forwarded for exchange `id` of `interface` with its request,
    /// when that request is kept (a path example comes from it).
    pub fn record_forwarded(
        &mut self,
        interface: &str,
        id: &str,
        calls: &crate::replay::upstream::Calls,
    ) {
        if let Some(r) = self.iface(interface).requests.get_mut(id) {
            if r.forwarded.is_none() {
                r.forwarded = Some(result::ForwardedSample::of(calls));
            }
        }
    }

    /// Keeps the candidate's answer in an exchange counted `missing_rule`, when none is kept
    /// for `interface` yet.
    pub fn record_missing_answer(
        &mut self,
        interface: &str,
        id: &str,
        answer: &crate::compare::Observed,
    ) {
        let agg = self.iface(interface);
        if agg.missing_answer.is_none() {
            agg.missing_answer = Some(MissingRuleAnswer::of(id, answer));
        }
    }

    /// Keeps what the gateways forwarded in exchange `id`, when it is the missing-rule
    /// exchange whose answer is kept for `interface`.
    pub fn record_missing_forwarded(
        &mut self,
        interface: &str,
        id: &str,
        calls: &crate::replay::upstream::Calls,
    ) {
        if let Some(a) = self.iface(interface).missing_answer.as_mut() {
            if a.id == id && a.forwarded.is_none() {
                a.forwarded = Some(result::ForwardedSample::of(calls));
            }
        }
    }

    /// Records one judged exchange; true when a path example was taken from it.
    fn record_judged(
        &mut self,
        interface: &str,
        id: &str,
        j: &Judgement,
        lat: Option<PairLatency>,
    ) -> bool {
        let agg = self.iface(interface);
        let mut example = false;
        match j.outcome {
            Outcome::BaselineError | Outcome::CandidateError => {
                agg.counts.add(j.outcome, 1);
                if let Some(e) = &j.error {
                    let side = if j.outcome == Outcome::BaselineError {
                        ErrorSide::Baseline
                    } else {
                        ErrorSide::Candidate
                    };
                    agg.error(side, e, id);
                }
                return false;
            }
            Outcome::MissingRule => {
                agg.counts.add(Outcome::MissingRule, 1);
                push_sample(&mut agg.missing_samples, id);
                return false;
            }
            Outcome::Skipped => {
                agg.counts.add(Outcome::Skipped, 1);
                return false;
            }
            Outcome::Identical | Outcome::NoiseOnly | Outcome::Different => {}
        }
        agg.compared += 1;
        if let Some(l) = lat {
            agg.latency.record_pair(l.baseline_us, l.candidate_us);
        }
        if let Some(probe) = &j.probe {
            let source = j.noise_source.unwrap_or(NoiseSource::Baseline);
            // A second answer with another status measured only its status transition: it
            // is no probe of how fields and headers vary, so it does not count among the
            // probes their noise rates divide by (a baseline that rate-limits the quick
            // second call would otherwise dilute every field's noise).
            let status_changed = probe.iter().any(|d| {
                d.kind == DiffKind::Status
                    || (d.kind == DiffKind::Trailer && d.path == "grpc-status")
            });
            if !status_changed {
                agg.probed += 1;
                *agg.sampled_by.entry(source).or_default() += 1;
            }
            // A recorded answer with another status is what changed since capture (an item
            // sold out, a record deleted), not a target failing.
            let failed = source != NoiseSource::Recording;
            if let Some(d) = probe.iter().find(|d| failed && d.kind == DiffKind::Status) {
                let e = FetchError {
                    kind: FetchErrorKind::Status,
                    message: format!(
                        "answered {} where the baseline answered {}",
                        d.candidate.as_deref().unwrap_or("-"),
                        d.baseline.as_deref().unwrap_or("-")
                    ),
                };
                agg.error(ErrorSide::Secondary, &e, id);
            }
            // A list cut where some of the rest is at paths not listed is never explained by
            // noise: what was cut off could be anything, so the exchange stays `different`.
            // A list whose rest is at the paths listed adds no path.
            let keys: BTreeSet<String> = probe
                .iter()
                .filter(|d| !d.tolerated && !is_more(d))
                .map(Difference::key)
                .collect();
            for k in keys {
                agg.path(k).noise += 1;
            }
        } else {
            agg.unmeasured += 1;
        }
        if j.outcome == Outcome::Identical {
            agg.counts.add(Outcome::Identical, 1);
            return false;
        }
        let mut signature: BTreeSet<String> = BTreeSet::new();
        let mut tolerated: BTreeSet<String> = BTreeSet::new();
        for d in &j.diffs {
            if d.path == MORE_AT_LISTED {
                continue;
            }
            let key = d.key();
            if d.tolerated {
                tolerated.insert(key);
                continue;
            }
            if signature.insert(key.clone()) {
                let p = agg.path(key);
                p.raw += 1;
                if let Some(kind) =
                    hints::shared_kind(d.baseline.as_deref(), d.candidate.as_deref())
                {
                    p.volatile_like += 1;
                    p.volatile_kind.get_or_insert(kind);
                }
                push_sample(&mut p.samples, id);
                if p.example.is_none() {
                    example = true;
                    p.example = Some(Example {
                        id: id.to_string(),
                        path: d.path.clone(),
                        baseline: d.baseline.clone(),
                        candidate: d.candidate.clone(),
                    });
                }
            }
        }
        for k in tolerated {
            agg.path(k).tolerated += 1;
        }
        let signature: Vec<String> = signature.into_iter().collect();
        if let Some(c) = agg.signatures.get_mut(&signature) {
            *c += 1;
        } else if agg.signatures.len() < MAX_SIGNATURES {
            agg.signatures.insert(signature, 1);
        } else {
            agg.overflow += 1;
        }
        example
    }

    /// Adds another aggregator (from another worker) into this one.
    pub fn merge(&mut self, other: Aggregator) {
        if let Some(ts) = other.oldest_recorded_us {
            self.record_recorded_sample_at(ts);
        }
        for (reason, n) in other.skipped_reasons {
            *self.skipped_reasons.entry(reason).or_default() += n;
        }
        for (name, o) in other.interfaces {
            let a = self.iface(&name);
            a.counts.merge(&o.counts);
            a.compared += o.compared;
            a.probed += o.probed;
            a.unmeasured += o.unmeasured;
            a.side_effecting += o.side_effecting;
            for (source, n) in o.sampled_by {
                *a.sampled_by.entry(source).or_default() += n;
            }
            for (k, p) in o.paths {
                let mine = a.path(k);
                mine.raw += p.raw;
                mine.noise += p.noise;
                mine.tolerated += p.tolerated;
                mine.volatile_like += p.volatile_like;
                if mine.volatile_kind.is_none() {
                    mine.volatile_kind = p.volatile_kind;
                }
                for s in p.samples {
                    push_sample(&mut mine.samples, &s);
                }
                if mine.example.is_none() {
                    mine.example = p.example;
                }
            }
            for (sig, n) in o.signatures {
                if let Some(c) = a.signatures.get_mut(&sig) {
                    *c += n;
                } else if a.signatures.len() < MAX_SIGNATURES {
                    a.signatures.insert(sig, n);
                } else {
                    a.overflow += n;
                }
            }
            a.overflow += o.overflow;
            for (k, e) in o.errors {
                let mine = a.errors.entry(k).or_insert_with(|| ErrAgg {
                    count: 0,
                    message: e.message.clone(),
                    samples: Vec::new(),
                });
                mine.count += e.count;
                for s in e.samples {
                    push_sample(&mut mine.samples, &s);
                }
            }
            for s in o.missing_samples {
                push_sample(&mut a.missing_samples, &s);
            }
            if a.missing_answer.is_none() {
                a.missing_answer = o.missing_answer;
            }
            for (id, r) in o.requests {
                a.requests.entry(id).or_insert(r);
            }
            a.latency.merge(&o.latency);
            for (mine, n) in a.resent.iter_mut().zip(o.resent) {
                *mine += n;
            }
            for (t, n) in o.tenants {
                count_tenant(&mut a.tenants, &t, n);
            }
        }
    }

    /// Exchanges recorded so far (all outcomes, including those still pending noise).
    pub fn total(&self) -> u64 {
        self.interfaces
            .values()
            .map(|a| a.counts.total + a.signatures.values().sum::<u64>() + a.overflow)
            .sum()
    }

    /// Decides every exchange's final outcome and every flag under `th`.
    pub fn finish(self, th: &Thresholds) -> (Summary, Vec<InterfaceResult>) {
        let mut interfaces: Vec<InterfaceResult> = self
            .interfaces
            .into_iter()
            .map(|(name, a)| interface_result(name, a, th))
            .collect();
        interfaces.sort_by(|a, b| a.interface.cmp(&b.interface));
        let summary = summarize(&interfaces, self.skipped_reasons);
        (summary, interfaces)
    }
}

/// Sums interface results into the run summary.
pub fn summarize(
    interfaces: &[InterfaceResult],
    skipped_reasons: BTreeMap<String, u64>,
) -> Summary {
    let mut summary = Summary {
        skipped_reasons,
        interfaces: interfaces.len() as u64,
        ..Default::default()
    };
    for i in interfaces {
        summary.counts.merge(&i.counts);
        for (side, n) in &i.resent {
            *summary.resent.entry(side.clone()).or_default() += n;
        }
        if i.latency.regression {
            summary.latency_regressions += 1;
        }
    }
    summary
}

fn interface_result(name: String, a: InterfaceAgg, th: &Thresholds) -> InterfaceResult {
    let mut status = Vec::new();
    let mut fields = Vec::new();
    let mut headers = Vec::new();
    for (key, p) in a.paths {
        let (list, path) = if let Some(t) = key.strip_prefix("status:") {
            (&mut status, t.to_string())
        } else if let Some(h) = key.strip_prefix("header:") {
            (&mut headers, h.to_string())
        } else if key.starts_with("trailer:") {
            (&mut headers, key)
        } else {
            (&mut fields, key)
        };
        let (path, change) = match Change::split_key(&path) {
            (base, Change::Value) => (base.to_string(), None),
            (base, c) => (base.to_string(), Some(c.name().to_string())),
        };
        list.push(PathResult {
            change,
            noise_source: None,
            path,
            raw: p.raw,
            noise: p.noise,
            tolerated: p.tolerated,
            regression: false,
            samples: p.samples,
            example: p.example,
            volatile_like: p.volatile_like,
            volatile_kind: p.volatile_kind.map(str::to_string),
            hint: None,
        });
    }
    let mut counts = a.counts;
    // Recomputed by `decide` from the signatures.
    counts.total -= counts.different + counts.noise_only;
    counts.different = 0;
    counts.noise_only = 0;
    let mut r = InterfaceResult {
        interface: name,
        counts,
        compared: a.compared,
        probed: a.probed,
        noise_samples: a
            .sampled_by
            .iter()
            .map(|(s, n)| (s.name().to_string(), *n))
            .collect(),
        unmeasured: a.unmeasured,
        side_effecting: a.side_effecting,
        status,
        fields,
        headers,
        errors: a
            .errors
            .into_iter()
            .map(|((side, kind), e)| ErrorResult {
                side,
                kind,
                count: e.count,
                message: e.message,
                samples: e.samples,
            })
            .collect(),
        missing_rule_samples: a.missing_samples,
        missing_rule_answer: a.missing_answer,
        sample_requests: a.requests,
        latency: a.latency.to_result(th),
        signatures: a
            .signatures
            .into_iter()
            .map(|(keys, count)| Signature { keys, count })
            .collect(),
        signature_overflow: a.overflow,
        tenants: a.tenants,
        resent: RESENT_SIDES
            .iter()
            .zip(a.resent)
            .filter(|(_, n)| *n > 0)
            .map(|(side, n)| (side.to_string(), n))
            .collect(),
    };
    r.signatures
        .sort_by(|x, y| y.count.cmp(&x.count).then(x.keys.cmp(&y.keys)));
    keep_example_requests(&mut r);
    decide(&mut r, th);
    r
}

/// Drops the sample requests no path example refers to (workers and shards each keep the
/// requests of their own examples; one example per path survives).
pub fn keep_example_requests(r: &mut InterfaceResult) {
    let used: BTreeSet<&str> = r
        .status
        .iter()
        .chain(&r.fields)
        .chain(&r.headers)
        .filter_map(|p| p.example.as_ref().map(|e| e.id.as_str()))
        .collect();
    let keep: BTreeSet<String> = used.into_iter().map(str::to_string).collect();
    r.sample_requests.retain(|id, _| keep.contains(id));
}

/// The aggregation key of a path entry in one of the three lists.
fn key_of(list: DiffKind, path: &str) -> String {
    match list {
        DiffKind::Header if !path.starts_with("trailer:") => format!("header:{path}"),
        // Results of earlier versions keyed every status difference as plain `status`.
        DiffKind::Status if path == "status" => path.to_string(),
        DiffKind::Status => format!("status:{path}"),
        _ => path.to_string(),
    }
}

/// Sets every regression flag and the `different` / `noise_only` split from the raw counts
/// and signatures. Used after a run and again after merging shard results, so a merged
/// result is decided on the merged counts exactly as a single run would be.
pub fn decide(r: &mut InterfaceResult, th: &Thresholds) {
    let th = &thresholds_for(&r.interface, th);
    let sources = noise_sources(r);
    let mut regressing: BTreeSet<String> = BTreeSet::new();
    for (kind, list) in [
        (DiffKind::Status, &mut r.status),
        (DiffKind::Body, &mut r.fields),
        (DiffKind::Header, &mut r.headers),
    ] {
        for p in list.iter_mut() {
            p.regression = noise::is_regression(p.raw, p.noise, r.compared, r.probed, th);
            if p.regression {
                regressing.insert(key_of(kind, &p.classed_path()));
            }
            p.noise_source = Some(sources.clone());
            p.hint = hint(&r.interface, kind, p);
        }
        list.sort_by(|a, b| {
            b.regression
                .cmp(&a.regression)
                .then(b.raw.cmp(&a.raw))
                .then(a.path.cmp(&b.path))
        });
    }
    let mut different = r.signature_overflow;
    let mut noise_only = 0;
    for s in &r.signatures {
        if s.keys.iter().any(|k| regressing.contains(k)) {
            different += s.count;
        } else {
            noise_only += s.count;
        }
    }
    let c = &mut r.counts;
    c.total = c.total - c.different - c.noise_only + different + noise_only;
    c.different = different;
    c.noise_only = noise_only;
    r.latency.rules = latency_rules(&r.latency, th);
    r.latency.regression = !r.latency.rules.is_empty();
}

/// Headers that regressed with the same pair of values on at least three interfaces and on
/// at least half of those compared (see [`result::GatewayWide`]).
pub fn gateway_wide(interfaces: &[InterfaceResult]) -> Vec<result::GatewayWide> {
    let compared: Vec<&InterfaceResult> = interfaces.iter().filter(|i| i.compared > 0).collect();
    let mut groups: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
    for i in &compared {
        for h in i.headers.iter().filter(|h| h.regression) {
            let Some(ex) = &h.example else { continue };
            groups
                .entry((h.classed_path(), show(&ex.baseline), show(&ex.candidate)))
                .or_default()
                .push(i.interface.clone());
        }
    }
    groups
        .into_iter()
        .filter(|(_, names)| names.len() >= 3 && names.len() * 2 >= compared.len())
        .map(
            |((header, baseline, candidate), interfaces)| result::GatewayWide {
                header,
                baseline,
                candidate,
                interfaces,
                of: compared.len(),
            },
        )
        .collect()
}

/// The noise sources that judged an interface's paths, joined by `+`, or `none`.
pub fn noise_sources(r: &InterfaceResult) -> String {
    let names: Vec<&str> = NoiseSource::ALL
        .iter()
        .map(|s| s.name())
        .filter(|n| r.noise_samples.get(*n).is_some_and(|c| *c > 0))
        .collect();
    if names.is_empty() {
        // Results of earlier versions count probes without naming a source.
        return if r.probed > 0 { "baseline" } else { "none" }.to_string();
    }
    names.join("+")
}

/// A suggestion for a regressing path whose every difference looked volatile.
fn hint(interface: &str, kind: DiffKind, p: &PathResult) -> Option<String> {
    if p.regression && p.change.as_deref() == Some(Change::Order.name()) {
        return Some(format!(
            "the same elements came in another order; if their order means nothing here, \
             add to the config: [[unordered]] interfaces = {interface:?} paths = [{:?}]",
            p.path
        ));
    }
    if !p.regression || p.raw == 0 || p.volatile_like < p.raw {
        return None;
    }
    let looks = p.volatile_kind.as_deref().unwrap_or("volatile values");
    let rule = match kind {
        // What a gateway forwarded takes the same rules as answers: header names and field
        // paths.
        DiffKind::Body if p.path.starts_with("upstream.header:") => {
            format!("headers = [{:?}]", &p.path["upstream.header:".len()..])
        }
        DiffKind::Body if p.path.starts_with("upstream.body:$") => {
            format!("paths = [{:?}]", &p.path["upstream.body:".len()..])
        }
        // Ignore rules take field paths; text lines (`body:line 2`) and whole bodies have
        // no rule to suggest.
        DiffKind::Body if p.path.starts_with('$') => format!("paths = [{:?}]", p.path),
        DiffKind::Header if !p.path.starts_with("trailer:") => format!("headers = [{:?}]", p.path),
        _ => return None,
    };
    Some(format!(
        "both sides hold {looks} that differ on every call; if they are per-request values, \
         add to the config: [[ignore]] interfaces = {interface:?} {rule}"
    ))
}

/// The thresholds for one interface: the first `noise_rules` entry whose glob matches
/// replaces the noise margins.
pub fn thresholds_for(interface: &str, th: &Thresholds) -> Thresholds {
    let mut out = th.clone();
    if let Some(rule) = th
        .noise_rules
        .iter()
        .find(|r| crate::glob::matches(&r.interfaces, interface))
    {
        out.noise_relative = rule.relative;
        out.noise_absolute_pct = rule.absolute_pct;
    }
    out
}

/// The latency rules under which a finished latency result is slower (see
/// [`latency::LatencyAgg::rules`]). Histograms that do not decode leave only the median
/// rule, which needs none.
pub fn latency_rules(l: &LatencyResult, th: &Thresholds) -> Vec<String> {
    match LatencyAgg::from_result(l) {
        Ok(agg) => agg.rules(&l.baseline, &l.candidate, th),
        Err(_) => {
            let p = &l.paired;
            let slower = (p.slower_share * p.count as f64).round() as u64;
            let faster = p.faster.unwrap_or(p.count.saturating_sub(slower));
            (latency::median_rule(p.count, p.median_diff_us, l.baseline.p50_us, th)
                && latency::slower_beyond_chance(slower, faster))
            .then(|| result::MEDIAN_RULE.to_string())
            .into_iter()
            .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{DiffKind, Difference, Observed};

    fn diff(path: &str, tolerated: bool) -> Difference {
        Difference {
            kind: DiffKind::Body,
            path: path.into(),
            baseline: Some("1".into()),
            candidate: Some("2".into()),
            tolerated,
        }
    }

    fn judged(diffs: Vec<Difference>, probe: Option<Vec<Difference>>) -> Judgement {
        Judgement {
            outcome: Outcome::of_diffs(&diffs),
            diffs,
            probe,
            noise_source: None,
            error: None,
        }
    }

    #[test]
    fn a_truncated_difference_list_is_never_explained_by_noise() {
        let mut agg = Aggregator::new();
        for i in 0..10 {
            let j = judged(
                vec![diff("$.a", false), diff("…", false)],
                Some(vec![diff("$.a", false), diff("…", false)]),
            );
            agg.record("I", &format!("e{i}"), &j, None);
        }
        let (_, ifs) = agg.finish(&Thresholds::default());
        assert_eq!(ifs[0].counts.different, 10, "{:?}", ifs[0].fields);
    }

    #[test]
    fn a_list_cut_at_paths_already_listed_is_explained_by_noise_at_those_paths() {
        let mut agg = Aggregator::new();
        for i in 0..10 {
            // A trace id in each of 100 elements: 64 listed, the rest at the same path.
            let cut = || {
                let mut d: Vec<Difference> = (0..64)
                    .map(|n| diff(&format!("$.items[{n}].trace"), false))
                    .collect();
                d.push(diff(MORE_AT_LISTED, false));
                d
            };
            agg.record("I", &format!("e{i}"), &judged(cut(), Some(cut())), None);
        }
        let (_, ifs) = agg.finish(&Thresholds::default());
        assert_eq!(ifs[0].counts.noise_only, 10, "{:?}", ifs[0].fields);
        assert_eq!(ifs[0].fields.len(), 1, "{:?}", ifs[0].fields);
        assert_eq!(ifs[0].fields[0].path, "$.items[*].trace");
    }

    /// What comparing a text/plain baseline, candidate and probe gives, as replay records it.
    fn judged_text(baseline: &str, candidate: &str, probe: &str) -> Judgement {
        let obs = |body: &str| crate::compare::Observed {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: bytes::Bytes::from(body.to_string()),
            ..Default::default()
        };
        let opts = crate::compare::CompareOptions::default();
        let diffs = crate::compare::diff(&obs(baseline), &obs(candidate), &opts);
        let probe = crate::compare::diff(&obs(baseline), &obs(probe), &opts);
        judged(diffs, Some(probe))
    }

    #[test]
    fn noise_on_one_text_line_does_not_explain_a_change_on_another() {
        let mut agg = Aggregator::new();
        let mut aa = Aggregator::new();
        for i in 0..20 {
            let id = format!("e{i}");
            let req = |n: u32| format!("req={i}-{n}\nstatus=OK\n");
            let failed = format!("req={i}-2\nstatus=FAIL\n");
            agg.record("GET /t", &id, &judged_text(&req(0), &failed, &req(1)), None);
            aa.record("GET /t", &id, &judged_text(&req(0), &req(2), &req(1)), None);
        }
        let (_, ifs) = agg.finish(&Thresholds::default());
        assert_eq!(ifs[0].counts.different, 20, "{:?}", ifs[0].fields);
        let status = ifs[0].fields.iter().find(|f| f.path == "body:line 2");
        assert!(status.is_some_and(|f| f.regression), "{:?}", ifs[0].fields);
        let req = ifs[0].fields.iter().find(|f| f.path == "body:line 1");
        assert!(req.is_some_and(|f| !f.regression && f.noise == 20));
        // The same volatile line between two baseline calls is noise, and nothing else differs.
        let (_, ifs) = aa.finish(&Thresholds::default());
        assert_eq!(ifs[0].counts.noise_only, 20, "{:?}", ifs[0].fields);
    }

    #[test]
    fn lines_inserted_are_not_explained_by_noise_on_a_line() {
        let mut agg = Aggregator::new();
        for i in 0..20 {
            let base = format!("req={i}-0\nstatus=OK\n");
            let cand = format!("req={i}-2\nstatus=OK\nwarning=degraded\n");
            let probe = format!("req={i}-1\nstatus=OK\n");
            let j = judged_text(&base, &cand, &probe);
            agg.record("GET /t", &format!("e{i}"), &j, None);
        }
        let (_, ifs) = agg.finish(&Thresholds::default());
        assert_eq!(ifs[0].counts.different, 20, "{:?}", ifs[0].fields);
        assert_eq!(ifs[0].fields[0].path, "body:lines");
        assert!(ifs[0].fields[0].regression);
    }

    #[test]
    fn a_status_transition_is_explained_only_by_the_same_transition() {
        let status = |b: &str, c: &str| Difference {
            kind: DiffKind::Status,
            path: "status".into(),
            baseline: Some(b.into()),
            candidate: Some(c.into()),
            tolerated: false,
        };
        let mut agg = Aggregator::new();
        for i in 0..40 {
            // The baseline answers 500 on a second call now and then; the candidate answers
            // 500 about as often, and 404 on five exchanges.
            let probe = (i % 10 == 0).then(|| status("200", "500"));
            let cand = if i % 10 == 5 {
                vec![status("200", "500")]
            } else if i % 10 == 7 || i == 39 {
                vec![status("200", "404")]
            } else {
                vec![]
            };
            let j = judged(cand, Some(probe.into_iter().collect()));
            agg.record("I", &format!("e{i}"), &j, None);
        }
        let (_, ifs) = agg.finish(&Thresholds::default());
        let x = &ifs[0];
        let by = |p: &str| x.status.iter().find(|s| s.path == p).unwrap();
        assert!(!by("200 → 500").regression, "{:?}", x.status);
        assert!(by("200 → 404").regression, "{:?}", x.status);
        assert_eq!((x.counts.noise_only, x.counts.different), (4, 5));
    }

    #[test]
    fn a_probe_with_another_status_does_not_dilute_field_noise() {
        let status = Difference {
            kind: DiffKind::Status,
            path: "status".into(),
            baseline: Some("200".into()),
            candidate: Some("429".into()),
            tolerated: false,
        };
        let mut agg = Aggregator::new();
        for i in 0..40 {
            // A per-request id differs on every call; half the second calls are rate-limited.
            let probe = if i % 2 == 0 {
                vec![status.clone()]
            } else {
                vec![diff("$.id", false)]
            };
            let j = judged(vec![diff("$.id", false)], Some(probe));
            agg.record("I", &format!("e{i}"), &j, None);
        }
        let (_, ifs) = agg.finish(&Thresholds::default());
        let x = &ifs[0];
        assert_eq!(x.probed, 20);
        let id = x.fields.iter().find(|f| f.path == "$.id").unwrap();
        assert_eq!((id.raw, id.noise, id.regression), (40, 20, false));
        assert_eq!(x.counts.noise_only, 40);
    }

    #[test]
    fn forwarded_differences_aggregate_under_their_paths_with_the_rule_that_ignores_them() {
        let mut agg = Aggregator::new();
        for i in 0..20 {
            let d = Difference {
                kind: DiffKind::Upstream,
                path: "upstream.header:x-trace".into(),
                baseline: Some(format!("0f{i:06}a9e41c7d")),
                candidate: Some(format!("7c{i:06}d2b8e05f")),
                tolerated: false,
            };
            let gone = Difference {
                kind: DiffKind::Upstream,
                path: "upstream.calls".into(),
                baseline: Some("GET /auth".into()),
                candidate: None,
                tolerated: false,
            };
            agg.record(
                "POST /o",
                &format!("e{i}"),
                &judged(vec![d, gone], None),
                None,
            );
        }
        let (_, ifs) = agg.finish(&Thresholds::default());
        let f = &ifs[0].fields;
        let trace = f
            .iter()
            .find(|p| p.path == "upstream.header:x-trace")
            .unwrap();
        assert!(trace.regression);
        let hint = trace.hint.as_deref().unwrap_or_default();
        assert!(hint.ends_with(r#"headers = ["x-trace"]"#), "{hint}");
        let calls = f.iter().find(|p| p.path == "upstream.calls").unwrap();
        assert_eq!(calls.change.as_deref(), Some("removed"));
        assert_eq!(
            ifs[0].signatures[0].keys,
            ["upstream.calls (removed)", "upstream.header:x-trace"]
        );
    }

    #[test]
    fn a_path_of_prefixed_random_tokens_gets_a_hint_with_its_rule() {
        let mut agg = Aggregator::new();
        let tails = [
            "3fK9xQ2mZ7",
            "Q7pL2xT8vW4n",
            "78a8c2e1f0",
            "1NXWPe2eZvKYlo2C",
        ];
        for i in 0..20 {
            let token = |side: usize| format!("\"at_{}\"", tails[(i + side) % tails.len()]);
            let d = Difference {
                kind: DiffKind::Body,
                path: "$.access_token".into(),
                baseline: Some(token(0)),
                candidate: Some(token(1)),
                tolerated: false,
            };
            agg.record(
                "POST /rpc/auth/Login",
                &format!("e{i}"),
                &judged(vec![d], None),
                None,
            );
        }
        let (_, ifs) = agg.finish(&Thresholds::default());
        let f = &ifs[0].fields[0];
        assert_eq!(f.volatile_kind.as_deref(), Some("prefixed random tokens"));
        let hint = f
            .hint
            .as_deref()
            .unwrap_or_else(|| panic!("no hint: {f:?}"));
        assert!(
            hint.starts_with("both sides hold prefixed random tokens that differ on every call")
                && hint
                    .ends_with(r#"interfaces = "POST /rpc/auth/Login" paths = ["$.access_token"]"#),
            "{hint}"
        );
    }

    #[test]
    fn measured_noise_turns_differences_into_noise_only() {
        let mut agg = Aggregator::new();
        for i in 0..50 {
            // request_id differs everywhere, also between two baseline calls
            let mut d = vec![diff("$.request_id", false)];
            if i % 2 == 0 {
                d.push(diff("$.items[3].price", false)); // real change, never in the probe
            }
            agg.record(
                "GET /x",
                &format!("e{i}"),
                &judged(d, Some(vec![diff("$.request_id", false)])),
                None,
            );
        }
        let (summary, ifs) = agg.finish(&Thresholds::default());
        let x = &ifs[0];
        assert_eq!(x.counts.total, 50);
        assert_eq!(x.counts.different, 25);
        assert_eq!(x.counts.noise_only, 25);
        assert!(x.counts.is_consistent() && summary.counts.is_consistent());
        let price = x
            .fields
            .iter()
            .find(|f| f.path == "$.items[*].price")
            .unwrap();
        assert!(price.regression);
        assert_eq!(price.raw, 25);
        assert_eq!(price.samples.len(), MAX_SAMPLES);
        assert_eq!(price.example.as_ref().unwrap().path, "$.items[3].price");
        let rid = x.fields.iter().find(|f| f.path == "$.request_id").unwrap();
        assert!(!rid.regression);
        assert_eq!((rid.raw, rid.noise), (50, 50));
    }

    /// What replay judges with the recorded answer as the noise sample.
    fn judged_with_recording(baseline: &str, candidate: &str, recorded: &str) -> Judgement {
        let obs = |body: &str| {
            Ok(crate::compare::Observed {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.to_string().into(),
                ..Default::default()
            })
        };
        let opts = crate::compare::CompareOptions::default();
        let mut j =
            crate::compare::judge(&obs(baseline), &obs(candidate), Some(&obs(recorded)), &opts);
        j.noise_source = Some(NoiseSource::Recording);
        j
    }

    #[test]
    fn drift_since_capture_never_hides_a_change_of_another_kind_or_rate() {
        let th = Thresholds::default();
        let mut agg = Aggregator::new();
        for i in 0..40 {
            // The stock count drifted since capture on every exchange; the price did on
            // none (recording and baseline agree), yet the candidate changes it on each.
            let base = format!(r#"{{"stock":{i},"price":10,"rid":"a{i}"}}"#);
            let rec = format!(r#"{{"stock":{},"price":10,"rid":"r{i}"}}"#, i + 100);
            let cand = format!(r#"{{"stock":"{i}","price":11,"rid":"b{i}"}}"#);
            agg.record(
                "POST /rpc/x/Get",
                &format!("e{i}"),
                &judged_with_recording(&base, &cand, &rec),
                None,
            );
        }
        let (_, ifs) = agg.finish(&th);
        let i = &ifs[0];
        assert_eq!(i.noise_samples.get("recording"), Some(&40));
        let find = |path: &str, change: Option<&str>| {
            i.fields
                .iter()
                .find(|p| p.path == path && p.change.as_deref() == change)
                .unwrap_or_else(|| panic!("{path} {change:?}: {:?}", i.fields))
        };
        // The stock drifted as a number; the candidate made it a string: a type change
        // that no amount of value drift explains.
        let stock = find("$.stock", Some("type"));
        assert!(stock.regression && stock.noise == 0, "{stock:?}");
        assert_eq!(stock.noise_source.as_deref(), Some("recording"));
        let price = find("$.price", None);
        assert!(price.regression, "{price:?}");
        // The request id differs on every answer, recorded or not: noise.
        let rid = find("$.rid", None);
        assert!(!rid.regression && rid.noise == 40, "{rid:?}");
        assert_eq!(i.counts.different, 40);
    }

    #[test]
    fn tolerated_times_are_noise_and_every_outcome_is_counted() {
        let mut a = Aggregator::new();
        let mut b = Aggregator::new();
        a.record("I", "1", &judged(vec![diff("$.ts", true)], None), None);
        a.record(
            "I",
            "2",
            &judged(vec![], None),
            Some(PairLatency {
                baseline_us: 10,
                candidate_us: 12,
            }),
        );
        b.record_skip("I", "side_effect");
        b.record(
            "I",
            "3",
            &Judgement {
                outcome: Outcome::MissingRule,
                diffs: vec![],
                probe: None,
                noise_source: None,
                error: None,
            },
            None,
        );
        b.record(
            "I",
            "4",
            &Judgement {
                outcome: Outcome::CandidateError,
                diffs: vec![],
                probe: None,
                noise_source: None,
                error: Some(FetchError {
                    kind: FetchErrorKind::Timeout,
                    message: "no answer in 1s".into(),
                }),
            },
            None,
        );
        a.merge(b);
        assert_eq!(a.total(), 5);
        let (s, ifs) = a.finish(&Thresholds::default());
        let c = s.counts;
        assert_eq!(
            (
                c.total,
                c.identical,
                c.noise_only,
                c.missing_rule,
                c.candidate_error,
                c.skipped
            ),
            (5, 1, 1, 1, 1, 1)
        );
        assert_eq!(s.skipped_reasons["side_effect"], 1);
        assert_eq!(ifs[0].missing_rule_samples, ["3"]);
        assert_eq!(ifs[0].errors[0].side, ErrorSide::Candidate);
        assert_eq!(ifs[0].fields[0].tolerated, 1);
        assert!(!ifs[0].fields[0].regression);
    }

    fn exchange(id: &str, body: &[u8]) -> crate::exchange::Exchange {
        crate::exchange::Exchange {
            id: id.into(),
            ts_us: 0,
            interface: None,
            tenant: None,
            request: crate::exchange::Request {
                method: "POST".into(),
                uri: "/x?y=1".into(),
                version: "HTTP/1.1".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: bytes::Bytes::copy_from_slice(body),
                body_truncated: false,
                tls: None,
            },
            response: None,
            latency_us: None,
        }
    }

    #[test]
    fn examples_keep_their_requests_and_a_missing_rule_the_candidates_answer() {
        let (mut a, mut b) = (Aggregator::new(), Aggregator::new());
        a.record_exchange(
            "I",
            &exchange("e1", b"{}"),
            &judged(vec![diff("$.a", false)], None),
            None,
        );
        // The same path again: its example is e1's, so e2's request is not kept.
        a.record_exchange(
            "I",
            &exchange("e2", b"{}"),
            &judged(vec![diff("$.a", false)], None),
            None,
        );
        b.record_exchange(
            "I",
            &exchange("e3", &[0, 1, 2]),
            &judged(vec![diff("$.b", false)], None),
            None,
        );
        // Another worker's example of a path the first already has is dropped at the merge.
        b.record_exchange(
            "I",
            &exchange("e4", b"[]"),
            &judged(vec![diff("$.a", false)], None),
            None,
        );
        let answer = |body: &str| Observed {
            status: 404,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into(),
            ..Observed::default()
        };
        b.record_missing_answer("I", "m1", &answer(r#"{"error":"no route"}"#));
        b.record_missing_answer("I", "m2", &answer("{}"));
        a.merge(b);
        let (_, ifs) = a.finish(&Thresholds::default());
        let i = &ifs[0];
        let kept: Vec<&str> = i.sample_requests.keys().map(String::as_str).collect();
        assert_eq!(kept, ["e1", "e3"]);
        let e1 = &i.sample_requests["e1"];
        assert_eq!((e1.method.as_str(), e1.uri.as_str()), ("POST", "/x?y=1"));
        assert_eq!(e1.body.as_deref(), Some("{}"));
        let e3 = &i.sample_requests["e3"];
        assert_eq!(
            (e3.body.as_deref(), e3.body_bytes, e3.body_binary),
            (None, 3, true)
        );
        let m = i.missing_rule_answer.as_ref().unwrap();
        assert_eq!(
            (m.id.as_str(), m.status, m.body.as_str()),
            ("m1", 404, r#"{"error":"no route"}"#)
        );
        // Results written before these fields load without them.
        let mut v = serde_json::to_value(i).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("sample_requests");
        o.remove("missing_rule_answer");
        let old: InterfaceResult = serde_json::from_value(v).unwrap();
        assert!(old.sample_requests.is_empty() && old.missing_rule_answer.is_none());
    }
}
