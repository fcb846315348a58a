//! `shadowdiff import`: the real captures in ../shared/fixtures and tests/fixtures import
//! with the counts the files (or tshark) show, our own tcpdump capture imports exactly,
//! the results replay, `--strict` and errors behave, a TLS session in a capture is counted
//! as such, and no input makes a parser panic.

use crate::util::*;
use shadowdiff::cli::ImportFormat;
use shadowdiff::exchange::{header, Exchange};
use shadowdiff::recording::import::{gor::GorImporter, har::HarImporter, pcap::PcapImporter};
use shadowdiff::recording::import::{import, ImportReport};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A capture copied into tests/fixtures (MIT or GPL-2.0 test data, see its README).
fn local(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

/// A capture with no stated license, read in place from ../shared/fixtures. `None` (and a
/// note) when that directory is absent, unless SHADOWDIFF_REQUIRE_FIXTURES is set.
fn shared(name: &str) -> Option<PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures"));
    if !dir.is_dir() {
        if std::env::var_os("SHADOWDIFF_REQUIRE_FIXTURES").is_some() {
            panic!(
                "{} is required (SHADOWDIFF_REQUIRE_FIXTURES is set) but not found",
                dir.display()
            );
        }
        eprintln!("skipped: ../shared/fixtures not found");
        return None;
    }
    let p = dir.join(name);
    assert!(p.is_file(), "{} is missing from ../shared/fixtures", name);
    Some(p)
}

fn run_import(format: ImportFormat, paths: &[PathBuf]) -> (Vec<Exchange>, ImportReport) {
    let mut out = Vec::new();
    let mut report = ImportReport::new("");
    import(format, paths, &mut out, &mut report).unwrap();
    assert_eq!(report.written, out.len() as u64);
    assert_every_unit_in_one_place(format, &report);
    (out, report)
}

/// Every unit read is written, ignored or skipped, never two of these: a HAR entry is one
/// exchange; a gor request record is one exchange and a paired response record is counted
/// by `with_response`. (pcap packets do not map one to one onto exchanges.)
fn assert_every_unit_in_one_place(format: ImportFormat, r: &ImportReport) {
    let ignored: u64 = r.ignored.values().sum();
    let placed = match format {
        ImportFormat::Har => r.written + ignored + r.skipped_total(),
        ImportFormat::Gor => r.written + r.with_response + ignored + r.skipped_total(),
        ImportFormat::Pcap => return,
    };
    assert_eq!(r.read, placed, "{r:?}");
}

fn count_method(out: &[Exchange], m: &str) -> usize {
    out.iter().filter(|e| e.request.method == m).count()
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .read_to_end(&mut v)
        .unwrap();
    v
}

#[test]
fn gor_captures_import_with_the_record_counts_the_files_show() {
    // Counts from reading the files: records split on the separator line, typed by their
    // meta line, requests paired with responses by id (see the final report of issue #6).
    let Some(etg) = shared("goreplay_etg-mapmaker_req-resp.gor") else {
        return;
    };
    let (out, r) = run_import(ImportFormat::Gor, &[etg]);
    assert_eq!((r.read, r.requests, r.responses), (2, 1, 1));
    assert_eq!((r.written, r.with_response), (1, 1));
    assert!(r.skipped.is_empty() && r.ignored.is_empty(), "{r:?}");
    let e = &out[0];
    assert_eq!(e.id, "113f561a06c66a5a49746ea9feb2747a275732f1");
    assert_eq!(e.interface.as_deref(), Some("GET /api/mapmaker"));
    let resp = e.response.as_ref().unwrap();
    assert_eq!((resp.status, resp.body.len()), (418, 1337));
    assert_eq!(e.latency_us, Some(352_870));

    let vin = shared("goreplay_python-goreplay_vin-api_req-resp.gor").unwrap();
    let (out, r) = run_import(ImportFormat::Gor, &[vin]);
    assert_eq!((r.read, r.requests, r.responses), (161, 83, 78));
    assert_eq!((r.written, r.with_response), (83, 78));
    assert!(r.skipped.is_empty(), "{r:?}");
    assert_eq!(
        (count_method(&out, "GET"), count_method(&out, "POST")),
        (82, 1)
    );
    assert!(out
        .iter()
        .filter_map(|e| e.response.as_ref())
        .all(|r| r.status == 200));
    // The one chunked answer is de-chunked: its body is the JSON itself.
    let chunked = out
        .iter()
        .filter_map(|e| e.response.as_ref())
        .find(|r| header(&r.headers, "transfer-encoding") == Some("chunked"))
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&chunked.body).unwrap();

    let isucon = shared("goreplay_isucon5_bench-requests.gor").unwrap();
    let (out, r) = run_import(ImportFormat::Gor, &[isucon]);
    assert_eq!((r.read, r.requests, r.responses), (1051, 1051, 0));
    assert_eq!((r.written, r.with_response), (1051, 0));
    assert!(r.skipped.is_empty(), "{r:?}");
    assert_eq!(
        (count_method(&out, "GET"), count_method(&out, "POST")),
        (974, 77)
    );
    for e in out.iter().filter(|e| e.request.method == "POST") {
        let cl: usize = header(&e.request.headers, "content-length")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(e.request.body.len(), cl, "{}", e.id);
    }
}

#[test]
fn gzipped_gor_and_several_files_are_one_capture() {
    let Some(vin) = shared("goreplay_python-goreplay_vin-api_req-resp.gor") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("vin.gor.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &std::fs::read(&vin).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let etg = shared("goreplay_etg-mapmaker_req-resp.gor").unwrap();
    let (out, r) = run_import(ImportFormat::Gor, &[gz, etg]);
    assert_eq!(
        (r.files, r.read, r.written, r.with_response),
        (2, 163, 84, 79)
    );
    assert!(out.iter().any(|e| e.request.uri == "/api/mapmaker"));
}

#[test]
fn har_files_import_with_their_entry_counts() {
    let (out, r) = run_import(
        ImportFormat::Har,
        &[local("har_chrome-webinspector_mitmproxy-testdata.har")],
    );
    assert_eq!((r.read, r.written, r.with_response), (3, 3, 2));
    assert!(r.skipped.is_empty(), "{r:?}");
    assert_eq!(
        out.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["har-1", "har-2", "har-3"]
    );
    // A 304 has no body on the wire: the 23,866 bytes Chrome stored are its cached copy.
    let not_modified = out[0].response.as_ref().unwrap();
    assert_eq!(not_modified.status, 304);
    assert!(
        not_modified.body.is_empty() && !not_modified.body_truncated,
        "{not_modified:?}"
    );
    assert_eq!(out[0].request.version, "HTTP/2");
    // Origin form, with the HTTP/2 `:authority` as the host.
    assert_eq!(out[0].request.uri, "/");
    assert_eq!(
        header(&out[0].request.headers, "host"),
        Some("mitmproxy.org")
    );
    assert_eq!(
        out[2].request.uri,
        "/images/branding/googlelogo/2x/googlelogo_light_color_272x92dp.png"
    );
    assert!(out[1].response.is_none(), "status 0 is no response");
    let png = &out[2].response.as_ref().unwrap().body;
    assert!(png.starts_with(b"\x89PNG\r\n"), "base64 content is decoded");
    assert_eq!(png.len(), 7108);
    assert_eq!(out[2].latency_us, Some(51_080));

    let (out, r) = run_import(
        ImportFormat::Har,
        &[local("har_firefox111_mitmproxy-testdata.har")],
    );
    assert_eq!((r.read, r.written, r.with_response), (14, 14, 14));
    // Four PNGs and one SVG were saved without their bodies: written, but incomplete.
    assert_eq!(
        r.incomplete
            .get("response body not saved in the HAR (kept empty, marked truncated)"),
        Some(&5)
    );
    assert_eq!((r.incomplete_total(), r.skipped_total()), (5, 0));
    let stats = out
        .iter()
        .find(|e| e.request.uri.ends_with("/data/github-stats.json"))
        .unwrap();
    // Firefox revalidated it (304) and stored its cached JSON, which never crossed the wire.
    let stats = stats.response.as_ref().unwrap();
    assert_eq!((stats.status, stats.body.len()), (304, 0));
    let not_modified = out
        .iter()
        .filter(|e| e.response.as_ref().is_some_and(|r| r.status == 304))
        .count();
    assert_eq!(not_modified, 4);
    let polyfills = out
        .iter()
        .find(|e| e.request.uri.ends_with("/polyfills.js"))
        .unwrap();
    assert_eq!(polyfills.response.as_ref().unwrap().body.len(), 11_800);
    assert_eq!(
        r.notes.get(
            "HAR responses with a stored body that never crossed the wire (HEAD, 1xx, 204, 304): recorded without it"
        ),
        Some(&4)
    );
    let favicon = out
        .iter()
        .find(|e| e.request.uri.ends_with("/favicon.ico"))
        .unwrap();
    assert_eq!(favicon.response.as_ref().unwrap().body.len(), 98_065);

    let (out, r) = run_import(
        ImportFormat::Har,
        &[local("har_charles-4.6.3_mitmproxy-testdata.har")],
    );
    assert_eq!((r.read, r.written, r.with_response), (1, 1, 1));
    assert_eq!(out[0].request.uri, "/?=");
    assert_eq!(out[0].interface.as_deref(), Some("GET /"));
    assert_eq!(
        header(&out[0].request.headers, "host"),
        Some("mitmproxy.org")
    );

    let (out, r) = run_import(
        ImportFormat::Har,
        &[local("har_mitmproxy-export_successful-log.har")],
    );
    assert_eq!((r.read, r.written, r.with_response), (2, 2, 2));
    let post = &out[1];
    assert_eq!(post.interface.as_deref(), Some("POST /post"));
    assert!(!post.request.body.is_empty());
    assert_eq!(header(&post.request.headers, "host"), Some("httpbin.org"));
    serde_json::from_slice::<serde_json::Value>(&post.response.as_ref().unwrap().body).unwrap();

    let (out, r) = run_import(
        ImportFormat::Har,
        &[local("har_fiddler5_json-api-post.har")],
    );
    assert_eq!((r.read, r.written, r.with_response), (1, 1, 1));
    serde_json::from_slice::<serde_json::Value>(&out[0].request.body).unwrap();
    let body = &out[0].response.as_ref().unwrap().body;
    serde_json::from_slice::<serde_json::Value>(body).unwrap();
    assert_eq!(out[0].latency_us, Some(1_545_000));
}

#[test]
fn pcap_files_import_with_the_counts_tshark_shows() {
    // tshark -Y http.request / http.response on each file gives these pairs.
    let (out, r) = run_import(
        ImportFormat::Pcap,
        &[local("pcap_http11_keepalive-2req_gzip.pcap")],
    );
    assert_eq!((r.read, r.requests, r.responses, r.written), (18, 2, 2, 2));
    assert!(r.skipped.is_empty(), "{r:?}");
    assert_eq!(
        (out[0].id.as_str(), out[1].id.as_str()),
        ("pcap-1-1", "pcap-1-2")
    );
    let first = out[0].response.as_ref().unwrap();
    assert_eq!((first.status, first.body.len()), (200, 5012));
    assert!(gunzip(&first.body).starts_with(b"<!doctype html>"));
    assert_eq!(out[0].latency_us, Some(220_826));
    assert_eq!(out[1].response.as_ref().unwrap().status, 204);

    let (out, r) = run_import(
        ImportFormat::Pcap,
        &[local("pcap_http11_request-split-3-segments.pcap")],
    );
    assert_eq!((r.read, r.requests, r.responses, r.written), (19, 1, 1, 1));
    assert_eq!(out[0].request.uri, "/test.txt");
    assert_eq!(out[0].response.as_ref().unwrap().body.len(), 6434);
    assert_eq!(out[0].latency_us, Some(764));

    let (out, r) = run_import(
        ImportFormat::Pcap,
        &[local("pcapng_http11_head-301.pcapng")],
    );
    assert_eq!((r.read, r.requests, r.responses, r.written), (10, 1, 1, 1));
    let resp = out[0].response.as_ref().unwrap();
    assert_eq!((out[0].request.method.as_str(), resp.status), ("HEAD", 301));
    assert!(resp.body.is_empty(), "a HEAD answer has no body");
    assert_eq!(out[0].latency_us, Some(13_757));

    // tshark finds one request in each of these, but both streams start mid-connection:
    // the importer counts them and does not guess where messages begin.
    const MID: &str = "TCP streams that start mid-connection (no SYN or SYN-ACK captured)";
    let (_, r) = run_import(
        ImportFormat::Pcap,
        &[local("pcap_http11_chunked-jpeg_midstream.pcap")],
    );
    assert_eq!((r.read, r.written), (66, 0));
    assert_eq!(r.skipped.get(MID), Some(&2), "{r:?}");
    let (_, r) = run_import(
        ImportFormat::Pcap,
        &[local("pcap_h2c_upgrade_nghttp2.pcap")],
    );
    assert_eq!((r.read, r.written), (10, 0));
    assert_eq!(r.skipped.get(MID), Some(&1), "{r:?}");
}

#[test]
fn own_tcpdump_capture_imports_exactly() {
    let (out, r) = run_import(ImportFormat::Pcap, &[local("own_traffic.pcap")]);
    assert_eq!((r.read, r.requests, r.responses), (51, 6, 6));
    assert_eq!((r.written, r.with_response), (6, 6));
    assert!(r.skipped.is_empty() && r.ignored.is_empty(), "{r:?}");
    assert_eq!(
        r.notes
            .get("retransmitted TCP segments (duplicate bytes dropped)"),
        Some(&1)
    );
    let got: Vec<(&str, &str, &str, u16)> = out
        .iter()
        .map(|e| {
            (
                e.id.as_str(),
                e.request.method.as_str(),
                e.request.uri.as_str(),
                e.response.as_ref().unwrap().status,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("pcap-1-1", "GET", "/items/42", 200),
            ("pcap-1-2", "GET", "/static/big.txt", 200),
            ("pcap-1-3", "HEAD", "/items/42", 200),
            ("pcap-2-1", "POST", "/orders", 201),
            ("pcap-2-2", "GET", "/items/7", 200),
            ("pcap-2-3", "GET", "/items/42", 200),
        ]
    );
    let body = |i: usize| out[i].response.as_ref().unwrap().body.clone();
    assert_eq!(&body(0)[..], br#"{"id":42,"name":"widget","price":12.5}"#);
    // gzip + chunked: the chunks are joined, the gzip kept (as sent), and it decodes to the
    // file nginx served.
    let big = out[1].response.as_ref().unwrap();
    assert_eq!(header(&big.headers, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&big.headers, "content-encoding"), Some("gzip"));
    let text = gunzip(&big.body);
    assert_eq!(text.len(), 128_480);
    assert!(text.starts_with(b"00000 "));
    assert!(body(2).is_empty());
    // The POST body arrived in 10 segments (and one of them twice).
    let post = &out[3].request;
    assert_eq!(post.body.len(), 320);
    assert!(post.body.starts_with(b"piece-00:"));
    assert!(post.body.ends_with(b"piece-09:xxxxxxxxxxxxxxxxxxxxxx\n"));
    assert_eq!(&body(3)[..], br#"{"created":true}"#);
    assert_eq!(&body(4)[..], br#"{"id":7,"name":"gadget","price":3}"#);
    assert_eq!(&body(5)[..], &body(0)[..]);
    // Latency: first response packet minus last request packet (tcpdump's timestamps).
    let lat: Vec<u64> = out.iter().map(|e| e.latency_us.unwrap()).collect();
    assert_eq!(lat, [98, 1046, 30, 387, 23, 33]);
    assert!(out.iter().all(|e| e.interface.is_some()));
}

/// The packets of own_traffic.pcap: (seconds, microseconds, Ethernet frame).
fn own_frames() -> Vec<(u32, u32, Vec<u8>)> {
    let own = std::fs::read(local("own_traffic.pcap")).unwrap();
    let le = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= own.len() {
        let incl = le(&own[at + 8..at + 12]) as usize;
        frames.push((
            le(&own[at..at + 4]),
            le(&own[at + 4..at + 8]),
            own[at + 16..at + 16 + incl].to_vec(),
        ));
        at += 16 + incl;
    }
    frames
}

/// A classic pcap written by hand: either byte order, micro- or nanosecond stamps.
fn classic_pcap(link: u32, big: bool, nanos: bool, frames: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
    let u32b = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend_from_slice(&u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend_from_slice(&u16b(2));
    out.extend_from_slice(&u16b(4));
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&u32b(262_144));
    out.extend_from_slice(&u32b(link));
    for (sec, usec, data) in frames {
        out.extend_from_slice(&u32b(*sec));
        out.extend_from_slice(&u32b(if nanos { usec * 1000 } else { *usec }));
        out.extend_from_slice(&u32b(data.len() as u32));
        out.extend_from_slice(&u32b(data.len() as u32));
        out.extend_from_slice(data);
    }
    out
}

/// A pcapng written by hand: one section, one Ethernet interface with nanosecond stamps.
fn pcapng_ns(frames: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, ty: u32, body: &[u8]) {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&vec![0; pad]);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut shb = vec![0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    // Ethernet, snaplen 0, if_tsresol = 9 (nanoseconds), end of options.
    let idb = [1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0];
    block(&mut out, 1, &idb);
    for (sec, usec, data) in frames {
        let ns = u64::from(*sec) * 1_000_000_000 + u64::from(*usec) * 1000;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ns as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        block(&mut out, 6, &epb);
    }
    out
}

/// The frame's TCP segment rebuilt over IPv6 (::1 to ::1).
fn over_ipv6(frame: &[u8]) -> Vec<u8> {
    let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else {
        panic!("own_traffic.pcap holds TCP only")
    };
    let mut lo = [0u8; 16];
    lo[15] = 1;
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [2; 6])
        .ipv6(lo, lo, 64)
        .tcp_header(t.to_header())
        .write(&mut out, t.payload())
        .unwrap();
    out
}

#[test]
fn link_layers_ip_versions_and_file_variants_import_the_same() {
    let frames = own_frames();
    let (expected, _) = run_import(ImportFormat::Pcap, &[local("own_traffic.pcap")]);
    let ip = |f: &[u8]| f[14..].to_vec();
    let with = |head: &[u8], f: &[u8]| [head, &f[14..]].concat();
    let map = |g: &dyn Fn(&[u8]) -> Vec<u8>| -> Vec<(u32, u32, Vec<u8>)> {
        frames.iter().map(|(s, u, f)| (*s, *u, g(f))).collect()
    };
    // Linux cooked v1: packet type, ARPHRD_LOOPBACK, address length and address, protocol.
    let sll = [0, 0, 3, 4, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    // Linux cooked v2: protocol, reserved, interface index, ARPHRD, packet type, address.
    let sll2 = [8, 0, 0, 0, 0, 0, 0, 1, 3, 4, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("raw IP", classic_pcap(101, false, false, &map(&ip))),
        (
            "Linux cooked v1",
            classic_pcap(113, false, false, &map(&|f| with(&sll, f))),
        ),
        (
            "Linux cooked v2",
            classic_pcap(276, false, false, &map(&|f| with(&sll2, f))),
        ),
        (
            "BSD loopback",
            classic_pcap(0, false, false, &map(&|f| with(&[2, 0, 0, 0], f))),
        ),
        ("big-endian, ns", classic_pcap(1, true, true, &frames)),
        ("pcapng, ns", pcapng_ns(&frames)),
        ("IPv6", classic_pcap(1, false, false, &map(&over_ipv6))),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in variants {
        let path = dir.path().join("v.pcap");
        std::fs::write(&path, &bytes).unwrap();
        let (got, r) = run_import(ImportFormat::Pcap, &[path]);
        assert!(
            r.skipped.is_empty() && r.ignored.is_empty(),
            "{name}: {r:?}"
        );
        assert_eq!(got.len(), expected.len(), "{name}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(
                (&g.id, g.ts_us, g.latency_us, &g.request, &g.response),
                (&e.id, e.ts_us, e.latency_us, &e.request, &e.response),
                "{name}"
            );
        }
    }
    // The same capture gzipped.
    let gz = dir.path().join("own.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &std::fs::read(local("own_traffic.pcap")).unwrap())
        .unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let (got, _) = run_import(ImportFormat::Pcap, &[gz]);
    assert_eq!(got, expected);
}

/// Imports `input` with the binary into `dir/NAME.jsonl`.
async fn import_with_binary(format: &str, input: &Path, dir: &Path) -> (PathBuf, String) {
    let out = dir.join(format!(
        "{}.jsonl",
        input.file_name().unwrap().to_string_lossy()
    ));
    let o = shadowdiff_async(vec![
        "import".into(),
        "--from".into(),
        format.into(),
        input.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    (out, String::from_utf8_lossy(&o.stderr).into_owned())
}

fn written(summary: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with("wrote"))
        .unwrap();
    let n = line.split_whitespace().nth(1).unwrap();
    if n == "nothing" {
        0
    } else {
        n.parse().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_captures_replay_with_one_outcome_per_exchange() {
    let server = TestServer::start(|_| Answer::json(200, r#"{"ok":true}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = vec![
        ("pcap", local("own_traffic.pcap")),
        ("har", local("har_firefox111_mitmproxy-testdata.har")),
        ("har", local("har_mitmproxy-export_successful-log.har")),
    ];
    if let Some(vin) = shared("goreplay_python-goreplay_vin-api_req-resp.gor") {
        inputs.push(("gor", vin));
    }
    for (format, input) in inputs {
        let (rec, summary) = import_with_binary(format, &input, dir.path()).await;
        let n = written(&summary);
        assert!(n > 0, "{summary}");
        let json = dir.path().join("result.json");
        let o = shadowdiff_async(vec![
            "replay".into(),
            rec.display().to_string(),
            "--baseline".into(),
            server.url(),
            "--candidate".into(),
            server.url(),
            "--json".into(),
            json.display().to_string(),
        ])
        .await;
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{}: {}",
            input.display(),
            describe(&o)
        );
        let result = read_json(&json);
        assert_eq!(
            result["summary"]["total"],
            n,
            "{}: {result:#}",
            input.display()
        );
        assert_counts_consistent(&result);
    }
}

#[test]
fn summary_goes_to_stderr_and_strict_turns_skips_into_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mid.jsonl");
    let input = local("pcap_http11_chunked-jpeg_midstream.pcap");
    let args = [
        "import",
        "--from",
        "pcap",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = shadowdiff(&args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "read     66 packets: 0 requests, 0 responses",
        "wrote    0 exchanges",
        "skipped  2",
        "2  TCP streams that start mid-connection",
        "e.g. ",
    ] {
        assert!(err.contains(want), "{want:?} in\n{err}");
    }
    assert!(out.exists());

    std::fs::remove_file(&out).unwrap();
    let mut strict = args.to_vec();
    strict.push("--strict");
    let o = shadowdiff(&strict);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--strict: 2 skipped, 0 written incomplete"),
        "{err}"
    );
    assert!(!out.exists(), "no recording after a strict failure");
    assert!(!dir.path().join("mid.jsonl.partial").exists());

    // Nothing skipped: --strict passes and the recording reads back.
    let clean = dir.path().join("clean.jsonl.zst");
    let o = shadowdiff(&[
        "import",
        "--from",
        "pcap",
        local("own_traffic.pcap").to_str().unwrap(),
        "--out",
        clean.to_str().unwrap(),
        "--strict",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = shadowdiff::recording::RecordingReader::open(&[clean], Default::default()).unwrap();
    let ids: Vec<String> = r.map(|e| e.unwrap().id).collect();
    assert_eq!(ids.len(), 6);
}

#[test]
fn out_dash_writes_the_recording_to_stdout() {
    let o = shadowdiff(&[
        "import",
        "--from",
        "har",
        local("har_charles-4.6.3_mitmproxy-testdata.har")
            .to_str()
            .unwrap(),
        "--out",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains(r#""source":"import:har""#),
        "{}",
        lines[0]
    );
    let ex = shadowdiff::recording::format::parse_exchange(lines[1].as_bytes()).unwrap();
    assert_eq!(ex.id, "har-1");
}

#[test]
fn bad_inputs_exit_2_naming_file_place_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let own = std::fs::read(local("own_traffic.pcap")).unwrap();
    let mut bad_gz = vec![0x1f, 0x8b];
    bad_gz.extend_from_slice(b"not deflate at all");
    // Files that are not of the format at all: nothing in them could be kept.
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "pcap",
            "x.pcap",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "x.pcap: byte 0: expected a pcap (magic a1b2c3d4) or pcapng (0a0d0d0a) capture, found 47455420",
        ),
        (
            "pcap",
            "short.pcap",
            own[..10].to_vec(),
            "short.pcap: byte 0: the file ends inside the 24-byte pcap header (10 bytes)",
        ),
        (
            "pcap",
            "bad.pcap.gz",
            bad_gz,
            "bad.pcap.gz: byte 10 of the gzip file (byte 0 of its content): invalid gzip header",
        ),
        (
            "har",
            "x.har",
            b"{\"log\": [\n  {\"a\": 1}\n]}".to_vec(),
            "x.har:1: column 9: not a HAR document",
        ),
        (
            "gor",
            "capture.har",
            b"{\"log\": {\"version\": \"1.2\", \"entries\": []}}\n".to_vec(),
            "capture.har:1: not a GoReplay file: no record in it starts with a meta line",
        ),
    ];
    for (format, name, bytes, want) in cases {
        let input = d.join(name);
        std::fs::write(&input, bytes).unwrap();
        let out = d.join("out.jsonl");
        let o = shadowdiff(&[
            "import",
            "--from",
            format,
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{name}: want {want:?} in\n{err}");
        assert!(!out.exists() && !d.join("out.jsonl.partial").exists());
    }
    let o = shadowdiff(&[
        "import",
        "--from",
        "pcap",
        "/nonexistent/x.pcap",
        "--out",
        "o",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.pcap"));

    // A good file before a bad one: nothing is written, and the summary says so rather
    // than claiming the good file's exchanges were.
    let out = d.join("two.jsonl");
    let o = shadowdiff(&[
        "import",
        "--from",
        "pcap",
        local("own_traffic.pcap").to_str().unwrap(),
        d.join("x.pcap").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("wrote    nothing to ") && err.contains("6 exchanges were ready"),
        "{err}"
    );
    assert!(!out.exists());

    // An empty gor file is an empty capture, not another format.
    let empty = d.join("empty.gor");
    std::fs::write(&empty, b"").unwrap();
    let out = d.join("empty.jsonl");
    let o = shadowdiff(&[
        "import",
        "--from",
        "gor",
        empty.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(ids_in(&out).is_empty());
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, b).unwrap();
    enc.finish().unwrap()
}

/// Ids of the exchanges in a recording file.
fn ids_in(path: &Path) -> Vec<String> {
    shadowdiff::recording::RecordingReader::open(&[path.to_path_buf()], Default::default())
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect()
}

/// Runs `import` without `--from` on `inputs`, writing to `out` in `dir`.
fn import_inferred(inputs: &[&Path], out: &Path) -> std::process::Output {
    let mut args = vec!["import".to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["--out".to_string(), out.display().to_string()]);
    shadowdiff(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn import_without_from_tells_each_format_by_content_and_name_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases = vec![
        ("har", local("har_charles-4.6.3_mitmproxy-testdata.har"), 1),
        ("har", local("har_mitmproxy-export_successful-log.har"), 2),
        ("pcap", local("pcap_http11_keepalive-2req_gzip.pcap"), 2),
        ("pcap", local("pcapng_http11_head-301.pcapng"), 1),
        ("pcap", local("own_traffic.pcap"), 6),
    ];
    if let Some(etg) = shared("goreplay_etg-mapmaker_req-resp.gor") {
        cases.push(("gor", etg, 1));
        let isucon = shared("goreplay_isucon5_bench-requests.gor").unwrap();
        cases.push(("gor", isucon, 1051));
    }
    for (i, (format, fixture, exchanges)) in cases.into_iter().enumerate() {
        let bytes = std::fs::read(&fixture).unwrap();
        let name = fixture.file_name().unwrap().to_str().unwrap();
        // The name as the tool wrote it, gzipped with `.gz` added, and under names that say
        // nothing, so the content alone has to tell (through gzip for the last).
        let inputs = [
            (fixture.clone(), None),
            (d.join(format!("{i}-{name}.gz")), Some(gzip(&bytes))),
            (d.join(format!("{i}-capture")), Some(bytes.clone())),
            (d.join(format!("{i}-capture.gz")), Some(gzip(&bytes))),
        ];
        for (input, contents) in inputs {
            if let Some(c) = contents {
                std::fs::write(&input, c).unwrap();
            }
            let out = d.join("out.jsonl");
            let o = import_inferred(&[&input], &out);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}: {}",
                input.display(),
                describe(&o)
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.starts_with(&format!("import --from {format}: 1 file")),
                "{}: {err}",
                input.display()
            );
            assert_eq!(ids_in(&out).len(), exchanges, "{}: {err}", input.display());
        }
    }

    // Nothing in an empty file to look at: its `.gor` name tells, and it is an empty
    // capture as with --from gor.
    let empty = d.join("empty.gor");
    std::fs::write(&empty, b"").unwrap();
    let out = d.join("empty.jsonl");
    let o = import_inferred(&[&empty], &out);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(ids_in(&out).is_empty());
}

#[test]
fn import_without_from_exits_2_naming_the_file_when_the_format_is_unclear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pcap = std::fs::read(local("pcap_http11_keepalive-2req_gzip.pcap")).unwrap();
    let har = local("har_charles-4.6.3_mitmproxy-testdata.har");
    let own = local("own_traffic.pcap");
    let named_har = d.join("capture.har");
    std::fs::write(&named_har, &pcap).unwrap();
    let gzipped_named_gor = d.join("capture.gor.gz");
    std::fs::write(&gzipped_named_gor, gzip(&std::fs::read(&har).unwrap())).unwrap();
    let notes = d.join("notes.txt");
    std::fs::write(&notes, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let unknown_gz = d.join("capture.gz");
    std::fs::write(&unknown_gz, gzip(b"hello")).unwrap();
    let cases: Vec<(Vec<&Path>, Vec<String>)> = vec![
        (
            vec![&named_har],
            vec![format!(
                "{}: the content is a pcap/pcapng capture (pcap) but the name says a HAR document (har); pass --from gor|har|pcap",
                named_har.display()
            )],
        ),
        (
            vec![&gzipped_named_gor],
            vec![format!(
                "{}: the content is a HAR document (har) but the name says GoReplay records (gor)",
                gzipped_named_gor.display()
            )],
        ),
        (
            vec![&notes],
            vec![
                format!("{}: cannot tell the capture format: expected", notes.display()),
                "pass --from gor|har|pcap".into(),
            ],
        ),
        (
            vec![&unknown_gz],
            vec![format!("{}: cannot tell the capture format", unknown_gz.display())],
        ),
        (
            vec![&har, &own],
            vec![
                format!("{} is a HAR document (har) but ", har.display()),
                "own_traffic.pcap is a pcap/pcapng capture (pcap): one import reads one format".into(),
                "pass --from gor|har|pcap".into(),
            ],
        ),
    ];
    for (inputs, wants) in cases {
        let out = d.join("out.jsonl");
        let o = import_inferred(&inputs, &out);
        assert_eq!(o.status.code(), Some(2), "{inputs:?}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("shadowdiff: error: "), "{err}");
        for want in wants {
            assert!(err.contains(&want), "want {want:?} in\n{err}");
        }
        assert!(!out.exists() && !d.join("out.jsonl.partial").exists());
    }

    // --from still wins over the name.
    let out = d.join("forced.jsonl");
    let o = shadowdiff(&[
        "import",
        "--from",
        "pcap",
        named_har.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(ids_in(&out).len(), 2);
}

#[test]
fn damage_part_way_through_a_file_keeps_every_good_exchange_and_is_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let own = std::fs::read(local("own_traffic.pcap")).unwrap();
    let last_record = {
        let mut at = 24;
        loop {
            let incl = u32::from_le_bytes(own[at + 8..at + 12].try_into().unwrap()) as usize;
            if at + 16 + incl >= own.len() {
                break at;
            }
            at += 16 + incl;
        }
    };
    let mut bad_length = own.clone();
    bad_length[last_record + 8..last_record + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let own_gz = gzip(&own);
    let mut gor = String::new();
    for i in 0..400 {
        gor.push_str(&format!(
            "1 r{i} {}\nGET /item/{i} HTTP/1.1\r\nHost: shop\r\n\r\n\n🐵🙈🙉\n\
             2 r{i} {} 1000\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\n🐵🙈🙉\n",
            1_000_000 * i,
            1_000_000 * i + 500
        ));
    }
    let gor_gz = gzip(gor.as_bytes());
    let har = std::fs::read(local("har_firefox111_mitmproxy-testdata.har")).unwrap();
    let bad_meta = "1 a 1000\nGET /a HTTP/1.1\r\n\r\n\n🐵🙈🙉\n\
                    XX\nHTTP/1.1 200 OK\r\n\r\n\n🐵🙈🙉\n\
                    1 b 3000\nGET /b HTTP/1.1\r\n\r\n\n🐵🙈🙉\n\
                    2 b 4000 1000\nHTTP/1.1 204 No Content\r\n\r\n\n🐵🙈🙉\n";
    // A request line httparse takes but no request target form allows: written, it would
    // make the recording unreadable.
    let bad_target = "1 a 1000\nGET /a HTTP/1.1\r\n\r\n\n🐵🙈🙉\n\
                      1 x 2000\nGET abc HTTP/1.1\r\n\r\n\n🐵🙈🙉\n\
                      1 b 3000\nGET /b HTTP/1.1\r\n\r\n\n🐵🙈🙉\n";
    // (format, file, bytes, exchanges kept at least, exchanges kept at most, skip detail)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, usize, usize, &'a str);
    let cases: Vec<Case> = vec![
        (
            "har",
            "cut.har",
            har[..150_000].to_vec(),
            13,
            13,
            "cut.har:1653: column 20654: the file ends inside the JSON document; expected the rest of the HAR document, reading stopped here",
        ),
        (
            "gor",
            "bad-meta.gor",
            bad_meta.as_bytes().to_vec(),
            2,
            2,
            "bad-meta.gor:6: expected a GoReplay meta line `TYPE ID TIMESTAMP_NS [LATENCY_NS]` (TYPE 1, 2 or 3), found \"XX\"",
        ),
        (
            "gor",
            "bad-target.gor",
            bad_target.as_bytes().to_vec(),
            2,
            2,
            "expected a request target (a path, an absolute URI, `*`, or host:port for CONNECT), found \"abc\"",
        ),
        (
            "gor",
            "cut.gor.gz",
            gor_gz[..gor_gz.len() / 2].to_vec(),
            1,
            399,
            "of its content): incomplete deflate stream; expected a complete gzip stream (the file is cut or corrupt); reading stopped here",
        ),
        (
            "pcap",
            "cut.pcap.gz",
            own_gz[..own_gz.len() - 40].to_vec(),
            6,
            6,
            "cut.pcap.gz: byte ",
        ),
        (
            "pcap",
            "bad-length.pcap",
            bad_length,
            6,
            6,
            "record length 2147483647 is beyond any snap length; expected at most 67108864 (the file is corrupt here); reading stopped here",
        ),
    ];
    for (format, name, bytes, least, most, want) in cases {
        let input = d.join(name);
        std::fs::write(&input, bytes).unwrap();
        let out = d.join(format!("{name}.jsonl"));
        let args = [
            "import",
            "--from",
            format,
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        let o = shadowdiff(&args);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{name}: want {want:?} in\n{err}");
        let ids = ids_in(&out);
        assert!(
            (least..=most).contains(&ids.len()),
            "{name}: {} exchanges\n{err}",
            ids.len()
        );
        // The summary counts exactly what the file holds.
        assert_eq!(written(&err), ids.len() as u64, "{name}: {err}");

        // The damage is a skip, so --strict refuses the import and keeps no file.
        std::fs::remove_file(&out).unwrap();
        let mut strict = args.to_vec();
        strict.push("--strict");
        let o = shadowdiff(&strict);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("wrote    nothing to "), "{name}: {err}");
        assert!(!out.exists(), "{name}");
    }
}

#[test]
fn a_capture_cut_mid_packet_keeps_what_was_whole() {
    let own = std::fs::read(local("own_traffic.pcap")).unwrap();
    // Cut inside the last packet (the final ACK): every exchange is already complete.
    let cut = &own[..own.len() - 20];
    let mut out = Vec::new();
    let mut r = ImportReport::new("packets");
    let mut p = PcapImporter::new();
    p.read(Path::new("cut.pcap"), cut, &mut out, &mut r)
        .unwrap();
    p.finish(&mut out, &mut r).unwrap();
    assert_eq!(out.len(), 6);
    assert_eq!(
        r.skipped
            .get("last packet cut short (the file ends inside it)"),
        Some(&1)
    );
}

/// Property and fuzz-style tests: any bytes, truncated and corrupted captures give an
/// error or counted skips, never a panic; reordered and duplicated segments change nothing.
mod props {
    use super::*;
    use proptest::prelude::*;

    fn gor_sample() -> Vec<u8> {
        let mut s = String::new();
        for i in 0..6 {
            s.push_str(&format!(
                "1 id{i} {}\nPOST /p/{i} HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\n🐵🙈🙉\n",
                1_000_000 + i
            ));
            s.push_str(&format!(
                "2 id{i} {} 5000\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n\n🐵🙈🙉\n",
                2_000_000 + i
            ));
        }
        s.into_bytes()
    }

    fn gor(bytes: &[u8]) -> Option<usize> {
        let mut out = Vec::new();
        let mut r = ImportReport::new("records");
        let mut g = GorImporter::new();
        g.read(Path::new("p.gor"), bytes, &mut out, &mut r).ok()?;
        g.finish(&mut out, &mut r).ok()?;
        Some(out.len())
    }

    fn har(bytes: &[u8]) -> Option<usize> {
        let mut out = Vec::new();
        let mut r = ImportReport::new("entries");
        HarImporter::new()
            .read(Path::new("p.har"), bytes, &mut out, &mut r)
            .ok()?;
        Some(out.len())
    }

    fn pcap(bytes: &[u8]) -> Option<Vec<Exchange>> {
        let mut out = Vec::new();
        let mut r = ImportReport::new("packets");
        let mut p = PcapImporter::new();
        p.read(Path::new("p.pcap"), bytes, &mut out, &mut r).ok()?;
        p.finish(&mut out, &mut r).ok()?;
        Some(out)
    }

    fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8)]) -> Vec<u8> {
        if !bytes.is_empty() {
            for (i, b) in edits {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
        }
        bytes
    }

    /// Id, URI, request body, and status and body of the response.
    type Content = (String, String, Vec<u8>, Option<(u16, Vec<u8>)>);

    /// What must not change when segments arrive in another order or twice.
    fn content(out: &[Exchange]) -> Vec<Content> {
        out.iter()
            .map(|e| {
                (
                    e.id.clone(),
                    e.request.uri.clone(),
                    e.request.body.to_vec(),
                    e.response.as_ref().map(|r| (r.status, r.body.to_vec())),
                )
            })
            .collect()
    }

    /// Packet records of a little-endian classic pcap.
    fn records(pcap: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut recs = Vec::new();
        let mut at = 24;
        while at + 16 <= pcap.len() {
            let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
            recs.push(pcap[at..at + 16 + incl].to_vec());
            at += 16 + incl;
        }
        (pcap[..24].to_vec(), recs)
    }

    /// For a data segment (payload, no SYN/FIN/RST): its connection's port pair.
    fn data_conn(rec: &[u8]) -> Option<(u16, u16)> {
        let p = etherparse::SlicedPacket::from_ethernet(&rec[16..]).ok()?;
        match p.transport? {
            etherparse::TransportSlice::Tcp(t)
                if !t.payload().is_empty() && !t.syn() && !t.fin() && !t.rst() =>
            {
                let (a, b) = (t.source_port(), t.destination_port());
                Some((a.min(b), a.max(b)))
            }
            _ => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: shadowdiff::fuzz_cases(48), ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = gor(&bytes);
            let _ = har(&bytes);
            let _ = pcap(&bytes);
            // Behind valid pcap and pcapng headers, so the record parsers see them too.
            let mut p = std::fs::read(local("own_traffic.pcap")).unwrap()[..24].to_vec();
            p.extend_from_slice(&bytes);
            let _ = pcap(&p);
            let mut ng = std::fs::read(local("pcapng_http11_head-301.pcapng")).unwrap();
            ng.truncate(ng.len().min(200));
            ng.extend_from_slice(&bytes);
            let _ = pcap(&ng);
        }

        #[test]
        fn truncated_inputs_never_panic(cut in any::<prop::sample::Index>()) {
            let g = gor_sample();
            let n = gor(&g[..cut.index(g.len() + 1)]);
            prop_assert!(n.is_none_or(|n| n <= 6));
            let h = std::fs::read(local("har_mitmproxy-export_successful-log.har")).unwrap();
            let _ = har(&h[..cut.index(h.len() + 1)]);
            let own = std::fs::read(local("own_traffic.pcap")).unwrap();
            let out = pcap(&own[..cut.index(own.len() + 1)]);
            // A cut capture loses exchanges but never invents or mangles one.
            if let Some(out) = out {
                let full = content(&pcap(&own).unwrap());
                for e in content(&out) {
                    let same = full.iter().find(|f| f.0 == e.0).unwrap();
                    prop_assert_eq!(&same.1, &e.1);
                    prop_assert_eq!(&same.2, &e.2);
                    if e.3.is_some() {
                        prop_assert_eq!(&same.3, &e.3);
                    }
                }
            }
            let ng = std::fs::read(local("pcapng_http11_head-301.pcapng")).unwrap();
            let _ = pcap(&ng[..cut.index(ng.len() + 1)]);
        }

        #[test]
        fn corrupted_inputs_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12)) {
            let _ = gor(&mutate(gor_sample(), &edits));
            let _ = har(&mutate(std::fs::read(local("har_chrome-webinspector_mitmproxy-testdata.har")).unwrap(), &edits));
            let _ = pcap(&mutate(std::fs::read(local("own_traffic.pcap")).unwrap(), &edits));
            let _ = pcap(&mutate(std::fs::read(local("pcapng_http11_head-301.pcapng")).unwrap(), &edits));
            let _ = pcap(&mutate(std::fs::read(local("pcap_http11_keepalive-2req_gzip.pcap")).unwrap(), &edits));
        }

        #[test]
        fn reordered_and_duplicated_segments_import_the_same(
            swaps in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..12),
            dups in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..6),
        ) {
            let own = std::fs::read(local("own_traffic.pcap")).unwrap();
            let expected = content(&pcap(&own).unwrap());
            let (head, mut recs) = records(&own);
            let data: Vec<usize> = (0..recs.len()).filter(|&i| data_conn(&recs[i]).is_some()).collect();
            for (a, b) in &swaps {
                let i = data[a.index(data.len())];
                let conn = data_conn(&recs[i]);
                let same: Vec<usize> = data.iter().copied().filter(|&j| data_conn(&recs[j]) == conn).collect();
                let j = same[b.index(same.len())];
                recs.swap(i, j);
            }
            for (a, b) in &dups {
                let data: Vec<usize> = (0..recs.len()).filter(|&i| data_conn(&recs[i]).is_some()).collect();
                let i = data[a.index(data.len())];
                let at = i + 1 + b.index(recs.len() - i);
                let copy = recs[i].clone();
                recs.insert(at, copy);
            }
            let mut bytes = head;
            for r in &recs {
                bytes.extend_from_slice(r);
            }
            prop_assert_eq!(content(&pcap(&bytes).unwrap()), expected);
        }
    }
}

/// serde_json holds a whole string before anything can cut it: one 600 MB `content.text`
/// (600 KB gzipped) took about 2.4 times that and aborted at a 1 GB allocation. The body is
/// cut while it is read, the entry after it is kept.
#[test]
fn a_600_mb_har_body_is_cut_while_reading_and_the_next_entry_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("huge-body.har.gz");
    let out = dir.path().join("out.jsonl");
    // Gzip members one after the other are one gzip stream: the same 1 MiB member 600 times
    // makes the body without building it.
    let chunk = gzip(&vec![b'a'; 1 << 20]);
    let mut file = gzip(
        br#"{"log":{"version":"1.2","entries":[{"startedDateTime":"2023-07-13T12:32:32.676Z","request":{"method":"GET","url":"https://a/big"},"response":{"status":200,"content":{"mimeType":"text/plain","text":""#,
    );
    for _ in 0..600 {
        file.extend_from_slice(&chunk);
    }
    file.extend(gzip(
        br#""}}},{"startedDateTime":"2023-07-13T12:32:33.676Z","request":{"method":"GET","url":"https://a/small"},"response":{"status":200,"content":{"text":"ok"}}}]}}"#,
    ));
    std::fs::write(&input, file).unwrap();
    let Some(o) = shadowdiff_limited(&[
        "import",
        "--from",
        "har",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]) else {
        return;
    };
    assert_clean_exit_naming(&o, input.to_str().unwrap());
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("body longer than 64 MiB (written with a truncated prefix)")
            && err.contains("huge-body.har.gz: entry 1: response body"),
        "{err}"
    );
    let got: Vec<_> = shadowdiff::recording::RecordingReader::open(&[out], Default::default())
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    let big = got[0].response.as_ref().unwrap();
    assert!(big.body_truncated);
    assert_eq!(big.body.len(), shadowdiff::recording::import::MAX_BODY);
    assert!(big.body.iter().all(|&b| b == b'a'));
    let small = got[1].response.as_ref().unwrap();
    assert_eq!((&small.body[..], small.body_truncated), (&b"ok"[..], false));
}

/// The bytes a real TLS session puts on the wire, each flight as (from the client, bytes):
/// a rustls client and server, in memory, completing a handshake and carrying one HTTP/1.1
/// request and its answer.
fn tls_session_flights() -> Vec<(bool, Vec<u8>)> {
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::tap_tls::TestCa::new(dir.path(), "pcap");
    let (cert, key, _) = ca.server("server");
    let server_config = Arc::new(shadowdiff::tap::tls::server_config(&cert, &key).unwrap());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(ca.client_config(&[b"http/1.1"]), name).unwrap();
    let mut server = rustls::ServerConnection::new(server_config).unwrap();
    client
        .writer()
        .write_all(b"GET /secret HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut flights = Vec::new();
    let mut answered = false;
    for _ in 0..20 {
        let mut bytes = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut bytes).unwrap();
        }
        if !bytes.is_empty() {
            server.read_tls(&mut &bytes[..]).unwrap();
            server.process_new_packets().unwrap();
            flights.push((true, bytes));
        }
        let mut request = Vec::new();
        let _ = server.reader().read_to_end(&mut request);
        if !answered && !request.is_empty() {
            server
                .writer()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            answered = true;
        }
        let mut bytes = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut bytes).unwrap();
        }
        if !bytes.is_empty() {
            client.read_tls(&mut &bytes[..]).unwrap();
            client.process_new_packets().unwrap();
            flights.push((false, bytes));
        }
        let mut answer = Vec::new();
        let _ = client.reader().read_to_end(&mut answer);
        if answer.ends_with(b"ok") {
            return flights;
        }
    }
    panic!("the in-memory TLS session did not complete");
}

/// Ethernet frames of one TCP connection from `port` to `to`: the three-way handshake,
/// `flights` in order, and both FINs.
fn tcp_conversation(port: u16, to: u16, flights: &[(bool, Vec<u8>)]) -> Vec<Vec<u8>> {
    let (mut c, mut s) = (1000u32, 9000u32);
    let frame = |from_client: bool, seq: u32, ack: u32, syn: bool, fin: bool, data: &[u8]| {
        let (src, dst, sp, dp) = if from_client {
            ([10, 0, 0, 1], [10, 0, 0, 2], port, to)
        } else {
            ([10, 0, 0, 2], [10, 0, 0, 1], to, port)
        };
        let mut b = etherparse::PacketBuilder::ethernet2([2; 6], [2; 6])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 65535);
        if syn {
            b = b.syn();
        }
        if fin {
            b = b.fin();
        }
        if !(syn && from_client) {
            b = b.ack(ack);
        }
        let mut out = Vec::new();
        b.write(&mut out, data).unwrap();
        out
    };
    let mut frames = vec![
        frame(true, c, 0, true, false, &[]),
        frame(false, s, c + 1, true, false, &[]),
    ];
    c += 1;
    s += 1;
    frames.push(frame(true, c, s, false, false, &[]));
    for (from_client, data) in flights {
        if *from_client {
            frames.push(frame(true, c, s, false, false, data));
            c += data.len() as u32;
        } else {
            frames.push(frame(false, s, c, false, false, data));
            s += data.len() as u32;
        }
    }
    frames.push(frame(true, c, s, false, true, &[]));
    frames.push(frame(false, s, c + 1, false, true, &[]));
    frames
}

/// A capture holding a real TLS session beside a plain HTTP exchange: the plain one is
/// written, the TLS stream is counted under a reason of its own that says it cannot be
/// read from the wire and what to do instead (never guessed at as garbage, never a
/// crash), and `--strict` refuses the capture for it.
#[test]
fn a_tls_session_in_a_capture_is_counted_and_said_not_guessed() {
    let tls = tls_session_flights();
    assert_eq!(&tls[0].1[..2], [0x16, 0x03]);
    let plain = vec![
        (true, b"GET /open HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        (
            false,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
    ];
    let mut frames = tcp_conversation(40000, 443, &tls);
    frames.extend(tcp_conversation(40001, 80, &plain));
    let stamped: Vec<(u32, u32, Vec<u8>)> = frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| (1_800_000_000, i as u32 * 100, f))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mixed.pcap");
    std::fs::write(&pcap, classic_pcap(1, false, false, &stamped)).unwrap();

    let (out, r) = run_import(ImportFormat::Pcap, std::slice::from_ref(&pcap));
    assert_eq!(out.len(), 1, "{r:?}");
    assert_eq!(out[0].request.uri, "/open");
    let tls_reason = r
        .skipped
        .iter()
        .find(|(k, _)| k.starts_with("TCP streams that are TLS"))
        .unwrap_or_else(|| panic!("no TLS count in {r:?}"));
    assert_eq!(*tls_reason.1, 1);
    assert_eq!(r.skipped_total(), 1, "{r:?}");

    let rec = dir.path().join("out.jsonl");
    let o = shadowdiff(&[
        "import",
        "--from",
        "pcap",
        pcap.to_str().unwrap(),
        "--out",
        rec.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("TCP streams that are TLS"), "{err}");
    assert!(err.contains("cannot be read from the wire"), "{err}");
    assert!(!String::from_utf8_lossy(&std::fs::read(&rec).unwrap()).contains("secret"));
    let strict = dir.path().join("strict.jsonl");
    let o = shadowdiff(&[
        "import",
        "--from",
        "pcap",
        pcap.to_str().unwrap(),
        "--out",
        strict.to_str().unwrap(),
        "--strict",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

/// The lines of a recording file in the order they were written.
fn in_file_order(path: &Path) -> Vec<Exchange> {
    let mut r = shadowdiff::recording::FileReader::open(path, Default::default()).unwrap();
    let mut v = Vec::new();
    while let Some(e) = r.next_exchange().unwrap() {
        v.push(e);
    }
    v
}

/// A slow request that began first and was answered last, with five fast ones on other
/// connections in between and one more after it: the recording holds the slow one first and every line in order
/// of its request's capture time. When the slow one took longer than the 60 s the order
/// waits for, the others are written without it and the summary counts the one line that
/// comes out of order.
#[test]
fn a_pcap_import_writes_exchanges_in_capture_order() {
    let get = |path: &str| {
        (
            true,
            format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(),
        )
    };
    let ok = (
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    );
    let slow = tcp_conversation(40000, 80, &[get("/slow"), ok.clone()]);
    // SYN, SYN-ACK, ACK and the request go first; the answer and the FINs last.
    let (slow_start, slow_end) = slow.split_at(4);
    let dir = tempfile::tempdir().unwrap();
    for (name, gap_s, out_of_order) in [("short", 1u32, 0), ("long", 61, 1)] {
        let mut frames: Vec<(u32, u32, Vec<u8>)> = Vec::new();
        let at = |frames: &mut Vec<_>, sec: u32, f: Vec<u8>| {
            let usec = frames.len() as u32 * 100;
            frames.push((sec, usec, f));
        };
        for f in slow_start {
            at(&mut frames, 1_800_000_000, f.clone());
        }
        for i in 1..=5u16 {
            for f in tcp_conversation(40000 + i, 80, &[get(&format!("/fast{i}")), ok.clone()]) {
                at(&mut frames, 1_800_000_000, f);
            }
        }
        // One more fast exchange once the gap has passed, then the slow answer.
        for f in tcp_conversation(40006, 80, &[get("/fast6"), ok.clone()]) {
            at(&mut frames, 1_800_000_000 + gap_s, f);
        }
        for f in slow_end {
            at(&mut frames, 1_800_000_000 + gap_s, f.clone());
        }
        let pcap = dir.path().join(format!("{name}.pcap"));
        std::fs::write(&pcap, classic_pcap(1, false, false, &frames)).unwrap();
        let rec = dir.path().join(format!("{name}.jsonl"));
        let o = shadowdiff(&[
            "import",
            "--from",
            "pcap",
            pcap.to_str().unwrap(),
            "--out",
            rec.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let lines = in_file_order(&rec);
        let uris: Vec<&str> = lines.iter().map(|e| e.request.uri.as_str()).collect();
        if out_of_order == 0 {
            assert_eq!(
                uris,
                ["/slow", "/fast1", "/fast2", "/fast3", "/fast4", "/fast5", "/fast6"]
            );
            assert!(lines.windows(2).all(|w| w[0].ts_us <= w[1].ts_us));
            assert!(!err.contains("out of capture order"), "{err}");
        } else {
            assert_eq!(
                uris,
                ["/fast1", "/fast2", "/fast3", "/fast4", "/fast5", "/fast6", "/slow"]
            );
            let note = err
                .lines()
                .find(|l| l.contains("written out of capture order"))
                .unwrap_or_else(|| panic!("no out-of-order note: {err}"));
            assert_eq!(note.split_whitespace().next(), Some("1"), "{note}");
        }
        assert!(lines.iter().all(|e| e.response.is_some()));
    }
}
