//! The rebalancer-service: the only component that creates or deletes VPSie machines or drains
//! nodes. A pure executor (records and a state machine) driven over thin adapters: the VPSie
//! client, kube-rs cluster operations, the ConfigMap operation store and the safety re-check.
pub mod executor;
pub mod grpc;
pub mod kube_ops;
pub mod metrics;
pub mod safety_client;
pub mod store;
pub mod vpsie;
pub mod vpsie_cloud;
