//! End to end, over sockets: the real rebalancer-service and safety-service binaries against the
//! Kubernetes and VPSie API fakes. The same-nodegroup guard (AC5), rolling and surge plans, PDB
//! refusals during the drain, the safety re-check, and the API's errors.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use e2e_tests::vpsie_fake::{Fault, MachineState, Route};
use serde_json::json;
use tonic::Code;
use vpsie_proto::rebalancer::v1 as pb;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------- AC5: the same-nodegroup guard

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ac5_same_group_same_offering_is_skipped_without_any_call() {
    let mut h = Harness::start().await;
    let node = h.seed_node(WORKERS, WORKERS, "small");
    h.seed_pod("web-1", &node, "web");
    let before = h.node(&node).expect("node");

    let id = "ac5-skip";
    h.execute(plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "small")],
    ))
    .await;
    let op = h.wait_terminal(id, secs(20)).await;

    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    let progress = node_progress(&op, &node);
    assert_eq!(phase(progress), pb::NodePhase::Skipped);
    assert_eq!(
        progress.skip_reason,
        pb::SkipReason::SameNodegroupAndOffering as i32
    );
    assert!(progress.replacement_vps_id.is_empty() && progress.error.is_none());
    assert_eq!(
        (op.done_count, op.failed_count, op.skipped_count),
        (0, 0, 1)
    );

    // An info line naming node, group and offering.
    let events = || h.rebalancer_log_events();
    eventually("the skip log line", secs(5), || {
        events().iter().any(|e| {
            e["level"] == "INFO"
                && e["node"] == node.as_str()
                && e["group"] == WORKERS
                && e["offering"] == "small"
        })
    })
    .await;

    // No VPSie call at all.
    let calls = h.vpsie.calls();
    assert!(calls.is_empty(), "VPSie was called: {calls:#?}");
    // No Kubernetes write but the operation's own ConfigMap: one create, then replaces.
    let cm = rebalancer_service::store::configmap_name(id);
    let collection = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    let writes = h.kube.writes();
    assert!(!writes.is_empty());
    assert_eq!(writes[0].method, "POST");
    assert_eq!(writes[0].path, collection);
    for w in &writes[1..] {
        assert_eq!(
            (w.method.as_str(), w.path.as_str()),
            ("PUT", format!("{collection}/{cm}").as_str()),
            "unexpected write {w:#?}"
        );
    }
    assert!(h.node_writes(&node).is_empty());
    assert_eq!(h.node(&node).expect("node"), before, "the node changed");
    assert!(h.evictions("web-1").is_empty());
    assert!(h.kube.get("Pod", NAMESPACE, "web-1").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ac5_different_group_proceeds() {
    let mut h = Harness::start().await;
    // Same offering, but the node is in another group than the plan's target.
    let node = h.seed_node(GENERAL, GENERAL, "small");
    h.seed_pod("web-1", &node, "web");

    let id = "ac5-other-group";
    h.execute(plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "small")],
    ))
    .await;
    let op = h.wait_terminal(id, secs(30)).await;

    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    assert_eq!(
        (op.done_count, op.failed_count, op.skipped_count),
        (1, 0, 0)
    );
    assert_eq!(h.created_machines().len(), 1);
    assert_eq!(h.vpsie.calls_to(Route::Add).len(), 1);
    assert_replaced(&h, &op, &node, WORKERS, "small", &["web-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ac5_same_group_different_offering_proceeds() {
    let mut h = Harness::start().await;
    // Right-sizing inside the group.
    let node = h.seed_node(WORKERS, WORKERS, "small");
    h.seed_pod("web-1", &node, "web");

    let id = "ac5-right-size";
    h.execute(plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "large")],
    ))
    .await;
    let op = h.wait_terminal(id, secs(30)).await;

    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    assert_eq!(
        (op.done_count, op.failed_count, op.skipped_count),
        (1, 0, 0)
    );
    assert_eq!(h.created_machines().len(), 1);
    assert_replaced(&h, &op, &node, WORKERS, "large", &["web-1"]).await;
}

// ---------------------------------------------------------------- rolling and surge

fn phases_of(stream: &[pb::Operation], node: &str) -> Vec<pb::NodePhase> {
    let mut phases: Vec<pb::NodePhase> = Vec::new();
    for op in stream {
        let p = phase(node_progress(op, node));
        if phases.last() != Some(&p) {
            phases.push(p);
        }
    }
    phases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_plan_of_three_completes() {
    let mut h = Harness::start().await;
    let nodes: Vec<String> = (0..3)
        .map(|_| h.seed_node(GENERAL, GENERAL, "small"))
        .collect();
    let pods = ["web-a", "web-b", "web-c"];
    for (node, pod) in nodes.iter().zip(pods) {
        h.seed_pod(pod, node, "web");
    }

    let id = "rolling-3";
    let candidates: Vec<(&str, &str, &str)> = nodes
        .iter()
        .map(|n| (n.as_str(), "small", "large"))
        .collect();
    let first = h
        .execute(plan(id, WORKERS, pb::Strategy::Rolling, &candidates))
        .await;
    assert_eq!(first.id, id);
    let mut watcher = h.client.clone();
    let watch = tokio::spawn(async move {
        let mut stream = watcher
            .watch_operation(pb::WatchOperationRequest { id: id.to_string() })
            .await
            .expect("WatchOperation")
            .into_inner();
        let mut seen = Vec::new();
        while let Some(op) = stream.message().await.expect("stream") {
            seen.push(op);
        }
        seen
    });
    let stream = tokio::time::timeout(secs(60), watch)
        .await
        .expect("the watch ends within 60s")
        .expect("watch task");

    // The stream ends with the terminal state.
    let last = stream.last().expect("at least one state");
    assert!(is_terminal(last), "{last:#?}");
    assert!(stream[..stream.len() - 1].iter().all(|op| !is_terminal(op)));
    assert_eq!(state(last), pb::OperationState::Succeeded, "{last:#?}");
    assert_eq!(
        (last.done_count, last.failed_count, last.skipped_count),
        (3, 0, 0)
    );
    // Every phase, in order, for every node.
    use pb::NodePhase as P;
    for node in &nodes {
        let phases = phases_of(&stream, node);
        assert!(
            phases.windows(2).all(|w| (w[0] as i32) <= (w[1] as i32)),
            "{node}: phases go backwards: {phases:?}"
        );
        for wanted in [
            P::Provisioning,
            P::WaitingForNode,
            P::SafetyCheck,
            P::Draining,
            P::Deleting,
            P::Done,
        ] {
            assert!(
                phases.contains(&wanted),
                "{node}: {wanted:?} never streamed: {phases:?}"
            );
        }
    }
    // ROLLING with batchSize 1: never two nodes in flight at once.
    for op in &stream {
        let in_flight = op
            .nodes
            .iter()
            .filter(|n| {
                !matches!(
                    phase(n),
                    P::Pending | P::Done | P::Skipped | P::Failed | P::RolledBack
                )
            })
            .count();
        assert!(in_flight <= 1, "{op:#?}");
    }

    let op = h.get(id).await;
    assert_eq!(op, *last);
    assert_eq!(h.created_machines().len(), 3);
    assert_eq!(h.vpsie.calls_to(Route::Add).len(), 3);
    for (node, pod) in nodes.iter().zip(pods) {
        assert_replaced(&h, &op, node, WORKERS, "large", &[pod]).await;
        // The intent, then the VPS id, recorded on the old Node before any cordon.
        let writes = h.node_writes(node);
        let intent = writes
            .iter()
            .position(|w| {
                is_annotation_patch(w)
                    && w.body.as_ref().unwrap()["metadata"]["annotations"]
                        ["autoscaler.vpsie.com/operation-phase"]
                        == "provisioning"
            })
            .unwrap_or_else(|| panic!("no intent annotation on {node}: {writes:#?}"));
        let vps = &node_progress(&op, node).replacement_vps_id;
        let recorded = writes
            .iter()
            .position(|w| {
                is_annotation_patch(w)
                    && w.body.as_ref().unwrap()["metadata"]["annotations"]
                        ["autoscaler.vpsie.com/replacement-vps"]
                        == vps.as_str()
            })
            .unwrap_or_else(|| panic!("no replacement-vps annotation on {node}: {writes:#?}"));
        let cordon = writes.iter().position(is_cordon_patch).unwrap();
        assert!(intent < recorded && recorded < cordon, "{writes:#?}");
    }
    let replacements: HashSet<&str> = op
        .nodes
        .iter()
        .map(|n| n.replacement_vps_id.as_str())
        .collect();
    assert_eq!(replacements.len(), 3, "distinct replacements");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surge_with_one_replacement_never_ready() {
    let mut h = Harness::start().await;
    let nodes: Vec<String> = (0..3)
        .map(|_| h.seed_node(GENERAL, GENERAL, "small"))
        .collect();
    let pods = ["web-a", "web-b", "web-c"];
    for (node, pod) in nodes.iter().zip(pods) {
        h.seed_pod(pod, node, "web");
    }
    // The first machine asked for stays in provisioning forever.
    h.vpsie.inject(Route::Add, Fault::StuckProvisioning, 1);

    let id = "surge-3";
    let candidates: Vec<(&str, &str, &str)> = nodes
        .iter()
        .map(|n| (n.as_str(), "small", "small"))
        .collect();
    let mut surge = plan(id, WORKERS, pb::Strategy::Surge, &candidates);
    surge.batch_size = 3;
    surge.max_concurrent = 3;
    surge.ready_timeout_seconds = 6;
    h.execute(surge).await;
    let op = h.wait_terminal(id, secs(60)).await;

    assert_eq!(state(&op), pb::OperationState::Failed, "{op:#?}");
    assert_eq!(
        (op.done_count, op.failed_count, op.skipped_count),
        (2, 1, 0)
    );
    let created = h.created_machines();
    assert_eq!(created.len(), 3, "{created:#?}");
    assert_eq!(h.vpsie.calls_to(Route::Add).len(), 3);
    let stuck: Vec<_> = created.iter().filter(|m| m.stuck).collect();
    assert_eq!(stuck.len(), 1);
    let stuck = stuck[0];
    let failed = op
        .nodes
        .iter()
        .find(|n| n.replacement_vps_id == stuck.identifier)
        .expect("the candidate of the stuck machine");
    assert_eq!(phase(failed), pb::NodePhase::RolledBack, "{failed:#?}");
    assert_eq!(failed.error.as_ref().unwrap().step, "wait_for_node");
    // Its replacement deleted, the old node never cordoned nor drained, still there.
    assert!(
        h.vpsie
            .wait_for_state(&stuck.identifier, MachineState::Gone, secs(5))
            .await
    );
    let old = failed.node_name.as_str();
    let writes = h.node_writes(old);
    assert!(
        writes.iter().all(is_annotation_patch),
        "only progress annotations may touch {old}: {writes:#?}"
    );
    let pod = pods[nodes.iter().position(|n| n == old).unwrap()];
    assert!(h.evictions(pod).is_empty());
    assert!(h.kube.get("Pod", NAMESPACE, pod).is_some());
    let node = h.node(old).expect("old node kept");
    assert_ne!(node["spec"]["unschedulable"], true);
    assert_eq!(h.machine_state(old), MachineState::Running);
    // The others complete.
    for (node, pod) in nodes.iter().zip(pods) {
        if node != old {
            assert_replaced(&h, &op, node, WORKERS, "small", &[pod]).await;
        }
    }
}

// ---------------------------------------------------------------- drains against budgets

/// A node whose pod is covered by a PDB allowing one disruption, so the safety re-check passes;
/// the first eviction is refused (429, as from a budget) and, while the drain waits to retry, the
/// budget drops to 0 — as when another disruption spent it between the re-check and the drain.
async fn start_blocked_drain(h: &mut Harness, id: &str, drain_timeout: i32) -> String {
    let node = h.seed_node(GENERAL, GENERAL, "small");
    h.seed_pod("web-1", &node, "web");
    h.seed_pdb("web-pdb", "web", 1);
    h.kube.fail_evictions(NAMESPACE, "web-1", 1, 429);
    let mut p = plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "small")],
    );
    p.drain.as_mut().unwrap().timeout_seconds = drain_timeout;
    h.execute(p).await;
    eventually("the first eviction", secs(30), || {
        !h.evictions("web-1").is_empty()
    })
    .await;
    h.kube.set_pdb_disruptions_allowed(NAMESPACE, "web-pdb", 0);
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdb_429_is_retried_until_allowed() {
    let mut h = Harness::start().await;
    let id = "pdb-retry";
    let node = start_blocked_drain(&mut h, id, 30).await;
    // Refused by the budget for ~2 s (retries every second).
    eventually("evictions refused by the budget", secs(10), || {
        h.evictions("web-1").len() >= 3
    })
    .await;
    let op = h.get(id).await;
    assert_eq!(phase(node_progress(&op, &node)), pb::NodePhase::Draining);
    assert!(h.kube.get("Pod", NAMESPACE, "web-1").is_some());
    h.kube.set_pdb_disruptions_allowed(NAMESPACE, "web-pdb", 1);

    let op = h.wait_terminal(id, secs(30)).await;
    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    assert_replaced(&h, &op, &node, WORKERS, "small", &["web-1"]).await;
    // The successful eviction spent the budget.
    let pdb = h.kube.get("pdb", NAMESPACE, "web-pdb").unwrap();
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(h.evictions("web-1").len() >= 4);
    assert!(h.rebalancer_log_events().iter().any(|e| {
        e["message"] == "eviction refused by a disruption budget; retrying"
            && e["pod"] == "default/web-1"
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_uncordons_and_fails_at_drain() {
    let mut h = Harness::start().await;
    let id = "drain-timeout";
    let node = start_blocked_drain(&mut h, id, 5).await;
    let op = h.wait_terminal(id, secs(40)).await;

    assert_eq!(state(&op), pb::OperationState::Failed, "{op:#?}");
    assert_eq!((op.done_count, op.failed_count), (0, 1));
    let progress = node_progress(&op, &node);
    assert_eq!(phase(progress), pb::NodePhase::Failed, "{progress:#?}");
    let error = progress.error.as_ref().expect("error");
    assert_eq!(error.step, "drain");
    assert!(error.message.contains("drain timed out"), "{error:?}");
    assert!(h.evictions("web-1").len() >= 3);

    // The old node: cordoned, then uncordoned and untainted; its pod and machine still there.
    let writes: Vec<_> = h
        .node_writes(&node)
        .into_iter()
        .filter(is_cordon_patch)
        .collect();
    assert_eq!(writes.len(), 2, "cordon then uncordon: {writes:#?}");
    assert_eq!(
        writes[1]
            .body
            .as_ref()
            .unwrap()
            .pointer("/spec/unschedulable"),
        Some(&json!(false))
    );
    let old = h.node(&node).expect("old node kept");
    assert_ne!(old["spec"]["unschedulable"], true, "{old:#}");
    let taints = old["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        taints.iter().all(|t| t["key"] != DRAINING_TAINT),
        "{taints:?}"
    );
    assert!(h.kube.get("Pod", NAMESPACE, "web-1").is_some());
    assert_eq!(h.machine_state(&node), MachineState::Running);
    // The replacement kept: running, registered, labelled.
    let created = h.created_machines();
    assert_eq!(created.len(), 1);
    assert_eq!(progress.replacement_vps_id, created[0].identifier);
    assert_eq!(created[0].state, MachineState::Running);
    assert!(h.node(&created[0].hostname).is_some());
    assert!(h.vpsie.calls_to(Route::Delete).is_empty());
}

// ---------------------------------------------------------------- the safety re-check

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_refusal_fails_at_safety_check() {
    let mut h = Harness::start().await;
    let node = h.seed_node(GENERAL, GENERAL, "small");
    // A pod that can only run on this very node.
    h.seed_pod("web-1", &node, "web");
    let pinned = h.kube.modify("Pod", NAMESPACE, "web-1", |pod| {
        pod["spec"]["nodeSelector"] = json!({ "kubernetes.io/hostname": node });
    });
    assert!(pinned.is_some());

    let id = "safety-refusal";
    h.execute(plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "small")],
    ))
    .await;
    let op = h.wait_terminal(id, secs(30)).await;

    assert_eq!(state(&op), pb::OperationState::Failed, "{op:#?}");
    let progress = node_progress(&op, &node);
    assert_eq!(phase(progress), pb::NodePhase::RolledBack, "{progress:#?}");
    let error = progress.error.as_ref().expect("error");
    assert_eq!(error.step, "safety_check");
    assert!(error.message.contains("web-1"), "{error:?}");
    // The replacement deleted in VPSie.
    let created = h.created_machines();
    assert_eq!(created.len(), 1);
    assert_eq!(progress.replacement_vps_id, created[0].identifier);
    assert!(
        h.vpsie
            .wait_for_state(&created[0].identifier, MachineState::Gone, secs(5))
            .await
    );
    let deletes = h.vpsie.calls_to(Route::Delete);
    assert_eq!(deletes.len(), 1);
    assert!(deletes[0].body.contains(&created[0].identifier));
    // The old node never cordoned, tainted or drained.
    let writes = h.node_writes(&node);
    assert!(
        writes.iter().all(is_annotation_patch),
        "only progress annotations may touch {node}: {writes:#?}"
    );
    let old = h.node(&node).expect("old node kept");
    assert_ne!(old["spec"]["unschedulable"], true);
    assert!(h.evictions("web-1").is_empty());
    assert!(h.kube.get("Pod", NAMESPACE, "web-1").is_some());
    assert_eq!(h.machine_state(&node), MachineState::Running);
}

// ---------------------------------------------------------------- API errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_plan_twice_same_id_is_one_operation() {
    let mut h = Harness::start().await;
    let node = h.seed_node(GENERAL, GENERAL, "small");
    h.seed_pod("web-1", &node, "web");

    let id = "twice";
    let p = plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "small")],
    );
    let first = h.execute(p.clone()).await;
    let second = h.execute(p.clone()).await;
    assert_eq!((first.id.as_str(), second.id.as_str()), (id, id));
    assert_eq!(first.created_at, second.created_at);
    let op = h.wait_terminal(id, secs(30)).await;
    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    // Once more after the end: the same, finished operation; nothing new happens.
    let third = h.execute(p).await;
    assert_eq!(third, op);

    let all = h
        .client
        .list_operations(pb::ListOperationsRequest {})
        .await
        .unwrap()
        .into_inner()
        .operations;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].id, id);
    assert_eq!(h.vpsie.calls_to(Route::Add).len(), 1);
    assert_eq!(h.created_machines().len(), 1);
    let configmaps = h.kube.list_in("ConfigMap", Some(NAMESPACE));
    assert_eq!(
        configmaps
            .iter()
            .filter(
                |c| c["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "vpsie-rebalancer"
            )
            .count(),
        1
    );
    assert_replaced(&h, &op, &node, WORKERS, "small", &["web-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_in_running_operation_is_failed_precondition() {
    let mut h = Harness::start().await;
    let n1 = h.seed_node(GENERAL, GENERAL, "small");
    let n2 = h.seed_node(GENERAL, GENERAL, "small");
    // Operation A stays busy with n1: its replacement never becomes Ready.
    h.vpsie.inject(Route::Add, Fault::StuckProvisioning, 1);
    let mut a = plan(
        "op-a",
        WORKERS,
        pb::Strategy::Rolling,
        &[(&n1, "small", "small")],
    );
    a.ready_timeout_seconds = 4;
    h.execute(a).await;
    h.wait_phase("op-a", &n1, pb::NodePhase::WaitingForNode, secs(20))
        .await;

    let b = plan(
        "op-b",
        WORKERS,
        pb::Strategy::Rolling,
        &[(&n2, "small", "small"), (&n1, "small", "small")],
    );
    let refused = h
        .client
        .execute_plan(pb::ExecutePlanRequest {
            plan: Some(b.clone()),
        })
        .await
        .expect_err("n1 is busy");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains(&n1) && refused.message().contains("op-a"),
        "{refused:?}"
    );
    let missing = h
        .client
        .get_operation(pb::GetOperationRequest { id: "op-b".into() })
        .await
        .expect_err("op-b was not created");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        h.vpsie.calls_to(Route::Add).len(),
        1,
        "only op-a provisioned"
    );
    assert!(h.node_writes(&n2).is_empty(), "n2 untouched");

    // Once A has ended, n1 may join another operation.
    let a_done = h.wait_terminal("op-a", secs(30)).await;
    assert_eq!(
        phase(node_progress(&a_done, &n1)),
        pb::NodePhase::RolledBack
    );
    let accepted = h.execute(b).await;
    assert_eq!(accepted.id, "op-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_plan_duplicate_candidates_unknown_strategy_are_invalid_argument() {
    let mut h = Harness::start().await;
    let node = h.seed_node(GENERAL, GENERAL, "small");
    let good = plan(
        "bad",
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "small")],
    );

    let mut cases: Vec<(&str, Option<pb::RebalancePlan>, &str)> = vec![("no plan", None, "plan")];
    let mut empty = good.clone();
    empty.candidates.clear();
    cases.push(("empty plan", Some(empty), "plan.candidates"));
    let mut duplicate = good.clone();
    duplicate.candidates.push(duplicate.candidates[0].clone());
    cases.push((
        "duplicate candidates",
        Some(duplicate),
        "plan.candidates[1]",
    ));
    let mut unspecified = good.clone();
    unspecified.strategy = pb::Strategy::Unspecified as i32;
    cases.push(("unspecified strategy", Some(unspecified), "plan.strategy"));
    let mut unknown = good.clone();
    unknown.strategy = 7;
    cases.push(("unknown strategy", Some(unknown), "plan.strategy"));
    let mut no_id = good.clone();
    no_id.id.clear();
    cases.push(("no id", Some(no_id), "plan.id"));
    let mut no_group = good.clone();
    no_group.node_group_name.clear();
    cases.push(("no group", Some(no_group), "plan.nodeGroupName"));
    let mut empty_name = good.clone();
    empty_name.candidates[0].node_name.clear();
    cases.push(("empty node name", Some(empty_name), "plan.candidates[0]"));

    for (what, plan, field) in cases {
        let status = h
            .client
            .execute_plan(pb::ExecutePlanRequest { plan })
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "{what}: the message must name {field}: {:?}",
            status.message()
        );
        if what == "duplicate candidates" {
            assert!(status.message().contains(&node), "{status:?}");
        }
    }
    // Nothing was recorded or done.
    let all = h
        .client
        .list_operations(pb::ListOperationsRequest {})
        .await
        .unwrap()
        .into_inner()
        .operations;
    assert!(all.is_empty(), "{all:#?}");
    assert!(h.vpsie.calls().is_empty());
    assert!(h.kube.writes().is_empty(), "{:#?}", h.kube.writes());
}
