"""iproute2 / bridge JSON parsers, over fixtures dumped from real namespaces (make_fixtures.sh)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from podnet.sim.parse_bridge import parse_bridge_fdb, parse_bridge_link, with_bridge_ports
from podnet.sim.parse_ip import parse_ip_addr, parse_ip_link, parse_ip_neigh, parse_ip_route, parse_ip_rule
from podnet.sim.snapshot import SnapshotError

FIX = Path(__file__).parent.parent / "fixtures" / "snapshot"


def read(ns: str, name: str) -> str:
    return (FIX / ns / name).read_text()


def test_links_kinds_master_vxlan_hairpin() -> None:
    links = {lk.name: lk for lk in parse_ip_link(read("node1", "ip-link.json"))}
    assert set(links) == {"lo", "eth0", "cni0", "veth1a2b3c4d", "flannel.1"}
    assert links["lo"].kind == "loopback"
    assert links["cni0"].kind == "bridge" and links["cni0"].mac == "0a:58:0a:f4:01:01"
    assert links["cni0"].bridge is not None and not links["cni0"].bridge.vlan_filtering
    veth = links["veth1a2b3c4d"]
    assert veth.kind == "veth" and veth.master == "cni0" and veth.mtu == 1450 and veth.up
    assert veth.hairpin and veth.port is not None and veth.port.state == "forwarding"
    assert veth.peer_ifindex == 2 and veth.peer_netnsid is not None
    vx = links["flannel.1"]
    assert vx.kind == "vxlan" and vx.vxlan is not None
    assert (vx.vxlan.vni, vx.vxlan.port, str(vx.vxlan.local), vx.vxlan.dev, vx.vxlan.learning) == (
        1, 8472, "192.168.1.10", "eth0", False)
    assert vx.mac == "9a:1e:93:d5:90:b1" and vx.mtu == 1450
    assert links["eth0"].kind == "veth" and links["eth0"].mtu == 1500


def test_pod_link_peer() -> None:
    (_lo, eth0) = parse_ip_link(read("pod", "ip-link.json"))
    assert eth0.name == "eth0" and eth0.kind == "veth" and eth0.peer_ifindex == 4
    assert eth0.mac == "0a:58:0a:f4:01:05"


def test_addresses() -> None:
    addrs = parse_ip_addr(read("node1", "ip-addr.json"))
    v4 = {(a.dev, str(a.interface)) for a in addrs if a.family == "inet"}
    assert {("lo", "127.0.0.1/8"), ("eth0", "192.168.1.10/24"), ("cni0", "10.244.1.1/24"),
            ("flannel.1", "10.244.1.0/32")} <= v4
    cni = next(a for a in addrs if a.dev == "cni0" and a.family == "inet")
    assert cni.network == ipaddress.ip_network("10.244.1.0/24") and cni.scope == "global"
    assert any(a.family == "inet6" and a.scope == "link" for a in addrs)


def test_routes_all_tables() -> None:
    routes = parse_ip_route(read("node1", "ip-route.json"))
    by = {(r.table, str(r.dst), r.type): r for r in routes}
    default = by[("main", "0.0.0.0/0", "unicast")]
    assert str(default.gateway) == "192.168.1.1" and default.dev == "eth0" and default.onlink
    pods = by[("main", "10.244.2.0/24", "unicast")]
    assert (str(pods.gateway), pods.dev, pods.onlink) == ("10.244.2.0", "flannel.1", True)
    link = by[("main", "10.244.1.0/24", "unicast")]
    assert link.scope == "link" and str(link.src) == "10.244.1.1" and link.protocol == "kernel"
    assert link.gateway is None
    assert by[("main", "10.250.0.0/16", "blackhole")].dev is None
    assert by[("main", "10.251.0.0/16", "unreachable")].metric == 50
    t100 = by[("100", "10.99.0.0/16", "unicast")]
    assert t100.protocol == "static" and str(t100.gateway) == "192.168.1.11"
    local = by[("local", "10.244.1.1/32", "local")]
    assert local.scope == "host" and local.dev == "cni0"
    assert ("local", "10.244.1.255/32", "broadcast") in by
    assert any(r.family == "inet6" and r.dst.version == 6 for r in routes)
    assert all(r.dst.version == (6 if r.family == "inet6" else 4) for r in routes)


def test_route_default_family_and_multipath() -> None:
    text = ('[{"dst":"default","gateway":"fe80::1","dev":"eth0","flags":[],"pref":"medium"},'
            '{"dst":"default","protocol":"static","metric":5,"flags":[],"nexthops":['
            '{"gateway":"10.0.0.1","dev":"eth0","weight":1,"flags":[]},'
            '{"gateway":"10.0.1.1","dev":"eth1","weight":2,"flags":["onlink"]}]},'
            '{"type":"unreachable","dst":"default","dev":"lo","metric":4294967295,"flags":[],"pref":"medium"},'
            '{"dst":"10.9.0.0/16","dev":"eth0","metrics":[{"mtu":1400}],"flags":[]}]')
    v6, mp, unr, mtu = parse_ip_route(text)
    assert str(v6.dst) == "::/0" and v6.family == "inet6"
    assert str(mp.dst) == "0.0.0.0/0" and [str(n.gateway) for n in mp.nexthops] == ["10.0.0.1", "10.0.1.1"]
    assert mp.nexthops[1].onlink and mp.nexthops[1].weight == 2
    assert str(unr.dst) == "::/0" and unr.type == "unreachable"
    assert mtu.mtu == 1400


def test_rules() -> None:
    rules = parse_ip_rule(read("node1", "ip-rule.json"))
    assert [r.priority for r in rules] == [0, 100, 200, 32766, 32767]
    assert [r.table for r in rules] == ["local", "100", "main", "main", "default"]
    mark = rules[1]
    assert (mark.fwmark, mark.fwmask, mark.src) == (0x4000, 0x4000, None)
    fromto = rules[2]
    assert str(fromto.src) == "10.244.1.0/24" and str(fromto.dst) == "10.96.0.0/12"
    assert all(r.action == "lookup" for r in rules)


def test_neighbours() -> None:
    neigh = {str(n.ip): n for n in parse_ip_neigh(read("node1", "ip-neigh.json"))}
    vtep = neigh["10.244.2.0"]
    assert (vtep.mac, vtep.dev, vtep.state, vtep.usable) == ("9a:1e:93:d5:90:b2", "flannel.1",
                                                              ("PERMANENT",), True)
    assert neigh["192.168.1.11"].usable
    assert not neigh["192.168.1.99"].usable and neigh["192.168.1.99"].mac is None


def test_fdb() -> None:
    fdb = parse_bridge_fdb(read("node1", "bridge-fdb.json"))
    vx = [e for e in fdb if e.dev == "flannel.1"]
    assert len(vx) == 1 and str(vx[0].dst) == "192.168.1.11" and vx[0].mac == "9a:1e:93:d5:90:b2"
    assert vx[0].self_entry and vx[0].state == "permanent" and vx[0].master is None
    learned = [e for e in fdb if e.mac == "0a:58:0a:f4:01:05"]
    assert learned and learned[0].master == "cni0" and learned[0].dev == "veth1a2b3c4d"
    assert learned[0].state == "" and not learned[0].self_entry


def test_bridge_link_fills_hairpin_when_ip_link_lacks_details() -> None:
    ports = parse_bridge_link(read("node1", "bridge-link.json"))
    assert ports["veth1a2b3c4d"].hairpin
    plain = '[{"ifindex":4,"ifname":"veth1a2b3c4d","mtu":1450,"master":"cni0","flags":["UP"]}]'
    (lk,) = with_bridge_ports(parse_ip_link(plain), ports)
    assert lk.hairpin and lk.slave_kind == "bridge"
    assert parse_bridge_link(read("node2", "bridge-link.json")) == {}


@pytest.mark.parametrize(("text", "needle"), [
    ('[{"ifindex": 1, "ifname": "lo"', "ip-link.json:1: invalid JSON"),
    ('{"ifindex": 1}', "ip-link.json:1: expected a JSON array"),
    ('[{"ifname": "eth0", "mtu": 1500}]', "ip-link.json: entry 1 (eth0): missing 'ifindex'"),
])
def test_link_errors_name_file_and_line(text: str, needle: str) -> None:
    with pytest.raises(SnapshotError) as e:
        parse_ip_link(text)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_route_bad_prefix() -> None:
    with pytest.raises(SnapshotError, match=r"ip-route.json: entry 1 \(10.0.0.300/24\): bad prefix"):
        parse_ip_route('[{"dst":"10.0.0.300/24","dev":"eth0"}]')


def test_multiline_json_error_line() -> None:
    with pytest.raises(SnapshotError, match=r"x.json:3: invalid JSON"):
        parse_ip_neigh('[\n {"dst": "10.0.0.1", "dev": "eth0"},\n {"dst" "10.0.0.2"}\n]', "x.json")
