"""Parsers for ``bridge -j fdb show`` and ``bridge -j -d link show``. Pure."""

from __future__ import annotations

import dataclasses

from podnet.sim.parse_ip import bridge_port
from podnet.sim.parse_json import entry_error, load_json_array, opt_ip, require
from podnet.sim.snapshot import BridgePortAttrs, FdbEntry, Link


def parse_bridge_fdb(text: str, source: str = "bridge-fdb.json") -> tuple[FdbEntry, ...]:
    out: list[FdbEntry] = []
    for i, e in enumerate(load_json_array(text, source)):
        try:
            out.append(FdbEntry(
                mac=str(require(e, "mac", source, i)).lower(),
                dev=str(require(e, "ifname", source, i)),
                master=e.get("master"),
                dst=opt_ip(e.get("dst"), source, i, e),
                vlan=int(e["vlan"]) if e.get("vlan") is not None else None,
                state=str(e.get("state", "")),
                flags=tuple(e.get("flags") or ()),
                vni=int(e["vni"]) if e.get("vni") is not None else None,
                port=int(e["port"]) if e.get("port") is not None else None,
            ))
        except (TypeError, ValueError) as exc:
            raise entry_error(source, i, e, str(exc)) from None
    return tuple(out)


def parse_bridge_link(text: str, source: str = "bridge-link.json") -> dict[str, BridgePortAttrs]:
    """Bridge ports by interface name (``hairpin`` etc. are printed with ``-d`` only)."""
    return {str(require(e, "ifname", source, i)): bridge_port(e)
            for i, e in enumerate(load_json_array(text, source))}


def with_bridge_ports(links: tuple[Link, ...], ports: dict[str, BridgePortAttrs]) -> tuple[Link, ...]:
    """Fill bridge-port attributes from ``bridge link`` where ``ip -d link`` gave none."""
    if not ports:
        return links
    return tuple(dataclasses.replace(lk, port=ports[lk.name], slave_kind=lk.slave_kind or "bridge")
                 if lk.port is None and lk.name in ports else lk for lk in links)
