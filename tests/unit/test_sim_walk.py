"""The walker on real dumps (tests/fixtures/snapshot, tests/fixtures/trace) and edited copies of them:
conntrack entries win over rules, routing, neighbours, bridge ports, VXLAN, sockets."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from podnet.sim.choices import explore
from podnet.sim.dumpdir import load_snapshot
from podnet.sim.parse_ss import parse_ss, render_ss
from podnet.sim.routing import Fib
from podnet.sim.snapshot import NetnsState, Route, RoutingRule, Snapshot, SnapshotError
from podnet.trace.engine import Question, run_trace
from podnet.trace.model import Disposition, DropReason, StepKind
from podnet.trace.places import load_places

FIX = Path(__file__).parent.parent / "fixtures"
IP = ipaddress.ip_address
NET = ipaddress.ip_network


@pytest.fixture(scope="module")
def small() -> Snapshot:
    return load_snapshot(FIX / "snapshot")


@pytest.fixture(scope="module")
def seed() -> tuple[Snapshot, object]:
    d = FIX / "trace" / "seed-iptables"
    snap = load_snapshot(d)
    return snap, load_places(d, snap)


def edit(snap: Snapshot, ns: str, **kw: object) -> Snapshot:
    return Snapshot({**snap.namespaces, ns: dataclasses.replace(snap[ns], **kw)})


def test_existing_conntrack_entry_wins_over_rules(small: Snapshot) -> None:
    # conntrack -L on node1 holds 10.244.1.5:41234 -> 10.96.45.67:8080 already DNATed to 10.244.2.8
    res = run_trace(small, None, Question("pod", "10.96.45.67:8080", sport=41234))
    assert len(res.outcomes) == 1 and res.outcome.endpoint == "10.244.2.8:8080"
    steps = [s for h in res.outcome.forward.hops for s in h.steps]
    ct = next(s for s in steps if s.kind is StepKind.CONNTRACK)
    assert "from the snapshot" in ct.text and "ESTABLISHED" in ct.text and "src=10.244.1.5" in (ct.entry or "")
    assert not any(s.kind is StepKind.NETFILTER and "PREROUTING" in s.text for s in steps)
    # another source port: a new connection, the rules decide (and branch)
    res2 = run_trace(small, None, Question("pod", "10.96.45.67:8080"))
    assert sorted(o.endpoint or "" for o in res2.outcomes) == ["10.244.2.8:8080", "10.244.2.9:8080"]


def test_routing_policy_rules_and_route_types() -> None:
    routes = [Route("main", NET("0.0.0.0/0"), gateway=IP("192.168.1.1"), dev="eth0"),
              Route("main", NET("10.250.0.0/16"), type="blackhole"),
              Route("main", NET("10.251.0.0/16"), type="unreachable"),
              Route("main", NET("10.0.0.0/8"), gateway=IP("192.168.1.2"), dev="eth0", metric=10),
              Route("main", NET("10.0.0.0/8"), gateway=IP("192.168.1.3"), dev="eth0", metric=5),
              Route("100", NET("10.99.0.0/16"), gateway=IP("192.168.1.11"), dev="eth0")]
    rules = [RoutingRule(0, "local"), RoutingRule(100, "100", fwmark=0x4000, fwmask=0x4000),
             RoutingRule(32766, "main"), RoutingRule(32767, "default")]
    fib = Fib(routes, rules, [])
    assert fib.lookup(IP("10.1.2.3")).route.gateway == IP("192.168.1.3")        # lowest metric
    assert fib.lookup(IP("10.250.1.1")).type == "blackhole"
    assert fib.lookup(IP("10.251.1.1")).type == "unreachable"
    assert fib.lookup(IP("10.99.1.1")).route.gateway == IP("192.168.1.3")       # main: 10/8
    marked = fib.lookup(IP("10.99.1.1"), mark=0x4000)
    assert marked.table == "100" and marked.route.gateway == IP("192.168.1.11")
    assert fib.lookup(IP("1.1.1.1")).route.dst.prefixlen == 0


def test_rp_filter_strict_drops_a_spoofed_source(seed) -> None:  # type: ignore[no-untyped-def]
    snap, places = seed
    n1 = "pn-fix-node1"
    s = {**snap[n1].sysctls, "net.ipv4.conf.all.rp_filter": "1"}
    res = run_trace(edit(snap, n1, sysctls=s), places, Question("10.244.2.77", "pod-a:8080", at="node1:eth0"))
    assert res.disposition is Disposition.DROPPED and res.outcome.forward.reason is DropReason.RP_FILTER
    # (the way back to node2's pods is flannel.1, not eth0); with rp_filter off it passes
    ok = run_trace(snap, places, Question("10.244.2.77", "pod-a:8080", at="node1:eth0"))
    assert ok.disposition is Disposition.NO_LISTENER


def test_failed_neighbour_and_nobody_answering(seed) -> None:  # type: ignore[no-untyped-def]
    snap, places = seed
    # pod-c is gone (its namespace is not in the snapshot any more): nobody answers ARP for it
    gone = Snapshot({k: v for k, v in snap.namespaces.items() if not k.endswith("pod-c")})
    res = run_trace(gone, places, Question("pod-a", "10.244.2.9:8080"))
    assert res.disposition is Disposition.NEIGHBOUR_UNREACHABLE
    assert "10.244.2.9 dev cni0" in res.outcome.forward.summary


def test_hairpin_off_drops_the_frame(seed) -> None:  # type: ignore[no-untyped-def]
    snap, places = seed
    n2 = "pn-fix-node2"
    peer = snap.veth_peer("pn-fix-default-pod-b", "eth0")
    assert peer is not None
    links = tuple(dataclasses.replace(lk, port=dataclasses.replace(lk.port, hairpin=False))
                  if lk.name == peer[1].name and lk.port else lk for lk in snap[n2].links)
    res = run_trace(edit(snap, n2, links=links), places,
                    Question("pod-b", "my-service:8080", endpoint="10.244.2.8"))
    assert res.disposition is Disposition.DROPPED and res.outcome.forward.reason is DropReason.HAIRPIN_OFF


def test_vxlan_without_fdb_entry_and_link_down(seed) -> None:  # type: ignore[no-untyped-def]
    snap, places = seed
    n1 = "pn-fix-node1"
    res = run_trace(edit(snap, n1, fdb=tuple(e for e in snap[n1].fdb if e.dev != "flannel.1")), places,
                    Question("pod-a", "pod-b:8080"))
    assert res.outcome.forward.reason is DropReason.NO_TUNNEL_ENDPOINT
    down = tuple(dataclasses.replace(lk, flags=()) if lk.name == "flannel.1" else lk for lk in snap[n1].links)
    res = run_trace(edit(snap, n1, links=down), places, Question("pod-a", "pod-b:8080"))
    assert res.outcome.forward.reason is DropReason.LINK_DOWN and "flannel.1 is down" in res.outcome.forward.summary


def test_learned_path_mtu_makes_the_sender_refuse(seed) -> None:  # type: ignore[no-untyped-def]
    snap, places = seed
    from podnet.sim.parse_ip import parse_ip_route_cache

    cache = parse_ip_route_cache('[{"dst":"10.244.2.8","gateway":"10.244.1.1","dev":"eth0","flags":[],"cache":[],'
                                 '"expires":573,"metrics":[{"mtu":1400}]}]')
    assert cache[0].table == "cache" and cache[0].mtu == 1400
    bad = edit(snap, "pn-fix-default-pod-a", route_cache=cache)
    res = run_trace(bad, places, Question("pod-a", "pod-b:8080", "udp", size=1420))
    assert res.disposition is Disposition.TOO_BIG
    assert "1420 B > learned path MTU 1400 to 10.244.2.8" in res.outcome.forward.summary
    assert run_trace(bad, places, Question("pod-a", "pod-c:8080", "udp", size=1420)).disposition \
        is not Disposition.TOO_BIG


def test_listeners_unknown_without_ss_dump(seed) -> None:  # type: ignore[no-untyped-def]
    snap, places = seed
    res = run_trace(edit(snap, "pn-fix-default-pod-b", sockets=None), places, Question("pod-a", "pod-b:9"))
    assert res.ok and any("no socket list" in w for w in res.outcome.forward.warnings)


def test_node_to_its_own_address_is_local(seed) -> None:  # type: ignore[no-untyped-def]
    snap, places = seed
    res = run_trace(snap, places, Question("node/node1", "192.168.1.10:10250"))
    assert res.disposition is Disposition.NO_LISTENER
    assert any(s.kind is StepKind.ROUTE and "local 192.168.1.10" in s.text
               for h in res.outcome.forward.hops for s in h.steps)


def test_parse_ss() -> None:
    text = ("tcp LISTEN 0 512 0.0.0.0:8080 0.0.0.0:*\nudp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:*\n"
            "tcp LISTEN 0 128 [::]:22 [::]:*\ntcp LISTEN 0 5 10.0.0.1:80 0.0.0.0:*\n")
    socks = parse_ss(text)
    assert [(s.proto, str(s.local), s.port, s.dev) for s in socks] == [
        ("tcp", "None", 8080, None), ("udp", "127.0.0.53", 53, "lo"), ("tcp", "None", 22, None),
        ("tcp", "10.0.0.1", 80, None)]
    assert socks[3].accepts("tcp", IP("10.0.0.1"), 80) and not socks[3].accepts("tcp", IP("10.0.0.2"), 80)
    assert parse_ss(render_ss(socks)) == socks
    with pytest.raises(SnapshotError, match=r"ss-listen\.txt:2"):
        parse_ss("tcp LISTEN 0 5 0.0.0.0:80 0.0.0.0:*\ntcp LISTEN 0 5 nonsense 0.0.0.0:*\n")


def test_explore_limit() -> None:
    def run(ch):  # type: ignore[no-untyped-def]
        for i in range(10):
            ch.branch(f"d{i}", [("a", 0.5), ("b", 0.5)])
        return ch.probability

    leaves, truncated = explore(run, limit=8)
    assert truncated and len(leaves) == 8


def test_state_without_links_is_unknown_not_a_crash() -> None:
    snap = Snapshot({"a": NetnsState(name="a")})
    res = run_trace(snap, None, Question("a", "10.0.0.1:80"))
    assert res.disposition is Disposition.NO_ROUTE
