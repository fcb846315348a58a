//! shadowdiff: capture production HTTP/RPC traffic, replay it against the old and the new
//! version of a gateway side by side, and report what differs.
//!
//! Data flows forward through one module per stage:
//! [`recording`] (read captures) -> [`replay`] (select, send to baseline, candidate, noise
//! probe) -> [`compare`] (judge one exchange) -> [`analysis`] (aggregate per interface,
//! decide noise; merge shard results; trend against an earlier result) -> [`report`] (gates,
//! terminal, JSON, HTML, JUnit, Markdown); [`tap`] records production traffic and shadows it
//! live. [`cli`] is what the user typed, [`config`] the
//! validated run; [`exchange`] is the data model every stage shares. [`demo`] runs the whole
//! flow against two embedded gateway versions; [`inventory`] lists a capture's interfaces
//! without replaying; [`progress`] shows a replay's progress.
//!
//! The binary is a thin wrapper around [`run`], so tests drive the same code in-process.

pub mod analysis;
pub mod capture;
pub mod cli;
pub mod compare;
pub mod config;
pub mod demo;
pub mod error;
pub mod exchange;
pub mod failure;
pub mod glob;
pub mod hash;
pub mod http1;
pub mod interface;
pub mod inventory;
pub mod progress;
pub mod recording;
pub mod replay;
pub mod report;
pub mod safety;
pub mod show;
pub mod tap;
pub mod tls;
pub mod units;

use analysis::result::{RunResult, Verdict};
use cli::{Cli, Command};
use config::ReplayConfig;
use error::{Error, Result};
use report::Exporter;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

/// Exit code: the verdict passed (or the command succeeded).
pub const EXIT_PASS: u8 = 0;
/// Exit code: a gate tripped.
pub const EXIT_FAIL: u8 = 1;
/// Exit code: bad usage or input (a run that stopped at a bad recording line ends so too,
/// after writing what it judged).
pub const EXIT_BAD_INPUT: u8 = 2;

/// Runs one command line; returns the process exit code (errors carry their own, see
/// [`Error::exit_code`]).
pub fn run(cli: Cli) -> Result<u8> {
    init_tracing(cli.quiet, cli.verbose);
    match cli.command {
        Command::Demo(args) => {
            let previous = load_previous(args.reports.previous.as_deref());
            check_outputs(&[
                ("--json", Some(args.json.as_path())),
                ("--html", args.reports.html.as_deref()),
                ("--junit", args.reports.junit.as_deref()),
                ("--markdown", args.reports.markdown.as_deref()),
                ("--diffs", args.diffs.as_deref()),
            ])?;
            let rt = runtime(None)?;
            let mut result = rt.block_on(demo::run(&args, cli.quiet))?;
            // With `--json -` standard output is the JSON, for a script to parse; the
            // terminal report would make it unreadable, as it would for `replay`.
            let diffs_on_stdout = args.diffs.as_deref() == Some(Path::new("-"));
            deliver(
                &mut result,
                Some(&args.json),
                &args.reports,
                previous,
                cli.quiet,
                !diffs_on_stdout,
                args.diffs.as_deref(),
            )?;
            // The demo succeeded when it ran; its FAIL verdict is the point of the demonstration.
            Ok(EXIT_PASS)
        }
        Command::Replay(args) => {
            let cfg = ReplayConfig::from_args(&args)?;
            // Read the earlier result and try the report paths first: a typo in a name
            // should not cost a replay, and a missing trend is known before it starts.
            let previous = load_previous(args.reports.previous.as_deref());
            check_outputs(&[
                ("--json", cfg.json.as_deref()),
                ("--html", args.reports.html.as_deref()),
                ("--junit", args.reports.junit.as_deref()),
                ("--markdown", args.reports.markdown.as_deref()),
                ("--diffs", cfg.diffs.as_deref()),
            ])?;
            let rt = runtime(args.threads)?;
            let mut result = rt.block_on(replay_with_progress(&cfg, cli.quiet))?;
            // Differences streamed to standard output are for a program to read: the
            // terminal report would run into them.
            let diffs_on_stdout = cfg.diffs.as_deref() == Some(Path::new("-"));
            let code = deliver(
                &mut result,
                cfg.json.as_deref(),
                &args.reports,
                previous,
                cli.quiet,
                !diffs_on_stdout,
                cfg.diffs.as_deref(),
            )?;
            // The reports hold what was judged; the exit code still says the input was bad.
            match &result.run.incomplete {
                Some(why) => {
                    eprintln!("shadowdiff: error: {why}");
                    Ok(EXIT_BAD_INPUT)
                }
                None => Ok(code),
            }
        }
        Command::Show(args) => {
            let rt = runtime(None)?;
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let text = rt.block_on(show::run(&args, color))?;
            report::write_output(Path::new("-"), text.as_bytes()).map_err(|e| Error::io("-", e))?;
            Ok(EXIT_PASS)
        }
        Command::Import(args) => recording::import::run(&args, cli.quiet),
        Command::Merge(args) => {
            let inputs = args
                .results
                .iter()
                .map(|p| Ok((p.display().to_string(), read_result(p)?)))
                .collect::<Result<Vec<_>>>()?;
            let previous = load_previous(args.reports.previous.as_deref());
            let mut merged = analysis::merge(&inputs).map_err(|e| Error::Usage(e.to_string()))?;
            if let Some(s) = &merged.run.shard {
                let missing = s.missing();
                if !missing.is_empty() && !cli.quiet {
                    let list: Vec<String> = missing.iter().map(u32::to_string).collect();
                    eprintln!(
                        "shadowdiff: warning: shard {} of {} missing: the merged result covers only part of the exchanges",
                        list.join(", "),
                        s.count
                    );
                }
            }
            deliver(
                &mut merged,
                args.json.as_deref(),
                &args.reports,
                previous,
                cli.quiet,
                true,
                None,
            )
        }
        Command::Report(args) => {
            let mut result = read_result(&args.result)?;
            let previous = load_previous(args.reports.previous.as_deref());
            // Re-rendering into files is the point; the text report is for a bare `report`.
            let nothing_asked = args.json.is_none()
                && args.reports.html.is_none()
                && args.reports.junit.is_none()
                && args.reports.markdown.is_none();
            deliver(
                &mut result,
                args.json.as_deref(),
                &args.reports,
                previous,
                cli.quiet,
                nothing_asked,
                None,
            )
        }
        Command::Interfaces(args) => interfaces(&args, cli.quiet),
        Command::Tap(args) => {
            let cfg = tap::TapConfig::from_args(&args)?;
            let rt = tap::runtime(cfg.threads)?;
            rt.block_on(tap::run(cfg, cli.quiet))?;
            Ok(EXIT_PASS)
        }
        Command::Capture(args) => {
            capture::run(&args, cli.quiet)?;
            Ok(EXIT_PASS)
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command_worded();
            clap_complete::generate(shell, &mut cmd, "shadowdiff", &mut std::io::stdout());
            Ok(EXIT_PASS)
        }
    }
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(n) = threads {
        if n == 0 {
            return Err(Error::Usage("--threads: expected at least 1".into()));
        }
        b.worker_threads(n);
    }
    b.build()
        .map_err(|e| Error::internal("cannot start the async runtime", e))
}

fn init_tracing(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHADOWDIFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour codes only help a person at a terminal; in a log file or a journal they are
    // noise around every level name.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .event_format(UserFacing(
            tracing_subscriber::fmt::format().with_target(false),
        ))
        .try_init();
}

/// Prints warnings and errors the way the rest of the program speaks to the user
/// (`shadowdiff: warning: …`, `shadowdiff: error: …`), whatever the verbosity, so a person
/// or a script sees one form; the progress lines -v and -vv add (info, debug) keep `inner`'s
/// timestamps, which are what such lines are read for.
struct UserFacing<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for UserFacing<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let label = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            _ => return self.0.format_event(ctx, writer, event),
        };
        write!(writer, "shadowdiff: {label}: ")?;
        tracing_subscriber::fmt::FormatFields::format_fields(ctx, writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Replays with progress on standard error: a bar on a terminal, plain lines otherwise,
/// nothing when quiet. The display starts only once every input was opened and every target
/// reached, so an error before the first request is the only thing printed.
async fn replay_with_progress(cfg: &ReplayConfig, quiet: bool) -> Result<RunResult> {
    let progress = Arc::new(replay::Progress::default());
    let prepared = replay::prepare(cfg, &progress).await?;
    if !quiet {
        let what = match replay::Prepared::counted(&progress) {
            Some(n) => report::words::count_of(n, "exchange", "exchanges"),
            None => "exchanges".to_string(),
        };
        eprintln!(
            "replaying {what} against baseline {} and candidate {}",
            cfg.baseline, cfg.candidate
        );
    }
    let display = progress::start(progress.clone(), progress::Mode::detect(quiet));
    let r = replay::run(cfg, prepared, progress).await;
    display.finish(r.is_ok());
    r
}

/// Reads a saved result (`--json` of `replay` or `merge`), naming the file in errors.
pub fn read_result(path: &Path) -> Result<RunResult> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Input {
        file: path.to_path_buf(),
        line: e.line() as u64,
        message: format!("not a shadowdiff result ({e})"),
    })
}

/// Tries every output path before any work: a typo in a name should not cost a replay.
fn check_outputs(outputs: &[(&str, Option<&Path>)]) -> Result<()> {
    one_on_stdout(outputs)?;
    for path in outputs.iter().filter_map(|(_, p)| *p) {
        report::check_output(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Refuses two outputs on standard output: the two documents would run into one that no
/// reader of either format could parse.
fn one_on_stdout(outputs: &[(&str, Option<&Path>)]) -> Result<()> {
    let flags: Vec<&str> = outputs
        .iter()
        .filter(|(_, p)| *p == Some(Path::new("-")))
        .map(|(flag, _)| *flag)
        .collect();
    if flags.len() > 1 {
        return Err(Error::Usage(format!(
            "{}: only one output can go to standard output (`-`); give the others a file",
            flags.join(" and ")
        )));
    }
    Ok(())
}

/// What `--previous` gave: nothing asked, the earlier result with its label, or the warning
/// saying why there is no trend.
type Previous = Option<std::result::Result<(String, RunResult), String>>;

/// Reads the `--previous` result. The trend is extra information: a nightly job whose last
/// night wrote nothing (or something else) must still get tonight's verdict, so a file that
/// cannot be read or is not a result becomes a warning (on standard error now, in the run's
/// warnings later), never an error.
fn load_previous(path: Option<&Path>) -> Previous {
    let path = path?;
    let loaded = match read_result(path) {
        Ok(r) => Ok((path.display().to_string(), r)),
        Err(Error::Io { file, source }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(format!(
                "--previous {}: missing (no such file); this run has no trend",
                file.display()
            ))
        }
        Err(e) => Err(format!("--previous {e}; this run has no trend")),
    };
    if let Err(w) = &loaded {
        tracing::warn!("{w}");
    }
    Some(loaded)
}

/// Attaches the trend (or the warning why there is none), writes every requested file, prints the terminal report when wanted
/// (never when a report goes to standard output), and returns the verdict's exit code.
fn deliver(
    result: &mut RunResult,
    json: Option<&Path>,
    files: &cli::ReportFiles,
    previous: Previous,
    quiet: bool,
    terminal: bool,
    written_before: Option<&Path>,
) -> Result<u8> {
    one_on_stdout(&[
        ("--json", json),
        ("--html", files.html.as_deref()),
        ("--junit", files.junit.as_deref()),
        ("--markdown", files.markdown.as_deref()),
    ])?;
    match previous {
        Some(Ok((label, prev))) => {
            result.trend = Some(analysis::trend::compare(result, &prev, &label));
        }
        Some(Err(warning)) => result.run.warnings.push(warning),
        None => {}
    }
    let mut on_stdout = false;
    // The diffs file is written during the replay; it is said with the reports.
    let mut written: Vec<&Path> = written_before
        .into_iter()
        .filter(|p| *p != Path::new("-"))
        .collect();
    let outputs: [(Option<&Path>, &dyn Exporter); 4] = [
        (json, &report::JsonExporter),
        (files.html.as_deref(), &report::HtmlExporter),
        (files.junit.as_deref(), &report::JunitExporter),
        (files.markdown.as_deref(), &report::MarkdownExporter),
    ];
    for (path, exporter) in outputs {
        if let Some(path) = path {
            let bytes = exporter.export(result).map_err(|e| Error::io(path, e))?;
            report::write_output(path, &bytes).map_err(|e| Error::io(path, e))?;
            if path == Path::new("-") {
                on_stdout = true;
            } else {
                written.push(path);
            }
        }
    }
    // Said after the terminal report, where a person reading it looks next.
    let said = written
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    if terminal && !quiet && !on_stdout {
        print_terminal(result)?;
    }
    if !quiet && !said.is_empty() {
        eprintln!("wrote {}", said.join(", "));
    }
    Ok(match result.verdict {
        Verdict::Pass => EXIT_PASS,
        Verdict::Fail => EXIT_FAIL,
    })
}

/// `shadowdiff interfaces`: the inventory, and the rules check (exit 1 if an interface is
/// not covered).
fn interfaces(args: &cli::InterfacesArgs, quiet: bool) -> Result<u8> {
    let opts = inventory::InventoryOptions {
        keyer: interface::Keyer {
            key: match &args.interface {
                Some(s) => s
                    .parse()
                    .map_err(|e| Error::Usage(format!("--interface: {e}")))?,
                None => interface::InterfaceKey::Default,
            },
            templates: Vec::new(),
        },
        tenant_header: args.tenant_header.as_ref().map(|h| h.to_ascii_lowercase()),
        read: recording::ReadOptions {
            skip_bad_lines: args.skip_bad_lines,
        },
    };
    let rules_text = args
        .rules
        .as_deref()
        .map(inventory::read_rules)
        .transpose()?;
    let rules = args.rules.as_deref().zip(rules_text.as_deref());
    let inv = inventory::inventory(&args.recordings, &opts, rules)?;
    if let Some(path) = &args.json {
        let mut bytes = serde_json::to_vec_pretty(&inv)
            .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        bytes.push(b'\n');
        report::write_output(path, &bytes).map_err(|e| Error::io(path, e))?;
    }
    if !quiet && args.json.as_deref() != Some(Path::new("-")) {
        report::write_output(Path::new("-"), inv.render_text().as_bytes())
            .map_err(|e| Error::io("-", e))?;
    }
    Ok(if inv.has_uncovered() {
        EXIT_FAIL
    } else {
        EXIT_PASS
    })
}

/// Writes the result as JSON to `path` (`-` is standard output).
pub fn write_json(path: &Path, result: &RunResult) -> Result<()> {
    let bytes = report::json::JsonExporter
        .export(result)
        .map_err(|e| Error::io(path, e))?;
    report::write_output(path, &bytes).map_err(|e| Error::io(path, e))
}

fn print_terminal(result: &RunResult) -> Result<()> {
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let terminal = std::io::stdout()
        .is_terminal()
        .then(|| terminal_size::terminal_size_of(std::io::stdout()))
        .flatten()
        .map(|(w, _)| usize::from(w.0));
    let columns = std::env::var("COLUMNS").ok();
    let width = Some(report::fit::width_for(columns.as_deref(), terminal));
    let bytes = report::terminal::TerminalExporter { color, width }
        .export(result)
        .map_err(|e| Error::io("-", e))?;
    report::write_output(Path::new("-"), &bytes).map_err(|e| Error::io("-", e))
}

/// How many cases a property test runs: `default` in the normal suite, or the value of
/// `SHADOWDIFF_FUZZ_CASES` when `benches/fuzz.sh` runs the same properties as a bounded fuzz.
#[doc(hidden)]
pub fn fuzz_cases(default: u32) -> u32 {
    std::env::var("SHADOWDIFF_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
