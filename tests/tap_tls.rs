//! The tap terminating TLS, as a real process: curl (HTTP/1.1 and h2 by ALPN) and wrk over
//! TLS through it to plain and to https nginx, the recording complete and noting scheme and
//! protocol; gRPC over TLS; the live shadow to an https candidate; a certificate replaced on
//! SIGHUP while a kept connection stays open; clients that never finish a handshake, and
//! bytes that are no handshake at all, from raw sockets.

use crate::tap::{
    assert_timed_out, curl, metric_sum, read_recordings, until, StopLine, TapProc, Wrk, NGINX_API,
};
use crate::util::*;
use rustls::pki_types::{CertificateDer, ServerName};
use shadowdiff::exchange::Tls;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A certificate authority made for one test, and the files of what it signs.
pub(crate) struct TestCa {
    pub(crate) dir: PathBuf,
    /// The authority's own certificate, PEM (what a client trusts).
    pub(crate) cert: PathBuf,
    der: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new authority named `name`, its files in `dir`.
    pub(crate) fn new(dir: &Path, name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        TestCa {
            dir: dir.to_path_buf(),
            cert: path,
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 signed by this authority, written
    /// as `name.crt` and `name.key`; returns the two paths and the certificate's DER.
    pub(crate) fn server(&self, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().clone())
    }

    /// A client certificate named `name` signed by this authority, written as `name.crt`
    /// and `name.key`.
    pub(crate) fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// A client configuration trusting this authority alone, offering `alpn`.
    pub(crate) fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }
}

/// A TLS connection to `addr` as `localhost`, trusting what `config` trusts.
async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One HTTP/1.1 GET on a kept TLS connection; the answer's status and body, framed by its
/// content-length.
async fn get_on(s: &mut TlsStream<TcpStream>, path: &str) -> (u16, String) {
    send_on(
        s,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    )
    .await
}

/// `request` as it is, on a TLS connection; the answer's status and body, framed by its
/// content-length.
async fn send_on(s: &mut TlsStream<TcpStream>, request: &str) -> (u16, String) {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a content-length");
            if body.len() >= len {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                return (status, body[..len].to_string());
            }
        }
    }
}

/// The tap with a TLS listener in front of `upstream`, its metrics served.
fn tls_tap(cert: &Path, key: &Path, upstream: &str, out: &Path, extra: &[&str]) -> TapProc {
    let mut args = vec![
        "--upstream",
        upstream,
        "--out",
        out.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    TapProc::start(&args)
}

fn https(tap: &TapProc) -> String {
    format!("https://localhost:{}", tap.addr.port())
}

/// curl with the test CA through the TLS tap to plain nginx, HTTP/1.1 and h2 by ALPN, then
/// wrk over TLS stopped mid-run by SIGTERM: every exchange proxied is recorded (none
/// sampled out or dropped), the file holds as many, wrk read as many answers, and each
/// exchange notes `https` and what ALPN agreed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_wrk_over_tls_through_the_tap_are_recorded_whole() {
    let Some(nginx) = nginx_binary() else { return };
    let Some(wrk) = wrk_binary() else { return };
    let gw = Nginx::start(&nginx, NGINX_API);
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "a");
    let (cert, key, _) = ca.server("tap");
    let out = dir.path().join("tls.jsonl.zst");
    let tap = tls_tap(
        &cert,
        &key,
        &gw.url(),
        &out,
        &["--shutdown-grace", "5s", "--queue-size", "1000000"],
    );
    let (url, ca_file) = (https(&tap), ca.cert.display().to_string());
    let seen = tokio::task::spawn_blocking(move || {
        let with_ca = |extra: &[&str], path: &str| {
            let mut args = vec!["--cacert", ca_file.as_str()];
            args.extend_from_slice(extra);
            let target = format!("{url}{path}");
            args.push(&target);
            curl(&args)
        };
        vec![
            with_ca(&["--http1.1"], "/api/users/1"),
            with_ca(&["--http2"], "/api/users/2"),
            with_ca(
                &[
                    "--http2",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    "{}",
                ],
                "/api/orders",
            ),
            with_ca(&["--http1.1", "-d", "{}"], "/api/orders"),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        seen,
        [
            "{\"id\":1,\"name\":\"user 1\"}\n200",
            "{\"id\":2,\"name\":\"user 2\"}\n200",
            "{\"created\":true}\n201",
            "{\"created\":true}\n201",
        ]
    );
    // Without the authority, curl refuses the tap's certificate: it is the one served.
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            &format!("{}/api/users/1", https(&tap)),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(60), "curl without --cacert: {o:?}");

    let load = Wrk::start(&wrk, &format!("{}/api/users/7", https(&tap)), 60);
    until("load to flow", || async {
        tap.metric("shadowdiff_tap_proxied_total").await >= 304
    })
    .await;
    let metrics = tap.metrics_text().await;
    let handshakes = "shadowdiff_tap_tls_handshakes_total{result=\"completed\"}";
    // curl's four with the authority and wrk's sixteen (curl's fifth, without it, and
    // wrk's probe of the address before it starts are failed handshakes).
    assert!(
        crate::tap::metric_in(&metrics, handshakes) >= 20,
        "{metrics}"
    );
    let err = tap.stop_async().await;
    let wrk = tokio::task::spawn_blocking(move || load.stop())
        .await
        .unwrap();
    let stop = StopLine::of(&err);
    let line = &stop.line;
    assert!(stop.proxied >= 304, "{line}");
    assert_eq!((stop.sampled_out, stop.dropped), (0, 0), "{line}");
    assert_eq!(stop.recorded, stop.proxied, "{line}");
    let got = read_recordings(std::slice::from_ref(&out));
    assert_eq!(got.len() as u64, stop.proxied, "{line}");
    assert_eq!(wrk.timeouts, 0, "{}", wrk.text);
    assert_eq!(wrk.non_2xx, 0, "{}", wrk.text);
    assert_eq!(wrk.requests + 4, stop.proxied, "{line}\n{}", wrk.text);

    let alpn = |a: &str| {
        Some(Tls {
            alpn: Some(a.to_string()),
        })
    };
    let first: Vec<_> = got[..4]
        .iter()
        .map(|e| {
            (
                e.request.uri.as_str(),
                e.request.version.as_str(),
                e.request.tls.clone(),
            )
        })
        .collect();
    assert_eq!(
        first,
        [
            ("/api/users/1", "HTTP/1.1", alpn("http/1.1")),
            ("/api/users/2", "HTTP/2", alpn("h2")),
            ("/api/orders", "HTTP/2", alpn("h2")),
            ("/api/orders", "HTTP/1.1", alpn("http/1.1")),
        ]
    );
    assert_eq!(&got[3].request.body[..], b"{}");
    for e in &got[4..] {
        // wrk offers no ALPN: TLS, and no protocol agreed on.
        assert_eq!(e.request.tls, Some(Tls { alpn: None }), "{}", e.id);
        let r = e.response.as_ref().unwrap();
        assert_eq!(
            (r.status, &r.body[..]),
            (200, &br#"{"id":7,"name":"user 7"}"#[..])
        );
    }
}

/// SIGHUP with a new certificate (from another authority) in the files: a connection made
/// after it is served the new certificate, one kept open from before goes on working, and
/// a reload whose key does not match keeps the certificate in use and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_new_certificate_to_new_connections_and_keeps_open_ones() {
    let upstream = TestServer::start(|s: Seen| {
        Answer::json(200, format!("{{\"p\":\"{}\"}}", s.path_and_query))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (
        TestCa::new(dir.path(), "old"),
        TestCa::new(dir.path(), "new"),
    );
    let (cert, key, old_der) = old_ca.server("tap");
    let out = dir.path().join("r.jsonl");
    let tap = tls_tap(&cert, &key, &upstream.url(), &out, &[]);
    let old_client = old_ca.client_config(&[b"http/1.1"]);
    let mut kept = tls_connect(tap.addr, old_client.clone()).await.unwrap();
    assert_eq!(kept.get_ref().1.peer_certificates().unwrap()[0], old_der);
    assert_eq!(
        get_on(&mut kept, "/before").await,
        (200, "{\"p\":\"/before\"}".into())
    );

    let (new_cert, new_key, new_der) = new_ca.server("tap-next");
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    let hup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    hup(tap.pid());
    let reloads = |r: &str| format!("shadowdiff_tap_tls_reloads_total{{result=\"{r}\"}}");
    until("the reload", || async {
        tap.metric(&reloads("done")).await == 1
    })
    .await;

    // A new connection is served the new certificate: a client trusting only the old
    // authority refuses it, one trusting the new accepts it.
    let refused = tls_connect(tap.addr, old_client).await;
    let e = match refused {
        Ok(_) => panic!("the old authority still vouches for the tap"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    let mut fresh = tls_connect(tap.addr, new_ca.client_config(&[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(fresh.get_ref().1.peer_certificates().unwrap()[0], new_der);
    assert_eq!(
        get_on(&mut fresh, "/new").await,
        (200, "{\"p\":\"/new\"}".into())
    );
    // The connection from before the reload was not dropped.
    assert_eq!(
        get_on(&mut kept, "/after").await,
        (200, "{\"p\":\"/after\"}".into())
    );

    // A key that is not the certificate's: the reload fails, the new certificate stays.
    let (_, other_key, _) = new_ca.server("unrelated");
    std::fs::copy(&other_key, &key).unwrap();
    hup(tap.pid());
    until("the failed reload", || async {
        tap.metric(&reloads("failed")).await == 1
    })
    .await;
    let mut again = tls_connect(tap.addr, new_ca.client_config(&[]))
        .await
        .unwrap();
    assert_eq!(again.get_ref().1.peer_certificates().unwrap()[0], new_der);
    assert_eq!(get_on(&mut again, "/still").await.0, 200);
    drop((kept, fresh, again));
    let err = tap.stop_async().await;
    assert!(err.contains("the certificate in use is kept"), "{err}");
    assert!(err.contains("4 recorded"), "{err}");
}

/// A ClientHello as a real client sends it, offering `alpn`: the first flight of a rustls
/// client.
fn client_hello(alpn: &[&[u8]]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let config = TestCa::new(dir.path(), "hello").client_config(alpn);
    let mut c =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut hello).unwrap();
    }
    assert_eq!(&hello[..2], [0x16, 0x03]);
    hello
}

/// Clients that open TCP and never finish a handshake (silent, or a ClientHello cut off
/// midway and left hanging) are closed after `--head-timeout` and counted as `handshake`
/// timeouts; one that finishes it and sends no request is closed as a `head` timeout; a
/// client that asks at once still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_that_never_finish_are_timed_out_and_counted() {
    let upstream = TestServer::start(|_| Answer::json(200, "{}")).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "a");
    let (cert, key, _) = ca.server("tap");
    let out = dir.path().join("r.jsonl");
    let tap = tls_tap(
        &cert,
        &key,
        &upstream.url(),
        &out,
        &["--head-timeout", "300ms"],
    );
    let hello = client_hello(&[b"h2"]);
    let mut silent = TcpStream::connect(tap.addr).await.unwrap();
    let mut halfway = TcpStream::connect(tap.addr).await.unwrap();
    halfway.write_all(&hello[..hello.len() / 2]).await.unwrap();
    for (what, s) in [("silent", &mut silent), ("halfway", &mut halfway)] {
        let mut buf = Vec::new();
        // The bound only stops a hang: the tap closes these after 300 ms.
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "{what}: still open");
        assert!(buf.is_empty(), "{what}: got {buf:?}");
    }
    assert_timed_out(&tap, "handshake", 2, "head").await;
    let text = tap.metrics_text().await;
    assert_eq!(
        metric_sum(&text, "shadowdiff_tap_tls_handshakes_total"),
        0,
        "{text}"
    );
    let mut s = tls_connect(tap.addr, ca.client_config(&[])).await.unwrap();
    assert_eq!(get_on(&mut s, "/ok").await, (200, "{}".into()));
    drop(s);
    let err = tap.stop_async().await;
    assert!(err.contains("1 recorded"), "{err}");
}

/// Bytes that are no TLS handshake, from a raw socket: plain HTTP, a ClientHello cut short
/// by the client's close, a record header announcing more than TLS allows, another record
/// type, an SSLv2 hello, random bytes, a ClientHello with its body scrambled, one offering
/// only protocols the tap does not speak and leaving. Each is refused (closed with nothing
/// but TLS records sent back), counted as a failed handshake, and the tap serves the next
/// client as before; inside TLS its refusals (CONNECT, credentials, another host) hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_instead_of_a_client_hello_are_refused_and_counted() {
    let upstream = TestServer::start(|_| Answer::json(200, "{}")).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "a");
    let (cert, key, _) = ca.server("tap");
    let out = dir.path().join("r.jsonl");
    let tap = tls_tap(&cert, &key, &upstream.url(), &out, &[]);
    let hello = client_hello(&[b"h2"]);
    let mut scrambled = hello.clone();
    for (i, b) in scrambled.iter_mut().enumerate().skip(9) {
        *b ^= (i as u8).wrapping_mul(31) | 1;
    }
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        (
            "plain HTTP",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        ("cut ClientHello", hello[..hello.len() / 2].to_vec()),
        ("record header alone", hello[..5].to_vec()),
        (
            "oversized record",
            vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00],
        ),
        (
            "alert record",
            vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
        ),
        (
            "SSLv2 hello",
            vec![0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00],
        ),
        (
            "random bytes",
            (0..=255u8).rev().cycle().take(2000).collect(),
        ),
        ("scrambled ClientHello", scrambled),
        (
            "no protocol in common",
            client_hello(&[b"spdy/3", b"gopher"]),
        ),
        (
            "the HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
    ];
    let n = garbage.len() as u64;
    for (what, bytes) in &garbage {
        let mut s = TcpStream::connect(tap.addr).await.unwrap();
        let _ = s.write_all(bytes).await;
        // Half-closed: no more is coming, so a parser waiting for the rest sees the end.
        let _ = s.shutdown().await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "{what}: the tap still holds the connection");
        // Nothing but TLS records comes back (an alert, or the tap's side of a handshake
        // the client then left): never an HTTP answer.
        assert!(
            buf.is_empty() || matches!(buf[0], 0x15 | 0x16),
            "{what}: got {buf:?}"
        );
    }
    let failed = "shadowdiff_tap_tls_handshakes_total{result=\"failed\"}";
    until(&format!("{n} failed handshakes"), || async {
        tap.metric(failed).await == n
    })
    .await;
    let s = tls_connect(tap.addr, ca.client_config(&[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(s);
    let mut s = tls_connect(tap.addr, ca.client_config(&[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(get_on(&mut s, "/ok").await, (200, "{}".into()));
    drop(s);
    // Inside TLS, the tap's own refusals hold as on plain connections.
    for (request, status, reason) in [
        (
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            405,
            "connect",
        ),
        (
            "GET / HTTP/1.1\r\nHost: user:pw@localhost\r\n\r\n",
            400,
            "userinfo",
        ),
        (
            "GET http://elsewhere/ HTTP/1.1\r\nHost: elsewhere\r\n\r\n",
            421,
            "foreign_host",
        ),
    ] {
        let mut s = tls_connect(tap.addr, ca.client_config(&[b"http/1.1"]))
            .await
            .unwrap();
        assert_eq!(send_on(&mut s, request).await.0, status, "{request:?}");
        let series = format!("shadowdiff_tap_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(tap.metric(&series).await, 1, "{reason}");
    }
    let text = tap.metrics_text().await;
    assert_eq!(
        crate::tap::metric_in(&text, "shadowdiff_tap_proxied_total"),
        1,
        "{text}"
    );
    assert_eq!(
        metric_sum(&text, "shadowdiff_tap_timed_out_total"),
        0,
        "{text}"
    );
    let err = tap.stop_async().await;
    assert!(err.contains("1 recorded"), "{err}");
}

/// Certificate and key files that cannot serve are refused at start, naming the flag and
/// the file, before a recording is created; either flag alone is refused by the parser.
#[test]
fn unusable_certificate_files_are_refused_before_anything_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "a");
    let (cert, key, _) = ca.server("tap");
    let (_, other_key, _) = ca.server("other");
    let out = dir.path().join("r.jsonl");
    let missing = dir.path().join("missing.pem");
    for (c, k, says) in [
        (&missing, &key, "--tls-cert"),
        (&cert, &missing, "--tls-key"),
        (&key, &key, "no certificate found"),
        (&cert, &cert, "no private key found"),
        (&cert, &other_key, "the certificate's own"),
    ] {
        let o = shadowdiff(&[
            "tap",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
            "--out",
            out.to_str().unwrap(),
            "--tls-cert",
            c.to_str().unwrap(),
            "--tls-key",
            k.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{says}: {err}");
        assert!(!out.exists() && !dir.path().join("r.jsonl.partial").exists());
    }
    let o = shadowdiff(&[
        "tap",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9",
        "--out",
        out.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tls-key"));
}

/// The TLS tap in front of nginx serving https (and asking for a client certificate):
/// curl over HTTP/1.1 and h2 and wrk through it, each request going to nginx over TLS with
/// the tap's client certificate, the recording complete. Without the authority the tap
/// answers 502 and counts a TLS failure; with `--insecure` it goes through unverified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tap_in_front_of_https_nginx_speaks_tls_both_ways_and_records_whole() {
    let Some(nginx) = nginx_binary() else { return };
    let Some(wrk) = wrk_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "a");
    let (gw_cert, gw_key, _) = ca.server("gw");
    let (tap_cert, tap_key, _) = ca.server("tap");
    let (client_cert, client_key) = ca.client("tap-client");
    let gw = Nginx::start_listen(
        &nginx,
        "ssl",
        &format!(
            "    ssl_certificate {};\n    ssl_certificate_key {};\n    \
             ssl_client_certificate {};\n    ssl_verify_client optional;\n    \
             location = /whoami {{ return 200 '{{\"dn\":\"$ssl_client_s_dn\",\"verify\":\"$ssl_client_verify\"}}'; }}\n{NGINX_API}",
            gw_cert.display(),
            gw_key.display(),
            ca.cert.display()
        ),
    );
    let out = dir.path().join("tls.jsonl");
    let ca_file = ca.cert.to_str().unwrap().to_string();
    let tap = tls_tap(
        &tap_cert,
        &tap_key,
        &gw.https_url(),
        &out,
        &[
            "--ca-cert",
            &ca_file,
            "--client-cert",
            client_cert.to_str().unwrap(),
            "--client-key",
            client_key.to_str().unwrap(),
            "--queue-size",
            "1000000",
        ],
    );
    let url = https(&tap);
    let curled = {
        let (url, ca_file) = (url.clone(), ca_file.clone());
        tokio::task::spawn_blocking(move || {
            ["--http1.1", "--http2", "--http2"]
                .iter()
                .zip(["/whoami", "/api/users/3", "/whoami"])
                .map(|(v, path)| curl(&["--cacert", &ca_file, v, &format!("{url}{path}")]))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
    };
    let whoami = "{\"dn\":\"CN=tap-client\",\"verify\":\"SUCCESS\"}\n200";
    assert_eq!(
        curled,
        [whoami, "{\"id\":3,\"name\":\"user 3\"}\n200", whoami]
    );
    let load = Wrk::start(&wrk, &format!("{url}/api/users/5"), 60);
    until("load to flow", || async {
        tap.metric("shadowdiff_tap_proxied_total").await >= 203
    })
    .await;
    let wrk = tokio::task::spawn_blocking(move || load.stop())
        .await
        .unwrap();
    assert_eq!((wrk.timeouts, wrk.non_2xx), (0, 0), "{}", wrk.text);
    let text = tap.metrics_text().await;
    assert_eq!(
        metric_sum(&text, "shadowdiff_tap_upstream_errors_total"),
        0,
        "{text}"
    );
    let err = tap.stop_async().await;
    let stop = StopLine::of(&err);
    assert_eq!(stop.recorded, stop.proxied, "{}", stop.line);
    assert_eq!((stop.sampled_out, stop.dropped), (0, 0), "{}", stop.line);
    let got = read_recordings(std::slice::from_ref(&out));
    assert_eq!(got.len() as u64, stop.proxied, "{}", stop.line);
    // wrk stopped with requests of its own in flight, which the tap still answered.
    assert!(
        wrk.requests + 3 <= stop.proxied && stop.proxied <= wrk.requests + 3 + 16,
        "{}\n{}",
        stop.line,
        wrk.text
    );
    assert!(got.iter().all(|e| e.request.tls.is_some()));
    assert!(got[3..]
        .iter()
        .all(|e| e.response.as_ref().unwrap().status == 200));

    // No authority to check nginx's certificate by: 502, counted as a TLS failure.
    let out2 = dir.path().join("refused.jsonl");
    let tap = tls_tap(&tap_cert, &tap_key, &gw.https_url(), &out2, &[]);
    let (url, ca2) = (https(&tap), ca_file.clone());
    let refused = tokio::task::spawn_blocking(move || {
        curl(&["--cacert", &ca2, &format!("{url}/api/users/3")])
    })
    .await
    .unwrap();
    assert_eq!(refused, "bad gateway\n\n502");
    assert_eq!(
        tap.metric("shadowdiff_tap_upstream_errors_total{kind=\"tls\"}")
            .await,
        1
    );
    tap.stop_async().await;
    let got = read_recordings(std::slice::from_ref(&out2));
    assert_eq!(got[0].response.as_ref().unwrap().status, 502);

    // --insecure: no verification; nginx sees no client certificate.
    let out3 = dir.path().join("insecure.jsonl");
    let tap = tls_tap(&tap_cert, &tap_key, &gw.https_url(), &out3, &["--insecure"]);
    let url = https(&tap);
    let answer = tokio::task::spawn_blocking(move || {
        curl(&["--cacert", &ca_file, &format!("{url}/whoami")])
    })
    .await
    .unwrap();
    assert_eq!(answer, "{\"dn\":\"\",\"verify\":\"NONE\"}\n200");
    tap.stop_async().await;
}

/// gRPC over TLS: a client that agrees on h2 by ALPN sends a streaming call through the
/// TLS tap to an h2c gRPC server; the messages and the `grpc-status` trailers come through,
/// and the exchange is recorded with its trailers, as HTTP/2 over `https` with ALPN `h2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_streams_through_with_trailers_and_is_recorded() {
    use http_body_util::{BodyExt, Full};
    let go = Arc::new(tokio::sync::Notify::new());
    go.notify_one();
    let (addr, server) = crate::tap::grpc_server(go).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "a");
    let (cert, key, _) = ca.server("tap");
    let out = dir.path().join("grpc.jsonl");
    let tap = tls_tap(&cert, &key, &format!("http://{addr}"), &out, &[]);
    let tls = tls_connect(tap.addr, ca.client_config(&[b"h2"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "https://localhost:{}/demo.Greeter/Stream",
            tap.addr.port()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(crate::tap::grpc_frame(b"tls")))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut data, mut trailers) = (Vec::new(), None);
    while let Some(f) = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the call ends")
    {
        let f = f.unwrap();
        if let Some(d) = f.data_ref() {
            data.extend_from_slice(d);
        } else {
            trailers = f.into_trailers().ok();
        }
    }
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    let mut want = crate::tap::grpc_frame(b"hello tls").to_vec();
    want.extend_from_slice(&crate::tap::grpc_frame(b"second"));
    want.extend_from_slice(&crate::tap::grpc_frame(b"third"));
    assert_eq!(data, want);
    drop(send);
    tap.stop_async().await;
    server.abort();
    let got = read_recordings(std::slice::from_ref(&out));
    assert_eq!(got.len(), 1);
    let e = &got[0];
    assert_eq!(
        (e.request.version.as_str(), e.request.tls.clone()),
        (
            "HTTP/2",
            Some(Tls {
                alpn: Some("h2".into())
            })
        )
    );
    let r = e.response.as_ref().unwrap();
    assert_eq!(&r.body[..], &want[..]);
    assert!(r
        .trailers
        .as_ref()
        .unwrap()
        .contains(&("grpc-status".to_string(), "0".to_string())));
}

/// The live shadow over TLS: the TLS tap in front of https nginx sends a copy of every
/// request to an https candidate whose certificate comes from another authority
/// (`--shadow-tls ca-cert=...`), which changes one answer: the shadow judges that one
/// different and the others identical. A candidate whose authority the tap was not given
/// is a candidate error, never a false difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_shadow_compares_with_an_https_candidate() {
    let Some(nginx) = nginx_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (prod_ca, cand_ca) = (
        TestCa::new(dir.path(), "prod"),
        TestCa::new(dir.path(), "cand"),
    );
    let https_nginx = |ca: &TestCa, name: &str, api: &str| {
        let (cert, key, _) = ca.server(name);
        Nginx::start_listen(
            &nginx,
            "ssl",
            &format!(
                "    ssl_certificate {};\n    ssl_certificate_key {};\n{api}",
                cert.display(),
                key.display()
            ),
        )
    };
    let prod = https_nginx(&prod_ca, "prod", NGINX_API);
    let changed = NGINX_API.replace(
        "location ~ ^/api/users/(\\d+)$",
        "location = /api/users/2 { return 200 '{\"id\":2,\"name\":\"USER 2\"}'; }\n    location ~ ^/api/users/(\\d+)$",
    );
    let cand = https_nginx(&cand_ca, "cand", &changed);
    let (cert, key, _) = prod_ca.server("tap");
    let prod_ca_file = prod_ca.cert.to_str().unwrap().to_string();
    let cand_setting = format!("ca-cert={}", cand_ca.cert.display());
    let shadowed = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "--ca-cert",
            prod_ca_file.as_str(),
            "--shadow-sample",
            "1",
            "--shadow-noise-sample",
            "0",
        ];
        args.extend_from_slice(extra);
        let shadow = cand.https_url();
        let mut all: Vec<&str> = vec!["--shadow", shadow.as_str()];
        all.extend_from_slice(&args);
        tls_tap(&cert, &key, &prod.https_url(), out, &all)
    };
    let judged = |o: &str| format!("shadowdiff_tap_shadow_judged_total{{outcome=\"{o}\"}}");
    let ask = |tap: &TapProc| {
        let (url, ca) = (https(tap), prod_ca_file.clone());
        tokio::task::spawn_blocking(move || {
            (1..=3)
                .map(|i| curl(&["--cacert", &ca, &format!("{url}/api/users/{i}")]))
                .collect::<Vec<_>>()
        })
    };

    let tap = shadowed(
        &dir.path().join("a.jsonl"),
        &["--shadow-tls", &cand_setting],
    );
    let answers = ask(&tap).await.unwrap();
    assert_eq!(answers[1], "{\"id\":2,\"name\":\"user 2\"}\n200");
    until("three judged", || async {
        metric_sum(
            &tap.metrics_text().await,
            "shadowdiff_tap_shadow_judged_total",
        ) == 3
    })
    .await;
    assert_eq!(
        (
            tap.metric(&judged("identical")).await,
            tap.metric(&judged("different")).await
        ),
        (2, 1)
    );
    tap.stop_async().await;

    // Without the candidate's authority: its TLS fails, and that is the candidate's error.
    let tap = shadowed(&dir.path().join("b.jsonl"), &[]);
    ask(&tap).await.unwrap();
    until("three judged", || async {
        metric_sum(
            &tap.metrics_text().await,
            "shadowdiff_tap_shadow_judged_total",
        ) == 3
    })
    .await;
    assert_eq!(tap.metric(&judged("candidate_error")).await, 3);
    tap.stop_async().await;
}
