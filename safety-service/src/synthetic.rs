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

use std::collections::{HashMap, HashSet};

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
const SAFE_TO_EVICT_LOCAL_VOLUMES: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";

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
    fn from_map(map: &HashMap<String, String>) -> Res {
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

fn map<const N: usize>(entries: [(&str, &str); N]) -> HashMap<String, String> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn container(name: &str, requests: HashMap<String, String>) -> pb::Container {
    pb::Container {
        name: name.to_owned(),
        resources: Some(pb::ResourceRequirements {
            requests,
            limits: HashMap::new(),
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
        match_labels: HashMap::new(),
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

fn node_selector_matches(selector: &pb::NodeSelector, labels: &HashMap<String, String>) -> bool {
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
    labels: HashMap<String, String>,
    nodes: Vec<u32>,
}

enum Workload {
    Deployment { hash: String, rs_uid: String },
    StatefulSet { revision: String, uid: String },
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
    /// `namespace/name` of every app, for unique names.
    app_names: HashSet<String>,
    /// Apps placed so far per namespace, with the zones their pods are in.
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
        let memory_menu = MEMORY_MENU
            .iter()
            .map(|q| (milli(q) / 1000, *q))
            .collect();
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
            app_names: HashSet::new(),
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
        let bare = if total >= 200 { (total / 2000).max(1) } else { 0 };
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

        let mut pods = self.pods;
        pods.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
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
                    creation_timestamp: self.timestamp(1),
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

