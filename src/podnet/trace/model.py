"""The typed trace: what ``podnet trace`` answers, independent of how it is shown.

A :class:`TraceResult` holds the :class:`Flow` asked about and one :class:`Outcome` per possible
path (random load balancing forks the walk; each outcome has its probability and endpoint). Each
outcome's :class:`Trace` has a :class:`Disposition` from a closed set (with a :class:`DropReason`
when dropped), the :class:`Hop` s it took (one per visit to a namespace, named by node and place)
and their :class:`Step` s, each naming exactly what decided it (rule, route, FDB, neighbour or
conntrack entry), plus the reply path. Renderers (``podnet.trace.render_*``) turn it into text, JSON
(schema in docs/trace.md) and Mermaid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

SCHEMA_VERSION = "podnet.dev/trace/v1"


class Disposition(StrEnum):
    DELIVERED = "delivered"                       # reached a listening socket (or the kernel, for ICMP echo)
    EXITS_NETWORK = "exits_network"               # left the snapshot toward a next hop outside it
    DROPPED = "dropped"                           # silently discarded; see DropReason
    REJECTED = "rejected"                         # a REJECT rule answered (ICMP error or TCP reset)
    NO_ROUTE = "no_route"                         # no route, or an unreachable/prohibit route
    NEIGHBOUR_UNREACHABLE = "neighbour_unreachable"   # nobody answers ARP for the next hop
    TOO_BIG = "too_big"                           # larger than the MTU with DF set
    NO_LISTENER = "no_listener"                   # arrived, but no socket listens on that port
    LOOP = "loop"                                 # went round in circles (hop limit)
    UNKNOWN = "unknown"                           # the snapshot lacks what the decision needs

    @property
    def ok(self) -> bool:
        return self is Disposition.DELIVERED


class DropReason(StrEnum):
    RULE = "rule"                                 # a DROP rule (iptables/nftables)
    CHAIN_POLICY = "chain_policy"                 # the built-in chain's policy (e.g. FORWARD DROP)
    BLACKHOLE_ROUTE = "blackhole_route"
    FORWARDING_DISABLED = "forwarding_disabled"   # net.ipv4.ip_forward = 0
    RP_FILTER = "rp_filter"                       # reverse-path filter
    MARTIAN = "martian"                           # e.g. 127.0.0.0/8 from a wire (route_localnet = 0)
    LINK_DOWN = "link_down"
    NOT_FOR_HOST = "not_for_host"                 # destination MAC is not this interface's
    HAIRPIN_OFF = "hairpin_off"                   # bridge would send the frame back out its input port
    PORT_BLOCKED = "port_blocked"                 # bridge port not forwarding
    NO_TUNNEL_ENDPOINT = "no_tunnel_endpoint"     # no VXLAN FDB entry for the inner destination MAC
    NO_TUNNEL_DEVICE = "no_tunnel_device"         # a VXLAN packet for a VNI/port nobody decapsulates
    TTL_EXCEEDED = "ttl_exceeded"
    UNSUPPORTED = "unsupported"                   # a feature the simulator does not model


class StepKind(StrEnum):
    ORIGINATE = "originate"       # a socket sends (or a packet enters from outside)
    DNS = "dns"                   # a service name resolved as the pod's resolver would
    ROUTE = "route"               # a routing decision (policy rule, table, route)
    NETFILTER = "netfilter"       # a hook's chains: the rules that matched, the verdict
    CONNTRACK = "conntrack"       # an entry found (or created) and what it did
    NAT = "nat"                   # an address/port rewrite
    NEIGHBOUR = "neighbour"       # next-hop MAC: neighbour entry or ARP
    BRIDGE = "bridge"             # bridge forwarding: FDB entry, port
    LINK = "link"                 # veth crossing, underlay wire
    ENCAP = "encap"               # VXLAN encapsulation
    DECAP = "decap"
    MTU = "mtu"
    DELIVER = "deliver"           # socket found (or not)
    DROP = "drop"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule that matched (or a chain policy that applied)."""

    backend: str                  # iptables | nftables
    table: str                    # iptables: raw/mangle/nat/filter; nftables: "<family> <table>"
    chain: str
    num: int                      # 1-based position in the chain (0: the chain's policy)
    target: str                   # the verdict or target: KUBE-SVC-..., DNAT, ACCEPT, policy DROP...
    comment: str | None = None
    text: str = ""                # the rule as iptables-save / nft printed it
    note: str | None = None       # e.g. "statistic p=0.5000 taken"
    handle: int | None = None     # nftables rule handle

    @property
    def label(self) -> str:
        if self.num == 0:
            return f"{self.table}/{self.chain} policy {self.target}"
        return f"{self.table}/{self.chain} #{self.num}"


@dataclass(frozen=True, slots=True)
class NatChange:
    kind: str                     # dnat, snat, masquerade, redirect, un-dnat, un-snat
    field: str                    # dst or src
    before: str                   # "10.96.45.67:8080"
    after: str


@dataclass(frozen=True, slots=True)
class Encapsulation:
    kind: str                     # vxlan
    dev: str                      # flannel.1
    vni: int
    outer_src: str
    outer_dst: str
    dport: int
    inner_size: int
    outer_size: int
    remote_mac: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    text: str                     # one line, as the text renderer shows it
    rules: tuple[RuleRef, ...] = ()   # netfilter: every rule that matched, in order
    verdict: str | None = None    # netfilter: ACCEPT/DROP/REJECT... ; deliver: socket
    nat: NatChange | None = None
    encap: Encapsulation | None = None
    entry: str | None = None      # the route, neighbour, FDB or conntrack entry that decided, as the tool prints it
    dev_in: str | None = None
    dev_out: str | None = None
    packet: str | None = None     # the packet's headers after this step (when they changed)


@dataclass(frozen=True, slots=True)
class Hop:
    node: str                     # the node (or host/router/underlay) this namespace belongs to
    netns: str                    # the kernel's namespace name
    place: str                    # "pod default/pod-a", "node node1", "underlay"
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Trace:
    disposition: Disposition
    reason: DropReason | None
    summary: str                  # one line: "delivered to pod default/pod-b 10.244.2.8:8080 on node2"
    hops: tuple[Hop, ...]
    final: str                    # the packet as it arrived (or died): "10.244.1.5:40000 -> 10.244.2.8:8080 TCP"
    at: str | None = None         # place where it ended
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Choice:
    """One random decision on the way (statistic rule or numgen): which branch this outcome took."""

    where: str                    # "nat/KUBE-SVC-... #2" or "ip kube-proxy/service-... numgen"
    taken: str                    # "taken", "not taken", "0 of 2"
    probability: float


@dataclass(frozen=True, slots=True)
class Outcome:
    probability: float
    endpoint: str | None          # the address:port the packet was DNATed to (None: no DNAT)
    choices: tuple[Choice, ...]
    forward: Trace
    reply: Trace | None = None    # the answer's path back (delivered flows only)


@dataclass(frozen=True, slots=True)
class Flow:
    src: str                      # as given: "pod-a", "node/node1", "10.1.2.3"
    dst: str                      # as given: "my-service:8080"
    proto: str
    src_ip: str
    dst_ip: str
    sport: int | None
    dport: int | None
    size: int
    start_netns: str
    start_place: str
    start_node: str
    entry_dev: str | None = None  # set when the packet enters from outside on this interface
    icmp_type: int | None = None

    @property
    def text(self) -> str:
        def ep(ip: str, port: int | None) -> str:
            return f"{ip}:{port}" if port is not None else ip
        return f"{ep(self.src_ip, self.sport)} -> {ep(self.dst_ip, self.dport)} {self.proto.upper()}"


@dataclass(frozen=True, slots=True)
class TraceResult:
    flow: Flow
    outcomes: tuple[Outcome, ...]
    chosen: int = 0               # index of the outcome shown in full
    dns: Step | None = None       # how a service name was resolved
    truncated: bool = False       # more branches than explored
    warnings: tuple[str, ...] = field(default=())

    @property
    def outcome(self) -> Outcome:
        return self.outcomes[self.chosen]

    @property
    def disposition(self) -> Disposition:
        return self.outcome.forward.disposition

    @property
    def ok(self) -> bool:
        """Delivered: the shown outcome, and (without --endpoint) every possible one."""
        return all(o.forward.disposition.ok for o in self.outcomes)
