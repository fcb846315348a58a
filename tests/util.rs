//! Shared helpers for the integration tests: in-process hyper servers on port 0, nginx and
//! haproxy started from config strings, recordings written with the library's own writer,
//! and the real binary run as a subprocess.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shadowdiff::exchange::{Exchange, Request};
use shadowdiff::recording::{RecordingHeader, RecordingWriter};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

/// The request as a test handler sees it.
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// What a test handler answers.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Answer {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
        }
    }
}

/// A handler and how long to wait before answering; the wait is asynchronous, so a slow
/// answer never blocks a runtime worker (which could starve other servers of the test).
type Handler = Arc<dyn Fn(Seen) -> (Answer, Option<std::time::Duration>) + Send + Sync>;

/// An in-process HTTP server (HTTP/1.1 and HTTP/2 prior knowledge) on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(f: impl Fn(Seen) -> Answer + Send + Sync + 'static) -> Self {
        Self::start_delayed(move |s| (f(s), None)).await
    }

    /// Like [`TestServer::start`], but the handler may ask for its answer to be sent late.
    pub async fn start_delayed(
        f: impl Fn(Seen) -> (Answer, Option<std::time::Duration>) + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, Arc::new(f)));
        TestServer { addr, task }
    }

    /// Like [`TestServer::start`], but listening only after `after`: a gateway still starting
    /// up, whose port refuses connections until then.
    pub fn start_after(
        after: std::time::Duration,
        f: impl Fn(Seen) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let handler: Handler = Arc::new(move |s| (f(s), None));
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            serve(listener, handler).await
        });
        TestServer { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(listener: tokio::net::TcpListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            break;
        };
        let h = handler.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let h = h.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    let seen = Seen {
                        version: parts.version,
                        method: parts.method.to_string(),
                        path_and_query: parts
                            .uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        headers: parts.headers,
                        body,
                    };
                    let (a, delay) = h(seen);
                    if let Some(d) = delay {
                        tokio::time::sleep(d).await;
                    }
                    let mut resp = http::Response::builder().status(a.status);
                    for (k, v) in a.headers {
                        resp = resp.header(k, v);
                    }
                    Ok::<_, std::convert::Infallible>(
                        resp.body(Full::new(Bytes::from(a.body))).unwrap(),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A GET exchange for `uri` at `ts_us`.
pub fn get(id: &str, uri: &str, ts_us: i64) -> Exchange {
    Exchange {
        id: id.into(),
        ts_us,
        interface: None,
        tenant: None,
        request: Request {
            method: "GET".into(),
            uri: uri.into(),
            version: "HTTP/1.1".into(),
            headers: vec![("host".into(), "prod.example".into())],
            ..Default::default()
        },
        response: None,
        latency_us: None,
    }
}

/// Writes a recording with the library's writer.
pub fn write_recording(path: &Path, items: &[Exchange]) -> PathBuf {
    let mut w = RecordingWriter::create(path, &RecordingHeader::new("test")).unwrap();
    for e in items {
        w.write(e).unwrap();
    }
    w.finish().unwrap()
}

/// Path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shadowdiff")
}

/// Runs the binary with `args` (blocking; call from `spawn_blocking` inside async tests).
pub fn shadowdiff(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        // The terminal report fits COLUMNS when it is set; the tests read the 120 columns of
        // a log.
        .env_remove("COLUMNS")
        .output()
        .expect("run shadowdiff")
}

/// Address space the binary gets in the memory tests, as in the fuzz runs
/// (`benches/fuzz_binary.sh`): an allocation sized from the input fails there (the process
/// aborts) instead of swapping the machine.
pub const ADDRESS_SPACE_LIMIT: &str = "2000000000";

/// Runs the binary with `args` under `prlimit --as=`[`ADDRESS_SPACE_LIMIT`]; `None`, with a
/// note, when prlimit (util-linux) is not installed.
pub fn shadowdiff_limited(args: &[&str]) -> Option<Output> {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed, so memory cannot be bounded");
        return None;
    }
    Some(
        Command::new("prlimit")
            .arg(format!("--as={ADDRESS_SPACE_LIMIT}"))
            .arg("--")
            .arg(bin())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run shadowdiff under prlimit"),
    )
}

/// Checks a run on bad input ended as the README promises: an exit code of 0 to 3 (no
/// panic, no abort, no signal) and standard error naming `input`.
pub fn assert_clean_exit_naming(o: &Output, input: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0..=3)) && !err.contains("panicked at"),
        "{}",
        describe(o)
    );
    assert!(
        err.contains(input),
        "stderr does not name {input}: {}",
        describe(o)
    );
}

/// Runs the binary off the async runtime so in-process servers keep serving.
pub async fn shadowdiff_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        shadowdiff(&a)
    })
    .await
    .unwrap()
}

/// Exit code, stdout and stderr of a finished run, for assertions that explain themselves.
pub fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Reads a result JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The interface entry named `name` in a result.
pub fn interface<'a>(result: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["interface"] == name)
        .unwrap_or_else(|| panic!("no interface {name} in {result:#}"))
}

/// Checks `total` equals the sum of the outcome counts, in the summary and every interface.
pub fn assert_counts_consistent(result: &serde_json::Value) {
    const CLASSES: [&str; 7] = [
        "identical",
        "noise_only",
        "different",
        "missing_rule",
        "candidate_error",
        "baseline_error",
        "skipped",
    ];
    let check = |o: &serde_json::Value| {
        let sum: u64 = CLASSES.iter().map(|c| o[*c].as_u64().unwrap()).sum();
        assert_eq!(o["total"].as_u64().unwrap(), sum, "{o:#}");
    };
    check(&result["summary"]);
    for i in result["interfaces"].as_array().unwrap() {
        check(i);
    }
    assert_valid_result(result);
}

/// Checks `result` against the committed result schema, which scripts rely on.
pub fn assert_valid_result(result: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schema/result.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(result)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// A port that was free a moment ago (for servers that cannot report a port 0 binding).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx started from a `server { ... }` block, stopped when dropped.
pub struct Nginx {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// The nginx binary, or `None` (with a note) when it is not installed and not required.
pub fn nginx_binary() -> Option<PathBuf> {
    for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    if std::env::var_os("SHADOWDIFF_REQUIRE_NGINX").is_some() {
        panic!("nginx is required (SHADOWDIFF_REQUIRE_NGINX is set) but not installed");
    }
    eprintln!("skipped: nginx not installed");
    None
}

impl Nginx {
    /// Starts nginx with `server_body` inside `server { listen ...; <server_body> }`.
    pub fn start(bin: &Path, server_body: &str) -> Nginx {
        Nginx::start_listen(bin, "", server_body)
    }

    /// [`Nginx::start`] with `params` after the listen address (`ssl http2`).
    pub fn start_listen(bin: &Path, params: &str, server_body: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("error.log");
        let (port, child) = start_on_free_port("nginx", &log, |port, attempt| {
            let d = dir.path().display();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  default_type application/json;\n\
                 server {{\n    listen 127.0.0.1:{port} {params};\n{server_body}\n  }}\n}}\n"
            );
            let conf_path = dir.path().join(format!("nginx-{attempt}.conf"));
            std::fs::write(&conf_path, conf).unwrap();
            Command::new(bin)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start nginx")
        });
        Nginx {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server with `spawn(port, attempt)` on a free loopback port, trying again on
/// another port when the child loses the race for it; ready when the port accepts
/// connections. Panics with the server's `log` when five attempts fail.
fn start_on_free_port(
    what: &str,
    log: &Path,
    mut spawn: impl FnMut(u16, usize) -> std::process::Child,
) -> (u16, std::process::Child) {
    for attempt in 0..5 {
        let port = free_port();
        let mut child = spawn(port, attempt);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (port, child);
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not start: {log}");
}

/// The haproxy binary, or `None` (with a note) when it is not installed and
/// `SHADOWDIFF_REQUIRE_HAPROXY` is not set.
pub fn haproxy_binary() -> Option<PathBuf> {
    required_tool(
        &[
            "/usr/sbin/haproxy",
            "/usr/local/sbin/haproxy",
            "/usr/bin/haproxy",
        ],
        "SHADOWDIFF_REQUIRE_HAPROXY",
        "haproxy",
    )
}

/// haproxy in the foreground (`-db`), started from the lines that follow a frontend's
/// `bind` (its rules, then any `backend` sections), stopped when dropped.
pub struct Haproxy {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts haproxy with `frontend fe` bound to a free loopback port, followed by `body`.
    pub fn start(bin: &Path, body: &str) -> Haproxy {
        Haproxy::start_bind(bin, "", body)
    }

    /// [`Haproxy::start`] with `params` after the bind address (`ssl crt ...`).
    pub fn start_bind(bin: &Path, params: &str, body: &str) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("haproxy.log");
        let (port, child) = start_on_free_port("haproxy", &log, |port, attempt| {
            // Timeouts are set because haproxy warns without them and a hung test should
            // end; `maxconn` because the default follows the file-descriptor limit.
            let conf = format!(
                "global\n  maxconn 4096\n\
                 defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend fe\n  bind 127.0.0.1:{port} {params}\n{body}\n"
            );
            let conf_path = dir.path().join(format!("haproxy-{attempt}.cfg"));
            std::fs::write(&conf_path, conf).unwrap();
            Command::new(bin)
                .arg("-db")
                .arg("-f")
                .arg(&conf_path)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start haproxy")
        });
        Haproxy {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tool the tests drive, or `None` (with a note) when it is not installed and the
/// environment variable `require` is not set; with it set, a missing tool fails the test.
pub fn required_tool(paths: &[&str], require: &str, what: &str) -> Option<PathBuf> {
    for p in paths {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    if std::env::var_os(require).is_some() {
        panic!("{what} is required ({require} is set) but not installed");
    }
    eprintln!("skipped: {what} not installed (set {require} to make this an error)");
    None
}

/// wrk, the load generator the tap's tests drive.
pub fn wrk_binary() -> Option<PathBuf> {
    required_tool(
        &["/usr/bin/wrk", "/usr/local/bin/wrk"],
        "SHADOWDIFF_REQUIRE_WRK",
        "wrk",
    )
}

/// The headless browser used to check the HTML report.
pub fn chromium_binary() -> Option<PathBuf> {
    required_tool(
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        "SHADOWDIFF_REQUIRE_CHROMIUM",
        "chromium",
    )
}

/// xmllint, for validating JUnit output against the XSD.
pub fn xmllint_binary() -> Option<PathBuf> {
    required_tool(
        &["/usr/bin/xmllint", "/usr/local/bin/xmllint"],
        "SHADOWDIFF_REQUIRE_XMLLINT",
        "xmllint",
    )
}

/// Loads `file` in headless Chromium and returns (the DOM after scripts ran, the console
/// messages the page logged). The browser may not touch the network: every background
/// service is off and its profile is a fresh temporary directory.
pub fn chromium_dump_dom(chromium: &Path, file: &Path) -> (String, Vec<String>) {
    let out = chromium_run(chromium, &["--dump-dom".to_string()], file);
    // Chromium logs every console message of the page (errors, CSP violations, uncaught
    // exceptions) as `...:CONSOLE:<line>] "<message>", source: <url>`.
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// Runs headless Chromium on `file` with `args` added (`--dump-dom`, `--screenshot=PATH`,
/// `--window-size=W,H`, ...), as [`chromium_dump_dom`] does, and checks that it succeeded.
pub fn chromium_run(chromium: &Path, args: &[String], file: &Path) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `shadowdiff replay REC --baseline B --candidate C --json JSON EXTRA...` off the
/// runtime and returns the run with its result, whose counts are checked to add up.
pub async fn replay_json(
    rec: &Path,
    baseline: &str,
    candidate: &str,
    json: &Path,
    extra: &[&str],
) -> (Output, serde_json::Value) {
    let json_arg = json.display();
    let mut args: Vec<&dyn std::fmt::Display> = vec![&"--json", &json_arg];
    args.extend(extra.iter().map(|s| s as &dyn std::fmt::Display));
    let o = replay_run(rec, baseline, candidate, &args).await;
    let r = read_json(json);
    assert_counts_consistent(&r);
    (o, r)
}

/// Runs `shadowdiff replay REC --baseline BASELINE --candidate CANDIDATE EXTRA...`.
pub async fn replay_run(
    rec: &Path,
    baseline: &str,
    candidate: &str,
    extra: &[&dyn std::fmt::Display],
) -> Output {
    let mut args: Vec<String> = vec![
        "replay".into(),
        rec.display().to_string(),
        "--baseline".into(),
        baseline.into(),
        "--candidate".into(),
        candidate.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    shadowdiff_async(args).await
}

/// `n` GET exchanges `e0`, `e1`, ... for `PATH/0`, `PATH/1`, ..., recorded 1 µs apart.
pub fn numbered_gets(n: i64, path: &str) -> Vec<Exchange> {
    (0..n)
        .map(|i| get(&format!("e{i}"), &format!("{path}/{i}"), i))
        .collect()
}

/// A server that answers `200 {}` to everything, `ms` milliseconds late (asynchronously,
/// so it holds no runtime thread while it waits).
pub async fn late_server(ms: u64) -> TestServer {
    TestServer::start_delayed(move |_| {
        (
            Answer::json(200, "{}"),
            Some(std::time::Duration::from_millis(ms)),
        )
    })
    .await
}

/// Certificates made at test time (rcgen), as PEM files in a directory of their own: a CA
/// the tests trust (`ca.pem`) and a stranger CA nobody trusts; server certificates for
/// `localhost` and 127.0.0.1 (`server`), expired (`expired`), for another name (`wrong`) and
/// from the stranger (`unknown`); a CA for clients (`client-ca.pem`), a client certificate
/// from it (`client`) and one from the stranger (`rogue`). Each `NAME` is `NAME.pem` (the
/// certificate), `NAME.key` and `NAME.both.pem` (both, as haproxy takes them).
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            write(&format!("{name}.pem"), &p.self_signed(&key).unwrap().pem());
            (p, key)
        };
        let (ca_p, ca_k) = ca("ca");
        let (st_p, st_k) = ca("stranger");
        let (cl_p, cl_k) = ca("client-ca");
        let leaf = |name: &str, sans: &[&str], by: (&CertificateParams, &KeyPair), expired| {
            let mut p =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            if expired {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &Issuer::from_params(by.0, by.1)).unwrap();
            write(&format!("{name}.pem"), &cert.pem());
            write(&format!("{name}.key"), &key.serialize_pem());
            write(
                &format!("{name}.both.pem"),
                &format!("{}{}", cert.pem(), key.serialize_pem()),
            );
        };
        let here = ["localhost", "127.0.0.1"];
        leaf("server", &here, (&ca_p, &ca_k), false);
        leaf("expired", &here, (&ca_p, &ca_k), true);
        leaf("wrong", &["other.example"], (&ca_p, &ca_k), false);
        leaf("unknown", &here, (&st_p, &st_k), false);
        leaf("client", &["client"], (&cl_p, &cl_k), false);
        leaf("rogue", &["client"], (&st_p, &st_k), false);
        Pki { dir }
    }

    /// The path of one of the files, as a string for a command line or a config.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// nginx lines that serve TLS with the certificate `name`.
    pub fn nginx_tls(&self, name: &str) -> String {
        format!(
            "    ssl_certificate {};\n    ssl_certificate_key {};\n",
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key"))
        )
    }
}
