"""Routed (Calico-style) wiring for backend ``bgp``: no bridge, no overlay, every pod a /32 route.

What Calico's CNI plugin does for each pod (see reference/cni.md, "Calico-style routed wiring"):
a veth pair whose host side ``cali<11 hex>`` (MAC ``ee:ee:ee:ee:ee:ee``) has proxy ARP on, no address,
and a ``<pod IP>/32 dev cali... scope link`` route in the node; the pod side ``eth0`` holds the pod IP
as a /32, a link route to ``169.254.1.1`` and ``default via 169.254.1.1`` (an address nobody owns: the
host veth answers its ARP by proxy, so every packet from the pod goes to the node, which routes it).
Pod MTU = underlay MTU (nothing is encapsulated).

The networks: the underlay namespace is the switch room: ``br0`` is the node network, each
``bgp.networks`` entry another bridge (``br1``, ``br2``...). Routers (``pn-<lab>-<router>``) get one
``eth<i>`` per address; nodes route by default through the ToR that serves them (the underlay gateway
when no router does), external hosts through a router on their network. BGP itself (BIRD) is in
compile/bird.py; the pod CIDRs between nodes are learned, not compiled.
"""

from __future__ import annotations

import json

from podnet.compile.state import AddrSpec, LinkSpec, NetnsSpec, RouteSpec, VethPeer
from podnet.model import names
from podnet.model.bgp import Fabric, Router
from podnet.model.lab import Lab, LabNode, PlacedPod

LINK_LOCAL_GW = "169.254.1.1"       # Calico's fixed next hop for pods
CALI_MAC = "ee:ee:ee:ee:ee:ee"      # every host-side cali veth, as Calico sets it
CNI_CONFLIST = "cni/net.d/10-calico.conflist"
ROUTER_SYSCTLS = {"net.ipv4.ip_forward": "1"}


def fabric_of(lab: Lab) -> Fabric:
    fab = lab.cluster.bgp
    if fab is None:
        raise ValueError(f"lab {lab.name} does not use the bgp backend")
    return fab


def cali_sysctls(ifname: str) -> dict[str, str]:
    """Calico's per-veth settings: answer ARP for 169.254.1.1 at once, forward, accept 127/8 (NodePort)."""
    return {
        f"net.ipv4.conf.{ifname}.proxy_arp": "1",
        f"net.ipv4.neigh.{ifname}.proxy_delay": "0",
        f"net.ipv4.conf.{ifname}.forwarding": "1",
        f"net.ipv4.conf.{ifname}.route_localnet": "1",
    }


# -- the switch room ------------------------------------------------------------------------------
def router_port(lab: Lab, router: str, iface: str) -> str:
    """The underlay port toward a router interface: ``u-<router>`` for eth0, as for every host."""
    return names.underlay_port(lab.name, router if iface == "eth0" else f"{router}-{iface}")


def underlay(lab: Lab) -> NetnsSpec:
    """br0 (node network) plus one bridge per extra network, a port per attached interface."""
    fab = fabric_of(lab)
    mtu = lab.cluster.networking.mtu
    spec = NetnsSpec(name=names.underlay_ns(lab.name), role="underlay")
    gw_on_br0 = fab.gateway_router() is None   # the gateway address lives on br0 unless a router (the ToR) owns it
    for net in fab.networks:
        mac = names.mac_from_ip(str(fab.underlay_gateway), "0e:00") if net is fab.underlay and gw_on_br0 else None
        spec.links.append(LinkSpec(net.bridge, "bridge", mtu=mtu, mac=mac))
    if gw_on_br0:
        spec.addrs.append(AddrSpec(fab.underlay.bridge, str(fab.underlay_gateway), fab.underlay.subnet.prefixlen))

    def port(port_name: str, bridge: str, netns: str, ifname: str, ip: str) -> None:
        spec.links.append(LinkSpec(port_name, "veth", mtu=mtu, master=bridge,
                                   peer=VethPeer(netns, ifname, mtu, names.mac_from_ip(ip, "0e:01"))))

    for n in lab.nodes:
        port(names.underlay_port(lab.name, n.name), "br0", n.netns, "eth0", str(n.ip))
    for r in fab.routers:
        for i in r.ifaces:
            port(router_port(lab, r.name, i.name), i.network.bridge, names.host_ns(lab.name, r.name), i.name,
                 str(i.ip))
    for h in fab.hosts.values():
        port(names.underlay_port(lab.name, h.name), h.network.bridge, names.host_ns(lab.name, h.name), "eth0",
             str(h.ip))
    return spec


# -- nodes, pods, hosts, routers -----------------------------------------------------------------------
def node(lab: Lab, n: LabNode, sysctls: dict[str, str]) -> NetnsSpec:
    """A node: eth0 on the node network, default via its ToR, one cali veth and /32 route per pod."""
    fab = fabric_of(lab)
    spec = NetnsSpec(name=n.netns, role="node", owner=n.name)
    spec.links.append(LinkSpec("eth0", "peer", mtu=lab.cluster.networking.mtu))
    spec.addrs.append(AddrSpec("eth0", str(n.ip), fab.underlay.subnet.prefixlen))
    spec.routes.append(RouteSpec("default", via=str(fab.node_gateway(n.name)), dev="eth0"))
    spec.sysctls.update(sysctls)
    add_workload_state(lab, n, spec)
    spec.files[CNI_CONFLIST] = cni_conflist(lab, n)
    return spec


def add_workload_state(lab: Lab, n: LabNode, spec: NetnsSpec) -> None:
    """The node side of every local pod: what calico-node keeps (felix's routes, the CNI's veths)."""
    mtu = lab.cluster.networking.pod_mtu
    for p in lab.pods_on(n.name):
        if p.host_network:
            continue
        spec.links.append(LinkSpec(p.host_veth, "veth", mtu=mtu, mac=CALI_MAC,
                                   peer=VethPeer(p.netns, "eth0", mtu, names.mac_from_ip(str(p.ip)))))
        spec.routes.append(RouteSpec(f"{p.ip}/32", dev=p.host_veth))
        spec.sysctls.update(cali_sysctls(p.host_veth))


def workload_routes(lab: Lab, node_name: str) -> list[RouteSpec]:
    return [RouteSpec(f"{p.ip}/32", dev=p.host_veth) for p in lab.pods_on(node_name) if not p.host_network]


def add_pod_state(lab: Lab, p: PlacedPod, spec: NetnsSpec) -> None:
    """The pod side: eth0 with the pod IP as /32, a link route to 169.254.1.1 and the default via it."""
    spec.links.append(LinkSpec("eth0", "peer", mtu=lab.cluster.networking.pod_mtu))
    spec.addrs.append(AddrSpec("eth0", str(p.ip), 32))
    spec.routes.append(RouteSpec(f"{LINK_LOCAL_GW}/32", dev="eth0"))
    spec.routes.append(RouteSpec("default", via=LINK_LOCAL_GW, dev="eth0"))


def external_host(lab: Lab, name: str) -> NetnsSpec:
    h = fabric_of(lab).hosts[name]
    spec = NetnsSpec(name=names.host_ns(lab.name, name), role="host", owner=name)
    spec.links.append(LinkSpec("eth0", "peer", mtu=lab.cluster.networking.mtu))
    spec.addrs.append(AddrSpec("eth0", str(h.ip), h.network.subnet.prefixlen))
    if h.gateway is not None:
        spec.routes.append(RouteSpec("default", via=str(h.gateway), dev="eth0"))
    return spec


def router(lab: Lab, r: Router) -> NetnsSpec:
    """A router: one eth<i> per address, forwarding on; its routes come from BIRD (compile/bird.py)."""
    spec = NetnsSpec(name=names.host_ns(lab.name, r.name), role="router", owner=r.name)
    for i in r.ifaces:
        spec.links.append(LinkSpec(i.name, "peer", mtu=lab.cluster.networking.mtu))
        spec.addrs.append(AddrSpec(i.name, str(i.ip), i.network.subnet.prefixlen))
    spec.sysctls.update(ROUTER_SYSCTLS)
    return spec


def routers(lab: Lab) -> list[NetnsSpec]:
    return [router(lab, r) for r in fabric_of(lab).routers]


def cni_conflist(lab: Lab, n: LabNode) -> str:
    """/etc/cni/net.d/10-calico.conflist as calico-node installs it (host-local IPAM on the node's podCIDR)."""
    conf = {
        "name": "k8s-pod-network",
        "cniVersion": "0.3.1",
        "plugins": [
            {"type": "calico", "log_level": "info", "datastore_type": "kubernetes", "nodename": n.name,
             "mtu": lab.cluster.networking.pod_mtu, "ipam": {"type": "host-local", "subnet": "usePodCidr"},
             "policy": {"type": "k8s"}, "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"}},
            {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"
