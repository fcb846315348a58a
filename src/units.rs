//! One grammar for the quantities a user types, on every command and in the rules file:
//! sizes (`65536`, `64KiB`, `1MiB`, `2GB`), durations (`500ms`, `1.5s`, `2m`, `1h30m`) and
//! shares (`1%`, `0.01`). A flag that takes a size anywhere takes every form of a size, so
//! what works on `tap` works on `replay`. Parsers return the message without the flag's name;
//! clap and the rules-file loader put the name in front.

use std::time::Duration;

/// Parses a byte size: a whole number with an optional unit (`k`/`KiB` = 1024, `KB` = 1000,
/// likewise `M`, `G`).
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("expected a size like 65536, 64KiB, 1MiB or 2GB, found {s:?}");
    let n: u64 = num.replace('_', "").parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "k" | "K" | "KiB" | "kiB" => 1 << 10,
        "KB" | "kB" => 1_000,
        "m" | "M" | "MiB" => 1 << 20,
        "MB" => 1_000_000,
        "g" | "G" | "GiB" => 1 << 30,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// A byte size as `size` reads it back, in the largest binary unit that divides it.
pub fn show_size(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n != 0 && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Parses a duration: `500ms`, `10s`, `2m`, `1h30m`, and a decimal of one unit (`1.5s`,
/// `0.5ms`).
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(d);
    }
    decimal_duration(t)
        .ok_or_else(|| format!("expected a duration like 500ms, 1.5s, 10s or 2m, found {s:?}"))
}

/// `1.5s`: humantime reads only whole numbers of each unit.
fn decimal_duration(t: &str) -> Option<Duration> {
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = t.split_at(split);
    let x: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(x * secs).ok()
}

/// Parses a share between 0 and 1: `0.01` or `1%`.
pub fn share(s: &str) -> Result<f64, String> {
    let x = fraction(s)?;
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(format!(
            "expected a share between 0 and 1 (0.01 or 1%), found {s:?}"
        ))
    }
}

/// Parses a ratio of 0 or more: `0.25` or `25%` (a slowdown may exceed 100%).
pub fn ratio(s: &str) -> Result<f64, String> {
    let x = fraction(s)?;
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("expected 0 or more (0.25 or 25%), found {s:?}"))
    }
}

/// Parses a number (`0.25`) or a percentage (`25%`), with no range check.
pub fn fraction(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 0.01),
        None => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x * scale),
        _ => Err(format!(
            "expected a number like 0.01 or a percentage like 1%, found {s:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_every_unit_and_refuse_the_rest() {
        assert_eq!(size("65536"), Ok(65536));
        assert_eq!(size("64KiB"), Ok(64 << 10));
        assert_eq!(size("64k"), Ok(64 << 10));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert_eq!(size("2GB"), Ok(2_000_000_000));
        assert!(size("lots").unwrap_err().contains("64KiB"));
        assert!(size("1TiB").is_err());
        assert!(size("99999999999999999999").is_err());
        assert!(size("-1").is_err());
    }

    #[test]
    fn a_shown_size_reads_back_as_itself() {
        for n in [0, 1, 1000, 1 << 10, 64 << 20, 3 << 30, (1 << 20) + 1] {
            assert_eq!(size(&show_size(n)), Ok(n), "{}", show_size(n));
        }
        assert_eq!(show_size(64 << 20), "64MiB");
    }

    #[test]
    fn durations_take_decimals_and_compound_forms() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("0.5ms"), Ok(Duration::from_micros(500)));
        assert!(duration("soon").unwrap_err().contains("1.5s"));
        assert!(duration("1.5").is_err());
        assert!(duration("1e400s").is_err());
    }

    #[test]
    fn shares_and_ratios_take_percentages() {
        assert_eq!(share("1%"), Ok(0.01));
        assert_eq!(share("0.01"), Ok(0.01));
        assert_eq!(share("100%"), Ok(1.0));
        assert!(share("150%").is_err());
        assert!(share("NaN").is_err());
        assert!(share("-0.1").is_err());
        assert_eq!(ratio("250%"), Ok(2.5));
        assert!(ratio("-1%").is_err());
        assert!(ratio("inf").is_err());
    }
}
