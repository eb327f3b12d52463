"""Real connections from a pod's network namespace: does a new connection reach the destination?

Each probe opens a fresh socket inside the source pod's namespace (the calling thread enters it just
long enough to create the socket) and reports what the kernel said:

- ``connected`` / ``answered``: a TCP handshake completed, a UDP datagram was answered, an SCTP
  INIT was answered;
- ``refused``: the destination itself refused (TCP RST, ICMP port or protocol unreachable from it):
  the packet *reached* the pod, nothing listens there;
- ``filtered``: ICMP "administratively prohibited" (EHOSTUNREACH): a NetworkPolicy rule rejected it;
- ``timeout``: no answer within the timeout (dropped somewhere).

``reached`` is what a truth table compares: policy let the packet through to the pod.

SCTP: with kernel SCTP sockets (``CONFIG_IP_SCTP``) the probe sets up an association; without them it
sends a well-formed SCTP INIT (CRC32c, so conntrack tracks it) on a raw socket, and a raw socket in the
destination pod's namespace watches for it: its arrival proves the INIT went through every netfilter
hook, which is what policy decides. (Without the destination's namespace, the destination's
INIT-ACK/ABORT or ICMP "protocol unreachable" is the answer.)
"""

from __future__ import annotations

import errno
import itertools
import random
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from podnet.dataplane import netns
from podnet.errors import PodnetError

IPPROTO_SCTP = 132
PAYLOAD = b"podnet netpol probe\n"


@dataclass(frozen=True)
class ProbeResult:
    outcome: str          # connected | answered | refused | filtered | timeout | error
    reached: bool
    detail: str = ""
    ms: float = 0.0

    def to_dict(self) -> dict:
        return {"outcome": self.outcome, "reached": self.reached, "detail": self.detail, "ms": round(self.ms, 1)}


@dataclass(frozen=True)
class Probe:
    netns: str            # the source pod's namespace
    dst: str
    port: int
    protocol: str         # TCP | UDP | SCTP
    dst_netns: str = ""   # the destination pod's namespace, when known (SCTP without kernel sockets)


def _from_errno(e: OSError, t0: float) -> ProbeResult:
    ms = (time.monotonic() - t0) * 1000
    if isinstance(e, TimeoutError) or e.errno in (errno.EAGAIN, errno.ETIMEDOUT):
        return ProbeResult("timeout", False, "no answer", ms)
    if e.errno == errno.ECONNREFUSED:
        return ProbeResult("refused", True, "refused by the destination (nothing listens)", ms)
    if e.errno == errno.ENOPROTOOPT:
        return ProbeResult("refused", True, "protocol unreachable at the destination", ms)
    if e.errno == errno.EHOSTUNREACH:
        return ProbeResult("filtered", False, "rejected (ICMP administratively prohibited)", ms)
    return ProbeResult("error", False, f"{errno.errorcode.get(e.errno or 0, e.errno)}: {e.strerror}", ms)


def _socket(ns: str, kind: int, proto: int = 0) -> socket.socket:
    with netns.entered(ns):
        return socket.socket(socket.AF_INET, kind, proto)


def probe_tcp(ns: str, dst: str, port: int, timeout: float) -> ProbeResult:
    t0 = time.monotonic()
    s = _socket(ns, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect((dst, port))
        return ProbeResult("connected", True, "handshake completed", (time.monotonic() - t0) * 1000)
    except OSError as e:
        return _from_errno(e, t0)
    finally:
        s.close()


# UDP has no handshake: conntrack keeps a flow that got an answer ESTABLISHED for minutes, and replies of
# established flows always pass a policy. A probe that reused an earlier probe's source port would ride
# that entry and pass a policy that denies new flows. So each probe of a process gets its own port.
_UDP_PORTS = range(40000, 60000)
_udp_next = itertools.count(random.randrange(len(_UDP_PORTS)))
_udp_lock = threading.Lock()


def _udp_source_port() -> int:
    with _udp_lock:
        return _UDP_PORTS[next(_udp_next) % len(_UDP_PORTS)]


def probe_udp(ns: str, dst: str, port: int, timeout: float) -> ProbeResult:
    t0 = time.monotonic()
    s = _socket(ns, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        for _ in range(8):   # a port some other socket holds: take the next one
            try:
                s.bind(("0.0.0.0", _udp_source_port()))
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
        s.connect((dst, port))
        s.send(PAYLOAD)
        data = s.recv(4096)
        return ProbeResult("answered", True, data.split(b"\n", 1)[0].decode(errors="replace"),
                           (time.monotonic() - t0) * 1000)
    except OSError as e:
        return _from_errno(e, t0)
    finally:
        s.close()


def kernel_sctp(ns: str) -> bool:
    try:
        _socket(ns, socket.SOCK_STREAM, IPPROTO_SCTP).close()
        return True
    except OSError:
        return False


def probe_sctp(ns: str, dst: str, port: int, timeout: float, dst_ns: str = "") -> ProbeResult:
    if not kernel_sctp(ns):
        return probe_sctp_raw(ns, dst, port, timeout, dst_ns)
    t0 = time.monotonic()
    s = _socket(ns, socket.SOCK_STREAM, IPPROTO_SCTP)
    try:
        s.settimeout(timeout)
        s.connect((dst, port))
        return ProbeResult("connected", True, "association established", (time.monotonic() - t0) * 1000)
    except OSError as e:
        return _from_errno(e, t0)
    finally:
        s.close()


# -- SCTP without kernel sockets: an INIT chunk on a raw socket ---------------------------------------

def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def sctp_init(sport: int, dport: int, tag: int) -> bytes:
    """An SCTP packet with one INIT chunk (RFC 9260 3.3.2), CRC32c filled in."""
    chunk = struct.pack("!BBHIIHHI", 1, 0, 20, tag, 65535, 1, 1, tag)
    head = struct.pack("!HHII", sport, dport, 0, 0)
    pkt = head + chunk
    return pkt[:8] + struct.pack("<I", crc32c(pkt)) + pkt[12:]


def _is_our_init(data: bytes, sport: int, dport: int, tag: int) -> bool:
    ihl = (data[0] & 0x0F) * 4
    if len(data) < ihl + 20:
        return False
    src_port, dst_port = struct.unpack("!HH", data[ihl:ihl + 4])
    chunk_type = data[ihl + 12]
    (init_tag,) = struct.unpack("!I", data[ihl + 16:ihl + 20])
    return (src_port, dst_port, chunk_type, init_tag) == (sport, dport, 1, tag)


def probe_sctp_raw(ns: str, dst: str, port: int, timeout: float, dst_ns: str = "") -> ProbeResult:
    """An SCTP INIT from a raw socket in ``ns``. With ``dst_ns`` (the destination pod's namespace) a raw
    socket there watches for the INIT: its arrival is the answer (reached); otherwise the answer is what
    comes back: INIT-ACK/ABORT from the destination, or its ICMP protocol unreachable. Either way an
    ICMP "administratively prohibited" means rejected on the way."""
    t0 = time.monotonic()
    watch = _socket(dst_ns, socket.SOCK_RAW, IPPROTO_SCTP) if dst_ns else None
    s = _socket(ns, socket.SOCK_RAW, IPPROTO_SCTP)
    sport = 32768 + secrets.randbelow(28000)
    tag = 1 + secrets.randbelow(0xFFFFFFFE)
    try:
        s.connect((dst, 0))
        s.setblocking(False)
        if watch is not None:
            watch.setblocking(False)
        s.send(sctp_init(sport, port, tag))
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return ProbeResult("timeout", False, "no answer to SCTP INIT", (time.monotonic() - t0) * 1000)
            ready, _, _ = select.select([x for x in (s, watch) if x is not None], [], [], left)
            ms = (time.monotonic() - t0) * 1000
            if watch is not None and watch in ready:
                data = watch.recv(4096)
                if _is_our_init(data, sport, port, tag):
                    return ProbeResult("answered", True, "INIT arrived in the destination's namespace", ms)
            if s in ready:
                data = s.recv(4096)        # raises the ICMP error the socket got, if any
                ihl = (data[0] & 0x0F) * 4
                if len(data) < ihl + 16:
                    continue
                if watch is None and _is_our_init(data, sport, port, tag) and data[12:16] == data[16:20]:
                    return ProbeResult("answered", True, "INIT delivered locally", ms)
                src_port, dst_port, vtag = struct.unpack("!HHI", data[ihl:ihl + 8])
                if (src_port, dst_port, vtag) != (port, sport, tag):
                    continue
                if data[ihl + 12] == 2:
                    return ProbeResult("connected", True, "INIT-ACK received", ms)
                return ProbeResult("refused", True, f"SCTP chunk type {data[ihl + 12]} from the destination", ms)
    except OSError as e:
        return _from_errno(e, t0)
    finally:
        s.close()
        if watch is not None:
            watch.close()


# -----------------------------------------------------------------------------------------------------

def probe(p: Probe, timeout: float = 1.0) -> ProbeResult:
    try:
        if p.protocol == "SCTP":
            return probe_sctp(p.netns, p.dst, p.port, timeout, p.dst_netns)
        fn = {"TCP": probe_tcp, "UDP": probe_udp}[p.protocol]
        return fn(p.netns, p.dst, p.port, timeout)
    except (OSError, PodnetError) as e:   # the namespace vanished, no socket could be made, ...
        return ProbeResult("error", False, str(e))


def probe_all(probes: Iterable[Probe], timeout: float = 1.0, workers: int = 24) -> list[ProbeResult]:
    """Run ``probes`` concurrently (each a fresh socket); results in the same order."""
    items = list(probes)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as ex:
        return list(ex.map(lambda p: probe(p, timeout), items))
