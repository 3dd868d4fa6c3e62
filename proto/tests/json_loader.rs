//! The JSON loader: kubectl Lists, `null` handling, and errors that name the item and field.

use proptest::prelude::*;
use serde_json::{Value, json};
use vpsie_proto::json::{JsonError, message_from_json, snapshot_from_kubectl_list, strip_nulls};
use vpsie_proto::safety::v1 as pb;

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serializable test document")
}

fn names<'a>(metadata: impl Iterator<Item = Option<&'a pb::ObjectMeta>>) -> Vec<String> {
    metadata
        .map(|metadata| metadata.map(|m| m.name.clone()).unwrap_or_default())
        .collect()
}

#[test]
fn kubectl_list_with_mixed_kinds_keeps_known_kinds_in_order_and_ignores_others() {
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n02"}, "spec": {}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "team-a"},
             "spec": {"ports": [{"port": "not even a number"}]}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "team-a"},
             "spec": {"nodeName": "n02", "containers": [{"name": "web"}]}, "status": {"phase": "Running"}},
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n01"}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}},
            {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
             "metadata": {"name": "web", "namespace": "team-a"},
             "spec": {"selector": {}}, "status": {"disruptionsAllowed": 2}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"team": "a"}}}
        ]
    });
    let snapshot = snapshot_from_kubectl_list(&bytes(&list)).expect("a valid kubectl List");

    assert_eq!(
        names(snapshot.nodes.iter().map(|n| n.metadata.as_ref())),
        ["n02", "n01"]
    );
    assert_eq!(
        names(snapshot.pods.iter().map(|p| p.metadata.as_ref())),
        ["web-1"]
    );
    assert_eq!(snapshot.pod_disruption_budgets.len(), 1);
    let pdb = &snapshot.pod_disruption_budgets[0];
    assert_eq!(
        pdb.spec.as_ref().and_then(|spec| spec.selector.clone()),
        Some(pb::LabelSelector::default())
    );
    assert_eq!(pdb.status.as_ref().map(|s| s.disruptions_allowed), Some(2));
    assert_eq!(
        names(snapshot.namespaces.iter().map(|n| n.metadata.as_ref())),
        ["team-a"]
    );
}

#[test]
fn bare_array_of_items_is_accepted() {
    let items = json!([
        {"kind": "Node", "metadata": {"name": "n01"}},
        {"kind": "Namespace", "metadata": {"name": "default"}}
    ]);
    let snapshot = snapshot_from_kubectl_list(&bytes(&items)).expect("an array of items");
    assert_eq!(snapshot.nodes.len(), 1);
    assert_eq!(snapshot.namespaces.len(), 1);
}

#[test]
fn typed_list_items_take_their_kind_from_the_list() {
    // The API server leaves `kind` out of the items of a PodList.
    let pod_list = json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "items": [{"metadata": {"name": "web-1", "namespace": "team-a"}}]
    });
    let snapshot = snapshot_from_kubectl_list(&bytes(&pod_list)).expect("a PodList");
    assert_eq!(snapshot.pods.len(), 1);
}

#[test]
fn empty_and_null_items_give_an_empty_snapshot() {
    for document in [
        json!({"kind": "List", "items": []}),
        json!({"kind": "List", "items": null}),
        json!([]),
    ] {
        let snapshot = snapshot_from_kubectl_list(&bytes(&document)).expect("an empty list");
        assert_eq!(snapshot, pb::ClusterSnapshot::default());
    }
}

#[test]
fn nulls_are_treated_as_absent() {
    let with_nulls = json!({
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "team-a", "labels": null, "annotations": {"a": null},
                     "deletionTimestamp": null, "ownerReferences": null},
        "spec": {
            "nodeName": "n01",
            "nodeSelector": null,
            "priority": null,
            "affinity": null,
            "resources": null,
            "tolerations": [null, {"key": "gpu", "operator": "Exists", "tolerationSeconds": null}],
            "containers": [{"name": "web", "resources": {"requests": {"cpu": "1"}, "limits": null},
                            "ports": [{"containerPort": 80, "hostPort": null, "hostIP": null}]}],
            "volumes": [{"name": "scratch", "emptyDir": {"medium": null, "sizeLimit": null}}]
        },
        "status": {"phase": null}
    });
    let without_nulls = json!({
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "team-a", "annotations": {}},
        "spec": {
            "nodeName": "n01",
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
            "containers": [{"name": "web", "resources": {"requests": {"cpu": "1"}},
                            "ports": [{"containerPort": 80}]}],
            "volumes": [{"name": "scratch", "emptyDir": {}}]
        },
        "status": {}
    });
    let parsed: pb::Pod = message_from_json(with_nulls.clone()).expect("nulls are accepted");
    let expected: pb::Pod = message_from_json(without_nulls).expect("the same pod without nulls");
    assert_eq!(parsed, expected);
    // `affinity: null` is absent, not an empty affinity; `emptyDir` with only nulls is still there.
    let spec = parsed.spec.as_ref().expect("spec");
    assert_eq!(spec.affinity, None);
    assert_eq!(spec.priority, None);
    assert_eq!(
        spec.volumes[0].empty_dir,
        Some(pb::EmptyDirVolumeSource::default())
    );

    // The kubectl path strips them too.
    let list = json!({"kind": "List", "items": [with_nulls]});
    let snapshot = snapshot_from_kubectl_list(&bytes(&list)).expect("nulls in a List");
    assert_eq!(snapshot.pods, [parsed]);
}

#[test]
fn strip_nulls_removes_members_and_elements_at_every_depth() {
    let mut value = json!({"a": null, "b": [null, 1, {"c": null, "d": [null]}], "e": {"f": null}});
    strip_nulls(&mut value);
    assert_eq!(value, json!({"b": [1, {"d": []}], "e": {}}));
}

#[test]
fn malformed_item_error_names_index_kind_name_and_field() {
    let list = json!({"kind": "List", "items": [
        {"kind": "Node", "metadata": {"name": "n01"}},
        {"kind": "Namespace", "metadata": {"name": "team-a"}},
        {"kind": "Pod", "metadata": {"name": "web-1", "namespace": "team-a"},
         "spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80, "hostPort": "abc"}]}]}}
    ]});
    let error =
        snapshot_from_kubectl_list(&bytes(&list)).expect_err("hostPort \"abc\" is not a port");
    let message = error.to_string();
    assert!(
        message.starts_with("items[2] (Pod team-a/web-1): spec.containers[0].ports[0].hostPort: "),
        "unexpected message: {message}"
    );
    match error {
        JsonError::InvalidItem {
            index,
            object,
            field_error,
        } => {
            assert_eq!(index, 2);
            assert_eq!(object, "Pod team-a/web-1");
            assert_eq!(field_error.path, "spec.containers[0].ports[0].hostPort");
        }
        other => panic!("expected InvalidItem, got {other:?}"),
    }
}

#[test]
fn cluster_scoped_item_error_names_the_object_without_namespace() {
    let list = json!({"kind": "List", "items": [
        {"kind": "Node", "metadata": {"name": "n01", "labels": {"zone": 3}}}
    ]});
    let message = snapshot_from_kubectl_list(&bytes(&list))
        .expect_err("a label value must be a string")
        .to_string();
    assert!(
        message.starts_with("items[0] (Node n01): metadata.labels.zone: "),
        "unexpected message: {message}"
    );
}

#[test]
fn single_message_error_gives_the_field_path() {
    let error = message_from_json::<pb::Pod>(json!({"spec": {"priority": "high"}}))
        .expect_err("priority is a number");
    match &error {
        JsonError::InvalidMessage(field_error) => assert_eq!(field_error.path, "spec.priority"),
        other => panic!("expected InvalidMessage, got {other:?}"),
    }
    assert!(error.to_string().starts_with("spec.priority: "), "{error}");
}

#[test]
fn whole_snapshot_parses_as_one_message() {
    let snapshot: pb::ClusterSnapshot = message_from_json(json!({
        "nodes": [{"metadata": {"name": "n01"}}],
        "pods": [{"metadata": {"name": "web-1", "namespace": "team-a"}, "spec": null}],
        "podDisruptionBudgets": [{"metadata": {"name": "web", "namespace": "team-a"}}],
        "namespaces": null
    }))
    .expect("a snapshot");
    assert_eq!(snapshot.nodes.len(), 1);
    assert_eq!(snapshot.pods[0].spec, None);
    assert_eq!(snapshot.pod_disruption_budgets.len(), 1);
    assert!(snapshot.namespaces.is_empty());
}

#[test]
fn documents_that_are_not_lists_are_rejected_clearly() {
    let not_json = snapshot_from_kubectl_list(b"{\"items\": [").expect_err("truncated");
    assert!(matches!(not_json, JsonError::Syntax(_)), "{not_json:?}");

    for document in [
        json!(42),
        json!("List"),
        json!({"kind": "Pod"}),
        json!({"items": {}}),
    ] {
        let error = snapshot_from_kubectl_list(&bytes(&document)).expect_err("not a list");
        assert!(matches!(error, JsonError::NotAList { .. }), "{error:?}");
    }

    let error = snapshot_from_kubectl_list(&bytes(&json!([{"kind": "Node"}, 7])))
        .expect_err("an item that is not an object");
    assert!(
        error
            .to_string()
            .starts_with("items[1]: expected an object"),
        "{error}"
    );

    let error = snapshot_from_kubectl_list(&bytes(
        &json!({"kind": "List", "items": [{"metadata": {"name": "x"}}]}),
    ))
    .expect_err("an item without kind");
    assert_eq!(error.to_string(), "items[0]: no \"kind\"");

    let error =
        snapshot_from_kubectl_list(&bytes(&json!([{"kind": 5}]))).expect_err("numeric kind");
    assert!(
        matches!(error, JsonError::UnusableItem { index: 0, .. }),
        "{error:?}"
    );
}

#[test]
fn very_deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let mut document = String::from("{\"kind\":\"List\",\"items\":[{\"kind\":\"Pod\",\"x\":");
    document.push_str(&"[".repeat(depth));
    document.push_str(&"]".repeat(depth));
    document.push_str("}]}");
    let error = snapshot_from_kubectl_list(document.as_bytes()).expect_err("too deep");
    assert!(matches!(error, JsonError::Syntax(_)), "{error:?}");
}

// ---- fuzzing: no input may panic the loader ----

/// Field names the loader reacts to, so that generated documents reach deep into the messages.
const FIELD_NAMES: &[&str] = &[
    "kind",
    "items",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "ownerReferences",
    "controller",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "spec",
    "status",
    "nodeName",
    "nodeSelector",
    "affinity",
    "nodeAffinity",
    "podAffinity",
    "podAntiAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms",
    "matchExpressions",
    "matchLabels",
    "labelSelector",
    "namespaceSelector",
    "values",
    "key",
    "operator",
    "tolerations",
    "tolerationSeconds",
    "containers",
    "initContainers",
    "resources",
    "requests",
    "limits",
    "ports",
    "hostPort",
    "containerPort",
    "hostIP",
    "priority",
    "volumes",
    "emptyDir",
    "hostPath",
    "topologySpreadConstraints",
    "maxSkew",
    "minDomains",
    "selector",
    "disruptionsAllowed",
    "taints",
    "unschedulable",
    "capacity",
    "allocatable",
    "conditions",
    "phase",
    "hostNetwork",
    "overhead",
];

const KINDS: &[&str] = &[
    "Node",
    "Pod",
    "PodDisruptionBudget",
    "Namespace",
    "Service",
    "List",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9.:/-]{0,12}".prop_map(Value::String),
        prop::sample::select(KINDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(FIELD_NAMES).prop_map(str::to_owned),
                        "[a-z]{1,6}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A kubectl List whose items have a known kind and arbitrary contents.
fn kubectl_list_document() -> impl Strategy<Value = Value> {
    let item = (prop::sample::select(KINDS), json_value()).prop_map(|(kind, body)| {
        let mut item = match body {
            Value::Object(members) => members,
            other => [("spec".to_owned(), other)].into_iter().collect(),
        };
        item.insert("kind".to_owned(), Value::from(kind));
        Value::Object(item)
    });
    prop::collection::vec(item, 0..6).prop_map(|items| json!({"kind": "List", "items": items}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = snapshot_from_kubectl_list(&input);
    }

    #[test]
    fn json_ish_strings_never_panic(input in r#"[\[\]{}":,0-9a-zA-Z. \-ntruefalsenull]{0,256}"#) {
        let _ = snapshot_from_kubectl_list(input.as_bytes());
    }

    #[test]
    fn arbitrary_json_documents_never_panic(document in json_value()) {
        let _ = snapshot_from_kubectl_list(&bytes(&document));
    }

    #[test]
    fn arbitrary_kubectl_lists_never_panic_and_errors_name_an_item(document in kubectl_list_document()) {
        if let Err(error) = snapshot_from_kubectl_list(&bytes(&document)) {
            prop_assert!(error.to_string().starts_with("items["), "{}", error);
        }
    }
}
