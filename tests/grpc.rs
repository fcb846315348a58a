//! gRPC end to end over h2c: two versions of a real tonic server (v2 changes one field of
//! `GetUser`'s reply and no longer implements `Legacy`), a recording made from what a real
//! tonic client sent (captured by a small HTTP/2 proxy in front of v1), and the binary's
//! replay of it: the report names the interface, the field path and the missing rule, and
//! an A/A run reports nothing. The same calls through `shadowdiff tap` (a real process) are
//! recorded by the tap and replay to the same findings.

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
}

/// The reply both versions give, except that v2 moved everyone to another zip code.
fn user(id: u64, v2: bool) -> User {
    User {
        id,
        name: format!("user {id}"),
        address: Some(Address {
            city: "Paris".into(),
            zip: if v2 { 10_000 } else { 75_000 } + id as u32,
        }),
        tags: vec!["a".into(), "b".into()],
    }
}

struct GetUser {
    v2: bool,
}

impl tonic::server::UnaryService<UserRequest> for GetUser {
    type Response = User;
    type Future = Ready<Result<Response<User>, Status>>;

    fn call(&mut self, r: tonic::Request<UserRequest>) -> Self::Future {
        ready(Ok(Response::new(user(r.into_inner().id, self.v2))))
    }
}

struct ListItems;

type ItemStream = tokio_stream::Iter<std::vec::IntoIter<Result<Item, Status>>>;

impl tonic::server::ServerStreamingService<ListRequest> for ListItems {
    type Response = Item;
    type ResponseStream = ItemStream;
    type Future = Ready<Result<Response<ItemStream>, Status>>;

    fn call(&mut self, r: tonic::Request<ListRequest>) -> Self::Future {
        let items: Vec<Result<Item, Status>> = (0..r.into_inner().count)
            .map(|n| {
                Ok(Item {
                    n,
                    label: format!("item {n}"),
                })
            })
            .collect();
        ready(Ok(Response::new(tokio_stream::iter(items))))
    }
}

/// `pkg.Svc`, written as tonic-build would generate it: route by path, let tonic's
/// `server::Grpc` do the framing and the prost codec the messages.
#[derive(Clone)]
struct Svc {
    v2: bool,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Svc {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let v2 = self.v2;
        Box::pin(async move {
            let path = req.uri().path().to_string();
            Ok(match path.as_str() {
                "/pkg.Svc/GetUser" => {
                    let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    g.unary(GetUser { v2 }, req).await
                }
                "/pkg.Svc/Legacy" if !v2 => {
                    let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    g.unary(GetUser { v2 }, req).await
                }
                "/pkg.Svc/ListItems" => {
                    let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    g.server_streaming(ListItems, req).await
                }
                // What tonic answers for a method it does not serve: HTTP 200, trailers-only,
                // grpc-status 12.
                _ => Status::unimplemented(format!("{path} is not served")).into_http(),
            })
        })
    }
}

/// A tonic server (h2c) on 127.0.0.1:0, stopped when dropped.
struct TonicServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TonicServer {
    async fn start(v2: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Without TCP_NODELAY the trailers frame waits out a delayed ACK (~40 ms a call).
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(Svc { v2 }, incoming)
                .await;
        });
        TonicServer { addr, task }
    }

    fn h2c(&self) -> String {
        format!("h2c://{}", self.addr)
    }
}

impl Drop for TonicServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request as it crossed the capture proxy.
struct Captured {
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// An HTTP/2 (prior knowledge) proxy that records every request and forwards it to
/// `upstream`, answer and trailers passed through untouched: a minimal tap, so that the
/// recording holds exactly the bytes a real tonic client sends.
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
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                let path = parts.uri.path().to_string();
                                seen.lock().unwrap().push(Captured {
                                    path: path.clone(),
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (k.to_string(), v.to_str().unwrap().to_string())
                                        })
                                        .collect(),
                                    body: body.clone(),
                                });
                                let mut fwd = http::Request::builder()
                                    .method(parts.method)
                                    .uri(format!("http://{upstream}{path}"));
                                for (k, v) in &parts.headers {
                                    fwd = fwd.header(k, v);
                                }
                                client.request(fwd.body(Full::new(body)).unwrap()).await
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

/// Real tonic calls of `pkg.Svc` over `channel`, answered by a v1 server: `GetUser` for each
/// of `users` (replies checked), `ListItems` of three messages `lists` times (each message
/// checked), `Legacy` for each of `legacy`.
async fn call_pkg_svc(
    channel: tonic::transport::Channel,
    users: &[u64],
    lists: usize,
    legacy: &[u64],
) {
    let mut client = tonic::client::Grpc::new(channel);
    for &id in users {
        client.ready().await.unwrap();
        let r: Response<User> = client
            .unary(
                tonic::Request::new(UserRequest { id }),
                http::uri::PathAndQuery::from_static("/pkg.Svc/GetUser"),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.into_inner(), user(id, false), "answers pass through");
    }
    for _ in 0..lists {
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
    for &id in legacy {
        client.ready().await.unwrap();
        let r: Result<Response<User>, Status> = client
            .unary(
                tonic::Request::new(UserRequest { id }),
                http::uri::PathAndQuery::from_static("/pkg.Svc/Legacy"),
                tonic_prost::ProstCodec::default(),
            )
            .await;
        assert!(r.is_ok(), "{r:?}");
    }
}

/// Drives real tonic calls through a capture proxy in front of a v1 server and writes what
/// was captured as a recording: 5 `GetUser`, 2 `ListItems` (3 messages each), 2 `Legacy`.
async fn record_grpc_traffic(dir: &std::path::Path) -> std::path::PathBuf {
    let v1 = TonicServer::start(false).await;
    let proxy = CaptureProxy::start(v1.addr).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    call_pkg_svc(channel, &[1, 2, 3, 4, 5], 2, &[7, 8]).await;
    let captured = std::mem::take(&mut *proxy.seen.lock().unwrap());
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
    let items: Vec<Exchange> = captured
        .into_iter()
        .enumerate()
        .map(|(i, c)| Exchange {
            id: format!("g{i}"),
            ts_us: 1_000_000 + i as i64,
            interface: None,
            tenant: None,
            request: Request {
                method: "POST".into(),
                uri: c.path,
                version: "HTTP/2.0".into(),
                headers: c.headers,
                body: c.body,
                body_truncated: false,
            },
            response: None,
            latency_us: None,
        })
        .collect();
    write_recording(&dir.join("grpc.jsonl"), &items)
}

/// The descriptor set of `pkg.Svc`, as `protoc --descriptor_set_out` would write it.
fn descriptor_set() -> Vec<u8> {
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
        MethodDescriptorProto, ServiceDescriptorProto,
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
                    ],
                ),
            ],
            service: vec![ServiceDescriptorProto {
                name: Some("Svc".into()),
                method: vec![
                    method("GetUser", ".pkg.UserRequest", ".pkg.User", false),
                    method("ListItems", ".pkg.ListRequest", ".pkg.Item", true),
                    method("Legacy", ".pkg.UserRequest", ".pkg.User", false),
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

async fn replay(
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
    std::fs::write(&desc, descriptor_set()).unwrap();
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
    call_pkg_svc(channel, &[1, 2, 3], 1, &[9]).await;
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
