"""Label and field selectors as the API server parses them (``labelSelector=``, ``fieldSelector=``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podnet.api.status import bad_request

Match = Callable[[dict[str, Any]], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_CMP = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str                 # =, !=, in, notin, exists, !
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op in ("=", "in"):
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values    # != and notin (absent keys match)


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_labels(text: str | None) -> list[Requirement]:
    reqs = []
    for part in _split(text or ""):
        m = _CMP.match(part)
        if m:
            reqs.append(Requirement(m.group(1), "!=" if m.group(2) == "!=" else "=", (m.group(3),)))
            continue
        m = _SET.match(part)
        if not m:
            raise bad_request(f"unable to parse requirement: {part.strip()!r}")
        neg, key, op, values = m.groups()
        if op:
            if neg:
                raise bad_request(f"unable to parse requirement: {part.strip()!r}")
            reqs.append(Requirement(key, op, tuple(v.strip() for v in values.split(",") if v.strip())))
        else:
            reqs.append(Requirement(key, "!" if neg else "exists"))
    return reqs


def parse_fields(text: str | None) -> list[tuple[str, str, str]]:
    """``metadata.name=x,status.phase!=Failed`` -> [(field, op, value)]."""
    out = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise bad_request(f"invalid selector: '{part}'; can't understand '{part}'")
        out.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return out


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for seg in path.split("."):
        cur = cur.get(seg) if isinstance(cur, dict) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


FIELDS_ALWAYS = ("metadata.name", "metadata.namespace")
FIELDS_BY_KIND = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "Node": ("spec.unschedulable",),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
              "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
              "reason", "reportingComponent", "source", "type"),
    "Namespace": ("status.phase",),
    "Service": ("spec.clusterIP", "spec.type"),
}


def selectable(obj: dict[str, Any]) -> dict[str, Any]:
    """What selectors look at: labels and the selectable fields (kept with watch events)."""
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    return {"labels": dict(meta.get("labels") or {}),
            "fields": {f: field_value(obj, f) for f in (*FIELDS_ALWAYS, *FIELDS_BY_KIND.get(kind, ()))}}


def matcher(kind: str, label_selector: str | None, field_selector: str | None) -> Callable[[dict[str, Any]], bool]:
    """A predicate over ``selectable(obj)``; raises 400 for a field the kind does not support."""
    labels = parse_labels(label_selector)
    fields = parse_fields(field_selector)
    allowed = (*FIELDS_ALWAYS, *FIELDS_BY_KIND.get(kind, ()))
    for f, _, _ in fields:
        if f not in allowed:
            raise bad_request(f'"{f}" is not a known field selector: only "metadata.name", '
                              '"metadata.namespace"')

    def match(sel: dict[str, Any]) -> bool:
        if not all(r.matches(sel["labels"]) for r in labels):
            return False
        for f, op, v in fields:
            got = sel["fields"].get(f, "")
            if (got == v) != (op == "="):
                return False
        return True

    return match
