"""Routed wiring (compile/calico.py) and the BIRD configurations (compile/bird.py) of a bgp lab."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from podnet.compile import bird, fabric
from podnet.model.lab import resolve
from podnet.model.manifest import parse_docs
from podnet.model.source import load_files, load_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def lab():
    return resolve(parse_docs(load_files([str(EXAMPLES / "seed-bgp.yaml")])))


@pytest.fixture(scope="module")
def specs(lab):
    return {s.name: s for s in fabric.compile_lab(lab)}


def test_node_is_routed_not_bridged(lab, specs):
    node = specs["pn-seed-bgp-node1"]
    kinds = {link.name: link.kind for link in node.links}
    assert "cni0" not in kinds and "flannel.1" not in kinds
    pod_a = lab.pod("default", "pod-a")
    veth = next(link for link in node.links if link.name == pod_a.host_veth)
    assert veth.kind == "veth" and veth.master is None and veth.mac == "ee:ee:ee:ee:ee:ee" and veth.mtu == 1500
    assert veth.peer.netns == pod_a.netns and veth.peer.name == "eth0" and veth.peer.mtu == 1500
    routes = {(r.dst, r.via, r.dev) for r in node.routes}
    assert ("10.244.1.5/32", None, pod_a.host_veth) in routes
    assert ("default", "192.168.1.1", "eth0") in routes          # through the ToR
    assert not any(r.dst.startswith("10.244.2.") for r in node.routes)   # learned by BGP, not compiled
    assert node.sysctls[f"net.ipv4.conf.{pod_a.host_veth}.proxy_arp"] == "1"
    assert node.sysctls[f"net.ipv4.neigh.{pod_a.host_veth}.proxy_delay"] == "0"
    assert node.sysctls["net.ipv4.ip_forward"] == "1"
    conf = json.loads(node.files["cni/net.d/10-calico.conflist"])
    assert conf["plugins"][0]["type"] == "calico" and conf["plugins"][0]["ipam"]["subnet"] == "usePodCidr"


def test_pod_has_a_slash_32_and_the_link_local_gateway(lab, specs):
    pod = specs[lab.pod("default", "pod-b").netns]
    assert [(a.dev, a.ip, a.prefixlen) for a in pod.addrs] == [("eth0", "10.244.2.8", 32)]
    assert [(r.dst, r.via, r.dev) for r in pod.routes] == [("169.254.1.1/32", None, "eth0"),
                                                           ("default", "169.254.1.1", "eth0")]
    assert pod.links[0].mtu == 1500 and "resolv.conf" in pod.files


def test_switch_room_routers_and_hosts(specs):
    under = specs["pn-seed-bgp-underlay"]
    bridges = [link.name for link in under.links if link.kind == "bridge"]
    assert bridges == ["br0", "br1", "br2"]
    assert under.addrs == []        # tor1 owns the gateway address 192.168.1.1
    ports = {link.name: (link.master, link.peer.netns, link.peer.name) for link in under.links if link.kind == "veth"}
    assert ports["u-node1"] == ("br0", "pn-seed-bgp-node1", "eth0")
    assert ports["u-tor1"] == ("br0", "pn-seed-bgp-tor1", "eth0")
    assert ports["u-tor1-eth1"] == ("br1", "pn-seed-bgp-tor1", "eth1")
    assert ports["u-core1-eth1"] == ("br2", "pn-seed-bgp-core1", "eth1")
    assert ports["u-client"] == ("br2", "pn-seed-bgp-client", "eth0")
    tor = specs["pn-seed-bgp-tor1"]
    assert tor.role == "router" and [(a.dev, a.ip, a.prefixlen) for a in tor.addrs] == [
        ("eth0", "192.168.1.1", 24), ("eth1", "10.255.0.1", 24)]
    assert tor.sysctls["net.ipv4.ip_forward"] == "1" and tor.routes == []   # BIRD brings the routes
    client = specs["pn-seed-bgp-client"]
    assert [(r.dst, r.via) for r in client.routes] == [("default", "10.10.0.1")]


def test_other_backends_are_unchanged():
    text = """\
apiVersion: podnet.dev/v1alpha1
kind: Cluster
metadata: {name: t}
networking: {backend: host-gw}
nodes: [{name: node1, ip: 192.168.1.10}, {name: node2, ip: 192.168.1.11}]
externalHosts: [{name: client, ip: 192.168.1.100}]
"""
    lab = resolve(parse_docs(load_text(text, "lab.yaml")))
    assert lab.cluster.bgp is None and lab.cluster.routers == []
    specs = {s.name: s for s in fabric.compile_lab(lab)}
    assert "cni0" in {link.name for link in specs["pn-t-node1"].links}
    assert [a.ip for a in specs["pn-t-underlay"].addrs] == ["192.168.1.1"]


def test_node_bird_config(lab):
    text = bird.node_config(lab, "node1")
    assert "router id 192.168.1.10;" in text
    assert "route 10.244.1.0/24 blackhole;" in text
    assert "define POD_SUBNET = [ 10.244.0.0/16+ ];" in text
    assert "protocol bgp Node_192_168_1_1 from bgp_template {" in text
    assert "  local 192.168.1.10 as 64512;\n  neighbor 192.168.1.1 as 64512;" in text
    assert "connect delay time 1" in text and "rr client" not in text
    assert "Mesh_" not in text


def test_router_bird_configs(lab):
    tor = bird.config_for(lab, "tor1")
    assert "protocol bgp node1 from nodes {" in tor and "protocol bgp core1 from fabric {" in tor
    node1 = tor[tor.index("protocol bgp node1"):tor.index("}", tor.index("protocol bgp node1"))]
    core1 = tor[tor.index("protocol bgp core1"):tor.index("}", tor.index("protocol bgp core1"))]
    assert "rr client" in node1 and "rr client" not in core1
    assert "local 10.255.0.1 as 64512;" in core1 and "neighbor 10.255.0.2 as 65000;" in core1
    core = bird.config_for(lab, "core1")
    assert "protocol bgp tor1 from fabric {" in core and 'protocol direct { ipv4; interface "eth*"; }' in core


def test_mesh_config_names_its_sessions_as_calico():
    text = """\
apiVersion: podnet.dev/v1alpha1
kind: Cluster
metadata: {name: t}
networking: {backend: bgp}
nodes: [{name: node1, ip: 192.168.1.10}, {name: node2, ip: 192.168.1.11}]
"""
    lab = resolve(parse_docs(load_text(text, "lab.yaml")))
    conf = bird.node_config(lab, "node2")
    assert "protocol bgp Mesh_192_168_1_10 from bgp_template {" in conf and "Node_" not in conf


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed (Debian package bird2)")
def test_bird_accepts_every_config(lab, tmp_path):
    for speaker in lab.cluster.bgp.speakers():
        f = tmp_path / f"{speaker}.conf"
        f.write_text(bird.config_for(lab, speaker))
        r = subprocess.run(["bird", "-p", "-c", str(f)], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, f"{speaker}: {r.stderr}"
