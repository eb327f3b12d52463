"""``podnet trace -o json``: the trace as a versioned JSON document (schema: docs/trace.md). Pure."""

from __future__ import annotations

import json
from dataclasses import asdict, fields, is_dataclass
from enum import Enum
from typing import Any

from podnet.trace.model import SCHEMA_VERSION, Step, Trace, TraceResult


def _plain(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple | list):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def step_dict(s: Step) -> dict[str, Any]:
    return _plain(s)


def trace_dict(t: Trace) -> dict[str, Any]:
    return _plain(t)


def to_dict(res: TraceResult) -> dict[str, Any]:
    flow = asdict(res.flow)
    return {
        "apiVersion": SCHEMA_VERSION,
        "kind": "Trace",
        "flow": flow,
        "dns": _plain(res.dns) if res.dns else None,
        "disposition": res.disposition.value,
        "ok": res.ok,
        "chosen": res.chosen,
        "truncated": res.truncated,
        "outcomes": [
            {"probability": o.probability, "endpoint": o.endpoint, "choices": _plain(o.choices),
             "forward": trace_dict(o.forward), "reply": trace_dict(o.reply) if o.reply else None}
            for o in res.outcomes
        ],
        "warnings": list(res.warnings),
    }


def render_json(res: TraceResult) -> str:
    return json.dumps(to_dict(res), indent=2) + "\n"
