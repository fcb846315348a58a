//! `shadowdiff interfaces`: the inventory of a capture without replaying anything. Every
//! interface seen, with its count, first and last time seen, and tenants; and, given the new
//! gateway's rule list (`METHOD /path` globs, or the bare paths and prefixes of an allow-list
//! like haproxy's `path -f` files), the interfaces no rule covers and the rules no traffic
//! used. This is the cheapest answer to "which rare interfaces would the new gateway miss".

use crate::error::{Error, Result};
use crate::interface::{InterfaceKey, Keyer};
use crate::recording::format::format_ts_us;
use crate::recording::{ReadOptions, RecordingReader};
use crate::replay::select::exchange_interface;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Distinct tenants remembered per interface; beyond it they are only counted, so memory
/// stays bounded on captures with one tenant per client.
pub const MAX_TENANTS: usize = 1000;

/// Tenants named per interface in the text output.
const SHOWN_TENANTS: usize = 4;

/// Widest a column of the text output is padded to. A longer cell (an interface name is
/// as long as the request target that made it) overflows its column instead of widening
/// every row, and the width stays within what Rust's formatter accepts (65,535).
const MAX_COLUMN_WIDTH: usize = 100;

/// One interface of the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceStat {
    /// The interface key.
    pub interface: String,
    /// Exchanges seen.
    pub count: u64,
    /// Earliest timestamp, RFC 3339.
    pub first_seen: String,
    /// Latest timestamp, RFC 3339.
    pub last_seen: String,
    /// Distinct tenants (at most [`MAX_TENANTS`]), sorted.
    pub tenants: Vec<String>,
    /// Exchanges whose tenant was not remembered because the cap was reached.
    pub tenants_overflow: u64,
}

/// How a line of a rules file was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleForm {
    /// `METHOD /path-glob`: that method (or method glob) on the paths the glob matches.
    MethodPath,
    /// A bare path, as gateway allow-lists hold them (`/rpc/catalog/GetItem`, `*` globs
    /// allowed): that path for any method, and the gRPC interface of that name.
    Path,
    /// A bare path ending in `/` (`/rpc/orders/`): every path that begins with it, for any
    /// method, the way haproxy's `path_beg` reads it.
    PathPrefix,
    /// Any line, as a glob over the whole key: interfaces keyed by a header or a JSON field
    /// are the gateway's own names, not routes, so a line cannot be checked for a form.
    KeyGlob,
}

/// One line of a rules file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// 1-based line number.
    pub line: u64,
    /// The rule as written, its method in upper case and one space before its path.
    pub pattern: String,
    /// How the line was read.
    pub form: RuleForm,
    /// Exchanges of the inventory this rule matches.
    pub exchanges: u64,
    /// The `*` glob matched: over the whole key for [`RuleForm::MethodPath`] and
    /// [`RuleForm::KeyGlob`], over the key's path for the bare forms.
    #[serde(skip)]
    glob: String,
}

impl Rule {
    /// True when this rule covers the interface key `interface`.
    pub fn covers(&self, interface: &str) -> bool {
        match self.form {
            RuleForm::MethodPath | RuleForm::KeyGlob => crate::glob::matches(&self.glob, interface),
            RuleForm::Path | RuleForm::PathPrefix => {
                route_path(interface).is_some_and(|p| crate::glob::matches(&self.glob, p))
            }
        }
    }
}

/// The path of a default interface key: all of a gRPC key (`/pkg.Service/Method`), the part
/// after the method of an HTTP one (`POST /rpc/orders/{id}`).
fn route_path(key: &str) -> Option<&str> {
    if key.starts_with('/') {
        return Some(key);
    }
    let (_, path) = key.split_once(' ')?;
    path.starts_with('/').then_some(path)
}

/// The methods a `METHOD /path` rule may name: RFC 9110's and PATCH. A word outside them
/// is far more often a typo (`GETT`) than a method the gateway routes, and a typo would
/// otherwise cover nothing without a word.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// What every error about a rule line ends with: the forms a line may take.
const RULE_FORMS: &str = "a rule is `METHOD /path-glob` (e.g. `GET /api/users/*`) or a bare \
    path for any method (e.g. `/rpc/catalog/GetItem`; one ending in `/`, like `/rpc/orders/`, \
    covers every path under it)";

/// Reads one rule line (comment and surrounding blanks removed) under the default key.
fn parse_route(line: &str) -> std::result::Result<(String, RuleForm, String), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [path] if path.starts_with('/') => {
            if path.ends_with('/') {
                Ok((path.into(), RuleForm::PathPrefix, format!("{path}*")))
            } else {
                Ok((path.into(), RuleForm::Path, path.into()))
            }
        }
        [word] if is_method(word) => Err(format!("`{word}` needs a path after it")),
        [_] => Err("a path starts with `/`".into()),
        [path, _] if path.starts_with('/') => {
            Err("a bare path is one word, with nothing after it".into())
        }
        [method, path] => {
            if !is_method(method) {
                return Err(format!(
                    "`{method}` is not an HTTP method ({}, or a `*` glob)",
                    METHODS.join(", ")
                ));
            }
            if !(path.starts_with('/') || path.starts_with('*')) {
                return Err(format!("the path after `{method}` starts with `/`"));
            }
            let rule = format!("{} {path}", method.to_ascii_uppercase());
            Ok((rule.clone(), RuleForm::MethodPath, rule))
        }
        _ => Err(format!("{} words where a rule has one or two", words.len())),
    }
}

/// A known method in any case (interface keys spell methods in upper case, so `get` can
/// only mean `GET`), or a glob of letters and `*` such as `*` or `P*`.
fn is_method(word: &str) -> bool {
    METHODS.iter().any(|m| m.eq_ignore_ascii_case(word))
        || (word.contains('*') && word.bytes().all(|c| c.is_ascii_alphabetic() || c == b'*'))
}

/// The rules check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RulesCheck {
    /// The rules file.
    pub file: String,
    /// Interfaces no rule matches: the new gateway would answer them with "no route".
    pub uncovered: Vec<InterfaceStat>,
    /// Rules that match no interface seen.
    pub unused: Vec<Rule>,
    /// Every rule with how much traffic it matches.
    pub rules: Vec<Rule>,
}

/// The whole inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// Recording files read.
    pub recordings: Vec<String>,
    /// Exchanges read.
    pub exchanges: u64,
    /// Interfaces, most used first.
    pub interfaces: Vec<InterfaceStat>,
    /// The rules check, with `--rules`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesCheck>,
    /// Warnings from reading the recordings.
    pub warnings: Vec<String>,
}

/// Parses a rules file (`file` names it in errors): one rule per line; `#` starts a comment
/// (a whole line, or after whitespace at the end of a line); blank lines are ignored.
///
/// Under the default interface key a line is `METHOD /path-glob` or a bare path (see
/// [`RuleForm`]), and any other line is an error naming the line and both forms, since a
/// line that is silently read as covering nothing would report every interface as
/// uncovered. Under a header or JSON key every line is a glob over the key, as before.
pub fn parse_rules(file: &Path, text: &str, key: &InterfaceKey) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    // An editor's byte-order mark is not part of the first rule.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, raw) in text.lines().enumerate() {
        let mut line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(at) = line.find(" #").or_else(|| line.find("\t#")) {
            line = line[..at].trim_end();
        }
        if line.is_empty() {
            continue;
        }
        let number = n as u64 + 1;
        let (pattern, form, glob) = match key {
            InterfaceKey::Default => parse_route(line).map_err(|why| Error::Input {
                file: file.to_path_buf(),
                line: number,
                message: format!("cannot read the rule {line:?}: {why}; {RULE_FORMS}"),
            })?,
            InterfaceKey::Header(_) | InterfaceKey::JsonPointer(_) => {
                (line.to_string(), RuleForm::KeyGlob, line.to_string())
            }
        };
        out.push(Rule {
            line: number,
            pattern,
            form,
            exchanges: 0,
            glob,
        });
    }
    Ok(out)
}

struct Acc {
    count: u64,
    first: i64,
    last: i64,
    tenants: BTreeSet<String>,
    overflow: u64,
}

/// Options of an inventory.
#[derive(Clone, Debug, Default)]
pub struct InventoryOptions {
    /// Interface key rule and templates.
    pub keyer: Keyer,
    /// Tenant header (its value overrides a recorded tenant).
    pub tenant_header: Option<String>,
    /// Reader options.
    pub read: ReadOptions,
}

/// Reads the recordings and builds the inventory, checking `rules` (file, text) if given.
pub fn inventory(
    recordings: &[PathBuf],
    opts: &InventoryOptions,
    rules: Option<(&Path, &str)>,
) -> Result<Inventory> {
    // A bad rule line stops the run before a long capture is read.
    let rules = rules
        .map(|(file, text)| parse_rules(file, text, &opts.keyer.key).map(|r| (file, r)))
        .transpose()?;
    let mut reader = RecordingReader::open(recordings, opts.read)?;
    let mut acc: HashMap<String, Acc> = HashMap::new();
    let mut warnings = Vec::new();
    while let Some(ex) = reader.next_exchange()? {
        let name = exchange_interface(&ex, &opts.keyer);
        let tenant = match &opts.tenant_header {
            Some(h) => crate::exchange::header(&ex.request.headers, h)
                .map(str::to_string)
                .or(ex.tenant),
            None => ex.tenant,
        };
        let a = acc.entry(name).or_insert_with(|| Acc {
            count: 0,
            first: ex.ts_us,
            last: ex.ts_us,
            tenants: BTreeSet::new(),
            overflow: 0,
        });
        a.count += 1;
        a.first = a.first.min(ex.ts_us);
        a.last = a.last.max(ex.ts_us);
        if let Some(t) = tenant {
            if a.tenants.len() < MAX_TENANTS || a.tenants.contains(&t) {
                a.tenants.insert(t);
            } else {
                a.overflow += 1;
            }
        }
        warnings.extend(reader.take_warnings());
    }
    warnings.extend(reader.take_warnings());
    let mut interfaces: Vec<InterfaceStat> = acc
        .into_iter()
        .map(|(interface, a)| InterfaceStat {
            interface,
            count: a.count,
            first_seen: format_ts_us(a.first),
            last_seen: format_ts_us(a.last),
            tenants: a.tenants.into_iter().collect(),
            tenants_overflow: a.overflow,
        })
        .collect();
    interfaces.sort_by(|a, b| b.count.cmp(&a.count).then(a.interface.cmp(&b.interface)));
    let rules = rules.map(|(file, rules)| check_rules(file, rules, &interfaces));
    Ok(Inventory {
        recordings: recordings.iter().map(|p| p.display().to_string()).collect(),
        exchanges: reader.exchanges_read(),
        interfaces,
        rules,
        warnings,
    })
}

fn check_rules(file: &Path, mut rules: Vec<Rule>, interfaces: &[InterfaceStat]) -> RulesCheck {
    let mut uncovered = Vec::new();
    for i in interfaces {
        let mut covered = false;
        for r in rules.iter_mut() {
            if r.covers(&i.interface) {
                r.exchanges += i.count;
                covered = true;
            }
        }
        if !covered {
            uncovered.push(i.clone());
        }
    }
    // The rarest first: those are the ones a rule list built from monitoring forgets.
    uncovered.sort_by(|a, b| a.count.cmp(&b.count).then(a.interface.cmp(&b.interface)));
    RulesCheck {
        file: file.display().to_string(),
        unused: rules.iter().filter(|r| r.exchanges == 0).cloned().collect(),
        uncovered,
        rules,
    }
}

/// `2026-11-02T09:00:01Z`: seconds are enough to read.
fn short_ts(ts: &str) -> String {
    match ts.get(..19) {
        Some(s) => format!("{s}Z"),
        None => ts.to_string(),
    }
}

fn tenants(i: &InterfaceStat) -> String {
    if i.tenants.is_empty() {
        return "-".into();
    }
    let mut s = i
        .tenants
        .iter()
        .take(SHOWN_TENANTS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = i.tenants.len().saturating_sub(SHOWN_TENANTS);
    if more > 0 || i.tenants_overflow > 0 {
        let _ = write!(
            s,
            " (+{}{})",
            more,
            if i.tenants_overflow > 0 {
                " or more"
            } else {
                ""
            }
        );
    }
    s
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Inventory {
    /// The text report: the table, then the rules check.
    pub fn render_text(&self) -> String {
        let head = [
            "interface",
            "exchanges",
            "first seen",
            "last seen",
            "tenants",
        ];
        let rows: Vec<[String; 5]> = self
            .interfaces
            .iter()
            .map(|i| {
                [
                    i.interface.clone(),
                    i.count.to_string(),
                    short_ts(&i.first_seen),
                    short_ts(&i.last_seen),
                    tenants(i),
                ]
            })
            .collect();
        let mut w = [0usize; 5];
        for (c, wc) in w.iter_mut().enumerate() {
            *wc = rows
                .iter()
                .map(|r| r[c].chars().count())
                .chain([head[c].len()])
                .max()
                .unwrap_or(0)
                .min(MAX_COLUMN_WIDTH);
        }
        let mut out = String::new();
        let line = |cells: [&str; 5], out: &mut String| {
            let s = format!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3]
            );
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(head, &mut out);
        for r in &rows {
            line([&r[0], &r[1], &r[2], &r[3], &r[4]], &mut out);
        }
        let _ = writeln!(
            out,
            "\n{} in {}.",
            plural(self.interfaces.len() as u64, "interface", "interfaces"),
            plural(self.exchanges, "exchange", "exchanges")
        );
        if let Some(rc) = &self.rules {
            out.push('\n');
            if rc.uncovered.is_empty() {
                let _ = writeln!(out, "Every interface is covered by a rule in {}.", rc.file);
            } else {
                let _ = writeln!(
                    out,
                    "NOT COVERED by any rule in {} ({}): the new gateway would not route these",
                    rc.file,
                    rc.uncovered.len()
                );
                let wn = rc
                    .uncovered
                    .iter()
                    .map(|i| i.interface.chars().count())
                    .max()
                    .unwrap_or(0)
                    .min(MAX_COLUMN_WIDTH);
                for i in &rc.uncovered {
                    let _ = writeln!(
                        out,
                        "  {:<wn$}  {}, last seen {}",
                        i.interface,
                        plural(i.count, "exchange", "exchanges"),
                        short_ts(&i.last_seen)
                    );
                }
            }
            if !rc.unused.is_empty() {
                let _ = writeln!(out, "\nRules no traffic used ({}):", rc.unused.len());
                for r in &rc.unused {
                    let prefix = if r.form == RuleForm::PathPrefix {
                        " (prefix)"
                    } else {
                        ""
                    };
                    let _ = writeln!(out, "  {}:{}: {}{prefix}", rc.file, r.line, r.pattern);
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }

    /// True when a rules check found interfaces no rule covers.
    pub fn has_uncovered(&self) -> bool {
        self.rules.as_ref().is_some_and(|r| !r.uncovered.is_empty())
    }
}

/// Reads a rules file, naming it in errors.
pub fn read_rules(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::Input {
        file: path.to_path_buf(),
        line: 1,
        message: format!("the rules file is not UTF-8 text ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Rule>> {
        parse_rules(Path::new("rules.txt"), text, &InterfaceKey::Default)
    }

    fn forms(text: &str) -> Vec<(u64, String, RuleForm)> {
        parse(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|r| (r.line, r.pattern, r.form))
            .collect()
    }

    #[test]
    fn rules_skip_comments_and_blank_lines() {
        let got =
            forms("# gateway rules\n\nGET /api/*   # all reads\n  POST\t /api/orders\r\n\t#x\n");
        assert_eq!(
            got,
            [
                (3, "GET /api/*".into(), RuleForm::MethodPath),
                (4, "POST /api/orders".into(), RuleForm::MethodPath)
            ]
        );
    }

    #[test]
    fn haproxy_lists_read_as_paths_and_prefixes() {
        let got =
            forms("\u{feff}# allowed.lst\n/rpc/catalog/GetItem\n/rpc/orders/\n/rpc/*/Health\n/\n");
        assert_eq!(
            got,
            [
                (2, "/rpc/catalog/GetItem".into(), RuleForm::Path),
                (3, "/rpc/orders/".into(), RuleForm::PathPrefix),
                (4, "/rpc/*/Health".into(), RuleForm::Path),
                (5, "/".into(), RuleForm::PathPrefix)
            ]
        );
        let rules = parse("/rpc/catalog/GetItem\n/rpc/orders/\n/rpc/*/Health\n").unwrap();
        let covered_by = |key: &str| -> Vec<u64> {
            rules
                .iter()
                .filter(|r| r.covers(key))
                .map(|r| r.line)
                .collect()
        };
        // A bare path covers every method, and the gRPC interface of that name.
        assert_eq!(covered_by("POST /rpc/catalog/GetItem"), [1]);
        assert_eq!(covered_by("GET /rpc/catalog/GetItem"), [1]);
        assert_eq!(covered_by("/rpc/catalog/GetItem"), [1]);
        assert!(covered_by("POST /rpc/catalog/GetItems").is_empty());
        assert!(covered_by("POST /rpc/catalog/GetItem/x").is_empty());
        // A trailing `/` is a prefix: the directory itself and everything under it.
        assert_eq!(covered_by("POST /rpc/orders/"), [2]);
        assert_eq!(covered_by("POST /rpc/orders/Create"), [2]);
        assert_eq!(covered_by("DELETE /rpc/orders/{id}/lines"), [2]);
        assert!(covered_by("POST /rpc/orders").is_empty());
        assert!(covered_by("POST /rpc/ordersX").is_empty());
        // `*` stays a glob in a bare path.
        assert_eq!(covered_by("GET /rpc/catalog/Health"), [3]);
        // A key that is not a route (a header value) is not a path.
        assert!(covered_by("catalog /rpc/x").is_empty());
        assert!(covered_by("GetItem").is_empty());
    }

    #[test]
    fn method_rules_keep_their_meaning() {
        let rules =
            parse("GET /api/*\npost /api/orders\n* /api/cart/*\nP* /api/users/*\nGET *\n").unwrap();
        let covered_by = |key: &str| -> Vec<u64> {
            rules
                .iter()
                .filter(|r| r.covers(key))
                .map(|r| r.line)
                .collect()
        };
        assert_eq!(covered_by("GET /api/users/{id}"), [1, 5]);
        assert_eq!(covered_by("POST /api/orders"), [2]);
        assert_eq!(covered_by("DELETE /api/cart/{id}"), [3]);
        assert_eq!(covered_by("PUT /api/users/{id}"), [4]);
        assert!(covered_by("POST /api/search").is_empty());
        // A method rule names an HTTP route, never a gRPC one.
        assert!(covered_by("/api/users.Users/Get").is_empty());
        // A trailing `/` after a method is exact, as it always was.
        let exact = parse("GET /api/\n").unwrap();
        assert!(exact[0].covers("GET /api/"));
        assert!(!exact[0].covers("GET /api/users"));
    }

    #[test]
    fn unreadable_lines_name_file_line_and_both_forms() {
        for (text, line, why) in [
            ("GET /a\nGETT /x\n", 2, "`GETT` is not an HTTP method"),
            ("rpc/foo\n", 1, "a path starts with `/`"),
            ("# c\n\n\u{1}garbage\n", 3, "a path starts with `/`"),
            ("GET\n", 1, "`GET` needs a path after it"),
            ("GET rpc/foo\n", 1, "the path after `GET` starts with `/`"),
            ("/rpc/orders/ be_orders\n", 1, "a bare path is one word"),
            ("GET /a /b\n", 1, "3 words where a rule has one or two"),
            ("*\n", 1, "`*` needs a path after it"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.exit_code(), 2, "{text:?}");
            let msg = e.to_string();
            let first = text.lines().nth(line - 1).unwrap_or_default();
            assert!(
                msg.starts_with(&format!(
                    "rules.txt:{line}: cannot read the rule {:?}",
                    first.trim()
                )),
                "{msg}"
            );
            assert!(msg.contains(why), "{msg}");
            assert!(
                msg.contains("`METHOD /path-glob`") && msg.contains("bare path"),
                "{msg}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(256)))]

        /// Any text either parses or gives an error naming a line inside the file.
        #[test]
        fn random_rules_never_panic(text in "[/a-zA-Z*# \t\r\n{}\u{feff}\u{e9}]{0,200}") {
            match parse(&text) {
                Ok(rules) => {
                    for r in &rules {
                        let _ = r.covers("POST /rpc/{id}/x");
                    }
                }
                Err(Error::Input { line, .. }) => {
                    proptest::prop_assert!(line >= 1 && line as usize <= text.lines().count());
                }
                Err(other) => proptest::prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }

    #[test]
    fn header_keys_take_any_line_as_a_glob() {
        let key = InterfaceKey::Header("x-rpc-method".into());
        let rules = parse_rules(Path::new("r"), "catalog.*\nGETT /x\n", &key).unwrap();
        assert_eq!(rules[0].form, RuleForm::KeyGlob);
        assert!(rules[0].covers("catalog.GetItem"));
        assert!(rules[1].covers("GETT /x"));
    }

    #[test]
    fn uncovered_rarest_first_and_unused_rules() {
        let stat = |name: &str, count: u64| InterfaceStat {
            interface: name.into(),
            count,
            first_seen: "2026-11-02T09:00:00.000000Z".into(),
            last_seen: "2026-11-02T09:10:00.000000Z".into(),
            tenants: Vec::new(),
            tenants_overflow: 0,
        };
        let interfaces = vec![
            stat("GET /api/users/{id}", 60),
            stat("GET /api/search", 70),
            stat("GET /api/reports/annual-export", 1),
            stat("DELETE /api/cache", 3),
        ];
        let rules = parse("GET /api/users/*\nGET /api/search\nGET /api/legacy/*\n").unwrap();
        let rc = check_rules(Path::new("rules.txt"), rules, &interfaces);
        let names: Vec<&str> = rc.uncovered.iter().map(|i| i.interface.as_str()).collect();
        assert_eq!(
            names,
            ["GET /api/reports/annual-export", "DELETE /api/cache"]
        );
        assert_eq!(rc.unused.len(), 1);
        assert_eq!(
            (rc.unused[0].line, rc.unused[0].pattern.as_str()),
            (3, "GET /api/legacy/*")
        );
        assert_eq!(rc.rules[0].exchanges, 60);
        let inv = Inventory {
            recordings: vec!["r.jsonl".into()],
            exchanges: 134,
            interfaces,
            rules: Some(rc),
            warnings: Vec::new(),
        };
        assert!(inv.has_uncovered());
        let text = inv.render_text();
        assert!(
            text.contains("NOT COVERED by any rule in rules.txt (2)"),
            "{text}"
        );
        assert!(
            text.contains(
                "  GET /api/reports/annual-export  1 exchange, last seen 2026-11-02T09:10:00Z"
            ),
            "{text}"
        );
        assert!(text.contains("rules.txt:3: GET /api/legacy/*"), "{text}");
    }
}
