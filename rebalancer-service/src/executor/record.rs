//! Operation records: what the rebalancer was asked to do and how far each node got. They are
//! serialized (JSON) into the operation store and converted to the API's `Operation` message.

use serde::{Deserialize, Serialize};
use vpsie_proto::rebalancer::v1 as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationKind {
    Rebalance,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    Rolling,
    Surge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl OperationState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationState::Succeeded | OperationState::Failed | OperationState::Cancelled
        )
    }
}

/// Where one candidate is. `Draining` covers cordon + drain; `Deleting` covers the machine and the
/// Node object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    Skipped,
    Provisioning,
    WaitingForNode,
    SafetyCheck,
    Draining,
    Deleting,
    Done,
    Failed,
    RolledBack,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Skipped | Phase::Done | Phase::Failed | Phase::RolledBack
        )
    }

    fn to_proto(self) -> pb::NodePhase {
        match self {
            Phase::Pending => pb::NodePhase::Pending,
            Phase::Skipped => pb::NodePhase::Skipped,
            Phase::Provisioning => pb::NodePhase::Provisioning,
            Phase::WaitingForNode => pb::NodePhase::WaitingForNode,
            Phase::SafetyCheck => pb::NodePhase::SafetyCheck,
            Phase::Draining => pb::NodePhase::Draining,
            Phase::Deleting => pb::NodePhase::Deleting,
            Phase::Done => pb::NodePhase::Done,
            Phase::Failed => pb::NodePhase::Failed,
            Phase::RolledBack => pb::NodePhase::RolledBack,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// lookup, provision, wait_for_node, safety_check, cordon, drain, delete, cancelled.
    pub step: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainSpec {
    pub timeout_seconds: u32,
    pub pod_grace_period_seconds: Option<u32>,
    pub eviction_retry_seconds: u32,
}

impl Default for DrainSpec {
    fn default() -> Self {
        DrainSpec {
            timeout_seconds: 300,
            pod_grace_period_seconds: None,
            eviction_retry_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSpec {
    /// The target group (empty for removals).
    pub node_group: String,
    pub strategy: Strategy,
    pub batch_size: usize,
    pub max_concurrent: usize,
    pub drain: DrainSpec,
    pub ready_timeout_seconds: u32,
    pub dry_run: bool,
}

/// What an undo still has to do, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PendingUndo {
    pub uncordon: bool,
    pub delete_replacement: bool,
    /// The phase the candidate ends in once the undo is done.
    pub then: Option<Phase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateRecord {
    pub node_name: String,
    pub current_offering: String,
    pub target_offering: String,
    pub phase: Phase,
    pub skip_reason: bool,
    /// Set (with the time) before the machine is asked for, so that a restart that finds it set
    /// without a VPS id looks for a machine created after that time instead of creating another.
    pub provision_intent_at: Option<String>,
    pub replacement_vps_id: String,
    pub replacement_hostname: String,
    pub replacement_node_name: String,
    /// The old node was cordoned and tainted by us.
    pub cordoned: bool,
    /// The old machine is gone (only the Node object is left to delete).
    pub machine_deleted: bool,
    pub undo: PendingUndo,
    pub error: Option<StepError>,
    pub started_at: String,
    pub finished_at: String,
    /// A line for the operation message (e.g. what a dry run would do).
    pub note: String,
}

impl CandidateRecord {
    pub fn new(node_name: &str, current_offering: &str, target_offering: &str) -> Self {
        CandidateRecord {
            node_name: node_name.to_string(),
            current_offering: current_offering.to_string(),
            target_offering: target_offering.to_string(),
            phase: Phase::Pending,
            skip_reason: false,
            provision_intent_at: None,
            replacement_vps_id: String::new(),
            replacement_hostname: String::new(),
            replacement_node_name: String::new(),
            cordoned: false,
            machine_deleted: false,
            undo: PendingUndo::default(),
            error: None,
            started_at: String::new(),
            finished_at: String::new(),
            note: String::new(),
        }
    }

    fn to_proto(&self) -> pb::NodeProgress {
        pb::NodeProgress {
            node_name: self.node_name.clone(),
            phase: self.phase.to_proto() as i32,
            skip_reason: if self.skip_reason {
                pb::SkipReason::SameNodegroupAndOffering as i32
            } else {
                pb::SkipReason::Unspecified as i32
            },
            replacement_node_name: self.replacement_node_name.clone(),
            replacement_vps_id: self.replacement_vps_id.clone(),
            error: self.error.as_ref().map(|e| pb::StepError {
                step: e.step.clone(),
                message: e.message.clone(),
            }),
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
        }
    }
}

/// Why a request cannot become an operation (`INVALID_ARGUMENT`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    pub field: String,
    pub message: String,
}

fn plan_error(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub id: String,
    pub kind: OperationKind,
    pub plan: PlanSpec,
    pub state: OperationState,
    pub candidates: Vec<CandidateRecord>,
    pub cancel_requested: bool,
    pub created_at: String,
    pub updated_at: String,
    pub message: String,
}

fn drain_spec(drain: Option<&pb::DrainOptions>) -> Result<DrainSpec, PlanError> {
    let mut spec = DrainSpec::default();
    if let Some(drain) = drain {
        let positive = |value: i32, field: &str| {
            u32::try_from(value).map_err(|_| {
                plan_error(
                    format!("drain.{field}"),
                    format!("must not be negative, got {value}"),
                )
            })
        };
        if drain.timeout_seconds != 0 {
            spec.timeout_seconds = positive(drain.timeout_seconds, "timeoutSeconds")?;
        }
        if drain.eviction_retry_seconds != 0 {
            spec.eviction_retry_seconds =
                positive(drain.eviction_retry_seconds, "evictionRetrySeconds")?;
        }
        if let Some(grace) = drain.pod_grace_period_seconds {
            spec.pod_grace_period_seconds = Some(positive(grace, "podGracePeriodSeconds")?);
        }
    }
    Ok(spec)
}

fn unique_names<'n>(names: impl Iterator<Item = &'n str>, field: &str) -> Result<(), PlanError> {
    let mut seen = std::collections::HashSet::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() {
            return Err(plan_error(
                format!("{field}[{i}]"),
                "node name must not be empty",
            ));
        }
        if !seen.insert(name) {
            return Err(plan_error(
                format!("{field}[{i}]"),
                format!("duplicate node {name:?}"),
            ));
        }
    }
    if seen.is_empty() {
        return Err(plan_error(field, "at least one node is required"));
    }
    Ok(())
}

impl OperationRecord {
    /// Validates an `ExecutePlan` request into a new operation.
    pub fn from_plan(plan: &pb::RebalancePlan, now: &str) -> Result<Self, PlanError> {
        if plan.id.is_empty() {
            return Err(plan_error(
                "plan.id",
                "a plan id is required (it makes ExecutePlan idempotent)",
            ));
        }
        if plan.node_group_name.is_empty() {
            return Err(plan_error(
                "plan.nodeGroupName",
                "the target node group is required",
            ));
        }
        let strategy = match pb::Strategy::try_from(plan.strategy) {
            Ok(pb::Strategy::Rolling) => Strategy::Rolling,
            Ok(pb::Strategy::Surge) => Strategy::Surge,
            _ => {
                return Err(plan_error(
                    "plan.strategy",
                    format!(
                        "unknown strategy {} (want STRATEGY_ROLLING or STRATEGY_SURGE)",
                        plan.strategy
                    ),
                ));
            }
        };
        unique_names(
            plan.candidates.iter().map(|c| c.node_name.as_str()),
            "plan.candidates",
        )?;
        let count = |value: i32, field: &str| match value {
            0 => Ok(1),
            v if v > 0 => Ok(v as usize),
            v => Err(plan_error(
                format!("plan.{field}"),
                format!("must be positive, got {v}"),
            )),
        };
        let ready_timeout_seconds = match plan.ready_timeout_seconds {
            0 => 900,
            v if v > 0 => v as u32,
            v => {
                return Err(plan_error(
                    "plan.readyTimeoutSeconds",
                    format!("must be positive, got {v}"),
                ));
            }
        };
        Ok(OperationRecord {
            id: plan.id.clone(),
            kind: OperationKind::Rebalance,
            plan: PlanSpec {
                node_group: plan.node_group_name.clone(),
                strategy,
                batch_size: count(plan.batch_size, "batchSize")?,
                max_concurrent: count(plan.max_concurrent, "maxConcurrent")?,
                drain: drain_spec(plan.drain.as_ref())?,
                ready_timeout_seconds,
                dry_run: plan.dry_run,
            },
            state: OperationState::Pending,
            candidates: plan
                .candidates
                .iter()
                .map(|c| {
                    CandidateRecord::new(&c.node_name, &c.current_offering, &c.target_offering)
                })
                .collect(),
            cancel_requested: false,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            message: String::new(),
        })
    }

    /// Validates a `RemoveNodes` request into a new operation.
    pub fn from_removal(request: &pb::RemoveNodesRequest, now: &str) -> Result<Self, PlanError> {
        if request.request_id.is_empty() {
            return Err(plan_error(
                "requestId",
                "a request id is required (it makes RemoveNodes idempotent)",
            ));
        }
        unique_names(request.node_names.iter().map(String::as_str), "nodeNames")?;
        Ok(OperationRecord {
            id: request.request_id.clone(),
            kind: OperationKind::Remove,
            plan: PlanSpec {
                node_group: String::new(),
                strategy: Strategy::Rolling,
                batch_size: 1,
                max_concurrent: 1,
                drain: drain_spec(request.drain.as_ref())?,
                ready_timeout_seconds: 0,
                dry_run: request.dry_run,
            },
            state: OperationState::Pending,
            candidates: request
                .node_names
                .iter()
                .map(|n| CandidateRecord::new(n, "", ""))
                .collect(),
            cancel_requested: false,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            message: String::new(),
        })
    }

    /// Candidate index ranges, one per batch, in order.
    pub fn batches(&self) -> Vec<std::ops::Range<usize>> {
        let size = self.plan.batch_size.max(1);
        (0..self.candidates.len())
            .step_by(size)
            .map(|start| start..(start + size).min(self.candidates.len()))
            .collect()
    }

    /// Settles the operation's state from its candidates once none is in flight.
    pub fn settle(&mut self, now: &str) {
        self.updated_at = now.to_string();
        let all_terminal = self.candidates.iter().all(|c| c.phase.is_terminal());
        if self.cancel_requested
            && self
                .candidates
                .iter()
                .all(|c| c.phase.is_terminal() || c.phase == Phase::Pending)
        {
            self.state = OperationState::Cancelled;
        } else if all_terminal {
            self.state = if self.failed_count() > 0 {
                OperationState::Failed
            } else {
                OperationState::Succeeded
            };
        } else if self.candidates.iter().any(|c| c.phase != Phase::Pending) {
            self.state = OperationState::Running;
        }
        if self.state.is_terminal() {
            self.message = self.summary();
        }
    }

    pub fn done_count(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.phase == Phase::Done)
            .count()
    }

    pub fn skipped_count(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.phase == Phase::Skipped)
            .count()
    }

    pub fn failed_count(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| matches!(c.phase, Phase::Failed | Phase::RolledBack))
            .count()
    }

    fn summary(&self) -> String {
        let mut line = format!(
            "{} done, {} skipped, {} failed of {}",
            self.done_count(),
            self.skipped_count(),
            self.failed_count(),
            self.candidates.len()
        );
        if let Some(first) = self
            .candidates
            .iter()
            .find_map(|c| c.error.as_ref().map(|e| (c, e)))
        {
            line.push_str(&format!(
                "; {} failed at {}: {}",
                first.0.node_name, first.1.step, first.1.message
            ));
        }
        if self.plan.dry_run {
            line.push_str(" (dry run: nothing was changed)");
        }
        line
    }

    pub fn to_proto(&self) -> pb::Operation {
        pb::Operation {
            id: self.id.clone(),
            kind: match self.kind {
                OperationKind::Rebalance => pb::OperationKind::Rebalance,
                OperationKind::Remove => pb::OperationKind::Remove,
            } as i32,
            state: match self.state {
                OperationState::Pending => pb::OperationState::Pending,
                OperationState::Running => pb::OperationState::Running,
                OperationState::Succeeded => pb::OperationState::Succeeded,
                OperationState::Failed => pb::OperationState::Failed,
                OperationState::Cancelled => pb::OperationState::Cancelled,
            } as i32,
            nodes: self
                .candidates
                .iter()
                .map(CandidateRecord::to_proto)
                .collect(),
            done_count: self.done_count() as i32,
            skipped_count: self.skipped_count() as i32,
            failed_count: self.failed_count() as i32,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            message: self.message.clone(),
        }
    }
}
