//! The command line as the user types it (clap derive): every subcommand and flag with its
//! help text. Nothing here is interpreted beyond parsing; `config` turns these raw values
//! into a validated run configuration, so the rest of the program never sees raw strings.

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Capture production HTTP/RPC traffic, replay it against the old and the new version of a
/// gateway side by side, and report what differs.
#[derive(Debug, Parser)]
#[command(name = "shadowdiff", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Print nothing but errors (each command says what else it keeps).
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more about what is happening (repeat for more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What `--quiet` keeps, per command: the same flag means "errors only" everywhere, but what
/// a script still gets from each command differs.
const QUIET: [(&str, &str); 9] = [
    ("completions", "Has no effect: the script is the output"),
    (
        "demo",
        "Print nothing but errors; the result is still written to --json",
    ),
    (
        "replay",
        "Print nothing but errors: no progress, no report (files asked for are still written; \
         the exit code tells the verdict)",
    ),
    (
        "show",
        "Print nothing but errors besides the exchange itself",
    ),
    (
        "import",
        "Print nothing but errors: no summary of what was read, written and skipped",
    ),
    (
        "merge",
        "Print nothing but errors: no report, no warnings (the exit code tells the verdict)",
    ),
    (
        "report",
        "Print nothing but errors: no report on the terminal (the exit code tells the verdict)",
    ),
    (
        "interfaces",
        "Print nothing but errors: no list (exit 1 still says an interface is not covered)",
    ),
    (
        "tap",
        "Print nothing but errors: no `listening on` line, no shutdown summary",
    ),
];

const REPLAY_EXAMPLES: &str = "\
Examples:
  # gate a release: exit 1 when the candidate differs beyond noise
  shadowdiff replay traffic.jsonl --baseline http://old:8080 --candidate http://new:8080 \\
      --html report.html --junit junit.xml
  # RPC traffic whose POSTs only read: replay them and ask the baseline twice for noise
  shadowdiff replay rpc.jsonl.zst --baseline http://old:8080 --candidate http://new:8080 \\
      --safe 'POST /rpc/*/Get*' --max-diff-rate 1%
  # the requests around an incident, at their recorded pace
  shadowdiff replay traffic.jsonl --baseline http://old:8080 --candidate http://new:8080 \\
      --since 2026-03-01T14:00:00Z --until 2026-03-01T14:20:00Z --speed 1";

const TAP_EXAMPLES: &str = "\
Examples:
  # record everything production answers, one zstd file an hour
  shadowdiff tap --listen 0.0.0.0:8080 --upstream http://gw-old:8080 \\
      --out traffic.jsonl.zst --rotate-interval 1h
  # a tenth of the traffic, with card numbers and tokens redacted
  shadowdiff tap --listen 0.0.0.0:8080 --upstream http://gw-old:8080 --out sample.jsonl \\
      --sample 10% --redact-json-path '$.card.number' --redact-header x-session
  # shadow 1% of the reads to the new version live, with a report on :9090/report
  shadowdiff tap --listen 0.0.0.0:8080 --upstream http://gw-old:8080 --out t.jsonl \\
      --shadow http://gw-new:8080 --shadow-sample 1% --safe 'POST /rpc/*/Get*' --metrics 127.0.0.1:9090";

impl Cli {
    /// The command line definition with each command's own `--quiet` wording.
    pub fn command_worded() -> clap::Command {
        let mut cmd = Cli::command();
        let arg = |id: &str| cmd.get_arguments().find(|a| a.get_id() == id).cloned();
        let (Some(quiet), Some(verbose)) = (arg("quiet"), arg("verbose")) else {
            return cmd;
        };
        // A subcommand's own copy of a global flag takes the place of the one clap would
        // hand down, so each command can say what --quiet keeps for it; --verbose comes
        // along because --quiet names it as a conflict.
        for (name, help) in QUIET {
            let worded = quiet.clone().help(help);
            let verbose = verbose.clone();
            cmd = cmd.mut_subcommand(name, |sub| sub.arg(worded).arg(verbose));
        }
        cmd
    }

    /// Parses the process's arguments (exits with clap's message and code 2 on bad usage).
    pub fn parse_worded() -> Cli {
        let matches: ArgMatches = Cli::command_worded().get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start two embedded gateway versions, replay the bundled recording against both, and
    /// print the report (writes demo-report.json).
    Demo(DemoArgs),
    /// Replay recordings against a baseline and a candidate and report what differs.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(Box<ReplayArgs>),
    /// Show one exchange in full: its request, the recorded response, the commands that
    /// send it again, and with --baseline/--candidate both live answers, each difference
    /// judged as replay would judge it, and unified diffs of headers and bodies.
    #[command(
        override_usage = "shadowdiff show [OPTIONS] <RECORDING>... <ID>\n       shadowdiff show [OPTIONS] <RECORDING>... --id <ID>"
    )]
    Show(Box<ShowArgs>),
    /// Turn captures made by other tools (GoReplay `.gor`, HAR, pcap/pcapng) into a
    /// recording, and say what was read, written and skipped.
    Import(ImportArgs),
    /// Merge results (the shards of one run) into one exact result.
    Merge(MergeArgs),
    /// Render a saved result again, as HTML, JUnit XML, Markdown or text.
    Report(ReportArgs),
    /// List every interface in recordings; with --rules, the ones no rule covers.
    Interfaces(InterfacesArgs),
    /// Reverse proxy in front of production that records traffic (and optionally shadows a
    /// share of it to a candidate) without ever making production wait or fail.
    #[command(after_help = TAP_EXAMPLES)]
    Tap(Box<TapArgs>),
    /// Record the HTTP traffic reaching ports of this host from the network device,
    /// passively (Linux AF_PACKET ring; needs cap_net_raw), into a recording; every
    /// exchange seen is recorded, sampled out, or counted lost by reason.
    Capture(Box<CaptureArgs>),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Flags of `demo`: the report files `replay` writes, so every report can be seen on the
/// demo's result.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the JSON result (`-` for standard output).
    #[arg(long, default_value = "demo-report.json", value_name = "FILE")]
    pub json: PathBuf,
    /// Report files and the trend baseline.
    #[command(flatten)]
    pub reports: ReportFiles,
    /// Write one JSON line per exchange that was not identical, as `replay --diffs` does.
    #[arg(long, value_name = "FILE")]
    pub diffs: Option<PathBuf>,
}

/// Flags of `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Recording files to search, then the exchange id (unless it is given with --id).
    #[arg(required = true, value_name = "RECORDING")]
    pub recordings: Vec<PathBuf>,
    /// The exchange id (all the positional arguments are then recordings).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Send the request to this baseline too; without --candidate, its live answer is
    /// compared with the recorded one.
    #[arg(long, value_name = "URL")]
    pub baseline: Option<String>,
    /// ...and to this candidate, at the same moment, and judge the pair as replay would.
    #[arg(long, value_name = "URL", requires = "baseline")]
    pub candidate: Option<String>,
    /// Rules file, for the comparison (ignore rules, tolerances, noise margins, declared
    /// reads, interface keys).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A protobuf FileDescriptorSet: gRPC bodies by field name, the methods whose
    /// idempotency_level says they only read asked twice for noise, and a grpcurl command.
    #[arg(long, value_name = "FILE")]
    pub proto_descriptor: Option<PathBuf>,
    /// Interfaces that only read, though not sent as GET, as for replay: asked twice for
    /// noise like a GET (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub safe: Vec<String>,
    /// Write the recorded request body to FILE, for a re-send command that reads a binary or
    /// long body from a file.
    #[arg(long, value_name = "FILE")]
    pub save_body: Option<PathBuf>,
    /// Per-request deadline.
    #[arg(long, default_value = "10s", value_name = "DUR")]
    pub timeout: String,
    /// Host header of the requests sent.
    #[arg(long, value_enum, default_value_t = HostHeaderMode::Target, value_name = "MODE")]
    pub host_header: HostHeaderMode,
    /// Set a header on the requests sent ('Name: value').
    #[arg(long, value_name = "'H: V'")]
    pub set_header: Vec<String>,
    /// Skip recording lines that do not parse (with a warning) instead of stopping.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// TLS settings of https:// targets.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Play the baseline gateway's upstream at this address, as replay does, and show what
    /// each gateway forwarded side by side.
    #[arg(
        long,
        value_name = "ADDR",
        requires_all = ["candidate_upstream", "candidate"]
    )]
    pub baseline_upstream: Option<String>,
    /// Play the candidate gateway's upstream at this address.
    #[arg(long, value_name = "ADDR", requires = "baseline_upstream")]
    pub candidate_upstream: Option<String>,
    /// When the played upstream answers: `none` or `recorded`, as for replay.
    #[arg(long, value_enum, default_value_t = UpstreamLatency::None, value_name = "WHEN")]
    pub upstream_latency: UpstreamLatency,
}

/// When shadowdiff, playing a gateway's upstream, sends the recorded answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UpstreamLatency {
    /// At once: the latency measured is what the gateway itself adds.
    None,
    /// After the latency the exchange was recorded with.
    Recorded,
}

impl UpstreamLatency {
    /// The name on the command line and in the result.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamLatency::None => "none",
            UpstreamLatency::Recorded => "recorded",
        }
    }
}

/// How `https://` targets are spoken to: one setting for all of them, and per side where
/// a side needs its own.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// The settings for every https:// target.
    #[command(flatten)]
    pub client: TlsClientArgs,
    /// The baseline's own TLS setting, over the one for all: ca-cert=FILE, client-cert=FILE,
    /// client-key=FILE, server-name=NAME or insecure[=true|false] (repeatable).
    #[arg(help_heading = "TLS", long, value_name = "KEY=VALUE")]
    pub baseline_tls: Vec<String>,
    /// The candidate's own TLS setting, as --baseline-tls.
    #[arg(help_heading = "TLS", long, value_name = "KEY=VALUE")]
    pub candidate_tls: Vec<String>,
}

/// How shadowdiff speaks TLS as a client: to replay's `https://` targets, the tap's
/// `https://` upstream and its live shadow.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsClientArgs {
    /// PEM file of CA certificates trusted for https:// targets and upstreams, besides the
    /// platform's roots.
    #[arg(help_heading = "TLS", long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify https:// targets' and upstreams' certificates (reports then say so).
    #[arg(help_heading = "TLS", long)]
    pub insecure: bool,
    /// PEM client certificate (chain) shown to an https:// target or upstream that asks for
    /// one (mutual TLS).
    #[arg(
        help_heading = "TLS",
        long,
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        help_heading = "TLS",
        long,
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Name sent as SNI and verified against the certificate, for a target or upstream
    /// given by address (default: the URL's host).
    #[arg(help_heading = "TLS", long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

/// How the Host header of replayed requests is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HostHeaderMode {
    /// Each target's own authority (what a gateway behind a new address expects).
    Target,
    /// The Host header as recorded (for virtual-host routing).
    Keep,
}

/// Flags of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Recording files (format v1, `.zst` for zstd); several are merged in timestamp order.
    #[arg(required = true, value_name = "RECORDING")]
    pub recordings: Vec<PathBuf>,
    /// The old version: `http://host:port[/prefix]`, `https://host:port[/prefix]` (HTTP/2
    /// or HTTP/1.1 as the server chooses), or `h2c://host:port` for HTTP/2 prior knowledge.
    #[arg(help_heading = "Targets", long, value_name = "URL")]
    pub baseline: String,
    /// The new version, same forms as --baseline.
    #[arg(help_heading = "Targets", long, value_name = "URL")]
    pub candidate: String,
    /// A second baseline for the noise probe (default: the baseline again).
    #[arg(
        help_heading = "Targets",
        long,
        value_name = "URL",
        conflicts_with = "no_noise_probe"
    )]
    pub secondary: Option<String>,
    /// Do not send the noise probe; every candidate difference then counts.
    #[arg(help_heading = "Targets", long)]
    pub no_noise_probe: bool,
    /// Play the baseline gateway's upstream at this address (`host:port`): its forwarded
    /// requests are answered as recorded and compared with the candidate's; writes are
    /// replayed, since nothing reaches a real backend.
    #[arg(
        help_heading = "Upstream",
        long,
        value_name = "ADDR",
        requires = "candidate_upstream"
    )]
    pub baseline_upstream: Option<String>,
    /// Play the candidate gateway's upstream at this address (`host:port`).
    #[arg(
        help_heading = "Upstream",
        long,
        value_name = "ADDR",
        requires = "baseline_upstream"
    )]
    pub candidate_upstream: Option<String>,
    /// When the played upstream answers: `none` (at once, so latency is the gateway's own)
    /// or `recorded` (after the recorded latency).
    #[arg(
        help_heading = "Upstream",
        long,
        value_enum,
        default_value_t = UpstreamLatency::None,
        value_name = "WHEN"
    )]
    pub upstream_latency: UpstreamLatency,
    /// Exchanges in flight at once (closed loop), or the cap on in-flight exchanges with
    /// --rate/--speed.
    #[arg(help_heading = "Pacing", long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    /// Open loop: start this many exchanges per second whatever the targets do; latencies
    /// count from the scheduled start (no coordinated omission).
    #[arg(
        help_heading = "Pacing",
        long,
        value_name = "N",
        conflicts_with = "speed"
    )]
    pub rate: Option<f64>,
    /// Keep the recorded inter-arrival times, divided by X (2 = twice as fast).
    #[arg(help_heading = "Pacing", long, value_name = "X")]
    pub speed: Option<f64>,
    /// Per-request deadline for a complete answer (e.g. 10s, 500ms).
    #[arg(
        help_heading = "Targets",
        long,
        default_value = "10s",
        value_name = "DUR"
    )]
    pub timeout: String,
    /// Before replaying, poll GET PATH on every target until it answers 2xx.
    #[arg(help_heading = "Targets", long, value_name = "PATH")]
    pub wait_ready: Option<String>,
    /// How long --wait-ready waits before giving up (exit 3).
    #[arg(
        help_heading = "Targets",
        long,
        default_value = "15m",
        value_name = "DUR"
    )]
    pub ready_timeout: String,
    /// Interface key: `default` (gRPC method or METHOD /path with ids templated),
    /// `header:NAME`, or `json:/pointer` into the request body.
    #[arg(help_heading = "Inputs", long, value_name = "KEY")]
    pub interface: Option<String>,
    /// Header whose value names the tenant.
    #[arg(help_heading = "Inputs", long, value_name = "H")]
    pub tenant_header: Option<String>,
    /// Replay POST, PUT, PATCH and DELETE too (they are skipped by default).
    #[arg(help_heading = "Judging", long)]
    pub allow_side_effects: bool,
    /// Interfaces that only read, though not sent as GET: replayed without
    /// --allow-side-effects and asked twice for noise like a GET (repeatable; e.g.
    /// 'POST /rpc/*/Get*'; also [side_effects] safe in the config).
    #[arg(help_heading = "Judging", long, value_name = "GLOB")]
    pub safe: Vec<String>,
    /// Do not take the recorded answer as a noise sample where the baseline is not asked
    /// twice.
    #[arg(help_heading = "Judging", long)]
    pub no_recorded_noise: bool,
    /// Set a header on every replayed request, replacing a recorded one ('Name: value');
    /// not the connection's own (content-length, transfer-encoding, connection, te, upgrade).
    #[arg(help_heading = "Targets", long, value_name = "'H: V'")]
    pub set_header: Vec<String>,
    /// Host header of replayed requests.
    #[arg(help_heading = "Targets", long, value_enum, default_value_t = HostHeaderMode::Target, value_name = "MODE")]
    pub host_header: HostHeaderMode,
    /// Skip recording lines that do not parse (with a warning) instead of stopping.
    #[arg(help_heading = "Inputs", long)]
    pub skip_bad_lines: bool,
    /// TLS settings of https:// targets.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The --secondary target's own TLS setting, as --baseline-tls (without --secondary, the
    /// probe is the baseline and takes its settings).
    #[arg(
        help_heading = "TLS",
        long,
        value_name = "KEY=VALUE",
        requires = "secondary"
    )]
    pub secondary_tls: Vec<String>,
    /// Write the result as JSON (`-` for standard output).
    #[arg(help_heading = "Reports", long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Report files and the trend baseline.
    #[command(flatten, next_help_heading = "Reports")]
    pub reports: ReportFiles,
    /// Replay only exchanges recorded at or after this time (RFC 3339, inclusive).
    #[arg(help_heading = "Inputs", long, value_name = "T")]
    pub since: Option<String>,
    /// Replay only exchanges recorded before this time (RFC 3339, exclusive).
    #[arg(help_heading = "Inputs", long, value_name = "T")]
    pub until: Option<String>,
    /// Replay only the exchange with this id (repeat for several).
    #[arg(help_heading = "Inputs", long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Replay only exchanges matching KEY=VALUE or KEY!=VALUE; KEY is interface, method,
    /// status (recorded status; 5xx and comma lists work), tenant or header:NAME; values
    /// take * globs. Repeat to require several.
    #[arg(help_heading = "Inputs", long = "filter", value_name = "EXPR")]
    pub filters: Vec<String>,
    /// Replay only shard K of N (K from 0 to N-1, as JOB_COMPLETION_INDEX): the exchanges
    /// whose id hashes (FNV-1a) to K modulo N. Merge the shard results with `merge`.
    #[arg(help_heading = "Inputs", long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Outcome classes that fail the run: missing_rule, different, latency,
    /// candidate_error, baseline_error (comma-separated)
    /// [default: missing_rule,different,latency,candidate_error].
    #[arg(help_heading = "Gates", long, value_name = "CLASSES")]
    pub fail_on: Option<String>,
    /// Fail on `different` only when more than this share of compared exchanges differ
    /// (`1%` or `0.01`).
    #[arg(help_heading = "Gates", long, value_name = "SHARE", value_parser = crate::units::share)]
    pub max_diff_rate: Option<f64>,
    /// Relative slowdown of the paired median latency that counts as a regression
    /// (`25%` or `0.25`) [default: 25%].
    #[arg(help_heading = "Gates", long, value_name = "SHARE", value_parser = crate::units::ratio)]
    pub max_latency_regression: Option<f64>,
    /// Absolute slowdown (paired median) that a latency regression also needs [default: 2ms].
    #[arg(help_heading = "Gates", long, value_name = "DUR")]
    pub latency_min_slowdown: Option<String>,
    /// Two values that read as times and differ by at most this much are noise [default: 5s].
    #[arg(help_heading = "Judging", long, value_name = "DUR")]
    pub time_tolerance: Option<String>,
    /// Rules file (see shadowdiff.example.toml): ignore rules, tolerances, interface keys,
    /// missing-rule signature, thresholds. Flags win over the file.
    #[arg(help_heading = "Judging", long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write one JSON line per exchange that was not identical: its outcome and every
    /// difference with both values and whether it was noise.
    #[arg(help_heading = "Reports", long, value_name = "FILE")]
    pub diffs: Option<PathBuf>,
    /// A protobuf FileDescriptorSet (`protoc --include_imports --descriptor_set_out=FILE`):
    /// gRPC answers of the methods it describes show field names instead of numbers.
    #[arg(help_heading = "Judging", long, value_name = "FILE")]
    pub proto_descriptor: Option<PathBuf>,
    /// Candidate gRPC statuses that mean a missing routing rule when the baseline's status
    /// was not one of them (comma-separated codes; an empty list disables the check).
    #[arg(
        help_heading = "Judging",
        long,
        value_name = "LIST",
        default_value = "12"
    )]
    pub missing_rule_grpc_status: String,
    /// Largest response body read from a target (`64MiB`, `512KiB`); larger answers are
    /// errors.
    #[arg(help_heading = "Targets", long, value_name = "SIZE", default_value = "64MiB", value_parser = crate::units::size)]
    pub max_body: u64,
    /// Replay worker threads, each with its own connections (default: one per core).
    #[arg(help_heading = "Targets", long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Capture formats `import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// GoReplay `.gor` files (requests, original responses; `.gz` accepted).
    Gor,
    /// HAR 1.2 files saved by browsers and proxies.
    Har,
    /// pcap or pcapng captures (tcpdump, Wireshark) of HTTP/1.x over TCP.
    Pcap,
}

/// Flags of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The format of the inputs (default: told from each file's first bytes, gzip undone,
    /// or else its name).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub from: Option<ImportFormat>,
    /// Input files, read as one capture (gzip-compressed files are recognised).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// The recording to write (`.zst` for zstd, `-` for standard output).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Exit 2 and write no recording when anything had to be skipped or was written
    /// incomplete.
    #[arg(long)]
    pub strict: bool,
}

/// Report files every command that produces or reads a result can write.
#[derive(Clone, Debug, Default, Args)]
pub struct ReportFiles {
    /// Write a self-contained HTML report (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write JUnit XML, one testcase per interface (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a short Markdown summary for a pull request or chat (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// An earlier result: mark interfaces and paths as new, still failing, or fixed since.
    #[arg(long, value_name = "RESULT.json")]
    pub previous: Option<PathBuf>,
}

/// Flags of `merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Results to merge (`--json` output of `replay`, or of an earlier `merge`).
    #[arg(required = true, value_name = "RESULT.json")]
    pub results: Vec<PathBuf>,
    /// Write the merged result as JSON (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Report files and the trend baseline.
    #[command(flatten)]
    pub reports: ReportFiles,
}

/// Flags of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A saved result (`--json` output of `replay` or `merge`).
    #[arg(value_name = "RESULT.json")]
    pub result: PathBuf,
    /// Write the result as JSON again (with its trend when --previous is given).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Report files and the trend baseline.
    #[command(flatten)]
    pub reports: ReportFiles,
}

/// Flags of `interfaces`.
#[derive(Debug, Args)]
pub struct InterfacesArgs {
    /// Recording files (format v1, `.zst` for zstd).
    #[arg(required = true, value_name = "RECORDING")]
    pub recordings: Vec<PathBuf>,
    /// Rules of the new gateway, one per line (`#` comments): `METHOD /path-glob`, or a bare
    /// path for any method as in haproxy `path -f` lists (`/a/` is a prefix). Lists the
    /// interfaces no rule covers (exit 1 if any) and the rules no traffic used.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Interface key, as for replay: `default`, `header:NAME` or `json:/pointer`.
    #[arg(long, value_name = "KEY")]
    pub interface: Option<String>,
    /// Header whose value names the tenant.
    #[arg(long, value_name = "H")]
    pub tenant_header: Option<String>,
    /// Skip recording lines that do not parse (with a warning) instead of stopping.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Write the inventory as JSON (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Flags of `capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Network device to capture from (`eth0`, `lo`).
    #[arg(long, value_name = "DEV")]
    pub device: String,
    /// TCP port whose HTTP traffic is recorded (the server's port). Repeatable.
    #[arg(long, value_name = "PORT", required = true)]
    pub port: Vec<u16>,
    /// Recording file (format v1; `.zst` for zstd). With rotation, files are named
    /// `STEM-TIME-SEQ.EXT` next to it.
    #[arg(long, value_name = "PATH")]
    pub out: std::path::PathBuf,
    /// Stop after this long (`30s`, `1h`); otherwise at SIGTERM or SIGINT.
    #[arg(long, value_name = "DUR")]
    pub duration: Option<String>,
    /// Stop once this many exchanges have been seen.
    #[arg(long, value_name = "N")]
    pub max_exchanges: Option<u64>,
    /// Share of exchanges recorded (`10%` or `0.1`), decided by a hash of the exchange id.
    #[arg(long, default_value = "1", value_name = "SHARE", value_parser = crate::units::share)]
    pub sample: f64,
    /// Every interface keeps at least this many exchanges per output file, however rare.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub min_per_interface: u32,
    /// Redact this header too (authorization, proxy-authorization, cookie, set-cookie and
    /// x-api-key always are). Repeatable.
    #[arg(long, value_name = "H")]
    pub redact_header: Vec<String>,
    /// Redact this JSON body field (`$.a.b`, `$.items[*].card`). Repeatable.
    #[arg(long, value_name = "PATH")]
    pub redact_json_path: Vec<String>,
    /// Largest body kept in the recording per request and per response (`1MiB`, `64k`);
    /// beyond it the copy is cut and marked `body_truncated`.
    #[arg(long, default_value = "1MiB", value_name = "SIZE")]
    pub max_body: String,
    /// Start a new file when the current one reaches this size (uncompressed, `256MiB`).
    #[arg(long, value_name = "SIZE")]
    pub rotate_size: Option<String>,
    /// Start a new file when the current one is this old (`1h`, `15m`).
    #[arg(long, value_name = "DUR")]
    pub rotate_interval: Option<String>,
    /// Serve `/metrics` (Prometheus) here; the bound address is printed as `metrics on ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Memory of the kernel's packet ring (`64MiB`); a bigger ring rides out longer bursts
    /// before the kernel drops packets (counted).
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    pub ring_size: String,
    /// A connection with no packet for this long is given up (`10m`, `30s`): what it
    /// completed is kept, a message it left half sent is counted as lost.
    #[arg(long, default_value = "10m", value_name = "DUR")]
    pub idle_timeout: String,
    /// Bytes all followed connections may hold at once (out-of-order segments, messages
    /// being read, requests waiting for their answers); beyond it the connections holding
    /// the most are given up, counted.
    #[arg(long, default_value = "256MiB", value_name = "SIZE")]
    pub stream_memory: String,
    /// Exchanges waiting for the recorder at most; beyond it the ring reader waits (the
    /// kernel's ring fills meanwhile).
    #[arg(long, default_value_t = 131072, value_name = "N")]
    pub queue_size: usize,
    /// Bytes (bodies and headers) waiting for the recorder at most (bounds memory).
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    pub queue_bytes: String,
}

/// Flags of `tap`.
#[derive(Debug, Args)]
pub struct TapArgs {
    /// Address to accept client connections on (`127.0.0.1:0` picks a free port; the bound
    /// address is printed as `listening on ADDR`).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Production: `http://host:port[/prefix]` (HTTP/1.1; gRPC requests go over h2c),
    /// `https://host:port[/prefix]` (TLS; HTTP/1.1, gRPC over h2 by ALPN), or
    /// `h2c://host:port` to send everything over HTTP/2 prior knowledge.
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// TLS to an `https://` upstream or shadow.
    #[command(flatten)]
    pub tls_client: TlsClientArgs,
    /// The `--shadow` candidate's own TLS setting, over `--ca-cert`, `--insecure`,
    /// `--client-cert`/`--client-key` and `--tls-server-name`: ca-cert=FILE,
    /// client-cert=FILE, client-key=FILE, server-name=NAME or insecure[=true|false]
    /// (repeatable).
    #[arg(long, value_name = "KEY=VALUE", requires = "shadow")]
    pub shadow_tls: Vec<String>,
    /// Recording file (format v1; `.zst` for zstd). With rotation, files are named
    /// `STEM-TIME-SEQ.EXT` next to it.
    #[arg(long, value_name = "PATH")]
    pub out: std::path::PathBuf,
    /// Serve TLS on `--listen` with this certificate chain (PEM, the server's certificate
    /// first); HTTP/1.1 and HTTP/2 are offered by ALPN. Read again on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted). Read
    /// again on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Share of exchanges recorded (`10%` or `0.1`), decided by a hash of the exchange id.
    #[arg(long, default_value = "1", value_name = "SHARE", value_parser = crate::units::share)]
    pub sample: f64,
    /// Every interface keeps at least this many exchanges per output file, however rare.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub min_per_interface: u32,
    /// Redact this header too (authorization, proxy-authorization, cookie, set-cookie and
    /// x-api-key always are). Repeatable.
    #[arg(long, value_name = "H")]
    pub redact_header: Vec<String>,
    /// Redact this JSON body field (`$.a.b`, `$.items[*].card`). Repeatable.
    #[arg(long, value_name = "PATH")]
    pub redact_json_path: Vec<String>,
    /// Rules file: its `[redact]` section adds headers and JSON paths to redact, its
    /// `[side_effects]` declares reads, and its `[gate]`, `[noise]` and `[latency]` judge
    /// the live shadow as they judge a replay.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Largest body kept in the recording per request and per response (`1MiB`, `64k`);
    /// beyond it the copy is cut and marked `body_truncated`. Traffic itself is not cut.
    #[arg(long, default_value = "1MiB", value_name = "SIZE")]
    pub max_body: String,
    /// Start a new file when the current one reaches this size (uncompressed, `256MiB`).
    #[arg(long, value_name = "SIZE")]
    pub rotate_size: Option<String>,
    /// Start a new file when the current one is this old (`1h`, `15m`).
    #[arg(long, value_name = "DUR")]
    pub rotate_interval: Option<String>,
    /// Candidate to send a copy of sampled requests to, after production answered:
    /// `http://host:port`, `https://host:port` or `h2c://host:port`.
    #[arg(long, value_name = "URL")]
    pub shadow: Option<String>,
    /// Share of requests shadowed (`1%` or `0.01`), decided by a hash of the exchange id.
    #[arg(long, default_value = "1%", value_name = "SHARE", value_parser = crate::units::share, requires = "shadow")]
    pub shadow_sample: f64,
    /// Shadow requests in flight at once; beyond it copies are dropped and counted.
    #[arg(long, default_value_t = 64, value_name = "N", requires = "shadow")]
    pub shadow_concurrency: usize,
    /// Shadow POST, PUT, PATCH and DELETE too (they are not shadowed by default).
    #[arg(long)]
    pub allow_side_effects: bool,
    /// Interfaces that only read, though not sent as GET: shadowed, and asked of
    /// production twice for noise, like a GET (repeatable; e.g. 'POST /rpc/*/Get*'; also
    /// [side_effects] safe in the config).
    #[arg(long, value_name = "GLOB")]
    pub safe: Vec<String>,
    /// Share of shadowed safe requests that production answers a second time, the live
    /// shadow's measure of noise (0 turns it off; each adds one request to production).
    #[arg(long, default_value = "25%", value_name = "SHARE", value_parser = crate::units::share, requires = "shadow")]
    pub shadow_noise_sample: f64,
    /// Redact the copy sent to the candidate as the recording is redacted (the secret
    /// headers and `--redact-json-path` fields). Off by default: the candidate gets the
    /// credentials as production got them, which it usually needs to answer the same.
    #[arg(long, requires = "shadow")]
    pub shadow_redact: bool,
    /// Serve `/metrics` (Prometheus), `/healthz`, `/report` and `/report.html` here.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Worker threads of the runtime (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// On SIGTERM or SIGINT, how long in-flight exchanges may take to finish.
    #[arg(long, default_value = "10s", value_name = "DUR")]
    pub shutdown_grace: String,
    /// Deadline for production's response head; past it the client gets 504.
    #[arg(long, default_value = "60s", value_name = "DUR")]
    pub upstream_timeout: String,
    /// Largest request head accepted (HTTP/1 buffer, HTTP/2 header list); at least 8KiB.
    #[arg(long, default_value = "64KiB", value_name = "SIZE")]
    pub max_header_bytes: String,
    /// A request head must be complete within this long of the tap being ready for it (a
    /// connection's start, or on HTTP/1 the end of the previous answer); past it the
    /// connection is closed without an answer.
    #[arg(long, default_value = "30s", value_name = "DUR")]
    pub head_timeout: String,
    /// A client connection with no request in progress (HTTP/2: no open stream) is closed
    /// after this long.
    #[arg(long, default_value = "75s", value_name = "DUR")]
    pub idle_timeout: String,
    /// HTTP/2 streams a client may have open on one connection; each may hold a production
    /// connection while its answer streams.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub http2_max_streams: u32,
    /// Largest request body forwarded (`0` for no limit); beyond it the client gets 413.
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    pub max_request_body: String,
    /// Exchanges waiting for the recorder at most; beyond it they are dropped and counted.
    #[arg(long, default_value_t = 16384, value_name = "N")]
    pub queue_size: usize,
    /// Bytes (bodies and headers) waiting for the recorder at most (bounds memory).
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    pub queue_bytes: String,
    /// Interface key for per-interface minimums and the live report: `default`,
    /// `header:NAME` or `json:/pointer`.
    #[arg(long, value_name = "KEY")]
    pub interface: Option<String>,
    /// Testing aid: sleep this long before every recorder write (a simulated slow disk).
    #[arg(long, value_name = "DUR", hide = true)]
    pub debug_write_delay: Option<String>,
}
