//! Why a TLS handshake failed, in the few words a user acts on: the peer's certificate is
//! signed by a CA nobody trusts, is for another name, has expired; the two ends share no
//! protocol; the peer refused our client certificate (or wanted one); or the peer does not
//! speak TLS at all. rustls says much more, and its message is kept beside the reason.

use std::fmt;

/// The reason a TLS handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsReason {
    /// The peer's certificate chain does not lead to a trusted root.
    UnknownCa,
    /// The peer's certificate is not for the name asked for (SNI or `--tls-server-name`).
    NameMismatch,
    /// The peer's certificate has expired.
    Expired,
    /// The peer's certificate is not valid yet.
    NotYetValid,
    /// The peer's certificate was refused for another reason (bad signature, revoked,
    /// unsupported algorithm, ...).
    BadCertificate,
    /// No TLS version, cipher suite, key exchange group or ALPN protocol in common.
    NoSharedProtocol,
    /// The peer refused the client certificate, or asked for one and got none.
    ClientCertRefused,
    /// The peer ended the handshake with a generic `handshake_failure` alert.
    HandshakeRefused,
    /// What came back is not valid TLS (a plain-HTTP port, most often).
    NotTls,
    /// Any other TLS failure.
    Other,
}

impl TlsReason {
    /// The reason in words, as reports print it.
    pub fn words(self) -> &'static str {
        match self {
            TlsReason::UnknownCa => "unknown CA",
            TlsReason::NameMismatch => "name mismatch",
            TlsReason::Expired => "certificate expired",
            TlsReason::NotYetValid => "certificate not yet valid",
            TlsReason::BadCertificate => "certificate refused",
            TlsReason::NoSharedProtocol => "no shared protocol",
            TlsReason::ClientCertRefused => "client certificate refused",
            TlsReason::HandshakeRefused => "handshake refused by the peer",
            TlsReason::NotTls => "not TLS: the peer's answer is not valid TLS",
            TlsReason::Other => "TLS error",
        }
    }
}

impl fmt::Display for TlsReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}

/// The TLS reason behind `e`, if anywhere in its chain of causes there is a rustls error
/// (directly, or inside an `io::Error` as tokio-rustls wraps it), with rustls' own message.
pub fn classify(e: &(dyn std::error::Error + 'static)) -> Option<(TlsReason, String)> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some((reason_of(t), t.to_string()));
        }
        // `io::Error::source` skips the error it wraps, so that one is looked at here.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(found) = classify(inner) {
                return Some(found);
            }
        }
        cur = err.source();
    }
    None
}

fn reason_of(e: &rustls::Error) -> TlsReason {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => TlsReason::UnknownCa,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsReason::NameMismatch,
            C::Expired | C::ExpiredContext { .. } => TlsReason::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => TlsReason::NotYetValid,
            _ => TlsReason::BadCertificate,
        },
        E::AlertReceived(a) => match a {
            A::BadCertificate
            | A::CertificateRequired
            | A::UnknownCA
            | A::AccessDenied
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown => TlsReason::ClientCertRefused,
            A::ProtocolVersion
            | A::NoApplicationProtocol
            | A::InsufficientSecurity
            | A::IllegalParameter => TlsReason::NoSharedProtocol,
            A::HandshakeFailure => TlsReason::HandshakeRefused,
            _ => TlsReason::Other,
        },
        E::PeerIncompatible(_) | E::NoApplicationProtocol => TlsReason::NoSharedProtocol,
        E::InvalidMessage(_) => TlsReason::NotTls,
        _ => TlsReason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, CertificateError, Error};

    #[test]
    fn rustls_errors_are_named_inside_io_errors_too() {
        let cases = [
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                TlsReason::UnknownCa,
            ),
            (
                Error::InvalidCertificate(CertificateError::NotValidForName),
                TlsReason::NameMismatch,
            ),
            (
                Error::InvalidCertificate(CertificateError::Expired),
                TlsReason::Expired,
            ),
            (
                Error::AlertReceived(AlertDescription::CertificateRequired),
                TlsReason::ClientCertRefused,
            ),
            (
                Error::AlertReceived(AlertDescription::NoApplicationProtocol),
                TlsReason::NoSharedProtocol,
            ),
            (
                Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                TlsReason::NotTls,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(classify(&e).map(|c| c.0), Some(want), "{e}");
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e.clone());
            assert_eq!(classify(&io).map(|c| c.0), Some(want), "{e}");
        }
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&plain), None);
    }
}
