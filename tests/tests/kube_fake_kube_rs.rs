//! The Kubernetes API fake driven by real kube-rs clients: the calls the controller and the
//! rebalancer-service make (get/list/watch/patch/delete, eviction, ConfigMaps, Leases, Events).

use std::time::Duration;

use e2e_tests::kube_fake::KubeFake;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

fn node(name: &str, group: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": { "autoscaler.vpsie.com/nodegroup": group } },
        "spec": {},
        "status": {
            "allocatable": { "cpu": "2", "memory": "4Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }],
        },
    })
}

fn pod(ns: &str, name: &str, node: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": ns, "labels": { "app": app } },
        "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "nginx" }] },
        "status": { "phase": "Running" },
    })
}

fn pdb(ns: &str, name: &str, app: &str, allowed: i32) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": app } } },
        "status": {
            "disruptionsAllowed": allowed,
            "currentHealthy": 2,
            "desiredHealthy": 1,
            "expectedPods": 2,
        },
    })
}

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `cond` every 20 ms for up to 5 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..250 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn nodes_get_list_merge_and_json_patch_delete() {
    let fake = KubeFake::start().await;
    fake.apply(node("n1", "general"));
    fake.apply(node("n2", "batch"));
    let nodes: Api<Node> = Api::all(fake.client());

    let n1 = nodes.get("n1").await.unwrap();
    assert_eq!(n1.name_any(), "n1");
    assert!(n1.uid().is_some());
    assert!(n1.metadata.creation_timestamp.is_some());
    let rv1: u64 = n1.resource_version().unwrap().parse().unwrap();

    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    assert!(list.metadata.resource_version.is_some());
    let batch = nodes
        .list(&ListParams::default().labels("autoscaler.vpsie.com/nodegroup=batch"))
        .await
        .unwrap();
    assert_eq!(
        batch.items.iter().map(|n| n.name_any()).collect::<Vec<_>>(),
        ["n2"]
    );
    let not_batch = nodes
        .list(&ListParams::default().labels("autoscaler.vpsie.com/nodegroup!=batch"))
        .await
        .unwrap();
    assert_eq!(not_batch.items.len(), 1);
    let by_name = nodes
        .list(&ListParams::default().fields("metadata.name=n2"))
        .await
        .unwrap();
    assert_eq!(by_name.items[0].name_any(), "n2");

    // Merge patch: cordon and annotate.
    let patched = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": { "annotations": { "autoscaler.vpsie.com/operation": "op-1" } },
                "spec": { "unschedulable": true },
            })),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().unschedulable, Some(true));
    assert_eq!(
        patched.annotations()["autoscaler.vpsie.com/operation"],
        "op-1"
    );
    let rv2: u64 = patched.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    // Status is kept: a main-resource write cannot change it.
    assert!(patched.status.as_ref().unwrap().conditions.is_some());

    // JSON patch: add a taint, test-guarded.
    let json_patch = json!([
        { "op": "test", "path": "/spec/unschedulable", "value": true },
        { "op": "add", "path": "/spec/taints", "value": [] },
        { "op": "add", "path": "/spec/taints/-", "value": {
            "key": "autoscaler.vpsie.com/draining", "effect": "NoSchedule" } },
        { "op": "remove", "path": "/metadata/annotations/autoscaler.vpsie.com~1operation" },
    ]);
    let patched = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(json_patch).unwrap()),
        )
        .await
        .unwrap();
    let taints = patched.spec.as_ref().unwrap().taints.clone().unwrap();
    assert_eq!(taints[0].key, "autoscaler.vpsie.com/draining");
    assert!(
        !patched
            .annotations()
            .contains_key("autoscaler.vpsie.com/operation")
    );
    // A failing JSON-patch test op is a 422 and changes nothing.
    let failing = json!([{ "op": "test", "path": "/spec/unschedulable", "value": false }]);
    let err = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(failing).unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(api_status(err).code, 422);
    assert_eq!(
        fake.get("Node", "", "n1").unwrap()["metadata"]["resourceVersion"],
        json!(patched.resource_version().unwrap())
    );

    // Merge patch with a stale resourceVersion is a conflict.
    let err = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "resourceVersion": rv1.to_string() }, "spec": { "unschedulable": false } })),
        )
        .await
        .unwrap_err();
    let st = api_status(err);
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));

    // Delete returns the object; afterwards get is a 404 NotFound Status.
    let deleted = nodes.delete("n2", &DeleteParams::default()).await.unwrap();
    assert_eq!(deleted.left().unwrap().name_any(), "n2");
    let st = api_status(nodes.get("n2").await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (404, "NotFound"));
    assert_eq!(st.message, "nodes \"n2\" not found");
    assert!(fake.get("Node", "", "n2").is_none());
    let st = api_status(
        nodes
            .delete("n2", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 404);
}

#[tokio::test]
async fn pods_list_by_node_with_field_selector() {
    let fake = KubeFake::start().await;
    fake.apply(pod("default", "a1", "n1", "web"));
    fake.apply(pod("team-a", "a2", "n1", "db"));
    fake.apply(pod("team-a", "b1", "n2", "web"));
    let client = fake.client();

    let all: Api<Pod> = Api::all(client.clone());
    let on_n1 = all
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    let mut names: Vec<_> = on_n1.items.iter().map(|p| p.name_any()).collect();
    names.sort();
    assert_eq!(names, ["a1", "a2"]);

    let team_a: Api<Pod> = Api::namespaced(client.clone(), "team-a");
    let l = team_a
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(
        l.items.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
        ["a2"]
    );
    let l = team_a
        .list(
            &ListParams::default()
                .labels("app in (web,cache)")
                .fields("spec.nodeName!=n1"),
        )
        .await
        .unwrap();
    assert_eq!(
        l.items.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
        ["b1"]
    );

    // Seeding created the missing namespace.
    let namespaces: Api<Namespace> = Api::all(client);
    let ns = namespaces.get("team-a").await.unwrap();
    assert_eq!(ns.labels()["kubernetes.io/metadata.name"], "team-a");

    let req = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/pods")
        .unwrap();
    assert_eq!(
        req.query_param("fieldSelector").as_deref(),
        Some("spec.nodeName=n1")
    );
}

#[tokio::test]
async fn eviction_allowed_blocked_by_pdb_then_allowed_after_raise() {
    let fake = KubeFake::start().await;
    fake.apply(pod("default", "web-1", "n1", "web"));
    fake.apply(pod("default", "web-2", "n1", "web"));
    fake.apply(pod("default", "lonely", "n1", "other"));
    fake.apply(pdb("default", "web-pdb", "web", 1));
    let pods: Api<Pod> = Api::default_namespaced(fake.client());

    // No PDB selects it: evicted at once.
    let st = pods.evict("lonely", &EvictParams::default()).await.unwrap();
    assert_eq!(st.code, 201);
    assert!(fake.get("Pod", "default", "lonely").is_none());

    // The PDB allows one disruption.
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    assert!(fake.get("Pod", "default", "web-1").is_none());
    let pdb_now = fake.get("pdb", "default", "web-pdb").unwrap();
    assert_eq!(pdb_now["status"]["disruptionsAllowed"], 0);
    assert!(pdb_now["status"]["disruptedPods"]["web-1"].is_string());

    // The next one is refused with 429 and the API server's message.
    let err = pods
        .evict("web-2", &EvictParams::default())
        .await
        .unwrap_err();
    let st = api_status(err);
    assert_eq!(st.code, 429);
    assert_eq!(st.reason, "TooManyRequests");
    assert_eq!(
        st.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &st.details.unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert!(cause.message.contains("web-pdb"));
    assert!(fake.get("Pod", "default", "web-2").is_some());

    // Raising the budget unblocks it.
    fake.set_pdb_disruptions_allowed("default", "web-pdb", 1);
    pods.evict("web-2", &EvictParams::default()).await.unwrap();
    assert!(fake.get("Pod", "default", "web-2").is_none());

    let evictions: Vec<_> = fake
        .writes()
        .into_iter()
        .filter(|r| r.path.ends_with("/eviction"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        evictions,
        [
            "/api/v1/namespaces/default/pods/lonely/eviction",
            "/api/v1/namespaces/default/pods/web-1/eviction",
            "/api/v1/namespaces/default/pods/web-2/eviction",
            "/api/v1/namespaces/default/pods/web-2/eviction",
        ]
    );
    // Evicting a pod that is gone is a 404.
    let st = api_status(
        pods.evict("web-2", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 404);
}

#[tokio::test]
async fn eviction_with_two_matching_pdbs_is_an_internal_error() {
    let fake = KubeFake::start().await;
    fake.apply(pod("default", "web-1", "n1", "web"));
    fake.apply(pdb("default", "a", "web", 5));
    fake.apply(pdb("default", "b", "web", 5));
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let st = api_status(
        pods.evict("web-1", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 500);
    assert!(st.message.contains("more than one PodDisruptionBudget"));
    assert!(fake.get("Pod", "default", "web-1").is_some());
}

#[tokio::test]
async fn eviction_failure_hook_fails_n_times_and_pending_pods_skip_budgets() {
    let fake = KubeFake::start().await;
    fake.apply(pod("default", "web-1", "n1", "web"));
    fake.fail_evictions("default", "web-1", 2, 429);
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    for _ in 0..2 {
        let st = api_status(
            pods.evict("web-1", &EvictParams::default())
                .await
                .unwrap_err(),
        );
        assert_eq!(st.code, 429);
    }
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    assert!(fake.get("Pod", "default", "web-1").is_none());

    // A Pending pod is evicted even when its budget allows nothing, as the API server does.
    let mut pending = pod("default", "web-2", "n1", "web");
    pending["status"]["phase"] = json!("Pending");
    fake.apply(pending);
    fake.apply(pdb("default", "web-pdb", "web", 0));
    pods.evict("web-2", &EvictParams::default()).await.unwrap();
    assert!(fake.get("Pod", "default", "web-2").is_none());
}

#[tokio::test]
async fn configmap_create_already_exists_and_replace_conflict() {
    let fake = KubeFake::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "op-1", "labels": { "app.kubernetes.io/managed-by": "rebalancer" } },
        "data": { "state": "PENDING" },
    }))
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.uid().is_some());
    let rv = created.resource_version().unwrap();

    let st = api_status(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(st.message, "configmaps \"op-1\" already exists");

    // Replace with the current resourceVersion succeeds …
    let mut next = created.clone();
    next.data
        .as_mut()
        .unwrap()
        .insert("state".into(), "RUNNING".into());
    let replaced = cms
        .replace("op-1", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_ne!(replaced.resource_version().unwrap(), rv);
    assert_eq!(replaced.uid(), created.uid());
    // … and with the stale one it is a 409 Conflict.
    let mut stale = created.clone();
    stale
        .data
        .as_mut()
        .unwrap()
        .insert("state".into(), "FAILED".into());
    let st = api_status(
        cms.replace("op-1", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert!(st.message.contains("the object has been modified"));
    assert_eq!(
        fake.get("ConfigMap", "default", "op-1").unwrap()["data"]["state"],
        "RUNNING"
    );

    // Creating in a namespace that does not exist is a 404 for the namespace.
    let elsewhere: Api<ConfigMap> = Api::namespaced(fake.client(), "nope");
    let st = api_status(
        elsewhere
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 404);
    assert_eq!(st.message, "namespaces \"nope\" not found");

    let listed = cms
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=rebalancer"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
}

#[tokio::test]
async fn reflectors_over_nodes_and_pods_become_ready_and_follow_changes() {
    let fake = KubeFake::start().await;
    fake.apply(node("n1", "general"));
    fake.apply(node("n2", "general"));
    fake.apply(pod("default", "web-1", "n1", "web"));
    let client = fake.client();

    let (nodes, node_writer) = reflector::store::<Node>();
    let node_stream = reflector(
        node_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    );
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_stream = reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    );
    let node_task = tokio::spawn(async move {
        let mut s = Box::pin(node_stream);
        while let Some(ev) = s.next().await {
            ev.expect("node watcher event");
        }
    });
    let pod_task = tokio::spawn(async move {
        let mut s = Box::pin(pod_stream);
        while let Some(ev) = s.next().await {
            ev.expect("pod watcher event");
        }
    });

    tokio::time::timeout(Duration::from_secs(5), nodes.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), pods.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nodes.state().len(), 2);
    assert_eq!(pods.state().len(), 1);

    // A pod added through the API after the start, a node deleted, a node relabelled.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let new_pod: Pod = serde_json::from_value(pod("default", "web-2", "n2", "web")).unwrap();
    pod_api
        .create(&PostParams::default(), &new_pod)
        .await
        .unwrap();
    Api::<Node>::all(client.clone())
        .delete("n2", &DeleteParams::default())
        .await
        .unwrap();
    fake.modify("Node", "", "n1", |n| {
        n["metadata"]["labels"]["autoscaler.vpsie.com/offering"] = json!("2-4");
    });
    // A pod evicted through the API disappears from the store.
    pod_api
        .evict("web-1", &EvictParams::default())
        .await
        .unwrap();

    eventually("web-2 in the pod store", || {
        pods.state().iter().any(|p| p.name_any() == "web-2")
    })
    .await;
    eventually("web-1 gone from the pod store", || {
        !pods.state().iter().any(|p| p.name_any() == "web-1")
    })
    .await;
    eventually("n2 gone from the node store", || nodes.state().len() == 1).await;
    eventually("n1 relabelled in the node store", || {
        nodes.state()[0]
            .labels()
            .get("autoscaler.vpsie.com/offering")
            .map(String::as_str)
            == Some("2-4")
    })
    .await;
    let web2 = pods
        .state()
        .into_iter()
        .find(|p| p.name_any() == "web-2")
        .unwrap();
    assert_eq!(
        web2.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    // The watchers used real watch requests.
    let watches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .collect();
    assert!(watches.iter().any(|r| r.path == "/api/v1/nodes"));
    assert!(watches.iter().any(|r| r.path == "/api/v1/pods"));
    assert!(
        watches
            .iter()
            .all(|r| r.query_param("resourceVersion").is_some())
    );
    node_task.abort();
    pod_task.abort();
}

#[tokio::test]
async fn watch_replays_after_resource_version_honours_timeout_and_selectors() {
    let fake = KubeFake::start().await;
    fake.apply(pod("default", "a", "n1", "web"));
    let rv = fake.resource_version().to_string();
    fake.apply(pod("default", "b", "n1", "web"));
    fake.apply(pod("default", "c", "n1", "db"));
    fake.modify("Pod", "default", "c", |p| {
        p["metadata"]["labels"]["app"] = json!("web")
    });
    fake.modify("Pod", "default", "a", |p| {
        p["metadata"]["labels"]["app"] = json!("db")
    });
    fake.remove("Pod", "default", "b");

    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let started = std::time::Instant::now();
    let stream = pods
        .watch(&WatchParams::default().labels("app=web").timeout(1), &rv)
        .await
        .unwrap();
    let mut stream = Box::pin(stream);
    let mut seen = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev.unwrap() {
            WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.name_any())),
            WatchEvent::Modified(p) => seen.push(format!("MODIFIED {}", p.name_any())),
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.name_any())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    // The stream ended by itself after timeoutSeconds.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // b added; c relabelled into the selection; a relabelled out of it; b deleted.
    assert_eq!(seen, ["ADDED b", "ADDED c", "DELETED a", "DELETED b"]);

    // Without a resourceVersion ("0"): the current state as ADDED first.
    let stream = pods
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap();
    let names: Vec<String> = Box::pin(stream)
        .filter_map(|e| match e.unwrap() {
            WatchEvent::Added(p) => Some(p.name_any()),
            _ => None,
        })
        .collect()
        .await;
    assert_eq!(names, ["a", "c"]);
}

#[tokio::test]
async fn lease_create_get_replace() {
    let fake = KubeFake::start().await;
    let leases: Api<Lease> = Api::namespaced(fake.client(), "default");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "vpsie-autoscaler-controller" },
        "spec": {
            "holderIdentity": "controller-a",
            "leaseDurationSeconds": 15,
            "acquireTime": "2025-01-01T00:00:00.000000Z",
            "renewTime": "2025-01-01T00:00:00.000000Z",
            "leaseTransitions": 0,
        },
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut got = leases.get("vpsie-autoscaler-controller").await.unwrap();
    assert_eq!(
        got.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("controller-a")
    );

    // Another replica takes over with the resourceVersion it read.
    let stale = got.clone();
    got.spec.as_mut().unwrap().holder_identity = Some("controller-b".into());
    got.spec.as_mut().unwrap().lease_transitions = Some(1);
    let taken = leases
        .replace("vpsie-autoscaler-controller", &PostParams::default(), &got)
        .await
        .unwrap();
    assert_eq!(
        taken.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("controller-b")
    );
    // The first replica's renewal from its stale copy loses.
    let st = api_status(
        leases
            .replace(
                "vpsie-autoscaler-controller",
                &PostParams::default(),
                &stale,
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 409);
    assert_eq!(
        fake.get("Lease", "default", "vpsie-autoscaler-controller")
            .unwrap()["spec"]["holderIdentity"],
        "controller-b"
    );
    assert!(
        fake.writes()
            .iter()
            .any(|r| r.method == "PUT" && r.path == "/apis/coordination.k8s.io/v1/namespaces/default/leases/vpsie-autoscaler-controller")
    );
}

#[tokio::test]
async fn recorder_events_land_in_the_fake() {
    let fake = KubeFake::start().await;
    fake.apply(node("n1", "general"));
    let client = fake.client();
    let n1 = Api::<Node>::all(client.clone()).get("n1").await.unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "vpsie-autoscaler-controller".into(),
            instance: Some("controller-a".into()),
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "ScaleDownBlocked".into(),
        note: Some("blocked: pod default/web-1 has no place to go".into()),
        action: "ScaleDown".into(),
        secondary: None,
    };
    let reference = n1.object_ref(&());
    recorder.publish(&ev, &reference).await.unwrap();
    // The same event again is a series: the recorder patches the event it created.
    recorder.publish(&ev, &reference).await.unwrap();

    let stored = fake.list("Event.events.k8s.io");
    assert_eq!(stored.len(), 1, "{stored:#?}");
    let e = &stored[0];
    assert_eq!(e["metadata"]["namespace"], "default");
    assert_eq!(e["reason"], "ScaleDownBlocked");
    assert_eq!(e["regarding"]["kind"], "Node");
    assert_eq!(e["regarding"]["name"], "n1");
    assert_eq!(e["reportingController"], "vpsie-autoscaler-controller");
    assert_eq!(e["series"]["count"], 2);
    assert!(
        fake.list("Event").is_empty(),
        "core/v1 events are stored apart"
    );

    let events: Api<K8sEvent> = Api::namespaced(client, "default");
    let listed = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items[0].note.as_deref(),
        Some("blocked: pod default/web-1 has no place to go")
    );
    let writes: Vec<_> = fake
        .writes()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        writes[0],
        (
            "POST".to_string(),
            "/apis/events.k8s.io/v1/namespaces/default/events".to_string()
        )
    );
    assert_eq!(writes[1].0, "PATCH");
}

#[tokio::test]
async fn kubeconfig_file_works_for_a_separately_configured_client() {
    let fake = KubeFake::start().await;
    fake.apply(node("n1", "general"));
    let dir = std::env::temp_dir().join(format!("kube-fake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = fake.kubeconfig_file(&dir);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(nodes.items.len(), 1);
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn status_subresource_finalizers_apply_and_write_log() {
    let fake = KubeFake::start().await;
    fake.apply(node("n1", "general"));
    let nodes: Api<Node> = Api::all(fake.client());

    // Status changes through the main resource are dropped; through /status they land.
    let not_ready = json!({ "status": { "conditions": [{ "type": "Ready", "status": "False" }] } });
    nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(&not_ready))
        .await
        .unwrap();
    assert_eq!(
        fake.get("Node", "", "n1").unwrap()["status"]["conditions"][0]["status"],
        "True"
    );
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&not_ready))
        .await
        .unwrap();
    assert_eq!(
        fake.get("Node", "", "n1").unwrap()["status"]["conditions"][0]["status"],
        "False"
    );

    // A no-op patch commits nothing.
    let rv = fake.resource_version();
    nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(json!({})))
        .await
        .unwrap();
    assert_eq!(fake.resource_version(), rv);

    // Server-side apply creates, then merges.
    let cms: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let pp = PatchParams::apply("controller");
    let applied = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cfg" }, "data": { "a": "1" } });
    cms.patch("cfg", &pp, &Patch::Apply(&applied))
        .await
        .unwrap();
    let applied = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cfg" }, "data": { "b": "2" } });
    let cm = cms
        .patch("cfg", &pp, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap().len(), 2);

    // Finalizers hold a deletion until they are removed.
    fake.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "held", "namespace": "default", "finalizers": ["example.com/hold"] },
    }));
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = fake.get("cm", "default", "held").unwrap();
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    assert!(fake.get("cm", "default", "held").is_none());

    // The log: GETs are not writes; writes carry their body and content type.
    fake.clear_requests();
    nodes.get("n1").await.unwrap();
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "unschedulable": true } })),
        )
        .await
        .unwrap();
    let writes = fake.writes();
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(writes[0].path, "/api/v1/nodes/n1");
    assert_eq!(
        writes[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        writes[0].body.as_ref().unwrap()["spec"]["unschedulable"],
        true
    );
}

#[tokio::test]
async fn injected_failures_and_pdbs_created_through_the_api() {
    let fake = KubeFake::start().await;
    fake.apply(node("n1", "general"));
    fake.fail_requests(Some("GET"), "/api/v1/nodes/n1", 1, 503);
    let nodes: Api<Node> = Api::all(fake.client());
    assert_eq!(api_status(nodes.get("n1").await.unwrap_err()).code, 503);
    nodes.get("n1").await.unwrap();

    // A PDB created through the API has no computed status yet: it allows no disruption.
    fake.apply(pod("default", "web-1", "n1", "web"));
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(fake.client());
    let mut body: PodDisruptionBudget =
        serde_json::from_value(pdb("default", "web-pdb", "web", 5)).unwrap();
    body.metadata.namespace = None;
    let created = pdbs.create(&PostParams::default(), &body).await.unwrap();
    assert_eq!(created.status.as_ref().unwrap().disruptions_allowed, 0);
    assert_eq!(created.metadata.generation, Some(1));
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    assert_eq!(
        api_status(
            pods.evict("web-1", &EvictParams::default())
                .await
                .unwrap_err()
        )
        .code,
        429
    );
    fake.set_pdb_disruptions_allowed("default", "web-pdb", 1);
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
}

#[tokio::test]
async fn streaming_list_watcher_resumes_after_server_side_timeouts() {
    let fake = KubeFake::start().await;
    fake.apply(node("n1", "general"));
    let client = fake.client();
    // sendInitialEvents (streaming list) instead of list+watch, and a 1 s server-side timeout so
    // the watcher has to re-watch from its last resourceVersion.
    let config = watcher::Config::default().streaming_lists().timeout(1);
    let (nodes, writer) = reflector::store::<Node>();
    let stream = reflector(writer, watcher(Api::<Node>::all(client), config));
    let task = tokio::spawn(async move {
        let mut s = Box::pin(stream);
        while let Some(ev) = s.next().await {
            ev.expect("watcher event");
        }
    });
    tokio::time::timeout(Duration::from_secs(5), nodes.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nodes.state().len(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    fake.apply(node("n2", "general"));
    eventually("n2 in the store after a re-watch", || {
        nodes.state().len() == 2
    })
    .await;
    let watches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .collect();
    assert!(watches.len() >= 2, "{watches:#?}");
    assert_eq!(
        watches[0].query_param("sendInitialEvents").as_deref(),
        Some("true")
    );
    assert!(
        watches[1..]
            .iter()
            .all(|r| r.query_param("resourceVersion").as_deref() != Some("0"))
    );
    task.abort();
}

#[tokio::test]
async fn a_default_configured_kube_client_retries_429_by_itself() {
    let fake = KubeFake::start().await;
    fake.apply(pod("default", "web-1", "n1", "web"));
    fake.fail_evictions("default", "web-1", 2, 429);
    let mut config = fake.config();
    config.default_retry = true;
    let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
    // The client's retry layer absorbs both refusals: the caller only sees the success.
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    let evictions = fake
        .writes()
        .into_iter()
        .filter(|r| r.path.ends_with("/eviction"))
        .count();
    assert_eq!(evictions, 3);
}
