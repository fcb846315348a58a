//! shadowdiff: capture production HTTP/RPC traffic, replay it against the old and the new
//! version of a gateway side by side, and report what differs.

pub mod analysis;
pub mod compare;
pub mod error;
pub mod exchange;
