"""Lab objects in Kubernetes shape (what `get -o json|yaml` prints and the store keeps)."""

from __future__ import annotations

from typing import Any

from podnet.model.lab import Lab, LabNode, PlacedPod
from podnet.model.workloads import Namespace

KUBELET_VERSION = "v1.32.0-podnet"


def node_object(lab: Lab, n: LabNode, ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": {"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux",
                                                 **n.labels},
                     "annotations": {"podnet.dev/netns": n.netns,
                                     "flannel.alpha.coreos.com/public-ip": str(n.ip),
                                     "flannel.alpha.coreos.com/backend-type": lab.cluster.networking.backend}},
        "spec": {"podCIDR": str(n.pod_cidr), "podCIDRs": [str(n.pod_cidr)]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": str(n.ip)}, {"type": "Hostname", "address": n.name}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "reason": "KubeletReady" if ready else "NetworkUnavailable"}],
            "nodeInfo": {"kubeletVersion": KUBELET_VERSION, "containerRuntimeVersion": "podnet://0.1",
                         "osImage": "podnet network namespace", "operatingSystem": "linux",
                         "architecture": "amd64"},
        },
    }


def pod_object(lab: Lab, p: PlacedPod, container_state: dict[str, bool] | None = None) -> dict[str, Any]:
    """``container_state`` maps container name -> running; None means not known (reported as running)."""
    pod = p.pod
    meta: dict[str, Any] = pod.meta.to_dict()
    meta.setdefault("labels", {})
    meta["annotations"] = {**pod.meta.annotations, "podnet.dev/netns": p.netns}
    if p.host_veth:
        meta["annotations"]["podnet.dev/host-veth"] = p.host_veth
    if pod.owner:
        kind, _, name = pod.owner.partition("/")
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": True}]
    containers = []
    statuses = []
    for c in pod.spec.containers:
        cd: dict[str, Any] = {"name": c.name}
        if c.command:
            cd["command"] = list(c.command)
        if c.args:
            cd["args"] = list(c.args)
        if c.ports:
            cd["ports"] = [{"containerPort": cp.container_port, "protocol": cp.protocol,
                            **({"name": cp.name} if cp.name else {})} for cp in c.ports]
        containers.append(cd)
        running = True if container_state is None else container_state.get(c.name, False)
        statuses.append({"name": c.name, "ready": running, "restartCount": 0, "started": running,
                         "state": {"running": {}} if running else {"terminated": {"exitCode": 1,
                                                                                   "reason": "Error"}}})
    ready = all(s["ready"] for s in statuses)
    spec: dict[str, Any] = {"nodeName": p.node, "containers": containers}
    if p.host_network:
        spec["hostNetwork"] = True
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
        "status": {"phase": "Running" if ready else "Failed" if not any(s["ready"] for s in statuses)
                   else "Running",
                   "podIP": str(p.ip), "podIPs": [{"ip": str(p.ip)}], "hostIP": str(lab.node(p.node).ip),
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "containerStatuses": statuses},
    }


def namespace_object(ns: Namespace) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns.meta.name, "labels": ns.labels, **(
                {"annotations": ns.meta.annotations} if ns.meta.annotations else {})},
            "status": {"phase": "Active"}}


def list_object(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}
