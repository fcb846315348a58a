//! Line diff of two text bodies, summarised as one short difference that points at the first
//! changed line on each side.

use super::json::truncate_chars;
use super::{DiffKind, Difference};
use similar::{Algorithm, DiffTag, TextDiff};
use std::time::Duration;

/// Longest excerpt of a line shown in a difference, in characters.
const MAX_LINE_CHARS: usize = 200;

/// Budget for the line diff. Myers is quadratic in the worst case; past the deadline
/// `similar` settles for a coarser but still correct edit script, which is all a one-line
/// summary needs.
const DIFF_TIMEOUT: Duration = Duration::from_millis(250);

/// The first changed line of one side and how many lines that side changed in total.
struct SideSummary<'a> {
    /// 1-based line number of the first changed line, or of the place where the other side
    /// inserted or removed lines when this side has none.
    line_no: usize,
    first: Option<&'a str>,
    count: usize,
}

fn show_line(line: &str) -> String {
    let body = line.strip_suffix('\n').unwrap_or(line);
    let body = body.strip_suffix('\r').unwrap_or(body);
    truncate_chars(body, MAX_LINE_CHARS, false)
}

fn describe(side: &SideSummary<'_>, verb: &str, shown: Option<String>) -> String {
    let Some(text) = shown else {
        return format!("line {}: (no lines {verb})", side.line_no);
    };
    let mut s = format!("line {}: {text}", side.line_no);
    match side.count {
        0 | 1 => {}
        2 => s.push_str(&format!(" (+1 more line {verb})")),
        n => s.push_str(&format!(" (+{} more lines {verb})", n - 1)),
    }
    s
}

/// Diffs two texts line by line and, when they differ, appends one [`Difference`] at path
/// `body`: the baseline side shows the first removed line with its line number and how many
/// more were removed, the candidate side the first inserted line likewise.
pub fn diff_text(a: &str, b: &str, out: &mut Vec<Difference>) {
    if a == b {
        return;
    }
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(DIFF_TIMEOUT)
        .diff_lines(a, b);
    let old = diff.old_slices();
    let new = diff.new_slices();

    let mut removed = SideSummary {
        line_no: 0,
        first: None,
        count: 0,
    };
    let mut inserted = SideSummary {
        line_no: 0,
        first: None,
        count: 0,
    };
    let mut anchored = false;
    for op in diff.ops() {
        let (tag, old_range, new_range) = op.as_tag_tuple();
        if tag == DiffTag::Equal {
            continue;
        }
        if !anchored {
            // Both sides point at the first change even when one side has nothing there.
            removed.line_no = old_range.start + 1;
            inserted.line_no = new_range.start + 1;
            anchored = true;
        }
        if removed.first.is_none() && !old_range.is_empty() {
            removed.line_no = old_range.start + 1;
            removed.first = old.get(old_range.start).copied();
        }
        if inserted.first.is_none() && !new_range.is_empty() {
            inserted.line_no = new_range.start + 1;
            inserted.first = new.get(new_range.start).copied();
        }
        removed.count += old_range.len();
        inserted.count += new_range.len();
    }
    if !anchored {
        // Equal line by line yet different as strings cannot happen, but the caller must
        // still learn that the bodies differ.
        removed.line_no = 1;
        inserted.line_no = 1;
    }

    let mut shown_a = removed.first.map(show_line);
    let mut shown_b = inserted.first.map(show_line);
    if shown_a.is_some() && shown_a == shown_b {
        // The lines differ only in their ending (CRLF, missing final newline): show them
        // escaped so the reader sees what changed.
        shown_a = removed
            .first
            .map(|l| truncate_chars(&format!("{l:?}"), MAX_LINE_CHARS, false));
        shown_b = inserted
            .first
            .map(|l| truncate_chars(&format!("{l:?}"), MAX_LINE_CHARS, false));
    }
    out.push(Difference {
        kind: DiffKind::Body,
        path: "body".into(),
        baseline: Some(describe(&removed, "removed", shown_a)),
        candidate: Some(describe(&inserted, "inserted", shown_b)),
        tolerated: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &str, b: &str) -> Vec<Difference> {
        let mut out = Vec::new();
        diff_text(a, b, &mut out);
        out
    }

    #[test]
    fn equal_texts_nothing() {
        assert!(run("a\nb\n", "a\nb\n").is_empty());
        assert!(run("", "").is_empty());
    }

    #[test]
    fn one_changed_line() {
        let d = run("one\ntwo\nthree\n", "one\nTWO\nthree\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "body");
        assert_eq!(d[0].kind, DiffKind::Body);
        assert_eq!(d[0].baseline.as_deref(), Some("line 2: two"));
        assert_eq!(d[0].candidate.as_deref(), Some("line 2: TWO"));
        assert!(!d[0].tolerated);
    }

    #[test]
    fn counts_more_lines() {
        let a = "h\nx1\nx2\nx3\nm\ny\n";
        let b = "h\nz1\nm\n";
        let d = run(a, b);
        assert_eq!(
            d[0].baseline.as_deref(),
            Some("line 2: x1 (+3 more lines removed)")
        );
        assert_eq!(d[0].candidate.as_deref(), Some("line 2: z1"));
        let d = run("a\nb\n", "a\nc\nd\n");
        assert_eq!(
            d[0].candidate.as_deref(),
            Some("line 2: c (+1 more line inserted)")
        );
    }

    #[test]
    fn pure_insertion_and_removal() {
        let d = run("a\nb\n", "a\nb\nc\n");
        assert_eq!(d[0].baseline.as_deref(), Some("line 3: (no lines removed)"));
        assert_eq!(d[0].candidate.as_deref(), Some("line 3: c"));
        let d = run("a\nb\n", "");
        assert_eq!(
            d[0].baseline.as_deref(),
            Some("line 1: a (+1 more line removed)")
        );
        assert_eq!(
            d[0].candidate.as_deref(),
            Some("line 1: (no lines inserted)")
        );
    }

    #[test]
    fn line_ending_only_change_is_visible() {
        let d = run("a\r\nb\r\n", "a\nb\n");
        assert_eq!(
            d[0].baseline.as_deref(),
            Some(r#"line 1: "a\r\n" (+1 more line removed)"#)
        );
        assert_eq!(
            d[0].candidate.as_deref(),
            Some(r#"line 1: "a\n" (+1 more line inserted)"#)
        );
        let d = run("x\n", "x");
        assert_eq!(d[0].baseline.as_deref(), Some(r#"line 1: "x\n""#));
        assert_eq!(d[0].candidate.as_deref(), Some(r#"line 1: "x""#));
    }

    #[test]
    fn long_lines_truncated() {
        let a = format!("{}\n", "α".repeat(1000));
        let d = run(&a, "short\n");
        let s = d[0].baseline.as_deref().unwrap();
        assert!(s.ends_with('…'));
        assert!(s.chars().count() <= "line 1: ".len() + MAX_LINE_CHARS + 1);
    }

    #[test]
    fn large_inputs_stay_bounded() {
        // Two unrelated 20k-line texts: worst case for Myers, must still finish quickly.
        let a: String = (0..20_000).map(|i| format!("a{i}\n")).collect();
        let b: String = (0..20_000).map(|i| format!("b{}\n", i * 7)).collect();
        let start = std::time::Instant::now();
        let d = run(&a, &b);
        assert_eq!(d.len(), 1);
        assert!(start.elapsed() < Duration::from_secs(20));
        assert_eq!(
            d[0].baseline.as_deref(),
            Some("line 1: a0 (+19999 more lines removed)")
        );
    }
}
