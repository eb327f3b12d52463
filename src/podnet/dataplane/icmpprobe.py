"""ICMP echo from inside a namespace (what ``ping`` and ``ping -M do -s N`` do), with the ICMP errors that
come back classified: the path-MTU probe of diagnose (small packets pass, full-size ones vanish) needs to
tell "fragmentation needed" (path MTU discovery works) from silence (a black hole).

A raw ICMP socket is created inside the namespace (the calling thread enters it just long enough); it
sees every ICMP packet the namespace receives, so answers are matched on the echo identifier, and ICMP
errors on the identifier quoted in them. ``df`` sets Don't Fragment with ``IP_PMTUDISC_PROBE``: the
packet goes out at the asked size even when the kernel already learned a smaller path MTU.
"""

from __future__ import annotations

import errno
import os
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass

from podnet.dataplane import netns

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_PROBE = 3
SIOCGIFMTU = 0x8921
UNREACH = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
           4: "fragmentation needed", 9: "net prohibited", 10: "host prohibited", 13: "administratively prohibited"}


@dataclass(frozen=True, slots=True)
class PingResult:
    outcome: str          # reply | frag-needed | unreachable | ttl-exceeded | too-big-local | timeout | error
    ok: bool
    detail: str = ""
    ms: float = 0.0
    mtu: int | None = None        # frag-needed: the next-hop MTU quoted; too-big-local: the local MTU
    sender: str | None = None     # who sent the answer or the error


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    csum = _checksum(head + payload)
    return struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload


def classify(data: bytes, dst: str, ident: int, seq: int) -> PingResult | None:
    """An incoming IPv4 packet (as a raw socket returns it) as the answer to our echo, or None."""
    if len(data) < 20:
        return None
    ihl = (data[0] & 0x0F) * 4
    if len(data) < ihl + 8:
        return None
    sender = socket.inet_ntoa(data[12:16])
    icmp_type, code = data[ihl], data[ihl + 1]
    if icmp_type == 0:
        rid, rseq = struct.unpack("!HH", data[ihl + 4:ihl + 8])
        if rid == ident and rseq == seq and sender == dst:
            return PingResult("reply", True, f"echo reply from {sender}", sender=sender)
        return None
    if icmp_type not in (3, 11):
        return None
    inner = data[ihl + 8:]
    if len(inner) < 28:
        return None
    iihl = (inner[0] & 0x0F) * 4
    if socket.inet_ntoa(inner[16:20]) != dst or inner[9] != 1 or len(inner) < iihl + 8:
        return None
    qtype, _, _, qid, qseq = struct.unpack("!BBHHH", inner[iihl:iihl + 8])
    if qtype != 8 or qid != ident or qseq != seq:
        return None
    if icmp_type == 11:
        return PingResult("ttl-exceeded", False, f"time exceeded from {sender}", sender=sender)
    if code == 4:
        mtu = struct.unpack("!H", data[ihl + 6:ihl + 8])[0]
        return PingResult("frag-needed", False, f"fragmentation needed (mtu {mtu}) from {sender}", mtu=mtu,
                          sender=sender)
    return PingResult("unreachable", False, f"{UNREACH.get(code, f'code {code}')} from {sender}", sender=sender)


def ping(ns: str, dst: str, size: int | None = None, df: bool = False, timeout: float = 1.0,
         ident: int | None = None) -> PingResult:
    """One echo request from namespace ``ns``; ``size`` is the IP packet size (default 84, as ping)."""
    total = size or 84
    payload = (b"podnet-diagnose " * (total // 16 + 1))[:max(total - 28, 0)]
    ident, seq = ident or secrets.randbelow(0xFFFF) + 1, 1
    t0 = time.monotonic()
    try:
        with netns.entered(ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError as e:
        return PingResult("error", False, f"no socket in {ns}: {e.strerror}")
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE if df else IP_PMTUDISC_DONT)
        s.setblocking(False)
        try:
            s.sendto(echo_request(ident, seq, payload), (dst, 0))
        except OSError as e:
            ms = (time.monotonic() - t0) * 1000
            if e.errno == errno.EMSGSIZE:
                return PingResult("too-big-local", False, f"{total} B is more than the pod's own mtu", ms)
            return PingResult("error", False, os.strerror(e.errno or 0) if e.errno else str(e), ms)
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return PingResult("timeout", False, "no answer", (time.monotonic() - t0) * 1000)
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                continue
            try:
                data = s.recv(65535)
            except BlockingIOError:
                continue
            except OSError as e:
                return PingResult("error", False, os.strerror(e.errno or 0), (time.monotonic() - t0) * 1000)
            r = classify(data, dst, ident, seq)
            if r is not None:
                return PingResult(r.outcome, r.ok, r.detail, (time.monotonic() - t0) * 1000, r.mtu, r.sender)
    finally:
        s.close()


def link_mtu(ns: str, dev: str = "eth0") -> int | None:
    """The MTU of ``dev`` inside ``ns`` (SIOCGIFMTU on a socket made there)."""
    import fcntl

    try:
        with netns.entered(ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        req = struct.pack("16si", dev.encode()[:15], 0)
        res = fcntl.ioctl(s.fileno(), SIOCGIFMTU, req)
        return struct.unpack("16si", res)[1]
    except OSError:
        return None
    finally:
        s.close()
