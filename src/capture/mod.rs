//! `shadowdiff capture`: records the HTTP traffic reaching ports of this host without being
//! in its path. Packets come from the kernel's ring ([`ring`], filtered in the kernel by
//! [`bpf`]) on a thread of their own, become exchanges through the packet pipeline that
//! `import --from pcap` uses ([`crate::recording::packets`]), and go to the tap's recorder
//! (sampling, redaction, rotation, `.partial` then rename, mode 0600). Every exchange seen
//! ends in one place: recorded, sampled out, dropped by the recorder (by reason), or lost
//! before it could be read (by reason), and the end-of-run line and `/metrics` say so.

pub mod bpf;
pub mod ring;

use crate::cli::CaptureArgs;
use crate::config::parse_duration;
use crate::error::{Error, Result};
use crate::exchange::Exchange;
use crate::exchange::Side;
use crate::interface::InterfaceKey;
use crate::recording::import::{ImportReport, Sink};
use crate::recording::packets::order::NOTE_OUT_OF_ORDER;
use crate::recording::packets::{Ctx, Frame, Limits, Pipeline, PACKET_REASONS};
use crate::recording::writer::refuse_existing_out;
use crate::report::words::count_of;
use crate::tap::config::{parse_rotation, parse_size};
use crate::tap::metrics::{self, counter, labelled};
use crate::tap::recorder::{Captured, DropReason, Recorder, RecorderConfig, RecorderHandle};
use crate::tap::redact::Redactor;
use crate::tap::sample::Sampler;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes kept of each packet: any IP packet whole.
const SNAPLEN: u32 = 65_535;
/// How long the ring reader waits for a block before it looks at the clock and the stop.
const POLL_MS: i32 = 100;
/// The salt of the recording sample: the tap's, so the same ids are picked.
const RECORD_SALT: u64 = 0;
/// Frames between looks for written exchanges to free: often enough that the recorder
/// finds room for its next batch even inside a full ring block.
const SPENT_EVERY: u64 = 64;
/// How often the counts `/metrics` serves are brought up to date.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// Set by SIGTERM or SIGINT.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// The validated flags of `capture`.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    /// Device captured from.
    pub device: String,
    /// Server ports captured.
    pub ports: Vec<u16>,
    /// Recording file.
    pub out: PathBuf,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many exchanges seen.
    pub max_exchanges: Option<u64>,
    /// Recording sample.
    pub sample: f64,
    /// Per-interface minimum per file.
    pub min_per_interface: u32,
    /// Extra headers to redact.
    pub redact_headers: Vec<String>,
    /// JSON paths to redact.
    pub redact_json_paths: Vec<String>,
    /// Body bytes kept per message.
    pub max_body: usize,
    /// Rotation by size.
    pub rotate_size: Option<u64>,
    /// Rotation by age.
    pub rotate_interval: Option<Duration>,
    /// Where `/metrics` is served.
    pub metrics: Option<SocketAddr>,
    /// The kernel ring's size.
    pub ring: ring::RingSize,
    /// Recorder queue length.
    pub queue_size: usize,
    /// Recorder queue bytes.
    pub queue_bytes: u64,
    /// What the reassembler may hold: the idle timeout and the bytes over all connections.
    pub limits: Limits,
}

impl CaptureConfig {
    /// Validates the flags of `capture`; errors name the flag.
    pub fn from_args(a: &CaptureArgs) -> Result<Self> {
        let mut ports = a.port.clone();
        ports.sort_unstable();
        ports.dedup();
        if ports.contains(&0) {
            return Err(Error::Usage(
                "--port: expected a port from 1 to 65535".into(),
            ));
        }
        if bpf::program(&ports, SNAPLEN, true).is_none() {
            return Err(Error::Usage(format!(
                "--port: {} ports given; expected at most 59 (the kernel filter's jumps are 8-bit)",
                ports.len()
            )));
        }
        let duration = match &a.duration {
            Some(s) => Some(parse_duration("duration", s)?),
            None => None,
        };
        let (rotate_size, rotate_interval) =
            parse_rotation(a.rotate_size.as_deref(), a.rotate_interval.as_deref())?;
        let metrics = match &a.metrics {
            Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| {
                Error::Usage(format!(
                    "--metrics: expected an address like 127.0.0.1:9090, found {s:?}"
                ))
            })?),
            None => None,
        };
        let ring_bytes = parse_size("ring-size", &a.ring_size)?;
        if ring_bytes < 4 << 20 {
            return Err(Error::Usage(format!(
                "--ring-size: expected at least 4MiB, found {}",
                a.ring_size
            )));
        }
        let idle = parse_duration("idle-timeout", &a.idle_timeout)?;
        if idle < Duration::from_millis(100) {
            return Err(Error::Usage(format!(
                "--idle-timeout: expected at least 100ms, found {}",
                a.idle_timeout
            )));
        }
        let stream_memory = parse_size("stream-memory", &a.stream_memory)?;
        if stream_memory < 1 << 20 {
            return Err(Error::Usage(format!(
                "--stream-memory: expected at least 1MiB, found {}",
                a.stream_memory
            )));
        }
        let max_body = usize::try_from(parse_size("max-body", &a.max_body)?)
            .map_err(|_| Error::Usage(format!("--max-body: {} is too large", a.max_body)))?;
        // Bodies are cut at --max-body as they are read: the rest is never held.
        let limits = Limits {
            idle_us: i64::try_from(idle.as_micros()).unwrap_or(i64::MAX),
            max_held: usize::try_from(stream_memory).unwrap_or(usize::MAX),
            max_body,
        };
        if a.queue_size == 0 {
            return Err(Error::Usage("--queue-size: expected at least 1".into()));
        }
        if !(0.0..=1.0).contains(&a.sample) {
            return Err(Error::Usage(format!(
                "--sample: expected a share between 0 and 1, found {}",
                a.sample
            )));
        }
        Ok(CaptureConfig {
            device: a.device.clone(),
            ports,
            out: a.out.clone(),
            duration,
            max_exchanges: a.max_exchanges,
            sample: a.sample,
            min_per_interface: a.min_per_interface,
            redact_headers: a.redact_header.clone(),
            redact_json_paths: a.redact_json_path.clone(),
            max_body,
            rotate_size,
            rotate_interval,
            metrics,
            ring: ring::RingSize::of(ring_bytes),
            queue_size: a.queue_size,
            queue_bytes: parse_size("queue-bytes", &a.queue_bytes)?.max(1),
            limits,
        })
    }
}

/// Where the pipeline's exchanges go: the sample, then the recorder.
struct ToRecorder {
    sampler: Sampler,
    handle: RecorderHandle,
    min_per_interface: u32,
    max_body: usize,
    /// Makes ids unique across captures: the capture's start time.
    prefix: String,
}

fn cut(body: &mut Bytes, truncated: &mut bool, max: usize) {
    if body.len() > max {
        body.truncate(max);
        *truncated = true;
    }
}

impl Sink for ToRecorder {
    fn put(&mut self, mut ex: Exchange) -> Result<()> {
        let numbered = ex.id.strip_prefix("pcap-").map_or(0, |_| "pcap-".len());
        ex.id.replace_range(..numbered, &self.prefix);
        cut(
            &mut ex.request.body,
            &mut ex.request.body_truncated,
            self.max_body,
        );
        if let Some(r) = ex.response.as_mut() {
            cut(&mut r.body, &mut r.body_truncated, self.max_body);
        }
        let sampled = self.sampler.picks(&ex.id);
        let record = sampled
            || (self.min_per_interface > 0
                && ex.interface.as_deref().is_none_or(|i| self.handle.needs(i)));
        if record {
            // Waits while the recorder's queue is full: the capture is not in the traffic
            // path, and the kernel's ring holds the packets meanwhile (its overflow is
            // counted by the kernel, then as holes in streams).
            let _ = self.handle.submit_waiting(Captured {
                exchange: ex,
                sampled,
                heads: None,
            });
        } else {
            self.handle
                .stats()
                .sampled_out
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// What the ring reader counted, as `/metrics` and the end-of-run summary show it.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Exchanges the pipeline produced (recorded, sampled out or dropped by the recorder).
    pub produced: u64,
    /// Exchanges lost before they could be read, by reason (a whole stream counts once).
    pub lost: BTreeMap<String, u64>,
    /// Packets unreadable by reason (their streams' losses are counted in `lost`).
    pub packets_unreadable: BTreeMap<String, u64>,
    /// Frames read from the ring.
    pub frames: u64,
    /// The kernel's counts.
    pub kernel: ring::KernelStats,
    /// Ring blocks whose layout could not be read whole.
    pub bad_blocks: u64,
    /// Connections followed now.
    pub live_connections: u64,
    /// Bytes those connections hold now.
    pub held_bytes: u64,
    /// The most bytes they held at once.
    pub peak_held_bytes: u64,
    /// Handled events worth knowing (retransmissions, reordering), by kind.
    pub notes: BTreeMap<String, u64>,
    /// Exchanges recorded without their response.
    pub without_response: u64,
    /// Exchanges complete and held until the requests that began before them are done.
    pub held: u64,
    /// Exchanges handed on after one whose request began later.
    pub out_of_order: u64,
}

impl Counts {
    fn from_report(r: &ImportReport) -> Counts {
        let mut c = Counts {
            produced: r.written,
            without_response: r.written - r.with_response,
            notes: r.notes.clone(),
            out_of_order: r.notes.get(NOTE_OUT_OF_ORDER).copied().unwrap_or(0),
            ..Default::default()
        };
        for (k, v) in &r.skipped {
            if PACKET_REASONS.contains(&k.as_str()) {
                c.packets_unreadable.insert(k.clone(), *v);
            } else {
                c.lost.insert(k.clone(), *v);
            }
        }
        c
    }

    /// Exchanges lost, over every reason.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text of the capture's counts.
/// Reasons as metric labels, with their counts.
fn labels<'a>(reasons: impl Iterator<Item = (&'a String, &'a u64)>) -> Vec<(String, u64)> {
    reasons.map(|(k, v)| (label(k), *v)).collect()
}

fn render(c: &Counts, h: &RecorderHandle) -> String {
    let s = h.stats();
    let mut out = String::new();
    let o = &mut out;
    let gauge = |o: &mut String, name: &str, help: &str, v: u64| {
        metrics::gauge(o, name, help, i64::try_from(v).unwrap_or(i64::MAX))
    };
    counter(
        o,
        "shadowdiff_capture_exchanges_seen_total",
        "Exchanges seen: recorded + sampled out + dropped + lost.",
        c.produced + c.lost_total(),
    );
    counter(
        o,
        "shadowdiff_capture_recorded_total",
        "Exchanges in the recording files.",
        s.recorded.load(Ordering::Relaxed),
    );
    counter(
        o,
        "shadowdiff_capture_sampled_out_total",
        "Exchanges the sample left out.",
        s.sampled_out.load(Ordering::Relaxed),
    );
    counter(
        o,
        "shadowdiff_capture_frames_total",
        "Packets read from the ring.",
        c.frames,
    );
    counter(
        o,
        "shadowdiff_capture_kernel_drops_total",
        "Packets the kernel dropped because the ring was full.",
        c.kernel.drops,
    );
    counter(
        o,
        "shadowdiff_capture_ring_freezes_total",
        "Times the kernel found the ring full.",
        c.kernel.freezes,
    );
    counter(
        o,
        "shadowdiff_capture_bad_blocks_total",
        "Ring blocks whose layout could not be read whole.",
        c.bad_blocks,
    );
    counter(
        o,
        "shadowdiff_capture_out_of_order_total",
        "Exchanges handed to the recorder after one whose request began later.",
        c.out_of_order,
    );
    labelled(
        o,
        "shadowdiff_capture_dropped_total",
        "Exchanges the recorder could not write, by reason.",
        "reason",
        DropReason::ALL.iter().map(|r| (r.name(), s.dropped(*r))),
    );
    let lost = labels(c.lost.iter());
    labelled(
        o,
        "shadowdiff_capture_lost_total",
        "Exchanges lost before they could be read, by reason (a whole stream counts once).",
        "reason",
        lost.iter().map(|(l, v)| (l.as_str(), *v)),
    );
    gauge(
        o,
        "shadowdiff_capture_live_connections",
        "Connections followed now.",
        c.live_connections,
    );
    gauge(
        o,
        "shadowdiff_capture_held_exchanges",
        "Exchanges complete and held until the requests that began before them are done (not yet in seen).",
        c.held,
    );
    gauge(
        o,
        "shadowdiff_capture_held_bytes",
        "Bytes the followed connections hold (bounded by --stream-memory).",
        c.held_bytes,
    );
    gauge(
        o,
        "shadowdiff_capture_peak_held_bytes",
        "The most bytes the followed connections held at once.",
        c.peak_held_bytes,
    );
    let given_up = labels(c.notes.iter().filter(|(k, _)| k.contains("given up")));
    labelled(
        o,
        "shadowdiff_capture_connections_given_up_total",
        "Connections given up to bound memory, by reason (what they completed is kept).",
        "reason",
        given_up.iter().map(|(l, v)| (l.as_str(), *v)),
    );
    out
}

/// Serves `/metrics` from the latest published counts, one request per connection.
fn serve_metrics(l: TcpListener, counts: Arc<Mutex<Counts>>, h: RecorderHandle) {
    for conn in l.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4096];
        let mut got = 0;
        while got < buf.len() {
            match conn.read(&mut buf[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got += n;
                    if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
        let head = &buf[..got];
        let (status, body) = if head.starts_with(b"GET /metrics ") {
            let c = counts.lock().map(|c| c.clone()).unwrap_or_default();
            ("200 OK", render(&c, &h))
        } else {
            (
                "404 Not Found",
                "only /metrics is served here\n".to_string(),
            )
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

/// The error for a process that may not capture.
fn no_privilege(device: &str, e: &std::io::Error) -> Error {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "shadowdiff".into());
    Error::Usage(format!(
        "capture: cannot open a packet socket on {device}: {e}. Capturing needs the cap_net_raw capability (and cap_net_admin for the ring); grant them to the binary with `sudo setcap cap_net_raw,cap_net_admin+ep {exe}`, or run it as root"
    ))
}

/// Runs a capture until SIGTERM, SIGINT, `--duration` or `--max-exchanges`.
pub fn run(a: &CaptureArgs, quiet: bool) -> Result<()> {
    let cfg = CaptureConfig::from_args(a)?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let rotating = cfg.rotate_size.is_some() || cfg.rotate_interval.is_some();
    refuse_existing_out(&cfg.out, rotating, "capture")?;
    let redactor = Redactor::new(&cfg.redact_headers, &cfg.redact_json_paths)
        .map_err(|e| Error::Usage(format!("--redact-json-path {e}")))?;
    if ring::device_index(&cfg.device).is_none() {
        return Err(Error::Usage(format!(
            "--device {}: no such network device; the devices here are: {}",
            cfg.device,
            ring::devices().join(", ")
        )));
    }
    let loopback = ring::is_loopback(&cfg.device);
    let filter = bpf::program(&cfg.ports, SNAPLEN, loopback)
        .ok_or_else(|| Error::Usage("--port: too many ports".into()))?;
    let mut ring = match ring::Ring::open(&cfg.device, &filter, cfg.ring) {
        Ok(r) => r,
        Err(ring::OpenError::NoPrivilege(e)) => return Err(no_privilege(&cfg.device, &e)),
        Err(ring::OpenError::NoDevice) => {
            return Err(Error::Usage(format!(
                "--device {}: no such network device; the devices here are: {}",
                cfg.device,
                ring::devices().join(", ")
            )))
        }
        Err(ring::OpenError::Other(step, e)) => {
            if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                return Err(no_privilege(&cfg.device, &e));
            }
            return Err(Error::Runtime {
                side: Side::Input,
                message: format!("capture on {}: {step}: {e}", cfg.device),
            });
        }
    };
    let metrics_listener = match cfg.metrics {
        Some(addr) => Some(TcpListener::bind(addr).map_err(|e| Error::Runtime {
            side: Side::Input,
            message: format!("--metrics: cannot listen on {addr}: {e}"),
        })?),
        None => None,
    };
    let (recorder, spent) = Recorder::start_returning(
        RecorderConfig {
            out: cfg.out.clone(),
            rotate_size: cfg.rotate_size,
            rotate_interval: cfg.rotate_interval,
            min_per_interface: cfg.min_per_interface,
            queue_size: cfg.queue_size,
            queue_bytes: cfg.queue_bytes,
            interface_key: InterfaceKey::Default,
            write_delay: None,
            source: "capture",
        },
        redactor,
    )?;
    let handle = recorder.handle();
    let published = Arc::new(Mutex::new(Counts::default()));
    if let Some(l) = metrics_listener {
        if !quiet {
            if let Ok(a) = l.local_addr() {
                eprintln!("metrics on {a}");
            }
        }
        let (c, h) = (published.clone(), handle.clone());
        std::thread::Builder::new()
            .name("shadowdiff-capture-metrics".into())
            .spawn(move || serve_metrics(l, c, h))
            .map_err(|e| Error::internal("cannot start the metrics thread", e))?;
    }
    if !quiet {
        eprintln!(
            "capturing on {} (tcp port {})",
            cfg.device,
            cfg.ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let started = Instant::now();
    let prefix = format!(
        "cap-{}-",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let sink = ToRecorder {
        sampler: Sampler::new(cfg.sample, RECORD_SALT),
        handle: handle.clone(),
        min_per_interface: cfg.min_per_interface,
        max_body: cfg.max_body,
        prefix,
    };
    let device = cfg.device.clone();
    let (duration, max) = (cfg.duration, cfg.max_exchanges);
    let pub2 = published.clone();
    let reader = std::thread::Builder::new()
        .name("shadowdiff-capture".into())
        .spawn(move || {
            let stop = Stop {
                started,
                duration,
                max,
            };
            read_ring(
                &mut ring,
                sink,
                &device,
                &stop,
                Pipeline::with_limits(cfg.limits),
                &spent,
                &pub2,
            )
        })
        .map_err(|e| Error::internal("cannot start the ring reader thread", e))?;
    let counts = reader
        .join()
        .map_err(|_| Error::internal("the ring reader stopped", "it panicked"))??;
    let files = recorder.close();
    if let Ok(mut p) = published.lock() {
        *p = counts.clone();
    }
    if !quiet {
        eprint!("{}", summary(&counts, &handle, &files));
    }
    Ok(())
}

/// When the ring reader stops, besides a signal.
struct Stop {
    started: Instant,
    duration: Option<Duration>,
    max: Option<u64>,
}

/// Wall-clock time in microseconds since the epoch, the clock of the ring's timestamps.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The ring reader's loop: blocks to frames to the pipeline, until a stop. Exchanges the
/// recorder has written come back on `spent` and are freed here, on the thread that
/// allocated them.
fn read_ring(
    ring: &mut ring::Ring,
    mut sink: ToRecorder,
    device: &str,
    stop: &Stop,
    mut pipeline: Pipeline,
    spent: &Receiver<Vec<Exchange>>,
    published: &Mutex<Counts>,
) -> Result<Counts> {
    let Stop {
        started,
        duration,
        max,
    } = *stop;
    let ring_retire_ms = ring.retire_ms();
    let mut report = ImportReport::new("packets");
    let file = PathBuf::from(device);
    let mut frames: u64 = 0;
    let mut bad_blocks: u64 = 0;
    let mut last_publish = Instant::now();
    let mut failure: Option<Error> = None;
    let publish = |report: &ImportReport,
                   frames: u64,
                   bad: u64,
                   kernel: ring::KernelStats,
                   pipeline: &Pipeline| {
        let mut c = Counts::from_report(report);
        c.frames = frames;
        c.bad_blocks = bad;
        c.kernel = kernel;
        c.live_connections = pipeline.live_connections() as u64;
        c.held = pipeline.held() as u64;
        c.held_bytes = pipeline.held_bytes() as u64;
        c.peak_held_bytes = pipeline.peak_held_bytes() as u64;
        c
    };
    let mut stopping = false;
    loop {
        if !stopping
            && (STOP.load(Ordering::Relaxed)
                || duration.is_some_and(|d| started.elapsed() >= d)
                || max.is_some_and(|m| report.written + lost(&report) >= m))
        {
            // Blocks the kernel already filled are still read; then the ring is left.
            stopping = true;
        }
        // Once stopping, the block the kernel is still filling is waited for too: it is
        // handed over within its retire timeout.
        let timeout = if stopping {
            2 * ring_retire_ms as i32
        } else {
            POLL_MS
        };
        let mut step_err: Option<Error> = None;
        let got = ring.next_block(timeout, &mut |data, p| {
            if step_err.is_some() {
                return;
            }
            frames += 1;
            if frames % SPENT_EVERY == 0 {
                spent.try_iter().for_each(drop);
            }
            let frame = Frame {
                n: frames,
                ts_us: p.ts_us,
                link: pcap_file::DataLink::RAW,
                data,
                cut: p.snaplen < p.len,
            };
            let mut ctx = Ctx {
                sink: &mut sink,
                report: &mut report,
                file: &file,
                packet: frames,
            };
            if let Err(e) = pipeline.frame(&frame, &mut ctx) {
                step_err = Some(e);
            }
        });
        spent.try_iter().for_each(drop);
        if let Some(e) = step_err {
            failure = Some(e);
            break;
        }
        match got {
            Ok(Some(bad)) => bad_blocks += bad,
            Ok(None) if stopping => break,
            Ok(None) => {
                // A quiet link: the clock still moves, so idle connections are given up
                // and exchanges held behind a request open past the order's bound are
                // written without waiting for the next packet. Packets still in the block
                // being filled are at most its retire timeout old, so the clock is taken
                // back by twice that, never past a packet still to come.
                let mut ctx = Ctx {
                    sink: &mut sink,
                    report: &mut report,
                    file: &file,
                    packet: frames,
                };
                let now = now_us() - 2_000 * i64::from(ring_retire_ms);
                if let Err(e) = pipeline.tick(now, &mut ctx) {
                    failure = Some(e);
                    break;
                }
            }
            Err(e) => {
                failure = Some(Error::Runtime {
                    side: Side::Input,
                    message: format!("capture on {device}: reading the ring: {e}"),
                });
                break;
            }
        }
        if last_publish.elapsed() >= PUBLISH_EVERY {
            last_publish = Instant::now();
            let c = publish(&report, frames, bad_blocks, ring.stats(), &pipeline);
            if let Ok(mut p) = published.lock() {
                *p = c;
            }
        }
    }
    let kernel = ring.stats();
    let mut ctx = Ctx {
        sink: &mut sink,
        report: &mut report,
        file: Path::new(device),
        packet: 0,
    };
    pipeline.finish(&mut ctx)?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(publish(&report, frames, bad_blocks, kernel, &pipeline))
}

fn lost(r: &ImportReport) -> u64 {
    r.skipped
        .iter()
        .filter(|(k, _)| !PACKET_REASONS.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum()
}

/// The end-of-run account: the identity, then losses and drops by reason.
fn summary(c: &Counts, h: &RecorderHandle, files: &[crate::tap::recorder::Written]) -> String {
    let s = h.stats();
    let recorded = s.recorded.load(Ordering::Relaxed);
    let sampled = s.sampled_out.load(Ordering::Relaxed);
    let dropped: u64 = DropReason::ALL.iter().map(|r| s.dropped(*r)).sum();
    let lost = c.lost_total();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "stopped: {} seen = {recorded} recorded + {sampled} sampled out + {dropped} dropped + {lost} lost",
        count_of(c.produced + lost, "exchange", "exchanges"),
    );
    let _ = writeln!(o, "  recorded without a response: {}", c.without_response);
    for r in DropReason::ALL {
        if s.dropped(r) > 0 {
            let _ = writeln!(o, "  dropped {:>8}  {}", s.dropped(r), r.name());
        }
    }
    for (k, v) in &c.lost {
        let _ = writeln!(o, "  lost    {v:>8}  {k}");
    }
    let _ = writeln!(
        o,
        "  packets: {} read, {} dropped by the kernel (ring full), {} ring freezes, {} ring blocks unreadable",
        c.frames, c.kernel.drops, c.kernel.freezes, c.bad_blocks
    );
    for (k, v) in &c.packets_unreadable {
        let _ = writeln!(o, "  packets {v:>8}  {k}");
    }
    for (k, v) in &c.notes {
        let _ = writeln!(o, "  note    {v:>8}  {k}");
    }
    let _ = writeln!(
        o,
        "  streams: at most {} bytes held at once",
        c.peak_held_bytes
    );
    let _ = writeln!(
        o,
        "  files: {}",
        if files.is_empty() {
            "none".to_string()
        } else {
            files
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    o
}
