//! The controller: finds underutilised and drifted VPSie nodes, asks the safety-service, and hands
//! work to the rebalancer-service (`shared/docs/controller.md`).
//!
//! - [`config`]: the YAML configuration and its validation.
//! - [`planner`]: the sans-IO scale-down and drift planners over a snapshot.
//! - [`offline`]: `controller plan`, one scan over a `kubectl get -o json` dump.
//! - [`report`]: the offline report's text.
//!
//! The online loop (reflectors, leader election, clients, metrics) lands with issue #4.

pub mod config;
pub mod offline;
pub mod planner;
pub mod report;
