//! `controller`: the scale-down and drift-rebalancing controller (`shared/docs/controller.md`).
//! `controller plan` runs one scan offline over a `kubectl get -o json` dump; `controller run`
//! (the online loop) lands with issue #4.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use controller::config::Config;
use controller::offline::{self, PlanRequest};
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
    /// The online loop. NOT IMPLEMENTED YET: it lands with issue #4's reflectors; this command
    /// validates the configuration, then exits with status 2.
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

    /// The safety-service.
    #[arg(long, env = "SAFETY_ENDPOINT")]
    safety_endpoint: Option<String>,

    /// The rebalancer-service.
    #[arg(long, env = "REBALANCER_ENDPOINT")]
    rebalancer_endpoint: Option<String>,

    /// Address the Prometheus metrics are served on (GET /metrics).
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9103")]
    metrics_listen: SocketAddr,
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
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
    if let Err(error) = Config::load(&args.config) {
        eprintln!("controller run: {error}");
        return ExitCode::from(2);
    }
    tracing::debug!(
        safety_endpoint = ?args.safety_endpoint,
        rebalancer_endpoint = ?args.rebalancer_endpoint,
        metrics_listen = %args.metrics_listen,
        "controller run asked for"
    );
    eprintln!(
        "controller run: not implemented yet: the online loop lands with issue #4's reflectors"
    );
    ExitCode::from(2)
}
