"""Other BGP fabrics on the real kernel: Calico's full node-to-node mesh, and racks with an AS each
(nodes share their ToR's AS, ToRs peer eBGP with a spine), where cross-rack pod traffic is routed
through the ToRs. One small lab per fabric, no kube-proxy or DNS (only routing is under test)."""

from __future__ import annotations

import json
import time

import pytest

from tests.lab.conftest import run, running_lab, sh

HEAD = """\
apiVersion: podnet.dev/v1alpha1
kind: Cluster
metadata:
  name: fabric
networking: {backend: bgp, kubeProxyMode: none, clusterDNS: false}
"""

MESH = HEAD + """\
nodes:
  - {name: node1, ip: 192.168.1.10}
  - {name: node2, ip: 192.168.1.11}
  - {name: node3, ip: 192.168.1.12}
"""

RACKS = HEAD.replace("clusterDNS: false}", "clusterDNS: false, mtu: 9000}") + """\
bgp:
  asPerRack: true
  networks: [{name: spine, subnet: 10.255.0.0/24}]
nodes:
  - {name: node1, ip: 192.168.1.10, labels: {rack: r1}}
  - {name: node2, ip: 192.168.1.11, labels: {rack: r2}}
routers:
  - {name: tor1, asNumber: 65001, ips: [192.168.1.1, 10.255.0.1], nodeSelector: {rack: r1}}
  - {name: tor2, asNumber: 65002, ips: [192.168.1.2, 10.255.0.2], nodeSelector: {rack: r2}}
  - {name: spine1, role: core, asNumber: 65000, ip: 10.255.0.3}
"""


def pods(nodes: list[str]) -> str:
    return "".join(f"""---
apiVersion: v1
kind: Pod
metadata: {{name: web-{n}}}
spec:
  nodeName: {n}
  containers: [{{name: web, ports: [{{containerPort: 8080}}]}}]
""" for n in nodes)


def wait_established(lab, total: int, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        p = run("bgp", "status", "--lab", lab.name, "-o", "json", check=False)
        doc = json.loads(p.stdout)
        if p.returncode == 0 or time.monotonic() > deadline:
            assert doc["sessions"] == {"established": total, "total": total}, doc
            return doc
        time.sleep(0.3)


def curl_web(lab, src: str, dst_ip: str) -> list[str]:
    return lab.exec(src, "curl", "-s", "--max-time", "5", f"http://{dst_ip}:8080/").stdout.split("\n")


@pytest.fixture
def lab_of(tmp_path):
    def make(text: str):
        path = tmp_path / "fabric.yaml"
        path.write_text(text)
        return running_lab(tmp_path, str(path))
    return make


def test_full_node_to_node_mesh(lab_of):
    with lab_of(MESH + pods(["node1", "node2", "node3"])) as lab:
        doc = wait_established(lab, 6)
        node1 = next(s for s in doc["speakers"] if s["name"] == "node1")
        assert {(p["name"], p["type"]) for p in node1["peers"]} == {("node2", "node-to-node mesh"),
                                                                     ("node3", "node-to-node mesh")}
        table = lab.node("node1", "ip", "route").stdout
        assert "10.244.2.0/24 via 192.168.1.11 dev eth0 proto bird" in table
        assert "10.244.3.0/24 via 192.168.1.12 dev eth0 proto bird" in table
        ip3 = lab.get_json("pods")["items"]
        by = {p["metadata"]["name"]: p["status"]["podIP"] for p in ip3}
        assert curl_web(lab, "web-node1", by["web-node3"])[:3] == ["web-node3", by["web-node3"], by["web-node1"]]
        out = run("exec", "--lab", lab.name, "--node", "node2", "--", "birdc", "show", "protocols").stdout
        assert "Mesh_192_168_1_10" in out and "Mesh_192_168_1_12" in out


def test_as_per_rack_through_the_spine(lab_of):
    with lab_of(RACKS + pods(["node1", "node2"])) as lab:
        doc = wait_established(lab, 8)   # node-tor x2 (both sides), tor-spine x2 (both sides)
        spine = next(s for s in doc["speakers"] if s["name"] == "spine1")
        assert {(p["name"], p["asNumber"]) for p in spine["peers"]} == {("tor1", 65001), ("tor2", 65002)}
        assert next(s for s in doc["speakers"] if s["name"] == "node2")["asNumber"] == 65002
        # node1 reaches rack 2's pods through its ToR (next hop self on routes from other racks)
        assert "10.244.2.0/24 via 192.168.1.1 dev eth0 proto bird" in lab.node("node1", "ip", "route").stdout
        assert "10.244.1.0/24 via 10.255.0.1 dev eth0 proto bird" in lab.node("spine1", "ip", "route").stdout
        by = {p["metadata"]["name"]: p["status"]["podIP"] for p in lab.get_json("pods")["items"]}
        assert curl_web(lab, "web-node1", by["web-node2"])[:3] == ["web-node2", by["web-node2"], by["web-node1"]]
        assert "via 192.168.1.1 dev eth0" in lab.node("node1", "ip", "route", "get", by["web-node2"]).stdout
        # nothing is encapsulated: the pod MTU is the underlay's, and a full-size packet crosses unfragmented
        assert lab.exec("web-node1", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "9000"
        out = lab.exec("web-node1", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "8972", by["web-node2"]).stdout
        assert "1 received" in out, out


def test_an_invalid_fabric_is_one_line_and_builds_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(RACKS.replace("labels: {rack: r2}", "labels: {rack: r9}").replace("name: fabric", "name: tbad1"))
    p = run("up", str(bad), check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert "nodes[1].labels: node node2 (rack=r9) is served by no router" in p.stderr
    assert p.stderr.startswith(f"error: {bad}:")
    assert not [n for n in sh("ip", "netns", "list").stdout.splitlines() if n.startswith("pn-tbad1-")]
