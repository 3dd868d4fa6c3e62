//! The operation store: one ConfigMap per operation in the service's namespace, holding the
//! operation record as JSON, so that a restarted process finds every unfinished operation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

use crate::executor::{OperationRecord, Store};

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const MANAGER: &str = "vpsie-rebalancer";
const OPERATION_KEY: &str = "operation.json";
const ID_ANNOTATION: &str = "autoscaler.vpsie.com/operation";

#[derive(Clone)]
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
}

/// A ConfigMap name for an operation id: DNS-safe, with a stable hash so that different ids never
/// collide after sanitizing.
pub fn configmap_name(id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    let safe = safe.trim_matches('-');
    format!("rebalancer-op-{safe}-{:08x}", hash as u32)
}

impl ConfigMapStore {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        ConfigMapStore {
            api: Api::namespaced(client, namespace),
        }
    }
}

fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

impl Store for ConfigMapStore {
    async fn save(&self, operation: &OperationRecord) -> Result<(), String> {
        let name = configmap_name(&operation.id);
        let json = serde_json::to_string(operation)
            .map_err(|e| format!("encoding operation {}: {e}", operation.id))?;
        let existing = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| format!("reading configmap {name}: {}", describe(&e)))?;
        let mut map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY.to_string(),
                    MANAGER.to_string(),
                )])),
                annotations: Some(BTreeMap::from([(
                    ID_ANNOTATION.to_string(),
                    operation.id.clone(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(OPERATION_KEY.to_string(), json)])),
            ..ConfigMap::default()
        };
        let result = match existing {
            Some(current) => {
                map.metadata.resource_version = current.metadata.resource_version;
                self.api.replace(&name, &PostParams::default(), &map).await
            }
            None => self.api.create(&PostParams::default(), &map).await,
        };
        result
            .map(|_| ())
            .map_err(|e| format!("writing configmap {name}: {}", describe(&e)))
    }

    async fn load_all(&self) -> Result<Vec<OperationRecord>, String> {
        let list = self
            .api
            .list(&ListParams::default().labels(&format!("{MANAGED_BY}={MANAGER}")))
            .await
            .map_err(|e| format!("listing operation configmaps: {}", describe(&e)))?;
        let mut operations = Vec::with_capacity(list.items.len());
        for map in list.items {
            let name = map.metadata.name.unwrap_or_default();
            let Some(json) = map.data.as_ref().and_then(|d| d.get(OPERATION_KEY)) else {
                return Err(format!("configmap {name} has no {OPERATION_KEY}"));
            };
            // A record we cannot read would be an operation we silently forget: refuse to start.
            let record: OperationRecord = serde_json::from_str(json)
                .map_err(|e| format!("configmap {name}: unreadable operation record: {e}"))?;
            operations.push(record);
        }
        Ok(operations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_safe_and_distinct() {
        let a = configmap_name("Drift/General:2026");
        assert!(a.starts_with("rebalancer-op-drift-general-2026-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_ne!(configmap_name("a/b"), configmap_name("a:b"));
        assert!(configmap_name(&"x".repeat(400)).len() <= 253);
    }
}
