//! gRPC end to end over h2c: two versions of a real tonic server (v2 changes one field of
//! `GetUser`'s reply and no longer implements `Legacy`), a recording made from what a real
//! tonic client sent (captured by a small HTTP/2 proxy in front of v1), and the binary's
//! replay of it: the report names the interface, the field path and the missing rule, and
//! an A/A run reports nothing. The same calls through `shadowdiff tap` (a real process) are
//! recorded by the tap and replay to the same findings. Servers that stamp every reply with
//! a random trace and the time show which calls are asked twice (what the descriptor's
//! `idempotency_level` allows) and which are judged against the answer the recording holds.

use crate::util::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shadowdiff::exchange::{Exchange, Request};
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tonic::codegen::tokio_stream;
use tonic::{Response, Status};

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserRequest {
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    #[prost(string, tag = "1")]
    pub city: String,
    #[prost(uint32, tag = "2")]
    pub zip: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct User {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, optional, tag = "3")]
    pub address: Option<Address>,
    #[prost(string, repeated, tag = "4")]
    pub tags: Vec<String>,
    /// Noise a noisy server stamps on every reply (empty, so not on the wire, otherwise).
    #[prost(string, tag = "5")]
    pub trace: String,
    #[prost(uint64, tag = "6")]
    pub served_at_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListRequest {
    #[prost(uint32, tag = "1")]
    pub count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Item {
    #[prost(uint32, tag = "1")]
    pub n: u32,
    #[prost(string, tag = "2")]
    pub label: String,
    #[prost(string, tag = "3")]
    pub trace: String,
    #[prost(uint64, tag = "4")]
    pub served_at_ms: u64,
}

/// The reply both versions give, except that v2 moved everyone to another zip code.
pub(crate) fn user(id: u64, v2: bool) -> User {
    User {
        id,
        name: format!("user {id}"),
        address: Some(Address {
            city: "Paris".into(),
            zip: if v2 { 10_000 } else { 75_000 } + id as u32,
        }),
        tags: vec!["a".into(), "b".into()],
        ..User::default()
    }
}

/// What a noisy server stamps on a reply: a random trace id, and the time it was served in
/// epoch milliseconds as one of a fleet's clocks tells it (up to a second behind), so that
/// two answers given in the same millisecond still carry other times.
fn noise() -> (String, u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (
        format!("{:016x}", rand::random::<u64>()),
        now.as_millis() as u64 - rand::random::<u64>() % 1000,
    )
}

/// The version of the server and whether it stamps its replies with noise.
#[derive(Clone, Copy)]
struct Version {
    v2: bool,
    noisy: bool,
}

struct GetUser(Version);

impl tonic::server::UnaryService<UserRequest> for GetUser {
    type Response = User;
    type Future = Ready<Result<Response<User>, Status>>;

    fn call(&mut self, r: tonic::Request<UserRequest>) -> Self::Future {
        let mut u = user(r.into_inner().id, self.0.v2);
        if self.0.noisy {
            (u.trace, u.served_at_ms) = noise();
        }
        ready(Ok(Response::new(u)))
    }
}

struct ListItems(Version);

type ItemStream = tokio_stream::Iter<std::vec::IntoIter<Result<Item, Status>>>;

impl tonic::server::ServerStreamingService<ListRequest> for ListItems {
    type Response = Item;
    type ResponseStream = ItemStream;
    type Future = Ready<Result<Response<ItemStream>, Status>>;

    fn call(&mut self, r: tonic::Request<ListRequest>) -> Self::Future {
        let items: Vec<Result<Item, Status>> = (0..r.into_inner().count)
            .map(|n| {
                let mut item = Item {
                    n,
                    label: format!("item {n}"),
                    ..Item::default()
                };
                if self.0.noisy {
                    (item.trace, item.served_at_ms) = noise();
                }
                Ok(item)
            })
            .collect();
        ready(Ok(Response::new(tokio_stream::iter(items))))
    }
}

/// `pkg.Svc`, written as tonic-build would generate it: route by path, let tonic's
/// `server::Grpc` do the framing and the prost codec the messages. `TouchUser` is a write
/// (it marks the user seen) that answers the user as `GetUser` does.
#[derive(Clone)]
struct Svc(Version);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Svc {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let version = self.0;
        Box::pin(async move {
            let path = req.uri().path().to_string();
            Ok(match path.as_str() {
                "/pkg.Svc/GetUser" | "/pkg.Svc/TouchUser" => {
                    let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    g.unary(GetUser(version), req).await
                }
                "/pkg.Svc/Legacy" if !version.v2 => {
                    let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    g.unary(GetUser(version), req).await
                }
                "/pkg.Svc/ListItems" => {
                    let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    g.server_streaming(ListItems(version), req).await
                }
                // What tonic answers for a method it does not serve: HTTP 200, trailers-only,
                // grpc-status 12.
                _ => Status::unimplemented(format!("{path} is not served")).into_http(),
            })
        })
    }
}

/// A tonic server (h2c) on 127.0.0.1:0, stopped when dropped.
pub(crate) struct TonicServer {
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TonicServer {
    pub(crate) async fn start(v2: bool) -> Self {
        Self::serve(Version { v2, noisy: false }).await
    }

    /// A server whose every reply carries a random `trace` and the time it was served.
    async fn start_noisy(v2: bool) -> Self {
        Self::serve(Version { v2, noisy: true }).await
    }

    async fn serve(version: Version) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Without TCP_NODELAY the trailers frame waits out a delayed ACK (~40 ms a call).
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(Svc(version), incoming)
                .await;
        });
        TonicServer { addr, task }
    }

    pub(crate) fn h2c(&self) -> String {
        format!("h2c://{}", self.addr)
    }
}

impl Drop for TonicServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One call as it crossed the capture proxy.
struct Captured {
    /// When the request arrived, in microseconds since the Unix epoch.
    at_us: i64,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    /// The answer, as the upstream sent it.
    response: shadowdiff::exchange::Response,
}

fn pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect()
}

/// An HTTP/2 (prior knowledge) proxy that records every call and forwards it to
/// `upstream`, answer and trailers passed back unchanged: a minimal tap, so that the
/// recording holds exactly the bytes a real tonic client sends and a real server answers.
struct CaptureProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Captured>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CaptureProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let s2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let (seen, client) = (s2.clone(), client.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (seen, client) = (seen.clone(), client.clone());
                            async move {
                                let at_us = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap()
                                    .as_micros() as i64;
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                let path = parts.uri.path().to_string();
                                let mut fwd = http::Request::builder()
                                    .method(parts.method)
                                    .uri(format!("http://{upstream}{path}"));
                                for (k, v) in &parts.headers {
                                    fwd = fwd.header(k, v);
                                }
                                let answer =
                                    client.request(fwd.body(Full::new(body.clone())).unwrap());
                                let (head, answer) = answer.await?.into_parts();
                                let answer = answer.collect().await.unwrap();
                                let trailers = answer.trailers().cloned();
                                let answer_body = answer.to_bytes();
                                seen.lock().unwrap().push(Captured {
                                    at_us,
                                    path,
                                    headers: pairs(&parts.headers),
                                    body,
                                    response: shadowdiff::exchange::Response {
                                        status: head.status.as_u16(),
                                        headers: pairs(&head.headers),
                                        trailers: trailers.as_ref().map(pairs),
                                        body: answer_body.clone(),
                                        body_truncated: false,
                                    },
                                });
                                let sent = Full::new(answer_body)
                                    .with_trailers(async move { trailers.map(Ok) });
                                Ok::<_, hyper_util::client::legacy::Error>(
                                    http::Response::from_parts(head, sent),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        CaptureProxy { addr, seen, task }
    }
}

impl Drop for CaptureProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The calls a client makes: `GetUser` for each of `users`, `ListItems` of three messages
/// `lists` times, `Legacy` for each of `legacy`, `TouchUser` for each of `touches`.
#[derive(Clone, Copy, Default)]
struct Calls<'a> {
    users: &'a [u64],
    lists: usize,
    legacy: &'a [u64],
    touches: &'a [u64],
}

/// Real tonic calls of `pkg.Svc` over `channel`, answered by a v1 server, every reply
/// checked (apart from the noise a noisy server stamps on it).
async fn call_pkg_svc(channel: tonic::transport::Channel, calls: Calls<'_>) {
    let mut client = tonic::client::Grpc::new(channel);
    for &id in calls.users {
        call_for_user(&mut client, "/pkg.Svc/GetUser", id).await;
    }
    for _ in 0..calls.lists {
        client.ready().await.unwrap();
        let mut stream = client
            .server_streaming(
                tonic::Request::new(ListRequest { count: 3 }),
                http::uri::PathAndQuery::from_static("/pkg.Svc/ListItems"),
                tonic_prost::ProstCodec::<ListRequest, Item>::default(),
            )
            .await
            .unwrap()
            .into_inner();
        let mut n = 0;
        while let Some(item) = stream.message().await.unwrap() {
            assert_eq!((item.n, item.label), (n, format!("item {n}")));
            n += 1;
        }
        assert_eq!(n, 3, "every streamed message arrived");
    }
    for &id in calls.legacy {
        call_for_user(&mut client, "/pkg.Svc/Legacy", id).await;
    }
    for &id in calls.touches {
        call_for_user(&mut client, "/pkg.Svc/TouchUser", id).await;
    }
}

/// A unary call of `path` (`GetUser`, `Legacy`, `TouchUser`) for user `id`, whose reply must
/// be v1's user (apart from noise).
async fn call_for_user(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    path: &'static str,
    id: u64,
) {
    client.ready().await.unwrap();
    let r: Result<Response<User>, Status> = client
        .unary(
            tonic::Request::new(UserRequest { id }),
            http::uri::PathAndQuery::from_static(path),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    let got = User {
        trace: String::new(),
        served_at_ms: 0,
        ..r.unwrap_or_else(|e| panic!("{path}: {e:?}")).into_inner()
    };
    assert_eq!(got, user(id, false), "answers pass through");
}

/// Drives real tonic calls through a capture proxy in front of a v1 server (noisy or not)
/// and returns what crossed it.
async fn capture_calls(noisy: bool, calls: Calls<'_>) -> Vec<Captured> {
    let v1 = TonicServer::serve(Version { v2: false, noisy }).await;
    let proxy = CaptureProxy::start(v1.addr).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    call_pkg_svc(channel, calls).await;
    let captured = std::mem::take(&mut *proxy.seen.lock().unwrap());
    captured
}

/// Writes captured calls as a recording at `path`, with the answers the server gave when
/// `answers` is set.
fn write_captured(
    path: &std::path::Path,
    captured: Vec<Captured>,
    answers: bool,
) -> std::path::PathBuf {
    let items: Vec<Exchange> = captured
        .into_iter()
        .enumerate()
        .map(|(i, c)| Exchange {
            id: format!("g{i}"),
            ts_us: c.at_us,
            interface: None,
            tenant: None,
            request: Request {
                method: "POST".into(),
                uri: c.path,
                version: "HTTP/2.0".into(),
                headers: c.headers,
                body: c.body,
                body_truncated: false,
                tls: None,
            },
            response: answers.then_some(c.response),
            latency_us: None,
        })
        .collect();
    write_recording(path, &items)
}

/// Drives real tonic calls through a capture proxy in front of a v1 server and writes the
/// requests captured as a recording (without answers): 5 `GetUser`, 2 `ListItems` (3
/// messages each), 2 `Legacy`.
async fn record_grpc_traffic(dir: &std::path::Path) -> std::path::PathBuf {
    let calls = Calls {
        users: &[1, 2, 3, 4, 5],
        lists: 2,
        legacy: &[7, 8],
        ..Calls::default()
    };
    let captured = capture_calls(false, calls).await;
    assert_eq!(captured.len(), 9);
    let first = &captured[0];
    assert_eq!(
        shadowdiff::exchange::header(&first.headers, "content-type"),
        Some("application/grpc")
    );
    assert_eq!(
        shadowdiff::exchange::header(&first.headers, "te"),
        Some("trailers")
    );
    // Exactly the 5-byte gRPC prefix and the prost encoding of the request.
    let expect =
        shadowdiff::compare::grpc::frame(&prost::Message::encode_to_vec(&UserRequest { id: 1 }));
    assert_eq!(first.body.as_ref(), expect.as_slice());
    write_captured(&dir.join("grpc.jsonl"), captured, false)
}

/// The descriptor set of `pkg.Svc`, as `protoc --descriptor_set_out` would write it; the
/// methods named in `no_side_effects` carry `option idempotency_level = NO_SIDE_EFFECTS`.
fn descriptor_set(no_side_effects: &[&str]) -> Vec<u8> {
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::method_options::IdempotencyLevel;
    use prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
        MethodDescriptorProto, MethodOptions, ServiceDescriptorProto,
    };
    let field = |name: &str, number: i32, ty: Type, type_name: Option<&str>, label: Label| {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(label as i32),
            r#type: Some(ty as i32),
            type_name: type_name.map(str::to_string),
            ..Default::default()
        }
    };
    let msg = |name: &str, fields: Vec<FieldDescriptorProto>| DescriptorProto {
        name: Some(name.into()),
        field: fields,
        ..Default::default()
    };
    let method = |name: &str, input: &str, output: &str, streaming: bool| MethodDescriptorProto {
        name: Some(name.into()),
        input_type: Some(input.into()),
        output_type: Some(output.into()),
        server_streaming: Some(streaming),
        options: no_side_effects.contains(&name).then(|| MethodOptions {
            idempotency_level: Some(IdempotencyLevel::NoSideEffects as i32),
            ..Default::default()
        }),
        ..Default::default()
    };
    let o = Label::Optional;
    let set = FileDescriptorSet {
        file: vec![FileDescriptorProto {
            name: Some("pkg.proto".into()),
            package: Some("pkg".into()),
            syntax: Some("proto3".into()),
            message_type: vec![
                msg("UserRequest", vec![field("id", 1, Type::Uint64, None, o)]),
                msg(
                    "Address",
                    vec![
                        field("city", 1, Type::String, None, o),
                        field("zip", 2, Type::Uint32, None, o),
                    ],
                ),
                msg(
                    "User",
                    vec![
                        field("id", 1, Type::Uint64, None, o),
                        field("name", 2, Type::String, None, o),
                        field("address", 3, Type::Message, Some(".pkg.Address"), o),
                        field("tags", 4, Type::String, None, Label::Repeated),
                        field("trace", 5, Type::String, None, o),
                        field("served_at_ms", 6, Type::Uint64, None, o),
                    ],
                ),
                msg(
                    "ListRequest",
                    vec![field("count", 1, Type::Uint32, None, o)],
                ),
                msg(
                    "Item",
                    vec![
                        field("n", 1, Type::Uint32, None, o),
                        field("label", 2, Type::String, None, o),
                        field("trace", 3, Type::String, None, o),
                        field("served_at_ms", 4, Type::Uint64, None, o),
                    ],
                ),
            ],
            service: vec![ServiceDescriptorProto {
                name: Some("Svc".into()),
                method: vec![
                    method("GetUser", ".pkg.UserRequest", ".pkg.User", false),
                    method("ListItems", ".pkg.ListRequest", ".pkg.Item", true),
                    method("Legacy", ".pkg.UserRequest", ".pkg.User", false),
                    method("TouchUser", ".pkg.UserRequest", ".pkg.User", false),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    prost::Message::encode_to_vec(&set)
}

fn field<'a>(iface: &'a serde_json::Value, list: &str, path: &str) -> &'a serde_json::Value {
    iface[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no {list} entry {path} in {iface:#}"))
}

pub(crate) async fn replay(
    rec: &std::path::Path,
    base: &str,
    cand: &str,
    json: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args: Vec<String> = vec![
        "replay".into(),
        rec.display().to_string(),
        "--baseline".into(),
        base.into(),
        "--candidate".into(),
        cand.into(),
        // gRPC calls are POSTs: replay skips them unless told they are safe to repeat.
        "--allow-side-effects".into(),
        "--json".into(),
        json.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    shadowdiff_async(args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_changed_field_and_unimplemented_method_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let rec = record_grpc_traffic(dir.path()).await;
    let v1 = TonicServer::start(false).await;
    let v2 = TonicServer::start(true).await;

    let json = dir.path().join("r.json");
    let o = replay(&rec, &v1.h2c(), &v2.h2c(), &json, &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["total"], 9);
    assert_eq!(r["summary"]["skipped"], 0);

    let get = interface(&r, "/pkg.Svc/GetUser");
    assert_eq!(get["different"], 5, "{get:#}");
    let zip = field(get, "fields", "$.msg[*].3.2");
    assert_eq!(zip["regression"], true);
    assert_eq!(zip["raw"], 5);
    assert_eq!(zip["noise"], 0);
    assert_eq!(zip["example"]["path"], "$.msg[0].3.2");
    assert_eq!(
        get["fields"].as_array().unwrap().len(),
        1,
        "only the zip changed"
    );

    let legacy = interface(&r, "/pkg.Svc/Legacy");
    assert_eq!(legacy["missing_rule"], 2, "{legacy:#}");
    let list = interface(&r, "/pkg.Svc/ListItems");
    assert_eq!(list["identical"], 2, "{list:#}");

    let gates: Vec<&str> = r["gate_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(
        gates
            .iter()
            .any(|g| g.starts_with("missing_rule") && g.contains("/pkg.Svc/Legacy")),
        "{gates:?}"
    );
    assert!(
        gates
            .iter()
            .any(|g| g.starts_with("different") && g.contains("/pkg.Svc/GetUser")),
        "{gates:?}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("/pkg.Svc/GetUser") && out.contains("$.msg[*].3.2"),
        "{out}"
    );

    // With the descriptor set, the same change reads by field names.
    let desc = dir.path().join("pkg.pb");
    std::fs::write(&desc, descriptor_set(&[])).unwrap();
    let json = dir.path().join("named.json");
    let desc_arg = desc.display().to_string();
    let o = replay(
        &rec,
        &v1.h2c(),
        &v2.h2c(),
        &json,
        &["--proto-descriptor", &desc_arg],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    let get = interface(&r, "/pkg.Svc/GetUser");
    let zip = field(get, "fields", "$.msg[*].address.zip");
    assert_eq!(zip["regression"], true);
    // The example is whichever exchange got there first; each has its own id.
    let num = |v: &serde_json::Value| v.as_str().unwrap().parse::<u32>().unwrap();
    let (b, c) = (
        num(&zip["example"]["baseline"]),
        num(&zip["example"]["candidate"]),
    );
    assert!((75_001..=75_005).contains(&b), "{zip:#}");
    assert_eq!(b - c, 65_000, "{zip:#}");

    // With the gRPC missing-rule signature turned off, UNIMPLEMENTED is a status difference.
    let json = dir.path().join("off.json");
    let o = replay(
        &rec,
        &v1.h2c(),
        &v2.h2c(),
        &json,
        &["--missing-rule-grpc-status", ""],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    let legacy = interface(&r, "/pkg.Svc/Legacy");
    assert_eq!(legacy["missing_rule"], 0, "{legacy:#}");
    assert_eq!(legacy["different"], 2);
    let status = field(legacy, "headers", "trailer:grpc-status 0 → 12");
    assert_eq!(status["regression"], true);
    assert_eq!(status["example"]["baseline"], "0");
    assert_eq!(status["example"]["candidate"], "12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_a_a_run_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rec = record_grpc_traffic(dir.path()).await;
    let a = TonicServer::start(false).await;
    let b = TonicServer::start(false).await;
    let json = dir.path().join("aa.json");
    let o = replay(&rec, &a.h2c(), &b.h2c(), &json, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["identical"], 9, "{:#}", r["summary"]);
    assert_eq!(r["summary"]["different"], 0);
    assert_eq!(r["summary"]["missing_rule"], 0);
    assert_eq!(r["verdict"], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_flags_are_validated_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let rec = write_recording(&dir.path().join("r.jsonl"), &[get("a", "/x", 1)]);
    let bad = dir.path().join("not-a-descriptor.pb");
    std::fs::write(&bad, b"\x0a\x05\xff\xff\xff\xff\xff").unwrap();
    let json = dir.path().join("r.json");
    // Nothing listens on port 9: validation must fail first, with exit 2.
    let cases = [
        vec!["--proto-descriptor".to_string(), bad.display().to_string()],
        vec![
            "--missing-rule-grpc-status".to_string(),
            "12,UNIMPLEMENTED".to_string(),
        ],
    ];
    for extra in cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let o = replay(
            &rec,
            "h2c://127.0.0.1:9",
            "h2c://127.0.0.1:9",
            &json,
            &extra,
        )
        .await;
        assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(extra[0]), "{}", describe(&o));
    }
}

/// A real tonic client calling a real tonic server through `shadowdiff tap`: unary and
/// server-streaming calls pass with their trailers, the tap records them, and its recording
/// replays against v1 and v2 to the changed field and the unimplemented method, and A/A to
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_the_tap_from_tonic_is_recorded_and_replays() {
    use crate::tap::{files_in, read_recordings, TapProc};
    let dir = tempfile::tempdir().unwrap();
    let v1 = TonicServer::start(false).await;
    let v2 = TonicServer::start(true).await;
    let out_dir = dir.path().join("rec");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("grpc.jsonl");
    let upstream = format!("http://{}", v1.addr);
    let tap = TapProc::start(&["--upstream", &upstream, "--out", out.to_str().unwrap()]);
    let channel = tonic::transport::Endpoint::from_shared(tap.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let calls = Calls {
        users: &[1, 2, 3],
        lists: 1,
        legacy: &[9],
        ..Calls::default()
    };
    call_pkg_svc(channel, calls).await;
    tap.stop_async().await;

    let files = files_in(&out_dir);
    let recorded = read_recordings(&files);
    assert_eq!(recorded.len(), 5, "{recorded:#?}");
    for e in &recorded {
        let resp = e.response.as_ref().unwrap();
        assert_eq!(resp.status, 200, "{e:?}");
        let trailers = resp.trailers.as_ref().expect("gRPC trailers recorded");
        assert_eq!(
            shadowdiff::exchange::header(trailers, "grpc-status"),
            Some("0"),
            "{e:?}"
        );
    }
    let list = recorded
        .iter()
        .find(|e| e.request.uri.ends_with("/pkg.Svc/ListItems"))
        .unwrap();
    // Three length-prefixed messages, as the server streamed them.
    let body = &list.response.as_ref().unwrap().body;
    let mut frames = 0;
    let mut at = 0;
    while at + 5 <= body.len() {
        let len = u32::from_be_bytes(body[at + 1..at + 5].try_into().unwrap()) as usize;
        at += 5 + len;
        frames += 1;
    }
    assert_eq!((frames, at), (3, body.len()));

    let json = dir.path().join("r.json");
    let o = replay(&files[0], &v1.h2c(), &v2.h2c(), &json, &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(r["summary"]["total"], 5);
    let get = interface(&r, "/pkg.Svc/GetUser");
    assert_eq!(get["different"], 3, "{get:#}");
    field(get, "fields", "$.msg[*].3.2");
    assert_eq!(interface(&r, "/pkg.Svc/Legacy")["missing_rule"], 1);
    assert_eq!(interface(&r, "/pkg.Svc/ListItems")["identical"], 1);

    let other_v1 = TonicServer::start(false).await;
    let json = dir.path().join("aa.json");
    let o = replay(&files[0], &v1.h2c(), &other_v1.h2c(), &json, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let r = read_json(&json);
    assert_eq!(r["summary"]["identical"], 5, "{:#}", r["summary"]);
}

/// Checks how an interface of a noisy run was judged: all `compared` exchanges had a noise
/// sample from `source` (none unmeasured); exactly the fields in `regressing` are flagged,
/// and nothing else; the random trace at `trace` differed every time and was measured as
/// noise; the stamp of the time at `served_at` differed and was tolerated as a time.
fn assert_judged(
    iface: &serde_json::Value,
    compared: u64,
    source: &str,
    regressing: &[&str],
    trace: &str,
    served_at: &str,
) {
    assert_eq!(iface["compared"], compared, "{iface:#}");
    assert_eq!(iface["probed"], compared, "{iface:#}");
    assert_eq!(
        iface["noise_samples"],
        serde_json::json!({ source: compared }),
        "{iface:#}"
    );
    assert!(iface["unmeasured"].is_null(), "{iface:#}");
    let flagged: Vec<&str> = ["status", "headers", "fields"]
        .iter()
        .flat_map(|list| iface[list].as_array().unwrap())
        .filter(|p| p["regression"] == true)
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, regressing, "{iface:#}");
    for path in regressing {
        let f = field(iface, "fields", path);
        assert_eq!((&f["raw"], &f["noise"]), (&compared.into(), &0.into()));
        // Another value of the same type, judged against the named source.
        assert!(f["change"].is_null(), "{f:#}");
        assert_eq!(f["noise_source"], source, "{f:#}");
    }
    let t = field(iface, "fields", trace);
    assert_eq!(t["raw"], compared, "{t:#}");
    assert_eq!(t["noise"], compared, "{t:#}");
    assert_eq!(t["regression"], false, "{t:#}");
    assert_eq!(t["noise_source"], source, "{t:#}");
    let at = field(iface, "fields", served_at);
    assert_eq!(at["raw"], 0, "{at:#}");
    assert!(at["tolerated"].as_u64().unwrap() > 0, "{at:#}");
    assert_eq!(at["regression"], false, "{at:#}");
}

fn gate_failures(r: &serde_json::Value) -> Vec<&str> {
    r["gate_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect()
}

/// Real noise, judged by what the descriptor says may be repeated and by what the recording
/// holds. Both versions stamp every reply with a random `trace` and the time it was served
/// (`served_at_ms`, epoch milliseconds); v2 changes the zip code. The descriptor marks
/// `GetUser` and `ListItems` `NO_SIDE_EFFECTS` and leaves the write `TouchUser` unmarked;
/// the recording holds what a real tonic client sent and what a noisy v1 answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_grpc_answers_judged_by_idempotency_level_and_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls {
        users: &[1, 2, 3, 4, 5],
        lists: 2,
        touches: &[11, 12, 13],
        ..Calls::default()
    };
    let captured = capture_calls(true, calls).await;
    assert_eq!(captured.len(), 10);
    for c in &captured {
        let trailers = c.response.trailers.as_deref().unwrap_or_default();
        assert_eq!(
            shadowdiff::exchange::header(trailers, "grpc-status"),
            Some("0")
        );
    }
    let rec = write_captured(&dir.path().join("noisy.jsonl"), captured, true);
    let desc = dir.path().join("pkg.pb");
    std::fs::write(&desc, descriptor_set(&["GetUser", "ListItems"])).unwrap();
    let desc_arg = desc.display().to_string();
    let v1 = TonicServer::start_noisy(false).await;
    let v2 = TonicServer::start_noisy(true).await;
    let (trace, served_at) = ("$.msg[*].trace", "$.msg[*].served_at_ms");
    let zip = "$.msg[*].address.zip";

    // Without --allow-side-effects: the reads the descriptor marks are replayed and asked
    // twice; the write is skipped, never sent.
    let json = dir.path().join("reads.json");
    let (o, r) = replay_json(
        &rec,
        &v1.h2c(),
        &v2.h2c(),
        &json,
        &["--proto-descriptor", &desc_arg],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(r["summary"]["total"], 10, "{:#}", r["summary"]);
    assert_eq!(r["summary"]["skipped"], 3);
    assert_eq!(
        r["summary"]["skipped_reasons"],
        serde_json::json!({ "side_effect": 3 })
    );
    let get = interface(&r, "/pkg.Svc/GetUser");
    assert_judged(get, 5, "baseline", &[zip], trace, served_at);
    assert_eq!(get["different"], 5, "{get:#}");
    let list = interface(&r, "/pkg.Svc/ListItems");
    assert_judged(list, 2, "baseline", &[], trace, served_at);
    assert_eq!(list["noise_only"], 2, "{list:#}");
    let touch = interface(&r, "/pkg.Svc/TouchUser");
    assert_eq!(touch["skipped"], 3, "{touch:#}");
    assert_eq!(touch["side_effecting"], 3, "{touch:#}");
    assert_eq!(touch["compared"], 0, "{touch:#}");
    assert_eq!(
        gate_failures(&r),
        ["different: 5 exchanges differ beyond noise, in 1 interface: /pkg.Svc/GetUser"]
    );

    // With it: the write is replayed too, never asked twice, and judged against the answer
    // the recording holds, whose trace is as random as a live one.
    let json = dir.path().join("all.json");
    let (o, r) = replay_json(
        &rec,
        &v1.h2c(),
        &v2.h2c(),
        &json,
        &["--proto-descriptor", &desc_arg, "--allow-side-effects"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(r["summary"]["skipped"], 0, "{:#}", r["summary"]);
    let get = interface(&r, "/pkg.Svc/GetUser");
    assert_judged(get, 5, "baseline", &[zip], trace, served_at);
    let list = interface(&r, "/pkg.Svc/ListItems");
    assert_judged(list, 2, "baseline", &[], trace, served_at);
    let touch = interface(&r, "/pkg.Svc/TouchUser");
    assert_judged(touch, 3, "recording", &[zip], trace, served_at);
    assert_eq!(touch["side_effecting"], 3, "{touch:#}");
    assert_eq!(touch["different"], 3, "{touch:#}");
    // Answers recorded a moment ago: no warning that drift since capture passes for noise.
    assert_eq!(
        r["run"]["warnings"],
        serde_json::json!([]),
        "{:#}",
        r["run"]
    );
    assert_eq!(
        gate_failures(&r),
        ["different: 8 exchanges differ beyond noise, in 2 interfaces: /pkg.Svc/GetUser, /pkg.Svc/TouchUser"]
    );

    // A/A, with the descriptor and without it. Without it every call is a write, judged
    // against the recording alone, and fields are read by number: the trace is 5 in a
    // `User` and 3 in an `Item`, the time 6 and 4.
    let other_v1 = TonicServer::start_noisy(false).await;
    let with_desc = [
        "--proto-descriptor",
        desc_arg.as_str(),
        "--allow-side-effects",
    ];
    let named = [trace, served_at];
    for described in [true, false] {
        let (extra, reads, [user_trace, user_at], [item_trace, item_at]) = if described {
            (&with_desc[..], "baseline", named, named)
        } else {
            (
                &with_desc[2..], // --allow-side-effects alone
                "recording",
                ["$.msg[*].5", "$.msg[*].6"],
                ["$.msg[*].3", "$.msg[*].4"],
            )
        };
        let json = dir.path().join("aa.json");
        let (o, r) = replay_json(&rec, &v1.h2c(), &other_v1.h2c(), &json, extra).await;
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", describe(&o));
        assert_eq!(r["verdict"], "pass");
        assert_eq!(r["summary"]["noise_only"], 10, "{:#}", r["summary"]);
        let get = interface(&r, "/pkg.Svc/GetUser");
        assert_judged(get, 5, reads, &[], user_trace, user_at);
        let touch = interface(&r, "/pkg.Svc/TouchUser");
        assert_judged(touch, 3, "recording", &[], user_trace, user_at);
        let list = interface(&r, "/pkg.Svc/ListItems");
        assert_judged(list, 2, reads, &[], item_trace, item_at);
    }
}

/// `show` on a gRPC call with the descriptor: the judgement by field names, a grpcurl
/// command that writes the call as JSON, and the read the descriptor declares asked twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_judges_a_grpc_call_and_gives_the_grpcurl_command() {
    let dir = tempfile::tempdir().unwrap();
    let rec = record_grpc_traffic(dir.path()).await;
    let v1 = TonicServer::start(false).await;
    let v2 = TonicServer::start(true).await;
    let desc = dir.path().join("pkg.pb");
    std::fs::write(&desc, descriptor_set(&["GetUser"])).unwrap();
    let o = shadowdiff_async(vec![
        "show".into(),
        rec.display().to_string(),
        "g0".into(),
        "--baseline".into(),
        v1.h2c(),
        "--candidate".into(),
        v2.h2c(),
        "--proto-descriptor".into(),
        desc.display().to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("noise sample  the baseline asked twice: 200"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("regression")
            && l.contains("$.msg[0].address.zip: 75001 → 10001")),
        "{out}"
    );
    let addr = |t: &TonicServer| t.h2c().trim_start_matches("h2c://").to_string();
    for (side, server) in [("baseline", &v1), ("candidate", &v2)] {
        let cmd = format!(
            "grpcurl -plaintext -protoset {} -d '{{\"id\":1}}' {} pkg.Svc/GetUser",
            desc.display(),
            addr(server)
        );
        assert!(
            out.contains(&format!(
                "re-send to the {side} ({})\n  {cmd}\n",
                server.h2c()
            )),
            "{side}: {cmd}\n{out}"
        );
    }
}

/// gRPC through real gateways with shadowdiff playing their upstream: haproxy takes h2c and
/// forwards HTTP/2 to the address shadowdiff plays, which answers each call with its
/// recorded headers, messages and trailers. The new haproxy stamps one header more on what
/// it forwards; that is the one finding, on every method, and the answers are identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_haproxy_with_shadowdiff_playing_its_upstream() {
    let Some(haproxy) = haproxy_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls {
        users: &[1, 2, 3, 4, 5],
        lists: 2,
        legacy: &[7, 8],
        ..Calls::default()
    };
    let rec = write_captured(
        &dir.path().join("grpc.jsonl"),
        capture_calls(false, calls).await,
        true,
    );
    // Held until the replay, so that the gateways started first cannot take them.
    let hold = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = (hold(), hold());
    let (bup, cup) = (
        held.0.local_addr().unwrap().port(),
        held.1.local_addr().unwrap().port(),
    );
    let gateway = |port: u16, extra: &str| {
        format!("{extra}  default_backend up\nbackend up\n  server s 127.0.0.1:{port} proto h2\n")
    };
    let (old, new) = tokio::task::spawn_blocking(move || {
        (
            Haproxy::start(&haproxy, &gateway(bup, "")),
            Haproxy::start(
                &haproxy,
                &gateway(cup, "  http-request set-header x-tenant eu\n"),
            ),
        )
    })
    .await
    .unwrap();
    let json = dir.path().join("up.json");
    let (b, c) = (format!("127.0.0.1:{bup}"), format!("127.0.0.1:{cup}"));
    let args: Vec<String> = [
        "replay",
        &rec.display().to_string(),
        "--baseline",
        &format!("h2c://127.0.0.1:{}", old.port),
        "--candidate",
        &format!("h2c://127.0.0.1:{}", new.port),
        "--baseline-upstream",
        &b,
        "--candidate-upstream",
        &c,
        "--json",
        &json.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    drop(held);
    let o = shadowdiff_async(args).await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    // gRPC calls are POSTs: replayed and asked twice, since nothing reaches a backend.
    assert_eq!(r["summary"]["skipped"], 0);
    assert_eq!(r["summary"]["different"], 9, "{:#}", r["summary"]);
    let up = &r["run"]["upstream"];
    for side in ["baseline", "candidate"] {
        assert_eq!(up[side]["forwarded"], 18, "{up:#}");
        assert_eq!(up[side]["by_header"], 18, "{up:#}");
    }
    for i in r["interfaces"].as_array().unwrap() {
        let flagged: Vec<String> = ["status", "headers", "fields"]
            .iter()
            .flat_map(|k| i[*k].as_array().unwrap())
            .filter(|p| p["regression"] == true)
            .map(|p| format!("{} {}", p["path"].as_str().unwrap(), p["change"]))
            .collect();
        assert_eq!(
            flagged,
            ["upstream.header:x-tenant \"added\""],
            "{}",
            i["interface"]
        );
        assert_eq!(i["probed"], i["compared"], "{}", i["interface"]);
    }
}

/// gRPC over TLS: nginx terminating TLS in front of each version finds what h2c finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_finds_what_h2c_finds() {
    let Some(bin) = nginx_binary() else { return };
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let rec = record_grpc_traffic(dir.path()).await;
    let v1 = TonicServer::start(false).await;
    let v2 = TonicServer::start(true).await;
    // nginx terminates TLS (HTTP/2 by ALPN) and passes the calls on to tonic over h2c.
    let front = |s: &TonicServer| {
        let body = format!(
            "{}    location / {{ grpc_pass grpc://{}; }}\n",
            pki.nginx_tls("server"),
            s.addr
        );
        Nginx::start_listen(&bin, "ssl http2", &body)
    };
    let (n1, n2) = (front(&v1), front(&v2));
    let json = dir.path().join("tls.json");
    let ca = pki.path("ca.pem");
    let o = replay(
        &rec,
        &n1.https_url(),
        &n2.https_url(),
        &json,
        &["--ca-cert", &ca],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let r = read_json(&json);
    assert_counts_consistent(&r);
    assert_eq!(interface(&r, "/pkg.Svc/GetUser")["different"], 5);
    field(interface(&r, "/pkg.Svc/GetUser"), "fields", "$.msg[*].3.2");
    assert_eq!(interface(&r, "/pkg.Svc/Legacy")["missing_rule"], 2);
    assert_eq!(interface(&r, "/pkg.Svc/ListItems")["identical"], 2);
}
