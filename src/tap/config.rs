//! What a tap run does, validated: the raw `tap` flags from [`crate::cli::TapArgs`] become a
//! [`TapConfig`] here, in one place, with every value checked and every error naming the
//! flag and what was expected. The proxy, recorder and shadow only ever see this.

use crate::cli::TapArgs;
use crate::config::parse_duration;
use crate::error::{Error, Result};
use crate::interface::InterfaceKey;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The smallest request-head buffer hyper accepts; smaller values would make it panic.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// Where production is and how to speak to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The URL as given.
    pub url: String,
    /// `host:port`, used to connect and for absolute-form checks.
    pub authority: String,
    /// Path prefix prepended to every request path, without trailing slash.
    pub prefix: String,
    /// True for `h2c://`: every request goes over HTTP/2 prior knowledge.
    pub http2: bool,
    /// True for `https://`: every connection is a TLS session.
    pub tls: bool,
}

impl Upstream {
    /// Parses `http://host:port[/prefix]`, `https://host:port[/prefix]` or
    /// `h2c://host:port[/prefix]`. Everything a request is built from is checked here, so a
    /// URL that would fail every request is refused at start, naming `--{flag}` and what was
    /// expected.
    pub fn parse(flag: &str, url: &str) -> Result<Self> {
        const SHAPE: &str =
            "expected http://host:port[/path-prefix], https://host:port[/path-prefix] \
             or h2c://host:port[/path-prefix]";
        let (http2, tls, rest) = if let Some(r) = url.strip_prefix("h2c://") {
            (true, false, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (false, true, r)
        } else {
            return Err(Error::Usage(format!(
                "--{flag}: expected a URL like http://host:port, https://host:port or h2c://host:port, found {url:?}"
            )));
        };
        // Every request keeps its own query; one in the URL would have nowhere to go.
        if rest.contains('?') {
            return Err(Error::Usage(format!(
                "--{flag} {url}: a query (`?…`) is not allowed; {SHAPE}"
            )));
        }
        if rest.contains('#') {
            return Err(Error::Usage(format!(
                "--{flag} {url}: a fragment (`#…`) is not allowed; {SHAPE}"
            )));
        }
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(Error::Usage(format!(
                "--{flag} {url}: credentials in the URL (`user@`) are not supported; {SHAPE} \
                 (clients' own authorization headers are passed on)"
            )));
        }
        let uri: http::Uri = format!("http://{authority}/")
            .parse()
            .map_err(|e| Error::Usage(format!("--{flag} {url}: not a valid host:port ({e})")))?;
        let host = uri.host().unwrap_or_default();
        if host.is_empty() {
            return Err(Error::Usage(format!("--{flag} {url}: no host; {SHAPE}")));
        }
        if !prefix.is_empty() && prefix.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(Error::Usage(format!(
                "--{flag} {url}: the path prefix {prefix:?} is not a valid URL path \
                 (spaces and other special characters must be percent-encoded, like %20); {SHAPE}"
            )));
        }
        let authority = match uri.port_u16() {
            Some(_) => authority.to_string(),
            None if tls => format!("{host}:443"),
            None => format!("{host}:80"),
        };
        if authority.parse::<http::uri::Authority>().is_err() {
            return Err(Error::Usage(format!(
                "--{flag} {url}: not a valid host:port; {SHAPE}"
            )));
        }
        Ok(Upstream {
            url: url.to_string(),
            authority,
            prefix: prefix.to_string(),
            http2,
            tls,
        })
    }

    /// The host of the authority, brackets of an IPv6 address included.
    pub fn host(&self) -> &str {
        match self.authority.rfind(':') {
            Some(i) => &self.authority[..i],
            None => &self.authority,
        }
    }
}

/// A validated tap run.
#[derive(Clone, Debug)]
pub struct TapConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The listener's certificate chain and key files (`--tls-cert`, `--tls-key`): clients
    /// connect over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Production.
    pub upstream: Upstream,
    /// Recording file (or the name rotated files are derived from).
    pub out: PathBuf,
    /// Share of exchanges recorded.
    pub sample: f64,
    /// Exchanges kept per interface per file whatever the sample.
    pub min_per_interface: u32,
    /// Extra headers to redact (lower case), on top of the built-in list.
    pub redact_headers: Vec<String>,
    /// JSON body paths to redact, as given (`$.a.b`).
    pub redact_json_paths: Vec<String>,
    /// Largest body copy kept per request and per response.
    pub max_body: usize,
    /// Rotate at this many uncompressed bytes.
    pub rotate_size: Option<u64>,
    /// Rotate at this file age.
    pub rotate_interval: Option<Duration>,
    /// How TLS is spoken to an `https://` upstream (and production asked again for the
    /// shadow's noise): `--ca-cert`, `--insecure`, `--client-cert`, `--client-key`,
    /// `--tls-server-name`.
    pub upstream_tls: crate::tls::TlsClientOptions,
    /// Candidate for live shadowing.
    pub shadow: Option<Upstream>,
    /// How TLS is spoken to an `https://` candidate: the upstream's settings with
    /// `--shadow-tls` over them.
    pub shadow_tls: crate::tls::TlsClientOptions,
    /// Share of requests shadowed.
    pub shadow_sample: f64,
    /// Shadow requests in flight at most.
    pub shadow_concurrency: usize,
    /// Shadow side-effecting methods too.
    pub allow_side_effects: bool,
    /// Which requests may be sent more than once (shadowed, and asked twice for noise).
    pub safety: std::sync::Arc<crate::safety::Safety>,
    /// Share of shadowed safe requests that production answers a second time.
    pub shadow_noise_sample: f64,
    /// Redact the copies sent to the candidate as the recording is redacted.
    pub shadow_redact: bool,
    /// Admin address for metrics, liveness and the live report.
    pub metrics: Option<SocketAddr>,
    /// Runtime worker threads.
    pub threads: Option<usize>,
    /// Time in-flight exchanges get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Deadline for production's response head.
    pub upstream_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Deadline for a request head, from the moment the tap is ready for it.
    pub head_timeout: Duration,
    /// How long a client connection with no request in progress stays open.
    pub idle_timeout: Duration,
    /// HTTP/2 streams open at once on one client connection.
    pub http2_max_streams: u32,
    /// Largest request body forwarded; `None` for no limit.
    pub max_request_body: Option<u64>,
    /// Recorder queue length.
    pub queue_size: usize,
    /// Recorder queue bytes.
    pub queue_bytes: u64,
    /// Interface key rule.
    pub interface_key: InterfaceKey,
    /// Gates and thresholds of the live shadow's verdict: the defaults, with what the rules
    /// file's `[gate]`, `[noise]`, `[[noise_rule]]` and `[latency]` set.
    pub shadow_thresholds: crate::analysis::result::Thresholds,
    /// Simulated slow disk: delay before every recorder write.
    pub write_delay: Option<Duration>,
}

/// Parses a byte size in the [`crate::units`] grammar; errors name the flag.
pub fn parse_size(flag: &str, s: &str) -> Result<u64> {
    crate::units::size(s).map_err(|e| Error::Usage(format!("--{flag}: {e}")))
}

/// `--rotate-size` and `--rotate-interval`, as the tap and capture take them: a size over 0,
/// an interval of at least a second.
pub fn parse_rotation(
    size: Option<&str>,
    interval: Option<&str>,
) -> Result<(Option<u64>, Option<Duration>)> {
    let size = match size {
        Some(s) => match parse_size("rotate-size", s)? {
            0 => return Err(Error::Usage("--rotate-size: expected more than 0".into())),
            n => Some(n),
        },
        None => None,
    };
    let interval = match interval {
        Some(s) => {
            let d = parse_duration("rotate-interval", s)?;
            if d < Duration::from_secs(1) {
                return Err(Error::Usage(format!(
                    "--rotate-interval: expected at least 1s, found {s}"
                )));
            }
            Some(d)
        }
        None => None,
    };
    Ok((size, interval))
}

fn parse_addr(flag: &str, s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| {
            Error::Usage(format!(
                "--{flag}: expected an address like 127.0.0.1:8080 or [::]:8080, found {s:?}"
            ))
        })
}

fn share(flag: &str, f: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(Error::Usage(format!(
            "--{flag}: expected a share between 0 and 1, found {f}"
        )))
    }
}

impl TapConfig {
    /// Validates the flags of `tap`.
    pub fn from_args(a: &TapArgs) -> Result<Self> {
        let upstream = Upstream::parse("upstream", &a.upstream)?;
        let shadow = match &a.shadow {
            Some(u) => Some(Upstream::parse("shadow", u)?),
            None => None,
        };
        let t = &a.tls_client;
        let tls_flags = [
            ("--ca-cert", t.ca_cert.is_some()),
            ("--insecure", t.insecure),
            ("--client-cert", t.client_cert.is_some()),
            ("--tls-server-name", t.tls_server_name.is_some()),
        ];
        let any_https = upstream.tls || shadow.as_ref().is_some_and(|s| s.tls);
        if let Some((flag, _)) = tls_flags.iter().find(|(_, set)| *set) {
            if !any_https {
                return Err(Error::Usage(format!(
                    "{flag}: only for an https:// --upstream or --shadow, and neither is one"
                )));
            }
        }
        let upstream_tls = crate::config::client_tls(t);
        let shadow_tls = crate::config::side_tls(&upstream_tls, "shadow-tls", &a.shadow_tls)?;
        let size = |flag: &str, s: &str| -> Result<usize> {
            usize::try_from(parse_size(flag, s)?)
                .map_err(|_| Error::Usage(format!("--{flag}: {s} is too large")))
        };
        let max_header_bytes = size("max-header-bytes", &a.max_header_bytes)?;
        if max_header_bytes < MIN_HEADER_BYTES {
            return Err(Error::Usage(format!(
                "--max-header-bytes: expected at least 8KiB, found {}",
                a.max_header_bytes
            )));
        }
        let (rotate_size, rotate_interval) =
            parse_rotation(a.rotate_size.as_deref(), a.rotate_interval.as_deref())?;
        if a.queue_size == 0 {
            return Err(Error::Usage("--queue-size: expected at least 1".into()));
        }
        if a.shadow_concurrency == 0 {
            return Err(Error::Usage(
                "--shadow-concurrency: expected at least 1".into(),
            ));
        }
        if a.threads == Some(0) {
            return Err(Error::Usage("--threads: expected at least 1".into()));
        }
        let interface_key = match &a.interface {
            Some(s) => s
                .parse()
                .map_err(|e| Error::Usage(format!("--interface: {e}")))?,
            None => InterfaceKey::Default,
        };
        let loaded = match &a.config {
            Some(p) => Some(crate::config::file::LoadedConfig::load(p)?),
            None => None,
        };
        // The live shadow's verdict is judged by the file's gates and thresholds, as a
        // replay with the same file would be.
        let shadow_thresholds = crate::config::file_thresholds(loaded.as_ref(), &interface_key)?;
        // The rules file's [redact] section adds to the flags.
        let (file_headers, file_paths, side_effects) = match loaded {
            Some(f) => (
                f.config.redact.headers,
                f.config.redact.json_paths,
                f.config.side_effects,
            ),
            None => (Vec::new(), Vec::new(), Default::default()),
        };
        let safety = crate::safety::Safety::new(
            side_effects
                .safe
                .into_iter()
                .map(toml::Spanned::into_inner)
                .chain(a.safe.clone())
                .collect(),
            side_effects
                .unsafe_
                .into_iter()
                .map(toml::Spanned::into_inner)
                .collect(),
            Default::default(),
        );
        let all_paths: Vec<String> = a
            .redact_json_path
            .iter()
            .cloned()
            .chain(file_paths)
            .collect();
        let mut redact_headers = Vec::new();
        for h in a.redact_header.iter().chain(&file_headers) {
            let lower = h.trim().to_ascii_lowercase();
            if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                return Err(Error::Usage(format!(
                    "--redact-header: {h:?} is not a valid header name"
                )));
            }
            redact_headers.push(lower);
        }
        for p in &all_paths {
            super::redact::JsonPath::parse(p)
                .map_err(|e| Error::Usage(format!("--redact-json-path {p:?}: {e}")))?;
        }
        let upstream_timeout = parse_duration("upstream-timeout", &a.upstream_timeout)?;
        if upstream_timeout.is_zero() {
            return Err(Error::Usage(
                "--upstream-timeout: expected more than 0".into(),
            ));
        }
        let positive = |flag: &str, s: &str| -> Result<Duration> {
            let d = parse_duration(flag, s)?;
            if d.is_zero() {
                return Err(Error::Usage(format!("--{flag}: expected more than 0")));
            }
            Ok(d)
        };
        let head_timeout = positive("head-timeout", &a.head_timeout)?;
        let idle_timeout = positive("idle-timeout", &a.idle_timeout)?;
        if a.http2_max_streams == 0 {
            return Err(Error::Usage(
                "--http2-max-streams: expected at least 1".into(),
            ));
        }
        if a.out.as_os_str() == "-" {
            return Err(Error::Usage(
                "--out -: a recording is a file (written as NAME.partial and renamed when complete), \
                 not standard output; expected a file name like traffic.jsonl or traffic.jsonl.zst"
                    .into(),
            ));
        }
        let out_name = a.out.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if out_name.is_empty() || out_name.ends_with(".partial") {
            return Err(Error::Usage(format!(
                "--out: expected a file name like traffic.jsonl or traffic.jsonl.zst, found {:?}",
                a.out.display().to_string()
            )));
        }
        Ok(TapConfig {
            listen: parse_addr("listen", &a.listen)?,
            tls: a.tls_cert.clone().zip(a.tls_key.clone()),
            upstream,
            upstream_tls,
            shadow_tls,
            out: a.out.clone(),
            sample: share("sample", a.sample)?,
            min_per_interface: a.min_per_interface,
            redact_headers,
            redact_json_paths: all_paths,
            max_body: size("max-body", &a.max_body)?,
            rotate_size,
            rotate_interval,
            shadow,
            shadow_sample: share("shadow-sample", a.shadow_sample)?,
            shadow_concurrency: a.shadow_concurrency,
            allow_side_effects: a.allow_side_effects,
            safety: std::sync::Arc::new(safety),
            shadow_noise_sample: share("shadow-noise-sample", a.shadow_noise_sample)?,
            shadow_redact: a.shadow_redact,
            metrics: match &a.metrics {
                Some(m) => Some(parse_addr("metrics", m)?),
                None => None,
            },
            threads: a.threads,
            shutdown_grace: parse_duration("shutdown-grace", &a.shutdown_grace)?,
            upstream_timeout,
            max_header_bytes,
            head_timeout,
            idle_timeout,
            http2_max_streams: a.http2_max_streams,
            max_request_body: match parse_size("max-request-body", &a.max_request_body)? {
                0 => None,
                n => Some(n),
            },
            queue_size: a.queue_size,
            queue_bytes: parse_size("queue-bytes", &a.queue_bytes)?.max(1),
            interface_key,
            shadow_thresholds,
            write_delay: match &a.debug_write_delay {
                Some(s) => Some(parse_duration("debug-write-delay", s)?),
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `shadowdiff tap` against a dead upstream with `extra` flags, read into a config.
    fn tap_config(extra: &[&str]) -> Result<TapConfig> {
        let mut argv = vec![
            "shadowdiff",
            "tap",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:1",
            "--out",
            "t.jsonl",
        ];
        argv.extend_from_slice(extra);
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let crate::cli::Command::Tap(a) = cli.command else {
            panic!()
        };
        TapConfig::from_args(&a)
    }

    #[test]
    fn rules_file_redact_section_adds_to_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("shadowdiff.toml");
        std::fs::write(
            &cfg,
            "[redact]\nheaders = [\"X-Session\"]\njson_paths = [\"$.password\"]\n",
        )
        .unwrap();
        let c = tap_config(&["--redact-header", "x-a", "--config", cfg.to_str().unwrap()]).unwrap();
        assert!(c.redact_headers.contains(&"x-a".to_string()));
        assert!(c.redact_headers.contains(&"x-session".to_string()));
        assert_eq!(c.redact_json_paths, ["$.password"]);
    }

    #[test]
    fn timeouts_and_stream_limits_of_zero_are_refused_naming_the_flag() {
        for (flag, value) in [
            ("--head-timeout", "0s"),
            ("--idle-timeout", "0ms"),
            ("--http2-max-streams", "0"),
        ] {
            let e = tap_config(&[flag, value]).unwrap_err().to_string();
            assert!(e.contains(flag), "{flag}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("x", "65536").unwrap(), 65536);
        assert_eq!(parse_size("x", "64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("x", "1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("x", "2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("x", "64k").unwrap(), 64 << 10);
        let e = parse_size("max-body", "lots").unwrap_err().to_string();
        assert!(e.contains("--max-body") && e.contains("lots"), "{e}");
        assert!(parse_size("x", "1TiB").is_err());
        assert!(parse_size("x", "99999999999999999999").is_err());
    }

    #[test]
    fn upstream_urls() {
        let u = Upstream::parse("upstream", "http://127.0.0.1:8080/base/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.prefix.as_str(), u.http2),
            ("127.0.0.1:8080", "/base", false)
        );
        let u = Upstream::parse("upstream", "h2c://gw").unwrap();
        assert_eq!((u.authority.as_str(), u.http2), ("gw:80", true));
        let u = Upstream::parse("upstream", "https://gw/v1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.host(), u.prefix.as_str(), u.tls),
            ("gw:443", "gw", "/v1", true)
        );
        let u = Upstream::parse("upstream", "https://[::1]:8443").unwrap();
        assert_eq!((u.host(), u.tls, u.http2), ("[::1]", true, false));
        assert!(Upstream::parse("upstream", "gw:80").is_err());
        // What would fail every request is refused at start, naming the flag.
        for (bad, says) in [
            ("http://127.0.0.1:8080?x=1", "query"),
            ("http://127.0.0.1:8080/a?x=1", "query"),
            ("http://127.0.0.1:8080#f", "fragment"),
            ("http://user@127.0.0.1:8080", "credentials"),
            ("http://user:pw@127.0.0.1:8080/a", "credentials"),
            ("h2c://127.0.0.1:8080/a b", "path prefix"),
            ("http://127.0.0.1:8080/a<b", "path prefix"),
            ("http://:8080", "host"),
        ] {
            let e = Upstream::parse("shadow", bad).unwrap_err().to_string();
            assert!(e.contains("--shadow") && e.contains(says), "{bad}: {e}");
        }
        let u = Upstream::parse("upstream", "http://127.0.0.1:8080/a%20b/").unwrap();
        assert_eq!(u.prefix, "/a%20b");
    }
}
