#!/usr/bin/env python3
"""Tracer benchmark: time per traced flow and flows per second on one core, and snapshot load time.

1. The seed lab: the snapshot read back from a real seed lab (tests/fixtures/trace/seed-iptables):
   pod -> Service (two endpoints, so two paths, each with its reply), pod -> pod, node port from the
   external host.
2. A synthetic cluster: N nodes (default 1,000) with flannel VXLAN wiring (cni0, flannel.1 with a
   route, a neighbour and an FDB entry for every other node), P pod ports per node, an underlay
   switch, and kube-proxy's real iptables ruleset for S Services x E endpoints (default 10,000 x 5),
   rendered by podnet's kube-proxy renderer. The dump directory is written to a temporary directory
   in the exact format of `podnet snapshot save` (node rulesets are identical, as on a real cluster:
   parsed once) and loaded with `load_snapshot`. Flows: a pod on a random node to a random Service
   (E paths each), entering at the pod's veth as a raw source IP (the synthetic snapshot has node
   namespaces only, like an SRE's dump of nodes). Each flow is answered in full: every endpoint's
   path, all steps and texts.

Timing is wall clock with time.perf_counter in one process (one core). Prints figures; --markdown
prints the table for docs/benchmarks.md. No root needed.

    .venv/bin/python bench/trace.py [--nodes 1000 --services 10000 --endpoints 5 --flows 2000]
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from podnet.compile.kubeproxy_iptables import ProxyNode, jump_rules, render_iptables  # noqa: E402
from podnet.model.services import EndpointInfo, ServicePortInfo  # noqa: E402
from podnet.sim.dumpdir import load_snapshot  # noqa: E402
from podnet.sim.world import World  # noqa: E402
from podnet.trace.engine import Question, run_trace  # noqa: E402
from podnet.trace.model import Disposition  # noqa: E402
from podnet.trace.places import Place, Places, ServicePort, load_places  # noqa: E402

SEED = ROOT / "tests" / "fixtures" / "trace" / "seed-iptables"
UNDERLAY = "underlay"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def time_flows(world: World, places: Places | None, questions: list[Question]) -> tuple[list[float], int]:
    times = []
    paths = 0
    gc.collect()
    for q in questions:
        t0 = time.perf_counter()
        res = run_trace(world, places, q)
        times.append(time.perf_counter() - t0)
        paths += len(res.outcomes)
    return times, paths


# -- the seed --------------------------------------------------------------------------------------
def bench_seed(rounds: int) -> dict[str, float]:
    t0 = time.perf_counter()
    snap = load_snapshot(SEED)
    places = load_places(SEED, snap)
    load = time.perf_counter() - t0
    world = World(snap)
    gc.freeze()
    qs = [Question("pod-a", "my-service:8080"), Question("pod-a", "pod-b:8080"),
          Question("host/ext1", "node/node1:30080"), Question("pod-b", "my-service:8080"),
          Question("pod-a", "no-endpoints:80")]
    time_flows(world, places, qs)                                  # warm the indexes
    times, paths = time_flows(world, places, qs * rounds)
    return {"load_s": load, "p50_ms": pct(times, 50) * 1e3, "p99_ms": pct(times, 99) * 1e3,
            "flows_per_s": len(times) / sum(times), "paths_per_flow": paths / len(times)}


# -- the synthetic cluster ---------------------------------------------------------------------------
def node_ip(i: int) -> str:
    return f"192.168.{i // 250}.{i % 250 + 1}"


def pod_cidr(i: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"172.{16 + i // 256}.{i % 256}.0/24")


def mac(kind: int, i: int, j: int = 0) -> str:
    return f"0e:{kind:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:{(j >> 8) & 255:02x}:{j & 255:02x}"


def pod_ip(i: int, j: int) -> str:
    return str(pod_cidr(i).network_address + 2 + j)


def services(n_nodes: int, n_svc: int, n_ep: int, pods: int) -> list[ServicePortInfo]:
    rnd = random.Random(1)
    out = []
    for s in range(n_svc):
        eps = []
        for _ in range(n_ep):
            node = rnd.randrange(n_nodes)
            eps.append(EndpointInfo(pod_ip(node, rnd.randrange(pods)), 8080, node_name=f"node{node}"))
        uniq = {e.key: e for e in eps}
        ip = ipaddress.IPv4Address("10.96.0.0") + 16 + s
        out.append(ServicePortInfo(namespace="bench", name=f"svc-{s:05d}", port_name="http", protocol="TCP",
                                   cluster_ip=str(ip), port=80, endpoints=tuple(sorted(uniq.values(),
                                                                                       key=lambda e: e.key))))
    return out


def iptables_text(ports: list[ServicePortInfo]) -> str:
    """What iptables-save shows on a node once kube-proxy has synced: built-in chains with the jumps
    kube-proxy ensures, then its payload (filter and nat)."""
    payload = render_iptables(ports, ProxyNode(name="node0", node_ips=(node_ip(0),), cluster_cidr="172.16.0.0/12"))
    tables: dict[str, list[str]] = {}
    order: list[str] = []
    cur = ""
    for line in payload.splitlines():
        if line.startswith("*"):
            cur = line[1:]
            order.append(cur)
            tables[cur] = []
        elif line != "COMMIT":
            tables[cur].append(line)
    builtin = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
    jumps: dict[tuple[str, str], list[str]] = {}
    for j in jump_rules():
        words = " ".join(f'"{w}"' if " " in w else w for w in j.args)
        jumps.setdefault((j.table, j.chain), []).insert(0, f"-A {j.chain} {words}")
    out = []
    for t in order:
        out.append(f"*{t}")
        out += [f":{c} ACCEPT [0:0]" for c in builtin[t]]
        out += [line for line in tables[t] if line.startswith(":")]
        for c in builtin[t]:
            out += jumps.get((t, c), [])
        out += [line for line in tables[t] if not line.startswith(":")]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def write_synthetic(root: Path, n_nodes: int, pods: int, ipt: str) -> None:
    gw = "192.168.255.254"
    sysctl = ("net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter = 0\n"
              "net.bridge.bridge-nf-call-iptables = 1\n")
    shared = root / ".shared"          # identical dumps (the kube-proxy ruleset...) are hard links to one file
    shared.mkdir()
    for name, text in (("iptables-save.txt", ipt), ("sysctl.txt", sysctl),
                       ("ss-listen.txt", "udp UNCONN 0 0 0.0.0.0:8472 0.0.0.0:*\n")):
        (shared / f"{name}.shared").write_text(text)   # not a dump file name: .shared is no namespace
    flannel_routes = [{"dst": str(pod_cidr(k)), "gateway": str(pod_cidr(k).network_address), "dev": "flannel.1",
                       "flags": ["onlink"]} for k in range(n_nodes)]
    flannel_neigh = [{"dst": str(pod_cidr(k).network_address), "dev": "flannel.1", "lladdr": mac(2, k),
                      "state": ["PERMANENT"]} for k in range(n_nodes)]
    flannel_fdb = [{"mac": mac(2, k), "ifname": "flannel.1", "dst": node_ip(k), "flags": ["self"],
                    "state": "permanent"} for k in range(n_nodes)]
    for i in range(n_nodes):
        d = root / f"node{i}"
        d.mkdir()
        cidr = pod_cidr(i)
        gw_pod = str(cidr.network_address + 1)
        links = [{"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "mtu": 65536,
                  "link_type": "loopback", "address": "00:00:00:00:00:00"},
                 {"ifindex": 2, "link_index": i + 2, "ifname": "eth0", "flags": ["BROADCAST", "UP", "LOWER_UP"],
                  "mtu": 1500, "address": mac(1, i), "link_netnsid": 0, "linkinfo": {"info_kind": "veth"}},
                 {"ifindex": 3, "ifname": "cni0", "flags": ["BROADCAST", "UP", "LOWER_UP"], "mtu": 1450,
                  "address": mac(3, i), "linkinfo": {"info_kind": "bridge", "info_data": {}}},
                 {"ifindex": 4, "ifname": "flannel.1", "flags": ["BROADCAST", "UP", "LOWER_UP"], "mtu": 1450,
                  "address": mac(2, i), "linkinfo": {"info_kind": "vxlan", "info_data": {
                      "id": 1, "local": node_ip(i), "link": "eth0", "port": 8472, "learning": False}}}]
        for j in range(pods):
            links.append({"ifindex": 10 + j, "link_index": 2, "ifname": f"veth{i:04x}{j:04x}", "master": "cni0",
                          "flags": ["BROADCAST", "UP", "LOWER_UP"], "mtu": 1450, "address": mac(4, i, j),
                          "link_netnsid": 1 + j, "linkinfo": {"info_kind": "veth", "info_slave_kind": "bridge",
                                                              "info_slave_data": {"state": "forwarding",
                                                                                  "hairpin": True}}})
        addrs = [{"ifindex": 1, "ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8,
                                                                "scope": "host"}]},
                 {"ifindex": 2, "ifname": "eth0", "addr_info": [{"family": "inet", "local": node_ip(i),
                                                                 "prefixlen": 16}]},
                 {"ifindex": 3, "ifname": "cni0", "addr_info": [{"family": "inet", "local": gw_pod, "prefixlen": 24}]},
                 {"ifindex": 4, "ifname": "flannel.1", "addr_info": [{"family": "inet",
                                                                      "local": str(cidr.network_address),
                                                                      "prefixlen": 32}]}]
        routes = [{"dst": "default", "gateway": gw, "dev": "eth0"},
                  {"dst": "192.168.0.0/16", "dev": "eth0", "protocol": "kernel", "scope": "link",
                   "prefsrc": node_ip(i)},
                  {"dst": str(cidr), "dev": "cni0", "protocol": "kernel", "scope": "link", "prefsrc": gw_pod}]
        routes += [r for k, r in enumerate(flannel_routes) if k != i]
        for ip, dev in ((node_ip(i), "eth0"), (gw_pod, "cni0"), (str(cidr.network_address), "flannel.1")):
            routes.append({"type": "local", "dst": ip, "dev": dev, "table": "local", "protocol": "kernel",
                           "scope": "host", "prefsrc": ip})
        routes.append({"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local", "scope": "host",
                       "prefsrc": "127.0.0.1"})
        neigh = [n for k, n in enumerate(flannel_neigh) if k != i]
        neigh += [{"dst": pod_ip(i, j), "dev": "cni0", "lladdr": mac(5, i, j), "state": ["REACHABLE"]}
                  for j in range(pods)]
        neigh.append({"dst": gw, "dev": "eth0", "lladdr": mac(9, 0), "state": ["REACHABLE"]})
        fdb = [f for k, f in enumerate(flannel_fdb) if k != i]
        fdb += [{"mac": mac(5, i, j), "ifname": f"veth{i:04x}{j:04x}", "master": "cni0", "state": ""}
                for j in range(pods)]
        fdb.append({"mac": mac(3, i), "ifname": "cni0", "master": "cni0", "state": "permanent"})
        files = {"ip-link.json": links, "ip-addr.json": addrs, "ip-route.json": routes, "ip-neigh.json": neigh,
                 "bridge-fdb.json": fdb,
                 "ip-netns.json": [{"nsid": 0, "name": UNDERLAY}] + [{"nsid": 1 + j, "name": f"cni-{i:04x}-{j:04x}"}
                                                                     for j in range(pods)]}
        for name, data in files.items():
            (d / name).write_text(json.dumps(data, separators=(",", ":")))
        for name in ("iptables-save.txt", "sysctl.txt", "ss-listen.txt"):
            os.link(shared / f"{name}.shared", d / name)
    # the underlay switch: br0 with one port per node, holding the gateway address
    d = root / UNDERLAY
    d.mkdir()
    links = [{"ifindex": 1, "ifname": "br0", "flags": ["BROADCAST", "UP", "LOWER_UP"], "mtu": 1500,
              "address": mac(9, 0), "linkinfo": {"info_kind": "bridge", "info_data": {}}}]
    links += [{"ifindex": i + 2, "link_index": 2, "ifname": f"u{i}", "master": "br0", "flags": ["UP", "LOWER_UP"],
               "mtu": 1500, "address": mac(6, i), "link_netnsid": i,
               "linkinfo": {"info_kind": "veth", "info_slave_kind": "bridge",
                            "info_slave_data": {"state": "forwarding"}}} for i in range(n_nodes)]
    (d / "ip-link.json").write_text(json.dumps(links, separators=(",", ":")))
    (d / "ip-addr.json").write_text(json.dumps([{"ifindex": 1, "ifname": "br0", "addr_info": [
        {"family": "inet", "local": gw, "prefixlen": 16}]}]))
    (d / "bridge-fdb.json").write_text(json.dumps(
        [{"mac": mac(1, i), "ifname": f"u{i}", "master": "br0", "state": ""} for i in range(n_nodes)]))
    (d / "ip-netns.json").write_text(json.dumps([{"nsid": i, "name": f"node{i}"} for i in range(n_nodes)]))
    (d / "sysctl.txt").write_text("net.ipv4.ip_forward = 0\nnet.bridge.bridge-nf-call-iptables = 1\n")


def bench_synthetic(n_nodes: int, n_svc: int, n_ep: int, pods: int, n_flows: int, keep: str | None) -> dict:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    ports = services(n_nodes, n_svc, n_ep, pods)
    ipt = iptables_text(ports)
    out["rules"] = sum(1 for line in ipt.splitlines() if line.startswith("-A"))
    out["render_s"] = time.perf_counter() - t0
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="podnet-bench-trace-"))
    try:
        if not (tmp / UNDERLAY).is_dir():
            t0 = time.perf_counter()
            tmp.mkdir(parents=True, exist_ok=True)
            write_synthetic(tmp, n_nodes, pods, ipt)
            out["write_s"] = time.perf_counter() - t0
        out["dump_mb"] = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) / 1e6   # as if copied
        gc.collect()
        t0 = time.perf_counter()
        snap = load_snapshot(tmp)
        out["load_s"] = time.perf_counter() - t0
        out["namespaces"] = len(snap.namespaces)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    place_map = {f"node{i}": Place(f"node{i}", "node", f"node{i}", f"node{i}", node_ip(i)) for i in range(n_nodes)}
    place_map[UNDERLAY] = Place(UNDERLAY, "underlay", UNDERLAY, UNDERLAY)
    places = Places(place_map, tuple(ServicePort(p.namespace, p.name, p.port_name, "tcp", p.cluster_ip, p.port)
                                     for p in ports))
    world = World(snap)
    gc.freeze()                  # the snapshot lives as long as the process: keep it out of GC passes
    rnd = random.Random(2)
    qs = []
    for _ in range(n_flows):
        i, j = rnd.randrange(n_nodes), rnd.randrange(pods)
        svc = ports[rnd.randrange(n_svc)]
        qs.append(Question(pod_ip(i, j), f"{svc.cluster_ip}:80", at=f"node{i}:veth{i:04x}{j:04x}", reply=False))
    # cold: the first flows build each visited node's indexes (FIB, neighbours, FDB) on first use
    t0 = time.perf_counter()
    cold, _ = time_flows(world, places, qs[: min(200, len(qs))])
    out["cold_p50_ms"] = pct(cold, 50) * 1e3
    out["cold_p99_ms"] = pct(cold, 99) * 1e3
    for name in snap.namespaces:                     # then every node's indexes are built once
        world.ns(name)
    out["index_all_s"] = time.perf_counter() - t0
    times, paths = time_flows(world, places, qs)
    out["p50_ms"] = pct(times, 50) * 1e3
    out["p99_ms"] = pct(times, 99) * 1e3
    out["flows_per_s"] = len(times) / sum(times)
    out["paths_per_flow"] = paths / len(times)
    res = run_trace(world, places, qs[0])
    out["check"] = float(all(o.forward.disposition is Disposition.EXITS_NETWORK for o in res.outcomes))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--pods", type=int, default=50, help="pod ports per node")
    ap.add_argument("--flows", type=int, default=2000)
    ap.add_argument("--seed-rounds", type=int, default=200)
    ap.add_argument("--keep", metavar="DIR", help="write (or reuse) the synthetic dump directory here")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    seed = bench_seed(args.seed_rounds)
    print(f"seed lab snapshot: load {seed['load_s']:.2f} s; per flow p50 {seed['p50_ms']:.2f} ms, "
          f"p99 {seed['p99_ms']:.2f} ms; {seed['flows_per_s']:.0f} flows/s "
          f"({seed['paths_per_flow']:.1f} paths per flow, with replies)")
    syn = bench_synthetic(args.nodes, args.services, args.endpoints, args.pods, args.flows, args.keep)
    print(f"synthetic: {args.nodes} nodes, {args.services} services x {args.endpoints} endpoints, "
          f"{syn['rules']:.0f} iptables rules per node, {syn['dump_mb']:.0f} MB of dumps, "
          f"{syn['namespaces']:.0f} namespaces")
    print(f"  load_snapshot {syn['load_s']:.1f} s (aim < 60 s)")
    print(f"  first flows (indexes built on first visit): p50 {syn['cold_p50_ms']:.2f} ms, "
          f"p99 {syn['cold_p99_ms']:.2f} ms; all nodes indexed in {syn['index_all_s']:.1f} s")
    print(f"  per flow p50 {syn['p50_ms']:.2f} ms, p99 {syn['p99_ms']:.2f} ms (aim < 5 ms); "
          f"{syn['flows_per_s']:.0f} flows/s (aim >= 1000); {syn['paths_per_flow']:.1f} paths per flow, "
          f"{syn['flows_per_s'] * syn['paths_per_flow']:.0f} paths/s"
          + ("" if syn["check"] else "  [unexpected disposition]"))
    if args.markdown:
        print()
        print(f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
              f"{platform.release()}")
        print()
        print("| measurement | result |\n|---|---|")
        print(f"| seed snapshot: load | {seed['load_s']:.2f} s |")
        print(f"| seed: per flow p50 / p99 | {seed['p50_ms']:.2f} / {seed['p99_ms']:.2f} ms |")
        print(f"| seed: flows per second | {seed['flows_per_s']:.0f} |")
        print(f"| {args.nodes} nodes, {args.services} x {args.endpoints}: load_snapshot (aim < 60 s) | "
              f"{syn['load_s']:.1f} s |")
        print(f"| same: per flow p50 / p99 (aim p99 < 5 ms) | {syn['p50_ms']:.2f} / {syn['p99_ms']:.2f} ms |")
        print(f"| same: flows per second, one core (aim >= 1000) | {syn['flows_per_s']:.0f} |")
        print(f"| same: paths per second (each flow walks its {syn['paths_per_flow']:.0f} endpoints) | "
              f"{syn['flows_per_s'] * syn['paths_per_flow']:.0f} |")
        print(f"| same: first flows, indexes built on first visit, p99 | {syn['cold_p99_ms']:.2f} ms |")


if __name__ == "__main__":
    main()
