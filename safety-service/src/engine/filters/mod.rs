//! The scheduling filters in kube-scheduler's order, with its plugin names and wording.
//!
//! [`prefilter`] runs once per pod against the current state (the PreFilter extension point);
//! [`filter`] then judges one node, returning the first failing plugin.

pub mod node_affinity;
pub mod node_ports;
pub mod pod_affinity;
pub mod resources;
pub mod taints;
pub mod topology_spread;

use std::borrow::Cow;

use super::snapshot::{Index, NodeId, PodId, PodInfo, effective_taints};
use super::state::ClusterState;
use taints::{Taint, tolerated};

/// Who rejected a node. The first nine are kube-scheduler's plugin names (and our NodeReady
/// rule); the rest are the pseudo-plugins of explanations and plan replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plugin {
    Excluded,
    RemovalPlan,
    NodeReady,
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    PodTopologySpread,
    InterPodAffinity,
}

impl Plugin {
    pub fn as_str(self) -> &'static str {
        match self {
            Plugin::Excluded => "Excluded",
            Plugin::RemovalPlan => "RemovalPlan",
            Plugin::NodeReady => "NodeReady",
            Plugin::NodeUnschedulable => "NodeUnschedulable",
            Plugin::NodeName => "NodeName",
            Plugin::TaintToleration => "TaintToleration",
            Plugin::NodeAffinity => "NodeAffinity",
            Plugin::NodePorts => "NodePorts",
            Plugin::NodeResourcesFit => "NodeResourcesFit",
            Plugin::PodTopologySpread => "PodTopologySpread",
            Plugin::InterPodAffinity => "InterPodAffinity",
        }
    }
}

/// Why one node cannot take the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection<'a> {
    pub plugin: Plugin,
    pub reason: Cow<'static, str>,
    /// The untolerated taint, for TaintToleration (explanations name it in full).
    pub taint: Option<Taint<'a>>,
}

impl<'a> Rejection<'a> {
    pub fn new(plugin: Plugin, reason: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            plugin,
            reason: reason.into(),
            taint: None,
        }
    }
}

const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NOT_READY: &str = "node(s) were not ready";
pub const REASON_BEING_DELETED: &str = "node(s) were being deleted";
pub const REASON_EXCLUDED: &str = "node excluded by the question";
pub const REASON_REMOVED_IN_PLAN: &str = "node(s) are removed earlier in this plan";

/// The per-pod PreFilter results.
#[derive(Debug)]
pub struct PreFiltered {
    pub pod: PodId,
    /// A PreFilter plugin rejected the pod outright: every node gets this verdict.
    pub rejection: Option<Rejection<'static>>,
    spread: topology_spread::PreFilterState,
    affinity: pod_affinity::PreFilterState,
}

pub fn prefilter(index: &Index<'_>, state: &ClusterState<'_>, pod_id: PodId) -> PreFiltered {
    let pod = index.pod(pod_id);
    if pod.node_affinity.conflict {
        return PreFiltered {
            pod: pod_id,
            rejection: Some(Rejection::new(
                Plugin::NodeAffinity,
                node_affinity::REASON_CONFLICT,
            )),
            spread: Default::default(),
            affinity: Default::default(),
        };
    }
    PreFiltered {
        pod: pod_id,
        rejection: None,
        spread: topology_spread::prefilter(index, state, pod_id),
        affinity: pod_affinity::prefilter(index, state, pod_id),
    }
}

/// Our own rule before the filters: nodes that are going away or not Ready take no pods.
pub fn destination_rejection(index: &Index<'_>, node_id: NodeId) -> Option<Rejection<'static>> {
    let node = index.node(node_id);
    if node.being_deleted {
        return Some(Rejection::new(Plugin::NodeReady, REASON_BEING_DELETED));
    }
    if !node.ready {
        return Some(Rejection::new(Plugin::NodeReady, REASON_NOT_READY));
    }
    None
}

/// PreFilter verdict, our destination rule, then the Filter plugins in order: the first failure.
pub fn filter<'a>(
    index: &Index<'a>,
    state: &ClusterState<'a>,
    prefiltered: &PreFiltered,
    node_id: NodeId,
) -> Option<Rejection<'a>> {
    if let Some(rejection) = &prefiltered.rejection {
        return Some(rejection.clone());
    }
    if let Some(rejection) = destination_rejection(index, node_id) {
        return Some(rejection);
    }
    let pod: &PodInfo<'a> = index.pod(prefiltered.pod);
    let node = index.node(node_id);
    let ghost = state.ghost[node_id as usize];

    if (node.unschedulable || ghost) && !tolerated(&pod.tolerations, &Taint::UNSCHEDULABLE) {
        return Some(Rejection::new(
            Plugin::NodeUnschedulable,
            REASON_UNSCHEDULABLE,
        ));
    }
    // NodeName never fails here: moved and questioned pods have no node name.
    if let Some(taint) = taints::first_untolerated(effective_taints(node, ghost), &pod.tolerations)
    {
        return Some(Rejection {
            plugin: Plugin::TaintToleration,
            reason: Cow::Owned(taints::untolerated_reason(taint)),
            taint: Some(*taint),
        });
    }
    if !pod
        .node_affinity
        .matches(&node.labels, node.name, &index.strings)
    {
        return Some(Rejection::new(Plugin::NodeAffinity, node_affinity::REASON));
    }
    if !pod.host_ports.is_empty() {
        let node_pods = &state.node_pods[node_id as usize];
        let taken = node_pods
            .iter()
            .flat_map(|&p| index.pod(p).host_ports.iter());
        let mut conflict = false;
        for used in taken {
            if pod
                .host_ports
                .iter()
                .any(|wanted| wanted.conflicts_with(used))
            {
                conflict = true;
                break;
            }
        }
        if conflict {
            return Some(Rejection::new(Plugin::NodePorts, node_ports::REASON));
        }
    }
    if let Some(reason) = resources::check(
        &pod.requests,
        &node.allocatable,
        &state.requested[node_id as usize],
        state.node_pods[node_id as usize].len(),
    ) {
        return Some(Rejection::new(Plugin::NodeResourcesFit, reason));
    }
    if let Some(reason) =
        topology_spread::check(&pod.spread, &pod.labels, &prefiltered.spread, &node.labels)
    {
        return Some(Rejection::new(Plugin::PodTopologySpread, reason));
    }
    if let Some(reason) = pod_affinity::check(pod, &prefiltered.affinity, &node.labels) {
        return Some(Rejection::new(Plugin::InterPodAffinity, reason));
    }
    None
}
