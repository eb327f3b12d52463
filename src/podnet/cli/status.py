from __future__ import annotations

import json

import click

from podnet.cli.output import echo, table
from podnet.dataplane import lab as labrt
from podnet.dataplane import netns
from podnet.model import names


def collect(lab_name: str | None) -> dict:
    lab, store = labrt.load(lab_name)
    try:
        nodes = []
        for n in lab.nodes:
            ok = netns.exists(n.netns)
            comps = {}
            for p in lab.pods_on(n.name):
                if p.component:
                    st = labrt.container_state(store, p)
                    comps[p.component] = {"pod": p.key, "running": all(st.values())}
            nodes.append({"name": n.name, "ip": str(n.ip), "podCIDR": str(n.pod_cidr), "netns": n.netns,
                          "netnsPresent": ok, "components": comps})
        pods = [p for p in lab.pods if not p.component]
        running = sum(1 for p in pods if all(labrt.container_state(store, p).values()))
        missing = [n for n in lab.all_netns() if not netns.exists(n)]
        return {"lab": lab.name, "backend": lab.cluster.networking.backend,
                "kubeProxyMode": lab.cluster.networking.kube_proxy_mode,
                "underlay": {"netns": names.underlay_ns(lab.name), "subnet": str(lab.underlay_subnet),
                             "gateway": str(lab.underlay_gateway), "mtu": lab.cluster.networking.mtu},
                "podMTU": lab.cluster.networking.pod_mtu, "nodes": nodes,
                "pods": {"total": len(pods), "running": running}, "missingNamespaces": missing,
                "healthy": not missing and running == len(pods) and all(
                    c["running"] for n in nodes for c in n["components"].values())}
    finally:
        store.close()


@click.command("status")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def command(lab: str | None, output: str) -> None:
    """Nodes, components (CNI; later proxy, DNS, BGP) and their health."""
    s = collect(lab)
    if output == "json":
        echo(json.dumps(s, indent=2))
        return
    echo(f"lab {s['lab']}: backend {s['backend']}, kube-proxy {s['kubeProxyMode']}, underlay "
         f"{s['underlay']['subnet']} (mtu {s['underlay']['mtu']}), pod mtu {s['podMTU']}")
    rows = []
    for n in s["nodes"]:
        comps = " ".join(f"{k}={'ok' if v['running'] else 'DOWN'}" for k, v in n["components"].items())
        rows.append([n["name"], n["ip"], n["podCIDR"], n["netns"], "ok" if n["netnsPresent"] else "MISSING",
                     comps or "-"])
    echo(table(["NODE", "IP", "POD-CIDR", "NETNS", "NETNS-STATE", "COMPONENTS"], rows))
    echo(f"pods: {s['pods']['running']}/{s['pods']['total']} running")
    if s["missingNamespaces"]:
        echo("missing namespaces: " + ", ".join(s["missingNamespaces"]))
    echo("healthy" if s["healthy"] else "UNHEALTHY")
    if not s["healthy"]:
        raise SystemExit(1)
