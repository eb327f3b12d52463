"""The state checks: every classic failure looked for in the kernel state of the lab (a snapshot, walked
by the simulator where a packet decides), held against the lab's declared objects (pure).

Each check returns :class:`Finding` s with a stable cause id, specific evidence lines (the link, route,
rule, entry or file line as the tool prints it) and the fix. Nothing here knows what ``podnet break``
did: a fault made by hand with ``ip``/``iptables``/``sysctl``/``conntrack`` is found the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from podnet.diagnose import catalogue
from podnet.diagnose.facts import LabFacts, NodeFacts, PodFacts, ServiceFacts
from podnet.diagnose.report import Finding, Where
from podnet.sim.choices import Chooser
from podnet.sim.packet import make_packet
from podnet.sim.parse_conntrack import render_conntrack
from podnet.sim.routing import UNSPECIFIED
from podnet.sim.snapshot import ConntrackEntry, NetnsState, Snapshot
from podnet.sim.walk import Walker
from podnet.sim.world import World
from podnet.trace.model import Disposition, StepKind
from podnet.trace.places import Places, services_from_rules

VXLAN_PORT = 8472
KNOWN_PLUGINS = frozenset({
    "bridge", "flannel", "calico", "calico-ipam", "portmap", "host-local", "loopback", "bandwidth", "tuning",
    "firewall", "sbr", "macvlan", "ipvlan", "ptp", "vlan", "host-device", "static", "dhcp", "vrf", "dummy",
    "tap", "cilium-cni", "weave-net", "aws-cni", "multus", "kube-ovn", "ovn-k8s-cni-overlay", "egress-router"})
COMPONENT_NAMES = {"kubeproxy": "kube-proxy", "flannel": "kube-flannel", "calico": "calico-node",
                   "coredns": "coredns", "netpol": "kube-network-policies"}


def finding(cause_id: str, summary: str, *, severity: str = "fault", where: Where | None = None,
            evidence: list[str] | None = None, fix: list[str] | None = None) -> Finding:
    c = catalogue.cause(cause_id)
    return Finding(cause_id, c.title, summary, severity, where, list(evidence or []), list(fix or [c.fix]))


def node_where(n: NodeFacts, dev: str | None = None) -> Where:
    return Where(n.name, f"node {n.name}", n.netns, dev)


def pod_where(p: PodFacts, dev: str | None = None) -> Where:
    return Where(p.node, f"pod {p.key}", p.netns, dev)


def in_ns(netns: str, argv: str) -> str:
    """A command as a person types it on this host."""
    return f"ip netns exec {netns} {argv}"


# -- components ------------------------------------------------------------------------------------
def check_components(facts: LabFacts) -> list[Finding]:
    out: list[Finding] = []
    for p in facts.pods:
        if not p.component or p.running:
            continue
        name = COMPONENT_NAMES.get(p.component, p.component)
        how = "its process is stopped (kill -STOP): hung, it does nothing" if p.state == "stopped" else \
            "its process is gone"
        ev = [f"kubectl -n kube-system get pod {p.name}: not running ({how})"]
        if p.log_tail:
            ev.append(f"last log line: {p.log_tail}")
        node = facts.node(p.node)
        where = node_where(node) if node and p.host_network else pod_where(p)
        if p.component == "kubeproxy":
            out.append(finding("kube-proxy-down", f"{p.name} is not running on {p.node}: the node's Service rules "
                               "are frozen as they were (new or changed Services get no rules there)",
                               where=where, evidence=ev,
                               fix=[f"restart it: podnet repair kube-proxy-down --node {p.node} (or podnet up FILE)"]))
        elif p.component == "coredns":
            continue   # judged together below
        elif p.component in ("flannel", "calico"):
            out.append(finding("cni-agent-down", f"{name} on {p.node} is not running: the node's routes and "
                               "tunnels are no longer kept", where=where, evidence=ev,
                               fix=["restart it (podnet up FILE) and read its log (podnet logs -n kube-system "
                                    f"{p.name})"]))
        else:
            out.append(finding("component-down", f"{p.key} ({name}) is not running", where=where, evidence=ev,
                               fix=["restart it (podnet up FILE) and read its log (podnet logs -n kube-system "
                                    f"{p.name})"]))
    dns = facts.components("coredns")
    down = [p for p in dns if not p.running]
    if dns and len(down) == len(dns):
        svc = facts.service_by_ip(facts.dns_ip or "")
        ev = [f"kubectl -n kube-system get pod {p.name}: not running" for p in down]
        if svc is not None:
            ev.append(f"kubectl -n kube-system get endpoints {svc.name}: "
                      + (", ".join(f"{e.ip}:{e.port}" for e in svc.endpoints) or "<none>"))
        out.append(finding("dns-down", f"no coredns replica runs ({len(down)} of {len(dns)} down): the cluster "
                           f"DNS {facts.dns_ip} has no endpoints, every lookup fails", where=pod_where(down[0]),
                           evidence=ev, fix=["get CoreDNS running again: podnet repair dns-down (or podnet up FILE); "
                                             "its logs say why it stopped"]))
    elif down:
        for p in down:
            out.append(finding("component-down", f"coredns replica {p.key} is not running (the other replicas "
                               "answer)", severity="warning", where=pod_where(p),
                               evidence=[f"kubectl -n kube-system get pod {p.name}: not running"],
                               fix=["restart it (podnet up FILE)"]))
    return out


# -- kube-proxy's rules ------------------------------------------------------------------------------
def programmed(state: NetnsState) -> set[tuple[str, int, str]]:
    """(cluster IP, port, protocol) of every Service port the node's kube-proxy rules know."""
    return {(s.cluster_ip or "", s.port, s.protocol) for s in services_from_rules(Snapshot({state.name: state}))}


def _service_rule_text(state: NetnsState, sp: ServiceFacts) -> str | None:
    for table in ("nat", "filter"):
        ch = state.iptables.chain(table, "KUBE-SERVICES")
        if ch is None:
            continue
        for r in ch.rules:
            if r.dst is not None and str(r.dst.net.network_address) == sp.cluster_ip and r.dport is not None \
                    and r.dport.contains(sp.port):
                return f"{table}: {r.text}"
    t = state.nft.table("ip", "kube-proxy")
    if t is not None and "service-ips" in t.sets:
        return f"nft ip kube-proxy map service-ips: {sp.cluster_ip} . {sp.protocol} . {sp.port} : goto ..."
    return None


def check_service_rules(facts: LabFacts, snap: Snapshot, kube_proxy_findings: list[Finding]) -> list[Finding]:
    if facts.kube_proxy_mode == "none" or not facts.services:
        return []
    out: list[Finding] = []
    per_node: dict[str, set[tuple[str, int, str]]] = {}
    for n in facts.nodes:
        if n.netns in snap.namespaces:
            per_node[n.name] = programmed(snap[n.netns])
    for n in facts.nodes:
        have = per_node.get(n.name)
        if have is None:
            continue
        missing = [sp for sp in facts.services if (sp.cluster_ip, sp.port, sp.protocol) not in have]
        if not missing:
            continue
        table = "nat/KUBE-SERVICES" if facts.kube_proxy_mode == "iptables" else "nft ip kube-proxy service-ips"
        ev = []
        for sp in missing[:6]:
            line = f"{n.name} {table}: no rule for {sp.label} {sp.cluster_ip}:{sp.port}/{sp.protocol.upper()}"
            other = next((m for m, h in per_node.items() if m != n.name and (sp.cluster_ip, sp.port, sp.protocol)
                          in h), None)
            if other is not None:
                text = _service_rule_text(snap[facts.node(other).netns], sp)  # type: ignore[union-attr]
                line += f" ({other} has it" + (f": {text})" if text else ")")
            ev.append(line)
        if len(missing) > 6:
            ev.append(f"... and {len(missing) - 6} more Service ports")
        kp = next((f for f in kube_proxy_findings if f.where is not None and f.where.node == n.name), None)
        if kp is not None:
            kp.evidence.extend(ev)
            kp.summary += f"; {len(missing)} Service port(s) have no rules there"
            continue
        names = ", ".join(sorted({sp.key for sp in missing}))
        out.append(finding("service-rules-missing", f"{n.name}'s kube-proxy runs, but the rules of {names} are "
                           f"missing there", where=node_where(n), evidence=ev,
                           fix=[f"let kube-proxy re-sync everything: podnet repair service-rules-missing --node "
                                f"{n.name} (restarts kube-proxy-{n.name}); find who deletes KUBE-* rules"]))
    return out


# -- bridge ports, sysctls, pod routes -------------------------------------------------------------
def check_bridge_ports(facts: LabFacts, snap: Snapshot) -> list[Finding]:
    if not facts.bridge_mode:
        return []
    out: list[Finding] = []
    backing = {e.pod for sp in facts.services for e in sp.endpoints}
    for p in facts.pods:
        if p.host_network or not p.host_veth:
            continue
        node = facts.node(p.node)
        if node is None or node.netns not in snap.namespaces:
            continue
        st = snap[node.netns]
        link = st.link(p.host_veth)
        if link is None:
            out.append(finding("cni-veth-detached", f"pod {p.key}'s host veth {p.host_veth} is missing on {p.node}",
                               where=node_where(node, p.host_veth),
                               evidence=[f"{in_ns(node.netns, 'ip link show')}: no {p.host_veth}"],
                               fix=[f"recreate the pod {p.key} (its sandbox lost its network)"]))
            continue
        if link.master != "cni0":
            now = f"master {link.master}" if link.master else "no master"
            out.append(finding(
                "cni-veth-detached", f"pod {p.key}'s host veth {p.host_veth} on {p.node} is not a port of cni0 "
                f"({now}): its frames never reach the bridge", where=node_where(node, p.host_veth),
                evidence=[f"{node.name}: ip -d link show {p.host_veth}: state {link.state}, {now} (expected "
                          "master cni0)", f"{node.name}: bridge link show master cni0: {p.host_veth} is not listed"],
                fix=[in_ns(node.netns, f"ip link set {p.host_veth} master cni0"),
                     in_ns(node.netns, f"bridge link set dev {p.host_veth} hairpin on")]))
            continue
        if not link.hairpin:
            serves = p.key in backing
            out.append(finding(
                "hairpin-off", f"hairpin mode is off on {p.host_veth}, the cni0 port of pod {p.key}"
                + (": it can't reach itself through its Service" if serves else ""),
                severity="fault" if serves else "warning", where=node_where(node, p.host_veth),
                evidence=[f"{node.name}: bridge -d link show dev {p.host_veth}: hairpin off (the CNI config says "
                          "hairpinMode: true)"],
                fix=[in_ns(node.netns, f"bridge link set dev {p.host_veth} hairpin on")]))
    return out


def check_sysctls(facts: LabFacts, snap: Snapshot) -> list[Finding]:
    out: list[Finding] = []
    for n in facts.nodes:
        st = snap.namespaces.get(n.netns)
        if st is None:
            continue
        key = "net.bridge.bridge-nf-call-iptables"
        if facts.bridge_mode and key in st.sysctls and not st.bridge_nf_call_iptables:
            out.append(finding(
                "br-netfilter-off", f"{n.name} bridges pod-to-pod frames past iptables ({key} = 0): replies of "
                "same-node Service connections are not un-DNATed, NetworkPolicy misses same-node traffic",
                where=node_where(n, "cni0"), evidence=[f"{in_ns(n.netns, 'sysctl ' + key)}: {key} = 0"],
                fix=[in_ns(n.netns, f"sysctl -w {key}=1")]))
        if "net.ipv4.ip_forward" in st.sysctls and not st.ip_forward:
            out.append(finding("ip-forward-off", f"{n.name} does not forward IPv4: pods can't leave the node",
                               where=node_where(n), evidence=[f"{n.name}: net.ipv4.ip_forward = 0"],
                               fix=[in_ns(n.netns, "sysctl -w net.ipv4.ip_forward=1")]))
    return out


def check_pod_routes(facts: LabFacts, snap: Snapshot) -> list[Finding]:
    out: list[Finding] = []
    for p in facts.pods:
        if p.host_network or p.netns not in snap.namespaces:
            continue
        node = facts.node(p.node)
        st = snap[p.netns]
        defaults = [r for r in st.table("main") if r.dst.prefixlen == 0 and r.family == "inet"]
        routes = "; ".join(_route_line(r) for r in st.table("main") if r.family == "inet") or "(none)"
        if not defaults:
            out.append(finding(
                "cni-pod-route", f"pod {p.key} has no default route: only its own subnet is reachable",
                where=pod_where(p, "eth0"), evidence=[f"{p.key}: ip route: {routes}"],
                fix=["recreate the pod with isDefaultGateway in the CNI config; by hand: "
                     + in_ns(p.netns, f"ip route replace default via {node.gateway if node else '<gateway>'} dev eth0")
                     if facts.bridge_mode else "recreate the pod (calico-node's CNI sets default via 169.254.1.1)"]))
            continue
        gw = defaults[0].gateway
        if facts.bridge_mode and node is not None and str(gw) != node.gateway:
            out.append(finding(
                "cni-pod-route", f"pod {p.key}'s default route goes via {gw}, which is not its node's bridge "
                f"{node.gateway}", where=pod_where(p, "eth0"),
                evidence=[f"{p.key}: ip route: {routes}", f"{node.name}: cni0 is {node.gateway} (the pods' gateway)"],
                fix=[in_ns(p.netns, f"ip route replace default via {node.gateway} dev eth0")]))
    return out


def _route_line(r) -> str:
    dst = "default" if r.dst.prefixlen == 0 else str(r.dst)
    s = dst
    if r.gateway is not None:
        s += f" via {r.gateway}"
    if r.dev:
        s += f" dev {r.dev}"
    return s


# -- MTU ------------------------------------------------------------------------------------------
def _blocked_icmp(world: World, places: Places, node_ns: str, pod_ip: str) -> str | None:
    """The rule that drops the ICMP 'fragmentation needed' a node sends to one of its pods, if one does."""
    pkt = make_packet(UNSPECIFIED, pod_ip, "icmp", size=576)
    pkt.icmp_type, pkt.icmp_code, pkt.icmp_id = 3, 4, None
    return _walk_drop(world, places, node_ns, pkt)


def _walk_drop(world: World, places: Places, ns: str, pkt) -> str | None:
    w = Walker(world, places.namer, Chooser())
    try:
        r = w.run(lambda: w.originate(ns, pkt), pkt)
    except Exception:   # a snapshot the walker cannot follow: no verdict either way
        return None
    if r.disposition not in (Disposition.DROPPED, Disposition.REJECTED):
        return None
    for hop in reversed(r.hops):
        for step in reversed(hop.steps):
            if step.kind == StepKind.NETFILTER and step.verdict in ("DROP", "REJECT") and step.rules:
                ref = step.rules[-1]
                return f"{hop.node} {ref.label}: {ref.text or ref.target}"
    return f"{places.namer(r.end_ns or ns)[0]}: {r.summary}"


def path_mtu(facts: LabFacts, st: NetnsState) -> tuple[int | None, str]:
    """The MTU pod traffic leaving this node must fit: flannel.1's (vxlan) or eth0's."""
    if facts.backend == "vxlan":
        link = st.link("flannel.1")
        if link is not None:
            return link.mtu, "flannel.1"
    link = st.link("eth0")
    return (link.mtu, "eth0") if link is not None else (None, "")


def check_mtu(facts: LabFacts, snap: Snapshot, world: World, places: Places) -> list[Finding]:
    out: list[Finding] = []
    for n in facts.nodes:
        st = snap.namespaces.get(n.netns)
        if st is None:
            continue
        limit, dev = path_mtu(facts, st)
        if limit is None:
            continue
        big = []
        for p in facts.pods:
            if p.host_network or p.node != n.name or p.netns not in snap.namespaces:
                continue
            eth0 = snap[p.netns].link("eth0")
            if eth0 is not None and eth0.mtu > limit:
                big.append((p, eth0.mtu))
        if not big:
            continue
        blocked = _blocked_icmp(world, places, n.netns, big[0][0].ip)
        pods = ", ".join(f"{p.key} eth0 {m}" for p, m in big[:4]) + (" ..." if len(big) > 4 else "")
        ev = [f"{n.name}: pods' MTU is larger than the path: {pods}; {dev} is {limit}"
              + (" (VXLAN takes 50 bytes of the underlay's MTU)" if dev == "flannel.1" else "")]
        cni0 = st.link("cni0")
        if cni0 is not None and cni0.mtu > limit:
            ev.append(f"{n.name}: cni0 mtu {cni0.mtu}")
        fix = [f"set the pod MTU to {limit}: the CNI's MTU (flannel: FLANNEL_MTU in subnet.env; podnet repair "
               "mtu-mismatch sets eth0, the veths and cni0)"]
        if blocked:
            ev.append(f"ICMP fragmentation-needed from {n.name} to its pods is dropped: {blocked}")
            fix.append("let ICMP fragmentation-needed through (remove the rule) so path MTU discovery works")
            summary = (f"pods on {n.name} send packets up to {big[0][1]} B into a {limit}-byte path, and the "
                       "ICMP 'fragmentation needed' that would tell them is dropped: large packets vanish")
            out.append(finding("mtu-mismatch", summary, where=node_where(n, dev), evidence=ev, fix=fix))
        else:
            ev.append(f"ICMP fragmentation-needed from {n.name} reaches the pods: path MTU discovery saves it "
                      "(at the cost of a retransmission per connection)")
            out.append(finding("mtu-mismatch", f"pods on {n.name} use MTU {big[0][1]} over a {limit}-byte path "
                               "(works only while ICMP fragmentation-needed gets through)", severity="warning",
                               where=node_where(n, dev), evidence=ev, fix=fix))
    return out


# -- the overlay: VXLAN between every pair of nodes ---------------------------------------------------
def check_vxlan(facts: LabFacts, world: World, places: Places) -> list[Finding]:
    if facts.backend != "vxlan":
        return []
    drops: dict[str, list[str]] = {}
    where: dict[str, NodeFacts] = {}
    for a in facts.nodes:
        for b in facts.nodes:
            if a is b or a.netns not in world or b.netns not in world:
                continue
            pkt = make_packet(UNSPECIFIED, b.ip, "udp", dport=VXLAN_PORT, sport=40000)
            rule = _walk_drop(world, places, a.netns, pkt)
            if rule is None:
                continue
            at = rule.split(" ", 1)[0]
            node = next((n for n in facts.nodes if n.name == at), a)
            drops.setdefault(rule, []).append(f"{a.name} -> {b.name}")
            where.setdefault(rule, node)
    out = []
    for rule, pairs in drops.items():
        node = where[rule]
        text = rule.split(": ", 1)[1] if ": " in rule else rule
        fix = [f"open UDP {VXLAN_PORT} between the nodes"]
        if text.startswith("-A "):
            chain_rule = text[3:]
            table = rule.split(" ", 2)[1].split("/", 1)[0] if " " in rule else "filter"
            fix.append(in_ns(node.netns, f"iptables -t {table} -D {chain_rule}"))
        out.append(finding("vxlan-blocked", f"VXLAN (UDP {VXLAN_PORT}) is dropped on {node.name}: "
                           f"{', '.join(pairs)} can't carry pod traffic", where=node_where(node, "eth0"),
                           evidence=[f"a VXLAN packet {pairs[0]} (UDP {VXLAN_PORT}) is dropped by {rule}"], fix=fix))
    return out


# -- CNI configuration files ------------------------------------------------------------------------------
def cni_problems(files: dict[str, str] | None, expected_type: str, pod_mtu: int) -> list[str]:
    """What is wrong with a node's /etc/cni/net.d (the runtime uses the first file in name order)."""
    if not files:
        return ["/etc/cni/net.d is empty: the kubelet reports NetworkPluginNotReady (cni config uninitialized)"]
    usable = sorted(f for f in files if f.endswith((".conf", ".conflist", ".json")))
    if not usable:
        return [f"/etc/cni/net.d has no .conf/.conflist file (only {', '.join(sorted(files))})"]
    name = usable[0]
    text = files[name]
    try:
        conf = json.loads(text)
    except ValueError as e:
        return [f"/etc/cni/net.d/{name}: invalid JSON ({e})"]
    if not isinstance(conf, dict):
        return [f"/etc/cni/net.d/{name}: not a JSON object"]
    plugins = conf.get("plugins") if name.endswith(".conflist") else [conf]
    if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) for p in plugins):
        return [f"/etc/cni/net.d/{name}: no plugins list"]
    bad = []
    for p in plugins:
        t = p.get("type")
        if not isinstance(t, str) or not t:
            bad.append(f"/etc/cni/net.d/{name}: a plugin without \"type\"")
        elif t not in KNOWN_PLUGINS:
            bad.append(f"/etc/cni/net.d/{name}: plugin type \"{t}\" does not exist (no /opt/cni/bin/{t}): "
                       "the runtime cannot set up pods")
    if bad:
        return bad
    first = plugins[0].get("type")
    if first != expected_type:
        bad.append(f"/etc/cni/net.d/{name}: the first plugin is \"{first}\", but this cluster's CNI is "
                   f"\"{expected_type}\"")
    delegate = plugins[0].get("delegate") if first == "flannel" else None
    if isinstance(delegate, dict):
        if delegate.get("hairpinMode") is False:
            bad.append(f"/etc/cni/net.d/{name}: delegate hairpinMode false: pods can't reach themselves through "
                       "a Service")
        if delegate.get("isDefaultGateway") is False:
            bad.append(f"/etc/cni/net.d/{name}: delegate isDefaultGateway false: new pods get no default route")
        mtu = delegate.get("mtu")
        if isinstance(mtu, int) and mtu != pod_mtu:
            bad.append(f"/etc/cni/net.d/{name}: delegate mtu {mtu}, but the pod network's MTU is {pod_mtu}")
    return bad


def check_cni_config(facts: LabFacts) -> list[Finding]:
    out: list[Finding] = []
    for n in facts.nodes:
        if n.name not in facts.cni_configs:
            continue
        problems = cni_problems(facts.cni_configs[n.name], facts.cni_expected_type, facts.pod_mtu)
        if problems:
            out.append(finding("cni-config", f"{n.name}'s CNI configuration is broken: pods running there keep "
                               "working, new pods get no network", where=node_where(n),
                               evidence=[f"{n.name}: {p}" for p in problems],
                               fix=["restore the CNI config (the CNI DaemonSet's ConfigMap; podnet repair cni-config "
                                    f"--node {n.name})"]))
    return out


# -- resolv.conf --------------------------------------------------------------------------------------------
def check_resolv_conf(facts: LabFacts) -> list[Finding]:
    from podnet.dns.resolve import parse_resolv_conf

    if facts.dns_ip is None:
        return []
    out: list[Finding] = []
    for ns, text in facts.resolv_confs.items():
        p = facts.pod_by_netns(ns)
        if p is None:
            continue
        want_text = facts.resolv_expected.get(ns)
        if text is None:
            out.append(finding("dns-resolv-conf", f"pod {p.key} has no resolv.conf of its own: it uses the "
                               "host's, not the cluster DNS", where=pod_where(p),
                               evidence=[f"/etc/netns/{ns}/resolv.conf is missing"],
                               fix=[f"recreate the pod {p.key} (the kubelet writes its resolv.conf)"]))
            continue
        have = parse_resolv_conf(text)
        want = parse_resolv_conf(want_text) if want_text else None
        lines = "; ".join(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
        problems = []
        if not have.nameservers or have.nameservers[0] != facts.dns_ip:
            problems.append(f"nameserver {have.nameservers[0] if have.nameservers else '(none)'}, but the cluster "
                            f"DNS is {facts.dns_ip} (kube-system/kube-dns)")
        if want is not None and have.search[:1] != want.search[:1]:
            problems.append(f"search {' '.join(have.search) or '(none)'}: short names of its namespace won't "
                            f"resolve (want {' '.join(want.search)})")
        if problems:
            out.append(finding("dns-resolv-conf", f"pod {p.key}'s resolv.conf does not point at the cluster DNS"
                               if "nameserver" in problems[0] else f"pod {p.key}'s resolv.conf search path is wrong",
                               where=pod_where(p), evidence=[f"{p.key}: cat /etc/resolv.conf: {lines}",
                                                             *problems],
                               fix=["fix the kubelet's --cluster-dns / the pod's dnsPolicy and recreate the pod "
                                    f"(podnet repair dns-resolv-conf --pod {p.key} rewrites it)"]))
    return out


# -- conntrack -----------------------------------------------------------------------------------------------
def stale_entries(facts: LabFacts, state: NetnsState) -> list[tuple[ConntrackEntry, ServiceFacts]]:
    """UDP/SCTP entries DNATed from a Service to an address that is none of its endpoints."""
    out = []
    for e in state.conntrack:
        if e.proto not in ("udp", "sctp") or not e.dnat:
            continue
        sp = facts.service_by_ip(str(e.orig.dst), e.orig.dport, e.proto)
        if sp is None:
            continue
        if any(ep.ip == str(e.reply.src) and ep.port == e.reply.sport for ep in sp.endpoints):
            continue
        out.append((e, sp))
    return out


def check_conntrack(facts: LabFacts, snap: Snapshot) -> list[Finding]:
    out: list[Finding] = []
    for n in facts.nodes:
        st = snap.namespaces.get(n.netns)
        if st is None:
            continue
        for e, sp in stale_entries(facts, st):
            gone = str(e.reply.src)
            owner = facts.pod_by_ip(gone)
            who = f"pod {owner.key}, not ready" if owner else "no pod has this address any more"
            eps = ", ".join(f"{x.ip}:{x.port}" for x in sp.endpoints) or "<none>"
            f = finding(
                "stale-conntrack", f"{n.name} keeps sending {e.proto.upper()} {e.orig.src}:{e.orig.sport} -> "
                f"{sp.label} to {gone}:{e.reply.sport}, which is no endpoint ({who})", where=node_where(n),
                evidence=[f"{n.name}: conntrack -L: {render_conntrack((e,)).strip()}",
                          f"kubectl get endpoints {sp.name} -n {sp.namespace}: {eps}"],
                fix=[in_ns(n.netns, f"conntrack -D -p {e.proto} --orig-dst {e.orig.dst} --reply-src {gone}")])
            f.data = {"proto": e.proto, "src": str(e.orig.src), "sport": e.orig.sport, "dst": str(e.orig.dst),
                      "dport": e.orig.dport}
            out.append(f)
    return out


# -- BGP ------------------------------------------------------------------------------------------------------
def check_bgp(facts: LabFacts) -> list[Finding]:
    doc = facts.bgp
    if not doc:
        return []
    out: list[Finding] = []
    seen: set[frozenset[str]] = set()
    for sp in doc.get("speakers", []):
        for peer in sp.get("peers", []):
            if peer.get("established"):
                continue
            pair = frozenset({sp["name"], peer["name"]})
            if pair in seen:
                continue
            seen.add(pair)
            node = facts.node(sp["name"]) or facts.node(peer["name"])
            where = node_where(node) if node else Where(sp["name"], f"router {sp['name']}", sp.get("netns", ""))
            state = peer.get("info") or peer.get("state") or "down"
            reason = peer.get("reason") or "not Established"
            out.append(finding(
                "bgp-session-down", f"BGP session {sp['name']} <-> {peer['name']} ({peer['address']}) is not "
                f"Established: {reason}", where=where,
                evidence=[f"{sp['name']}: birdc show protocols: {peer.get('protocol', '')} {state}",
                          *( [f"last error: {peer['lastError']}"] if peer.get("lastError") else [])],
                fix=[_bgp_fix(reason)]))
    return out


def _bgp_fix(reason: str) -> str:
    if "TCP 179 blocked" in reason:
        return "remove the firewall rule that drops TCP 179 (podnet repair bgp-session-down)"
    if "disabled" in reason:
        return "enable the session: birdc enable <protocol> (podnet repair bgp-session-down)"
    if "not running" in reason:
        return "restart calico-node / the router's BIRD (podnet up FILE)"
    return catalogue.cause("bgp-session-down").fix


# -- all of them -------------------------------------------------------------------------------------------------
Check = Callable[[], list[Finding]]


def run_checks(facts: LabFacts, snap: Snapshot, world: World, places: Places) -> list[Finding]:
    comps = check_components(facts)
    kube_proxy = [f for f in comps if f.cause == "kube-proxy-down"]
    checks: list[Check] = [
        lambda: check_service_rules(facts, snap, kube_proxy),
        lambda: check_bridge_ports(facts, snap),
        lambda: check_sysctls(facts, snap),
        lambda: check_pod_routes(facts, snap),
        lambda: check_mtu(facts, snap, world, places),
        lambda: check_vxlan(facts, world, places),
        lambda: check_cni_config(facts),
        lambda: check_resolv_conf(facts),
        lambda: check_conntrack(facts, snap),
        lambda: check_bgp(facts),
    ]
    out = list(comps)
    for c in checks:
        out.extend(c())
    return out
