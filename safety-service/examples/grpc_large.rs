//! End-to-end timing of `CanRemoveNode` over a real socket on the large generated cluster:
//! client encode, transfer, server decode, index, simulation, response.
//! `cargo run --release -p safety-service --example grpc_large`

use std::sync::Arc;
use std::time::Instant;

use safety_service::metrics::Metrics;
use safety_service::server::{self, ServerConfig};
use safety_service::synthetic::{ClusterShape, generate};
use vpsie_proto::safety::v1::{self as pb, safety_service_client::SafetyServiceClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let snapshot = generate(&ClusterShape::large());
    let node = snapshot.nodes[snapshot.nodes.len() / 2]
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let router = server::router(&ServerConfig::default(), Arc::new(Metrics::new())).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(router.serve_with_shutdown(listener, std::future::pending()));
    let mut client = SafetyServiceClient::connect(format!("http://{address}"))
        .await?
        .max_decoding_message_size(1 << 30)
        .max_encoding_message_size(1 << 30);
    let request = pb::CanRemoveNodeRequest {
        snapshot: Some(snapshot),
        node_name: node,
        options: Some(pb::RemovalOptions::default()),
    };
    println!(
        "request size: {} MB",
        prost::Message::encoded_len(&request) / 1_000_000
    );
    let start = Instant::now();
    let copy = request.clone();
    println!("clone: {:?}", start.elapsed());
    let start = Instant::now();
    let bytes = prost::Message::encode_to_vec(&copy);
    println!("encode: {:?}", start.elapsed());
    let start = Instant::now();
    let decoded: pb::CanRemoveNodeRequest = prost::Message::decode(bytes.as_slice())?;
    println!("decode: {:?}", start.elapsed());
    let start = Instant::now();
    drop(decoded);
    println!("drop: {:?}", start.elapsed());
    for _ in 0..3 {
        let start = Instant::now();
        let answer = client.can_remove_node(request.clone()).await?.into_inner();
        println!(
            "CanRemoveNode end to end: {:?} (removable: {})",
            start.elapsed(),
            answer.removable
        );
    }
    Ok(())
}
