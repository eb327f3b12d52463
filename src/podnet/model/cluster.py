"""The ``Cluster`` document (apiVersion podnet.dev/v1alpha1): nodes, networking, routers, hosts."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from podnet.model import bgp as bgp_model
from podnet.model.fields import Context, Fields, check_name
from podnet.model.meta import parse_meta

API_VERSION = "podnet.dev/v1alpha1"
BACKENDS = ("vxlan", "host-gw", "bgp")
PROXY_MODES = ("iptables", "nftables", "none")
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
LAB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LAB_NAME_MAX = 16  # keeps pn-<lab>-<node> readable and every derived name bounded


@dataclass
class NodeSpec:
    name: str
    ip: ipaddress.IPv4Address
    pod_cidr: ipaddress.IPv4Network | None = None
    labels: dict[str, str] = field(default_factory=dict)
    line_ctx: str = ""


@dataclass
class ExternalHost:
    name: str
    ip: ipaddress.IPv4Address


@dataclass
class RouterSpec:
    """A top-of-rack or core BGP router (backend bgp). Parsed here, wired by the BGP layer."""

    name: str
    ip: ipaddress.IPv4Address
    asn: int | None = None
    raw: dict = field(default_factory=dict)


@dataclass
class Networking:
    pod_subnet: ipaddress.IPv4Network
    service_subnet: ipaddress.IPv4Network
    backend: str = "vxlan"
    kube_proxy_mode: str = "iptables"
    mtu: int = 1500
    dns_domain: str = "cluster.local"
    dns_ip: ipaddress.IPv4Address | None = None
    node_cidr_mask: int = 24
    underlay_subnet: ipaddress.IPv4Network | None = None
    underlay_gateway: ipaddress.IPv4Address | None = None
    lb_pool: ipaddress.IPv4Network | None = None
    cluster_dns: bool = True          # the coredns pods and Service kube-system/kube-dns

    @property
    def pod_mtu(self) -> int:
        """Pod (and cni0) MTU: flannel's rule, underlay MTU minus 50 on VXLAN."""
        return self.mtu - VXLAN_OVERHEAD if self.backend == "vxlan" else self.mtu


@dataclass
class Cluster:
    name: str
    networking: Networking
    nodes: list[NodeSpec]
    routers: list[RouterSpec] = field(default_factory=list)
    external_hosts: list[ExternalHost] = field(default_factory=list)
    source: str = ""
    bgp: bgp_model.Fabric | None = None       # backend bgp: networks, routers, AS numbers, peerings (model/bgp.py)

    def node(self, name: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.name == name), None)


def parse_cluster(ctx: Context, body: Fields) -> Cluster:
    body.check({"apiVersion", "kind", "metadata", "networking", "nodes", "routers", "externalHosts", "bgp"})
    meta = parse_meta(ctx, body, namespaced=False, name_rule="label")
    if len(meta.name) > LAB_NAME_MAX or not LAB_NAME.match(meta.name):
        raise ctx.error("metadata.name", f"lab name {meta.name!r} is too long or invalid: at most "
                        f"{LAB_NAME_MAX} lowercase alphanumerics and '-' (it prefixes every namespace name)")
    net = body.map("networking")
    net.check({"podSubnet", "serviceSubnet", "backend", "kubeProxyMode", "mtu", "dnsDomain", "dnsIP",
               "nodeCIDRMaskSize", "underlaySubnet", "underlayGateway", "loadBalancerPool", "clusterDNS"})
    pod_subnet = net.network("podSubnet", default="10.244.0.0/16")
    svc_subnet = net.network("serviceSubnet", default="10.96.0.0/12")
    assert pod_subnet and svc_subnet
    backend = net.str("backend", "vxlan")
    if backend not in BACKENDS:
        raise ctx.error("networking.backend", f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    mode = net.str("kubeProxyMode", "iptables")
    if mode not in PROXY_MODES:
        raise ctx.error("networking.kubeProxyMode",
                        f"unknown kube-proxy mode {mode!r} (one of {', '.join(PROXY_MODES)}; "
                        "ipvs needs the IPVS kernel module, which this kernel lacks)")
    mtu = net.int("mtu", 1500, lo=1280, hi=9000)
    mask = net.int("nodeCIDRMaskSize", 24, lo=pod_subnet.prefixlen, hi=28)
    domain = net.str("dnsDomain", "cluster.local")
    assert domain is not None and mtu is not None and mask is not None
    dns_ip = net.address("dnsIP") or svc_subnet.network_address + 10
    if dns_ip not in svc_subnet:
        raise ctx.error("networking.dnsIP", f"{dns_ip} is outside serviceSubnet {svc_subnet}")
    if pod_subnet.overlaps(svc_subnet):
        raise ctx.error("networking.serviceSubnet", f"{svc_subnet} overlaps podSubnet {pod_subnet}")
    networking = Networking(pod_subnet=pod_subnet, service_subnet=svc_subnet, backend=backend,
                            kube_proxy_mode=mode, mtu=mtu, dns_domain=domain.strip("."), dns_ip=dns_ip,
                            node_cidr_mask=mask, underlay_subnet=net.network("underlaySubnet"),
                            underlay_gateway=net.address("underlayGateway"),
                            lb_pool=net.network("loadBalancerPool"),
                            cluster_dns=bool(net.bool("clusterDNS", True)))

    nodes: list[NodeSpec] = []
    for nf in body.maps("nodes"):
        nf.check({"name", "ip", "podCIDR", "labels"}, {"role"})
        name = nf.str("name", required=True)
        assert name is not None
        check_name(ctx, nf.sub("name"), name, "label")
        ip = nf.address("ip", required=True)
        assert ip is not None
        nodes.append(NodeSpec(name=name, ip=ip, pod_cidr=nf.network("podCIDR"), labels=nf.labels("labels"),
                              line_ctx=nf.path))
    if not nodes:
        raise ctx.error("nodes", "a cluster needs at least one node")
    hosts = []
    for hf in body.maps("externalHosts"):
        hf.check({"name", "ip"})
        name = hf.str("name", required=True)
        assert name is not None
        check_name(ctx, hf.sub("name"), name, "label")
        ip = hf.address("ip", required=True)
        assert ip is not None
        hosts.append(ExternalHost(name=name, ip=ip))
    fabric = bgp_model.parse(ctx, body, networking, nodes, hosts)   # routers and bgp: validated there
    routers = [RouterSpec(name=r.name, ip=r.router_id, asn=r.asn, raw={"role": r.role})
               for r in (fabric.routers if fabric else [])]
    return Cluster(name=meta.name, networking=networking, nodes=nodes, routers=routers,
                   external_hosts=hosts, source=ctx.where() or "", bgp=fabric)
