//! Rules the v1.28-based corpus cannot reach: drainability and its options, budgets across nodes,
//! destinations that are not Ready or are going away, sidecars and pod-level resources in
//! placement, matchLabelKeys/mismatchLabelKeys, and the deadline.

use serde_json::json;
use vpsie_proto::safety::v1::{BlockingReason, RemovalReason, SkipReason};

use super::*;
use crate::engine::{Deadline, EngineError};

fn two_nodes(pods: Vec<Value>, pdbs: Vec<Value>) -> pb::ClusterSnapshot {
    snapshot(
        vec![node("n1", "8", "16Gi"), node("n2", "8", "16Gi")],
        pods,
        pdbs,
    )
}

fn bare(namespace: &str, name: &str) -> Value {
    merge(
        pod(namespace, name, "n1", "100m", "64Mi"),
        json!({"metadata": {"ownerReferences": []}}),
    )
}

fn skipped(response: &pb::CanRemoveNodeResponse) -> Vec<(String, SkipReason)> {
    response
        .skipped_pods
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                SkipReason::try_from(s.reason).unwrap_or(SkipReason::Unspecified),
            )
        })
        .collect()
}

#[test]
fn pods_that_stay_or_need_no_home_are_skipped() {
    let pods = vec![
        merge(
            pod("kube-system", "etcd-n1", "n1", "100m", "64Mi"),
            json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}}),
        ),
        merge(
            pod("myapp", "done", "n1", "4", "1Gi"),
            json!({"status": {"phase": "Succeeded"}}),
        ),
        merge(
            pod("myapp", "leaving", "n1", "100m", "64Mi"),
            json!({"metadata": {"deletionTimestamp": "2026-11-26T08:00:00Z"}}),
        ),
        merge(
            pod("myapp", "proxy", "n1", "100m", "64Mi"),
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "proxy", "uid": "d", "controller": true}]}}),
        ),
    ];
    let response = can_remove(two_nodes(pods, vec![]), "n1", options());
    assert!(response.removable, "{}", response.message);
    assert!(response.placements.is_empty());
    let mut got = skipped(&response);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("done".into(), SkipReason::Terminal),
            ("etcd-n1".into(), SkipReason::Mirror),
            ("leaving".into(), SkipReason::Terminating),
            ("proxy".into(), SkipReason::Daemonset),
        ]
    );
    assert_eq!(
        response.message,
        "node n1 can be removed: no pod needs to move"
    );
}

#[test]
fn unreplicated_pod_blocks_unless_allowed() {
    let response = can_remove(
        two_nodes(vec![bare("myapp", "lonely")], vec![]),
        "n1",
        options(),
    );
    assert_eq!(
        blocking(&response),
        vec![("myapp/lonely".into(), BlockingReason::NotReplicated)]
    );
    assert_eq!(response.reason, RemovalReason::BlockedByPod as i32);
    assert!(response.placements.is_empty());
    let allowed = pb::RemovalOptions {
        allow_unreplicated_pods: true,
        ..options()
    };
    assert!(
        can_remove(
            two_nodes(vec![bare("myapp", "lonely")], vec![]),
            "n1",
            allowed
        )
        .removable
    );
}

#[test]
fn safe_to_evict_true_overrides_the_other_rules_and_false_blocks() {
    for key in [
        "autoscaler.vpsie.com/safe-to-evict",
        "cluster-autoscaler.kubernetes.io/safe-to-evict",
    ] {
        let willing = merge(
            bare("myapp", "lonely"),
            json!({"metadata": {"annotations": {key: "true"}}}),
        );
        assert!(
            can_remove(two_nodes(vec![willing], vec![]), "n1", options()).removable,
            "{key}"
        );
        let unwilling = merge(
            pod("myapp", "precious", "n1", "100m", "64Mi"),
            json!({"metadata": {"annotations": {key: "false"}}}),
        );
        let response = can_remove(two_nodes(vec![unwilling], vec![]), "n1", options());
        assert_eq!(
            blocking(&response),
            vec![("myapp/precious".into(), BlockingReason::NotSafeToEvict)]
        );
    }
}

#[test]
fn kube_system_pods_need_a_budget_or_the_option() {
    let dns = pod("kube-system", "coredns-1", "n1", "100m", "64Mi");
    let response = can_remove(two_nodes(vec![dns.clone()], vec![]), "n1", options());
    assert_eq!(
        blocking(&response),
        vec![(
            "kube-system/coredns-1".into(),
            BlockingReason::UnmovableKubeSystem
        )]
    );
    let budget = pdb(
        "kube-system",
        "dns",
        json!({"matchLabels": {"app": "coredns-1"}}),
        1,
    );
    assert!(can_remove(two_nodes(vec![dns.clone()], vec![budget]), "n1", options()).removable);
    let allowed = pb::RemovalOptions {
        allow_kube_system_pods: true,
        ..options()
    };
    assert!(can_remove(two_nodes(vec![dns], vec![]), "n1", allowed).removable);
}

#[test]
fn local_storage_blocks_unless_listed_memory_backed_or_allowed() {
    let volumes = json!({"spec": {"volumes": [
        {"name": "scratch", "emptyDir": {}},
        {"name": "cache", "emptyDir": {"medium": "Memory"}},
        {"name": "logs", "hostPath": {"path": "/var/log"}}]}});
    let with_volumes = merge(pod("myapp", "db", "n1", "100m", "64Mi"), volumes);
    let response = can_remove(
        two_nodes(vec![with_volumes.clone()], vec![]),
        "n1",
        options(),
    );
    assert_eq!(
        blocking(&response),
        vec![("myapp/db".into(), BlockingReason::LocalStorage)]
    );
    assert!(
        response.message.contains("\"scratch\""),
        "{}",
        response.message
    );

    let listed = merge(
        with_volumes.clone(),
        json!({"metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes": "scratch, logs"}}}),
    );
    assert!(can_remove(two_nodes(vec![listed], vec![]), "n1", options()).removable);
    let allowed = pb::RemovalOptions {
        allow_local_storage: true,
        ..options()
    };
    assert!(can_remove(two_nodes(vec![with_volumes], vec![]), "n1", allowed).removable);
}

#[test]
fn every_blocker_is_listed_rules_first_then_homeless_pods() {
    let pods = vec![
        pod("myapp", "huge-a", "n1", "7", "1Gi"),
        pod("myapp", "huge-b", "n1", "7", "1Gi"),
        bare("myapp", "lonely"),
        pod("myapp", "small", "n1", "100m", "64Mi"),
    ];
    let response = can_remove(two_nodes(pods, vec![]), "n1", options());
    assert_eq!(
        blocking(&response),
        vec![
            ("myapp/lonely".into(), BlockingReason::NotReplicated),
            ("myapp/huge-b".into(), BlockingReason::NoFeasibleNode),
        ]
    );
    assert_eq!(response.reason, RemovalReason::BlockedByPod as i32);
    assert!(
        response.message.ends_with("(and 1 more blocking pod(s))"),
        "{}",
        response.message
    );
    assert!(
        response.placements.is_empty(),
        "a rule block places nothing"
    );
}

#[test]
fn one_budget_is_spent_per_pod_and_multiple_budgets_block() {
    let pods = vec![
        pod("myapp", "web-1", "n1", "100m", "64Mi"),
        pod("myapp", "web-2", "n1", "100m", "64Mi"),
    ];
    let tier = json!({"metadata": {"labels": {"tier": "web"}}});
    let pods: Vec<Value> = pods.into_iter().map(|p| merge(p, tier.clone())).collect();
    let one_left = pdb("myapp", "web", json!({"matchLabels": {"tier": "web"}}), 1);
    let response = can_remove(two_nodes(pods.clone(), vec![one_left]), "n1", options());
    assert_eq!(
        blocking(&response),
        vec![("myapp/web-2".into(), BlockingReason::NotEnoughPdb)]
    );
    assert_eq!(
        response.blocking_pods[0].disruption_budgets,
        vec!["myapp/web".to_string()]
    );

    let everything = pdb("myapp", "all", json!({}), 5);
    let by_tier = pdb("myapp", "web", json!({"matchLabels": {"tier": "web"}}), 5);
    let response = can_remove(
        two_nodes(pods.clone(), vec![by_tier.clone(), everything]),
        "n1",
        options(),
    );
    assert_eq!(
        blocking(&response),
        vec![
            ("myapp/web-1".into(), BlockingReason::MultiplePdbs),
            ("myapp/web-2".into(), BlockingReason::MultiplePdbs),
        ]
    );
    assert_eq!(
        response.blocking_pods[0].disruption_budgets,
        vec!["myapp/all".to_string(), "myapp/web".to_string()]
    );

    // a budget without a selector matches nothing
    let no_selector = json!({"metadata": {"name": "none", "namespace": "myapp"}, "status": {"disruptionsAllowed": 0}});
    assert!(can_remove(two_nodes(pods.clone(), vec![no_selector]), "n1", options()).removable);
    let ignore = pb::RemovalOptions {
        ignore_pod_disruption_budgets: true,
        ..options()
    };
    let exhausted = pdb("myapp", "web", json!({"matchLabels": {"tier": "web"}}), 0);
    assert!(can_remove(two_nodes(pods, vec![exhausted]), "n1", ignore).removable);
}

#[test]
fn can_remove_nodes_commits_budgets_and_placements_across_nodes() {
    let tier = json!({"metadata": {"labels": {"tier": "web"}}});
    let pods = vec![
        merge(pod("myapp", "web-1", "n1", "100m", "64Mi"), tier.clone()),
        merge(pod("myapp", "web-2", "n2", "100m", "64Mi"), tier.clone()),
        merge(pod("myapp", "web-3", "n3", "100m", "64Mi"), tier),
    ];
    let nodes = vec![
        node("n1", "8", "16Gi"),
        node("n2", "8", "16Gi"),
        node("n3", "8", "16Gi"),
        node("n4", "8", "16Gi"),
    ];
    let budget = pdb("myapp", "web", json!({"matchLabels": {"tier": "web"}}), 3);
    let request = pb::CanRemoveNodesRequest {
        snapshot: Some(snapshot(nodes, pods, vec![budget])),
        node_names: vec!["n1".into(), "n2".into(), "n3".into()],
        options: Some(options()),
        max_nodes: 0,
    };
    let response =
        crate::engine::can_remove_nodes(&super::view(&request), Deadline::NONE).expect("answers");
    assert_eq!(
        response.removable_nodes,
        vec!["n1".to_string(), "n2".to_string()]
    );
    assert_eq!(response.results.len(), 3);
    // n1's pod went to n2, then n2 (with it) went to n3: committed placements count
    assert_eq!(
        placements(&response.results[0]),
        vec![("myapp/web-1".into(), "n2".into())]
    );
    let mut second = placements(&response.results[1]);
    second.sort();
    assert_eq!(
        second,
        vec![
            ("myapp/web-1".into(), "n3".into()),
            ("myapp/web-2".into(), "n3".into())
        ]
    );
    // the budget of 3 is spent by the first two nodes (web-1 was evicted twice)
    assert!(!response.results[2].removable);
    assert_eq!(
        blocking(&response.results[2])[0].1,
        BlockingReason::NotEnoughPdb,
        "{}",
        response.results[2].message
    );

    let bounded = pb::CanRemoveNodesRequest {
        max_nodes: 1,
        ..request
    };
    let response =
        crate::engine::can_remove_nodes(&super::view(&bounded), Deadline::NONE).expect("answers");
    assert_eq!(response.removable_nodes, vec!["n1".to_string()]);
    assert_eq!(response.results.len(), 1);
}

#[test]
fn a_rejected_candidate_leaves_no_trace() {
    let pods = vec![
        pod("myapp", "big", "n1", "6", "1Gi"),
        pod("myapp", "small", "n2", "1", "1Gi"),
    ];
    let nodes = vec![
        node("n1", "8", "16Gi"),
        node("n2", "8", "16Gi"),
        node("n3", "4", "16Gi"),
    ];
    let request = pb::CanRemoveNodesRequest {
        snapshot: Some(snapshot(nodes, pods, vec![])),
        node_names: vec!["n1".into(), "n2".into()],
        options: Some(options()),
        max_nodes: 0,
    };
    let response =
        crate::engine::can_remove_nodes(&super::view(&request), Deadline::NONE).expect("answers");
    // n1's 6 cpu fit on n2 only; n1 is accepted, then n2 (7 cpu used) cannot go
    assert_eq!(response.removable_nodes, vec!["n1".to_string()]);
    let request = pb::CanRemoveNodesRequest {
        node_names: vec!["n3".into(), "n2".into()],
        ..request
    };
    let response =
        crate::engine::can_remove_nodes(&super::view(&request), Deadline::NONE).expect("answers");
    assert_eq!(
        response.removable_nodes,
        vec!["n3".to_string(), "n2".to_string()]
    );
}

#[test]
fn nodes_not_ready_or_being_deleted_are_never_destinations() {
    let not_ready = merge(
        node("n2", "8", "16Gi"),
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    let deleting = merge(
        node("n3", "8", "16Gi"),
        json!({"metadata": {"deletionTimestamp": "2026-11-26T08:00:00Z"}}),
    );
    let no_conditions = merge(
        node("n4", "8", "16Gi"),
        json!({"status": {"conditions": []}}),
    );
    let snapshot_with = |extra: Vec<Value>| {
        let mut nodes = vec![node("n1", "8", "16Gi"), not_ready.clone(), deleting.clone()];
        nodes.extend(extra);
        snapshot(
            nodes,
            vec![pod("myapp", "web", "n1", "100m", "64Mi")],
            vec![],
        )
    };
    let response = can_remove(snapshot_with(vec![]), "n1", options());
    assert!(!response.removable);
    let verdicts: Vec<(String, String, String)> = response.blocking_pods[0]
        .rejections
        .iter()
        .map(|r| (r.node_name.clone(), r.plugin.clone(), r.reason.clone()))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (
                "n2".into(),
                "NodeReady".into(),
                "node(s) were not ready".into()
            ),
            (
                "n3".into(),
                "NodeReady".into(),
                "node(s) were being deleted".into()
            ),
        ]
    );
    // a node without conditions counts as ready
    let response = can_remove(snapshot_with(vec![no_conditions]), "n1", options());
    assert_eq!(
        placements(&response),
        vec![("myapp/web".into(), "n4".into())]
    );
}

#[test]
fn sidecars_and_pod_level_resources_decide_placement() {
    // 3 cpu free on n2: the sidecar (1) + app (1.5) fit, the init peak (sidecar 1 + init 2.5) does not.
    let sidecar_pod = merge(
        pod("myapp", "web", "n1", "1500m", "64Mi"),
        json!({"spec": {"initContainers": [
            {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
            {"name": "migrate", "resources": {"requests": {"cpu": "2500m"}}}]}}),
    );
    let snapshot_for = |p: Value| {
        snapshot(
            vec![node("n1", "8", "16Gi"), node("n2", "3", "16Gi")],
            vec![p],
            vec![],
        )
    };
    let response = can_remove(snapshot_for(sidecar_pod.clone()), "n1", options());
    assert_eq!(
        response.blocking_pods[0].rejections[0].reason,
        "Insufficient cpu"
    );
    let lighter = merge(
        sidecar_pod,
        json!({"spec": {"initContainers": [
            {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
            {"name": "migrate", "resources": {"requests": {"cpu": "2"}}}]}}),
    );
    assert!(can_remove(snapshot_for(lighter), "n1", options()).removable);

    // containers ask for 4 cpu, the pod-level request caps the pod at 2
    let pod_level = merge(
        pod("myapp", "web", "n1", "4", "64Mi"),
        json!({"spec": {"resources": {"requests": {"cpu": "2"}}}}),
    );
    assert!(can_remove(snapshot_for(pod_level), "n1", options()).removable);
}

fn spread_pods(with_keys: &str) -> Vec<Value> {
    // web-0..2 of version v1 on n2; the pod to move (version v2) spreads by hostname, maxSkew 1,
    // only among pods of its own version when matchLabelKeys names "version".
    let version = |v: &str| json!({"metadata": {"labels": {"app": "web", "version": v}}});
    let mut pods: Vec<Value> = (0..2)
        .map(|i| {
            merge(
                pod("myapp", &format!("old-{i}"), "n2", "100m", "64Mi"),
                version("v1"),
            )
        })
        .collect();
    let constraint = json!({"spec": {"topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": [with_keys]}]}});
    pods.push(merge(
        merge(pod("myapp", "new", "n1", "100m", "64Mi"), version("v2")),
        constraint,
    ));
    pods
}

#[test]
fn topology_spread_match_label_keys_narrow_the_count() {
    let nodes = || {
        vec![
            node("n1", "8", "16Gi"),
            node("n2", "8", "16Gi"),
            node("n3", "8", "16Gi"),
        ]
    };
    // counting every app=web pod: n2 has 2, n3 has 0 -> the pod goes to n3
    let response = can_remove(
        snapshot(nodes(), spread_pods("unrelated"), vec![]),
        "n1",
        options(),
    );
    assert_eq!(
        placements(&response),
        vec![("myapp/new".into(), "n3".into())]
    );
    // counting only version=v2 pods: every domain has 0 -> first fit, n2
    let response = can_remove(
        snapshot(nodes(), spread_pods("version"), vec![]),
        "n1",
        options(),
    );
    assert_eq!(
        placements(&response),
        vec![("myapp/new".into(), "n2".into())]
    );
}

#[test]
fn pod_affinity_match_and_mismatch_label_keys() {
    let tenant = |t: &str| json!({"metadata": {"labels": {"app": "web", "tenant": t}}});
    let other_tenant = merge(pod("myapp", "web-b", "n2", "100m", "64Mi"), tenant("b"));
    let same_tenant = merge(pod("myapp", "web-a", "n3", "100m", "64Mi"), tenant("a"));
    let anti = |field: &str| {
        json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname", field: ["tenant"]}]}}}})
    };
    let nodes = || {
        vec![
            node("n1", "8", "16Gi"),
            node("n2", "8", "16Gi"),
            node("n3", "8", "16Gi"),
        ]
    };
    let moving = |field: &str| {
        merge(
            merge(pod("myapp", "mine", "n1", "100m", "64Mi"), tenant("a")),
            anti(field),
        )
    };
    // matchLabelKeys: avoid only pods of my tenant -> n2 (tenant b) is fine
    let response = can_remove(
        snapshot(
            nodes(),
            vec![
                other_tenant.clone(),
                same_tenant.clone(),
                moving("matchLabelKeys"),
            ],
            vec![],
        ),
        "n1",
        options(),
    );
    assert_eq!(
        placements(&response),
        vec![("myapp/mine".into(), "n2".into())]
    );
    // mismatchLabelKeys: avoid pods of other tenants -> n3 (tenant a) is the home
    let response = can_remove(
        snapshot(
            nodes(),
            vec![other_tenant, same_tenant, moving("mismatchLabelKeys")],
            vec![],
        ),
        "n1",
        options(),
    );
    assert_eq!(
        placements(&response),
        vec![("myapp/mine".into(), "n3".into())]
    );
}

#[test]
fn protected_nodes_are_not_removable() {
    for (place, key) in [
        ("annotations", "autoscaler.vpsie.com/scale-down-disabled"),
        (
            "labels",
            "cluster-autoscaler.kubernetes.io/scale-down-disabled",
        ),
        ("annotations", "autoscaler.vpsie.com/protected"),
    ] {
        let protected = merge(
            node("n1", "8", "16Gi"),
            json!({"metadata": {place: {key: "true"}}}),
        );
        let response = can_remove(
            snapshot(vec![protected, node("n2", "8", "16Gi")], vec![], vec![]),
            "n1",
            options(),
        );
        assert!(!response.removable, "{key}");
        assert_eq!(response.reason, RemovalReason::ScaleDownDisabled as i32);
        assert!(response.message.contains(key), "{}", response.message);
    }
}

#[test]
fn unknown_node_and_bad_input_are_errors_not_answers() {
    let request = pb::CanRemoveNodeRequest {
        snapshot: Some(two_nodes(vec![], vec![])),
        node_name: "nope".into(),
        options: None,
    };
    assert_eq!(
        crate::engine::can_remove_node(&super::view(&request), Deadline::NONE),
        Err(EngineError::NodeNotFound("nope".into()))
    );
    let bad = merge(pod("myapp", "web", "n1", "12x", "64Mi"), json!({}));
    let request = pb::CanRemoveNodeRequest {
        snapshot: Some(two_nodes(vec![bad], vec![])),
        node_name: "n1".into(),
        options: None,
    };
    let Err(EngineError::InvalidArgument { path, message }) =
        crate::engine::can_remove_node(&super::view(&request), Deadline::NONE)
    else {
        panic!("want invalid argument")
    };
    assert_eq!(
        path,
        "snapshot.pods[0].spec.containers[0].resources.requests[\"cpu\"]"
    );
    assert!(message.starts_with("invalid quantity \"12x\""), "{message}");
    let duplicate = snapshot(
        vec![node("n1", "8", "16Gi"), node("n1", "8", "16Gi")],
        vec![],
        vec![],
    );
    let request = pb::CanRemoveNodeRequest {
        snapshot: Some(duplicate),
        node_name: "n1".into(),
        options: None,
    };
    assert!(matches!(
        crate::engine::can_remove_node(&super::view(&request), Deadline::NONE),
        Err(EngineError::InvalidArgument { .. })
    ));
}

#[test]
fn a_passed_deadline_stops_the_simulation() {
    let pods = (0..5)
        .map(|i| pod("myapp", &format!("p{i}"), "n1", "100m", "64Mi"))
        .collect();
    let request = pb::CanRemoveNodeRequest {
        snapshot: Some(two_nodes(pods, vec![])),
        node_name: "n1".into(),
        options: None,
    };
    let past = Deadline::at(std::time::Instant::now());
    assert_eq!(
        crate::engine::can_remove_node(&super::view(&request), past),
        Err(EngineError::DeadlineExceeded)
    );
}

#[test]
fn find_schedulable_node_replaces_the_same_pod_and_reports_excluded_nodes() {
    let pods = vec![pod("myapp", "web", "n2", "7", "1Gi")];
    let request = pb::FindSchedulableNodeRequest {
        snapshot: Some(snapshot(
            vec![
                node("n1", "8", "16Gi"),
                node("n2", "8", "16Gi"),
                node("n3", "8", "16Gi"),
            ],
            pods.clone(),
            vec![],
        )),
        pod: message_from_json(pod("myapp", "web", "n2", "7", "1Gi")).ok(),
        exclude_nodes: vec!["n1".into()],
        explain: true,
    };
    let response = crate::engine::find_schedulable_node(&super::view(&request), Deadline::NONE)
        .expect("answers");
    // its old self on n2 no longer counts, so n2 has room again
    assert_eq!(
        response.feasible_nodes,
        vec!["n2".to_string(), "n3".to_string()]
    );
    assert_eq!(response.node_name, "n2");
    assert_eq!(response.rejections.len(), 1);
    assert_eq!(response.rejections[0].plugin, "Excluded");
}
