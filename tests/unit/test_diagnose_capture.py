"""capture's pure half: the path a flow crosses, pcaps read back, the probe recognised (also inside VXLAN and
in quoted ICMP errors), and the last hop interpreted as the seed article does."""

from __future__ import annotations

import socket
import struct

from podnet.dataplane import icmpprobe
from podnet.diagnose import hops
from podnet.diagnose.facts import LabFacts, NodeFacts, PodFacts

A = PodFacts("default/pod-a", "node1", "10.244.1.5", "pn-x-default-pod-a", "vetha")
B = PodFacts("default/pod-b", "node2", "10.244.2.8", "pn-x-default-pod-b", "vethb")
C = PodFacts("default/pod-c", "node2", "10.244.2.9", "pn-x-default-pod-c", "vethc")
D = PodFacts("default/pod-d", "node1", "10.244.1.6", "pn-x-default-pod-d", "vethd")


def lab(backend: str = "vxlan") -> LabFacts:
    return LabFacts(lab="x", backend=backend, kube_proxy_mode="iptables", underlay_mtu=1500, pod_mtu=1450,
                    dns_ip=None, dns_domain="cluster.local", pod_subnet="10.244.0.0/16",
                    service_subnet="10.96.0.0/12", underlay_netns="pn-x-underlay",
                    nodes=[NodeFacts("node1", "pn-x-node1", "192.168.1.10", "10.244.1.0/24", "10.244.1.1"),
                           NodeFacts("node2", "pn-x-node2", "192.168.1.11", "10.244.2.0/24", "10.244.2.1")],
                    pods=[A, B, C, D], services=[])


def labels(path):
    return [f"{h.node}:{h.dev}" for h in path]


def test_cross_node_vxlan_path_and_file_names():
    path = hops.plan_path(lab(), A, [B])
    assert labels(path) == ["node1:eth0", "node1:vetha", "node1:cni0", "node1:flannel.1", "node1:eth0",
                            "underlay:br0", "node2:eth0", "node2:flannel.1", "node2:cni0", "node2:vethb",
                            "node2:eth0"]
    assert [h.kind for h in path][:3] == ["pod", "veth", "bridge"]
    assert path[0].file(1) == "01-pod-a-eth0.pcap" and path[3].file(4) == "04-node1-flannel.1.pcap"


def test_host_gw_has_no_flannel_and_same_node_skips_the_wire():
    assert "node1:flannel.1" not in labels(hops.plan_path(lab("host-gw"), A, [B]))
    assert labels(hops.plan_path(lab(), A, [D])) == ["node1:eth0", "node1:vetha", "node1:cni0", "node1:vethd",
                                                   "node1:eth0"]


def test_service_with_two_endpoints_shares_the_way_there():
    path = hops.plan_path(lab(), A, [B, C])
    assert labels(path)[-4:] == ["node2:vethb", "node2:eth0", "node2:vethc", "node2:eth0"]
    assert labels(path).count("node2:cni0") == 1


# -- frames -----------------------------------------------------------------------------------------------
def ip4(src: str, dst: str, proto: int, payload: bytes, length: int | None = None) -> bytes:
    total = length or 20 + len(payload)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto, 0, socket.inet_aton(src),
                       socket.inet_aton(dst)) + payload


def eth(body: bytes, etype: int = 0x0800) -> bytes:
    return b"\x0a\x58\x0a\xf4\x02\x08" + b"\x0a\x58\x0a\xf4\x01\x05" + struct.pack("!H", etype) + body


def echo(src: str, dst: str, ident: int, reply: bool = False, size: int = 84) -> bytes:
    icmp = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident, 1) + b"x" * (size - 28)
    return ip4(src, dst, 1, icmp)


def vxlan(inner: bytes) -> bytes:
    udp = struct.pack("!HHHH", 40000, 8472, 8 + 8 + len(inner) + 14, 0) + b"\x08\0\0\0\0\0\x01\0" + eth(inner)
    return ip4("192.168.1.10", "192.168.1.11", 17, udp)


def arp(op: int, sender: str, target: str) -> bytes:
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + b"\0" * 6 + socket.inet_aton(sender) + b"\0" * 6 + \
        socket.inet_aton(target)


def pcap(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 512, 1)
    for f in frames:
        out += struct.pack("<IIII", 1, 0, len(f), len(f)) + f
    return out


PROBE = hops.Probe("10.244.1.5", frozenset({"10.244.2.8"}), "icmp", icmp_id=77)


def test_pcap_roundtrip_and_recognition():
    frames = hops.read_pcap(pcap([eth(echo("10.244.1.5", "10.244.2.8", 77)),
                                  eth(echo("10.244.2.8", "10.244.1.5", 77, reply=True)),
                                  eth(echo("10.244.1.5", "10.244.2.8", 78)),             # someone else's ping
                                  eth(vxlan(echo("10.244.1.5", "10.244.2.8", 77))),       # ours, encapsulated
                                  eth(arp(1, "10.244.1.5", "10.244.1.254"), 0x0806)]))
    seen = hops.count(frames, PROBE)
    assert (seen.forward, seen.reply, seen.frames) == (2, 1, 5)
    assert seen.to_json()["arpUnanswered"] == ["10.244.1.254"]
    assert hops.read_pcap(b"") == [] and hops.read_pcap(b"\0" * 40) == []


def test_icmp_errors_quoting_the_probe_are_counted_apart():
    quoted = echo("10.244.1.5", "10.244.2.8", 77)[:28]
    err = ip4("10.244.1.1", "10.244.1.5", 1, struct.pack("!BBHHH", 3, 4, 0, 0, 1450) + quoted)
    seen = hops.count([eth(err)], PROBE)
    assert seen.forward == 0 and seen.errors == ["ICMP fragmentation needed from 10.244.1.1 (mtu 1450)"]


def test_size_filter_counts_only_full_size_packets():
    big = hops.Probe("10.244.1.5", frozenset({"10.244.2.8"}), "icmp", icmp_id=77, size=1500)
    frames = [eth(echo("10.244.1.5", "10.244.2.8", 77, size=84)), eth(echo("10.244.1.5", "10.244.2.8", 77, size=1500))]
    assert hops.count(frames, big).forward == 1


def seen_up_to(n: int, total: int, reply: bool = False) -> list[hops.HopSeen]:
    return [hops.HopSeen(forward=1 if i < n else 0, reply=1 if reply else 0) for i in range(total)]


def test_interpretations():
    path = hops.plan_path(lab(), A, [B])
    v = hops.interpret(path, seen_up_to(3, len(path)), PROBE, hops.branches([B]))
    assert path[v.last_forward].dev == "cni0" and "not at flannel.1: a routing problem" in v.meaning
    v = hops.interpret(path, seen_up_to(3, len(path)), hops.Probe("10.244.1.5", frozenset(), "icmp", icmp_id=1,
                                                                   size=1500), hops.branches([B]),
                       {("pn-x-node1", "flannel.1"): 1450})
    assert "too big" in v.meaning and "MTU" in v.meaning
    v = hops.interpret(path, seen_up_to(7, len(path)), PROBE, hops.branches([B]))
    assert path[v.last_forward].node == "node2" and "VXLAN decap" in v.meaning
    v = hops.interpret(path, seen_up_to(2, len(path)), PROBE, hops.branches([B]))
    assert "not on the bridge" in v.meaning
    v = hops.interpret(path, seen_up_to(len(path), len(path), reply=True), PROBE, hops.branches([B]))
    assert v.delivered and v.answered
    nothing = [hops.HopSeen() for _ in path]
    nothing[0].arp_asked.add("10.244.1.254")
    nothing[1].arp_asked.add("10.244.1.254")
    nothing[2].arp_asked.add("10.244.1.254")
    v = hops.interpret(path, nothing, PROBE, hops.branches([B]))
    assert v.last_forward == 2 and "only its ARP requests (who-has 10.244.1.254)" in v.meaning
    nothing = [hops.HopSeen() for _ in path]
    nothing[0].arp_asked.add("10.244.1.6")
    nothing[1].arp_asked.add("10.244.1.6")
    same = hops.plan_path(lab(), A, [D])
    v = hops.interpret(same, nothing[:len(same)], PROBE, hops.branches([D]))
    assert v.last_forward == 1 and "not on the bridge" in v.meaning


def test_interpret_picks_the_endpoint_the_packet_went_to():
    path = hops.plan_path(lab(), A, [B, C])
    seen = [hops.HopSeen() for _ in path]
    for i, h in enumerate(path):
        if h.branch in ("", "node:node2", "pod:default/pod-c"):
            seen[i].forward = 1
    v = hops.interpret(path, seen, PROBE, hops.branches([B, C]))
    assert v.delivered and v.branch == "default/pod-c"


def test_icmpprobe_classify():
    reply = echo("10.244.2.8", "10.244.1.5", 9, reply=True)
    assert icmpprobe.classify(reply, "10.244.2.8", 9, 1).outcome == "reply"
    assert icmpprobe.classify(reply, "10.244.2.8", 10, 1) is None
    quoted = echo("10.244.1.5", "10.244.2.8", 9)[:28]
    err = ip4("10.244.1.1", "10.244.1.5", 1, struct.pack("!BBHHH", 3, 4, 0, 0, 1450) + quoted)
    r = icmpprobe.classify(err, "10.244.2.8", 9, 1)
    assert r.outcome == "frag-needed" and r.mtu == 1450 and r.sender == "10.244.1.1"
    err13 = ip4("10.244.2.0", "10.244.1.5", 1, struct.pack("!BBHHH", 3, 13, 0, 0, 0) + quoted)
    assert "administratively prohibited" in icmpprobe.classify(err13, "10.244.2.8", 9, 1).detail
