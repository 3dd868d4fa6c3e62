//! Prometheus metrics (prometheus-client), exposed on `--metrics-listen` at `/metrics` by the
//! shared server of [`telemetry::metrics_http`].
//!
//! - `grpc_server_handled_total{grpc_service,grpc_method,grpc_code}`: every finished call, with
//!   the status code spelled as grpc-go spells it (`OK`, `InvalidArgument`, `DeadlineExceeded`…).
//! - `grpc_server_handling_seconds{grpc_service,grpc_method}`: time from the request headers to
//!   the end of the response.
//! - `safety_simulation_seconds{method}`: time spent in the engine per call.
//! - `safety_pods_simulated_total{method}`: pods the engine placed or found blocking.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::Code;

/// Latency buckets in seconds: sub-millisecond answers up to minute-long simulations.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

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
struct MethodLabels {
    method: &'static str,
}

/// Every metric of the service, and the registry they are exposed from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    handled: Family<HandledLabels, Counter>,
    handling: Family<HandlingLabels, Histogram, fn() -> Histogram>,
    simulation: Family<MethodLabels, Histogram, fn() -> Histogram>,
    pods_simulated: Family<MethodLabels, Counter>,
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
        // prometheus-client appends `_total` to counters.
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            handled.clone(),
        );
        let handling: Family<HandlingLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds_histogram);
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC calls handled by the server",
            handling.clone(),
        );
        let simulation: Family<MethodLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds_histogram);
        registry.register(
            "safety_simulation_seconds",
            "Time spent in the simulation engine per call (seconds)",
            simulation.clone(),
        );
        let pods_simulated = Family::<MethodLabels, Counter>::default();
        registry.register(
            "safety_pods_simulated",
            "Pods the simulation placed or found blocking",
            pods_simulated.clone(),
        );
        Metrics {
            registry,
            handled,
            handling,
            simulation,
            pods_simulated,
        }
    }

    /// One finished call. `grpc_method` is the bare method name.
    pub fn record_handled(
        &self,
        grpc_service: &'static str,
        grpc_method: &'static str,
        code: Code,
        elapsed: Duration,
    ) {
        self.handled
            .get_or_create(&HandledLabels {
                grpc_service,
                grpc_method,
                grpc_code: code_label(code),
            })
            .inc();
        self.handling
            .get_or_create(&HandlingLabels {
                grpc_service,
                grpc_method,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One engine run that produced an answer.
    pub fn record_simulation(&self, method: &'static str, elapsed: Duration, pods: u64) {
        let labels = MethodLabels { method };
        self.simulation
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.pods_simulated.get_or_create(&labels).inc_by(pods);
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
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
    fn exposes_the_grpc_server_metric_names() {
        let metrics = Metrics::new();
        metrics.record_handled(
            "vpsie.safety.v1.SafetyService",
            "CanRemoveNode",
            Code::NotFound,
            Duration::from_millis(3),
        );
        metrics.record_simulation("CanRemoveNode", Duration::from_millis(2), 5);
        let text = metrics.encode().expect("encodes");
        assert!(text.contains(
            "grpc_server_handled_total{grpc_service=\"vpsie.safety.v1.SafetyService\",grpc_method=\"CanRemoveNode\",grpc_code=\"NotFound\"} 1"
        ), "{text}");
        assert!(
            text.contains("grpc_server_handling_seconds_bucket{"),
            "{text}"
        );
        assert!(
            text.contains("safety_simulation_seconds_count{method=\"CanRemoveNode\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("safety_pods_simulated_total{method=\"CanRemoveNode\"} 5"),
            "{text}"
        );
    }
}
