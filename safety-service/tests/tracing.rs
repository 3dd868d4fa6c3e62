//! The binary's traces and metrics, over real sockets: with `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! one `CanRemoveNode` produces a server span (and its `simulate` child) exported to an
//! in-process OTLP collector, as a child of the span named by the caller's `traceparent`; the
//! spans still queued at SIGTERM are exported before the process exits. `/metrics` shows the
//! call, its latency, the simulation time and the pods simulated.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::otlp_collector::{OtlpCollector, SPAN_KIND_SERVER};
use serde_json::Value;
use tonic::transport::Channel;
use vpsie_proto::safety::v1 as pb;
use vpsie_proto::safety::v1::safety_service_client::SafetyServiceClient;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

struct Binary {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    fn spawn(collector: &OtlpCollector) -> Binary {
        let mut command = Command::new(env!("CARGO_BIN_EXE_safety-service"));
        // Nothing the machine running the tests has set (OTEL_*, TLS files, the log format)
        // reaches the binary: only what is set below.
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if key.starts_with("OTEL_")
                || key.starts_with("SAFETY_")
                || key == "LOG_FORMAT"
                || key == "METRICS_LISTEN"
            {
                command.env_remove(key);
            }
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
            // Nothing is exported before shutdown: what the collector gets, SIGTERM flushed.
            .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts the binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Binary { child, logs }
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The gRPC and metrics addresses of the "safety-service serving" line.
    async fn addresses(&mut self) -> (SocketAddr, SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for line in self.logs() {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "safety-service serving"
                {
                    assert_eq!(v["tracing"], true, "{line}");
                    let addr = |key: &str| v[key].as_str().and_then(|a| a.parse().ok());
                    if let (Some(grpc), Some(metrics)) = (addr("listen"), addr("metrics_listen")) {
                        return (grpc, metrics);
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "exited ({status}) before serving:\n{}",
                    self.logs().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "not serving:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for a successful exit.
    async fn terminate(&mut self) {
        let killed = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("runs kill");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{status:?}:\n{}", self.logs().join("\n"));
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample `name{labels…}` whose labels include every one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        (rest.is_empty() || rest.starts_with('{'))
            .then_some(())
            .filter(|()| labels.iter().all(|label| rest.contains(label)))?;
        value.parse().ok()
    })
}

fn node(name: &str) -> pb::Node {
    let resources = || {
        [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    pb::Node {
        metadata: Some(pb::ObjectMeta {
            name: name.into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }),
        spec: Some(pb::NodeSpec::default()),
        status: Some(pb::NodeStatus {
            capacity: resources(),
            allocatable: resources(),
            conditions: vec![pb::NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
            }],
        }),
    }
}

fn pod(name: &str, node: &str) -> pb::Pod {
    pb::Pod {
        metadata: Some(pb::ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            owner_references: vec![pb::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web".into(),
                uid: "uid-rs".into(),
                controller: Some(true),
            }],
            ..Default::default()
        }),
        spec: Some(pb::PodSpec {
            node_name: node.into(),
            containers: vec![pb::Container {
                name: "app".into(),
                resources: Some(pb::ResourceRequirements {
                    requests: [("cpu".to_owned(), "100m".to_owned())].into(),
                    limits: Default::default(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_a_server_span_under_the_callers_traceparent_and_shows_in_the_metrics() {
    let collector = OtlpCollector::start().await;
    let mut binary = Binary::spawn(&collector);
    let (grpc, metrics_addr) = binary.addresses().await;
    let channel = Channel::from_shared(format!("http://{grpc}"))
        .expect("url")
        .connect()
        .await
        .expect("connects");

    let mut request = tonic::Request::new(pb::CanRemoveNodeRequest {
        snapshot: Some(pb::ClusterSnapshot {
            nodes: vec![node("n1"), node("n2")],
            pods: vec![pod("web-1", "n1"), pod("web-2", "n1")],
            ..Default::default()
        }),
        node_name: "n1".into(),
        options: Some(pb::RemovalOptions::default()),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
            .parse()
            .expect("ascii"),
    );
    let answer = SafetyServiceClient::new(channel.clone())
        .can_remove_node(request)
        .await
        .expect("answers")
        .into_inner();
    assert!(answer.removable, "{answer:?}");
    // A call without a traceparent starts a trace of its own.
    let _ = SafetyServiceClient::new(channel)
        .can_remove_nodes(pb::CanRemoveNodesRequest {
            snapshot: Some(pb::ClusterSnapshot {
                nodes: vec![node("n1")],
                ..Default::default()
            }),
            node_names: vec!["n1".into()],
            ..Default::default()
        })
        .await;

    let metrics = e2e_tests::probes::scrape(metrics_addr).await;
    let handled = [
        r#"grpc_service="vpsie.safety.v1.SafetyService""#,
        r#"grpc_method="CanRemoveNode""#,
        r#"grpc_code="OK""#,
    ];
    assert_eq!(
        sample(&metrics, "grpc_server_handled_total", &handled),
        Some(1.0),
        "{metrics}"
    );
    let method = [r#"grpc_method="CanRemoveNode""#];
    assert_eq!(
        sample(&metrics, "grpc_server_handling_seconds_count", &method),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "grpc_server_handling_seconds_sum", &method).is_some_and(|s| s > 0.0),
        "{metrics}"
    );
    let engine = [r#"method="CanRemoveNode""#];
    assert_eq!(
        sample(&metrics, "safety_simulation_seconds_count", &engine),
        Some(1.0),
        "{metrics}"
    );
    // Both pods of n1 were placed.
    assert_eq!(
        sample(&metrics, "safety_pods_simulated_total", &engine),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "safety_simulation_seconds_count",
            &[r#"method="CanRemoveNodes""#]
        ),
        Some(1.0),
        "{metrics}"
    );
    // Nothing is exported yet (the batch delay is long).
    assert!(collector.spans().is_empty(), "{:#?}", collector.spans());

    binary.terminate().await;
    let spans = collector
        .wait_for("the flushed spans", Duration::from_secs(10), |spans| {
            (spans.len() >= 4).then(|| spans.to_vec())
        })
        .await;
    let server = spans
        .iter()
        .find(|s| s.name == "vpsie.safety.v1.SafetyService/CanRemoveNode")
        .unwrap_or_else(|| panic!("no CanRemoveNode span: {spans:#?}"));
    assert_eq!(server.service_name, "safety-service");
    assert_eq!(server.kind, SPAN_KIND_SERVER);
    assert_eq!(server.trace_id, TRACE_ID);
    assert_eq!(server.parent_span_id, PARENT_SPAN_ID);
    assert_eq!(server.attribute("rpc.system"), Some("grpc"));
    assert_eq!(server.attribute("rpc.method"), Some("CanRemoveNode"));
    assert_eq!(server.attribute("rpc.grpc.status_code"), Some("0"));
    let simulate = spans
        .iter()
        .find(|s| s.name == "simulate" && s.parent_span_id == server.span_id)
        .unwrap_or_else(|| panic!("no simulate child: {spans:#?}"));
    assert_eq!(simulate.trace_id, TRACE_ID);

    let other = spans
        .iter()
        .find(|s| s.name == "vpsie.safety.v1.SafetyService/CanRemoveNodes")
        .unwrap_or_else(|| panic!("no CanRemoveNodes span: {spans:#?}"));
    assert_ne!(other.trace_id, TRACE_ID);
    assert!(other.parent_span_id.is_empty(), "{other:?}");
    // Health checks and reflection are not exported.
    assert!(
        spans.iter().all(|s| !s.name.starts_with("grpc.health")),
        "{spans:#?}"
    );
}
