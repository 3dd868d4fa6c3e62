//! An in-memory, thread-safe fake of the Kubernetes API server for testing the kube-rs adapters.
//!
//! [`KubeFake::start`] serves plain HTTP on `127.0.0.1:<random port>` with the real API paths
//! and JSON: core/v1 Nodes, Pods, Namespaces, ConfigMaps and Events, events.k8s.io/v1 Events,
//! policy/v1 PodDisruptionBudgets, coordination.k8s.io/v1 Leases and apps/v1 DaemonSets,
//! ReplicaSets, Deployments and StatefulSets. Verbs: get, list, watch, create, replace (PUT),
//! patch (merge, strategic merge treated as merge, JSON patch, server-side apply treated as a merge
//! of the given object), delete, deletecollection, the `status` subresource and the Pod
//! `eviction` subresource with PodDisruptionBudget checks. Every write takes the next value of
//! one global resourceVersion counter; watches stream the changes after a resourceVersion, so
//! kube-runtime's watcher and reflector work against it.
//!
//! Deliberate simplifications:
//! - no admission, validation, defaulting, RBAC, managedFields or server-side apply field
//!   ownership; strategic merge patch and apply are JSON merge patches; apply bodies must be JSON;
//! - `limit`/`continue` are ignored (lists are always complete) and `resourceVersion` on list/get
//!   is ignored (always the latest state); the watch history is never compacted (no 410 Gone);
//! - a deleted Pod disappears at once (no kubelet, no graceful termination); objects with
//!   finalizers get a `deletionTimestamp` and stay until the last finalizer is removed;
//! - PodDisruptionBudget status is not computed: tests set `status.disruptionsAllowed` (seed it
//!   with [`KubeFake::apply`] or call [`KubeFake::set_pdb_disruptions_allowed`]); an eviction
//!   decrements it; a PDB created through the API starts with `disruptionsAllowed: 0`;
//! - core/v1 and events.k8s.io/v1 Events are stored apart (the real server converts between them).
//!
//! Kubernetes semantics kept: 409 AlreadyExists/Conflict `Status` objects with the API server's
//! messages, resourceVersion and uid preconditions on PUT/PATCH/DELETE, no-op writes commit
//! nothing, writes to the main resource keep `.status` (nodes, pods, PDBs, namespaces, apps) and
//! `.../status` writes change only it, create strategies reset status (a Pod starts `Pending`),
//! creating in a missing namespace is a 404, and selector watches turn relabels into ADDED/DELETED.
//!
//! Note for service code: kube-rs by default retries 429/503/504 inside the client (see
//! [`KubeFake::config`]); [`KubeFake::client`] turns that off.

mod patch;
mod resources;
mod selector;
mod server;
mod status;
mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use resources::ResId;
use server::{Shared, parse_query};
use store::{Origin, Store};

/// One HTTP request the fake received.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// The URL path, e.g. `/api/v1/namespaces/default/pods/web-1/eviction`.
    pub path: String,
    /// The raw (still URL-encoded) query string, without `?`; see [`Request::query_param`].
    pub query: String,
    /// The `Content-Type` without parameters, e.g. `application/merge-patch+json`.
    pub content_type: Option<String>,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
}

impl Request {
    /// A decoded query parameter, e.g. `labelSelector` or `fieldSelector`.
    pub fn query_param(&self, key: &str) -> Option<String> {
        parse_query(&self.query)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Anything but GET (POST, PUT, PATCH, DELETE): a request that may change state.
    pub fn is_write(&self) -> bool {
        !self.method.eq_ignore_ascii_case("GET") && !self.method.eq_ignore_ascii_case("HEAD")
    }

    /// A watch request (`?watch=true` or `watch=1`).
    pub fn is_watch(&self) -> bool {
        matches!(self.query_param("watch").as_deref(), Some("true" | "1"))
    }
}

/// A running fake API server. Dropping it stops the server and ends open watches.
pub struct KubeFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

fn res_by_name(kind: &str) -> ResId {
    resources::by_name(kind).unwrap_or_else(|| panic!("KubeFake does not serve kind {kind:?}"))
}

impl KubeFake {
    /// Starts the fake on `127.0.0.1:0` with the namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`, as a new cluster has.
    pub async fn start() -> KubeFake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let mut store = Store::default();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store
                .create(
                    store::namespace_res(),
                    None,
                    json!({ "metadata": { "name": ns }, "status": { "phase": "Active" } }),
                    Origin::Seed,
                    false,
                )
                .expect("seed namespace");
        }
        let shared = Arc::new(Shared::new(store, addr));
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        KubeFake {
            shared,
            addr,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube-rs configuration for the fake: no auth, plain HTTP, default namespace `default`,
    /// and `default_retry` off.
    ///
    /// kube-rs (5.x) by default retries every 429, 503 and 504 answer inside the client, up to 15
    /// times with exponential backoff (minutes in total), before the caller sees the error; an
    /// eviction refused by a PodDisruptionBudget is such a 429. Tests want the answer at once, so
    /// this configuration turns that off; set `default_retry = true` on it to test a client
    /// configured the default way (what `Config::infer`/a kubeconfig gives a service).
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url().parse().expect("valid url"));
        config.default_retry = false;
        config
    }

    /// A kube-rs client for [`KubeFake::config`]. Must be called inside a Tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("kube client for the fake")
    }

    /// Writes `dir/kubeconfig` pointing at the fake (cluster, user and context `kube-fake`,
    /// namespace `default`) for a separate process to use through `KUBECONFIG`.
    pub fn kubeconfig_file(&self, dir: impl AsRef<Path>) -> PathBuf {
        let path = dir.as_ref().join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: kube-fake\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: kube-fake\n  user: {{}}\n\
             contexts:\n\
             - name: kube-fake\n  context:\n    cluster: kube-fake\n    user: kube-fake\n    namespace: default\n\
             current-context: kube-fake\n\
             preferences: {{}}\n",
            url = self.url()
        );
        std::fs::write(&path, yaml).expect("write kubeconfig");
        path
    }

    /// Seeds or overwrites an object of any served kind, chosen by its `apiVersion` and `kind`,
    /// taken as given (status included; namespaced objects default to namespace `default`, whose
    /// namespace is created if missing). Server fields (uid, creationTimestamp, generation,
    /// resourceVersion) are filled in. Watchers see ADDED or MODIFIED. Returns the stored object.
    /// Panics on an unknown kind.
    pub fn apply(&self, obj: Value) -> Value {
        self.shared
            .write(|s| s.seed(obj))
            .unwrap_or_else(|e| panic!("KubeFake::apply: {}", e.message))
    }

    /// The stored object. `kind` is kubectl-style: `Node`, `pods`, `pdb`,
    /// `Event.events.k8s.io` (a bare `Event` is core/v1). `ns` is ignored for cluster-scoped kinds.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        self.shared.lock().get(res_by_name(kind), ns, name).ok()
    }

    /// Every stored object of a kind, all namespaces, ordered by namespace and name.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        self.list_in(kind, None)
    }

    /// Stored objects of a kind in one namespace (`None`: all namespaces).
    pub fn list_in(&self, kind: &str, ns: Option<&str>) -> Vec<Value> {
        self.shared.lock().list(
            res_by_name(kind),
            ns,
            &Default::default(),
            &Default::default(),
        )
    }

    /// Changes a stored object in place (any field, status included), committing a new
    /// resourceVersion and a MODIFIED event when something changed. Returns the new object, or
    /// `None` when it does not exist.
    pub fn modify(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let res = res_by_name(kind);
        self.shared.write(|s| s.modify(res, ns, name, f))
    }

    /// Removes an object at once (finalizers ignored); watchers see DELETED.
    pub fn remove(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let res = res_by_name(kind);
        self.shared.write(|s| s.force_delete(res, ns, name))
    }

    /// Sets a PodDisruptionBudget's `status.disruptionsAllowed` (and `observedGeneration`), e.g.
    /// to unblock evictions. Panics when the PDB does not exist.
    pub fn set_pdb_disruptions_allowed(&self, ns: &str, name: &str, allowed: i32) {
        self.modify("PodDisruptionBudget", ns, name, |pdb| {
            let generation = pdb["metadata"]["generation"].clone();
            let status = pdb
                .as_object_mut()
                .expect("object")
                .entry("status")
                .or_insert_with(|| json!({}));
            status["disruptionsAllowed"] = json!(allowed);
            if !generation.is_null() {
                status["observedGeneration"] = generation;
            }
        })
        .unwrap_or_else(|| panic!("no PodDisruptionBudget {ns}/{name}"));
    }

    /// Makes the next `times` evictions of pod `ns/name` fail with HTTP `code` (a 429 reads like
    /// a disruption-budget refusal; other codes carry the usual reason for the code).
    pub fn fail_evictions(&self, ns: &str, name: &str, times: u32, code: u16) {
        self.shared.write(|s| {
            s.eviction_failures
                .insert((ns.to_string(), name.to_string()), (times, code));
        });
    }

    /// Makes the next `times` requests with this exact path (and method, when given) fail with
    /// HTTP `code` and a `Status` body, before anything else happens.
    pub fn fail_requests(&self, method: Option<&str>, path: &str, times: u32, code: u16) {
        self.shared.write(|s| {
            s.injected.push(store::InjectedFailure {
                method: method.map(str::to_string),
                path: path.to_string(),
                remaining: times,
                code,
            });
        });
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// The requests that may change state (everything but GET), in order.
    pub fn writes(&self) -> Vec<Request> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.is_write())
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }
}

impl Drop for KubeFake {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.server.abort();
    }
}
