from __future__ import annotations

import json

import click

from podnet.cli.output import echo, table
from podnet.dataplane import dnsprobe, netns, procs
from podnet.dataplane import lab as labrt
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
                    hung = any(procs.stopped(pid) for pid in labrt.runtime(store, p).values())
                    comps[p.component] = {"pod": p.key, "running": all(st.values()) and not hung,
                                          "stopped": hung}
            nodes.append({"name": n.name, "ip": str(n.ip), "podCIDR": str(n.pod_cidr), "netns": n.netns,
                          "netnsPresent": ok, "components": comps})
        dns = _dns_health(lab, store) if lab.cluster.networking.cluster_dns else None
        bgp = _bgp_health(lab) if lab.cluster.bgp is not None else None
        pods = [p for p in lab.pods if not p.component]
        running = sum(1 for p in pods if all(labrt.container_state(store, p).values()))
        missing = [n for n in lab.all_netns() if not netns.exists(n)]
        return {"lab": lab.name, "backend": lab.cluster.networking.backend,
                "kubeProxyMode": lab.cluster.networking.kube_proxy_mode,
                "underlay": {"netns": names.underlay_ns(lab.name), "subnet": str(lab.underlay_subnet),
                             "gateway": str(lab.underlay_gateway), "mtu": lab.cluster.networking.mtu},
                "podMTU": lab.cluster.networking.pod_mtu, "nodes": nodes,
                "pods": {"total": len(pods), "running": running}, "missingNamespaces": missing, "dns": dns, "bgp": bgp,
                "healthy": not missing and running == len(pods) and (dns is None or dns["ok"]) and (
                    bgp is None or bgp["ok"]) and all(
                    c["running"] for n in nodes for c in n["components"].values())}
    finally:
        store.close()


def _bgp_health(lab) -> dict:
    """Every BGP session of every node and router, as BIRD reports it (`podnet bgp status` says why)."""
    from podnet.dataplane import bird

    states = bird.session_states(lab)
    sessions = {sp: {name: info for name, info in protos.items()} for sp, protos in states.items()}
    total = sum(len(p) for p in sessions.values())
    up = sum(1 for p in sessions.values() for info in p.values() if info.startswith("Established"))
    silent = [sp for sp in lab.cluster.bgp.speakers() if not sessions.get(sp)]
    return {"sessions": sessions, "established": up, "total": total, "speakersWithoutBird": silent,
            "ok": total > 0 and up == total and not silent}


def _dns_health(lab, store) -> dict:
    """Each replica asked directly from its node, then the kube-dns Service from every node (through
    kube-proxy's rules, as pods reach it): the name of the kube-dns Service itself must resolve."""
    net = lab.cluster.networking
    name = f"kube-dns.kube-system.svc.{net.dns_domain}"
    replicas = []
    for p in lab.pods:
        if p.component != "coredns":
            continue
        pr = dnsprobe.query(lab.node(p.node).netns, str(p.ip), name)
        replicas.append({"pod": p.key, "ip": str(p.ip), "node": p.node, "answers": pr.ok,
                         "ms": round(pr.ms, 1), "error": pr.error or (pr.rcode if not pr.ok else "")})
    via = []
    for n in lab.nodes:
        pr = dnsprobe.query(n.netns, str(net.dns_ip), name)
        via.append({"node": n.name, "answers": pr.ok, "ms": round(pr.ms, 1),
                    "error": pr.error or (pr.rcode if not pr.ok else "")})
    return {"service": f"{net.dns_ip}:53", "name": name, "replicas": replicas, "viaService": via,
            "ok": all(v["answers"] for v in via)}


@click.command("status")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def command(lab: str | None, output: str) -> None:
    """Nodes, components (CNI, kube-proxy, DNS, BGP) and their health; exit status 1 when unhealthy.

    DNS health is measured with real queries: each coredns replica asked directly from its node, and
    the kube-dns Service asked from every node (through kube-proxy's rules)."""
    s = collect(lab)
    if output == "json":
        echo(json.dumps(s, indent=2))
        return
    echo(f"lab {s['lab']}: backend {s['backend']}, kube-proxy {s['kubeProxyMode']}, underlay "
         f"{s['underlay']['subnet']} (mtu {s['underlay']['mtu']}), pod mtu {s['podMTU']}")
    rows = []
    for n in s["nodes"]:
        comps = " ".join(f"{k}={'ok' if v['running'] else 'STOPPED' if v.get('stopped') else 'DOWN'}"
                         for k, v in n["components"].items())
        rows.append([n["name"], n["ip"], n["podCIDR"], n["netns"], "ok" if n["netnsPresent"] else "MISSING",
                     comps or "-"])
    echo(table(["NODE", "IP", "POD-CIDR", "NETNS", "NETNS-STATE", "COMPONENTS"], rows))
    echo(f"pods: {s['pods']['running']}/{s['pods']['total']} running")
    if s["bgp"]:
        b = s["bgp"]
        down = f"; no BIRD answering on {', '.join(b['speakersWithoutBird'])}" if b["speakersWithoutBird"] else ""
        echo(f"bgp: {'ok' if b['ok'] else 'FAILING'}: {b['established']}/{b['total']} sessions Established{down}"
             + ("" if b["ok"] else " (podnet bgp status says why)"))
    if s["dns"]:
        d = s["dns"]
        reps = ", ".join(f"{r['pod'].split('/')[1]} {'ok' if r['answers'] else 'DOWN ' + r['error']}"
                         for r in d["replicas"])
        svc = ", ".join(f"from {v['node']} {'ok' if v['answers'] else 'FAIL ' + v['error']}" for v in d["viaService"])
        echo(f"dns: {'ok' if d['ok'] else 'FAILING'}: kube-dns {d['service']}: {svc}; replicas: {reps}")
    if s["missingNamespaces"]:
        echo("missing namespaces: " + ", ".join(s["missingNamespaces"]))
    echo("healthy" if s["healthy"] else "UNHEALTHY")
    if not s["healthy"]:
        raise SystemExit(1)
