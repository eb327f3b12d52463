"""``podnet trace -o mermaid``: a Mermaid sequence diagram of the journey. Participants are the
namespaces the packet visits (pods, nodes, the underlay) in order; arrows are the packet crossing
between them (labelled with its headers), notes are what happened inside (netfilter decisions, NAT,
encapsulation, the end); the reply path comes back as dashed arrows. Pure."""

from __future__ import annotations

import re

from podnet.trace.model import Hop, StepKind, Trace, TraceResult

_NOTE_KINDS = {StepKind.NETFILTER, StepKind.NAT, StepKind.ENCAP, StepKind.DECAP, StepKind.MTU, StepKind.DROP,
               StepKind.DELIVER, StepKind.DNS}


def _esc(text: str) -> str:
    """Mermaid message text: '#' and ';' are entity syntax there."""
    return re.sub(r"[#;\n]", lambda m: {"#": "#35;", ";": "#59;", "\n": " "}[m.group()], text)


class _Diagram:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.decl: list[str] = []
        self.body: list[str] = []

    def pid(self, hop: Hop) -> str:
        key = hop.netns
        if key not in self.ids:
            pid = f"P{len(self.ids) + 1}"
            self.ids[key] = pid
            label = hop.place if hop.node in hop.place else f"{hop.place} ({hop.node})"
            self.decl.append(f"    participant {pid} as {_esc(label)}")
        return self.ids[key]

    def trace(self, t: Trace, reply: bool) -> None:
        arrow = "-->>" if reply else "->>"
        prev: Hop | None = None
        pending: str | None = None
        for hop in t.hops:
            pid = self.pid(hop)
            if prev is not None and prev.netns != hop.netns:
                self.body.append(f"    {self.pid(prev)}{arrow}{pid}: {_esc(pending or '')}")
            for s in hop.steps:
                if (s.kind is StepKind.LINK and s.packet) or (s.kind is StepKind.ORIGINATE and s.packet):
                    pending = s.packet
                if s.kind in _NOTE_KINDS and s.text:
                    self.body.append(f"    Note over {pid}: {_esc(s.text)}")
            prev = hop


def render_mermaid(res: TraceResult) -> str:
    o = res.outcome
    d = _Diagram()
    f = res.flow
    d.body.append(f"    Note over P1: {_esc(f.text)} ({f.size} B) to {_esc(f.dst)}")
    if res.dns is not None:
        d.body.append(f"    Note over P1: {_esc(res.dns.text)}")
    d.trace(o.forward, reply=False)
    d.body.append(f"    Note over {d.ids.get(o.forward.hops[-1].netns, 'P1') if o.forward.hops else 'P1'}: "
                  f"{o.forward.disposition.value.upper()}")
    if o.reply is not None:
        d.trace(o.reply, reply=True)
        last = o.reply.hops[-1].netns if o.reply.hops else None
        d.body.append(f"    Note over {d.ids.get(last or '', 'P1')}: reply {o.reply.disposition.value.upper()}: "
                      f"{_esc(o.reply.summary)}")
    if not d.ids:
        d.decl.append("    participant P1 as " + _esc(f.start_place))
    return "\n".join(["sequenceDiagram", *d.decl, *d.body]) + "\n"
