"""Resolve Services against a lab: addresses, ports, endpoints, and kube-proxy's view of them.

Pure and deterministic. What the API server and the controllers would decide is decided here:

- **ClusterIPs** come from ``networking.serviceSubnet``; given ones are honoured (after the API server's
  checks). The subnet's first address is kept for ``default/kubernetes`` and ``networking.dnsIP`` for
  ``kube-system/kube-dns``. Other services get an address picked by a hash of ``ns/name`` and linear
  probing, in the upper band of the range as the Kubernetes allocator prefers (the lower band is left
  for static choices), so adding a service never moves another one.
- **NodePorts** come from 30000-32767 the same way; a port given twice is an error, as in Kubernetes.
  ``healthCheckNodePort`` is allocated for LoadBalancer services with ``externalTrafficPolicy: Local``.
- **LoadBalancer ingress**: ``status.loadBalancer.ingress`` as written (with ``ipMode``); otherwise an
  address of ``networking.loadBalancerPool`` (``spec.loadBalancerIP`` when it is in the pool), else none
  (the service stays pending, as on a cluster without a load-balancer controller).
- **EndpointSlices** are derived from selectors as the EndpointSlice controller does (named target
  ports resolved per pod from its container ports; pods grouped by their port mapping; at most 100
  endpoints per slice). Hand-written slices are honoured too: kube-proxy merges every slice of a
  service.
- **Endpoint selection** (``select_endpoints``) is upstream's ``CategorizeEndpoints``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

from podnet.model import names
from podnet.model.cluster import Networking
from podnet.model.lab import Lab, PlacedPod
from podnet.model.meta import ObjectMeta
from podnet.model.service import (
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    LoadBalancerIngress,
    Service,
)

NODE_PORT_RANGE = (30000, 32767)
DEFAULT_SERVICE_SUBNET = ipaddress.IPv4Network("10.96.0.0/12")
MAX_ENDPOINTS_PER_SLICE = 100
KUBERNETES_SERVICE = "default/kubernetes"
DNS_SERVICE = "kube-system/kube-dns"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"

Ready = Callable[[PlacedPod], bool]


def all_ready(pod: PlacedPod) -> bool:
    """The default readiness: every pod is ready (the dataplane passes a liveness check instead)."""
    return True


# --------------------------------------------------------------------------- kube-proxy's view

@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint of one service port, as kube-proxy's endpoint cache holds it."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""

    @property
    def key(self) -> str:
        """``ip:port``: the endpoint's name in chain hashes, comments and DNAT targets."""
        return f"{self.ip}:{self.port}"

    def is_local(self, node: str) -> bool:
        return bool(self.node_name) and self.node_name == node


@dataclass(frozen=True)
class ServicePortInfo:
    """One port of one service, as kube-proxy's service cache holds it (``BaseServicePortInfo``)."""

    namespace: str
    name: str
    port_name: str
    protocol: str                      # TCP, UDP or SCTP
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    lb_vips: tuple[str, ...] = ()      # ingress IPs, without ipMode Proxy ones
    lb_source_ranges: tuple[str, ...] = ()
    affinity_timeout: int = 0          # seconds of ClientIP affinity; 0 = none
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0
    endpoints: tuple[EndpointInfo, ...] = ()   # sorted by "ip:port" string, as upstream

    @cached_property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @cached_property
    def spn(self) -> str:
        """``ServicePortName.String()``: ``ns/name:port`` (no colon for an unnamed port)."""
        return f"{self.service_key}:{self.port_name}" if self.port_name else self.service_key

    @property
    def proto(self) -> str:
        return self.protocol.lower()

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.lb_vips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)


@dataclass(frozen=True)
class EndpointSelection:
    """``CategorizeEndpoints``: the endpoints each traffic policy uses on one node."""

    cluster: tuple[EndpointInfo, ...]
    local: tuple[EndpointInfo, ...]
    reachable: tuple[EndpointInfo, ...]    # union of both: each gets an endpoint chain
    has_any: bool                          # a usable endpoint exists somewhere in the cluster


def select_endpoints(sp: ServicePortInfo, node: str) -> EndpointSelection:
    """Upstream's ``CategorizeEndpoints`` (pkg/proxy/topology.go), topology hints aside.

    Cluster policy uses the ready endpoints, else the serving+terminating ones. Local policy does the
    same over this node's endpoints only, evaluated separately.
    """
    eps = sp.endpoints
    cluster: tuple[EndpointInfo, ...] = ()
    has_any = False
    if sp.uses_cluster_endpoints:
        cluster = tuple(e for e in eps if e.ready) or tuple(e for e in eps if e.serving and e.terminating)
        has_any = bool(cluster)
    if not sp.uses_local_endpoints:
        return EndpointSelection(cluster, (), cluster, has_any)
    local_ready = any(e.ready and e.is_local(node) for e in eps)
    has_any = has_any or any(e.ready or (e.serving and e.terminating) for e in eps)
    if local_ready:
        local = tuple(e for e in eps if e.is_local(node) and e.ready)
    else:
        local = tuple(e for e in eps if e.is_local(node) and e.serving and e.terminating)
    if not sp.uses_cluster_endpoints:
        return EndpointSelection(cluster, local, local, has_any)
    if not local:
        return EndpointSelection(cluster, local, cluster, has_any)
    merged = {e.key: e for e in (*cluster, *local)}
    return EndpointSelection(cluster, local, tuple(merged[k] for k in sorted(merged)), has_any)


# --------------------------------------------------------------------------- resolved services

@dataclass
class ResolvedService:
    service: Service
    cluster_ip: str | None                 # None: headless or ExternalName (no proxy rules)
    node_ports: list[int]                  # per spec.ports entry; 0 = none
    lb_ingress: list[LoadBalancerIngress] = field(default_factory=list)
    health_check_node_port: int = 0

    @property
    def key(self) -> str:
        return self.service.key

    @property
    def proxied(self) -> bool:
        """kube-proxy writes rules for it (not headless, not ExternalName)."""
        return self.cluster_ip is not None


@dataclass
class ResolvedServices:
    services: list[ResolvedService]
    endpointslices: list[EndpointSlice]    # derived ones first, then hand-written ones
    warnings: list[str] = field(default_factory=list)

    def get(self, namespace: str, name: str) -> ResolvedService | None:
        return next((s for s in self.services if s.key == f"{namespace}/{name}"), None)

    def slices_of(self, key: str) -> list[EndpointSlice]:
        return [s for s in self.endpointslices if s.service_key == key]

    def ports(self) -> list[ServicePortInfo]:
        """kube-proxy's service-port map, sorted by service-port name and protocol."""
        out = []
        for rs in self.services:
            if rs.proxied:
                out.extend(service_ports(rs, self.slices_of(rs.key)))
        return sorted(out, key=lambda p: (p.spn, p.protocol))


def service_ports(rs: ResolvedService, slices: list[EndpointSlice]) -> list[ServicePortInfo]:
    svc = rs.service
    assert rs.cluster_ip is not None
    ext_local = svc.external_traffic_policy == "Local" and (
        svc.type in ("NodePort", "LoadBalancer") or (svc.type == "ClusterIP" and bool(svc.external_ips)))
    vips = tuple(i.ip for i in rs.lb_ingress if i.ip_mode != "Proxy")
    out = []
    for sp, node_port in zip(svc.ports, rs.node_ports, strict=True):
        out.append(ServicePortInfo(
            namespace=svc.meta.namespace, name=svc.meta.name, port_name=sp.name, protocol=sp.protocol,
            cluster_ip=rs.cluster_ip, port=sp.port, node_port=node_port,
            external_ips=tuple(str(ip) for ip in svc.external_ips), lb_vips=vips,
            lb_source_ranges=tuple(str(n) for n in svc.lb_source_ranges),
            affinity_timeout=svc.affinity_timeout if svc.session_affinity == "ClientIP" else 0,
            external_policy_local=ext_local, internal_policy_local=svc.internal_traffic_policy == "Local",
            health_check_node_port=rs.health_check_node_port,
            endpoints=endpoints_for_port(slices, sp.name, sp.protocol)))
    return out


def endpoints_for_port(slices: Iterable[EndpointSlice], port_name: str, protocol: str) -> tuple[EndpointInfo, ...]:
    """Merge every slice's endpoints for one service port (endpointslicecache.go): the first
    address of each endpoint, deduplicated by ``ip:port``, sorted by that string."""
    seen: dict[str, EndpointInfo] = {}
    for sl in slices:
        for p in sl.ports:
            if p.name != port_name or p.protocol != protocol:
                continue
            for ep in sl.endpoints:
                info = EndpointInfo(ip=ep.addresses[0], port=p.port, ready=ep.ready, serving=ep.serving,
                                    terminating=ep.terminating, node_name=ep.node_name)
                seen.setdefault(info.key, info)
    return tuple(seen[k] for k in sorted(seen))


# --------------------------------------------------------------------------- resolution

def resolve_services(lab: Lab, ready: Ready = all_ready) -> ResolvedServices:
    """Resolve ``lab.services`` and ``lab.endpointslices`` against the lab's pods and networking."""
    return resolve(lab.services, lab.endpointslices, lab.pods, lab.cluster.networking, ready)


def resolve(services: list[Service], endpointslices: list[EndpointSlice], pods: list[PlacedPod],
            networking: Networking | None, ready: Ready = all_ready) -> ResolvedServices:
    """The same from loose parts; ``networking`` None means defaults (serviceSubnet 10.96.0.0/12)."""
    subnet = networking.service_subnet if networking else DEFAULT_SERVICE_SUBNET
    dns_ip = networking.dns_ip if networking and networking.dns_ip else subnet.network_address + 10
    pool = networking.lb_pool if networking else None
    ips = allocate_cluster_ips(services, subnet, dns_ip)
    node_ports, hc_ports = allocate_node_ports(services)
    ingress = allocate_lb_ingress(services, pool)
    resolved = [ResolvedService(service=s, cluster_ip=ips[s.key], node_ports=node_ports[s.key],
                                lb_ingress=ingress.get(s.key, []), health_check_node_port=hc_ports.get(s.key, 0))
                for s in services]
    derived = [sl for s in services for sl in derive_endpointslices(s, pods, ready)]
    keys = {s.key for s in services}
    warnings = [f"{sl.source or 'EndpointSlice'}: EndpointSlice {sl.meta.namespace}/{sl.meta.name}: "
                f"service {sl.service_key} does not exist (its endpoints are unused)"
                for sl in endpointslices if sl.service_key not in keys]
    return ResolvedServices(services=resolved, endpointslices=derived + list(endpointslices), warnings=warnings)


def _hash_index(key: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % size


def _range_offset(size: int) -> int:
    """Kubernetes' allocator band: the lower part of a range is kept for static choices."""
    if size < 16:
        return 0
    return min(max(16, size // 16), 256)


def _probe(key: str, lo: int, hi: int, taken: set[int]) -> int | None:
    """A free value in [lo, hi], starting at a hash of ``key`` in the upper band, probing upward."""
    size = hi - lo + 1
    off = _range_offset(size)
    for band_lo, band_hi in ((lo + off, hi), (lo, lo + off - 1)):
        n = band_hi - band_lo + 1
        if n <= 0:
            continue
        start = _hash_index(key, n)
        for i in range(n):
            v = band_lo + (start + i) % n
            if v not in taken:
                return v
    return None


def allocate_cluster_ips(services: list[Service], subnet: ipaddress.IPv4Network,
                         dns_ip: ipaddress.IPv4Address) -> dict[str, str | None]:
    base = int(subnet.network_address)
    first, last = base + 1, int(subnet.broadcast_address) - 1
    reserved = {base + 1: KUBERNETES_SERVICE, int(dns_ip): DNS_SERVICE}
    taken: dict[int, str] = {}
    out: dict[str, str | None] = {}
    for s in services:
        if s.type == "ExternalName" or s.headless:
            out[s.key] = None
            continue
        if s.cluster_ip is None:
            continue
        ip = ipaddress.IPv4Address(s.cluster_ip)
        v = int(ip)
        if ip not in subnet or not first <= v <= last:
            raise s.error("spec.clusterIP", f"{ip} is not in the valid range: serviceSubnet is {subnet} "
                          "(its network and broadcast addresses excepted)")
        if v in taken:
            raise s.error("spec.clusterIP", f"{ip} is already allocated to service {taken[v]}")
        if reserved.get(v, s.key) != s.key:
            raise s.error("spec.clusterIP", f"{ip} is reserved for service {reserved[v]}")
        taken[v] = s.key
        out[s.key] = str(ip)
    for s in sorted((s for s in services if s.key not in out), key=lambda s: s.key):
        want = next((v for v, k in reserved.items() if k == s.key and v not in taken), None)
        if want is None:
            blocked = set(taken) | {v for v, k in reserved.items() if k != s.key}
            want = _probe(s.key, first, last, blocked)
        if want is None:
            raise s.error("spec.clusterIP", f"serviceSubnet {subnet} is full")
        taken[want] = s.key
        out[s.key] = str(ipaddress.IPv4Address(want))
    return out


def _wants_node_ports(s: Service) -> bool:
    return s.type == "NodePort" or (s.type == "LoadBalancer" and s.allocate_lb_node_ports)


def allocate_node_ports(services: list[Service]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """NodePorts per service port, and healthCheckNodePorts; given ones first, errors on duplicates."""
    lo, hi = NODE_PORT_RANGE
    owner: dict[int, tuple[str, set[str]]] = {}    # node port -> (service, protocols)

    def claim(s: Service, path: str, port: int, proto: str) -> None:
        if not lo <= port <= hi:
            raise s.error(path, f"{port} is not in the valid range {lo}-{hi}")
        got = owner.get(port)
        if got is not None and (got[0] != s.key or proto in got[1]):
            other = "this service" if got[0] == s.key else f"service {got[0]}"
            raise s.error(path, f"provided port {port} is already allocated (to {other})")
        owner.setdefault(port, (s.key, set()))[1].add(proto)

    ports: dict[str, list[int]] = {}
    hc: dict[str, int] = {}
    for s in services:
        ports[s.key] = [0] * len(s.ports)
        for i, p in enumerate(s.ports):
            if p.node_port is not None:
                claim(s, f"spec.ports[{i}].nodePort", p.node_port, p.protocol)
                ports[s.key][i] = p.node_port
        if s.health_check_node_port is not None:
            claim(s, "spec.healthCheckNodePort", s.health_check_node_port, "TCP")
            hc[s.key] = s.health_check_node_port
    for s in sorted(services, key=lambda s: s.key):
        needs_hc = s.type == "LoadBalancer" and s.external_traffic_policy == "Local"
        slots = [(f"{s.key}/{p.name}/{p.protocol}", i) for i, p in enumerate(s.ports)
                 if _wants_node_ports(s) and p.node_port is None]
        if needs_hc and s.key not in hc:
            slots.append((f"{s.key}/healthcheck", -1))
        for key, i in slots:
            port = _probe(key, lo, hi, set(owner))
            if port is None:
                raise s.error("spec.ports", f"no free node port left in {lo}-{hi}")
            owner[port] = (s.key, {s.ports[i].protocol if i >= 0 else "TCP"})
            if i >= 0:
                ports[s.key][i] = port
            else:
                hc[s.key] = port
    return ports, hc


def allocate_lb_ingress(services: list[Service], pool: ipaddress.IPv4Network | None
                        ) -> dict[str, list[LoadBalancerIngress]]:
    out: dict[str, list[LoadBalancerIngress]] = {}
    lbs = [s for s in services if s.type == "LoadBalancer"]
    taken: dict[int, str] = {}
    for s in lbs:
        if s.ingress:
            out[s.key] = s.ingress
            for i in s.ingress:
                taken.setdefault(int(ipaddress.IPv4Address(i.ip)), s.key)
    if pool is None:
        return out
    first, last = int(pool.network_address) + 1, int(pool.broadcast_address) - 1
    if pool.prefixlen >= 31:
        first, last = int(pool.network_address), int(pool.broadcast_address)
    for s in lbs:   # wished addresses before picked ones
        if s.key in out or not s.load_balancer_ip:
            continue
        v = int(ipaddress.IPv4Address(s.load_balancer_ip))
        if not first <= v <= last:
            raise s.error("spec.loadBalancerIP", f"{s.load_balancer_ip} is not in loadBalancerPool {pool}")
        if taken.get(v, s.key) != s.key:
            raise s.error("spec.loadBalancerIP", f"{s.load_balancer_ip} is already used by service {taken[v]}")
        taken[v] = s.key
        out[s.key] = [LoadBalancerIngress(ip=s.load_balancer_ip)]
    for s in sorted((s for s in lbs if s.key not in out), key=lambda s: s.key):
        v = _probe(s.key, first, last, set(taken))
        if v is None:
            raise s.error("spec.type", f"loadBalancerPool {pool} has no free address left")
        taken[v] = s.key
        out[s.key] = [LoadBalancerIngress(ip=str(ipaddress.IPv4Address(v)))]
    return out


# --------------------------------------------------------------------------- endpoint derivation

def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def target_port(pod: PlacedPod, port_name: str | int | None, svc_port: int, protocol: str) -> int | None:
    """``podutil.FindPort``: a named target port is the pod's container port of that name and protocol."""
    if port_name is None:
        return svc_port
    if isinstance(port_name, int):
        return port_name
    for c in pod.pod.spec.containers:
        for cp in c.ports:
            if cp.name == port_name and cp.protocol == protocol:
                return cp.container_port
    return None


def derive_endpointslices(svc: Service, pods: list[PlacedPod], ready: Ready = all_ready) -> list[EndpointSlice]:
    """The EndpointSlice controller's slices for a service with a selector (none without one)."""
    if not svc.selector or svc.type == "ExternalName":
        return []
    groups: dict[tuple[tuple[str, int, str], ...], list[Endpoint]] = {}
    for p in sorted(pods, key=lambda p: p.name):
        if p.namespace != svc.meta.namespace or not selects(svc.selector, p.pod.meta.labels):
            continue
        mapping = []
        for sp in svc.ports:
            num = target_port(p, sp.target_port, sp.port, sp.protocol)
            if num is not None:
                mapping.append((sp.name, num, sp.protocol))
        is_ready = ready(p)
        ep = Endpoint(addresses=[str(p.ip)], ready=is_ready or svc.publish_not_ready, serving=is_ready,
                      terminating=False, node_name=p.node, target_ref=p.key)
        groups.setdefault(tuple(mapping), []).append(ep)
    out = []
    for mapping, eps in sorted(groups.items()):
        for start in range(0, len(eps), MAX_ENDPOINTS_PER_SLICE):
            out.append(_derived_slice(svc, mapping, eps[start:start + MAX_ENDPOINTS_PER_SLICE], len(out)))
    return out


def _derived_slice(svc: Service, mapping: tuple[tuple[str, int, str], ...], eps: list[Endpoint],
                   index: int) -> EndpointSlice:
    base = svc.meta.name[:57]
    suffix = names.safe_encode(f"{svc.key}/{mapping}/{index}", 5)
    meta = ObjectMeta(name=f"{base}-{suffix}", namespace=svc.meta.namespace,
                      labels={SERVICE_NAME_LABEL: svc.meta.name, MANAGED_BY: CONTROLLER})
    ports = [EndpointPort(port=num, protocol=proto, name=name) for name, num, proto in mapping]
    return EndpointSlice(meta=meta, service=svc.meta.name, endpoints=list(eps), ports=ports, derived=True,
                         source=svc.source)

