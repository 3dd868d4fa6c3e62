//! TLS, traces and metrics of the real rebalancer-service and safety-service binaries, over
//! sockets, against the Kubernetes and VPSie API fakes:
//! - mutual TLS on both hops (test client → rebalancer, rebalancer → safety-service for the
//!   re-check before each drain): a client without a certificate is refused, one with a
//!   certificate from the CA is served, and a replacement that needs the re-check succeeds;
//! - TLS without a client CA serves a client that only trusts the CA, and not a plaintext one;
//! - with `OTEL_EXPORTER_OTLP_ENDPOINT` on both processes, one `ExecutePlan` sent under a
//!   `traceparent` is one trace in the in-process collector: the rebalancer's server span, its
//!   `operation` span, the `safety.recheck` and its `CanRemoveNode` client span, and the
//!   safety-service's server span for that call;
//! - `/metrics` after a real replacement: gRPC calls, operations by state, VPSie calls by route
//!   and status, the circuit breaker.

mod common;

use std::time::Duration;

use common::*;
use e2e_tests::otlp_collector::{CollectedSpan, OtlpCollector, SPAN_KIND_CLIENT, SPAN_KIND_SERVER};
use e2e_tests::pki::{TestPki, tls12_channel};
use e2e_tests::vpsie_fake::FakeConfig;
use telemetry::tls::ClientTlsFiles;
use vpsie_proto::rebalancer::v1 as pb;
use vpsie_proto::rebalancer::v1::rebalancer_service_client::RebalancerServiceClient;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN_ID: &str = "b7ad6b7169203331";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

fn client(pki: &TestPki, with_certificate: bool) -> ClientTlsFiles {
    ClientTlsFiles {
        ca: Some(pki.ca.clone()),
        cert: with_certificate.then(|| pki.client_cert.clone()),
        key: with_certificate.then(|| pki.client_key.clone()),
        flag: "--rebalancer-tls",
    }
}

/// `ListOperations` over a fresh channel to `url`.
async fn list(url: &str, tls: &ClientTlsFiles) -> Result<usize, String> {
    let channel =
        telemetry::tls::channel(url, tls, |e| e.connect_timeout(secs(5)).timeout(secs(10)))
            .map_err(|e| e.to_string())?;
    RebalancerServiceClient::new(channel)
        .list_operations(pb::ListOperationsRequest {})
        .await
        .map(|r| r.into_inner().operations.len())
        .map_err(|s| e2e_tests::probes::describe(&s))
}

/// `ListOperations` over a TLS 1.2 channel to `url`: a refused client certificate fails the
/// handshake, deterministically (see [`tls12_channel`]).
async fn list_tls12(url: &str, tls: &ClientTlsFiles) -> Result<usize, String> {
    RebalancerServiceClient::new(tls12_channel(url, tls))
        .list_operations(pb::ListOperationsRequest {})
        .await
        .map(|r| r.into_inner().operations.len())
        .map_err(|s| e2e_tests::probes::describe(&s))
}

/// The call failed as a refused TLS handshake does: UNAVAILABLE, for `reason`.
fn assert_refused(result: &Result<usize, String>, reason: &str) {
    let error = match result {
        Ok(count) => panic!("served ({count} operations) instead of refused for {reason}"),
        Err(error) => error,
    };
    assert!(error.starts_with("Unavailable: "), "{error}");
    assert!(error.contains(reason), "not refused for {reason}: {error}");
}

/// A worker node with one pod, replaced by a plan with another offering: the drain is preceded
/// by the safety re-check.
async fn replace_one(h: &mut Harness, id: &str) -> pb::Operation {
    let node = h.seed_node(WORKERS, WORKERS, "small");
    h.seed_pod("web-1", &node, "web");
    h.execute(plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "large")],
    ))
    .await;
    let op = h.wait_terminal(id, secs(60)).await;
    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    assert_eq!((op.done_count, op.failed_count), (1, 0), "{op:#?}");
    op
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_both_hops_refuses_clients_without_a_certificate() {
    let pki = TestPki::generate(&scratch_dir());
    let server_args = strings(&[
        "--tls-cert",
        &path(&pki.server_cert),
        "--tls-key",
        &path(&pki.server_key),
        "--tls-client-ca",
        &path(&pki.ca),
    ]);
    let mut rebalancer_args = server_args.clone();
    rebalancer_args.extend(strings(&[
        "--safety-tls-ca",
        &path(&pki.ca),
        "--safety-tls-cert",
        &path(&pki.client_cert),
        "--safety-tls-key",
        &path(&pki.client_key),
    ]));
    let mut h = Harness::start_with_extras(
        FakeConfig::default(),
        Extras {
            safety_args: server_args,
            safety_https: true,
            rebalancer_args,
            client_tls: Some(client(&pki, true)),
            ..Extras::default()
        },
    )
    .await;

    // The harness's client has a certificate: the replacement, re-check included, goes through.
    replace_one(&mut h, "mtls-replace").await;
    let rechecked = h.safety_logs().iter().any(|line| {
        line.contains(r#""method":"CanRemoveNode""#) && line.contains(r#""decision":"removable""#)
    });
    assert!(
        rechecked,
        "no re-check reached the safety-service:\n{:#?}",
        h.safety_logs()
    );

    let url = format!("https://127.0.0.1:{}", h.rebalancer_addr().port());
    assert_eq!(list(&url, &client(&pki, true)).await, Ok(1));
    // Over TLS 1.3 (what our clients speak) a refused certificate ends the connection after the
    // client's handshake, racing with its request: only the failure is certain. Over TLS 1.2 it
    // fails the handshake: UNAVAILABLE, with the server's alert.
    let refused = list(&url, &client(&pki, false)).await;
    assert!(
        refused.is_err(),
        "served without a certificate: {refused:?}"
    );
    assert_refused(
        &list_tls12(&url, &client(&pki, false)).await,
        "received fatal alert: CertificateRequired",
    );
    let stranger = ClientTlsFiles {
        cert: Some(pki.stranger_cert.clone()),
        key: Some(pki.stranger_key.clone()),
        ..client(&pki, false)
    };
    let refused = list(&url, &stranger).await;
    assert!(refused.is_err(), "served a stranger: {refused:?}");
    assert_refused(
        &list_tls12(&url, &stranger).await,
        "received fatal alert: UnknownCA",
    );
    // A client that trusts another CA does not accept the server.
    let other = TestPki::generate(&scratch_dir());
    assert_refused(
        &list(&url, &client(&other, true)).await,
        "invalid peer certificate",
    );
    let plaintext = list(
        &format!("http://{}", h.rebalancer_addr()),
        &ClientTlsFiles::default(),
    )
    .await;
    assert!(plaintext.is_err(), "served plaintext: {plaintext:?}");
    // Still serving those with a certificate.
    assert_eq!(list(&url, &client(&pki, true)).await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_a_client_ca_serves_a_client_that_only_trusts_the_ca() {
    let pki = TestPki::generate(&scratch_dir());
    let h = Harness::start_with_extras(
        FakeConfig::default(),
        Extras {
            rebalancer_args: strings(&[
                "--tls-cert",
                &path(&pki.server_cert),
                "--tls-key",
                &path(&pki.server_key),
            ]),
            client_tls: Some(client(&pki, false)),
            ..Extras::default()
        },
    )
    .await;
    let url = format!("https://localhost:{}", h.rebalancer_addr().port());
    assert_eq!(list(&url, &client(&pki, false)).await, Ok(0));
    let plaintext = list(
        &format!("http://{}", h.rebalancer_addr()),
        &ClientTlsFiles::default(),
    )
    .await;
    assert!(plaintext.is_err(), "served plaintext: {plaintext:?}");
}

/// The values of the samples of `name` whose labels include every one of `labels`.
fn samples(metrics: &str, name: &str, labels: &[&str]) -> Vec<f64> {
    metrics
        .lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) {
                return None;
            }
            labels
                .iter()
                .all(|label| rest.contains(label))
                .then(|| value.parse().ok())?
        })
        .collect()
}

fn one<'s>(
    spans: &'s [CollectedSpan],
    what: &str,
    found: impl Fn(&CollectedSpan) -> bool,
) -> &'s CollectedSpan {
    let matching: Vec<&CollectedSpan> = spans.iter().filter(|s| found(s)).collect();
    assert_eq!(
        matching.len(),
        1,
        "{what}: {matching:#?}\nall spans: {spans:#?}"
    );
    matching[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_plan_is_one_trace_across_both_services_and_shows_in_the_metrics() {
    let collector = OtlpCollector::start().await;
    let otel = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            collector.endpoint(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    let mut h = Harness::start_with_extras(
        FakeConfig::default(),
        Extras {
            safety_env: otel.clone(),
            rebalancer_env: otel,
            ..Extras::default()
        },
    )
    .await;
    let node = h.seed_node(WORKERS, WORKERS, "small");
    h.seed_pod("web-1", &node, "web");
    let id = "traced-replace";
    let mut request = tonic::Request::new(pb::ExecutePlanRequest {
        plan: Some(plan(
            id,
            WORKERS,
            pb::Strategy::Rolling,
            &[(&node, "small", "large")],
        )),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
            .parse()
            .expect("ascii"),
    );
    h.client.execute_plan(request).await.expect("ExecutePlan");
    let op = h.wait_terminal(id, secs(60)).await;
    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");

    // The operation's span ends with the operation: wait for the whole trace.
    let spans = collector
        .wait_for("the operation's trace", secs(30), |spans| {
            let trace: Vec<CollectedSpan> = spans
                .iter()
                .filter(|s| s.trace_id == TRACE_ID)
                .cloned()
                .collect();
            let has = |name: &str| trace.iter().any(|s| s.name == name);
            (has("operation")
                && has("vpsie.safety.v1.SafetyService/CanRemoveNode")
                && trace
                    .iter()
                    .any(|s| s.service_name == "safety-service" && s.kind == SPAN_KIND_SERVER))
            .then_some(trace)
        })
        .await;

    let execute = one(&spans, "the ExecutePlan server span", |s| {
        s.name == "vpsie.rebalancer.v1.RebalancerService/ExecutePlan"
    });
    assert_eq!(execute.service_name, "rebalancer-service");
    assert_eq!(execute.kind, SPAN_KIND_SERVER);
    assert_eq!(execute.parent_span_id, PARENT_SPAN_ID);
    assert_eq!(execute.attribute("rpc.grpc.status_code"), Some("0"));
    let operation = one(&spans, "the operation span", |s| s.name == "operation");
    assert_eq!(operation.parent_span_id, execute.span_id);
    assert_eq!(operation.attribute("operation"), Some(id));
    let recheck = one(&spans, "the re-check span", |s| s.name == "safety.recheck");
    assert_eq!(recheck.service_name, "rebalancer-service");
    assert_eq!(recheck.attribute("node"), Some(node.as_str()));
    let call = one(&spans, "the CanRemoveNode client span", |s| {
        s.name == "vpsie.safety.v1.SafetyService/CanRemoveNode" && s.kind == SPAN_KIND_CLIENT
    });
    assert_eq!(call.parent_span_id, recheck.span_id);
    let served = one(&spans, "the safety-service's server span", |s| {
        s.service_name == "safety-service" && s.kind == SPAN_KIND_SERVER
    });
    assert_eq!(served.name, "vpsie.safety.v1.SafetyService/CanRemoveNode");
    assert_eq!(served.parent_span_id, call.span_id);
    // The re-check is somewhere under the operation.
    let mut ancestor = recheck.parent_span_id.clone();
    let mut hops = 0;
    while ancestor != operation.span_id {
        let parent = spans
            .iter()
            .find(|s| s.span_id == ancestor)
            .unwrap_or_else(|| panic!("{ancestor} not in the trace: {spans:#?}"));
        ancestor = parent.parent_span_id.clone();
        hops += 1;
        assert!(
            hops < 10,
            "the re-check is not under the operation: {spans:#?}"
        );
    }

    // The metrics of the same run.
    let metrics = e2e_tests::probes::scrape(h.rebalancer_metrics()).await;
    assert_eq!(
        samples(
            &metrics,
            "grpc_server_handled_total",
            &[
                r#"grpc_service="vpsie.rebalancer.v1.RebalancerService""#,
                r#"grpc_method="ExecutePlan""#,
                r#"grpc_code="OK""#,
            ]
        ),
        [1.0],
        "{metrics}"
    );
    let get_calls = samples(
        &metrics,
        "grpc_server_handling_seconds_count",
        &[r#"grpc_method="GetOperation""#],
    );
    assert!(get_calls.iter().sum::<f64>() >= 1.0, "{metrics}");
    assert_eq!(
        samples(&metrics, "rebalancer_operations", &[r#"state="SUCCEEDED""#]),
        [1.0],
        "{metrics}"
    );
    // The machine was added (a POST answered 2xx) and its state read.
    let added: f64 = samples(
        &metrics,
        "vpsie_calls_total",
        &[r#"method="POST""#, r#"status="2"#],
    )
    .iter()
    .sum();
    assert!(added >= 1.0, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vpsie_calls_total{") && l.contains("route=\"/")),
        "{metrics}"
    );
    assert_eq!(
        samples(&metrics, "vpsie_circuit_breaker_open", &[]),
        [0.0],
        "{metrics}"
    );

    // SIGTERM: both exit cleanly (flushing their exporters).
    let (rebalancer, safety) = h.terminate_services();
    assert!(rebalancer.success(), "{rebalancer:?}");
    assert!(safety.success(), "{safety:?}");
}
