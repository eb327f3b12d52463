"""Shared helpers for the JSON dumps (``ip -j``, ``bridge -j``, ``nft -j``): errors name file and line."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from podnet.sim.snapshot import IPAddress, IPNetwork, SnapshotError


def load_json(text: str, source: str) -> Any:
    """Parse JSON; empty text is ``[]`` (a command with nothing to show prints nothing)."""
    if not text.strip():
        return []
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SnapshotError(f"invalid JSON: {e.msg} (column {e.colno})", where=f"{source}:{e.lineno}") from None


def load_json_array(text: str, source: str) -> list[dict[str, Any]]:
    data = load_json(text, source)
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise SnapshotError("expected a JSON array of objects (the output of a -j command)",
                            where=f"{source}:1")
    return data


def entry_error(source: str, index: int, entry: dict[str, Any], msg: str) -> SnapshotError:
    name = entry.get("ifname") or entry.get("dst") or entry.get("mac")
    label = f"entry {index + 1}" + (f" ({name})" if name else "")
    return SnapshotError(f"{label}: {msg}", where=source)


# Dumps of many nodes repeat the same addresses and prefixes (every node routes to every other
# node's pod CIDR): parse each spelling once. Address objects are immutable, so sharing is safe.
_ADDRS: dict[str, IPAddress] = {}
_NETS: dict[str, IPNetwork] = {}
_MEMO_MAX = 1 << 20


def parse_address(text: str) -> IPAddress:
    """``ipaddress.ip_address`` with a memo (raises ValueError like it)."""
    a = _ADDRS.get(text)
    if a is None:
        if len(_ADDRS) >= _MEMO_MAX:
            _ADDRS.clear()
        a = _ADDRS[text] = ipaddress.ip_address(text)
    return a


def parse_network(text: str) -> IPNetwork:
    """``ipaddress.ip_network(text, strict=False)`` with a memo."""
    n = _NETS.get(text)
    if n is None:
        if len(_NETS) >= _MEMO_MAX:
            _NETS.clear()
        n = _NETS[text] = ipaddress.ip_network(text, strict=False)
    return n


def ip(value: Any, source: str, index: int, entry: dict[str, Any]) -> IPAddress:
    try:
        return parse_address(value if isinstance(value, str) else str(value))
    except ValueError:
        raise entry_error(source, index, entry, f"bad IP address {value!r}") from None


def opt_ip(value: Any, source: str, index: int, entry: dict[str, Any]) -> IPAddress | None:
    return None if value in (None, "") else ip(value, source, index, entry)


def network(value: str, source: str, index: int, entry: dict[str, Any], *,
            prefixlen: int | None = None) -> IPNetwork:
    spec = value if prefixlen is None or "/" in value else f"{value}/{prefixlen}"
    try:
        return parse_network(spec)
    except ValueError:
        raise entry_error(source, index, entry, f"bad prefix {spec!r}") from None


def require(entry: dict[str, Any], key: str, source: str, index: int) -> Any:
    if key not in entry:
        raise entry_error(source, index, entry, f"missing {key!r}")
    return entry[key]
