"""Policy routing and longest-prefix match over one namespace's routes, as the kernel's FIB does.

``Fib`` is built once per namespace (lazily, by ``podnet.sim.world``): per table, routes grouped by
prefix length and network, so a lookup costs one dict probe per distinct prefix length. Rules are
walked in priority order (``ip rule``); without an ``ip-rule.json`` the kernel's defaults apply
(local, main, default). Pure.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from podnet.sim.packet import is_loopback, is_multicast
from podnet.sim.snapshot import Address, IPAddress, Route, RoutingRule

DEFAULT_RULES = (
    RoutingRule(priority=0, table="local"),
    RoutingRule(priority=32766, table="main"),
    RoutingRule(priority=32767, table="default"),
)
_SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}


def scope_value(scope: str) -> int:
    if scope.isdigit():
        return int(scope)
    return _SCOPES.get(scope, 0)


class Table:
    """One routing table: {prefixlen: {network int: [routes by metric]}} per IP version."""

    __slots__ = ("_by_len", "_lens")

    def __init__(self, routes: Iterable[Route]) -> None:
        self._by_len: dict[tuple[int, int], dict[int, list[Route]]] = {}
        for r in routes:
            key = (r.dst.version, r.dst.prefixlen)
            self._by_len.setdefault(key, {}).setdefault(int(r.dst.network_address), []).append(r)
        for buckets in self._by_len.values():
            for lst in buckets.values():
                lst.sort(key=lambda r: r.metric)
        self._lens: dict[int, list[int]] = {}
        for version, plen in self._by_len:
            self._lens.setdefault(version, []).append(plen)
        for lens in self._lens.values():
            lens.sort(reverse=True)

    def lookup(self, dst: IPAddress, oif: str | None = None) -> Route | None:
        """Longest prefix, lowest metric; with ``oif`` only routes out of that device (as a
        socket bound to a device, or a tunnel's underlay lookup, asks)."""
        bits = 32 if dst.version == 4 else 128
        addr = int(dst)
        for plen in self._lens.get(dst.version, ()):
            mask = ((1 << plen) - 1) << (bits - plen) if plen else 0
            lst = self._by_len[(dst.version, plen)].get(addr & mask)
            if not lst:
                continue
            for r in lst:
                if oif is None or r.dev == oif or r.type != "unicast" or any(nh.dev == oif for nh in r.nexthops):
                    return r
        return None


@dataclass(frozen=True, slots=True)
class RouteResult:
    route: Route | None           # None: no route
    table: str | None
    rule: RoutingRule | None
    action: str = "lookup"        # lookup, or a rule action that ended the walk (blackhole, unreachable, prohibit)

    @property
    def type(self) -> str:
        if self.route is None:
            return "unreachable" if self.action == "lookup" else self.action
        return self.route.type


def _rule_matches(rule: RoutingRule, src: IPAddress | None, dst: IPAddress, iif: str | None, oif: str | None,
                  mark: int, proto: str | None, sport: int | None, dport: int | None) -> bool:
    hit = True
    if rule.src is not None:
        hit = src is not None and src.version == rule.src.version and src in rule.src
    if hit and rule.dst is not None:
        hit = dst.version == rule.dst.version and dst in rule.dst
    if hit and rule.iif is not None:
        hit = iif == rule.iif
    if hit and rule.oif is not None:
        hit = oif == rule.oif
    if hit and rule.fwmark is not None:
        mask = rule.fwmask if rule.fwmask is not None else 0xFFFFFFFF
        hit = (mark & mask) == (rule.fwmark & mask)
    if hit and rule.ipproto is not None:
        hit = proto == rule.ipproto
    if hit and rule.sport is not None:
        hit = sport is not None and rule.sport[0] <= sport <= rule.sport[1]
    if hit and rule.dport is not None:
        hit = dport is not None and rule.dport[0] <= dport <= rule.dport[1]
    return hit != rule.invert


class Fib:
    """Routing of one namespace: rules + tables + local addresses."""

    def __init__(self, routes: Iterable[Route], rules: Iterable[RoutingRule], addresses: Iterable[Address]) -> None:
        by_table: dict[str, list[Route]] = {}
        for r in routes:
            by_table.setdefault(r.table, []).append(r)
        self.tables = {name: Table(rs) for name, rs in by_table.items()}
        rs = [r for r in rules if r.family == "inet"] or list(DEFAULT_RULES)
        self.rules = sorted(rs, key=lambda r: r.priority)
        self.rules6 = sorted([r for r in rules if r.family == "inet6"], key=lambda r: r.priority) or list(DEFAULT_RULES)
        self.addresses = tuple(addresses)
        self.local_ips: dict[IPAddress, Address] = {}
        for a in self.addresses:
            self.local_ips.setdefault(a.local, a)

    def lookup(self, dst: IPAddress, src: IPAddress | None = None, iif: str | None = None,
               oif: str | None = None, mark: int = 0, proto: str | None = None, sport: int | None = None,
               dport: int | None = None) -> RouteResult:
        rules = self.rules if dst.version == 4 else self.rules6
        for rule in rules:
            if not _rule_matches(rule, src, dst, iif, oif, mark, proto, sport, dport):
                continue
            if rule.action in ("blackhole", "unreachable", "prohibit"):
                return RouteResult(None, None, rule, rule.action)
            if rule.action != "lookup" or rule.table is None:
                continue                       # goto/nop: not modelled beyond skipping
            table = self.tables.get(rule.table)
            if table is None:
                continue
            r = table.lookup(dst, oif)
            if r is None or r.type == "throw":
                continue
            return RouteResult(r, rule.table, rule)
        return RouteResult(None, None, None)

    def addr_type(self, ip: IPAddress) -> str:
        """``inet_addr_type``: the type of the local table's route for ``ip`` (LOCAL, BROADCAST...),
        else UNICAST; multicast and 0.0.0.0/255.255.255.255 by their ranges."""
        if is_multicast(ip):
            return "MULTICAST"
        if ip.version == 4 and (int(ip) == 0 or int(ip) == 0xFFFFFFFF):
            return "BROADCAST"
        local = self.tables.get("local")
        if local is not None:
            r = local.lookup(ip)
            if r is not None:
                return r.type.upper()
        return "UNICAST"

    def is_local(self, ip: IPAddress) -> bool:
        return ip in self.local_ips or self.addr_type(ip) == "LOCAL"

    def select_source(self, dev: str | None, dst: IPAddress, route: Route | None) -> IPAddress | None:
        """``inet_select_addr``: the route's preferred source, else a primary address of the output
        device in the destination's (or gateway's) subnet, else any primary address of it, else
        any global address of the namespace."""
        if route is not None and route.src is not None:
            return route.src
        target = route.gateway if route is not None and route.gateway is not None else dst
        fam = dst.version
        cands = [a for a in self.addresses if a.dev == dev and a.local.version == fam and not a.secondary
                 and scope_value(a.scope) < 254]
        for a in cands:
            if target in a.network:
                return a.local
        if cands:
            return cands[0].local
        for a in self.addresses:
            if a.local.version == fam and scope_value(a.scope) == 0 and not is_loopback(a.local):
                return a.local
        return None

    def primary_address(self, dev: str, version: int = 4) -> IPAddress | None:
        for a in self.addresses:
            if a.dev == dev and a.local.version == version and not a.secondary:
                return a.local
        return None


@functools.lru_cache(maxsize=65536)
def route_text(route: Route) -> str:
    """A route as ``ip route`` prints it."""
    parts = []
    if route.type != "unicast":
        parts.append(route.type)
    default = route.dst.prefixlen == 0
    parts.append("default" if default else str(route.dst))
    if route.gateway is not None:
        parts += ["via", str(route.gateway)]
    if route.nexthops:
        parts += [f"nexthop via {nh.gateway} dev {nh.dev}" for nh in route.nexthops]
    if route.dev:
        parts += ["dev", route.dev]
    if route.table not in ("main",):
        parts += ["table", route.table]
    if route.protocol not in ("boot", "unspec"):
        parts += ["proto", route.protocol]
    if route.scope not in ("global", "universe") and route.table != "local":
        parts += ["scope", route.scope]
    if route.src is not None:
        parts += ["src", str(route.src)]
    if route.metric:
        parts += ["metric", str(route.metric)]
    if route.onlink:
        parts.append("onlink")
    if route.mtu:
        parts += ["mtu", str(route.mtu)]
    return " ".join(parts)


UNSPECIFIED = ipaddress.IPv4Address("0.0.0.0")
