//! FNV-1a, 64 bit: the one stable hash of the crate. Shards, samples and the demo's data are
//! derived from ids with it, so they are the same on every machine, run and Rust version
//! (std's hasher is randomly keyed and makes no such promise).

/// FNV-1a's published offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_from(FNV_OFFSET, bytes)
}

/// FNV-1a of `bytes` started from `basis` instead of the offset basis: a salted variant,
/// so two uses of the same ids (the recording sample, the shadow sample) pick unrelated sets.
pub fn fnv1a64_from(basis: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(basis, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_function() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }
}
