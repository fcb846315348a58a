//! Progress of a replay on standard error: an indicatif bar with rate and ETA when standard
//! error is a terminal, a plain line every few seconds when it is not (CI logs), nothing with
//! `--quiet`. The total is estimated from the bytes of the recordings consumed so far, so the
//! ETA is known from the start without a first pass over the files.

use crate::replay::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An animated bar (standard error is a terminal).
    Bar,
    /// A plain line every [`LINE_INTERVAL`].
    Lines,
    /// Nothing (`--quiet`).
    Off,
}

/// How often the plain mode prints.
pub const LINE_INTERVAL: Duration = Duration::from_secs(10);

impl Mode {
    /// The mode for this process.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    /// Exchanges dealt with: given an outcome or left out by the selection.
    pub done: u64,
    /// Estimated number of exchanges in the recordings, once some bytes were read.
    pub total: Option<u64>,
    /// Time since the start.
    pub elapsed: Duration,
}

impl Snapshot {
    /// Reads the counters.
    pub fn take(p: &Progress, start: Instant) -> Snapshot {
        let done = p.done.load(Ordering::Relaxed) + p.excluded.load(Ordering::Relaxed);
        let read = p.read.load(Ordering::Relaxed);
        let bytes = p.bytes_read.load(Ordering::Relaxed);
        let total_bytes = p.bytes_total.load(Ordering::Relaxed);
        let counted = p.exchanges_total.load(Ordering::Relaxed);
        // A file read to its end into the reader's buffer says nothing about how many
        // exchanges are still to be parsed from it: without a count the total is unknown
        // until the reader finishes.
        let total = if counted > 0 {
            Some(counted)
        } else if p.read_finished.load(Ordering::Relaxed) {
            Some(read)
        } else if total_bytes == 0 || bytes == 0 || read == 0 || bytes >= total_bytes {
            None
        } else {
            Some(((read as f64) * (total_bytes as f64) / (bytes as f64)).round() as u64)
        };
        Snapshot {
            done,
            total: total.map(|t| t.max(done)),
            elapsed: start.elapsed(),
        }
    }

    /// Exchanges per second so far.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.done as f64 / s
        } else {
            0.0
        }
    }

    /// The plain progress line.
    pub fn line(&self) -> String {
        let rate = self.rate();
        match self.total {
            Some(total) if total > 0 => {
                let left = total.saturating_sub(self.done);
                let eta = if rate > 0.0 {
                    format!(", ETA {}", eta(Duration::from_secs_f64(left as f64 / rate)))
                } else {
                    String::new()
                };
                format!(
                    "progress: {} of ~{} exchanges ({:.0}%), {:.0}/s{eta}",
                    self.done,
                    total,
                    self.done as f64 * 100.0 / total as f64,
                    rate
                )
            }
            _ => format!("progress: {}, {:.0}/s", plural(self.done), rate),
        }
    }
}

/// `45s`, `3m05s`, `1h02m`.
fn eta(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A running progress display; [`Display::finish`] stops it.
pub struct Display {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
    progress: Arc<Progress>,
    start: Instant,
    mode: Mode,
}

/// Starts showing `progress` in `mode` (call inside the runtime).
pub fn start(progress: Arc<Progress>, mode: Mode) -> Display {
    let start = Instant::now();
    let mut d = Display {
        task: None,
        bar: None,
        progress: progress.clone(),
        start,
        mode,
    };
    match mode {
        Mode::Off => {}
        Mode::Bar => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let rate = |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", s.per_sec());
            };
            let counted = ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} exchanges  {rate}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", rate)
            .progress_chars("=> ");
            // Until the total is known, a count and a rate: an ETA from a guessed total
            // would be a number that means nothing.
            let uncounted = ProgressStyle::with_template(
                "{spinner} {elapsed_precise} {human_pos} exchanges  {rate}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key("rate", rate);
            bar.set_style(uncounted);
            let b = bar.clone();
            d.task = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut known = false;
                loop {
                    tick.tick().await;
                    let s = Snapshot::take(&progress, start);
                    if let Some(t) = s.total {
                        if !known {
                            b.set_style(counted.clone());
                            known = true;
                        }
                        b.set_length(t);
                    }
                    b.set_position(s.done);
                }
            }));
            d.bar = Some(bar);
        }
        Mode::Lines => {
            d.task = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(LINE_INTERVAL);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    eprintln!("{}", Snapshot::take(&progress, start).line());
                }
            }));
        }
    }
    d
}

impl Display {
    /// Stops the display, clearing the bar, and prints one closing line (unless off, or the
    /// replay failed: then the error is what is said).
    pub fn finish(mut self, succeeded: bool) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.mode != Mode::Off && succeeded {
            let s = Snapshot::take(&self.progress, self.start);
            let excluded = self.progress.excluded.load(Ordering::Relaxed);
            let replayed = Snapshot {
                done: s.done - excluded,
                ..s
            };
            let mut line = format!(
                "replayed {} in {:.1}s ({:.0}/s)",
                plural(replayed.done),
                s.elapsed.as_secs_f64(),
                replayed.rate()
            );
            if excluded > 0 {
                line.push_str(&format!(
                    "; {excluded} left out by the shard split or filters"
                ));
            }
            eprintln!("{line}");
        }
    }
}

fn plural(n: u64) -> String {
    format!("{n} exchange{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_is_estimated_from_bytes_and_exact_at_the_end() {
        let p = Progress::default();
        let start = Instant::now();
        assert_eq!(Snapshot::take(&p, start).total, None);
        p.bytes_total.store(1000, Ordering::Relaxed);
        p.bytes_read.store(250, Ordering::Relaxed);
        p.read.store(30, Ordering::Relaxed);
        p.done.store(20, Ordering::Relaxed);
        p.excluded.store(5, Ordering::Relaxed);
        let s = Snapshot::take(&p, start);
        assert_eq!((s.done, s.total), (25, Some(120)));
        // All bytes consumed into the reader's buffer, exchanges still being parsed from it:
        // unknown (a paced replay reads slowly from one buffered file), not a growing guess.
        p.bytes_read.store(1000, Ordering::Relaxed);
        p.read.store(110, Ordering::Relaxed);
        assert_eq!(Snapshot::take(&p, start).total, None);
        p.read_finished.store(true, Ordering::Relaxed);
        assert_eq!(Snapshot::take(&p, start).total, Some(110));
        // A count made before the replay wins from the start.
        let q = Progress::default();
        q.exchanges_total.store(500, Ordering::Relaxed);
        assert_eq!(Snapshot::take(&q, start).total, Some(500));
    }

    #[test]
    fn plain_lines_say_rate_and_eta() {
        let s = Snapshot {
            done: 250,
            total: Some(1000),
            elapsed: Duration::from_secs(5),
        };
        assert_eq!(
            s.line(),
            "progress: 250 of ~1000 exchanges (25%), 50/s, ETA 15s"
        );
        let s = Snapshot {
            done: 0,
            total: None,
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(s.line(), "progress: 0 exchanges, 0/s");
        assert_eq!(eta(Duration::from_secs(185)), "3m05s");
        assert_eq!(eta(Duration::from_secs(3720)), "1h02m");
    }
}
