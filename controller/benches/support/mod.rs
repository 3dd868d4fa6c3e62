//! A large synthetic cluster in reflector stores, for the snapshot benchmark and the memory
//! example: `safety_service::synthetic` generates the snapshot messages (5,000 nodes and 150,000
//! pods for `ClusterShape::large()`); each message goes back to its Kubernetes JSON (proto3 JSON
//! mapping, int64 strings turned into numbers), into its k8s-openapi type, and through the cache's
//! compaction into a `reflector::store::Writer`, one object at a time, as a list would.
//!
//! The generated messages are first written out as JSON lines into one buffer and freed, so that
//! the heap the stores grow in is not riddled with the generator's freed objects (the resident
//! memory then shows the cache, not the generator's leftovers).

#![allow(dead_code)]

use controller::cache::{self, Cache, Cacheable, Cached};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use safety_service::synthetic::{ClusterShape, generate};
use serde::Serialize;
use serde_json::Value;

/// int64 fields, written as strings by the proto3 JSON mapping and as numbers by Kubernetes.
const INT64_FIELDS: [&str; 2] = ["deletionGracePeriodSeconds", "tolerationSeconds"];

fn numbers_for_int64(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                if INT64_FIELDS.contains(&key.as_str())
                    && let Value::String(text) = field
                    && let Ok(number) = text.parse::<i64>()
                {
                    *field = Value::from(number);
                } else {
                    numbers_for_int64(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(numbers_for_int64),
        _ => {}
    }
}

/// The Kubernetes JSON of each message, one per line.
fn json_lines<M: Serialize>(messages: Vec<M>) -> Vec<u8> {
    let mut lines = Vec::new();
    for message in messages {
        let mut value = serde_json::to_value(&message).expect("messages serialise");
        numbers_for_int64(&mut value);
        serde_json::to_writer(&mut lines, &value).expect("values serialise");
        lines.push(b'\n');
    }
    lines
}

fn store_of<K: Cacheable>(lines: &[u8]) -> Store<Cached<K>> {
    let (store, mut writer) = cache::store::<K>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for line in lines.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
        let object: K =
            serde_json::from_slice(line).expect("a synthetic object is a valid Kubernetes object");
        writer.apply_watcher_event(&cache::cached_event(watcher::Event::InitApply(object)));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// Hands freed heap pages back to the kernel (glibc only; elsewhere nothing).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free memory of glibc's allocator.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// A cache holding the synthetic cluster of `shape`.
pub fn cache_of(shape: &ClusterShape) -> Cache {
    let snapshot = generate(shape);
    let nodes = json_lines(snapshot.nodes);
    let pods = json_lines(snapshot.pods);
    let pdbs = json_lines(snapshot.pod_disruption_budgets);
    let namespaces = json_lines(snapshot.namespaces);
    trim();
    Cache::from_stores(
        store_of::<Node>(&nodes),
        store_of::<Pod>(&pods),
        store_of::<PodDisruptionBudget>(&pdbs),
        store_of::<Namespace>(&namespaces),
    )
}

/// 5,000 nodes, 150,000 pods.
pub fn large_cache() -> Cache {
    cache_of(&ClusterShape::large())
}
