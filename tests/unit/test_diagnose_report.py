"""diagnose: the catalogue (stable ids, every fault breakable and repairable), the five steps' plan, the
classification of a failing trace into a cause id, and the report (JSON schema, text)."""

from __future__ import annotations

import json

from podnet.diagnose import catalogue, faults, locate, steps
from podnet.diagnose.facts import Endpoint, LabFacts, NodeFacts, PodFacts, ServiceFacts
from podnet.diagnose.report import SCHEMA_VERSION, Diagnosis, Finding, ProbeResult, StepResult, Where, render_text
from podnet.diagnose.run import symptom
from podnet.trace.model import (
    Disposition,
    DropReason,
    Flow,
    Hop,
    NatChange,
    Outcome,
    RuleRef,
    Step,
    StepKind,
    Trace,
    TraceResult,
)

ISSUE_FAULTS = {"kube-proxy-down", "service-rules-missing", "cni-veth-detached", "cni-pod-route", "cni-config",
                "mtu-mismatch", "netpol-blocking", "vxlan-blocked", "dns-down", "dns-resolv-conf", "stale-conntrack",
                "bgp-session-down", "br-netfilter-off", "hairpin-off"}


def test_catalogue_covers_the_issue_and_every_fault_has_break_and_repair():
    ids = [f.id for f in catalogue.FAULTS]
    assert len(ids) == len(set(ids)) and set(ids) == ISSUE_FAULTS
    assert set(faults.ACTIONS) == ISSUE_FAULTS
    for f in catalogue.FAULTS:
        assert f.cause.fix and f.symptom and f.injects and f.life
        assert set(f.backends) <= set(catalogue.ALL_BACKENDS)
    assert not set(catalogue.CAUSES) - ISSUE_FAULTS - {c.id for c in catalogue.EXTRA_CAUSES}
    for c in catalogue.CAUSES:
        assert c == c.lower() and " " not in c


def test_repair_recognises_rules_made_by_hand():
    save = ("*filter\n:INPUT ACCEPT [0:0]\n"
            "-A INPUT -p udp -m udp --dport 8472 -j DROP\n"
            "-A INPUT -p udp -m udp --dport 53 -j ACCEPT\n"
            "-A OUTPUT -p icmp -m icmp --icmp-type 3/4 -j DROP\n"
            "-A OUTPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT\n"
            "-A INPUT -p tcp -m tcp --sport 179 -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n")
    assert [r for _, r in faults.rules_matching(save, faults.is_vxlan_block)] == [
        "-A INPUT -p udp -m udp --dport 8472 -j DROP"]
    assert [r for _, r in faults.rules_matching(save, faults.is_icmp_frag_block)] == [
        "-A OUTPUT -p icmp -m icmp --icmp-type 3/4 -j DROP"]
    assert len(faults.rules_matching(save, faults.is_bgp_block)) == 1
    assert all(t == "filter" for t, _ in faults.rules_matching(save, lambda t, line: True))


def lab() -> LabFacts:
    return LabFacts(
        lab="x", backend="vxlan", kube_proxy_mode="iptables", underlay_mtu=1500, pod_mtu=1450, dns_ip="10.96.0.10",
        dns_domain="cluster.local", pod_subnet="10.244.0.0/16", service_subnet="10.96.0.0/12",
        nodes=[NodeFacts("node1", "n1", "192.168.1.10", "10.244.1.0/24", "10.244.1.1"),
               NodeFacts("node2", "n2", "192.168.1.11", "10.244.2.0/24", "10.244.2.1")],
        pods=[PodFacts("default/pod-a", "node1", "10.244.1.5", "pa", "veth1"),
              PodFacts("default/pod-b", "node2", "10.244.2.8", "pb", "veth2"),
              PodFacts("kube-system/coredns-1", "node1", "10.244.1.2", "c1", "veth3", "coredns"),
              PodFacts("kube-system/kube-proxy-node1", "node1", "192.168.1.10", "n1", "", "kubeproxy", True)],
        services=[ServiceFacts("default", "my-service", "http", "tcp", "10.96.45.67", 8080,
                               (Endpoint("10.244.2.8", 8080, "node2", "default/pod-b"),)),
                  ServiceFacts("kube-system", "kube-dns", "dns", "udp", "10.96.0.10", 53,
                               (Endpoint("10.244.1.2", 53, "node1", "kube-system/coredns-1"),))])


SVC = steps.Subject("service", "svc default/my-service", "10.96.45.67", 8080, "tcp", "my-service",
                    "default/my-service", (("10.244.2.8", 8080, "node2", "default/pod-b"),))


def test_plan_follows_the_article():
    f = lab()
    plans = steps.plan(f, f.pods[0], SVC, 1450)
    assert [p.n for p in plans] == [1, 2, 3, 4, 5]
    assert [p.dst for p in plans[0].probes] == ["10.244.1.1", "192.168.1.10"]
    assert plans[1].probes[0].dst == "10.244.1.2"                     # the other pod on node1
    assert [(p.kind, p.dst, p.size) for p in plans[2].probes] == [("ping", "10.244.2.8", None),
                                                                  ("ping-df", "10.244.2.8", 1450)]
    assert plans[3].probes[0].tries == steps.SERVICE_TRIES and plans[3].probes[0].port == 8080
    assert (plans[4].probes[0].dst, plans[4].probes[0].expect) == ("my-service", "10.96.45.67")
    pod = steps.Subject("pod", "pod default/pod-b", "10.244.2.8", None, "icmp", pod="default/pod-b",
                        endpoints=(("10.244.2.8", 0, "node2", "default/pod-b"),))
    plans = steps.plan(f, f.pods[0], pod, None)
    assert plans[3].skip and plans[4].probes[0].dst == "kube-dns.kube-system.svc.cluster.local"
    f.dns_ip = None
    assert steps.plan(f, f.pods[0], pod, None)[4].skip == "the lab has no cluster DNS"


def trace(disp: Disposition, steps_: list[tuple[str, str, Step]], reason: DropReason | None = None,
          summary: str = "", final: str = "10.244.1.5 -> 10.244.2.8 ICMP") -> Trace:
    hops = []
    for node, netns, st in steps_:
        hops.append(Hop(node, netns, f"node {node}" if netns.startswith("n") else f"pod {netns}", (st,)))
    return Trace(disp, reason, summary, tuple(hops), final)


def result(t: Trace) -> TraceResult:
    flow = Flow("pa", "x", "icmp", "10.244.1.5", "10.244.2.8", None, None, 84, "pa", "pod default/pod-a", "node1")
    return TraceResult(flow, (Outcome(1.0, None, (), t),))


def classify(t: Trace, probe: ProbeResult, findings: list[Finding] | None = None, direction: str = "forward"):
    f = lab()
    rows = locate._numbered(t)
    last = rows[-1]
    where = Where(last[1], last[2], last[3], None, last[0])
    rule = locate._deciding_rule(t)
    return locate._classify(f, t, direction, rule[0] if rule else None, where, result(t), probe, f.pods[0],
                            findings or [])[0]


PING = ProbeResult("ping", "10.244.2.8", "pod-b", False, "timeout", proto="icmp", dst="10.244.2.8")
CONNECT = ProbeResult("connect", "10.96.45.67:8080/tcp", "svc", False, "timeout", proto="tcp", dst="10.96.45.67",
                      port=8080)


def nf(chain: str, text: str, comment: str | None = None, verdict: str = "DROP") -> Step:
    ref = RuleRef("iptables", "filter", chain, 1, verdict, comment, text)
    return Step(StepKind.NETFILTER, f"{chain}: ...", rules=(ref,), verdict=verdict)


def test_classify_rules_and_dispositions():
    assert classify(trace(Disposition.TOO_BIG, [("node1", "n1", Step(StepKind.MTU, "too big"))]),
                    PING) == "mtu-mismatch"
    assert classify(trace(Disposition.DROPPED, [("node2", "n2", Step(StepKind.BRIDGE, "hairpin"))],
                          DropReason.HAIRPIN_OFF), PING) == "hairpin-off"
    assert classify(trace(Disposition.REJECTED, [("node2", "n2", nf(
        "KUBE-NP-I-ABC", "-A KUBE-NP-I-ABC -j REJECT", "dropped by the default deny ingress of pod default/pod-b",
        "REJECT"))]), PING) == "netpol-blocking"
    assert classify(trace(Disposition.DROPPED, [("node2", "n2", nf(
        "INPUT", "-A INPUT -p udp -m udp --dport 8472 -j DROP"))]), PING) == "vxlan-blocked"
    assert classify(trace(Disposition.NO_ROUTE, [("node1", "pa", Step(StepKind.ROUTE, "no route"))]),
                    PING) == "cni-pod-route"
    assert classify(trace(Disposition.NO_LISTENER, [("node2", "pb", Step(StepKind.DELIVER, "no socket"))]),
                    PING) == "no-listener"


def test_classify_a_service_without_dnat():
    t = trace(Disposition.EXITS_NETWORK, [("node1", "n1", Step(StepKind.ROUTE, "default via 192.168.1.1"))])
    assert classify(t, CONNECT) == "service-rules-missing"
    kp = Finding("kube-proxy-down", "t", "s", where=Where("node1", "node node1", "n1"))
    assert classify(t, CONNECT, [kp]) == "kube-proxy-down"
    nat = Step(StepKind.NAT, "DNAT", nat=NatChange("dnat", "dst", "10.96.45.67:8080", "10.244.2.8:8080"))
    t2 = Trace(Disposition.EXITS_NETWORK, None, "", (Hop("node1", "n1", "node node1", (nat,)),), "")
    assert classify(t2, CONNECT) is None


def test_classify_a_reply_not_un_natted():
    t = trace(Disposition.DROPPED, [("node2", "pb", Step(StepKind.DELIVER, "x"))],
              summary="the reply reaches pod default/pod-b from 10.244.2.9:8080, but it sent to 10.96.45.67:8080: "
                      "the client drops it (not un-NATed)")
    brnf = Finding("br-netfilter-off", "t", "s", where=Where("node2", "node node2", "n2"))
    assert classify(t, CONNECT, [brnf], direction="reply") == "br-netfilter-off"
    assert classify(t, CONNECT, [], direction="reply") is None


def diagnosis(ok: bool) -> Diagnosis:
    probes = (ProbeResult("ping", "10.244.2.8", "pod default/pod-b on node2", True, "reply"),
              ProbeResult("ping-df", "10.244.2.8", "pod default/pod-b on node2", ok, "reply" if ok else "timeout",
                          size=1450))
    st = [StepResult(1, "basic", "basic connectivity", "?", "pass", (probes[0],)),
          StepResult(3, "cross-node", "cross-node pods", "?", "pass" if ok else "fail", probes),
          StepResult(5, "dns", "DNS", "?", "skip", (), "the lab has no cluster DNS")]
    d = Diagnosis("x", "pod default/pod-a", "pod default/pod-b", {"srcIP": "10.244.1.5", "dstIP": "10.244.2.8",
                                                                   "proto": "icmp"}, st, symptom(st))
    if not ok:
        d.cause = Finding("mtu-mismatch", "t", "too big", where=Where("node1", "node node1", "n1", "flannel.1", 8),
                          evidence=["e1", "e2"], fix=["f1"], step=3, explains_flow=True)
        d.findings = [d.cause, Finding("hairpin-off", "t", "hairpin", severity="warning")]
    return d


def test_report_json_and_text():
    d = diagnosis(ok=False)
    doc = json.loads(json.dumps(d.to_json()))
    assert doc["apiVersion"] == SCHEMA_VERSION and doc["healthy"] is False and doc["failedStep"] == 3
    assert doc["cause"]["cause"] == "mtu-mismatch" and doc["cause"]["where"]["dev"] == "flannel.1"
    assert doc["cause"]["explainsFlow"] and [f["cause"] for f in doc["findings"]] == ["mtu-mismatch", "hairpin-off"]
    assert [s["status"] for s in doc["steps"]] == ["pass", "fail", "skip"]
    assert set(doc["steps"][1]["probes"][1]) == {"kind", "target", "about", "ok", "outcome", "detail", "ms", "flow"}
    text = render_text(d)
    assert "symptom   small packets reach pods on other nodes, full-size ones (1450 B) vanish" in text
    assert "cause     mtu-mismatch: too big" in text and "evidence  e1" in text
    assert "(warning)" in text and "FAULT FOUND: mtu-mismatch" in text
    healthy = diagnosis(ok=True)
    assert healthy.healthy and render_text(healthy).rstrip().endswith("no fault found")
    assert healthy.to_json()["cause"] is None
