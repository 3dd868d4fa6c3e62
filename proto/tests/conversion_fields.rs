//! The k8s-openapi conversions: option-ness of selectors and volume sources, timestamps,
//! quantities, and fields the conformance corpus does not exercise — each checked against what
//! the JSON path gives for the same object.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vpsie_proto::convert::snapshot_from_objects;
use vpsie_proto::json::message_from_json;
use vpsie_proto::safety::v1 as pb;

/// The message for `object` by way of k8s-openapi, after checking the JSON path agrees.
fn converted<K, P>(object: Value) -> P
where
    K: DeserializeOwned,
    P: DeserializeOwned + PartialEq + std::fmt::Debug + for<'a> From<&'a K>,
{
    let typed: K = serde_json::from_value(object.clone()).expect("k8s-openapi accepts the object");
    let converted = P::from(&typed);
    let parsed: P = message_from_json(object).expect("pbjson accepts the object");
    assert_eq!(converted, parsed, "conversion and JSON parsing disagree");
    converted
}

fn pdb_with_spec(spec: Value) -> pb::PodDisruptionBudget {
    converted::<policy::PodDisruptionBudget, pb::PodDisruptionBudget>(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": spec,
        "status": {"currentHealthy": 3, "desiredHealthy": 2, "disruptionsAllowed": 1, "expectedPods": 3}
    }))
}

#[test]
fn pdb_empty_selector_is_present_and_missing_selector_is_absent() {
    let matches_all = pdb_with_spec(json!({"selector": {}, "minAvailable": 2}));
    let spec = matches_all.spec.expect("spec present");
    assert_eq!(spec.selector, Some(pb::LabelSelector::default()));
    assert_eq!(matches_all.status.map(|s| s.disruptions_allowed), Some(1));

    let matches_nothing = pdb_with_spec(json!({"maxUnavailable": "25%"}));
    let spec = matches_nothing.spec.expect("spec present");
    assert_eq!(spec.selector, None);
}

fn pod_with_spec(spec: Value) -> pb::PodSpec {
    converted::<core::Pod, pb::Pod>(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "team-a"},
        "spec": spec
    }))
    .spec
    .expect("spec present")
}

#[test]
fn affinity_term_selectors_keep_empty_apart_from_missing() {
    let spec = pod_with_spec(json!({
        "containers": [{"name": "web"}],
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {}, "namespaceSelector": {}},
            {"topologyKey": "kubernetes.io/hostname"}
        ]}}
    }));
    let terms = spec
        .affinity
        .and_then(|affinity| affinity.pod_anti_affinity)
        .map(|anti| anti.required_during_scheduling_ignored_during_execution)
        .expect("anti-affinity terms");
    assert_eq!(terms.len(), 2);
    assert_eq!(terms[0].label_selector, Some(pb::LabelSelector::default()));
    assert_eq!(
        terms[0].namespace_selector,
        Some(pb::LabelSelector::default())
    );
    assert_eq!(terms[1].label_selector, None);
    assert_eq!(terms[1].namespace_selector, None);
}

#[test]
fn topology_spread_selector_and_min_domains_keep_presence() {
    let spec = pod_with_spec(json!({
        "containers": [{"name": "web"}],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {}, "minDomains": 3},
            {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ]
    }));
    let constraints = spec.topology_spread_constraints;
    assert_eq!(
        constraints[0].label_selector,
        Some(pb::LabelSelector::default())
    );
    assert_eq!(constraints[0].min_domains, Some(3));
    assert_eq!(constraints[1].label_selector, None);
    assert_eq!(constraints[1].min_domains, None);
}

#[test]
fn empty_dir_braces_are_a_volume_source_and_missing_is_none() {
    let spec = pod_with_spec(json!({
        "containers": [{"name": "web"}],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}},
            {"name": "logs", "hostPath": {"path": "/var/log", "type": "Directory"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-0", "readOnly": true}},
            {"name": "config", "configMap": {"name": "settings"}}
        ]
    }));
    let volumes = spec.volumes;
    assert_eq!(volumes.len(), 5);
    assert_eq!(
        volumes[0].empty_dir,
        Some(pb::EmptyDirVolumeSource::default())
    );
    assert_eq!(
        volumes[1].empty_dir,
        Some(pb::EmptyDirVolumeSource {
            medium: "Memory".to_owned(),
            size_limit: "512Mi".to_owned(),
        })
    );
    assert_eq!(
        volumes[2].host_path,
        Some(pb::HostPathVolumeSource {
            path: "/var/log".to_owned(),
            r#type: "Directory".to_owned(),
        })
    );
    assert_eq!(
        volumes[3].persistent_volume_claim,
        Some(pb::PersistentVolumeClaimVolumeSource {
            claim_name: "data-0".to_owned(),
            read_only: true,
        })
    );
    // A volume source the snapshot does not carry leaves every carried source absent.
    assert_eq!(volumes[4].empty_dir, None);
    assert_eq!(volumes[4].host_path, None);
    assert_eq!(volumes[4].persistent_volume_claim, None);
}

#[test]
fn every_carried_pod_field_converts_like_its_json() {
    let pod = converted::<core::Pod, pb::Pod>(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1",
            "namespace": "team-a",
            "uid": "3f1c",
            "labels": {"app": "web"},
            "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes": "scratch"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9",
                                 "uid": "9a2b", "controller": true, "blockOwnerDeletion": true}],
            "creationTimestamp": "2024-05-01T00:10:00Z",
            "deletionTimestamp": "2024-05-02T13:45:07Z",
            "deletionGracePeriodSeconds": 30,
            "resourceVersion": "12345"
        },
        "spec": {
            "nodeName": "n01",
            "nodeSelector": {"disktype": "ssd"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
                         "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n09"]}]}
                    ]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 10, "preference": {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["3"]}]}}
                    ]
                },
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "podAffinityTerm": {"topologyKey": "zone",
                        "labelSelector": {"matchLabels": {"app": "db"}},
                        "namespaces": ["data"], "matchLabelKeys": ["pod-template-hash"],
                        "mismatchLabelKeys": ["tenant"]}}
                ]}
            },
            "tolerations": [
                {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
                {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "initContainers": [
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}
            ],
            "containers": [{
                "name": "web",
                "image": "nginx",
                "resources": {"requests": {"cpu": "0.5", "memory": "1e3"}, "limits": {"memory": "2Gi"}},
                "ports": [{"name": "http", "containerPort": 8080, "hostPort": 80, "protocol": "TCP", "hostIP": "10.0.0.1"}]
            }],
            "overhead": {"cpu": "250m", "memory": "120Mi"},
            "priority": 1000,
            "priorityClassName": "high",
            "resources": {"requests": {"cpu": "2k"}},
            "hostNetwork": true
        },
        "status": {"phase": "Running", "podIP": "10.1.2.3"}
    }));

    let metadata = pod.metadata.expect("metadata");
    assert_eq!(metadata.creation_timestamp, "2024-05-01T00:10:00Z");
    assert_eq!(metadata.deletion_timestamp, "2024-05-02T13:45:07Z");
    assert_eq!(metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(metadata.owner_references[0].controller, Some(true));
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.priority, Some(1000));
    assert!(spec.host_network);
    assert_eq!(spec.overhead.get("cpu").map(String::as_str), Some("250m"));
    let requests = &spec.containers[0]
        .resources
        .as_ref()
        .expect("container resources")
        .requests;
    // Quantities stay exactly as written.
    assert_eq!(requests.get("memory").map(String::as_str), Some("1e3"));
    assert_eq!(requests.get("cpu").map(String::as_str), Some("0.5"));
    assert_eq!(spec.init_containers[0].restart_policy, "Always");
    assert_eq!(spec.tolerations[1].toleration_seconds, Some(300));
    assert_eq!(spec.containers[0].ports[0].host_ip, "10.0.0.1");
    assert_eq!(
        pod.status.map(|status| status.phase).as_deref(),
        Some("Running")
    );
}

#[test]
fn node_fields_and_timestamps_convert_like_their_json() {
    let node = converted::<core::Node, pb::Node>(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n01", "labels": {"zone": "a"}, "creationTimestamp": "2023-12-31T23:59:59Z"},
        "spec": {
            "unschedulable": true,
            "providerID": "vpsie://1234",
            "taints": [
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2024-05-13T08:17:00Z"},
                {"key": "gpu", "value": "true", "effect": "NoSchedule"}
            ]
        },
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "7910m", "memory": "65011712Ki", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": "2024-05-13T08:17:00Z"}]
        }
    }));
    let spec = node.spec.expect("spec");
    assert!(spec.unschedulable);
    assert_eq!(spec.provider_id, "vpsie://1234");
    assert_eq!(spec.taints[0].time_added, "2024-05-13T08:17:00Z");
    assert_eq!(spec.taints[1].time_added, "");
    let status = node.status.expect("status");
    assert_eq!(status.conditions[0].r#type, "Ready");
    assert_eq!(
        status.allocatable.get("memory").map(String::as_str),
        Some("65011712Ki")
    );
}

#[test]
fn missing_spec_and_status_stay_absent() {
    let node = converted::<core::Node, pb::Node>(json!({"metadata": {"name": "bare"}}));
    assert_eq!(node.spec, None);
    assert_eq!(node.status, None);
    let pod_spec = pod_with_spec(json!({"containers": []}));
    assert_eq!(pod_spec.affinity, None);
    assert_eq!(pod_spec.resources, None);
    assert_eq!(pod_spec.priority, None);
}

#[test]
fn snapshot_from_objects_keeps_every_object_in_order() {
    let node = |name: &str| -> core::Node {
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("node")
    };
    let pod: core::Pod =
        serde_json::from_value(json!({"metadata": {"name": "web-1", "namespace": "team-a"}}))
            .expect("pod");
    let pdb: policy::PodDisruptionBudget = serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "team-a"}, "spec": {"selector": {}}}),
    )
    .expect("pdb");
    let namespace: core::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team-a", "labels": {"team": "a"}}}))
            .expect("namespace");

    let snapshot = snapshot_from_objects(&[node("n02"), node("n01")], &[pod], &[pdb], &[namespace]);
    let names: Vec<&str> = snapshot
        .nodes
        .iter()
        .filter_map(|node| node.metadata.as_ref())
        .map(|metadata| metadata.name.as_str())
        .collect();
    assert_eq!(names, ["n02", "n01"]);
    assert_eq!(snapshot.pods.len(), 1);
    assert_eq!(snapshot.pod_disruption_budgets.len(), 1);
    let namespace_labels = &snapshot.namespaces[0]
        .metadata
        .as_ref()
        .expect("namespace metadata")
        .labels;
    assert_eq!(namespace_labels.get("team").map(String::as_str), Some("a"));
}
