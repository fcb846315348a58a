//! Field-path patterns for ignore rules, numeric tolerances and order-insensitive arrays:
//! `$.meta.*` (any member of `meta`), `$..traceId` (at any depth), `$.items[*].updatedAt`
//! (in every element), `$['odd key'][0]`. Paths are the ones differences report, so a
//! pattern is checked against exactly what the user sees in the report.

use std::fmt;
use std::str::FromStr;

/// One step of a concrete path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// One step of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PStep {
    Key(String),
    AnyKey,
    Index(usize),
    AnyIndex,
    /// `..`: zero or more steps of any kind.
    Descend,
}

/// A parsed field-path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    steps: Vec<PStep>,
    text: String,
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Reads a quoted key after `['`, honouring `\'` and `\\`; returns the key and the rest
/// after `']`.
fn quoted_key(s: &str) -> Option<(String, &str)> {
    let mut key = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => key.push(chars.next()?.1),
            '\'' => return s[i + 1..].strip_prefix(']').map(|rest| (key, rest)),
            c => key.push(c),
        }
    }
    None
}

fn ident_len(s: &str) -> usize {
    s.find(['.', '[']).unwrap_or(s.len())
}

fn parse_steps(text: &str, allow_wildcards: bool) -> Result<Vec<PStep>, String> {
    let mut rest = text
        .strip_prefix('$')
        .ok_or_else(|| format!("expected a path starting with `$`, found {text:?}"))?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            if !allow_wildcards {
                return Err(format!("`..` is only allowed in patterns: {text:?}"));
            }
            steps.push(PStep::Descend);
            // `..name` and `..*`: the name follows directly; `..[0]` and `..['x']` too.
            if r.starts_with('[') {
                rest = r;
                continue;
            }
            let n = ident_len(r);
            if n == 0 {
                return Err(format!("expected a member name after `..` in {text:?}"));
            }
            steps.push(if &r[..n] == "*" {
                PStep::AnyKey
            } else {
                PStep::Key(r[..n].to_string())
            });
            rest = &r[n..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let n = ident_len(r);
            if n == 0 {
                return Err(format!("expected a member name after `.` in {text:?}"));
            }
            steps.push(if &r[..n] == "*" && allow_wildcards {
                PStep::AnyKey
            } else {
                PStep::Key(r[..n].to_string())
            });
            rest = &r[n..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let (key, after) =
                quoted_key(r).ok_or_else(|| format!("unterminated `['…']` in {text:?}"))?;
            steps.push(PStep::Key(key));
            rest = after;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("unterminated `[` in {text:?}"))?;
            let inner = &r[..end];
            steps.push(if inner == "*" && allow_wildcards {
                PStep::AnyIndex
            } else {
                PStep::Index(inner.parse().map_err(|_| {
                    format!("expected an index, `*` or a quoted key inside `[…]` in {text:?}")
                })?)
            });
            rest = &r[end + 1..];
        } else {
            return Err(format!(
                "expected `.name`, `[index]` or `['key']` at {rest:?} in {text:?}"
            ));
        }
    }
    Ok(steps)
}

/// Splits a concrete path (as reported in differences) into steps; `None` when it is not a
/// field path (`status`, `body`).
pub fn parse_path(path: &str) -> Option<Vec<Step>> {
    let steps = parse_steps(path, false).ok()?;
    steps
        .into_iter()
        .map(|s| match s {
            PStep::Key(k) => Some(Step::Key(k)),
            PStep::Index(i) => Some(Step::Index(i)),
            _ => None,
        })
        .collect()
}

impl FromStr for PathPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(PathPattern {
            steps: parse_steps(text, true)?,
            text: text.to_string(),
        })
    }
}

impl PathPattern {
    /// True when the pattern matches `path` itself or one of its ancestors (ignoring a
    /// member ignores everything inside it).
    pub fn covers(&self, path: &[Step]) -> bool {
        matches(&self.steps, path, true)
    }

    /// True when the pattern matches `path` exactly.
    pub fn matches(&self, path: &[Step]) -> bool {
        matches(&self.steps, path, false)
    }

    /// [`covers`](Self::covers) on a path string; false for non-field paths.
    pub fn covers_str(&self, path: &str) -> bool {
        parse_path(path).is_some_and(|p| self.covers(&p))
    }

    /// [`matches`](Self::matches) on a path string; false for non-field paths.
    pub fn matches_str(&self, path: &str) -> bool {
        parse_path(path).is_some_and(|p| self.matches(&p))
    }

    /// True when some member or element of `doc` is at a path this pattern matches: the
    /// rule has something to act on there, whether or not the two answers differ.
    pub fn found_in(&self, doc: &serde_json::Value) -> bool {
        found(&self.steps, doc)
    }
}

/// [`PathPattern::found_in`], led by the pattern: only `..` and wildcards branch.
fn found(pat: &[PStep], v: &serde_json::Value) -> bool {
    use serde_json::Value;
    let Some((first, rest)) = pat.split_first() else {
        return true;
    };
    match (first, v) {
        (PStep::Key(k), Value::Object(m)) => m.get(k).is_some_and(|c| found(rest, c)),
        (PStep::AnyKey, Value::Object(m)) => m.values().any(|c| found(rest, c)),
        (PStep::Index(i), Value::Array(a)) => a.get(*i).is_some_and(|c| found(rest, c)),
        (PStep::AnyIndex, Value::Array(a)) => a.iter().any(|c| found(rest, c)),
        (PStep::Descend, Value::Object(m)) => found(rest, v) || m.values().any(|c| found(pat, c)),
        (PStep::Descend, Value::Array(a)) => found(rest, v) || a.iter().any(|c| found(pat, c)),
        (PStep::Descend, _) => found(rest, v),
        _ => false,
    }
}

fn matches(pat: &[PStep], path: &[Step], prefix: bool) -> bool {
    let Some((first, rest)) = pat.split_first() else {
        return prefix || path.is_empty();
    };
    match first {
        PStep::Descend => (0..=path.len()).any(|k| matches(rest, &path[k..], prefix)),
        _ => {
            let Some((step, path_rest)) = path.split_first() else {
                return false;
            };
            let ok = match (first, step) {
                (PStep::Key(a), Step::Key(b)) => a == b,
                (PStep::AnyKey, Step::Key(_)) => true,
                (PStep::Index(a), Step::Index(b)) => a == b,
                (PStep::AnyIndex, Step::Index(_)) => true,
                _ => false,
            };
            ok && matches(rest, path_rest, prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        s.parse().unwrap()
    }

    #[test]
    fn wildcards_and_descent() {
        assert!(p("$.meta.*").covers_str("$.meta.version"));
        assert!(p("$.meta.*").covers_str("$.meta.build.sha"));
        assert!(!p("$.meta.*").covers_str("$.metadata"));
        assert!(!p("$.meta.*").covers_str("$.meta"));
        assert!(p("$..traceId").covers_str("$.a[3].b.traceId"));
        assert!(p("$..traceId").covers_str("$.traceId"));
        assert!(!p("$..traceId").covers_str("$.a.traceIds"));
        assert!(p("$.items[*].updatedAt").covers_str("$.items[12].updatedAt"));
        assert!(!p("$.items[*].updatedAt").covers_str("$.items.updatedAt"));
        assert!(p("$['odd key'][0]").covers_str("$['odd key'][0].x"));
        assert!(p("$['it\\'s']").covers_str("$['it\\'s']"));
        assert!(!p("$.a").covers_str("status"));
    }

    #[test]
    fn exact_matching_for_tolerances() {
        assert!(p("$.price").matches_str("$.price"));
        assert!(!p("$.price").matches_str("$.price.cents"));
        assert!(p("$.items[*].price").matches_str("$.items[0].price"));
    }

    #[test]
    fn patterns_find_what_a_document_holds() {
        let doc = serde_json::json!({"items": [{"price": 1}], "meta": {"v": 2}, "a": {"b": {"traceId": "x"}}});
        for yes in [
            "$.items[*].price",
            "$.items[0]",
            "$.meta.*",
            "$..traceId",
            "$['meta'].v",
        ] {
            assert!(p(yes).found_in(&doc), "{yes}");
        }
        for no in [
            "$.prise",
            "$.items[1]",
            "$.meta.v.w",
            "$..spanId",
            "$.items.price",
        ] {
            assert!(!p(no).found_in(&doc), "{no}");
        }
    }

    #[test]
    fn bad_patterns_say_what_was_expected() {
        for bad in ["meta.*", "$.", "$[x]", "$['open", "$.a[1"] {
            let e = bad.parse::<PathPattern>().unwrap_err();
            assert!(
                e.contains("expected") || e.contains("unterminated"),
                "{bad}: {e}"
            );
        }
    }
}
