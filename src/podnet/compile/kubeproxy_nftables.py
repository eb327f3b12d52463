"""kube-proxy, nftables mode: the ``nft -f`` scripts upstream's nftables proxier runs, for table
``ip kube-proxy``.

A pure re-implementation of ``setupNFTables`` and ``syncProxyRules`` of ``pkg/proxy/nftables/proxier.go``
(IPv4), written in knftables' transaction syntax: verdict maps ``service-ips`` / ``service-nodeports``
for dispatch, ``numgen random mod N vmap`` for load balancing, ``no-endpoint-*`` maps, ``firewall-ips``,
``cluster-ips``, per-endpoint affinity sets, and the ``masquerading`` chain.

Upstream sends one transaction per sync. Loading thousands of services in one transaction is slow on
this kernel (worse than linear: see reference/linux-host.md), so ``render_nftables`` splits a cold load
into bounded transactions: the first sets up the table, the following ones each add at most
``chunk`` service ports with their chains, rules and map elements (a service port never straddles two
transactions, so a chain always exists before a map element points to it). ``partial_scripts`` sends
only what changed between two syncs.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from podnet.compile.kubeproxy_iptables import ProxyNode
from podnet.model.services import EndpointInfo, ServicePortInfo, select_endpoints

TABLE = "ip kube-proxy"
CHAIN_NAME_MAX = 256 - 16              # knftables.NameLengthMax - chainNamePrefixLengthMax
DEFAULT_CHUNK = 500                    # service ports per transaction

# (name, type, hook, priority): priorities as knftables writes them (dstnat = -100, srcnat = 100)
BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", -110),
    ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110),
    ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)
# (destination, source, extra match): nftablesJumpChains
JUMP_CHAINS = (
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    ("firewall-check", "filter-prerouting", "ct state new"),
    ("firewall-check", "filter-output", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output-post-dnat", "ct state new"),
)
ELEMENT_CONTAINERS = (("set", "cluster-ips"), ("map", "service-ips"), ("map", "firewall-ips"),
                      ("map", "no-endpoint-services"), ("map", "no-endpoint-nodeports"),
                      ("map", "service-nodeports"))


# --------------------------------------------------------------------------- names

def hash_and_truncate(name: str) -> str:
    """``hashAndTruncate``: base32(sha256(name))[:8] + "-" + name, cut to 240 characters."""
    h = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8]
    out = f"{h}-{name}"
    return out[:CHAIN_NAME_MAX - 3] + "..." if len(out) > CHAIN_NAME_MAX else out


def chain_base(sp: ServicePortInfo) -> str:
    """``servicePortChainNameBase``: ``HASH-ns/name/proto/portname``."""
    return hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.proto}/{sp.port_name}")


def endpoint_base(sp: ServicePortInfo, ep: EndpointInfo) -> str:
    """``servicePortEndpointChainNameBase``: ``HASH-ns/name/proto/portname__ip/port``."""
    return hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.proto}/{sp.port_name}__{ep.ip}/{ep.port}")


# --------------------------------------------------------------------------- the desired state

@dataclass(frozen=True)
class Element:
    container: str            # set or map name
    key: str                  # "172.30.0.41 . tcp . 80"
    value: str = ""           # verdict for maps
    comment: str = ""

    def add(self) -> str:
        comment = f' comment "{self.comment}"' if self.comment else ""
        value = f" : {self.value}" if self.value else ""
        return f"add element {TABLE} {self.container} {{ {self.key}{comment}{value} }}"

    def delete(self) -> str:
        return f"delete element {TABLE} {self.container} {{ {self.key} }}"


@dataclass
class ServiceUnit:
    """Everything one service port owns, and its operations in upstream's emission order."""

    spn: str
    lines: list[str] = field(default_factory=list)        # add chain/flush chain/element/set/rule
    chains: list[str] = field(default_factory=list)       # chains it owns, creation order
    elements: list[Element] = field(default_factory=list)
    affinity_sets: list[str] = field(default_factory=list)

    def ensure_chain(self, chain: str) -> None:
        if chain not in self.chains:
            self.chains.append(chain)
            self.lines += [f"add chain {TABLE} {chain}", f"flush chain {TABLE} {chain}"]

    def element(self, container: str, key: str, value: str = "", comment: str = "") -> None:
        e = Element(container, key, value, comment)
        self.elements.append(e)
        self.lines.append(e.add())

    def rule(self, chain: str, rule: str) -> None:
        self.lines.append(f"add rule {TABLE} {chain} {rule}")

    def affinity_set(self, name: str, timeout: int) -> None:
        self.affinity_sets.append(name)
        self.lines.append(f"add set {TABLE} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}")


@dataclass
class NftRules:
    """One full sync's desired state for the ``kube-proxy`` table."""

    node: ProxyNode
    units: list[ServiceUnit]
    by_port: dict[tuple[str, str], tuple[ServicePortInfo, ServiceUnit]] = field(default_factory=dict)

    def unit(self, spn: str) -> ServiceUnit | None:
        return next((u for u in self.units if u.spn == spn), None)


def build_nft(ports: Iterable[ServicePortInfo], node: ProxyNode, previous: NftRules | None = None) -> NftRules:
    """The desired table for ``node``. With ``previous`` (the last sync's result), the unit of every
    service port that did not change is reused instead of re-rendered."""
    ports = sorted(ports, key=lambda p: (p.spn, p.protocol))
    reuse = previous.by_port if previous is not None and previous.node == node else {}
    units = []
    by_port = {}
    for sp in ports:
        key = (sp.spn, sp.protocol)
        prev = reuse.get(key)
        u = prev[1] if prev is not None and (prev[0] is sp or prev[0] == sp) else _service_unit(sp, node)
        units.append(u)
        by_port[key] = (sp, u)
    return NftRules(node=node, units=units, by_port=by_port)


def _service_unit(sp: ServicePortInfo, node: ProxyNode) -> ServiceUnit:
    sel = select_endpoints(sp, node.name)
    u = ServiceUnit(spn=f"{sp.spn}/{sp.proto}")
    proto, port, base = sp.proto, str(sp.port), chain_base(sp)
    cluster_chain, local_chain = f"service-{base}", f"local-{base}"
    ext_chain, fw_chain = f"external-{base}", f"firewall-{base}"
    for ep in sel.reachable:
        u.ensure_chain(f"endpoint-{endpoint_base(sp, ep)}")
    uses_cluster = bool(sel.cluster) and sp.uses_cluster_endpoints
    uses_local = bool(sel.local) and sp.uses_local_endpoints
    if uses_cluster:
        u.ensure_chain(cluster_chain)
    if uses_local:
        u.ensure_chain(local_chain)
    internal_chain = local_chain if sp.internal_policy_local else cluster_chain
    has_internal = sel.has_any and not (sp.internal_policy_local and not sel.local)
    external_policy = local_chain if sp.external_policy_local else cluster_chain
    has_external = sel.has_any and not (sp.external_policy_local and not sel.local)
    uses_ext = sel.has_any and sp.externally_accessible
    if uses_ext:
        u.ensure_chain(ext_chain)
    if not sel.has_any:
        internal_verdict = external_verdict = "goto reject-chain"
    else:
        internal_verdict = "" if has_internal else "drop"
        external_verdict = "" if has_external else "drop"
    _service_elements(u, sp, sel.has_any, has_internal, has_external, internal_chain, ext_chain, fw_chain,
                      internal_verdict, external_verdict)
    if has_internal:
        head = f"ip daddr {sp.cluster_ip} {proto} dport {port}"
        if node.masquerade_all:
            u.rule(internal_chain, f"{head} jump mark-for-masquerade")
        elif node.cluster_cidr:
            u.rule(internal_chain, f"{head} ip saddr != {node.cluster_cidr} jump mark-for-masquerade")
    if uses_ext:
        if not sp.external_policy_local:
            u.rule(ext_chain, "jump mark-for-masquerade")
        else:
            if node.cluster_cidr:
                u.rule(ext_chain,
                       f'ip saddr {node.cluster_cidr} goto {cluster_chain} comment "short-circuit pod traffic"')
            u.rule(ext_chain, 'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"')
            u.rule(ext_chain, f'fib saddr type local goto {cluster_chain} comment "short-circuit local traffic"')
        if has_external:
            u.rule(ext_chain, f"goto {external_policy}")
    if fw_chain in u.chains:
        sources = list(sp.lb_source_ranges)
        primary = node.primary_ip
        if primary and any(ipaddress.ip_address(primary) in ipaddress.ip_network(c) for c in sp.lb_source_ranges):
            sources += list(sp.lb_vips)
        u.rule(fw_chain, f"ip saddr != {{ {' , '.join(sources)} }} drop")
    if sp.affinity_timeout:
        for ep in sel.reachable:
            u.affinity_set(f"affinity-{endpoint_base(sp, ep)}", sp.affinity_timeout)
    if uses_cluster:
        _service_to_endpoints(u, sp, cluster_chain, sel.cluster)
    if uses_local:
        _service_to_endpoints(u, sp, local_chain, sel.local)
    for ep in sel.reachable:
        b = endpoint_base(sp, ep)
        u.rule(f"endpoint-{b}", f"ip saddr {ep.ip} jump mark-for-masquerade")
        if sp.affinity_timeout:
            u.rule(f"endpoint-{b}", f"update @affinity-{b} {{ ip saddr }}")
        u.rule(f"endpoint-{b}", f"meta l4proto {proto} dnat to {ep.key}")
    return u


def _service_elements(u: ServiceUnit, sp: ServicePortInfo, has_any: bool, has_internal: bool,
                      has_external: bool, internal_chain: str, ext_chain: str, fw_chain: str,
                      internal_verdict: str, external_verdict: str) -> None:
    proto, port = sp.proto, sp.port
    u.element("cluster-ips", sp.cluster_ip)
    if has_internal:
        u.element("service-ips", f"{sp.cluster_ip} . {proto} . {port}", f"goto {internal_chain}")
    else:
        u.element("no-endpoint-services", f"{sp.cluster_ip} . {proto} . {port}", internal_verdict, sp.spn)
    for ip in sp.external_ips:
        if has_any:
            u.element("service-ips", f"{ip} . {proto} . {port}", f"goto {ext_chain}")
        if not has_external:
            u.element("no-endpoint-services", f"{ip} . {proto} . {port}", external_verdict, sp.spn)
    uses_fw = bool(sp.lb_vips) and bool(sp.lb_source_ranges)
    if uses_fw:
        u.ensure_chain(fw_chain)
    for ip in sp.lb_vips:
        if has_any:
            u.element("service-ips", f"{ip} . {proto} . {port}", f"goto {ext_chain}")
        if uses_fw:
            u.element("firewall-ips", f"{ip} . {proto} . {port}", f"goto {fw_chain}")
    if not has_external:
        for ip in sp.lb_vips:
            u.element("no-endpoint-services", f"{ip} . {proto} . {port}", external_verdict, sp.spn)
    if sp.node_port:
        if has_any:
            u.element("service-nodeports", f"{proto} . {sp.node_port}", f"goto {ext_chain}")
        if not has_external:
            u.element("no-endpoint-nodeports", f"{proto} . {sp.node_port}", external_verdict, sp.spn)


def _service_to_endpoints(u: ServiceUnit, sp: ServicePortInfo, chain: str, eps: tuple[EndpointInfo, ...]) -> None:
    """``writeServiceToEndpointRules``: affinity lookups, then one ``numgen`` vmap rule."""
    if sp.affinity_timeout:
        for ep in eps:
            b = endpoint_base(sp, ep)
            u.rule(chain, f"ip saddr @affinity-{b} goto endpoint-{b}")
    vmap = " , ".join(f"{i} : goto endpoint-{endpoint_base(sp, ep)}" for i, ep in enumerate(eps))
    u.rule(chain, f"numgen random mod {len(eps)} vmap {{ {vmap} }}")


# --------------------------------------------------------------------------- setup

def setup_lines(node: ProxyNode, *, recreate_base_chains: bool = True) -> list[str]:
    """``setupNFTables``: the table, base chains, top-level chains, maps and sets (maps flushed)."""
    out = [f'add table {TABLE} {{ comment "rules for kube-proxy" ; }}']
    if recreate_base_chains:   # upstream's first sync re-creates base chains so priorities can change
        for name, *_ in BASE_CHAINS:
            out += [f"add chain {TABLE} {name}", f"delete chain {TABLE} {name}"]
    for name, typ, hook, prio in BASE_CHAINS:
        out += [f"add chain {TABLE} {name} {{ type {typ} hook {hook} priority {prio} ; }}",
                f"flush chain {TABLE} {name}"]
    created: list[str] = []

    def ensure(chain: str) -> None:
        if chain not in created:
            created.append(chain)
            out.extend([f"add chain {TABLE} {chain}", f"flush chain {TABLE} {chain}"])

    for dst, src, extra in JUMP_CHAINS:
        ensure(dst)
        out.append(f"add rule {TABLE} {src} {extra + ' ' if extra else ''}jump {dst}")
    for chain in ("services", "cluster-ips-check", "masquerading", "mark-for-masquerade"):
        ensure(chain)
    mark = node.masquerade_mark
    out += [f"add rule {TABLE} mark-for-masquerade mark set mark or {mark}",
            f"add rule {TABLE} masquerading mark and {mark} == 0 return",
            f"add rule {TABLE} masquerading mark set mark xor {mark}",
            f"add rule {TABLE} masquerading masquerade fully-random",
            f'add set {TABLE} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
            f'add rule {TABLE} cluster-ips-check ip daddr @cluster-ips reject comment '
            '"Reject traffic to invalid ports of ClusterIPs"']
    if node.service_cidrs:
        out.append(f"add rule {TABLE} cluster-ips-check ip daddr {{ {','.join(node.service_cidrs)} }} drop "
                   'comment "Drop traffic to unallocated ClusterIPs"')
    out.append(f'add set {TABLE} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}')
    match_all = _nodeports_match_all(node)
    if match_all:
        out.append(f"delete set {TABLE} nodeport-ips")
    else:
        out.append(f"flush set {TABLE} nodeport-ips")
        out += [f"add element {TABLE} nodeport-ips {{ {ip} }}" for ip in _nodeport_ips(node)]
    out += [f"add map {TABLE} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
            'comment "vmap to drop or reject packets to services with no endpoints" ; }',
            f"add map {TABLE} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; "
            'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
            f'add chain {TABLE} reject-chain {{ comment "helper for @no-endpoint-services / '
            '@no-endpoint-nodeports" ; }',
            f"flush chain {TABLE} reject-chain",
            f"add rule {TABLE} reject-chain reject",
            f"add rule {TABLE} service-endpoints-check ip daddr . meta l4proto . th dport "
            "vmap @no-endpoint-services"]
    np_match = "ip daddr != 127.0.0.0/8" if match_all else "ip daddr @nodeport-ips"
    out += [f"add rule {TABLE} nodeport-endpoints-check {np_match} meta l4proto . th dport "
            "vmap @no-endpoint-nodeports",
            f"add map {TABLE} firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
            'comment "destinations that are subject to LoadBalancerSourceRanges" ; }',
            f"add rule {TABLE} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
            f"add map {TABLE} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
            'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
            f"add map {TABLE} service-nodeports {{ type inet_proto . inet_service : verdict ; "
            'comment "NodePort traffic" ; }',
            f"add rule {TABLE} services ip daddr . meta l4proto . th dport vmap @service-ips"]
    np_rule = "fib daddr type local ip daddr != 127.0.0.0/8" if match_all else "ip daddr @nodeport-ips"
    out.append(f"add rule {TABLE} services {np_rule} meta l4proto . th dport vmap @service-nodeports")
    out += [f"flush {kind} {TABLE} {name}" for kind, name in ELEMENT_CONTAINERS]
    return out


def _nodeports_match_all(node: ProxyNode) -> bool:
    """nftables mode's default --nodeport-addresses is "primary" (the node's primary IP), not all."""
    if not node.nodeport_addresses:
        return not node.node_ips
    return node.nodeports_match_all


def _nodeport_ips(node: ProxyNode) -> list[str]:
    addrs = node.nodeport_addresses or ("primary",)
    return [ip for ip in ProxyNode(node.name, node.node_ips, nodeport_addresses=addrs).nodeport_ips()
            if ip != "127.0.0.1"]   # "localhost NodePorts are not supported" in nftables mode


# --------------------------------------------------------------------------- scripts

def render_nftables(ports: Iterable[ServicePortInfo], node: ProxyNode, *, chunk: int = DEFAULT_CHUNK,
                    recreate_base_chains: bool = True) -> list[str]:
    """A cold full sync as ``nft -f`` scripts, run in order: setup (with the first ``chunk`` service
    ports), then at most ``chunk`` service ports per script."""
    return full_scripts(build_nft(ports, node), chunk=chunk, recreate_base_chains=recreate_base_chains)


def full_scripts(rules: NftRules, *, chunk: int = DEFAULT_CHUNK, recreate_base_chains: bool = True) -> list[str]:
    units = rules.units
    scripts = []
    head = setup_lines(rules.node, recreate_base_chains=recreate_base_chains)
    for start in range(0, max(len(units), 1), chunk):
        lines = head + [line for u in units[start:start + chunk] for line in u.lines]
        scripts.append("\n".join(lines) + "\n")
        head = []
    return scripts


def partial_scripts(old: NftRules | None, new: NftRules, *, chunk: int = DEFAULT_CHUNK) -> list[str]:
    """What changed between two syncs, as scripts (upstream's partial sync, with element diffs as its
    ``nftElementStorage``): changed service ports get their chains re-created (add + flush + rules),
    stale elements are deleted and new ones added, chains no longer used are flushed, and deleted in a
    last script (upstream waits a second before deleting them: kernels before 6.2 keep a chain busy
    for a moment after the map element pointing to it is gone). Empty when nothing changed."""
    if old is None or old.node != new.node:
        return full_scripts(new, chunk=chunk, recreate_base_chains=old is None)
    old_units = {u.spn: u for u in old.units}
    new_units = {u.spn: u for u in new.units}
    # only units that changed (or appeared, or went) can differ: an element belongs to one unit
    changed_new = [u for u in new.units if (o := old_units.get(u.spn)) is None or (o is not u and o != u)]
    changed_old = [u for u in old.units if (n := new_units.get(u.spn)) is None or (n is not u and n != u)]
    old_elems = {(e.container, e.key): e for u in changed_old for e in u.elements}
    new_elems = {(e.container, e.key): e for u in changed_new for e in u.elements}
    ops: list[list[str]] = []
    for u in changed_new:   # changed service ports: chains re-created, their new elements added
        elements = [e.add() for e in u.elements if (e.container, e.key) not in old_elems]
        ops.append([line for line in u.lines if not line.startswith("add element ")] + elements)
    for e_key, e in old_elems.items():   # after the chains their new values point to exist
        if e_key not in new_elems:
            ops.append([e.delete()])
        elif new_elems[e_key] != e:
            ops.append([e.delete(), new_elems[e_key].add()])
    old_chains = {c for u in changed_old for c in u.chains}
    new_chains = {c for u in changed_new for c in u.chains}
    stale = sorted(old_chains - new_chains)
    ops.append([f"flush chain {TABLE} {c}" for c in stale])
    old_sets = {s for u in changed_old for s in u.affinity_sets}
    new_sets = {s for u in changed_new for s in u.affinity_sets}
    scripts = _pack([op for op in ops if op], chunk)
    tail = [f"delete set {TABLE} {s}" for s in sorted(old_sets - new_sets)]
    tail += [f"delete chain {TABLE} {c}" for c in stale]
    if tail:
        scripts.append("\n".join(tail) + "\n")
    return scripts


def _pack(ops: list[list[str]], chunk: int) -> list[str]:
    """Group operations into scripts of at most ``chunk`` operations (lines of one op stay together)."""
    scripts = []
    for start in range(0, len(ops), chunk):
        lines = [line for op in ops[start:start + chunk] for line in op]
        if lines:
            scripts.append("\n".join(lines) + "\n")
    return scripts
