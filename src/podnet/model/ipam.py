"""IP address management: node pod CIDRs (flannel-style leases) and pod IPs (host-local style)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from podnet.errors import PodnetError
from podnet.model.cluster import Cluster

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address


def node_cidrs(cluster: Cluster) -> dict[str, Net]:
    """Each node's pod CIDR: the one it declares, else the next free subnet of podSubnet.

    As flannel's SubnetMin default, leases start at the second subnet (10.244.1.0/24 for
    10.244.0.0/16), so node1 gets 10.244.1.0/24 and node2 10.244.2.0/24, as in the articles.
    """
    subnet = cluster.networking.pod_subnet
    mask = cluster.networking.node_cidr_mask
    where = cluster.source
    out: dict[str, Net] = {}
    for n in cluster.nodes:
        if n.pod_cidr is None:
            continue
        if not n.pod_cidr.subnet_of(subnet):
            raise PodnetError(f"{n.pod_cidr} is outside podSubnet {subnet}", where=where,
                              obj=f"Cluster {cluster.name}", field=f"nodes[{n.name}].podCIDR")
        if n.pod_cidr.prefixlen > 30:
            raise PodnetError(f"{n.pod_cidr} is too small for pods", where=where,
                              obj=f"Cluster {cluster.name}", field=f"nodes[{n.name}].podCIDR")
        for other, cidr in out.items():
            if cidr.overlaps(n.pod_cidr):
                raise PodnetError(f"{n.pod_cidr} overlaps node {other}'s podCIDR {cidr}", where=where,
                                  obj=f"Cluster {cluster.name}", field=f"nodes[{n.name}].podCIDR")
        out[n.name] = n.pod_cidr
    free = _free_subnets(subnet, mask, list(out.values()))
    for n in cluster.nodes:
        if n.name in out:
            continue
        cidr = next(free, None)
        if cidr is None:
            raise PodnetError(f"podSubnet {subnet} has no free /{mask} left for node {n.name}", where=where,
                              obj=f"Cluster {cluster.name}", field="networking.podSubnet")
        out[n.name] = cidr
    return {n.name: out[n.name] for n in cluster.nodes}


def _free_subnets(subnet: Net, mask: int, taken: list[Net]) -> Iterator[Net]:
    for i, cidr in enumerate(subnet.subnets(new_prefix=mask)):
        if i == 0 and subnet.prefixlen < mask:
            continue  # flannel's SubnetMin: skip the first subnet
        if not any(cidr.overlaps(t) for t in taken):
            yield cidr


def gateway(cidr: Net) -> Addr:
    """The bridge (cni0) address: the CIDR's first address, as flannel's bridge delegate uses."""
    return cidr.network_address + 1


class PodAllocator:
    """host-local semantics on one node's range: .2 upward, skipping reserved and pinned addresses."""

    def __init__(self, cidr: Net) -> None:
        self.cidr = cidr
        self.used: set[Addr] = {cidr.network_address, gateway(cidr), cidr.broadcast_address}
        self._next = int(cidr.network_address) + 2

    def usable(self, ip: Addr) -> str | None:
        """Why ``ip`` cannot be a pod IP here, or None."""
        if ip not in self.cidr:
            return f"{ip} is outside the node's pod CIDR {self.cidr}"
        if ip == self.cidr.network_address or ip == self.cidr.broadcast_address:
            return f"{ip} is the network or broadcast address of {self.cidr}"
        if ip == gateway(self.cidr):
            return f"{ip} is the node's bridge (gateway) address"
        if ip in self.used:
            return f"{ip} is already in use"
        return None

    def reserve(self, ip: Addr) -> None:
        self.used.add(ip)

    def allocate(self) -> Addr | None:
        last = int(self.cidr.broadcast_address)
        while self._next < last:
            ip = Addr(self._next)
            self._next += 1
            if ip not in self.used:
                self.used.add(ip)
                return ip
        return None
