//! `shadowdiff show`: one exchange in full, for the person chasing an incident. Finds the
//! exchange by id (streaming, so a large recording costs no memory), prints its request and
//! the recorded response, and with two targets sends the request to both at the same moment
//! and prints the judgement and unified diffs of headers and bodies.

use crate::cli::ShowArgs;
use crate::compare::body::render_body;
use crate::compare::{judge_for, Observed};
use crate::config::{parse_duration, parse_header_flag, Rules};
use crate::error::{Error, Result};
use crate::exchange::{Exchange, Headers, Side};
use crate::interface::{interface_of, InterfaceKey};
use crate::recording::format::format_ts_us;
use crate::recording::{ReadOptions, RecordingReader};
use crate::replay::target::{Target, TargetOptions};
use crate::report::inert;
use similar::{ChangeTag, TextDiff};
use std::fmt::Write as _;
use std::time::Instant;

/// Finds exchange `id` in the recordings. The reader's warnings (skipped lines, a last line
/// cut off) go to standard error as they come: an id that is not found may be on one of them.
pub fn find(args: &ShowArgs) -> Result<Exchange> {
    let opts = ReadOptions {
        skip_bad_lines: args.skip_bad_lines,
    };
    let mut reader = RecordingReader::open(&args.recordings, opts)?;
    let found = loop {
        let next = reader.next_exchange();
        for w in reader.take_warnings() {
            tracing::warn!("{w}");
        }
        match next? {
            Some(ex) if ex.id == args.id => break Some(ex),
            Some(_) => {}
            None => break None,
        }
    };
    if let Some(ex) = found {
        return Ok(ex);
    }
    Err(Error::Usage(format!(
        "no exchange with id {:?} in {}",
        args.id,
        args.recordings
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Runs `show` and returns the text to print. Everything taken from the recording or the
/// live answers is printed with its control characters made visible ([`inert`]), so a
/// recorded answer cannot drive the terminal; only the colour codes are this function's own.
pub async fn run(args: &ShowArgs, color: bool) -> Result<String> {
    let ex = find(args)?;
    let mut out = String::new();
    let p = Paint { color };
    let interface = ex
        .interface
        .clone()
        .unwrap_or_else(|| interface_of(&ex.request, &InterfaceKey::Default));
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
    let (Some(b_url), Some(c_url)) = (&args.baseline, &args.candidate) else {
        return Ok(out);
    };

    let rules = match &args.config {
        Some(path) => {
            // Build the rules the same way replay does, from a minimal replay argument set.
            let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
                "shadowdiff",
                "replay",
                "-",
                "--baseline",
                b_url,
                "--candidate",
                c_url,
                "--config",
                &path.display().to_string(),
            ])
            .map_err(|e| Error::Usage(e.to_string()))?;
            let crate::cli::Command::Replay(ra) = cli.command else {
                return Err(Error::Usage("internal: replay arguments".into()));
            };
            crate::config::ReplayConfig::from_args(&ra)?.rules
        }
        None => std::sync::Arc::new(Rules::default()),
    };
    let topts = TargetOptions {
        timeout: parse_duration("timeout", &args.timeout)?,
        max_body: 64 << 20,
        pool_size: 1,
        host_header: args.host_header,
        set_headers: args
            .set_header
            .iter()
            .map(|h| parse_header_flag("set-header", h))
            .collect::<Result<Vec<_>>>()?,
    };
    let base = Target::new(Side::Baseline, b_url, topts.clone())?;
    let cand = Target::new(Side::Candidate, c_url, topts)?;
    base.preflight().await?;
    cand.preflight().await?;
    let start = Instant::now();
    let (b, c) = tokio::join!(base.send(&ex.request, start), cand.send(&ex.request, start));
    let _ = writeln!(out);
    for (name, url, f) in [("baseline ", b_url, &b), ("candidate", c_url, &c)] {
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
    let opts = rules.options_for(&interface);
    let j = judge_for(Some(ex.request.path()), &b, &c, None, &opts);
    let _ = writeln!(out, "\n{} {}", p.bold("outcome:"), j.outcome);
    if !j.diffs.is_empty() {
        let _ = writeln!(out, "{}", p.bold("differences:"));
        for d in &j.diffs {
            let note = if d.tolerated {
                "  (times within the tolerance: noise)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {}: {} → {}{note}",
                inert::line(&d.key_display()),
                inert::line(d.baseline.as_deref().unwrap_or("(absent)")),
                inert::line(d.candidate.as_deref().unwrap_or("(absent)"))
            );
        }
    }
    if let (Ok(bo), Ok(co)) = (&b, &c) {
        unified(
            &mut out,
            &p,
            "headers",
            &headers_text(bo),
            &headers_text(co),
        );
        unified(
            &mut out,
            &p,
            "body",
            &render_body(&bo.headers, &bo.body),
            &render_body(&co.headers, &co.body),
        );
    }
    Ok(out)
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

fn unified(out: &mut String, p: &Paint, what: &str, a: &str, b: &str) {
    if a == b {
        let _ = writeln!(out, "\n{what}: identical");
        return;
    }
    // Compared as they came; diffed as they will be printed.
    let (a, b) = (inert::lines(a), inert::lines(b));
    let _ = writeln!(out, "\n{}", p.bold(&format!("--- baseline {what}")));
    let _ = writeln!(out, "{}", p.bold(&format!("+++ candidate {what}")));
    let diff = TextDiff::from_lines(a.as_ref(), b.as_ref());
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
