//! `shadowdiff show`: one exchange in full, for the person chasing an incident. Finds the
//! exchange by id (streaming, so a large recording costs no memory), prints its request, the
//! recorded response and the commands that send the request again ([`resend`]).
//!
//! With a baseline and a candidate it is a replay of that one exchange: the request goes to
//! both at the same moment and, when it may be repeated, to the baseline a second time for
//! the noise sample (else the recorded answer is the sample), all through the replay's own
//! [`WorkerTargets`]; the answers are judged by the replay's judging and decided by its
//! aggregation and noise rule ([`Aggregator`], [`DiffLine::decide`]), so every difference
//! is marked regression, noise or within tolerance exactly as a replay of it would mark it.
//! With a baseline alone, the baseline's live answer is compared with the recorded one by
//! the same machinery, its second answer telling drift since capture from what changes on
//! every call.

use crate::analysis::{Aggregator, PairLatency};
use crate::cli::{HostHeaderMode, ShowArgs};
use crate::compare::body::render_body;
use crate::compare::{
    CompareOptions, FetchError, Fetched, Judgement, NoiseSource, Observed, Outcome,
};
use crate::config::ReplayConfig;
use crate::error::{Error, Result};
use crate::exchange::{Exchange, Headers, Side};
use crate::recording::format::format_ts_us;
use crate::recording::{ReadOptions, RecordingReader};
use crate::replay::recorded::{self, Unusable};
use crate::replay::resend::{self, BodyFile, To};
use crate::replay::select::exchange_interface;
use crate::replay::target::{Target, TargetOptions};
use crate::replay::{judge_answers, WorkerTargets};
use crate::report::diffs::{regressing_keys, DiffLine, DiffLineEntry};
use crate::report::{inert, words};
use similar::{ChangeTag, TextDiff};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// The recordings to search and the exchange id: `--id`, or else the last positional
/// argument, so that `show REC ID` and the older `show REC --id ID` both work.
pub fn recordings_and_id(args: &ShowArgs) -> Result<(Vec<PathBuf>, String)> {
    if let Some(id) = &args.id {
        return Ok((args.recordings.clone(), id.clone()));
    }
    let (last, recordings) = match args.recordings.split_last() {
        Some((last, rest)) if !rest.is_empty() => (last, rest),
        _ => {
            return Err(Error::Usage(
                "show: expected the exchange id after the recordings (shadowdiff show \
                 RECORDING... ID), or --id ID"
                    .into(),
            ))
        }
    };
    if last.is_file() {
        return Err(Error::Usage(format!(
            "show: {} is a file; expected the exchange id after the recordings (shadowdiff \
             show RECORDING... ID), or --id ID",
            last.display()
        )));
    }
    Ok((recordings.to_vec(), last.to_string_lossy().into_owned()))
}

/// Finds exchange `id` in `recordings`. The reader's warnings (skipped lines, a last line
/// cut off) go to standard error as they come: an id that is not found may be on one of them.
pub fn find(recordings: &[PathBuf], id: &str, skip_bad_lines: bool) -> Result<Exchange> {
    let mut reader = RecordingReader::open(recordings, ReadOptions { skip_bad_lines })?;
    let found = loop {
        let next = reader.next_exchange();
        for w in reader.take_warnings() {
            tracing::warn!("{w}");
        }
        match next? {
            Some(ex) if ex.id == id => break Some(ex),
            Some(_) => {}
            None => break None,
        }
    };
    if let Some(ex) = found {
        return Ok(ex);
    }
    Err(Error::Usage(format!(
        "no exchange with id {id:?} in {}",
        recordings
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// The run configuration a replay with the same flags would use: its rules, thresholds,
/// declared reads, interface keys and descriptor. Built from replay's own flags, so that
/// `show` can never read a rules file differently from `replay`.
fn replay_config(args: &ShowArgs) -> Result<ReplayConfig> {
    // Only the URLs' form is checked here; an absent side gets a stand-in never contacted.
    let stand_in = "http://127.0.0.1:9";
    let baseline = args.baseline.as_deref().unwrap_or(stand_in);
    let candidate = args.candidate.as_deref().unwrap_or(baseline);
    let mut argv: Vec<String> = [
        "shadowdiff",
        "replay",
        "-",
        "--baseline",
        baseline,
        "--candidate",
        candidate,
        "--timeout",
        &args.timeout,
        "--host-header",
        match args.host_header {
            HostHeaderMode::Target => "target",
            HostHeaderMode::Keep => "keep",
        },
    ]
    .map(str::to_string)
    .to_vec();
    let mut flag = |name: &str, value: String| {
        argv.push(format!("--{name}"));
        argv.push(value);
    };
    if let Some(p) = &args.config {
        flag("config", p.display().to_string());
    }
    if let Some(p) = &args.proto_descriptor {
        flag("proto-descriptor", p.display().to_string());
    }
    for g in &args.safe {
        flag("safe", g.clone());
    }
    for h in &args.set_header {
        flag("set-header", h.clone());
    }
    if let (Some(b), Some(c)) = (&args.baseline_upstream, &args.candidate_upstream) {
        flag("baseline-upstream", b.clone());
        flag("candidate-upstream", c.clone());
        flag("upstream-latency", args.upstream_latency.name().to_string());
    }
    let tls = &args.tls;
    for (name, path) in [
        ("ca-cert", &tls.client.ca_cert),
        ("client-cert", &tls.client.client_cert),
        ("client-key", &tls.client.client_key),
    ] {
        if let Some(p) = path {
            flag(name, p.display().to_string());
        }
    }
    if let Some(n) = &tls.client.tls_server_name {
        flag("tls-server-name", n.clone());
    }
    for s in &tls.baseline_tls {
        flag("baseline-tls", s.clone());
    }
    for s in &tls.candidate_tls {
        flag("candidate-tls", s.clone());
    }
    if tls.client.insecure {
        argv.push("--insecure".into());
    }
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(&argv)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let crate::cli::Command::Replay(ra) = cli.command else {
        return Err(Error::Usage(
            "show: replay flags did not parse as replay".into(),
        ));
    };
    ReplayConfig::from_args(&ra)
}

fn count_of_calls(n: usize) -> String {
    crate::report::words::count_of(n as u64, "call", "calls")
}

/// Runs `show` and returns the text to print. Everything taken from the recording or the
/// live answers is printed with its control characters made visible ([`inert`]), so a
/// recorded answer cannot drive the terminal; only the colour codes are this function's own.
pub async fn run(args: &ShowArgs, color: bool) -> Result<String> {
    let (recordings, id) = recordings_and_id(args)?;
    let ex = find(&recordings, &id, args.skip_bad_lines)?;
    if let Some(path) = &args.save_body {
        std::fs::write(path, &ex.request.body).map_err(|e| Error::io(path, e))?;
    }
    let cfg = replay_config(args)?;
    let interface = exchange_interface(&ex, &cfg.keyer);
    let mut out = String::new();
    let p = Paint { color };
    let _ = writeln!(
        out,
        "{} {}  {}  {}",
        p.bold("exchange"),
        inert::line(&ex.id),
        format_ts_us(ex.ts_us),
        inert::line(&interface)
    );
    let _ = writeln!(out, "\n{}", p.bold("request"));
    let _ = writeln!(
        out,
        "  {} {} {}",
        inert::line(&ex.request.method),
        inert::line(&ex.request.uri),
        inert::line(&ex.request.version)
    );
    headers_block(&mut out, &ex.request.headers);
    body_block(
        &mut out,
        &ex.request.headers,
        &ex.request.body,
        ex.request.body_truncated,
    );
    if let Some(r) = &ex.response {
        let lat = ex
            .latency_us
            .map(|l| format!("  {}", ms(l)))
            .unwrap_or_default();
        let _ = writeln!(out, "\n{}  {}{lat}", p.bold("recorded response"), r.status);
        headers_block(&mut out, &r.headers);
        if let Some(t) = &r.trailers {
            let _ = writeln!(out, "  trailers:");
            headers_block(&mut out, t);
        }
        body_block(&mut out, &r.headers, &r.body, r.body_truncated);
    }

    let topts = |tls: &crate::tls::TlsClientOptions| TargetOptions {
        timeout: cfg.timeout,
        max_body: cfg.max_body,
        pool_size: 1,
        host_header: cfg.host_header,
        set_headers: cfg.set_headers.clone(),
        tls: tls.clone(),
    };
    let base = match &args.baseline {
        Some(url) => Some(Target::new(Side::Baseline, url, topts(&cfg.tls.baseline))?),
        None => None,
    };
    let cand = match &args.candidate {
        Some(url) => Some(Target::new(
            Side::Candidate,
            url,
            topts(&cfg.tls.candidate),
        )?),
        None => None,
    };
    let show = Show {
        ex: &ex,
        interface: &interface,
        cfg: &cfg,
        p: &p,
    };
    match (&base, &cand) {
        (Some(b), Some(c)) => show.pair(&mut out, b, c).await?,
        (Some(b), None) => show.against_recording(&mut out, b).await?,
        _ => {}
    }
    let names: Vec<String> = recordings.iter().map(|r| r.display().to_string()).collect();
    show.resend(&mut out, args, &[base.as_ref(), cand.as_ref()], &names);
    Ok(out)
}

/// One exchange being shown, with what judging it needs.
struct Show<'a> {
    ex: &'a Exchange,
    interface: &'a str,
    cfg: &'a ReplayConfig,
    p: &'a Paint,
}

/// How the differences of a judgement are told: which answer is on which side, and what a
/// difference beyond noise is called.
struct Sides {
    /// Print values candidate first (the recorded answer stands on the candidate's side).
    swap: bool,
    /// The word for a difference beyond noise.
    real: &'static str,
}

impl Show<'_> {
    /// Whether a replay would send the request to the baseline twice, and if not, why.
    fn safe(&self) -> std::result::Result<(), String> {
        // Playing the upstreams, nothing reaches a backend: a write may go twice.
        if self.cfg.safety.is_safe(&self.ex.request, self.interface) || self.cfg.upstream.is_some()
        {
            return Ok(());
        }
        Err(format!(
            "{} may change state and is not asked twice (declare a read with --safe or \
             [side_effects] safe)",
            inert::line(self.interface)
        ))
    }

    /// Both targets: the exchange replayed and judged as a replay judges it.
    async fn pair(&self, out: &mut String, b: &Target, c: &Target) -> Result<()> {
        b.preflight().await?;
        c.preflight().await?;
        if self.ex.request.body_truncated {
            let _ = writeln!(
                out,
                "\nnote: the recorded request body was cut at capture; a replay skips this \
                 exchange, and the targets get only its first {} bytes",
                self.ex.request.body.len()
            );
        }
        // The noise probe a replay sends by default: the baseline again.
        let plays = match &self.cfg.upstream {
            Some(play) => Some(std::sync::Arc::new(
                crate::replay::upstream::Plays::start(
                    (play.baseline, play.candidate),
                    (b.authority(), c.authority()),
                    play.latency,
                    self.cfg.max_body,
                )
                .await?,
            )),
            None => None,
        };
        let targets = WorkerTargets::new(
            b.clone(),
            c.clone(),
            Some(b.clone()),
            self.cfg.recorded_noise,
        )
        .playing(plays);
        let safe = self.safe();
        let opts = self.cfg.rules.options_for(self.interface);
        let a = targets.ask(self.ex, Instant::now(), safe.is_ok()).await;
        let j = targets.judge(self.ex, &a, &opts);
        let _ = writeln!(out);
        self.answer_line(out, "baseline ", &b.url, &a.baseline);
        self.answer_line(out, "candidate", &c.url, &a.candidate);
        let probe = a.probe.as_ref().map(|(f, _)| f);
        self.sample_line(out, &j, probe, safe.err(), self.cfg.recorded_noise);
        let lat = match (&a.baseline, &a.candidate) {
            (Ok(b), Ok(c)) => Some(PairLatency {
                baseline_us: b.latency_us,
                candidate_us: c.latency_us,
            }),
            _ => None,
        };
        self.decided(
            out,
            &j,
            lat,
            &Sides {
                swap: false,
                real: "regression",
            },
        );
        if let (Ok(bo), Ok(co)) = (&a.baseline, &a.candidate) {
            self.unified_answers(out, ("baseline", bo), ("candidate", co));
        }
        if let Some(u) = &a.upstream {
            self.forwarded(out, &u.pair);
        }
        Ok(())
    }

    /// What each gateway forwarded to the upstream shadowdiff played, side by side, rows
    /// that differ marked.
    fn forwarded(&self, out: &mut String, calls: &crate::replay::upstream::Calls) {
        let f = crate::analysis::result::ForwardedSample::of(calls);
        let _ = writeln!(
            out,
            "\n{} baseline {} | candidate {}",
            self.p.bold("forwarded upstream:"),
            count_of_calls(f.baseline.len()),
            count_of_calls(f.candidate.len())
        );
        let rows = crate::report::forwarded::rows(&f);
        let col = rows
            .iter()
            .filter_map(|r| r.baseline.as_deref())
            .map(|t| crate::report::fit::width(&inert::line(t)))
            .max()
            .unwrap_or(8)
            .clamp(8, 70);
        for r in rows {
            let cell = |t: Option<&str>| -> String {
                let t = inert::line(t.unwrap_or("(absent)")).into_owned();
                crate::report::fit::cut(&t, col)
            };
            let left = cell(r.baseline.as_deref());
            let pad = col.saturating_sub(crate::report::fit::width(&left));
            let _ = writeln!(
                out,
                "{} {left}{} | {}",
                if r.differs { "≠" } else { " " },
                " ".repeat(pad),
                cell(r.candidate.as_deref())
            );
        }
    }

    /// A baseline alone: its live answer judged against the recorded one, its second
    /// answer (when the request may be repeated) the noise sample.
    async fn against_recording(&self, out: &mut String, b: &Target) -> Result<()> {
        b.preflight().await?;
        let safe = self.safe();
        let req = &self.ex.request;
        let live = b.send(req, Instant::now()).await;
        let again = match (&live, &safe) {
            (Ok(_), Ok(())) => Some(b.send(req, Instant::now()).await),
            _ => None,
        };
        let _ = writeln!(out);
        self.answer_line(out, "baseline ", &b.url, &live);
        let recorded = match recorded::observed(self.ex.response.as_ref()) {
            Ok(r) => r,
            Err(why) => {
                let _ = writeln!(
                    out,
                    "\nnothing to compare it with: {}",
                    match why {
                        Unusable::NoAnswer => "the recording holds no answer",
                        Unusable::Truncated => "the recorded answer's body was cut at capture",
                    }
                );
                return Ok(());
            }
        };
        // A recorded answer is no gateway that could lack a route.
        let opts = CompareOptions {
            missing_rule_statuses: Vec::new(),
            missing_rule_grpc_statuses: Vec::new(),
            ..self.cfg.rules.options_for(self.interface)
        };
        // The recorded answer takes the candidate's place; the baseline's live answer is
        // the one a second answer is compared with, as in a replay.
        let mut j = judge_answers(
            self.ex,
            &live,
            &Ok(recorded.clone()),
            again.as_ref().map(|a| (a, NoiseSource::Baseline)),
            false,
            &opts,
        );
        // A value the recording redacted and the live one hashing to it is the same value.
        recorded::drop_equal_redactions(&mut j.diffs);
        if j.outcome == Outcome::Different {
            j.outcome = Outcome::of_diffs(&j.diffs);
        }
        self.sample_line(out, &j, again.as_ref(), safe.err(), false);
        let _ = writeln!(
            out,
            "compared: the recorded answer (capture time) with the baseline's live answer"
        );
        self.decided(
            out,
            &j,
            None,
            &Sides {
                swap: true,
                real: "changed",
            },
        );
        if let Ok(lo) = &live {
            self.unified_answers(out, ("recorded", &recorded), ("baseline", lo));
        }
        Ok(())
    }

    fn answer_line(&self, out: &mut String, name: &str, url: &str, f: &Fetched) {
        let p = self.p;
        match f {
            Ok(o) => {
                let _ = writeln!(
                    out,
                    "{}  {}  {}  {}",
                    p.bold(name),
                    inert::line(url),
                    o.status,
                    ms(o.latency_us)
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{}  {}  error ({}): {}",
                    p.bold(name),
                    inert::line(url),
                    e.kind,
                    inert::line(&e.message)
                );
            }
        }
    }

    /// Where the noise sample came from, or why there was none.
    fn sample_line(
        &self,
        out: &mut String,
        j: &Judgement,
        probe: Option<&Fetched>,
        not_repeated: Option<String>,
        recording_may_sample: bool,
    ) {
        let label = self.p.bold("noise sample");
        let text = match (j.noise_source, probe) {
            (Some(NoiseSource::Recording), _) => NoiseSource::Recording.describe().to_string(),
            (Some(source), Some(Ok(o))) => {
                format!("{}: {}  {}", source.describe(), o.status, ms(o.latency_us))
            }
            (_, Some(Err(FetchError { kind, message }))) => format!(
                "none: the baseline's second answer failed ({kind}): {}",
                inert::line(message)
            ),
            _ if matches!(j.outcome, Outcome::BaselineError | Outcome::Skipped) => {
                "none: the baseline gave no answer".to_string()
            }
            _ => {
                let mut why = Vec::new();
                why.extend(not_repeated);
                if recording_may_sample {
                    why.extend(match recorded::observed(self.ex.response.as_ref()) {
                        Err(Unusable::NoAnswer) => Some("the recording holds no answer".into()),
                        Err(Unusable::Truncated) => {
                            Some("the recorded body was cut at capture".into())
                        }
                        Ok(_) => None,
                    });
                }
                format!("none: {}; every difference counts", why.join("; "))
            }
        };
        let _ = writeln!(out, "{label}  {text}");
    }

    /// Decides the judgement as a replay of this one exchange would, and prints the outcome
    /// and every difference with its mark.
    fn decided(&self, out: &mut String, j: &Judgement, lat: Option<PairLatency>, sides: &Sides) {
        let p = self.p;
        let mut agg = Aggregator::new();
        if j.outcome != Outcome::Skipped {
            agg.record(self.interface, &self.ex.id, j, lat);
        }
        let (_, results) = agg.finish(&self.cfg.thresholds);
        let regressing = regressing_keys(&results);
        let none = HashSet::new();
        let mut line = DiffLine::judged(&self.ex.id, self.interface, j);
        if let Some(l) = line.as_mut() {
            l.decide(regressing.get(self.interface).unwrap_or(&none));
        }
        let outcome = line.as_ref().map_or(j.outcome, |l| l.outcome);
        let detail = match (outcome, &j.error) {
            (Outcome::MissingRule, _) if self.cfg.upstream.is_some() => {
                " (the candidate answered with its no-route signature, or without forwarding \
                 where the baseline forwarded)"
                    .to_string()
            }
            (Outcome::MissingRule, _) => {
                " (the candidate answered with its no-route signature)".to_string()
            }
            (Outcome::Skipped, Some(e)) => format!(
                " (a request no HTTP connection can carry: {})",
                inert::line(&e.message)
            ),
            (_, Some(e)) => format!(" ({}: {})", e.kind, inert::line(&e.message)),
            _ => String::new(),
        };
        let _ = writeln!(out, "\n{} {outcome}{detail}", p.bold("outcome:"));
        let Some(line) = line.filter(|l| !l.differences.is_empty()) else {
            return;
        };
        let marked = matches!(outcome, Outcome::Different | Outcome::NoiseOnly);
        let _ = writeln!(
            out,
            "{}",
            p.bold(if sides.swap {
                "differences (recorded → live):"
            } else {
                "differences:"
            })
        );
        let width = [sides.real, "noise", "within tolerance"]
            .map(str::len)
            .into_iter()
            .max()
            .unwrap_or(0);
        let tolerance = words::duration_ms(self.cfg.thresholds.time_tolerance_ms);
        let source = j.noise_source.unwrap_or(NoiseSource::Baseline);
        for (d, e) in j.diffs.iter().zip(&line.differences) {
            let (from, to) = if sides.swap {
                (&d.candidate, &d.baseline)
            } else {
                (&d.baseline, &d.candidate)
            };
            let values = format!(
                "{}: {} → {}",
                inert::line(&d.key_display()),
                inert::line(from.as_deref().unwrap_or("(absent)")),
                inert::line(to.as_deref().unwrap_or("(absent)"))
            );
            if !marked {
                let _ = writeln!(out, "  {values}");
                continue;
            }
            let (mark, why) = mark(e, sides.real, source, &tolerance);
            let label = format!("{mark:<width$}");
            let label = if mark == sides.real {
                p.red(&label)
            } else {
                label
            };
            let _ = writeln!(out, "  {label}  {values}{why}");
        }
    }

    fn unified_answers(&self, out: &mut String, a: (&str, &Observed), b: (&str, &Observed)) {
        let p = self.p;
        unified(
            out,
            p,
            "headers",
            (a.0, &headers_text(a.1)),
            (b.0, &headers_text(b.1)),
        );
        unified(
            out,
            p,
            "body",
            (a.0, &render_body(&a.1.headers, &a.1.body)),
            (b.0, &render_body(&b.1.headers, &b.1.body)),
        );
    }

    /// The commands that send the request again: to each target given, or to `$TARGET`.
    fn resend(
        &self,
        out: &mut String,
        args: &ShowArgs,
        targets: &[Option<&Target>],
        recordings: &[String],
    ) {
        let file = BodyFile::for_exchange(&self.ex.id, recordings);
        let desc = self.cfg.rules.options_for(self.interface).proto_descriptor;
        let command = |to: &To<'_>| {
            let grpc = desc.as_deref().zip(args.proto_descriptor.as_deref());
            grpc.and_then(|(d, path)| resend::grpcurl(to, &self.ex.request, d, path))
                .unwrap_or_else(|| resend::curl(to, &self.ex.request, &file))
        };
        let mut any = false;
        for t in targets.iter().flatten() {
            any = true;
            let _ = writeln!(
                out,
                "\n{}",
                self.p.bold(&format!(
                    "re-send to the {} ({})",
                    t.side,
                    inert::line(&t.url)
                ))
            );
            indented(out, &command(&To::Target(t)));
        }
        if !any {
            let _ = writeln!(
                out,
                "\n{}",
                self.p.bold(
                    "re-send (set TARGET to the gateway's address first, e.g. \
                     TARGET=http://localhost:8080)"
                )
            );
            let to = To::Placeholder {
                set: &self.cfg.set_headers,
                keep_host: self.cfg.host_header == HostHeaderMode::Keep,
            };
            indented(out, &command(&to));
        }
    }
}

/// The mark of a decided difference and the reason printed after it.
fn mark(
    e: &DiffLineEntry,
    real: &'static str,
    source: NoiseSource,
    tolerance: &str,
) -> (&'static str, String) {
    match e.why.as_deref() {
        _ if !e.noise => (real, String::new()),
        Some("time_tolerance") => (
            "within tolerance",
            format!("  (times at most {tolerance} apart, or a configured tolerance)"),
        ),
        _ => (
            "noise",
            format!(
                "  (differs {} too)",
                match source {
                    NoiseSource::Baseline => "between the baseline's two answers",
                    NoiseSource::Secondary => "between the two baselines' answers",
                    NoiseSource::Production => "between production's two answers",
                    NoiseSource::Recording => "between the baseline's and the recorded answer",
                }
            ),
        ),
    }
}

fn indented(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn headers_text(o: &Observed) -> String {
    let mut all: Headers = o.headers.clone();
    all.extend(
        o.trailers
            .iter()
            .map(|(k, v)| (format!("trailer {k}"), v.clone())),
    );
    let mut s = String::new();
    for (k, v) in all {
        let _ = writeln!(
            s,
            "{}: {}",
            inert::line(&k.to_ascii_lowercase()),
            inert::line(&v)
        );
    }
    s
}

fn headers_block(out: &mut String, h: &[(String, String)]) {
    for (k, v) in h {
        let _ = writeln!(out, "  {}: {}", inert::line(k), inert::line(v));
    }
}

fn body_block(
    out: &mut String,
    headers: &[(String, String)],
    body: &bytes::Bytes,
    truncated: bool,
) {
    if body.is_empty() {
        return;
    }
    let _ = writeln!(out);
    for line in inert::lines(&render_body(headers, body)).lines() {
        let _ = writeln!(out, "  {line}");
    }
    if truncated {
        let _ = writeln!(out, "  (body truncated at capture)");
    }
}

fn unified(out: &mut String, p: &Paint, what: &str, a: (&str, &str), b: (&str, &str)) {
    if a.1 == b.1 {
        let _ = writeln!(out, "\n{what}: identical");
        return;
    }
    // Compared as they came; diffed as they will be printed.
    let (ta, tb) = (inert::lines(a.1), inert::lines(b.1));
    let _ = writeln!(out, "\n{}", p.bold(&format!("--- {} {what}", a.0)));
    let _ = writeln!(out, "{}", p.bold(&format!("+++ {} {what}", b.0)));
    let diff = TextDiff::from_lines(ta.as_ref(), tb.as_ref());
    for group in diff.grouped_ops(3) {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        let _ = writeln!(
            out,
            "{}",
            p.cyan(&format!(
                "@@ -{},{} +{},{} @@",
                first.old_range().start + 1,
                last.old_range().end - first.old_range().start,
                first.new_range().start + 1,
                last.new_range().end - first.new_range().start
            ))
        );
        for op in &group {
            for change in diff.iter_changes(op) {
                let text = change.value().trim_end_matches('\n');
                let line = match change.tag() {
                    ChangeTag::Delete => p.red(&format!("-{text}")),
                    ChangeTag::Insert => p.green(&format!("+{text}")),
                    ChangeTag::Equal => format!(" {text}"),
                };
                let _ = writeln!(out, "{line}");
            }
        }
    }
}

/// ANSI colours, only when asked for.
struct Paint {
    color: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn cyan(&self, s: &str) -> String {
        self.wrap("36", s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Difference;

    fn entry(noise: bool, why: Option<&str>) -> DiffLineEntry {
        let d = Difference {
            kind: crate::compare::DiffKind::Body,
            path: "$.a".into(),
            baseline: Some("1".into()),
            candidate: Some("2".into()),
            tolerated: false,
        };
        DiffLineEntry {
            kind: d.kind,
            path: d.path.clone(),
            key: d.key(),
            baseline: d.baseline,
            candidate: d.candidate,
            noise,
            why: why.map(str::to_string),
        }
    }

    #[test]
    fn marks_follow_the_decided_line() {
        let src = NoiseSource::Baseline;
        assert_eq!(
            mark(&entry(false, None), "regression", src, "5 s").0,
            "regression"
        );
        assert_eq!(
            mark(
                &entry(true, Some("measured_noise")),
                "regression",
                src,
                "5 s"
            ),
            (
                "noise",
                "  (differs between the baseline's two answers too)".into()
            )
        );
        assert_eq!(
            mark(&entry(true, Some("time_tolerance")), "changed", src, "5 s").0,
            "within tolerance"
        );
    }
}
