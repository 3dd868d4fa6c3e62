//! Behaviour tests of the engine through its entry points, on snapshots made by the fixture
//! builders below.

mod acceptance;
mod properties;
mod rules;

use serde_json::{Value, json};
use vpsie_proto::json::message_from_json;
use vpsie_proto::safety::v1 as pb;

/// Deep-merges `patch` into `base` (objects merge, everything else replaces).
pub fn merge(mut base: Value, patch: Value) -> Value {
    fn go(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(b), Value::Object(p)) => {
                for (k, v) in p {
                    go(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, p) => *b = p,
        }
    }
    go(&mut base, patch);
    base
}

pub fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "zone-a"}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

/// A ReplicaSet pod bound to `node`.
pub fn pod(namespace: &str, name: &str, node: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": format!("{name}-rs"), "uid": "u", "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "c",
                 "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
        "status": {"phase": "Running"}
    })
}

pub fn pdb(namespace: &str, name: &str, selector: Value, allowed: i32) -> Value {
    json!({"metadata": {"name": name, "namespace": namespace},
           "spec": {"selector": selector}, "status": {"disruptionsAllowed": allowed}})
}

pub fn snapshot(nodes: Vec<Value>, pods: Vec<Value>, pdbs: Vec<Value>) -> pb::ClusterSnapshot {
    message_from_json(json!({"nodes": nodes, "pods": pods, "podDisruptionBudgets": pdbs, "namespaces": [
        {"metadata": {"name": "default", "labels": {"kubernetes.io/metadata.name": "default"}}},
        {"metadata": {"name": "kube-system", "labels": {"kubernetes.io/metadata.name": "kube-system"}}},
        {"metadata": {"name": "myapp", "labels": {"kubernetes.io/metadata.name": "myapp", "team": "a"}}}
    ]}))
    .expect("fixture snapshot")
}

pub fn options() -> pb::RemovalOptions {
    pb::RemovalOptions {
        explain: true,
        ..Default::default()
    }
}

pub fn can_remove(
    snapshot: pb::ClusterSnapshot,
    node: &str,
    options: pb::RemovalOptions,
) -> pb::CanRemoveNodeResponse {
    super::can_remove_node(
        &view(&pb::CanRemoveNodeRequest {
            snapshot: Some(snapshot),
            node_name: node.to_string(),
            options: Some(options),
        }),
        super::Deadline::NONE,
    )
    .expect("engine answers")
}

/// The wire view of an owned message, as the engine reads it.
pub fn view<V: prost::Message + Default>(owned: &impl prost::Message) -> V {
    super::view_of(owned).expect("an owned message re-reads as its view")
}

pub fn blocking(response: &pb::CanRemoveNodeResponse) -> Vec<(String, pb::BlockingReason)> {
    response
        .blocking_pods
        .iter()
        .map(|b| {
            (
                format!("{}/{}", b.namespace, b.name),
                pb::BlockingReason::try_from(b.reason).unwrap_or(pb::BlockingReason::Unspecified),
            )
        })
        .collect()
}

pub fn placements(response: &pb::CanRemoveNodeResponse) -> Vec<(String, String)> {
    response
        .placements
        .iter()
        .map(|p| (format!("{}/{}", p.namespace, p.name), p.node_name.clone()))
        .collect()
}
