#!/usr/bin/env python3
"""kube-proxy sync benchmark: render and apply time at 1k, 5k and 10k services x 5 endpoints.

For each size and mode (iptables, nftables), with podnet's own renderers and the same kernel calls the
per-node kube-proxy makes (`dataplane/netfilter.py`):
  - render: building the full ruleset (pure Python);
  - full sync, cold: loading it into a fresh namespace (iptables: chains and jumps ensured, the filter
    chains restored with --noflush, the nat table replaced whole with `iptables-restore --counters`;
    nftables: `nft -f` transactions of bounded size);
  - one-service change: an endpoint added to the middle service: render the partial payload and apply it;
  - per-connection cost: mean TCP connect time (client -> ClusterIP -> DNAT -> server) for the first
    and for the last service (iptables walks KUBE-SERVICES linearly; nftables uses a verdict map).
Two throwaway namespaces `pn-bench<hex>-{client,server}` (veth between them) are made per run and always
removed. Prints figures and ratios; `--markdown` prints the table for docs/benchmarks.md. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from podnet.compile import kubeproxy_iptables as kpt
from podnet.compile import kubeproxy_nftables as kpn
from podnet.dataplane import netfilter, netns
from podnet.model.services import EndpointInfo, ServicePortInfo

ENDPOINTS = [f"10.1.0.{i}" for i in range(1, 6)]


def synth(n: int, extra_endpoint_at: int | None = None) -> list[ServicePortInfo]:
    """n ClusterIP services, 5 endpoints each (all on the bench server's five addresses, port 80)."""
    out = []
    for i in range(n):
        eps = [EndpointInfo(ip, 80, node_name="server") for ip in ENDPOINTS]
        if i == extra_endpoint_at:
            eps.append(EndpointInfo("10.1.0.6", 80, node_name="server"))
        out.append(ServicePortInfo(namespace="bench", name=f"svc-{i:05d}", port_name="http", protocol="TCP",
                                   cluster_ip=f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}", port=80,
                                   endpoints=tuple(sorted(eps, key=lambda e: e.key))))
    return out


def sh(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(list(argv), input=stdin, text=True, check=True, capture_output=True)


@contextlib.contextmanager
def bench_namespaces():
    tag = "pn-bench" + secrets.token_hex(2)
    client, server = f"{tag}-client", f"{tag}-server"
    try:
        for ns in (client, server):
            netns.create(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", server)
        sh("ip", "-n", client, "addr", "add", "10.0.0.1/24", "dev", "eth0")
        sh("ip", "-n", server, "addr", "add", "10.0.0.2/24", "dev", "eth0")
        for ip in [*ENDPOINTS, "10.1.0.6"]:
            sh("ip", "-n", server, "addr", "add", f"{ip}/32", "dev", "eth0")
        for ns in (client, server):
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", client, "route", "add", "10.1.0.0/24", "via", "10.0.0.2")
        sh("ip", "-n", client, "route", "add", "default", "via", "10.0.0.2")
        yield client, server
    finally:
        for ns in (client, server):
            with contextlib.suppress(Exception):
                netns.remove(ns)


def serve(server_ns: str, stop: threading.Event) -> None:
    with netns.entered(server_ns):
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", 80))
    lsock.listen(512)
    lsock.settimeout(0.2)

    def loop() -> None:
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
                c.close()
            except OSError:
                continue
        lsock.close()
    threading.Thread(target=loop, daemon=True).start()


def connect_cost(client_ns: str, ip: str, n: int = 300) -> float:
    """Mean microseconds for connect() to ip:80 (DNATed to an endpoint), over n fresh connections."""
    times = []
    for _ in range(n):
        with netns.entered(client_ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t0 = time.perf_counter()
        s.connect((ip, 80))
        times.append(time.perf_counter() - t0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    times.sort()
    return statistics.mean(times[: int(n * 0.9)]) * 1e6   # drop the slowest 10% (scheduler noise)


def in_ns(ns: str, fn, *args):
    with netns.entered(ns):
        return fn(*args)


def run_one(n: int, mode: str) -> dict:
    node = kpt.ProxyNode(name="client", node_ips=("10.0.0.1",))
    ports = synth(n)
    changed = synth(n, extra_endpoint_at=n // 2)
    r: dict = {"services": n, "mode": mode}
    with bench_namespaces() as (client, server):
        stop = threading.Event()
        serve(server, stop)
        if mode == "iptables":
            t0 = time.perf_counter()
            rules = kpt.build_rules(ports, node)
            payload = rules.payload()
            r["render_s"] = time.perf_counter() - t0
            r["lines"] = payload.count("\n")
            t0 = time.perf_counter()   # what kube-proxy's full sync does (components/kubeproxy.py)
            in_ns(client, netfilter.ensure_chains, kpt.ensured_chains())
            in_ns(client, netfilter.ensure_jumps, kpt.jump_rules())
            in_ns(client, netfilter.iptables_restore, rules.payload(tables=("filter",)))
            saved = in_ns(client, netfilter.iptables_save, "nat", True)
            in_ns(client, netfilter.iptables_replace, kpt.table_replacement(saved, rules, tables=("nat",)))
            r["full_apply_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            partial = kpt.partial_payload(rules, kpt.build_rules(changed, node, previous=rules))
            r["change_render_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            in_ns(client, netfilter.iptables_restore, partial)
            r["change_apply_s"] = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            rules = kpn.build_nft(ports, node)
            scripts = kpn.full_scripts(rules)
            r["render_s"] = time.perf_counter() - t0
            r["lines"] = sum(s.count("\n") for s in scripts)
            t0 = time.perf_counter()
            for s in scripts:
                in_ns(client, netfilter.nft_apply, s)
            r["full_apply_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            partial_scripts = kpn.partial_scripts(rules, kpn.build_nft(changed, node, previous=rules))
            r["change_render_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for s in partial_scripts:
                in_ns(client, netfilter.nft_apply, s)
            r["change_apply_s"] = time.perf_counter() - t0
        r["first_us"] = connect_cost(client, ports[0].cluster_ip)
        r["last_us"] = connect_cost(client, ports[-1].cluster_ip)
        stop.set()
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000,10000")
    ap.add_argument("--modes", default="iptables,nftables")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    netns.require_root()
    results = []
    for n in (int(x) for x in a.sizes.split(",")):
        for mode in a.modes.split(","):
            r = run_one(n, mode)
            results.append(r)
            change_ms = 1000 * (r["change_render_s"] + r["change_apply_s"])
            print(f"{mode:9} {n:6} services: render {r['render_s']:.2f}s ({r['lines']} lines), full sync "
                  f"{r['full_apply_s']:.2f}s, one-service change {change_ms:.0f}"
                  f" ms (render {1000 * r['change_render_s']:.0f} + apply {1000 * r['change_apply_s']:.0f}), "
                  f"connect first {r['first_us']:.0f} us / last {r['last_us']:.0f} us "
                  f"(x{r['last_us'] / r['first_us']:.2f})", flush=True)
    if a.markdown:
        print(f"\nMachine: {platform.node()}, {platform.machine()}, kernel {platform.release()}, "
              f"Python {platform.python_version()}\n")
        print("| mode | services | render | full sync (cold) | one-service change (render + apply) "
              "| connect, first service | connect, last service | last/first |")
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['mode']} | {r['services']:,} | {r['render_s']:.2f} s | {r['full_apply_s']:.2f} s | "
                  f"{1000 * (r['change_render_s'] + r['change_apply_s']):.0f} ms "
                  f"({1000 * r['change_render_s']:.0f} + {1000 * r['change_apply_s']:.0f}) | "
                  f"{r['first_us']:.0f} us | {r['last_us']:.0f} us | {r['last_us'] / r['first_us']:.2f} |")


if __name__ == "__main__":
    main()
