//! The gRPC server over a real socket: the same router the binary serves, started in-process on
//! an ephemeral port, plus the binary itself for flags, metrics and SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use safety_service::metrics::Metrics;
use safety_service::server::{self, ServerConfig, ServerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request};
use vpsie_proto::safety::v1 as pb;
use vpsie_proto::safety::v1::safety_service_client::SafetyServiceClient;

const SAFETY_SERVICE: &str = "vpsie.safety.v1.SafetyService";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    async fn start(config: ServerConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let router = server::router(&config, Arc::new(Metrics::new()))
            .await
            .expect("router builds");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(router.serve_with_shutdown(listener, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn start_default() -> TestServer {
        TestServer::start(ServerConfig::default()).await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid url")
            .connect()
            .await
            .expect("connects")
    }

    async fn client(&self) -> SafetyServiceClient<Channel> {
        SafetyServiceClient::new(self.channel().await)
            .max_encoding_message_size(usize::MAX)
            .max_decoding_message_size(usize::MAX)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("server stops in time")
            .expect("server task did not panic")
            .expect("server ran without error");
    }
}

/// The serving status of `service`, or the status code of a failed check.
async fn health_status(channel: Channel, service: &str) -> Result<i32, Code> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(|status| status.code())?;
    Ok(response.into_inner().status)
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;

// ---------------------------------------------------------------------------------------------
// Snapshot builders
// ---------------------------------------------------------------------------------------------

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(name: &str) -> pb::Node {
    pb::Node {
        metadata: Some(pb::ObjectMeta {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            labels: map(&[("kubernetes.io/hostname", name)]),
            ..Default::default()
        }),
        spec: Some(pb::NodeSpec::default()),
        status: Some(pb::NodeStatus {
            capacity: map(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]),
            allocatable: map(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]),
            conditions: vec![pb::NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
            }],
        }),
    }
}

/// A node carrying `blob_bytes` of annotation: a cheap way to make a big snapshot.
fn heavy_node(name: &str, blob: &str) -> pb::Node {
    let mut node = node(name);
    if let Some(meta) = node.metadata.as_mut() {
        meta.annotations
            .insert("example.com/blob".into(), blob.to_string());
    }
    node
}

fn heavy_snapshot(nodes: usize, bytes_per_node: usize) -> pb::ClusterSnapshot {
    let blob = "x".repeat(bytes_per_node);
    pb::ClusterSnapshot {
        nodes: (0..nodes)
            .map(|i| heavy_node(&format!("node-{i:05}"), &blob))
            .collect(),
        ..Default::default()
    }
}

fn replicated_pod(namespace: &str, name: &str, node_name: &str, cpu: &str) -> pb::Pod {
    pb::Pod {
        metadata: Some(pb::ObjectMeta {
            name: name.to_string(),
            namespace: namespace.to_string(),
            uid: format!("uid-{namespace}-{name}"),
            owner_references: vec![pb::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-abc".into(),
                uid: "uid-rs".into(),
                controller: Some(true),
            }],
            ..Default::default()
        }),
        spec: Some(pb::PodSpec {
            node_name: node_name.to_string(),
            containers: vec![pb::Container {
                name: "app".into(),
                resources: Some(pb::ResourceRequirements {
                    requests: map(&[("cpu", cpu)]),
                    limits: BTreeMap::new(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(pb::PodStatus {
            phase: "Running".into(),
        }),
    }
}

fn can_remove(snapshot: pb::ClusterSnapshot, node_name: &str) -> pb::CanRemoveNodeRequest {
    pb::CanRemoveNodeRequest {
        snapshot: Some(snapshot),
        node_name: node_name.to_string(),
        options: Some(pb::RemovalOptions::default()),
    }
}

// ---------------------------------------------------------------------------------------------
// Health and reflection
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_safety_service_serving() {
    let server = TestServer::start_default().await;
    let channel = server.channel().await;
    assert_eq!(
        health_status(channel.clone(), SAFETY_SERVICE).await,
        Ok(SERVING)
    );
    assert_eq!(health_status(channel.clone(), "").await, Ok(SERVING));
    let unknown = health_status(channel, "no.such.Service")
        .await
        .expect_err("unknown service");
    assert_eq!(unknown, Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_lists_the_safety_service() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    let server = TestServer::start_default().await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let ask = |request: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(SAFETY_SERVICE.into())),
    ];
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection answers")
        .into_inner();

    let first: ServerReflectionResponse = responses
        .message()
        .await
        .expect("stream ok")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("expected a service list, got {first:?}");
    };
    let mut names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    // Only what this server serves (the descriptor set also holds the rebalancer's service).
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            SAFETY_SERVICE
        ],
    );

    let second = responses
        .message()
        .await
        .expect("stream ok")
        .expect("second response");
    let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
        panic!("expected file descriptors, got {second:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_lists_the_safety_service() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let server = TestServer::start_default().await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let first = responses
        .message()
        .await
        .expect("stream ok")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("expected a service list, got {first:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&SAFETY_SERVICE), "{names:?}");
    assert!(
        !names.contains(&"vpsie.rebalancer.v1.RebalancerService"),
        "{names:?}"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_snapshot_is_invalid_argument_naming_snapshot() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let status = client
        .can_remove_node(pb::CanRemoveNodeRequest {
            snapshot: None,
            node_name: "n1".into(),
            options: None,
        })
        .await
        .expect_err("no snapshot");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("snapshot"), "{status:?}");

    let status = client
        .find_schedulable_node(pb::FindSchedulableNodeRequest::default())
        .await
        .expect_err("no snapshot");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("snapshot"), "{status:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_node_is_not_found() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let snapshot = pb::ClusterSnapshot {
        nodes: vec![node("n1"), node("n2")],
        ..Default::default()
    };
    let status = client
        .can_remove_node(can_remove(snapshot, "ghost"))
        .await
        .expect_err("ghost is not in the snapshot");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("ghost"), "{status:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_quantity_is_invalid_argument_with_the_field_path() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let snapshot = pb::ClusterSnapshot {
        nodes: vec![node("n1"), node("n2")],
        pods: vec![replicated_pod("default", "web-1", "n1", "12x")],
        ..Default::default()
    };
    let status = client
        .can_remove_node(can_remove(snapshot, "n1"))
        .await
        .expect_err("12x is not a quantity");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains(r#"snapshot.pods[0].spec.containers[0].resources.requests["cpu"]"#),
        "{status:?}"
    );
    assert!(
        status.message().contains(r#"invalid quantity "12x""#),
        "{status:?}"
    );
    server.stop().await;
}

/// Sends any message as a CanRemoveNode request: whatever bytes a client could send.
async fn can_remove_node_raw<M: prost::Message + Send + Sync + 'static>(
    server: &TestServer,
    request: M,
) -> Result<pb::CanRemoveNodeResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    grpc.unary(
        Request::new(request),
        http::uri::PathAndQuery::from_static("/vpsie.safety.v1.SafetyService/CanRemoveNode"),
        tonic_prost::ProstCodec::<M, pb::CanRemoveNodeResponse>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// The server still answers: a request without a snapshot is INVALID_ARGUMENT.
async fn assert_serving(client: &mut SafetyServiceClient<Channel>) {
    let status = client
        .can_remove_node(pb::CanRemoveNodeRequest::default())
        .await
        .expect_err("no snapshot");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_string_that_is_not_utf8_is_invalid_argument_with_the_field_path() {
    use safety_service::engine::{view_of, w};
    let server = TestServer::start_default().await;
    let snapshot = pb::ClusterSnapshot {
        nodes: vec![node("n1"), node("n2")],
        pods: vec![replicated_pod("default", "web-1", "n1", "100m")],
        ..Default::default()
    };
    // Any client can send such bytes; the owned types cannot hold them, the view can.
    let mut request: w::CanRemoveNodeRequest =
        view_of(&can_remove(snapshot, "n1")).expect("re-reads as its view");
    let pod = &mut request.snapshot.as_mut().expect("snapshot").pods[0];
    pod.metadata.as_mut().expect("metadata").namespace =
        prost::bytes::Bytes::from_static(b"caf\xe9");
    let status = can_remove_node_raw(&server, request)
        .await
        .expect_err("not UTF-8");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "snapshot.pods[0].metadata.namespace: not valid UTF-8 (at byte 3)"
    );
    server.stop().await;
}

/// A message whose field 1 is a number: as a request, its `snapshot` has the wrong wire type.
#[derive(Clone, PartialEq, prost::Message)]
struct NumberInFieldOne {
    #[prost(uint64, tag = "1")]
    snapshot: u64,
}

#[tokio::test]
async fn a_request_that_is_not_valid_protobuf_is_invalid_argument() {
    let server = TestServer::start_default().await;
    let status = can_remove_node_raw(&server, NumberInFieldOne { snapshot: 7 })
        .await
        .expect_err("not a CanRemoveNodeRequest");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("malformed request: "),
        "{status:?}"
    );
    assert!(status.message().contains("snapshot"), "{status:?}");
    // The server goes on serving.
    assert_serving(&mut server.client().await).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Message size
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_above_the_configured_limit_is_resource_exhausted() {
    let server = TestServer::start(ServerConfig {
        max_message_bytes: 1024 * 1024,
    })
    .await;
    let mut client = server.client().await;
    let status = client
        .can_remove_node(can_remove(heavy_snapshot(1, 2 * 1024 * 1024), "node-00000"))
        .await
        .expect_err("2 MiB is above 1 MiB");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // The server is still fine for requests within the limit.
    assert_serving(&mut client).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabyte_snapshot_is_accepted_by_default() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    // 2 000 nodes × 100 KB of annotation ≈ 200 MB, under the 256 MiB default.
    let request = can_remove(heavy_snapshot(2_000, 100_000), "node-00000");
    let started = Instant::now();
    let response = client
        .can_remove_node(request)
        .await
        .expect("a 200 MB snapshot is within the default limit")
        .into_inner();
    eprintln!("200 MB round trip took {:?}", started.elapsed());
    assert!(response.removable, "{response:?}");
    assert_eq!(response.reason(), pb::RemovalReason::Removable);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------------------------

/// A client that sends `grpc-timeout` but does not enforce it itself (as tonic's own channel
/// does), so that the status seen is the server's.
fn non_enforcing_client(
    addr: SocketAddr,
) -> SafetyServiceClient<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic::body::Body,
    >,
> {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let origin = format!("http://{addr}").parse().expect("valid uri");
    SafetyServiceClient::with_origin(http, origin)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_deadline_is_deadline_exceeded_from_the_server() {
    let server = TestServer::start_default().await;
    let mut client = non_enforcing_client(server.addr);
    // ~20 MB: far more than can be sent, decoded and simulated within 1 ms.
    let mut request = Request::new(can_remove(heavy_snapshot(200, 100_000), "node-00000"));
    request
        .metadata_mut()
        .insert("grpc-timeout", "1m".parse().expect("ascii"));
    let started = Instant::now();
    let status = client
        .can_remove_node(request)
        .await
        .expect_err("1 ms is not enough");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the server answered promptly, not after the upload: {:?}",
        started.elapsed()
    );

    // The connection and the server are still usable.
    let status = client
        .can_remove_node(pb::CanRemoveNodeRequest::default())
        .await
        .expect_err("no snapshot");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_client_deadline_ends_the_call_as_cancelled_on_the_client() {
    // tonic's channel enforces `Request::set_timeout` itself and reports its own expiry as
    // CANCELLED "Timeout expired" before any answer from the server can arrive. Rust callers
    // must treat that as their deadline passing.
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let mut request = Request::new(can_remove(heavy_snapshot(200, 100_000), "node-00000"));
    request.set_timeout(Duration::from_millis(1));
    let status = client
        .can_remove_node(request)
        .await
        .expect_err("1 ms is not enough");
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert_eq!(status.message(), "Timeout expired", "{status:?}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Garbage on the port
// ---------------------------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Deterministic pseudo-random bytes (xorshift).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small payload")
        .to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes `bytes` on a fresh connection and waits (bounded) for the server to close it.
async fn send_garbage(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    // The server may close as soon as it has seen enough: a failed write is fine.
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
    assert!(
        closed.is_ok(),
        "the server should close a connection after {} bytes of garbage",
        bytes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_port_leaves_the_server_serving() {
    let server = TestServer::start_default().await;

    // A truncated preface held open while everything else goes on.
    let mut stalled = TcpStream::connect(server.addr).await.expect("connects");
    stalled
        .write_all(&PREFACE[..10])
        .await
        .expect("writes half a preface");

    // HTTP/1 to an HTTP/2-only server.
    send_garbage(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // Pure noise.
    send_garbage(server.addr, &noise(1, 4096)).await;
    // A wrong preface.
    send_garbage(server.addr, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").await;
    // A valid preface, then random frames.
    for seed in 2..12 {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        for (i, chunk) in noise(seed, 64 * 20).chunks(64).enumerate() {
            let header = noise(seed * 100 + i as u64, 6);
            let stream = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
            bytes.extend(frame(header[0] % 12, header[1], stream, chunk));
        }
        send_garbage(server.addr, &bytes).await;
    }
    // A valid preface, then a frame announcing 16 MB, over the max frame size.
    let mut oversized = PREFACE.to_vec();
    oversized.extend([0xff, 0xff, 0xff, 0x0, 0x0, 0, 0, 0, 1]);
    oversized.extend(noise(99, 1024));
    send_garbage(server.addr, &oversized).await;
    // A valid preface and SETTINGS, then HEADERS whose HPACK block is noise.
    let mut bad_hpack = PREFACE.to_vec();
    bad_hpack.extend(frame(0x4, 0, 0, &[]));
    bad_hpack.extend(frame(0x1, 0x4 | 0x1, 1, &noise(7, 200)));
    send_garbage(server.addr, &bad_hpack).await;
    // A truncated preface, closed.
    {
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        stream.write_all(&PREFACE[..5]).await.expect("writes");
    }

    let channel = server.channel().await;
    assert_eq!(
        health_status(channel.clone(), SAFETY_SERVICE).await,
        Ok(SERVING)
    );
    let status = SafetyServiceClient::new(channel)
        .can_remove_node(pb::CanRemoveNodeRequest::default())
        .await
        .expect_err("no snapshot");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    drop(stalled);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// Kills the child if the test fails before it exits.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("writes");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("answers in time")
        .expect("reads");
    String::from_utf8(response).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_health_and_metrics_and_exits_cleanly_on_sigterm() {
    let grpc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let child = Command::new(env!("CARGO_BIN_EXE_safety-service"))
        .arg("--listen")
        .arg(grpc_addr.to_string())
        .arg("--metrics-listen")
        .arg(metrics_addr.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts the binary");
    let pid = child.id();
    let mut guard = ChildGuard(Some(child));

    // Wait until health answers.
    let url = format!("http://{grpc_addr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel = loop {
        if let Ok(channel) = Channel::from_shared(url.clone())
            .expect("valid url")
            .connect()
            .await
            && health_status(channel.clone(), SAFETY_SERVICE).await == Ok(SERVING)
        {
            break channel;
        }
        assert!(Instant::now() < deadline, "the binary never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // One call, whatever its answer, shows up in the metrics.
    let snapshot = pb::ClusterSnapshot {
        nodes: vec![node("n1")],
        ..Default::default()
    };
    let _ = SafetyServiceClient::new(channel.clone())
        .can_remove_node(can_remove(snapshot, "n1"))
        .await;
    let metrics = http_get(metrics_addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("grpc_server_handled_total{")
                && line.contains(r#"grpc_service="vpsie.safety.v1.SafetyService""#)
                && line.contains(r#"grpc_method="CanRemoveNode""#)),
        "{metrics}"
    );
    assert!(
        metrics.contains("grpc_server_handling_seconds_bucket{"),
        "{metrics}"
    );
    drop(channel);

    // SIGTERM: a prompt, clean exit.
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("runs kill");
    assert!(killed.success());
    let mut child = guard.0.take().expect("child");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the binary did not exit within 10 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut logs = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut logs);
    }
    eprintln!("binary logs:\n{logs}");
    assert!(status.success(), "exit status {status:?}; logs:\n{logs}");
    // The call was logged as one structured line.
    assert!(
        logs.lines()
            .any(|line| line.contains(r#""method":"CanRemoveNode""#)
                && line.contains(r#""node":"n1""#)
                && line.contains("duration_ms")),
        "logs:\n{logs}"
    );
}
