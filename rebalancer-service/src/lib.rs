//! The rebalancer-service: not built yet (see issue #3). The workspace member exists so the layout
//! of `../shared/docs/architecture.md` is in place; it exposes nothing that pretends to work.
pub mod executor;
pub mod grpc;
pub mod kube_ops;
pub mod safety_client;
pub mod store;
pub mod vpsie;
