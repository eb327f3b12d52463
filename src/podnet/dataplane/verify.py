"""``podnet trace --verify``: send the real packet in the lab and watch what the kernel does with it
(rule counters before and after, the conntrack table, captures on the predicted interfaces), then
compare with the model (``podnet.trace.verify``).

The probe runs inside the source's namespace: a TCP connect (then a request and close), a UDP
datagram of the traced size with DF set (and the answer, if any), or one ping with DF set. It uses
a fresh source port each time, so the kernel's conntrack entry is the probe's own; the prediction
is re-run with that port. Everything happens inside the lab's namespaces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import select
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from podnet.errors import PodnetError
from podnet.sim.parse_conntrack import parse_conntrack
from podnet.sim.parse_iptables import parse_iptables_save
from podnet.sim.parse_nft import parse_nft
from podnet.sim.snapshot import ConntrackEntry, Snapshot
from podnet.trace.engine import Question, assemble, prepare, walk_all
from podnet.trace.model import TraceResult
from podnet.trace.places import Places
from podnet.trace.verify import (
    CaptureSpec,
    Counters,
    Observation,
    ProbeResult,
    VerifyReport,
    capture_plan,
    compare,
    namespaces,
)

CAPTURE_WAIT = 0.8           # seconds to wait for a packet that has not been captured yet, after the probe
READY_TIMEOUT = 3.0
PROBE_TIMEOUT = 2.5
_ENV = {**os.environ, "LC_ALL": "C", "LANG": "C"}

PROBE = r"""
import errno, json, socket, sys
proto, dst, dport, sport, size, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), float(sys.argv[6])
def out(kind, detail=""):
    print(json.dumps({"result": kind, "detail": detail}))
    sys.exit(0)
def oserr(e):
    if e.errno == errno.EMSGSIZE:
        out("emsgsize", str(e))
    if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        out("unreachable", str(e))
    if e.errno == errno.ECONNREFUSED:
        out("refused", str(e))
    if e.errno == errno.EACCES:
        out("prohibited", str(e))
    out("error", str(e))
try:
    if proto == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
        s.settimeout(timeout)
        s.connect((dst, dport))
        try:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            s.recv(4096)
        except OSError:
            pass
        s.close()
        out("connected")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, 10, 2)          # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF set
    s.bind(("0.0.0.0", sport))
    s.settimeout(timeout)
    s.connect((dst, dport))
    payload = b"x" * max(0, size - 28)
    s.send(payload)
    try:
        s.recv(65535)
        out("answer")
    except socket.timeout:
        try:
            s.send(payload)                              # a learned path MTU now refuses it
        except OSError as e:
            if e.errno == errno.EMSGSIZE:
                out("fragneeded", str(e))
            raise
        out("timeout")
except socket.timeout:
    out("timeout")
except OSError as e:
    oserr(e)
"""


def _ns(netns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def _run(argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_ENV, check=False)


def read_counters(netns: str) -> Counters:
    out: Counters = {}
    p = _run(_ns(netns, "iptables-save", "-c"))
    if p.returncode == 0:
        for t in parse_iptables_save(p.stdout, f"{netns}:iptables-save").tables.values():
            for ch in t.chains.values():
                for r in ch.rules:
                    out[("iptables", t.name, ch.name, r.num)] = r.counters.packets
    p = _run(_ns(netns, "nft", "-j", "list", "ruleset"))
    if p.returncode == 0 and p.stdout.strip():
        rs = parse_nft(p.stdout, f"{netns}:nft")
        for (fam, tname), t in rs.tables.items():
            if fam == "ip" and tname in ("raw", "mangle", "nat", "filter", "security"):
                continue
            for ch in t.chains.values():
                for r in ch.rules:
                    n = _nft_packets(r.expr)
                    if n is not None and r.handle is not None:
                        out[("nftables", f"{fam} {tname}", ch.name, r.handle)] = n
    return out


def _nft_packets(expr: tuple[Any, ...]) -> int | None:
    for st in expr:
        if isinstance(st, dict) and isinstance(st.get("counter"), dict):
            return int(st["counter"].get("packets", 0))
    return None


def read_conntrack(netns: str) -> tuple[ConntrackEntry, ...]:
    p = _run(_ns(netns, "conntrack", "-L", "-o", "extended"))
    return parse_conntrack(p.stdout, f"{netns}:conntrack") if p.returncode == 0 else ()


def _parallel(fn: Callable[[str], Any], names: list[str]) -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
        return dict(zip(names, pool.map(fn, names), strict=True))


class Capture:
    """tcpdump on one interface of one namespace, for one packet matching a filter."""

    def __init__(self, spec: CaptureSpec) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            _ns(spec.netns, "tcpdump", "-i", spec.dev, "-n", "-l", "-p", "--immediate-mode", "-c", "1",
                spec.filter), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_ENV)

    def wait_ready(self, deadline: float) -> bool:
        """Until tcpdump says it is listening (read unbuffered: select() and a buffered reader disagree)."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        buf = b""
        while b"listening on" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return False
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            buf += chunk
        return True

    def seen(self, deadline: float) -> bool:
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        out = self.proc.stdout.read() if self.proc.stdout else b""
        return bool(out.strip())


def probe(netns: str, proto: str, dst: str, dport: int | None, sport: int, size: int) -> ProbeResult:
    if proto == "icmp":
        p = _run(_ns(netns, "ping", "-n", "-c", "1", "-W", str(int(PROBE_TIMEOUT)), "-M", "do", "-s",
                     str(max(0, size - 28)), dst), timeout=PROBE_TIMEOUT + 5)
        text = (p.stdout + p.stderr).lower()
        if " 1 received" in text:
            return ProbeResult("answer")
        if "frag needed" in text:
            return ProbeResult("fragneeded", text.strip().splitlines()[1] if "\n" in text else text)
        if "message too long" in text:
            return ProbeResult("emsgsize")
        if "port unreachable" in text or "protocol unreachable" in text:
            return ProbeResult("refused")
        if "prohibited" in text:
            return ProbeResult("prohibited")
        if "unreachable" in text:
            return ProbeResult("unreachable")
        return ProbeResult("timeout")
    p = _run(_ns(netns, sys.executable, "-c", PROBE, proto, dst, str(dport), str(sport), str(size),
                 str(PROBE_TIMEOUT)), timeout=PROBE_TIMEOUT * 2 + 5)
    try:
        doc = json.loads(p.stdout.strip().splitlines()[-1])
        return ProbeResult(doc["result"], doc.get("detail", ""))
    except (IndexError, ValueError, KeyError):
        return ProbeResult("error", (p.stderr.strip().splitlines() or ["no output"])[-1])


def verify_trace(lab: Any, snap: Snapshot, places: Places, q: Question, res: TraceResult,
                 progress: Callable[[str], None] = lambda s: None) -> VerifyReport:
    """Send the packet ``q`` describes in the running lab and compare the kernel's path with the model's."""
    if q.proto == "sctp":
        return VerifyReport(res, skipped="SCTP probes are not implemented (TCP, UDP and ICMP are)")
    if q.proto == "tcp" and q.size not in (None, 60):
        raise PodnetError("--verify with --size needs -p udp or -p icmp (a TCP connect sends a 60-byte SYN)",
                          field="--size")
    sport = random.randint(20000, 29999)
    q2 = dataclasses.replace(q, sport=sport)
    p = prepare(snap, places, q2)
    if p.origin.entry_dev is not None:
        return VerifyReport(res, skipped=f"{q.src} enters from outside the lab ({p.origin.label}): there is no "
                                          "socket to send it from")
    walks, truncated = walk_all(p, followups=True)
    result = assemble(p, walks, truncated)
    first = walks[0].forward
    if first.sent is None:
        return VerifyReport(result, skipped="the packet cannot even be sent (see the trace)")
    watch = namespaces(walks)
    plan = capture_plan(walks)
    progress(f"verify: reading counters in {len(watch)} namespaces, capturing on {len(plan)} interfaces")
    before = _parallel(read_counters, watch)
    caps = [Capture(c) for c in plan]
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        for c in caps:
            c.wait_ready(deadline)
        sent = first.sent
        progress(f"verify: sending {sent.summary()} from {p.origin.label}")
        got = probe(p.origin.netns, q2.proto, str(sent.dst), sent.dport, sport, sent.size)
        deadline = time.monotonic() + CAPTURE_WAIT
        captured = {(c.spec.netns, c.spec.dev, c.spec.filter): c.seen(deadline) for c in caps}
    finally:
        for c in caps:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
    after = _parallel(read_counters, watch)
    conntrack = _parallel(read_conntrack, watch)
    obs = Observation(got, before, after, conntrack, captured)
    return compare(walks, plan, obs, result, q2.proto)
