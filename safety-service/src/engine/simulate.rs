//! Placement simulation: drain a node onto the others first-fit, find homes for a new pod, and
//! replay a given plan.

use std::cmp::Ordering;

use vpsie_proto::safety::v1::{self as pb, BlockingReason, RemovalReason};

use super::drain_rules::{self, Disposition};
use super::explain;
use super::filters::{self, Plugin, Rejection};
use super::snapshot::{Index, NodeId, PodId};
use super::state::ClusterState;
use super::view::{self, w};
use super::{Deadline, EngineError};

pub const SCALE_DOWN_DISABLED_KEYS: [&str; 3] = [
    "autoscaler.vpsie.com/scale-down-disabled",
    "cluster-autoscaler.kubernetes.io/scale-down-disabled",
    "autoscaler.vpsie.com/protected",
];

/// The key (annotation or label) that protects a node, if any.
pub fn scale_down_disabled_by(node: &w::Node) -> Option<&'static str> {
    let meta = node.metadata.as_ref()?;
    SCALE_DOWN_DISABLED_KEYS.into_iter().find(|key| {
        view::lookup(&meta.annotations, key) == Some(b"true")
            || view::lookup(&meta.labels, key) == Some(b"true")
    })
}

/// Placement order: priority descending, then "namespace/name" ascending (as strings, so
/// `a-b/x` sorts before `a/x`).
pub fn placement_order(index: &Index<'_>, a: PodId, b: PodId) -> Ordering {
    let (a, b) = (index.pod(a), index.pod(b));
    b.priority.cmp(&a.priority).then_with(|| {
        let key_a = a
            .namespace
            .bytes()
            .chain(std::iter::once(b'/'))
            .chain(a.name.bytes());
        let key_b = b
            .namespace
            .bytes()
            .chain(std::iter::once(b'/'))
            .chain(b.name.bytes());
        key_a.cmp(key_b)
    })
}

/// Every node's verdict for one pod, or the first node that takes it.
pub enum Fit<'a> {
    Placed(NodeId),
    Homeless(Vec<(NodeId, Rejection<'a>)>),
}

/// First fit over the nodes in name order; `skip` nodes are neither tried nor reported.
pub fn first_fit<'a>(
    index: &Index<'a>,
    state: &ClusterState<'a>,
    pod: PodId,
    skip: Option<NodeId>,
) -> Fit<'a> {
    let prefiltered = filters::prefilter(index, state, pod);
    let mut rejections = Vec::new();
    for node in 0..index.nodes.len() as NodeId {
        if Some(node) == skip {
            continue;
        }
        let verdict = if state.ghost[node as usize] {
            Some(Rejection::new(
                Plugin::RemovalPlan,
                filters::REASON_REMOVED_IN_PLAN,
            ))
        } else {
            filters::filter(index, state, &prefiltered, node)
        };
        match verdict {
            None => return Fit::Placed(node),
            Some(rejection) => rejections.push((node, rejection)),
        }
    }
    Fit::Homeless(rejections)
}

struct Blocker<'a> {
    pod: PodId,
    reason: BlockingReason,
    message: String,
    budgets: Vec<String>,
    rejections: Vec<(NodeId, Rejection<'a>)>,
}

/// Simulates removing `node` on `state`. When the node is removable the state keeps the result
/// (its pods placed, the node a ghost, budgets spent); otherwise it is left as it was.
pub fn drain<'a>(
    index: &Index<'a>,
    state: &mut ClusterState<'a>,
    node: NodeId,
    options: &pb::RemovalOptions,
    deadline: Deadline,
) -> Result<pb::CanRemoveNodeResponse, EngineError> {
    let info = index.node(node);
    let mut response = pb::CanRemoveNodeResponse {
        node_name: info.name.to_string(),
        ..Default::default()
    };
    if let Some(key) = scale_down_disabled_by(info.source) {
        response.reason = RemovalReason::ScaleDownDisabled as i32;
        response.message = format!(
            "node {} is protected from scale-down ({key}=true)",
            info.name
        );
        return Ok(response);
    }
    let checkpoint = state.checkpoint();

    // 1. What stays, what blocks, what moves.
    let mut on_node: Vec<PodId> = state.node_pods[node as usize].clone();
    on_node.extend(index.finished_on[node as usize].iter().copied());
    on_node.sort_unstable_by(|&a, &b| placement_order(index, a, b));
    let mut to_move = Vec::with_capacity(on_node.len());
    let mut rule_blockers = Vec::new();
    for &pod in &on_node {
        let info = index.pod(pod);
        match drain_rules::classify(index, info, options) {
            Disposition::Skip(reason) => response.skipped_pods.push(pb::SkippedPod {
                namespace: info.namespace.to_string(),
                name: info.name.to_string(),
                reason: reason as i32,
            }),
            Disposition::Block { reason, detail } => rule_blockers.push(Blocker {
                pod,
                reason,
                message: format!("pod {} cannot be moved: {detail}", info.key()),
                budgets: Vec::new(),
                rejections: Vec::new(),
            }),
            Disposition::Move => to_move.push(pod),
        }
    }

    // 2. Disruption budgets, walked in placement order before anything is placed.
    if !options.ignore_pod_disruption_budgets {
        to_move.retain(|&pod| {
            let info = index.pod(pod);
            let matching = index.pdbs_matching(info);
            match matching.as_slice() {
                [] => true,
                [only] => {
                    if state.budget_left[*only as usize] >= 1 {
                        state.spend_budget(*only);
                        true
                    } else {
                        let pdb = index.pdbs[*only as usize].key();
                        rule_blockers.push(Blocker {
                            pod,
                            reason: BlockingReason::NotEnoughPdb,
                            message: format!(
                                "pod {} cannot be evicted: PodDisruptionBudget {pdb} allows no more disruptions",
                                info.key()
                            ),
                            budgets: vec![pdb],
                            rejections: Vec::new(),
                        });
                        false
                    }
                }
                several => {
                    let mut budgets: Vec<String> = several.iter().map(|&p| index.pdbs[p as usize].key()).collect();
                    budgets.sort();
                    rule_blockers.push(Blocker {
                        pod,
                        reason: BlockingReason::MultiplePdbs,
                        message: format!(
                            "pod {} cannot be evicted: it is covered by more than one PodDisruptionBudget ({}), which the Eviction API refuses",
                            info.key(),
                            budgets.join(", ")
                        ),
                        budgets,
                        rejections: Vec::new(),
                    });
                    false
                }
            }
        });
    }
    rule_blockers.sort_by(|a, b| placement_order(index, a.pod, b.pod));

    // 3. The ghost: cordoned, tainted, its movable pods taken off up front.
    state.set_ghost(node);
    for &pod in &to_move {
        state.move_pod(index, pod, None);
    }

    // 4. First fit, pod by pod; a homeless pod stays unplaced and the rest go on.
    let mut placements = Vec::with_capacity(to_move.len());
    let mut homeless = Vec::new();
    for &pod in &to_move {
        deadline.check()?;
        match first_fit(index, state, pod, Some(node)) {
            Fit::Placed(dest) => {
                state.move_pod(index, pod, Some(dest));
                placements.push((pod, dest));
            }
            Fit::Homeless(rejections) => {
                let info = index.pod(pod);
                homeless.push(Blocker {
                    pod,
                    reason: BlockingReason::NoFeasibleNode,
                    message: explain::homeless_message(index, info, &rejections),
                    budgets: Vec::new(),
                    rejections,
                });
            }
        }
    }

    let first_block_order = rule_blockers
        .first()
        .map(|b| b.pod)
        .or(homeless.first().map(|b| b.pod));
    let removable = rule_blockers.is_empty() && homeless.is_empty();
    response.removable = removable;
    response.placements = placements
        .iter()
        .take_while(|&&(pod, _)| {
            // With a rule block nothing counts as placed; with a homeless pod, only what came before it.
            rule_blockers.is_empty()
                && first_block_order
                    .is_none_or(|block| placement_order(index, pod, block) == Ordering::Less)
        })
        .map(|&(pod, dest)| {
            let info = index.pod(pod);
            pb::Placement {
                namespace: info.namespace.to_string(),
                name: info.name.to_string(),
                node_name: index.node(dest).name.to_string(),
            }
        })
        .collect();
    let blockers: Vec<Blocker<'a>> = rule_blockers.into_iter().chain(homeless).collect();
    response.reason = if removable {
        RemovalReason::Removable
    } else if blockers
        .iter()
        .any(|b| b.reason != BlockingReason::NoFeasibleNode)
    {
        RemovalReason::BlockedByPod
    } else {
        RemovalReason::NoPlaceToMovePods
    } as i32;
    response.message = match blockers.first() {
        None if to_move.is_empty() => {
            format!("node {} can be removed: no pod needs to move", info.name)
        }
        None => format!(
            "node {} can be removed: {} pod(s) can move to other nodes",
            info.name,
            to_move.len()
        ),
        Some(first) if blockers.len() == 1 => first.message.clone(),
        Some(first) => format!(
            "{} (and {} more blocking pod(s))",
            first.message,
            blockers.len() - 1
        ),
    };
    response.blocking_pods = blockers
        .into_iter()
        .map(|b| {
            let info = index.pod(b.pod);
            pb::BlockingPod {
                namespace: info.namespace.to_string(),
                name: info.name.to_string(),
                reason: b.reason as i32,
                message: b.message,
                rejection_summary: explain::summarize(&b.rejections),
                rejections: if options.explain {
                    explain::per_node(index, &b.rejections)
                } else {
                    Vec::new()
                },
                disruption_budgets: b.budgets,
            }
        })
        .collect();
    if !removable {
        state.rollback(index, checkpoint);
    }
    Ok(response)
}

/// `FindSchedulableNode` over an index built with the question pod.
pub fn find_homes<'a>(
    index: &Index<'a>,
    state: &mut ClusterState<'a>,
    exclude: &[&str],
    explain_nodes: bool,
) -> Result<pb::FindSchedulableNodeResponse, EngineError> {
    let Some(pod) = index.question else {
        return Err(EngineError::invalid("pod", "a pod is required"));
    };
    let info = index.pod(pod);
    // A pod of the same namespace/name already in the snapshot is replaced by the question.
    if let Some(existing) = index.pod_id(info.namespace, info.name) {
        state.move_pod(index, existing, None);
    }
    let mut excluded = vec![false; index.nodes.len()];
    for (i, name) in exclude.iter().enumerate() {
        match index.node_id(name) {
            Some(node) => excluded[node as usize] = true,
            None => {
                return Err(EngineError::invalid(
                    format!("excludeNodes[{i}]"),
                    format!("node {name:?} is not in the snapshot"),
                ));
            }
        }
    }
    let prefiltered = filters::prefilter(index, state, pod);
    let mut feasible = Vec::new();
    let mut rejections = Vec::new();
    for node in 0..index.nodes.len() as NodeId {
        let verdict = if excluded[node as usize] {
            Some(Rejection::new(Plugin::Excluded, filters::REASON_EXCLUDED))
        } else {
            filters::filter(index, state, &prefiltered, node)
        };
        match verdict {
            None => feasible.push(index.node(node).name.to_string()),
            Some(rejection) => rejections.push((node, rejection)),
        }
    }
    Ok(pb::FindSchedulableNodeResponse {
        found: !feasible.is_empty(),
        node_name: feasible.first().cloned().unwrap_or_default(),
        feasible_nodes: feasible,
        rejection_summary: explain::summarize(&rejections),
        rejections: if explain_nodes {
            explain::per_node(index, &rejections)
        } else {
            Vec::new()
        },
    })
}

/// One step of a plan to replay: pod "namespace/name" onto a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStep {
    pub pod: String,
    pub node: String,
}

/// Why a replayed plan is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFailure {
    pub step: usize,
    pub pod: String,
    /// Absent for `Unplaced`.
    pub node: Option<String>,
    pub plugin: String,
    pub reason: String,
}

/// Replays a removal plan for `node`: the same setup as a drain (ghost, movable pods taken off),
/// no budget check, the plan's own order. `Ok(None)` means the plan is valid.
pub fn replay_plan(
    index: &Index<'_>,
    node_name: &str,
    plan: &[PlanStep],
    options: &pb::RemovalOptions,
) -> Result<Option<PlanFailure>, EngineError> {
    let node = index
        .node_id(node_name)
        .ok_or_else(|| EngineError::NodeNotFound(node_name.to_string()))?;
    let mut state = ClusterState::new(index);
    let mut to_move: Vec<PodId> = state.node_pods[node as usize]
        .iter()
        .copied()
        .filter(|&p| drain_rules::classify(index, index.pod(p), options) == Disposition::Move)
        .collect();
    to_move.sort_unstable_by(|&a, &b| placement_order(index, a, b));
    state.set_ghost(node);
    for &pod in &to_move {
        state.move_pod(index, pod, None);
    }
    let mut placed = vec![false; to_move.len()];
    let fail = |step: usize, pod: &str, node: Option<&str>, plugin: &str, reason: &str| {
        Ok(Some(PlanFailure {
            step,
            pod: pod.to_string(),
            node: node.map(str::to_string),
            plugin: plugin.to_string(),
            reason: reason.to_string(),
        }))
    };
    for (step, entry) in plan.iter().enumerate() {
        let slot = entry
            .pod
            .split_once('/')
            .and_then(|(ns, name)| index.pod_id(ns, name))
            .and_then(|id| to_move.iter().position(|&p| p == id));
        let Some(slot) = slot else {
            return fail(
                step,
                &entry.pod,
                Some(&entry.node),
                "UnknownPod",
                "not one of the pods to move off the node",
            );
        };
        if placed[slot] {
            return fail(
                step,
                &entry.pod,
                Some(&entry.node),
                "Duplicate",
                "pod already placed earlier in the plan",
            );
        }
        if entry.node == node_name {
            return fail(
                step,
                &entry.pod,
                Some(&entry.node),
                "GhostNode",
                "the drained node cannot take pods",
            );
        }
        let Some(dest) = index.node_id(&entry.node) else {
            return fail(
                step,
                &entry.pod,
                Some(&entry.node),
                "UnknownNode",
                "node not in snapshot",
            );
        };
        let pod = to_move[slot];
        let prefiltered = filters::prefilter(index, &state, pod);
        if let Some(rejection) = filters::filter(index, &state, &prefiltered, dest) {
            return fail(
                step,
                &entry.pod,
                Some(&entry.node),
                rejection.plugin.as_str(),
                &rejection.reason,
            );
        }
        state.move_pod(index, pod, Some(dest));
        placed[slot] = true;
    }
    if let Some(missing) = placed.iter().position(|p| !p) {
        let pod = index.pod(to_move[missing]).key();
        return fail(
            plan.len(),
            &pod,
            None,
            "Unplaced",
            "pod to move is missing from the plan",
        );
    }
    Ok(None)
}
