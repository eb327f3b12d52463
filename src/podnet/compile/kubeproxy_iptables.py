"""kube-proxy, iptables mode: the ``iptables-restore`` payload upstream's proxier writes for a node.

A pure re-implementation of ``syncProxyRules`` in ``pkg/proxy/iptables/proxier.go`` (IPv4): the same
chains (named by the upstream hash), rules, comments, rule order, mark and probabilities. Upstream walks
services in Go map order (random); podnet walks them sorted by service-port name, so the payload is
deterministic. Differences, on purpose and documented in ``docs/kube-proxy.md``:

- no ``-m nfacct`` match is ever written (the kernel here lacks ``xt_nfacct``; upstream also omits
  them when nfacct does not work);
- ``partial_payload`` sends only what changed, including incremental ``-D``/``-I`` edits of the shared
  chains (``KUBE-SERVICES`` ...) instead of rewriting them whole as upstream's partial sync does.

The jumps from the built-in chains are not in the payload (``iptables-restore --noflush`` would
append them again on each sync): ``jump_rules`` lists them for the dataplane to ensure (``-C``, then
``-I``), as upstream's ``EnsureRule(Prepend, ...)``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from podnet.model.services import EndpointInfo, ServicePortInfo, select_endpoints

MASQUERADE_MARK = "0x00004000"        # fmt.Sprintf("%#08x", 1<<14), as a real kube-proxy writes it
LARGE_CLUSTER_ENDPOINTS = 1000        # largeClusterEndpointsThreshold
LOCALHOST = "127.0.0.1"

# fixed chains
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"        # kubelet's anti-martian chain; kube-proxy keeps a copy
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
FILTER_FIXED = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL)
NAT_FIXED = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
CANARY_TABLES = ("mangle", "nat", "filter")


@dataclass(frozen=True)
class ProxyNode:
    """The node a kube-proxy runs on, and its flags (kube-proxy's configuration)."""

    name: str                                   # --hostname-override: endpoints with this nodeName are local
    node_ips: tuple[str, ...] = ()              # the node's addresses; the first is the primary (nodeIP)
    cluster_cidr: str | None = None             # --cluster-cidr; None: no local-traffic detector
    masquerade_all: bool = False                # --masquerade-all
    nodeport_addresses: tuple[str, ...] = ()    # --nodeport-addresses CIDRs (or "primary"); (): all
    localhost_nodeports: bool = True            # --iptables-localhost-nodeports
    masquerade_mark: str = MASQUERADE_MARK
    random_fully: bool = True                   # MASQUERADE --random-fully (every modern iptables has it)
    tcp_be_liberal: bool = False                # nf_conntrack_tcp_be_liberal=1 drops the INVALID rule
    service_cidrs: tuple[str, ...] = ()         # nftables only: drop traffic to unallocated ClusterIPs

    @property
    def primary_ip(self) -> str | None:
        return self.node_ips[0] if self.node_ips else None

    @property
    def local_addresses(self) -> tuple[str, ...]:
        """What ``addrtype --dst-type LOCAL`` matches: the node IPs, then 127.0.0.1."""
        return (*self.node_ips, LOCALHOST)

    @property
    def nodeports_match_all(self) -> bool:
        return not self.nodeport_addresses or any(
            a != "primary" and ipaddress.ip_network(a, strict=False).prefixlen == 0
            for a in self.nodeport_addresses)

    def nodeport_ips(self) -> list[str]:
        """``NodePortAddresses.GetNodeIPs``: the local addresses inside --nodeport-addresses."""
        out = []
        for ip in self.local_addresses:
            for a in self.nodeport_addresses:
                hit = (ip in self.node_ips[:1]) if a == "primary" else (
                    ipaddress.ip_address(ip) in ipaddress.ip_network(a, strict=False))
                if hit and ip not in out:
                    out.append(ip)
        return out


# --------------------------------------------------------------------------- chain names

def _b32(data: str) -> str:
    return base64.b32encode(hashlib.sha256(data.encode()).digest()).decode()


def port_proto_hash(spn: str, protocol: str) -> str:
    """``portProtoHash``: base32(sha256(servicePortName + lower-case protocol))[:16]."""
    return _b32(spn + protocol.lower())[:16]


def service_chain(prefix: str, sp: ServicePortInfo) -> str:
    """``KUBE-SVC-``/``KUBE-SVL-``/``KUBE-EXT-``/``KUBE-FW-`` + the service port's hash."""
    return prefix + port_proto_hash(sp.spn, sp.proto)


def endpoint_chain(sp: ServicePortInfo, ep: EndpointInfo) -> str:
    """``KUBE-SEP-`` + base32(sha256(servicePortName + protocol + "ip:port"))[:16]."""
    return "KUBE-SEP-" + _b32(sp.spn + sp.proto + ep.key)[:16]


def probability(n: int) -> str:
    """``computeProbability``: ``fmt.Sprintf("%0.10f", 1.0/float64(n))``."""
    return f"{1.0 / n:0.10f}"


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)


# --------------------------------------------------------------------------- the rule set

@dataclass
class Buffers:
    """Upstream's four line buffers, in emission order."""

    filter_chains: list[str] = field(default_factory=list)     # chain names, declaration order
    filter_rules: list[str] = field(default_factory=list)      # "-A CHAIN ..." lines
    nat_chains: list[str] = field(default_factory=list)
    nat_rules: list[str] = field(default_factory=list)


@dataclass
class IptablesRules:
    """One full sync: the fixed head, each service port's fragment (in sync order) and the fixed tail.

    The flat buffers are assembled only when asked for (a full payload); partial syncs work from the
    fragments, so a one-service change does not touch the other 10k services' lines."""

    head: Buffers = field(default_factory=Buffers)
    by_port: dict[tuple[str, str], tuple[ServicePortInfo, Fragment]] = field(default_factory=dict)
    tail: Buffers = field(default_factory=Buffers)
    node: ProxyNode | None = None
    large: bool = False

    @cached_property
    def filter_chains(self) -> list[str]:
        return [*self.head.filter_chains, *self.tail.filter_chains]

    @cached_property
    def filter_rules(self) -> list[str]:
        return [*self.head.filter_rules, *(r for _, f in self.by_port.values() for r in f.filter_rules),
                *self.tail.filter_rules]

    @cached_property
    def nat_chains(self) -> list[str]:
        return [*self.head.nat_chains, *(c for _, f in self.by_port.values() for c in f.nat_chains),
                *self.tail.nat_chains]

    @cached_property
    def nat_rules(self) -> list[str]:
        return [*self.head.nat_rules, *(r for _, f in self.by_port.values() for r in f.nat_rules),
                *self.tail.nat_rules]

    def payload(self, stale_nat_chains: Iterable[str] = (), tables: tuple[str, ...] = ("filter", "nat")) -> str:
        """The ``iptables-restore --noflush`` input of a full sync (of ``tables``).

        ``stale_nat_chains``: service chains present in the kernel (``iptables-save -t nat``) but no
        longer wanted; they are flushed and deleted as upstream does (``:CHAIN`` then ``-X CHAIN``).
        """
        stale = [c for c in stale_nat_chains if is_service_chain(c) and c not in set(self.nat_chains)]
        out = []
        if "filter" in tables:
            out += ["*filter", *(_chain_line(c) for c in self.filter_chains), *self.filter_rules, "COMMIT"]
        if "nat" in tables:
            out += ["*nat", *(_chain_line(c) for c in self.nat_chains), *(_chain_line(c) for c in stale),
                    *self.nat_rules, *(f"-X {c}" for c in stale), "COMMIT"]
        return "\n".join(out) + "\n"

    def table(self, name: str) -> dict[str, list[str]]:
        """Chain -> its rules (each without the ``-A CHAIN`` prefix), in declaration order."""
        chains, rules = (self.filter_chains, self.filter_rules) if name == "filter" else (
            self.nat_chains, self.nat_rules)
        out: dict[str, list[str]] = {c: [] for c in chains}
        for line in rules:
            parts = line.split(" ", 2)
            out.setdefault(parts[1], []).append(parts[2] if len(parts) > 2 else "")
        return out


def owned_chain(table: str, chain: str) -> bool:
    """Chains kube-proxy writes whole in a sync (not the canaries, which only it creates)."""
    return is_service_chain(chain) or chain in (SHARED_CHAINS["filter"] if table == "filter" else NAT_FIXED)


def table_replacement(saved: str, rules: IptablesRules, tables: tuple[str, ...] = ("filter", "nat")) -> str:
    """A full sync as a whole-table ``iptables-restore --counters`` input (no ``--noflush``).

    ``saved`` is ``iptables-save -c -t filter -t nat`` of the node. Everything in it that kube-proxy does
    not own (built-in chains with their policies, counters and rules, such as the jumps to KUBE-*; other
    programs' chains) is kept as it is; kube-proxy's chains get this sync's content; its stale chains
    disappear. Same final state as ``payload()`` under ``--noflush``, but iptables-nft loads it in
    seconds instead of minutes at 10k services (with ``--noflush`` it re-reads rules per append)."""
    ours = {"filter": (rules.filter_chains, rules.filter_rules), "nat": (rules.nat_chains, rules.nat_rules)}
    kept: dict[str, tuple[list[str], list[str]]] = {"filter": ([], []), "nat": ([], [])}
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif table not in kept or not line or line.startswith(("#", "COMMIT")):
            continue
        elif line.startswith(":"):
            if not owned_chain(table, line[1:].split(" ", 1)[0]):
                kept[table][0].append(line)
        else:
            words = line.split(" ", 3)   # "[p:b] -A CHAIN spec"
            chain = words[2] if line.startswith("[") else words[1]
            if not owned_chain(table, chain):
                kept[table][1].append(line)
    out = []
    for t in tables:
        chains, lines = ours[t]
        out += [f"*{t}", *kept[t][0], *(_chain_line(c) for c in chains), *kept[t][1], *lines, "COMMIT"]
    return "\n".join(out) + "\n"


def _chain_line(chain: str) -> str:
    return f":{chain} - [0:0]"


class _Writer:
    """Upstream's ``LineBuffer``s: words joined by single spaces."""

    def __init__(self, node: ProxyNode, large: bool) -> None:
        self.node = node
        self.large = large
        self.r = Buffers()

    def filter(self, *words: str) -> None:
        self.r.filter_rules.append(" ".join(w for w in words if w))

    def nat(self, *words: str) -> None:
        self.r.nat_rules.append(" ".join(w for w in words if w))

    def nat_chain(self, chain: str) -> None:
        self.r.nat_chains.append(chain)

    def service_comment(self, text: str) -> str:
        """``appendServiceCommentLocked``: dropped in large-cluster mode."""
        return "" if self.large else f"-m comment --comment {text}"


def _quoted(text: str) -> str:
    return f'"{text}"'


@dataclass(frozen=True)
class Fragment:
    """What one service port contributes to a sync: its rules in the shared chains and its own chains."""

    filter_rules: tuple[str, ...]
    nat_chains: tuple[str, ...]
    nat_rules: tuple[str, ...]
    # how many rules it has in each shared chain, per table (for -I positions in partial syncs)
    shared: tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]] = ((), ())


def fragment(sp: ServicePortInfo, node: ProxyNode, large: bool) -> Fragment:
    w = _Writer(node, large)
    _write_service_port(w, sp)
    counts: tuple[dict[str, int], dict[str, int]] = ({}, {})
    for i, rules in enumerate((w.r.filter_rules, (r for r in w.r.nat_rules if _chain_of(r) in NAT_FIXED))):
        for r in rules:
            c = _chain_of(r)
            counts[i][c] = counts[i].get(c, 0) + 1
    return Fragment(tuple(w.r.filter_rules), tuple(w.r.nat_chains), tuple(w.r.nat_rules),
                    (tuple(counts[0].items()), tuple(counts[1].items())))


PortKey = tuple[str, str]


def build_rules(ports: Iterable[ServicePortInfo], node: ProxyNode,
                previous: IptablesRules | None = None) -> IptablesRules:
    """Everything one full ``syncProxyRules`` writes for ``node``.

    With ``previous`` (the last sync's result), the fragment of every service port that did not change
    is reused instead of re-rendered, which is what makes a one-service change cheap at 10k services."""
    ports = sorted(ports, key=lambda p: (p.spn, p.protocol))
    large = sum(len(p.endpoints) for p in ports) > LARGE_CLUSTER_ENDPOINTS
    head = _Writer(node, large)
    _write_fixed_head(head)
    reuse = previous.by_port if previous is not None and previous.node == node and previous.large == large else {}
    by_port = {}
    for sp in ports:
        key = (sp.spn, sp.protocol)
        prev = reuse.get(key)
        frag = prev[1] if prev is not None and (prev[0] is sp or prev[0] == sp) else fragment(sp, node, large)
        by_port[key] = (sp, frag)
    tail = _Writer(node, large)
    _write_nodeports_jump(tail)
    _write_forward(tail)
    return IptablesRules(head=head.r, by_port=by_port, tail=tail.r, node=node, large=large)


def render_iptables(ports: Iterable[ServicePortInfo], node: ProxyNode) -> str:
    """The full ``iptables-restore`` payload for ``node``."""
    return build_rules(ports, node).payload()


def _write_fixed_head(w: _Writer) -> None:
    n, mark = w.node, w.node.masquerade_mark
    w.r.filter_chains.extend(FILTER_FIXED)
    w.r.nat_chains.extend(NAT_FIXED)
    w.nat("-A", KUBE_POSTROUTING, "-m mark !", f"--mark {mark}/{mark}", "-j RETURN")
    w.nat("-A", KUBE_POSTROUTING, "-j MARK", f"--xor-mark {mark}")
    w.nat("-A", KUBE_POSTROUTING, "-m comment --comment", _quoted("kubernetes service traffic requiring SNAT"),
          "-j MASQUERADE", "--random-fully" if n.random_fully else "")
    w.nat("-A", KUBE_MARK_MASQ, "-j MARK", f"--or-mark {mark}")
    if n.localhost_nodeports:
        w.r.filter_chains.append(KUBE_FIREWALL)
        w.filter("-A", KUBE_FIREWALL, "-m comment --comment", _quoted("block incoming localnet connections"),
                 "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")


@dataclass(frozen=True)
class _Plan:
    """The decision variables of one service port on one node (proxier.go)."""

    cluster: tuple[EndpointInfo, ...]
    local: tuple[EndpointInfo, ...]
    reachable: tuple[EndpointInfo, ...]
    has_endpoints: bool
    has_internal: bool
    has_external: bool
    internal_chain: str
    external_policy_chain: str
    uses_cluster_chain: bool
    uses_local_chain: bool
    uses_ext_chain: bool
    uses_fw_chain: bool
    internal_filter: tuple[str, str]       # (target, comment) when traffic is refused
    external_filter: tuple[str, str]


def plan(sp: ServicePortInfo, node: str) -> _Plan:
    sel = select_endpoints(sp, node)
    svc, svl = service_chain("KUBE-SVC-", sp), service_chain("KUBE-SVL-", sp)
    has_internal = sel.has_any and not (sp.internal_policy_local and not sel.local)
    has_external = sel.has_any and not (sp.external_policy_local and not sel.local)
    if not sel.has_any:
        refused = ("REJECT", _quoted(f"{sp.spn} has no endpoints"))
        internal_filter = external_filter = refused
    else:
        no_local = ("DROP", _quoted(f"{sp.spn} has no local endpoints"))
        internal_filter = no_local if not has_internal else ("", "")
        external_filter = no_local if not has_external else ("", "")
    return _Plan(
        cluster=sel.cluster, local=sel.local, reachable=sel.reachable, has_endpoints=sel.has_any,
        has_internal=has_internal, has_external=has_external,
        internal_chain=svl if sp.internal_policy_local else svc,
        external_policy_chain=svl if sp.external_policy_local else svc,
        uses_cluster_chain=bool(sel.cluster) and sp.uses_cluster_endpoints,
        uses_local_chain=bool(sel.local) and sp.uses_local_endpoints,
        uses_ext_chain=sel.has_any and sp.externally_accessible,
        uses_fw_chain=sel.has_any and bool(sp.lb_vips) and bool(sp.lb_source_ranges),
        internal_filter=internal_filter, external_filter=external_filter)


def _write_service_port(w: _Writer, sp: ServicePortInfo) -> None:
    p = plan(sp, w.node.name)
    proto, port, spn = sp.proto, str(sp.port), sp.spn
    match = f"-m {proto} -p {proto}"
    ext, fw = service_chain("KUBE-EXT-", sp), service_chain("KUBE-FW-", sp)
    # 1. the ClusterIP
    if p.has_internal:
        w.nat("-A", KUBE_SERVICES, "-m comment --comment", _quoted(f"{spn} cluster IP"), match,
              "-d", sp.cluster_ip, "--dport", port, "-j", p.internal_chain)
    else:
        w.filter("-A", KUBE_SERVICES, "-m comment --comment", p.internal_filter[1], match,
                 "-d", sp.cluster_ip, "--dport", port, "-j", p.internal_filter[0])
    # 2. externalIPs
    for ip in sp.external_ips:
        if p.has_endpoints:
            w.nat("-A", KUBE_SERVICES, "-m comment --comment", _quoted(f"{spn} external IP"), match,
                  "-d", ip, "--dport", port, "-j", ext)
        if not p.has_external:
            w.filter("-A", KUBE_EXTERNAL_SERVICES, "-m comment --comment", p.external_filter[1], match,
                     "-d", ip, "--dport", port, "-j", p.external_filter[0])
    # 3. load-balancer ingress IPs
    for ip in sp.lb_vips:
        if p.has_endpoints:
            w.nat("-A", KUBE_SERVICES, "-m comment --comment", _quoted(f"{spn} loadbalancer IP"), match,
                  "-d", ip, "--dport", port, "-j", fw if p.uses_fw_chain else ext)
        if p.uses_fw_chain:
            w.filter("-A", KUBE_PROXY_FIREWALL, "-m comment --comment",
                     _quoted(f"{spn} traffic not accepted by {fw}"), match, "-d", ip, "--dport", port, "-j DROP")
    if not p.has_external:
        for ip in sp.lb_vips:
            w.filter("-A", KUBE_EXTERNAL_SERVICES, "-m comment --comment", p.external_filter[1], match,
                     "-d", ip, "--dport", port, "-j", p.external_filter[0])
    # 4. the NodePort (no nfacct localhost-counting rule: the kernel lacks xt_nfacct)
    if sp.node_port:
        if p.has_endpoints:
            w.nat("-A", KUBE_NODEPORTS, "-m comment --comment", spn, match, "--dport", str(sp.node_port),
                  "-j", ext)
        if not p.has_external:
            w.filter("-A", KUBE_EXTERNAL_SERVICES, "-m comment --comment", p.external_filter[1],
                     "-m addrtype --dst-type LOCAL", match, "--dport", str(sp.node_port),
                     "-j", p.external_filter[0])
    # 5. the health-check node port
    if sp.health_check_node_port:
        w.filter("-A", KUBE_NODEPORTS, "-m comment --comment", _quoted(f"{spn} health check node port"),
                 "-m tcp -p tcp --dport", str(sp.health_check_node_port), "-j ACCEPT")
    _write_service_chains(w, sp, p, ext, fw)


def _write_service_chains(w: _Writer, sp: ServicePortInfo, p: _Plan, ext: str, fw: str) -> None:
    n, proto, spn = w.node, sp.proto, sp.spn
    svc, svl = service_chain("KUBE-SVC-", sp), service_chain("KUBE-SVL-", sp)
    # 6. masquerade off-cluster traffic to the ClusterIP
    if p.has_internal:
        args = ("-m comment --comment", _quoted(f"{spn} cluster IP"), f"-m {proto} -p {proto}",
                "-d", sp.cluster_ip, "--dport", str(sp.port))
        if n.masquerade_all:
            w.nat("-A", p.internal_chain, *args, "-j", KUBE_MARK_MASQ)
        elif n.cluster_cidr:
            w.nat("-A", p.internal_chain, *args, "! -s", n.cluster_cidr, "-j", KUBE_MARK_MASQ)
    # 7. the external-destinations chain
    if p.uses_ext_chain:
        w.nat_chain(ext)
        if not sp.external_policy_local:
            w.nat("-A", ext, "-m comment --comment",
                  _quoted(f"masquerade traffic for {spn} external destinations"), "-j", KUBE_MARK_MASQ)
        else:
            if n.cluster_cidr:
                w.nat("-A", ext, "-m comment --comment", _quoted(f"pod traffic for {spn} external destinations"),
                      "-s", n.cluster_cidr, "-j", svc)
            w.nat("-A", ext, "-m comment --comment",
                  _quoted(f"masquerade LOCAL traffic for {spn} external destinations"),
                  "-m addrtype --src-type LOCAL -j", KUBE_MARK_MASQ)
            w.nat("-A", ext, "-m comment --comment",
                  _quoted(f"route LOCAL traffic for {spn} external destinations"),
                  "-m addrtype --src-type LOCAL -j", svc)
        if p.has_external:
            w.nat("-A", ext, "-j", p.external_policy_chain)
    # 8. the loadBalancerSourceRanges chain
    if p.uses_fw_chain:
        w.nat_chain(fw)
        comment = ("-m comment --comment", _quoted(f"{spn} loadbalancer IP"))
        allow_node = False
        for cidr in sp.lb_source_ranges:
            w.nat("-A", fw, *comment, "-s", cidr, "-j", ext)
            if n.primary_ip and ipaddress.ip_address(n.primary_ip) in ipaddress.ip_network(cidr):
                allow_node = True
        if allow_node:
            for ip in sp.lb_vips:
                w.nat("-A", fw, *comment, "-s", ip, "-j", ext)
        w.nat("-A", fw, "-m comment --comment",
              _quoted(f"other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL"))
    # 9. the policy chains
    if p.uses_cluster_chain:
        w.nat_chain(svc)
        _write_service_to_endpoints(w, sp, svc, p.cluster)
    if p.uses_local_chain:
        w.nat_chain(svl)
        _write_service_to_endpoints(w, sp, svl, p.local)
    # 10. the endpoint chains
    for ep in p.reachable:
        sep = endpoint_chain(sp, ep)
        w.nat_chain(sep)
        comment = w.service_comment(spn)
        w.nat("-A", sep, comment, "-s", ep.ip, "-j", KUBE_MARK_MASQ)
        recent = f"-m recent --name {sep} --set" if sp.affinity_timeout else ""
        w.nat("-A", sep, comment, recent, f"-m {proto} -p {proto} -j DNAT --to-destination", ep.key)


def _write_service_to_endpoints(w: _Writer, sp: ServicePortInfo, chain: str,
                                endpoints: tuple[EndpointInfo, ...]) -> None:
    """``writeServiceToEndpointRules``: affinity checks first, then the random split."""
    if sp.affinity_timeout:
        for ep in endpoints:
            sep = endpoint_chain(sp, ep)
            w.nat("-A", chain, w.service_comment(_quoted(f"{sp.spn} -> {ep.key}")),
                  "-m recent --name", sep, "--rcheck --seconds", str(sp.affinity_timeout), "--reap -j", sep)
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        stat = f"-m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
        w.nat("-A", chain, w.service_comment(_quoted(f"{sp.spn} -> {ep.key}")), stat, "-j",
              endpoint_chain(sp, ep))


def _write_nodeports_jump(w: _Writer) -> None:
    n = w.node
    comment = _quoted("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    if n.nodeports_match_all:
        w.nat("-A", KUBE_SERVICES, "-m comment --comment", comment, "-m addrtype --dst-type LOCAL",
              "" if n.localhost_nodeports else "! -d 127.0.0.0/8", "-j", KUBE_NODEPORTS)
        return
    for ip in n.nodeport_ips():
        if ip == LOCALHOST and not n.localhost_nodeports:
            continue   # upstream logs "--nodeport-addresses includes localhost but ... =false"
        w.nat("-A", KUBE_SERVICES, "-m comment --comment", comment, "-d", ip, "-j", KUBE_NODEPORTS)


def _write_forward(w: _Writer) -> None:
    mark = w.node.masquerade_mark
    if not w.node.tcp_be_liberal:
        w.filter("-A", KUBE_FORWARD, "-m conntrack --ctstate INVALID -j DROP")
    w.filter("-A", KUBE_FORWARD, "-m comment --comment", _quoted("kubernetes forwarding rules"),
             "-m mark", f"--mark {mark}/{mark}", "-j ACCEPT")
    w.filter("-A", KUBE_FORWARD, "-m comment --comment", _quoted("kubernetes forwarding conntrack rule"),
             "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")


# --------------------------------------------------------------------------- jumps from built-in chains

@dataclass(frozen=True)
class JumpRule:
    """A jump kube-proxy ensures in a built-in chain (``EnsureRule(Prepend, ...)``), as argv words."""

    table: str
    chain: str
    target: str
    args: tuple[str, ...]

    def check_argv(self) -> list[str]:
        return ["-t", self.table, "-C", self.chain, *self.args]

    def insert_argv(self) -> list[str]:
        return ["-t", self.table, "-I", self.chain, *self.args]


def _jump(table: str, src: str, dst: str, comment: str, new: bool) -> JumpRule:
    args: list[str] = ["-m", "conntrack", "--ctstate", "NEW"] if new else []
    if comment:
        args += ["-m", "comment", "--comment", comment]
    return JumpRule(table, src, dst, (*args, "-j", dst))


def jump_rules() -> list[JumpRule]:
    """``iptablesJumpChains`` then ``iptablesKubeletJumpChains``, in the order they are ensured.

    Each is inserted at the top of its chain (``-I``) when ``-C`` says it is missing, so on a fresh
    node the chains end up holding them in reverse order, exactly as on a real node.
    """
    ext, svc = "kubernetes externally-visible service portals", "kubernetes service portals"
    fw = "kubernetes load balancer firewall"
    return [
        _jump("filter", "INPUT", KUBE_EXTERNAL_SERVICES, ext, True),
        _jump("filter", "FORWARD", KUBE_EXTERNAL_SERVICES, ext, True),
        _jump("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports", False),
        _jump("filter", "FORWARD", KUBE_SERVICES, svc, True),
        _jump("filter", "OUTPUT", KUBE_SERVICES, svc, True),
        _jump("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules", False),
        _jump("filter", "INPUT", KUBE_PROXY_FIREWALL, fw, True),
        _jump("filter", "OUTPUT", KUBE_PROXY_FIREWALL, fw, True),
        _jump("filter", "FORWARD", KUBE_PROXY_FIREWALL, fw, True),
        _jump("nat", "OUTPUT", KUBE_SERVICES, svc, False),
        _jump("nat", "PREROUTING", KUBE_SERVICES, svc, False),
        _jump("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules", False),
        _jump("filter", "INPUT", KUBE_FIREWALL, "", False),
        _jump("filter", "OUTPUT", KUBE_FIREWALL, "", False),
    ]


def ensured_chains() -> list[tuple[str, str]]:
    """(table, chain) pairs to create before the jumps: their targets, and the canary chains whose
    disappearance means someone flushed iptables (then a full sync is due)."""
    out: list[tuple[str, str]] = []
    for j in jump_rules():
        if (j.table, j.target) not in out:
            out.append((j.table, j.target))
    out += [(t, KUBE_PROXY_CANARY) for t in CANARY_TABLES]
    return out


# --------------------------------------------------------------------------- partial sync

SHARED_CHAINS = {"filter": (*FILTER_FIXED, KUBE_FIREWALL), "nat": NAT_FIXED}


def partial_payload(old: IptablesRules | None, new: IptablesRules) -> str:
    """The smallest ``iptables-restore --noflush`` input that turns ``old`` into ``new``.

    Per table:
    - a service chain (KUBE-SVC/SVL/EXT/FW/SEP) that is new or changed is declared and rewritten;
      one that is gone is flushed and deleted (``:CHAIN`` then ``-X CHAIN``, last);
    - a shared chain (KUBE-SERVICES, KUBE-NODEPORTS, ...) that changed is edited in place: ``-D`` of
      its removed rules, then ``-I CHAIN <n>`` of its new rules at their final position, so the result
      is rule-for-rule the full sync's. When its kept rules changed relative order (or a rule repeats),
      the chain is rewritten whole instead;
    - an unchanged chain is not mentioned at all, and an unchanged table is left out.
    Returns "" when nothing changed; ``old`` None gives the full payload.
    """
    if old is None:
        return new.payload()
    if old.by_port and new.by_port and old.node == new.node and old.large == new.large:
        return _fragment_delta(old, new)
    out: list[str] = []
    for table in ("filter", "nat"):
        out += _table_delta(table, old.table(table), new.table(table))
    return "\n".join(out) + "\n" if out else ""


def _chain_of(line: str) -> str:
    return line.split(" ", 2)[1]


def _fragment_delta(old: IptablesRules, new: IptablesRules) -> str:
    """``partial_payload`` from the service ports that changed only (the fixed chains are equal: same
    node, same large-cluster mode): their own chains rewritten or deleted, their rules in the shared
    chains removed (``-D``) or inserted at their final position (``-I CHAIN n``)."""
    changed = [k for k, (_, frag) in new.by_port.items()
               if (o := old.by_port.get(k)) is None or (o[1] is not frag and o[1] != frag)]
    removed = [k for k in old.by_port if k not in new.by_port]
    if not changed and not removed:
        return ""
    changed_set = set(changed)
    declare: list[str] = []
    rewrite: list[str] = []
    drop: list[str] = []
    edits: dict[str, list[str]] = {"filter": [], "nat": []}
    inserts: dict[str, list[tuple[str, int, str]]] = {"filter": [], "nat": []}
    old_lines: dict[str, set[str]] = {"filter": set(), "nat": set()}
    new_lines: dict[str, set[str]] = {"filter": set(), "nat": set()}
    old_chains: set[str] = set()
    new_chains: set[str] = set()
    for k in [*changed, *removed]:
        before = old.by_port.get(k)
        after = new.by_port.get(k)
        if before is not None:
            old_chains.update(before[1].nat_chains)
            old_lines["filter"].update(before[1].filter_rules)
            old_lines["nat"].update(r for r in before[1].nat_rules if _chain_of(r) in NAT_FIXED)
        if after is not None:
            new_chains.update(after[1].nat_chains)
            new_lines["filter"].update(after[1].filter_rules)
            new_lines["nat"].update(r for r in after[1].nat_rules if _chain_of(r) in NAT_FIXED)
    for k in changed:   # the changed ports' own chains, rewritten whole
        frag = new.by_port[k][1]
        own = set(frag.nat_chains)
        declare += frag.nat_chains
        rewrite += [r for r in frag.nat_rules if _chain_of(r) in own]
    for c in sorted(old_chains - new_chains):
        declare.append(c)
        drop.append(f"-X {c}")
    for table in ("filter", "nat"):
        gone = old_lines[table] - new_lines[table]
        added = new_lines[table] - old_lines[table]
        edits[table] = ["-D " + r[3:] for r in sorted(gone)]
        if added:   # final positions: count the shared-chain rules before each added one
            pos: dict[str, int] = {}
            ti = 0 if table == "filter" else 1
            for k, (_, frag) in new.by_port.items():
                if k not in changed_set:
                    for chain, n in frag.shared[ti]:
                        pos[chain] = pos.get(chain, 0) + n
                    continue
                for r in (frag.filter_rules if table == "filter" else frag.nat_rules):
                    chain = _chain_of(r)
                    if table == "nat" and chain not in NAT_FIXED:
                        continue
                    pos[chain] = pos.get(chain, 0) + 1
                    if r in added:
                        inserts[table].append((chain, pos[chain], r.split(" ", 2)[2]))
    # (the fixed head writes no rule in a shared chain, so positions count service rules only)
    out: list[str] = []
    filter_lines = edits["filter"] + [f"-I {c} {i} {spec}" for c, i, spec in inserts["filter"]]
    if filter_lines:
        out += ["*filter", *filter_lines, "COMMIT"]
    nat_lines = [*(_chain_line(c) for c in declare), *rewrite, *edits["nat"],
                 *(f"-I {c} {i} {spec}" for c, i, spec in inserts["nat"]), *drop]
    if nat_lines:
        out += ["*nat", *nat_lines, "COMMIT"]
    return "\n".join(out) + "\n" if out else ""


def _table_delta(table: str, old: dict[str, list[str]], new: dict[str, list[str]]) -> list[str]:
    declare: list[str] = []
    rewrite: list[str] = []
    edits: list[str] = []
    delete: list[str] = []
    for chain, rules in new.items():
        before = old.get(chain)
        if before == rules:
            continue
        if chain in SHARED_CHAINS[table] and before is not None:
            delta = _chain_edits(chain, before, rules)
            if delta is not None:
                edits += delta
                continue
        declare.append(chain)
        rewrite += [_rule_line(chain, r) for r in rules]
    for chain in old:
        if chain in new:
            continue
        declare.append(chain)
        if is_service_chain(chain):
            delete.append(f"-X {chain}")
    if not (declare or edits):
        return []
    return [f"*{table}", *(_chain_line(c) for c in declare), *rewrite, *edits, *delete, "COMMIT"]


def _rule_line(chain: str, spec: str) -> str:
    return f"-A {chain} {spec}" if spec else f"-A {chain}"


def _chain_edits(chain: str, old: list[str], new: list[str]) -> list[str] | None:
    """``-D``/``-I`` lines turning ``old`` into ``new``, or None when a rewrite is needed."""
    old_set, new_set = set(old), set(new)
    if len(old_set) != len(old) or len(new_set) != len(new):
        return None
    if [r for r in old if r in new_set] != [r for r in new if r in old_set]:
        return None
    out = [f"-D {chain} {r}" for r in old if r not in new_set]
    out += [f"-I {chain} {i} {r}" for i, r in enumerate(new, 1) if r not in old_set]
    return out if len(out) <= len(new) else None
