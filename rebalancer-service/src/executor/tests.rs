//! The candidate state machine, driven by scripted outcomes.

use vpsie_proto::rebalancer::v1 as pb;

use super::machine::cancel;
use super::*;

const NOW: &str = "2026-11-26T08:00:00Z";

fn plan(dry_run: bool) -> PlanSpec {
    PlanSpec {
        node_group: "general".into(),
        strategy: Strategy::Rolling,
        batch_size: 1,
        max_concurrent: 1,
        drain: DrainSpec::default(),
        ready_timeout_seconds: 900,
        dry_run,
    }
}

/// Runs a candidate to the end, answering each step with `answer`; returns the steps taken.
fn run(
    kind: OperationKind,
    plan: &PlanSpec,
    candidate: &mut CandidateRecord,
    mut answer: impl FnMut(Step) -> StepOutcome,
) -> Vec<Step> {
    let mut steps = Vec::new();
    while let Some(step) = next_step(kind, candidate, false) {
        assert!(steps.len() < 50, "runaway machine: {steps:?}");
        begin(kind, candidate, step, NOW);
        steps.push(step);
        apply(plan, candidate, step, answer(step), NOW);
    }
    steps
}

fn happy(step: Step) -> StepOutcome {
    match step {
        Step::Lookup => StepOutcome::Found {
            nodegroup: Some("old-group".into()),
        },
        Step::Provision { .. } => StepOutcome::Provisioned {
            vps_id: "vps-1".into(),
            hostname: "general-new".into(),
        },
        Step::WaitForNode => StepOutcome::Ready {
            node_name: "general-new".into(),
        },
        _ => StepOutcome::Ok,
    }
}

#[test]
fn a_replacement_runs_every_step_in_order() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "4-8");
    let steps = run(
        OperationKind::Rebalance,
        &plan(false),
        &mut candidate,
        happy,
    );
    assert_eq!(
        steps,
        vec![
            Step::Lookup,
            Step::Provision { recover: false },
            Step::WaitForNode,
            Step::SafetyCheck,
            Step::Cordon,
            Step::Drain,
            Step::DeleteMachine,
            Step::DeleteNode,
        ]
    );
    assert_eq!(candidate.phase, Phase::Done);
    assert_eq!(candidate.replacement_vps_id, "vps-1");
    assert_eq!(candidate.replacement_node_name, "general-new");
    assert!(candidate.provision_intent_at.is_some());
    assert_eq!(candidate.error, None);
}

#[test]
fn same_group_and_offering_is_skipped_without_any_write() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "2-4");
    let steps = run(
        OperationKind::Rebalance,
        &plan(false),
        &mut candidate,
        |_| StepOutcome::Found {
            nodegroup: Some("general".into()),
        },
    );
    assert_eq!(steps, vec![Step::Lookup]);
    assert_eq!(candidate.phase, Phase::Skipped);
    assert!(candidate.skip_reason);
}

#[test]
fn same_group_with_another_offering_and_another_group_proceed() {
    for (group, current) in [("general", "2-4"), ("other", "4-8")] {
        let mut candidate = CandidateRecord::new("n1", current, "4-8");
        let steps = run(
            OperationKind::Rebalance,
            &plan(false),
            &mut candidate,
            |step| match step {
                Step::Lookup => StepOutcome::Found {
                    nodegroup: Some(group.into()),
                },
                other => happy(other),
            },
        );
        assert_eq!(steps.len(), 8, "{group}/{current}");
        assert_eq!(candidate.phase, Phase::Done);
    }
}

#[test]
fn an_unreadable_node_fails_closed_at_lookup() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "2-4");
    let steps = run(
        OperationKind::Rebalance,
        &plan(false),
        &mut candidate,
        |_| StepOutcome::Failed("nodes \"n1\" is forbidden".into()),
    );
    assert_eq!(steps, vec![Step::Lookup]);
    assert_eq!(candidate.phase, Phase::Failed);
    assert_eq!(
        candidate.error.as_ref().map(|e| e.step.as_str()),
        Some("lookup")
    );
}

#[test]
fn a_refused_safety_check_deletes_the_replacement_and_leaves_the_node() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "4-8");
    let steps = run(
        OperationKind::Rebalance,
        &plan(false),
        &mut candidate,
        |step| match step {
            Step::SafetyCheck => StepOutcome::Refused("pod a/b cannot be rescheduled".into()),
            other => happy(other),
        },
    );
    assert_eq!(steps[3..], [Step::SafetyCheck, Step::DeleteReplacement]);
    assert!(!steps.contains(&Step::Cordon));
    assert_eq!(candidate.phase, Phase::RolledBack);
    let error = candidate.error.expect("error");
    assert_eq!(
        (error.step.as_str(), error.message.as_str()),
        ("safety_check", "pod a/b cannot be rescheduled")
    );
}

#[test]
fn a_replacement_that_never_gets_ready_is_deleted_and_the_old_node_never_touched() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "4-8");
    let steps = run(
        OperationKind::Rebalance,
        &plan(false),
        &mut candidate,
        |step| match step {
            Step::WaitForNode => StepOutcome::Failed("not Ready after 900s".into()),
            other => happy(other),
        },
    );
    assert_eq!(
        steps,
        vec![
            Step::Lookup,
            Step::Provision { recover: false },
            Step::WaitForNode,
            Step::DeleteReplacement
        ]
    );
    assert_eq!(candidate.phase, Phase::RolledBack);
}

#[test]
fn a_drain_failure_uncordons_and_keeps_the_replacement() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "4-8");
    let steps = run(
        OperationKind::Rebalance,
        &plan(false),
        &mut candidate,
        |step| match step {
            Step::Drain => StepOutcome::Failed("timed out after 300s with 1 pod left".into()),
            other => happy(other),
        },
    );
    assert_eq!(steps[5..], [Step::Drain, Step::Uncordon]);
    assert!(!steps.contains(&Step::DeleteReplacement));
    assert_eq!(candidate.phase, Phase::Failed);
    assert_eq!(
        candidate.error.as_ref().map(|e| e.step.as_str()),
        Some("drain")
    );
    assert!(!candidate.cordoned);
}

#[test]
fn a_failed_cordon_is_undone_and_rolled_back() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "4-8");
    let steps = run(
        OperationKind::Rebalance,
        &plan(false),
        &mut candidate,
        |step| match step {
            Step::Cordon => StepOutcome::Failed("conflict".into()),
            other => happy(other),
        },
    );
    assert_eq!(
        steps[4..],
        [Step::Cordon, Step::Uncordon, Step::DeleteReplacement]
    );
    assert_eq!(candidate.phase, Phase::RolledBack);
}

#[test]
fn a_crash_after_the_intent_recovers_instead_of_creating_again() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "4-8");
    let plan = plan(false);
    apply(
        &plan,
        &mut candidate,
        Step::Lookup,
        happy(Step::Lookup),
        NOW,
    );
    let step = next_step(OperationKind::Rebalance, &candidate, false).expect("step");
    assert_eq!(step, Step::Provision { recover: false });
    begin(OperationKind::Rebalance, &mut candidate, step, NOW);
    // the process dies here: the record says an add was asked for, without an id
    let restarted = next_step(OperationKind::Rebalance, &candidate, false);
    assert_eq!(restarted, Some(Step::Provision { recover: true }));
    // nothing was created: the next attempt creates
    apply(
        &plan,
        &mut candidate,
        Step::Provision { recover: true },
        StepOutcome::NothingCreated,
        NOW,
    );
    assert_eq!(
        next_step(OperationKind::Rebalance, &candidate, false),
        Some(Step::Provision { recover: false })
    );
}

#[test]
fn removal_runs_steps_four_to_seven() {
    let mut candidate = CandidateRecord::new("n1", "", "");
    let steps = run(OperationKind::Remove, &plan(false), &mut candidate, happy);
    assert_eq!(
        steps,
        vec![
            Step::SafetyCheck,
            Step::Cordon,
            Step::Drain,
            Step::DeleteMachine,
            Step::DeleteNode
        ]
    );
    assert_eq!(candidate.phase, Phase::Done);
}

#[test]
fn dry_runs_only_read() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "4-8");
    let steps = run(OperationKind::Rebalance, &plan(true), &mut candidate, happy);
    assert_eq!(steps, vec![Step::Lookup]);
    assert_eq!(candidate.phase, Phase::Done);
    assert!(
        candidate.note.starts_with("would provision"),
        "{}",
        candidate.note
    );
    let mut removal = CandidateRecord::new("n1", "", "");
    let steps = run(OperationKind::Remove, &plan(true), &mut removal, happy);
    assert_eq!(steps, vec![Step::SafetyCheck]);
    assert!(steps.iter().all(|s| !s.writes()));
}

#[test]
fn cancel_undoes_by_the_failure_rules() {
    let plan = plan(false);
    // before the drain: roll back, deleting the replacement
    let mut candidate = CandidateRecord::new("n1", "2-4", "4-8");
    for step in [
        Step::Lookup,
        Step::Provision { recover: false },
        Step::WaitForNode,
    ] {
        apply(&plan, &mut candidate, step, happy(step), NOW);
    }
    cancel(&mut candidate, NOW);
    assert_eq!(
        next_step(OperationKind::Rebalance, &candidate, true),
        Some(Step::DeleteReplacement)
    );
    apply(
        &plan,
        &mut candidate,
        Step::DeleteReplacement,
        StepOutcome::Ok,
        NOW,
    );
    assert_eq!(candidate.phase, Phase::RolledBack);
    assert_eq!(
        candidate.error.as_ref().map(|e| e.step.as_str()),
        Some("cancelled")
    );
    // a pending candidate of a cancelled operation never starts
    let pending = CandidateRecord::new("n2", "2-4", "4-8");
    assert_eq!(next_step(OperationKind::Rebalance, &pending, true), None);
}

#[test]
fn operation_state_and_counts_follow_the_candidates() {
    let request = pb::RebalancePlan {
        id: "p1".into(),
        node_group_name: "general".into(),
        strategy: pb::Strategy::Surge as i32,
        batch_size: 2,
        candidates: ["a", "b", "c"]
            .iter()
            .map(|n| pb::Candidate {
                node_name: n.to_string(),
                current_offering: "2-4".into(),
                target_offering: "4-8".into(),
            })
            .collect(),
        ..Default::default()
    };
    let mut operation = OperationRecord::from_plan(&request, NOW).expect("valid plan");
    assert_eq!(operation.batches(), vec![0..2, 2..3]);
    assert_eq!(operation.plan.max_concurrent, 1);
    assert_eq!(operation.plan.ready_timeout_seconds, 900);
    operation.candidates[0].phase = Phase::Done;
    operation.candidates[1].phase = Phase::Skipped;
    operation.candidates[2].phase = Phase::RolledBack;
    operation.settle(NOW);
    assert_eq!(operation.state, OperationState::Failed);
    let proto = operation.to_proto();
    assert_eq!(
        (proto.done_count, proto.skipped_count, proto.failed_count),
        (1, 1, 1)
    );
    assert_eq!(proto.state, pb::OperationState::Failed as i32);
}

#[test]
fn bad_requests_are_rejected_with_the_field() {
    let candidate = |n: &str| pb::Candidate {
        node_name: n.into(),
        current_offering: "a".into(),
        target_offering: "b".into(),
    };
    let base = pb::RebalancePlan {
        id: "p".into(),
        node_group_name: "g".into(),
        strategy: pb::Strategy::Rolling as i32,
        candidates: vec![candidate("a")],
        ..Default::default()
    };
    let cases = [
        (
            pb::RebalancePlan {
                candidates: vec![],
                ..base.clone()
            },
            "plan.candidates",
        ),
        (
            pb::RebalancePlan {
                candidates: vec![candidate("a"), candidate("a")],
                ..base.clone()
            },
            "plan.candidates[1]",
        ),
        (
            pb::RebalancePlan {
                strategy: 0,
                ..base.clone()
            },
            "plan.strategy",
        ),
        (
            pb::RebalancePlan {
                strategy: 7,
                ..base.clone()
            },
            "plan.strategy",
        ),
        (
            pb::RebalancePlan {
                id: String::new(),
                ..base.clone()
            },
            "plan.id",
        ),
        (
            pb::RebalancePlan {
                batch_size: -1,
                ..base.clone()
            },
            "plan.batchSize",
        ),
    ];
    for (plan, field) in cases {
        let error = OperationRecord::from_plan(&plan, NOW).expect_err(field);
        assert_eq!(error.field, field);
    }
    let removal = pb::RemoveNodesRequest {
        request_id: "r".into(),
        node_names: vec![],
        ..Default::default()
    };
    assert_eq!(
        OperationRecord::from_removal(&removal, NOW)
            .expect_err("empty")
            .field,
        "nodeNames"
    );
}

#[test]
fn records_survive_a_json_round_trip() {
    let mut candidate = CandidateRecord::new("n1", "2-4", "4-8");
    run(
        OperationKind::Rebalance,
        &plan(false),
        &mut candidate,
        |step| match step {
            Step::Drain => StepOutcome::Failed("x".into()),
            other => happy(other),
        },
    );
    let json = serde_json::to_string(&candidate).expect("serialize");
    let back: CandidateRecord = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, candidate);
}
