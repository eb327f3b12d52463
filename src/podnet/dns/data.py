"""Plain input data for the cluster DNS (no dependency on podnet.model).

The lab converts its model into these tuples (or into the JSON document below) and hands them to
`RecordSet`. Plain NamedTuples, so ordinary tuples work too.

JSON document (what `python -m podnet.dns.server --records FILE` reads)::

    {"domain": "cluster.local",
     "services": [{"namespace": "default", "name": "my-service", "cluster_ip": "10.96.45.67",
                   "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                   "endpoints": [{"ip": "10.244.2.8", "hostname": null, "ready": true,
                                  "pod": "web-1"}]}],
     "pods": [{"namespace": "default", "name": "pod-a", "ip": "10.244.1.5"}]}

`cluster_ip` is null for a headless Service. Every key but `namespace`, `name` (and `ip` for
pods and endpoints) is optional.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

DEFAULT_DOMAIN = "cluster.local"


class PortData(NamedTuple):
    name: str | None      # None or "" = unnamed port (no SRV record)
    port: int
    protocol: str = "TCP"  # TCP, UDP or SCTP


class EndpointData(NamedTuple):
    ip: str
    hostname: str | None = None
    ready: bool = True
    pod: str | None = None  # the pod name behind the endpoint (targetRef), if any


class ServiceData(NamedTuple):
    namespace: str
    name: str
    cluster_ip: str | None  # None = headless
    ports: Sequence[PortData | tuple[Any, ...]] = ()
    endpoints: Sequence[EndpointData | tuple[Any, ...]] = ()


class PodData(NamedTuple):
    namespace: str
    name: str
    ip: str


def as_service(item: ServiceData | Sequence[Any]) -> ServiceData:
    svc = ServiceData(*item)
    return svc._replace(
        ports=tuple(PortData(*p) for p in svc.ports),
        endpoints=tuple(EndpointData(*e) for e in svc.endpoints),
    )


def as_pod(item: PodData | Sequence[Any]) -> PodData:
    return PodData(*item)


def _service_from_json(d: Mapping[str, Any]) -> ServiceData:
    return ServiceData(
        namespace=str(d["namespace"]),
        name=str(d["name"]),
        cluster_ip=d.get("cluster_ip") or None,
        ports=tuple(
            PortData(p.get("name") or None, int(p["port"]), str(p.get("protocol") or "TCP"))
            for p in d.get("ports") or ()
        ),
        endpoints=tuple(
            EndpointData(str(e["ip"]), e.get("hostname") or None, bool(e.get("ready", True)), e.get("pod"))
            for e in d.get("endpoints") or ()
        ),
    )


def load_document(doc: Mapping[str, Any]) -> tuple[str, list[ServiceData], list[PodData]]:
    """Parse the JSON document: (domain, services, pods). Raises KeyError/TypeError/ValueError."""
    if not isinstance(doc, Mapping):
        raise TypeError("records document must be a JSON object")
    domain = str(doc.get("domain") or DEFAULT_DOMAIN)
    services = [_service_from_json(s) for s in doc.get("services") or ()]
    pods = [PodData(str(p["namespace"]), str(p["name"]), str(p["ip"])) for p in doc.get("pods") or ()]
    return domain, services, pods


def make_document(
    services: Iterable[ServiceData | Sequence[Any]],
    pods: Iterable[PodData | Sequence[Any]] = (),
    domain: str = DEFAULT_DOMAIN,
) -> dict[str, Any]:
    """The JSON document for these services and pods (what the lab writes for the DNS pods)."""
    return {
        "domain": domain,
        "services": [
            {
                "namespace": s.namespace,
                "name": s.name,
                "cluster_ip": s.cluster_ip,
                "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in s.ports],
                "endpoints": [
                    {"ip": e.ip, "hostname": e.hostname, "ready": e.ready, "pod": e.pod} for e in s.endpoints
                ],
            }
            for s in map(as_service, services)
        ],
        "pods": [{"namespace": p.namespace, "name": p.name, "ip": p.ip} for p in map(as_pod, pods)],
    }
