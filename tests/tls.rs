//! Replay to `https://` targets: nginx serving TLS with certificates made at test time,
//! over HTTP/1.1 and HTTP/2 (chosen by ALPN); haproxy requiring a client certificate;
//! certificates that are expired, for another name or from an unknown CA, each named at
//! preflight with exit 3; `--insecure` passing and warning in every report; and hostile
//! peers (not TLS, cut handshakes, garbage after the handshake) from raw sockets.

use crate::util::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every price and the protocol the answer came over, as nginx saw it.
fn items(price: &str) -> String {
    format!(
        r#"    location ~ ^/api/items/(\d+)$ {{ return 200 '{{"id":$1,"price":{price},"proto":"$server_protocol"}}'; }}
    location = /ready {{ return 200 'ok'; }}"#
    )
}

/// An nginx serving `body` over TLS with the certificate `cert`; `h2` offers HTTP/2 too.
fn tls_nginx(bin: &std::path::Path, pki: &Pki, cert: &str, h2: bool, body: &str) -> Nginx {
    let listen = if h2 { "ssl http2" } else { "ssl" };
    Nginx::start_listen(bin, listen, &format!("{}{body}", pki.nginx_tls(cert)))
}

fn rec(dir: &std::path::Path, n: i64) -> std::path::PathBuf {
    write_recording(&dir.join("rec.jsonl"), &numbered_gets(n, "/api/items"))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_a_a_passes_and_a_difference_is_found_over_http1_and_h2() {
    let Some(bin) = nginx_binary() else { return };
    let pki = Pki::new();
    let h1 = tls_nginx(&bin, &pki, "server", false, &items("10.5"));
    let h2 = tls_nginx(&bin, &pki, "server", true, &items("11.0"));
    let dir = tempfile::tempdir().unwrap();
    let rec = rec(dir.path(), 40);
    let ca = pki.path("ca.pem");

    // A/A over HTTP/1.1, with the readiness poll over TLS too.
    let json = dir.path().join("aa.json");
    let (o, r) = replay_json(
        &rec,
        &h1.https_url(),
        &h1.https_url(),
        &json,
        &[
            "--ca-cert",
            &ca,
            "--wait-ready",
            "/ready",
            "--concurrency",
            "4",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_valid_result(&r);
    assert_eq!(r["summary"]["identical"], 40, "{:#}", r["summary"]);
    assert_eq!(r["verdict"], "pass");
    // Connections were opened and their setup (with the handshake) counted apart; with
    // keep-alive, far fewer than the 80 requests each side sent.
    for side in ["baseline", "candidate"] {
        let c = &r["run"]["connections"][side];
        let opened = c["opened"].as_u64().unwrap();
        assert!((1..40).contains(&opened), "{side}: {c}");
        assert!(c["setup_us_max"].as_u64().unwrap() > 0, "{c}");
        assert!(c["setup_us_total"].as_u64() >= c["setup_us_max"].as_u64());
    }
    assert!(r["run"]["warnings"].as_array().unwrap().is_empty());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("candidate:") && out.contains("setup (connect and TLS handshake)"),
        "{out}"
    );

    // HTTP/1.1 against HTTP/2 (nginx offers h2 and ALPN takes it) with a changed price; the
    // noise probe goes to the baseline's nginx by its name, over TLS settings of its own.
    let json = dir.path().join("diff.json");
    let secondary = format!("https://localhost:{}", h1.port);
    let (o, r) = replay_json(
        &rec,
        &h1.https_url(),
        &h2.https_url(),
        &json,
        &[
            "--ca-cert",
            &pki.path("stranger.pem"),
            "--baseline-tls",
            &format!("ca-cert={ca}"),
            "--candidate-tls",
            &format!("ca-cert={ca}"),
            "--secondary",
            &secondary,
            "--secondary-tls",
            &format!("ca-cert={ca}"),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let i = interface(&r, "GET /api/items/{id}");
    assert_eq!(i["different"], 40, "{i:#}");
    assert_eq!(i["noise_samples"]["secondary"], 40, "{i:#}");
    assert!(r["run"]["connections"]["secondary"]["opened"].as_u64() > Some(0));
    let fields = i["fields"].as_array().unwrap();
    let at = |path: &str| {
        fields
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in {i:#}"))
    };
    assert_eq!(at("$.price")["example"]["candidate"], "11.0");
    assert_eq!(at("$.proto")["example"]["baseline"], "\"HTTP/1.1\"");
    assert_eq!(at("$.proto")["example"]["candidate"], "\"HTTP/2.0\"");
    assert_eq!(fields.len(), 2, "{i:#}");

    // `show` replays one exchange to both over TLS.
    let o = shadowdiff(&[
        "show",
        rec.to_str().unwrap(),
        "--id",
        "e3",
        "--baseline",
        &h1.https_url(),
        "--candidate",
        &h2.https_url(),
        "--ca-cert",
        &ca,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("HTTP/2.0") && out.contains("11.0"),
        "{}",
        describe(&o)
    );
    // The command that sends it again trusts the same CA.
    assert!(
        out.contains(&format!("curl -sS -i --globoff --path-as-is --cacert {ca}")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_named_at_preflight_and_exit_3() {
    let Some(bin) = nginx_binary() else { return };
    let pki = Pki::new();
    let good = tls_nginx(&bin, &pki, "server", true, &items("1"));
    let dir = tempfile::tempdir().unwrap();
    let rec = rec(dir.path(), 3);
    let ca = pki.path("ca.pem");
    for (cert, reason) in [
        ("expired", "certificate expired"),
        ("wrong", "name mismatch"),
        ("unknown", "unknown CA"),
    ] {
        let bad = tls_nginx(&bin, &pki, cert, false, &items("1"));
        let o = replay_run(
            &rec,
            &good.https_url(),
            &bad.https_url(),
            &[&"--ca-cert", &ca],
        )
        .await;
        assert_eq!(o.status.code(), Some(3), "{cert}: {}", describe(&o));
        let e = stderr(&o);
        assert!(
            e.contains("candidate target") && e.contains(reason),
            "{cert}: {e}"
        );
    }
    // Without the CA file even the good certificate is from an unknown CA (the platform's
    // roots do not know the test CA).
    let o = replay_run(&rec, &good.https_url(), &good.https_url(), &[]).await;
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert!(stderr(&o).contains("baseline target") && stderr(&o).contains("unknown CA"));

    // The certificate for another name passes when that name is asked for.
    let wrong = tls_nginx(&bin, &pki, "wrong", false, &items("1"));
    let json = dir.path().join("named.json");
    let (o, _) = replay_json(
        &rec,
        &good.https_url(),
        &wrong.https_url(),
        &json,
        &[
            "--ca-cert",
            &ca,
            "--candidate-tls",
            "server-name=other.example",
        ],
    )
    .await;
    // The price is the same; only the protocol differs (h2 against HTTP/1.1).
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_eq!(r["summary"]["candidate_error"], 0, "{:#}", r["summary"]);

    // A plain-HTTP port asked for TLS.
    let plain = Nginx::start(&bin, &items("1"));
    let url = format!("https://127.0.0.1:{}", plain.port);
    let o = replay_run(&rec, &good.https_url(), &url, &[&"--ca-cert", &ca]).await;
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert!(stderr(&o).contains("not valid TLS"), "{}", stderr(&o));

    // No protocol version in common: the server speaks only TLS 1.1.
    let old = Nginx::start_listen(
        &bin,
        "ssl",
        &format!(
            "{}    ssl_protocols TLSv1.1;\n    ssl_ciphers ALL:@SECLEVEL=0;\n{}",
            pki.nginx_tls("server"),
            items("1")
        ),
    );
    let o = replay_run(
        &rec,
        &good.https_url(),
        &old.https_url(),
        &[&"--ca-cert", &ca],
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert!(stderr(&o).contains("no shared protocol"), "{}", stderr(&o));

    // A CA file that is not one is a usage error naming the file.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not PEM").unwrap();
    let o = replay_run(
        &rec,
        &good.https_url(),
        &good.https_url(),
        &[&"--ca-cert", &junk.display()],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("junk.pem"), "{}", stderr(&o));
    let o = replay_run(
        &rec,
        &good.https_url(),
        &good.https_url(),
        &[&"--candidate-tls", &"cacert=x"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        stderr(&o).contains("--candidate-tls cacert=x"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_passes_an_expired_certificate_and_every_report_says_so() {
    let Some(bin) = nginx_binary() else { return };
    let pki = Pki::new();
    let expired = tls_nginx(&bin, &pki, "expired", false, &items("1"));
    let dir = tempfile::tempdir().unwrap();
    let rec = rec(dir.path(), 5);
    let out = |n: &str| dir.path().join(n).display().to_string();
    let (html, junit, md) = (out("r.html"), out("r.xml"), out("r.md"));
    let json = dir.path().join("r.json");
    let (o, r) = replay_json(
        &rec,
        &expired.https_url(),
        &expired.https_url(),
        &json,
        &[
            "--candidate-tls",
            "insecure",
            "--baseline-tls",
            "insecure=true",
            "--html",
            &html,
            "--junit",
            &junit,
            "--markdown",
            &md,
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(r["summary"]["identical"], 5);
    let said = "were not verified (--insecure)";
    let warnings = r["run"]["warnings"].to_string();
    assert!(
        warnings.contains(said) && warnings.contains("baseline") && warnings.contains("candidate"),
        "{warnings}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(said),
        "{}",
        describe(&o)
    );
    for f in [&html, &junit, &md] {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains(said), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_haproxy_requiring_a_client_certificate() {
    let Some(bin) = haproxy_binary() else { return };
    let pki = Pki::new();
    let bind = format!(
        "ssl crt {} ca-file {} verify required alpn h2,http/1.1",
        pki.path("server.both.pem"),
        pki.path("client-ca.pem")
    );
    let body = r#"  http-request return status 200 content-type application/json string "{\"ok\":true,\"cn\":\"%[ssl_c_s_dn(CN)]\"}""#;
    let gw = Haproxy::start_bind(&bin, &bind, body);
    let url = format!("https://127.0.0.1:{}", gw.port);
    let dir = tempfile::tempdir().unwrap();
    let rec = rec(dir.path(), 10);
    let ca = pki.path("ca.pem");
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));

    let json = dir.path().join("ok.json");
    let (o, r) = replay_json(
        &rec,
        &url,
        &url,
        &json,
        &[
            "--ca-cert",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(r["summary"]["identical"], 10, "{:#}", r["summary"]);

    // Without a certificate, and with one from a CA haproxy does not trust.
    let o = replay_run(&rec, &url, &url, &[&"--ca-cert", &ca]).await;
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert!(
        stderr(&o).contains("baseline target") && stderr(&o).contains("client certificate refused"),
        "{}",
        stderr(&o)
    );
    let (rogue, rogue_key) = (pki.path("rogue.pem"), pki.path("rogue.key"));
    let o = replay_run(
        &rec,
        &url,
        &url,
        &[
            &"--ca-cert",
            &ca,
            &"--client-cert",
            &cert,
            &"--client-key",
            &key,
            &"--candidate-tls",
            &format!("client-cert={rogue}"),
            &"--candidate-tls",
            &format!("client-key={rogue_key}"),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert!(
        stderr(&o).contains("candidate target")
            && stderr(&o).contains("client certificate refused"),
        "{}",
        stderr(&o)
    );
}

/// A TLS server in this process with the test certificate: the first `good` connections
/// are served (`200 {}` to each request, kept alive); every later one gets `hostile` in
/// place of a TLS answer (before the handshake when `before_handshake`, else after it in
/// place of an HTTP answer).
async fn hostile_tls(
    pki: &Pki,
    good: usize,
    hostile: &'static [u8],
    before_handshake: bool,
) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from_pem_file(pki.path("server.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", l.local_addr().unwrap().port());
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = l.accept().await {
            n += 1;
            let acceptor = acceptor.clone();
            let bad = n > good;
            tokio::spawn(async move {
                if bad && before_handshake {
                    let mut b = [0u8; 512];
                    let _ = s.read(&mut b).await;
                    let _ = s.write_all(hostile).await;
                    return;
                }
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut b = vec![0u8; 8192];
                loop {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if bad => {
                            let _ = s.write_all(hostile).await;
                            let _ = s.shutdown().await;
                            return;
                        }
                        Ok(_) => {
                            let a = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                            if s.write_all(a).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_named_per_exchange_and_never_crash_replay() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let rec = rec(dir.path(), 6);
    let ca = pki.path("ca.pem");
    let good = hostile_tls(&pki, usize::MAX, b"", false).await;

    // Preflight's handshake passes; every connection after it gets bytes that are not TLS
    // (a plain-HTTP answer, binary junk) or a cut handshake, named on each exchange.
    for (hostile, before, kind) in [
        (&b"HTTP/1.1 400 Bad Request\r\n\r\n"[..], true, "tls"),
        (&b"\x16\x03\x03\xff\xff\x00\x01\x02"[..], true, "tls"),
        (&b"\x15\x03\x03\x00\x02\x02\x28"[..], true, "tls"),
        (&b"\x00\xff\xfe\x80garbage"[..], true, "tls"),
        // The ClientHello read, then the connection closed: no TLS reason to give.
        (&b""[..], true, "connect"),
    ] {
        let bad = hostile_tls(&pki, 1, hostile, before).await;
        let json = dir.path().join("h.json");
        let (o, r) = replay_json(
            &rec,
            &good,
            &bad,
            &json,
            &["--ca-cert", &ca, "--concurrency", "1", "--timeout", "2s"],
        )
        .await;
        assert_eq!(o.status.code(), Some(1), "{hostile:?}: {}", describe(&o));
        assert_eq!(
            r["summary"]["candidate_error"], 6,
            "{hostile:?}: {:#}",
            r["summary"]
        );
        let errors = interface(&r, "GET /api/items/{id}")["errors"].clone();
        assert_eq!(errors[0]["kind"], kind, "{hostile:?}: {errors:#}");
    }

    // After the handshake, HTTP that is not HTTP: the HTTP/1 parser over TLS says malformed.
    let bad = hostile_tls(&pki, 1, b"SSH-2.0-OpenSSH_9.2\r\n\r\n", false).await;
    let json = dir.path().join("m.json");
    let (o, r) = replay_json(&rec, &good, &bad, &json, &["--ca-cert", &ca]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let errors = interface(&r, "GET /api/items/{id}")["errors"].clone();
    assert_eq!(errors[0]["kind"], "malformed", "{errors:#}");
    assert_eq!(r["summary"]["candidate_error"], 6);
}
