"""The rendered payloads load into a real kernel (throwaway netns ``pn-t<random>``, always removed)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.compile.kubeproxy_iptables import (
    ProxyNode,
    build_rules,
    ensured_chains,
    jump_rules,
    partial_payload,
    render_iptables,
)
from podnet.compile.kubeproxy_nftables import build_nft, partial_scripts, render_nftables
from podnet.model.services import EndpointInfo as E
from podnet.model.services import ServicePortInfo as S

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]

NODE = ProxyNode("test-node", ("192.168.0.2",), cluster_cidr="10.0.0.0/8", service_cidrs=("172.30.0.0/16",))


def ports() -> list[S]:
    return [
        S("ns1", "svc1", "p80", "TCP", "172.30.0.41", 80, endpoints=(E("10.180.0.1", 80), E("10.180.0.2", 80))),
        S("ns2", "svc2", "p80", "TCP", "172.30.0.42", 80, node_port=30001, external_ips=("192.168.99.22",),
          lb_vips=("1.2.3.4",), external_policy_local=True, health_check_node_port=30000,
          endpoints=(E("10.180.0.2", 80),)),
        S("ns5", "svc5", "dns", "UDP", "172.30.0.45", 53, node_port=30002, lb_vips=("5.6.7.8",),
          lb_source_ranges=("203.0.113.0/25", "192.168.0.0/24"), affinity_timeout=10800,
          endpoints=(E("10.180.0.3", 53, ready=False, serving=True, terminating=True),)),
        S("ns6", "svc6", "sctp", "SCTP", "172.30.0.46", 9999),
    ]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"pn-t{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def run(ns: str, *argv: str, stdin: str | None = None) -> str:
    res = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(argv)}: {res.stderr}"
    return res.stdout


def test_iptables_payload_jumps_and_partial_sync_load(netns: str) -> None:
    run(netns, "iptables-restore", "--noflush", stdin=render_iptables(ports(), NODE))
    for table, chain in ensured_chains():      # EnsureChain: create when missing
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-t", table, "-N", chain], capture_output=True)
    for j in jump_rules():                     # EnsureRule(Prepend): -C, then -I
        if subprocess.run(["ip", "netns", "exec", netns, "iptables", *j.check_argv()],
                          capture_output=True).returncode != 0:
            run(netns, "iptables", *j.insert_argv())
    saved = run(netns, "iptables-save")
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in saved
    assert "--probability 0.50000000000" in saved and "--rsource" in saved
    old = build_rules(ports(), NODE)
    changed = [*ports()[1:], S("ns9", "new", "", "TCP", "172.30.0.49", 8080, endpoints=(E("10.180.0.9", 8080),))]
    new = build_rules(changed, NODE)
    run(netns, "iptables-restore", "--noflush", stdin=partial_payload(old, new))
    nat = run(netns, "iptables-save", "-t", "nat")
    assert "ns1/svc1" not in nat and "ns9/new" in nat
    kube = [line for line in nat.splitlines() if line.startswith("-A KUBE-SERVICES")]
    assert "kubernetes service nodeports" in kube[-1]     # still the last rule after -D/-I edits
    assert len(kube) == len([line for line in new.nat_rules if line.startswith("-A KUBE-SERVICES")])


def test_nftables_scripts_and_partial_sync_load(netns: str, tmp_path: Path) -> None:
    for i, script in enumerate(render_nftables(ports(), NODE, chunk=2)):
        (tmp_path / f"{i}.nft").write_text(script)
        run(netns, "nft", "-f", str(tmp_path / f"{i}.nft"))
    listed = run(netns, "nft", "list", "table", "ip", "kube-proxy")
    assert "numgen random mod 2 vmap" in listed and "masquerade fully-random" in listed
    old = build_nft(ports(), NODE)
    new = build_nft(ports()[1:], NODE)
    for i, script in enumerate(partial_scripts(old, new)):
        (tmp_path / f"p{i}.nft").write_text(script)
        run(netns, "nft", "-f", str(tmp_path / f"p{i}.nft"))
    listed = run(netns, "nft", "list", "table", "ip", "kube-proxy")
    assert "ns1/svc1" not in listed and "ns2/svc2" in listed
