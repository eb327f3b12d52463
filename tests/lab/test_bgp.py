"""Backend bgp on the real kernel: examples/seed-bgp.yaml (the second article's design).

node1 and node2 peer (iBGP) with the ToR tor1, their route reflector; tor1 peers (eBGP) with core1, behind
which the external host `client` sits on the corporate network. One lab for the module; the tests that
break something repair it before they end.
"""

from __future__ import annotations

import collections
import functools
import json
import shutil
import subprocess
import time

import pytest

from tests.lab.conftest import run, running_lab, sh
from tests.lab.conftest import wait_for as conftest_wait_for

POD_CIDRS = {"node1": "10.244.1.0/24", "node2": "10.244.2.0/24"}
NODE_IPS = {"node1": "192.168.1.10", "node2": "192.168.1.11"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("bgp"), "seed-bgp.yaml") as lab:
        yield lab


wait_for = functools.partial(conftest_wait_for, timeout=15.0)


def bgp_status(lab, *args: str) -> tuple[int, dict]:
    p = run("bgp", "status", "--lab", lab.name, "-o", "json", *args, check=False)
    return p.returncode, json.loads(p.stdout)


def routes(lab, host: str) -> str:
    return lab.node(host, "ip", "route").stdout


def reason(doc: dict, speaker: str, peer: str) -> str:
    sp = next(s for s in doc["speakers"] if s["name"] == speaker)
    return next(p for p in sp["peers"] if p["name"] == peer)["reason"] or ""


def established(lab) -> bool:
    code, doc = bgp_status(lab)
    return code == 0 and doc["established"]


def test_sessions_and_routes_everywhere(lab):
    code, doc = bgp_status(lab)
    assert code == 0 and doc["established"] and doc["sessions"] == {"established": 6, "total": 6}, doc
    by = {sp["name"]: sp for sp in doc["speakers"]}
    assert [(p["name"], p["type"], p["info"]) for p in by["node1"]["peers"]] == [
        ("tor1", "node specific", "Established")]
    # every node's pod CIDR is in every router's and every other node's kernel, put there by BIRD
    for host in ("node1", "node2", "tor1", "core1"):
        table = routes(lab, host)
        for node, cidr in POD_CIDRS.items():
            if node == host:
                assert f"blackhole {cidr} proto bird" in table, table   # the node's own aggregate
            else:
                assert cidr in table and "proto bird" in table.split(cidr, 1)[1].split("\n", 1)[0], table
    assert f"{POD_CIDRS['node2']} via {NODE_IPS['node2']} dev eth0 proto bird" in routes(lab, "node1")
    assert f"{POD_CIDRS['node1']} via 10.255.0.1 dev eth0 proto bird" in routes(lab, "core1")
    # what a network engineer types on the ToR
    out = run("exec", "--lab", lab.name, "--node", "tor1", "--", "birdc", "show", "route").stdout
    assert "10.244.1.0/24" in out and "via 192.168.1.10 on eth0" in out and "[node1 " in out, out
    out = run("bgp", "status", "--lab", lab.name, "tor1").stdout
    assert "| PEER ADDRESS |" in out and "| node2 | 192.168.1.11 | node (rr client) | up" in out, out


def test_routed_pod_wiring(lab):
    assert lab.exec("pod-a", "ip", "-o", "addr", "show", "eth0").stdout.count("10.244.1.5/32") == 1
    pod_routes = lab.exec("pod-a", "ip", "route").stdout
    assert "default via 169.254.1.1 dev eth0" in pod_routes and "169.254.1.1 dev eth0 scope link" in pod_routes
    assert lab.exec("pod-a", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1500"
    # the host side answers ARP for 169.254.1.1 by proxy with Calico's MAC
    lab.exec("pod-a", "ping", "-c", "1", "-W", "2", "10.244.2.8")
    assert "lladdr ee:ee:ee:ee:ee:ee" in lab.exec("pod-a", "ip", "neigh", "show", "169.254.1.1").stdout
    veths = lab.node("node1", "ip", "-o", "link", "show", "type", "veth").stdout
    assert " cali" in veths and "master" not in veths.split("eth0")[-1]
    node_routes = routes(lab, "node1")
    assert "10.244.1.5 dev cali" in node_routes and "scope link" in node_routes
    assert "cni0" not in lab.node("node1", "ip", "link").stdout
    assert '"type": "calico"' in lab.node("node1", "sh", "-c", "cat /etc/cni/net.d/*").stdout
    logs = run("logs", "calico-node-node1", "-n", "kube-system", "--lab", lab.name).stdout
    assert "Started BIRD" in logs and "Calico node started successfully" in logs
    # calico-node keeps the workload routes, as felix does
    lab.node("node1", "ip", "route", "del", "10.244.1.5/32")
    wait_for(lambda: "10.244.1.5 dev cali" in routes(lab, "node1"), timeout=6)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_cross_node_pod_traffic_is_plain_ip_on_the_underlay(lab):
    p = subprocess.Popen(["ip", "netns", "exec", lab.ns("underlay"), "tcpdump", "-lnni", "u-node1", "-c", "2",
                          "host 10.244.2.8 or udp port 8472 or udp port 4789"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        lab.exec("pod-a", "ping", "-c", "2", "-W", "2", "10.244.2.8")
        out, _ = p.communicate(timeout=10)
    finally:
        p.kill()
    assert "10.244.1.5 > 10.244.2.8: ICMP echo request" in out, out
    assert "8472" not in out and "4789" not in out and "VXLAN" not in out
    lines = lab.exec("pod-a", "curl", "-s", "--max-time", "5", "http://10.244.2.8:8080/").stdout.split("\n")
    assert lines[:3] == ["pod-b", "10.244.2.8", "10.244.1.5"]


def replicas_answering(lab, url: str, n: int = 20) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    for _ in range(n):
        out = lab.node("client", "curl", "-s", "--max-time", "3", url, check=False).stdout
        seen[out.split("\n", 1)[0]] += 1
    return seen


def test_services_from_the_corporate_network(lab):
    nat = lab.node("node1", "iptables-save", "-t", "nat", check=False).stdout
    if "KUBE-SVC" not in nat:
        pytest.fail("kube-proxy rules are not in the lab (no KUBE-SVC chain in node1's nat table)")
    pods = lab.get_json("pods")["items"]
    nginx = {p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("nginx-demo-1-")}
    assert len(nginx) == 2
    svc = {s["metadata"]["name"]: s for s in lab.get_json("services")["items"]}
    assert svc["nginx-demo-1"]["spec"]["externalIPs"] == [NODE_IPS["node1"]]
    node_port = svc["nginx-demo-2"]["spec"]["ports"][0]["nodePort"]
    # the client is behind core1: its packets reach the nodes through core1 and tor1, by BGP routes
    assert "10.10.0.0/24 via 10.255.0.2 dev eth1 proto bird" in routes(lab, "tor1")
    seen = replicas_answering(lab, f"http://{NODE_IPS['node1']}:8088/")
    assert set(seen) == nginx, seen
    out = run("exec", "--lab", lab.name, "--node", "client", "--", "curl", "-s", "--max-time", "3",
              f"http://{NODE_IPS['node1']}:8088/").stdout.split("\n")
    assert out[0] in nginx and out[2] == NODE_IPS["node1"]   # masqueraded to the node, as kube-proxy does
    for ip in NODE_IPS.values():
        seen = replicas_answering(lab, f"http://{ip}:{node_port}/")
        assert set(seen) == nginx, (ip, seen)
    # the first article's my-service, from pod-a, to pod-b and pod-c on the other node
    answered = collections.Counter(
        lab.exec("pod-a", "curl", "-s", "--max-time", "3", "http://10.96.45.67:8080/").stdout.split("\n", 1)[0]
        for _ in range(16))
    assert set(answered) == {"pod-b", "pod-c"}, answered


def test_stopping_a_nodes_bird_withdraws_its_routes_and_up_restarts_it(lab):
    run("exec", "--lab", lab.name, "--node", "node2", "--", "birdc", "down")
    cidr = POD_CIDRS["node2"]
    wait_for(lambda: all(cidr not in routes(lab, h) for h in ("node1", "tor1", "core1")), timeout=10)
    code, doc = bgp_status(lab)
    assert code == 1 and not doc["established"]
    node2 = next(s for s in doc["speakers"] if s["name"] == "node2")
    assert not node2["bird"]["running"] and "calico-node-node2" in node2["reason"], node2
    assert reason(doc, "tor1", "node2").startswith("peer node2's BIRD is not running"), doc
    status = run("status", "--lab", lab.name, check=False)
    assert status.returncode == 1 and "calico=DOWN" in status.stdout
    # `up` restarts calico-node, which starts BIRD: sessions and routes come back within seconds
    t0 = time.monotonic()
    lab.up()
    wait_for(lambda: cidr in routes(lab, "node1") and cidr in routes(lab, "core1"), timeout=10)
    assert time.monotonic() - t0 < 10
    wait_for(lambda: established(lab), timeout=10)
    assert lab.exec("pod-a", "curl", "-s", "--max-time", "5", "http://10.244.2.8:8080/").stdout.startswith("pod-b")


def test_reasons_tcp_179_blocked_unreachable_and_as_mismatch(lab):
    ctl = f"/run/podnet/{lab.name}/bird/node2.ctl"
    drop = [["iptables", "-I", "INPUT", "-p", "tcp", "--dport", "179", "-j", "DROP"],
            ["iptables", "-I", "INPUT", "-p", "tcp", "--sport", "179", "-j", "DROP"]]
    for rule in drop:
        lab.node("node2", *rule)
    try:
        sh("birdc", "-s", ctl, "restart", "Node_192_168_1_1")
        wait_for(lambda: "TCP 179 blocked in" in reason(bgp_status(lab)[1], "tor1", "node2"), timeout=10)
        doc = bgp_status(lab)[1]
        assert "--dport 179 -j DROP" in reason(doc, "node2", "tor1") or "--sport 179" in reason(doc, "node2", "tor1")
    finally:
        for rule in drop:
            lab.node("node2", *["-D" if a == "-I" else a for a in rule])
    wait_for(lambda: established(lab), timeout=15)
    # node2's cable is pulled: the switch port toward it goes down
    sh("ip", "netns", "exec", lab.ns("underlay"), "ip", "link", "set", "u-node2", "down")
    try:
        wait_for(lambda: "is unreachable" in reason(bgp_status(lab)[1], "node2", "tor1"), timeout=10)
    finally:
        sh("ip", "netns", "exec", lab.ns("underlay"), "ip", "link", "set", "u-node2", "up")
    wait_for(lambda: established(lab), timeout=20)
    # node2's BIRD speaks the wrong AS (an edited configuration)
    conf = f"/run/podnet/{lab.name}/bird/node2.conf"
    with open(conf) as f:
        good = f.read()
    try:
        with open(conf, "w") as f:
            f.write(good.replace("local 192.168.1.11 as 64512;", "local 192.168.1.11 as 64999;"))
        sh("birdc", "-s", ctl, "configure")
        wait_for(lambda: "AS mismatch" in reason(bgp_status(lab)[1], "tor1", "node2"), timeout=10)
        assert reason(bgp_status(lab)[1], "tor1", "node2") == (
            "AS mismatch: tor1 expects AS 64512 for node2, but node2 speaks AS 64999")
    finally:
        with open(conf, "w") as f:
            f.write(good)
        sh("birdc", "-s", ctl, "configure")
    wait_for(lambda: established(lab), timeout=15)
