//! Compares two header (or trailer) lists by name, skipping headers that differ between any
//! two answers by nature, and tolerating time-valued headers a few seconds apart.

use super::timeval::within_tolerance_str;
use super::{CompareOptions, DiffKind, Difference};
use crate::http1::headers::is_hop_by_hop;

/// Response headers never compared (lower case): they differ between any two answers, or
/// describe the transfer rather than the content.
///
/// - `date`: the moment the answer was generated; two servers never agree to the second.
/// - `age`: seconds the answer spent in a cache; depends on cache state, not the gateway.
/// - `trailer`: only announces which trailers follow; the trailers themselves are compared.
/// - `content-length`: bodies are compared decoded, so the encoded length changes with any
///   change of compressor or level even when the content is the same.
/// - `server-timing`: the server's own timing measurements, different on every answer.
///
/// Nor are the hop-by-hop fields ([`HOP_BY_HOP`](crate::http1::headers::HOP_BY_HOP): `connection`, `keep-alive`,
/// `transfer-encoding`, ...), which describe one connection, not the answer; chunking in
/// particular is undone before bodies are compared.
pub const VOLATILE_HEADERS: &[&str] =
    &["date", "age", "trailer", "content-length", "server-timing"];

/// True when the header is not compared: built in as volatile, hop-by-hop, or ignored by
/// the user.
fn is_ignored(name_lower: &str, opts: &CompareOptions) -> bool {
    VOLATILE_HEADERS.contains(&name_lower)
        || is_hop_by_hop(name_lower.as_bytes())
        || opts
            .ignore_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name_lower))
}

/// Groups a header list by lower-cased name, in order of first appearance, joining repeated
/// values with `, ` in wire order (as HTTP allows for list-valued fields).
fn group(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        // Header lists are short (tens of entries), so a linear scan beats building a map.
        match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            None => out.push((name.to_ascii_lowercase(), value.clone())),
        }
    }
    out
}

/// A `Content-Type` value without its `boundary` parameter: servers pick a fresh random
/// multipart boundary for every answer, and the parts themselves are compared by body.
fn without_boundary(value: &str) -> String {
    value
        .split(';')
        .map(str::trim)
        .filter(|p| {
            !p.split_once('=')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Compares two header lists and appends one [`Difference`] of `kind` per differing name.
///
/// Names compare case-insensitively; each name's values are joined in order with `, `, so
/// a reordered or duplicated value is a difference. For [`DiffKind::Header`] the
/// [`VOLATILE_HEADERS`] and `opts.ignore_headers` are skipped; trailers (gRPC status) are
/// always compared. Values that both read as times within `opts.time_tolerance` are marked
/// `tolerated`. Output follows first appearance, baseline names first.
pub fn diff_headers(
    a: &[(String, String)],
    b: &[(String, String)],
    kind: DiffKind,
    opts: &CompareOptions,
    out: &mut Vec<Difference>,
) {
    if let (DiffKind::Header, Some(w)) = (kind, &opts.watch) {
        w.note_headers(a);
        w.note_headers(b);
    }
    // The same fields in the same order differ nowhere (the common case, and no grouping).
    if a == b {
        return;
    }
    let ga = group(a);
    let gb = group(b);
    let skip = |name: &str| kind == DiffKind::Header && is_ignored(name, opts);
    let lookup = |g: &[(String, String)], name: &str| {
        g.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };

    let names = ga.iter().map(|(n, _)| n).chain(
        gb.iter()
            .map(|(n, _)| n)
            .filter(|n| !ga.iter().any(|(m, _)| m == *n)),
    );
    for name in names {
        if skip(name) {
            continue;
        }
        let va = lookup(&ga, name);
        let vb = lookup(&gb, name);
        if va == vb {
            continue;
        }
        if name == "content-type" {
            if let (Some(x), Some(y)) = (&va, &vb) {
                if without_boundary(x) == without_boundary(y) {
                    continue;
                }
            }
        }
        let tolerated = match (&va, &vb) {
            (Some(x), Some(y)) => within_tolerance_str(x, y, opts.time_tolerance),
            _ => false,
        };
        out.push(Difference {
            kind,
            path: name.clone(),
            baseline: va,
            candidate: vb,
            tolerated,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn run(
        a: &[(&str, &str)],
        b: &[(&str, &str)],
        kind: DiffKind,
        o: &CompareOptions,
    ) -> Vec<Difference> {
        let mut out = Vec::new();
        diff_headers(&h(a), &h(b), kind, o, &mut out);
        out
    }

    #[test]
    fn volatile_headers_are_lower_case() {
        for v in VOLATILE_HEADERS {
            assert_eq!(*v, v.to_ascii_lowercase());
        }
    }

    #[test]
    fn equal_lists_case_insensitive_names() {
        let o = CompareOptions::default();
        let d = run(
            &[("Content-Type", "application/json"), ("X-A", "1")],
            &[("x-a", "1"), ("content-type", "application/json")],
            DiffKind::Header,
            &o,
        );
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn changed_missing_and_added_in_first_appearance_order() {
        let o = CompareOptions::default();
        let d = run(
            &[
                ("X-Gone", "1"),
                ("Content-Type", "text/html"),
                ("Via", "a"),
                ("Via", "b"),
            ],
            &[
                ("X-New", "z"),
                ("content-type", "text/plain"),
                ("via", "a, b"),
            ],
            DiffKind::Header,
            &o,
        );
        let want = vec![
            Difference {
                kind: DiffKind::Header,
                path: "x-gone".into(),
                baseline: Some("1".into()),
                candidate: None,
                tolerated: false,
            },
            Difference {
                kind: DiffKind::Header,
                path: "content-type".into(),
                baseline: Some("text/html".into()),
                candidate: Some("text/plain".into()),
                tolerated: false,
            },
            Difference {
                kind: DiffKind::Header,
                path: "x-new".into(),
                baseline: None,
                candidate: Some("z".into()),
                tolerated: false,
            },
        ];
        assert_eq!(d, want);
    }

    #[test]
    fn repeats_and_order_matter() {
        let o = CompareOptions::default();
        let d = run(
            &[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
            &[("Set-Cookie", "b=2"), ("Set-Cookie", "a=1")],
            DiffKind::Header,
            &o,
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].baseline.as_deref(), Some("a=1, b=2"));
        assert_eq!(d[0].candidate.as_deref(), Some("b=2, a=1"));
    }

    #[test]
    fn volatile_and_user_ignored_skipped_for_headers_only() {
        let o = CompareOptions {
            ignore_headers: vec!["x-request-id".into()],
            ..Default::default()
        };
        let a = [
            ("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
            ("Content-Length", "10"),
            ("X-Request-Id", "a"),
            ("Connection", "close"),
        ];
        let b = [
            ("Date", "Tue, 14 Nov 2023 23:13:20 GMT"),
            ("Content-Length", "12"),
            ("X-Request-Id", "b"),
        ];
        assert!(run(&a, &b, DiffKind::Header, &o).is_empty());
        // As trailers, nothing is skipped.
        let d = run(&a, &b, DiffKind::Trailer, &o);
        let paths: Vec<_> = d.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            ["date", "content-length", "x-request-id", "connection"]
        );
        assert!(d.iter().all(|x| x.kind == DiffKind::Trailer));
    }

    #[test]
    fn grpc_status_trailer_compared() {
        let o = CompareOptions::default();
        let d = run(
            &[("grpc-status", "0")],
            &[("grpc-status", "14")],
            DiffKind::Trailer,
            &o,
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].key(), "trailer:grpc-status 0 → 14");
    }

    #[test]
    fn times_within_tolerance_are_tolerated() {
        let o = CompareOptions::default();
        let d = run(
            &[
                ("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
                ("X-Generated", "2023-11-14T22:13:20.100Z"),
            ],
            &[
                ("Last-Modified", "Tue, 14 Nov 2023 22:13:23 GMT"),
                ("X-Generated", "2023-11-14T22:13:21.900Z"),
            ],
            DiffKind::Header,
            &o,
        );
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|x| x.tolerated), "{d:?}");
    }

    #[test]
    fn multipart_boundary_is_not_compared() {
        let o = CompareOptions::default();
        let d = run(
            &[("Content-Type", "multipart/mixed; boundary=a1b2")],
            &[("Content-Type", "multipart/mixed;boundary=\"zz9\"")],
            DiffKind::Header,
            &o,
        );
        assert!(d.is_empty(), "{d:?}");
        let d = run(
            &[("Content-Type", "multipart/mixed; boundary=a1b2")],
            &[("Content-Type", "multipart/form-data; boundary=a1b2")],
            DiffKind::Header,
            &o,
        );
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].baseline.as_deref(),
            Some("multipart/mixed; boundary=a1b2")
        );
    }

    #[test]
    fn time_an_hour_off_not_tolerated() {
        let o = CompareOptions::default();
        let d = run(
            &[("Expires", "Tue, 14 Nov 2023 22:13:20 GMT")],
            &[("Expires", "Tue, 14 Nov 2023 23:13:20 GMT")],
            DiffKind::Header,
            &o,
        );
        assert_eq!(d.len(), 1);
        assert!(!d[0].tolerated);
    }
}
