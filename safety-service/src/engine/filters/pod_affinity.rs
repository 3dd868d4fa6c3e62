//! InterPodAffinity: the incoming pod's required affinity (with the first-pod rule) and
//! anti-affinity, and the required anti-affinity of pods already placed against the newcomer.

use rustc_hash::FxHashMap;

use crate::engine::EngineError;
use crate::engine::labels::{Interner, Labels, Selector, Sym, SymMap};
use crate::engine::snapshot::{Index, PodId, PodInfo};
use crate::engine::state::ClusterState;
use crate::engine::view::{self, w};

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// A compiled required `PodAffinityTerm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityTerm {
    pub selector: Selector,
    /// Sorted; the pod's own namespace when neither namespaces nor a selector are given.
    namespaces: Vec<Sym>,
    namespace_selector: Selector,
    pub topology_key: Sym,
}

impl AffinityTerm {
    /// Compiles the required affinity and anti-affinity terms of a pod, merging
    /// `matchLabelKeys`/`mismatchLabelKeys` into the label selector as the API server does.
    pub fn compile_pod<'a>(
        spec: &'a w::PodSpec,
        own_namespace: Sym,
        own_labels: &Labels,
        strings: &mut Interner<'a>,
        path: &dyn Fn() -> String,
    ) -> Result<(Vec<AffinityTerm>, Vec<AffinityTerm>), EngineError> {
        let Some(affinity) = spec.affinity.as_ref() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut compile_all = |terms: &'a [w::PodAffinityTerm], field: &str| {
            let mut compiled = Vec::with_capacity(terms.len());
            for (i, term) in terms.iter().enumerate() {
                let at = || {
                    format!(
                        "{}.affinity.{field}.requiredDuringSchedulingIgnoredDuringExecution[{i}]",
                        path()
                    )
                };
                compiled.push(compile_term(term, own_namespace, own_labels, strings, &at)?);
            }
            Ok::<_, EngineError>(compiled)
        };
        let affinity_terms = match affinity.pod_affinity.as_ref() {
            Some(a) => compile_all(
                &a.required_during_scheduling_ignored_during_execution,
                "podAffinity",
            )?,
            None => Vec::new(),
        };
        let anti_terms = match affinity.pod_anti_affinity.as_ref() {
            Some(a) => compile_all(
                &a.required_during_scheduling_ignored_during_execution,
                "podAntiAffinity",
            )?,
            None => Vec::new(),
        };
        Ok((affinity_terms, anti_terms))
    }

    /// Into another interner's symbols.
    pub fn remap(&mut self, map: &SymMap) {
        self.selector.remap(map);
        map.sorted(&mut self.namespaces);
        self.namespace_selector.remap(map);
        self.topology_key = map.sym(self.topology_key);
    }

    /// The pods this term may match: those of its namespaces, or every pod when a namespace
    /// selector widens it.
    pub fn candidates<'i>(&'i self, index: &'i Index<'_>) -> Box<dyn Iterator<Item = PodId> + 'i> {
        if self.selector == Selector::Nothing {
            Box::new(std::iter::empty())
        } else if self.namespace_selector == Selector::Nothing {
            Box::new(index.pods_in(&self.namespaces))
        } else {
            Box::new(0..index.pods.len() as PodId)
        }
    }

    fn namespace_matches(&self, namespace: Sym, index: &Index<'_>, incoming: bool) -> bool {
        if self.namespaces.binary_search(&namespace).is_ok() {
            return true;
        }
        match index.namespace_labels.get(&namespace) {
            Some(labels) => self.namespace_selector.matches(labels),
            // The incoming pod's namespace selector is resolved against the namespaces that
            // exist; only `{}` (every namespace) reaches a namespace the snapshot lacks. An
            // existing pod's selector is evaluated against the newcomer's (empty) labels.
            None if incoming => self.namespace_selector.is_everything(),
            None => self.namespace_selector.matches(&Labels::default()),
        }
    }

    /// Does `pod` fall under this term? `incoming` tells whose term it is (see above).
    pub fn matches(&self, pod: &PodInfo<'_>, index: &Index<'_>, incoming: bool) -> bool {
        self.namespace_matches(pod.ns, index, incoming) && self.selector.matches(&pod.labels)
    }
}

fn compile_term<'a>(
    term: &'a w::PodAffinityTerm,
    own_namespace: Sym,
    own_labels: &Labels,
    strings: &mut Interner<'a>,
    path: &dyn Fn() -> String,
) -> Result<AffinityTerm, EngineError> {
    let topology_key = view::text(&term.topology_key, || format!("{}.topologyKey", path()))?;
    if topology_key.is_empty() {
        return Err(EngineError::invalid(
            format!("{}.topologyKey", path()),
            "topologyKey must not be empty",
        ));
    }
    let mut selector = Selector::compile(term.label_selector.as_ref(), strings, &|| {
        format!("{}.labelSelector", path())
    })?;
    for (keys, field, mismatch) in [
        (&term.match_label_keys, "matchLabelKeys", false),
        (&term.mismatch_label_keys, "mismatchLabelKeys", true),
    ] {
        for key in view::texts(keys, &|| format!("{}.{field}", path()))? {
            let key = strings.intern(key);
            if let Some(value) = own_labels.get(key) {
                selector.and_label(key, value, mismatch);
            }
        }
    }
    let namespace_selector = Selector::compile(term.namespace_selector.as_ref(), strings, &|| {
        format!("{}.namespaceSelector", path())
    })?;
    let mut namespaces: Vec<Sym> =
        if term.namespaces.is_empty() && term.namespace_selector.is_none() {
            vec![own_namespace]
        } else {
            view::texts(&term.namespaces, &|| format!("{}.namespaces", path()))?
                .into_iter()
                .map(|n| strings.intern(n))
                .collect()
        };
    namespaces.sort_unstable();
    namespaces.dedup();
    Ok(AffinityTerm {
        selector,
        namespaces,
        namespace_selector,
        topology_key: strings.intern(topology_key),
    })
}

type TopologyCounts = FxHashMap<(Sym, Sym), i64>;

/// The InterPodAffinity PreFilter result for one pod against the current state.
#[derive(Debug, Default)]
pub struct PreFilterState {
    affinity_counts: TopologyCounts,
    anti_affinity_counts: TopologyCounts,
    existing_anti_affinity_counts: TopologyCounts,
    /// The pod matches all of its own affinity terms (first-pod rule).
    matches_own_affinity: bool,
}

fn bump(counts: &mut TopologyCounts, labels: &Labels, key: Sym) {
    if let Some(value) = labels.get(key) {
        *counts.entry((key, value)).or_insert(0) += 1;
    }
}

pub fn prefilter(index: &Index<'_>, state: &ClusterState<'_>, pod_id: PodId) -> PreFilterState {
    let pod = index.pod(pod_id);
    let mut result = PreFilterState::default();

    for (other_id, term) in index.anti_affinity_terms_for(&pod.labels) {
        if other_id == pod_id {
            continue;
        }
        let Some(node) = state.pod_node[other_id as usize] else {
            continue;
        };
        let term = &index.pod(other_id).anti_affinity[term as usize];
        if term.matches(pod, index, false) {
            bump(
                &mut result.existing_anti_affinity_counts,
                &index.node(node).labels,
                term.topology_key,
            );
        }
    }

    if let Some(first) = pod.affinity.first() {
        result.matches_own_affinity = pod.affinity.iter().all(|t| t.matches(pod, index, true));
        for other_id in first.candidates(index) {
            if other_id == pod_id {
                continue;
            }
            let Some(node) = state.pod_node[other_id as usize] else {
                continue;
            };
            let other = index.pod(other_id);
            if pod.affinity.iter().all(|t| t.matches(other, index, true)) {
                let labels = &index.node(node).labels;
                for term in &pod.affinity {
                    bump(&mut result.affinity_counts, labels, term.topology_key);
                }
            }
        }
    }

    for term in &pod.anti_affinity {
        for other_id in term.candidates(index) {
            if other_id == pod_id {
                continue;
            }
            let Some(node) = state.pod_node[other_id as usize] else {
                continue;
            };
            if term.matches(index.pod(other_id), index, true) {
                bump(
                    &mut result.anti_affinity_counts,
                    &index.node(node).labels,
                    term.topology_key,
                );
            }
        }
    }
    result
}

/// The InterPodAffinity filter on a node with these labels.
pub fn check(
    pod: &PodInfo<'_>,
    prefilter: &PreFilterState,
    node_labels: &Labels,
) -> Option<&'static str> {
    if !pod.affinity.is_empty() {
        let mut pods_exist = true;
        for term in &pod.affinity {
            let Some(value) = node_labels.get(term.topology_key) else {
                return Some(REASON_AFFINITY); // every topology key must be on the node
            };
            if prefilter
                .affinity_counts
                .get(&(term.topology_key, value))
                .copied()
                .unwrap_or(0)
                <= 0
            {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself may go anywhere its keys exist.
        if !(pods_exist || prefilter.affinity_counts.is_empty() && prefilter.matches_own_affinity) {
            return Some(REASON_AFFINITY);
        }
    }
    for term in &pod.anti_affinity {
        if let Some(value) = node_labels.get(term.topology_key)
            && prefilter
                .anti_affinity_counts
                .get(&(term.topology_key, value))
                .copied()
                .unwrap_or(0)
                > 0
        {
            return Some(REASON_ANTI_AFFINITY);
        }
    }
    for (&(key, value), &count) in &prefilter.existing_anti_affinity_counts {
        if count > 0 && node_labels.get(key) == Some(value) {
            return Some(REASON_EXISTING_ANTI_AFFINITY);
        }
    }
    None
}
