//! What a run does, validated: raw flags from `cli` become a [`ReplayConfig`] here, in one
//! place, with every value checked and every error naming the flag and what was expected.

use crate::analysis::result::Thresholds;
use crate::cli::{HostHeaderMode, ReplayArgs};
use crate::compare::CompareOptions;
use crate::error::{Error, Result};
use crate::interface::InterfaceKey;
use crate::recording::ReadOptions;
use crate::replay::select::{Selection, SelectionArgs};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Interface key rule.
    pub interface_key: InterfaceKey,
    /// Tenant header (lower case).
    pub tenant_header: Option<String>,
    /// Replay side-effecting methods.
    pub allow_side_effects: bool,
    /// Headers set on every replayed request.
    pub set_headers: Vec<(String, String)>,
    /// Host header mode.
    pub host_header: HostHeaderMode,
    /// Reader options.
    pub read: ReadOptions,
    /// Largest response body accepted.
    pub max_body: usize,
    /// Per-exchange comparison options.
    pub compare: CompareOptions,
    /// Analysis and gate thresholds.
    pub thresholds: Thresholds,
    /// Where to write JSON.
    pub json: Option<PathBuf>,
    /// Shard and filters: which exchanges this run replays.
    pub selection: Selection,
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
    Ok((name.to_ascii_lowercase(), value.to_string()))
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

impl ReplayConfig {
    /// Validates the flags of `replay`.
    pub fn from_args(a: &ReplayArgs) -> Result<Self> {
        check_url("baseline", &a.baseline)?;
        check_url("candidate", &a.candidate)?;
        if let Some(s) = &a.secondary {
            check_url("secondary", s)?;
        }
        if a.concurrency == 0 {
            return Err(Error::Usage("--concurrency: expected at least 1".into()));
        }
        let pacing = match (a.rate, a.speed) {
            (Some(r), _) if !(r.is_finite() && r > 0.0) => {
                return Err(Error::Usage(format!(
                    "--rate: expected a positive number of exchanges per second, found {r}"
                )))
            }
            (_, Some(x)) if !(x.is_finite() && x > 0.0) => {
                return Err(Error::Usage(format!(
                    "--speed: expected a positive factor, found {x}"
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
        let interface_key = match &a.interface {
            Some(s) => s
                .parse()
                .map_err(|e| Error::Usage(format!("--interface: {e}")))?,
            None => InterfaceKey::Default,
        };
        let set_headers = a
            .set_header
            .iter()
            .map(|h| parse_header_flag("set-header", h))
            .collect::<Result<Vec<_>>>()?;
        let mut thresholds = Thresholds {
            fail_on: parse_fail_on(&a.fail_on)?,
            ..Thresholds::default()
        };
        if let Some(r) = a.max_diff_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(Error::Usage(format!(
                    "--max-diff-rate: expected a share between 0 and 1, found {r}"
                )));
            }
            thresholds.max_diff_rate = Some(r);
        }
        if !(a.max_latency_regression.is_finite() && a.max_latency_regression >= 0.0) {
            return Err(Error::Usage(format!(
                "--max-latency-regression: expected a non-negative share (0.25 = 25% slower), found {}",
                a.max_latency_regression
            )));
        }
        thresholds.latency_relative = a.max_latency_regression;
        thresholds.latency_absolute_us =
            parse_duration("latency-min-slowdown", &a.latency_min_slowdown)?.as_micros() as u64;
        let time_tolerance = parse_duration("time-tolerance", &a.time_tolerance)?;
        thresholds.time_tolerance_ms = time_tolerance.as_millis() as u64;
        let timeout = parse_duration("timeout", &a.timeout)?;
        if timeout.is_zero() {
            return Err(Error::Usage("--timeout: expected more than 0".into()));
        }
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
            interface_key,
            tenant_header: a.tenant_header.as_ref().map(|h| h.to_ascii_lowercase()),
            allow_side_effects: a.allow_side_effects,
            set_headers,
            host_header: a.host_header,
            read: ReadOptions {
                skip_bad_lines: a.skip_bad_lines,
            },
            max_body: a.max_body,
            compare: CompareOptions {
                time_tolerance,
                ..CompareOptions::default()
            },
            thresholds,
            json: a.json.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_flags() {
        assert_eq!(
            parse_header_flag("x", "Authorization: Bearer abc").unwrap(),
            ("authorization".into(), "Bearer abc".into())
        );
        assert!(parse_header_flag("x", "no colon").is_err());
        assert!(parse_header_flag("x", "bad name: v").is_err());
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
