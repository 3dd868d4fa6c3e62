#!/usr/bin/env python3
"""Writes examples/cluster.json: a small cluster in `kubectl get nodes,pods,pdb,ns -A -o json`
form, deterministic, mixing taints, selectors, anti-affinity, spread, PDBs, DaemonSets and
local storage, so every kind of answer shows up."""
import json, random

rng = random.Random(7)
items = []
zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

def node(name, group, offering, cpu, mem, zone, taints=(), extra_labels=None, unschedulable=False):
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "topology.kubernetes.io/zone": zone, "autoscaler.vpsie.com/nodegroup": group,
              "autoscaler.vpsie.com/offering": offering}
    labels.update(extra_labels or {})
    spec = {"providerID": f"vpsie://{name}", "taints": list(taints)}
    if unschedulable:
        spec["unschedulable"] = True
    items.append({"apiVersion": "v1", "kind": "Node",
                  "metadata": {"name": name, "labels": labels, "creationTimestamp": "2026-11-01T10:00:00Z"},
                  "spec": spec,
                  "status": {"capacity": {"cpu": cpu, "memory": mem, "pods": "110"},
                             "allocatable": {"cpu": cpu, "memory": mem, "pods": "110", "ephemeral-storage": "95551679124"},
                             "conditions": [{"type": "Ready", "status": "True"}]}})

for i in range(1, 6):
    node(f"general-{i}", "general", "4-8", "3920m", "7901788Ki", zones[i % 3])
node("db-1", "db", "8-32", "7910m", "32Gi", zones[0], taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}], extra_labels={"disktype": "ssd"})
node("db-2", "db", "8-32", "7910m", "32Gi", zones[1], taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}], extra_labels={"disktype": "ssd"})
node("gpu-1", "gpu", "gpu-16", "15890m", "62Gi", zones[2], taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
items[-1]["status"]["allocatable"]["nvidia.com/gpu"] = "1"
nodes = [it["metadata"]["name"] for it in items]

for ns, team in [("default", None), ("kube-system", None), ("shop", "web"), ("data", "data"), ("ml", "ml")]:
    labels = {"kubernetes.io/metadata.name": ns}
    if team:
        labels["team"] = team
    items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})

def pod(ns, name, node, cpu, mem, labels, owner_kind="ReplicaSet", owner=None, spec_extra=None, annotations=None, volumes=None):
    meta = {"name": name, "namespace": ns, "labels": labels, "uid": f"uid-{ns}-{name}",
            "creationTimestamp": "2026-11-20T10:00:00Z"}
    if owner_kind:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner or name.rsplit("-", 1)[0],
                                    "uid": f"owner-{owner or name}", "controller": True, "blockOwnerDeletion": True}]
    if annotations:
        meta["annotations"] = annotations
    spec = {"nodeName": node, "containers": [{"name": "main", "image": "example/app:1.0",
            "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"memory": mem}}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}
    if volumes:
        spec["volumes"] = volumes
    spec.update(spec_extra or {})
    items.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
                  "status": {"phase": "Running", "podIP": "10.0.0.1"}})

# DaemonSet pods everywhere
for n in nodes:
    pod("kube-system", f"kube-proxy-{n}", n, "100m", "64Mi", {"k8s-app": "kube-proxy"}, owner_kind="DaemonSet", owner="kube-proxy",
        spec_extra={"tolerations": [{"operator": "Exists"}], "hostNetwork": True,
                    "containers": [{"name": "kube-proxy", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                    "ports": [{"containerPort": 10256, "hostPort": 10256, "protocol": "TCP"}]}]})
# coredns with a PDB
pod("kube-system", "coredns-5d78c9869d-abcde", "general-1", "100m", "70Mi", {"k8s-app": "kube-dns"})
items.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
              "metadata": {"name": "coredns", "namespace": "kube-system"},
              "spec": {"minAvailable": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}}},
              "status": {"disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}})
# web frontends: hostname anti-affinity, spread over zones
anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "frontend"}}, "topologyKey": "kubernetes.io/hostname"}]}}
spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
           "labelSelector": {"matchLabels": {"app": "frontend"}}}]
for i, n in enumerate(["general-1", "general-2", "general-3", "general-4"]):
    pod("shop", f"frontend-7c9f8d-{i}", n, "250m", "512Mi", {"app": "frontend", "pod-template-hash": "7c9f8d"},
        spec_extra={"affinity": anti, "topologySpreadConstraints": spread})
items.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "frontend", "namespace": "shop"},
              "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "frontend"}}}, "status": {"disruptionsAllowed": 1}})
# small workers
for i in range(10):
    n = ["general-1", "general-2", "general-3", "general-5"][i % 4]
    pod("shop", f"worker-6b7d9-{i:02d}", n, rng.choice(["100m", "200m", "0.25"]), rng.choice(["128Mi", "256Mi"]),
        {"app": "worker", "pod-template-hash": "6b7d9"})
# a cache with local storage on general-5
pod("shop", "cache-0", "general-5", "500m", "1Gi", {"app": "cache"}, owner_kind="StatefulSet", owner="cache",
    volumes=[{"name": "data", "emptyDir": {}}])
# databases pinned to ssd, tolerating the dedicated taint
for i, n in enumerate(["db-1", "db-2"]):
    pod("data", f"postgres-{i}", n, "3", "12Gi", {"app": "postgres"}, owner_kind="StatefulSet", owner="postgres",
        spec_extra={"nodeSelector": {"disktype": "ssd"},
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]})
# a training job on the GPU node
pod("ml", "train-x7k2p", "gpu-1", "8", "32Gi", {"job-name": "train"}, owner_kind="Job", owner="train",
    spec_extra={"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                "containers": [{"name": "train", "resources": {"requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                                                              "limits": {"nvidia.com/gpu": "1"}}}]})
# a finished job pod
pod("default", "report-28734-abcde", "general-4", "100m", "64Mi", {"job-name": "report"}, owner_kind="Job", owner="report")
items[-1]["status"]["phase"] = "Succeeded"

json.dump({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}},
          open(__file__.replace("make_cluster.py", "cluster.json"), "w"), indent=2)
