//! PodTopologySpread (DoNotSchedule constraints): maxSkew against the least loaded eligible
//! domain, minDomains, nodeAffinityPolicy, nodeTaintsPolicy and matchLabelKeys, as kube-scheduler
//! 1.28 evaluates them — including its keying of counts by (topology key, value), so that two
//! constraints on the same key share one count per domain (the last one evaluated wins).

use rustc_hash::FxHashMap;

use crate::engine::EngineError;
use crate::engine::filters::taints::first_untolerated;
use crate::engine::labels::{Interner, Labels, Selector, Sym, SymMap};
use crate::engine::snapshot::{Index, PodId, effective_taints};
use crate::engine::state::ClusterState;
use crate::engine::view::{self, w};

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: Sym,
    pub selector: Selector,
    pub min_domains: i64,
    pub honor_node_affinity: bool,
    pub honor_node_taints: bool,
}

impl SpreadConstraint {
    /// Into another interner's symbols.
    pub fn remap(&mut self, map: &SymMap) {
        self.topology_key = map.sym(self.topology_key);
        self.selector.remap(map);
    }

    /// The pod's DoNotSchedule constraints (ScheduleAnyway never filters), with `matchLabelKeys`
    /// merged into the selector.
    pub fn compile_pod<'a>(
        spec: &'a w::PodSpec,
        own_labels: &Labels,
        strings: &mut Interner<'a>,
        path: &dyn Fn() -> String,
    ) -> Result<Vec<SpreadConstraint>, EngineError> {
        let mut constraints = Vec::new();
        for (i, constraint) in spec.topology_spread_constraints.iter().enumerate() {
            let at = || format!("{}.topologySpreadConstraints[{i}]", path());
            let text = |bytes, field: &str| view::text(bytes, || format!("{}.{field}", at()));
            let do_not_schedule = match text(&constraint.when_unsatisfiable, "whenUnsatisfiable")? {
                "DoNotSchedule" => true,
                "ScheduleAnyway" => false,
                other => {
                    return Err(EngineError::invalid(
                        format!("{}.whenUnsatisfiable", at()),
                        format!("unknown value {other:?} (want DoNotSchedule or ScheduleAnyway)"),
                    ));
                }
            };
            if constraint.max_skew < 1 {
                return Err(EngineError::invalid(
                    format!("{}.maxSkew", at()),
                    format!("must be at least 1, got {}", constraint.max_skew),
                ));
            }
            let topology_key = text(&constraint.topology_key, "topologyKey")?;
            if topology_key.is_empty() {
                return Err(EngineError::invalid(
                    format!("{}.topologyKey", at()),
                    "topologyKey must not be empty",
                ));
            }
            let policy = |value: &str, field: &str, honor_by_default: bool| match value {
                "" => Ok(honor_by_default),
                "Honor" => Ok(true),
                "Ignore" => Ok(false),
                other => Err(EngineError::invalid(
                    format!("{}.{field}", at()),
                    format!("unknown policy {other:?} (want Honor or Ignore)"),
                )),
            };
            let honor_node_affinity = policy(
                text(&constraint.node_affinity_policy, "nodeAffinityPolicy")?,
                "nodeAffinityPolicy",
                true,
            )?;
            let honor_node_taints = policy(
                text(&constraint.node_taints_policy, "nodeTaintsPolicy")?,
                "nodeTaintsPolicy",
                false,
            )?;
            let mut selector =
                Selector::compile(constraint.label_selector.as_ref(), strings, &|| {
                    format!("{}.labelSelector", at())
                })?;
            for key in view::texts(&constraint.match_label_keys, &|| {
                format!("{}.matchLabelKeys", at())
            })? {
                let key = strings.intern(key);
                if let Some(value) = own_labels.get(key) {
                    selector.and_label(key, value, false);
                }
            }
            let min_domains = match constraint.min_domains {
                None => 1,
                Some(n) if n >= 1 => i64::from(n),
                Some(n) => {
                    return Err(EngineError::invalid(
                        format!("{}.minDomains", at()),
                        format!("must be at least 1, got {n}"),
                    ));
                }
            };
            if do_not_schedule {
                constraints.push(SpreadConstraint {
                    max_skew: i64::from(constraint.max_skew),
                    topology_key: strings.intern(topology_key),
                    selector,
                    min_domains,
                    honor_node_affinity,
                    honor_node_taints,
                });
            }
        }
        Ok(constraints)
    }
}

/// Matching pods per eligible domain, computed once per pod against the current state.
#[derive(Debug, Default)]
pub struct PreFilterState {
    pair_counts: FxHashMap<(Sym, Sym), i64>,
    /// Per topology key: (number of eligible domains, smallest count among them).
    domains: FxHashMap<Sym, (i64, i64)>,
}

pub fn prefilter(index: &Index<'_>, state: &ClusterState<'_>, pod_id: PodId) -> PreFilterState {
    let pod = index.pod(pod_id);
    let constraints = &pod.spread;
    let mut result = PreFilterState::default();
    if constraints.is_empty() {
        return result;
    }

    // Matching pods per node and constraint; the empty selector counts nothing, terminating pods
    // and pods of other namespaces are passed over.
    let mut per_node: FxHashMap<(u32, usize), i64> = FxHashMap::default();
    for (c, constraint) in constraints.iter().enumerate() {
        if constraint.selector.is_everything() {
            continue;
        }
        for other_id in index.pods_in(std::slice::from_ref(&pod.ns)) {
            if other_id == pod_id {
                continue;
            }
            let Some(node) = state.pod_node[other_id as usize] else {
                continue;
            };
            let other = index.pod(other_id);
            if other.terminating
                || other.ns != pod.ns
                || !constraint.selector.matches(&other.labels)
            {
                continue;
            }
            *per_node.entry((node, c)).or_insert(0) += 1;
        }
    }

    let mut node_pairs: Vec<((Sym, Sym), i64)> = Vec::with_capacity(constraints.len());
    for (node_id, node) in index.nodes.iter().enumerate() {
        if !constraints.iter().all(|c| node.labels.has(c.topology_key)) {
            continue;
        }
        let node_id = node_id as u32;
        node_pairs.clear();
        for (c, constraint) in constraints.iter().enumerate() {
            if constraint.honor_node_affinity
                && !pod
                    .node_affinity
                    .matches(&node.labels, node.name, &index.strings)
            {
                continue;
            }
            if constraint.honor_node_taints
                && first_untolerated(
                    effective_taints(node, state.ghost[node_id as usize]),
                    &pod.tolerations,
                )
                .is_some()
            {
                continue;
            }
            let Some(value) = node.labels.get(constraint.topology_key) else {
                continue;
            };
            let pair = (constraint.topology_key, value);
            let count = per_node.get(&(node_id, c)).copied().unwrap_or(0);
            match node_pairs.iter_mut().find(|(p, _)| *p == pair) {
                Some(entry) => entry.1 = count,
                None => node_pairs.push((pair, count)),
            }
        }
        for &(pair, count) in &node_pairs {
            *result.pair_counts.entry(pair).or_insert(0) += count;
        }
    }
    for (&(key, _), &count) in &result.pair_counts {
        let entry = result.domains.entry(key).or_insert((0, i64::MAX));
        entry.0 += 1;
        entry.1 = entry.1.min(count);
    }
    result
}

/// The PodTopologySpread filter on a node with these labels.
pub fn check(
    constraints: &[SpreadConstraint],
    own_labels: &Labels,
    prefilter: &PreFilterState,
    node_labels: &Labels,
) -> Option<&'static str> {
    for constraint in constraints {
        let Some(value) = node_labels.get(constraint.topology_key) else {
            return Some(REASON_MISSING_LABEL);
        };
        // No eligible domain at all for this key: kube-scheduler 1.28 skips the constraint.
        let Some(&(domains, smallest)) = prefilter.domains.get(&constraint.topology_key) else {
            continue;
        };
        let global_min = if domains < constraint.min_domains {
            0
        } else {
            smallest
        };
        let self_match = i64::from(constraint.selector.matches(own_labels));
        let matching = prefilter
            .pair_counts
            .get(&(constraint.topology_key, value))
            .copied()
            .unwrap_or(0);
        if matching + self_match - global_min > constraint.max_skew {
            return Some(REASON);
        }
    }
    None
}
