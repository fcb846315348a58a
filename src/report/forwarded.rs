//! What two gateway versions forwarded for one exchange, as rows of a side-by-side view: the
//! calls paired as the comparison pairs them (same method and path first), and for each
//! pair its request line, its header fields by name and its body, each row marked where the
//! two sides differ. Every report that shows the upstream side renders these rows.

use crate::analysis::result::{ForwardedSample, InterfaceResult, SampleRequest};
use crate::compare::headers::VOLATILE_HEADERS;
use crate::http1::headers::is_hop_by_hop;

/// Longest body shown in a row, in characters.
const MAX_BODY_SHOWN: usize = 240;

/// One row: the baseline's text, the candidate's, and whether they differ. An absent side
/// is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// What the baseline forwarded here.
    pub baseline: Option<String>,
    /// What the candidate forwarded here.
    pub candidate: Option<String>,
    /// The two sides differ in this row.
    pub differs: bool,
}

/// The exchange whose forwarded requests an interface's report shows: the example of its
/// first regressing `upstream.*` path, else of any `upstream.*` path, else its missing-rule
/// exchange, when its calls were kept.
pub fn example(i: &InterfaceResult) -> Option<(&str, &ForwardedSample)> {
    let upstream = |p: &&crate::analysis::result::PathResult| p.path.starts_with("upstream.");
    let mut paths: Vec<_> = i.fields.iter().filter(upstream).collect();
    paths.sort_by_key(|p| !p.regression);
    paths
        .into_iter()
        .find_map(|p| {
            let id = p.example.as_ref()?.id.as_str();
            let f = i.sample_requests.get(id)?.forwarded.as_ref()?;
            Some((id, f))
        })
        .or_else(|| {
            let m = i.missing_rule_answer.as_ref()?;
            Some((m.id.as_str(), m.forwarded.as_ref()?))
        })
}

/// The rows of both sides' calls.
pub fn rows(f: &ForwardedSample) -> Vec<Row> {
    let mut out = Vec::new();
    let mut used = vec![false; f.candidate.len()];
    let path = |r: &SampleRequest| r.uri.split('?').next().unwrap_or("").to_string();
    for b in &f.baseline {
        let j = (0..f.candidate.len())
            .find(|&j| {
                !used[j] && f.candidate[j].method == b.method && path(&f.candidate[j]) == path(b)
            })
            .or_else(|| {
                (0..f.candidate.len()).find(|&j| !used[j] && f.candidate[j].method == b.method)
            });
        match j {
            Some(j) => {
                used[j] = true;
                call_rows(Some(b), Some(&f.candidate[j]), &mut out);
            }
            None => call_rows(Some(b), None, &mut out),
        }
    }
    for (j, c) in f.candidate.iter().enumerate() {
        if !used[j] {
            call_rows(None, Some(c), &mut out);
        }
    }
    out
}

fn call_rows(a: Option<&SampleRequest>, b: Option<&SampleRequest>, out: &mut Vec<Row>) {
    let line = |r: &SampleRequest| format!("{} {}", r.method, r.uri);
    push(out, a.map(line), b.map(line));
    let mut names: Vec<String> = Vec::new();
    for r in a.iter().chain(b.iter()) {
        for (n, _) in &r.headers {
            let n = n.to_ascii_lowercase();
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let value = |r: &SampleRequest, name: &str| -> Option<String> {
        let v: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!v.is_empty()).then(|| format!("{name}: {}", v.join(", ")))
    };
    for n in &names {
        let (va, vb) = (a.and_then(|r| value(r, n)), b.and_then(|r| value(r, n)));
        // Shown, but never marked: the comparison skips these fields.
        let compared = !VOLATILE_HEADERS.contains(&n.as_str()) && !is_hop_by_hop(n.as_bytes());
        let differs = compared && va != vb;
        out.push(Row {
            baseline: va,
            candidate: vb,
            differs,
        });
    }
    let body = |r: &SampleRequest| -> Option<String> {
        match &r.body {
            Some(t) if t.is_empty() => None,
            Some(t) if t.chars().count() > MAX_BODY_SHOWN => Some(format!(
                "{}…",
                t.chars().take(MAX_BODY_SHOWN).collect::<String>()
            )),
            Some(t) => Some(t.clone()),
            None if r.body_bytes == 0 => None,
            None => Some(format!("({} bytes of body)", r.body_bytes)),
        }
    };
    let (ba, bb) = (a.and_then(body), b.and_then(body));
    if ba.is_some() || bb.is_some() {
        push(out, ba, bb);
    }
}

fn push(out: &mut Vec<Row>, baseline: Option<String>, candidate: Option<String>) {
    let differs = baseline != candidate;
    out.push(Row {
        baseline,
        candidate,
        differs,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> SampleRequest {
        SampleRequest {
            method: method.into(),
            uri: uri.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Some(String::new()),
            body_bytes: 0,
            body_binary: false,
            body_truncated: false,
            forwarded: None,
        }
    }

    #[test]
    fn calls_pair_by_path_and_a_call_on_one_side_stands_alone() {
        let f = ForwardedSample {
            baseline: vec![req("POST", "/o", &[("x-auth-scope", "billing")])],
            candidate: vec![req("GET", "/auth", &[]), req("POST", "/o", &[])],
        };
        let r = rows(&f);
        assert_eq!(r[0].baseline.as_deref(), Some("POST /o"));
        assert!(!r[0].differs);
        assert_eq!(r[1].baseline.as_deref(), Some("x-auth-scope: billing"));
        assert_eq!(r[1].candidate, None);
        assert!(r[1].differs);
        assert_eq!(r[2].baseline, None);
        assert_eq!(r[2].candidate.as_deref(), Some("GET /auth"));
    }
}
