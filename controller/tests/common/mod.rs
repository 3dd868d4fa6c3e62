//! Shared pieces of the online tests: the Kubernetes API fake (`e2e_tests::kube_fake`), a real
//! safety-service served in-process, a fake rebalancer-service (a tiny tonic server recording
//! calls), and `controller run` started in-process or as the binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controller::config::Config;
use controller::leader::LeaderConfig;
use controller::run::{RunOptions, run};
use e2e_tests::kube_fake::KubeFake;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{TcpListenerStream, WatchStream};
use tonic::{Request, Response, Status};
use vpsie_proto::rebalancer::v1::{
    self as rb,
    rebalancer_service_server::{RebalancerService, RebalancerServiceServer},
};

pub const STATUS: &str = "autoscaler.vpsie.com/scale-down-status";

// ---- cluster objects ----

/// A Ready node of group `group` with `cpu` cores and 16Gi allocatable.
pub fn node(name: &str, group: &str, cpu: &str, offering: Option<&str>) -> Value {
    let mut labels = json!({
        "autoscaler.vpsie.com/nodegroup": group,
        "kubernetes.io/hostname": name,
    });
    if let Some(offering) = offering {
        labels["autoscaler.vpsie.com/offering"] = json!(offering);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": labels },
        "spec": {},
        "status": {
            "capacity": { "cpu": cpu, "memory": "16Gi", "pods": "110" },
            "allocatable": { "cpu": cpu, "memory": "16Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }],
        },
    })
}

/// A running pod of a ReplicaSet (so movable) in `default`, bound to `node`.
pub fn pod(name: &str, node: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": { "app": name },
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": format!("{name}-rs"),
                "uid": format!("uid-{name}-rs"),
                "controller": true,
            }],
        },
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "app",
                "image": "nginx",
                "resources": { "requests": { "cpu": cpu, "memory": "256Mi" } },
            }],
        },
        "status": { "phase": "Running" },
    })
}

/// One group `general` (minNodes 1), the given unneeded time, scans every 200ms.
pub fn config(unneeded: &str, offering: Option<&str>) -> Config {
    let offering = offering.map_or_else(String::new, |o| format!("    offering: \"{o}\"\n"));
    let yaml = format!(
        "cluster: test\n\
         scanInterval: 200ms\n\
         scaleDown:\n  utilizationThreshold: 0.5\n  unneededTime: {unneeded}\n  maxParallel: 1\n\
         nodeGroups:\n  - name: general\n    minNodes: 1\n    maxNodes: 10\n{offering}"
    );
    Config::from_yaml(&yaml, "test-config.yaml").expect("valid test config")
}

pub fn config_yaml(config_text: &str, dir: &std::path::Path) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, config_text).unwrap();
    path
}

// ---- waiting ----

/// Polls `check` every 50ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn annotation(fake: &KubeFake, node: &str) -> Option<String> {
    fake.get("Node", "", node)?["metadata"]["annotations"][STATUS]
        .as_str()
        .map(str::to_owned)
}

/// events.k8s.io Events about `node`: (reason, note).
pub fn node_events(fake: &KubeFake, node: &str) -> Vec<(String, String)> {
    fake.list("Event.events.k8s.io")
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == "Node" && e["regarding"]["name"] == node)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_owned(),
                e["note"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

// ---- the safety-service, in-process ----

pub struct Safety {
    pub endpoint: String,
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl Safety {
    pub async fn start() -> Safety {
        use safety_service::{metrics::Metrics, server};
        let router = server::router(&server::ServerConfig::default(), Arc::new(Metrics::new()))
            .await
            .expect("safety-service router");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = router
                .serve_with_shutdown(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Safety {
            endpoint,
            task,
            stop: Some(stop),
        }
    }
}

impl Drop for Safety {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

// ---- the fake rebalancer ----

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    RemoveNodes(rb::RemoveNodesRequest),
    ExecutePlan(rb::ExecutePlanRequest),
    ListOperations,
    WatchOperation(String),
    GetOperation(String),
}

#[derive(Default)]
struct RebalancerState {
    calls: Vec<Call>,
    operations: BTreeMap<String, watch::Sender<rb::Operation>>,
}

/// Records every call; operations are created RUNNING and stay so until [`Self::finish`].
#[derive(Clone, Default)]
pub struct FakeRebalancer {
    state: Arc<Mutex<RebalancerState>>,
}

impl FakeRebalancer {
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn removals(&self) -> Vec<rb::RemoveNodesRequest> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::RemoveNodes(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    pub fn plans(&self) -> Vec<rb::RebalancePlan> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::ExecutePlan(r) => r.plan,
                _ => None,
            })
            .collect()
    }

    pub fn list_calls(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::ListOperations))
            .count()
    }

    pub fn watched(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::WatchOperation(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// Ends an operation: every node DONE (or FAILED with `error`), the operation SUCCEEDED
    /// (or FAILED).
    pub fn finish(&self, id: &str, error: Option<(&str, &str)>) {
        let state = self.state.lock().unwrap();
        let sender = state.operations.get(id).expect("a known operation");
        sender.send_modify(|operation| {
            operation.state = if error.is_some() {
                rb::OperationState::Failed
            } else {
                rb::OperationState::Succeeded
            } as i32;
            for node in &mut operation.nodes {
                match error {
                    Some((step, message)) => {
                        node.phase = rb::NodePhase::Failed as i32;
                        node.error = Some(rb::StepError {
                            step: step.into(),
                            message: message.into(),
                        });
                    }
                    None => {
                        node.phase = rb::NodePhase::Done as i32;
                        node.replacement_node_name = format!("{}-new", node.node_name);
                    }
                }
            }
        });
    }

    fn create(&self, id: &str, kind: rb::OperationKind, nodes: Vec<String>) -> rb::Operation {
        let mut state = self.state.lock().unwrap();
        if let Some(existing) = state.operations.get(id) {
            return existing.borrow().clone();
        }
        let operation = rb::Operation {
            id: id.into(),
            kind: kind as i32,
            state: rb::OperationState::Running as i32,
            nodes: nodes
                .into_iter()
                .map(|node_name| rb::NodeProgress {
                    node_name,
                    phase: rb::NodePhase::Pending as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        state
            .operations
            .insert(id.into(), watch::channel(operation.clone()).0);
        operation
    }

    fn record(&self, call: Call) {
        self.state.lock().unwrap().calls.push(call);
    }

    /// Serves on a loopback port; returns the endpoint.
    pub async fn serve(&self) -> (String, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let service = RebalancerServiceServer::new(self.clone());
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        (endpoint, task)
    }
}

fn is_terminal(operation: &rb::Operation) -> bool {
    operation.state == rb::OperationState::Succeeded as i32
        || operation.state == rb::OperationState::Failed as i32
        || operation.state == rb::OperationState::Cancelled as i32
}

type OperationStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<rb::Operation, Status>> + Send>>;

#[tonic::async_trait]
impl RebalancerService for FakeRebalancer {
    async fn execute_plan(
        &self,
        request: Request<rb::ExecutePlanRequest>,
    ) -> Result<Response<rb::Operation>, Status> {
        let request = request.into_inner();
        self.record(Call::ExecutePlan(request.clone()));
        let plan = request
            .plan
            .ok_or_else(|| Status::invalid_argument("plan"))?;
        Ok(Response::new(self.create(
            &plan.id,
            rb::OperationKind::Rebalance,
            plan.candidates.into_iter().map(|c| c.node_name).collect(),
        )))
    }

    async fn remove_nodes(
        &self,
        request: Request<rb::RemoveNodesRequest>,
    ) -> Result<Response<rb::Operation>, Status> {
        let request = request.into_inner();
        self.record(Call::RemoveNodes(request.clone()));
        Ok(Response::new(self.create(
            &request.request_id,
            rb::OperationKind::Remove,
            request.node_names,
        )))
    }

    async fn get_operation(
        &self,
        request: Request<rb::GetOperationRequest>,
    ) -> Result<Response<rb::Operation>, Status> {
        let id = request.into_inner().id;
        self.record(Call::GetOperation(id.clone()));
        let state = self.state.lock().unwrap();
        state
            .operations
            .get(&id)
            .map(|sender| Response::new(sender.borrow().clone()))
            .ok_or_else(|| Status::not_found(id))
    }

    async fn list_operations(
        &self,
        _request: Request<rb::ListOperationsRequest>,
    ) -> Result<Response<rb::ListOperationsResponse>, Status> {
        self.record(Call::ListOperations);
        let state = self.state.lock().unwrap();
        Ok(Response::new(rb::ListOperationsResponse {
            operations: state
                .operations
                .values()
                .map(|sender| sender.borrow().clone())
                .collect(),
        }))
    }

    type WatchOperationStream = OperationStream;

    async fn watch_operation(
        &self,
        request: Request<rb::WatchOperationRequest>,
    ) -> Result<Response<Self::WatchOperationStream>, Status> {
        let id = request.into_inner().id;
        self.record(Call::WatchOperation(id.clone()));
        let receiver = {
            let state = self.state.lock().unwrap();
            state
                .operations
                .get(&id)
                .map(watch::Sender::subscribe)
                .ok_or_else(|| Status::not_found(id))?
        };
        // Every state until (and including) the first terminal one.
        let mut ended = false;
        let stream = WatchStream::new(receiver)
            .take_while(move |operation| {
                let keep = !ended;
                ended = is_terminal(operation);
                keep
            })
            .map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_operation(
        &self,
        request: Request<rb::CancelOperationRequest>,
    ) -> Result<Response<rb::Operation>, Status> {
        Err(Status::unimplemented(request.into_inner().id))
    }
}

// ---- the controller, in-process ----

/// `controller run` in this process; stop it gracefully with [`Controller::stop`] or crash it
/// with [`Controller::kill`].
pub struct Controller {
    pub identity: String,
    pub metrics: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub struct ControllerSpec<'a> {
    pub fake: &'a KubeFake,
    pub config: Config,
    pub safety: &'a str,
    pub rebalancer: &'a str,
    pub identity: &'a str,
    pub lease_duration: Duration,
}

impl Controller {
    pub async fn start(spec: ControllerSpec<'_>) -> Controller {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = listener.local_addr().unwrap();
        let options = RunOptions {
            config: spec.config,
            safety_endpoint: spec.safety.to_owned(),
            rebalancer_endpoint: spec.rebalancer.to_owned(),
            safety_tls: Default::default(),
            rebalancer_tls: Default::default(),
            metrics_listener: listener,
            leader: LeaderConfig::new("default", spec.identity)
                .with_lease_duration(spec.lease_duration),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let client = spec.fake.client();
        let task = tokio::spawn(run(client, options, async {
            let _ = stopped.await;
        }));
        Controller {
            identity: spec.identity.to_owned(),
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful: stops scanning, releases the lease.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("controller task")
                .expect("controller run");
        }
    }

    /// A crash: the task is dropped mid-flight, the lease is not released.
    pub fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The Lease's holder, if any.
pub fn lease_holder(fake: &KubeFake) -> Option<String> {
    fake.get("Lease", "default", "vpsie-autoscaler-controller")?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_owned)
        .filter(|h| !h.is_empty())
}

/// Runs `future` with a deadline.
pub async fn within<T>(timeout: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(timeout, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {timeout:?}: {what}"))
}
