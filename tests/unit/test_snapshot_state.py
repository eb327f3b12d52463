"""nft -j, conntrack -L -o extended and sysctl parsers over real dumps (make_fixtures.sh)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from podnet.sim.parse_conntrack import parse_conntrack, render_conntrack
from podnet.sim.parse_nft import parse_nft
from podnet.sim.parse_sysctl import parse_sysctl, render_sysctl
from podnet.sim.snapshot import SnapshotError

FIX = Path(__file__).parent.parent / "fixtures" / "snapshot"


def test_nft_tables_chains_maps() -> None:
    rs = parse_nft((FIX / "node2" / "nft.json").read_text())
    assert rs.version == "1.0.6"
    kp = rs.table("ip", "kube-proxy")
    assert kp is not None
    pre = kp.chains["nat-prerouting"]
    assert (pre.base, pre.type, pre.hook, pre.prio, pre.policy) == (True, "nat", "prerouting", -100, "accept")
    assert not kp.chains["services"].base
    svc = kp.chains["service-TCOU7JCQ-default/my-service/tcp/http"]
    assert [r.num for r in svc.rules] == [1, 2]
    numgen = svc.rules[1].expr[0]["vmap"]["key"]["numgen"]
    assert numgen == {"mode": "random", "mod": 2, "offset": 0}
    vmap = kp.sets["service-ips"]
    assert vmap.is_map and vmap.map == "verdict" and vmap.type == ["ipv4_addr", "inet_proto", "inet_service"]
    (key, verdict), = vmap.elements
    assert key == {"concat": ["10.96.45.67", "tcp", 8080]}
    assert verdict == {"goto": {"target": "service-TCOU7JCQ-default/my-service/tcp/http"}}
    assert set(kp.maps) == {"service-ips"} and not kp.sets["cluster-ips"].is_map
    assert kp.sets["cluster-ips"].elements == ("10.96.45.67",)
    # iptables-nft rules appear in nft's view too, as the xt-compat tables
    flt = rs.table("ip", "filter")
    assert flt is not None and flt.chains["FORWARD"].hook == "forward"
    assert len(rs.raw) > 10


def test_nft_empty_and_errors() -> None:
    empty = parse_nft((FIX / "pod" / "nft.json").read_text())
    assert empty.tables == {}
    assert parse_nft("").tables == {}
    with pytest.raises(SnapshotError, match=r"^nft.json:1: expected"):
        parse_nft("[1, 2]")
    with pytest.raises(SnapshotError, match=r"nft.json: nftables\[1\]: rule in unknown chain"):
        parse_nft('{"nftables": [{"table": {"family": "ip", "name": "t"}},'
                  '{"rule": {"family": "ip", "table": "t", "chain": "c", "expr": []}}]}')


def test_conntrack_entries() -> None:
    entries = parse_conntrack((FIX / "node1" / "conntrack.txt").read_text())
    by = {(e.proto, e.orig.dport): e for e in entries if e.orig.dport is not None}
    est = by[("tcp", 8080)]
    assert est.family == "ipv4" and est.protonum == 6 and est.state == "ESTABLISHED"
    assert est.orig.src == ipaddress.ip_address("10.244.1.5") and est.orig.sport == 41234
    assert str(est.reply.src) == "10.244.2.8" and est.reply.sport == 8080
    assert est.assured and est.mark == 0x4000 and est.dnat and not est.snat and est.timeout
    udp = by[("udp", 53)]
    assert udp.state is None and "UNREPLIED" in udp.flags and not udp.assured
    syn = by[("tcp", 30080)]
    assert syn.state == "SYN_SENT" and syn.zone == 7 and syn.dnat and syn.snat
    icmp = [e for e in entries if e.proto == "icmp"]
    assert icmp and all(e.orig.icmp_type == 8 and e.reply.icmp_type == 0 for e in icmp)
    assert parse_conntrack(render_conntrack(entries)) == entries


def test_conntrack_formats() -> None:
    text = (
        "tcp      6 86399 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 packets=3 bytes=180 "
        "src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 packets=2 bytes=120 [ASSURED] mark=0 "
        "secctx=system_u:object_r:unlabeled_t:s0 zone-orig=1 use=1\n"
        "ipv6     10 udp      17 29 src=fd00::1 dst=fd00::2 sport=5 dport=53 src=fd00::2 dst=fd00::1 "
        "sport=53 dport=5 mark=0 use=1\n"
        "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n")
    a, b = parse_conntrack(text)
    assert a.orig.packets == 3 and a.reply.bytes == 120 and a.orig.zone == 1
    assert ("secctx", "system_u:object_r:unlabeled_t:s0") in a.extra
    assert b.family == "ipv6" and b.orig.src == ipaddress.ip_address("fd00::1")


def test_conntrack_error_names_line() -> None:
    with pytest.raises(SnapshotError) as e:
        parse_conntrack("ipv4 2 tcp 6 10 ESTABLISHED src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2\n"
                        "ipv4 2 tcp 6 10 ESTABLISHED src=1.2.3.4 dst=5.6.7.8\n")
    assert str(e.value).startswith("conntrack.txt:1: bad conntrack entry")


def test_sysctl() -> None:
    node = parse_sysctl((FIX / "node1" / "sysctl.txt").read_text())
    assert node["net.ipv4.ip_forward"] == "1"
    assert node["net.ipv4.conf.all.rp_filter"] == "0"
    assert node["net.bridge.bridge-nf-call-iptables"] == "1"
    assert "net.ipv4.conf.flannel.1.rp_filter" in node      # sysctl prints flannel/1
    assert len(node["net.ipv4.ip_local_port_range"].split()) == 2
    pod = parse_sysctl((FIX / "pod" / "sysctl.txt").read_text())
    assert pod["net.ipv4.ip_forward"] == "0"
    conf = parse_sysctl("# comment\n; other\n\nnet.ipv4.ip_forward=1\nnet/ipv4/conf/all/route_localnet = 1\n")
    assert conf == {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.route_localnet": "1"}
    assert parse_sysctl(render_sysctl(node)) == node
    with pytest.raises(SnapshotError, match=r"^s.txt:2: expected 'key = value'"):
        parse_sysctl("a.b = 1\nsysctl: permission denied on key 'x'\n", "s.txt")
