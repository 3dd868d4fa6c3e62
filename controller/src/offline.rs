//! `controller plan`: one scan over a `kubectl get nodes,pods,pdb,namespaces -A -o json` dump.
//!
//! The dump is loaded with the proto crate's loader; the safety-service runs in-process on a
//! loopback ephemeral port unless an endpoint is named; the unneeded timer counts as satisfied
//! (one scan has no history) and the report says so. `CanRemoveNodes` is always called, with no
//! candidates if need be, so that the whole dump is validated. Nothing is submitted and nothing
//! is written anywhere: the report goes to the caller.
//!
//! Bad input is an [`OfflineError::Input`] naming the dump's item and field, e.g.
//! `items[12] (Pod team-a/web-1).spec.containers[0].resources.requests.cpu: invalid quantity "12x"`,
//! whether the loader, the planner or the safety-service (`INVALID_ARGUMENT` with a
//! `snapshot.pods[i]…` path) found it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use telemetry::tls::ClientTlsFiles;
use tonic::Code;
use vpsie_proto::json::JsonError;
use vpsie_proto::safety::v1::{self as pb, safety_service_client::SafetyServiceClient};

use crate::clients::SAFETY_TIMEOUT;
use crate::config::{Config, ConfigError, NodeGroup};
use crate::planner::{
    self, InFlight, NODEGROUP_LABEL, SafetyAnswers, Timers, UnneededTimer, percent,
};
use crate::report;

/// Largest message exchanged with the safety-service (its own default limit is 256 MiB).
const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;
/// How long the in-process server may take to stop.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long connecting to the safety-service (TCP, then TLS for `https://`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What `controller plan` is asked to do.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub cluster_file: PathBuf,
    /// Without it: built-in defaults, node groups inferred from the dump.
    pub config: Option<PathBuf>,
    /// Without it: an in-process safety-service on loopback.
    pub safety_endpoint: Option<String>,
    /// CA and client certificate for an `https://` safety endpoint.
    pub safety_tls: ClientTlsFiles,
}

/// Why `controller plan` failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The dump cannot be read or is invalid: the message names the item and field.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Anything else: the safety-service cannot be started or reached, or failed.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl OfflineError {
    /// 2 for bad input (dump or configuration), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            OfflineError::Input(_) | OfflineError::Config(_) => 2,
            OfflineError::Failed(_) => 1,
        }
    }
}

/// Runs one offline scan and returns the report.
pub async fn plan(request: &PlanRequest) -> Result<String, OfflineError> {
    let file = request.cluster_file.display().to_string();
    let bytes = std::fs::read(&request.cluster_file)
        .map_err(|error| OfflineError::Input(format!("{file}: cannot read: {error}")))?;
    let snapshot = vpsie_proto::json::snapshot_from_kubectl_list(&bytes)
        .map_err(|error| OfflineError::Input(format!("{file}: {}", describe_json_error(&error))))?;
    let items = DumpItems::of(&bytes);
    let input_error = |error: planner::SnapshotError| {
        OfflineError::Input(format!(
            "{file}: {}",
            items.locate(&snapshot, &error.path, &error.message)
        ))
    };

    let (config, config_line) = match &request.config {
        Some(path) => {
            let config = Config::load(path)?;
            let line = format!(
                "config: {} (cluster {:?}, {} node group(s), dryRun {})",
                path.display(),
                config.cluster,
                config.node_groups.len(),
                config.dry_run
            );
            (config, line)
        }
        None => {
            let config = inferred_config(&snapshot);
            let groups: Vec<String> = config
                .node_groups
                .iter()
                .map(|g| {
                    format!(
                        "{} ({} node{})",
                        g.name,
                        g.max_nodes,
                        if g.max_nodes == 1 { "" } else { "s" }
                    )
                })
                .collect();
            let line = format!(
                "config: built-in defaults (no --config); node groups inferred from the {NODEGROUP_LABEL} labels, each with minNodes 1 and no target offering (so nothing drifts): {}",
                if groups.is_empty() {
                    "none".to_owned()
                } else {
                    groups.join(", ")
                }
            );
            (config, line)
        }
    };

    let in_flight = InFlight::default();
    let survey = planner::survey(&snapshot, &config, &in_flight).map_err(input_error)?;

    let (endpoint_line, answers) = {
        let (endpoint, server) = match &request.safety_endpoint {
            Some(endpoint) => (endpoint.clone(), None),
            None => {
                let (endpoint, server) = InProcessSafety::start().await?;
                (endpoint, Some(server))
            }
        };
        let answers = ask(&endpoint, &request.safety_tls, &survey, &snapshot).await;
        if let Some(server) = server {
            server.stop().await;
        }
        let line = match &request.safety_endpoint {
            Some(endpoint) => format!("safety-service: {endpoint}"),
            None => "safety-service: in-process on loopback".to_owned(),
        };
        match answers {
            Ok(answers) => (line, answers),
            Err(AskError::Invalid(status)) => {
                let message = status.message();
                let (path, what) = message.split_once(": ").unwrap_or((message, ""));
                return Err(OfflineError::Input(format!(
                    "{file}: {}",
                    items.locate(&snapshot, path, what)
                )));
            }
            Err(AskError::Failed(error)) => return Err(OfflineError::Failed(error)),
        }
    };

    let scan = planner::decide(
        &survey,
        &config,
        &answers,
        &Timers::default(),
        &in_flight,
        SystemTime::now(),
        UnneededTimer::AssumeSatisfied,
    );

    let header = vec![
        format!(
            "controller plan (offline: one scan, nothing submitted, nothing written): {file}: {} nodes, {} pods, {} PodDisruptionBudgets, {} namespaces",
            snapshot.nodes.len(),
            snapshot.pods.len(),
            snapshot.pod_disruption_budgets.len(),
            snapshot.namespaces.len()
        ),
        config_line,
        endpoint_line,
        settings_line(&config),
    ];
    Ok(report::render(&header, &scan))
}

fn settings_line(config: &Config) -> String {
    let scale_down = &config.scale_down;
    let scale_down = if scale_down.enabled {
        format!(
            "scale-down: threshold {}, unneededTime {} (treated as satisfied: one offline scan has no history), maxParallel {}",
            percent(scale_down.utilization_threshold),
            humantime::format_duration(scale_down.unneeded_time),
            scale_down.max_parallel
        )
    } else {
        "scale-down: disabled".to_owned()
    };
    let rebalance = if config.rebalance.enabled {
        format!(
            "rebalance: {}, batch size {}",
            config.rebalance.strategy.as_str(),
            config.rebalance.batch_size
        )
    } else {
        "rebalance: disabled".to_owned()
    };
    format!("{scale_down}; {rebalance}")
}

/// Built-in defaults, with one group per `nodegroup` label value of the dump: minNodes 1,
/// maxNodes its node count, no offering.
pub fn inferred_config(snapshot: &pb::ClusterSnapshot) -> Config {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for node in &snapshot.nodes {
        if let Some(group) = node
            .metadata
            .as_ref()
            .and_then(|m| m.labels.get(NODEGROUP_LABEL))
            .filter(|g| !g.is_empty())
        {
            *counts.entry(group).or_default() += 1;
        }
    }
    Config {
        node_groups: counts
            .into_iter()
            .map(|(name, count)| NodeGroup {
                name: name.to_owned(),
                min_nodes: 1,
                max_nodes: count.max(1),
                offering: None,
            })
            .collect(),
        ..Config::default()
    }
}

enum AskError {
    /// `INVALID_ARGUMENT`: the snapshot is malformed.
    Invalid(tonic::Status),
    Failed(anyhow::Error),
}

/// Asks `CanRemoveNodes` (always, to validate the dump) and `CanRemoveNode` per drift candidate.
async fn ask(
    endpoint: &str,
    tls: &ClientTlsFiles,
    survey: &planner::Survey,
    snapshot: &pb::ClusterSnapshot,
) -> Result<SafetyAnswers, AskError> {
    // The TLS files are read and the endpoint parsed here; the connection is made by the first
    // call. A safety-service that accepts the connection but never completes it (TCP, TLS) or
    // never answers fails the command, naming the endpoint, instead of hanging it.
    let channel = telemetry::tls::channel(endpoint, tls, |endpoint| {
        endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(SAFETY_TIMEOUT)
    })
    .map_err(|error| {
        AskError::Failed(anyhow::anyhow!(
            "safety-service endpoint {endpoint:?}: {}",
            with_sources(&error)
        ))
    })?;
    let mut client = SafetyServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let failed = |method: &str, status: tonic::Status| {
        if status.code() == Code::InvalidArgument {
            AskError::Invalid(status)
        } else {
            AskError::Failed(anyhow::anyhow!(
                "{method} at {endpoint}: {:?}: {}",
                status.code(),
                status.message()
            ))
        }
    };

    let request = survey
        .can_remove_nodes_request(snapshot.clone())
        .unwrap_or_else(|| pb::CanRemoveNodesRequest {
            snapshot: Some(snapshot.clone()),
            options: Some(pb::RemovalOptions::default()),
            ..Default::default()
        });
    let removal = client
        .can_remove_nodes(request)
        .await
        .map_err(|status| failed("CanRemoveNodes", status))?
        .into_inner();

    let mut drift = BTreeMap::new();
    for request in survey.can_remove_node_requests(snapshot) {
        let name = request.node_name.clone();
        let answer = client
            .can_remove_node(request)
            .await
            .map_err(|status| failed("CanRemoveNode", status))?
            .into_inner();
        drift.insert(name, answer);
    }
    Ok(SafetyAnswers {
        removal: Some(removal),
        drift,
    })
}

/// An error and its sources, `: `-separated (tonic's transport errors say little on their own).
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The safety-service, served by this process on a loopback ephemeral port (`controller plan`,
/// and `controller run` without `--safety-endpoint`).
pub struct InProcessSafety {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcessSafety {
    pub async fn start() -> Result<(String, InProcessSafety), OfflineError> {
        use safety_service::{metrics::Metrics, server};
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            OfflineError::Failed(anyhow::anyhow!(
                "starting the in-process safety-service: {what}: {error}"
            ))
        };
        let router = server::router(&server::ServerConfig::default(), Arc::new(Metrics::new()))
            .await
            .map_err(|error| fail("building the services", &error))?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|error| fail("binding 127.0.0.1:0", &error))?;
        let address = listener
            .local_addr()
            .map_err(|error| fail("reading the address", &error))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = router.serve_with_shutdown(listener, shutdown).await {
                tracing::warn!(%error, "the in-process safety-service failed");
            }
        });
        Ok((format!("http://{address}"), InProcessSafety { stop, task }))
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// The loader's error, with an invalid item's field written after the object as in
/// `items[12] (Pod team-a/web-1).spec.containers[0]…`.
fn describe_json_error(error: &JsonError) -> String {
    match error {
        JsonError::InvalidItem {
            index,
            object,
            field_error,
        } => {
            if field_error.path.is_empty() {
                format!("items[{index}] ({object}): {}", field_error.message)
            } else {
                format!(
                    "items[{index}] ({object}).{}: {}",
                    field_error.path, field_error.message
                )
            }
        }
        other => other.to_string(),
    }
}

/// Where each snapshot object came from in the dump: the `items` index of the i-th Node, Pod,
/// PodDisruptionBudget and Namespace, in the loader's order.
#[derive(Debug, Default)]
struct DumpItems {
    nodes: Vec<usize>,
    pods: Vec<usize>,
    pod_disruption_budgets: Vec<usize>,
    namespaces: Vec<usize>,
}

impl DumpItems {
    /// Reads the kinds of the items again (the loader accepted the dump, so it is well formed).
    fn of(bytes: &[u8]) -> DumpItems {
        let mut items = DumpItems::default();
        let Ok(document) = serde_json::from_slice::<Value>(bytes) else {
            return items;
        };
        let (list, typed_kind) = match &document {
            Value::Array(list) => (list.as_slice(), None),
            Value::Object(fields) => {
                let typed_kind = match fields.get("kind") {
                    Some(Value::String(kind)) if kind != "List" => kind
                        .strip_suffix("List")
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned),
                    _ => None,
                };
                match fields.get("items") {
                    Some(Value::Array(list)) => (list.as_slice(), typed_kind),
                    _ => (&[][..], None),
                }
            }
            _ => (&[][..], None),
        };
        for (index, item) in list.iter().enumerate() {
            let kind = match item.get("kind") {
                Some(Value::String(kind)) => Some(kind.as_str()),
                _ => typed_kind.as_deref(),
            };
            match kind {
                Some("Node") => items.nodes.push(index),
                Some("Pod") => items.pods.push(index),
                Some("PodDisruptionBudget") => items.pod_disruption_budgets.push(index),
                Some("Namespace") => items.namespaces.push(index),
                _ => {}
            }
        }
        items
    }

    /// Rewrites a snapshot path (`snapshot.pods[3].spec…["cpu"]`) as the dump's
    /// `items[N] (Pod ns/name).spec….cpu`, followed by the message.
    fn locate(&self, snapshot: &pb::ClusterSnapshot, path: &str, message: &str) -> String {
        let located = self
            .item_of(snapshot, path)
            .unwrap_or_else(|| path.to_owned());
        if message.is_empty() {
            located
        } else {
            format!("{located}: {message}")
        }
    }

    fn item_of(&self, snapshot: &pb::ClusterSnapshot, path: &str) -> Option<String> {
        let rest = path.strip_prefix("snapshot.")?;
        let open = rest.find('[')?;
        let close = open + rest[open..].find(']')?;
        let collection = &rest[..open];
        let position: usize = rest[open + 1..close].parse().ok()?;
        let field = &rest[close + 1..];
        let (indices, kind, meta) = match collection {
            "nodes" => (
                &self.nodes,
                "Node",
                snapshot.nodes.get(position)?.metadata.as_ref(),
            ),
            "pods" => (
                &self.pods,
                "Pod",
                snapshot.pods.get(position)?.metadata.as_ref(),
            ),
            "podDisruptionBudgets" => (
                &self.pod_disruption_budgets,
                "PodDisruptionBudget",
                snapshot
                    .pod_disruption_budgets
                    .get(position)?
                    .metadata
                    .as_ref(),
            ),
            "namespaces" => (
                &self.namespaces,
                "Namespace",
                snapshot.namespaces.get(position)?.metadata.as_ref(),
            ),
            _ => return None,
        };
        let index = indices.get(position)?;
        let namespace = meta.map_or("", |m| m.namespace.as_str());
        let name = meta.map_or("", |m| m.name.as_str());
        let object = match (namespace.is_empty(), name.is_empty()) {
            (false, false) => format!("{kind} {namespace}/{name}"),
            (true, false) => format!("{kind} {name}"),
            (false, true) => format!("{kind} {namespace}/<no name>"),
            (true, true) => kind.to_owned(),
        };
        Some(format!(
            "items[{index}] ({object}){}",
            json_field_path(field)
        ))
    }
}

/// `.spec.containers[0].resources.requests["cpu"]` → `.spec.containers[0].resources.requests.cpu`
/// (map keys that are plain label-like names are written as fields, as JSON paths usually are).
fn json_field_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(start) = rest.find("[\"") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("\"]") {
            Some(end)
                if after[..end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) =>
            {
                out.push('.');
                out.push_str(&after[..end]);
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str("[\"");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_paths_become_dump_items() {
        let dump = br#"{"kind": "List", "items": [
            {"kind": "Namespace", "metadata": {"name": "team-a"}},
            {"kind": "Node", "metadata": {"name": "n1"}},
            {"kind": "Pod", "metadata": {"name": "web-0", "namespace": "team-a"}},
            {"kind": "Service", "metadata": {"name": "svc", "namespace": "team-a"}},
            {"kind": "Pod", "metadata": {"name": "web-1", "namespace": "team-a"}}
        ]}"#;
        let snapshot = vpsie_proto::json::snapshot_from_kubectl_list(dump).unwrap();
        let items = DumpItems::of(dump);
        assert_eq!(
            items.locate(
                &snapshot,
                "snapshot.pods[1].spec.containers[0].resources.requests[\"cpu\"]",
                "invalid quantity \"12x\""
            ),
            "items[4] (Pod team-a/web-1).spec.containers[0].resources.requests.cpu: invalid quantity \"12x\""
        );
        assert_eq!(
            items.locate(
                &snapshot,
                "snapshot.nodes[0].status.allocatable[\"a b\"]",
                "bad"
            ),
            "items[1] (Node n1).status.allocatable[\"a b\"]: bad"
        );
        assert_eq!(
            items.locate(&snapshot, "snapshot.namespaces[0].metadata.name", "x"),
            "items[0] (Namespace team-a).metadata.name: x"
        );
        // Paths that are not about an object are kept.
        assert_eq!(items.locate(&snapshot, "maxNodes", "x"), "maxNodes: x");
        assert_eq!(
            items.locate(&snapshot, "snapshot.pods[9].spec", "x"),
            "snapshot.pods[9].spec: x"
        );
    }

    #[test]
    fn typed_lists_and_bare_arrays_are_indexed_too() {
        let dump =
            br#"{"kind": "PodList", "items": [{"metadata": {"name": "a", "namespace": "x"}}]}"#;
        let snapshot = vpsie_proto::json::snapshot_from_kubectl_list(dump).unwrap();
        assert_eq!(
            DumpItems::of(dump).locate(&snapshot, "snapshot.pods[0].metadata", "m"),
            "items[0] (Pod x/a).metadata: m"
        );
        let dump = br#"[{"kind": "Node", "metadata": {"name": "n"}}]"#;
        let snapshot = vpsie_proto::json::snapshot_from_kubectl_list(dump).unwrap();
        assert_eq!(
            DumpItems::of(dump).locate(&snapshot, "snapshot.nodes[0]", "m"),
            "items[0] (Node n): m"
        );
    }

    #[test]
    fn inferred_groups_have_min_nodes_one_and_no_offering() {
        let dump = br#"{"kind": "List", "items": [
            {"kind": "Node", "metadata": {"name": "a", "labels": {"autoscaler.vpsie.com/nodegroup": "web"}}},
            {"kind": "Node", "metadata": {"name": "b", "labels": {"autoscaler.vpsie.com/nodegroup": "web"}}},
            {"kind": "Node", "metadata": {"name": "c", "labels": {"autoscaler.vpsie.com/nodegroup": "db"}}},
            {"kind": "Node", "metadata": {"name": "d"}}
        ]}"#;
        let snapshot = vpsie_proto::json::snapshot_from_kubectl_list(dump).unwrap();
        let config = inferred_config(&snapshot);
        assert_eq!(
            config.node_groups,
            vec![
                NodeGroup {
                    name: "db".into(),
                    min_nodes: 1,
                    max_nodes: 1,
                    offering: None
                },
                NodeGroup {
                    name: "web".into(),
                    min_nodes: 1,
                    max_nodes: 2,
                    offering: None
                },
            ]
        );
    }
}
