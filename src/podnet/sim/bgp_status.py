"""The BGP status of a lab, explained (pure): what every speaker's BIRD reports, checked against the
peering plan (model/bgp.py), with the reason why a session is not Established.

Input: per speaker a ``SpeakerFacts`` (is BIRD running, ``birdc show protocols all`` and ``show route``
parsed by sim/bird.py, firewall rules that mention TCP 179). Output: a JSON-ready document, schema
``podnet.dev/v1alpha1`` kind ``BGPStatus`` (docs/bgp.md). Reasons are decided in this order, each
with the evidence that shows it:

1. BIRD is not running on the speaker (and why: its calico-node pod is down, ...);
2. the session is administratively disabled (``birdc disable``);
3. the peer's BIRD is not running (the speaker's connects are refused);
4. no peer configured: the peer's BIRD has no session for the speaker's address;
5. AS mismatch: one side expects another AS than the other side speaks;
6. TCP 179 blocked: a firewall rule on either side drops or rejects BGP;
7. the peer is unreachable (the link is down, no answer to ping, no route);
8. otherwise BIRD's own state and last error.
A speaker with no session at all gets "no peer configured".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podnet.model.bgp import Fabric, Session
from podnet.sim.bird import Protocol, Route

SCHEMA = {"apiVersion": "podnet.dev/v1alpha1", "kind": "BGPStatus"}
UNREACHABLE = ("No route to host", "Host is unreachable", "Network is unreachable", "unreachable")


@dataclass
class SpeakerFacts:
    name: str
    netns: str
    running: bool
    pid: int | None = None
    socket: str = ""
    not_running_why: str = ""               # e.g. "calico-node-node2 is not running"
    protocols: list[Protocol] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    firewall: list[str] = field(default_factory=list)   # rules mentioning TCP 179 (DROP/REJECT)
    unreachable: set[str] = field(default_factory=set)  # peer addresses that did not answer a ping

    def bgp(self) -> list[Protocol]:
        return [p for p in self.protocols if p.proto == "BGP"]

    def protocol(self, name: str) -> Protocol | None:
        return next((p for p in self.protocols if p.name == name), None)

    def session_for(self, neighbor: str) -> Protocol | None:
        return next((p for p in self.bgp() if p.neighbor == neighbor), None)


def _asn(p: Protocol | None, key: str) -> int | None:
    try:
        return int(p.details[key]) if p else None
    except (KeyError, ValueError):
        return None


def explain(s: Session, local: SpeakerFacts, proto: Protocol | None, peer: SpeakerFacts | None) -> str | None:
    """Why session ``s`` (as ``local`` sees it) is not Established; None when it is."""
    if not local.running:
        return f"BIRD is not running on {s.local}" + (f" ({local.not_running_why})" if local.not_running_why else "")
    if proto is None:
        return (f"no peer configured: {s.local}'s BIRD has no session {s.protocol} for {s.peer} {s.peer_ip} "
                "(its configuration is out of date or was edited)")
    if proto.info.startswith("Established"):
        return None
    if proto.state == "down":
        return f"session disabled on {s.local} (birdc disable {proto.name}; `birdc enable {proto.name}` restores it)"
    err = proto.last_error or (proto.info.split(None, 1)[1] if len(proto.info.split(None, 1)) > 1 else "")
    if peer is not None and not peer.running:
        refused = " (connections to TCP 179 are refused)" if "refused" in err.lower() else ""
        why = f": {peer.not_running_why}" if peer.not_running_why else ""
        return f"peer {s.peer}'s BIRD is not running{refused}{why}"
    if peer is not None:
        theirs = peer.session_for(str(s.local_ip))
        if theirs is None:
            return (f"no peer configured: {s.peer} ({s.peer_ip}) has no BGP session for {s.local} {s.local_ip}, "
                    "so it closes our connections")
        want, speaks = _asn(proto, "Neighbor AS"), _asn(theirs, "Local AS")
        if want is not None and speaks is not None and want != speaks:
            return f"AS mismatch: {s.local} expects AS {want} for {s.peer}, but {s.peer} speaks AS {speaks}"
        want, speaks = _asn(theirs, "Neighbor AS"), _asn(proto, "Local AS")
        if want is not None and speaks is not None and want != speaks:
            return f"AS mismatch: {s.peer} expects AS {want} for {s.local}, but {s.local} speaks AS {speaks}"
        if theirs.state == "down":
            return f"session disabled on the peer {s.peer} (birdc disable {theirs.name})"
    if "Bad peer AS" in err:
        return f"AS mismatch reported by BGP: {err}"
    for who in (local, peer):
        if who is not None and who.firewall:
            return f"TCP 179 blocked in {who.netns}: {who.firewall[0]}"
    if "Link down" in err:
        return f"peer {s.peer} {s.peer_ip} is unreachable: the link from {s.local} toward it is down (no carrier)"
    if str(s.peer_ip) in local.unreachable:
        return f"peer {s.peer} {s.peer_ip} is unreachable from {s.local}: no answer to ping" + (
            f" ({err})" if err else "")
    if any(u in err for u in UNREACHABLE):
        return f"peer {s.peer} {s.peer_ip} is unreachable from {s.local} ({err})"
    if "Hold timer expired" in err:
        return (f"{s.peer} {s.peer_ip} stopped answering (hold timer expired) and does not accept a new "
                "connection yet")
    if not err and proto.bgp_state in ("Connect", "Active"):
        return (f"no answer from {s.peer} {s.peer_ip} on TCP 179 (state {proto.bgp_state}): packets are lost "
                "between the two (a firewall, a link down, a wrong address)")
    return f"state {proto.bgp_state or proto.state}" + (f": {err}" if err else "")


def speaker_reason(fab: Fabric, name: str, facts: SpeakerFacts) -> str | None:
    if not facts.running:
        return f"BIRD is not running on {name}" + (f" ({facts.not_running_why})" if facts.not_running_why else "")
    if not fab.sessions(name):
        return ("no peer configured: the node-to-node mesh is off (bgp.nodeToNodeMesh: false) and no router "
                f"serves {name}")
    return None


def learned_routes(facts: SpeakerFacts, peers_by_protocol: dict[str, str]) -> list[dict]:
    out = []
    for r in facts.routes:
        p = facts.protocol(r.proto)
        if p is None or p.proto != "BGP":
            continue
        out.append({"prefix": r.net, "via": [v for v, _ in r.via], "dev": r.via[0][1] if r.via else r.dev,
                    "protocol": r.proto, "peer": peers_by_protocol.get(r.proto, ""), "best": r.best})
    return out


def status(lab_name: str, fab: Fabric, facts: dict[str, SpeakerFacts]) -> dict:
    speakers = []
    total = up = 0
    for name in fab.speakers():
        f = facts[name]
        sessions = fab.sessions(name)
        peers = []
        for s in sessions:
            proto = f.protocol(s.protocol) if f.running else None
            reason = explain(s, f, proto, facts.get(s.peer))
            ok = reason is None
            total += 1
            up += ok
            peers.append({
                "name": s.peer, "address": str(s.peer_ip), "asNumber": s.peer_asn, "type": s.peer_type,
                "protocol": s.protocol, "state": proto.state if proto else "down",
                "since": proto.since if proto else "", "info": proto.info if proto else "",
                "bgpState": proto.bgp_state if proto else "", "lastError": proto.last_error if proto else "",
                "established": ok, "reason": reason,
                "routes": {"imported": proto.imported, "exported": proto.exported} if proto else None,
            })
        kind = "node" if fab.is_node(name) else fab.router(name).role  # type: ignore[union-attr]
        speakers.append({
            "name": name, "kind": kind, "netns": f.netns, "asNumber": fab.asn(name),
            "routerID": str(fab.router_id(name)),
            "bird": {"running": f.running, "pid": f.pid, "socket": f.socket},
            "reason": speaker_reason(fab, name, f), "peers": peers,
            "routes": learned_routes(f, {s.protocol: s.peer for s in sessions}),
        })
    return {**SCHEMA, "lab": lab_name, "established": up == total and all(s["reason"] is None for s in speakers),
            "sessions": {"established": up, "total": total}, "speakers": speakers}
