//! The documentation keeps working. Every `shadowdiff` command line shown in the README,
//! `recordings/README.md`, `docs/*.md` and the `docs/k8s/` manifests parses with today's
//! flags, and every relative link leads to a file, and to a heading where it names one.
//!
//! Shell lines are read the way a reader would type them: `\` continuations joined, a `$ `
//! prompt dropped, `cargo run [--release] -- ARGS` taken as `shadowdiff ARGS`, and a line cut
//! at `|`, `&&`, `||`, `;`, `&`, a redirection or a `#` comment. Variables stand for the
//! values in [`VARS`] and a command substitution `$(…)` for the word `x`; a variable not in
//! [`VARS`] or a `<PLACEHOLDER>` fails the command, so a doc shows values a reader can paste.

use clap::Parser;
use shadowdiff::cli::{Cli, Command};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

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
