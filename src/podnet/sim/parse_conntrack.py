"""Parser for ``conntrack -L -o extended`` (also the plain ``conntrack -L`` and
``/proc/net/nf_conntrack`` layouts). Pure.

A line is ``[l3proto l3num] proto protonum timeout [STATE] k=v... [FLAG] k=v... [FLAG] k=v...``: the
first ``src=`` opens the original tuple, the second the reply tuple; per-direction ``packets=`` and
``bytes=`` (with accounting) belong to the tuple they follow; ``zone-orig=``/``zone-reply=`` to the tuple they name.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from podnet.sim.snapshot import ConntrackEntry, CtTuple, SnapshotError

_L3 = {"ipv4", "ipv6"}
_TUPLE_INT = {"sport", "dport", "type", "code", "id", "packets", "bytes"}
_TUPLE_KEY = {"type": "icmp_type", "code": "icmp_code", "id": "icmp_id"}


def _tuple(d: dict[str, Any]) -> CtTuple:
    return CtTuple(src=d["src"], dst=d["dst"], sport=d.get("sport"), dport=d.get("dport"),
                   icmp_type=d.get("icmp_type"), icmp_code=d.get("icmp_code"), icmp_id=d.get("icmp_id"),
                   packets=d.get("packets"), bytes=d.get("bytes"), zone=d.get("zone"))


def parse_conntrack_line(line: str) -> ConntrackEntry:
    toks = line.split()
    i = 0
    family = "ipv4"
    if toks and toks[0] in _L3:
        family = toks[0]
        i = 2
    if len(toks) < i + 3:
        raise ValueError("too few fields")
    proto = toks[i]
    protonum = int(toks[i + 1])
    i += 2
    timeout: int | None = None
    if toks[i].isdigit():
        timeout = int(toks[i])
        i += 1
    state = None
    if i < len(toks) and "=" not in toks[i] and not toks[i].startswith("["):
        state = toks[i]
        i += 1
    dirs: list[dict[str, Any]] = []
    flags: set[str] = set()
    mark = 0
    zone = None
    use = None
    extra: list[tuple[str, str]] = []
    for t in toks[i:]:
        if t.startswith("[") and t.endswith("]"):
            flags.add(t[1:-1])
            continue
        key, sep, value = t.partition("=")
        if not sep:
            raise ValueError(f"unexpected {t!r}")
        if key == "src":
            if len(dirs) == 2:
                raise ValueError("more than two tuples")
            dirs.append({"src": ipaddress.ip_address(value)})
        elif key == "dst" and dirs and "dst" not in dirs[-1]:
            dirs[-1]["dst"] = ipaddress.ip_address(value)
        elif key in _TUPLE_INT and dirs:
            dirs[-1][_TUPLE_KEY.get(key, key)] = int(value)
        elif key == "zone-orig" and dirs:
            dirs[0]["zone"] = int(value)
        elif key == "zone-reply" and len(dirs) == 2:
            dirs[1]["zone"] = int(value)
        elif key == "mark":
            mark = int(value, 0)
        elif key == "zone":
            zone = int(value)
        elif key == "use":
            use = int(value)
        else:
            extra.append((key, value))
    if len(dirs) != 2 or any("dst" not in d for d in dirs):
        raise ValueError("needs an original and a reply tuple (src=... dst=... twice)")
    return ConntrackEntry(family=family, proto=proto, protonum=protonum, timeout=timeout, state=state,
                          orig=_tuple(dirs[0]), reply=_tuple(dirs[1]), flags=frozenset(flags), mark=mark,
                          zone=zone, use=use, extra=tuple(extra))


def parse_conntrack(text: str, source: str = "conntrack.txt") -> tuple[ConntrackEntry, ...]:
    """Entries in order; the summary line conntrack prints on stderr is skipped if captured too.
    Exact duplicate lines (``conntrack -L`` can list an entry twice while the table changes) are
    kept once."""
    out: list[ConntrackEntry] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "conntrack v")):
            continue
        if line in seen:
            continue
        seen.add(line)
        try:
            out.append(parse_conntrack_line(line))
        except (ValueError, IndexError) as e:
            raise SnapshotError(f"bad conntrack entry: {e}", where=f"{source}:{lineno}") from None
    return tuple(out)


def render_conntrack(entries: tuple[ConntrackEntry, ...]) -> str:
    """``conntrack -L -o extended`` lines for entries (used when a snapshot has no source text)."""
    lines = []
    for e in entries:
        parts = [f"{e.family:<8} {2 if e.family == 'ipv4' else 10} {e.proto:<8} {e.protonum}"]
        if e.timeout is not None:
            parts.append(str(e.timeout))
        if e.state:
            parts.append(e.state)
        for n, t in enumerate((e.orig, e.reply)):
            parts += [f"src={t.src}", f"dst={t.dst}"]
            if t.sport is not None:
                parts += [f"sport={t.sport}", f"dport={t.dport}"]
            if t.icmp_type is not None:
                parts += [f"type={t.icmp_type}", f"code={t.icmp_code}", f"id={t.icmp_id}"]
            if t.packets is not None:
                parts += [f"packets={t.packets}", f"bytes={t.bytes}"]
            if t.zone is not None:
                parts.append(f"zone-{'orig' if n == 0 else 'reply'}={t.zone}")
            if n == 0 and "UNREPLIED" in e.flags:
                parts.append("[UNREPLIED]")
        parts += [f"[{f}]" for f in sorted(e.flags - {"UNREPLIED"})]
        parts.append(f"mark={e.mark}")
        parts += [f"{k}={v}" for k, v in e.extra]
        if e.zone is not None:
            parts.append(f"zone={e.zone}")
        if e.use is not None:
            parts.append(f"use={e.use}")
        lines.append(" ".join(parts))
    return "".join(x + "\n" for x in lines)
