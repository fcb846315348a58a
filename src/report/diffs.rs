//! `--diffs FILE`: one JSON line per exchange that was not identical, with its outcome and
//! every difference (path, both values, noise or not). Workers write provisional lines to
//! their own temporary files while the run goes (no locks, memory flat); once the analysis
//! has decided which paths are noise, [`finish`] rewrites them into the final file with the
//! final outcome and a `noise` flag on every difference.

use crate::analysis::result::InterfaceResult;
use crate::compare::{DiffKind, Difference, Judgement, Outcome};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// One difference in a diffs line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffLineEntry {
    /// `status`, `header`, `trailer`, `body`, or `upstream` (what a gateway forwarded).
    pub kind: DiffKind,
    /// Exact path (`$.items[3].price`, a header name, `status`, `body`).
    pub path: String,
    /// Aggregation key (`$.items[*].price`, `header:etag`).
    pub key: String,
    /// Baseline value.
    pub baseline: Option<String>,
    /// Candidate value.
    pub candidate: Option<String>,
    /// True when this difference is noise.
    #[serde(default)]
    pub noise: bool,
    /// Why it is noise: `time_tolerance` (times, or a configured numeric tolerance) or
    /// `measured_noise` (the path differs as often between two baseline calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// One line of the diffs file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffLine {
    /// Exchange id.
    pub id: String,
    /// Interface key.
    pub interface: String,
    /// Outcome (final in the finished file).
    pub outcome: Outcome,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// The failure behind an error outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every difference found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<DiffLineEntry>,
    /// What each gateway forwarded, when shadowdiff played their upstreams and the exchange
    /// differs there or is a missing rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<crate::analysis::result::ForwardedSample>,
}

impl DiffLine {
    /// A provisional line for a judged exchange; `None` for identical ones.
    pub fn judged(id: &str, interface: &str, j: &Judgement) -> Option<Self> {
        if j.outcome == Outcome::Identical {
            return None;
        }
        Some(DiffLine {
            id: id.to_string(),
            interface: interface.to_string(),
            outcome: j.outcome,
            skip_reason: None,
            error: j
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.kind, e.message)),
            differences: j.diffs.iter().map(entry).collect(),
            forwarded: None,
        })
    }

    /// Adds what the gateways forwarded, when the line differs there or is a missing rule.
    pub fn with_forwarded(mut self, calls: Option<&crate::replay::upstream::Calls>) -> Self {
        let upstream = self.outcome == Outcome::MissingRule
            || self
                .differences
                .iter()
                .any(|d| d.kind == DiffKind::Upstream);
        if let (true, Some(c)) = (upstream, calls) {
            self.forwarded = Some(crate::analysis::result::ForwardedSample::of(c));
        }
        self
    }

    /// A line for a skipped exchange.
    pub fn skipped(id: &str, interface: &str, reason: &str) -> Self {
        DiffLine {
            id: id.to_string(),
            interface: interface.to_string(),
            outcome: Outcome::Skipped,
            skip_reason: Some(reason.to_string()),
            error: None,
            differences: Vec::new(),
            forwarded: None,
        }
    }
}

fn entry(d: &Difference) -> DiffLineEntry {
    DiffLineEntry {
        kind: d.kind,
        path: d.path.clone(),
        key: d.key(),
        baseline: d.baseline.clone(),
        candidate: d.candidate.clone(),
        noise: d.tolerated,
        why: d.tolerated.then(|| "time_tolerance".to_string()),
    }
}

/// A worker's provisional diffs file. A write failure (a full disk) does not stop the run:
/// the sink stops writing, keeps what it wrote, and reports the failure when closed.
#[derive(Debug)]
pub struct DiffSink {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
    failed: Option<String>,
}

impl DiffSink {
    /// Creates the provisional file number `n` next to `final_path`.
    pub fn create(final_path: &Path, n: usize) -> Result<Self> {
        let path = temp_path(final_path, n);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(DiffSink {
            path,
            out: BufWriter::new(file),
            buf: Vec::new(),
            failed: None,
        })
    }

    /// Appends a line; after a failure, nothing more is written.
    pub fn write(&mut self, line: &DiffLine) {
        if self.failed.is_some() {
            return;
        }
        self.buf.clear();
        let written = serde_json::to_writer(&mut self.buf, line)
            .map_err(std::io::Error::from)
            .and_then(|()| {
                self.buf.push(b'\n');
                self.out.write_all(&self.buf)
            });
        if let Err(e) = written {
            tracing::error!(
                "{}: {e}; no further lines are written to the diffs file",
                self.path.display()
            );
            self.failed = Some(e.to_string());
        }
    }

    /// Flushes and closes; returns the provisional file's path and the failure, if any.
    pub fn close(mut self) -> (PathBuf, Option<String>) {
        if let (None, Err(e)) = (&self.failed, self.out.flush()) {
            self.failed = Some(e.to_string());
        }
        (self.path, self.failed)
    }
}

fn temp_path(final_path: &Path, n: usize) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(format!(".part{n}"));
    PathBuf::from(s)
}

/// The aggregation keys that regressed, per interface, in a decided result: a difference
/// at one of them is real, any other is noise.
pub fn regressing_keys(interfaces: &[InterfaceResult]) -> HashMap<&str, HashSet<String>> {
    let mut regressing: HashMap<&str, HashSet<String>> = HashMap::new();
    for i in interfaces {
        let set = regressing.entry(i.interface.as_str()).or_default();
        for p in i.status.iter().filter(|p| p.regression) {
            set.insert(p.path.clone());
        }
        for p in i.fields.iter().filter(|p| p.regression) {
            set.insert(p.classed_path());
        }
        for p in i.headers.iter().filter(|p| p.regression) {
            set.insert(if p.path.starts_with("trailer:") {
                p.classed_path()
            } else {
                format!("header:{}", p.classed_path())
            });
        }
    }
    regressing
}

impl DiffLine {
    /// Turns a provisional line into a decided one: every difference not at a key in
    /// `regressing` (see [`regressing_keys`]) is measured noise, and an exchange whose
    /// differences are all noise is `noise_only`.
    pub fn decide(&mut self, regressing: &HashSet<String>) {
        let mut any_real = false;
        for d in &mut self.differences {
            // Provisional lines mark only per-exchange noise (tolerated times).
            if d.noise {
                continue;
            }
            if regressing.contains(&d.key) {
                any_real = true;
            } else {
                d.noise = true;
                d.why = Some("measured_noise".into());
            }
        }
        if matches!(self.outcome, Outcome::Different | Outcome::NoiseOnly) {
            self.outcome = if any_real {
                Outcome::Different
            } else {
                Outcome::NoiseOnly
            };
        }
    }
}

/// Rewrites the provisional files into `final_path` with final outcomes and noise flags,
/// then removes them. A provisional file cut short by a failed write contributes the lines
/// it holds; the returned warnings say where lines are missing.
pub fn finish(
    final_path: &Path,
    parts: &[PathBuf],
    interfaces: &[InterfaceResult],
) -> Result<(u64, Vec<String>)> {
    let mut warnings = Vec::new();
    let regressing = regressing_keys(interfaces);
    let empty = HashSet::new();
    let write_err = |e: std::io::Error| Error::io(final_path, e);
    let mut out: Box<dyn Write> = if final_path.as_os_str() == "-" {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(BufWriter::new(File::create(final_path).map_err(write_err)?))
    };
    let mut lines = 0;
    for part in parts {
        let f = File::open(part).map_err(|e| Error::io(part, e))?;
        for (n, raw) in BufReader::new(f).lines().enumerate() {
            let raw = raw.map_err(|e| Error::io(part, e))?;
            let mut line: DiffLine = match serde_json::from_str(&raw) {
                Ok(l) => l,
                Err(e) => {
                    warnings.push(format!(
                        "{}:{}: diffs line cut short ({e}); the rest of this part is missing from {}",
                        part.display(),
                        n + 1,
                        final_path.display()
                    ));
                    break;
                }
            };
            line.decide(regressing.get(line.interface.as_str()).unwrap_or(&empty));
            serde_json::to_writer(&mut out, &line).map_err(|e| write_err(e.into()))?;
            out.write_all(b"\n").map_err(write_err)?;
            lines += 1;
        }
        let _ = std::fs::remove_file(part);
    }
    out.flush().map_err(write_err)?;
    Ok((lines, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_cut_short_keeps_its_whole_lines_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("diffs.jsonl");
        let mut sink = DiffSink::create(&final_path, 1).unwrap();
        sink.write(&DiffLine::skipped("a", "GET /x", "side_effect"));
        sink.write(&DiffLine::skipped("b", "GET /x", "side_effect"));
        let (part, failed) = sink.close();
        assert!(failed.is_none());
        // What a full disk leaves: half a line at the end.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&part)
            .unwrap();
        f.write_all(br#"{"id":"c","interf"#).unwrap();
        let (lines, warnings) = finish(&final_path, std::slice::from_ref(&part), &[]).unwrap();
        assert_eq!(lines, 2);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("cut short"), "{warnings:?}");
        let text = std::fs::read_to_string(&final_path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(!part.exists(), "provisional files are removed");
    }
}
