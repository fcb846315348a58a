//! Writes `recordings/demo.jsonl`, the recording `shadowdiff demo` replays: 560 exchanges
//! of ten minutes of shop traffic in recording format v1, with the responses the V1 demo
//! gateway gives. Seeded, so every run writes the same bytes.
//!
//! Usage: `cargo run --example make_demo_recording [OUTPUT]` (default: the bundled file).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use shadowdiff::demo::gateway::{answer, interface_of, rfc3339_micros, GatewayVersion, Stamp};
use std::collections::BTreeMap;
use std::error::Error;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::SystemTime;
use time::OffsetDateTime;

/// Fixed so the bundled file only changes when this program or the gateway does.
const SEED: u64 = 0x5AD0_D1FF_2026_1102;

/// The start of the capture; also the header's `created`.
const START: OffsetDateTime = time::macros::datetime!(2026-11-02 09:00:00 UTC);

/// What kind of request to make.
#[derive(Clone, Copy, Debug)]
enum Kind {
    User,
    UserOrders,
    Products,
    Product,
    ProductReviews,
    Search,
    Cart,
    Inventory,
    Recommendations,
    Features,
    ExchangeRates,
    Store,
    AnnualExport,
    CreateOrder,
}

/// How many exchanges of each kind: frequent reads dominate, the annual export appears once
/// (the interface a month of monitoring can miss), orders are the side-effecting writes.
const PLAN: [(Kind, usize); 14] = [
    (Kind::Product, 95),
    (Kind::Search, 70),
    (Kind::User, 60),
    (Kind::Products, 55),
    (Kind::UserOrders, 45),
    (Kind::Cart, 45),
    (Kind::ProductReviews, 40),
    (Kind::Recommendations, 40),
    (Kind::Inventory, 35),
    (Kind::Store, 25),
    (Kind::ExchangeRates, 22),
    (Kind::Features, 15),
    (Kind::AnnualExport, 1),
    (Kind::CreateOrder, 12),
];

const USER_AGENTS: [&str; 4] = [
    "ShopApp/5.12.0 (iOS 19.1)",
    "ShopApp/5.11.3 (Android 16)",
    "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/144.0",
    "shop-backoffice/2.4 (+https://shop.example/ops)",
];

const SEARCHES: [&str; 12] = [
    "kettle",
    "lamp",
    "merino+scarf",
    "oak%20stool",
    "tent",
    "copper+mug",
    "backpack",
    "torch",
    "notebook",
    "bottle",
    "wool",
    "walnut",
];

#[derive(Serialize)]
struct Header {
    shadowdiff_recording: u32,
    created: &'static str,
    source: &'static str,
}

#[derive(Serialize)]
struct Line {
    id: String,
    ts: String,
    request: RecordedRequest,
    response: RecordedResponse,
    latency_us: u64,
}

#[derive(Serialize)]
struct RecordedRequest {
    method: &'static str,
    uri: String,
    version: &'static str,
    headers: Vec<(String, String)>,
    body: String,
    body_encoding: &'static str,
    body_truncated: bool,
}

#[derive(Serialize)]
struct RecordedResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    body_encoding: &'static str,
}

/// A request to record: method, URI, body, and whether it carries a user's credentials.
struct Planned {
    method: &'static str,
    uri: String,
    body: String,
    personal: bool,
    latency_range: (u64, u64),
}

fn uuid(rng: &mut StdRng) -> String {
    let b: [u8; 16] = rng.gen();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    // Version 4, RFC 4122 variant, as real clients generate.
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        8 | (b[8] & 0x3),
        &hex[17..20],
        &hex[20..32]
    )
}

fn plan(kind: Kind, rng: &mut StdRng) -> Planned {
    let get = |uri: String, personal: bool, latency_range: (u64, u64)| Planned {
        method: "GET",
        uri,
        body: String::new(),
        personal,
        latency_range,
    };
    match kind {
        Kind::User => get(
            format!("/api/users/{}", rng.gen_range(1..=5000)),
            true,
            (700, 3_500),
        ),
        Kind::UserOrders => get(
            format!("/api/users/{}/orders", rng.gen_range(1..=5000)),
            true,
            (1_500, 9_000),
        ),
        Kind::Products => {
            let uri = match rng.gen_range(0..4) {
                0 => "/api/products".to_string(),
                1 => format!("/api/products?page={}", rng.gen_range(1..=6)),
                _ => {
                    let cat = ["kitchen", "outdoor", "home", "office", "apparel"];
                    format!(
                        "/api/products?category={}&page={}",
                        cat[rng.gen_range(0..cat.len())],
                        rng.gen_range(1..=2)
                    )
                }
            };
            get(uri, false, (1_200, 6_000))
        }
        Kind::Product => get(
            format!("/api/products/{}", rng.gen_range(1..=800)),
            false,
            (600, 3_000),
        ),
        Kind::ProductReviews => get(
            format!("/api/products/{}/reviews", rng.gen_range(1..=800)),
            false,
            (900, 4_000),
        ),
        Kind::Search => get(
            format!(
                "/api/search?q={}",
                SEARCHES[rng.gen_range(0..SEARCHES.len())]
            ),
            false,
            (2_000, 9_000),
        ),
        Kind::Cart => get(format!("/api/cart/{}", uuid(rng)), true, (800, 4_000)),
        Kind::Inventory => {
            let sku: String = (0..24)
                .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
                .collect();
            get(format!("/api/inventory/{sku}"), false, (700, 3_000))
        }
        Kind::Recommendations => get(
            format!("/api/recommendations/{}", rng.gen_range(1..=5000)),
            true,
            (3_000, 12_000),
        ),
        Kind::Features => get("/api/config/features".into(), false, (300, 1_200)),
        Kind::ExchangeRates => {
            let uri = match rng.gen_range(0..3) {
                0 => "/api/exchange-rates?base=USD".to_string(),
                _ => "/api/exchange-rates".to_string(),
            };
            get(uri, false, (300, 1_500))
        }
        Kind::Store => get(
            format!("/api/stores/{}", rng.gen_range(1..=60)),
            false,
            (500, 2_500),
        ),
        Kind::AnnualExport => get(
            "/api/reports/annual-export?year=2025".into(),
            true,
            (150_000, 400_000),
        ),
        Kind::CreateOrder => {
            let items: Vec<serde_json::Value> = (0..rng.gen_range(1..=3))
                .map(|_| {
                    serde_json::json!({
                        "product_id": rng.gen_range(1..=800),
                        "qty": rng.gen_range(1..=3),
                    })
                })
                .collect();
            let body = serde_json::json!({"user_id": rng.gen_range(1..=5000), "items": items});
            Planned {
                method: "POST",
                uri: "/api/orders".into(),
                body: body.to_string(),
                personal: true,
                latency_range: (8_000, 25_000),
            }
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let out_path = std::env::args_os().nth(1).map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/recordings/demo.jsonl"
            ))
        },
        PathBuf::from,
    );
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut kinds: Vec<Kind> = PLAN
        .iter()
        .flat_map(|(k, n)| std::iter::repeat_n(*k, *n))
        .collect();
    kinds.shuffle(&mut rng);

    let mut out = BufWriter::new(File::create(&out_path)?);
    serde_json::to_writer(
        &mut out,
        &Header {
            shadowdiff_recording: 1,
            created: "2026-11-02T09:00:00Z",
            source: "demo",
        },
    )?;
    out.write_all(b"\n")?;

    let mut ts = START;
    let mut per_interface: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, kind) in kinds.iter().enumerate() {
        // Mean gap ~1.07 s: 560 exchanges span about ten minutes.
        ts += time::Duration::microseconds(rng.gen_range(200_000..=1_940_000));
        let p = plan(*kind, &mut rng);
        let latency_us = rng.gen_range(p.latency_range.0..=p.latency_range.1);
        let served = ts + time::Duration::microseconds(latency_us as i64);
        let stamp = Stamp {
            served_at: served,
            request_id: format!("{:016x}", rng.gen::<u64>()),
        };
        let a = answer(
            GatewayVersion::V1,
            p.method,
            &p.uri,
            p.body.as_bytes(),
            &stamp,
        );
        let response_headers = a.headers(SystemTime::from(served));

        let mut headers = vec![
            ("host".to_string(), "shop.example".to_string()),
            (
                "user-agent".to_string(),
                USER_AGENTS[rng.gen_range(0..USER_AGENTS.len())].to_string(),
            ),
            ("accept".to_string(), "application/json".to_string()),
        ];
        let with_auth = rng.gen_bool(if p.personal { 0.9 } else { 0.15 });
        if with_auth {
            headers.push((
                "authorization".into(),
                format!("redacted:sha256:{:012x}", rng.gen::<u64>() >> 16),
            ));
        }
        if p.method == "POST" {
            headers.push(("content-type".into(), "application/json".into()));
        }

        *per_interface
            .entry(interface_of(GatewayVersion::V1, p.method, &p.uri).unwrap_or("(no route)"))
            .or_default() += 1;
        let line = Line {
            id: format!("demo-{:06}", n + 1),
            ts: rfc3339_micros(ts),
            request: RecordedRequest {
                method: p.method,
                uri: p.uri,
                version: "HTTP/1.1",
                headers,
                body: p.body,
                body_encoding: "utf8",
                body_truncated: false,
            },
            response: RecordedResponse {
                status: a.status,
                headers: response_headers,
                body: a.body,
                body_encoding: "utf8",
            },
            latency_us,
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;

    eprintln!("wrote {} exchanges to {}", kinds.len(), out_path.display());
    for (interface, count) in &per_interface {
        eprintln!("{count:>5}  {interface}");
    }
    Ok(())
}
