"""Service and EndpointSlice (discovery.k8s.io/v1) objects.

Parsing checks what the API server's validation checks on its own (ranges, enums, port names, CIDRs);
checks that need the cluster (clusterIP inside serviceSubnet, nodePort range and uniqueness) are made by
``podnet.model.services`` when services are resolved against a lab, with errors naming the same
file:line, object and field (each object keeps its parsing ``Context`` for that).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from podnet.errors import PodnetError
from podnet.model.fields import Context, Fields, check_name, parse_address
from podnet.model.meta import ObjectMeta, parse_meta
from podnet.model.workloads import PROTOCOLS

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
TRAFFIC_POLICIES = ("Cluster", "Local")
AFFINITIES = ("None", "ClientIP")
IP_MODES = ("VIP", "Proxy")
DEFAULT_AFFINITY_TIMEOUT = 10800   # seconds, as the API server defaults it
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass
class ServicePort:
    port: int
    protocol: str = "TCP"
    name: str = ""
    target_port: int | str | None = None   # number, or a container port name; None: same as port
    node_port: int | None = None


@dataclass
class LoadBalancerIngress:
    ip: str
    ip_mode: str = "VIP"       # "Proxy": the load balancer proxies; kube-proxy writes no rule for it


@dataclass
class Service:
    meta: ObjectMeta
    type: str = "ClusterIP"
    cluster_ip: str | None = None          # None: allocate; "None": headless
    ports: list[ServicePort] = field(default_factory=list)
    selector: dict[str, str] | None = None
    external_ips: list[ipaddress.IPv4Address] = field(default_factory=list)
    session_affinity: str = "None"
    affinity_timeout: int = DEFAULT_AFFINITY_TIMEOUT
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    lb_source_ranges: list[ipaddress.IPv4Network] = field(default_factory=list)
    lb_ingress: list[dict] = field(default_factory=list)        # status.loadBalancer.ingress, as written
    health_check_node_port: int | None = None
    load_balancer_ip: str | None = None    # spec.loadBalancerIP (deprecated): the wished pool address
    allocate_lb_node_ports: bool = True
    publish_not_ready: bool = False
    source: str = ""
    ctx: Context | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"

    @property
    def ingress(self) -> list[LoadBalancerIngress]:
        return [LoadBalancerIngress(ip=str(i["ip"]), ip_mode=str(i.get("ipMode") or "VIP"))
                for i in self.lb_ingress if i.get("ip")]

    def error(self, path: str, msg: str) -> PodnetError:
        """A PodnetError naming this Service, its file:line and ``path``."""
        if self.ctx is not None:
            return self.ctx.error(path, msg)
        return PodnetError(msg, where=self.source or None, obj=f"Service {self.key}", field=path or None)


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

    @property
    def service_key(self) -> str:
        return f"{self.meta.namespace}/{self.service}"


def _parse_port(ctx: Context, pf: Fields) -> ServicePort:
    pf.check({"port", "protocol", "name", "targetPort", "nodePort"}, {"appProtocol"})
    proto = pf.str("protocol", "TCP")
    if proto not in PROTOCOLS:
        raise ctx.error(pf.sub("protocol"), f"unknown protocol {proto!r} (TCP, UDP or SCTP)")
    port = pf.int("port", required=True, lo=1, hi=65535)
    name = pf.str("name", "") or ""
    if name:
        check_name(ctx, pf.sub("name"), name, "label")
    tp = pf.raw("targetPort")
    if isinstance(tp, bool) or (tp is not None and not isinstance(tp, int | str)):
        raise ctx.error(pf.sub("targetPort"), "must be a port number or a port name")
    if isinstance(tp, str) and tp.isdigit():
        tp = int(tp)
    if isinstance(tp, int) and not 1 <= tp <= 65535:
        raise ctx.error(pf.sub("targetPort"), f"{tp} is out of range [1, 65535]")
    if isinstance(tp, str):
        check_name(ctx, pf.sub("targetPort"), tp, "1035")
        if len(tp) > 15:
            raise ctx.error(pf.sub("targetPort"), f"port name {tp!r} is longer than 15 characters")
    assert port is not None and proto is not None
    return ServicePort(port=port, protocol=proto, name=name, target_port=tp,
                       node_port=pf.int("nodePort", lo=1, hi=65535))


def _check_ports(ctx: Context, stype: str, ports: list[ServicePort], headless: bool) -> None:
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    for i, p in enumerate(ports):
        if len(ports) > 1 and not p.name:
            raise ctx.error(f"spec.ports[{i}].name", "required when a service has more than one port")
        if p.name in names:
            raise ctx.error(f"spec.ports[{i}].name", f"duplicate port name {p.name!r}")
        names.add(p.name)
        if (p.port, p.protocol) in seen:
            raise ctx.error(f"spec.ports[{i}]", f"duplicate port {p.port}/{p.protocol}")
        seen.add((p.port, p.protocol))
        if p.node_port is not None and stype not in ("NodePort", "LoadBalancer"):
            raise ctx.error(f"spec.ports[{i}].nodePort", f"may not be used when type is {stype!r}")
        if headless and isinstance(p.target_port, int) and p.target_port != p.port:
            raise ctx.error(f"spec.ports[{i}].targetPort",
                            "must be equal to port for a headless service (clusterIP: None)")
    if stype != "ExternalName" and not ports and not headless:
        raise ctx.error("spec.ports", "a service needs at least one port")


def _parse_ingress(ctx: Context, body: Fields) -> list[dict]:
    out = []
    for ing in body.map("status").map("loadBalancer").maps("ingress"):
        ing.check({"ip", "ipMode", "hostname", "ports"})
        ip = ing.str("ip")
        if ip is not None:
            parse_address(ctx, ing.sub("ip"), ip)
        mode = ing.str("ipMode")
        if mode is not None and mode not in IP_MODES:
            raise ctx.error(ing.sub("ipMode"), f"unknown ipMode {mode!r} (VIP or Proxy)")
        if ip is None and ing.has("hostname"):
            ctx.warn(ing.sub("hostname"), "hostname-only ingress gets no rules (kube-proxy needs an IP)")
        out.append(dict(ing.data))
    return out


def _parse_source_ranges(ctx: Context, spec: Fields) -> list[ipaddress.IPv4Network]:
    out = []
    for i, raw in enumerate(spec.strs("loadBalancerSourceRanges")):
        path = f"spec.loadBalancerSourceRanges[{i}]"
        try:   # the API server accepts host bits and surrounding blanks; kube-proxy prints the network
            net = ipaddress.ip_network(raw.strip(), strict=False)
        except ValueError:
            raise ctx.error(path, f"invalid CIDR {raw!r}") from None
        if net.version != 4:
            raise ctx.error(path, f"{raw.strip()}: only IPv4 is supported")
        out.append(net)  # type: ignore[arg-type]
    return out


def _enum(ctx: Context, f: Fields, key: str, default: str, allowed: tuple[str, ...]) -> str:
    v = f.str(key, default) or default
    if v not in allowed:
        raise ctx.error(f.sub(key), f"unsupported value {v!r} (one of {', '.join(allowed)})")
    return v


def _check_families(ctx: Context, spec: Fields) -> None:
    for i, fam in enumerate(spec.strs("ipFamilies")):
        if fam != "IPv4":
            raise ctx.error(f"spec.ipFamilies[{i}]", f"only IPv4 is supported, got {fam!r}")
    pol = spec.str("ipFamilyPolicy", "SingleStack")
    if pol not in ("SingleStack", "PreferDualStack", "RequireDualStack"):
        raise ctx.error("spec.ipFamilyPolicy", f"unsupported value {pol!r}")
    if pol == "RequireDualStack":
        raise ctx.error("spec.ipFamilyPolicy", "RequireDualStack: podnet clusters are IPv4 only")


def parse_service(ctx: Context, body: Fields) -> Service:
    body.check({"apiVersion", "kind", "metadata", "spec", "status"})
    meta = parse_meta(ctx, body, namespaced=True, name_rule="1035")
    spec = body.map("spec")
    spec.check({"type", "clusterIP", "clusterIPs", "ports", "selector", "externalIPs", "sessionAffinity",
                "sessionAffinityConfig", "externalTrafficPolicy", "internalTrafficPolicy",
                "loadBalancerSourceRanges", "healthCheckNodePort", "loadBalancerIP", "externalName",
                "ipFamilies", "ipFamilyPolicy", "publishNotReadyAddresses", "allocateLoadBalancerNodePorts"},
               {"loadBalancerClass", "trafficDistribution"})
    stype = spec.str("type", "ClusterIP") or "ClusterIP"
    if stype not in SERVICE_TYPES:
        raise ctx.error("spec.type", f"unknown service type {stype!r} (one of {', '.join(SERVICE_TYPES)})")
    _check_families(ctx, spec)
    cluster_ip = spec.str("clusterIP") or None
    ips = spec.strs("clusterIPs")
    if ips and cluster_ip is None:
        cluster_ip = ips[0]
    if ips and ips[0] != cluster_ip:
        raise ctx.error("spec.clusterIPs[0]", f"must match spec.clusterIP {cluster_ip!r}")
    if cluster_ip not in (None, "None"):
        cluster_ip = str(parse_address(ctx, "spec.clusterIP", cluster_ip))
    if cluster_ip == "None" and stype in ("NodePort", "LoadBalancer"):
        raise ctx.error("spec.clusterIP", f"may not be None for type {stype}")
    ports = [_parse_port(ctx, pf) for pf in spec.maps("ports")]
    _check_ports(ctx, stype, ports, cluster_ip == "None")
    sel = spec.labels("selector") if spec.has("selector") else None
    aff_cfg = spec.map("sessionAffinityConfig")
    aff_cfg.check({"clientIP"})
    aff = aff_cfg.map("clientIP")
    aff.check({"timeoutSeconds"})
    etp = _enum(ctx, spec, "externalTrafficPolicy", "Cluster", TRAFFIC_POLICIES)
    hcnp = spec.int("healthCheckNodePort", lo=1, hi=65535)
    if hcnp is not None and not (stype == "LoadBalancer" and etp == "Local"):
        raise ctx.error("spec.healthCheckNodePort",
                        "may only be set when type is LoadBalancer and externalTrafficPolicy is Local")
    lb_ip = spec.str("loadBalancerIP")
    if lb_ip:
        lb_ip = str(parse_address(ctx, "spec.loadBalancerIP", lb_ip))
    if stype == "ExternalName" and not spec.has("externalName"):
        raise ctx.error("spec.externalName", "required for type ExternalName")
    return Service(
        meta=meta, type=stype, cluster_ip=cluster_ip, ports=ports, selector=sel or None,
        external_ips=[parse_address(ctx, f"spec.externalIPs[{i}]", v)
                      for i, v in enumerate(spec.strs("externalIPs"))],
        session_affinity=_enum(ctx, spec, "sessionAffinity", "None", AFFINITIES),
        affinity_timeout=aff.int("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT, lo=1, hi=86400)
        or DEFAULT_AFFINITY_TIMEOUT,
        external_traffic_policy=etp,
        internal_traffic_policy=_enum(ctx, spec, "internalTrafficPolicy", "Cluster", TRAFFIC_POLICIES),
        lb_source_ranges=_parse_source_ranges(ctx, spec),
        lb_ingress=_parse_ingress(ctx, body), health_check_node_port=hcnp, load_balancer_ip=lb_ip or None,
        allocate_lb_node_ports=bool(spec.bool("allocateLoadBalancerNodePorts", True)),
        publish_not_ready=bool(spec.bool("publishNotReadyAddresses", False)),
        source=ctx.where() or "", ctx=ctx)


def parse_endpointslice(ctx: Context, body: Fields) -> EndpointSlice:
    body.check({"apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"})
    meta = parse_meta(ctx, body, namespaced=True)
    svc = meta.labels.get(SERVICE_NAME_LABEL)
    if not svc:
        raise ctx.error("metadata.labels", f"an EndpointSlice needs the {SERVICE_NAME_LABEL} label")
    at = body.str("addressType", required=True)
    if at != "IPv4":
        raise ctx.error("addressType", f"only IPv4 is supported, got {at!r}")
    endpoints = []
    for ef in body.maps("endpoints"):
        ef.check({"addresses", "conditions", "nodeName", "targetRef"},
                 {"hostname", "zone", "hints", "deprecatedTopology"})
        addrs = ef.strs("addresses")
        if not addrs:
            raise ctx.error(ef.sub("addresses"), "an endpoint needs at least one address")
        for i, a in enumerate(addrs):
            parse_address(ctx, f"{ef.sub('addresses')}[{i}]", a)
        cond = ef.map("conditions")
        cond.check({"ready", "serving", "terminating"})
        # kube-proxy's defaults (endpointslicecache.go): ready and serving default to true,
        # terminating to false.
        tref = ef.map("targetRef")
        endpoints.append(Endpoint(addresses=addrs, ready=bool(cond.bool("ready", True)),
                                  serving=bool(cond.bool("serving", True)),
                                  terminating=bool(cond.bool("terminating", False)),
                                  node_name=ef.str("nodeName", "") or "",
                                  target_ref=f"{tref.str('namespace', meta.namespace)}/{tref.str('name')}"
                                  if tref.has("name") else ""))
    ports = []
    for pf in body.maps("ports"):
        pf.check({"port", "protocol", "name"}, {"appProtocol"})
        proto = pf.str("protocol", "TCP")
        if proto not in PROTOCOLS:
            raise ctx.error(pf.sub("protocol"), f"unknown protocol {proto!r} (TCP, UDP or SCTP)")
        port = pf.int("port", required=True, lo=1, hi=65535)
        assert port is not None and proto is not None
        ports.append(EndpointPort(port=port, protocol=proto, name=pf.str("name", "") or ""))
    return EndpointSlice(meta=meta, service=svc, endpoints=endpoints, ports=ports, source=ctx.where() or "")
