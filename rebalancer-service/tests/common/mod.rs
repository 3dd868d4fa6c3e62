//! The end-to-end harness: the real `rebalancer-service` and `safety-service` binaries, started as
//! separate processes over sockets, against the Kubernetes API fake and the VPSie API fake.
//!
//! [`Harness::start`] starts both fakes, the safety-service, and the rebalancer with
//! `KUBECONFIG=<fake kubeconfig>`, `--vpsie-url <fake> --vpsie-allow-http`, `VPSIE_TOKEN`,
//! `--namespace default` and `--node-poll-seconds 1`, and waits for its gRPC health. A VPSie
//! machine that turns running registers a Ready Node with its hostname in the Kubernetes fake, as
//! a kubelet would. Child processes are killed when the harness is dropped; when a test panics,
//! their logs are printed.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::kube_fake::{KubeFake, Request};
use e2e_tests::vpsie_fake::{FakeConfig, FakeMachine, FakeNodeGroup, MachineState, VpsieFake};
use serde_json::{Value, json};
use telemetry::tls::ClientTlsFiles;
use tonic::transport::Channel;
use vpsie_proto::rebalancer::v1 as pb;
use vpsie_proto::rebalancer::v1::rebalancer_service_client::RebalancerServiceClient;

pub const TOKEN: &str = "fake-access-token";
pub const NAMESPACE: &str = "default";
/// The VPSie fake's default node group (id 101).
pub const WORKERS: &str = "workers";
/// A second node group (id 102) every harness adds.
pub const GENERAL: &str = "general";
pub const NODEGROUP_LABEL: &str = "autoscaler.vpsie.com/nodegroup";
pub const OFFERING_LABEL: &str = "autoscaler.vpsie.com/offering";
pub const DRAINING_TAINT: &str = "autoscaler.vpsie.com/draining";

/// A child process whose stderr lines are collected.
struct Proc {
    name: &'static str,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(name: &'static str, mut command: Command) -> Proc {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Proc { name, child, logs }
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for the JSON log line `"<name> serving"` and returns its `listen` address.
    fn wait_listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        let wanted = format!("{} serving", self.name);
        loop {
            for line in self.logs() {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == wanted.as_str()
                    && let Some(addr) = v["listen"].as_str().and_then(|a| a.parse().ok())
                {
                    return addr;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before serving:\n{}",
                    self.name,
                    self.logs().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start within 60s:\n{}",
                self.name,
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A string field of the JSON `"<name> serving"` line.
    fn serving_field(&self, field: &str) -> Option<String> {
        let wanted = format!("{} serving", self.name);
        self.logs().iter().find_map(|line| {
            let v = serde_json::from_str::<Value>(line).ok()?;
            (v["message"] == wanted.as_str()).then(|| v[field].as_str().map(str::to_owned))?
        })
    }

    /// SIGTERM, then waits (at most 30 s) for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} ignored SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use e2e_tests::binaries::clean_env;

pub fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rebalancer-e2e-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A Ready Node as a kubelet registers it (hostname label, capacity), with optional group and
/// offering labels.
pub fn node_json(name: &str, group: Option<&str>, offering: Option<&str>) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(name));
    if let Some(group) = group {
        labels.insert(NODEGROUP_LABEL.into(), json!(group));
    }
    if let Some(offering) = offering {
        labels.insert(OFFERING_LABEL.into(), json!(offering));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": labels },
        "spec": {},
        "status": {
            "capacity": { "cpu": "2", "memory": "4Gi", "pods": "110" },
            "allocatable": { "cpu": "2", "memory": "4Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }],
        },
    })
}

fn replica_set_json(app: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": { "name": format!("{app}-rs"), "namespace": NAMESPACE, "labels": { "app": app } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": app } },
            "template": {
                "metadata": { "labels": { "app": app } },
                "spec": { "containers": [{ "name": "c", "image": "nginx" }] },
            },
        },
    })
}

/// A running pod of app `app`, owned by the ReplicaSet `<app>-rs`, bound to `node`.
pub fn pod_json(name: &str, node: &str, app: &str, rs_uid: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": { "app": app },
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": format!("{app}-rs"),
                "uid": rs_uid,
                "controller": true,
            }],
        },
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "c",
                "image": "nginx",
                "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
            }],
        },
        "status": { "phase": "Running" },
    })
}

/// A plan with small timeouts: ready 10 s, drain 5 s, eviction retry 1 s.
pub fn plan(
    id: &str,
    group: &str,
    strategy: pb::Strategy,
    candidates: &[(&str, &str, &str)],
) -> pb::RebalancePlan {
    pb::RebalancePlan {
        id: id.to_string(),
        node_group_name: group.to_string(),
        strategy: strategy as i32,
        batch_size: 1,
        max_concurrent: 1,
        candidates: candidates
            .iter()
            .map(|(node, current, target)| pb::Candidate {
                node_name: node.to_string(),
                current_offering: current.to_string(),
                target_offering: target.to_string(),
            })
            .collect(),
        drain: Some(pb::DrainOptions {
            timeout_seconds: 5,
            pod_grace_period_seconds: None,
            eviction_retry_seconds: 1,
        }),
        ready_timeout_seconds: 10,
        dry_run: false,
    }
}

pub fn state(op: &pb::Operation) -> pb::OperationState {
    pb::OperationState::try_from(op.state).unwrap_or(pb::OperationState::Unspecified)
}

pub fn phase(node: &pb::NodeProgress) -> pb::NodePhase {
    pb::NodePhase::try_from(node.phase).unwrap_or(pb::NodePhase::Unspecified)
}

pub fn is_terminal(op: &pb::Operation) -> bool {
    matches!(
        state(op),
        pb::OperationState::Succeeded | pb::OperationState::Failed | pb::OperationState::Cancelled
    )
}

pub fn node_progress<'o>(op: &'o pb::Operation, node: &str) -> &'o pb::NodeProgress {
    op.nodes
        .iter()
        .find(|n| n.node_name == node)
        .unwrap_or_else(|| panic!("node {node} not in operation {op:#?}"))
}

/// A cordon or uncordon: a node PATCH that sets `spec.unschedulable` or `spec.taints`.
pub fn is_cordon_patch(request: &Request) -> bool {
    request.method == "PATCH"
        && request.body.as_ref().is_some_and(|b| {
            b.pointer("/spec/unschedulable").is_some() || b.pointer("/spec/taints").is_some()
        })
}

/// A PATCH that only writes annotations (the rebalancer's progress records on the old Node).
pub fn is_annotation_patch(request: &Request) -> bool {
    request.method == "PATCH"
        && request.body.as_ref().is_some_and(|b| {
            b.as_object().is_some_and(|o| o.len() == 1)
                && b["metadata"]
                    .as_object()
                    .is_some_and(|m| m.len() == 1 && m.contains_key("annotations"))
        })
}

/// Polls `cond` every 50 ms until it holds; panics after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a harness adds to the default processes: TLS, traces.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// More arguments and environment of the safety-service.
    pub safety_args: Vec<String>,
    pub safety_env: Vec<(String, String)>,
    /// The rebalancer reaches the safety-service at `https://localhost:<port>`.
    pub safety_https: bool,
    /// More arguments and environment of the rebalancer.
    pub rebalancer_args: Vec<String>,
    pub rebalancer_env: Vec<(String, String)>,
    /// The test's client reaches the rebalancer at `https://127.0.0.1:<port>` with these files.
    pub client_tls: Option<ClientTlsFiles>,
}

pub struct Harness {
    pub kube: Arc<KubeFake>,
    pub vpsie: VpsieFake,
    safety: Proc,
    safety_addr: SocketAddr,
    rebalancer: Option<Proc>,
    /// Logs of rebalancer processes that were killed.
    earlier_logs: Vec<String>,
    pub client: RebalancerServiceClient<Channel>,
    dir: PathBuf,
    kubeconfig: PathBuf,
    /// VPSie machines that existed before the test's operations (masters and seeded workers).
    preexisting: Mutex<HashSet<String>>,
    rs_uids: Mutex<std::collections::HashMap<String, String>>,
    extras: Extras,
}

impl Harness {
    /// Fakes with the default VPSie configuration plus the `general` group.
    pub async fn start() -> Harness {
        Harness::start_with(FakeConfig::default()).await
    }

    pub async fn start_with(config: FakeConfig) -> Harness {
        Harness::start_with_extras(config, Extras::default()).await
    }

    pub async fn start_with_extras(mut config: FakeConfig, extras: Extras) -> Harness {
        if !config.node_groups.iter().any(|g| g.group_name == GENERAL) {
            config.node_groups.push(FakeNodeGroup::new(102, GENERAL));
        }
        let kube = Arc::new(KubeFake::start().await);
        let vpsie = VpsieFake::start(config)
            .await
            .expect("start the VPSie fake");
        // A machine that turns running registers its Node, as its kubelet would.
        let registry = Arc::clone(&kube);
        vpsie.on_running(move |machine: &FakeMachine| {
            if machine.is_worker() {
                registry.apply(node_json(&machine.hostname, None, None));
            }
        });
        let preexisting = vpsie.machines().into_iter().map(|m| m.identifier).collect();
        let dir = scratch_dir();
        let kubeconfig = kube.kubeconfig_file(&dir);

        let mut safety_cmd = Command::new(e2e_tests::binaries::workspace_binary("safety-service"));
        clean_env(&mut safety_cmd);
        safety_cmd
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(&extras.safety_args)
            .envs(extras.safety_env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut safety = Proc::spawn("safety-service", safety_cmd);
        let safety_addr = safety.wait_listening();

        let (rebalancer, client) = Harness::spawn_rebalancer(
            &kubeconfig,
            safety_addr,
            &vpsie.base_url(),
            &vpsie.cluster_id(),
            &extras,
        )
        .await;
        Harness {
            kube,
            vpsie,
            safety,
            safety_addr,
            rebalancer: Some(rebalancer),
            earlier_logs: Vec::new(),
            client,
            dir,
            kubeconfig,
            preexisting: Mutex::new(preexisting),
            rs_uids: Mutex::new(Default::default()),
            extras,
        }
    }

    async fn spawn_rebalancer(
        kubeconfig: &Path,
        safety: SocketAddr,
        vpsie_url: &str,
        cluster: &str,
        extras: &Extras,
    ) -> (Proc, RebalancerServiceClient<Channel>) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rebalancer-service"));
        clean_env(&mut cmd);
        cmd.env("KUBECONFIG", kubeconfig)
            .env("VPSIE_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args([
                "--safety-endpoint",
                &if extras.safety_https {
                    format!("https://localhost:{}", safety.port())
                } else {
                    format!("http://{safety}")
                },
            ])
            .args(["--vpsie-url", vpsie_url, "--vpsie-allow-http"])
            .args(["--vpsie-cluster", cluster])
            .args(["--namespace", NAMESPACE])
            .args(["--node-poll-seconds", "1"])
            .args(["--log-format", "json"])
            .args(&extras.rebalancer_args)
            .envs(extras.rebalancer_env.iter().map(|(k, v)| (k, v)));
        let mut proc = Proc::spawn("rebalancer-service", cmd);
        let addr = proc.wait_listening();
        let deadline = Instant::now() + Duration::from_secs(30);
        let channel = match &extras.client_tls {
            Some(tls) => {
                let url = format!("https://127.0.0.1:{}", addr.port());
                telemetry::tls::channel(&url, tls, |e| e).expect("TLS channel")
            }
            None => {
                let url = format!("http://{addr}");
                loop {
                    match tonic::transport::Endpoint::from_shared(url.clone())
                        .expect("endpoint")
                        .connect()
                        .await
                    {
                        Ok(channel) => break channel,
                        Err(e) => {
                            assert!(Instant::now() < deadline, "cannot connect to {url}: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        };
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        loop {
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "vpsie.rebalancer.v1.RebalancerService".to_string(),
                })
                .await;
            match answer {
                Ok(reply) if reply.get_ref().status == 1 => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "rebalancer not healthy: {other:?}\n{}",
                        proc.logs().join("\n")
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        (proc, RebalancerServiceClient::new(channel))
    }

    /// SIGKILLs the rebalancer process (no graceful shutdown).
    pub fn kill_rebalancer(&mut self) {
        if let Some(mut proc) = self.rebalancer.take() {
            proc.kill();
            self.earlier_logs.extend(proc.logs());
            self.earlier_logs
                .push("---- rebalancer-service killed ----".to_string());
        }
    }

    /// Starts a new rebalancer process against the same fakes and reconnects the client.
    pub async fn restart_rebalancer(&mut self) {
        self.kill_rebalancer();
        let (proc, client) = Harness::spawn_rebalancer(
            &self.kubeconfig,
            self.safety_addr,
            &self.vpsie.base_url(),
            &self.vpsie.cluster_id(),
            &self.extras,
        )
        .await;
        self.rebalancer = Some(proc);
        self.client = client;
    }

    /// The rebalancer's `/metrics` address.
    pub fn rebalancer_metrics(&self) -> SocketAddr {
        self.rebalancer
            .as_ref()
            .and_then(|proc| proc.serving_field("metrics_listen"))
            .and_then(|addr| addr.parse().ok())
            .expect("the serving line names metrics_listen")
    }

    /// The rebalancer's gRPC address.
    pub fn rebalancer_addr(&self) -> SocketAddr {
        self.rebalancer
            .as_ref()
            .and_then(|proc| proc.serving_field("listen"))
            .and_then(|addr| addr.parse().ok())
            .expect("the serving line names listen")
    }

    /// SIGTERMs the rebalancer and returns its exit status (its logs stay readable).
    pub fn terminate_rebalancer(&mut self) -> std::process::ExitStatus {
        self.rebalancer
            .as_mut()
            .map(Proc::terminate)
            .expect("a running rebalancer")
    }

    /// SIGTERMs both services (the rebalancer first) and returns their exit statuses.
    pub fn terminate_services(&mut self) -> (std::process::ExitStatus, std::process::ExitStatus) {
        let rebalancer = self
            .rebalancer
            .as_mut()
            .map(Proc::terminate)
            .expect("a running rebalancer");
        (rebalancer, self.safety.terminate())
    }

    /// The safety-service's stderr lines.
    pub fn safety_logs(&self) -> Vec<String> {
        self.safety.logs()
    }

    /// The current rebalancer process's stderr lines.
    pub fn rebalancer_logs(&self) -> Vec<String> {
        self.rebalancer.as_ref().map(Proc::logs).unwrap_or_default()
    }

    /// The current rebalancer process's log lines parsed as JSON.
    pub fn rebalancer_log_events(&self) -> Vec<Value> {
        self.rebalancer_logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// A worker machine in VPSie group `vpsie_group` and its Ready Node (same hostname) labelled
    /// with `group_label` and `offering`. Returns the node name.
    pub fn seed_node(&self, vpsie_group: &str, group_label: &str, offering: &str) -> String {
        let machine = self.vpsie.seed_worker(vpsie_group);
        self.preexisting
            .lock()
            .unwrap()
            .insert(machine.identifier.clone());
        self.kube.apply(node_json(
            &machine.hostname,
            Some(group_label),
            Some(offering),
        ));
        machine.hostname
    }

    /// A running pod of `app` (ReplicaSet-owned) on `node`.
    pub fn seed_pod(&self, name: &str, node: &str, app: &str) {
        let uid = {
            let mut uids = self.rs_uids.lock().unwrap();
            if let Some(uid) = uids.get(app) {
                uid.clone()
            } else {
                let rs = self.kube.apply(replica_set_json(app));
                let uid = rs["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                uids.insert(app.to_string(), uid.clone());
                uid
            }
        };
        self.kube.apply(pod_json(name, node, app, &uid));
    }

    /// A PodDisruptionBudget over `app` with `disruptionsAllowed` set.
    pub fn seed_pdb(&self, name: &str, app: &str, allowed: i32) {
        self.kube.apply(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": { "name": name, "namespace": NAMESPACE },
            "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": app } } },
            "status": {
                "disruptionsAllowed": allowed,
                "currentHealthy": 1,
                "desiredHealthy": 1,
                "expectedPods": 1,
            },
        }));
    }

    /// Worker machines created during the test (by the rebalancer), any state.
    pub fn created_machines(&self) -> Vec<FakeMachine> {
        let pre = self.preexisting.lock().unwrap().clone();
        self.vpsie
            .machines()
            .into_iter()
            .filter(|m| m.is_worker() && !pre.contains(&m.identifier))
            .collect()
    }

    pub fn machine_by_hostname(&self, hostname: &str) -> Option<FakeMachine> {
        self.vpsie
            .machines()
            .into_iter()
            .find(|m| m.hostname == hostname)
    }

    pub fn machine_state(&self, hostname: &str) -> MachineState {
        self.machine_by_hostname(hostname)
            .unwrap_or_else(|| panic!("no machine {hostname}"))
            .state
    }

    pub fn node(&self, name: &str) -> Option<Value> {
        self.kube.get("Node", "", name)
    }

    /// Kubernetes writes (non-GET requests) on the Node `name` or its subresources.
    pub fn node_writes(&self, name: &str) -> Vec<Request> {
        let path = format!("/api/v1/nodes/{name}");
        self.kube
            .writes()
            .into_iter()
            .filter(|r| r.path == path || r.path.starts_with(&format!("{path}/")))
            .collect()
    }

    /// Eviction requests for a pod.
    pub fn evictions(&self, pod: &str) -> Vec<Request> {
        let path = format!("/api/v1/namespaces/{NAMESPACE}/pods/{pod}/eviction");
        self.kube
            .writes()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .collect()
    }

    pub async fn execute(&mut self, plan: pb::RebalancePlan) -> pb::Operation {
        self.client
            .execute_plan(pb::ExecutePlanRequest { plan: Some(plan) })
            .await
            .unwrap_or_else(|s| panic!("ExecutePlan: {s:?}"))
            .into_inner()
    }

    pub async fn get(&mut self, id: &str) -> pb::Operation {
        self.client
            .get_operation(pb::GetOperationRequest { id: id.to_string() })
            .await
            .unwrap_or_else(|s| panic!("GetOperation {id}: {s:?}"))
            .into_inner()
    }

    /// Polls GetOperation until `cond` holds on the operation; panics after `timeout`.
    pub async fn wait_for(
        &mut self,
        id: &str,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&pb::Operation) -> bool,
    ) -> pb::Operation {
        let deadline = Instant::now() + timeout;
        loop {
            let op = self.get(id).await;
            if cond(&op) {
                return op;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; operation: {op:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the operation to end.
    pub async fn wait_terminal(&mut self, id: &str, timeout: Duration) -> pb::Operation {
        self.wait_for(id, "a terminal state", timeout, is_terminal)
            .await
    }

    /// Waits for `node` of the operation to be in `phase`.
    pub async fn wait_phase(
        &mut self,
        id: &str,
        node: &str,
        wanted: pb::NodePhase,
        timeout: Duration,
    ) -> pb::Operation {
        let what = format!("{node} in {wanted:?}");
        self.wait_for(id, &what, timeout, |op| {
            op.nodes
                .iter()
                .any(|n| n.node_name == node && phase(n) == wanted)
        })
        .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut out = String::new();
            for line in &self.earlier_logs {
                out.push_str(line);
                out.push('\n');
            }
            for line in self.rebalancer_logs() {
                out.push_str(&line);
                out.push('\n');
            }
            eprintln!("==== rebalancer-service stderr ====\n{out}");
            let safety = self.safety.logs();
            let tail = safety.len().saturating_sub(40);
            eprintln!(
                "==== safety-service stderr (last lines) ====\n{}",
                safety[tail..].join("\n")
            );
            eprintln!("==== VPSie calls ====");
            for call in self.vpsie.calls() {
                eprintln!(
                    "{} {} -> {:?} {}",
                    call.method, call.path, call.status, call.body
                );
            }
            eprintln!("==== Kubernetes writes ====");
            for w in self.kube.writes() {
                eprintln!(
                    "{} {} {}",
                    w.method,
                    w.path,
                    w.body.as_ref().map(Value::to_string).unwrap_or_default()
                );
            }
        }
        if let Some(mut proc) = self.rebalancer.take() {
            proc.kill();
        }
        self.safety.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The VPSie fake's id of a node group.
pub fn group_id(name: &str) -> i64 {
    match name {
        WORKERS => 101,
        GENERAL => 102,
        other => panic!("unknown group {other}"),
    }
}

/// Asserts that `node` was replaced end to end: a machine created in `group`, its Node Ready and
/// labelled, the old node cordoned and tainted, its pods evicted through the Eviction API, its
/// machine deleted through VPSie and its Node object deleted.
pub async fn assert_replaced(
    h: &Harness,
    op: &pb::Operation,
    node: &str,
    group: &str,
    offering: &str,
    pods: &[&str],
) {
    let progress = node_progress(op, node);
    assert_eq!(phase(progress), pb::NodePhase::Done, "{progress:#?}");
    assert!(progress.error.is_none(), "{progress:#?}");
    let machine = h
        .vpsie
        .machine(&progress.replacement_vps_id)
        .unwrap_or_else(|| panic!("no VPSie machine {:?}", progress.replacement_vps_id));
    assert!(machine.is_worker());
    assert_eq!(machine.group_id, Some(group_id(group)), "{machine:?}");
    assert_eq!(machine.state, MachineState::Running, "{machine:?}");
    assert_eq!(progress.replacement_node_name, machine.hostname);
    let replacement = h
        .node(&machine.hostname)
        .unwrap_or_else(|| panic!("no Node {} for the replacement", machine.hostname));
    assert_eq!(replacement["metadata"]["labels"][NODEGROUP_LABEL], group);
    assert_eq!(replacement["metadata"]["labels"][OFFERING_LABEL], offering);

    // The old node: cordoned and tainted, drained, deleted.
    assert!(h.node(node).is_none(), "old Node {node} still exists");
    let writes = h.node_writes(node);
    let cordon = writes
        .iter()
        .find(|w| is_cordon_patch(w))
        .unwrap_or_else(|| panic!("no cordon PATCH on {node}: {writes:#?}"));
    let body = cordon.body.as_ref().expect("patch body");
    assert_eq!(body.pointer("/spec/unschedulable"), Some(&json!(true)));
    let taints = body
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .expect("taints");
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == DRAINING_TAINT && t["effect"] == "NoSchedule"),
        "{taints:?}"
    );
    let last = writes.last().expect("writes");
    assert_eq!(
        last.method, "DELETE",
        "the Node object is deleted last: {writes:#?}"
    );
    for pod in pods {
        assert!(
            !h.evictions(pod).is_empty(),
            "pod {pod} was not evicted through the Eviction API"
        );
        assert!(
            h.kube.get("Pod", NAMESPACE, pod).is_none(),
            "pod {pod} still exists"
        );
    }
    let old = h
        .machine_by_hostname(node)
        .unwrap_or_else(|| panic!("no machine {node}"));
    assert!(
        h.vpsie
            .wait_for_state(&old.identifier, MachineState::Gone, Duration::from_secs(5))
            .await,
        "old machine {old:?} not deleted"
    );
    assert!(
        h.vpsie
            .calls_to(e2e_tests::vpsie_fake::Route::Delete)
            .iter()
            .any(|c| c.status == Some(200) && c.body.contains(&old.identifier)),
        "no successful VPSie delete of {}",
        old.identifier
    );
}
