//! The API resources the fake serves: one table row per resource, used for routing, discovery,
//! validation and the test-facing lookups by kind.

/// One served API resource (a row of the discovery document).
#[derive(Debug)]
pub(crate) struct ResourceDef {
    /// API group; `""` is the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    /// The plural resource name used in paths (`pods`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Writes to the main resource keep the stored `.status`; `.../status` writes change only it.
    pub status_subresource: bool,
    /// `metadata.generation` is set on create and bumped when anything but metadata/status changes.
    pub generation: bool,
    pub short_names: &'static [&'static str],
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `pods`, `poddisruptionbudgets.policy`: the name the API server uses in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

macro_rules! res {
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $namespaced:expr,
     $status:expr, $generation:expr, [$($short:expr),*]) => {
        ResourceDef {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $namespaced,
            status_subresource: $status,
            generation: $generation,
            short_names: &[$($short),*],
        }
    };
}

/// Every resource the fake serves. Order matters for lookups by bare kind: the core `Event` comes
/// before `events.k8s.io` `Event`.
pub(crate) static RESOURCES: &[ResourceDef] = &[
    res!(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        true,
        false,
        ["no"]
    ),
    res!("", "v1", "pods", "pod", "Pod", true, true, true, ["po"]),
    res!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        true,
        false,
        ["ns"]
    ),
    res!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        false,
        false,
        ["cm"]
    ),
    res!(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        false,
        false,
        ["ev"]
    ),
    res!(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        false,
        false,
        ["ev"]
    ),
    res!(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        true,
        true,
        ["pdb"]
    ),
    res!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        false,
        false,
        []
    ),
    res!(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        true,
        true,
        ["ds"]
    ),
    res!(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        true,
        true,
        ["rs"]
    ),
    res!(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        true,
        true,
        ["deploy"]
    ),
    res!(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        true,
        true,
        ["sts"]
    ),
];

/// Index into [`RESOURCES`].
pub(crate) type ResId = usize;

pub(crate) fn def(id: ResId) -> &'static ResourceDef {
    &RESOURCES[id]
}

pub(crate) fn by_path(group: &str, version: &str, plural: &str) -> Option<ResId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

pub(crate) fn by_api_version_kind(api_version: &str, kind: &str) -> Option<ResId> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.kind == kind)
}

/// kubectl-style lookup for the test API: `Pod`, `pods`, `po`, `Event.events.k8s.io`,
/// `events.events.k8s.io`, `pdb`, case-insensitive. Without a group the first match wins (the
/// core group for `Event`).
pub(crate) fn by_name(name: &str) -> Option<ResId> {
    let (base, group) = match name.split_once('.') {
        Some((b, g)) => (b, Some(g)),
        None => (name, None),
    };
    let base = base.to_ascii_lowercase();
    RESOURCES.iter().position(|r| {
        let name_matches = r.kind.eq_ignore_ascii_case(&base)
            || r.plural == base
            || r.singular == base
            || r.short_names.contains(&base.as_str());
        name_matches && group.is_none_or(|g| g.eq_ignore_ascii_case(r.group))
    })
}

/// The distinct (group, version) pairs served, in table order.
pub(crate) fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}
