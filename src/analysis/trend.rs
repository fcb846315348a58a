//! The nightly trend: compares a result with an earlier one (`--previous`) and marks every
//! interface and path that fails in either as new, still failing, fixed, or not seen (it
//! failed then, but none of its traffic was replayed now, so nobody can say it is fixed).
//!
//! "Fails" means what the reports flag: an interface with any [`Problem`], a status, header
//! or field path whose `regression` flag is set. It does not depend on `--fail-on`, so a
//! trend stays meaningful when a team changes its gates between two nights.

use super::result::{InterfaceResult, Problem, RunResult, Trend, TrendItem, TrendState};
use std::collections::{BTreeMap, BTreeSet};

/// The regressing paths of an interface as (kind, path).
fn failing_paths(i: &InterfaceResult) -> BTreeSet<(&'static str, String)> {
    let mut out = BTreeSet::new();
    for (kind, list) in [
        ("status", &i.status),
        ("header", &i.headers),
        ("field", &i.fields),
    ] {
        for p in list.iter().filter(|p| p.regression) {
            out.insert((kind, p.classed_path()));
        }
    }
    out
}

fn names(p: &[Problem]) -> Vec<String> {
    p.iter().map(|p| p.name().to_string()).collect()
}

fn state(now: bool, then: bool, seen_now: bool) -> Option<TrendState> {
    match (now, then) {
        (true, true) => Some(TrendState::StillFailing),
        (true, false) => Some(TrendState::New),
        (false, true) if seen_now => Some(TrendState::Fixed),
        (false, true) => Some(TrendState::NotSeen),
        (false, false) => None,
    }
}

/// Compares `current` with `previous` (read from the file labelled `previous_label`).
pub fn compare(current: &RunResult, previous: &RunResult, previous_label: &str) -> Trend {
    let now: BTreeMap<&str, &InterfaceResult> = current
        .interfaces
        .iter()
        .map(|i| (i.interface.as_str(), i))
        .collect();
    let then: BTreeMap<&str, &InterfaceResult> = previous
        .interfaces
        .iter()
        .map(|i| (i.interface.as_str(), i))
        .collect();
    let all: BTreeSet<&str> = now.keys().chain(then.keys()).copied().collect();

    let mut interfaces = Vec::new();
    let mut paths = Vec::new();
    for name in all {
        let cur = now.get(name).copied();
        let prev = then.get(name).copied();
        // An interface present now with only skipped exchanges was not really replayed.
        let seen_now = cur.is_some_and(|i| i.counts.total > i.counts.skipped);
        let p_now = cur.map(InterfaceResult::problems).unwrap_or_default();
        let p_then = prev.map(InterfaceResult::problems).unwrap_or_default();
        if let Some(st) = state(!p_now.is_empty(), !p_then.is_empty(), seen_now) {
            let problems = if p_now.is_empty() { &p_then } else { &p_now };
            interfaces.push(TrendItem {
                interface: name.to_string(),
                kind: None,
                path: None,
                state: st,
                problems: names(problems),
            });
        }
        let f_now = cur.map(failing_paths).unwrap_or_default();
        let f_then = prev.map(failing_paths).unwrap_or_default();
        for (kind, path) in f_now.union(&f_then) {
            let key = (*kind, path.clone());
            // A path that failed before is fixed only if this run compared exchanges of
            // its interface: without compared answers nothing could have differed.
            let compared_now = cur.is_some_and(|i| i.compared > 0);
            if let Some(st) = state(f_now.contains(&key), f_then.contains(&key), compared_now) {
                paths.push(TrendItem {
                    interface: name.to_string(),
                    kind: Some(kind.to_string()),
                    path: Some(path.clone()),
                    state: st,
                    problems: Vec::new(),
                });
            }
        }
    }
    interfaces.sort_by(|a, b| (a.state, &a.interface).cmp(&(b.state, &b.interface)));
    paths.sort_by(|a, b| {
        (a.state, &a.interface, &a.kind, &a.path).cmp(&(b.state, &b.interface, &b.kind, &b.path))
    });
    Trend {
        previous: previous_label.to_string(),
        previous_created: previous.run.created.clone(),
        previous_verdict: previous.verdict,
        interfaces,
        paths,
    }
}

impl Trend {
    /// The state of interface `name`, if it fails now or failed then.
    pub fn interface_state(&self, name: &str) -> Option<TrendState> {
        self.interfaces
            .iter()
            .find(|t| t.interface == name)
            .map(|t| t.state)
    }

    /// The state of a path (`kind` is `status`, `header` or `field`) of interface `name`.
    pub fn path_state(&self, name: &str, kind: &str, path: &str) -> Option<TrendState> {
        self.paths
            .iter()
            .find(|t| {
                t.interface == name
                    && t.kind.as_deref() == Some(kind)
                    && t.path.as_deref() == Some(path)
            })
            .map(|t| t.state)
    }

    /// How many interfaces are in `state`.
    pub fn count(&self, state: TrendState) -> usize {
        self.interfaces.iter().filter(|t| t.state == state).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    #[test]
    fn new_still_failing_fixed_and_not_seen() {
        let previous = fixture::failing();
        let mut current = fixture::failing();
        // The missing rule got its rule: the interface now answers like the baseline.
        let export = current
            .interfaces
            .iter_mut()
            .find(|i| i.interface == "GET /api/reports/annual-export")
            .unwrap();
        export.counts.missing_rule = 0;
        export.counts.identical = 1;
        export.compared = 1;
        // Search is no longer in the traffic at all.
        current
            .interfaces
            .retain(|i| i.interface != "GET /api/search");
        // Users gets a new regressing header.
        let users = current
            .interfaces
            .iter_mut()
            .find(|i| i.interface == "GET /api/users/{id}")
            .unwrap();
        users.headers[0].regression = true;

        let t = compare(&current, &previous, "last-night.json");
        assert_eq!(t.previous, "last-night.json");
        let st = |n: &str| t.interface_state(n);
        assert_eq!(
            st("GET /api/reports/annual-export"),
            Some(TrendState::Fixed)
        );
        assert_eq!(st("GET /api/products/{id}"), Some(TrendState::StillFailing));
        assert_eq!(st("GET /api/search"), Some(TrendState::NotSeen));
        assert_eq!(st("GET /api/users/{id}"), Some(TrendState::New));
        assert_eq!(st("POST /api/orders"), None);
        assert_eq!(
            t.path_state("GET /api/products/{id}", "field", "$.price"),
            Some(TrendState::StillFailing)
        );
        assert_eq!(
            t.path_state("GET /api/users/{id}", "header", "x-trace-id"),
            Some(TrendState::New)
        );
        let search = t
            .interfaces
            .iter()
            .find(|i| i.interface == "GET /api/search")
            .unwrap();
        assert_eq!(search.problems, ["latency", "errors"]);
        // Sorted by state: new first, then still failing, fixed, not seen.
        let states: Vec<TrendState> = t.interfaces.iter().map(|i| i.state).collect();
        let mut sorted = states.clone();
        sorted.sort();
        assert_eq!(states, sorted);
    }

    #[test]
    fn same_result_is_all_still_failing() {
        let r = fixture::failing();
        let t = compare(&r, &r, "same.json");
        assert!(t
            .interfaces
            .iter()
            .chain(&t.paths)
            .all(|i| i.state == TrendState::StillFailing));
        assert_eq!(t.count(TrendState::StillFailing), 3);
    }
}
