"""iptables evaluation: matches, targets, chain semantics, random branches, the destination index."""

from __future__ import annotations

import ipaddress

import pytest

from podnet.sim.choices import Chooser, explore
from podnet.sim.conntrack_sim import CtEntry, CtInfo, Tup
from podnet.sim.netfilter import HookCtx, IptablesEval, hook_plan
from podnet.sim.packet import Packet, make_packet
from podnet.sim.parse_iptables import parse_iptables_save
from podnet.sim.parse_nft import parse_nft
from podnet.sim.routing import Fib
from podnet.sim.snapshot import Address, Route

IP = ipaddress.ip_address
NET = ipaddress.ip_network


def fib() -> Fib:
    routes = [Route("local", NET("192.168.1.10/32"), dev="eth0", type="local"),
              Route("local", NET("127.0.0.0/8"), dev="lo", type="local"),
              Route("main", NET("0.0.0.0/0"), gateway=IP("192.168.1.1"), dev="eth0")]
    addrs = [Address("eth0", 2, "inet", IP("192.168.1.10"), 24)]
    return Fib(routes, [], addrs)


def ctx(hook: str = "FORWARD", chooser: Chooser | None = None, **kw) -> HookCtx:  # type: ignore[no-untyped-def]
    return HookCtx(hook=hook, in_dev=kw.pop("in_dev", "cni0"), out_dev=kw.pop("out_dev", "eth0"), fib=fib(),
                   chooser=chooser or Chooser(), ct=kw.pop("ct", CtInfo()), **kw)


def table(body: str, name: str = "filter", chains: str = "") -> IptablesEval:
    builtin = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}[name]
    pol = "DROP" if "policy-drop" in chains else "ACCEPT"
    head = "".join(f":{c} {pol if c == 'FORWARD' else 'ACCEPT'} [0:0]\n" for c in builtin)
    head += "".join(f":{c} - [0:0]\n" for c in chains.split() if c != "policy-drop")
    return IptablesEval(parse_iptables_save(f"*{name}\n{head}{body}COMMIT\n"))


def pkt(**kw) -> Packet:  # type: ignore[no-untyped-def]
    p = make_packet(kw.pop("src", "10.244.1.5"), kw.pop("dst", "10.244.2.8"), kw.pop("proto", "tcp"),
                    kw.pop("dport", 8080), kw.pop("sport", 40000))
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def test_first_match_multiport_and_policy() -> None:
    ev = table("-A FORWARD -p udp -m multiport ! --dports 53 -j DROP\n"
               "-A FORWARD -p tcp -m multiport --dports 80,443,8000:8100 -j ACCEPT\n", chains="policy-drop")
    run = ev.run("filter", "FORWARD", pkt(), ctx())
    assert run is not None and run.verdict == "ACCEPT" and run.decided_by is not None and run.decided_by.num == 2
    run = ev.run("filter", "FORWARD", pkt(dport=9000), ctx())
    assert run is not None and run.verdict == "DROP" and run.decided_by.num == 0          # the policy
    run = ev.run("filter", "FORWARD", pkt(proto="udp", dport=5353), ctx())
    assert run.verdict == "DROP" and run.decided_by.num == 1
    run = ev.run("filter", "FORWARD", pkt(proto="udp", dport=53), ctx())
    assert run.verdict == "DROP" and run.decided_by.num == 0


def test_jump_return_and_goto() -> None:
    ev = table("-A FORWARD -j A\n-A FORWARD -j ACCEPT\n"
               "-A A -p tcp --dport 1 -j RETURN\n-A A -g B\n-A A -j DROP\n"
               "-A B -p tcp --dport 2 -j REJECT --reject-with tcp-reset\n", chains="A B")
    # RETURN goes back to FORWARD #2
    run = ev.run("filter", "FORWARD", pkt(dport=1), ctx())
    assert run.verdict == "ACCEPT" and [r.chain for r in run.rules] == ["FORWARD", "A", "FORWARD"]
    # -g B: when B ends, A ends too (its DROP is never reached)
    run = ev.run("filter", "FORWARD", pkt(dport=3), ctx())
    assert run.verdict == "ACCEPT"
    run = ev.run("filter", "FORWARD", pkt(dport=2), ctx())
    assert run.verdict == "REJECT" and run.reject_with == "tcp-reset"


def test_mark_then_match_mark() -> None:
    ev = table("-A FORWARD -j KUBE-MARK\n-A FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT\n-A FORWARD -j DROP\n"
               "-A KUBE-MARK -j MARK --set-xmark 0x4000/0x4000\n", chains="KUBE-MARK")
    p = pkt(mark=0x1)
    run = ev.run("filter", "FORWARD", p, ctx())
    assert run.verdict == "ACCEPT" and p.mark == 0x4001


def test_conntrack_states_and_dnat_state() -> None:
    ev = table("-A FORWARD -m conntrack --ctstate INVALID -j DROP\n"
               "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
               "-A FORWARD -m conntrack ! --ctstate DNAT -j REJECT\n", chains="")
    assert ev.run("filter", "FORWARD", pkt(), ctx(ct=CtInfo(state="INVALID"))).verdict == "DROP"
    assert ev.run("filter", "FORWARD", pkt(), ctx(ct=CtInfo(state="ESTABLISHED"))).verdict == "ACCEPT"
    assert ev.run("filter", "FORWARD", pkt(), ctx(ct=CtInfo(state="NEW"))).verdict == "REJECT"
    e = CtEntry("tcp", Tup(IP("10.244.1.5"), 1, IP("10.96.0.1"), 80), Tup(IP("10.244.2.8"), 80, IP("10.244.1.5"), 1))
    assert ev.run("filter", "FORWARD", pkt(), ctx(ct=CtInfo(state="NEW", entry=e))).verdict == "ACCEPT"


def test_addrtype_physdev_and_interfaces() -> None:
    ev = table("-A FORWARD -m addrtype --dst-type LOCAL -j DROP\n"
               "-A FORWARD -i veth+ -j DROP\n"
               "-A FORWARD -m physdev --physdev-in veth1234 --physdev-is-bridged -j REJECT\n"
               "-A FORWARD -m physdev ! --physdev-is-bridged -j ACCEPT\n")
    assert ev.run("filter", "FORWARD", pkt(dst="192.168.1.10"), ctx()).verdict == "DROP"
    assert ev.run("filter", "FORWARD", pkt(), ctx(in_dev="veth99")).verdict == "DROP"
    assert ev.run("filter", "FORWARD", pkt(), ctx(physdev_in="veth1234", bridged=True)).verdict == "REJECT"
    assert ev.run("filter", "FORWARD", pkt(), ctx(physdev_in="veth1234", bridged=False)).verdict == "ACCEPT"


def test_icmp_tcp_flags_recent_and_unknown_module() -> None:
    ev = table("-A FORWARD -p icmp -m icmp --icmp-type 8 -j ACCEPT\n"
               "-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST,ACK SYN -m recent --set --name seen --rsource\n"
               "-A FORWARD -m recent --rcheck --name seen --rsource -j REJECT\n"
               "-A FORWARD -m set --match-set blocked src -j DROP\n")
    assert ev.run("filter", "FORWARD", pkt(proto="icmp"), ctx()).verdict == "ACCEPT"
    c = ctx()
    run = ev.run("filter", "FORWARD", pkt(), c)
    assert run.verdict == "REJECT" and [r.num for r in run.rules] == [2, 3]
    c2 = ctx()
    run = ev.run("filter", "FORWARD", pkt(proto="udp"), c2)       # not recorded by --set: no REJECT
    assert run.verdict == "ACCEPT"
    assert any("-m set is not modelled" in w for w in c2.warnings)


def test_statistic_branches_enumerate_with_probabilities() -> None:
    body = ("-A PREROUTING -j KUBE-SVC-X\n"
            "-A KUBE-SVC-X -m statistic --mode random --probability 0.33333333349 -j SEP1\n"
            "-A KUBE-SVC-X -m statistic --mode random --probability 0.50000000000 -j SEP2\n"
            "-A KUBE-SVC-X -j SEP3\n"
            "-A SEP1 -p tcp -j DNAT --to-destination 10.244.1.1:80\n"
            "-A SEP2 -p tcp -j DNAT --to-destination 10.244.1.2:80\n"
            "-A SEP3 -p tcp -j DNAT --to-destination 10.244.1.3:80\n")
    ev = table(body, "nat", "KUBE-SVC-X SEP1 SEP2 SEP3")

    def run(ch: Chooser) -> str:
        p = pkt(dst="10.96.0.1", dport=80)
        ev.run("nat", "PREROUTING", p, ctx("PREROUTING", ch))
        return p.endpoint("dst")

    leaves, truncated = explore(run)
    assert not truncated
    got = [(r, round(ch.probability, 4)) for r, ch in leaves]
    assert got == [("10.244.1.1:80", 0.3333), ("10.244.1.2:80", 0.3333), ("10.244.1.3:80", 0.3333)]


def test_nat_targets() -> None:
    ev = table("-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE\n"
               "-A PREROUTING -p tcp --dport 80 -j REDIRECT --to-ports 8080\n"
               "-A OUTPUT -p udp -j SNAT --to-source 192.168.1.10-192.168.1.12:1024-2048\n", "nat")
    p = pkt(dst="8.8.8.8")
    c = ctx("POSTROUTING", masquerade_src=lambda dev, dst: IP("192.168.1.10"))
    run = ev.run("nat", "POSTROUTING", p, c)
    assert run.nat[0].kind == "masquerade" and str(p.src) == "192.168.1.10"
    p = pkt(dst="192.168.1.10", dport=80)
    run = ev.run("nat", "PREROUTING", p, ctx("PREROUTING", in_dev="eth0"))
    assert (run.nat[0].kind, p.endpoint("dst")) == ("redirect", "192.168.1.10:8080")
    p = pkt(proto="udp", dport=53)
    c = ctx("OUTPUT")
    run = ev.run("nat", "OUTPUT", p, c)
    assert p.endpoint("src") == "192.168.1.10:1024" and any("range" in w for w in c.warnings)


def test_index_finds_the_one_rule_among_many() -> None:
    lines = [f"-A KUBE-SERVICES -d 10.96.{i // 250}.{i % 250 + 1}/32 -p tcp -m tcp --dport 80 -j S{i}\n"
             for i in range(5000)]
    chains = " ".join(f"S{i}" for i in range(5000))
    body = "".join(lines) + "-A PREROUTING -j KUBE-SERVICES\n" + "".join(
        f"-A S{i} -p tcp -j DNAT --to-destination 10.244.0.{i % 250 + 1}:80\n" for i in range(5000))
    ev = table(body, "nat", "KUBE-SERVICES " + chains)
    p = pkt(dst="10.96.19.250", dport=80)
    run = ev.run("nat", "PREROUTING", p, ctx("PREROUTING"))
    assert run.rules[1].num == 19 * 250 + 250 and p.endpoint("dst") == "10.244.0.250:80"
    assert len(ev.index.chain("nat", "KUBE-SERVICES").candidates(p.dst, "tcp", 80)) <= 2


def test_hook_plan_orders_iptables_and_nft_by_priority() -> None:
    ipt = parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
                              "*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    nft = parse_nft('{"nftables": [{"table": {"family": "ip", "name": "kp", "handle": 1}}, '
                    '{"chain": {"family": "ip", "table": "kp", "name": "early", "type": "filter", "hook": "prerouting",'
                    ' "prio": -110, "policy": "accept"}}, '
                    '{"table": {"family": "ip", "name": "nat", "handle": 2}}, '
                    '{"chain": {"family": "ip", "table": "nat", "name": "PREROUTING", "type": "nat", '
                    '"hook": "prerouting", "prio": -100, "policy": "accept"}}]}')
    plan = hook_plan(ipt, nft)["PREROUTING"]
    assert [(e.kind, e.table or "", e.prio) for e in plan] == [
        ("iptables", "raw", -300), ("conntrack", "", -200), ("iptables", "mangle", -150), ("nft", "ip kp", -110),
        ("iptables", "nat", -100)]          # iptables-nft's own "ip nat" table is not run twice


@pytest.mark.parametrize("flags,expected", [("SYN", True), ("SYN,ACK", False)])
def test_syn_match(flags: str, expected: bool) -> None:
    ev = table("-A FORWARD -p tcp --syn -j DROP\n")
    p = pkt(tcp_flags=frozenset(flags.split(",")))
    assert (ev.run("filter", "FORWARD", p, ctx()).verdict == "DROP") is expected
