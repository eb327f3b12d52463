"""The BGP fabric of a ``bgp``-backend cluster: networks, routers, AS numbers and who peers with whom.

Calico's production design (the second article): no overlay; every node speaks BGP (BIRD) with the
top-of-rack router(s) that serve it, chosen by node label (Calico's ``BGPPeer.nodeSelector``); ToRs peer
with the core router(s); so pod CIDRs are routable everywhere. Without routers the nodes form Calico's
default full node-to-node mesh.

Cluster file (all optional but ``routers[].asNumber`` and the router addresses)::

    bgp:
      asNumber: 64512          # the nodes' AS (Calico's BGPConfiguration default)
      asPerRack: false         # true: each node takes the AS of the ToR that serves it
      nodeToNodeMesh: null     # default: true when no routers are declared
      networks:                # L2 segments besides the underlay (the node network)
        - {name: corp, subnet: 10.10.0.0/24}
    routers:
      - name: tor1
        role: tor              # tor (default) | core
        asNumber: 64512
        ips: [192.168.1.1, 10.255.0.1]    # or ip: for one; each on the underlay or a network
        nodeSelector: {rack: rack1}       # tor only: the nodes it serves (default: every node)

Everything here is pure data and validated once, at parse time, with errors naming file:line, object
and field (duplicate AS or IP, a node no router serves, a router on no subnet, ...).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from podnet.model.fields import Context, Fields, check_name, parse_address

if TYPE_CHECKING:
    from podnet.model.cluster import ExternalHost, Networking, NodeSpec

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address

DEFAULT_ASN = 64512          # Calico's default node AS (BGPConfiguration.spec.asNumber)
ASN_MAX = 4294967295
ROLES = ("tor", "core")
UNDERLAY = "underlay"        # the node network's name (bridge br0 in the underlay namespace)

# Peer types as `calicoctl node status` prints them (node side) and as a router's operator reads them.
MESH = "node-to-node mesh"
NODE_SPECIFIC = "node specific"
TYPE_NODE = "node"
TYPE_RR_CLIENT = "node (rr client)"
TYPE_TOR = "tor"
TYPE_CORE = "core"

# BIRD keywords that cannot name a protocol, even quoted; names starting with a digit cannot either.
_BIRD_KEYWORDS = frozenset({
    "accept", "all", "as", "bgp", "bfd", "case", "define", "device", "direct", "else", "error", "export",
    "false", "filter", "from", "function", "if", "import", "in", "interface", "ipv4", "ipv6", "kernel",
    "local", "mpls", "neighbor", "net", "none", "ospf", "pipe", "print", "protocol", "return", "rip", "rpki",
    "router", "static", "table", "template", "then", "to", "true", "where", "babel", "radv", "perf", "debug",
    "log", "id",
})


@dataclass(frozen=True)
class Network:
    """An L2 segment: a bridge in the underlay namespace (``br0`` is the node network)."""

    name: str
    subnet: Net
    bridge: str


@dataclass(frozen=True)
class Iface:
    """One of a router's interfaces: ``eth<i>`` with an address on a network."""

    name: str
    ip: Addr
    network: Network


@dataclass
class Router:
    name: str
    role: str
    asn: int
    ifaces: list[Iface]
    node_selector: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def ip_on(self, network: str) -> Addr | None:
        return next((i.ip for i in self.ifaces if i.network.name == network), None)

    @property
    def router_id(self) -> Addr:
        return self.ifaces[0].ip


@dataclass(frozen=True)
class Session:
    """One BGP session as one speaker sees (and configures) it."""

    local: str
    local_ip: Addr
    local_asn: int
    peer: str
    peer_kind: str              # node | tor | core
    peer_ip: Addr
    peer_asn: int
    peer_type: str              # as `bgp status` shows it (calicoctl's PEER TYPE on nodes)
    protocol: str               # the BIRD protocol name
    rr_client: bool = False     # the local speaker reflects routes to this peer
    allow_local_as: bool = False

    @property
    def ebgp(self) -> bool:
        return self.local_asn != self.peer_asn


@dataclass(frozen=True)
class HostAttachment:
    name: str
    ip: Addr
    network: Network
    gateway: Addr | None


@dataclass
class Fabric:
    node_asn: int
    as_per_rack: bool
    mesh: bool
    networks: list[Network]                 # the underlay first
    routers: list[Router]
    node_ips: dict[str, Addr]
    node_asns: dict[str, int]
    served_by: dict[str, list[str]]         # node -> the ToRs serving it, in declaration order
    hosts: dict[str, HostAttachment]        # external hosts
    underlay_gateway: Addr

    # -- look-ups ------------------------------------------------------------------------------
    @property
    def underlay(self) -> Network:
        return self.networks[0]

    def router(self, name: str) -> Router | None:
        return next((r for r in self.routers if r.name == name), None)

    @property
    def tors(self) -> list[Router]:
        return [r for r in self.routers if r.role == "tor"]

    @property
    def cores(self) -> list[Router]:
        return [r for r in self.routers if r.role == "core"]

    def speakers(self) -> list[str]:
        """Every BGP speaker: nodes, then routers."""
        return [*self.node_ips, *(r.name for r in self.routers)]

    def is_node(self, name: str) -> bool:
        return name in self.node_ips

    def asn(self, speaker: str) -> int:
        if speaker in self.node_asns:
            return self.node_asns[speaker]
        r = self.router(speaker)
        if r is None:
            raise KeyError(speaker)
        return r.asn

    def router_id(self, speaker: str) -> Addr:
        if speaker in self.node_ips:
            return self.node_ips[speaker]
        r = self.router(speaker)
        if r is None:
            raise KeyError(speaker)
        return r.router_id

    def node_gateway(self, node: str) -> Addr:
        """A node's default gateway: the first ToR serving it, else the underlay gateway."""
        tors = self.served_by.get(node) or []
        if tors:
            ip = self.router(tors[0]).ip_on(UNDERLAY)  # type: ignore[union-attr]
            assert ip is not None
            return ip
        return self.underlay_gateway

    def gateway_router(self) -> str | None:
        """The router that owns the underlay gateway address, if any (then br0 has no address)."""
        return next((r.name for r in self.routers if r.ip_on(UNDERLAY) == self.underlay_gateway), None)

    def served_nodes(self, tor: str) -> list[str]:
        return [n for n, tors in self.served_by.items() if tor in tors]

    # -- the peering plan ------------------------------------------------------------------------
    def sessions(self, speaker: str) -> list[Session]:
        if speaker in self.node_ips:
            return self._node_sessions(speaker)
        r = self.router(speaker)
        if r is None:
            raise KeyError(speaker)
        return self._router_sessions(r)

    def all_sessions(self) -> list[Session]:
        return [s for sp in self.speakers() for s in self.sessions(sp)]

    def _node_sessions(self, node: str) -> list[Session]:
        ip, asn = self.node_ips[node], self.node_asns[node]
        out = []
        if self.mesh:
            for other, oip in self.node_ips.items():
                if other != node:
                    out.append(Session(node, ip, asn, other, "node", oip, self.node_asns[other], MESH,
                                       "Mesh_" + _ip_token(oip)))
        for tor_name in self.served_by.get(node, []):
            tor = self.router(tor_name)
            assert tor is not None
            tip = tor.ip_on(UNDERLAY)
            assert tip is not None
            out.append(Session(node, ip, asn, tor.name, "tor", tip, tor.asn, NODE_SPECIFIC, "Node_" + _ip_token(tip),
                               allow_local_as=(tor.asn != asn and not self.as_per_rack)))
        return out

    def _router_sessions(self, r: Router) -> list[Session]:
        out = []
        if r.role == "tor":
            lip = r.ip_on(UNDERLAY)
            assert lip is not None
            for node in self.served_nodes(r.name):
                nasn = self.node_asns[node]
                out.append(Session(r.name, lip, r.asn, node, "node", self.node_ips[node], nasn,
                                   TYPE_RR_CLIENT if nasn == r.asn else TYPE_NODE, protocol_name(node),
                                   rr_client=nasn == r.asn))
            uplinks = self.cores or [t for t in self.tors if t.name != r.name]
        else:
            uplinks = [x for x in self.routers if x.name != r.name]
        for other in uplinks:
            net = shared_network(r, other)
            assert net is not None
            lip, pip = r.ip_on(net.name), other.ip_on(net.name)
            assert lip is not None and pip is not None
            # routers have distinct AS numbers (checked at parse time): these sessions are eBGP
            out.append(Session(r.name, lip, r.asn, other.name, other.role, pip, other.asn,
                               TYPE_CORE if other.role == "core" else TYPE_TOR, protocol_name(other.name)))
        return out


def protocol_name(host: str) -> str:
    """A BIRD protocol name for a peer (a router's view): the host name, made a valid BIRD symbol."""
    sym = re.sub(r"[^A-Za-z0-9_]", "_", host)
    if sym[0].isdigit() or sym.lower() in _BIRD_KEYWORDS:
        sym = "peer_" + sym
    return sym


def _ip_token(ip: Addr) -> str:
    return str(ip).replace(".", "_")


def shared_network(a: Router, b: Router) -> Network | None:
    nets_b = {i.network.name for i in b.ifaces}
    return next((i.network for i in a.ifaces if i.network.name in nets_b), None)


def default_underlay(networking: Networking, nodes: list[NodeSpec]) -> tuple[Net, Addr]:
    """The node network and its gateway, with the same defaults as ``model.lab.underlay_subnet``."""
    sub = networking.underlay_subnet or ipaddress.IPv4Network(f"{nodes[0].ip}/24", strict=False)
    gw = networking.underlay_gateway or sub.network_address + 1
    return sub, gw


# -- parsing and validation ---------------------------------------------------------------------------
def parse(ctx: Context, body: Fields, networking: Networking, nodes: list[NodeSpec],
          hosts: list[ExternalHost]) -> Fabric | None:
    """The ``bgp:`` and ``routers:`` parts of a Cluster; None (and an error if they are set) unless the
    backend is bgp."""
    if networking.backend != "bgp":
        for key in ("routers", "bgp"):
            if body.has(key):
                raise ctx.error(key, f"{key} need networking.backend: bgp (the backend is {networking.backend})")
        return None
    cfg = body.map("bgp")
    cfg.check({"asNumber", "asPerRack", "nodeToNodeMesh", "networks"})
    node_asn = cfg.int("asNumber", DEFAULT_ASN, lo=1, hi=ASN_MAX)
    as_per_rack = bool(cfg.bool("asPerRack", False))
    assert node_asn is not None
    under_sub, under_gw = default_underlay(networking, nodes)

    networks = [Network(UNDERLAY, under_sub, "br0")]
    reserved = [(networking.pod_subnet, "podSubnet"), (networking.service_subnet, "serviceSubnet"),
                (under_sub, "the underlay")]
    for i, nf in enumerate(cfg.maps("networks")):
        nf.check({"name", "subnet"})
        name = nf.str("name", required=True)
        assert name is not None
        check_name(ctx, nf.sub("name"), name, "label")
        if any(n.name == name for n in networks):
            raise ctx.error(nf.sub("name"), f"duplicate network name {name!r}"
                            + (" (reserved for the node network)" if name == UNDERLAY else ""))
        sub = nf.network("subnet", required=True)
        assert sub is not None
        for other, what in reserved:
            if sub.overlaps(other):
                raise ctx.error(nf.sub("subnet"), f"{sub} overlaps {what} {other}")
        reserved.append((sub, f"network {name}"))
        networks.append(Network(name, sub, f"br{i + 1}"))

    def network_of(ip: Addr) -> Network | None:
        return next((n for n in networks if ip in n.subnet), None)

    def subnets() -> str:
        return ", ".join(f"{n.name} {n.subnet}" for n in networks)

    # every address on the lab's networks, for duplicates (nodes were checked against each other already)
    owners: dict[Addr, str] = {n.ip: f"node {n.name}" for n in nodes}
    names_seen: dict[str, str] = {n.name: "a node" for n in nodes}
    names_seen[UNDERLAY] = "the underlay switch"

    routers: list[Router] = []
    asns: dict[int, str] = {}
    for rf in body.maps("routers"):
        rf.check({"name", "role", "asNumber", "ip", "ips", "nodeSelector"})
        name = rf.str("name", required=True)
        assert name is not None
        check_name(ctx, rf.sub("name"), name, "label")
        if name in names_seen:
            raise ctx.error(rf.sub("name"), f"duplicate name {name!r} (already used by {names_seen[name]})")
        names_seen[name] = f"router {name}"
        role = rf.str("role", "tor")
        if role not in ROLES:
            raise ctx.error(rf.sub("role"), f"unknown role {role!r} (one of {', '.join(ROLES)})")
        asn = rf.int("asNumber", required=True, lo=1, hi=ASN_MAX)
        assert asn is not None and role is not None
        if asn in asns:
            raise ctx.error(rf.sub("asNumber"), f"duplicate AS {asn} (already router {asns[asn]}'s): every "
                            "router is its own AS, or BGP loop detection drops the routes between them")
        asns[asn] = name
        if rf.has("ip") and rf.has("ips"):
            raise ctx.error(rf.sub("ips"), "give either ip or ips, not both")
        raw_ips = [(rf.sub("ip"), rf.str("ip"))] if rf.has("ip") else [
            (f"{rf.sub('ips')}[{k}]", v) for k, v in enumerate(rf.strs("ips"))]
        if not raw_ips:
            raise ctx.error(rf.sub("ips"), "a router needs at least one address (ip or ips)")
        ifaces: list[Iface] = []
        for path, text in raw_ips:
            assert text is not None
            ip = parse_address(ctx, path, text)
            net = network_of(ip)
            if net is None:
                raise ctx.error(path, f"router {name}: {ip} is on no subnet of the lab ({subnets()}; declare "
                                "others under bgp.networks)")
            if ip in (net.subnet.network_address, net.subnet.broadcast_address):
                raise ctx.error(path, f"{ip} is the network or broadcast address of {net.subnet}")
            if any(i.network.name == net.name for i in ifaces):
                raise ctx.error(path, f"router {name} has two addresses on network {net.name} ({net.subnet})")
            if ip in owners:
                raise ctx.error(path, f"duplicate IP {ip} (already used by {owners[ip]})")
            owners[ip] = f"router {name}"
            iface = f"eth{len(ifaces)}"
            if iface != "eth0":   # its underlay port is u-<router>-eth<i>: keep that free of host names
                port_of = f"{name}-{iface}"
                if port_of in names_seen:
                    raise ctx.error(rf.sub("name"), f"router {name}'s port u-{port_of} clashes with "
                                    f"{names_seen[port_of]} {port_of!r}: rename one of them")
                names_seen[port_of] = f"router {name}'s port"
            ifaces.append(Iface(iface, ip, net))
        selector = rf.labels("nodeSelector")
        if selector and role != "tor":
            raise ctx.error(rf.sub("nodeSelector"), "only a tor router serves nodes (a core peers with the ToRs)")
        if role == "tor" and not any(i.network.name == UNDERLAY for i in ifaces):
            raise ctx.error(rf.sub("ip" if rf.has("ip") else "ips"), f"ToR {name} has no address on the node "
                            f"network {under_sub}, so no node can peer with it")
        routers.append(Router(name, role, asn, ifaces, selector, rf.path))

    # which ToR serves which node
    tors = [r for r in routers if r.role == "tor"]
    cores = [r for r in routers if r.role == "core"]
    if cores and not tors:
        raise ctx.error("routers", "core routers need at least one tor router to peer with")
    served_by: dict[str, list[str]] = {n.name: [] for n in nodes}
    for t in tors:
        for n in nodes:
            if all(n.labels.get(k) == v for k, v in t.node_selector.items()):
                served_by[n.name].append(t.name)
    if tors:
        for i, n in enumerate(nodes):
            if not served_by[n.name]:
                offers = "; ".join(f"{t.name} serves {_labels(t.node_selector) or 'every node'}" for t in tors)
                raise ctx.error(f"nodes[{i}].labels", f"node {n.name} ({_labels(n.labels) or 'no labels'}) is "
                                f"served by no router ({offers})")
    for t in tors:
        if not any(t.name in served for served in served_by.values()):
            raise ctx.error(f"{t.path}.nodeSelector", f"ToR {t.name} serves no node (no node has labels "
                            f"{_labels(t.node_selector)})")

    node_asns: dict[str, int] = {}
    for i, n in enumerate(nodes):
        if as_per_rack and served_by[n.name]:
            rack = {routers_by(routers, t).asn for t in served_by[n.name]}
            if len(rack) > 1:
                raise ctx.error(f"nodes[{i}].labels", f"node {n.name} is served by ToRs of different AS numbers "
                                f"({', '.join(served_by[n.name])}): with bgp.asPerRack its AS is ambiguous")
            node_asns[n.name] = rack.pop()
        else:
            node_asns[n.name] = node_asn
    for c in cores:
        if c.asn in node_asns.values():
            raise ctx.error(f"{c.path}.asNumber", f"core {c.name}'s AS {c.asn} is also the nodes' AS: the core "
                            "would drop the nodes' routes (BGP loop detection)")
    # routers that must peer need a common network
    for r in routers:
        uplinks = (cores or [t for t in tors if t.name != r.name]) if r.role == "tor" else [
            x for x in routers if x.name != r.name]
        for other in uplinks:
            if shared_network(r, other) is None:
                raise ctx.error(f"{r.path}.ips", f"router {r.name} shares no network with {other.name}, so "
                                "they cannot peer")

    mesh_cfg = cfg.bool("nodeToNodeMesh")
    mesh = (not routers) if mesh_cfg is None else mesh_cfg

    # external hosts: on the node network or another one, routed through a router there
    attached: dict[str, HostAttachment] = {}
    for i, h in enumerate(hosts):
        path = f"externalHosts[{i}].ip"
        if h.name in names_seen:
            raise ctx.error(f"externalHosts[{i}].name", f"duplicate name {h.name!r} (already used by "
                            f"{names_seen[h.name]})")
        names_seen[h.name] = f"host {h.name}"
        net = network_of(h.ip)
        if net is None:
            raise ctx.error(path, f"host {h.name}: {h.ip} is on no subnet of the lab ({subnets()})")
        if h.ip in (net.subnet.network_address, net.subnet.broadcast_address):
            raise ctx.error(path, f"{h.ip} is the network or broadcast address of {net.subnet}")
        if h.ip in owners:
            raise ctx.error(path, f"duplicate IP {h.ip} (already used by {owners[h.ip]})")
        owners[h.ip] = f"host {h.name}"
        gw_router = next((r for r in routers if r.ip_on(net.name) is not None), None)
        if net.name == UNDERLAY:
            gw: Addr | None = gw_router.ip_on(UNDERLAY) if gw_router else under_gw
        elif gw_router is None:
            raise ctx.error(path, f"host {h.name} is on network {net.name}, where no router is: it could not "
                            "reach the cluster")
        else:
            gw = gw_router.ip_on(net.name)
        attached[h.name] = HostAttachment(h.name, h.ip, net, gw)
    if under_gw in owners and not owners[under_gw].startswith("router "):
        raise ctx.error("networking.underlayGateway", f"{under_gw} is the underlay gateway and "
                        f"{owners[under_gw]}'s address")

    return Fabric(node_asn=node_asn, as_per_rack=as_per_rack, mesh=mesh, networks=networks, routers=routers,
                  node_ips={n.name: n.ip for n in nodes}, node_asns=node_asns, served_by=served_by,
                  hosts=attached, underlay_gateway=under_gw)


def routers_by(routers: list[Router], name: str) -> Router:
    return next(r for r in routers if r.name == name)


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

