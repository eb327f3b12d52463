"""The seed lab on the real kernel: connectivity, encapsulation, MTU, names, node tooling."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.lab.conftest import run, sh


def curl(lab, pod: str, url: str) -> list[str]:
    return lab.exec(pod, "curl", "-s", "--max-time", "5", url).stdout.split("\n")


@pytest.mark.parametrize("example, pod_mtu", [("seed-vxlan.yaml", "1450"), ("seed-hostgw.yaml", "1500")])
def test_same_and_cross_node_traffic(make_lab, example, pod_mtu):
    lab = make_lab(example)
    # cross node: pod-a (node1) -> pod-b (node2); the built-in server reports who it saw
    assert curl(lab, "pod-a", "http://10.244.2.8:8080/")[:3] == ["pod-b", "10.244.2.8", "10.244.1.5"]
    # same node: pod-b -> pod-c, both on node2, through cni0
    assert curl(lab, "pod-b", "http://10.244.2.9:8080/")[:3] == ["pod-c", "10.244.2.9", "10.244.2.8"]
    assert "1 received" in lab.exec("pod-a", "ping", "-c", "1", "-W", "2", "10.244.2.9").stdout
    assert "1 received" in lab.exec("pod-b", "ping", "-c", "1", "-W", "2", "10.244.2.9").stdout
    # node -> remote pod, pod -> its gateway
    assert lab.node("node1", "curl", "-s", "--max-time", "5", "http://10.244.2.8:8080/").stdout.startswith("pod-b")
    assert "1 received" in lab.exec("pod-a", "ping", "-c", "1", "-W", "2", "10.244.1.1").stdout
    # MTU: pod and cni0 at underlay - 50 on VXLAN, underlay MTU on host-gw
    assert lab.exec("pod-a", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == pod_mtu
    assert lab.node("node1", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1500"
    assert lab.node("node1", "cat", "/sys/class/net/cni0/mtu").stdout.strip() == pod_mtu
    # a full-size packet from the pod crosses the overlay without fragmentation (DF set)
    size = str(int(pod_mtu) - 28)
    out = lab.exec("pod-a", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", size, "10.244.2.8", check=False).stdout
    assert "1 received" in out, out


def capture_underlay(lab, bpf: str, traffic) -> str:
    """tcpdump on the underlay switch's port toward node1 while ``traffic`` runs."""
    port = "u-node1"
    p = subprocess.Popen(["ip", "netns", "exec", lab.ns("underlay"), "tcpdump", "-lnni", port, "-c", "2", bpf],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        traffic()
        out, _ = p.communicate(timeout=10)
    finally:
        p.kill()
    return out


def test_vxlan_on_the_underlay(make_lab):
    lab = make_lab("seed-vxlan.yaml")
    out = capture_underlay(lab, "udp port 8472",
                           lambda: lab.exec("pod-a", "ping", "-c", "2", "-W", "2", "10.244.2.8"))
    assert "192.168.1.10" in out and "192.168.1.11.8472" in out, out
    d = lab.node("node1", "ip", "-d", "link", "show", "flannel.1").stdout
    assert "vxlan id 1 " in d and "dstport 8472" in d and "nolearning" in d and "mtu 1450" in d
    assert "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in lab.node("node1", "ip", "route").stdout
    fdb = lab.node("node1", "bridge", "fdb", "show", "dev", "flannel.1").stdout
    assert "dst 192.168.1.11" in fdb and "permanent" in fdb
    assert "PERMANENT" in lab.node("node1", "ip", "neigh", "show", "dev", "flannel.1").stdout


def test_host_gw_is_plain_ip_on_the_underlay(make_lab):
    lab = make_lab("seed-hostgw.yaml")
    out = capture_underlay(lab, "icmp and host 10.244.2.8",
                           lambda: lab.exec("pod-a", "ping", "-c", "2", "-W", "2", "10.244.2.8"))
    assert "10.244.1.5 > 10.244.2.8: ICMP echo request" in out, out
    assert "10.244.2.0/24 via 192.168.1.11 dev eth0" in lab.node("node1", "ip", "route").stdout
    assert "flannel.1" not in lab.node("node1", "ip", "link").stdout


def test_names_and_node_tools(make_lab):
    lab = make_lab()
    dns = {n for n in lab.namespaces() if n.startswith(lab.ns("kube-system-coredns-"))}
    assert len(dns) == 2   # the cluster DNS replicas
    assert set(lab.namespaces()) - dns == {lab.ns(s) for s in ("underlay", "node1", "node2", "default-pod-a",
                                                                "default-pod-b", "default-pod-c")}
    veths = lab.node("node2", "ip", "-o", "link", "show", "type", "veth").stdout
    assert veths.count(" veth") == 3 and "master cni0" in veths   # pod-b, pod-c, a coredns replica
    brctl = lab.node("node2", "brctl", "show", "cni0").stdout
    assert brctl.count("veth") == 3
    assert "hairpin on" in lab.node("node2", "bridge", "-d", "link", "show").stdout
    assert '"type": "flannel"' in lab.node("node1", "sh", "-c", "cat /etc/cni/net.d/*").stdout
    assert lab.node("node1", "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    pods = lab.get_json("pods", "-A")["items"]
    by_name = {p["metadata"]["name"]: p for p in pods}
    assert by_name["pod-a"]["status"]["podIP"] == "10.244.1.5"
    assert by_name["pod-a"]["status"]["hostIP"] == "192.168.1.10"
    assert by_name["pod-b"]["spec"]["nodeName"] == "node2"
    assert by_name["kube-flannel-node1"]["metadata"]["namespace"] == "kube-system"
    assert all(c["ready"] for p in pods for c in p["status"]["containerStatuses"])
    logs = run("logs", "kube-flannel-node1", "-n", "kube-system", "--lab", lab.name).stdout
    assert "Using backend type vxlan" in logs
    out = run("exec", "--lab", lab.name, "pod-a", "--", "cat", "/sys/class/net/eth0/mtu").stdout
    assert out.strip() == "1450"


def test_up_is_idempotent_and_converges(make_lab):
    lab = make_lab()
    out = lab.up().stdout
    assert "0 namespaces created, 0 processes started" in out, out
    # a dead pod server is restarted by the next up
    pid = sh("ip", "netns", "pids", lab.ns("default-pod-b")).stdout.split()[0]
    sh("kill", "-9", pid)
    time.sleep(0.3)
    status = run("status", "--lab", lab.name, check=False)
    assert status.returncode == 1 and "2/3 running" in status.stdout
    assert "1 processes started" in lab.up().stdout
    assert curl(lab, "pod-a", "http://10.244.2.8:8080/")[0] == "pod-b"


def test_flannel_agent_restores_a_deleted_route(make_lab):
    lab = make_lab()
    lab.node("node1", "ip", "route", "del", "10.244.2.0/24")
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        if "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in lab.node("node1", "ip", "route").stdout:
            break
        time.sleep(0.2)
    else:
        pytest.fail("kube-flannel did not restore the route")
    assert curl(lab, "pod-a", "http://10.244.2.8:8080/")[0] == "pod-b"
