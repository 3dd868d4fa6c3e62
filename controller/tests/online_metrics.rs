//! `/metrics` of `controller run` after real scans, in-process against the Kubernetes API fake, a
//! real safety-service and (first) no rebalancer at all, then a fake one: scan duration and
//! results, candidates, removable and blocked nodes, RPC latency and errors, operations by state.

mod common;

use std::time::Duration;

use common::{Controller, ControllerSpec, FakeRebalancer, Safety, config, eventually, node, pod};
use e2e_tests::kube_fake::KubeFake;

const WAIT: Duration = Duration::from_secs(20);
const SAFETY: &str = "vpsie.safety.v1.SafetyService";
const REBALANCER: &str = "vpsie.rebalancer.v1.RebalancerService";

/// Scrapes `/metrics` every 50 ms until `check` finds what it wants; panics after [`WAIT`].
async fn scrape_until<T>(
    address: std::net::SocketAddr,
    what: &str,
    check: impl Fn(&str) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let metrics = e2e_tests::probes::scrape(address).await;
        if let Some(value) = check(&metrics) {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample `name{…}` whose labels are exactly `labels` (`name` alone when empty).
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == series).then(|| value.parse().ok())?
    })
}

/// n1, n2 busy; n3 idle but for a small movable pod (removable); n4 idle with a pod too big to
/// move anywhere (blocked).
fn seed(fake: &KubeFake) {
    fake.apply(node("n1", "general", "4", None));
    fake.apply(node("n2", "general", "4", None));
    fake.apply(node("n3", "general", "8", None));
    fake.apply(node("n4", "general", "16", None));
    fake.apply(pod("web-1", "n1", "3"));
    fake.apply(pod("web-2", "n2", "3"));
    fake.apply(pod("small", "n3", "100m"));
    fake.apply(pod("big", "n4", "6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_candidates_decisions_rpc_latency_and_errors_show_in_the_metrics() {
    let fake = KubeFake::start().await;
    seed(&fake);
    let safety = Safety::start().await;
    // Nothing listens here: every rebalancer call fails (UNAVAILABLE).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let controller = Controller::start(ControllerSpec {
        fake: &fake,
        config: config("1h", None),
        safety: &safety.endpoint,
        rebalancer: &format!("http://{closed}"),
        identity: "controller-a",
        lease_duration: Duration::from_secs(3),
    })
    .await;

    // The RPC is recorded when it returns, the scan only when it ends: wait for both.
    let metrics = scrape_until(
        controller.metrics,
        "a finished scan that asked the safety-service",
        |metrics| {
            let asked = sample(
                metrics,
                "controller_rpc_duration_seconds_count",
                &format!(r#"service="{SAFETY}",method="CanRemoveNodes""#),
            )
            .is_some_and(|n| n >= 1.0);
            let scanned = sample(metrics, "controller_scans_total", r#"result="ok""#)
                .is_some_and(|n| n >= 1.0);
            (asked && scanned).then(|| metrics.to_owned())
        },
    )
    .await;
    let scans = sample(&metrics, "controller_scans_total", r#"result="ok""#).unwrap_or(0.0);
    assert!(scans >= 1.0, "{metrics}");
    let durations = sample(&metrics, "controller_scan_duration_seconds_count", "");
    assert!(durations.is_some_and(|n| n >= scans), "{metrics}");
    assert!(
        sample(&metrics, "controller_scan_duration_seconds_sum", "").is_some_and(|s| s > 0.0),
        "{metrics}"
    );
    // n3 and n4 are under the threshold; n1 and n2 are not.
    assert_eq!(
        sample(&metrics, "controller_scale_down_candidates", ""),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "controller_skipped_nodes",
            r#"reason="above_threshold""#
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "controller_removable_nodes", ""),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "controller_blocked_nodes",
            r#"reason="REMOVAL_REASON_NO_PLACE_TO_MOVE_PODS""#
        ),
        Some(1.0),
        "{metrics}"
    );
    // The rebalancer cannot be reached: its calls are counted as errors, by code.
    let errors = sample(
        &metrics,
        "controller_rpc_errors_total",
        &format!(r#"service="{REBALANCER}",method="ListOperations",code="Unavailable""#),
    );
    assert!(errors.is_some_and(|n| n >= 1.0), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "controller_rpc_errors_total",
            &format!(r#"service="{SAFETY}",method="CanRemoveNodes",code="Unavailable""#),
        ),
        None,
        "{metrics}"
    );
    controller.stop().await;

    // With a rebalancer, the operations it reports are counted by kind and state.
    let rebalancer = FakeRebalancer::default();
    let (endpoint, _server) = rebalancer.serve().await;
    let controller = Controller::start(ControllerSpec {
        fake: &fake,
        config: config("1s", None),
        safety: &safety.endpoint,
        rebalancer: &endpoint,
        identity: "controller-a",
        lease_duration: Duration::from_secs(3),
    })
    .await;
    let removal = eventually(WAIT, "RemoveNodes", || rebalancer.removals().pop()).await;
    let metrics = scrape_until(controller.metrics, "the running removal", |metrics| {
        sample(
            metrics,
            "controller_operations",
            r#"kind="remove",state="running""#,
        )
        .is_some_and(|n| n == 1.0)
        .then(|| metrics.to_owned())
    })
    .await;
    assert_eq!(
        sample(
            &metrics,
            "controller_rpc_duration_seconds_count",
            &format!(r#"service="{REBALANCER}",method="RemoveNodes""#),
        ),
        Some(1.0),
        "{metrics}"
    );
    rebalancer.finish(&removal.request_id, None);
    scrape_until(controller.metrics, "the succeeded removal", |metrics| {
        sample(
            metrics,
            "controller_operations",
            r#"kind="remove",state="succeeded""#,
        )
        .is_some_and(|n| n == 1.0)
        .then_some(())
    })
    .await;
    controller.stop().await;
}
