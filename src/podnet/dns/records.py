"""Cluster DNS records as the Kubernetes DNS specification defines them (pure, no I/O).

Spec: https://github.com/kubernetes/dns/blob/master/docs/specification.md (schema 1.1.0, as CoreDNS
reports it). `RecordSet` is built from plain data (`podnet.dns.data`) and answers `lookup(name,
qtype)` with an `Answer` (rcode + sections) that `podnet.dns.wire` turns into a DNS message and
that the tracer can use directly. See docs/dns.md for the full list of records.

Authoritative zones, as in the default kubeadm Corefile (`kubernetes cluster.local in-addr.arpa
ip6.arpa`): the cluster domain and the reverse zones. Anything else is REFUSED (the lab has no
upstream to forward to).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from podnet.dns.data import DEFAULT_DOMAIN, PodData, ServiceData, as_pod, as_service, load_document

# The default kubeadm Corefile sets `ttl 30` (kubernetes/kubernetes#76238, to match kube-dns);
# the CoreDNS kubernetes plugin's own default, without that line, is 5 seconds.
DEFAULT_TTL = 30
SCHEMA_VERSION = "1.1.0"   # what CoreDNS answers for dns-version.<zone> TXT
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
SRV_PRIORITY = 0           # CoreDNS: priority 0, weight 100 split evenly over the targets
PodMode = Literal["verified", "insecure", "disabled"]


class Srv(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str


class Soa(NamedTuple):
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True)
class Record:
    name: str        # absolute, lower case, trailing dot
    rtype: str       # "A", "AAAA", "SRV", "PTR", "TXT", "SOA"
    ttl: int
    data: str | Srv | Soa

    def text(self) -> str:
        data = " ".join(map(str, self.data)) if isinstance(self.data, tuple) else self.data
        if self.rtype == "TXT":
            data = f'"{data}"'
        return f"{self.name} {self.ttl} IN {self.rtype} {data}"


@dataclass(frozen=True)
class Answer:
    rcode: str                       # "NOERROR", "NXDOMAIN", "REFUSED"
    authoritative: bool
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    zone: str | None = None          # the authoritative zone the name fell in

    @property
    def nodata(self) -> bool:
        return self.rcode == "NOERROR" and not self.answer


def fqdn(name: str) -> str:
    """Lower-case absolute form with exactly one trailing dot ("" and "." are the root)."""
    name = name.strip().lower().rstrip(".")
    return name + "." if name else "."


def dashed(ip: str) -> str:
    """10.244.1.5 -> 10-244-1-5 (the pod and unnamed-endpoint label, as CoreDNS makes it)."""
    return str(ipaddress.ip_address(ip)).replace(".", "-").replace(":", "-")


def reverse_name(ip: str) -> str:
    """10.244.1.5 -> 5.1.244.10.in-addr.arpa."""
    return ipaddress.ip_address(ip).reverse_pointer + "."


def _addr_type(ip: str) -> str:
    return "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"


@dataclass
class _Builder:
    ttl: int
    records: dict[str, list[Record]] = field(default_factory=dict)

    def add(self, name: str, rtype: str, data: str | Srv | Soa) -> None:
        rec = Record(fqdn(name), rtype, self.ttl, data)
        bucket = self.records.setdefault(rec.name, [])
        if rec not in bucket:
            bucket.append(rec)

    def has(self, name: str, rtype: str) -> bool:
        return any(r.rtype == rtype for r in self.records.get(fqdn(name), ()))


class RecordSet:
    """All records of one cluster domain; immutable once built (swap whole sets to update)."""

    def __init__(
        self,
        services: Iterable[ServiceData | Sequence[Any]] = (),
        pods: Iterable[PodData | Sequence[Any]] = (),
        domain: str = DEFAULT_DOMAIN,
        *,
        ttl: int = DEFAULT_TTL,
        serial: int = 1,
        pod_mode: PodMode = "verified",
        endpoint_pod_names: bool = False,
    ) -> None:
        if pod_mode not in ("verified", "insecure", "disabled"):
            raise ValueError(f"pod_mode must be verified, insecure or disabled, not {pod_mode!r}")
        self.domain = fqdn(domain)
        self.ttl = ttl
        self.serial = serial & 0xFFFFFFFF
        self.pod_mode = pod_mode
        self.endpoint_pod_names = endpoint_pod_names
        self.services = tuple(map(as_service, services))
        self.pods = tuple(map(as_pod, pods))
        self.zones = tuple(sorted({self.domain, *REVERSE_ZONES}, key=len, reverse=True))
        b = _Builder(ttl)
        b.add(f"dns-version.{self.domain}", "TXT", SCHEMA_VERSION)
        for zone in self.zones:
            b.add(zone, "SOA", self._soa(zone))
        for svc in self.services:
            self._add_service(b, svc)
        if pod_mode != "disabled":
            for pod in self.pods:
                name = f"{dashed(pod.ip)}.{pod.namespace}.pod.{self.domain}"
                b.add(name, _addr_type(pod.ip), str(ipaddress.ip_address(pod.ip)))
                if not b.has(reverse_name(pod.ip), "PTR"):  # services and endpoints come first
                    b.add(reverse_name(pod.ip), "PTR", fqdn(name))
        self._records = {k: tuple(v) for k, v in b.records.items()}
        self._existing = self._with_ancestors(self._records)
        self._pod_re = re.compile(r"^([0-9a-f-]+)\.([a-z0-9-]+)\.pod\." + re.escape(self.domain) + "$")

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], **options: Any) -> RecordSet:
        """Build from the JSON document of `podnet.dns.data` (the records file)."""
        domain, services, pods = load_document(doc)
        return cls(services, pods, domain, **options)

    # -- building -------------------------------------------------------------------------------

    def _soa(self, zone: str) -> Soa:
        # CoreDNS's SOA: ns.dns.<zone> hostmaster.<zone>, refresh 7200 retry 1800 expire 86400,
        # minimum = the TTL (so negative answers are cached no longer than positive ones).
        return Soa(f"ns.dns.{zone}", f"hostmaster.{zone}", self.serial, 7200, 1800, 86400, self.ttl)

    def _add_service(self, b: _Builder, svc: ServiceData) -> None:
        base = fqdn(f"{svc.name}.{svc.namespace}.svc.{self.domain}")
        named = [p for p in svc.ports if p.name]
        if svc.cluster_ip:
            ip = str(ipaddress.ip_address(svc.cluster_ip))
            b.add(base, _addr_type(ip), ip)
            b.add(reverse_name(ip), "PTR", base)
            for p in named:
                b.add(f"_{p.name}._{p.protocol.lower()}.{base}", "SRV", Srv(SRV_PRIORITY, 100, p.port, base))
            return
        # Headless: one A per ready endpoint, plus <hostname>.<svc>... for each of them.
        targets: list[str] = []
        for ep in svc.endpoints:
            if not ep.ready:
                continue
            ip = str(ipaddress.ip_address(ep.ip))
            host = ep.hostname or (ep.pod if self.endpoint_pod_names and ep.pod else None) or dashed(ip)
            target = fqdn(f"{host}.{base}")
            b.add(base, _addr_type(ip), ip)
            b.add(target, _addr_type(ip), ip)
            b.add(reverse_name(ip), "PTR", target)
            if target not in targets:
                targets.append(target)
        weight = max(1, 100 // len(targets)) if targets else 0
        for p in named:
            for target in targets:
                b.add(f"_{p.name}._{p.protocol.lower()}.{base}", "SRV", Srv(SRV_PRIORITY, weight, p.port, target))

    def _with_ancestors(self, records: Mapping[str, object]) -> frozenset[str]:
        """Every owner name plus its ancestors inside its zone (empty non-terminals -> NODATA)."""
        seen: set[str] = set()
        for name in records:
            zone = self.zone_of(name)
            while zone and name not in seen:
                seen.add(name)
                if name == zone:
                    break
                name = name.split(".", 1)[1]
        return frozenset(seen)

    # -- answering ------------------------------------------------------------------------------

    def zone_of(self, name: str) -> str | None:
        """The authoritative zone `name` falls in, or None (outside: REFUSED)."""
        name = fqdn(name)
        for zone in self.zones:
            if name == zone or name.endswith("." + zone):
                return zone
        return None

    def records(self) -> list[Record]:
        """Every stored record, sorted (for dumps and tests)."""
        return sorted((r for rs in self._records.values() for r in rs), key=lambda r: (r.name, r.rtype, str(r.data)))

    def _at(self, name: str) -> tuple[Record, ...]:
        found = self._records.get(name, ())
        if not found and self.pod_mode == "insecure":
            m = self._pod_re.match(name)
            if m:
                try:
                    ip = ipaddress.ip_address(m.group(1).replace("-", "." if m.group(1).count("-") == 3 else ":"))
                except ValueError:
                    return ()
                return (Record(name, _addr_type(str(ip)), self.ttl, str(ip)),)
        return found

    def lookup(self, name: str, qtype: str = "A") -> Answer:
        """Answer one question. Owner names in the answer keep the caller's spelling of `name`."""
        asked = name if name.endswith(".") else name + "."
        key = fqdn(name)
        qtype = qtype.upper()
        zone = self.zone_of(key)
        if zone is None:
            return Answer("REFUSED", authoritative=False)
        here = self._at(key)
        soa = (Record(zone, "SOA", self.ttl, self._soa(zone)),)
        if not here:
            rcode = "NOERROR" if key in self._existing else "NXDOMAIN"
            return Answer(rcode, True, authority=soa, zone=zone)
        matched = [r for r in here if qtype in ("ANY", r.rtype)]
        if not matched:
            return Answer("NOERROR", True, authority=soa, zone=zone)
        answer = tuple(Record(asked, r.rtype, r.ttl, r.data) for r in matched)
        additional: list[Record] = []
        for r in matched:
            if isinstance(r.data, Srv):
                additional.extend(a for a in self._at(r.data.target) if a.rtype in ("A", "AAAA"))
        return Answer("NOERROR", True, answer=answer, additional=tuple(additional), zone=zone)
