//! Explanations: per-node rejections, their summary, and the one sentence that names the pod and
//! the constraint that leaves it homeless.

use std::collections::BTreeMap;

use vpsie_proto::safety::v1 as pb;

use super::filters::{Plugin, Rejection, node_affinity, pod_affinity};
use super::snapshot::{Index, NodeId, PodInfo};

pub fn per_node(
    index: &Index<'_>,
    rejections: &[(NodeId, Rejection<'_>)],
) -> Vec<pb::NodeRejection> {
    rejections
        .iter()
        .map(|(node, r)| pb::NodeRejection {
            node_name: index.node(*node).name.to_string(),
            plugin: r.plugin.as_str().to_string(),
            reason: r.reason.to_string(),
        })
        .collect()
}

/// (plugin, reason) → node count, most common first, then in filter order.
pub fn summarize(rejections: &[(NodeId, Rejection<'_>)]) -> Vec<pb::RejectionSummary> {
    let mut counts: BTreeMap<(Plugin, &str), i32> = BTreeMap::new();
    for (_, r) in rejections {
        *counts.entry((r.plugin, r.reason.as_ref())).or_insert(0) += 1;
    }
    let mut summary: Vec<pb::RejectionSummary> = counts
        .into_iter()
        .map(|((plugin, reason), node_count)| pb::RejectionSummary {
            plugin: plugin.as_str().to_string(),
            reason: reason.to_string(),
            node_count,
        })
        .collect();
    summary.sort_by_key(|s| std::cmp::Reverse(s.node_count));
    summary
}

/// `pod ns/name cannot be rescheduled: <constraint>`.
pub fn homeless_message(
    index: &Index<'_>,
    pod: &PodInfo<'_>,
    rejections: &[(NodeId, Rejection<'_>)],
) -> String {
    format!(
        "pod {} cannot be rescheduled: {}",
        pod.key(),
        constraint_phrase(index, pod, rejections)
    )
}

fn constraint_phrase(
    index: &Index<'_>,
    pod: &PodInfo<'_>,
    rejections: &[(NodeId, Rejection<'_>)],
) -> String {
    let Some((_, first)) = rejections.first() else {
        return "no other node in the snapshot".to_string();
    };
    let single_plugin = rejections.iter().all(|(_, r)| r.plugin == first.plugin);
    let single_reason = single_plugin && rejections.iter().all(|(_, r)| r.reason == first.reason);
    if single_plugin {
        let specific = match first.plugin {
            Plugin::TaintToleration if single_reason => first.taint.map(|t| {
                let value = if t.value.is_empty() { String::new() } else { format!("={}", t.value) };
                format!("no node tolerates taint {}{value}:{}", t.key, t.effect.as_str())
            }),
            Plugin::NodeAffinity if first.reason == node_affinity::REASON_CONFLICT => {
                Some("its required node affinity names no node in every term (pod affinity terms conflict)".into())
            }
            Plugin::NodeAffinity => Some(node_affinity_phrase(index, pod)),
            Plugin::NodeUnschedulable => Some("every other node is cordoned (node(s) were unschedulable)".into()),
            Plugin::NodeReady => Some("no other node is ready".into()),
            Plugin::NodePorts => Some("every other node already uses its host ports".into()),
            Plugin::InterPodAffinity if single_reason => Some(affinity_phrase(index, pod, &first.reason)),
            Plugin::PodTopologySpread => Some("every node would violate its topology spread constraints".into()),
            _ => None,
        };
        if let Some(specific) = specific {
            return specific;
        }
    }
    // kube-scheduler's own summary: "0/N nodes are available: 2 Insufficient cpu, ...".
    let parts: Vec<String> = summarize(rejections)
        .into_iter()
        .map(|s| format!("{} {}", s.node_count, s.reason))
        .collect();
    format!(
        "0/{} nodes are available: {}",
        rejections.len(),
        parts.join(", ")
    )
}

fn node_affinity_phrase(index: &Index<'_>, pod: &PodInfo<'_>) -> String {
    let mut pairs: Vec<String> = pod
        .node_affinity
        .node_selector()
        .iter()
        .map(|&(k, v)| format!("{}={}", index.strings.name(k), index.strings.name(v)))
        .collect();
    pairs.sort();
    match (pairs.is_empty(), pod.node_affinity.has_required_terms()) {
        (false, false) => format!("no node matches nodeSelector {}", pairs.join(",")),
        (false, true) => format!(
            "no node matches nodeSelector {} and its required node affinity",
            pairs.join(",")
        ),
        _ => "no node matches its required node affinity".to_string(),
    }
}

fn affinity_phrase(index: &Index<'_>, pod: &PodInfo<'_>, reason: &str) -> String {
    let keys = |terms: &[pod_affinity::AffinityTerm]| {
        let mut keys: Vec<&str> = terms
            .iter()
            .map(|t| index.strings.name(t.topology_key))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.join(", ")
    };
    if reason == pod_affinity::REASON_ANTI_AFFINITY {
        format!(
            "every node violates its pod anti-affinity (topologyKey {})",
            keys(&pod.anti_affinity)
        )
    } else if reason == pod_affinity::REASON_AFFINITY {
        format!(
            "no node satisfies its pod affinity (topologyKey {})",
            keys(&pod.affinity)
        )
    } else {
        "the anti-affinity of pods already running excludes it from every node".to_string()
    }
}
