"""`podnet break FAULT` / `podnet repair FAULT`: inject and undo a classic failure in a running lab."""

from __future__ import annotations

import json

import click

from podnet.cli.output import echo, table
from podnet.dataplane import netns
from podnet.diagnose import catalogue
from podnet.errors import PodnetError


def _options(f):
    f = click.option("--namespace", default=None, help="Namespace (netpol-blocking).")(f)
    f = click.option("--service", default=None, help="Service as ns/name[:port] (service-rules-missing, "
                     "stale-conntrack).")(f)
    f = click.option("--pod", default=None, help="Pod as name or ns/name (faults of one pod).")(f)
    f = click.option("--node", default=None, help="Node (faults of one node).")(f)
    f = click.option("--lab", default=None, help="Lab name (default: the only running lab).")(f)
    return f


def _list(output: str) -> None:
    if output == "json":
        echo(json.dumps({"apiVersion": "podnet.dev/faults/v1", "faults": [
            {"id": f.id, "title": f.cause.title, "family": f.cause.family, "life": f.life, "injects": f.injects,
             "symptom": f.symptom, "heals": f.heals or None, "options": list(f.options),
             "defaults": f.defaults or None, "backends": list(f.backends), "needs": f.needs or None,
             "fix": f.cause.fix} for f in catalogue.FAULTS],
            "otherCauses": [{"id": c.id, "title": c.title, "fix": c.fix} for c in catalogue.EXTRA_CAUSES]},
            indent=2))
        return
    rows = [[f.id, f.symptom, ", ".join("--" + o for o in f.options) or "-",
             ",".join(f.backends) if len(f.backends) < 3 else "all"] for f in catalogue.FAULTS]
    echo(table(["FAULT", "SYMPTOM", "OPTIONS", "BACKENDS"], rows))
    echo("")
    echo("Each FAULT is also the cause id `podnet diagnose` reports (docs/diagnose.md). Details: "
         "podnet break --list -o json")


@click.command("break")
@click.argument("fault", required=False)
@_options
@click.option("--list", "list_", is_flag=True, help="List the faults (with -o json: every detail).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def break_command(fault: str | None, lab: str | None, node: str | None, pod: str | None, service: str | None,
                  namespace: str | None, list_: bool, output: str) -> None:
    """Inject FAULT into a running lab, the way it happens in life (podnet break --list shows them).

    Nothing is recorded for `podnet diagnose`: it finds the fault from the kernel state, as it would a fault
    made by hand. `podnet repair FAULT` undoes it."""
    if list_ or fault is None:
        if fault is None and not list_:
            raise PodnetError("name a FAULT (podnet break --list shows them)", field="FAULT")
        _list(output)
        return
    _run("break", fault, lab, dict(node=node, pod=pod, service=service, namespace=namespace))


@click.command("repair")
@click.argument("fault")
@_options
def repair_command(fault: str, lab: str | None, node: str | None, pod: str | None, service: str | None,
                   namespace: str | None) -> None:
    """Undo FAULT, whoever made it: repair looks at the state (not at what break did) and applies the fix a
    person would (restart the component, delete the rule, set the sysctl, restore the file, ...)."""
    _run("repair", fault, lab, dict(node=node, pod=pod, service=service, namespace=namespace))


def _run(action: str, fault: str, lab: str | None, opts: dict[str, str | None]) -> None:
    from podnet.diagnose import faults

    netns.require_root()
    catalogue.fault(fault)
    done = faults.do(fault, action, lab, opts)
    for line in done:
        echo(f"  {line}")
    if action == "break":
        echo(f"broke {fault}: {catalogue.fault(fault).cause.title}")
    else:
        echo(f"repaired {fault}" if done else f"{fault}: nothing to repair")
