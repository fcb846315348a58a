//! `shadowdiff.toml`: what the user says is noise, how interfaces are keyed, what a missing
//! rule looks like, and the thresholds, as a typed file. Unknown keys are errors (a typo must
//! not silently turn a rule off), and every error names the file, the line and the key.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A share or ratio as the file may write it: a number (`0.25`) or a percentage (`"25%"`),
/// the same grammar as the flags ([`crate::units`]). The range is checked where it is used.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Share(pub f64);

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(x) => Ok(Share(x)),
            Raw::Text(t) => crate::units::fraction(&t)
                .map(Share)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Two values that read as times and differ by at most this much are noise (`5s`).
    pub time_tolerance: Option<Spanned<String>>,
    /// Header whose value names the tenant.
    pub tenant_header: Option<String>,
    /// How interfaces are keyed.
    #[serde(default)]
    pub interface: InterfaceSection,
    /// What the gateway's "no route" answer looks like.
    #[serde(default)]
    pub missing_rule: MissingRuleSection,
    /// The noise rule's thresholds.
    #[serde(default)]
    pub noise: NoiseSection,
    /// The latency rule's thresholds.
    #[serde(default)]
    pub latency: LatencySection,
    /// Gates.
    #[serde(default)]
    pub gate: GateSection,
    /// Headers and field paths not compared.
    #[serde(default)]
    pub ignore: Vec<IgnoreRule>,
    /// Numeric tolerances per path.
    #[serde(default)]
    pub tolerance: Vec<ToleranceRule>,
    /// Arrays whose order does not matter.
    #[serde(default)]
    pub unordered: Vec<UnorderedRule>,
    /// Noise thresholds for some interfaces.
    #[serde(default)]
    pub noise_rule: Vec<NoiseRuleEntry>,
    /// What the tap redacts before writing.
    #[serde(default)]
    pub redact: RedactSection,
    /// Which interfaces may be sent more than once.
    #[serde(default)]
    pub side_effects: SideEffectsSection,
}

/// `[side_effects]`: interfaces that only read though not sent as GET (`safe`), and
/// interfaces never to send twice whatever their method (`unsafe`, which wins).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideEffectsSection {
    /// Interface globs that are reads (`"POST /rpc/*/Get*"`).
    #[serde(default)]
    pub safe: Vec<Spanned<String>>,
    /// Interface globs that change state, whatever their method.
    #[serde(default, rename = "unsafe")]
    pub unsafe_: Vec<Spanned<String>>,
}

/// `[interface]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSection {
    /// `default`, `header:NAME` or `json:/pointer`.
    pub key: Option<Spanned<String>>,
    /// Path templates (`/users/{id}/orders`, optionally `GET /users/{id}`) tried before the
    /// default id templating.
    #[serde(default)]
    pub templates: Vec<Spanned<String>>,
}

/// `[missing_rule]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingRuleSection {
    /// Candidate statuses that mean "no route" (default 404 and 501).
    pub statuses: Option<Vec<u16>>,
    /// A regular expression the candidate's body must also match.
    pub body: Option<Spanned<String>>,
}

/// `[noise]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseSection {
    /// Relative margin of the raw rate over the noise rate (Diffy: 0.2).
    pub relative: Option<Spanned<Share>>,
    /// Absolute margin in percentage points (Diffy: 0.03).
    pub absolute_pct: Option<Spanned<f64>>,
}

/// `[latency]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySection {
    /// Relative slowdown of the paired median that counts (0.25).
    pub relative: Option<Spanned<Share>>,
    /// Absolute slowdown it also needs (`2ms`).
    pub absolute: Option<Spanned<String>>,
    /// Pairs needed before judging.
    pub min_samples: Option<u64>,
    /// Tail rule: share of the baseline p99 the candidate's p99 must exceed it by (0.5).
    pub tail_relative: Option<Spanned<Share>>,
    /// Tail rule: absolute amount it must also exceed it by (`10ms`).
    pub tail_absolute: Option<Spanned<String>>,
    /// Tail rule: pairs needed before judging (100).
    pub tail_min_samples: Option<u64>,
}

/// `[gate]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    /// Classes that fail the run.
    pub fail_on: Option<Spanned<Vec<String>>>,
    /// Share of compared exchanges that may differ.
    pub max_diff_rate: Option<Spanned<Share>>,
}

/// `[[ignore]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRule {
    /// Glob on the interface key; absent means every interface.
    pub interfaces: Option<Spanned<String>>,
    /// Header names not compared.
    #[serde(default)]
    pub headers: Vec<Spanned<String>>,
    /// Field-path patterns not compared.
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
}

/// `[[tolerance]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToleranceRule {
    /// Glob on the interface key; absent means every interface.
    pub interfaces: Option<Spanned<String>>,
    /// Field-path pattern (exact match).
    pub path: Spanned<String>,
    /// Absolute tolerance.
    pub absolute: Option<f64>,
    /// Relative tolerance.
    pub relative: Option<f64>,
}

/// `[[unordered]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnorderedRule {
    /// Glob on the interface key; absent means every interface.
    pub interfaces: Option<Spanned<String>>,
    /// Array paths.
    pub paths: Vec<Spanned<String>>,
}

/// `[[noise_rule]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseRuleEntry {
    /// Glob on the interface key.
    pub interfaces: Spanned<String>,
    /// Relative margin for these interfaces.
    pub relative: Option<Spanned<Share>>,
    /// Absolute margin (percentage points) for these interfaces.
    pub absolute_pct: Option<Spanned<f64>>,
}

/// `[redact]` (used by the tap)
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactSection {
    /// Extra header names to redact.
    #[serde(default)]
    pub headers: Vec<String>,
    /// JSON body paths to redact.
    #[serde(default)]
    pub json_paths: Vec<String>,
}

/// A loaded file: the parsed content and what is needed to point at a line.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The file's path.
    pub path: PathBuf,
    text: String,
    /// The parsed content.
    pub config: FileConfig,
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> u64 {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64
        + 1
}

impl LoadedConfig {
    /// Reads and parses the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, text)
    }

    /// Parses `text` as the content of `path`.
    pub fn parse(path: &Path, text: String) -> Result<Self> {
        match toml::from_str::<FileConfig>(&text) {
            Ok(config) => Ok(LoadedConfig {
                path: path.to_path_buf(),
                text,
                config,
            }),
            Err(e) => {
                let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(1);
                let message = match e.span().and_then(|s| key_of_value_at(&text, s.start)) {
                    Some(key) => format!("{key}: {}", e.message()),
                    None => e.message().to_string(),
                };
                Err(Error::Input {
                    file: path.to_path_buf(),
                    line,
                    message,
                })
            }
        }
    }

    /// `path:line` of byte `span.start`, as warnings about a rule name it.
    pub fn place(&self, span: std::ops::Range<usize>) -> String {
        format!(
            "{}:{}",
            self.path.display(),
            line_of(&self.text, span.start)
        )
    }

    /// An error about the value at `span` of key `key`.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl std::fmt::Display,
    ) -> Error {
        Error::Input {
            file: self.path.clone(),
            line: line_of(&self.text, span.start),
            message: format!("{key}: {message}"),
        }
    }
}

/// The key whose value is at byte `at` of `text`, with its table (`noise.relative`), when
/// `at` is in a value written after `key =` on the same line: toml's errors point at the
/// value but name only what was expected.
fn key_of_value_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = text[start..at].split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    let table = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[').then(|| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
        })
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        let e = parse("time_tolerance = \"5s\"\n\n[noise]\nrelative = \"x\"\n").unwrap_err();
        match e {
            Error::Input { line, message, .. } => {
                assert_eq!(line, 4, "{message}");
                assert!(message.starts_with("noise.relative: "), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let e = parse("time_tolerance = 5\n").unwrap_err();
        assert!(e.to_string().contains("time_tolerance: "), "{e}");
    }

    fn parse(text: &str) -> Result<LoadedConfig> {
        LoadedConfig::parse(Path::new("shadowdiff.toml"), text.to_string())
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../shadowdiff.example.toml");
        let c = parse(text).unwrap().config;
        assert!(!c.ignore.is_empty());
        assert!(!c.tolerance.is_empty());
        assert!(!c.unordered.is_empty());
        assert!(!c.interface.templates.is_empty());
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let e =
            parse("time_tolerance = \"5s\"\n\n[[ignore]]\npaths = [\"$.a\"]\nheaderz = [\"x\"]\n")
                .unwrap_err();
        match e {
            Error::Input { line, message, .. } => {
                assert_eq!(line, 5, "{message}");
                assert!(message.contains("headerz"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_types_name_the_line() {
        let e = parse("[noise]\nrelative = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("shadowdiff.toml:2:"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(256)))]

        /// Any text either parses or gives an error with a line inside the file.
        #[test]
        fn random_text_never_panics(text in "[\\[\\]a-z_=\"0-9 .\n$*]{0,200}") {
            match parse(&text) {
                Ok(_) => {}
                Err(Error::Input { line, .. }) => {
                    proptest::prop_assert!(line >= 1 && line as usize <= text.lines().count().max(1) + 1);
                }
                Err(other) => proptest::prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
