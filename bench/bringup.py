#!/usr/bin/env python3
"""Bring-up benchmark: time to a working lab, podnet vs the hand-built recipe.

Measures, on this machine:
  1. the seed (2 nodes, 3 pods, VXLAN): `podnet up` until pod-a gets an answer from pod-b across nodes,
     side by side with `../shared/recipes/hand-built-cluster.sh up vxlan` (plain `ip` commands);
  2. 10 nodes x 100 pods (1,000 pods, VXLAN): `podnet up` until a pod on node1 reaches one on node10.
Prints the figures and ratios; `--markdown` prints a table for docs/benchmarks.md.
Every lab it makes is removed, even on failure. Needs root.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT.parent / "shared" / "recipes" / "hand-built-cluster.sh"
PODNET = [sys.executable, "-m", "podnet"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def podnet(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*PODNET, *args], capture_output=True, text=True, env=ENV, check=check)


def wait_http(ns: str, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "--max-time", "1", url], capture_output=True)
        if p.returncode == 0 and p.stdout:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{url} not answering from {ns}")


def big_cluster(name: str, nodes: int, pods_per_node: int) -> str:
    docs = [f"""apiVersion: podnet.dev/v1alpha1
kind: Cluster
metadata: {{name: {name}}}
networking: {{podSubnet: 10.244.0.0/16, backend: vxlan}}
nodes:
""" + "".join(f"  - {{name: node{i}, ip: 192.168.1.{10 + i}}}\n" for i in range(1, nodes + 1))]
    for i in range(1, nodes + 1):
        for j in range(pods_per_node):
            docs.append(f"""apiVersion: v1
kind: Pod
metadata: {{name: p{i}-{j}}}
spec:
  nodeName: node{i}
  containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]
""")
    return "---\n".join(docs)


def time_podnet(file: Path, name: str, client_ns: str, url: str) -> float:
    podnet("down", name, check=False)
    t0 = time.monotonic()
    try:
        podnet("up", str(file))
        wait_http(client_ns, url)
        return time.monotonic() - t0
    finally:
        podnet("down", name, check=False)


def time_recipe() -> float | None:
    if not RECIPE.exists():
        return None
    env = {**os.environ, "PY": sys.executable}
    subprocess.run(["bash", str(RECIPE), "down"], capture_output=True, env=env)
    t0 = time.monotonic()
    try:
        subprocess.run(["bash", str(RECIPE), "up", "vxlan"], capture_output=True, env=env, check=True)
        wait_http("feas-n1-p1", "http://10.244.2.2:8080/")
        return time.monotonic() - t0
    finally:
        subprocess.run(["bash", str(RECIPE), "down"], capture_output=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods-per-node", type=int, default=100)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    tmp = Path("/tmp/podnet-bench")
    tmp.mkdir(exist_ok=True)
    seed = (ROOT / "examples" / "seed-vxlan.yaml").read_text().replace("name: seed\n", "name: bseed\n")
    (tmp / "seed.yaml").write_text(seed)
    seed_t = [time_podnet(tmp / "seed.yaml", "bseed", "pn-bseed-default-pod-a", "http://10.244.2.8:8080/")
              for _ in range(a.runs)]
    recipe_t = [t for t in (time_recipe() for _ in range(a.runs)) if t is not None]
    (tmp / "big.yaml").write_text(big_cluster("bbig", a.nodes, a.pods_per_node))
    n = a.nodes * a.pods_per_node
    big_t = time_podnet(tmp / "big.yaml", "bbig", "pn-bbig-default-p1-0",
                        f"http://10.244.{a.nodes}.2:8080/")
    seed_m = statistics.median(seed_t)
    rec_m = statistics.median(recipe_t) if recipe_t else None
    rows = [("seed: 2 nodes, 3 pods (podnet up -> cross-node answer)", f"{seed_m:.2f} s"),
            ("seed: hand-built recipe (ip commands + servers)", f"{rec_m:.2f} s" if rec_m else "n/a"),
            ("ratio podnet / recipe (aim <= 1.5)", f"{seed_m / rec_m:.2f}x" if rec_m else "n/a"),
            (f"{a.nodes} nodes x {a.pods_per_node} pods = {n} pods (aim < 15 s)", f"{big_t:.2f} s"),
            ("pods per second", f"{n / big_t:.0f}")]
    if a.markdown:
        print(f"Machine: {platform.node()}, {os.cpu_count()} cores, kernel {platform.release()}, "
              f"Python {platform.python_version()}; median of {a.runs} runs for the seed.\n")
        print("| measurement | result |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
    else:
        for k, v in rows:
            print(f"{k:70s} {v}")


if __name__ == "__main__":
    main()
