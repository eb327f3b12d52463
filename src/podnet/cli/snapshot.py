"""``podnet snapshot``: save a running lab's kernel state as dump files, or show the commands that
take the same dump on a real node."""

from __future__ import annotations

import click

from podnet.cli.output import echo, progress
from podnet.sim.dumpdir import dump_commands


@click.group("snapshot", help="Kernel-state snapshots: what `podnet trace` walks (see docs/snapshot.md).")
def group() -> None:
    pass


@group.command("save")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
def save(directory: str, lab: str | None) -> None:
    """Write the state of every namespace of a running lab into DIRECTORY.

    One subdirectory per namespace, named as the kernel names it (pn-<lab>-...), holding the output
    of the same commands an SRE runs on a real node (`podnet snapshot commands`), plus
    podnet-places.json saying which namespace is which node or pod and what Services exist.
    `podnet trace --snapshot DIRECTORY` then works offline, without root.
    """
    from podnet.dataplane import lab as labrt
    from podnet.dataplane.netns import require_root
    from podnet.dataplane.readback import read_snapshot
    from podnet.sim.dumpdir import save_snapshot
    from podnet.trace.places import from_lab, infer, save_places

    require_root()
    the_lab, store = labrt.load(lab)
    store.close()
    namespaces = labrt.lab_namespaces(the_lab.name)
    progress(f"reading {len(namespaces)} namespaces")
    snap = read_snapshot(namespaces)
    save_snapshot(snap, directory)
    save_places(infer(snap, from_lab(the_lab)), directory)
    echo(f"saved {len(snap.namespaces)} namespaces of lab {the_lab.name} to {directory}")


@group.command("commands")
def commands() -> None:
    """Print the commands that dump one namespace (run them as root in an empty directory named
    after the node; prefix each with `ip netns exec NETNS` for another namespace)."""
    for c in dump_commands():
        echo(c)
