#!/usr/bin/env python3
"""Writes examples/cluster.json: a realistic cluster of 30 nodes and a few hundred pods in
`kubectl get nodes,pods,pdb,ns -A -o json` form. Deterministic (fixed seed, no clock), so the
file only changes when this script does.

It mixes what makes scale-down interesting, so every kind of answer shows up in
`controller plan` and `bash examples/demo.sh`:
- node groups general (4-8), compute (8-16), db (8-32, tainted, ssd), gpu (gpu-16, tainted),
  edge (2-4), a group the configuration does not know (legacy) and unlabelled control-plane nodes;
- a protected node (annotation), a scale-down-disabled node (label), a cordoned node, a NotReady
  node, and drifted nodes whose offering label differs from their group's offering (general-11,
  general-12, compute-5) -- see examples/config.yaml;
- DaemonSets everywhere, mirror pods on the control plane, required anti-affinity, topology
  spread, nodeSelectors and tolerations, host ports, PDBs (one exhausted), local storage, an
  unreplicated pod, a pod marked not safe to evict, an unmovable kube-system pod, finished and
  pending pods;
- filler Deployments that bring each node to a chosen utilization.

Run: python3 examples/make_cluster.py
"""
import json
import os
import random

rng = random.Random(20261126)
items = []
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
CREATED = "2026-11-02T09:14:07Z"

# offering -> (allocatable cpu, allocatable memory in Ki, capacity cpu)
OFFERINGS = {
    "2-4": ("1930m", 3785316, "2"),
    "4-8": ("3920m", 7901788, "4"),
    "8-16": ("7910m", 15857556, "8"),
    "8-32": ("7910m", 32669424, "8"),
    "gpu-16": ("15890m", 64951528, "16"),
}


def milli(cpu):
    """Millicores of a quantity string like 250m or 2."""
    return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)


def mebi(mem):
    """MiB of a quantity string like 512Mi, 2Gi or 7901788Ki."""
    if mem.endswith("Gi"):
        return float(mem[:-2]) * 1024
    if mem.endswith("Mi"):
        return float(mem[:-2])
    if mem.endswith("Ki"):
        return float(mem[:-2]) / 1024
    raise ValueError(mem)


def uid():
    return "%08x-%04x-%04x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                          0x4000 | rng.getrandbits(12), 0x8000 | rng.getrandbits(14),
                                          rng.getrandbits(48))


def suffix(n=5):
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


# ---------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------
NODES = {}  # name -> dict(offering, zone, used_milli, used_mib, item)


def node(name, group, offering, zone, taints=(), labels=None, annotations=None,
         unschedulable=False, ready=True):
    cpu, mem_ki, cap_cpu = OFFERINGS[offering]
    all_labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": f"vpsie-{offering}",
        "topology.kubernetes.io/region": "eu-west-1",
        "topology.kubernetes.io/zone": zone,
    }
    if group:
        all_labels["autoscaler.vpsie.com/nodegroup"] = group
        all_labels["autoscaler.vpsie.com/offering"] = offering
    all_labels.update(labels or {})
    meta = {"name": name, "uid": uid(), "resourceVersion": str(rng.randint(100000, 999999)),
            "creationTimestamp": CREATED, "labels": all_labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}}
    meta["annotations"].update(annotations or {})
    spec = {"providerID": f"vpsie://{uid()}", "podCIDR": f"10.244.{len(NODES)}.0/24"}
    if taints:
        spec["taints"] = list(taints)
    if unschedulable:
        spec["unschedulable"] = True
        spec.setdefault("taints", []).append(
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
             "timeAdded": "2026-11-25T16:40:00Z"})
    if not ready:
        spec.setdefault("taints", []).extend([
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule",
             "timeAdded": "2026-11-26T07:58:12Z"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
             "timeAdded": "2026-11-26T07:58:17Z"}])
    status = "True" if ready else "Unknown"
    item = {
        "apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec,
        "status": {
            "capacity": {"cpu": cap_cpu, "memory": f"{mem_ki + 102400}Ki", "pods": "110",
                         "ephemeral-storage": "101430960Ki", "hugepages-2Mi": "0"},
            "allocatable": {"cpu": cpu, "memory": f"{mem_ki}Ki", "pods": "110",
                            "ephemeral-storage": "93478772582", "hugepages-2Mi": "0"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
                {"type": "Ready", "status": status,
                 "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                 "lastHeartbeatTime": "2026-11-26T08:30:00Z"},
            ],
            "addresses": [{"type": "InternalIP", "address": f"10.10.{len(NODES) // 250}.{10 + len(NODES)}"},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.33.4", "containerRuntimeVersion": "containerd://1.7.27",
                         "osImage": "Ubuntu 24.04.1 LTS", "architecture": "amd64"},
        },
    }
    items.append(item)
    NODES[name] = {"offering": offering, "zone": zone, "cpu": milli(cpu),
                   "mem": mem_ki / 1024, "used_cpu": 0, "used_mem": 0.0, "group": group}


DB_TAINT = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}

for i in range(1, 4):
    node(f"cp-{i}", None, "4-8", ZONES[i - 1], taints=[CP_TAINT],
         labels={"node-role.kubernetes.io/control-plane": ""})
for i in range(1, 14):
    name = f"general-{i:02d}"
    offering = "2-4" if i in (11, 12) else "4-8"      # drifted: the group wants 4-8
    node(name, "general", offering, ZONES[i % 3],
         annotations={"autoscaler.vpsie.com/protected": "true"} if i == 7 else None,
         unschedulable=(i == 9))
for i in range(1, 6):
    node(f"compute-{i}", "compute", "4-8" if i == 5 else "8-16", ZONES[i % 3],  # compute-5 drifted
         ready=(i != 4))
for i in range(1, 4):
    node(f"db-{i}", "db", "8-32", ZONES[i - 1], taints=[DB_TAINT], labels={"disktype": "ssd"})
for i in range(1, 3):
    node(f"gpu-{i}", "gpu", "gpu-16", ZONES[i], taints=[GPU_TAINT],
         labels={"nvidia.com/gpu.present": "true"})
    items[-1]["status"]["allocatable"]["nvidia.com/gpu"] = "1"
    items[-1]["status"]["capacity"]["nvidia.com/gpu"] = "1"
for i in range(1, 4):
    node(f"edge-{i}", "edge", "2-4", ZONES[i - 1], labels={
        "node-role.kubernetes.io/ingress": "",
        **({"autoscaler.vpsie.com/scale-down-disabled": "true"} if i == 3 else {})})
node("legacy-1", "legacy", "4-8", ZONES[0])
NODE_NAMES = list(NODES)

# ---------------------------------------------------------------------------------------------
# Namespaces
# ---------------------------------------------------------------------------------------------
NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease", "vpsie-system", "ingress",
              "monitoring", "shop", "data", "ml", "batch", "analytics", "team-a", "team-b"]
for ns in NAMESPACES:
    labels = {"kubernetes.io/metadata.name": ns}
    if ns.startswith("team-") or ns in ("shop", "data", "ml", "analytics"):
        labels["tenant"] = "apps"
    items.append({"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": ns, "uid": uid(), "creationTimestamp": CREATED, "labels": labels},
                  "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})

# ---------------------------------------------------------------------------------------------
# Pods
# ---------------------------------------------------------------------------------------------
NOT_READY_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]


def pod(ns, name, node_name, cpu, mem, labels, owner_kind="ReplicaSet", owner=None, spec_extra=None,
        annotations=None, volumes=None, phase="Running", ports=None, containers=None):
    meta = {"name": name, "namespace": ns, "uid": uid(), "resourceVersion": str(rng.randint(100000, 999999)),
            "creationTimestamp": "2026-11-%02dT%02d:%02d:%02dZ" % (rng.randint(3, 25), rng.randint(0, 23),
                                                                  rng.randint(0, 59), rng.randint(0, 59)),
            "labels": labels}
    if owner_kind:
        meta["ownerReferences"] = [{"apiVersion": "v1" if owner_kind == "Node" else
                                    ("batch/v1" if owner_kind == "Job" else "apps/v1"),
                                    "kind": owner_kind, "name": owner, "uid": f"{owner}-uid",
                                    "controller": True, "blockOwnerDeletion": True}]
    if annotations:
        meta["annotations"] = annotations
    if containers is None:
        image = labels.get("app") or labels.get("app.kubernetes.io/name") or name.split("-")[0]
        container = {"name": image, "image": f"registry.example.com/{ns}/{image}:1.{rng.randint(0, 9)}",
                     "imagePullPolicy": "IfNotPresent",
                     "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"memory": mem}},
                     "terminationMessagePath": "/dev/termination-log"}
        if ports:
            container["ports"] = ports
        containers = [container]
    spec = {"containers": containers, "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "priority": 0, "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": list(NOT_READY_TOLERATIONS)}
    if node_name:
        spec["nodeName"] = node_name
    if volumes:
        spec["volumes"] = volumes
    spec.update(spec_extra or {})
    status = {"phase": phase, "qosClass": "Burstable", "startTime": meta["creationTimestamp"]}
    if node_name:
        status["hostIP"] = f"10.10.0.{10 + NODE_NAMES.index(node_name)}"
        status["podIP"] = f"10.244.{NODE_NAMES.index(node_name)}.{rng.randint(2, 250)}"
    items.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status})
    if node_name and phase in ("Running", "Pending") and owner_kind not in ("DaemonSet", "Node"):
        total_cpu = sum(milli(c["resources"]["requests"].get("cpu", "0")) for c in containers)
        total_mem = sum(mebi(c["resources"]["requests"].get("memory", "0Mi")) for c in containers)
        NODES[node_name]["used_cpu"] += total_cpu
        NODES[node_name]["used_mem"] += total_mem


def deployment_pod(ns, app, node_name, cpu, mem, extra_labels=None, **kwargs):
    rs = f"{app}-{TEMPLATE_HASH.setdefault((ns, app), suffix(9))}"
    labels = {"app.kubernetes.io/name": app, "app": app, "pod-template-hash": rs.rsplit("-", 1)[1]}
    labels.update(extra_labels or {})
    pod(ns, f"{rs}-{suffix()}", node_name, cpu, mem, labels, owner=rs, **kwargs)


TEMPLATE_HASH = {}


def pdb(ns, name, selector, allowed, spec_extra):
    items.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                  "metadata": {"name": name, "namespace": ns, "uid": uid(), "creationTimestamp": CREATED},
                  "spec": {"selector": {"matchLabels": selector}, **spec_extra},
                  "status": {"disruptionsAllowed": allowed, "observedGeneration": 1}})


# DaemonSets: every node (they tolerate everything).
DAEMONSETS = [("kube-system", "kube-proxy", "100m", "64Mi", [{"containerPort": 10256, "hostPort": 10256, "protocol": "TCP"}]),
              ("kube-system", "cilium", "100m", "128Mi", [{"containerPort": 9962, "hostPort": 9962, "protocol": "TCP"}]),
              ("monitoring", "node-exporter", "50m", "64Mi", [{"containerPort": 9100, "hostPort": 9100, "protocol": "TCP"}]),
              ("monitoring", "fluent-bit", "50m", "100Mi", None),
              ("kube-system", "vpsie-csi-node", "20m", "48Mi", None)]
for ns, ds, cpu, mem, ports in DAEMONSETS:
    for n in NODE_NAMES:
        pod(ns, f"{ds}-{suffix()}", n, cpu, mem, {"app.kubernetes.io/name": ds, "controller-revision-hash": "7b9c5d8f4"},
            owner_kind="DaemonSet", owner=ds, ports=ports,
            spec_extra={"tolerations": [{"operator": "Exists"}], "hostNetwork": ports is not None,
                        "priorityClassName": "system-node-critical", "priority": 2000001000})

# Control plane: static (mirror) pods.
for i in range(1, 4):
    cp = f"cp-{i}"
    for component, cpu in [("etcd", "100m"), ("kube-apiserver", "250m"),
                           ("kube-controller-manager", "200m"), ("kube-scheduler", "100m")]:
        pod("kube-system", f"{component}-{cp}", cp, cpu, "128Mi", {"component": component, "tier": "control-plane"},
            owner_kind="Node", owner=cp,
            annotations={"kubernetes.io/config.mirror": uid().replace("-", "")[:32],
                         "kubernetes.io/config.source": "file"},
            spec_extra={"hostNetwork": True, "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
                        "priorityClassName": "system-node-critical", "priority": 2000001000})

# kube-system add-ons: coredns (with a PDB) and metrics-server (no PDB: unmovable kube-system pod).
for n in ["general-01", "general-10"]:
    deployment_pod("kube-system", "coredns", n, "100m", "70Mi", {"k8s-app": "kube-dns"},
                   spec_extra={"priorityClassName": "system-cluster-critical", "priority": 2000000000})
pdb("kube-system", "coredns", {"k8s-app": "kube-dns"}, 1, {"minAvailable": 1})
deployment_pod("kube-system", "metrics-server", "general-02", "100m", "200Mi", {"k8s-app": "metrics-server"},
               spec_extra={"priorityClassName": "system-cluster-critical", "priority": 2000000000})

# The autoscaler itself.
for n, app in [("general-01", "safety-service"), ("general-10", "safety-service"),
               ("general-13", "rebalancer-service"), ("general-01", "controller"), ("general-10", "controller")]:
    deployment_pod("vpsie-system", app, n, "200m", "256Mi")

# Ingress: host ports 80/443, one per edge node, pinned to the edge group.
for i in range(1, 4):
    deployment_pod("ingress", "ingress-nginx", f"edge-{i}", "500m", "512Mi", {"app.kubernetes.io/component": "controller"},
                   ports=[{"name": "http", "containerPort": 80, "hostPort": 80, "protocol": "TCP"},
                          {"name": "https", "containerPort": 443, "hostPort": 443, "protocol": "TCP"}],
                   spec_extra={"nodeSelector": {"autoscaler.vpsie.com/nodegroup": "edge"}})
pdb("ingress", "ingress-nginx", {"app": "ingress-nginx"}, 1, {"maxUnavailable": 1})

# shop: frontends with required hostname anti-affinity and zone spread; a PDB allowing one.
anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "frontend"}}, "topologyKey": "kubernetes.io/hostname"}]}}
spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
           "labelSelector": {"matchLabels": {"app": "frontend"}}}]
for n in ["general-01", "general-02", "general-06", "general-08", "general-10", "general-12"]:
    deployment_pod("shop", "frontend", n, "300m", "512Mi", spec_extra={"affinity": anti, "topologySpreadConstraints": spread})
pdb("shop", "frontend", {"app": "frontend"}, 1, {"maxUnavailable": 1})

# shop: an API spread hard over zones (DoNotSchedule); a PDB allowing two.
api_spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "api"}}, "matchLabelKeys": ["pod-template-hash"]}]
for n in ["general-01", "general-02", "general-03", "general-05", "general-06", "general-10",
          "compute-1", "compute-2", "compute-3"]:
    deployment_pod("shop", "api", n, "250m", "384Mi", spec_extra={"topologySpreadConstraints": api_spread})
pdb("shop", "api", {"app": "api"}, 2, {"maxUnavailable": "20%"})

# shop: a cache with local storage (emptyDir), and one that declares its volume safe to evict.
pod("shop", "cache-0", "general-08", "500m", "1Gi", {"app": "cache", "statefulset.kubernetes.io/pod-name": "cache-0"},
    owner_kind="StatefulSet", owner="cache", volumes=[{"name": "data", "emptyDir": {}}])
pod("shop", "cache-1", "general-04", "500m", "1Gi", {"app": "cache", "statefulset.kubernetes.io/pod-name": "cache-1"},
    owner_kind="StatefulSet", owner="cache", volumes=[{"name": "data", "emptyDir": {}}],
    annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes": "data"})
# shop: redis on a PVC whose budget is exhausted (one replica is unhealthy).
for i, n in enumerate(["general-13", "general-10", "general-01"]):
    pod("shop", f"cart-redis-{i}", n, "250m", "512Mi", {"app": "cart-redis"}, owner_kind="StatefulSet",
        owner="cart-redis", volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": f"data-cart-redis-{i}"}}])
pdb("shop", "cart-redis", {"app": "cart-redis"}, 0, {"minAvailable": 2})

# data: postgres on the db nodes (nodeSelector ssd, tolerating the taint, one per host).
pg_anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "postgres"}}, "topologyKey": "kubernetes.io/hostname"}]}}
for i in range(3):
    pod("data", f"postgres-{i}", f"db-{i + 1}", "2500m", "12Gi", {"app": "postgres"}, owner_kind="StatefulSet",
        owner="postgres", volumes=[{"name": "pgdata", "persistentVolumeClaim": {"claimName": f"pgdata-postgres-{i}"}}],
        spec_extra={"nodeSelector": {"disktype": "ssd"}, "affinity": pg_anti,
                    "tolerations": NOT_READY_TOLERATIONS + [DB_TAINT | {"operator": "Equal"}]})
pdb("data", "postgres", {"app": "postgres"}, 1, {"maxUnavailable": 1})
for n in ["general-04", "general-13"]:
    deployment_pod("data", "pgbouncer", n, "100m", "64Mi")
# data: kafka on the compute group, one broker per host.
kafka_anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "kafka"}}, "topologyKey": "kubernetes.io/hostname"}]}}
for i in range(3):
    pod("data", f"kafka-{i}", f"compute-{i + 1}", "1500m", "4Gi", {"app": "kafka"}, owner_kind="StatefulSet",
        owner="kafka", volumes=[{"name": "logs", "persistentVolumeClaim": {"claimName": f"logs-kafka-{i}"}}],
        spec_extra={"nodeSelector": {"autoscaler.vpsie.com/nodegroup": "compute"}, "affinity": kafka_anti})
pdb("data", "kafka", {"app": "kafka"}, 1, {"maxUnavailable": 1})

# ml: a training job on gpu-1, a notebook nobody manages on gpu-2.
gpu_tolerations = NOT_READY_TOLERATIONS + [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
pod("ml", f"train-resnet-{suffix()}", "gpu-1", "8", "40Gi", {"job-name": "train-resnet"}, owner_kind="Job",
    owner="train-resnet", spec_extra={"tolerations": gpu_tolerations},
    containers=[{"name": "train", "image": "registry.example.com/ml/train:3.1",
                 "resources": {"requests": {"cpu": "8", "memory": "40Gi", "nvidia.com/gpu": "1"},
                               "limits": {"nvidia.com/gpu": "1"}}}])
pod("ml", "notebook-alice", "gpu-2", "2", "8Gi", {"app": "notebook"}, owner_kind=None,
    spec_extra={"tolerations": gpu_tolerations},
    containers=[{"name": "notebook", "image": "jupyter/scipy-notebook:2026-11",
                 "resources": {"requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
                               "limits": {"nvidia.com/gpu": "1"}}}])

# default: a debugging pod without a controller; team-b: a pod that must not be evicted.
pod("default", "debug-shell", "general-06", "100m", "128Mi", {"run": "debug-shell"}, owner_kind=None)
deployment_pod("team-b", "ledger", "general-11", "400m", "768Mi",
               annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"})
# Pending: nothing has room for it.
deployment_pod("team-b", "report-builder", None, "6", "24Gi", phase="Pending")

# batch: finished job pods (they count nowhere) and a few running ones.
for i in range(10):
    n = rng.choice(["general-03", "general-04", "general-05", "compute-1", "compute-2", "compute-3"])
    job = f"nightly-export-2958{i:02d}"
    pod("batch", f"{job}-{suffix()}", n, "500m", "1Gi", {"job-name": job}, owner_kind="Job", owner=job,
        phase="Failed" if i % 5 == 4 else "Succeeded")
for i in range(4):
    job = f"reindex-29588{i}"
    pod("batch", f"{job}-{suffix()}", f"compute-{[1, 3, 5, 2][i]}", "1", "2Gi", {"job-name": job},
        owner_kind="Job", owner=job)

# analytics: spark executors on compute.
for i in range(10):
    n = ["compute-1", "compute-1", "compute-3", "compute-3", "compute-3", "compute-2", "compute-5",
         "compute-1", "compute-4", "compute-3"][i]
    pod("analytics", f"spark-exec-{suffix(8)}", n, "750m", "2Gi", {"spark-role": "executor", "app": "spark"},
        owner_kind="ReplicaSet", owner="spark-executors-6c8d")

# monitoring: prometheus on a PVC, grafana, alertmanager.
pod("monitoring", "prometheus-0", "general-10", "500m", "2Gi", {"app": "prometheus"}, owner_kind="StatefulSet",
    owner="prometheus", volumes=[{"name": "tsdb", "persistentVolumeClaim": {"claimName": "tsdb-prometheus-0"}}])
deployment_pod("monitoring", "grafana", "general-12", "100m", "256Mi")
for i, n in enumerate(["general-01", "general-05"]):
    pod("monitoring", f"alertmanager-{i}", n, "50m", "128Mi", {"app": "alertmanager"}, owner_kind="StatefulSet",
        owner="alertmanager")

# legacy-1: an old service still running on the unconfigured group.
for _ in range(3):
    deployment_pod("team-a", "legacy-billing", "legacy-1", "300m", "512Mi")

# Filler Deployments: bring each node to its target utilization (max of cpu and memory).
TARGET = {
    "general-01": 0.74, "general-02": 0.31, "general-03": 0.13, "general-04": 0.19, "general-05": 0.24,
    "general-06": 0.35, "general-07": 0.21, "general-08": 0.42, "general-09": 0.27, "general-10": 0.86,
    "general-11": 0.66, "general-12": 0.61, "general-13": 0.46,
    "compute-1": 0.78, "compute-2": 0.34, "compute-3": 0.62, "compute-4": 0.30, "compute-5": 0.58,
    "legacy-1": 0.30,
}
FILLERS = [("team-a", "web", ["100m", "150m", "200m"], ["128Mi", "192Mi", "256Mi"]),
           ("team-a", "session-gc", ["20m", "50m"], ["32Mi", "64Mi"]),
           ("team-b", "webhooks", ["50m"], ["64Mi", "96Mi"]),
           ("shop", "image-resizer", ["50m", "100m"], ["96Mi", "128Mi"]),
           ("team-a", "checkout", ["200m", "250m"], ["256Mi", "384Mi"]),
           ("team-a", "search", ["250m", "300m"], ["512Mi", "768Mi"]),
           ("team-b", "orders", ["100m", "200m"], ["256Mi", "320Mi"]),
           ("team-b", "payments", ["150m", "250m"], ["256Mi"]),
           ("team-b", "notifications", ["50m", "100m"], ["96Mi", "128Mi"]),
           ("shop", "worker", ["100m", "200m", "250m"], ["128Mi", "256Mi"]),
           ("shop", "recommender", ["300m", "400m"], ["640Mi", "768Mi"])]
for n in sorted(TARGET):
    info = NODES[n]
    fillers = FILLERS if info["group"] != "compute" else FILLERS[7:] + [("analytics", "etl", ["500m", "750m"], ["1Gi", "1536Mi"])]
    for _ in range(1000):
        for _attempt in range(20):
            ns, app, cpus, mems = rng.choice(fillers)
            cpu, mem = rng.choice(cpus), rng.choice(mems)
            after = max((info["used_cpu"] + milli(cpu)) / info["cpu"], (info["used_mem"] + mebi(mem)) / info["mem"])
            if after <= TARGET[n]:
                deployment_pod(ns, app, n, cpu, mem)
                break
        else:
            break

json.dump({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}},
          open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster.json"), "w"), indent=2)
print(f"wrote examples/cluster.json: {sum(1 for i in items if i['kind'] == 'Node')} nodes, "
      f"{sum(1 for i in items if i['kind'] == 'Pod')} pods, "
      f"{sum(1 for i in items if i['kind'] == 'PodDisruptionBudget')} PDBs")
