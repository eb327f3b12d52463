"""Connection tracking as the walker needs it: entries from the snapshot (``conntrack -L``) and the
ones the simulated packet creates, looked up by original or reply tuple; NAT bindings and their
reversal on replies. Existing entries win over rules: a packet that matches one is not NEW, the nat
table is not consulted and the entry's binding applies. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podnet.sim.packet import Packet
from podnet.sim.snapshot import ConntrackEntry, CtTuple, IPAddress

Key = tuple[str, IPAddress, int | None, IPAddress, int | None]


@dataclass(frozen=True, slots=True)
class Tup:
    src: IPAddress
    sport: int | None
    dst: IPAddress
    dport: int | None

    def text(self) -> str:
        def ep(ip: IPAddress, port: int | None) -> str:
            return f"{ip}:{port}" if port is not None else str(ip)
        return f"{ep(self.src, self.sport)} -> {ep(self.dst, self.dport)}"

    def inverse(self) -> Tup:
        return Tup(self.dst, self.dport, self.src, self.sport)


def packet_tuple(p: Packet) -> Tup:
    if p.has_ports:
        return Tup(p.src, p.sport, p.dst, p.dport)
    if p.proto == "icmp":
        return Tup(p.src, p.icmp_id, p.dst, p.icmp_id)
    return Tup(p.src, None, p.dst, None)


def key_of(proto: str, t: Tup) -> Key:
    return (proto, t.src, t.sport, t.dst, t.dport)


@dataclass(slots=True)
class CtEntry:
    """One connection. ``orig`` is fixed when created; ``reply`` is set at confirmation (the inverse
    of the packet as it left, i.e. after NAT). ``source`` says whether it came from the snapshot."""

    proto: str
    orig: Tup
    reply: Tup | None = None
    status: set[str] = field(default_factory=set)      # ASSURED, SEEN_REPLY, UNREPLIED...
    state: str | None = None                            # TCP state
    mark: int = 0
    source: str = "new"                                 # "snapshot" or "new"
    text: str = ""                                      # as conntrack -L prints it (snapshot entries)

    @property
    def dnat(self) -> bool:
        return self.reply is not None and (self.reply.src != self.orig.dst or self.reply.sport != self.orig.dport)

    @property
    def snat(self) -> bool:
        return self.reply is not None and (self.reply.dst != self.orig.src or self.reply.dport != self.orig.sport)

    def describe(self) -> str:
        if self.text:
            return self.text
        r = self.reply.text() if self.reply else "?"
        return f"{self.proto} {self.orig.text()} reply {r}"


def _from_snapshot(e: ConntrackEntry) -> CtEntry:
    def tup(t: CtTuple) -> Tup:
        if e.proto == "icmp":
            return Tup(t.src, t.icmp_id, t.dst, t.icmp_id)
        return Tup(t.src, t.sport, t.dst, t.dport)
    status = set(e.flags)
    if "UNREPLIED" not in status:
        status.add("SEEN_REPLY")
    text = (f"{e.proto} {e.state + ' ' if e.state else ''}src={e.orig.src} dst={e.orig.dst}"
            + (f" sport={e.orig.sport} dport={e.orig.dport}" if e.orig.sport is not None else "")
            + f" src={e.reply.src} dst={e.reply.dst}"
            + (f" sport={e.reply.sport} dport={e.reply.dport}" if e.reply.sport is not None else "")
            + "".join(f" [{f}]" for f in sorted(e.flags)) + (f" mark={e.mark}" if e.mark else ""))
    return CtEntry(proto=e.proto, orig=tup(e.orig), reply=tup(e.reply), status=status, state=e.state,
                   mark=e.mark, source="snapshot", text=text)


class SnapshotConntrack:
    """Index of one namespace's dumped entries by original and by reply tuple (built once)."""

    __slots__ = ("by_key",)

    def __init__(self, entries: tuple[ConntrackEntry, ...]) -> None:
        self.by_key: dict[Key, tuple[CtEntry, bool]] = {}
        for e in entries:
            if e.proto not in ("tcp", "udp", "sctp", "icmp"):
                continue
            ce = _from_snapshot(e)
            assert ce.reply is not None
            self.by_key.setdefault(key_of(ce.proto, ce.orig), (ce, False))
            self.by_key.setdefault(key_of(ce.proto, ce.reply), (ce, True))


class CtTable:
    """The walk's view of one namespace's conntrack table: snapshot entries plus new ones."""

    __slots__ = ("base", "new")

    def __init__(self, base: SnapshotConntrack | None) -> None:
        self.base = base
        self.new: dict[Key, tuple[CtEntry, bool]] = {}

    def lookup(self, proto: str, t: Tup) -> tuple[CtEntry, bool] | None:
        """(entry, is_reply_direction) for a packet with tuple ``t``."""
        k = key_of(proto, t)
        hit = self.new.get(k)
        if hit is None and self.base is not None:
            hit = self.base.by_key.get(k)
        return hit

    def confirm(self, entry: CtEntry, final: Tup) -> None:
        """Insert a new entry; its reply tuple is the inverse of the packet as it left."""
        entry.reply = final.inverse()
        entry.status.add("CONFIRMED")
        entry.status.add("UNREPLIED")
        self.new[key_of(entry.proto, entry.orig)] = (entry, False)
        self.new[key_of(entry.proto, entry.reply)] = (entry, True)


@dataclass(slots=True)
class CtInfo:
    """The conntrack facts of the packet in the hook being run (``-m conntrack`` reads these)."""

    state: str = "NEW"            # NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED
    entry: CtEntry | None = None
    reply: bool = False           # the packet goes in the reply direction
    active: bool = True           # conntrack runs in this namespace
    confirmed: bool = False       # the entry existed before this packet
