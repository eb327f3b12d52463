"""Text rendering of a trace: the flow and its result first, then one numbered line per step,
grouped by node and place (the node column is printed when it changes), then the reply path.
Pure; ``color`` adds ANSI colours (the CLI turns it on for terminals only)."""

from __future__ import annotations

from podnet.trace.model import Disposition, Hop, Outcome, Step, StepKind, Trace, TraceResult

_GREEN, _RED, _DIM, _BOLD, _RESET = "\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[0m"


def _disp(d: Disposition, color: bool) -> str:
    word = d.value.upper().replace("_", " ")
    if not color:
        return word
    return f"{_GREEN if d.ok else _RED}{_BOLD}{word}{_RESET}"


def _probability(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.4f}"


def _lines(hops: tuple[Hop, ...], prefix: str, color: bool) -> list[str]:
    rows: list[tuple[str, str, str, Step]] = []
    last_node = last_place = None
    n = 0
    for hop in hops:
        for step in hop.steps:
            if not step.text:          # rules that matched without deciding anything (JSON keeps them)
                continue
            n += 1
            node = hop.node if hop.node != last_node else ""
            place = hop.place if (hop.place != last_place or node) else ""
            last_node, last_place = hop.node, hop.place
            rows.append((f"{prefix}{n}", node, place, step))
    if not rows:
        return []
    wn = max(len(r[0]) for r in rows)
    wnode = max(len(r[1]) for r in rows)
    wplace = max(len(r[2]) for r in rows)
    out = []
    for num, node, place, step in rows:
        text = step.text
        if color and step.kind in (StepKind.NAT,):
            text = f"{_BOLD}{text}{_RESET}"
        elif color and step.kind in (StepKind.DROP,):
            text = f"{_RED}{text}{_RESET}"
        out.append(f"{num.rjust(wn)}  {node.ljust(wnode)}  {place.ljust(wplace)}  {text}".rstrip())
    return out


def _paths(res: TraceResult) -> list[str]:
    if len(res.outcomes) <= 1:
        return []
    parts = []
    for i, o in enumerate(res.outcomes):
        ep = o.endpoint or "no DNAT"
        mark = " (shown)" if i == res.chosen else ""
        ok = "" if o.forward.disposition.ok else f" {o.forward.disposition.value}"
        parts.append(f"{ep} p={_probability(o.probability)}{ok}{mark}")
    more = " (more not explored)" if res.truncated else ""
    return [f"paths    {len(res.outcomes)} possible: {', '.join(parts)}{more}; pick one with --endpoint IP"]


def render_trace(t: Trace, prefix: str = "", color: bool = False) -> list[str]:
    return _lines(t.hops, prefix, color)


def render_text(res: TraceResult, color: bool = False) -> str:
    f = res.flow
    o: Outcome = res.outcome
    lines = [f"flow     {f.text}, {f.size} B, from {f.start_place}"
             + (f" ({f.start_node})" if f.start_node not in f.start_place else "") + f" to {f.dst}"]
    if res.dns is not None:
        lines.append(f"dns      {res.dns.text}")
    endpoint = f"   endpoint {o.endpoint}" if o.endpoint else ""
    lines.append(f"result   {_disp(o.forward.disposition, color)}: {o.forward.summary}{endpoint}")
    lines += _paths(res)
    lines.append("")
    lines += render_trace(o.forward, "", color)
    if o.reply is not None:
        lines.append("")
        lines.append(f"reply    {_disp(o.reply.disposition, color)}: {o.reply.summary}")
        lines += render_trace(o.reply, "r", color)
    warnings = list(dict.fromkeys([*res.warnings, *o.forward.warnings, *(o.reply.warnings if o.reply else ())]))
    if warnings:
        lines.append("")
        lines += [f"warning  {w}" for w in warnings]
    return "\n".join(lines) + "\n"
