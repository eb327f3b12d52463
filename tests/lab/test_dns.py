"""Cluster DNS on the real lab: coredns replicas behind kube-dns (10.96.0.10), reached through kube-proxy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.lab.conftest import run, running_lab, sh, wait_for

DATA = Path(__file__).parent / "data"
DIG = ("dig", "+short", "+time=2", "+tries=2")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("dns"), "seed-vxlan.yaml") as lab:
        run("apply", "-f", str(DATA / "dns-extra.yaml"), "--lab", lab.name)
        wait_for(lambda: lab.exec("pod-a", *DIG, "my-service.default.svc.cluster.local", check=False).stdout.strip()
                 == "10.96.45.67")
        yield lab




def dig(lab, *args: str) -> str:
    return lab.exec("pod-a", *DIG, *args).stdout.strip()


def test_resolv_conf_is_kubernetes(lab):
    text = lab.exec("pod-a", "cat", "/etc/resolv.conf").stdout
    assert text == ("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n"
                    "options ndots:5\n")
    assert run("exec", "--lab", lab.name, "pod-a", "--", "cat", "/etc/resolv.conf").stdout == text


def test_names_short_namespaced_fqdn(lab):
    assert lab.exec("pod-a", "getent", "hosts", "my-service").stdout.split()[0] == "10.96.45.67"
    assert lab.exec("pod-a", "getent", "hosts", "my-service.default").stdout.split()[0] == "10.96.45.67"
    assert dig(lab, "my-service.default.svc.cluster.local") == "10.96.45.67"
    assert dig(lab, "+search", "my-service") == "10.96.45.67"   # search-path walk (1 dot < ndots 5)
    out = lab.exec("pod-a", "curl", "-s", "--max-time", "5", "my-service:8080").stdout.splitlines()
    assert out[0] in ("pod-b", "pod-c")


def test_headless_srv_ptr_nxdomain_tcp(lab):
    ips = set(dig(lab, "web-headless.default.svc.cluster.local").split())
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in lab.get_json("pods")["items"]}
    assert ips == {pods["web-1"], pods["web-2"]}
    assert dig(lab, "SRV", "_http._tcp.my-service.default.svc.cluster.local") == \
        "0 100 8080 my-service.default.svc.cluster.local."
    assert dig(lab, "-x", "10.96.45.67") == "my-service.default.svc.cluster.local."
    assert dig(lab, "-x", "10.244.1.5") == "10-244-1-5.default.pod.cluster.local."
    full = lab.exec("pod-a", "dig", "+time=2", "nosuch.default.svc.cluster.local").stdout
    assert "status: NXDOMAIN" in full
    outside = lab.exec("pod-a", "dig", "+time=2", "example.com").stdout
    assert "status: REFUSED" in outside
    assert dig(lab, "+tcp", "my-service.default.svc.cluster.local") == "10.96.45.67"


def test_dnspython_in_a_pod(lab):
    code = ("import dns.resolver; r = dns.resolver.Resolver(); "
            "print(r.resolve('my-service', 'A', search=True)[0].address)")
    assert lab.exec("pod-a", sys.executable, "-c", code).stdout.strip() == "10.96.45.67"


def test_records_follow_apply_and_delete(lab, tmp_path):
    f = tmp_path / "svc.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: fresh}\n"
                 "spec: {clusterIP: 10.96.0.88, selector: {app: web}, ports: [{port: 80}]}\n")
    run("apply", "-f", str(f), "--lab", lab.name)
    took = wait_for(lambda: dig(lab, "fresh.default.svc.cluster.local") == "10.96.0.88", timeout=5)
    print(f"record visible {took:.2f}s after apply")
    run("delete", "-f", str(f), "--lab", lab.name)
    wait_for(lambda: "NXDOMAIN" in lab.exec("pod-a", "dig", "+time=2", "fresh.default.svc.cluster.local").stdout,
             timeout=5)


def test_malformed_queries_do_not_crash_the_server(lab):
    garbage = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
               "[s.sendto(b, ('10.96.0.10', 53)) "
               "for b in (b'', b'\\x00', b'\\xff' * 12, b'\\x12\\x34' + b'\\x01' * 40)]")
    lab.exec("pod-a", sys.executable, "-c", garbage)
    assert dig(lab, "my-service.default.svc.cluster.local") == "10.96.45.67"


def test_status_reports_dns_and_one_replica_down_still_answers(lab):
    st = run("status", "--lab", lab.name, "-o", "json")
    assert '"ok": true' in st.stdout
    dns_pods = [p for p in lab.get_json("pods", "-n", "kube-system")["items"]
                if p["metadata"]["name"].startswith("coredns-")]
    victim = dns_pods[0]
    ns = victim["metadata"]["annotations"]["podnet.dev/netns"]
    for pid in sh("ip", "netns", "pids", ns).stdout.split():
        sh("kill", pid)
    try:
        # kube-proxy drops the dead replica from kube-dns's endpoints within about a second
        wait_for(lambda: victim["status"]["podIP"] not in lab.node("node1", "iptables-save", "-t", "nat").stdout)
        for _ in range(6):
            assert dig(lab, "my-service.default.svc.cluster.local") == "10.96.45.67"
        text = run("status", "--lab", lab.name, check=False).stdout
        assert "dns: ok" in text and "DOWN" in text   # the Service answers; the replica is reported down
    finally:
        run("up", str(lab.file))
