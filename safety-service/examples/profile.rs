//! A profiling harness (not a benchmark): generates a cluster, then times index builds and
//! simulations so `perf record` has one hot loop to look at.
//! `cargo run --release -p safety-service --example profile -- large 5`
//! (`-- medium 20 index`: index builds only).

use std::time::Instant;

use safety_service::engine::{self, Deadline, Index};
use safety_service::synthetic::{ClusterShape, generate};
use vpsie_proto::safety::v1 as pb;

fn main() {
    let mut args = std::env::args().skip(1);
    let shape = match args.next().as_deref() {
        Some("medium") => ClusterShape::medium(),
        _ => ClusterShape::large(),
    };
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(3);
    let index_only = args.next().as_deref() == Some("index");
    // As the server holds it: decoded from the wire, so each pod's allocations lie together
    // (the generator's leave them scattered among its own).
    let snapshot: pb::ClusterSnapshot =
        prost::Message::decode(prost::Message::encode_to_vec(&generate(&shape)).as_slice())
            .expect("a generated snapshot round-trips");
    let nodes: Vec<String> = snapshot
        .nodes
        .iter()
        .step_by((snapshot.nodes.len() / 8).max(1))
        .filter_map(|n| n.metadata.as_ref().map(|m| m.name.clone()))
        .collect();
    let options = pb::RemovalOptions::default();
    for _ in 0..rounds {
        let start = Instant::now();
        let index = Index::build(&snapshot).expect("index");
        let built = start.elapsed();
        if index_only {
            println!("index {built:?}");
            continue;
        }
        let start = Instant::now();
        let mut removable = 0;
        for node in &nodes {
            let answer = engine::can_remove_node_indexed(&index, node, &options, Deadline::NONE)
                .expect("answer");
            removable += usize::from(answer.removable);
        }
        let simulated = start.elapsed() / nodes.len() as u32;
        println!(
            "index {built:?}  simulate/node {simulated:?}  ({removable}/{} removable)",
            nodes.len()
        );
    }
}
