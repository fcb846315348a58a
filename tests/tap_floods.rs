//! HTTP/2 floods against the tap from a raw frame-writing client: rapid reset (streams
//! opened and cancelled at once), a header block that never ends (CONTINUATION frames
//! without end), and a flood of SETTINGS and PINGs. Each must end in the tap closing that
//! connection, with what reached production bounded, and the next client served.

use crate::tap::{
    h2_frame, hpack_get, read_h2_frame, recording_tap, TapProc, H2_END_HEADERS as END_HEADERS,
    H2_END_STREAM as END_STREAM, H2_HEADERS as HEADERS, H2_PREFACE as PREFACE,
    H2_RST_STREAM as RST_STREAM, H2_SETTINGS as SETTINGS,
};
use crate::util::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

/// Production that counts the requests reaching it.
async fn counting_production() -> (TestServer, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let up = TestServer::start(move |_| {
        s.fetch_add(1, Ordering::SeqCst);
        Answer::json(200, "{}")
    })
    .await;
    (up, seen)
}

/// Writes `frames` until the tap stops taking them; then reads until it closes. Returns
/// whether the tap sent GOAWAY, and whether it stopped the flood (a write failed or it
/// closed) before the client had written everything.
async fn flood(tap: &TapProc, frames: impl Iterator<Item = Vec<u8>>) -> (bool, bool) {
    let mut s = TcpStream::connect(tap.addr).await.unwrap();
    let mut start = PREFACE.to_vec();
    start.extend(h2_frame(SETTINGS, 0, 0, &[]));
    s.write_all(&start).await.unwrap();
    let mut cut_short = false;
    let mut batch = Vec::new();
    for f in frames {
        batch.extend(f);
        if batch.len() >= 64 << 10 {
            if s.write_all(&batch).await.is_err() {
                cut_short = true;
                break;
            }
            batch.clear();
        }
    }
    if !cut_short && !batch.is_empty() && s.write_all(&batch).await.is_err() {
        cut_short = true;
    }
    let mut goaway = false;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some((kind, _, _, _)) = read_h2_frame(&mut s).await {
            goaway |= kind == GOAWAY;
        }
    })
    .await;
    assert!(ended.is_ok(), "the tap kept the flooding connection open");
    (goaway, cut_short || goaway)
}

async fn still_serves(tap: &TapProc) {
    let mut s = TcpStream::connect(tap.addr).await.unwrap();
    s.write_all(b"GET /after HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the next client got no answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "the next client is served: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// Rapid reset (CVE-2023-44487): 20,000 streams each opened and cancelled at once. The
/// tap's HTTP/2 server stops the connection with GOAWAY instead of starting them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_ends_the_connection_and_production_sees_a_bounded_share() {
    let (up, seen) = counting_production().await;
    let (tap, _out, _dir) = recording_tap(&up.url(), &[]);
    let block = hpack_get("shop", "/r");
    let streams = 20_000u32;
    let frames = (0..streams).map(|i| {
        let id = 2 * i + 1;
        let mut f = h2_frame(HEADERS, END_HEADERS | END_STREAM, id, &block);
        f.extend(h2_frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        f
    });
    let (goaway, stopped) = flood(&tap, frames).await;
    assert!(goaway, "no GOAWAY for a rapid reset");
    assert!(stopped);
    let reached = seen.load(Ordering::SeqCst);
    assert!(
        reached < u64::from(streams) / 10,
        "{reached} of {streams} reset streams reached production"
    );
    still_serves(&tap).await;
}

/// A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames
/// of 16 KiB for 8 MiB. The tap ends the connection once the block passes
/// `--max-header-bytes` instead of buffering it all, and nothing reaches production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_that_never_ends_is_cut_off_and_nothing_is_forwarded() {
    let (up, seen) = counting_production().await;
    let (tap, _out, _dir) = recording_tap(&up.url(), &["--max-header-bytes", "64KiB"]);
    let mut first = hpack_get("shop", "/c");
    // A literal header without indexing, new name: `x-pad` and 100 bytes, repeated.
    let pad = |n: usize| {
        let mut b = Vec::new();
        for _ in 0..n {
            b.extend([0x00, 5]);
            b.extend_from_slice(b"x-pad");
            b.extend([100]);
            b.extend([b'a'; 100]);
        }
        b
    };
    first.extend(pad(10));
    let chunk = pad(150);
    let frames = std::iter::once(h2_frame(HEADERS, END_STREAM, 1, &first))
        .chain((0..512).map(move |_| h2_frame(CONTINUATION, 0, 1, &chunk)));
    let (_goaway, stopped) = flood(&tap, frames).await;
    assert!(stopped, "the tap took 8 MiB of one header block");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    still_serves(&tap).await;
}

/// A flood of PINGs and SETTINGS frames that the client never reads the acknowledgements
/// of: the tap does not queue answers without bound; it ends the connection or stops
/// reading it, and serves the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_and_settings_flood_is_bounded() {
    let (up, _seen) = counting_production().await;
    let (tap, _out, _dir) = recording_tap(&up.url(), &[]);
    let before = tap.rss_kib();
    let mut s = TcpStream::connect(tap.addr).await.unwrap();
    let mut start = PREFACE.to_vec();
    start.extend(h2_frame(SETTINGS, 0, 0, &[]));
    s.write_all(&start).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..200_000u64 {
        batch.extend(h2_frame(PING, 0, 0, &i.to_be_bytes()));
        batch.extend(h2_frame(SETTINGS, 0, 0, &[]));
    }
    // Written without reading a single acknowledgement; the tap either closes or stops
    // reading (the write then stalls): both bound what it holds for this client.
    let _ = tokio::time::timeout(Duration::from_secs(10), s.write_all(&batch)).await;
    // 400,000 frames were offered (7 MiB); their acknowledgements, had they been queued,
    // would be as many again.
    let grown = tap.rss_kib().saturating_sub(before);
    assert!(grown < 32 << 10, "the tap grew by {grown} KiB");
    still_serves(&tap).await;
    drop(s);
}
