"""Service and EndpointSlice (discovery.k8s.io/v1) objects."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from podnet.model.fields import Context, Fields, parse_address
from podnet.model.meta import ObjectMeta, parse_meta
from podnet.model.workloads import PROTOCOLS

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


@dataclass
class ServicePort:
    port: int
    protocol: str = "TCP"
    name: str = ""
    target_port: int | str | None = None   # number, or a container port name
    node_port: int | None = None


@dataclass
class Service:
    meta: ObjectMeta
    type: str = "ClusterIP"
    cluster_ip: str | None = None          # None: allocate; "None": headless
    ports: list[ServicePort] = field(default_factory=list)
    selector: dict[str, str] | None = None
    external_ips: list[ipaddress.IPv4Address] = field(default_factory=list)
    session_affinity: str = "None"
    affinity_timeout: int = 10800
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    lb_source_ranges: list[ipaddress.IPv4Network] = field(default_factory=list)
    lb_ingress: list[dict] = field(default_factory=list)
    health_check_node_port: int | None = None
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


@dataclass
class Endpoint:
    addresses: list[str]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    target_ref: str = ""       # "ns/pod"


@dataclass
class EndpointPort:
    port: int
    protocol: str = "TCP"
    name: str = ""


@dataclass
class EndpointSlice:
    meta: ObjectMeta
    service: str               # kubernetes.io/service-name label
    endpoints: list[Endpoint] = field(default_factory=list)
    ports: list[EndpointPort] = field(default_factory=list)
    derived: bool = False      # True when podnet derived it from a selector
    source: str = ""


def parse_service(ctx: Context, body: Fields) -> Service:
    body.check({"apiVersion", "kind", "metadata", "spec", "status"})
    meta = parse_meta(ctx, body, namespaced=True, name_rule="1035")
    spec = body.map("spec")
    spec.check({"type", "clusterIP", "clusterIPs", "ports", "selector", "externalIPs", "sessionAffinity",
                "sessionAffinityConfig", "externalTrafficPolicy", "internalTrafficPolicy",
                "loadBalancerSourceRanges", "healthCheckNodePort", "loadBalancerIP", "externalName",
                "ipFamilies", "ipFamilyPolicy", "publishNotReadyAddresses", "allocateLoadBalancerNodePorts",
                "loadBalancerClass", "trafficDistribution"})
    stype = spec.str("type", "ClusterIP")
    if stype not in SERVICE_TYPES:
        raise ctx.error("spec.type", f"unknown service type {stype!r} (one of {', '.join(SERVICE_TYPES)})")
    cluster_ip = spec.str("clusterIP")
    if cluster_ip not in (None, "", "None"):
        parse_address(ctx, "spec.clusterIP", cluster_ip)
    ports = []
    for pf in spec.maps("ports"):
        pf.check({"port", "protocol", "name", "targetPort", "nodePort"}, {"appProtocol"})
        proto = pf.str("protocol", "TCP")
        if proto not in PROTOCOLS:
            raise ctx.error(pf.sub("protocol"), f"unknown protocol {proto!r} (TCP, UDP or SCTP)")
        tp = pf.raw("targetPort")
        if tp is not None and not isinstance(tp, int | str):
            raise ctx.error(pf.sub("targetPort"), "must be a port number or a port name")
        if isinstance(tp, int) and not 1 <= tp <= 65535:
            raise ctx.error(pf.sub("targetPort"), f"{tp} is out of range [1, 65535]")
        port = pf.int("port", required=True, lo=1, hi=65535)
        assert port is not None and proto is not None
        ports.append(ServicePort(port=port, protocol=proto, name=pf.str("name", "") or "",
                                 target_port=tp, node_port=pf.int("nodePort", lo=1, hi=65535)))
    sel = spec.labels("selector") if spec.has("selector") else None
    aff = spec.map("sessionAffinityConfig").map("clientIP")
    lb_ingress = []
    for ing in body.map("status").map("loadBalancer").maps("ingress"):
        lb_ingress.append(dict(ing.data))
    return Service(
        meta=meta, type=stype or "ClusterIP", cluster_ip=cluster_ip or None, ports=ports, selector=sel,
        external_ips=[parse_address(ctx, f"spec.externalIPs[{i}]", v)
                      for i, v in enumerate(spec.strs("externalIPs"))],
        session_affinity=spec.str("sessionAffinity", "None") or "None",
        affinity_timeout=aff.int("timeoutSeconds", 10800, lo=1, hi=86400) or 10800,
        external_traffic_policy=spec.str("externalTrafficPolicy", "Cluster") or "Cluster",
        internal_traffic_policy=spec.str("internalTrafficPolicy", "Cluster") or "Cluster",
        lb_source_ranges=[ipaddress.IPv4Network(v, strict=False) for v in spec.strs("loadBalancerSourceRanges")],
        lb_ingress=lb_ingress, health_check_node_port=spec.int("healthCheckNodePort", lo=1, hi=65535),
        source=ctx.where() or "")


def parse_endpointslice(ctx: Context, body: Fields) -> EndpointSlice:
    body.check({"apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"})
    meta = parse_meta(ctx, body, namespaced=True)
    svc = meta.labels.get("kubernetes.io/service-name")
    if not svc:
        raise ctx.error("metadata.labels", "an EndpointSlice needs the kubernetes.io/service-name label")
    at = body.str("addressType", "IPv4")
    if at != "IPv4":
        raise ctx.error("addressType", f"only IPv4 is supported, got {at!r}")
    endpoints = []
    for ef in body.maps("endpoints"):
        ef.check({"addresses", "conditions", "nodeName", "targetRef"}, {"hostname", "zone", "hints", "deprecatedTopology"})
        addrs = ef.strs("addresses")
        for i, a in enumerate(addrs):
            parse_address(ctx, f"{ef.sub('addresses')}[{i}]", a)
        cond = ef.map("conditions")
        cond.check({"ready", "serving", "terminating"})
        ready = cond.bool("ready", True)
        tref = ef.map("targetRef")
        endpoints.append(Endpoint(addresses=addrs, ready=bool(ready),
                                  serving=bool(cond.bool("serving", ready)),
                                  terminating=bool(cond.bool("terminating", False)),
                                  node_name=ef.str("nodeName", "") or "",
                                  target_ref=f"{tref.str('namespace', meta.namespace)}/{tref.str('name')}"
                                  if tref.has("name") else ""))
    ports = []
    for pf in body.maps("ports"):
        pf.check({"port", "protocol", "name"}, {"appProtocol"})
        proto = pf.str("protocol", "TCP")
        if proto not in PROTOCOLS:
            raise ctx.error(pf.sub("protocol"), f"unknown protocol {proto!r}")
        port = pf.int("port", required=True, lo=1, hi=65535)
        assert port is not None and proto is not None
        ports.append(EndpointPort(port=port, protocol=proto, name=pf.str("name", "") or ""))
    return EndpointSlice(meta=meta, service=svc, endpoints=endpoints, ports=ports, source=ctx.where() or "")
