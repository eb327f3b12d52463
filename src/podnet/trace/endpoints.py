"""SRC and DST as users write them (PRODUCT.md): ``pod-a``, ``ns/pod``, ``pod/ns/name``,
``svc/ns/name`` (or a service name where unambiguous, resolved as the pod's DNS resolver would),
``node/NAME``, ``host/NAME``, a namespace name, or an IP; DST may end in ``:PORT``. A raw source IP
that no namespace holds enters at a named node or host (``--at NODE[:IFACE]``), as an external
client's packet would. Pure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from podnet.dns.resolve import candidates, kubernetes_resolv_conf, parse_resolv_conf, walk
from podnet.errors import PodnetError
from podnet.sim.snapshot import IPAddress
from podnet.sim.world import World
from podnet.trace.model import Step, StepKind
from podnet.trace.places import Place, Places, ServicePort


@dataclass(frozen=True, slots=True)
class Origin:
    netns: str
    ip: IPAddress | None          # None: the route decides the source address
    label: str                    # "pod default/pod-a", "192.0.2.7 entering node1 on eth0"
    entry_dev: str | None = None  # set: the packet arrives on this device (an external client)


@dataclass(frozen=True, slots=True)
class Target:
    ip: IPAddress
    port: int | None
    label: str                    # "svc default/my-service", "pod default/pod-b", "10.1.2.3"
    service: ServicePort | None = None
    dns: Step | None = None


def _err(msg: str, field: str) -> PodnetError:
    return PodnetError(msg, field=field)


def split_port(spec: str) -> tuple[str, int | None]:
    """``name:8080`` -> (name, 8080); IPv6 in brackets; a bare IPv6 address has no port."""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        return host, None
    if spec.count(":") == 1:
        host, _, port = spec.partition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise _err(f"bad port {port!r} in {spec!r} (expected 1-65535)", "DST")
        return host, int(port)
    return spec, None


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _find_place(places: Places, spec: str, what: str) -> Place | None:
    """A pod/node/host/netns by the forms of PRODUCT.md; None when nothing matches."""
    parts = spec.split("/")
    pods = places.of_kind("pod")
    if parts[0] in ("pod", "po") and len(parts) == 3:
        return next((p for p in pods if p.name == f"{parts[1]}/{parts[2]}"), None) or _missing(places, spec, what)
    if parts[0] in ("node", "no") and len(parts) == 2:
        return next((p for p in places.of_kind("node") if p.name == parts[1]), None) or _missing(places, spec, what)
    if parts[0] in ("host", "router") and len(parts) == 2:
        return next((p for p in places.places.values() if p.kind in ("host", "router") and p.name == parts[1]),
                    None) or _missing(places, spec, what)
    if len(parts) == 2:
        return next((p for p in pods if p.name == spec), None)
    if len(parts) == 1:
        if spec in places.places:
            return places.places[spec]
        by_name = [p for p in pods if p.name.split("/", 1)[1] == spec]
        if len(by_name) > 1:
            raise _err(f"pod name {spec!r} is ambiguous: {', '.join(p.name for p in by_name)} "
                       "(write NAMESPACE/NAME)", what)
        if by_name:
            return by_name[0]
        others = [p for p in places.places.values() if p.kind in ("node", "host", "router") and p.name == spec]
        if others:
            return others[0]
    return None


def _missing(places: Places, spec: str, what: str) -> Place:
    known = ", ".join(sorted(p.name for p in places.places.values() if p.kind in ("pod", "node", "host")))
    raise _err(f"no {spec.split('/')[0]} {spec.split('/', 1)[1]!r} in the snapshot (known: {known or 'none'})", what)


def resolve_source(spec: str, places: Places, world: World, at: str | None = None) -> Origin:
    ip = _ip(spec)
    if ip is None:
        if at:
            raise _err("--at is for a raw source IP (an external client); a named SRC starts in its own place",
                       "--at")
        p = _find_place(places, spec, "SRC")
        if p is None:
            raise _err(f"unknown source {spec!r}: expected a pod (pod-a, ns/pod, pod/ns/name), node/NAME, "
                       "host/NAME, a namespace name or an IP", "SRC")
        if p.netns not in world:
            raise _err(f"{p.label} ({p.netns}) is not in the snapshot", "SRC")
        src = _ip(p.ip) if p.ip else None
        if p.kind == "node":
            src = None                    # a node's sockets get the address the route picks
        return Origin(p.netns, src, p.label)
    if at:
        name, _, dev = at.partition(":")
        p = _find_place(places, name, "--at") or _find_place(places, f"node/{name}", "--at")
        if p is None or p.netns not in world:
            raise _err(f"--at {at!r}: no such node or host in the snapshot", "--at")
        view = world.ns(p.netns)
        if view.owns(ip):
            return Origin(p.netns, ip, f"{ip} on {p.label}")
        if not dev:
            back = view.fib.lookup(ip)
            dev = (back.route.dev if back.route is not None and back.route.dev else None) or "eth0"
        if dev not in view.links:
            raise _err(f"--at {at!r}: {p.label} has no interface {dev!r}", "--at")
        return Origin(p.netns, ip, f"{ip} entering {p.label} on {dev}", dev)
    owners = sorted({ns for ns, _ in world.owners(ip)})
    if len(owners) == 1:
        return Origin(owners[0], ip, f"{places.place(owners[0]).label} ({ip})")
    if not owners:
        raise _err(f"{ip} is no address of any namespace in the snapshot: say where it enters with "
                   "--at NODE[:IFACE]", "SRC")
    raise _err(f"{ip} is held by several namespaces ({', '.join(owners)}): name the place instead", "SRC")


def resolve_destination(spec: str, places: Places, origin: Origin) -> Target:
    host, port = split_port(spec)
    ip = _ip(host)
    if ip is not None:
        return Target(ip, port, str(ip), _service_by_ip(places, ip, port))
    parts = host.split("/")
    if parts[0] in ("svc", "service", "services") and len(parts) == 3:
        return _service_target(places, parts[1], parts[2], port, f"svc/{parts[1]}/{parts[2]}")
    try:
        p = _find_place(places, host, "DST")
    except PodnetError:
        raise
    if p is not None and len(parts) == 1 and _named_services(places, host):
        raise _err(f"{host!r} is both {p.label} and a Service: write pod/NS/NAME or svc/NS/NAME", "DST")
    if p is not None:
        if p.ip is None:
            raise _err(f"{p.label} has no address in the snapshot", "DST")
        return Target(ipaddress.ip_address(p.ip), port, p.label)
    return _dns_target(places, host, port, origin)


def _named_services(places: Places, name: str) -> list[ServicePort]:
    return [s for s in places.services if s.name == name]


def _service_by_ip(places: Places, ip: IPAddress, port: int | None) -> ServicePort | None:
    for s in places.services_at(str(ip)):
        if port is None or s.port == port:
            return s
    return None


def _service_target(places: Places, ns: str, name: str, port: int | None, label: str,
                    dns: Step | None = None) -> Target:
    ports = [s for s in places.services if s.namespace == ns and s.name == name]
    if not ports:
        known = ", ".join(sorted({s.key for s in places.services})) or "none"
        raise _err(f"no Service {ns}/{name} in the snapshot (services: {known})", "DST")
    if port is None:
        distinct = sorted({s.port for s in ports})
        if len(distinct) > 1:
            raise _err(f"Service {ns}/{name} has several ports ({', '.join(map(str, distinct))}): add :PORT", "DST")
        port = distinct[0]
    chosen = next((s for s in ports if s.port == port), None)
    if chosen is None:
        raise _err(f"Service {ns}/{name} has no port {port} (ports: "
                   f"{', '.join(str(s.port) for s in ports)})", "DST")
    if not chosen.cluster_ip:
        raise _err(f"Service {ns}/{name} is headless: trace one of its pods instead", "DST")
    return Target(ipaddress.ip_address(chosen.cluster_ip), port, f"svc {ns}/{name}", chosen, dns)


def _dns_target(places: Places, name: str, port: int | None, origin: Origin) -> Target:
    """A name as the source pod's resolver would look it up (search path, ndots)."""
    p = places.places.get(origin.netns)
    pod_ns = p.name.split("/", 1)[0] if p is not None and p.kind == "pod" else "default"
    text = p.resolv if p is not None and p.resolv else kubernetes_resolv_conf(pod_ns, places.domain)
    resolv = parse_resolv_conf(text)
    zone = places.domain.strip(".")
    svc_names = {f"{s.name}.{s.namespace}.svc.{zone}.": (s.namespace, s.name) for s in places.services}

    def ask(fqdn: str) -> str:
        return "answer" if fqdn.lower() in svc_names else "nxdomain"

    w = walk(name, resolv, ask)  # type: ignore[arg-type]
    if w.answered is None:
        tried = ", ".join(candidates(name, resolv))
        raise _err(f"{name!r} is no pod, node or Service: the resolver of {p.label if p else origin.netns} tries "
                   f"{tried} and none is a Service in the snapshot", "DST")
    ns, svc = svc_names[w.answered.lower()]
    tried = [q for q, _ in w.steps]
    text = f"{name} -> {w.answered} (search {' '.join(resolv.search) or '-'}, ndots {resolv.ndots}" + (
        f"; tried {', '.join(tried[:-1])} first" if len(tried) > 1 else "") + ")"
    target = _service_target(places, ns, svc, port, f"svc {ns}/{svc}")
    dns = Step(StepKind.DNS, f"{text} -> {target.ip}", entry=f"{w.answered} A {target.ip}")
    return Target(target.ip, target.port, target.label, target.service, dns)
