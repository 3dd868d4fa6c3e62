//! `controller plan --safety-endpoint https://…` against a safety-service that requires client
//! certificates (mutual TLS), with certificates generated for the test: with the CA and a client
//! certificate the plan is made; without the certificate the safety-service refuses it and the
//! command fails naming the endpoint; TLS files with an `http://` endpoint are refused.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use e2e_tests::pki::TestPki;
use safety_service::metrics::Metrics;
use safety_service::server::{self, ServerConfig};
use telemetry::tls::ServerTlsFiles;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the controller crate sits in the workspace")
        .to_path_buf()
}

/// `controller plan` on the example dump, with `extra` flags, run off the async workers.
async fn plan(extra: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_controller"))
            .args([
                "plan",
                "--cluster-file",
                "examples/cluster.json",
                "--config",
                "examples/config.yaml",
            ])
            .args(extra)
            .current_dir(workspace_root())
            .env_remove("SAFETY_ENDPOINT")
            .env_remove("SAFETY_TLS_CA")
            .env_remove("SAFETY_TLS_CERT")
            .env_remove("SAFETY_TLS_KEY")
            .env_remove("RUST_LOG")
            .output()
            .expect("the controller binary runs")
    })
    .await
    .expect("the command thread")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temporary path").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_speaks_mutual_tls_to_a_safety_service_that_requires_it() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("controller-offline-tls");
    let pki = TestPki::generate(&dir);
    let files = ServerTlsFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let port = listener.local_addr().expect("local address").port();
    let router = server::router(&ServerConfig::default(), Arc::new(Metrics::new()))
        .await
        .expect("router builds")
        .with_tls(files.load().expect("server TLS configuration"));
    let server = tokio::spawn(router.serve_with_shutdown(listener, std::future::pending()));
    let endpoint = format!("https://localhost:{port}");

    // With the CA and a client certificate: the plan, asked over TLS.
    let served = plan(vec![
        "--safety-endpoint".into(),
        endpoint.clone(),
        "--safety-tls-ca".into(),
        path(&pki.ca),
        "--safety-tls-cert".into(),
        path(&pki.client_cert),
        "--safety-tls-key".into(),
        path(&pki.client_key),
    ])
    .await;
    let report = text(&served.stdout);
    assert!(served.status.success(), "{}", text(&served.stderr));
    assert!(
        report.contains(&format!("safety-service: {endpoint}")),
        "{report}"
    );
    // The same decisions as with the in-process safety-service.
    let local = plan(Vec::new()).await;
    assert!(local.status.success(), "{}", text(&local.stderr));
    let table = |report: &str| -> Vec<String> {
        report
            .lines()
            .filter(|line| !line.starts_with("safety-service:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(table(&report), table(&text(&local.stdout)));

    // Trusting the CA but presenting no certificate: refused.
    let refused = plan(vec![
        "--safety-endpoint".into(),
        endpoint.clone(),
        "--safety-tls-ca".into(),
        path(&pki.ca),
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stdout));
    assert!(
        text(&refused.stderr).contains(&endpoint),
        "{}",
        text(&refused.stderr)
    );

    // TLS files with a plaintext endpoint: a configuration mistake, said as such.
    let plaintext = plan(vec![
        "--safety-endpoint".into(),
        format!("http://localhost:{port}"),
        "--safety-tls-ca".into(),
        path(&pki.ca),
    ])
    .await;
    assert!(!plaintext.status.success());
    assert!(
        text(&plaintext.stderr).contains("--safety-tls"),
        "{}",
        text(&plaintext.stderr)
    );
    server.abort();
}
