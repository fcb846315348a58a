//! `shadowdiff capture` on the loopback device against real nginx, driven by real clients
//! (curl, wrk, raw sockets): counts against nginx's own access log, the accounting identity
//! from the end-of-run line and `/metrics`, a replay of the capture, a capture started in
//! the middle of connections, hostile packets, and the refusals without the privilege or
//! with an unknown device. Capturing needs root (CAP_NET_RAW): without it the tests skip,
//! unless SHADOWDIFF_REQUIRE_CAPTURE is set (CI), which makes that a failure.

use crate::util::{
    assert_counts_consistent, bin, describe, nginx_binary, read_json, shadowdiff, wrk_binary, Nginx,
};
use shadowdiff::recording::{ReadOptions, RecordingReader};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// True when this process may capture; otherwise a note, or a failure under
/// SHADOWDIFF_REQUIRE_CAPTURE.
fn may_capture() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("SHADOWDIFF_REQUIRE_CAPTURE").is_some() {
        panic!("capture tests need root (SHADOWDIFF_REQUIRE_CAPTURE is set)");
    }
    eprintln!(
        "skipped: capturing needs root (set SHADOWDIFF_REQUIRE_CAPTURE to make this an error)"
    );
    false
}

/// A running capture and what it has printed on standard error.
struct Capture {
    child: Child,
    err: Arc<Mutex<String>>,
    metrics: SocketAddr,
}

impl Capture {
    fn start(port: u16, out: &Path, extra: &[&str]) -> Capture {
        let mut child = Command::new(bin())
            .args(["capture", "--device", "lo", "--port", &port.to_string()])
            .arg("--out")
            .arg(out)
            .args(["--metrics", "127.0.0.1:0"])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start capture");
        let err = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let e2 = err.clone();
        std::thread::spawn(move || {
            let mut l = String::new();
            while lines.read_line(&mut l).unwrap_or(0) > 0 {
                e2.lock().unwrap().push_str(&l);
                l.clear();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let metrics = loop {
            let text = err.lock().unwrap().clone();
            if text.contains("capturing on") {
                let m = text
                    .lines()
                    .find_map(|l| l.strip_prefix("metrics on "))
                    .expect("metrics address printed");
                break m.trim().parse().unwrap();
            }
            if let Ok(Some(s)) = child.try_wait() {
                panic!("capture exited early ({s}): {text}");
            }
            assert!(Instant::now() < deadline, "capture did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        Capture {
            child,
            err,
            metrics,
        }
    }

    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Waits until `/metrics` shows `n` exchanges accounted for in the files or by reason
    /// (what is recorded is counted once a flush hands it over, within about a second).
    fn wait_accounted(&self, n: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.metrics();
            let done = metric(&m, "shadowdiff_capture_recorded_total")
                + metric(&m, "shadowdiff_capture_sampled_out_total")
                + metric(&m, "shadowdiff_capture_dropped_total")
                + metric(&m, "shadowdiff_capture_lost_total");
            // The seen count is published a few times a second: wait for it to catch up too.
            if done >= n && metric(&m, "shadowdiff_capture_exchanges_seen_total") == done {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "only {done} of {n} accounted for:\n{m}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every connection has ended and everything seen is accounted for, the
    /// same counts twice in a row: for a load whose losses (a whole stream counts once)
    /// keep the account below the requests sent.
    fn wait_settled(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            let m = self.metrics();
            let seen = metric(&m, "shadowdiff_capture_exchanges_seen_total");
            let done = metric(&m, "shadowdiff_capture_recorded_total")
                + metric(&m, "shadowdiff_capture_sampled_out_total")
                + metric(&m, "shadowdiff_capture_dropped_total")
                + metric(&m, "shadowdiff_capture_lost_total");
            let live = metric(&m, "shadowdiff_capture_live_connections");
            let now = (seen, done);
            if live == 0 && seen == done && last == Some(now) {
                return m;
            }
            assert!(Instant::now() < deadline, "never settled:\n{m}");
            last = Some(now);
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// SIGTERM, then the exit and everything printed.
    fn stop(mut self) -> (Option<i32>, String) {
        // SAFETY: signals our own child by its id.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let err = self.err.lock().unwrap().clone();
        (status.code(), err)
    }
}

/// The value of a metric, summed over its labels.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The end-of-run identity: (seen, recorded, sampled out, dropped, lost).
fn identity(err: &str) -> (u64, u64, u64, u64, u64) {
    let line = err
        .lines()
        .find(|l| l.starts_with("stopped: "))
        .unwrap_or_else(|| panic!("no end-of-run line: {err}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 5, "{line}");
    let (seen, rec, sam, dro, lost) = (nums[0], nums[1], nums[2], nums[3], nums[4]);
    assert_eq!(seen, rec + sam + dro + lost, "{line}");
    (seen, rec, sam, dro, lost)
}

fn read_recording(path: &Path) -> Vec<shadowdiff::exchange::Exchange> {
    let mut r = RecordingReader::open(&[path.to_path_buf()], ReadOptions::default()).unwrap();
    let mut v = Vec::new();
    while let Some(e) = r.next_exchange().unwrap() {
        v.push(e);
    }
    v
}

/// nginx with an access log, gzip, a static file, and a
/// location that takes large uploads.
fn nginx(bin: &Path, dir: &Path) -> Nginx {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("big.txt"), "0123456789abcdef\n".repeat(20_000)).unwrap();
    let body = format!(
        "    access_log {log};\n\
         root {www};\n\
         gzip on; gzip_min_length 1; gzip_types application/json text/plain;\n\
         client_max_body_size 16m;\n\
         location = /json {{ return 200 '{{\"items\":[1,2,3],\"name\":\"capture\"}}'; }}\n\
         location = /upload {{ return 201 'stored\\n'; }}\n",
        log = dir.join("access.log").display(),
        www = www.display(),
    );
    Nginx::start(bin, &body)
}

/// nginx's access log (its combined format) as `METHOD URI STATUS` lines, sorted.
fn access_log(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(dir.join("access.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut q = l.splitn(3, '"');
            let request = q.nth(1).unwrap_or_default();
            let status = q.next().unwrap_or_default().split_whitespace().next();
            let mut r = request.split(' ');
            format!(
                "{} {} {}",
                r.next().unwrap_or_default(),
                r.next().unwrap_or_default(),
                status.unwrap_or_default()
            )
        })
        .collect();
    v.sort();
    v
}

fn curl(args: &[&str]) {
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    assert!(o.status.success(), "curl {args:?}: {o:?}");
}

/// Three requests written at once on one connection, the last closing it; returns the
/// whole answer stream.
fn pipelined(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        b"GET /json HTTP/1.1\r\nHost: a\r\n\r\nGET /big.txt HTTP/1.1\r\nHost: a\r\n\r\nGET /gone HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn n_requests_of_every_shape_are_n_exchanges_matching_nginx_and_replay_identically() {
    let Some(nb) = nginx_binary() else { return };
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = nginx(&nb, dir.path());
    let out = dir.path().join("cap.jsonl");
    let cap = Capture::start(gw.port, &out, &[]);
    let url = gw.url();
    // Keep-alive: three requests on one connection.
    curl(&[
        &format!("{url}/json"),
        &format!("{url}/big.txt"),
        &format!("{url}/json"),
    ]);
    // gzip, chunked by nginx because the compressed length is not known ahead.
    curl(&["--compressed", &format!("{url}/big.txt")]);
    // A POST with a 2 MiB body, and a chunked upload.
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, vec![b'x'; 2 << 20]).unwrap();
    let at = format!("@{}", upload.display());
    curl(&["--data-binary", &at, &format!("{url}/upload")]);
    curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "chunked body",
        &format!("{url}/upload"),
    ]);
    // A 404.
    curl(&[&format!("{url}/missing")]);
    // Pipelined.
    let answers = pipelined(gw.port);
    assert_eq!(answers.matches("HTTP/1.1 ").count(), 3, "{answers}");
    let n = 10;
    let m = cap.wait_accounted(n);
    let seen = metric(&m, "shadowdiff_capture_exchanges_seen_total");
    assert_eq!(
        seen,
        metric(&m, "shadowdiff_capture_recorded_total")
            + metric(&m, "shadowdiff_capture_sampled_out_total")
            + metric(&m, "shadowdiff_capture_dropped_total")
            + metric(&m, "shadowdiff_capture_lost_total"),
        "{m}"
    );
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    let (seen, rec, sampled, dropped, lost) = identity(&err);
    assert_eq!(
        (seen, rec, sampled, dropped, lost),
        (n, n, 0, 0, 0),
        "{err}"
    );
    assert!(err.contains("recorded without a response: 0"), "{err}");

    let head = std::fs::read_to_string(&out).unwrap();
    assert!(
        head.lines()
            .next()
            .unwrap()
            .contains("\"source\":\"capture\""),
        "{head:.200}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let exchanges = read_recording(&out);
    let mut seen_lines: Vec<String> = exchanges
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e.request.method,
                e.request.uri,
                e.response.as_ref().map_or(0, |r| r.status)
            )
        })
        .collect();
    seen_lines.sort();
    assert_eq!(seen_lines, access_log(dir.path()));
    let big = exchanges
        .iter()
        .find(|e| e.request.method == "POST" && e.request.body.len() > 1000)
        .expect("the large upload");
    // The recording keeps --max-body (1 MiB by default) of it, marked cut.
    assert_eq!(big.request.body.len(), 1 << 20);
    assert!(big.request.body_truncated);
    let chunked_up = exchanges
        .iter()
        .find(|e| e.request.method == "POST" && !e.request.body_truncated)
        .unwrap();
    assert_eq!(&chunked_up.request.body[..], b"chunked body");
    let gz = exchanges
        .iter()
        .filter_map(|e| e.response.as_ref())
        .find(|r| {
            r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip")
        })
        .expect("a gzip answer");
    assert!(gz.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    }));

    // Replayed against the same nginx, nothing differs.
    let json = dir.path().join("r.json");
    let o = shadowdiff(&[
        "replay",
        out.to_str().unwrap(),
        "--baseline",
        &url,
        "--candidate",
        &url,
        "--allow-side-effects",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    let s = &r["summary"];
    assert_eq!(s["total"].as_u64(), Some(n), "{r}");
    for class in [
        "different",
        "missing_rule",
        "candidate_error",
        "baseline_error",
    ] {
        assert_eq!(s[class].as_u64(), Some(0), "{class}: {r}");
    }
    assert_eq!(r["verdict"], "pass", "{r}");
}

#[test]
fn a_capture_started_inside_open_connections_counts_them_and_records_the_rest() {
    let Some(nb) = nginx_binary() else { return };
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = nginx(&nb, dir.path());
    let ask = |s: &mut TcpStream| {
        s.write_all(b"GET /json HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("capture\"}") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
    };
    let mut open: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", gw.port)).unwrap())
        .collect();
    for s in &mut open {
        ask(s);
    }
    let out = dir.path().join("mid.jsonl");
    let cap = Capture::start(gw.port, &out, &[]);
    for s in &mut open {
        ask(s);
    }
    curl(&[&format!("{}/json", gw.url())]);
    drop(open);
    let m = cap.wait_accounted(4);
    assert_eq!(metric(&m, "shadowdiff_capture_recorded_total"), 1, "{m}");
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    let (seen, rec, _, _, lost) = identity(&err);
    assert_eq!((seen, rec, lost), (4, 1, 3), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("lost") && l.contains("3") && l.contains("mid-connection")),
        "{err}"
    );
    assert_eq!(read_recording(&out).len(), 1);
}

#[test]
fn under_wrk_every_request_nginx_logged_is_recorded_or_counted_lost() {
    let Some(nb) = nginx_binary() else { return };
    let Some(wrk) = wrk_binary() else { return };
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = nginx(&nb, dir.path());
    let out = dir.path().join("wrk.jsonl.zst");
    let cap = Capture::start(gw.port, &out, &[]);
    let o = Command::new(wrk)
        .args(["-t1", "-c8", "-d2s", &format!("{}/json", gw.url())])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    // wrk leaves its connections open until it exits; they are closed now.
    let logged = access_log(dir.path()).len() as u64;
    assert!(logged > 100, "wrk sent {logged}");
    cap.wait_settled();
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    eprintln!("wrk: {logged} requests logged by nginx; capture: {err}");
    let (seen, rec, _, _, lost) = identity(&err);
    if lost == 0 {
        assert_eq!((seen, rec), (logged, logged), "{err}");
    } else {
        // What was lost is said by reason (a stream with a hole loses all it carried after
        // it, counted once), and the kernel said what it dropped.
        assert!(seen <= logged, "{err}");
        assert!(err.lines().any(|l| l.starts_with("  lost")), "{err}");
    }
    assert_eq!(read_recording(&out).len() as u64, rec);
}

/// Sends raw IPv4 packets out on `lo` (they come back in, as from a peer) from a packet
/// socket: bytes no TCP stack would send.
fn inject(packets: &[Vec<u8>]) {
    // SAFETY: plain socket calls with valid, initialised arguments; checked.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            (libc::ETH_P_IP as u16).to_be() as i32,
        );
        assert!(fd >= 0);
        let name = std::ffi::CString::new("lo").unwrap();
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        sll.sll_halen = 6;
        for p in packets {
            libc::sendto(
                fd,
                p.as_ptr().cast(),
                p.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
        }
        libc::close(fd);
    }
}

fn ipv4_tcp(sport: u16, dport: u16, seq: u32, flags: u8, doff: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + 20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, doff << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

#[test]
fn hostile_bytes_and_packets_from_a_raw_socket_peer_are_counted_and_never_stop_it() {
    let Some(nb) = nginx_binary() else { return };
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = nginx(&nb, dir.path());
    let out = dir.path().join("hostile.jsonl");
    let cap = Capture::start(gw.port, &out, &[]);
    // Over real connections: garbage, a TLS ClientHello, HTTP/2's preface, a head cut
    // short, a request with a lying Content-Length.
    let sends: [&[u8]; 5] = [
        b"\x00\xff\xfe garbage \r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        b"GET /json HTTP/1.1\r\nHost: a\r\nX-Cut: ",
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nshort",
    ];
    for b in sends {
        let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
        s.write_all(b).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // Packets no stack sends: a header length beyond the packet, below the minimum, data
    // with SYN and RST together, a FIN on nothing, a stream with no SYN, cut IP headers.
    let port = gw.port;
    inject(&[
        ipv4_tcp(40001, port, 1, 0x02, 15, b"GET / HTTP/1.1\r\n\r\n"),
        ipv4_tcp(40002, port, 1, 0x02, 2, b""),
        ipv4_tcp(40003, port, 1, 0x06, 5, b"GET / HTTP/1.1\r\n\r\n"),
        ipv4_tcp(40004, port, 7, 0x01, 5, b""),
        ipv4_tcp(40005, port, 9, 0x18, 5, b"GET /nosyn HTTP/1.1\r\n\r\n"),
        ipv4_tcp(40006, port, 1, 0x02, 5, b"")[..30].to_vec(),
        vec![0x45, 0, 0, 20],
        vec![0x4f; 64],
    ]);
    // Then an ordinary request is still recorded.
    curl(&[&format!("{}/json", gw.url())]);
    let m = cap.wait_accounted(1);
    assert!(metric(&m, "shadowdiff_capture_recorded_total") >= 1, "{m}");
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (_, rec, _, _, lost) = identity(&err);
    assert!(lost >= 3, "{err}");
    for reason in ["TLS", "HTTP/2", "mid-connection"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("  lost") && l.contains(reason)),
            "{reason}: {err}"
        );
    }
    let recorded = read_recording(&out);
    assert_eq!(recorded.len() as u64, rec);
    assert!(recorded.iter().any(|e| e.request.uri == "/json"));
}

#[test]
fn pure_acknowledgments_stay_in_the_kernel_and_hostile_headers_still_reach_the_count() {
    if !may_capture() {
        return;
    }
    // A port nothing listens on: only the injected packets pass there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("acks.jsonl");
    let cap = Capture::start(port, &out, &[]);
    let mut packets: Vec<Vec<u8>> = (0..100)
        .map(|i| ipv4_tcp(41000 + i, port, 1, 0x10, 5, b""))
        .collect();
    // Kept: data on a connection whose start was not seen (one stream lost), an
    // acknowledgment cut inside its TCP header, one whose data offset points past the
    // packet, and one with a data offset below the minimum.
    packets.push(ipv4_tcp(
        41200,
        port,
        9,
        0x18,
        5,
        b"GET /mid HTTP/1.1\r\n\r\n",
    ));
    packets.push(ipv4_tcp(41201, port, 1, 0x10, 5, b"")[..30].to_vec());
    packets.push(ipv4_tcp(41202, port, 1, 0x10, 15, b""));
    packets.push(ipv4_tcp(41203, port, 1, 0x10, 2, b""));
    inject(&packets);
    let m = cap.wait_accounted(1);
    assert_eq!(metric(&m, "shadowdiff_capture_lost_total"), 1, "{m}");
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    let (seen, rec, _, _, lost) = identity(&err);
    assert_eq!((seen, rec, lost), (1, 0, 1), "{err}");
    assert!(
        err.contains("packets: 4 read, 0 dropped by the kernel"),
        "the 100 pure acknowledgments reached the ring: {err}"
    );
    let malformed = err
        .lines()
        .find(|l| l.contains("packets whose headers are malformed"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(malformed.contains(" 3 "), "{malformed}");
}

#[test]
fn without_cap_net_raw_the_error_names_it_and_how_to_grant_it_and_exits_2() {
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("x.jsonl");
    for wrapper in [
        vec![
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ],
        vec!["capsh", "--drop=cap_net_raw", "--"],
    ] {
        if Command::new(wrapper[0]).arg("--help").output().is_err() {
            eprintln!("skipped: {} not installed", wrapper[0]);
            continue;
        }
        let mut args: Vec<String> = wrapper[1..].iter().map(|s| s.to_string()).collect();
        if wrapper[0] == "capsh" {
            // capsh runs a shell command after `--`: `-c` and the command line.
            args.push("-c".into());
            args.push(format!(
                "exec {} capture --device lo --port 80 --out {}",
                bin(),
                out.display()
            ));
        } else {
            args.extend(
                [bin(), "capture", "--device", "lo", "--port", "80", "--out"]
                    .iter()
                    .map(|s| s.to_string()),
            );
            args.push(out.display().to_string());
        }
        let o = Command::new(wrapper[0]).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}: {}", wrapper[0], describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cap_net_raw"), "{err}");
        assert!(err.contains("setcap cap_net_raw,cap_net_admin+ep"), "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn an_unknown_device_is_refused_with_the_devices_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.jsonl");
    let o = shadowdiff(&[
        "capture",
        "--device",
        "nosuchdev0",
        "--port",
        "80",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--device nosuchdev0"), "{err}");
    assert!(err.contains("lo"), "{err}");
}

#[test]
fn the_tap_recorder_samples_and_redacts_a_capture_and_counts_what_it_left_out() {
    let Some(nb) = nginx_binary() else { return };
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = nginx(&nb, dir.path());
    let out = dir.path().join("sampled.jsonl");
    let cap = Capture::start(
        gw.port,
        &out,
        &[
            "--sample",
            "0",
            "--min-per-interface",
            "1",
            "--redact-header",
            "x-secret",
        ],
    );
    for _ in 0..3 {
        curl(&["-H", "X-Secret: hunter2", &format!("{}/json", gw.url())]);
    }
    curl(&[&format!("{}/missing", gw.url())]);
    let m = cap.wait_accounted(4);
    assert_eq!(metric(&m, "shadowdiff_capture_sampled_out_total"), 2, "{m}");
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    // One of each interface is kept by the minimum; the other two are sampled out.
    assert_eq!(identity(&err), (4, 2, 2, 0, 0), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(read_recording(&out).len(), 2);
}
