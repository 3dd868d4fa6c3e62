//! The conformance corpus (`../shared/conformance/cases`): answers computed by the real
//! kube-scheduler filter plugins. Every case must agree with the engine.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use vpsie_proto::json::message_from_json;
use vpsie_proto::safety::v1::{self as pb, BlockingReason, SkipReason};

use safety_service::engine::{self, Deadline, PlanStep};

fn cases_dir() -> PathBuf {
    // The repository's sibling `shared/` folder (CI lays a copy beside the clone).
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/cases")
}

fn objects<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> Vec<T> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what} is not a list"))
        .iter()
        .map(|item| message_from_json(item.clone()).unwrap_or_else(|e| panic!("{what}: {e}")))
        .collect()
}

fn snapshot(input: &Value) -> pb::ClusterSnapshot {
    pb::ClusterSnapshot {
        nodes: objects(&input["nodes"], "nodes"),
        pods: objects(&input["pods"], "pods"),
        pod_disruption_budgets: objects(&input["pdbs"], "pdbs"),
        namespaces: objects(&input["namespaces"], "namespaces"),
    }
}

fn failures(rejections: &[pb::NodeRejection]) -> Value {
    let map: BTreeMap<&str, Value> = rejections
        .iter()
        .map(|r| {
            (
                r.node_name.as_str(),
                json!({"plugin": r.plugin, "reason": r.reason}),
            )
        })
        .collect();
    json!(map)
}

fn block_kind(reason: i32) -> &'static str {
    match BlockingReason::try_from(reason) {
        Ok(BlockingReason::NoFeasibleNode) => "NoFit",
        Ok(BlockingReason::NotEnoughPdb) => "PDB",
        Ok(BlockingReason::MultiplePdbs) => "MultiplePDB",
        _ => "other",
    }
}

/// The engine's answer in the corpus's `expected` shape (only the fields the case has).
fn drain_answer(snapshot: pb::ClusterSnapshot, question: &Value) -> Value {
    let node = question["node"].as_str().expect("node");
    let request = pb::CanRemoveNodeRequest {
        snapshot: Some(snapshot),
        node_name: node.to_string(),
        options: Some(pb::RemovalOptions {
            ignore_pod_disruption_budgets: question["ignorePDB"].as_bool().unwrap_or(false),
            allow_local_storage: true,
            allow_unreplicated_pods: true,
            allow_kube_system_pods: true,
            explain: true,
        }),
    };
    let response =
        engine::can_remove_node(&view(&request), Deadline::NONE).expect("engine answers");
    let mut skipped: Vec<String> = response
        .skipped_pods
        .iter()
        .filter(|s| {
            s.reason == SkipReason::Mirror as i32 || s.reason == SkipReason::Daemonset as i32
        })
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    skipped.sort();
    let placements: Vec<Value> = response
        .placements
        .iter()
        .map(|p| json!({"pod": format!("{}/{}", p.namespace, p.name), "node": p.node_name}))
        .collect();
    let mut answer = json!({"node": node, "removable": response.removable, "placements": placements, "skipped": skipped});
    if let Some(blocker) = response.blocking_pods.first() {
        let kind = block_kind(blocker.reason);
        answer["blockKind"] = json!(kind);
        answer["blockingPod"] = json!(format!("{}/{}", blocker.namespace, blocker.name));
        if kind == "NoFit" {
            answer["failures"] = failures(&blocker.rejections);
            let conflict = !blocker.rejections.is_empty()
                && blocker
                    .rejections
                    .iter()
                    .all(|r| r.reason == "pod affinity terms conflict");
            if conflict {
                answer["preFilter"] =
                    json!({"plugin": "NodeAffinity", "reason": "pod affinity terms conflict"});
            }
        } else {
            answer["pdbs"] = json!(blocker.disruption_budgets);
        }
    }
    answer
}

fn feasible_answer(snapshot: pb::ClusterSnapshot, question: &Value) -> Value {
    let pod: pb::Pod = message_from_json(question["pod"].clone()).expect("question pod");
    let key = format!(
        "{}/{}",
        pod.metadata.as_ref().map_or("", |m| m.namespace.as_str()),
        pod.metadata.as_ref().map_or("", |m| m.name.as_str())
    );
    let exclude: Vec<String> = question["excludeNodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let request = pb::FindSchedulableNodeRequest {
        snapshot: Some(snapshot),
        pod: Some(pod),
        exclude_nodes: exclude,
        explain: true,
    };
    let response =
        engine::find_schedulable_node(&view(&request), Deadline::NONE).expect("engine answers");
    let mut answer = json!({
        "pod": key,
        "feasible": response.feasible_nodes,
        "chosen": if response.found { json!(response.node_name) } else { Value::Null },
        "failures": failures(&response.rejections),
    });
    let conflict = !response.rejections.is_empty()
        && response
            .rejections
            .iter()
            .filter(|r| r.plugin != "Excluded")
            .all(|r| r.reason == "pod affinity terms conflict");
    if conflict {
        answer["preFilter"] =
            json!({"plugin": "NodeAffinity", "reason": "pod affinity terms conflict"});
    }
    answer
}

/// The wire view the engine reads, as the server decodes it.
fn view<V: prost::Message + Default>(owned: &impl prost::Message) -> V {
    engine::view_of(owned).expect("an owned message re-reads as its view")
}

fn verify_answer(snapshot: pb::ClusterSnapshot, question: &Value) -> Value {
    let node = question["node"].as_str().expect("node");
    let plan: Vec<PlanStep> = question["placements"]
        .as_array()
        .expect("placements")
        .iter()
        .map(|p| PlanStep {
            pod: p["pod"].as_str().expect("pod").to_string(),
            node: p["node"].as_str().expect("node").to_string(),
        })
        .collect();
    let snapshot: engine::w::ClusterSnapshot = view(&snapshot);
    let index = engine::Index::build(&snapshot).expect("index");
    let options = pb::RemovalOptions {
        allow_local_storage: true,
        allow_unreplicated_pods: true,
        allow_kube_system_pods: true,
        ..Default::default()
    };
    match engine::replay_plan(&index, node, &plan, &options).expect("replay") {
        None => json!({"ok": true}),
        Some(failure) => {
            let mut answer = json!({"ok": false, "step": failure.step, "pod": failure.pod,
                                    "plugin": failure.plugin, "reason": failure.reason});
            if let Some(node) = failure.node {
                answer["node"] = json!(node);
            }
            answer
        }
    }
}

/// Keeps only the fields of `answer` that `expected` has, so both compare field for field.
fn project(expected: &Value, answer: &Value) -> Value {
    match expected {
        Value::Object(fields) => {
            let mut out = serde_json::Map::new();
            for key in fields.keys() {
                out.insert(key.clone(), answer.get(key).cloned().unwrap_or(Value::Null));
            }
            Value::Object(out)
        }
        _ => answer.clone(),
    }
}

#[test]
fn every_conformance_case_agrees_with_the_engine() {
    let dir = cases_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("conformance corpus missing at {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 300, "the corpus has 300 cases");

    let mut mismatches = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).expect("read case");
        let case: Value = serde_json::from_str(&text).expect("case json");
        let input = &case["input"];
        let question = &input["question"];
        let expected = &case["expected"];
        let snapshot = snapshot(input);
        let answer = match question["type"].as_str() {
            Some("drain") => drain_answer(snapshot, question),
            Some("feasible") => feasible_answer(snapshot, question),
            Some("verify") => verify_answer(snapshot, question),
            other => panic!("{}: unknown question type {other:?}", path.display()),
        };
        let answer = project(expected, &answer);
        if &answer != expected {
            mismatches.push(format!(
                "{}\n  question: {}\n  expected: {}\n  got:      {}",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                serde_json::to_string(&json!({"type": question["type"], "node": question["node"]}))
                    .unwrap_or_default(),
                expected,
                answer
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases disagree:\n{}",
        mismatches.len(),
        paths.len(),
        mismatches.join("\n")
    );
}
