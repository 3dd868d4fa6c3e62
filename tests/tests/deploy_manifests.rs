//! The deployment in `deploy/`: the Kubernetes manifests (a kustomize base and an example overlay)
//! and the Dockerfile.
//!
//! Every YAML document is parsed into its k8s-openapi type by `kind` (an unknown kind fails), and
//! the typed object, serialized again, must equal the YAML: a misspelled or unknown field, which
//! the API server would silently drop, fails here instead. On top of that: the kustomizations
//! list every file of their folder; RBAC grants exactly what each component needs; every
//! container runs locked down with requests and limits; the safety-service has no Kubernetes
//! access; the environment, ports, probes, Services, budgets and NetworkPolicies fit together;
//! the shipped controller configurations load with the controller's own parser; the Dockerfile's
//! runtime images run as a numeric non-root user.
//!
//! When `kubectl` is on the PATH, `kubectl kustomize` also renders both folders and the rendered
//! objects are checked the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Service, ServiceAccount, Volume,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const NAMESPACE: &str = "vpsie-autoscaler";
const SAFETY: &str = "safety-service";
const REBALANCER: &str = "rebalancer-service";
const CONTROLLER: &str = "controller";
const COMPONENTS: [&str; 3] = [SAFETY, REBALANCER, CONTROLLER];
/// The label every pod, Service selector, budget and NetworkPolicy uses to name its component.
const APP_LABEL: &str = "app.kubernetes.io/name";
/// The non-root user of the runtime images (distroless `nonroot`).
const NON_ROOT_UID: i64 = 65532;
/// Where Events about Nodes are recorded (`controller.md`, "High availability").
const EVENTS_NAMESPACE: &str = "default";
const LEASE_NAME: &str = "vpsie-autoscaler-controller";
const CREDENTIALS_SECRET: &str = "vpsie-credentials";
const VPSIE_API_CONFIGMAP: &str = "vpsie-api";
const CONTROLLER_CONFIGMAP: &str = "controller-config";
const CONTROLLER_CONFIG_KEY: &str = "config.yaml";
/// A namespace with this label may scrape the metrics ports.
const SCRAPE_LABEL: (&str, &str) = ("autoscaler.vpsie.com/scrape-metrics", "true");

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn base_dir() -> PathBuf {
    deploy_dir().join("base")
}

fn overlay_dir() -> PathBuf {
    deploy_dir().join("overlays/example")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

// ---- kustomization.yaml ---------------------------------------------------------------------------

/// The part of kustomize's `Kustomization` these folders use. Unknown keys are an error, so a
/// misspelled key (which kustomize would reject too) fails here; a new key needs a field here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kustomization {
    api_version: String,
    kind: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    patches: Vec<KustomizePatch>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
    #[serde(default)]
    images: Vec<ImageOverride>,
    #[serde(default)]
    replicas: Vec<ReplicaOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KustomizePatch {
    path: String,
    target: Option<PatchTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchTarget {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Generator {
    name: String,
    namespace: Option<String>,
    behavior: Option<String>,
    #[serde(default)]
    literals: Vec<String>,
    #[serde(default)]
    files: Vec<String>,
    options: Option<GeneratorOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GeneratorOptions {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    disable_name_suffix_hash: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImageOverride {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
    digest: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReplicaOverride {
    name: String,
    count: i32,
}

impl Generator {
    /// `key=file` or `file` entries: (key, file).
    fn files(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .map(|entry| match entry.split_once('=') {
                Some((key, file)) => (key.to_owned(), file.to_owned()),
                None => {
                    let key = Path::new(entry).file_name().unwrap().to_string_lossy();
                    (key.into_owned(), entry.clone())
                }
            })
            .collect()
    }

    fn literals(&self) -> BTreeMap<String, String> {
        self.literals
            .iter()
            .map(|literal| {
                let (key, value) = literal
                    .split_once('=')
                    .unwrap_or_else(|| panic!("generator {}: literal {literal:?}", self.name));
                (key.to_owned(), value.to_owned())
            })
            .collect()
    }
}

fn load_kustomization(dir: &Path) -> Kustomization {
    let path = dir.join("kustomization.yaml");
    let kustomization: Kustomization =
        serde_norway::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        kustomization.api_version,
        "kustomize.config.k8s.io/v1beta1",
        "{}",
        path.display()
    );
    assert_eq!(kustomization.kind, "Kustomization", "{}", path.display());
    kustomization
}

// ---- YAML documents into k8s-openapi types ----------------------------------------------------------

/// Every non-empty YAML document of a file, as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    yaml_documents_of(&read(path), &path.display().to_string())
}

fn yaml_documents_of(text: &str, origin: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .enumerate()
        .map(|(index, document)| {
            Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{origin}: YAML document {index}: {e}"))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// One parsed manifest. (A few dozen per test run: their size does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    Service(Service),
    Deployment(Deployment),
    PodDisruptionBudget(PodDisruptionBudget),
    NetworkPolicy(NetworkPolicy),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
}

/// How the re-serialized typed object must relate to the YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fidelity {
    /// A whole object: equal.
    Exact,
    /// A patch (a partial object): every field of the YAML is a field of the type, with the same
    /// value; the type may add defaults for the required fields the patch leaves out.
    Subset,
}

fn parse_object(origin: &str, value: &Value, fidelity: Fidelity) -> Object {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{origin}: a document without `kind`"));
    match kind {
        "Namespace" => Object::Namespace(typed(origin, value, fidelity)),
        "ServiceAccount" => Object::ServiceAccount(typed(origin, value, fidelity)),
        "ConfigMap" => Object::ConfigMap(typed(origin, value, fidelity)),
        "Service" => Object::Service(typed(origin, value, fidelity)),
        "Deployment" => Object::Deployment(typed(origin, value, fidelity)),
        "PodDisruptionBudget" => Object::PodDisruptionBudget(typed(origin, value, fidelity)),
        "NetworkPolicy" => Object::NetworkPolicy(typed(origin, value, fidelity)),
        "ClusterRole" => Object::ClusterRole(typed(origin, value, fidelity)),
        "ClusterRoleBinding" => Object::ClusterRoleBinding(typed(origin, value, fidelity)),
        "Role" => Object::Role(typed(origin, value, fidelity)),
        "RoleBinding" => Object::RoleBinding(typed(origin, value, fidelity)),
        other => panic!(
            "{origin}: kind {other:?} is not known to this test; add it (with its k8s-openapi type) \
             to parse_object"
        ),
    }
}

/// Parses `value` as `T` (its apiVersion and kind included) and compares the typed object,
/// serialized again, with the YAML.
fn typed<T: DeserializeOwned + Serialize>(origin: &str, value: &Value, fidelity: Fidelity) -> T {
    let object: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{origin}: not a valid {}: {e}", kind_of(value)));
    let again = serde_json::to_value(&object).expect("k8s-openapi objects serialize");
    let mut problems = Vec::new();
    compare(value, &again, "", fidelity, &mut problems);
    assert!(
        problems.is_empty(),
        "{origin} ({} {}): the YAML and its typed object differ (a misspelled or unknown field, or \
         a value of the wrong type?):\n  {}",
        kind_of(value),
        value["metadata"]["name"].as_str().unwrap_or("?"),
        problems.join("\n  ")
    );
    object
}

fn kind_of(value: &Value) -> &str {
    value.get("kind").and_then(Value::as_str).unwrap_or("?")
}

fn compare(
    yaml: &Value,
    typed: &Value,
    path: &str,
    fidelity: Fidelity,
    problems: &mut Vec<String>,
) {
    match (yaml, typed) {
        (Value::Object(yaml), Value::Object(typed)) => {
            for (key, value) in yaml {
                let here = format!("{path}.{key}");
                match typed.get(key) {
                    Some(again) => compare(value, again, &here, fidelity, problems),
                    None => problems.push(format!("{here}: not a field of the Kubernetes type")),
                }
            }
            if fidelity == Fidelity::Exact {
                for key in typed.keys().filter(|key| !yaml.contains_key(*key)) {
                    problems.push(format!(
                        "{path}.{key}: missing from the YAML (a required field?)"
                    ));
                }
            }
        }
        (Value::Array(yaml), Value::Array(typed)) if yaml.len() == typed.len() => {
            for (index, (value, again)) in yaml.iter().zip(typed).enumerate() {
                compare(
                    value,
                    again,
                    &format!("{path}[{index}]"),
                    fidelity,
                    problems,
                );
            }
        }
        _ if yaml == typed => {}
        _ => problems.push(format!(
            "{path}: the YAML says {yaml}, the typed object {typed}"
        )),
    }
}

impl Object {
    fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::ClusterRole(o) => &o.metadata,
            Object::ClusterRoleBinding(o) => &o.metadata,
            Object::Role(o) => &o.metadata,
            Object::RoleBinding(o) => &o.metadata,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Service(_) => "Service",
            Object::Deployment(_) => "Deployment",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::ClusterRole(_) => "ClusterRole",
            Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
        }
    }

    fn cluster_scoped(&self) -> bool {
        matches!(
            self,
            Object::Namespace(_) | Object::ClusterRole(_) | Object::ClusterRoleBinding(_)
        )
    }

    fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
}

/// A set of objects: the base's resources, or what `kubectl kustomize` rendered.
struct Objects {
    objects: Vec<(String, Object)>,
}

macro_rules! all_of {
    ($method:ident, $variant:ident, $type:ty) => {
        fn $method(&self) -> Vec<&$type> {
            self.objects
                .iter()
                .filter_map(|(_, object)| match object {
                    Object::$variant(o) => Some(o),
                    _ => None,
                })
                .collect()
        }
    };
}

impl Objects {
    all_of!(namespaces, Namespace, Namespace);
    all_of!(service_accounts, ServiceAccount, ServiceAccount);
    all_of!(config_maps, ConfigMap, ConfigMap);
    all_of!(services, Service, Service);
    all_of!(deployments, Deployment, Deployment);
    all_of!(budgets, PodDisruptionBudget, PodDisruptionBudget);
    all_of!(network_policies, NetworkPolicy, NetworkPolicy);
    all_of!(cluster_roles, ClusterRole, ClusterRole);
    all_of!(
        cluster_role_bindings,
        ClusterRoleBinding,
        ClusterRoleBinding
    );
    all_of!(roles, Role, Role);
    all_of!(role_bindings, RoleBinding, RoleBinding);

    fn parse(documents: impl IntoIterator<Item = (String, Value)>) -> Objects {
        let objects: Vec<(String, Object)> = documents
            .into_iter()
            .map(|(origin, value)| {
                let object = parse_object(&origin, &value, Fidelity::Exact);
                (origin, object)
            })
            .collect();
        let mut seen = BTreeSet::new();
        for (origin, object) in &objects {
            assert!(
                !object.name().is_empty(),
                "{origin}: {} without a name",
                object.kind()
            );
            let id = (object.kind(), object.namespace(), object.name());
            assert!(seen.insert(id), "{origin}: {id:?} is defined twice");
        }
        Objects { objects }
    }

    fn deployment(&self, name: &str) -> &Deployment {
        self.deployments()
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no Deployment {name}"))
    }

    /// The Deployment whose pods carry `APP_LABEL: app`.
    fn deployment_of_app(&self, app: &str) -> &Deployment {
        let matching: Vec<&Deployment> = self
            .deployments()
            .into_iter()
            .filter(|d| pod_labels(d).get(APP_LABEL).map(String::as_str) == Some(app))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "Deployments whose pods are {APP_LABEL}={app}"
        );
        matching[0]
    }
}

/// The base: its kustomization and its resources, parsed.
struct Base {
    kustomization: Kustomization,
    objects: Objects,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = base_dir();
        let kustomization = load_kustomization(&dir);
        let mut documents = Vec::new();
        for resource in &kustomization.resources {
            let path = dir.join(resource);
            assert!(path.is_file(), "base resource {resource} is not a file");
            for (index, value) in yaml_documents(&path).into_iter().enumerate() {
                documents.push((format!("deploy/base/{resource}[{index}]"), value));
            }
        }
        Base {
            kustomization,
            objects: Objects::parse(documents),
        }
    })
}

fn generator<'k>(kustomization: &'k Kustomization, name: &str) -> &'k Generator {
    kustomization
        .config_map_generator
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no configMapGenerator {name}"))
}

// ---- small helpers over pods ----------------------------------------------------------------------------

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("?")
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .unwrap_or_else(|| {
            panic!(
                "Deployment {} has no pod spec",
                name_of(&deployment.metadata)
            )
        })
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
}

/// The one container of a component's pod.
fn main_container(deployment: &Deployment) -> &Container {
    let spec = pod_spec(deployment);
    assert_eq!(
        spec.containers.len(),
        1,
        "{}: one container",
        name_of(&deployment.metadata)
    );
    &spec.containers[0]
}

/// The container port with this name.
fn named_port(container: &Container, name: &str) -> i32 {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("container {} has no port named {name}", container.name))
        .container_port
}

fn env<'c>(container: &'c Container, name: &str) -> &'c k8s_openapi::api::core::v1::EnvVar {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("container {} has no env {name}", container.name))
}

fn env_value<'c>(container: &'c Container, name: &str) -> &'c str {
    env(container, name).value.as_deref().unwrap_or_else(|| {
        panic!(
            "container {}: env {name} has no literal value",
            container.name
        )
    })
}

fn volume<'s>(spec: &'s PodSpec, name: &str) -> &'s Volume {
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector.match_expressions.is_none(),
        "these manifests select by matchLabels only"
    );
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// A Kubernetes quantity as a number (the suffixes these manifests may use).
fn quantity(text: &str) -> f64 {
    const SUFFIXES: [(&str, f64); 10] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("", 1.0),
    ];
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .expect("the empty suffix always matches");
    let number: f64 = number
        .parse()
        .unwrap_or_else(|e| panic!("quantity {text:?}: {e}"));
    number * scale
}

// ---- the tests ------------------------------------------------------------------------------------------

#[test]
fn every_manifest_parses_as_its_kubernetes_type_without_unknown_fields() {
    let base = base();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (origin, object) in &base.objects.objects {
        *kinds.entry(object.kind()).or_default() += 1;
        if object.cluster_scoped() {
            assert_eq!(object.namespace(), None, "{origin}: cluster-scoped");
        } else {
            // No `namespace:` in the kustomization: every namespaced object names its own.
            let expected = if matches!(object, Object::RoleBinding(_))
                && object.name() == "vpsie-autoscaler-controller-events"
            {
                EVENTS_NAMESPACE
            } else {
                NAMESPACE
            };
            assert_eq!(object.namespace(), Some(expected), "{origin}: namespace");
        }
        let labels = object.metadata().labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("app.kubernetes.io/part-of").map(String::as_str),
            Some(NAMESPACE),
            "{origin}: every object is labelled part-of {NAMESPACE}"
        );
    }
    let expected: BTreeMap<&str, usize> = [
        ("Namespace", 1),
        ("ServiceAccount", 3),
        ("Service", 3),
        ("Deployment", 3),
        ("PodDisruptionBudget", 3),
        ("NetworkPolicy", 4),
        ("ClusterRole", 3),
        ("ClusterRoleBinding", 2),
        ("Role", 2),
        ("RoleBinding", 3),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, expected, "objects of the base, by kind");
    for generated in &base.kustomization.config_map_generator {
        assert_eq!(
            generated.namespace.as_deref(),
            Some(NAMESPACE),
            "{}",
            generated.name
        );
        let options = generated.options.as_ref();
        assert_eq!(
            options
                .and_then(|o| o.labels.get("app.kubernetes.io/part-of"))
                .map(String::as_str),
            Some(NAMESPACE),
            "generated ConfigMap {}: labelled",
            generated.name
        );
        assert_ne!(
            options.and_then(|o| o.disable_name_suffix_hash),
            Some(true),
            "generated ConfigMap {}: a content-hash name rolls its pods when it changes",
            generated.name
        );
    }
    let namespaces = base.objects.namespaces();
    assert_eq!(name_of(&namespaces[0].metadata), NAMESPACE);
    let namespace_labels = namespaces[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        namespace_labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted"),
        "the namespace enforces the restricted Pod Security Standard"
    );

    // The overlay's patches are partial objects: every field they set must exist.
    let overlay = load_kustomization(&overlay_dir());
    assert!(
        !overlay.patches.is_empty(),
        "the example overlay shows a patch"
    );
    for patch in &overlay.patches {
        let path = overlay_dir().join(&patch.path);
        for (index, value) in yaml_documents(&path).into_iter().enumerate() {
            let origin = format!("deploy/overlays/example/{}[{index}]", patch.path);
            parse_object(&origin, &value, Fidelity::Subset);
        }
    }
}

#[test]
fn the_type_check_catches_misspelled_and_mistyped_fields() {
    let good = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: x
  namespace: y
automountServiceAccountToken: false
"#;
    let value = &yaml_documents_of(good, "good")[0];
    parse_object("good", value, Fidelity::Exact);
    for bad in [
        good.replace(
            "automountServiceAccountToken",
            "automountServiceAccountTokens",
        ),
        good.replace("namespace: y", "namespace: y\n  lables: {a: b}"),
    ] {
        let value = yaml_documents_of(&bad, "bad").remove(0);
        let outcome =
            std::panic::catch_unwind(|| parse_object("bad", &value, Fidelity::Exact)).is_err();
        assert!(outcome, "not caught:\n{bad}");
    }
    let unknown_kind = good.replace("kind: ServiceAccount", "kind: ServiceAcount");
    let value = yaml_documents_of(&unknown_kind, "unknown kind").remove(0);
    assert!(
        std::panic::catch_unwind(|| parse_object("unknown kind", &value, Fidelity::Exact)).is_err()
    );
    // A quantity must be a string, as the API server requires.
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    spec:
      containers:
        - name: c
          resources: {limits: {cpu: 1}}
"#;
    let value = yaml_documents_of(deployment, "deployment").remove(0);
    assert!(
        std::panic::catch_unwind(|| parse_object("deployment", &value, Fidelity::Subset)).is_err()
    );
}

#[test]
fn kustomizations_list_every_file_in_their_folder() {
    for dir in [base_dir(), overlay_dir()] {
        let kustomization = load_kustomization(&dir);
        let mut listed = BTreeSet::from(["kustomization.yaml".to_owned()]);
        for resource in &kustomization.resources {
            let path = dir.join(resource);
            if path.is_dir() {
                assert!(
                    path.join("kustomization.yaml").is_file(),
                    "{}: resource {resource} is a folder without a kustomization",
                    dir.display()
                );
            } else {
                listed.insert(resource.clone());
            }
        }
        listed.extend(kustomization.patches.iter().map(|p| p.path.clone()));
        for generator in &kustomization.config_map_generator {
            listed.extend(generator.files().into_iter().map(|(_, file)| file));
        }
        let mut present = BTreeSet::new();
        let mut folders = vec![dir.clone()];
        while let Some(folder) = folders.pop() {
            for entry in fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    let relative = path.strip_prefix(&dir).unwrap();
                    present.insert(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        assert_eq!(
            present,
            listed,
            "{}: the files present and the files the kustomization uses (an orphan manifest, or a \
             missing one)",
            dir.display()
        );
    }
}

#[test]
fn shipped_controller_configurations_load_and_agree_with_the_vpsie_cluster() {
    let base_kustomization = &base().kustomization;
    let overlay = load_kustomization(&overlay_dir());
    for (dir, kustomization, is_overlay) in [
        (base_dir(), base_kustomization, false),
        (overlay_dir(), &overlay, true),
    ] {
        let config_generator = generator(kustomization, CONTROLLER_CONFIGMAP);
        let files = config_generator.files();
        assert_eq!(
            files.len(),
            1,
            "{}: one controller config file",
            dir.display()
        );
        let (key, file) = &files[0];
        assert_eq!(key, CONTROLLER_CONFIG_KEY);
        let path = dir.join(file);
        let config = controller::config::Config::from_yaml(&read(&path), &path.to_string_lossy())
            .unwrap_or_else(|e| panic!("the controller would refuse {}: {e}", path.display()));
        assert!(
            !config.node_groups.is_empty(),
            "{}: node groups",
            path.display()
        );

        // The cluster the rebalancer-service uses (vpsie-api, merged over the base's).
        let mut vpsie_api = generator(base_kustomization, VPSIE_API_CONFIGMAP).literals();
        if is_overlay {
            let merged = generator(kustomization, VPSIE_API_CONFIGMAP);
            assert_eq!(merged.behavior.as_deref(), Some("merge"));
            vpsie_api.extend(merged.literals());
        }
        assert_eq!(
            vpsie_api.get("cluster"),
            Some(&config.cluster),
            "{}: the controller's cluster and the rebalancer-service's VPSIE_CLUSTER",
            dir.display()
        );
        assert!(
            vpsie_api["url"].starts_with("https://"),
            "the VPSie API over TLS"
        );
    }
    let base_cluster = &generator(base_kustomization, VPSIE_API_CONFIGMAP).literals()["cluster"];
    let overlay_cluster = &generator(&overlay, VPSIE_API_CONFIGMAP).literals()["cluster"];
    assert_ne!(
        base_cluster, overlay_cluster,
        "the example overlay sets its own cluster identifier"
    );
}

/// One permission: where it holds (`cluster` or a namespace), API group, resource, verb, and
/// the one object it is limited to, if any.
type Grant = (String, String, String, String, Option<String>);

fn grants_of(
    scope: &str,
    group: &str,
    resource: &str,
    verbs: &[&str],
    name: Option<&str>,
) -> Vec<Grant> {
    verbs
        .iter()
        .map(|verb| {
            (
                scope.to_owned(),
                group.to_owned(),
                resource.to_owned(),
                (*verb).to_owned(),
                name.map(str::to_owned),
            )
        })
        .collect()
}

fn expand_rules(scope: &str, rules: &[PolicyRule], role: &str) -> Vec<Grant> {
    let mut grants = Vec::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.is_none(),
            "{role}: no non-resource URLs"
        );
        let names: Vec<Option<String>> = match &rule.resource_names {
            Some(names) => names.iter().cloned().map(Some).collect(),
            None => vec![None],
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for name in &names {
                        grants.push((
                            scope.to_owned(),
                            group.clone(),
                            resource.clone(),
                            verb.clone(),
                            name.clone(),
                        ));
                    }
                }
            }
        }
    }
    grants
}

/// Every ServiceAccount's permissions (`namespace/name` → grants), from the roles and bindings.
fn effective_grants(objects: &Objects) -> BTreeMap<String, BTreeSet<Grant>> {
    let cluster_role = |name: &str| -> Vec<PolicyRule> {
        let role = objects
            .cluster_roles()
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("a binding names the missing ClusterRole {name}"));
        assert!(role.aggregation_rule.is_none(), "{name}: no aggregation");
        role.rules.clone().unwrap_or_default()
    };
    let accounts: BTreeSet<String> = objects
        .service_accounts()
        .iter()
        .map(|sa| {
            format!(
                "{}/{}",
                sa.metadata.namespace.as_deref().unwrap_or(""),
                name_of(&sa.metadata)
            )
        })
        .collect();
    let mut grants: BTreeMap<String, BTreeSet<Grant>> = BTreeMap::new();
    let mut used_roles = BTreeSet::new();
    let mut bind = |binding: &str, subjects: &[Subject], scope: &str, rules: Vec<PolicyRule>| {
        assert!(!subjects.is_empty(), "{binding}: no subjects");
        for subject in subjects {
            assert_eq!(
                subject.kind, "ServiceAccount",
                "{binding}: only ServiceAccounts are bound"
            );
            let account = format!(
                "{}/{}",
                subject.namespace.as_deref().unwrap_or(""),
                subject.name
            );
            assert!(
                accounts.contains(&account),
                "{binding}: binds {account}, which these manifests do not define"
            );
            grants
                .entry(account)
                .or_default()
                .extend(expand_rules(scope, &rules, binding));
        }
    };
    let check_ref = |binding: &str, role_ref: &RoleRef| {
        assert_eq!(role_ref.api_group, "rbac.authorization.k8s.io", "{binding}");
    };
    for binding in objects.cluster_role_bindings() {
        let name = name_of(&binding.metadata);
        check_ref(name, &binding.role_ref);
        assert_eq!(binding.role_ref.kind, "ClusterRole", "{name}");
        used_roles.insert(("ClusterRole", None, binding.role_ref.name.clone()));
        bind(
            name,
            binding.subjects.as_deref().unwrap_or_default(),
            "cluster",
            cluster_role(&binding.role_ref.name),
        );
    }
    for binding in objects.role_bindings() {
        let name = name_of(&binding.metadata);
        let namespace = binding.metadata.namespace.clone().expect("namespaced");
        check_ref(name, &binding.role_ref);
        let rules = match binding.role_ref.kind.as_str() {
            "ClusterRole" => {
                used_roles.insert(("ClusterRole", None, binding.role_ref.name.clone()));
                cluster_role(&binding.role_ref.name)
            }
            "Role" => {
                used_roles.insert((
                    "Role",
                    Some(namespace.clone()),
                    binding.role_ref.name.clone(),
                ));
                let role = objects
                    .roles()
                    .into_iter()
                    .find(|r| {
                        r.metadata.name.as_deref() == Some(binding.role_ref.name.as_str())
                            && r.metadata.namespace.as_deref() == Some(namespace.as_str())
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "{name}: Role {namespace}/{} is missing",
                            binding.role_ref.name
                        )
                    });
                role.rules.clone().unwrap_or_default()
            }
            other => panic!("{name}: roleRef kind {other}"),
        };
        bind(
            name,
            binding.subjects.as_deref().unwrap_or_default(),
            &namespace,
            rules,
        );
    }
    // No role that nothing binds.
    for role in objects.cluster_roles() {
        let id = ("ClusterRole", None, name_of(&role.metadata).to_owned());
        assert!(
            used_roles.contains(&id),
            "ClusterRole {} is bound by nothing",
            id.2
        );
    }
    for role in objects.roles() {
        let id = (
            "Role",
            role.metadata.namespace.clone(),
            name_of(&role.metadata).to_owned(),
        );
        assert!(used_roles.contains(&id), "Role {id:?} is bound by nothing");
    }
    grants
}

#[test]
fn rbac_grants_exactly_what_each_component_needs() {
    let grants = effective_grants(&base().objects);

    let mut controller = Vec::new();
    controller.extend(grants_of(
        "cluster",
        "",
        "nodes",
        &["get", "list", "watch", "patch"],
        None,
    ));
    for resource in ["pods", "namespaces"] {
        controller.extend(grants_of(
            "cluster",
            "",
            resource,
            &["get", "list", "watch"],
            None,
        ));
    }
    controller.extend(grants_of(
        "cluster",
        "policy",
        "poddisruptionbudgets",
        &["get", "list", "watch"],
        None,
    ));
    for group in ["events.k8s.io", ""] {
        controller.extend(grants_of(
            EVENTS_NAMESPACE,
            group,
            "events",
            &["create", "patch"],
            None,
        ));
    }
    controller.extend(grants_of(
        NAMESPACE,
        "coordination.k8s.io",
        "leases",
        &["create"],
        None,
    ));
    controller.extend(grants_of(
        NAMESPACE,
        "coordination.k8s.io",
        "leases",
        &["get", "update"],
        Some(LEASE_NAME),
    ));

    let mut rebalancer = Vec::new();
    rebalancer.extend(grants_of(
        "cluster",
        "",
        "nodes",
        &["get", "list", "patch", "delete"],
        None,
    ));
    rebalancer.extend(grants_of("cluster", "", "pods", &["get", "list"], None));
    rebalancer.extend(grants_of("cluster", "", "pods/eviction", &["create"], None));
    rebalancer.extend(grants_of("cluster", "", "namespaces", &["list"], None));
    rebalancer.extend(grants_of(
        "cluster",
        "policy",
        "poddisruptionbudgets",
        &["list"],
        None,
    ));
    rebalancer.extend(grants_of(
        NAMESPACE,
        "",
        "configmaps",
        &["get", "list", "create", "update", "delete"],
        None,
    ));

    let expected: BTreeMap<String, BTreeSet<Grant>> = [
        (format!("{NAMESPACE}/{CONTROLLER}"), controller),
        (format!("{NAMESPACE}/{REBALANCER}"), rebalancer),
    ]
    .into_iter()
    .map(|(account, grants)| (account, grants.into_iter().collect()))
    .collect();
    for (account, expected_grants) in &expected {
        let actual = grants.get(account).cloned().unwrap_or_default();
        let missing: Vec<_> = expected_grants.difference(&actual).collect();
        let extra: Vec<_> = actual.difference(expected_grants).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{account}: missing grants {missing:#?}\nextra grants {extra:#?}"
        );
    }
    assert_eq!(
        grants.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the ServiceAccounts that have any permission (the safety-service has none)"
    );
}

#[test]
fn the_safety_service_has_no_kubernetes_access() {
    let objects = &base().objects;
    let account = objects
        .service_accounts()
        .into_iter()
        .find(|sa| name_of(&sa.metadata) == SAFETY)
        .expect("the safety-service's ServiceAccount");
    assert_eq!(account.automount_service_account_token, Some(false));
    let spec = pod_spec(objects.deployment(SAFETY));
    assert_eq!(spec.service_account_name.as_deref(), Some(SAFETY));
    assert_eq!(spec.automount_service_account_token, Some(false));
    let bound = |subjects: Option<&Vec<Subject>>| {
        subjects
            .into_iter()
            .flatten()
            .any(|s| s.kind == "ServiceAccount" && s.name == SAFETY)
    };
    for binding in objects.role_bindings() {
        assert!(
            !bound(binding.subjects.as_ref()),
            "{}",
            name_of(&binding.metadata)
        );
    }
    for binding in objects.cluster_role_bindings() {
        assert!(
            !bound(binding.subjects.as_ref()),
            "{}",
            name_of(&binding.metadata)
        );
    }
    // And it needs no Secret either.
    for volume in spec.volumes.iter().flatten() {
        assert!(
            volume.secret.is_none() && volume.projected.is_none(),
            "{}",
            volume.name
        );
    }
}

fn assert_locked_down(objects: &Objects, label: &str) {
    for deployment in objects.deployments() {
        let name = name_of(&deployment.metadata);
        let spec = pod_spec(deployment);
        let pod = spec.security_context.clone().unwrap_or_default();
        for flag in [spec.host_network, spec.host_pid, spec.host_ipc] {
            assert_ne!(flag, Some(true), "{label} {name}: no host namespaces");
        }
        for volume in spec.volumes.iter().flatten() {
            assert!(
                volume.host_path.is_none(),
                "{label} {name}: hostPath {}",
                volume.name
            );
            // The safety rules call an emptyDir local storage: our own pods would then block the
            // removal of the node they run on.
            assert!(
                volume.empty_dir.is_none(),
                "{label} {name}: emptyDir {}",
                volume.name
            );
        }
        for container in all_containers(spec) {
            let at = format!("{label} {name}/{}", container.name);
            let sc = container.security_context.clone().unwrap_or_default();
            assert_eq!(
                sc.run_as_non_root.or(pod.run_as_non_root),
                Some(true),
                "{at}: runAsNonRoot"
            );
            assert_eq!(
                sc.run_as_user.or(pod.run_as_user),
                Some(NON_ROOT_UID),
                "{at}: runAsUser"
            );
            assert_ne!(
                sc.run_as_group.or(pod.run_as_group),
                Some(0),
                "{at}: runAsGroup"
            );
            assert_eq!(
                sc.read_only_root_filesystem,
                Some(true),
                "{at}: readOnlyRootFilesystem"
            );
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{at}: allowPrivilegeEscalation"
            );
            assert_ne!(sc.privileged, Some(true), "{at}: privileged");
            let capabilities = sc.capabilities.clone().unwrap_or_default();
            assert_eq!(
                capabilities.drop,
                Some(vec!["ALL".to_owned()]),
                "{at}: capabilities drop ALL"
            );
            assert!(
                capabilities.add.unwrap_or_default().is_empty(),
                "{at}: no capability added"
            );
            let seccomp = sc.seccomp_profile.or(pod.seccomp_profile.clone());
            assert_eq!(
                seccomp.map(|s| s.type_).as_deref(),
                Some("RuntimeDefault"),
                "{at}: seccompProfile"
            );

            let resources = container.resources.clone().unwrap_or_default();
            let requests = resources.requests.unwrap_or_default();
            let limits = resources.limits.unwrap_or_default();
            for resource in ["cpu", "memory"] {
                let request = requests
                    .get(resource)
                    .unwrap_or_else(|| panic!("{at}: no {resource} request"));
                let limit = limits
                    .get(resource)
                    .unwrap_or_else(|| panic!("{at}: no {resource} limit"));
                assert!(
                    quantity(&request.0) <= quantity(&limit.0),
                    "{at}: {resource} request {} above its limit {}",
                    request.0,
                    limit.0
                );
            }
            let image = container.image.as_deref().unwrap_or_default();
            let tag = image
                .rsplit_once(':')
                .map(|(_, tag)| tag)
                .unwrap_or_default();
            assert!(
                !tag.is_empty() && tag != "latest" && !tag.contains('/'),
                "{at}: image {image:?} has a version tag"
            );
        }
    }
}

#[test]
fn every_container_runs_as_non_root_read_only_and_sized() {
    assert_locked_down(&base().objects, "base");
}

#[test]
fn deployments_run_as_their_own_existing_service_accounts() {
    let objects = &base().objects;
    assert_eq!(objects.deployments().len(), COMPONENTS.len());
    for component in COMPONENTS {
        let deployment = objects.deployment(component);
        let spec = pod_spec(deployment);
        let account = spec
            .service_account_name
            .as_deref()
            .unwrap_or_else(|| panic!("{component}: serviceAccountName"));
        assert_eq!(account, component, "{component}: its own ServiceAccount");
        assert!(
            objects.service_accounts().iter().any(|sa| {
                name_of(&sa.metadata) == account
                    && sa.metadata.namespace == deployment.metadata.namespace
            }),
            "{component}: ServiceAccount {account} is not defined"
        );
        let selector = &deployment.spec.as_ref().unwrap().selector;
        assert_eq!(
            selector.match_labels,
            Some(BTreeMap::from([(
                APP_LABEL.to_owned(),
                component.to_owned()
            )])),
            "{component}: selected by {APP_LABEL} alone (selectors are immutable)"
        );
        assert!(selector_matches(selector, &pod_labels(deployment)));
    }
}

/// The environment variables each binary reads (its `--help` and `shared/docs`); anything else
/// would be silently ignored.
fn known_env(component: &str) -> BTreeSet<&'static str> {
    let common = [
        "RUST_LOG",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ];
    let own: &[&str] = match component {
        SAFETY => &[
            "SAFETY_LISTEN",
            "SAFETY_MAX_MESSAGE_BYTES",
            "METRICS_LISTEN",
            "LOG_FORMAT",
            "SAFETY_SERVICE_TLS_CERT",
            "SAFETY_SERVICE_TLS_KEY",
            "SAFETY_SERVICE_TLS_CLIENT_CA",
        ],
        REBALANCER => &[
            "REBALANCER_LISTEN",
            "METRICS_LISTEN",
            "SAFETY_ENDPOINT",
            "VPSIE_URL",
            "VPSIE_ALLOW_HTTP",
            "VPSIE_CLUSTER",
            "VPSIE_CREDENTIALS_DIR",
            "VPSIE_TOKEN",
            "VPSIE_CLIENT_ID",
            "VPSIE_CLIENT_SECRET",
            "POD_NAMESPACE",
            "REBALANCER_NODE_POLL_SECONDS",
            "LOG_FORMAT",
            "REBALANCER_SHUTDOWN_GRACE_SECONDS",
            "REBALANCER_SERVICE_TLS_CERT",
            "REBALANCER_SERVICE_TLS_KEY",
            "REBALANCER_SERVICE_TLS_CLIENT_CA",
            "SAFETY_TLS_CA",
            "SAFETY_TLS_CERT",
            "SAFETY_TLS_KEY",
        ],
        CONTROLLER => &[
            "CONTROLLER_CONFIG",
            "SAFETY_ENDPOINT",
            "REBALANCER_ENDPOINT",
            "METRICS_LISTEN",
            "POD_NAMESPACE",
            "POD_NAME",
            "LEADER_LEASE_DURATION",
            "LOG_FORMAT",
            "SAFETY_TLS_CA",
            "SAFETY_TLS_CERT",
            "SAFETY_TLS_KEY",
            "REBALANCER_TLS_CA",
            "REBALANCER_TLS_CERT",
            "REBALANCER_TLS_KEY",
        ],
        other => panic!("unknown component {other}"),
    };
    common.into_iter().chain(own.iter().copied()).collect()
}

/// `http://<service>:<port>` must reach the gRPC port of `component` through its Service.
fn assert_endpoint_reaches(objects: &Objects, endpoint: &str, component: &str) {
    let rest = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{endpoint}: http:// (plaintext inside the cluster)"));
    let (host, port) = rest
        .split_once(':')
        .unwrap_or_else(|| panic!("{endpoint}: host:port"));
    let port: i32 = port.parse().unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    let service = objects
        .services()
        .into_iter()
        .find(|s| {
            name_of(&s.metadata) == host && s.metadata.namespace.as_deref() == Some(NAMESPACE)
        })
        .unwrap_or_else(|| panic!("{endpoint}: no Service {host} in {NAMESPACE}"));
    let spec = service.spec.as_ref().unwrap();
    let selected = spec.selector.clone().unwrap_or_default();
    assert_eq!(
        selected.get(APP_LABEL).map(String::as_str),
        Some(component),
        "{endpoint}: Service {host} selects {component}"
    );
    let service_port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == port)
        .unwrap_or_else(|| panic!("{endpoint}: Service {host} has no port {port}"));
    assert_eq!(
        service_port.target_port,
        Some(IntOrString::String("grpc".to_owned())),
        "{endpoint}: the gRPC port"
    );
}

#[test]
fn environment_ports_and_mounts_fit_together() {
    let base = base();
    let objects = &base.objects;
    for component in COMPONENTS {
        let deployment = objects.deployment(component);
        let container = main_container(deployment);
        let known = known_env(component);
        for variable in container.env.iter().flatten() {
            assert!(
                known.contains(variable.name.as_str()),
                "{component}: env {} is read by nothing",
                variable.name
            );
            let upper = variable.name.to_uppercase();
            if upper.contains("TOKEN") || upper.contains("SECRET") || upper.contains("CLIENT_ID") {
                assert!(
                    variable.value.is_none(),
                    "{component}: credentials never as literal values ({})",
                    variable.name
                );
            }
        }
        assert!(
            container.env_from.is_none(),
            "{component}: explicit env only"
        );
        // The listen addresses are the container ports.
        let metrics = named_port(container, "metrics");
        assert_eq!(
            env_value(container, "METRICS_LISTEN"),
            format!("0.0.0.0:{metrics}")
        );
        let listen = match component {
            SAFETY => Some("SAFETY_LISTEN"),
            REBALANCER => Some("REBALANCER_LISTEN"),
            _ => None,
        };
        if let Some(listen) = listen {
            let grpc = named_port(container, "grpc");
            assert_eq!(env_value(container, listen), format!("0.0.0.0:{grpc}"));
        }
        let names: Vec<&str> = container
            .ports
            .iter()
            .flatten()
            .map(|p| p.name.as_deref().unwrap_or("?"))
            .collect();
        let expected: &[&str] = if component == CONTROLLER {
            &["metrics"]
        } else {
            &["grpc", "metrics"]
        };
        assert_eq!(names, expected, "{component}: container ports");
        if component != SAFETY {
            let namespace = env(container, "POD_NAMESPACE")
                .value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .unwrap_or_else(|| panic!("{component}: POD_NAMESPACE from the downward API"));
            assert_eq!(namespace.field_path, "metadata.namespace");
            assert_endpoint_reaches(objects, env_value(container, "SAFETY_ENDPOINT"), SAFETY);
        }
    }

    // The controller: its configuration file and the rebalancer.
    let controller = objects.deployment(CONTROLLER);
    let container = main_container(controller);
    assert_endpoint_reaches(
        objects,
        env_value(container, "REBALANCER_ENDPOINT"),
        REBALANCER,
    );
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(args.len(), 3, "controller args: run --config FILE");
    assert_eq!((args[0].as_str(), args[1].as_str()), ("run", "--config"));
    let config_path = Path::new(&args[2]);
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| Path::new(&m.mount_path) == config_path.parent().unwrap())
        .expect("the controller's configuration is mounted");
    assert_eq!(mount.read_only, Some(true));
    let source = volume(pod_spec(controller), &mount.name)
        .config_map
        .as_ref()
        .expect("a ConfigMap volume");
    assert_eq!(source.name, CONTROLLER_CONFIGMAP);
    assert_eq!(
        config_path.file_name().unwrap().to_string_lossy(),
        CONTROLLER_CONFIG_KEY
    );
    let generated: Vec<String> = generator(&base.kustomization, CONTROLLER_CONFIGMAP)
        .files()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(generated, [CONTROLLER_CONFIG_KEY]);

    // The rebalancer-service: the VPSie API and its credentials.
    let rebalancer = objects.deployment(REBALANCER);
    let container = main_container(rebalancer);
    let vpsie_api = generator(&base.kustomization, VPSIE_API_CONFIGMAP);
    assert_eq!(vpsie_api.namespace.as_deref(), Some(NAMESPACE));
    let literals = vpsie_api.literals();
    for (variable, key) in [("VPSIE_URL", "url"), ("VPSIE_CLUSTER", "cluster")] {
        let reference = env(container, variable)
            .value_from
            .as_ref()
            .and_then(|f| f.config_map_key_ref.as_ref())
            .unwrap_or_else(|| panic!("{variable} from the {VPSIE_API_CONFIGMAP} ConfigMap"));
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            (VPSIE_API_CONFIGMAP, key)
        );
        assert!(
            literals.contains_key(key),
            "{VPSIE_API_CONFIGMAP} has no {key}"
        );
    }
    let credentials = env_value(container, "VPSIE_CREDENTIALS_DIR");
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == credentials)
        .expect("VPSIE_CREDENTIALS_DIR is a mounted volume");
    assert_eq!(mount.read_only, Some(true));
    let secret = volume(pod_spec(rebalancer), &mount.name)
        .secret
        .as_ref()
        .expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some(CREDENTIALS_SECRET));
    assert_ne!(secret.optional, Some(true), "no credentials, no start");
    let mode = secret.default_mode.unwrap_or(0o644);
    assert_eq!(mode & 0o007, 0, "the credentials are not world-readable");
    assert_eq!(
        pod_spec(rebalancer)
            .security_context
            .as_ref()
            .and_then(|s| s.fs_group),
        Some(NON_ROOT_UID),
        "fsGroup lets the non-root user read the Secret"
    );
    // ConfigMaps come from the generators only (their names get a content hash).
    assert!(objects.config_maps().is_empty());
}

#[test]
fn probes_ask_grpc_health_on_the_grpc_port() {
    let objects = &base().objects;
    for component in [SAFETY, REBALANCER] {
        let container = main_container(objects.deployment(component));
        let grpc = named_port(container, "grpc");
        for (kind, probe) in [
            ("readiness", &container.readiness_probe),
            ("liveness", &container.liveness_probe),
        ] {
            let probe = probe
                .as_ref()
                .unwrap_or_else(|| panic!("{component}: {kind} probe"));
            let action = probe
                .grpc
                .as_ref()
                .unwrap_or_else(|| panic!("{component}: {kind} probe is a native gRPC probe"));
            assert_eq!(action.port, grpc, "{component}: {kind} probe port");
            assert!(
                action.service.as_deref().unwrap_or_default().is_empty(),
                "{component}: the server's overall health"
            );
        }
    }
    // The controller serves no gRPC and no health endpoint: liveness asks its metrics endpoint.
    let container = main_container(objects.deployment(CONTROLLER));
    let action = container
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("controller: an httpGet liveness probe");
    assert_eq!(action.path.as_deref(), Some("/metrics"));
    assert_eq!(action.port, IntOrString::String("metrics".to_owned()));
    assert!(
        container.readiness_probe.is_none(),
        "the controller takes no traffic"
    );
}

#[test]
fn services_and_budgets_select_exactly_their_deployment() {
    let objects = &base().objects;
    let mut served = BTreeSet::new();
    for service in objects.services() {
        let name = name_of(&service.metadata);
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"), "{name}");
        let selector = LabelSelector {
            match_labels: spec.selector.clone(),
            ..LabelSelector::default()
        };
        assert!(spec.selector.is_some(), "{name}: a selector");
        let selected: Vec<&Deployment> = objects
            .deployments()
            .into_iter()
            .filter(|d| selector_matches(&selector, &pod_labels(d)))
            .collect();
        assert_eq!(selected.len(), 1, "Service {name} selects one Deployment");
        let container = main_container(selected[0]);
        served.insert(name_of(&selected[0].metadata).to_owned());
        let mut port_names = Vec::new();
        for port in spec.ports.iter().flatten() {
            let port_name = port.name.clone().unwrap_or_default();
            assert_eq!(
                port.target_port,
                Some(IntOrString::String(port_name.clone())),
                "{name}: targetPort by name"
            );
            assert_eq!(
                port.port,
                named_port(container, &port_name),
                "{name}: {port_name}"
            );
            assert_eq!(port.protocol.as_deref(), Some("TCP"));
            port_names.push(port_name);
        }
        let expected: &[&str] = if name_of(&selected[0].metadata) == CONTROLLER {
            &["metrics"]
        } else {
            &["grpc", "metrics"]
        };
        assert_eq!(port_names, expected, "Service {name}: ports");
    }
    assert_eq!(
        served,
        COMPONENTS.iter().map(|c| (*c).to_owned()).collect(),
        "every component has a Service"
    );

    let mut budgeted = BTreeSet::new();
    for budget in objects.budgets() {
        let name = name_of(&budget.metadata);
        let spec = budget.spec.as_ref().unwrap();
        let selector = spec.selector.as_ref().expect("a selector");
        let selected: Vec<&Deployment> = objects
            .deployments()
            .into_iter()
            .filter(|d| selector_matches(selector, &pod_labels(d)))
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "PodDisruptionBudget {name} selects one Deployment"
        );
        assert!(budgeted.insert(name_of(&selected[0].metadata).to_owned()));
        // One pod at a time, and never a budget that blocks every drain: a single replica (the
        // rebalancer-service) must stay evictable, and a broken pod never blocks.
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)), "{name}");
        assert!(spec.min_available.is_none(), "{name}");
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow"),
            "{name}"
        );
    }
    for component in [SAFETY, REBALANCER] {
        assert!(
            budgeted.contains(component),
            "{component} has a PodDisruptionBudget"
        );
    }
}

fn assert_single_rebalancer(objects: &Objects, label: &str) {
    let spec = objects.deployment(REBALANCER).spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1), "{label}: one rebalancer-service");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "{label}: the old rebalancer-service stops before the new one resumes the operations"
    );
}

#[test]
fn the_rebalancer_runs_as_a_single_replica_replaced_with_recreate() {
    assert_single_rebalancer(&base().objects, "base");
    let overlay = load_kustomization(&overlay_dir());
    for replicas in &overlay.replicas {
        if replicas.name == REBALANCER {
            assert_eq!(
                replicas.count, 1,
                "the overlay keeps one rebalancer-service"
            );
        }
    }
    let safety = base().objects.deployment(SAFETY).spec.as_ref().unwrap();
    assert!(
        safety.replicas.unwrap_or(1) >= 2,
        "the safety-service is replicated"
    );
}

/// Who may open a connection, as one string: `pod:<app>` (a pod of this namespace with that
/// app label), `namespace` (any pod of this namespace), `namespaces:<k>=<v>` (any pod of
/// namespaces with that label), or something unexpected spelled out.
fn describe_peer(peer: &NetworkPolicyPeer) -> String {
    let labels = |selector: &LabelSelector| -> String {
        assert!(selector.match_expressions.is_none());
        selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    match (&peer.ip_block, &peer.namespace_selector, &peer.pod_selector) {
        (Some(block), _, _) => format!("ipBlock:{}", block.cidr),
        (None, None, Some(pods)) => {
            let pods_labels = pods.match_labels.clone().unwrap_or_default();
            match (pods_labels.len(), pods_labels.get(APP_LABEL)) {
                (0, _) => "namespace".to_owned(),
                (1, Some(app)) => format!("pod:{app}"),
                _ => format!("pods:{}", labels(pods)),
            }
        }
        (None, Some(namespaces), None) => format!("namespaces:{}", labels(namespaces)),
        (None, Some(namespaces), Some(pods)) => {
            format!("namespaces:{} pods:{}", labels(namespaces), labels(pods))
        }
        (None, None, None) => "anywhere".to_owned(),
    }
}

#[test]
fn network_policies_allow_exactly_the_intended_flows() {
    let objects = &base().objects;
    // (destination component, source, destination port)
    let mut flows: BTreeSet<(String, String, i32)> = BTreeSet::new();
    let mut isolated = BTreeSet::new();
    for policy in objects.network_policies() {
        let name = name_of(&policy.metadata);
        assert_eq!(
            policy.metadata.namespace.as_deref(),
            Some(NAMESPACE),
            "{name}"
        );
        let spec = policy.spec.as_ref().unwrap();
        assert_eq!(
            spec.policy_types,
            Some(vec!["Ingress".to_owned()]),
            "{name}: ingress only (egress is deliberately open)"
        );
        let selector = spec.pod_selector.clone().unwrap_or_default();
        let targets: Vec<&Deployment> = objects
            .deployments()
            .into_iter()
            .filter(|d| selector_matches(&selector, &pod_labels(d)))
            .collect();
        assert!(!targets.is_empty(), "NetworkPolicy {name} selects no pod");
        for target in targets {
            let component = name_of(&target.metadata).to_owned();
            isolated.insert(component.clone());
            let container = main_container(target);
            for rule in spec.ingress.iter().flatten() {
                let sources: Vec<String> = match &rule.from {
                    Some(peers) if !peers.is_empty() => peers.iter().map(describe_peer).collect(),
                    _ => vec!["anywhere".to_owned()],
                };
                let ports: Vec<i32> = match &rule.ports {
                    Some(ports) if !ports.is_empty() => ports
                        .iter()
                        .map(|p| {
                            assert_eq!(p.protocol.as_deref(), Some("TCP"), "{name}");
                            assert!(p.end_port.is_none(), "{name}: single ports");
                            match p.port.as_ref().expect("a port") {
                                IntOrString::Int(port) => *port,
                                IntOrString::String(named) => named_port(container, named),
                            }
                        })
                        .collect(),
                    _ => vec![0], // every port
                };
                for source in &sources {
                    for port in &ports {
                        flows.insert((component.clone(), source.clone(), *port));
                    }
                }
            }
        }
    }
    assert_eq!(
        isolated,
        COMPONENTS.iter().map(|c| (*c).to_owned()).collect(),
        "every pod is isolated for ingress"
    );

    let port = |component: &str, name: &str| {
        named_port(main_container(objects.deployment(component)), name)
    };
    let scrapers = [
        "namespace".to_owned(),
        format!("namespaces:{}={}", SCRAPE_LABEL.0, SCRAPE_LABEL.1),
    ];
    let mut expected: BTreeSet<(String, String, i32)> = BTreeSet::new();
    for source in [CONTROLLER, REBALANCER] {
        expected.insert((
            SAFETY.to_owned(),
            format!("pod:{source}"),
            port(SAFETY, "grpc"),
        ));
    }
    expected.insert((
        REBALANCER.to_owned(),
        format!("pod:{CONTROLLER}"),
        port(REBALANCER, "grpc"),
    ));
    for component in COMPONENTS {
        for scraper in &scrapers {
            expected.insert((
                component.to_owned(),
                scraper.clone(),
                port(component, "metrics"),
            ));
        }
    }
    let missing: Vec<_> = expected.difference(&flows).collect();
    let extra: Vec<_> = flows.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "NetworkPolicy flows (destination, source, port): missing {missing:#?}\nextra {extra:#?}"
    );
}

#[test]
fn the_overlay_overrides_only_what_the_base_has() {
    let base = base();
    let overlay = load_kustomization(&overlay_dir());
    assert_eq!(overlay.resources, ["../../base"]);
    let images: BTreeSet<String> = base
        .objects
        .deployments()
        .into_iter()
        .flat_map(|d| {
            all_containers(pod_spec(d))
                .filter_map(|c| c.image.clone())
                .collect::<Vec<_>>()
        })
        .map(|image| {
            image
                .rsplit_once(':')
                .map_or(image.clone(), |(name, _)| name.to_owned())
        })
        .collect();
    let overridden: BTreeSet<String> = overlay.images.iter().map(|i| i.name.clone()).collect();
    assert_eq!(
        overridden, images,
        "the overlay sets every image, and only ours"
    );
    for image in &overlay.images {
        assert!(
            image.new_tag.is_some() || image.digest.is_some(),
            "{}: a tag or a digest",
            image.name
        );
        assert!(image.new_name.is_some(), "{}: a registry", image.name);
    }
    let replicated: BTreeSet<&str> = overlay.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        replicated,
        BTreeSet::from(COMPONENTS),
        "the overlay sets every replica count"
    );
    for generated in &overlay.config_map_generator {
        let original = generator(&base.kustomization, &generated.name);
        assert_eq!(
            generated.namespace, original.namespace,
            "{}: same namespace",
            generated.name
        );
        assert!(
            matches!(generated.behavior.as_deref(), Some("merge" | "replace")),
            "{}: merges into or replaces the base's",
            generated.name
        );
    }
    for patch in &overlay.patches {
        let target = patch.target.as_ref().expect("patches name their target");
        let kind = target.kind.as_deref().expect("target kind");
        let name = target.name.as_deref().expect("target name");
        let exists = base.objects.objects.iter().any(|(_, object)| {
            object.kind() == kind
                && object.name() == name
                && target
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| object.namespace() == Some(ns))
        });
        assert!(exists, "patch {}: no {kind} {name} in the base", patch.path);
        if kind == "Deployment" {
            assert_eq!(
                target.group.as_deref(),
                Some("apps"),
                "patch {}",
                patch.path
            );
            assert_eq!(
                target.version.as_deref(),
                Some("v1"),
                "patch {}",
                patch.path
            );
        }
    }
}

// ---- the Dockerfile ---------------------------------------------------------------------------------------

struct Stage {
    base: String,
    name: Option<String>,
    instructions: Vec<(String, String)>,
}

/// The Dockerfile's stages: continuation lines joined, comments dropped, `${ARG}` in FROM
/// resolved with the global ARG defaults.
fn dockerfile_stages() -> Vec<Stage> {
    let text = read(&deploy_dir().join("Dockerfile"));
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            if !current.trim().is_empty() {
                logical.push(current.trim().to_owned());
            }
            current.clear();
        }
    }
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let instruction = instruction.to_uppercase();
        if instruction == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let mut base = words[0].to_owned();
            for (arg, value) in &args {
                base = base.replace(&format!("${{{arg}}}"), value);
            }
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                [_] => None,
                other => panic!("Dockerfile: FROM {other:?}"),
            };
            stages.push(Stage {
                base,
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((instruction, rest.to_owned()));
        } else if instruction == "ARG"
            && let Some((arg, value)) = rest.split_once('=')
        {
            args.insert(arg.trim().to_owned(), value.trim().to_owned());
        }
    }
    stages
}

#[test]
fn the_dockerfile_builds_the_three_binaries_and_runs_them_as_non_root() {
    let stages = dockerfile_stages();
    let stage = |name: &str| stages.iter().find(|s| s.name.as_deref() == Some(name));
    let build =
        "cargo build --release --locked -p safety-service -p rebalancer-service -p controller";
    let builder = stage("builder").expect("a builder stage");
    assert!(
        builder
            .instructions
            .iter()
            .any(|(i, rest)| i == "RUN" && rest.contains(build)),
        "the builder runs `{build}`"
    );
    let dependencies = stage("dependencies").expect("a dependency-caching stage");
    assert!(
        dependencies
            .instructions
            .iter()
            .all(|(i, rest)| i != "COPY" || !rest.starts_with(". ")),
        "the dependency stage copies manifests only, so source changes keep its cache"
    );

    for component in COMPONENTS {
        let runtime = stage(component).unwrap_or_else(|| panic!("a `{component}` target"));
        assert!(
            runtime.base.starts_with("gcr.io/distroless/") && runtime.base.ends_with(":nonroot"),
            "{component}: distroless nonroot runtime, not {}",
            runtime.base
        );
        // The last USER of the stage: numeric (so Kubernetes' runAsNonRoot can verify it) and
        // not root.
        let user = runtime
            .instructions
            .iter()
            .rev()
            .find(|(i, _)| i == "USER")
            .map(|(_, user)| user.trim().to_owned())
            .unwrap_or_else(|| panic!("{component}: no USER"));
        let (uid, gid) = user
            .split_once(':')
            .unwrap_or((user.as_str(), user.as_str()));
        let uid: i64 = uid
            .parse()
            .unwrap_or_else(|_| panic!("{component}: USER {user} is not numeric"));
        let gid: i64 = gid
            .parse()
            .unwrap_or_else(|_| panic!("{component}: USER {user}"));
        assert!(uid != 0 && gid != 0, "{component}: USER {user} is root");
        assert_eq!(uid, NON_ROOT_UID, "{component}: the Deployment's runAsUser");
        let binary = format!("/usr/local/bin/{component}");
        assert!(
            runtime.instructions.iter().any(|(i, rest)| i == "COPY"
                && rest.starts_with("--from=builder")
                && rest.ends_with(&binary)),
            "{component}: copies its binary from the builder"
        );
        let entrypoint = runtime
            .instructions
            .iter()
            .find(|(i, _)| i == "ENTRYPOINT")
            .map(|(_, e)| e.clone())
            .unwrap_or_default();
        assert_eq!(
            entrypoint,
            format!("[\"{binary}\"]"),
            "{component}: exec-form ENTRYPOINT"
        );
        // The image it builds is the one the base runs, with the same ports.
        let deployment = base().objects.deployment(component);
        let container = main_container(deployment);
        let image = container.image.as_deref().unwrap();
        assert!(
            image.starts_with(&format!("vpsie-autoscaler/{component}:")),
            "{component}: image {image}"
        );
        let exposed: BTreeSet<i32> = runtime
            .instructions
            .iter()
            .filter(|(i, _)| i == "EXPOSE")
            .flat_map(|(_, ports)| {
                ports
                    .split_whitespace()
                    .map(|p| p.trim_end_matches("/tcp").parse::<i32>().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        let declared: BTreeSet<i32> = container
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect();
        assert_eq!(
            exposed, declared,
            "{component}: EXPOSE and the container ports"
        );
    }
    let ignore = read(&deploy_dir().join("Dockerfile.dockerignore"));
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "target/ stays out of the build context"
    );
}

// ---- kubectl kustomize (when available) -----------------------------------------------------------

/// `kubectl kustomize DIR`, parsed; `None` when kubectl is not installed.
fn kustomize(dir: &Path) -> Option<Objects> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let origin = format!("kubectl kustomize {}", dir.display());
    let documents = yaml_documents_of(&text, &origin)
        .into_iter()
        .enumerate()
        .map(|(index, value)| (format!("{origin} [{index}]"), value));
    Some(Objects::parse(documents))
}

#[test]
fn kustomize_renders_both_folders_when_kubectl_is_available() {
    let (Some(rendered_base), Some(rendered_overlay)) =
        (kustomize(&base_dir()), kustomize(&overlay_dir()))
    else {
        eprintln!("kubectl is not installed: the rendering check is skipped");
        return;
    };
    for (label, rendered) in [("base", &rendered_base), ("overlay", &rendered_overlay)] {
        assert_locked_down(rendered, label);
        assert_single_rebalancer(rendered, label);
        for (origin, object) in &rendered.objects {
            if !object.cluster_scoped() {
                assert!(
                    object.namespace().is_some(),
                    "{origin}: rendered without a namespace"
                );
            }
        }
        // Every ConfigMap a pod uses is rendered (with its content-hash name).
        let config_maps: BTreeMap<&str, &ConfigMap> = rendered
            .config_maps()
            .into_iter()
            .map(|c| (name_of(&c.metadata), c))
            .collect();
        let mut used = BTreeMap::new();
        for deployment in rendered.deployments() {
            let spec = pod_spec(deployment);
            for volume in spec.volumes.iter().flatten() {
                if let Some(source) = &volume.config_map {
                    used.insert(source.name.clone(), CONTROLLER_CONFIGMAP);
                }
            }
            for container in all_containers(spec) {
                for variable in container.env.iter().flatten() {
                    let reference = variable
                        .value_from
                        .as_ref()
                        .and_then(|f| f.config_map_key_ref.as_ref());
                    if let Some(reference) = reference {
                        let data = config_maps
                            .get(reference.name.as_str())
                            .and_then(|c| c.data.as_ref())
                            .unwrap_or_else(|| {
                                panic!("{label}: ConfigMap {} is not rendered", reference.name)
                            });
                        assert!(
                            data.contains_key(&reference.key),
                            "{label}: {}.{}",
                            reference.name,
                            reference.key
                        );
                        used.insert(reference.name.clone(), VPSIE_API_CONFIGMAP);
                    }
                }
            }
        }
        let by_role: BTreeMap<&str, &ConfigMap> = used
            .iter()
            .map(|(name, role)| {
                let config_map = config_maps
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("{label}: ConfigMap {name} is not rendered"));
                assert!(
                    name.starts_with(role),
                    "{label}: {name} is the generated {role}"
                );
                (*role, *config_map)
            })
            .collect();
        let config_text =
            &by_role[CONTROLLER_CONFIGMAP].data.as_ref().unwrap()[CONTROLLER_CONFIG_KEY];
        let config = controller::config::Config::from_yaml(config_text, label)
            .unwrap_or_else(|e| panic!("{label}: the rendered controller configuration: {e}"));
        let cluster = &by_role[VPSIE_API_CONFIGMAP].data.as_ref().unwrap()["cluster"];
        assert_eq!(&config.cluster, cluster, "{label}: one cluster identifier");
        assert_eq!(
            effective_grants(rendered),
            effective_grants(&base().objects),
            "{label}: rendering changes no permission"
        );
    }

    // The overlay's settings took effect.
    let overlay = load_kustomization(&overlay_dir());
    for replicas in &overlay.replicas {
        let spec = rendered_overlay
            .deployment(&replicas.name)
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(spec.replicas, Some(replicas.count), "{}", replicas.name);
    }
    for deployment in rendered_overlay.deployments() {
        for container in all_containers(pod_spec(deployment)) {
            let image = container.image.as_deref().unwrap();
            assert!(
                overlay.images.iter().any(|i| {
                    let name = i.new_name.as_deref().unwrap_or(&i.name);
                    image == format!("{name}:{}", i.new_tag.as_deref().unwrap_or_default())
                }),
                "overlay: image {image} is not one the overlay sets"
            );
        }
    }
    // The overlay's patch took effect.
    let safety = main_container(rendered_overlay.deployment(SAFETY));
    let memory = &safety.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"];
    let base_memory = &main_container(base().objects.deployment(SAFETY))
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap()["memory"];
    assert_ne!(
        memory, base_memory,
        "overlay: the safety-service resources patch applies"
    );
    // Same application: the overlay's app labels and selectors are the base's.
    assert_eq!(
        rendered_overlay.deployment_of_app(CONTROLLER).metadata.name,
        rendered_base.deployment_of_app(CONTROLLER).metadata.name
    );
}
