//! Value-pattern hints: a differing value that looks volatile on both sides (a UUID, a
//! ULID, a snowflake id, a hex token, a time beyond the tolerance) is probably a per-request
//! value the user wants to ignore. A hint is only ever a suggestion in the report, with the
//! rule to add; it never hides a difference by itself.

use super::timeval::parse_time_us;

/// What a volatile-looking value looks like, or `None`.
pub fn volatile_kind(rendered: &str) -> Option<&'static str> {
    // Values in differences are rendered as JSON: strings arrive quoted.
    let v = rendered
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(rendered);
    let b = v.as_bytes();
    if b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
    {
        return Some("UUIDs");
    }
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    if b.len() == 26
        && b.iter()
            .all(|c| CROCKFORD.contains(&c.to_ascii_uppercase()))
        && b[0] <= b'7'
    {
        return Some("ULIDs");
    }
    // Snowflake-style ids: 64-bit numbers of 17 to 20 digits (Twitter, Discord, Sonyflake).
    if (17..=20).contains(&b.len()) && b.iter().all(u8::is_ascii_digit) {
        return Some("snowflake ids");
    }
    if b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit) {
        return Some("hex tokens");
    }
    if parse_time_us(v).is_some() {
        return Some("times");
    }
    None
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
}
