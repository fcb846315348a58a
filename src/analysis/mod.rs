//! Per-interface aggregation (in progress).
pub mod result;
