"""BIRD output parsing (sim/bird.py) and the reasons `podnet bgp status` gives (sim/bgp_status.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from podnet.model.lab import resolve
from podnet.model.manifest import parse_docs
from podnet.model.source import load_files
from podnet.sim.bgp_status import SpeakerFacts, explain, status
from podnet.sim.bird import Protocol, parse_protocols, parse_routes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed-bgp.yaml"

# `birdc show protocols all` on tor1 of the example (BIRD 2.0.12), trimmed
TOR_PROTOCOLS = """\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     2026-11-22 18:51:11

kernel1    Kernel     master4    up     2026-11-22 18:51:11
  Channel ipv4
    State:          UP
    Routes:         0 imported, 3 exported, 0 preferred

node1      BGP        ---        up     2026-11-22 18:51:13  Established
  Description:    node node1 (route-reflector client)
  BGP state:          Established
    Neighbor address: 192.168.1.10
    Neighbor AS:      64512
    Local AS:         64512
    Neighbor ID:      192.168.1.10
    Local capabilities
      Multiprotocol
        AF announced: ipv4
    Session:          internal route-reflector AS4
    Source address:   192.168.1.1
    Hold timer:       6.279/9
  Channel ipv4
    State:          UP
    Table:          master4
    Routes:         1 imported, 2 exported, 1 preferred

node2      BGP        ---        start  2026-11-22 18:51:43  Active        Socket: Connection refused
  Description:    node node2 (route-reflector client)
  BGP state:          Active
    Neighbor address: 192.168.1.11
    Neighbor AS:      64512
    Local AS:         64512
    Connect delay:    0.585/1
    Last error:       Socket: Connection refused
  Channel ipv4
    State:          DOWN

core1      BGP        ---        up     2026-11-22 18:51:12  Established
  BGP state:          Established
    Neighbor address: 10.255.0.2
    Neighbor AS:      65000
    Local AS:         64512
  Channel ipv4
    Routes:         2 imported, 1 filtered, 3 exported, 1 preferred
"""

TOR_ROUTES = """\
BIRD 2.0.12 ready.
Table master4:
10.244.1.0/24        unicast [node1 18:51:13.949] * (100) [i]
\tvia 192.168.1.10 on eth0
10.255.0.0/24        unicast [direct1 18:51:11.948] * (240)
\tdev eth1
                     unicast [core1 18:51:12.830] (100) [AS65000i]
\tvia 10.255.0.2 on eth1
10.10.0.0/24         unicast [core1 18:51:12.830 from 10.255.0.2] * (100) [AS65000i]
\tvia 10.255.0.2 on eth1
"""


def test_parse_protocols():
    protos = {p.name: p for p in parse_protocols(TOR_PROTOCOLS)}
    assert set(protos) == {"device1", "kernel1", "node1", "node2", "core1"}
    n1 = protos["node1"]
    assert (n1.proto, n1.state, n1.since, n1.info) == ("BGP", "up", "2026-11-22 18:51:13", "Established")
    assert n1.neighbor == "192.168.1.10" and n1.details["Local AS"] == "64512"
    assert (n1.imported, n1.exported) == (1, 2)
    n2 = protos["node2"]
    assert n2.info == "Active Socket: Connection refused" and n2.bgp_state == "Active"
    assert n2.last_error == "Socket: Connection refused" and n2.imported is None
    assert (protos["core1"].imported, protos["core1"].exported) == (2, 3)


def test_parse_routes():
    routes = parse_routes(TOR_ROUTES)
    assert [(r.net, r.proto, r.best) for r in routes] == [
        ("10.244.1.0/24", "node1", True), ("10.255.0.0/24", "direct1", True),
        ("10.255.0.0/24", "core1", False), ("10.10.0.0/24", "core1", True)]
    assert routes[0].via == [("192.168.1.10", "eth0")] and routes[1].dev == "eth1"
    assert routes[3].source == "10.255.0.2"


@pytest.fixture(scope="module")
def fab():
    return resolve(parse_docs(load_files([str(EXAMPLE)]))).cluster.bgp


def bgp(name: str, neighbor: str, info: str = "Established", local_as: int = 64512, neighbor_as: int = 64512,
        state: str = "up", error: str = "") -> Protocol:
    details = {"Neighbor address": neighbor, "Local AS": str(local_as), "Neighbor AS": str(neighbor_as),
               "BGP state": info.split()[0] if info else ""}
    if error:
        details["Last error"] = error
    return Protocol(name, "BGP", "---", state, "2026-11-22 18:51:13", info, details)


def facts(name: str, *protos: Protocol, running: bool = True, firewall: tuple[str, ...] = ()) -> SpeakerFacts:
    return SpeakerFacts(name, f"pn-t-{name}", running, protocols=list(protos), firewall=list(firewall))


def tor_sees_node2(fab):
    return next(s for s in fab.sessions("tor1") if s.peer == "node2")


def test_reasons(fab):
    s = tor_sees_node2(fab)
    ok = bgp("node2", "192.168.1.11")
    node2_side = bgp("Node_192_168_1_1", "192.168.1.1", "Connect", state="start")
    tor = facts("tor1", ok)
    assert explain(s, tor, ok, facts("node2", node2_side)) is None
    down = bgp("node2", "192.168.1.11", "Active Socket: Connection refused", state="start",
               error="Socket: Connection refused")
    dead = facts("node2", running=False)
    dead.not_running_why = "its calico-node-node2 pod is not running"
    assert explain(s, facts("tor1", down), down, dead) == (
        "peer node2's BIRD is not running (connections to TCP 179 are refused): its calico-node-node2 pod is "
        "not running")
    assert explain(s, facts("tor1", running=False), None, dead).startswith("BIRD is not running on tor1")
    # the peer runs but has no session for us
    reset = bgp("node2", "192.168.1.11", "Active Socket: Connection reset by peer", state="start",
                error="Socket: Connection reset by peer")
    assert "no peer configured: node2 (192.168.1.11) has no BGP session for tor1 192.168.1.1" in explain(
        s, facts("tor1", reset), reset, facts("node2"))
    # AS mismatch, either direction
    bad = bgp("Node_192_168_1_1", "192.168.1.1", "Idle Received: Bad peer AS", local_as=64999, state="start")
    idle = bgp("node2", "192.168.1.11", "Idle BGP Error: Bad peer AS", state="start", error="BGP Error: Bad peer AS")
    assert explain(s, facts("tor1", idle), idle, facts("node2", bad)) == (
        "AS mismatch: tor1 expects AS 64512 for node2, but node2 speaks AS 64999")
    # a firewall rule on the peer
    connect = bgp("node2", "192.168.1.11", "Connect", state="start")
    rule = "-A INPUT -p tcp -m tcp --dport 179 -j DROP"
    assert explain(s, facts("tor1", connect), connect, facts("node2", node2_side, firewall=(rule,))) == (
        f"TCP 179 blocked in pn-t-node2: {rule}")
    # no answer at all, and an unreachable peer
    assert "no answer from node2 192.168.1.11 on TCP 179" in explain(s, facts("tor1", connect), connect,
                                                                     facts("node2", node2_side))
    unreach = bgp("node2", "192.168.1.11", "Active Socket: No route to host", state="start",
                  error="Socket: No route to host")
    assert "is unreachable from tor1 (Socket: No route to host)" in explain(s, facts("tor1", unreach), unreach,
                                                                            facts("node2", node2_side))
    lost = bgp("node2", "192.168.1.11", "Connect BGP Error: Hold timer expired", state="start",
               error="BGP Error: Hold timer expired")
    silent = facts("tor1", lost)
    assert explain(s, silent, lost, facts("node2", node2_side)).startswith("node2 192.168.1.11 stopped answering")
    silent.unreachable.add("192.168.1.11")
    assert explain(s, silent, lost, facts("node2", node2_side)) == (
        "peer node2 192.168.1.11 is unreachable from tor1: no answer to ping (BGP Error: Hold timer expired)")
    cut = bgp("node2", "192.168.1.11", "Idle Error: Link down", state="start", error="Error: Link down")
    assert "the link from tor1 toward it is down" in explain(s, facts("tor1", cut), cut, facts("node2", node2_side))
    disabled = bgp("node2", "192.168.1.11", "", state="down")
    assert explain(s, facts("tor1", disabled), disabled, facts("node2")).startswith("session disabled on tor1")


def test_status_document(fab):
    estab = {
        "node1": facts("node1", bgp("Node_192_168_1_1", "192.168.1.1")),
        "node2": facts("node2", running=False),
        "tor1": facts("tor1", *parse_protocols(TOR_PROTOCOLS)),
        "core1": facts("core1", bgp("tor1", "10.255.0.1", local_as=65000)),
    }
    estab["tor1"].routes = parse_routes(TOR_ROUTES)
    doc = status("t", fab, estab)
    assert doc["apiVersion"] == "podnet.dev/v1alpha1" and doc["kind"] == "BGPStatus"
    assert doc["sessions"] == {"established": 4, "total": 6} and doc["established"] is False
    by = {sp["name"]: sp for sp in doc["speakers"]}
    assert by["node2"]["reason"].startswith("BIRD is not running on node2")
    tor = {p["name"]: p for p in by["tor1"]["peers"]}
    assert tor["node1"]["established"] and tor["node1"]["type"] == "node (rr client)"
    assert tor["node2"]["reason"].startswith("peer node2's BIRD is not running")
    assert tor["core1"]["routes"] == {"imported": 2, "exported": 3}
    assert [(r["prefix"], r["peer"], r["via"]) for r in by["tor1"]["routes"]] == [
        ("10.244.1.0/24", "node1", ["192.168.1.10"]), ("10.255.0.0/24", "core1", ["10.255.0.2"]),
        ("10.10.0.0/24", "core1", ["10.255.0.2"])]
