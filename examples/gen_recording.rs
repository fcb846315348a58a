//! Writes a synthetic recording of N GET exchanges over a dozen interfaces, for the replay
//! benchmarks: `cargo run --release --example gen_recording -- 1000000 big.jsonl.zst`.

use shadowdiff::exchange::{Exchange, Request};
use shadowdiff::recording::{RecordingHeader, RecordingWriter};
use std::path::PathBuf;

const PATHS: [&str; 12] = [
    "/api/users/{}",
    "/api/users/{}/orders",
    "/api/products/{}",
    "/api/products/{}/reviews",
    "/api/search?q=item{}",
    "/api/inventory/{}",
    "/api/stores/{}",
    "/api/recommendations/{}",
    "/api/config/features",
    "/api/exchange-rates",
    "/api/cart/{}",
    "/api/health",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().ok_or("usage: gen_recording N OUT")?.parse()?;
    let out = PathBuf::from(args.next().ok_or("usage: gen_recording N OUT")?);
    let mut w = RecordingWriter::create(&out, &RecordingHeader::new("bench"))?;
    let start_us = 1_793_000_000_000_000i64;
    for i in 0..n {
        let tpl = PATHS[(i % PATHS.len() as u64) as usize];
        let uri = tpl.replace("{}", &(i % 10_007).to_string());
        let ex = Exchange {
            id: format!("bench-{i:08}"),
            ts_us: start_us + i as i64 * 100,
            interface: None,
            tenant: None,
            request: Request {
                method: "GET".into(),
                uri,
                version: "HTTP/1.1".into(),
                headers: vec![
                    ("host".into(), "shop.example".into()),
                    ("user-agent".into(), "bench/1.0".into()),
                    ("accept".into(), "application/json".into()),
                ],
                ..Default::default()
            },
            response: None,
            latency_us: Some(1000),
        };
        w.write(&ex)?;
    }
    let path = w.finish()?;
    eprintln!("wrote {n} exchanges to {}", path.display());
    Ok(())
}
