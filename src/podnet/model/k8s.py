"""Lab objects in Kubernetes shape (what `get -o json|yaml` prints and the store keeps)."""

from __future__ import annotations

from typing import Any

from podnet.model.lab import Lab, LabNode, PlacedPod
from podnet.model.service import SERVICE_NAME_LABEL, EndpointSlice
from podnet.model.services import ResolvedService
from podnet.model.workloads import Namespace

KUBELET_VERSION = "v1.32.0-podnet"
# every NodeSystemInfo field (the official Python client rejects nodes lacking one)
NODE_INFO = {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
             "osImage": "podnet network namespace", "containerRuntimeVersion": "podnet://0.1",
             "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux",
             "architecture": "amd64"}
NODE_CAPACITY = {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "10Gi"}
BUILTIN_IMAGE = "podnet/builtin-server"   # containers have no image: these name what runs
COMMAND_IMAGE = "podnet/command"


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
            "nodeInfo": dict(NODE_INFO),
            "capacity": dict(NODE_CAPACITY), "allocatable": dict(NODE_CAPACITY),
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
        cd: dict[str, Any] = {"name": c.name, "image": BUILTIN_IMAGE if not c.argv else COMMAND_IMAGE}
        if c.command:
            cd["command"] = list(c.command)
        if c.args:
            cd["args"] = list(c.args)
        if c.ports:
            cd["ports"] = [{"containerPort": cp.container_port, "protocol": cp.protocol,
                            **({"name": cp.name} if cp.name else {})} for cp in c.ports]
        containers.append(cd)
        running = True if container_state is None else container_state.get(c.name, False)
        statuses.append({"name": c.name, "image": cd["image"], "imageID": "", "ready": running, "restartCount": 0,
                         "started": running,
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


def service_object(rs: ResolvedService) -> dict[str, Any]:
    """A Service as the API server returns it: clusterIP(s), nodePorts and LB ingress filled in."""
    s = rs.service
    ports = []
    for i, p in enumerate(s.ports):
        port: dict[str, Any] = {"protocol": p.protocol, "port": p.port,
                                "targetPort": p.target_port if p.target_port is not None else p.port}
        if p.name:
            port = {"name": p.name, **port}
        if i < len(rs.node_ports) and rs.node_ports[i]:
            port["nodePort"] = rs.node_ports[i]
        ports.append(port)
    spec: dict[str, Any] = {"type": s.type, "ports": ports}
    if s.selector is not None:
        spec["selector"] = dict(s.selector)
    ip = "None" if s.headless else rs.cluster_ip
    if ip:
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
    if s.external_ips:
        spec["externalIPs"] = [str(a) for a in s.external_ips]
    spec["sessionAffinity"] = s.session_affinity
    if s.session_affinity == "ClientIP":
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": s.affinity_timeout}}
    if s.type in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = s.external_traffic_policy
    spec["internalTrafficPolicy"] = s.internal_traffic_policy
    if rs.health_check_node_port:
        spec["healthCheckNodePort"] = rs.health_check_node_port
    if s.lb_source_ranges:
        spec["loadBalancerSourceRanges"] = [str(r) for r in s.lb_source_ranges]
    spec["ipFamilies"] = ["IPv4"]
    spec["ipFamilyPolicy"] = "SingleStack"
    status: dict[str, Any] = {"loadBalancer": {}}
    if rs.lb_ingress:
        status["loadBalancer"]["ingress"] = [{"ip": i.ip, "ipMode": i.ip_mode} for i in rs.lb_ingress]
    return {"apiVersion": "v1", "kind": "Service", "metadata": s.meta.to_dict(), "spec": spec, "status": status}


def endpointslice_object(sl: EndpointSlice) -> dict[str, Any]:
    meta = sl.meta.to_dict()
    meta.setdefault("labels", {})
    meta["labels"] = {**meta["labels"], SERVICE_NAME_LABEL: sl.service}
    endpoints = []
    for e in sl.endpoints:
        ep: dict[str, Any] = {"addresses": list(e.addresses),
                              "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating}}
        if e.node_name:
            ep["nodeName"] = e.node_name
        if e.target_ref:
            ns, _, name = e.target_ref.partition("/")
            ep["targetRef"] = {"kind": "Pod", "namespace": ns, "name": name}
        endpoints.append(ep)
    ports = [{**({"name": p.name} if p.name else {"name": ""}), "port": p.port, "protocol": p.protocol}
             for p in sl.ports]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}


def endpoints_object(rs: ResolvedService, slices: list[EndpointSlice]) -> dict[str, Any]:
    """The legacy v1 Endpoints (what `kubectl get endpoints` shows), mirrored from the slices."""
    subsets = []
    for sl in slices:
        ready = [{"ip": a, **({"nodeName": e.node_name} if e.node_name else {})}
                 for e in sl.endpoints if e.ready for a in e.addresses]
        not_ready = [{"ip": a, **({"nodeName": e.node_name} if e.node_name else {})}
                     for e in sl.endpoints if not e.ready for a in e.addresses]
        if not (ready or not_ready) or not sl.ports:
            continue
        subset: dict[str, Any] = {"ports": [{**({"name": p.name} if p.name else {}), "port": p.port,
                                             "protocol": p.protocol} for p in sl.ports]}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        subsets.append(subset)
    meta = {"name": rs.service.meta.name, "namespace": rs.service.meta.namespace,
            "labels": dict(rs.service.meta.labels)}
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, "subsets": subsets}
