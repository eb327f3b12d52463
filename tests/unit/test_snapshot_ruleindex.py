"""The destination index returns, in order, every rule a linear scan would consider."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

from podnet.sim.parse_iptables import parse_iptables_save
from podnet.sim.ruleindex import IptablesIndex, RuleIndex, rule_may_match

FIX = Path(__file__).parent.parent / "fixtures" / "snapshot"


def _random_rule(rng: random.Random, pool: list[str]) -> str:
    parts = ["-A C"]
    if rng.random() < 0.7:
        base = rng.choice(pool)
        plen = rng.choice([32, 32, 32, 24, 16, 8, 0])
        net = ipaddress.ip_network(f"{base}/{plen}", strict=False)
        parts.append(("! " if rng.random() < 0.1 else "") + f"-d {net}")
    proto = rng.choice([None, "tcp", "udp", "tcp", "sctp"])
    if proto:
        parts.append(("! " if rng.random() < 0.05 else "") + f"-p {proto}")
        r = rng.random()
        if r < 0.4:
            parts.append(f"-m {proto} " + ("! " if rng.random() < 0.1 else "") + f"--dport {rng.randint(1, 40)}")
        elif r < 0.5:
            lo = rng.randint(1, 40)
            parts.append(f"-m {proto} --dport {lo}:{lo + rng.choice([0, 3, 100])}")
        elif r < 0.6:
            ports = ",".join(str(rng.randint(1, 40)) for _ in range(rng.randint(1, 4)))
            parts.append("-m multiport " + ("! " if rng.random() < 0.1 else "") + f"--dports {ports}")
    parts.append(f'-m comment --comment "r{rng.random():.3f}" -j ACCEPT')
    return " ".join(parts)


def test_index_matches_linear_scan_on_random_tables() -> None:
    rng = random.Random(20240605)
    for _ in range(40):
        pool = [f"10.96.{rng.randint(0, 3)}.{rng.randint(0, 20)}" for _ in range(15)]
        n = rng.randint(0, 300)
        text = "*nat\n:C - [0:0]\n" + "\n".join(_random_rule(rng, pool) for _ in range(n)) + "\nCOMMIT\n"
        rules = parse_iptables_save(text).chain("nat", "C").rules  # type: ignore[union-attr]
        index = RuleIndex(rules)
        for _ in range(60):
            dst = ipaddress.ip_address(rng.choice([*pool, "10.96.9.9", "192.168.0.1"]))
            proto = rng.choice(["tcp", "udp", "icmp", "sctp"])
            dport = None if proto == "icmp" else rng.randint(1, 45)
            cand = index.candidates(dst, proto, dport)
            assert cand == sorted(set(cand)), "candidates must be unique and in rule order"
            linear = [i for i, r in enumerate(rules) if rule_may_match(r, dst, proto, dport)]
            assert [i for i in cand if rule_may_match(rules[i], dst, proto, dport)] == linear


def test_index_is_selective_on_kube_services() -> None:
    lines = ["*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]"]
    for s in range(5000):
        lines.append(f"-A KUBE-SERVICES -d 10.96.{s // 256}.{s % 256}/32 -p tcp -m tcp --dport 80 -j ACCEPT")
        lines.append(f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {30000 + s % 2000} -j ACCEPT")
    lines += ["-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS", "COMMIT"]
    idx = IptablesIndex(parse_iptables_save("\n".join(lines) + "\n"))
    assert idx.chain("nat", "KUBE-SERVICES").candidates("10.96.3.7", "tcp", 80) == [775, 5000]
    hits = idx.candidates("nat", "KUBE-NODEPORTS", "192.168.1.10", "tcp", 30005)
    assert len(hits) == 3 and all(r.dport.contains(30005) for r in hits)  # type: ignore[union-attr]
    assert idx.candidates("nat", "NOPE", "10.0.0.1") == []


def test_fixture_chains() -> None:
    ipt = parse_iptables_save((FIX / "node1" / "iptables-save.txt").read_text())
    idx = IptablesIndex(ipt)
    dst = ipaddress.ip_address("10.96.45.67")
    for (table, chain), ch in ((k, ipt.chain(*k)) for k in
                               [(t, c) for t in ipt.tables for c in ipt.tables[t].chains]):
        assert ch is not None
        for proto, port in (("tcp", 8080), ("udp", 53), ("icmp", None)):
            cand = idx.chain(table, chain).candidates(dst, proto, port)
            linear = [i for i, r in enumerate(ch.rules) if rule_may_match(r, dst, proto, port)]
            assert [i for i in cand if rule_may_match(ch.rules[i], dst, proto, port)] == linear
    svc = idx.candidates("nat", "KUBE-SERVICES", dst, "tcp", 8080)
    assert [r.num for r in svc] == [1, 2]
