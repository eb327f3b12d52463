"""diagnose's state checks over real dump files (tests/fixtures/snapshot, made by real commands), each fault
written into the dumps the way the kernel would show it: the checks must name it by cause id, with the
offending link, route, rule, entry or file line as evidence, and find nothing on the untouched dumps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podnet.diagnose import checks, locate
from podnet.diagnose.facts import Endpoint, LabFacts, NodeFacts, PodFacts, ServiceFacts
from podnet.diagnose.report import ProbeResult
from podnet.sim.dumpdir import FILE_NAMES, netns_from_dumps
from podnet.sim.snapshot import Snapshot
from podnet.sim.world import World
from podnet.trace.places import Place, Places

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "snapshot"
FLANNEL = json.dumps({"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
    {"type": "portmap", "capabilities": {"portMappings": True}}]}, indent=2)
RESOLV = "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"


def texts(ns: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in (FIXTURES / ns).iterdir() if p.name in FILE_NAMES}


def with_rule(save: str, table: str, rule: str) -> str:
    """``rule`` appended to ``table`` of an iptables-save text (the table added when missing)."""
    lines = save.splitlines()
    if f"*{table}" not in lines:
        return save + f"*{table}\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rule}\nCOMMIT\n"
    out, inside = [], False
    for ln in lines:
        if ln == f"*{table}":
            inside = True
        if inside and ln == "COMMIT":
            out.append(rule)
            inside = False
        out.append(ln)
    return "\n".join(out) + "\n"


def edit_json(text: str, fn) -> str:
    data = json.loads(text)
    fn(data)
    return json.dumps(data)


def snapshot(**edits) -> Snapshot:
    """The fixture snapshot; ``edits[ns]`` is a function changing that namespace's texts in place."""
    out = {}
    for ns in ("node1", "node2", "pod"):
        t = texts(ns)
        if ns in edits:
            edits[ns](t)
        out[ns] = netns_from_dumps(ns, t)
    return Snapshot(out)


def facts(**kw) -> LabFacts:
    f = LabFacts(
        lab="fx", backend="vxlan", kube_proxy_mode="iptables", underlay_mtu=1500, pod_mtu=1450, dns_ip="10.96.0.10",
        dns_domain="cluster.local", pod_subnet="10.244.0.0/16", service_subnet="10.96.0.0/12",
        nodes=[NodeFacts("node1", "node1", "192.168.1.10", "10.244.1.0/24", "10.244.1.1"),
               NodeFacts("node2", "node2", "192.168.1.11", "10.244.2.0/24", "10.244.2.1")],
        pods=[PodFacts("default/pod-a", "node1", "10.244.1.5", "pod", "veth1a2b3c4d"),
              PodFacts("kube-system/kube-proxy-node1", "node1", "192.168.1.10", "node1", "", "kubeproxy", True)],
        services=[ServiceFacts("default", "my-service", "http", "tcp", "10.96.45.67", 8080,
                               (Endpoint("10.244.1.5", 8080, "node1", "default/pod-a"),))],
        cni_configs={"node1": {"10-flannel.conflist": FLANNEL}, "node2": {"10-flannel.conflist": FLANNEL}},
        resolv_confs={"pod": RESOLV}, resolv_expected={"pod": RESOLV})
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def places() -> Places:
    return Places({"node1": Place("node1", "node", "node1", "node1", "192.168.1.10"),
                   "node2": Place("node2", "node", "node2", "node2", "192.168.1.11"),
                   "pod": Place("pod", "pod", "default/pod-a", "node1", "10.244.1.5", RESOLV)})


def run(f: LabFacts, snap: Snapshot):
    return checks.run_checks(f, snap, World(snap), places())


def causes(found) -> list[str]:
    return [x.cause for x in found if x.severity == "fault"]


def test_untouched_dumps_are_healthy():
    assert causes(run(facts(), snapshot())) == []


def test_br_netfilter_off():
    def off(t):
        t["sysctl.txt"] = t["sysctl.txt"].replace("net.bridge.bridge-nf-call-iptables = 1",
                                                  "net.bridge.bridge-nf-call-iptables = 0")
    found = run(facts(), snapshot(node1=off))
    f = next(x for x in found if x.cause == "br-netfilter-off")
    assert f.where.node == "node1" and "net.bridge.bridge-nf-call-iptables = 0" in f.evidence[0]
    assert "sysctl -w net.bridge.bridge-nf-call-iptables=1" in f.fix[0]


def test_hairpin_off_and_detached_veth():
    def hairpin_off(t):
        t["bridge-link.json"] = edit_json(t["bridge-link.json"], lambda d: d[0].update(hairpin=False))
        t["ip-link.json"] = edit_json(t["ip-link.json"], lambda d: [
            x["linkinfo"]["info_slave_data"].update(hairpin=False) for x in d
            if x.get("linkinfo", {}).get("info_slave_data")])
    found = run(facts(), snapshot(node1=hairpin_off))
    f = next(x for x in found if x.cause == "hairpin-off")
    assert f.severity == "fault"        # pod-a backs my-service
    assert "veth1a2b3c4d" in f.summary and "hairpin off" in f.evidence[0]

    def detach(t):
        t["ip-link.json"] = edit_json(t["ip-link.json"], lambda d: [
            (x.pop("master", None), x.get("linkinfo", {}).pop("info_slave_data", None),
             x.get("linkinfo", {}).pop("info_slave_kind", None)) for x in d])
        t["bridge-link.json"] = "[]"
    found = run(facts(), snapshot(node1=detach))
    f = next(x for x in found if x.cause == "cni-veth-detached")
    assert "no master" in f.summary and f.fix[0].endswith("ip link set veth1a2b3c4d master cni0")


def test_pod_routes():
    def no_default(t):
        t["ip-route.json"] = edit_json(t["ip-route.json"], lambda d: d.pop(0))
    f = next(x for x in run(facts(), snapshot(pod=no_default)) if x.cause == "cni-pod-route")
    assert "no default route" in f.summary and "10.244.1.0/24 dev eth0" in f.evidence[0]

    def wrong_gw(t):
        t["ip-route.json"] = t["ip-route.json"].replace('"gateway":"10.244.1.1"', '"gateway":"10.244.1.254"')
    f = next(x for x in run(facts(), snapshot(pod=wrong_gw)) if x.cause == "cni-pod-route")
    assert "10.244.1.254" in f.summary and "10.244.1.1" in f.summary


def big_mtu(t):
    t["ip-link.json"] = edit_json(t["ip-link.json"], lambda d: [x.update(mtu=1500) for x in d if x["ifname"] == "eth0"])


def test_mtu_mismatch_is_a_warning_while_icmp_gets_through_and_a_fault_when_dropped():
    found = run(facts(), snapshot(pod=big_mtu))
    f = next(x for x in found if x.cause == "mtu-mismatch")
    assert f.severity == "warning" and "flannel.1 is 1450" in f.evidence[0]

    def block(t):
        t["iptables-save.txt"] = with_rule(t["iptables-save.txt"], "filter",
                                           "-A OUTPUT -p icmp -m icmp --icmp-type 3/4 -j DROP")
    found = run(facts(), snapshot(pod=big_mtu, node1=block))
    f = next(x for x in found if x.cause == "mtu-mismatch")
    assert f.severity == "fault"
    assert any("--icmp-type 3/4 -j DROP" in e for e in f.evidence)


def drop_vxlan(t):
    t["iptables-save.txt"] = with_rule(t["iptables-save.txt"], "filter", "-A INPUT -p udp -m udp --dport 8472 -j DROP")


def test_vxlan_blocked_names_the_node_and_the_rule():
    f = next(x for x in run(facts(), snapshot(node2=drop_vxlan)) if x.cause == "vxlan-blocked")
    assert f.where.node == "node2" and "node1 -> node2" in f.summary
    assert "--dport 8472 -j DROP" in f.evidence[0]
    assert f.fix[-1].endswith("iptables -t filter -D INPUT -p udp -m udp --dport 8472 -j DROP")


def test_stale_conntrack():
    dns = ServiceFacts("kube-system", "kube-dns", "dns", "udp", "10.96.0.10", 53,
                       (Endpoint("10.244.1.2", 53, "node1", "kube-system/coredns-x"),))
    found = run(facts(services=[*facts().services, dns]), snapshot())
    f = next(x for x in found if x.cause == "stale-conntrack")
    assert "10.244.2.9:53" in f.summary and "sport=5353" in f.evidence[0]
    assert f.fix[0].endswith("conntrack -D -p udp --orig-dst 10.96.0.10 --reply-src 10.244.2.9")
    # the same entry is fine while 10.244.2.9 is an endpoint
    ok = ServiceFacts("kube-system", "kube-dns", "dns", "udp", "10.96.0.10", 53,
                      (Endpoint("10.244.2.9", 53, "node2", "kube-system/coredns-y"),))
    assert "stale-conntrack" not in causes(run(facts(services=[*facts().services, ok]), snapshot()))


def test_service_rules_missing_and_kube_proxy_down():
    new = ServiceFacts("default", "new-svc", "http", "tcp", "10.96.7.7", 80)
    f = facts(services=[*facts().services, new], nodes=facts().nodes[:1])
    found = run(f, snapshot())
    srm = next(x for x in found if x.cause == "service-rules-missing")
    assert "default/new-svc" in srm.summary and "10.96.7.7:80/TCP" in srm.evidence[0]
    # the same, with the node's kube-proxy stopped: one finding, kube-proxy-down, holding the evidence
    pods = [facts().pods[0], PodFacts("kube-system/kube-proxy-node1", "node1", "192.168.1.10", "node1", "",
                                      "kubeproxy", True, running=False, state="stopped")]
    found = run(facts(services=[*facts().services, new], nodes=facts().nodes[:1], pods=pods), snapshot())
    assert "service-rules-missing" not in causes(found)
    kp = next(x for x in found if x.cause == "kube-proxy-down")
    assert "stopped" in kp.evidence[0] and any("10.96.7.7" in e for e in kp.evidence)


def test_dns_down_needs_every_replica_down():
    reps = [PodFacts(f"kube-system/coredns-{i}", "node1", f"10.244.1.{i}", f"c{i}", f"vethc{i}", "coredns",
                     running=i == 2) for i in (2, 3)]
    found = checks.check_components(facts(pods=reps))
    assert [x.cause for x in found] == ["component-down"] and found[0].severity == "warning"
    reps = [PodFacts(p.key, p.node, p.ip, p.netns, p.host_veth, "coredns", running=False) for p in reps]
    assert [x.cause for x in checks.check_components(facts(pods=reps))] == ["dns-down"]


@pytest.mark.parametrize("files, words", [
    (None, "empty"),
    ({}, "empty"),
    ({"10-flannel.conflist": "{not json"}, "invalid JSON"),
    ({"10-flannel.conflist": FLANNEL.replace('"flannel"', '"flanel"')}, 'type "flanel" does not exist'),
    ({"10-flannel.conflist": FLANNEL.replace('"hairpinMode": true', '"hairpinMode": false')}, "hairpinMode false"),
    ({"10-flannel.conflist": FLANNEL.replace('"isDefaultGateway": true', '"isDefaultGateway": false')},
     "isDefaultGateway false"),
    ({"00-a.conf": json.dumps({"type": "bridge"}), "10-flannel.conflist": FLANNEL}, 'first plugin is "bridge"'),
])
def test_cni_config_problems(files, words):
    problems = checks.cni_problems(files, "flannel", 1450)
    assert problems and words in problems[0]


def test_cni_config_valid_and_finding():
    assert checks.cni_problems({"10-flannel.conflist": FLANNEL}, "flannel", 1450) == []
    found = checks.check_cni_config(facts(cni_configs={"node1": {}, "node2": {"10-flannel.conflist": FLANNEL}}))
    assert [(x.cause, x.where.node) for x in found] == [("cni-config", "node1")]


def test_resolv_conf_wrong_nameserver_and_search():
    bad = RESOLV.replace("10.96.0.10", "10.96.0.11")
    f = checks.check_resolv_conf(facts(resolv_confs={"pod": bad}))[0]
    assert f.cause == "dns-resolv-conf" and "nameserver 10.96.0.11" in f.evidence[1]
    f = checks.check_resolv_conf(facts(resolv_confs={"pod": "nameserver 10.96.0.10\n"}))[0]
    assert "search" in f.summary
    assert checks.check_resolv_conf(facts(resolv_confs={"pod": None}))[0].cause == "dns-resolv-conf"


def test_bgp_sessions_once_per_pair():
    doc = {"speakers": [
        {"name": "node1", "netns": "n1", "peers": [{"name": "tor1", "address": "192.168.1.1", "established": False,
                                                     "protocol": "Node_192_168_1_1", "info": "Connect",
                                                     "reason": "TCP 179 blocked in n1: -A INPUT ... -j DROP"}]},
        {"name": "tor1", "netns": "t1", "peers": [{"name": "node1", "address": "192.168.1.10", "established": False,
                                                    "protocol": "Node_192_168_1_10", "info": "Active",
                                                    "reason": "no answer"}]}]}
    found = checks.check_bgp(facts(bgp=doc))
    assert len(found) == 1 and found[0].cause == "bgp-session-down" and found[0].where.node == "node1"
    assert "TCP 179" in found[0].fix[0]


# -- locate: a failing probe traced over the same dumps ----------------------------------------------------
def test_locate_vxlan_drop_from_the_trace():
    snap = snapshot(node2=drop_vxlan)
    world, pl = World(snap), places()
    f = facts()
    found = checks.run_checks(f, snap, world, pl)
    probe = ProbeResult("ping", "10.244.2.0", "node node2", False, "timeout", proto="icmp", dst="10.244.2.0")
    loc = locate.locate(f, world, pl, f.pods[0], probe, found)
    assert loc.cause == "vxlan-blocked"
    assert loc.where is not None and loc.where.node == "node2"
    assert any("--dport 8472 -j DROP" in e for e in loc.evidence)
    finding = locate.to_finding(loc, 3, found)
    assert finding.explains_flow and finding.step == 3


def test_locate_pod_without_default_route():
    def no_default(t):
        t["ip-route.json"] = edit_json(t["ip-route.json"], lambda d: d.pop(0))
    snap = snapshot(pod=no_default)
    f = facts()
    found = checks.run_checks(f, snap, World(snap), places())
    probe = ProbeResult("ping", "192.168.1.11", "node node2", False, "error", proto="icmp", dst="192.168.1.11")
    loc = locate.locate(f, World(snap), places(), f.pods[0], probe, found)
    assert loc.cause == "cni-pod-route" and loc.where.netns == "pod"


def test_locate_unexplained_when_the_state_predicts_delivery():
    snap = snapshot()
    f = facts()
    probe = ProbeResult("ping", "10.244.1.1", "node node1", False, "timeout", proto="icmp", dst="10.244.1.1")
    loc = locate.locate(f, World(snap), places(), f.pods[0], probe, [])
    assert loc.cause == "unexplained" and "predicts delivery" in loc.summary
