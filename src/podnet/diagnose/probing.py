"""Run the five steps' probes for real, from inside the source pod's network namespace: ICMP echoes,
connections (TCP, UDP, SCTP) and a DNS lookup with the pod's own resolv.conf (search path, ndots), as
its processes would. Every probe is a fresh socket; all run concurrently and are reported in order.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.name
import dns.resolver

from podnet.dataplane import icmpprobe, netns
from podnet.dataplane import probe as connprobe
from podnet.diagnose.report import ProbeResult, StepResult
from podnet.diagnose.steps import StepPlan
from podnet.dns.resolve import parse_resolv_conf

ETC_NETNS = "/etc/netns"
TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0     # a TCP connect outlives one lost SYN (the first retransmission comes after 1 s)
DNS_LIFETIME = 2.0


def _ping(ns: str, p, timeout: float) -> ProbeResult:
    df = p.kind == "ping-df"
    r = icmpprobe.ping(ns, p.dst, size=p.size, df=df, timeout=timeout)
    if r.outcome == "timeout":     # one lost packet is not a fault: ask once more, as ping -c 2 would
        r = icmpprobe.ping(ns, p.dst, size=p.size, df=df, timeout=timeout)
    ok = r.ok or (df and r.outcome == "frag-needed")   # PMTU discovery works: the sender learns the path MTU
    detail = r.detail
    if df and r.outcome == "frag-needed":
        detail = f"{r.detail}: path MTU discovery works"
    return ProbeResult(p.kind, p.dst, p.about, ok, r.outcome, detail, r.ms, "icmp", p.dst, None, p.size or 84)


def _connect(ns: str, p, timeout: float) -> list[ProbeResult]:
    if p.proto == "udp" and p.port == 53:
        return [_dns_direct(ns, p, timeout) for _ in range(p.tries)]
    pr = connprobe.Probe(ns, p.dst, p.port or 0, p.proto.upper())
    wait = max(timeout, CONNECT_TIMEOUT) if p.proto == "tcp" else timeout
    with ThreadPoolExecutor(max_workers=max(1, p.tries)) as ex:
        got = list(ex.map(lambda _: connprobe.probe(pr, wait), range(p.tries)))
    target = f"{p.dst}:{p.port}/{p.proto}"
    return [ProbeResult("connect", target, p.about, r.outcome in ("connected", "answered"), r.outcome, r.detail,
                        r.ms, p.proto, p.dst, p.port) for r in got]


def _dns_direct(ns: str, p, timeout: float) -> ProbeResult:
    """A UDP 53 destination is asked a DNS question (a DNS server ignores anything else)."""
    from podnet.dataplane import dnsprobe

    r = dnsprobe.query(ns, p.dst, "kubernetes.default.svc.cluster.local", timeout=timeout)
    answered = r.ok or r.rcode in ("NXDOMAIN", "NOERROR", "REFUSED", "SERVFAIL")
    outcome = "answered" if answered else "timeout" if "timed out" in r.error or not r.error else "error"
    detail = f"rcode {r.rcode}" if answered else r.error
    return ProbeResult("connect", f"{p.dst}:{p.port}/udp", p.about, answered, outcome, detail, r.ms, "udp", p.dst,
                       p.port)


def resolv_conf_text(ns: str) -> str | None:
    try:
        with open(os.path.join(ETC_NETNS, ns, "resolv.conf"), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def _dns(ns: str, p, lifetime: float) -> ProbeResult:
    text = resolv_conf_text(ns)
    if text is None:
        return ProbeResult("dns", p.dst, "the pod's resolv.conf", False, "error",
                           f"{ETC_NETNS}/{ns}/resolv.conf is missing", 0.0, "udp", "", 53)
    conf = parse_resolv_conf(text)
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = list(conf.effective_nameservers)
    res.search = [dns.name.from_text(d) for d in conf.search]
    res.ndots = conf.ndots
    res.use_search_by_default = True
    res.lifetime = lifetime
    res.timeout = lifetime / 2
    server = res.nameservers[0]
    about = f"nameserver {server} (the pod's resolv.conf)"
    t0 = time.monotonic()
    try:
        with netns.entered(ns):   # dnspython opens its sockets in this thread: inside the pod
            ans = res.resolve(p.dst, "A", search=True)
    except dns.resolver.NXDOMAIN:
        return ProbeResult("dns", p.dst, about, False, "nxdomain", f"no such name (searched {', '.join(conf.search)})",
                           (time.monotonic() - t0) * 1000, "udp", str(server), 53)
    except (dns.resolver.LifetimeTimeout, dns.exception.Timeout):
        return ProbeResult("dns", p.dst, about, False, "timeout", f"no answer from {server}",
                           (time.monotonic() - t0) * 1000, "udp", str(server), 53)
    except dns.resolver.NoNameservers as e:
        errs = e.kwargs.get("errors") or []
        why = "; ".join(f"{srv}: {err if isinstance(err, str) else getattr(err, 'strerror', None) or err}"
                        for srv, _tcp, _port, err, _ans in errs[:2]) or "no nameserver answered"
        return ProbeResult("dns", p.dst, about, False, "error", why, (time.monotonic() - t0) * 1000, "udp",
                           str(server), 53)
    except (dns.exception.DNSException, OSError) as e:
        return ProbeResult("dns", p.dst, about, False, "error", str(e) or type(e).__name__,
                           (time.monotonic() - t0) * 1000, "udp", str(server), 53)
    ms = (time.monotonic() - t0) * 1000
    addrs = [r.address for r in ans]
    ok = p.expect is None or p.expect in addrs
    detail = f"-> {', '.join(addrs)}" + ("" if ok else f", expected {p.expect}")
    return ProbeResult("dns", p.dst, about, ok, "resolved" if ok else "wrong-answer", detail, ms, "udp", str(server),
                       53)


def run_steps(ns: str, plans: list[StepPlan], timeout: float = TIMEOUT) -> list[StepResult]:
    """Run every planned probe (concurrently) and assemble the steps, in order."""
    jobs = [(i, j, p) for i, s in enumerate(plans) for j, p in enumerate(s.probes)]

    def one(job) -> list[ProbeResult]:
        _, _, p = job
        try:
            if p.kind in ("ping", "ping-df"):
                return [_ping(ns, p, timeout)]
            if p.kind == "connect":
                return _connect(ns, p, timeout)
            return [_dns(ns, p, DNS_LIFETIME)]
        except OSError as e:   # the namespace vanished, ...
            return [ProbeResult(p.kind, p.dst, p.about, False, "error", str(e), 0.0, p.proto, p.dst, p.port)]

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(jobs)))) as ex:
        results = list(ex.map(one, jobs))
    by_step: dict[int, list[ProbeResult]] = {}
    for (i, _, _), rs in zip(jobs, results, strict=True):
        by_step.setdefault(i, []).extend(rs)
    out = []
    for i, s in enumerate(plans):
        probes = by_step.get(i, [])
        if not s.probes:
            out.append(StepResult(s.n, s.name, s.title, s.question, "skip", (), s.skip))
            continue
        status = "pass" if all(p.ok for p in probes) else "fail"
        out.append(StepResult(s.n, s.name, s.title, s.question, status, tuple(_squash(probes))))
    return out


def _squash(probes: list[ProbeResult]) -> list[ProbeResult]:
    """Repeated connects to one target become one line: "connected 6/8, timeout 2/8"."""
    out: list[ProbeResult] = []
    groups: dict[tuple[str, str], list[ProbeResult]] = {}
    order: list[tuple[str, str]] = []
    for p in probes:
        k = (p.kind, p.target)
        if k not in groups:
            order.append(k)
        groups.setdefault(k, []).append(p)
    for k in order:
        g = groups[k]
        if len(g) == 1:
            out.append(g[0])
            continue
        counts: dict[str, int] = {}
        for p in g:
            counts[p.outcome] = counts.get(p.outcome, 0) + 1
        ok = all(p.ok for p in g)
        first_bad = next((p for p in g if not p.ok), g[0])
        summary = ", ".join(f"{o} {n}/{len(g)}" for o, n in counts.items())
        ms = sum(p.ms for p in g) / len(g)
        out.append(ProbeResult(first_bad.kind, first_bad.target, first_bad.about, ok, summary,
                               first_bad.detail if not ok else "", ms, first_bad.proto, first_bad.dst,
                               first_bad.port, first_bad.size))
    return out
