//! The demo's shop API gateway, in two versions served over real HTTP: V1 plays the
//! baseline, V2 the candidate. Their answers are computed by one function from the request
//! alone (plus a time stamp and a request id), so the only differences between them are the
//! three planted on purpose:
//!
//! 1. V2 has no routing rule for `GET /api/reports/annual-export` (the rare interface a rule
//!    list built from a month of monitoring forgets) and answers it with the no-route 404.
//! 2. V2 renders `price` in `GET /api/products/{id}` as a decimal string (`"12.50"`) where V1
//!    gives a JSON number (`12.5`), a typical serializer change that breaks clients.
//! 3. V2 answers `GET /api/search` 40 ms later ([`V2_SEARCH_DELAY`]).
//!
//! Every body also carries `served_at` (now) and `request_id` (random), the volatile fields
//! shadowdiff must recognise as noise rather than report.

use crate::hash::fnv1a64 as fnv1a;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How much later V2 answers `GET /api/search` than V1 (planted latency regression).
pub const V2_SEARCH_DELAY: Duration = Duration::from_millis(40);

/// Largest request body the gateway reads; the demo only ever sends small orders.
const MAX_BODY: usize = 1 << 20;

/// Which version of the demo gateway to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayVersion {
    /// The old version: serves every interface; plays the baseline.
    V1,
    /// The new version with the three planted differences; plays the candidate.
    V2,
}

impl GatewayVersion {
    /// `v1` or `v2`.
    pub fn name(self) -> &'static str {
        match self {
            GatewayVersion::V1 => "v1",
            GatewayVersion::V2 => "v2",
        }
    }
}

impl fmt::Display for GatewayVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The volatile part of an answer: when it was served and its request id. Separate from
/// the request so the recording generator can supply fixed values and stay reproducible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Goes into the body's `served_at`.
    pub served_at: OffsetDateTime,
    /// Goes into the body's `request_id` (16 lower-case hex digits).
    pub request_id: String,
}

impl Stamp {
    /// The current time and a fresh random request id, as a live gateway stamps answers.
    pub fn now() -> Stamp {
        Stamp {
            served_at: OffsetDateTime::now_utc(),
            request_id: format!("{:016x}", rand::random::<u64>()),
        }
    }
}

/// Formats a time as RFC 3339 in UTC with exactly six fractional digits
/// (`2026-11-02T09:00:00.123456Z`), the precision recordings use.
pub fn rfc3339_micros(t: OffsetDateTime) -> String {
    crate::recording::format::format_time_us(t)
}

/// One answer of the gateway: status and JSON body text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body (compact, keys sorted).
    pub body: String,
}

impl Answer {
    /// The response headers the gateway sends with this answer, in wire order, with the
    /// `Date` header for time `at`.
    pub fn headers(&self, at: SystemTime) -> Vec<(String, String)> {
        vec![
            ("content-type".into(), "application/json".into()),
            ("date".into(), httpdate::fmt_http_date(at)),
            ("content-length".into(), self.body.len().to_string()),
        ]
    }
}

/// The interfaces the gateway routes, each with the part of the path that varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route<'a> {
    User(&'a str),
    UserOrders(&'a str),
    Products,
    Product(&'a str),
    ProductReviews(&'a str),
    Search,
    Cart(&'a str),
    Inventory(&'a str),
    Recommendations(&'a str),
    Features,
    ExchangeRates,
    Store(&'a str),
    AnnualExport,
    CreateOrder,
}

impl Route<'_> {
    fn template(self) -> &'static str {
        match self {
            Route::User(_) => "GET /api/users/{id}",
            Route::UserOrders(_) => "GET /api/users/{id}/orders",
            Route::Products => "GET /api/products",
            Route::Product(_) => "GET /api/products/{id}",
            Route::ProductReviews(_) => "GET /api/products/{id}/reviews",
            Route::Search => "GET /api/search",
            Route::Cart(_) => "GET /api/cart/{uuid}",
            Route::Inventory(_) => "GET /api/inventory/{sku}",
            Route::Recommendations(_) => "GET /api/recommendations/{id}",
            Route::Features => "GET /api/config/features",
            Route::ExchangeRates => "GET /api/exchange-rates",
            Route::Store(_) => "GET /api/stores/{id}",
            Route::AnnualExport => "GET /api/reports/annual-export",
            Route::CreateOrder => "POST /api/orders",
        }
    }
}

/// The routing table. V2's rule list lacks the annual export: that is planted difference 1.
fn route<'a>(version: GatewayVersion, method: &str, path: &'a str) -> Option<Route<'a>> {
    let rest = path.strip_prefix("/api/")?;
    let segs: Vec<&'a str> = rest.split('/').collect();
    let r = match (method, segs.as_slice()) {
        ("GET", ["users", id]) => Route::User(id),
        ("GET", ["users", id, "orders"]) => Route::UserOrders(id),
        ("GET", ["products"]) => Route::Products,
        ("GET", ["products", id]) => Route::Product(id),
        ("GET", ["products", id, "reviews"]) => Route::ProductReviews(id),
        ("GET", ["search"]) => Route::Search,
        ("GET", ["cart", id]) => Route::Cart(id),
        ("GET", ["inventory", sku]) => Route::Inventory(sku),
        ("GET", ["recommendations", id]) => Route::Recommendations(id),
        ("GET", ["config", "features"]) => Route::Features,
        ("GET", ["exchange-rates"]) => Route::ExchangeRates,
        ("GET", ["stores", id]) => Route::Store(id),
        ("GET", ["reports", "annual-export"]) if version == GatewayVersion::V1 => {
            Route::AnnualExport
        }
        ("POST", ["orders"]) => Route::CreateOrder,
        _ => return None,
    };
    Some(r)
}

/// The interface key (`GET /api/users/{id}`) of the routing rule that serves `method` and
/// `uri` in this version, or `None` when the version has no rule for it.
pub fn interface_of(version: GatewayVersion, method: &str, uri: &str) -> Option<&'static str> {
    let (path, _) = split_uri(uri);
    route(version, method, path).map(Route::template)
}

/// Every interface key this version routes, in routing-table order.
pub fn interfaces(version: GatewayVersion) -> Vec<&'static str> {
    let all = [
        Route::User(""),
        Route::UserOrders(""),
        Route::Products,
        Route::Product(""),
        Route::ProductReviews(""),
        Route::Search,
        Route::Cart(""),
        Route::Inventory(""),
        Route::Recommendations(""),
        Route::Features,
        Route::ExchangeRates,
        Route::Store(""),
        Route::AnnualExport,
        Route::CreateOrder,
    ];
    all.into_iter()
        .filter(|r| version == GatewayVersion::V1 || *r != Route::AnnualExport)
        .map(Route::template)
        .collect()
}

/// How long this version waits before answering, if at all: planted difference 3.
pub fn delay(version: GatewayVersion, method: &str, uri: &str) -> Option<Duration> {
    let (path, _) = split_uri(uri);
    match (version, route(version, method, path)) {
        (GatewayVersion::V2, Some(Route::Search)) => Some(V2_SEARCH_DELAY),
        _ => None,
    }
}

/// Computes the gateway's answer to one request, without any waiting. Equal inputs give
/// equal answers; only `stamp` puts volatile values into the body.
pub fn answer(
    version: GatewayVersion,
    method: &str,
    uri: &str,
    body: &[u8],
    stamp: &Stamp,
) -> Answer {
    let (path, query) = split_uri(uri);
    let (status, value) = match route(version, method, path) {
        None => (404, json!({"error": "no route", "path": path})),
        Some(r) => handle_route(version, r, query, body),
    };
    finish(status, value, stamp)
}

/// Adds the volatile fields and renders the body.
fn finish(status: u16, value: Value, stamp: &Stamp) -> Answer {
    let mut obj = match value {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("data".into(), other);
            m
        }
    };
    obj.insert(
        "served_at".into(),
        Value::String(rfc3339_micros(stamp.served_at)),
    );
    obj.insert("request_id".into(), Value::String(stamp.request_id.clone()));
    Answer {
        status,
        body: Value::Object(obj).to_string(),
    }
}

fn split_uri(uri: &str) -> (&str, &str) {
    match uri.split_once('?') {
        Some((p, q)) => (p, q),
        None => (uri, ""),
    }
}

fn bad_request(message: &str) -> (u16, Value) {
    (400, json!({"error": message}))
}

fn handle_route(version: GatewayVersion, r: Route<'_>, query: &str, body: &[u8]) -> (u16, Value) {
    match r {
        Route::User(id) => with_id(id, user),
        Route::UserOrders(id) => with_id(id, user_orders),
        Route::Products => products(query),
        Route::Product(id) => with_id(id, |id| product(version, id)),
        Route::ProductReviews(id) => with_id(id, product_reviews),
        Route::Search => search(query),
        Route::Cart(id) => cart(id),
        Route::Inventory(sku) => inventory(sku),
        Route::Recommendations(id) => with_id(id, recommendations),
        Route::Features => (200, features()),
        Route::ExchangeRates => exchange_rates(query),
        Route::Store(id) => with_id(id, store),
        Route::AnnualExport => annual_export(query),
        Route::CreateOrder => create_order(body),
    }
}

fn with_id(id: &str, f: impl FnOnce(u64) -> Value) -> (u16, Value) {
    match id.parse::<u64>() {
        Ok(n) => (200, f(n)),
        Err(_) => bad_request("id must be a decimal number"),
    }
}

// ---- deterministic data -------------------------------------------------------------------

const FIRST_NAMES: [&str; 16] = [
    "Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ines", "Jonas", "Keiko",
    "Lars", "Maya", "Nils", "Olga", "Pedro",
];
const LAST_NAMES: [&str; 12] = [
    "Berg", "Costa", "Dahl", "Engel", "Fischer", "Grant", "Horvat", "Ito", "Jensen", "Kowalski",
    "Lind", "Moreau",
];
const ADJECTIVES: [&str; 10] = [
    "Alpine", "Brass", "Cedar", "Copper", "Linen", "Merino", "Oak", "Slate", "Walnut", "Wool",
];
const NOUNS: [&str; 10] = [
    "Backpack", "Bottle", "Kettle", "Lamp", "Mug", "Notebook", "Scarf", "Stool", "Tent", "Torch",
];
const CATEGORIES: [&str; 5] = ["kitchen", "outdoor", "home", "office", "apparel"];
const CITIES: [&str; 8] = [
    "Berlin", "Lisbon", "Oslo", "Vienna", "Lyon", "Turin", "Gdansk", "Porto",
];
const STREETS: [&str; 6] = [
    "Market Street",
    "Harbour Road",
    "Linden Avenue",
    "Station Square",
    "Mill Lane",
    "Castle Hill",
];
const REVIEW_TITLES: [&str; 6] = [
    "Does the job",
    "Better than expected",
    "Would buy again",
    "Not for me",
    "Solid quality",
    "Arrived late, works fine",
];
const ORDER_STATES: [&str; 4] = ["delivered", "shipped", "processing", "cancelled"];

/// A hash of an entity kind and its id; different kinds with the same id get unrelated data.
fn seed(kind: &str, id: &str) -> u64 {
    let mut key = Vec::with_capacity(kind.len() + id.len() + 1);
    key.extend_from_slice(kind.as_bytes());
    key.push(b':');
    key.extend_from_slice(id.as_bytes());
    fnv1a(&key)
}

fn pick<T: Copy>(list: &[T], h: u64) -> T {
    list[(h % list.len() as u64) as usize]
}

/// Cents to a JSON number; integer division keeps the float the nearest to the decimal, so
/// it prints as `12.5`, never `12.499999`.
fn money(cents: u64) -> Value {
    json!(cents as f64 / 100.0)
}

/// A date-time a whole number of days after 2019-01-01 08:00 UTC, as RFC 3339.
fn day_after_epoch(days: u64) -> String {
    let base = time::macros::datetime!(2019-01-01 08:00 UTC);
    let t = base + time::Duration::days((days % 3000) as i64);
    format!(
        "{:04}-{:02}-{:02}T08:00:00Z",
        t.year(),
        u8::from(t.month()),
        t.day()
    )
}

fn product_name(id: u64) -> String {
    let h = seed("product", &id.to_string());
    format!("{} {}", pick(&ADJECTIVES, h), pick(&NOUNS, h / 10))
}

fn product_cents(id: u64) -> u64 {
    499 + (seed("product", &id.to_string()) / 100) % 9500
}

fn product_category(id: u64) -> &'static str {
    pick(&CATEGORIES, seed("product", &id.to_string()) / 1000)
}

fn user(id: u64) -> Value {
    let h = seed("user", &id.to_string());
    let first = pick(&FIRST_NAMES, h);
    let last = pick(&LAST_NAMES, h / 16);
    json!({
        "id": id,
        "name": format!("{first} {last}"),
        "email": format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), id),
        "tier": pick(&["basic", "plus", "pro"], h / 200),
        "created_at": day_after_epoch(h / 1000),
        "city": pick(&CITIES, h / 7),
    })
}

fn user_orders(id: u64) -> Value {
    let h = seed("orders", &id.to_string());
    let orders: Vec<Value> = (0..h % 6)
        .map(|i| {
            let oh = seed("order", &format!("{id}/{i}"));
            json!({
                "id": format!("ord-{:08x}", oh & 0xffff_ffff),
                "status": pick(&ORDER_STATES, oh >> 32),
                "total": money(999 + (oh >> 8) % 30000),
                "currency": "EUR",
                "placed_at": day_after_epoch(1500 + (oh >> 16) % 900),
            })
        })
        .collect();
    json!({"user_id": id, "count": orders.len(), "orders": orders})
}

fn product_summary(id: u64) -> Value {
    json!({"id": id, "name": product_name(id), "price": money(product_cents(id))})
}

fn products(query: &str) -> (u16, Value) {
    let page = match query_param(query, "page") {
        None => 1,
        Some(p) => match p.parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => return bad_request("page must be a positive number"),
        },
    };
    let category = query_param(query, "category");
    let matching: Vec<u64> = (1..=200u64)
        .filter(|id| {
            category
                .as_deref()
                .is_none_or(|c| product_category(*id) == c)
        })
        .collect();
    let start = usize::try_from((page - 1).saturating_mul(10)).unwrap_or(usize::MAX);
    let items: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(10)
        .map(|id| product_summary(*id))
        .collect();
    (
        200,
        json!({
            "page": page,
            "per_page": 10,
            "total": matching.len(),
            "category": category,
            "items": items,
        }),
    )
}

fn product(version: GatewayVersion, id: u64) -> Value {
    let h = seed("product", &id.to_string());
    let cents = product_cents(id);
    // Planted difference 2: V2's serializer writes money as a decimal string.
    let price = match version {
        GatewayVersion::V1 => money(cents),
        GatewayVersion::V2 => Value::String(format!("{}.{:02}", cents / 100, cents % 100)),
    };
    let tags: Vec<&str> = ["bestseller", "eco", "new", "gift", "sale"]
        .iter()
        .enumerate()
        .filter(|(i, _)| (h >> (20 + i)) & 1 == 1)
        .map(|(_, t)| *t)
        .collect();
    json!({
        "id": id,
        "name": product_name(id),
        "category": product_category(id),
        "price": price,
        "currency": "EUR",
        "stock": (h / 7) % 250,
        "rating": (30 + (h / 13) % 21) as f64 / 10.0,
        "tags": tags,
    })
}

fn product_reviews(id: u64) -> Value {
    let h = seed("reviews", &id.to_string());
    let reviews: Vec<Value> = (0..h % 5)
        .map(|i| {
            let rh = seed("review", &format!("{id}/{i}"));
            json!({
                "author": pick(&FIRST_NAMES, rh),
                "rating": 1 + (rh >> 8) % 5,
                "title": pick(&REVIEW_TITLES, rh >> 16),
                "created_at": day_after_epoch(1800 + (rh >> 24) % 600),
            })
        })
        .collect();
    let sum: u64 = reviews
        .iter()
        .filter_map(|r| r.get("rating").and_then(Value::as_u64))
        .sum();
    let average = if reviews.is_empty() {
        Value::Null
    } else {
        json!((sum * 10 / reviews.len() as u64) as f64 / 10.0)
    };
    json!({"product_id": id, "count": reviews.len(), "average": average, "reviews": reviews})
}

fn search(query: &str) -> (u16, Value) {
    let q = match query_param(query, "q") {
        Some(q) if !q.trim().is_empty() => q,
        _ => return bad_request("missing query parameter q"),
    };
    let h = fnv1a(q.to_lowercase().as_bytes());
    let results: Vec<Value> = (0..h % 8)
        .map(|i| {
            let id = 1 + (h >> (i * 7)) % 800;
            json!({
                "id": id,
                "name": product_name(id),
                "price": money(product_cents(id)),
                "score": (100 - i * 9) as f64 / 100.0,
            })
        })
        .collect();
    (
        200,
        json!({"query": q, "count": results.len(), "results": results}),
    )
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn cart(id: &str) -> (u16, Value) {
    if !is_uuid(id) {
        return bad_request("cart id must be a UUID");
    }
    let key = id.to_ascii_lowercase();
    let h = seed("cart", &key);
    let mut subtotal = 0;
    let items: Vec<Value> = (0..1 + h % 4)
        .map(|i| {
            let product_id = 1 + (h >> (i * 9 + 2)) % 800;
            let qty = 1 + (h >> (i * 3 + 40)) % 3;
            let cents = product_cents(product_id);
            subtotal += cents * qty;
            json!({"product_id": product_id, "qty": qty, "unit_price": money(cents)})
        })
        .collect();
    (
        200,
        json!({"cart_id": key, "items": items, "subtotal": money(subtotal), "currency": "EUR"}),
    )
}

fn inventory(sku: &str) -> (u16, Value) {
    if !(8..=40).contains(&sku.len()) || !sku.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad_request("sku must be 8 to 40 hex digits");
    }
    let key = sku.to_ascii_lowercase();
    let h = seed("sku", &key);
    let warehouses: Vec<Value> = ["BER-1", "LIS-2", "OSL-1"]
        .iter()
        .enumerate()
        .map(|(i, code)| json!({"code": code, "qty": (h >> (i * 12)) % 400}))
        .collect();
    let total: u64 = warehouses
        .iter()
        .filter_map(|w| w.get("qty").and_then(Value::as_u64))
        .sum();
    (
        200,
        json!({"sku": key, "warehouses": warehouses, "total": total}),
    )
}

fn recommendations(id: u64) -> Value {
    let h = seed("recommend", &id.to_string());
    let products: Vec<u64> = (0..6).map(|i| 1 + (h >> (i * 9)) % 800).collect();
    json!({"user_id": id, "model": "collab-2026-10", "products": products})
}

fn features() -> Value {
    json!({
        "version": 42,
        "features": {
            "new_checkout": true,
            "wishlist": true,
            "gift_cards": false,
            "express_shipping": true,
        },
    })
}

fn exchange_rates(query: &str) -> (u16, Value) {
    // Rates per euro, in millionths, so every derived rate is computed exactly.
    const PER_EUR: [(&str, u64); 5] = [
        ("EUR", 1_000_000),
        ("USD", 1_084_200),
        ("GBP", 853_100),
        ("CHF", 946_700),
        ("SEK", 11_452_000),
    ];
    let base = query_param(query, "base").unwrap_or_else(|| "EUR".into());
    let Some((_, base_rate)) = PER_EUR.iter().find(|(c, _)| *c == base) else {
        return bad_request("unknown base currency");
    };
    let rates: Map<String, Value> = PER_EUR
        .iter()
        .filter(|(c, _)| *c != base)
        .map(|(c, r)| {
            let per_base_1e4 = (r * 10_000 + base_rate / 2) / base_rate;
            ((*c).to_string(), json!(per_base_1e4 as f64 / 10_000.0))
        })
        .collect();
    (
        200,
        json!({"base": base, "as_of": "2026-11-01", "rates": rates}),
    )
}

fn store(id: u64) -> Value {
    let h = seed("store", &id.to_string());
    json!({
        "id": id,
        "city": pick(&CITIES, h),
        "address": format!("{} {}", 1 + (h >> 8) % 120, pick(&STREETS, h >> 16)),
        "opening_hours": {
            "mon_fri": "09:00-20:00",
            "sat": "10:00-18:00",
            "sun": if (h >> 24) % 3 == 0 { "closed" } else { "12:00-17:00" },
        },
    })
}

fn annual_export(query: &str) -> (u16, Value) {
    let year = match query_param(query, "year") {
        None => 2025,
        Some(y) => match y.parse::<u32>() {
            Ok(y) if (2000..=2100).contains(&y) => y,
            _ => return bad_request("year must be between 2000 and 2100"),
        },
    };
    let h = seed("export", &year.to_string());
    (
        200,
        json!({
            "report": "annual-export",
            "year": year,
            "status": "ready",
            "rows": 100_000 + h % 900_000,
            "size_bytes": 4_000_000 + h % 60_000_000,
            "download": format!("/files/annual-export-{year}.csv.gz"),
        }),
    )
}

fn create_order(body: &[u8]) -> (u16, Value) {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return bad_request("order body must be JSON"),
    };
    let Some(user_id) = v.get("user_id").and_then(Value::as_u64) else {
        return bad_request("order needs a numeric user_id");
    };
    let Some(items) = v
        .get("items")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return bad_request("order needs a non-empty items list");
    };
    let mut total = 0u64;
    for item in items {
        let product = item.get("product_id").and_then(Value::as_u64);
        let qty = item.get("qty").and_then(Value::as_u64);
        match (product, qty) {
            (Some(p), Some(q)) if (1..=99).contains(&q) => {
                total = total.saturating_add(product_cents(p).saturating_mul(q));
            }
            _ => return bad_request("each item needs product_id and qty between 1 and 99"),
        }
    }
    (
        201,
        json!({
            "order_id": format!("ord-{:08x}", fnv1a(body) & 0xffff_ffff),
            "status": "accepted",
            "user_id": user_id,
            "items": items.len(),
            "total": money(total),
            "currency": "EUR",
        }),
    )
}

/// The first value of query parameter `name`, percent- and plus-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- server -------------------------------------------------------------------------------

/// A running demo gateway on 127.0.0.1. Dropping it stops the accept loop and closes its
/// connections; [`Gateway::shutdown`] does the same and waits until the port is released.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    version: GatewayVersion,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Gateway {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Which version it serves.
    pub fn version(&self) -> GatewayVersion {
        self.version
    }

    /// Stops accepting, closes open connections and waits until the listener is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts a gateway of `version` on an ephemeral port of 127.0.0.1. Must be called inside a
/// Tokio runtime; the server runs as tasks on it.
pub async fn spawn(version: GatewayVersion) -> std::io::Result<Gateway> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, version, stop_rx));
    Ok(Gateway {
        addr,
        version,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    version: GatewayVersion,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            // A send or a dropped sender both mean stop.
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: retrying at once would spin.
                    tracing::debug!(error = %e, "demo gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream, version, stop.clone()));
    }
}

async fn serve_connection(
    stream: TcpStream,
    version: GatewayVersion,
    mut stop: watch::Receiver<bool>,
) {
    // Small JSON answers: waiting for Nagle would add latency that is not the gateway's.
    let _ = stream.set_nodelay(true);
    let builder = Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(
        TokioIo::new(stream),
        service_fn(move |req| handle(version, req)),
    );
    tokio::select! {
        res = conn => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "demo gateway connection ended with an error");
            }
        }
        _ = stop.changed() => {}
    }
}

async fn handle(
    version: GatewayVersion,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_owned();
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let a = finish(
                413,
                json!({"error": "request body too large or unreadable"}),
                &Stamp::now(),
            );
            return Ok(to_response(a));
        }
    };
    if let Some(d) = delay(version, &method, &uri) {
        tokio::time::sleep(d).await;
    }
    Ok(to_response(answer(
        version,
        &method,
        &uri,
        &body,
        &Stamp::now(),
    )))
}

fn to_response(a: Answer) -> Response<Full<Bytes>> {
    let headers = a.headers(SystemTime::now());
    let mut resp = Response::new(Full::new(Bytes::from(a.body)));
    *resp.status_mut() =
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;

    fn fixed_stamp() -> Stamp {
        Stamp {
            served_at: time::macros::datetime!(2026-11-02 09:00:00.000123 UTC),
            request_id: "00112233445566ff".into(),
        }
    }

    fn json_of(a: &Answer) -> Value {
        serde_json::from_str(&a.body).unwrap()
    }

    /// One request per interface, plus no-route and bad-input cases.
    const SAMPLE_URIS: [(&str, &str); 20] = [
        ("GET", "/api/users/42"),
        ("GET", "/api/users/42/orders"),
        ("GET", "/api/products"),
        ("GET", "/api/products?category=kitchen&page=2"),
        ("GET", "/api/products/17"),
        ("GET", "/api/products/17/reviews"),
        ("GET", "/api/search?q=copper+mug"),
        ("GET", "/api/cart/3f2b8c1e-9a4d-4e6f-8b7a-0c1d2e3f4a5b"),
        ("GET", "/api/inventory/00ab12cd34ef56ab78cd90ef"),
        ("GET", "/api/recommendations/42"),
        ("GET", "/api/config/features"),
        ("GET", "/api/exchange-rates?base=USD"),
        ("GET", "/api/stores/7"),
        ("GET", "/api/reports/annual-export?year=2025"),
        ("POST", "/api/orders"),
        ("GET", "/api/nowhere"),
        ("DELETE", "/api/users/42"),
        ("GET", "/api/users/abc"),
        ("GET", "/api/cart/not-a-uuid"),
        ("GET", "/api/search"),
    ];
    const ORDER: &[u8] = br#"{"user_id":42,"items":[{"product_id":17,"qty":2}]}"#;

    #[test]
    fn versions_differ_only_in_the_planted_ways() {
        let stamp = fixed_stamp();
        let mut differing = Vec::new();
        for (m, uri) in SAMPLE_URIS {
            let a = answer(GatewayVersion::V1, m, uri, ORDER, &stamp);
            let b = answer(GatewayVersion::V2, m, uri, ORDER, &stamp);
            if a != b {
                differing.push(uri);
            }
        }
        assert_eq!(
            differing,
            ["/api/products/17", "/api/reports/annual-export?year=2025"]
        );
        let d: Vec<_> = SAMPLE_URIS
            .iter()
            .filter(|(m, u)| delay(GatewayVersion::V2, m, u).is_some())
            .collect();
        // The whole search interface is slower, bad requests included.
        assert_eq!(
            d,
            [
                &("GET", "/api/search?q=copper+mug"),
                &("GET", "/api/search")
            ]
        );
        assert!(SAMPLE_URIS
            .iter()
            .all(|(m, u)| delay(GatewayVersion::V1, m, u).is_none()));
    }

    #[test]
    fn v2_renders_product_price_as_a_string() {
        let s = fixed_stamp();
        let v1 = json_of(&answer(
            GatewayVersion::V1,
            "GET",
            "/api/products/17",
            b"",
            &s,
        ));
        let v2 = json_of(&answer(
            GatewayVersion::V2,
            "GET",
            "/api/products/17",
            b"",
            &s,
        ));
        let cents = product_cents(17);
        assert_eq!(v1["price"].as_f64(), Some(cents as f64 / 100.0));
        assert_eq!(
            v2["price"].as_str(),
            Some(format!("{}.{:02}", cents / 100, cents % 100).as_str())
        );
        let (mut a, mut b) = (v1.clone(), v2.clone());
        a.as_object_mut().unwrap().remove("price");
        b.as_object_mut().unwrap().remove("price");
        assert_eq!(a, b);
    }

    #[test]
    fn v2_has_no_route_for_the_annual_export() {
        let s = fixed_stamp();
        let uri = "/api/reports/annual-export?year=2025";
        let v1 = answer(GatewayVersion::V1, "GET", uri, b"", &s);
        let v2 = answer(GatewayVersion::V2, "GET", uri, b"", &s);
        assert_eq!(v1.status, 200);
        assert_eq!(v2.status, 404);
        let body = json_of(&v2);
        assert_eq!(body["error"], "no route");
        assert_eq!(body["path"], "/api/reports/annual-export");
        assert_eq!(interface_of(GatewayVersion::V2, "GET", uri), None);
        assert_eq!(
            interface_of(GatewayVersion::V1, "GET", uri),
            Some("GET /api/reports/annual-export")
        );
        assert_eq!(interfaces(GatewayVersion::V1).len(), 14);
        assert_eq!(interfaces(GatewayVersion::V2).len(), 13);
    }

    #[test]
    fn answers_are_deterministic_and_stamped() {
        let s = fixed_stamp();
        for (m, uri) in SAMPLE_URIS {
            let a = answer(GatewayVersion::V1, m, uri, ORDER, &s);
            assert_eq!(a, answer(GatewayVersion::V1, m, uri, ORDER, &s), "{uri}");
            let v = json_of(&a);
            assert_eq!(v["served_at"], "2026-11-02T09:00:00.000123Z", "{uri}");
            assert_eq!(v["request_id"], "00112233445566ff", "{uri}");
        }
        // Different ids give different data: templating by id must matter.
        let a = answer(GatewayVersion::V1, "GET", "/api/users/1", b"", &s);
        let b = answer(GatewayVersion::V1, "GET", "/api/users/2", b"", &s);
        assert_ne!(a.body, b.body);
    }

    #[test]
    fn statuses_for_good_and_bad_input() {
        let s = fixed_stamp();
        let status =
            |m: &str, u: &str, body: &[u8]| answer(GatewayVersion::V1, m, u, body, &s).status;
        assert_eq!(status("GET", "/api/nowhere", b""), 404);
        assert_eq!(status("DELETE", "/api/users/42", b""), 404);
        assert_eq!(status("GET", "/api/users/abc", b""), 400);
        assert_eq!(status("GET", "/api/cart/not-a-uuid", b""), 400);
        assert_eq!(status("GET", "/api/inventory/xyz", b""), 400);
        assert_eq!(status("GET", "/api/search", b""), 400);
        assert_eq!(status("GET", "/api/products?page=0", b""), 400);
        assert_eq!(status("GET", "/api/exchange-rates?base=XXX", b""), 400);
        assert_eq!(status("POST", "/api/orders", b"not json"), 400);
        assert_eq!(
            status("POST", "/api/orders", br#"{"user_id":1,"items":[]}"#),
            400
        );
        assert_eq!(status("POST", "/api/orders", ORDER), 201);
    }

    #[test]
    fn unknown_route_names_its_path() {
        let a = answer(
            GatewayVersion::V1,
            "GET",
            "/api/nowhere?x=1",
            b"",
            &fixed_stamp(),
        );
        let v = json_of(&a);
        assert_eq!(v["error"], "no route");
        assert_eq!(v["path"], "/api/nowhere");
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            query_param("q=copper+mug", "q").as_deref(),
            Some("copper mug")
        );
        assert_eq!(
            query_param("a=1&q=oak%20stool", "q").as_deref(),
            Some("oak stool")
        );
        assert_eq!(query_param("q=100%", "q").as_deref(), Some("100%"));
        assert_eq!(query_param("q=%zz", "q").as_deref(), Some("%zz"));
        assert_eq!(query_param("x=1", "q"), None);
    }

    #[test]
    fn times_have_microseconds() {
        let t = time::macros::datetime!(2026-11-02 10:00:00.5 +01:00);
        assert_eq!(rfc3339_micros(t), "2026-11-02T09:00:00.500000Z");
        assert_eq!(day_after_epoch(0), "2019-01-01T08:00:00Z");
    }

    async fn get(url: &str) -> (u16, http::HeaderMap, Value) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let resp = client.get(url.parse().unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    fn without_volatile(mut v: Value) -> Value {
        let o = v.as_object_mut().unwrap();
        o.remove("served_at");
        o.remove("request_id");
        v
    }

    #[tokio::test]
    async fn serves_over_http_with_volatile_fields() {
        let gw = spawn(GatewayVersion::V1).await.unwrap();
        assert!(gw.url().starts_with("http://127.0.0.1:"));
        assert_eq!(
            gw.addr().port(),
            gw.url().rsplit(':').next().unwrap().parse::<u16>().unwrap()
        );
        let url = format!("{}/api/users/42", gw.url());
        let (s1, h1, b1) = get(&url).await;
        let (s2, _, b2) = get(&url).await;
        assert_eq!((s1, s2), (200, 200));
        assert_eq!(h1["content-type"], "application/json");
        assert!(httpdate::parse_http_date(h1["date"].to_str().unwrap()).is_ok());
        assert_ne!(b1["request_id"], b2["request_id"]);
        let served = b1["served_at"].as_str().unwrap();
        assert!(
            OffsetDateTime::parse(served, &time::format_description::well_known::Rfc3339).is_ok()
        );
        assert_eq!(served.len(), "2026-11-02T09:00:00.000000Z".len());
        assert_eq!(without_volatile(b1), without_volatile(b2));
        gw.shutdown().await;
    }

    #[tokio::test]
    async fn v2_over_http_is_slower_on_search_and_lacks_the_export() {
        let gw = spawn(GatewayVersion::V2).await.unwrap();
        let started = std::time::Instant::now();
        let (status, _, _) = get(&format!("{}/api/search?q=lamp", gw.url())).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= V2_SEARCH_DELAY);
        let (status, _, body) = get(&format!("{}/api/reports/annual-export", gw.url())).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"], "no route");
        gw.shutdown().await;
    }

    #[tokio::test]
    async fn post_order_over_http() {
        let gw = spawn(GatewayVersion::V1).await.unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let req = Request::post(format!("{}/api/orders", gw.url()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(ORDER)))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 201);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "accepted");
        assert_eq!(
            v["total"].as_f64(),
            Some((product_cents(17) * 2) as f64 / 100.0)
        );
        gw.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_releases_the_port() {
        let gw = spawn(GatewayVersion::V1).await.unwrap();
        let addr = gw.addr();
        assert!(TcpStream::connect(addr).await.is_ok());
        gw.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn drop_stops_the_accept_loop() {
        let gw = spawn(GatewayVersion::V1).await.unwrap();
        let addr = gw.addr();
        drop(gw);
        // Connects may still land in the backlog until the loop has seen the signal, so poll
        // (yielding, not sleeping) until one is refused.
        let refused = tokio::time::timeout(Duration::from_secs(10), async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(refused.is_ok(), "port still accepting after drop");
    }
}
