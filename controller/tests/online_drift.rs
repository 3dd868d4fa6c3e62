//! `controller run` in-process: a drifted node becomes one `ExecutePlan` with a stable id,
//! followed to its end, with the outcome recorded on the node.

mod common;

use std::time::Duration;

use common::{
    Controller, ControllerSpec, FakeRebalancer, Safety, annotation, config, eventually, node,
    node_events, pod,
};
use e2e_tests::kube_fake::KubeFake;

const WAIT: Duration = Duration::from_secs(20);

/// Every node at 50% or more (no scale-down candidate); n1 still runs the old offering and its
/// pods fit on n2 and n3.
fn seed(fake: &KubeFake) {
    fake.apply(node("n1", "general", "4", Some("2-4")));
    fake.apply(node("n2", "general", "4", Some("4-8")));
    fake.apply(node("n3", "general", "4", Some("4-8")));
    fake.apply(pod("a-1", "n1", "1"));
    fake.apply(pod("a-2", "n1", "1"));
    fake.apply(pod("b-1", "n2", "2"));
    fake.apply(pod("c-1", "n3", "2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_node_produces_one_plan_with_a_stable_id() {
    let fake = KubeFake::start().await;
    seed(&fake);
    let safety = Safety::start().await;
    let rebalancer = FakeRebalancer::default();
    let (endpoint, _server) = rebalancer.serve().await;
    let spec = |identity: &'static str| ControllerSpec {
        fake: &fake,
        config: config("10m", Some("4-8")),
        safety: &safety.endpoint,
        rebalancer: &endpoint,
        identity,
        lease_duration: Duration::from_secs(2),
    };
    let controller = Controller::start(spec("controller-a")).await;

    let plan = eventually(WAIT, "ExecutePlan", || rebalancer.plans().pop()).await;
    assert!(plan.id.starts_with("drift-general-"), "{}", plan.id);
    assert_eq!(plan.node_group_name, "general");
    assert_eq!(plan.candidates.len(), 1);
    assert_eq!(plan.candidates[0].node_name, "n1");
    assert_eq!(plan.candidates[0].current_offering, "2-4");
    assert_eq!(plan.candidates[0].target_offering, "4-8");
    assert!(!plan.dry_run);
    eventually(WAIT, "the Rebalance Event", || {
        node_events(&fake, "n1")
            .into_iter()
            .find(|(reason, note)| reason == "Rebalance" && note.contains(&plan.id))
    })
    .await;

    // More scans: the plan is in flight, nothing is submitted again.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(rebalancer.plans().len(), 1);
    assert!(rebalancer.watched().contains(&plan.id));
    // Not a scale-down matter: no status on the drifted node.
    assert_eq!(annotation(&fake, "n1"), None);

    // Another controller taking over computes the same id and does not submit it again.
    controller.stop().await;
    let before = rebalancer.list_calls();
    let next = Controller::start(spec("controller-b")).await;
    eventually(WAIT, "the second controller scanning", || {
        (rebalancer.list_calls() > before
            && common::lease_holder(&fake).as_deref() == Some("controller-b"))
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rebalancer.plans().len(), 1);

    // The plan fails for n1: the outcome is recorded on it.
    rebalancer.finish(
        &plan.id,
        Some(("safety_check", "pod default/a-1 has no place to go")),
    );
    let (_, note) = eventually(WAIT, "the outcome Event", || {
        node_events(&fake, "n1")
            .into_iter()
            .find(|(reason, _)| reason == "RebalanceFailed")
    })
    .await;
    assert!(
        note.contains("at step safety_check: pod default/a-1 has no place to go"),
        "{note}"
    );

    // Ended: the same plan is not submitted again either (same id, known to the rebalancer).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rebalancer.plans().len(), 1);
    next.stop().await;
}
