//! End to end, over sockets: the real rebalancer-service and safety-service binaries against the
//! Kubernetes and VPSie API fakes, with VPSie faults (5xx bursts, 429, dropped connections,
//! quota, a reply slower than the client's timeout) and SIGKILLs mid-operation.

mod common;

use std::time::Duration;

use common::*;
use e2e_tests::vpsie_fake::{FakeConfig, Fault, MachineState, Route};
use vpsie_proto::rebalancer::v1 as pb;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One node in `general` with one pod, replaced into `workers`.
async fn single(h: &mut Harness, id: &str) -> String {
    let node = h.seed_node(GENERAL, GENERAL, "small");
    h.seed_pod("web-1", &node, "web");
    h.execute(plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "small")],
    ))
    .await;
    node
}

/// Every machine the test created is either a Ready node in use — running, with its Node, and
/// the recorded replacement of a candidate that was not rolled back — or deleted; returns how many
/// were created.
fn assert_no_leak(h: &Harness, op: &pb::Operation) -> usize {
    let created = h.created_machines();
    for m in &created {
        let deleted = matches!(m.state, MachineState::Deleting | MachineState::Gone);
        let used = op
            .nodes
            .iter()
            .any(|n| n.replacement_vps_id == m.identifier && phase(n) != pb::NodePhase::RolledBack);
        let in_use = m.state == MachineState::Running && h.node(&m.hostname).is_some() && used;
        assert!(in_use || deleted, "leaked machine {m:#?}\n{op:#?}");
    }
    created.len()
}

/// The operation record as stored in its ConfigMap (what a restarted process reads).
fn stored_operation(h: &Harness, id: &str) -> serde_json::Value {
    let name = rebalancer_service::store::configmap_name(id);
    h.kube
        .get("ConfigMap", NAMESPACE, &name)
        .and_then(|cm| cm["data"]["operation.json"].as_str().map(str::to_string))
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- VPSie faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpsie_5xx_burst_and_429_are_survived() {
    let mut h = Harness::start().await;
    h.vpsie.inject(Route::ListNodeGroups, Fault::Status(500), 1);
    h.vpsie.inject(Route::GetCluster, Fault::Status(503), 2);
    h.vpsie.inject(
        Route::Add,
        Fault::RateLimit {
            retry_after: Some(1),
        },
        1,
    );
    h.vpsie.inject(Route::Delete, Fault::Status(502), 2);
    let id = "faults-5xx-429";
    let node = single(&mut h, id).await;
    let op = h.wait_terminal(id, secs(40)).await;

    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    assert_replaced(&h, &op, &node, WORKERS, "small", &["web-1"]).await;
    // Each fault was met and survived.
    let statuses = |route| {
        h.vpsie
            .calls_to(route)
            .iter()
            .map(|c| c.status)
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(Route::ListNodeGroups), [Some(500), Some(200)]);
    assert_eq!(
        statuses(Route::GetCluster)[..3],
        [Some(503), Some(503), Some(200)]
    );
    assert_eq!(statuses(Route::Add), [Some(429), Some(200)]);
    let adds = h.vpsie.calls_to(Route::Add);
    assert!(
        adds[1].at.duration_since(adds[0].at) >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured"
    );
    assert_eq!(statuses(Route::Delete), [Some(502), Some(502), Some(200)]);
    assert_eq!(h.created_machines().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_on_add_creates_no_duplicate() {
    let mut h = Harness::start().await;
    // The machine is created, then the connection is closed without a reply.
    h.vpsie.inject(Route::Add, Fault::DropConnection, 1);
    let id = "dropped-add";
    let node = single(&mut h, id).await;
    let op = h.wait_terminal(id, secs(40)).await;

    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    let adds = h.vpsie.calls_to(Route::Add);
    assert_eq!(adds.len(), 1, "the add was sent again: {adds:#?}");
    assert_eq!(adds[0].status, None);
    let created = h.created_machines();
    assert_eq!(created.len(), 1, "{created:#?}");
    assert_eq!(
        node_progress(&op, &node).replacement_vps_id,
        created[0].identifier
    );
    assert_replaced(&h, &op, &node, WORKERS, "small", &["web-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_error_fails_at_once() {
    let mut h = Harness::start().await;
    h.vpsie.inject(Route::Add, Fault::quota(), u32::MAX);
    let id = "quota";
    let node = single(&mut h, id).await;
    let op = h.wait_terminal(id, secs(20)).await;

    assert_eq!(state(&op), pb::OperationState::Failed, "{op:#?}");
    assert_eq!((op.done_count, op.failed_count), (0, 1));
    let progress = node_progress(&op, &node);
    assert_eq!(phase(progress), pb::NodePhase::RolledBack, "{progress:#?}");
    let error = progress.error.as_ref().expect("error");
    assert_eq!(error.step, "provision");
    assert!(error.message.contains("quota"), "{error:?}");
    // Exactly one add: a quota answer is never retried.
    let adds = h.vpsie.calls_to(Route::Add);
    assert_eq!(adds.len(), 1, "{adds:#?}");
    assert!(h.created_machines().is_empty());
    assert!(h.vpsie.calls_to(Route::Delete).is_empty());
    let writes = h.node_writes(&node);
    assert!(writes.iter().all(is_annotation_patch), "{writes:#?}");
    assert!(h.evictions("web-1").is_empty());
    assert!(h.node(&node).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_timeout_creates_no_duplicate() {
    let mut h = Harness::start().await;
    // The machine is created at once, but the reply comes after the client's 30 s timeout.
    h.vpsie.inject(Route::Add, Fault::Delay(secs(40)), 1);
    let id = "add-timeout";
    let node = single(&mut h, id).await;
    let op = h.wait_terminal(id, secs(90)).await;

    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    assert_eq!(h.vpsie.calls_to(Route::Add).len(), 1);
    let created = h.created_machines();
    assert_eq!(created.len(), 1, "{created:#?}");
    assert_eq!(
        node_progress(&op, &node).replacement_vps_id,
        created[0].identifier
    );
    assert_replaced(&h, &op, &node, WORKERS, "small", &["web-1"]).await;
    assert!(h.rebalancer_log_events().iter().any(|e| {
        e["message"] == "VPSie worker created by the failed add found by listing; not adding again"
    }));
}

// ---------------------------------------------------------------- graceful shutdown

/// A WatchOperation stream lasts as long as its operation: on SIGTERM the server stops waiting
/// for it after the shutdown grace period and exits (flushing its spans), instead of waiting for
/// the operation, or for SIGKILL. The operation is stored: a new process resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_open_watch_stream_exits_after_the_grace_period() {
    let extras = Extras {
        rebalancer_args: vec!["--shutdown-grace-seconds".into(), "1".into()],
        ..Extras::default()
    };
    let mut h = Harness::start_with_extras(FakeConfig::default(), extras).await;
    let node = h.seed_node(GENERAL, GENERAL, "small");
    h.seed_pod("web-1", &node, "web");
    // The add is applied at once; the reply is held far longer than the test waits.
    h.vpsie.inject(Route::Add, Fault::Delay(secs(120)), 1);
    let id = "sigterm-watched";
    h.execute(plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "small")],
    ))
    .await;
    eventually("the add call", secs(20), || {
        !h.vpsie.calls_to(Route::Add).is_empty()
    })
    .await;
    let mut stream = h
        .client
        .watch_operation(pb::WatchOperationRequest { id: id.to_string() })
        .await
        .expect("WatchOperation")
        .into_inner();
    let first = tokio::time::timeout(secs(10), stream.message())
        .await
        .expect("the current state in time")
        .expect("a message")
        .expect("the current state");
    assert!(!is_terminal(&first), "{first:#?}");
    // Read the stream meanwhile, as a watching controller would.
    let watcher = tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(status) => return Err(status),
            }
        }
    });

    // Proc::terminate fails the test if the process is still there after 30 s.
    let status = h.terminate_rebalancer();
    assert!(status.success(), "{status:?}");
    assert!(
        h.rebalancer_log_events().iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("calls still open after the shutdown grace period"))),
        "{:#?}",
        h.rebalancer_logs()
    );
    // The stream ended with the process (an error: the connection is gone).
    let ended = tokio::time::timeout(secs(10), watcher)
        .await
        .expect("the stream ends with the process")
        .expect("the watcher task");
    assert!(ended.is_err(), "{ended:?}");
    let op = stored_operation(&h, id);
    assert_eq!(op["id"], id, "{op:#}");

    // The stored operation is resumed by the next process. Its last step, deleting the old
    // machine, is held, so that it cannot finish before it is looked at.
    h.vpsie.inject(Route::Delete, Fault::Delay(secs(120)), 1);
    h.restart_rebalancer().await;
    let op = h.get(id).await;
    assert!(!is_terminal(&op), "{op:#?}");
}

// ---------------------------------------------------------------- crash safety

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_operation_resumes_without_leaks() {
    let mut h = Harness::start().await;
    let n1 = h.seed_node(GENERAL, GENERAL, "small");
    let n2 = h.seed_node(GENERAL, GENERAL, "small");
    h.seed_pod("web-1", &n1, "web");
    h.seed_pod("api-1", &n2, "api");
    // The PDB lets the safety re-check pass, then blocks the first drain: one refusal, and the
    // budget is spent (0) before the retry.
    h.seed_pdb("web-pdb", "web", 1);
    h.kube.fail_evictions(NAMESPACE, "web-1", 1, 429);
    let id = "crash-drain";
    let mut p = plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&n1, "small", "small"), (&n2, "small", "small")],
    );
    p.drain.as_mut().unwrap().timeout_seconds = 60;
    h.execute(p).await;
    eventually("the first eviction", secs(30), || {
        !h.evictions("web-1").is_empty()
    })
    .await;
    h.kube.set_pdb_disruptions_allowed(NAMESPACE, "web-pdb", 0);
    eventually("a refused retry", secs(10), || {
        h.evictions("web-1").len() >= 2
    })
    .await;
    let op = h.get(id).await;
    assert_eq!(phase(node_progress(&op, &n1)), pb::NodePhase::Draining);
    let first = h.created_machines();
    assert_eq!(first.len(), 1);
    assert!(h.node(&first[0].hostname).is_some());

    h.kill_rebalancer();
    let attempts = h.evictions("web-1").len();
    h.restart_rebalancer().await;
    // The new process knows the operation and resumes the drain where it was.
    let op = h.get(id).await;
    assert_eq!(op.nodes[0].replacement_vps_id, first[0].identifier);
    eventually("the resumed drain", secs(20), || {
        h.evictions("web-1").len() > attempts
    })
    .await;
    h.kube.set_pdb_disruptions_allowed(NAMESPACE, "web-pdb", 1);

    let op = h.wait_terminal(id, secs(60)).await;
    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    assert_replaced(&h, &op, &n1, WORKERS, "small", &["web-1"]).await;
    assert_replaced(&h, &op, &n2, WORKERS, "small", &["api-1"]).await;
    // Zero leaked, zero duplicated.
    assert_eq!(assert_no_leak(&h, &op), 2);
    assert_eq!(h.vpsie.calls_to(Route::Add).len(), 2);
    assert_eq!(op.nodes[0].replacement_vps_id, first[0].identifier);
    assert!(
        h.rebalancer_log_events()
            .iter()
            .any(|e| e["message"] == "resuming operation" && e["operation"] == id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_add_creates_no_duplicate() {
    let mut h = Harness::start().await;
    let node = h.seed_node(GENERAL, GENERAL, "small");
    h.seed_pod("web-1", &node, "web");
    // The node's own machine was created a moment ago, within the window recovery searches (whole
    // seconds, 1 s slack): recovery must not take it for the replacement.
    // The add is applied at once; the reply is held.
    h.vpsie.inject(Route::Add, Fault::Delay(secs(30)), 1);
    let id = "crash-add";
    h.execute(plan(
        id,
        WORKERS,
        pb::Strategy::Rolling,
        &[(&node, "small", "small")],
    ))
    .await;
    eventually("the add call", secs(20), || {
        !h.vpsie.calls_to(Route::Add).is_empty()
    })
    .await;
    h.kill_rebalancer();
    assert_eq!(h.created_machines().len(), 1);
    h.restart_rebalancer().await;
    let op = h.get(id).await;
    assert!(!is_terminal(&op), "{op:#?}");

    let op = h.wait_terminal(id, secs(60)).await;
    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    assert_eq!(h.vpsie.calls_to(Route::Add).len(), 1, "no second add");
    let created = h.created_machines();
    assert_eq!(created.len(), 1, "{created:#?}");
    assert_eq!(
        node_progress(&op, &node).replacement_vps_id,
        created[0].identifier
    );
    assert_replaced(&h, &op, &node, WORKERS, "small", &["web-1"]).await;
    assert_eq!(assert_no_leak(&h, &op), 1);
}

/// SURGE provisions candidates concurrently: both intents are recorded, the first add completes
/// (its machine recorded as that candidate's replacement), the second is in flight when the
/// process dies. On restart the second candidate must take only the machine nobody claims — not its
/// sibling's replacement, not its own node's machine — and nothing may be left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_surge_add_creates_no_duplicate_and_no_leak() {
    let mut h = Harness::start().await;
    let n1 = h.seed_node(GENERAL, GENERAL, "small");
    let n2 = h.seed_node(GENERAL, GENERAL, "small");
    h.seed_pod("web-1", &n1, "web");
    h.seed_pod("api-1", &n2, "api");
    // The first add answers at once; the second is applied but its reply held.
    h.vpsie.inject(Route::Add, Fault::Delay(Duration::ZERO), 1);
    h.vpsie.inject(Route::Add, Fault::Delay(secs(30)), 1);
    let id = "crash-surge-add";
    let mut p = plan(
        id,
        WORKERS,
        pb::Strategy::Surge,
        &[(&n1, "small", "small"), (&n2, "small", "small")],
    );
    p.batch_size = 2;
    p.max_concurrent = 2;
    h.execute(p).await;
    // Killed once the first machine is recorded in the stored operation and the second add has
    // been sent.
    eventually(
        "the first machine recorded and the second add sent",
        secs(20),
        || {
            let stored = stored_operation(&h, id);
            let recorded = stored["candidates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| {
                    c["replacement_vps_id"]
                        .as_str()
                        .is_some_and(|v| !v.is_empty())
                })
                .count();
            recorded == 1 && h.vpsie.calls_to(Route::Add).len() == 2
        },
    )
    .await;
    h.kill_rebalancer();
    assert_eq!(h.created_machines().len(), 2);
    h.restart_rebalancer().await;

    let op = h.wait_terminal(id, secs(60)).await;
    assert_eq!(assert_no_leak(&h, &op), 2);
    assert_eq!(h.vpsie.calls_to(Route::Add).len(), 2, "no third add");
    assert_eq!(state(&op), pb::OperationState::Succeeded, "{op:#?}");
    assert_replaced(&h, &op, &n1, WORKERS, "small", &["web-1"]).await;
    assert_replaced(&h, &op, &n2, WORKERS, "small", &["api-1"]).await;
}
