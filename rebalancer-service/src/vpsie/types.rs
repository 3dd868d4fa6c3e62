//! What the VPSie endpoints return (`vpsie-api.md`, "Endpoints"), read leniently: numeric ids may
//! arrive as strings, optional fields may be missing or null.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::VpsieError;

/// `GET /k8s/cluster/byId/{cluster}` → data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Cluster {
    #[serde(default, deserialize_with = "de_string")]
    pub cluster_name: String,
    #[serde(default, deserialize_with = "de_string")]
    pub identifier: String,
    #[serde(default, deserialize_with = "de_vec")]
    pub nodes: Vec<ClusterNode>,
}

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClusterNode {
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "de_string")]
    pub identifier: String,
    #[serde(default, deserialize_with = "de_string")]
    pub hostname: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub default_ip: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub private_ip: Option<String>,
    /// `"master"` or `"slave"` (a worker) on the API.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub node_type: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub datacenter_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub created_on: Option<String>,
}

impl ClusterNode {
    pub fn is_master(&self) -> bool {
        self.node_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("master"))
    }
}

/// `GET /k8s/node/groups/byClusterId/{cluster}` → data[].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeGroup {
    #[serde(deserialize_with = "de_i64")]
    pub id: i64,
    #[serde(deserialize_with = "de_string")]
    pub group_name: String,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub identifier: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub boxsize_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub datacenter_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub cpu: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub ram: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub ssd: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub nodes_count: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub cluster_id: Option<String>,
}

/// A machine's status as the API words it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MachineStatus {
    Provisioning,
    Running,
    Deleting,
    /// Any other word (kept verbatim, lower-cased).
    Other(String),
}

impl MachineStatus {
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "provisioning" => MachineStatus::Provisioning,
            "running" => MachineStatus::Running,
            "deleting" => MachineStatus::Deleting,
            other => MachineStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MachineStatus::Provisioning => "provisioning",
            MachineStatus::Running => "running",
            MachineStatus::Deleting => "deleting",
            MachineStatus::Other(s) => s,
        }
    }
}

impl fmt::Display for MachineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MachineStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MachineStatus::parse(&de_string(d)?))
    }
}

/// `GET /vm/{identifier}` → data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Machine {
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "de_string")]
    pub identifier: String,
    #[serde(default, deserialize_with = "de_string")]
    pub hostname: String,
    pub status: MachineStatus,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub boxsize_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub created_on: Option<String>,
}

/// The `data` of a successful add, when present.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct AddReply {
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub id: Option<i64>,
    #[serde(deserialize_with = "de_string")]
    pub identifier: String,
    #[serde(default, deserialize_with = "de_string")]
    pub hostname: String,
    #[serde(default)]
    pub status: Option<MachineStatus>,
}

/// How [`crate::vpsie::VpsieClient::add_worker`] learned about the machine it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddRecovery {
    /// From the add reply's `data`.
    Reply,
    /// The add was accepted without `data` (asynchronous creation); found by listing.
    ListedAfterAsyncAccept,
    /// The add failed ambiguously (timeout, 5xx, dropped connection); found by listing, not
    /// created again. `error` is the failure the POST met.
    ListedAfterFailure { error: VpsieError },
}

/// A worker created by [`crate::vpsie::VpsieClient::add_worker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedMachine {
    pub id: Option<i64>,
    pub identifier: String,
    pub hostname: String,
    /// As the reply said; `None` when the machine was found by listing.
    pub status: Option<MachineStatus>,
    pub group_id: i64,
    pub recovery: AddRecovery,
    /// POST requests sent for this add (more than one only after an ambiguous failure whose
    /// listing found nothing).
    pub post_attempts: u32,
}

impl AddedMachine {
    /// Whether the machine was identified by listing the cluster rather than from the reply.
    pub fn recovered_by_listing(&self) -> bool {
        self.recovery != AddRecovery::Reply
    }
}

/// What a delete achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The API accepted the deletion.
    Deleted,
    /// The API answered 404: the machine was already gone.
    AlreadyGone,
}

/// The identifiers and hostnames of a cluster's nodes at one moment: the "before" of an add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSnapshot {
    identifiers: HashSet<String>,
    hostnames: HashSet<String>,
}

impl NodeSnapshot {
    pub fn of(nodes: &[ClusterNode]) -> Self {
        NodeSnapshot {
            identifiers: nodes.iter().map(|n| n.identifier.clone()).collect(),
            hostnames: nodes
                .iter()
                .filter(|n| !n.hostname.is_empty())
                .map(|n| n.hostname.clone())
                .collect(),
        }
    }

    /// Workers of `after` that were not there before: neither their identifier nor their hostname
    /// was known.
    pub fn new_workers<'a>(&self, after: &'a [ClusterNode]) -> Vec<&'a ClusterNode> {
        after
            .iter()
            .filter(|n| {
                !n.is_master()
                    && !self.identifiers.contains(&n.identifier)
                    && (n.hostname.is_empty() || !self.hostnames.contains(&n.hostname))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.identifiers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identifiers.is_empty()
    }
}

fn value_to_string(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

fn value_to_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(value_to_string(Value::deserialize(d)?).unwrap_or_default())
}

fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(value_to_string(Value::deserialize(d)?).filter(|s| !s.is_empty()))
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(value_to_i64(&Value::deserialize(d)?))
}

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    value_to_i64(&v)
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer id, got {v}")))
}

fn de_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(identifier: &str, hostname: &str, node_type: &str) -> ClusterNode {
        serde_json::from_value(json!({
            "identifier": identifier, "hostname": hostname, "node_type": node_type
        }))
        .unwrap()
    }

    #[test]
    fn lenient_fields() {
        let n: ClusterNode = serde_json::from_value(json!({
            "id": "12", "identifier": 99, "hostname": null, "datacenter_id": 3, "created_on": ""
        }))
        .unwrap();
        assert_eq!(n.id, Some(12));
        assert_eq!(n.identifier, "99");
        assert_eq!(n.hostname, "");
        assert_eq!(n.created_on, None);
        let g: NodeGroup =
            serde_json::from_value(json!({"id": "7", "group_name": "w", "cluster_id": 5})).unwrap();
        assert_eq!((g.id, g.cluster_id.as_deref()), (7, Some("5")));
        let c: Cluster = serde_json::from_value(json!({"nodes": null})).unwrap();
        assert!(c.nodes.is_empty());
        let m: Machine =
            serde_json::from_value(json!({"identifier": "a", "status": "Running"})).unwrap();
        assert_eq!(m.status, MachineStatus::Running);
        assert!(
            serde_json::from_value::<NodeGroup>(json!({"id": "x", "group_name": "w"})).is_err()
        );
    }

    #[test]
    fn snapshot_diff_finds_new_workers_only() {
        let before = vec![
            node("m1", "k-master", "master"),
            node("w1", "k-w-1", "slave"),
        ];
        let snap = NodeSnapshot::of(&before);
        let after = vec![
            node("m1", "k-master", "master"),
            node("w1", "k-w-1", "slave"),
            node("m2", "k-master-2", "master"),
            node("w2", "k-w-2", "slave"),
            node("w1b", "k-w-1", "slave"),
        ];
        let new: Vec<&str> = snap
            .new_workers(&after)
            .iter()
            .map(|n| n.identifier.as_str())
            .collect();
        assert_eq!(new, vec!["w2"]);
    }
}
