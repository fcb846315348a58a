//! TLS as a client, with rustls and no OpenSSL: the configuration a client side builds from
//! its flags (platform roots plus a CA file, or no verification; a client certificate for
//! mutual TLS; the ALPN protocols offered), a connector that shakes hands over a TCP stream
//! and says which protocol was agreed, and the reasons a handshake fails, named so that a
//! report can say them in words.
//!
//! Replay's targets use it; any side that connects to a `https://` peer can.

mod client;
mod reason;

pub use client::{TlsClientOptions, TlsConnector, TlsSetupError, ALPN_H1, ALPN_H2};
pub use reason::{classify, TlsReason};

/// A TLS stream over TCP as the connector gives it.
pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;
