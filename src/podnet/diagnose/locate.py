"""Where a failing probe's packet stops, and why: the same flow traced by the simulator over the live
snapshot (``podnet trace``), its last hop and the rule, route, neighbour, FDB or conntrack entry that
decided it, matched to a cause id (pure).

When the trace explains the failure by itself (a DROP rule, no route, a hairpin drop, a too-big packet)
the cause follows from it; the state checks' findings add the detail (which sysctl, which veth, which
process). When the simulator predicts delivery but the real probe failed, the findings on the predicted
path are the suspects; without any, the cause is ``unexplained`` and the evidence says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from podnet.diagnose import catalogue
from podnet.diagnose.facts import LabFacts, PodFacts
from podnet.diagnose.report import Finding, ProbeResult, Where
from podnet.errors import PodnetError
from podnet.trace.engine import Question, run_trace
from podnet.trace.model import Disposition, DropReason, RuleRef, Step, StepKind, Trace, TraceResult
from podnet.trace.places import Places

# when the trace alone does not name the cause, the findings on its path are tried in this order
PATH_PRIORITY = ("cni-veth-detached", "cni-pod-route", "hairpin-off", "br-netfilter-off", "mtu-mismatch",
                 "vxlan-blocked", "bgp-session-down", "stale-conntrack", "service-rules-missing", "kube-proxy-down",
                 "ip-forward-off", "netpol-blocking", "dns-resolv-conf", "dns-down", "cni-agent-down")


@dataclass
class Located:
    cause: str
    summary: str
    where: Where | None
    evidence: list[str]
    trace: dict | None


def question_for(src: PodFacts, probe: ProbeResult) -> Question:
    dst = f"{probe.dst}:{probe.port}" if probe.port is not None and probe.proto != "icmp" else probe.dst
    size = probe.size if probe.kind == "ping-df" else None
    return Question(src=src.netns, dst=dst, proto=probe.proto, size=size, sport=probe.sport)


def _failing(res: TraceResult) -> tuple[Trace, str, str | None] | None:
    """The first outcome that does not make it: (its forward or reply trace, "forward"/"reply", endpoint)."""
    for o in res.outcomes:
        if not o.forward.disposition.ok:
            return o.forward, "forward", o.endpoint
    for o in res.outcomes:
        if o.reply is not None and not o.reply.disposition.ok:
            return o.reply, "reply", o.endpoint
    return None


def _numbered(t: Trace) -> list[tuple[int, str, str, str, Step]]:
    """(number, node, place, netns, step) as the text renderer numbers them."""
    out = []
    n = 0
    for hop in t.hops:
        for s in hop.steps:
            if s.text:
                n += 1
                out.append((n, hop.node, hop.place, hop.netns, s))
    return out


def _deciding_rule(t: Trace) -> tuple[RuleRef, str] | None:
    for hop in reversed(t.hops):
        for s in reversed(hop.steps):
            if s.kind == StepKind.NETFILTER and s.verdict in ("DROP", "REJECT") and s.rules:
                return s.rules[-1], hop.node
    return None


def _has_dnat(res_trace: Trace) -> bool:
    return any(s.nat is not None and s.nat.kind == "dnat" for h in res_trace.hops for s in h.steps)


def _path_netns(t: Trace) -> list[str]:
    return list(dict.fromkeys(h.netns for h in t.hops))


def _devs(t: Trace) -> set[str]:
    return {d for h in t.hops for s in h.steps for d in (s.dev_in, s.dev_out) if d}


def _pick_finding(findings: list[Finding], cause: str, node: str | None = None,
                  netns: list[str] | None = None) -> Finding | None:
    cands = [f for f in findings if f.cause == cause]
    if node is not None:
        at = [f for f in cands if f.where is not None and f.where.node == node]
        if at:
            return at[0]
    if netns is not None:
        on = [f for f in cands if f.where is not None and f.where.netns in netns]
        if on:
            return on[0]
    return cands[0] if cands else None


def trace_summary(res: TraceResult, t: Trace | None, direction: str, where: Where | None) -> dict:
    return {"question": {"src": res.flow.src, "dst": res.flow.dst, "proto": res.flow.proto, "size": res.flow.size},
            "flow": res.flow.text, "outcomes": len(res.outcomes),
            "failing": None if t is None else {"direction": direction, "disposition": t.disposition.value,
                                                "reason": t.reason.value if t.reason else None, "summary": t.summary,
                                                "at": t.at, "where": where.to_json() if where else None}}


def locate(facts: LabFacts, world, places: Places, src: PodFacts, probe: ProbeResult,
           findings: list[Finding]) -> Located:
    """The cause of one failing probe."""
    loc = _trace_cause(facts, world, places, src, probe, findings)
    if probe.kind != "dns":
        return loc
    # DNS: the resolver's own configuration first (the query may never go where it should), then CoreDNS
    lookup = f"lookup of {probe.target}: {probe.outcome} ({probe.detail})"
    rc = _pick_finding(findings, "dns-resolv-conf", netns=[src.netns])
    if rc is not None and rc.where is not None and rc.where.netns == src.netns:
        return Located("dns-resolv-conf", rc.summary, rc.where, [lookup, *loc.evidence], loc.trace)
    down = _pick_finding(findings, "dns-down")
    if down is not None:
        return Located("dns-down", down.summary, down.where, [lookup, *loc.evidence], loc.trace)
    if probe.outcome == "wrong-answer":
        return Located("unexplained", f"the cluster DNS answers {probe.target} with the wrong address", None,
                       [lookup], loc.trace)
    return loc


def _trace_cause(facts: LabFacts, world, places: Places, src: PodFacts, probe: ProbeResult,
                 findings: list[Finding]) -> Located:
    q = question_for(src, probe)
    try:
        res = run_trace(world, places, q)
    except PodnetError as e:
        return _fallback(findings, [], set(), probe, f"the flow could not be traced: {e}", None)
    fail = _failing(res)
    if fail is None:
        paths = [ns for o in res.outcomes for tr in (o.forward, o.reply) if tr is not None for ns in _path_netns(tr)]
        devs = {d for o in res.outcomes for tr in (o.forward, o.reply) if tr is not None for d in _devs(tr)}
        return _fallback(findings, paths, devs, probe, "the kernel state predicts delivery, yet the real probe "
                         f"failed ({probe.outcome})", trace_summary(res, None, "forward", None))
    t, direction, endpoint = fail
    rows = _numbered(t)
    last = rows[-1] if rows else None
    dev = None
    if last is not None:
        dev = last[4].dev_out or last[4].dev_in
    hop_no = last[0] if last else None
    where = Where(last[1], last[2], last[3], dev, hop_no) if last else None
    prefix = "r" if direction == "reply" else ""
    ev = [f"trace {res.flow.text} ({direction}{', endpoint ' + endpoint if endpoint else ''}): "
          f"{t.disposition.value.upper().replace('_', ' ')} at step {prefix}{hop_no} in {where.place if where else '?'}"
          f": {t.summary}"]
    tsum = trace_summary(res, t, direction, where)
    rule = _deciding_rule(t)
    if rule is not None:
        ref, node = rule
        ev.append(f"{node} {ref.label}: {ref.text or ref.target}" + (f'  ("{ref.comment}")' if ref.comment and
                                                                      ref.comment not in (ref.text or "") else ""))
    elif last is not None and last[4].entry:
        ev.append(f"{last[1]}: {last[4].entry}")
    cause_id, summary = _classify(facts, t, direction, rule[0] if rule else None, where, res, probe, src, findings)
    if cause_id is None:
        paths = _path_netns(t)
        return _fallback(findings, paths, _devs(t), probe, t.summary, tsum, ev, where)
    return Located(cause_id, summary, where, ev, tsum)


def _classify(facts: LabFacts, t: Trace, direction: str, rule: RuleRef | None, where: Where | None,
              res: TraceResult, probe: ProbeResult, src: PodFacts, findings: list[Finding]
              ) -> tuple[str | None, str]:
    d, reason = t.disposition, t.reason
    at = where.place if where else "?"
    if d == Disposition.TOO_BIG:
        return "mtu-mismatch", f"{probe.size or ''} B packets are too big for the path at {at}: {t.summary}"
    if reason == DropReason.HAIRPIN_OFF:
        return "hairpin-off", f"the packet must go back out the port it came in on, and hairpin is off: {t.summary}"
    if d in (Disposition.DROPPED, Disposition.REJECTED) and rule is not None:
        text = f"{rule.chain} {rule.text} {rule.comment or ''}"
        if rule.chain.startswith("KUBE-NP") or "NetworkPolic" in text or "policies selecting" in text \
                or "default deny" in text:
            return "netpol-blocking", f"a NetworkPolicy rule at {at} denies it: " + (rule.comment or rule.text)
        if "8472" in text or ":8472 " in t.final:
            return "vxlan-blocked", f"the VXLAN packet (UDP 8472) is dropped at {at}"
        if "has no endpoints" in text:
            dns = facts.service_by_ip(facts.dns_ip or "")
            if dns is not None and (probe.dst == dns.cluster_ip) and _pick_finding(findings, "dns-down"):
                return "dns-down", f"kube-dns has no endpoints: {rule.comment}"
            return "no-endpoints", f"the Service has no ready endpoints: {rule.comment or rule.text}"
    if d in (Disposition.NEIGHBOUR_UNREACHABLE, Disposition.NO_ROUTE) and where is not None \
            and where.netns == src.netns:
        return "cni-pod-route", f"the pod itself can't send it: {t.summary}"
    sp = facts.service_by_ip(probe.dst, probe.port, probe.proto) if probe.port else None
    if sp is not None and direction == "forward" and not _has_dnat(t) and d in (
            Disposition.NEIGHBOUR_UNREACHABLE, Disposition.NO_ROUTE, Disposition.EXITS_NETWORK, Disposition.DROPPED,
            Disposition.REJECTED):
        kp = _pick_finding(findings, "kube-proxy-down", node=src.node)
        if kp is not None and kp.where is not None and kp.where.node == src.node:
            return "kube-proxy-down", (f"no rule on {src.node} DNATs {sp.label} ({sp.cluster_ip}:{sp.port}), so the "
                                       f"packet goes to the default gateway and is lost; kube-proxy-{src.node} is not "
                                       "running")
        srm = _pick_finding(findings, "service-rules-missing", node=src.node)
        if (srm is not None and srm.where is not None and srm.where.node == src.node) or d not in (
                Disposition.DROPPED, Disposition.REJECTED):
            return "service-rules-missing", (f"no rule on {src.node} DNATs {sp.label} ({sp.cluster_ip}:{sp.port}): "
                                             "the packet goes to the default gateway instead, and is lost")
    if d in (Disposition.NEIGHBOUR_UNREACHABLE, Disposition.NO_ROUTE, Disposition.EXITS_NETWORK):
        stale = [s for h in t.hops for s in h.steps if s.kind == StepKind.CONNTRACK and "DNAT" in s.text.upper()]
        if stale and _pick_finding(findings, "stale-conntrack"):
            return "stale-conntrack", f"an existing conntrack entry sends it to a gone endpoint: {t.summary}"
        if facts.backend == "bgp" and _pick_finding(findings, "bgp-session-down"):
            return "bgp-session-down", f"no route to the pod's node at {at} (BGP withdrew it): {t.summary}"
        return None, ""
    if d == Disposition.DROPPED and reason == DropReason.NOT_FOR_HOST:
        return None, ""      # a detached veth: the path's findings name it
    if d == Disposition.NO_LISTENER:
        return "no-listener", f"the packet arrives, nothing listens: {t.summary}"
    if direction == "reply" and "not un-NATed" in t.summary and _pick_finding(findings, "br-netfilter-off"):
        return "br-netfilter-off", ("the reply is bridged past iptables, so it is not un-DNATed and the client "
                                    f"drops it: {t.summary}")
    return None, ""


def _fallback(findings: list[Finding], path: list[str], devs: set[str], probe: ProbeResult, why: str,
              tsum: dict | None, ev: list[str] | None = None, where: Where | None = None) -> Located:
    ev = list(ev or [])
    on_path = [f for f in findings if f.where is not None and (f.where.netns in path or (f.where.dev in devs))]
    for cause_id in PATH_PRIORITY:
        hit = [f for f in on_path if f.cause == cause_id and f.severity == "fault"]
        if hit:
            f = hit[0]
            return Located(cause_id, f.summary, f.where, ev or [f"{probe.line}; {why}"], tsum)
    return Located("unexplained", why, where, [*ev, probe.line], tsum)


def to_finding(loc: Located, step: int, findings: list[Finding]) -> Finding:
    """The located cause as a finding, merged with the state check's finding of the same cause."""
    same = _pick_finding(findings, loc.cause, node=loc.where.node if loc.where else None)
    if same is not None:
        same.evidence = loc.evidence + [e for e in same.evidence if e not in loc.evidence]
        same.step = step
        same.explains_flow = True
        same.severity = "fault"
        if same.where is None:
            same.where = loc.where
        return same
    c = catalogue.cause(loc.cause)
    return Finding(loc.cause, c.title, loc.summary, "fault", loc.where, loc.evidence, [c.fix], step, True)
