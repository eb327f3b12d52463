"""`podnet diagnose SRC DST[:PORT]`: the seed article's five debugging steps, run for real, ending in a named
cause with evidence."""

from __future__ import annotations

import json
import sys

import click

from podnet.cli.output import echo, progress
from podnet.dataplane import netns


@click.command("diagnose")
@click.argument("src")
@click.argument("dst")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
@click.option("-p", "--proto", type=click.Choice(["tcp", "udp", "sctp"]), default=None,
              help="Protocol for DST:PORT when DST is a pod or an IP (a Service's port says its own).")
@click.option("--timeout", type=float, default=1.0, show_default=True, help="Seconds each probe waits.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              help="json: schema podnet.dev/diagnose/v1 (docs/diagnose.md).")
def command(src: str, dst: str, lab: str | None, proto: str | None, timeout: float, output: str) -> None:
    """Why can't SRC reach DST? The seed's five steps, probed from the source pod: (1) basic connectivity,
    (2) same-node pods, (3) cross-node pods (small and full-size packets), (4) the ClusterIP, (5) DNS with
    the pod's resolv.conf. Then the lab's kernel state is read and checked, and the first failing step's
    flow is traced to the hop and the rule, route, FDB, neighbour or conntrack entry where it stops.

    Prints the symptom, the failing step, the cause (a stable id, see `podnet break --list`), the evidence
    and the fix; then anything else found wrong. SRC is a pod (pod-a, ns/pod, pod/ns/name, its IP); DST a
    pod, svc/ns/name, a Service name as the pod resolves it, or an IP, with :PORT. Exits 1 when a fault is
    found, 0 when none is ("no fault found")."""
    from podnet.diagnose import report
    from podnet.diagnose.run import diagnose

    netns.require_root()
    progress(f"diagnosing {src} -> {dst}")
    d = diagnose(lab, src, dst, proto, timeout)
    if output == "json":
        echo(json.dumps(d.to_json(), indent=2))
    else:
        echo(report.render_text(d, color=sys.stdout.isatty()).rstrip("\n"))
    if not d.healthy:
        raise SystemExit(1)
