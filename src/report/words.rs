//! The sentences every report format shares, so the terminal, HTML, Markdown and JUnit
//! outputs say the same thing in the same words: the headline, counts with their nouns,
//! milliseconds, shares, and what the selection (shard, filters) kept.

use crate::analysis::result::{
    ErrorSide, GatewayWide, InterfaceResult, LatencyResult, PathResult, RunResult, Trend,
    TrendItem, TrendState, Verdict, MEDIAN_RULE, TAIL_RULE, UNSENDABLE,
};
use crate::compare::NoiseSource;

pub use crate::analysis::gate::{count_of, interface_names, MAX_NAMES};

/// Why exchanges were skipped as `unsendable`, with the first one's id and reason: `None`
/// when none were.
pub fn unsendable_note(r: &RunResult) -> Option<String> {
    if !r.summary.skipped_reasons.contains_key(UNSENDABLE) {
        return None;
    }
    let first = r
        .interfaces
        .iter()
        .flat_map(|i| &i.errors)
        .find(|e| e.side == ErrorSide::Request)?;
    let id = first.samples.first().map_or("", String::as_str);
    Some(format!(
        "unsendable: the recorded request cannot go on an HTTP connection (exchange {id}: {})",
        first.message
    ))
}

/// One line per side on the connections it opened and their setup, e.g. `candidate: 4
/// connections opened, setup (connect and TLS handshake) 2.1 ms on average, longest 3.0
/// ms, apart from latency`; only for runs with an `https://` target, where a handshake
/// is a cost worth seeing.
pub fn connection_notes(r: &RunResult) -> Vec<String> {
    let run = &r.run;
    let tls = [
        Some(&run.baseline),
        Some(&run.candidate),
        run.secondary.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|u| u.starts_with("https://"));
    if !tls {
        return Vec::new();
    }
    run.connections
        .iter()
        .filter(|(_, c)| c.opened > 0)
        .map(|(side, c)| {
            format!(
                "{side}: {} opened, setup (connect and TLS handshake) {} on average, longest {}, \
                 apart from latency",
                count_of(c.opened, "connection", "connections"),
                ms(c.setup_us_total / c.opened),
                ms(c.setup_us_max)
            )
        })
        .collect()
}

/// Share of a side's requests re-sent above which the note says the server closes
/// connections unusually often (idle keep-alive connections closed now and then stay below).
pub const RESENT_NOTABLE: f64 = 0.05;

/// One line per side with requests re-sent after the server closed a kept-alive connection
/// unanswered, e.g. `candidate: 100 requests re-sent after the connection closed unanswered`;
/// empty when none were. A share above [`RESENT_NOTABLE`] of the exchanges sent says so.
pub fn resent_notes(r: &RunResult) -> Vec<String> {
    let c = &r.summary.counts;
    let sent = c.total - c.skipped;
    r.summary
        .resent
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(side, n)| {
            let mut line = format!(
                "{side}: {} re-sent after the connection closed unanswered",
                count_of(*n, "request", "requests")
            );
            if sent > 0 && *n as f64 > RESENT_NOTABLE * sent as f64 {
                line.push_str(&format!(
                    " ({} of {} sent): the {side} closes kept-alive connections \
                     instead of answering unusually often",
                    pct(*n, sent),
                    count_of(sent, "exchange", "exchanges")
                ));
            }
            line
        })
        .collect()
}

/// How often the noise probe (the second baseline call) failed, with the first failure:
/// those exchanges were judged without a noise sample, so their differences had less to be
/// explained by. `None` when it never failed.
pub fn probe_failures(r: &RunResult) -> Option<String> {
    let mut failed = r
        .interfaces
        .iter()
        .flat_map(|i| i.errors.iter().map(move |e| (i, e)))
        .filter(|(_, e)| e.side == ErrorSide::Secondary);
    let (i, first) = failed.next()?;
    let total = first.count + failed.map(|(_, e)| e.count).sum::<u64>();
    let id = first.samples.first().map_or("", String::as_str);
    Some(format!(
        "the noise probe failed, or answered with another status than the baseline, for {}: their headers and fields were judged without a noise sample (first: {} {id}, {}: {})",
        count_of(total, "exchange", "exchanges"),
        i.interface,
        first.kind,
        first.message
    ))
}

/// Interfaces whose candidate looks slower by the latency rule's margins, but over fewer
/// pairs than the rule needs, so they are not flagged: rare interfaces are where a gateway
/// change hides, and "ok" would read as judged. `None` when there are none.
pub fn slower_on_few_pairs(r: &RunResult) -> Option<String> {
    let th = &r.run.thresholds;
    let few: Vec<String> = r
        .interfaces
        .iter()
        .filter(|i| {
            let l = &i.latency;
            let median = l.paired.median_diff_us;
            l.paired.count > 0
                && l.paired.count < th.latency_min_samples
                && median > 0
                && median as u64 > th.latency_absolute_us
                && median as f64 > th.latency_relative * l.baseline.p50_us as f64
        })
        .map(|i| {
            format!(
                "{} (p50 {} → {} ms over {})",
                i.interface,
                ms(i.latency.baseline.p50_us),
                ms(i.latency.candidate.p50_us),
                count_of(i.latency.paired.count, "pair", "pairs")
            )
        })
        .collect();
    if few.is_empty() {
        return None;
    }
    let shown = few.len().min(10);
    let more = if few.len() > shown {
        format!(" and {} more", few.len() - shown)
    } else {
        String::new()
    };
    Some(format!(
        "slower, but over fewer than {} pairs, so not judged: {}{more}",
        th.latency_min_samples,
        few[..shown].join(", ")
    ))
}

/// Which latency rules found an interface slower, as every report says it: `median rule`,
/// `tail rule (p99 34.0 → 409.0 ms)`, or both joined by `and`. A result written before
/// the tail rule names no rule; its regression was the median rule's.
pub fn slower_by(l: &LatencyResult) -> String {
    let mut said = Vec::new();
    if l.rules.iter().any(|r| r == MEDIAN_RULE) || (l.regression && l.rules.is_empty()) {
        said.push("median rule".to_string());
    }
    if l.rules.iter().any(|r| r == TAIL_RULE) {
        said.push(format!(
            "tail rule (p99 {} → {} ms)",
            ms(l.baseline.p99_us),
            ms(l.candidate.p99_us)
        ));
    }
    said.join(" and ")
}

/// Milliseconds with one decimal, from microseconds.
pub fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// Signed milliseconds with one decimal from signed microseconds: `+40.6`, `-1.2`, and
/// `0.0` for anything that rounds to zero (never `-0.0`).
pub fn signed_ms(us: i64) -> String {
    let v = us as f64 / 1000.0;
    if (v * 10.0).round() == 0.0 {
        "0.0".into()
    } else {
        format!("{v:+.1}")
    }
}

/// A share as a percentage with up to two decimals (`12.5%`, `0.03%`, `100%`).
pub fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    let p = part as f64 * 100.0 / whole as f64;
    let s = format!("{p:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// `5 s` for whole seconds, else `1500 ms`.
pub fn duration_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// `2026-11-02 10:00:00 UTC` from an RFC 3339 time; the input as is when it does not parse.
pub fn readable_time(rfc3339: &str) -> String {
    match crate::recording::format::parse_ts_us(rfc3339) {
        Some(us) => {
            let t = crate::recording::format::format_ts_us(us);
            match (t.get(..10), t.get(11..19)) {
                (Some(day), Some(time)) => format!("{day} {time} UTC"),
                _ => t,
            }
        }
        None => rfc3339.to_string(),
    }
}

/// Interfaces with at least one problem.
pub fn flagged(r: &RunResult) -> u64 {
    r.interfaces
        .iter()
        .filter(|i| !i.problems().is_empty())
        .count() as u64
}

/// The one-line verdict: `FAIL: 3 interfaces need attention`, `PASS: the candidate answered
/// like the baseline`, ...
pub fn headline(r: &RunResult) -> String {
    let n = flagged(r);
    let c = &r.summary.counts;
    // A pass over nothing is not evidence: say so instead of "answered like the baseline".
    if r.verdict == Verdict::Pass && n == 0 && c.total == c.skipped {
        return if c.total == 0 {
            "PASS: but no exchange was replayed".into()
        } else {
            format!(
                "PASS: but nothing was compared ({} skipped)",
                count_of(c.total, "exchange", "exchanges")
            )
        };
    }
    let sent = c.total - c.skipped;
    if sent > 0 && c.baseline_error == sent {
        let verdict = if r.verdict == Verdict::Pass {
            "PASS"
        } else {
            "FAIL"
        };
        return format!("{verdict}: nothing was compared, the baseline gave no usable answer");
    }
    match (r.verdict, n) {
        (Verdict::Fail, 0) if r.gate_failures.is_empty() => "FAIL: a gate tripped".into(),
        (Verdict::Fail, 0) => format!(
            "FAIL: {} tripped",
            count_of(r.gate_failures.len() as u64, "gate", "gates")
        ),
        (Verdict::Fail, _) => format!(
            "FAIL: {} attention",
            count_of(n, "interface needs", "interfaces need")
        ),
        (Verdict::Pass, 0) => "PASS: the candidate answered like the baseline".into(),
        (Verdict::Pass, _) => format!(
            "PASS: no gate tripped, but {} (see below)",
            count_of(n, "interface needs attention", "interfaces need attention")
        ),
    }
}

/// What the shard split and the filters kept, one line each; empty when everything read was
/// replayed.
pub fn selection_lines(r: &RunResult) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = &r.run.shard {
        let which = if s.indices.len() == 1 {
            format!("shard {}", s.label())
        } else {
            format!("shards {} merged", s.label())
        };
        let mut line = format!(
            "{which}: {} of the recording",
            count_of(s.owned, "exchange", "exchanges")
        );
        let missing = s.missing();
        if s.indices.len() > 1 && !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(u32::to_string).collect();
            line.push_str(&format!(
                " (incomplete: shard {} of {} missing)",
                list.join(", "),
                s.count
            ));
        }
        out.push(line);
    }
    for f in &r.run.filters {
        out.push(format!(
            "{}: kept {} of {}",
            f.filter,
            f.kept,
            count_of(f.kept + f.excluded, "exchange", "exchanges")
        ));
    }
    out
}

/// `1 new, 2 still failing, 1 fixed` (not seen only when there are any).
pub fn trend_counts<'a>(items: impl Iterator<Item = &'a TrendItem> + Clone) -> String {
    let mut parts = Vec::new();
    for st in [
        TrendState::New,
        TrendState::StillFailing,
        TrendState::Fixed,
        TrendState::NotSeen,
    ] {
        let n = items.clone().filter(|i| i.state == st).count();
        if n > 0 || st != TrendState::NotSeen {
            parts.push(format!("{n} {}", st.label()));
        }
    }
    parts.join(", ")
}

/// `since last-night.json (2026-11-01T02:00:00Z, fail): interfaces 1 new, 2 still failing,
/// 1 fixed; paths 0 new, 1 still failing, 0 fixed`.
pub fn trend_line(t: &Trend) -> String {
    let verdict = match t.previous_verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
    };
    format!(
        "since {} ({}, {verdict}): interfaces {}; paths {}",
        t.previous,
        t.previous_created,
        trend_counts(t.interfaces.iter()),
        trend_counts(t.paths.iter()),
    )
}

/// How a regressing path's noise was measured, for the line that lists it: which source
/// and how often it differed there, or that nothing measured it.
pub fn noise_phrase(i: &InterfaceResult, path: &PathResult) -> String {
    if i.probed == 0 {
        return "noise not measured: no noise sample".to_string();
    }
    let sources: Vec<&str> = crate::analysis::noise_sources(i)
        .split('+')
        .filter_map(NoiseSource::from_name)
        .map(NoiseSource::describe)
        .collect();
    format!(
        "noise from {}: {} of {}",
        sources.join(" and "),
        path.noise,
        count_of(i.probed, "sample", "samples")
    )
}

/// The verdict block's line on exchanges whose noise nothing measured: their every
/// difference counted in full, so a pass or a fail there rests on no measure of noise.
pub fn unmeasured_note(r: &RunResult) -> Option<String> {
    let compared: u64 = r.interfaces.iter().map(|i| i.compared).sum();
    let unmeasured: Vec<&InterfaceResult> =
        r.interfaces.iter().filter(|i| i.unmeasured > 0).collect();
    let n: u64 = unmeasured.iter().map(|i| i.unmeasured).sum();
    if n == 0 {
        return None;
    }
    Some(format!(
        "noise not measured for {} of {} compared ({}): no second call and no recorded \
         answer, so every difference there counts; declare reads with --safe GLOB, or give \
         a second baseline with --secondary URL, to measure it",
        count_of(n, "exchange", "exchanges"),
        compared,
        interface_names(unmeasured.into_iter()).1
    ))
}

/// Interfaces the config line of [`side_effect_note`] declares at most.
const MAX_DECLARED: usize = 8;

/// The note on interfaces that may change state: never asked twice, so their noise came from
/// the recording at best; for those whose name reads like a read, the line that declares
/// them safe.
pub fn side_effect_note(r: &RunResult) -> Option<String> {
    let writes: Vec<&InterfaceResult> = r
        .interfaces
        .iter()
        .filter(|i| i.side_effecting > 0)
        .collect();
    if writes.is_empty() {
        return None;
    }
    let reads: Vec<String> = writes
        .iter()
        .filter(|i| crate::safety::reads_like_read(&i.interface))
        .map(|i| i.interface.clone())
        .collect();
    let mut text = format!(
        "{} may change state and {} never asked twice for noise: {}",
        count_of(writes.len() as u64, "interface", "interfaces"),
        if writes.len() == 1 { "was" } else { "were" },
        interface_names(writes.iter().copied()).1
    );
    if !reads.is_empty() {
        let shown: Vec<String> = reads.iter().take(MAX_DECLARED).cloned().collect();
        text.push_str(&format!(
            "; {} like a read: if so, add to the config {} (or pass --safe for each)",
            count_of(reads.len() as u64, "name reads", "names read"),
            crate::safety::declare_line(&shown)
        ));
    }
    Some(text)
}

/// The lines that belong with the verdict in every report: what no noise sample measured,
/// and each change told once for the whole gateway.
pub fn verdict_notes(r: &RunResult) -> Vec<String> {
    unmeasured_note(r)
        .into_iter()
        .chain(r.gateway_wide.iter().map(gateway_wide_sentence))
        .collect()
}

/// The sentence reports print for a gateway-wide header change, with the one rule that
/// accepts it.
pub fn gateway_wide_sentence(g: &GatewayWide) -> String {
    let name = g.header.split(' ').next().unwrap_or(&g.header);
    format!(
        "gateway-wide: header {} changed the same way on {} of {} compared interfaces ({} → {}); \
         if that is the new gateway's own, accept it once with [[ignore]] headers = [{name:?}]",
        g.header,
        g.interfaces.len(),
        g.of,
        g.baseline,
        g.candidate
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_drop_useless_zeros() {
        assert_eq!(pct(1, 8), "12.5%");
        assert_eq!(pct(3, 10_000), "0.03%");
        assert_eq!(pct(5, 5), "100%");
        assert_eq!(pct(0, 5), "0%");
        assert_eq!(pct(1, 0), "-");
        assert_eq!(signed_ms(-40), "0.0");
        assert_eq!(signed_ms(40_600), "+40.6");
        assert_eq!(signed_ms(-1_250), "-1.2");
    }

    #[test]
    fn a_pass_over_nothing_says_so() {
        let mut r = crate::report::fixture::passing();
        r.interfaces.clear();
        r.summary = Default::default();
        assert_eq!(headline(&r), "PASS: but no exchange was replayed");
        r.summary.counts.total = 3;
        r.summary.counts.skipped = 3;
        assert_eq!(
            headline(&r),
            "PASS: but nothing was compared (3 exchanges skipped)"
        );
    }
}
