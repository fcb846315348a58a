//! Everything `shadowdiff demo` needs to show the tool end to end without any setup: two
//! embedded versions of a small shop API gateway ([`gateway`]) that differ in a few planted
//! ways, to be replayed with the bundled `recordings/demo.jsonl`. [`run`] starts both, replays
//! the recording (compiled into the binary, so the demo works from any directory) with the
//! same code path as `shadowdiff replay`, and writes the JSON result.

pub mod gateway;

use crate::analysis::result::RunResult;
use crate::cli::{Cli, Command, DemoArgs};
use crate::config::ReplayConfig;
use crate::error::{Error, Result};
use crate::recording::{FileReader, ReadOptions, RecordingReader};
use gateway::{spawn, GatewayVersion};
use std::path::PathBuf;
use std::sync::Arc;

/// The bundled recording, as compiled into the binary.
pub const DEMO_RECORDING: &str = include_str!("../../recordings/demo.jsonl");

/// Starts both gateway versions, replays the bundled recording against them, and writes the
/// result to `args.json`.
pub async fn run(args: &DemoArgs, quiet: bool) -> Result<RunResult> {
    let start = |v: GatewayVersion| async move {
        spawn(v)
            .await
            .map_err(|e| Error::internal(format!("cannot start the demo gateway {v}"), e))
    };
    let v1 = start(GatewayVersion::V1).await?;
    let v2 = start(GatewayVersion::V2).await?;
    if !quiet {
        eprintln!(
            "demo: gateway v1 (baseline) on {}, gateway v2 (candidate) on {}",
            v1.url(),
            v2.url()
        );
        eprintln!(
            "demo: replaying the bundled recording (recordings/demo.jsonl) against both, \
             with the noise probe on\n"
        );
    }
    // Parse a real command line so the demo runs with exactly `replay`'s defaults.
    let (baseline, candidate) = (v1.url(), v2.url());
    let mut argv = vec![
        "shadowdiff",
        "replay",
        "recordings/demo.jsonl",
        "--baseline",
        &baseline,
        "--candidate",
        &candidate,
    ];
    let diffs = args
        .diffs
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    if let Some(d) = &diffs {
        argv.extend(["--diffs", d]);
    }
    let cli = <Cli as clap::Parser>::try_parse_from(argv)
        .map_err(|e| Error::Usage(format!("demo arguments: {e}")))?;
    let Command::Replay(replay_args) = cli.command else {
        return Err(Error::Usage(
            "demo arguments did not parse as replay".into(),
        ));
    };
    let cfg = ReplayConfig::from_args(&replay_args)?;
    let file = FileReader::from_reader(
        PathBuf::from("recordings/demo.jsonl"),
        Box::new(std::io::Cursor::new(DEMO_RECORDING.as_bytes())),
        ReadOptions::default(),
    )?;
    let reader = RecordingReader::from_files(vec![file])?;
    let result = crate::replay::replay_reader(
        &cfg,
        reader,
        vec!["recordings/demo.jsonl (bundled)".into()],
        Arc::new(crate::replay::Progress::default()),
    )
    .await?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::gateway::{answer, interface_of, GatewayVersion, Stamp};
    use serde_json::Value;
    use std::collections::BTreeMap;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    const RECORDING: &str = include_str!("../../recordings/demo.jsonl");

    fn exchanges() -> Vec<Value> {
        RECORDING
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn time(v: &Value) -> OffsetDateTime {
        OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
    }

    #[test]
    fn recording_header_and_shape() {
        assert_eq!(
            RECORDING.lines().next().unwrap(),
            r#"{"shadowdiff_recording":1,"created":"2026-11-02T09:00:00Z","source":"demo"}"#
        );
        let xs = exchanges();
        assert_eq!(xs.len(), 560);
        let mut last = None;
        for (n, x) in xs.iter().enumerate() {
            assert_eq!(x["id"], format!("demo-{:06}", n + 1));
            let ts = time(&x["ts"]);
            assert!(
                last.is_none_or(|l| l < ts),
                "ts must increase at {}",
                x["id"]
            );
            last = Some(ts);
            let req = &x["request"];
            assert_eq!(req["version"], "HTTP/1.1");
            assert_eq!(req["body_encoding"], "utf8");
            assert_eq!(req["body_truncated"], false);
            assert_eq!(
                req["headers"][0],
                serde_json::json!(["host", "shop.example"])
            );
            assert_eq!(x["response"]["body_encoding"], "utf8");
            assert!(x["latency_us"].as_u64().is_some());
        }
        let span = time(&xs[559]["ts"]) - time(&xs[0]["ts"]);
        assert!((9 * 60..=11 * 60).contains(&span.whole_seconds()), "{span}");
    }

    #[test]
    fn recording_covers_every_interface_with_one_rare_one() {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for x in exchanges() {
            let method = x["request"]["method"].as_str().unwrap().to_owned();
            let uri = x["request"]["uri"].as_str().unwrap().to_owned();
            let i = interface_of(GatewayVersion::V1, &method, &uri).unwrap();
            *counts.entry(i).or_default() += 1;
        }
        assert_eq!(counts.len(), 14);
        assert_eq!(counts["GET /api/reports/annual-export"], 1);
        assert_eq!(counts["POST /api/orders"], 12);
        assert!(counts["GET /api/search"] >= 40);
        assert!(counts["GET /api/products/{id}"] >= 40);
    }

    /// The recorded responses are exactly what V1 answers, given the same stamp.
    #[test]
    fn recorded_responses_are_v1_answers() {
        for x in exchanges() {
            let req = &x["request"];
            let resp = &x["response"];
            let body: Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
            let stamp = Stamp {
                served_at: time(&body["served_at"]),
                request_id: body["request_id"].as_str().unwrap().to_owned(),
            };
            let a = answer(
                GatewayVersion::V1,
                req["method"].as_str().unwrap(),
                req["uri"].as_str().unwrap(),
                req["body"].as_str().unwrap().as_bytes(),
                &stamp,
            );
            assert_eq!(
                u64::from(a.status),
                resp["status"].as_u64().unwrap(),
                "{}",
                x["id"]
            );
            let expected: Value = serde_json::from_str(&a.body).unwrap();
            assert_eq!(expected, body, "{}", x["id"]);
        }
    }
}
