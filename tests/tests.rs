//! Integration tests: real sockets, real servers (hyper in-process and nginx), the real
//! binary. Shared helpers live in `util.rs`.

mod util;

mod cli_errors;
mod demo;
mod nginx;
mod replay_http;
mod tap;
