"""The lab's wiring: underlay switch, nodes, external hosts and pods on the CNI bridge (cni0).

What the CNI bridge plugin (as flannel delegates to it) does for each pod: a veth pair whose host side
``veth<8 hex>`` is a port of ``cni0`` with hairpin mode on, pod side ``eth0`` with the pod IP in the node's
pod CIDR and a default route via the bridge address (isDefaultGateway). Backend bgp branches to
compile/calico.py (routed pods, routers, several networks).
"""

from __future__ import annotations

import json

from podnet.compile import calico, dns, flannel
from podnet.compile.state import AddrSpec, LinkSpec, NetnsSpec, RouteSpec, VethPeer
from podnet.model import names
from podnet.model.lab import Lab, LabNode, PlacedPod

NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",   # kube-proxy and flannel need bridged traffic in iptables
}


def compile_lab(lab: Lab) -> list[NetnsSpec]:
    """Every namespace of the lab, in the order they must be configured."""
    specs = [underlay(lab)]
    specs += [node(lab, n) for n in lab.nodes]
    specs += [external_host(lab, h.name, str(h.ip)) for h in lab.cluster.external_hosts]
    if lab.cluster.bgp:
        specs += calico.routers(lab)
    specs += [pod(lab, p) for p in lab.pods if not p.host_network]
    return specs


def underlay(lab: Lab) -> NetnsSpec:
    """One L2 switch (br0) for every node and host, with the gateway address nodes route through."""
    if lab.cluster.bgp:
        return calico.underlay(lab)   # several networks and the routers
    mtu = lab.cluster.networking.mtu
    spec = NetnsSpec(name=names.underlay_ns(lab.name), role="underlay")
    spec.links.append(LinkSpec(names.UNDERLAY_BRIDGE, "bridge", mtu=mtu, mac=names.mac_from_ip(
        str(lab.underlay_gateway), "0e:00")))
    spec.addrs.append(AddrSpec(names.UNDERLAY_BRIDGE, str(lab.underlay_gateway), lab.underlay_subnet.prefixlen))
    hosts = [(n.name, str(n.ip)) for n in lab.nodes] + [(h.name, str(h.ip)) for h in lab.cluster.external_hosts]
    for host, ip in hosts:
        spec.links.append(LinkSpec(
            names.underlay_port(lab.name, host), "veth", mtu=mtu, master=names.UNDERLAY_BRIDGE,
            peer=VethPeer(names.host_ns(lab.name, host), "eth0", mtu, names.mac_from_ip(ip, "0e:01"))))
    pool = lab.cluster.networking.lb_pool
    if pool is not None:
        # the upstream router of a bare-metal cluster (as MetalLB's BGP mode programs it): LoadBalancer
        # addresses are routed to a node, where kube-proxy's rules take them
        spec.sysctls["net.ipv4.ip_forward"] = "1"
        spec.routes.append(RouteSpec(str(pool), via=str(lab.nodes[0].ip), dev=names.UNDERLAY_BRIDGE))
    return spec


def _host_base(lab: Lab, name: str, ip: str, role: str) -> NetnsSpec:
    spec = NetnsSpec(name=names.host_ns(lab.name, name), role=role, owner=name)
    spec.links.append(LinkSpec("eth0", "peer", mtu=lab.cluster.networking.mtu))
    spec.addrs.append(AddrSpec("eth0", ip, lab.underlay_subnet.prefixlen))
    # Real nodes have a default route: without one, node-originated connects to a ClusterIP fail with
    # ENETUNREACH before the OUTPUT DNAT runs.
    spec.routes.append(RouteSpec("default", via=str(lab.underlay_gateway), dev="eth0"))
    return spec


def node(lab: Lab, n: LabNode) -> NetnsSpec:
    if lab.cluster.bgp:
        return calico.node(lab, n, NODE_SYSCTLS)   # routed: cali veths and /32 routes, no cni0
    spec = _host_base(lab, n.name, str(n.ip), "node")
    pod_mtu = lab.cluster.networking.pod_mtu
    spec.sysctls.update(NODE_SYSCTLS)
    spec.links.append(LinkSpec(names.BRIDGE, "bridge", mtu=pod_mtu, mac=names.mac_from_ip(str(n.gateway))))
    spec.addrs.append(AddrSpec(names.BRIDGE, str(n.gateway), n.pod_cidr.prefixlen))
    for p in lab.pods_on(n.name):
        if p.host_network:
            continue
        spec.links.append(LinkSpec(p.host_veth, "veth", mtu=pod_mtu, master=names.BRIDGE, hairpin=True,
                                   peer=VethPeer(p.netns, "eth0", pod_mtu, names.mac_from_ip(str(p.ip)))))
    flannel.add_node_state(lab, n, spec)
    spec.files["cni/net.d/10-flannel.conflist"] = cni_conflist(lab)
    return spec


def external_host(lab: Lab, name: str, ip: str) -> NetnsSpec:
    if lab.cluster.bgp:
        return calico.external_host(lab, name)
    return _host_base(lab, name, ip, "host")


def pod(lab: Lab, p: PlacedPod) -> NetnsSpec:
    n = lab.node(p.node)
    spec = NetnsSpec(name=p.netns, role="pod", owner=p.key)
    if lab.cluster.bgp:
        calico.add_pod_state(lab, p, spec)   # /32, default via 169.254.1.1
    else:
        spec.links.append(LinkSpec("eth0", "peer", mtu=lab.cluster.networking.pod_mtu))
        spec.addrs.append(AddrSpec("eth0", str(p.ip), n.pod_cidr.prefixlen))
        spec.routes.append(RouteSpec("default", via=str(n.gateway), dev="eth0"))
    spec.files["resolv.conf"] = dns.resolv_conf(lab, p)
    return spec


def cni_conflist(lab: Lab) -> str:
    """/etc/cni/net.d/10-flannel.conflist exactly as kube-flannel's ConfigMap installs it."""
    conf = {
        "name": "cbr0",
        "cniVersion": "0.3.1",
        "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def subnet_env(lab: Lab, n: LabNode) -> str:
    """flanneld's /run/flannel/subnet.env for a node."""
    net = lab.cluster.networking
    return (f"FLANNEL_NETWORK={net.pod_subnet}\nFLANNEL_SUBNET={n.gateway}/{n.pod_cidr.prefixlen}\n"
            f"FLANNEL_MTU={net.pod_mtu}\nFLANNEL_IPMASQ=true\n")
