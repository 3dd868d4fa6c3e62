//! The controller: finds underutilised and drifted VPSie nodes, asks the safety-service, and hands
//! work to the rebalancer-service (`shared/docs/controller.md`).
//!
//! - [`cache`]: the watched cache (reflectors) and the snapshot built from it.
//! - [`clients`]: the loop's I/O behind small traits (safety-service, rebalancer, node writes).
//! - [`config`]: the YAML configuration and its validation.
//! - [`leader`]: leader election through a coordination.k8s.io/v1 Lease.
//! - [`metrics`]: the Prometheus metrics and their `/metrics` server.
//! - [`planner`]: the sans-IO scale-down and drift planners over a snapshot.
//! - [`offline`]: `controller plan`, one scan over a `kubectl get -o json` dump.
//! - [`report`]: the offline report's text.
//! - [`run`]: `controller run`, the online loop.

pub mod cache;
pub mod clients;
pub mod config;
pub mod leader;
pub mod metrics;
pub mod offline;
pub mod planner;
pub mod report;
pub mod run;
pub mod scan_snapshot;
