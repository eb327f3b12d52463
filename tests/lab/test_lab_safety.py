"""Safety: the root namespace is untouched, failures roll back, killed runs are swept, errors are clear."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.lab.conftest import ROOT, run, sh

SYSCTLS = ["net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables", "net/ipv4/conf/all/rp_filter",
           "net/ipv4/conf/all/forwarding"]


def root_state() -> dict:
    state = {cmd: json.loads(sh("ip", "-j", *cmd.split()).stdout) for cmd in (
        "link show", "addr show", "route show table all", "rule show", "neigh show")}
    for obj in state["link show"]:
        for k in ("stats", "stats64"):
            obj.pop(k, None)
    for n in state["neigh show"]:
        n.pop("state", None)
    for key in SYSCTLS:
        with open(f"/proc/sys/{key}") as f:
            state[key] = f.read()
    state["iptables"] = sh("iptables-save").stdout.count("\n-A")
    return state


def test_root_namespace_is_untouched(make_lab):
    before = root_state()
    lab = make_lab()
    lab.exec("pod-a", "curl", "-s", "--max-time", "5", "http://10.244.2.8:8080/")
    during = root_state()
    lab.down()
    after = root_state()
    for key in before:
        assert before[key] == during[key] == after[key], key
    assert not os.path.exists(f"/run/podnet/{lab.name}")
    assert not [d for d in os.listdir("/etc/netns") if d.startswith(f"pn-{lab.name}-")] if os.path.isdir(
        "/etc/netns") else True


def test_failed_up_rolls_back(make_lab):
    # two containers of pod-b both listen on 8080/TCP: the second cannot bind, so `up` fails half-way
    lab = make_lab(up=False, **{"    - name: server\n      image: podnet/echo\n      ports: [{name: http, "
                               "containerPort: 8080}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-c":
                               "    - name: server\n      image: podnet/echo\n      ports: [{name: http, "
                               "containerPort: 8080}]\n    - name: twin\n      ports: [{containerPort: 8080}]\n"
                               "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-c"})
    p = run("up", str(lab.file), check=False)
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0 and "Address already in use" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert lab.namespaces() == []
    assert not os.path.exists(f"/run/podnet/{lab.name}")
    flannels = sh("pgrep", "-af", "podnet.components.flannel", check=False).stdout
    assert f"--lab {lab.name} " not in flannels


def test_killed_up_is_swept_by_down(make_lab, tmp_path):
    many = "".join(f"""---
apiVersion: v1
kind: Pod
metadata: {{name: extra-{i}}}
spec: {{containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}
""" for i in range(150))
    lab = make_lab(up=False)
    lab.file.write_text(lab.file.read_text() + many)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "podnet", "up", str(lab.file)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(lab.namespaces()) < 40:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lab.namespaces(), "up was killed before it created anything"
    run("down", lab.name)
    assert lab.namespaces() == []
    assert not [d for d in os.listdir("/etc/netns") if d.startswith(f"pn-{lab.name}-")]


def test_bad_input_is_one_line_and_builds_nothing(make_lab):
    lab = make_lab(up=False, **{"podCIDR: 10.244.2.0/24": "podCIDR: 10.244.1.0/25"})
    p = run("up", str(lab.file), check=False)
    assert p.returncode == 1
    line = p.stderr.strip()
    assert "\n" not in line and str(lab.file) in line and "nodes[node2].podCIDR" in line and "overlaps" in line
    assert lab.namespaces() == []


def test_not_root_is_told_what_is_needed(make_lab, tmp_path_factory):
    lab = make_lab(up=False)
    public = tmp_path_factory.mktemp("public", numbered=True)
    os.chmod(public, 0o755)
    os.chmod(public.parent, 0o755)
    target = public / lab.file.name
    target.write_text(lab.file.read_text())
    os.chmod(target, 0o644)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                        "podnet", "up", str(target)], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1
    assert "needs root" in p.stderr and "Traceback" not in p.stderr
