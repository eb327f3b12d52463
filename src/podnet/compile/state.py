"""Desired kernel state of one network namespace, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VethPeer:
    netns: str
    name: str
    mtu: int
    mac: str | None = None


@dataclass(frozen=True)
class VxlanAttrs:
    vni: int
    port: int
    local: str
    dev: str          # underlay device in the same namespace
    learning: bool = False


@dataclass(frozen=True)
class LinkSpec:
    """A link this namespace owns. ``kind="peer"`` marks the far end of a veth created elsewhere."""

    name: str
    kind: str                       # bridge | veth | vxlan | peer | loopback
    mtu: int | None = None
    mac: str | None = None
    master: str | None = None
    hairpin: bool | None = None     # bridge port flag (on a port enslaved to a bridge)
    peer: VethPeer | None = None
    vxlan: VxlanAttrs | None = None


@dataclass(frozen=True)
class AddrSpec:
    dev: str
    ip: str
    prefixlen: int


@dataclass(frozen=True)
class RouteSpec:
    dst: str                        # "default" or a CIDR
    via: str | None = None
    dev: str | None = None
    onlink: bool = False
    src: str | None = None


@dataclass(frozen=True)
class NeighSpec:
    dev: str
    ip: str
    mac: str                        # installed NUD_PERMANENT, as flannel does


@dataclass(frozen=True)
class FdbSpec:
    dev: str
    mac: str
    dst: str                        # remote VTEP (node) IP


@dataclass
class NetnsSpec:
    name: str
    role: str                       # underlay | node | host | pod
    owner: str = ""                 # node name, host name or ns/pod
    links: list[LinkSpec] = field(default_factory=list)
    addrs: list[AddrSpec] = field(default_factory=list)
    routes: list[RouteSpec] = field(default_factory=list)
    neighs: list[NeighSpec] = field(default_factory=list)
    fdb: list[FdbSpec] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)   # /etc/netns/<name>/<path> -> content
