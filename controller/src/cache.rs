//! The watched cache (`controller.md`, "Watched cache"): kube-runtime reflectors over Nodes, Pods
//! (all namespaces), PodDisruptionBudgets and Namespaces, and the snapshot built from them.
//!
//! # Memory: compact entries
//! A store does not keep the k8s-openapi objects: their structs are mostly empty `Option`s laid
//! out inline (a `Container` is 2 KiB, a `Volume` 3 KiB, whatever they hold), so 150,000 pods
//! took 1.45 GB even with every field the snapshot does not carry pruned. As each object arrives
//! from the watcher it is converted with the proto crate's conversion (`pb::Pod::from(&pod)`,
//! which drops `managedFields` and every field the snapshot does not carry), the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (a whole copy of the object) is
//! removed, and the message is kept protobuf-encoded in a [`Cached`] entry, next to the name and
//! namespace the store is keyed by: a few hundred bytes per pod. The k8s-openapi object is
//! dropped at once.
//!
//! # Readiness
//! [`Cache::ready`] resolves once every reflector has completed its first list; the loop makes
//! no decision before. A watch error is logged and retried with kube-runtime's default backoff;
//! the stores keep the last complete state meanwhile (a re-list swaps in the new state at once).
//!
//! # Snapshot
//! [`Cache::snapshot`] does not decode the pods. The safety-service wants the snapshot encoded,
//! and the stores already hold each message encoded. So the encoded `ClusterSnapshot` is built by
//! concatenating the entries, each behind its field key and length. This is one copy of the
//! bytes, where decoding and then encoding again cost hundreds of thousands of allocations for a
//! large cluster. Only the nodes are decoded, because the scan reads them. The planner reads each
//! pod's [`PodUsage`], which is computed once as the pod arrives.
//!
//! The order is fixed, so the same cluster gives the same snapshot whatever the stores' hash
//! order: nodes and namespaces by name, pods and PodDisruptionBudgets by a 64-bit hash of
//! namespace and name. The hash is computed once per object, because sorting 150,000 pods by
//! their strings took a tenth of the time.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{self, Lookup, Store, reflector};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use prost::Message;
use serde::de::DeserializeOwned;
use vpsie_proto::safety::v1 as pb;

use crate::planner::PodUsage;
use crate::scan_snapshot::{NAMESPACES, NODES, PDBS, PODS, ScanSnapshot, SnapshotEncoder};

/// The annotation `kubectl apply` writes: a whole copy of the object, never needed here.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A Kubernetes kind the cache holds, and the snapshot message it becomes.
pub trait Cacheable:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static
{
    type Message: Message + Default;
    /// What the planner reads of an object, computed once as it arrives.
    type Facts: Clone + fmt::Debug + Send + Sync + 'static;

    /// The proto crate's conversion, without the last-applied annotation.
    fn message(&self) -> Self::Message;

    fn facts(message: &Self::Message) -> Self::Facts;
}

fn without_last_applied(meta: Option<&mut pb::ObjectMeta>) {
    if let Some(meta) = meta {
        meta.annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

impl Cacheable for Node {
    type Message = pb::Node;
    type Facts = ();
    fn facts(_: &pb::Node) {}
    fn message(&self) -> pb::Node {
        let mut message = pb::Node::from(self);
        without_last_applied(message.metadata.as_mut());
        message
    }
}

impl Cacheable for Pod {
    type Message = pb::Pod;
    type Facts = Arc<PodUsage>;
    fn facts(message: &pb::Pod) -> Arc<PodUsage> {
        Arc::new(PodUsage::of(message))
    }
    fn message(&self) -> pb::Pod {
        let mut message = pb::Pod::from(self);
        without_last_applied(message.metadata.as_mut());
        message
    }
}

impl Cacheable for PodDisruptionBudget {
    type Message = pb::PodDisruptionBudget;
    type Facts = ();
    fn facts(_: &pb::PodDisruptionBudget) {}
    fn message(&self) -> pb::PodDisruptionBudget {
        let mut message = pb::PodDisruptionBudget::from(self);
        without_last_applied(message.metadata.as_mut());
        message
    }
}

impl Cacheable for Namespace {
    type Message = pb::Namespace;
    type Facts = ();
    fn facts(_: &pb::Namespace) {}
    fn message(&self) -> pb::Namespace {
        let mut message = pb::Namespace::from(self);
        without_last_applied(message.metadata.as_mut());
        message
    }
}

/// One stored object: its name and namespace (the store's key) and its snapshot message,
/// protobuf-encoded.
pub struct Cached<K: Cacheable> {
    name: Box<str>,
    namespace: Option<Box<str>>,
    /// FNV-1a of the namespace and name: orders the snapshot without comparing strings.
    order: u64,
    encoded: Box<[u8]>,
    facts: K::Facts,
    kind: PhantomData<fn() -> K>,
}

impl<K: Cacheable> Clone for Cached<K> {
    fn clone(&self) -> Self {
        Cached {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            order: self.order,
            encoded: self.encoded.clone(),
            facts: self.facts.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Cacheable> fmt::Debug for Cached<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("kind", &K::kind(&()))
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("encoded_bytes", &self.encoded.len())
            .finish()
    }
}

impl<K: Cacheable> Cached<K> {
    /// Converts and encodes an object.
    pub fn new(object: &K) -> Self {
        let meta = object.meta();
        let name = meta.name.as_deref().unwrap_or_default();
        let namespace = meta.namespace.as_deref();
        let message = object.message();
        Cached {
            name: name.into(),
            namespace: namespace.map(Into::into),
            order: order_key(namespace.unwrap_or_default(), name),
            encoded: message.encode_to_vec().into_boxed_slice(),
            facts: K::facts(&message),
            kind: PhantomData,
        }
    }

    /// The snapshot message.
    pub fn message(&self) -> K::Message {
        // The bytes were encoded from this very message type.
        K::Message::decode(&*self.encoded).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// What the planner reads of the object.
    pub fn facts(&self) -> &K::Facts {
        &self.facts
    }

    /// The size of the encoded message.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }
}

impl<K: Cacheable> Lookup for Cached<K> {
    type DynamicType = ();

    fn kind(dyntype: &()) -> Cow<'_, str> {
        K::kind(dyntype)
    }

    fn group(dyntype: &()) -> Cow<'_, str> {
        K::group(dyntype)
    }

    fn version(dyntype: &()) -> Cow<'_, str> {
        K::version(dyntype)
    }

    fn plural(dyntype: &()) -> Cow<'_, str> {
        K::plural(dyntype)
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        self.namespace.as_deref().map(Cow::Borrowed)
    }

    /// Not kept: the store's keys ignore it, and the watcher tracks versions itself.
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    /// Not kept apart (the message has it): the store's keys ignore it.
    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

/// FNV-1a (64 bits) over the namespace, a 0xff separator (never in UTF-8) and the name.
fn order_key(namespace: &str, name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in namespace.bytes().chain([0xff]).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// A watcher event about an object, as the event about its [`Cached`] entry.
pub fn cached_event<K: Cacheable>(event: watcher::Event<K>) -> watcher::Event<Cached<K>> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(Cached::new(&object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(Cached::new(&object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(Cached::new(&object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// A store of [`Cached`] entries and the writer filling it.
pub fn store<K: Cacheable>() -> (Store<Cached<K>>, reflector::store::Writer<Cached<K>>) {
    let writer = reflector::store::Writer::<Cached<K>>::new(());
    (writer.as_reader(), writer)
}

/// Read handles on the four reflector stores. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    nodes: Store<Cached<Node>>,
    pods: Store<Cached<Pod>>,
    pdbs: Store<Cached<PodDisruptionBudget>>,
    namespaces: Store<Cached<Namespace>>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("nodes", &self.nodes.len())
            .field("pods", &self.pods.len())
            .field("pdbs", &self.pdbs.len())
            .field("namespaces", &self.namespaces.len())
            .finish()
    }
}

/// A reflector stopped: its writer is gone before the first list completed.
#[derive(Debug, thiserror::Error)]
#[error("the {0} reflector stopped before its first list completed")]
pub struct NotReady(&'static str);

/// The reflector of one kind over the whole cluster, with compact entries.
fn reflect<K: Cacheable>(
    client: Client,
    writer: reflector::store::Writer<Cached<K>>,
) -> impl Stream<Item = Result<watcher::Event<Cached<K>>, watcher::Error>> + Send {
    use kube::runtime::WatchStreamExt as _;
    let events = watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .map(|event| event.map(cached_event));
    reflector(writer, events)
}

impl Cache {
    /// Starts the four reflectors on `client`. The returned future drives them (watch, re-list,
    /// back off on errors) and never ends on its own: spawn it, drop it to stop watching.
    pub fn start(client: Client) -> (Cache, impl std::future::Future<Output = ()> + Send) {
        let (nodes, node_writer) = store::<Node>();
        let (pods, pod_writer) = store::<Pod>();
        let (pdbs, pdb_writer) = store::<PodDisruptionBudget>();
        let (namespaces, namespace_writer) = store::<Namespace>();
        let node_stream = reflect(client.clone(), node_writer);
        let pod_stream = reflect(client.clone(), pod_writer);
        let pdb_stream = reflect(client.clone(), pdb_writer);
        let namespace_stream = reflect(client.clone(), namespace_writer);
        let driver = async move {
            tokio::join!(
                drive("Node", node_stream),
                drive("Pod", pod_stream),
                drive("PodDisruptionBudget", pdb_stream),
                drive("Namespace", namespace_stream),
            );
        };
        (
            Cache {
                nodes,
                pods,
                pdbs,
                namespaces,
            },
            driver,
        )
    }

    /// A cache over stores filled elsewhere (benchmarks, tests).
    pub fn from_stores(
        nodes: Store<Cached<Node>>,
        pods: Store<Cached<Pod>>,
        pdbs: Store<Cached<PodDisruptionBudget>>,
        namespaces: Store<Cached<Namespace>>,
    ) -> Cache {
        Cache {
            nodes,
            pods,
            pdbs,
            namespaces,
        }
    }

    /// Resolves when every store has completed its first list.
    pub async fn ready(&self) -> Result<(), NotReady> {
        let (nodes, pods, pdbs, namespaces) = tokio::join!(
            self.nodes.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.pdbs.wait_until_ready(),
            self.namespaces.wait_until_ready(),
        );
        nodes.map_err(|_| NotReady("Node"))?;
        pods.map_err(|_| NotReady("Pod"))?;
        pdbs.map_err(|_| NotReady("PodDisruptionBudget"))?;
        namespaces.map_err(|_| NotReady("Namespace"))?;
        Ok(())
    }

    /// How many objects each store holds: nodes, pods, PodDisruptionBudgets, namespaces.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.nodes.len(),
            self.pods.len(),
            self.pdbs.len(),
            self.namespaces.len(),
        )
    }

    /// The total size of the encoded messages, in bytes.
    pub fn encoded_bytes(&self) -> usize {
        fn sum<K: Cacheable>(store: &Store<Cached<K>>) -> usize {
            store.state().iter().map(|e| e.encoded_len()).sum()
        }
        sum(&self.nodes) + sum(&self.pods) + sum(&self.pdbs) + sum(&self.namespaces)
    }

    /// The snapshot of one scan (see the module docs).
    pub fn snapshot(&self) -> ScanSnapshot {
        let nodes = sorted(&self.nodes, by_name);
        let pods = sorted_by_hash(&self.pods);
        let pdbs = sorted_by_hash(&self.pdbs);
        let namespaces = sorted(&self.namespaces, by_name);

        let mut encoded = SnapshotEncoder::with_capacity(
            encoded_len(NODES, &nodes)
                + encoded_len(PODS, &pods)
                + encoded_len(PDBS, &pdbs)
                + encoded_len(NAMESPACES, &namespaces),
        );
        encoded.append(NODES, nodes.iter().map(|entry| &*entry.encoded));
        encoded.append(PODS, pods.iter().map(|entry| &*entry.encoded));
        encoded.append(PDBS, pdbs.iter().map(|entry| &*entry.encoded));
        encoded.append(NAMESPACES, namespaces.iter().map(|entry| &*entry.encoded));

        let mut decoded_nodes = Vec::with_capacity(nodes.len());
        decoded_nodes.resize_with(nodes.len(), pb::Node::default);
        decode_into(&mut decoded_nodes, &nodes);
        ScanSnapshot::new(
            encoded.finish(),
            decoded_nodes,
            pods.iter().map(|entry| Arc::clone(entry.facts())).collect(),
        )
    }
}

/// The encoded size of a repeated snapshot field holding these entries.
fn encoded_len<K: Cacheable>(field: u32, entries: &[Arc<Cached<K>>]) -> usize {
    entries
        .iter()
        .map(|entry| SnapshotEncoder::field_len(field, entry.encoded.len()))
        .sum()
}

/// Decodes each entry into its (default) slot, in place.
fn decode_into<K: Cacheable>(slots: &mut [K::Message], entries: &[Arc<Cached<K>>]) {
    for (slot, entry) in slots.iter_mut().zip(entries) {
        // The bytes were encoded from this very message type.
        if slot.merge(&*entry.encoded).is_err() {
            *slot = K::Message::default();
        }
    }
}

fn sorted<K: Cacheable>(
    store: &Store<Cached<K>>,
    order: fn(&Cached<K>, &Cached<K>) -> Ordering,
) -> Vec<Arc<Cached<K>>> {
    let mut entries = store.state();
    entries.sort_unstable_by(|a, b| order(a, b));
    entries
}

fn by_name<K: Cacheable>(a: &Cached<K>, b: &Cached<K>) -> Ordering {
    a.name.cmp(&b.name)
}

/// A fixed order that compares strings only on a hash tie: pods are many. The keys are copied
/// out first, so that sorting does not chase a pointer per comparison.
fn sorted_by_hash<K: Cacheable>(store: &Store<Cached<K>>) -> Vec<Arc<Cached<K>>> {
    let mut keyed: Vec<(u64, Arc<Cached<K>>)> = store
        .state()
        .into_iter()
        .map(|entry| (entry.order, entry))
        .collect();
    keyed.sort_unstable_by(|(a_key, a), (b_key, b)| {
        a_key.cmp(b_key).then_with(|| {
            a.namespace
                .cmp(&b.namespace)
                .then_with(|| a.name.cmp(&b.name))
        })
    });
    keyed.into_iter().map(|(_, entry)| entry).collect()
}

/// Polls one reflector stream forever, logging watch errors (the stream backs off and retries).
async fn drive<K, S>(kind: &'static str, stream: S)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitDone) => tracing::debug!(kind, "reflector listed"),
            Ok(_) => {}
            Err(error) => tracing::warn!(kind, %error, "watch failed; retrying with backoff"),
        }
    }
    tracing::warn!(kind, "reflector stream ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn example_items() -> Vec<Value> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cluster.json");
        let document: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        document["items"].as_array().unwrap().clone()
    }

    /// What real objects carry beyond the snapshot's fields.
    fn decorate(item: &mut Value) {
        item["metadata"]["managedFields"] =
            json!([{ "manager": "kubectl", "operation": "Update" }]);
        item["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = json!("{\"big\": true}");
        item["metadata"]["annotations"]["kept"] = json!("yes");
    }

    fn check<K: Cacheable>(item: Value) -> K::Message
    where
        K::Message: PartialEq + fmt::Debug,
    {
        let object: K = serde_json::from_value(item).unwrap();
        let entry = Cached::new(&object);
        let message = entry.message();
        assert_eq!(message, object.message());
        assert_eq!(entry.name(), object.meta().name.as_deref().unwrap());
        assert_eq!(entry.namespace(), object.meta().namespace.as_deref());
        message
    }

    fn meta_of(meta: Option<&pb::ObjectMeta>) -> &pb::ObjectMeta {
        meta.unwrap()
    }

    #[test]
    fn entries_decode_to_the_converted_message_without_last_applied() {
        let mut checked = [0usize; 4];
        for mut item in example_items() {
            let kind = item["kind"].as_str().unwrap_or("").to_owned();
            decorate(&mut item);
            let expected = |item: &Value| -> pb::ObjectMeta {
                let mut meta = match kind.as_str() {
                    "Node" => {
                        pb::Node::from(&serde_json::from_value::<Node>(item.clone()).unwrap())
                            .metadata
                    }
                    "Pod" => {
                        pb::Pod::from(&serde_json::from_value::<Pod>(item.clone()).unwrap())
                            .metadata
                    }
                    "PodDisruptionBudget" => {
                        pb::PodDisruptionBudget::from(
                            &serde_json::from_value::<PodDisruptionBudget>(item.clone()).unwrap(),
                        )
                        .metadata
                    }
                    _ => {
                        pb::Namespace::from(
                            &serde_json::from_value::<Namespace>(item.clone()).unwrap(),
                        )
                        .metadata
                    }
                }
                .unwrap();
                assert!(meta.annotations.remove(LAST_APPLIED_ANNOTATION).is_some());
                meta
            };
            match kind.as_str() {
                "Node" => {
                    let want = expected(&item);
                    let message = check::<Node>(item);
                    assert_eq!(meta_of(message.metadata.as_ref()), &want);
                    assert_eq!(message.metadata.unwrap().annotations["kept"], "yes");
                    checked[0] += 1;
                }
                "Pod" => {
                    let want = expected(&item);
                    let whole: Pod = serde_json::from_value(item.clone()).unwrap();
                    let message = check::<Pod>(item);
                    assert_eq!(meta_of(message.metadata.as_ref()), &want);
                    assert_eq!(message.spec, pb::Pod::from(&whole).spec);
                    checked[1] += 1;
                }
                "PodDisruptionBudget" => {
                    let want = expected(&item);
                    let message = check::<PodDisruptionBudget>(item);
                    assert_eq!(meta_of(message.metadata.as_ref()), &want);
                    checked[2] += 1;
                }
                "Namespace" => {
                    let want = expected(&item);
                    let message = check::<Namespace>(item);
                    assert_eq!(meta_of(message.metadata.as_ref()), &want);
                    checked[3] += 1;
                }
                _ => {}
            }
        }
        assert!(checked.iter().all(|n| *n > 0), "{checked:?}");
    }

    fn fill<K: Cacheable>(objects: Vec<K>) -> Store<Cached<K>> {
        let (store, mut writer) = store::<K>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            writer.apply_watcher_event(&cached_event(watcher::Event::InitApply(object)));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        store
    }

    fn object<K: DeserializeOwned>(value: Value) -> K {
        serde_json::from_value(value).unwrap()
    }

    fn pods(order: impl Iterator<Item = usize>) -> Vec<Pod> {
        order
            .map(|i| {
                object(json!({
                    "metadata": {
                        "name": format!("p{i:05}"),
                        "namespace": if i % 2 == 0 { "b" } else { "a" },
                    },
                    "spec": { "nodeName": "n1", "containers": [{ "name": "c" }] },
                    "status": { "phase": "Running" }
                }))
            })
            .collect()
    }

    fn cache_with_pods(pods: Vec<Pod>) -> Cache {
        let (node_store, mut node_writer) = store::<Node>();
        node_writer.apply_watcher_event(&watcher::Event::Init);
        for name in ["n2", "n1", "gone"] {
            let node: Node = object(json!({ "metadata": { "name": name } }));
            node_writer.apply_watcher_event(&cached_event(watcher::Event::InitApply(node)));
        }
        node_writer.apply_watcher_event(&watcher::Event::InitDone);
        let gone: Node = object(json!({ "metadata": { "name": "gone" } }));
        node_writer.apply_watcher_event(&cached_event(watcher::Event::Delete(gone)));
        Cache::from_stores(
            node_store,
            fill(pods),
            fill(vec![object::<PodDisruptionBudget>(
                json!({ "metadata": { "name": "x", "namespace": "a" }, "spec": {} }),
            )]),
            fill(vec![
                object::<Namespace>(json!({ "metadata": { "name": "b" } })),
                object::<Namespace>(json!({ "metadata": { "name": "a" } })),
            ]),
        )
    }

    fn names<'a>(metas: impl Iterator<Item = Option<&'a pb::ObjectMeta>>) -> Vec<String> {
        metas
            .map(|m| {
                let m = m.unwrap();
                format!("{}/{}", m.namespace, m.name)
            })
            .collect()
    }

    #[test]
    fn the_snapshot_is_complete_and_in_a_fixed_order_whatever_the_store_order() {
        let cache = cache_with_pods(pods((0..5000).rev()));
        let scan = cache.snapshot();
        let snapshot = scan.decode().expect("the concatenated snapshot decodes");
        assert_eq!(scan.nodes(), &snapshot.nodes[..]);
        assert_eq!(
            names(snapshot.nodes.iter().map(|n| n.metadata.as_ref())),
            ["/n1", "/n2"]
        );
        assert_eq!(
            names(snapshot.namespaces.iter().map(|n| n.metadata.as_ref())),
            ["/a", "/b"]
        );
        assert_eq!(snapshot.pod_disruption_budgets.len(), 1);
        assert_eq!(cache.counts(), (2, 5000, 1, 2));
        assert!(cache.encoded_bytes() > 0);

        // Every pod, once, by the hash of namespace and name.
        let pod_names = names(snapshot.pods.iter().map(|p| p.metadata.as_ref()));
        let mut unique = pod_names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5000);
        let keys: Vec<u64> = pod_names
            .iter()
            .map(|n| {
                let (namespace, name) = n.split_once('/').unwrap();
                order_key(namespace, name)
            })
            .collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(snapshot.pods[0].spec.as_ref().unwrap().node_name, "n1");
        // Each pod's usage, in the same order.
        let usage: Vec<_> = scan.pod_usage().cloned().collect();
        let expected: Vec<_> = snapshot.pods.iter().map(PodUsage::of).collect();
        assert_eq!(usage, expected);

        // The same cluster filled in another order gives the same snapshot.
        let other = cache_with_pods(pods((0..5000).map(|i| (i * 7919) % 5000)));
        assert_eq!(other.snapshot(), scan);
    }
}
