"""A snapshot of kernel network state: what the tracer walks (see docs/snapshot.md).

A :class:`Snapshot` holds one :class:`NetnsState` per network namespace (a node, a pod, a router),
read from a running lab or parsed from dump files of a real node (``podnet.sim.dumpdir``). Every
type here is an immutable value: frozen dataclasses with tuples; the few mappings (namespaces,
iptables tables and chains, sysctls, nft JSON) must be treated as read-only, which lets identical
rulesets parsed once be shared between namespaces.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import PodnetError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SnapshotError(PodnetError):
    """A malformed dump: ``where`` names the file and line."""


# ---------------------------------------------------------------------------------------------------
# links, addresses, routes, rules, neighbours, FDB


@dataclass(frozen=True, slots=True)
class VxlanAttrs:
    vni: int
    port: int | None            # UDP destination port (8472 for flannel, 4789 IANA)
    local: IPAddress | None     # outer source address
    dev: str | None             # underlay device the VXLAN device is bound to
    learning: bool
    group: IPAddress | None = None    # multicast group or fixed remote ("remote" in ip link)
    ttl: int = 0
    df: str = "unset"
    ageing: int | None = None


@dataclass(frozen=True, slots=True)
class BridgeAttrs:
    vlan_filtering: bool = False
    stp_state: int = 0
    ageing_time: int | None = None          # centiseconds, as the kernel reports it
    nf_call_iptables: bool = False          # per-bridge override (sysctl applies when False)


@dataclass(frozen=True, slots=True)
class BridgePortAttrs:
    hairpin: bool = False
    state: str = "forwarding"
    learning: bool = True
    flood: bool = True
    isolated: bool = False
    neigh_suppress: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    ifindex: int
    name: str
    kind: str                     # veth, bridge, vxlan, loopback, device (no linkinfo), macvlan, ...
    mtu: int
    mac: str | None
    master: str | None = None     # bridge (or bond/VRF) this link is enslaved to
    state: str = "UNKNOWN"        # operstate: UP, DOWN, UNKNOWN, LOWERLAYERDOWN
    flags: tuple[str, ...] = ()   # UP, LOWER_UP, BROADCAST, NOARP, ...
    link_index: int | None = None   # veth: peer ifindex; vxlan/macvlan: lower device ifindex
    link_netnsid: int | None = None  # peer/lower device lives in that netns id (None: same netns)
    link: str | None = None       # peer/lower device name when in the same netns
    slave_kind: str | None = None
    vxlan: VxlanAttrs | None = None
    bridge: BridgeAttrs | None = None
    port: BridgePortAttrs | None = None   # bridge-port attributes when enslaved to a bridge

    @property
    def up(self) -> bool:
        return "UP" in self.flags

    @property
    def peer_ifindex(self) -> int | None:
        return self.link_index if self.kind == "veth" else None

    @property
    def peer_netnsid(self) -> int | None:
        return self.link_netnsid if self.kind == "veth" else None

    @property
    def hairpin(self) -> bool:
        return self.port is not None and self.port.hairpin


@dataclass(frozen=True, slots=True)
class Address:
    dev: str
    ifindex: int
    family: str                   # inet or inet6
    local: IPAddress
    prefixlen: int
    scope: str = "global"
    broadcast: IPAddress | None = None
    peer: IPAddress | None = None
    label: str | None = None
    secondary: bool = False

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return ipaddress.ip_interface(f"{self.local}/{self.prefixlen}")

    @property
    def network(self) -> IPNetwork:
        return self.interface.network


@dataclass(frozen=True, slots=True)
class NextHop:
    gateway: IPAddress | None
    dev: str | None
    weight: int = 1
    onlink: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    table: str                    # main, local, default or a number ("100")
    dst: IPNetwork                # default is 0.0.0.0/0 (or ::/0)
    gateway: IPAddress | None = None
    dev: str | None = None
    onlink: bool = False
    scope: str = "global"
    src: IPAddress | None = None  # preferred source (prefsrc)
    protocol: str = "boot"
    type: str = "unicast"         # unicast, local, broadcast, multicast, blackhole, unreachable, prohibit, throw
    metric: int = 0
    family: str = "inet"
    nexthops: tuple[NextHop, ...] = ()   # multipath routes
    mtu: int | None = None        # "mtu" route metric (lock flag not kept)
    flags: tuple[str, ...] = ()

    @property
    def prefixlen(self) -> int:
        return self.dst.prefixlen


@dataclass(frozen=True, slots=True)
class RoutingRule:
    priority: int
    table: str | None             # None for non-lookup actions
    action: str = "lookup"        # lookup, blackhole, unreachable, prohibit, goto, nop
    src: IPNetwork | None = None  # None: from all
    dst: IPNetwork | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    invert: bool = False          # "not"
    family: str = "inet"
    ipproto: str | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    goto: int | None = None


@dataclass(frozen=True, slots=True)
class Neighbour:
    ip: IPAddress
    mac: str | None
    dev: str
    state: tuple[str, ...]        # REACHABLE, STALE, PERMANENT, NOARP, FAILED, INCOMPLETE, ...
    router: bool = False

    USABLE = frozenset({"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"})

    @property
    def usable(self) -> bool:
        """Has a link-layer address the kernel will send to now (FAILED/INCOMPLETE have none)."""
        return self.mac is not None and any(s in self.USABLE for s in self.state)


@dataclass(frozen=True, slots=True)
class FdbEntry:
    mac: str
    dev: str
    master: str | None = None     # bridge owning the entry (None: the device's own table, "self")
    dst: IPAddress | None = None  # VXLAN remote
    vlan: int | None = None
    state: str = ""               # permanent, static, "" (learned/dynamic), stale
    flags: tuple[str, ...] = ()   # self, master, extern_learn, router, offload, ...
    vni: int | None = None
    port: int | None = None

    @property
    def self_entry(self) -> bool:
        return "self" in self.flags


# ---------------------------------------------------------------------------------------------------
# iptables


@dataclass(frozen=True, slots=True)
class Counters:
    packets: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Option:
    """One ``--name value...`` of a match or target, ``!`` kept as ``negated``."""

    name: str                     # without the leading dashes: "dport", "to-destination"
    values: tuple[str, ...] = ()
    negated: bool = False

    @property
    def value(self) -> str | None:
        return self.values[0] if self.values else None


def _find(options: tuple[Option, ...], name: str) -> Option | None:
    for o in options:
        if o.name == name:
            return o
    return None


@dataclass(frozen=True, slots=True)
class Match:
    """``-m module --opt ...``; options in the order iptables-save printed them."""

    module: str
    options: tuple[Option, ...] = ()

    def get(self, name: str) -> Option | None:
        return _find(self.options, name)

    def value(self, name: str) -> str | None:
        o = _find(self.options, name)
        return o.value if o else None

    def has(self, name: str) -> bool:
        return _find(self.options, name) is not None


@dataclass(frozen=True, slots=True)
class PortMatch:
    """Ports (``--dport``, ``--dports``, ``--sport``...) as inclusive ranges."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool = False

    def contains(self, port: int) -> bool:
        hit = any(lo <= port <= hi for lo, hi in self.ranges)
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class AddrMatch:
    """``-s``/``-d`` as integers (cheap to hold by the hundred thousand, fast to test)."""

    version: int
    addr: int                     # network address
    prefixlen: int
    negated: bool = False

    @classmethod
    def of(cls, net: IPNetwork, negated: bool = False) -> AddrMatch:
        return cls(net.version, int(net.network_address), net.prefixlen, negated)

    @property
    def net(self) -> IPNetwork:
        if self.version == 4:
            return ipaddress.IPv4Network((self.addr, self.prefixlen))
        return ipaddress.IPv6Network((self.addr, self.prefixlen))

    @property
    def mask(self) -> int:
        bits = 32 if self.version == 4 else 128
        return ((1 << self.prefixlen) - 1) << (bits - self.prefixlen)

    def contains(self, ip: IPAddress) -> bool:
        hit = ip.version == self.version and (int(ip) & self.mask) == self.addr
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class IfaceMatch:
    name: str                     # a trailing "+" is a wildcard, as in iptables
    negated: bool = False

    def matches(self, dev: str | None) -> bool:
        if dev is None:
            hit = False
        elif self.name.endswith("+"):
            hit = dev.startswith(self.name[:-1])
        else:
            hit = dev == self.name
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class NatRange:
    """``--to-destination``/``--to-source`` ``[ip[-ip]][:port[-port]]``."""

    addr_min: IPAddress | None
    addr_max: IPAddress | None
    port_min: int | None = None
    port_max: int | None = None


@dataclass(frozen=True, slots=True)
class Target:
    name: str                     # ACCEPT, DROP, RETURN, DNAT, ..., or a user chain
    options: tuple[Option, ...] = ()
    goto: bool = False            # -g (no return to the calling chain)

    def get(self, name: str) -> Option | None:
        return _find(self.options, name)

    def value(self, name: str) -> str | None:
        o = _find(self.options, name)
        return o.value if o else None

    def has(self, name: str) -> bool:
        return _find(self.options, name) is not None

    @property
    def nat_range(self) -> NatRange | None:
        """DNAT/SNAT destination (first ``--to-*`` only); None for other targets."""
        spec = self.value("to-destination") or self.value("to-source")
        return parse_nat_range(spec) if spec else None

    @property
    def mark(self) -> tuple[int, int] | None:
        """MARK/CONNMARK as ``(value, mask)`` meaning ``mark = (mark & ~mask) ^ value``."""
        for o in self.options:
            if o.name in ("set-xmark", "set-mark") and o.value:
                value, _, mask = o.value.partition("/")
                v = int(value, 0)
                m = int(mask, 0) if mask else 0xFFFFFFFF
                if o.name == "set-mark":        # as libxt_MARK: zero mask bits, then OR value
                    return v, m | v
                return v, m
            if o.name == "or-mark" and o.value:
                v = int(o.value, 0)
                return v, v
            if o.name == "and-mark" and o.value:
                return 0, (~int(o.value, 0)) & 0xFFFFFFFF
            if o.name == "xor-mark" and o.value:
                return int(o.value, 0), 0
        return None


def parse_nat_range(spec: str) -> NatRange:
    addr_part, port_part = spec, ""
    if spec.startswith("["):                       # [v6addr]:port
        end = spec.index("]")
        addr_part, port_part = spec[1:end], spec[end + 2:]
    elif spec.count(":") == 1:
        addr_part, _, port_part = spec.partition(":")
    lo = hi = None
    if addr_part:
        a, _, b = addr_part.partition("-")
        lo = ipaddress.ip_address(a)
        hi = ipaddress.ip_address(b) if b else lo
    pmin = pmax = None
    if port_part:
        p, _, q = port_part.partition("-")
        pmin = int(p)
        pmax = int(q) if q else pmin
    return NatRange(lo, hi, pmin, pmax)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``-A`` line. ``num`` is the 1-based position in its chain, as ``iptables -L --line-numbers``."""

    chain: str
    num: int
    counters: Counters
    src: AddrMatch | None = None
    dst: AddrMatch | None = None
    in_iface: IfaceMatch | None = None
    out_iface: IfaceMatch | None = None
    proto: str | None = None      # tcp, udp, sctp, icmp, ... (numbers mapped to names); None: all
    proto_negated: bool = False
    fragment: bool | None = None  # -f (True) / ! -f (False)
    matches: tuple[Match, ...] = ()
    target: Target | None = None  # None: a rule without -j (counts only)
    comment: str | None = None    # all -m comment texts joined with "; "
    dport: PortMatch | None = None  # from tcp/udp/sctp --dport or multiport --dports/--ports
    sport: PortMatch | None = None
    text: str = ""                # the rule as iptables-save printed it, without counters

    def match(self, module: str) -> Match | None:
        for m in self.matches:
            if m.module == module:
                return m
        return None


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    policy: str | None            # ACCEPT/DROP for built-in chains, None for user chains
    counters: Counters
    rules: tuple[Rule, ...] = ()

    @property
    def builtin(self) -> bool:
        return self.policy is not None


@dataclass(frozen=True, slots=True)
class IptTable:
    name: str                     # raw, mangle, nat, filter, security
    chains: Mapping[str, Chain]   # in iptables-save order


@dataclass(frozen=True, slots=True)
class Iptables:
    tables: Mapping[str, IptTable] = field(default_factory=dict)
    header: str | None = None     # "# Generated by iptables-save v1.8.9 (nf_tables) ..." if present

    def chain(self, table: str, chain: str) -> Chain | None:
        t = self.tables.get(table)
        return t.chains.get(chain) if t else None


# ---------------------------------------------------------------------------------------------------
# nftables (the JSON stays as nft printed it; tables, chains, sets and maps are indexed)


@dataclass(frozen=True, slots=True)
class NftRule:
    family: str
    table: str
    chain: str
    handle: int | None
    num: int                      # 1-based position in the chain
    expr: tuple[Any, ...]         # the JSON statements, as nft printed them
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class NftChain:
    family: str
    table: str
    name: str
    handle: int | None = None
    type: str | None = None       # filter, nat, route (base chains only)
    hook: str | None = None
    prio: int | None = None
    policy: str | None = None
    dev: str | None = None
    rules: tuple[NftRule, ...] = ()

    @property
    def base(self) -> bool:
        return self.hook is not None


@dataclass(frozen=True, slots=True)
class NftSet:
    family: str
    table: str
    name: str
    type: Any                     # "ipv4_addr" or a list for concatenations
    map: Any = None               # value type for maps ("verdict", "ipv4_addr", ...), None for sets
    flags: tuple[str, ...] = ()
    elements: tuple[Any, ...] = ()   # raw JSON elements; for maps [key, value] pairs
    handle: int | None = None

    @property
    def is_map(self) -> bool:
        return self.map is not None


@dataclass(frozen=True, slots=True)
class NftTable:
    family: str
    name: str
    handle: int | None
    chains: Mapping[str, NftChain]
    sets: Mapping[str, NftSet]    # sets and maps share one namespace in nft
    comment: str | None = None

    @property
    def maps(self) -> dict[str, NftSet]:
        return {n: s for n, s in self.sets.items() if s.is_map}


@dataclass(frozen=True, slots=True)
class NftRuleset:
    tables: Mapping[tuple[str, str], NftTable] = field(default_factory=dict)  # (family, name)
    raw: tuple[Any, ...] = ()     # the "nftables" array as printed
    version: str | None = None

    def table(self, family: str, name: str) -> NftTable | None:
        return self.tables.get((family, name))


# ---------------------------------------------------------------------------------------------------
# conntrack


@dataclass(frozen=True, slots=True)
class CtTuple:
    src: IPAddress
    dst: IPAddress
    sport: int | None = None      # TCP/UDP/SCTP/DCCP ports
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    packets: int | None = None    # with net.netfilter.nf_conntrack_acct=1
    bytes: int | None = None
    zone: int | None = None       # zone-orig / zone-reply


@dataclass(frozen=True, slots=True)
class ConntrackEntry:
    family: str                   # ipv4, ipv6
    proto: str                    # tcp, udp, icmp, sctp, unknown, ...
    protonum: int
    timeout: int | None
    state: str | None             # TCP/SCTP state (ESTABLISHED, SYN_SENT, ...), None otherwise
    orig: CtTuple
    reply: CtTuple
    flags: frozenset[str] = frozenset()   # ASSURED, UNREPLIED, OFFLOAD, ...
    mark: int = 0
    zone: int | None = None
    use: int | None = None
    extra: tuple[tuple[str, str], ...] = ()   # other key=value fields (secctx, labels, delta-time...)

    @property
    def assured(self) -> bool:
        return "ASSURED" in self.flags

    @property
    def dnat(self) -> bool:
        """The reply comes from somewhere else than the original destination."""
        return self.reply.src != self.orig.dst or (self.reply.sport != self.orig.dport)

    @property
    def snat(self) -> bool:
        return self.reply.dst != self.orig.src or (self.reply.dport != self.orig.sport)


# ---------------------------------------------------------------------------------------------------
# listening sockets (``ss -H -l -n -t -u -S``)


@dataclass(frozen=True, slots=True)
class Socket:
    """A listening TCP/SCTP socket or a bound UDP socket."""

    proto: str                    # tcp, udp, sctp
    state: str                    # LISTEN (tcp, sctp), UNCONN (udp)
    local: IPAddress | None       # None: every address (0.0.0.0, [::] or *)
    port: int
    dev: str | None = None        # bound to one device (``addr%dev``)

    def accepts(self, proto: str, dst: IPAddress, port: int) -> bool:
        if self.proto != proto or self.port != port:
            return False
        if self.local is None:
            return True
        if self.local == dst:
            return True
        # an IPv4-mapped IPv6 address listens for that IPv4 address
        return (self.local.version == 6 and dst.version == 4
                and getattr(self.local, "ipv4_mapped", None) == dst)


# ---------------------------------------------------------------------------------------------------
# one namespace, the snapshot


@dataclass(frozen=True, slots=True)
class NetnsState:
    name: str
    links: tuple[Link, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[RoutingRule, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    iptables: Iptables = field(default_factory=Iptables)
    nft: NftRuleset = field(default_factory=NftRuleset)
    conntrack: tuple[ConntrackEntry, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    sockets: tuple[Socket, ...] | None = None   # None: not dumped (listeners unknown)
    route_cache: tuple[Route, ...] = ()         # learned exceptions (path MTU), ``ip route show cached``
    netns_ids: Mapping[int, str] = field(default_factory=dict)   # peer netns id -> netns name
    sources: Mapping[str, str] = field(default_factory=dict)  # dump file name -> text, as loaded

    def link(self, name: str) -> Link | None:
        for lk in self.links:
            if lk.name == name:
                return lk
        return None

    def link_by_index(self, ifindex: int) -> Link | None:
        for lk in self.links:
            if lk.ifindex == ifindex:
                return lk
        return None

    def addresses_of(self, dev: str) -> tuple[Address, ...]:
        return tuple(a for a in self.addresses if a.dev == dev)

    def table(self, name: str) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.table == name)

    def sysctl(self, key: str, default: str | None = None) -> str | None:
        return self.sysctls.get(key, default)

    def sysctl_int(self, key: str, default: int = 0) -> int:
        v = self.sysctls.get(key)
        try:
            return int(v) if v is not None else default
        except ValueError:
            return default

    @property
    def ip_forward(self) -> bool:
        return self.sysctl_int("net.ipv4.ip_forward") == 1

    @property
    def bridge_nf_call_iptables(self) -> bool:
        return self.sysctl_int("net.bridge.bridge-nf-call-iptables") == 1

    def rp_filter(self, dev: str) -> int:
        """Effective rp_filter of ``dev``: the kernel uses max(all, dev)."""
        return max(self.sysctl_int("net.ipv4.conf.all.rp_filter"),
                   self.sysctl_int(f"net.ipv4.conf.{dev}.rp_filter"))

    def route_localnet(self, dev: str) -> bool:
        return (self.sysctl_int("net.ipv4.conf.all.route_localnet") == 1
                or self.sysctl_int(f"net.ipv4.conf.{dev}.route_localnet") == 1)


@dataclass(frozen=True, slots=True)
class Snapshot:
    namespaces: Mapping[str, NetnsState] = field(default_factory=dict)

    def __getitem__(self, name: str) -> NetnsState:
        return self.namespaces[name]

    def veth_peer(self, ns: str, dev: str) -> tuple[str, Link] | None:
        """The other end of veth ``dev`` in namespace ``ns``: same-netns by name; else through the
        peer's netns id when ``ip-netns.json`` names it (and that namespace is in the snapshot);
        else the one veth elsewhere whose ifindex and peer ifindex cross-match (netns ids are local
        to each netns, so the pair is identified by its two ifindexes; ambiguity yields None)."""
        here = self.namespaces[ns]
        link = here.link(dev)
        if link is None or link.kind != "veth" or link.link_index is None:
            return None
        if link.link_netnsid is None:
            peer = here.link_by_index(link.link_index)
            return (ns, peer) if peer is not None else None
        named = here.netns_ids.get(link.link_netnsid)
        if named is not None and named in self.namespaces:
            cand = self.namespaces[named].link_by_index(link.link_index)
            if cand is not None and cand.kind == "veth" and cand.link_index == link.ifindex:
                return named, cand
        found: list[tuple[str, Link]] = []
        for other_name, other in self.namespaces.items():
            if other_name == ns:
                continue
            cand = other.link_by_index(link.link_index)
            if (cand is not None and cand.kind == "veth" and cand.link_index == link.ifindex
                    and cand.link_netnsid is not None):
                found.append((other_name, cand))
        return found[0] if len(found) == 1 else None
