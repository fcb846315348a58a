//! The tap's counters and their Prometheus text rendering. Every counter is a relaxed atomic
//! bumped on the proxy path (no lock, no allocation); rendering reads them when `/metrics`
//! is scraped. Written by hand: the text format is small and a registry crate would put an
//! indirection on the hot path for nothing.

use super::recorder::{DropReason, RecorderStats};
use super::shadow::ShadowStats;
use super::upstream::UpstreamError;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds of the latency histogram buckets, in microseconds.
const LATENCY_BOUNDS_US: [u64; 16] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// A fixed-bucket latency histogram (cumulative buckets are computed when rendering).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe_us(&self, us: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|b| *b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in LATENCY_BOUNDS_US.iter().enumerate() {
            cum += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1e6);
        }
        cum += self.buckets[LATENCY_BOUNDS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

/// Why the tap refused a request itself (never sent upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A CONNECT request: the tap is not a forward proxy.
    Connect,
    /// An absolute-form request URI for a host other than the upstream or the tap.
    ForeignHost,
    /// The request body is larger than `--max-request-body`.
    TooLarge,
    /// The request head does not parse (hyper answers 400 itself), the request could not
    /// be turned into an upstream request, or it was the HTTP/2 connection preface after an
    /// HTTP/1.1 exchange on its connection.
    BadRequest,
    /// The request head is larger than `--max-header-bytes` (431), or its target longer
    /// than hyper takes (414).
    HeadTooLarge,
    /// The request names credentials (`user:pw@`) in its target, `:authority` or Host.
    Userinfo,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::Connect,
        Refusal::ForeignHost,
        Refusal::TooLarge,
        Refusal::BadRequest,
        Refusal::HeadTooLarge,
        Refusal::Userinfo,
    ];

    fn name(self) -> &'static str {
        match self {
            Refusal::Connect => "connect",
            Refusal::ForeignHost => "foreign_host",
            Refusal::TooLarge => "too_large",
            Refusal::BadRequest => "bad_request",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::Userinfo => "userinfo",
        }
    }
}

/// Why the tap closed a client connection that was too slow or idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// No complete request head within `--head-timeout`.
    Head,
    /// No request in progress (HTTP/2: no open stream) for `--idle-timeout`.
    Idle,
    /// A TLS handshake not finished within `--head-timeout` (a client that never sends its
    /// ClientHello, or sends it a byte at a time).
    Handshake,
}

impl Timeout {
    const ALL: [Timeout; 3] = [Timeout::Head, Timeout::Idle, Timeout::Handshake];

    fn name(self) -> &'static str {
        match self {
            Timeout::Head => "head",
            Timeout::Idle => "idle",
            Timeout::Handshake => "handshake",
        }
    }
}

/// Counters of the proxy itself.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Exchanges answered (upstream answers and the tap's own 502/504).
    pub proxied: AtomicU64,
    /// Responses by status class (index 0 = 1xx ... 4 = 5xx).
    pub responses: [AtomicU64; 5],
    /// Requests being proxied right now.
    pub in_flight: AtomicI64,
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Client connections open.
    pub connections_open: AtomicI64,
    /// Clients that went away (or broke their request body) before the exchange ended.
    pub client_aborted: AtomicU64,
    refused: [AtomicU64; 6],
    timed_out: [AtomicU64; 3],
    /// TLS handshakes on client connections: completed, failed (not TLS, cut short, no
    /// protocol in common). Those too slow are in the `handshake` timeouts.
    pub tls_handshakes: [AtomicU64; 2],
    /// Certificate reloads on SIGHUP: done, failed (the certificate in use kept).
    pub tls_reloads: [AtomicU64; 2],
    /// Failed attempts to accept a client connection (out of file descriptors and the like).
    pub accept_failures: AtomicU64,
    /// Production's interim (1xx) answers passed on to the client.
    pub interim_forwarded: AtomicU64,
    /// Production's interim (1xx) answers that could not be passed on: HTTP/1.0 clients
    /// may not get one (RFC 9110 section 15.2), and hyper's server sends none but its own
    /// `100 Continue`.
    pub interim_dropped: AtomicU64,
    upstream_errors: [AtomicU64; UpstreamError::ALL.len()],
    /// Request arrival to last response byte, as seen by the tap.
    pub latency: Histogram,
}

impl Metrics {
    /// Counts a refused request and the 4xx answer the tap gave it.
    pub fn refuse(&self, r: Refusal) {
        self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
        self.responses[3].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests refused for `r`.
    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused[r as usize].load(Ordering::Relaxed)
    }

    /// Counts a client connection closed for `t`.
    pub fn time_out(&self, t: Timeout) {
        self.timed_out[t as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Client connections closed for `t`.
    pub fn timed_out(&self, t: Timeout) -> u64 {
        self.timed_out[t as usize].load(Ordering::Relaxed)
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, e: UpstreamError) {
        self.upstream_errors[e as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one answered exchange with its status and latency.
    pub fn answered(&self, status: u16, latency_us: u64) {
        self.proxied.fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        self.latency.observe_us(latency_us);
    }
}

/// Writes a counter in the Prometheus text format.
pub(crate) fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

/// Writes a gauge in the Prometheus text format.
pub(crate) fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// Writes a counter family with one label, a line per value of it.
pub(crate) fn labelled<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (l, v) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {v}");
    }
}

/// Renders every counter in the Prometheus text exposition format (version 0.0.4).
pub fn render(m: &Metrics, rec: &RecorderStats, shadow: Option<&ShadowStats>) -> String {
    let mut out = String::with_capacity(8 << 10);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    counter(
        &mut out,
        "shadowdiff_tap_proxied_total",
        "Exchanges answered to clients (upstream answers and the tap's own 502/504).",
        load(&m.proxied),
    );
    labelled(
        &mut out,
        "shadowdiff_tap_responses_total",
        "Responses to clients by status class, the tap's own refusals included.",
        "class",
        ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .into_iter()
            .zip(m.responses.iter().map(load)),
    );
    gauge(
        &mut out,
        "shadowdiff_tap_in_flight",
        "Requests being proxied now.",
        m.in_flight.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "shadowdiff_tap_connections_total",
        "Client connections accepted.",
        load(&m.connections),
    );
    gauge(
        &mut out,
        "shadowdiff_tap_connections_open",
        "Client connections open now.",
        m.connections_open.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "shadowdiff_tap_client_aborted_total",
        "Exchanges whose client went away before the end (not recorded).",
        load(&m.client_aborted),
    );
    labelled(
        &mut out,
        "shadowdiff_tap_timed_out_total",
        "Client connections closed for a request head or TLS handshake slower than --head-timeout, or no request for --idle-timeout.",
        "reason",
        Timeout::ALL.iter().map(|t| (t.name(), m.timed_out(*t))),
    );
    counter(
        &mut out,
        "shadowdiff_tap_accept_failures_total",
        "Failed attempts to accept a client connection (out of file descriptors and the like).",
        load(&m.accept_failures),
    );
    labelled(
        &mut out,
        "shadowdiff_tap_interim_total",
        "Production's interim (1xx) answers: passed on, or dropped where the client's protocol path cannot carry them.",
        "outcome",
        [
            ("forwarded", load(&m.interim_forwarded)),
            ("dropped", load(&m.interim_dropped)),
        ]
        .into_iter(),
    );
    labelled(
        &mut out,
        "shadowdiff_tap_refused_total",
        "Requests the tap refused itself, never sent upstream.",
        "reason",
        Refusal::ALL.iter().map(|r| (r.name(), m.refused(*r))),
    );
    labelled(
        &mut out,
        "shadowdiff_tap_upstream_errors_total",
        "Production failures answered with 502 or 504 (or a broken body), by kind.",
        "kind",
        UpstreamError::ALL
            .iter()
            .map(|e| (e.name(), load(&m.upstream_errors[*e as usize]))),
    );
    labelled(
        &mut out,
        "shadowdiff_tap_tls_handshakes_total",
        "TLS handshakes with clients, by result (failed: not TLS, cut short, or nothing in common; too slow ones are timeouts).",
        "result",
        ["completed", "failed"]
            .into_iter()
            .zip(m.tls_handshakes.iter().map(load)),
    );
    labelled(
        &mut out,
        "shadowdiff_tap_tls_reloads_total",
        "Certificate reloads on SIGHUP, by result (failed: the certificate in use is kept).",
        "result",
        ["done", "failed"]
            .into_iter()
            .zip(m.tls_reloads.iter().map(load)),
    );
    m.latency.render(
        "shadowdiff_tap_request_duration_seconds",
        "Request arrival to last response byte, as seen by the tap.",
        &mut out,
    );
    counter(
        &mut out,
        "shadowdiff_tap_recorded_total",
        "Exchanges in the recording files (written and handed to the operating system).",
        load(&rec.recorded),
    );
    counter(
        &mut out,
        "shadowdiff_tap_kept_for_minimum_total",
        "Exchanges recorded only because their interface was below --min-per-interface.",
        load(&rec.kept_for_minimum),
    );
    counter(
        &mut out,
        "shadowdiff_tap_sampled_out_total",
        "Exchanges not recorded because the sample did not pick them.",
        load(&rec.sampled_out),
    );
    labelled(
        &mut out,
        "shadowdiff_tap_dropped_total",
        "Exchanges that should have been recorded but were dropped, by reason.",
        "reason",
        DropReason::ALL.iter().map(|r| (r.name(), rec.dropped(*r))),
    );
    gauge(
        &mut out,
        "shadowdiff_tap_queue_length",
        "Exchanges waiting for the recorder.",
        load(&rec.queue_len) as i64,
    );
    gauge(
        &mut out,
        "shadowdiff_tap_recorder_pending",
        "Exchanges written to the recorder's buffers, not yet recorded or dropped (flushed within about a second).",
        load(&rec.pending) as i64,
    );
    gauge(
        &mut out,
        "shadowdiff_tap_queue_bytes",
        "Body bytes waiting for the recorder.",
        load(&rec.queue_bytes) as i64,
    );
    counter(
        &mut out,
        "shadowdiff_tap_files_completed_total",
        "Recording files completed and renamed into place.",
        load(&rec.files_completed),
    );
    counter(
        &mut out,
        "shadowdiff_tap_written_bytes_total",
        "Uncompressed bytes in the recording files (handed to the operating system).",
        load(&rec.bytes_written),
    );
    counter(
        &mut out,
        "shadowdiff_tap_write_failures_total",
        "Failed attempts to create, write or complete a recording file.",
        load(&rec.write_failures),
    );
    counter(
        &mut out,
        "shadowdiff_tap_redaction_bodies_dropped_total",
        "Bodies left out of the recording because they could not be searched for secrets.",
        load(&rec.redaction_bodies_dropped),
    );
    counter(
        &mut out,
        "shadowdiff_tap_untracked_interfaces_total",
        "Exchanges not given the per-interface minimum because too many interfaces were tracked.",
        load(&rec.untracked_interfaces),
    );
    if let Some(s) = shadow {
        s.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.answered(200, 100);
        m.answered(502, 3_000);
        m.answered(200, 60_000_000);
        m.refuse(Refusal::Connect);
        let text = render(&m, &RecorderStats::default(), None);
        assert!(text.contains("shadowdiff_tap_proxied_total 3"), "{text}");
        assert!(text.contains("shadowdiff_tap_responses_total{class=\"5xx\"} 1"));
        // A refusal is an answer too, though not an exchange proxied.
        assert!(text.contains("shadowdiff_tap_responses_total{class=\"4xx\"} 1"));
        assert!(text.contains("shadowdiff_tap_request_duration_seconds_bucket{le=\"0.00025\"} 1"));
        assert!(text.contains("shadowdiff_tap_request_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("shadowdiff_tap_request_duration_seconds_bucket{le=\"30\"} 2"));
        assert!(text.contains("shadowdiff_tap_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("shadowdiff_tap_refused_total{reason=\"connect\"} 1"));
        assert!(text.contains("shadowdiff_tap_dropped_total{reason=\"queue_full\"} 0"));
        // Every sample line is `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let v = line.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
}
