//! The documented Kubernetes manifests keep working: every `shadowdiff` command line in
//! `docs/k8s/` parses with today's flags, with `JOB_COMPLETION_INDEX` and `SHARDS`
//! substituted the way a pod would.

use clap::Parser;
use shadowdiff::cli::{Cli, Command};

/// The shadowdiff command lines of a shell block: continuation lines joined, variables
/// substituted.
fn commands(yaml: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in yaml.lines() {
        let t = line.trim();
        let (text, continues) = match t.strip_suffix('\\') {
            Some(rest) => (rest.trim(), true),
            None => (t, false),
        };
        match current.as_mut() {
            Some(c) => {
                c.push(' ');
                c.push_str(text);
            }
            None if text.starts_with("shadowdiff ") => current = Some(text.to_string()),
            None => continue,
        }
        if !continues {
            if let Some(c) = current.take() {
                let c = c
                    .replace("${JOB_COMPLETION_INDEX}", "2")
                    .replace("${SHARDS}", "4");
                out.push(c.split_whitespace().map(str::to_string).collect());
            }
        }
    }
    out
}

#[test]
fn kubernetes_manifests_use_real_flags() {
    let shards = include_str!("../docs/k8s/shadowdiff-shards.yaml");
    let merge = include_str!("../docs/k8s/shadowdiff-merge.yaml");
    let replay = commands(shards);
    assert_eq!(replay.len(), 1, "{replay:?}");
    let cli = Cli::try_parse_from(&replay[0]).unwrap_or_else(|e| panic!("{e}"));
    let Command::Replay(args) = cli.command else {
        panic!("not a replay: {:?}", replay[0]);
    };
    assert_eq!(args.shard.as_deref(), Some("2/4"));
    shadowdiff::config::ReplayConfig::from_args(&args).unwrap();
    assert!(shards.contains("completions: 4") && shards.contains("completionMode: Indexed"));

    let merges = commands(merge);
    assert_eq!(merges.len(), 1, "{merges:?}");
    let cli = Cli::try_parse_from(&merges[0]).unwrap_or_else(|e| panic!("{e}"));
    let Command::Merge(args) = cli.command else {
        panic!("not a merge: {:?}", merges[0]);
    };
    assert_eq!(args.results.len(), 4);
    assert!(args.reports.html.is_some() && args.reports.junit.is_some());
}
