//! TLS on the gRPC server, over real sockets: the same router the binary serves, started
//! in-process with certificates generated for the test. With a client CA (mutual TLS) a client
//! without a certificate, or with one from another CA, is refused and one with a certificate
//! from the CA is served; without a client CA a client that only trusts the CA is served. A
//! plaintext client never is. A client that connects and never starts its handshake holds up
//! nobody else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::pki::{TestPki, tls12_channel};
use safety_service::metrics::Metrics;
use safety_service::server::{self, ServerConfig, ServerError};
use telemetry::tls::{ClientTlsFiles, ServerTlsFiles};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use vpsie_proto::safety::v1 as pb;
use vpsie_proto::safety::v1::safety_service_client::SafetyServiceClient;

struct TlsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TlsServer {
    async fn start(files: &ServerTlsFiles) -> TlsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let router = server::router(&ServerConfig::default(), Arc::new(Metrics::new()))
            .await
            .expect("router builds")
            .with_tls(files.load().expect("server TLS configuration"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(router.serve_with_shutdown(listener, async {
            let _ = stopped.await;
        }));
        TlsServer {
            addr,
            stop: Some(stop),
            task,
        }
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

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("safety-tls-{}-{name}", std::process::id()))
}

fn client_files(pki: &TestPki, cert: Option<(&Path, &Path)>) -> ClientTlsFiles {
    ClientTlsFiles {
        ca: Some(pki.ca.clone()),
        cert: cert.map(|(c, _)| c.to_owned()),
        key: cert.map(|(_, k)| k.to_owned()),
        flag: "--safety-tls",
    }
}

fn request() -> pb::CanRemoveNodeRequest {
    let node = pb::Node {
        metadata: Some(pb::ObjectMeta {
            name: "n1".into(),
            uid: "uid-n1".into(),
            ..Default::default()
        }),
        spec: Some(pb::NodeSpec::default()),
        status: Some(pb::NodeStatus {
            capacity: [
                ("cpu".to_owned(), "4".to_owned()),
                ("pods".to_owned(), "110".to_owned()),
            ]
            .into(),
            allocatable: [
                ("cpu".to_owned(), "4".to_owned()),
                ("pods".to_owned(), "110".to_owned()),
            ]
            .into(),
            conditions: vec![pb::NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
            }],
        }),
    };
    pb::CanRemoveNodeRequest {
        snapshot: Some(pb::ClusterSnapshot {
            nodes: vec![node],
            ..Default::default()
        }),
        node_name: "n1".into(),
        options: Some(pb::RemovalOptions::default()),
    }
}

/// One `CanRemoveNode` over a fresh channel to `url`; the status code on failure.
async fn call(url: &str, tls: &ClientTlsFiles) -> Result<pb::CanRemoveNodeResponse, String> {
    let channel: Channel = telemetry::tls::channel(url, tls, |endpoint| {
        endpoint
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
    })
    .map_err(|error| error.to_string())?;
    SafetyServiceClient::new(channel)
        .can_remove_node(request())
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| e2e_tests::probes::describe(&status))
}

/// One `CanRemoveNode` over a TLS 1.2 channel to `url` (see [`tls12_channel`]: a refused
/// client certificate fails the handshake, deterministically).
async fn call_tls12(url: &str, tls: &ClientTlsFiles) -> Result<pb::CanRemoveNodeResponse, String> {
    SafetyServiceClient::new(tls12_channel(url, tls))
        .can_remove_node(request())
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| e2e_tests::probes::describe(&status))
}

/// The call failed as a refused TLS handshake does: UNAVAILABLE (the connection was never
/// made), for `reason` (an alert, a certificate error), and not for anything else.
fn assert_refused<T: std::fmt::Debug>(result: &Result<T, String>, reason: &str) {
    let error = match result {
        Ok(answer) => panic!("served, instead of refused for {reason}: {answer:?}"),
        Err(error) => error,
    };
    assert!(error.starts_with("Unavailable: "), "{error}");
    assert!(error.contains(reason), "not refused for {reason}: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_clients_with_a_certificate_from_the_ca() {
    let pki = TestPki::generate(&scratch("mtls"));
    let server = TlsServer::start(&ServerTlsFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
    })
    .await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());

    // With a certificate from the CA: served (by IP address and by name).
    let answer = call(
        &url,
        &client_files(&pki, Some((&pki.client_cert, &pki.client_key))),
    )
    .await
    .expect("a client with a certificate is served");
    assert!(answer.removable, "{answer:?}");
    let by_name = format!("https://localhost:{}", server.addr.port());
    call(
        &by_name,
        &client_files(&pki, Some((&pki.client_cert, &pki.client_key))),
    )
    .await
    .expect("the certificate names localhost too");

    // Without a certificate: refused. Over TLS 1.3 (what our clients speak) the refusal comes
    // after the client's handshake, racing with its request: which status it gets varies. Over
    // TLS 1.2 it ends the handshake: UNAVAILABLE, with the server's alert.
    let refused = call(&url, &client_files(&pki, None)).await;
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );
    let refused = call_tls12(&url, &client_files(&pki, None)).await;
    assert_refused(&refused, "received fatal alert: CertificateRequired");

    // With a certificate from another CA: refused.
    let stranger = client_files(&pki, Some((&pki.stranger_cert, &pki.stranger_key)));
    let refused = call(&url, &stranger).await;
    assert!(refused.is_err(), "served a stranger: {refused:?}");
    let refused = call_tls12(&url, &stranger).await;
    assert_refused(&refused, "received fatal alert: UnknownCA");

    // Plaintext HTTP/2: refused.
    let plaintext = call(
        &format!("http://{}", server.addr),
        &ClientTlsFiles::default(),
    )
    .await;
    assert!(plaintext.is_err(), "served plaintext: {plaintext:?}");

    // The failed handshakes did not hurt the server.
    call(
        &url,
        &client_files(&pki, Some((&pki.client_cert, &pki.client_key))),
    )
    .await
    .expect("still serving");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_a_client_ca_serves_a_client_that_only_trusts_the_ca() {
    let pki = TestPki::generate(&scratch("tls"));
    let server = TlsServer::start(&ServerTlsFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: None,
    })
    .await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let answer = call(&url, &client_files(&pki, None))
        .await
        .expect("a client trusting the CA is served");
    assert!(answer.removable, "{answer:?}");

    // A client that trusts another CA does not accept the server.
    let other = TestPki::generate(&scratch("tls-other"));
    let refused = call(&url, &client_files(&other, None)).await;
    assert_refused(&refused, "invalid peer certificate");
    server.stop().await;
}

/// Whether the server still holds `stream` open: nothing to read and no end of stream.
fn still_open(stream: &tokio::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_does_not_stall_the_tls_accept_loop() {
    let pki = TestPki::generate(&scratch("silent"));
    let server = TlsServer::start(&ServerTlsFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
    })
    .await;
    // Clients that connect and never send a ClientHello, accepted before the real one.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(
            tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("connects"),
        );
    }

    // Served while they sit there (the guard only catches a hang).
    let url = format!("https://localhost:{}", server.addr.port());
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        call(
            &url,
            &client_files(&pki, Some((&pki.client_cert, &pki.client_key))),
        ),
    )
    .await
    .expect("the call ends")
    .expect("served while silent clients wait for their handshake");
    assert!(answer.removable, "{answer:?}");
    // ...and they still wait: the call was not served after their handshakes had timed out.
    for stream in &silent {
        assert!(
            still_open(stream),
            "a silent connection was closed before the call was served"
        );
    }

    drop(silent);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_pem_file_is_an_error_naming_it() {
    let pki = TestPki::generate(&scratch("bad"));
    let error = ServerTlsFiles {
        cert: pki.server_cert.clone(),
        key: pki.ca.clone(),
        client_ca: None,
    }
    .load()
    .expect_err("a certificate is no key");
    assert!(error.to_string().contains("ca.crt"), "{error}");
    let error = ServerTlsFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(scratch("bad").join("missing.crt")),
    }
    .load()
    .expect_err("missing client CA");
    assert!(error.to_string().contains("missing.crt"), "{error}");
}
