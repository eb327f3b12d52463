"""Services on the real dataplane, programmed by the per-node kube-proxy, in iptables and nftables mode.

One lab per mode (tests/lab/data/services.yaml): pod-a (client) and pod-d on node1, pod-b and pod-c on
node2, an external host. The built-in server answers "pod name, pod IP, client IP", so load balancing
and masquerading are visible in each answer.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

from tests.lab.conftest import run, running_lab, sh, wait_for

DATA = Path(__file__).parent / "data"
CLIENT_IP = "192.168.1.100"


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request, tmp_path_factory):
    mode = request.param
    with running_lab(tmp_path_factory.mktemp("svc"), str(DATA / "services.yaml"),
                     **{"kubeProxyMode: iptables": f"kubeProxyMode: {mode}"}) as lab:
        lab.mode = mode
        wait_for(lambda: "10.244.2.9" in rules(lab, "node1"))
        yield lab


def rules(lab, node: str) -> str:
    """What kube-proxy wrote on the node: the nat table, or the kube-proxy nftables table."""
    if lab.mode == "iptables":
        return lab.node(node, "iptables-save", "-t", "nat").stdout
    return lab.node(node, "nft", "list", "table", "ip", "kube-proxy", check=False).stdout




def curl(lab, where: tuple[str, str], url: str, max_time: float = 3) -> tuple[int, list[str]]:
    """(exit status, answer lines) of curl run in a pod ("pod", name) or node/host ("node", name)."""
    kind, name = where
    ns = lab.ns(f"default-{name}") if kind == "pod" else lab.ns(name)
    p = sh("ip", "netns", "exec", ns, "curl", "-s", "--max-time", str(max_time), url, check=False, timeout=30)
    return p.returncode, p.stdout.splitlines()


def answers(lab, where, url: str, n: int) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    for _ in range(n):
        code, lines = curl(lab, where, url)
        assert code == 0, f"curl {url} failed with {code}"
        seen[(lines[0], lines[2])] += 1   # (pod that answered, client IP it saw)
    return seen


def test_clusterip_balances_over_every_endpoint_without_masquerade(lab):
    seen = answers(lab, ("pod", "pod-a"), "http://10.96.45.67:8080/", 40)
    assert {pod for pod, _ in seen} == {"pod-b", "pod-c", "pod-d"}, seen   # same-node and cross-node
    assert {client for _, client in seen} == {"10.244.1.5"}, seen           # pod -> ClusterIP: no SNAT


def test_node_sees_upstream_rules(lab):
    logs = run("logs", "-n", "kube-system", "kube-proxy-node1", "--lab", lab.name).stdout
    assert f'"Using {lab.mode} Proxier"' in logs
    if lab.mode == "nftables":
        table = rules(lab, "node1")
        assert "10.96.45.67 . tcp . 8080 : goto service-" in table and "numgen random mod 3" in table
        assert "KUBE-SERVICES" not in lab.node("node1", "iptables-save").stdout
        return
    nat = lab.node("node1", "iptables-save", "-t", "nat").stdout
    assert '-A KUBE-SERVICES -d 10.96.45.67/32 -p tcp -m comment --comment "default/web:http cluster IP"' in nat
    assert "-m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-" in nat
    assert "-j MASQUERADE --random-fully" in nat
    listing = lab.node("node1", "iptables", "-t", "nat", "-L", "KUBE-SERVICES", "-n").stdout
    assert "10.96.45.67" in listing


def test_nodeport_from_outside_is_masqueraded(lab):
    seen = answers(lab, ("node", "client"), "http://192.168.1.10:30080/", 20)
    assert len({pod for pod, _ in seen}) >= 2, seen
    assert CLIENT_IP not in {client for _, client in seen}, seen   # eTP=Cluster: SNAT to the node


def test_external_traffic_policy_local_keeps_client_ip_and_drops_without_local_endpoint(lab):
    seen = answers(lab, ("node", "client"), "http://192.168.1.11:30081/", 8)
    assert set(seen) == {("pod-b", CLIENT_IP)}, seen
    code, _ = curl(lab, ("node", "client"), "http://192.168.1.10:30081/", max_time=1.5)
    assert code == 28, "node1 has no local endpoint: the packet must be dropped (timeout)"


def test_load_balancer_ip_from_the_pool_and_source_ranges(lab):
    svcs = {s["metadata"]["name"]: s for s in lab.get_json("svc")["items"]}
    vip = svcs["lb"]["status"]["loadBalancer"]["ingress"][0]["ip"]
    fw_vip = svcs["lb-fw"]["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert vip.startswith("192.168.100.") and fw_vip.startswith("192.168.100.") and vip != fw_vip
    seen = answers(lab, ("node", "client"), f"http://{vip}/", 12)
    assert len({pod for pod, _ in seen}) >= 2, seen
    code, _ = curl(lab, ("node", "client"), f"http://{fw_vip}/", max_time=1.5)
    assert code == 28, "the client is outside loadBalancerSourceRanges: dropped"


def test_no_endpoints_is_rejected(lab):
    t0 = time.monotonic()
    code, _ = curl(lab, ("pod", "pod-a"), "http://10.96.0.99:8080/")
    assert code == 7 and time.monotonic() - t0 < 2, "expected connection refused (REJECT), at once"
    if lab.mode == "iptables":
        flt = lab.node("node1", "iptables-save", "-t", "filter").stdout
        assert '"default/empty has no endpoints" -m tcp --dport 8080 -j REJECT' in flt
    else:
        assert "10.96.0.99 . tcp . 8080 comment" in rules(lab, "node1")


def test_client_ip_affinity_pins_one_endpoint(lab):
    seen = answers(lab, ("pod", "pod-a"), "http://sticky:8080/", 12)
    assert len(seen) == 1, seen


def test_hairpin_pod_reaches_itself_through_its_service(lab):
    code, lines = curl(lab, ("pod", "pod-b"), "http://only-b:8080/")
    assert code == 0 and lines[0] == "pod-b"
    assert lines[2] == "10.244.2.1", "hairpin traffic is masqueraded to the bridge address"


def test_dns_name_and_kube_dns_rules(lab):
    code, lines = curl(lab, ("pod", "pod-a"), "http://web.default.svc.cluster.local:8080/")
    assert code == 0 and lines[0] in ("pod-b", "pod-c", "pod-d")
    assert ("KUBE-SVC-TCOU7JCQXEZGVUNU" if lab.mode == "iptables" else "kube-system/kube-dns/udp/dns") in rules(
        lab, "node2")


def test_apply_and_delete_resync_promptly(lab, tmp_path):
    f = tmp_path / "late.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: late}\n"
                 "spec: {clusterIP: 10.96.0.77, selector: {app: web}, ports: [{port: 8080}]}\n")
    out = run("apply", "-f", str(f), "--lab", lab.name).stdout
    assert out.strip() == "service/late created"
    took = wait_for(lambda: curl(lab, ("pod", "pod-a"), "http://10.96.0.77:8080/", 1)[0] == 0, timeout=5)
    print(f"apply -> reachable in {took:.2f}s")
    assert run("apply", "-f", str(f), "--lab", lab.name).stdout.strip() == "service/late unchanged"
    assert run("delete", "-f", str(f), "--lab", lab.name).stdout.strip() == "service/late deleted"
    wait_for(lambda: "10.96.0.77" not in rules(lab, "node1"), timeout=5)
    again = run("delete", "-f", str(f), "--lab", lab.name, check=False)
    assert again.returncode == 1 and 'services "late" not found' in again.stderr


def test_dead_pod_leaves_its_services(lab):
    pods = {p["metadata"]["name"]: p for p in lab.get_json("pods")["items"]}
    assert pods["pod-c"]["status"]["containerStatuses"][0]["ready"]
    pids = [int(x) for x in sh("ip", "netns", "pids", lab.ns("default-pod-c")).stdout.split()]
    for pid in pids:
        sh("kill", str(pid))
    try:
        wait_for(lambda: "10.244.2.9" not in rules(lab, "node1"), timeout=5)
        ep = run("get", "ep", "web", "--lab", lab.name).stdout
        assert "10.244.2.9" not in ep and "10.244.2.8:8080" in ep
        seen = answers(lab, ("pod", "pod-a"), "http://10.96.45.67:8080/", 10)
        assert "pod-c" not in {pod for pod, _ in seen}
    finally:
        run("up", str(lab.file))   # restarts the dead server
    wait_for(lambda: "10.244.2.9" in rules(lab, "node1"), timeout=5)


UDP_CLIENT = ("import socket,sys\n"
              "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',40000)); s.settimeout(2)\n"
              "s.sendto(b'hi',('10.96.0.53',53)); print(s.recvfrom(2000)[0].decode().splitlines()[0])\n")


def test_udp_service_and_stale_conntrack_cleanup(lab, tmp_path):
    first = lab.exec("pod-a", "python3", "-c", UDP_CLIENT).stdout.strip()
    assert first in ("pod-b", "pod-c", "pod-d")
    assert lab.exec("pod-a", "python3", "-c", UDP_CLIENT).stdout.strip() == first   # same conntrack entry
    ep_ip = {"pod-b": "10.244.2.8", "pod-c": "10.244.2.9", "pod-d": "10.244.1.6"}[first]
    ct = ["conntrack", "-L", "-p", "udp", "--orig-dst", "10.96.0.53", "--dst-nat", ep_ip]
    assert "dport=53" in lab.node("node1", *ct).stdout
    f = tmp_path / "pod.yaml"
    f.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {first}}}\n")
    try:
        run("delete", "-f", str(f), "--lab", lab.name)
        wait_for(lambda: "dport=53" not in lab.node("node1", *ct, check=False).stdout, timeout=5)
        assert not lab.namespaces().count(lab.ns(f"default-{first}"))
        logs = run("logs", "-n", "kube-system", "kube-proxy-node1", "--lab", lab.name).stdout
        assert "Deleted conntrack entries" in logs and ep_ip in logs
        nxt = lab.exec("pod-a", "python3", "-c", UDP_CLIENT).stdout.strip()
        assert nxt != first and nxt in ("pod-b", "pod-c", "pod-d")
    finally:
        run("up", str(lab.file))   # the pod comes back (same IP)
