//! The tonic adapter: `RebalancerService` over the executor's driver. Every call has a server
//! span ([`server_span`]) carrying its status code.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use tonic::{Request, Response, Status};
use vpsie_proto::rebalancer::v1::{self as pb, rebalancer_service_server::RebalancerService};

use crate::executor::{Clock, Cloud, Cluster, Driver, OperationRecord, Safety, Store, SubmitError};
use crate::metrics::Metrics;

pub struct RebalancerServiceImpl<C, K, S, St> {
    driver: Arc<Driver<C, K, S, St>>,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl<C, K, S, St> RebalancerServiceImpl<C, K, S, St> {
    pub fn new(driver: Arc<Driver<C, K, S, St>>, clock: Clock, metrics: Arc<Metrics>) -> Self {
        RebalancerServiceImpl {
            driver,
            clock,
            metrics,
        }
    }

    /// Counts a finished call in the gRPC metrics and passes its result on.
    fn observed<T>(
        &self,
        method: &'static str,
        started: Instant,
        result: Result<T, Status>,
    ) -> Result<T, Status> {
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.record_call(method, code, started.elapsed());
        // The call's server span (see [`server_span`]).
        telemetry::propagation::record_status(&tracing::Span::current(), code);
        result
    }
}

/// The server span of a call (tonic's `trace_fn`): a child of the caller's span when the request
/// carries a W3C `traceparent`. The operation a call starts runs in a child of this span.
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    telemetry::propagation::server_span(
        request.uri().path(),
        request.headers(),
        <pb::rebalancer_service_server::RebalancerServiceServer<()> as tonic::server::NamedService>::NAME,
    )
}

fn submit_status(error: SubmitError) -> Status {
    match error {
        SubmitError::Invalid(e) => Status::invalid_argument(e.to_string()),
        SubmitError::NodeBusy { .. } => Status::failed_precondition(error.to_string()),
        SubmitError::Store(_) => Status::unavailable(error.to_string()),
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("no operation {id:?}"))
}

fn is_terminal(operation: &pb::Operation) -> bool {
    matches!(
        pb::OperationState::try_from(operation.state),
        Ok(pb::OperationState::Succeeded
            | pb::OperationState::Failed
            | pb::OperationState::Cancelled)
    )
}

type OperationStream = Pin<Box<dyn Stream<Item = Result<pb::Operation, Status>> + Send>>;

#[tonic::async_trait]
impl<C: Cloud, K: Cluster, S: Safety, St: Store> RebalancerService
    for RebalancerServiceImpl<C, K, S, St>
{
    async fn execute_plan(
        &self,
        request: Request<pb::ExecutePlanRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let started = Instant::now();
        let result = async move {
            let plan = request
                .into_inner()
                .plan
                .ok_or_else(|| Status::invalid_argument("plan: a plan is required"))?;
            let record = OperationRecord::from_plan(&plan, &(self.clock)())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            self.driver
                .submit(record)
                .await
                .map(Response::new)
                .map_err(submit_status)
        }
        .await;
        self.observed("ExecutePlan", started, result)
    }

    async fn remove_nodes(
        &self,
        request: Request<pb::RemoveNodesRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let started = Instant::now();
        let result = async move {
            let record = OperationRecord::from_removal(request.get_ref(), &(self.clock)())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            self.driver
                .submit(record)
                .await
                .map(Response::new)
                .map_err(submit_status)
        }
        .await;
        self.observed("RemoveNodes", started, result)
    }

    async fn get_operation(
        &self,
        request: Request<pb::GetOperationRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let started = Instant::now();
        let result = async move {
            let id = &request.get_ref().id;
            self.driver
                .get(id)
                .map(Response::new)
                .ok_or_else(|| not_found(id))
        }
        .await;
        self.observed("GetOperation", started, result)
    }

    async fn list_operations(
        &self,
        _request: Request<pb::ListOperationsRequest>,
    ) -> Result<Response<pb::ListOperationsResponse>, Status> {
        let started = Instant::now();
        let result = async move {
            Ok(Response::new(pb::ListOperationsResponse {
                operations: self.driver.list(),
            }))
        }
        .await;
        self.observed("ListOperations", started, result)
    }

    type WatchOperationStream = OperationStream;

    async fn watch_operation(
        &self,
        request: Request<pb::WatchOperationRequest>,
    ) -> Result<Response<Self::WatchOperationStream>, Status> {
        let started = Instant::now();
        let result = async move {
            let id = request.into_inner().id;
            let receiver = self.driver.watch(&id).ok_or_else(|| not_found(&id))?;
            // The current state first, then every change, ending after a terminal state.
            let stream = futures::stream::unfold(
                (receiver, true, false),
                |(mut receiver, first, done)| async move {
                    if done {
                        return None;
                    }
                    if !first && receiver.changed().await.is_err() {
                        return None;
                    }
                    let current = receiver.borrow_and_update().clone();
                    let terminal = is_terminal(&current);
                    Some((Ok(current), (receiver, false, terminal)))
                },
            );
            let stream: OperationStream = Box::pin(stream);
            Ok(Response::new(stream))
        }
        .await;
        self.observed("WatchOperation", started, result)
    }

    async fn cancel_operation(
        &self,
        request: Request<pb::CancelOperationRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let started = Instant::now();
        let result = async move {
            let id = &request.get_ref().id;
            self.driver
                .cancel(id)
                .await
                .map(Response::new)
                .ok_or_else(|| not_found(id))
        }
        .await;
        self.observed("CancelOperation", started, result)
    }
}
