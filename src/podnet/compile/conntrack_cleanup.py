"""Which conntrack entries kube-proxy deletes after a sync (upstream ``conntrack.CleanStaleEntries``).

UDP has no connection teardown: an entry DNATed to an endpoint that is gone would keep blackholing the
client's "connection" until it times out. So after each sync kube-proxy deletes, for UDP only:

- for every endpoint that stopped being used (removed, or no longer ready/serving), the entries NATed to
  it through any of the service's addresses (``conntrack -D -p udp --orig-dst SVC_IP --dst-nat EP_IP``),
  and through its NodePort (``conntrack -D -p udp --orig-port-dst NODEPORT --dst-nat EP_IP``);
- for every service port that had no endpoint and now has one, the entries toward its addresses (and
  NodePort), which were created while traffic was rejected or blackholed.

Pure: the dataplane runs the filters (``podnet.dataplane.netfilter.conntrack_delete``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from podnet.model.services import ServicePortInfo


@dataclass(frozen=True)
class ConntrackFilter:
    protocol: str                    # "udp"
    orig_dst: str = ""               # the address the client sent to (ClusterIP, external IP, LB IP)
    orig_port_dst: int = 0           # the NodePort
    dst_nat: str = ""                # the endpoint the entry was NATed to
    why: str = ""

    def argv(self) -> list[str]:
        out = ["-p", self.protocol]
        if self.orig_dst:
            out += ["--orig-dst", self.orig_dst]
        if self.orig_port_dst:
            out += ["--orig-port-dst", str(self.orig_port_dst)]
        if self.dst_nat:
            out += ["--dst-nat", self.dst_nat]
        return out


def _addresses(sp: ServicePortInfo) -> list[str]:
    return [a for a in (sp.cluster_ip, *sp.external_ips, *sp.lb_vips) if a and a != "None"]


def _used(sp: ServicePortInfo) -> set[str]:
    """Endpoint IPs the service port sends traffic to (ready, or serving while terminating)."""
    ready = {e.ip for e in sp.endpoints if e.ready}
    return ready or {e.ip for e in sp.endpoints if e.serving and e.terminating}


def stale_entries(old: Iterable[ServicePortInfo], new: Iterable[ServicePortInfo]) -> list[ConntrackFilter]:
    """The filters to run after a sync that turned ``old`` into ``new`` (UDP service ports only)."""
    before = {(sp.spn, sp.protocol): sp for sp in old if sp.protocol == "UDP"}
    out: list[ConntrackFilter] = []
    for sp in new:
        if sp.protocol != "UDP":
            continue
        prev = before.pop((sp.spn, sp.protocol), None)
        was = _used(prev) if prev else set()
        now = _used(sp)
        for ep in sorted(was - now):
            why = f"{sp.spn}: endpoint {ep} removed"
            out += [ConntrackFilter("udp", orig_dst=a, dst_nat=ep, why=why) for a in _addresses(sp)]
            if sp.node_port:
                out.append(ConntrackFilter("udp", orig_port_dst=sp.node_port, dst_nat=ep, why=why))
        if now and not was:
            why = f"{sp.spn}: first endpoint"
            out += [ConntrackFilter("udp", orig_dst=a, why=why) for a in _addresses(sp)]
            if sp.node_port:
                out.append(ConntrackFilter("udp", orig_port_dst=sp.node_port, why=why))
    for sp in before.values():   # the whole service port is gone: its endpoints are stale too
        for ep in sorted(_used(sp)):
            why = f"{sp.spn}: service removed"
            out += [ConntrackFilter("udp", orig_dst=a, dst_nat=ep, why=why) for a in _addresses(sp)]
            if sp.node_port:
                out.append(ConntrackFilter("udp", orig_port_dst=sp.node_port, dst_nat=ep, why=why))
    return out
