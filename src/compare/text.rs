//! Line diff of two text bodies. When both have the same number of lines, every changed line
//! is its own difference, at `body:line N`, so that noise measured on one line (a request id,
//! a timestamp) can never explain a change on another. When lines were inserted or removed,
//! the line numbers no longer pair up, and the change is one difference at `body:lines`
//! pointing at the first changed line on each side: a structural change that only a noise
//! probe which itself inserted or removed lines can explain.

use super::json::truncate_chars;
use super::{more, DiffKind, Difference};
use similar::{Algorithm, DiffTag, TextDiff};
use std::time::Duration;

/// Path prefix of a changed line: `body:line 2` (1-based). No brackets, so the line number
/// survives [`super::fold_path`] and each line keeps its own aggregation key.
pub const LINE_PATH: &str = "body:line ";

/// Path of the one difference that says lines were inserted or removed.
pub const LINES_PATH: &str = "body:lines";

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

/// Diffs two texts line by line and appends what differs.
///
/// With as many lines on both sides, each changed line is one difference at `body:line N`
/// (the line as it reads on each side), at most `max` of them: past that the list is closed
/// by a `…` difference counting the rest, which are at other lines, so such an exchange is
/// never explained by noise. Otherwise one difference at `body:lines`: the baseline side
/// shows the first removed line with its line number and how many more were removed, the
/// candidate side the first inserted line likewise.
pub fn diff_text(a: &str, b: &str, max: usize, out: &mut Vec<Difference>) {
    if a == b {
        return;
    }
    let lines_a: Vec<&str> = a.split_inclusive('\n').collect();
    let lines_b: Vec<&str> = b.split_inclusive('\n').collect();
    if lines_a.len() == lines_b.len() {
        diff_line_by_line(&lines_a, &lines_b, max, out);
    } else {
        diff_structure(a, b, out);
    }
}

/// The two sides of a changed line as shown: as they read, or escaped when they differ only
/// in their ending (CRLF, a missing final newline), so the reader sees what changed.
fn show_pair(a: &str, b: &str) -> (String, String) {
    let (sa, sb) = (show_line(a), show_line(b));
    if sa != sb {
        return (sa, sb);
    }
    let escaped = |l: &str| truncate_chars(&format!("{l:?}"), MAX_LINE_CHARS, false);
    (escaped(a), escaped(b))
}

/// One difference per changed line of two texts with as many lines, at most `max`.
fn diff_line_by_line(a: &[&str], b: &[&str], max: usize, out: &mut Vec<Difference>) {
    let mut changed = a.iter().zip(b).enumerate().filter(|(_, (x, y))| x != y);
    for (i, (x, y)) in changed.by_ref().take(max) {
        let (shown_a, shown_b) = show_pair(x, y);
        out.push(Difference {
            kind: DiffKind::Body,
            path: format!("{LINE_PATH}{}", i + 1),
            baseline: Some(shown_a),
            candidate: Some(shown_b),
            tolerated: false,
        });
    }
    let rest = changed.count();
    if rest > 0 {
        // Every line left out has a line number of its own, none of them listed.
        out.push(more(rest, false, true));
    }
}

/// The one `body:lines` difference of two texts whose line counts differ.
fn diff_structure(a: &str, b: &str, out: &mut Vec<Difference>) {
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
        path: LINES_PATH.into(),
        baseline: Some(describe(&removed, "removed", shown_a)),
        candidate: Some(describe(&inserted, "inserted", shown_b)),
        tolerated: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{is_more, MORE_NOT_LISTED};

    fn run(a: &str, b: &str) -> Vec<Difference> {
        let mut out = Vec::new();
        diff_text(a, b, 64, &mut out);
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
        assert_eq!(d[0].path, "body:line 2");
        assert_eq!(d[0].kind, DiffKind::Body);
        assert_eq!(d[0].baseline.as_deref(), Some("two"));
        assert_eq!(d[0].candidate.as_deref(), Some("TWO"));
        assert!(!d[0].tolerated);
    }

    #[test]
    fn each_changed_line_has_its_own_key() {
        // A volatile first line must not share its key with a real change further down:
        // noise measured on the one would otherwise explain the other.
        let d = run("req=6f1c\nstatus=OK\nend\n", "req=9a2b\nstatus=FAIL\nend\n");
        let keys: Vec<String> = d.iter().map(Difference::key).collect();
        assert_eq!(keys, ["body:line 1", "body:line 2"]);
        assert_eq!(d[1].baseline.as_deref(), Some("status=OK"));
        assert_eq!(d[1].candidate.as_deref(), Some("status=FAIL"));
    }

    #[test]
    fn line_differences_are_capped_and_the_rest_is_not_at_listed_paths() {
        let a: String = (0..100).map(|i| format!("a{i}\n")).collect();
        let b: String = (0..100).map(|i| format!("b{i}\n")).collect();
        let mut d = Vec::new();
        diff_text(&a, &b, 10, &mut d);
        assert_eq!(d.len(), 11);
        assert_eq!(d[9].path, "body:line 10");
        assert!(is_more(&d[10]));
        assert_eq!(d[10].path, MORE_NOT_LISTED);
        assert_eq!(
            d[10].candidate.as_deref(),
            Some("90 more differences not listed, not all at the paths listed")
        );
        // Exactly at the cap: no closing difference.
        let mut d = Vec::new();
        diff_text("a\nb\n", "x\ny\n", 2, &mut d);
        assert_eq!(d.len(), 2);
        assert!(!d.iter().any(is_more));
    }

    #[test]
    fn counts_more_lines() {
        let a = "h\nx1\nx2\nx3\nm\ny\n";
        let b = "h\nz1\nm\n";
        let d = run(a, b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "body:lines");
        assert_eq!(d[0].key(), "body:lines");
        assert_eq!(
            d[0].baseline.as_deref(),
            Some("line 2: x1 (+3 more lines removed)")
        );
        assert_eq!(d[0].candidate.as_deref(), Some("line 2: z1"));
        let d = run("a\nb\n", "a\nc\nd\n");
        assert_eq!(d[0].path, "body:lines");
        assert_eq!(
            d[0].candidate.as_deref(),
            Some("line 2: c (+1 more line inserted)")
        );
    }

    #[test]
    fn pure_insertion_and_removal() {
        let d = run("a\nb\n", "a\nb\nc\n");
        assert_eq!(d[0].path, "body:lines");
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
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].path, "body:line 1");
        assert_eq!(d[0].baseline.as_deref(), Some(r#""a\r\n""#));
        assert_eq!(d[0].candidate.as_deref(), Some(r#""a\n""#));
        let d = run("x\n", "x");
        assert_eq!(d[0].path, "body:line 1");
        assert_eq!(d[0].baseline.as_deref(), Some(r#""x\n""#));
        assert_eq!(d[0].candidate.as_deref(), Some(r#""x""#));
        let d = run("x\n", "x\ny");
        assert_eq!(d[0].path, "body:lines");
        assert_eq!(d[0].baseline.as_deref(), Some("line 2: (no lines removed)"));
    }

    #[test]
    fn long_lines_truncated() {
        let a = format!("{}\n", "α".repeat(1000));
        let d = run(&a, "short\n");
        let s = d[0].baseline.as_deref().unwrap();
        assert!(s.ends_with('…'));
        assert!(s.chars().count() <= MAX_LINE_CHARS + 1);
        let d = run(&a, "short\nmore\n");
        let s = d[0].baseline.as_deref().unwrap();
        assert!(s.ends_with('…'));
        assert!(s.chars().count() <= "line 1: ".len() + MAX_LINE_CHARS + 1);
    }

    #[test]
    fn large_inputs_stay_bounded() {
        // Two unrelated texts of different lengths: worst case for Myers, must still finish
        // quickly.
        let a: String = (0..20_000).map(|i| format!("a{i}\n")).collect();
        let b: String = (0..19_999).map(|i| format!("b{}\n", i * 7)).collect();
        let start = std::time::Instant::now();
        let d = run(&a, &b);
        assert_eq!(d.len(), 1);
        assert!(start.elapsed() < Duration::from_secs(20));
        assert_eq!(
            d[0].baseline.as_deref(),
            Some("line 1: a0 (+19999 more lines removed)")
        );
        // As many lines on both sides: a capped list, whatever the length.
        let b: String = (0..20_000).map(|i| format!("b{i}\n")).collect();
        let d = run(&a, &b);
        assert_eq!(d.len(), 65);
        assert_eq!(
            d[64].candidate.as_deref(),
            Some("19936 more differences not listed, not all at the paths listed")
        );
    }
}
