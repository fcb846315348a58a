//! Scaling past one machine: the bundled recording replayed as 4 shards and merged gives the
//! same counts and outcomes per interface as one unsharded run, histograms that equal the sum
//! of the shards' histograms, and the same result however the merges are nested.

use crate::util::*;
use shadowdiff::analysis::latency;
use shadowdiff::demo::gateway::{spawn, GatewayVersion};
use shadowdiff::replay::select::Shard;
use std::path::{Path, PathBuf};

const SHARDS: u32 = 4;

fn demo_recording() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/recordings/demo.jsonl")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn counts(i: &serde_json::Value) -> Vec<u64> {
    [
        "total",
        "identical",
        "noise_only",
        "different",
        "missing_rule",
        "candidate_error",
        "baseline_error",
        "skipped",
        "compared",
    ]
    .iter()
    .map(|k| i[*k].as_u64().unwrap())
    .collect()
}

fn regressions(i: &serde_json::Value) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = ["status", "headers", "fields"]
        .iter()
        .flat_map(|k| i[*k].as_array().unwrap().iter())
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["regression"].as_bool().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn merge(inputs: &[&Path], out: &Path) -> std::process::Output {
    let mut args = vec!["merge".to_string()];
    args.extend(inputs.iter().map(|p| s(p)));
    args.extend(["--json".to_string(), s(out)]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    shadowdiff(&a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_merge_into_exactly_the_unsharded_run() {
    let v1 = spawn(GatewayVersion::V1).await.unwrap();
    let v2 = spawn(GatewayVersion::V2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |out: PathBuf, shard: Option<u32>| {
        let mut args = vec![
            "replay".to_string(),
            demo_recording().into(),
            "--baseline".into(),
            v1.url(),
            "--candidate".into(),
            v2.url(),
            "--json".into(),
            s(&out),
            "--quiet".into(),
        ];
        if let Some(k) = shard {
            args.extend(["--shard".into(), format!("{k}/{SHARDS}")]);
        }
        shadowdiff_async(args)
    };
    let one_path = dir.path().join("one.json");
    let shard_paths: Vec<PathBuf> = (0..SHARDS)
        .map(|k| dir.path().join(format!("shard-{k}.json")))
        .collect();
    let mut runs = vec![run(one_path.clone(), None)];
    for (k, p) in shard_paths.iter().enumerate() {
        runs.push(run(p.clone(), Some(k as u32)));
    }
    for o in futures_join(runs).await {
        assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    }

    // Every exchange lands in exactly one shard, and each shard replayed exactly its own.
    let ids: Vec<String> = std::fs::read_to_string(demo_recording())
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let shards: Vec<serde_json::Value> = shard_paths.iter().map(|p| read_json(p)).collect();
    let mut owned_total = 0;
    for id in &ids {
        let owners = (0..SHARDS)
            .filter(|k| {
                Shard {
                    index: *k,
                    count: SHARDS,
                }
                .owns(id)
            })
            .count();
        assert_eq!(owners, 1, "{id}");
    }
    for (k, r) in shards.iter().enumerate() {
        assert_counts_consistent(r);
        let expected = ids
            .iter()
            .filter(|id| Shard::of(id, SHARDS) == k as u32)
            .count() as u64;
        assert_eq!(r["run"]["shard"]["owned"], expected);
        assert_eq!(r["run"]["shard"]["indices"], serde_json::json!([k]));
        assert_eq!(
            r["summary"]["total"], expected,
            "shard-outs are not outcomes"
        );
        assert_eq!(r["run"]["exchanges_read"], ids.len());
        owned_total += expected;
    }
    assert_eq!(owned_total, ids.len() as u64);

    let merged_path = dir.path().join("merged.json");
    let refs: Vec<&Path> = shard_paths.iter().map(PathBuf::as_path).collect();
    let o = merge(&refs, &merged_path);
    assert_eq!(o.status.code(), Some(1), "fail verdict: {}", describe(&o));
    let merged = read_json(&merged_path);
    let one = read_json(&one_path);
    assert_counts_consistent(&merged);
    assert_eq!(merged["run"]["exchanges_read"], ids.len());
    assert_eq!(
        merged["run"]["shard"]["indices"],
        serde_json::json!([0, 1, 2, 3])
    );
    for k in [
        "total",
        "identical",
        "noise_only",
        "different",
        "missing_rule",
        "skipped",
    ] {
        assert_eq!(merged["summary"][k], one["summary"][k], "summary {k}");
    }
    let m_ifs = merged["interfaces"].as_array().unwrap();
    let o_ifs = one["interfaces"].as_array().unwrap();
    assert_eq!(m_ifs.len(), o_ifs.len());
    for (m, o) in m_ifs.iter().zip(o_ifs) {
        let name = m["interface"].as_str().unwrap();
        assert_eq!(m["interface"], o["interface"]);
        assert_eq!(counts(m), counts(o), "{name}");
        assert_eq!(regressions(m), regressions(o), "{name}");
        assert_eq!(
            m["missing_rule_samples"], o["missing_rule_samples"],
            "{name}"
        );
    }

    // The merged histograms are the shards' histograms added: count, min, max and every
    // percentile agree, and the reported percentiles are read off that histogram.
    for m in m_ifs {
        let name = m["interface"].as_str().unwrap();
        for side in ["baseline", "candidate"] {
            let merged_h =
                latency::deserialize(m["latency"][side]["hdr"].as_str().unwrap()).unwrap();
            let mut sum = latency::new_histogram();
            for r in &shards {
                if let Some(i) = r["interfaces"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|i| i["interface"] == name)
                {
                    let h =
                        latency::deserialize(i["latency"][side]["hdr"].as_str().unwrap()).unwrap();
                    sum.add(&h).unwrap();
                }
            }
            assert_eq!(merged_h.len(), sum.len(), "{name} {side}");
            assert_eq!(merged_h.min(), sum.min(), "{name} {side}");
            assert_eq!(merged_h.max(), sum.max(), "{name} {side}");
            for q in (0..=1000).map(|n| n as f64 / 1000.0) {
                assert_eq!(
                    merged_h.value_at_quantile(q),
                    sum.value_at_quantile(q),
                    "{name} {side} q{q}"
                );
            }
            let stats = &m["latency"][side];
            assert_eq!(stats["count"], sum.len());
            if !sum.is_empty() {
                assert_eq!(stats["p50_us"], sum.value_at_quantile(0.5));
                assert_eq!(stats["p999_us"], sum.value_at_quantile(0.999));
                assert_eq!(stats["max_us"], sum.max());
            }
        }
    }

    // Nesting does not matter: ((0,1),2) == (0,(1,2)), and adding 3 gives the full merge.
    let p = |n: &str| dir.path().join(n);
    assert!(merge(&[refs[0], refs[1]], &p("m01.json"))
        .status
        .code()
        .is_some());
    assert!(merge(&[&p("m01.json"), refs[2]], &p("left.json"))
        .status
        .code()
        .is_some());
    assert!(merge(&[refs[1], refs[2]], &p("m12.json"))
        .status
        .code()
        .is_some());
    assert!(merge(&[refs[0], &p("m12.json")], &p("right.json"))
        .status
        .code()
        .is_some());
    assert_eq!(read_json(&p("left.json")), read_json(&p("right.json")));
    assert!(merge(&[&p("left.json"), refs[3]], &p("all.json"))
        .status
        .code()
        .is_some());
    assert_eq!(read_json(&p("all.json")), merged);

    // A partial merge says which shards are missing.
    let o = merge(&[refs[0], refs[1]], &p("partial.json"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shard 2, 3 of 4 missing"), "{}", describe(&o));
    let md = shadowdiff(&["report", &s(&p("partial.json")), "--markdown", "-"]);
    assert!(
        String::from_utf8_lossy(&md.stdout).contains("(incomplete: shard 2, 3 of 4 missing)"),
        "{}",
        describe(&md)
    );

    // Results decided under other thresholds are refused, naming both files.
    let mut other = shards[3].clone();
    other["run"]["thresholds"]["latency_relative"] = serde_json::json!(0.5);
    let other_path = p("shard-3-other.json");
    std::fs::write(&other_path, serde_json::to_vec(&other).unwrap()).unwrap();
    let o = merge(
        &[refs[0], refs[1], refs[2], &other_path],
        &p("refused.json"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("shard-0.json")
            && err.contains("shard-3-other.json")
            && err.contains("different thresholds"),
        "{err}"
    );
    // So is the same shard twice.
    let o = merge(&[refs[0], refs[0]], &p("twice.json"));
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

/// Awaits all futures, in order (a tiny join_all without another dependency).
async fn futures_join<F>(fs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[test]
fn shard_flag_is_validated() {
    for bad in ["4/4", "1/0", "one/4"] {
        let o = shadowdiff(&[
            "replay",
            demo_recording(),
            "--baseline",
            "http://127.0.0.1:1",
            "--candidate",
            "http://127.0.0.1:1",
            "--shard",
            bad,
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--shard"),
            "{}",
            describe(&o)
        );
    }
}

/// A result whose latency histogram declares 4 GiB of counts in a 56-character string made
/// the histogram library allocate the declared size, and `merge` aborted.
#[test]
fn a_histogram_declaring_more_than_it_holds_is_refused_naming_file_and_field() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let o = shadowdiff(&["--quiet", "demo", "--json", &s(&good)]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let mut crafted = Vec::new();
    crafted.extend(0x1c84_9313u32.to_be_bytes()); // V2
    crafted.extend(u32::MAX.to_be_bytes()); // payload length
    crafted.extend(0u32.to_be_bytes());
    crafted.extend(3u32.to_be_bytes());
    crafted.extend(1u64.to_be_bytes());
    crafted.extend(3_600_000_000u64.to_be_bytes());
    crafted.extend(1f64.to_be_bytes());
    crafted.extend([0, 0]);
    let crafted = base64::engine::general_purpose::STANDARD.encode(crafted);
    assert_eq!(crafted.len(), 56);
    let mut r = read_json(&good);
    r["interfaces"][0]["latency"]["baseline"]["hdr"] = crafted.into();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&r).unwrap()).unwrap();

    let Some(o) =
        shadowdiff_limited(&["merge", &s(&bad), "--json", &s(&dir.path().join("m.json"))])
    else {
        return;
    };
    assert_clean_exit_naming(&o, &s(&bad));
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("latency.baseline.hdr: histogram does not decode: its header declares 4294967295 bytes of counts, 2 present"),
        "{err}"
    );
    // `report` reads the same histograms to decide the tail rule.
    let o = shadowdiff_limited(&["report", &s(&bad)]).unwrap();
    assert!(matches!(o.status.code(), Some(0..=1)), "{}", describe(&o));
}
