//! Deterministic synthetic cluster snapshots, for benchmarks and tests.
//!
//! [`generate`] builds a realistic [`pb::ClusterSnapshot`] from a [`ClusterShape`] and a seed: the
//! same shape always yields the same snapshot. The cluster looks like one a `kubectl get
//! nodes,pods,pdb,ns -A -o json` would return: several node groups over three zones (some tainted
//! for databases and GPUs, a few cordoned), a kube-proxy DaemonSet pod and some static (mirror) pods
//! per node, Deployments, StatefulSets, finished Job pods, a few bare pods, PodDisruptionBudgets,
//! and the usual mix of tolerations, node selectors, node affinity, pod (anti-)affinity, topology
//! spread constraints and host ports, with requests in the many quantity spellings found in the wild.
//!
//! Every pod is placed the way the scheduler could have placed it: requests never exceed a node's
//! allocatable resources, taints are tolerated, node selectors and required node affinity match
//! (except for a handful of pods whose node lost the selected label after they were scheduled),
//! required anti-affinity on the hostname and host ports are honoured, required pod affinity finds
//! its zone, and `DoNotSchedule` spread constraints respect their skew. Pods that find no node stay
//! `Pending` without a node name. Total requests are kept near [`ClusterShape::utilisation`] of the
//! allocatable CPU and memory, so that many nodes can be drained.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use vpsie_proto::safety::v1 as pb;

/// `kubernetes.io/hostname`.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// `topology.kubernetes.io/zone`.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// `topology.kubernetes.io/region`.
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
/// `node.kubernetes.io/instance-type`.
pub const LABEL_INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
/// `autoscaler.vpsie.com/nodegroup`.
pub const LABEL_NODEGROUP: &str = "autoscaler.vpsie.com/nodegroup";
/// `disktype`.
pub const LABEL_DISKTYPE: &str = "disktype";
/// The annotation that marks a mirror (static) pod.
pub const ANNOTATION_MIRROR: &str = "kubernetes.io/config.mirror";

const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
const SAFE_TO_EVICT_LOCAL_VOLUMES: &str =
    "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";

const REGION: &str = "us-east";
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const ALL_ZONES: u8 = 0b111;

/// The size and seed of a synthetic cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterShape {
    /// Number of nodes, named `node-00001`, `node-00002`, …
    pub nodes: usize,
    /// Number of pods, exactly, of every kind (DaemonSet, mirror, finished and pending included).
    pub pods: usize,
    /// The random seed: the same shape and seed give the same snapshot.
    pub seed: u64,
    /// Number of namespaces (system ones included); `None` draws 20–40.
    pub namespaces: Option<usize>,
    /// Target share of the allocatable CPU and memory requested by all pods together.
    pub utilisation: f64,
}

impl ClusterShape {
    /// A cluster of `nodes` nodes and `pods` pods with the default seed and 50% utilisation.
    pub fn new(nodes: usize, pods: usize) -> Self {
        ClusterShape {
            nodes,
            pods,
            seed: 0x5afe_c1a5_7e25_0001,
            namespaces: None,
            utilisation: 0.5,
        }
    }

    /// 100 nodes, 3,000 pods.
    pub fn medium() -> Self {
        Self::new(100, 3_000)
    }

    /// 5,000 nodes, 150,000 pods.
    pub fn large() -> Self {
        Self::new(5_000, 150_000)
    }

    /// The same shape with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl Default for ClusterShape {
    fn default() -> Self {
        Self::medium()
    }
}

/// Generates the snapshot of a cluster of the given shape.
pub fn generate(shape: &ClusterShape) -> pb::ClusterSnapshot {
    Generator::new(shape).run()
}

// ---------------------------------------------------------------------------------------------
// Static tables
// ---------------------------------------------------------------------------------------------

struct InstanceType {
    name: &'static str,
    /// (capacity, allocatable)
    cpu: (&'static str, &'static str),
    memory: (&'static str, &'static str),
    storage: (&'static str, &'static str),
    gpus: u32,
}

const STANDARD_4: InstanceType = InstanceType {
    name: "vpsie-standard-4c-16g",
    cpu: ("4", "3920m"),
    memory: ("16393520Ki", "15Gi"),
    storage: ("101445540Ki", "93492209510"),
    gpus: 0,
};
const STANDARD_8: InstanceType = InstanceType {
    name: "vpsie-standard-8c-32g",
    cpu: ("8", "7910m"),
    memory: ("35044532Ki", "32Gi"),
    storage: ("101445540Ki", "93492209510"),
    gpus: 0,
};
const COMPUTE_16: InstanceType = InstanceType {
    name: "vpsie-compute-16c-32g",
    cpu: ("16", "15890m"),
    memory: ("32863968Ki", "31457280Ki"),
    storage: ("203070420Ki", "187149698024"),
    gpus: 0,
};
const HIGHMEM_8: InstanceType = InstanceType {
    name: "vpsie-highmem-8c-64g",
    cpu: ("8", "7910m"),
    memory: ("65843464Ki", "65011712Ki"),
    storage: ("203070420Ki", "187149698024"),
    gpus: 0,
};
const GPU_8: InstanceType = InstanceType {
    name: "vpsie-gpu-8c-64g-2xa10",
    cpu: ("8", "7910m"),
    memory: ("65843464Ki", "60Gi"),
    storage: ("203070420Ki", "187149698024"),
    gpus: 2,
};

struct GroupDef {
    name: &'static str,
    itype: &'static InstanceType,
    taint: Option<(&'static str, &'static str)>,
    /// Share of the nodes (tainted groups: exact; the others: relative).
    share: f64,
}

const GROUP_GENERAL: usize = 0;
const GROUP_DB: usize = 2;
const GROUP_GPU: usize = 3;

/// The first four groups always exist; a cluster has 4–6 of them.
const GROUPS: [GroupDef; 6] = [
    GroupDef {
        name: "general",
        itype: &STANDARD_8,
        taint: None,
        share: 0.40,
    },
    GroupDef {
        name: "compute",
        itype: &COMPUTE_16,
        taint: None,
        share: 0.25,
    },
    GroupDef {
        name: "db",
        itype: &HIGHMEM_8,
        taint: Some(("dedicated", "db")),
        share: 0.06,
    },
    GroupDef {
        name: "gpu",
        itype: &GPU_8,
        taint: Some(("nvidia.com/gpu", "present")),
        share: 0.04,
    },
    GroupDef {
        name: "highmem",
        itype: &HIGHMEM_8,
        taint: None,
        share: 0.15,
    },
    GroupDef {
        name: "small",
        itype: &STANDARD_4,
        taint: None,
        share: 0.10,
    },
];

const DISKS: [&str; 3] = ["ssd", "hdd", "nvme"];

const CPU_MENU: [(u64, &[&str]); 16] = [
    (10, &["10m"]),
    (25, &["25m"]),
    (50, &["50m", "0.05"]),
    (100, &["100m", "0.1"]),
    (150, &["150m"]),
    (200, &["200m", "0.2"]),
    (250, &["250m", "0.25"]),
    (300, &["300m"]),
    (400, &["400m"]),
    (500, &["500m", "0.5"]),
    (750, &["750m"]),
    (1000, &["1", "1000m"]),
    (1500, &["1500m", "1.5"]),
    (2000, &["2", "2000m"]),
    (3000, &["3"]),
    (4000, &["4"]),
];

const MEMORY_MENU: [&str; 19] = [
    "32Mi", "64Mi", "100Mi", "128Mi", "200M", "256Mi", "384Mi", "500M", "512Mi", "768Mi", "1Gi",
    "1G", "1.5Gi", "2Gi", "3Gi", "4Gi", "6Gi", "8Gi", "12Gi",
];

const STORAGE_MENU: [&str; 4] = ["2k", "500M", "1Gi", "2G"];

const TEAMS: [&str; 18] = [
    "payments",
    "search",
    "checkout",
    "catalog",
    "identity",
    "billing",
    "analytics",
    "notifications",
    "media",
    "growth",
    "platform",
    "data",
    "ml",
    "orders",
    "inventory",
    "shipping",
    "reviews",
    "recs",
];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

const APP_WORDS: [&str; 30] = [
    "api",
    "web",
    "auth",
    "cart",
    "search",
    "orders",
    "catalog",
    "payments",
    "billing",
    "notify",
    "media",
    "profile",
    "reports",
    "ledger",
    "gateway",
    "inventory",
    "pricing",
    "reviews",
    "recs",
    "session",
    "shipping",
    "events",
    "feeds",
    "images",
    "mailer",
    "metrics",
    "scheduler",
    "tracker",
    "export",
    "import",
];
const APP_SUFFIXES: [&str; 12] = [
    "server",
    "worker",
    "api",
    "frontend",
    "consumer",
    "cron",
    "processor",
    "service",
    "proxy",
    "sync",
    "indexer",
    "renderer",
];
const STATEFUL_WORDS: [&str; 12] = [
    "postgres",
    "redis",
    "kafka",
    "zookeeper",
    "rabbitmq",
    "elasticsearch",
    "mongodb",
    "etcd",
    "nats",
    "clickhouse",
    "cassandra",
    "minio",
];
const TIERS: [&str; 5] = ["frontend", "backend", "api", "worker", "cache"];
const STATEFUL_TIERS: [&str; 3] = ["db", "cache", "queue"];

/// Kubernetes' `SafeEncodeString` alphabet, used for generated name suffixes.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

// ---------------------------------------------------------------------------------------------
// Quantities and resources
// ---------------------------------------------------------------------------------------------

/// Parses the quantity spellings this generator writes (decimal numbers with an optional `m`,
/// `k`, `M`, `G`, `T`, `Ki`, `Mi`, `Gi` or `Ti` suffix) into thousandths of the unit, rounded up.
fn milli(quantity: &str) -> u64 {
    let split = quantity
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1_000,
        "m" => 1,
        "k" => 1_000_000,
        "M" => 1_000_000_000,
        "G" => 1_000_000_000_000,
        "T" => 1_000_000_000_000_000,
        "Ki" => 1_000 << 10,
        "Mi" => 1_000 << 20,
        "Gi" => 1_000 << 30,
        "Ti" => 1_000 << 40,
        other => panic!("synthetic: unexpected quantity suffix {other:?}"),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits: u128 = format!("{whole}{fraction}")
        .parse()
        .unwrap_or_else(|_| panic!("synthetic: bad quantity {quantity:?}"));
    let scale = 10u128.pow(fraction.len() as u32);
    u64::try_from((digits * multiplier).div_ceil(scale)).expect("quantity fits in u64")
}

/// Resources, as the scheduler's fit filter counts them: cpu in millicores, memory and
/// ephemeral-storage in bytes, GPUs and pods as counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Res {
    cpu: i64,
    memory: i64,
    storage: i64,
    gpu: i64,
    pods: i64,
}

impl Res {
    fn from_map(map: &BTreeMap<String, String>) -> Res {
        let get = |key: &str| map.get(key).map_or(0, |q| milli(q));
        Res {
            cpu: get("cpu") as i64,
            memory: get("memory").div_ceil(1000) as i64,
            storage: get("ephemeral-storage").div_ceil(1000) as i64,
            gpu: (get("nvidia.com/gpu") / 1000) as i64,
            pods: (get("pods") / 1000) as i64,
        }
    }

    fn add(&mut self, other: &Res) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.storage += other.storage;
        self.gpu += other.gpu;
        self.pods += other.pods;
    }

    fn sub(&mut self, other: &Res) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.storage -= other.storage;
        self.gpu -= other.gpu;
        self.pods -= other.pods;
    }

    fn max(&mut self, other: &Res) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
        self.storage = self.storage.max(other.storage);
        self.gpu = self.gpu.max(other.gpu);
    }

    fn covers(&self, need: &Res) -> bool {
        self.cpu >= need.cpu
            && self.memory >= need.memory
            && self.storage >= need.storage
            && self.gpu >= need.gpu
            && self.pods >= need.pods
    }
}

/// What a pod asks of its node, as kube-scheduler computes it: the containers and sidecar init
/// containers together, or the largest regular init container plus the sidecars started before
/// it, whichever is larger, plus the pod overhead, plus one pod slot.
fn pod_request(spec: &pb::PodSpec) -> Res {
    let requests = |c: &pb::Container| {
        c.resources
            .as_ref()
            .map_or_else(Res::default, |r| Res::from_map(&r.requests))
    };
    let mut total = Res::default();
    for container in &spec.containers {
        total.add(&requests(container));
    }
    let mut sidecars = Res::default();
    let mut init_peak = Res::default();
    for init in &spec.init_containers {
        let request = requests(init);
        if init.restart_policy == "Always" {
            sidecars.add(&request);
        } else {
            let mut peak = sidecars;
            peak.add(&request);
            init_peak.max(&peak);
        }
    }
    total.add(&sidecars);
    total.max(&init_peak);
    total.add(&Res::from_map(&spec.overhead));
    total.pods = 1;
    total
}

// ---------------------------------------------------------------------------------------------
// Small builders
// ---------------------------------------------------------------------------------------------

fn map<const N: usize>(entries: [(&str, &str); N]) -> BTreeMap<String, String> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn container(name: &str, requests: BTreeMap<String, String>) -> pb::Container {
    pb::Container {
        name: name.to_owned(),
        resources: Some(pb::ResourceRequirements {
            requests,
            limits: BTreeMap::new(),
        }),
        ..Default::default()
    }
}

fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> pb::OwnerReference {
    pb::OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
    }
}

fn match_app(app: &str) -> pb::LabelSelector {
    pb::LabelSelector {
        match_labels: map([("app", app)]),
        match_expressions: Vec::new(),
    }
}

fn match_app_expression(app: &str) -> pb::LabelSelector {
    pb::LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![pb::LabelSelectorRequirement {
            key: "app".to_owned(),
            operator: "In".to_owned(),
            values: vec![app.to_owned()],
        }],
    }
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> pb::NodeSelectorRequirement {
    pb::NodeSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> pb::Toleration {
    pb::Toleration {
        key: key.to_owned(),
        operator: operator.to_owned(),
        value: value.to_owned(),
        effect: effect.to_owned(),
        toleration_seconds: None,
    }
}

fn tolerates(tolerations: &[pb::Toleration], key: &str, value: &str, effect: &str) -> bool {
    tolerations.iter().any(|t| {
        (t.effect.is_empty() || t.effect == effect)
            && if t.key.is_empty() {
                t.operator == "Exists"
            } else {
                t.key == key && (t.operator == "Exists" || t.value == value)
            }
    })
}

fn node_selector_matches(selector: &pb::NodeSelector, labels: &BTreeMap<String, String>) -> bool {
    selector.node_selector_terms.iter().any(|term| {
        !term.match_expressions.is_empty()
            && term.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    })
}

fn required_node_affinity(spec: &pb::PodSpec) -> Option<&pb::NodeSelector> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// Nodes that look alike to every static filter: same group, zone and disk type.
struct Class {
    group: usize,
    zone: u8,
    /// The nodes' labels, hostname left out.
    labels: BTreeMap<String, String>,
    nodes: Vec<u32>,
}

enum Workload {
    Deployment { hash: String, rs_uid: String },
    StatefulSet { uid: String },
}

/// Where the pods of an app must go, beyond the static filters.
#[derive(Clone, Copy, PartialEq)]
enum ZoneAffinity {
    None,
    /// Required pod affinity on the zone to the app's own pods.
    OwnApp,
    /// Required pod affinity on the zone to another app, present in these zones.
    Zones(u8),
}

struct Plan {
    namespace: String,
    name: String,
    workload: Workload,
    replicas: usize,
    template: pb::Pod,
    /// At most one replica per node (hostname anti-affinity or a host port).
    one_per_node: bool,
    /// Zone spread: (maxSkew, DoNotSchedule).
    spread: Option<(i32, bool)>,
    zone_affinity: ZoneAffinity,
    /// The node selector was written against a label the nodes no longer carry: placement
    /// ignores it.
    drifted_selector: bool,
    /// A PodDisruptionBudget with this many disruptions allowed.
    pdb: Option<i32>,
}

type Prng = Xoshiro256PlusPlus;

struct Generator<'s> {
    shape: &'s ClusterShape,
    rng: Prng,
    groups: usize,
    nodes: Vec<pb::Node>,
    node_zone: Vec<u8>,
    classes: Vec<Class>,
    free: Vec<Res>,
    namespaces: Vec<pb::Namespace>,
    /// Namespaces that host apps, with their weights.
    app_namespaces: Vec<(String, f64)>,
    pods: Vec<pb::Pod>,
    pdbs: Vec<pb::PodDisruptionBudget>,
    /// How many apps of each `namespace/base-name` there are, for unique names.
    app_names: HashMap<String, usize>,
    /// Apps with pods placed so far, per namespace, with the zones their pods are in.
    placed: HashMap<String, Vec<(String, u8)>>,
    next_host_port: i32,
    /// Mean cpu (millicores) and memory (bytes) of an app pod's main container.
    cpu_mean: f64,
    memory_mean: f64,
    cpu_menu: Vec<(u64, &'static [&'static str])>,
    memory_menu: Vec<(u64, &'static str)>,
}

impl<'s> Generator<'s> {
    fn new(shape: &'s ClusterShape) -> Self {
        let memory_menu = MEMORY_MENU.iter().map(|q| (milli(q) / 1000, *q)).collect();
        Generator {
            shape,
            rng: Prng::seed_from_u64(shape.seed),
            groups: 4,
            nodes: Vec::with_capacity(shape.nodes),
            node_zone: Vec::with_capacity(shape.nodes),
            classes: Vec::new(),
            free: Vec::with_capacity(shape.nodes),
            namespaces: Vec::new(),
            app_namespaces: Vec::new(),
            pods: Vec::with_capacity(shape.pods),
            pdbs: Vec::new(),
            app_names: HashMap::new(),
            placed: HashMap::new(),
            next_host_port: 30_000,
            cpu_mean: 100.0,
            memory_mean: 128.0 * 1024.0 * 1024.0,
            cpu_menu: CPU_MENU.to_vec(),
            memory_menu,
        }
    }

    fn run(mut self) -> pb::ClusterSnapshot {
        self.build_nodes();
        self.build_namespaces();
        let total = self.shape.pods;
        let nodes = self.nodes.len();

        // The per-node pods first, then the system and ingress apps, then the bulk of apps,
        // keeping room for the few bare pods and the finished Job pods.
        let finished = total / 100;
        let bare = if total >= 200 {
            (total / 2000).max(1)
        } else {
            0
        };
        self.daemonset_pods(nodes.min(total));
        let mirrors = ((nodes as f64 * 0.05).round() as usize).min(self.room(total));
        self.mirror_pods(mirrors);
        self.system_apps(total);
        self.ingress_app(total);

        let app_budget = self.room(total).saturating_sub(finished + bare);
        self.calibrate(app_budget);
        let target = self.pods.len() + app_budget;
        while self.pods.len() < target {
            let remaining = target - self.pods.len();
            let plan = self.random_app(remaining);
            self.emit(plan);
        }
        let bare = bare.min(self.room(total));
        self.bare_pods(bare);
        let finished = self.room(total);
        self.finished_pods(finished);

        // In `kubectl get` order. Pods are large: sort small keys, then move each pod once.
        let pods = {
            let mut namespaces: Vec<&str> = self
                .namespaces
                .iter()
                .map(|n| n.metadata.as_ref().unwrap().name.as_str())
                .collect();
            namespaces.sort_unstable();
            let mut keys: Vec<(usize, &str, usize)> = self
                .pods
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let (namespace, name) = key(p);
                    (namespaces.binary_search(&namespace).unwrap_or(0), name, i)
                })
                .collect();
            keys.sort_unstable();
            let order: Vec<usize> = keys.into_iter().map(|(_, _, i)| i).collect();
            let mut slots: Vec<Option<pb::Pod>> = self.pods.into_iter().map(Some).collect();
            order
                .into_iter()
                .map(|i| slots[i].take().expect("each pod once"))
                .collect::<Vec<_>>()
        };
        let mut pdbs = self.pdbs;
        pdbs.sort_unstable_by(|a, b| {
            let (a, b) = (a.metadata.as_ref().unwrap(), b.metadata.as_ref().unwrap());
            (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
        });
        let mut namespaces = self.namespaces;
        namespaces.sort_unstable_by(|a, b| {
            let (a, b) = (a.metadata.as_ref().unwrap(), b.metadata.as_ref().unwrap());
            a.name.cmp(&b.name)
        });
        return pb::ClusterSnapshot {
            nodes: self.nodes,
            pods,
            pod_disruption_budgets: pdbs,
            namespaces,
        };

        fn key(pod: &pb::Pod) -> (&str, &str) {
            let meta = pod.metadata.as_ref().unwrap();
            (&meta.namespace, &meta.name)
        }
    }

    fn room(&self, total: usize) -> usize {
        total.saturating_sub(self.pods.len())
    }

    // ---- randomness ----

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn uid(&mut self) -> String {
        let a: u64 = self.rng.random();
        let b: u64 = self.rng.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn suffix(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| NAME_ALPHABET[self.below(NAME_ALPHABET.len())] as char)
            .collect()
    }

    fn timestamp(&mut self, month_from: u32) -> String {
        let month = self.rng.random_range(month_from..=9);
        format!(
            "2025-{month:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.rng.random_range(1..=28u32),
            self.rng.random_range(0..24u32),
            self.rng.random_range(0..60u32),
            self.rng.random_range(0..60u32)
        )
    }

    fn meta(&mut self, namespace: &str, name: String) -> pb::ObjectMeta {
        pb::ObjectMeta {
            name,
            namespace: namespace.to_owned(),
            uid: self.uid(),
            creation_timestamp: self.timestamp(4),
            ..Default::default()
        }
    }

    fn cpu_spelling(&mut self, millis: f64) -> &'static str {
        let index = nearest(self.cpu_menu.iter().map(|(m, _)| *m), millis);
        let spellings = self.cpu_menu[index].1;
        self.pick(spellings)
    }

    fn memory_spelling(&self, bytes: f64) -> &'static str {
        self.memory_menu[nearest(self.memory_menu.iter().map(|(b, _)| *b), bytes)].1
    }

    /// An exponentially distributed sample with this mean.
    fn exponential(&mut self, mean: f64) -> f64 {
        let u: f64 = self.rng.random();
        -mean * (1.0 - u).ln()
    }

    // ---- nodes ----

    fn build_nodes(&mut self) {
        let n = self.shape.nodes;
        self.groups = self.rng.random_range(4..=6);
        let groups = self.groups;

        // Exact counts per group: the tainted ones by their share (at least one each in a
        // cluster of ten nodes or more), the rest split by relative share.
        let mut counts = vec![0usize; groups];
        for g in [GROUP_DB, GROUP_GPU] {
            let count = (GROUPS[g].share * n as f64).round() as usize;
            counts[g] = if n >= 10 { count.max(1) } else { 0 };
        }
        let rest = n - counts.iter().sum::<usize>();
        let untainted: Vec<usize> = (0..groups).filter(|g| GROUPS[*g].taint.is_none()).collect();
        let shares: f64 = untainted.iter().map(|g| GROUPS[*g].share).sum();
        for &g in &untainted {
            counts[g] = (rest as f64 * GROUPS[g].share / shares).floor() as usize;
        }
        counts[GROUP_GENERAL] += n - counts.iter().sum::<usize>();
        let mut assignment: Vec<usize> = counts
            .iter()
            .enumerate()
            .flat_map(|(g, c)| std::iter::repeat_n(g, *c))
            .collect();
        self.shuffle(&mut assignment);

        let cordoned: HashSet<usize> = {
            let mut indices: Vec<usize> = (0..n).collect();
            self.shuffle(&mut indices);
            indices.truncate((n as f64 * 0.02).round() as usize);
            indices.into_iter().collect()
        };

        let mut per_group = vec![0usize; groups];
        let mut class_index: HashMap<(usize, u8, usize), usize> = HashMap::new();
        for (i, &g) in assignment.iter().enumerate() {
            let group = &GROUPS[g];
            let zone = (per_group[g] % 3) as u8;
            per_group[g] += 1;
            let disk = if g == GROUP_DB {
                2
            } else {
                let r: f64 = self.rng.random();
                if r < 0.80 {
                    0
                } else if r < 0.92 {
                    1
                } else {
                    2
                }
            };
            let name = format!("node-{:05}", i + 1);
            let mut labels = map([
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "amd64"),
                (LABEL_ZONE, ZONES[zone as usize]),
                (LABEL_REGION, REGION),
                (LABEL_INSTANCE_TYPE, group.itype.name),
                (LABEL_NODEGROUP, group.name),
                (LABEL_DISKTYPE, DISKS[disk]),
            ]);
            let class = *class_index.entry((g, zone, disk)).or_insert_with(|| {
                self.classes.push(Class {
                    group: g,
                    zone,
                    labels: labels.clone(),
                    nodes: Vec::new(),
                });
                self.classes.len() - 1
            });
            self.classes[class].nodes.push(i as u32);
            labels.insert(LABEL_HOSTNAME.to_owned(), name.clone());

            let it = group.itype;
            let mut capacity = map([
                ("cpu", it.cpu.0),
                ("memory", it.memory.0),
                ("pods", "110"),
                ("ephemeral-storage", it.storage.0),
                ("hugepages-1Gi", "0"),
                ("hugepages-2Mi", "0"),
            ]);
            let mut allocatable = map([
                ("cpu", it.cpu.1),
                ("memory", it.memory.1),
                ("pods", "110"),
                ("ephemeral-storage", it.storage.1),
                ("hugepages-1Gi", "0"),
                ("hugepages-2Mi", "0"),
            ]);
            if it.gpus > 0 {
                capacity.insert("nvidia.com/gpu".to_owned(), it.gpus.to_string());
                allocatable.insert("nvidia.com/gpu".to_owned(), it.gpus.to_string());
            }
            self.free.push(Res::from_map(&allocatable));

            let mut taints = Vec::new();
            if let Some((key, value)) = group.taint {
                taints.push(pb::Taint {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    effect: "NoSchedule".to_owned(),
                    time_added: String::new(),
                });
            }
            let unschedulable = cordoned.contains(&i);
            if unschedulable {
                taints.push(pb::Taint {
                    key: "node.kubernetes.io/unschedulable".to_owned(),
                    value: String::new(),
                    effect: "NoSchedule".to_owned(),
                    time_added: self.timestamp(9),
                });
            }
            let uid = self.uid();
            let creation_timestamp = self.timestamp(1);
            let conditions = [
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False"),
                ("Ready", "True"),
            ]
            .into_iter()
            .map(|(t, s)| pb::NodeCondition {
                r#type: t.to_owned(),
                status: s.to_owned(),
            })
            .collect();
            self.nodes.push(pb::Node {
                metadata: Some(pb::ObjectMeta {
                    name,
                    uid: uid.clone(),
                    labels,
                    annotations: map([
                        ("node.alpha.kubernetes.io/ttl", "0"),
                        (
                            "volumes.kubernetes.io/controller-managed-attach-detach",
                            "true",
                        ),
                    ]),
                    creation_timestamp,
                    ..Default::default()
                }),
                spec: Some(pb::NodeSpec {
                    unschedulable,
                    taints,
                    provider_id: format!("vpsie://{uid}"),
                }),
                status: Some(pb::NodeStatus {
                    capacity,
                    allocatable,
                    conditions,
                }),
            });
            self.node_zone.push(zone);
        }
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.rng.random_range(0..=i);
            items.swap(i, j);
        }
    }

    // ---- namespaces ----

    fn build_namespaces(&mut self) {
        let count = match self.shape.namespaces {
            Some(count) => count,
            None => self.rng.random_range(20..=40),
        }
        .max(5);
        for name in ["kube-system", "default", "monitoring", "ingress-nginx"] {
            self.push_namespace(name, "platform", "prod");
        }
        self.app_namespaces
            .extend([("default".to_owned(), 0.1), ("monitoring".to_owned(), 0.4)]);
        let mut combos: Vec<(&str, &str)> = TEAMS
            .iter()
            .flat_map(|t| ENVS.iter().map(move |e| (*t, *e)))
            .collect();
        self.shuffle(&mut combos);
        for i in 0..count - 4 {
            let (team, env) = combos[i % combos.len()];
            let name = match i / combos.len() {
                0 => format!("{team}-{env}"),
                round => format!("{team}-{env}-{}", round + 1),
            };
            self.push_namespace(&name, team, env);
            // A few big namespaces and a long tail of small ones.
            let weight = 1.0 / ((i + 1) as f64).powf(0.8);
            self.app_namespaces.push((name, weight));
        }
    }

    fn push_namespace(&mut self, name: &str, team: &str, env: &str) {
        let mut meta = self.meta("", name.to_owned());
        meta.creation_timestamp = self.timestamp(1);
        meta.labels = map([
            ("kubernetes.io/metadata.name", name),
            ("team", team),
            ("env", env),
        ]);
        self.namespaces.push(pb::Namespace {
            metadata: Some(meta),
        });
    }

    fn pick_namespace(&mut self) -> String {
        let total: f64 = self.app_namespaces.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.random::<f64>() * total;
        for (name, weight) in &self.app_namespaces {
            if r < *weight {
                return name.clone();
            }
            r -= weight;
        }
        self.app_namespaces.last().unwrap().0.clone()
    }

    // ---- per-node pods ----

    fn pod(&mut self, meta: pb::ObjectMeta, spec: pb::PodSpec, phase: &str) -> pb::Pod {
        pb::Pod {
            metadata: Some(meta),
            spec: Some(spec),
            status: Some(pb::PodStatus {
                phase: phase.to_owned(),
            }),
        }
    }

    /// A `prefix-xxxxx` name not yet taken in the namespace.
    fn unique_pod_name(&mut self, taken: &mut HashSet<String>, prefix: &str) -> String {
        loop {
            let name = format!("{prefix}-{}", self.suffix(5));
            if taken.insert(name.clone()) {
                return name;
            }
        }
    }

    fn bind(&mut self, node: u32, spec: &mut pb::PodSpec) {
        let request = pod_request(spec);
        self.free[node as usize].sub(&request);
        spec.node_name = self.node_name(node).to_owned();
    }

    fn node_name(&self, node: u32) -> &str {
        &self.nodes[node as usize].metadata.as_ref().unwrap().name
    }

    fn daemonset_pods(&mut self, count: usize) {
        let ds_uid = self.uid();
        let revision = self.suffix(9);
        let mut taken = HashSet::new();
        for node in 0..count as u32 {
            let name = self.unique_pod_name(&mut taken, "kube-proxy");
            let mut meta = self.meta("kube-system", name);
            meta.labels = map([
                ("k8s-app", "kube-proxy"),
                ("controller-revision-hash", &revision),
                ("pod-template-generation", "1"),
            ]);
            meta.owner_references = vec![owner("apps/v1", "DaemonSet", "kube-proxy", &ds_uid)];
            let mut spec = pb::PodSpec {
                host_network: true,
                priority: Some(2_000_001_000),
                priority_class_name: "system-node-critical".to_owned(),
                tolerations: vec![toleration("", "Exists", "", "")],
                containers: vec![container("kube-proxy", map([("cpu", "100m")]))],
                volumes: vec![
                    host_path_volume("xtables-lock", "/run/xtables.lock", "FileOrCreate"),
                    host_path_volume("lib-modules", "/lib/modules", ""),
                ],
                ..Default::default()
            };
            self.bind(node, &mut spec);
            let pod = self.pod(meta, spec, "Running");
            self.pods.push(pod);
        }
    }

    fn mirror_pods(&mut self, count: usize) {
        let mut nodes: Vec<u32> = (0..self.nodes.len() as u32).collect();
        self.shuffle(&mut nodes);
        for &node in nodes.iter().take(count) {
            let node_name = self.node_name(node).to_owned();
            let node_uid = self.nodes[node as usize]
                .metadata
                .as_ref()
                .unwrap()
                .uid
                .clone();
            let hash = format!("{:032x}", self.rng.random::<u128>());
            let mut meta = self.meta("kube-system", format!("nginx-proxy-{node_name}"));
            meta.labels = map([("k8s-app", "kube-nginx")]);
            meta.annotations = map([
                (ANNOTATION_MIRROR, &hash),
                ("kubernetes.io/config.hash", &hash),
                ("kubernetes.io/config.source", "file"),
            ]);
            meta.owner_references = vec![owner("v1", "Node", &node_name, &node_uid)];
            let mut proxy = container("nginx-proxy", map([("cpu", "25m"), ("memory", "32M")]));
            proxy.ports = vec![pb::ContainerPort {
                name: "healthz".to_owned(),
                container_port: 8081,
                host_port: 8081,
                protocol: "TCP".to_owned(),
                host_ip: String::new(),
            }];
            let mut spec = pb::PodSpec {
                host_network: true,
                priority: Some(2_000_001_000),
                priority_class_name: "system-node-critical".to_owned(),
                tolerations: vec![toleration("", "Exists", "", "NoExecute")],
                containers: vec![proxy],
                ..Default::default()
            };
            self.bind(node, &mut spec);
            let pod = self.pod(meta, spec, "Running");
            self.pods.push(pod);
        }
    }

    // ---- apps ----

    /// A Deployment (or StatefulSet) plan with one container and the usual labels, and nothing
    /// else yet.
    fn base_plan(
        &mut self,
        namespace: &str,
        name: &str,
        tier: &str,
        stateful: bool,
        replicas: usize,
        containers: Vec<pb::Container>,
    ) -> Plan {
        let (workload, revision_label) = if stateful {
            let revision = format!("{name}-{}", self.suffix(10));
            let uid = self.uid();
            (
                Workload::StatefulSet { uid },
                ("controller-revision-hash", revision),
            )
        } else {
            let hash = self.suffix(10);
            let rs_uid = self.uid();
            (
                Workload::Deployment {
                    hash: hash.clone(),
                    rs_uid,
                },
                ("pod-template-hash", hash),
            )
        };
        let meta = pb::ObjectMeta {
            namespace: namespace.to_owned(),
            labels: map([
                ("app", name),
                ("tier", tier),
                (revision_label.0, &revision_label.1),
            ]),
            ..Default::default()
        };
        let template = pb::Pod {
            metadata: Some(meta),
            spec: Some(pb::PodSpec {
                containers,
                ..Default::default()
            }),
            status: None,
        };
        Plan {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            workload,
            replicas,
            template,
            one_per_node: false,
            spread: None,
            zone_affinity: ZoneAffinity::None,
            drifted_selector: false,
            pdb: None,
        }
    }

    fn system_apps(&mut self, total: usize) {
        let nodes = self.nodes.len();
        let cluster_critical = |plan: &mut Plan| {
            let spec = plan.template.spec.as_mut().unwrap();
            spec.priority = Some(2_000_000_000);
            spec.priority_class_name = "system-cluster-critical".to_owned();
            spec.tolerations = vec![toleration("CriticalAddonsOnly", "Exists", "", "")];
        };

        let replicas = (nodes / 64).clamp(2, 100).min(self.room(total));
        if replicas == 0 {
            return;
        }
        let mut coredns = container("coredns", map([("cpu", "100m"), ("memory", "70Mi")]));
        coredns.resources.as_mut().unwrap().limits = map([("memory", "170Mi")]);
        let mut plan = self.base_plan(
            "kube-system",
            "coredns",
            "dns",
            false,
            replicas,
            vec![coredns],
        );
        cluster_critical(&mut plan);
        plan.template.spec.as_mut().unwrap().affinity = Some(pb::Affinity {
            pod_anti_affinity: Some(pb::PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Vec::new(),
                preferred_during_scheduling_ignored_during_execution: vec![
                    pb::WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: Some(pb::PodAffinityTerm {
                            label_selector: Some(match_app("coredns")),
                            topology_key: LABEL_HOSTNAME.to_owned(),
                            ..Default::default()
                        }),
                    },
                ],
            }),
            ..Default::default()
        });
        plan.pdb = Some(1);
        self.emit(plan);

        let replicas = self.room(total).min(1);
        if replicas == 0 {
            return;
        }
        let metrics = container(
            "metrics-server",
            map([("cpu", "100m"), ("memory", "200Mi")]),
        );
        let mut plan = self.base_plan(
            "kube-system",
            "metrics-server",
            "monitoring",
            false,
            replicas,
            vec![metrics],
        );
        cluster_critical(&mut plan);
        self.emit(plan);

        let replicas = self.room(total).min(2);
        if replicas == 0 {
            return;
        }
        let containers = ["csi-provisioner", "csi-attacher", "vpsie-csi-plugin"]
            .into_iter()
            .map(|name| container(name, map([("cpu", "10m"), ("memory", "40Mi")])))
            .collect();
        let mut plan = self.base_plan(
            "kube-system",
            "vpsie-csi-controller",
            "storage",
            false,
            replicas,
            containers,
        );
        cluster_critical(&mut plan);
        plan.pdb = Some(1);
        self.emit(plan);
    }

    fn ingress_app(&mut self, total: usize) {
        let replicas = (2 + self.nodes.len() / 50).min(self.room(total));
        if self.nodes.len() < 3 || replicas == 0 {
            return;
        }
        let mut controller = container("controller", map([("cpu", "100m"), ("memory", "90Mi")]));
        controller.ports = [("http", 80), ("https", 443)]
            .into_iter()
            .map(|(name, port)| pb::ContainerPort {
                name: name.to_owned(),
                container_port: port,
                host_port: port,
                protocol: "TCP".to_owned(),
                host_ip: String::new(),
            })
            .collect();
        let mut plan = self.base_plan(
            "ingress-nginx",
            "ingress-nginx-controller",
            "ingress",
            false,
            replicas,
            vec![controller],
        );
        plan.template.spec.as_mut().unwrap().node_selector = map([("kubernetes.io/os", "linux")]);
        plan.one_per_node = true;
        plan.pdb = Some(1);
        self.emit(plan);
    }

    /// Sets the mean requests of the apps' main containers so that the whole cluster lands near
    /// the target utilisation.
    fn calibrate(&mut self, app_pods: usize) {
        if app_pods == 0 {
            return;
        }
        let mut allocatable = Res::default();
        for node in &self.nodes {
            allocatable.add(&Res::from_map(&node.status.as_ref().unwrap().allocatable));
        }
        let mut free = Res::default();
        for f in &self.free {
            free.add(f);
        }
        let used_cpu = (allocatable.cpu - free.cpu) as f64;
        let used_memory = (allocatable.memory - free.memory) as f64;
        let target = self.shape.utilisation.clamp(0.01, 0.95);
        // Sidecars, init containers and the rounding to common spellings add about a fifth.
        let share = 0.8 / app_pods as f64;
        self.cpu_mean = ((target * allocatable.cpu as f64 - used_cpu) * share).max(10.0);
        self.memory_mean =
            ((target * allocatable.memory as f64 - used_memory) * share).max(32.0 * 1048576.0);
    }

    fn unique_app_name(&mut self, namespace: &str, base: &str) -> String {
        let count = self
            .app_names
            .entry(format!("{namespace}/{base}"))
            .or_default();
        *count += 1;
        match *count {
            1 => base.to_owned(),
            n => format!("{base}-{n}"),
        }
    }

    fn random_app(&mut self, remaining: usize) -> Plan {
        let namespace = self.pick_namespace();
        let stateful = self.chance(0.10);
        let (base, tier, replicas) = if stateful {
            let base = self.pick(&STATEFUL_WORDS).to_owned();
            let replicas = self.pick(&[1usize, 3, 3, 3, 5]);
            (base, self.pick(&STATEFUL_TIERS), replicas)
        } else {
            let base = format!("{}-{}", self.pick(&APP_WORDS), self.pick(&APP_SUFFIXES));
            let r: f64 = self.rng.random();
            let replicas = if r < 0.15 {
                1
            } else if r < 0.40 {
                2
            } else if r < 0.65 {
                3
            } else if r < 0.85 {
                self.rng.random_range(4..=6)
            } else if r < 0.95 {
                self.rng.random_range(7..=12)
            } else {
                self.rng.random_range(13..=40)
            };
            (base, self.pick(&TIERS), replicas)
        };
        let name = self.unique_app_name(&namespace, &base);
        let replicas = replicas.min(remaining);

        // The main container, and perhaps sidecars, init containers and overhead.
        let mean = if stateful {
            2.0 * self.cpu_mean
        } else {
            self.cpu_mean
        };
        let cpu = self.exponential(mean).clamp(10.0, 4000.0);
        let memory_mean = if stateful {
            2.0 * self.memory_mean
        } else {
            self.memory_mean
        };
        let memory = self
            .exponential(memory_mean)
            .clamp(32.0 * 1048576.0, 12.0 * 1073741824.0);
        let cpu = self.cpu_spelling(cpu);
        let memory = self.memory_spelling(memory);
        let main_name = if stateful { base.as_str() } else { "app" };
        let mut main = container(main_name, map([("cpu", cpu), ("memory", memory)]));
        if self.chance(0.10) {
            let storage = self.pick(&STORAGE_MENU);
            main.resources
                .as_mut()
                .unwrap()
                .requests
                .insert("ephemeral-storage".to_owned(), storage.to_owned());
        }
        if self.chance(0.5) {
            let limits = &mut main.resources.as_mut().unwrap().limits;
            limits.insert("memory".to_owned(), memory.to_owned());
            if self.rng.random_bool(0.3) {
                limits.insert("cpu".to_owned(), cpu.to_owned());
            }
        }
        main.ports = vec![pb::ContainerPort {
            name: "http".to_owned(),
            container_port: 8080,
            ..Default::default()
        }];
        let mut containers = vec![main];
        if self.chance(0.20) {
            let (name, cpu, memory) = self.pick(&[
                ("istio-proxy", "100m", "128Mi"),
                ("log-shipper", "50m", "64Mi"),
                ("metrics-exporter", "0.05", "50Mi"),
            ]);
            containers.push(container(name, map([("cpu", cpu), ("memory", memory)])));
        }
        let mut plan = self.base_plan(&namespace, &name, tier, stateful, replicas, containers);
        let spec = plan.template.spec.as_mut().unwrap();
        if self.rng.random_bool(0.10) {
            spec.init_containers.push(container(
                "init-config",
                map([("cpu", "50m"), ("memory", "32Mi")]),
            ));
        }
        if self.rng.random_bool(0.03) {
            let mut proxy = container("linkerd-proxy", map([("cpu", "100m"), ("memory", "64Mi")]));
            proxy.restart_policy = "Always".to_owned();
            spec.init_containers.push(proxy);
        }
        if self.rng.random_bool(0.01) {
            spec.overhead = map([("cpu", "250m"), ("memory", "120Mi")]);
        }
        match self.rng.random::<f64>() {
            r if r < 0.05 => {
                spec.priority = Some(1000);
                spec.priority_class_name = "high-priority".to_owned();
            }
            r if r < 0.10 => {
                spec.priority = Some(-10);
                spec.priority_class_name = "best-effort".to_owned();
            }
            _ => {}
        }

        self.add_tolerations(&mut plan);
        self.add_node_selector(&mut plan);
        self.add_node_affinity(&mut plan);
        self.add_pod_affinity(&mut plan);
        self.add_spread(&mut plan);
        self.add_volumes_and_annotations(&mut plan);
        if self.chance(0.005) {
            let port = self.next_host_port;
            self.next_host_port += 1;
            let spec = plan.template.spec.as_mut().unwrap();
            spec.containers[0].ports.push(pb::ContainerPort {
                name: "node-port".to_owned(),
                container_port: 9000,
                host_port: port,
                protocol: if port % 5 == 0 { "UDP" } else { "TCP" }.to_owned(),
                host_ip: String::new(),
            });
            plan.one_per_node = true;
        }
        if self.chance(0.30) {
            let r: f64 = self.rng.random();
            // Mostly budgets of one or two; a few apps at their minimum already.
            let allowed = if r < 0.05 {
                0
            } else if r < 0.55 {
                1
            } else {
                2
            };
            plan.pdb = Some(allowed.min(plan.replicas as i32));
        }
        plan
    }

    fn add_tolerations(&mut self, plan: &mut Plan) {
        if !self.chance(0.30) {
            return;
        }
        let r: f64 = self.rng.random();
        let spec = plan.template.spec.as_mut().unwrap();
        if r < 0.40 {
            for key in [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            ] {
                let mut t = toleration(key, "Exists", "", "NoExecute");
                t.toleration_seconds = Some(300);
                spec.tolerations.push(t);
            }
        } else if r < 0.65 {
            spec.tolerations
                .push(toleration("dedicated", "Equal", "db", "NoSchedule"));
            if self.rng.random_bool(0.6) {
                spec.node_selector = map([(LABEL_NODEGROUP, "db")]);
            }
        } else if r < 0.75 {
            spec.tolerations
                .push(toleration("nvidia.com/gpu", "Exists", "", "NoSchedule"));
            if self.rng.random_bool(0.5) {
                plan.replicas = plan.replicas.min(2);
                let main = &mut spec.containers[0];
                let resources = main.resources.as_mut().unwrap();
                resources
                    .requests
                    .insert("nvidia.com/gpu".to_owned(), "1".to_owned());
                resources
                    .limits
                    .insert("nvidia.com/gpu".to_owned(), "1".to_owned());
            }
        } else if r < 0.90 {
            spec.tolerations
                .push(toleration("CriticalAddonsOnly", "Exists", "", ""));
        } else {
            spec.tolerations.push(toleration("", "Exists", "", ""));
        }
    }

    fn add_node_selector(&mut self, plan: &mut Plan) {
        if !plan
            .template
            .spec
            .as_ref()
            .unwrap()
            .node_selector
            .is_empty()
            || !self.chance(0.17)
        {
            return;
        }
        let untainted: Vec<usize> = (0..self.groups)
            .filter(|g| GROUPS[*g].taint.is_none())
            .collect();
        let group = &GROUPS[self.pick(&untainted)];
        let zone = self.pick(&ZONES);
        let r: f64 = self.rng.random();
        let selector = if r < 0.35 {
            ("kubernetes.io/os", "linux")
        } else if r < 0.55 {
            (LABEL_DISKTYPE, "ssd")
        } else if r < 0.75 {
            (LABEL_NODEGROUP, group.name)
        } else if r < 0.85 {
            (LABEL_ZONE, zone)
        } else if r < 0.97 {
            (LABEL_INSTANCE_TYPE, group.itype.name)
        } else {
            // Written against a label that was taken off the nodes since.
            plan.drifted_selector = true;
            (LABEL_DISKTYPE, "optane")
        };
        plan.template.spec.as_mut().unwrap().node_selector = map([selector]);
    }

    fn add_node_affinity(&mut self, plan: &mut Plan) {
        if !self.chance(0.10) {
            return;
        }
        let zone = self.pick(&ZONES);
        let other = self.pick(&ZONES);
        let terms = match self.below(5) {
            0 => vec![vec![requirement(LABEL_ZONE, "In", &[zone, other])]],
            1 => vec![vec![requirement(
                LABEL_INSTANCE_TYPE,
                "NotIn",
                &[STANDARD_4.name],
            )]],
            2 => vec![vec![
                requirement(LABEL_DISKTYPE, "Exists", &[]),
                requirement(LABEL_DISKTYPE, "In", &["ssd", "nvme"]),
            ]],
            3 => vec![
                vec![requirement(LABEL_ZONE, "In", &[zone])],
                vec![requirement(LABEL_DISKTYPE, "In", &["nvme"])],
            ],
            _ => vec![vec![requirement(LABEL_ZONE, "NotIn", &[zone])]],
        };
        let preferred = if self.rng.random_bool(0.3) {
            vec![pb::PreferredSchedulingTerm {
                weight: 50,
                preference: Some(pb::NodeSelectorTerm {
                    match_expressions: vec![requirement(LABEL_DISKTYPE, "In", &["ssd"])],
                    match_fields: Vec::new(),
                }),
            }]
        } else {
            Vec::new()
        };
        let affinity = affinity_mut(plan);
        affinity.node_affinity = Some(pb::NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(pb::NodeSelector {
                node_selector_terms: terms
                    .into_iter()
                    .map(|match_expressions| pb::NodeSelectorTerm {
                        match_expressions,
                        match_fields: Vec::new(),
                    })
                    .collect(),
            }),
            preferred_during_scheduling_ignored_during_execution: preferred,
        });
    }

    fn add_pod_affinity(&mut self, plan: &mut Plan) {
        let stateful = matches!(plan.workload, Workload::StatefulSet { .. });
        if self.chance(if stateful { 0.4 } else { 0.11 }) {
            let selector = if self.rng.random_bool(0.3) {
                match_app_expression(&plan.name)
            } else {
                match_app(&plan.name)
            };
            let mut match_label_keys = Vec::new();
            if !stateful && self.rng.random_bool(0.2) {
                match_label_keys.push("pod-template-hash".to_owned());
            }
            let preferred = if self.rng.random_bool(0.2) {
                vec![pb::WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: Some(pb::PodAffinityTerm {
                        label_selector: Some(match_app(&plan.name)),
                        topology_key: LABEL_ZONE.to_owned(),
                        ..Default::default()
                    }),
                }]
            } else {
                Vec::new()
            };
            affinity_mut(plan).pod_anti_affinity = Some(pb::PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: vec![pb::PodAffinityTerm {
                    label_selector: Some(selector),
                    topology_key: LABEL_HOSTNAME.to_owned(),
                    match_label_keys,
                    ..Default::default()
                }],
                preferred_during_scheduling_ignored_during_execution: preferred,
            });
            plan.one_per_node = true;
        }

        if self.chance(0.05) {
            let placed = self.placed.get(&plan.namespace).map_or(0, Vec::len);
            let (target, zone_affinity) = if placed == 0 || self.rng.random_bool(0.3) {
                (plan.name.clone(), ZoneAffinity::OwnApp)
            } else {
                let pick = self.below(placed);
                let (name, mask) = self.placed[&plan.namespace][pick].clone();
                (name, ZoneAffinity::Zones(mask))
            };
            affinity_mut(plan).pod_affinity = Some(pb::PodAffinity {
                required_during_scheduling_ignored_during_execution: vec![pb::PodAffinityTerm {
                    label_selector: Some(match_app(&target)),
                    topology_key: LABEL_ZONE.to_owned(),
                    ..Default::default()
                }],
                preferred_during_scheduling_ignored_during_execution: Vec::new(),
            });
            plan.zone_affinity = zone_affinity;
        }
    }

    fn add_spread(&mut self, plan: &mut Plan) {
        if !self.chance(0.15) {
            return;
        }
        let max_skew = self.rng.random_range(1..=2);
        let hard = self.rng.random_bool(0.6);
        let mut match_label_keys = Vec::new();
        if matches!(plan.workload, Workload::Deployment { .. }) && self.rng.random_bool(0.3) {
            match_label_keys.push("pod-template-hash".to_owned());
        }
        let spec = plan.template.spec.as_mut().unwrap();
        spec.topology_spread_constraints
            .push(pb::TopologySpreadConstraint {
                max_skew,
                topology_key: LABEL_ZONE.to_owned(),
                when_unsatisfiable: if hard {
                    "DoNotSchedule"
                } else {
                    "ScheduleAnyway"
                }
                .to_owned(),
                label_selector: Some(match_app(&plan.name)),
                match_label_keys,
                ..Default::default()
            });
        if self.rng.random_bool(0.2) {
            spec.topology_spread_constraints
                .push(pb::TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: LABEL_HOSTNAME.to_owned(),
                    when_unsatisfiable: "ScheduleAnyway".to_owned(),
                    label_selector: Some(match_app(&plan.name)),
                    ..Default::default()
                });
        }
        plan.spread = Some((max_skew, hard));
    }

    fn add_volumes_and_annotations(&mut self, plan: &mut Plan) {
        let meta = plan.template.metadata.as_mut().unwrap();
        let spec = plan.template.spec.as_mut().unwrap();
        if self.rng.random_bool(0.08) {
            let r: f64 = self.rng.random();
            let (name, medium) = if r < 0.4 {
                ("cache", "Memory")
            } else if r < 0.9 {
                meta.annotations
                    .insert(SAFE_TO_EVICT_LOCAL_VOLUMES.to_owned(), "tmp".to_owned());
                ("tmp", "")
            } else {
                ("scratch", "")
            };
            spec.volumes.push(pb::Volume {
                name: name.to_owned(),
                empty_dir: Some(pb::EmptyDirVolumeSource {
                    medium: medium.to_owned(),
                    size_limit: if medium.is_empty() { "" } else { "256Mi" }.to_owned(),
                }),
                ..Default::default()
            });
        }
        match self.rng.random::<f64>() {
            r if r < 0.02 => {
                meta.annotations
                    .insert(SAFE_TO_EVICT.to_owned(), "true".to_owned());
            }
            r if r < 0.023 => {
                meta.annotations
                    .insert(SAFE_TO_EVICT.to_owned(), "false".to_owned());
            }
            _ => {}
        }
        if self.rng.random_bool(0.2) {
            meta.annotations
                .insert("prometheus.io/scrape".to_owned(), "true".to_owned());
            meta.annotations
                .insert("prometheus.io/port".to_owned(), "8080".to_owned());
        }
    }

    // ---- placement ----

    /// The classes whose nodes pass the pod's static filters: taints, node selector and required
    /// node affinity (the selector not if `ignore_selector`), and GPUs when it asks for some.
    fn candidate_classes(
        &self,
        spec: &pb::PodSpec,
        ignore_selector: bool,
        taints: bool,
    ) -> Vec<usize> {
        let wants_gpu = pod_request(spec).gpu > 0;
        let affinity = required_node_affinity(spec);
        (0..self.classes.len())
            .filter(|&c| {
                let class = &self.classes[c];
                let group = &GROUPS[class.group];
                let tolerated = !taints
                    || group
                        .taint
                        .is_none_or(|(k, v)| tolerates(&spec.tolerations, k, v, "NoSchedule"));
                let selected = (ignore_selector
                    || spec
                        .node_selector
                        .iter()
                        .all(|(k, v)| class.labels.get(k) == Some(v)))
                    && affinity.is_none_or(|a| node_selector_matches(a, &class.labels));
                tolerated && selected && (!wants_gpu || group.itype.gpus > 0)
            })
            .collect()
    }

    /// A node of the candidate classes in the zones of `zones` with room for `request` and not in
    /// `used`: a few random probes, then a scan from a random place.
    fn find_node(
        &mut self,
        candidates: &[usize],
        zones: u8,
        request: &Res,
        used: &HashSet<u32>,
    ) -> Option<u32> {
        let pool: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&c| zones & (1 << self.classes[c].zone) != 0)
            .collect();
        let total: usize = pool.iter().map(|&c| self.classes[c].nodes.len()).sum();
        if total == 0 {
            return None;
        }
        let fits =
            |g: &Self, node: u32| !used.contains(&node) && g.free[node as usize].covers(request);
        for _ in 0..16 {
            let mut r = self.below(total);
            for &c in &pool {
                let nodes = &self.classes[c].nodes;
                if r < nodes.len() {
                    if fits(self, nodes[r]) {
                        return Some(nodes[r]);
                    }
                    break;
                }
                r -= nodes.len();
            }
        }
        let first = self.below(pool.len());
        let offset = self.below(total);
        for j in 0..pool.len() {
            let nodes = &self.classes[pool[(first + j) % pool.len()]].nodes;
            for k in 0..nodes.len() {
                let node = nodes[(offset + k) % nodes.len()];
                if fits(self, node) {
                    return Some(node);
                }
            }
        }
        None
    }

    /// Places the plan's replicas, emits its pods and its PodDisruptionBudget.
    fn emit(&mut self, mut plan: Plan) {
        let spec = plan.template.spec.as_ref().unwrap();
        let mut candidates = self.candidate_classes(spec, plan.drifted_selector, true);
        if candidates.is_empty() {
            // Nothing matches in this (small) cluster: drop the node constraints.
            let spec = plan.template.spec.as_mut().unwrap();
            if !plan.drifted_selector {
                spec.node_selector.clear();
            }
            if let Some(affinity) = spec.affinity.as_mut() {
                affinity.node_affinity = None;
            }
            candidates = self.candidate_classes(spec, plan.drifted_selector, true);
        }
        let spec = plan.template.spec.as_ref().unwrap();
        // Spread domains: the zones of the nodes passing the node selector and affinity, taints
        // ignored (nodeTaintsPolicy Ignore).
        let domains = self
            .candidate_classes(spec, plan.drifted_selector, false)
            .iter()
            .fold(0u8, |m, &c| m | (1 << self.classes[c].zone));
        let request = pod_request(spec);

        let mut counts = [0usize; 3];
        let mut own_zones = 0u8;
        let mut used = HashSet::new();
        let mut placements = Vec::with_capacity(plan.replicas);
        for _ in 0..plan.replicas {
            let mut zones = match plan.zone_affinity {
                ZoneAffinity::None => ALL_ZONES,
                ZoneAffinity::OwnApp if own_zones == 0 => ALL_ZONES,
                ZoneAffinity::OwnApp => own_zones,
                ZoneAffinity::Zones(mask) => mask,
            };
            let mut preferred = zones;
            if let Some((max_skew, hard)) = plan.spread {
                let min = (0..3)
                    .filter(|z| domains & (1 << z) != 0)
                    .map(|z| counts[z])
                    .min()
                    .unwrap_or(0);
                let within = (0..3u8)
                    .filter(|&z| {
                        domains & (1 << z) != 0 && counts[z as usize] < min + max_skew as usize
                    })
                    .fold(0u8, |m, z| m | (1 << z));
                let least = (0..3u8)
                    .filter(|&z| domains & (1 << z) != 0 && counts[z as usize] == min)
                    .fold(0u8, |m, z| m | (1 << z));
                if hard {
                    zones &= within;
                }
                preferred = zones & least;
            }
            let mut node = None;
            if preferred != zones && preferred != 0 {
                node = self.find_node(&candidates, preferred, &request, &used);
            }
            if node.is_none() {
                node = self.find_node(&candidates, zones, &request, &used);
            }
            if let Some(n) = node {
                self.free[n as usize].sub(&request);
                let zone = self.node_zone[n as usize];
                counts[zone as usize] += 1;
                own_zones |= 1 << zone;
                if plan.one_per_node {
                    used.insert(n);
                }
            }
            placements.push(node);
        }
        if own_zones != 0 {
            self.placed
                .entry(plan.namespace.clone())
                .or_default()
                .push((plan.name.clone(), own_zones));
        }

        let mut taken = HashSet::new();
        for (i, node) in placements.into_iter().enumerate() {
            let mut pod = plan.template.clone();
            let meta = pod.metadata.as_mut().unwrap();
            let spec = pod.spec.as_mut().unwrap();
            let name = match &plan.workload {
                Workload::Deployment { hash, rs_uid } => {
                    let rs = format!("{}-{hash}", plan.name);
                    meta.owner_references = vec![owner("apps/v1", "ReplicaSet", &rs, rs_uid)];
                    self.unique_pod_name(&mut taken, &rs)
                }
                Workload::StatefulSet { uid, .. } => {
                    let name = format!("{}-{i}", plan.name);
                    meta.owner_references = vec![owner("apps/v1", "StatefulSet", &plan.name, uid)];
                    meta.labels.insert(
                        "statefulset.kubernetes.io/pod-name".to_owned(),
                        name.clone(),
                    );
                    spec.volumes.push(pb::Volume {
                        name: "data".to_owned(),
                        persistent_volume_claim: Some(pb::PersistentVolumeClaimVolumeSource {
                            claim_name: format!("data-{name}"),
                            read_only: false,
                        }),
                        ..Default::default()
                    });
                    name
                }
            };
            meta.name = name;
            meta.uid = self.uid();
            meta.creation_timestamp = self.timestamp(6);
            let phase = match node {
                Some(n) => {
                    spec.node_name = self.node_name(n).to_owned();
                    if self.rng.random_bool(0.002) {
                        meta.deletion_timestamp = self.timestamp(9);
                        meta.deletion_grace_period_seconds = Some(30);
                    }
                    "Running"
                }
                None => "Pending",
            };
            pod.status = Some(pb::PodStatus {
                phase: phase.to_owned(),
            });
            self.pods.push(pod);
        }

        if let Some(allowed) = plan.pdb {
            let mut meta = self.meta(&plan.namespace, format!("{}-pdb", plan.name));
            meta.labels = map([("app", &plan.name)]);
            let selector = if self.rng.random_bool(0.1) {
                match_app_expression(&plan.name)
            } else {
                match_app(&plan.name)
            };
            self.pdbs.push(pb::PodDisruptionBudget {
                metadata: Some(meta),
                spec: Some(pb::PodDisruptionBudgetSpec {
                    selector: Some(selector),
                }),
                status: Some(pb::PodDisruptionBudgetStatus {
                    disruptions_allowed: allowed,
                }),
            });
        }
    }

    // ---- odds and ends ----

    /// Pods somebody started by hand: no controller, so they block their node.
    fn bare_pods(&mut self, count: usize) {
        let candidates: Vec<usize> = (0..self.classes.len())
            .filter(|&c| GROUPS[self.classes[c].group].taint.is_none())
            .collect();
        let mut taken = HashSet::new();
        for _ in 0..count {
            let namespace = self.pick_namespace();
            let prefix = self.pick(&["debug-shell", "netshoot", "psql-client"]);
            let name = self.unique_pod_name(&mut taken, prefix);
            let mut meta = self.meta(&namespace, name);
            meta.labels = map([("run", prefix)]);
            let mut spec = pb::PodSpec {
                containers: vec![container(prefix, map([("cpu", "10m"), ("memory", "16Mi")]))],
                ..Default::default()
            };
            let request = pod_request(&spec);
            let phase = match self.find_node(&candidates, ALL_ZONES, &request, &HashSet::new()) {
                Some(node) => {
                    self.bind(node, &mut spec);
                    "Running"
                }
                None => "Pending",
            };
            let pod = self.pod(meta, spec, phase);
            self.pods.push(pod);
        }
    }

    /// Pods of CronJob runs that completed: bound, but they occupy nothing.
    fn finished_pods(&mut self, count: usize) {
        let mut taken = HashSet::new();
        for _ in 0..count {
            let namespace = self.pick_namespace();
            let job = format!(
                "{}-{}-{}",
                self.pick(&APP_WORDS),
                self.pick(&["report", "backup", "cleanup", "sync"]),
                self.rng.random_range(29_000_000..29_400_000u32)
            );
            let job_uid = self.uid();
            let name = self.unique_pod_name(&mut taken, &job);
            let mut meta = self.meta(&namespace, name);
            meta.labels = map([
                ("job-name", &job),
                ("batch.kubernetes.io/job-name", &job),
                ("batch.kubernetes.io/controller-uid", &job_uid),
            ]);
            meta.owner_references = vec![owner("batch/v1", "Job", &job, &job_uid)];
            let node_name = match self.nodes.len() {
                0 => String::new(),
                n => {
                    let node = self.below(n) as u32;
                    self.node_name(node).to_owned()
                }
            };
            let spec = pb::PodSpec {
                node_name,
                containers: vec![container(
                    "job",
                    map([("cpu", "200m"), ("memory", "256Mi")]),
                )],
                ..Default::default()
            };
            let pod = self.pod(meta, spec, "Succeeded");
            self.pods.push(pod);
        }
    }
}

fn affinity_mut(plan: &mut Plan) -> &mut pb::Affinity {
    plan.template
        .spec
        .as_mut()
        .unwrap()
        .affinity
        .get_or_insert_with(Default::default)
}

fn host_path_volume(name: &str, path: &str, kind: &str) -> pb::Volume {
    pb::Volume {
        name: name.to_owned(),
        host_path: Some(pb::HostPathVolumeSource {
            path: path.to_owned(),
            r#type: kind.to_owned(),
        }),
        ..Default::default()
    }
}

/// The index of the value closest to `x` on a logarithmic scale.
fn nearest(values: impl Iterator<Item = u64>, x: f64) -> usize {
    let target = x.max(1.0).ln();
    values
        .enumerate()
        .map(|(i, v)| (i, ((v as f64).ln() - target).abs()))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pod: &pb::Pod) -> &pb::ObjectMeta {
        pod.metadata.as_ref().unwrap()
    }

    fn spec(pod: &pb::Pod) -> &pb::PodSpec {
        pod.spec.as_ref().unwrap()
    }

    fn phase(pod: &pb::Pod) -> &str {
        &pod.status.as_ref().unwrap().phase
    }

    fn occupies(pod: &pb::Pod) -> bool {
        !spec(pod).node_name.is_empty() && !matches!(phase(pod), "Succeeded" | "Failed")
    }

    #[test]
    fn quantities_parse_as_kubernetes_does() {
        assert_eq!(milli("7910m"), 7910);
        assert_eq!(milli("0.5"), 500);
        assert_eq!(milli("0.05"), 50);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("2k"), 2_000_000);
        assert_eq!(milli("512Mi") / 1000, 512 << 20);
        assert_eq!(milli("1.5Gi") / 1000, 3 << 29);
        assert_eq!(milli("65011712Ki") / 1000, 65_011_712 << 10);
        assert_eq!(milli("200M") / 1000, 200_000_000);
        for (millis, spellings) in CPU_MENU {
            for spelling in spellings {
                assert_eq!(milli(spelling), millis, "{spelling}");
            }
        }
    }

    #[test]
    fn generation_is_deterministic_for_a_seed() {
        let shape = ClusterShape::new(40, 900).with_seed(7);
        let a = generate(&shape);
        assert_eq!(a, generate(&shape));
        assert_ne!(a, generate(&shape.clone().with_seed(8)));
    }

    #[test]
    fn tiny_shapes_keep_exact_counts() {
        for (nodes, pods) in [(0, 10), (1, 0), (3, 2), (5, 300), (2, 1_000)] {
            let snapshot = generate(&ClusterShape::new(nodes, pods));
            assert_eq!(snapshot.nodes.len(), nodes);
            assert_eq!(snapshot.pods.len(), pods, "{nodes} nodes");
        }
    }

    #[test]
    fn pods_never_exceed_allocatable_and_respect_their_constraints() {
        for shape in [
            ClusterShape::medium(),
            ClusterShape::new(12, 900).with_seed(3),
            ClusterShape::new(60, 2_500).with_seed(11),
        ] {
            let snapshot = generate(&shape);
            let nodes: HashMap<&str, &pb::Node> = snapshot
                .nodes
                .iter()
                .map(|n| (n.metadata.as_ref().unwrap().name.as_str(), n))
                .collect();
            let mut used: HashMap<&str, Res> = HashMap::new();
            let mut per_app_node: HashSet<(&str, &str, &str)> = HashSet::new();
            for pod in snapshot.pods.iter().filter(|p| occupies(p)) {
                let spec = spec(pod);
                let node = nodes[spec.node_name.as_str()];
                used.entry(&spec.node_name)
                    .or_default()
                    .add(&pod_request(spec));
                // Taints are tolerated (the cordon taint came after scheduling).
                for taint in &node.spec.as_ref().unwrap().taints {
                    if taint.key != "node.kubernetes.io/unschedulable" {
                        assert!(
                            tolerates(&spec.tolerations, &taint.key, &taint.value, &taint.effect),
                            "{} on {}",
                            meta(pod).name,
                            spec.node_name
                        );
                    }
                }
                // Node selectors match, but for the few drifted ones.
                let labels = &node.metadata.as_ref().unwrap().labels;
                for (k, v) in &spec.node_selector {
                    assert!(
                        labels.get(k) == Some(v) || v == "optane",
                        "{} {k}={v} {labels:?} {shape:?}",
                        meta(pod).name
                    );
                }
                if let Some(required) = required_node_affinity(spec) {
                    assert!(
                        node_selector_matches(required, labels),
                        "{}",
                        meta(pod).name
                    );
                }
                // Hostname anti-affinity: one pod of the app per node.
                let anti = spec
                    .affinity
                    .as_ref()
                    .and_then(|a| a.pod_anti_affinity.as_ref())
                    .is_some_and(|a| {
                        !a.required_during_scheduling_ignored_during_execution
                            .is_empty()
                    });
                if anti {
                    let app = meta(pod).labels["app"].as_str();
                    assert!(
                        per_app_node.insert((&meta(pod).namespace, app, &spec.node_name)),
                        "two {app} pods on {}",
                        spec.node_name
                    );
                }
            }
            for (name, node) in &nodes {
                let allocatable = Res::from_map(&node.status.as_ref().unwrap().allocatable);
                let used = used.get(name).copied().unwrap_or_default();
                assert!(
                    allocatable.covers(&used),
                    "{name}: {used:?} > {allocatable:?}"
                );
            }
        }
    }

    #[test]
    fn medium_has_the_right_counts_and_mix() {
        let snapshot = generate(&ClusterShape::medium());
        assert_eq!(snapshot.nodes.len(), 100);
        assert_eq!(snapshot.pods.len(), 3_000);
        assert_eq!(
            snapshot.nodes[0].metadata.as_ref().unwrap().name,
            "node-00001"
        );
        assert_eq!(
            snapshot.nodes[99].metadata.as_ref().unwrap().name,
            "node-00100"
        );
        assert!((20..=40).contains(&snapshot.namespaces.len()));
        let names: HashSet<(&str, &str)> = snapshot
            .pods
            .iter()
            .map(|p| (meta(p).namespace.as_str(), meta(p).name.as_str()))
            .collect();
        assert_eq!(names.len(), 3_000, "pod names are unique");

        let stats = Stats::of(&snapshot);
        println!("{stats:#?}");
        assert_eq!(stats.daemonset, 100);
        assert!(stats.mirror > 0 && stats.succeeded > 0 && stats.statefulset > 0);
        assert!(
            stats.tainted_nodes >= 8 && stats.tainted_nodes <= 12,
            "{stats:?}"
        );
        assert!(stats.gpu_nodes > 0 && stats.cordoned == 2);
        assert!((0.35..=0.65).contains(&stats.cpu_utilisation), "{stats:?}");
        let share = |n: usize| n as f64 / stats.app_pods as f64;
        assert!(
            (0.2..=0.4).contains(&share(stats.with_tolerations)),
            "{stats:?}"
        );
        assert!(
            (0.12..=0.3).contains(&share(stats.with_node_selector)),
            "{stats:?}"
        );
        assert!(
            (0.05..=0.16).contains(&share(stats.with_node_affinity)),
            "{stats:?}"
        );
        assert!(
            (0.08..=0.25).contains(&share(stats.with_anti_affinity)),
            "{stats:?}"
        );
        assert!(
            (0.01..=0.1).contains(&share(stats.with_pod_affinity)),
            "{stats:?}"
        );
        assert!(
            (0.08..=0.25).contains(&share(stats.with_spread)),
            "{stats:?}"
        );
        assert!(stats.pdbs > 0 && stats.with_host_ports > 0);
    }

    /// What a snapshot holds, printed by `medium_has_the_right_counts_and_mix --nocapture`.
    #[derive(Debug, Default)]
    #[allow(dead_code)] // some fields are only read through Debug
    struct Stats {
        nodes: usize,
        tainted_nodes: usize,
        gpu_nodes: usize,
        cordoned: usize,
        nodegroups: usize,
        namespaces: usize,
        pods: usize,
        daemonset: usize,
        mirror: usize,
        succeeded: usize,
        pending: usize,
        terminating: usize,
        bare: usize,
        deployment: usize,
        statefulset: usize,
        app_pods: usize,
        with_tolerations: usize,
        with_node_selector: usize,
        with_node_affinity: usize,
        with_anti_affinity: usize,
        with_pod_affinity: usize,
        with_spread: usize,
        with_spread_do_not_schedule: usize,
        with_host_ports: usize,
        with_empty_dir: usize,
        with_priority: usize,
        with_sidecar_init: usize,
        pdbs: usize,
        pdbs_with_zero_budget: usize,
        cpu_utilisation: f64,
        memory_utilisation: f64,
        max_node_cpu_utilisation: f64,
        min_node_cpu_utilisation: f64,
    }

    impl Stats {
        fn of(snapshot: &pb::ClusterSnapshot) -> Stats {
            let mut s = Stats {
                nodes: snapshot.nodes.len(),
                namespaces: snapshot.namespaces.len(),
                pods: snapshot.pods.len(),
                pdbs: snapshot.pod_disruption_budgets.len(),
                ..Default::default()
            };
            let mut groups = HashSet::new();
            let mut allocatable = Res::default();
            let mut per_node_alloc = HashMap::new();
            for node in &snapshot.nodes {
                let node_spec = node.spec.as_ref().unwrap();
                let status = node.status.as_ref().unwrap();
                let meta = node.metadata.as_ref().unwrap();
                groups.insert(meta.labels[LABEL_NODEGROUP].clone());
                s.tainted_nodes += node_spec
                    .taints
                    .iter()
                    .any(|t| t.key != "node.kubernetes.io/unschedulable")
                    as usize;
                s.gpu_nodes += status.allocatable.contains_key("nvidia.com/gpu") as usize;
                s.cordoned += node_spec.unschedulable as usize;
                let a = Res::from_map(&status.allocatable);
                allocatable.add(&a);
                per_node_alloc.insert(meta.name.as_str(), a);
            }
            s.nodegroups = groups.len();
            let mut used = Res::default();
            let mut per_node_used: HashMap<&str, Res> = HashMap::new();
            for pod in &snapshot.pods {
                let meta = meta(pod);
                let spec = spec(pod);
                if occupies(pod) {
                    let request = pod_request(spec);
                    used.add(&request);
                    per_node_used
                        .entry(&spec.node_name)
                        .or_default()
                        .add(&request);
                }
                let kind = meta.owner_references.first().map(|o| o.kind.as_str());
                match kind {
                    Some("DaemonSet") => s.daemonset += 1,
                    Some("ReplicaSet") => s.deployment += 1,
                    Some("StatefulSet") => s.statefulset += 1,
                    None => s.bare += 1,
                    _ => {}
                }
                s.mirror += meta.annotations.contains_key(ANNOTATION_MIRROR) as usize;
                s.succeeded += (phase(pod) == "Succeeded") as usize;
                s.pending += (phase(pod) == "Pending") as usize;
                s.terminating += !meta.deletion_timestamp.is_empty() as usize;
                if !matches!(kind, Some("ReplicaSet" | "StatefulSet")) {
                    continue;
                }
                s.app_pods += 1;
                let affinity = spec.affinity.clone().unwrap_or_default();
                s.with_tolerations += !spec.tolerations.is_empty() as usize;
                s.with_node_selector += !spec.node_selector.is_empty() as usize;
                s.with_node_affinity += affinity.node_affinity.is_some_and(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .is_some()
                }) as usize;
                s.with_anti_affinity += affinity.pod_anti_affinity.is_some_and(|a| {
                    !a.required_during_scheduling_ignored_during_execution
                        .is_empty()
                }) as usize;
                s.with_pod_affinity += affinity.pod_affinity.is_some() as usize;
                s.with_spread += !spec.topology_spread_constraints.is_empty() as usize;
                s.with_spread_do_not_schedule += spec
                    .topology_spread_constraints
                    .iter()
                    .any(|c| c.when_unsatisfiable == "DoNotSchedule")
                    as usize;
                s.with_host_ports += spec
                    .containers
                    .iter()
                    .any(|c| c.ports.iter().any(|p| p.host_port != 0))
                    as usize;
                s.with_empty_dir += spec.volumes.iter().any(|v| v.empty_dir.is_some()) as usize;
                s.with_priority += spec.priority.is_some() as usize;
                s.with_sidecar_init +=
                    spec.init_containers
                        .iter()
                        .any(|c| c.restart_policy == "Always") as usize;
            }
            s.pdbs_with_zero_budget = snapshot
                .pod_disruption_budgets
                .iter()
                .filter(|p| p.status.as_ref().unwrap().disruptions_allowed == 0)
                .count();
            s.cpu_utilisation = used.cpu as f64 / allocatable.cpu as f64;
            s.memory_utilisation = used.memory as f64 / allocatable.memory as f64;
            let ratios: Vec<f64> = per_node_alloc
                .iter()
                .map(|(n, a)| per_node_used.get(n).map_or(0, |u| u.cpu) as f64 / a.cpu as f64)
                .collect();
            s.max_node_cpu_utilisation = ratios.iter().copied().fold(0.0, f64::max);
            s.min_node_cpu_utilisation = ratios.iter().copied().fold(1.0, f64::min);
            s
        }
    }
}
