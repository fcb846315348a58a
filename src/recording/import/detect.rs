//! Telling an input's capture format from its first bytes and its name, so `import` needs
//! no `--from` when the files say what they are. The content is looked at first (gzip
//! undone, as the importers undo it); the name (`.gor`, `.har`, `.pcap`, `.pcapng`, `.cap`,
//! each optionally `.gz`) decides only when the content is not recognised, as with an empty
//! `.gor` file or a HAR too damaged to show its `log`. Content and name that disagree, files
//! of different formats, or a file nothing recognises are a usage error asking for `--from`:
//! guessing there would turn a mislabelled file into a confusing parse error.

use super::open_input;
use crate::cli::ImportFormat;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// How much of each (decompressed) input is looked at. A GoReplay meta line and the request
/// line after it, a HAR's opening and a capture's magic number all fit many times over.
const SNIFF: u64 = 16 << 10;

/// How far into a JSON document the `"log"` key of a HAR may start: exporters put it first,
/// but a few write a short key before it.
const HAR_LOG_WITHIN: usize = 1024;

/// What to tell the user when the format cannot be inferred.
const PASS_FROM: &str = "pass --from gor|har|pcap";

/// The format of `inputs`, inferred from each file's content and name. Errors name the
/// file (or the two files that disagree) and ask for `--from`.
pub fn infer(inputs: &[PathBuf]) -> Result<ImportFormat> {
    let mut first: Option<(&Path, ImportFormat)> = None;
    for path in inputs {
        let format = infer_one(path)?;
        match first {
            None => first = Some((path, format)),
            Some((p, f)) if f != format => {
                return Err(Error::Usage(format!(
                    "{} is {} but {} is {}: one import reads one format; import them separately, or {PASS_FROM} to read all as one",
                    p.display(),
                    describe(f),
                    path.display(),
                    describe(format)
                )))
            }
            Some(_) => {}
        }
    }
    // clap requires at least one input; an empty list has no format to infer.
    first.map(|(_, f)| f).ok_or_else(|| {
        Error::Usage(format!("import: no input file given; expected one or more capture files ({PASS_FROM} if their format cannot be told)"))
    })
}

/// The format of one file: its content when recognised (and not contradicted by its name),
/// else its name.
fn infer_one(path: &Path) -> Result<ImportFormat> {
    let head = sniff(path)?;
    match (by_content(&head), by_name(path)) {
        (Some(c), Some(n)) if c != n => Err(Error::Usage(format!(
            "{}: the content is {} but the name says {}; {PASS_FROM} to say which",
            path.display(),
            describe(c),
            describe(n)
        ))),
        (Some(c), _) => Ok(c),
        (None, Some(n)) => Ok(n),
        (None, None) => Err(Error::Usage(format!(
            "{}: cannot tell the capture format: expected a pcap or pcapng magic number, a HAR document \
             (JSON with a \"log\" key) or GoReplay records (a line `1 ID TIMESTAMP_NS` and an HTTP \
             request line), gzipped or not, or a name ending in .gor, .har, .pcap or .pcapng; {PASS_FROM}",
            path.display()
        ))),
    }
}

/// The first [`SNIFF`] bytes of the file, gzip undone. A cut or corrupt gzip stream gives
/// what came before the damage; the importer reports the damage itself.
fn sniff(path: &Path) -> Result<Vec<u8>> {
    let (input, _stop) = open_input(path)?;
    let mut head = Vec::new();
    input
        .take(SNIFF)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    Ok(head)
}

/// The format a file's name suggests, ignoring case and a trailing `.gz`.
pub fn by_name(path: &Path) -> Option<ImportFormat> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    match name.rsplit_once('.')?.1 {
        "gor" => Some(ImportFormat::Gor),
        "har" => Some(ImportFormat::Har),
        "pcap" | "pcapng" | "cap" => Some(ImportFormat::Pcap),
        _ => None,
    }
}

/// The format the first bytes of a (decompressed) file show, if any.
pub fn by_content(head: &[u8]) -> Option<ImportFormat> {
    let pcap = matches!(
        head.get(..4),
        Some(
            [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
    );
    if pcap {
        Some(ImportFormat::Pcap)
    } else if looks_like_har(head) {
        Some(ImportFormat::Har)
    } else if looks_like_gor(head) {
        Some(ImportFormat::Gor)
    } else {
        None
    }
}

/// A JSON object (after an optional byte-order mark and white space) with a `"log"` key
/// near its start.
fn looks_like_har(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let Some(start) = head.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    if head[start] != b'{' {
        return false;
    }
    let near = &head[start + 1..head.len().min(start + 1 + HAR_LOG_WITHIN)];
    near.windows(5).enumerate().any(|(i, w)| {
        w == b"\"log\""
            && near[i + 5..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b':')
    })
}

/// A GoReplay record: a meta line `TYPE ID TIMESTAMP_NS [LATENCY_NS]` followed by an HTTP
/// request line (type 1) or status line (types 2 and 3). Blank and separator lines before
/// it are passed over.
fn looks_like_gor(head: &[u8]) -> bool {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty() || *l == super::gor::SEPARATOR);
    let (Some(meta), Some(first)) = (lines.next(), lines.next()) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(meta) else {
        return false;
    };
    let fields: Vec<&str> = text.split(' ').filter(|f| !f.is_empty()).collect();
    let numeric = |f: &str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit());
    if !(3..=4).contains(&fields.len()) || !fields[2..].iter().all(|f| numeric(f)) {
        return false;
    }
    match fields[0] {
        "1" => is_request_line(first),
        "2" | "3" => is_status_line(first),
        _ => false,
    }
}

/// `METHOD TARGET HTTP/x.y`, the method an HTTP token.
fn is_request_line(line: &[u8]) -> bool {
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return false;
    };
    !method.is_empty()
        && method
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
        && !target.is_empty()
        && version.starts_with(b"HTTP/")
}

/// `HTTP/x.y NNN[ reason]`.
fn is_status_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"HTTP/") else {
        return false;
    };
    let mut parts = rest.splitn(3, |&b| b == b' ');
    let _version = parts.next();
    parts
        .next()
        .is_some_and(|code| code.len() == 3 && code.iter().all(u8::is_ascii_digit))
}

/// How an error message names a format.
fn describe(f: ImportFormat) -> &'static str {
    match f {
        ImportFormat::Gor => "GoReplay records (gor)",
        ImportFormat::Har => "a HAR document (har)",
        ImportFormat::Pcap => "a pcap/pcapng capture (pcap)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_suggest_a_format_through_gzip_and_case() {
        for (name, want) in [
            ("requests.gor", Some(ImportFormat::Gor)),
            ("requests_0.GOR.gz", Some(ImportFormat::Gor)),
            ("session.har.gz", Some(ImportFormat::Har)),
            ("dump.pcapng", Some(ImportFormat::Pcap)),
            ("dump.cap", Some(ImportFormat::Pcap)),
            ("capture.gz", None),
            ("capture", None),
            ("capture.json", None),
        ] {
            assert_eq!(by_name(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn content_tells_the_format_by_its_first_bytes() {
        let gor = b"1 a1b2 1499932720871971000\r\nGET /api HTTP/1.1\r\nHost: x\r\n\r\n";
        let gor_resp = "\n2 a1 1499932720871971000 0\nHTTP/1.1 200\n\n".as_bytes();
        for (head, want) in [
            (&b"\xd4\xc3\xb2\xa1\x02\x00"[..], Some(ImportFormat::Pcap)),
            (b"\x4d\x3c\xb2\xa1", Some(ImportFormat::Pcap)),
            (b"\x0a\x0d\x0d\x0a", Some(ImportFormat::Pcap)),
            (b"\xef\xbb\xbf\n  {\n \"log\" : {", Some(ImportFormat::Har)),
            (
                b"{\"comment\": \"x\", \"log\": {}}",
                Some(ImportFormat::Har),
            ),
            (gor, Some(ImportFormat::Gor)),
            (gor_resp, Some(ImportFormat::Gor)),
            (b"{\"v\":1,\"source\":\"tap\"}\n", None),
            (b"{\"log\" 1", None),
            (b"1 a1b2 1499932720871971000\nnot http\n", None),
            (b"1 a1b2 soon\nGET / HTTP/1.1\n", None),
            (b"GET / HTTP/1.1\r\n\r\n", None),
            (b"", None),
        ] {
            assert_eq!(
                by_content(head),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
