//! Benchmarks the per-exchange comparison on JSON bodies of about 1 KB, 64 KB and 1 MB, equal
//! and about 1% different, against the cost of merely parsing both documents; and the same
//! for protobuf bodies (`application/x-protobuf`, decoded without a schema) against the cost
//! of merely decoding both.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};
use shadowdiff::compare::json::diff_json;
use shadowdiff::compare::protobuf;
use shadowdiff::compare::{diff, CompareOptions, Observed};

/// A small deterministic generator, so that every run benchmarks the same documents.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn record(i: u64, rng: &mut Lcg) -> Value {
    json!({
        "id": i,
        "name": format!("user-{i}-{:x}", rng.next()),
        "email": format!("user{i}@example.com"),
        "score": (rng.next() % 100_000) as f64 / 100.0,
        "active": rng.next() % 2 == 0,
        "tags": ["alpha", "beta", format!("t{}", rng.next() % 50)],
        "address": {
            "street": format!("{} Main Street", rng.next() % 1000),
            "zip": format!("{:05}", rng.next() % 100_000),
            "geo": {"lat": (rng.next() % 18_000) as f64 / 100.0 - 90.0,
                    "lon": (rng.next() % 36_000) as f64 / 100.0 - 180.0}
        },
        "created_at": "2023-11-14T22:13:20Z"
    })
}

/// An array of records whose compact form is about `target` bytes.
fn document(target: usize) -> Value {
    let mut rng = Lcg(42);
    let mut items = Vec::new();
    let mut size = 2;
    while size < target {
        let r = record(items.len() as u64, &mut rng);
        size += serde_json::to_vec(&r).map(|v| v.len() + 1).unwrap_or(300);
        items.push(r);
    }
    json!({"count": items.len(), "items": items})
}

/// Changes one field in every hundredth record.
fn perturb(doc: &mut Value) {
    if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
        for (i, item) in items.iter_mut().enumerate().filter(|(i, _)| i % 100 == 0) {
            item["score"] = json!(-(i as f64));
        }
    }
}

fn observed(body: Vec<u8>) -> Observed {
    observed_as(body, "application/json")
}

fn observed_as(body: Vec<u8>, content_type: &str) -> Observed {
    Observed {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body: Bytes::from(body),
        ..Default::default()
    }
}

/// The protobuf counterpart of [`record`]: nested messages, strings, a double, a bool and a
/// repeated field.
#[derive(Clone, PartialEq, prost::Message)]
struct Geo {
    #[prost(double, tag = "1")]
    lat: f64,
    #[prost(double, tag = "2")]
    lon: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Address {
    #[prost(string, tag = "1")]
    street: String,
    #[prost(string, tag = "2")]
    zip: String,
    #[prost(message, optional, tag = "3")]
    geo: Option<Geo>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Record {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    email: String,
    #[prost(double, tag = "4")]
    score: f64,
    #[prost(bool, tag = "5")]
    active: bool,
    #[prost(string, repeated, tag = "6")]
    tags: Vec<String>,
    #[prost(message, optional, tag = "7")]
    address: Option<Address>,
    #[prost(string, tag = "8")]
    created_at: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Page {
    #[prost(uint32, tag = "1")]
    count: u32,
    #[prost(message, repeated, tag = "2")]
    items: Vec<Record>,
}

fn proto_record(i: u64, rng: &mut Lcg) -> Record {
    Record {
        id: i,
        name: format!("user-{i}-{:x}", rng.next()),
        email: format!("user{i}@example.com"),
        score: (rng.next() % 100_000) as f64 / 100.0,
        active: rng.next() % 2 == 0,
        tags: vec![
            "alpha".into(),
            "beta".into(),
            format!("t{}", rng.next() % 50),
        ],
        address: Some(Address {
            street: format!("{} Main Street", rng.next() % 1000),
            zip: format!("{:05}", rng.next() % 100_000),
            geo: Some(Geo {
                lat: (rng.next() % 18_000) as f64 / 100.0 - 90.0,
                lon: (rng.next() % 36_000) as f64 / 100.0 - 180.0,
            }),
        }),
        created_at: "2023-11-14T22:13:20Z".into(),
    }
}

/// A page of records whose encoding is about `target` bytes.
fn proto_page(target: usize) -> Page {
    let mut rng = Lcg(42);
    let mut page = Page::default();
    let mut size = 0;
    while size < target {
        let r = proto_record(page.items.len() as u64, &mut rng);
        size += prost::Message::encoded_len(&r) + 3;
        page.items.push(r);
    }
    page.count = page.items.len() as u32;
    page
}

fn bench_protobuf(c: &mut Criterion) {
    let opts = CompareOptions::default();
    for (label, target) in [("1KB", 1 << 10), ("64KB", 64 << 10), ("1MB", 1 << 20)] {
        let page = proto_page(target);
        let mut changed_page = page.clone();
        for (i, r) in changed_page
            .items
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| i % 100 == 0)
        {
            r.score = -(i as f64);
        }
        let base = prost::Message::encode_to_vec(&page);
        let changed = prost::Message::encode_to_vec(&changed_page);
        let (ob, oc) = (
            observed_as(base.clone(), "application/x-protobuf"),
            observed_as(changed, "application/x-protobuf"),
        );

        let mut group = c.benchmark_group(format!("compare_protobuf/{label}"));
        if target >= 1 << 20 {
            group.sample_size(20);
        }
        group.throughput(Throughput::Bytes(2 * base.len() as u64));
        // Equal encodings are equal bytes, which the comparison answers without decoding;
        // `decode_walk_equal` measures the work the comparison does when the bytes differ but
        // the messages do not (decode both, align repeated fields, walk).
        group.bench_function(BenchmarkId::new("decode_walk_equal", label), |b| {
            b.iter(|| {
                let mut x = protobuf::decode(black_box(&base)).unwrap_or_default();
                let mut y = protobuf::decode(black_box(&base)).unwrap_or_default();
                protobuf::harmonize(&mut x, &mut y);
                let mut out = Vec::new();
                diff_json(&x, &y, &opts, &mut out);
                assert!(out.is_empty());
                out
            })
        });
        group.bench_function(BenchmarkId::new("diff_1pct", label), |b| {
            b.iter(|| {
                let d = diff(black_box(&ob), black_box(&oc), &opts);
                assert!(!d.is_empty());
                d
            })
        });
        group.bench_function(BenchmarkId::new("decode_both", label), |b| {
            b.iter(|| {
                let x = protobuf::decode(black_box(&base));
                let y = protobuf::decode(black_box(&base));
                (x.is_ok(), y.is_ok())
            })
        });
        group.finish();
    }
}

fn bench_compare(c: &mut Criterion) {
    let opts = CompareOptions::default();
    for (label, target) in [("1KB", 1 << 10), ("64KB", 64 << 10), ("1MB", 1 << 20)] {
        let doc = document(target);
        // Same content, different bytes: pretty against compact defeats the raw-bytes fast
        // path, so the full decode-parse-walk is measured.
        let base = observed(serde_json::to_vec_pretty(&doc).unwrap_or_default());
        let equal = observed(serde_json::to_vec(&doc).unwrap_or_default());
        let mut changed_doc = doc.clone();
        perturb(&mut changed_doc);
        let changed = observed(serde_json::to_vec(&changed_doc).unwrap_or_default());

        let mut group = c.benchmark_group(format!("compare/{label}"));
        if target >= 1 << 20 {
            group.sample_size(20);
        }
        let bytes = (base.body.len() + equal.body.len()) as u64;
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(BenchmarkId::new("diff_equal", label), |b| {
            b.iter(|| {
                let d = diff(black_box(&base), black_box(&equal), &opts);
                assert!(d.is_empty());
                d
            })
        });
        group.bench_function(BenchmarkId::new("diff_1pct", label), |b| {
            b.iter(|| {
                let d = diff(black_box(&base), black_box(&changed), &opts);
                assert!(!d.is_empty());
                d
            })
        });
        group.bench_function(BenchmarkId::new("parse_both", label), |b| {
            b.iter(|| {
                let x: Result<Value, _> = serde_json::from_slice(black_box(&base.body));
                let y: Result<Value, _> = serde_json::from_slice(black_box(&equal.body));
                (x.is_ok(), y.is_ok())
            })
        });
        // The structural walk alone, on already parsed documents.
        let parsed = |o: &Observed| serde_json::from_slice::<Value>(&o.body).unwrap_or_default();
        let (pa, pe, pc) = (parsed(&base), parsed(&equal), parsed(&changed));
        group.bench_function(BenchmarkId::new("walk_equal", label), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                diff_json(black_box(&pa), black_box(&pe), &opts, &mut out);
                out
            })
        });
        group.bench_function(BenchmarkId::new("walk_1pct", label), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                diff_json(black_box(&pa), black_box(&pc), &opts, &mut out);
                out
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_compare, bench_protobuf);
criterion_main!(benches);
