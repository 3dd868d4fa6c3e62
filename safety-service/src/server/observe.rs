//! The HTTP-level layer every gRPC call goes through: it starts the call's clock and its server
//! span (child of the caller's span when the request carries a W3C `traceparent`), turns the
//! `grpc-timeout` header into a deadline (answering `DEADLINE_EXCEEDED` itself once it passes),
//! enforces the request size limit ([`LimitedBody`]), and when the response ends records the
//! call's metrics, writes its one log line and closes the span with the call's status code.
//!
//! It replaces tonic's own transport timeout, which answers `CANCELLED` ("Timeout expired")
//! where the contract asks for `DEADLINE_EXCEEDED`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tracing::Instrument as _;
use vpsie_proto::safety::v1::wire::safety_service_server::SafetyServiceServer;

use crate::grpc::{GRPC_TIMEOUT_HEADER, SafetyServiceImpl, parse_grpc_timeout};
use crate::metrics::Metrics;
use crate::server::limit::LimitedBody;

const SAFETY_SERVICE: &str = <SafetyServiceServer<SafetyServiceImpl> as NamedService>::NAME;

/// The (service, methods) pairs this server answers; anything else is counted as `unknown` so
/// that clients cannot blow up the metrics' label sets.
const KNOWN_METHODS: &[(&str, &[&str])] = &[
    (
        SAFETY_SERVICE,
        &["CanRemoveNode", "CanRemoveNodes", "FindSchedulableNode"],
    ),
    ("grpc.health.v1.Health", &["Check", "Watch"]),
    (
        "grpc.reflection.v1.ServerReflection",
        &["ServerReflectionInfo"],
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        &["ServerReflectionInfo"],
    ),
];

const UNKNOWN: &str = "unknown";

/// `/package.Service/Method` → (service, method), both `unknown` unless served here.
fn classify(path: &str) -> (&'static str, &'static str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (Some(service), Some(method)) = (parts.next(), parts.next()) else {
        return (UNKNOWN, UNKNOWN);
    };
    for (known_service, methods) in KNOWN_METHODS {
        if *known_service == service {
            return match methods.iter().find(|known| **known == method) {
                Some(known) => (known_service, known),
                None => (known_service, UNKNOWN),
            };
        }
    }
    (UNKNOWN, UNKNOWN)
}

/// What one call was about and what came of it, filled in by the service and logged by the
/// layer when the response ends.
#[derive(Debug, Default, Clone)]
pub struct CallSummary {
    /// The node asked about (or the candidates, or the node found).
    pub node: Option<String>,
    /// `namespace/name` of the pod asked about.
    pub pod: Option<String>,
    /// `removable`, `not_removable`, `found`, `not_found`, `k/n removable`.
    pub decision: Option<String>,
    /// The `RemovalReason` of a `CanRemoveNode` answer.
    pub reason: Option<&'static str>,
    /// The status message of a failed call.
    pub error: Option<String>,
}

/// Per-call state shared between the layer and the service (through the request extensions).
#[derive(Debug, Clone)]
pub struct CallContext {
    started: Instant,
    deadline: Option<Instant>,
    summary: Arc<Mutex<CallSummary>>,
}

impl CallContext {
    pub fn new(started: Instant, deadline: Option<Instant>) -> Self {
        CallContext {
            started,
            deadline,
            summary: Arc::default(),
        }
    }

    /// When the request headers arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the client stops waiting, from its `grpc-timeout`.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn update(&self, f: impl FnOnce(&mut CallSummary)) {
        f(&mut self.summary.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn summary(&self) -> CallSummary {
        self.summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A status code as the gRPC spec names it (`NOT_FOUND`), for logs.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The one log line of a call: `info` for `SafetyService` calls, `debug` for health checks and
/// reflection.
pub fn log_call(service: &str, method: &str, code: Code, elapsed: Duration, summary: &CallSummary) {
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let failed = (code != Code::Ok).then(|| code_name(code));
    if service == SAFETY_SERVICE {
        tracing::info!(
            method,
            node = summary.node.as_deref(),
            pod = summary.pod.as_deref(),
            decision = summary.decision.as_deref(),
            reason = summary.reason,
            duration_ms,
            code = failed,
            error = summary.error.as_deref(),
            "handled call"
        );
    } else {
        tracing::debug!(service, method, duration_ms, code = failed, "handled call");
    }
}

/// Records one call when it finishes, or as `CANCELLED` if it is dropped unfinished (the client
/// went away).
#[derive(Debug)]
struct CallRecorder {
    metrics: Arc<Metrics>,
    service: &'static str,
    method: &'static str,
    context: CallContext,
    /// The call's server span, closed when the call finishes.
    span: Option<tracing::Span>,
    done: bool,
}

impl CallRecorder {
    /// The code of the status in `headers` (a trailers-only response's headers, or trailers);
    /// a failure's message becomes the call's error unless the service noted one.
    fn status_code(&self, headers: &http::HeaderMap) -> Option<Code> {
        let status = Status::from_header_map(headers)?;
        if status.code() != Code::Ok {
            self.context.update(|summary| {
                summary
                    .error
                    .get_or_insert_with(|| status.message().to_string());
            });
        }
        Some(status.code())
    }

    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.context.started().elapsed();
        if let Some(span) = self.span.take() {
            telemetry::propagation::record_status(&span, code);
        }
        self.metrics
            .record_handled(self.service, self.method, code, elapsed);
        log_call(
            self.service,
            self.method,
            code,
            elapsed,
            &self.context.summary(),
        );
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// The tower service wrapping the gRPC routes.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
    max_message_bytes: usize,
}

impl<S> Observe<S> {
    /// Wraps `inner`; request messages above `max_message_bytes` get `RESOURCE_EXHAUSTED`.
    pub fn new(inner: S, metrics: Arc<Metrics>, max_message_bytes: usize) -> Self {
        Observe {
            inner,
            metrics,
            max_message_bytes,
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<
            http::Request<LimitedBody<B>>,
            Response = http::Response<Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let limit = self.max_message_bytes;
        let mut request = request.map(|body| LimitedBody::new(body, limit));
        let started = Instant::now();
        let (service, method) = classify(request.uri().path());
        let deadline = request
            .headers()
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
            .and_then(|timeout| started.checked_add(timeout));
        let context = CallContext::new(started, deadline);
        request.extensions_mut().insert(context.clone());
        let span = telemetry::propagation::server_span(
            request.uri().path(),
            request.headers(),
            SAFETY_SERVICE,
        );
        let recorder = CallRecorder {
            metrics: Arc::clone(&self.metrics),
            service,
            method,
            context,
            span: Some(span.clone()),
            done: false,
        };
        let response = span.in_scope(|| self.inner.call(request));
        let call = async move {
            let response = match deadline {
                None => response.await,
                Some(at) => {
                    match tokio::time::timeout_at(tokio::time::Instant::from_std(at), response)
                        .await
                    {
                        Ok(response) => response,
                        Err(_elapsed) => {
                            recorder.context.update(|summary| {
                                summary.error = Some("deadline exceeded".into());
                            });
                            Ok(Status::deadline_exceeded("deadline exceeded").into_http())
                        }
                    }
                }
            };
            let response = match response {
                Ok(response) => response,
                Err(never) => match never {},
            };
            // A trailers-only response (every error) carries its status in the headers.
            let head_code = recorder.status_code(response.headers());
            Ok(response.map(|body| {
                Body::new(ObservedBody {
                    inner: body,
                    head_code,
                    recorder,
                })
            }))
        };
        Box::pin(call.instrument(span))
    }
}

/// The response body, watched for the trailers that carry the final status.
#[derive(Debug)]
struct ObservedBody {
    inner: Body,
    head_code: Option<Code>,
    recorder: CallRecorder,
}

impl HttpBody for ObservedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = this.recorder.status_code(trailers).unwrap_or(Code::Unknown);
                    this.recorder.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => this.recorder.finish(status.code()),
            Poll::Ready(None) => this
                .recorder
                .finish(this.head_code.unwrap_or(Code::Unknown)),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        // A trailers-only response may never be polled: its status is in the headers.
        if let Some(code) = self.head_code {
            self.recorder.finish(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_known_methods_only() {
        assert_eq!(
            classify("/vpsie.safety.v1.SafetyService/CanRemoveNode"),
            ("vpsie.safety.v1.SafetyService", "CanRemoveNode")
        );
        assert_eq!(
            classify("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            classify("/vpsie.safety.v1.SafetyService/Nope"),
            ("vpsie.safety.v1.SafetyService", UNKNOWN)
        );
        assert_eq!(classify("/evil.Service/Method"), (UNKNOWN, UNKNOWN));
        assert_eq!(classify("/"), (UNKNOWN, UNKNOWN));
        assert_eq!(classify(""), (UNKNOWN, UNKNOWN));
    }
}
