"""``podnet apply -f`` / ``podnet delete -f``: change a running lab's objects, as kubectl does."""

from __future__ import annotations

import sys

import click

from podnet.cli.output import echo, progress
from podnet.dataplane import lab as labrt

FILES = click.option("-f", "--filename", "files", multiple=True, required=True, type=click.Path(),
                     help="Manifest file or directory; repeatable.")
LAB = click.option("--lab", default=None, help="The lab (default: the only one running).")


@click.command("apply")
@FILES
@LAB
def apply_command(files: tuple[str, ...], lab: str | None) -> None:
    """Add or change objects in a running lab (Pods, Deployments, Services, EndpointSlices,
    NetworkPolicies, Namespaces).

    Each object replaces the stored one of the same kind, namespace and name, whole: its labels become
    the file's (a running pod's labels change in place; its spec is immutable, as in Kubernetes). New
    pods are wired and started; pods a Deployment no longer has are removed. kube-proxy, the cluster DNS
    and the other components pick the change up within a second. A failure rolls back the namespaces
    this run created. Prints one line per object, as kubectl: created, configured or unchanged.
    """
    for c in labrt.apply(list(files), lab, progress=progress):
        echo(c.line())


@click.command("delete")
@FILES
@LAB
def delete_command(files: tuple[str, ...], lab: str | None) -> None:
    """Remove the objects named in FILES from a running lab (a Namespace takes its objects with it).

    Pods are stopped and their namespaces removed; Services lose their rules within a second (UDP
    conntrack entries toward removed endpoints are deleted, as kube-proxy does). Objects that do not
    exist are reported as kubectl does, and make the exit status 1.
    """
    missing = False
    for c in labrt.delete(list(files), lab, progress=progress):
        if c.action == "not found":
            click.echo(c.line(), err=True)
            missing = True
        else:
            echo(c.line())
    if missing:
        sys.exit(1)
