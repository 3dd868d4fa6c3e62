//! The tonic adapter: `vpsie.safety.v1.SafetyService` over the engine.
//!
//! The service is the one generated for the requests' wire view (`engine::w`): tonic hands prost
//! the request buffer and every string of the snapshot stays a slice of it.
//!
//! Each call checks that a snapshot is present, turns the client's deadline into an engine
//! [`Deadline`], runs the (synchronous, CPU-bound) engine on the blocking pool and maps
//! [`EngineError`] onto status codes. What the call was about and what it decided go into the
//! call's [`CallContext`], from which the transport layer writes the one log line per call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Code, Request, Response, Status};
use vpsie_proto::safety::v1 as pb;

use crate::engine::{self, Deadline, EngineError, w};
use crate::metrics::Metrics;
use crate::server::{CallContext, CallSummary};

/// The gRPC metadata key carrying the client's timeout.
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// Parses a `grpc-timeout` value (`TimeoutValue TimeoutUnit`: at most 8 ASCII digits followed by
/// one of `H M S m u n`), e.g. `100m` or `5S`. Anything else is `None`.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount * 60 * 60),
        'M' => Duration::from_secs(amount * 60),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The status a failed engine call answers with.
pub fn status_from_engine_error(error: &EngineError) -> Status {
    let code = match error {
        EngineError::InvalidArgument { .. } => Code::InvalidArgument,
        EngineError::NodeNotFound(_) => Code::NotFound,
        EngineError::DeadlineExceeded => Code::DeadlineExceeded,
    };
    // `EngineError`'s Display is `"{path}: {message}"` for invalid arguments.
    Status::new(code, error.to_string())
}

/// `SafetyService` over the engine.
#[derive(Debug, Clone)]
pub struct SafetyServiceImpl {
    metrics: Arc<Metrics>,
}

impl SafetyServiceImpl {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        SafetyServiceImpl { metrics }
    }

    async fn call<Req, Resp>(
        &self,
        method: &'static str,
        request: Request<Req>,
        run: fn(&Req, Deadline) -> Result<Resp, EngineError>,
    ) -> Result<Response<Resp>, Status>
    where
        Req: EngineRequest + Send + 'static,
        Resp: EngineResponse + Send + 'static,
    {
        // The transport layer puts the context in; without it (e.g. the service mounted on some
        // other server) the deadline is read from the metadata and the call logs for itself.
        let (context, detached) = match request.extensions().get::<CallContext>() {
            Some(context) => (context.clone(), false),
            None => {
                let now = Instant::now();
                let deadline = request
                    .metadata()
                    .get(GRPC_TIMEOUT_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(parse_grpc_timeout)
                    .and_then(|timeout| now.checked_add(timeout));
                (CallContext::new(now, deadline), true)
            }
        };
        let request = request.into_inner();
        context.update(|summary| request.describe(summary));

        let result = self.run_engine(method, &context, request, run).await;
        match &result {
            Ok(response) => context.update(|summary| response.describe(summary)),
            Err(status) => context.update(|summary| summary.error = Some(status.message().into())),
        }
        if detached {
            let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
            crate::server::log_call(
                "vpsie.safety.v1.SafetyService",
                method,
                code,
                context.started().elapsed(),
                &context.summary(),
            );
        }
        result.map(Response::new)
    }

    async fn run_engine<Req, Resp>(
        &self,
        method: &'static str,
        context: &CallContext,
        request: Req,
        run: fn(&Req, Deadline) -> Result<Resp, EngineError>,
    ) -> Result<Resp, Status>
    where
        Req: EngineRequest + Send + 'static,
        Resp: EngineResponse + Send + 'static,
    {
        if !request.has_snapshot() {
            return Err(status_from_engine_error(&EngineError::invalid(
                "snapshot", "required",
            )));
        }
        let deadline = match context.deadline() {
            Some(at) if Instant::now() >= at => {
                return Err(status_from_engine_error(&EngineError::DeadlineExceeded));
            }
            Some(at) => Deadline::at(at),
            None => Deadline::NONE,
        };
        // A child of the call's server span, on the blocking pool.
        let span = tracing::info_span!("simulate", method);
        let joined = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let started = Instant::now();
            let result = run(&request, deadline);
            let elapsed = started.elapsed();
            // Freeing a large snapshot takes a while: answer first, free on another thread.
            tokio::task::spawn_blocking(move || drop(request));
            (result, elapsed)
        })
        .await;
        match joined {
            Ok((Ok(response), elapsed)) => {
                self.metrics
                    .record_simulation(method, elapsed, response.pods_simulated());
                Ok(response)
            }
            Ok((Err(error), _)) => Err(status_from_engine_error(&error)),
            Err(join_error) => {
                tracing::error!(method, error = %join_error, "simulation panicked");
                Err(Status::internal("the simulation failed unexpectedly"))
            }
        }
    }
}

#[tonic::async_trait]
impl w::safety_service_server::SafetyService for SafetyServiceImpl {
    async fn can_remove_node(
        &self,
        request: Request<w::CanRemoveNodeRequest>,
    ) -> Result<Response<pb::CanRemoveNodeResponse>, Status> {
        self.call("CanRemoveNode", request, engine::can_remove_node)
            .await
    }

    async fn can_remove_nodes(
        &self,
        request: Request<w::CanRemoveNodesRequest>,
    ) -> Result<Response<pb::CanRemoveNodesResponse>, Status> {
        self.call("CanRemoveNodes", request, engine::can_remove_nodes)
            .await
    }

    async fn find_schedulable_node(
        &self,
        request: Request<w::FindSchedulableNodeRequest>,
    ) -> Result<Response<pb::FindSchedulableNodeResponse>, Status> {
        self.call(
            "FindSchedulableNode",
            request,
            engine::find_schedulable_node,
        )
        .await
    }
}

/// At most this many candidate names go into a log line.
const LOGGED_CANDIDATES: usize = 10;

/// What the adapter needs to know about a request.
trait EngineRequest {
    fn has_snapshot(&self) -> bool;
    /// Fills in what the call is about (node or pod).
    fn describe(&self, summary: &mut CallSummary);
}

/// What the adapter needs to know about an answer.
trait EngineResponse {
    /// Fills in the decision.
    fn describe(&self, summary: &mut CallSummary);
    /// Pods the engine placed or found blocking.
    fn pods_simulated(&self) -> u64;
}

/// A name of the request for the log line (not validated yet: the engine checks UTF-8).
fn lossy(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}

impl EngineRequest for w::CanRemoveNodeRequest {
    fn has_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    fn describe(&self, summary: &mut CallSummary) {
        summary.node = Some(lossy(&self.node_name));
    }
}

impl EngineRequest for w::CanRemoveNodesRequest {
    fn has_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    fn describe(&self, summary: &mut CallSummary) {
        let mut nodes = self
            .node_names
            .iter()
            .take(LOGGED_CANDIDATES)
            .map(|name| lossy(name))
            .collect::<Vec<_>>()
            .join(",");
        if self.node_names.len() > LOGGED_CANDIDATES {
            nodes.push_str(&format!(
                ",…(+{})",
                self.node_names.len() - LOGGED_CANDIDATES
            ));
        }
        summary.node = Some(nodes);
    }
}

impl EngineRequest for w::FindSchedulableNodeRequest {
    fn has_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    fn describe(&self, summary: &mut CallSummary) {
        let (namespace, name) = self
            .pod
            .as_ref()
            .and_then(|pod| pod.metadata.as_ref())
            .map_or((&[][..], &[][..]), |meta| {
                (meta.namespace.as_ref(), meta.name.as_ref())
            });
        summary.pod = Some(format!("{}/{}", lossy(namespace), lossy(name)));
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl EngineResponse for pb::CanRemoveNodeResponse {
    fn describe(&self, summary: &mut CallSummary) {
        summary.decision = Some(
            if self.removable {
                "removable"
            } else {
                "not_removable"
            }
            .into(),
        );
        let reason = self.reason().as_str_name();
        summary.reason = Some(reason.strip_prefix("REMOVAL_REASON_").unwrap_or(reason));
    }

    fn pods_simulated(&self) -> u64 {
        count(self.placements.len() + self.blocking_pods.len())
    }
}

impl EngineResponse for pb::CanRemoveNodesResponse {
    fn describe(&self, summary: &mut CallSummary) {
        summary.decision = Some(format!(
            "{}/{} removable",
            self.removable_nodes.len(),
            self.results.len()
        ));
    }

    fn pods_simulated(&self) -> u64 {
        self.results
            .iter()
            .map(EngineResponse::pods_simulated)
            .fold(0, u64::saturating_add)
    }
}

impl EngineResponse for pb::FindSchedulableNodeResponse {
    fn describe(&self, summary: &mut CallSummary) {
        summary.decision = Some(if self.found { "found" } else { "not_found" }.into());
        if self.found {
            summary.node = Some(self.node_name.clone());
        }
    }

    fn pods_simulated(&self) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_grpc_timeout_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("0m"), Some(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed_grpc_timeouts() {
        for bad in [
            "",
            "m",
            "100",
            "100x",
            "123456789S",
            "-1S",
            "+1S",
            "1.5S",
            "1 S",
            "1é",
            "é",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn maps_engine_errors_to_codes() {
        let status = status_from_engine_error(&EngineError::invalid(
            "snapshot.pods[0].spec.containers[0].resources.requests[\"cpu\"]",
            "invalid quantity \"12x\"",
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "snapshot.pods[0].spec.containers[0].resources.requests[\"cpu\"]: invalid quantity \"12x\""
        );
        let status = status_from_engine_error(&EngineError::NodeNotFound("ghost".into()));
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("ghost"));
        assert_eq!(
            status_from_engine_error(&EngineError::DeadlineExceeded).code(),
            Code::DeadlineExceeded
        );
    }

    #[tokio::test]
    async fn missing_snapshot_is_an_invalid_argument_naming_snapshot() {
        use w::safety_service_server::SafetyService;
        let service = SafetyServiceImpl::new(Arc::new(Metrics::new()));
        let status = service
            .can_remove_node(Request::new(w::CanRemoveNodeRequest {
                node_name: "n1".into(),
                ..Default::default()
            }))
            .await
            .expect_err("no snapshot");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("snapshot"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn a_passed_deadline_is_deadline_exceeded() {
        use w::safety_service_server::SafetyService;
        let service = SafetyServiceImpl::new(Arc::new(Metrics::new()));
        let mut request = Request::new(w::FindSchedulableNodeRequest {
            snapshot: Some(w::ClusterSnapshot::default()),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert(GRPC_TIMEOUT_HEADER, "0n".parse().expect("ascii"));
        let status = service
            .find_schedulable_node(request)
            .await
            .expect_err("deadline passed");
        assert_eq!(status.code(), Code::DeadlineExceeded);
    }
}
