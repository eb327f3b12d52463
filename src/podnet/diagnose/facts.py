"""What diagnose knows besides the kernel state: the lab's declared objects (as ``kubectl get`` shows a
real cluster's), the processes of its pods (as the kubelet reports them) and the node files an SRE would
``cat`` (CNI config, resolv.conf). Pure values; ``run`` fills them from a running lab.

Nothing here records what ``podnet break`` did: every fact is either declared intent (the objects a
user applied, the names podnet derives from them) or read from the host as it is now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class NodeFacts:
    name: str
    netns: str
    ip: str
    pod_cidr: str
    gateway: str                  # the node's bridge (cni0) address, its pods' default gateway


@dataclass(frozen=True, slots=True)
class PodFacts:
    key: str                      # ns/name
    node: str
    ip: str
    netns: str
    host_veth: str = ""           # "" for hostNetwork pods
    component: str = ""           # flannel, kubeproxy, coredns, netpol, calico, ""
    host_network: bool = False
    running: bool = True          # every container's process is alive (the kubelet's view)
    log_tail: str = ""            # last line of the first container's log (components)
    state: str = "running"        # running | stopped (SIGSTOP: hung) | exited

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]

    @property
    def namespace(self) -> str:
        return self.key.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int
    node: str = ""
    pod: str = ""                 # ns/name


@dataclass(frozen=True, slots=True)
class ServiceFacts:
    namespace: str
    name: str
    port_name: str
    protocol: str                 # tcp, udp, sctp
    cluster_ip: str
    port: int
    endpoints: tuple[Endpoint, ...] = ()     # ready endpoints

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def label(self) -> str:
        return f"{self.key}:{self.port_name or self.port}"


@dataclass(slots=True)
class LabFacts:
    lab: str
    backend: str                  # vxlan, host-gw, bgp
    kube_proxy_mode: str          # iptables, nftables, none
    underlay_mtu: int
    pod_mtu: int
    dns_ip: str | None            # None: no cluster DNS
    dns_domain: str
    pod_subnet: str
    service_subnet: str
    nodes: list[NodeFacts]
    pods: list[PodFacts]
    services: list[ServiceFacts]
    underlay_netns: str = ""
    cni_configs: dict[str, dict[str, str] | None] = field(default_factory=dict)  # node -> {file: text}
    cni_expected_type: str = "flannel"
    resolv_confs: dict[str, str | None] = field(default_factory=dict)   # pod netns -> text (None: missing)
    resolv_expected: dict[str, str] = field(default_factory=dict)       # pod netns -> the kubelet's text
    bgp: dict[str, Any] | None = None        # `podnet bgp status -o json` document (backend bgp)
    netpols: list[str] = field(default_factory=list)   # ns/name of the declared NetworkPolicies

    def node(self, name: str) -> NodeFacts | None:
        return next((n for n in self.nodes if n.name == name), None)

    def node_by_netns(self, netns: str) -> NodeFacts | None:
        return next((n for n in self.nodes if n.netns == netns), None)

    def pod_by_ip(self, ip: str) -> PodFacts | None:
        return next((p for p in self.pods if p.ip == ip and not p.host_network), None)

    def pod_by_netns(self, netns: str) -> PodFacts | None:
        return next((p for p in self.pods if p.netns == netns and not p.host_network), None)

    def pod(self, key: str) -> PodFacts | None:
        return next((p for p in self.pods if p.key == key), None)

    def components(self, kind: str) -> list[PodFacts]:
        return [p for p in self.pods if p.component == kind]

    def service_by_ip(self, ip: str, port: int | None = None, proto: str | None = None) -> ServiceFacts | None:
        for s in self.services:
            if s.cluster_ip == ip and (port is None or s.port == port) and (proto is None or s.protocol == proto):
                return s
        return None

    @property
    def bridge_mode(self) -> bool:
        return self.backend in ("vxlan", "host-gw")


def from_lab(lab: Any, ready: set[str], running: dict[str, bool], log_tails: dict[str, str] | None = None,
             states: dict[str, str] | None = None) -> LabFacts:
    """Facts of a ``podnet.model.lab.Lab``; ``ready``: keys of ready pods; ``running``: pod key -> all its
    containers run."""
    from podnet.compile import dns as dnscompile
    from podnet.model import names
    from podnet.model.services import resolve_services

    net = lab.cluster.networking
    nodes = [NodeFacts(n.name, n.netns, str(n.ip), str(n.pod_cidr), str(n.gateway)) for n in lab.nodes]
    tails = log_tails or {}
    st = states or {}
    pods = [PodFacts(p.key, p.node, str(p.ip), p.netns, p.host_veth, p.component, p.host_network,
                     running.get(p.key, False), tails.get(p.key, ""),
                     st.get(p.key, "running" if running.get(p.key, False) else "exited")) for p in lab.pods]
    services = []
    for sp in resolve_services(lab, ready=lambda p: p.key in ready).ports():
        if not sp.cluster_ip or sp.cluster_ip == "None":
            continue
        eps = tuple(Endpoint(e.ip, e.port, e.node_name, _pod_key(lab, e.ip)) for e in sp.endpoints
                    if e.ready or e.serving)
        services.append(ServiceFacts(sp.namespace, sp.name, sp.port_name, sp.protocol.lower(), sp.cluster_ip,
                                     sp.port, eps))
    resolv_expected = {p.netns: dnscompile.resolv_conf(lab, p) for p in lab.pods if not p.host_network}
    return LabFacts(
        lab=lab.name, backend=net.backend, kube_proxy_mode=net.kube_proxy_mode, underlay_mtu=net.mtu,
        pod_mtu=net.pod_mtu, dns_ip=str(net.dns_ip) if net.cluster_dns else None, dns_domain=net.dns_domain,
        pod_subnet=str(net.pod_subnet), service_subnet=str(net.service_subnet), nodes=nodes, pods=pods,
        services=services, underlay_netns=names.underlay_ns(lab.name),
        cni_expected_type="calico" if net.backend == "bgp" else "flannel", resolv_expected=resolv_expected,
        netpols=[np.key for np in getattr(lab, "networkpolicies", [])])


def _pod_key(lab: Any, ip: str) -> str:
    for p in lab.pods:
        if not p.host_network and str(p.ip) == ip:
            return p.key
    return ""
