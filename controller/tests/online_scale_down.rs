//! `controller run` in-process against the Kubernetes API fake, a real safety-service and a fake
//! rebalancer: scale-down decisions, their annotations and Events, and the watch.

mod common;

use std::time::Duration;

use common::{
    Controller, ControllerSpec, FakeRebalancer, Safety, annotation, config, eventually, node,
    node_events, pod,
};
use e2e_tests::kube_fake::KubeFake;

const WAIT: Duration = Duration::from_secs(20);

/// n1 and n2 are busy (3 of 4 cores), n3 idle but for one small movable pod.
fn seed(fake: &KubeFake) {
    fake.apply(node("n1", "general", "4", None));
    fake.apply(node("n2", "general", "4", None));
    fake.apply(node("n3", "general", "8", None));
    fake.apply(pod("web-1", "n1", "3"));
    fake.apply(pod("web-2", "n2", "3"));
    fake.apply(pod("small", "n3", "100m"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_underutilised_node_whose_pods_fit_elsewhere_is_removed_after_unneeded_time() {
    let fake = KubeFake::start().await;
    seed(&fake);
    let safety = Safety::start().await;
    let rebalancer = FakeRebalancer::default();
    let (endpoint, _server) = rebalancer.serve().await;
    let controller = Controller::start(ControllerSpec {
        fake: &fake,
        config: config("1s", None),
        safety: &safety.endpoint,
        rebalancer: &endpoint,
        identity: "controller-a",
        lease_duration: Duration::from_secs(3),
    })
    .await;

    let status = eventually(WAIT, "n3 removable", || {
        annotation(&fake, "n3").filter(|s| s.starts_with("removable since "))
    })
    .await;
    let removal = eventually(WAIT, "RemoveNodes", || rebalancer.removals().pop()).await;
    assert_eq!(removal.node_names, ["n3"]);
    assert!(removal.request_id.starts_with("remove-"), "{removal:?}");
    assert!(!removal.dry_run);
    assert_eq!(removal.drain.as_ref().unwrap().timeout_seconds, 300);
    // Busy nodes are not candidates and carry no status.
    assert_eq!(annotation(&fake, "n1"), None);

    // The node was handed over once; later scans see the operation in flight.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rebalancer.removals().len(), 1);
    assert!(rebalancer.watched().contains(&removal.request_id));
    // The status did not change after it was written (no rewrite, one Event per change).
    assert_eq!(annotation(&fake, "n3").as_deref(), Some(status.as_str()));
    let events = node_events(&fake, "n3");
    let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(reasons, ["ScaleDownRemovable", "ScaleDown"], "{events:?}");
    assert!(events[0].1.starts_with(&status), "{events:?}");
    assert!(events[1].1.contains(&removal.request_id), "{events:?}");
    let patches = fake
        .writes()
        .into_iter()
        .filter(|w| w.method == "PATCH" && w.path == "/api/v1/nodes/n3")
        .count();
    assert_eq!(patches, 1);

    let metrics = e2e_tests::probes::scrape(controller.metrics).await;
    for expected in [
        "controller_leader 1",
        "controller_submissions_total{kind=\"RemoveNodes\"} 1",
        "controller_operations{kind=\"remove\",state=\"running\"} 1",
        "controller_scale_down_candidates 0",
        "controller_skipped_nodes{reason=\"in_operation\"} 1",
        "controller_rpc_duration_seconds_count{service=\"vpsie.safety.v1.SafetyService\",method=\"CanRemoveNodes\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }

    // The operation ends: the outcome is recorded on the node.
    rebalancer.finish(&removal.request_id, None);
    eventually(WAIT, "the outcome Event", || {
        node_events(&fake, "n3")
            .into_iter()
            .find(|(reason, _)| reason == "ScaleDownSucceeded")
    })
    .await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_pod_has_no_other_home_stays_with_the_safety_message() {
    let fake = KubeFake::start().await;
    fake.apply(node("n1", "general", "4", None));
    fake.apply(node("n2", "general", "4", None));
    fake.apply(node("n3", "general", "8", None));
    fake.apply(pod("web-1", "n1", "3"));
    fake.apply(pod("web-2", "n2", "3"));
    // 2 cores: 25% of n3, and neither n1 nor n2 has 2 cores free.
    fake.apply(pod("big", "n3", "2"));
    let safety = Safety::start().await;
    let rebalancer = FakeRebalancer::default();
    let (endpoint, _server) = rebalancer.serve().await;
    let controller = Controller::start(ControllerSpec {
        fake: &fake,
        config: config("1s", None),
        safety: &safety.endpoint,
        rebalancer: &endpoint,
        identity: "controller-a",
        lease_duration: Duration::from_secs(3),
    })
    .await;

    let status = eventually(WAIT, "n3 blocked", || annotation(&fake, "n3")).await;
    assert!(status.starts_with("blocked: "), "{status}");
    assert!(status.contains("default/big"), "{status}");
    assert!(!status.contains('\n'));
    let events = eventually(WAIT, "the Event", || {
        Some(node_events(&fake, "n3")).filter(|e| !e.is_empty())
    })
    .await;
    assert_eq!(events, [("ScaleDownBlocked".to_owned(), status.clone())]);
    let stored = fake.list("Event.events.k8s.io");
    assert_eq!(stored[0]["metadata"]["namespace"], "default");
    assert_eq!(
        stored[0]["reportingController"],
        "vpsie-autoscaler-controller"
    );
    assert_eq!(stored[0]["reportingInstance"], "controller-a");

    // Well past unneededTime: never handed over, the status and its one Event unchanged.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rebalancer.removals().is_empty());
    assert_eq!(annotation(&fake, "n3"), Some(status));
    assert_eq!(node_events(&fake, "n3").len(), 1);
    let metrics = e2e_tests::probes::scrape(controller.metrics).await;
    assert!(
        metrics.contains(
            "controller_blocked_nodes{reason=\"REMOVAL_REASON_NO_PLACE_TO_MOVE_PODS\"} 1"
        ),
        "{metrics}"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_added_after_start_changes_the_decision_through_the_watch() {
    let fake = KubeFake::start().await;
    seed(&fake);
    let safety = Safety::start().await;
    let rebalancer = FakeRebalancer::default();
    let (endpoint, _server) = rebalancer.serve().await;
    // A long unneeded time: n3 stays "removable" without being handed over.
    let controller = Controller::start(ControllerSpec {
        fake: &fake,
        config: config("1h", None),
        safety: &safety.endpoint,
        rebalancer: &endpoint,
        identity: "controller-a",
        lease_duration: Duration::from_secs(3),
    })
    .await;
    eventually(WAIT, "n3 removable", || {
        annotation(&fake, "n3").filter(|s| s.starts_with("removable since "))
    })
    .await;

    // A pod that fits nowhere else lands on n3.
    fake.apply(pod("big", "n3", "2"));
    let status = eventually(WAIT, "n3 blocked", || {
        annotation(&fake, "n3").filter(|s| s.starts_with("blocked: "))
    })
    .await;
    assert!(status.contains("default/big"), "{status}");

    // It goes: n3 is removable again, its timer restarted.
    fake.remove("Pod", "default", "big");
    eventually(WAIT, "n3 removable again", || {
        annotation(&fake, "n3").filter(|s| s.starts_with("removable since "))
    })
    .await;
    // The status annotation is written before its Event: wait for the Event too.
    let reasons: Vec<String> = eventually(WAIT, "the third Event", || {
        let reasons: Vec<String> = node_events(&fake, "n3")
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        (reasons.len() >= 3).then_some(reasons)
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
    assert!(rebalancer.removals().is_empty());
    controller.stop().await;
}
