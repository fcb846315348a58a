//! The HTML report: one self-contained file a release engineer opens from a CI artifact or
//! a laptop, offline. It shows the verdict, the counts, the missing rules, a sortable and
//! filterable table of interfaces, and per interface the differing paths with their noise
//! rates, side-by-side sample values, and a latency percentile chart drawn as inline SVG.
//!
//! Safety: every value goes through askama, which escapes HTML by default for `.html`
//! templates, so a captured body with `<script>` shows as text. The page also carries a
//! Content-Security-Policy that forbids every network load and allows only its own inline
//! script and style (by hash), so even an escaping mistake could not run injected code or
//! reach the network. Only the CSS and JS shipped in `templates/` are inserted unescaped.

use super::chart::{self, Chart};
use super::sidebyside::{side_by_side, SideBySide};
use super::words::{self, count_of, ms, pct};
use super::Exporter;
use crate::analysis::result::{
    InterfaceResult, LatencyStats, MissingRuleAnswer, PathResult, Problem, RunResult, Trend,
    TrendState, Verdict,
};
use crate::exchange::Side;
use crate::replay::resend::{self, BodyFile, To};
use crate::replay::target::{Target, TargetOptions};
use askama::Template;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::io;

/// The stylesheet, inlined.
const CSS: &str = include_str!("../../templates/report.css");
/// The sorting and filtering script, inlined.
const SCRIPT: &str = include_str!("../../templates/report.js");

/// Sample exchanges shown per interface.
const MAX_EXAMPLES: usize = 6;

/// Renders the HTML report.
#[derive(Clone, Copy, Debug, Default)]
pub struct HtmlExporter;

impl Exporter for HtmlExporter {
    fn export(&self, result: &RunResult) -> io::Result<Vec<u8>> {
        let page = page(result);
        page.render()
            .map(String::into_bytes)
            .map_err(|e| io::Error::other(format!("rendering the HTML report: {e}")))
    }
}

/// A CSS class and the text of a badge or trend mark.
type Mark = (&'static str, &'static str);

struct Card {
    class: &'static str,
    value: String,
    label: &'static str,
}

struct MissingRow {
    anchor: String,
    name: String,
    count: u64,
    total: u64,
    samples: Vec<String>,
    /// What the candidate answered: status line and body excerpt.
    answer: Option<AnswerView>,
    trend: Option<Mark>,
}

/// The candidate's no-route answer as the page shows it.
struct AnswerView {
    /// `404`, or `200, grpc-status 12` for gRPC.
    status: String,
    /// The start of the body, or nothing.
    body: String,
    /// The exchange it was given in.
    id: String,
}

fn answer_view(a: &MissingRuleAnswer) -> AnswerView {
    AnswerView {
        status: match a.grpc_status {
            Some(g) => format!("{}, grpc-status {g}", a.status),
            None => a.status.to_string(),
        },
        body: a.body.clone(),
        id: a.id.clone(),
    }
}

struct Row {
    name: String,
    anchor: String,
    flagged: bool,
    /// Sort key of the status column: more problems, worse.
    severity: u32,
    badges: Vec<Mark>,
    trend: Option<Mark>,
    /// Count and whether it is a problem.
    counts: Vec<(u64, bool)>,
    /// Sort key (µs, -1 when none) and text.
    latency: Vec<(i64, String)>,
}

struct PathRow {
    kind: &'static str,
    path: String,
    raw: u64,
    raw_rate: String,
    noise: u64,
    noise_rate: String,
    tolerated: u64,
    judged: Mark,
    trend: Option<Mark>,
    samples: Vec<String>,
}

struct ExampleView {
    judged: Mark,
    kind: &'static str,
    path: String,
    id: String,
    view: SideBySide,
    /// The commands that send the exchange's request again, to each target, when the
    /// result kept the request.
    resend: Vec<(&'static str, String)>,
}

struct ErrRow {
    side: String,
    kind: String,
    count: u64,
    message: String,
    samples: Vec<String>,
}

/// Interface sections open when the page loads.
const MAX_OPEN: usize = 50;

struct Detail {
    name: String,
    anchor: String,
    flagged: bool,
    /// Shown open when the page loads.
    open: bool,
    badges: Vec<Mark>,
    trend: Option<Mark>,
    counts_line: String,
    facts: String,
    missing_samples: Vec<String>,
    missing_answer: Option<AnswerView>,
    paths: Vec<PathRow>,
    examples: Vec<ExampleView>,
    chart: Option<Chart>,
    slower: bool,
    latency_rows: Vec<(&'static str, Vec<String>)>,
    paired: String,
    errors: Vec<ErrRow>,
}

struct GoneRow {
    interface: String,
    /// `field $.a`, or `None` for the whole interface (words, not a path).
    path: Option<String>,
    state: Mark,
    was: String,
}

#[derive(Template)]
#[template(path = "report.html")]
struct Page {
    title: String,
    csp: String,
    css: &'static str,
    script: &'static str,
    tool_version: String,
    created: String,
    verdict_class: &'static str,
    verdict_word: &'static str,
    headline: String,
    gate_failures: Vec<String>,
    facts: Vec<(&'static str, String)>,
    cards: Vec<Card>,
    selection: Vec<String>,
    trend_line: Option<String>,
    has_trend: bool,
    missing: Vec<MissingRow>,
    rows: Vec<Row>,
    details: Vec<Detail>,
    chart_width: String,
    chart_height: String,
    trend_gone: Vec<GoneRow>,
    notes: Vec<String>,
    warnings: Vec<String>,
}

/// `'sha256-…'` of an inline script or style, for the Content-Security-Policy.
fn csp_hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The page's Content-Security-Policy: nothing may load from anywhere; only the page's own
/// script and stylesheet run.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; img-src data:; base-uri 'none'; form-action 'none'",
        csp_hash(SCRIPT),
        csp_hash(CSS)
    )
}

fn badge(p: Problem) -> Mark {
    (p.name(), p.label())
}

fn trend_mark(s: TrendState) -> Mark {
    (s.name(), s.label())
}

fn interface_trend(t: Option<&Trend>, name: &str) -> Option<Mark> {
    t.and_then(|t| t.interface_state(name)).map(trend_mark)
}

fn judged(p: &PathResult) -> Mark {
    if p.regression {
        ("regression", "REGRESSION")
    } else if p.raw == 0 && p.tolerated > 0 {
        ("tolerated", "time tolerance")
    } else {
        ("noise", "noise")
    }
}

fn latency_cell(s: &LatencyStats, v: u64) -> (i64, String) {
    if s.count == 0 {
        (-1, "-".into())
    } else {
        (v as i64, ms(v))
    }
}

/// The status badges: the problems, `skipped` when nothing was replayed, else `ok`.
fn badges(i: &InterfaceResult, problems: &[Problem]) -> Vec<Mark> {
    if !problems.is_empty() {
        problems.iter().map(|p| badge(*p)).collect()
    } else if i.counts.total > 0 && i.counts.skipped == i.counts.total {
        vec![("skipped", "skipped")]
    } else {
        vec![("ok", "ok")]
    }
}

fn row(idx: usize, i: &InterfaceResult, trend: Option<&Trend>) -> Row {
    let problems = i.problems();
    let k = &i.counts;
    let l = &i.latency;
    Row {
        name: i.interface.clone(),
        anchor: format!("if-{idx}"),
        flagged: !problems.is_empty(),
        severity: problems.iter().map(|p| 8 >> (*p as u32)).sum(),
        badges: badges(i, &problems),
        trend: interface_trend(trend, &i.interface),
        counts: vec![
            (k.total, false),
            (k.identical, false),
            (k.noise_only, false),
            (k.different, k.different > 0),
            (k.missing_rule, k.missing_rule > 0),
            (
                k.candidate_error + k.baseline_error,
                k.candidate_error + k.baseline_error > 0,
            ),
            (k.skipped, false),
        ],
        latency: vec![
            latency_cell(&l.baseline, l.baseline.p50_us),
            latency_cell(&l.candidate, l.candidate.p50_us),
            latency_cell(&l.baseline, l.baseline.p99_us),
            latency_cell(&l.candidate, l.candidate.p99_us),
        ],
    }
}

/// The run's targets, for the commands that send a sample exchange again, and the
/// recordings a long body is saved from.
struct Resenders {
    targets: Vec<(&'static str, Option<Target>)>,
    recordings: Vec<String>,
}

impl Resenders {
    fn of(r: &RunResult) -> Self {
        let opts = TargetOptions {
            timeout: std::time::Duration::from_secs(10),
            max_body: 0,
            pool_size: 0,
            host_header: crate::cli::HostHeaderMode::Target,
            set_headers: Vec::new(),
            tls: Default::default(),
        };
        // A target the result names in a form no request can go to gets `$TARGET` instead.
        let target = |side, url: &str| Target::new(side, url, opts.clone()).ok();
        Resenders {
            targets: vec![
                ("baseline", target(Side::Baseline, &r.run.baseline)),
                ("candidate", target(Side::Candidate, &r.run.candidate)),
            ],
            recordings: r.run.recordings.clone(),
        }
    }

    /// The commands for exchange `id` of `i`, when the result kept its request.
    fn commands(&self, i: &InterfaceResult, id: &str) -> Vec<(&'static str, String)> {
        let Some(sample) = i.sample_requests.get(id) else {
            return Vec::new();
        };
        let (req, body) = sample.request();
        let file = BodyFile::for_exchange(id, &self.recordings);
        self.targets
            .iter()
            .map(|(side, t)| {
                let to = match t {
                    Some(t) => To::Target(t),
                    None => To::Placeholder {
                        set: &[],
                        keep_host: false,
                    },
                };
                (*side, resend::curl_with_body(&to, &req, body, &file))
            })
            .collect()
    }
}

fn detail(idx: usize, i: &InterfaceResult, trend: Option<&Trend>, resenders: &Resenders) -> Detail {
    let problems = i.problems();
    let k = &i.counts;
    let mut paths = Vec::new();
    let mut examples = Vec::new();
    for (kind, list) in [
        ("status", &i.status),
        ("header", &i.headers),
        ("field", &i.fields),
    ] {
        for p in list {
            paths.push(PathRow {
                kind,
                path: p.classed_path(),
                raw: p.raw,
                raw_rate: pct(p.raw, i.compared),
                noise: p.noise,
                noise_rate: pct(p.noise, i.probed),
                tolerated: p.tolerated,
                judged: judged(p),
                trend: trend
                    .and_then(|t| t.path_state(&i.interface, kind, &p.classed_path()))
                    .map(trend_mark),
                samples: p.samples.clone(),
            });
            if let Some(ex) = &p.example {
                examples.push(ExampleView {
                    judged: judged(p),
                    kind,
                    path: ex.path.clone(),
                    id: ex.id.clone(),
                    view: side_by_side(ex.baseline.as_deref(), ex.candidate.as_deref()),
                    resend: resenders.commands(i, &ex.id),
                });
            }
        }
    }
    // Regressions first (they are what the reader came for), then noise, stable otherwise.
    paths.sort_by_key(|p| p.judged.0 != "regression");
    examples.sort_by_key(|e| e.judged.0 != "regression");
    examples.truncate(MAX_EXAMPLES);
    let l = &i.latency;
    let stats_row = |name: &'static str, s: &LatencyStats| {
        let mut v = vec![s.count.to_string()];
        if s.count == 0 {
            v.extend(vec!["-".to_string(); 5]);
        } else {
            v.extend(
                [s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us]
                    .map(|us| format!("{} ms", ms(us))),
            );
        }
        (name, v)
    };
    let paired = if l.paired.count == 0 {
        "No paired latency samples.".to_string()
    } else {
        format!(
            "Paired per request (candidate minus baseline): median {} ms; the candidate was slower in {:.0}% of {}.{}",
            words::signed_ms(l.paired.median_diff_us),
            l.paired.slower_share * 100.0,
            count_of(l.paired.count, "pair", "pairs"),
            if l.regression {
                format!(" Slower by the {}: a regression.", words::slower_by(l))
            } else {
                String::new()
            }
        )
    };
    Detail {
        name: i.interface.clone(),
        anchor: format!("if-{idx}"),
        flagged: !problems.is_empty(),
        open: false,
        badges: badges(i, &problems),
        trend: interface_trend(trend, &i.interface),
        counts_line: format!(
            "{} · {} identical · {} noise only · {} different · {} missing rule · {} · {} skipped",
            count_of(k.total, "exchange", "exchanges"),
            k.identical,
            k.noise_only,
            k.different,
            k.missing_rule,
            count_of(k.candidate_error + k.baseline_error, "error", "errors"),
            k.skipped
        ),
        facts: if k.total > 0 && k.skipped == k.total {
            format!(
                "Skipped: none of its {} was sent to either target (see the notes for why).",
                count_of(k.total, "exchange", "exchanges")
            )
        } else {
            format!(
                "{} compared by both targets; {} also answered by the noise probe.",
                count_of(i.compared, "exchange was", "exchanges were"),
                i.probed
            )
        },
        missing_samples: i.missing_rule_samples.clone(),
        missing_answer: i.missing_rule_answer.as_ref().map(answer_view),
        paths,
        examples,
        chart: chart::percentile_chart(&l.baseline, &l.candidate),
        slower: l.regression,
        latency_rows: vec![
            stats_row("baseline", &l.baseline),
            stats_row("candidate", &l.candidate),
        ],
        paired,
        errors: i
            .errors
            .iter()
            .map(|e| ErrRow {
                side: e.side.to_string(),
                kind: e.kind.to_string(),
                count: e.count,
                message: e.message.clone(),
                samples: e.samples.clone(),
            })
            .collect(),
    }
}

fn card(class: &'static str, value: u64, label: &'static str) -> Card {
    Card {
        class,
        value: value.to_string(),
        label,
    }
}

fn bad_if(n: u64) -> &'static str {
    if n > 0 {
        "bad"
    } else {
        ""
    }
}

fn page(r: &RunResult) -> Page {
    let trend = r.trend.as_ref();
    let c = &r.summary.counts;
    let th = &r.run.thresholds;
    let mut facts: Vec<(&'static str, String)> = vec![
        ("baseline", r.run.baseline.clone()),
        ("candidate", r.run.candidate.clone()),
        (
            "noise probe",
            r.run
                .secondary
                .clone()
                .unwrap_or_else(|| "off (every difference counts)".into()),
        ),
        ("recordings", r.run.recordings.join(", ")),
        (
            "run",
            format!(
                "{} read, replayed in {:.1} s, {}",
                count_of(r.run.exchanges_read, "exchange", "exchanges"),
                r.run.duration_ms as f64 / 1000.0,
                r.run.pacing
            ),
        ),
        (
            "rules",
            format!(
                "fail on {}{}; noise rule: raw rate above noise rate by {:.0}% and {} points; latency: paired median +{:.0}% and +{} ms with at least {} pairs, or p99 +{:.0}% and +{} ms with at least {} pairs; times within {} are noise",
                th.fail_on.join(", "),
                th.max_diff_rate
                    .map(|m| format!(" (different above {:.2}%)", m * 100.0))
                    .unwrap_or_default(),
                th.noise_relative * 100.0,
                th.noise_absolute_pct,
                th.latency_relative * 100.0,
                ms(th.latency_absolute_us),
                th.latency_min_samples,
                th.latency_tail_relative * 100.0,
                ms(th.latency_tail_absolute_us),
                th.latency_tail_min_samples,
                words::duration_ms(th.time_tolerance_ms)
            ),
        ),
    ];
    if let Some(t) = trend {
        facts.push((
            "previous run",
            format!("{} ({})", t.previous, t.previous_created),
        ));
    }
    let cards = vec![
        card("", c.total, "exchanges"),
        card("", r.summary.interfaces, "interfaces"),
        card(
            if c.identical > 0 { "good" } else { "" },
            c.identical,
            "identical",
        ),
        card("", c.noise_only, "noise only"),
        card(bad_if(c.different), c.different, "different"),
        card(bad_if(c.missing_rule), c.missing_rule, "missing rule"),
        card(
            bad_if(c.candidate_error),
            c.candidate_error,
            "candidate errors",
        ),
        card(
            if c.baseline_error > 0 { "warn" } else { "" },
            c.baseline_error,
            "baseline errors",
        ),
        card("", c.skipped, "skipped"),
        card(
            if r.summary.latency_regressions > 0 {
                "warn"
            } else {
                ""
            },
            r.summary.latency_regressions,
            "slower interfaces",
        ),
    ];
    let indexed: Vec<(usize, &InterfaceResult)> = r.interfaces.iter().enumerate().collect();
    let missing = indexed
        .iter()
        .filter(|(_, i)| i.counts.missing_rule > 0)
        .map(|(idx, i)| MissingRow {
            anchor: format!("if-{idx}"),
            name: i.interface.clone(),
            count: i.counts.missing_rule,
            total: i.counts.total,
            samples: i.missing_rule_samples.clone(),
            answer: i.missing_rule_answer.as_ref().map(answer_view),
            trend: interface_trend(trend, &i.interface),
        })
        .collect();
    let mut rows: Vec<Row> = indexed.iter().map(|(idx, i)| row(*idx, i, trend)).collect();
    // Stable: flagged first, each group in the result's interface order.
    rows.sort_by_key(|r| !r.flagged);
    let resenders = Resenders::of(r);
    let mut details: Vec<Detail> = indexed
        .iter()
        .map(|(idx, i)| detail(*idx, i, trend, &resenders))
        .collect();
    details.sort_by_key(|d| !d.flagged);
    // A page of a bad run can flag thousands of interfaces; laying all of them out open made
    // it take seconds to load. The first ones are open, the rest a click (or "expand all")
    // away.
    for d in details.iter_mut().take(MAX_OPEN) {
        d.open = d.flagged;
    }

    let trend_gone = trend
        .map(|t| {
            let gone = |s: TrendState| matches!(s, TrendState::Fixed | TrendState::NotSeen);
            t.interfaces
                .iter()
                .chain(&t.paths)
                .filter(|x| gone(x.state))
                .map(|x| GoneRow {
                    interface: x.interface.clone(),
                    path: match (&x.kind, &x.path) {
                        (Some(k), Some(p)) => Some(format!("{k} {p}")),
                        _ => None,
                    },
                    state: trend_mark(x.state),
                    was: if x.problems.is_empty() {
                        "regression".into()
                    } else {
                        x.problems.join(", ")
                    },
                })
                .collect()
        })
        .unwrap_or_default();

    let mut notes = vec![format!(
        "A path is judged noise when it differed between the baseline's answer and a second answer to the same request (the baseline asked twice, a second baseline, production asked twice, or the recorded answer) about as often as between baseline and candidate, in the same kind of change; \"rate\" is per compared exchange, \"noise rate\" per noise sample."
    )];
    if c.skipped > 0 {
        let reasons: Vec<String> = r
            .summary
            .skipped_reasons
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let mut n = format!(
            "{} skipped ({})",
            count_of(c.skipped, "exchange", "exchanges"),
            reasons.join(", ")
        );
        if r.summary.skipped_reasons.contains_key("side_effect") {
            n.push_str(
                "; declare the reads among them with --safe GLOB or [side_effects] safe, or \
                 replay with --allow-side-effects to include them all",
            );
        }
        notes.push(n);
        notes.extend(words::unsendable_note(r));
    }
    notes.extend(words::verdict_notes(r));
    notes.extend(words::side_effect_note(r));
    // The run-level cautions the terminal and Markdown reports carry, in the same words.
    notes.extend(words::resent_notes(r));
    notes.extend(words::connection_notes(r));
    notes.extend(words::probe_failures(r));
    notes.extend(words::slower_on_few_pairs(r));
    let verdict_fail = r.verdict == Verdict::Fail;
    Page {
        title: format!("shadowdiff: {}", words::headline(r)),
        csp: content_security_policy(),
        css: CSS,
        script: SCRIPT,
        tool_version: r.run.tool_version.clone(),
        created: words::readable_time(&r.run.created),
        verdict_class: if verdict_fail { "fail" } else { "pass" },
        verdict_word: if verdict_fail { "FAIL" } else { "PASS" },
        headline: words::headline(r)
            .split_once(": ")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_else(|| words::headline(r)),
        gate_failures: r.gate_failures.clone(),
        facts,
        cards,
        selection: words::selection_lines(r),
        trend_line: trend.map(words::trend_line),
        has_trend: trend.is_some(),
        missing,
        rows,
        details,
        chart_width: format!("{}", chart::WIDTH),
        chart_height: format!("{}", chart::HEIGHT),
        trend_gone,
        notes,
        warnings: r.run.warnings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    fn html(r: &RunResult) -> String {
        String::from_utf8(HtmlExporter.export(r).unwrap()).unwrap()
    }

    #[test]
    fn captured_markup_is_escaped_everywhere() {
        let mut r = fixture::failing();
        let evil = "<script>document.title='pwned'</script>";
        r.interfaces[1].interface = format!("GET /x{evil}");
        r.interfaces[1].fields[0]
            .example
            .as_mut()
            .unwrap()
            .candidate = Some(evil.into());
        r.interfaces[1].fields[0].path = format!("$.{evil}");
        r.run.warnings.push(evil.into());
        r.gate_failures.push(evil.into());
        let page = html(&r);
        assert!(
            !page.contains("<script>document"),
            "unescaped script in the page"
        );
        assert!(
            page.contains("&#60;script&#62;document.title=&#39;pwned&#39;")
                || page.contains("&lt;script&gt;document.title="),
            "escaped text missing"
        );
        // The only script element is the report's own.
        assert_eq!(page.matches("<script>").count(), 1);
    }

    #[test]
    fn only_the_first_flagged_sections_are_open_on_a_bad_run() {
        let mut r = fixture::failing();
        let flagged = r
            .interfaces
            .iter()
            .find(|i| !i.problems().is_empty())
            .unwrap()
            .clone();
        for n in 0..MAX_OPEN + 10 {
            let mut i = flagged.clone();
            i.interface = format!("GET /many/{n}");
            r.interfaces.push(i);
        }
        let page = html(&r);
        let flagged_sections = page.matches("<details class=\"iface flagged\"").count();
        assert!(flagged_sections > MAX_OPEN, "{flagged_sections}");
        assert_eq!(page.matches(" open>").count(), MAX_OPEN);
    }

    #[test]
    fn csp_forbids_loads_and_pins_the_inline_code() {
        let page = html(&fixture::failing());
        let csp = content_security_policy();
        assert!(
            page.contains(&format!("content=\"{}\"", csp.replace('\'', "&#39;")))
                || page.contains(&format!("content=\"{csp}\""))
        );
        assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"));
        assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(page.contains(&format!("<style>{CSS}</style>")));
        // Nothing refers to the network: the only URLs are the targets named in the facts.
        let r = fixture::failing();
        let rest = page
            .replace(&r.run.baseline, "")
            .replace(&r.run.candidate, "");
        assert!(!rest.contains("http://") && !rest.contains("https://"));
        assert!(!rest.contains(" src=") && !rest.contains("<link rel=\"stylesheet"));
        assert!(
            !page.contains(" style=\""),
            "inline style attributes break the CSP"
        );
    }

    #[test]
    fn has_every_part_a_reader_needs() {
        let r = fixture::with_trend();
        let page = html(&r);
        assert!(page.contains("id=\"verdict\" class=\"verdict fail\""));
        assert_eq!(
            page.matches("<tr data-interface=").count(),
            r.interfaces.len()
        );
        assert!(page.contains("id=\"missing-rules\""));
        // Charts for the interfaces with latency samples.
        let with_latency = r
            .interfaces
            .iter()
            .filter(|i| i.latency.baseline.count + i.latency.candidate.count > 0)
            .count();
        assert_eq!(
            page.matches("<svg class=\"latency-chart").count(),
            with_latency
        );
        assert!(page.contains("latency-chart regression"));
        // Side by side: the price example with its changed characters marked.
        assert!(
            page.contains("<ins>&#34;</ins>12.5<ins>0&#34;</ins>")
                || page.contains("<ins>&quot;</ins>12.5<ins>0&quot;</ins>"),
            "{}",
            &page[page.find("Sample exchanges").unwrap_or(0)..][..400.min(page.len())]
        );
        // Trend marks and the fixed interface.
        assert!(page.contains("class=\"trend t-new\""));
        assert!(page.contains("class=\"trend t-fixed\""));
        assert!(page.contains("id=\"trend\""));
        assert!(page.contains("shard 1/4: 252 exchanges of the recording"));
    }

    #[test]
    fn missing_rules_show_the_candidates_answer_and_samples_the_command_to_send_them_again() {
        let r = fixture::failing();
        let page = html(&r);
        let panel = &page[page.find("id=\"missing-rules\"").unwrap()..];
        let panel = &panel[..panel.find("</section>").unwrap()];
        assert!(
            panel.contains("<span class=\"status\">404</span> <code class=\"excerpt\">{&#34;error&#34;:&#34;no route&#34;}</code>"),
            "{panel}"
        );
        // The command is the one `show` prints: one builder for both.
        let product = r
            .interfaces
            .iter()
            .find(|i| i.interface == "GET /api/products/{id}")
            .unwrap();
        let (req, body) = product.sample_requests["demo-000004"].request();
        let candidate = Target::new(
            Side::Candidate,
            &r.run.candidate,
            TargetOptions {
                timeout: std::time::Duration::from_secs(1),
                max_body: 0,
                pool_size: 0,
                host_header: crate::cli::HostHeaderMode::Target,
                set_headers: Vec::new(),
                tls: Default::default(),
            },
        )
        .unwrap();
        let file = BodyFile::for_exchange("demo-000004", &r.run.recordings);
        let cmd = resend::curl_with_body(&To::Target(&candidate), &req, body, &file);
        assert_eq!(
            cmd,
            "curl -sS -i --globoff --path-as-is -H 'accept: application/json' -H 'user-agent:' \
             'http://127.0.0.1:40002/api/products/4?currency=EUR'"
        );
        let escaped = cmd.replace('\'', "&#39;");
        assert!(
            page.contains(&format!("<div class=\"side-label\">to the candidate</div>\n          <pre class=\"cmd\">{escaped}</pre>")),
            "{}",
            &page[page.find("send it again").unwrap()..][..800]
        );
    }

    #[test]
    fn a_fully_skipped_interface_reads_skipped_in_its_row_and_its_section() {
        let page = html(&fixture::failing());
        let row = &page[page
            .find("<tr data-interface=\"POST /api/orders\"")
            .unwrap()..];
        assert!(row[..row.find("</tr>").unwrap()].contains("b-skipped\">skipped</span>"));
        let section = &page[page
            .find("<span class=\"name\">POST /api/orders</span>")
            .unwrap()..];
        let section = &section[..section.find("</details>").unwrap()];
        assert!(section.contains("b-skipped\">skipped</span>"), "{section}");
        assert!(
            section.contains("Skipped: none of its 12 exchanges was sent to either target"),
            "{section}"
        );
        assert!(!section.contains("compared by both targets"), "{section}");
    }
}
