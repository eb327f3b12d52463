from __future__ import annotations

import os
import time

import click

from podnet.cli.output import echo
from podnet.dataplane import lab as labrt
from podnet.errors import PodnetError


@click.command("logs")
@click.argument("pod")
@click.option("-n", "--namespace", default="default", help="The pod's namespace.")
@click.option("-c", "--container", default=None, help="Container (default: the only one).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", type=int, default=-1, help="Only the last N lines.")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
def command(pod: str, namespace: str, container: str | None, follow: bool, tail: int, lab: str | None) -> None:
    """Print a pod's container log: workloads, and the kube-system components (e.g. kube-flannel-node1)."""
    the_lab, store = labrt.load(lab)
    store.close()
    pns, _, pname = pod.rpartition("/")
    p = the_lab.pod(pns or namespace, pname)
    if p is None:
        raise PodnetError(f'pod "{pname}" not found in namespace "{pns or namespace}"')
    cnames = [c.name for c in p.pod.spec.containers]
    if container is None:
        if len(cnames) > 1:
            raise PodnetError(f"pod {p.key} has several containers: choose one with -c ({', '.join(cnames)})")
        container = cnames[0]
    elif container not in cnames:
        raise PodnetError(f"container {container!r} is not in pod {p.key} ({', '.join(cnames)})")
    path = labrt.log_path(the_lab.name, p.namespace, p.name, container)
    if not os.path.exists(path):
        return
    with open(path, errors="replace") as f:
        lines = f.readlines()
        for line in lines[-tail:] if tail >= 0 else lines:
            echo(line.rstrip("\n"))
        while follow:
            line = f.readline()
            if line:
                echo(line.rstrip("\n"))
            else:
                time.sleep(0.2)
