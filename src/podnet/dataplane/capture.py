"""tcpdump at each hop: one ``tcpdump -i DEV -w FILE`` per interface of a flow's path, each started with
``ip netns exec NS`` (argument vectors only), all listening before the flow is sent, stopped after it.
One pcap per hop, named after it (``03-node1-cni0.pcap``), in a directory; ``tcpdump -r`` reads them.

The flow itself leaves the source pod's namespace: an ICMP echo (DF set with ``--size``), a TCP connection
(then one full-size segment with ``--size``) or a UDP datagram, from a source port (or echo id) chosen for
it, so each hop's packets of this flow are told apart from everything else.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

from podnet.dataplane import icmpprobe, netns
from podnet.errors import PodnetError

SNAPLEN = "512"
READY_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Tap:
    netns: str
    dev: str
    path: str
    bpf: tuple[str, ...]          # the capture filter, as tcpdump arguments


def tcpdump_argv(tap: Tap) -> list[str]:
    return ["ip", "netns", "exec", tap.netns, "tcpdump", "-i", tap.dev, "-n", "-U", "--immediate-mode", "-s", SNAPLEN,
            "-w", tap.path, *tap.bpf]


def _start(taps: list[Tap]) -> list[subprocess.Popen]:
    procs = []
    try:
        for t in taps:
            if not t.netns.startswith("pn-"):
                raise PodnetError(f"refusing to capture in {t.netns}")
            procs.append(subprocess.Popen(tcpdump_argv(t), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE))
        _wait_listening(procs, taps)
    except BaseException:
        _stop(procs)
        raise
    return procs


def _wait_listening(procs: list[subprocess.Popen], taps: list[Tap]) -> None:
    """tcpdump says "listening on DEV" on stderr once its socket is bound."""
    pending = {p.stderr.fileno(): (p, t, b"") for p, t in zip(procs, taps, strict=True) if p.stderr}
    deadline = time.monotonic() + READY_TIMEOUT
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            names = ", ".join(f"{t.netns}/{t.dev}" for _, t, _ in pending.values())
            raise PodnetError(f"tcpdump did not start listening within {READY_TIMEOUT:.0f}s on {names}")
        ready, _, _ = select.select(list(pending), [], [], left)
        for fd in ready:
            p, t, buf = pending[fd]
            chunk = os.read(fd, 4096)
            buf += chunk
            if b"listening on" in buf:
                del pending[fd]
            elif not chunk or p.poll() is not None:
                msg = buf.decode(errors="replace").strip().splitlines()
                raise PodnetError(f"tcpdump on {t.dev} in {t.netns} failed: {msg[-1] if msg else 'exited'}")
            else:
                pending[fd] = (p, t, buf)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)      # tcpdump flushes its file and exits
    deadline = time.monotonic() + 5
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stderr:
            p.stderr.close()


@dataclass(frozen=True, slots=True)
class Sent:
    proto: str
    sport: int | None
    icmp_id: int | None
    outcome: str
    detail: str = ""


def _socket(ns: str, kind: int, proto: int = 0) -> socket.socket:
    with netns.entered(ns):
        return socket.socket(socket.AF_INET, kind, proto)


def pick_ids() -> tuple[int, int]:
    """A source port and an ICMP echo id for one probe."""
    return 20000 + secrets.randbelow(10000), secrets.randbelow(0xFFFE) + 1


def send(ns: str, dst: str, proto: str, port: int | None, size: int | None, timeout: float, sport: int,
         ident: int) -> Sent:
    """Send the flow from namespace ``ns``; returns what the socket said."""
    if proto == "icmp":
        r = icmpprobe.ping(ns, dst, size=size, df=size is not None, timeout=timeout, ident=ident)
        return Sent("icmp", None, ident, r.outcome, r.detail)
    if proto == "tcp":
        s = _socket(ns, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", sport))
            s.settimeout(timeout)
            s.connect((dst, port or 0))
            if size:
                s.setsockopt(socket.IPPROTO_IP, icmpprobe.IP_MTU_DISCOVER, icmpprobe.IP_PMTUDISC_PROBE)
                s.sendall(b"x" * max(size - 40, 1))
                time.sleep(min(timeout, 1.0))
            return Sent("tcp", sport, None, "connected")
        except OSError as e:
            return Sent("tcp", sport, None, "timeout" if isinstance(e, TimeoutError) else "error", str(e))
        finally:
            s.close()
    s = _socket(ns, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", sport))
        if size:
            s.setsockopt(socket.IPPROTO_IP, icmpprobe.IP_MTU_DISCOVER, icmpprobe.IP_PMTUDISC_PROBE)
        s.settimeout(timeout)
        s.sendto(b"podnet capture probe\n".ljust(max((size or 49) - 28, 1), b"."), (dst, port or 0))
        s.recvfrom(4096)
        return Sent("udp", sport, None, "answered")
    except OSError as e:
        return Sent("udp", sport, None, "timeout" if isinstance(e, TimeoutError) else "error", str(e))
    finally:
        s.close()


def capture(taps: list[Tap], ns: str, dst: str, proto: str, port: int | None, size: int | None, sport: int,
            ident: int, timeout: float = 1.0, settle: float = 0.3) -> Sent:
    """Start a tcpdump per tap, send the flow once they all listen, stop them a moment after."""
    for t in taps:
        os.makedirs(os.path.dirname(t.path) or ".", exist_ok=True)
    procs = _start(taps)
    try:
        sent = send(ns, dst, proto, port, size, timeout, sport, ident)
        time.sleep(settle)
    finally:
        _stop(procs)
    return sent
