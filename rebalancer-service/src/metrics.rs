//! Prometheus metrics of the rebalancer (prometheus-client), served at `/metrics` on
//! `--metrics-listen`:
//!
//! - `grpc_server_handled_total{grpc_service,grpc_method,grpc_code}` (`grpc_code` as grpc-go
//!   spells it: `OK`, `NotFound`, …) and
//!   `grpc_server_handling_seconds{grpc_service,grpc_method}`;
//! - `rebalancer_operations{state}`: operations known to this process, by state;
//! - `vpsie_calls_total{method,route,status}`: every VPSie API attempt (`status` is the HTTP
//!   status, or `none` when no reply came);
//! - `vpsie_circuit_breaker_open`: 1 while the VPSie circuit breaker refuses calls.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::vpsie::CallEvent;

const SERVICE: &str = "vpsie.rebalancer.v1.RebalancerService";
const SECONDS_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlingLabels {
    grpc_service: &'static str,
    grpc_method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    route: &'static str,
    status: String,
}

/// What the scrape reads from the running process: operation states and the breaker.
pub type Probe = Arc<dyn Fn() -> (Vec<String>, bool) + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    handled: Family<HandledLabels, Counter>,
    handling: Family<HandlingLabels, Histogram, fn() -> Histogram>,
    operations: Family<StateLabels, Gauge>,
    vpsie_calls: Family<CallLabels, Counter>,
    breaker_open: Gauge,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let handled = Family::<HandledLabels, Counter>::default();
        let handling = Family::<HandlingLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            seconds_histogram,
        );
        let operations = Family::<StateLabels, Gauge>::default();
        let vpsie_calls = Family::<CallLabels, Counter>::default();
        let breaker_open = Gauge::default();
        registry.register(
            "grpc_server_handled",
            "gRPC calls finished, by code",
            handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "gRPC call latency",
            handling.clone(),
        );
        registry.register(
            "rebalancer_operations",
            "Operations known to this process, by state",
            operations.clone(),
        );
        registry.register(
            "vpsie_calls",
            "VPSie API attempts, by route and HTTP status",
            vpsie_calls.clone(),
        );
        registry.register(
            "vpsie_circuit_breaker_open",
            "1 while the VPSie circuit breaker refuses calls",
            breaker_open.clone(),
        );
        Metrics {
            registry,
            handled,
            handling,
            operations,
            vpsie_calls,
            breaker_open,
        }
    }

    /// One finished gRPC call.
    pub fn record_call(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        self.handled
            .get_or_create(&HandledLabels {
                grpc_service: SERVICE,
                grpc_method: method,
                grpc_code: telemetry::metrics_http::grpc_code_label(code),
            })
            .inc();
        self.handling
            .get_or_create(&HandlingLabels {
                grpc_service: SERVICE,
                grpc_method: method,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One VPSie API attempt (plug into the client as its `CallObserver`).
    pub fn record_vpsie_call(&self, event: &CallEvent) {
        self.vpsie_calls
            .get_or_create(&CallLabels {
                method: event.method,
                route: event.route,
                status: event
                    .status
                    .map_or_else(|| "none".to_string(), |s| s.to_string()),
            })
            .inc();
    }

    /// Refreshes the gauges that describe current state, then encodes everything.
    pub fn encode(&self, probe: &Probe) -> Result<String, std::fmt::Error> {
        let (states, breaker_open) = probe();
        self.operations.clear();
        for state in states {
            self.operations.get_or_create(&StateLabels { state }).inc();
        }
        self.breaker_open.set(i64::from(breaker_open));
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes (the shared server of
/// [`telemetry::metrics_http`]); each scrape reads the current state through `probe`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    probe: Probe,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    telemetry::metrics_http::serve(listener, Arc::new(move || metrics.encode(&probe)), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_shows_calls_operations_and_the_breaker() {
        let metrics = Metrics::new();
        metrics.record_call("ExecutePlan", tonic::Code::Ok, Duration::from_millis(3));
        metrics.record_call(
            "GetOperation",
            tonic::Code::NotFound,
            Duration::from_millis(1),
        );
        metrics.record_vpsie_call(&CallEvent {
            method: "POST",
            route: "/k8s/cluster/byId/{cluster}/add/slave/group/{groupId}",
            status: Some(500),
            outcome: "transient",
            elapsed: Duration::from_millis(5),
            attempt: 1,
        });
        let probe: Probe = Arc::new(|| {
            (
                vec!["RUNNING".into(), "RUNNING".into(), "FAILED".into()],
                true,
            )
        });
        let body = metrics.encode(&probe).expect("encodes");
        assert!(body.contains(r#"grpc_server_handled_total{grpc_service="vpsie.rebalancer.v1.RebalancerService",grpc_method="GetOperation",grpc_code="NotFound"} 1"#), "{body}");
        assert!(
            body.contains(r#"rebalancer_operations{state="RUNNING"} 2"#),
            "{body}"
        );
        assert!(
            body.contains(r#"rebalancer_operations{state="FAILED"} 1"#),
            "{body}"
        );
        assert!(
            body.contains(
                r#"route="/k8s/cluster/byId/{cluster}/add/slave/group/{groupId}",status="500"} 1"#
            ),
            "{body}"
        );
        assert!(body.contains("vpsie_circuit_breaker_open 1"), "{body}");
        // a later scrape forgets operations that are gone
        let probe: Probe = Arc::new(|| (vec![], false));
        let body = metrics.encode(&probe).expect("encodes");
        assert!(!body.contains("rebalancer_operations{"), "{body}");
        assert!(body.contains("vpsie_circuit_breaker_open 0"), "{body}");
    }
}
