//! The side-by-side view of one example difference: the baseline's value and the candidate's,
//! each cut into segments marked changed or unchanged, so the HTML report can highlight
//! exactly what moved (`12.5` → `"12.50"`: the quotes and the `0`). Values are kept as text;
//! escaping is the template's job.

use similar::{ChangeTag, TextDiff};
use std::time::Duration;

/// Longer values are shown whole, marked changed, without a character diff.
const MAX_DIFF_CHARS: usize = 4000;

/// Unchanged runs shorter than this are coincidences (two random ids share letters), not
/// structure the reader can hold on to.
const MIN_RUN: usize = 3;

/// Below this share of the shorter value in unchanged runs of at least [`MIN_RUN`]
/// characters, highlighting scattered common letters helps no one: the whole value is
/// marked changed.
const MIN_COMMON_SHARE: f64 = 0.5;

/// A run of text, changed or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The text.
    pub text: String,
    /// True when this side differs from the other here.
    pub changed: bool,
}

/// Both sides of one example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideBySide {
    /// The baseline's value; empty when absent.
    pub baseline: Vec<Segment>,
    /// The candidate's value; empty when absent.
    pub candidate: Vec<Segment>,
    /// The baseline had no value here.
    pub baseline_absent: bool,
    /// The candidate had no value here.
    pub candidate_absent: bool,
}

fn push(v: &mut Vec<Segment>, text: &str, changed: bool) {
    match v.last_mut() {
        Some(last) if last.changed == changed => last.text.push_str(text),
        _ => v.push(Segment {
            text: text.to_string(),
            changed,
        }),
    }
}

fn whole(s: &str) -> Vec<Segment> {
    vec![Segment {
        text: s.to_string(),
        changed: true,
    }]
}

/// Splits both values into changed and unchanged segments.
pub fn side_by_side(baseline: Option<&str>, candidate: Option<&str>) -> SideBySide {
    let mut out = SideBySide {
        baseline: Vec::new(),
        candidate: Vec::new(),
        baseline_absent: baseline.is_none(),
        candidate_absent: candidate.is_none(),
    };
    let (a, b) = match (baseline, candidate) {
        (Some(a), Some(b)) => (a, b),
        (a, b) => {
            out.baseline = a.map(whole).unwrap_or_default();
            out.candidate = b.map(whole).unwrap_or_default();
            return out;
        }
    };
    if a.chars().count() > MAX_DIFF_CHARS || b.chars().count() > MAX_DIFF_CHARS {
        out.baseline = whole(a);
        out.candidate = whole(b);
        return out;
    }
    let diff = TextDiff::configure()
        .timeout(Duration::from_millis(50))
        .diff_chars(a, b);
    // Lengths of the unchanged runs as they form (a run ends at any change on either side).
    let mut runs: Vec<usize> = vec![0];
    for change in diff.iter_all_changes() {
        let text = change.value();
        match change.tag() {
            ChangeTag::Equal => {
                if let Some(last) = runs.last_mut() {
                    *last += text.chars().count();
                }
                push(&mut out.baseline, text, false);
                push(&mut out.candidate, text, false);
            }
            ChangeTag::Delete | ChangeTag::Insert => {
                if runs.last() != Some(&0) {
                    runs.push(0);
                }
                if change.tag() == ChangeTag::Delete {
                    push(&mut out.baseline, text, true);
                } else {
                    push(&mut out.candidate, text, true);
                }
            }
        }
    }
    let common: usize = runs.iter().filter(|r| **r >= MIN_RUN).sum();
    let shorter = a.chars().count().min(b.chars().count()).max(1);
    if (common as f64) / (shorter as f64) < MIN_COMMON_SHARE {
        out.baseline = whole(a);
        out.candidate = whole(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(v: &[Segment]) -> String {
        v.iter()
            .map(|s| {
                if s.changed {
                    format!("[{}]", s.text)
                } else {
                    s.text.clone()
                }
            })
            .collect()
    }

    #[test]
    fn marks_exactly_what_changed() {
        let s = side_by_side(Some("12.5"), Some("\"12.50\""));
        assert_eq!(show(&s.baseline), "12.5");
        assert_eq!(show(&s.candidate), "[\"]12.5[0\"]");
        let s = side_by_side(Some("line 3: <b>old</b>"), Some("line 3: <b>new</b>"));
        assert_eq!(show(&s.baseline), "line 3: <b>[old]</b>");
        // An addition at the end: only the addition is marked.
        let s = side_by_side(
            Some("line 1: <p>hello</p>"),
            Some("line 1: <p>hello</p><script>x()</script>"),
        );
        assert_eq!(show(&s.baseline), "line 1: <p>hello</p>");
        assert_eq!(
            show(&s.candidate),
            "line 1: <p>hello</p>[<script>x()</script>]"
        );
    }

    #[test]
    fn unrelated_values_are_changed_whole_and_absence_is_kept() {
        let s = side_by_side(Some("4f1a9c0d2b"), Some("e83b7a6615"));
        assert_eq!(show(&s.baseline), "[4f1a9c0d2b]");
        let s = side_by_side(Some("\"cebe711bb8907d11\""), Some("\"543cf1fe9148cadd\""));
        assert_eq!(show(&s.candidate), "[\"543cf1fe9148cadd\"]");
        let s = side_by_side(None, Some("x"));
        assert!(s.baseline_absent && !s.candidate_absent);
        assert!(s.baseline.is_empty());
        assert_eq!(show(&s.candidate), "[x]");
    }
}
