//! Leader election: two controllers against one Kubernetes API fake, each with its own fake
//! rebalancer so that the calls tell who acts. Only the leader calls; when it stops (crash or
//! graceful shutdown), the other takes over within the lease duration. In-process and with the
//! `controller` binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Controller, ControllerSpec, FakeRebalancer, Safety, config, eventually, lease_holder, node, pod,
};
use e2e_tests::kube_fake::KubeFake;

const WAIT: Duration = Duration::from_secs(20);
const LEASE: Duration = Duration::from_secs(2);
/// A follower looks every sixth of the lease; the first scan follows at once.
const SLACK: Duration = Duration::from_millis(1500);

fn seed(fake: &KubeFake) {
    fake.apply(node("n1", "general", "4", None));
    fake.apply(node("n2", "general", "4", None));
    fake.apply(node("n3", "general", "8", None));
    fake.apply(pod("web-1", "n1", "3"));
    fake.apply(pod("web-2", "n2", "3"));
    fake.apply(pod("small", "n3", "100m"));
}

struct Pair {
    fake: KubeFake,
    safety: Safety,
    a: FakeRebalancer,
    a_endpoint: String,
    b: FakeRebalancer,
    b_endpoint: String,
    _servers: Vec<tokio::task::JoinHandle<()>>,
}

async fn pair() -> Pair {
    let fake = KubeFake::start().await;
    seed(&fake);
    let safety = Safety::start().await;
    let a = FakeRebalancer::default();
    let (a_endpoint, a_server) = a.serve().await;
    let b = FakeRebalancer::default();
    let (b_endpoint, b_server) = b.serve().await;
    Pair {
        fake,
        safety,
        a,
        a_endpoint,
        b,
        b_endpoint,
        _servers: vec![a_server, b_server],
    }
}

impl Pair {
    async fn controller(&self, identity: &str, rebalancer: &str) -> Controller {
        Controller::start(ControllerSpec {
            fake: &self.fake,
            config: config("1s", None),
            safety: &self.safety.endpoint,
            rebalancer,
            identity,
            lease_duration: LEASE,
        })
        .await
    }

    /// Starts A, waits for it to lead, starts B, and checks that only A acts.
    async fn a_leads(&self) -> (Controller, Controller) {
        let a = self.controller("controller-a", &self.a_endpoint).await;
        eventually(WAIT, "A leading", || {
            (lease_holder(&self.fake).as_deref() == Some("controller-a")).then_some(())
        })
        .await;
        let b = self.controller("controller-b", &self.b_endpoint).await;
        eventually(WAIT, "A removing n3", || self.a.removals().pop()).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            self.b.calls().is_empty(),
            "the follower called: {:?}",
            self.b.calls()
        );
        assert_eq!(lease_holder(&self.fake).as_deref(), Some("controller-a"));
        assert!(
            e2e_tests::probes::scrape(a.metrics)
                .await
                .contains("controller_leader 1")
        );
        assert!(
            e2e_tests::probes::scrape(b.metrics)
                .await
                .contains("controller_leader 0")
        );
        (a, b)
    }

    /// Waits for B to act; returns how long it took.
    async fn b_takes_over(&self, since: Instant) -> Duration {
        eventually(WAIT, "B acting", || (self.b.list_calls() > 0).then_some(())).await;
        let elapsed = since.elapsed();
        assert_eq!(lease_holder(&self.fake).as_deref(), Some("controller-b"));
        elapsed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_the_follower_takes_over_when_it_crashes() {
    let pair = pair().await;
    let (a, b) = pair.a_leads().await;
    let a_calls = pair.a.calls().len();

    let crashed = Instant::now();
    a.kill();
    let elapsed = pair.b_takes_over(crashed).await;
    assert!(elapsed <= LEASE + SLACK, "took over after {elapsed:?}");
    // The new leader acts: n3 is still removable and goes to its rebalancer.
    eventually(WAIT, "B removing n3", || pair.b.removals().pop()).await;
    // The crashed one is silent.
    let a_after = pair.a.calls().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pair.a.calls().len(), a_after);
    assert!(a_after <= a_calls + 1, "{a_calls} -> {a_after}");
    b.stop().await;
    assert_eq!(lease_holder(&pair.fake), None, "released on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_shutting_down_releases_the_lease_and_the_follower_takes_over_at_once() {
    let pair = pair().await;
    let (a, b) = pair.a_leads().await;
    let stopped = Instant::now();
    a.stop().await;
    let elapsed = pair.b_takes_over(stopped).await;
    assert!(elapsed < LEASE, "took over after {elapsed:?}");
    b.stop().await;
}

// ---- the binary ----

fn dir() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("online-leader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(
    identity: &str,
    kubeconfig: &Path,
    config: &Path,
    safety: &str,
    rebalancer: &str,
) -> Process {
    let log = std::fs::File::create(dir().join(format!("{identity}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_controller"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--safety-endpoint",
            safety,
            "--rebalancer-endpoint",
            rebalancer,
            "--metrics-listen",
            "127.0.0.1:0",
            "--identity",
            identity,
            "--lease-duration",
            "2s",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", "default")
        .env("RUST_LOG", "info")
        .env_remove("CONTROLLER_CONFIG")
        .env_remove("SAFETY_ENDPOINT")
        .env_remove("REBALANCER_ENDPOINT")
        .env_remove("POD_NAME")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the controller binary starts");
    Process(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_follower_takes_over_when_the_leader_is_killed_and_sigterm_releases_the_lease() {
    let pair = pair().await;
    let dir = dir();
    let kubeconfig = pair.fake.kubeconfig_file(&dir);
    let config = common::config_yaml(
        "cluster: test\nscanInterval: 200ms\nscaleDown:\n  unneededTime: 1s\nnodeGroups:\n  - name: general\n    minNodes: 1\n    maxNodes: 10\n",
        &dir,
    );

    let mut a = spawn(
        "bin-a",
        &kubeconfig,
        &config,
        &pair.safety.endpoint,
        &pair.a_endpoint,
    );
    eventually(WAIT, "A leading", || {
        (lease_holder(&pair.fake).as_deref() == Some("bin-a")).then_some(())
    })
    .await;
    let mut b = spawn(
        "bin-b",
        &kubeconfig,
        &config,
        &pair.safety.endpoint,
        &pair.b_endpoint,
    );
    eventually(WAIT, "A removing n3", || pair.a.removals().pop()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        pair.b.calls().is_empty(),
        "the follower called: {:?}",
        pair.b.calls()
    );
    assert!(a.0.try_wait().unwrap().is_none(), "A is running");

    // SIGKILL: no release; B waits out the lease.
    let killed = Instant::now();
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    eventually(WAIT, "B acting", || (pair.b.list_calls() > 0).then_some(())).await;
    let elapsed = killed.elapsed();
    assert!(elapsed <= LEASE + SLACK, "took over after {elapsed:?}");
    assert_eq!(lease_holder(&pair.fake).as_deref(), Some("bin-b"));
    eventually(WAIT, "B removing n3", || pair.b.removals().pop()).await;

    // SIGTERM: B stops and releases the lease.
    let status = Command::new("kill")
        .args(["-TERM", &b.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = common::within(WAIT, "B exiting", async {
        loop {
            if let Some(exit) = b.0.try_wait().unwrap() {
                return exit;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(exit.success(), "{exit:?}; see {}", dir.display());
    assert_eq!(lease_holder(&pair.fake), None);
}
