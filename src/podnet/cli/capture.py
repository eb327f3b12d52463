"""`podnet capture SRC DST[:PORT]`: the seed's "tcpdump at each hop", with the pcaps interpreted."""

from __future__ import annotations

import json
import os
import time

import click

from podnet.cli.output import echo, progress, table
from podnet.dataplane import netns


@click.command("capture")
@click.argument("src")
@click.argument("dst")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
@click.option("-p", "--proto", type=click.Choice(["tcp", "udp", "icmp"]), default=None,
              help="What to send (default: tcp with a port, icmp echo without).")
@click.option("--size", type=click.IntRange(28, 9000), default=None,
              help="IP packet size in bytes, sent with DF set (icmp/udp; tcp: one full-size segment after the "
                   "handshake); only packets this big count as the flow's.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where the pcaps go (default: ./podnet-capture-<time>).")
@click.option("--timeout", type=float, default=1.0, show_default=True, help="Seconds to wait for an answer.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              help="json: schema podnet.dev/capture/v1 (docs/diagnose.md).")
def command(src: str, dst: str, lab: str | None, proto: str | None, size: int | None, directory: str | None,
            timeout: float, output: str) -> None:
    """Send one flow from pod SRC to DST while tcpdump runs on every interface of its path (pod eth0, host
    veth, cni0, flannel.1, node eth0, the underlay, and the same on the far side), one pcap per hop named
    after it; then say where the packet was last seen and what that means, as the seed article does
    ("seen at cni0 but not at flannel.1: routing problem"). Exit 1 unless the flow was answered."""
    from podnet.dataplane import capture as cap
    from podnet.dataplane import icmpprobe
    from podnet.diagnose import hops
    from podnet.diagnose.run import lab_facts, resolve_src, resolve_subject
    from podnet.trace import places as placesmod

    netns.require_root()
    the_lab, facts = lab_facts(lab, bgp_status=False)
    s = resolve_src(facts, src)
    subject = resolve_subject(facts, placesmod.from_lab(the_lab), s, dst, proto if proto != "icmp" else None)
    flow_proto = proto or subject.proto
    port = subject.port if flow_proto != "icmp" else None
    if flow_proto != "icmp" and port is None:
        raise click.UsageError(f"{flow_proto} needs DST:PORT")
    dsts = [p for p in (facts.pod(e[3]) for e in subject.endpoints) if p is not None and not p.host_network]
    path = hops.plan_path(facts, s, dsts)
    directory = directory or f"podnet-capture-{time.strftime('%Y%m%d-%H%M%S')}"
    os.makedirs(directory, exist_ok=True)
    sport, ident = cap.pick_ids()
    bpf = ("arp", "or", "icmp", "or", "host", s.ip, "or", "port", str(sport), "or", "udp", "port", str(hops.VXLAN_PORT))
    taps = [cap.Tap(h.netns, h.dev, os.path.join(directory, h.file(i + 1)), bpf) for i, h in enumerate(path)]
    progress(f"capturing on {len(taps)} interfaces")
    sent = cap.capture(taps, s.netns, subject.ip, flow_proto, port, size, sport, ident, timeout)
    probe = hops.Probe(s.ip, hops.dst_ips(subject.ip, [e[0] for e in subject.endpoints]), flow_proto,
                       sport if flow_proto != "icmp" else None, ident if flow_proto == "icmp" else None, size)
    seen = []
    for t in taps:
        try:
            with open(t.path, "rb") as f:
                seen.append(hops.count(hops.read_pcap(f.read()), probe))
        except OSError:
            seen.append(hops.HopSeen())
    mtus = {}
    for h in path:
        m = icmpprobe.link_mtu(h.netns, h.dev)
        if m:
            mtus[(h.netns, h.dev)] = m
    v = hops.interpret(path, seen, probe, hops.branches(dsts), mtus)
    doc = {"apiVersion": "podnet.dev/capture/v1", "lab": facts.lab, "src": f"pod {s.key}", "dst": subject.label,
           "flow": {"proto": flow_proto, "srcIP": s.ip, "dstIP": subject.ip, "port": port, "size": size,
                    "sport": probe.sport, "icmpID": probe.icmp_id},
           "sent": {"outcome": sent.outcome, "detail": sent.detail}, "dir": os.path.abspath(directory),
           "hops": [{"n": i + 1, "node": h.node, "place": h.place, "netns": h.netns, "dev": h.dev, "kind": h.kind,
                     "file": os.path.basename(t.path), **seen[i].to_json()} for i, (h, t) in enumerate(
                         zip(path, taps, strict=True))],
           "lastSeen": None if v.last_forward is None else {"n": v.last_forward + 1, "node": path[v.last_forward].node,
                                                            "dev": path[v.last_forward].dev,
                                                            "place": path[v.last_forward].place},
           "replyLastSeen": None if v.last_reply is None else {"n": v.last_reply + 1, "dev": path[v.last_reply].dev,
                                                               "place": path[v.last_reply].place},
           "delivered": v.delivered, "answered": v.answered, "endpoint": v.branch or None, "meaning": v.meaning}
    if output == "json":
        echo(json.dumps(doc, indent=2))
    else:
        f = doc["flow"]
        what = f"{flow_proto.upper()}" + (f" :{port}" if port else "") + (f", {size} B DF" if size else "")
        echo(f"capture  {doc['src']} ({s.ip}) -> {doc['dst']} ({subject.ip}) {what}   lab {facts.lab}")
        echo(f"sent     {sent.outcome}" + (f" ({sent.detail})" if sent.detail else ""))
        echo(f"pcaps    {doc['dir']}")
        echo("")
        rows = [[str(x["n"]), x["place"], x["dev"], x["file"], str(x["forward"]), str(x["reply"]),
                 "; ".join(x["icmpErrors"]) or ("ARP unanswered: " + ", ".join(x["arpUnanswered"])
                                                 if x["arpUnanswered"] else "")] for x in doc["hops"]]
        echo(table(["#", "WHERE", "INTERFACE", "FILE", "FORWARD", "REPLY", "NOTE"], rows))
        echo("")
        ls = doc["lastSeen"]
        echo("last seen " + (f"{ls['place']} {ls['dev']} (hop {ls['n']})" if ls else "nowhere"))
        echo(f"meaning   {v.meaning}")
    if not v.answered:
        raise SystemExit(1)
