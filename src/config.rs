//! What a run does, validated: raw flags from `cli` and the rules file ([`file`]) become a
//! [`ReplayConfig`] here, in one place, with every value checked and every error naming the
//! flag, or the file, line and key, and what was expected. Flags win over the file.

pub mod file;

use crate::analysis::result::{NoiseRule, Thresholds};
use crate::cli::{HostHeaderMode, ReplayArgs, TlsArgs};
use crate::compare::descriptor::Descriptors;
use crate::compare::pathpat::PathPattern;
use crate::compare::watch::{Target, Watch, Watched};
use crate::compare::{CompareOptions, NumericTolerance};
use crate::error::{Error, Result};
use crate::interface::{InterfaceKey, Keyer};
use crate::recording::ReadOptions;
use crate::replay::select::{Selection, SelectionArgs};
use crate::tls::TlsClientOptions;
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
    /// How `https://` targets are spoken to.
    pub tls: TargetTls,
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
    /// shadowdiff plays both gateways' upstreams, when set.
    pub upstream: Option<UpstreamPlay>,
}

/// Where shadowdiff plays the gateways' upstreams, and when it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamPlay {
    /// `--baseline-upstream`.
    pub baseline: std::net::SocketAddr,
    /// `--candidate-upstream`.
    pub candidate: std::net::SocketAddr,
    /// `--upstream-latency`.
    pub latency: crate::cli::UpstreamLatency,
}

/// An address to listen on, `host:port` with a literal IP (or `localhost`).
fn listen_addr(flag: &str, v: &str) -> Result<std::net::SocketAddr> {
    let v = v.trim();
    let parsed = match v.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}").parse(),
        None => v.parse(),
    };
    parsed.map_err(|_| {
        Error::Usage(format!(
            "--{flag}: expected an address to listen on as IP:PORT (e.g. 127.0.0.1:9001 or \
             0.0.0.0:9001), found {v:?}"
        ))
    })
}

/// A rule that applies to the interfaces a glob matches (all when there is no glob).
#[derive(Clone, Debug)]
struct Scoped<T> {
    interfaces: Option<String>,
    rule: T,
    /// The fields and headers the rule names, noted as compared answers hold them.
    watched: Vec<Arc<Watched>>,
}

impl<T> Scoped<T> {
    fn applies(&self, interface: &str) -> bool {
        self.interfaces
            .as_ref()
            .is_none_or(|g| crate::glob::matches(g, interface))
    }
}

/// A rule as the user wrote it, for the warning when it matched nothing in a run.
#[derive(Clone, Debug)]
struct Written {
    /// `rules.toml:12: [[ignore]]`, or the flag and its value (`--safe POST /x:`): what a
    /// warning about it starts with.
    at: String,
    /// The interfaces glob, where the rule has one.
    interfaces: Option<String>,
    /// The fields and headers it names, each with where it is written.
    targets: Vec<(String, Arc<Watched>)>,
    /// For `[side_effects]` globs: which of the run's declarations it is.
    side_effects: Option<SideEffects>,
}

/// A `[side_effects]` or `--safe` glob, by its index in [`crate::safety::Safety`]'s lists.
#[derive(Clone, Copy, Debug)]
enum SideEffects {
    Safe(usize),
    Unsafe(usize),
}

/// The comparison rules of a run, resolved per interface on demand.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    base: CompareOptions,
    ignore: Vec<Scoped<(Vec<String>, Vec<PathPattern>)>>,
    tolerance: Vec<Scoped<NumericTolerance>>,
    unordered: Vec<Scoped<Vec<PathPattern>>>,
    written: Vec<Written>,
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
        let mut watched = Vec::new();
        for r in self.ignore.iter().filter(|r| r.applies(interface)) {
            o.ignore_headers.extend(r.rule.0.iter().cloned());
            o.ignore_paths.extend(r.rule.1.iter().cloned());
            watched.extend(r.watched.iter().cloned());
        }
        for r in self.tolerance.iter().filter(|r| r.applies(interface)) {
            o.tolerances.push(r.rule.clone());
            watched.extend(r.watched.iter().cloned());
        }
        for r in self.unordered.iter().filter(|r| r.applies(interface)) {
            o.unordered.extend(r.rule.iter().cloned());
            watched.extend(r.watched.iter().cloned());
        }
        if !watched.is_empty() {
            o.watch = Some(Arc::new(Watch::new(watched)));
        }
        o
    }

    /// One warning per rule that matched nothing in a run over `interfaces` (the keys of
    /// every interface the run read): an interfaces glob that matches none of them, or a
    /// field path or header name that no answer compared under the rule held. `safety` is
    /// the run's, whose globs note their own use.
    pub fn unmatched(&self, interfaces: &[&str], safety: &crate::safety::Safety) -> Vec<String> {
        // Over no exchanges every rule matches nothing; the run already says it read none.
        if interfaces.is_empty() {
            return Vec::new();
        }
        let unused_safe = safety.unused_safe();
        let unused_unsafe = safety.unused_unsafe();
        let mut out = Vec::new();
        for w in &self.written {
            let scoped: Vec<&str> = match &w.interfaces {
                Some(g) => interfaces
                    .iter()
                    .copied()
                    .filter(|i| crate::glob::matches(g, i))
                    .collect(),
                None => interfaces.to_vec(),
            };
            if let Some(which) = w.side_effects {
                let (unused, what) = match which {
                    SideEffects::Safe(i) => (
                        unused_safe.contains(&i),
                        "no request of this run that may change state matches it",
                    ),
                    SideEffects::Unsafe(i) => (
                        unused_unsafe.contains(&i),
                        "no request of this run matches it",
                    ),
                };
                if unused {
                    out.push(format!(
                        "{} matched nothing in this run: {what} (keys look like {:?})",
                        w.at,
                        example_key(w.interfaces.as_deref().unwrap_or(""), interfaces)
                    ));
                }
                continue;
            }
            if let (Some(g), true) = (&w.interfaces, scoped.is_empty()) {
                out.push(format!(
                    "{} matched nothing in this run: interfaces {g:?} matches no interface \
                     (keys look like {:?})",
                    w.at,
                    example_key(g, interfaces)
                ));
                continue;
            }
            for (at, t) in w.targets.iter().filter(|(_, t)| !t.seen()) {
                let what = match &t.target {
                    Target::Path(p) => format!("path {:?} matched no field", p.to_string()),
                    Target::Header(h) => format!("header {h:?} matched no header"),
                };
                out.push(format!("{at} {what} of {}", list_interfaces(&scoped)));
            }
        }
        out
    }
}

/// The run's interface key most like `glob`: the longest shared start of the glob's text
/// before its first `*` with a key or with a key's path.
fn example_key<'a>(glob: &str, interfaces: &[&'a str]) -> &'a str {
    let lead = glob.split('*').next().unwrap_or("");
    let shared = |k: &str| {
        let path = k.split_once(' ').map_or(k, |(_, p)| p);
        [k, path]
            .iter()
            .map(|t| {
                lead.chars()
                    .zip(t.chars())
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    // The first of equals, so the example does not depend on the order keys come in.
    let mut sorted = interfaces.to_vec();
    sorted.sort_unstable();
    sorted
        .iter()
        .copied()
        .max_by_key(|k| (shared(k), std::cmp::Reverse(*k)))
        .unwrap_or("")
}

/// `GET /a`, `GET /a and GET /b`, or the first three and how many more.
fn list_interfaces(interfaces: &[&str]) -> String {
    let mut sorted = interfaces.to_vec();
    sorted.sort_unstable();
    match sorted.as_slice() {
        [one] => one.to_string(),
        [a, b] => format!("{a} and {b}"),
        [a, b, c] => format!("{a}, {b} and {c}"),
        [a, b, c, rest @ ..] => format!("{a}, {b}, {c} and {} more", rest.len()),
        [] => "any interface".to_string(),
    }
}

/// True when `glob` can match a key of the default rule: `METHOD /path` (the method upper
/// case, as keys are built) or gRPC's `/package.Service/Method`. Globs are read as a small
/// automaton over both forms, so a glob is refused only when no key of either form fits.
fn fits_default_key(glob: &str) -> bool {
    // States: 0 method expected, 1 in the method, 2 in the path (accepting); 3 gRPC's
    // leading `/` expected, 4 service expected, 5 in the service, 6 method expected,
    // 7 in the method (accepting).
    const ACCEPT: u16 = 1 << 2 | 1 << 7;
    fn step(states: u16, c: char) -> u16 {
        let method_char = c != ' ' && c != '/' && !c.is_ascii_lowercase();
        let mut next = 0u16;
        for s in 0..8 {
            if states & (1 << s) == 0 {
                continue;
            }
            let to: Option<u16> = match (s, c) {
                (0 | 1, _) if method_char => Some(1),
                (1, ' ') => Some(2),
                (2, _) => Some(2),
                (3, '/') => Some(4),
                (4 | 5, _) if c != '/' => Some(5),
                (5, '/') => Some(6),
                (6 | 7, _) if c != '/' => Some(7),
                _ => None,
            };
            if let Some(t) = to {
                next |= 1 << t;
            }
        }
        next
    }
    let mut states: u16 = 1 << 0 | 1 << 3;
    for c in glob.chars() {
        if c == '*' {
            // Any run of characters: every state reachable by some string, one
            // representative per class of characters the states tell apart.
            loop {
                let grown = ['A', 'a', ' ', '/']
                    .iter()
                    .fold(states, |acc, c| acc | step(states, *c));
                if grown == states {
                    break;
                }
                states = grown;
            }
        } else {
            states = step(states, c);
        }
        if states == 0 {
            return false;
        }
    }
    states & ACCEPT != 0
}

/// The load-time check of an interfaces glob: under the default key, one that no
/// `METHOD /path` or gRPC key can match is an error that shows the form expected.
fn check_glob(key: &InterfaceKey, glob: &str) -> std::result::Result<(), String> {
    if !matches!(key, InterfaceKey::Default) || fits_default_key(glob) {
        return Ok(());
    }
    let example = if glob.starts_with('/') {
        format!("{:?} or {:?}", format!("GET {glob}"), format!("* {glob}"))
    } else {
        "\"GET /api/products/*\" or \"* /api/products/*\"".to_string()
    };
    Err(format!(
        "{glob:?} can match no interface: keys are \"METHOD /path\" (like \"GET /api/products/{{id}}\") \
         or a gRPC \"/package.Service/Method\"; expected a glob like {example}"
    ))
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
    crate::units::duration(s.get_ref()).map_err(|e| f.error_at(s.span(), key, e))
}

/// Parses a duration in the [`crate::units`] grammar (`10s`, `1.5s`, `500ms`, `2m`); errors
/// name the flag.
pub fn parse_duration(flag: &str, s: &str) -> Result<Duration> {
    crate::units::duration(s).map_err(|e| Error::Usage(format!("--{flag}: {e}")))
}

fn check_url(flag: &str, url: &str) -> Result<()> {
    let ok = ["http://", "https://", "h2c://"]
        .iter()
        .any(|p| url.starts_with(p) && url.len() > p.len());
    if !ok {
        return Err(Error::Usage(format!(
            "--{flag}: expected a URL like http://host:port, https://host:port or \
             h2c://host:port, found {url:?}"
        )));
    }
    Ok(())
}

/// How each target speaks TLS when its URL is `https://`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetTls {
    /// The baseline's settings.
    pub baseline: TlsClientOptions,
    /// The candidate's settings.
    pub candidate: TlsClientOptions,
    /// The noise probe's (the baseline's when the probe is the baseline).
    pub secondary: TlsClientOptions,
}

/// The TLS client settings the flags give, before any side's own.
pub fn client_tls(a: &crate::cli::TlsClientArgs) -> TlsClientOptions {
    TlsClientOptions {
        ca_cert: a.ca_cert.clone(),
        insecure: a.insecure,
        client_cert: a.client_cert.clone(),
        client_key: a.client_key.clone(),
        server_name: a.tls_server_name.clone(),
    }
}

impl TargetTls {
    /// The settings for all targets with each side's `KEY=VALUE` settings over them;
    /// `secondary` is `None` when the probe is the baseline.
    pub fn from_args(a: &TlsArgs, secondary: Option<&[String]>) -> Result<Self> {
        let all = client_tls(&a.client);
        let baseline = side_tls(&all, "baseline-tls", &a.baseline_tls)?;
        Ok(TargetTls {
            candidate: side_tls(&all, "candidate-tls", &a.candidate_tls)?,
            secondary: match secondary {
                Some(own) => side_tls(&all, "secondary-tls", own)?,
                None => baseline.clone(),
            },
            baseline,
        })
    }

    /// The sides that do not verify certificates, for the warning every report carries.
    pub fn insecure_sides<'a>(&self, urls: [(&'a str, Option<&'a str>); 3]) -> Vec<String> {
        let opts = [&self.baseline, &self.candidate, &self.secondary];
        urls.iter()
            .zip(opts)
            .filter_map(|((side, url), o)| {
                let url = (*url)?;
                (o.insecure && url.starts_with("https://")).then(|| format!("{side} ({url})"))
            })
            .collect()
    }
}

/// `all` with the `KEY=VALUE` settings of `--{flag}` over it.
pub(crate) fn side_tls(
    all: &TlsClientOptions,
    flag: &str,
    settings: &[String],
) -> Result<TlsClientOptions> {
    let mut o = all.clone();
    for s in settings {
        let (key, value) = s.split_once('=').unwrap_or((s.as_str(), ""));
        let need = |v: &str| {
            if v.is_empty() {
                Err(Error::Usage(format!(
                    "--{flag} {s}: {key} needs a value ({key}=...)"
                )))
            } else {
                Ok(v.to_string())
            }
        };
        match key {
            "ca-cert" => o.ca_cert = Some(need(value)?.into()),
            "client-cert" => o.client_cert = Some(need(value)?.into()),
            "client-key" => o.client_key = Some(need(value)?.into()),
            "server-name" => o.server_name = Some(need(value)?),
            "insecure" => {
                o.insecure = match value {
                    "" | "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Error::Usage(format!(
                            "--{flag} {s}: insecure takes true or false"
                        )))
                    }
                }
            }
            _ => {
                return Err(Error::Usage(format!(
                    "--{flag} {s}: expected ca-cert=FILE, client-cert=FILE, client-key=FILE, \
                     server-name=NAME or insecure[=true|false]"
                )))
            }
        }
    }
    Ok(o)
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
    // These describe one connection and its framing, which the client sets from the body it
    // sends; a second length or a transfer coding beside it would desynchronise the server.
    if name == "content-length" || crate::http1::headers::is_hop_by_hop(name.as_bytes()) {
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
        let mut th = file_thresholds(file, &key)?;
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
        for g in fc.side_effects.safe.iter().chain(&fc.side_effects.unsafe_) {
            glob_at(file, &key, "side_effects", g)?;
        }
        for g in &a.safe {
            check_glob(&key, g).map_err(|e| Error::Usage(format!("--safe: {e}")))?;
        }
        let safety = crate::safety::Safety::new(
            fc.side_effects
                .safe
                .iter()
                .map(|g| g.get_ref().clone())
                .chain(a.safe.iter().cloned())
                .collect(),
            fc.side_effects
                .unsafe_
                .iter()
                .map(|g| g.get_ref().clone())
                .collect(),
            base.proto_descriptor
                .as_ref()
                .map(|d| d.repeatable_paths())
                .unwrap_or_default(),
        );
        let mut rules = Rules::new(base);
        if let Some(f) = file {
            // Where a rule is written: its interfaces glob, else its first value.
            let head = |section: &str, glob: &Option<Spanned<String>>, first: Option<Span>| {
                let span = glob.as_ref().map(|g| g.span()).or(first).unwrap_or(0..0);
                format!("{}: {section}", f.place(span))
            };
            for r in &fc.ignore {
                if let Some(g) = &r.interfaces {
                    glob_at(file, &key, "ignore.interfaces", g)?;
                }
                let mut watched = Vec::new();
                let mut targets = Vec::new();
                let mut paths = Vec::new();
                for p in &r.paths {
                    let pat = pattern(f, "ignore.paths", p)?;
                    let w = Watched::new(Target::Path(pat.clone()));
                    targets.push((format!("{}: [[ignore]]", f.place(p.span())), w.clone()));
                    watched.push(w);
                    paths.push(pat);
                }
                let mut headers = Vec::new();
                for h in &r.headers {
                    let name = h.get_ref().to_ascii_lowercase();
                    let w = Watched::new(Target::Header(name.clone()));
                    targets.push((format!("{}: [[ignore]]", f.place(h.span())), w.clone()));
                    watched.push(w);
                    headers.push(name);
                }
                let first = r
                    .paths
                    .first()
                    .map(|p| p.span())
                    .or_else(|| r.headers.first().map(|h| h.span()));
                rules.written.push(Written {
                    at: head("[[ignore]]", &r.interfaces, first),
                    interfaces: scoped_glob(&r.interfaces),
                    targets,
                    side_effects: None,
                });
                rules.ignore.push(Scoped {
                    interfaces: scoped_glob(&r.interfaces),
                    rule: (headers, paths),
                    watched,
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
                if let Some(g) = &r.interfaces {
                    glob_at(file, &key, "tolerance.interfaces", g)?;
                }
                let path = pattern(f, "tolerance.path", &r.path)?;
                let w = Watched::new(Target::Path(path.clone()));
                rules.written.push(Written {
                    at: head("[[tolerance]]", &r.interfaces, Some(r.path.span())),
                    interfaces: scoped_glob(&r.interfaces),
                    targets: vec![(
                        format!("{}: [[tolerance]]", f.place(r.path.span())),
                        w.clone(),
                    )],
                    side_effects: None,
                });
                rules.tolerance.push(Scoped {
                    interfaces: scoped_glob(&r.interfaces),
                    rule: NumericTolerance {
                        path,
                        absolute: r.absolute.unwrap_or(0.0),
                        relative: r.relative.unwrap_or(0.0),
                    },
                    watched: vec![w],
                });
            }
            for r in &fc.unordered {
                if let Some(g) = &r.interfaces {
                    glob_at(file, &key, "unordered.interfaces", g)?;
                }
                let mut watched = Vec::new();
                let mut targets = Vec::new();
                let mut paths = Vec::new();
                for p in &r.paths {
                    let pat = pattern(f, "unordered.paths", p)?;
                    let w = Watched::new(Target::Path(pat.clone()));
                    targets.push((format!("{}: [[unordered]]", f.place(p.span())), w.clone()));
                    watched.push(w);
                    paths.push(pat);
                }
                rules.written.push(Written {
                    at: head(
                        "[[unordered]]",
                        &r.interfaces,
                        r.paths.first().map(|p| p.span()),
                    ),
                    interfaces: scoped_glob(&r.interfaces),
                    targets,
                    side_effects: None,
                });
                rules.unordered.push(Scoped {
                    interfaces: scoped_glob(&r.interfaces),
                    rule: paths,
                    watched,
                });
            }
            for r in &fc.noise_rule {
                rules.written.push(Written {
                    at: head("[[noise_rule]]", &Some(r.interfaces.clone()), None),
                    interfaces: Some(r.interfaces.get_ref().clone()),
                    targets: Vec::new(),
                    side_effects: None,
                });
            }
            let side = |list: &str, g: &Spanned<String>, which| Written {
                at: format!(
                    "{}: [side_effects] {list} {:?}",
                    f.place(g.span()),
                    g.get_ref()
                ),
                interfaces: Some(g.get_ref().clone()),
                targets: Vec::new(),
                side_effects: Some(which),
            };
            for (i, g) in fc.side_effects.safe.iter().enumerate() {
                rules.written.push(side("safe", g, SideEffects::Safe(i)));
            }
            for (i, g) in fc.side_effects.unsafe_.iter().enumerate() {
                rules
                    .written
                    .push(side("unsafe", g, SideEffects::Unsafe(i)));
            }
        }
        for (i, g) in a.safe.iter().enumerate() {
            rules.written.push(Written {
                at: format!("--safe {g}:"),
                interfaces: Some(g.clone()),
                targets: Vec::new(),
                side_effects: Some(SideEffects::Safe(fc.side_effects.safe.len() + i)),
            });
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
            tls: TargetTls::from_args(
                &a.tls,
                a.secondary.as_ref().map(|_| a.secondary_tls.as_slice()),
            )?,
            host_header: a.host_header,
            read: ReadOptions {
                skip_bad_lines: a.skip_bad_lines,
            },
            max_body: usize::try_from(a.max_body).unwrap_or(usize::MAX),
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
            upstream: match (&a.baseline_upstream, &a.candidate_upstream) {
                (Some(b), Some(c)) => {
                    let play = UpstreamPlay {
                        baseline: listen_addr("baseline-upstream", b)?,
                        candidate: listen_addr("candidate-upstream", c)?,
                        latency: a.upstream_latency,
                    };
                    if play.baseline == play.candidate && play.baseline.port() != 0 {
                        return Err(Error::Usage(format!(
                            "--candidate-upstream {c}: the same address as --baseline-upstream; \
                             each gateway version needs its own, so every forwarded request is \
                             known by side"
                        )));
                    }
                    Some(play)
                }
                _ => None,
            },
        })
    }
}

/// The gates, noise and latency thresholds a rules file sets over the defaults (`[gate]`,
/// `[noise]`, `[[noise_rule]]`, `[latency]`): one reading for replay and the tap's live
/// shadow, so the same file judges alike wherever it is used. Flags come on top.
pub fn file_thresholds(file: Option<&LoadedConfig>, key: &InterfaceKey) -> Result<Thresholds> {
    let empty = file::FileConfig::default();
    let fc = file.map(|f| &f.config).unwrap_or(&empty);
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
        let r = v.get_ref().0;
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
        glob_at(file, key, "noise_rule.interfaces", &r.interfaces)?;
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
    Ok(th)
}

/// A byte range of the rules file.
type Span = std::ops::Range<usize>;

/// [`check_glob`] on an interfaces glob of the rules file.
fn glob_at(
    file: Option<&LoadedConfig>,
    key: &InterfaceKey,
    name: &str,
    glob: &Spanned<String>,
) -> Result<()> {
    check_glob(key, glob.get_ref()).map_err(|e| file_error(file, glob.span(), name, e))
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
fn margin_at(file: Option<&LoadedConfig>, key: &str, v: &Spanned<file::Share>) -> Result<f64> {
    let x = v.get_ref().0;
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
            watched: Vec::new(),
        };
        assert!(r.applies("GET /users/{id}"));
        assert!(r.applies("GET /users/{id}/orders"));
        assert!(!r.applies("GET /users/id"));
        assert!(Scoped {
            interfaces: None,
            rule: (),
            watched: Vec::new(),
        }
        .applies("anything"));
    }

    #[test]
    fn globs_are_refused_only_when_no_default_key_fits() {
        for fits in [
            "GET /api/products/*",
            "* /api/products/*",
            "*/api/products/*",
            "*",
            "POST /rpc/*/Get*",
            "/pkg.Svc/*",
            "/pkg.*/Get*",
            "/users/*",
            "GET *",
        ] {
            assert!(fits_default_key(fits), "{fits}");
        }
        for not in [
            "/api/products/*",
            "/rpc/*/Get*",
            "get /api/x",
            "",
            "api/*",
            "GET/x",
        ] {
            assert!(!fits_default_key(not), "{not}");
        }
        let e = check_glob(&InterfaceKey::Default, "/api/products/*").unwrap_err();
        assert!(
            e.contains(r#"expected a glob like "GET /api/products/*" or "* /api/products/*""#),
            "{e}"
        );
        let header: InterfaceKey = "header:x-op".parse().unwrap();
        assert!(check_glob(&header, "/api/products/*").is_ok());
    }

    #[test]
    fn warnings_show_the_key_most_like_the_glob() {
        let keys = [
            "GET /api/orders/{id}",
            "GET /api/products/{id}",
            "POST /login",
        ];
        assert_eq!(
            example_key("/api/products/*", &keys),
            "GET /api/products/{id}"
        );
        assert_eq!(example_key("POST /lo*", &keys), "POST /login");
        assert_eq!(list_interfaces(&keys[..1]), "GET /api/orders/{id}");
        assert_eq!(list_interfaces(&["d", "c", "b", "a"]), "a, b, c and 1 more");
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
    fn each_side_takes_its_own_tls_settings_over_the_shared_ones() {
        let a = TlsArgs {
            client: crate::cli::TlsClientArgs {
                ca_cert: Some("ca.pem".into()),
                client_cert: Some("c.pem".into()),
                client_key: Some("c.key".into()),
                ..Default::default()
            },
            candidate_tls: vec![
                "insecure".into(),
                "server-name=new.internal".into(),
                "client-cert=n.pem".into(),
            ],
            baseline_tls: vec!["ca-cert=old-ca.pem".into()],
        };
        let t = TargetTls::from_args(&a, None).unwrap();
        assert_eq!(t.baseline.ca_cert, Some("old-ca.pem".into()));
        assert_eq!(t.baseline.client_key, Some("c.key".into()));
        assert!(!t.baseline.insecure);
        assert!(t.candidate.insecure);
        assert_eq!(t.candidate.server_name.as_deref(), Some("new.internal"));
        assert_eq!(t.candidate.client_cert, Some("n.pem".into()));
        assert_eq!(t.candidate.ca_cert, Some("ca.pem".into()));
        // Without --secondary the probe is the baseline, settings and all.
        assert_eq!(t.secondary, t.baseline);
        let own = TargetTls::from_args(&a, Some(&["insecure=false".to_string()])).unwrap();
        assert_eq!(own.secondary.ca_cert, Some("ca.pem".into()));
        let sides = t.insecure_sides([
            ("baseline", Some("https://old")),
            ("candidate", Some("https://new")),
            ("secondary", None),
        ]);
        assert_eq!(sides, ["candidate (https://new)"]);
        // A plain target has nothing to verify.
        assert!(t
            .insecure_sides([
                ("baseline", Some("http://old")),
                ("candidate", Some("http://new")),
                ("secondary", None)
            ])
            .is_empty());
        for (bad, says) in [
            ("ca-cert", "ca-cert needs a value"),
            ("insecure=yes", "insecure takes true or false"),
            ("cacert=x", "expected ca-cert=FILE"),
        ] {
            let a = TlsArgs {
                candidate_tls: vec![bad.into()],
                ..Default::default()
            };
            let e = TargetTls::from_args(&a, None).unwrap_err().to_string();
            assert!(
                e.contains(&format!("--candidate-tls {bad}")) && e.contains(says),
                "{e}"
            );
        }
    }

    #[test]
    fn urls_and_durations() {
        assert!(check_url("baseline", "http://127.0.0.1:1").is_ok());
        assert!(check_url("baseline", "h2c://127.0.0.1:1").is_ok());
        assert!(check_url("baseline", "https://x").is_ok());
        assert!(check_url("baseline", "https://")
            .unwrap_err()
            .to_string()
            .contains("https://host:port"));
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
