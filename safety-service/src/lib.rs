//! The safety-service: a pure simulation engine and its gRPC adapter.
pub mod engine;
