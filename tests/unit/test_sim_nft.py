"""nftables evaluation: verdict maps, sets, numgen, ct state, marks, fib, NAT."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from podnet.sim.choices import Chooser, explore
from podnet.sim.conntrack_sim import CtInfo
from podnet.sim.netfilter import HookCtx
from podnet.sim.nft_eval import NftEval, rule_text
from podnet.sim.packet import make_packet
from podnet.sim.parse_nft import parse_nft
from podnet.sim.routing import Fib
from podnet.sim.snapshot import Address, Route

IP = ipaddress.ip_address


def _fib() -> Fib:
    return Fib([Route("local", ipaddress.ip_network("192.168.1.10/32"), dev="eth0", type="local")], [],
               [Address("eth0", 2, "inet", IP("192.168.1.10"), 24)])


def _ctx(hook: str = "PREROUTING", ch: Chooser | None = None, state: str = "NEW") -> HookCtx:
    return HookCtx(hook=hook, in_dev="cni0", out_dev=None, fib=_fib(), chooser=ch or Chooser(), ct=CtInfo(state=state),
                   masquerade_src=lambda dev, dst: IP("192.168.1.10"))


def M(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DPORT = {"payload": {"protocol": "th", "field": "dport"}}
L4 = {"meta": {"key": "l4proto"}}


def ruleset() -> NftEval:
    items: list[dict[str, Any]] = [
        {"table": {"family": "ip", "name": "kp", "handle": 1}},
        {"map": {"family": "ip", "table": "kp", "name": "service-ips",
                 "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "verdict",
                 "elem": [[{"concat": ["10.96.0.1", "tcp", 80]}, {"goto": {"target": "svc"}}],
                          [{"elem": {"val": {"concat": ["10.96.0.2", "tcp", 80]}, "comment": "default/empty:http"}},
                           {"goto": {"target": "rej"}}]]}},
        {"set": {"family": "ip", "table": "kp", "name": "nets", "type": "ipv4_addr", "flags": ["interval"],
                 "elem": [{"prefix": {"addr": "10.244.0.0", "len": 16}}]}},
    ]
    chains = {"pre": {"type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}, "services": {},
              "svc": {}, "ep0": {}, "ep1": {}, "ep2": {}, "rej": {}, "mark": {},
              "fwd": {"type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}
    for name, extra in chains.items():
        items.append({"chain": {"family": "ip", "table": "kp", "name": name, **extra}})
    rules = {
        "pre": [[{"jump": {"target": "services"}}]],
        "services": [[{"vmap": {"key": {"concat": [DADDR, L4, DPORT]}, "data": "@service-ips"}}]],
        "svc": [[M(SADDR, "@nets", "!="), {"jump": {"target": "mark"}}],
                [{"vmap": {"key": {"numgen": {"mode": "random", "mod": 3, "offset": 0}},
                           "data": {"set": [[0, {"goto": {"target": "ep0"}}], [1, {"goto": {"target": "ep1"}}],
                                            [2, {"goto": {"target": "ep2"}}]]}}}]],
        "ep0": [[M(L4, "tcp"), {"counter": None}, {"dnat": {"addr": "10.244.1.1", "port": 8080}}]],
        "ep1": [[M(L4, "tcp"), {"dnat": {"addr": "10.244.1.2", "port": 8080}}]],
        "ep2": [[M(L4, "tcp"), {"dnat": {"addr": "10.244.1.3", "port": 8080}}]],
        "rej": [[{"reject": None}]],
        "mark": [[{"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 16384]}}}]],
        "fwd": [[M({"ct": {"key": "state"}}, "invalid", "in"), {"drop": None}],
                [M({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}],
                [M({"&": [{"meta": {"key": "mark"}}, 16384]}, 0, "!="), {"accept": None}],
                [M({"fib": {"result": "type", "flags": ["daddr"]}}, "local"), {"accept": None}],
                [M(DADDR, {"set": ["10.0.0.1", {"prefix": {"addr": "10.9.0.0", "len": 16}}]}), {"accept": None}]],
    }
    for chain, rs in rules.items():
        for r in rs:
            items.append({"rule": {"family": "ip", "table": "kp", "chain": chain, "expr": r}})
    rs = parse_nft(json.dumps({"nftables": items}))
    t = rs.table("ip", "kp")
    assert t is not None
    return NftEval(t)


def test_vmap_and_numgen_three_ways() -> None:
    ev = ruleset()

    def run(ch: Chooser) -> str:
        p = make_packet("10.244.2.2", "10.96.0.1", "tcp", 80)
        r = ev.run("pre", p, _ctx(ch=ch))
        assert r.verdict == "ACCEPT" and r.nat and r.nat[0].kind == "dnat"
        return p.endpoint("dst")

    leaves, _ = explore(run)
    assert [(r, round(c.probability, 3)) for r, c in leaves] == [
        ("10.244.1.1:8080", 0.333), ("10.244.1.2:8080", 0.333), ("10.244.1.3:8080", 0.333)]


def test_masquerade_mark_from_outside_the_pod_network() -> None:
    ev = ruleset()
    p = make_packet("192.168.1.50", "10.96.0.1", "tcp", 80)
    run = ev.run("pre", p, _ctx())
    assert p.mark == 0x4000 and any(r.chain == "mark" for r in run.rules)
    p2 = make_packet("10.244.2.2", "10.96.0.1", "tcp", 80)
    ev.run("pre", p2, _ctx())
    assert p2.mark == 0


def test_map_miss_and_element_comment() -> None:
    ev = ruleset()
    p = make_packet("10.244.2.2", "10.96.0.9", "tcp", 80)
    assert ev.run("pre", p, _ctx()).verdict == "ACCEPT" and p.endpoint("dst") == "10.96.0.9:80"
    run = ev.run("pre", make_packet("10.244.2.2", "10.96.0.2", "tcp", 80), _ctx())
    assert run.verdict == "REJECT"
    assert any('@service-ips "default/empty:http"' in (r.note or "") for r in run.rules)


def test_filter_chain_policy_ct_state_fib_and_anonymous_sets() -> None:
    ev = ruleset()
    invalid = _ctx("FORWARD", state="INVALID")
    assert ev.run("fwd", make_packet("1.1.1.1", "2.2.2.2", "tcp", 1), invalid).verdict == "DROP"
    assert ev.run("fwd", make_packet("1.1.1.1", "2.2.2.2", "tcp", 1),
                  _ctx("FORWARD", state="ESTABLISHED")).verdict == "ACCEPT"
    p = make_packet("1.1.1.1", "2.2.2.2", "tcp", 1)
    p.mark = 0x4000
    assert ev.run("fwd", p, _ctx("FORWARD")).verdict == "ACCEPT"
    assert ev.run("fwd", make_packet("1.1.1.1", "192.168.1.10", "tcp", 1), _ctx("FORWARD")).verdict == "ACCEPT"
    assert ev.run("fwd", make_packet("1.1.1.1", "10.9.3.4", "tcp", 1), _ctx("FORWARD")).verdict == "ACCEPT"
    run = ev.run("fwd", make_packet("1.1.1.1", "2.2.2.2", "tcp", 1), _ctx("FORWARD"))
    assert run.verdict == "DROP" and run.decided_by is not None and run.decided_by.num == 0


def test_rule_text_reads_like_nft() -> None:
    ev = ruleset()
    texts = [rule_text(r) for r in ev.table.chains["services"].rules + ev.table.chains["svc"].rules]
    assert texts == ["ip daddr . meta l4proto . th dport vmap @service-ips",
                     "ip saddr != @nets jump mark",
                     "numgen random mod 3 vmap { 0 : goto ep0, 1 : goto ep1, 2 : goto ep2 }"]
