"""The seed's "tcpdump at each hop", interpreted (pure): the interfaces a flow crosses (pod eth0, host veth,
cni0, flannel.1, node eth0, the underlay, then the same on the far side), reading the pcaps written at each
of them, and saying where the packet was last seen and what that means ("seen at cni0 but not at
flannel.1: routing problem").

The probe is recognised exactly: a TCP/UDP source port or an ICMP echo id chosen for it, inside VXLAN
(UDP 8472) as well; ICMP errors quoting it (fragmentation needed, administratively prohibited) are counted
apart, and so are ARP requests from the source with no answer.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field

from podnet.diagnose.facts import LabFacts, PodFacts

VXLAN_PORT = 8472


# -- the path ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CaptureHop:
    netns: str
    dev: str
    node: str                     # node1, underlay
    place: str                    # "pod default/pod-a", "node node1", "underlay"
    kind: str                     # pod, veth, bridge, vxlan, uplink, underlay (dst_ side: same kinds)
    side: str                     # src, wire, dst
    branch: str = ""              # the endpoint (pod key) this hop leads to; "" when shared

    @property
    def label(self) -> str:
        return f"{self.place} {self.dev}" if self.kind != "underlay" else f"underlay {self.dev}"

    def file(self, n: int) -> str:
        who = self.place.split(" ", 1)[-1].split("/")[-1]
        return f"{n:02d}-{who}-{self.dev}.pcap".replace("/", "_")


def _pod_side(p: PodFacts, facts: LabFacts, side: str) -> list[CaptureHop]:
    n = facts.node(p.node)
    own = "" if side == "src" else f"pod:{p.key}"
    shared = "" if side == "src" else f"node:{p.node}"
    hops = [CaptureHop(p.netns, "eth0", p.node, f"pod {p.key}", "pod", side, own),
            CaptureHop(n.netns if n else "", p.host_veth, p.node, f"node {p.node}", "veth", side, own)]
    if facts.bridge_mode:
        hops.append(CaptureHop(n.netns if n else "", "cni0", p.node, f"node {p.node}", "bridge", side, shared))
    return hops if side == "src" else list(reversed(hops))


def _wire(facts: LabFacts, a: str, b: str) -> list[CaptureHop]:
    na, nb = facts.node(a), facts.node(b)
    if na is None or nb is None:
        return []
    branch = f"node:{b}"
    hops = []
    if facts.backend == "vxlan":
        hops.append(CaptureHop(na.netns, "flannel.1", a, f"node {a}", "vxlan", "src", branch))
    hops.append(CaptureHop(na.netns, "eth0", a, f"node {a}", "uplink", "src", branch))
    if facts.bridge_mode and facts.underlay_netns:
        hops.append(CaptureHop(facts.underlay_netns, "br0", "underlay", "underlay", "underlay", "wire", branch))
    hops.append(CaptureHop(nb.netns, "eth0", b, f"node {b}", "uplink", "dst", branch))
    if facts.backend == "vxlan":
        hops.append(CaptureHop(nb.netns, "flannel.1", b, f"node {b}", "vxlan", "dst", branch))
    return hops


def plan_path(facts: LabFacts, src: PodFacts, dsts: list[PodFacts]) -> list[CaptureHop]:
    """Every interface the flow may cross, in order: the source side, then per destination node the wire,
    then per destination pod its side. A hop's ``branch`` says which destinations it leads to."""
    out: list[CaptureHop] = []
    seen: set[tuple[str, str]] = set()

    def add(h: CaptureHop) -> None:
        if (h.netns, h.dev) not in seen and h.netns:
            seen.add((h.netns, h.dev))
            out.append(h)

    for h in _pod_side(src, facts, "src"):
        add(h)
    for d in dsts:
        if d.node != src.node:
            for h in _wire(facts, src.node, d.node):
                add(h)
        for h in _pod_side(d, facts, "dst"):
            if d.node == src.node and h.kind == "bridge":
                continue      # same node: the source's cni0 is already on the path
            add(h)
    return out


def branches(dsts: list[PodFacts]) -> list[tuple[str, str]]:
    return [(d.key, d.node) for d in dsts]


# -- pcap ------------------------------------------------------------------------------------------------
def read_pcap(data: bytes) -> list[bytes]:
    """The frames of a classic pcap file (Ethernet link type); [] for an empty or truncated file."""
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        return []
    frames = []
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            break
        frames.append(data[off:off + incl])
        off += incl
    return frames


@dataclass(frozen=True, slots=True)
class IPInfo:
    src: str
    dst: str
    proto: int
    length: int                   # IP total length
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    quoted: IPInfo | None = None  # ICMP errors: the packet they quote
    inner: IPInfo | None = None   # VXLAN: the encapsulated packet
    mtu: int | None = None        # ICMP fragmentation needed: next-hop MTU


def parse_ip(b: bytes, quoted: bool = False) -> IPInfo | None:
    if len(b) < 20 or b[0] >> 4 != 4:
        return None
    ihl = (b[0] & 0x0F) * 4
    length = struct.unpack("!H", b[2:4])[0]
    proto = b[9]
    src, dst = socket.inet_ntoa(b[12:16]), socket.inet_ntoa(b[16:20])
    l4 = b[ihl:]
    info = IPInfo(src, dst, proto, length)
    if proto in (6, 17, 132) and len(l4) >= 4:
        sport, dport = struct.unpack("!HH", l4[:4])
        inner = None
        if proto == 17 and VXLAN_PORT in (dport,) and len(l4) >= 8 + 8 + 14 and not quoted:
            inner_eth = l4[16:]
            if struct.unpack("!H", inner_eth[12:14])[0] == 0x0800:
                inner = parse_ip(inner_eth[14:])
        return IPInfo(src, dst, proto, length, sport, dport, inner=inner)
    if proto == 1 and len(l4) >= 8:
        t, c = l4[0], l4[1]
        if t in (0, 8):
            return IPInfo(src, dst, proto, length, icmp_type=t, icmp_code=c, icmp_id=struct.unpack("!H", l4[4:6])[0])
        q = parse_ip(l4[8:], quoted=True) if t in (3, 11) and not quoted else None
        mtu = struct.unpack("!H", l4[6:8])[0] if t == 3 and c == 4 else None
        return IPInfo(src, dst, proto, length, icmp_type=t, icmp_code=c, quoted=q, mtu=mtu)
    return info


@dataclass(frozen=True, slots=True)
class Frame:
    ip: IPInfo | None = None
    arp: tuple[int, str, str] | None = None   # (op, sender IP, target IP)


def parse_frame(f: bytes) -> Frame:
    if len(f) < 14:
        return Frame()
    etype = struct.unpack("!H", f[12:14])[0]
    body = f[14:]
    if etype == 0x8100 and len(f) >= 18:
        etype = struct.unpack("!H", f[16:18])[0]
        body = f[18:]
    if etype == 0x0800:
        return Frame(ip=parse_ip(body))
    if etype == 0x0806 and len(body) >= 28:
        op = struct.unpack("!H", body[6:8])[0]
        return Frame(arp=(op, socket.inet_ntoa(body[14:18]), socket.inet_ntoa(body[24:28])))
    return Frame()


# -- recognising the probe ---------------------------------------------------------------------------------
PROTO = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}


@dataclass(frozen=True, slots=True)
class Probe:
    src_ip: str
    dst_ips: frozenset[str]       # the destination and every endpoint it may be DNATed to
    proto: str
    sport: int | None = None      # tcp/udp
    icmp_id: int | None = None
    size: int | None = None       # only packets at least this big count (the full-size probe)

    def _ours(self, ip: IPInfo, forward: bool) -> bool:
        if ip.proto != PROTO[self.proto]:
            return False
        if self.proto == "icmp":
            want = 8 if forward else 0
            return ip.icmp_type == want and ip.icmp_id == self.icmp_id
        return (ip.sport if forward else ip.dport) == self.sport

    def classify(self, ip: IPInfo) -> str | None:
        """forward, reply, error (an ICMP error about our packet), or None."""
        if ip.inner is not None:
            return self.classify(ip.inner)
        if ip.proto == 1 and ip.quoted is not None and ip.icmp_type in (3, 11):
            q = ip.quoted
            if q.proto == PROTO[self.proto] and (q.src == self.src_ip or q.dst in self.dst_ips) and (
                    (self.proto == "icmp" and q.icmp_id == self.icmp_id) or (self.proto != "icmp"
                                                                                and q.sport == self.sport)):
                return "error"
            return None
        if self._ours(ip, True) and (self.size is None or ip.length >= self.size):
            return "forward"
        if self._ours(ip, False):
            return "reply"
        return None


@dataclass
class HopSeen:
    forward: int = 0
    reply: int = 0
    errors: list[str] = field(default_factory=list)
    arp_asked: set[str] = field(default_factory=set)      # targets the source ARPed for
    arp_answered: set[str] = field(default_factory=set)
    frames: int = 0

    def to_json(self) -> dict:
        return {"forward": self.forward, "reply": self.reply, "icmpErrors": sorted(set(self.errors)),
                "arpUnanswered": sorted(self.arp_asked - self.arp_answered), "frames": self.frames}


ICMP_UNREACH = {0: "net unreachable", 1: "host unreachable", 3: "port unreachable", 4: "fragmentation needed",
                9: "net prohibited", 10: "host prohibited", 13: "administratively prohibited"}


def count(frames: list[bytes], probe: Probe) -> HopSeen:
    seen = HopSeen(frames=len(frames))
    for raw in frames:
        f = parse_frame(raw)
        if f.arp is not None:
            op, sender, target = f.arp
            if op == 1 and sender == probe.src_ip:
                seen.arp_asked.add(target)
            elif op == 2:
                seen.arp_answered.add(sender)
            continue
        if f.ip is None:
            continue
        what = probe.classify(f.ip)
        if what == "forward":
            seen.forward += 1
        elif what == "reply":
            seen.reply += 1
        elif what == "error":
            ip = f.ip.inner or f.ip
            why = ICMP_UNREACH.get(ip.icmp_code or 0, f"code {ip.icmp_code}") if ip.icmp_type == 3 else "time exceeded"
            seen.errors.append(f"ICMP {why} from {ip.src}" + (f" (mtu {ip.mtu})" if ip.mtu else ""))
    return seen


# -- what it means ---------------------------------------------------------------------------------------------
def _between(a: CaptureHop, b: CaptureHop | None, mtus: dict[tuple[str, str], int], size: int | None) -> str:
    if b is None:
        return ""
    m = mtus.get((b.netns, b.dev))
    if size and m and size > m and a.kind != "uplink":
        return (f"seen at {a.dev} but not at {b.dev}: {size} B is more than {b.dev}'s mtu {m}, too big for it "
                f"(an MTU problem on {a.node})")
    too_big = ""
    if a.kind == "pod" and b.kind == "veth":
        return f"seen in the pod's eth0 but not at its host veth {b.dev}: the veth pair is broken"
    if a.kind == "veth" and b.kind == "bridge":
        return f"seen at {a.dev} but not at cni0: the veth is not on the bridge (bridge/veth problem)"
    if a.kind == "bridge" and b.kind == "vxlan":
        return f"seen at cni0 but not at flannel.1: a routing problem on {a.node} (a route, FORWARD){too_big}"
    if a.kind == "bridge" and b.kind == "uplink":
        return f"seen at cni0 but not at {b.node} eth0: a routing problem on {a.node}{too_big}"
    if a.kind == "veth" and b.kind == "uplink":
        return f"seen at {a.dev} but not at eth0: a routing problem on {a.node}{too_big}"
    if a.kind == "vxlan" and b.kind == "uplink" and a.side == "src":
        return (f"seen at flannel.1 but not at {a.node} eth0: the VXLAN packet dies on {a.node} (no FDB entry or "
                f"neighbour for the remote VTEP, an OUTPUT firewall){too_big}")
    if a.kind == "uplink" and b.kind == "underlay":
        return f"seen at {a.node} eth0 but not on the underlay: a link problem"
    if (a.kind == "underlay" and b.kind == "uplink") or (a.kind == "uplink" and b.kind == "uplink"):
        return f"seen on the way but not at {b.node} eth0: a physical network problem"
    if a.kind == "uplink" and b.kind == "vxlan" and a.side == "dst":
        return (f"seen at {a.node} eth0 but not at flannel.1: a VXLAN decap problem (a firewall dropping UDP "
                f"{VXLAN_PORT}?)")
    if a.kind in ("vxlan", "uplink") and b.kind in ("bridge", "veth") and b.side == "dst":
        return f"seen at {a.dev} but not at {b.dev}: a routing problem on {a.node} (a route, FORWARD, a policy)"
    if a.kind == "bridge" and b.kind == "veth" and b.side == "dst":
        return (f"seen at cni0 but not at {b.dev}: a bridge/veth problem (FDB, hairpin, a NetworkPolicy in FORWARD)")
    if a.kind == "veth" and b.kind == "pod" and b.side == "dst":
        return f"seen at {a.dev} but not in the pod: a veth problem"
    return f"seen at {a.label} but not at {b.label}"


@dataclass
class Verdict:
    last_forward: int | None      # index into the path
    delivered: bool
    answered: bool
    last_reply: int | None
    meaning: str
    branch: str = ""              # the destination pod the packet went to


def _branch_path(path: list[CaptureHop], branch: tuple[str, str] | None) -> list[int]:
    if branch is None:
        return list(range(len(path)))
    key, node = branch
    return [i for i, h in enumerate(path) if h.branch in ("", f"node:{node}", f"pod:{key}")]


def interpret(path: list[CaptureHop], seen: list[HopSeen], probe: Probe,
              dsts: list[tuple[str, str]] | None = None, mtus: dict[tuple[str, str], int] | None = None) -> Verdict:
    mtus = mtus or {}
    best: tuple[int, str, list[int]] | None = None
    for b in (dsts or [None]):
        idx = _branch_path(path, b)
        hit = [k for k, i in enumerate(idx) if seen[i].forward > 0]
        last = hit[-1] if hit else -1
        if best is None or last > best[0]:
            best = (last, b[0] if b else "", idx)
    assert best is not None
    last_k, branch, idx = best
    errors = sorted({e for s in seen for e in s.errors})
    err = f" ({'; '.join(errors)})" if errors else ""
    if last_k < 0:
        asked = sorted(seen[idx[0]].arp_asked - seen[idx[0]].arp_answered) if idx else []
        arp_hit = [k for k, i in enumerate(idx) if seen[i].arp_asked]
        if arp_hit and arp_hit[-1] + 1 < len(idx):
            # only the source's ARP requests got out: how far they went says where the path breaks
            k = arp_hit[-1]
            nxt = path[idx[k + 1]]
            return Verdict(idx[k], False, False, None, f"only its ARP requests (who-has {', '.join(asked) or '?'}) "
                           f"got out, unanswered: {_between(path[idx[k]], nxt, mtus, None)}", branch)
        if asked:
            return Verdict(None, False, False, None, f"never left the pod: it ARPs for {', '.join(asked)} and nobody "
                           "answers (a wrong route or gateway in the pod, or a detached veth)", branch)
        return Verdict(None, False, False, None, "never seen, not even on the pod's eth0: the pod did not send it "
                       "(no route, a local error)" + err, branch)
    last_i = idx[last_k]
    delivered = last_k == len(idx) - 1 and path[last_i].kind == "pod" and path[last_i].side == "dst"
    # the reply walks the same interfaces back
    rhit = [k for k, i in enumerate(idx) if seen[i].reply > 0]
    answered = bool(rhit) and rhit[0] == 0
    last_reply = idx[rhit[0]] if rhit else None
    if not delivered:
        nxt = path[idx[last_k + 1]] if last_k + 1 < len(idx) else None
        return Verdict(last_i, False, False, last_reply, _between(path[last_i], nxt, mtus, probe.size) + err, branch)
    if answered:
        return Verdict(last_i, True, True, last_reply, "delivered, and the reply came back to the pod", branch)
    if not rhit:
        return Verdict(last_i, True, False, None, "delivered, but no reply was seen anywhere: the destination did not "
                       "answer (nothing listening? a local firewall?)" + err, branch)
    # the reply stopped on its way back: between idx[rhit[0]] and the hop before it
    first_k = rhit[0]
    prev = path[idx[first_k - 1]] if first_k > 0 else None
    at = path[idx[first_k]]
    why = _between_back(at, prev)
    return Verdict(last_i, True, False, idx[first_k], f"delivered, but the reply stops at {at.label}: {why}" + err,
                   branch)


def _between_back(a: CaptureHop, b: CaptureHop | None) -> str:
    if b is None:
        return "it never reaches the source pod"
    if a.kind == "bridge" and b.kind == "veth":
        return f"seen at cni0 but not at {b.dev}: {b.dev} is not on the bridge, or the FDB lost the pod's MAC"
    if a.kind == "veth" and b.kind == "pod":
        return f"seen at {a.dev} but not in the pod: a veth problem"
    return f"seen at {a.label} but not at {b.label}"


def dst_ips(dst_ip: str, endpoints: list[str]) -> frozenset[str]:
    out = {dst_ip, *endpoints}
    return frozenset(str(ipaddress.ip_address(x)) for x in out)
