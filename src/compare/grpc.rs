//! gRPC bodies: splits the length-prefixed messages (1 flag byte, 4-byte big-endian length),
//! undoes per-message compression (`grpc-encoding`), decodes each message (protobuf by
//! default, JSON for `application/grpc+json`) and compares both answers as
//! `{"msg": [...]}` with the structural JSON diff, so a changed field reads `$.msg[0].3.1`.
//!
//! Unary and server-streaming answers have the same shape: one or more messages. gRPC-Web
//! answers carry their trailers in a final frame with the 0x80 flag; those are compared as
//! trailers, like HTTP/2 trailers. Framing problems (a truncated frame, an unknown
//! compression, a message that is not protobuf) never stop the comparison: the messages
//! read so far are compared and the problem is reported as a body difference when the two
//! sides disagree on it.

use super::descriptor::Descriptors;
use super::headers::diff_headers;
use super::json::diff_json;
use super::protobuf::{self, harmonize};
use super::{CompareOptions, DiffKind, Difference};
use crate::exchange::Headers;
use base64::Engine as _;
use serde_json::{json, Value};

/// Most messages decoded per body; a stream longer than this is compared on its first
/// messages (the rest are counted in a note), so memory stays proportional to a sane answer.
pub const MAX_MESSAGES: usize = 10_000;

/// Most distinct decode problems kept per body.
const MAX_NOTES: usize = 4;

/// One frame of a gRPC body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The compressed flag (bit 0): the payload is compressed with the `grpc-encoding`.
    pub compressed: bool,
    /// The gRPC-Web trailer flag (bit 7): the payload is a trailer block, not a message.
    pub trailers: bool,
    /// The payload bytes.
    pub payload: &'a [u8],
}

/// Splits a gRPC body into frames. Stops at the first frame whose prefix or payload is cut
/// short and returns, with the complete frames, a note saying where and by how much.
pub fn split_frames(body: &[u8]) -> (Vec<Frame<'_>>, Option<String>) {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let rest = &body[pos..];
        if rest.len() < 5 {
            return (
                frames,
                Some(format!(
                    "truncated gRPC frame at byte {pos}: {} of 5 prefix bytes",
                    rest.len()
                )),
            );
        }
        let flags = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let available = rest.len() - 5;
        if len > available {
            return (
                frames,
                Some(format!(
                    "truncated gRPC frame at byte {pos}: prefix says {len} bytes, {available} present"
                )),
            );
        }
        frames.push(Frame {
            compressed: flags & 0x01 != 0,
            trailers: flags & 0x80 != 0,
            payload: &rest[5..5 + len],
        });
        pos += 5 + len;
    }
    (frames, None)
}

/// How the messages of a gRPC body are encoded, from its content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Protobuf,
    Json,
    /// Any other subtype (`+thrift`, ...): shown as bytes.
    Opaque,
}

fn codec_of(media: &str) -> Codec {
    let sub = media
        .strip_prefix("application/grpc-web-text")
        .or_else(|| media.strip_prefix("application/grpc-web"))
        .or_else(|| media.strip_prefix("application/grpc"))
        .unwrap_or_default();
    match sub {
        "" | "+proto" => Codec::Protobuf,
        "+json" => Codec::Json,
        _ => Codec::Opaque,
    }
}

/// True for the media types of gRPC and gRPC-Web.
pub fn is_grpc(media: &str) -> bool {
    media == "application/grpc"
        || media.starts_with("application/grpc+")
        || media.starts_with("application/grpc-web")
}

/// A gRPC body, decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GrpcBody {
    /// Each message as JSON (an undecodable message as the base64 of its bytes).
    pub messages: Vec<Value>,
    /// gRPC-Web trailers found in the body.
    pub trailers: Headers,
    /// What could not be decoded, in order; empty when everything was.
    pub notes: Vec<String>,
}

impl GrpcBody {
    fn note(&mut self, n: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(n);
        }
    }
}

/// Where the field names come from: a descriptor set and the answer's message type.
pub type Schema<'a> = Option<(&'a Descriptors, &'a str)>;

/// Decodes a gRPC body: frames, per-message decompression, then each message by the codec
/// the content type names. `limit` bounds the payload bytes decoded for the whole body
/// (after decompression), so many small compressed frames cannot add up to a bomb; frames
/// past it are noted, not decoded.
pub fn decode_grpc_body(
    headers: &[(String, String)],
    media: &str,
    body: &[u8],
    schema: Schema<'_>,
    limit: usize,
) -> GrpcBody {
    let mut out = GrpcBody::default();
    // gRPC-Web-Text is the same framing, base64-encoded for transports without binary.
    let unwrapped;
    let body = if media.starts_with("application/grpc-web-text") {
        let text: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        match base64::engine::general_purpose::STANDARD.decode(&text) {
            Ok(b) => {
                unwrapped = b;
                &unwrapped[..]
            }
            Err(e) => {
                out.note(format!("grpc-web-text body is not base64 ({e})"));
                return out;
            }
        }
    } else {
        body
    };
    let codec = codec_of(media);
    let encoding = crate::exchange::header(headers, "grpc-encoding")
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity");
    let (frames, truncated) = split_frames(body);
    let mut skipped = 0usize;
    let mut used = 0usize;
    for (i, f) in frames.iter().enumerate() {
        let room = limit.saturating_sub(used);
        if f.payload.len() > room {
            out.note(format!(
                "frames from {i} on not compared: the body decodes to more than {limit} bytes"
            ));
            break;
        }
        let decompressed;
        let payload = if f.compressed {
            match &encoding {
                None => {
                    out.note(format!(
                        "frame {i} is flagged compressed but no grpc-encoding is given"
                    ));
                    out.messages.push(bytes_value(f.payload));
                    continue;
                }
                Some(enc) => match super::decode::decode_one(enc, f.payload, room) {
                    Ok(d) => {
                        decompressed = d;
                        &decompressed[..]
                    }
                    Err(e) if super::decode::is_limit_error(&e) => {
                        out.note(format!(
                            "frames from {i} on not compared: the body decodes to more than \
                             {limit} bytes"
                        ));
                        break;
                    }
                    Err(e) => {
                        out.note(format!("frame {i}: cannot decompress: {e}"));
                        out.messages.push(bytes_value(f.payload));
                        used += f.payload.len();
                        continue;
                    }
                },
            }
        } else {
            f.payload
        };
        used += payload.len();
        if f.trailers {
            out.trailers.extend(parse_trailer_block(payload));
            continue;
        }
        if out.messages.len() >= MAX_MESSAGES {
            skipped += 1;
            continue;
        }
        let v = match codec {
            Codec::Protobuf => {
                let decoded = match schema {
                    Some((desc, ty)) => protobuf::decode_typed(payload, desc, ty),
                    None => protobuf::decode(payload),
                };
                match decoded {
                    Ok(v) => v,
                    Err(e) => {
                        out.note(format!("message {i} is not protobuf ({e})"));
                        bytes_value(payload)
                    }
                }
            }
            Codec::Json => match serde_json::from_slice(payload) {
                Ok(v) => v,
                Err(e) => {
                    out.note(format!("message {i} is not JSON ({e})"));
                    bytes_value(payload)
                }
            },
            Codec::Opaque => bytes_value(payload),
        };
        out.messages.push(v);
    }
    if skipped > 0 {
        out.note(format!(
            "{skipped} messages after the first {MAX_MESSAGES} not compared"
        ));
    }
    if let Some(t) = truncated {
        out.note(t);
    }
    out
}

fn bytes_value(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

/// A gRPC-Web trailer block: `name: value` lines separated by CRLF.
fn parse_trailer_block(block: &[u8]) -> Headers {
    String::from_utf8_lossy(block)
        .split("\r\n")
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Compares two gRPC bodies (already free of any HTTP content coding) and appends the
/// differences: decode problems that differ (path `body`), gRPC-Web trailers, then the
/// messages as `$.msg[i]...`. `method` is the request path (`/pkg.Service/Method`), used to
/// find the answer's type in `opts.proto_descriptor`.
#[allow(clippy::too_many_arguments)]
pub fn diff_grpc(
    headers_a: &[(String, String)],
    media_a: &str,
    a: &[u8],
    headers_b: &[(String, String)],
    media_b: &str,
    b: &[u8],
    method: Option<&str>,
    opts: &CompareOptions,
    out: &mut Vec<Difference>,
) {
    let schema = opts.proto_descriptor.as_deref().and_then(|d| {
        let m = d.method(method?)?;
        Some((d, m.output.as_str()))
    });
    let limit = super::decode::DEFAULT_DECODE_LIMIT;
    let ga = decode_grpc_body(headers_a, media_a, a, schema, limit);
    let gb = decode_grpc_body(headers_b, media_b, b, schema, limit);
    if ga.notes != gb.notes {
        let say = |g: &GrpcBody| {
            if g.notes.is_empty() {
                format!("{} messages decoded", g.messages.len())
            } else {
                format!("could not decode: {}", g.notes.join("; "))
            }
        };
        out.push(Difference {
            kind: DiffKind::Body,
            path: "body".into(),
            baseline: Some(say(&ga)),
            candidate: Some(say(&gb)),
            tolerated: false,
        });
    }
    diff_headers(&ga.trailers, &gb.trailers, DiffKind::Trailer, opts, out);
    let mut ja = json!({ "msg": ga.messages });
    let mut jb = json!({ "msg": gb.messages });
    harmonize(&mut ja, &mut jb);
    diff_json(&ja, &jb, opts, out);
}

/// Frames one message as gRPC does (uncompressed): for tests and tools that build bodies.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(a: &[u8], b: &[u8]) -> Vec<Difference> {
        let mut out = Vec::new();
        let hd = h(&[("content-type", "application/grpc")]);
        diff_grpc(
            &hd,
            "application/grpc",
            a,
            &hd,
            "application/grpc",
            b,
            Some("/pkg.Svc/GetUser"),
            &CompareOptions::default(),
            &mut out,
        );
        out
    }

    #[test]
    fn media_types() {
        assert!(is_grpc("application/grpc"));
        assert!(is_grpc("application/grpc+proto"));
        assert!(is_grpc("application/grpc-web+proto"));
        assert!(!is_grpc("application/grpcx"));
        assert_eq!(codec_of("application/grpc+json"), Codec::Json);
        assert_eq!(codec_of("application/grpc-web"), Codec::Protobuf);
        assert_eq!(codec_of("application/grpc+thrift"), Codec::Opaque);
    }

    #[test]
    fn changed_nested_field_path() {
        // {1: 7, 3: {1: "Paris", 2: 75001}} vs zip 75002.
        let msg = |zip: u8| {
            let mut m = vec![0x08, 0x07, 0x1a, 0x0b, 0x0a, 0x05];
            m.extend_from_slice(b"Paris");
            m.extend_from_slice(&[0x10, 0xf9, 0xc9, zip]);
            m
        };
        let a = frame(&msg(0x04));
        let b = frame(&msg(0x05));
        let d = run(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "$.msg[0].3.2");
        assert_eq!(d[0].key(), "$.msg[*].3.2");
        assert!(run(&a, &a).is_empty());
    }

    #[test]
    fn streams_compare_message_by_message() {
        let a: Vec<u8> = [frame(&[0x08, 1]), frame(&[0x08, 2])].concat();
        let b: Vec<u8> = [frame(&[0x08, 1]), frame(&[0x08, 3]), frame(&[0x08, 4])].concat();
        let d = run(&a, &b);
        let paths: Vec<_> = d.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["$.msg[1].1", "$.msg[2]"]);
    }

    #[test]
    fn compressed_frames_are_inflated() {
        let msg = [0x08, 0x2a];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&msg).unwrap();
        let gz = gz.finish().unwrap();
        let mut body = vec![1u8];
        body.extend_from_slice(&(gz.len() as u32).to_be_bytes());
        body.extend_from_slice(&gz);
        let headers = h(&[("grpc-encoding", "gzip")]);
        let g = decode_grpc_body(&headers, "application/grpc", &body, None, 1 << 20);
        assert_eq!(g.messages, [json!({"1": 42})]);
        assert!(g.notes.is_empty());
        // The same content uncompressed compares equal.
        let mut out = Vec::new();
        diff_grpc(
            &headers,
            "application/grpc",
            &body,
            &[],
            "application/grpc",
            &frame(&msg),
            None,
            &CompareOptions::default(),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        // Flagged compressed without an encoding, or with an unknown one: a note, no panic.
        let g = decode_grpc_body(&[], "application/grpc", &body, None, 1 << 20);
        assert!(g.notes[0].contains("no grpc-encoding"), "{:?}", g.notes);
        let g = decode_grpc_body(
            &h(&[("grpc-encoding", "snappy")]),
            "application/grpc",
            &body,
            None,
            1 << 20,
        );
        assert!(g.notes[0].contains("snappy"), "{:?}", g.notes);
    }

    #[test]
    fn truncated_frame_is_a_note_and_a_difference() {
        let good = frame(&[0x08, 1]);
        let mut cut = good.clone();
        cut.extend_from_slice(&frame(&[0x08, 2, 0x10, 3])[..6]);
        let (frames, note) = split_frames(&cut);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            note.as_deref(),
            Some("truncated gRPC frame at byte 7: prefix says 4 bytes, 1 present")
        );
        let d = run(&good, &cut);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "body");
        assert_eq!(d[0].baseline.as_deref(), Some("1 messages decoded"));
        assert!(d[0].candidate.as_deref().unwrap().contains("truncated"));
        let (_, note) = split_frames(&[0, 0, 0]);
        assert!(note.unwrap().contains("3 of 5 prefix bytes"));
    }

    #[test]
    fn decoded_size_is_bounded_across_frames() {
        let zeros = vec![0u8; 4096];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&zeros).unwrap();
        let gz = gz.finish().unwrap();
        let mut body = Vec::new();
        for _ in 0..10 {
            body.push(1u8);
            body.extend_from_slice(&(gz.len() as u32).to_be_bytes());
            body.extend_from_slice(&gz);
        }
        let headers = h(&[("grpc-encoding", "gzip")]);
        // Room for two and a half frames: the third does not inflate within the rest.
        let g = decode_grpc_body(&headers, "application/grpc", &body, None, 10_000);
        assert_eq!(g.messages.len(), 2, "{:?}", g.notes);
        assert_eq!(
            g.notes.last().map(String::as_str),
            Some("frames from 2 on not compared: the body decodes to more than 10000 bytes")
        );
    }

    #[test]
    fn undecodable_message_is_shown_as_bytes() {
        let g = decode_grpc_body(&[], "application/grpc", &frame(&[0x0f]), None, 100);
        assert_eq!(g.messages, [json!("Dw==")]);
        assert!(g.notes[0].starts_with("message 0 is not protobuf"));
    }

    #[test]
    fn json_codec_and_grpc_web_trailers() {
        let mut body = frame(br#"{"a": 1}"#);
        let block = b"grpc-status: 0\r\ngrpc-message: ok\r\n";
        body.push(0x80);
        body.extend_from_slice(&(block.len() as u32).to_be_bytes());
        body.extend_from_slice(block);
        let g = decode_grpc_body(&[], "application/grpc-web+json", &body, None, 100);
        assert_eq!(g.messages, [json!({"a": 1})]);
        assert_eq!(
            g.trailers,
            h(&[("grpc-status", "0"), ("grpc-message", "ok")])
        );
        let text = base64::engine::general_purpose::STANDARD.encode(&body);
        let g2 = decode_grpc_body(
            &[],
            "application/grpc-web-text+json",
            text.as_bytes(),
            None,
            100,
        );
        assert_eq!(g, g2);
    }

    #[test]
    fn descriptor_names_fields() {
        use prost::Message;
        let set = crate::compare::descriptor::tests::sample_set();
        let desc = Descriptors::from_bytes(&set.encode_to_vec()).unwrap();
        let opts = CompareOptions {
            proto_descriptor: Some(std::sync::Arc::new(desc)),
            ..Default::default()
        };
        let a = frame(&[0x1a, 0x03, 0x10, 0xe9, 0x04]);
        let b = frame(&[0x1a, 0x03, 0x10, 0xea, 0x04]);
        let hd = h(&[("content-type", "application/grpc")]);
        let mut out = Vec::new();
        diff_grpc(
            &hd,
            "application/grpc",
            &a,
            &hd,
            "application/grpc",
            &b,
            Some("/pkg.Svc/GetUser"),
            &opts,
            &mut out,
        );
        assert_eq!(out[0].path, "$.msg[0].address.zip");
        // A method the descriptor does not know: field numbers.
        let mut out = Vec::new();
        diff_grpc(
            &hd,
            "application/grpc",
            &a,
            &hd,
            "application/grpc",
            &b,
            Some("/other.Svc/X"),
            &opts,
            &mut out,
        );
        assert_eq!(out[0].path, "$.msg[0].3.2");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::fuzz_cases(256), ..ProptestConfig::default() })]

        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256),
                                     compressed in any::<bool>()) {
            let hd = if compressed { h(&[("grpc-encoding", "gzip")]) } else { Vec::new() };
            let g = decode_grpc_body(&hd, "application/grpc", &body, None, 1 << 16);
            prop_assert!(g.notes.len() <= MAX_NOTES);
            let _ = run(&body, &[]);
        }

        #[test]
        fn frames_round_trip_and_any_cut_is_reported(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5),
            cut in any::<proptest::sample::Index>(),
        ) {
            let body: Vec<u8> = msgs.iter().flat_map(|m| frame(m)).collect();
            let (frames, note) = split_frames(&body);
            prop_assert!(note.is_none());
            let payloads: Vec<&[u8]> = frames.iter().map(|f| f.payload).collect();
            let expect: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(payloads, expect);
            if !body.is_empty() {
                let at = cut.index(body.len());
                let (frames, note) = split_frames(&body[..at]);
                // A cut on a frame boundary is a shorter valid body; anywhere else it is noted.
                let boundary = {
                    let mut pos = 0;
                    let mut ends = vec![0];
                    for m in &msgs { pos += 5 + m.len(); ends.push(pos); }
                    ends.contains(&at)
                };
                prop_assert_eq!(note.is_none(), boundary);
                prop_assert!(frames.len() <= msgs.len());
            }
        }
    }
}
