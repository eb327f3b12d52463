"""The walker: one packet over a snapshot, as Linux would move it. Pure.

From a socket (``originate``) or a wire (``enter``), the packet goes through: source routing
(policy rules, longest prefix, onlink, preferred source), netfilter hooks in kernel order with
conntrack (existing entries win over rules, NAT bindings, reverse NAT on replies), MTU checks with
DF, neighbour resolution (the neighbour table, else who would answer ARP on that segment, proxy
ARP included), veth pairs across namespaces, Linux bridges (FDB, hairpin, flooding, br_netfilter
hooks with physdev), VXLAN encapsulation through the device's FDB (outer headers and size) and
decapsulation at the remote VTEP, and finally a listening socket, or not.

Every decision becomes a :class:`~podnet.trace.model.Step` naming what decided it; the walk ends
with a disposition from the closed set in ``podnet.trace.model``. Random choices (``statistic``,
``numgen``) go through the :class:`~podnet.sim.choices.Chooser`, so the caller can enumerate them.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from podnet.sim.choices import Chooser, Decision
from podnet.sim.conntrack_sim import CtEntry, CtInfo, CtTable, packet_tuple
from podnet.sim.netfilter import NAT_PRIO, ChainRun, HookCtx, nat_dst, nat_src
from podnet.sim.packet import VXLAN_OVERHEAD, Packet, is_loopback
from podnet.sim.routing import UNSPECIFIED, RouteResult, route_text
from podnet.sim.snapshot import IPAddress, Link, Route
from podnet.sim.world import Namer, NsView, World
from podnet.trace.model import (
    Disposition,
    DropReason,
    Encapsulation,
    Hop,
    NatChange,
    RuleRef,
    Step,
    StepKind,
)

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
MAX_STEPS = 400
MAX_ARP_DEPTH = 4


class End(Exception):
    def __init__(self, disposition: Disposition, summary: str, reason: DropReason | None = None) -> None:
        super().__init__(summary)
        self.disposition = disposition
        self.summary = summary
        self.reason = reason


@dataclass(slots=True)
class Visit:
    """The packet's conntrack facts while it is in one namespace."""

    ns: str
    ct: CtInfo = field(default_factory=lambda: CtInfo(active=False))
    pending: CtEntry | None = None
    looked_up: bool = False
    nat_done: set[str] = field(default_factory=set)


@dataclass(slots=True)
class WalkResult:
    disposition: Disposition
    reason: DropReason | None
    summary: str
    hops: tuple[Hop, ...]
    final: Packet
    end_ns: str | None
    decisions: tuple[Decision, ...]
    warnings: tuple[str, ...]
    endpoint: str | None                   # the first DNAT's destination (a service endpoint)
    ct: dict[str, CtTable]
    delivered_to: Packet | None = None     # the packet as the receiving socket saw it
    sent: Packet | None = None             # the packet as it was sent (source address chosen)


def _fmt_mac(mac: str | None) -> str:
    return mac or "?"


class Walker:
    def __init__(self, world: World, namer: Namer, chooser: Chooser | None = None,
                 ct: dict[str, CtTable] | None = None, reply: bool = False) -> None:
        self.world = world
        self.namer = namer
        self.chooser = chooser or Chooser()
        self.ct = ct if ct is not None else {}
        self.reply = reply
        self.hops: list[tuple[str, list[Step]]] = []
        self.warnings: list[str] = []
        self.recent: dict[str, dict[str, set[IPAddress]]] = {}
        self.visit = Visit("")
        self.endpoint: str | None = None
        self.nsteps = 0
        self.pkt: Packet | None = None
        self.where: str | None = None
        self.final: Packet | None = None
        self.delivered: Packet | None = None
        self.sent: Packet | None = None

    # -- recording -----------------------------------------------------------------------------------
    def add(self, ns: str, step: Step) -> None:
        self.nsteps += 1
        if self.nsteps > MAX_STEPS:
            raise End(Disposition.LOOP, f"more than {MAX_STEPS} steps: the packet loops", None)
        if not self.hops or self.hops[-1][0] != ns:
            self.hops.append((ns, []))
        self.hops[-1][1].append(step)

    def place(self, ns: str) -> str:
        return self.namer(ns)[1]

    def run(self, start: Callable[[], None], pkt: Packet) -> WalkResult:
        self.pkt = pkt
        try:
            start()
            raise End(Disposition.UNKNOWN, "the walk ended without a disposition")
        except End as e:
            disp, reason, summary = e.disposition, e.reason, e.summary
        if disp is not Disposition.DELIVERED and self.where is None and self.hops:
            self.where = self.hops[-1][0]
        hops = tuple(Hop(self.namer(ns)[0], ns, self.namer(ns)[1], tuple(steps)) for ns, steps in self.hops)
        return WalkResult(disp, reason, summary, hops, self.final or pkt, self.where, tuple(self.chooser.made),
                          tuple(dict.fromkeys(self.warnings)), self.endpoint, self.ct, self.delivered, self.sent)

    def end(self, ns: str, pkt: Packet, disp: Disposition, summary: str, reason: DropReason | None = None,
            step_kind: StepKind = StepKind.DROP) -> End:
        self.where = ns
        self.final = pkt
        self.add(ns, Step(step_kind, summary, packet=pkt.summary()))
        return End(disp, summary, reason)

    # -- entry points ------------------------------------------------------------------------------
    def originate(self, ns: str, pkt: Packet, oif: str | None = None, kernel: bool = False) -> None:
        """A socket in ``ns`` sends ``pkt`` (``kernel``: the kernel itself, e.g. a tunnel's outer packet)."""
        view = self.world.ns(ns)
        self.visit = Visit(ns)
        src = None if pkt.src == UNSPECIFIED else pkt.src
        rr = view.fib.lookup(pkt.dst, src=src, iif="lo", oif=oif, mark=pkt.mark, proto=pkt.proto,
                             sport=pkt.sport, dport=pkt.dport)
        route, dev, nexthop = self._route_target(ns, rr, pkt, forward=False)
        if pkt.src == UNSPECIFIED:
            chosen = view.fib.select_source(dev, pkt.dst, route)
            if chosen is None:
                raise self.end(ns, pkt, Disposition.NO_ROUTE, f"no source address for {pkt.dst} on {dev}")
            pkt.src = chosen
        if not kernel:
            self.sent = pkt.copy()
            self.add(ns, Step(StepKind.ORIGINATE, f"{self.place(ns)} sends {pkt.summary()}, {pkt.size} B",
                              packet=pkt.summary()))
        self._route_step(ns, rr, pkt, "route")
        if route.type == "local":
            self._local_out(ns, pkt)
            return
        mtu, learned = view.path_mtu(pkt.dst, route.mtu, dev)
        if pkt.size > mtu and pkt.df and not kernel:
            why = f"learned path MTU {mtu} to {pkt.dst} (ip route show cached)" if learned else f"mtu {mtu}"
            raise self.end(ns, pkt, Disposition.TOO_BIG,
                           f"too big at {dev}: {pkt.size} B > {why} with DF set (the socket gets EMSGSIZE)")
        dst0, mark0 = pkt.dst, pkt.mark
        self.nf(ns, "OUTPUT", pkt, None, dev)
        if pkt.dst != dst0 or pkt.mark != mark0:      # ip_route_me_harder
            rr = view.fib.lookup(pkt.dst, src=pkt.src, iif="lo", oif=oif, mark=pkt.mark, proto=pkt.proto,
                                 sport=pkt.sport, dport=pkt.dport)
            route, dev, nexthop = self._route_target(ns, rr, pkt, forward=False)
            self._route_step(ns, rr, pkt, "rerouted after OUTPUT")
            if route.type == "local":
                self._local_out(ns, pkt, after_output=True)
                return
        self.nf(ns, "POSTROUTING", pkt, None, dev)
        mtu = route.mtu or view.mtu(dev)
        if pkt.size > mtu:
            if pkt.df:
                raise self.end(ns, pkt, Disposition.TOO_BIG, f"too big at {dev}: {pkt.size} B > mtu {mtu} with DF set")
            self.add(ns, Step(StepKind.MTU, f"{pkt.size} B > mtu {mtu} of {dev}: fragmented "
                              f"({-(-pkt.size // mtu)} fragments)", dev_out=dev))
        self.transmit(ns, dev, nexthop, pkt)

    def enter(self, ns: str, dev: str, pkt: Packet) -> None:
        """``pkt`` arrives from outside on ``dev`` of ``ns`` (an external client's packet)."""
        view = self.world.ns(ns)
        link = view.links.get(dev)
        if link is None:
            raise self.end(ns, pkt, Disposition.UNKNOWN, f"{self.place(ns)} has no interface {dev}")
        pkt.dst_mac = link.mac
        self.sent = pkt.copy()
        self.add(ns, Step(StepKind.ORIGINATE, f"{pkt.summary()}, {pkt.size} B arrives on {dev} of {self.place(ns)}",
                          dev_in=dev, packet=pkt.summary()))
        self.ingress(ns, dev, pkt, new_visit=True)

    # -- routing helpers ---------------------------------------------------------------------------
    def _route_target(self, ns: str, rr: RouteResult, pkt: Packet, forward: bool) -> tuple[Route, str, IPAddress]:
        r = rr.route
        if r is None:
            if rr.action in ("blackhole",):
                raise self.end(ns, pkt, Disposition.DROPPED, f"rule {rr.rule.priority if rr.rule else ''} "
                               f"blackholes {pkt.dst}", DropReason.BLACKHOLE_ROUTE)
            raise self.end(ns, pkt, Disposition.NO_ROUTE, f"no route to {pkt.dst} in {self.place(ns)}"
                           + (f" (rule {rr.rule.priority}: {rr.action})" if rr.rule and rr.action != "lookup" else ""))
        if r.type == "blackhole":
            raise self.end(ns, pkt, Disposition.DROPPED, f"blackhole route {route_text(r)}", DropReason.BLACKHOLE_ROUTE)
        if r.type in ("unreachable", "prohibit"):
            raise self.end(ns, pkt, Disposition.NO_ROUTE, f"{r.type} route {route_text(r)} "
                           f"({'ICMP sent back' if forward else 'the socket gets an error'})")
        if r.type not in ("unicast", "local", "broadcast"):
            raise self.end(ns, pkt, Disposition.UNKNOWN, f"route type {r.type} is not modelled ({route_text(r)})",
                           DropReason.UNSUPPORTED)
        if r.type in ("local", "broadcast"):
            return r, "lo", pkt.dst
        if r.nexthops:
            nh = r.nexthops[0]
            if len(r.nexthops) > 1:
                self.warnings.append(f"{self.place(ns)}: multipath route {route_text(r)}: the first next hop is shown")
            return r, nh.dev or r.dev or "", nh.gateway or pkt.dst
        return r, r.dev or "", r.gateway or pkt.dst

    def _route_step(self, ns: str, rr: RouteResult, pkt: Packet, what: str) -> None:
        r = rr.route
        assert r is not None
        rule = ""
        if rr.rule is not None and rr.table not in ("main", "local"):
            rule = f" (ip rule {rr.rule.priority} -> table {rr.table})"
        self.add(ns, Step(StepKind.ROUTE, f"{what} {pkt.dst}: {route_text(r)}{rule}", entry=route_text(r),
                          dev_out=r.dev))

    # -- netfilter -----------------------------------------------------------------------------------
    def ct_table(self, ns: str) -> CtTable:
        t = self.ct.get(ns)
        if t is None:
            t = self.ct[ns] = CtTable(self.world.ns(ns).conntrack)
        return t

    def _ct_in(self, ns: str, view: NsView, pkt: Packet) -> None:
        v = self.visit
        if v.looked_up:
            return
        v.looked_up = True
        if v.ct.state == "UNTRACKED":
            return
        if not view.ct_active:
            v.ct = CtInfo(state="NEW", active=False)
            return
        tup = packet_tuple(pkt)
        hit = self.ct_table(ns).lookup(pkt.proto, tup)
        if hit is not None:
            entry, is_reply = hit
            state = "ESTABLISHED" if is_reply or "SEEN_REPLY" in entry.status else "NEW"
            if is_reply:
                entry.status.add("SEEN_REPLY")
                entry.status.discard("UNREPLIED")
            v.ct = CtInfo(state=state, entry=entry, reply=is_reply, active=True, confirmed=True)
            origin = "from the snapshot" if entry.source == "snapshot" else "made by this flow"
            self.add(ns, Step(StepKind.CONNTRACK, f"conntrack: {'reply to' if is_reply else 'existing'} entry "
                              f"({origin}) -> {state}" + ("" if is_reply else "; nat rules are not consulted"),
                              entry=entry.describe()))
            return
        if pkt.proto == "tcp" and {"SYN", "ACK"} <= pkt.tcp_flags:
            v.ct = CtInfo(state="INVALID", entry=None, active=True)
            self.add(ns, Step(StepKind.CONNTRACK, "conntrack: a SYN-ACK without a connection -> INVALID"))
            return
        entry = CtEntry(proto=pkt.proto, orig=tup)
        v.ct = CtInfo(state="NEW", entry=entry, active=True)
        v.pending = entry

    def _ct_binding(self, ns: str, hook: str, pkt: Packet) -> None:
        """NAT from an existing entry (the nat table only sees a connection's first packet)."""
        v = self.visit
        e = v.ct.entry
        if e is None or v.pending is not None or hook in v.nat_done or e.reply is None:
            return
        v.nat_done.add(hook)
        change: NatChange | None = None
        if hook in ("PREROUTING", "OUTPUT"):
            if not v.ct.reply and e.dnat:
                change = nat_dst(pkt, e.reply.src, e.reply.sport, "dnat")
            elif v.ct.reply and e.snat:
                change = nat_dst(pkt, e.orig.src, e.orig.sport, "un-snat")
        else:
            if not v.ct.reply and e.snat:
                change = nat_src(pkt, e.reply.dst, e.reply.dport, "snat")
            elif v.ct.reply and e.dnat:
                change = nat_src(pkt, e.orig.dst, e.orig.dport, "un-dnat")
        if change is not None and change.before != change.after:
            self.add(ns, Step(StepKind.NAT, f"conntrack {change.kind.upper()}: {change.field} {change.before} -> "
                              f"{change.after}", nat=change, entry=e.describe(), packet=pkt.summary()))
            if change.kind == "dnat" and self.endpoint is None:
                self.endpoint = change.after

    def _ct_confirm(self, ns: str, pkt: Packet) -> None:
        v = self.visit
        if v.pending is not None:
            self.ct_table(ns).confirm(v.pending, packet_tuple(pkt))
            v.pending = None
            v.ct.confirmed = True

    def nf(self, ns: str, hook: str, pkt: Packet, in_dev: str | None, out_dev: str | None,
           physdev_in: str | None = None, physdev_out: str | None = None, bridged: bool = False) -> None:
        view = self.world.ns(ns)
        v = self.visit
        nat_hook = hook in NAT_PRIO
        binding_done = False
        ctx: HookCtx | None = None
        for e in view.plan[hook]:
            if e.kind == "conntrack":
                self._ct_in(ns, view, pkt)
                continue
            if e.nat and v.pending is None:
                # not the first packet of a tracked connection: no nat chains; an existing entry's
                # binding applies instead (untracked and INVALID packets get no NAT at all)
                if v.ct.entry is not None and not binding_done:
                    self._ct_binding(ns, hook, pkt)
                    binding_done = True
                continue
            if ctx is None:
                ctx = HookCtx(hook=hook, in_dev=in_dev, out_dev=out_dev, fib=view.fib, chooser=self.chooser,
                              ct=v.ct, physdev_in=physdev_in, physdev_out=physdev_out, bridged=bridged,
                              src_mac=pkt.src_mac, recent=self.recent.setdefault(ns, {}),
                              masquerade_src=view.masquerade_source)
            ctx.ct = v.ct
            if e.kind == "iptables":
                run = view.ipt.run(e.table, hook, pkt, ctx)
            else:
                run = view.nft[e.table].run(e.chain, pkt, ctx)
            if ctx.warnings:
                self.warnings.extend(ctx.warnings)
                ctx.warnings.clear()
            if run is None:
                continue
            self._nf_step(ns, hook, run, pkt, in_dev, out_dev)
            if run.verdict == "DROP":
                reason = DropReason.CHAIN_POLICY if run.decided_by and run.decided_by.num == 0 else DropReason.RULE
                raise self.end(ns, pkt, Disposition.DROPPED,
                               f"dropped by {self._ref_text(run.decided_by)}{self._why(run)}", reason)
            if run.verdict == "REJECT":
                raise self.end(ns, pkt, Disposition.REJECTED,
                               f"rejected by {self._ref_text(run.decided_by)}{self._why(run)} ({run.reject_with})")
            if run.verdict == "QUEUE":
                raise self.end(ns, pkt, Disposition.UNKNOWN,
                               f"queued to user space by {self._ref_text(run.decided_by)} (not modelled)",
                               DropReason.UNSUPPORTED)
        if nat_hook and not binding_done:
            self._ct_binding(ns, hook, pkt)
        if hook in ("POSTROUTING", "INPUT"):
            self._ct_confirm(ns, pkt)

    @staticmethod
    def _why(run: ChainRun) -> str:
        """When the deciding rule has no comment, the nearest comment or note on the way to it."""
        d = run.decided_by
        if d is None or d.comment:
            return ""
        for r in reversed(decisive(run.rules)):
            if r is d:
                continue
            if r.note and '"' in r.note:
                return f" (via {r.note})"
            if r.comment and r.chain not in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"):
                return f' (via {r.chain} #{r.num} "{r.comment}")'
        return ""

    @staticmethod
    def _ref_text(ref: RuleRef | None) -> str:
        if ref is None:
            return "?"
        if ref.num == 0:
            return f"{ref.table}/{ref.chain} policy {ref.target}"
        c = f' "{ref.comment}"' if ref.comment else ""
        return f"{ref.table}/{ref.chain} #{ref.num}{c}"

    def _nf_step(self, ns: str, hook: str, run: ChainRun, pkt: Packet, in_dev: str | None,
                 out_dev: str | None) -> None:
        rules = run.rules
        eff = _EFFECT_TARGETS
        shown = decisive(rules) if any(r.target in eff or r.note or r.num == 0 for r in rules) else []
        if shown:
            state = ""
            v = self.visit
            if v.ct.active and hook in ("PREROUTING", "OUTPUT") and run.nat:
                state = f"   [conntrack {v.ct.state}]"
            self.add(ns, Step(StepKind.NETFILTER, f"{hook}: {path_text(run.table, shown)}{state}",
                              rules=tuple(run.rules), verdict=run.verdict or "ACCEPT", dev_in=in_dev, dev_out=out_dev))
        elif run.rules:
            # rules matched but decided nothing (jumps into chains that returned): keep them for --verify
            self.add(ns, Step(StepKind.NETFILTER, "", rules=tuple(run.rules), verdict=run.verdict or "ACCEPT",
                              dev_in=in_dev, dev_out=out_dev))
        for change in run.nat:
            self.add(ns, Step(StepKind.NAT, f"{change.kind.upper()} {change.field} {change.before} -> {change.after}",
                              nat=change, packet=pkt.summary()))
            if change.kind == "dnat" and self.endpoint is None:
                self.endpoint = change.after

    # -- local output to a local address (loopback) ---------------------------------------------------
    def _local_out(self, ns: str, pkt: Packet, after_output: bool = False) -> None:
        if not after_output:
            self.nf(ns, "OUTPUT", pkt, None, "lo")
        self.nf(ns, "POSTROUTING", pkt, None, "lo")
        pkt.src_mac = pkt.dst_mac = "00:00:00:00:00:00"
        self.ip_rcv(ns, "lo", pkt)

    # -- transmit ------------------------------------------------------------------------------------
    def transmit(self, ns: str, dev: str, nexthop: IPAddress, pkt: Packet) -> None:
        view = self.world.ns(ns)
        link = view.links.get(dev)
        if link is None:
            raise self.end(ns, pkt, Disposition.UNKNOWN, f"route points to {dev}, which is not in the snapshot")
        if not link.up:
            raise self.end(ns, pkt, Disposition.DROPPED, f"{dev} is down", DropReason.LINK_DOWN)
        if link.kind == "vxlan":
            self.vxlan_xmit(ns, link, nexthop, pkt)
            return
        mac = self.resolve_neighbour(ns, link, nexthop, pkt)
        pkt.src_mac, pkt.dst_mac = link.mac, mac
        if link.kind == "bridge":
            self.bridge_xmit(ns, link, nexthop, pkt)
            return
        self.wire(ns, link, nexthop, pkt)

    def resolve_neighbour(self, ns: str, link: Link, ip: IPAddress, pkt: Packet) -> str | None:
        view = self.world.ns(ns)
        if "NOARP" in link.flags or "POINTOPOINT" in link.flags:
            return None
        n = view.neigh.get((link.name, ip))
        if n is not None and n.usable:
            self.add(ns, Step(StepKind.NEIGHBOUR, f"neighbour {ip} lladdr {n.mac} {'/'.join(n.state)} dev {link.name}",
                              entry=f"{ip} dev {link.name} lladdr {n.mac} {' '.join(n.state)}", dev_out=link.name))
            return n.mac
        have = f"entry {'/'.join(n.state)}" if n is not None else "no entry"
        if link.kind == "vxlan":
            raise self.end(ns, pkt, Disposition.NEIGHBOUR_UNREACHABLE,
                           f"neighbour {ip} on {link.name}: {have}, and a VXLAN device learns none by ARP")
        if link.kind == "veth" or link.kind == "bridge":
            found = self.arp(ns, link.name, ip, 0, set())
            if found is not None:
                mac, who = found
                self.add(ns, Step(StepKind.NEIGHBOUR, f"neighbour {ip} dev {link.name}: {have}; ARP answered by {who} "
                                  f"({mac})", entry=f"{ip} dev {link.name} lladdr {mac} (ARP)", dev_out=link.name))
                return mac
            if self.world.peer(ns, link.name) is not None or link.kind == "bridge":
                raise self.end(ns, pkt, Disposition.NEIGHBOUR_UNREACHABLE,
                               f"neighbour {ip} dev {link.name}: {have}, and nobody on that link answers ARP")
        # a link whose far side is not in the snapshot (a real NIC): trust the table, else assume ARP works
        if n is not None and not n.usable:
            raise self.end(ns, pkt, Disposition.NEIGHBOUR_UNREACHABLE,
                           f"neighbour {ip} dev {link.name} is {'/'.join(n.state)}")
        self.add(ns, Step(StepKind.NEIGHBOUR, f"neighbour {ip} dev {link.name}: {have} (far side not in the snapshot)",
                          dev_out=link.name))
        return None

    def arp(self, ns: str, dev: str, ip: IPAddress, depth: int, seen: set[tuple[str, str]]) -> tuple[str, str] | None:
        """Who answers an ARP request for ``ip`` sent out of ``dev``: (MAC, place)."""
        if depth > MAX_ARP_DEPTH or (ns, dev) in seen:
            return None
        seen.add((ns, dev))
        view = self.world.ns(ns)
        link = view.links.get(dev)
        if link is None:
            return None
        ends: list[tuple[str, str]] = []
        if link.kind == "bridge":
            ends += [(ns, p) for p in view.ports.get(dev, []) if p != dev]
        else:
            peer = self.world.peer(ns, dev)
            if peer is not None:
                ends.append((peer[0], peer[1].name))
        for ns2, dev2 in ends:
            if (ns2, dev2) in seen:
                continue
            v2 = self.world.ns(ns2)
            l2 = v2.links.get(dev2)
            if l2 is None:
                continue
            if ns2 == ns and l2.master == dev:          # a port of the bridge we send out of: follow the cable
                got = self.arp(ns2, dev2, ip, depth + 1, seen)
                if got is not None:
                    return got
                continue
            if l2.master is not None and l2.master in v2.links and v2.links[l2.master].kind == "bridge":
                br = v2.links[l2.master]
                seen.add((ns2, dev2))
                if v2.owns(ip):
                    return br.mac or "?", f"{self.place(ns2)} ({br.name})"
                ports = v2.ports.get(br.name, [])
                # the usual case, found without visiting every port: the owner is right behind one
                for own_ns, own_dev in self.world.owners(ip):
                    back = self.world.peer(own_ns, own_dev)
                    if back is not None and back[0] == ns2 and back[1].master == br.name and back[1].name != dev2:
                        own = self.world.ns(own_ns).links.get(own_dev)
                        return (own.mac if own else None) or "?", f"{self.place(own_ns)} ({own_dev})"
                for p in ports:
                    if p == dev2:
                        continue
                    seen.add((ns2, br.name))
                    got = self.arp(ns2, p, ip, depth + 1, seen)
                    if got is not None:
                        return got
                continue
            if v2.owns(ip):
                return l2.mac or "?", f"{self.place(ns2)} ({dev2})"
            if v2.proxy_arp(dev2):
                rr = v2.fib.lookup(ip, iif=dev2)
                if rr.route is not None and rr.route.dev != dev2 and rr.route.type == "unicast":
                    return l2.mac or "?", f"{self.place(ns2)} ({dev2}, proxy ARP)"
        return None

    def bridge_xmit(self, ns: str, br: Link, nexthop: IPAddress, pkt: Packet) -> None:
        """The IP stack sends out of a bridge device: the bridge picks the port from its FDB."""
        view = self.world.ns(ns)
        port = self._fdb_port(ns, br, pkt, nexthop)
        out = view.links[port]
        if pkt.size > out.mtu:
            raise self.end(ns, pkt, Disposition.TOO_BIG, f"{pkt.size} B > mtu {out.mtu} of bridge port {port}: dropped")
        self.wire(ns, out, nexthop, pkt)

    def _fdb_port(self, ns: str, br: Link, pkt: Packet, nexthop: IPAddress, in_port: str | None = None) -> str:
        view = self.world.ns(ns)
        entry = view.bridge_fdb.get(br.name, {}).get((pkt.dst_mac or "").lower())
        if entry is not None and entry.dev != br.name:
            self.add(ns, Step(StepKind.BRIDGE, f"{br.name}: fdb {entry.mac} dev {entry.dev}"
                              f"{' ' + entry.state if entry.state else ''} -> port {entry.dev}",
                              entry=f"{entry.mac} dev {entry.dev} master {br.name} {entry.state}".strip(),
                              dev_out=entry.dev))
            return entry.dev
        port = self._port_toward(ns, br, pkt.dst_mac, nexthop, in_port)
        if port is None:
            raise self.end(ns, pkt, Disposition.DROPPED, f"{br.name}: unknown destination {_fmt_mac(pkt.dst_mac)}, "
                           "flooded, and no port leads to it", DropReason.NOT_FOR_HOST)
        self.add(ns, Step(StepKind.BRIDGE, f"{br.name}: no fdb entry for {_fmt_mac(pkt.dst_mac)}: flooded; "
                          f"port {port} leads to it", dev_out=port))
        return port

    def _port_toward(self, ns: str, br: Link, mac: str | None, ip: IPAddress, in_port: str | None) -> str | None:
        view = self.world.ns(ns)
        ports = [p for p in view.ports.get(br.name, []) if p != in_port]
        for p in ports:
            peer = self.world.peer(ns, p)
            if peer is not None and mac is not None and (peer[1].mac or "").lower() == mac.lower():
                return p
        for p in ports:
            if self.arp(ns, p, ip, 1, {(ns, br.name)}) is not None:
                return p
        return None

    def wire(self, ns: str, link: Link, nexthop: IPAddress, pkt: Packet) -> None:
        """The frame leaves ``link``: across a veth to its peer, or onto a network outside the snapshot."""
        peer = self.world.peer(ns, link.name) if link.kind == "veth" else None
        if peer is not None:
            ns2, l2 = peer
            if pkt.size > l2.mtu:
                raise self.end(ns, pkt, Disposition.TOO_BIG, f"{pkt.size} B > mtu {l2.mtu} of {l2.name} in "
                               f"{self.place(ns2)}: the veth drops it")
            self.add(ns, Step(StepKind.LINK, f"{link.name} -> veth peer {l2.name} in {self.place(ns2)}",
                              dev_out=link.name, dev_in=l2.name, packet=pkt.summary()))
            self.ingress(ns2, l2.name, pkt, new_visit=True)
            return
        owners = [(n, d) for n, d in self.world.owners(nexthop) if n != ns]
        if len(owners) == 1:
            ns2, dev2 = owners[0]
            l2 = self.world.ns(ns2).links.get(dev2)
            self.add(ns, Step(StepKind.LINK, f"{link.name} -> network outside the snapshot -> {dev2} of "
                              f"{self.place(ns2)} ({nexthop})", dev_out=link.name, dev_in=dev2, packet=pkt.summary()))
            if l2 is not None:
                pkt.dst_mac = l2.mac
            self.ingress(ns2, dev2, pkt, new_visit=True)
            return
        raise self.end(ns, pkt, Disposition.EXITS_NETWORK,
                       f"leaves {self.place(ns)} on {link.name} toward {nexthop} (outside the snapshot)",
                       step_kind=StepKind.LINK)

    # -- VXLAN ---------------------------------------------------------------------------------------
    def vxlan_xmit(self, ns: str, link: Link, nexthop: IPAddress, pkt: Packet) -> None:
        view = self.world.ns(ns)
        vx = link.vxlan
        assert vx is not None
        mac = self.resolve_neighbour(ns, link, nexthop, pkt)
        fdb = view.dev_fdb.get(link.name, {})
        entries = fdb.get((mac or "").lower()) or fdb.get("00:00:00:00:00:00") or []
        remote: IPAddress | None = None
        entry_text = None
        port = vx.port or 8472
        vni = vx.vni
        for e in entries:
            if e.dst is not None:
                remote = e.dst
                port = e.port or port
                vni = e.vni or vni
                entry_text = f"{e.mac} dev {link.name} dst {e.dst} {' '.join(e.flags)} {e.state}".strip()
                break
        if remote is None and vx.group is not None and not vx.group.is_multicast:
            remote, entry_text = vx.group, f"remote {vx.group} (device attribute)"
        if remote is None:
            raise self.end(ns, pkt, Disposition.DROPPED, f"{link.name}: no VXLAN fdb entry for {_fmt_mac(mac)}: "
                           "no tunnel endpoint", DropReason.NO_TUNNEL_ENDPOINT)
        pkt.src_mac, pkt.dst_mac = link.mac, mac
        inner = pkt
        # the kernel picks the outer source port from a hash of the inner flow (in 32768-60999)
        flow = f"{inner.src} {inner.dst} {inner.proto} {inner.sport} {inner.dport}".encode()
        sport = 32768 + zlib.crc32(flow) % (60999 - 32768 + 1)
        outer = Packet(src=vx.local or UNSPECIFIED, dst=remote, proto="udp", sport=sport, dport=port,
                       size=inner.size + VXLAN_OVERHEAD, df=vx.df == "set", tcp_flags=frozenset(), inner=inner)
        enc = Encapsulation("vxlan", link.name, vni, str(outer.src) if outer.src != UNSPECIFIED else "?",
                            str(remote), port, inner.size, outer.size, mac)
        self.add(ns, Step(StepKind.ENCAP, f"{link.name}: VXLAN VNI {vni} to {remote}:{port} (fdb {entry_text}); "
                          f"inner {inner.size} B, outer {outer.size} B", encap=enc, entry=entry_text,
                          dev_out=link.name))
        self.originate(ns, outer, oif=vx.dev, kernel=True)

    def vxlan_rx(self, ns: str, pkt: Packet) -> bool:
        """A UDP packet delivered locally: a VXLAN device on that port decapsulates it."""
        view = self.world.ns(ns)
        if pkt.inner is None or pkt.proto != "udp":
            return False
        for lk in view.st.links:
            vx = lk.vxlan
            if vx is None or (vx.port or 8472) != pkt.dport:
                continue
            if vx.local is not None and vx.local != pkt.dst:
                continue
            inner = pkt.inner
            self.add(ns, Step(StepKind.DECAP, f"UDP {pkt.dport} -> {lk.name}: VXLAN VNI {vx.vni} decapsulated, "
                              f"inner {inner.summary()}, {inner.size} B", dev_in=lk.name, packet=inner.summary()))
            if not lk.up:
                raise self.end(ns, inner, Disposition.DROPPED, f"{lk.name} is down", DropReason.LINK_DOWN)
            self.ingress(ns, lk.name, inner, new_visit=True)
            return True
        raise self.end(ns, pkt, Disposition.DROPPED, f"VXLAN packet to UDP {pkt.dport}: no VXLAN device for it",
                       DropReason.NO_TUNNEL_DEVICE)

    # -- receive -------------------------------------------------------------------------------------
    def ingress(self, ns: str, dev: str, pkt: Packet, new_visit: bool = False) -> None:
        view = self.world.ns(ns)
        if new_visit:
            self.visit = Visit(ns)
        link = view.links.get(dev)
        if link is None:
            raise self.end(ns, pkt, Disposition.UNKNOWN, f"{dev} is not in {self.place(ns)}")
        if not link.up:
            raise self.end(ns, pkt, Disposition.DROPPED, f"{dev} is down", DropReason.LINK_DOWN)
        master = view.links.get(link.master) if link.master else None
        if master is not None and master.kind == "bridge":
            self.bridge_rx(ns, master, link, pkt)
            return
        if (pkt.dst_mac is not None and link.mac is not None and pkt.dst_mac.lower() != link.mac.lower()
                and pkt.dst_mac != BROADCAST_MAC and link.kind not in ("loopback",)):
            raise self.end(ns, pkt, Disposition.DROPPED, f"{dev}: frame for {pkt.dst_mac}, not for this host "
                           f"({link.mac})", DropReason.NOT_FOR_HOST)
        self.ip_rcv(ns, dev, pkt)

    def bridge_rx(self, ns: str, br: Link, port: Link, pkt: Packet) -> None:
        view = self.world.ns(ns)
        if port.port is not None and port.port.state not in ("forwarding", "3"):
            raise self.end(ns, pkt, Disposition.DROPPED, f"bridge port {port.name} is {port.port.state}",
                           DropReason.PORT_BLOCKED)
        self.add(ns, Step(StepKind.BRIDGE, f"{port.name} -> bridge {br.name}", dev_in=port.name))
        nf_on = view.bridge_nf(br.name)
        dst_mac = (pkt.dst_mac or "").lower()
        fdb = view.bridge_fdb.get(br.name, {})
        entry = fdb.get(dst_mac)
        local = dst_mac == (br.mac or "").lower() or (entry is not None and entry.state == "permanent"
                                                       and entry.dev in (br.name,))
        if nf_on:
            before = pkt.dst
            self.nf(ns, "PREROUTING", pkt, br.name, None, physdev_in=port.name)
            if pkt.dst != before:
                # br_nf_pre_routing_finish: a DNATed frame is routed; if the new destination is
                # on this same bridge, the frame stays in the bridge ("bridged DNAT"), forwarded
                # from its input port (back out of it needs hairpin mode)
                rr = view.fib.lookup(pkt.dst, src=pkt.src, iif=br.name, mark=pkt.mark)
                if rr.route is not None and rr.route.dev == br.name and rr.route.type == "unicast":
                    self.add(ns, Step(StepKind.BRIDGE, f"{br.name}: the new destination {pkt.dst} is on {br.name} "
                                      "itself: bridged DNAT, the frame stays in the bridge",
                                      entry=route_text(rr.route)))
                    pkt.dst_mac = self.resolve_neighbour(ns, br, rr.route.gateway or pkt.dst, pkt)
                    dst_mac = (pkt.dst_mac or "").lower()
                    entry = fdb.get(dst_mac)
                    local = False
                else:
                    local = True
        if local:
            self.add(ns, Step(StepKind.BRIDGE, f"{br.name}: destination {dst_mac} is the bridge itself: up to the "
                              f"IP stack", dev_in=br.name))
            self.ip_rcv(ns, br.name, pkt, physdev_in=port.name, pre_done=nf_on)
            return
        if entry is not None and entry.dev == port.name and not port.hairpin:
            raise self.end(ns, pkt, Disposition.DROPPED, f"{br.name}: fdb sends {dst_mac} back out {port.name}, "
                           "whose hairpin mode is off", DropReason.HAIRPIN_OFF)
        out_name = self._fdb_port(ns, br, pkt, pkt.dst, in_port=None if port.hairpin else port.name)
        out = view.links[out_name]
        if out_name == port.name:
            if not port.hairpin:
                raise self.end(ns, pkt, Disposition.DROPPED, f"{br.name}: {dst_mac} is behind {port.name} itself, "
                               "hairpin off", DropReason.HAIRPIN_OFF)
            self.add(ns, Step(StepKind.BRIDGE, f"{br.name}: back out of {port.name} (hairpin mode on)",
                              dev_out=port.name))
        if nf_on:
            self.nf(ns, "FORWARD", pkt, br.name, br.name, physdev_in=port.name, physdev_out=out_name, bridged=True)
            self.nf(ns, "POSTROUTING", pkt, None, br.name, physdev_in=port.name, physdev_out=out_name, bridged=True)
        if pkt.size > out.mtu:
            raise self.end(ns, pkt, Disposition.TOO_BIG,
                           f"{pkt.size} B > mtu {out.mtu} of bridge port {out_name}: dropped")
        self.wire(ns, out, pkt.dst, pkt)

    def ip_rcv(self, ns: str, dev: str, pkt: Packet, physdev_in: str | None = None, pre_done: bool = False) -> None:
        view = self.world.ns(ns)
        if not pre_done:
            self.nf(ns, "PREROUTING", pkt, dev, None, physdev_in=physdev_in)
        if dev != "lo":
            if is_loopback(pkt.src):
                raise self.end(ns, pkt, Disposition.DROPPED, f"martian source {pkt.src} on {dev}", DropReason.MARTIAN)
            if is_loopback(pkt.dst) and view.conf(dev, "route_localnet") != 1:
                raise self.end(ns, pkt, Disposition.DROPPED, f"martian destination {pkt.dst} on {dev} "
                               "(route_localnet = 0)", DropReason.MARTIAN)
        rr = view.fib.lookup(pkt.dst, src=pkt.src, iif=dev, mark=pkt.mark, proto=pkt.proto, sport=pkt.sport,
                             dport=pkt.dport)
        route, out_dev, nexthop = self._route_target(ns, rr, pkt, forward=True)
        self._route_step(ns, rr, pkt, "route")
        self._rp_filter(ns, view, dev, pkt, route)
        if route.type in ("local", "broadcast"):
            self.local_in(ns, dev, pkt, physdev_in)
            return
        if not view.st.ip_forward:
            raise self.end(ns, pkt, Disposition.DROPPED, f"{self.place(ns)} does not forward (net.ipv4.ip_forward = 0)",
                           DropReason.FORWARDING_DISABLED)
        self.forward(ns, dev, route, out_dev, nexthop, pkt, physdev_in)

    def _rp_filter(self, ns: str, view: NsView, dev: str, pkt: Packet, route: Route) -> None:
        mode = view.conf(dev, "rp_filter")
        if mode == 0 or dev == "lo" or pkt.src == UNSPECIFIED:
            return
        back = view.fib.lookup(pkt.src, src=pkt.dst, iif=dev, mark=pkt.mark)
        ok = back.route is not None and back.route.type in ("unicast", "local")
        if ok and mode == 1:
            r = back.route
            assert r is not None
            ok = r.dev == dev or any(nh.dev == dev for nh in r.nexthops)
        if not ok:
            raise self.end(ns, pkt, Disposition.DROPPED, f"rp_filter={mode} on {dev}: the way back to {pkt.src} "
                           f"is not via {dev}", DropReason.RP_FILTER)

    def forward(self, ns: str, in_dev: str, route: Route, out_dev: str, nexthop: IPAddress, pkt: Packet,
                physdev_in: str | None) -> None:
        view = self.world.ns(ns)
        pkt.ttl -= 1
        if pkt.ttl <= 0:
            raise self.end(ns, pkt, Disposition.DROPPED, "TTL exceeded", DropReason.TTL_EXCEEDED)
        mtu, learned = view.path_mtu(pkt.dst, route.mtu, out_dev)
        if pkt.size > mtu:
            if pkt.df:
                why = f"learned path MTU {mtu}" if learned else f"mtu {mtu}"
                raise self.end(ns, pkt, Disposition.TOO_BIG,
                               f"too big at {out_dev}: {pkt.size} B > {why} with DF set (ICMP fragmentation "
                               f"needed, mtu {mtu}, sent back to {pkt.src})")
            self.add(ns, Step(StepKind.MTU, f"{pkt.size} B > mtu {mtu} of {out_dev}: fragmented", dev_out=out_dev))
        self.nf(ns, "FORWARD", pkt, in_dev, out_dev, physdev_in=physdev_in)
        self.nf(ns, "POSTROUTING", pkt, None, out_dev)
        self.transmit(ns, out_dev, nexthop, pkt)

    def local_in(self, ns: str, dev: str, pkt: Packet, physdev_in: str | None) -> None:
        view = self.world.ns(ns)
        self.nf(ns, "INPUT", pkt, dev, None, physdev_in=physdev_in)
        if pkt.inner is not None and self.vxlan_rx(ns, pkt):
            return
        self.where = ns
        self.final = pkt
        if self.reply:
            self.delivered = pkt
            summary = f"the reply reaches {self.place(ns)}: {pkt.summary()}"
            self.add(ns, Step(StepKind.DELIVER, summary, verdict="client socket", packet=pkt.summary()))
            raise End(Disposition.DELIVERED, summary)
        if pkt.proto == "icmp":
            self.delivered = pkt
            summary = f"delivered to {self.place(ns)} ({pkt.dst}): the kernel answers the echo request"
            self.add(ns, Step(StepKind.DELIVER, summary, verdict="kernel", packet=pkt.summary()))
            raise End(Disposition.DELIVERED, summary)
        socks = view.sockets
        if socks is None:
            self.delivered = pkt
            summary = f"delivered to {self.place(ns)} {pkt.endpoint('dst')} (listeners unknown: no ss-listen.txt)"
            self.add(ns, Step(StepKind.DELIVER, summary, verdict="unknown", packet=pkt.summary()))
            self.warnings.append(f"{self.place(ns)}: no socket list in the snapshot; delivery is assumed")
            raise End(Disposition.DELIVERED, summary)
        for s in socks:
            if s.accepts(pkt.proto, pkt.dst, pkt.dport or 0) and (s.dev is None or s.dev == dev):
                self.delivered = pkt
                local = "*" if s.local is None else str(s.local)
                summary = f"delivered to {self.place(ns)} {pkt.endpoint('dst')} (socket {s.proto} {local}:{s.port} " \
                          f"{s.state})"
                self.add(ns, Step(StepKind.DELIVER, summary, verdict=f"{s.proto} {local}:{s.port} {s.state}",
                                  packet=pkt.summary()))
                raise End(Disposition.DELIVERED, summary)
        answer = "TCP reset" if pkt.proto == "tcp" else "ICMP port unreachable"
        raise self.end(ns, pkt, Disposition.NO_LISTENER, f"{self.place(ns)}: nothing listens on {pkt.proto} "
                       f"{pkt.endpoint('dst')} ({answer} sent back)", step_kind=StepKind.DELIVER)


_EFFECT_TARGETS = frozenset({"ACCEPT", "DROP", "REJECT", "QUEUE", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "MARK",
                             "CONNMARK", "NOTRACK", "CT", "mark", "notrack"})


def decisive(refs: list[RuleRef]) -> list[RuleRef]:
    """The rules that did something (a verdict, NAT, a mark, a random choice) and the jumps that led
    to them; jumps into chains that just returned are left out."""
    if not refs:
        return []
    depth: list[int] = []
    stack = [refs[0].chain]
    for i, r in enumerate(refs):
        while stack and stack[-1] != r.chain:
            stack.pop()
        if not stack:
            stack = [r.chain]
        depth.append(len(stack) - 1)
        nxt = refs[i + 1] if i + 1 < len(refs) else None
        if nxt is not None and nxt.chain == r.target and r.target != r.chain:
            stack.append(r.target)
    keep: set[int] = set()
    for i, r in enumerate(refs):
        if r.num == 0 and r.target == "ACCEPT":
            continue
        if r.target in _EFFECT_TARGETS or r.note or r.num == 0:
            j, d = i, depth[i]
            keep.add(i)
            while d > 0 and j > 0:
                j -= 1
                if depth[j] == d - 1:
                    keep.add(j)
                    d -= 1
    return [r for i, r in enumerate(refs) if i in keep]


def path_text(table: str, refs: list[RuleRef]) -> str:
    """``nat/PREROUTING #1 -> KUBE-SERVICES #1 "svc" -> KUBE-SVC-X #2 (p=0.5 taken) -> KUBE-SEP-Y #2 DNAT``"""
    parts: list[str] = []
    commented = False
    for i, r in enumerate(refs):
        label = f"{table}/{r.chain}" if i == 0 else r.chain
        if r.num == 0:
            parts.append(f"{label} policy {r.target}")
            continue
        s = f"{label} #{r.num}"
        builtin = r.chain.isupper() and r.chain in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
        last = i == len(refs) - 1
        if r.comment and not builtin and (not commented or (last and r.target in ("DROP", "REJECT", "ACCEPT"))):
            s += f' "{r.comment}"'
            commented = True
        if r.note:
            s += f" ({r.note})"
        nxt = refs[i + 1] if not last else None
        if r.target and (nxt is None or r.target != nxt.chain):
            s += f" {r.target}"
        parts.append(s)
    return " -> ".join(parts)


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
