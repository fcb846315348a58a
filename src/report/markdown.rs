//! A short Markdown summary for a pull-request comment or a chat message: the verdict, the
//! tripped gates, one table row per interface that needs attention (capped, so a bad run
//! still gives a short message), the counts, and the trend. Captured text (interface names,
//! values) is put in code spans or escaped, so it cannot turn into links, HTML or tables.

use super::words::{self, count_of, ms};
use super::{inert, Exporter};
use crate::analysis::result::{InterfaceResult, Problem, RunResult, TrendState, Verdict};
use std::fmt::Write as _;
use std::io;

/// Interfaces listed in the table before "and N more".
pub const MAX_ROWS: usize = 15;

/// Paths named per interface.
const MAX_PATHS: usize = 3;

/// Renders the Markdown summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct MarkdownExporter;

impl Exporter for MarkdownExporter {
    fn export(&self, result: &RunResult) -> io::Result<Vec<u8>> {
        Ok(render(result).into_bytes())
    }
}

/// Plain text with every character that Markdown (or a table) could interpret escaped, and
/// control characters shown as their stand-ins ([`inert`]). An
/// underscore inside a word (`missing_rule`) and `>` (a quote only at the start of a line,
/// which this text never is) are left alone: chat clients that ignore backslash escapes
/// would show the backslash.
pub fn md_text(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (n, c) in chars.iter().enumerate() {
        let word = |at: Option<&char>| at.is_some_and(|c| c.is_alphanumeric());
        match c {
            '_' if word(n.checked_sub(1).and_then(|p| chars.get(p))) && word(chars.get(n + 1)) => {
                out.push('_')
            }
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '|' | '#' | '~' | '&' => {
                out.push('\\');
                out.push(*c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(inert::stand_in(*c, true).unwrap_or(*c)),
        }
    }
    out
}

/// A code span that survives any content: a fence longer than any backtick run inside, `|`
/// escaped so it cannot end a table cell, control characters shown as their stand-ins.
pub fn code(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| match c {
            '\n' | '\r' => ' ',
            c => inert::stand_in(c, true).unwrap_or(c),
        })
        .collect();
    let longest = flat.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if flat.starts_with('`') || flat.ends_with('`') || flat.is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{}{pad}{fence}", flat.replace('|', "\\|"))
}

fn detail(i: &InterfaceResult, problems: &[Problem]) -> String {
    let mut parts = Vec::new();
    for p in problems {
        match p {
            Problem::MissingRule => {
                let mut s = format!(
                    "no route for {} of {}",
                    i.counts.missing_rule,
                    count_of(i.counts.total, "exchange", "exchanges")
                );
                if let Some(id) = i.missing_rule_samples.first() {
                    let _ = write!(s, ", e.g. {}", code(id));
                }
                parts.push(s);
            }
            Problem::Different => {
                let regressing: Vec<String> = [&i.status, &i.headers, &i.fields]
                    .into_iter()
                    .flatten()
                    .filter(|p| p.regression)
                    .take(MAX_PATHS)
                    .map(|p| {
                        format!(
                            "{} in {} (noise {})",
                            code(&p.classed_path()),
                            words::pct(p.raw, i.compared),
                            words::pct(p.noise, i.probed)
                        )
                    })
                    .collect();
                if regressing.is_empty() {
                    parts.push(count_of(
                        i.counts.different,
                        "exchange differs",
                        "exchanges differ",
                    ));
                } else {
                    parts.push(regressing.join(", "));
                }
            }
            Problem::Slower => parts.push(format!(
                "p50 {} → {} ms (paired {} ms), by the {}",
                ms(i.latency.baseline.p50_us),
                ms(i.latency.candidate.p50_us),
                words::signed_ms(i.latency.paired.median_diff_us),
                words::slower_by(&i.latency)
            )),
            Problem::Errors => {
                for e in &i.errors {
                    parts.push(format!("{} × {} {}", e.count, e.side, e.kind));
                }
            }
        }
    }
    parts.join("; ")
}

fn render(r: &RunResult) -> String {
    let mut md = String::new();
    let icon = match r.verdict {
        Verdict::Pass => "✅",
        Verdict::Fail => "❌",
    };
    let _ = writeln!(md, "### {icon} shadowdiff {}", md_text(&words::headline(r)));
    md.push('\n');
    let _ = writeln!(
        md,
        "Baseline {} vs candidate {}.",
        code(&r.run.baseline),
        code(&r.run.candidate)
    );
    if !r.gate_failures.is_empty() {
        md.push('\n');
        for g in &r.gate_failures {
            let _ = writeln!(md, "- {}", md_text(g));
        }
    }
    let trend = r.trend.as_ref();
    let flagged: Vec<(&InterfaceResult, Vec<Problem>)> = r
        .interfaces
        .iter()
        .map(|i| (i, i.problems()))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    if !flagged.is_empty() {
        md.push('\n');
        let with_trend = trend.is_some();
        md.push_str("| interface | problem | detail |");
        md.push_str(if with_trend { " trend |\n" } else { "\n" });
        md.push_str("| --- | --- | --- |");
        md.push_str(if with_trend { " --- |\n" } else { "\n" });
        for (i, problems) in flagged.iter().take(MAX_ROWS) {
            let labels: Vec<String> = problems.iter().map(|p| p.label().to_lowercase()).collect();
            let _ = write!(
                md,
                "| {} | {} | {} |",
                code(&i.interface),
                labels.join(", "),
                detail(i, problems)
            );
            if let Some(t) = trend {
                let state = t.interface_state(&i.interface);
                let cell = match state {
                    Some(TrendState::New) => "**new**".to_string(),
                    Some(s) => s.label().to_string(),
                    None => String::new(),
                };
                let _ = write!(md, " {cell} |");
            }
            md.push('\n');
        }
        if flagged.len() > MAX_ROWS {
            let _ = writeln!(
                md,
                "\n… and {} (see the HTML report).",
                count_of(
                    (flagged.len() - MAX_ROWS) as u64,
                    "more interface",
                    "more interfaces"
                )
            );
        }
    }
    let c = &r.summary.counts;
    md.push('\n');
    let _ = writeln!(
        md,
        "{} over {}: {} identical, {} noise only, {} different, {} missing rule, {}, {}, {} skipped.",
        count_of(c.total, "exchange", "exchanges"),
        count_of(r.summary.interfaces, "interface", "interfaces"),
        c.identical,
        c.noise_only,
        c.different,
        c.missing_rule,
        count_of(c.candidate_error, "candidate error", "candidate errors"),
        count_of(c.baseline_error, "baseline error", "baseline errors"),
        c.skipped
    );
    // What a reader of the summary must not miss about how far the verdict reaches.
    let cautions: Vec<String> = words::verdict_notes(r)
        .into_iter()
        .chain(words::probe_failures(r))
        .chain(words::slower_on_few_pairs(r))
        .chain(words::unsendable_note(r))
        .chain(r.run.warnings.iter().cloned())
        .collect();
    if !cautions.is_empty() {
        md.push('\n');
        for line in cautions {
            let _ = writeln!(md, "- warning: {}", md_text(&line));
        }
    }
    let resent: Vec<String> = words::side_effect_note(r)
        .into_iter()
        .chain(words::resent_notes(r))
        .chain(words::connection_notes(r))
        .collect();
    if !resent.is_empty() {
        md.push('\n');
        for line in resent {
            let _ = writeln!(md, "- note: {}", md_text(&line));
        }
    }
    let selection = words::selection_lines(r);
    if !selection.is_empty() {
        md.push('\n');
        for line in selection {
            let _ = writeln!(md, "- {}", md_text(&line));
        }
    }
    if let Some(t) = trend {
        let _ = writeln!(md, "\nTrend {}.", md_text(&words::trend_line(t)));
        // Neither kind has a row in the table: they do not fail now. Not seen matters as
        // much as fixed: it failed last time and this run cannot say whether it still does.
        for (state, title) in [
            (TrendState::Fixed, "Fixed"),
            (TrendState::NotSeen, "Not seen"),
        ] {
            let names: Vec<String> = t
                .interfaces
                .iter()
                .filter(|x| x.state == state)
                .map(|x| code(&x.interface))
                .collect();
            if names.is_empty() {
                continue;
            }
            let mut line = names[..names.len().min(MAX_ROWS)].join(", ");
            if names.len() > MAX_ROWS {
                let _ = write!(line, " and {} more", names.len() - MAX_ROWS);
            }
            let _ = writeln!(md, "{title}: {line}.");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/report/snapshots/");

    fn check_snapshot(name: &str, text: &str) {
        let path = format!("{SNAPSHOT}{name}");
        if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
            std::fs::write(&path, text).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run with UPDATE_SNAPSHOTS=1 to create it"));
        assert!(
            text == expected,
            "{name} changed; rerun with UPDATE_SNAPSHOTS=1 if intended\n--- expected\n{expected}\n--- got\n{text}"
        );
    }

    #[test]
    fn failing_run_matches_snapshot() {
        check_snapshot("markdown_fail.md", &render(&fixture::failing()));
    }

    #[test]
    fn trend_and_selection_match_snapshot() {
        check_snapshot("markdown_trend.md", &render(&fixture::with_trend()));
    }

    #[test]
    fn passing_run_is_two_lines_and_counts() {
        let md = render(&fixture::passing());
        assert!(
            md.starts_with("### ✅ shadowdiff PASS: the candidate answered like the baseline\n")
        );
        assert!(!md.contains("| interface |"));
    }

    #[test]
    fn captured_text_cannot_break_out() {
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("x`y"), "``x`y``");
        assert_eq!(code("`"), "`` ` ``");
        assert_eq!(code("a\u{1b}]0;x\u{7}"), "`a␛]0;x␇`");
        assert_eq!(md_text("a\u{1b}[2J\u{9b}"), "a␛\\[2J\u{FFFD}");
        assert_eq!(md_text("<script>[x](y) -> z"), "\\<script>\\[x\\](y) -> z");
        assert_eq!(
            md_text("missing_rule: _x_ a|b"),
            "missing_rule: \\_x\\_ a\\|b"
        );
        let mut r = fixture::failing();
        r.interfaces[0].interface = "GET /a|b`<img src=x>".into();
        let md = render(&r);
        let row = md
            .lines()
            .find(|l| l.starts_with('|') && l.contains("<img"))
            .unwrap();
        assert_eq!(row.matches(" | ").count(), 2, "{row}");
        assert!(row.starts_with("| ``GET /a\\|b`<img src=x>`` |"), "{row}");
    }

    #[test]
    fn interfaces_not_seen_are_named_like_fixed_ones_and_capped() {
        let previous = fixture::failing();
        let mut r = fixture::failing();
        // Search failed last night and none of its traffic was replayed tonight.
        r.interfaces.retain(|i| i.interface != "GET /api/search");
        r.trend = Some(crate::analysis::trend::compare(&r, &previous, "last.json"));
        let md = render(&r);
        assert!(md.contains("\nNot seen: `GET /api/search`.\n"), "{md}");

        let mut previous = fixture::failing();
        let template = previous.interfaces[1].clone();
        for n in 0..MAX_ROWS + 2 {
            let mut i = template.clone();
            i.interface = format!("GET /gone/{n:02}");
            previous.interfaces.push(i);
        }
        let mut r = fixture::failing();
        r.trend = Some(crate::analysis::trend::compare(&r, &previous, "last.json"));
        let md = render(&r);
        let line = md.lines().find(|l| l.starts_with("Not seen: ")).unwrap();
        assert_eq!(line.matches("`GET /gone/").count(), MAX_ROWS, "{line}");
        assert!(line.ends_with(" and 2 more."), "{line}");
    }

    #[test]
    fn long_lists_are_capped() {
        let mut r = fixture::failing();
        let template = r.interfaces[1].clone();
        for n in 0..30 {
            let mut i = template.clone();
            i.interface = format!("GET /extra/{n}");
            r.interfaces.push(i);
        }
        let md = render(&r);
        assert_eq!(md.matches("\n| `").count(), MAX_ROWS);
        assert!(
            md.contains("… and 18 more interfaces (see the HTML report)"),
            "{md}"
        );
    }
}
