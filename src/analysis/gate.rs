//! Gates: turn a finished result into the verdict. Each tripped gate adds one plain sentence
//! to `gate_failures`, naming the interfaces involved, so the release engineer reading a
//! failed CI job knows what to look at without opening the report. Deciding lives here, in
//! the analysis; the reports only render what was decided.

use crate::analysis::result::{
    ErrorSide, InterfaceResult, RunInfo, RunResult, Summary, Thresholds, Verdict, RESULT_FORMAT,
};

/// A finished result: the gates of `run.thresholds` evaluated on the summary and interfaces.
/// Replay, merge and the tap's live shadow all end here.
pub fn decided(summary: Summary, interfaces: Vec<InterfaceResult>, run: RunInfo) -> RunResult {
    let (mut verdict, mut gate_failures) = evaluate(&summary, &interfaces, &run.thresholds);
    // A run that stopped reading early cannot pass: what it did not read was not judged.
    if let Some(why) = &run.incomplete {
        verdict = Verdict::Fail;
        gate_failures.insert(
            0,
            format!(
                "incomplete: reading stopped at {why}; only what came before it was judged ({})",
                count_of(summary.counts.total, "exchange", "exchanges")
            ),
        );
    }
    RunResult {
        gateway_wide: crate::analysis::gateway_wide(&interfaces),
        shadowdiff_result: RESULT_FORMAT,
        verdict,
        gate_failures,
        summary,
        interfaces,
        run,
        // A trend compares with an earlier result; it is added when `--previous` is given.
        trend: None,
    }
}

/// Evaluates the gates named in `th.fail_on`.
pub fn evaluate(
    summary: &Summary,
    interfaces: &[InterfaceResult],
    th: &Thresholds,
) -> (Verdict, Vec<String>) {
    let failures: Vec<String> = gates(summary, interfaces, th)
        .into_iter()
        .map(|(_, sentence)| sentence)
        .collect();
    let verdict = if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    (verdict, failures)
}

/// The gate classes that tripped (`missing_rule`, `different`, `latency`, `candidate_error`,
/// `baseline_error`), for reports that fail individual interfaces (JUnit).
pub fn tripped(
    summary: &Summary,
    interfaces: &[InterfaceResult],
    th: &Thresholds,
) -> Vec<&'static str> {
    gates(summary, interfaces, th)
        .into_iter()
        .map(|(class, _)| class)
        .collect()
}

/// Every tripped gate as (class, sentence).
fn gates(
    summary: &Summary,
    interfaces: &[InterfaceResult],
    th: &Thresholds,
) -> Vec<(&'static str, String)> {
    let on = |c: &str| th.fail_on.iter().any(|f| f == c);
    let mut failures = Vec::new();
    let c = &summary.counts;
    if on("missing_rule") && c.missing_rule > 0 {
        let (n, list) = interface_names(interfaces.iter().filter(|i| i.counts.missing_rule > 0));
        failures.push(("missing_rule", format!(
            "missing_rule: the candidate has no route for {} ({}), which the baseline serves: {list}",
            count_of(n as u64, "interface", "interfaces"),
            count_of(c.missing_rule, "exchange", "exchanges"),
        )));
    }
    if on("different") && c.different > 0 {
        let compared: u64 = interfaces.iter().map(|i| i.compared).sum();
        let rate = c.different as f64 / compared.max(1) as f64;
        let (n, list) = interface_names(interfaces.iter().filter(|i| i.counts.different > 0));
        match th.max_diff_rate {
            Some(max) if rate <= max => {}
            Some(max) => failures.push(("different", format!(
                "different: {:.2}% of compared exchanges differ beyond noise (limit {:.2}%), in {}: {list}",
                rate * 100.0,
                max * 100.0,
                count_of(n as u64, "interface", "interfaces"),
            ))),
            None => failures.push(("different", format!(
                "different: {} beyond noise, in {}: {list}",
                count_of(c.different, "exchange differs", "exchanges differ"),
                count_of(n as u64, "interface", "interfaces"),
            ))),
        }
    }
    if on("latency") && summary.latency_regressions > 0 {
        let slow: Vec<String> = interfaces
            .iter()
            .filter(|i| i.latency.regression)
            .take(MAX_NAMES)
            .map(|i| {
                format!(
                    "{} (p50 {:.1} -> {:.1} ms)",
                    i.interface,
                    i.latency.baseline.p50_us as f64 / 1000.0,
                    i.latency.candidate.p50_us as f64 / 1000.0
                )
            })
            .collect();
        let more = summary.latency_regressions as usize - slow.len();
        failures.push((
            "latency",
            format!(
                "latency: the candidate is slower on {}: {}{}",
                count_of(summary.latency_regressions, "interface", "interfaces"),
                slow.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        ));
    }
    // Nor one that sent nothing: an all-POST RPC recording replayed without declaring its
    // reads would otherwise pass having compared not one answer.
    if c.total > 0 && c.skipped == c.total {
        let why = if summary.skipped_reasons.contains_key("side_effect") {
            "; declare the reads with --safe GLOB or [side_effects] safe, or pass \
             --allow-side-effects"
        } else {
            ""
        };
        failures.push((
            "skipped",
            format!(
                "nothing compared: all {} skipped{why}",
                count_of(c.total, "exchange read was", "exchanges read were")
            ),
        ));
        return failures;
    }
    // A gate that compared nothing has no evidence to pass on, whatever `--fail-on` says:
    // every exchange sent failed on the baseline (a target down, a `--timeout` too short).
    let sent = c.total - c.skipped;
    if sent > 0 && c.baseline_error == sent {
        let candidate_down: u64 = interfaces
            .iter()
            .flat_map(|i| &i.errors)
            .filter(|e| e.side == ErrorSide::Candidate)
            .map(|e| e.count)
            .sum();
        let also = if candidate_down > 0 {
            format!(
                ", and the candidate failed on {} of them too",
                count_of(candidate_down, "exchange", "exchanges")
            )
        } else {
            String::new()
        };
        failures.push((
            "baseline_error",
            format!(
                "nothing compared: the baseline gave no usable answer for any of the {} sent{also}",
                count_of(sent, "exchange", "exchanges")
            ),
        ));
        return failures;
    }
    for (class, count, who) in [
        ("candidate_error", c.candidate_error, "candidate"),
        ("baseline_error", c.baseline_error, "baseline"),
    ] {
        if on(class) && count > 0 {
            let (n, list) = interface_names(interfaces.iter().filter(|i| {
                if who == "candidate" {
                    i.counts.candidate_error > 0
                } else {
                    i.counts.baseline_error > 0
                }
            }));
            failures.push((
                class,
                format!(
                    "{class}: the {who} gave no usable answer for {} in {}: {list}",
                    count_of(count, "exchange", "exchanges"),
                    count_of(n as u64, "interface", "interfaces"),
                ),
            ));
        }
    }
    failures
}

/// `1 exchange`, `2 exchanges`.
pub fn count_of(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Interface names listed in one sentence before "and N more".
pub const MAX_NAMES: usize = 5;

/// How many interfaces, and their names as one sentence lists them: `a, b and N more`.
pub fn interface_names<'a>(it: impl Iterator<Item = &'a InterfaceResult>) -> (usize, String) {
    let all: Vec<&str> = it.map(|i| i.interface.as_str()).collect();
    let mut s = all
        .iter()
        .take(MAX_NAMES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > MAX_NAMES {
        s.push_str(&format!(" and {} more", all.len() - MAX_NAMES));
    }
    (all.len(), s)
}
