"""What ``podnet diagnose`` answers: the five steps with their probes, the symptom, the cause with its
evidence and fix, and everything else found wrong on the way; as JSON (schema ``podnet.dev/diagnose/v1``,
docs/diagnose.md) and as text. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = "podnet.dev/diagnose/v1"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    kind: str                     # ping | ping-df | connect | dns
    target: str                   # "10.244.1.1", "10.96.45.67:8080/tcp", "my-service"
    about: str                    # "node node1 (cni0)", "pod default/pod-b on node2"
    ok: bool
    outcome: str                  # reply, connected, answered, resolved, timeout, refused, frag-needed, ...
    detail: str = ""
    ms: float = 0.0
    proto: str = "icmp"           # the flow the probe sent, for tracing it
    dst: str = ""
    port: int | None = None
    size: int | None = None
    sport: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "about": self.about, "ok": self.ok,
                "outcome": self.outcome, "detail": self.detail, "ms": round(self.ms, 1),
                "flow": {"proto": self.proto, "dst": self.dst, "port": self.port, "size": self.size}}

    @property
    def line(self) -> str:
        what = {"ping": "ping", "ping-df": "ping (DF)", "connect": "connect", "dns": "resolve"}.get(self.kind,
                                                                                                   self.kind)
        size = f" {self.size} B" if self.kind == "ping-df" and self.size else ""
        res = self.outcome + (f" ({self.detail})" if self.detail and not self.ok else "")
        return f"{what} {self.target}{size} [{self.about}]: {res}"


@dataclass(frozen=True, slots=True)
class StepResult:
    n: int
    name: str                     # basic, same-node, cross-node, service, dns
    title: str                    # "basic connectivity"
    question: str                 # the article's question
    status: str                   # pass | fail | skip
    probes: tuple[ProbeResult, ...] = ()
    note: str = ""                # why skipped, or what the failure means

    def to_json(self) -> dict[str, Any]:
        return {"step": self.n, "name": self.name, "title": self.title, "question": self.question,
                "status": self.status, "note": self.note, "probes": [p.to_json() for p in self.probes]}


@dataclass(frozen=True, slots=True)
class Where:
    node: str                     # node1, underlay, ...
    place: str                    # "pod default/pod-a", "node node2"
    netns: str
    dev: str | None = None
    hop: int | None = None        # step number in the trace where the packet stops

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "place": self.place, "netns": self.netns, "dev": self.dev, "hop": self.hop}

    @property
    def text(self) -> str:
        s = self.place if self.node in self.place or self.place in ("underlay",) else f"{self.place} ({self.node})"
        if self.dev:
            s += f", {self.dev}"
        if self.hop is not None:
            s += f", trace step {self.hop}"
        return s


@dataclass(slots=True)
class Finding:
    cause: str                    # a stable cause id (catalogue.CAUSES)
    title: str
    summary: str                  # one line, specific: "hairpin is off on veth2609d829 (pod default/pod-b)"
    severity: str = "fault"       # fault | warning
    where: Where | None = None
    evidence: list[str] = field(default_factory=list)
    fix: list[str] = field(default_factory=list)
    step: int | None = None       # the failing step it explains (None: found by the state checks alone)
    explains_flow: bool = False
    data: dict[str, Any] = field(default_factory=dict)   # check-specific facts for later steps (not in JSON)

    def to_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "title": self.title, "summary": self.summary, "severity": self.severity,
                "where": self.where.to_json() if self.where else None, "evidence": list(self.evidence),
                "fix": list(self.fix), "step": self.step, "explainsFlow": self.explains_flow}


@dataclass(slots=True)
class Diagnosis:
    lab: str
    src: str                      # "pod default/pod-a"
    dst: str                      # "svc default/my-service"
    flow: dict[str, Any]          # srcIP, dstIP, port, proto, srcNode
    steps: list[StepResult]
    symptom: str = ""
    cause: Finding | None = None
    findings: list[Finding] = field(default_factory=list)   # the cause first, then the others
    trace: dict[str, Any] | None = None   # the failing probe's trace: disposition, reason, summary, at
    notes: list[str] = field(default_factory=list)

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == "fail"), None)

    @property
    def faults(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "fault"]

    @property
    def healthy(self) -> bool:
        return self.failed_step is None and not self.faults

    def to_json(self) -> dict[str, Any]:
        failed = self.failed_step
        return {"apiVersion": SCHEMA_VERSION, "lab": self.lab, "src": self.src, "dst": self.dst, "flow": self.flow,
                "healthy": self.healthy, "failedStep": failed.n if failed else None,
                "symptom": self.symptom or None, "cause": self.cause.to_json() if self.cause else None,
                "findings": [f.to_json() for f in self.findings], "steps": [s.to_json() for s in self.steps],
                "trace": self.trace, "notes": list(self.notes)}


# -- text ----------------------------------------------------------------------------------------------
_RED, _GREEN, _YELLOW, _BOLD, _DIM, _RESET = "\033[31m", "\033[32m", "\033[33m", "\033[1m", "\033[2m", "\033[0m"


def _c(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


def _status(s: str, color: bool) -> str:
    word = {"pass": "ok", "fail": "FAIL", "skip": "skip"}[s]
    code = {"pass": _GREEN, "fail": _RED + _BOLD, "skip": _DIM}[s]
    return _c(word.ljust(4), code, color)


def _finding_lines(f: Finding, color: bool, indent: str = "") -> list[str]:
    out = [f"{indent}cause     {_c(f.cause, _BOLD, color)}: {f.summary}"]
    if f.where is not None:
        out.append(f"{indent}where     {f.where.text}")
    for i, e in enumerate(f.evidence):
        out.append(f"{indent}{'evidence' if i == 0 else '':<10}{e}")
    for i, x in enumerate(f.fix):
        out.append(f"{indent}{'fix' if i == 0 else '':<10}{x}")
    return out


def render_text(d: Diagnosis, color: bool = False) -> str:
    f = d.flow
    head = f"diagnose  {d.src} -> {d.dst}"
    if f.get("dstIP"):
        head += f"  ({f.get('srcIP')} -> {f['dstIP']}" + (f":{f['port']}" if f.get("port") else "") + \
            f" {str(f.get('proto', '')).upper()})"
    lines = [head + f"   lab {d.lab}", ""]
    width = max(len(s.title) for s in d.steps) if d.steps else 10
    for s in d.steps:
        first = s.note if s.status == "skip" or not s.probes else s.probes[0].line
        lines.append(f"step {s.n}  {s.title.ljust(width)}  {_status(s.status, color)}  {first}")
        rest = s.probes[1:] if s.probes and s.status != "skip" else ()
        for p in rest:
            lines.append(f"{'':{8 + width}}  {'':4}  {p.line}")
        if s.status == "fail" and s.note:
            lines.append(f"{'':{8 + width}}  {'':4}  {_c(s.note, _DIM, color)}")
    lines.append("")
    block: list[str] = []
    if d.symptom:
        block.append(f"symptom   {d.symptom}")
    if d.cause is not None:
        block += _finding_lines(d.cause, color)
    others = [x for x in d.findings if x is not d.cause]
    if others:
        if block:
            block.append("")
        block.append("also found" if d.cause is not None else "found")
        for x in others:
            tag = "" if x.severity == "fault" else " (warning)"
            block += [ln + (tag if i == 0 else "") for i, ln in enumerate(_finding_lines(x, color, "  "))]
    lines += block
    for n in d.notes:
        lines.append(f"note      {n}")
    lines.append("")
    if d.healthy:
        warn = f" ({len(d.findings)} warning{'s' if len(d.findings) != 1 else ''})" if d.findings else ""
        lines.append(_c("result    no fault found", _GREEN, color) + warn)
    else:
        ids = ", ".join(dict.fromkeys(x.cause for x in d.findings if x.severity == "fault")) or "unexplained"
        lines.append(_c(f"result    FAULT FOUND: {ids}", _RED + _BOLD, color))
    return "\n".join(lines) + "\n"
