//! `controller`: the scale-down and drift-rebalancing controller (`shared/docs/controller.md`).
//! `controller plan` runs one scan offline over a `kubectl get -o json` dump; `controller run`
//! is the online loop (reflectors, leader election, scans every `scanInterval`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use controller::config::Config;
use controller::leader::{self, LeaderConfig};
use controller::offline::{self, PlanRequest};
use controller::run::{self as online, RunOptions};
use telemetry::tls::ClientTlsFiles;

/// Finds underutilised and drifted VPSie nodes, asks the safety-service whether they can go, and
/// hands the work to the rebalancer-service.
#[derive(Debug, Parser)]
#[command(name = "controller", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline: one scan over a `kubectl get nodes,pods,pdb,namespaces -A -o json` dump; prints one
    /// line per node, then the requests it would submit. Submits and writes nothing. Bad input
    /// exits with status 2, naming the dump item and field.
    Plan(PlanArgs),
    /// The online loop: watches Nodes, Pods, PodDisruptionBudgets and Namespaces, and while it
    /// holds the leader Lease scans every `scanInterval`, asks the safety-service and hands
    /// removals and drift replacements to the rebalancer-service. Kubeconfig from KUBECONFIG or
    /// in-cluster; the Lease lives in POD_NAMESPACE (default `default`). SIGTERM or Ctrl-C stop
    /// it and release the Lease. A bad configuration exits with status 2.
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// The dump: output of `kubectl get nodes,pods,pdb,namespaces -A -o json`.
    #[arg(long, env = "CONTROLLER_CLUSTER_FILE")]
    cluster_file: PathBuf,

    /// The YAML configuration; without it, built-in defaults with node groups inferred from the
    /// dump's `autoscaler.vpsie.com/nodegroup` labels (minNodes 1, no drift).
    #[arg(long, env = "CONTROLLER_CONFIG")]
    config: Option<PathBuf>,

    /// A running safety-service (e.g. `http://127.0.0.1:50051`); without it, one is started in
    /// this process on a loopback ephemeral port.
    #[arg(long, env = "SAFETY_ENDPOINT")]
    safety_endpoint: Option<String>,

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

#[derive(Debug, Args)]
struct RunArgs {
    /// The YAML configuration (mounted from a ConfigMap).
    #[arg(long, env = "CONTROLLER_CONFIG")]
    config: PathBuf,

    /// The safety-service (e.g. `http://safety-service:50051`); without it, one is started in
    /// this process on a loopback ephemeral port.
    #[arg(long, env = "SAFETY_ENDPOINT")]
    safety_endpoint: Option<String>,

    /// The rebalancer-service (e.g. `http://rebalancer-service:50052`). Required.
    #[arg(long, env = "REBALANCER_ENDPOINT")]
    rebalancer_endpoint: Option<String>,

    /// Address the Prometheus metrics are served on (GET /metrics).
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9103")]
    metrics_listen: SocketAddr,

    /// The namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,

    /// `holderIdentity` in the Lease; default: POD_NAME, else the hostname and pid.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// The leader Lease's duration; the leader renews every third of it, followers look every
    /// sixth.
    #[arg(long, env = "LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,

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

    /// The CA (PEM) the rebalancer-service's certificate must chain to, for an https://
    /// --rebalancer-endpoint (default: the system's roots).
    #[arg(long, env = "REBALANCER_TLS_CA")]
    rebalancer_tls_ca: Option<PathBuf>,

    /// The client certificate (PEM) presented to the rebalancer-service; needs
    /// --rebalancer-tls-key.
    #[arg(long, env = "REBALANCER_TLS_CERT")]
    rebalancer_tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --rebalancer-tls-cert.
    #[arg(long, env = "REBALANCER_TLS_KEY")]
    rebalancer_tls_key: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if duration < Duration::from_secs(1) {
        return Err("must be at least 1s".to_owned());
    }
    Ok(duration)
}

/// Logs on stderr, filtered by `RUST_LOG` (default `default_level`), as JSON lines when
/// `LOG_FORMAT=json`; spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (this
/// needs the runtime: call it inside). Keep the guard until the end, then shut it down while
/// the runtime still runs.
fn init_tracing(default_level: &'static str) -> Result<telemetry::logs::Guard, ExitCode> {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let options = telemetry::logs::Options {
        default_level,
        // JSON lines keep the event's fields under "fields".
        flatten_json_fields: false,
        ansi: Some(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        ..telemetry::logs::Options::new(
            "controller",
            if json {
                telemetry::logs::LogFormat::Json
            } else {
                telemetry::logs::LogFormat::Text
            },
        )
    };
    telemetry::logs::init(&options).map_err(|error| {
        eprintln!("controller: {error}");
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan(args) => plan(args),
        Command::Run(args) => run(&args),
    }
}

fn plan(args: PlanArgs) -> ExitCode {
    // The offline report is the output: only warnings are logged.
    with_runtime("controller plan", Some(2), "warn", |runtime| {
        plan_with(runtime, args)
    })
}

/// Runs a command on a tokio runtime with logs and traces set up, then exports the spans still
/// queued (the runtime drives the exporter's connection).
fn with_runtime(
    command: &str,
    worker_threads: Option<usize>,
    default_log_level: &'static str,
    body: impl FnOnce(&tokio::runtime::Runtime) -> ExitCode,
) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{command}: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let telemetry = {
        let _runtime = runtime.enter();
        match init_tracing(default_log_level) {
            Ok(guard) => guard,
            Err(code) => return code,
        }
    };
    let code = body(&runtime);
    telemetry.shutdown();
    code
}

fn plan_with(runtime: &tokio::runtime::Runtime, args: PlanArgs) -> ExitCode {
    let request = PlanRequest {
        cluster_file: args.cluster_file,
        config: args.config,
        safety_endpoint: args.safety_endpoint,
        safety_tls: ClientTlsFiles {
            ca: args.safety_tls_ca,
            cert: args.safety_tls_cert,
            key: args.safety_tls_key,
            flag: "--safety-tls",
        },
    };
    match runtime.block_on(offline::plan(&request)) {
        Ok(report) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(report.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                // `controller plan … | head` is fine.
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("controller plan: writing the report: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Err(error) => {
            eprintln!("controller plan: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn run(args: &RunArgs) -> ExitCode {
    // The online loop's decisions are its log lines.
    with_runtime("controller run", None, "info", |runtime| {
        run_with(runtime, args)
    })
}

fn run_with(runtime: &tokio::runtime::Runtime, args: &RunArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("controller run: {error}");
            return ExitCode::from(2);
        }
    };
    let Some(rebalancer_endpoint) = args.rebalancer_endpoint.clone() else {
        eprintln!(
            "controller run: --rebalancer-endpoint (REBALANCER_ENDPOINT) is required: removals and replacements go through the rebalancer-service"
        );
        return ExitCode::from(2);
    };
    match runtime.block_on(run_online(args, config, rebalancer_endpoint)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("controller run: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run_online(
    args: &RunArgs,
    config: Config,
    rebalancer_endpoint: String,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let kube_config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let client = kube::Client::try_from(kube_config).context("building the Kubernetes client")?;
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics listener on {}", args.metrics_listen))?;
    let (safety_endpoint, in_process) = match &args.safety_endpoint {
        Some(endpoint) => (endpoint.clone(), None),
        None => {
            let (endpoint, server) = offline::InProcessSafety::start()
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            (endpoint, Some(server))
        }
    };
    let identity = args
        .identity
        .clone()
        .filter(|identity| !identity.trim().is_empty())
        .unwrap_or_else(leader::default_identity);
    let options = RunOptions {
        config,
        safety_endpoint,
        rebalancer_endpoint,
        safety_tls: ClientTlsFiles {
            ca: args.safety_tls_ca.clone(),
            cert: args.safety_tls_cert.clone(),
            key: args.safety_tls_key.clone(),
            flag: "--safety-tls",
        },
        rebalancer_tls: ClientTlsFiles {
            ca: args.rebalancer_tls_ca.clone(),
            cert: args.rebalancer_tls_cert.clone(),
            key: args.rebalancer_tls_key.clone(),
            flag: "--rebalancer-tls",
        },
        metrics_listener,
        leader: LeaderConfig::new(&args.namespace, &identity)
            .with_lease_duration(args.lease_duration),
    };
    let result = online::run(client, options, shutdown_signal()).await;
    if let Some(server) = in_process {
        server.stop().await;
    }
    result
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
