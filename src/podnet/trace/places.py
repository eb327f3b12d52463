"""What each namespace of a snapshot is (a node, a pod, an external host, the underlay) and the
Services the cluster has, so traces speak of "pod default/pod-a on node1" rather than netns names,
and SRC/DST can be given as ``pod-a``, ``svc/default/my-service`` or ``node/node1``.

From a lab (``from_lab``) everything is known; ``podnet snapshot save`` writes it next to the dumps
as ``podnet-places.json``. A dump directory of a real node has no such file: each namespace is then
named after its directory, and Services are read from the kube-proxy rules themselves (the
``KUBE-SERVICES`` comments in iptables mode, the ``service-ips`` verdict map in nftables mode), i.e.
from the state the kernel holds. Pure (the file I/O is two small functions at the end).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from podnet.errors import PodnetError
from podnet.sim.snapshot import Snapshot

PLACES_FILE = "podnet-places.json"
PLACES_VERSION = 1


@dataclass(frozen=True, slots=True)
class Place:
    netns: str
    kind: str                     # node, pod, host, router, underlay, netns
    name: str                     # node1, default/pod-a, ext1, underlay, or the netns name
    node: str                     # the node (or host) it runs on; "" for the underlay
    ip: str | None = None         # the pod IP, the node IP
    resolv: str | None = None     # a pod's /etc/resolv.conf

    @property
    def label(self) -> str:
        if self.kind in ("underlay", "netns"):
            return self.name
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str                 # tcp, udp, sctp
    cluster_ip: str | None
    port: int
    node_port: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# lazily built lookups for a Places (frozen, so kept beside it; checked against the indexed object)
_SERVICE_INDEX: dict[int, tuple[tuple[ServicePort, ...], dict[str, list[ServicePort]]]] = {}
_KIND_INDEX: dict[int, tuple[dict[str, Place], dict[str, list[Place]]]] = {}


@dataclass(frozen=True, slots=True)
class Places:
    places: dict[str, Place]
    services: tuple[ServicePort, ...] = ()
    domain: str = "cluster.local"
    lab: str | None = None
    notes: tuple[str, ...] = field(default=())

    def namer(self, netns: str) -> tuple[str, str]:
        p = self.places.get(netns)
        if p is None:
            return netns, netns
        return p.node or p.name, p.label

    def services_at(self, ip: str) -> list[ServicePort]:
        idx = _SERVICE_INDEX.get(id(self))
        if idx is None or idx[0] is not self.services:
            by_ip: dict[str, list[ServicePort]] = {}
            for s in self.services:
                if s.cluster_ip:
                    by_ip.setdefault(s.cluster_ip, []).append(s)
            idx = _SERVICE_INDEX[id(self)] = (self.services, by_ip)
        return idx[1].get(ip, [])

    def place(self, netns: str) -> Place:
        return self.places.get(netns) or Place(netns, "netns", netns, netns)

    def of_kind(self, kind: str) -> list[Place]:
        idx = _KIND_INDEX.get(id(self))
        if idx is None or idx[0] is not self.places:
            by_kind: dict[str, list[Place]] = {}
            for p in self.places.values():
                by_kind.setdefault(p.kind, []).append(p)
            idx = _KIND_INDEX[id(self)] = (self.places, by_kind)
        return idx[1].get(kind, [])

    def to_json(self) -> str:
        return json.dumps({"version": PLACES_VERSION, "lab": self.lab, "domain": self.domain,
                           "places": [asdict(p) for p in self.places.values()],
                           "services": [asdict(s) for s in self.services]}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = PLACES_FILE) -> Places:
        try:
            data = json.loads(text)
            places = {p["netns"]: Place(**p) for p in data.get("places", [])}
            services = tuple(ServicePort(**s) for s in data.get("services", []))
        except (ValueError, TypeError, KeyError) as e:
            raise PodnetError(f"malformed places file: {e}", where=source) from None
        return cls(places, services, data.get("domain") or "cluster.local", data.get("lab"))


# -- from a lab ------------------------------------------------------------------------------------
def from_lab(lab: Any) -> Places:
    """Places of a running lab (``podnet.model.lab.Lab``), with its Services."""
    from podnet.compile.dns import resolv_conf
    from podnet.model import names
    from podnet.model.services import resolve_services

    net = lab.cluster.networking
    domain = net.dns_domain
    places: dict[str, Place] = {}
    places[names.underlay_ns(lab.name)] = Place(names.underlay_ns(lab.name), "underlay", "underlay", "underlay")
    for n in lab.nodes:
        places[n.netns] = Place(n.netns, "node", n.name, n.name, str(n.ip))
    for h in lab.cluster.external_hosts:
        ns = names.host_ns(lab.name, h.name)
        places[ns] = Place(ns, "host", h.name, h.name, str(h.ip))
    for r in getattr(lab.cluster, "routers", ()):
        ns = names.host_ns(lab.name, r.name)
        places[ns] = Place(ns, "router", r.name, r.name, str(r.ip))
    for p in lab.pods:
        if p.host_network:
            continue
        places[p.netns] = Place(p.netns, "pod", f"{p.namespace}/{p.name}", p.node, str(p.ip), resolv_conf(lab, p))
    services: list[ServicePort] = []
    try:
        for sp in resolve_services(lab).ports():
            services.append(ServicePort(sp.namespace, sp.name, sp.port_name, sp.protocol.lower(), sp.cluster_ip,
                                        sp.port, sp.node_port))
    except PodnetError:
        pass
    return Places(places, tuple(services), domain, lab.name)


# -- from the snapshot alone ---------------------------------------------------------------------
_SVC_COMMENT = re.compile(r"^(?P<ns>[^/\s]+)/(?P<name>[^:\s]+)(?::(?P<port>\S+))? (?P<what>cluster IP|has no endpoints"
                          r"|external IP|loadbalancer IP)")
_NFT_CHAIN = re.compile(r"^(?:service|external)-[A-Z0-9]+-(?P<ns>[^/]+)/(?P<name>[^/]+)/(?P<proto>[a-z]+)"
                        r"/(?P<port>.*)$")


def infer(snapshot: Snapshot, base: Places | None = None) -> Places:
    """Places for namespaces the base does not describe, and Services read from kube-proxy rules."""
    places = dict(base.places) if base else {}
    for name, st in snapshot.namespaces.items():
        if name in places:
            continue
        links = {lk.name: lk for lk in st.links}
        ip = next((str(a.local) for a in st.addresses if a.family == "inet" and not a.local.is_loopback), None)
        is_node = "cni0" in links or any(lk.kind == "vxlan" for lk in st.links) or (
            st.ip_forward and any(lk.name.startswith(("cali", "veth")) for lk in st.links))
        kind = "node" if is_node else "netns"
        places[name] = Place(name, kind, name, name, ip)
    services = list(base.services) if base else []
    if not services:
        services = services_from_rules(snapshot)
    return Places(places, tuple(services), base.domain if base else "cluster.local", base.lab if base else None)


def services_from_rules(snapshot: Snapshot) -> list[ServicePort]:
    """Services as kube-proxy wrote them into the kernel (any node's rules; first seen wins)."""
    seen: dict[tuple[str, str, int, str], ServicePort] = {}
    for st in snapshot.namespaces.values():
        for table, chain in (("nat", "KUBE-SERVICES"), ("filter", "KUBE-SERVICES")):
            ch = st.iptables.chain(table, chain)
            if ch is None:
                continue
            for r in ch.rules:
                m = _SVC_COMMENT.match(r.comment or "")
                if m is None or r.dst is None or r.dport is None or r.proto is None:
                    continue
                if m.group("what") not in ("cluster IP", "has no endpoints"):
                    continue
                port = r.dport.ranges[0][0]
                key = (m.group("ns"), m.group("name"), port, r.proto)
                seen.setdefault(key, ServicePort(m.group("ns"), m.group("name"), m.group("port") or "",
                                                 r.proto, str(r.dst.net.network_address), port))
        t = st.nft.table("ip", "kube-proxy")
        if t is None:
            continue
        for mapname in ("service-ips", "no-endpoint-services"):
            s = t.sets.get(mapname)
            if s is None:
                continue
            for el in s.elements:
                try:
                    key, verdict = el[0], el[1]
                    comment = ""
                    if isinstance(key, dict) and isinstance(key.get("elem"), dict):
                        comment = str(key["elem"].get("comment") or "")
                        key = key["elem"]["val"]
                    ip_s, proto, port = key["concat"]
                    ipaddress.ip_address(ip_s)
                except (KeyError, TypeError, ValueError, IndexError):
                    continue
                target = ""
                if isinstance(verdict, dict):
                    target = next(iter(verdict.values()), {}).get("target", "") if verdict else ""
                m = _NFT_CHAIN.match(target or "")
                if m is not None:
                    svc_ns, svc_name, port_name = m.group("ns"), m.group("name"), m.group("port")
                elif re.match(r"^[^/\s]+/[^:\s]+(:\S+)?$", comment):
                    svc_ns, rest = comment.split("/", 1)
                    svc_name, _, port_name = rest.partition(":")
                else:
                    continue
                k = (svc_ns, svc_name, int(port), str(proto))
                seen.setdefault(k, ServicePort(svc_ns, svc_name, port_name, str(proto), ip_s, int(port)))
    return list(seen.values())


# -- files -------------------------------------------------------------------------------------------
def load_places(snapshot_dir: str | Path, snapshot: Snapshot) -> Places:
    p = Path(snapshot_dir) / PLACES_FILE
    base = Places.from_json(p.read_text(encoding="utf-8"), str(p)) if p.is_file() else None
    return infer(snapshot, base)


def save_places(places: Places, snapshot_dir: str | Path) -> None:
    (Path(snapshot_dir) / PLACES_FILE).write_text(places.to_json(), encoding="utf-8")
