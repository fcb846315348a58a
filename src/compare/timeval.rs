//! Recognises values that are times (RFC 3339 and HTTP-date strings, epoch numbers in
//! time-named fields) so that two servers stamping "now" a moment apart count as noise.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 timestamp (any fraction length, `Z` or numeric offset) or an HTTP date
/// (IMF-fixdate, RFC 850, asctime) into microseconds since the Unix epoch.
pub fn parse_time_us(s: &str) -> Option<i64> {
    let s = s.trim();
    // The shortest date either format accepts is 20 bytes (`2024-01-01T00:00:00Z`); the
    // length check and first-byte check keep ordinary strings from reaching both parsers,
    // which matters because every differing string pair goes through here.
    if s.len() < 20 || s.len() > 64 {
        return None;
    }
    let first = s.as_bytes()[0];
    if first.is_ascii_digit() {
        let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        return i64::try_from(t.unix_timestamp_nanos() / 1000).ok();
    }
    if first.is_ascii_alphabetic() {
        let t = httpdate::parse_http_date(s).ok()?;
        return system_time_us(t);
    }
    None
}

fn system_time_us(t: SystemTime) -> Option<i64> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).ok(),
        // Dates before 1970 are legal HTTP dates; SystemTime reports them as an error.
        Err(e) => i64::try_from(e.duration().as_micros()).ok().map(|us| -us),
    }
}

/// The unit an epoch number is written in, judged from its magnitude.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

/// Guesses the unit from the magnitude. The ranges cover roughly 2001..2286 in each unit and
/// leave gaps between them, so an ordinary count or id is not mistaken for a time.
fn epoch_unit(n: f64) -> Option<EpochUnit> {
    if !n.is_finite() {
        return None;
    }
    if (1e9..1e10).contains(&n) {
        Some(EpochUnit::Seconds)
    } else if (1e12..1e13).contains(&n) {
        Some(EpochUnit::Millis)
    } else if (1e15..1e16).contains(&n) {
        Some(EpochUnit::Micros)
    } else if (1e18..1e19).contains(&n) {
        Some(EpochUnit::Nanos)
    } else {
        None
    }
}

/// Reads a number as a Unix epoch time in seconds (fractions allowed, as in nginx `$msec`),
/// milliseconds, microseconds or nanoseconds, chosen by magnitude; returns microseconds, or
/// `None` when the number is not in any plausible epoch range.
pub fn epoch_us(n: f64) -> Option<i64> {
    let us = match epoch_unit(n)? {
        EpochUnit::Seconds => n * 1e6,
        EpochUnit::Millis => n * 1e3,
        EpochUnit::Micros => n,
        EpochUnit::Nanos => n / 1e3,
    };
    // All ranges above end below 1e16 µs, far inside i64, so the cast cannot saturate.
    Some(us.round() as i64)
}

/// Exact field names (compared case-insensitively) that conventionally hold a time.
const TIME_NAMES: &[&str] = &[
    "ts",
    "time",
    "timestamp",
    "date",
    "datetime",
    "created",
    "updated",
    "modified",
    "expires",
    "expiry",
    "now",
];

/// Suffixes and prefixes in snake case, compared case-insensitively (`CREATED_AT` too).
const SNAKE_SUFFIXES: &[&str] = &["_at", "_time", "_ts", "_date"];
const SNAKE_PREFIXES: &[&str] = &["created_", "updated_"];

/// camelCase suffixes, compared case-sensitively: matching `at` case-insensitively would
/// take in `format`, `heartbeat` or `flat`.
const CAMEL_SUFFIXES: &[&str] = &["At", "Time", "Date"];

/// True when a field name says it holds a time: `ts`, `time`, `created`, `expires`, …,
/// snake-case `*_at`, `*_time`, `*_ts`, `*_date`, `created_*`, `updated_*`, and camelCase
/// `*At`, `*Time`, `*Date`.
pub fn is_time_field_name(name: &str) -> bool {
    if TIME_NAMES.iter().any(|t| name.eq_ignore_ascii_case(t)) {
        return true;
    }
    let bytes = name.as_bytes();
    let ends_ci = |suffix: &str| {
        bytes.len() > suffix.len()
            && bytes[bytes.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    let starts_ci = |prefix: &str| {
        bytes.len() > prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    if SNAKE_SUFFIXES.iter().any(|s| ends_ci(s)) || SNAKE_PREFIXES.iter().any(|p| starts_ci(p)) {
        return true;
    }
    CAMEL_SUFFIXES.iter().any(|s| {
        name.len() > s.len()
            && name.ends_with(s)
            // A camelCase hump follows a lower-case letter or digit; `FLAT` or `UPDATE` does
            // not end in a hump even though its last letters spell one.
            && {
                let before = bytes[name.len() - s.len() - 1];
                before.is_ascii_lowercase() || before.is_ascii_digit()
            }
    })
}

fn within(a_us: i64, b_us: i64, tol: Duration) -> bool {
    let delta = (i128::from(a_us) - i128::from(b_us)).unsigned_abs();
    delta <= tol.as_micros()
}

/// True when both strings read as times in the same format and are at most `tol` apart.
/// Another format (an HTTP date for RFC 3339, another zone offset, a space for the `T`) is
/// a change a client parsing the old one can trip over, not noise.
pub fn within_tolerance_str(a: &str, b: &str, tol: Duration) -> bool {
    match (parse_time_us(a), parse_time_us(b)) {
        (Some(x), Some(y)) => within(x, y, tol) && shape(a) == shape(b),
        _ => false,
    }
}

/// The format of a time as text: each run of digits becomes `0`, each run of letters `a`
/// (case and day or month names aside), and a fraction of a second is left out, since
/// writers drop it when it is zero (`20Z` beside `20.5Z`).
fn shape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('0');
            if chars.peek() == Some(&'.') {
                let mut ahead = chars.clone();
                ahead.next();
                if ahead.peek().is_some_and(char::is_ascii_digit) {
                    chars = ahead;
                    while chars.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                    }
                }
            }
        } else if c.is_ascii_alphabetic() {
            while chars.peek().is_some_and(char::is_ascii_alphabetic) {
                chars.next();
            }
            out.push('a');
        } else {
            out.push(c);
        }
    }
    out
}

/// True when both numbers read as epoch times in the same unit and are at most `tol` apart.
/// Mixed units (seconds on one side, milliseconds on the other) are a format change, not noise.
pub fn within_tolerance_num(a: f64, b: f64, tol: Duration) -> bool {
    match (epoch_unit(a), epoch_unit(b)) {
        (Some(ua), Some(ub)) if ua == ub => match (epoch_us(a), epoch_us(b)) {
            (Some(x), Some(y)) => within(x, y, tol),
            _ => false,
        },
        _ => false,
    }
}

/// How far from the present an epoch number may be and still be taken for a stamp of "now"
/// when its field name does not say it is a time.
const NEAR_NOW: Duration = Duration::from_secs(24 * 3600);

/// True when both numbers read as epoch seconds, milliseconds or microseconds (nanoseconds
/// overlap the range of 64-bit snowflake ids) within [`NEAR_NOW`] of this machine's clock.
pub fn both_near_now(a: f64, b: f64) -> bool {
    let Some(now) = system_time_us(SystemTime::now()) else {
        return false;
    };
    let near = |n: f64| {
        !matches!(epoch_unit(n), None | Some(EpochUnit::Nanos))
            && epoch_us(n).is_some_and(|us| within(us, now, NEAR_NOW))
    };
    near(a) && near(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000; // 2023-11-14T22:13:20Z

    #[test]
    fn parses_rfc3339_variants() {
        assert_eq!(parse_time_us("2023-11-14T22:13:20Z"), Some(T0));
        assert_eq!(parse_time_us("2023-11-14T22:13:20.5Z"), Some(T0 + 500_000));
        assert_eq!(
            parse_time_us("2023-11-14T22:13:20.123456789Z"),
            Some(T0 + 123_456)
        );
        assert_eq!(parse_time_us("2023-11-14T23:13:20+01:00"), Some(T0));
        assert_eq!(parse_time_us("2023-11-14t22:13:20z"), Some(T0));
        assert_eq!(parse_time_us("2023-11-14 22:13:20Z"), Some(T0));
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(parse_time_us("Tue, 14 Nov 2023 22:13:20 GMT"), Some(T0));
        assert_eq!(parse_time_us("Tuesday, 14-Nov-23 22:13:20 GMT"), Some(T0));
        assert_eq!(parse_time_us("Tue Nov 14 22:13:20 2023"), Some(T0));
    }

    #[test]
    fn rejects_non_times() {
        for s in [
            "",
            "hello world, this is text",
            "2023-11-14",
            "12345678901234567890",
            "2023-13-14T22:13:20Z",
        ] {
            assert_eq!(parse_time_us(s), None, "{s}");
        }
    }

    #[test]
    fn epoch_by_magnitude() {
        assert_eq!(epoch_us(1_700_000_000.0), Some(T0));
        assert_eq!(epoch_us(1_700_000_000.123), Some(T0 + 123_000));
        assert_eq!(epoch_us(1_700_000_000_123.0), Some(T0 + 123_000));
        assert_eq!(epoch_us(1_700_000_000_123_456.0), Some(T0 + 123_456));
        assert_eq!(epoch_us(1.7e18), Some(T0));
        for n in [
            0.0,
            42.0,
            5e10,
            1e14,
            1e17,
            1e20,
            -1.7e9,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert_eq!(epoch_us(n), None, "{n}");
        }
    }

    #[test]
    fn time_field_names() {
        for n in [
            "ts",
            "TS",
            "Time",
            "timestamp",
            "date",
            "datetime",
            "created",
            "updated",
            "modified",
            "expires",
            "expiry",
            "now",
            "created_at",
            "CREATED_AT",
            "createdAt",
            "startTime",
            "start_time",
            "event_ts",
            "birth_date",
            "birthDate",
            "created_on",
            "updated_by_ts",
            "v2At",
        ] {
            assert!(is_time_field_name(n), "{n}");
        }
        for n in [
            "format",
            "heartbeat",
            "flat",
            "FLAT",
            "id",
            "name",
            "at",
            "_at",
            "Time_",
            "count",
            "update",
            "lifetime",
        ] {
            assert!(!is_time_field_name(n), "{n}");
        }
    }

    #[test]
    fn tolerance_on_strings() {
        let tol = Duration::from_secs(5);
        assert!(within_tolerance_str(
            "2023-11-14T22:13:20Z",
            "2023-11-14T22:13:24.999Z",
            tol
        ));
        assert!(within_tolerance_str(
            "Tue, 14 Nov 2023 22:13:20 GMT",
            "Wed, 15 Nov 2023 00:00:00 GMT",
            Duration::from_secs(86_400)
        ));
        assert!(within_tolerance_str(
            "2023-11-14t22:13:20z",
            "2023-11-14T22:13:21.25Z",
            tol
        ));
        // The same moment in another format is a change, not noise.
        for other in [
            "Tue, 14 Nov 2023 22:13:20 GMT",
            "2023-11-14T23:13:20+01:00",
            "2023-11-14 22:13:20Z",
        ] {
            assert!(
                !within_tolerance_str("2023-11-14T22:13:20Z", other, tol),
                "{other}"
            );
        }
        assert!(!within_tolerance_str(
            "2023-11-14T22:13:20Z",
            "2023-11-14T23:13:20Z",
            tol
        ));
        assert!(!within_tolerance_str(
            "2023-11-14T22:13:20Z",
            "not a time at all, really",
            tol
        ));
    }

    #[test]
    fn tolerance_on_numbers_needs_same_unit() {
        let tol = Duration::from_secs(5);
        assert!(within_tolerance_num(1_700_000_000.0, 1_700_000_003.5, tol));
        assert!(within_tolerance_num(
            1_700_000_000_000.0,
            1_700_000_004_000.0,
            tol
        ));
        assert!(!within_tolerance_num(1_700_000_000.0, 1_700_003_600.0, tol));
        assert!(!within_tolerance_num(
            1_700_000_000.0,
            1_700_000_000_000.0,
            tol
        ));
        assert!(!within_tolerance_num(3.0, 4.0, tol));
    }
}
