//! What can go wrong with a request, independent of the transport.

/// An engine failure; the gRPC adapter maps each variant to one status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Malformed input: `path` names the field, e.g.
    /// `snapshot.pods[12].spec.containers[0].resources.requests["cpu"]`.
    #[error("{path}: {message}")]
    InvalidArgument { path: String, message: String },
    /// The node asked about is not in the snapshot.
    #[error("node {0:?} not found in snapshot")]
    NodeNotFound(String),
    /// The caller's deadline passed before the simulation finished.
    #[error("deadline exceeded before the simulation finished")]
    DeadlineExceeded,
}

impl EngineError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::InvalidArgument {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::InvalidArgument { .. } => "invalid_argument",
            EngineError::NodeNotFound(_) => "node_not_found",
            EngineError::DeadlineExceeded => "deadline_exceeded",
        }
    }
}
