"""`podnet bgp status`: every BGP speaker's sessions as `calicoctl node status` shows them, and why not."""

from __future__ import annotations

import json

import click

from podnet.cli.output import echo
from podnet.dataplane import bird
from podnet.dataplane import lab as labrt
from podnet.errors import PodnetError
from podnet.sim import bgp_status

COLUMNS = ["PEER", "PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]


@click.group("bgp")
def group() -> None:
    """BGP of a bgp-backend lab (BIRD on every node and router)."""


def boxed(headers: list[str], rows: list[list[str]]) -> str:
    """calicoctl's table: +---+ borders, centred headers."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    def line(cells: list[str], centre: bool = False) -> str:
        return "|" + "|".join(f" {(c.center(w) if centre else c.ljust(w))} " for c, w in zip(cells, widths,
                                                                                         strict=True)) + "|"
    return "\n".join([rule, line(headers, centre=True), rule, *(line(r) for r in rows), rule])


def _since(value: str) -> str:
    return value.split(" ")[-1] if value else "-"


def render(doc: dict) -> str:
    out: list[str] = []
    s = doc["sessions"]
    for sp in doc["speakers"]:
        what = {"node": "node", "tor": "top-of-rack router", "core": "core router"}.get(sp["kind"], sp["kind"])
        head = f"{sp['name']} ({what}, AS {sp['asNumber']}, router id {sp['routerID']}): "
        head += f"BIRD is running (pid {sp['bird']['pid']})." if sp["bird"]["running"] else "BIRD is NOT running."
        out.append(head)
        if sp["reason"]:
            out.append(f"  why: {sp['reason']}")
        if sp["peers"]:
            out.append("IPv4 BGP status")
            rows = [[p["name"], p["address"], p["type"], p["state"], _since(p["since"]),
                     p["info"] or ("Established" if p["established"] else "-")] for p in sp["peers"]]
            out.append(boxed(COLUMNS, rows))
            for p in sp["peers"]:
                if p["reason"]:
                    out.append(f"  {p['name']} {p['address']}: {p['reason']}")
        if sp["routes"]:
            out.append("Routes learned:")
            for r in sp["routes"]:
                via = ", ".join(r["via"]) or r["dev"] or "-"
                out.append(f"  {r['prefix']:<18} via {via:<15} from {r['peer'] or r['protocol']}"
                           + ("" if r["best"] else "  (not best)"))
        out.append("")
    verdict = "all sessions Established" if doc["established"] else "NOT all sessions Established"
    out.append(f"{s['established']}/{s['total']} sessions Established: {verdict}")
    return "\n".join(out)


@group.command("status")
@click.argument("speaker", required=False)
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              help="json: schema podnet.dev/v1alpha1 BGPStatus (docs/bgp.md).")
def status(speaker: str | None, lab: str | None, output: str) -> None:
    """Each node's and router's BGP sessions (address, type, state, since, info as `calicoctl node status`),
    the reason when one is not Established, and the routes it learned. SPEAKER limits it to one node or
    router. Exits 1 unless every session shown is Established."""
    the_lab, store = labrt.load(lab)
    try:
        fab = the_lab.cluster.bgp
        if fab is None:
            raise PodnetError(f"lab {the_lab.name} uses the {the_lab.cluster.networking.backend} backend: "
                              "no BGP here (networking.backend: bgp)")
        if speaker is not None and speaker not in fab.speakers():
            raise PodnetError(f"no node or router named {speaker!r} (have: {', '.join(fab.speakers())})")
        doc = bgp_status.status(the_lab.name, fab, bird.collect(the_lab, store))
    finally:
        store.close()
    if speaker is not None:
        doc["speakers"] = [sp for sp in doc["speakers"] if sp["name"] == speaker]
        peers = [p for sp in doc["speakers"] for p in sp["peers"]]
        doc["sessions"] = {"established": sum(p["established"] for p in peers), "total": len(peers)}
        doc["established"] = all(p["established"] for p in peers) and not doc["speakers"][0]["reason"]
    echo(json.dumps(doc, indent=2) if output == "json" else render(doc))
    if not doc["established"]:
        raise SystemExit(1)


command = group
