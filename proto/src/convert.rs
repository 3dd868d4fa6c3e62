//! Conversions from k8s-openapi objects into snapshot messages.
//!
//! Each conversion carries exactly the fields the snapshot messages carry (see the "Carried
//! fields" of the safety API) and gives the same message that parsing the object's Kubernetes
//! JSON with [`crate::json`] gives:
//! - a message field keeps its option-ness: present (even `{}`) becomes `Some`, absent `None`,
//!   because an empty selector and a missing one mean different things;
//! - a Quantity becomes its string as written, a Time the RFC 3339 string Kubernetes writes;
//! - a missing string, list, map or bool becomes the proto3 default, which is what the JSON
//!   mapping gives for a missing field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use crate::safety::v1 as pb;

/// A snapshot of the given objects, each converted field for field, in the given order.
pub fn snapshot_from_objects(
    nodes: &[core::Node],
    pods: &[core::Pod],
    pdbs: &[policy::PodDisruptionBudget],
    namespaces: &[core::Namespace],
) -> pb::ClusterSnapshot {
    pb::ClusterSnapshot {
        nodes: nodes.iter().map(pb::Node::from).collect(),
        pods: pods.iter().map(pb::Pod::from).collect(),
        pod_disruption_budgets: pdbs.iter().map(pb::PodDisruptionBudget::from).collect(),
        namespaces: namespaces.iter().map(pb::Namespace::from).collect(),
    }
}

// ---- field helpers ----

fn string_or_default(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn converted_list<'a, K: 'a, P: From<&'a K>>(list: &'a Option<Vec<K>>) -> Vec<P> {
    list.iter().flatten().map(P::from).collect()
}

fn converted_option<'a, K: 'a, P: From<&'a K>>(value: &'a Option<K>) -> Option<P> {
    value.as_ref().map(P::from)
}

fn string_list(list: &Option<Vec<String>>) -> Vec<String> {
    list.clone().unwrap_or_default()
}

fn string_map(map: &Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.clone().unwrap_or_default()
}

/// Quantities stay the strings they were written as; the service parses them.
fn quantity_map(map: &Option<BTreeMap<String, Quantity>>) -> BTreeMap<String, String> {
    map.iter()
        .flatten()
        .map(|(key, quantity)| (key.clone(), quantity.0.clone()))
        .collect()
}

/// The RFC 3339 string of a Time exactly as k8s-openapi (and Kubernetes) writes it, so that a
/// converted object and its parsed JSON agree.
fn time_string(time: &Option<meta::Time>) -> String {
    let Some(time) = time else {
        return String::new();
    };
    match serde_json::to_value(time) {
        Ok(serde_json::Value::String(written)) => written,
        // Unreachable for a valid timestamp; jiff's own RFC 3339 form is the closest fallback.
        _ => time.0.to_string(),
    }
}

// ---- metadata and selectors ----

impl From<&meta::ObjectMeta> for pb::ObjectMeta {
    fn from(metadata: &meta::ObjectMeta) -> Self {
        Self {
            name: string_or_default(&metadata.name),
            namespace: string_or_default(&metadata.namespace),
            uid: string_or_default(&metadata.uid),
            labels: string_map(&metadata.labels),
            annotations: string_map(&metadata.annotations),
            owner_references: converted_list(&metadata.owner_references),
            creation_timestamp: time_string(&metadata.creation_timestamp),
            deletion_timestamp: time_string(&metadata.deletion_timestamp),
            deletion_grace_period_seconds: metadata.deletion_grace_period_seconds,
        }
    }
}

impl From<&meta::OwnerReference> for pb::OwnerReference {
    fn from(owner: &meta::OwnerReference) -> Self {
        Self {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            controller: owner.controller,
        }
    }
}

impl From<&meta::LabelSelector> for pb::LabelSelector {
    fn from(selector: &meta::LabelSelector) -> Self {
        Self {
            match_labels: string_map(&selector.match_labels),
            match_expressions: converted_list(&selector.match_expressions),
        }
    }
}

impl From<&meta::LabelSelectorRequirement> for pb::LabelSelectorRequirement {
    fn from(requirement: &meta::LabelSelectorRequirement) -> Self {
        Self {
            key: requirement.key.clone(),
            operator: requirement.operator.clone(),
            values: string_list(&requirement.values),
        }
    }
}

// ---- Node ----

impl From<&core::Node> for pb::Node {
    fn from(node: &core::Node) -> Self {
        Self {
            // k8s-openapi cannot tell a missing metadata from an empty one; objects always have it.
            metadata: Some(pb::ObjectMeta::from(&node.metadata)),
            spec: converted_option(&node.spec),
            status: converted_option(&node.status),
        }
    }
}

impl From<&core::NodeSpec> for pb::NodeSpec {
    fn from(spec: &core::NodeSpec) -> Self {
        Self {
            unschedulable: spec.unschedulable.unwrap_or_default(),
            taints: converted_list(&spec.taints),
            provider_id: string_or_default(&spec.provider_id),
        }
    }
}

impl From<&core::Taint> for pb::Taint {
    fn from(taint: &core::Taint) -> Self {
        Self {
            key: taint.key.clone(),
            value: string_or_default(&taint.value),
            effect: taint.effect.clone(),
            time_added: time_string(&taint.time_added),
        }
    }
}

impl From<&core::NodeStatus> for pb::NodeStatus {
    fn from(status: &core::NodeStatus) -> Self {
        Self {
            capacity: quantity_map(&status.capacity),
            allocatable: quantity_map(&status.allocatable),
            conditions: converted_list(&status.conditions),
        }
    }
}

impl From<&core::NodeCondition> for pb::NodeCondition {
    fn from(condition: &core::NodeCondition) -> Self {
        Self {
            r#type: condition.type_.clone(),
            status: condition.status.clone(),
        }
    }
}

// ---- Pod ----

impl From<&core::Pod> for pb::Pod {
    fn from(pod: &core::Pod) -> Self {
        Self {
            metadata: Some(pb::ObjectMeta::from(&pod.metadata)),
            spec: converted_option(&pod.spec),
            status: converted_option(&pod.status),
        }
    }
}

impl From<&core::PodSpec> for pb::PodSpec {
    fn from(spec: &core::PodSpec) -> Self {
        Self {
            node_name: string_or_default(&spec.node_name),
            node_selector: string_map(&spec.node_selector),
            affinity: converted_option(&spec.affinity),
            tolerations: converted_list(&spec.tolerations),
            containers: spec.containers.iter().map(pb::Container::from).collect(),
            init_containers: converted_list(&spec.init_containers),
            overhead: quantity_map(&spec.overhead),
            priority: spec.priority,
            priority_class_name: string_or_default(&spec.priority_class_name),
            volumes: converted_list(&spec.volumes),
            topology_spread_constraints: converted_list(&spec.topology_spread_constraints),
            resources: converted_option(&spec.resources),
            host_network: spec.host_network.unwrap_or_default(),
        }
    }
}

impl From<&core::PodStatus> for pb::PodStatus {
    fn from(status: &core::PodStatus) -> Self {
        Self {
            phase: string_or_default(&status.phase),
        }
    }
}

impl From<&core::Toleration> for pb::Toleration {
    fn from(toleration: &core::Toleration) -> Self {
        Self {
            key: string_or_default(&toleration.key),
            operator: string_or_default(&toleration.operator),
            value: string_or_default(&toleration.value),
            effect: string_or_default(&toleration.effect),
            toleration_seconds: toleration.toleration_seconds,
        }
    }
}

impl From<&core::Container> for pb::Container {
    fn from(container: &core::Container) -> Self {
        Self {
            name: container.name.clone(),
            resources: converted_option(&container.resources),
            ports: converted_list(&container.ports),
            restart_policy: string_or_default(&container.restart_policy),
        }
    }
}

impl From<&core::ResourceRequirements> for pb::ResourceRequirements {
    fn from(resources: &core::ResourceRequirements) -> Self {
        Self {
            requests: quantity_map(&resources.requests),
            limits: quantity_map(&resources.limits),
        }
    }
}

impl From<&core::ContainerPort> for pb::ContainerPort {
    fn from(port: &core::ContainerPort) -> Self {
        Self {
            name: string_or_default(&port.name),
            container_port: port.container_port,
            host_port: port.host_port.unwrap_or_default(),
            protocol: string_or_default(&port.protocol),
            host_ip: string_or_default(&port.host_ip),
        }
    }
}

impl From<&core::Volume> for pb::Volume {
    fn from(volume: &core::Volume) -> Self {
        Self {
            name: volume.name.clone(),
            empty_dir: converted_option(&volume.empty_dir),
            host_path: converted_option(&volume.host_path),
            persistent_volume_claim: converted_option(&volume.persistent_volume_claim),
        }
    }
}

impl From<&core::EmptyDirVolumeSource> for pb::EmptyDirVolumeSource {
    fn from(empty_dir: &core::EmptyDirVolumeSource) -> Self {
        Self {
            medium: string_or_default(&empty_dir.medium),
            size_limit: empty_dir
                .size_limit
                .as_ref()
                .map(|quantity| quantity.0.clone())
                .unwrap_or_default(),
        }
    }
}

impl From<&core::HostPathVolumeSource> for pb::HostPathVolumeSource {
    fn from(host_path: &core::HostPathVolumeSource) -> Self {
        Self {
            path: host_path.path.clone(),
            r#type: string_or_default(&host_path.type_),
        }
    }
}

impl From<&core::PersistentVolumeClaimVolumeSource> for pb::PersistentVolumeClaimVolumeSource {
    fn from(claim: &core::PersistentVolumeClaimVolumeSource) -> Self {
        Self {
            claim_name: claim.claim_name.clone(),
            read_only: claim.read_only.unwrap_or_default(),
        }
    }
}

impl From<&core::TopologySpreadConstraint> for pb::TopologySpreadConstraint {
    fn from(constraint: &core::TopologySpreadConstraint) -> Self {
        Self {
            max_skew: constraint.max_skew,
            topology_key: constraint.topology_key.clone(),
            when_unsatisfiable: constraint.when_unsatisfiable.clone(),
            label_selector: converted_option(&constraint.label_selector),
            min_domains: constraint.min_domains,
            node_affinity_policy: string_or_default(&constraint.node_affinity_policy),
            node_taints_policy: string_or_default(&constraint.node_taints_policy),
            match_label_keys: string_list(&constraint.match_label_keys),
        }
    }
}

// ---- affinity ----

impl From<&core::Affinity> for pb::Affinity {
    fn from(affinity: &core::Affinity) -> Self {
        Self {
            node_affinity: converted_option(&affinity.node_affinity),
            pod_affinity: converted_option(&affinity.pod_affinity),
            pod_anti_affinity: converted_option(&affinity.pod_anti_affinity),
        }
    }
}

impl From<&core::NodeAffinity> for pb::NodeAffinity {
    fn from(affinity: &core::NodeAffinity) -> Self {
        Self {
            required_during_scheduling_ignored_during_execution: converted_option(
                &affinity.required_during_scheduling_ignored_during_execution,
            ),
            preferred_during_scheduling_ignored_during_execution: converted_list(
                &affinity.preferred_during_scheduling_ignored_during_execution,
            ),
        }
    }
}

impl From<&core::NodeSelector> for pb::NodeSelector {
    fn from(selector: &core::NodeSelector) -> Self {
        Self {
            node_selector_terms: selector
                .node_selector_terms
                .iter()
                .map(pb::NodeSelectorTerm::from)
                .collect(),
        }
    }
}

impl From<&core::NodeSelectorTerm> for pb::NodeSelectorTerm {
    fn from(term: &core::NodeSelectorTerm) -> Self {
        Self {
            match_expressions: converted_list(&term.match_expressions),
            match_fields: converted_list(&term.match_fields),
        }
    }
}

impl From<&core::NodeSelectorRequirement> for pb::NodeSelectorRequirement {
    fn from(requirement: &core::NodeSelectorRequirement) -> Self {
        Self {
            key: requirement.key.clone(),
            operator: requirement.operator.clone(),
            values: string_list(&requirement.values),
        }
    }
}

impl From<&core::PreferredSchedulingTerm> for pb::PreferredSchedulingTerm {
    fn from(term: &core::PreferredSchedulingTerm) -> Self {
        Self {
            weight: term.weight,
            // Required in Kubernetes, so always present.
            preference: Some(pb::NodeSelectorTerm::from(&term.preference)),
        }
    }
}

impl From<&core::PodAffinity> for pb::PodAffinity {
    fn from(affinity: &core::PodAffinity) -> Self {
        Self {
            required_during_scheduling_ignored_during_execution: converted_list(
                &affinity.required_during_scheduling_ignored_during_execution,
            ),
            preferred_during_scheduling_ignored_during_execution: converted_list(
                &affinity.preferred_during_scheduling_ignored_during_execution,
            ),
        }
    }
}

impl From<&core::PodAntiAffinity> for pb::PodAntiAffinity {
    fn from(affinity: &core::PodAntiAffinity) -> Self {
        Self {
            required_during_scheduling_ignored_during_execution: converted_list(
                &affinity.required_during_scheduling_ignored_during_execution,
            ),
            preferred_during_scheduling_ignored_during_execution: converted_list(
                &affinity.preferred_during_scheduling_ignored_during_execution,
            ),
        }
    }
}

impl From<&core::PodAffinityTerm> for pb::PodAffinityTerm {
    fn from(term: &core::PodAffinityTerm) -> Self {
        Self {
            label_selector: converted_option(&term.label_selector),
            namespaces: string_list(&term.namespaces),
            topology_key: term.topology_key.clone(),
            namespace_selector: converted_option(&term.namespace_selector),
            match_label_keys: string_list(&term.match_label_keys),
            mismatch_label_keys: string_list(&term.mismatch_label_keys),
        }
    }
}

impl From<&core::WeightedPodAffinityTerm> for pb::WeightedPodAffinityTerm {
    fn from(term: &core::WeightedPodAffinityTerm) -> Self {
        Self {
            weight: term.weight,
            // Required in Kubernetes, so always present.
            pod_affinity_term: Some(pb::PodAffinityTerm::from(&term.pod_affinity_term)),
        }
    }
}

// ---- PodDisruptionBudget ----

impl From<&policy::PodDisruptionBudget> for pb::PodDisruptionBudget {
    fn from(pdb: &policy::PodDisruptionBudget) -> Self {
        Self {
            metadata: Some(pb::ObjectMeta::from(&pdb.metadata)),
            spec: converted_option(&pdb.spec),
            status: converted_option(&pdb.status),
        }
    }
}

impl From<&policy::PodDisruptionBudgetSpec> for pb::PodDisruptionBudgetSpec {
    fn from(spec: &policy::PodDisruptionBudgetSpec) -> Self {
        Self {
            // Missing matches nothing, `{}` matches every pod of the namespace: keep the difference.
            selector: converted_option(&spec.selector),
        }
    }
}

impl From<&policy::PodDisruptionBudgetStatus> for pb::PodDisruptionBudgetStatus {
    fn from(status: &policy::PodDisruptionBudgetStatus) -> Self {
        Self {
            disruptions_allowed: status.disruptions_allowed,
        }
    }
}

// ---- Namespace ----

impl From<&core::Namespace> for pb::Namespace {
    fn from(namespace: &core::Namespace) -> Self {
        Self {
            metadata: Some(pb::ObjectMeta::from(&namespace.metadata)),
        }
    }
}
