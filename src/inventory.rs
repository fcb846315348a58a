//! `shadowdiff interfaces`: the inventory of a capture without replaying anything. Every
//! interface seen, with its count, first and last time seen, and tenants; and, given the new
//! gateway's rule list, the interfaces no rule covers and the rules no traffic used. This is
//! the cheapest answer to "which rare interfaces would the new gateway miss".

use crate::error::{Error, Result};
use crate::interface::Keyer;
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

/// One line of a rules file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// 1-based line number.
    pub line: u64,
    /// The pattern (`*` globs).
    pub pattern: String,
    /// Exchanges of the inventory this rule matches.
    pub exchanges: u64,
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

/// Parses a rules file: one pattern per line; `#` starts a comment (a whole line, or after
/// whitespace at the end of a line); blank lines are ignored.
pub fn parse_rules(text: &str) -> Vec<Rule> {
    let mut out = Vec::new();
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
        out.push(Rule {
            line: n as u64 + 1,
            pattern: line.to_string(),
            exchanges: 0,
        });
    }
    out
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
    let rules = rules.map(|(file, text)| check_rules(file, text, &interfaces));
    Ok(Inventory {
        recordings: recordings.iter().map(|p| p.display().to_string()).collect(),
        exchanges: reader.exchanges_read(),
        interfaces,
        rules,
        warnings,
    })
}

fn check_rules(file: &Path, text: &str, interfaces: &[InterfaceStat]) -> RulesCheck {
    let mut rules = parse_rules(text);
    let mut uncovered = Vec::new();
    for i in interfaces {
        let mut covered = false;
        for r in rules.iter_mut() {
            if crate::glob::matches(&r.pattern, &i.interface) {
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
                .unwrap_or(0);
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
                    .unwrap_or(0);
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
                    let _ = writeln!(out, "  {}:{}: {}", rc.file, r.line, r.pattern);
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

    #[test]
    fn rules_skip_comments_and_blank_lines() {
        let rules =
            parse_rules("# gateway rules\n\nGET /api/*   # all reads\n  POST /api/orders\n\t#x\n");
        let got: Vec<(u64, &str)> = rules.iter().map(|r| (r.line, r.pattern.as_str())).collect();
        assert_eq!(got, [(3, "GET /api/*"), (4, "POST /api/orders")]);
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
        let rc = check_rules(
            Path::new("rules.txt"),
            "GET /api/users/*\nGET /api/search\nGET /api/legacy/*\n",
            &interfaces,
        );
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
