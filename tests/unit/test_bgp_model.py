"""The BGP fabric of a bgp-backend Cluster: peering plan, AS numbers, and one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from podnet.errors import PodnetError
from podnet.model.bgp import MESH, NODE_SPECIFIC, TYPE_RR_CLIENT, protocol_name
from podnet.model.lab import resolve
from podnet.model.manifest import parse_docs
from podnet.model.source import load_files, load_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed-bgp.yaml"

BASE = """\
apiVersion: podnet.dev/v1alpha1
kind: Cluster
metadata: {name: t}
networking: {backend: bgp}
"""


def lab_of(text: str):
    return resolve(parse_docs(load_text(text, "lab.yaml")))


def error_of(text: str) -> str:
    with pytest.raises(PodnetError) as e:
        lab_of(text)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def two_racks(extra: str = "", bgp: str = "asPerRack: true") -> str:
    return BASE + f"""\
bgp:
  {bgp}
  networks: [{{name: fabric, subnet: 10.255.0.0/24}}]
nodes:
  - {{name: node1, ip: 192.168.1.10, labels: {{rack: r1}}}}
  - {{name: node2, ip: 192.168.1.11, labels: {{rack: r2}}}}
routers:
  - {{name: tor1, asNumber: 65001, ips: [192.168.1.1, 10.255.0.1], nodeSelector: {{rack: r1}}}}
  - {{name: tor2, asNumber: 65002, ips: [192.168.1.2, 10.255.0.2], nodeSelector: {{rack: r2}}}}
  - {{name: spine, role: core, asNumber: 65000, ip: 10.255.0.3}}
{extra}"""


def test_example_peering_plan():
    lab = resolve(parse_docs(load_files([str(EXAMPLE)])))
    fab = lab.cluster.bgp
    assert fab is not None and not fab.mesh
    assert fab.speakers() == ["node1", "node2", "tor1", "core1"]
    [s] = fab.sessions("node1")
    assert (s.peer, str(s.peer_ip), s.peer_asn, s.peer_type, s.protocol) == (
        "tor1", "192.168.1.1", 64512, NODE_SPECIFIC, "Node_192_168_1_1")
    assert not s.ebgp and not s.allow_local_as
    tor = {s.peer: s for s in fab.sessions("tor1")}
    assert set(tor) == {"node1", "node2", "core1"}
    assert tor["node1"].rr_client and tor["node1"].peer_type == TYPE_RR_CLIENT
    assert not tor["core1"].rr_client and tor["core1"].ebgp and str(tor["core1"].local_ip) == "10.255.0.1"
    assert [s.peer for s in fab.sessions("core1")] == ["tor1"]
    assert len(fab.all_sessions()) == 6
    # the ToR owns the underlay gateway address: nodes route through it, the client through the core
    assert fab.gateway_router() == "tor1" and str(fab.node_gateway("node1")) == "192.168.1.1"
    assert str(fab.hosts["client"].gateway) == "10.10.0.1" and fab.hosts["client"].network.name == "corp"
    # the routers are namespaces of the lab, pods get cali veths, calico-node runs on every node
    assert "pn-seed-bgp-tor1" in lab.all_netns() and "pn-seed-bgp-core1" in lab.all_netns()
    assert all(re.fullmatch(r"cali[0-9a-f]{11}", p.host_veth) for p in lab.pods if not p.host_network)
    assert {p.name for p in lab.pods if p.component == "calico"} == {"calico-node-node1", "calico-node-node2"}
    assert not any(p.component == "flannel" for p in lab.pods)


def test_full_mesh_without_routers_and_mesh_off():
    nodes = "nodes:\n" + "".join(f"  - {{name: n{i}, ip: 192.168.1.1{i}}}\n" for i in range(3))
    fab = lab_of(BASE + nodes).cluster.bgp
    assert fab.mesh and fab.node_asns == {"n0": 64512, "n1": 64512, "n2": 64512}
    sessions = fab.sessions("n0")
    assert [(s.peer, s.peer_type, s.protocol) for s in sessions] == [
        ("n1", MESH, "Mesh_192_168_1_11"), ("n2", MESH, "Mesh_192_168_1_12")]
    assert len(fab.all_sessions()) == 6   # each side of the 3 sessions
    off = lab_of(BASE + "bgp: {nodeToNodeMesh: false, asNumber: 65123}\n" + nodes).cluster.bgp
    assert not off.mesh and off.sessions("n0") == [] and off.node_asns["n1"] == 65123


def test_as_per_rack_and_ebgp_to_the_spine():
    fab = lab_of(two_racks()).cluster.bgp
    assert fab.node_asns == {"node1": 65001, "node2": 65002}
    [n1] = fab.sessions("node1")
    assert n1.peer == "tor1" and not n1.ebgp
    assert [(s.peer, s.ebgp) for s in fab.sessions("tor1")] == [("node1", False), ("spine", True)]
    assert sorted(s.peer for s in fab.sessions("spine")) == ["tor1", "tor2"]
    # one shared node AS instead: eBGP to the ToRs, nodes accept paths holding their own AS
    shared = lab_of(two_racks(bgp="asNumber: 64512")).cluster.bgp
    [n1] = shared.sessions("node1")
    assert n1.ebgp and n1.allow_local_as


def test_tors_without_core_peer_with_each_other():
    text = two_racks().replace("  - {name: spine, role: core, asNumber: 65000, ip: 10.255.0.3}\n", "")
    fab = lab_of(text).cluster.bgp
    assert [s.peer for s in fab.sessions("tor1")] == ["node1", "tor2"]


def test_protocol_names_are_bird_symbols():
    assert protocol_name("node-1") == "node_1"
    assert protocol_name("1node") == "peer_1node"
    assert protocol_name("kernel") == "peer_kernel"


@pytest.mark.parametrize("edit, field, words", [
    (("asNumber: 65002", "asNumber: 65001"), "routers[1].asNumber", "duplicate AS 65001"),
    (("ips: [192.168.1.2, 10.255.0.2]", "ips: [192.168.1.11, 10.255.0.2]"), "routers[1].ips[0]",
     "duplicate IP 192.168.1.11 (already used by node node2)"),
    (("ip: 10.255.0.3}", "ip: 10.9.9.3}"), "routers[2].ip", "10.9.9.3 is on no subnet"),
    (("labels: {rack: r2}", "labels: {rack: r9}"), "nodes[1].labels", "node node2 (rack=r9) is served by no router"),
    (("role: core, asNumber: 65000", "role: core, asNumber: 65001"), "routers[2].asNumber", "duplicate AS"),
    (("role: core", "role: spine"), "routers[2].role", "unknown role 'spine'"),
    (("ips: [192.168.1.2, 10.255.0.2]", "ips: [10.255.0.2]"), "routers[1].ips",
     "ToR tor2 has no address on the node network"),
    (("ip: 10.255.0.3}", "ip: 10.255.0.3, nodeSelector: {rack: r1}}"), "routers[2].nodeSelector",
     "only a tor router serves nodes"),
    (("networks: [{name: fabric, subnet: 10.255.0.0/24}]", "networks: [{name: fabric, subnet: 10.244.0.0/24}]"),
     "bgp.networks[0].subnet", "overlaps podSubnet"),
])
def test_invalid_fabrics_are_one_line_errors(edit, field, words):
    text = two_racks()
    assert edit[0] in text
    msg = error_of(text.replace(edit[0], edit[1], 1))
    assert msg.startswith("lab.yaml:") and "Cluster t" in msg and field in msg and words in msg, msg


def test_more_invalid_fabrics():
    # a core whose AS is the nodes' own AS would drop their routes
    msg = error_of(two_racks(bgp="asNumber: 65000"))
    assert "routers[2].asNumber" in msg and "also the nodes' AS" in msg
    # an external host on a network no router is on
    text = two_racks().replace("networks: [{name: fabric, subnet: 10.255.0.0/24}]",
                               "networks: [{name: fabric, subnet: 10.255.0.0/24}, {name: corp, subnet: 10.10.0.0/24}]")
    msg = error_of(text + "externalHosts: [{name: client, ip: 10.10.0.100}]\n")
    assert "externalHosts[0].ip" in msg and "no router is" in msg
    # a ToR serving nobody, routers on another backend
    msg = error_of(two_racks("  - {name: tor3, asNumber: 65003, ip: 192.168.1.3, nodeSelector: {rack: r3}}\n"))
    assert "routers[3].nodeSelector" in msg and "ToR tor3 serves no node" in msg
    msg = error_of(two_racks().replace("backend: bgp", "backend: vxlan"))
    assert "routers need networking.backend: bgp" in msg
    # a host whose name takes a router's extra underlay port (u-tor1-eth1)
    msg = error_of(two_racks() + "externalHosts: [{name: tor1-eth1, ip: 192.168.1.100}]\n")
    assert "externalHosts[0].name" in msg and "duplicate name 'tor1-eth1'" in msg, msg
    # a name shared by a router and a node
    msg = error_of(two_racks().replace("name: tor2", "name: node1"))
    assert "routers[1].name" in msg and "duplicate name 'node1'" in msg
