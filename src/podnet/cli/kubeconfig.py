"""``podnet kubeconfig``: the kubeconfig of a lab's Kubernetes API server (for kubectl and client libraries)."""

from __future__ import annotations

import click

from podnet.api import process
from podnet.cli.output import echo
from podnet.dataplane import lab as labrt
from podnet.errors import PodnetError


@click.command("kubeconfig")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
@click.option("--path", "path_only", is_flag=True, help="Print the kubeconfig's path instead of its content.")
def command(lab: str | None, path_only: bool) -> None:
    """Print the kubeconfig of the lab's API server (context named after the lab, namespace default).

    `podnet up` starts the server on 127.0.0.1 (HTTPS with a CA podnet made for the lab; plain HTTP when
    PODNET_API_HTTP=1 was set for `up`) and writes this file to /run/podnet/<lab>/kubeconfig, so:

        export KUBECONFIG=$(podnet kubeconfig --path); kubectl get pods -A -o wide
    """
    name = labrt.default_lab(lab)
    if name not in labrt.list_labs():
        raise PodnetError(f"no lab named {name!r} (labs: {', '.join(labrt.list_labs()) or 'none'})")
    st = process.running(name)
    if st is None:
        raise PodnetError(f"the API server of lab {name} is not running (run `podnet up` with the lab's file "
                          "again to start it)")
    path = process.kubeconfig_path(name)
    if path_only:
        echo(path)
        return
    with open(path) as f:
        echo(f.read().rstrip("\n"))
