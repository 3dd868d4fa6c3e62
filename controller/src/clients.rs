//! The online loop's I/O, behind three small traits so that the loop is tested without sockets:
//! [`Safety`] (the safety-service), [`Rebalancer`] (the rebalancer-service) and [`NodeWriter`]
//! (the `scale-down-status` annotation and Events on Nodes). The real adapters are thin: tonic
//! clients over lazily connected channels (TLS for `https://` endpoints), and kube-rs. Each gRPC
//! call is a client span (`<service>/<method>`, a child of the scan's span) whose W3C trace
//! context goes to the service in the request metadata.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;
use telemetry::propagation::{TracedChannel, traced, traced_call};
use telemetry::tls::ClientTlsFiles;
use tonic::Status;
use tonic::transport::Channel;
use vpsie_proto::rebalancer::v1::{self as rb, rebalancer_service_client::RebalancerServiceClient};
use vpsie_proto::safety::v1 as pb;

use crate::planner::SCALE_DOWN_STATUS_ANNOTATION;

/// Largest message exchanged with the services (snapshots of large clusters are big).
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;
/// How long one safety-service call may take.
pub const SAFETY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one unary rebalancer call may take.
pub const REBALANCER_TIMEOUT: Duration = Duration::from_secs(30);
/// The note of an Event is at most 1 KiB.
const EVENT_NOTE_MAX: usize = 1024;

/// A stream of operation states, as `WatchOperation` returns them.
pub type OperationStream = Pin<Box<dyn Stream<Item = Result<rb::Operation, Status>> + Send>>;

/// A safety-service request whose snapshot (field 1 of both `CanRemoveNodeRequest` and
/// `CanRemoveNodesRequest`) is already encoded and shared, not copied: a large cluster's
/// snapshot is tens of megabytes, and one scan sends it once per drift candidate and once more
/// for the scale-down candidates. Encodes exactly as `M` with its `snapshot` set (an embedded
/// message and its bytes are the same on the wire); `rest.snapshot` stays `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WithSnapshot<M> {
    /// The encoded `ClusterSnapshot` ([`crate::scan_snapshot::ScanSnapshot::encoded`]).
    pub snapshot: prost::bytes::Bytes,
    pub rest: M,
}

impl<M: prost::Message> prost::Message for WithSnapshot<M> {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        prost::encoding::bytes::encode(1, &self.snapshot, buf);
        self.rest.encode_raw(buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        if tag == 1 {
            prost::encoding::bytes::merge(wire_type, &mut self.snapshot, buf, ctx)
        } else {
            self.rest.merge_field(tag, wire_type, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        prost::encoding::bytes::encoded_len(1, &self.snapshot) + self.rest.encoded_len()
    }

    fn clear(&mut self) {
        self.snapshot = prost::bytes::Bytes::new();
        self.rest.clear();
    }
}

/// The safety-service.
pub trait Safety: Send + Sync {
    fn can_remove_nodes(
        &self,
        request: WithSnapshot<pb::CanRemoveNodesRequest>,
    ) -> impl Future<Output = Result<pb::CanRemoveNodesResponse, Status>> + Send;

    fn can_remove_node(
        &self,
        request: WithSnapshot<pb::CanRemoveNodeRequest>,
    ) -> impl Future<Output = Result<pb::CanRemoveNodeResponse, Status>> + Send;
}

/// The rebalancer-service.
pub trait Rebalancer: Clone + Send + Sync + 'static {
    fn remove_nodes(
        &self,
        request: rb::RemoveNodesRequest,
    ) -> impl Future<Output = Result<rb::Operation, Status>> + Send;

    fn execute_plan(
        &self,
        request: rb::ExecutePlanRequest,
    ) -> impl Future<Output = Result<rb::Operation, Status>> + Send;

    fn list_operations(&self) -> impl Future<Output = Result<Vec<rb::Operation>, Status>> + Send;

    /// The current state, then every change, until a terminal state.
    fn watch_operation(
        &self,
        id: String,
    ) -> impl Future<Output = Result<OperationStream, Status>> + Send;
}

/// A Node an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    pub name: String,
    /// Empty when unknown.
    pub uid: String,
}

/// An Event about a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub warning: bool,
    /// CamelCase, e.g. `ScaleDownBlocked`.
    pub reason: &'static str,
    /// CamelCase, e.g. `ScaleDown`.
    pub action: &'static str,
    pub note: String,
}

/// Writes about Nodes: the status annotation and Events.
pub trait NodeWriter: Clone + Send + Sync + 'static {
    /// Sets (`Some`) or removes (`None`) the `scale-down-status` annotation with a merge patch.
    fn set_status(
        &self,
        node: &str,
        status: Option<&str>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    fn publish(
        &self,
        node: &NodeRef,
        event: &NodeEvent,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A channel that connects on first use and reconnects as needed, so that a service that is
/// not up yet only fails the calls made meanwhile. `https://` endpoints use TLS with `tls`
/// (CA, optional client certificate); TLS files with an `http://` endpoint are an error.
pub fn lazy_channel(endpoint: &str, tls: &ClientTlsFiles) -> anyhow::Result<Channel> {
    Ok(telemetry::tls::channel(endpoint, tls, |endpoint| {
        endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Some(Duration::from_secs(30)))
    })?)
}

const SAFETY: &str = "vpsie.safety.v1.SafetyService";
const REBALANCER: &str = "vpsie.rebalancer.v1.RebalancerService";

/// The safety-service over gRPC (tonic's generic client, so that the snapshot is shared).
#[derive(Debug, Clone)]
pub struct GrpcSafety {
    channel: TracedChannel,
}

impl GrpcSafety {
    pub fn new(channel: Channel) -> Self {
        GrpcSafety {
            channel: traced(channel),
        }
    }

    async fn unary<Req, Resp>(&self, method: &'static str, request: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        grpc.ready()
            .await
            .map_err(|error| Status::unavailable(format!("safety-service not ready: {error}")))?;
        let path = http::uri::PathAndQuery::from_static(method);
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        Ok(grpc
            .unary(with_timeout(request, SAFETY_TIMEOUT), path, codec)
            .await?
            .into_inner())
    }
}

fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

impl Safety for GrpcSafety {
    async fn can_remove_nodes(
        &self,
        request: WithSnapshot<pb::CanRemoveNodesRequest>,
    ) -> Result<pb::CanRemoveNodesResponse, Status> {
        traced_call(
            SAFETY,
            "CanRemoveNodes",
            self.unary("/vpsie.safety.v1.SafetyService/CanRemoveNodes", request),
        )
        .await
    }

    async fn can_remove_node(
        &self,
        request: WithSnapshot<pb::CanRemoveNodeRequest>,
    ) -> Result<pb::CanRemoveNodeResponse, Status> {
        traced_call(
            SAFETY,
            "CanRemoveNode",
            self.unary("/vpsie.safety.v1.SafetyService/CanRemoveNode", request),
        )
        .await
    }
}

/// The rebalancer-service over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcRebalancer {
    client: RebalancerServiceClient<TracedChannel>,
}

impl GrpcRebalancer {
    pub fn new(channel: Channel) -> Self {
        GrpcRebalancer {
            client: RebalancerServiceClient::new(traced(channel))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }
}

impl Rebalancer for GrpcRebalancer {
    async fn remove_nodes(&self, request: rb::RemoveNodesRequest) -> Result<rb::Operation, Status> {
        let mut client = self.client.clone();
        let call = client.remove_nodes(with_timeout(request, REBALANCER_TIMEOUT));
        Ok(traced_call(REBALANCER, "RemoveNodes", call)
            .await?
            .into_inner())
    }

    async fn execute_plan(&self, request: rb::ExecutePlanRequest) -> Result<rb::Operation, Status> {
        let mut client = self.client.clone();
        let call = client.execute_plan(with_timeout(request, REBALANCER_TIMEOUT));
        Ok(traced_call(REBALANCER, "ExecutePlan", call)
            .await?
            .into_inner())
    }

    async fn list_operations(&self) -> Result<Vec<rb::Operation>, Status> {
        let mut client = self.client.clone();
        let call = client.list_operations(with_timeout(
            rb::ListOperationsRequest {},
            REBALANCER_TIMEOUT,
        ));
        Ok(traced_call(REBALANCER, "ListOperations", call)
            .await?
            .into_inner()
            .operations)
    }

    async fn watch_operation(&self, id: String) -> Result<OperationStream, Status> {
        let mut client = self.client.clone();
        let stream = client
            .watch_operation(rb::WatchOperationRequest { id })
            .await?
            .into_inner();
        Ok(Box::pin(stream))
    }
}

/// Node writes through the Kubernetes API: a merge patch of the annotation, and Events
/// (events.k8s.io/v1, namespace `default`) through kube-runtime's recorder.
#[derive(Clone)]
pub struct KubeNodeWriter {
    client: kube::Client,
    reporter: Reporter,
}

impl KubeNodeWriter {
    /// `instance` names this replica in the Events (`reportingInstance`).
    pub fn new(client: kube::Client, instance: &str) -> Self {
        KubeNodeWriter {
            client,
            reporter: Reporter {
                controller: crate::leader::LEASE_NAME.to_owned(),
                instance: Some(instance.to_owned()),
            },
        }
    }
}

/// The ObjectReference of a Node, as `kubectl describe node` matches it.
pub fn node_reference(node: &NodeRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Node".to_owned()),
        name: Some(node.name.clone()),
        uid: (!node.uid.is_empty()).then(|| node.uid.clone()),
        ..ObjectReference::default()
    }
}

/// At most `max` bytes, cut at a character boundary, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl NodeWriter for KubeNodeWriter {
    async fn set_status(&self, node: &str, status: Option<&str>) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch =
            json!({ "metadata": { "annotations": { SCALE_DOWN_STATUS_ANNOTATION: status } } });
        nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|error| anyhow::anyhow!("patching node {node}: {error}"))?;
        Ok(())
    }

    async fn publish(&self, node: &NodeRef, event: &NodeEvent) -> anyhow::Result<()> {
        // A recorder per event: the recorder folds events with the same reason into a series
        // that keeps the first note, and every status change has a note of its own.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        recorder
            .publish(
                &Event {
                    type_: if event.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: event.reason.to_owned(),
                    note: Some(truncate(&event.note, EVENT_NOTE_MAX)),
                    action: event.action.to_owned(),
                    secondary: None,
                },
                &node_reference(node),
            )
            .await
            .map_err(|error| {
                anyhow::anyhow!("event {} on node {}: {error}", event.reason, node.name)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_snapshot_encodes_as_the_plain_request() {
        use prost::Message as _;
        let snapshot = pb::ClusterSnapshot {
            nodes: vec![pb::Node {
                metadata: Some(pb::ObjectMeta {
                    name: "n1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let rest = pb::CanRemoveNodesRequest {
            node_names: vec!["n1".into()],
            options: Some(pb::RemovalOptions::default()),
            max_nodes: 1,
            snapshot: None,
        };
        let plain = pb::CanRemoveNodesRequest {
            snapshot: Some(snapshot.clone()),
            ..rest.clone()
        };
        let shared = WithSnapshot {
            snapshot: snapshot.encode_to_vec().into(),
            rest,
        };
        assert_eq!(shared.encode_to_vec(), plain.encode_to_vec());
        assert_eq!(shared.encoded_len(), plain.encoded_len());
        let decoded =
            WithSnapshot::<pb::CanRemoveNodesRequest>::decode(&*plain.encode_to_vec()).unwrap();
        assert_eq!(decoded, shared);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("short", 10), "short");
        let text = "é".repeat(600);
        let cut = truncate(&text, 1024);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn node_references_name_the_node() {
        let reference = node_reference(&NodeRef {
            name: "n1".into(),
            uid: String::new(),
        });
        assert_eq!(reference.kind.as_deref(), Some("Node"));
        assert_eq!(reference.api_version.as_deref(), Some("v1"));
        assert_eq!(reference.uid, None);
        assert_eq!(reference.namespace, None);
    }
}
