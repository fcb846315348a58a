//! The report a person reads in the terminal: the verdict first, in plain words; then one
//! table row per interface with the ones that need attention on top; then what exactly
//! differs in each of those; then what was set aside as noise or skipped, so nothing is
//! hidden. Colour is optional and decided by the caller (TTY, `NO_COLOR`).

use super::fit::{self, width};
use super::words::{self, count_of, ms};
use super::{inert, Exporter};
use crate::analysis::result::{
    ErrorResult, InterfaceResult, LatencyStats, PathResult, Problem, RunResult, Trend, TrendState,
    Verdict,
};
use std::borrow::Cow;
use std::io;

/// Renders the human-readable terminal report.
#[derive(Clone, Copy, Debug, Default)]
pub struct TerminalExporter {
    /// Emit ANSI colour codes.
    pub color: bool,
    /// Columns every line must fit in ([`fit::width_for`] picks it); `None` for no limit.
    pub width: Option<usize>,
}

impl Exporter for TerminalExporter {
    fn export(&self, result: &RunResult) -> io::Result<Vec<u8>> {
        Ok(self.render(result).into_bytes())
    }
}

impl TerminalExporter {
    /// The report as text, ending in a newline. Every string of the result is printed with
    /// its control characters made visible ([`inert::line`]), so captured traffic cannot
    /// drive the terminal; only the report's own colour codes reach it.
    pub fn render(&self, r: &RunResult) -> String {
        match inert_copy(r) {
            Some(safe) => self.render_inert(&safe),
            // Not expected (the result is JSON by design); without a safe copy the report
            // goes out without colour, every control character but line feed made visible.
            None => {
                let plain = TerminalExporter {
                    color: false,
                    ..*self
                }
                .render_inert(r);
                inert::lines(&plain).into_owned()
            }
        }
    }

    /// Renders a result whose strings are already safe to print.
    fn render_inert(&self, r: &RunResult) -> String {
        let p = Paint { on: self.color };
        let mut rows: Vec<(&InterfaceResult, Vec<Flag>)> =
            r.interfaces.iter().map(|i| (i, flags_of(i))).collect();
        // Stable: flagged first, each group keeps the result's interface order.
        rows.sort_by_key(|(_, f)| f.is_empty());
        let trend = r.trend.as_ref();

        let mut out = Out {
            text: String::new(),
            width: self.width.unwrap_or(usize::MAX),
        };
        verdict(&mut out, r, p);
        out.blank();
        summary_line(&mut out, r);
        for line in words::selection_lines(r) {
            out.line(format!("  {line}"));
        }
        out.blank();
        table(&mut out, &rows, trend, p);
        // A change told once at the top is not told again under each interface.
        let told: Vec<&str> = r.gateway_wide.iter().map(|g| g.header.as_str()).collect();
        for (i, f) in rows.iter().filter(|(_, f)| !f.is_empty()) {
            out.blank();
            details(&mut out, i, f, trend, &told, p);
        }
        if let Some(t) = trend {
            trend_section(&mut out, t, p);
        }
        notes(&mut out, r, p);
        out.text
    }
}

/// `r` with every string in it (names, paths, values, messages, warnings, map keys) made
/// inert. Interface names, example values, error messages and warnings all come from traffic
/// or from a result file; walking the serialized form covers every field, also fields added
/// later, without each place that prints one having to remember it.
fn inert_copy(r: &RunResult) -> Option<RunResult> {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let Cow::Owned(safe) = inert::line(s) {
                    *s = safe;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            serde_json::Value::Object(m) => {
                let entries = std::mem::take(m);
                for (k, mut v) in entries {
                    walk(&mut v);
                    m.insert(inert::line(&k).into_owned(), v);
                }
            }
            _ => {}
        }
    }
    let mut v = serde_json::to_value(r).ok()?;
    walk(&mut v);
    serde_json::from_value(v).ok()
}

/// Lines of text no wider than `width`; trailing spaces are trimmed because padded last
/// columns would leave them.
struct Out {
    text: String,
    width: usize,
}

impl Out {
    /// A line of prose: wrapped between words to the width.
    fn line(&mut self, s: impl AsRef<str>) {
        for l in fit::wrap(s.as_ref(), self.width) {
            self.text.push_str(&l);
            self.text.push('\n');
        }
    }

    /// A table row: cut to the width, never wrapped, so the columns stay columns.
    fn row(&mut self, s: &str) {
        self.text
            .push_str(fit::cut(s.trim_end(), self.width).trim_end());
        self.text.push('\n');
    }

    fn blank(&mut self) {
        self.text.push('\n');
    }
}

#[derive(Clone, Copy)]
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }

    fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }
}

/// Why an interface needs attention (the shared [`Problem`], painted for the terminal).
type Flag = Problem;

fn paint_flag(f: Flag, p: Paint) -> String {
    let code = match f {
        Problem::Slower => "1;33",
        _ => "1;31",
    };
    p.wrap(code, f.label())
}

fn flags_of(i: &InterfaceResult) -> Vec<Flag> {
    i.problems()
}

fn flag_cell(i: &InterfaceResult, f: &[Flag], p: Paint) -> String {
    if f.is_empty() && i.counts.total > 0 && i.counts.skipped == i.counts.total {
        // Nothing of it was sent: "ok" would claim a comparison that never happened.
        p.dim("skipped")
    } else if f.is_empty() {
        p.wrap("32", "ok")
    } else {
        f.iter()
            .map(|f| paint_flag(*f, p))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// ` (new)`, ` (still failing)`, ... or nothing without a trend entry.
fn trend_mark(state: Option<TrendState>, p: Paint) -> String {
    match state {
        Some(TrendState::New) => format!(" {}", p.wrap("1;35", "(new)")),
        Some(s) => format!(" {}", p.dim(&format!("({})", s.label()))),
        None => String::new(),
    }
}

fn verdict(out: &mut Out, r: &RunResult, p: Paint) {
    let code = match r.verdict {
        Verdict::Fail => "1;31",
        Verdict::Pass => "1;32",
    };
    out.line(p.wrap(code, &words::headline(r)));
    for g in &r.gate_failures {
        out.line(format!("  - {g}"));
    }
    for text in words::verdict_notes(r) {
        out.line(p.wrap("33", &format!("  {text}")));
    }
}

fn summary_line(out: &mut Out, r: &RunResult) {
    let c = &r.summary.counts;
    out.line(format!(
        "{} over {}: {} identical, {} noise only, {} different, {} missing rule, {}, {}, {} skipped",
        count_of(c.total, "exchange", "exchanges"),
        count_of(r.summary.interfaces, "interface", "interfaces"),
        c.identical,
        c.noise_only,
        c.different,
        c.missing_rule,
        count_of(c.candidate_error, "candidate error", "candidate errors"),
        count_of(c.baseline_error, "baseline error", "baseline errors"),
        c.skipped,
    ));
}

fn p50(s: &LatencyStats) -> String {
    if s.count == 0 {
        "-".into()
    } else {
        ms(s.p50_us)
    }
}

/// Table columns after the interface, in the order shown: full header, short header, and
/// the rank in which they are dropped when the table does not fit (lowest first).
const COLUMNS: [(&str, &str, u8); 8] = [
    ("total", "total", 4),
    ("identical", "same", 0),
    ("noise", "noise", 2),
    ("different", "diff", 7),
    ("missing", "miss", 6),
    ("errors", "err", 3),
    ("skipped", "skip", 1),
    ("p50 ms base → cand", "p50 ms", 5),
];

/// The narrowest the interface column gets before the row itself is cut.
const MIN_NAME: usize = 24;

fn table(out: &mut Out, rows: &[(&InterfaceResult, Vec<Flag>)], trend: Option<&Trend>, p: Paint) {
    // The latency pair is aligned on its arrow: each side gets its own width.
    let lat: Vec<(String, String)> = rows
        .iter()
        .map(|(i, _)| (p50(&i.latency.baseline), p50(&i.latency.candidate)))
        .collect();
    let wb = lat.iter().map(|(b, _)| width(b)).max().unwrap_or(0);
    let wc = lat.iter().map(|(_, c)| width(c)).max().unwrap_or(0);
    let cells: Vec<[String; 8]> = rows
        .iter()
        .zip(&lat)
        .map(|((i, _), (b, c))| {
            let k = &i.counts;
            [
                k.total.to_string(),
                k.identical.to_string(),
                k.noise_only.to_string(),
                k.different.to_string(),
                k.missing_rule.to_string(),
                (k.candidate_error + k.baseline_error).to_string(),
                k.skipped.to_string(),
                format!("{}{b} → {}{c}", pad(wb - width(b)), pad(wc - width(c))),
            ]
        })
        .collect();
    let flags: Vec<String> = rows
        .iter()
        .map(|(i, f)| {
            let mark = trend_mark(trend.and_then(|t| t.interface_state(&i.interface)), p);
            format!("{}{mark}", flag_cell(i, f, p))
        })
        .collect();
    let flag_w = flags.iter().map(|f| width(f)).chain([4]).max().unwrap_or(4);
    let name_w = rows
        .iter()
        .map(|(i, _)| width(&i.interface))
        .chain([width("interface")])
        .max()
        .unwrap_or(0);
    let col_w = |c: usize, short: bool| {
        let head = if short { COLUMNS[c].1 } else { COLUMNS[c].0 };
        cells
            .iter()
            .map(|row| width(&row[c]))
            .chain([width(head)])
            .max()
            .unwrap_or(0)
    };
    // Fit the width: first shorter headers, then fewer columns (by rank), then a shorter
    // interface column; whatever still does not fit is cut at the end of the row.
    let total_w = |keep: &[usize], short: bool, name: usize| {
        name + 2 + keep.iter().map(|&c| col_w(c, short) + 2).sum::<usize>() + flag_w
    };
    let mut keep: Vec<usize> = (0..COLUMNS.len()).collect();
    let mut short = false;
    if total_w(&keep, short, name_w) > out.width {
        short = true;
    }
    let mut by_rank: Vec<usize> = (0..COLUMNS.len()).collect();
    by_rank.sort_by_key(|&c| COLUMNS[c].2);
    // The lesser counts give way to whole interface names; the total and the latency give
    // way only to a name of MIN_NAME columns; the differences and missing rules, what the
    // table is for, never do.
    for c in by_rank {
        let name = if COLUMNS[c].2 < 4 {
            name_w
        } else {
            name_w.min(MIN_NAME)
        };
        if COLUMNS[c].2 >= 6 || total_w(&keep, short, name) <= out.width {
            continue;
        }
        keep.retain(|&k| k != c);
    }
    let name_w = name_w.min(
        out.width
            .saturating_sub(total_w(&keep, short, 0))
            .max(MIN_NAME),
    );
    let fmt_row = |name: &str, row: &[String], last: &str| {
        let name = fit::cut_middle(name, name_w);
        let mut line = format!("{name}{}  ", pad(name_w - width(&name)));
        for &c in &keep {
            let w = col_w(c, short);
            let cell = &row[c];
            // Text columns read left to right; numbers line up on their last digit.
            if c == 7 {
                line.push_str(&format!("{cell}{}  ", pad(w - width(cell))));
            } else {
                line.push_str(&format!("{}{cell}  ", pad(w - width(cell))));
            }
        }
        line.push_str(last);
        line
    };
    let head: Vec<String> = COLUMNS
        .iter()
        .map(|(long, brief, _)| if short { brief } else { long }.to_string())
        .collect();
    out.row(&p.bold(&fmt_row("interface", &head, "flag")));
    for ((row, (i, _)), flag) in cells.iter().zip(rows).zip(&flags) {
        out.row(&fmt_row(&i.interface, row, flag));
    }
}

/// `n` spaces (padding by hand: a format width taken from input can exceed what `format!`
/// accepts).
fn pad(n: usize) -> String {
    " ".repeat(n)
}

fn samples_line(out: &mut Out, samples: &[String]) {
    if !samples.is_empty() {
        out.line(format!("    samples: {}", samples.join(", ")));
    }
}

fn path_label(kind: &str, p: &PathResult) -> String {
    match kind {
        "status" => format!("status {}", p.classed_path()),
        _ => format!("{kind} {}", p.classed_path()),
    }
}

fn details(
    out: &mut Out,
    i: &InterfaceResult,
    flags: &[Flag],
    trend: Option<&Trend>,
    told: &[&str],
    p: Paint,
) {
    let mark = trend_mark(trend.and_then(|t| t.interface_state(&i.interface)), p);
    out.line(format!(
        "{}  {}{mark}",
        p.bold(&i.interface),
        flag_cell(i, flags, p)
    ));
    if i.counts.missing_rule > 0 {
        out.line(format!(
            "  missing rule: the candidate gave its no-route answer for {} of {}",
            i.counts.missing_rule,
            count_of(i.counts.total, "exchange", "exchanges")
        ));
        samples_line(out, &i.missing_rule_samples);
    }
    let groups = [
        ("status", &i.status),
        ("header", &i.headers),
        ("field", &i.fields),
    ];
    for (kind, paths) in groups {
        for path in paths.iter().filter(|x| {
            x.regression && !(kind == "header" && told.contains(&x.classed_path().as_str()))
        }) {
            let mark = trend_mark(
                trend.and_then(|t| t.path_state(&i.interface, kind, &path.classed_path())),
                p,
            );
            // Zero differences between two answers means something only when a second
            // answer was had: without one the noise was never measured.
            let noise = words::noise_phrase(i, path);
            out.line(format!(
                "  {}: differed in {} ({noise}){mark}",
                path_label(kind, path),
                count_of(path.raw, "exchange", "exchanges"),
            ));
            if let Some(ex) = &path.example {
                let at = if ex.path == path.path {
                    ex.id.clone()
                } else {
                    format!("{} at {}", ex.id, ex.path)
                };
                out.line(format!(
                    "    e.g. {} → {} ({at})",
                    ex.baseline.as_deref().unwrap_or("(absent)"),
                    ex.candidate.as_deref().unwrap_or("(absent)"),
                ));
            }
            samples_line(out, &path.samples);
            if let Some(h) = &path.hint {
                out.line(format!("    hint: {h}"));
            }
        }
    }
    if i.latency.regression {
        latency(out, i);
    }
    for e in &i.errors {
        error(out, e);
    }
}

fn latency(out: &mut Out, i: &InterfaceResult) {
    let l = &i.latency;
    let sign = if l.paired.median_diff_us >= 0 {
        "+"
    } else {
        "-"
    };
    out.line(format!(
        "  slower by the {}: paired median {sign}{} ms, candidate slower in {:.0}% of {}",
        words::slower_by(l),
        ms(l.paired.median_diff_us.unsigned_abs()),
        l.paired.slower_share * 100.0,
        count_of(l.paired.count, "pair", "pairs")
    ));
    let rows = [("baseline", &l.baseline), ("candidate", &l.candidate)];
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|(_, s)| [s.p50_us, s.p90_us, s.p99_us].map(|v| format!("{} ms", ms(v))))
        .collect();
    let label_w = rows.iter().map(|(n, _)| width(n)).max().unwrap_or(0);
    let mut widths = [3usize; 3];
    for (col, w) in widths.iter_mut().enumerate() {
        *w = cells
            .iter()
            .map(|c| width(&c[col]))
            .max()
            .unwrap_or(0)
            .max(3);
    }
    out.line(format!(
        "    {:label_w$}  {:>w0$}  {:>w1$}  {:>w2$}",
        "",
        "p50",
        "p90",
        "p99",
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2]
    ));
    for ((name, _), c) in rows.iter().zip(&cells) {
        out.line(format!(
            "    {name:label_w$}  {:>w0$}  {:>w1$}  {:>w2$}",
            c[0],
            c[1],
            c[2],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        ));
    }
}

/// The trend headline, then what the table cannot show: interfaces and paths that failed
/// in the earlier run and are fixed or were not replayed now.
fn trend_section(out: &mut Out, t: &Trend, p: Paint) {
    out.blank();
    out.line(p.bold(&format!("trend {}", words::trend_line(t))));
    let gone = |s: TrendState| matches!(s, TrendState::Fixed | TrendState::NotSeen);
    for item in t.interfaces.iter().filter(|x| gone(x.state)) {
        out.line(format!(
            "  {}: {} (was {})",
            item.interface,
            item.state.label(),
            item.problems.join(", ")
        ));
    }
    for item in t.paths.iter().filter(|x| gone(x.state)) {
        out.line(format!(
            "  {} {} {}: {}",
            item.interface,
            item.kind.as_deref().unwrap_or(""),
            item.path.as_deref().unwrap_or(""),
            item.state.label()
        ));
    }
}

fn error(out: &mut Out, e: &ErrorResult) {
    out.line(format!(
        "  {} {} in {}: {}",
        e.side,
        e.kind,
        count_of(e.count, "exchange", "exchanges"),
        e.message
    ));
    samples_line(out, &e.samples);
}

/// `5 s` for whole seconds, else `1500 ms`.
fn tolerance(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

fn notes(out: &mut Out, r: &RunResult, p: Paint) {
    let tol = tolerance(r.run.thresholds.time_tolerance_ms);
    // Interfaces whose noise lies in the same places are told in one line: a gateway that
    // stamps a request id and a time on every answer would otherwise give a dozen lines
    // that differ only in their counts.
    let mut noise: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for i in &r.interfaces {
        let groups = [
            ("status", &i.status),
            ("header", &i.headers),
            ("field", &i.fields),
        ];
        let mut items = Vec::new();
        for (kind, paths) in groups {
            for path in paths.iter().filter(|x| !x.regression) {
                let label = match kind {
                    "field" => path.path.clone(),
                    _ => path_label(kind, path),
                };
                if path.raw > 0 {
                    items.push(label);
                } else if path.tolerated > 0 {
                    items.push(format!("{label} (times within {tol})"));
                }
            }
        }
        if items.is_empty() {
            continue;
        }
        match noise.iter_mut().find(|(places, _)| *places == items) {
            Some((_, names)) => names.push(i.interface.clone()),
            None => noise.push((items, vec![i.interface.clone()])),
        }
    }
    let skipped = r.summary.counts.skipped;
    let probe = words::probe_failures(r);
    let few = words::slower_on_few_pairs(r);
    let mut resent = words::resent_notes(r);
    resent.extend(words::connection_notes(r));
    if noise.is_empty()
        && resent.is_empty()
        && skipped == 0
        && r.run.warnings.is_empty()
        && probe.is_none()
        && few.is_none()
    {
        return;
    }
    out.blank();
    if !noise.is_empty() {
        out.line(
            p.dim("note: treated as noise (differed no more than two answers of the baseline do):"),
        );
        // A large run would print a line per interface; the full list is in the JSON and
        // HTML reports.
        for (places, names) in noise.iter().take(MAX_NOISE_LINES) {
            let who = match names.len() {
                1 => names[0].clone(),
                n if n <= words::MAX_NAMES => format!("{n} interfaces ({})", names.join(", ")),
                n => format!(
                    "{n} interfaces ({} and {} more)",
                    names[..words::MAX_NAMES].join(", "),
                    n - words::MAX_NAMES
                ),
            };
            out.line(p.dim(&format!("  {}: {who}", places.join(", "))));
        }
        if noise.len() > MAX_NOISE_LINES {
            out.line(p.dim(&format!(
                "  … and {} more (all of them, with counts, in --json and --html)",
                noise.len() - MAX_NOISE_LINES
            )));
        }
    }
    if skipped > 0 {
        let reasons = &r.summary.skipped_reasons;
        let mut text = format!(
            "note: {} skipped",
            count_of(skipped, "exchange", "exchanges")
        );
        if !reasons.is_empty() {
            let list: Vec<String> = reasons.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            text.push_str(&format!(" ({})", list.join(", ")));
        }
        if reasons.contains_key("side_effect") {
            text.push_str(
                "; declare the reads among them with --safe GLOB or [side_effects] safe, \
                 or pass --allow-side-effects to replay them all",
            );
        }
        out.line(p.dim(&text));
        if let Some(n) = words::unsendable_note(r) {
            out.line(p.dim(&format!("  {n}")));
        }
    }
    if let Some(text) = words::side_effect_note(r) {
        out.line(p.dim(&format!("note: {text}")));
    }
    for text in &resent {
        out.line(p.dim(&format!("note: {text}")));
    }
    if let Some(text) = probe {
        out.line(p.wrap("33", &format!("warning: {text}")));
    }
    if let Some(text) = few {
        out.line(p.wrap("33", &format!("warning: {text}")));
    }
    for w in &r.run.warnings {
        out.line(p.wrap("33", &format!("warning: {w}")));
    }
}

/// Interfaces listed in the terminal's note on noise before the rest are summed up.
const MAX_NOISE_LINES: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    /// Sequences a hostile recording might carry: retitle the window, clear the screen,
    /// overwrite the line, a C1 CSI, DEL.
    const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\r\n\u{9b}\u{7f}";

    /// The result with [`HOSTILE`] appended to every string a recording or a result file
    /// could carry: every string but the names of enum values, which would not read back.
    fn poisoned(r: &RunResult) -> RunResult {
        fn strings(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(_) => out.push(at),
                serde_json::Value::Array(a) => {
                    for (n, v) in a.iter().enumerate() {
                        strings(v, format!("{at}/{n}"), out);
                    }
                }
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        let k = k.replace('~', "~0").replace('/', "~1");
                        strings(v, format!("{at}/{k}"), out);
                    }
                }
                _ => {}
            }
        }
        let mut v = serde_json::to_value(r).unwrap();
        let mut at = Vec::new();
        strings(&v, String::new(), &mut at);
        for pointer in at {
            let mut tried = v.clone();
            if let Some(serde_json::Value::String(s)) = tried.pointer_mut(&pointer) {
                s.push_str(HOSTILE);
            }
            if serde_json::from_value::<RunResult>(tried.clone()).is_ok() {
                v = tried;
            }
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn captured_control_characters_never_reach_the_terminal() {
        let r = poisoned(&fixture::with_trend());
        assert!(r.interfaces[0].interface.ends_with(HOSTILE));
        assert!(r.run.warnings[0].ends_with(HOSTILE));
        let own = regex::Regex::new("\u{1b}\\[[0-9;]*m").unwrap();
        for color in [false, true] {
            let text = TerminalExporter { color, width: None }.render(&r);
            assert!(text.contains("␛]0;pwned␇␛[2J␍␊\u{FFFD}␡"), "{text}");
            // The report's own colour codes are the only control sequences left.
            assert_eq!(own.is_match(&text), color);
            let rest = own.replace_all(&text, "");
            let bad: Vec<char> = rest
                .chars()
                .filter(|c| c.is_control() && *c != '\n')
                .collect();
            assert!(bad.is_empty(), "{bad:?} in\n{text}");
        }
        // A result without control characters prints exactly as it is.
        let clean = fixture::with_trend();
        assert_eq!(inert_copy(&clean).unwrap(), clean);
    }

    #[test]
    fn a_header_changed_alike_everywhere_is_told_once() {
        let mut r = fixture::passing();
        let template = r.interfaces[0].clone();
        r.interfaces.clear();
        for n in 0..4 {
            let mut i = template.clone();
            i.interface = format!("POST /rpc/s/Get{n}");
            i.compared = 10;
            i.counts.different = 10;
            let mut server = fixture::path("server", 10, 0, 0, true, &[]);
            server.example = Some(crate::analysis::result::Example {
                id: format!("e{n}"),
                path: "server".into(),
                baseline: Some("nginx/1.22.1".into()),
                candidate: Some("haproxy".into()),
            });
            i.headers = vec![server];
            r.interfaces.push(i);
        }
        r.gateway_wide = crate::analysis::gateway_wide(&r.interfaces);
        let text = TerminalExporter {
            color: false,
            width: None,
        }
        .render(&r);
        assert_eq!(
            text.matches("gateway-wide: header server").count(),
            1,
            "{text}"
        );
        assert!(text.contains("4 of 4 compared interfaces (nginx/1.22.1 → haproxy)"));
        assert!(
            text.contains(r#"[[ignore]] headers = ["server"]"#),
            "{text}"
        );
        assert!(!text.contains("  header server: differed"), "{text}");
        // On fewer than three interfaces it is each interface's own finding.
        r.interfaces.truncate(2);
        r.gateway_wide = crate::analysis::gateway_wide(&r.interfaces);
        let text = TerminalExporter {
            color: false,
            width: None,
        }
        .render(&r);
        assert!(!text.contains("gateway-wide"), "{text}");
        assert_eq!(
            text.matches("  header server: differed").count(),
            2,
            "{text}"
        );
    }

    #[test]
    fn the_noise_note_lists_at_most_twenty_interfaces() {
        let mut r = fixture::passing();
        let template = r.interfaces[0].clone();
        r.interfaces.clear();
        for n in 0..25 {
            let mut i = template.clone();
            i.interface = format!("GET /api/n{n:02}");
            i.fields = vec![fixture::path(&format!("$.id{n:02}"), 3, 3, 0, false, &[])];
            i.headers.clear();
            r.interfaces.push(i);
        }
        let text = TerminalExporter {
            color: false,
            width: None,
        }
        .render(&r);
        assert!(text.contains("  $.id19: GET /api/n19"), "{text}");
        assert!(!text.contains("$.id20"), "{text}");
        assert!(text.contains("… and 5 more (all of them"), "{text}");
    }

    #[test]
    fn interfaces_with_noise_in_the_same_places_share_one_line() {
        let mut r = fixture::passing();
        let template = r.interfaces[0].clone();
        r.interfaces.clear();
        for n in 0..8 {
            let mut i = template.clone();
            i.interface = format!("GET /api/n{n}");
            i.fields = vec![fixture::path("$.request_id", 3 + n, 3 + n, 0, false, &[])];
            i.headers.clear();
            r.interfaces.push(i);
        }
        r.interfaces[7].fields = vec![fixture::path("$.trace", 2, 2, 0, false, &[])];
        let text = TerminalExporter {
            color: false,
            width: None,
        }
        .render(&r);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("  $.")).collect();
        assert_eq!(
            lines,
            [
                "  $.request_id: 7 interfaces (GET /api/n0, GET /api/n1, GET /api/n2, GET /api/n3, GET /api/n4 and 2 more)",
                "  $.trace: GET /api/n7",
            ],
            "{text}"
        );
    }

    /// Every line of `text` fits `width` display columns.
    fn assert_fits(text: &str, width: usize) {
        for line in text.lines() {
            assert!(
                fit::width(line) <= width,
                "{} columns at width {width}: {line:?}",
                fit::width(line)
            );
        }
    }

    #[test]
    fn every_line_fits_the_width_and_table_rows_are_never_wrapped() {
        for width in [40, 80, 120, 200] {
            for r in [
                fixture::failing(),
                fixture::with_trend(),
                fixture::passing(),
            ] {
                for color in [false, true] {
                    let text = TerminalExporter {
                        color,
                        width: Some(width),
                    }
                    .render(&r);
                    assert_fits(&text, width);
                    // One table row per interface, none continued on a second line.
                    let plain = TerminalExporter {
                        color: false,
                        width: Some(width),
                    }
                    .render(&r);
                    let rows = plain
                        .lines()
                        .skip_while(|l| !l.starts_with("interface "))
                        .skip(1)
                        .take_while(|l| !l.is_empty())
                        .count();
                    assert_eq!(rows, r.interfaces.len(), "{plain}");
                }
            }
        }
    }

    /// An interface name longer than `format!` accepts as a width (65,535) once panicked
    /// the table; it is cut, at any width, and without a width too.
    #[test]
    fn a_name_of_seventy_thousand_characters_is_cut_not_a_panic() {
        let mut r = fixture::failing();
        r.interfaces[0].interface = format!("GET /{}", "z".repeat(70_000));
        for width in [Some(80), Some(120), None] {
            let text = TerminalExporter {
                color: false,
                width,
            }
            .render(&r);
            if let Some(w) = width {
                assert_fits(&text, w);
                assert!(text.contains("GET /zzz"), "{text:.400}");
                assert!(text.len() < 40_000, "{} bytes", text.len());
            }
        }
    }

    fn snapshot(name: &str) -> String {
        format!("{}/src/report/snapshots/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn check_snapshot(path: &str, text: &str) {
        if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
            std::fs::write(path, text).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run with UPDATE_SNAPSHOTS=1 to create it"));
        assert!(
            text == expected,
            "terminal report changed; rerun with UPDATE_SNAPSHOTS=1 if intended\n--- expected\n{expected}\n--- got\n{text}"
        );
    }

    /// The failing run, and the run with a trend and a selection, at 80 and 120 columns.
    #[test]
    fn reports_match_snapshots_at_80_and_120_columns() {
        for (name, r) in [
            ("fail", fixture::failing()),
            ("trend", fixture::with_trend()),
        ] {
            for width in [80, 120] {
                let text = TerminalExporter {
                    color: false,
                    width: Some(width),
                }
                .render(&r);
                assert_fits(&text, width);
                check_snapshot(&snapshot(&format!("terminal_{name}_{width}.txt")), &text);
            }
        }
    }

    #[test]
    fn no_escape_bytes_without_colour() {
        for r in [fixture::failing(), fixture::passing()] {
            let bytes = TerminalExporter {
                color: false,
                width: None,
            }
            .export(&r)
            .unwrap();
            assert!(!bytes.contains(&0x1b));
            let coloured = TerminalExporter {
                color: true,
                width: None,
            }
            .export(&r)
            .unwrap();
            assert!(coloured.contains(&0x1b));
        }
    }

    #[test]
    fn passing_run_says_so_first() {
        let text = TerminalExporter {
            color: false,
            width: None,
        }
        .render(&fixture::passing());
        assert!(text.starts_with("PASS: the candidate answered like the baseline\n"));
        assert!(!text.contains("pass --allow-side-effects"));
        let row = text
            .lines()
            .find(|l| l.starts_with("GET /api/users/{id}"))
            .unwrap();
        assert!(row.ends_with("  ok"), "{row}");
    }

    #[test]
    fn flagged_interfaces_come_first() {
        let text = TerminalExporter {
            color: false,
            width: None,
        }
        .render(&fixture::failing());
        let order: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("interface"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split("  ").next().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "GET /api/reports/annual-export",
                "GET /api/products/{id}",
                "GET /api/search",
                "GET /api/users/{id}",
                "POST /api/orders"
            ]
        );
    }

    #[test]
    fn fail_without_flagged_interfaces_names_the_gates() {
        let mut r = fixture::passing();
        r.verdict = Verdict::Fail;
        r.gate_failures = vec!["max_diff_rate: 2% of compared exchanges differ".into()];
        let text = TerminalExporter {
            color: false,
            width: None,
        }
        .render(&r);
        assert!(text.starts_with(
            "FAIL: 1 gate tripped\n  - max_diff_rate: 2% of compared exchanges differ\n"
        ));
    }
}
