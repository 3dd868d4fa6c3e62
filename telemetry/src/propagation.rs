//! The W3C trace context (`traceparent`, `tracestate`) in gRPC metadata.
//!
//! Clients wrap their channel with [`TraceInterceptor`] (or call [`inject`] on a request): the
//! context of the current `tracing` span goes into the request's metadata. Servers [`extract`]
//! it from the request headers and make it the parent of their server span with
//! [`set_parent_from`]. Without an exporter installed every span context is empty: nothing is
//! injected and the parent stays unset, at no cost worth mentioning.

use std::future::Future;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header of the W3C trace context's parent.
pub const TRACEPARENT: &str = "traceparent";
/// The header of the W3C trace context's vendor state.
pub const TRACESTATE: &str = "tracestate";

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes `context` into `metadata` (nothing when it has no valid span).
pub fn inject_context(context: &Context, metadata: &mut MetadataMap) {
    if !context.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new().inject_context(context, &mut MetadataInjector(metadata));
}

/// Writes the current span's trace context into the request's metadata.
pub fn inject<T>(request: &mut tonic::Request<T>) {
    let context = tracing::Span::current().context();
    inject_context(&context, request.metadata_mut());
}

/// The trace context the caller sent, if any (an empty context otherwise).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Makes the caller's span (from `headers`) the parent of `span`; without a valid `traceparent`
/// the span stays the root of a new trace.
pub fn set_parent_from(span: &tracing::Span, headers: &http::HeaderMap) {
    let context = extract(headers);
    if context.span().span_context().is_valid() {
        // Fails only when the span is disabled or has no OpenTelemetry layer: nothing to do then.
        let _ = span.set_parent(context);
    }
}

/// Makes the current span the OpenTelemetry parent of `span`, which should have been created
/// without a `tracing` parent (`parent: None`): for work that outlives the current span (a
/// spawned task). The exported trace links them, while the current span still ends, and is
/// exported, when its own work ends rather than when `span` does. Nothing happens without an
/// exporter or outside a span.
pub fn continue_current_trace(span: &tracing::Span) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        // Fails only when the span is disabled or has no OpenTelemetry layer: nothing to do then.
        let _ = span.set_parent(context);
    }
}

/// The span of one outgoing call (`otel.kind = client`), named `<service>/<method>` as the
/// server's span is. Instrument the call's future with it; its context is what the
/// [`TraceInterceptor`] injects.
pub fn client_span(service: &'static str, method: &'static str) -> tracing::Span {
    tracing::info_span!(
        "grpc.client",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
    )
}

/// The span of one incoming call (`otel.kind = server`) to `/<service>/<method>`, child of the
/// caller's span when `headers` carry a `traceparent`. Calls outside `exported_service` (health
/// checks, reflection) get a `debug` span, which is not exported: probes would drown the traces.
pub fn server_span(path: &str, headers: &http::HeaderMap, exported_service: &str) -> tracing::Span {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    let span = if service == exported_service {
        tracing::info_span!(
            "grpc.server",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
        )
    } else {
        tracing::debug_span!(
            "grpc.server",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
        )
    };
    set_parent_from(&span, headers);
    span
}

/// Records a finished call's status on its span (client or server).
pub fn record_status(span: &tracing::Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if code != tonic::Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}

/// Runs one outgoing call in its [`client_span`] and records its status there.
pub async fn traced_call<T>(
    service: &'static str,
    method: &'static str,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let span = client_span(service, method);
    let result = tracing::Instrument::instrument(call, span.clone()).await;
    record_status(
        &span,
        result
            .as_ref()
            .map_or_else(tonic::Status::code, |_| tonic::Code::Ok),
    );
    result
}

/// A tonic interceptor that injects the current span's trace context into every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceInterceptor;

impl Interceptor for TraceInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject(&mut request);
        Ok(request)
    }
}

/// A channel whose requests carry the caller's trace context.
pub type TracedChannel = InterceptedService<Channel, TraceInterceptor>;

/// Wraps `channel` so that every request carries the caller's trace context.
pub fn traced(channel: Channel) -> TracedChannel {
    InterceptedService::new(channel, TraceInterceptor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn a_context_round_trips_through_metadata() {
        let span_context = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let context = Context::new().with_remote_span_context(span_context.clone());
        let mut metadata = MetadataMap::new();
        inject_context(&context, &mut metadata);
        assert_eq!(
            metadata.get(TRACEPARENT).and_then(|v| v.to_str().ok()),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let headers = metadata.into_headers();
        let extracted = extract(&headers);
        assert_eq!(
            extracted.span().span_context().trace_id(),
            span_context.trace_id()
        );
        assert_eq!(
            extracted.span().span_context().span_id(),
            span_context.span_id()
        );
        assert!(extracted.span().span_context().is_remote());
    }

    #[test]
    fn nothing_is_injected_without_a_span() {
        let mut metadata = MetadataMap::new();
        inject_context(&Context::new(), &mut metadata);
        assert!(metadata.is_empty());
        let extracted = extract(&http::HeaderMap::new());
        assert!(!extracted.span().span_context().is_valid());
    }
}
