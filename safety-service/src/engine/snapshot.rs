//! The snapshot index, built once per request: validated and compiled nodes, pods, budgets and
//! namespaces, with interned labels and a (label → pods) posting list for selector lookups.

use rustc_hash::FxHashMap;

use super::EngineError;
use super::filters::node_affinity::RequiredNodeAffinity;
use super::filters::node_ports::{self, HostPort};
use super::filters::pod_affinity::AffinityTerm;
use super::filters::resources::{self, Allocatable, Resources};
use super::filters::taints::{Taint, Toleration};
use super::filters::topology_spread::SpreadConstraint;
use super::labels::{Interner, Labels, Selector, Sym, SymMap};
use super::view::{self, w};

pub type NodeId = u32;
pub type PodId = u32;

const DEFAULT_NAMESPACE: &str = "default";
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

#[derive(Debug)]
pub struct NodeInfo<'a> {
    pub name: &'a str,
    pub labels: Labels,
    pub unschedulable: bool,
    pub taints: Vec<Taint<'a>>,
    pub has_unschedulable_taint: bool,
    pub allocatable: Allocatable<'a>,
    /// `Ready` condition absent or `True`.
    pub ready: bool,
    pub being_deleted: bool,
    pub source: &'a w::Node,
}

/// The controller owner of a pod, as far as drainability cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    None,
    DaemonSet,
    Other,
}

#[derive(Debug)]
pub struct PodInfo<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub ns: Sym,
    pub labels: Labels,
    pub annotations: &'a [w::StringPair],
    pub source: &'a w::Pod,
    /// The node `spec.nodeName` names, when it is in the snapshot.
    pub bound_to: Option<NodeId>,
    /// Phase Succeeded or Failed.
    pub finished: bool,
    pub terminating: bool,
    pub mirror: bool,
    pub controller: Controller,
    pub priority: i32,
    pub requests: Resources<'a>,
    pub host_ports: Vec<HostPort<'a>>,
    pub tolerations: Vec<Toleration<'a>>,
    pub node_affinity: RequiredNodeAffinity<'a>,
    pub affinity: Vec<AffinityTerm>,
    pub anti_affinity: Vec<AffinityTerm>,
    /// DoNotSchedule constraints only.
    pub spread: Vec<SpreadConstraint>,
}

impl PodInfo<'_> {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Bound to a node of the snapshot and not finished: the pod occupies that node.
    pub fn occupies(&self) -> Option<NodeId> {
        if self.finished { None } else { self.bound_to }
    }
}

#[derive(Debug)]
pub struct PdbInfo<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub ns: Sym,
    pub selector: Selector,
    pub disruptions_allowed: i64,
}

impl PdbInfo<'_> {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Everything a simulation reads, borrowed from the request.
#[derive(Debug)]
pub struct Index<'a> {
    pub strings: Interner<'a>,
    /// In name order: the order in which nodes are tried.
    pub nodes: Vec<NodeInfo<'a>>,
    node_ids: FxHashMap<&'a str, NodeId>,
    pub pods: Vec<PodInfo<'a>>,
    pod_ids: FxHashMap<(&'a str, &'a str), PodId>,
    /// The pod asked about by FindSchedulableNode, when there is one (it is the last pod).
    pub question: Option<PodId>,
    pub namespace_labels: FxHashMap<Sym, Labels>,
    pub pdbs: Vec<PdbInfo<'a>>,
    pdbs_by_namespace: FxHashMap<Sym, Vec<u32>>,
    pods_by_namespace: FxHashMap<Sym, Vec<PodId>>,
    /// Required anti-affinity terms of every pod (they can reject newcomers), as (pod, term),
    /// filed under their most selective `In` label so a newcomer only meets the terms that can
    /// match it; terms without such a label are in `unanchored_anti_affinity`.
    anti_affinity_by_label: FxHashMap<(Sym, Sym), Vec<(PodId, u32)>>,
    unanchored_anti_affinity: Vec<(PodId, u32)>,
    /// Finished pods per bound node (they are listed as skipped, and occupy nothing).
    pub finished_on: Vec<Vec<PodId>>,
    pub hostname_key: Option<Sym>,
}

impl<'a> Index<'a> {
    /// Validates and indexes a snapshot.
    pub fn build(snapshot: &'a w::ClusterSnapshot) -> Result<Index<'a>, EngineError> {
        Self::build_with_question(snapshot, None)
    }

    /// Also compiles the FindSchedulableNode pod, which becomes the last pod of the index.
    pub fn build_with_question(
        snapshot: &'a w::ClusterSnapshot,
        question: Option<&'a w::Pod>,
    ) -> Result<Index<'a>, EngineError> {
        let mut strings = Interner::default();

        let mut order: Vec<usize> = (0..snapshot.nodes.len()).collect();
        let node_name = |i: usize| {
            snapshot.nodes[i]
                .metadata
                .as_ref()
                .map_or(&[][..], |m| m.name.as_ref())
        };
        order.sort_unstable_by(|&a, &b| node_name(a).cmp(node_name(b)));
        let mut nodes = Vec::with_capacity(order.len());
        let mut node_ids = FxHashMap::default();
        node_ids.reserve(order.len());
        for i in order {
            let node = compile_node(&snapshot.nodes[i], i, &mut strings)?;
            if node_ids.insert(node.name, nodes.len() as NodeId).is_some() {
                return Err(EngineError::invalid(
                    format!("snapshot.nodes[{i}].metadata.name"),
                    format!("duplicate node name {:?}", node.name),
                ));
            }
            nodes.push(node);
        }

        let mut namespace_labels = FxHashMap::default();
        for (i, namespace) in snapshot.namespaces.iter().enumerate() {
            let meta = namespace.metadata.as_ref();
            let at = || format!("snapshot.namespaces[{i}].metadata");
            let name = name_of(meta, &at)?;
            if name.is_empty() {
                return Err(EngineError::invalid(
                    format!("snapshot.namespaces[{i}].metadata.name"),
                    "namespace name must not be empty",
                ));
            }
            let labels = labels_of(meta, &mut strings, &at)?;
            namespace_labels.insert(strings.intern(name), labels);
        }

        let mut pods = compile_pods(&snapshot.pods, &node_ids, &mut strings, cpus())?;
        let mut pod_ids = FxHashMap::default();
        pod_ids.reserve(pods.len());
        for (i, info) in pods.iter().enumerate() {
            if pod_ids
                .insert((info.namespace, info.name), i as PodId)
                .is_some()
            {
                return Err(EngineError::invalid(
                    format!("snapshot.pods[{i}].metadata.name"),
                    format!("duplicate pod {}", info.key()),
                ));
            }
        }
        let question = match question {
            Some(pod) => {
                let mut info = compile_pod(pod, &|| "pod".to_string(), &node_ids, &mut strings)?;
                // The pod is new: where it says it runs does not count.
                info.bound_to = None;
                pods.push(info);
                Some((pods.len() - 1) as PodId)
            }
            None => None,
        };

        let mut pdbs = Vec::with_capacity(snapshot.pod_disruption_budgets.len());
        let mut pdbs_by_namespace: FxHashMap<Sym, Vec<u32>> = FxHashMap::default();
        for (i, pdb) in snapshot.pod_disruption_budgets.iter().enumerate() {
            let meta = pdb.metadata.as_ref();
            let at = || format!("snapshot.podDisruptionBudgets[{i}].metadata");
            let name = name_of(meta, &at)?;
            if name.is_empty() {
                return Err(EngineError::invalid(
                    format!("snapshot.podDisruptionBudgets[{i}].metadata.name"),
                    "PodDisruptionBudget name must not be empty",
                ));
            }
            let namespace = namespace_of(meta, &at)?;
            let selector = Selector::compile(
                pdb.spec.as_ref().and_then(|s| s.selector.as_ref()),
                &mut strings,
                &|| format!("snapshot.podDisruptionBudgets[{i}].spec.selector"),
            )?;
            let ns = strings.intern(namespace);
            pdbs_by_namespace
                .entry(ns)
                .or_default()
                .push(pdbs.len() as u32);
            pdbs.push(PdbInfo {
                namespace,
                name,
                ns,
                selector,
                disruptions_allowed: i64::from(
                    pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed),
                ),
            });
        }

        let mut pods_by_namespace: FxHashMap<Sym, Vec<PodId>> = FxHashMap::default();
        let mut anti_affinity_by_label: FxHashMap<(Sym, Sym), Vec<(PodId, u32)>> =
            FxHashMap::default();
        let mut unanchored_anti_affinity = Vec::new();
        let mut finished_on = vec![Vec::new(); nodes.len()];
        for (id, pod) in pods.iter().enumerate() {
            pods_by_namespace
                .entry(pod.ns)
                .or_default()
                .push(id as PodId);
            for (t, term) in pod.anti_affinity.iter().enumerate() {
                let entry = (id as PodId, t as u32);
                match term.selector.anchor() {
                    Some((key, values)) => {
                        for &value in values {
                            anti_affinity_by_label
                                .entry((key, value))
                                .or_default()
                                .push(entry);
                        }
                    }
                    None if term.selector == Selector::Nothing => {}
                    None => unanchored_anti_affinity.push(entry),
                }
            }
            if let (true, Some(node)) = (pod.finished, pod.bound_to) {
                finished_on[node as usize].push(id as PodId);
            }
        }
        let hostname_key = strings.get("kubernetes.io/hostname");

        Ok(Index {
            strings,
            nodes,
            node_ids,
            pods,
            pod_ids,
            question,
            namespace_labels,
            pdbs,
            pdbs_by_namespace,
            pods_by_namespace,
            anti_affinity_by_label,
            unanchored_anti_affinity,
            finished_on,
            hostname_key,
        })
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_ids.get(name).copied()
    }

    pub fn node(&self, id: NodeId) -> &NodeInfo<'a> {
        &self.nodes[id as usize]
    }

    pub fn pod(&self, id: PodId) -> &PodInfo<'a> {
        &self.pods[id as usize]
    }

    pub fn pod_id(&self, namespace: &str, name: &str) -> Option<PodId> {
        self.pod_ids.get(&(namespace, name)).copied()
    }

    /// The budgets of the pod's namespace whose selector matches it.
    pub fn pdbs_matching(&self, pod: &PodInfo<'_>) -> Vec<u32> {
        self.pdbs_by_namespace
            .get(&pod.ns)
            .map_or_else(Vec::new, |ids| {
                ids.iter()
                    .copied()
                    .filter(|&id| self.pdbs[id as usize].selector.matches(&pod.labels))
                    .collect()
            })
    }

    /// The (pod, term) anti-affinity terms that may match a pod with these labels.
    pub fn anti_affinity_terms_for<'s>(
        &'s self,
        labels: &'s Labels,
    ) -> impl Iterator<Item = (PodId, u32)> + 's {
        labels
            .iter()
            .filter_map(|pair| self.anti_affinity_by_label.get(&pair))
            .flat_map(|entries| entries.iter().copied())
            .chain(self.unanchored_anti_affinity.iter().copied())
    }

    /// The pods of these namespaces (the only ones a namespaced selector can match).
    pub fn pods_in<'s>(&'s self, namespaces: &'s [Sym]) -> impl Iterator<Item = PodId> + 's {
        namespaces
            .iter()
            .filter_map(|ns| self.pods_by_namespace.get(ns))
            .flat_map(|ids| ids.iter().copied())
    }
}

fn compile_node<'a>(
    node: &'a w::Node,
    i: usize,
    strings: &mut Interner<'a>,
) -> Result<NodeInfo<'a>, EngineError> {
    let path = || format!("snapshot.nodes[{i}]");
    let meta = node.metadata.as_ref();
    let meta_path = || format!("{}.metadata", path());
    let name = name_of(meta, &meta_path)?;
    if name.is_empty() {
        return Err(EngineError::invalid(
            format!("{}.metadata.name", path()),
            "node name must not be empty",
        ));
    }
    let labels = labels_of(meta, strings, &meta_path)?;
    let spec = node.spec.as_ref();
    let mut taints = Vec::new();
    for (t, taint) in spec.map_or(&[][..], |s| &s.taints).iter().enumerate() {
        taints.push(Taint::compile(taint, &|| {
            format!("{}.spec.taints[{t}]", path())
        })?);
    }
    let has_unschedulable_taint = taints.contains(&Taint::UNSCHEDULABLE);
    let status = node.status.as_ref();
    let allocatable = match status {
        Some(status) => Allocatable::parse(&status.allocatable, &|| {
            format!("{}.status.allocatable", path())
        })?,
        None => Allocatable::default(),
    };
    let ready = status.is_none_or(|s| {
        s.conditions
            .iter()
            .find(|c| c.r#type.as_ref() == b"Ready")
            .is_none_or(|c| c.status.as_ref() == b"True")
    });
    Ok(NodeInfo {
        name,
        labels,
        unschedulable: spec.is_some_and(|s| s.unschedulable),
        taints,
        has_unschedulable_taint,
        allocatable,
        ready,
        being_deleted: meta.is_some_and(|m| !m.deletion_timestamp.is_empty()),
        source: node,
    })
}

/// The CPUs this process may use, asked once (on Linux the answer reads cgroup files).
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Below this many pods, a second thread costs more than it saves.
const PARALLEL_PODS: usize = 512;

/// Compiles every pod. A large snapshot is compiled on two threads, each taking half of the pods
/// with an interner of its own; the second half's symbols are then translated into the first's
/// (a few thousand distinct strings, against tens of thousands of pods), so the result is what
/// one thread would have built. Either way a pod's symbols are checked before its usage, and the
/// first failing pod (in snapshot order) is the error.
fn compile_pods<'a>(
    pods: &'a [w::Pod],
    node_ids: &FxHashMap<&'a str, NodeId>,
    strings: &mut Interner<'a>,
    threads: usize,
) -> Result<Vec<PodInfo<'a>>, EngineError> {
    let compile = |from: usize, to: usize, strings: &mut Interner<'a>| {
        // Room for every pod from `from` on (the second half is appended to the first) and for
        // the FindSchedulableNode pod, so nothing is moved again.
        let mut compiled = Vec::with_capacity(pods.len() - from + 1);
        for (i, pod) in pods.iter().enumerate().take(to).skip(from) {
            compiled.push(compile_pod(
                pod,
                &|| format!("snapshot.pods[{i}]"),
                node_ids,
                strings,
            )?);
        }
        Ok::<_, EngineError>(compiled)
    };
    let all = pods.len();
    if all < PARALLEL_PODS || threads < 2 {
        return compile(0, all, strings);
    }
    let half = all / 2;
    let (first, second) = std::thread::scope(|scope| {
        let second = std::thread::Builder::new()
            .name("compile-pods".to_owned())
            .spawn_scoped(scope, || {
                let mut own = Interner::default();
                compile(half, all, &mut own).map(|pods| (pods, own))
            });
        let first = compile(0, half, strings);
        let second = match second {
            // A panic on the other thread is a bug; say so rather than take the server down.
            Ok(thread) => Some(thread.join().unwrap_or_else(|_| {
                Err(EngineError::invalid(
                    "snapshot.pods",
                    "compiling the pods failed unexpectedly",
                ))
            })),
            // No thread to be had: this one does the second half too (below).
            Err(_) => None,
        };
        (first, second)
    });
    let mut compiled = first?;
    match second {
        Some(second) => {
            let (mut rest, theirs) = second?;
            let map = strings.absorb(&theirs);
            for pod in &mut rest {
                pod.remap(&map);
            }
            compiled.append(&mut rest);
        }
        None => compiled.append(&mut compile(half, all, strings)?),
    }
    Ok(compiled)
}

impl PodInfo<'_> {
    /// Into another interner's symbols.
    fn remap(&mut self, map: &SymMap) {
        self.ns = map.sym(self.ns);
        self.labels.remap(map);
        self.node_affinity.remap(map);
        for term in self.affinity.iter_mut().chain(&mut self.anti_affinity) {
            term.remap(map);
        }
        for constraint in &mut self.spread {
            constraint.remap(map);
        }
    }
}

/// Compiles a pod; its symbols (names, labels, selectors) are checked before its usage
/// (requests, ports, tolerations).
fn compile_pod<'a>(
    pod: &'a w::Pod,
    path: &dyn Fn() -> String,
    node_ids: &FxHashMap<&'a str, NodeId>,
    strings: &mut Interner<'a>,
) -> Result<PodInfo<'a>, EngineError> {
    let meta = pod.metadata.as_ref();
    let meta_path = || format!("{}.metadata", path());
    let name = name_of(meta, &meta_path)?;
    if name.is_empty() {
        return Err(EngineError::invalid(
            format!("{}.metadata.name", path()),
            "pod name must not be empty",
        ));
    }
    let namespace = namespace_of(meta, &meta_path)?;
    let ns = strings.intern(namespace);
    let labels = labels_of(meta, strings, &meta_path)?;
    let spec = spec_of(pod);
    let spec_path = || format!("{}.spec", path());
    let (affinity, anti_affinity) =
        AffinityTerm::compile_pod(spec, ns, &labels, strings, &spec_path)?;
    let spread = SpreadConstraint::compile_pod(spec, &labels, strings, &spec_path)?;
    let node_affinity = RequiredNodeAffinity::compile(spec, strings, &spec_path)?;

    let annotations = meta.map_or(&[][..], |m| &m.annotations);
    let phase = pod.status.as_ref().map_or(&[][..], |s| s.phase.as_ref());
    let controller = meta
        .and_then(|m| {
            m.owner_references
                .iter()
                .find(|o| o.controller == Some(true))
        })
        .map_or(Controller::None, |o| {
            if o.kind.as_ref() == b"DaemonSet" {
                Controller::DaemonSet
            } else {
                Controller::Other
            }
        });
    let mut tolerations = Vec::with_capacity(spec.tolerations.len());
    for (t, toleration) in spec.tolerations.iter().enumerate() {
        tolerations.push(Toleration::compile(toleration, &|| {
            format!("{}.tolerations[{t}]", spec_path())
        })?);
    }
    let node_name = view::text(&spec.node_name, || format!("{}.nodeName", spec_path()))?;
    Ok(PodInfo {
        namespace,
        name,
        ns,
        labels,
        annotations,
        source: pod,
        bound_to: node_ids.get(node_name).copied(),
        finished: matches!(phase, b"Succeeded" | b"Failed"),
        terminating: meta.is_some_and(|m| !m.deletion_timestamp.is_empty()),
        mirror: view::lookup(annotations, MIRROR_ANNOTATION).is_some(),
        controller,
        priority: spec.priority.unwrap_or(0),
        requests: resources::pod_requests(spec, &spec_path)?,
        host_ports: node_ports::host_ports(spec, &spec_path)?,
        tolerations,
        node_affinity,
        affinity,
        anti_affinity,
        spread,
    })
}

fn spec_of(pod: &w::Pod) -> &w::PodSpec {
    static EMPTY_SPEC: std::sync::OnceLock<w::PodSpec> = std::sync::OnceLock::new();
    pod.spec
        .as_ref()
        .unwrap_or_else(|| EMPTY_SPEC.get_or_init(Default::default))
}

fn name_of<'a>(
    meta: Option<&'a w::ObjectMeta>,
    path: &dyn Fn() -> String,
) -> Result<&'a str, EngineError> {
    meta.map_or(Ok(""), |m| {
        view::text(&m.name, || format!("{}.name", path()))
    })
}

/// The namespace of a namespaced object (`default` when unset, as the API server defaults it).
fn namespace_of<'a>(
    meta: Option<&'a w::ObjectMeta>,
    path: &dyn Fn() -> String,
) -> Result<&'a str, EngineError> {
    let namespace = meta.map_or(Ok(""), |m| {
        view::text(&m.namespace, || format!("{}.namespace", path()))
    })?;
    Ok(if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    })
}

fn labels_of<'a>(
    meta: Option<&'a w::ObjectMeta>,
    strings: &mut Interner<'a>,
    path: &dyn Fn() -> String,
) -> Result<Labels, EngineError> {
    meta.map_or(Ok(Labels::default()), |m| {
        Labels::from_pairs(&m.labels, strings, &|| format!("{}.labels", path()))
    })
}

/// The taints a node has in a simulation: a ghost carries the unschedulable taint too.
pub fn effective_taints<'n, 'a>(
    node: &'n NodeInfo<'a>,
    ghost: bool,
) -> impl Iterator<Item = &'n Taint<'a>> {
    let extra = (ghost && !node.has_unschedulable_taint).then_some(&Taint::UNSCHEDULABLE);
    node.taints.iter().chain(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{merge, pod, snapshot, view};
    use crate::synthetic::{ClusterShape, generate};

    fn node_ids(snapshot: &w::ClusterSnapshot) -> FxHashMap<&str, NodeId> {
        snapshot
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                Some((
                    std::str::from_utf8(&n.metadata.as_ref()?.name).ok()?,
                    i as NodeId,
                ))
            })
            .collect()
    }

    #[test]
    fn two_threads_compile_exactly_what_one_does() {
        let snapshot: w::ClusterSnapshot = view(&generate(&ClusterShape::medium()));
        assert!(snapshot.pods.len() >= PARALLEL_PODS);
        let ids = node_ids(&snapshot);
        let mut one = Interner::default();
        let mut two = Interner::default();
        let sequential = compile_pods(&snapshot.pods, &ids, &mut one, 1).expect("valid");
        let parallel = compile_pods(&snapshot.pods, &ids, &mut two, 2).expect("valid");
        assert_eq!(format!("{sequential:?}"), format!("{parallel:?}"));
        assert_eq!(format!("{one:?}"), format!("{two:?}"));
    }

    /// A pod with every part that holds symbols, in strings partly new to the first half.
    fn pod_with_every_symbol(i: usize) -> serde_json::Value {
        let term = |key: &str| {
            serde_json::json!({
                "labelSelector": {"matchExpressions": [
                    {"key": "app", "operator": "In", "values": ["zz-web", "aa-web", format!("v{i}")]},
                    {"key": "tier", "operator": "NotIn", "values": ["x", "a"]}]},
                "namespaces": ["zeta", "alpha", "myapp"],
                "namespaceSelector": {"matchLabels": {"team": "zz"},
                    "matchExpressions": [{"key": "env", "operator": "Exists"}]},
                "matchLabelKeys": ["release"],
                "mismatchLabelKeys": ["zz-track"],
                "topologyKey": key
            })
        };
        merge(
            pod("myapp", &format!("every-{i}"), "n1", "10m", "1Mi"),
            serde_json::json!({
                "metadata": {"labels": {"zz-track": "canary", "release": format!("r{}", i % 7),
                                        "aa-first": "yes", "app": "aa-web"}},
                "spec": {
                    "nodeSelector": {"zz-disk": "ssd", "aa-zone": "b"},
                    "affinity": {
                        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "zz-pool", "operator": "In", "values": ["zz", "mm", "aa"]},
                                {"key": "aa-pool", "operator": "NotIn", "values": ["q", "b"]},
                                {"key": "cores", "operator": "Gt", "values": ["2"]}]}]}},
                        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            term("topology.kubernetes.io/zone")]},
                        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            term("zz-rack")]}
                    },
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "zz-zone", "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "aa-web", "zz-track": "canary"}},
                        "matchLabelKeys": ["release"]}]
                }
            }),
        )
    }

    #[test]
    fn the_second_half_is_translated_into_the_first_halfs_symbols() {
        let mut pods: Vec<serde_json::Value> = (0..PARALLEL_PODS)
            .map(|i| pod("default", &format!("plain-{i}"), "n1", "10m", "1Mi"))
            .collect();
        pods.extend((0..PARALLEL_PODS).map(pod_with_every_symbol));
        let owned = snapshot(
            vec![crate::engine::tests::node("n1", "4", "8Gi")],
            pods,
            vec![],
        );
        let snapshot: w::ClusterSnapshot = view(&owned);
        let ids = node_ids(&snapshot);
        let mut one = Interner::default();
        let mut two = Interner::default();
        let sequential = compile_pods(&snapshot.pods, &ids, &mut one, 1).expect("valid");
        let parallel = compile_pods(&snapshot.pods, &ids, &mut two, 2).expect("valid");
        assert_eq!(sequential.len(), 2 * PARALLEL_PODS);
        assert_eq!(format!("{sequential:?}"), format!("{parallel:?}"));
        assert_eq!(format!("{one:?}"), format!("{two:?}"));
        // The translated pods still answer as compiled: their own spread selector matches them.
        let last = &parallel[2 * PARALLEL_PODS - 1];
        assert!(last.spread[0].selector.matches(&last.labels));
        assert_eq!(two.name(last.ns), "myapp");
    }

    fn add_bad_cpu_request(pod: &mut w::Pod) {
        let spec = pod.spec.as_mut().expect("a generated pod has a spec");
        spec.containers[0]
            .resources
            .get_or_insert_default()
            .requests
            .push(w::StringPair {
                key: prost::bytes::Bytes::from_static(b"cpu"),
                value: prost::bytes::Bytes::from_static(b"12x"),
            });
    }

    #[test]
    fn the_first_bad_pod_is_the_error_on_either_path() {
        let owned: w::ClusterSnapshot = view(&generate(&ClusterShape::medium()));
        let ids = node_ids(&owned);
        let mut snapshot = owned.clone();
        // pod 900: a bad label (the interning side); pod 700: a bad request (the other side).
        snapshot.pods[900]
            .metadata
            .as_mut()
            .expect("metadata")
            .labels
            .push(w::StringPair {
                key: prost::bytes::Bytes::from_static(b"\xff"),
                value: prost::bytes::Bytes::new(),
            });
        add_bad_cpu_request(&mut snapshot.pods[700]);
        for threads in [1, 2] {
            let error = compile_pods(&snapshot.pods, &ids, &mut Interner::default(), threads)
                .expect_err("pod 700 is bad");
            let EngineError::InvalidArgument { path, .. } = error else {
                panic!("want an invalid argument")
            };
            assert!(
                path.starts_with("snapshot.pods[700].spec.containers[0]"),
                "{path}"
            );
        }
        // Within one pod, its symbols are checked first.
        let mut snapshot = owned.clone();
        snapshot.pods[700].metadata.as_mut().expect("metadata").name = prost::bytes::Bytes::new();
        add_bad_cpu_request(&mut snapshot.pods[700]);
        for threads in [1, 2] {
            let error = compile_pods(&snapshot.pods, &ids, &mut Interner::default(), threads)
                .expect_err("pod 700 is bad");
            assert_eq!(
                error.to_string(),
                "snapshot.pods[700].metadata.name: pod name must not be empty"
            );
        }
    }
}
