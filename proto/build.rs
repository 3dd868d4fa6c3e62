//! Compiles the .proto files with protox (pure Rust, no system `protoc`), generates the tonic
//! services and the proto3 JSON (pbjson) mapping, and keeps the descriptor set for reflection.
use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "vpsie/safety/v1/safety.proto",
    "vpsie/rebalancer/v1/rebalancer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["."])?;
    let descriptor_path = out_dir.join("vpsie_descriptor.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // BTreeMap: Kubernetes' own map type; for the small maps of labels and resources it
        // decodes faster than a SipHash HashMap and iterates in key order.
        .btree_map(".")
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_fds(descriptors)?;

    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .ignore_unknown_fields()
        .btree_map(["."])
        .build(&[".vpsie"])?;
    Ok(())
}
