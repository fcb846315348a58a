//! shadowdiff: capture production HTTP/RPC traffic, replay it against the old and the new
//! version of a gateway side by side, and report what differs.
//!
//! Data flows forward through one module per stage:
//! [`recording`] (read captures) -> [`replay`] (send to baseline, candidate, noise probe) ->
//! [`compare`] (judge one exchange) -> [`analysis`] (aggregate per interface, decide noise)
//! -> [`report`] (gates, terminal, JSON); [`tap`] records production traffic and shadows it
//! live. [`cli`] is what the user typed, [`config`] the
//! validated run; [`exchange`] is the data model every stage shares. [`demo`] runs the whole
//! flow against two embedded gateway versions.
//!
//! The binary is a thin wrapper around [`run`], so tests drive the same code in-process.

pub mod analysis;
pub mod cli;
pub mod compare;
pub mod config;
pub mod demo;
pub mod error;
pub mod exchange;
pub mod interface;
pub mod recording;
pub mod replay;
pub mod report;
pub mod tap;

use analysis::result::{RunResult, Verdict};
use clap::CommandFactory;
use cli::{Cli, Command};
use config::ReplayConfig;
use error::{Error, Result};
use exchange::Side;
use report::Exporter;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Exit code: the verdict passed (or the command succeeded).
pub const EXIT_PASS: u8 = 0;
/// Exit code: a gate tripped.
pub const EXIT_FAIL: u8 = 1;

/// Runs one command line; returns the process exit code (errors carry their own, see
/// [`Error::exit_code`]).
pub fn run(cli: Cli) -> Result<u8> {
    init_tracing(cli.quiet, cli.verbose);
    match cli.command {
        Command::Demo(args) => {
            let rt = runtime(None)?;
            let result = rt.block_on(demo::run(&args, cli.quiet))?;
            if !cli.quiet {
                print_terminal(&result)?;
                eprintln!("wrote {}", args.json.display());
            }
            // The demo succeeded when it ran; its FAIL verdict is the point of the demonstration.
            Ok(EXIT_PASS)
        }
        Command::Replay(args) => {
            let cfg = ReplayConfig::from_args(&args)?;
            let rt = runtime(args.threads)?;
            let result = rt.block_on(replay_with_progress(&cfg, cli.quiet))?;
            if let Some(path) = &cfg.json {
                write_json(path, &result)?;
            }
            let json_on_stdout = cfg.json.as_deref() == Some(Path::new("-"));
            if !cli.quiet && !json_on_stdout {
                print_terminal(&result)?;
            }
            Ok(match result.verdict {
                Verdict::Pass => EXIT_PASS,
                Verdict::Fail => EXIT_FAIL,
            })
        }
        Command::Tap(args) => {
            let cfg = tap::TapConfig::from_args(&args)?;
            let rt = tap::runtime(cfg.threads)?;
            rt.block_on(tap::run(cfg, cli.quiet))?;
            Ok(EXIT_PASS)
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
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
    b.build().map_err(|e| Error::Runtime {
        side: Side::Input,
        message: format!("cannot start the async runtime: {e}"),
    })
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Replays with a periodic progress line on standard error (unless quiet).
async fn replay_with_progress(cfg: &ReplayConfig, quiet: bool) -> Result<RunResult> {
    let progress = Arc::new(replay::Progress::default());
    let ticker = (!quiet).then(|| {
        let p = progress.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                let done = p.done.load(Ordering::Relaxed);
                eprintln!(
                    "replayed {done} exchanges ({:.0}/s)",
                    done as f64 / start.elapsed().as_secs_f64()
                );
            }
        })
    });
    let r = replay::replay(cfg, progress).await;
    if let Some(t) = ticker {
        t.abort();
    }
    r
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
    let bytes = report::terminal::TerminalExporter { color }
        .export(result)
        .map_err(|e| Error::io("-", e))?;
    report::write_output(Path::new("-"), &bytes).map_err(|e| Error::io("-", e))
}
