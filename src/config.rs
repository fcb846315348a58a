//! What a run does, validated: raw flags from `cli` and the rules file ([`file`]) become a
//! [`ReplayConfig`] here, in one place, with every value checked and every error naming the
//! flag, or the file, line and key, and what was expected. Flags win over the file.

pub mod file;

use crate::analysis::result::{NoiseRule, Thresholds};
use crate::cli::{HostHeaderMode, ReplayArgs};
use crate::compare::descriptor::Descriptors;
use crate::compare::pathpat::PathPattern;
use crate::compare::{CompareOptions, NumericTolerance};
use crate::error::{Error, Result};
use crate::interface::{InterfaceKey, Keyer};
use crate::recording::ReadOptions;
use crate::replay::select::{Selection, SelectionArgs};
use file::LoadedConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// How exchanges are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// Closed loop: `concurrency` exchanges in flight, each next one as soon as one ends.
    Closed,
    /// Open loop at a fixed number of exchanges per second.
    Rate(f64),
    /// Recorded inter-arrival times divided by the factor.
    Speed(f64),
}

impl std::fmt::Display for Pacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pacing::Closed => f.write_str("closed loop"),
            Pacing::Rate(r) => write!(f, "rate {r}/s"),
            Pacing::Speed(x) => write!(f, "speed {x}x"),
        }
    }
}

/// The outcome classes a gate can fail on.
pub const GATE_CLASSES: [&str; 5] = [
    "missing_rule",
    "different",
    "latency",
    "candidate_error",
    "baseline_error",
];

/// The slowest `--rate` (exchanges per second) and `--speed` accepted: one exchange every
/// 1000 s, or a recording's hour stretched to about six weeks.
const MIN_PACE: f64 = 0.001;

/// The fastest `--rate` and `--speed` accepted.
const MAX_PACE: f64 = 1e9;

/// Longest `[missing_rule] body` pattern read. The regex parser holds a syntax tree many
/// times the pattern's size before any compiled-size limit applies (megabytes of pattern
/// took gigabytes), and a marker of a gateway's "no route" page is a few words.
const MAX_BODY_PATTERN: usize = 4096;

/// Compiled size, and lazy DFA cache, the `[missing_rule] body` regex may take; past it the
/// pattern is refused with an error (a counted repetition like `a{1000}{1000}` is short
/// to write and huge compiled).
const BODY_REGEX_SIZE_LIMIT: usize = 2 << 20;

/// A validated replay run.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// Recording files.
    pub recordings: Vec<PathBuf>,
    /// Baseline URL.
    pub baseline: String,
    /// Candidate URL.
    pub candidate: String,
    /// Noise probe target, `None` when the probe is off.
    pub secondary: Option<String>,
    /// Max exchanges in flight.
    pub concurrency: usize,
    /// Pacing.
    pub pacing: Pacing,
    /// Per-request deadline.
    pub timeout: Duration,
    /// Readiness path to poll before replaying.
    pub wait_ready: Option<String>,
    /// How long to poll for readiness.
    pub ready_timeout: Duration,
    /// Interface key rule and templates.
    pub keyer: Keyer,
    /// Tenant header (lower case).
    pub tenant_header: Option<String>,
    /// Replay side-effecting methods.
    pub allow_side_effects: bool,
    /// Which requests may be sent more than once.
    pub safety: Arc<crate::safety::Safety>,
    /// Take the recorded answer as a noise sample where no second call is made.
    pub recorded_noise: bool,
    /// Headers set on every replayed request.
    pub set_headers: Vec<(String, String)>,
    /// Host header mode.
    pub host_header: HostHeaderMode,
    /// Reader options.
    pub read: ReadOptions,
    /// Largest response body accepted.
    pub max_body: usize,
    /// Per-interface comparison rules.
    pub rules: Arc<Rules>,
    /// Analysis and gate thresholds.
    pub thresholds: Thresholds,
    /// Where to write JSON.
    pub json: Option<PathBuf>,
    /// Where to write per-exchange differences (JSON Lines).
    pub diffs: Option<PathBuf>,
    /// Shard and filters: which exchanges this run replays.
    pub selection: Selection,
}

/// A rule that applies to the interfaces a glob matches (all when there is no glob).
#[derive(Clone, Debug)]
struct Scoped<T> {
    interfaces: Option<String>,
    rule: T,
}

impl<T> Scoped<T> {
    fn applies(&self, interface: &str) -> bool {
        self.interfaces
            .as_ref()
            .is_none_or(|g| crate::glob::matches(g, interface))
    }
}

/// The comparison rules of a run, resolved per interface on demand.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    base: CompareOptions,
    ignore: Vec<Scoped<(Vec<String>, Vec<PathPattern>)>>,
    tolerance: Vec<Scoped<NumericTolerance>>,
    unordered: Vec<Scoped<Vec<PathPattern>>>,
}

impl Rules {
    /// Rules with no file: the base options everywhere.
    pub fn new(base: CompareOptions) -> Self {
        Rules {
            base,
            ..Default::default()
        }
    }

    /// The comparison options for one interface: the base plus every rule whose glob
    /// matches it.
    pub fn options_for(&self, interface: &str) -> CompareOptions {
        let mut o = self.base.clone();
        for r in self.ignore.iter().filter(|r| r.applies(interface)) {
            o.ignore_headers.extend(r.rule.0.iter().cloned());
            o.ignore_paths.extend(r.rule.1.iter().cloned());
        }
        for r in self.tolerance.iter().filter(|r| r.applies(interface)) {
            o.tolerances.push(r.rule.clone());
        }
        for r in self.unordered.iter().filter(|r| r.applies(interface)) {
            o.unordered.extend(r.rule.iter().cloned());
        }
        o
    }
}

fn scoped_glob(g: &Option<toml::Spanned<String>>) -> Option<String> {
    g.as_ref().map(|s| s.get_ref().clone())
}

fn pattern(f: &LoadedConfig, key: &str, s: &toml::Spanned<String>) -> Result<PathPattern> {
    s.get_ref()
        .parse()
        .map_err(|e: String| f.error_at(s.span(), key, e))
}

fn duration_at(f: &LoadedConfig, key: &str, s: &toml::Spanned<String>) -> Result<Duration> {
    humantime::parse_duration(s.get_ref()).map_err(|e| {
        f.error_at(
            s.span(),
            key,
            format!(
                "expected a duration like 5s or 500ms, found {:?} ({e})",
                s.get_ref()
            ),
        )
    })
}

/// Parses a duration like `10s`, `500ms`, `2m`.
pub fn parse_duration(flag: &str, s: &str) -> Result<Duration> {
    humantime::parse_duration(s).map_err(|e| {
        Error::Usage(format!(
            "--{flag}: expected a duration like 10s, 500ms or 2m, found {s:?} ({e})"
        ))
    })
}

fn check_url(flag: &str, url: &str) -> Result<()> {
    let ok = ["http://", "h2c://"]
        .iter()
        .any(|p| url.starts_with(p) && url.len() > p.len());
    if url.starts_with("https://") {
        return Err(Error::Usage(format!(
            "--{flag} {url}: https targets are not supported; put the target behind a local \
             TLS-terminating proxy or use its plain-HTTP port (http:// or h2c://)"
        )));
    }
    if !ok {
        return Err(Error::Usage(format!(
            "--{flag}: expected a URL like http://host:port or h2c://host:port, found {url:?}"
        )));
    }
    Ok(())
}

/// Parses `Name: value`.
pub fn parse_header_flag(flag: &str, s: &str) -> Result<(String, String)> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| Error::Usage(format!("--{flag}: expected 'Name: value', found {s:?}")))?;
    let name = name.trim();
    if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(Error::Usage(format!(
            "--{flag}: {name:?} is not a valid header name"
        )));
    }
    let value = value.trim();
    if http::HeaderValue::from_str(value).is_err() {
        return Err(Error::Usage(format!(
            "--{flag}: the value of {name} is not a valid header value"
        )));
    }
    let name = name.to_ascii_lowercase();
    // These describe one connection's framing, which the client sets from the body it sends;
    // a second length or a transfer coding beside it would desynchronise the server.
    const FRAMING: &[&str] = &[
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "http2-settings",
    ];
    if FRAMING.contains(&name.as_str()) {
        return Err(Error::Usage(format!(
            "--{flag}: {name} belongs to the connection and is set by the client itself; \
             it cannot be set"
        )));
    }
    Ok((name, value.to_string()))
}

/// Parses the `--fail-on` list.
pub fn parse_fail_on(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !GATE_CLASSES.contains(&part) {
            return Err(Error::Usage(format!(
                "--fail-on: unknown class {part:?}; expected a comma-separated list of {}",
                GATE_CLASSES.join(", ")
            )));
        }
        if !out.iter().any(|o| o == part) {
            out.push(part.to_string());
        }
    }
    Ok(out)
}

/// Parses the `--missing-rule-grpc-status` list (`12`, `12,5`; empty for none).
pub fn parse_grpc_statuses(s: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let code = part
            .parse::<u32>()
            .ok()
            .filter(|c| *c <= 16)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--missing-rule-grpc-status: expected gRPC status codes 0-16 separated by \
                     commas (12 is UNIMPLEMENTED), found {part:?}"
                ))
            })?;
        if !out.contains(&code) {
            out.push(code);
        }
    }
    Ok(out)
}

impl ReplayConfig {
    /// Validates the flags of `replay` together with the rules file, if any.
    pub fn from_args(a: &ReplayArgs) -> Result<Self> {
        let file = match &a.config {
            Some(p) => Some(LoadedConfig::load(p)?),
            None => None,
        };
        Self::build(a, file.as_ref())
    }

    fn build(a: &ReplayArgs, file: Option<&LoadedConfig>) -> Result<Self> {
        check_url("baseline", &a.baseline)?;
        check_url("candidate", &a.candidate)?;
        if let Some(s) = &a.secondary {
            check_url("secondary", s)?;
        }
        if a.concurrency == 0 {
            return Err(Error::Usage("--concurrency: expected at least 1".into()));
        }
        let h2c = [Some(&a.baseline), Some(&a.candidate), a.secondary.as_ref()]
            .into_iter()
            .flatten()
            .find(|u| u.starts_with("h2c://"));
        if let (HostHeaderMode::Keep, Some(url)) = (a.host_header, h2c) {
            // HTTP/2 carries the authority in the request itself, where it also selects the
            // connection: keeping the recorded host would mean connecting to it.
            return Err(Error::Usage(format!(
                "--host-header keep: not possible with the HTTP/2 target {url}; gateways that \
                 route by host need an http:// target for this"
            )));
        }
        // Bounds keep every scheduled moment a time a run can reach (and a `Duration`).
        let pacing = match (a.rate, a.speed) {
            (Some(r), _) if !(MIN_PACE..=MAX_PACE).contains(&r) => {
                return Err(Error::Usage(format!(
                    "--rate: expected exchanges per second from {MIN_PACE} to {MAX_PACE:e}, found {r}"
                )))
            }
            (_, Some(x)) if !(MIN_PACE..=MAX_PACE).contains(&x) => {
                return Err(Error::Usage(format!(
                    "--speed: expected a factor from {MIN_PACE} to {MAX_PACE:e}, found {x}"
                )))
            }
            (Some(r), None) => Pacing::Rate(r),
            (None, Some(x)) => Pacing::Speed(x),
            _ => Pacing::Closed,
        };
        if let Some(p) = &a.wait_ready {
            if !p.starts_with('/') {
                return Err(Error::Usage(format!(
                    "--wait-ready: expected a path starting with '/', found {p:?}"
                )));
            }
        }
        let empty = file::FileConfig::default();
        let fc = file.map(|f| &f.config).unwrap_or(&empty);

        // Interface keys: flag, else file, else default; templates from the file.
        let key = match (&a.interface, &fc.interface.key) {
            (Some(s), _) => s
                .parse()
                .map_err(|e| Error::Usage(format!("--interface: {e}")))?,
            (None, Some(s)) => s
                .get_ref()
                .parse()
                .map_err(|e: String| file_error(file, s.span(), "interface.key", e))?,
            (None, None) => InterfaceKey::Default,
        };
        let mut templates = Vec::new();
        for t in &fc.interface.templates {
            templates.push(
                t.get_ref()
                    .parse()
                    .map_err(|e: String| file_error(file, t.span(), "interface.templates", e))?,
            );
        }

        let set_headers = a
            .set_header
            .iter()
            .map(|h| parse_header_flag("set-header", h))
            .collect::<Result<Vec<_>>>()?;

        // Thresholds: defaults, then the file, then flags.
        let mut th = Thresholds::default();
        if let Some(v) = &fc.noise.relative {
            th.noise_relative = margin_at(file, "noise.relative", v)?;
        }
        if let Some(v) = &fc.noise.absolute_pct {
            th.noise_absolute_pct = points_at(file, "noise.absolute_pct", v)?;
        }
        if let Some(v) = &fc.latency.relative {
            th.latency_relative = margin_at(file, "latency.relative", v)?;
        }
        if let (Some(f), Some(s)) = (file, &fc.latency.absolute) {
            th.latency_absolute_us = duration_at(f, "latency.absolute", s)?.as_micros() as u64;
        }
        if let Some(v) = fc.latency.min_samples {
            th.latency_min_samples = v;
        }
        if let Some(v) = &fc.latency.tail_relative {
            th.latency_tail_relative = margin_at(file, "latency.tail_relative", v)?;
        }
        if let (Some(f), Some(s)) = (file, &fc.latency.tail_absolute) {
            th.latency_tail_absolute_us =
                duration_at(f, "latency.tail_absolute", s)?.as_micros() as u64;
        }
        if let Some(v) = fc.latency.tail_min_samples {
            th.latency_tail_min_samples = v;
        }
        if let Some(list) = &fc.gate.fail_on {
            th.fail_on = parse_fail_on(&list.get_ref().join(","))
                .map_err(|e| file_error(file, list.span(), "gate.fail_on", e))?;
        }
        if let Some(v) = &fc.gate.max_diff_rate {
            let r = *v.get_ref();
            if !(0.0..=1.0).contains(&r) {
                return Err(file_error(
                    file,
                    v.span(),
                    "gate.max_diff_rate",
                    format!("expected a share between 0 and 1, found {r}"),
                ));
            }
            th.max_diff_rate = Some(r);
        }
        for r in &fc.noise_rule {
            th.noise_rules.push(NoiseRule {
                interfaces: r.interfaces.get_ref().clone(),
                relative: match &r.relative {
                    Some(v) => margin_at(file, "noise_rule.relative", v)?,
                    None => th.noise_relative,
                },
                absolute_pct: match &r.absolute_pct {
                    Some(v) => points_at(file, "noise_rule.absolute_pct", v)?,
                    None => th.noise_absolute_pct,
                },
            });
        }
        if let Some(s) = &a.fail_on {
            th.fail_on = parse_fail_on(s)?;
        }
        if let Some(r) = a.max_diff_rate {
            th.max_diff_rate = Some(r);
        }
        if let Some(r) = th.max_diff_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(Error::Usage(format!(
                    "--max-diff-rate: expected a share between 0 and 1, found {r}"
                )));
            }
        }
        if let Some(v) = a.max_latency_regression {
            th.latency_relative = v;
        }
        if !(th.latency_relative.is_finite() && th.latency_relative >= 0.0) {
            return Err(Error::Usage(format!(
                "--max-latency-regression: expected a non-negative share (0.25 = 25% slower), found {}",
                th.latency_relative
            )));
        }
        if let Some(s) = &a.latency_min_slowdown {
            th.latency_absolute_us = parse_duration("latency-min-slowdown", s)?.as_micros() as u64;
        }
        let time_tolerance = match (&a.time_tolerance, file, &fc.time_tolerance) {
            (Some(s), _, _) => parse_duration("time-tolerance", s)?,
            (None, Some(f), Some(s)) => duration_at(f, "time_tolerance", s)?,
            _ => Duration::from_secs(5),
        };
        th.time_tolerance_ms = time_tolerance.as_millis() as u64;

        let timeout = parse_duration("timeout", &a.timeout)?;
        if timeout.is_zero() {
            return Err(Error::Usage("--timeout: expected more than 0".into()));
        }

        let mut base = CompareOptions {
            time_tolerance,
            missing_rule_grpc_statuses: parse_grpc_statuses(&a.missing_rule_grpc_status)?,
            proto_descriptor: match &a.proto_descriptor {
                Some(p) => Some(Arc::new(Descriptors::load(p)?)),
                None => None,
            },
            ..CompareOptions::default()
        };
        if let Some(st) = &fc.missing_rule.statuses {
            base.missing_rule_statuses = st.clone();
        }
        if let (Some(f), Some(re)) = (file, &fc.missing_rule.body) {
            base.missing_rule_body = Some(
                body_regex(re.get_ref())
                    .map_err(|e| f.error_at(re.span(), "missing_rule.body", e))?,
            );
        }
        let safety = crate::safety::Safety::new(
            fc.side_effects
                .safe
                .iter()
                .chain(&a.safe)
                .cloned()
                .collect(),
            fc.side_effects.unsafe_.clone(),
            base.proto_descriptor
                .as_ref()
                .map(|d| d.repeatable_paths())
                .unwrap_or_default(),
        );
        let mut rules = Rules::new(base);
        if let Some(f) = file {
            for r in &fc.ignore {
                let paths = r
                    .paths
                    .iter()
                    .map(|p| pattern(f, "ignore.paths", p))
                    .collect::<Result<Vec<_>>>()?;
                let headers = r.headers.iter().map(|h| h.to_ascii_lowercase()).collect();
                rules.ignore.push(Scoped {
                    interfaces: scoped_glob(&r.interfaces),
                    rule: (headers, paths),
                });
            }
            for r in &fc.tolerance {
                if r.absolute.is_none() && r.relative.is_none() {
                    return Err(f.error_at(
                        r.path.span(),
                        "tolerance",
                        "expected `absolute`, `relative` or both",
                    ));
                }
                rules.tolerance.push(Scoped {
                    interfaces: scoped_glob(&r.interfaces),
                    rule: NumericTolerance {
                        path: pattern(f, "tolerance.path", &r.path)?,
                        absolute: r.absolute.unwrap_or(0.0),
                        relative: r.relative.unwrap_or(0.0),
                    },
                });
            }
            for r in &fc.unordered {
                rules.unordered.push(Scoped {
                    interfaces: scoped_glob(&r.interfaces),
                    rule: r
                        .paths
                        .iter()
                        .map(|p| pattern(f, "unordered.paths", p))
                        .collect::<Result<Vec<_>>>()?,
                });
            }
        }

        let tenant_header = a
            .tenant_header
            .clone()
            .or_else(|| fc.tenant_header.clone())
            .map(|h| h.to_ascii_lowercase());
        Ok(ReplayConfig {
            recordings: a.recordings.clone(),
            baseline: a.baseline.clone(),
            candidate: a.candidate.clone(),
            secondary: if a.no_noise_probe {
                None
            } else {
                Some(a.secondary.clone().unwrap_or_else(|| a.baseline.clone()))
            },
            concurrency: a.concurrency,
            pacing,
            timeout,
            wait_ready: a.wait_ready.clone(),
            ready_timeout: parse_duration("ready-timeout", &a.ready_timeout)?,
            keyer: Keyer { key, templates },
            tenant_header,
            allow_side_effects: a.allow_side_effects,
            safety: Arc::new(safety),
            recorded_noise: !a.no_recorded_noise,
            set_headers,
            host_header: a.host_header,
            read: ReadOptions {
                skip_bad_lines: a.skip_bad_lines,
            },
            max_body: a.max_body,
            rules: Arc::new(rules),
            thresholds: th,
            json: a.json.clone(),
            diffs: a.diffs.clone(),
            selection: Selection::from_args(&SelectionArgs {
                since: a.since.as_deref(),
                until: a.until.as_deref(),
                ids: &a.ids,
                filters: &a.filters,
                shard: a.shard.as_deref(),
            })?,
        })
    }
}

/// The `[missing_rule] body` regex, within [`MAX_BODY_PATTERN`] and
/// [`BODY_REGEX_SIZE_LIMIT`]; the error says what was expected.
fn body_regex(pattern: &str) -> std::result::Result<regex::Regex, String> {
    if pattern.len() > MAX_BODY_PATTERN {
        return Err(format!(
            "a pattern of {} bytes; expected a regular expression of at most {MAX_BODY_PATTERN} bytes",
            pattern.len()
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(BODY_REGEX_SIZE_LIMIT)
        .dfa_size_limit(BODY_REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "the regular expression compiles to more than {limit} bytes; expected a smaller one (fewer or smaller counted repetitions)"
            ),
            e => format!("not a valid regular expression: {e}"),
        })
}

/// A relative margin from the rules file: a share, 0 or more (0.2 = 20%).
fn margin_at(file: Option<&LoadedConfig>, key: &str, v: &Spanned<f64>) -> Result<f64> {
    let x = *v.get_ref();
    if x.is_finite() && x >= 0.0 {
        return Ok(x);
    }
    Err(file_error(
        file,
        v.span(),
        key,
        format!("expected a share, 0 or more (0.2 = 20%), found {x}"),
    ))
}

/// An absolute margin from the rules file, in percentage points: 0 to 100.
fn points_at(file: Option<&LoadedConfig>, key: &str, v: &Spanned<f64>) -> Result<f64> {
    let x = *v.get_ref();
    if (0.0..=100.0).contains(&x) {
        return Ok(x);
    }
    Err(file_error(
        file,
        v.span(),
        key,
        format!("expected percentage points between 0 and 100, found {x}"),
    ))
}

/// An error at a span of the rules file (or a usage error when there is no file).
fn file_error(
    file: Option<&LoadedConfig>,
    span: std::ops::Range<usize>,
    key: &str,
    e: impl std::fmt::Display,
) -> Error {
    match file {
        Some(f) => f.error_at(span, key, e),
        None => Error::Usage(format!("{key}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_globs_take_templated_keys_literally() {
        let r = Scoped {
            interfaces: Some("GET /users/{id}*".to_string()),
            rule: (),
        };
        assert!(r.applies("GET /users/{id}"));
        assert!(r.applies("GET /users/{id}/orders"));
        assert!(!r.applies("GET /users/id"));
        assert!(Scoped {
            interfaces: None,
            rule: ()
        }
        .applies("anything"));
    }

    #[test]
    fn header_flags() {
        assert_eq!(
            parse_header_flag("x", "Authorization: Bearer abc").unwrap(),
            ("authorization".into(), "Bearer abc".into())
        );
        assert!(parse_header_flag("x", "no colon").is_err());
        assert!(parse_header_flag("x", "bad name: v").is_err());
        let e = parse_header_flag("set-header", "Content-Length: 0").unwrap_err();
        assert!(
            e.to_string()
                .contains("content-length belongs to the connection"),
            "{e}"
        );
        assert!(parse_header_flag("set-header", "Transfer-Encoding: chunked").is_err());
        assert!(parse_header_flag("set-header", "Host: real.example").is_ok());
    }

    #[test]
    fn fail_on_classes() {
        assert_eq!(
            parse_fail_on("different, latency").unwrap(),
            ["different", "latency"]
        );
        let e = parse_fail_on("different,slow").unwrap_err().to_string();
        assert!(e.contains("\"slow\"") && e.contains("missing_rule"), "{e}");
    }

    #[test]
    fn grpc_status_lists() {
        assert_eq!(parse_grpc_statuses("12").unwrap(), [12]);
        assert_eq!(parse_grpc_statuses(" 12, 5,12").unwrap(), [12, 5]);
        assert!(parse_grpc_statuses("").unwrap().is_empty());
        let e = parse_grpc_statuses("12,UNIMPLEMENTED")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--missing-rule-grpc-status"), "{e}");
        assert!(parse_grpc_statuses("17").is_err());
    }

    #[test]
    fn urls_and_durations() {
        assert!(check_url("baseline", "http://127.0.0.1:1").is_ok());
        assert!(check_url("baseline", "h2c://127.0.0.1:1").is_ok());
        assert!(check_url("baseline", "https://x")
            .unwrap_err()
            .to_string()
            .contains("https"));
        assert!(check_url("baseline", "localhost:80").is_err());
        assert_eq!(
            parse_duration("t", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(parse_duration("t", "soon")
            .unwrap_err()
            .to_string()
            .contains("--t"));
    }
}
