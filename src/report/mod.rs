//! Turns a [`RunResult`] into the formats people and scripts read. Each format is an
//! [`Exporter`] that renders to bytes; [`write_output`] puts the bytes in a file or on
//! standard output. Rendering and writing are separate so every format is testable without
//! touching the file system, and so `-` means stdout the same way for all of them.

pub mod chart;
pub mod diffs;
pub mod fit;
pub mod html;
pub mod inert;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod sidebyside;
pub mod terminal;
pub mod words;

pub use html::HtmlExporter;
pub use json::JsonExporter;
pub use junit::JunitExporter;
pub use markdown::MarkdownExporter;
pub use terminal::TerminalExporter;

use crate::analysis::result::RunResult;
use std::io::{self, Write};
use std::path::Path;

/// One output format of a run's result.
pub trait Exporter {
    /// Renders the whole result in this format.
    fn export(&self, result: &RunResult) -> io::Result<Vec<u8>>;
}

/// Writes `bytes` to the file at `path`, or to standard output when `path` is `-`.
///
/// A closed pipe on standard output (`shadowdiff ... --json - | head`) is not an error: the
/// reader has taken what it wanted.
pub fn write_output(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if path.as_os_str() == "-" {
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        write_tolerating_broken_pipe(&mut lock, bytes)
    } else {
        std::fs::write(path, bytes)
    }
}

/// Checks that `path` can be written (`-` always can), without leaving a file behind that
/// was not there: a replay that runs for an hour should learn of a typo in a report's
/// directory before it starts, not after.
pub fn check_output(path: &Path) -> io::Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if !existed {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

fn write_tolerating_broken_pipe(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    match w.write_all(bytes).and_then(|()| w.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A hand-built result shared by the report tests: one interface with a missing rule, one
/// with a field regression, one with a latency regression and candidate errors, one clean,
/// and one whose exchanges were all skipped as side-effecting.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::analysis::result::*;
    use crate::compare::FetchErrorKind;
    use std::collections::BTreeMap;

    pub(crate) fn counts(f: impl FnOnce(&mut Counts)) -> Counts {
        let mut c = Counts::default();
        f(&mut c);
        c.total = c.identical
            + c.noise_only
            + c.different
            + c.missing_rule
            + c.candidate_error
            + c.baseline_error
            + c.skipped;
        c
    }

    fn stats(count: u64, p50: u64, p90: u64, p99: u64) -> LatencyStats {
        LatencyStats {
            count,
            p50_us: p50,
            p90_us: p90,
            p99_us: p99,
            p999_us: p99 + 200,
            max_us: p99 + 400,
            hdr: "HISTFAKE".into(),
        }
    }

    fn latency(
        base: LatencyStats,
        cand: LatencyStats,
        median: i64,
        regression: bool,
    ) -> LatencyResult {
        let count = base.count.min(cand.count);
        LatencyResult {
            baseline: base,
            candidate: cand,
            paired: PairedStats {
                count,
                median_diff_us: median,
                slower_share: if median > 0 { 0.97 } else { 0.5 },
                faster: None,
                hdr_slower: String::new(),
                hdr_faster: String::new(),
            },
            regression,
            rules: if regression {
                vec![crate::analysis::result::MEDIAN_RULE.into()]
            } else {
                Vec::new()
            },
        }
    }

    pub(crate) fn path(
        p: &str,
        raw: u64,
        noise: u64,
        tolerated: u64,
        regression: bool,
        samples: &[&str],
    ) -> PathResult {
        PathResult {
            path: p.into(),
            raw,
            noise,
            tolerated,
            regression,
            samples: samples.iter().map(|s| s.to_string()).collect(),
            example: None,
            volatile_like: 0,
            volatile_kind: None,
            hint: None,
            change: None,
            noise_source: None,
        }
    }

    pub(crate) fn interface(name: &str, c: Counts) -> InterfaceResult {
        InterfaceResult {
            interface: name.into(),
            counts: c,
            compared: c.identical + c.noise_only + c.different,
            probed: c.identical + c.noise_only + c.different,
            noise_samples: Default::default(),
            unmeasured: 0,
            side_effecting: 0,
            status: Vec::new(),
            fields: Vec::new(),
            headers: Vec::new(),
            errors: Vec::new(),
            missing_rule_samples: Vec::new(),
            missing_rule_answer: None,
            sample_requests: Default::default(),
            latency: latency(LatencyStats::default(), LatencyStats::default(), 0, false),
            signatures: Vec::new(),
            signature_overflow: 0,
            tenants: Default::default(),
            resent: Default::default(),
        }
    }

    /// The result a demo run would roughly produce.
    pub(crate) fn failing() -> RunResult {
        let mut export = interface(
            "GET /api/reports/annual-export",
            counts(|c| c.missing_rule = 1),
        );
        export.compared = 0;
        export.probed = 0;
        export.missing_rule_samples = vec!["demo-000311".into()];
        export.missing_rule_answer = Some(MissingRuleAnswer {
            id: "demo-000311".into(),
            status: 404,
            grpc_status: None,
            body: r#"{"error":"no route"}"#.into(),
        });
        export.latency = latency(
            stats(1, 182_000, 182_000, 182_000),
            stats(1, 400, 400, 400),
            -181_600,
            false,
        );

        let mut product = interface("GET /api/products/{id}", counts(|c| c.different = 95));
        let mut price = path(
            "$.price",
            95,
            0,
            0,
            true,
            &["demo-000004", "demo-000009", "demo-000017"],
        );
        price.example = Some(Example {
            id: "demo-000004".into(),
            path: "$.price".into(),
            baseline: Some("12.5".into()),
            candidate: Some("\"12.50\"".into()),
        });
        product.sample_requests = BTreeMap::from([(
            "demo-000004".to_string(),
            SampleRequest {
                method: "GET".into(),
                uri: "/api/products/4?currency=EUR".into(),
                headers: vec![
                    ("host".into(), "shop.example".into()),
                    ("accept".into(), "application/json".into()),
                ],
                body: None,
                body_bytes: 0,
                body_binary: false,
                body_truncated: false,
            },
        )]);
        product.fields = vec![
            price,
            path("$.request_id", 95, 95, 0, false, &["demo-000004"]),
            path("$.served_at", 0, 0, 95, false, &[]),
        ];
        product.latency = latency(
            stats(95, 1_100, 2_000, 3_100),
            stats(95, 1_150, 2_100, 3_000),
            40,
            false,
        );
        product.signatures = vec![Signature {
            keys: vec!["$.price".into(), "$.request_id".into()],
            count: 95,
        }];

        let mut search = interface(
            "GET /api/search",
            counts(|c| {
                c.noise_only = 68;
                c.candidate_error = 2;
            }),
        );
        search.fields = vec![path("$.request_id", 68, 68, 0, false, &["demo-000002"])];
        search.errors = vec![ErrorResult {
            side: ErrorSide::Candidate,
            kind: FetchErrorKind::Timeout,
            count: 2,
            message: "no complete answer within 5s".into(),
            samples: vec!["demo-000120".into(), "demo-000233".into()],
        }];
        search.latency = latency(
            stats(68, 1_200, 2_300, 4_000),
            stats(68, 41_800, 43_000, 45_200),
            40_600,
            true,
        );

        let mut users = interface("GET /api/users/{id}", counts(|c| c.noise_only = 60));
        users.fields = vec![path("$.request_id", 60, 60, 0, false, &["demo-000001"])];
        users.headers = vec![path("x-trace-id", 3, 4, 0, false, &["demo-000007"])];
        users.latency = latency(
            stats(60, 900, 1_500, 2_600),
            stats(60, 910, 1_480, 2_700),
            10,
            false,
        );

        let orders = interface("POST /api/orders", counts(|c| c.skipped = 12));

        let interfaces = vec![export, product, search, users, orders];
        let mut summary = Summary::default();
        for i in &interfaces {
            summary.counts.merge(&i.counts);
        }
        summary.interfaces = interfaces.len() as u64;
        summary.latency_regressions = 1;
        summary.skipped_reasons = BTreeMap::from([("side_effect".to_string(), 12)]);

        RunResult {
            gateway_wide: Vec::new(),
            shadowdiff_result: RESULT_FORMAT,
            verdict: Verdict::Fail,
            gate_failures: vec![
                "missing_rule: the candidate has no route for 1 interface (1 exchange), which \
                 the baseline serves: GET /api/reports/annual-export"
                    .into(),
                "different: 42.60% of compared exchanges differ beyond noise (limit 1.00%), \
                 in 1 interface: GET /api/products/{id}"
                    .into(),
                "latency: the candidate is slower on 1 interface: GET /api/search \
                 (p50 1.2 -> 41.8 ms)"
                    .into(),
                "candidate_error: the candidate gave no usable answer for 2 exchanges in 1 \
                 interface: GET /api/search"
                    .into(),
            ],
            summary,
            interfaces,
            run: RunInfo {
                created: "2026-11-02T10:00:00Z".into(),
                tool_version: "0.1.0".into(),
                recordings: vec!["recordings/demo.jsonl".into()],
                baseline: "http://127.0.0.1:40001".into(),
                candidate: "http://127.0.0.1:40002".into(),
                secondary: Some("http://127.0.0.1:40001".into()),
                exchanges_read: 238,
                duration_ms: 1_840,
                pacing: "concurrency 16".into(),
                ready_ms: BTreeMap::from([
                    ("baseline".to_string(), 3),
                    ("candidate".to_string(), 4),
                ]),
                connections: BTreeMap::new(),
                thresholds: Thresholds {
                    max_diff_rate: Some(0.01),
                    ..Thresholds::default()
                },
                warnings: vec!["recordings/demo.jsonl:561: truncated last line skipped".into()],
                filters: Vec::new(),
                shard: None,
                incomplete: None,
            },
            trend: None,
        }
    }

    /// The failing result as shard 1 of 4 of a filtered run, compared with a previous night
    /// in which the product prices were fine, the export had its missing rule too, and a
    /// cart interface failed that passes now.
    pub(crate) fn with_trend() -> RunResult {
        let mut r = failing();
        r.run.shard = Some(ShardInfo {
            count: 4,
            indices: vec![1],
            owned: 252,
        });
        r.run.filters = vec![
            FilterCount {
                filter: "--since 2026-11-02T09:00:00Z".into(),
                kept: 244,
                excluded: 8,
            },
            FilterCount {
                filter: "--filter method!=OPTIONS".into(),
                kept: 242,
                excluded: 2,
            },
        ];
        let mut previous = failing();
        previous.run.created = "2026-11-01T10:00:00Z".into();
        for i in &mut previous.interfaces {
            if i.interface == "GET /api/products/{id}" {
                i.counts.noise_only = i.counts.different;
                i.counts.different = 0;
                for f in &mut i.fields {
                    f.regression = false;
                }
            }
        }
        let mut cart = interface("GET /api/cart/{id}", counts(|c| c.different = 4));
        cart.fields = vec![path("$.total", 4, 0, 0, true, &["demo-000050"])];
        previous.interfaces.push(cart.clone());
        cart.counts = counts(|c| c.identical = 4);
        cart.fields.clear();
        r.interfaces.insert(0, cart);
        r.summary.counts.merge(&r.interfaces[0].counts);
        r.summary.interfaces += 1;
        // Four more identical exchanges lower the share that differs.
        r.gate_failures[1] = "different: 41.85% of compared exchanges differ beyond noise \
                              (limit 1.00%), in 1 interface: GET /api/products/{id}"
            .into();
        r.trend = Some(crate::analysis::trend::compare(
            &r,
            &previous,
            "nightly/2026-11-01.json",
        ));
        r
    }

    /// A result where nothing differs and no gate tripped.
    pub(crate) fn passing() -> RunResult {
        let mut r = failing();
        r.verdict = Verdict::Pass;
        r.gate_failures.clear();
        r.run.warnings.clear();
        r.interfaces
            .retain(|i| i.interface == "GET /api/users/{id}");
        r.summary = Summary {
            counts: r.interfaces[0].counts,
            interfaces: 1,
            ..Summary::default()
        };
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::gate;

    struct BrokenPipe;

    impl Write for BrokenPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "reader went away",
            ))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn broken_pipe_is_not_an_error_but_others_are() {
        assert!(write_tolerating_broken_pipe(&mut BrokenPipe, b"x").is_ok());
        assert!(write_tolerating_broken_pipe(&mut Full, b"x").is_err());
    }

    #[test]
    fn writes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_output(&p, b"{}\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}\n");
    }

    /// "1 exchange differ" and its kind: each sentence agrees with a count of one.
    #[test]
    fn a_count_of_one_is_singular_in_gates_and_summaries() {
        use crate::analysis::result::{Summary, Thresholds};
        let one = fixture::interface("GET /x", fixture::counts(|c| c.different = 1));
        let summary = Summary {
            counts: one.counts,
            interfaces: 1,
            ..Summary::default()
        };
        let interfaces = std::slice::from_ref(&one);
        let (_, failures) = gate::evaluate(&summary, interfaces, &Thresholds::default());
        assert_eq!(
            failures,
            ["different: 1 exchange differs beyond noise, in 1 interface: GET /x"]
        );
        let junit = String::from_utf8(
            junit::JunitExporter
                .export(&gate::decided(
                    summary.clone(),
                    vec![one],
                    Default::default(),
                ))
                .unwrap(),
        )
        .unwrap();
        assert!(junit.contains("1 exchange differs beyond noise"), "{junit}");

        let skipped = fixture::interface("POST /x", fixture::counts(|c| c.skipped = 1));
        let summary = Summary {
            counts: skipped.counts,
            interfaces: 1,
            ..Summary::default()
        };
        let (_, failures) = gate::evaluate(&summary, &[skipped], &Thresholds::default());
        assert_eq!(
            failures,
            ["nothing compared: all 1 exchange read was skipped"]
        );

        let mut r = fixture::failing();
        r.summary.counts.candidate_error = 1;
        let md = String::from_utf8(markdown::MarkdownExporter.export(&r).unwrap()).unwrap();
        assert!(
            md.contains(", 1 candidate error, 0 baseline errors,"),
            "{md}"
        );
    }

    #[test]
    /// The reports are only as true as the results they are shown: each fixture's verdict,
    /// gate sentences and summary must be what the analysis would have made of its
    /// interfaces, or the snapshots would pin a report no run can produce.
    fn fixtures_are_results_a_run_could_produce() {
        for (name, r) in [
            ("failing", fixture::failing()),
            ("passing", fixture::passing()),
            ("with_trend", fixture::with_trend()),
        ] {
            let (verdict, failures) = gate::evaluate(&r.summary, &r.interfaces, &r.run.thresholds);
            assert_eq!(r.verdict, verdict, "{name}");
            assert_eq!(r.gate_failures, failures, "{name}");
            let mut sum = crate::analysis::result::Counts::default();
            for i in &r.interfaces {
                sum.merge(&i.counts);
            }
            assert_eq!(
                r.summary.counts, sum,
                "{name}: summary is the interfaces' sum"
            );
            assert_eq!(r.summary.interfaces, r.interfaces.len() as u64, "{name}");
            let slower = r.interfaces.iter().filter(|i| i.latency.regression).count();
            assert_eq!(r.summary.latency_regressions, slower as u64, "{name}");
            let reasons: u64 = r.summary.skipped_reasons.values().sum();
            assert_eq!(reasons, r.summary.counts.skipped, "{name}: skip reasons");
        }
    }
}
