//! The pure, I/O-free simulation engine: snapshot index → drainability rules → scheduling filters
//! → placement simulation → explanation.
//!
//! Entry points take the requests' wire view (`view::w`, decoded straight from the request
//! buffer without copying a string; [`view_of`] makes one from an owned message) and return
//! response messages, so the gRPC adapter stays a thin translation of [`EngineError`] into status
//! codes.

mod drain_rules;
mod error;
mod explain;
pub mod filters;
pub mod labels;
pub mod quantity;
pub mod simulate;
pub mod snapshot;
pub mod state;
pub mod view;

pub use error::EngineError;
pub use simulate::{PlanFailure, PlanStep, replay_plan};
pub use snapshot::Index;
use state::ClusterState;
pub use view::{view_of, w};

use std::time::Instant;

use vpsie_proto::safety::v1 as pb;

/// When the caller stops waiting. The simulation checks it between pods and gives up with
/// [`EngineError::DeadlineExceeded`] once it has passed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline at all.
    pub const NONE: Deadline = Deadline(None);

    pub fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    pub fn check(&self) -> Result<(), EngineError> {
        match self.0 {
            Some(at) if Instant::now() >= at => Err(EngineError::DeadlineExceeded),
            _ => Ok(()),
        }
    }
}

fn snapshot_of(snapshot: Option<&w::ClusterSnapshot>) -> Result<&w::ClusterSnapshot, EngineError> {
    snapshot.ok_or_else(|| EngineError::invalid("snapshot", "a cluster snapshot is required"))
}

/// `CanRemoveNode`: index the snapshot, then simulate.
pub fn can_remove_node(
    request: &w::CanRemoveNodeRequest,
    deadline: Deadline,
) -> Result<pb::CanRemoveNodeResponse, EngineError> {
    let node_name = view::text(&request.node_name, || "nodeName".to_owned())?;
    let index = Index::build(snapshot_of(request.snapshot.as_ref())?)?;
    deadline.check()?;
    let options = request.options.unwrap_or_default();
    can_remove_node_indexed(&index, node_name, &options, deadline)
}

/// `CanRemoveNode` on a prebuilt index.
pub fn can_remove_node_indexed(
    index: &Index<'_>,
    node_name: &str,
    options: &pb::RemovalOptions,
    deadline: Deadline,
) -> Result<pb::CanRemoveNodeResponse, EngineError> {
    if node_name.is_empty() {
        return Err(EngineError::invalid("nodeName", "a node name is required"));
    }
    let node = index
        .node_id(node_name)
        .ok_or_else(|| EngineError::NodeNotFound(node_name.to_string()))?;
    let mut state = ClusterState::new(index);
    simulate::drain(index, &mut state, node, options, deadline)
}

/// `CanRemoveNodes`: candidates taken greedily in order, each accepted one committed (its pods
/// stay where the plan put them, it stays a ghost, budgets stay spent) before the next is tried.
pub fn can_remove_nodes(
    request: &w::CanRemoveNodesRequest,
    deadline: Deadline,
) -> Result<pb::CanRemoveNodesResponse, EngineError> {
    let index = Index::build(snapshot_of(request.snapshot.as_ref())?)?;
    let options = request.options.unwrap_or_default();
    if request.max_nodes < 0 {
        return Err(EngineError::invalid(
            "maxNodes",
            format!("must not be negative, got {}", request.max_nodes),
        ));
    }
    let mut candidates = Vec::with_capacity(request.node_names.len());
    let names = view::texts(&request.node_names, &|| "nodeNames".to_owned())?;
    for (i, &name) in names.iter().enumerate() {
        let at = || format!("nodeNames[{i}]");
        if name.is_empty() {
            return Err(EngineError::invalid(at(), "node name must not be empty"));
        }
        let node = index
            .node_id(name)
            .ok_or_else(|| EngineError::NodeNotFound(name.to_owned()))?;
        if candidates.contains(&node) {
            return Err(EngineError::invalid(
                at(),
                format!("duplicate candidate {name:?}"),
            ));
        }
        candidates.push(node);
    }
    let mut state = ClusterState::new(&index);
    let mut response = pb::CanRemoveNodesResponse::default();
    for node in candidates {
        if request.max_nodes > 0 && response.removable_nodes.len() >= request.max_nodes as usize {
            break;
        }
        deadline.check()?;
        let result = simulate::drain(&index, &mut state, node, &options, deadline)?;
        if result.removable {
            response.removable_nodes.push(result.node_name.clone());
        }
        response.results.push(result);
    }
    Ok(response)
}

/// `FindSchedulableNode`.
pub fn find_schedulable_node(
    request: &w::FindSchedulableNodeRequest,
    deadline: Deadline,
) -> Result<pb::FindSchedulableNodeResponse, EngineError> {
    let snapshot = snapshot_of(request.snapshot.as_ref())?;
    let pod = request
        .pod
        .as_ref()
        .ok_or_else(|| EngineError::invalid("pod", "a pod is required"))?;
    let exclude = view::texts(&request.exclude_nodes, &|| "excludeNodes".to_owned())?;
    let index = Index::build_with_question(snapshot, Some(pod))?;
    deadline.check()?;
    let mut state = ClusterState::new(&index);
    simulate::find_homes(&index, &mut state, &exclude, request.explain)
}

#[cfg(test)]
mod tests;
