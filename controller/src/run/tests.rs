//! The scan loop over in-memory fakes of the safety-service, the rebalancer and the node writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use vpsie_proto::rebalancer::v1 as rb;
use vpsie_proto::safety::v1 as pb;

use prost::Message as _;

use super::*;
use crate::clients::{NodeEvent, NodeRef, OperationStream, WithSnapshot};
use crate::config::{Config, NodeGroup};
use crate::planner::{Decision, OFFERING_LABEL, SCALE_DOWN_STATUS_ANNOTATION};

// ---- fakes ----

#[derive(Clone, Default)]
struct FakeSafety {
    state: Arc<Mutex<SafetyState>>,
}

#[derive(Default)]
struct SafetyState {
    /// Nodes that cannot go, with the message.
    blocked: BTreeMap<String, String>,
    unavailable: bool,
    calls: Vec<(String, Vec<String>)>,
}

impl FakeSafety {
    fn block(&self, node: &str, message: &str) {
        self.state
            .lock()
            .unwrap()
            .blocked
            .insert(node.into(), message.into());
    }
    fn unblock(&self, node: &str) {
        self.state.lock().unwrap().blocked.remove(node);
    }
    fn set_unavailable(&self, unavailable: bool) {
        self.state.lock().unwrap().unavailable = unavailable;
    }
    fn calls(&self) -> Vec<(String, Vec<String>)> {
        self.state.lock().unwrap().calls.clone()
    }
    fn answer(&self, node: &str) -> pb::CanRemoveNodeResponse {
        let state = self.state.lock().unwrap();
        match state.blocked.get(node) {
            Some(message) => pb::CanRemoveNodeResponse {
                removable: false,
                reason: pb::RemovalReason::NoPlaceToMovePods as i32,
                message: message.clone(),
                node_name: node.into(),
                ..Default::default()
            },
            None => pb::CanRemoveNodeResponse {
                removable: true,
                reason: pb::RemovalReason::Removable as i32,
                message: String::new(),
                node_name: node.into(),
                ..Default::default()
            },
        }
    }
}

impl Safety for FakeSafety {
    async fn can_remove_nodes(
        &self,
        request: WithSnapshot<pb::CanRemoveNodesRequest>,
    ) -> Result<pb::CanRemoveNodesResponse, Status> {
        let snapshot = pb::ClusterSnapshot::decode(request.snapshot.clone()).unwrap();
        assert!(!snapshot.nodes.is_empty());
        let request = request.rest;
        {
            let mut state = self.state.lock().unwrap();
            state
                .calls
                .push(("CanRemoveNodes".into(), request.node_names.clone()));
            if state.unavailable {
                return Err(Status::unavailable("safety-service down"));
            }
        }
        let mut response = pb::CanRemoveNodesResponse::default();
        for name in &request.node_names {
            let answer = self.answer(name);
            if answer.removable {
                response.removable_nodes.push(name.clone());
            }
            response.results.push(answer);
        }
        Ok(response)
    }

    async fn can_remove_node(
        &self,
        request: WithSnapshot<pb::CanRemoveNodeRequest>,
    ) -> Result<pb::CanRemoveNodeResponse, Status> {
        let snapshot = pb::ClusterSnapshot::decode(request.snapshot.clone()).unwrap();
        assert!(!snapshot.nodes.is_empty());
        let request = request.rest;
        {
            let mut state = self.state.lock().unwrap();
            state
                .calls
                .push(("CanRemoveNode".into(), vec![request.node_name.clone()]));
            if state.unavailable {
                return Err(Status::unavailable("safety-service down"));
            }
        }
        Ok(self.answer(&request.node_name))
    }
}

#[derive(Clone, Default)]
struct FakeRebalancer {
    state: Arc<Mutex<RebalancerState>>,
}

#[derive(Default)]
struct RebalancerState {
    operations: BTreeMap<String, rb::Operation>,
    removals: Vec<rb::RemoveNodesRequest>,
    plans: Vec<rb::ExecutePlanRequest>,
    list_fails: bool,
    /// New operations end at once (SUCCEEDED) instead of staying RUNNING.
    finish_at_once: bool,
}

impl FakeRebalancer {
    fn finishing() -> Self {
        let fake = FakeRebalancer::default();
        fake.state.lock().unwrap().finish_at_once = true;
        fake
    }
    fn removals(&self) -> Vec<rb::RemoveNodesRequest> {
        self.state.lock().unwrap().removals.clone()
    }
    fn plans(&self) -> Vec<rb::ExecutePlanRequest> {
        self.state.lock().unwrap().plans.clone()
    }
    fn insert(&self, operation: rb::Operation) {
        self.state
            .lock()
            .unwrap()
            .operations
            .insert(operation.id.clone(), operation);
    }
    fn set_list_fails(&self, fails: bool) {
        self.state.lock().unwrap().list_fails = fails;
    }
    fn create(&self, id: &str, kind: rb::OperationKind, nodes: Vec<String>) -> rb::Operation {
        let mut state = self.state.lock().unwrap();
        if let Some(existing) = state.operations.get(id) {
            return existing.clone();
        }
        let done = state.finish_at_once;
        let operation = rb::Operation {
            id: id.into(),
            kind: kind as i32,
            state: if done {
                rb::OperationState::Succeeded
            } else {
                rb::OperationState::Running
            } as i32,
            nodes: nodes
                .into_iter()
                .map(|node_name| rb::NodeProgress {
                    node_name,
                    phase: if done {
                        rb::NodePhase::Done
                    } else {
                        rb::NodePhase::Pending
                    } as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        state.operations.insert(id.into(), operation.clone());
        operation
    }
}

impl Rebalancer for FakeRebalancer {
    async fn remove_nodes(&self, request: rb::RemoveNodesRequest) -> Result<rb::Operation, Status> {
        self.state.lock().unwrap().removals.push(request.clone());
        Ok(self.create(
            &request.request_id,
            rb::OperationKind::Remove,
            request.node_names.clone(),
        ))
    }

    async fn execute_plan(&self, request: rb::ExecutePlanRequest) -> Result<rb::Operation, Status> {
        self.state.lock().unwrap().plans.push(request.clone());
        let plan = request.plan.unwrap();
        Ok(self.create(
            &plan.id,
            rb::OperationKind::Rebalance,
            plan.candidates.into_iter().map(|c| c.node_name).collect(),
        ))
    }

    async fn list_operations(&self) -> Result<Vec<rb::Operation>, Status> {
        let state = self.state.lock().unwrap();
        if state.list_fails {
            return Err(Status::unavailable("rebalancer down"));
        }
        Ok(state.operations.values().cloned().collect())
    }

    async fn watch_operation(&self, id: String) -> Result<OperationStream, Status> {
        let operation = self
            .state
            .lock()
            .unwrap()
            .operations
            .get(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(id.clone()))?;
        // The current state only; a running operation's stream ends there (the follower
        // watches again).
        Ok(Box::pin(futures::stream::iter([Ok(operation)])))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    Status(String, Option<String>),
    Event(NodeRef, NodeEvent),
}

#[derive(Clone, Default)]
struct FakeWriter {
    writes: Arc<Mutex<Vec<Write>>>,
}

impl FakeWriter {
    fn take(&self) -> Vec<Write> {
        std::mem::take(&mut *self.writes.lock().unwrap())
    }
}

impl NodeWriter for FakeWriter {
    async fn set_status(&self, node: &str, status: Option<&str>) -> anyhow::Result<()> {
        self.writes
            .lock()
            .unwrap()
            .push(Write::Status(node.into(), status.map(Into::into)));
        Ok(())
    }

    async fn publish(&self, node: &NodeRef, event: &NodeEvent) -> anyhow::Result<()> {
        self.writes
            .lock()
            .unwrap()
            .push(Write::Event(node.clone(), event.clone()));
        Ok(())
    }
}

// ---- fixtures ----

fn config() -> Config {
    Config {
        node_groups: vec![NodeGroup {
            name: "general".into(),
            min_nodes: 1,
            max_nodes: 10,
            offering: None,
        }],
        scale_down: crate::config::ScaleDown {
            unneeded_time: Duration::from_secs(60),
            ..Default::default()
        },
        ..Config::default()
    }
}

fn node(name: &str) -> pb::Node {
    pb::Node {
        metadata: Some(pb::ObjectMeta {
            name: name.into(),
            uid: format!("uid-{name}"),
            labels: [(NODEGROUP_LABEL.to_owned(), "general".to_owned())]
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        spec: Some(pb::NodeSpec::default()),
        status: Some(pb::NodeStatus {
            allocatable: [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            conditions: vec![pb::NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
            }],
            ..Default::default()
        }),
    }
}

fn pod(name: &str, node: &str, cpu: &str) -> pb::Pod {
    pb::Pod {
        metadata: Some(pb::ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }),
        spec: Some(pb::PodSpec {
            node_name: node.into(),
            containers: vec![pb::Container {
                name: "c".into(),
                resources: Some(pb::ResourceRequirements {
                    requests: [("cpu".to_owned(), cpu.to_owned())].into_iter().collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(pb::PodStatus {
            phase: "Running".into(),
        }),
    }
}

/// Three nodes: `busy-1` and `busy-2` above the threshold, `idle` almost empty.
fn cluster() -> pb::ClusterSnapshot {
    pb::ClusterSnapshot {
        nodes: vec![node("busy-1"), node("busy-2"), node("idle")],
        pods: vec![
            pod("a", "busy-1", "3"),
            pod("b", "busy-2", "3"),
            pod("c", "idle", "100m"),
        ],
        ..Default::default()
    }
}

/// The snapshot as the cache shows it once the annotations written are visible.
fn with_status(mut snapshot: pb::ClusterSnapshot, writes: &[Write]) -> pb::ClusterSnapshot {
    for write in writes {
        if let Write::Status(name, status) = write {
            let node = snapshot
                .nodes
                .iter_mut()
                .find(|n| n.metadata.as_ref().unwrap().name == *name)
                .unwrap();
            let annotations = &mut node.metadata.as_mut().unwrap().annotations;
            match status {
                Some(status) => {
                    annotations.insert(SCALE_DOWN_STATUS_ANNOTATION.into(), status.clone());
                }
                None => {
                    annotations.remove(SCALE_DOWN_STATUS_ANNOTATION);
                }
            }
        }
    }
    snapshot
}

fn scanner(
    config: Config,
    safety: &FakeSafety,
    rebalancer: &FakeRebalancer,
    writer: &FakeWriter,
) -> Scanner<FakeSafety, FakeRebalancer, FakeWriter> {
    Scanner::new(
        Arc::new(config),
        safety.clone(),
        rebalancer.clone(),
        writer.clone(),
        Arc::new(Metrics::new()),
    )
}

fn t(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000 + seconds)
}

fn decision<'a>(report: &'a ScanReport, name: &str) -> &'a Decision {
    &report
        .scan
        .nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap()
        .decision
}

fn events(writes: &[Write]) -> Vec<(String, &'static str)> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::Event(node, event) => Some((node.name.clone(), event.reason)),
            Write::Status(..) => None,
        })
        .collect()
}

fn statuses(writes: &[Write]) -> Vec<(String, Option<String>)> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::Status(node, status) => Some((node.clone(), status.clone())),
            Write::Event(..) => None,
        })
        .collect()
}

// ---- tests ----

#[tokio::test]
async fn a_removable_node_is_handed_over_after_the_unneeded_time_and_its_outcome_recorded() {
    let (safety, rebalancer, writer) = (
        FakeSafety::default(),
        FakeRebalancer::finishing(),
        FakeWriter::default(),
    );
    let mut scanner = scanner(config(), &safety, &rebalancer, &writer);

    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(0))
        .await
        .unwrap();
    assert_eq!(
        decision(&report, "idle"),
        &Decision::Removable { since: t(0) }
    );
    assert!(rebalancer.removals().is_empty());
    let writes = writer.take();
    assert_eq!(
        statuses(&writes),
        [(
            "idle".to_owned(),
            Some("removable since 2025-06-15T15:06:40Z".to_owned())
        )]
    );
    assert_eq!(events(&writes), [("idle".to_owned(), "ScaleDownRemovable")]);
    let Write::Event(reference, _) = &writes[1] else {
        panic!()
    };
    assert_eq!(reference.uid, "uid-idle");
    assert_eq!(
        safety.calls()[0],
        ("CanRemoveNodes".to_owned(), vec!["idle".to_owned()])
    );

    // Still removable, not for long enough: nothing new to write.
    let snapshot = with_status(cluster(), &writes);
    let report = scanner
        .scan(ScanSnapshot::from_message(&snapshot), t(30))
        .await
        .unwrap();
    assert_eq!(
        decision(&report, "idle"),
        &Decision::Removable { since: t(0) }
    );
    assert!(writer.take().is_empty());

    // Unneeded long enough: one RemoveNodes, an Event, and the outcome once it ends.
    let report = scanner
        .scan(ScanSnapshot::from_message(&snapshot), t(60))
        .await
        .unwrap();
    assert_eq!(
        decision(&report, "idle"),
        &Decision::Eligible { since: t(0) }
    );
    let removals = rebalancer.removals();
    assert_eq!(removals.len(), 1);
    assert_eq!(removals[0].node_names, ["idle"]);
    assert!(removals[0].request_id.starts_with("remove-"));
    assert_eq!(report.submitted, [removals[0].request_id.clone()]);
    scanner.wait_for_followers().await;
    let writes = writer.take();
    assert_eq!(
        events(&writes),
        [
            ("idle".to_owned(), "ScaleDown"),
            ("idle".to_owned(), "ScaleDownSucceeded")
        ]
    );
    assert!(statuses(&writes).is_empty(), "{writes:?}");

    // The same removal is not submitted twice.
    scanner
        .scan(ScanSnapshot::from_message(&snapshot), t(90))
        .await
        .unwrap();
    assert_eq!(rebalancer.removals().len(), 1);
}

#[tokio::test]
async fn a_blocked_node_shows_the_safety_message_once() {
    let (safety, rebalancer, writer) = (
        FakeSafety::default(),
        FakeRebalancer::default(),
        FakeWriter::default(),
    );
    safety.block("idle", "pod default/c has no other home");
    let mut scanner = scanner(config(), &safety, &rebalancer, &writer);

    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(0))
        .await
        .unwrap();
    assert!(matches!(
        decision(&report, "idle"),
        Decision::Blocked { .. }
    ));
    let writes = writer.take();
    assert_eq!(
        statuses(&writes),
        [(
            "idle".to_owned(),
            Some("blocked: pod default/c has no other home".to_owned())
        )]
    );
    assert_eq!(events(&writes), [("idle".to_owned(), "ScaleDownBlocked")]);
    let Write::Event(_, event) = &writes[1] else {
        panic!()
    };
    assert_eq!(event.note, "blocked: pod default/c has no other home");

    // The cache has not caught up with the annotation yet: no second write.
    scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(10))
        .await
        .unwrap();
    assert!(writer.take().is_empty());
    // It has: still nothing.
    scanner
        .scan(
            ScanSnapshot::from_message(&with_status(cluster(), &writes)),
            t(20),
        )
        .await
        .unwrap();
    assert!(writer.take().is_empty());

    // Unblocked: the status changes, with an Event; the timer starts then.
    safety.unblock("idle");
    let report = scanner
        .scan(
            ScanSnapshot::from_message(&with_status(cluster(), &writes)),
            t(30),
        )
        .await
        .unwrap();
    assert_eq!(
        decision(&report, "idle"),
        &Decision::Removable { since: t(30) }
    );
    assert_eq!(
        events(&writer.take()),
        [("idle".to_owned(), "ScaleDownRemovable")]
    );
    assert!(rebalancer.removals().is_empty());
}

#[tokio::test]
async fn no_answer_from_the_safety_service_blocks_and_restarts_the_timer() {
    let (safety, rebalancer, writer) = (
        FakeSafety::default(),
        FakeRebalancer::default(),
        FakeWriter::default(),
    );
    let mut scanner = scanner(config(), &safety, &rebalancer, &writer);
    scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(0))
        .await
        .unwrap();
    assert!(scanner.timers().removable_since.contains_key("idle"));

    safety.set_unavailable(true);
    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(70))
        .await
        .unwrap();
    assert_eq!(
        decision(&report, "idle"),
        &Decision::Blocked {
            message: "no answer from the safety-service".into()
        }
    );
    assert!(scanner.timers().removable_since.is_empty());
    assert!(rebalancer.removals().is_empty());

    safety.set_unavailable(false);
    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(80))
        .await
        .unwrap();
    assert_eq!(
        decision(&report, "idle"),
        &Decision::Removable { since: t(80) }
    );
}

#[tokio::test]
async fn nothing_is_submitted_while_the_operations_are_unknown() {
    let (safety, rebalancer, writer) = (
        FakeSafety::default(),
        FakeRebalancer::default(),
        FakeWriter::default(),
    );
    let mut scanner = scanner(config(), &safety, &rebalancer, &writer);
    scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(0))
        .await
        .unwrap();
    rebalancer.set_list_fails(true);
    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(60))
        .await
        .unwrap();
    assert_eq!(
        decision(&report, "idle"),
        &Decision::Eligible { since: t(0) }
    );
    assert!(report.submitted.is_empty());
    assert!(rebalancer.removals().is_empty());

    rebalancer.set_list_fails(false);
    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(70))
        .await
        .unwrap();
    assert_eq!(report.submitted.len(), 1);
}

#[tokio::test]
async fn operations_in_flight_take_their_nodes_and_slots_and_are_followed() {
    let (safety, rebalancer, writer) = (
        FakeSafety::default(),
        FakeRebalancer::default(),
        FakeWriter::default(),
    );
    // Another leader's removal of busy-2 is still running.
    rebalancer.insert(rb::Operation {
        id: "remove-0000000000000001".into(),
        kind: rb::OperationKind::Remove as i32,
        state: rb::OperationState::Running as i32,
        nodes: vec![rb::NodeProgress {
            node_name: "busy-2".into(),
            phase: rb::NodePhase::Draining as i32,
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut scanner = scanner(config(), &safety, &rebalancer, &writer);
    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(0))
        .await
        .unwrap();
    assert_eq!(
        decision(&report, "busy-2"),
        &Decision::NotCandidate(Skip::InOperation)
    );
    assert!(scanner.followed().contains("remove-0000000000000001"));

    // maxParallel 1 is taken: idle waits.
    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(60))
        .await
        .unwrap();
    assert_eq!(
        decision(&report, "idle"),
        &Decision::Waiting { since: t(0) }
    );
    assert!(rebalancer.removals().is_empty());
}

fn drifted_config() -> Config {
    let mut config = config();
    config.node_groups[0].offering = Some("4-8".into());
    config
}

fn drifted_cluster() -> pb::ClusterSnapshot {
    let mut snapshot = cluster();
    for node in &mut snapshot.nodes {
        let meta = node.metadata.as_mut().unwrap();
        let offering = if meta.name == "busy-1" { "2-4" } else { "4-8" };
        meta.labels.insert(OFFERING_LABEL.into(), offering.into());
    }
    snapshot
}

#[tokio::test]
async fn a_drifted_node_gets_one_plan_with_a_stable_id() {
    let (safety, rebalancer, writer) = (
        FakeSafety::default(),
        FakeRebalancer::default(),
        FakeWriter::default(),
    );
    let mut scanner = scanner(drifted_config(), &safety, &rebalancer, &writer);
    let report = scanner
        .scan(ScanSnapshot::from_message(&drifted_cluster()), t(0))
        .await
        .unwrap();
    let plans = rebalancer.plans();
    assert_eq!(plans.len(), 1);
    let plan = plans[0].plan.as_ref().unwrap();
    assert!(plan.id.starts_with("drift-general-"), "{}", plan.id);
    assert_eq!(plan.candidates[0].node_name, "busy-1");
    assert_eq!(
        decision(&report, "busy-1"),
        &Decision::Replace {
            plan_id: plan.id.clone()
        }
    );
    assert!(
        safety
            .calls()
            .contains(&("CanRemoveNode".to_owned(), vec!["busy-1".to_owned()]))
    );
    assert!(events(&writer.take()).contains(&("busy-1".to_owned(), "Rebalance")));

    // The plan is in flight: not asked again, not submitted again.
    let report = scanner
        .scan(ScanSnapshot::from_message(&drifted_cluster()), t(10))
        .await
        .unwrap();
    assert_eq!(rebalancer.plans().len(), 1);
    assert_eq!(
        decision(&report, "busy-1"),
        &Decision::NotCandidate(Skip::InOperation)
    );

    // A new leader (a fresh scanner) with the plan finished computes the same id and does not
    // submit it again.
    let first_id = plan.id.clone();
    {
        let mut state = rebalancer.state.lock().unwrap();
        let operation = state.operations.get_mut(&first_id).unwrap();
        operation.state = rb::OperationState::Failed as i32;
    }
    let mut next_leader = scanner_for(&safety, &rebalancer, &writer);
    next_leader
        .scan(ScanSnapshot::from_message(&drifted_cluster()), t(20))
        .await
        .unwrap();
    assert_eq!(rebalancer.plans().len(), 1);
}

fn scanner_for(
    safety: &FakeSafety,
    rebalancer: &FakeRebalancer,
    writer: &FakeWriter,
) -> Scanner<FakeSafety, FakeRebalancer, FakeWriter> {
    scanner(drifted_config(), safety, rebalancer, writer)
}

#[tokio::test]
async fn dry_run_writes_nothing_and_says_so_to_the_rebalancer() {
    let (safety, rebalancer, writer) = (
        FakeSafety::default(),
        FakeRebalancer::finishing(),
        FakeWriter::default(),
    );
    let mut config = config();
    config.dry_run = true;
    let mut scanner = scanner(config, &safety, &rebalancer, &writer);
    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(0))
        .await
        .unwrap();
    assert_eq!(report.status_changes, 1);
    let report = scanner
        .scan(ScanSnapshot::from_message(&cluster()), t(60))
        .await
        .unwrap();
    assert_eq!(report.submitted.len(), 1);
    scanner.wait_for_followers().await;
    assert!(rebalancer.removals()[0].dry_run);
    assert!(writer.take().is_empty());
}

#[test]
fn in_flight_covers_replacements_and_drift_groups() {
    let operations = [
        rb::Operation {
            id: "drift-general-00000000000000ab".into(),
            kind: rb::OperationKind::Rebalance as i32,
            state: rb::OperationState::Running as i32,
            nodes: vec![rb::NodeProgress {
                node_name: "old-1".into(),
                replacement_node_name: "new-1".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
        rb::Operation {
            id: "remove-1".into(),
            kind: rb::OperationKind::Remove as i32,
            state: rb::OperationState::Pending as i32,
            nodes: vec![rb::NodeProgress {
                node_name: "idle".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
        rb::Operation {
            id: "remove-2".into(),
            kind: rb::OperationKind::Remove as i32,
            state: rb::OperationState::Succeeded as i32,
            nodes: vec![rb::NodeProgress {
                node_name: "gone".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    ];
    let in_flight = in_flight(&operations, &cluster().nodes);
    assert_eq!(
        in_flight.replacing,
        BTreeSet::from(["old-1".to_owned(), "new-1".to_owned()])
    );
    assert_eq!(in_flight.removing, BTreeSet::from(["idle".to_owned()]));
    assert_eq!(
        in_flight.rebalancing_groups,
        BTreeSet::from(["general".to_owned()])
    );
    assert_eq!(drift_plan_group("drift-my-group-0123"), Some("my-group"));
    assert_eq!(drift_plan_group("remove-0123"), None);
}

#[test]
fn outcome_events_name_the_step_and_the_error() {
    let operation = rb::Operation {
        id: "drift-general-1".into(),
        kind: rb::OperationKind::Rebalance as i32,
        state: rb::OperationState::Failed as i32,
        ..Default::default()
    };
    let progress = rb::NodeProgress {
        node_name: "old-1".into(),
        phase: rb::NodePhase::Failed as i32,
        error: Some(rb::StepError {
            step: "safety_check".into(),
            message: "pod default/db-0 has no place\nto go".into(),
        }),
        ..Default::default()
    };
    let event = outcome_event(&operation, &progress);
    assert_eq!(event.reason, "RebalanceFailed");
    assert!(event.warning);
    assert_eq!(
        event.note,
        "operation drift-general-1 ended failed: node NODE_PHASE_FAILED at step safety_check: pod default/db-0 has no place to go"
    );
    let done = rb::NodeProgress {
        node_name: "idle".into(),
        phase: rb::NodePhase::Done as i32,
        ..Default::default()
    };
    let removal = rb::Operation {
        id: "remove-1".into(),
        kind: rb::OperationKind::Remove as i32,
        state: rb::OperationState::Succeeded as i32,
        ..Default::default()
    };
    let event = outcome_event(&removal, &done);
    assert_eq!(event.reason, "ScaleDownSucceeded");
    assert!(!event.warning);
}

#[test]
fn skip_labels_are_snake_case() {
    assert_eq!(skip_label(&Skip::AboveThreshold), "above_threshold");
    assert_eq!(
        skip_label(&Skip::GroupAtMinimum {
            nodes: 1,
            min_nodes: 1
        }),
        "group_at_minimum"
    );
}
