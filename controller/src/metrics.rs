//! Prometheus metrics of the online loop (prometheus-client), served at `GET /metrics` on
//! `--metrics-listen`.
//!
//! - `controller_scan_duration_seconds`: one scan, snapshot to the last submission;
//! - `controller_scans_total{result}`: `ok`, `failed` (snapshot unreadable, nothing decided);
//! - `controller_scale_down_candidates`: nodes asked about in the last `CanRemoveNodes`;
//! - `controller_removable_nodes`: nodes the last scan found removable (timer running, waiting or
//!   handed to `RemoveNodes`);
//! - `controller_blocked_nodes{reason}`: nodes the safety-service refused, by its reason
//!   (`REMOVAL_REASON_…` name, `NO_ANSWER` when it could not be asked);
//! - `controller_skipped_nodes{reason}`: nodes that are not candidates, by why
//!   (`above_threshold`, `not_ready`, …);
//! - `controller_drifted_nodes`: nodes whose offering differs from their group's;
//! - `controller_rpc_duration_seconds{service,method}` and
//!   `controller_rpc_errors_total{service,method,code}`: calls to the safety- and
//!   rebalancer-service (`code` as grpc-go spells it);
//! - `controller_operations{kind,state}`: the rebalancer's operations as last seen
//!   (`ListOperations` and the followed ones);
//! - `controller_submissions_total{kind}`: `RemoveNodes` / `ExecutePlan` requests submitted;
//! - `controller_kube_write_errors_total{what}`: failed annotation patches and events;
//! - `controller_leader`: 1 while this replica holds the lease.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::Code;

const SECONDS_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcErrorLabels {
    service: &'static str,
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    kind: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabels {
    what: &'static str,
}

/// The services the controller calls.
pub const SAFETY_SERVICE: &str = "vpsie.safety.v1.SafetyService";
pub const REBALANCER_SERVICE: &str = "vpsie.rebalancer.v1.RebalancerService";

/// Every metric of the controller and the registry exposing them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    scan_duration: Histogram,
    scans: Family<ResultLabels, Counter>,
    candidates: Gauge,
    removable: Gauge,
    blocked: Family<ReasonLabels, Gauge>,
    skipped: Family<ReasonLabels, Gauge>,
    drifted: Gauge,
    rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    rpc_errors: Family<RpcErrorLabels, Counter>,
    operations: Family<OperationLabels, Gauge>,
    submissions: Family<KindLabels, Counter>,
    kube_write_errors: Family<WhatLabels, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What one scan found, for the gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanCounts {
    pub candidates: i64,
    pub removable: i64,
    pub drifted: i64,
    /// Blocked nodes per reason.
    pub blocked: std::collections::BTreeMap<String, i64>,
    /// Skipped nodes per reason.
    pub skipped: std::collections::BTreeMap<String, i64>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let scan_duration = seconds_histogram();
        registry.register(
            "controller_scan_duration_seconds",
            "Duration of one scan (seconds)",
            scan_duration.clone(),
        );
        let scans = Family::<ResultLabels, Counter>::default();
        registry.register("controller_scans", "Scans run, by result", scans.clone());
        let candidates = Gauge::default();
        registry.register(
            "controller_scale_down_candidates",
            "Scale-down candidates asked about in the last scan",
            candidates.clone(),
        );
        let removable = Gauge::default();
        registry.register(
            "controller_removable_nodes",
            "Nodes the last scan found removable",
            removable.clone(),
        );
        let blocked = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "controller_blocked_nodes",
            "Nodes the safety-service refused in the last scan, by reason",
            blocked.clone(),
        );
        let skipped = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "controller_skipped_nodes",
            "Nodes that were not scale-down candidates in the last scan, by reason",
            skipped.clone(),
        );
        let drifted = Gauge::default();
        registry.register(
            "controller_drifted_nodes",
            "Nodes whose offering differs from their group's, in the last scan",
            drifted.clone(),
        );
        let rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds_histogram);
        registry.register(
            "controller_rpc_duration_seconds",
            "Duration of calls to the safety- and rebalancer-service (seconds)",
            rpc_duration.clone(),
        );
        let rpc_errors = Family::<RpcErrorLabels, Counter>::default();
        registry.register(
            "controller_rpc_errors",
            "Failed calls to the safety- and rebalancer-service, by status code",
            rpc_errors.clone(),
        );
        let operations = Family::<OperationLabels, Gauge>::default();
        registry.register(
            "controller_operations",
            "Rebalancer operations as last seen, by kind and state",
            operations.clone(),
        );
        let submissions = Family::<KindLabels, Counter>::default();
        registry.register(
            "controller_submissions",
            "RemoveNodes and ExecutePlan requests submitted",
            submissions.clone(),
        );
        let kube_write_errors = Family::<WhatLabels, Counter>::default();
        registry.register(
            "controller_kube_write_errors",
            "Failed Kubernetes writes (annotation patches, events)",
            kube_write_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "controller_leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Metrics {
            registry,
            scan_duration,
            scans,
            candidates,
            removable,
            blocked,
            skipped,
            drifted,
            rpc_duration,
            rpc_errors,
            operations,
            submissions,
            kube_write_errors,
            leader,
        }
    }

    pub fn record_scan(&self, ok: bool, elapsed: Duration) {
        self.scan_duration.observe(elapsed.as_secs_f64());
        self.scans
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// Replaces the per-scan gauges.
    pub fn record_counts(&self, counts: &ScanCounts) {
        self.candidates.set(counts.candidates);
        self.removable.set(counts.removable);
        self.drifted.set(counts.drifted);
        self.blocked.clear();
        for (reason, count) in &counts.blocked {
            self.blocked
                .get_or_create(&ReasonLabels {
                    reason: reason.clone(),
                })
                .set(*count);
        }
        self.skipped.clear();
        for (reason, count) in &counts.skipped {
            self.skipped
                .get_or_create(&ReasonLabels {
                    reason: reason.clone(),
                })
                .set(*count);
        }
    }

    /// One call to a service; `code` is `None` on success.
    pub fn record_rpc(
        &self,
        service: &'static str,
        method: &'static str,
        elapsed: Duration,
        code: Option<Code>,
    ) {
        self.rpc_duration
            .get_or_create(&RpcLabels { service, method })
            .observe(elapsed.as_secs_f64());
        if let Some(code) = code {
            self.rpc_errors
                .get_or_create(&RpcErrorLabels {
                    service,
                    method,
                    code: code_label(code),
                })
                .inc();
        }
    }

    /// Replaces the operations gauge: (kind, state) → count.
    pub fn record_operations<'a>(&self, counts: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut tally: std::collections::BTreeMap<(&'static str, &'static str), i64> =
            Default::default();
        for (kind, state) in counts {
            *tally
                .entry((static_label(kind), static_label(state)))
                .or_default() += 1;
        }
        self.operations.clear();
        for ((kind, state), count) in tally {
            self.operations
                .get_or_create(&OperationLabels { kind, state })
                .set(count);
        }
    }

    pub fn record_submission(&self, kind: &'static str) {
        self.submissions.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn record_kube_write_error(&self, what: &'static str) {
        self.kube_write_errors
            .get_or_create(&WhatLabels { what })
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Operation kinds and states are few and known: their labels are static strings.
fn static_label(text: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "remove",
        "rebalance",
        "unspecified",
        "pending",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "unknown",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == text)
        .unwrap_or("unknown")
}

/// A status code as grpc-go spells it (`OK`, `NotFound`, …), the customary `grpc_code` label.
pub use telemetry::metrics_http::grpc_code_label as code_label;

/// Serves `GET /metrics` on `listener` until `shutdown` completes (the shared server of
/// [`telemetry::metrics_http`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    telemetry::metrics_http::serve(listener, Arc::new(move || metrics.encode()), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_metric_name() {
        let metrics = Metrics::new();
        metrics.record_scan(true, Duration::from_millis(12));
        let mut counts = ScanCounts {
            candidates: 3,
            removable: 1,
            drifted: 2,
            ..Default::default()
        };
        counts
            .blocked
            .insert("REMOVAL_REASON_NO_PLACE_TO_MOVE_PODS".into(), 2);
        counts.skipped.insert("above_threshold".into(), 7);
        metrics.record_counts(&counts);
        metrics.record_rpc(
            SAFETY_SERVICE,
            "CanRemoveNodes",
            Duration::from_millis(5),
            Some(Code::Unavailable),
        );
        metrics.record_operations([("remove", "running"), ("remove", "running")]);
        metrics.record_submission("RemoveNodes");
        metrics.record_kube_write_error("event");
        metrics.set_leader(true);
        let text = metrics.encode().unwrap();
        for expected in [
            "controller_scan_duration_seconds_count 1",
            "controller_scans_total{result=\"ok\"} 1",
            "controller_scale_down_candidates 3",
            "controller_removable_nodes 1",
            "controller_drifted_nodes 2",
            "controller_blocked_nodes{reason=\"REMOVAL_REASON_NO_PLACE_TO_MOVE_PODS\"} 2",
            "controller_skipped_nodes{reason=\"above_threshold\"} 7",
            "controller_rpc_duration_seconds_count{service=\"vpsie.safety.v1.SafetyService\",method=\"CanRemoveNodes\"} 1",
            "controller_rpc_errors_total{service=\"vpsie.safety.v1.SafetyService\",method=\"CanRemoveNodes\",code=\"Unavailable\"} 1",
            "controller_operations{kind=\"remove\",state=\"running\"} 2",
            "controller_submissions_total{kind=\"RemoveNodes\"} 1",
            "controller_kube_write_errors_total{what=\"event\"} 1",
            "controller_leader 1",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }

        // Gauges by reason are replaced, not accumulated.
        metrics.record_counts(&ScanCounts::default());
        let text = metrics.encode().unwrap();
        assert!(!text.contains("controller_blocked_nodes{"), "{text}");
    }
}
