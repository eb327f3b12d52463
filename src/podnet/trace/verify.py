"""Model against kernel, the pure half of ``podnet trace --verify``: what to watch (which namespaces'
rule counters, which interfaces to capture on, with which filter), and the comparison of what the
kernel did with what the model predicted, step by step. The side effects (sending the packet,
reading counters, conntrack and captures) are in ``podnet.dataplane.verify``.

Checks, for the path the kernel actually took (the endpoint it chose, read from its conntrack entry):
- the answer the sender got (connected, refused, timeout, message too long...) fits the disposition;
- every rule the model says the packet (and its reply) matched counted it;
- no rule the model did not predict for any packet of the exchange counted in a NAT table or
  dropped/rejected something;
- the conntrack entry's NAT is the predicted one (and its endpoint one of the predicted endpoints);
- the packet was captured on every interface the model says it crossed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from podnet.sim.conntrack_sim import CtEntry
from podnet.sim.snapshot import ConntrackEntry
from podnet.sim.walk import WalkResult
from podnet.trace.engine import Walks
from podnet.trace.model import Disposition, RuleRef, StepKind, TraceResult

RuleKey = tuple[str, str, str, int]          # backend, table, chain, rule number (iptables) or handle (nft)
Counters = dict[RuleKey, int]                # packets per rule

EXPECTED_PROBE = {
    Disposition.DELIVERED: {"connected", "answer"},
    Disposition.REJECTED: {"refused", "unreachable", "prohibited"},
    Disposition.NO_LISTENER: {"refused"},
    Disposition.TOO_BIG: {"emsgsize", "fragneeded"},
    Disposition.DROPPED: {"timeout"},
    Disposition.NEIGHBOUR_UNREACHABLE: {"timeout", "unreachable"},
    Disposition.NO_ROUTE: {"unreachable", "timeout"},
    Disposition.LOOP: {"timeout"},
}


@dataclass(frozen=True, slots=True)
class CaptureSpec:
    netns: str
    dev: str
    filter: str                   # a tcpdump expression
    packet: str                   # the packet as predicted there
    outcomes: tuple[int, ...]     # which predicted paths cross it


@dataclass(frozen=True, slots=True)
class ProbeResult:
    result: str                   # connected, answer, refused, unreachable, prohibited, timeout, emsgsize,
    #                               fragneeded, error
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    probe: ProbeResult
    before: dict[str, Counters]
    after: dict[str, Counters]
    conntrack: dict[str, tuple[ConntrackEntry, ...]]
    captured: dict[tuple[str, str, str], bool]     # (netns, dev, filter) -> seen


@dataclass(frozen=True, slots=True)
class Check:
    what: str                     # probe, rule, unexpected-rule, conntrack, capture, endpoint
    ok: bool
    detail: str
    netns: str | None = None


@dataclass(slots=True)
class VerifyReport:
    result: TraceResult
    checks: list[Check] = field(default_factory=list)
    kernel_endpoint: str | None = None
    skipped: str | None = None    # why nothing could be checked

    @property
    def agree(self) -> bool:
        return self.skipped is None and all(c.ok for c in self.checks)

    def disagreements(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def text(self) -> str:
        if self.skipped:
            return f"verify   not done: {self.skipped}\n"
        head = "AGREES" if self.agree else "DISAGREES"
        n_ok = sum(c.ok for c in self.checks)
        lines = [f"verify   the kernel {head} with the model ({n_ok}/{len(self.checks)} checks)"
                 + (f"; the kernel chose {self.kernel_endpoint}" if self.kernel_endpoint else "")]
        for c in self.checks:
            if not c.ok:
                lines.append(f"  MISMATCH {c.what}: {c.detail}" + (f" [{c.netns}]" if c.netns else ""))
        for c in self.checks:
            if c.ok and c.what in ("probe", "endpoint", "conntrack"):
                lines.append(f"  ok       {c.what}: {c.detail}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"agree": self.agree, "skipped": self.skipped, "kernelEndpoint": self.kernel_endpoint,
                "checks": [{"what": c.what, "ok": c.ok, "detail": c.detail, "netns": c.netns} for c in self.checks]}


# -- what to watch ---------------------------------------------------------------------------------
def rule_key(r: RuleRef) -> RuleKey | None:
    if r.num == 0:
        return None
    if r.backend == "nftables":
        return None if r.handle is None else ("nftables", r.table, r.chain, r.handle)
    return ("iptables", r.table, r.chain, r.num)


def _rules(w: WalkResult) -> list[tuple[str, RuleRef]]:
    return [(h.netns, r) for h in w.hops for s in h.steps if s.kind is StepKind.NETFILTER for r in s.rules]


def namespaces(walks: list[Walks]) -> list[str]:
    seen: dict[str, None] = {}
    for ws in walks:
        for w in (ws.forward, ws.reply, *ws.later):
            if w is not None:
                for h in w.hops:
                    seen.setdefault(h.netns, None)
    return list(seen)


def _filter_of(packet: str) -> str | None:
    """tcpdump expression for a packet summary ``SRC[:PORT] -> DST[:PORT] PROTO ...`` (source port
    left out: MASQUERADE --random-fully and VXLAN's hashed source port may differ)."""
    parts = packet.split()
    if len(parts) < 4 or parts[1] != "->":
        return None

    def host_port(s: str) -> tuple[str, str | None]:
        if s.count(":") == 1:
            h, _, p = s.partition(":")
            return h, p
        return s, None

    src, _ = host_port(parts[0])
    dst, dport = host_port(parts[2])
    proto = parts[3].lower()
    try:
        ipaddress.ip_address(src)
        ipaddress.ip_address(dst)
    except ValueError:
        return None
    expr = f"{proto} and src host {src} and dst host {dst}"
    if dport is not None and proto in ("tcp", "udp", "sctp"):
        expr += f" and dst port {dport}"
    return expr


def capture_plan(walks: list[Walks]) -> list[CaptureSpec]:
    """One capture per interface a predicted forward path enters through a link."""
    specs: dict[tuple[str, str, str], list[int]] = {}
    packets: dict[tuple[str, str, str], str] = {}
    for i, ws in enumerate(walks):
        hops = ws.forward.hops
        for k, h in enumerate(hops):
            for s in h.steps:
                if s.kind is not StepKind.LINK or not s.dev_in or not s.packet or k + 1 >= len(hops):
                    continue
                flt = _filter_of(s.packet)
                if flt is None:
                    continue
                key = (hops[k + 1].netns, s.dev_in, flt)
                specs.setdefault(key, []).append(i)
                packets[key] = s.packet
    return [CaptureSpec(ns, dev, flt, packets[(ns, dev, flt)], tuple(sorted(set(idx))))
            for (ns, dev, flt), idx in specs.items()]


# -- comparison --------------------------------------------------------------------------------------
def _tuple_of(w: WalkResult) -> tuple[str, int | None, str, int | None] | None:
    s = w.sent
    if s is None:
        return None
    return str(s.src), s.sport if s.has_ports else None, str(s.dst), s.dport if s.has_ports else None


def _kernel_entry(entries: tuple[ConntrackEntry, ...], proto: str,
                  tup: tuple[str, int | None, str, int | None]) -> ConntrackEntry | None:
    src, sport, dst, dport = tup
    for e in entries:
        if e.proto != proto or str(e.orig.src) != src or str(e.orig.dst) != dst:
            continue
        if proto != "icmp" and (e.orig.sport != sport or e.orig.dport != dport):
            continue
        return e
    return None


def _predicted_entries(w: WalkResult) -> dict[str, CtEntry]:
    out: dict[str, CtEntry] = {}
    t = _tuple_of(w)
    if t is None or w.sent is None:
        return out
    for ns, table in w.ct.items():
        for (proto, src, sport, dst, dport), (e, is_reply) in table.new.items():
            if not is_reply and proto == w.sent.proto and (str(src), str(dst)) == (t[0], t[2]) and \
                    (proto == "icmp" or (sport, dport) == (t[1], t[3])):
                out[ns] = e
    return out


def compare(walks: list[Walks], plan: list[CaptureSpec], obs: Observation, result: TraceResult,
            proto: str) -> VerifyReport:
    report = VerifyReport(result)
    chosen = 0
    tup = _tuple_of(walks[0].forward)
    # 1. which path did the kernel take? Its conntrack entry in the namespace that DNATed says.
    if tup is not None and any(ws.forward.endpoint for ws in walks):
        kernel_ep = None
        for ns, entries in obs.conntrack.items():
            e = _kernel_entry(entries, proto, tup)
            if e is not None and (str(e.reply.src) != tup[2] or e.reply.sport != tup[3]):
                kernel_ep = f"{e.reply.src}:{e.reply.sport}" if e.reply.sport is not None else str(e.reply.src)
                report.checks.append(Check("endpoint", True, f"conntrack in {ns}: DNAT to {kernel_ep}", ns))
                break
        report.kernel_endpoint = kernel_ep
        if kernel_ep is not None:
            idx = [i for i, ws in enumerate(walks) if ws.forward.endpoint == kernel_ep]
            if idx:
                chosen = idx[0]
            else:
                predicted = ", ".join(sorted({ws.forward.endpoint or "-" for ws in walks}))
                report.checks[-1] = Check("endpoint", False, f"the kernel DNATed to {kernel_ep}; the model "
                                          f"predicted {predicted}")
    ws = walks[chosen]
    fwd = ws.forward
    report.result = TraceResult(result.flow, result.outcomes, chosen if len(result.outcomes) == len(walks) else 0,
                                result.dns, result.truncated, result.warnings)
    # 2. the sender's answer
    disp = fwd.disposition
    if disp is Disposition.DELIVERED and ws.reply is not None and ws.reply.disposition is not Disposition.DELIVERED:
        expected = {"timeout"}
    else:
        expected = set(EXPECTED_PROBE.get(disp, set()))
        if proto == "udp" and disp in (Disposition.DELIVERED, Disposition.TOO_BIG):
            expected.add("timeout")       # a UDP listener need not answer; an ICMP error may not come back
    got = obs.probe.result
    ok = not expected or got in expected
    report.checks.append(Check("probe", ok, f"model: {disp.value}; the sender got {got}"
                               + (f" ({obs.probe.detail})" if obs.probe.detail else "")
                               + ("" if ok else f", expected {' or '.join(sorted(expected))}")))
    # 3. rule counters
    required: list[tuple[str, RuleRef]] = _rules(fwd)
    answered = not (proto == "udp" and got != "answer")     # a UDP listener may stay silent
    if ws.reply is not None and disp is Disposition.DELIVERED and answered:
        required += _rules(ws.reply)
    allowed: set[tuple[str, RuleKey]] = set()
    for other in walks:
        for w in (other.forward, other.reply, *other.later):
            if w is not None:
                allowed.update((ns, k) for ns, r in _rules(w) if (k := rule_key(r)) is not None)
    seen_req: set[tuple[str, RuleKey]] = set()
    for ns, r in required:
        k = rule_key(r)
        if k is None or (ns, k) in seen_req:
            continue
        seen_req.add((ns, k))
        if k not in obs.after.get(ns, {}):
            continue          # nftables rules without a counter statement cannot be checked
        delta = obs.after[ns][k] - obs.before.get(ns, {}).get(k, 0)
        label = f"{r.table}/{r.chain} #{r.num}" + (f' "{r.comment}"' if r.comment else "")
        report.checks.append(Check("rule", delta > 0, f"{label} -> {r.target or '(no target)'}: "
                                   + (f"counted {delta}" if delta > 0 else "predicted, but its counter did not move"),
                                   ns))
    targets = {(ns, rule_key(r)): r for w in (fwd, ws.reply, *ws.later) if w is not None for ns, r in _rules(w)}
    for ns, after in obs.after.items():
        before = obs.before.get(ns, {})
        for k, n in after.items():
            delta = n - before.get(k, 0)
            if delta <= 0 or (ns, k) in allowed:
                continue
            backend, table, chain, num = k
            nat_table = table == "nat" or (backend == "nftables" and ("nat" in chain or "service" in chain
                                                                      or "endpoint" in chain))
            tgt = targets.get((ns, k))
            if nat_table or (tgt is not None and tgt.target in ("DROP", "REJECT")):
                report.checks.append(Check("unexpected-rule", False, f"{table}/{chain} #{num} counted {delta} "
                                           "packet(s); no packet of the predicted exchange matches it", ns))
    # 4. conntrack NAT
    for ns, pe in _predicted_entries(fwd).items():
        if not (pe.dnat or pe.snat) or pe.reply is None:
            continue
        ke = _kernel_entry(obs.conntrack.get(ns, ()), proto, tup) if tup else None
        if ke is None:
            report.checks.append(Check("conntrack", False, f"no conntrack entry for {pe.orig.text()}", ns))
            continue
        ok = str(ke.reply.src) == str(pe.reply.src) and str(ke.reply.dst) == str(pe.reply.dst) and (
            proto == "icmp" or ke.reply.sport == pe.reply.sport)
        report.checks.append(Check("conntrack", ok, f"{pe.orig.text()}: kernel reply {ke.reply.src}:{ke.reply.sport}"
                                   f" -> {ke.reply.dst}, model {pe.reply.text()}", ns))
    # 5. captures on the way the kernel took
    for c in plan:
        if chosen not in c.outcomes:
            continue
        seen = obs.captured.get((c.netns, c.dev, c.filter), False)
        report.checks.append(Check("capture", seen, f"{c.dev} ({c.filter}): "
                                   + ("captured" if seen else "nothing captured"), c.netns))
    return report
