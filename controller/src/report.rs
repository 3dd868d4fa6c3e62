//! The offline report: a header, one aligned line per node (`NODE GROUP UTIL DECISION REASON`,
//! never wrapped or cut), then the requests the controller would submit.

use std::fmt::Write as _;

use vpsie_proto::rebalancer::v1 as rb;

use crate::planner::{Scan, percent};

/// Renders the report; `header` lines come first, as given.
pub fn render(header: &[String], scan: &Scan) -> String {
    let mut out = String::new();
    for line in header {
        out.push_str(line);
        out.push('\n');
    }
    if !header.is_empty() {
        out.push('\n');
    }

    let rows: Vec<[String; 5]> = scan
        .nodes
        .iter()
        .map(|node| {
            [
                node.name.clone(),
                node.group.clone().unwrap_or_else(|| "-".into()),
                node.utilization
                    .map_or_else(|| "-".into(), |u| percent(u.value())),
                node.decision.label().to_owned(),
                node.reason.clone(),
            ]
        })
        .collect();
    let titles = ["NODE", "GROUP", "UTIL", "DECISION", "REASON"];
    let mut widths = titles.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: [&str; 5]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    };
    line(&mut out, titles);
    for row in &rows {
        line(&mut out, [&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }

    out.push_str("\nPlans it would submit:\n");
    if scan.remove.is_none() && scan.rebalance.is_empty() {
        out.push_str("  none\n");
    }
    if let Some(request) = &scan.remove {
        let _ = writeln!(
            out,
            "  RemoveNodes {}: {}; {}; dryRun {}",
            request.request_id,
            request.node_names.join(", "),
            drain_text(request.drain.as_ref()),
            request.dry_run
        );
    }
    for request in &scan.rebalance {
        let Some(plan) = &request.plan else { continue };
        let strategy = match rb::Strategy::try_from(plan.strategy) {
            Ok(rb::Strategy::Surge) => "surge",
            Ok(rb::Strategy::Rolling) => "rolling",
            _ => "unspecified",
        };
        let candidates: Vec<String> = plan
            .candidates
            .iter()
            .map(|c| {
                format!(
                    "{} ({} -> {})",
                    c.node_name, c.current_offering, c.target_offering
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  ExecutePlan {}: group {}, strategy {strategy}, batch size {}: {}; {}; dryRun {}",
            plan.id,
            plan.node_group_name,
            plan.batch_size,
            candidates.join(", "),
            drain_text(plan.drain.as_ref()),
            plan.dry_run
        );
    }
    out
}

fn drain_text(drain: Option<&rb::DrainOptions>) -> String {
    let Some(drain) = drain else {
        return "default drain".into();
    };
    let grace = drain.pod_grace_period_seconds.map_or_else(
        || "each pod's own grace period".to_owned(),
        |s| format!("pod grace period {s}s"),
    );
    format!("drain timeout {}s, {grace}", drain.timeout_seconds)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::planner::{Decision, NodeReport, Skip, Timers, Utilization};

    #[test]
    fn columns_are_aligned_and_reasons_are_never_cut() {
        let long = "x".repeat(300);
        let scan = Scan {
            nodes: vec![
                NodeReport {
                    name: "a".into(),
                    group: Some("general".into()),
                    utilization: Some(Utilization {
                        cpu: 0.123,
                        memory: 0.05,
                    }),
                    decision: Decision::Eligible {
                        since: SystemTime::UNIX_EPOCH,
                    },
                    reason: long.clone(),
                },
                NodeReport {
                    name: "control-plane-1".into(),
                    group: None,
                    utilization: None,
                    decision: Decision::NotCandidate(Skip::NoGroupLabel),
                    reason: "no label".into(),
                },
            ],
            remove: Some(rb::RemoveNodesRequest {
                request_id: "remove-1".into(),
                node_names: vec!["a".into()],
                drain: Some(rb::DrainOptions {
                    timeout_seconds: 300,
                    pod_grace_period_seconds: None,
                    eviction_retry_seconds: 5,
                }),
                dry_run: false,
            }),
            rebalance: vec![],
            timers: Timers::default(),
        };
        let text = render(&["header".into()], &scan);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "header");
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "NODE             GROUP     UTIL  DECISION  REASON"
        );
        assert_eq!(
            lines[3],
            format!("a                general  12.3%  remove    {long}")
        );
        assert_eq!(
            lines[4],
            "control-plane-1  -            -  skip      no label"
        );
        assert_eq!(
            lines[7],
            "  RemoveNodes remove-1: a; drain timeout 300s, each pod's own grace period; dryRun false"
        );
    }
}
