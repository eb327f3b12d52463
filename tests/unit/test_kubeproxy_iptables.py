"""iptables mode against upstream's own expectations (reference/kube-proxy.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from podnet.compile.kubeproxy_iptables import (
    IptablesRules,
    ProxyNode,
    build_rules,
    endpoint_chain,
    ensured_chains,
    jump_rules,
    partial_payload,
    port_proto_hash,
    probability,
    render_iptables,
    table_replacement,
)
from podnet.model.services import EndpointInfo as E
from podnet.model.services import ServicePortInfo as S

GOLDEN = Path(__file__).parent.parent / "golden" / "proxy"

# upstream's fake proxier: mark 0x4000, no --random-fully, ClusterCIDR detector 10.0.0.0/8
UPSTREAM_NODE = ProxyNode("test-node", ("192.168.0.2",), cluster_cidr="10.0.0.0/8", masquerade_mark="0x4000",
                          random_fully=False)


def overall_ports() -> list[S]:
    """TestOverallIPTablesRules' services and endpoints (reference §3), exactly."""
    return [
        S("ns1", "svc1", "p80", "TCP", "172.30.0.41", 80, endpoints=(E("10.180.0.1", 80),)),
        S("ns2", "svc2", "p80", "TCP", "172.30.0.42", 80, node_port=3001, external_ips=("192.168.99.22",),
          lb_vips=("1.2.3.4",), external_policy_local=True, health_check_node_port=30000,
          endpoints=(E("10.180.0.2", 80),)),
        S("ns3", "svc3", "p80", "TCP", "172.30.0.43", 80, node_port=3003, endpoints=(E("10.180.0.3", 80),)),
        S("ns4", "svc4", "p80", "TCP", "172.30.0.44", 80, external_ips=("192.168.99.33",),
          endpoints=(E("10.180.0.4", 80), E("10.180.0.5", 80, node_name="test-node"))),
        S("ns5", "svc5", "p80", "TCP", "172.30.0.45", 80, node_port=3002, lb_vips=("5.6.7.8",),
          lb_source_ranges=("203.0.113.0/25",), affinity_timeout=10800, endpoints=(E("10.180.0.3", 80),)),
        S("ns6", "svc6", "p80", "TCP", "172.30.0.46", 80),
    ]


def sort_like_upstream(payload: str) -> str:
    """``sortIPTablesRules``: KUBE-NODEPORTS, KUBE-SERVICES, then other chains alphabetically; rules
    grouped by chain (our per-chain order is already the service-name order upstream sorts to)."""
    out, table, chains, rules = [], "", [], {}

    def rank(c: str) -> tuple[int, str]:
        return ({"KUBE-NODEPORTS": 0, "KUBE-SERVICES": 1}.get(c, 2 if c.startswith("KUBE-") else 3), c)

    for line in payload.splitlines():
        if line.startswith("*"):
            table, chains, rules = line, [], {}
        elif line.startswith(":"):
            chains.append(line.split()[0][1:])
        elif line.startswith("-A "):
            rules.setdefault(line.split()[1], []).append(line)
        elif line == "COMMIT":
            order = sorted(chains, key=rank)
            out += [table, *(f":{c} - [0:0]" for c in order), *(r for c in order for r in rules.get(c, [])), "COMMIT"]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(("spn", "proto", "want"), [
    ("ns1/svc1:p80", "tcp", "XPGD46QRK7WJZT7O"), ("ns2/svc2:p80", "tcp", "GNZBNJ2PO5MGZ6GT"),
    ("ns3/svc3:p80", "tcp", "X27LE4BHSL4DOUIK"), ("ns4/svc4:p80", "tcp", "4SW47YFZTEDKD3PK"),
    ("ns5/svc5:p80", "tcp", "NUKIZ6OKUXPJNT4C"), ("ns2/svc2:p8080", "tcp", "2VJB64SDSIJUP5T6"),
    ("ns4/svc4:p8082", "tcp", "EBDQOQU5SJFXRIL3"), ("ns1/svc1", "tcp", "AQI2S6QIMU7PVVRP"),
])
def test_service_chain_hash(spn: str, proto: str, want: str) -> None:
    assert port_proto_hash(spn, proto) == want


@pytest.mark.parametrize(("ns", "port_name", "ep", "want"), [
    ("1", "p80", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
    ("2", "p80", "10.180.0.2:80", "KUBE-SEP-RS4RBKLTHTF2IUXJ"),
    ("5", "p80", "10.180.0.3:80", "KUBE-SEP-I77PXRDZVX7PMWMN"),
    ("1", "p80", "10.0.0.0:80", "KUBE-SEP-DKGQUZGBKLTPAR56"),
    ("1", "", "10.0.1.1:80", "KUBE-SEP-3JOIVZTXZZRGORX4"),
])
def test_endpoint_chain_hash(ns: str, port_name: str, ep: str, want: str) -> None:
    ip, port = ep.split(":")
    sp = S(f"ns{ns}", f"svc{ns}", port_name, "TCP", "172.30.0.1", 80)
    assert endpoint_chain(sp, E(ip, int(port))) == want


@pytest.mark.parametrize(("n", "want"), [(1, "1.0000000000"), (2, "0.5000000000"), (3, "0.3333333333"),
                                         (10, "0.1000000000"), (100001, "0.0000099999")])
def test_probability(n: int, want: str) -> None:
    assert probability(n) == want


def test_overall_iptables_rules_match_upstream_dump() -> None:
    want = (GOLDEN / "overall" / "upstream-TestOverallIPTablesRules.txt").read_text()
    # the kernel lacks xt_nfacct: the INVALID rule loses its counter, the localhost-counting rules go
    want = want.replace(" -m nfacct --nfacct-name ct_state_invalid_dropped_pkts", "")
    want = "\n".join(x for x in want.splitlines() if "nfacct" not in x) + "\n"
    got = sort_like_upstream(render_iptables(overall_ports(), UPSTREAM_NODE))
    assert got == sort_like_upstream(want)


def test_raw_emission_order_matches_reference() -> None:
    ports = [S("ns1", "svc1", "p80", "TCP", "172.30.0.41", 80, endpoints=(E("10.0.1.1", 80),)),
             S("ns2", "svc2", "p8080", "TCP", "172.30.0.42", 8080, endpoints=(E("10.0.2.1", 8080),))]
    want = (GOLDEN / "upstream-raw-emission.txt").read_text().replace(
        " -m nfacct --nfacct-name ct_state_invalid_dropped_pkts", "")
    assert render_iptables(ports, UPSTREAM_NODE) == want


def test_no_nfacct_and_real_defaults() -> None:
    text = render_iptables(overall_ports(), ProxyNode("test-node", ("192.168.0.2",), cluster_cidr="10.0.0.0/8"))
    assert "nfacct" not in text
    assert "-j MASQUERADE --random-fully" in text
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000" in text


def test_masquerade_all_and_no_detector() -> None:
    sp = [S("ns1", "svc1", "p80", "TCP", "172.30.0.41", 80, endpoints=(E("10.180.0.1", 80),))]
    masq_all = render_iptables(sp, ProxyNode("n", masquerade_all=True))
    assert ('-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp '
            "-d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ") in masq_all
    no_detector = render_iptables(sp, ProxyNode("n"))
    assert "cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ" not in no_detector
    assert "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 cluster IP\"" not in no_detector


def test_localhost_nodeports_off_and_nodeport_addresses() -> None:
    off = render_iptables([], ProxyNode("n", ("192.168.0.2",), localhost_nodeports=False))
    assert "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS" in off
    assert "KUBE-FIREWALL" not in off
    some = render_iptables([], ProxyNode("n", ("192.168.0.2", "10.1.0.2"), nodeport_addresses=("192.168.0.0/24",)))
    assert '-d 192.168.0.2 -j KUBE-NODEPORTS' in some and "10.1.0.2 -j KUBE-NODEPORTS" not in some
    assert "addrtype --dst-type LOCAL -j KUBE-NODEPORTS" not in some


def test_terminating_fallback_and_local_lists() -> None:
    eps = (E("10.1.0.1", 80, ready=False, serving=True, terminating=True, node_name="n"),
           E("10.2.0.1", 80, node_name="other"))
    sp = S("ns", "s", "", "TCP", "10.96.0.9", 80, node_port=30001, external_policy_local=True, endpoints=eps)
    rules = build_rules([sp], ProxyNode("n", ("192.168.0.2",))).table("nat")
    svc = [r for c, rs in rules.items() if c.startswith("KUBE-SVC-") for r in rs]
    svl = [r for c, rs in rules.items() if c.startswith("KUBE-SVL-") for r in rs]
    assert len(svc) == 1 and "10.2.0.1:80" in svc[0]          # ready elsewhere wins cluster-wide
    assert len(svl) == 1 and "10.1.0.1:80" in svl[0]          # local list falls back to terminating


def test_large_cluster_mode_drops_sep_comments() -> None:
    eps = tuple(E(f"10.0.{i // 250}.{i % 250 + 1}", 80) for i in range(1001))
    text = render_iptables([S("ns1", "svc1", "p80", "TCP", "172.30.0.41", 80, endpoints=eps)], ProxyNode("n"))
    assert "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80" not in text
    assert any(line.startswith("-A KUBE-SEP-") and "-m tcp -p tcp -j DNAT" in line and "comment" not in line
               for line in text.splitlines())


def test_jump_rules_order_and_data() -> None:
    jumps = jump_rules()
    assert jumps[0].insert_argv() == ["-t", "filter", "-I", "INPUT", "-m", "conntrack", "--ctstate", "NEW", "-m",
                                      "comment", "--comment", "kubernetes externally-visible service portals",
                                      "-j", "KUBE-EXTERNAL-SERVICES"]
    assert jumps[-1].check_argv() == ["-t", "filter", "-C", "OUTPUT", "-j", "KUBE-FIREWALL"]
    assert ("nat", "KUBE-PROXY-CANARY") in ensured_chains()


def _apply_partial(old: IptablesRules, new: IptablesRules) -> dict[str, dict[str, list[str]]]:
    """Replay a partial payload over ``old`` with iptables-restore --noflush semantics."""
    state = {t: {c: list(r) for c, r in old.table(t).items()} for t in ("filter", "nat")}
    table = ""
    for line in partial_payload(old, new).splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            state[table][line.split()[0][1:]] = []
        elif line.startswith("-A "):
            parts = line.split(" ", 2)
            state[table][parts[1]].append(parts[2] if len(parts) > 2 else "")
        elif line.startswith("-D "):
            _, chain, spec = line.split(" ", 2)
            state[table][chain].remove(spec)
        elif line.startswith("-I "):
            _, chain, idx, spec = line.split(" ", 3)
            state[table][chain].insert(int(idx) - 1, spec)
        elif line.startswith("-X "):
            del state[table][line.split()[1]]
    return state


def test_partial_sync_is_small_and_exact() -> None:
    node = ProxyNode("test-node", ("192.168.0.2",), cluster_cidr="10.0.0.0/8")
    many = [S("ns", f"svc{i:03d}", "p", "TCP", f"10.96.1.{i}", 80, endpoints=(E(f"10.1.1.{i}", 80),))
            for i in range(1, 200)]
    old = build_rules(many, node)
    changed = list(many)
    changed[50] = S("ns", "svc051", "p", "TCP", "10.96.1.51", 80, endpoints=(E("10.1.1.51", 80), E("10.1.9.9", 80)))
    del changed[10]
    changed.append(S("ns", "zzz", "p", "UDP", "10.96.2.1", 53, endpoints=(E("10.1.2.1", 53),)))
    new = build_rules(changed, node)
    delta = partial_payload(old, new)
    assert len(delta.splitlines()) < 40
    assert "*filter" not in delta
    assert _apply_partial(old, new) == {t: new.table(t) for t in ("filter", "nat")}
    assert partial_payload(new, new) == ""
    assert partial_payload(None, new) == new.payload()
    # the incremental path (fragments of unchanged ports reused) gives the same result
    reused = build_rules(changed, node, previous=old)
    assert partial_payload(old, reused) == delta
    assert all(reused.by_port[k][1] is old.by_port[k][1] for k in reused.by_port if k[0] not in (
        "ns/svc051:p", "ns/zzz:p"))


def test_partial_sync_random_changes_replay_exactly() -> None:
    import random
    rnd = random.Random(7)
    node = ProxyNode("n1", ("192.168.0.2",), cluster_cidr="10.0.0.0/8")

    def svc(i: int, n_eps: int, np: int = 0, ext: bool = False) -> S:
        eps = tuple(E(f"10.2.{i}.{j}", 8080, node_name=rnd.choice(("n1", "n2"))) for j in range(1, n_eps + 1))
        return S("ns", f"s{i:02d}", "", rnd.choice(("TCP", "UDP")), f"10.96.3.{i}", 80, node_port=np,
                 external_ips=("192.168.0.9",) if ext else (), external_policy_local=ext, endpoints=eps)
    ports = [svc(i, rnd.randint(0, 3), 30000 + i if i % 3 == 0 else 0, i % 4 == 0) for i in range(1, 40)]
    old = build_rules(ports, node)
    for _ in range(30):
        nxt = list(ports)
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(len(nxt))
            choice = rnd.random()
            if choice < 0.3:
                del nxt[i]
            else:
                n = int(nxt[i].name[1:])
                nxt[i] = svc(n, rnd.randint(0, 3), rnd.choice((0, 31000 + n)), rnd.random() < 0.3)
        new = build_rules(nxt, node, previous=old)
        assert _apply_partial(old, new) == {t: new.table(t) for t in ("filter", "nat")}
        old, ports = new, nxt


def test_stale_chains_in_full_payload() -> None:
    text = build_rules([], ProxyNode("n")).payload(stale_nat_chains=["KUBE-SVC-AAAA", "KUBE-SERVICES", "OTHER"])
    assert ":KUBE-SVC-AAAA - [0:0]" in text and "-X KUBE-SVC-AAAA" in text and "-X OTHER" not in text


def test_table_replacement_keeps_foreign_state_and_drops_stale_chains() -> None:
    node = ProxyNode("n", ("192.168.0.2",), cluster_cidr="10.0.0.0/8")
    rules = build_rules([S("ns", "a", "p", "TCP", "10.96.0.5", 80, endpoints=(E("10.1.0.5", 80),))], node)
    saved = "\n".join([
        "# Generated by iptables-save", "*filter", ":INPUT DROP [5:300]", ":FORWARD ACCEPT [0:0]",
        ":KUBE-SERVICES - [0:0]", ":KUBE-NP-INGRESS - [0:0]",
        "[3:180] -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" "
        "-j KUBE-SERVICES",
        "[0:0] -A KUBE-SERVICES -d 10.96.9.9/32 -p tcp -j REJECT",
        "[1:60] -A KUBE-NP-INGRESS -s 10.1.0.9/32 -j DROP", "COMMIT",
        "*nat", ":PREROUTING ACCEPT [0:0]", ":KUBE-SVC-OLDOLDOLDOLDOLD - [0:0]", ":KUBE-SERVICES - [0:0]",
        "[7:420] -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "[0:0] -A KUBE-SVC-OLDOLDOLDOLDOLD -j KUBE-MARK-MASQ", "COMMIT", ""])
    text = table_replacement(saved, rules)
    assert ":INPUT DROP [5:300]" in text and "[1:60] -A KUBE-NP-INGRESS -s 10.1.0.9/32 -j DROP" in text
    assert "[7:420] -A PREROUTING" in text and "KUBE-SVC-OLDOLDOLDOLDOLD" not in text
    assert "10.96.9.9" not in text and "10.96.0.5" in text
    assert text.count("*filter") == 1 and text.count("COMMIT") == 2
