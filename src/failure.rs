//! One classification of a peer that failed an exchange, for both sides that talk to one:
//! replay (a target gave no usable answer, [`crate::compare::FetchErrorKind`]) and the tap
//! (production did not answer, `tap::upstream::UpstreamError`). Both ask the same question
//! of the same client stack, so the answer is worked out once. A TLS failure anywhere in
//! the chain of causes is named by its reason ([`crate::tls::TlsReason`]).

/// How a peer failed, as far as the error of the HTTP client stack tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// TLS failed, for this reason (in the handshake, or an alert in place of an answer).
    Tls(crate::tls::TlsReason),
    /// No connection could be made.
    Connect,
    /// The connection broke before the answer was complete.
    Reset,
    /// The answer was not valid HTTP.
    Malformed,
}

/// The failure behind an error of hyper-util's client, and its message.
pub fn of_client_error(e: &hyper_util::client::legacy::Error) -> (Failure, String) {
    if let Some(found) = of_tls(e) {
        return found;
    }
    if e.is_connect() {
        return (Failure::Connect, error_chain(e));
    }
    of_error(e)
}

/// The failure behind any error of the client stack, and its message: malformed when hyper
/// could not parse what the peer sent, anywhere in the chain of causes; else a broken
/// connection.
pub fn of_error(e: &(dyn std::error::Error + 'static)) -> (Failure, String) {
    if let Some(found) = of_tls(e) {
        return found;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return (Failure::Malformed, error_chain(e));
            }
        }
        cur = err.source();
    }
    (Failure::Reset, error_chain(e))
}

/// The TLS failure behind `e`, if TLS is what failed.
fn of_tls(e: &(dyn std::error::Error + 'static)) -> Option<(Failure, String)> {
    let (reason, detail) = crate::tls::classify(e)?;
    Some((Failure::Tls(reason), format!("TLS: {reason} ({detail})")))
}

/// An error with its sources, each said once: `client error: connection reset by peer`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let m = err.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = err.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_broken_connection_is_reset_and_its_causes_are_each_said_once() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        ));
        assert_eq!(
            of_error(&e),
            (
                Failure::Reset,
                "client error: connection reset by peer".to_string()
            )
        );
    }

    #[tokio::test]
    async fn an_answer_that_is_not_http_is_malformed_for_replay_and_tap_alike() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
        });
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let e = client
            .get(format!("http://{addr}/").parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(of_client_error(&e).0, Failure::Malformed);
        // Nothing listens: a connect failure.
        let e = client
            .get("http://127.0.0.1:1/".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(of_client_error(&e).0, Failure::Connect);
    }
}
