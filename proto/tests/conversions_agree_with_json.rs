//! Every object of the conformance corpus gives the same message both ways: Kubernetes JSON →
//! k8s-openapi type → `From` conversion, and Kubernetes JSON → pbjson message. The controller
//! builds snapshots the first way and clients send them the second way, so they must agree.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vpsie_proto::convert::snapshot_from_objects;
use vpsie_proto::json::{message_from_json, snapshot_from_kubectl_list};
use vpsie_proto::safety::v1 as pb;

const EXPECTED_CASE_COUNT: usize = 300;

/// `<repo root>/../shared/conformance/cases`: CI places `shared/` beside its clone of the repo.
fn corpus_dir() -> PathBuf {
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo_root = proto_dir
        .parent()
        .expect("the proto crate lives inside the repository");
    repo_root.join("../shared/conformance/cases")
}

fn case_files() -> Vec<PathBuf> {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|error| {
        panic!(
            "conformance corpus missing at {}: {error} (shared/ must sit beside the repo root)",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable corpus directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "conformance corpus at {} has no *.json case",
        dir.display()
    );
    files
}

/// Parses `object` both ways and records a mismatch; returns the k8s-openapi object.
fn compare_both_ways<K, P>(
    case: &str,
    what: &str,
    object: &Value,
    mismatches: &mut Vec<String>,
) -> K
where
    K: DeserializeOwned,
    P: DeserializeOwned + PartialEq + Debug + for<'a> From<&'a K>,
{
    let typed: K = serde_json::from_value(object.clone())
        .unwrap_or_else(|error| panic!("{case} {what}: k8s-openapi rejects it: {error}"));
    let converted = P::from(&typed);
    let parsed: P = message_from_json(object.clone())
        .unwrap_or_else(|error| panic!("{case} {what}: pbjson rejects it: {error}"));
    if converted != parsed {
        mismatches.push(format!(
            "{case} {what}:\n  converted: {converted:?}\n  parsed:    {parsed:?}"
        ));
    }
    typed
}

fn objects<'a>(input: &'a Value, key: &str, case: &str) -> &'a [Value] {
    match input.get(key) {
        None => &[],
        Some(Value::Array(objects)) => objects,
        Some(other) => panic!("{case}: input.{key} is not an array: {other}"),
    }
}

#[test]
fn every_corpus_object_converts_to_the_message_its_json_parses_to() {
    let files = case_files();
    let mut mismatches = Vec::new();
    let mut object_count = 0;
    let mut question_pod_count = 0;

    for file in &files {
        let case = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(file).expect("readable case file");
        let document: Value = serde_json::from_str(&text).expect("case file is JSON");
        let input = document.get("input").expect("case has an input");

        let mut nodes = Vec::new();
        let mut pods = Vec::new();
        let mut pdbs = Vec::new();
        let mut namespaces = Vec::new();
        let mut list_items = Vec::new();
        for (index, object) in objects(input, "nodes", &case).iter().enumerate() {
            let what = format!("nodes[{index}]");
            nodes.push(compare_both_ways::<core::Node, pb::Node>(
                &case,
                &what,
                object,
                &mut mismatches,
            ));
            list_items.push(object.clone());
        }
        for (index, object) in objects(input, "pods", &case).iter().enumerate() {
            let what = format!("pods[{index}]");
            pods.push(compare_both_ways::<core::Pod, pb::Pod>(
                &case,
                &what,
                object,
                &mut mismatches,
            ));
            list_items.push(object.clone());
        }
        for (index, object) in objects(input, "pdbs", &case).iter().enumerate() {
            let what = format!("pdbs[{index}]");
            pdbs.push(compare_both_ways::<
                policy::PodDisruptionBudget,
                pb::PodDisruptionBudget,
            >(&case, &what, object, &mut mismatches));
            list_items.push(object.clone());
        }
        for (index, object) in objects(input, "namespaces", &case).iter().enumerate() {
            let what = format!("namespaces[{index}]");
            namespaces.push(compare_both_ways::<core::Namespace, pb::Namespace>(
                &case,
                &what,
                object,
                &mut mismatches,
            ));
            list_items.push(object.clone());
        }
        object_count += list_items.len();

        if let Some(question_pod) = input.get("question").and_then(|q| q.get("pod")) {
            compare_both_ways::<core::Pod, pb::Pod>(
                &case,
                "question.pod",
                question_pod,
                &mut mismatches,
            );
            question_pod_count += 1;
        }

        // The whole snapshot agrees too, built from objects and loaded as a kubectl List.
        let from_objects = snapshot_from_objects(&nodes, &pods, &pdbs, &namespaces);
        let kubectl_list =
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": list_items});
        let bytes = serde_json::to_vec(&kubectl_list).expect("serializable list");
        let from_list = snapshot_from_kubectl_list(&bytes)
            .unwrap_or_else(|error| panic!("{case}: kubectl List rejected: {error}"));
        if from_objects != from_list {
            mismatches.push(format!(
                "{case}: snapshot_from_objects and snapshot_from_kubectl_list differ"
            ));
        }
    }

    assert!(
        mismatches.is_empty(),
        "{} mismatch(es), the first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        files.len(),
        EXPECTED_CASE_COUNT,
        "expected {EXPECTED_CASE_COUNT} conformance cases in {}",
        corpus_dir().display()
    );
    assert!(object_count > 0, "the corpus held no object to compare");
    assert!(
        question_pod_count > 0,
        "the corpus held no feasibility question pod"
    );
}
