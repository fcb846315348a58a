//! Commands that send a recorded request again by hand, for the person chasing a difference
//! further than shadowdiff shows it: `curl` for HTTP, and `grpcurl` for a gRPC call whose
//! method a descriptor set describes. `show` prints them and the HTML report gives them with
//! its sample exchanges; both build them here.
//!
//! A command sends what a replay sends: the same header fields, chosen by
//! [`each_replayed_header`] (no hop-by-hop fields, no `content-length`, `--set-header`
//! applied, the Host header as `--host-header` says), and it keeps curl from adding fields of
//! its own. Every word is quoted for a POSIX shell; a body or value with control characters
//! needs `$'…'`, which bash, zsh and ksh read. A value the capture redacted is sent as it
//! was recorded, redacted, and a comment above the command names where: the command cannot
//! know the secret. A body that is binary or longer than [`INLINE_BODY_MAX`] is read from a
//! file (`--data-binary @FILE`), with a comment saying how to write that file.

use super::target::{each_replayed_header, Target};
use crate::compare::body::media_type;
use crate::compare::descriptor::Descriptors;
use crate::compare::grpc::{decode_grpc_body, is_grpc};
use crate::exchange::origin_form;
use crate::exchange::{header, Request};
use crate::recording::format::is_redacted;
use std::fmt::Write as _;
use std::path::Path;

/// Longest request body written into a command; a longer one is read from a file.
pub const INLINE_BODY_MAX: usize = 4096;

/// Where a command sends the request.
#[derive(Clone, Copy, Debug)]
pub enum To<'a> {
    /// A target of the run, with the header fields it gets.
    Target(&'a Target),
    /// The address in the shell variable `TARGET` (`http://host:port`), for a reader who has
    /// not named one: header fields as a replay with `set` (`--set-header`) sends them, the
    /// recorded Host header kept when `keep_host`.
    Placeholder {
        /// Header fields set on every request.
        set: &'a [(String, String)],
        /// `--host-header keep`.
        keep_host: bool,
    },
}

/// The file a command reads a body from when the body cannot be written into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyFile {
    /// The file name the command reads (`@NAME`).
    pub name: String,
    /// How to write that file, for the comment above the command.
    pub how: String,
}

impl BodyFile {
    /// The file for exchange `id`'s body, written by `show` from `recordings`.
    pub fn for_exchange(id: &str, recordings: &[String]) -> Self {
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("body-{safe}.bin");
        let mut how = String::from("shadowdiff show");
        for r in recordings {
            how.push(' ');
            how.push_str(&quote(r.as_bytes()));
        }
        let _ = write!(
            how,
            " {} --save-body {}",
            quote(id.as_bytes()),
            quote(name.as_bytes())
        );
        BodyFile { name, how }
    }
}

/// A request body as a command sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// Written into the command.
    Inline(&'a [u8]),
    /// Read from a file: how long it is, and whether it is binary.
    File {
        /// Its length in bytes.
        len: u64,
        /// Not text (not UTF-8, or holding a NUL byte, which no shell word can hold).
        binary: bool,
    },
}

impl<'a> Body<'a> {
    /// `bytes` written into the command when they are text of at most [`INLINE_BODY_MAX`]
    /// bytes, else read from a file.
    pub fn of(bytes: &'a [u8]) -> Self {
        let text = !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok();
        if text && bytes.len() <= INLINE_BODY_MAX {
            Body::Inline(bytes)
        } else {
            Body::File {
                len: bytes.len() as u64,
                binary: !text,
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Body::Inline(b) if b.is_empty()) || matches!(self, Body::File { len: 0, .. })
    }

    fn len(&self) -> u64 {
        match self {
            Body::Inline(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// Which command a flag is spelled for.
#[derive(Clone, Copy)]
enum Tool {
    Curl,
    Grpcurl,
}

/// The flags that make `tool` speak TLS to `t` as replay does: the CA file, no
/// verification, the client certificate and the name asked for; empty for a plain target.
fn tls_flags(t: &Target, tool: Tool) -> String {
    let Some(o) = t.tls_options() else {
        return String::new();
    };
    let mut out = String::new();
    let mut flag = |curl: &str, grpcurl: &str, value: Option<&str>| {
        let name = match tool {
            Tool::Curl => curl,
            Tool::Grpcurl => grpcurl,
        };
        out.push(' ');
        out.push_str(name);
        if let Some(v) = value {
            out.push(' ');
            out.push_str(&quote(v.as_bytes()));
        }
    };
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    if o.insecure {
        flag("--insecure", "-insecure", None);
    } else if let Some(ca) = path(&o.ca_cert) {
        flag("--cacert", "-cacert", Some(&ca));
    }
    if let (Some(cert), Some(key)) = (path(&o.client_cert), path(&o.client_key)) {
        flag("--cert", "-cert", Some(&cert));
        flag("--key", "-key", Some(&key));
    }
    // curl takes the name to verify only from the URL; grpcurl has a flag for it.
    if let (Some(name), Tool::Grpcurl) = (&o.server_name, tool) {
        flag("", "-servername", Some(name));
    }
    out
}

/// A shell word that stands for exactly `s`: bare when every byte is one no shell treats
/// specially, in single quotes when it holds no single quote and no control character, and
/// otherwise in `$'…'` with escapes (bytes that are not UTF-8 as `\xHH`).
pub fn quote(s: &[u8]) -> String {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(b);
    if !s.is_empty() && s.iter().all(plain) {
        return String::from_utf8_lossy(s).into_owned();
    }
    // C1 controls too: some terminals act on them in their UTF-8 form.
    if let Ok(text) = std::str::from_utf8(s) {
        if !text.chars().any(char::is_control) && !text.contains('\'') {
            return format!("'{text}'");
        }
    }
    let mut out = String::from("$'");
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut utf8 = [0; 4];
                    for b in c.encode_utf8(&mut utf8).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('\'');
    out
}

/// The header fields the request carries at `to`, and the shell word for its URL.
fn destination(to: &To<'_>, req: &Request) -> (String, Vec<(String, String)>) {
    match to {
        To::Target(t) => {
            let mut headers = t.sent_headers(req);
            // curl sends the URL's authority as the Host header by itself.
            headers.retain(|(n, v)| !(n == "host" && v == t.authority()));
            (quote(t.url_of(req).as_bytes()), headers)
        }
        To::Placeholder { set, keep_host } => {
            let mut headers = Vec::new();
            let host = keep_host.then(|| header(&req.headers, "host")).flatten();
            let _ = each_replayed_header(req, set, host, |n, v| {
                headers.push((n.to_string(), v.to_string()));
                Ok(())
            });
            let pq = origin_form(&req.uri);
            (format!("\"$TARGET\"{}", quote(pq.as_bytes())), headers)
        }
    }
}

/// Where the capture redacted values in `req`, for the comment that asks for them.
fn redactions(headers: &[(String, String)], req: &Request) -> Vec<String> {
    let mut out: Vec<String> = headers
        .iter()
        .filter(|(_, v)| is_redacted(v))
        .map(|(n, _)| format!("header {n}"))
        .collect();
    let marks = |text: &str| {
        text.match_indices("redacted:")
            .filter(|(i, _)| text.get(*i..*i + 21).is_some_and(is_redacted))
            .count()
    };
    if marks(&req.uri) > 0 {
        out.push("the query".into());
    }
    let n = marks(&String::from_utf8_lossy(&req.body));
    if n > 0 {
        out.push(format!(
            "{n} {} in the body",
            if n == 1 { "value" } else { "values" }
        ));
    }
    out
}

/// Comment lines that go above a command: what was redacted, what was cut.
fn notes(headers: &[(String, String)], req: &Request, body_len: u64) -> String {
    let mut out = String::new();
    let redacted = redactions(headers, req);
    if !redacted.is_empty() {
        let _ = writeln!(
            out,
            "# redacted at capture ({}): the command sends the redaction; put the real values in",
            redacted.join(", ")
        );
    }
    if req.body_truncated {
        let _ = writeln!(
            out,
            "# the recorded body was cut at capture: this sends its first {body_len} bytes only"
        );
    }
    out
}

/// The `curl` command (with comment lines above it, when there is something to say) that
/// sends `req` to `to`, printing the answer's status line and headers before its body.
pub fn curl(to: &To<'_>, req: &Request, body_file: &BodyFile) -> String {
    curl_with_body(to, req, Body::of(&req.body), body_file)
}

/// [`curl`] for a request whose body is described by `body` (a report keeps a long or
/// binary body's length, not the body).
pub fn curl_with_body(to: &To<'_>, req: &Request, body: Body<'_>, body_file: &BodyFile) -> String {
    let (url, headers) = destination(to, req);
    let mut out = notes(&headers, req, body.len());
    let mut cmd = String::from("curl -sS -i --globoff --path-as-is");
    if matches!(to, To::Target(t) if t.is_http2()) {
        cmd.push_str(" --http2-prior-knowledge");
    }
    if let To::Target(t) = to {
        cmd.push_str(&tls_flags(t, Tool::Curl));
    }
    let method = req.method.as_str();
    if method.eq_ignore_ascii_case("HEAD") && body.is_empty() {
        cmd.push_str(" --head");
    } else if !(method == "GET" && body.is_empty() || method == "POST" && !body.is_empty()) {
        let _ = write!(cmd, " -X {}", quote(method.as_bytes()));
    }
    for (n, v) in &headers {
        // `name;` is how curl sends a header with an empty value; `name:` would remove it.
        let field = if v.is_empty() {
            format!("{n};")
        } else {
            format!("{n}: {v}")
        };
        let _ = write!(cmd, " -H {}", quote(field.as_bytes()));
    }
    // curl adds fields of its own where the request has none; a replay sends none of them.
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    for own in ["user-agent", "accept"] {
        if !has(own) {
            let _ = write!(cmd, " -H '{own}:'");
        }
    }
    if !body.is_empty() {
        if !has("content-type") {
            cmd.push_str(" -H 'content-type:'");
        }
        match body {
            Body::Inline(bytes) => {
                let _ = write!(cmd, " --data-binary {}", quote(bytes));
            }
            Body::File { len, binary } => {
                let _ = writeln!(
                    out,
                    "# the body ({len} bytes{}) is read from {}; write it with: {}",
                    if binary { ", binary" } else { "" },
                    body_file.name,
                    body_file.how
                );
                let _ = write!(
                    cmd,
                    " -H 'expect:' --data-binary {}",
                    quote(format!("@{}", body_file.name).as_bytes())
                );
            }
        }
    }
    let _ = write!(cmd, " {url}");
    out.push_str(&cmd);
    out
}

/// Metadata a gRPC client sets itself; sent as `-H`, grpcurl would send it twice or refuse.
const GRPC_OWN: &[&str] = &["content-type", "te", "user-agent", "host"];

/// The `grpcurl` command that sends the gRPC call `req` to `to`, its messages written as
/// JSON by the field names in `desc` (read by grpcurl from `protoset`). `None` when `req` is
/// no gRPC call, `desc` does not describe its method, or a message does not decode.
pub fn grpcurl(to: &To<'_>, req: &Request, desc: &Descriptors, protoset: &Path) -> Option<String> {
    let media = media_type(&req.headers)?;
    if !is_grpc(&media) || media.starts_with("application/grpc-web") {
        return None;
    }
    let method = desc.method(&req.path())?;
    let decoded = decode_grpc_body(
        &req.headers,
        &media,
        &req.body,
        Some((desc, &method.input)),
        INLINE_BODY_MAX * 16,
    );
    if !decoded.notes.is_empty() || req.body_truncated {
        return None;
    }
    let data = if decoded.messages.is_empty() {
        "{}".to_string()
    } else {
        decoded
            .messages
            .iter()
            .map(serde_json::Value::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (address, headers) = match to {
        To::Target(t) => (quote(t.authority().as_bytes()), t.sent_headers(req)),
        To::Placeholder { .. } => {
            // The address without its scheme: grpcurl takes host:port.
            let (_, headers) = destination(to, req);
            ("\"${TARGET#*://}\"".to_string(), headers)
        }
    };
    let mut out = notes(&headers, req, req.body.len() as u64);
    let tls = match to {
        To::Target(t) if t.is_tls() => tls_flags(t, Tool::Grpcurl),
        _ => " -plaintext".to_string(),
    };
    let _ = write!(
        out,
        "grpcurl{tls} -protoset {}",
        quote(protoset.display().to_string().as_bytes())
    );
    for (n, v) in headers
        .iter()
        .filter(|(n, _)| !GRPC_OWN.contains(&n.as_str()) && !n.starts_with("grpc-"))
    {
        let _ = write!(out, " -H {}", quote(format!("{n}: {v}").as_bytes()));
    }
    let path = req.path();
    let service_method = path.trim_start_matches('/');
    let _ = write!(
        out,
        " -d {} {address} {}",
        quote(data.as_bytes()),
        quote(service_method.as_bytes())
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::HostHeaderMode;
    use crate::exchange::Side;
    use crate::recording::format::redact_value;
    use crate::replay::target::TargetOptions;
    use std::time::Duration;

    fn target(url: &str) -> Target {
        Target::new(
            Side::Candidate,
            url,
            TargetOptions {
                timeout: Duration::from_secs(1),
                max_body: 1024,
                pool_size: 1,
                host_header: HostHeaderMode::Target,
                set_headers: vec![("x-env".into(), "shadow".into())],
                tls: Default::default(),
            },
        )
        .unwrap()
    }

    fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        Request {
            method: method.into(),
            uri: uri.into(),
            version: "HTTP/1.1".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: bytes::Bytes::copy_from_slice(body),
            body_truncated: false,
            tls: None,
        }
    }

    fn file() -> BodyFile {
        BodyFile::for_exchange("e/1", &["rec.jsonl".into()])
    }

    #[test]
    fn words_are_quoted_only_as_much_as_needed() {
        assert_eq!(quote(b"/a/b?x=1"), "'/a/b?x=1'");
        assert_eq!(quote(b"http://h:1/a"), "http://h:1/a");
        assert_eq!(quote(b""), "''");
        assert_eq!(quote("café & tea".as_bytes()), "'café & tea'");
        assert_eq!(quote(b"it's"), r"$'it\'s'");
        assert_eq!(quote(b"a\nb\\c\x1b"), r"$'a\nb\\c\x1b'");
        assert_eq!(quote(b"\xff\xfeok"), r"$'\xff\xfeok'");
        assert_eq!(quote("a\u{85}b".as_bytes()), r"$'a\xc2\x85b'");
    }

    #[test]
    fn curl_sends_what_replay_sends() {
        let t = target("http://127.0.0.1:8080/prefix");
        let r = req(
            "PUT",
            "/items/7?full=1",
            &[
                ("Host", "shop.example"),
                ("Content-Length", "9"),
                ("Connection", "keep-alive"),
                ("Content-Type", "application/json"),
                ("X-Env", "prod"),
                ("Accept", "*/*"),
                ("User-Agent", "app/1"),
                ("X-Empty", ""),
            ],
            b"{\"n\":\"it's\"}",
        );
        let cmd = curl(&To::Target(&t), &r, &file());
        assert_eq!(
            cmd,
            "curl -sS -i --globoff --path-as-is -X PUT -H 'content-type: application/json' \
             -H 'accept: */*' -H 'user-agent: app/1' -H 'x-empty;' -H 'x-env: shadow' \
             --data-binary $'{\"n\":\"it\\'s\"}' 'http://127.0.0.1:8080/prefix/items/7?full=1'"
        );
    }

    #[test]
    fn curl_adds_nothing_of_its_own_and_reads_large_or_binary_bodies_from_a_file() {
        let t = target("h2c://127.0.0.1:8080");
        let r = req("POST", "/upload", &[], &[0, 1, 2, 3]);
        let cmd = curl(&To::Target(&t), &r, &file());
        assert_eq!(
            cmd,
            "# the body (4 bytes, binary) is read from body-e_1.bin; write it with: \
             shadowdiff show rec.jsonl e/1 --save-body body-e_1.bin\n\
             curl -sS -i --globoff --path-as-is --http2-prior-knowledge -H 'x-env: shadow' \
             -H 'user-agent:' -H 'accept:' -H 'content-type:' -H 'expect:' \
             --data-binary @body-e_1.bin http://127.0.0.1:8080/upload"
        );
        let big = req("POST", "/", &[], &vec![b'a'; INLINE_BODY_MAX + 1]);
        let cmd = curl(&To::Target(&t), &big, &file());
        assert!(
            cmd.starts_with("# the body (4097 bytes) is read from"),
            "{cmd}"
        );
        let head = req("HEAD", "/", &[], b"");
        assert!(curl(&To::Target(&t), &head, &file()).contains(" --head "));
    }

    #[test]
    fn redacted_values_stay_redacted_and_are_named() {
        let secret = redact_value(b"Bearer abc");
        let body = format!("{{\"card\":\"{}\"}}", redact_value(b"4111"));
        let r = req(
            "POST",
            "/pay",
            &[
                ("authorization", &secret),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        );
        let set = Vec::new();
        let to = To::Placeholder {
            set: &set,
            keep_host: false,
        };
        let cmd = curl(&to, &r, &file());
        let (note, line) = cmd.split_once('\n').unwrap();
        assert_eq!(
            note,
            "# redacted at capture (header authorization, 1 value in the body): the command \
             sends the redaction; put the real values in"
        );
        assert!(
            line.contains(&format!("-H 'authorization: {secret}'")),
            "{line}"
        );
        assert!(line.ends_with(" \"$TARGET\"/pay"), "{line}");
    }

    #[test]
    fn grpcurl_writes_the_call_by_field_names() {
        use prost::Message as _;
        let desc = Descriptors::from_bytes(
            &crate::compare::descriptor::tests::sample_set().encode_to_vec(),
        )
        .unwrap();
        let body = crate::compare::grpc::frame(&[0x08, 0x07]);
        let r = req(
            "POST",
            "/pkg.Svc/GetUser",
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-timeout", "5S"),
                ("x-tenant", "acme"),
            ],
            &body,
        );
        let t = target("h2c://127.0.0.1:50051");
        let protoset = Path::new("/tmp/pkg set.pb");
        let cmd = grpcurl(&To::Target(&t), &r, &desc, protoset).unwrap();
        assert_eq!(
            cmd,
            "grpcurl -plaintext -protoset '/tmp/pkg set.pb' -H 'x-tenant: acme' \
             -H 'x-env: shadow' -d '{\"id\":7}' 127.0.0.1:50051 pkg.Svc/GetUser"
        );
        // A method the descriptor does not describe, or no gRPC at all: curl's job.
        let mut other = r.clone();
        other.uri = "/pkg.Svc/Unknown".into();
        assert_eq!(grpcurl(&To::Target(&t), &other, &desc, protoset), None);
        let json = req(
            "POST",
            "/pkg.Svc/GetUser",
            &[("content-type", "application/json")],
            b"{}",
        );
        assert_eq!(grpcurl(&To::Target(&t), &json, &desc, protoset), None);
    }
}
