"""Indexes over a snapshot, built lazily and once: per namespace its links, FIB, neighbours, FDB,
netfilter plan and evaluators, sockets and conntrack; across namespaces the veth pairs and who
owns which address. A walk only touches the namespaces the packet visits, so a 1,000-node snapshot
costs what the path costs. Identical rulesets (one parsed ``Iptables`` object shared by many
namespaces) share one evaluator and one rule index. Pure.
"""

from __future__ import annotations

from collections.abc import Callable

from podnet.sim.conntrack_sim import SnapshotConntrack
from podnet.sim.netfilter import HookEntry, IptablesEval, hook_plan
from podnet.sim.nft_eval import NftEval
from podnet.sim.packet import is_loopback
from podnet.sim.routing import Fib
from podnet.sim.snapshot import FdbEntry, IPAddress, Link, Neighbour, NetnsState, Snapshot, Socket

Namer = Callable[[str], tuple[str, str]]     # netns -> (node, place)


class NsView:
    """One namespace, indexed for the walker."""

    def __init__(self, world: World, st: NetnsState) -> None:
        self.world = world
        self.st = st
        self.name = st.name
        self.links: dict[str, Link] = {lk.name: lk for lk in st.links}
        self.by_index: dict[int, Link] = {lk.ifindex: lk for lk in st.links}
        self.fib = Fib(st.routes, st.rules, st.addresses)
        self.neigh: dict[tuple[str, IPAddress], Neighbour] = {(n.dev, n.ip): n for n in st.neighbours}
        self.ports: dict[str, list[str]] = {}
        for lk in st.links:
            if lk.master is not None and lk.master in self.links and self.links[lk.master].kind == "bridge":
                self.ports.setdefault(lk.master, []).append(lk.name)
        self.bridge_fdb: dict[str, dict[str, FdbEntry]] = {}
        self.dev_fdb: dict[str, dict[str, list[FdbEntry]]] = {}
        for e in st.fdb:
            if e.master is not None:
                self.bridge_fdb.setdefault(e.master, {}).setdefault(e.mac, e)
            else:
                self.dev_fdb.setdefault(e.dev, {}).setdefault(e.mac, []).append(e)
        self.plan: dict[str, list[HookEntry]] = world.plan_for(st)
        self.ipt = world.ipt_eval(st)
        self.nft: dict[str, NftEval] = {}
        for (fam, tname), t in st.nft.tables.items():
            self.nft[f"{fam} {tname}"] = NftEval(t)
        self._ct: SnapshotConntrack | None = None
        self.sockets: tuple[Socket, ...] | None = st.sockets
        self.pmtu: dict[IPAddress, int] = {r.dst.network_address: r.mtu for r in st.route_cache
                                           if r.mtu and r.dst.prefixlen == r.dst.max_prefixlen}
        # conntrack runs in a namespace once something needs it: NAT, a conntrack match, nftables
        # base chains (kube-proxy's), or entries already in the table
        self.ct_active = (bool(st.conntrack) or any(e.nat for es in self.plan.values() for e in es)
                          or self._uses_conntrack())

    def _uses_conntrack(self) -> bool:
        for t in self.st.iptables.tables.values():
            for ch in t.chains.values():
                for r in ch.rules:
                    if any(m.module in ("conntrack", "state", "connmark") for m in r.matches):
                        return True
        return any(t.chains for (fam, _), t in self.st.nft.tables.items() if fam in ("ip", "inet")
                   and any(c.base for c in t.chains.values()))

    @property
    def conntrack(self) -> SnapshotConntrack:
        if self._ct is None:
            self._ct = self.world.ct_index(self.st)
        return self._ct

    # -- sysctls ---------------------------------------------------------------------------------
    def conf(self, dev: str, key: str) -> int:
        return max(self.st.sysctl_int(f"net.ipv4.conf.all.{key}"), self.st.sysctl_int(f"net.ipv4.conf.{dev}.{key}"))

    def proxy_arp(self, dev: str) -> bool:
        return self.conf(dev, "proxy_arp") == 1

    def bridge_nf(self, bridge: str) -> bool:
        lk = self.links.get(bridge)
        if lk is not None and lk.bridge is not None and lk.bridge.nf_call_iptables:
            return True
        # the kernel default (1) applies when the dump lacks the key (br_netfilter is loaded on any node)
        return self.st.sysctl_int("net.bridge.bridge-nf-call-iptables", 1) == 1

    def masquerade_source(self, dev: str | None, dst: IPAddress) -> IPAddress | None:
        """MASQUERADE's new source: the address the route out of ``dev`` would pick."""
        rr = self.fib.lookup(dst)
        return self.fib.select_source(dev, dst, rr.route)

    def path_mtu(self, dst: IPAddress, route_mtu: int | None, dev: str) -> tuple[int, bool]:
        """The MTU toward ``dst``: the route's or the device's, lowered by a learned path MTU
        (``ip route show cached``); the flag says whether the learned one is what limits."""
        base = route_mtu or self.mtu(dev)
        learned = self.pmtu.get(dst)
        if learned is not None and learned < base:
            return learned, True
        return base, False

    def mtu(self, dev: str) -> int:
        lk = self.links.get(dev)
        return lk.mtu if lk is not None else 1500

    def addresses_on(self, dev: str) -> list[IPAddress]:
        return [a.local for a in self.fib.addresses if a.dev == dev]

    def owns(self, ip: IPAddress) -> bool:
        return ip in self.fib.local_ips


class World:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._views: dict[str, NsView] = {}
        self._plans: dict[tuple[int, int], dict[str, list[HookEntry]]] = {}
        self._ipt: dict[int, IptablesEval] = {}
        self._ct: dict[int, SnapshotConntrack] = {}
        self._peers: dict[tuple[str, str], tuple[str, Link] | None] = {}
        self._owners: dict[IPAddress, list[tuple[str, str]]] | None = None
        self._veths: dict[tuple[int, int], list[tuple[str, Link]]] | None = None

    def ns(self, name: str) -> NsView:
        v = self._views.get(name)
        if v is None:
            v = self._views[name] = NsView(self, self.snapshot.namespaces[name])
        return v

    def __contains__(self, name: str) -> bool:
        return name in self.snapshot.namespaces

    def plan_for(self, st: NetnsState) -> dict[str, list[HookEntry]]:
        key = (id(st.iptables), id(st.nft))
        p = self._plans.get(key)
        if p is None:
            p = self._plans[key] = hook_plan(st.iptables, st.nft)
        return p

    def ipt_eval(self, st: NetnsState) -> IptablesEval:
        key = id(st.iptables)
        e = self._ipt.get(key)
        if e is None:
            e = self._ipt[key] = IptablesEval(st.iptables)
        return e

    def ct_index(self, st: NetnsState) -> SnapshotConntrack:
        key = id(st.conntrack)
        c = self._ct.get(key)
        if c is None:
            c = self._ct[key] = SnapshotConntrack(st.conntrack)
        return c

    # -- across namespaces -------------------------------------------------------------------------
    def peer(self, ns: str, dev: str) -> tuple[str, Link] | None:
        """The other end of veth ``dev`` (see ``Snapshot.veth_peer``), with an index instead of a
        scan of every namespace."""
        key = (ns, dev)
        if key in self._peers:
            return self._peers[key]
        here = self.snapshot.namespaces[ns]
        link = self.ns(ns).links.get(dev)
        found: tuple[str, Link] | None = None
        if link is not None and link.kind == "veth" and link.link_index is not None:
            if link.link_netnsid is None:
                p = self.ns(ns).by_index.get(link.link_index)
                found = (ns, p) if p is not None else None
            else:
                named = here.netns_ids.get(link.link_netnsid)
                if named is not None and named in self.snapshot.namespaces:
                    cand = self.ns(named).by_index.get(link.link_index)
                    if cand is not None and cand.kind == "veth" and cand.link_index == link.ifindex:
                        found = (named, cand)
                elif named is None or not here.netns_ids:
                    # no name for the peer's namespace: the one veth elsewhere whose ifindexes
                    # cross-match, unless its own netns ids say its peer lives somewhere else
                    cands = [(n, c) for n, c in self._veth_index().get((link.link_index, link.ifindex), [])
                             if n != ns and self._points_back(n, c, ns)]
                    if len(cands) == 1:
                        found = cands[0]
                # a peer in a named namespace that is not in the snapshot stays unknown (None)
        self._peers[key] = found
        return found

    def _points_back(self, name: str, link: Link, ns: str) -> bool:
        ids = self.snapshot.namespaces[name].netns_ids
        back = ids.get(link.link_netnsid) if link.link_netnsid is not None else None
        return back is None or back == ns

    def _veth_index(self) -> dict[tuple[int, int], list[tuple[str, Link]]]:
        if self._veths is None:
            idx: dict[tuple[int, int], list[tuple[str, Link]]] = {}
            for name, st in self.snapshot.namespaces.items():
                for lk in st.links:
                    if lk.kind == "veth" and lk.link_index is not None and lk.link_netnsid is not None:
                        idx.setdefault((lk.ifindex, lk.link_index), []).append((name, lk))
            self._veths = idx
        return self._veths

    def owners(self, ip: IPAddress) -> list[tuple[str, str]]:
        """Every (namespace, device) holding ``ip`` (loopback addresses excluded)."""
        if self._owners is None:
            idx: dict[IPAddress, list[tuple[str, str]]] = {}
            for name, st in self.snapshot.namespaces.items():
                for a in st.addresses:
                    if is_loopback(a.local):
                        continue
                    idx.setdefault(a.local, []).append((name, a.dev))
            self._owners = idx
        return self._owners.get(ip, [])
