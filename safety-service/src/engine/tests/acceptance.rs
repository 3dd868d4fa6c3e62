//! The seed's acceptance criteria, as named tests.

use serde_json::json;
use vpsie_proto::safety::v1::{BlockingReason, RemovalReason};

use super::*;

fn gpu_cluster(toleration: Option<serde_json::Value>) -> pb::ClusterSnapshot {
    let tainted = merge(
        node("n2", "8", "16Gi"),
        json!({"spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]}}),
    );
    let mut job = pod("myapp", "web-abc123", "n1", "500m", "512Mi");
    if let Some(t) = toleration {
        job = merge(job, json!({"spec": {"tolerations": [t]}}));
    }
    snapshot(vec![node("n1", "8", "16Gi"), tainted], vec![job], vec![])
}

#[test]
fn ac1_toleration_blocked() {
    let response = can_remove(gpu_cluster(None), "n1", options());
    assert!(!response.removable);
    assert_eq!(response.reason, RemovalReason::NoPlaceToMovePods as i32);
    assert_eq!(
        blocking(&response),
        vec![("myapp/web-abc123".into(), BlockingReason::NoFeasibleNode)]
    );
    let rejection = &response.blocking_pods[0].rejections[0];
    assert_eq!(
        (rejection.node_name.as_str(), rejection.plugin.as_str()),
        ("n2", "TaintToleration")
    );
    assert_eq!(
        rejection.reason,
        "node(s) had untolerated taint {gpu: true}"
    );
}

#[test]
fn ac1_toleration_allowed() {
    let toleration =
        json!({"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"});
    let response = can_remove(gpu_cluster(Some(toleration)), "n1", options());
    assert!(response.removable, "{}", response.message);
    assert_eq!(
        placements(&response),
        vec![("myapp/web-abc123".into(), "n2".into())]
    );
}

#[test]
fn ac1_toleration_wildcard() {
    let response = can_remove(
        gpu_cluster(Some(json!({"operator": "Exists"}))),
        "n1",
        options(),
    );
    assert!(response.removable, "{}", response.message);
    assert_eq!(
        placements(&response),
        vec![("myapp/web-abc123".into(), "n2".into())]
    );
}

fn zoned_cluster(other_zone: &str) -> pb::ClusterSnapshot {
    let zoned = |name: &str, zone: &str| {
        merge(
            node(name, "8", "16Gi"),
            json!({"metadata": {"labels": {"zone": zone}}}),
        )
    };
    let web = merge(
        pod("myapp", "web-abc123", "n1", "500m", "512Mi"),
        json!({"spec": {"nodeSelector": {"zone": "us-east-1"}}}),
    );
    snapshot(
        vec![zoned("n1", "us-east-1"), zoned("n2", other_zone)],
        vec![web],
        vec![],
    )
}

#[test]
fn ac2_node_selector_blocked() {
    let response = can_remove(zoned_cluster("us-west-1"), "n1", options());
    assert!(!response.removable);
    assert_eq!(
        response.blocking_pods[0].rejections[0].plugin,
        "NodeAffinity"
    );
    assert_eq!(
        response.blocking_pods[0].rejections[0].reason,
        "node(s) didn't match Pod's node affinity/selector"
    );
}

#[test]
fn ac2_node_selector_allowed() {
    let response = can_remove(zoned_cluster("us-east-1"), "n1", options());
    assert!(response.removable, "{}", response.message);
    assert_eq!(
        placements(&response),
        vec![("myapp/web-abc123".into(), "n2".into())]
    );
}

fn anti_affinity_cluster(spare_node: bool) -> pb::ClusterSnapshot {
    let anti = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}});
    let pods = vec![
        merge(pod("myapp", "web-1", "n1", "100m", "128Mi"), anti.clone()),
        merge(pod("myapp", "web-2", "n2", "100m", "128Mi"), anti),
    ];
    let mut nodes = vec![node("n1", "8", "16Gi"), node("n2", "8", "16Gi")];
    if spare_node {
        nodes.push(node("n3", "8", "16Gi"));
    }
    snapshot(nodes, pods, vec![])
}

#[test]
fn ac3_hostname_anti_affinity_blocked() {
    let response = can_remove(anti_affinity_cluster(false), "n1", options());
    assert!(!response.removable);
    assert_eq!(
        blocking(&response),
        vec![("myapp/web-1".into(), BlockingReason::NoFeasibleNode)]
    );
    assert_eq!(
        response.blocking_pods[0].rejections[0].plugin,
        "InterPodAffinity"
    );
    assert_eq!(
        response.message,
        "pod myapp/web-1 cannot be rescheduled: every node violates its pod anti-affinity (topologyKey kubernetes.io/hostname)"
    );
}

#[test]
fn ac3_hostname_anti_affinity_allowed() {
    let response = can_remove(anti_affinity_cluster(true), "n1", options());
    assert!(response.removable, "{}", response.message);
    assert_eq!(
        placements(&response),
        vec![("myapp/web-1".into(), "n3".into())]
    );
}

#[test]
fn ac4_message_names_pod_and_node_selector() {
    let response = can_remove(zoned_cluster("us-west-1"), "n1", options());
    assert_eq!(
        response.message,
        "pod myapp/web-abc123 cannot be rescheduled: no node matches nodeSelector zone=us-east-1"
    );
    assert_eq!(response.blocking_pods[0].message, response.message);
}

#[test]
fn ac4_message_names_pod_and_taint() {
    let response = can_remove(gpu_cluster(None), "n1", options());
    assert_eq!(
        response.message,
        "pod myapp/web-abc123 cannot be rescheduled: no node tolerates taint gpu=true:NoSchedule"
    );
}

#[test]
fn ac4_mixed_rejections_use_the_scheduler_summary() {
    let tainted = merge(
        node("n2", "8", "16Gi"),
        json!({"spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]}}),
    );
    let snapshot = snapshot(
        vec![node("n1", "8", "16Gi"), tainted, node("n3", "1", "16Gi")],
        vec![pod("myapp", "big", "n1", "2", "1Gi")],
        vec![],
    );
    let response = can_remove(snapshot, "n1", options());
    assert_eq!(
        response.message,
        "pod myapp/big cannot be rescheduled: 0/2 nodes are available: 1 node(s) had untolerated taint {gpu: true}, 1 Insufficient cpu"
    );
    let summary: Vec<(String, i32)> = response.blocking_pods[0]
        .rejection_summary
        .iter()
        .map(|s| (s.plugin.clone(), s.node_count))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("TaintToleration".into(), 1),
            ("NodeResourcesFit".into(), 1)
        ]
    );
}

#[test]
fn ac6_unconstrained_small_pods_on_roomy_nodes_are_removable() {
    let pods = (0..12)
        .map(|i| pod("myapp", &format!("small-{i:02}"), "n1", "100m", "128Mi"))
        .collect();
    let snapshot = snapshot(
        vec![
            node("n1", "8", "32Gi"),
            node("n2", "8", "32Gi"),
            node("n3", "8", "32Gi"),
        ],
        pods,
        vec![],
    );
    let response = can_remove(snapshot, "n1", options());
    assert!(response.removable, "{}", response.message);
    assert_eq!(response.reason, RemovalReason::Removable as i32);
    assert_eq!(response.placements.len(), 12);
    // first fit in name order: everything lands on n2
    assert!(response.placements.iter().all(|p| p.node_name == "n2"));
    assert_eq!(
        response.message,
        "node n1 can be removed: 12 pod(s) can move to other nodes"
    );
    assert!(response.blocking_pods.is_empty());
}
