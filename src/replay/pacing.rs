//! When each exchange of a paced replay starts: closed loop (as soon as a slot is free),
//! `--rate` (a fixed number per second from the run's start) or `--speed` (the recorded
//! gaps, scaled). The reader stamps each job with its moment; the worker that takes it
//! sleeps until then.

use crate::config::Pacing;
use std::time::{Duration, Instant};

/// The start moments of one run, handed out in the order exchanges are read.
pub(super) struct Schedule {
    pacing: Pacing,
    start: Instant,
    /// The first exchange's recorded time, for `--speed`.
    first_ts: Option<i64>,
    /// Exchanges scheduled so far, for `--rate`.
    n: u64,
}

impl Schedule {
    /// A schedule whose time zero is now.
    pub(super) fn new(pacing: Pacing) -> Self {
        Schedule {
            pacing,
            start: Instant::now(),
            first_ts: None,
            n: 0,
        }
    }

    /// The moment the next exchange (recorded at `ts_us`) starts; `None` in a closed loop.
    pub(super) fn next(&mut self, ts_us: i64) -> Option<Instant> {
        let at = match self.pacing {
            Pacing::Closed => None,
            Pacing::Rate(r) => Some(at(self.start, self.n as f64 / r)),
            Pacing::Speed(x) => {
                let first = *self.first_ts.get_or_insert(ts_us);
                let offset_us = ts_us.saturating_sub(first).max(0) as f64 / x;
                Some(at(self.start, offset_us / 1e6))
            }
        };
        self.n += 1;
        at
    }
}

/// `secs` after `start`, or a year after it when that is further or not a time at all:
/// a far moment waits long, it never panics.
fn at(start: Instant, secs: f64) -> Instant {
    let far = Duration::from_secs(365 * 24 * 3600);
    let d = Duration::try_from_secs_f64(secs).map_or(far, |d| d.min(far));
    start + d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_spaces_evenly_speed_scales_the_recorded_gaps_closed_waits_for_nothing() {
        let mut rate = Schedule::new(Pacing::Rate(4.0));
        let t: Vec<_> = (0..3).map(|_| rate.next(0).unwrap()).collect();
        assert_eq!(t[1] - t[0], Duration::from_millis(250));
        assert_eq!(t[2] - t[0], Duration::from_millis(500));

        let mut speed = Schedule::new(Pacing::Speed(2.0));
        let a = speed.next(5_000_000).unwrap();
        let b = speed.next(6_000_000).unwrap();
        // Out of order in the recording: no earlier than the first.
        let c = speed.next(1_000_000).unwrap();
        assert_eq!(b - a, Duration::from_millis(500));
        assert_eq!(c, a);

        let mut closed = Schedule::new(Pacing::Closed);
        assert_eq!(closed.next(0), None);
    }

    #[test]
    fn a_moment_beyond_a_year_or_not_a_number_waits_a_year() {
        let now = Instant::now();
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(at(now, f64::INFINITY) - now, year);
        assert_eq!(at(now, f64::NAN) - now, year);
        assert_eq!(at(now, 1e30) - now, year);
    }
}
