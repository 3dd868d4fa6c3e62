//! What one scan reads: the cluster snapshot encoded as the safety-service receives it, the
//! nodes decoded, and what each pod uses (see [`crate::cache`], "Snapshot").

use std::sync::Arc;

use prost::Message;
use prost::bytes::Bytes;
use vpsie_proto::safety::v1 as pb;

use crate::planner::PodUsage;

/// The `ClusterSnapshot` field numbers (`safety.proto`).
pub const NODES: u32 = 1;
pub const PODS: u32 = 2;
pub const PDBS: u32 = 3;
pub const NAMESPACES: u32 = 4;

/// One scan's snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanSnapshot {
    encoded: Bytes,
    nodes: Vec<pb::Node>,
    pods: Vec<Arc<PodUsage>>,
}

impl ScanSnapshot {
    /// `encoded` is a `ClusterSnapshot` whose nodes are `nodes` and whose pods, in order, use
    /// `pods`.
    pub(crate) fn new(encoded: Bytes, nodes: Vec<pb::Node>, pods: Vec<Arc<PodUsage>>) -> Self {
        ScanSnapshot {
            encoded,
            nodes,
            pods,
        }
    }

    /// A snapshot message as a scan reads it (tests, and callers without a cache).
    pub fn from_message(snapshot: &pb::ClusterSnapshot) -> Self {
        ScanSnapshot {
            encoded: snapshot.encode_to_vec().into(),
            nodes: snapshot.nodes.clone(),
            pods: snapshot
                .pods
                .iter()
                .map(|pod| Arc::new(PodUsage::of(pod)))
                .collect(),
        }
    }

    /// The `ClusterSnapshot` message, protobuf-encoded. Cloning is cheap (shared bytes).
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// The snapshot's nodes, in snapshot order.
    pub fn nodes(&self) -> &[pb::Node] {
        &self.nodes
    }

    /// What each pod uses, in snapshot order.
    pub fn pod_usage(&self) -> impl Iterator<Item = &PodUsage> {
        self.pods.iter().map(|usage| &**usage)
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The whole snapshot message, decoded (tests; the scan never needs it).
    pub fn decode(&self) -> Result<pb::ClusterSnapshot, prost::DecodeError> {
        pb::ClusterSnapshot::decode(self.encoded.clone())
    }
}

/// Writes an encoded `ClusterSnapshot` from already encoded messages.
pub struct SnapshotEncoder {
    buffer: Vec<u8>,
}

impl SnapshotEncoder {
    pub fn with_capacity(capacity: usize) -> Self {
        SnapshotEncoder {
            buffer: Vec::with_capacity(capacity),
        }
    }

    /// The encoded size of one element of a repeated message field: key, length, message.
    pub fn field_len(field: u32, message_len: usize) -> usize {
        prost::encoding::key_len(field)
            + prost::encoding::encoded_len_varint(message_len as u64)
            + message_len
    }

    /// Appends each encoded message as one element of the repeated message field `field`.
    pub fn append<'m>(&mut self, field: u32, messages: impl IntoIterator<Item = &'m [u8]>) {
        for message in messages {
            prost::encoding::encode_key(
                field,
                prost::encoding::WireType::LengthDelimited,
                &mut self.buffer,
            );
            prost::encoding::encode_varint(message.len() as u64, &mut self.buffer);
            self.buffer.extend_from_slice(message);
        }
    }

    pub fn finish(self) -> Bytes {
        self.buffer.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> pb::ClusterSnapshot {
        let meta = |name: &str| {
            Some(pb::ObjectMeta {
                name: name.into(),
                ..Default::default()
            })
        };
        pb::ClusterSnapshot {
            nodes: vec![
                pb::Node {
                    metadata: meta("a"),
                    ..Default::default()
                },
                pb::Node {
                    metadata: meta("b"),
                    ..Default::default()
                },
            ],
            pods: vec![pb::Pod {
                metadata: meta("p"),
                spec: Some(pb::PodSpec {
                    node_name: "a".into(),
                    ..Default::default()
                }),
                status: None,
            }],
            pod_disruption_budgets: vec![pb::PodDisruptionBudget {
                metadata: meta("budget"),
                ..Default::default()
            }],
            namespaces: vec![pb::Namespace { metadata: None }],
        }
    }

    #[test]
    fn concatenated_messages_encode_as_the_message() {
        let snapshot = snapshot();
        let mut encoder = SnapshotEncoder::with_capacity(0);
        let nodes: Vec<Vec<u8>> = snapshot.nodes.iter().map(|n| n.encode_to_vec()).collect();
        let pods: Vec<Vec<u8>> = snapshot.pods.iter().map(|p| p.encode_to_vec()).collect();
        let pdbs: Vec<Vec<u8>> = snapshot
            .pod_disruption_budgets
            .iter()
            .map(|p| p.encode_to_vec())
            .collect();
        // An empty message is a zero-length element, which must still be written.
        let namespaces = [snapshot.namespaces[0].encode_to_vec()];
        assert!(namespaces[0].is_empty());
        encoder.append(NODES, nodes.iter().map(Vec::as_slice));
        encoder.append(PODS, pods.iter().map(Vec::as_slice));
        encoder.append(PDBS, pdbs.iter().map(Vec::as_slice));
        encoder.append(NAMESPACES, namespaces.iter().map(Vec::as_slice));
        let expected = snapshot.encode_to_vec();
        let lengths: usize = [(NODES, &nodes), (PODS, &pods), (PDBS, &pdbs)]
            .iter()
            .flat_map(|(field, messages)| {
                messages
                    .iter()
                    .map(|m| SnapshotEncoder::field_len(*field, m.len()))
            })
            .sum::<usize>()
            + SnapshotEncoder::field_len(NAMESPACES, 0);
        assert_eq!(lengths, expected.len());
        assert_eq!(&encoder.finish()[..], &expected[..]);
    }

    #[test]
    fn from_message_keeps_the_nodes_and_reads_the_pods() {
        let snapshot = snapshot();
        let scan = ScanSnapshot::from_message(&snapshot);
        assert_eq!(scan.decode().expect("decodes"), snapshot);
        assert_eq!(scan.nodes(), &snapshot.nodes[..]);
        let usage: Vec<&PodUsage> = scan.pod_usage().collect();
        assert_eq!(usage.len(), 1);
        assert_eq!(&*usage[0].node_name, "a");
    }
}
