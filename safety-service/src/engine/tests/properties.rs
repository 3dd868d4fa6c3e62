//! Property tests: structurally valid random snapshots (with hostile values inside) never panic
//! the engine, and what it answers holds together.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::engine::{Deadline, EngineError};

fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("zone".to_string()),
        Just("kubernetes.io/hostname".to_string()),
        Just("app".to_string()),
        Just("gen".to_string()),
        "[a-z]{1,3}",
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("3".to_string()),
        "[a-z0-9]{0,3}"
    ]
}

fn quantity() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("100m".to_string()),
        Just("1".to_string()),
        Just("2Gi".to_string()),
        Just("0".to_string()),
        "[0-9]{1,4}(m|Mi|Gi|k|)",
        "\\PC{0,6}",
    ]
}

fn operator() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("In".to_string()),
        Just("NotIn".to_string()),
        Just("Exists".to_string()),
        Just("DoesNotExist".to_string()),
        Just("Gt".to_string()),
        Just("Bogus".to_string()),
    ]
}

fn selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        (label_key(), label_value()).prop_map(|(k, v)| json!({"matchLabels": {k: v}})),
        (label_key(), operator(), proptest::collection::vec(label_value(), 0..3))
            .prop_map(|(k, op, vals)| json!({"matchExpressions": [{"key": k, "operator": op, "values": vals}]})),
    ]
}

fn node_json(i: usize) -> impl Strategy<Value = Value> {
    (
        proptest::collection::btree_map(label_key(), label_value(), 0..4),
        quantity(),
        quantity(),
        proptest::option::of((
            label_key(),
            label_value(),
            prop_oneof![
                Just("NoSchedule"),
                Just("NoExecute"),
                Just("PreferNoSchedule"),
                Just("Weird")
            ],
        )),
        any::<bool>(),
    )
        .prop_map(move |(labels, cpu, memory, taint, cordoned)| {
            let mut node = node(&format!("n{i}"), &cpu, &memory);
            node["metadata"]["labels"] = json!(labels);
            node["spec"]["unschedulable"] = json!(cordoned);
            if let Some((k, v, effect)) = taint {
                node["spec"]["taints"] = json!([{"key": k, "value": v, "effect": effect}]);
            }
            node
        })
}

fn pod_json(i: usize, nodes: usize) -> impl Strategy<Value = Value> {
    (
        0..nodes + 1,
        quantity(),
        proptest::collection::btree_map(label_key(), label_value(), 0..3),
        proptest::option::of(selector()),
        proptest::option::of((selector(), label_key())),
        proptest::option::of((selector(), label_key(), 0..3i32)),
        proptest::option::of((label_key(), label_value())),
        proptest::option::of(0..3usize),
    )
        .prop_map(move |(node, cpu, labels, anti, affinity, spread, selector, owner)| {
            let bound = if node < nodes { format!("n{node}") } else { String::new() };
            let mut pod = pod("myapp", &format!("p{i}"), &bound, &cpu, "64Mi");
            pod["metadata"]["labels"] = json!(labels);
            if owner == Some(0) {
                pod["metadata"]["ownerReferences"] = json!([]);
            }
            if let Some(s) = anti {
                pod["spec"]["affinity"]["podAntiAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution":
                    [{"labelSelector": s, "topologyKey": "kubernetes.io/hostname"}]});
            }
            if let Some((s, key)) = affinity {
                pod["spec"]["affinity"]["podAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution":
                    [{"labelSelector": s, "topologyKey": key, "namespaceSelector": {}}]});
            }
            if let Some((s, key, skew)) = spread {
                pod["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": skew, "topologyKey": key,
                    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": s, "minDomains": 2}]);
            }
            if let Some((k, v)) = selector {
                pod["spec"]["nodeSelector"] = json!({k: v});
            }
            pod
        })
}

fn cluster() -> impl Strategy<Value = (pb::ClusterSnapshot, usize)> {
    (1usize..6).prop_flat_map(|nodes| {
        let node_list: Vec<_> = (0..nodes).map(node_json).collect();
        (
            node_list,
            (0usize..10),
            proptest::collection::vec(selector(), 0..2),
        )
            .prop_flat_map(move |(n, pods, pdb_selectors)| {
                let pod_list: Vec<_> = (0..pods).map(|i| pod_json(i, nodes)).collect();
                (Just(n), pod_list, Just(pdb_selectors)).prop_map(move |(n, p, sels)| {
                    let pdbs = sels
                        .into_iter()
                        .enumerate()
                        .map(|(i, s)| pdb("myapp", &format!("b{i}"), s, 1))
                        .collect();
                    (snapshot(n, p, pdbs), nodes)
                })
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_engine_never_panics_and_its_answers_hold_together((snapshot, nodes) in cluster(), target in 0usize..6) {
        let node = format!("n{}", target % nodes);
        let request = pb::CanRemoveNodeRequest {
            snapshot: Some(snapshot.clone()),
            node_name: node.clone(),
            options: Some(options()),
        };
        match crate::engine::can_remove_node(&super::view(&request), Deadline::NONE) {
            Ok(response) => {
                prop_assert!(response.placements.iter().all(|p| p.node_name != node));
                prop_assert_eq!(response.removable, response.blocking_pods.is_empty()
                    && response.reason == pb::RemovalReason::Removable as i32);
                for blocker in &response.blocking_pods {
                    prop_assert!(!blocker.message.is_empty());
                }
            }
            Err(EngineError::InvalidArgument { path, .. }) => prop_assert!(path.starts_with("snapshot.")),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }

        let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
        let many = pb::CanRemoveNodesRequest {
            snapshot: Some(snapshot.clone()),
            node_names: names,
            options: Some(options()),
            max_nodes: 0,
        };
        if let Ok(response) = crate::engine::can_remove_nodes(&super::view(&many), Deadline::NONE) {
            prop_assert!(response.removable_nodes.len() <= nodes);
            // a committed node never receives pods afterwards
            for (i, result) in response.results.iter().enumerate() {
                for later in &response.results[i + 1..] {
                    if result.removable {
                        prop_assert!(later.placements.iter().all(|p| p.node_name != result.node_name));
                    }
                }
            }
        }

        if let Some(question) = snapshot.pods.first().cloned() {
            let find = pb::FindSchedulableNodeRequest {
                snapshot: Some(snapshot),
                pod: Some(question),
                exclude_nodes: vec![],
                explain: true,
            };
            if let Ok(response) = crate::engine::find_schedulable_node(&super::view(&find), Deadline::NONE) {
                let mut sorted = response.feasible_nodes.clone();
                sorted.sort();
                prop_assert_eq!(&sorted, &response.feasible_nodes);
                prop_assert_eq!(response.feasible_nodes.len() + response.rejections.len(), nodes);
                prop_assert_eq!(response.found, !response.feasible_nodes.is_empty());
            }
        }
    }
}
