//! End-to-end tests across the three binaries, and what they run against: the Kubernetes API
//! fake, the VPSie API fake, an in-process OTLP trace collector and throw-away TLS certificates.
//! The safety-service's own socket-level tests are in `safety-service/tests/`.

pub mod binaries;
pub mod kube_fake;
pub mod otlp_collector;
pub mod pki;
pub mod probes;
pub mod vpsie_fake;
