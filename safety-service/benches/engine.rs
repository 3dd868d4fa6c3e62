//! Engine benchmarks on synthetic clusters (`safety_service::synthetic`), medium (100 nodes /
//! 3,000 pods) and large (5,000 nodes / 150,000 pods):
//!
//! - `can_remove_node/{quiet,busy}`: `engine::can_remove_node` end to end (index build and
//!   simulation) on a lightly loaded node that is likely removable and on the busiest node;
//! - `decode_view`: decoding the encoded snapshot into the wire view the engine reads (what the
//!   server does with a request before the engine runs);
//! - `index_build`: `engine::Index::build` alone;
//! - `simulate/{quiet,busy}`: `engine::can_remove_node_indexed` on a prebuilt index;
//! - `find_schedulable_node/{replica,unschedulable_explain}`: one more replica of an existing app
//!   (anti-affinity or spread constraints), and a pod that fits nowhere, with `explain`.
//!
//! `cargo bench -p safety-service --bench engine` takes a few minutes; add a filter such as
//! `-- medium/` to run part of it.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main,
};
use prost::Message;
use prost::bytes::Bytes;
use safety_service::engine::{self, Deadline, Index, w};
use safety_service::synthetic::{self, ClusterShape};
use vpsie_proto::safety::v1 as pb;

fn medium(c: &mut Criterion) {
    // As the server binary runs.
    safety_service::memory::retain_freed_memory();
    let mut group = c.benchmark_group("medium");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    bench_cluster(&mut group, "medium", &ClusterShape::medium());
    group.finish();
}

fn large(c: &mut Criterion) {
    safety_service::memory::retain_freed_memory();
    let mut group = c.benchmark_group("large");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    bench_cluster(&mut group, "large", &ClusterShape::large());
    group.finish();
}

fn bench_cluster(group: &mut BenchmarkGroup<'_, WallTime>, label: &str, shape: &ClusterShape) {
    let started = Instant::now();
    let snapshot = synthetic::generate(shape);
    eprintln!(
        "{label}: generated {} nodes, {} pods, {} PDBs in {:.2?}",
        snapshot.nodes.len(),
        snapshot.pods.len(),
        snapshot.pod_disruption_budgets.len(),
        started.elapsed()
    );
    let options = pb::RemovalOptions::default();
    let encoded = Bytes::from(snapshot.encode_to_vec());
    let view = match w::ClusterSnapshot::decode(encoded.clone()) {
        Ok(view) => view,
        Err(error) => panic!("{label}: the generated snapshot does not decode: {error}"),
    };

    // (b) index build alone, and (c) simulation alone on a prebuilt index.
    group.bench_function("decode_view", |b| {
        b.iter(|| w::ClusterSnapshot::decode(black_box(encoded.clone())).is_ok())
    });
    group.bench_function("index_build", |b| {
        b.iter(|| Index::build(black_box(&view)).is_ok())
    });
    let targets = match Index::build(&view) {
        Ok(index) => {
            let targets = pick_targets(label, &snapshot, &index, &options);
            for (kind, node) in &targets {
                group.bench_with_input(BenchmarkId::new("simulate", kind), node, |b, node| {
                    b.iter(|| {
                        engine::can_remove_node_indexed(
                            &index,
                            black_box(node),
                            &options,
                            Deadline::NONE,
                        )
                    })
                });
            }
            targets
        }
        Err(error) => {
            eprintln!("{label}: the index does not build ({error}); no simulation benchmarks");
            fallback_targets(&snapshot)
        }
    };

    // (a) end to end: index build and simulation on the decoded request.
    let mut request = w::CanRemoveNodeRequest {
        snapshot: Some(view),
        node_name: Bytes::new(),
        options: Some(options),
    };
    for (kind, node) in &targets {
        request.node_name = Bytes::from(node.clone());
        group.bench_function(BenchmarkId::new("can_remove_node", kind), |b| {
            b.iter(|| engine::can_remove_node(black_box(&request), Deadline::NONE))
        });
    }
    let view = request.snapshot.take();

    // (d) where could one more pod go?
    let replica = new_replica(&snapshot);
    let mut unschedulable = replica.clone();
    for container in &mut unschedulable.spec.as_mut().unwrap().containers {
        if let Some(resources) = container.resources.as_mut() {
            resources.requests.insert("cpu".to_owned(), "64".to_owned());
        }
    }
    let view_of_pod = |pod: &pb::Pod| engine::view_of::<w::Pod>(pod).expect("a pod re-reads");
    let mut request = w::FindSchedulableNodeRequest {
        snapshot: view,
        pod: Some(view_of_pod(&replica)),
        exclude_nodes: Vec::new(),
        explain: false,
    };
    report_find(label, "replica", &request);
    group.bench_function(BenchmarkId::new("find_schedulable_node", "replica"), |b| {
        b.iter(|| engine::find_schedulable_node(black_box(&request), Deadline::NONE))
    });
    request.pod = Some(view_of_pod(&unschedulable));
    request.explain = true;
    report_find(label, "unschedulable_explain", &request);
    group.bench_function(
        BenchmarkId::new("find_schedulable_node", "unschedulable_explain"),
        |b| b.iter(|| engine::find_schedulable_node(black_box(&request), Deadline::NONE)),
    );
}

/// Pods that would need a new home if their node went: bound, unfinished, neither DaemonSet nor
/// mirror pods.
fn movable_pods_per_node(snapshot: &pb::ClusterSnapshot) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for pod in &snapshot.pods {
        let (Some(meta), Some(spec), Some(status)) = (&pod.metadata, &pod.spec, &pod.status) else {
            continue;
        };
        let daemon = meta.owner_references.iter().any(|o| o.kind == "DaemonSet");
        let mirror = meta.annotations.contains_key(synthetic::ANNOTATION_MIRROR);
        let finished = matches!(status.phase.as_str(), "Succeeded" | "Failed");
        if !spec.node_name.is_empty() && !daemon && !mirror && !finished {
            *counts.entry(spec.node_name.as_str()).or_default() += 1;
        }
    }
    counts
}

/// Schedulable nodes from the least to the most loaded.
fn nodes_by_load(snapshot: &pb::ClusterSnapshot) -> Vec<(usize, &str)> {
    let counts = movable_pods_per_node(snapshot);
    let mut nodes: Vec<(usize, &str)> = snapshot
        .nodes
        .iter()
        .filter(|n| !n.spec.as_ref().is_some_and(|s| s.unschedulable))
        .filter_map(|n| n.metadata.as_ref())
        .map(|m| {
            (
                counts.get(m.name.as_str()).copied().unwrap_or(0),
                m.name.as_str(),
            )
        })
        .collect();
    nodes.sort_unstable();
    nodes
}

fn fallback_targets(snapshot: &pb::ClusterSnapshot) -> Vec<(&'static str, String)> {
    let nodes = nodes_by_load(snapshot);
    vec![
        (
            "quiet",
            nodes.first().map(|n| n.1.to_owned()).unwrap_or_default(),
        ),
        (
            "busy",
            nodes.last().map(|n| n.1.to_owned()).unwrap_or_default(),
        ),
    ]
}

/// A lightly loaded node that the engine finds removable (the least loaded one if none of the
/// first few is), and the node with the most pods to move.
fn pick_targets(
    label: &str,
    snapshot: &pb::ClusterSnapshot,
    index: &Index<'_>,
    options: &pb::RemovalOptions,
) -> Vec<(&'static str, String)> {
    let nodes = nodes_by_load(snapshot);
    let Some(&(_, busy)) = nodes.last() else {
        return fallback_targets(snapshot);
    };
    // A general-purpose node from the lighter quarter (the least loaded nodes are the tainted
    // database and GPU ones, whose pods have few other homes).
    let tainted: HashSet<&str> = snapshot
        .nodes
        .iter()
        .filter(|n| n.spec.as_ref().is_some_and(|s| !s.taints.is_empty()))
        .filter_map(|n| n.metadata.as_ref().map(|m| m.name.as_str()))
        .collect();
    let untainted: Vec<&(usize, &str)> = nodes
        .iter()
        .filter(|(_, name)| !tainted.contains(name))
        .collect();
    let quiet = untainted
        .iter()
        .skip(untainted.len() / 4)
        .take(100)
        .find(|(_, name)| {
            engine::can_remove_node_indexed(index, name, options, Deadline::NONE)
                .is_ok_and(|r| r.removable)
        })
        .or(untainted.first())
        .map_or(busy, |n| n.1);
    let targets = vec![("quiet", quiet.to_owned()), ("busy", busy.to_owned())];
    for (kind, node) in &targets {
        let pods = movable_pods_per_node(snapshot)
            .get(node.as_str())
            .copied()
            .unwrap_or(0);
        match engine::can_remove_node_indexed(index, node, options, Deadline::NONE) {
            Ok(r) => eprintln!(
                "{label}: {kind} node {node}: {pods} pods to move, removable={} ({:?}), {} placements, {} blocking",
                r.removable,
                r.reason(),
                r.placements.len(),
                r.blocking_pods.len()
            ),
            Err(error) => eprintln!("{label}: {kind} node {node}: {error}"),
        }
    }
    targets
}

/// One more replica of an app with anti-affinity or spread constraints (any app pod if there is
/// none), renamed and unbound.
fn new_replica(snapshot: &pb::ClusterSnapshot) -> pb::Pod {
    let constrained = |pod: &&pb::Pod| {
        pod.spec.as_ref().is_some_and(|s| {
            !s.topology_spread_constraints.is_empty()
                && s.affinity
                    .as_ref()
                    .is_some_and(|a| a.pod_anti_affinity.is_some())
        })
    };
    let replicated = |pod: &&pb::Pod| {
        pod.metadata
            .as_ref()
            .is_some_and(|m| m.owner_references.iter().any(|o| o.kind == "ReplicaSet"))
    };
    let template = snapshot
        .pods
        .iter()
        .filter(replicated)
        .find(constrained)
        .or_else(|| snapshot.pods.iter().find(replicated))
        .or(snapshot.pods.first())
        .cloned()
        .unwrap_or_default();
    let mut pod = template;
    if let Some(meta) = pod.metadata.as_mut() {
        meta.name.push_str("-bench");
        meta.uid.clear();
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name.clear();
    }
    pod.status = Some(pb::PodStatus {
        phase: "Pending".to_owned(),
    });
    pod
}

fn report_find(label: &str, kind: &str, request: &w::FindSchedulableNodeRequest) {
    match engine::find_schedulable_node(request, Deadline::NONE) {
        Ok(r) => eprintln!(
            "{label}: find_schedulable_node {kind}: found={} on {:?}, {} feasible nodes, {} rejections",
            r.found,
            r.node_name,
            r.feasible_nodes.len(),
            r.rejections.len()
        ),
        Err(error) => eprintln!("{label}: find_schedulable_node {kind}: {error}"),
    }
}

criterion_group!(benches, medium, large);
criterion_main!(benches);
