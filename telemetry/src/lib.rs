//! What the three binaries (`safety-service`, `rebalancer-service`, `controller`) share for being
//! operated, one purpose per module:
//!
//! - [`logs`]: the `tracing` subscriber (text or JSON lines on stderr, `RUST_LOG` filter) and,
//!   when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans exported over OTLP/gRPC;
//! - [`propagation`]: the W3C trace context (`traceparent`, `tracestate`) carried in gRPC
//!   metadata, injected by clients and extracted by servers;
//! - [`metrics_http`]: the `GET /metrics` server on `--metrics-listen`;
//! - [`tls`]: rustls (ring provider) configurations from PEM files, the TLS acceptor of our
//!   servers and the TLS connector of our gRPC channels.

pub mod logs;
pub mod metrics_http;
pub mod propagation;
pub mod tls;
