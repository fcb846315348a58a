//! Value-pattern hints: a differing value that looks volatile on both sides (a UUID, a
//! ULID, a snowflake id, a hex token, a prefixed random token like `tok_3fK9xQ2mZ7`, a time
//! beyond the tolerance) is probably a per-request value the user wants to ignore. A hint is
//! only ever a suggestion in the report, with the rule to add; it never hides a difference
//! by itself.

use super::timeval::parse_time_us;
use crate::interface::{id_kind, IdKind};

/// What a volatile-looking value looks like, or `None`.
pub fn volatile_kind(rendered: &str) -> Option<&'static str> {
    // Values in differences are rendered as JSON: strings arrive quoted.
    let v = rendered
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(rendered);
    let b = v.as_bytes();
    match id_kind(b) {
        Some(IdKind::Uuid) => return Some("UUIDs"),
        Some(IdKind::Ulid) => return Some("ULIDs"),
        Some(IdKind::Snowflake) => return Some("snowflake ids"),
        Some(IdKind::Hex) => return Some("hex tokens"),
        None => {}
    }
    if is_prefixed_token(b) {
        return Some("prefixed random tokens");
    }
    if parse_time_us(v).is_some() {
        return Some("times");
    }
    None
}

/// Longest prefix segment: `tok`, `ch`, `whsec`; a longer run of letters is a word.
const MAX_PREFIX_SEGMENT: usize = 8;
/// Prefix segments, for `sk_live_` and `pk_test_`; more is an identifier like
/// `a_b_c_d_name`.
const MAX_PREFIX_SEGMENTS: usize = 3;
/// Shortest random tail: shorter ones (`v_1`, `row_17`) are versions and counters.
const MIN_TAIL: usize = 8;

/// A random token behind a short lowercase type prefix, the way Stripe (`ch_1NXWPe2eZv…`,
/// `sk_live_…`), GitHub (`ghp_…`) and many home-grown services mint ids: one to three
/// segments of 1 to 8 lowercase letters, each followed by `_` or `-`, then a tail of at least
/// [`MIN_TAIL`] ASCII letters and digits that holds a digit and looks random.
///
/// "Looks random" counts the breaks between character classes (digit, lower, upper; an
/// upper followed by a lower is a capitalised word, not a break): a random tail breaks
/// often, a name with a number (`profile2024`, `mp3player`) once or twice. At least three
/// breaks, or two in a lowercase hex tail, since hex has only six letters to break with.
/// Words, `snake_case` names and counters never have such a tail; a name with numbers
/// inside (`iPhone15Pro`) can, and since a hint only suggests a rule, the user declines it.
fn is_prefixed_token(v: &[u8]) -> bool {
    let Some(sep) = v.iter().rposition(|c| matches!(c, b'_' | b'-')) else {
        return false;
    };
    let (prefix, tail) = (&v[..sep], &v[sep + 1..]);
    let mut segments = 0;
    for seg in prefix.split(|c| matches!(c, b'_' | b'-')) {
        segments += 1;
        if segments > MAX_PREFIX_SEGMENTS
            || seg.is_empty()
            || seg.len() > MAX_PREFIX_SEGMENT
            || !seg.iter().all(u8::is_ascii_lowercase)
        {
            return false;
        }
    }
    if tail.len() < MIN_TAIL
        || !tail.iter().all(u8::is_ascii_alphanumeric)
        || !tail.iter().any(u8::is_ascii_digit)
    {
        return false;
    }
    #[derive(PartialEq)]
    enum Class {
        Digit,
        Lower,
        Upper,
    }
    let class = |c: &u8| match c {
        b'0'..=b'9' => Class::Digit,
        b'a'..=b'z' => Class::Lower,
        _ => Class::Upper,
    };
    let breaks = tail
        .windows(2)
        .filter(|w| {
            let (a, b) = (class(&w[0]), class(&w[1]));
            a != b && !(a == Class::Upper && b == Class::Lower)
        })
        .count();
    let lower_hex = tail
        .iter()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    breaks >= 3 || (lower_hex && breaks >= 2)
}

/// The kind both values share, when both look volatile in the same way.
pub fn shared_kind(a: Option<&str>, b: Option<&str>) -> Option<&'static str> {
    let ka = volatile_kind(a?)?;
    let kb = volatile_kind(b?)?;
    (ka == kb).then_some(ka)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            volatile_kind("\"123e4567-e89b-12d3-a456-426614174000\""),
            Some("UUIDs")
        );
        assert_eq!(
            volatile_kind("\"01ARZ3NDEKTSV4RRFFQ69G5FAV\""),
            Some("ULIDs")
        );
        assert_eq!(volatile_kind("1541815603606036480"), Some("snowflake ids"));
        assert_eq!(
            volatile_kind("\"9f86d081884c7d659a2feaa0c55ad015\""),
            Some("hex tokens")
        );
        assert_eq!(volatile_kind("\"2026-11-02T09:00:00Z\""), Some("times"));
        assert_eq!(
            volatile_kind("\"Tue, 15 Nov 1994 08:12:31 GMT\""),
            Some("times")
        );
        assert_eq!(volatile_kind("12.5"), None);
        assert_eq!(volatile_kind("\"hello\""), None);
        assert_eq!(
            volatile_kind("\"deadbeefdeadbeef\""),
            None,
            "no digit: a word, not a token"
        );
        assert_eq!(
            shared_kind(Some("\"2026-11-02T09:00:00Z\""), Some("12")),
            None
        );
    }

    #[test]
    fn prefixed_random_tokens() {
        for v in [
            "at_3fK9xQ2mZ7",
            "q_78a8c2e1f0",
            "tok-9f86d081884c",
            "ch_1NXWPe2eZvKYlo2C",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "req-7823a91045",
        ] {
            assert_eq!(
                volatile_kind(&format!("\"{v}\"")),
                Some("prefixed random tokens"),
                "{v}"
            );
        }
        assert_eq!(
            shared_kind(Some("\"at_3fK9xQ2mZ7\""), Some("\"at_Q7pL2xT8vW4n\"")),
            Some("prefixed random tokens")
        );
        for v in [
            // Words and snake_case identifiers.
            "user_name",
            "in_stock",
            "snake_case_name",
            "out-of-stock",
            "x-request-id",
            "shipping_address_line2",
            // Versions, counters and short tails.
            "v_1",
            "v_12",
            "row_17",
            "at_3fK9x",
            "build-20240105",
            "order_12345678",
            // A name with a number: one or two breaks.
            "item_profile2024",
            "media_mp3player",
            "cfg_covid19vaccine",
            // No digit: a word or a camelCase name, not a token.
            "tok_abcdefghij",
            "op_getUserName",
            // Not a short lowercase prefix.
            "Tok_3fK9xQ2mZ7",
            "verylongprefix_3fK9xQ2mZ7",
            "_3fK9xQ2mZ7",
            "at__3fK9xQ2mZ7",
            "a_b_c_d_3fK9xQ2mZ7",
            "at1_3fK9xQ2mZ7",
            // A tail with something besides letters and digits.
            "at_3fK9x.Q2mZ7",
            "at_3fK9xQ2mZ7é",
        ] {
            assert_eq!(volatile_kind(&format!("\"{v}\"")), None, "{v}");
        }
    }
}
