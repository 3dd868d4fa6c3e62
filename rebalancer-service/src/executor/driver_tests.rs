//! The driver against in-memory adapters: order of effects, strategies, refusals, resume, cancel.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vpsie_proto::rebalancer::v1 as pb;

use super::driver::PHASE_ANNOTATION;
use super::*;

#[derive(Default)]
struct World {
    log: Mutex<Vec<String>>,
    machines: Mutex<Vec<Machine>>,
    created: std::sync::atomic::AtomicUsize,
    never_ready: Mutex<HashSet<String>>,
    refuse: Mutex<HashSet<String>>,
    groups: Mutex<HashMap<String, String>>,
    stored: Mutex<HashMap<String, OperationRecord>>,
}

#[derive(Clone, Default)]
struct Fake(Arc<World>);

impl Fake {
    fn log(&self, line: String) {
        self.0.log.lock().expect("log").push(line);
    }
    fn calls(&self) -> Vec<String> {
        self.0.log.lock().expect("log").clone()
    }
}

impl Cloud for Fake {
    async fn provision(
        &self,
        group: &str,
        _intent_at: &str,
        recover: bool,
        _claimed: &HashSet<String>,
    ) -> Result<Option<Machine>, String> {
        let mut machines = self.0.machines.lock().expect("machines");
        if recover {
            self.log(format!("recover {group}"));
            return Ok(machines.last().cloned());
        }
        let n = self
            .0
            .created
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let machine = Machine {
            vps_id: format!("vps-{n}"),
            hostname: format!("{group}-new-{n}"),
        };
        self.log(format!("provision {}", machine.hostname));
        machines.push(machine.clone());
        Ok(Some(machine))
    }
    async fn delete_machine_of_node(&self, node: &str) -> Result<(), String> {
        self.log(format!("delete-machine {node}"));
        Ok(())
    }
    async fn delete_machine(&self, vps_id: &str) -> Result<(), String> {
        self.log(format!("delete-replacement {vps_id}"));
        self.0
            .machines
            .lock()
            .expect("machines")
            .retain(|m| m.vps_id != vps_id);
        Ok(())
    }
}

impl Cluster for Fake {
    async fn node_group(&self, node: &str) -> Result<Option<String>, String> {
        self.log(format!("lookup {node}"));
        Ok(self.0.groups.lock().expect("groups").get(node).cloned())
    }
    async fn wait_for_node(
        &self,
        hostname: &str,
        _t: Duration,
        _g: &str,
        _o: &str,
    ) -> Result<String, String> {
        if self.0.never_ready.lock().expect("ready").contains(hostname) {
            return Err(format!("node {hostname} not Ready in time"));
        }
        self.log(format!("ready {hostname}"));
        Ok(hostname.to_string())
    }
    async fn cordon(&self, node: &str) -> Result<(), String> {
        self.log(format!("cordon {node}"));
        Ok(())
    }
    async fn uncordon(&self, node: &str) -> Result<(), String> {
        self.log(format!("uncordon {node}"));
        Ok(())
    }
    async fn drain(&self, node: &str, _spec: DrainSpec) -> Result<(), String> {
        self.log(format!("drain {node}"));
        Ok(())
    }
    async fn delete_node(&self, node: &str) -> Result<(), String> {
        self.log(format!("delete-node {node}"));
        Ok(())
    }
    async fn annotate(
        &self,
        node: &str,
        annotations: &[(&str, Option<&str>)],
    ) -> Result<(), String> {
        let phase = annotations
            .iter()
            .find(|(k, _)| *k == PHASE_ANNOTATION)
            .and_then(|(_, v)| *v)
            .unwrap_or("-");
        self.log(format!("annotate {node} {phase}"));
        Ok(())
    }
}

impl Safety for Fake {
    async fn can_remove(&self, node: &str) -> Result<Result<(), String>, String> {
        self.log(format!("safety {node}"));
        if self.0.refuse.lock().expect("refuse").contains(node) {
            Ok(Err(format!("pod a/b on {node} cannot be rescheduled")))
        } else {
            Ok(Ok(()))
        }
    }
}

impl Store for Fake {
    async fn save(&self, operation: &OperationRecord) -> Result<(), String> {
        self.0
            .stored
            .lock()
            .expect("store")
            .insert(operation.id.clone(), operation.clone());
        Ok(())
    }
    async fn load_all(&self) -> Result<Vec<OperationRecord>, String> {
        Ok(self
            .0
            .stored
            .lock()
            .expect("store")
            .values()
            .cloned()
            .collect())
    }
}

type TestDriver = Arc<Driver<Fake, Fake, Fake, Fake>>;

fn driver(fake: &Fake) -> TestDriver {
    let clock: Clock = Arc::new(|| "2026-11-26T08:00:00Z".to_string());
    Driver::new(
        fake.clone(),
        fake.clone(),
        fake.clone(),
        fake.clone(),
        clock,
    )
}

fn plan(id: &str, strategy: pb::Strategy, nodes: &[&str], batch: i32) -> OperationRecord {
    let request = pb::RebalancePlan {
        id: id.into(),
        node_group_name: "general".into(),
        strategy: strategy as i32,
        batch_size: batch,
        max_concurrent: 2,
        candidates: nodes
            .iter()
            .map(|n| pb::Candidate {
                node_name: n.to_string(),
                current_offering: "2-4".into(),
                target_offering: "4-8".into(),
            })
            .collect(),
        ..Default::default()
    };
    OperationRecord::from_plan(&request, "2026-11-26T08:00:00Z").expect("plan")
}

async fn finished(driver: &TestDriver, id: &str) -> pb::Operation {
    let mut watch = driver.watch(id).expect("operation exists");
    loop {
        let current = watch.borrow_and_update().clone();
        if matches!(
            pb::OperationState::try_from(current.state),
            Ok(pb::OperationState::Succeeded
                | pb::OperationState::Failed
                | pb::OperationState::Cancelled)
        ) {
            return current;
        }
        tokio::time::timeout(Duration::from_secs(10), watch.changed())
            .await
            .expect("operation finishes in time")
            .expect("driver alive");
    }
}

#[tokio::test]
async fn rolling_plan_replaces_every_node_in_order() {
    let fake = Fake::default();
    let driver = driver(&fake);
    let mut watch_phases = Vec::new();
    driver
        .submit(plan("p1", pb::Strategy::Rolling, &["a", "b", "c"], 1))
        .await
        .expect("submitted");
    let mut watch = driver.watch("p1").expect("watch");
    loop {
        let current = watch.borrow_and_update().clone();
        watch_phases.push(current.nodes[0].phase);
        if current.state == pb::OperationState::Succeeded as i32 {
            break;
        }
        tokio::time::timeout(Duration::from_secs(10), watch.changed())
            .await
            .expect("in time")
            .expect("alive");
    }
    let done = driver.get("p1").expect("op");
    assert_eq!(
        (done.done_count, done.skipped_count, done.failed_count),
        (3, 0, 0)
    );
    let calls = fake.calls();
    for node in ["a", "b", "c"] {
        let position = |what: &str| {
            calls
                .iter()
                .position(|c| c == &format!("{what} {node}"))
                .expect(what)
        };
        assert!(position("safety") < position("cordon"));
        assert!(position("cordon") < position("drain"));
        assert!(position("drain") < position("delete-machine"));
        assert!(position("delete-machine") < position("delete-node"));
    }
    // batches of one: b starts after a finished
    let a_deleted = calls.iter().position(|c| c == "delete-node a").expect("a");
    let b_lookup = calls.iter().position(|c| c == "lookup b").expect("b");
    assert!(a_deleted < b_lookup, "{calls:?}");
    assert_eq!(fake.0.machines.lock().expect("m").len(), 3);
    // the watcher saw the first node's phases in order (it may skip intermediate ones)
    let mut sorted = watch_phases.clone();
    sorted.sort();
    assert_eq!(watch_phases, sorted, "phases only move forward");
}

#[tokio::test]
async fn surge_never_drains_a_node_whose_replacement_failed() {
    let fake = Fake::default();
    fake.0
        .never_ready
        .lock()
        .expect("r")
        .insert("general-new-2".into());
    let driver = driver(&fake);
    driver
        .submit(plan("s1", pb::Strategy::Surge, &["a", "b", "c"], 3))
        .await
        .expect("submitted");
    let done = finished(&driver, "s1").await;
    assert_eq!(done.state, pb::OperationState::Failed as i32);
    assert_eq!((done.done_count, done.failed_count), (2, 1));
    let calls = fake.calls();
    let victim = done
        .nodes
        .iter()
        .find(|n| n.phase == pb::NodePhase::RolledBack as i32)
        .expect("one rolled back")
        .node_name
        .clone();
    assert!(!calls.contains(&format!("cordon {victim}")), "{calls:?}");
    assert!(!calls.contains(&format!("drain {victim}")));
    assert!(calls.contains(&"delete-replacement vps-2".to_string()));
    // every replacement was asked for before any drain
    let last_provision = calls
        .iter()
        .rposition(|c| c.starts_with("provision"))
        .expect("p");
    let first_drain = calls
        .iter()
        .position(|c| c.starts_with("drain"))
        .expect("d");
    assert!(last_provision < first_drain);
}

#[tokio::test]
async fn at_most_one_add_is_unrecorded_at_any_time() {
    // Regression: concurrent adds in a surge batch could each leave an intent without an id, so
    // a crash made recovery ambiguous between our own machines (and leaked both).
    #[derive(Clone, Default)]
    struct SlowCloud(Fake, Arc<Mutex<usize>>);
    impl Cloud for SlowCloud {
        async fn provision(
            &self,
            group: &str,
            intent_at: &str,
            recover: bool,
            claimed: &HashSet<String>,
        ) -> Result<Option<Machine>, String> {
            let unrecorded = self
                .0
                .0
                .stored
                .lock()
                .expect("store")
                .values()
                .flat_map(|op| op.candidates.iter())
                .filter(|c| c.provision_intent_at.is_some() && c.replacement_vps_id.is_empty())
                .count();
            {
                let mut worst = self.1.lock().expect("worst");
                *worst = (*worst).max(unrecorded);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.provision(group, intent_at, recover, claimed).await
        }
        async fn delete_machine_of_node(&self, node: &str) -> Result<(), String> {
            self.0.delete_machine_of_node(node).await
        }
        async fn delete_machine(&self, vps_id: &str) -> Result<(), String> {
            self.0.delete_machine(vps_id).await
        }
    }
    let fake = Fake::default();
    let cloud = SlowCloud(fake.clone(), Arc::default());
    let clock: Clock = Arc::new(|| "2026-11-26T08:00:00Z".to_string());
    let driver = Driver::new(
        cloud.clone(),
        fake.clone(),
        fake.clone(),
        fake.clone(),
        clock,
    );
    let mut surge = plan("s2", pb::Strategy::Surge, &["a", "b", "c"], 3);
    surge.plan.max_concurrent = 3;
    driver.submit(surge).await.expect("submitted");
    let mut watch = driver.watch("s2").expect("watch");
    while watch.borrow_and_update().state != pb::OperationState::Succeeded as i32 {
        tokio::time::timeout(Duration::from_secs(10), watch.changed())
            .await
            .expect("in time")
            .expect("alive");
    }
    assert_eq!(
        *cloud.1.lock().expect("worst"),
        1,
        "only the add in flight lacks its id"
    );
}

#[tokio::test]
async fn a_safety_refusal_rolls_back_and_leaves_the_node() {
    let fake = Fake::default();
    fake.0.refuse.lock().expect("r").insert("a".into());
    let driver = driver(&fake);
    driver
        .submit(plan("r1", pb::Strategy::Rolling, &["a"], 1))
        .await
        .expect("submitted");
    let done = finished(&driver, "r1").await;
    assert_eq!(done.state, pb::OperationState::Failed as i32);
    let node = &done.nodes[0];
    assert_eq!(node.phase, pb::NodePhase::RolledBack as i32);
    assert_eq!(
        node.error.as_ref().map(|e| e.step.as_str()),
        Some("safety_check")
    );
    let calls = fake.calls();
    assert!(calls.contains(&"delete-replacement vps-1".to_string()));
    assert!(!calls.iter().any(|c| c == "cordon a" || c == "drain a"));
}

#[tokio::test]
async fn the_guard_skips_without_any_write() {
    let fake = Fake::default();
    fake.0
        .groups
        .lock()
        .expect("g")
        .insert("a".into(), "general".into());
    let driver = driver(&fake);
    let mut same = plan("g1", pb::Strategy::Rolling, &["a"], 1);
    same.candidates[0].target_offering = "2-4".into();
    driver.submit(same).await.expect("submitted");
    let done = finished(&driver, "g1").await;
    assert_eq!(done.state, pb::OperationState::Succeeded as i32);
    assert_eq!(
        (done.done_count, done.skipped_count, done.failed_count),
        (0, 1, 0)
    );
    assert_eq!(
        fake.calls(),
        vec!["lookup a".to_string()],
        "no write for a skipped node"
    );
}

#[tokio::test]
async fn same_id_returns_the_same_operation_and_busy_nodes_are_refused() {
    let fake = Fake::default();
    fake.0
        .never_ready
        .lock()
        .expect("r")
        .insert("nothing".into());
    let driver = driver(&fake);
    let first = driver
        .submit(plan("x", pb::Strategy::Rolling, &["a"], 1))
        .await
        .expect("first");
    let again = driver
        .submit(plan("x", pb::Strategy::Rolling, &["a", "b"], 1))
        .await
        .expect("again");
    assert_eq!(first.id, again.id);
    assert_eq!(
        again.nodes.len(),
        1,
        "the existing operation, not a new one"
    );
    finished(&driver, "x").await;
    // a node of an unfinished operation cannot join another
    let slow = Fake::default();
    slow.0
        .never_ready
        .lock()
        .expect("r")
        .insert("general-new-1".into());
    let d2 = self::driver(&slow);
    d2.submit(plan("one", pb::Strategy::Rolling, &["n1"], 1))
        .await
        .expect("one");
    let refused = d2
        .submit(plan("two", pb::Strategy::Rolling, &["n2", "n1"], 1))
        .await;
    match refused {
        Err(SubmitError::NodeBusy { node, operation }) => {
            assert_eq!((node.as_str(), operation.as_str()), ("n1", "one"))
        }
        Ok(op) => {
            // the first operation may already have finished (rolled back) on a fast machine
            let one = d2.get("one").expect("one");
            assert!(
                pb::OperationState::try_from(one.state)
                    .is_ok_and(|s| s != pb::OperationState::Running),
                "{op:?}"
            );
        }
        Err(other) => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn a_restart_after_the_provision_intent_recovers_the_machine() {
    let fake = Fake::default();
    // the previous process recorded the intent, the cloud created the machine, then it died
    fake.0.machines.lock().expect("m").push(Machine {
        vps_id: "vps-7".into(),
        hostname: "general-new-7".into(),
    });
    let mut record = plan("c1", pb::Strategy::Rolling, &["a"], 1);
    record.state = OperationState::Running;
    record.candidates[0].phase = Phase::Provisioning;
    record.candidates[0].provision_intent_at = Some("2026-11-26T07:59:00Z".into());
    fake.0.stored.lock().expect("s").insert("c1".into(), record);
    let driver = driver(&fake);
    assert_eq!(driver.resume().await, Ok(1));
    let done = finished(&driver, "c1").await;
    assert_eq!(done.state, pb::OperationState::Succeeded as i32);
    assert_eq!(done.nodes[0].replacement_vps_id, "vps-7");
    let calls = fake.calls();
    assert!(calls.contains(&"recover general".to_string()));
    assert!(
        !calls.iter().any(|c| c.starts_with("provision")),
        "no second machine: {calls:?}"
    );
    assert_eq!(fake.0.machines.lock().expect("m").len(), 1);
}

#[tokio::test]
async fn cancel_stops_pending_nodes_and_undoes_the_one_in_flight() {
    let fake = Fake::default();
    let driver = driver(&fake);
    // cancel before the operation starts its second batch
    driver
        .submit(plan("k1", pb::Strategy::Rolling, &["a", "b", "c"], 1))
        .await
        .expect("submitted");
    driver.cancel("k1").await.expect("exists");
    let done = finished(&driver, "k1").await;
    assert_eq!(done.state, pb::OperationState::Cancelled as i32);
    assert!(
        done.nodes
            .iter()
            .any(|n| n.phase == pb::NodePhase::Pending as i32)
    );
    // whatever ran was either finished or undone: no cordoned node is left behind
    let calls = fake.calls();
    for node in ["a", "b", "c"] {
        let cordons = calls
            .iter()
            .filter(|c| *c == &format!("cordon {node}"))
            .count();
        let uncordons = calls
            .iter()
            .filter(|c| *c == &format!("uncordon {node}"))
            .count();
        let deleted = calls.contains(&format!("delete-node {node}"));
        assert!(cordons == uncordons || deleted, "{node}: {calls:?}");
    }
}

#[tokio::test]
async fn removal_drains_and_deletes_without_provisioning() {
    let fake = Fake::default();
    let driver = driver(&fake);
    let request = pb::RemoveNodesRequest {
        request_id: "rm".into(),
        node_names: vec!["a".into(), "b".into()],
        drain: None,
        dry_run: false,
    };
    driver
        .submit(OperationRecord::from_removal(&request, "2026-11-26T08:00:00Z").expect("valid"))
        .await
        .expect("submitted");
    let done = finished(&driver, "rm").await;
    assert_eq!(done.done_count, 2);
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| c.starts_with("provision") || c.starts_with("lookup"))
    );
}
