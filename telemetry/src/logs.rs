//! The `tracing` setup of every binary: log lines on stderr (human-readable text or one JSON
//! object per line) filtered by `RUST_LOG`, and — when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set — every `info` (or more important) span exported
//! to an OpenTelemetry collector over OTLP/gRPC through a batch span processor.
//!
//! The exported spans carry `service.name` = the binary's name unless `OTEL_SERVICE_NAME` says
//! otherwise. The standard `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` variables are honoured by the
//! exporter and the batch processor. The [`Guard`] returned by [`init`] flushes the spans still
//! queued and shuts the exporter down when it is dropped (or [`Guard::shutdown`]), so keep it
//! alive for the whole of `main`: a SIGTERM that ends `main` normally still exports the last
//! spans.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// The variables that switch the OTLP exporter on.
pub const OTLP_ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What a binary wants from its logs and traces.
#[derive(Debug, Clone)]
pub struct Options {
    /// The binary's name: `service.name` of its spans unless `OTEL_SERVICE_NAME` is set.
    pub service_name: &'static str,
    pub format: LogFormat,
    /// The filter when `RUST_LOG` is unset or invalid, e.g. `info`.
    pub default_level: &'static str,
    /// JSON lines carry the event's fields at the top level rather than under `fields`.
    pub flatten_json_fields: bool,
    /// Colours in text lines; `None` keeps tracing-subscriber's default.
    pub ansi: Option<bool>,
}

impl Options {
    /// `info` by default, JSON fields at the top level, default colours.
    pub fn new(service_name: &'static str, format: LogFormat) -> Self {
        Options {
            service_name,
            format,
            default_level: "info",
            flatten_json_fields: true,
            ansi: None,
        }
    }
}

/// Why logging or tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("configuring the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("installing the tracing subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the span exporter alive; flushes and shuts it down when dropped.
#[derive(Debug)]
#[must_use = "dropping the guard shuts the span exporter down"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Whether spans are exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            // The subscriber may be the one that failed: say it plainly on stderr too.
            eprintln!("shutting down the OTLP span exporter: {error}");
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `service.name` of exported spans: `OTEL_SERVICE_NAME` when set, else `binary`.
pub fn service_name(binary: &str) -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| binary.to_owned())
}

/// Whether an OTLP endpoint is configured.
pub fn otlp_configured() -> bool {
    OTLP_ENDPOINT_VARS.iter().any(|var| {
        std::env::var(var)
            .ok()
            .is_some_and(|value| !value.trim().is_empty())
    })
}

/// Installs the global subscriber. With an OTLP endpoint configured this must run inside a Tokio
/// runtime (the exporter's gRPC channel is driven by it).
pub fn init(options: &Options) -> Result<Guard, InitError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(options.default_level));
    let text = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let text = match options.ansi {
        Some(ansi) => text.with_ansi(ansi),
        None => text,
    };
    let fmt_layer = match (options.format, options.flatten_json_fields) {
        (LogFormat::Text, _) => text.boxed(),
        (LogFormat::Json, true) => text.json().flatten_event(true).boxed(),
        (LogFormat::Json, false) => text.json().boxed(),
    };

    let provider = if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(service_name(options.service_name))
                        .build(),
                )
                .build(),
        )
    } else {
        None
    };
    // Spans (not log lines) go to the collector: ours are `info`; the transport crates' own are
    // `debug`/`trace` and stay out, the exporter's gRPC calls included.
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(options.service_name))
            .with_filter(LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter))
        .with(otel_layer)
        .try_init()?;
    Ok(Guard { provider })
}
