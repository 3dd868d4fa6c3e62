//! The pure, I/O-free simulation engine: snapshot index → drainability rules → scheduling filters
//! → placement simulation → explanation.
//!
//! Entry points take the decoded proto messages and return response messages, so the gRPC adapter
//! stays a thin translation of [`EngineError`] into status codes.

mod error;

pub use error::EngineError;

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

/// `CanRemoveNode`.
pub fn can_remove_node(
    request: &pb::CanRemoveNodeRequest,
    deadline: Deadline,
) -> Result<pb::CanRemoveNodeResponse, EngineError> {
    let _ = (request, deadline);
    Err(EngineError::invalid("snapshot", "engine not built yet"))
}

/// `CanRemoveNodes`: candidates taken greedily in order, each accepted one committed.
pub fn can_remove_nodes(
    request: &pb::CanRemoveNodesRequest,
    deadline: Deadline,
) -> Result<pb::CanRemoveNodesResponse, EngineError> {
    let _ = (request, deadline);
    Err(EngineError::invalid("snapshot", "engine not built yet"))
}

/// `FindSchedulableNode`.
pub fn find_schedulable_node(
    request: &pb::FindSchedulableNodeRequest,
    deadline: Deadline,
) -> Result<pb::FindSchedulableNodeResponse, EngineError> {
    let _ = (request, deadline);
    Err(EngineError::invalid("snapshot", "engine not built yet"))
}
