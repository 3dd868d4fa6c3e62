//! One scale-down decision is one trace across the three services, end to end over real sockets
//! (the harness is in `stack/mod.rs`): the `controller`, `safety-service` and
//! `rebalancer-service` binaries, each with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an
//! in-process OTLP collector, against the Kubernetes and VPSie API fakes.
//!
//! The scan that hands an underutilised node to the rebalancer is the root span; under it the
//! controller's `CanRemoveNodes` and `RemoveNodes` calls, the safety-service's and the
//! rebalancer's server spans for them, the rebalancer's `operation` span, its `safety.recheck`
//! and `CanRemoveNode` call, and the safety-service's server span for that re-check.

mod stack;

use std::collections::BTreeSet;
use std::time::Duration;

use e2e_tests::otlp_collector::{CollectedSpan, OtlpCollector, SPAN_KIND_CLIENT, SPAN_KIND_SERVER};
use e2e_tests::vpsie_fake::MachineState;
use stack::{Fakes, GROUP, Stack, StackOptions, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// Group `general` (at least 2 nodes), scans every 500ms, a node unneeded for 1s is removed.
fn config() -> String {
    format!(
        "cluster: cluster-1\n\
         scanInterval: 500ms\n\
         scaleDown:\n  utilizationThreshold: 0.5\n  unneededTime: 1s\n  maxParallel: 1\n  drain:\n    timeout: 30s\n\
         nodeGroups:\n  - name: {GROUP}\n    minNodes: 2\n    maxNodes: 10\n"
    )
}

/// The single span of `trace` that `found` picks.
fn one<'s>(
    trace: &'s [CollectedSpan],
    what: &str,
    found: impl Fn(&CollectedSpan) -> bool,
) -> &'s CollectedSpan {
    let matching: Vec<&CollectedSpan> = trace.iter().filter(|s| found(s)).collect();
    assert_eq!(
        matching.len(),
        1,
        "{what}: {matching:#?}\ntrace: {trace:#?}"
    );
    matching[0]
}

fn child_of(span: &CollectedSpan, parent: &CollectedSpan) -> bool {
    span.parent_span_id == parent.span_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scale_down_decision_is_one_trace_across_the_three_services() {
    let collector = OtlpCollector::start().await;
    let fakes = Fakes::start().await;
    let n1 = fakes.seed_node(GROUP, "4", None);
    let n2 = fakes.seed_node(GROUP, "4", None);
    let n3 = fakes.seed_node(GROUP, "8", None);
    fakes.seed_pod("web-1", &n1, "3");
    fakes.seed_pod("web-2", &n2, "3");
    fakes.seed_pod("small", &n3, "100m");
    let options = StackOptions::new(config())
        .env_all("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
        .env_all("OTEL_BSP_SCHEDULE_DELAY", "100");
    let stack = Stack::start(fakes, options).await;

    eventually(WAIT, "n3's machine gone", || {
        (stack.machine_state(&n3) == MachineState::Gone).then_some(())
    })
    .await;

    // The trace of the scan that submitted the removal, once the operation's span has ended.
    let trace = collector
        .wait_for("the removal's trace", WAIT, |spans| {
            let removal = spans.iter().find(|s| {
                s.service_name == "rebalancer-service"
                    && s.kind == SPAN_KIND_SERVER
                    && s.name == "vpsie.rebalancer.v1.RebalancerService/RemoveNodes"
            })?;
            let trace: Vec<CollectedSpan> = spans
                .iter()
                .filter(|s| s.trace_id == removal.trace_id)
                .cloned()
                .collect();
            let has = |service: &str, name: &str| {
                trace
                    .iter()
                    .any(|s| s.service_name == service && s.name == name)
            };
            (has("controller", "scan")
                && has("rebalancer-service", "operation")
                && has(
                    "safety-service",
                    "vpsie.safety.v1.SafetyService/CanRemoveNode",
                ))
            .then_some(trace)
        })
        .await;

    let services: BTreeSet<&str> = trace.iter().map(|s| s.service_name.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["controller", "rebalancer-service", "safety-service"]),
        "{trace:#?}"
    );

    // The scan is the root.
    let scan = one(&trace, "the scan", |s| s.name == "scan");
    assert_eq!(scan.service_name, "controller");
    assert!(scan.parent_span_id.is_empty(), "{scan:#?}");

    // The controller asked the safety-service, under the scan.
    let ask = one(&trace, "the CanRemoveNodes call", |s| {
        s.service_name == "controller"
            && s.kind == SPAN_KIND_CLIENT
            && s.name == "vpsie.safety.v1.SafetyService/CanRemoveNodes"
    });
    assert!(child_of(ask, scan), "{trace:#?}");
    let answered = one(&trace, "the CanRemoveNodes server span", |s| {
        s.service_name == "safety-service"
            && s.name == "vpsie.safety.v1.SafetyService/CanRemoveNodes"
    });
    assert!(child_of(answered, ask), "{trace:#?}");

    // ... and handed the node to the rebalancer, under the scan.
    let submit = one(&trace, "the RemoveNodes call", |s| {
        s.service_name == "controller"
            && s.kind == SPAN_KIND_CLIENT
            && s.name == "vpsie.rebalancer.v1.RebalancerService/RemoveNodes"
    });
    assert!(child_of(submit, scan), "{trace:#?}");
    let received = one(&trace, "the RemoveNodes server span", |s| {
        s.service_name == "rebalancer-service"
            && s.kind == SPAN_KIND_SERVER
            && s.name == "vpsie.rebalancer.v1.RebalancerService/RemoveNodes"
    });
    assert!(child_of(received, submit), "{trace:#?}");

    // The rebalancer's operation continues the trace, re-check included.
    let operation = one(&trace, "the operation", |s| s.name == "operation");
    assert_eq!(operation.service_name, "rebalancer-service");
    assert!(child_of(operation, received), "{trace:#?}");
    let recheck = one(&trace, "the re-check", |s| s.name == "safety.recheck");
    assert_eq!(recheck.attribute("node"), Some(n3.as_str()));
    let mut ancestor = recheck.parent_span_id.clone();
    for _ in 0..10 {
        if ancestor == operation.span_id {
            break;
        }
        ancestor = trace
            .iter()
            .find(|s| s.span_id == ancestor)
            .map(|s| s.parent_span_id.clone())
            .unwrap_or_default();
    }
    assert_eq!(
        ancestor, operation.span_id,
        "the re-check is not under the operation: {trace:#?}"
    );
    let recheck_call = one(&trace, "the CanRemoveNode call", |s| {
        s.service_name == "rebalancer-service"
            && s.kind == SPAN_KIND_CLIENT
            && s.name == "vpsie.safety.v1.SafetyService/CanRemoveNode"
    });
    assert!(child_of(recheck_call, recheck), "{trace:#?}");
    let rechecked = one(&trace, "the CanRemoveNode server span", |s| {
        s.service_name == "safety-service"
            && s.name == "vpsie.safety.v1.SafetyService/CanRemoveNode"
    });
    assert!(child_of(rechecked, recheck_call), "{trace:#?}");
    assert_eq!(rechecked.attribute("rpc.grpc.status_code"), Some("0"));
}
