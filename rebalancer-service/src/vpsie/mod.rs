//! The VPSie API client (`../shared/docs/vpsie-api.md`).
//!
//! [`VpsieClient`] is a thin reqwest adapter over pure, unit-tested parts:
//! - [`envelope`]: the `{error, code, message, data}` reply and its classification into a
//!   [`VpsieError`] (quota and plan-limit words are terminal);
//! - [`auth`]: the client-credentials login reply and token expiry;
//! - [`backoff`]: exponential backoff with jitter and `Retry-After`;
//! - [`breaker`]: the circuit breaker (5 consecutive transport/5xx failures open it; one probe
//!   after 30 s);
//! - [`credentials`]: loading from a Secret directory or the environment, redacted in `Debug`.
//!
//! Retries: GET and DELETE retry 5xx, transport errors and timeouts with backoff (bounded); a 429
//! waits `Retry-After`; the add is never retried blindly ([`VpsieClient::add_worker`]).
//! Observability: every attempt is reported to an optional [`CallObserver`] with its route
//! template ([`routes`]), status and outcome.

pub mod auth;
pub mod backoff;
pub mod breaker;
mod client;
pub mod config;
pub mod credentials;
pub mod envelope;
mod error;
pub mod observer;
pub mod types;

pub use backoff::RetryPolicy;
pub use breaker::{BreakerConfig, BreakerState};
pub use client::{VPSIE_AUTH_HEADER, VpsieClient};
pub use config::{AddPolicy, DEFAULT_BASE_URL, VpsieConfig};
pub use credentials::{Credentials, Secret};
pub use error::VpsieError;
pub use observer::{CallEvent, CallObserver};
pub use types::{
    AddRecovery, AddedMachine, Cluster, ClusterNode, DeleteOutcome, Machine, MachineStatus,
    NodeGroup, NodeSnapshot,
};

/// Route templates, as reported to [`CallObserver`] (safe metric labels).
pub mod routes {
    pub const LOGIN: &str = "/auth/from/api";
    pub const CLUSTER: &str = "/k8s/cluster/byId/{cluster}";
    pub const NODE_GROUPS: &str = "/k8s/node/groups/byClusterId/{cluster}";
    pub const ADD: &str = "/k8s/cluster/byId/{cluster}/add/slave/group/{groupId}";
    pub const MACHINE: &str = "/vm/{identifier}";
    pub const DELETE: &str = "/k8s/cluster/byId/{cluster}/delete/slave";
}
