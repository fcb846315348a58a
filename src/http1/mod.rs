//! HTTP/1 message rules without I/O, one copy for the whole crate: where a body ends
//! ([`framing`]), how a chunked body is taken apart as its bytes go by ([`chunked`]), and
//! which header fields belong to one connection rather than to the message ([`headers`]).
//!
//! The tap's own HTTP/1.1 path, replay's client and the importers each read HTTP/1 their
//! own way (a socket read by read, a whole buffer, a capture fed in pieces), but they ask
//! the same questions; two readers that answer them differently disagree about where one
//! message ends and the next begins, which is where request smuggling lives. Everything
//! here works on borrowed byte slices, so a caller that forwards bytes untouched copies
//! nothing to ask.

pub mod chunked;
pub mod framing;
pub mod headers;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use framing::{answer_has_no_body, BodyFields, Framing, Mode};
