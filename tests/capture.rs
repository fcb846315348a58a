//! `shadowdiff capture` on the loopback device against real nginx, driven by real clients
//! (curl, wrk, raw sockets): counts against nginx's own access log, the accounting identity
//! from the end-of-run line and `/metrics`, a replay of the capture, a capture started in
//! the middle of connections, hostile packets, and the refusals without the privilege or
//! with an unknown device. Memory under a SYN flood and a slowloris is held to bounds
//! derived from the reassembler's limits, read from the process's peak resident size; and
//! a capture on a veth device, with nginx in a network namespace behind it, shows a real
//! Ethernet link read with each packet once. Capturing needs root (CAP_NET_RAW): without it the tests skip,
//! unless SHADOWDIFF_REQUIRE_CAPTURE is set (CI), which makes that a failure.

use crate::util::{
    assert_counts_consistent, bin, describe, nginx_binary, read_json, shadowdiff, wrk_binary, Nginx,
};
use shadowdiff::recording::{FileReader, ReadOptions, RecordingReader};
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
        Self::start_on("lo", port, out, extra)
    }

    fn start_on(device: &str, port: u16, out: &Path, extra: &[&str]) -> Capture {
        let mut child = Command::new(bin())
            .args(["capture", "--device", device, "--port", &port.to_string()])
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

    /// Waits until `/metrics` shows at least `n` exchanges recorded (exchanges lost by
    /// reason, which may be counted first, do not count here).
    fn wait_recorded(&self, n: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.metrics();
            if metric(&m, "shadowdiff_capture_recorded_total") >= n {
                return m;
            }
            assert!(Instant::now() < deadline, "fewer than {n} recorded:\n{m}");
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// The exchanges as `METHOD URI STATUS` lines (status 0 without an answer), sorted, to set
/// beside [`access_log`].
fn as_log_lines(exchanges: &[shadowdiff::exchange::Exchange]) -> Vec<String> {
    let mut v: Vec<String> = exchanges
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
    let seen_lines = as_log_lines(&exchanges);
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

/// Waits until `/metrics` shows `held` exchanges held for order and `seen` handed on.
fn wait_held(cap: &Capture, held: u64, seen: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = cap.metrics();
        if metric(&m, "shadowdiff_capture_held_exchanges") == held
            && metric(&m, "shadowdiff_capture_exchanges_seen_total") == seen
        {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "never {held} held and {seen} seen:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request begun first and answered last, a raw-socket peer holding a request head open
/// and then ending it with bytes that are no header, and twenty curl requests on their own
/// connections in between: the curl exchanges wait until both earlier requests are done
/// (the slow one written first, the peer's stream counted as not HTTP/1), and the recording holds
/// every exchange, its lines in order of their requests' capture time.
#[test]
fn exchanges_are_recorded_in_capture_order_behind_a_slow_request_and_a_hostile_peer() {
    let Some(nb) = nginx_binary() else { return };
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = nginx(&nb, dir.path());
    let out = dir.path().join("order.jsonl");
    let cap = Capture::start(gw.port, &out, &[]);
    let mut slow = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    slow.write_all(b"GET /json?slow HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    let mut peer = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    peer.write_all(b"GET /json?peer HTTP/1.1\r\nHost: a\r\nX-Pad: ")
        .unwrap();
    for i in 0..20 {
        curl(&[&format!("{}/json?fast={i}", gw.url())]);
    }
    wait_held(&cap, 20, 0);
    // The slow request ends and is answered: it is written, the rest still wait for the
    // peer's request, which began before them.
    slow.write_all(b"Connection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    slow.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    wait_held(&cap, 20, 1);
    // Bytes that are no header end the peer's request: its stream is counted as not
    // HTTP/1, and nothing waits for it.
    peer.write_all(b"\x00\xff\x01 no colon here\r\n\r\n")
        .unwrap();
    let _ = peer.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = peer.read_to_end(&mut rest);
    let m = cap.wait_accounted(21);
    assert_eq!(metric(&m, "shadowdiff_capture_held_exchanges"), 0, "{m}");
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    let (_, rec, _, _, _) = identity(&err);
    assert_eq!(rec, 21, "{err}");
    assert!(!err.contains("out of capture order"), "{err}");
    assert!(err.contains("TCP streams that are not HTTP/1.x"), "{err}");
    let lines = in_file_order(&out);
    let uris: Vec<&str> = lines.iter().map(|e| e.request.uri.as_str()).collect();
    let mut expected = vec!["/json?slow".to_string()];
    expected.extend((0..20).map(|i| format!("/json?fast={i}")));
    assert_eq!(
        uris,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        lines.windows(2).all(|w| w[0].ts_us <= w[1].ts_us),
        "{:?}",
        lines.iter().map(|e| e.ts_us).collect::<Vec<_>>()
    );
    let m = metric(&m, "shadowdiff_capture_out_of_order_total");
    assert_eq!(m, 0);
}

/// The lines of a recording file in the order they were written.
fn in_file_order(path: &Path) -> Vec<shadowdiff::exchange::Exchange> {
    let mut r = FileReader::open(path, ReadOptions::default()).unwrap();
    let mut v = Vec::new();
    while let Some(e) = r.next_exchange().unwrap() {
        v.push(e);
    }
    v
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
    // Over real connections: garbage, a TLS ClientHello, HTTP/2's preface and a header
    // block naming HPACK index 0, a head cut short, a request with a lying Content-Length.
    let sends: [&[u8]; 5] = [
        b"\x00\xff\xfe garbage \r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x02\x01\x05\x00\x00\x00\x01\x80\x84",
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
    cap.wait_recorded(1);
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

/// One unary call of `path` for user `id` over `channel`: `GetUser` answers the user, a
/// method the server does not serve answers trailers-only with grpc-status 12.
async fn grpc_call(channel: tonic::transport::Channel, path: &'static str, id: u64) {
    use crate::grpc::{user, User, UserRequest};
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let r: Result<tonic::Response<User>, tonic::Status> = client
        .unary(
            tonic::Request::new(UserRequest { id }),
            http::uri::PathAndQuery::from_static(path),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    match path {
        "/pkg.Svc/GetUser" => assert_eq!(r.unwrap().into_inner(), user(id, false)),
        _ => assert_eq!(r.unwrap_err().code(), tonic::Code::Unimplemented),
    }
}

async fn grpc_channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Eight `GetUser` calls at once and one call of a method not served, all over one h2c
/// connection (tonic multiplexes them as concurrent streams): nine exchanges.
async fn grpc_burst(url: &str) {
    let channel = grpc_channel(url).await;
    let mut calls: Vec<_> = (1..=8)
        .map(|id| tokio::spawn(grpc_call(channel.clone(), "/pkg.Svc/GetUser", id)))
        .collect();
    calls.push(tokio::spawn(grpc_call(channel, "/pkg.Svc/Missing", 99)));
    for c in calls {
        c.await.unwrap();
    }
}

/// What a recording says of one exchange, without what differs between two runs of the
/// same call: ids, times, the port in `host`, the `date` an answer carries.
fn shape(e: &shadowdiff::exchange::Exchange) -> String {
    let fields = |h: &[(String, String)]| -> Vec<String> {
        h.iter()
            .map(|(k, v)| match k.as_str() {
                "host" | "date" => format!("{k}: *"),
                _ => format!("{k}: {v}"),
            })
            .collect()
    };
    let r = e.response.as_ref();
    format!(
        "{} {} {} {:?} body {:?} interface {:?}\n=> {:?} {:?} body {:?} trailers {:?} cut {:?}",
        e.request.method,
        e.request.uri,
        e.request.version,
        fields(&e.request.headers),
        e.request.body,
        e.interface,
        r.map(|r| r.status),
        r.map(|r| fields(&r.headers)),
        r.map(|r| r.body.clone()),
        r.and_then(|r| r.trailers.as_deref().map(fields)),
        r.map(|r| (r.body_truncated, e.request.body_truncated)),
    )
}

fn shapes(v: &[shadowdiff::exchange::Exchange]) -> Vec<String> {
    let mut s: Vec<String> = v.iter().map(shape).collect();
    s.sort();
    s
}

/// tcpdump writing the traffic of `port` on `lo` to `out`, once it says it is listening;
/// each packet is handed over and written as it comes (so none waits in a buffer when it
/// is stopped), by root (the output is in a directory only root may enter). In immediate
/// mode its ring holds one slot per packet of the snap length: 64 MiB of 16 KiB slots.
fn tcpdump(bin: &Path, port: u16, out: &Path) -> (Child, Arc<Mutex<String>>) {
    tcpdump_on(bin, "lo", port, out)
}

/// [`tcpdump`] on device `dev`.
fn tcpdump_on(bin: &Path, dev: &str, port: u16, out: &Path) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(bin)
        .args(["-i", dev, "--immediate-mode", "-B", "65536", "-s", "16384"])
        .args(["-U", "-Z", "root", "-w"])
        .arg(out)
        .arg(format!("tcp port {port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcpdump");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("listening") {
        line.clear();
    }
    assert!(line.contains("listening"), "tcpdump: {line}");
    let said = Arc::new(Mutex::new(String::new()));
    let s2 = said.clone();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        s2.lock().unwrap().push_str(&rest);
    });
    (child, said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2c_is_recorded_as_the_tap_records_it_imports_alike_and_replays_identical() {
    use crate::grpc::TonicServer;
    use crate::tap::{files_in, read_recordings, TapProc};
    if !may_capture() {
        return;
    }
    let Some(tcpdump_bin) = crate::util::required_tool(
        &["/usr/bin/tcpdump", "/usr/sbin/tcpdump"],
        "SHADOWDIFF_REQUIRE_CAPTURE",
        "tcpdump",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TonicServer::start(false).await;
    let beside = TonicServer::start(false).await;
    let port = server.addr.port();
    let pcap = dir.path().join("grpc.pcap");
    let (mut dump, dump_said) = tcpdump(&tcpdump_bin, port, &pcap);
    let out = dir.path().join("grpc.jsonl");
    let cap = Capture::start(port, &out, &[]);

    grpc_burst(&format!("http://{}", server.addr)).await;
    // The same calls through the tap, in front of a server the capture does not watch.
    let tap_dir = dir.path().join("tap");
    std::fs::create_dir(&tap_dir).unwrap();
    let tap_out = tap_dir.join("tap.jsonl");
    let upstream = format!("http://{}", beside.addr);
    let tap = TapProc::start(&["--upstream", &upstream, "--out", tap_out.to_str().unwrap()]);
    grpc_burst(&tap.url()).await;
    tap.stop_async().await;

    let m = tokio::task::spawn_blocking(move || {
        let m = cap.wait_accounted(9);
        (m, cap.stop())
    })
    .await
    .unwrap();
    let (m, (code, err)) = m;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(metric(&m, "shadowdiff_capture_recorded_total"), 9, "{m}");
    assert_eq!(identity(&err), (9, 9, 0, 0, 0), "{err}");
    // SAFETY: signals our own child by its id.
    unsafe {
        libc::kill(dump.id() as i32, libc::SIGTERM);
    }
    dump.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let dump_said = dump_said.lock().unwrap().clone();

    let captured = read_recording(&out);
    let tapped = read_recordings(&files_in(&tap_dir));
    assert_eq!(captured.len(), 9);
    assert_eq!(tapped.len(), 9);
    // A call the server refuses before reading its body (a trailers-only answer, then
    // RST_STREAM(NO_ERROR)) has its body on the wire only if the client sent it before the
    // reset came, which through the tap, a second hop, comes later: that body is left out
    // of the comparison with the tap's recording (not of the one with tcpdump's file below,
    // the same wire).
    let beside_tap = |v: &[shadowdiff::exchange::Exchange]| {
        let mut v = v.to_vec();
        for e in &mut v {
            let trailers_only = e.response.as_ref().is_some_and(|r| {
                r.trailers.is_none()
                    && shadowdiff::exchange::header(&r.headers, "grpc-status").is_some()
            });
            if trailers_only {
                e.request.body = Default::default();
            }
        }
        shapes(&v)
    };
    assert_eq!(beside_tap(&captured), beside_tap(&tapped));
    for e in &captured {
        let r = e.response.as_ref().unwrap();
        let status = shadowdiff::exchange::header(
            r.trailers.as_deref().unwrap_or(&r.headers),
            "grpc-status",
        );
        let want = if e.request.uri == "/pkg.Svc/Missing" {
            "12"
        } else {
            "0"
        };
        assert_eq!(status, Some(want), "{e:?}");
        assert_eq!(e.request.version, "HTTP/2");
    }
    // Every exchange carries the capture time of its first HEADERS frame and a latency.
    assert!(captured
        .iter()
        .all(|e| e.ts_us > 0 && e.latency_us.is_some()));

    // tcpdump's file of the same traffic imports to the same exchanges.
    let imported = dir.path().join("imported.jsonl");
    let o = shadowdiff(&[
        "import",
        "--from",
        "pcap",
        pcap.to_str().unwrap(),
        "--out",
        imported.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", describe(&o));
    let imp = read_recording(&imported);
    let dropped = dump_said
        .lines()
        .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
        .and_then(|n| n.trim().parse::<u64>().ok());
    if dropped == Some(0) {
        assert_eq!(
            shapes(&imp),
            shapes(&captured),
            "{}\ntcpdump: {dump_said}",
            describe(&o)
        );
    } else {
        // tcpdump lost packets on a busy machine: what the import could not read is
        // counted, never guessed, and what it wrote is what the capture recorded.
        eprintln!("tcpdump dropped packets: {dump_said}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("lost segment"), "{err}");
        let want = shapes(&captured);
        assert!(shapes(&imp).iter().all(|s| want.contains(s)), "{err}");
    }

    // Replayed against the server it was captured from, and one just like it: identical.
    let json = dir.path().join("r.json");
    let o = crate::grpc::replay(&out, &server.h2c(), &beside.h2c(), &json, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["identical"], 9, "{:#}", r["summary"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_connection_open_before_the_capture_is_counted_and_nothing_of_it_recorded() {
    use crate::grpc::TonicServer;
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TonicServer::start(false).await;
    let url = format!("http://{}", server.addr);
    let before = grpc_channel(&url).await;
    grpc_call(before.clone(), "/pkg.Svc/GetUser", 1).await;
    let out = dir.path().join("mid.jsonl");
    let cap = Capture::start(server.addr.port(), &out, &[]);
    for id in 2..5 {
        grpc_call(before.clone(), "/pkg.Svc/GetUser", id).await;
    }
    let after = grpc_channel(&url).await;
    for id in 5..7 {
        grpc_call(after.clone(), "/pkg.Svc/GetUser", id).await;
    }
    let (m, (code, err)) = tokio::task::spawn_blocking(move || {
        let m = cap.wait_accounted(3);
        (m, cap.stop())
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(metric(&m, "shadowdiff_capture_recorded_total"), 2, "{m}");
    // The connection opened before counts once, whole: its HPACK state is unknown.
    assert_eq!(identity(&err), (3, 2, 0, 0, 1), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("  lost") && l.contains("mid-connection")),
        "{err}"
    );
    let rec = read_recording(&out);
    let mut uris: Vec<String> = rec
        .iter()
        .map(|e| format!("{} {:?}", e.request.uri, e.request.body))
        .collect();
    uris.sort();
    assert_eq!(rec.len(), 2, "{uris:?}");
    assert!(rec.iter().all(|e| e.request.uri == "/pkg.Svc/GetUser"));
}

/// Frame bytes: length, type, flags, stream, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http2_from_a_raw_socket_peer_is_counted_and_good_calls_beside_it_recorded() {
    use crate::grpc::TonicServer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TonicServer::start(false).await;
    let out = dir.path().join("hostile.jsonl");
    let cap = Capture::start(server.addr.port(), &out, &[]);
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let settings = h2_frame(4, 0, 0, &[]);
    let hostile: Vec<Vec<u8>> = vec![
        // A frame longer than SETTINGS_MAX_FRAME_SIZE (16,384 by default).
        [
            &preface[..],
            &settings,
            &[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1],
            &[0; 64],
        ]
        .concat(),
        // A header block naming HPACK index 0, which does not exist.
        [&preface[..], &settings, &h2_frame(1, 5, 1, &[0x80, 0x84])].concat(),
        // HPACK that is cut inside a literal.
        [
            &preface[..],
            &settings,
            &h2_frame(1, 5, 1, &[0x82, 0x44, 0x7f]),
        ]
        .concat(),
        // A CONTINUATION with no header block before it.
        [&preface[..], &settings, &h2_frame(9, 4, 1, &[0x82])].concat(),
        // A preface that breaks off into garbage.
        b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n\x00\xff garbage".to_vec(),
    ];
    for bytes in &hostile {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
    }
    let channel = grpc_channel(&format!("http://{}", server.addr)).await;
    grpc_call(channel.clone(), "/pkg.Svc/GetUser", 1).await;
    grpc_call(channel, "/pkg.Svc/GetUser", 2).await;
    let (m, (code, err)) = tokio::task::spawn_blocking(move || {
        let m = cap.wait_accounted(2);
        (m, cap.stop())
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(metric(&m, "shadowdiff_capture_recorded_total"), 2, "{m}");
    let (_, rec, _, _, lost) = identity(&err);
    assert_eq!(rec, 2, "{err}");
    // Each hostile connection is counted (two also lose the stream they opened).
    assert!(lost >= 5, "{err}");
    for reason in [
        "SETTINGS_MAX_FRAME_SIZE",
        "header compression (HPACK)",
        "preface",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("  lost") && l.contains(reason)),
            "{reason}: {err}"
        );
    }
    let recorded = read_recording(&out);
    assert_eq!(recorded.len(), 2);
    assert!(recorded.iter().all(|e| e.request.uri == "/pkg.Svc/GetUser"));
}

/// The peak resident size of process `pid` (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kib << 10
}

/// The reassembler's limits, as `src/recording/packets/tcp.rs` sets them.
const MAX_LIVE: u64 = 32_768;
const MAX_TRACKED: u64 = 131_072;
/// What one followed connection costs at most before it carries data (its state, its
/// flow's buffers and label, its map slot), and what one remembered ended connection
/// costs (its map slot, the map at twice its length after growth): generous figures, a
/// few times the struct sizes, so that the bound is about the count, not the allocator.
const LIVE_COST: u64 = 2 << 10;
const TRACKED_COST: u64 = 256;

/// A SYN from `src:sport` to 127.0.0.1:`dport`. Its IP checksum is left zero, so the
/// kernel's stack drops it after the capture saw it: a flood the server never answers,
/// as one that fills its backlog, each SYN a connection left half open.
fn syn_from(src: [u8; 4], sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    let mut p = ipv4_tcp(sport, dport, seq, 0x02, 5, b"");
    p[12..16].copy_from_slice(&src);
    p
}

#[test]
fn a_syn_flood_is_counted_given_up_and_held_to_a_memory_bound_while_real_requests_are_all_recorded()
{
    let Some(nb) = nginx_binary() else { return };
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = nginx(&nb, dir.path());
    let out = dir.path().join("flood.jsonl");
    let ring: u64 = 8 << 20;
    let cap = Capture::start(gw.port, &out, &["--ring-size", "8MiB"]);
    let pid = cap.child.id();
    let base = peak_rss(pid);
    // Rounds of 20,000 SYNs from distinct 127/8 addresses, each round followed by real
    // requests; each round waits for the capture to have read it, so the ring never
    // overflows and every SYN reaches the reassembler.
    let (rounds, per_round, real_per_round) = (15u64, 20_000u64, 2u64);
    let mut max_live = 0;
    for round in 0..rounds {
        let packets: Vec<Vec<u8>> = (0..per_round)
            .map(|k| {
                let i = round * per_round + k;
                let src = [127, 10 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
                // Source ports below the ephemeral range: a flood SYN from a port another
                // test's capture watches would be, rightly, a connection to that capture.
                syn_from(src, 1024 + (i % 30_000) as u16, gw.port, i as u32)
            })
            .collect();
        inject(&packets);
        for _ in 0..real_per_round {
            curl(&[&format!("{}/json", gw.url())]);
        }
        let want = (round + 1) * per_round;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = cap.metrics();
            max_live = max_live.max(metric(&m, "shadowdiff_capture_live_connections"));
            if metric(&m, "shadowdiff_capture_frames_total") >= want {
                break;
            }
            assert!(Instant::now() < deadline, "the flood was not read:\n{m}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let flood = rounds * per_round;
    let real = rounds * real_per_round;
    let m = cap.wait_accounted(real);
    let peak = peak_rss(pid);
    let given_up = metric(&m, "shadowdiff_capture_connections_given_up_total");
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    eprintln!(
        "SYN flood of {flood}: peak RSS {} MiB (at start {} MiB), {given_up} given up, at most {max_live} live\n{err}",
        peak >> 20,
        base >> 20
    );
    // Memory: what the limits allow, over what the process had at start. With the limits
    // out of reach (every SYN followed), this flood costs about 250 MiB, so the bound bites.
    let bound = ring + MAX_LIVE * LIVE_COST + MAX_TRACKED * TRACKED_COST + (16 << 20);
    assert!(
        peak - base <= bound,
        "peak RSS grew by {} MiB, over the bound of {} MiB",
        (peak - base) >> 20,
        bound >> 20
    );
    // The real requests all went through, each recorded; the flood carried no request.
    assert_eq!(identity(&err), (real, real, 0, 0, 0), "{err}");
    assert!(err.contains("dropped by the kernel (ring full)"), "{err}");
    assert!(err.contains(" 0 dropped by the kernel"), "{err}");
    // The flood's connections were given up as too many, and counted.
    assert!(max_live <= MAX_LIVE, "{max_live} live");
    assert!(given_up >= flood - MAX_LIVE, "{given_up} given up:\n{m}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("  note") && l.contains("more than 32,768 were open")),
        "{err}"
    );
    assert_eq!(read_recording(&out).len() as u64, real);
}

#[test]
fn slowloris_connections_are_given_up_counted_and_held_to_the_stream_memory() {
    let Some(nb) = nginx_binary() else { return };
    if !may_capture() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // nginx would close a slow head after a minute; it waits longer here, so every slow
    // connection is given up by the capture, not closed by the server.
    let gw = Nginx::start(
        &nb,
        "client_header_timeout 300s;\nlocation = /json { return 200 '{\"ok\":true}'; }\n",
    );
    let out = dir.path().join("slow.jsonl");
    let stream_memory: u64 = 1 << 20;
    let cap = Capture::start(
        gw.port,
        &out,
        &[
            "--idle-timeout",
            "1s",
            "--stream-memory",
            "1MiB",
            "--ring-size",
            "8MiB",
        ],
    );
    let pid = cap.child.id();
    let base = peak_rss(pid);
    // Each sends a request line and 6 KiB of header fields, never the empty line, then
    // goes quiet: 300 of them hold about 1.8 MiB, more than --stream-memory.
    let n = 300u64;
    let pad = format!("X-Pad: {}\r\n", "a".repeat(120)).repeat(48);
    let slow: Vec<TcpStream> = (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
            write!(s, "GET /slow/{i} HTTP/1.1\r\nHost: a\r\n{pad}").unwrap();
            s
        })
        .collect();
    // A real request beside them is recorded.
    curl(&[&format!("{}/json", gw.url())]);
    let m = cap.wait_accounted(n + 1);
    let peak = peak_rss(pid);
    drop(slow);
    let given_up = metric(&m, "shadowdiff_capture_connections_given_up_total");
    let peak_held = metric(&m, "shadowdiff_capture_peak_held_bytes");
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    eprintln!(
        "slowloris of {n}: peak RSS {} MiB (at start {} MiB), at most {peak_held} bytes held\n{err}",
        peak >> 20,
        base >> 20
    );
    assert_eq!(identity(&err), (n + 1, 1, 0, 0, n), "{err}");
    // Each slow connection was given up (for the bytes held, or idle past --idle-timeout)
    // and its half-sent request counted as lost.
    assert_eq!(given_up, n, "{m}");
    assert!(
        err.lines().any(|l| l.starts_with("  lost")
            && l.contains(&n.to_string())
            && l.contains("requests cut short")),
        "{err}"
    );
    for note in ["idle for 1s", "held more than 1 MiB"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("  note") && l.contains(note)),
            "{note}: {err}"
        );
    }
    assert!(peak_held <= stream_memory, "{peak_held} bytes held");
    assert!(peak_held >= stream_memory / 2, "{peak_held} bytes held");
    let bound = (8 << 20) + stream_memory + n * LIVE_COST + (16 << 20);
    assert!(
        peak - base <= bound,
        "peak RSS grew by {} MiB, over the bound of {} MiB",
        (peak - base) >> 20,
        bound >> 20
    );
    let recorded = read_recording(&out);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].request.uri, "/json");
}

/// Runs `ip ARGS`; the error text when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// A network namespace joined to this one by a veth pair, and what runs inside it; all
/// of it removed when dropped, whether the test passed or not.
struct Netns {
    name: String,
    host_dev: String,
    inside: Option<Child>,
}

impl Netns {
    /// Host side `host_ip`/24 on `sdh<pid>`, namespace side `ns_ip`/24 on `sdn<pid>`, no
    /// IPv6 and static neighbours on both, so the only packets on the link are the test's.
    fn create(host_ip: &str, ns_ip: &str) -> Result<Netns, String> {
        let id = std::process::id();
        let ns = Netns {
            name: format!("shadowdiff-{id}"),
            host_dev: format!("sdh{id}"),
            inside: None,
        };
        let peer = format!("sdn{id}");
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_dev,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns.name])?;
        let sysctl = |dev: &str| format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        let _ = std::fs::write(sysctl(&ns.host_dev), "1");
        ns.exec(&["sh", "-c", &format!("echo 1 > {}", sysctl(&peer))])?;
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &ns.host_dev])?;
        ip(&["link", "set", &ns.host_dev, "up"])?;
        let inside = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &ns.name, "ip"];
            a.extend_from_slice(args);
            ip(&a)
        };
        inside(&["addr", "add", &format!("{ns_ip}/24"), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        let host_mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", ns.host_dev))
            .map_err(|e| e.to_string())?;
        let peer_mac = ns
            .output(&["cat", &format!("/sys/class/net/{peer}/address")])?
            .trim()
            .to_string();
        ip(&[
            "neigh",
            "replace",
            ns_ip,
            "lladdr",
            &peer_mac,
            "dev",
            &ns.host_dev,
            "nud",
            "permanent",
        ])?;
        inside(&[
            "neigh",
            "replace",
            host_ip,
            "lladdr",
            host_mac.trim(),
            "dev",
            &peer,
            "nud",
            "permanent",
        ])?;
        Ok(ns)
    }

    fn output(&self, cmd: &[&str]) -> Result<String, String> {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("{cmd:?} in {}: {}", self.name, describe(&o)));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn exec(&self, cmd: &[&str]) -> Result<(), String> {
        self.output(cmd).map(|_| ())
    }

    /// The host device's (packets received, packets sent).
    fn host_packets(&self) -> (u64, u64) {
        let read = |what: &str| {
            std::fs::read_to_string(format!(
                "/sys/class/net/{}/statistics/{what}_packets",
                self.host_dev
            ))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
        };
        (read("rx"), read("tx"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut c) = self.inside.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the host side deletes its peer; the namespace goes with its name.
        let _ = ip(&["link", "del", &self.host_dev]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[test]
fn on_a_veth_device_with_nginx_in_a_namespace_each_packet_is_read_once_and_every_request_recorded()
{
    let Some(nb) = nginx_binary() else { return };
    let Some(tcpdump_bin) = crate::util::required_tool(
        &["/usr/bin/tcpdump", "/usr/sbin/tcpdump"],
        "SHADOWDIFF_REQUIRE_CAPTURE",
        "tcpdump",
    ) else {
        return;
    };
    if !may_capture() {
        return;
    }
    let id = std::process::id();
    // 198.18.0.0/15 is set aside for benchmarking networks: no real route is shadowed.
    let net = format!("198.{}.{}", 18 + (id >> 8) % 2, id & 255);
    let (host_ip, ns_ip) = (format!("{net}.1"), format!("{net}.2"));
    let mut ns = match Netns::create(&host_ip, &ns_ip) {
        Ok(ns) => ns,
        Err(e) if std::env::var_os("SHADOWDIFF_REQUIRE_CAPTURE").is_some() => {
            panic!("cannot make a network namespace with a veth pair (SHADOWDIFF_REQUIRE_CAPTURE is set): {e}")
        }
        Err(e) => {
            eprintln!("skipped: cannot make a network namespace with a veth pair: {e}");
            return;
        }
    };
    // A real Ethernet device, not loopback: ARPHRD_ETHER, with a hardware address.
    let sys = format!("/sys/class/net/{}", ns.host_dev);
    assert_eq!(
        std::fs::read_to_string(format!("{sys}/type"))
            .unwrap()
            .trim(),
        "1"
    );
    let mac = std::fs::read_to_string(format!("{sys}/address")).unwrap();
    assert_ne!(mac.trim(), "00:00:00:00:00:00");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = 8080u16;
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  default_type application/json;\n\
             server {{\n    listen {ns_ip}:{port};\n\
                 location = /json {{ return 200 '{{\"side\":\"namespace\"}}'; }}\n\
                 location = /upload {{ return 201 'stored\\n'; }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    ns.inside = Some(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(&nb)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx in the namespace"),
    );
    let url = format!("http://{ns_ip}:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect((ns_ip.as_str(), port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx in the namespace did not start"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    // Whatever the start-up probe sent is over before the capture starts.
    std::thread::sleep(Duration::from_millis(200));

    let out = dir.path().join("veth.jsonl");
    let cap = Capture::start_on(&ns.host_dev, port, &out, &[]);
    // tcpdump beside it, with no filter but the port: what the device carried, for the
    // count of packets the capture's kernel filter keeps (all but pure acknowledgments).
    let pcap = dir.path().join("veth.pcap");
    let (mut dump, _) = tcpdump_on(&tcpdump_bin, &ns.host_dev, port, &pcap);
    let (rx0, tx0) = ns.host_packets();
    // Keep-alive, an upload of 200 KiB (many full-size segments each way), a 404,
    // pipelined.
    curl(&[&format!("{url}/json"), &format!("{url}/json")]);
    let upload = dir.path().join("up.bin");
    std::fs::write(&upload, vec![b'u'; 200 << 10]).unwrap();
    curl(&[
        "--data-binary",
        &format!("@{}", upload.display()),
        &format!("{url}/upload"),
    ]);
    curl(&[&format!("{url}/missing")]);
    let mut s = TcpStream::connect((ns_ip.as_str(), port)).unwrap();
    s.write_all(
        b"GET /json HTTP/1.1\r\nHost: a\r\n\r\nGET /json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answers = Vec::new();
    s.read_to_end(&mut answers).unwrap();
    drop(s);
    let n = 6;
    let m = cap.wait_settled();
    let (rx1, tx1) = ns.host_packets();
    let frames = metric(&m, "shadowdiff_capture_frames_total");
    let (code, err) = cap.stop();
    assert_eq!(code, Some(0), "{err}");
    // SIGINT: tcpdump writes out what it has and ends.
    unsafe { libc::kill(dump.id() as i32, libc::SIGINT) };
    let _ = dump.wait();
    let counted = |filter: &str| {
        let o = Command::new(&tcpdump_bin)
            .args(["-nn", "-r"])
            .arg(&pcap)
            .arg(filter)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count() as u64
    };
    let on_wire = counted(&format!("tcp port {port}"));
    // A packet with SYN, FIN or RST, or with a payload (IP length minus both headers).
    let kept = counted(&format!(
        "tcp port {port} and (tcp[13] & 7 != 0 or (ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) != 0)"
    ));
    eprintln!(
        "veth {}: {} packets received, {} sent; tcpdump saw {on_wire}, {kept} not pure acknowledgments; {frames} read\n{err}",
        ns.host_dev,
        rx1 - rx0,
        tx1 - tx0
    );
    assert_eq!(identity(&err), (n, n, 0, 0, 0), "{err}");
    assert!(err.contains("recorded without a response: 0"), "{err}");
    // Each packet of both directions was read once: tcpdump saw as many as the device
    // counted, and the capture read exactly those its filter keeps (the client's going out,
    // PACKET_OUTGOING here, and the server's coming in), none taken for a retransmission.
    assert_eq!(on_wire, (rx1 - rx0) + (tx1 - tx0), "{err}");
    assert!(kept > 0 && kept <= on_wire, "{kept} of {on_wire}");
    assert_eq!(frames, kept, "{err}");
    assert!(!err.contains("retransmitted"), "{err}");
    let recorded = as_log_lines(&read_recording(&out));
    assert_eq!(recorded, access_log(dir.path()));
    assert_eq!(
        recorded,
        [
            "GET /json 200",
            "GET /json 200",
            "GET /json 200",
            "GET /json 200",
            "GET /missing 404",
            "POST /upload 201"
        ]
    );
}
