//! The cloud side of the executor over the VPSie client: ask for a machine (or find the one an
//! interrupted attempt created), find and delete the machine behind a Node.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use crate::executor::{Cloud, Machine};
use crate::vpsie::{VpsieClient, auth::parse_rfc3339};

pub const VPS_IDENTIFIER_ANNOTATION: &str = "autoscaler.vpsie.com/vps-identifier";

#[derive(Clone)]
pub struct VpsieCloud {
    client: VpsieClient,
    kube: kube::Client,
}

impl VpsieCloud {
    pub fn new(client: VpsieClient, kube: kube::Client) -> Self {
        VpsieCloud { client, kube }
    }

    /// The worker created after `intent_at` that is not `claimed` (by identifier or hostname),
    /// if exactly one was; several is ambiguous.
    async fn created_after(
        &self,
        intent_at: &str,
        claimed: &HashSet<String>,
    ) -> Result<Option<Machine>, String> {
        let intent = parse_rfc3339(intent_at)
            .ok_or_else(|| format!("unreadable intent time {intent_at:?}"))?;
        // Machine clocks and ours differ a little; a second of slack, never more.
        let since = intent
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let cluster = self.client.get_cluster().await.map_err(|e| e.to_string())?;
        let fresh: Vec<Machine> = cluster
            .nodes
            .iter()
            .filter(|n| !n.is_master())
            .filter(|n| !claimed.contains(&n.identifier) && !claimed.contains(&n.hostname))
            .filter(|n| {
                n.created_on
                    .as_deref()
                    .and_then(parse_rfc3339)
                    .is_some_and(|created| created >= since)
            })
            .map(|n| Machine {
                vps_id: n.identifier.clone(),
                hostname: n.hostname.clone(),
            })
            .collect();
        match fresh.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            several => Err(format!(
                "{} machines were created after the recorded intent ({}); refusing to guess which is ours",
                several.len(),
                several
                    .iter()
                    .map(|m| m.vps_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

impl Cloud for VpsieCloud {
    async fn provision(
        &self,
        group: &str,
        intent_at: &str,
        recover: bool,
        claimed: &HashSet<String>,
    ) -> Result<Option<Machine>, String> {
        if recover {
            return self.created_after(intent_at, claimed).await;
        }
        let added = self
            .client
            .add_worker(group)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(Machine {
            vps_id: added.identifier,
            hostname: added.hostname,
        }))
    }

    async fn delete_machine_of_node(&self, node: &str) -> Result<(), String> {
        let annotated = Api::<Node>::all(self.kube.clone())
            .get_opt(node)
            .await
            .map_err(|e| format!("reading node {node}: {e}"))?
            .and_then(|n| n.metadata.annotations)
            .and_then(|a| a.get(VPS_IDENTIFIER_ANNOTATION).cloned());
        let cluster = self.client.get_cluster().await.map_err(|e| e.to_string())?;
        let machine = cluster.nodes.iter().find(|m| match &annotated {
            Some(identifier) => &m.identifier == identifier,
            None => m.hostname == node,
        });
        let Some(machine) = machine else {
            return Err(format!(
                "no VPSie machine behind node {node}; the Node object is kept"
            ));
        };
        self.client
            .delete_worker(&machine.identifier)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn delete_machine(&self, vps_id: &str) -> Result<(), String> {
        self.client
            .delete_worker(vps_id)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
