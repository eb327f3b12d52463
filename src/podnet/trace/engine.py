"""Answer one trace question over a snapshot: resolve SRC and DST, walk every possible path (random
load balancing forks the walk), walk each delivered packet's reply back with the conntrack state
the forward packet left (reverse NAT), and assemble the typed :class:`TraceResult`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podnet.errors import PodnetError
from podnet.sim.choices import Chooser, explore
from podnet.sim.packet import PROTOCOLS, Packet, make_packet
from podnet.sim.routing import UNSPECIFIED
from podnet.sim.snapshot import Snapshot
from podnet.sim.walk import Walker, WalkResult
from podnet.sim.world import World
from podnet.trace.endpoints import Origin, Target, resolve_destination, resolve_source
from podnet.trace.model import Choice, Disposition, Flow, Outcome, Trace, TraceResult
from podnet.trace.places import Places, infer

MAX_OUTCOMES = 64


@dataclass(frozen=True, slots=True)
class Question:
    src: str
    dst: str
    proto: str = "tcp"
    size: int | None = None
    endpoint: str | None = None       # pick the branch that goes to this endpoint (IP or IP:PORT)
    sport: int | None = None
    at: str | None = None             # where a raw source IP enters: NODE[:IFACE]
    reply: bool = True


def _trace_of(w: WalkResult, places: Places) -> Trace:
    at = places.namer(w.end_ns)[1] if w.end_ns else None
    return Trace(w.disposition, w.reason, w.summary, w.hops, w.final.summary(), at, w.warnings)


def _run_forward(world: World, places: Places, origin: Origin, target: Target, q: Question,
                 chooser: Chooser) -> WalkResult:
    src = origin.ip if origin.ip is not None else UNSPECIFIED
    pkt = make_packet(src, target.ip, q.proto, target.port, q.sport, q.size)
    w = Walker(world, places.namer, chooser)
    if origin.entry_dev is not None:
        return w.run(lambda: w.enter(origin.netns, origin.entry_dev or "", pkt), pkt)
    return w.run(lambda: w.originate(origin.netns, pkt), pkt)


def _reply_trace(r: WalkResult, places: Places, fwd: WalkResult, origin: Origin, sent_to: str) -> Trace:
    """The reply's trace, judged from the client's side (it must come back un-NATed)."""
    trace = _trace_of(r, places)
    got = fwd.delivered_to
    if r.disposition is Disposition.DELIVERED and r.delivered_to is not None and got is not None:
        seen = r.delivered_to.endpoint("src")
        if r.end_ns != origin.netns:
            summary = f"the reply reaches {places.namer(r.end_ns or '')[1]}, not the client {origin.label}"
            trace = Trace(Disposition.DROPPED, None, summary, trace.hops, trace.final, trace.at, trace.warnings)
        elif seen != sent_to:
            summary = (f"the reply reaches {origin.label} from {seen}, but it sent to {sent_to}: the client "
                       "drops it (not un-NATed)")
            trace = Trace(Disposition.DROPPED, None, summary, trace.hops, trace.final, trace.at, trace.warnings)
        else:
            summary = f"the reply reaches {origin.label} from {seen}" + (
                " (un-NATed)" if got.endpoint("dst") != seen else "")
            trace = Trace(Disposition.DELIVERED, None, summary, trace.hops, trace.final, trace.at, trace.warnings)
    return trace


@dataclass(slots=True)
class Walks:
    """Everything walked for one possible path: the packet, its reply, and (for --verify) the
    packets that follow in an established connection."""

    forward: WalkResult
    chooser: Chooser
    reply: WalkResult | None = None
    later: list[WalkResult] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Prepared:
    world: World
    places: Places
    origin: Origin
    target: Target
    q: Question


def prepare(snapshot: Snapshot | World, places: Places | None, q: Question) -> Prepared:
    world = snapshot if isinstance(snapshot, World) else World(snapshot)
    if places is None:
        places = infer(world.snapshot)
    if q.proto not in PROTOCOLS:
        raise PodnetError(f"protocol {q.proto!r} is not one of {', '.join(PROTOCOLS)}", field="-p")
    origin = resolve_source(q.src, places, world, q.at)
    target = resolve_destination(q.dst, places, origin)
    if q.proto != "icmp" and target.port is None:
        raise PodnetError(f"{q.dst!r} needs a port for {q.proto} (DST:PORT)", field="DST")
    if q.proto == "icmp":
        target = Target(target.ip, None, target.label, target.service, target.dns)
    if q.size is not None and not 28 <= q.size <= 65535:
        raise PodnetError(f"--size {q.size}: an IPv4 packet is 28 to 65535 bytes", field="--size")
    return Prepared(world, places, origin, target, q)


def walk_all(p: Prepared, followups: bool = False) -> tuple[list[Walks], bool]:
    """Every possible path (forks at random decisions), each with its reply."""
    leaves, truncated = explore(lambda ch: _run_forward(p.world, p.places, p.origin, p.target, p.q, ch),
                                MAX_OUTCOMES)
    out: list[Walks] = []
    for fwd, ch in leaves:
        ws = Walks(fwd, ch)
        if p.q.reply and fwd.disposition is Disposition.DELIVERED and fwd.delivered_to is not None and fwd.end_ns:
            answer = fwd.delivered_to.reply()
            rpkt = answer.copy()                  # the walk rewrites the packet it carries
            w = Walker(p.world, p.places.namer, Chooser(), ct=fwd.ct, reply=True)
            ws.reply = w.run(lambda w=w, rpkt=rpkt, end=fwd.end_ns: w.originate(end, rpkt), rpkt)
            if followups and fwd.sent is not None and ws.reply.disposition is Disposition.DELIVERED:
                ws.later = _followups(p, fwd, answer)
        elif followups and fwd.end_ns and fwd.disposition in ERROR_ANSWERS:
            err = _error_answer(p, fwd)
            if err is not None:
                ws.later = [err]
        out.append(ws)
    return out, truncated


ERROR_ANSWERS = (Disposition.NO_LISTENER, Disposition.REJECTED, Disposition.TOO_BIG)


def _error_answer(p: Prepared, fwd: WalkResult) -> WalkResult | None:
    """What the kernel sends back when it refuses the packet: a TCP reset, or an ICMP error (walked
    as a plain ICMP packet from the refusing namespace: good enough to know the rules it meets)."""
    last = fwd.final.copy()
    reset = last.proto == "tcp" and (fwd.disposition is Disposition.NO_LISTENER or "tcp-reset" in fwd.summary)
    if reset:
        pkt = last.reply()
        pkt.tcp_flags = frozenset({"RST", "ACK"})
    else:
        pkt = make_packet(UNSPECIFIED if fwd.disposition is not Disposition.NO_LISTENER else last.dst, last.src,
                          "icmp", size=56)
        pkt.icmp_type, pkt.icmp_code = 3, 3
    w = Walker(p.world, p.places.namer, Chooser(), ct=fwd.ct, reply=True)
    return w.run(lambda: w.originate(fwd.end_ns or "", pkt), pkt)


def _followups(p: Prepared, fwd: WalkResult, rpkt: Packet) -> list[WalkResult]:
    """The next packet each way of the now established connection (an ACK, a second datagram)."""
    assert fwd.sent is not None and fwd.end_ns is not None
    flags = frozenset({"ACK"}) if p.q.proto == "tcp" else frozenset()
    again = fwd.sent.copy()
    again.tcp_flags, again.mark = flags, 0
    w1 = Walker(p.world, p.places.namer, Chooser(), ct=fwd.ct, reply=True)
    if p.origin.entry_dev is not None:
        r1 = w1.run(lambda: w1.enter(p.origin.netns, p.origin.entry_dev or "", again), again)
    else:
        r1 = w1.run(lambda: w1.originate(p.origin.netns, again), again)
    back = rpkt.copy()
    back.tcp_flags, back.mark = flags, 0
    w2 = Walker(p.world, p.places.namer, Chooser(), ct=fwd.ct, reply=True)
    r2 = w2.run(lambda: w2.originate(fwd.end_ns or "", back), back)
    return [r1, r2]


def run_trace(snapshot: Snapshot | World, places: Places | None, q: Question) -> TraceResult:
    """Trace ``q`` over a snapshot (or a prepared :class:`World`, reused across questions)."""
    p = prepare(snapshot, places, q)
    walks, truncated = walk_all(p)
    return assemble(p, walks, truncated)


def assemble(p: Prepared, walks: list[Walks], truncated: bool) -> TraceResult:
    q, origin, target, places = p.q, p.origin, p.target, p.places
    first = walks[0].forward
    sent = first.sent or make_packet(UNSPECIFIED, target.ip, q.proto, target.port, q.sport, q.size)
    outcomes: list[Outcome] = []
    for ws in walks:
        reply = _reply_trace(ws.reply, places, ws.forward, origin, sent.endpoint("dst")) if ws.reply else None
        choices = tuple(Choice(d.where, d.label, d.probability) for d in ws.chooser.made)
        outcomes.append(Outcome(ws.chooser.probability, ws.forward.endpoint, choices, _trace_of(ws.forward, places),
                                reply))
    chosen = 0
    if q.endpoint:
        chosen = _pick(outcomes, q.endpoint)
        outcomes = [outcomes[chosen]]
        chosen = 0
    src_ip = sent.src if sent.src != UNSPECIFIED else None
    flow = Flow(src=q.src, dst=q.dst, proto=q.proto, src_ip=str(src_ip) if src_ip else "?", dst_ip=str(target.ip),
                sport=sent.sport if sent.has_ports else None, dport=target.port if sent.has_ports else None,
                size=sent.size, start_netns=origin.netns, start_place=origin.label,
                start_node=places.namer(origin.netns)[0], entry_dev=origin.entry_dev,
                icmp_type=sent.icmp_type)
    return TraceResult(flow, tuple(outcomes), chosen, target.dns, truncated)


def _pick(outcomes: list[Outcome], endpoint: str) -> int:
    want = endpoint.strip()
    for i, o in enumerate(outcomes):
        if o.endpoint is None:
            continue
        if o.endpoint == want or o.endpoint.rsplit(":", 1)[0] == want:
            return i
    possible = sorted({o.endpoint for o in outcomes if o.endpoint})
    raise PodnetError(f"--endpoint {endpoint}: not a possible endpoint of this flow (possible: "
                      f"{', '.join(possible) or 'none: no DNAT on the way'})", field="--endpoint")
