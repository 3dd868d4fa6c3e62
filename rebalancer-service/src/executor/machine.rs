//! The per-candidate state machine: which step comes next, and what an outcome changes. Pure:
//! the driver performs the steps and persists the record between them.

use super::record::{CandidateRecord, OperationKind, PendingUndo, Phase, PlanSpec, StepError};

/// One thing the driver must do for a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read the live Node (the same-nodegroup guard; fail closed when unreadable).
    Lookup,
    /// Ask for a machine in the target group. With `recover`, a previous attempt recorded its
    /// intent but no machine id: look for a machine created after the intent before creating one.
    Provision { recover: bool },
    /// Wait for the replacement Node to register and become Ready, then label it.
    WaitForNode,
    /// Ask the safety-service whether the old node can go now.
    SafetyCheck,
    /// Cordon the old node and taint it `autoscaler.vpsie.com/draining:NoSchedule`.
    Cordon,
    /// Evict its pods through the Eviction API.
    Drain,
    /// Delete the old node's machine through VPSie.
    DeleteMachine,
    /// Delete the old Node object.
    DeleteNode,
    /// Undo: uncordon and untaint the old node.
    Uncordon,
    /// Undo: delete the replacement machine.
    DeleteReplacement,
}

impl Step {
    /// The step name used in errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Step::Lookup => "lookup",
            Step::Provision { .. } => "provision",
            Step::WaitForNode => "wait_for_node",
            Step::SafetyCheck => "safety_check",
            Step::Cordon => "cordon",
            Step::Drain => "drain",
            Step::DeleteMachine | Step::DeleteNode => "delete",
            Step::Uncordon => "uncordon",
            Step::DeleteReplacement => "delete_replacement",
        }
    }

    /// Steps that change the cluster or the cloud (skipped by a dry run).
    pub fn writes(self) -> bool {
        !matches!(self, Step::Lookup | Step::SafetyCheck)
    }
}

/// What happened when the driver performed a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Ok,
    Failed(String),
    /// Lookup: the node's `autoscaler.vpsie.com/nodegroup` label.
    Found {
        nodegroup: Option<String>,
    },
    /// Provision: the machine asked for (or found again).
    Provisioned {
        vps_id: String,
        hostname: String,
    },
    /// Provision with `recover`: no machine was created by the earlier attempt.
    NothingCreated,
    /// WaitForNode: the replacement's Node name.
    Ready {
        node_name: String,
    },
    /// SafetyCheck: removal refused, with the safety-service's message.
    Refused(String),
}

/// The next step for a candidate, or `None` when it is finished (or must wait: a pending
/// candidate of a cancelled operation never starts).
pub fn next_step(
    kind: OperationKind,
    candidate: &CandidateRecord,
    cancelled: bool,
) -> Option<Step> {
    if candidate.phase.is_terminal() {
        return None;
    }
    if candidate.undo.uncordon {
        return Some(Step::Uncordon);
    }
    if candidate.undo.delete_replacement {
        return Some(Step::DeleteReplacement);
    }
    match candidate.phase {
        Phase::Pending if cancelled => None,
        Phase::Pending => Some(match kind {
            OperationKind::Rebalance => Step::Lookup,
            OperationKind::Remove => Step::SafetyCheck,
        }),
        Phase::Provisioning => Some(Step::Provision {
            recover: candidate.provision_intent_at.is_some()
                && candidate.replacement_vps_id.is_empty(),
        }),
        Phase::WaitingForNode => Some(Step::WaitForNode),
        Phase::SafetyCheck => Some(Step::SafetyCheck),
        Phase::Draining if !candidate.cordoned => Some(Step::Cordon),
        Phase::Draining => Some(Step::Drain),
        Phase::Deleting if !candidate.machine_deleted => Some(Step::DeleteMachine),
        Phase::Deleting => Some(Step::DeleteNode),
        Phase::Skipped | Phase::Done | Phase::Failed | Phase::RolledBack => None,
    }
}

/// Marks the start of a step on the record (persist it before performing the step): the phase it
/// belongs to, the start time, and for a provision the intent.
pub fn begin(kind: OperationKind, candidate: &mut CandidateRecord, step: Step, now: &str) {
    if candidate.started_at.is_empty() {
        candidate.started_at = now.to_string();
    }
    match step {
        Step::SafetyCheck if kind == OperationKind::Remove && candidate.phase == Phase::Pending => {
            candidate.phase = Phase::SafetyCheck;
        }
        Step::Provision { recover: false } => candidate.provision_intent_at = Some(now.to_string()),
        _ => {}
    }
}

fn finish(candidate: &mut CandidateRecord, phase: Phase, now: &str) {
    candidate.phase = phase;
    candidate.finished_at = now.to_string();
}

/// A failure before the drain: the cluster goes back to how it was (→ ROLLED_BACK).
fn roll_back(candidate: &mut CandidateRecord, step: &str, message: String, now: &str) {
    candidate.error = Some(StepError {
        step: step.to_string(),
        message,
    });
    candidate.undo = PendingUndo {
        uncordon: candidate.cordoned || step == "cordon",
        delete_replacement: !candidate.replacement_vps_id.is_empty(),
        then: Some(Phase::RolledBack),
    };
    settle_undo(candidate, now);
}

/// A failure during or after the drain: uncordon the old node, keep the replacement (it may host
/// pods now) (→ FAILED).
fn fail_after_drain_started(
    candidate: &mut CandidateRecord,
    step: &str,
    message: String,
    now: &str,
) {
    candidate.error = Some(StepError {
        step: step.to_string(),
        message,
    });
    candidate.undo = PendingUndo {
        uncordon: candidate.cordoned,
        delete_replacement: false,
        then: Some(Phase::Failed),
    };
    settle_undo(candidate, now);
}

fn settle_undo(candidate: &mut CandidateRecord, now: &str) {
    if !candidate.undo.uncordon
        && !candidate.undo.delete_replacement
        && let Some(then) = candidate.undo.then.take()
    {
        finish(candidate, then, now);
    }
}

fn note_undo_failure(candidate: &mut CandidateRecord, what: &str, message: &str) {
    let line = format!("{what} failed: {message}");
    match candidate.error.as_mut() {
        Some(error) => {
            error.message.push_str("; ");
            error.message.push_str(&line);
        }
        None => {
            candidate.error = Some(StepError {
                step: what.to_string(),
                message: line,
            })
        }
    }
}

/// Applies a step's outcome to the candidate.
pub fn apply(
    plan: &PlanSpec,
    candidate: &mut CandidateRecord,
    step: Step,
    outcome: StepOutcome,
    now: &str,
) {
    use StepOutcome as O;
    match (step, outcome) {
        (Step::Lookup, O::Found { nodegroup }) => {
            let same_group = nodegroup.as_deref() == Some(plan.node_group.as_str());
            if same_group && candidate.current_offering == candidate.target_offering {
                candidate.skip_reason = true;
                finish(candidate, Phase::Skipped, now);
            } else if plan.dry_run {
                candidate.note = format!(
                    "would provision a {} machine in group {}, wait for it, re-check safety, cordon, drain and delete {}",
                    candidate.target_offering, plan.node_group, candidate.node_name
                );
                finish(candidate, Phase::Done, now);
            } else {
                candidate.phase = Phase::Provisioning;
            }
        }
        (Step::Lookup, O::Failed(message)) => {
            candidate.error = Some(StepError {
                step: "lookup".into(),
                message,
            });
            finish(candidate, Phase::Failed, now);
        }
        (Step::Provision { .. }, O::Provisioned { vps_id, hostname }) => {
            candidate.replacement_vps_id = vps_id;
            candidate.replacement_hostname = hostname;
            candidate.phase = Phase::WaitingForNode;
        }
        (Step::Provision { .. }, O::NothingCreated) => candidate.provision_intent_at = None,
        (Step::Provision { .. }, O::Failed(message)) => {
            roll_back(candidate, "provision", message, now)
        }
        (Step::WaitForNode, O::Ready { node_name }) => {
            candidate.replacement_node_name = node_name;
            candidate.phase = Phase::SafetyCheck;
        }
        (Step::WaitForNode, O::Failed(message)) => {
            roll_back(candidate, "wait_for_node", message, now)
        }
        (Step::SafetyCheck, O::Ok) => {
            if plan.dry_run {
                candidate.note = format!("would cordon, drain and delete {}", candidate.node_name);
                finish(candidate, Phase::Done, now);
            } else {
                candidate.phase = Phase::Draining;
            }
        }
        (Step::SafetyCheck, O::Refused(message) | O::Failed(message)) => {
            roll_back(candidate, "safety_check", message, now)
        }
        (Step::Cordon, O::Ok) => candidate.cordoned = true,
        (Step::Cordon, O::Failed(message)) => roll_back(candidate, "cordon", message, now),
        (Step::Drain, O::Ok) => candidate.phase = Phase::Deleting,
        (Step::Drain, O::Failed(message)) => {
            fail_after_drain_started(candidate, "drain", message, now)
        }
        (Step::DeleteMachine, O::Ok) => candidate.machine_deleted = true,
        (Step::DeleteMachine, O::Failed(message)) => {
            fail_after_drain_started(candidate, "delete", message, now)
        }
        (Step::DeleteNode, O::Ok) => finish(candidate, Phase::Done, now),
        (Step::DeleteNode, O::Failed(message)) => {
            candidate.error = Some(StepError {
                step: "delete".into(),
                message,
            });
            finish(candidate, Phase::Failed, now);
        }
        (Step::Uncordon, outcome) => {
            if let O::Failed(message) = outcome {
                note_undo_failure(candidate, "uncordon", &message);
            }
            candidate.undo.uncordon = false;
            candidate.cordoned = false;
            settle_undo(candidate, now);
        }
        (Step::DeleteReplacement, outcome) => {
            if let O::Failed(message) = outcome {
                note_undo_failure(candidate, "deleting the replacement machine", &message);
            }
            candidate.undo.delete_replacement = false;
            settle_undo(candidate, now);
        }
        (step, outcome) => {
            // An outcome that does not belong to the step is a driver bug: fail closed.
            let message = format!("unexpected outcome {outcome:?} for step {}", step.name());
            if candidate.cordoned || matches!(candidate.phase, Phase::Deleting) {
                fail_after_drain_started(candidate, step.name(), message, now);
            } else {
                roll_back(candidate, step.name(), message, now);
            }
        }
    }
}

/// Cancels a candidate between steps: what it had done is undone by the same rules as a failure
/// ("cancelled" as the step). A candidate already deleting finishes; a pending one never starts.
pub fn cancel(candidate: &mut CandidateRecord, now: &str) {
    match candidate.phase {
        Phase::Provisioning | Phase::WaitingForNode | Phase::SafetyCheck => roll_back(
            candidate,
            "cancelled",
            "the operation was cancelled".into(),
            now,
        ),
        Phase::Draining if !candidate.cordoned => roll_back(
            candidate,
            "cancelled",
            "the operation was cancelled".into(),
            now,
        ),
        Phase::Draining => fail_after_drain_started(
            candidate,
            "cancelled",
            "the operation was cancelled during the drain".into(),
            now,
        ),
        _ => {}
    }
}
