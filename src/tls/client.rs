//! The client configuration and the handshake. A configuration is built once per peer from
//! its options (reading the platform's roots once per process) and shared by every
//! connection to that peer, so a handshake costs no file reads.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;

/// ALPN name of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN name of HTTP/1.1.
pub const ALPN_H1: &[u8] = b"http/1.1";

/// How a client side speaks TLS to one peer, as its flags give it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsClientOptions {
    /// PEM file of CA certificates trusted besides the platform's roots.
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate (no verification of chain or name).
    pub insecure: bool,
    /// PEM file of the client certificate (chain) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
    /// Name sent as SNI and verified against the certificate, instead of the peer's host
    /// (for a peer given by address).
    pub server_name: Option<String>,
}

/// Options that cannot make a configuration: a file unreadable or without what it should
/// hold, a name that is not a DNS name or address, a key that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSetupError(pub String);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// Makes TLS connections to one peer: a shared configuration and the name to ask for.
#[derive(Clone)]
pub struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector for the peer `host` (a DNS name or an IP address, brackets allowed),
    /// offering `alpn` (most preferred first; empty offers none).
    pub fn new(opts: &TlsClientOptions, host: &str, alpn: &[&[u8]]) -> Result<Self, TlsSetupError> {
        let config = client_config(opts, alpn)?;
        let name = opts.server_name.as_deref().unwrap_or(host);
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare.to_string()).map_err(|_| {
            TlsSetupError(format!(
                "{name:?} is not a DNS name or IP address to verify the certificate against"
            ))
        })?;
        Ok(TlsConnector {
            inner: tokio_rustls::TlsConnector::from(config),
            server_name,
        })
    }

    /// Shakes hands over `tcp` and gives the stream and the ALPN protocol agreed, if any.
    /// A failed handshake is an `io::Error` around the rustls error, which
    /// [`super::classify`] names.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<(super::TlsStream, Option<Vec<u8>>)> {
        let stream = self.inner.connect(self.server_name.clone(), tcp).await?;
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        Ok((stream, alpn))
    }
}

/// The rustls configuration for `opts`, offering `alpn`.
pub fn client_config(
    opts: &TlsClientOptions,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(format!("TLS versions: {e}")))?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(platform_roots().iter().cloned());
        if let Some(path) = &opts.ca_cert {
            for cert in read_certs(path, "CA certificate")? {
                roots.add(cert).map_err(|e| {
                    TlsSetupError(format!("CA certificate {}: {e}", path.display()))
                })?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&opts.client_cert, &opts.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "client certificate")?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                TlsSetupError(format!(
                    "client key {}: {} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)",
                    key.display(),
                    pem_error(&e)
                ))
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                TlsSetupError(format!(
                    "client certificate {} with key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(TlsSetupError(
                "a client certificate needs its key as well".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(TlsSetupError(
                "a client key needs its certificate as well".into(),
            ))
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The platform's trusted roots, read once per process; none where the platform has none
/// (then only `--ca-cert` is trusted).
fn platform_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!("platform certificate store: {e}");
        }
        found.certs
    })
}

/// Every certificate of a PEM file, at least one.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let fail = |m: String| TlsSetupError(format!("{what} {}: {m}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_error(&e)))?;
    if certs.is_empty() {
        return Err(fail(
            "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => format!("cannot read it: {io}"),
        E::NoItemsFound => "nothing of the expected kind in it".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// `--insecure`: any chain for any name is taken, but the handshake's signatures are still
/// checked, so the peer holds the key of the certificate it showed.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{classify, TlsReason};
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        pem: String,
    }

    /// A CA of its own name: webpki looks issuers up by name.
    fn new_ca() -> Ca {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("test CA {n}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A leaf for `names` signed by `ca`, expired or not: (cert PEM, key PEM).
    fn leaf(ca: &Ca, names: &[&str], expired: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&ca.params, &ca.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A TLS server on loopback with `cert`, offering `alpn`, optionally requiring a client
    /// certificate from `client_ca`; it answers each connection's first read with "pong".
    async fn server(
        cert: &(String, String),
        alpn: &[&[u8]],
        client_ca: Option<&Ca>,
    ) -> std::net::SocketAddr {
        let chain = vec![CertificateDer::from_pem_slice(cert.0.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let b = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
                    .unwrap();
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                b.with_client_cert_verifier(v)
            }
            None => b.with_no_client_auth(),
        };
        let mut config = b.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(s).await {
                        let mut b = [0u8; 16];
                        if s.read(&mut b).await.is_ok() {
                            let _ = s.write_all(b"pong").await;
                            let _ = s.shutdown().await;
                        }
                    }
                });
            }
        });
        addr
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Connects, says ping, and reads the answer: the agreed ALPN, or the failure's reason.
    async fn ping(
        opts: &TlsClientOptions,
        host: &str,
        addr: std::net::SocketAddr,
        alpn: &[&[u8]],
    ) -> Result<Option<Vec<u8>>, TlsReason> {
        let c = TlsConnector::new(opts, host, alpn).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let reason = |e: io::Error| classify(&e).map_or(TlsReason::Other, |r| r.0);
        let (mut s, agreed) = c.connect(tcp).await.map_err(reason)?;
        s.write_all(b"ping").await.map_err(reason)?;
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.map_err(reason)?;
        assert_eq!(got, b"pong");
        Ok(agreed)
    }

    #[tokio::test]
    async fn handshakes_verify_against_the_ca_file_and_name_what_fails() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca();
        let ca_file = write(&dir, "ca.pem", &ca.pem);
        let trusted = TlsClientOptions {
            ca_cert: Some(ca_file),
            ..Default::default()
        };
        let good = server(&leaf(&ca, &["localhost"], false), &[ALPN_H2, ALPN_H1], None).await;
        let both: &[&[u8]] = &[ALPN_H2, ALPN_H1];
        assert_eq!(
            ping(&trusted, "localhost", good, both).await,
            Ok(Some(b"h2".to_vec()))
        );
        assert_eq!(
            ping(&trusted, "localhost", good, &[ALPN_H1]).await,
            Ok(Some(b"http/1.1".to_vec()))
        );
        // Not trusted without the CA file; the wrong name; expired; all named.
        let plain = TlsClientOptions::default();
        assert_eq!(
            ping(&plain, "localhost", good, both).await,
            Err(TlsReason::UnknownCa)
        );
        assert_eq!(
            ping(&trusted, "other.example", good, both).await,
            Err(TlsReason::NameMismatch)
        );
        let by_name = TlsClientOptions {
            server_name: Some("localhost".into()),
            ..trusted.clone()
        };
        assert!(ping(&by_name, "127.0.0.1", good, both).await.is_ok());
        let old = server(&leaf(&ca, &["localhost"], true), &[], None).await;
        assert_eq!(
            ping(&trusted, "localhost", old, both).await,
            Err(TlsReason::Expired)
        );
        // --insecure takes all of them.
        let insecure = TlsClientOptions {
            insecure: true,
            ..Default::default()
        };
        assert!(ping(&insecure, "other.example", old, both).await.is_ok());
        // The server speaks only a protocol the client does not offer.
        let h2_only = server(&leaf(&ca, &["localhost"], false), &[ALPN_H2], None).await;
        assert_eq!(
            ping(&trusted, "localhost", h2_only, &[ALPN_H1]).await,
            Err(TlsReason::NoSharedProtocol)
        );
    }

    #[tokio::test]
    async fn a_client_certificate_is_shown_and_its_absence_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca();
        let clients = new_ca();
        let server_addr = server(&leaf(&ca, &["localhost"], false), &[], Some(&clients)).await;
        let (cert, key) = leaf(&clients, &["client"], false);
        let with_cert = TlsClientOptions {
            ca_cert: Some(write(&dir, "ca.pem", &ca.pem)),
            client_cert: Some(write(&dir, "client.pem", &cert)),
            client_key: Some(write(&dir, "client.key", &key)),
            ..Default::default()
        };
        assert!(ping(&with_cert, "localhost", server_addr, &[])
            .await
            .is_ok());
        let without = TlsClientOptions {
            client_cert: None,
            client_key: None,
            ..with_cert.clone()
        };
        assert_eq!(
            ping(&without, "localhost", server_addr, &[]).await,
            Err(TlsReason::ClientCertRefused)
        );
        // A certificate from a CA the server does not trust.
        let (cert, key) = leaf(&ca, &["client"], false);
        let stranger = TlsClientOptions {
            client_cert: Some(write(&dir, "stranger.pem", &cert)),
            client_key: Some(write(&dir, "stranger.key", &key)),
            ..with_cert
        };
        assert_eq!(
            ping(&stranger, "localhost", server_addr, &[]).await,
            Err(TlsReason::ClientCertRefused)
        );
    }

    #[test]
    fn bad_files_are_named_with_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let junk = write(&dir, "junk.pem", "not a certificate\n");
        let err = |o: TlsClientOptions| TlsConnector::new(&o, "localhost", &[]).unwrap_err().0;
        let e = err(TlsClientOptions {
            ca_cert: Some(junk.clone()),
            ..Default::default()
        });
        assert!(
            e.contains("junk.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        let e = err(TlsClientOptions {
            ca_cert: Some(dir.path().join("missing.pem")),
            ..Default::default()
        });
        assert!(
            e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );
        let ca = new_ca();
        let e = err(TlsClientOptions {
            client_cert: Some(write(&dir, "c.pem", &ca.pem)),
            client_key: Some(junk),
            ..Default::default()
        });
        assert!(e.contains("client key") && e.contains("PKCS#8"), "{e}");
        let e = err(TlsClientOptions {
            client_cert: Some(write(&dir, "c2.pem", &ca.pem)),
            ..Default::default()
        });
        assert!(e.contains("needs its key"), "{e}");
        let e = TlsConnector::new(&TlsClientOptions::default(), "bad name!", &[]).unwrap_err();
        assert!(e.0.contains("not a DNS name"), "{e}");
    }
}
