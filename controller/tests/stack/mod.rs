//! The whole product as separate processes over real sockets: the `controller` binary
//! (`controller run`), the `safety-service` and `rebalancer-service` binaries, against the
//! Kubernetes API fake and the VPSie API fake served in this test process.
//!
//! Two steps, so that a test seeds the cluster before anything watches it:
//! 1. [`Fakes::start`] starts both fakes. VPSie has one node group, [`GROUP`] (id [`GROUP_ID`]);
//!    [`Fakes::seed_node`] adds a running worker machine to it and registers its Ready Node (named
//!    after the machine's hostname, as a kubelet would, labelled with the group and an optional
//!    offering), so that the rebalancer finds the machine behind the Node. A machine the
//!    rebalancer creates registers its Node when it turns running (the "kubelet" hook, see
//!    [`Fakes::start_with`]).
//! 2. [`Stack::start`] starts the safety-service, then the rebalancer-service (VPSie token auth,
//!    `--vpsie-allow-http`, `--node-poll-seconds 1`, operations in namespace `default`), then
//!    `controller run` with the given YAML configuration, each with optional extra environment
//!    variables ([`StackOptions`]). Every process gets `KUBECONFIG` for the Kubernetes fake where it
//!    needs one, JSON logs, and an environment cleaned of variables that would change its
//!    configuration. [`Stack`] dereferences to its [`Fakes`] and holds the endpoints.
//!
//! Each process's stdout and stderr go to a log file in a scratch directory. Dropping the
//! [`Stack`] kills the processes (SIGKILL, then reaped); when a test panics it prints the logs,
//! the Kubernetes writes and the VPSie calls, and keeps the directory.
//!
//! The `safety-service` and `rebalancer-service` binaries come from
//! [`e2e_tests::binaries::workspace_binary`]: built once per test executable so that they are up
//! to date (`E2E_NO_BUILD=1` skips that). `E2E_STACK_KEEP_LOGS=1` keeps the scratch directory of
//! a test that passed, too.

#![allow(dead_code)] // a reusable harness: not every test uses every helper

use std::collections::HashSet;
use std::fs::File;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::binaries::workspace_binary;
use e2e_tests::kube_fake::{KubeFake, Request};
use e2e_tests::vpsie_fake::{FakeConfig, FakeMachine, FakeNodeGroup, MachineState, VpsieFake};
use serde_json::{Value, json};

/// The VPSie node group the fakes start with, and the `nodegroup` label of its nodes.
pub const GROUP: &str = "general";
/// Its id in the VPSie fake.
pub const GROUP_ID: i64 = 101;
pub const NAMESPACE: &str = "default";
pub const NODEGROUP_LABEL: &str = "autoscaler.vpsie.com/nodegroup";
pub const OFFERING_LABEL: &str = "autoscaler.vpsie.com/offering";
pub const STATUS_ANNOTATION: &str = "autoscaler.vpsie.com/scale-down-status";
/// The access token the VPSie fake accepts (its default) and the rebalancer is given.
pub const VPSIE_TOKEN: &str = "fake-access-token";
/// How long starting a process may take (a cold build of the binaries is not included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- cluster objects

/// A Ready Node as a kubelet registers it: hostname label, `cpu` cores, 8Gi, 110 pods; with the
/// group and offering labels when given.
pub fn node_json(name: &str, group: Option<&str>, offering: Option<&str>, cpu: &str) -> Value {
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
            "capacity": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "allocatable": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }],
        },
    })
}

/// A running pod of a ReplicaSet (movable) in `default`, bound to `node`, requesting `cpu` and
/// 256Mi.
pub fn pod_json(name: &str, node: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
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

/// An Event about a Node, as stored (events.k8s.io/v1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    pub namespace: String,
    pub reason: String,
    pub note: String,
}

// ---------------------------------------------------------------- waiting

/// Polls `check` every 100 ms until it returns `Some`; panics with `what` after `timeout`.
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- the fakes

/// Builds the Node a machine registers when it turns running (`None`: no Node).
pub type Kubelet = dyn Fn(&FakeMachine) -> Option<Value> + Send + Sync;

/// The Kubernetes API fake and the VPSie API fake, with helpers to seed and inspect them.
pub struct Fakes {
    pub kube: Arc<KubeFake>,
    pub vpsie: VpsieFake,
    /// Machines that existed before the processes acted (masters and seeded workers).
    preexisting: Mutex<HashSet<String>>,
}

impl Fakes {
    /// VPSie with the node group [`GROUP`] and 200 ms provisioning; a new worker registers a
    /// 4-core Ready Node without group labels (the rebalancer labels it).
    pub async fn start() -> Fakes {
        let config = FakeConfig {
            node_groups: vec![FakeNodeGroup::new(GROUP_ID, GROUP)],
            ..FakeConfig::default()
        };
        Fakes::start_with(config, |machine: &FakeMachine| {
            machine
                .is_worker()
                .then(|| node_json(&machine.hostname, None, None, "4"))
        })
        .await
    }

    /// Both fakes with this VPSie configuration; `kubelet` gives the Node a machine registers
    /// when it turns running.
    pub async fn start_with(
        config: FakeConfig,
        kubelet: impl Fn(&FakeMachine) -> Option<Value> + Send + Sync + 'static,
    ) -> Fakes {
        let kube = Arc::new(KubeFake::start().await);
        let vpsie = VpsieFake::start(config)
            .await
            .expect("start the VPSie fake");
        let registry = Arc::clone(&kube);
        vpsie.on_running(move |machine: &FakeMachine| {
            if let Some(node) = kubelet(machine) {
                registry.apply(node);
            }
        });
        let preexisting = vpsie.machines().into_iter().map(|m| m.identifier).collect();
        Fakes {
            kube,
            vpsie,
            preexisting: Mutex::new(preexisting),
        }
    }

    /// A running worker machine in VPSie group `group` and its Ready Node (named after the
    /// machine's hostname) with `cpu` cores, labelled with `group` and `offering`. Returns the
    /// node name.
    pub fn seed_node(&self, group: &str, cpu: &str, offering: Option<&str>) -> String {
        let machine = self.vpsie.seed_worker(group);
        self.preexisting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(machine.identifier.clone());
        self.kube
            .apply(node_json(&machine.hostname, Some(group), offering, cpu));
        machine.hostname
    }

    /// A running ReplicaSet pod `name` on `node` requesting `cpu` ([`pod_json`]).
    pub fn seed_pod(&self, name: &str, node: &str, cpu: &str) {
        self.kube.apply(pod_json(name, node, cpu));
    }

    pub fn node(&self, name: &str) -> Option<Value> {
        self.kube.get("Node", "", name)
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        self.kube.get("Pod", NAMESPACE, name)
    }

    /// The Node's `autoscaler.vpsie.com/scale-down-status` annotation.
    pub fn status(&self, node: &str) -> Option<String> {
        self.node(node)?["metadata"]["annotations"][STATUS_ANNOTATION]
            .as_str()
            .map(str::to_owned)
    }

    /// The events.k8s.io/v1 Events about the Node `node`, in creation order.
    pub fn node_events(&self, node: &str) -> Vec<NodeEvent> {
        let mut events: Vec<(u64, NodeEvent)> = self
            .kube
            .list("Event.events.k8s.io")
            .into_iter()
            .filter(|e| e["regarding"]["kind"] == "Node" && e["regarding"]["name"] == node)
            .map(|e| {
                let rv = e["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|rv| rv.parse().ok())
                    .unwrap_or(0);
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    rv,
                    NodeEvent {
                        namespace: text(&e["metadata"]["namespace"]),
                        reason: text(&e["reason"]),
                        note: text(&e["note"]),
                    },
                )
            })
            .collect();
        events.sort_by_key(|(rv, _)| *rv);
        events.into_iter().map(|(_, e)| e).collect()
    }

    /// The reasons of [`Self::node_events`].
    pub fn node_event_reasons(&self, node: &str) -> Vec<String> {
        self.node_events(node)
            .into_iter()
            .map(|e| e.reason)
            .collect()
    }

    /// The machine whose hostname is `hostname` (any state, gone ones included).
    pub fn machine(&self, hostname: &str) -> Option<FakeMachine> {
        self.vpsie
            .machines()
            .into_iter()
            .find(|m| m.hostname == hostname)
    }

    /// The state of the machine behind the node `hostname`; panics when there is none.
    pub fn machine_state(&self, hostname: &str) -> MachineState {
        self.machine(hostname)
            .unwrap_or_else(|| panic!("no VPSie machine {hostname}"))
            .state
    }

    /// Worker machines created since the fakes started (by the rebalancer), any state.
    pub fn created_machines(&self) -> Vec<FakeMachine> {
        let preexisting = self
            .preexisting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.vpsie
            .machines()
            .into_iter()
            .filter(|m| m.is_worker() && !preexisting.contains(&m.identifier))
            .collect()
    }

    /// Eviction requests (POST …/pods/{pod}/eviction) for a pod in `default`.
    pub fn evictions(&self, pod: &str) -> Vec<Request> {
        let path = format!("/api/v1/namespaces/{NAMESPACE}/pods/{pod}/eviction");
        self.kube
            .writes()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .collect()
    }

    /// Every eviction request so far.
    pub fn all_evictions(&self) -> Vec<Request> {
        self.kube
            .writes()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/eviction"))
            .collect()
    }

    /// Writes on the Node `name` or its subresources.
    pub fn node_writes(&self, name: &str) -> Vec<Request> {
        let path = format!("/api/v1/nodes/{name}");
        let sub = format!("{path}/");
        self.kube
            .writes()
            .into_iter()
            .filter(|r| r.path == path || r.path.starts_with(&sub))
            .collect()
    }
}

// ---------------------------------------------------------------- processes

/// A child process whose stdout and stderr go to a log file. Killed (SIGKILL) and reaped when
/// dropped.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Spawns `command` with stdin closed and its output in `dir/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> Process {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log)
            .unwrap_or_else(|e| panic!("creating the log file {}: {e}", log.display()));
        let stdout = file
            .try_clone()
            .unwrap_or_else(|e| panic!("duplicating the log file handle: {e}"));
        command.stdin(Stdio::null()).stdout(stdout).stderr(file);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
        Process {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote so far.
    pub fn logs(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The log lines that are JSON objects.
    pub fn json_logs(&self) -> Vec<Value> {
        self.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until a JSON log line satisfies `find` and returns what it found; panics when the
    /// process exits first or after `timeout`, with its logs.
    pub async fn wait_for_log<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut find: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.json_logs().iter().find_map(&mut find) {
                return found;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before {what}:\n{}",
                    self.name,
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {what} within {timeout:?}:\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A field of a `tracing` JSON log line, flattened (`{"message": …}`) or not
/// (`{"fields": {"message": …}}`).
pub fn log_field<'v>(line: &'v Value, key: &str) -> Option<&'v Value> {
    line.get(key)
        .or_else(|| line.get("fields").and_then(|f| f.get(key)))
}

/// Whether a JSON log line's message is `message`.
pub fn log_message_is(line: &Value, message: &str) -> bool {
    log_field(line, "message").and_then(Value::as_str) == Some(message)
}

/// A socket address in a log field: `127.0.0.1:1234`, or `Some(127.0.0.1:1234)` (a `?`-formatted
/// `Option`).
fn parse_address(value: &Value) -> Option<SocketAddr> {
    let text = value.as_str()?;
    let text = text
        .strip_prefix("Some(")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text);
    text.parse().ok()
}

/// The shared clean environment, with info logs and no colours.
fn clean_env(command: &mut Command) {
    e2e_tests::binaries::clean_env(command);
    command.env("RUST_LOG", "info").env("NO_COLOR", "1");
}

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "e2e-stack-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

// ---------------------------------------------------------------- the stack

/// How [`Stack::start`] runs the processes.
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    /// The controller's YAML configuration (`controller run --config`).
    pub controller_config: String,
    /// Extra environment variables per process, set last (they override the harness's, e.g.
    /// `RUST_LOG`).
    pub controller_env: Vec<(String, String)>,
    pub safety_env: Vec<(String, String)>,
    pub rebalancer_env: Vec<(String, String)>,
    /// The controller's `--identity` (its Lease holder and Events' reporting instance).
    pub controller_identity: Option<String>,
}

impl StackOptions {
    pub fn new(controller_config: impl Into<String>) -> StackOptions {
        StackOptions {
            controller_config: controller_config.into(),
            ..StackOptions::default()
        }
    }

    pub fn controller_env(mut self, key: &str, value: &str) -> StackOptions {
        self.controller_env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn safety_env(mut self, key: &str, value: &str) -> StackOptions {
        self.safety_env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn rebalancer_env(mut self, key: &str, value: &str) -> StackOptions {
        self.rebalancer_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The same variable for all three processes (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn env_all(self, key: &str, value: &str) -> StackOptions {
        self.controller_env(key, value)
            .safety_env(key, value)
            .rebalancer_env(key, value)
    }
}

/// A gRPC service process and where it listens.
pub struct Service {
    pub process: Process,
    /// The gRPC address from its "serving" log line.
    pub addr: SocketAddr,
    /// `http://<addr>`.
    pub endpoint: String,
}

/// The `controller run` process.
pub struct ControllerProcess {
    pub process: Process,
    /// Its `/metrics` address, from its "controller starting" log line.
    pub metrics: SocketAddr,
    pub identity: String,
}

/// The three processes over the fakes. Dereferences to the [`Fakes`].
pub struct Stack {
    pub fakes: Fakes,
    pub safety: Service,
    pub rebalancer: Service,
    pub controller: ControllerProcess,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Deref for Stack {
    type Target = Fakes;
    fn deref(&self) -> &Fakes {
        &self.fakes
    }
}

/// Waits for the `"<name> serving"` JSON line of a service and returns its `listen` address.
async fn wait_serving(process: &mut Process) -> SocketAddr {
    let message = format!("{} serving", process.name());
    process
        .wait_for_log(START_TIMEOUT, &format!("{message:?}"), |line| {
            if !log_message_is(line, &message) {
                return None;
            }
            log_field(line, "listen").and_then(parse_address)
        })
        .await
}

impl Stack {
    /// Starts the safety-service, the rebalancer-service and `controller run` against `fakes`,
    /// each waited for until it logs its address (the controller: "controller starting").
    pub async fn start(fakes: Fakes, options: StackOptions) -> Stack {
        let dir = scratch_dir();
        let kubeconfig = fakes.kube.kubeconfig_file(&dir);
        let safety_binary = workspace_binary("safety-service");
        let rebalancer_binary = workspace_binary("rebalancer-service");

        let mut command = Command::new(safety_binary);
        clean_env(&mut command);
        command
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .envs(options.safety_env.iter().map(|(k, v)| (k, v)));
        let mut process = Process::spawn("safety-service", command, &dir);
        let addr = wait_serving(&mut process).await;
        let safety = Service {
            process,
            addr,
            endpoint: format!("http://{addr}"),
        };

        let mut command = Command::new(rebalancer_binary);
        clean_env(&mut command);
        command
            .env("KUBECONFIG", &kubeconfig)
            .env("VPSIE_TOKEN", VPSIE_TOKEN)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--safety-endpoint", &safety.endpoint])
            .args(["--vpsie-url", &fakes.vpsie.base_url(), "--vpsie-allow-http"])
            .args(["--vpsie-cluster", &fakes.vpsie.cluster_id()])
            .args(["--namespace", NAMESPACE])
            .args(["--node-poll-seconds", "1"])
            .args(["--log-format", "json"])
            .envs(options.rebalancer_env.iter().map(|(k, v)| (k, v)));
        let mut process = Process::spawn("rebalancer-service", command, &dir);
        let addr = wait_serving(&mut process).await;
        let rebalancer = Service {
            process,
            addr,
            endpoint: format!("http://{addr}"),
        };

        let config = dir.join("controller.yaml");
        std::fs::write(&config, &options.controller_config)
            .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let identity = options
            .controller_identity
            .clone()
            .unwrap_or_else(|| "controller-e2e".to_owned());
        let mut command = Command::new(env!("CARGO_BIN_EXE_controller"));
        clean_env(&mut command);
        command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(["--safety-endpoint", &safety.endpoint])
            .args(["--rebalancer-endpoint", &rebalancer.endpoint])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--identity", &identity])
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("LOG_FORMAT", "json")
            .envs(options.controller_env.iter().map(|(k, v)| (k, v)));
        let mut process = Process::spawn("controller", command, &dir);
        let metrics = process
            .wait_for_log(START_TIMEOUT, "\"controller starting\"", |line| {
                if !log_message_is(line, "controller starting") {
                    return None;
                }
                log_field(line, "metrics").and_then(parse_address)
            })
            .await;
        let controller = ControllerProcess {
            process,
            metrics,
            identity,
        };
        Stack {
            fakes,
            safety,
            rebalancer,
            controller,
            dir,
            kubeconfig,
        }
    }

    /// The processes, in start order.
    pub fn processes(&self) -> [&Process; 3] {
        [
            &self.safety.process,
            &self.rebalancer.process,
            &self.controller.process,
        ]
    }

    /// Panics (with the logs, through [`Drop`]) if a process has exited.
    pub fn assert_running(&mut self) {
        for process in [
            &mut self.safety.process,
            &mut self.rebalancer.process,
            &mut self.controller.process,
        ] {
            if let Some(status) = process.exited() {
                panic!("{} exited: {status}", process.name());
            }
        }
    }

    /// What a failing test prints: each process's log, the Kubernetes writes, the VPSie calls.
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for process in self.processes() {
            let _ = writeln!(
                out,
                "==== {} (pid {}, {}) ====\n{}",
                process.name(),
                process.pid(),
                process.log_path().display(),
                process.logs()
            );
        }
        let _ = writeln!(out, "==== Kubernetes writes ====");
        for w in self.kube.writes() {
            let body = w.body.as_ref().map(Value::to_string).unwrap_or_default();
            let _ = writeln!(out, "{} {} {body}", w.method, w.path);
        }
        let _ = writeln!(out, "==== VPSie calls ====");
        for call in self.vpsie.calls() {
            let _ = writeln!(
                out,
                "{} {} -> {:?} {}",
                call.method, call.path, call.status, call.body
            );
        }
        let _ = writeln!(out, "==== VPSie machines ====");
        for machine in self.vpsie.machines() {
            let _ = writeln!(out, "{machine:?}");
        }
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Stop the processes before the fakes go (fields drop after this), so that they do not
        // log connection errors into the report.
        self.controller.process.kill();
        self.rebalancer.process.kill();
        self.safety.process.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.report());
            eprintln!("(logs kept in {})", self.dir.display());
        } else if std::env::var_os("E2E_STACK_KEEP_LOGS").is_some_and(|v| v == "1") {
            eprintln!("(logs kept in {})", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
