//! A profiling harness (not a benchmark): generates a cluster, then times index builds and
//! simulations so `perf record` has one hot loop to look at.
//! `cargo run --release -p safety-service --example profile -- large 5`
//! (`-- medium 20 index`: index builds only).

use std::time::Instant;

use prost::Message;
use prost::bytes::Bytes;
use safety_service::engine::{self, Deadline, Index, w};
use safety_service::synthetic::{ClusterShape, generate};
use vpsie_proto::safety::v1 as pb;

fn main() {
    // As the server runs.
    safety_service::memory::retain_freed_memory();
    let mut args = std::env::args().skip(1);
    let shape = match args.next().as_deref() {
        Some("medium") => ClusterShape::medium(),
        _ => ClusterShape::large(),
    };
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(3);
    let index_only = args.next().as_deref() == Some("index");
    // As the server holds it: the wire view decoded from the request bytes.
    let encoded = Bytes::from(generate(&shape).encode_to_vec());
    let snapshot =
        w::ClusterSnapshot::decode(encoded.clone()).expect("a generated snapshot decodes");
    let nodes: Vec<String> = snapshot
        .nodes
        .iter()
        .step_by((snapshot.nodes.len() / 8).max(1))
        .filter_map(|n| n.metadata.as_ref())
        .map(|m| String::from_utf8_lossy(&m.name).into_owned())
        .collect();
    let options = pb::RemovalOptions::default();
    for _ in 0..rounds.min(3) {
        let start = Instant::now();
        let decoded = w::ClusterSnapshot::decode(encoded.clone()).expect("decodes");
        println!("decode {:?}", start.elapsed());
        drop(decoded);
    }
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
