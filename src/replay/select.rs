//! Which exchanges a run replays: the shard split (`--shard K/N`) and the incident filters
//! (`--since`, `--until`, `--id`, `--filter`). Exchanges left out here are not outcomes of
//! the run; they are counted per filter in `run.filters` (and the shard's share in
//! `run.shard`) so the summary says what each filter kept and nothing goes uncounted.
//!
//! Order: the shard split first (so the funnels of N shards add up exactly when merged),
//! then the filters in the order given on the command line.

use crate::analysis::result::{FilterCount, ShardInfo};
use crate::error::{Error, Result};
use crate::exchange::{Exchange, Headers};
use crate::interface::{InterfaceKey, Keyer};
use std::collections::HashSet;

/// The interface key of an exchange: the recorded one under the default rule, else computed.
pub fn exchange_interface(ex: &Exchange, keyer: &Keyer) -> String {
    // A recorded key is kept unless the user chose how to key interfaces.
    match (&keyer.key, &ex.interface) {
        (InterfaceKey::Default, Some(recorded))
            if !recorded.is_empty() && keyer.templates.is_empty() =>
        {
            recorded.clone()
        }
        _ => keyer.key_of(&ex.request),
    }
}

// Shard K of N is the same set of exchanges on every machine: the hash is the crate's stable
// one.
use crate::hash::fnv1a64;

/// One of N deterministic shares of the exchanges, by exchange id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index, like a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Shard {
    /// Parses `K/N` with `0 <= K < N`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "--shard: expected K/N with 0 <= K < N (K is 0-based, like JOB_COMPLETION_INDEX), found {s:?}: {why}"
            ))
        };
        let (k, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: u32 = k.trim().parse().map_err(|_| bad("K is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad("K must be less than N"));
        }
        Ok(Shard { index, count })
    }

    /// The shard an exchange id belongs to among `count`.
    pub fn of(id: &str, count: u32) -> u32 {
        (fnv1a64(id.as_bytes()) % u64::from(count.max(1))) as u32
    }

    /// True when the exchange with this id is in this shard.
    pub fn owns(&self, id: &str) -> bool {
        Self::of(id, self.count) == self.index
    }
}

/// What an expression filter looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Field {
    Interface,
    Method,
    Status,
    Header(String),
    Tenant,
}

/// One selection rule.
#[derive(Clone, Debug, PartialEq)]
enum Rule {
    Since(i64),
    Until(i64),
    Ids(HashSet<String>),
    Expr {
        field: Field,
        negate: bool,
        /// Alternatives (any may match); globs with `*`.
        values: Vec<String>,
    },
}

/// The validated selection of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// `--shard`, if any.
    pub shard: Option<Shard>,
    rules: Vec<(String, Rule)>,
    ids: Vec<String>,
}

/// The flags a selection is built from.
#[derive(Clone, Debug, Default)]
pub struct SelectionArgs<'a> {
    /// `--since`.
    pub since: Option<&'a str>,
    /// `--until`.
    pub until: Option<&'a str>,
    /// `--id`, repeated.
    pub ids: &'a [String],
    /// `--filter`, repeated.
    pub filters: &'a [String],
    /// `--shard`.
    pub shard: Option<&'a str>,
}

fn parse_time(flag: &str, s: &str) -> Result<i64> {
    crate::recording::format::parse_ts_us(s.trim()).ok_or_else(|| {
        Error::Usage(format!(
            "--{flag}: expected an RFC 3339 time like 2026-11-02T09:00:00Z, found {s:?}"
        ))
    })
}

fn parse_expr(s: &str) -> Result<Rule> {
    let bad = |why: String| {
        Error::Usage(format!(
            "--filter {s:?}: {why}; expected KEY=VALUE or KEY!=VALUE with KEY one of \
             interface, method, status, tenant, header:NAME (values may use * globs; \
             method and status take comma-separated alternatives, status also 5xx)"
        ))
    };
    // The first '=' ends the key (a value may itself contain "!=" or '='); a '!' right
    // before it makes the rule a negation.
    let (key, negate, value) = match s.split_once('=') {
        Some((k, v)) => match k.strip_suffix('!') {
            Some(k) => (k, true, v),
            None => (k, false, v),
        },
        None => return Err(bad("no '=' or '!='".into())),
    };
    let key = key.trim();
    let field = match key.to_ascii_lowercase().as_str() {
        "interface" => Field::Interface,
        "method" => Field::Method,
        "status" => Field::Status,
        "tenant" => Field::Tenant,
        k => match k.strip_prefix("header:") {
            Some(h) if !h.trim().is_empty() => Field::Header(h.trim().to_string()),
            Some(_) => return Err(bad("header: needs a header name".into())),
            None => return Err(bad(format!("unknown key {key:?}"))),
        },
    };
    let values: Vec<String> = match field {
        Field::Method => value
            .split(',')
            .map(|v| v.trim().to_ascii_uppercase())
            .filter(|v| !v.is_empty())
            .collect(),
        Field::Status => {
            let mut out = Vec::new();
            for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                let pattern = v.to_ascii_lowercase().replace('x', "*");
                if !pattern.chars().all(|c| c.is_ascii_digit() || c == '*') {
                    return Err(bad(format!("{v:?} is not a status like 404, 5xx or 4*")));
                }
                out.push(pattern);
            }
            out
        }
        _ => vec![value.to_string()],
    };
    if values.is_empty() {
        return Err(bad("no value".into()));
    }
    Ok(Rule::Expr {
        field,
        negate,
        values,
    })
}

fn header_values<'a>(headers: &'a Headers, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Selection {
    /// Validates the selection flags.
    pub fn from_args(a: &SelectionArgs<'_>) -> Result<Self> {
        let since = a.since.map(|s| parse_time("since", s)).transpose()?;
        let until = a.until.map(|u| parse_time("until", u)).transpose()?;
        if let (Some(s), Some(u)) = (since, until) {
            if u <= s {
                return Err(Error::Usage(
                    "--until must be later than --since (--since is inclusive, --until exclusive)"
                        .into(),
                ));
            }
        }
        let mut rules = Vec::new();
        if let (Some(t), Some(s)) = (since, a.since) {
            rules.push((format!("--since {s}"), Rule::Since(t)));
        }
        if let (Some(t), Some(u)) = (until, a.until) {
            rules.push((format!("--until {u}"), Rule::Until(t)));
        }
        let mut ids = Vec::new();
        if !a.ids.is_empty() {
            for id in a.ids {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
            let label = match ids.as_slice() {
                [one] => format!("--id {one}"),
                many => format!("--id ({} ids)", many.len()),
            };
            rules.push((label, Rule::Ids(ids.iter().cloned().collect())));
        }
        for f in a.filters {
            rules.push((format!("--filter {f}"), parse_expr(f)?));
        }
        Ok(Selection {
            shard: a.shard.map(Shard::parse).transpose()?,
            rules,
            ids,
        })
    }

    /// True when nothing is selected away.
    pub fn is_all(&self) -> bool {
        self.shard.is_none() && self.rules.is_empty()
    }

    /// Fresh counters for one pass over the exchanges.
    pub fn counter(&self) -> SelectionCounter {
        SelectionCounter {
            owned: 0,
            read: 0,
            kept: vec![0; self.rules.len()],
            excluded: vec![0; self.rules.len()],
            ids_seen: HashSet::new(),
        }
    }

    /// Decides whether `ex` (with its interface key and tenant already set) is replayed,
    /// counting the decision in `c`.
    pub fn admit(&self, ex: &Exchange, interface: &str, c: &mut SelectionCounter) -> bool {
        c.read += 1;
        // Ids are looked up before the shard split, so `--id` on a sharded run does not warn
        // about ids that another shard owns.
        if self.ids.contains(&ex.id) {
            c.ids_seen.insert(ex.id.clone());
        }
        if let Some(s) = &self.shard {
            if !s.owns(&ex.id) {
                return false;
            }
        }
        c.owned += 1;
        for (n, (_, rule)) in self.rules.iter().enumerate() {
            if rule_admits(rule, ex, interface) {
                c.kept[n] += 1;
            } else {
                c.excluded[n] += 1;
                return false;
            }
        }
        true
    }

    /// The per-filter counts and the shard share for the result, plus warnings (ids that
    /// are in no recording).
    pub fn report(
        &self,
        c: &SelectionCounter,
    ) -> (Vec<FilterCount>, Option<ShardInfo>, Vec<String>) {
        let filters = self
            .rules
            .iter()
            .enumerate()
            .map(|(n, (label, _))| FilterCount {
                filter: label.clone(),
                kept: c.kept[n],
                excluded: c.excluded[n],
            })
            .collect();
        let shard = self.shard.map(|s| ShardInfo {
            count: s.count,
            indices: vec![s.index],
            owned: c.owned,
        });
        let mut warnings: Vec<String> = self
            .ids
            .iter()
            .filter(|id| !c.ids_seen.contains(*id))
            .map(|id| format!("--id {id}: no exchange with this id in the recordings"))
            .collect();
        // A filter that keeps nothing is most often a typo; a run over nothing passes, so it
        // must at least say why there was nothing.
        for (n, (label, rule)) in self.rules.iter().enumerate() {
            let seen = c.kept[n] + c.excluded[n];
            let exchanges = if seen == 1 {
                "1 exchange".to_string()
            } else {
                format!("{seen} exchanges")
            };
            // `KEY!=VALUE` whose value matched nothing keeps everything: as much a typo as a
            // `KEY=VALUE` that keeps nothing, and a run that looks filtered but is not.
            if let Rule::Expr { negate: true, .. } = rule {
                if seen > 0 && c.excluded[n] == 0 {
                    warnings.push(format!(
                        "{label}: matched none of the {exchanges} it saw, so it excluded nothing"
                    ));
                }
            }
            if seen == 0 || c.kept[n] > 0 || matches!(rule, Rule::Ids(_)) {
                continue;
            }
            let hint = match rule {
                Rule::Expr {
                    field: Field::Tenant,
                    negate: false,
                    ..
                } => "; an exchange has a tenant only when the recording names one or --tenant-header names its header",
                _ => "",
            };
            warnings.push(format!(
                "{label}: kept none of the {exchanges} it saw{hint}"
            ));
        }
        (filters, shard, warnings)
    }
}

fn rule_admits(rule: &Rule, ex: &Exchange, interface: &str) -> bool {
    match rule {
        Rule::Since(t) => ex.ts_us >= *t,
        Rule::Until(t) => ex.ts_us < *t,
        Rule::Ids(ids) => ids.contains(&ex.id),
        Rule::Expr {
            field,
            negate,
            values,
        } => {
            let any = |text: &str| values.iter().any(|v| crate::glob::matches(v, text));
            let hit = match field {
                Field::Interface => any(interface),
                Field::Method => any(&ex.request.method.to_ascii_uppercase()),
                Field::Status => ex
                    .response
                    .as_ref()
                    .is_some_and(|r| any(&r.status.to_string())),
                Field::Tenant => ex.tenant.as_deref().is_some_and(any),
                Field::Header(h) => header_values(&ex.request.headers, h).any(any),
            };
            hit != *negate
        }
    }
}

/// Counts of one pass; owned by the dispatcher, so counting shares nothing.
#[derive(Clone, Debug, Default)]
pub struct SelectionCounter {
    /// Exchanges looked at.
    pub read: u64,
    /// Exchanges in this run's shard (all of them when unsharded).
    pub owned: u64,
    kept: Vec<u64>,
    excluded: Vec<u64>,
    ids_seen: HashSet<String>,
}

impl SelectionCounter {
    /// Exchanges excluded by the shard split or any filter.
    pub fn excluded(&self) -> u64 {
        self.read - self.owned + self.excluded.iter().sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_may_contain_equals_signs() {
        assert_eq!(
            parse_expr("header:x-q=a!=b").unwrap(),
            Rule::Expr {
                field: Field::Header("x-q".into()),
                negate: false,
                values: vec!["a!=b".into()],
            }
        );
        assert_eq!(
            parse_expr("header:x-q!=a=b").unwrap(),
            Rule::Expr {
                field: Field::Header("x-q".into()),
                negate: true,
                values: vec!["a=b".into()],
            }
        );
    }
    use crate::exchange::{Request, Response};

    fn ex(id: &str, ts: i64, method: &str, status: u16, headers: &[(&str, &str)]) -> Exchange {
        Exchange {
            id: id.into(),
            ts_us: ts,
            interface: None,
            tenant: headers
                .iter()
                .find(|(k, _)| *k == "x-tenant")
                .map(|(_, v)| v.to_string()),
            request: Request {
                method: method.into(),
                uri: "/x".into(),
                version: "HTTP/1.1".into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
            response: Some(Response {
                status,
                ..Default::default()
            }),
            latency_us: None,
        }
    }

    fn sel(since: Option<&str>, until: Option<&str>, ids: &[&str], filters: &[&str]) -> Selection {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let filters: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        Selection::from_args(&SelectionArgs {
            since,
            until,
            ids: &ids,
            filters: &filters,
            shard: None,
        })
        .unwrap()
    }

    #[test]
    fn every_id_lands_in_exactly_one_shard() {
        for n in 1..=7u32 {
            let shards: Vec<Shard> = (0..n).map(|k| Shard { index: k, count: n }).collect();
            let mut sizes = vec![0u32; n as usize];
            for i in 0..2000 {
                let id = format!("demo-{i:06}");
                let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(&id)).collect();
                assert_eq!(owners.len(), 1, "{id} in {n} shards");
                sizes[owners[0].index as usize] += 1;
            }
            // Roughly even: no shard gets less than half its fair share.
            assert!(sizes.iter().all(|s| *s > 1000 / n), "{n}: {sizes:?}");
        }
    }

    #[test]
    fn shard_flag_is_zero_based() {
        assert_eq!(Shard::parse("0/4").unwrap(), Shard { index: 0, count: 4 });
        assert_eq!(Shard::parse("3/4").unwrap(), Shard { index: 3, count: 4 });
        for bad in ["4/4", "1/0", "x/4", "1", "-1/4"] {
            let e = Shard::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--shard") && e.contains("0-based"), "{bad}: {e}");
        }
    }

    #[test]
    fn filters_form_a_funnel_with_counts() {
        let s = sel(
            Some("1970-01-01T00:00:00.000010Z"),
            Some("1970-01-01T00:00:00.000050Z"),
            &[],
            &["method=GET,HEAD", "status!=5xx", "header:x-tenant=acme*"],
        );
        let xs = [
            ex("a", 5, "GET", 200, &[("x-tenant", "acme")]), // too early
            ex("b", 10, "GET", 200, &[("x-tenant", "acme-eu")]), // kept
            ex("c", 20, "POST", 200, &[("x-tenant", "acme")]), // method
            ex("d", 30, "get", 503, &[("x-tenant", "acme")]), // status
            ex("e", 40, "HEAD", 404, &[("x-tenant", "globex")]), // header
            ex("f", 50, "GET", 200, &[("x-tenant", "acme")]), // until is exclusive
        ];
        let mut c = s.counter();
        let kept: Vec<&str> = xs
            .iter()
            .filter(|x| s.admit(x, "GET /x", &mut c))
            .map(|x| x.id.as_str())
            .collect();
        assert_eq!(kept, ["b"]);
        let (filters, shard, warnings) = s.report(&c);
        assert!(shard.is_none() && warnings.is_empty());
        let counts: Vec<(&str, u64, u64)> = filters
            .iter()
            .map(|f| (f.filter.as_str(), f.kept, f.excluded))
            .collect();
        assert_eq!(
            counts,
            [
                ("--since 1970-01-01T00:00:00.000010Z", 5, 1),
                ("--until 1970-01-01T00:00:00.000050Z", 4, 1),
                ("--filter method=GET,HEAD", 3, 1),
                ("--filter status!=5xx", 2, 1),
                ("--filter header:x-tenant=acme*", 1, 1),
            ]
        );
        assert_eq!(c.excluded(), 5);
    }

    #[test]
    fn ids_interface_and_tenant() {
        let s = sel(
            None,
            None,
            &["b", "zzz"],
            &["interface=GET /api/*", "tenant=acme"],
        );
        let xs = [
            ex("a", 1, "GET", 200, &[("x-tenant", "acme")]),
            ex("b", 2, "GET", 200, &[("x-tenant", "acme")]),
        ];
        let mut c = s.counter();
        assert!(!s.admit(&xs[0], "GET /api/users/{id}", &mut c));
        assert!(s.admit(&xs[1], "GET /api/users/{id}", &mut c));
        let mut c2 = s.counter();
        assert!(!s.admit(&xs[1], "GET /other", &mut c2));
        let (f, _, warnings) = s.report(&c);
        assert_eq!(f[0].filter, "--id (2 ids)");
        assert_eq!(
            warnings,
            ["--id zzz: no exchange with this id in the recordings"]
        );
    }

    #[test]
    fn a_filter_that_keeps_nothing_says_so() {
        let s = sel(None, None, &[], &["method=GET", "tenant=acme"]);
        let xs = [ex("a", 1, "GET", 200, &[]), ex("b", 2, "GET", 200, &[])];
        let mut c = s.counter();
        assert!(xs.iter().all(|x| !s.admit(x, "GET /x", &mut c)));
        let (_, _, warnings) = s.report(&c);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("--filter tenant=acme: kept none of the 2 exchanges it saw")
                && warnings[0].contains("--tenant-header"),
            "{warnings:?}"
        );
    }

    #[test]
    fn bad_filters_say_what_was_expected() {
        for (f, expect) in [
            ("colour=red", "unknown key \"colour\""),
            ("method", "no '=' or '!='"),
            ("status=teapot", "not a status"),
            ("header:=x", "needs a header name"),
        ] {
            let filters = vec![f.to_string()];
            let e = Selection::from_args(&SelectionArgs {
                filters: &filters,
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains(expect) && e.contains("--filter"), "{f}: {e}");
        }
        let e = Selection::from_args(&SelectionArgs {
            since: Some("yesterday"),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--since") && e.contains("RFC 3339"), "{e}");
    }
}
