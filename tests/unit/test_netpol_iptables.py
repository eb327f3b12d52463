"""The compiled iptables rules: their shape, and that walking them gives exactly the evaluator's verdicts."""

from __future__ import annotations

import ipaddress
import random
import re
import shlex
from dataclasses import dataclass

import pytest
from netpol_cases import ALL, base, np, policy_set, valid_random_policy

from podnet.compile import netpol_iptables as npt
from podnet.model.netpol import EGRESS, INGRESS
from podnet.model.netpol_eval import PolicySet

NODES = ("node1", "node2")


def test_no_policy_gives_only_the_reply_rules():
    r = npt.build_rules(policy_set(), "node1")
    assert r.chains == [npt.FORWARD_CHAIN, npt.INPUT_CHAIN]
    assert all("RELATED,ESTABLISHED -j RETURN" in line for line in r.rules)
    payload = r.payload(present_chains=["KUBE-NP-E-OLD", "KUBE-SERVICES"])
    assert ":KUBE-NP-E-OLD - [0:0]" in payload and payload.rstrip().endswith("-X KUBE-NP-E-OLD\nCOMMIT")
    assert "KUBE-SERVICES" not in payload          # never touches chains that are not ours


def test_deny_ingress_chain_shape_and_comments():
    ps = policy_set(np("deny", "  podSelector: {}\n  policyTypes: [Ingress]"),
                    np("allow-y", "  podSelector: {matchLabels: {pod: b}}\n"
                                  "  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], "
                                  "ports: [{port: serve-81-tcp}, {port: 80, endPort: 90}, {protocol: UDP}]}]"))
    r = npt.build_rules(ps, "node2")          # x/b lives on node2
    xb = ps.pod("x/b")
    chain = npt.pod_chain(INGRESS, "x/b")
    assert len(chain) <= 28 and chain.startswith("KUBE-NP-I-")
    assert (f'-A KUBE-NP-FORWARD -d {xb.ip}/32 -m comment --comment "ingress of pod x/b (isolated by x/allow-y, '
            f'x/deny)" -j {chain}') in r.rules
    body = r.table()[chain]
    ya = ps.pod("y/a").ip
    assert (f'-s {ya}/32 -p tcp -m tcp --dport 81 -m comment --comment "x/allow-y ingress[0]: from pod y/a '
            f'port serve-81-tcp=81/TCP" -j RETURN') in body
    assert f'-s {ya}/32 -p tcp -m tcp --dport 80:90 -m comment --comment "x/allow-y ingress[0]: from pod y/a ' \
           f'ports 80-90/TCP" -j RETURN' in body
    assert f'-s {ya}/32 -p udp -m comment --comment "x/allow-y ingress[0]: from pod y/a all UDP ports" -j RETURN' \
        in body
    assert body[-1] == ('-m comment --comment "dropped by the default deny ingress of pod x/b (policies selecting '
                        'it: x/allow-y, x/deny)" -j REJECT --reject-with icmp-admin-prohibited')
    assert r.isolated == {EGRESS: [], INGRESS: ["x/b"]}
    assert npt.pod_chain(INGRESS, "x/a") not in r.chains      # x/a is on node1


def test_egress_jumps_also_from_input_and_ip_block_excepts_expand():
    spec = """  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.244.2.0/24]}}]
      ports: [{port: 53, protocol: UDP}]"""
    ps = policy_set(np("dns", spec))
    r = npt.build_rules(ps, "node1")
    chain = npt.pod_chain(EGRESS, "x/a")
    jumps = [line for line in r.rules if line.endswith(f"-j {chain}")]
    assert [j.split()[1] for j in jumps] == ["KUBE-NP-FORWARD", "KUBE-NP-INPUT"]
    dsts = [ipaddress.IPv4Network(line.split()[1]) for line in r.table()[chain][:-1]]
    assert ipaddress.IPv4Network("10.244.2.0/24") not in dsts
    assert sum(n.num_addresses for n in dsts) == 2 ** 24 - 256
    assert all("10.0.0.0/8 except 10.244.2.0/24" in line for line in r.table()[chain][:-1])


def test_comments_fit_the_kernel_limit():
    many = "".join(np(f"policy-number-{i:03d}-with-a-long-name", "  podSelector: {}\n  policyTypes: [Ingress]")
                   for i in range(12))
    r = npt.build_rules(policy_set(many), "node1")
    for line in r.rules:
        for text in re.findall(r'--comment "([^"]*)"', line):
            assert len(text) <= npt.MAX_COMMENT
    assert any(line.endswith('..." -j REJECT --reject-with icmp-admin-prohibited') for line in r.rules)


def test_jumps_are_as_iptables_prints_them():
    assert [j.spec for j in npt.jump_rules()] == [
        '-A FORWARD -m comment --comment "kubernetes network policies" -j KUBE-NP-FORWARD',
        '-A INPUT -m comment --comment "kubernetes network policies" -j KUBE-NP-INPUT']


# --------------------------------------------------------------------------- walking the rules

@dataclass(frozen=True)
class _Rule:
    src: ipaddress.IPv4Network | None
    dst: ipaddress.IPv4Network | None
    proto: str | None
    ports: tuple[int, int] | None
    target: str


def _parse(rules: npt.NetpolRules) -> dict[str, list[_Rule]]:
    out: dict[str, list[_Rule]] = {c: [] for c in rules.chains}
    for line in rules.rules:
        w = shlex.split(line)
        chain = w[1]
        opts = {w[i]: w[i + 1] for i in range(2, len(w) - 1) if w[i].startswith("-")}
        if "--ctstate" in opts:
            continue       # replies: new connections never match
        ports = None
        if "--dport" in opts:
            lo, _, hi = opts["--dport"].partition(":")
            ports = (int(lo), int(hi or lo))
        net = ipaddress.IPv4Network
        out[chain].append(_Rule(net(opts["-s"]) if "-s" in opts else None, net(opts["-d"]) if "-d" in opts else None,
                                opts.get("-p"), ports, opts["-j"]))
    return out


def _walk(table: dict[str, list[_Rule]], chain: str, src, dst, port: int, proto: str) -> bool:
    """True when the chain lets the packet through (falls off or RETURNs), False when it REJECTs."""
    for r in table[chain]:
        if (r.src is not None and src not in r.src) or (r.dst is not None and dst not in r.dst):
            continue
        if r.proto is not None and r.proto != proto.lower():
            continue
        if r.ports is not None and not r.ports[0] <= port <= r.ports[1]:
            continue
        if r.target == "RETURN":
            return True
        if r.target.startswith("REJECT"):
            return False
        if not _walk(table, r.target, src, dst, port, proto):
            return False
    return True


def kernel_verdict(tables: dict[str, dict[str, list[_Rule]]], ps: PolicySet, a: str, b: str, port: int,
                   proto: str) -> bool:
    src, dst = ps.pod(a), ps.pod(b)
    nodes = [src.node] if src.node == dst.node else [src.node, dst.node]
    return all(_walk(tables[n], npt.FORWARD_CHAIN, src.ip, dst.ip, port, proto) for n in nodes)


def assert_kernel_equals_eval(ps: PolicySet, flows=((80, "TCP"), (81, "TCP"), (80, "UDP"), (82, "TCP"))) -> None:
    tables = {n: _parse(npt.build_rules(ps, n)) for n in NODES}
    for port, proto in flows:
        m = ps.matrix(port, proto)
        for a in ALL:
            for b in ALL:
                if a == b:
                    continue
                assert kernel_verdict(tables, ps, a, b, port, proto) == m.allowed(a, b), \
                    f"{a} -> {b} {port}/{proto}: {m.cells[(a, b)].reason}"


@pytest.mark.parametrize("seed", range(40))
def test_random_policy_sets_compile_to_the_evaluator_verdicts(seed):
    rng = random.Random(seed)
    ips = [str(p.ip) for p in policy_set().pods]
    policies = [valid_random_policy(rng, i, ips) for i in range(rng.randrange(1, 5))]
    assert_kernel_equals_eval(policy_set(*policies))


def test_upstream_cases_compile_to_the_evaluator_verdicts():
    yb = policy_set().pod("y/b").ip
    cases = [
        np("deny", "  podSelector: {}\n  policyTypes: [Ingress, Egress]"),
        np("named", "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: serve-81-tcp}]}]"),
        np("cidr", f"  podSelector: {{}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: "
                   f"{{cidr: 10.244.0.0/16, except: ['{yb}/32']}}}}]}}]", ns="z"),
    ]
    for c in cases:
        assert_kernel_equals_eval(policy_set(c))
    assert_kernel_equals_eval(policy_set(*cases))
    assert base()     # the shared 9-pod model


def _saved(rules: npt.NetpolRules, forward_first: bool = True) -> str:
    """What iptables-save -t filter prints after the agent's write (with kube-proxy's rules around)."""
    jump_f, jump_i = (j.spec for j in npt.jump_rules())
    kube = "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"
    forward = [jump_f, kube] if forward_first else [kube, jump_f]
    return "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":KUBE-FORWARD - [0:0]",
                      *(f":{c} - [0:0]" for c in rules.chains), jump_i, *forward, *rules.rules, "COMMIT"]) + "\n"


def test_read_back_drift_names_what_changed():
    from podnet.dataplane.netpol import KernelView

    rules = npt.build_rules(policy_set(np("deny", "  podSelector: {}\n  policyTypes: [Ingress, Egress]")), "node1")
    jumps = npt.jump_rules()
    assert KernelView.parse(_saved(rules)).drift(rules, jumps) == ""
    assert "no longer first in FORWARD" in KernelView.parse(_saved(rules, forward_first=False)).drift(rules, jumps)
    edited = _saved(rules).replace(rules.rules[-1] + "\n", "")
    assert KernelView.parse(edited).drift(rules, jumps) == "rules changed outside the agent"
    assert KernelView.parse(edited).drift(rules, jumps, compare_rules=False) == ""
    gone = rules.chains[-1]
    flushed = "\n".join(line for line in _saved(rules).splitlines() if gone not in line)
    assert f"missing: {gone}" in KernelView.parse(flushed).drift(rules, jumps)
    stale = _saved(rules).replace(":KUBE-FORWARD - [0:0]", ":KUBE-FORWARD - [0:0]\n:KUBE-NP-E-STALE - [0:0]")
    assert "extra: KUBE-NP-E-STALE" in KernelView.parse(stale).drift(rules, jumps)
