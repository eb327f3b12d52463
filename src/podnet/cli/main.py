"""podnet's entry point: a click group; each verb lives in its own module."""

from __future__ import annotations

import sys

import click

from podnet import __version__
from podnet.errors import PodnetError


class Group(click.Group):
    """Turns PodnetError (and only it) into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PodnetError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except OSError as e:  # a file or system call failed: say which, in one line
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            click.echo(f"error: {e.strerror or e}{where}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="podnet")
def cli() -> None:
    """podnet: Kubernetes pod and service networking, really running on this host, and explained.

    Nodes and pods are named network namespaces (pn-<lab>-...), wired as flannel (VXLAN or host-gw)
    does; `ip netns exec` works on all of them. Start with `podnet up examples/seed-vxlan.yaml`.
    """


def _register() -> None:
    from podnet.cli import down, exec_, get, kubeconfig, logs, status, up
    from podnet.cli.apply import apply_command, delete_command
    from podnet.cli.bgp import command as bgp
    from podnet.cli.break_ import break_command, repair_command
    from podnet.cli.capture import command as capture
    from podnet.cli.diagnose import command as diagnose
    from podnet.cli.netpol import command as netpol
    from podnet.cli.proxy import proxy
    from podnet.cli.snapshot import group as snapshot
    from podnet.cli.trace import command as trace

    for mod in (up, down, get, exec_, logs, status, kubeconfig):
        cli.add_command(mod.command)
    cli.add_command(apply_command)
    cli.add_command(delete_command)
    cli.add_command(proxy)
    cli.add_command(trace)
    cli.add_command(snapshot)
    cli.add_command(netpol)
    cli.add_command(bgp)
    cli.add_command(break_command)
    cli.add_command(repair_command)
    cli.add_command(diagnose)
    cli.add_command(capture)


_register()


def main() -> None:
    cli(prog_name="podnet")
