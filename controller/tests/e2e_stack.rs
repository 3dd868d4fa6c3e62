//! End to end over real sockets: the `controller` binary, the `safety-service` and
//! `rebalancer-service` binaries, against the Kubernetes API fake and the VPSie API fake (the
//! harness is in `stack/mod.rs`). Every Node is a VPSie machine of group `general`.
//!
//! - an underutilised node whose pods fit elsewhere is removed after `unneededTime`, not before:
//!   its pods evicted, its machine deleted in VPSie, its Node deleted;
//! - a node whose pod has no other home stays, with the safety message in its annotation and an
//!   Event;
//! - a drifted node is replaced: a new machine in its group, Ready and labelled with the group's
//!   offering, the old machine and Node deleted;
//! - a pod added after start changes a decision through the watch.

mod stack;

use std::time::{Duration, SystemTime};

use e2e_tests::vpsie_fake::{MachineState, Route};
use stack::{Fakes, GROUP, GROUP_ID, NAMESPACE, NODEGROUP_LABEL, OFFERING_LABEL, Stack};
use stack::{StackOptions, eventually, pod_json};

/// Generous: the assertions poll, so a fast machine finishes fast.
const WAIT: Duration = Duration::from_secs(60);

/// Group `general` with `minNodes`, scans every 500ms, drains time out after 30s.
fn config(unneeded: &str, min_nodes: u32, offering: Option<&str>) -> String {
    let offering = offering.map_or_else(String::new, |o| format!("    offering: \"{o}\"\n"));
    format!(
        "cluster: cluster-1\n\
         scanInterval: 500ms\n\
         scaleDown:\n  utilizationThreshold: 0.5\n  unneededTime: {unneeded}\n  maxParallel: 1\n  drain:\n    timeout: 30s\n\
         nodeGroups:\n  - name: {GROUP}\n    minNodes: {min_nodes}\n    maxNodes: 10\n{offering}"
    )
}

/// n1 and n2 busy (3 of 4 cores each); n3 with 8 cores and `n3_pod` on it. Returns the node
/// names.
fn seed_three(fakes: &Fakes, n3_pod: (&str, &str)) -> [String; 3] {
    let n1 = fakes.seed_node(GROUP, "4", None);
    let n2 = fakes.seed_node(GROUP, "4", None);
    let n3 = fakes.seed_node(GROUP, "8", None);
    fakes.seed_pod("web-1", &n1, "3");
    fakes.seed_pod("web-2", &n2, "3");
    fakes.seed_pod(n3_pod.0, &n3, n3_pod.1);
    [n1, n2, n3]
}

/// `removable since <RFC 3339>` → the time.
fn removable_since(status: &str) -> Option<SystemTime> {
    let since = status.strip_prefix("removable since ")?;
    humantime::parse_rfc3339(since).ok()
}

/// Whether a Node is cordoned or tainted (the rebalancer started on it).
fn touched(node: &serde_json::Value) -> bool {
    node["spec"]["unschedulable"] == true
        || node["spec"]["taints"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_underutilised_node_whose_pods_fit_elsewhere_is_removed_after_unneeded_time() {
    let fakes = Fakes::start().await;
    let [n1, n2, n3] = seed_three(&fakes, ("small", "100m"));
    let machine = fakes.machine(&n3).expect("n3's machine");
    let stack = Stack::start(fakes, StackOptions::new(config("2s", 2, None))).await;

    let status = eventually(WAIT, "n3 removable", || {
        stack
            .status(&n3)
            .filter(|s| s.starts_with("removable since "))
    })
    .await;
    let since = removable_since(&status).unwrap_or_else(|| panic!("a time in {status:?}"));
    // Not before unneededTime: until since + 2s (the annotation's time is rounded down to the
    // second, so this is never later than the controller's own timer), n3 and its machine are
    // untouched. The clock is read before the checks, which take a moment: stop half a second
    // early so that a handover right at the end is not taken for an early one.
    let unneeded_end = since + Duration::from_secs(2);
    let checks_end = unneeded_end - Duration::from_millis(500);
    while SystemTime::now() < checks_end {
        let node = stack.node(&n3).expect("n3 exists during unneededTime");
        assert!(!touched(&node), "n3 cordoned before unneededTime: {node}");
        assert_eq!(stack.machine_state(&n3), MachineState::Running);
        assert!(stack.evictions("small").is_empty(), "evicted too early");
        assert!(
            !stack
                .node_event_reasons(&n3)
                .contains(&"ScaleDown".to_owned()),
            "handed over before unneededTime"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Then: drained through the Eviction API, the machine deleted in VPSie, the Node deleted.
    eventually(WAIT, "n3's machine gone", || {
        (stack.machine_state(&n3) == MachineState::Gone).then_some(())
    })
    .await;
    eventually(WAIT, "the Node n3 deleted", || {
        stack.node(&n3).is_none().then_some(())
    })
    .await;
    assert!(
        !stack.evictions("small").is_empty(),
        "the pod was not evicted"
    );
    assert!(stack.pod("small").is_none(), "the pod is still there");
    let deletes = stack.vpsie.calls_to(Route::Delete);
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(
        deletes[0].body.contains(&machine.identifier),
        "{deletes:#?}"
    );
    assert!(
        stack.vpsie.calls_to(Route::Add).is_empty(),
        "a scale-down provisions nothing"
    );
    // The busy nodes are untouched.
    for (node, pod) in [(&n1, "web-1"), (&n2, "web-2")] {
        assert_eq!(stack.machine_state(node), MachineState::Running);
        assert!(!touched(&stack.node(node).expect("busy node")));
        assert!(stack.pod(pod).is_some());
        assert_eq!(stack.status(node), None, "{node} is no candidate");
    }

    // The decision trail on n3: removable, handed over, succeeded.
    let events = eventually(WAIT, "the ScaleDownSucceeded Event", || {
        let events = stack.node_events(&n3);
        events
            .iter()
            .any(|e| e.reason == "ScaleDownSucceeded")
            .then_some(events)
    })
    .await;
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["ScaleDownRemovable", "ScaleDown", "ScaleDownSucceeded"],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e.namespace == NAMESPACE));
    assert!(events[0].note.starts_with(&status), "{events:#?}");
    assert!(events[2].note.contains("NODE_PHASE_DONE"), "{events:#?}");
    // One removal only: the survivors are at 75%.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.vpsie.calls_to(Route::Delete).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_pod_has_no_other_home_stays_with_the_safety_message_and_an_event() {
    let fakes = Fakes::start().await;
    // 2 cores: 25% of n3, and neither n1 nor n2 has 2 cores free.
    let [_, _, n3] = seed_three(&fakes, ("big", "2"));
    let stack = Stack::start(fakes, StackOptions::new(config("1s", 2, None))).await;

    let status = eventually(WAIT, "n3's status", || stack.status(&n3)).await;
    assert!(status.starts_with("blocked: "), "{status}");
    assert!(status.contains("default/big"), "{status}");
    assert!(!status.contains('\n'), "{status:?}");
    let events = eventually(WAIT, "the Event on n3", || {
        Some(stack.node_events(&n3)).filter(|e| !e.is_empty())
    })
    .await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].reason, "ScaleDownBlocked");
    assert_eq!(events[0].note, status);
    assert_eq!(events[0].namespace, NAMESPACE);

    // Well past unneededTime (1s) and several scans: n3 stays, untouched, and so does the status.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let node = stack.node(&n3).expect("n3 stays");
    assert!(!touched(&node), "{node}");
    assert_eq!(stack.machine_state(&n3), MachineState::Running);
    assert!(stack.pod("big").is_some());
    assert!(stack.all_evictions().is_empty());
    assert!(stack.vpsie.calls_to(Route::Delete).is_empty());
    assert_eq!(stack.status(&n3), Some(status));
    assert_eq!(stack.node_events(&n3).len(), 1);
    let metrics = e2e_tests::probes::scrape(stack.controller.metrics).await;
    assert!(
        metrics.contains(
            "controller_blocked_nodes{reason=\"REMOVAL_REASON_NO_PLACE_TO_MOVE_PODS\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_node_is_replaced_by_a_machine_with_the_groups_offering() {
    let fakes = Fakes::start().await;
    // Every node at 50% (no scale-down candidate); old still runs offering 2-4, its pods fit on
    // the two others.
    let old = fakes.seed_node(GROUP, "4", Some("2-4"));
    let b = fakes.seed_node(GROUP, "4", Some("4-8"));
    let c = fakes.seed_node(GROUP, "4", Some("4-8"));
    fakes.seed_pod("a-1", &old, "1");
    fakes.seed_pod("a-2", &old, "1");
    fakes.seed_pod("b-1", &b, "2");
    fakes.seed_pod("c-1", &c, "2");
    let old_machine = fakes.machine(&old).expect("old's machine");
    // minNodes 3: the empty replacement is not scaled down afterwards.
    let stack = Stack::start(fakes, StackOptions::new(config("1h", 3, Some("4-8")))).await;

    eventually(WAIT, "the old machine gone", || {
        (stack.machine_state(&old) == MachineState::Gone).then_some(())
    })
    .await;
    eventually(WAIT, "the old Node deleted", || {
        stack.node(&old).is_none().then_some(())
    })
    .await;

    // One new machine in the group, running, its Node Ready and labelled with the group and
    // the configured offering.
    let created = stack.created_machines();
    assert_eq!(created.len(), 1, "{created:#?}");
    let new = &created[0];
    assert_eq!(new.group_id, Some(GROUP_ID));
    assert_eq!(new.state, MachineState::Running);
    let adds = stack.vpsie.calls_to(Route::Add);
    assert_eq!(adds.len(), 1, "{adds:#?}");
    assert!(
        adds[0].path.ends_with(&format!("/group/{GROUP_ID}")),
        "{}",
        adds[0].path
    );
    let node = stack
        .node(&new.hostname)
        .unwrap_or_else(|| panic!("no Node {}", new.hostname));
    assert_eq!(node["metadata"]["labels"][NODEGROUP_LABEL], GROUP);
    assert_eq!(node["metadata"]["labels"][OFFERING_LABEL], "4-8");

    // The old node was drained first, then its machine deleted.
    for pod in ["a-1", "a-2"] {
        assert!(!stack.evictions(pod).is_empty(), "{pod} not evicted");
        assert!(stack.pod(pod).is_none(), "{pod} still there");
    }
    let deletes = stack.vpsie.calls_to(Route::Delete);
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(deletes[0].body.contains(&old_machine.identifier));
    for node in [&b, &c] {
        assert_eq!(stack.machine_state(node), MachineState::Running);
        assert!(!touched(&stack.node(node).expect("node")));
    }

    // The controller recorded the plan and its outcome on the old node.
    let events = eventually(WAIT, "the RebalanceSucceeded Event", || {
        let events = stack.node_events(&old);
        events
            .iter()
            .any(|e| e.reason == "RebalanceSucceeded")
            .then_some(events)
    })
    .await;
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Rebalance", "RebalanceSucceeded"], "{events:#?}");
    assert!(events[0].note.contains("drift-general-"), "{events:#?}");
    assert!(
        events[1]
            .note
            .contains(&format!("replaced by {}", new.hostname)),
        "{events:#?}"
    );

    // Nothing drifts any more: no second plan.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.vpsie.calls_to(Route::Add).len(), 1);
    assert_eq!(stack.created_machines().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_added_after_start_changes_the_decision_through_the_watch() {
    let fakes = Fakes::start().await;
    let [_, _, n3] = seed_three(&fakes, ("small", "100m"));
    // A long unneeded time: n3 stays "removable" without being handed over.
    let stack = Stack::start(fakes, StackOptions::new(config("1h", 2, None))).await;
    let first = eventually(WAIT, "n3 removable", || {
        stack
            .status(&n3)
            .filter(|s| s.starts_with("removable since "))
    })
    .await;

    // A pod that fits nowhere else lands on n3.
    stack.kube.apply(pod_json("big", &n3, "2"));
    let blocked = eventually(WAIT, "n3 blocked", || {
        stack.status(&n3).filter(|s| s.starts_with("blocked: "))
    })
    .await;
    assert!(blocked.contains("default/big"), "{blocked}");

    // It goes: n3 is removable again, its timer restarted.
    stack.kube.remove("Pod", NAMESPACE, "big");
    let again = eventually(WAIT, "n3 removable again", || {
        stack
            .status(&n3)
            .filter(|s| s.starts_with("removable since "))
    })
    .await;
    let (first, again) = (
        removable_since(&first).expect("a time"),
        removable_since(&again).expect("a time"),
    );
    assert!(again >= first, "{again:?} < {first:?}");
    // The Event follows the annotation write.
    let reasons = eventually(WAIT, "the third Event on n3", || {
        Some(stack.node_event_reasons(&n3)).filter(|r| r.len() >= 3)
    })
    .await;
    assert_eq!(
        reasons,
        [
            "ScaleDownRemovable",
            "ScaleDownBlocked",
            "ScaleDownRemovable"
        ]
    );
    assert_eq!(stack.machine_state(&n3), MachineState::Running);
    assert!(stack.all_evictions().is_empty());
}
