"""kube-flannel-<node>: the per-node flannel agent (a hostNetwork pod in kube-system).

Like flanneld it owns the node's overlay state: it publishes subnet.env, keeps flannel.1 (vxlan) and,
for every other node of the lab, the route, the permanent neighbour and the FDB entry (or, host-gw, the
route via the node IP), and removes its routes to nodes that left. It reconciles whenever the store's
revision moves and every 2 s, so a route deleted by hand comes back as it would with flanneld.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
import time

from podnet.compile import fabric, flannel
from podnet.compile.state import NetnsSpec
from podnet.dataplane import lab as labrt
from podnet.dataplane.apply import Applier

RESYNC = 2.0


def log(msg: str) -> None:
    ts = time.strftime("%m%d %H:%M:%S", time.gmtime())
    sys.stdout.write(f"I{ts}.000000 {os.getpid():>7} {msg}\n")
    sys.stdout.flush()


def desired(lab, node_name: str) -> NetnsSpec:
    full = fabric.node(lab, lab.node(node_name))
    spec = NetnsSpec(name=full.name, role="node", owner=node_name)
    spec.links = [link for link in full.links if link.kind == "vxlan"]
    spec.addrs = [a for a in full.addrs if a.dev == "flannel.1"]
    spec.routes = flannel.remote_routes(lab, lab.node(node_name))
    spec.neighs = list(full.neighs)
    spec.fdb = list(full.fdb)
    return spec


def prune(applier: Applier, lab, node_name: str) -> None:
    """Delete routes into the pod subnet that flannel would have made but no node needs any more."""
    h = applier.handle(lab.node(node_name).netns)
    want = {r.dst for r in flannel.remote_routes(lab, lab.node(node_name))}
    own = str(lab.node(node_name).pod_cidr)
    pod_subnet = lab.cluster.networking.pod_subnet
    for r in h.ipr.get_routes(family=socket.AF_INET, table=254):
        dst = r.get("RTA_DST")
        if dst is None or r.get("proto") == 2:  # proto kernel: connected routes
            continue
        cidr = f"{dst}/{r['dst_len']}"
        if cidr in want or cidr == own:
            continue
        if ipaddress.IPv4Network(cidr).subnet_of(pod_subnet):
            h.ipr.route("del", dst=cidr, table=254)
            log(f"route.go] Removed stale route {cidr}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="kube-flannel")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--node", required=True)
    a = ap.parse_args(argv)
    lab, store = labrt.load_when_saved(a.lab, a.node)
    net = lab.cluster.networking
    node = lab.node(a.node)
    log(f"main.go] Determining IP address of default interface: using interface eth0 with address {node.ip}")
    log(f"kube.go] Found podCIDR {node.pod_cidr} for node {a.node}")
    log(f"main.go] Using backend type {net.backend}" + (" (VNI 1, port 8472)" if net.backend == "vxlan" else ""))
    run = os.path.join(labrt.lab_dir(a.lab), "nodes", a.node, "run", "flannel")
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "subnet.env"), "w") as f:
        f.write(fabric.subnet_env(lab, node))
    log(f"main.go] Wrote subnet file to {run}/subnet.env (FLANNEL_MTU={net.pod_mtu})")
    applier = Applier()
    seen_rev = -1
    last = 0.0
    while True:
        rev = store.revision
        if rev != seen_rev or time.monotonic() - last > RESYNC:
            try:
                if rev != seen_rev:
                    lab, fresh = labrt.load(a.lab)
                    fresh.close()
                applier.apply(desired(lab, a.node))
                prune(applier, lab, a.node)
                applier.close()
                if rev != seen_rev:
                    peers = [m.name for m in flannel.remotes(lab, lab.node(a.node))]
                    log(f"vxlan_network.go] Synced routes to {len(peers)} remote nodes: {', '.join(peers)}")
                seen_rev, last = rev, time.monotonic()
            except Exception as e:  # keep running, as flanneld does, and say why
                log(f"main.go] Error reconciling: {e}")
                applier.close()
        time.sleep(0.5)


if __name__ == "__main__":
    main()
