"""The cluster DNS server with real DNS packets over loopback (dnspython as the client)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from podnet.dns.data import make_document
from podnet.dns.records import RecordSet
from podnet.dns.server import ClusterDNSServer, FileWatcher
from podnet.dns.wire import handle

HOST = "127.0.0.1"
SVC = "my-service.default.svc.cluster.local."


def services(extra: int = 0) -> list[tuple[object, ...]]:
    many = [(f"10.244.3.{i}", None, True, None) for i in range(1, 101)]
    out: list[tuple[object, ...]] = [
        ("default", "my-service", "10.96.45.67", [("http", 8080, "TCP")], [("10.244.2.8", None, True, "b1")]),
        ("default", "big", None, [("http", 80, "TCP")], many),
    ]
    out += [("default", f"extra-{i}", f"10.96.1.{i}", [], []) for i in range(extra)]
    return out


def records(extra: int = 0) -> RecordSet:
    return RecordSet(services(extra), [("default", "pod-a", "10.244.1.5")])  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[ClusterDNSServer]:
    lines: list[str] = []
    srv = ClusterDNSServer(records(), HOST, 0, log=lines.append, tcp_idle_timeout=2)
    srv.lines = lines  # type: ignore[attr-defined]
    with srv:
        yield srv


def udp(srv: ClusterDNSServer, name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    return dns.query.udp(q, HOST, port=srv.port, timeout=2)


def addrs(resp: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in resp.answer for rd in rrset)


def test_a_record_udp_and_tcp(server: ClusterDNSServer) -> None:
    resp = udp(server, SVC)
    assert resp.rcode() == dns.rcode.NOERROR and addrs(resp) == ["10.96.45.67"]
    assert resp.flags & dns.flags.AA and not resp.flags & dns.flags.RA
    assert resp.answer[0].ttl == 30
    tcp = dns.query.tcp(dns.message.make_query(SVC, "A"), HOST, port=server.port, timeout=2)
    assert addrs(tcp) == ["10.96.45.67"]
    assert any('"A IN my-service.default.svc.cluster.local. udp' in ln and "NOERROR" in ln
               for ln in server.lines)  # type: ignore[attr-defined]


def test_srv_with_additional(server: ClusterDNSServer) -> None:
    resp = udp(server, f"_http._tcp.{SVC}", "SRV")
    assert [rd.to_text() for rd in resp.answer[0]] == [f"0 100 8080 {SVC}"]
    assert [rd.to_text() for rs in resp.additional for rd in rs] == ["10.96.45.67"]


def test_ptr(server: ClusterDNSServer) -> None:
    resp = udp(server, "67.45.96.10.in-addr.arpa.", "PTR")
    assert addrs(resp) == [SVC]
    resp = udp(server, "5.1.244.10.in-addr.arpa.", "PTR")
    assert addrs(resp) == ["10-244-1-5.default.pod.cluster.local."]


def test_nxdomain_nodata_refused(server: ClusterDNSServer) -> None:
    nx = udp(server, "nope.default.svc.cluster.local.")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
    nodata = udp(server, SVC, "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    ref = udp(server, "example.com.")
    assert ref.rcode() == dns.rcode.REFUSED and not ref.flags & dns.flags.AA


def test_case_insensitive_and_echoed(server: ClusterDNSServer) -> None:
    resp = udp(server, "MY-SERVICE.Default.SVC.cluster.local.")
    assert addrs(resp) == ["10.96.45.67"]
    assert resp.answer[0].name.to_text() == "MY-SERVICE.Default.SVC.cluster.local."


def test_large_headless_answer_is_truncated_then_served_over_tcp(server: ClusterDNSServer) -> None:
    name = "big.default.svc.cluster.local."
    truncated = udp(server, name)
    assert truncated.flags & dns.flags.TC and not truncated.answer
    resp, used_tcp = dns.query.udp_with_fallback(dns.message.make_query(name, "A"), HOST, port=server.port,
                                                 timeout=2)
    assert used_tcp and len(addrs(resp)) == 100
    # EDNS0 raises the UDP limit (capped at 1232): 50 records fit, 100 do not
    assert udp(server, f"_http._tcp.{name}", "SRV", use_edns=0, payload=4096).flags & dns.flags.TC
    server.update(RecordSet([("default", "mid", None, [], [(f"10.244.4.{i}", None, True, None)
                                                             for i in range(1, 51)])]))
    plain = udp(server, "mid.default.svc.cluster.local.")
    assert plain.flags & dns.flags.TC
    edns = udp(server, "mid.default.svc.cluster.local.", use_edns=0, payload=4096)
    assert not edns.flags & dns.flags.TC and len(addrs(edns)) == 50 and edns.edns == 0


def test_several_queries_on_one_tcp_connection(server: ClusterDNSServer) -> None:
    with socket.create_connection((HOST, server.port), timeout=2) as s:
        for name in (SVC, "nope.default.svc.cluster.local."):
            wire = dns.message.make_query(name, "A").to_wire()
            s.sendall(struct.pack("!H", len(wire)) + wire)
        answers = []
        for _ in range(2):
            (n,) = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))
            answers.append(dns.message.from_wire(s.recv(n, socket.MSG_WAITALL)))
    assert [a.rcode() for a in answers] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN]


def test_malformed_packets_do_not_crash(server: ClusterDNSServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for junk in (b"", b"\x00", os.urandom(7), b"\x12\x34" + b"\x01\x00" + b"\x00\x01" + b"\x00" * 6 + b"\xff" * 30):
            s.sendto(junk, (HOST, server.port))
        # the last one has a readable header: FORMERR with its id
        reply = dns.message.from_wire(s.recv(512))
        assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
    with socket.create_connection((HOST, server.port), timeout=2) as t:
        t.sendall(b"\x00\x40garbage")   # announces 64 bytes, sends 7, then closes
    assert addrs(udp(server, SVC)) == ["10.96.45.67"]
    assert any(ln.startswith("[ERROR]") for ln in server.lines)  # type: ignore[attr-defined]


def test_wire_rules_without_sockets() -> None:
    rs = records()
    q = dns.message.make_query(SVC, "A")
    assert handle(q.to_wire(), rs).response is not None
    resp = dns.message.make_response(q).to_wire()
    assert handle(resp, rs).response is None                       # never answer a response
    notify = dns.message.make_query(SVC, "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(handle(notify.to_wire(), rs).response or b"").rcode() == dns.rcode.NOTIMP
    chaos = dns.message.make_query("version.bind.", "TXT", "CH")
    assert dns.message.from_wire(handle(chaos.to_wire(), rs).response or b"").rcode() == dns.rcode.REFUSED
    two = dns.message.make_query(SVC, "A")
    two.question.append(dns.message.make_query("x.", "A").question[0])
    assert handle(two.to_wire(), rs).rcode == "FORMERR"


def test_update_takes_effect(server: ClusterDNSServer) -> None:
    name = "extra-3.default.svc.cluster.local."
    assert udp(server, name).rcode() == dns.rcode.NXDOMAIN
    server.update(records(extra=5))
    assert addrs(udp(server, name)) == ["10.96.1.3"]
    server.update(records())
    assert udp(server, name).rcode() == dns.rcode.NXDOMAIN


def test_dnspython_resolver_with_kubernetes_search(server: ClusterDNSServer) -> None:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port, r.ndots, r.lifetime = [HOST], server.port, 5, 3
    r.search = [dns.name.from_text(d) for d in ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")]
    r.use_search_by_default = True
    assert [a.to_text() for a in r.resolve("my-service", "A")] == ["10.96.45.67"]
    assert [a.to_text() for a in r.resolve("my-service.default", "A")] == ["10.96.45.67"]


def write_atomically(path: Path, doc: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def test_file_watcher_reloads_and_keeps_records_on_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    srv = ClusterDNSServer(RecordSet(), HOST, 0, log=None)
    logs: list[str] = []
    watcher = FileWatcher(srv, str(path), log=logs.append)
    assert not watcher.poll()                                   # no file yet: keep serving
    write_atomically(path, make_document(services(), []))
    assert watcher.poll() and srv.records.lookup(SVC, "A").answer
    assert not watcher.poll()                                   # unchanged
    path.write_text("{not json")
    assert not watcher.poll() and srv.records.lookup(SVC, "A").answer
    assert logs[-1].startswith("[ERROR]")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def test_process_main_serves_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    write_atomically(path, make_document(services()[:1], []))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "podnet.dns.server", "--records", str(path),
                             "--listen", HOST, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        q = dns.message.make_query(SVC, "A")
        deadline = time.monotonic() + 5
        while True:
            try:
                assert addrs(dns.query.udp(q, HOST, port=port, timeout=0.2)) == ["10.96.45.67"]
                break
            except dns.exception.Timeout:
                assert time.monotonic() < deadline and proc.poll() is None
        write_atomically(path, make_document(services(extra=2)[:1] + services(extra=2)[2:], []))
        q2 = dns.message.make_query("extra-1.default.svc.cluster.local.", "A")
        deadline = time.monotonic() + 1.0                       # records follow within a second
        while not addrs(dns.query.udp(q2, HOST, port=port, timeout=0.5)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=5)
    assert proc.returncode == 0, out
    assert "listening on" in out and "records loaded" in out and '"A IN my-service' in out
