//! JUnit XML for CI servers (Jenkins, GitLab): one `<testsuite>` per run, one `<testcase>`
//! per interface. An interface fails when it has a problem whose gate tripped; the failure
//! carries the reasons (missing rule, differing fields, latency, errors) and sample exchange
//! ids, so the CI page says what to look at. The document follows the Apache Ant JUnit
//! report format that both servers read (`tests/fixtures/junit.xsd` checks it).

use super::inert;
use super::words::{self, count_of, ms};
use super::Exporter;
use crate::analysis::gate;
use crate::analysis::result::{ErrorSide, InterfaceResult, RunResult, TrendState, Verdict};
use std::fmt::Write as _;
use std::io;

/// Renders JUnit XML.
#[derive(Clone, Copy, Debug, Default)]
pub struct JunitExporter;

impl Exporter for JunitExporter {
    fn export(&self, result: &RunResult) -> io::Result<Vec<u8>> {
        Ok(render(result).into_bytes())
    }
}

/// Text safe inside an XML element or attribute: markup characters escaped, control
/// characters (which XML 1.0 mostly cannot carry, and a CI page's log view could act on)
/// shown as the stand-ins every report uses ([`inert`]), the non-characters U+FFFE and
/// U+FFFF replaced by U+FFFD, and line breaks and tabs in attributes kept as character
/// references (a parser would turn them into spaces).
pub fn xml_escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\u{FFFE}' | '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(inert::stand_in(c, false).unwrap_or(c)),
        }
    }
    out
}

fn attr(s: &str) -> String {
    xml_escape(s, true)
}

fn text(s: &str) -> String {
    xml_escape(s, false)
}

/// `2026-11-02T10:00:00`: the schema's timestamp has no fraction and no zone.
fn timestamp(created: &str) -> String {
    let us = crate::recording::format::parse_ts_us(created).unwrap_or(0);
    let full = crate::recording::format::format_ts_us(us);
    full.get(..19).unwrap_or("1970-01-01T00:00:00").to_string()
}

/// What makes one interface's testcase fail or error.
enum Case {
    Pass,
    Skipped(String),
    Failure {
        message: String,
        kind: String,
        detail: String,
    },
    Error {
        /// What could not run: `baseline_error`, or `incomplete` for the run itself.
        kind: &'static str,
        message: String,
        detail: String,
    },
}

fn samples(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" (samples: {})", ids.join(", "))
    }
}

/// Every reason an interface needs attention, as lines, with the gate class it belongs to.
fn reasons(i: &InterfaceResult, missing: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if i.counts.missing_rule > 0 {
        out.push((
            "missing_rule",
            format!(
                "missing rule: the candidate {missing} for {} of {}{}",
                i.counts.missing_rule,
                count_of(i.counts.total, "exchange", "exchanges"),
                samples(&i.missing_rule_samples)
            ),
        ));
    }
    for (kind, list) in [
        ("status", &i.status),
        ("header", &i.headers),
        ("field", &i.fields),
    ] {
        for p in list.iter().filter(|p| p.regression) {
            let label = words::path_label(kind, p);
            let mut line = format!(
                "{label}: differed in {} of {} compared ({}); {}",
                p.raw,
                i.compared,
                words::pct(p.raw, i.compared),
                words::noise_phrase(i, p)
            );
            if let Some(ex) = &p.example {
                let _ = write!(
                    line,
                    "; e.g. {} at {}: {} -> {}",
                    ex.id,
                    ex.path,
                    ex.baseline.as_deref().unwrap_or("(absent)"),
                    ex.candidate.as_deref().unwrap_or("(absent)")
                );
            }
            line.push_str(&samples(&p.samples));
            out.push(("different", line));
        }
    }
    if i.counts.different > 0 && !out.iter().any(|(c, _)| *c == "different") {
        out.push((
            "different",
            format!(
                "{} beyond noise",
                count_of(i.counts.different, "exchange differs", "exchanges differ")
            ),
        ));
    }
    if i.latency.regression {
        let l = &i.latency;
        out.push((
            "latency",
            format!(
                "latency: slower by the {}: paired median {} ms, candidate slower in {:.0}% of {}; p50 {} -> {} ms, p99 {} -> {} ms",
                words::slower_by(l),
                words::signed_ms(l.paired.median_diff_us),
                l.paired.slower_share * 100.0,
                count_of(l.paired.count, "pair", "pairs"),
                ms(l.baseline.p50_us),
                ms(l.candidate.p50_us),
                ms(l.baseline.p99_us),
                ms(l.candidate.p99_us)
            ),
        ));
    }
    for e in &i.errors {
        let class = match e.side {
            // A candidate failure on exchanges the baseline failed too is listed beside the
            // baseline's, but counted as the baseline's: with no candidate error of its own
            // the interface belongs to the baseline_error class.
            ErrorSide::Candidate if i.counts.candidate_error == 0 => "baseline_error",
            ErrorSide::Candidate => "candidate_error",
            ErrorSide::Baseline => "baseline_error",
            // Requests skipped as unsendable never reached a target.
            ErrorSide::Request => "unsendable",
            // Noise-probe failures lose a noise sample, never an outcome.
            ErrorSide::Secondary => "secondary_error",
        };
        out.push((
            class,
            format!(
                "{} {} in {}: {}{}",
                e.side,
                e.kind,
                count_of(e.count, "exchange", "exchanges"),
                e.message,
                samples(&e.samples)
            ),
        ));
    }
    out
}

/// What the two gateways forwarded for one exchange, as lines `baseline | candidate`, rows
/// that differ marked; empty when the interface has no forwarded example.
fn forwarded_text(i: &InterfaceResult) -> String {
    let Some((id, f)) = super::forwarded::example(i) else {
        return String::new();
    };
    let mut out = format!("\nforwarded upstream for {id}, baseline | candidate:");
    for r in super::forwarded::rows(f) {
        let _ = write!(
            out,
            "\n{} {} | {}",
            if r.differs { "≠" } else { " " },
            r.baseline.as_deref().unwrap_or("(absent)"),
            r.candidate.as_deref().unwrap_or("(absent)")
        );
    }
    out
}

fn case_of(r: &RunResult, i: &InterfaceResult, tripped: &[&str]) -> Case {
    let all = reasons(i, words::missing_rule_phrase(r));
    let trend = r
        .trend
        .as_ref()
        .and_then(|t| t.interface_state(&i.interface).map(|s| (s, &t.previous)));
    let trend_line = match trend {
        Some((s, prev)) => format!("\ntrend: {} since {prev}", s.label()),
        None => String::new(),
    };
    let failing: Vec<&(&str, String)> = all.iter().filter(|(c, _)| tripped.contains(c)).collect();
    if !failing.is_empty() {
        let mut classes: Vec<&str> = failing.iter().map(|(c, _)| *c).collect();
        classes.dedup();
        let mut message = i
            .problems()
            .iter()
            .filter(|p| {
                let class = p.name();
                classes
                    .iter()
                    .any(|c| *c == class || (class == "errors" && c.ends_with("_error")))
            })
            .map(|p| p.label().to_lowercase())
            .collect::<Vec<_>>()
            .join(", ");
        if let Some((s, _)) = trend {
            if s == TrendState::New {
                message.push_str(" (new)");
            }
        }
        let detail: Vec<&str> = all.iter().map(|(_, line)| line.as_str()).collect();
        return Case::Failure {
            message,
            kind: classes.join(","),
            detail: format!("{}{}{trend_line}", detail.join("\n"), forwarded_text(i)),
        };
    }
    if i.counts.baseline_error > 0 && i.counts.baseline_error == i.counts.total - i.counts.skipped {
        // Nothing of this interface could be judged: the test itself could not run.
        let detail: Vec<&str> = all.iter().map(|(_, line)| line.as_str()).collect();
        return Case::Error {
            kind: "baseline_error",
            message: "the baseline gave no usable answer, nothing was compared".into(),
            detail: detail.join("\n"),
        };
    }
    if i.counts.total > 0 && i.counts.skipped == i.counts.total {
        let mut why = format!(
            "all {} skipped",
            count_of(i.counts.total, "exchange was", "exchanges were")
        );
        if let Some(line) = not_seen(r, &i.interface) {
            let _ = write!(why, "; {line}");
        }
        return Case::Skipped(why);
    }
    Case::Pass
}

/// `failed in PREVIOUS (missing rule, ...), not replayed now` for an interface in trend
/// state not seen.
fn not_seen(r: &RunResult, name: &str) -> Option<String> {
    let t = r.trend.as_ref()?;
    let item = t
        .interfaces
        .iter()
        .find(|x| x.interface == name && x.state == TrendState::NotSeen)?;
    Some(format!(
        "trend: {} since {} (failed then: {})",
        item.state.label(),
        t.previous,
        item.problems.join(", ")
    ))
}

fn render(r: &RunResult) -> String {
    let tripped = gate::tripped(&r.summary, &r.interfaces, &r.run.thresholds);
    let mut cases: Vec<(&str, Case)> = r
        .interfaces
        .iter()
        .map(|i| (i.interface.as_str(), case_of(r, i, &tripped)))
        .collect();
    // An interface that failed last time and has no traffic in this run was not tested:
    // a skipped testcase keeps it on the CI page, where a fixed one would disappear.
    if let Some(t) = &r.trend {
        for item in t
            .interfaces
            .iter()
            .filter(|x| x.state == TrendState::NotSeen)
        {
            if !r.interfaces.iter().any(|i| i.interface == item.interface) {
                let why = not_seen(r, &item.interface).unwrap_or_default();
                cases.push((item.interface.as_str(), Case::Skipped(why)));
            }
        }
    }
    // A run that stopped at a bad recording line did not test what came after it: an error
    // case says so on the CI page, where the interfaces' own cases may all look green.
    if let Some(why) = &r.run.incomplete {
        cases.insert(
            0,
            (
                "reading the recordings",
                Case::Error {
                    kind: "incomplete",
                    message: format!("incomplete: reading stopped at {why}"),
                    detail: r.gate_failures.first().cloned().unwrap_or_default(),
                },
            ),
        );
    }
    let count = |f: fn(&Case) -> bool| cases.iter().filter(|(_, c)| f(c)).count();
    let failures = count(|c| matches!(c, Case::Failure { .. }));
    let errors = count(|c| matches!(c, Case::Error { .. }));
    let skipped = count(|c| matches!(c, Case::Skipped(_)));

    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"shadowdiff\" timestamp=\"{}\" hostname=\"localhost\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.3}\">",
        timestamp(&r.run.created),
        cases.len(),
        r.run.duration_ms as f64 / 1000.0
    );
    x.push_str("  <properties>\n");
    let mut props: Vec<(&str, String)> = vec![
        (
            "verdict",
            match r.verdict {
                Verdict::Pass => "pass".into(),
                Verdict::Fail => "fail".into(),
            },
        ),
        ("baseline", r.run.baseline.clone()),
        ("candidate", r.run.candidate.clone()),
        ("recordings", r.run.recordings.join(", ")),
        ("created", r.run.created.clone()),
        ("tool_version", r.run.tool_version.clone()),
        ("exchanges", r.summary.counts.total.to_string()),
    ];
    if let Some(s) = &r.run.shard {
        props.push(("shard", s.label()));
    }
    for f in &r.run.filters {
        props.push((
            "filter",
            format!("{}: kept {} of {}", f.filter, f.kept, f.kept + f.excluded),
        ));
    }
    if let Some(t) = &r.trend {
        props.push(("previous", t.previous.clone()));
    }
    for (name, value) in props {
        let _ = writeln!(
            x,
            "    <property name=\"{}\" value=\"{}\"/>",
            attr(name),
            attr(&value)
        );
    }
    x.push_str("  </properties>\n");
    for (i, case) in &cases {
        let _ = write!(
            x,
            "  <testcase name=\"{}\" classname=\"shadowdiff.interfaces\" time=\"0\"",
            attr(i)
        );
        match case {
            Case::Pass => x.push_str("/>\n"),
            Case::Skipped(why) => {
                let _ = writeln!(
                    x,
                    ">\n    <skipped message=\"{}\"/>\n  </testcase>",
                    attr(why)
                );
            }
            Case::Failure {
                message,
                kind,
                detail,
            } => {
                let _ = writeln!(
                    x,
                    ">\n    <failure message=\"{}\" type=\"{}\">{}</failure>\n  </testcase>",
                    attr(message),
                    attr(kind),
                    text(detail)
                );
            }
            Case::Error {
                kind,
                message,
                detail,
            } => {
                let _ = writeln!(
                    x,
                    ">\n    <error message=\"{}\" type=\"{}\">{}</error>\n  </testcase>",
                    attr(message),
                    attr(kind),
                    text(detail)
                );
            }
        }
    }
    let mut out_lines = vec![words::headline(r)];
    out_lines.extend(r.gate_failures.iter().map(|g| format!("  - {g}")));
    out_lines.extend(words::selection_lines(r));
    if let Some(t) = &r.trend {
        out_lines.push(format!("trend {}", words::trend_line(t)));
        for state in [TrendState::Fixed, TrendState::NotSeen] {
            let names: Vec<&str> = t
                .interfaces
                .iter()
                .filter(|x| x.state == state)
                .map(|x| x.interface.as_str())
                .collect();
            if !names.is_empty() {
                out_lines.push(format!("  {}: {}", state.label(), names.join(", ")));
            }
        }
    }
    let _ = writeln!(
        x,
        "  <system-out>{}</system-out>",
        text(&out_lines.join("\n"))
    );
    let _ = writeln!(
        x,
        "  <system-err>{}</system-err>",
        text(&r.run.warnings.join("\n"))
    );
    x.push_str("</testsuite>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    #[test]
    fn escapes_markup_and_drops_what_xml_cannot_carry() {
        assert_eq!(
            xml_escape("<a href=\"x\">'&'</a>\u{1}\n", true),
            "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;␁&#10;"
        );
        assert_eq!(
            xml_escape("a\nb\tc\u{0}\r\u{1b}[2J\u{9b}\u{FFFF}", false),
            "a\nb\tc␀␍␛[2J\u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn one_testcase_per_interface_failures_carry_reasons_and_samples() {
        let r = fixture::failing();
        let x = render(&r);
        assert_eq!(x.matches("<testcase ").count(), r.interfaces.len());
        assert!(
            x.contains("tests=\"5\" failures=\"3\" errors=\"0\" skipped=\"1\""),
            "{x}"
        );
        assert!(x.contains("timestamp=\"2026-11-02T10:00:00\""), "{x}");
        let export = x
            .split("<testcase ")
            .find(|c| c.contains("annual-export"))
            .unwrap();
        assert!(export.contains("<failure message=\"missing rule\" type=\"missing_rule\">"));
        assert!(export.contains("samples: demo-000311"), "{export}");
        let product = x
            .split("<testcase ")
            .find(|c| c.contains("products/{id}"))
            .unwrap();
        assert!(
            product.contains("field $.price: differed in 95 of 95 compared"),
            "{product}"
        );
        assert!(product.contains("12.5 -&gt; \"12.50\""), "{product}");
        let search = x
            .split("<testcase ")
            .find(|c| c.contains("/api/search"))
            .unwrap();
        assert!(
            search.contains("type=\"latency,candidate_error\""),
            "{search}"
        );
        assert!(
            search.contains("candidate timeout in 2 exchanges"),
            "{search}"
        );
        let orders = x
            .split("<testcase ")
            .find(|c| c.contains("POST /api/orders"))
            .unwrap();
        assert!(orders.contains("<skipped message=\"all 12 exchanges were skipped\"/>"));
    }

    #[test]
    fn interfaces_not_seen_are_skipped_testcases_naming_the_trend() {
        let previous = fixture::failing();
        let mut r = fixture::failing();
        r.interfaces.retain(|i| i.interface != "GET /api/search");
        r.trend = Some(crate::analysis::trend::compare(&r, &previous, "last.json"));
        let x = render(&r);
        let search = x
            .split("<testcase ")
            .find(|c| c.contains("/api/search"))
            .unwrap();
        assert!(
            search.contains(
                "<skipped message=\"trend: not seen since last.json (failed then: latency, errors)\"/>"
            ),
            "{search}"
        );
        assert!(x.contains("tests=\"5\""), "{x}");
        assert!(x.contains("\n  not seen: GET /api/search"), "{x}");
    }

    #[test]
    fn a_candidate_failure_beside_the_baselines_is_in_the_baseline_error_class() {
        let mut r = fixture::failing();
        let i = r
            .interfaces
            .iter_mut()
            .find(|i| !i.errors.is_empty())
            .unwrap();
        let mut twin = i.errors[0].clone();
        twin.side = ErrorSide::Candidate;
        i.errors = vec![
            crate::analysis::result::ErrorResult {
                side: ErrorSide::Baseline,
                ..twin.clone()
            },
            twin,
        ];
        i.counts.baseline_error += i.counts.candidate_error;
        i.counts.candidate_error = 0;
        let classes: Vec<&str> = reasons(i, "gave its no-route answer")
            .iter()
            .map(|(c, _)| *c)
            .collect();
        assert!(
            classes.contains(&"baseline_error") && !classes.contains(&"candidate_error"),
            "{classes:?}"
        );
    }

    #[test]
    fn passing_run_has_no_failures() {
        let x = render(&fixture::passing());
        assert!(x.contains("failures=\"0\" errors=\"0\""), "{x}");
        assert!(!x.contains("<failure"));
    }

    #[test]
    fn problems_outside_the_gates_do_not_fail_the_testcase() {
        let mut r = fixture::failing();
        r.run.thresholds.fail_on = vec!["missing_rule".into()];
        let x = render(&r);
        assert!(x.contains("failures=\"1\""), "{x}");
    }
}
