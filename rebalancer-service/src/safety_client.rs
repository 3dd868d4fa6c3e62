//! The safety re-check: a fresh snapshot from the API server, converted with the `proto` crate,
//! sent to the safety-service's `CanRemoveNode`. The re-check is a `safety.recheck` span (a
//! child of the operation's span) and the call a client span whose W3C trace context goes to the
//! safety-service in the request metadata.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use telemetry::propagation::{TraceInterceptor, traced_call};
use telemetry::tls::ClientTlsFiles;
use tonic::transport::Channel;
use tracing::Instrument as _;
use vpsie_proto::safety::v1::{self as pb, safety_service_client::SafetyServiceClient};

use crate::executor::Safety;

const MAX_MESSAGE: usize = 512 * 1024 * 1024;
/// How long one `CanRemoveNode` call may take (as the controller's calls to the safety-service).
pub const SAFETY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting to the safety-service (TCP, and TLS for `https://`) may take.
pub const SAFETY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily connecting channel to the safety-service at `endpoint` (TLS with `tls` for
/// `https://`), whose connections time out after [`SAFETY_CONNECT_TIMEOUT`].
pub fn safety_channel(
    endpoint: &str,
    tls: &ClientTlsFiles,
) -> Result<Channel, telemetry::tls::ChannelError> {
    telemetry::tls::channel(endpoint, tls, |endpoint| {
        endpoint
            .connect_timeout(SAFETY_CONNECT_TIMEOUT)
            .tcp_keepalive(Some(Duration::from_secs(30)))
    })
}

#[derive(Clone)]
pub struct SafetyCheck {
    kube: kube::Client,
    channel: Channel,
}

impl SafetyCheck {
    pub fn new(kube: kube::Client, channel: Channel) -> Self {
        SafetyCheck { kube, channel }
    }

    async fn snapshot(&self) -> Result<pb::ClusterSnapshot, String> {
        let all = ListParams::default();
        let list_error = |what: &str, e: kube::Error| format!("listing {what}: {e}");
        let nodes = Api::<Node>::all(self.kube.clone())
            .list(&all)
            .await
            .map_err(|e| list_error("nodes", e))?;
        let pods = Api::<Pod>::all(self.kube.clone())
            .list(&all)
            .await
            .map_err(|e| list_error("pods", e))?;
        let pdbs = Api::<PodDisruptionBudget>::all(self.kube.clone())
            .list(&all)
            .await
            .map_err(|e| list_error("poddisruptionbudgets", e))?;
        let namespaces = Api::<Namespace>::all(self.kube.clone())
            .list(&all)
            .await
            .map_err(|e| list_error("namespaces", e))?;
        Ok(vpsie_proto::convert::snapshot_from_objects(
            &nodes.items,
            &pods.items,
            &pdbs.items,
            &namespaces.items,
        ))
    }
}

impl Safety for SafetyCheck {
    async fn can_remove(&self, node: &str) -> Result<Result<(), String>, String> {
        let span = tracing::info_span!("safety.recheck", node);
        self.recheck(node).instrument(span).await
    }
}

impl SafetyCheck {
    async fn recheck(&self, node: &str) -> Result<Result<(), String>, String> {
        let snapshot = self.snapshot().await?;
        let mut client =
            SafetyServiceClient::with_interceptor(self.channel.clone(), TraceInterceptor)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
        let mut request = tonic::Request::new(pb::CanRemoveNodeRequest {
            snapshot: Some(snapshot),
            node_name: node.to_string(),
            // The question here is whether every pod finds a home. Budgets are honoured by the
            // drain itself (evictions refused with 429 are retried until the drain timeout),
            // so a budget that is momentarily spent must not veto the replacement.
            options: Some(pb::RemovalOptions {
                ignore_pod_disruption_budgets: true,
                ..pb::RemovalOptions::default()
            }),
        });
        // A safety-service that never answers fails the re-check (DEADLINE_EXCEEDED) instead of
        // holding the operation forever.
        request.set_timeout(SAFETY_TIMEOUT);
        let answer = traced_call(
            "vpsie.safety.v1.SafetyService",
            "CanRemoveNode",
            client.can_remove_node(request),
        )
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?
        .into_inner();
        Ok(if answer.removable {
            Ok(())
        } else {
            Err(answer.message)
        })
    }
}
