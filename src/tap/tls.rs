//! The tap's TLS listener: `--tls-cert` and `--tls-key` (PEM) become a rustls server
//! configuration offering `h2` and `http/1.1` by ALPN, held where SIGHUP can replace it.
//!
//! A reload reads both files again and swaps the configuration for the connections accepted
//! after it; a connection already open keeps the session it negotiated, so nothing is
//! dropped. A reload that fails (a file missing, a key that does not match) keeps the
//! configuration in use, says why on standard error and is counted: a tap in front of
//! production does not stop serving because a certificate renewal went wrong.

use super::metrics::Metrics;
use crate::error::{Error, Result};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// A client connection as the tap's own HTTP/1.1 path serves it: a plain socket, or a TLS
/// session over one. Each kind gets its own copy of that path, so the plain one pays
/// nothing for the other.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The socket under the stream, to see whether the client has closed it without
    /// reading what it sent.
    fn tcp(&self) -> &TcpStream;
}

impl ClientStream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// ALPN protocols the listener offers, in the order it prefers them.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// What the tap learned from a client connection's TLS handshake, for the recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The ALPN protocol agreed on (`h2`, `http/1.1`), when the client offered any.
    pub alpn: Option<String>,
}

impl Negotiated {
    /// Whether the client and the tap agreed on HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.alpn.as_deref() == Some("h2")
    }

    /// The note the recording keeps for an exchange on this connection.
    pub fn tls(&self) -> crate::exchange::Tls {
        crate::exchange::Tls {
            alpn: self.alpn.clone(),
        }
    }
}

/// The listener's certificate and key, replaceable while the tap runs.
#[derive(Debug)]
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads `cert` (the chain, leaf first) and `key`; every error names the flag, the file
    /// and what was expected.
    pub fn load(cert: &Path, key: &Path) -> Result<Self> {
        let config = server_config(cert, key).map_err(Error::Usage)?;
        Ok(ServerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// The acceptor for a connection accepted now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }

    /// Reads both files again and, when they make a configuration, uses it for every
    /// connection accepted from now on.
    pub fn reload(&self) -> std::result::Result<(), String> {
        let config = Arc::new(server_config(&self.cert, &self.key)?);
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }
}

/// Reloads `tls` on every SIGHUP, counting each reload and saying how it went, until the
/// future is dropped. SIGHUP is watched from the moment this is called, so a SIGHUP that
/// comes before the future first runs reloads too instead of ending the process by its
/// default disposition.
pub fn reload_on_sighup(
    tls: Arc<ServerTls>,
    metrics: Arc<Metrics>,
    quiet: bool,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let mut hup = match hup {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(
                        "tap: cannot watch SIGHUP ({e}); the certificate is not reloaded"
                    );
                    return;
                }
            };
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => {
                        metrics.tls_reloads[0].fetch_add(1, Ordering::Relaxed);
                        if !quiet {
                            eprintln!(
                                "SIGHUP: reloaded {} and {}; new connections use them",
                                tls.cert.display(),
                                tls.key.display()
                            );
                        }
                    }
                    Err(e) => {
                        metrics.tls_reloads[1].fetch_add(1, Ordering::Relaxed);
                        eprintln!("SIGHUP: {e}; the certificate in use is kept");
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (tls, metrics, quiet);
        }
    }
}

fn read(flag: &str, path: &Path) -> std::result::Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("--{flag} {}: cannot read it: {e}", path.display()))
}

/// A rustls server configuration from PEM files: the certificate chain and its private key
/// (PKCS#8, PKCS#1 or SEC1), TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.
pub fn server_config(cert: &Path, key: &Path) -> std::result::Result<ServerConfig, String> {
    let cert_pem = read("tls-cert", cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "--tls-cert {}: not a PEM certificate chain ({e})",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate found; expected PEM blocks \
             `-----BEGIN CERTIFICATE-----`, the server's certificate first",
            cert.display()
        ));
    }
    let key_pem = read("tls-key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "--tls-key {}: no private key found ({e}); expected a PEM block \
             `-----BEGIN PRIVATE KEY-----` (or RSA / EC PRIVATE KEY), unencrypted",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "--tls-cert {} with --tls-key {}: {e} (is the key the certificate's own?)",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn bad_files_are_refused_naming_the_flag_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        let c = server_config(&cert, &key).unwrap();
        assert_eq!(c.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").unwrap();
        for (c, k, says) in [
            (&missing, &key, "--tls-cert"),
            (&cert, &missing, "--tls-key"),
            (&garbage, &key, "no certificate found"),
            (&cert, &garbage, "no private key found"),
            (&key, &key, "no certificate found"),
            (&cert, &cert, "--tls-key"),
            (&cert, &other_key, "the certificate's own"),
        ] {
            let e = server_config(c, k).unwrap_err();
            assert!(e.contains(says), "{c:?} {k:?}: {e}");
        }
    }

    #[test]
    fn a_reload_that_fails_keeps_the_configuration_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let tls = ServerTls::load(&cert, &key).unwrap();
        let before = tls.acceptor().config().clone();
        std::fs::write(&key, "gone\n").unwrap();
        assert!(tls.reload().unwrap_err().contains("--tls-key"));
        assert!(Arc::ptr_eq(&before, tls.acceptor().config()));
        let (cert2, key2) = pair(dir.path(), "b");
        std::fs::rename(cert2, &cert).unwrap();
        std::fs::rename(key2, &key).unwrap();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, tls.acceptor().config()));
    }
}
