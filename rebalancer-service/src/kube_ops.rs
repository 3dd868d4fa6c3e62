//! The Kubernetes side of the executor over kube-rs: read and label nodes, cordon and taint,
//! drain through the Eviction API, delete Node objects.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use kube::core::Status;
use serde_json::json;

use crate::executor::{Cluster, DrainSpec};

pub const NODEGROUP_LABEL: &str = "autoscaler.vpsie.com/nodegroup";
pub const OFFERING_LABEL: &str = "autoscaler.vpsie.com/offering";
pub const DRAINING_TAINT: &str = "autoscaler.vpsie.com/draining";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// How often waiting loops look again.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub node_ready: Duration,
    pub pods_gone: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            node_ready: Duration::from_secs(5),
            pods_gone: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
    polling: Polling,
}

fn api_status(error: &kube::Error) -> Option<&Status> {
    match error {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

fn describe(error: &kube::Error) -> String {
    match api_status(error) {
        Some(status) => format!("{} ({})", status.message, status.code),
        None => error.to_string(),
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Pods the drain leaves alone: DaemonSet pods, mirror pods, finished pods.
fn stays(pod: &Pod) -> bool {
    let daemonset = pod
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|owners| {
            owners
                .iter()
                .any(|o| o.kind == "DaemonSet" && o.controller == Some(true))
        });
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    daemonset || mirror || finished
}

impl KubeCluster {
    pub fn new(client: kube::Client, polling: Polling) -> Self {
        KubeCluster { client, polling }
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    async fn pods_on(&self, node: &str) -> Result<Vec<Pod>, String> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map_err(|e| format!("listing pods on {node}: {}", describe(&e)))?;
        Ok(list.items)
    }

    /// Sets `spec.unschedulable` and adds or removes our taint, with the resourceVersion as a
    /// precondition (retried on conflict).
    async fn set_cordon(&self, node: &str, cordon: bool) -> Result<(), String> {
        for _ in 0..5 {
            let current = self
                .nodes()
                .get(node)
                .await
                .map_err(|e| format!("reading node {node}: {}", describe(&e)))?;
            let mut taints: Vec<Taint> = current
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.key != DRAINING_TAINT)
                .collect();
            if cordon {
                taints.push(Taint {
                    key: DRAINING_TAINT.to_string(),
                    effect: "NoSchedule".to_string(),
                    ..Taint::default()
                });
            }
            let patch = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {"unschedulable": cordon, "taints": taints},
            });
            match self
                .nodes()
                .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if api_status(&e).is_some_and(|s| s.is_conflict()) => continue,
                Err(e) => return Err(format!("patching node {node}: {}", describe(&e))),
            }
        }
        Err(format!("node {node} kept changing under us (5 conflicts)"))
    }
}

impl Cluster for KubeCluster {
    async fn node_group(&self, node: &str) -> Result<Option<String>, String> {
        match self.nodes().get_opt(node).await {
            Ok(Some(found)) => Ok(found
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(NODEGROUP_LABEL).cloned())),
            Ok(None) => Err(format!("node {node} not found")),
            Err(e) => Err(format!("reading node {node}: {}", describe(&e))),
        }
    }

    async fn wait_for_node(
        &self,
        hostname: &str,
        timeout: Duration,
        group: &str,
        offering: &str,
    ) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.nodes().get_opt(hostname).await {
                Ok(Some(node)) if is_ready(&node) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(node = hostname, error = %describe(&e), "reading the replacement node")
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "node {hostname} did not become Ready within {}s",
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(self.polling.node_ready).await;
        }
        let labels: BTreeMap<&str, &str> =
            [(NODEGROUP_LABEL, group), (OFFERING_LABEL, offering)].into();
        let patch = json!({"metadata": {"labels": labels}});
        self.nodes()
            .patch(hostname, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("labelling node {hostname}: {}", describe(&e)))?;
        Ok(hostname.to_string())
    }

    async fn cordon(&self, node: &str) -> Result<(), String> {
        self.set_cordon(node, true).await
    }

    async fn uncordon(&self, node: &str) -> Result<(), String> {
        match self.set_cordon(node, false).await {
            Err(message) if message.contains("(404)") => Ok(()),
            other => other,
        }
    }

    async fn drain(&self, node: &str, spec: DrainSpec) -> Result<(), String> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(u64::from(spec.timeout_seconds));
        let retry = Duration::from_secs(u64::from(spec.eviction_retry_seconds.max(1)));
        let to_evict: Vec<Pod> = self
            .pods_on(node)
            .await?
            .into_iter()
            .filter(|p| !stays(p))
            .collect();
        let mut evicted: HashSet<String> = HashSet::new();
        for pod in &to_evict {
            let namespace = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let params = EvictParams {
                delete_options: Some(DeleteParams {
                    grace_period_seconds: spec.pod_grace_period_seconds,
                    ..DeleteParams::default()
                }),
                ..EvictParams::default()
            };
            loop {
                match api.evict(&name, &params).await {
                    Ok(_) => break,
                    Err(e) if api_status(&e).is_some_and(|s| s.is_not_found()) => break,
                    Err(e) if api_status(&e).is_some_and(|s| s.code == 429) => {
                        if tokio::time::Instant::now() + retry > deadline {
                            return Err(format!(
                                "drain timed out after {}s: eviction of {namespace}/{name} still refused: {}",
                                spec.timeout_seconds,
                                describe(&e)
                            ));
                        }
                        tracing::info!(pod = %format!("{namespace}/{name}"), "eviction refused by a disruption budget; retrying");
                        tokio::time::sleep(retry).await;
                    }
                    Err(e) => return Err(format!("evicting {namespace}/{name}: {}", describe(&e))),
                }
            }
            if let Some(uid) = &pod.metadata.uid {
                evicted.insert(uid.clone());
            }
        }
        // Done when the evicted pods' UIDs are gone from the node.
        loop {
            let left: Vec<String> = self
                .pods_on(node)
                .await?
                .into_iter()
                .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| evicted.contains(u)))
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.metadata.namespace.unwrap_or_default(),
                        p.metadata.name.unwrap_or_default()
                    )
                })
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "drain timed out after {}s: {} pod(s) still on the node: {}",
                    spec.timeout_seconds,
                    left.len(),
                    left.join(", ")
                ));
            }
            tokio::time::sleep(self.polling.pods_gone).await;
        }
    }

    async fn annotate(
        &self,
        node: &str,
        annotations: &[(&str, Option<&str>)],
    ) -> Result<(), String> {
        let map: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.map_or(serde_json::Value::Null, |v| json!(v)),
                )
            })
            .collect();
        let patch = json!({"metadata": {"annotations": map}});
        self.nodes()
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| format!("annotating node {node}: {}", describe(&e)))
    }

    async fn delete_node(&self, node: &str) -> Result<(), String> {
        match self.nodes().delete(node, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if api_status(&e).is_some_and(|s| s.is_not_found()) => Ok(()),
            Err(e) => Err(format!("deleting node {node}: {}", describe(&e))),
        }
    }
}
