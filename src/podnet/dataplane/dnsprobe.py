"""Ask the cluster DNS a question from inside a namespace (real packets; used by status and diagnose)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rcode

from podnet.dataplane import netns


@dataclass
class Probe:
    server: str
    name: str
    ok: bool
    rcode: str = ""
    answers: tuple[str, ...] = ()
    ms: float = 0.0
    error: str = ""


def query(ns: str, server: str, name: str, rdtype: str = "A", tcp: bool = False, timeout: float = 1.0) -> Probe:
    """One query sent from namespace ``ns`` to ``server``:53."""
    q = dns.message.make_query(name, rdtype)
    t0 = time.monotonic()
    try:
        with netns.entered(ns):   # the socket is created in the namespace and stays there
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        with sock:
            if tcp:
                sock.settimeout(timeout)
                sock.connect((server, 53))
            sock.setblocking(False)   # dnspython waits with select(): its sockets are non-blocking
            if tcp:
                r = dns.query.tcp(q, server, timeout=timeout, sock=sock)
            else:
                r = dns.query.udp(q, server, timeout=timeout, sock=sock)
    except (OSError, dns.exception.DNSException) as e:
        return Probe(server, name, False, ms=(time.monotonic() - t0) * 1000, error=str(e) or type(e).__name__)
    answers = tuple(str(rr) for rrset in r.answer for rr in rrset)
    rcode = dns.rcode.to_text(r.rcode())
    return Probe(server, name, rcode == "NOERROR" and bool(answers), rcode, answers, (time.monotonic() - t0) * 1000)
