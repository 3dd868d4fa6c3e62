//! The driver: runs operations by asking the state machine for each candidate's next step,
//! persisting the record before performing it through the adapters, and publishing every change
//! to watchers. It owns no decision of its own.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::watch;
use vpsie_proto::rebalancer::v1 as pb;

use super::machine::{self, Step, StepOutcome};
use super::record::{OperationRecord, Phase, Strategy};

/// A machine asked for in a node group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub vps_id: String,
    pub hostname: String,
}

/// The cloud side (VPSie).
pub trait Cloud: Send + Sync + 'static {
    /// Asks for a machine in `group`. With `recover`, first looks for a machine created after
    /// `intent_at` that nothing else claims — none of the VPS identifiers or hostnames in
    /// `claimed` — and returns `Ok(None)` when there is none.
    fn provision(
        &self,
        group: &str,
        intent_at: &str,
        recover: bool,
        claimed: &HashSet<String>,
    ) -> impl Future<Output = Result<Option<Machine>, String>> + Send;
    /// Deletes the machine behind a Node (by hostname or the vps-identifier annotation).
    fn delete_machine_of_node(&self, node: &str)
    -> impl Future<Output = Result<(), String>> + Send;
    /// Deletes a machine by id (the replacement, on rollback).
    fn delete_machine(&self, vps_id: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// The Kubernetes side.
pub trait Cluster: Send + Sync + 'static {
    /// The node's `autoscaler.vpsie.com/nodegroup` label (`Err` when the Node cannot be read).
    fn node_group(&self, node: &str)
    -> impl Future<Output = Result<Option<String>, String>> + Send;
    /// Waits for a Node named `hostname` to be Ready, labels it with group and offering, and
    /// returns its name.
    fn wait_for_node(
        &self,
        hostname: &str,
        timeout: Duration,
        group: &str,
        offering: &str,
    ) -> impl Future<Output = Result<String, String>> + Send;
    fn cordon(&self, node: &str) -> impl Future<Output = Result<(), String>> + Send;
    fn uncordon(&self, node: &str) -> impl Future<Output = Result<(), String>> + Send;
    fn drain(
        &self,
        node: &str,
        spec: super::DrainSpec,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn delete_node(&self, node: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Records the operation's progress on the old Node (annotations; `None` removes one). The
    /// operation store stays the source of truth: a failure here is only logged.
    fn annotate(
        &self,
        node: &str,
        annotations: &[(&str, Option<&str>)],
    ) -> impl Future<Output = Result<(), String>> + Send;
}

pub const OPERATION_ANNOTATION: &str = "autoscaler.vpsie.com/operation";
pub const PHASE_ANNOTATION: &str = "autoscaler.vpsie.com/operation-phase";
pub const REPLACEMENT_ANNOTATION: &str = "autoscaler.vpsie.com/replacement-vps";

/// The safety re-check right before a drain.
pub trait Safety: Send + Sync + 'static {
    /// `Ok(Ok(()))` removable, `Ok(Err(message))` refused, `Err` could not ask.
    fn can_remove(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Result<(), String>, String>> + Send;
}

/// Where operation records live between restarts.
pub trait Store: Send + Sync + 'static {
    fn save(&self, operation: &OperationRecord) -> impl Future<Output = Result<(), String>> + Send;
    fn load_all(&self) -> impl Future<Output = Result<Vec<OperationRecord>, String>> + Send;
}

/// Why a new operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Invalid(#[from] super::PlanError),
    #[error("node {node} is already in unfinished operation {operation}")]
    NodeBusy { node: String, operation: String },
    #[error("cannot record the operation: {0}")]
    Store(String),
}

struct Running {
    record: Mutex<OperationRecord>,
    updates: watch::Sender<pb::Operation>,
}

impl Running {
    fn snapshot(&self) -> OperationRecord {
        lock(&self.record).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a consistent record (every change is one assignment
    // sequence under the lock), so keep going with it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The clock, injectable for tests.
pub type Clock = Arc<dyn Fn() -> String + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        rfc3339(now.as_secs())
    })
}

/// Seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rem = seconds % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

pub struct Driver<C, K, S, St> {
    cloud: C,
    cluster: K,
    safety: S,
    store: St,
    clock: Clock,
    operations: Mutex<HashMap<String, Arc<Running>>>,
    /// Held while a provision is recovered, so that two candidates never take the same machine;
    /// holds the machines recovered so far (claimed before their records say so).
    recovered: tokio::sync::Mutex<HashSet<String>>,
    /// Held from a provision's recorded intent until its machine id is recorded, so that at most
    /// one intent without an id can exist: after a crash, recovery is never ambiguous between two
    /// of our own unfinished adds.
    provisioning: tokio::sync::Mutex<()>,
}

impl<C: Cloud, K: Cluster, S: Safety, St: Store> Driver<C, K, S, St> {
    pub fn new(cloud: C, cluster: K, safety: S, store: St, clock: Clock) -> Arc<Self> {
        Arc::new(Driver {
            cloud,
            cluster,
            safety,
            store,
            clock,
            operations: Mutex::new(HashMap::new()),
            recovered: tokio::sync::Mutex::new(HashSet::new()),
            provisioning: tokio::sync::Mutex::new(()),
        })
    }

    /// Reloads the stored operations and resumes every unfinished one.
    pub async fn resume(self: &Arc<Self>) -> Result<usize, String> {
        let records = self.store.load_all().await?;
        let mut resumed = 0;
        for record in records {
            let unfinished = !record.state.is_terminal();
            let running = self.register(record);
            if unfinished {
                resumed += 1;
                tracing::info!(operation = %lock(&running.record).id, "resuming operation");
                self.spawn(running);
            }
        }
        Ok(resumed)
    }

    fn register(&self, record: OperationRecord) -> Arc<Running> {
        let (updates, _) = watch::channel(record.to_proto());
        let running = Arc::new(Running {
            record: Mutex::new(record.clone()),
            updates,
        });
        lock(&self.operations).insert(record.id.clone(), Arc::clone(&running));
        running
    }

    /// Starts an operation, or returns the existing one with the same id.
    pub async fn submit(
        self: &Arc<Self>,
        record: OperationRecord,
    ) -> Result<pb::Operation, SubmitError> {
        {
            let operations = lock(&self.operations);
            if let Some(existing) = operations.get(&record.id) {
                return Ok(lock(&existing.record).to_proto());
            }
            for other in operations.values() {
                let other = lock(&other.record);
                if other.state.is_terminal() {
                    continue;
                }
                if let Some(busy) = record.candidates.iter().find(|c| {
                    other
                        .candidates
                        .iter()
                        .any(|o| o.node_name == c.node_name && !o.phase.is_terminal())
                }) {
                    return Err(SubmitError::NodeBusy {
                        node: busy.node_name.clone(),
                        operation: other.id.clone(),
                    });
                }
            }
        }
        self.store.save(&record).await.map_err(SubmitError::Store)?;
        let proto = record.to_proto();
        let running = self.register(record);
        self.spawn(running);
        Ok(proto)
    }

    pub fn get(&self, id: &str) -> Option<pb::Operation> {
        lock(&self.operations)
            .get(id)
            .map(|r| lock(&r.record).to_proto())
    }

    pub fn list(&self) -> Vec<pb::Operation> {
        let mut all: Vec<pb::Operation> = lock(&self.operations)
            .values()
            .map(|r| lock(&r.record).to_proto())
            .collect();
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        all
    }

    /// A receiver that holds the current state and sees every change.
    pub fn watch(&self, id: &str) -> Option<watch::Receiver<pb::Operation>> {
        lock(&self.operations)
            .get(id)
            .map(|r| r.updates.subscribe())
    }

    /// Asks the operation to stop after the step in flight.
    pub async fn cancel(self: &Arc<Self>, id: &str) -> Option<pb::Operation> {
        let running = lock(&self.operations).get(id).cloned()?;
        let record = {
            let mut record = lock(&running.record);
            if !record.state.is_terminal() {
                record.cancel_requested = true;
            }
            record.clone()
        };
        self.persist(&running, &record).await;
        Some(record.to_proto())
    }

    /// Runs the operation in a task of its own, in an `operation` span. The span has no
    /// `tracing` parent, so that the call that submitted the operation ends (and its span is
    /// exported) when the call returns; its OpenTelemetry parent is the current span, so that
    /// the operation still continues the trace of that call.
    fn spawn(self: &Arc<Self>, running: Arc<Running>) {
        let driver = Arc::clone(self);
        let span = tracing::info_span!(
            parent: None,
            "operation",
            operation = %lock(&running.record).id
        );
        telemetry::propagation::continue_current_trace(&span);
        tokio::spawn(tracing::Instrument::instrument(
            async move { driver.run(running).await },
            span,
        ));
    }

    async fn persist(&self, running: &Running, record: &OperationRecord) {
        // Nothing happens that is not recorded first: keep trying (the API server may be briefly
        // away); every later step waits for this.
        let mut delay = Duration::from_millis(200);
        loop {
            match self.store.save(record).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(operation = %record.id, %error, "cannot persist operation; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
        running.updates.send_replace(record.to_proto());
    }

    async fn run(self: Arc<Self>, running: Arc<Running>) {
        let (batches, strategy, max_concurrent) = {
            let mut record = lock(&running.record);
            record.settle(&(self.clock)());
            (
                record.batches(),
                record.plan.strategy,
                record.plan.max_concurrent.max(1),
            )
        };
        self.persist(&running, &running.snapshot()).await;
        for batch in batches {
            if lock(&running.record).cancel_requested {
                break;
            }
            match strategy {
                Strategy::Rolling => {
                    futures::future::join_all(batch.map(|i| self.drive(&running, i, false))).await;
                }
                Strategy::Surge => {
                    // Replacements first, then the drains of those whose replacement is Ready.
                    futures::stream::iter(batch.clone())
                        .for_each_concurrent(max_concurrent, |i| self.drive(&running, i, true))
                        .await;
                    futures::stream::iter(batch)
                        .for_each_concurrent(max_concurrent, |i| self.drive(&running, i, false))
                        .await;
                }
            }
        }
        let record = {
            let mut record = lock(&running.record);
            // Candidates never started stay pending in a cancelled operation.
            record.settle(&(self.clock)());
            record.clone()
        };
        self.persist(&running, &record).await;
        tracing::info!(operation = %record.id, state = ?record.state, message = %record.message, "operation finished");
    }

    /// Drives candidate `i` until it is finished, or (with `until_ready`) until its replacement
    /// is Ready and the safety re-check is next.
    async fn drive(&self, running: &Running, i: usize, until_ready: bool) {
        loop {
            let adds_machine = {
                let record = lock(&running.record);
                matches!(
                    machine::next_step(record.kind, &record.candidates[i], record.cancel_requested),
                    Some(Step::Provision { recover: false })
                )
            };
            let _one_add_at_a_time = if adds_machine {
                Some(self.provisioning.lock().await)
            } else {
                None
            };
            let next = {
                let mut record = lock(&running.record);
                let now = (self.clock)();
                let cancelled = record.cancel_requested;
                let kind = record.kind;
                let candidate = &mut record.candidates[i];
                if cancelled && candidate.undo.then.is_none() && !candidate.phase.is_terminal() {
                    machine::cancel(candidate, &now);
                }
                match machine::next_step(kind, candidate, cancelled) {
                    None => None,
                    Some(Step::SafetyCheck)
                        if until_ready && candidate.phase == Phase::SafetyCheck =>
                    {
                        return;
                    }
                    Some(step) => {
                        machine::begin(kind, candidate, step, &now);
                        let candidate = candidate.clone();
                        record.settle(&now);
                        Some((step, candidate, record.plan.clone(), record.clone()))
                    }
                }
            };
            let Some((step, candidate, plan, record)) = next else {
                let record = running.snapshot();
                self.persist(running, &record).await;
                return;
            };
            self.persist(running, &record).await;
            if step == (Step::Provision { recover: false }) {
                self.annotate(&candidate.node_name, &record.id, "provisioning", None)
                    .await;
            }
            let outcome = self.perform(step, &candidate, &plan).await;
            tracing::info!(node = %candidate.node_name, step = step.name(), outcome = ?outcome, "step finished");
            let (record, after) = {
                let mut record = lock(&running.record);
                let now = (self.clock)();
                let plan = record.plan.clone();
                machine::apply(&plan, &mut record.candidates[i], step, outcome, &now);
                record.settle(&now);
                let after = record.candidates[i].clone();
                (record.clone(), after)
            };
            self.persist(running, &record).await;
            if after.phase == Phase::Skipped {
                tracing::info!(
                    node = %after.node_name,
                    group = %plan.node_group,
                    offering = %after.current_offering,
                    "skipping node: already in the target group with the target offering"
                );
            }
            if matches!(step, Step::Provision { .. }) && after.phase == Phase::WaitingForNode {
                self.annotate(
                    &after.node_name,
                    &record.id,
                    "waiting_for_node",
                    Some(&after.replacement_vps_id),
                )
                .await;
            }
        }
    }

    async fn annotate(&self, node: &str, operation: &str, phase: &str, replacement: Option<&str>) {
        let mut annotations = vec![
            (OPERATION_ANNOTATION, Some(operation)),
            (PHASE_ANNOTATION, Some(phase)),
        ];
        if let Some(vps) = replacement {
            annotations.push((REPLACEMENT_ANNOTATION, Some(vps)));
        }
        if let Err(error) = self.cluster.annotate(node, &annotations).await {
            tracing::warn!(node, %error, "cannot record progress on the node");
        }
    }

    /// Every candidate's node and every recorded replacement machine, of every operation.
    fn claims(&self) -> HashSet<String> {
        let operations = lock(&self.operations);
        let mut claimed = HashSet::new();
        for running in operations.values() {
            let record = lock(&running.record);
            for candidate in &record.candidates {
                claimed.insert(candidate.node_name.clone());
                if !candidate.replacement_vps_id.is_empty() {
                    claimed.insert(candidate.replacement_vps_id.clone());
                }
            }
        }
        claimed
    }

    async fn perform(
        &self,
        step: Step,
        candidate: &super::CandidateRecord,
        plan: &super::PlanSpec,
    ) -> StepOutcome {
        let failed = StepOutcome::Failed;
        let ok = |result: Result<(), String>| result.map_or_else(failed, |()| StepOutcome::Ok);
        if plan.dry_run && step.writes() {
            // The machine never asks a dry run to write; refuse rather than act.
            return StepOutcome::Failed(format!("dry run: refusing to {}", step.name()));
        }
        let node = candidate.node_name.as_str();
        match step {
            Step::Lookup => match self.cluster.node_group(node).await {
                Ok(nodegroup) => StepOutcome::Found { nodegroup },
                Err(message) => StepOutcome::Failed(message),
            },
            Step::Provision { recover } => {
                let intent = candidate.provision_intent_at.clone().unwrap_or_default();
                // A recovery must not take a machine that is another candidate's replacement or
                // node, or that a concurrent recovery already took.
                let mut recovered = if recover {
                    Some(self.recovered.lock().await)
                } else {
                    None
                };
                let claimed = match &recovered {
                    Some(taken) => {
                        let mut claimed = self.claims();
                        claimed.extend(taken.iter().cloned());
                        claimed
                    }
                    None => HashSet::new(),
                };
                match self
                    .cloud
                    .provision(&plan.node_group, &intent, recover, &claimed)
                    .await
                {
                    Ok(Some(machine)) => {
                        if let Some(taken) = recovered.as_mut() {
                            taken.insert(machine.vps_id.clone());
                        }
                        StepOutcome::Provisioned {
                            vps_id: machine.vps_id,
                            hostname: machine.hostname,
                        }
                    }
                    Ok(None) => StepOutcome::NothingCreated,
                    Err(message) => StepOutcome::Failed(message),
                }
            }
            Step::WaitForNode => {
                let timeout = Duration::from_secs(u64::from(plan.ready_timeout_seconds));
                match self
                    .cluster
                    .wait_for_node(
                        &candidate.replacement_hostname,
                        timeout,
                        &plan.node_group,
                        &candidate.target_offering,
                    )
                    .await
                {
                    Ok(node_name) => StepOutcome::Ready { node_name },
                    Err(message) => StepOutcome::Failed(message),
                }
            }
            Step::SafetyCheck => match self.safety.can_remove(node).await {
                Ok(Ok(())) => StepOutcome::Ok,
                Ok(Err(message)) => StepOutcome::Refused(message),
                Err(message) => {
                    StepOutcome::Failed(format!("cannot ask the safety-service: {message}"))
                }
            },
            Step::Cordon => ok(self.cluster.cordon(node).await),
            Step::Drain => ok(self.cluster.drain(node, plan.drain).await),
            Step::DeleteMachine => ok(self.cloud.delete_machine_of_node(node).await),
            Step::DeleteNode => ok(self.cluster.delete_node(node).await),
            Step::Uncordon => ok(self.cluster.uncordon(node).await),
            Step::DeleteReplacement => ok(self
                .cloud
                .delete_machine(&candidate.replacement_vps_id)
                .await),
        }
    }
}
