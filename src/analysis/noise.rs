//! The noise rule: is a field's candidate difference rate real, or no more than what two
//! calls to the baseline already differ by? This is the rule Diffy made popular: a field is a
//! regression only when its raw rate is above its noise rate, by more than a relative share
//! (20%) and an absolute margin (0.03 percentage points). Where no noise was ever measured for
//! a field, any raw difference counts: a field that never moves between two baseline calls
//! must not move on the candidate either. Where noise was measured, the excess must also be
//! more than chance (a one-sided two-proportion test at 1%), so a baseline run against itself
//! does not fail on the luck of the draw.

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
    absolute_pct > th.noise_absolute_pct
        && relative > th.noise_relative
        && beyond_chance(raw, compared.max(1), noise, probed)
}

/// One-sided z for "more often than noise" at 1%: a run of the baseline against itself
/// compares many paths, and each must not fail on the luck of the draw.
const Z_ONE_PERCENT: f64 = 2.326;

/// Whether `raw` of `compared` is above `noise` of `probed` by more than chance would give
/// two samples of the same rate (a pooled two-proportion z-test). A path that sometimes
/// differs between baseline calls differs about as often on the candidate by chance: 21 of
/// 700 against 15 of 700 clears both margins, and is luck.
fn beyond_chance(raw: u64, compared: u64, noise: u64, probed: u64) -> bool {
    let (n1, n2) = (compared as f64, probed as f64);
    let pooled = (raw + noise) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        // Both rates are 0 or both 1: nothing to tell apart (the caller saw raw above noise).
        return true;
    }
    (raw as f64 / n1 - noise as f64 / n2) / se > Z_ONE_PERCENT
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

    #[test]
    fn an_excess_within_chance_is_noise() {
        let th = Thresholds::default();
        // 3% against 2.1% over 700 each clears both margins, and is chance (z about 1.0).
        assert!(!is_regression(21, 15, 700, 700, &th));
        // Twice the noise rate on a large sample is not.
        assert!(is_regression(60, 30, 1000, 1000, &th));
        // Few samples: 5 of 5 against 1 of 5 is far enough (z about 2.6).
        assert!(is_regression(5, 1, 5, 5, &th));
        // 2 of 10 against 1 of 10 is not.
        assert!(!is_regression(2, 1, 10, 10, &th));
        // A path that never differed between baseline calls still fails at its first
        // candidate difference: chance is not asked there.
        assert!(is_regression(1, 0, 700, 700, &th));
    }
}
