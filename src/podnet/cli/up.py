from __future__ import annotations

import click

from podnet.cli.output import echo, progress, warn
from podnet.dataplane import lab as labrt


@click.command("up")
@click.argument("files", nargs=-1, required=True, type=click.Path())
def command(files: tuple[str, ...]) -> None:
    """Create the lab described by FILES (a Cluster document plus Kubernetes manifests).

    Idempotent: on a running lab it converges (creates what is missing, restarts dead pods). A failure
    half-way rolls back what this run created. Needs root.
    """
    result = labrt.up(list(files), progress=progress)
    for w in result.lab.warnings:
        warn(w)
    lab = result.lab
    pods = [p for p in lab.pods if not p.component]
    echo(f"lab {lab.name} is up: {len(lab.nodes)} nodes, {len(pods)} pods, backend "
         f"{lab.cluster.networking.backend} ({len(result.created)} namespaces created, "
         f"{result.started} processes started, {result.seconds:.2f}s)")
    from podnet.api import process

    if process.running(lab.name) is not None:
        echo(f"kubectl: export KUBECONFIG={process.kubeconfig_path(lab.name)}")
