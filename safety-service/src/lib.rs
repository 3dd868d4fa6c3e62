//! The safety-service: a pure simulation engine and its gRPC adapter.
pub mod engine;
pub mod grpc;
pub mod memory;
pub mod metrics;
pub mod server;
pub mod synthetic;
