//! Structural JSON diff: walks two documents side by side and reports each differing value
//! with its field path (`$.items[3].price`), tolerating times a few seconds apart.

use super::pathpat::parse_path;
use super::timeval::{
    both_near_now, is_time_field_name, within_tolerance_num, within_tolerance_str,
};
use super::{fold_path, more, CompareOptions, DiffKind, Difference};
use serde_json::{Number, Value};
use std::collections::HashSet;
use std::io;

/// Longest rendering of a value in a [`Difference`], in characters.
const MAX_RENDER_CHARS: usize = 200;

/// One step of the path from the root to the current node. Kept as a chain of borrowed
/// links on the stack so that walking equal documents allocates nothing; the path string is
/// built only when a difference is found.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Root,
    Key(&'a Seg<'a>, &'a str),
    Index(&'a Seg<'a>, usize),
}

impl Seg<'_> {
    fn render(&self) -> String {
        let mut s = String::new();
        self.render_into(&mut s);
        s
    }

    fn render_into(&self, s: &mut String) {
        match self {
            Seg::Root => s.push('$'),
            Seg::Key(parent, key) => {
                parent.render_into(s);
                push_key(s, key);
            }
            Seg::Index(parent, i) => {
                parent.render_into(s);
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
        }
    }

    /// The nearest object key above this node: the field name that says what an array
    /// element or value means (`"ts": [..]` makes each element a time).
    fn last_key(&self) -> Option<&str> {
        let mut cur = self;
        loop {
            match cur {
                Seg::Root => return None,
                Seg::Key(_, k) => return Some(k),
                Seg::Index(parent, _) => cur = parent,
            }
        }
    }
}

/// True for keys written as `.key`: identifiers, and all-digit keys (protobuf field numbers,
/// `$.msg[0].3.1`), which cannot be mistaken for an array index since indices use brackets.
fn is_identifier(key: &str) -> bool {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let mut bytes = key.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Appends `.key`, or `['key']` when the key is not an identifier, so that a key holding
/// `.`, `[` or `'` cannot be confused with path structure.
fn push_key(s: &mut String, key: &str) {
    if is_identifier(key) {
        s.push('.');
        s.push_str(key);
        return;
    }
    s.push_str("['");
    for c in key.chars() {
        if c == '\'' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push_str("']");
}

/// The path of member `key` of the object at `parent`, escaped exactly as in reported
/// differences, so that code matching paths (ignore rules) can build them the same way.
pub fn key_path(parent: &str, key: &str) -> String {
    let mut s = String::with_capacity(parent.len() + key.len() + 4);
    s.push_str(parent);
    push_key(&mut s, key);
    s
}

/// An `io::Write` that accepts a fixed number of bytes and then fails, which makes
/// `serde_json` stop serialising a huge subtree as soon as enough has been rendered.
struct Bounded {
    buf: Vec<u8>,
    cap: usize,
}

impl io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.cap - self.buf.len();
        if room == 0 {
            return Err(io::Error::other("rendering limit reached"));
        }
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Renders a value as compact JSON, cut to [`MAX_RENDER_CHARS`] characters with `…`.
pub fn render_value(v: &Value) -> String {
    // Four bytes per character at most, plus one character to know that a cut is needed.
    let mut w = Bounded {
        buf: Vec::new(),
        cap: (MAX_RENDER_CHARS + 1) * 4,
    };
    let complete = serde_json::to_writer(&mut w, v).is_ok();
    // The byte cap may split a character; keep the valid prefix.
    let valid = match std::str::from_utf8(&w.buf) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&w.buf[..e.valid_up_to()]).unwrap_or_default(),
    };
    truncate_chars(valid, MAX_RENDER_CHARS, !complete)
}

/// Cuts `s` to at most `max` characters, appending `…` when anything was dropped (or when
/// `force_ellipsis` says the input was already cut).
pub(crate) fn truncate_chars(s: &str, max: usize, force_ellipsis: bool) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None if force_ellipsis => format!("{s}…"),
        None => s.to_string(),
    }
}

/// Numeric equality across representations: `1` equals `1.0`; integers are compared exactly
/// (no rounding through `f64`), anything with a fraction as `f64`.
fn numbers_equal(x: &Number, y: &Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    let x_int = x.is_i64() || x.is_u64();
    let y_int = y.is_i64() || y.is_u64();
    if x_int && y_int {
        // One is negative and the other above i64::MAX.
        return false;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => x == y,
    }
}

/// True when two arrays hold the same elements, each as often, in another order.
fn same_elements_reordered(xa: &[Value], xb: &[Value]) -> bool {
    if xa.len() != xb.len() || xa.len() < 2 || xa == xb {
        return false;
    }
    let canonical = |x: &[Value]| {
        let mut v: Vec<String> = x.iter().map(Value::to_string).collect();
        v.sort_unstable();
        v
    };
    canonical(xa) == canonical(xb)
}

struct Walker<'o> {
    opts: &'o CompareOptions,
    out: &'o mut Vec<Difference>,
    /// Real differences this walk may still list: the cap less those listed before it
    /// (status, headers).
    room: usize,
    /// Real differences listed by this walk.
    real: usize,
    /// Tolerated differences kept; past the cap more are dropped (they are noise anyway).
    tolerated: usize,
    /// Aggregation keys of the real differences listed, gathered once the list is full.
    listed: Option<HashSet<String>>,
    /// Differences past the cap at a key already listed: counted, not listed. They add
    /// nothing the aggregation does not already see (a noisy field repeated in every element
    /// of a long array), so the list is cut without hiding anything.
    beyond: usize,
    /// A difference past the cap at a key not listed: the walk stops there, since what
    /// follows could be anything, and the exchange cannot be explained by noise.
    elsewhere: bool,
}

impl Walker<'_> {
    fn full(&self) -> bool {
        self.elsewhere
    }

    /// Notes a real difference at `path` past the cap.
    fn past_cap(&mut self, path: &str) {
        let (cap, out) = (self.opts.max_diffs, &*self.out);
        let listed = self.listed.get_or_insert_with(|| {
            out.iter()
                .filter(|d| !d.tolerated)
                .take(cap)
                .map(Difference::base_key)
                .collect()
        });
        if listed.contains(&fold_path(path)) {
            self.beyond += 1;
        } else {
            self.elsewhere = true;
        }
    }

    fn push(&mut self, seg: &Seg<'_>, a: Option<&Value>, b: Option<&Value>, tolerated: bool) {
        if tolerated && self.tolerated > self.opts.max_diffs {
            return;
        }
        let path = seg.render();
        if !self.opts.ignore_paths.is_empty() {
            if let Some(steps) = parse_path(&path) {
                if self.opts.ignore_paths.iter().any(|p| p.covers(&steps)) {
                    return;
                }
            }
        }
        if tolerated {
            self.tolerated += 1;
        } else if self.real >= self.room {
            self.past_cap(&path);
            return;
        } else {
            self.real += 1;
        }
        self.out.push(Difference {
            kind: DiffKind::Body,
            path,
            baseline: a.map(render_value),
            candidate: b.map(render_value),
            tolerated,
        });
    }

    fn is_unordered(&self, seg: &Seg<'_>) -> bool {
        !self.opts.unordered.is_empty()
            && parse_path(&seg.render())
                .is_some_and(|steps| self.opts.unordered.iter().any(|p| p.matches(&steps)))
    }

    fn within_numeric_tolerance(&self, seg: &Seg<'_>, x: &Number, y: &Number) -> bool {
        if self.opts.tolerances.is_empty() {
            return false;
        }
        let (Some(a), Some(b)) = (x.as_f64(), y.as_f64()) else {
            return false;
        };
        let Some(steps) = parse_path(&seg.render()) else {
            return false;
        };
        self.opts
            .tolerances
            .iter()
            .any(|t| t.path.matches(&steps) && t.accepts(a, b))
    }

    fn time_named(seg: &Seg<'_>) -> bool {
        seg.last_key().is_some_and(is_time_field_name)
    }

    /// Two numbers that read as epoch times of the same unit within the tolerance: under a
    /// time-named key (`created_at`) at any date, and under any other key (`server_time_ms`,
    /// a protobuf field number) when both are close to the present, as stamps of "now" are;
    /// an id that merely falls in an epoch range is seldom within a day of today.
    fn epochs_within_tolerance(&self, seg: &Seg<'_>, p: f64, q: f64) -> bool {
        within_tolerance_num(p, q, self.opts.time_tolerance)
            && (Self::time_named(seg) || both_near_now(p, q))
    }

    fn walk(&mut self, a: &Value, b: &Value, seg: &Seg<'_>) {
        if self.full() {
            return;
        }
        match (a, b) {
            (Value::Object(ma), Value::Object(mb)) => {
                for (k, va) in ma {
                    if self.full() {
                        return;
                    }
                    let child = Seg::Key(seg, k);
                    match mb.get(k) {
                        Some(vb) => self.walk(va, vb, &child),
                        None => self.push(&child, Some(va), None, false),
                    }
                }
                for (k, vb) in mb {
                    if self.full() {
                        return;
                    }
                    if !ma.contains_key(k) {
                        self.push(&Seg::Key(seg, k), None, Some(vb), false);
                    }
                }
            }
            (Value::Array(xa), Value::Array(xb)) => {
                if self.is_unordered(seg) {
                    // Compare as multisets: sort both sides by their canonical text, then
                    // pair elements in that order.
                    let mut sa: Vec<(String, &Value)> =
                        xa.iter().map(|v| (v.to_string(), v)).collect();
                    let mut sb: Vec<(String, &Value)> =
                        xb.iter().map(|v| (v.to_string(), v)).collect();
                    sa.sort_by(|x, y| x.0.cmp(&y.0));
                    sb.sort_by(|x, y| x.0.cmp(&y.0));
                    for i in 0..sa.len().max(sb.len()) {
                        if self.full() {
                            return;
                        }
                        let child = Seg::Index(seg, i);
                        match (sa.get(i), sb.get(i)) {
                            (Some(va), Some(vb)) => self.walk(va.1, vb.1, &child),
                            (va, vb) => self.push(&child, va.map(|v| v.1), vb.map(|v| v.1), false),
                        }
                    }
                    return;
                }
                if same_elements_reordered(xa, xb) {
                    // One difference of its own kind (`Change::Order`) instead of one per
                    // index: a set served in another order is another finding than changed
                    // elements, and measured noise or an `[[unordered]]` rule can explain it.
                    self.push(seg, Some(a), Some(b), false);
                    return;
                }
                for i in 0..xa.len().max(xb.len()) {
                    if self.full() {
                        return;
                    }
                    let child = Seg::Index(seg, i);
                    match (xa.get(i), xb.get(i)) {
                        (Some(va), Some(vb)) => self.walk(va, vb, &child),
                        (va, vb) => self.push(&child, va, vb, false),
                    }
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                if !numbers_equal(x, y) {
                    let tolerated = self.within_numeric_tolerance(seg, x, y)
                        || match (x.as_f64(), y.as_f64()) {
                            (Some(p), Some(q)) => self.epochs_within_tolerance(seg, p, q),
                            _ => false,
                        };
                    self.push(seg, Some(a), Some(b), tolerated);
                }
            }
            (Value::String(x), Value::String(y)) => {
                if x != y {
                    let tol = self.opts.time_tolerance;
                    // Epoch numbers are sometimes sent as strings (`"ts": "1700000000"`);
                    // the field name must still say time, as for bare numbers.
                    let tolerated = within_tolerance_str(x, y, tol)
                        || match (x.trim().parse::<f64>(), y.trim().parse::<f64>()) {
                            (Ok(p), Ok(q)) => self.epochs_within_tolerance(seg, p, q),
                            _ => false,
                        };
                    self.push(seg, Some(a), Some(b), tolerated);
                }
            }
            (Value::Bool(x), Value::Bool(y)) => {
                if x != y {
                    self.push(seg, Some(a), Some(b), false);
                }
            }
            (Value::Null, Value::Null) => {}
            // A change of type is reported once, at the node, not per descendant.
            _ => self.push(seg, Some(a), Some(b), false),
        }
    }
}

/// Compares two JSON documents structurally and appends one [`Difference`] (kind
/// [`DiffKind::Body`]) per differing leaf, added or removed member, or type change.
///
/// Object members compare by key (baseline key order, then candidate-only keys), arrays by
/// index. Strings that both read as times, and numbers under a time-named key that both read
/// as epochs, are `tolerated` when within `opts.time_tolerance`.
///
/// At most `opts.max_diffs` real differences are listed in all of `out`. Past that the walk
/// goes on only while each further difference is at a key (path with indices folded) already
/// listed; then one closing difference counts them ([`super::MORE_AT_LISTED`]). The first one
/// at another key stops the walk and closes the list with [`super::MORE_NOT_LISTED`].
pub fn diff_json(a: &Value, b: &Value, opts: &CompareOptions, out: &mut Vec<Difference>) {
    if let Some(w) = &opts.watch {
        w.note_document(a);
        w.note_document(b);
    }
    let before = out.iter().filter(|d| !d.tolerated).count();
    let mut w = Walker {
        opts,
        out,
        room: opts.max_diffs.saturating_sub(before),
        real: 0,
        tolerated: 0,
        listed: None,
        beyond: 0,
        elsewhere: false,
    };
    w.walk(a, b, &Seg::Root);
    let (beyond, elsewhere) = (w.beyond, w.elsewhere);
    if elsewhere {
        out.push(more(beyond + 1, true, true));
    } else if beyond > 0 {
        out.push(more(beyond, false, false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Change;
    use serde_json::json;

    fn run(a: Value, b: Value) -> Vec<Difference> {
        let mut out = Vec::new();
        diff_json(&a, &b, &CompareOptions::default(), &mut out);
        out
    }

    fn paths(d: &[Difference]) -> Vec<&str> {
        d.iter().map(|x| x.path.as_str()).collect()
    }

    #[test]
    fn equal_documents_no_diffs() {
        let v = json!({"a": [1, {"b": null, "c": "x"}], "d": true});
        assert!(run(v.clone(), v).is_empty());
    }

    #[test]
    fn nested_path_with_indices() {
        let d = run(
            json!({"a": {"b": [0, 1, 2, {"c": 1}]}}),
            json!({"a": {"b": [0, 1, 2, {"c": 2}]}}),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "$.a.b[3].c");
        assert_eq!(d[0].key(), "$.a.b[*].c");
        assert_eq!(d[0].kind, DiffKind::Body);
        assert_eq!(d[0].baseline.as_deref(), Some("1"));
        assert_eq!(d[0].candidate.as_deref(), Some("2"));
        assert!(!d[0].tolerated);
    }

    #[test]
    fn key_escaping() {
        let d = run(
            json!({"a b": 1, "it's": 1, "back\\slash": 1, "9lives": 1, "": 1, "_ok9": 1, "x.y": 1}),
            json!({"a b": 2, "it's": 2, "back\\slash": 2, "9lives": 2, "": 2, "_ok9": 2, "x.y": 2}),
        );
        let mut p = paths(&d);
        p.sort();
        let mut want = vec![
            "$['a b']",
            "$['it\\'s']",
            "$['back\\\\slash']",
            "$['9lives']",
            "$['']",
            "$._ok9",
            "$['x.y']",
        ];
        want.sort();
        assert_eq!(p, want);
        assert_eq!(key_path("$.a", "b c"), "$.a['b c']");
        // Field numbers read as in `protoc --decode_raw`, and fold like any key.
        assert_eq!(key_path("$.msg[0]", "3"), "$.msg[0].3");
        let d = run(json!({"3": {"1": 1}}), json!({"3": {"1": 2}}));
        assert_eq!(paths(&d), ["$.3.1"]);
    }

    #[test]
    fn missing_and_extra_keys_and_elements() {
        let d = run(
            json!({"keep": 1, "gone": "x", "list": [1, 2, 3]}),
            json!({"keep": 1, "list": [1], "new": {"n": 1}}),
        );
        let expect: Vec<(&str, Option<&str>, Option<&str>)> = vec![
            ("$.gone", Some("\"x\""), None),
            ("$.list[1]", Some("2"), None),
            ("$.list[2]", Some("3"), None),
            ("$.new", None, Some("{\"n\":1}")),
        ];
        let mut got: Vec<_> = d
            .iter()
            .map(|x| {
                (
                    x.path.as_str(),
                    x.baseline.as_deref(),
                    x.candidate.as_deref(),
                )
            })
            .collect();
        // Key order within objects depends on serde_json's map; the candidate-only key
        // still comes after every baseline key.
        assert_eq!(got.last().map(|g| g.0), Some("$.new"));
        got.sort();
        assert_eq!(got, expect);
    }

    #[test]
    fn baseline_key_order_then_candidate_only() {
        let a: Value = serde_json::from_str(r#"{"z": 1, "a": 1}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y": 2, "a": 2, "z": 2}"#).unwrap();
        let order_a: Vec<_> = a
            .as_object()
            .unwrap()
            .keys()
            .map(|k| format!("$.{k}"))
            .collect();
        let d = run(a, b);
        let p = paths(&d);
        assert_eq!(
            p[..2],
            order_a.iter().map(String::as_str).collect::<Vec<_>>()[..]
        );
        assert_eq!(p[2], "$.y");
    }

    #[test]
    fn type_change_reported_once() {
        let d = run(json!({"a": {"b": 1, "c": 2}}), json!({"a": [1, 2]}));
        assert_eq!(paths(&d), ["$.a"]);
        assert_eq!(d[0].baseline.as_deref(), Some(r#"{"b":1,"c":2}"#));
        assert_eq!(d[0].candidate.as_deref(), Some("[1,2]"));
        let d = run(json!("1"), json!(1));
        assert_eq!(paths(&d), ["$"]);
        assert_eq!(d[0].baseline.as_deref(), Some("\"1\""));
    }

    #[test]
    fn number_equality() {
        assert!(run(json!(1), json!(1.0)).is_empty());
        assert!(run(json!(-3), json!(-3.0)).is_empty());
        assert!(run(json!(0.5), json!(0.5)).is_empty());
        assert!(run(json!(u64::MAX), json!(u64::MAX)).is_empty());
        assert_eq!(run(json!(1), json!(1.5)).len(), 1);
        assert_eq!(run(json!(-1), json!(u64::MAX)).len(), 1);
        // Exact for integers beyond f64 precision.
        assert_eq!(
            run(
                json!(9_007_199_254_740_993u64),
                json!(9_007_199_254_740_992u64)
            )
            .len(),
            1
        );
        let parsed: Value = serde_json::from_str("[1, 1.0, 1e0]").unwrap();
        let arr = parsed.as_array().unwrap();
        assert!(run(arr[0].clone(), arr[2].clone()).is_empty());
    }

    #[test]
    fn tolerated_times_in_strings() {
        let d = run(
            json!({"meta": {"generated": "2023-11-14T22:13:20.001Z", "http": "Tue, 14 Nov 2023 22:13:20 GMT"}}),
            json!({"meta": {"generated": "2023-11-14T22:13:22.999Z", "http": "Tue, 14 Nov 2023 22:13:24 GMT"}}),
        );
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|x| x.tolerated), "{d:?}");
    }

    #[test]
    fn time_an_hour_off_not_tolerated() {
        let d = run(
            json!({"created_at": "2023-11-14T22:13:20Z", "ts": 1_700_000_000}),
            json!({"created_at": "2023-11-14T23:13:20Z", "ts": 1_700_003_600}),
        );
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|x| !x.tolerated), "{d:?}");
    }

    #[test]
    fn tolerated_epoch_numbers_need_time_name() {
        let d = run(
            json!({"ts": 1_700_000_000, "updatedAt": 1_700_000_000_000u64, "msec": 1_700_000_000.123, "count": 1_700_000_000, "times": [1_700_000_000.5], "expires": "1700000000"}),
            json!({"ts": 1_700_000_002, "updatedAt": 1_700_000_001_500u64, "msec": 1_700_000_000.456, "count": 1_700_000_001, "times": [1_700_000_001.0], "expires": "1700000003"}),
        );
        let tolerated: Vec<_> = d
            .iter()
            .filter(|x| x.tolerated)
            .map(|x| x.path.as_str())
            .collect();
        let mut t = tolerated.clone();
        t.sort();
        assert_eq!(t, ["$.expires", "$.ts", "$.updatedAt"]);
        // `msec` and `count` are not time names; `times` neither.
        assert_eq!(d.len(), 6);
    }

    #[test]
    fn epoch_numbers_near_now_are_times_whatever_the_name() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let d = run(
            json!({"server_time_ms": now_ms, "5": now_ms / 1000, "seq": now_ms, "old_ms": 1_700_000_000_000u64, "unit": now_ms}),
            json!({"server_time_ms": now_ms + 1_200, "5": now_ms / 1000 + 2, "seq": now_ms + 60_000, "old_ms": 1_700_000_001_000u64, "unit": now_ms / 1000}),
        );
        let mut tolerated: Vec<_> = d
            .iter()
            .filter(|x| x.tolerated)
            .map(|x| x.path.as_str())
            .collect();
        tolerated.sort();
        // A protobuf field number is as nameless as `server_time_ms`. `seq` is a minute
        // off, `old_ms` was not stamped today, `unit` changed from ms to s: all real.
        assert_eq!(tolerated, ["$.5", "$.server_time_ms"], "{d:?}");
        assert_eq!(d.len(), 5);
    }

    #[test]
    fn a_reordered_array_is_one_order_difference() {
        let d = run(
            json!({"tags": ["a", "b", "c"], "ids": [1, 2, 3], "same": [1, 2]}),
            json!({"tags": ["c", "a", "b"], "ids": [1, 2, 4], "same": [1, 2]}),
        );
        assert_eq!(paths(&d), ["$.ids[2]", "$.tags"], "{d:?}");
        assert_eq!(d[1].change(), Change::Order);
        assert_eq!(d[1].key(), "$.tags (order)");
        assert_eq!(d[0].change(), Change::Value);
        assert_eq!(d[0].key(), "$.ids[*]");
    }

    #[test]
    fn each_kind_of_change_has_its_own_key() {
        let d = run(
            json!({"price_cents": 1250, "gone": 1, "stock": 3, "n": null}),
            json!({"price_cents": "1250", "stock": 4, "new": true, "n": {}}),
        );
        let keys: Vec<String> = d.iter().map(Difference::key).collect();
        assert_eq!(
            keys,
            [
                "$.gone (removed)",
                "$.n (type)",
                "$.price_cents (type)",
                "$.stock",
                "$.new (added)"
            ]
        );
        for x in &d {
            assert_eq!(
                Change::split_key(&x.key()),
                (x.base_key().as_str(), x.change())
            );
        }
    }

    #[test]
    fn epoch_units_must_match() {
        let d = run(
            json!({"ts": 1_700_000_000}),
            json!({"ts": 1_700_000_000_000u64}),
        );
        assert_eq!(d.len(), 1);
        assert!(!d[0].tolerated);
    }

    #[test]
    fn rendering_truncated_at_char_boundary() {
        let long = "é".repeat(500);
        let d = run(json!({"s": long}), json!({"s": "short"}));
        let r = d[0].baseline.as_deref().unwrap();
        assert_eq!(r.chars().count(), MAX_RENDER_CHARS + 1);
        assert!(r.starts_with("\"éé"));
        assert!(r.ends_with('…'));
        assert_eq!(d[0].candidate.as_deref(), Some("\"short\""));
        let exact = "a".repeat(MAX_RENDER_CHARS - 2);
        assert_eq!(
            render_value(&json!(exact)).chars().count(),
            MAX_RENDER_CHARS
        );
        let huge: Vec<u32> = (0..1_000_000).collect();
        assert!(render_value(&json!(huge)).ends_with('…'));
    }

    #[test]
    fn stops_after_max_diffs() {
        let a: Vec<u32> = (0..10_000).collect();
        let b: Vec<u32> = (1..10_001).collect();
        let opts = CompareOptions {
            max_diffs: 5,
            ..Default::default()
        };
        let mut out = Vec::new();
        diff_json(&json!(a), &json!(b), &opts, &mut out);
        assert_eq!(out.len(), opts.max_diffs + 1);
        assert_eq!(
            out[5].candidate.as_deref(),
            Some("9995 more differences at the paths listed")
        );

        // The first difference at a path not listed stops the walk.
        let objs = |v: &Vec<u32>| -> Vec<Value> { v.iter().map(|n| json!({"n": n})).collect() };
        let mut c = objs(&b);
        c[9000]["deep"] = json!(true);
        c[9500]["deeper"] = json!(true);
        let mut out = Vec::new();
        diff_json(&json!(objs(&a)), &json!(c), &opts, &mut out);
        assert_eq!(out.len(), opts.max_diffs + 1);
        assert_eq!(out[5].path, crate::compare::MORE_NOT_LISTED);
        assert_eq!(
            out[5].candidate.as_deref(),
            Some("at least 8997 more differences not listed, not all at the paths listed")
        );
    }
}
