"""Parsers for BIRD 2's ``birdc show protocols [all]`` and ``birdc show route`` output (pure).

Used by ``podnet bgp status`` and by ``up`` while it waits for sessions; the same text can come from a
real router or node (``birdc show protocols all > file``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Name  Proto  Table  State  Since(date time)  Info
_PROTO = re.compile(r"^(?P<name>\S+)\s+(?P<proto>\S+)\s+(?P<table>\S+)\s+(?P<state>\S+)\s+"
                    r"(?P<since>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\d\d:\d\d:\d\d(?:\.\d+)?)\s*(?P<info>.*)$")
_ROUTES = re.compile(r"Routes:\s+(\d+) imported,(?: (\d+) filtered,)? (\d+) exported")
_ROUTE = re.compile(r"^(?P<net>\d+\.\d+\.\d+\.\d+/\d+)?\s+(?P<kind>unicast|blackhole|unreachable|prohibited)\s+"
                    r"\[(?P<proto>\S+) (?P<since>[^\]]*?)(?: from (?P<from>\S+))?\]\s*(?P<best>\*)?")
_VIA = re.compile(r"^\s+via (?P<via>\S+) on (?P<dev>\S+)")
_DEV = re.compile(r"^\s+dev (?P<dev>\S+)")


@dataclass
class Protocol:
    name: str
    proto: str
    table: str
    state: str                   # up | start | down ...
    since: str
    info: str                    # Established | Active | Connect | Idle ... (plus an error for BGP)
    details: dict[str, str] = field(default_factory=dict)   # "BGP state", "Neighbor address", ...
    imported: int | None = None
    exported: int | None = None

    @property
    def bgp_state(self) -> str:
        return self.details.get("BGP state", self.info.split()[0] if self.info else "")

    @property
    def neighbor(self) -> str:
        return self.details.get("Neighbor address", "")

    @property
    def last_error(self) -> str:
        return self.details.get("Last error", "")


def parse_protocols(text: str) -> list[Protocol]:
    """``show protocols`` or ``show protocols all``: one entry per protocol, details when given."""
    out: list[Protocol] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith(("BIRD ", "Name ")):
            continue
        if not line[0].isspace():
            m = _PROTO.match(line)
            if m:
                info = " ".join(m["info"].split())   # BIRD pads the state: "Active        Socket: ..."
                out.append(Protocol(m["name"], m["proto"], m["table"], m["state"], m["since"], info))
            continue
        if not out:
            continue
        cur = out[-1]
        s = line.strip()
        m = _ROUTES.search(s)
        if m:
            cur.imported, cur.exported = int(m[1]), int(m[3])
            continue
        key, sep, value = s.partition(":")
        if sep and key and key not in cur.details and not key.startswith(("Channel", "State")):
            cur.details[key.strip()] = value.strip()
    return out


@dataclass
class Route:
    net: str
    kind: str                    # unicast | blackhole | ...
    proto: str                   # the protocol that brought it (a BGP session's name, static, direct)
    since: str
    source: str | None           # the BGP peer address it came from
    best: bool
    via: list[tuple[str, str]] = field(default_factory=list)   # (gateway, device)
    dev: str | None = None


def parse_routes(text: str) -> list[Route]:
    """``show route``: every route (each alternative of a prefix too), with its next hops."""
    out: list[Route] = []
    net = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith(("BIRD ", "Table ")):
            continue
        m = _ROUTE.match(line)
        if m:
            net = m["net"] or net
            out.append(Route(net, m["kind"], m["proto"], m["since"].strip(), m["from"], bool(m["best"])))
            continue
        if not out:
            continue
        m = _VIA.match(line)
        if m:
            out[-1].via.append((m["via"], m["dev"]))
            continue
        m = _DEV.match(line)
        if m:
            out[-1].dev = m["dev"]
    return out
