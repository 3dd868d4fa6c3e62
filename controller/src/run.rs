//! `controller run`: the online loop (`controller.md`, "Scale-down, each scan", "Drift
//! rebalancing", "High availability").
//!
//! Every `scanInterval`, while this replica leads, a [`Scanner`]:
//! 1. reads the rebalancer's operations (`ListOperations`): unfinished ones are in flight (their
//!    nodes, and the replacement nodes of rebalances, are not candidates; `RemoveNodes` ones take
//!    removal slots) and are followed with `WatchOperation` if nobody follows them yet. When the
//!    list fails nothing is submitted this scan (what is in flight is unknown);
//! 2. surveys the snapshot built from the watched cache ([`crate::planner::survey`]);
//! 3. asks the safety-service: one `CanRemoveNode` per drift candidate, one `CanRemoveNodes`
//!    with the scale-down candidates, all sharing one copy of the snapshot
//!    ([`WithSnapshot`]). A failed call leaves its nodes without an answer: blocked (fail
//!    closed);
//! 4. decides ([`crate::planner::decide`], [`UnneededTimer::Enforced`]) with the timers of the
//!    previous scan (kept in memory; a new leader starts them afresh, which can only delay a
//!    removal);
//! 5. makes every decision visible: the node's `autoscaler.vpsie.com/scale-down-status`
//!    annotation is merge-patched when it differs from what the cache shows (and from what this
//!    scanner wrote last, while the cache catches up), an Event is published on the node when the
//!    annotation gets a new value, a log line says what changed, and the metrics are updated. A
//!    node in an unfinished operation keeps the status it was handed over with;
//! 6. submits the scan's `RemoveNodes` and `ExecutePlan` requests unless the rebalancer already
//!    knows their ids (ids are derived from the nodes, so a restarted or new leader does not
//!    submit twice, and a finished operation is not submitted again), publishes an Event on each
//!    node handed over, and follows each operation with `WatchOperation` until it ends; the
//!    outcome is recorded on each of its nodes as an Event (`ScaleDownSucceeded`,
//!    `RebalanceFailed`, …) and a log line.
//!
//! `dryRun: true`: the requests go to the rebalancer with `dryRun` set (it plans and reports,
//! writing nothing) and the controller writes nothing either: no annotation, no Event; the
//! decisions are in the logs and the metrics.
//!
//! Losing the lease stops the scan in progress and drops the scanner (its timers and the
//! operation followers with it); the next leader starts over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use telemetry::tls::ClientTlsFiles;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::{Code, Status};
use vpsie_proto::rebalancer::v1 as rb;
use vpsie_proto::safety::v1 as pb;

use crate::cache::Cache;
use crate::clients::{
    GrpcRebalancer, GrpcSafety, KubeNodeWriter, NodeEvent, NodeRef, NodeWriter, Rebalancer, Safety,
    WithSnapshot, lazy_channel,
};
use crate::config::Config;
use crate::leader::{Elector, LeaderConfig};
use crate::metrics::{Metrics, REBALANCER_SERVICE, SAFETY_SERVICE, ScanCounts};
use crate::planner::{
    self, Decision, InFlight, NODEGROUP_LABEL, SCALE_DOWN_STATUS_ANNOTATION, SafetyAnswers, Scan,
    Skip, SnapshotError, Timers, UnneededTimer,
};
use crate::scan_snapshot::ScanSnapshot;

/// The longest wait between two `WatchOperation` attempts on one operation.
const FOLLOW_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Whether an operation has ended.
pub fn is_terminal(operation: &rb::Operation) -> bool {
    matches!(
        rb::OperationState::try_from(operation.state),
        Ok(rb::OperationState::Succeeded
            | rb::OperationState::Failed
            | rb::OperationState::Cancelled)
    )
}

fn kind_label(operation: &rb::Operation) -> &'static str {
    match rb::OperationKind::try_from(operation.kind) {
        Ok(rb::OperationKind::Remove) => "remove",
        Ok(rb::OperationKind::Rebalance) => "rebalance",
        _ => "unspecified",
    }
}

fn state_label(operation: &rb::Operation) -> &'static str {
    match rb::OperationState::try_from(operation.state) {
        Ok(rb::OperationState::Pending) => "pending",
        Ok(rb::OperationState::Running) => "running",
        Ok(rb::OperationState::Succeeded) => "succeeded",
        Ok(rb::OperationState::Failed) => "failed",
        Ok(rb::OperationState::Cancelled) => "cancelled",
        _ => "unspecified",
    }
}

/// The group of a plan id `drift-<group>-<hash>`.
fn drift_plan_group(id: &str) -> Option<&str> {
    id.strip_prefix("drift-")?
        .rsplit_once('-')
        .map(|(group, _)| group)
        .filter(|group| !group.is_empty())
}

/// What the unfinished operations hold: their nodes (and the replacements of rebalances), the
/// removals taking slots, and the groups with a rebalance in flight.
pub fn in_flight<'a>(
    operations: impl IntoIterator<Item = &'a rb::Operation>,
    nodes: &[pb::Node],
) -> InFlight {
    let groups: HashMap<&str, &str> = nodes
        .iter()
        .filter_map(|node| {
            let meta = node.metadata.as_ref()?;
            Some((
                meta.name.as_str(),
                meta.labels.get(NODEGROUP_LABEL)?.as_str(),
            ))
        })
        .collect();
    let mut in_flight = InFlight::default();
    for operation in operations {
        if is_terminal(operation) {
            continue;
        }
        match rb::OperationKind::try_from(operation.kind) {
            Ok(rb::OperationKind::Remove) => {
                for node in &operation.nodes {
                    in_flight.removing.insert(node.node_name.clone());
                }
            }
            _ => {
                // A rebalance (or an operation of unknown kind: fail closed, keep off its nodes).
                if let Some(group) = drift_plan_group(&operation.id) {
                    in_flight.rebalancing_groups.insert(group.to_owned());
                }
                for node in &operation.nodes {
                    in_flight.replacing.insert(node.node_name.clone());
                    if let Some(group) = groups.get(node.node_name.as_str()) {
                        in_flight.rebalancing_groups.insert((*group).to_owned());
                    }
                    if !node.replacement_node_name.is_empty() {
                        in_flight
                            .replacing
                            .insert(node.replacement_node_name.clone());
                    }
                }
            }
        }
    }
    in_flight
}

/// The metrics label of a reason for not being a candidate.
pub fn skip_label(skip: &Skip) -> &'static str {
    match skip {
        Skip::NoGroupLabel => "no_group_label",
        Skip::UnknownGroup => "unknown_group",
        Skip::Deleting => "deleting",
        Skip::InOperation => "in_operation",
        Skip::Protected(_) => "protected",
        Skip::NotReady => "not_ready",
        Skip::Cordoned => "cordoned",
        Skip::Draining => "draining",
        Skip::UnknownAllocatable(_) => "unknown_allocatable",
        Skip::ScaleDownDisabled => "scale_down_disabled",
        Skip::AboveThreshold => "above_threshold",
        Skip::GroupAtMinimum { .. } => "group_at_minimum",
        Skip::NotAsked { .. } => "not_asked",
    }
}

/// What one scan did, besides deciding.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub scan: Scan,
    /// Ids of the operations submitted by this scan.
    pub submitted: Vec<String>,
    /// Annotation writes made (or, in dry run, that would have been made).
    pub status_changes: usize,
}

/// The node facts the scan needs after the snapshot went into a request.
struct NodeFacts {
    uid: String,
    status: Option<String>,
}

/// One leader's scans: timers, annotations written, operations followed.
pub struct Scanner<S, R, W> {
    config: Arc<Config>,
    safety: S,
    rebalancer: R,
    writer: W,
    metrics: Arc<Metrics>,
    timers: Timers,
    /// Annotation values written and not yet seen in the cache.
    written: HashMap<String, Option<String>>,
    /// The latest state of every operation seen, by id.
    operations: Arc<Mutex<BTreeMap<String, rb::Operation>>>,
    following: HashSet<String>,
    /// One task per followed operation; each returns the operation's id.
    followers: JoinSet<String>,
}

impl<S: Safety, R: Rebalancer, W: NodeWriter> Scanner<S, R, W> {
    pub fn new(
        config: Arc<Config>,
        safety: S,
        rebalancer: R,
        writer: W,
        metrics: Arc<Metrics>,
    ) -> Self {
        Scanner {
            config,
            safety,
            rebalancer,
            writer,
            metrics,
            timers: Timers::default(),
            written: HashMap::new(),
            operations: Arc::default(),
            following: HashSet::new(),
            followers: JoinSet::new(),
        }
    }

    /// Since when each node has been removable.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// The latest state of every operation seen.
    pub fn operations(&self) -> BTreeMap<String, rb::Operation> {
        self.operations.lock().expect("operations lock").clone()
    }

    /// Ids of the operations being followed.
    pub fn followed(&self) -> &HashSet<String> {
        &self.following
    }

    fn writes_enabled(&self) -> bool {
        !self.config.dry_run
    }

    /// One scan over `snapshot` at `now`. Fails only when the snapshot cannot be read (nothing
    /// is decided then, and the timers restart).
    pub async fn scan(
        &mut self,
        snapshot: ScanSnapshot,
        now: SystemTime,
    ) -> Result<ScanReport, SnapshotError> {
        let started = Instant::now();
        // Each scan is the root of its own trace: its safety and rebalancer calls are children.
        let span = tracing::info_span!(
            parent: None,
            "scan",
            nodes = tracing::field::Empty,
            submitted = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result =
            tracing::Instrument::instrument(self.scan_inner(snapshot, now), span.clone()).await;
        match &result {
            Ok(report) => {
                span.record("nodes", report.scan.nodes.len());
                span.record("submitted", report.submitted.len());
            }
            Err(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        drop(span);
        self.metrics.record_scan(result.is_ok(), started.elapsed());
        match &result {
            Ok(report) => tracing::info!(
                nodes = report.scan.nodes.len(),
                removable = report
                    .scan
                    .nodes
                    .iter()
                    .filter(|n| matches!(
                        n.decision,
                        Decision::Removable { .. } | Decision::Waiting { .. } | Decision::Eligible { .. }
                    ))
                    .count(),
                blocked = report
                    .scan
                    .nodes
                    .iter()
                    .filter(|n| matches!(n.decision, Decision::Blocked { .. }))
                    .count(),
                status_changes = report.status_changes,
                submitted = ?report.submitted,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "scan done"
            ),
            Err(error) => {
                tracing::error!(%error, "scan failed: the snapshot cannot be read; nothing decided")
            }
        }
        result
    }

    async fn scan_inner(
        &mut self,
        snapshot: ScanSnapshot,
        now: SystemTime,
    ) -> Result<ScanReport, SnapshotError> {
        let facts: HashMap<String, NodeFacts> = snapshot
            .nodes()
            .iter()
            .filter_map(|node| node.metadata.as_ref())
            .map(|meta| {
                (
                    meta.name.clone(),
                    NodeFacts {
                        uid: meta.uid.clone(),
                        status: meta.annotations.get(SCALE_DOWN_STATUS_ANNOTATION).cloned(),
                    },
                )
            })
            .collect();

        // 1. What is in flight.
        while let Some(ended) = self.followers.try_join_next() {
            if let Ok(id) = ended {
                self.following.remove(&id);
            }
        }
        let started = Instant::now();
        let listed = self.rebalancer.list_operations().await;
        self.record_rpc(REBALANCER_SERVICE, "ListOperations", started, &listed);
        let operations_known = match listed {
            Ok(listed) => {
                // The rebalancer's list replaces what was known, but for unfinished operations
                // it does not show (yet).
                let mut operations = self.operations.lock().expect("operations lock");
                let previous = std::mem::take(&mut *operations);
                for operation in listed {
                    operations.insert(operation.id.clone(), operation);
                }
                for (id, operation) in previous {
                    if !is_terminal(&operation) {
                        operations.entry(id).or_insert(operation);
                    }
                }
                true
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "ListOperations failed: nothing is submitted this scan");
                false
            }
        };
        let unfinished: Vec<rb::Operation> = self
            .operations
            .lock()
            .expect("operations lock")
            .values()
            .filter(|operation| !is_terminal(operation))
            .cloned()
            .collect();
        for operation in &unfinished {
            if !self.following.contains(&operation.id) {
                let nodes = operation
                    .nodes
                    .iter()
                    .map(|progress| node_ref(&facts, &progress.node_name))
                    .collect();
                self.follow(operation.id.clone(), nodes);
            }
        }
        let in_flight = in_flight(&unfinished, snapshot.nodes());
        self.record_operations();

        // 2. Survey.
        let survey = match planner::survey_nodes(
            snapshot.nodes(),
            snapshot.pod_usage(),
            &self.config,
            &in_flight,
        ) {
            Ok(survey) => survey,
            Err(error) => {
                self.timers = Timers::default();
                return Err(error);
            }
        };

        // 3. Ask: one shared copy of the encoded snapshot for every call.
        let mut answers = SafetyAnswers::default();
        for name in &survey.drift_candidates {
            let request = WithSnapshot {
                snapshot: snapshot.encoded().clone(),
                rest: pb::CanRemoveNodeRequest {
                    snapshot: None,
                    node_name: name.clone(),
                    options: Some(pb::RemovalOptions::default()),
                },
            };
            let started = Instant::now();
            let result = self.safety.can_remove_node(request).await;
            self.record_rpc(SAFETY_SERVICE, "CanRemoveNode", started, &result);
            match result {
                Ok(response) => {
                    answers.drift.insert(name.clone(), response);
                }
                Err(status) => tracing::warn!(
                    node = %name,
                    code = ?status.code(),
                    message = status.message(),
                    "CanRemoveNode failed: the drifted node is blocked this scan"
                ),
            }
        }
        if let Some(mut rest) = survey.can_remove_nodes_request(pb::ClusterSnapshot::default()) {
            rest.snapshot = None;
            let request = WithSnapshot {
                snapshot: snapshot.encoded().clone(),
                rest,
            };
            let started = Instant::now();
            let result = self.safety.can_remove_nodes(request).await;
            self.record_rpc(SAFETY_SERVICE, "CanRemoveNodes", started, &result);
            match result {
                Ok(response) => answers.removal = Some(response),
                Err(status) => tracing::warn!(
                    code = ?status.code(),
                    message = status.message(),
                    candidates = survey.candidates.len(),
                    "CanRemoveNodes failed: every candidate is blocked this scan"
                ),
            }
        }
        // The decoded nodes: thousands of small allocations for a large cluster, freed off the
        // async workers.
        drop_elsewhere(snapshot);

        // 4. Decide.
        let scan = planner::decide(
            &survey,
            &self.config,
            &answers,
            &self.timers,
            &in_flight,
            now,
            UnneededTimer::Enforced,
        );
        self.timers = scan.timers.clone();
        self.record_counts(&survey, &answers, &scan);

        // 5. Make the decisions visible.
        let status_changes = self.publish_statuses(&scan, &facts).await;

        // 6. Submit.
        let mut submitted = Vec::new();
        if let Some(request) = &scan.remove
            && let Some(id) = self.submit_removal(request, &facts, operations_known).await
        {
            submitted.push(id);
        }
        for request in &scan.rebalance {
            if let Some(id) = self.submit_plan(request, &facts, operations_known).await {
                submitted.push(id);
            }
        }
        self.record_operations();

        Ok(ScanReport {
            scan,
            submitted,
            status_changes,
        })
    }

    fn record_rpc<T>(
        &self,
        service: &'static str,
        method: &'static str,
        started: Instant,
        result: &Result<T, Status>,
    ) {
        self.metrics.record_rpc(
            service,
            method,
            started.elapsed(),
            result.as_ref().err().map(Status::code),
        );
    }

    fn record_operations(&self) {
        let operations = self.operations.lock().expect("operations lock");
        self.metrics.record_operations(
            operations
                .values()
                .map(|operation| (kind_label(operation), state_label(operation))),
        );
    }

    fn record_counts(&self, survey: &planner::Survey, answers: &SafetyAnswers, scan: &Scan) {
        let reasons: HashMap<&str, i32> = answers
            .removal
            .iter()
            .flat_map(|response| &response.results)
            .map(|result| (result.node_name.as_str(), result.reason))
            .chain(
                answers
                    .drift
                    .iter()
                    .map(|(name, answer)| (name.as_str(), answer.reason)),
            )
            .collect();
        let mut counts = ScanCounts {
            candidates: survey.candidates.len() as i64,
            drifted: survey.nodes.iter().filter(|n| n.drift.is_some()).count() as i64,
            ..ScanCounts::default()
        };
        for node in &scan.nodes {
            match &node.decision {
                Decision::Removable { .. }
                | Decision::Waiting { .. }
                | Decision::Eligible { .. } => {
                    counts.removable += 1;
                }
                Decision::Blocked { .. } => {
                    let reason = reasons
                        .get(node.name.as_str())
                        .and_then(|reason| pb::RemovalReason::try_from(*reason).ok())
                        .map_or("NO_ANSWER", |reason| reason.as_str_name());
                    *counts.blocked.entry(reason.to_owned()).or_default() += 1;
                }
                Decision::NotCandidate(skip) => {
                    *counts
                        .skipped
                        .entry(skip_label(skip).to_owned())
                        .or_default() += 1;
                }
                Decision::Replace { .. } => {}
            }
        }
        self.metrics.record_counts(&counts);
    }

    /// Step 5: annotations, Events and log lines for the nodes whose status changed.
    async fn publish_statuses(&mut self, scan: &Scan, facts: &HashMap<String, NodeFacts>) -> usize {
        self.written.retain(|name, _| facts.contains_key(name));
        let mut changes = 0;
        for report in &scan.nodes {
            tracing::debug!(
                node = %report.name,
                group = report.group.as_deref().unwrap_or("-"),
                decision = report.decision.label(),
                reason = %report.reason,
                "decision"
            );
            let Some(fact) = facts.get(&report.name) else {
                continue;
            };
            if report.decision == Decision::NotCandidate(Skip::InOperation) {
                // Handed to the rebalancer: the last decision stays on the node.
                continue;
            }
            let desired = report.status_annotation();
            if fact.status == desired {
                self.written.remove(&report.name);
                continue;
            }
            if self.written.get(&report.name) == Some(&desired) {
                // Written by this scanner; the cache has not caught up yet.
                continue;
            }
            changes += 1;
            tracing::info!(
                node = %report.name,
                group = report.group.as_deref().unwrap_or("-"),
                decision = report.decision.label(),
                status = desired.as_deref().unwrap_or("(none)"),
                previous = fact.status.as_deref().unwrap_or("(none)"),
                reason = %report.reason,
                dry_run = self.config.dry_run,
                "scale-down status changed"
            );
            if !self.writes_enabled() {
                self.written.insert(report.name.clone(), desired);
                continue;
            }
            match self
                .writer
                .set_status(&report.name, desired.as_deref())
                .await
            {
                Ok(()) => {
                    self.written.insert(report.name.clone(), desired.clone());
                }
                Err(error) => {
                    self.metrics.record_kube_write_error("annotation");
                    tracing::warn!(node = %report.name, %error, "writing the scale-down status failed; retried next scan");
                    continue;
                }
            }
            if let Some(event) = status_event(&report.decision, &report.reason) {
                let node = NodeRef {
                    name: report.name.clone(),
                    uid: fact.uid.clone(),
                };
                self.publish(&node, &event).await;
            }
        }
        changes
    }

    async fn publish(&self, node: &NodeRef, event: &NodeEvent) {
        if !self.writes_enabled() {
            return;
        }
        if let Err(error) = self.writer.publish(node, event).await {
            self.metrics.record_kube_write_error("event");
            tracing::warn!(node = %node.name, %error, "publishing an event failed");
        }
    }

    /// Whether a request with this id may be submitted now.
    fn may_submit(&self, id: &str, operations_known: bool, what: &str) -> bool {
        if !operations_known {
            tracing::warn!(
                id,
                "{what} not submitted: the rebalancer's operations could not be listed"
            );
            return false;
        }
        if let Some(operation) = self.operations.lock().expect("operations lock").get(id) {
            tracing::debug!(
                id,
                state = state_label(operation),
                "{what} not submitted again: the rebalancer knows this id"
            );
            return false;
        }
        true
    }

    async fn submit_removal(
        &mut self,
        request: &rb::RemoveNodesRequest,
        facts: &HashMap<String, NodeFacts>,
        operations_known: bool,
    ) -> Option<String> {
        let id = request.request_id.clone();
        if !self.may_submit(&id, operations_known, "RemoveNodes") {
            return None;
        }
        let started = Instant::now();
        let result = self.rebalancer.remove_nodes(request.clone()).await;
        self.record_rpc(REBALANCER_SERVICE, "RemoveNodes", started, &result);
        let nodes: Vec<NodeRef> = request
            .node_names
            .iter()
            .map(|name| node_ref(facts, name))
            .collect();
        match result {
            Ok(operation) => {
                self.metrics.record_submission("RemoveNodes");
                tracing::info!(operation = %operation.id, nodes = ?request.node_names, dry_run = request.dry_run, "RemoveNodes submitted");
                self.remember(operation);
                for node in &nodes {
                    let event = NodeEvent {
                        warning: false,
                        reason: "ScaleDown",
                        action: "RemoveNodes",
                        note: format!(
                            "removable for the unneeded time; handed to the rebalancer (RemoveNodes {id})"
                        ),
                    };
                    self.publish(node, &event).await;
                }
                self.follow(id.clone(), nodes);
                Some(id)
            }
            Err(status) => {
                tracing::warn!(id, code = ?status.code(), message = status.message(), "RemoveNodes failed; retried next scan");
                None
            }
        }
    }

    async fn submit_plan(
        &mut self,
        request: &rb::ExecutePlanRequest,
        facts: &HashMap<String, NodeFacts>,
        operations_known: bool,
    ) -> Option<String> {
        let plan = request.plan.as_ref()?;
        let id = plan.id.clone();
        if !self.may_submit(&id, operations_known, "ExecutePlan") {
            return None;
        }
        let started = Instant::now();
        let result = self.rebalancer.execute_plan(request.clone()).await;
        self.record_rpc(REBALANCER_SERVICE, "ExecutePlan", started, &result);
        let nodes: Vec<NodeRef> = plan
            .candidates
            .iter()
            .map(|candidate| node_ref(facts, &candidate.node_name))
            .collect();
        match result {
            Ok(operation) => {
                self.metrics.record_submission("ExecutePlan");
                tracing::info!(operation = %operation.id, group = %plan.node_group_name, nodes = ?plan.candidates.iter().map(|c| &c.node_name).collect::<Vec<_>>(), dry_run = plan.dry_run, "ExecutePlan submitted");
                self.remember(operation);
                for (node, candidate) in nodes.iter().zip(&plan.candidates) {
                    let event = NodeEvent {
                        warning: false,
                        reason: "Rebalance",
                        action: "ExecutePlan",
                        note: format!(
                            "drifted (offering {}, group {} wants {}); replacement plan {id} submitted",
                            candidate.current_offering,
                            plan.node_group_name,
                            candidate.target_offering
                        ),
                    };
                    self.publish(node, &event).await;
                }
                self.follow(id.clone(), nodes);
                Some(id)
            }
            Err(status) => {
                tracing::warn!(id, code = ?status.code(), message = status.message(), "ExecutePlan failed; retried next scan");
                None
            }
        }
    }

    fn remember(&self, operation: rb::Operation) {
        self.operations
            .lock()
            .expect("operations lock")
            .insert(operation.id.clone(), operation);
    }

    /// Follows an operation with `WatchOperation` until it ends, then records the outcome.
    fn follow(&mut self, id: String, nodes: Vec<NodeRef>) {
        if !self.following.insert(id.clone()) {
            return;
        }
        let follower = Follower {
            rebalancer: self.rebalancer.clone(),
            writer: self.writer.clone(),
            metrics: Arc::clone(&self.metrics),
            operations: Arc::clone(&self.operations),
            writes: self.writes_enabled(),
            nodes,
        };
        self.followers.spawn(follower.run(id));
    }

    /// Waits until every followed operation has ended (tests).
    pub async fn wait_for_followers(&mut self) {
        while let Some(ended) = self.followers.join_next().await {
            if let Ok(id) = ended {
                self.following.remove(&id);
            }
        }
    }
}

/// Drops a large value on the blocking pool when in a Tokio runtime, here otherwise.
fn drop_elsewhere<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(value));
        }
        Err(_) => drop(value),
    }
}

fn node_ref(facts: &HashMap<String, NodeFacts>, name: &str) -> NodeRef {
    NodeRef {
        name: name.to_owned(),
        uid: facts.get(name).map(|f| f.uid.clone()).unwrap_or_default(),
    }
}

/// The Event for a new status annotation.
fn status_event(decision: &Decision, reason: &str) -> Option<NodeEvent> {
    let annotation = decision.status_annotation()?;
    let (reason_code, note) = match decision {
        Decision::Blocked { .. } => ("ScaleDownBlocked", annotation),
        _ => ("ScaleDownRemovable", format!("{annotation}: {reason}")),
    };
    Some(NodeEvent {
        warning: false,
        reason: reason_code,
        action: "ScaleDown",
        note,
    })
}

/// The Event recording an operation's outcome on one of its nodes.
pub fn outcome_event(operation: &rb::Operation, progress: &rb::NodeProgress) -> NodeEvent {
    let remove = kind_label(operation) == "remove";
    let phase = rb::NodePhase::try_from(progress.phase).unwrap_or(rb::NodePhase::Unspecified);
    let (outcome, warning) = match phase {
        rb::NodePhase::Done => ("Succeeded", false),
        rb::NodePhase::Skipped => ("Skipped", false),
        rb::NodePhase::Failed | rb::NodePhase::RolledBack => ("Failed", true),
        _ if rb::OperationState::try_from(operation.state) == Ok(rb::OperationState::Cancelled) => {
            ("Cancelled", true)
        }
        _ => ("Failed", true),
    };
    let reason = match (remove, outcome) {
        (true, "Succeeded") => "ScaleDownSucceeded",
        (true, "Skipped") => "ScaleDownSkipped",
        (true, "Cancelled") => "ScaleDownCancelled",
        (true, _) => "ScaleDownFailed",
        (false, "Succeeded") => "RebalanceSucceeded",
        (false, "Skipped") => "RebalanceSkipped",
        (false, "Cancelled") => "RebalanceCancelled",
        (false, _) => "RebalanceFailed",
    };
    let mut note = format!(
        "operation {} ended {}: node {}",
        operation.id,
        state_label(operation),
        phase.as_str_name()
    );
    if !progress.replacement_node_name.is_empty() {
        note.push_str(&format!(", replaced by {}", progress.replacement_node_name));
    }
    if let Some(error) = &progress.error {
        note.push_str(&format!(" at step {}: {}", error.step, error.message));
    }
    if !operation.message.is_empty() {
        note.push_str(&format!(" ({})", operation.message));
    }
    NodeEvent {
        warning,
        reason,
        action: if remove { "RemoveNodes" } else { "ExecutePlan" },
        note: planner::one_line(&note),
    }
}

struct Follower<R, W> {
    rebalancer: R,
    writer: W,
    metrics: Arc<Metrics>,
    operations: Arc<Mutex<BTreeMap<String, rb::Operation>>>,
    writes: bool,
    /// The nodes known at submission (uids for the Events).
    nodes: Vec<NodeRef>,
}

impl<R: Rebalancer, W: NodeWriter> Follower<R, W> {
    /// Follows until the operation ends (or the rebalancer forgets it); returns its id.
    async fn run(self, id: String) -> String {
        self.follow(&id).await;
        id
    }

    async fn follow(&self, id: &str) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let started = Instant::now();
            let watched = self.rebalancer.watch_operation(id.to_owned()).await;
            self.metrics.record_rpc(
                REBALANCER_SERVICE,
                "WatchOperation",
                started.elapsed(),
                watched.as_ref().err().map(Status::code),
            );
            match watched {
                Ok(mut stream) => {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(operation) => {
                                backoff = Duration::from_millis(500);
                                let terminal = is_terminal(&operation);
                                self.operations
                                    .lock()
                                    .expect("operations lock")
                                    .insert(id.to_owned(), operation.clone());
                                if terminal {
                                    self.record_outcome(&operation).await;
                                    return;
                                }
                            }
                            Err(status) if status.code() == Code::NotFound => {
                                tracing::warn!(operation = %id, "the rebalancer no longer knows the operation");
                                return;
                            }
                            Err(status) => {
                                tracing::warn!(operation = %id, code = ?status.code(), message = status.message(), "WatchOperation stream failed; watching again");
                                break;
                            }
                        }
                    }
                }
                Err(status) if status.code() == Code::NotFound => {
                    tracing::warn!(operation = %id, "the rebalancer no longer knows the operation");
                    return;
                }
                Err(status) => {
                    tracing::warn!(operation = %id, code = ?status.code(), message = status.message(), "WatchOperation failed; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(FOLLOW_BACKOFF_MAX);
        }
    }

    async fn record_outcome(&self, operation: &rb::Operation) {
        tracing::info!(
            operation = %operation.id,
            kind = kind_label(operation),
            state = state_label(operation),
            done = operation.done_count,
            skipped = operation.skipped_count,
            failed = operation.failed_count,
            message = %operation.message,
            "operation ended"
        );
        for progress in &operation.nodes {
            let event = outcome_event(operation, progress);
            tracing::info!(operation = %operation.id, node = %progress.node_name, reason = event.reason, note = %event.note, "operation outcome");
            if !self.writes {
                continue;
            }
            let node = self
                .nodes
                .iter()
                .find(|n| n.name == progress.node_name)
                .cloned()
                .unwrap_or_else(|| NodeRef {
                    name: progress.node_name.clone(),
                    uid: String::new(),
                });
            if let Err(error) = self.writer.publish(&node, &event).await {
                self.metrics.record_kube_write_error("event");
                tracing::warn!(node = %node.name, %error, "publishing the operation outcome failed");
            }
        }
    }
}

/// Waits until leadership is lost (or its sender is gone).
async fn lost(leading: &mut watch::Receiver<bool>) {
    let _ = leading.wait_for(|leading| !*leading).await;
}

/// The scan loop: waits for leadership, scans every `scanInterval` while leading. Never returns
/// unless the leadership channel closes.
pub async fn scan_loop<S, R, W>(
    cache: Cache,
    config: Arc<Config>,
    safety: S,
    rebalancer: R,
    writer: W,
    metrics: Arc<Metrics>,
    mut leading: watch::Receiver<bool>,
) where
    S: Safety + Clone + 'static,
    R: Rebalancer,
    W: NodeWriter,
{
    loop {
        metrics.set_leader(false);
        if leading.wait_for(|leading| *leading).await.is_err() {
            return;
        }
        metrics.set_leader(true);
        tracing::info!(
            scan_interval = ?config.scan_interval,
            dry_run = config.dry_run,
            "leading: scanning"
        );
        let mut scanner = Scanner::new(
            Arc::clone(&config),
            safety.clone(),
            rebalancer.clone(),
            writer.clone(),
            Arc::clone(&metrics),
        );
        let mut ticker = tokio::time::interval(config.scan_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = lost(&mut leading) => break,
            }
            let source = cache.clone();
            let snapshot = match tokio::task::spawn_blocking(move || source.snapshot()).await {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    tracing::error!(%error, "building the snapshot failed");
                    continue;
                }
            };
            tokio::select! {
                _ = scanner.scan(snapshot, SystemTime::now()) => {}
                () = lost(&mut leading) => break,
            }
        }
        drop(scanner);
        tracing::warn!("no longer leading: stopped scanning");
    }
}

/// Everything `controller run` needs besides the Kubernetes client.
pub struct RunOptions {
    pub config: Config,
    pub safety_endpoint: String,
    pub rebalancer_endpoint: String,
    /// TLS to the safety-service (`--safety-tls-*`), for an `https://` endpoint.
    pub safety_tls: ClientTlsFiles,
    /// TLS to the rebalancer-service (`--rebalancer-tls-*`), for an `https://` endpoint.
    pub rebalancer_tls: ClientTlsFiles,
    /// Where `/metrics` is served (already bound, so that port 0 works).
    pub metrics_listener: tokio::net::TcpListener,
    pub leader: LeaderConfig,
}

/// Aborts a spawned task when dropped, so that dropping [`run`]'s future (a crash in tests)
/// stops everything it started, the lease renewals included.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    fn new(handle: tokio::task::JoinHandle<T>) -> Self {
        AbortOnDrop(Some(handle))
    }

    /// Waits for the task to end.
    async fn join(mut self) -> Option<T> {
        let handle = self.0.take()?;
        handle.await.ok()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// `controller run` until `shutdown` completes: the metrics server, the cache, the leader
/// election and the scan loop. On shutdown the scan loop stops first, then the lease is
/// released. Dropping the future stops everything at once, without releasing the lease.
pub async fn run(
    client: kube::Client,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let metrics_address: Option<SocketAddr> = options.metrics_listener.local_addr().ok();
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = AbortOnDrop::new(tokio::spawn(crate::metrics::serve(
        options.metrics_listener,
        Arc::clone(&metrics),
        async {
            let _ = metrics_stopped.await;
        },
    )));

    let (cache, reflectors) = Cache::start(client.clone());
    let reflectors = AbortOnDrop::new(tokio::spawn(reflectors));

    let identity = options.leader.identity.clone();
    let (leading_tx, leading_rx) = watch::channel(false);
    let (stop_elector, elector_stopped) = tokio::sync::oneshot::channel::<()>();
    let elector = Elector::new(client.clone(), options.leader);
    let elector = AbortOnDrop::new(tokio::spawn(elector.run(leading_tx, async {
        let _ = elector_stopped.await;
    })));

    let config = Arc::new(options.config);
    let safety = GrpcSafety::new(lazy_channel(&options.safety_endpoint, &options.safety_tls)?);
    let rebalancer = GrpcRebalancer::new(lazy_channel(
        &options.rebalancer_endpoint,
        &options.rebalancer_tls,
    )?);
    let writer = KubeNodeWriter::new(client, &identity);
    tracing::info!(
        identity,
        safety_endpoint = %options.safety_endpoint,
        rebalancer_endpoint = %options.rebalancer_endpoint,
        metrics = ?metrics_address,
        cluster = %config.cluster,
        "controller starting"
    );

    let work = async {
        cache.ready().await?;
        let (nodes, pods, pdbs, namespaces) = cache.counts();
        tracing::info!(nodes, pods, pdbs, namespaces, "cache ready");
        scan_loop(
            cache.clone(),
            config,
            safety,
            rebalancer,
            writer,
            Arc::clone(&metrics),
            leading_rx,
        )
        .await;
        anyhow::Ok(())
    };
    let result = tokio::select! {
        result = work => result,
        () = shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    // The scan loop is gone: release the lease.
    let _ = stop_elector.send(());
    elector.join().await;
    drop(reflectors);
    let _ = stop_metrics.send(());
    metrics_server.join().await;
    metrics.set_leader(false);
    result
}

#[cfg(test)]
mod tests;
