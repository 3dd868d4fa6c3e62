//! `safety-service`: the stateless gRPC server answering "can this node be removed without
//! leaving a pod homeless?" (`vpsie.safety.v1.SafetyService`), with health, reflection and
//! Prometheus metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use safety_service::metrics::{self, Metrics};
use safety_service::server::{self, DEFAULT_MAX_MESSAGE_BYTES, ServerConfig};
use telemetry::tls::ServerTlsFiles;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, event fields at the top level.
    Json,
}

/// Scale-down safety service: simulates, kube-scheduler-faithfully, whether a node's pods can
/// all be rescheduled elsewhere before it is removed.
#[derive(Debug, Parser)]
#[command(name = "safety-service", version)]
struct Args {
    /// Address the gRPC server listens on.
    #[arg(long, env = "SAFETY_LISTEN", default_value = "0.0.0.0:50051")]
    listen: SocketAddr,

    /// Largest request message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.
    #[arg(long, env = "SAFETY_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,

    /// Address the Prometheus metrics are served on (GET /metrics).
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9101")]
    metrics_listen: SocketAddr,

    /// Log line format; the level comes from RUST_LOG (default info). Traces go to an OTLP
    /// collector when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "SAFETY_SERVICE_TLS_CERT")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "SAFETY_SERVICE_TLS_KEY")]
    tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "SAFETY_SERVICE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    safety_service::memory::retain_freed_memory();
    let args = Args::parse();
    let telemetry = telemetry::logs::init(&telemetry::logs::Options::new(
        "safety-service",
        match args.log_format {
            LogFormat::Text => telemetry::logs::LogFormat::Text,
            LogFormat::Json => telemetry::logs::LogFormat::Json,
        },
    ))
    .context("setting up logs and traces")?;
    let tls = ServerTlsFiles::from_flags(args.tls_cert, args.tls_key, args.tls_client_ca)?
        .map(|files| {
            files
                .load()
                .map(|config| (config, files.client_ca.is_some()))
        })
        .transpose()?;

    let metrics = Arc::new(Metrics::new());
    let config = ServerConfig {
        max_message_bytes: args.max_message_bytes,
    };
    let mut router = server::router(&config, Arc::clone(&metrics))
        .await
        .context("building the gRPC services")?;
    if let Some((tls_config, _)) = &tls {
        router = router.with_tls(Arc::clone(tls_config));
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the gRPC listener on {}", args.listen))?;
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics listener on {}", args.metrics_listen))?;
    tracing::info!(
        listen = %listener.local_addr().context("reading the gRPC address")?,
        metrics_listen = %metrics_listener.local_addr().context("reading the metrics address")?,
        max_message_bytes = config.max_message_bytes,
        tls = tls.is_some(),
        client_certificates = tls.as_ref().is_some_and(|(_, required)| *required),
        tracing = telemetry.exporting(),
        "safety-service serving"
    );

    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = tokio::spawn(metrics::serve(metrics_listener, metrics, async {
        let _ = metrics_stopped.await;
    }));

    router
        .serve_with_shutdown(listener, shutdown_signal())
        .await
        .context("serving gRPC")?;

    let _ = stop_metrics.send(());
    match metrics_server.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "metrics server failed"),
        Err(error) => tracing::warn!(%error, "metrics server task failed"),
    }
    tracing::info!("safety-service stopped");
    // Export the spans still queued before exiting.
    telemetry.shutdown();
    Ok(())
}
