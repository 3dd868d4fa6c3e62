//! End-to-end tests across the three binaries live here once the rebalancer and the controller
//! exist (issues #3 and #4). The safety-service's own socket-level tests are in
//! `safety-service/tests/`.

pub mod kube_fake;
pub mod vpsie_fake;
