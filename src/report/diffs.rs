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
    /// `status`, `header`, `trailer` or `body`.
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
        })
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

/// A worker's provisional diffs file.
#[derive(Debug)]
pub struct DiffSink {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
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
        })
    }

    /// Appends a line.
    pub fn write(&mut self, line: &DiffLine) -> Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, line).map_err(|e| Error::io(&self.path, e.into()))?;
        self.buf.push(b'\n');
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes and closes; returns the provisional file's path.
    pub fn close(mut self) -> Result<PathBuf> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path)
    }
}

fn temp_path(final_path: &Path, n: usize) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(format!(".part{n}"));
    PathBuf::from(s)
}

/// Rewrites the provisional files into `final_path` with final outcomes and noise flags,
/// then removes them.
pub fn finish(final_path: &Path, parts: &[PathBuf], interfaces: &[InterfaceResult]) -> Result<u64> {
    let mut regressing: HashMap<&str, HashSet<String>> = HashMap::new();
    for i in interfaces {
        let set = regressing.entry(i.interface.as_str()).or_default();
        for p in i.status.iter().filter(|p| p.regression) {
            set.insert(p.path.clone());
        }
        for p in i.fields.iter().filter(|p| p.regression) {
            set.insert(p.path.clone());
        }
        for p in i.headers.iter().filter(|p| p.regression) {
            set.insert(if p.path.starts_with("trailer:") {
                p.path.clone()
            } else {
                format!("header:{}", p.path)
            });
        }
    }
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
            let mut line: DiffLine = serde_json::from_str(&raw).map_err(|e| Error::Input {
                file: part.clone(),
                line: n as u64 + 1,
                message: format!("provisional diffs line does not parse: {e}"),
            })?;
            let real = regressing.get(line.interface.as_str()).unwrap_or(&empty);
            let mut any_real = false;
            for d in &mut line.differences {
                // Provisional lines mark only per-exchange noise (tolerated times).
                if d.noise {
                    continue;
                }
                if real.contains(&d.key) {
                    any_real = true;
                } else {
                    d.noise = true;
                    d.why = Some("measured_noise".into());
                }
            }
            if matches!(line.outcome, Outcome::Different | Outcome::NoiseOnly) {
                line.outcome = if any_real {
                    Outcome::Different
                } else {
                    Outcome::NoiseOnly
                };
            }
            serde_json::to_writer(&mut out, &line).map_err(|e| write_err(e.into()))?;
            out.write_all(b"\n").map_err(write_err)?;
            lines += 1;
        }
        let _ = std::fs::remove_file(part);
    }
    out.flush().map_err(write_err)?;
    Ok(lines)
}
