//! Benchmarks the recording format (write and read, plain and zstd, in MB/s of the plain
//! JSON Lines), the tap's recorder thread (exchanges per second from queue to file), and
//! interface-key extraction.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shadowdiff::exchange::{Exchange, Request, Response};
use shadowdiff::interface::{interface_of, InterfaceKey, Keyer};
use shadowdiff::recording::format::exchange_to_line;
use shadowdiff::recording::{ReadOptions, RecordingHeader, RecordingReader, RecordingWriter};
use shadowdiff::tap::heads::RawHeads;
use shadowdiff::tap::recorder::{Captured, Recorder, RecorderConfig};
use shadowdiff::tap::redact::Redactor;
use std::path::Path;
use std::sync::atomic::Ordering;

fn exchange(i: u64) -> Exchange {
    let body = format!(
        r#"{{"id":{i},"name":"user {i}","email":"user{i}@example.com","tags":["a","b"],"score":{}.5}}"#,
        i % 997
    );
    Exchange {
        id: format!("bench-{i:08}"),
        ts_us: 1_793_000_000_000_000 + i as i64 * 100,
        interface: None,
        tenant: None,
        request: Request {
            method: "GET".into(),
            uri: format!("/api/users/{}/orders?page={}", i % 10_007, i % 7),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("host".into(), "shop.example".into()),
                ("user-agent".into(), "bench/1.0".into()),
                ("accept".into(), "application/json".into()),
                ("x-request-id".into(), format!("{i:016x}")),
            ],
            ..Default::default()
        },
        response: Some(Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), body.len().to_string()),
            ],
            body: body.into(),
            ..Default::default()
        }),
        latency_us: Some(1200),
    }
}

const N: u64 = 20_000;

fn write_file(path: &Path, items: &[Exchange]) {
    let mut w = RecordingWriter::create(path, &RecordingHeader::new("bench")).unwrap();
    for e in items {
        w.write(e).unwrap();
    }
    w.finish().unwrap();
}

fn bench_recording(c: &mut Criterion) {
    let items: Vec<Exchange> = (0..N).map(exchange).collect();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("b.jsonl");
    write_file(&plain, &items);
    let bytes = std::fs::metadata(&plain).unwrap().len();

    let mut g = c.benchmark_group("recording");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    // The lines alone, without the file: what the tap's recorder pays per exchange kept.
    g.bench_function("lines", |b| {
        let mut line = Vec::with_capacity(4096);
        b.iter(|| {
            for e in &items {
                line.clear();
                exchange_to_line(e, &mut line);
                black_box(&line);
            }
        })
    });
    for name in ["b.jsonl", "b.jsonl.zst"] {
        let path = dir.path().join(format!("w-{name}"));
        g.bench_function(format!("write {name}"), |b| {
            b.iter(|| write_file(&path, &items))
        });
        let path = dir.path().join(name);
        write_file(&path, &items);
        g.bench_function(format!("read {name}"), |b| {
            b.iter(|| {
                let r = RecordingReader::open(std::slice::from_ref(&path), ReadOptions::default())
                    .unwrap();
                let mut n = 0u64;
                for e in r {
                    black_box(e.unwrap());
                    n += 1;
                }
                assert_eq!(n, N);
            })
        });
    }
    g.finish();
}

/// An exchange as the tap's own HTTP/1.1 path hands it to the recorder: heads as bytes.
fn tap_exchange(i: u64) -> Captured {
    let body = format!(r#"{{"id":{i},"name":"widget","price":12.5,"tags":["a","b"]}}"#);
    let request = format!(
        "GET /api/users/{}/orders?page={} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench/1.0\r\n\
         Accept: application/json\r\nX-Request-Id: {i:016x}\r\n\r\n",
        i % 10_007,
        i % 7
    );
    let response = format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 27 Nov 2026 16:42:47 GMT\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        body.len()
    );
    Captured {
        exchange: Exchange {
            id: format!("tap-{i:08}"),
            ts_us: 1_793_000_000_000_000 + i as i64 * 100,
            interface: None,
            tenant: None,
            request: Request::default(),
            response: Some(Response {
                status: 200,
                body: body.into(),
                ..Default::default()
            }),
            latency_us: Some(310),
        },
        sampled: true,
        heads: Some(RawHeads {
            request: Some(request.into()),
            response: Some(response.into()),
        }),
    }
}

/// The tap's recorder thread from queue to file: parsing heads, the per-interface minimum,
/// redaction and the line. Its CPU comes out of what the proxy and its neighbours get.
fn bench_recorder(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("tap recorder");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    let mut run = 0u32;
    g.bench_function("raw heads to file", |b| {
        b.iter_batched(
            || (0..N).map(tap_exchange).collect::<Vec<_>>(),
            |items| {
                run += 1;
                let cfg = RecorderConfig {
                    out: dir.path().join(format!("tap-{run}.jsonl")),
                    rotate_size: None,
                    rotate_interval: None,
                    min_per_interface: 1,
                    queue_size: N as usize,
                    queue_bytes: u64::MAX,
                    interface_key: InterfaceKey::Default,
                    write_delay: None,
                    source: "tap",
                };
                let rec = Recorder::start(cfg, Redactor::new(&[], &[]).unwrap()).unwrap();
                let handle = rec.handle();
                for c in items {
                    handle.submit(c).unwrap();
                }
                assert_eq!(rec.close().len(), 1);
                assert_eq!(handle.stats().recorded.load(Ordering::Relaxed), N);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn bench_interface(c: &mut Criterion) {
    let items: Vec<Exchange> = (0..1000).map(exchange).collect();
    let mut g = c.benchmark_group("interface key");
    g.throughput(Throughput::Elements(items.len() as u64));
    g.bench_function("default", |b| {
        b.iter(|| {
            for e in &items {
                black_box(interface_of(&e.request, &InterfaceKey::Default));
            }
        })
    });
    let keyer = Keyer {
        key: InterfaceKey::Default,
        templates: vec!["/api/users/{id}/orders".parse().unwrap()],
    };
    g.bench_function("template", |b| {
        b.iter(|| {
            for e in &items {
                black_box(keyer.key_of(&e.request));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_recording, bench_recorder, bench_interface);
criterion_main!(benches);
