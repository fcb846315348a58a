//! (in progress)
use super::{CompareOptions, DiffKind, Difference};
/// Header comparison.
pub fn diff_headers(
    _a: &[(String, String)],
    _b: &[(String, String)],
    _kind: DiffKind,
    _o: &CompareOptions,
    _out: &mut Vec<Difference>,
) {
}
