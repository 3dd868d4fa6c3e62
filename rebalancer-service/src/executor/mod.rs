//! The executor: operations as plain, serializable records and a pure state machine per
//! candidate node. It performs no I/O: a driver asks it for the next step of a candidate, performs
//! that step through the adapters, and reports the outcome back. Every transition happens on the
//! record, which is persisted before the step it leads to, so a restarted process resumes from
//! exactly where the previous one stopped.

mod driver;
mod machine;
mod record;

pub use driver::{
    Clock, Cloud, Cluster, Driver, Machine, Safety, Store, SubmitError, rfc3339, system_clock,
};
pub use machine::{Step, StepOutcome, apply, begin, cancel, next_step};
pub use record::{
    CandidateRecord, DrainSpec, OperationKind, OperationRecord, OperationState, Phase, PlanError,
    PlanSpec, StepError, Strategy,
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod driver_tests;
