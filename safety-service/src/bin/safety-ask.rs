//! `safety-ask`: a small gRPC client for the safety-service. It reads a
//! `kubectl get nodes,pods,pdb,namespaces -A -o json` dump, asks `CanRemoveNode` about each node
//! (or the ones named), and prints one line per node, then why each blocked node is blocked.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use vpsie_proto::safety::v1::{self as pb, safety_service_client::SafetyServiceClient};

#[derive(Debug, Parser)]
#[command(name = "safety-ask", version)]
struct Args {
    /// The safety-service to ask.
    #[arg(
        long,
        env = "SAFETY_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,

    /// A `kubectl get nodes,pods,pdb,namespaces -A -o json` dump.
    #[arg(long)]
    cluster_file: PathBuf,

    /// Only these nodes (repeatable); default: every node of the dump.
    #[arg(long = "node")]
    nodes: Vec<String>,

    /// Ask `CanRemoveNodes` with the nodes in order instead (which of them can go together).
    #[arg(long)]
    together: bool,

    /// Print every node's rejection for each homeless pod.
    #[arg(long)]
    explain: bool,

    /// Keep retrying the connection for this many seconds (the service may still be starting).
    #[arg(long, default_value_t = 0)]
    wait_seconds: u64,
}

const MAX_MESSAGE: usize = 512 * 1024 * 1024;

async fn connect(args: &Args) -> anyhow::Result<SafetyServiceClient<tonic::transport::Channel>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(args.wait_seconds);
    loop {
        match SafetyServiceClient::connect(args.endpoint.clone()).await {
            Ok(client) => {
                return Ok(client
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE));
            }
            Err(error) if std::time::Instant::now() < deadline => {
                tracing_free_wait(&error).await;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("connecting to {}", args.endpoint));
            }
        }
    }
}

async fn tracing_free_wait(_error: &tonic::transport::Error) {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn reason_name(reason: i32) -> &'static str {
    match pb::RemovalReason::try_from(reason) {
        Ok(pb::RemovalReason::Removable) => "removable",
        Ok(pb::RemovalReason::ScaleDownDisabled) => "protected",
        Ok(pb::RemovalReason::BlockedByPod) => "blocked",
        Ok(pb::RemovalReason::NoPlaceToMovePods) => "no-room",
        _ => "unknown",
    }
}

fn print_answers(answers: &[pb::CanRemoveNodeResponse], explain: bool) {
    let width = answers
        .iter()
        .map(|a| a.node_name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<9}  {:>5}  MESSAGE",
        "NODE", "DECISION", "MOVES"
    );
    for answer in answers {
        println!(
            "{:<width$}  {:<9}  {:>5}  {}",
            answer.node_name,
            reason_name(answer.reason),
            answer.placements.len(),
            answer.message
        );
    }
    for answer in answers.iter().filter(|a| !a.blocking_pods.is_empty()) {
        println!("\n{}:", answer.node_name);
        for pod in &answer.blocking_pods {
            let reason = pb::BlockingReason::try_from(pod.reason)
                .map(|r| {
                    r.as_str_name()
                        .trim_start_matches("BLOCKING_REASON_")
                        .to_string()
                })
                .unwrap_or_default();
            println!(
                "  {}/{} [{reason}] {}",
                pod.namespace, pod.name, pod.message
            );
            for summary in &pod.rejection_summary {
                println!(
                    "      {} node(s): {} ({})",
                    summary.node_count, summary.reason, summary.plugin
                );
            }
            if explain {
                for rejection in &pod.rejections {
                    println!(
                        "      {:<width$}  {}: {}",
                        rejection.node_name, rejection.plugin, rejection.reason
                    );
                }
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bytes = std::fs::read(&args.cluster_file)
        .with_context(|| format!("reading {}", args.cluster_file.display()))?;
    let snapshot = vpsie_proto::json::snapshot_from_kubectl_list(&bytes)
        .with_context(|| format!("parsing {}", args.cluster_file.display()))?;
    let nodes: Vec<String> = if args.nodes.is_empty() {
        let mut names: Vec<String> = snapshot
            .nodes
            .iter()
            .filter_map(|n| n.metadata.as_ref().map(|m| m.name.clone()))
            .collect();
        names.sort();
        names
    } else {
        args.nodes.clone()
    };
    if nodes.is_empty() {
        bail!("{} has no nodes", args.cluster_file.display());
    }
    let options = pb::RemovalOptions {
        explain: args.explain,
        ..Default::default()
    };
    let mut client = connect(&args).await?;
    let answers = if args.together {
        let response = client
            .can_remove_nodes(pb::CanRemoveNodesRequest {
                snapshot: Some(snapshot),
                node_names: nodes,
                options: Some(options),
                max_nodes: 0,
            })
            .await
            .context("CanRemoveNodes")?
            .into_inner();
        println!(
            "removable together: {}\n",
            response.removable_nodes.join(", ")
        );
        response.results
    } else {
        let mut answers = Vec::with_capacity(nodes.len());
        for node in nodes {
            let answer = client
                .can_remove_node(pb::CanRemoveNodeRequest {
                    snapshot: Some(snapshot.clone()),
                    node_name: node.clone(),
                    options: Some(options),
                })
                .await
                .with_context(|| format!("CanRemoveNode {node}"))?
                .into_inner();
            answers.push(answer);
        }
        answers
    };
    print_answers(&answers, args.explain);
    Ok(())
}
