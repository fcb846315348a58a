//! The documentation keeps working. Every `shadowdiff` command line shown in the README,
//! `recordings/README.md`, `docs/*.md` and the `docs/k8s/` manifests parses with today's
//! flags; every relative link leads to a file, and to a heading where it names one; and the
//! README's first real run, followed step by step against two nginx instances, does what the
//! README says it does.
//!
//! Shell lines are read the way a reader would type them: `\` continuations joined, a `$ `
//! prompt dropped, `cargo run [--release] -- ARGS` taken as `shadowdiff ARGS`, and a line cut
//! at `|`, `&&`, `||`, `;`, `&`, a redirection or a `#` comment. Variables stand for the
//! values in [`VARS`] and a command substitution `$(…)` for the word `x`; a variable not in
//! [`VARS`] or a `<PLACEHOLDER>` fails the command, so a doc shows values a reader can paste.

use crate::tap::{read_recordings, TapProc};
use crate::util::*;
use clap::Parser;
use shadowdiff::cli::{Cli, Command};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Output;

/// What the documented shell variables stand for: the targets of the nightly job, and what
/// a Kubernetes Indexed Job sets in the manifests.
const VARS: [(&str, &str); 4] = [
    ("PROD", "http://gw-old:8080"),
    ("NIGHTLY", "http://gw-new:8080"),
    ("JOB_COMPLETION_INDEX", "2"),
    ("SHARDS", "4"),
];

/// Marks a word that cannot stand for a value a reader could paste; `check` refuses it.
const UNRESOLVED: char = '\0';

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn relative(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// README.md, recordings/README.md and every `.md` under docs/: what a reader is sent to.
/// Read when the test runs, so a doc edited since the build is the one checked.
fn markdown_files() -> Vec<PathBuf> {
    let mut out = vec![
        root().join("README.md"),
        root().join("recordings/README.md"),
    ];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// What a line of Markdown is, as far as code blocks go.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Prose,
    Fence,
    Code,
}

/// The kind of each line: a fence opens with three or more backticks or tildes and closes
/// with at least as many of the same, alone on its line.
fn line_kinds(text: &str) -> Vec<Kind> {
    let mut open: Option<String> = None;
    text.lines()
        .map(|line| {
            let t = line.trim_start();
            let run = |ch: char| t.chars().take_while(|&c| c == ch).count();
            let marker = match (run('`'), run('~')) {
                (n, _) if n >= 3 => "`".repeat(n),
                (_, n) if n >= 3 => "~".repeat(n),
                _ => String::new(),
            };
            match &open {
                None if !marker.is_empty() => {
                    open = Some(marker);
                    Kind::Fence
                }
                None => Kind::Prose,
                Some(o)
                    if marker.starts_with(o.as_str()) && t[marker.len()..].trim().is_empty() =>
                {
                    open = None;
                    Kind::Fence
                }
                Some(_) => Kind::Code,
            }
        })
        .collect()
}

/// The fenced code blocks of a Markdown text: each one's lines with their 1-based numbers,
/// fences left out.
fn code_blocks(text: &str) -> Vec<Vec<(usize, &str)>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<(usize, &str)>> = None;
    for ((i, line), kind) in text.lines().enumerate().zip(line_kinds(text)) {
        match (kind, current.as_mut()) {
            (Kind::Fence, None) => current = Some(Vec::new()),
            (Kind::Fence, Some(_)) => blocks.extend(current.take()),
            (Kind::Code, Some(b)) => b.push((i + 1, line)),
            _ => {}
        }
    }
    blocks
}

/// The `shadowdiff` command lines among shell lines, each with the number of its first line.
fn shadowdiff_commands<'a>(
    lines: impl IntoIterator<Item = (usize, &'a str)>,
) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut joined: Option<(usize, String)> = None;
    for (n, line) in lines {
        let (text, continues) = match line.trim_end().strip_suffix('\\') {
            Some(rest) => (rest, true),
            None => (line.trim_end(), false),
        };
        match joined.as_mut() {
            Some((_, j)) => {
                j.push(' ');
                j.push_str(text.trim_start());
            }
            None => joined = Some((n, text.trim_start().to_string())),
        }
        if !continues {
            let (first, j) = joined.take().unwrap();
            let j = j.strip_prefix("$ ").unwrap_or(&j);
            for words in simple_commands(j) {
                if let Some(cmd) = as_shadowdiff(&words) {
                    out.push((first, cmd));
                }
            }
        }
    }
    out
}

/// The words of a simple command that runs shadowdiff, with `shadowdiff` first: directly,
/// by a path ending in `shadowdiff`, or through `cargo run [--release] -- ARGS`.
fn as_shadowdiff(words: &[String]) -> Option<Vec<String>> {
    let words: Vec<&String> = words
        .iter()
        .skip_while(|w| {
            w.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .collect();
    let first = words.first()?;
    if Path::new(first.as_str()).file_name()? == "shadowdiff" {
        return Some(words.iter().map(|w| w.to_string()).collect());
    }
    if words.len() > 1 && first.as_str() == "cargo" && words[1].as_str() == "run" {
        let dashes = words.iter().position(|w| w.as_str() == "--")?;
        if words[..dashes].iter().any(|w| w.as_str() == "--example") {
            return None;
        }
        let mut cmd = vec!["shadowdiff".to_string()];
        cmd.extend(words[dashes + 1..].iter().map(|w| w.to_string()));
        return Some(cmd);
    }
    None
}

/// A shell line split into simple commands, each a list of words: quotes removed, variables
/// substituted, redirections and comments dropped.
fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let vars: HashMap<&str, &str> = VARS.into_iter().collect();
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut redirect_target = false;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut Option<String>, words: &mut Vec<String>, redirect: &mut bool| {
        if let Some(w) = word.take() {
            if *redirect {
                *redirect = false;
            } else {
                words.push(w);
            }
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end_word(&mut word, &mut words, &mut redirect_target),
            '#' if word.is_none() => break,
            '|' | '&' | ';' => {
                end_word(&mut word, &mut words, &mut redirect_target);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                commands.push(std::mem::take(&mut words));
            }
            '>' | '<' => {
                // `<NAME>` is a placeholder, not a redirection.
                if c == '<' {
                    let rest: String = chars.clone().collect();
                    if let Some(end) = rest.find('>') {
                        let inner = &rest[..end];
                        if !inner.is_empty()
                            && inner
                                .chars()
                                .all(|x| x.is_ascii_alphanumeric() || "-_.:/".contains(x))
                        {
                            let w = word.get_or_insert_with(String::new);
                            w.push(UNRESOLVED);
                            w.push_str(&format!("placeholder <{inner}>"));
                            for _ in 0..=end {
                                chars.next();
                            }
                            continue;
                        }
                    }
                }
                // A file descriptor number before it (`2>`) belongs to the redirection.
                if word
                    .as_deref()
                    .is_some_and(|w| w.chars().all(|x| x.is_ascii_digit()))
                {
                    word = None;
                }
                end_word(&mut word, &mut words, &mut redirect_target);
                while chars.peek().is_some_and(|&x| x == '>' || x == '&') {
                    chars.next();
                }
                redirect_target = true;
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for x in chars.by_ref() {
                    if x == '\'' {
                        break;
                    }
                    w.push(x);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(x) = chars.next() {
                    match x {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        '$' => expand(&mut chars, w, &vars),
                        _ => w.push(x),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '$' => expand(&mut chars, word.get_or_insert_with(String::new), &vars),
            _ => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_word(&mut word, &mut words, &mut redirect_target);
    commands.push(words);
    commands.retain(|c| !c.is_empty());
    commands
}

/// Expands what follows a `$` into `w`: `$(…)` as `x`, `${NAME}` and `$NAME` from `vars`,
/// anything else marked unresolved.
fn expand(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    w: &mut String,
    vars: &HashMap<&str, &str>,
) {
    let name: String = match chars.peek().copied() {
        Some('(') => {
            let mut depth = 0;
            for x in chars.by_ref() {
                match x {
                    '(' => depth += 1,
                    ')' if depth == 1 => break,
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            w.push('x');
            return;
        }
        Some('{') => {
            chars.next();
            chars.by_ref().take_while(|&x| x != '}').collect()
        }
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            let mut n = String::new();
            while let Some(&x) = chars.peek() {
                if !(x.is_ascii_alphanumeric() || x == '_') {
                    break;
                }
                n.push(x);
                chars.next();
            }
            n
        }
        Some(c) => {
            chars.next();
            c.to_string()
        }
        None => String::new(),
    };
    match vars.get(name.as_str()) {
        Some(v) => w.push_str(v),
        None => {
            w.push(UNRESOLVED);
            w.push_str(&format!(
                "${name}, which VARS in tests/docs.rs does not give a value"
            ));
        }
    }
}

/// Parses a command line as the binary would, and for `replay` and `tap` also builds the
/// run configuration, which checks what clap leaves as text (URLs, durations, sizes, shard
/// numbers). Flags that read files (`--config`, `--proto-descriptor`) end the check at
/// parsing, since the files named in an example do not exist here. Returns the subcommand.
fn check(words: &[String]) -> Result<&'static str, String> {
    if let Some(w) = words.iter().find(|w| w.contains(UNRESOLVED)) {
        let what = &w[w.find(UNRESOLVED).unwrap() + 1..];
        return Err(format!("not a value a reader could paste: {what}"));
    }
    let cli = Cli::try_parse_from(words).map_err(|e| e.to_string())?;
    Ok(match cli.command {
        Command::Demo(_) => "demo",
        Command::Replay(args) => {
            if args.config.is_none() && args.proto_descriptor.is_none() {
                shadowdiff::config::ReplayConfig::from_args(&args).map_err(|e| e.to_string())?;
            }
            "replay"
        }
        Command::Show(_) => "show",
        Command::Import(_) => "import",
        Command::Merge(_) => "merge",
        Command::Report(_) => "report",
        Command::Interfaces(_) => "interfaces",
        Command::Tap(args) => {
            if args.config.is_none() {
                shadowdiff::tap::TapConfig::from_args(&args).map_err(|e| e.to_string())?;
            }
            "tap"
        }
        Command::Capture(args) => {
            shadowdiff::capture::CaptureConfig::from_args(&args).map_err(|e| e.to_string())?;
            "capture"
        }
        Command::Completions { .. } => "completions",
    })
}

#[test]
fn every_documented_command_line_parses() {
    let mut checked = 0;
    let mut seen = BTreeSet::new();
    let mut failures = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        for block in code_blocks(&text) {
            for (line, cmd) in shadowdiff_commands(block) {
                checked += 1;
                match check(&cmd) {
                    Ok(sub) => {
                        seen.insert(sub);
                    }
                    Err(e) => failures.push(format!(
                        "{}:{line}: {}\n{e}",
                        relative(&file),
                        cmd.join(" ")
                    )),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Today: 9 in the README, 7 in docs/; a miscount of the extraction would show here.
    assert!(checked >= 16, "only {checked} command lines found");
    for sub in [
        "demo",
        "tap",
        "import",
        "replay",
        "show",
        "merge",
        "interfaces",
    ] {
        assert!(
            seen.contains(sub),
            "no documented `shadowdiff {sub}` was checked"
        );
    }
}

/// The examples at the end of each command's `--help` are command lines a reader copies:
/// each parses and validates as the documented ones do.
#[test]
fn every_help_example_parses() {
    let mut cmd = Cli::command_worded();
    let mut checked = 0;
    let mut failures = Vec::new();
    for sub in cmd.get_subcommands_mut() {
        let name = sub.get_name().to_string();
        let help = sub.render_long_help().to_string();
        let Some((_, examples)) = help.split_once("Examples:") else {
            continue;
        };
        // The help wraps long lines at its width: a continuation of a `\` line is joined
        // by the shell rules; a wrapped word ends up on a line of its own, joined back here.
        let mut lines: Vec<String> = Vec::new();
        for l in examples.lines().map(str::trim) {
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let continues = lines.last().is_some_and(|p| p.ends_with('\\'));
            if l.starts_with("shadowdiff ") || continues || lines.is_empty() {
                lines.push(l.to_string());
            } else if let Some(prev) = lines.last_mut() {
                prev.push(' ');
                prev.push_str(l);
            }
        }
        for (line, words) in
            shadowdiff_commands(lines.iter().enumerate().map(|(n, l)| (n + 1, l.as_str())))
        {
            checked += 1;
            if let Err(e) = check(&words) {
                failures.push(format!(
                    "{name} --help, example {line}: {}\n{e}",
                    words.join(" ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 6, "only {checked} help examples found");
}

#[test]
fn kubernetes_manifests_use_real_flags() {
    let shards = read(&root().join("docs/k8s/shadowdiff-shards.yaml"));
    let merge = read(&root().join("docs/k8s/shadowdiff-merge.yaml"));
    let numbered = |text: &str| -> Vec<Vec<String>> {
        shadowdiff_commands(text.lines().enumerate().map(|(i, l)| (i + 1, l)))
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    };
    let replay = numbered(&shards);
    assert_eq!(replay.len(), 1, "{replay:?}");
    assert_eq!(check(&replay[0]), Ok("replay"));
    let Command::Replay(args) = Cli::try_parse_from(&replay[0]).unwrap().command else {
        unreachable!()
    };
    assert_eq!(args.shard.as_deref(), Some("2/4"));
    assert!(shards.contains("completions: 4") && shards.contains("completionMode: Indexed"));

    let merges = numbered(&merge);
    assert_eq!(merges.len(), 1, "{merges:?}");
    let Command::Merge(args) = Cli::try_parse_from(&merges[0])
        .unwrap_or_else(|e| panic!("{e}"))
        .command
    else {
        panic!("not a merge: {:?}", merges[0]);
    };
    assert_eq!(args.results.len(), 4);
    assert!(args.reports.html.is_some() && args.reports.junit.is_some());
}

/// The anchors GitHub gives the headings of a Markdown text (outside code blocks): lower
/// case, spaces as `-`, punctuation other than `-` and `_` dropped, repeats numbered.
fn anchors(text: &str) -> BTreeSet<String> {
    let kinds = line_kinds(text);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if kinds[i] != Kind::Prose || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ')
        {
            continue;
        }
        let title = line[hashes..].trim().trim_end_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// The Markdown text outside code blocks and inline code spans (both blanked, so line
/// numbers stay), where links are links.
fn prose(text: &str) -> String {
    let kinds = line_kinds(text);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if kinds[i] == Kind::Prose {
            let mut in_code = false;
            for c in line.chars() {
                if c == '`' {
                    in_code = !in_code;
                }
                out.push(if in_code || c == '`' { ' ' } else { c });
            }
        }
        out.push('\n');
    }
    out
}

/// Relative link targets of a Markdown text with their line numbers: inline `[..](target)`
/// (the text may span lines) and reference definitions `[..]: target`.
fn relative_links(text: &str) -> Vec<(usize, String)> {
    let text = prose(text);
    let mut out = Vec::new();
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let mut from = 0;
    while let Some(i) = text[from..].find("](") {
        let start = from + i + 2;
        let Some(len) = text[start..].find(')') else {
            break;
        };
        out.push((line_of(start), text[start..start + len].to_string()));
        from = start + len;
    }
    let mut offset = 0;
    for line in text.split('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            if let Some((_, target)) = t.split_once("]: ") {
                out.push((line_of(offset), target.to_string()));
            }
        }
        offset += line.len() + 1;
    }
    out.into_iter()
        .map(|(n, t)| {
            let t = t.split_whitespace().next().unwrap_or("");
            (
                n,
                t.trim_start_matches('<').trim_end_matches('>').to_string(),
            )
        })
        .filter(|(_, t)| !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading() {
    let repo = root().canonicalize().unwrap();
    let mut checked = 0;
    let mut with_anchor = 0;
    let mut failures = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        for (line, target) in relative_links(&text) {
            checked += 1;
            let at = format!("{}:{line}: ({target})", relative(&file));
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path.replace("%20", " "))
            };
            let Ok(real) = dest.canonicalize() else {
                failures.push(format!("{at}: no such file"));
                continue;
            };
            if !real.starts_with(&repo) {
                failures.push(format!("{at}: outside the repository"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            with_anchor += 1;
            if real.extension().is_none_or(|e| e != "md") {
                failures.push(format!("{at}: an anchor into a file that is not Markdown"));
            } else if !anchors(&read(&real)).contains(anchor) {
                failures.push(format!(
                    "{at}: no heading with the anchor #{anchor} in {}",
                    relative(&real)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Today about a hundred links, a third of them to a heading.
    assert!(
        checked >= 80 && with_anchor >= 25,
        "only {checked} links ({with_anchor} with an anchor) found"
    );
}

#[test]
fn github_anchors_follow_the_heading_text() {
    let text = "# Title\n## One exchange in full: `show`\n```\n# not a heading\n```\n## Title\n";
    let a = anchors(text);
    let want: BTreeSet<String> = ["title", "one-exchange-in-full-show", "title-1"]
        .map(String::from)
        .into();
    assert_eq!(a, want);
}

#[test]
fn shell_lines_are_cut_and_substituted_as_a_shell_would() {
    let lines = [
        (1, "$ cargo run --release -- replay a.jsonl \\"),
        (2, "    --baseline \"$PROD\" --candidate ${NIGHTLY} --json \"r-$(date +%F).json\" 2>err.txt | tee out # note"),
        (3, "cd /tmp && ./target/release/shadowdiff show rec.jsonl --id 'a b' > x.txt; echo $?"),
        (4, "cargo run --example make_demo_recording -- x"),
        (5, "shadowdiff replay <RECORDING>"),
    ];
    let got = shadowdiff_commands(lines);
    let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    assert_eq!(got[0].0, 1);
    assert_eq!(
        got[0].1,
        words("shadowdiff replay a.jsonl --baseline http://gw-old:8080 --candidate http://gw-new:8080 --json r-x.json")
    );
    assert_eq!(
        got[1].1[..4],
        words("./target/release/shadowdiff show rec.jsonl --id")[..]
    );
    assert_eq!(got[1].1[4], "a b");
    assert_eq!(got[1].1.len(), 5);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(check(&got[2].1)
        .unwrap_err()
        .contains("placeholder <RECORDING>"));
}

/// The README's first real run names these; here the tap listens on a free port (and
/// prints it), and the old and new gateway versions are two nginx instances.
const README_LISTEN: &str = "0.0.0.0:8080";
const README_OLD: &str = "http://gw-old:8080";
const README_NEW: &str = "http://gw-new:8080";

/// The old gateway: users (with nginx's per-request id in the body, noise), prices, and a
/// legacy export called once. The new one lost the export's route and changed the price.
fn gateway(price: &str, legacy: bool) -> String {
    let mut conf = vec![
        r#"    location ~ ^/api/users/(\d+)$ { return 200 '{"id":$1,"name":"user $1","rid":"$request_id"}'; }"#.to_string(),
        format!(r#"    location ~ ^/api/prices/(\d+)$ {{ return 200 '{{"sku":$1,"price":{price},"currency":"EUR"}}'; }}"#),
    ];
    if legacy {
        conf.push(
            r#"    location = /api/legacy/export { return 200 '{"rows":[1,2,3]}'; }"#.to_string(),
        );
    }
    conf.push(r#"    location / { return 404 '{"error":"no route"}'; }"#.to_string());
    conf.join("\n")
}

/// The shadowdiff command lines of the README section headed `title`.
fn readme_section_commands(title: &str) -> Vec<Vec<String>> {
    let readme = read(&root().join("README.md"));
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README has no section {title:?}"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    code_blocks(section)
        .into_iter()
        .flat_map(shadowdiff_commands)
        .map(|(_, c)| c)
        .collect()
}

/// Replaces the word `from` with `to` in `cmd`, which must hold it.
fn substitute(cmd: &mut [String], from: &str, to: &str) {
    let mut found = false;
    for w in cmd.iter_mut().filter(|w| *w == from) {
        *w = to.to_string();
        found = true;
    }
    assert!(
        found,
        "the README's command no longer names {from}: {cmd:?}"
    );
}

fn run_in(dir: &Path, cmd: &[String]) -> Output {
    std::process::Command::new(bin())
        .args(&cmd[1..])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn the_readmes_first_real_run_works_as_written() {
    let Some(nginx) = nginx_binary() else { return };
    let old = Nginx::start(&nginx, &gateway("10.5", true));
    let new = Nginx::start(&nginx, &gateway("11.0", false));
    let commands = readme_section_commands("A first real run");
    let step = |sub: &str| -> Vec<String> {
        let mut found = commands.iter().filter(|c| c[1] == sub);
        let cmd = found
            .next()
            .unwrap_or_else(|| panic!("no `shadowdiff {sub}` in {commands:?}"));
        assert!(
            found.next().is_none(),
            "two `shadowdiff {sub}` in {commands:?}"
        );
        cmd.clone()
    };
    let dir = tempfile::tempdir().unwrap();

    // 1. Record: the tap in front of the old version, curl's requests through it, SIGTERM.
    let mut tap = step("tap");
    substitute(&mut tap, README_LISTEN, "127.0.0.1:0");
    substitute(&mut tap, README_OLD, &old.url());
    let mut command = std::process::Command::new(bin());
    command.args(&tap[1..]).current_dir(dir.path());
    let proc = TapProc::spawn(command, false);
    let base = proc.url();
    let mut urls: Vec<String> = (1..=10)
        .flat_map(|i| {
            [
                format!("{base}/api/users/{i}"),
                format!("{base}/api/prices/{}", 100 + i),
            ]
        })
        .collect();
    urls.push(format!("{base}/api/legacy/export"));
    let curl = std::process::Command::new("curl")
        .args(["-s", "-S", "--max-time", "10", "-w", "%{http_code}\n"])
        .args(urls.iter().flat_map(|u| ["-o", "/dev/null", u]))
        .output()
        .expect("curl is installed (.ci/run installs it)");
    assert!(curl.status.success(), "{}", describe(&curl));
    let statuses = String::from_utf8(curl.stdout).unwrap();
    assert_eq!(
        statuses.lines().filter(|s| *s == "200").count(),
        21,
        "{statuses}"
    );
    let stderr = proc.stop();
    assert!(
        stderr.contains("21 exchanges proxied, 21 recorded"),
        "the tap should say how many it proxied and recorded:\n{stderr}"
    );

    // 2. Replay against both versions, with the README's flags.
    let mut replay = step("replay");
    substitute(&mut replay, README_OLD, &old.url());
    substitute(&mut replay, README_NEW, &new.url());
    let o = run_in(dir.path(), &replay);

    // 3. Read the report: exit 1 is a fail, the terminal report names what needs attention
    // down to the field path and sample ids, and the files the README names hold the same.
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("FAIL: 2 interfaces need attention"),
        "{out}"
    );
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name) && l.contains("  "))
            .unwrap_or_else(|| panic!("no row for {name}:\n{out}"))
            .to_string()
    };
    assert!(
        row("GET /api/legacy/export").ends_with("MISSING RULE"),
        "{out}"
    );
    assert!(row("GET /api/prices/{id}").ends_with("DIFFERENT"), "{out}");
    assert!(row("GET /api/users/{id}").ends_with("ok"), "{out}");
    assert!(out.contains("\n21 exchanges over 3 interfaces: "), "{out}");
    assert!(out.contains("field $.price"), "{out}");
    let recording = flag_value(&tap, "--out");
    assert_eq!(
        replay[2], recording,
        "step 2 should replay what step 1 recorded"
    );
    let ids: BTreeSet<String> = read_recordings(&[dir.path().join(recording)])
        .into_iter()
        .map(|e| e.id)
        .collect();
    let samples: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("samples: "))
        .flat_map(|l| l.split(", "))
        .collect();
    assert!(!samples.is_empty(), "no sample ids:\n{out}");
    for id in samples {
        assert!(
            ids.contains(id),
            "sample {id} is not in the recording {ids:?}"
        );
    }

    let json = dir.path().join(flag_value(&replay, "--json"));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["summary"]["total"], 21);
    assert_eq!(interface(&r, "GET /api/legacy/export")["missing_rule"], 1);
    assert_eq!(interface(&r, "GET /api/prices/{id}")["different"], 10);
    assert_eq!(interface(&r, "GET /api/users/{id}")["noise_only"], 10);
    let html = read(&dir.path().join(flag_value(&replay, "--html")));
    for want in [
        "FAIL",
        "GET /api/legacy/export",
        "GET /api/prices/{id}",
        "$.price",
    ] {
        assert!(html.contains(want), "report.html lacks {want}");
    }

    // The same replay with the old version on both sides passes: exit 0.
    let mut same = step("replay");
    substitute(&mut same, README_OLD, &old.url());
    substitute(&mut same, README_NEW, &old.url());
    let o = run_in(dir.path(), &same);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("PASS"),
        "{}",
        describe(&o)
    );
    assert_eq!(read_json(&json)["verdict"], "pass");
}

/// The value after `flag` in a command line.
fn flag_value<'a>(cmd: &'a [String], flag: &str) -> &'a str {
    let i = cmd
        .iter()
        .position(|w| w == flag)
        .unwrap_or_else(|| panic!("no {flag} in {cmd:?}"));
    &cmd[i + 1]
}
