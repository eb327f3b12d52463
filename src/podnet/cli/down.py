from __future__ import annotations

import click

from podnet.cli.output import echo
from podnet.dataplane import lab as labrt
from podnet.errors import PodnetError


@click.command("down")
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Remove every podnet lab and every pn-* leftover.")
def command(name: str | None, all_: bool) -> None:
    """Remove exactly what podnet made for lab NAME: namespaces, processes, /etc/netns files, state.

    With --all, also sweep leftovers of a crashed or killed `up` (every pn-* namespace).
    """
    if all_:
        removed = labrt.teardown_all()
        echo(f"removed {len(removed)} namespaces")
        return
    if name is None:
        labs = labrt.list_labs()
        if len(labs) != 1:
            raise PodnetError("name the lab to remove, or use --all" + (
                f" (labs: {', '.join(labs)})" if labs else " (no lab is running)"))
        name = labs[0]
    if name not in labrt.list_labs() and not labrt.lab_namespaces(name):
        raise PodnetError(f"no lab named {name!r}")
    removed = labrt.teardown(name)
    echo(f"lab {name} removed ({len(removed)} namespaces)")
