"""The issue's "Must hold" cases, over snapshots read back from real seed labs (tests/fixtures/trace)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from podnet.sim.dumpdir import load_snapshot
from podnet.sim.snapshot import Snapshot
from podnet.trace.engine import Question, run_trace
from podnet.trace.model import Disposition, DropReason, StepKind, TraceResult
from podnet.trace.places import Places, load_places
from podnet.trace.render_text import render_text

FIX = Path(__file__).parent.parent / "fixtures" / "trace"


@pytest.fixture(scope="module")
def seed() -> tuple[Snapshot, Places]:
    d = FIX / "seed-iptables"
    snap = load_snapshot(d)
    return snap, load_places(d, snap)


@pytest.fixture(scope="module")
def seed_nft() -> tuple[Snapshot, Places]:
    d = FIX / "seed-nftables"
    snap = load_snapshot(d)
    return snap, load_places(d, snap)


def steps(res: TraceResult, kind: StepKind | None = None, reply: bool = False):
    t = res.outcome.reply if reply else res.outcome.forward
    assert t is not None
    return [(h, s) for h in t.hops for s in h.steps if kind is None or s.kind is kind]


def test_pod_to_service_across_nodes(seed: tuple[Snapshot, Places]) -> None:
    res = run_trace(seed[0], seed[1], Question("pod-a", "my-service:8080"))
    assert res.ok and res.disposition is Disposition.DELIVERED
    # DNS as the pod's resolver: search path of its namespace
    assert res.dns is not None and "my-service.default.svc.cluster.local." in res.dns.text
    # both branches, 0.5 each, to the two endpoints
    assert sorted((o.endpoint, o.probability) for o in res.outcomes) == [("10.244.2.8:8080", 0.5),
                                                                        ("10.244.2.9:8080", 0.5)]
    for o in res.outcomes:
        assert o.forward.disposition is Disposition.DELIVERED
    o = res.outcome
    fwd = [(h.place, s) for h in o.forward.hops for s in h.steps]
    # pod routing to the gateway, veth to cni0
    assert any(p == "pod default/pod-a" and s.kind is StepKind.ROUTE and "default via 10.244.1.1 dev eth0" in s.text
               for p, s in fwd)
    assert any(s.kind is StepKind.BRIDGE and s.text.endswith("-> bridge cni0") for _, s in fwd)
    # nat PREROUTING -> KUBE-SERVICES -> KUBE-SVC-... (statistic) -> KUBE-SEP-... DNAT
    nf = next(s for _, s in fwd if s.kind is StepKind.NETFILTER and "PREROUTING" in s.text)
    chains = [r.chain for r in nf.rules]
    assert chains[0] == "PREROUTING" and "KUBE-SERVICES" in chains
    svc = next(r for r in nf.rules if r.chain.startswith("KUBE-SVC-"))
    assert svc.note is not None and "p=0.5000" in svc.note
    sep = nf.rules[-1]
    assert sep.chain.startswith("KUBE-SEP-") and sep.target == "DNAT"
    nat = next(s.nat for _, s in fwd if s.kind is StepKind.NAT)
    assert nat is not None and nat.before == "10.96.45.67:8080" and nat.after in ("10.244.2.8:8080", "10.244.2.9:8080")
    # route via flannel.1, VXLAN to node2:8472 with sizes
    assert any(s.kind is StepKind.ROUTE and "via 10.244.2.0 dev flannel.1 onlink" in s.text for _, s in fwd)
    enc = next(s.encap for _, s in fwd if s.kind is StepKind.ENCAP)
    assert enc is not None and (enc.outer_dst, enc.dport, enc.vni) == ("192.168.1.11", 8472, 1)
    assert (enc.inner_size, enc.outer_size) == (60, 110) and enc.outer_src == "192.168.1.10"
    # decap on node2, delivery to the server
    assert any(h.node == "node2" and s.kind is StepKind.DECAP for h, s in steps(res))
    last_hop = o.forward.hops[-1]
    assert last_hop.place in ("pod default/pod-b", "pod default/pod-c")
    assert last_hop.steps[-1].kind is StepKind.DELIVER and "LISTEN" in last_hop.steps[-1].text
    # the reply, un-NATed to the ClusterIP by conntrack on node1
    assert o.reply is not None and o.reply.disposition is Disposition.DELIVERED
    undnat = [(h, s) for h, s in steps(res, StepKind.NAT, reply=True) if s.nat and s.nat.kind == "un-dnat"]
    assert len(undnat) == 1 and undnat[0][0].node == "node1"
    assert undnat[0][1].nat.after == "10.96.45.67:8080"  # type: ignore[union-attr]
    assert "from 10.96.45.67:8080" in o.reply.summary
    text = render_text(res)
    assert "paths    2 possible: 10.244.2.8:8080 p=0.50" in text and "10.244.2.9:8080 p=0.50" in text


def test_endpoint_picks_a_branch(seed: tuple[Snapshot, Places]) -> None:
    res = run_trace(seed[0], seed[1], Question("pod-a", "my-service:8080", endpoint="10.244.2.9"))
    assert len(res.outcomes) == 1 and res.outcome.endpoint == "10.244.2.9:8080"
    assert res.outcome.forward.hops[-1].place == "pod default/pod-c"
    nf = next(s for _, s in steps(res, StepKind.NETFILTER) if "PREROUTING" in s.text)
    assert "not taken" in nf.text


def test_endpoint_that_is_not_possible(seed: tuple[Snapshot, Places]) -> None:
    from podnet.errors import PodnetError

    with pytest.raises(PodnetError, match=r"not a possible endpoint.*10\.244\.2\.8:8080, 10\.244\.2\.9:8080"):
        run_trace(seed[0], seed[1], Question("pod-a", "my-service:8080", endpoint="10.244.2.7"))


def _with_mtu(snap: Snapshot, mtus: dict[tuple[str, str], int]) -> Snapshot:
    nss = dict(snap.namespaces)
    for (ns, dev), mtu in mtus.items():
        st = nss[ns]
        links = tuple(dataclasses.replace(lk, mtu=mtu) if lk.name == dev else lk for lk in st.links)
        nss[ns] = dataclasses.replace(st, links=links)
    return Snapshot(nss)


def test_pod_with_mtu_1500_over_vxlan_is_too_big_at_flannel(seed: tuple[Snapshot, Places]) -> None:
    snap, places = seed
    pod_a = "pn-fix-default-pod-a"
    peer = snap.veth_peer(pod_a, "eth0")
    assert peer is not None
    # a misconfigured pod: eth0 (and its host veth and the bridge) at 1500, flannel.1 at 1450
    bad = _with_mtu(snap, {(pod_a, "eth0"): 1500, (peer[0], peer[1].name): 1500, (peer[0], "cni0"): 1500})
    res = run_trace(bad, places, Question("pod-a", "pod-b:8080", "udp", size=1480))
    assert res.disposition is Disposition.TOO_BIG
    end = res.outcome.forward.hops[-1]
    assert end.node == "node1" and "too big at flannel.1: 1480 B > mtu 1450" in end.steps[-1].text
    # 1450 fits: it is delivered, with an outer packet of exactly 1500
    ok = run_trace(bad, places, Question("pod-a", "pod-b:8080", "udp", size=1450))
    enc = next(s.encap for _, s in steps(ok, StepKind.ENCAP))
    assert enc is not None and enc.outer_size == 1500
    # the correctly configured pod (MTU 1450) cannot even send 1480 with DF
    res2 = run_trace(snap, places, Question("pod-a", "pod-b:8080", "udp", size=1480))
    assert res2.disposition is Disposition.TOO_BIG and "EMSGSIZE" in res2.outcome.forward.summary


@pytest.mark.parametrize("which", ["iptables", "nftables"])
def test_service_without_endpoints_is_rejected_by_the_named_rule(which: str, seed: tuple[Snapshot, Places],
                                                                  seed_nft: tuple[Snapshot, Places]) -> None:
    snap, places = seed if which == "iptables" else seed_nft
    res = run_trace(snap, places, Question("pod-a", "svc/default/no-endpoints:80"))
    assert res.disposition is Disposition.REJECTED and not res.ok
    assert "default/no-endpoints:http" in res.outcome.forward.summary
    nf = steps(res, StepKind.NETFILTER)[-1][1]
    assert nf.verdict == "REJECT"
    if which == "iptables":
        ref = nf.rules[-1]
        assert (ref.table, ref.chain, ref.target) == ("filter", "KUBE-SERVICES", "REJECT")
        assert ref.comment == "default/no-endpoints:http has no endpoints"


def test_nftables_mode_pod_to_service(seed_nft: tuple[Snapshot, Places]) -> None:
    res = run_trace(seed_nft[0], seed_nft[1], Question("pod-a", "my-service:8080"))
    assert res.ok and sorted(o.endpoint for o in res.outcomes) == ["10.244.2.8:8080", "10.244.2.9:8080"]
    assert all(abs(o.probability - 0.5) < 1e-9 for o in res.outcomes)
    nf = next(s for _, s in steps(res, StepKind.NETFILTER) if "PREROUTING" in s.text)
    assert nf.rules[0].backend == "nftables" and any("numgen" in (r.note or "") for r in nf.rules)
    assert res.outcome.reply is not None and "from 10.96.45.67:8080" in res.outcome.reply.summary


@pytest.mark.parametrize("fixture", ["seed", "seed_nft"])
def test_external_client_to_node_port(fixture: str, request: pytest.FixtureRequest) -> None:
    snap, places = request.getfixturevalue(fixture)
    res = run_trace(snap, places, Question("host/ext1", "node/node1:30080"))
    assert res.ok and len(res.outcomes) == 2
    nats = [s.nat for _, s in steps(res, StepKind.NAT) if s.nat]
    assert [n.kind for n in nats] == ["dnat", "masquerade"]
    assert nats[1].before == "192.168.1.50:40000"
    reply = res.outcome.reply
    assert reply is not None and reply.disposition is Disposition.DELIVERED
    assert "from 192.168.1.10:30080" in reply.summary


def test_raw_source_ip_entering_at_a_node(seed: tuple[Snapshot, Places]) -> None:
    res = run_trace(seed[0], seed[1], Question("203.0.113.7", "node/node2:30080", at="node2"))
    assert res.flow.entry_dev == "eth0" and res.ok
    first = res.outcome.forward.hops[0]
    assert first.node == "node2" and first.steps[0].kind is StepKind.ORIGINATE
    # the reply goes back toward 203.0.113.7 via the default gateway, the lab's underlay switch,
    # which has no route further out
    reply = res.outcome.reply
    assert reply is not None and reply.disposition is Disposition.NO_ROUTE and reply.at == "underlay"


def test_no_listener(seed: tuple[Snapshot, Places]) -> None:
    res = run_trace(seed[0], seed[1], Question("pod-a", "pod-c:9999"))
    assert res.disposition is Disposition.NO_LISTENER and "TCP reset" in res.outcome.forward.summary


def test_hairpin_to_itself_through_the_service(seed: tuple[Snapshot, Places]) -> None:
    res = run_trace(seed[0], seed[1], Question("pod-b", "my-service:8080", endpoint="10.244.2.8"))
    assert res.ok
    texts = [s.text for _, s in steps(res)]
    assert any("bridged DNAT" in t for t in texts) and any("hairpin mode on" in t for t in texts)
    nats = [s.nat.kind for _, s in steps(res, StepKind.NAT) if s.nat]
    assert nats == ["dnat", "masquerade"]


def test_host_gw_backend() -> None:
    d = FIX / "seed-hostgw"
    snap = load_snapshot(d)
    res = run_trace(snap, load_places(d, snap), Question("pod-a", "my-service:8080"))
    assert res.ok and not steps(res, StepKind.ENCAP)
    assert any("10.244.2.0/24 via 192.168.1.11 dev eth0" in s.text for _, s in steps(res, StepKind.ROUTE))


def test_icmp_echo_and_node_source(seed: tuple[Snapshot, Places]) -> None:
    res = run_trace(seed[0], seed[1], Question("node/node1", "pod-c", "icmp"))
    assert res.ok and res.flow.src_ip == "10.244.1.0"        # flannel.1's address, as Linux picks it
    assert res.outcome.reply is not None and res.outcome.reply.disposition is Disposition.DELIVERED


def test_drop_reason_is_typed(seed: tuple[Snapshot, Places]) -> None:
    snap, places = seed
    node2 = "pn-fix-node2"
    st = dataclasses.replace(snap[node2], sysctls={**snap[node2].sysctls, "net.ipv4.ip_forward": "0"})
    res = run_trace(Snapshot({**snap.namespaces, node2: st}), places, Question("pod-a", "pod-b:8080"))
    assert res.disposition is Disposition.DROPPED
    assert res.outcome.forward.reason is DropReason.FORWARDING_DISABLED
