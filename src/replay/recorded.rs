//! The recorded answer as a noise sample. Where the baseline may not be asked twice (a
//! write) and there is no second baseline, the answer production gave at capture time is the
//! other answer to the same request: what differs between it and the baseline's answer now
//! is what changes on its own, plus what drifted since capture. It is judged by the same rule
//! as a second call and reported as its own source.
//!
//! What the recording cannot stand for is no sample: an exchange recorded without an answer,
//! or with a body cut at the capture limit (its fields would all look changed). Values the
//! recording redacted are compared by their hash, as they were written
//! ([`crate::recording::format::redact_value`]): equal secrets stay equal.

use crate::compare::{Difference, Observed};
use crate::exchange::Response;
use crate::recording::format::{is_redacted, redact_shown};

/// Why a recorded answer gives no noise sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// The recording holds no answer for the exchange.
    NoAnswer,
    /// The recorded body was cut at the capture limit.
    Truncated,
}

/// The recorded answer as an [`Observed`], when it can stand for a whole answer.
pub fn observed(response: Option<&Response>) -> Result<Observed, Unusable> {
    let r = response.ok_or(Unusable::NoAnswer)?;
    if r.body_truncated {
        return Err(Unusable::Truncated);
    }
    Ok(Observed {
        status: r.status,
        headers: r.headers.clone(),
        trailers: r.trailers.clone().unwrap_or_default(),
        body: r.body.clone(),
        latency_us: 0,
    })
}

/// Recorded answers older than this get a warning when they judge noise.
const OLD: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The warning for recorded answers captured at `oldest_us` and compared at `now_us`, when
/// they are older than a week: what changed in between passes for noise of its own kind.
pub fn age_warning(oldest_us: i64, now_us: i64) -> Option<String> {
    let age_us = now_us.saturating_sub(oldest_us);
    let old_us = i64::try_from(OLD.as_micros()).unwrap_or(i64::MAX);
    (age_us > old_us).then(|| {
        format!(
            "noise from the recording compared answers captured up to {} days ago: what \
             changed since then counts as noise of its own kind; record again, or give a \
             second baseline with --secondary, for a sharper verdict",
            age_us / 86_400_000_000
        )
    })
}

/// Drops the differences where the recorded side (`candidate`) holds the redaction of the
/// live value: the secret is the same, only hidden.
pub fn drop_equal_redactions(diffs: &mut Vec<Difference>) {
    diffs.retain(|d| {
        let (Some(live), Some(recorded)) = (d.baseline.as_deref(), d.candidate.as_deref()) else {
            return true;
        };
        // A redacted body field shows as a JSON string; a redaction needs no escaping.
        let recorded = recorded
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(recorded);
        !is_redacted(recorded) || redact_shown(live) != recorded
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{diff, CompareOptions, DiffKind};
    use crate::recording::format::redact_value;

    #[test]
    fn no_answer_and_cut_bodies_are_no_sample() {
        assert_eq!(observed(None), Err(Unusable::NoAnswer));
        let cut = Response {
            status: 200,
            body_truncated: true,
            ..Response::default()
        };
        assert_eq!(observed(Some(&cut)), Err(Unusable::Truncated));
        let whole = Response {
            status: 201,
            trailers: Some(vec![("grpc-status".into(), "0".into())]),
            ..Response::default()
        };
        let o = observed(Some(&whole)).expect("a whole answer is a sample");
        assert_eq!((o.status, o.trailers.len()), (201, 1));
    }

    #[test]
    fn answers_older_than_a_week_are_warned_of() {
        let day = 86_400_000_000;
        let now = 1_800_000_000_000_000;
        assert_eq!(age_warning(now - 6 * day, now), None);
        assert_eq!(age_warning(now, now), None);
        let w = age_warning(now - 40 * day, now).expect("40 days is old");
        assert!(w.contains("up to 40 days ago"), "{w}");
    }

    #[test]
    fn redacted_values_compare_by_their_hash() {
        let live = Observed {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("set-cookie".into(), "s=abc".into()),
                ("x-token".into(), "t1".into()),
            ],
            body: r#"{"card":"4111","pin":"1234","n":1}"#.into(),
            ..Observed::default()
        };
        let recorded = Observed {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("set-cookie".into(), redact_value(b"s=abc")),
                ("x-token".into(), redact_value(b"t0")),
            ],
            body: format!(
                r#"{{"card":"{}","pin":"{}","n":1}}"#,
                redact_value(b"4111"),
                redact_value(b"9999")
            )
            .into(),
            ..Observed::default()
        };
        let mut d = diff(&live, &recorded, &CompareOptions::default());
        drop_equal_redactions(&mut d);
        let keys: Vec<String> = d.iter().map(Difference::key).collect();
        // The same cookie and card number, only hidden; another token and another pin.
        assert_eq!(keys, ["header:x-token", "$.pin"], "{d:?}");
        assert!(d.iter().any(|x| x.kind == DiffKind::Body));
    }
}
