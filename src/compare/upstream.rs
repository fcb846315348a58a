//! What each gateway version forwarded to its upstream, compared as answers are: the calls
//! of one exchange as a set (paired by what they are, not by when they came), and each pair
//! by method, path and query, header fields as a multiset and body by media type. Every
//! difference is of kind [`DiffKind::Upstream`] at a path under `upstream.`
//! (`upstream.path`, `upstream.header:x-auth-scope`, `upstream.body:$.amount`,
//! `upstream.calls`), so the noise rule, ignore rules and gates treat it like any other.

use super::{body, headers, CompareOptions, DiffKind, Difference, Observed};
use crate::exchange::Headers;
use bytes::Bytes;

/// The value a `Host` field holds when it names the side's own upstream or target: each
/// side has its own address, so that difference says nothing about the gateway.
pub const OWN_AUTHORITY: &str = "(own authority)";

/// One request a gateway forwarded to shadowdiff playing its upstream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Forwarded {
    /// Method as received.
    pub method: String,
    /// Request target as received: path and query.
    pub target: String,
    /// Header fields in wire order (the correlation header left out).
    pub headers: Headers,
    /// Body as received (still content-encoded).
    pub body: Bytes,
    /// Authorities that name the side itself: the address the call arrived on, the address
    /// listened on, and the side's target. A `Host` equal to one of them is no difference.
    pub own: Vec<String>,
}

impl Forwarded {
    /// The call as a request, its target in `uri`, its header fields as compared (a `Host`
    /// naming the side itself is [`OWN_AUTHORITY`]).
    pub fn compared_request(&self) -> crate::exchange::Request {
        crate::exchange::Request {
            method: self.method.clone(),
            uri: self.target.clone(),
            version: "HTTP/1.1".into(),
            headers: self.compared_headers(),
            body: self.body.clone(),
            body_truncated: false,
            tls: None,
        }
    }

    /// `METHOD target`, as the calls list shows one call.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }

    /// The header fields as compared: a `Host` naming the side itself replaced by
    /// [`OWN_AUTHORITY`].
    fn compared_headers(&self) -> Headers {
        self.headers
            .iter()
            .map(|(n, v)| {
                let own = n.eq_ignore_ascii_case("host")
                    && self.own.iter().any(|o| o.eq_ignore_ascii_case(v.trim()));
                if own {
                    (n.clone(), OWN_AUTHORITY.to_string())
                } else {
                    (n.clone(), v.clone())
                }
            })
            .collect()
    }

    /// Whether `other` is the same call again (a retry): same method, target and body.
    fn same_call(&self, other: &Forwarded) -> bool {
        self.method == other.method && self.target == other.target && self.body == other.body
    }

    fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }
}

/// The calls of one side with repeats of the same call (retries) taken out, and how many
/// were taken out.
pub fn without_retries(calls: &[Forwarded]) -> (Vec<&Forwarded>, u64) {
    let mut kept: Vec<&Forwarded> = Vec::with_capacity(calls.len());
    let mut retries = 0;
    for c in calls {
        if kept.iter().any(|k| k.same_call(c)) {
            retries += 1;
        } else {
            kept.push(c);
        }
    }
    (kept, retries)
}

/// Whether two calls are alike enough to pair, in one pass of [`pair`].
type Alike = fn(&Forwarded, &Forwarded) -> bool;

/// Pairs the calls of two sides: the same method and target first, then the same method
/// and path, then the same method and body, then the same method in order. What is left
/// unpaired is a call one side made and the other did not.
fn pair<'a>(
    a: &[&'a Forwarded],
    b: &[&'a Forwarded],
) -> (
    Vec<(&'a Forwarded, &'a Forwarded)>,
    Vec<&'a Forwarded>,
    Vec<&'a Forwarded>,
) {
    let mut used_a = vec![false; a.len()];
    let mut used_b = vec![false; b.len()];
    let mut pairs = Vec::new();
    let passes: [Alike; 4] = [
        |x, y| x.method == y.method && x.target == y.target,
        |x, y| x.method == y.method && x.path() == y.path(),
        |x, y| x.method == y.method && x.body == y.body,
        |x, y| x.method == y.method,
    ];
    for same in passes {
        for (i, x) in a.iter().enumerate() {
            if used_a[i] {
                continue;
            }
            if let Some(j) = (0..b.len()).find(|&j| !used_b[j] && same(x, b[j])) {
                used_a[i] = true;
                used_b[j] = true;
                pairs.push((*x, b[j]));
            }
        }
    }
    let only_a = a.iter().zip(&used_a).filter(|(_, u)| !**u).map(|(x, _)| *x);
    let only_b = b.iter().zip(&used_b).filter(|(_, u)| !**u).map(|(x, _)| *x);
    (pairs, only_a.collect(), only_b.collect())
}

/// Every difference between what two sides forwarded for one exchange: a call one side
/// made and the other did not (`calls`, removed or added), and for each pair of calls the
/// method, path and query, header fields and body. Retries (the same call again) are not
/// differences; [`without_retries`] counts them.
pub fn diff_calls(a: &[Forwarded], b: &[Forwarded], opts: &CompareOptions) -> Vec<Difference> {
    let (a, _) = without_retries(a);
    let (b, _) = without_retries(b);
    let (pairs, only_a, only_b) = pair(&a, &b);
    let mut out = Vec::new();
    for x in only_a {
        out.push(upstream("upstream.calls", Some(x.line()), None));
    }
    for y in only_b {
        out.push(upstream("upstream.calls", None, Some(y.line())));
    }
    for (x, y) in pairs {
        diff_call(x, y, opts, &mut out);
    }
    super::cap_list(&mut out, opts.max_diffs);
    out
}

/// The differences of one pair of calls.
fn diff_call(a: &Forwarded, b: &Forwarded, opts: &CompareOptions, out: &mut Vec<Difference>) {
    if a.method != b.method {
        out.push(upstream(
            "upstream.method",
            Some(a.method.clone()),
            Some(b.method.clone()),
        ));
    }
    if a.target != b.target {
        out.push(upstream(
            "upstream.path",
            Some(a.target.clone()),
            Some(b.target.clone()),
        ));
    }
    let (ha, hb) = (a.compared_headers(), b.compared_headers());
    let mut found = Vec::new();
    headers::diff_headers(&ha, &hb, DiffKind::Header, opts, &mut found);
    let as_answer = |h: Headers, body: &Bytes| Observed {
        status: 200,
        headers: h,
        body: body.clone(),
        ..Default::default()
    };
    let (oa, ob) = (as_answer(ha, &a.body), as_answer(hb, &b.body));
    let header_count = found.len();
    body::diff_bodies_for(Some(a.path()), &oa, &ob, opts, &mut found);
    for (i, mut d) in found.into_iter().enumerate() {
        d.path = if i < header_count {
            format!("upstream.header:{}", d.path)
        } else if d.path.starts_with('$') {
            format!("upstream.body:{}", d.path)
        } else {
            format!("upstream.{}", d.path)
        };
        d.kind = DiffKind::Upstream;
        out.push(d);
    }
}

fn upstream(path: &str, baseline: Option<String>, candidate: Option<String>) -> Difference {
    Difference {
        kind: DiffKind::Upstream,
        path: path.into(),
        baseline,
        candidate,
        tolerated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Change;

    fn call(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Forwarded {
        Forwarded {
            method: method.into(),
            target: target.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            own: vec!["127.0.0.1:9001".into(), "127.0.0.1:9002".into()],
        }
    }

    fn keys(d: &[Difference]) -> Vec<String> {
        d.iter().map(Difference::key).collect()
    }

    #[test]
    fn a_header_one_side_forgot_is_removed_at_its_path() {
        let ct = ("content-type", "application/json");
        let a = call("POST", "/o", &[ct, ("x-auth-scope", "billing")], "{}");
        let b = call("POST", "/o", &[ct], "{}");
        let d = diff_calls(&[a], &[b], &CompareOptions::default());
        assert_eq!(keys(&d), ["upstream.header:x-auth-scope (removed)"]);
        assert_eq!(d[0].change(), Change::Removed);
    }

    #[test]
    fn own_host_hop_by_hop_and_framing_are_no_differences() {
        let a = call(
            "GET",
            "/a?x=1",
            &[("host", "127.0.0.1:9001"), ("connection", "close")],
            "",
        );
        let b = call(
            "GET",
            "/a?x=1",
            &[("Host", "127.0.0.1:9002"), ("transfer-encoding", "chunked")],
            "",
        );
        assert!(diff_calls(&[a], &[b], &CompareOptions::default()).is_empty());
        let a = call("GET", "/a", &[("host", "shop.example")], "");
        let b = call("GET", "/a", &[("host", "127.0.0.1:9002")], "");
        let d = diff_calls(&[a], &[b], &CompareOptions::default());
        assert_eq!(keys(&d), ["upstream.header:host"]);
        assert_eq!(d[0].candidate.as_deref(), Some(OWN_AUTHORITY));
    }

    #[test]
    fn path_body_field_and_extra_call_each_at_their_paths() {
        let ct = ("content-type", "application/json");
        let a = call(
            "POST",
            "/rpc/orders/Create",
            &[ct],
            r#"{"id":1,"amount":5}"#,
        );
        let b = call("POST", "/v2/orders/Create", &[ct], r#"{"id":1}"#);
        let auth = call("GET", "/auth/check", &[], "");
        let d = diff_calls(&[a], &[auth, b], &CompareOptions::default());
        let mut k = keys(&d);
        k.sort();
        assert_eq!(
            k,
            [
                "upstream.body:$.amount (removed)",
                "upstream.calls (added)",
                "upstream.path",
            ]
        );
        let calls = d.iter().find(|d| d.path == "upstream.calls").unwrap();
        assert_eq!(calls.candidate.as_deref(), Some("GET /auth/check"));
    }

    #[test]
    fn calls_pair_as_a_set_and_retries_are_not_differences() {
        let x = call("GET", "/x", &[], "");
        let y = call("GET", "/y", &[], "");
        let d = diff_calls(
            &[x.clone(), y.clone()],
            &[y.clone(), x.clone(), x.clone()],
            &CompareOptions::default(),
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(without_retries(&[y, x.clone(), x]).1, 1);
    }

    #[test]
    fn ignore_rules_apply_to_forwarded_headers_and_fields() {
        let ct = ("content-type", "application/json");
        let a = call("POST", "/o", &[ct, ("x-req", "1")], r#"{"ts":1}"#);
        let b = call("POST", "/o", &[ct, ("x-req", "2")], r#"{"ts":2}"#);
        let opts = CompareOptions {
            ignore_headers: vec!["x-req".into()],
            ignore_paths: vec!["$.ts".parse().unwrap()],
            ..Default::default()
        };
        assert!(diff_calls(&[a], &[b], &opts).is_empty());
    }
}
