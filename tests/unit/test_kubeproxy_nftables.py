"""nftables mode against upstream's nftables proxier test expectations."""

from __future__ import annotations

from test_kubeproxy_iptables import UPSTREAM_NODE, overall_ports

from podnet.compile.kubeproxy_iptables import ProxyNode
from podnet.compile.kubeproxy_nftables import build_nft, hash_and_truncate, partial_scripts, render_nftables
from podnet.model.services import EndpointInfo as E
from podnet.model.services import ServicePortInfo as S


def test_hash_and_truncate() -> None:
    assert hash_and_truncate("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80").startswith("5OJB2KTY-")
    assert len(hash_and_truncate("x" * 300)) == 240


def test_overall_lines_as_upstream() -> None:
    (script,) = render_nftables(overall_ports(), UPSTREAM_NODE)
    lines = set(script.splitlines())
    for want in [
        "add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto "
        "endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , "
        "1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }",
        'add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 ip saddr 10.0.0.0/8 goto '
        'service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"',
        'add element ip kube-proxy no-endpoint-nodeports { tcp . 3001 comment "ns2/svc2:p80" : drop }',
        "add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { type ipv4_addr ; "
        "flags dynamic,timeout ; timeout 10800s ; }",
        "add rule ip kube-proxy firewall-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr != { 203.0.113.0/25 } drop",
        'add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : '
        "goto reject-chain }",
        "add rule ip kube-proxy masquerading masquerade fully-random",
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 "
        "ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
        "add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        "add element ip kube-proxy nodeport-ips { 192.168.0.2 }",
    ]:
        assert want in lines, want


def test_chunked_transactions_keep_service_ports_whole() -> None:
    ports = [S("ns", f"s{i}", "", "TCP", f"10.96.0.{i}", 80, endpoints=(E(f"10.1.0.{i}", 80),)) for i in range(1, 8)]
    scripts = render_nftables(ports, ProxyNode("n", ("192.168.0.2",)), chunk=3)
    assert len(scripts) == 3 and scripts[0].startswith("add table ip kube-proxy")
    for s in scripts:      # each element's target chain is created in the same script
        for line in s.splitlines():
            if line.startswith("add element") and "goto service-" in line:
                chain = line.split("goto ")[1].rstrip(" }")
                assert f"add chain ip kube-proxy {chain}" in s


def test_partial_one_service_change() -> None:
    node = ProxyNode("n", ("192.168.0.2",), cluster_cidr="10.244.0.0/16")
    ports = [S("ns", f"s{i:03d}", "", "TCP", f"10.96.1.{i}", 80, endpoints=(E(f"10.1.0.{i}", 80),))
             for i in range(1, 200)]
    old = build_nft(ports, node)
    ports[5] = S("ns", "s006", "", "TCP", "10.96.1.6", 80, endpoints=(E("10.1.9.9", 80),))
    scripts = partial_scripts(old, build_nft(ports, node))
    text = "".join(scripts)
    assert "s006" in text and "s007" not in text and "add table" not in text
    assert "flush chain ip kube-proxy endpoint-" in scripts[0]
    assert scripts[-1].startswith("delete chain ip kube-proxy endpoint-")
    assert partial_scripts(build_nft(ports, node), build_nft(ports, node)) == []
