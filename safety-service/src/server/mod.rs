//! The gRPC server: `SafetyService`, `grpc.health.v1.Health` and server reflection (v1 and
//! v1alpha) behind the [`observe`] layer, served over HTTP/2 with hyper.
//!
//! The binary and the integration tests start the very same server:
//! ```no_run
//! # async fn example() -> Result<(), safety_service::server::ServerError> {
//! use std::sync::Arc;
//! use safety_service::{metrics::Metrics, server};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let router = server::router(&server::ServerConfig::default(), Arc::new(Metrics::new())).await?;
//! router.serve_with_shutdown(listener, std::future::pending()).await
//! # }
//! ```
//!
//! With [`Router::with_tls`] every connection is a TLS one (rustls, ALPN `h2`; client
//! certificates required when the configuration has a client CA).
//!
//! hyper is driven directly rather than through `tonic::transport::Server` because tonic's
//! transport answers an expired `grpc-timeout` with `CANCELLED`; the contract says
//! `DEADLINE_EXCEEDED`, which [`observe::Observe`] answers instead. The same layer answers an
//! over-limit request with `RESOURCE_EXHAUSTED` (tonic alone says `OUT_OF_RANGE`).

mod limit;
mod observe;

pub use observe::{CallContext, CallSummary, log_call};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use vpsie_proto::safety::v1::wire::safety_service_server::SafetyServiceServer;

use crate::grpc::SafetyServiceImpl;
use crate::metrics::Metrics;

/// The default (and documented) largest request accepted: 256 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// How long in-flight calls may run on after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long to back off after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

const SAFETY_SERVICE_NAME: &str =
    <SafetyServiceServer<SafetyServiceImpl> as tonic::server::NamedService>::NAME;
const HEALTH_SERVICE_NAME: &str = "grpc.health.v1.Health";

/// How much of a request a client may send before the server acknowledges it (HTTP/2 flow
/// control, per stream and per connection). Snapshots run to hundreds of megabytes; HTTP/2's
/// 64 KiB default (or an estimate grown from it) stalls the sender on every window update.
const RECEIVE_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// The largest HTTP/2 frame a client may send (the default 16 KiB frames cost a header and a
/// wake-up each).
const MAX_FRAME_BYTES: u32 = 1024 * 1024;

/// What the server is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest decoded request message; larger ones get `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Why the server could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("building the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Every service of the server, ready to serve.
pub struct Router {
    routes: Routes,
    health: HealthReporter,
    metrics: Arc<Metrics>,
    max_message_bytes: usize,
    tls: Option<telemetry::tls::Acceptor>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Assembles `SafetyService` (with the configured message limit), health (the server and
/// `vpsie.safety.v1.SafetyService` both `SERVING`) and reflection v1 and v1alpha.
pub async fn router(config: &ServerConfig, metrics: Arc<Metrics>) -> Result<Router, ServerError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SafetyServiceServer<SafetyServiceImpl>>()
        .await;

    let safety = SafetyServiceServer::new(SafetyServiceImpl::new(Arc::clone(&metrics)))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(usize::MAX);

    // The descriptor set holds the rebalancer's service too: list only what this server serves.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(vpsie_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(SAFETY_SERVICE_NAME)
            .with_service_name(HEALTH_SERVICE_NAME)
    };
    let reflection_v1 = reflection()
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()?;
    let reflection_v1alpha = reflection()
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
        .build_v1alpha()?;

    let routes = Routes::new(health_service)
        .add_service(safety)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok(Router {
        routes,
        health,
        metrics,
        max_message_bytes: config.max_message_bytes,
        tls: None,
    })
}

impl Router {
    /// Serves over TLS with `config` (see [`telemetry::tls::ServerTlsFiles`]): each accepted
    /// connection does its handshake in its own task, then speaks HTTP/2 as without TLS.
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(telemetry::tls::Acceptor::new(config));
        self
    }

    /// The health reporter, e.g. to report `NOT_SERVING` from elsewhere.
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Serves on `listener` until `shutdown` completes; then stops accepting, reports
    /// `NOT_SERVING`, tells every connection to go away (HTTP/2 GOAWAY) and waits up to
    /// [`SHUTDOWN_GRACE`] for in-flight calls.
    ///
    /// A connection that fails (garbage, a broken preface, a protocol error) is closed on its
    /// own; it never stops the server.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let service = TowerToHyperService::new(observe::Observe::new(
            self.routes,
            self.metrics,
            self.max_message_bytes,
        ));
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .initial_stream_window_size(RECEIVE_WINDOW_BYTES)
            .initial_connection_window_size(RECEIVE_WINDOW_BYTES)
            .max_frame_size(MAX_FRAME_BYTES);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);

        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
                        }
                        match &self.tls {
                            None => {
                                let connection = graceful.watch(
                                    http2.serve_connection(TokioIo::new(stream), service.clone()),
                                );
                                tokio::spawn(async move {
                                    if let Err(error) = connection.await {
                                        tracing::debug!(%peer, %error, "connection ended with an error");
                                    }
                                });
                            }
                            Some(acceptor) => {
                                let acceptor = acceptor.clone();
                                let watcher = graceful.watcher();
                                let http2 = http2.clone();
                                let service = service.clone();
                                tokio::spawn(async move {
                                    let stream = match acceptor.accept(stream).await {
                                        Ok(stream) => stream,
                                        Err(error) => {
                                            tracing::debug!(%peer, %error, "TLS handshake failed");
                                            return;
                                        }
                                    };
                                    let connection = watcher.watch(
                                        http2.serve_connection(TokioIo::new(stream), service),
                                    );
                                    if let Err(error) = connection.await {
                                        tracing::debug!(%peer, %error, "connection ended with an error");
                                    }
                                });
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }

        drop(listener);
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.health
            .set_not_serving::<SafetyServiceServer<SafetyServiceImpl>>()
            .await;
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_seconds = SHUTDOWN_GRACE.as_secs(),
                "connections still open after the grace period; closing them"
            );
        }
        Ok(())
    }
}
