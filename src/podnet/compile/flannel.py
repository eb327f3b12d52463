"""flannel's per-node state, exactly as flanneld programs it.

vxlan backend: device ``flannel.1`` (VNI 1, UDP 8472, nolearning, MTU = underlay - 50) with address
``<podCIDR network>/32``; per remote node a route ``<cidr> via <cidr network> dev flannel.1 onlink``,
a permanent neighbour ``<cidr network> lladdr <remote VTEP MAC>`` and an FDB entry
``<remote VTEP MAC> dst <remote node IP>``.
host-gw backend: per remote node a route ``<cidr> via <node IP> dev eth0``.
"""

from __future__ import annotations

from podnet.compile.state import AddrSpec, FdbSpec, LinkSpec, NeighSpec, NetnsSpec, RouteSpec, VxlanAttrs
from podnet.model import names
from podnet.model.cluster import VXLAN_OVERHEAD
from podnet.model.lab import Lab, LabNode


def add_node_state(lab: Lab, n: LabNode, spec: NetnsSpec) -> None:
    backend = lab.cluster.networking.backend
    if backend == "vxlan":
        mtu = lab.cluster.networking.mtu - VXLAN_OVERHEAD
        spec.links.append(LinkSpec(names.VXLAN_DEV, "vxlan", mtu=mtu, mac=names.vtep_mac(lab.name, n.name),
                                   vxlan=VxlanAttrs(vni=names.VXLAN_VNI, port=names.VXLAN_PORT,
                                                    local=str(n.ip), dev="eth0", learning=False)))
        spec.addrs.append(AddrSpec(names.VXLAN_DEV, str(n.pod_cidr.network_address), 32))
    spec.routes.extend(remote_routes(lab, n))
    spec.neighs.extend(remote_neighs(lab, n))
    spec.fdb.extend(remote_fdb(lab, n))


def remotes(lab: Lab, n: LabNode) -> list[LabNode]:
    return [m for m in lab.nodes if m.name != n.name]


def remote_routes(lab: Lab, n: LabNode) -> list[RouteSpec]:
    if lab.cluster.networking.backend == "vxlan":
        return [RouteSpec(str(m.pod_cidr), via=str(m.pod_cidr.network_address), dev=names.VXLAN_DEV, onlink=True)
                for m in remotes(lab, n)]
    if lab.cluster.networking.backend == "host-gw":
        return [RouteSpec(str(m.pod_cidr), via=str(m.ip), dev="eth0") for m in remotes(lab, n)]
    return []


def remote_neighs(lab: Lab, n: LabNode) -> list[NeighSpec]:
    if lab.cluster.networking.backend != "vxlan":
        return []
    return [NeighSpec(names.VXLAN_DEV, str(m.pod_cidr.network_address), names.vtep_mac(lab.name, m.name))
            for m in remotes(lab, n)]


def remote_fdb(lab: Lab, n: LabNode) -> list[FdbSpec]:
    if lab.cluster.networking.backend != "vxlan":
        return []
    return [FdbSpec(names.VXLAN_DEV, names.vtep_mac(lab.name, m.name), str(m.ip)) for m in remotes(lab, n)]
