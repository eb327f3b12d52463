"""``podnet trace``: a packet's whole journey through the kernel's state, rule by rule."""

from __future__ import annotations

import sys

import click

from podnet.cli.output import echo, progress
from podnet.errors import PodnetError

HELP = """Trace a packet from SRC to DST[:PORT] through the kernel's real state.

\b
The state is read back from every namespace of the running lab (root), or
loaded from dump files with --snapshot DIR (no root: see `podnet snapshot`).
The tracer walks it as Linux would: routing, veth, bridges and their FDB,
netfilter (iptables and nftables) with conntrack and NAT, VXLAN, MTU, ARP,
and the listening socket; then the reply back, un-NATed by conntrack.

\b
SRC and DST: pod-a, ns/pod, pod/ns/name, svc/ns/name or a Service name
(resolved as the source pod's resolver would: my-service ->
my-service.default.svc.cluster.local), node/NAME, host/NAME, a namespace
name, or an IP. A source IP that no namespace holds (an external client)
enters at --at NODE[:IFACE].

\b
Random load balancing (statistic, numgen) is reported as every possible
endpoint with its probability; --endpoint IP shows the path to that one.
Exit status: 0 when delivered (every possible path, or the one picked with
--endpoint), 1 otherwise; with --verify, 2 when the kernel disagrees.

\b
Examples:
  podnet trace pod-a my-service:8080
  podnet trace pod-a my-service:8080 --endpoint 10.244.2.9 -o mermaid
  podnet trace pod-a pod-b:8080 --size 1480 -p udp
  podnet trace 192.168.1.50 node/node1:30080 --at node1
  podnet trace pod-a my-service:8080 --snapshot ./snap -o json
"""


def _live(lab: str | None, with_verify: bool):  # type: ignore[no-untyped-def]
    from podnet.dataplane import lab as labrt
    from podnet.dataplane.netns import require_root
    from podnet.dataplane.readback import read_snapshot
    from podnet.trace.places import from_lab, infer

    try:
        require_root()
    except PodnetError as e:
        raise PodnetError(f"{e} (or trace a saved state with --snapshot DIR)") from None
    the_lab, store = labrt.load(lab)
    store.close()
    namespaces = labrt.lab_namespaces(the_lab.name)
    progress(f"reading {len(namespaces)} namespaces of lab {the_lab.name}")
    snap = read_snapshot(namespaces)
    return the_lab, snap, infer(snap, from_lab(the_lab))


@click.command("trace", help=HELP)
@click.argument("src")
@click.argument("dst")
@click.option("-p", "--protocol", "proto", type=click.Choice(["tcp", "udp", "sctp", "icmp"]), default="tcp",
              show_default=True)
@click.option("--size", type=click.IntRange(28, 65535), default=None,
              help="IP packet size in bytes (default: a TCP SYN 60, UDP 28, ICMP echo 84). DF is set.")
@click.option("--endpoint", default=None, metavar="IP[:PORT]", help="Follow the branch that goes to this endpoint.")
@click.option("--sport", type=click.IntRange(1, 65535), default=None,
              help="Source port (ICMP: echo id); default 40000. Matching a conntrack entry makes it win.")
@click.option("--at", "at", default=None, metavar="NODE[:IFACE]",
              help="Where a raw source IP enters (an external client's packet arriving on IFACE).")
@click.option("--snapshot", "snapshot_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Trace over a dump directory instead of the running lab.")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
@click.option("-o", "--output", type=click.Choice(["text", "json", "mermaid"]), default="text", show_default=True)
@click.option("--verify", is_flag=True, help="Send the real packet in the lab and check the predicted path "
              "against rule counters, conntrack and captures.")
def command(src: str, dst: str, proto: str, size: int | None, endpoint: str | None, sport: int | None,
            at: str | None, snapshot_dir: str | None, lab: str | None, output: str, verify: bool) -> None:
    from podnet.trace.engine import Question, run_trace
    from podnet.trace.render_json import render_json
    from podnet.trace.render_mermaid import render_mermaid
    from podnet.trace.render_text import render_text

    q = Question(src, dst, proto, size, endpoint, sport, at)
    if snapshot_dir is not None:
        if verify:
            raise PodnetError("--verify sends real packets: it needs the running lab, not --snapshot", field="--verify")
        from podnet.sim.dumpdir import load_snapshot
        from podnet.trace.places import load_places

        snap = load_snapshot(snapshot_dir)
        places = load_places(snapshot_dir, snap)
        the_lab = None
    else:
        the_lab, snap, places = _live(lab, verify)
    import gc

    gc.freeze()          # the snapshot lives until exit: keep its millions of objects out of GC passes
    res = run_trace(snap, places, q)
    report = None
    if verify:
        from podnet.dataplane.verify import verify_trace

        report = verify_trace(the_lab, snap, places, q, res, progress=progress)
        res = report.result
    if output == "json":
        from podnet.trace.render_json import to_dict

        if report is not None:
            import json

            doc = to_dict(res)
            doc["verify"] = report.to_dict()
            echo(json.dumps(doc, indent=2))
        else:
            echo(render_json(res).rstrip("\n"))
    elif output == "mermaid":
        echo(render_mermaid(res).rstrip("\n"))
    else:
        echo(render_text(res, color=sys.stdout.isatty()).rstrip("\n"))
        if report is not None:
            echo("")
            echo(report.text().rstrip("\n"))
    if report is not None and not report.agree:
        sys.exit(2)
    if not res.ok:
        sys.exit(1)
