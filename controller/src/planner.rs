//! The planners, sans I/O: plain functions over a cluster snapshot, the configuration, the
//! unneeded timers, the current time and the safety-service's answers. The online loop and the
//! offline `controller plan` share them; neither sockets nor clocks are touched here.
//!
//! One scan has two steps around the safety-service calls:
//! 1. [`survey`] reads the snapshot: each node's group and utilization, which nodes are
//!    scale-down candidates (least utilised first) and the `maxNodes` bound of the
//!    `CanRemoveNodes` call, and which drifted nodes need a `CanRemoveNode` answer.
//! 2. [`decide`] takes those answers and returns one [`NodeReport`] per node (decision, reason,
//!    the `scale-down-status` annotation text), the `RemoveNodes` request, the `ExecutePlan`
//!    requests and the next timers.
//!
//! # Utilization
//! A node's utilization is max(cpu, memory) of requests / allocatable. Counted pods: bound to the
//! node (`spec.nodeName`), not finished (phase Succeeded/Failed), not mirror pods (annotation
//! `kubernetes.io/config.mirror`), not owned by a DaemonSet (they stay on the node whatever
//! happens). A pod's request of a resource is computed as Kubernetes' `PodRequests` does, minus
//! in-place resize status: the sum over its containers (a missing request takes the limit, as
//! the API server defaults it), plus restartable (sidecar, `restartPolicy: Always`) init
//! containers, at least the largest regular init container on top of the sidecars started before
//! it; pod-level `resources` replace that figure when set; then `overhead` is added. A node
//! whose allocatable cpu or memory is missing or zero is never a candidate.
//!
//! # Scale-down
//! Candidates are nodes of a configured group that are not being deleted, not in one of our
//! unfinished operations, not protected (`autoscaler.vpsie.com/protected`,
//! `autoscaler.vpsie.com/scale-down-disabled` or
//! `cluster-autoscaler.kubernetes.io/scale-down-disabled` = `"true"`, annotation or label),
//! Ready (a missing Ready condition counts as Ready, as in the snapshot contract), not cordoned or
//! tainted `autoscaler.vpsie.com/draining`, and strictly under the threshold. A group may lose
//! `nodes - minNodes` nodes, where nodes excludes those being deleted or removed by us already;
//! candidates of a group at its minimum are not asked about. `CanRemoveNodes` gets the others,
//! least utilised first (ties by name), with `maxNodes` = the sum over groups of what each may
//! lose; removable answers beyond a group's allowance are dropped (the service's greedy walk may
//! have counted them, which can only make later answers more conservative).
//!
//! A removable node's timer starts at the first scan that finds it removable; a scan that does
//! not (blocked, filtered, not asked, not a candidate) resets it. A node removable for
//! `unneededTime` is eligible; the eligible nodes, in candidate order, fill the free removal
//! slots (`maxParallel` minus removals in flight) and go into one `RemoveNodes` request whose id
//! is a hash of the nodes' names and uids. The others wait.
//!
//! # Drift
//! A node whose `autoscaler.vpsie.com/offering` label differs from its group's `offering` has
//! drifted (a node without the label, or a group without an offering, never drifts). When
//! rebalancing is enabled and the group has no rebalance in flight, each drifted node that passes
//! the candidate checks above (but not the threshold) is asked about with `CanRemoveNode`; the
//! allowed ones, unless they are being removed by this very scan, make one `ExecutePlan` per
//! group, with id `drift-<group>-<fnv64>` over the target offering and the sorted candidates'
//! names and uids, so a restarted controller submits the same id again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use safety_service::engine::quantity::Quantity;
use vpsie_proto::rebalancer::v1 as rb;
use vpsie_proto::safety::v1 as pb;

use crate::config::{Config, Strategy};

/// The node group a node belongs to.
pub const NODEGROUP_LABEL: &str = "autoscaler.vpsie.com/nodegroup";
/// The VPSie offering a node runs.
pub const OFFERING_LABEL: &str = "autoscaler.vpsie.com/offering";
/// The controller's last decision about a node, one line.
pub const SCALE_DOWN_STATUS_ANNOTATION: &str = "autoscaler.vpsie.com/scale-down-status";
/// Set with cordon while the rebalancer drains a node.
pub const DRAINING_TAINT: &str = "autoscaler.vpsie.com/draining";
/// Marks a mirror (static) pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Any of these set to `"true"`, as an annotation or a label, protects a node.
pub const PROTECTION_KEYS: [&str; 3] = [
    "autoscaler.vpsie.com/scale-down-disabled",
    "cluster-autoscaler.kubernetes.io/scale-down-disabled",
    "autoscaler.vpsie.com/protected",
];
/// The rebalancer's defaults, sent explicitly.
const EVICTION_RETRY_SECONDS: i32 = 5;
const READY_TIMEOUT_SECONDS: i32 = 900;
const MAX_CONCURRENT: i32 = 1;

/// A snapshot field the planner cannot read, named as the safety-service names it
/// (`snapshot.pods[12].spec.containers[0].resources.requests["cpu"]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SnapshotError {
    pub path: String,
    pub message: String,
}

/// Requests over allocatable, per resource, as fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Utilization {
    pub cpu: f64,
    pub memory: f64,
}

impl Utilization {
    /// max(cpu, memory): the figure compared with the threshold.
    pub fn value(self) -> f64 {
        self.cpu.max(self.memory)
    }

    /// The resource that gives [`Self::value`].
    pub fn dominant(self) -> &'static str {
        if self.memory > self.cpu {
            "memory"
        } else {
            "cpu"
        }
    }
}

/// What the controller is doing already, from the rebalancer's unfinished operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Nodes of unfinished `RemoveNodes` operations: they take removal slots and no longer
    /// count in their group.
    pub removing: BTreeSet<String>,
    /// Nodes of unfinished rebalance plans.
    pub replacing: BTreeSet<String>,
    /// Groups with an unfinished rebalance plan: no second plan for them.
    pub rebalancing_groups: BTreeSet<String>,
}

impl InFlight {
    fn busy(&self, node: &str) -> bool {
        self.removing.contains(node) || self.replacing.contains(node)
    }
}

/// What survives from one scan to the next: since when each node has been removable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    pub removable_since: BTreeMap<String, SystemTime>,
}

/// How the unneeded timer is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnneededTimer {
    /// A node must have been removable for `unneededTime` (the online loop).
    Enforced,
    /// Every removable node counts as unneeded long enough (offline: one scan, no history).
    AssumeSatisfied,
}

/// Why a node is not considered for scale-down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// No `autoscaler.vpsie.com/nodegroup` label.
    NoGroupLabel,
    /// The label names a group the configuration does not have.
    UnknownGroup,
    /// `metadata.deletionTimestamp` is set.
    Deleting,
    /// The node is in one of our unfinished operations.
    InOperation,
    /// Protected by this key (annotation or label) set to `"true"`.
    Protected(&'static str),
    NotReady,
    Cordoned,
    /// Tainted `autoscaler.vpsie.com/draining`.
    Draining,
    /// Allocatable of this resource missing or zero: utilization unknown.
    UnknownAllocatable(&'static str),
    /// `scaleDown.enabled: false`.
    ScaleDownDisabled,
    /// Utilization not under the threshold.
    AboveThreshold,
    /// Removing it would take its group below `minNodes`.
    GroupAtMinimum {
        nodes: u32,
        min_nodes: u32,
    },
    /// `CanRemoveNodes` stopped before this node: the groups' minimums allow no more.
    NotAsked {
        limit: u32,
    },
}

impl Skip {
    /// Whether the node is also unfit for a drift replacement.
    fn excludes_drift(&self) -> bool {
        matches!(
            self,
            Skip::NoGroupLabel
                | Skip::UnknownGroup
                | Skip::Deleting
                | Skip::InOperation
                | Skip::Protected(_)
                | Skip::NotReady
                | Skip::Cordoned
                | Skip::Draining
        )
    }
}

/// A node whose offering label differs from its group's offering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub current: String,
    pub target: String,
    pub state: DriftState,
}

/// What happens about a drifted node this scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftState {
    /// Asked about with `CanRemoveNode`; goes into the group's plan if allowed.
    Ask,
    /// `rebalance.enabled: false`.
    RebalanceDisabled,
    /// The group has a rebalance in flight.
    PlanInFlight,
    /// The node fails a candidate check (see its [`Skip`]).
    Unfit,
}

/// What [`survey`] found about one node.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyedNode {
    pub name: String,
    pub uid: String,
    /// The `nodegroup` label, configured or not.
    pub group: Option<String>,
    /// `None` when the allocatable cpu or memory is unknown.
    pub utilization: Option<Utilization>,
    /// `None`: a scale-down candidate.
    pub skip: Option<Skip>,
    pub drift: Option<Drift>,
}

/// The first step of a scan: what to ask the safety-service.
#[derive(Debug, Clone, PartialEq)]
pub struct Survey {
    /// Every node, by name.
    pub nodes: Vec<SurveyedNode>,
    /// The `CanRemoveNodes` candidates, least utilised first, ties by name.
    pub candidates: Vec<String>,
    /// `maxNodes` of the `CanRemoveNodes` call: how many removals the groups' minimums allow
    /// among the candidates (at least 1 when there are candidates).
    pub max_nodes: u32,
    /// The drifted nodes to ask `CanRemoveNode` about, by group then name.
    pub drift_candidates: Vec<String>,
    /// Per configured group: how many of its nodes may go.
    pub allowance: BTreeMap<String, u32>,
    /// Per configured group: its nodes that count towards `minNodes`.
    pub group_sizes: BTreeMap<String, u32>,
}

impl Survey {
    /// The `CanRemoveNodes` request of this scan, if there is anything to ask.
    pub fn can_remove_nodes_request(
        &self,
        snapshot: pb::ClusterSnapshot,
    ) -> Option<pb::CanRemoveNodesRequest> {
        if self.candidates.is_empty() {
            return None;
        }
        Some(pb::CanRemoveNodesRequest {
            snapshot: Some(snapshot),
            node_names: self.candidates.clone(),
            options: Some(pb::RemovalOptions::default()),
            max_nodes: i32::try_from(self.max_nodes).unwrap_or(i32::MAX),
        })
    }

    /// One `CanRemoveNode` request per drift candidate.
    pub fn can_remove_node_requests(
        &self,
        snapshot: &pb::ClusterSnapshot,
    ) -> Vec<pb::CanRemoveNodeRequest> {
        self.drift_candidates
            .iter()
            .map(|name| pb::CanRemoveNodeRequest {
                snapshot: Some(snapshot.clone()),
                node_name: name.clone(),
                options: Some(pb::RemovalOptions::default()),
            })
            .collect()
    }

    fn node(&self, name: &str) -> Option<&SurveyedNode> {
        self.nodes
            .binary_search_by(|node| node.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

/// The safety-service's answers to a [`Survey`]'s questions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SafetyAnswers {
    /// The `CanRemoveNodes` answer; `None` when it was not asked or failed (every candidate is
    /// then blocked: fail closed).
    pub removal: Option<pb::CanRemoveNodesResponse>,
    /// `CanRemoveNode` answers by node name; a missing one blocks its node.
    pub drift: BTreeMap<String, pb::CanRemoveNodeResponse>,
}

/// The decision about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    NotCandidate(Skip),
    /// Removable; the unneeded timer is running.
    Removable {
        since: SystemTime,
    },
    /// Unneeded long enough, but every removal slot is taken.
    Waiting {
        since: SystemTime,
    },
    /// In this scan's `RemoveNodes` request.
    Eligible {
        since: SystemTime,
    },
    /// The safety-service says no (scale-down or drift replacement).
    Blocked {
        message: String,
    },
    /// In its group's `ExecutePlan` request.
    Replace {
        plan_id: String,
    },
}

impl Decision {
    /// The DECISION column of the offline report.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::NotCandidate(_) => "skip",
            Decision::Removable { .. } => "removable",
            Decision::Waiting { .. } => "waiting",
            Decision::Eligible { .. } => "remove",
            Decision::Blocked { .. } => "blocked",
            Decision::Replace { .. } => "replace",
        }
    }

    /// The `autoscaler.vpsie.com/scale-down-status` annotation: `removable since <RFC 3339>` or
    /// `blocked: <safety message>`, one line; `None` means the annotation is removed.
    pub fn status_annotation(&self) -> Option<String> {
        match self {
            Decision::Removable { since }
            | Decision::Waiting { since }
            | Decision::Eligible { since } => Some(format!(
                "removable since {}",
                humantime::format_rfc3339_seconds(*since)
            )),
            Decision::Blocked { message } => Some(format!("blocked: {}", one_line(message))),
            Decision::NotCandidate(_) | Decision::Replace { .. } => None,
        }
    }
}

/// One node's line of the scan.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReport {
    pub name: String,
    pub group: Option<String>,
    pub utilization: Option<Utilization>,
    pub decision: Decision,
    /// One line saying why.
    pub reason: String,
}

impl NodeReport {
    pub fn status_annotation(&self) -> Option<String> {
        self.decision.status_annotation()
    }
}

/// Everything one scan decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// Every node, by name.
    pub nodes: Vec<NodeReport>,
    /// The scale-down to submit, if any.
    pub remove: Option<rb::RemoveNodesRequest>,
    /// One plan per drifted group, by group name.
    pub rebalance: Vec<rb::ExecutePlanRequest>,
    /// The timers for the next scan.
    pub timers: Timers,
}

/// Step one: reads the snapshot. Fails on a node or pod field the utilization needs and cannot
/// read, or on duplicate or empty node names.
pub fn survey(
    snapshot: &pb::ClusterSnapshot,
    config: &Config,
    in_flight: &InFlight,
) -> Result<Survey, SnapshotError> {
    let usage: Vec<PodUsage> = snapshot.pods.iter().map(PodUsage::of).collect();
    survey_nodes(&snapshot.nodes, &usage, config, in_flight)
}

/// [`survey`] over the snapshot's nodes and what each of its pods uses, in snapshot order (the
/// watched cache computes the usage once per pod as it arrives).
pub fn survey_nodes<'p>(
    snapshot_nodes: &[pb::Node],
    pods: impl IntoIterator<Item = &'p PodUsage>,
    config: &Config,
    in_flight: &InFlight,
) -> Result<Survey, SnapshotError> {
    let requested = requests_per_node(pods)?;

    let mut nodes = Vec::with_capacity(snapshot_nodes.len());
    let mut seen = BTreeSet::new();
    for (i, node) in snapshot_nodes.iter().enumerate() {
        let meta = node.metadata.as_ref();
        let name = meta.map_or("", |m| m.name.as_str());
        if name.is_empty() {
            return Err(SnapshotError {
                path: format!("snapshot.nodes[{i}].metadata.name"),
                message: "node name must not be empty".into(),
            });
        }
        if !seen.insert(name) {
            return Err(SnapshotError {
                path: format!("snapshot.nodes[{i}].metadata.name"),
                message: format!("duplicate node name {name:?}"),
            });
        }
        let allocatable = |resource: &'static str| -> Result<Option<i128>, SnapshotError> {
            let text = node
                .status
                .as_ref()
                .and_then(|status| status.allocatable.get(resource));
            match text {
                None => Ok(None),
                Some(text) => {
                    let nanos = parse_quantity(text, || {
                        format!("snapshot.nodes[{i}].status.allocatable[{resource:?}]")
                    })?;
                    Ok((nanos > 0).then_some(nanos))
                }
            }
        };
        let (cpu, memory) = (allocatable("cpu")?, allocatable("memory")?);
        let used = requested.get(name).copied().unwrap_or_default();
        let utilization = match (cpu, memory) {
            (Some(cpu), Some(memory)) => Some(Utilization {
                cpu: used.cpu as f64 / cpu as f64,
                memory: used.memory as f64 / memory as f64,
            }),
            _ => None,
        };
        let unknown = match (cpu, memory) {
            (None, _) => Some("cpu"),
            (_, None) => Some("memory"),
            _ => None,
        };
        let group = meta
            .and_then(|m| m.labels.get(NODEGROUP_LABEL))
            .filter(|g| !g.is_empty())
            .cloned();
        let configured = group.as_deref().and_then(|g| config.group(g));

        let skip = if group.is_none() {
            Some(Skip::NoGroupLabel)
        } else if configured.is_none() {
            Some(Skip::UnknownGroup)
        } else if meta.is_some_and(|m| !m.deletion_timestamp.is_empty()) {
            Some(Skip::Deleting)
        } else if in_flight.busy(name) {
            Some(Skip::InOperation)
        } else if let Some(key) = protected_by(node) {
            Some(Skip::Protected(key))
        } else if !is_ready(node) {
            Some(Skip::NotReady)
        } else if node.spec.as_ref().is_some_and(|spec| spec.unschedulable) {
            Some(Skip::Cordoned)
        } else if node
            .spec
            .as_ref()
            .is_some_and(|spec| spec.taints.iter().any(|t| t.key == DRAINING_TAINT))
        {
            Some(Skip::Draining)
        } else if !config.scale_down.enabled {
            Some(Skip::ScaleDownDisabled)
        } else if let Some(resource) = unknown {
            Some(Skip::UnknownAllocatable(resource))
        } else if utilization.is_some_and(|u| u.value() >= config.scale_down.utilization_threshold)
        {
            Some(Skip::AboveThreshold)
        } else {
            None
        };

        let drift = configured.and_then(|group| {
            let target = group.offering.as_ref()?;
            let current = meta?.labels.get(OFFERING_LABEL).filter(|o| !o.is_empty())?;
            if current == target {
                return None;
            }
            let state = if skip.as_ref().is_some_and(Skip::excludes_drift) {
                DriftState::Unfit
            } else if !config.rebalance.enabled {
                DriftState::RebalanceDisabled
            } else if in_flight.rebalancing_groups.contains(&group.name) {
                DriftState::PlanInFlight
            } else {
                DriftState::Ask
            };
            Some(Drift {
                current: current.clone(),
                target: target.clone(),
                state,
            })
        });

        nodes.push(SurveyedNode {
            name: name.to_owned(),
            uid: meta.map_or_else(String::new, |m| m.uid.clone()),
            group,
            utilization,
            skip,
            drift,
        });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));

    // What each group may lose.
    let mut group_sizes: BTreeMap<String, u32> = config
        .node_groups
        .iter()
        .map(|g| (g.name.clone(), 0))
        .collect();
    for node in &nodes {
        if matches!(node.skip, Some(Skip::Deleting)) || in_flight.removing.contains(&node.name) {
            continue;
        }
        if let Some(size) = node.group.as_ref().and_then(|g| group_sizes.get_mut(g)) {
            *size += 1;
        }
    }
    let allowance: BTreeMap<String, u32> = config
        .node_groups
        .iter()
        .map(|g| {
            let size = group_sizes.get(&g.name).copied().unwrap_or(0);
            (g.name.clone(), size.saturating_sub(g.min_nodes))
        })
        .collect();

    let mut per_group_candidates: BTreeMap<String, u32> = BTreeMap::new();
    for node in &mut nodes {
        if node.skip.is_some() {
            continue;
        }
        let group = node.group.clone().unwrap_or_default();
        if allowance.get(&group).copied().unwrap_or(0) == 0 {
            node.skip = Some(Skip::GroupAtMinimum {
                nodes: group_sizes.get(&group).copied().unwrap_or(0),
                min_nodes: config.group(&group).map_or(0, |g| g.min_nodes),
            });
        } else {
            *per_group_candidates.entry(group).or_default() += 1;
        }
    }
    let max_nodes = per_group_candidates
        .iter()
        .map(|(group, count)| (*count).min(allowance.get(group).copied().unwrap_or(0)))
        .sum();

    let mut ordered: Vec<&SurveyedNode> = nodes.iter().filter(|n| n.skip.is_none()).collect();
    ordered.sort_by(|a, b| {
        let ua = a.utilization.map_or(f64::INFINITY, Utilization::value);
        let ub = b.utilization.map_or(f64::INFINITY, Utilization::value);
        ua.total_cmp(&ub).then_with(|| a.name.cmp(&b.name))
    });
    let candidates = ordered.iter().map(|n| n.name.clone()).collect();

    let mut drifted: Vec<&SurveyedNode> = nodes
        .iter()
        .filter(|n| n.drift.as_ref().is_some_and(|d| d.state == DriftState::Ask))
        .collect();
    drifted.sort_by(|a, b| a.group.cmp(&b.group).then_with(|| a.name.cmp(&b.name)));
    let drift_candidates = drifted.iter().map(|n| n.name.clone()).collect();

    Ok(Survey {
        nodes,
        candidates,
        max_nodes,
        drift_candidates,
        allowance,
        group_sizes,
    })
}

/// Step two: turns the answers into decisions, requests and the next timers.
pub fn decide(
    survey: &Survey,
    config: &Config,
    answers: &SafetyAnswers,
    timers: &Timers,
    in_flight: &InFlight,
    now: SystemTime,
    timer: UnneededTimer,
) -> Scan {
    let unneeded = config.scale_down.unneeded_time;
    let mut decisions: BTreeMap<String, (Decision, String)> = BTreeMap::new();
    let mut next = Timers::default();

    // Scale-down: walk the candidates in order.
    let results: HashMap<&str, &pb::CanRemoveNodeResponse> = answers
        .removal
        .iter()
        .flat_map(|response| &response.results)
        .map(|result| (result.node_name.as_str(), result))
        .collect();
    let removable: BTreeSet<&str> = answers
        .removal
        .iter()
        .flat_map(|response| &response.removable_nodes)
        .map(String::as_str)
        .collect();
    let mut taken: BTreeMap<&str, u32> = BTreeMap::new();
    let mut slots =
        (config.scale_down.max_parallel as usize).saturating_sub(in_flight.removing.len());
    let mut eligible: Vec<&SurveyedNode> = Vec::new();
    for name in &survey.candidates {
        let Some(node) = survey.node(name) else {
            continue;
        };
        let group = node.group.as_deref().unwrap_or("");
        let result = results.get(name.as_str()).copied();
        let safety_message = result.map_or("", |r| r.message.as_str());
        let (decision, reason) = if removable.contains(name.as_str()) {
            let allowed = survey.allowance.get(group).copied().unwrap_or(0);
            let count = taken.entry(group).or_default();
            if *count >= allowed {
                let skip = Skip::GroupAtMinimum {
                    nodes: survey.group_sizes.get(group).copied().unwrap_or(0),
                    min_nodes: config.group(group).map_or(0, |g| g.min_nodes),
                };
                let reason = skip_reason(&skip, node, config);
                (Decision::NotCandidate(skip), reason)
            } else {
                *count += 1;
                let since = timers
                    .removable_since
                    .get(name)
                    .copied()
                    .filter(|since| *since <= now)
                    .unwrap_or(now);
                next.removable_since.insert(name.clone(), since);
                let timer_text = timer_text(since, now, unneeded, timer);
                let unneeded_long_enough = timer == UnneededTimer::AssumeSatisfied
                    || now.duration_since(since).unwrap_or_default() >= unneeded;
                if !unneeded_long_enough {
                    (
                        Decision::Removable { since },
                        join(&timer_text, safety_message),
                    )
                } else if slots > 0 {
                    slots -= 1;
                    eligible.push(node);
                    (
                        Decision::Eligible { since },
                        join(
                            &format!("{timer_text}; selected for RemoveNodes"),
                            safety_message,
                        ),
                    )
                } else {
                    (
                        Decision::Waiting { since },
                        join(
                            &format!(
                                "{timer_text}; waiting for a removal slot (maxParallel {}, {} in flight)",
                                config.scale_down.max_parallel,
                                in_flight.removing.len()
                            ),
                            safety_message,
                        ),
                    )
                }
            }
        } else if let Some(result) = result {
            let message = blocked_message(result);
            (
                Decision::Blocked {
                    message: message.clone(),
                },
                message,
            )
        } else if answers.removal.is_some() {
            let skip = Skip::NotAsked {
                limit: survey.max_nodes,
            };
            let reason = skip_reason(&skip, node, config);
            (Decision::NotCandidate(skip), reason)
        } else {
            let message = "no answer from the safety-service".to_owned();
            (
                Decision::Blocked {
                    message: message.clone(),
                },
                message,
            )
        };
        decisions.insert(name.clone(), (decision, reason));
    }

    let remove = (!eligible.is_empty()).then(|| rb::RemoveNodesRequest {
        request_id: removal_id(&eligible),
        node_names: eligible.iter().map(|n| n.name.clone()).collect(),
        drain: Some(drain_options(config)),
        dry_run: config.dry_run,
    });
    let removing: BTreeSet<&str> = eligible.iter().map(|n| n.name.as_str()).collect();

    // Drift: one plan per group.
    let mut plans: BTreeMap<&str, Vec<&SurveyedNode>> = BTreeMap::new();
    for name in &survey.drift_candidates {
        let Some(node) = survey.node(name) else {
            continue;
        };
        if removing.contains(name.as_str()) {
            continue;
        }
        let Some(drift) = &node.drift else { continue };
        match answers.drift.get(name) {
            Some(answer) if answer.removable => {
                plans
                    .entry(node.group.as_deref().unwrap_or(""))
                    .or_default()
                    .push(node);
            }
            answer => {
                let message = answer.map_or_else(
                    || "no answer from the safety-service".to_owned(),
                    blocked_message,
                );
                let reason = format!(
                    "drifted (offering {}, group wants {}), cannot be replaced: {message}",
                    drift.current, drift.target
                );
                decisions.insert(name.clone(), (Decision::Blocked { message }, reason));
            }
        }
    }
    let mut rebalance = Vec::new();
    for (group, mut members) in plans {
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let target = members[0]
            .drift
            .as_ref()
            .map_or_else(String::new, |d| d.target.clone());
        let plan_id = drift_plan_id(group, &target, &members);
        for node in &members {
            let drift = node.drift.as_ref().expect("drift candidates have drifted");
            decisions.insert(
                node.name.clone(),
                (
                    Decision::Replace {
                        plan_id: plan_id.clone(),
                    },
                    format!(
                        "drifted (offering {}, group wants {}); in plan {plan_id}",
                        drift.current, drift.target
                    ),
                ),
            );
        }
        rebalance.push(rb::ExecutePlanRequest {
            plan: Some(rb::RebalancePlan {
                id: plan_id,
                node_group_name: group.to_owned(),
                strategy: match config.rebalance.strategy {
                    Strategy::Rolling => rb::Strategy::Rolling,
                    Strategy::Surge => rb::Strategy::Surge,
                } as i32,
                batch_size: i32::try_from(config.rebalance.batch_size).unwrap_or(i32::MAX),
                max_concurrent: MAX_CONCURRENT,
                candidates: members
                    .iter()
                    .map(|node| {
                        let drift = node.drift.as_ref().expect("drift candidates have drifted");
                        rb::Candidate {
                            node_name: node.name.clone(),
                            current_offering: drift.current.clone(),
                            target_offering: drift.target.clone(),
                        }
                    })
                    .collect(),
                drain: Some(drain_options(config)),
                ready_timeout_seconds: READY_TIMEOUT_SECONDS,
                dry_run: config.dry_run,
            }),
        });
    }

    let nodes = survey
        .nodes
        .iter()
        .map(|node| {
            let (decision, mut reason) = decisions.remove(&node.name).unwrap_or_else(|| {
                let skip = node.skip.clone().unwrap_or(Skip::AboveThreshold);
                let reason = skip_reason(&skip, node, config);
                (Decision::NotCandidate(skip), reason)
            });
            if let Some(drift) = &node.drift
                && !matches!(decision, Decision::Replace { .. })
                && !(matches!(decision, Decision::Blocked { .. }) && drift.state == DriftState::Ask)
            {
                let why = match (drift.state, &decision) {
                    (_, Decision::Eligible { .. }) => "; removed rather than replaced",
                    (DriftState::RebalanceDisabled, _) => "; rebalance is disabled",
                    (DriftState::PlanInFlight, _) => "; the group's rebalance is in flight",
                    _ => "",
                };
                reason.push_str(&format!(
                    "; drifted (offering {}, group wants {}){why}",
                    drift.current, drift.target
                ));
            }
            NodeReport {
                name: node.name.clone(),
                group: node.group.clone(),
                utilization: node.utilization,
                decision,
                reason: one_line(&reason),
            }
        })
        .collect();

    Scan {
        nodes,
        remove,
        rebalance,
        timers: next,
    }
}

/// The drain options of `RemoveNodes` and of rebalance plans.
pub fn drain_options(config: &Config) -> rb::DrainOptions {
    let timeout = config.scale_down.drain.timeout;
    let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    rb::DrainOptions {
        timeout_seconds: i32::try_from(seconds).unwrap_or(i32::MAX),
        pod_grace_period_seconds: config
            .scale_down
            .drain
            .pod_grace_period_seconds
            .map(|s| i32::try_from(s).unwrap_or(i32::MAX)),
        eviction_retry_seconds: EVICTION_RETRY_SECONDS,
    }
}

/// `remove-<fnv64>` over the sorted names and uids of the nodes: the same removal gets the same
/// id after a restart, a node re-created under the same name a different one.
fn removal_id(nodes: &[&SurveyedNode]) -> String {
    let mut keys: Vec<(&str, &str)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.uid.as_str()))
        .collect();
    keys.sort_unstable();
    let mut hash = Fnv64::new();
    for (name, uid) in keys {
        hash.field(name);
        hash.field(uid);
    }
    format!("remove-{:016x}", hash.finish())
}

/// `drift-<group>-<fnv64>` over the group, the target offering and the sorted candidates' names
/// and uids.
fn drift_plan_id(group: &str, target: &str, members: &[&SurveyedNode]) -> String {
    let mut keys: Vec<(&str, &str)> = members
        .iter()
        .map(|n| (n.name.as_str(), n.uid.as_str()))
        .collect();
    keys.sort_unstable();
    let mut hash = Fnv64::new();
    hash.field(group);
    hash.field(target);
    for (name, uid) in keys {
        hash.field(name);
        hash.field(uid);
    }
    format!("drift-{group}-{:016x}", hash.finish())
}

/// FNV-1a, 64 bits; every field is followed by a 0xff byte (which UTF-8 never contains), so
/// `("ab", "c")` and `("a", "bc")` differ.
struct Fnv64(u64);

impl Fnv64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv64(Self::OFFSET)
    }

    fn byte(&mut self, byte: u8) {
        self.0 ^= u64::from(byte);
        self.0 = self.0.wrapping_mul(Self::PRIME);
    }

    fn field(&mut self, text: &str) {
        for &byte in text.as_bytes() {
            self.byte(byte);
        }
        self.byte(0xff);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn timer_text(
    since: SystemTime,
    now: SystemTime,
    unneeded: Duration,
    timer: UnneededTimer,
) -> String {
    let unneeded_text = humantime::format_duration(unneeded);
    match timer {
        UnneededTimer::AssumeSatisfied => {
            format!("removable (unneeded time {unneeded_text} treated as satisfied offline)")
        }
        UnneededTimer::Enforced => {
            let elapsed = now.duration_since(since).unwrap_or_default();
            let elapsed = Duration::from_secs(elapsed.as_secs());
            format!(
                "removable for {} of {unneeded_text}",
                humantime::format_duration(elapsed)
            )
        }
    }
}

fn skip_reason(skip: &Skip, node: &SurveyedNode, config: &Config) -> String {
    let group = node.group.as_deref().unwrap_or("");
    match skip {
        Skip::NoGroupLabel => format!("no {NODEGROUP_LABEL} label"),
        Skip::UnknownGroup => format!("node group {group:?} is not configured"),
        Skip::Deleting => "being deleted".into(),
        Skip::InOperation => "in an unfinished rebalancer operation".into(),
        Skip::Protected(key) => format!("protected from scale-down ({key}=true)"),
        Skip::NotReady => "not Ready".into(),
        Skip::Cordoned => "cordoned (spec.unschedulable)".into(),
        Skip::Draining => format!("tainted {DRAINING_TAINT}"),
        Skip::UnknownAllocatable(resource) => {
            format!("allocatable {resource} missing or zero: utilization unknown")
        }
        Skip::ScaleDownDisabled => "scale-down is disabled (scaleDown.enabled: false)".into(),
        Skip::AboveThreshold => match node.utilization {
            Some(u) => format!(
                "utilization {} ({}) is not under the threshold {}",
                percent(u.value()),
                u.dominant(),
                percent(config.scale_down.utilization_threshold)
            ),
            None => "utilization unknown".into(),
        },
        Skip::GroupAtMinimum { nodes, min_nodes } => format!(
            "node group {group} has {nodes} node(s) and minNodes {min_nodes}: no further removal allowed"
        ),
        Skip::NotAsked { limit } => format!(
            "not asked: the node groups' minNodes allow {limit} removal(s) at most, all taken by less utilised nodes"
        ),
    }
}

/// A percentage with one decimal: `23.4%`.
pub fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn blocked_message(result: &pb::CanRemoveNodeResponse) -> String {
    if !result.message.is_empty() {
        return one_line(&result.message);
    }
    pb::RemovalReason::try_from(result.reason)
        .map(|reason| reason.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("not removable (reason {})", result.reason))
}

fn join(first: &str, second: &str) -> String {
    if second.is_empty() {
        first.to_owned()
    } else {
        format!("{first}: {second}")
    }
}

/// Newlines and tabs become spaces, so a text stays one line.
pub fn one_line(text: &str) -> String {
    if text.contains(['\n', '\r', '\t']) {
        text.split(['\n', '\r', '\t'])
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        text.to_owned()
    }
}

fn protected_by(node: &pb::Node) -> Option<&'static str> {
    let meta = node.metadata.as_ref()?;
    PROTECTION_KEYS.into_iter().find(|key| {
        meta.annotations.get(*key).is_some_and(|v| v == "true")
            || meta.labels.get(*key).is_some_and(|v| v == "true")
    })
}

fn is_ready(node: &pb::Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.r#type == "Ready"))
        .is_none_or(|ready| ready.status == "True")
}

/// Requested cpu and memory, in nanos of a core and of a byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Amount {
    cpu: i128,
    memory: i128,
}

impl Amount {
    fn add(self, other: Amount) -> Amount {
        Amount {
            cpu: self.cpu + other.cpu,
            memory: self.memory + other.memory,
        }
    }

    fn max(self, other: Amount) -> Amount {
        Amount {
            cpu: self.cpu.max(other.cpu),
            memory: self.memory.max(other.memory),
        }
    }
}

/// What the planner reads of one pod: the node it is bound to, whether it counts towards that
/// node's utilization, and its cpu and memory requests (read, and so validated, counted or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    /// `spec.nodeName`; empty when unbound.
    pub node_name: Box<str>,
    pub counted: bool,
    requests: Result<Amount, Box<SnapshotError>>,
}

impl PodUsage {
    /// Reads a pod. A field it cannot read is kept as the error, its path relative to the pod
    /// (`.spec.containers[0]…`), and reported by [`survey_nodes`] with the pod's position.
    pub fn of(pod: &pb::Pod) -> PodUsage {
        PodUsage {
            node_name: pod
                .spec
                .as_ref()
                .map_or("", |spec| spec.node_name.as_str())
                .into(),
            counted: counts_for_utilization(pod),
            requests: pod_requests(pod, &String::new).map_err(Box::new),
        }
    }

    /// The pod's requests, or the field that cannot be read (path relative to the pod).
    pub fn error(&self) -> Option<&SnapshotError> {
        self.requests.as_ref().err().map(|error| &**error)
    }
}

/// The requests of the counted pods, per node name. Every pod's cpu and memory figures were
/// read (and so validated), counted or not.
fn requests_per_node<'p>(
    pods: impl IntoIterator<Item = &'p PodUsage>,
) -> Result<HashMap<&'p str, Amount>, SnapshotError> {
    let mut per_node: HashMap<&str, Amount> = HashMap::new();
    for (i, pod) in pods.into_iter().enumerate() {
        let requests = match &pod.requests {
            Ok(requests) => *requests,
            Err(error) => {
                return Err(SnapshotError {
                    path: format!("snapshot.pods[{i}]{}", error.path),
                    message: error.message.clone(),
                });
            }
        };
        if pod.node_name.is_empty() || !pod.counted {
            continue;
        }
        let total = per_node.entry(&pod.node_name).or_default();
        *total = total.add(requests);
    }
    Ok(per_node)
}

fn counts_for_utilization(pod: &pb::Pod) -> bool {
    let phase = pod.status.as_ref().map_or("", |s| s.phase.as_str());
    if phase == "Succeeded" || phase == "Failed" {
        return false;
    }
    let Some(meta) = pod.metadata.as_ref() else {
        return true;
    };
    if meta.annotations.contains_key(MIRROR_ANNOTATION) {
        return false;
    }
    let daemonset = meta
        .owner_references
        .iter()
        .find(|owner| owner.controller == Some(true))
        .is_some_and(|owner| owner.kind == "DaemonSet");
    !daemonset
}

/// Kubernetes' `PodRequests` for cpu and memory (see the module documentation).
fn pod_requests(pod: &pb::Pod, at: &dyn Fn() -> String) -> Result<Amount, SnapshotError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Amount::default());
    };
    let mut containers = Amount::default();
    for (j, container) in spec.containers.iter().enumerate() {
        let requests = resource_requests(container.resources.as_ref(), &|| {
            format!("{}.spec.containers[{j}].resources", at())
        })?;
        containers = containers.add(requests.unwrap_or_default_amount());
    }
    let mut sidecars = Amount::default();
    let mut init_peak = Amount::default();
    for (j, container) in spec.init_containers.iter().enumerate() {
        let requests = resource_requests(container.resources.as_ref(), &|| {
            format!("{}.spec.initContainers[{j}].resources", at())
        })?
        .unwrap_or_default_amount();
        if container.restart_policy == "Always" {
            sidecars = sidecars.add(requests);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(sidecars.add(requests));
        }
    }
    let mut total = containers.add(sidecars).max(init_peak);

    let pod_level = resource_requests(spec.resources.as_ref(), &|| {
        format!("{}.spec.resources", at())
    })?;
    if let Some(cpu) = pod_level.cpu {
        total.cpu = cpu;
    }
    if let Some(memory) = pod_level.memory {
        total.memory = memory;
    }

    for (resource, text) in &spec.overhead {
        let slot = match resource.as_str() {
            "cpu" => &mut total.cpu,
            "memory" => &mut total.memory,
            _ => continue,
        };
        *slot += parse_quantity(text, || format!("{}.spec.overhead[{resource:?}]", at()))?;
    }
    Ok(total)
}

/// Requests of cpu and memory, `None` when neither requested nor limited.
#[derive(Debug, Clone, Copy, Default)]
struct Requested {
    cpu: Option<i128>,
    memory: Option<i128>,
}

impl Requested {
    fn unwrap_or_default_amount(self) -> Amount {
        Amount {
            cpu: self.cpu.unwrap_or(0),
            memory: self.memory.unwrap_or(0),
        }
    }
}

/// A resource with a limit and no request requests its limit, as the API server defaults it.
fn resource_requests(
    resources: Option<&pb::ResourceRequirements>,
    at: &dyn Fn() -> String,
) -> Result<Requested, SnapshotError> {
    let Some(resources) = resources else {
        return Ok(Requested::default());
    };
    let read = |resource: &'static str| -> Result<Option<i128>, SnapshotError> {
        if let Some(text) = resources.requests.get(resource) {
            return parse_quantity(text, || format!("{}.requests[{resource:?}]", at())).map(Some);
        }
        if let Some(text) = resources.limits.get(resource) {
            return parse_quantity(text, || format!("{}.limits[{resource:?}]", at())).map(Some);
        }
        Ok(None)
    };
    Ok(Requested {
        cpu: read("cpu")?,
        memory: read("memory")?,
    })
}

fn parse_quantity(text: &str, at: impl Fn() -> String) -> Result<i128, SnapshotError> {
    Quantity::parse(text)
        .map(Quantity::nanos)
        .map_err(|error| SnapshotError {
            path: at(),
            message: format!("invalid quantity {text:?}: {error}"),
        })
}

#[cfg(test)]
mod tests;
