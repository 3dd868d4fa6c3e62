//! Planner tests on snapshots built directly, with hand-written safety answers.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use vpsie_proto::rebalancer::v1 as rb;
use vpsie_proto::safety::v1 as pb;

use super::*;
use crate::config::{Config, NodeGroup};

// ---- fixture builders ----

struct NodeBuilder(pb::Node);

fn node(name: &str, group: &str) -> NodeBuilder {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".to_owned(), name.to_owned());
    if !group.is_empty() {
        labels.insert(NODEGROUP_LABEL.to_owned(), group.to_owned());
    }
    NodeBuilder(pb::Node {
        metadata: Some(pb::ObjectMeta {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            labels,
            ..Default::default()
        }),
        spec: Some(pb::NodeSpec::default()),
        status: Some(pb::NodeStatus {
            allocatable: [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            conditions: vec![pb::NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
            }],
            ..Default::default()
        }),
    })
}

impl NodeBuilder {
    fn meta(&mut self) -> &mut pb::ObjectMeta {
        self.0.metadata.as_mut().unwrap()
    }
    fn label(mut self, key: &str, value: &str) -> Self {
        self.meta().labels.insert(key.into(), value.into());
        self
    }
    fn annotation(mut self, key: &str, value: &str) -> Self {
        self.meta().annotations.insert(key.into(), value.into());
        self
    }
    fn offering(self, offering: &str) -> Self {
        self.label(OFFERING_LABEL, offering)
    }
    fn uid(mut self, uid: &str) -> Self {
        self.meta().uid = uid.into();
        self
    }
    fn allocatable(mut self, resource: &str, quantity: &str) -> Self {
        let status = self.0.status.as_mut().unwrap();
        status.allocatable.insert(resource.into(), quantity.into());
        self
    }
    fn without_allocatable(mut self, resource: &str) -> Self {
        self.0.status.as_mut().unwrap().allocatable.remove(resource);
        self
    }
    fn not_ready(mut self) -> Self {
        self.0.status.as_mut().unwrap().conditions[0].status = "False".into();
        self
    }
    fn cordoned(mut self) -> Self {
        self.0.spec.as_mut().unwrap().unschedulable = true;
        self
    }
    fn tainted(mut self, key: &str) -> Self {
        self.0.spec.as_mut().unwrap().taints.push(pb::Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
        self
    }
    fn deleting(mut self) -> Self {
        self.meta().deletion_timestamp = "2026-11-26T10:00:00Z".into();
        self
    }
}

struct PodBuilder(pb::Pod);

/// A ReplicaSet pod with one container requesting `cpu` and `memory` ("" = none).
fn pod(name: &str, node: &str, cpu: &str, memory: &str) -> PodBuilder {
    PodBuilder(pb::Pod {
        metadata: Some(pb::ObjectMeta {
            name: name.to_owned(),
            namespace: "default".into(),
            owner_references: vec![pb::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: format!("{name}-rs"),
                uid: format!("rs-{name}"),
                controller: Some(true),
            }],
            ..Default::default()
        }),
        spec: Some(pb::PodSpec {
            node_name: node.to_owned(),
            containers: vec![container(cpu, memory, "")],
            ..Default::default()
        }),
        status: Some(pb::PodStatus {
            phase: "Running".into(),
        }),
    })
}

fn container(cpu: &str, memory: &str, restart_policy: &str) -> pb::Container {
    let mut requests = BTreeMap::new();
    if !cpu.is_empty() {
        requests.insert("cpu".to_owned(), cpu.to_owned());
    }
    if !memory.is_empty() {
        requests.insert("memory".to_owned(), memory.to_owned());
    }
    pb::Container {
        name: "c".into(),
        resources: Some(pb::ResourceRequirements {
            requests,
            limits: BTreeMap::new(),
        }),
        restart_policy: restart_policy.into(),
        ..Default::default()
    }
}

impl PodBuilder {
    fn spec(&mut self) -> &mut pb::PodSpec {
        self.0.spec.as_mut().unwrap()
    }
    fn daemonset(mut self) -> Self {
        self.0.metadata.as_mut().unwrap().owner_references[0].kind = "DaemonSet".into();
        self
    }
    fn mirror(mut self) -> Self {
        let meta = self.0.metadata.as_mut().unwrap();
        meta.annotations
            .insert(MIRROR_ANNOTATION.into(), "abc".into());
        meta.owner_references.clear();
        self
    }
    fn phase(mut self, phase: &str) -> Self {
        self.0.status.as_mut().unwrap().phase = phase.into();
        self
    }
    fn container(mut self, cpu: &str, memory: &str) -> Self {
        self.spec().containers.push(container(cpu, memory, ""));
        self
    }
    fn init(mut self, cpu: &str, memory: &str) -> Self {
        self.spec().init_containers.push(container(cpu, memory, ""));
        self
    }
    fn sidecar(mut self, cpu: &str, memory: &str) -> Self {
        self.spec()
            .init_containers
            .push(container(cpu, memory, "Always"));
        self
    }
    fn overhead(mut self, cpu: &str, memory: &str) -> Self {
        self.spec().overhead = [("cpu", cpu), ("memory", memory)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self
    }
    fn limit_only(mut self, cpu: &str) -> Self {
        let resources = self.spec().containers[0].resources.as_mut().unwrap();
        resources.requests.remove("cpu");
        resources.limits.insert("cpu".into(), cpu.into());
        self
    }
    fn pod_level(mut self, cpu: &str) -> Self {
        self.spec().resources = Some(pb::ResourceRequirements {
            requests: [("cpu".to_owned(), cpu.to_owned())].into_iter().collect(),
            limits: BTreeMap::new(),
        });
        self
    }
}

fn snapshot(nodes: Vec<NodeBuilder>, pods: Vec<PodBuilder>) -> pb::ClusterSnapshot {
    pb::ClusterSnapshot {
        nodes: nodes.into_iter().map(|n| n.0).collect(),
        pods: pods.into_iter().map(|p| p.0).collect(),
        ..Default::default()
    }
}

fn config(groups: &[(&str, u32, u32, Option<&str>)]) -> Config {
    Config {
        node_groups: groups
            .iter()
            .map(|&(name, min_nodes, max_nodes, offering)| NodeGroup {
                name: name.into(),
                min_nodes,
                max_nodes,
                offering: offering.map(str::to_owned),
            })
            .collect(),
        ..Config::default()
    }
}

/// The answer of a safety-service that finds exactly `removable` removable, walking the
/// candidates in order and stopping at `max_nodes`, as `CanRemoveNodes` does.
fn answer(survey: &Survey, removable: &[&str]) -> SafetyAnswers {
    let mut response = pb::CanRemoveNodesResponse::default();
    for name in &survey.candidates {
        if survey.max_nodes > 0 && response.removable_nodes.len() >= survey.max_nodes as usize {
            break;
        }
        let ok = removable.contains(&name.as_str());
        response.results.push(pb::CanRemoveNodeResponse {
            node_name: name.clone(),
            removable: ok,
            reason: if ok {
                pb::RemovalReason::Removable
            } else {
                pb::RemovalReason::NoPlaceToMovePods
            } as i32,
            message: if ok {
                format!("node {name} can be removed: 1 pod(s) can move to other nodes")
            } else {
                format!("pod default/big-{name} cannot be rescheduled: 0/3 nodes are available")
            },
            ..Default::default()
        });
        if ok {
            response.removable_nodes.push(name.clone());
        }
    }
    SafetyAnswers {
        removal: Some(response),
        drift: BTreeMap::new(),
    }
}

fn drift_answers(answers: &mut SafetyAnswers, survey: &Survey, blocked: &[&str]) {
    for name in &survey.drift_candidates {
        let ok = !blocked.contains(&name.as_str());
        answers.drift.insert(
            name.clone(),
            pb::CanRemoveNodeResponse {
                node_name: name.clone(),
                removable: ok,
                message: if ok {
                    String::new()
                } else {
                    format!("pod default/db-{name} cannot be moved: it uses local storage")
                },
                ..Default::default()
            },
        );
    }
}

const T0: Duration = Duration::from_secs(1_795_000_000);

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(seconds)
}

struct Run {
    survey: Survey,
    scan: Scan,
}

impl Run {
    fn decision(&self, name: &str) -> &Decision {
        &self.report(name).decision
    }
    fn report(&self, name: &str) -> &NodeReport {
        self.scan
            .nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no report for {name}"))
    }
    fn removed(&self) -> Vec<&str> {
        self.scan.remove.as_ref().map_or_else(Vec::new, |r| {
            r.node_names.iter().map(String::as_str).collect()
        })
    }
}

/// One scan where the safety-service finds `removable` removable.
fn scan(
    snapshot: &pb::ClusterSnapshot,
    config: &Config,
    removable: &[&str],
    timers: &Timers,
    in_flight: &InFlight,
    now: SystemTime,
    timer: UnneededTimer,
) -> Run {
    let survey = survey(snapshot, config, in_flight).expect("survey");
    let answers = answer(&survey, removable);
    let scan = decide(&survey, config, &answers, timers, in_flight, now, timer);
    Run { survey, scan }
}

fn offline(snapshot: &pb::ClusterSnapshot, config: &Config, removable: &[&str]) -> Run {
    scan(
        snapshot,
        config,
        removable,
        &Timers::default(),
        &InFlight::default(),
        at(0),
        UnneededTimer::AssumeSatisfied,
    )
}

fn skip_of(run: &Run, name: &str) -> Skip {
    match run.decision(name) {
        Decision::NotCandidate(skip) => skip.clone(),
        other => panic!("{name}: expected NotCandidate, got {other:?}"),
    }
}

// ---- utilization ----

#[test]
fn utilization_is_the_larger_of_cpu_and_memory_without_daemonset_mirror_and_finished_pods() {
    let snap = snapshot(
        vec![node("n1", "g")],
        vec![
            pod("a", "n1", "1", "1Gi"),
            pod("b", "n1", "500m", "3Gi"),
            pod("ds", "n1", "2", "2Gi").daemonset(),
            pod("static", "n1", "2", "2Gi").mirror(),
            pod("done", "n1", "2", "2Gi").phase("Succeeded"),
            pod("failed", "n1", "2", "2Gi").phase("Failed"),
            pod("elsewhere", "n2", "2", "2Gi"),
            pod("pending", "", "2", "2Gi"),
        ],
    );
    let survey = survey(&snap, &config(&[("g", 0, 5, None)]), &InFlight::default()).unwrap();
    let u = survey.nodes[0].utilization.unwrap();
    assert_eq!(u.cpu, 1.5 / 4.0);
    assert_eq!(u.memory, 4.0 / 8.0);
    assert_eq!(u.value(), 0.5);
    assert_eq!(u.dominant(), "memory");
}

#[test]
fn pod_requests_take_init_containers_sidecars_overhead_limits_and_pod_level_resources() {
    let alloc = |n: NodeBuilder| n.allocatable("cpu", "100").allocatable("memory", "100Gi");
    let cases: Vec<(PodBuilder, f64)> = vec![
        // Two containers: 1 + 2.
        (pod("p", "n1", "1", "").container("2", ""), 3.0),
        // A regular init container larger than the containers dominates.
        (pod("p", "n1", "1", "").init("5", ""), 5.0),
        // A smaller one does not.
        (pod("p", "n1", "1", "").init("500m", ""), 1.0),
        // A sidecar adds to the containers and to every later init container.
        (
            pod("p", "n1", "1", "").sidecar("2", "").init("2500m", ""),
            4.5,
        ),
        (pod("p", "n1", "1", "").sidecar("2", ""), 3.0),
        // Overhead is added.
        (pod("p", "n1", "1", "").overhead("250m", "1Mi"), 1.25),
        // A limit without a request requests the limit.
        (pod("p", "n1", "1", "").limit_only("3"), 3.0),
        // Pod-level resources replace the containers' figure.
        (
            pod("p", "n1", "1", "").container("2", "").pod_level("7"),
            7.0,
        ),
    ];
    for (i, (pod, cores)) in cases.into_iter().enumerate() {
        let snap = snapshot(vec![alloc(node("n1", "g"))], vec![pod]);
        let survey = survey(&snap, &config(&[("g", 0, 5, None)]), &InFlight::default()).unwrap();
        let cpu = survey.nodes[0].utilization.unwrap().cpu * 100.0;
        assert!(
            (cpu - cores).abs() < 1e-9,
            "case {i}: {cpu} cores, want {cores}"
        );
    }
}

#[test]
fn an_invalid_quantity_is_named_with_the_safety_service_path() {
    let mut bad = pod("web-1", "n1", "12x", "1Gi");
    bad.0.metadata.as_mut().unwrap().namespace = "team-a".into();
    let snap = snapshot(
        vec![node("n1", "g")],
        vec![pod("ok", "n1", "1", "1Gi"), bad],
    );
    let error = survey(&snap, &config(&[("g", 0, 5, None)]), &InFlight::default()).unwrap_err();
    assert_eq!(
        error.path,
        "snapshot.pods[1].spec.containers[0].resources.requests[\"cpu\"]"
    );
    assert!(
        error.message.starts_with("invalid quantity \"12x\""),
        "{error}"
    );

    let snap = snapshot(vec![node("n1", "g").allocatable("memory", "lots")], vec![]);
    let error = survey(&snap, &config(&[("g", 0, 5, None)]), &InFlight::default()).unwrap_err();
    assert_eq!(
        error.path,
        "snapshot.nodes[0].status.allocatable[\"memory\"]"
    );

    let snap = snapshot(vec![node("n1", "g"), node("n1", "g")], vec![]);
    let error = survey(&snap, &config(&[("g", 0, 5, None)]), &InFlight::default()).unwrap_err();
    assert_eq!(error.path, "snapshot.nodes[1].metadata.name");
}

// ---- candidates ----

#[test]
fn only_nodes_strictly_under_the_threshold_are_candidates_least_utilised_first() {
    let snap = snapshot(
        vec![
            node("at", "g"),
            node("above", "g"),
            node("low-b", "g"),
            node("low-a", "g"),
            node("lowest", "g"),
        ],
        vec![
            pod("p1", "at", "2", ""),
            pod("p2", "above", "3", ""),
            pod("p3", "low-b", "1", ""),
            pod("p4", "low-a", "1", ""),
            pod("p5", "lowest", "", "1Gi"),
        ],
    );
    let run = offline(&snap, &config(&[("g", 0, 10, None)]), &[]);
    assert_eq!(run.survey.candidates, ["lowest", "low-a", "low-b"]);
    assert_eq!(skip_of(&run, "at"), Skip::AboveThreshold);
    assert_eq!(skip_of(&run, "above"), Skip::AboveThreshold);
    assert_eq!(
        run.report("above").reason,
        "utilization 75.0% (cpu) is not under the threshold 50.0%"
    );
    assert!(matches!(run.decision("low-a"), Decision::Blocked { .. }));
}

#[test]
fn protected_disabled_cordoned_unready_and_foreign_nodes_are_not_candidates() {
    let snap = snapshot(
        vec![
            node("protected", "g").annotation("autoscaler.vpsie.com/protected", "true"),
            node("disabled-label", "g").label("autoscaler.vpsie.com/scale-down-disabled", "true"),
            node("disabled-ca", "g").annotation(
                "cluster-autoscaler.kubernetes.io/scale-down-disabled",
                "true",
            ),
            node("not-protected", "g").annotation("autoscaler.vpsie.com/protected", "false"),
            node("cordoned", "g").cordoned(),
            node("draining", "g").tainted(DRAINING_TAINT),
            node("unready", "g").not_ready(),
            node("deleting", "g").deleting(),
            node("no-group", ""),
            node("other-group", "other"),
            node("no-memory", "g").without_allocatable("memory"),
        ],
        vec![],
    );
    let cfg = config(&[("g", 0, 20, None)]);
    let run = offline(&snap, &cfg, &["not-protected"]);
    assert_eq!(run.survey.candidates, ["not-protected"]);
    assert_eq!(
        skip_of(&run, "protected"),
        Skip::Protected("autoscaler.vpsie.com/protected")
    );
    assert_eq!(
        skip_of(&run, "disabled-label"),
        Skip::Protected("autoscaler.vpsie.com/scale-down-disabled")
    );
    assert_eq!(
        skip_of(&run, "disabled-ca"),
        Skip::Protected("cluster-autoscaler.kubernetes.io/scale-down-disabled")
    );
    assert_eq!(skip_of(&run, "cordoned"), Skip::Cordoned);
    assert_eq!(skip_of(&run, "draining"), Skip::Draining);
    assert_eq!(skip_of(&run, "unready"), Skip::NotReady);
    assert_eq!(skip_of(&run, "deleting"), Skip::Deleting);
    assert_eq!(skip_of(&run, "no-group"), Skip::NoGroupLabel);
    assert_eq!(skip_of(&run, "other-group"), Skip::UnknownGroup);
    assert_eq!(
        skip_of(&run, "no-memory"),
        Skip::UnknownAllocatable("memory")
    );
    assert!(matches!(
        run.decision("not-protected"),
        Decision::Eligible { .. }
    ));
    assert_eq!(
        run.report("protected").reason,
        "protected from scale-down (autoscaler.vpsie.com/protected=true)"
    );

    let mut off = cfg.clone();
    off.scale_down.enabled = false;
    let run = offline(&snap, &off, &[]);
    assert!(run.survey.candidates.is_empty());
    assert_eq!(skip_of(&run, "not-protected"), Skip::ScaleDownDisabled);
    assert!(run.scan.remove.is_none());
}

// ---- unneeded timer ----

#[test]
fn a_node_becomes_eligible_after_unneeded_time_without_interruption() {
    let snap = snapshot(vec![node("n1", "g"), node("n2", "g")], vec![]);
    let cfg = config(&[("g", 0, 5, None)]); // unneededTime 10m
    let none = InFlight::default();
    let enforced = UnneededTimer::Enforced;

    let first = scan(
        &snap,
        &cfg,
        &["n1"],
        &Timers::default(),
        &none,
        at(0),
        enforced,
    );
    assert_eq!(first.decision("n1"), &Decision::Removable { since: at(0) });
    assert!(first.scan.remove.is_none());
    assert_eq!(first.scan.timers.removable_since.get("n1"), Some(&at(0)));
    assert!(!first.scan.timers.removable_since.contains_key("n2"));
    assert_eq!(
        first.report("n1").reason,
        "removable for 0s of 10m: node n1 can be removed: 1 pod(s) can move to other nodes"
    );

    let later = scan(
        &snap,
        &cfg,
        &["n1"],
        &first.scan.timers,
        &none,
        at(599),
        enforced,
    );
    assert_eq!(later.decision("n1"), &Decision::Removable { since: at(0) });
    assert!(
        later
            .report("n1")
            .reason
            .starts_with("removable for 9m 59s of 10m")
    );

    let done = scan(
        &snap,
        &cfg,
        &["n1"],
        &later.scan.timers,
        &none,
        at(600),
        enforced,
    );
    assert_eq!(done.decision("n1"), &Decision::Eligible { since: at(0) });
    assert_eq!(done.removed(), ["n1"]);
}

#[test]
fn a_node_that_becomes_unremovable_resets_its_timer() {
    let snap = snapshot(vec![node("n1", "g")], vec![]);
    let cfg = config(&[("g", 0, 5, None)]);
    let none = InFlight::default();
    let enforced = UnneededTimer::Enforced;

    let first = scan(
        &snap,
        &cfg,
        &["n1"],
        &Timers::default(),
        &none,
        at(0),
        enforced,
    );
    let blocked = scan(
        &snap,
        &cfg,
        &[],
        &first.scan.timers,
        &none,
        at(300),
        enforced,
    );
    assert!(matches!(blocked.decision("n1"), Decision::Blocked { .. }));
    assert!(blocked.scan.timers.removable_since.is_empty());
    assert_eq!(
        blocked.report("n1").status_annotation().unwrap(),
        "blocked: pod default/big-n1 cannot be rescheduled: 0/3 nodes are available"
    );

    let again = scan(
        &snap,
        &cfg,
        &["n1"],
        &blocked.scan.timers,
        &none,
        at(660),
        enforced,
    );
    assert_eq!(
        again.decision("n1"),
        &Decision::Removable { since: at(660) }
    );
    assert!(again.scan.remove.is_none());

    // A node that stops being a candidate (here: cordoned) resets as well.
    let cordoned = snapshot(vec![node("n1", "g").cordoned()], vec![]);
    let run = scan(
        &cordoned,
        &cfg,
        &[],
        &first.scan.timers,
        &none,
        at(300),
        enforced,
    );
    assert!(run.scan.timers.removable_since.is_empty());

    // So does an unanswered CanRemoveNodes (fail closed).
    let survey = survey(&snap, &cfg, &none).unwrap();
    let scan = decide(
        &survey,
        &cfg,
        &SafetyAnswers::default(),
        &first.scan.timers,
        &none,
        at(900),
        enforced,
    );
    assert_eq!(
        scan.nodes[0].decision,
        Decision::Blocked {
            message: "no answer from the safety-service".into()
        }
    );
    assert!(scan.timers.removable_since.is_empty());
}

#[test]
fn offline_the_unneeded_timer_counts_as_satisfied_and_says_so() {
    let snap = snapshot(vec![node("n1", "g")], vec![]);
    let run = offline(&snap, &config(&[("g", 0, 5, None)]), &["n1"]);
    assert_eq!(run.decision("n1"), &Decision::Eligible { since: at(0) });
    assert!(
        run.report("n1").reason.starts_with(
            "removable (unneeded time 10m treated as satisfied offline); selected for RemoveNodes"
        ),
        "{}",
        run.report("n1").reason
    );
}

#[test]
fn the_status_annotation_is_one_line() {
    let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    assert_eq!(
        Decision::Removable { since }.status_annotation().unwrap(),
        "removable since 2026-11-18T11:06:40Z"
    );
    assert_eq!(
        Decision::Eligible { since }.status_annotation().unwrap(),
        "removable since 2026-11-18T11:06:40Z"
    );
    assert_eq!(
        Decision::Blocked {
            message: "pod a/b cannot be moved:\nreasons".into()
        }
        .status_annotation()
        .unwrap(),
        "blocked: pod a/b cannot be moved: reasons"
    );
    assert_eq!(
        Decision::NotCandidate(Skip::Cordoned).status_annotation(),
        None
    );
}

// ---- minNodes ----

#[test]
fn max_nodes_is_bounded_by_every_groups_min_nodes() {
    let snap = snapshot(
        vec![
            node("a1", "a"),
            node("a2", "a"),
            node("a3", "a"),
            node("a4", "a"),
            node("b1", "b"),
            node("b2", "b"),
            node("c1", "c"),
            node("c2", "c").cordoned(),
        ],
        vec![pod("pa4", "a4", "1", ""), pod("pb2", "b2", "1", "")],
    );
    // a: 4 nodes, min 2 → 2 may go; b: 2 nodes, min 1 → 1; c: 2 nodes (one cordoned still
    // counts), min 2 → none.
    let cfg = config(&[("a", 2, 10, None), ("b", 1, 10, None), ("c", 2, 10, None)]);
    let mut cfg = cfg;
    cfg.scale_down.max_parallel = 10;
    let run = offline(&snap, &cfg, &["a1", "a2", "a3", "a4", "b1", "b2"]);
    assert_eq!(run.survey.allowance["a"], 2);
    assert_eq!(run.survey.allowance["b"], 1);
    assert_eq!(run.survey.allowance["c"], 0);
    assert_eq!(run.survey.max_nodes, 3);
    // c1 is at its group's minimum: not asked at all.
    assert!(!run.survey.candidates.contains(&"c1".to_owned()));
    assert_eq!(
        skip_of(&run, "c1"),
        Skip::GroupAtMinimum {
            nodes: 2,
            min_nodes: 2
        }
    );
    // Candidates by utilization then name: a1 a2 a3 b1 (0%), a4 b2 (25%); the service stops
    // after 3 removable: a1 a2 a3. a3 is over a's allowance and dropped; b1 was not asked.
    assert_eq!(run.survey.candidates, ["a1", "a2", "a3", "b1", "a4", "b2"]);
    assert_eq!(run.removed(), ["a1", "a2"]);
    assert!(matches!(
        skip_of(&run, "a3"),
        Skip::GroupAtMinimum {
            nodes: 4,
            min_nodes: 2
        }
    ));
    assert_eq!(skip_of(&run, "b1"), Skip::NotAsked { limit: 3 });
    assert!(run.scan.timers.removable_since.contains_key("a1"));
    assert!(!run.scan.timers.removable_since.contains_key("a3"));
}

#[test]
fn nodes_being_removed_or_deleted_do_not_count_towards_min_nodes() {
    let snap = snapshot(
        vec![
            node("a1", "a"),
            node("a2", "a"),
            node("a3", "a").deleting(),
            node("a4", "a"),
        ],
        vec![],
    );
    let cfg = config(&[("a", 2, 10, None)]);
    let in_flight = InFlight {
        removing: ["a4".to_owned()].into_iter().collect(),
        ..Default::default()
    };
    let survey = survey(&snap, &cfg, &in_flight).unwrap();
    assert_eq!(survey.group_sizes["a"], 2);
    assert_eq!(survey.allowance["a"], 0);
    assert!(survey.candidates.is_empty());
    assert!(
        survey
            .can_remove_nodes_request(pb::ClusterSnapshot::default())
            .is_none()
    );
}

// ---- maxParallel ----

#[test]
fn at_most_max_parallel_removals_at_a_time_counting_those_in_flight() {
    let snap = snapshot(
        vec![
            node("n1", "g"),
            node("n2", "g"),
            node("n3", "g"),
            node("n4", "g"),
            node("n5", "g"),
        ],
        vec![pod("p2", "n2", "100m", ""), pod("p3", "n3", "200m", "")],
    );
    let mut cfg = config(&[("g", 0, 10, None)]);
    cfg.scale_down.max_parallel = 2;
    let in_flight = InFlight {
        removing: ["n5".to_owned()].into_iter().collect(),
        ..Default::default()
    };
    let run = scan(
        &snap,
        &cfg,
        &["n1", "n2", "n3", "n4"],
        &Timers::default(),
        &in_flight,
        at(0),
        UnneededTimer::AssumeSatisfied,
    );
    assert_eq!(skip_of(&run, "n5"), Skip::InOperation);
    // Least utilised first: n1, n4 (0%), n2, n3. One slot is free.
    assert_eq!(run.removed(), ["n1"]);
    assert!(matches!(run.decision("n4"), Decision::Waiting { .. }));
    assert!(matches!(run.decision("n2"), Decision::Waiting { .. }));
    assert!(
        run.report("n4")
            .reason
            .contains("waiting for a removal slot (maxParallel 2, 1 in flight)"),
        "{}",
        run.report("n4").reason
    );
    // Waiting nodes keep their timers.
    assert_eq!(run.scan.timers.removable_since.len(), 4);

    let run = scan(
        &snap,
        &cfg,
        &["n1", "n2", "n3", "n4"],
        &Timers::default(),
        &InFlight::default(),
        at(0),
        UnneededTimer::AssumeSatisfied,
    );
    assert_eq!(run.removed(), ["n1", "n4"]);
}

#[test]
fn the_remove_nodes_request_is_deterministic_and_carries_the_drain_options() {
    let snap = snapshot(vec![node("n1", "g"), node("n2", "g")], vec![]);
    let mut cfg = config(&[("g", 0, 10, None)]);
    cfg.scale_down.max_parallel = 2;
    cfg.scale_down.drain.timeout = Duration::from_millis(90_500);
    cfg.scale_down.drain.pod_grace_period_seconds = Some(30);
    cfg.dry_run = true;
    let first = offline(&snap, &cfg, &["n1", "n2"]);
    let request = first.scan.remove.clone().unwrap();
    assert!(request.request_id.starts_with("remove-"));
    assert_eq!(request.request_id.len(), "remove-".len() + 16);
    assert_eq!(request.node_names, ["n1", "n2"]);
    assert!(request.dry_run);
    assert_eq!(
        request.drain,
        Some(rb::DrainOptions {
            timeout_seconds: 91,
            pod_grace_period_seconds: Some(30),
            eviction_retry_seconds: 5,
        })
    );
    // The same nodes in another snapshot order: the same id.
    let reversed = snapshot(vec![node("n2", "g"), node("n1", "g")], vec![]);
    let again = offline(&reversed, &cfg, &["n1", "n2"]);
    assert_eq!(again.scan.remove.unwrap().request_id, request.request_id);
    // A node re-created under the same name: another id.
    let recreated = snapshot(vec![node("n1", "g").uid("new"), node("n2", "g")], vec![]);
    let other = offline(&recreated, &cfg, &["n1", "n2"]);
    assert_ne!(other.scan.remove.unwrap().request_id, request.request_id);
}

// ---- drift ----

fn drift_cluster(extra: Vec<NodeBuilder>) -> pb::ClusterSnapshot {
    let mut nodes = vec![
        node("web-1", "web").offering("4-8"),
        node("web-2", "web").offering("2-4"),
        node("web-3", "web").offering("2-4"),
        node("web-4", "web").offering("2-4"),
        node("db-1", "db").offering("8-32"),
        node("db-2", "db").offering("8-16"),
        node("plain-1", "plain").offering("x"),
    ];
    nodes.extend(extra);
    // Keep every node busy: drift is independent of the threshold.
    let pods = nodes
        .iter()
        .map(|n| {
            let name = n.0.metadata.as_ref().unwrap().name.clone();
            pod(&format!("busy-{name}"), &name, "3", "")
        })
        .collect();
    snapshot(nodes, pods)
}

fn drift_config() -> Config {
    config(&[
        ("web", 1, 10, Some("4-8")),
        ("db", 1, 10, Some("8-32")),
        ("plain", 1, 10, None),
    ])
}

fn drift_run(
    snap: &pb::ClusterSnapshot,
    cfg: &Config,
    in_flight: &InFlight,
    blocked: &[&str],
) -> Run {
    let survey = survey(snap, cfg, in_flight).unwrap();
    let mut answers = answer(&survey, &[]);
    drift_answers(&mut answers, &survey, blocked);
    let scan = decide(
        &survey,
        cfg,
        &answers,
        &Timers::default(),
        in_flight,
        at(0),
        UnneededTimer::AssumeSatisfied,
    );
    Run { survey, scan }
}

fn plans(run: &Run) -> Vec<(String, String, Vec<String>)> {
    run.scan
        .rebalance
        .iter()
        .map(|request| {
            let plan = request.plan.as_ref().unwrap();
            (
                plan.node_group_name.clone(),
                plan.id.clone(),
                plan.candidates
                    .iter()
                    .map(|c| c.node_name.clone())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn drifted_nodes_make_one_plan_per_group_of_the_allowed_candidates() {
    let snap = drift_cluster(vec![
        node("web-5", "web").offering("2-4").cordoned(),
        node("web-6", "web")
            .offering("2-4")
            .annotation("autoscaler.vpsie.com/protected", "true"),
    ]);
    let cfg = drift_config();
    let run = drift_run(&snap, &cfg, &InFlight::default(), &["web-3"]);
    // Cordoned and protected drifted nodes are not asked about.
    assert_eq!(
        run.survey.drift_candidates,
        ["db-2", "web-2", "web-3", "web-4"]
    );
    let plans = plans(&run);
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[0].0, "db");
    assert_eq!(plans[0].2, ["db-2"]);
    assert_eq!(plans[1].0, "web");
    assert_eq!(plans[1].2, ["web-2", "web-4"]);
    assert!(plans[1].1.starts_with("drift-web-"), "{}", plans[1].1);

    let plan = run.scan.rebalance[1].plan.as_ref().unwrap();
    assert_eq!(plan.strategy, rb::Strategy::Rolling as i32);
    assert_eq!(plan.batch_size, 1);
    assert_eq!(
        plan.candidates[0],
        rb::Candidate {
            node_name: "web-2".into(),
            current_offering: "2-4".into(),
            target_offering: "4-8".into(),
        }
    );
    assert_eq!(
        run.decision("web-2"),
        &Decision::Replace {
            plan_id: plans[1].1.clone()
        }
    );
    assert!(matches!(run.decision("web-3"), Decision::Blocked { .. }));
    assert!(
        run.report("web-3").reason.starts_with(
            "drifted (offering 2-4, group wants 4-8), cannot be replaced: pod default/db-web-3"
        ),
        "{}",
        run.report("web-3").reason
    );
    assert!(matches!(run.decision("web-1"), Decision::NotCandidate(_)));
    assert!(matches!(run.decision("plain-1"), Decision::NotCandidate(_)));
    assert!(run.report("web-5").reason.contains("drifted (offering 2-4"));
}

#[test]
fn drift_plan_ids_are_stable_and_follow_the_candidate_set() {
    let cfg = drift_config();
    let none = InFlight::default();
    let first = plans(&drift_run(&drift_cluster(vec![]), &cfg, &none, &[]));
    let again = plans(&drift_run(&drift_cluster(vec![]), &cfg, &none, &[]));
    assert_eq!(first, again);
    // Another snapshot order: same ids.
    let mut shuffled = drift_cluster(vec![]);
    shuffled.nodes.reverse();
    shuffled.pods.reverse();
    assert_eq!(plans(&drift_run(&shuffled, &cfg, &none, &[])), first);
    // Another candidate set: another id for that group only.
    let fewer = plans(&drift_run(&drift_cluster(vec![]), &cfg, &none, &["web-4"]));
    assert_eq!(fewer[0], first[0]);
    assert_ne!(fewer[1].1, first[1].1);
    // Another target offering: another id.
    let mut retargeted = cfg.clone();
    retargeted.node_groups[0].offering = Some("8-16".into());
    let other = plans(&drift_run(&drift_cluster(vec![]), &retargeted, &none, &[]));
    assert_ne!(other[1].1, first[1].1);
    // The id is a fixed function of its inputs (it must survive releases too).
    assert_eq!(
        first[0].1,
        drift_plan_id(
            "db",
            "8-32",
            &[&SurveyedNode {
                name: "db-2".into(),
                uid: "uid-db-2".into(),
                group: None,
                utilization: None,
                skip: None,
                drift: None,
            }]
        )
    );
}

#[test]
fn no_drift_plan_when_rebalancing_is_off_or_the_group_has_one_in_flight() {
    let mut cfg = drift_config();
    cfg.rebalance.enabled = false;
    let run = drift_run(&drift_cluster(vec![]), &cfg, &InFlight::default(), &[]);
    assert!(run.survey.drift_candidates.is_empty());
    assert!(run.scan.rebalance.is_empty());
    assert!(
        run.report("web-2")
            .reason
            .ends_with("drifted (offering 2-4, group wants 4-8); rebalance is disabled"),
        "{}",
        run.report("web-2").reason
    );

    let cfg = drift_config();
    let in_flight = InFlight {
        replacing: ["web-2".to_owned()].into_iter().collect(),
        rebalancing_groups: ["web".to_owned()].into_iter().collect(),
        ..Default::default()
    };
    let run = drift_run(&drift_cluster(vec![]), &cfg, &in_flight, &[]);
    assert_eq!(run.survey.drift_candidates, ["db-2"]);
    assert_eq!(plans(&run).len(), 1);
    assert_eq!(skip_of(&run, "web-2"), Skip::InOperation);
    assert!(
        run.report("web-3")
            .reason
            .contains("the group's rebalance is in flight")
    );
}

#[test]
fn a_drifted_node_removed_by_scale_down_is_left_out_of_the_plan() {
    let snap = snapshot(
        vec![
            node("web-1", "web").offering("2-4"),
            node("web-2", "web").offering("2-4"),
            node("web-3", "web").offering("4-8"),
        ],
        vec![pod("busy", "web-2", "3", "")],
    );
    let cfg = config(&[("web", 1, 10, Some("4-8"))]);
    let survey = survey(&snap, &cfg, &InFlight::default()).unwrap();
    let mut answers = answer(&survey, &["web-1", "web-3"]);
    drift_answers(&mut answers, &survey, &[]);
    let scan = decide(
        &survey,
        &cfg,
        &answers,
        &Timers::default(),
        &InFlight::default(),
        at(0),
        UnneededTimer::AssumeSatisfied,
    );
    let run = Run { survey, scan };
    assert_eq!(run.removed(), ["web-1"]);
    assert!(
        run.report("web-1")
            .reason
            .ends_with("removed rather than replaced")
    );
    assert_eq!(plans(&run)[0].2, ["web-2"]);
}
