//! The gRPC contracts of the safety-service (and, later, the rebalancer-service), generated from
//! `proto/`, with the proto3 JSON mapping (unknown fields ignored) so that Kubernetes JSON objects
//! parse straight into snapshot messages, and conversions from `k8s-openapi` types.

pub mod convert;
pub mod json;
pub mod view_codec;

/// `vpsie.safety.v1`: the snapshot messages and the `SafetyService`.
pub mod safety {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        include!(concat!(env!("OUT_DIR"), "/vpsie.safety.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/vpsie.safety.v1.serde.rs"));

        /// The safety-service's zero-copy view of the same messages (see `build.rs`): strings
        /// are `Bytes` borrowed from the request buffer, maps are lists of [`wire::StringPair`]
        /// in wire order (duplicates included; the last one wins, as for a map).
        pub mod wire {
            #![allow(clippy::all, clippy::pedantic)]
            include!(concat!(env!("OUT_DIR"), "/wire/vpsie.safety.v1.rs"));
        }
    }
}

/// `vpsie.rebalancer.v1`: plans, operations and the `RebalancerService`.
pub mod rebalancer {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        include!(concat!(env!("OUT_DIR"), "/vpsie.rebalancer.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/vpsie.rebalancer.v1.serde.rs"));
    }
}

/// The encoded `FileDescriptorSet` of every service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vpsie_descriptor.bin"));
