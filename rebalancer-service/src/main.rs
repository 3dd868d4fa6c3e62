//! `rebalancer-service`: the gRPC server that owns every VPSie machine change — replacement
//! batches with the same-nodegroup guard, removals, drains through the Eviction API — and resumes
//! unfinished operations after a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use rebalancer_service::executor::{Driver, system_clock};
use rebalancer_service::grpc::RebalancerServiceImpl;
use rebalancer_service::kube_ops::{KubeCluster, Polling};
use rebalancer_service::metrics::{self, Metrics, Probe};
use rebalancer_service::safety_client::{SafetyCheck, safety_channel};
use rebalancer_service::store::ConfigMapStore;
use rebalancer_service::vpsie::{Credentials, DEFAULT_BASE_URL, VpsieClient, VpsieConfig};
use rebalancer_service::vpsie_cloud::VpsieCloud;
use telemetry::tls::{ClientTlsFiles, ServerTlsFiles};
use vpsie_proto::rebalancer::v1::rebalancer_service_server::RebalancerServiceServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, event fields at the top level.
    Json,
}

/// Rebalancer: replaces and removes VPSie nodes safely, in batches, never twice, never blind.
#[derive(Debug, Parser)]
#[command(name = "rebalancer-service", version)]
struct Args {
    /// Address the gRPC server listens on.
    #[arg(long, env = "REBALANCER_LISTEN", default_value = "0.0.0.0:50052")]
    listen: SocketAddr,

    /// Address the Prometheus metrics are served on (GET /metrics).
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9102")]
    metrics_listen: SocketAddr,

    /// The safety-service asked right before each drain.
    #[arg(long, env = "SAFETY_ENDPOINT")]
    safety_endpoint: String,

    /// The VPSie API.
    #[arg(long, env = "VPSIE_URL", default_value = DEFAULT_BASE_URL)]
    vpsie_url: String,

    /// Accept a plain http:// VPSie URL (local fakes only).
    #[arg(long, env = "VPSIE_ALLOW_HTTP")]
    vpsie_allow_http: bool,

    /// The VPSie cluster identifier.
    #[arg(long, env = "VPSIE_CLUSTER")]
    vpsie_cluster: String,

    /// A mounted Secret holding `token`, or `clientId` and `clientSecret` (else VPSIE_TOKEN, or
    /// VPSIE_CLIENT_ID + VPSIE_CLIENT_SECRET).
    #[arg(long, env = "VPSIE_CREDENTIALS_DIR")]
    vpsie_credentials: Option<PathBuf>,

    /// Namespace of the operation ConfigMaps.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,

    /// How often to look for a replacement node becoming Ready, in seconds.
    #[arg(long, env = "REBALANCER_NODE_POLL_SECONDS", default_value_t = 5)]
    node_poll_seconds: u64,

    /// Log line format; the level comes from RUST_LOG (default info). Traces go to an OTLP
    /// collector when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// After SIGTERM, how long open calls may take to end, in seconds. WatchOperation streams
    /// last as long as their operation: past this, the server stops waiting for them, flushes
    /// its spans and exits (operations are stored and resume after the restart). Keep it well
    /// under the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "REBALANCER_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    shutdown_grace_seconds: u64,

    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "REBALANCER_SERVICE_TLS_CERT")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "REBALANCER_SERVICE_TLS_KEY")]
    tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "REBALANCER_SERVICE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,

    /// The CA (PEM) the safety-service's certificate must chain to, for an https://
    /// --safety-endpoint (default: the system's roots).
    #[arg(long, env = "SAFETY_TLS_CA")]
    safety_tls_ca: Option<PathBuf>,

    /// The client certificate (PEM) presented to the safety-service; needs --safety-tls-key.
    #[arg(long, env = "SAFETY_TLS_CERT")]
    safety_tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --safety-tls-cert.
    #[arg(long, env = "SAFETY_TLS_KEY")]
    safety_tls_key: Option<PathBuf>,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}

/// Serves with `serve` until it ends, or until `grace` after `signalled` fires: tonic's
/// graceful shutdown waits for every open stream, and a WatchOperation stream ends only with its
/// operation, minutes later. The streams still open then are dropped with the server.
async fn serve_with_grace<E>(
    serve: impl std::future::Future<Output = Result<(), E>>,
    signalled: tokio::sync::oneshot::Receiver<()>,
    grace: Duration,
) -> Result<(), E> {
    let grace_over = async {
        if signalled.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            // The server ended without a signal: `serve` finishes first.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = serve => result,
        () = grace_over => {
            tracing::info!(
                grace_seconds = grace.as_secs(),
                "calls still open after the shutdown grace period; closing them (unfinished \
                 operations resume after the restart)"
            );
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let format = match args.log_format {
        LogFormat::Text => telemetry::logs::LogFormat::Text,
        LogFormat::Json => telemetry::logs::LogFormat::Json,
    };
    let telemetry =
        telemetry::logs::init(&telemetry::logs::Options::new("rebalancer-service", format))
            .context("setting up logs and traces")?;
    let server_tls = ServerTlsFiles::from_flags(
        args.tls_cert.clone(),
        args.tls_key.clone(),
        args.tls_client_ca.clone(),
    )?;
    let server_tls_config = server_tls.as_ref().map(ServerTlsFiles::load).transpose()?;

    let mut kube_config = kube::Config::infer()
        .await
        .context("finding the Kubernetes API (KUBECONFIG or in-cluster)")?;
    // A PDB-blocked eviction answers 429: we retry it ourselves every evictionRetrySeconds, so
    // the client must not hide it behind its own retries.
    kube_config.default_retry = false;
    let kube = kube::Client::try_from(kube_config).context("building the Kubernetes client")?;
    let credentials = Credentials::load(args.vpsie_credentials.as_deref())
        .context("loading VPSie credentials")?;
    let mut config = VpsieConfig::new(args.vpsie_cluster.clone(), credentials);
    config.base_url = args.vpsie_url.clone();
    config.allow_http = args.vpsie_allow_http;
    let metrics = Arc::new(Metrics::new());
    let observer = {
        let metrics = Arc::clone(&metrics);
        Arc::new(move |event: &rebalancer_service::vpsie::CallEvent| {
            metrics.record_vpsie_call(event)
        })
    };
    let vpsie =
        VpsieClient::with_observer(config, observer).context("configuring the VPSie client")?;
    let breaker = vpsie.clone();
    let safety_tls = ClientTlsFiles {
        ca: args.safety_tls_ca.clone(),
        cert: args.safety_tls_cert.clone(),
        key: args.safety_tls_key.clone(),
        flag: "--safety-tls",
    };
    let safety_channel =
        safety_channel(&args.safety_endpoint, &safety_tls).context("--safety-endpoint")?;

    let polling = Polling {
        node_ready: Duration::from_secs(args.node_poll_seconds.max(1)),
        ..Polling::default()
    };
    let clock = system_clock();
    let driver = Driver::new(
        VpsieCloud::new(vpsie, kube.clone()),
        KubeCluster::new(kube.clone(), polling),
        SafetyCheck::new(kube.clone(), safety_channel),
        ConfigMapStore::new(kube.clone(), &args.namespace),
        clock.clone(),
    );
    let resumed = driver
        .resume()
        .await
        .map_err(anyhow::Error::msg)
        .context("reloading stored operations")?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RebalancerServiceServer<
            RebalancerServiceImpl<VpsieCloud, KubeCluster, SafetyCheck, ConfigMapStore>,
        >>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vpsie_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("reflection v1")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vpsie_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("reflection v1alpha")?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics listener on {}", args.metrics_listen))?;
    let metrics_listener_addr = metrics_listener.local_addr()?;
    let probe: Probe = {
        let driver = Arc::clone(&driver);
        Arc::new(move || {
            let states = driver
                .list()
                .iter()
                .map(|op| {
                    vpsie_proto::rebalancer::v1::OperationState::try_from(op.state)
                        .map(|s| {
                            s.as_str_name()
                                .trim_start_matches("OPERATION_STATE_")
                                .to_string()
                        })
                        .unwrap_or_else(|_| "UNKNOWN".to_string())
                })
                .collect();
            let open = matches!(
                breaker.breaker_state(),
                rebalancer_service::vpsie::BreakerState::Open { .. }
            );
            (states, open)
        })
    };
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = tokio::spawn(metrics::serve(
        metrics_listener,
        Arc::clone(&metrics),
        probe,
        async {
            let _ = metrics_stopped.await;
        },
    ));
    tracing::info!(
        listen = %listener.local_addr()?,
        metrics_listen = %metrics_listener_addr,
        resumed,
        namespace = %args.namespace,
        tls = server_tls.is_some(),
        client_certificates = server_tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        tracing = telemetry.exporting(),
        "rebalancer-service serving"
    );
    let router = tonic::transport::Server::builder()
        .trace_fn(rebalancer_service::grpc::server_span)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RebalancerServiceServer::new(RebalancerServiceImpl::new(
            driver, clock, metrics,
        )));
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown_signal().await;
        let _ = signal.send(());
    };
    match server_tls_config {
        None => serve_with_grace(
            router.serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                shutdown,
            ),
            signalled,
            grace,
        )
        .await
        .context("serving gRPC")?,
        Some(config) => serve_with_grace(
            router
                .serve_with_incoming_shutdown(telemetry::tls::incoming(listener, config), shutdown),
            signalled,
            grace,
        )
        .await
        .context("serving gRPC over TLS")?,
    }
    let _ = stop_metrics.send(());
    if let Ok(Err(error)) = metrics_server.await {
        tracing::warn!(%error, "metrics server failed");
    }
    // Export the spans still queued before exiting.
    telemetry.shutdown();
    Ok(())
}
