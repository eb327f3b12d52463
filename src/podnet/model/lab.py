"""Resolve manifests into a Lab: every name, address and placement decided, nothing left implicit.

A Lab is the fully expanded, deterministic description of what `up` builds. It is pure data: the
compiler turns it into per-namespace kernel state, and the store keeps its objects in Kubernetes shape.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field

from podnet.errors import PodnetError
from podnet.model import names
from podnet.model.cluster import Cluster
from podnet.model.ipam import PodAllocator, gateway, node_cidrs
from podnet.model.manifest import Manifests
from podnet.model.meta import ObjectMeta
from podnet.model.netpol import NetworkPolicy
from podnet.model.service import EndpointSlice, Service, ServicePort
from podnet.model.source import line_of
from podnet.model.workloads import Container, ContainerPort, Deployment, Namespace, Pod, PodSpec

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class PlacedPod:
    """A pod with its node, IP and the names of its kernel objects."""

    pod: Pod
    node: str
    ip: ipaddress.IPv4Address
    netns: str                 # the pod's own namespace (the node's, for hostNetwork pods)
    host_veth: str = ""        # host side of its veth ("" for hostNetwork pods)
    component: str = ""        # for kube-system components: "flannel", "kube-proxy", ...

    @property
    def key(self) -> str:
        return self.pod.key

    @property
    def name(self) -> str:
        return self.pod.meta.name

    @property
    def namespace(self) -> str:
        return self.pod.meta.namespace

    @property
    def host_network(self) -> bool:
        return self.pod.spec.host_network


@dataclass
class LabNode:
    name: str
    ip: ipaddress.IPv4Address
    pod_cidr: ipaddress.IPv4Network
    netns: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return gateway(self.pod_cidr)


@dataclass
class Lab:
    cluster: Cluster
    nodes: list[LabNode]
    namespaces: dict[str, Namespace]
    pods: list[PlacedPod]
    deployments: list[Deployment] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    endpointslices: list[EndpointSlice] = field(default_factory=list)
    networkpolicies: list[NetworkPolicy] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def underlay_subnet(self) -> ipaddress.IPv4Network:
        return underlay_subnet(self.cluster)

    @property
    def underlay_gateway(self) -> ipaddress.IPv4Address:
        return underlay_gateway(self.cluster)

    def node(self, name: str) -> LabNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def pod(self, namespace: str, name: str) -> PlacedPod | None:
        return next((p for p in self.pods if p.namespace == namespace and p.name == name), None)

    def pods_on(self, node: str) -> list[PlacedPod]:
        return [p for p in self.pods if p.node == node]

    def all_netns(self) -> list[str]:
        """Every namespace this lab owns, in creation order."""
        out = [names.underlay_ns(self.name)]
        out += [n.netns for n in self.nodes]
        out += [names.host_ns(self.name, h.name) for h in self.cluster.external_hosts]
        out += [names.host_ns(self.name, r.name) for r in self.cluster.routers]
        out += [p.netns for p in self.pods if not p.host_network]
        return out


def underlay_subnet(cluster: Cluster) -> ipaddress.IPv4Network:
    if cluster.networking.underlay_subnet:
        return cluster.networking.underlay_subnet
    return ipaddress.IPv4Network(f"{cluster.nodes[0].ip}/24", strict=False)


def underlay_gateway(cluster: Cluster) -> ipaddress.IPv4Address:
    if cluster.networking.underlay_gateway:
        return cluster.networking.underlay_gateway
    return underlay_subnet(cluster).network_address + 1


def _cluster_error(cluster: Cluster, field_: str, msg: str) -> PodnetError:
    return PodnetError(msg, where=cluster.source, obj=f"Cluster {cluster.name}", field=field_)


def _pod_error(pod: Pod, field_: str, msg: str) -> PodnetError:
    where = pod.source or None
    if pod.doc is not None and not pod.owner:
        where = pod.doc.where(line_of(pod.doc.body, field_))
    return PodnetError(msg, where=where, obj=f"Pod {pod.key}", field=field_)


def _check_underlay(cluster: Cluster) -> None:
    sub = underlay_subnet(cluster)
    gw = underlay_gateway(cluster)
    if gw not in sub:
        raise _cluster_error(cluster, "networking.underlayGateway", f"{gw} is outside the underlay {sub}")
    seen: dict[ipaddress.IPv4Address, str] = {gw: "the underlay gateway"}
    hosts = [(f"nodes[{i}].ip", n.name, n.ip) for i, n in enumerate(cluster.nodes)]
    if cluster.bgp is None:  # backend bgp: hosts and routers live on several networks (checked in model/bgp.py)
        hosts += [(f"externalHosts[{i}].ip", h.name, h.ip) for i, h in enumerate(cluster.external_hosts)]
        hosts += [(f"routers[{i}].ip", r.name, r.ip) for i, r in enumerate(cluster.routers)]
    host_names: dict[str, str] = {names.UNDERLAY: "the underlay switch"}
    for path, name, ip in hosts:
        if name in host_names:
            raise _cluster_error(cluster, path.replace(".ip", ".name"),
                                 f"duplicate name {name!r} (already used by {host_names[name]})")
        host_names[name] = path
        if ip not in sub:
            raise _cluster_error(cluster, path, f"{ip} is outside the underlay subnet {sub} "
                                 "(set networking.underlaySubnet)")
        if ip in seen:
            raise _cluster_error(cluster, path, f"duplicate IP {ip} (already used by {seen[ip]})")
        if ip in (sub.network_address, sub.broadcast_address):
            raise _cluster_error(cluster, path, f"{ip} is the network or broadcast address of {sub}")
        seen[ip] = name
        for other in (cluster.networking.pod_subnet, cluster.networking.service_subnet):
            if ip in other:
                raise _cluster_error(cluster, path, f"{ip} is inside {other}")
    for other, what in ((cluster.networking.pod_subnet, "podSubnet"),
                        (cluster.networking.service_subnet, "serviceSubnet")):
        if sub.overlaps(other):
            raise _cluster_error(cluster, "networking.underlaySubnet", f"underlay {sub} overlaps {what} {other}")


def _template_repr(d: Deployment) -> str:
    return json.dumps({"labels": d.template_meta.labels, "spec": asdict(d.template)}, sort_keys=True)


def expand_deployment(d: Deployment) -> list[Pod]:
    thash = names.template_hash(_template_repr(d))
    pods = []
    for i in range(d.replicas):
        name = names.replica_name(d.meta.name, thash, i)
        labels = {**d.template_meta.labels, "pod-template-hash": thash}
        meta = ObjectMeta(name=name, namespace=d.meta.namespace, labels=labels,
                          annotations=dict(d.template_meta.annotations))
        pods.append(Pod(meta=meta, spec=d.template, owner=f"Deployment/{d.meta.name}", source=d.source))
    return pods


def component_pods(cluster: Cluster) -> list[tuple[Pod, str]]:
    """The cluster's own per-node components, as hostNetwork pods in kube-system (DaemonSets).

    The second item is the component's module under ``podnet.components``.
    """
    out = []
    net = cluster.networking
    for n in cluster.nodes:
        if net.backend in ("vxlan", "host-gw"):
            out.append((_daemon_pod("kube-flannel", n.name, {"app": "flannel", "k8s-app": "flannel", "tier": "node"},
                                    "kube-flannel-ds"), "flannel"))
        if net.backend == "bgp":
            out.append((_daemon_pod("calico-node", n.name, {"k8s-app": "calico-node"}, "calico-node"), "calico"))
        if net.kube_proxy_mode != "none":
            out.append((_daemon_pod("kube-proxy", n.name, {"k8s-app": "kube-proxy"}, "kube-proxy"), "kubeproxy"))
        out.append((_daemon_pod("kube-network-policies", n.name, {"k8s-app": "kube-network-policies"},
                                "kube-network-policies"), "netpol"))
    return out


def _daemon_pod(prefix: str, node: str, labels: dict[str, str], daemonset: str) -> Pod:
    meta = ObjectMeta(name=f"{prefix}-{node}", namespace="kube-system", labels=dict(labels))
    spec = PodSpec(containers=[Container(name=prefix)], node_name=node, host_network=True)
    return Pod(meta=meta, spec=spec, owner=f"DaemonSet/{daemonset}")


DNS_LABELS = {"k8s-app": "kube-dns"}
DNS_REPLICAS = 2


def dns_pods(cluster: Cluster) -> list[Pod]:
    """The cluster DNS: Deployment kube-system/coredns, two replicas on different nodes (pod network)."""
    thash = names.template_hash("coredns/podnet.components.coredns")
    ports = [ContainerPort(53, "UDP", "dns"), ContainerPort(53, "TCP", "dns-tcp"),
             ContainerPort(9153, "TCP", "metrics")]
    pods = []
    if not cluster.networking.cluster_dns:
        return []
    for i in range(min(DNS_REPLICAS, len(cluster.nodes))):
        meta = ObjectMeta(name=names.replica_name("coredns", thash, i), namespace="kube-system",
                          labels={**DNS_LABELS, "pod-template-hash": thash})
        spec = PodSpec(containers=[Container(name="coredns", ports=list(ports))], node_name=cluster.nodes[i].name)
        pods.append(Pod(meta=meta, spec=spec, owner="Deployment/coredns"))
    return pods


def dns_service(cluster: Cluster) -> Service:
    """Service kube-system/kube-dns at networking.dnsIP, UDP and TCP 53 (and metrics), as kubeadm makes it."""
    meta = ObjectMeta(name="kube-dns", namespace="kube-system",
                      labels={**DNS_LABELS, "kubernetes.io/name": "CoreDNS"})
    ports = [ServicePort(53, "UDP", "dns", 53), ServicePort(53, "TCP", "dns-tcp", 53),
             ServicePort(9153, "TCP", "metrics", 9153)]
    return Service(meta=meta, cluster_ip=str(cluster.networking.dns_ip), ports=ports,
                   selector=dict(DNS_LABELS))


def resolve(m: Manifests, previous: dict[str, tuple[str, str]] | None = None) -> Lab:
    """``previous`` maps ``ns/pod`` to the (node, IP) it already has, so addresses stay sticky."""
    previous = previous or {}
    cluster = m.cluster
    if cluster is None:
        raise PodnetError("no Cluster document (apiVersion podnet.dev/v1alpha1, kind Cluster) in the given files")
    _check_underlay(cluster)
    cidrs = node_cidrs(cluster)
    lab_nodes = [LabNode(name=n.name, ip=n.ip, pod_cidr=cidrs[n.name], netns=names.host_ns(cluster.name, n.name),
                         labels=dict(n.labels)) for n in cluster.nodes]
    by_name = {n.name: n for n in lab_nodes}

    namespaces: dict[str, Namespace] = {ns: Namespace(ObjectMeta(name=ns)) for ns in SYSTEM_NAMESPACES}
    for ns in m.namespaces:
        namespaces[ns.meta.name] = ns

    user_pods = list(m.pods)
    pod_names = {p.key: p for p in user_pods}
    for p in dns_pods(cluster):
        if p.key not in pod_names:
            user_pods.append(p)
            pod_names[p.key] = p
    deploy_names: set[str] = set()
    for d in m.deployments:
        if d.meta.namespace not in namespaces:
            raise PodnetError(f'namespace "{d.meta.namespace}" not found (add a Namespace document)',
                              where=d.source, obj=f"Deployment {d.key}", field="metadata.namespace")
        deploy_names.add(d.key)
        for p in expand_deployment(d):
            if p.key in pod_names:
                raise PodnetError(f"generated pod name {p.key} clashes with a Pod", where=d.source,
                                  obj=f"Deployment {d.key}", field="metadata.name")
            user_pods.append(p)
            pod_names[p.key] = p

    allocators = {n.name: PodAllocator(n.pod_cidr) for n in lab_nodes}
    placed: dict[str, tuple[str, ipaddress.IPv4Address]] = {}
    count = {n.name: 0 for n in lab_nodes}
    owners: dict[ipaddress.IPv4Address, str] = {}

    for p in user_pods:
        if p.meta.namespace not in namespaces:
            raise _pod_error(p, "metadata.namespace",
                             f'namespace "{p.meta.namespace}" not found (add a Namespace document)')
        if p.spec.node_name and p.spec.node_name not in by_name:
            raise _pod_error(p, "spec.nodeName", f"node {p.spec.node_name!r} does not exist "
                             f"(nodes: {', '.join(by_name)})")
    # 0. pods that already run keep their node and address
    for p in user_pods:
        prev = previous.get(p.key)
        if prev is None or p.spec.host_network or prev[0] not in by_name:
            continue
        if p.requested_ip not in (None, prev[1]) or p.spec.node_name not in ("", prev[0]):
            continue
        ip = ipaddress.IPv4Address(prev[1])
        if allocators[prev[0]].usable(ip) is None:
            allocators[prev[0]].reserve(ip)
            owners[ip] = p.key
            placed[p.key] = (prev[0], ip)
            count[prev[0]] += 1
    # 1. pinned IPs (their node is the one whose CIDR holds the IP)
    for p in user_pods:
        want = p.requested_ip
        if want is None or p.key in placed:
            continue
        field_ = f"metadata.annotations.{'podnet.dev/ip'}"
        ip = ipaddress.IPv4Address(want)
        if p.spec.host_network:
            raise _pod_error(p, field_, "a hostNetwork pod has its node's IP")
        node = p.spec.node_name or next((n.name for n in lab_nodes if ip in n.pod_cidr), None)
        if node is None:
            raise _pod_error(p, field_, f"{ip} is in no node's pod CIDR "
                             f"({', '.join(f'{n.name}={n.pod_cidr}' for n in lab_nodes)})")
        why = allocators[node].usable(ip)
        if why is not None:
            if ip in owners:
                why = f"duplicate pod IP {ip} (already used by pod {owners[ip]})"
            elif ip not in by_name[node].pod_cidr:
                why = f"{ip} is outside node {node}'s pod CIDR {by_name[node].pod_cidr}"
            raise _pod_error(p, field_, why)
        allocators[node].reserve(ip)
        owners[ip] = p.key
        placed[p.key] = (node, ip)
        count[node] += 1
    # 2. every other pod: its nodeName, or the node with the fewest pods (spread, ties in node order)
    for p in user_pods:
        if p.key in placed:
            continue
        node = p.spec.node_name or min(lab_nodes, key=lambda n: count[n.name]).name
        if p.spec.host_network:
            ip = by_name[node].ip
        else:
            got = allocators[node].allocate()
            if got is None:
                raise _pod_error(p, "spec", f"node {node}'s pod CIDR {by_name[node].pod_cidr} is full")
            ip = got
            owners[ip] = p.key
        placed[p.key] = (node, ip)
        count[node] += 1

    pods: list[PlacedPod] = []
    for pod, comp in component_pods(cluster):
        node = by_name[pod.spec.node_name]
        pods.append(PlacedPod(pod=pod, node=node.name, ip=node.ip, netns=node.netns, component=comp))
    for p in user_pods:
        node, ip = placed[p.key]
        if p.spec.host_network:
            pods.append(PlacedPod(pod=p, node=node, ip=ip, netns=by_name[node].netns))
        else:
            pods.append(PlacedPod(pod=p, node=node, ip=ip,
                                  netns=names.pod_ns(cluster.name, p.meta.namespace, p.meta.name),
                                  host_veth=(names.cali_veth if cluster.bgp else names.host_veth)(
                                      cluster.name, p.meta.namespace, p.meta.name),
                                  component="coredns" if p.owner == "Deployment/coredns" else ""))
    services = list(m.services)
    if cluster.networking.cluster_dns and not any(s.key == "kube-system/kube-dns" for s in services):
        services.append(dns_service(cluster))
    lab = Lab(cluster=cluster, nodes=lab_nodes, namespaces=namespaces, pods=pods, deployments=list(m.deployments),
              services=services, endpointslices=list(m.endpointslices),
              networkpolicies=list(m.networkpolicies), warnings=list(m.warnings))
    _check_names(lab)
    return lab


def _check_names(lab: Lab) -> None:
    """Namespace and interface names must be unique and fit the kernel's limits."""
    seen: dict[str, str] = {}
    for n in lab.nodes:
        seen[n.netns] = f"node {n.name}"
    seen[names.underlay_ns(lab.name)] = "the underlay"
    for h in lab.cluster.external_hosts:
        seen[names.host_ns(lab.name, h.name)] = f"host {h.name}"
    for r in lab.cluster.routers:
        seen[names.host_ns(lab.name, r.name)] = f"router {r.name}"
    veths: dict[str, str] = {}
    for p in lab.pods:
        if p.host_network:
            continue
        if p.netns in seen:
            raise _pod_error(p.pod, "metadata.name", f"namespace name {p.netns} clashes with {seen[p.netns]}")
        seen[p.netns] = f"pod {p.key}"
        if p.host_veth in veths:  # a 32-bit hash collision: astronomically rare, but never silent
            raise _pod_error(p.pod, "metadata.name", f"host veth name {p.host_veth} clashes with pod "
                             f"{veths[p.host_veth]}")
        veths[p.host_veth] = p.key
