"""break / diagnose / repair / capture on a real lab (the seed cluster, VXLAN, iptables), one lab for the module.

For every fault: `podnet break` it, `podnet diagnose` names it by its cause id with evidence, `podnet repair`
undoes it, and diagnose says "no fault found" again. Then the same fault made by hand with ip / iptables /
sysctl / conntrack / kill / an edited file is found too (diagnose reads the state, never what break did),
and `podnet repair` (which also works from the state) undoes it. Capture finds the last hop for the MTU,
VXLAN-firewall and CNI faults.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest

from tests.lab.conftest import run, running_lab, sh

NEW_SERVICE = """apiVersion: v1
kind: Service
metadata: {name: late-service, namespace: default}
spec:
  selector: {app: my-app}
  ports: [{name: http, port: 8081, targetPort: 8080}]
"""
LOCKDOWN = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: lockdown, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("diag"), "seed-vxlan.yaml") as lab:
        lab.tmp = tmp_path_factory.mktemp("diagfiles")
        doc = diagnose(lab)[1]
        assert doc["healthy"], json.dumps(doc, indent=1)
        yield lab


def diagnose(lab, src: str = "pod-a", dst: str = "my-service:8080") -> tuple[int, dict]:
    p = run("diagnose", src, dst, "--lab", lab.name, "-o", "json", check=False, timeout=180)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)


def found(lab, cause: str, src: str = "pod-a", dst: str = "my-service:8080", step: int | None = None) -> dict:
    """diagnose names ``cause`` (exit 1), with evidence; when a step fails the cause explains it."""
    rc, doc = diagnose(lab, src, dst)
    assert rc == 1, json.dumps(doc, indent=1)
    hit = [f for f in doc["findings"] if f["cause"] == cause and f["severity"] == "fault"]
    assert hit, f"{cause} not found: {json.dumps(doc, indent=1)}"
    assert hit[0]["evidence"] and hit[0]["fix"]
    if step is not None:
        assert doc["failedStep"] == step, json.dumps(doc, indent=1)
    if doc["failedStep"] is not None:
        assert doc["cause"]["cause"] == cause, json.dumps(doc, indent=1)
        assert doc["cause"]["explainsFlow"]
    return doc


def healthy(lab, src: str = "pod-a", dst: str = "my-service:8080") -> None:
    rc, doc = diagnose(lab, src, dst)
    assert rc == 0 and doc["healthy"] and doc["cause"] is None, json.dumps(doc, indent=1)
    assert not [f for f in doc["findings"] if f["severity"] == "fault"]


@contextlib.contextmanager
def broken(lab, fault: str, *opts: str):
    """`podnet break FAULT`, always followed by `podnet repair FAULT`."""
    try:
        run("break", fault, "--lab", lab.name, *opts, timeout=120)
        yield
    finally:
        run("repair", fault, "--lab", lab.name, timeout=120)


@contextlib.contextmanager
def by_hand(lab, fault: str):
    """The body breaks it by hand; `podnet repair FAULT` (from the state) always cleans up."""
    try:
        yield
    finally:
        run("repair", fault, "--lab", lab.name, timeout=120)


def pids(lab, module: str, node: str | None = None) -> list[int]:
    """PIDs of a lab component (as `ps aux | grep` finds them)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        want = [f"podnet.components.{module}".encode(), lab.name.encode()] + ([node.encode()] if node else [])
        if all(w in argv for w in want):
            out.append(int(d))
    return out


def veth(lab, pod: str) -> tuple[str, str]:
    """(node netns, host veth) of a pod, from the pod's eth0 peer index as `ip -d link` shows it."""
    node = "node1" if pod in ("pod-a",) else "node2"
    idx = json.loads(sh("ip", "netns", "exec", lab.ns(f"default-{pod}"), "ip", "-j", "link", "show", "eth0")
                     .stdout)[0]["link_index"]
    links = json.loads(lab.node(node, "ip", "-j", "link", "show").stdout)
    return lab.ns(node), next(x["ifname"] for x in links if x["ifindex"] == idx)


def same_node_pod(lab, node: str) -> str:
    """The IP of the coredns replica on ``node``."""
    pods = lab.get_json("pods", "-n", "kube-system")["items"]
    return next(p["status"]["podIP"] for p in pods if p["spec"]["nodeName"] == node
                and p["metadata"]["name"].startswith("coredns"))


def capture(lab, *args: str) -> dict:
    p = run("capture", *args, "--lab", lab.name, "-o", "json", "--dir", str(lab.tmp / f"cap{time.monotonic_ns()}"),
            check=False, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


# -- kube-proxy ------------------------------------------------------------------------------------------
def test_kube_proxy_down_then_a_new_service_has_no_rules(lab):
    svc = lab.tmp / "late.yaml"
    svc.write_text(NEW_SERVICE)
    try:
        with broken(lab, "kube-proxy-down", "--node", "node1"):
            doc = found(lab, "kube-proxy-down", dst="my-service:8080")       # old Services still work
            assert doc["failedStep"] is None
            run("apply", "-f", str(svc), "--lab", lab.name)
            time.sleep(1.5)
            doc = found(lab, "kube-proxy-down", dst="late-service:8081", step=4)
            assert any("no rule for default/late-service" in e for e in doc["cause"]["evidence"])
        time.sleep(0.5)
        healthy(lab, dst="late-service:8081")
    finally:
        run("delete", "-f", str(svc), "--lab", lab.name, check=False)
    # by hand: the process killed outright (found before anything restarts it)
    with by_hand(lab, "kube-proxy-down"):
        for pid in pids(lab, "kubeproxy", "node1"):
            os.kill(pid, signal.SIGKILL)
        doc = found(lab, "kube-proxy-down")
        f = next(x for x in doc["findings"] if x["cause"] == "kube-proxy-down")
        assert any("process is gone" in e for e in f["evidence"])


def test_service_rules_missing(lab):
    with broken(lab, "service-rules-missing", "--service", "default/my-service", "--node", "node1"):
        found(lab, "service-rules-missing", step=4)
    healthy(lab)
    with by_hand(lab, "service-rules-missing"):
        lab.node("node1", "iptables", "-t", "nat", "-F", "KUBE-SERVICES")
        doc = found(lab, "service-rules-missing", step=4)
        assert doc["cause"]["where"]["node"] == "node1"


# -- CNI -----------------------------------------------------------------------------------------------------
def test_cni_veth_detached(lab):
    with broken(lab, "cni-veth-detached", "--pod", "pod-a"):
        doc = found(lab, "cni-veth-detached", step=1)
        cap = capture(lab, "pod-a", same_node_pod(lab, "node1"))
        assert cap["lastSeen"]["dev"].startswith("veth") and cap["lastSeen"]["node"] == "node1", cap
        assert "not on the bridge" in cap["meaning"]
    assert doc["cause"]["where"]["dev"].startswith("veth")
    healthy(lab)
    ns, dev = veth(lab, "pod-b")
    with by_hand(lab, "cni-veth-detached"):
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "dev", dev, "nomaster")
        doc = found(lab, "cni-veth-detached", dst="pod-b")
        assert dev in doc["cause"]["summary"]


def test_cni_pod_route(lab):
    with broken(lab, "cni-pod-route", "--pod", "pod-a"):
        doc = found(lab, "cni-pod-route", step=1)
        assert doc["cause"]["where"]["place"] == "pod default/pod-a"
    healthy(lab)
    with by_hand(lab, "cni-pod-route"):
        lab.exec("pod-a", "ip", "route", "replace", "default", "via", "10.244.1.254", "dev", "eth0")
        doc = found(lab, "cni-pod-route", step=1)       # the gateway still answers, the node doesn't
        assert "10.244.1.254" in doc["cause"]["summary"]


def test_cni_config(lab):
    with broken(lab, "cni-config", "--node", "node1"):
        doc = found(lab, "cni-config")
        assert any('"flanel"' in e for e in doc["findings"][0]["evidence"])
    healthy(lab)
    conf = f"/etc/netns/{lab.ns('node2')}/cni/net.d/10-flannel.conflist"
    with by_hand(lab, "cni-config"):
        with open(conf, "w") as f:
            f.write('{"name": "cbr0", "plugins": [')
        doc = found(lab, "cni-config")
        f = next(x for x in doc["findings"] if x["cause"] == "cni-config")
        assert f["where"]["node"] == "node2" and "invalid JSON" in f["evidence"][0]


# -- MTU, overlay --------------------------------------------------------------------------------------------
def test_mtu_mismatch(lab):
    with broken(lab, "mtu-mismatch"):
        doc = found(lab, "mtu-mismatch", step=3)
        assert "MTU problem" in doc["symptom"]
        assert any("fragmentation" in e or "3/4" in e for e in doc["cause"]["evidence"])
        cap = capture(lab, "pod-a", "pod-b", "--size", "1500")
        assert (cap["lastSeen"]["node"], cap["lastSeen"]["dev"]) == ("node1", "cni0"), cap
        assert "too big" in cap["meaning"]
    healthy(lab)
    ns, dev = veth(lab, "pod-a")
    with by_hand(lab, "mtu-mismatch"):
        lab.exec("pod-a", "ip", "link", "set", "eth0", "mtu", "1500")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "mtu", "1500")
        lab.node("node1", "ip", "link", "set", "cni0", "mtu", "1500")
        lab.node("node1", "iptables", "-I", "OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j",
                 "DROP")
        found(lab, "mtu-mismatch", dst="pod-b", step=3)


def test_vxlan_blocked(lab):
    with broken(lab, "vxlan-blocked", "--node", "node2"):
        doc = found(lab, "vxlan-blocked", step=3)
        assert doc["cause"]["where"]["node"] == "node2"
        assert any("8472" in e for e in doc["cause"]["evidence"])
        cap = capture(lab, "pod-a", "pod-b")
        assert (cap["lastSeen"]["node"], cap["lastSeen"]["dev"]) == ("node2", "eth0"), cap
        assert "VXLAN decap" in cap["meaning"]
    healthy(lab)
    with by_hand(lab, "vxlan-blocked"):
        lab.node("node1", "iptables", "-I", "OUTPUT", "-p", "udp", "--dport", "8472", "-j", "REJECT")
        doc = found(lab, "vxlan-blocked", step=3)
        assert doc["cause"]["where"]["node"] == "node1"


def test_netpol_blocking(lab):
    with broken(lab, "netpol-blocking", "--namespace", "default"):
        doc = found(lab, "netpol-blocking", step=3)
        assert any("default-deny-ingress" in e for e in doc["cause"]["evidence"])
    healthy(lab)
    pol = lab.tmp / "lockdown.yaml"
    pol.write_text(LOCKDOWN)
    with by_hand(lab, "netpol-blocking"):
        run("apply", "-f", str(pol), "--lab", lab.name)
        deadline = time.monotonic() + 10
        while "lockdown" not in lab.node("node2", "iptables-save", "-t", "filter").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        doc = found(lab, "netpol-blocking")
        assert any("lockdown" in e for e in doc["cause"]["evidence"])


# -- DNS -------------------------------------------------------------------------------------------------------
def test_dns_down(lab):
    with broken(lab, "dns-down"):
        time.sleep(1.5)            # kube-proxy drops the endpoints of the dead replicas
        found(lab, "dns-down", step=5)
    healthy(lab)
    with by_hand(lab, "dns-down"):
        for pid in pids(lab, "coredns"):
            os.kill(pid, signal.SIGKILL)
        time.sleep(1.5)
        found(lab, "dns-down", step=5)


def test_dns_resolv_conf(lab):
    with broken(lab, "dns-resolv-conf", "--pod", "pod-a"):
        doc = found(lab, "dns-resolv-conf", step=5)
        assert doc["cause"]["where"]["place"] == "pod default/pod-a"
    healthy(lab)
    with by_hand(lab, "dns-resolv-conf"):
        with open(f"/etc/netns/{lab.ns('default-pod-a')}/resolv.conf", "w") as f:
            f.write("nameserver 192.168.1.1\noptions ndots:5\n")
        doc = found(lab, "dns-resolv-conf", step=5)
        assert any("192.168.1.1" in e for e in doc["cause"]["evidence"])


# -- conntrack, bridge ------------------------------------------------------------------------------------------
def test_stale_conntrack(lab):
    with broken(lab, "stale-conntrack", "--pod", "pod-a"):
        doc = found(lab, "stale-conntrack")
        f = next(x for x in doc["findings"] if x["cause"] == "stale-conntrack")
        assert "10.96.0.10" in f["evidence"][0] and f["where"]["node"] == "node1"
    healthy(lab)
    with by_hand(lab, "stale-conntrack"):
        lab.node("node2", "conntrack", "-I", "-p", "udp", "-s", "10.244.2.8", "-d", "10.96.0.10", "--sport", "41234",
                 "--dport", "53", "-t", "600", "--dst-nat", "10.244.2.77:53")
        doc = found(lab, "stale-conntrack", src="pod-b")
        assert any("10.244.2.77" in f["summary"] for f in doc["findings"])


def test_br_netfilter_off(lab):
    with broken(lab, "br-netfilter-off"):
        found(lab, "br-netfilter-off", src="pod-b")
    healthy(lab, src="pod-b")
    with by_hand(lab, "br-netfilter-off"):
        lab.node("node2", "sysctl", "-w", "net.bridge.bridge-nf-call-iptables=0")
        doc = found(lab, "br-netfilter-off", src="pod-b")
        assert doc["findings"][0]["where"]["node"] == "node2"


def test_hairpin_off(lab):
    with broken(lab, "hairpin-off", "--pod", "pod-b"):
        found(lab, "hairpin-off", src="pod-b")
    healthy(lab, src="pod-b")
    ns, dev = veth(lab, "pod-c")
    with by_hand(lab, "hairpin-off"):
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "dev", dev, "type", "bridge_slave", "hairpin", "off")
        doc = found(lab, "hairpin-off", src="pod-c")
        assert any(dev in f["summary"] for f in doc["findings"])


def test_healthy_at_the_end_and_text_output(lab):
    p = run("diagnose", "pod-a", "my-service:8080", "--lab", lab.name)
    assert "step 5  DNS" in p.stdout and p.stdout.rstrip().endswith("no fault found")
    assert run("status", "--lab", lab.name, check=False).returncode == 0
    listed = run("break", "--list").stdout
    assert "vxlan-blocked" in listed and "hairpin-off" in listed
