//! TLS on the gRPC server, over real sockets: the same router the binary serves, started
//! in-process with certificates generated for the test. With a client CA (mutual TLS) a client
//! without a certificate, or with one from another CA, is refused and one with a certificate
//! from the CA is served; without a client CA a client that only trusts the CA is served. A
//! plaintext client never is.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::pki::TestPki;
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
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
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

    // Without a certificate: refused.
    let refused = call(&url, &client_files(&pki, None)).await;
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );

    // With a certificate from another CA: refused.
    let refused = call(
        &url,
        &client_files(&pki, Some((&pki.stranger_cert, &pki.stranger_key))),
    )
    .await;
    assert!(refused.is_err(), "served a stranger: {refused:?}");

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
    assert!(refused.is_err(), "accepted an unknown server: {refused:?}");
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
