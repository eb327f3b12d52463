"""Parser for ``ss -H -l -n -t -u -S`` (listening TCP/SCTP sockets, bound UDP sockets). Pure.

A line is ``Netid State Recv-Q Send-Q Local:Port Peer:Port [Process]``: ``tcp LISTEN 0 512
0.0.0.0:8080 0.0.0.0:*``. Local addresses are ``0.0.0.0``, ``*``, ``[::]``, ``10.0.0.1``,
``[fe80::1]``, ``127.0.0.53%lo`` (bound to a device); ``*``, ``0.0.0.0`` and ``[::]`` mean any address.
"""

from __future__ import annotations

import ipaddress

from podnet.sim.snapshot import IPAddress, SnapshotError, Socket

_PROTOS = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "tcp6": "tcp", "udp6": "udp", "sctp6": "sctp"}
_ANY = {"*", "0.0.0.0", "::", "[::]"}


def _local(spec: str) -> tuple[IPAddress | None, int, str | None]:
    addr, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad local address {spec!r}")
    dev = None
    if "%" in addr:
        addr, _, dev = addr.partition("%")
        dev = dev.rstrip("]") or None
        if addr.startswith("[") and not addr.endswith("]"):
            addr += "]"
    if addr in _ANY:
        return None, int(port), dev
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    return ipaddress.ip_address(addr), int(port), dev


def parse_ss(text: str, source: str = "ss-listen.txt") -> tuple[Socket, ...]:
    out: list[Socket] = []
    seen: set[Socket] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        toks = raw.split()
        if not toks or toks[0] == "Netid" or toks[0] == "State":
            continue                       # a header line (without -H)
        if toks[0] not in _PROTOS or len(toks) < 6:
            raise SnapshotError(f"expected 'NETID STATE RECV-Q SEND-Q LOCAL:PORT PEER:PORT', got {raw[:60]!r}",
                                where=f"{source}:{lineno}")
        try:
            local, port, dev = _local(toks[4])
        except ValueError as e:
            raise SnapshotError(str(e), where=f"{source}:{lineno}") from None
        sock = Socket(_PROTOS[toks[0]], toks[1], local, port, dev)
        if sock not in seen:
            seen.add(sock)
            out.append(sock)
    return tuple(out)


def render_ss(sockets: tuple[Socket, ...]) -> str:
    """``ss -H -l -n -t -u -S`` lines for sockets (used when a snapshot has no source text)."""
    lines = []
    for s in sockets:
        if s.local is None:
            addr = "0.0.0.0"
        elif s.local.version == 6:
            addr = f"[{s.local}]"
        else:
            addr = str(s.local)
        if s.dev:
            addr += f"%{s.dev}"
        lines.append(f"{s.proto} {s.state} 0 0 {addr}:{s.port} 0.0.0.0:*\n")
    return "".join(lines)
