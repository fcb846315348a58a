//! Geometry of the latency chart in the HTML report: the baseline's and the candidate's
//! percentile curves (p50, p90, p99, p99.9, max) on a logarithmic latency axis, computed here
//! as plain numbers and labels so the template only places them in inline SVG. Nothing here
//! is captured content, and the template escapes the labels anyway.

use super::words::ms;
use crate::analysis::result::LatencyStats;

/// Width of the SVG, in user units.
pub const WIDTH: f64 = 520.0;
/// Height of the SVG, in user units.
pub const HEIGHT: f64 = 230.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;

/// One axis tick: where it is and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    /// Position on its axis (x for the percentile axis, y for the latency axis).
    pub pos: String,
    /// The label.
    pub label: String,
}

/// One point of a curve, with its tooltip.
#[derive(Clone, Debug, PartialEq)]
pub struct Dot {
    /// x coordinate.
    pub x: String,
    /// y coordinate.
    pub y: String,
    /// `candidate p99: 45.2 ms`.
    pub title: String,
}

/// One target's curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// `baseline` or `candidate`; also the CSS class.
    pub name: &'static str,
    /// SVG `points` of the polyline.
    pub points: String,
    /// The five points.
    pub dots: Vec<Dot>,
    /// Radius of its dots.
    pub radius: &'static str,
}

/// A ready-to-draw percentile chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Left edge of the plot area.
    pub x0: String,
    /// Right edge of the plot area.
    pub x1: String,
    /// Top edge of the plot area.
    pub y0: String,
    /// Bottom edge of the plot area.
    pub y1: String,
    /// Where the x labels sit.
    pub label_y: String,
    /// Latency gridlines.
    pub y_ticks: Vec<Tick>,
    /// Percentile labels.
    pub x_ticks: Vec<Tick>,
    /// Candidate, then baseline: drawn in this order, so that the baseline's thin dashed
    /// line runs over the candidate's wide one and both show where they are equal.
    pub series: Vec<Series>,
    /// Text alternative for screen readers.
    pub description: String,
}

/// The percentiles on the x axis.
const POINTS: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

fn values(s: &LatencyStats) -> [u64; 5] {
    [s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us].map(|v| v.max(1))
}

fn f(v: f64) -> String {
    format!("{v:.1}")
}

/// Latency label for an axis value in µs: `500 µs`, `2 ms`, `1.5 s`.
fn axis_label(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{} s", trim(us / 1_000_000.0))
    } else if us >= 1000.0 {
        format!("{} ms", trim(us / 1000.0))
    } else {
        format!("{} µs", trim(us))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The 1-2-5 values from below `lo` to above `hi`.
fn nice_range(lo: f64, hi: f64) -> Vec<f64> {
    let mut steps = Vec::new();
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    for d in first..=last + 1 {
        for m in [1.0, 2.0, 5.0] {
            steps.push(m * 10f64.powi(d));
        }
    }
    let start = steps.iter().rposition(|v| *v <= lo).unwrap_or(0);
    let mut end = steps
        .iter()
        .position(|v| *v >= hi)
        .unwrap_or(steps.len() - 1);
    if end <= start {
        end = (start + 1).min(steps.len() - 1);
    }
    steps[start..=end].to_vec()
}

/// The chart of one interface, or `None` when neither target has a latency sample.
pub fn percentile_chart(baseline: &LatencyStats, candidate: &LatencyStats) -> Option<Chart> {
    if baseline.count == 0 && candidate.count == 0 {
        return None;
    }
    let sides: Vec<(&'static str, [u64; 5])> = [("baseline", baseline), ("candidate", candidate)]
        .into_iter()
        .filter(|(_, s)| s.count > 0)
        .map(|(n, s)| (n, values(s)))
        .collect();
    let lo = sides
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .min()
        .unwrap_or(1) as f64;
    let hi = sides
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .max()
        .unwrap_or(1) as f64;
    let mut ticks = nice_range(lo, hi);
    let (axis_lo, axis_hi) = (ticks[0], ticks[ticks.len() - 1]);
    if ticks.len() > 7 {
        // Keep the powers of ten (and the ends) so labels never crowd.
        let keep_all = ticks.clone();
        ticks.retain(|v| {
            let l = v.log10();
            (l - l.round()).abs() < 1e-9
        });
        for end in [keep_all[0], keep_all[keep_all.len() - 1]] {
            if !ticks.contains(&end) {
                ticks.push(end);
            }
        }
        ticks.sort_by(|a, b| a.total_cmp(b));
    }
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let (l0, l1) = (axis_lo.log10(), axis_hi.log10());
    let y_of = |us: f64| y1 - (us.log10() - l0) / (l1 - l0) * (y1 - y0);
    let step = (x1 - x0) / POINTS.len() as f64;
    let x_of = |i: usize| x0 + step * (i as f64 + 0.5);

    let series = sides
        .iter()
        .rev()
        .map(|(name, v)| {
            let dots: Vec<Dot> = v
                .iter()
                .enumerate()
                .map(|(i, us)| Dot {
                    x: f(x_of(i)),
                    y: f(y_of(*us as f64)),
                    title: format!("{name} {}: {} ms", POINTS[i], ms(*us)),
                })
                .collect();
            Series {
                name,
                // The candidate's dots larger, so the baseline's show inside them.
                radius: if *name == "candidate" { "5" } else { "2.5" },
                points: dots
                    .iter()
                    .map(|d| format!("{},{}", d.x, d.y))
                    .collect::<Vec<_>>()
                    .join(" "),
                dots,
            }
        })
        .collect();
    let description = sides
        .iter()
        .map(|(name, v)| {
            let parts: Vec<String> = POINTS
                .iter()
                .zip(v.iter())
                .map(|(p, us)| format!("{p} {} ms", ms(*us)))
                .collect();
            format!("{name}: {}", parts.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(Chart {
        x0: f(x0),
        x1: f(x1),
        y0: f(y0),
        y1: f(y1),
        label_y: f(y1 + 20.0),
        y_ticks: ticks
            .iter()
            .map(|v| Tick {
                pos: f(y_of(*v)),
                label: axis_label(*v),
            })
            .collect(),
        x_ticks: POINTS
            .iter()
            .enumerate()
            .map(|(i, p)| Tick {
                pos: f(x_of(i)),
                label: p.to_string(),
            })
            .collect(),
        series,
        description: format!("Latency percentiles, {description}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(p50: u64, max: u64) -> LatencyStats {
        LatencyStats {
            count: 10,
            p50_us: p50,
            p90_us: p50 * 11 / 10,
            p99_us: p50 * 12 / 10,
            p999_us: (p50 * 12 / 10 + max) / 2,
            max_us: max,
            hdr: String::new(),
        }
    }

    #[test]
    fn axis_covers_every_value_with_round_ticks() {
        let c = percentile_chart(&stats(1_200, 4_400), &stats(41_800, 60_000)).unwrap();
        let labels: Vec<&str> = c.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            ["1 ms", "2 ms", "5 ms", "10 ms", "20 ms", "50 ms", "100 ms"]
        );
        // Every dot lies inside the plot area.
        for s in &c.series {
            for d in &s.dots {
                let y: f64 = d.y.parse().unwrap();
                assert!((TOP..=HEIGHT - BOTTOM).contains(&y), "{d:?}");
            }
        }
        // Slower candidate: its p50 is drawn higher (smaller y) than the baseline's.
        let y = |s: usize| c.series[s].dots[0].y.parse::<f64>().unwrap();
        assert_eq!(
            (c.series[0].name, c.series[1].name),
            ("candidate", "baseline")
        );
        assert!(y(0) < y(1));
        assert_eq!(c.series[0].dots[2].title, "candidate p99: 50.2 ms");
    }

    #[test]
    fn wide_ranges_keep_only_decades_and_flat_ranges_still_have_an_axis() {
        let c = percentile_chart(&stats(3, 90), &stats(20, 3_000_000)).unwrap();
        let labels: Vec<&str> = c.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            ["2 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s", "5 s"]
        );
        let flat = LatencyStats {
            count: 1,
            p50_us: 1000,
            p90_us: 1000,
            p99_us: 1000,
            p999_us: 1000,
            max_us: 1000,
            hdr: String::new(),
        };
        let c = percentile_chart(&flat, &LatencyStats::default()).unwrap();
        assert_eq!(c.series.len(), 1);
        assert_eq!(c.y_ticks.len(), 2);
        assert!(percentile_chart(&LatencyStats::default(), &LatencyStats::default()).is_none());
    }
}
