//! `controller plan` end to end: the binary, the in-process safety-service, the example dump.
//!
//! The report on `examples/cluster.json` + `examples/config.yaml` is compared with
//! `tests/snapshots/plan-example.txt`; `UPDATE_SNAPSHOTS=1 cargo test -p controller` rewrites it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the controller crate sits in the workspace")
        .to_path_buf()
}

/// Runs `controller ARGS` from the workspace root, with no endpoint or config from the
/// environment.
fn controller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_controller"))
        .args(args)
        .current_dir(workspace_root())
        .env_remove("SAFETY_ENDPOINT")
        .env_remove("CONTROLLER_CONFIG")
        .env_remove("CONTROLLER_CLUSTER_FILE")
        .env_remove("REBALANCER_ENDPOINT")
        .env_remove("RUST_LOG")
        .output()
        .expect("the controller binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file under the test's own temporary directory.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("controller-offline");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn the_example_report_matches_its_snapshot() {
    let output = controller(&[
        "plan",
        "--cluster-file",
        "examples/cluster.json",
        "--config",
        "examples/config.yaml",
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "status {:?}\nstderr:\n{}",
        output.status,
        text(&output.stderr)
    );

    let snapshot = workspace_root().join("controller/tests/snapshots/plan-example.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
        std::fs::write(&snapshot, &stdout).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run with UPDATE_SNAPSHOTS=1 to create it",
            snapshot.display()
        )
    });
    if stdout != expected {
        let first_difference = stdout
            .lines()
            .zip(expected.lines())
            .position(|(got, want)| got != want)
            .unwrap_or_else(|| stdout.lines().count().min(expected.lines().count()));
        panic!(
            "the report differs from {} from line {} on (UPDATE_SNAPSHOTS=1 rewrites it)\n--- got:\n{}\n--- expected:\n{}",
            snapshot.display(),
            first_difference + 1,
            stdout.lines().nth(first_difference).unwrap_or("<end>"),
            expected.lines().nth(first_difference).unwrap_or("<end>"),
        );
    }
}

#[test]
fn the_report_has_one_aligned_line_per_node_and_the_plans() {
    let output = controller(&[
        "plan",
        "--cluster-file",
        "examples/cluster.json",
        "--config",
        "examples/config.yaml",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let title = lines
        .iter()
        .position(|l| l.starts_with("NODE "))
        .expect("a title line");
    let reason_column = lines[title].find("REASON").unwrap();
    let dump: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("examples/cluster.json")).unwrap(),
    )
    .unwrap();
    let nodes = dump["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["kind"] == "Node")
        .count();
    let rows = &lines[title + 1..title + 1 + nodes];
    for row in rows {
        assert!(row.len() > reason_column, "{row}");
        assert_eq!(&row[reason_column - 2..reason_column], "  ", "{row}");
        assert_ne!(&row[reason_column..reason_column + 1], " ", "{row}");
    }
    assert_eq!(lines[title + 1 + nodes], "");
    assert_eq!(lines[title + 2 + nodes], "Plans it would submit:");
    assert!(stdout.contains("  RemoveNodes remove-"));
    assert!(stdout.contains("  ExecutePlan drift-general-"));
    assert!(stdout.contains("treated as satisfied"));
    // Nothing of the ephemeral port leaks into the report.
    assert!(!stdout.contains("127.0.0.1"));
}

#[test]
fn without_a_config_the_groups_are_inferred_and_the_header_says_so() {
    let output = controller(&["plan", "--cluster-file", "examples/cluster.json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("config: built-in defaults (no --config); node groups inferred from the autoscaler.vpsie.com/nodegroup labels"),
        "{stdout}"
    );
    assert!(stdout.contains("general (13 nodes)"), "{stdout}");
    assert!(!stdout.contains("ExecutePlan"), "{stdout}");
}

#[test]
fn a_bad_config_exits_2_naming_the_file_and_key() {
    let config = temp_file(
        "bad-min-nodes.yaml",
        "nodeGroups:\n  - name: general\n    minNodes: 5\n    maxNodes: 3\n",
    );
    let output = controller(&[
        "plan",
        "--cluster-file",
        "examples/cluster.json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: nodeGroups[0].minNodes: 5 is greater than maxNodes (3)",
            config.display()
        )),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let config = temp_file("unknown-key.yaml", "scaleDown:\n  maxParalel: 2\n");
    let output = controller(&[
        "plan",
        "--cluster-file",
        "examples/cluster.json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("scaleDown.maxParalel: unknown field `maxParalel`"),
        "{stderr}"
    );
}

/// A dump whose item 12 is `bad`: three nodes, two namespaces, then pods.
fn dump_with(bad: Value) -> String {
    let node = |name: &str| {
        json!({"kind": "Node", "apiVersion": "v1",
               "metadata": {"name": name, "labels": {"autoscaler.vpsie.com/nodegroup": "general"}},
               "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})
    };
    let pod = |name: &str, node: &str| {
        json!({"kind": "Pod", "apiVersion": "v1",
               "metadata": {"name": name, "namespace": "team-a",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": "web", "uid": "rs", "controller": true}]},
               "spec": {"nodeName": node, "containers": [{"name": "c",
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
               "status": {"phase": "Running"}})
    };
    let mut items = vec![
        node("n1"),
        node("n2"),
        node("n3"),
        json!({"kind": "Namespace", "metadata": {"name": "team-a"}}),
        json!({"kind": "Namespace", "metadata": {"name": "default"}}),
    ];
    for i in 0..7 {
        items.push(pod(&format!("web-x{i}"), ["n1", "n2", "n3"][i % 3]));
    }
    assert_eq!(items.len(), 12);
    items.push(bad);
    items.push(pod("web-y", "n1"));
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

fn plan_on(dump: &str, name: &str) -> Output {
    let path = temp_file(name, dump);
    controller(&["plan", "--cluster-file", path.to_str().unwrap()])
}

#[test]
fn a_bad_quantity_exits_2_naming_the_item_and_field() {
    let dump = dump_with(json!({
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "team-a"},
        "spec": {"nodeName": "n2", "containers": [{"name": "c", "resources": {"requests": {"cpu": "12x"}}}]},
        "status": {"phase": "Running"}
    }));
    let output = plan_on(&dump, "bad-quantity.json");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "items[12] (Pod team-a/web-1).spec.containers[0].resources.requests.cpu: invalid quantity \"12x\""
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_field_the_safety_service_refuses_is_mapped_back_to_the_item() {
    // The planner does not read taints; the safety-service's INVALID_ARGUMENT
    // (`snapshot.nodes[3]…`) is mapped back to the dump's item.
    let dump = dump_with(json!({
        "kind": "Node",
        "metadata": {"name": "n4"},
        "spec": {"taints": [{"key": "k", "effect": "NoSchedul"}]},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}
    }));
    let output = plan_on(&dump, "bad-taint.json");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("items[12] (Node n4).spec.taints[0].effect"),
        "{stderr}"
    );
    assert!(!stderr.contains("snapshot."), "{stderr}");
}

#[test]
fn a_field_of_the_wrong_type_exits_2_naming_the_item_and_field() {
    let dump = dump_with(json!({
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "team-a"},
        "spec": {"nodeName": "n2", "containers": [{"name": "c", "ports": [{"containerPort": "eighty"}]}]}
    }));
    let output = plan_on(&dump, "bad-type.json");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("items[12] (Pod team-a/web-1).spec.containers[0].ports[0].containerPort"),
        "{stderr}"
    );
}

#[test]
fn an_unreadable_or_malformed_dump_exits_2() {
    let output = controller(&["plan", "--cluster-file", "/nonexistent/dump.json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("/nonexistent/dump.json: cannot read"));

    let output = plan_on("{\"items\": [", "truncated.json");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("not valid JSON"));
}

#[test]
fn run_checks_its_configuration_and_endpoints_before_starting() {
    let output = controller(&["run", "--config", "examples/config.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("--rebalancer-endpoint (REBALANCER_ENDPOINT) is required"),
        "{}",
        text(&output.stderr)
    );
    let bad = temp_file(
        "bad-run-config.yaml",
        "scanInterval: 10s
scaleDwn: {}
",
    );
    let output = controller(&[
        "run",
        "--config",
        bad.to_str().unwrap(),
        "--rebalancer-endpoint",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("scaleDwn"),
        "{}",
        text(&output.stderr)
    );
    let help = controller(&["run", "--help"]);
    assert!(help.status.success());
    let help = text(&help.stdout);
    for expected in [
        "CONTROLLER_CONFIG",
        "SAFETY_ENDPOINT",
        "REBALANCER_ENDPOINT",
        "METRICS_LISTEN",
        "0.0.0.0:9103",
        "POD_NAMESPACE",
        "KUBECONFIG",
    ] {
        assert!(help.contains(expected), "{expected} missing: {help}");
    }

    let help = text(&controller(&["plan", "--help"]).stdout);
    assert!(help.contains("--cluster-file"), "{help}");
    assert!(help.contains("SAFETY_ENDPOINT"), "{help}");
}
