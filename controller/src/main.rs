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
use tracing_subscriber::EnvFilter;

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
    Run(RunArgs),
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
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if duration < Duration::from_secs(1) {
        return Err("must be at least 1s".to_owned());
    }
    Ok(duration)
}

/// Logs on stderr, filtered by `RUST_LOG` (default `default_level`), as JSON lines when
/// `LOG_FORMAT=json`.
fn init_tracing(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The offline report is the output; the online loop's decisions are its log lines.
    init_tracing(match cli.command {
        Command::Plan(_) => "warn",
        Command::Run(_) => "info",
    });
    match cli.command {
        Command::Plan(args) => plan(args),
        Command::Run(args) => run(&args),
    }
}

fn plan(args: PlanArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("controller plan: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let request = PlanRequest {
        cluster_file: args.cluster_file,
        config: args.config,
        safety_endpoint: args.safety_endpoint,
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("controller run: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
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
