//! The noise rule: is a field's candidate difference rate real, or no more than what two
//! calls to the baseline already differ by? This is the rule Diffy made popular: a field is a
//! regression only when its raw rate is above its noise rate, by more than a relative share
//! (20%) and an absolute margin (0.03 percentage points). Where no noise was ever measured for
//! a field, any raw difference counts: a field that never moves between two baseline calls
//! must not move on the candidate either.

use super::result::Thresholds;

/// Decides whether `raw` differences among `compared` exchanges are more than `noise`
/// differences among `probed` noise-probe answers.
pub fn is_regression(raw: u64, noise: u64, compared: u64, probed: u64, th: &Thresholds) -> bool {
    if raw == 0 {
        return false;
    }
    if noise == 0 || probed == 0 {
        return true;
    }
    let raw_rate = raw as f64 / compared.max(1) as f64;
    let noise_rate = noise as f64 / probed as f64;
    if raw_rate <= noise_rate {
        return false;
    }
    let absolute_pct = (raw_rate - noise_rate) * 100.0;
    let relative = (raw_rate - noise_rate) / raw_rate;
    absolute_pct > th.noise_absolute_pct && relative > th.noise_relative
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffy_rule() {
        let th = Thresholds::default();
        // Always differs between two baseline calls: noise, however often the candidate does.
        assert!(!is_regression(100, 100, 100, 100, &th));
        // Never differs between baseline calls: every raw difference is real.
        assert!(is_regression(1, 0, 10_000, 10_000, &th));
        // 50% vs 10%: real.
        assert!(is_regression(50, 10, 100, 100, &th));
        // 11% vs 10%: within 20% relative.
        assert!(!is_regression(11, 10, 100, 100, &th));
        // Rates, not counts: 60 of 200 vs 30 of 100 is the same rate.
        assert!(!is_regression(60, 30, 200, 100, &th));
        // Absolute margin: 0.02 points above noise is not enough.
        assert!(!is_regression(12, 10, 10_000, 10_000, &th));
        assert!(!is_regression(0, 0, 10, 10, &th));
    }
}
