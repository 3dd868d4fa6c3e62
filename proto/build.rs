//! Compiles the .proto files with protox (pure Rust, no system `protoc`), generates the tonic
//! services and the proto3 JSON (pbjson) mapping, and keeps the descriptor set for reflection.
use std::path::PathBuf;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// The package whose requests the safety-service decodes as a zero-copy view.
const SAFETY_PACKAGE: &str = "vpsie.safety.v1";
/// Messages the view shares with the owned types: what the server answers, and the options.
const SHARED_WITH_OWNED: &[&str] = &[
    "RemovalOptions",
    "RemovalReason",
    "BlockingReason",
    "SkipReason",
    "RejectionSummary",
    "NodeRejection",
    "BlockingPod",
    "Placement",
    "SkippedPod",
    "CanRemoveNodeResponse",
    "CanRemoveNodesResponse",
    "FindSchedulableNodeResponse",
];

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
        .compile_fds(descriptors.clone())?;

    compile_wire_view(&descriptors, &out_dir)?;

    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .ignore_unknown_fields()
        .btree_map(["."])
        .build(&[".vpsie"])?;
    Ok(())
}

/// Fields the safety-service never reads: the view leaves them out, so decoding skips them
/// (they are still in the contract, and in the owned types).
const NOT_READ_BY_THE_ENGINE: &[(&str, &str)] = &[
    ("ObjectMeta", "uid"),
    ("ObjectMeta", "creation_timestamp"),
    ("ObjectMeta", "deletion_grace_period_seconds"),
    ("OwnerReference", "api_version"),
    ("OwnerReference", "name"),
    ("OwnerReference", "uid"),
    ("NodeSpec", "provider_id"),
    ("Taint", "time_added"),
    ("NodeStatus", "capacity"),
    ("Container", "name"),
    ("ContainerPort", "name"),
    ("PodSpec", "priority_class_name"),
    ("Toleration", "toleration_seconds"),
    ("Volume", "persistent_volume_claim"),
    ("EmptyDirVolumeSource", "size_limit"),
    ("HostPathVolumeSource", "path"),
    ("HostPathVolumeSource", "type"),
    (
        "NodeAffinity",
        "preferred_during_scheduling_ignored_during_execution",
    ),
    (
        "PodAffinity",
        "preferred_during_scheduling_ignored_during_execution",
    ),
    (
        "PodAntiAffinity",
        "preferred_during_scheduling_ignored_during_execution",
    ),
];

/// Generates `vpsie.safety.v1` a second time as the safety-service's *wire view*: the same
/// messages and field numbers, so the same bytes decode into it, but every `string` is a `bytes`
/// field held as `Bytes` and every `map<string, string>` a repeated `StringPair`. Decoded from a
/// `Bytes` buffer, no string is copied and no map node allocated: the view borrows the request.
/// The server of the view serves the same method paths; responses are the owned types.
fn compile_wire_view(
    descriptors: &FileDescriptorSet,
    out_dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut file = descriptors
        .file
        .iter()
        .find(|f| f.package() == SAFETY_PACKAGE)
        .cloned()
        .ok_or("the safety proto is missing from the descriptor set")?;
    // The view's doc comments would point into the edited messages: it has none.
    file.source_code_info = None;
    let pair_type = format!(".{SAFETY_PACKAGE}.StringPair");
    for message in &mut file.message_type {
        if !SHARED_WITH_OWNED.contains(&message.name()) {
            to_wire_view(message, &pair_type)?;
            let name = message.name().to_owned();
            message
                .field
                .retain(|field| !NOT_READ_BY_THE_ENGINE.contains(&(name.as_str(), field.name())));
        }
    }
    // Every field left out must exist, so that this list cannot silently rot.
    for (message, field) in NOT_READ_BY_THE_ENGINE {
        let known = descriptors
            .file
            .iter()
            .flat_map(|f| &f.message_type)
            .any(|m| m.name() == *message && m.field.iter().any(|f| f.name() == *field));
        if !known {
            return Err(format!(
                "NOT_READ_BY_THE_ENGINE names {message}.{field}, which the proto lacks"
            )
            .into());
        }
    }
    let bytes_field = |name: &str, number: i32| FieldDescriptorProto {
        name: Some(name.to_owned()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(Type::Bytes as i32),
        json_name: Some(name.to_owned()),
        ..Default::default()
    };
    file.message_type.push(DescriptorProto {
        name: Some("StringPair".to_owned()),
        field: vec![bytes_field("key", 1), bytes_field("value", 2)],
        ..Default::default()
    });

    let wire_dir = out_dir.join("wire");
    std::fs::create_dir_all(&wire_dir)?;
    let mut builder = tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .bytes(".")
        .codec_path("crate::view_codec::ViewCodec")
        .out_dir(&wire_dir)
        .skip_protoc_run();
    for shared in SHARED_WITH_OWNED {
        builder = builder.extern_path(
            format!(".{SAFETY_PACKAGE}.{shared}"),
            format!("crate::safety::v1::{shared}"),
        );
    }
    builder.compile_fds(FileDescriptorSet { file: vec![file] })?;
    Ok(())
}

fn to_wire_view(
    message: &mut DescriptorProto,
    pair_type: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let maps: Vec<String> = message
        .nested_type
        .iter()
        .filter(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
        .map(|n| n.name().to_owned())
        .collect();
    // A StringPair stands for a map entry only if both sides are strings.
    for entry in message
        .nested_type
        .iter()
        .filter(|n| maps.iter().any(|m| m == n.name()))
    {
        if !entry.field.iter().all(|f| f.r#type() == Type::String) {
            return Err(format!(
                "{}.{}: the wire view only knows map<string, string>",
                message.name(),
                entry.name()
            )
            .into());
        }
    }
    message
        .nested_type
        .retain(|n| !maps.iter().any(|m| m == n.name()));
    for field in &mut message.field {
        if field.r#type() == Type::String {
            field.set_type(Type::Bytes);
        }
        let is_map = field
            .type_name
            .as_deref()
            .and_then(|t| t.rsplit('.').next())
            .is_some_and(|t| maps.iter().any(|m| m == t));
        if is_map {
            field.type_name = Some(pair_type.to_owned());
        }
    }
    for nested in &mut message.nested_type {
        to_wire_view(nested, pair_type)?;
    }
    Ok(())
}
