//! Live shadow: a copy of a sampled share of requests goes to the candidate after production
//! has answered, and the two answers are judged by the same [`judge`] and aggregated by the
//! same [`Aggregator`] as `replay`, so `/report` has exactly the `replay --json` schema.
//!
//! The copy is the request as production got it, credentials included, since a candidate
//! usually needs them to answer the same; `--shadow-redact` redacts it as the recording is
//! (a body that cannot be searched for the fields to redact is then not sent, and counted).
//!
//! The client never waits: the copy is started from the end of the production response and
//! runs in its own task. Concurrency is capped by a semaphore; when no permit is free the
//! copy is not sent and is counted (and reported as `skipped`, reason `shadow_busy`, so
//! every selected exchange still gets exactly one outcome).
//!
//! Noise is measured as replay measures it: for a sampled share of the shadowed requests
//! that are safe to repeat (`--shadow-noise-sample`; safe methods and declared reads),
//! production answers a second time at the moment the candidate gets its copy, and what
//! differs between production's two answers is the noise a candidate difference must
//! exceed. Each such request adds one to production's load, so the share is bounded, counted
//! in `/metrics`, and 0 turns it off.

use super::config::TapConfig;
use super::redact::Redactor;
use super::sample::Sampler;
use crate::analysis::gate;
use crate::analysis::result::{RunInfo, RunResult, Thresholds};
use crate::analysis::{Aggregator, PairLatency};
use crate::cli::HostHeaderMode;
use crate::compare::{
    judge, CompareOptions, FetchError, Judgement, NoiseSource, Observed, Outcome,
};
use crate::error::Result;
use crate::exchange::{Request, Side};
use crate::recording::format::{format_ts_us, now_us};
use crate::replay::target::{ConnTarget, Target, TargetOptions};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;

/// Salt of the shadow sample, so the shadowed share is independent of the recorded one.
const SHADOW_SALT: u64 = 0x5ad0_5ad0;

/// Salt of the noise sample among shadowed requests.
const NOISE_SALT: u64 = 0x0a0a_5ad0;

/// Counters of the live shadow, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ShadowStats {
    /// Exchanges the shadow sample picked.
    pub selected: AtomicU64,
    /// Copies sent to the candidate.
    pub sent: AtomicU64,
    /// Copies not sent because the concurrency cap was reached.
    pub dropped_busy: AtomicU64,
    /// Not sent: side-effecting method without `--allow-side-effects`.
    pub skipped_side_effect: AtomicU64,
    /// Not sent: a body was cut at `--max-body`, so the copy would not be the request.
    pub skipped_truncated: AtomicU64,
    /// Not sent: production itself failed (502/504), judged `baseline_error`.
    pub production_errors: AtomicU64,
    /// Not sent: under `--shadow-redact`, a body that should be searched for JSON fields to
    /// redact could not be (content-encoded, or not JSON), so the copy could still hold them.
    pub skipped_unsearchable: AtomicU64,
    /// Shadowed requests production answered a second time, as the noise sample.
    pub noise_probes: AtomicU64,
    /// Copies in flight.
    pub in_flight: AtomicI64,
    outcomes: [AtomicU64; 7],
}

impl ShadowStats {
    /// Judged copies with preliminary outcome `o`.
    pub fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes[o.index()].load(Ordering::Relaxed)
    }

    /// Appends the shadow counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP shadowdiff_tap_shadow_selected_total Exchanges picked by --shadow-sample.\n\
             # TYPE shadowdiff_tap_shadow_selected_total counter\n\
             shadowdiff_tap_shadow_selected_total {}\n\
             # HELP shadowdiff_tap_shadow_sent_total Copies sent to the candidate.\n\
             # TYPE shadowdiff_tap_shadow_sent_total counter\n\
             shadowdiff_tap_shadow_sent_total {}\n\
             # HELP shadowdiff_tap_shadow_not_sent_total Picked exchanges not sent to the candidate, by reason.\n\
             # TYPE shadowdiff_tap_shadow_not_sent_total counter\n\
             shadowdiff_tap_shadow_not_sent_total{{reason=\"busy\"}} {}\n\
             shadowdiff_tap_shadow_not_sent_total{{reason=\"side_effect\"}} {}\n\
             shadowdiff_tap_shadow_not_sent_total{{reason=\"truncated_body\"}} {}\n\
             shadowdiff_tap_shadow_not_sent_total{{reason=\"production_error\"}} {}\n\
             shadowdiff_tap_shadow_not_sent_total{{reason=\"unsearchable_body\"}} {}\n\
             # HELP shadowdiff_tap_shadow_noise_probes_total Shadowed requests production answered a second time (--shadow-noise-sample), the live shadow's noise sample.\n\
             # TYPE shadowdiff_tap_shadow_noise_probes_total counter\n\
             shadowdiff_tap_shadow_noise_probes_total {}\n\
             # HELP shadowdiff_tap_shadow_in_flight Copies in flight now.\n\
             # TYPE shadowdiff_tap_shadow_in_flight gauge\n\
             shadowdiff_tap_shadow_in_flight {}",
            l(&self.selected),
            l(&self.sent),
            l(&self.dropped_busy),
            l(&self.skipped_side_effect),
            l(&self.skipped_truncated),
            l(&self.production_errors),
            l(&self.skipped_unsearchable),
            l(&self.noise_probes),
            self.in_flight.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP shadowdiff_tap_shadow_judged_total Copies judged, by preliminary outcome (before noise analysis).\n\
             # TYPE shadowdiff_tap_shadow_judged_total counter"
        );
        for o in Outcome::ALL {
            let _ = writeln!(
                out,
                "shadowdiff_tap_shadow_judged_total{{outcome=\"{}\"}} {}",
                o.name(),
                self.outcome(o)
            );
        }
    }
}

/// The live shadow of one tap.
#[derive(Debug)]
pub struct Shadow {
    target: ConnTarget,
    /// Production again, for the noise sample.
    production: ConnTarget,
    sampler: Sampler,
    noise_sampler: Sampler,
    safety: Arc<crate::safety::Safety>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    agg: Mutex<Aggregator>,
    opts: CompareOptions,
    thresholds: Thresholds,
    redactor: Redactor,
    /// Copies are redacted as the recording is (`--shadow-redact`).
    redact_copies: bool,
    allow_side_effects: bool,
    /// Counters.
    pub stats: ShadowStats,
    started: Instant,
    upstream_url: String,
    shadow_url: String,
    /// The candidate is `https://` and its certificate is not verified.
    insecure: bool,
}

/// What production gave for a shadowed request.
pub type Production = std::result::Result<Observed, FetchError>;

impl Shadow {
    /// A shadow to `url` per `cfg`; `None` when `--shadow` is not set.
    pub fn new(cfg: &TapConfig, redactor: Redactor) -> Result<Option<Self>> {
        let Some(up) = &cfg.shadow else {
            return Ok(None);
        };
        let opts = TargetOptions {
            timeout: cfg.upstream_timeout,
            max_body: cfg.max_body,
            pool_size: cfg.shadow_concurrency,
            host_header: HostHeaderMode::Target,
            set_headers: Vec::new(),
            tls: cfg.shadow_tls.clone(),
        };
        let target = Target::new(Side::Candidate, &up.url, opts.clone())?;
        // Production, asked again for noise, as the tap itself speaks to it.
        let production = Target::new(
            Side::Baseline,
            &cfg.upstream.url,
            TargetOptions {
                tls: cfg.upstream_tls.clone(),
                ..opts
            },
        )?;
        Ok(Some(Shadow {
            target: ConnTarget::new(target),
            production: ConnTarget::new(production),
            sampler: Sampler::new(cfg.shadow_sample, SHADOW_SALT),
            noise_sampler: Sampler::new(cfg.shadow_noise_sample, NOISE_SALT),
            safety: cfg.safety.clone(),
            permits: Arc::new(Semaphore::new(cfg.shadow_concurrency)),
            concurrency: cfg.shadow_concurrency,
            agg: Mutex::new(Aggregator::new()),
            opts: CompareOptions::default(),
            thresholds: cfg.shadow_thresholds.clone(),
            redactor,
            redact_copies: cfg.shadow_redact,
            allow_side_effects: cfg.allow_side_effects,
            stats: ShadowStats::default(),
            started: Instant::now(),
            upstream_url: cfg.upstream.url.clone(),
            shadow_url: up.url.clone(),
            insecure: up.tls && cfg.shadow_tls.insecure,
        }))
    }

    /// True when the exchange `id` is in the shadow sample.
    pub fn picks(&self, id: &str) -> bool {
        self.sampler.picks(id)
    }

    /// True when a request with `method` may be sent to the candidate (some of them may
    /// not): decided from the head, before the body is read, so that only the bodies of
    /// requests that may be shadowed are copied.
    pub fn may_send(&self, method: &http::Method) -> bool {
        self.allow_side_effects
            || self.safety.declares_reads()
            || crate::exchange::is_safe_method(method.as_str())
    }

    /// True when `request` (keyed as `interface`) may be sent to the candidate: it is safe
    /// to repeat, or side effects are allowed.
    pub fn sends(&self, request: &Request, interface: &str) -> bool {
        self.allow_side_effects || self.safety.is_safe(request, interface)
    }

    fn skip(&self, interface: &str, reason: &str) {
        if let Ok(mut a) = self.agg.lock() {
            a.record_skip(interface, reason);
        }
    }

    /// Hands over a picked exchange once production has answered. Never waits: the copy runs
    /// in its own task, or is dropped (and counted) when the cap is reached.
    pub fn submit(
        self: &Arc<Self>,
        interface: String,
        id: String,
        request: Request,
        production: Production,
        production_truncated: bool,
    ) {
        self.stats.selected.fetch_add(1, Ordering::Relaxed);
        let safe = self.safety.is_safe(&request, &interface);
        if !safe && !self.allow_side_effects {
            self.stats
                .skipped_side_effect
                .fetch_add(1, Ordering::Relaxed);
            self.skip(&interface, "side_effect");
            return;
        }
        let production = match production {
            Ok(p) => p,
            Err(e) => {
                self.stats.production_errors.fetch_add(1, Ordering::Relaxed);
                self.record(
                    &interface,
                    &id,
                    &Judgement {
                        outcome: Outcome::BaselineError,
                        diffs: Vec::new(),
                        probe: None,
                        noise_source: None,
                        error: Some(e),
                    },
                    None,
                );
                return;
            }
        };
        if request.body_truncated || production_truncated {
            self.stats.skipped_truncated.fetch_add(1, Ordering::Relaxed);
            self.skip(&interface, "truncated_body");
            return;
        }
        let probe = safe && self.noise_sampler.picks(&id);
        // Under --shadow-redact the candidate gets a redacted copy; production's second
        // answer is still asked with the request it answered the first time.
        let (request, original) = if self.redact_copies {
            let original = probe.then(|| request.clone());
            let mut copy = request;
            self.redactor.headers(&mut copy.headers);
            let body = self
                .redactor
                .body(&copy.headers, &mut copy.body, &mut copy.body_truncated);
            if body.dropped {
                self.stats
                    .skipped_unsearchable
                    .fetch_add(1, Ordering::Relaxed);
                self.skip(&interface, "unsearchable_body");
                return;
            }
            (copy, original)
        } else {
            (request, None)
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.stats.dropped_busy.fetch_add(1, Ordering::Relaxed);
            self.skip(&interface, "shadow_busy");
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // Only during runtime teardown: nothing can be sent any more.
            self.stats.dropped_busy.fetch_add(1, Ordering::Relaxed);
            self.skip(&interface, "shadow_busy");
            return;
        };
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        rt.spawn(async move {
            let _permit = permit;
            let now = Instant::now();
            let (candidate, again) = if probe {
                me.stats.noise_probes.fetch_add(1, Ordering::Relaxed);
                let (c, p) = tokio::join!(
                    me.target.send(&request, now),
                    me.production
                        .send(original.as_ref().unwrap_or(&request), now)
                );
                (c, Some(p))
            } else {
                (me.target.send(&request, now).await, None)
            };
            let lat = candidate.as_ref().ok().map(|c| PairLatency {
                baseline_us: production.latency_us,
                candidate_us: c.latency_us,
            });
            let production = Ok(production);
            let probe = again.filter(|p| p.is_ok());
            let mut j = judge(&production, &candidate, probe.as_ref(), &me.opts);
            if j.probe.is_some() {
                j.noise_source = Some(NoiseSource::Production);
            }
            if let (Ok(p), Ok(c)) = (&production, &candidate) {
                me.redactor.differences(&mut j.diffs, p, c);
            }
            me.record(&interface, &id, &j, lat);
            me.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }

    fn record(&self, interface: &str, id: &str, j: &Judgement, lat: Option<PairLatency>) {
        self.stats.outcomes[j.outcome.index()].fetch_add(1, Ordering::Relaxed);
        if let Ok(mut a) = self.agg.lock() {
            a.record(interface, id, j, lat);
        }
    }

    /// The live result so far, decided exactly as `replay` decides a finished run.
    pub fn result(&self) -> RunResult {
        let agg = match self.agg.lock() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let th = self.thresholds.clone();
        let (summary, interfaces) = agg.finish(&th);
        let s = &self.stats;
        let busy = s.dropped_busy.load(Ordering::Relaxed);
        let mut warnings = Vec::new();
        if busy > 0 {
            warnings.push(format!(
                "{} not shadowed: {} already in flight (--shadow-concurrency)",
                crate::report::words::count_of(
                    busy,
                    "picked exchange was",
                    "picked exchanges were"
                ),
                crate::report::words::count_of(self.concurrency as u64, "copy was", "copies were")
            ));
        }
        if self.insecure {
            warnings.push(format!(
                "TLS certificates were not verified (--insecure) for the candidate ({}): \
                 another server answering in its place would not have been noticed",
                self.shadow_url
            ));
        }
        let in_flight = s.in_flight.load(Ordering::Relaxed);
        if in_flight > 0 {
            warnings.push(format!(
                "{in_flight} copies still in flight, not yet counted"
            ));
        }
        gate::decided(
            summary,
            interfaces,
            RunInfo {
                created: format_ts_us(now_us()),
                tool_version: env!("CARGO_PKG_VERSION").to_string(),
                recordings: Vec::new(),
                baseline: self.upstream_url.clone(),
                candidate: self.shadow_url.clone(),
                secondary: None,
                exchanges_read: s.selected.load(Ordering::Relaxed),
                duration_ms: self.started.elapsed().as_millis() as u64,
                pacing: format!(
                    "live shadow of {}% of traffic, at most {} in flight",
                    self.sampler.rate() * 100.0,
                    self.concurrency
                ),
                ready_ms: Default::default(),
                connections: Default::default(),
                thresholds: th,
                warnings,
                filters: Vec::new(),
                shard: None,
                incomplete: None,
                upstream: None,
            },
        )
    }
}
