//! Latency per interface: one HDR histogram per target plus the paired per-request
//! difference (candidate minus baseline), and the regression rules. Pairing matters: both
//! targets get each request at the same moment, so load spikes hit both and cancel out in the
//! difference, which is why an A/A run reports no regression.
//!
//! Two rules, either of which flags the candidate as slower: the median rule (most requests
//! got slower, in more pairs than chance would make slower) and the tail rule (a share of
//! requests too small to move the median got much slower: the p99 is beyond the baseline's,
//! and the pairs confirm the slow answers are the candidate's rather than jitter both
//! targets have).

use super::result::{LatencyResult, LatencyStats, PairedStats, Thresholds, MEDIAN_RULE, TAIL_RULE};
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Whether the candidate was slower in more pairs than chance gives two equal servers (a
/// one-sided sign test at 1%, ties left out). Jittery answers move the paired median of 20
/// pairs by a quarter easily; they do not make 16 of 20 pairs slower.
pub fn slower_beyond_chance(slower: u64, faster: u64) -> bool {
    let n = (slower + faster) as f64;
    if n == 0.0 {
        return false;
    }
    // Normal approximation with continuity correction; z at one-sided 1%.
    (slower as f64 - 0.5 - n / 2.0) / (n / 4.0).sqrt() > 2.326
}

/// Highest latency tracked exactly: one hour in µs; larger values are clamped.
const MAX_US: u64 = 3_600_000_000;

/// A fresh histogram: 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants within hdrhistogram's limits, so this cannot fail; fall back to
    // an auto-resizing histogram rather than panic if a future version disagrees.
    Histogram::new_with_bounds(1, MAX_US, 3).unwrap_or_else(|_| {
        let mut h = Histogram::new(3).unwrap_or_else(|_| Histogram::new(2).expect("hdr sigfig 2"));
        h.auto(true);
        h
    })
}

/// Records `v` clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, v: u64) {
    let _ = h.record(v.clamp(1, MAX_US));
}

/// Serializes a histogram (V2 deflate, base64), the interchange form other HDR tools read.
pub fn serialize(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    match V2DeflateSerializer::new().serialize(h, &mut buf) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(buf),
        Err(_) => String::new(),
    }
}

/// Largest encoded histogram read, after inflating: a histogram of this tool (1 µs to an
/// hour, 3 digits) encodes in at most about 210 KiB. Every length an encoding declares is
/// checked against this and against the bytes present before anything is sized from it,
/// since the decoder allocates whatever the header asks for (4 GiB from a 56-character
/// string) and the process aborts.
const MAX_HDR_BYTES: usize = 4 << 20;

/// Cookies of the V2 encoding and of its deflated form (`HISTEw`, `HISTFA` in base64).
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;

/// Bytes of the V2 header: cookie, payload length, normalizing offset, digits, lowest,
/// highest, integer-to-double ratio.
const V2_HEADER: usize = 40;

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(x))
}

/// Reads a histogram written by [`serialize`] (or by another HDR tool in the V2 encoding,
/// deflated or not); the empty string is an empty histogram.
pub fn deserialize(s: &str) -> Result<Histogram<u64>, String> {
    if s.is_empty() {
        return Ok(new_histogram());
    }
    if s.len() / 4 * 3 > MAX_HDR_BYTES {
        return Err(format!(
            "histogram of {} base64 characters; expected at most {} bytes encoded",
            s.len(),
            MAX_HDR_BYTES
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    let plain = match be_u32(&bytes, 0) {
        Some(V2_COOKIE) => bytes,
        Some(V2_DEFLATE_COOKIE) => inflate(&bytes)?,
        _ => {
            return Err(
                "histogram does not decode: expected the HDR V2 encoding (base64 starting HISTEw or HISTFA)"
                    .into(),
            )
        }
    };
    let declared = be_u32(&plain, 0)
        .filter(|&c| c == V2_COOKIE)
        .and_then(|_| be_u32(&plain, 4))
        .filter(|_| plain.len() >= V2_HEADER)
        .ok_or("histogram does not decode: its V2 header is cut short")?;
    let present = plain.len() - V2_HEADER;
    if declared as usize > present {
        return Err(format!(
            "histogram does not decode: its header declares {declared} bytes of counts, {present} present"
        ));
    }
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut plain.as_slice())
        .map_err(|e| format!("histogram does not decode: {e:?}"))?;
    let mut out = new_histogram();
    out.add(&h)
        .map_err(|e| format!("histogram out of range: {e:?}"))?;
    Ok(out)
}

/// The V2 encoding inside a deflated one, read no further than the declared length, the
/// bytes present and [`MAX_HDR_BYTES`] allow.
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let declared = be_u32(bytes, 4).ok_or("histogram does not decode: its header is cut short")?;
    let present = bytes.len() - 8;
    if declared as usize > present {
        return Err(format!(
            "histogram does not decode: its header declares {declared} deflated bytes, {present} present"
        ));
    }
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(&bytes[8..8 + declared as usize])
        .take(MAX_HDR_BYTES as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| format!("histogram does not decode: bad deflate data ({e})"))?;
    if plain.len() > MAX_HDR_BYTES {
        return Err(format!(
            "histogram does not decode: it inflates to more than {MAX_HDR_BYTES} bytes"
        ));
    }
    Ok(plain)
}

/// Latency samples of one interface.
#[derive(Clone, Debug)]
pub struct LatencyAgg {
    /// Baseline latencies.
    pub baseline: Histogram<u64>,
    /// Candidate latencies.
    pub candidate: Histogram<u64>,
    /// Positive paired differences (candidate slower), µs.
    pub slower: Histogram<u64>,
    /// Magnitudes of negative paired differences (candidate faster), µs.
    pub faster: Histogram<u64>,
    /// Pairs with no difference at all.
    pub equal: u64,
}

impl Default for LatencyAgg {
    fn default() -> Self {
        LatencyAgg {
            baseline: new_histogram(),
            candidate: new_histogram(),
            slower: new_histogram(),
            faster: new_histogram(),
            equal: 0,
        }
    }
}

impl LatencyAgg {
    /// Records one pair of latencies of the same request.
    pub fn record_pair(&mut self, baseline_us: u64, candidate_us: u64) {
        record(&mut self.baseline, baseline_us);
        record(&mut self.candidate, candidate_us);
        match candidate_us.cmp(&baseline_us) {
            std::cmp::Ordering::Greater => record(&mut self.slower, candidate_us - baseline_us),
            std::cmp::Ordering::Less => record(&mut self.faster, baseline_us - candidate_us),
            std::cmp::Ordering::Equal => self.equal += 1,
        }
    }

    /// Adds another aggregate's samples.
    pub fn merge(&mut self, other: &LatencyAgg) {
        let _ = self.baseline.add(&other.baseline);
        let _ = self.candidate.add(&other.candidate);
        let _ = self.slower.add(&other.slower);
        let _ = self.faster.add(&other.faster);
        self.equal += other.equal;
    }

    /// Number of pairs.
    pub fn pairs(&self) -> u64 {
        self.slower.len() + self.faster.len() + self.equal
    }

    /// The median of the signed differences: the sorted order is the faster magnitudes from
    /// largest to smallest (negative), the equal pairs, then the slower ones ascending.
    pub fn median_diff_us(&self) -> i64 {
        let n = self.pairs();
        if n == 0 {
            return 0;
        }
        let rank = (n - 1) / 2; // 0-based rank of the lower median
        let faster = self.faster.len();
        if rank < faster {
            // rank 0 is the largest magnitude among the faster ones
            let q = 1.0 - (rank as f64 + 0.5) / faster as f64;
            -(self.faster.value_at_quantile(q) as i64)
        } else if rank < faster + self.equal {
            0
        } else {
            let r = rank - faster - self.equal;
            let q = (r as f64 + 0.5) / self.slower.len() as f64;
            self.slower.value_at_quantile(q) as i64
        }
    }

    /// The JSON form, with the regression flag decided by `th`.
    pub fn to_result(&self, th: &Thresholds) -> LatencyResult {
        let pairs = self.pairs();
        let median = self.median_diff_us();
        let base = stats(&self.baseline);
        let cand = stats(&self.candidate);
        let rules = self.rules(&base, &cand, th);
        LatencyResult {
            candidate: cand,
            baseline: base,
            paired: PairedStats {
                count: pairs,
                median_diff_us: median,
                slower_share: if pairs == 0 {
                    0.0
                } else {
                    self.slower.len() as f64 / pairs as f64
                },
                faster: Some(self.faster.len()),
                hdr_slower: serialize(&self.slower),
                hdr_faster: serialize(&self.faster),
            },
            regression: !rules.is_empty(),
            rules,
        }
    }

    /// Pairs in which the candidate was slower, and faster, by more than `margin_us`.
    pub fn beyond(&self, margin_us: u64) -> (u64, u64) {
        let count = |h: &Histogram<u64>| {
            if h.is_empty() {
                0
            } else {
                h.count_between(margin_us.saturating_add(1), MAX_US)
            }
        };
        (count(&self.slower), count(&self.faster))
    }

    /// The rules under which the candidate is slower (empty: it is not), given the two
    /// targets' percentiles.
    pub fn rules(&self, base: &LatencyStats, cand: &LatencyStats, th: &Thresholds) -> Vec<String> {
        let mut rules = Vec::new();
        if median_rule(self.pairs(), self.median_diff_us(), base.p50_us, th)
            && slower_beyond_chance(self.slower.len(), self.faster.len())
        {
            rules.push(MEDIAN_RULE.to_string());
        }
        let (slower, faster) = self.beyond(th.latency_tail_absolute_us);
        if tail_rule(self.pairs(), base.p99_us, cand.p99_us, slower, faster, th) {
            rules.push(TAIL_RULE.to_string());
        }
        rules
    }

    /// Rebuilds the aggregate from its JSON form (for `merge` and `report`).
    pub fn from_result(r: &LatencyResult) -> Result<Self, String> {
        let field =
            |name: &str, s: &str| deserialize(s).map_err(|e| format!("latency.{name}: {e}"));
        let slower = field("paired.hdr_slower", &r.paired.hdr_slower)?;
        let faster = field("paired.hdr_faster", &r.paired.hdr_faster)?;
        let equal = r.paired.count.saturating_sub(slower.len() + faster.len());
        Ok(LatencyAgg {
            baseline: field("baseline.hdr", &r.baseline.hdr)?,
            candidate: field("candidate.hdr", &r.candidate.hdr)?,
            slower,
            faster,
            equal,
        })
    }
}

/// The median rule: over at least `latency_min_samples` pairs, the median paired difference
/// exceeds both the absolute margin and the relative share of the baseline median.
pub fn median_rule(pairs: u64, median_diff_us: i64, base_p50_us: u64, th: &Thresholds) -> bool {
    pairs >= th.latency_min_samples
        && median_diff_us > 0
        && median_diff_us as u64 > th.latency_absolute_us
        && median_diff_us as f64 > th.latency_relative * base_p50_us as f64
}

/// How many standard deviations the candidate's excess of slow pairs must reach (a sign
/// test): in an A/A run the two targets are as often slower as each other, so this is what
/// keeps jitter in both tails from reading as a regression.
pub const TAIL_SIGNIFICANCE: f64 = 3.0;

/// The tail rule: over at least `latency_tail_min_samples` pairs, the candidate's p99
/// exceeds the baseline's by both the absolute margin and the relative share, and the pairs
/// in which the candidate was slower by more than the absolute margin (`slower`) outnumber
/// those in which it was faster by as much (`faster`) by [`TAIL_SIGNIFICANCE`] standard
/// deviations.
pub fn tail_rule(
    pairs: u64,
    base_p99_us: u64,
    cand_p99_us: u64,
    slower: u64,
    faster: u64,
    th: &Thresholds,
) -> bool {
    let excess = cand_p99_us.saturating_sub(base_p99_us);
    let confirmed =
        slower as f64 - faster as f64 > TAIL_SIGNIFICANCE * ((slower + faster) as f64).sqrt();
    pairs >= th.latency_tail_min_samples
        && excess > th.latency_tail_absolute_us
        && excess as f64 > th.latency_tail_relative * base_p99_us as f64
        && confirmed
}

/// Percentiles of one histogram.
pub fn stats(h: &Histogram<u64>) -> LatencyStats {
    if h.is_empty() {
        return LatencyStats {
            hdr: serialize(h),
            ..Default::default()
        };
    }
    LatencyStats {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        hdr: serialize(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_signed_differences() {
        let mut a = LatencyAgg::default();
        // differences: -300, -100, 0, +200, +400 -> median 0
        for (b, c) in [
            (1000, 700),
            (1000, 900),
            (1000, 1000),
            (1000, 1200),
            (1000, 1400),
        ] {
            a.record_pair(b, c);
        }
        assert_eq!(a.median_diff_us(), 0);
        a.record_pair(1000, 1600);
        a.record_pair(1000, 1800);
        // -300 -100 0 200 400 600 800 -> median 200
        assert_eq!(a.median_diff_us(), 200);
        let mut f = LatencyAgg::default();
        for d in [500, 400, 300] {
            f.record_pair(1000, 1000 - d);
        }
        assert_eq!(f.median_diff_us(), -400);
    }

    #[test]
    fn regression_needs_samples_relative_and_absolute() {
        let th = Thresholds::default();
        let mut a = LatencyAgg::default();
        for _ in 0..19 {
            a.record_pair(1000, 50_000);
        }
        assert!(!a.to_result(&th).regression, "too few samples");
        a.record_pair(1000, 50_000);
        assert!(a.to_result(&th).regression);
        let mut small = LatencyAgg::default();
        for _ in 0..100 {
            small.record_pair(1000, 2500); // +150% but only 1.5 ms
        }
        assert!(!small.to_result(&th).regression, "absolute threshold");
        let mut rel = LatencyAgg::default();
        for _ in 0..100 {
            rel.record_pair(100_000, 110_000); // +10 ms but only 10%
        }
        assert!(!rel.to_result(&th).regression, "relative threshold");
    }

    #[test]
    fn a_median_moved_by_jitter_is_not_a_regression() {
        let th = Thresholds::default();
        // 20 pairs from one jittery server: 11 slower by a lot, 9 faster by a lot. The paired
        // median clears both margins; 11 of 20 slower is a coin's doing.
        let mut jitter = LatencyAgg::default();
        for i in 0..20u64 {
            let (b, c) = if i < 11 {
                (20_000, 60_000)
            } else {
                (60_000, 20_000)
            };
            jitter.record_pair(b, c);
        }
        assert!(jitter.median_diff_us() > 20_000);
        assert!(!jitter.to_result(&th).regression);
        // 16 of 20 slower is not.
        let mut slow = LatencyAgg::default();
        for i in 0..20u64 {
            let (b, c) = if i < 16 {
                (20_000, 60_000)
            } else {
                (60_000, 20_000)
            };
            slow.record_pair(b, c);
        }
        assert!(slow.to_result(&th).regression);
        assert!(!slower_beyond_chance(15, 5) && slower_beyond_chance(16, 4));
        assert!(!slower_beyond_chance(0, 0));
    }

    #[test]
    fn a_slow_tail_is_flagged_by_the_tail_rule_alone() {
        let th = Thresholds::default();
        // One request in ten takes 400 ms instead of 5: the median does not move.
        let slow_tail = |n: u64| {
            let mut a = LatencyAgg::default();
            for i in 0..n {
                let cand = if i % 10 == 0 { 400_000 } else { 5_100 };
                a.record_pair(5_000 + i % 7 * 100, cand);
            }
            a
        };
        let r = slow_tail(200).to_result(&th);
        assert!(r.regression, "{:?}", r.paired);
        assert_eq!(r.rules, [TAIL_RULE]);
        assert!(!r.rules.iter().any(|x| x == MEDIAN_RULE));
        // Too few pairs for a p99 to mean anything.
        let r = slow_tail(99).to_result(&th);
        assert!(!r.regression && r.rules.is_empty());
        // Both rules at once.
        let mut both = LatencyAgg::default();
        for i in 0..200 {
            both.record_pair(5_000, if i % 10 == 0 { 400_000 } else { 50_000 });
        }
        assert_eq!(both.to_result(&th).rules, [MEDIAN_RULE, TAIL_RULE]);
    }

    #[test]
    fn the_tail_rule_needs_both_margins_and_the_pairs_to_agree() {
        let th = Thresholds::default();
        let mut small = LatencyAgg::default();
        for i in 0..500 {
            // p99 5 ms → 13 ms: beyond 50% but not beyond 10 ms.
            small.record_pair(5_000, if i % 10 == 0 { 13_000 } else { 5_000 });
        }
        assert!(!small.to_result(&th).regression, "absolute margin");
        let mut rel = LatencyAgg::default();
        for i in 0..500 {
            // p99 100 ms → 130 ms: beyond 10 ms but only 30%.
            rel.record_pair(100_000, if i % 10 == 0 { 130_000 } else { 100_000 });
        }
        assert!(!rel.to_result(&th).regression, "relative margin");
        // Higher p99 on the candidate, but as many pairs where the baseline was the slow one:
        // jitter both have, not the candidate's tail.
        let mut even = LatencyAgg::default();
        for i in 0..500 {
            // 5% of pairs the candidate's 400 ms, 4% the baseline's 30 ms.
            let (b, c) = match i % 100 {
                0..=4 => (5_000, 400_000),
                5..=8 => (30_000, 5_000),
                _ => (5_000, 5_000),
            };
            even.record_pair(b, c);
        }
        let r = even.to_result(&th);
        assert!(r.candidate.p99_us > 2 * r.baseline.p99_us, "{r:?}");
        assert!(
            !r.regression,
            "the pairs do not confirm the candidate's tail"
        );
    }

    #[test]
    fn jittery_identical_targets_are_never_slower() {
        use rand::{Rng, SeedableRng};
        let th = Thresholds::default();
        // Each target on its own: 1-20 ms, and one answer in 50 a spike of 50-500 ms.
        let draw = |rng: &mut rand::rngs::StdRng| {
            if rng.gen_range(0..50) == 0 {
                rng.gen_range(50_000..500_000)
            } else {
                rng.gen_range(1_000..20_000)
            }
        };
        for seed in 0..200 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut a = LatencyAgg::default();
            for _ in 0..(100 + seed * 10) {
                let (b, c) = (draw(&mut rng), draw(&mut rng));
                a.record_pair(b, c);
            }
            let r = a.to_result(&th);
            assert!(!r.regression, "seed {seed}: {:?} {:?}", r.rules, r.paired);
        }
    }

    #[test]
    fn serialization_round_trips_exactly() {
        let mut a = LatencyAgg::default();
        for i in 1..500u64 {
            a.record_pair(i * 13, i * 17 % 900 + 1);
        }
        let r = a.to_result(&Thresholds::default());
        let back = LatencyAgg::from_result(&r).unwrap();
        assert_eq!(back.baseline, a.baseline);
        assert_eq!(back.candidate, a.candidate);
        assert_eq!(back.slower, a.slower);
        assert_eq!(back.faster, a.faster);
        assert_eq!(back.equal, a.equal);
    }

    /// The V2 header of a histogram of this tool's bounds, declaring `payload` bytes of
    /// counts.
    fn v2_header(payload: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(V2_COOKIE.to_be_bytes());
        b.extend(payload.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        b.extend(3u32.to_be_bytes());
        b.extend(1u64.to_be_bytes());
        b.extend(MAX_US.to_be_bytes());
        b.extend(1f64.to_be_bytes());
        b
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn declared_lengths_beyond_the_bytes_present_are_refused_before_allocating() {
        // 56 characters declaring 4 GiB: the decoder allocated the declared size and aborted.
        let mut b = v2_header(u32::MAX);
        b.extend([0, 0]);
        let crafted = b64(&b);
        assert_eq!(crafted.len(), 56);
        let e = deserialize(&crafted).unwrap_err();
        assert!(
            e.contains("declares 4294967295 bytes of counts, 2 present"),
            "{e}"
        );

        // The same inside a deflated histogram, whose own length is honest.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &b).unwrap();
        let deflated = z.finish().unwrap();
        let mut outer = V2_DEFLATE_COOKIE.to_be_bytes().to_vec();
        outer.extend((deflated.len() as u32).to_be_bytes());
        outer.extend(&deflated);
        let e = deserialize(&b64(&outer)).unwrap_err();
        assert!(e.contains("declares 4294967295 bytes of counts"), "{e}");

        // A deflated length beyond the string, and counts that inflate without end.
        let mut lying = outer.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = deserialize(&b64(&lying)).unwrap_err();
        assert!(e.contains("declares 4294967295 deflated bytes"), "{e}");
        let mut bomb = v2_header(64 << 20);
        bomb.resize(bomb.len() + (64 << 20), 0);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &bomb).unwrap();
        let deflated = z.finish().unwrap();
        let mut outer = V2_DEFLATE_COOKIE.to_be_bytes().to_vec();
        outer.extend((deflated.len() as u32).to_be_bytes());
        outer.extend(&deflated);
        let e = deserialize(&b64(&outer)).unwrap_err();
        assert!(e.contains("inflates to more than"), "{e}");

        for bad in ["HISTEw==", "AAAAAAAA", "HISTFAAAAAA="] {
            assert!(deserialize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_histogram_is_named_by_its_field() {
        let mut r = LatencyAgg::default().to_result(&Thresholds::default());
        r.candidate.hdr = b64(&v2_header(1000));
        let e = LatencyAgg::from_result(&r).unwrap_err();
        assert!(e.starts_with("latency.candidate.hdr: "), "{e}");
    }
}
