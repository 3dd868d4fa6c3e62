//! End-to-end timing of `CanRemoveNode` over a real socket on the large generated cluster:
//! client encode, transfer, server decode, index, simulation, response.
//! `cargo run --release -p safety-service --example grpc_large`
//! (`SAFETY_ADDR=127.0.0.1:50051 …`: against a running safety-service instead of one in this
//! process, e.g. to read the server's peak memory from `/proc/<pid>/status`, `VmHWM`).

use std::sync::Arc;
use std::time::Instant;

use safety_service::metrics::Metrics;
use safety_service::server::{self, ServerConfig};
use safety_service::synthetic::{ClusterShape, generate};
use vpsie_proto::safety::v1::{self as pb, safety_service_client::SafetyServiceClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the server binary runs.
    safety_service::memory::retain_freed_memory();
    let snapshot = generate(&ClusterShape::large());
    let node = snapshot.nodes[snapshot.nodes.len() / 2]
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let address = match std::env::var("SAFETY_ADDR") {
        Ok(address) => address,
        Err(_) => {
            let router = server::router(&ServerConfig::default(), Arc::new(Metrics::new())).await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let address = listener.local_addr()?;
            tokio::spawn(router.serve_with_shutdown(listener, std::future::pending()));
            address.to_string()
        }
    };
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
            "CanRemoveNode end to end, clone and encode included: {:?} (removable: {})",
            start.elapsed(),
            answer.removable
        );
    }

    // As the controller sends it: the request already encoded (its snapshot is the reflector
    // stores' bytes), so the time is the transfer, the server's decode, index and simulation,
    // and the answer.
    let encoded = Encoded(prost::bytes::Bytes::from(bytes));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut raw = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(1 << 30)
        .max_encoding_message_size(1 << 30);
    for _ in 0..3 {
        raw.ready().await?;
        let start = Instant::now();
        let answer: tonic::Response<pb::CanRemoveNodeResponse> = raw
            .unary(
                tonic::Request::new(encoded.clone()),
                http::uri::PathAndQuery::from_static(
                    "/vpsie.safety.v1.SafetyService/CanRemoveNode",
                ),
                tonic_prost::ProstCodec::default(),
            )
            .await?;
        println!(
            "CanRemoveNode end to end, request pre-encoded: {:?} (removable: {})",
            start.elapsed(),
            answer.into_inner().removable
        );
    }
    Ok(())
}

/// A message sent as the bytes it is already encoded to.
#[derive(Clone, Debug, Default)]
struct Encoded(prost::bytes::Bytes);

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}
