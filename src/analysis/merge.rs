//! Merges several results (the shards of one run, or runs over different recordings) into
//! one, exactly: counts add, path counts add, HDR histograms merge, samples are capped, and
//! then every flag, the `different`/`noise_only` split and the verdict are decided again on
//! the merged counts with [`decide`](super::decide), so the merged result is what one run
//! over all the exchanges would have said.
//!
//! Merging is associative (`merge(merge(a,b),c) == merge(a,merge(b,c))`): every field is
//! combined by an associative rule (sums, maxima, unions in input order, first-seen values,
//! prefix-capped concatenations), and nothing depends on when the merge ran.

use super::gate;
use super::latency::LatencyAgg;
use super::result::{
    ConnectionSetup, Counts, FilterCount, InterfaceResult, PathResult, RunInfo, RunResult,
    ShardInfo, Signature, RESULT_FORMAT,
};
use super::{decide, summarize, MAX_SAMPLES, MAX_SIGNATURES};
use std::collections::{BTreeMap, HashMap};

/// Why a set of results cannot be merged. Every variant names the inputs involved, by the
/// labels the caller gave (usually file names).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("nothing to merge: give at least one result")]
    Empty,
    /// Results decided under different thresholds cannot be decided together.
    #[error(
        "{first} and {other} were made with different thresholds (noise rule, latency rule, \
         time tolerance or gates); merge only results of runs with the same settings"
    )]
    Thresholds {
        /// The first input.
        first: String,
        /// The input whose thresholds differ.
        other: String,
    },
    /// A result that is not format 1, or whose counts do not add up.
    #[error("{input}: {message}")]
    Invalid {
        /// The input.
        input: String,
        /// What is wrong.
        message: String,
    },
    /// The same result given twice (the same file, or a copy of it).
    #[error(
        "{other} is the same result as {first} (made at {created}); merging it twice would \
         count each of its exchanges twice"
    )]
    Duplicate {
        /// The first input.
        first: String,
        /// The input that repeats it.
        other: String,
        /// When that result was made.
        created: String,
    },
    /// Shards that cannot belong to one split.
    #[error("{message}")]
    Shards {
        /// What does not fit, naming the inputs.
        message: String,
    },
}

/// Merges `inputs` (label, result) in the order given.
pub fn merge(inputs: &[(String, RunResult)]) -> Result<RunResult, MergeError> {
    let ((first_label, first), rest) = inputs.split_first().ok_or(MergeError::Empty)?;
    for (label, r) in inputs {
        validate(label, r)?;
    }
    for (label, r) in rest {
        if r.run.thresholds != first.run.thresholds {
            return Err(MergeError::Thresholds {
                first: first_label.clone(),
                other: label.clone(),
            });
        }
    }
    // A run's creation time (to the microsecond), recordings and targets identify it; a
    // shard's result already fails below as a repeated shard, with a clearer message.
    for (n, (label, r)) in inputs.iter().enumerate() {
        let same = inputs[..n].iter().find(|(_, o)| {
            r.run.shard.is_none()
                && o.run.shard.is_none()
                && o.run.created == r.run.created
                && o.run.recordings == r.run.recordings
                && o.run.baseline == r.run.baseline
                && o.run.candidate == r.run.candidate
        });
        if let Some((first, _)) = same {
            return Err(MergeError::Duplicate {
                first: first.clone(),
                other: label.clone(),
                created: r.run.created.clone(),
            });
        }
    }
    let shard = merge_shards(inputs)?;
    let th = first.run.thresholds.clone();

    let mut order: Vec<String> = Vec::new();
    let mut by_name: HashMap<String, IfaceMerge> = HashMap::new();
    for (label, r) in inputs {
        for i in &r.interfaces {
            let m = match by_name.get_mut(&i.interface) {
                Some(m) => m,
                None => {
                    order.push(i.interface.clone());
                    by_name
                        .entry(i.interface.clone())
                        .or_insert_with(|| IfaceMerge::new(&i.interface))
                }
            };
            m.add(i).map_err(|message| MergeError::Invalid {
                input: label.clone(),
                message: format!("interface {}: {message}", i.interface),
            })?;
        }
    }
    let mut interfaces: Vec<InterfaceResult> = order
        .into_iter()
        .filter_map(|name| by_name.remove(&name))
        .map(|m| m.finish(&th))
        .collect();
    interfaces.sort_by(|a, b| a.interface.cmp(&b.interface));

    let mut skipped_reasons: BTreeMap<String, u64> = BTreeMap::new();
    for (_, r) in inputs {
        for (k, v) in &r.summary.skipped_reasons {
            *skipped_reasons.entry(k.clone()).or_default() += v;
        }
    }
    let summary = summarize(&interfaces, skipped_reasons);
    Ok(gate::decided(summary, interfaces, merge_run(inputs, shard)))
}

fn validate(label: &str, r: &RunResult) -> Result<(), MergeError> {
    let invalid = |message: String| MergeError::Invalid {
        input: label.to_string(),
        message,
    };
    if r.shadowdiff_result != RESULT_FORMAT {
        return Err(invalid(format!(
            "result format {} is not supported (expected {RESULT_FORMAT})",
            r.shadowdiff_result
        )));
    }
    if !r.summary.counts.is_consistent() {
        return Err(invalid(
            "summary total is not the sum of its outcome counts".into(),
        ));
    }
    if let Some(i) = r.interfaces.iter().find(|i| !i.counts.is_consistent()) {
        return Err(invalid(format!(
            "interface {}: total is not the sum of its outcome counts",
            i.interface
        )));
    }
    if let Some(s) = &r.run.shard {
        if s.count == 0 || s.indices.iter().any(|k| *k >= s.count) {
            return Err(invalid(format!("shard {} is out of range", s.label())));
        }
    }
    Ok(())
}

/// All sharded, of the same recordings, with one N and disjoint indices; or none sharded.
fn merge_shards(inputs: &[(String, RunResult)]) -> Result<Option<ShardInfo>, MergeError> {
    let sharded: Vec<&(String, RunResult)> = inputs
        .iter()
        .filter(|(_, r)| r.run.shard.is_some())
        .collect();
    if sharded.is_empty() {
        return Ok(None);
    }
    if let Some((plain, _)) = inputs.iter().find(|(_, r)| r.run.shard.is_none()) {
        let (sharded_label, _) = sharded[0];
        return Err(MergeError::Shards {
            message: format!(
                "{plain} is an unsharded run but {sharded_label} is a shard; merge the shards \
                 of one run, or unsharded runs, not both"
            ),
        });
    }
    // A shard owns its share of one recording's ids: shards of another capture would fill
    // the split with exchanges the missing shards never had, and call it complete. The
    // order the files were named in does not change which exchanges a shard owns.
    let (first_label, first) = sharded[0];
    // Compared by file name: shard jobs run from other directories or mounts name the same
    // capture by another path (`rec.jsonl`, `./rec.jsonl`, `/data/rec.jsonl`).
    let recordings = |r: &RunResult| -> Vec<String> {
        let mut v: Vec<String> = r
            .run
            .recordings
            .iter()
            .map(|p| {
                std::path::Path::new(p)
                    .file_name()
                    .map_or_else(|| p.clone(), |n| n.to_string_lossy().into_owned())
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };
    for (label, r) in &sharded[1..] {
        if recordings(r) != recordings(first) {
            return Err(MergeError::Shards {
                message: format!(
                    "{first_label} and {label} are shards of different recordings ({first_label}: {}; \
                     {label}: {}); merge the shards of one run over the same recordings",
                    first.run.recordings.join(", "),
                    r.run.recordings.join(", ")
                ),
            });
        }
    }
    let mut count: Option<(u32, &str)> = None;
    let mut owner: BTreeMap<u32, &str> = BTreeMap::new();
    let mut owned = 0u64;
    for (label, r) in &sharded {
        let Some(s) = &r.run.shard else { continue };
        match count {
            None => count = Some((s.count, label)),
            Some((n, first)) if n != s.count => {
                return Err(MergeError::Shards {
                    message: format!(
                        "{first} is split into {n} shards but {label} into {}; merge shards of one split",
                        s.count
                    ),
                })
            }
            Some(_) => {}
        }
        for k in &s.indices {
            if let Some(other) = owner.insert(*k, label) {
                return Err(MergeError::Shards {
                    message: format!(
                        "shard {k}/{} is in both {other} and {label}; each shard may be merged once",
                        s.count
                    ),
                });
            }
        }
        owned += s.owned;
    }
    Ok(count.map(|(n, _)| ShardInfo {
        count: n,
        indices: owner.keys().copied().collect(),
        owned,
    }))
}

/// Adds `items` to `list`, keeping first occurrences in order.
fn union_into(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for it in items {
        if !list.contains(&it) {
            list.push(it);
        }
    }
}

/// Joins distinct values with `, ` (splitting already joined ones, so nesting merges gives
/// the same string as merging flat).
fn union_joined<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        union_into(&mut out, v.split(", ").map(str::to_string));
    }
    out.join(", ")
}

fn merge_run(inputs: &[(String, RunResult)], shard: Option<ShardInfo>) -> RunInfo {
    let runs: Vec<&RunInfo> = inputs.iter().map(|(_, r)| &r.run).collect();
    let mut recordings = Vec::new();
    let mut warnings = Vec::new();
    let mut ready_ms: BTreeMap<String, u64> = BTreeMap::new();
    let mut connections: BTreeMap<String, ConnectionSetup> = BTreeMap::new();
    let mut filters: Vec<FilterCount> = Vec::new();
    let mut exchanges_read = 0u64;
    for r in &runs {
        union_into(&mut recordings, r.recordings.iter().cloned());
        union_into(&mut warnings, r.warnings.iter().cloned());
        for (k, v) in &r.ready_ms {
            let e = ready_ms.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
        for (k, v) in &r.connections {
            connections.entry(k.clone()).or_default().merge(v);
        }
        // Filters run after the shard split, so each shard's funnel counts only its own
        // exchanges and the funnels add up exactly.
        for f in &r.filters {
            match filters.iter_mut().find(|g| g.filter == f.filter) {
                Some(g) => {
                    g.kept += f.kept;
                    g.excluded += f.excluded;
                }
                None => filters.push(f.clone()),
            }
        }
        // Every shard reads the whole recording; what a merged result read is what its
        // shards owned, so four merged shards report the recording once, not four times.
        exchanges_read += match &r.shard {
            Some(s) => s.owned,
            None => r.exchanges_read,
        };
    }
    let secondary = {
        let s: Vec<&str> = runs.iter().filter_map(|r| r.secondary.as_deref()).collect();
        (!s.is_empty()).then(|| union_joined(s.into_iter()))
    };
    RunInfo {
        // The newest input's time, not the time of merging: merging the same inputs twice
        // gives the same result.
        created: runs
            .iter()
            .map(|r| r.created.as_str())
            .max()
            .unwrap_or_default()
            .to_string(),
        tool_version: union_joined(runs.iter().map(|r| r.tool_version.as_str())),
        recordings,
        baseline: union_joined(runs.iter().map(|r| r.baseline.as_str())),
        candidate: union_joined(runs.iter().map(|r| r.candidate.as_str())),
        secondary,
        exchanges_read,
        // Shards run side by side: the merged run took as long as the slowest one.
        duration_ms: runs.iter().map(|r| r.duration_ms).max().unwrap_or(0),
        pacing: union_joined(runs.iter().map(|r| r.pacing.as_str())),
        ready_ms,
        connections,
        thresholds: runs
            .first()
            .map(|r| r.thresholds.clone())
            .unwrap_or_default(),
        warnings,
        filters,
        shard,
        // A shard that stopped early leaves the merged result incomplete too.
        incomplete: {
            let why: Vec<&str> = runs
                .iter()
                .filter_map(|r| r.incomplete.as_deref())
                .collect();
            (!why.is_empty()).then(|| why.join("; "))
        },
    }
}

fn push_samples(into: &mut Vec<String>, from: &[String]) {
    for s in from {
        if into.len() >= MAX_SAMPLES {
            break;
        }
        if !into.contains(s) {
            into.push(s.clone());
        }
    }
}

/// One interface being merged.
struct IfaceMerge {
    r: InterfaceResult,
    latency: LatencyAgg,
    signatures: Vec<Signature>,
    sig_index: HashMap<Vec<String>, usize>,
}

impl IfaceMerge {
    fn new(name: &str) -> Self {
        IfaceMerge {
            r: InterfaceResult {
                interface: name.to_string(),
                counts: Counts::default(),
                compared: 0,
                probed: 0,
                noise_samples: Default::default(),
                unmeasured: 0,
                side_effecting: 0,
                status: Vec::new(),
                fields: Vec::new(),
                headers: Vec::new(),
                errors: Vec::new(),
                missing_rule_samples: Vec::new(),
                missing_rule_answer: None,
                sample_requests: Default::default(),
                latency: LatencyAgg::default().to_result(&Default::default()),
                signatures: Vec::new(),
                signature_overflow: 0,
                tenants: Default::default(),
                resent: Default::default(),
            },
            latency: LatencyAgg::default(),
            signatures: Vec::new(),
            sig_index: HashMap::new(),
        }
    }

    fn add(&mut self, i: &InterfaceResult) -> Result<(), String> {
        let r = &mut self.r;
        // `decide` recomputes different and noise_only from the signatures; adding them
        // here is harmless because it subtracts what it replaces.
        r.counts.merge(&i.counts);
        r.compared += i.compared;
        r.probed += i.probed;
        r.unmeasured += i.unmeasured;
        r.side_effecting += i.side_effecting;
        for (source, n) in &i.noise_samples {
            *r.noise_samples.entry(source.clone()).or_default() += n;
        }
        merge_paths(&mut r.status, &i.status);
        merge_paths(&mut r.fields, &i.fields);
        merge_paths(&mut r.headers, &i.headers);
        for e in &i.errors {
            match r
                .errors
                .iter_mut()
                .find(|x| x.side == e.side && x.kind == e.kind)
            {
                Some(mine) => {
                    mine.count += e.count;
                    push_samples(&mut mine.samples, &e.samples);
                }
                None => {
                    let mut e = e.clone();
                    e.samples.truncate(MAX_SAMPLES);
                    r.errors.push(e);
                }
            }
        }
        push_samples(&mut r.missing_rule_samples, &i.missing_rule_samples);
        if r.missing_rule_answer.is_none() {
            r.missing_rule_answer = i.missing_rule_answer.clone();
        }
        for (id, req) in &i.sample_requests {
            r.sample_requests
                .entry(id.clone())
                .or_insert_with(|| req.clone());
        }
        for s in &i.signatures {
            match self.sig_index.get(&s.keys) {
                Some(&at) => self.signatures[at].count += s.count,
                None if self.signatures.len() < MAX_SIGNATURES => {
                    self.sig_index.insert(s.keys.clone(), self.signatures.len());
                    self.signatures.push(s.clone());
                }
                None => r.signature_overflow += s.count,
            }
        }
        r.signature_overflow += i.signature_overflow;
        for (t, n) in &i.tenants {
            super::count_tenant(&mut r.tenants, t, *n);
        }
        for (side, n) in &i.resent {
            *r.resent.entry(side.clone()).or_default() += n;
        }
        let lat = LatencyAgg::from_result(&i.latency)?;
        self.latency.merge(&lat);
        Ok(())
    }

    fn finish(self, th: &super::result::Thresholds) -> InterfaceResult {
        let mut r = self.r;
        r.latency = self.latency.to_result(th);
        r.signatures = self.signatures;
        r.signatures
            .sort_by(|x, y| y.count.cmp(&x.count).then(x.keys.cmp(&y.keys)));
        r.errors.sort_by_key(|e| (e.side, e.kind));
        super::keep_example_requests(&mut r);
        decide(&mut r, th);
        r
    }
}

fn merge_paths(into: &mut Vec<PathResult>, from: &[PathResult]) {
    for p in from {
        match into
            .iter_mut()
            .find(|x| x.path == p.path && x.change == p.change)
        {
            Some(mine) => {
                mine.raw += p.raw;
                mine.noise += p.noise;
                mine.tolerated += p.tolerated;
                mine.volatile_like += p.volatile_like;
                if mine.volatile_kind.is_none() {
                    mine.volatile_kind = p.volatile_kind.clone();
                }
                push_samples(&mut mine.samples, &p.samples);
                if mine.example.is_none() {
                    mine.example = p.example.clone();
                }
            }
            None => {
                let mut p = p.clone();
                p.samples.truncate(MAX_SAMPLES);
                into.push(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::result::{RunInfo, Thresholds};
    use crate::analysis::{Aggregator, PairLatency};
    use crate::compare::{DiffKind, Difference, FetchError, FetchErrorKind, Judgement, Outcome};
    use crate::replay::select::Shard;

    fn diff(path: &str) -> Difference {
        Difference {
            kind: DiffKind::Body,
            path: path.into(),
            baseline: Some("1".into()),
            candidate: Some("2".into()),
            tolerated: false,
        }
    }

    /// Records exchange `i` of a synthetic run: three interfaces, a volatile field that is
    /// noise, a real price change on every fifth exchange, a rare missing rule, a few
    /// candidate timeouts, skipped writes, and latencies with a slower candidate on one
    /// interface.
    fn record(agg: &mut Aggregator, i: u64) {
        let id = format!("e{i:05}");
        let iface = ["GET /a/{id}", "GET /b", "POST /c"][(i % 3) as usize];
        if iface == "POST /c" {
            agg.record_skip(iface, "side_effect");
            return;
        }
        let j = if i % 97 == 0 {
            Judgement {
                outcome: Outcome::MissingRule,
                diffs: vec![],
                probe: None,
                noise_source: None,
                error: None,
            }
        } else if i % 41 == 0 {
            Judgement {
                outcome: Outcome::CandidateError,
                diffs: vec![],
                probe: None,
                noise_source: None,
                error: Some(FetchError {
                    kind: FetchErrorKind::Timeout,
                    message: "no answer in 1s".into(),
                }),
            }
        } else {
            let mut diffs = vec![diff("$.request_id")];
            if i % 5 == 0 && iface == "GET /a/{id}" {
                diffs.push(diff(&format!("$.items[{}].price", i % 4)));
            }
            Judgement {
                outcome: Outcome::Different,
                diffs,
                probe: Some(vec![diff("$.request_id")]),
                noise_source: None,
                error: None,
            }
        };
        let base = 1_000 + (i * 37) % 5_000;
        let slower = if iface == "GET /b" { 9_000 } else { 0 };
        let lat = PairLatency {
            baseline_us: base,
            candidate_us: base + slower + (i % 7) * 30,
        };
        agg.record(iface, &id, &j, Some(lat));
    }

    fn result_of(agg: Aggregator, shard: Option<Shard>, owned: u64, read: u64) -> RunResult {
        let th = Thresholds::default();
        let (summary, interfaces) = agg.finish(&th);
        gate::decided(
            summary,
            interfaces,
            RunInfo {
                created: "2026-11-02T10:00:00Z".into(),
                tool_version: "0.1.0".into(),
                recordings: vec!["cap.jsonl".into()],
                baseline: "http://b".into(),
                candidate: "http://c".into(),
                exchanges_read: read,
                thresholds: th,
                shard: shard.map(|s| ShardInfo {
                    count: s.count,
                    indices: vec![s.index],
                    owned,
                }),
                ..RunInfo::default()
            },
        )
    }

    const N: u64 = 1200;

    fn shards(n: u32) -> Vec<(String, RunResult)> {
        (0..n)
            .map(|k| {
                let shard = Shard { index: k, count: n };
                let mut agg = Aggregator::new();
                let mut owned = 0;
                for i in 0..N {
                    if shard.owns(&format!("e{i:05}")) {
                        record(&mut agg, i);
                        owned += 1;
                    }
                }
                (
                    format!("shard-{k}.json"),
                    result_of(agg, Some(shard), owned, N),
                )
            })
            .collect()
    }

    fn unsharded() -> RunResult {
        let mut agg = Aggregator::new();
        for i in 0..N {
            record(&mut agg, i);
        }
        result_of(agg, None, N, N)
    }

    #[test]
    fn merged_shards_equal_one_run() {
        let one = unsharded();
        let merged = merge(&shards(4)).unwrap();
        assert_eq!(merged.verdict, one.verdict);
        assert_eq!(merged.gate_failures, one.gate_failures);
        assert_eq!(merged.summary, one.summary);
        assert_eq!(merged.interfaces.len(), one.interfaces.len());
        for (m, o) in merged.interfaces.iter().zip(&one.interfaces) {
            assert_eq!(m.interface, o.interface);
            assert_eq!(m.counts, o.counts, "{}", m.interface);
            assert_eq!((m.compared, m.probed), (o.compared, o.probed));
            assert_eq!(m.problems(), o.problems(), "{}", m.interface);
            let strip = |p: &[PathResult]| {
                p.iter()
                    .map(|p| (p.path.clone(), p.raw, p.noise, p.tolerated, p.regression))
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(&m.fields), strip(&o.fields));
            assert_eq!(m.signatures, o.signatures);
            // Histograms merge exactly: same counts, percentiles, max, and serialized form.
            assert_eq!(m.latency, o.latency, "{}", m.interface);
            assert_eq!(
                m.errors.iter().map(|e| e.count).sum::<u64>(),
                o.errors.iter().map(|e| e.count).sum::<u64>()
            );
        }
        let b = merged
            .interfaces
            .iter()
            .find(|i| i.interface == "GET /b")
            .unwrap();
        assert!(b.latency.regression, "the slower interface stays slower");
        let shard = merged.run.shard.as_ref().unwrap();
        assert_eq!(
            (shard.count, shard.indices.clone(), shard.owned),
            (4, vec![0, 1, 2, 3], N)
        );
        assert_eq!(merged.run.exchanges_read, N);
        assert!(shard.missing().is_empty());
    }

    #[test]
    fn merging_is_associative_and_order_of_nesting_does_not_matter() {
        let s = shards(3);
        let label = |n: &str, r: RunResult| (n.to_string(), r);
        let ab = merge(&s[..2]).unwrap();
        let bc = merge(&s[1..]).unwrap();
        let left = merge(&[label("ab", ab), s[2].clone()]).unwrap();
        let right = merge(&[s[0].clone(), label("bc", bc)]).unwrap();
        assert_eq!(left, right);
        assert_eq!(left, merge(&s).unwrap());
    }

    #[test]
    fn refuses_what_cannot_be_one_run() {
        let mut s = shards(2);
        s[1].1.run.thresholds.latency_relative = 0.5;
        let e = merge(&s).unwrap_err();
        assert_eq!(
            e,
            MergeError::Thresholds {
                first: "shard-0.json".into(),
                other: "shard-1.json".into()
            }
        );
        let s = shards(2);
        let e = merge(&[s[0].clone(), s[0].clone()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("shard 0/2 is in both shard-0.json and shard-0.json"),
            "{e}"
        );
        let e = merge(&[s[0].clone(), ("all.json".into(), unsharded())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("all.json is an unsharded run"), "{e}");
        let four = shards(4);
        let e = merge(&[s[0].clone(), four[1].clone()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("split into 2 shards but shard-1.json into 4"),
            "{e}"
        );
        let mut broken = unsharded();
        broken.summary.counts.total += 1;
        let e = merge(&[("bad.json".into(), broken)])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.json: summary total"), "{e}");
        assert_eq!(merge(&[]).unwrap_err(), MergeError::Empty);
    }

    #[test]
    fn connections_of_the_shards_add_up_and_the_longest_setup_is_kept() {
        let mut s = shards(2);
        for (k, (_, r)) in s.iter_mut().enumerate() {
            let k = k as u64;
            r.run.connections.insert(
                "candidate".into(),
                ConnectionSetup {
                    opened: 2 + k,
                    setup_us_total: 1_000 * (k + 1),
                    setup_us_max: 700 + 100 * k,
                },
            );
        }
        let merged = merge(&s).unwrap();
        assert_eq!(
            merged.run.connections["candidate"],
            ConnectionSetup {
                opened: 5,
                setup_us_total: 3_000,
                setup_us_max: 800,
            }
        );
    }

    #[test]
    fn shards_of_different_recordings_are_refused() {
        let s = shards(2);
        let mut other = s[1].clone();
        other.1.run.recordings = vec!["other-capture.jsonl".into()];
        let e = merge(&[s[0].clone(), other]).unwrap_err().to_string();
        assert_eq!(
            e,
            "shard-0.json and shard-1.json are shards of different recordings \
             (shard-0.json: cap.jsonl; shard-1.json: other-capture.jsonl); merge the shards of \
             one run over the same recordings"
        );
        // The same recordings named in another order are the same exchanges.
        let (mut a, mut b) = (s[0].clone(), s[1].clone());
        a.1.run.recordings = vec!["x.jsonl".into(), "y.jsonl".into()];
        b.1.run.recordings = vec!["y.jsonl".into(), "x.jsonl".into()];
        assert!(merge(&[a.clone(), b.clone()]).is_ok());
        // So are they named by other paths, from shard jobs in other directories.
        b.1.run.recordings = vec!["./y.jsonl".into(), "/data/x.jsonl".into()];
        assert!(merge(&[a, b]).is_ok());
        // Unsharded runs of different captures (two regions) still add up.
        let one = unsharded();
        let mut region = one.clone();
        region.run.recordings = vec!["eu.jsonl".into()];
        let two = merge(&[("us.json".into(), one), ("eu.json".into(), region)]).unwrap();
        assert_eq!(two.run.recordings, ["cap.jsonl", "eu.jsonl"]);
    }

    #[test]
    fn partial_merge_says_which_shards_are_missing() {
        let s = shards(4);
        let m = merge(&[s[0].clone(), s[2].clone()]).unwrap();
        let info = m.run.shard.unwrap();
        assert_eq!(info.missing(), [1, 3]);
        assert_eq!(info.label(), "0,2/4");
        assert!(m.summary.counts.total < N);
    }

    #[test]
    fn unsharded_runs_add_up() {
        let one = unsharded();
        let mut other = one.clone();
        other.run.created = "2026-11-03T10:00:00.000001Z".into();
        let two = merge(&[("a".into(), one.clone()), ("b".into(), other)]).unwrap();
        assert_eq!(two.summary.counts.total, 2 * one.summary.counts.total);
        assert_eq!(two.run.exchanges_read, 2 * N);
        assert!(two.run.shard.is_none());
        let samples = &two.interfaces[0].fields[0].samples;
        assert!(samples.len() <= MAX_SAMPLES);
    }

    #[test]
    fn the_same_result_twice_is_refused() {
        let one = unsharded();
        let e = merge(&[("a.json".into(), one.clone()), ("b.json".into(), one)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.json is the same result as a.json") && e.contains("twice"),
            "{e}"
        );
    }
}
