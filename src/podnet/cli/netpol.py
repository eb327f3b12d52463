"""``podnet netpol``: the NetworkPolicy truth table (computed, and probed on the real lab) and rules."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from podnet.cli.output import echo, progress, warn
from podnet.compile import netpol_iptables
from podnet.components import netpol as agent
from podnet.dataplane import lab as labrt
from podnet.dataplane.probe import Probe, ProbeResult, probe_all
from podnet.errors import PodnetError
from podnet.model.lab import Lab, resolve
from podnet.model.manifest import parse_docs
from podnet.model.netpol import EGRESS, INGRESS
from podnet.model.netpol_eval import Matrix, PolicySet
from podnet.model.source import load_files

SCHEMA_VERSION = 1
CONVERGE_TIMEOUT = 5.0

MATRIX_HELP = """The truth table of every pod to every pod: rows are sources, columns
destinations; `.` allowed, `X` denied, for a new connection to the pod IP on
PORT/PROTOCOL.

\b
Computed from the lab's policies, pods and namespace labels (as the API
defines them). With --probe, also measured: a real connection from each pod's
network namespace to each pod IP (TCP handshake, UDP request and answer, SCTP
INIT); a pod that answers, even to refuse because nothing listens on the
port, counts as reached. Probing first waits until every node's
kube-network-policies agent has applied the store's current revision. The
cells where computed and probed disagree are marked (`!`), listed, and make
the exit status 1.

\b
Pods in kube-system and hostNetwork pods are left out unless -n names
namespaces. A pod's traffic to its own IP never leaves it: the diagonal is
always allowed.

\b
Examples:
  podnet netpol matrix
  podnet netpol matrix --port 81 --protocol udp --probe
  podnet netpol matrix -n x -n y --probe -o json
"""


@click.group("netpol", help="NetworkPolicy: the truth table (computed and probed) and the rules each node gets.")
def command() -> None:
    pass


def _cell(ok: bool) -> str:
    return "." if ok else "X"


def grid_text(pods: list[str], cell: Any, title: str) -> str:
    """A table with sources as rows and destinations as columns; ``cell(src, dst)`` gives its text."""
    width = max([len(p) for p in pods] + [1])
    cols = [max(len(p), 1) for p in pods]
    lines = [title, " " * width + "  " + "  ".join(p.ljust(c) for p, c in zip(pods, cols, strict=True)).rstrip()]
    for a in pods:
        row = "  ".join(str(cell(a, b)).ljust(c) for b, c in zip(pods, cols, strict=True))
        lines.append(f"{a.ljust(width)}  {row}".rstrip())
    return "\n".join(lines)


def isolation_text(ps: PolicySet, pods: list[str]) -> list[str]:
    out = []
    for key in pods:
        pod = ps.pod(key)
        if pod is None:
            continue
        for direction in (INGRESS, EGRESS):
            pols = [p.key for p in ps.selecting(pod, direction)]
            if pols:
                out.append(f"  {key} {direction.lower()}: {', '.join(pols)}")
    return out


def wait_converged(lab: Lab, revision: int, timeout: float = CONVERGE_TIMEOUT) -> list[str]:
    """Wait until every node's agent reflects ``revision``; returns the nodes that did not in time."""
    deadline = time.monotonic() + timeout
    while True:
        late = []
        for n in lab.nodes:
            st = agent.read_status(lab.name, n.name)
            if st is None or st.get("revision", -1) < revision:
                late.append(n.name)
        if not late or time.monotonic() > deadline:
            return late
        time.sleep(0.05)


def run_probes(lab: Lab, m: Matrix, timeout: float) -> dict[tuple[str, str], ProbeResult]:
    """Probe every cell concurrently, each with a fresh socket in the source pod's namespace."""
    placed = {p.key: p for p in lab.pods}
    pairs = [(a, b) for a in m.pods for b in m.pods]
    probes = [Probe(placed[a].netns, str(placed[b].ip), m.port, m.protocol, dst_netns=placed[b].netns)
              for a, b in pairs]
    return dict(zip(pairs, probe_all(probes, timeout=timeout), strict=True))


def compute(lab: Lab, revision: int, port: int, protocol: str, namespaces: tuple[str, ...] = (),
            probe: bool = False, timeout: float = 1.0) -> tuple[PolicySet, Matrix, dict | None, float]:
    """The truth table of ``lab`` (and, with ``probe``, the probed one once every agent applied
    ``revision``): (policies, matrix, probe results or None, seconds spent probing)."""
    for ns in namespaces:
        if ns not in lab.namespaces:
            raise PodnetError(f'namespace "{ns}" not found (namespaces: {", ".join(sorted(lab.namespaces))})')
    ps = PolicySet.from_lab(lab)
    pods = ps.matrix_pods(namespaces or None)
    if not pods:
        raise PodnetError("no pods to show (pods in kube-system are shown only with -n kube-system)")
    m = ps.matrix(port, protocol, pods)
    if not probe:
        return ps, m, None, 0.0
    late = wait_converged(lab, revision)
    if late:
        warn(f"the NetworkPolicy agent of {', '.join(late)} has not applied revision {revision} yet")
    progress(f"probing {len(m.pods) ** 2} connections ({port}/{protocol})")
    t0 = time.monotonic()
    probed = run_probes(lab, m, timeout)
    return ps, m, probed, time.monotonic() - t0


def matrix_json(lab: Lab, m: Matrix, probed: dict[tuple[str, str], ProbeResult] | None) -> dict[str, Any]:
    ips = {p.key: str(p.ip) for p in lab.pods}
    cells = []
    for a in m.pods:
        for b in m.pods:
            v = m.cells[(a, b)]
            cell: dict[str, Any] = {"from": a, "to": b, "fromIP": ips[a], "toIP": ips[b], **v.to_dict(),
                                    "probe": None, "agree": None}
            if probed is not None:
                r = probed[(a, b)]
                cell["probe"] = r.to_dict()
                cell["agree"] = r.reached == v.allowed
            cells.append(cell)
    out: dict[str, Any] = {
        "apiVersion": "podnet.dev/v1alpha1", "kind": "NetpolMatrix", "schemaVersion": SCHEMA_VERSION,
        "lab": lab.name, "port": m.port, "protocol": m.protocol, "pods": list(m.pods),
        "computed": [[m.allowed(a, b) for b in m.pods] for a in m.pods],
        "probed": None, "agree": None, "cells": cells}
    if probed is not None:
        out["probed"] = [[probed[(a, b)].reached for b in m.pods] for a in m.pods]
        out["agree"] = all(c["agree"] for c in cells)
    return out


@command.command("matrix", help=MATRIX_HELP,
                 short_help="The truth table of every pod to every pod: computed, and measured with --probe.")
@click.option("--port", type=click.IntRange(1, 65535), default=80, show_default=True,
              help="Destination port (after Service DNAT: the pod's port).")
@click.option("--protocol", type=click.Choice(["tcp", "udp", "sctp"], case_sensitive=False), default="tcp",
              show_default=True)
@click.option("--probe", "do_probe", is_flag=True, help="Also measure every cell with a real connection.")
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Only pods of this namespace; repeatable.")
@click.option("--timeout", type=click.FloatRange(0.1, 30), default=1.0, show_default=True,
              help="Seconds a probe waits for an answer.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
def matrix(port: int, protocol: str, do_probe: bool, namespaces: tuple[str, ...], timeout: float, output: str,
           lab: str | None) -> None:
    the_lab, store = labrt.load(lab)
    revision = store.revision
    store.close()
    ps, m, probed, seconds = compute(the_lab, revision, port, protocol.upper(), namespaces, do_probe, timeout)
    doc = matrix_json(the_lab, m, probed)
    if output == "json":
        echo(json.dumps(doc, indent=2))
    else:
        echo(render_text(ps, m, probed, seconds))
    if probed is not None and not doc["agree"]:
        bad = [c for c in doc["cells"] if not c["agree"]]
        raise PodnetError(f"{len(bad)} of {len(doc['cells'])} cells disagree between computed and probed")


def render_text(ps: PolicySet, m: Matrix, probed: dict[tuple[str, str], ProbeResult] | None,
                seconds: float) -> str:
    color = sys.stdout.isatty()
    head = f"{m.port}/{m.protocol} (rows: from, columns: to; . allowed, X denied)"
    parts = [grid_text(m.pods, lambda a, b: _cell(m.allowed(a, b)), f"computed: {head}")]
    if probed is not None:
        def probed_cell(a: str, b: str) -> str:
            text = _cell(probed[(a, b)].reached)
            if probed[(a, b)].reached == m.allowed(a, b):
                return text
            return click.style(text + "!", fg="red", bold=True) if color else text + "!"
        parts.append(grid_text(m.pods, probed_cell, f"probed: {head}; ! disagrees with computed"))
    iso = isolation_text(ps, m.pods)
    parts.append("isolated pods (policies selecting them):\n" + ("\n".join(iso) if iso else "  none"))
    if probed is not None:
        bad = [(a, b) for a in m.pods for b in m.pods if probed[(a, b)].reached != m.allowed(a, b)]
        refused = [(a, b) for a in m.pods for b in m.pods if probed[(a, b)].outcome == "refused" and a != b]
        lines = [f"{len(m.pods) ** 2} connections probed in {seconds:.2f} s: "
                 + ("computed and probed agree" if not bad else f"{len(bad)} cells disagree")]
        for a, b in bad:
            v, r = m.cells[(a, b)], probed[(a, b)]
            lines.append(f"  {a} -> {b}: computed {'allowed' if v.allowed else 'denied'} ({v.reason}); "
                         f"probed {r.outcome} ({r.detail})")
        if refused:
            lines.append(f"reached, but nothing listens on {m.port}/{m.protocol}: "
                         + ", ".join(f"{a} -> {b}" for a, b in refused[:12])
                         + (f" and {len(refused) - 12} more" if len(refused) > 12 else ""))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


RENDER_HELP = """Print the iptables-restore payload the kube-network-policies agent writes on
NODE (chains KUBE-NP-*, filter table), touching nothing.

\b
From the running lab, or with -f from manifests alone (a Cluster document,
pods, namespaces and NetworkPolicies; no lab, no root). The jumps from FORWARD
and INPUT (`-m comment --comment "kubernetes network policies"`) are kept
first in those chains by the agent and are not part of the payload.

\b
Examples:
  podnet netpol render --node node1
  podnet netpol render --node node2 -f examples/netpol-demo.yaml
"""


@command.command("render", help=RENDER_HELP, short_help="The iptables rules NODE gets (chains KUBE-NP-*).")
@click.option("--node", required=True, help="The node whose rules to print.")
@click.option("-f", "--filename", "files", multiple=True, type=click.Path(), help="Manifests instead of a lab.")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
def render(node: str, files: tuple[str, ...], lab: str | None) -> None:
    if files:
        the_lab = resolve(parse_docs(load_files(list(files))))
    else:
        the_lab, store = labrt.load(lab)
        store.close()
    if node not in {n.name for n in the_lab.nodes}:
        raise PodnetError(f"no node named {node!r} (nodes: {', '.join(n.name for n in the_lab.nodes)})")
    echo(netpol_iptables.render(PolicySet.from_lab(the_lab), node).rstrip("\n"))
