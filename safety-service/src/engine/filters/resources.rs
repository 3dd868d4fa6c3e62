//! NodeResourcesFit: pod count, cpu, memory, ephemeral-storage and scalar (extended, hugepages)
//! resources against allocatable minus what the node's pods request.

use std::borrow::Cow;

use crate::engine::EngineError;
use crate::engine::quantity::Quantity;
use crate::engine::view::{self, w};

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// Resource amounts in the scheduler's units: millicores for cpu, whole units for the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources<'a> {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Scalar resources (extended, hugepages, ...), sorted by name.
    pub scalar: Vec<(&'a str, i64)>,
}

/// `schedutil.IsScalarResourceName`: extended resources (qualified names), prefixed native
/// resources, hugepages and attachable volumes.
fn is_scalar(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

impl<'a> Resources<'a> {
    pub fn add(&mut self, other: &Resources<'a>) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for &(name, amount) in &other.scalar {
            match self.scalar.binary_search_by_key(&name, |&(n, _)| n) {
                Ok(i) => self.scalar[i].1 = self.scalar[i].1.saturating_add(amount),
                Err(i) => self.scalar.insert(i, (name, amount)),
            }
        }
    }

    pub fn subtract(&mut self, other: &Resources<'a>) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for &(name, amount) in &other.scalar {
            match self.scalar.binary_search_by_key(&name, |&(n, _)| n) {
                Ok(i) => self.scalar[i].1 = self.scalar[i].1.saturating_sub(amount),
                Err(i) => self.scalar.insert(i, (name, amount.saturating_neg())),
            }
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by_key(&name, |&(n, _)| n)
            .map_or(0, |i| self.scalar[i].1)
    }

    fn is_zero_request(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.is_empty()
    }
}

/// A node's allocatable resources and pod capacity.
#[derive(Debug, Clone, Default)]
pub struct Allocatable<'a> {
    pub resources: Resources<'a>,
    pub pods: i64,
}

impl<'a> Allocatable<'a> {
    pub fn parse(
        list: &'a [w::StringPair],
        path: &dyn Fn() -> String,
    ) -> Result<Self, EngineError> {
        let mut pods = 0;
        if let Some(text) = view::lookup(list, PODS) {
            let text = std::str::from_utf8(text).map_err(|_| {
                EngineError::invalid(format!("{}[{PODS:?}]", path()), "not valid UTF-8")
            })?;
            pods = Quantity::parse(text)
                .map_err(|e| {
                    EngineError::invalid(
                        format!("{}[{PODS:?}]", path()),
                        format!("invalid quantity {text:?}: {e}"),
                    )
                })?
                .value();
        }
        Ok(Allocatable {
            resources: parse_list(list, path)?.to_resources(),
            pods,
        })
    }
}

/// A resource list with exact (nano) amounts, for the arithmetic of pod requests. The usual
/// resources have their own fields, so a pod without extended resources allocates nothing.
#[derive(Debug, Clone, Default)]
struct ExactList<'a> {
    cpu: Option<i128>,
    memory: Option<i128>,
    ephemeral_storage: Option<i128>,
    /// Scalar resources, sorted by name.
    scalar: Vec<(&'a str, i128)>,
}

fn merge(a: Option<i128>, b: Option<i128>, f: fn(i128, i128) -> i128) -> Option<i128> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl<'a> ExactList<'a> {
    fn is_empty(&self) -> bool {
        self.cpu.is_none()
            && self.memory.is_none()
            && self.ephemeral_storage.is_none()
            && self.scalar.is_empty()
    }

    fn combine(&mut self, other: &ExactList<'a>, f: fn(i128, i128) -> i128) {
        self.cpu = merge(self.cpu, other.cpu, f);
        self.memory = merge(self.memory, other.memory, f);
        self.ephemeral_storage = merge(self.ephemeral_storage, other.ephemeral_storage, f);
        for &(name, amount) in &other.scalar {
            match self.scalar.binary_search_by_key(&name, |&(n, _)| n) {
                Ok(i) => self.scalar[i].1 = f(self.scalar[i].1, amount),
                Err(i) => self.scalar.insert(i, (name, amount)),
            }
        }
    }

    fn add(&mut self, other: &ExactList<'a>) {
        self.combine(other, i128::saturating_add);
    }

    fn max(&mut self, other: &ExactList<'a>) {
        self.combine(other, i128::max);
    }

    /// Sets every resource `other` has that `self` lacks.
    fn fill_missing(&mut self, other: &ExactList<'a>) {
        self.cpu = self.cpu.or(other.cpu);
        self.memory = self.memory.or(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.or(other.ephemeral_storage);
        for &(name, amount) in &other.scalar {
            if let Err(i) = self.scalar.binary_search_by_key(&name, |&(n, _)| n) {
                self.scalar.insert(i, (name, amount));
            }
        }
    }

    fn to_resources(&self) -> Resources<'a> {
        let value = |nanos: Option<i128>| nanos.map_or(0, |n| Quantity::from_nanos(n).value());
        Resources {
            milli_cpu: self
                .cpu
                .map_or(0, |n| Quantity::from_nanos(n).milli_value()),
            memory: value(self.memory),
            ephemeral_storage: value(self.ephemeral_storage),
            scalar: self
                .scalar
                .iter()
                .map(|&(name, n)| (name, Quantity::from_nanos(n).value()))
                .collect(),
        }
    }
}

/// A resource list of the wire view. Read from the last pair back, so that of duplicate names
/// only the last (the one a map keeps) is parsed.
fn parse_list<'a>(
    list: &'a [w::StringPair],
    path: &dyn Fn() -> String,
) -> Result<ExactList<'a>, EngineError> {
    let mut exact = ExactList::default();
    for pair in list.iter().rev() {
        let name = view::text(&pair.key, || format!("{} (a key)", path()))?;
        let seen = match name {
            CPU => exact.cpu.is_some(),
            MEMORY => exact.memory.is_some(),
            EPHEMERAL_STORAGE => exact.ephemeral_storage.is_some(),
            other if is_scalar(other) => exact.scalar.iter().any(|&(n, _)| n == other),
            // Not counted, but still validated.
            _ => false,
        };
        if seen {
            continue;
        }
        let text = view::text(&pair.value, || format!("{}[{name:?}]", path()))?;
        let quantity = Quantity::parse(text).map_err(|e| {
            EngineError::invalid(
                format!("{}[{name:?}]", path()),
                format!("invalid quantity {text:?}: {e}"),
            )
        })?;
        let nanos = Some(quantity.nanos());
        match name {
            CPU => exact.cpu = nanos,
            MEMORY => exact.memory = nanos,
            EPHEMERAL_STORAGE => exact.ephemeral_storage = nanos,
            other if is_scalar(other) => exact.scalar.push((other, quantity.nanos())),
            _ => {}
        }
    }
    exact.scalar.sort_unstable_by_key(|&(n, _)| n);
    Ok(exact)
}

/// Requests of one container (or the pod-level block), with the API server's defaulting:
/// a resource with a limit and no request requests its limit.
fn requests_of<'a>(
    resources: Option<&'a w::ResourceRequirements>,
    path: &dyn Fn() -> String,
) -> Result<ExactList<'a>, EngineError> {
    let Some(resources) = resources else {
        return Ok(ExactList::default());
    };
    let mut requests = parse_list(&resources.requests, &|| format!("{}.requests", path()))?;
    if !resources.limits.is_empty() {
        let limits = parse_list(&resources.limits, &|| format!("{}.limits", path()))?;
        requests.fill_missing(&limits);
    }
    Ok(requests)
}

/// `resourcehelper.PodRequests`: the sum of the containers, raised to the largest init container
/// (sidecars — init containers with `restartPolicy: Always` — add up and stay for the rest),
/// replaced by pod-level requests for cpu and memory when set, plus the pod overhead.
pub fn pod_requests<'a>(
    spec: &'a w::PodSpec,
    path: &dyn Fn() -> String,
) -> Result<Resources<'a>, EngineError> {
    let mut total = ExactList::default();
    for (i, container) in spec.containers.iter().enumerate() {
        total.add(&requests_of(container.resources.as_ref(), &|| {
            format!("{}.containers[{i}].resources", path())
        })?);
    }
    if !spec.init_containers.is_empty() {
        let mut sidecars = ExactList::default();
        let mut init_peak = ExactList::default();
        for (i, container) in spec.init_containers.iter().enumerate() {
            let requests = requests_of(container.resources.as_ref(), &|| {
                format!("{}.initContainers[{i}].resources", path())
            })?;
            if container.restart_policy.as_ref() == b"Always" {
                total.add(&requests);
                sidecars.add(&requests);
                init_peak.max(&sidecars);
            } else {
                let mut while_running = requests;
                while_running.add(&sidecars);
                init_peak.max(&while_running);
            }
        }
        total.max(&init_peak);
    }
    let pod_level = requests_of(spec.resources.as_ref(), &|| format!("{}.resources", path()))?;
    if !pod_level.is_empty() {
        total.cpu = pod_level.cpu.or(total.cpu);
        total.memory = pod_level.memory.or(total.memory);
    }
    if !spec.overhead.is_empty() {
        total.add(&parse_list(&spec.overhead, &|| {
            format!("{}.overhead", path())
        })?);
    }
    Ok(total.to_resources())
}

/// The NodeResourcesFit filter: `None` when the pod fits, otherwise the reasons joined.
pub fn check(
    request: &Resources<'_>,
    allocatable: &Allocatable<'_>,
    requested: &Resources<'_>,
    pods_on_node: usize,
) -> Option<Cow<'static, str>> {
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    if pods_on_node as i64 + 1 > allocatable.pods {
        reasons.push(Cow::Borrowed("Too many pods"));
    }
    if !request.is_zero_request() {
        let free = &allocatable.resources;
        if request.milli_cpu > 0
            && request.milli_cpu > free.milli_cpu.saturating_sub(requested.milli_cpu)
        {
            reasons.push(Cow::Borrowed("Insufficient cpu"));
        }
        if request.memory > 0 && request.memory > free.memory.saturating_sub(requested.memory) {
            reasons.push(Cow::Borrowed("Insufficient memory"));
        }
        if request.ephemeral_storage > 0
            && request.ephemeral_storage
                > free
                    .ephemeral_storage
                    .saturating_sub(requested.ephemeral_storage)
        {
            reasons.push(Cow::Borrowed("Insufficient ephemeral-storage"));
        }
        for &(name, amount) in &request.scalar {
            if amount > 0 && amount > free.scalar(name).saturating_sub(requested.scalar(name)) {
                reasons.push(Cow::Owned(format!("Insufficient {name}")));
            }
        }
    }
    match reasons.len() {
        0 => None,
        1 => reasons.pop(),
        _ => Some(Cow::Owned(reasons.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::view::view_of_json;
    use vpsie_proto::safety::v1 as pb;

    fn spec(json: &str) -> w::PodSpec {
        view_of_json::<pb::PodSpec, _>(json)
    }

    fn requests(json: &str) -> (i64, i64) {
        let spec = spec(json);
        let r = pod_requests(&spec, &|| "spec".into()).expect("requests");
        (r.milli_cpu, r.memory)
    }

    #[test]
    fn containers_add_up_and_init_containers_take_the_max() {
        let json = r#"{"containers":[
              {"name":"a","resources":{"requests":{"cpu":"500m","memory":"1Gi"}}},
              {"name":"b","resources":{"requests":{"cpu":"250m","memory":"1Gi"}}}],
            "initContainers":[{"name":"i","resources":{"requests":{"cpu":"2","memory":"1Mi"}}}]}"#;
        assert_eq!(requests(json), (2000, 2 << 30));
    }

    #[test]
    fn sidecars_add_to_the_sum_and_to_later_init_containers() {
        // sidecar 1 cpu runs beside everything; the plain init container (2 cpu) runs after it,
        // so the init phase peaks at 3 cpu; the main phase is 1 + 0.5.
        let json = r#"{"containers":[{"name":"app","resources":{"requests":{"cpu":"500m"}}}],
            "initContainers":[
              {"name":"proxy","restartPolicy":"Always","resources":{"requests":{"cpu":"1"}}},
              {"name":"migrate","resources":{"requests":{"cpu":"2"}}}]}"#;
        assert_eq!(requests(json).0, 3000);
        // an init container before the sidecar does not see it
        let json = r#"{"containers":[{"name":"app","resources":{"requests":{"cpu":"500m"}}}],
            "initContainers":[
              {"name":"migrate","resources":{"requests":{"cpu":"1200m"}}},
              {"name":"proxy","restartPolicy":"Always","resources":{"requests":{"cpu":"1"}}}]}"#;
        assert_eq!(requests(json).0, 1500);
    }

    #[test]
    fn pod_level_requests_replace_cpu_and_memory_and_overhead_adds() {
        let json = r#"{"containers":[{"name":"a","resources":{"requests":{"cpu":"3","memory":"1Gi","ephemeral-storage":"1Gi"}}}],
            "resources":{"requests":{"cpu":"1"}},
            "overhead":{"cpu":"250m","memory":"120Mi"}}"#;
        let spec = spec(json);
        let r = pod_requests(&spec, &|| "spec".into()).expect("requests");
        assert_eq!(r.milli_cpu, 1250);
        assert_eq!(r.memory, (1 << 30) + 120 * (1 << 20));
        assert_eq!(r.ephemeral_storage, 1 << 30);
    }

    #[test]
    fn limits_default_requests() {
        let json = r#"{"containers":[{"name":"a","resources":{"limits":{"cpu":"2","nvidia.com/gpu":"1"}}}]}"#;
        let spec = spec(json);
        let r = pod_requests(&spec, &|| "spec".into()).expect("requests");
        assert_eq!(r.milli_cpu, 2000);
        assert_eq!(r.scalar("nvidia.com/gpu"), 1);
    }

    #[test]
    fn sums_are_exact_before_rounding() {
        // two containers of 0.1 millicore: 0.2m in total, which rounds up to 1m (not 2m)
        let json = r#"{"containers":[
            {"name":"a","resources":{"requests":{"cpu":"0.0001"}}},
            {"name":"b","resources":{"requests":{"cpu":"0.0001"}}}]}"#;
        assert_eq!(requests(json).0, 1);
    }

    #[test]
    fn bad_quantity_names_its_path() {
        let json = r#"{"containers":[{"name":"a","resources":{"requests":{"cpu":"12x"}}}]}"#;
        let spec = spec(json);
        let err = pod_requests(&spec, &|| "snapshot.pods[12].spec".into()).expect_err("bad");
        assert!(
            err.to_string()
                .starts_with("snapshot.pods[12].spec.containers[0].resources.requests[\"cpu\"]: invalid quantity \"12x\""),
            "{err}"
        );
    }

    #[test]
    fn fit_reasons_in_kube_scheduler_order() {
        let node: Vec<w::StringPair> = [
            ("cpu", "1"),
            ("memory", "1Gi"),
            ("pods", "1"),
            ("nvidia.com/gpu", "0"),
        ]
        .into_iter()
        .map(|(k, v)| w::StringPair {
            key: k.as_bytes().to_vec().into(),
            value: v.as_bytes().to_vec().into(),
        })
        .collect();
        let allocatable = Allocatable::parse(&node, &|| "n".into()).expect("allocatable");
        let request = Resources {
            milli_cpu: 2000,
            memory: 2 << 30,
            ephemeral_storage: 0,
            scalar: vec![("nvidia.com/gpu", 1)],
        };
        assert_eq!(
            check(&request, &allocatable, &Resources::default(), 1).as_deref(),
            Some(
                "Too many pods; Insufficient cpu; Insufficient memory; Insufficient nvidia.com/gpu"
            )
        );
        let small = Resources {
            milli_cpu: 500,
            ..Resources::default()
        };
        assert_eq!(check(&small, &allocatable, &Resources::default(), 0), None);
        let used = Resources {
            milli_cpu: 600,
            ..Resources::default()
        };
        assert_eq!(
            check(&small, &allocatable, &used, 0).as_deref(),
            Some("Insufficient cpu")
        );
    }
}
