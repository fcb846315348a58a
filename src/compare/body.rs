//! (in progress)
use super::{CompareOptions, Difference, Observed};
/// Body comparison.
pub fn diff_bodies(_a: &Observed, _b: &Observed, _o: &CompareOptions, _out: &mut Vec<Difference>) {}
