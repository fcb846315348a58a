//! Integration tests: real sockets, real servers (hyper in-process, nginx, haproxy), the real
//! binary. Shared helpers live in `util.rs`.

mod util;

mod capture;
mod cli_errors;
mod config;
mod dead_rules;
mod demo;
mod docs;
mod faults;
mod filters;
mod grpc;
mod import;
mod inventory;
mod nginx;
mod replay_http;
mod reports;
mod rpc;
mod shard_merge;
mod show;
mod tap;
mod tap_floods;
mod tap_paths;
mod tap_tls;
mod tls;
mod upstream;
