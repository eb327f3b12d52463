"""Bring namespaces to their desired state (compile.state.NetnsSpec). Re-applying is a no-op.

Links, addresses, routes, neighbours and FDB entries are added when missing and corrected when they
differ; nothing podnet did not declare is removed here (reconcilers that own a set of routes, such as
the flannel agent, prune their own).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from pyroute2 import IPRoute, NetlinkError

from podnet.compile.state import FdbSpec, LinkSpec, NeighSpec, NetnsSpec, RouteSpec
from podnet.dataplane import netns
from podnet.errors import PodnetError

NUD_PERMANENT = 0x80
RTNH_F_ONLINK = 4
RT_SCOPE_LINK = 253
NTF_SELF = 0x02


class NetnsHandle:
    """One netlink handle per namespace, with a cache of its links."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ipr: IPRoute = netns.iproute(name)
        self._links: dict[str, dict] | None = None

    def close(self) -> None:
        self.ipr.close()

    def links(self) -> dict[str, dict]:
        if self._links is None:
            self._links = {}
            for msg in self.ipr.get_links():
                self._links[msg.get("ifname")] = _link_info(msg)
        return self._links

    def refresh(self) -> None:
        self._links = None

    def learn(self, ifname: str) -> dict:
        """Read one link into the cache (cheaper than re-dumping every link)."""
        msgs = self.ipr.link("get", ifname=ifname)
        info = _link_info(msgs[0])
        if self._links is not None:
            self._links[ifname] = info
        return info

    def index(self, ifname: str) -> int:
        info = self.links().get(ifname)
        if info is None:
            self.refresh()
            info = self.links().get(ifname)
        if info is None:
            raise PodnetError(f"{self.name}: interface {ifname} does not exist")
        return info["index"]


def _link_info(msg) -> dict:
    linkinfo = msg.get("IFLA_LINKINFO")
    kind = linkinfo.get("IFLA_INFO_KIND") if linkinfo else None
    return {"index": msg["index"], "kind": kind, "mtu": msg.get("IFLA_MTU"), "mac": msg.get("IFLA_ADDRESS"),
            "master": msg.get("IFLA_MASTER"), "up": bool(msg["flags"] & 1)}


def _fail(h: NetnsHandle, what: str, e: Exception) -> PodnetError:
    msg = e.args[1] if isinstance(e, NetlinkError) and len(e.args) > 1 else str(e)
    return PodnetError(f"{h.name}: {what}: {msg}")


class Applier:
    """Applies NetnsSpecs, keeping one handle per namespace for the whole run."""

    def __init__(self, on_create: Callable[[str], None] | None = None) -> None:
        self.handles: dict[str, NetnsHandle] = {}
        self.on_create = on_create

    def close(self) -> None:
        for h in self.handles.values():
            h.close()
        self.handles.clear()

    def handle(self, name: str) -> NetnsHandle:
        h = self.handles.get(name)
        if h is None:
            h = self.handles[name] = NetnsHandle(name)
        return h

    def ensure_netns(self, name: str) -> bool:
        if netns.exists(name):
            return False
        netns.create(name)
        if self.on_create:
            self.on_create(name)
        return True

    def apply(self, spec: NetnsSpec) -> None:
        h = self.handle(spec.name)
        self._lo(h)
        for link in spec.links:
            self._link(h, link)
        for a in spec.addrs:
            self._addr(h, a.dev, a.ip, a.prefixlen)
        for link in spec.links:
            self._up(h, link.name)
        for r in spec.routes:
            self._route(h, r)
        for n in spec.neighs:
            self._neigh(h, n)
        for f in spec.fdb:
            self._fdb(h, f)
        netns.write_sysctls(spec.name, spec.sysctls)

    # -- links -------------------------------------------------------------------------------
    def _lo(self, h: NetnsHandle) -> None:
        lo = h.links().get("lo")
        if lo and not lo["up"]:
            h.ipr.link("set", index=lo["index"], state="up")
            lo["up"] = True

    def _link(self, h: NetnsHandle, spec: LinkSpec) -> None:
        cur = h.links().get(spec.name)
        if cur is not None and spec.kind not in ("peer",) and cur["kind"] != spec.kind:
            raise PodnetError(f"{h.name}: interface {spec.name} exists but is a {cur['kind']}, not a {spec.kind}")
        if cur is None:
            if spec.kind == "peer":
                raise PodnetError(f"{h.name}: interface {spec.name} is missing (its veth peer was not created)")
            self._create(h, spec)
            cur = h.learn(spec.name)
        changes: dict = {}
        if spec.mtu and cur["mtu"] != spec.mtu:
            changes["mtu"] = spec.mtu
        if spec.mac and cur["mac"] != spec.mac:
            changes["address"] = spec.mac
        if spec.master:
            master = h.index(spec.master)
            if cur["master"] != master:
                changes["master"] = master
        if changes:
            try:
                h.ipr.link("set", index=cur["index"], **changes)
            except NetlinkError as e:
                raise _fail(h, f"setting {spec.name} {changes}", e) from None
            cur.update({"mtu": changes.get("mtu", cur["mtu"]), "mac": changes.get("address", cur["mac"]),
                        "master": changes.get("master", cur["master"])})
        if spec.hairpin is not None:
            try:
                h.ipr.brport("set", index=cur["index"], mode=int(spec.hairpin))  # IFLA_BRPORT_MODE: hairpin
            except NetlinkError as e:
                raise _fail(h, f"setting hairpin on {spec.name}", e) from None

    def _create(self, h: NetnsHandle, spec: LinkSpec) -> None:
        kw: dict = {"ifname": spec.name, "kind": spec.kind}
        if spec.mtu:
            kw["mtu"] = spec.mtu
        if spec.mac:
            kw["address"] = spec.mac
        try:
            if spec.kind == "veth":
                assert spec.peer is not None
                peer = spec.peer
                self.ensure_netns(peer.netns)
                stale = self.handle(peer.netns).links().get(peer.name)
                if stale is not None:  # a half-built pair: the far end survived without us
                    self.handle(peer.netns).ipr.link("del", index=stale["index"])
                    self.handle(peer.netns).refresh()
                fd = os.open(netns.path(peer.netns), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    p = {"ifname": peer.name, "net_ns_fd": fd, "mtu": peer.mtu}
                    if peer.mac:
                        p["address"] = peer.mac
                    h.ipr.link("add", **kw, peer=p)
                finally:
                    os.close(fd)
                self.handle(peer.netns).refresh()
            elif spec.kind == "vxlan":
                assert spec.vxlan is not None
                v = spec.vxlan
                h.ipr.link("add", **kw, vxlan_id=v.vni, vxlan_port=v.port, vxlan_local=v.local,
                           vxlan_link=h.index(v.dev), vxlan_learning=int(v.learning))
            elif spec.kind == "bridge":
                h.ipr.link("add", **kw)
            else:
                raise PodnetError(f"{h.name}: cannot create a link of kind {spec.kind}")
        except NetlinkError as e:
            raise _fail(h, f"creating {spec.kind} {spec.name}", e) from None

    def _up(self, h: NetnsHandle, ifname: str) -> None:
        cur = h.links().get(ifname)
        if cur and not cur["up"]:
            h.ipr.link("set", index=cur["index"], state="up")
            cur["up"] = True

    # -- addresses, routes, neighbours, fdb ---------------------------------------------------------
    def _addr(self, h: NetnsHandle, dev: str, ip: str, prefixlen: int) -> None:
        idx = h.index(dev)
        have = {(a.get("IFA_LOCAL") or a.get("IFA_ADDRESS"), a["prefixlen"])
                for a in h.ipr.get_addr(index=idx, family=socket.AF_INET)}
        if (ip, prefixlen) in have:
            return
        try:
            h.ipr.addr("add", index=idx, address=ip, prefixlen=prefixlen)
        except NetlinkError as e:
            raise _fail(h, f"adding {ip}/{prefixlen} to {dev}", e) from None

    def _route(self, h: NetnsHandle, r: RouteSpec) -> None:
        kw: dict = {"dst": "0.0.0.0/0" if r.dst == "default" else r.dst, "proto": 3}  # boot, as `ip route add`
        if r.via:
            kw["gateway"] = r.via
        if r.dev:
            kw["oif"] = h.index(r.dev)
            if not r.via:
                kw["scope"] = RT_SCOPE_LINK  # as `ip route add X dev D` (routed pods: /32 dev cali..., 169.254.1.1)
        if r.onlink:
            kw["flags"] = RTNH_F_ONLINK
        if r.src:
            kw["prefsrc"] = r.src
        try:
            h.ipr.route("replace", **kw)
        except NetlinkError as e:
            raise _fail(h, f"route {r.dst} via {r.via} dev {r.dev}", e) from None

    def _neigh(self, h: NetnsHandle, n: NeighSpec) -> None:
        try:
            h.ipr.neigh("replace", dst=n.ip, lladdr=n.mac, ifindex=h.index(n.dev), state=NUD_PERMANENT)
        except NetlinkError as e:
            raise _fail(h, f"neighbour {n.ip} lladdr {n.mac} dev {n.dev}", e) from None

    def _fdb(self, h: NetnsHandle, f: FdbSpec) -> None:
        idx = h.index(f.dev)
        for e in h.ipr.fdb("dump"):
            if e["ifindex"] == idx and e.get("NDA_LLADDR") == f.mac and e.get("NDA_DST") == f.dst:
                return
        try:
            h.ipr.fdb("append", ifindex=idx, lladdr=f.mac, dst=f.dst, state=NUD_PERMANENT)
        except NetlinkError as e:
            raise _fail(h, f"fdb {f.mac} dst {f.dst} dev {f.dev}", e) from None
