"""The seed article's "Pod can't reach Service", five steps, as probe plans (pure).

1. basic connectivity: can the pod reach anything? (its gateway, its node)
2. same-node pods: a pod on the same node (the destination itself when it is there)
3. cross-node pods: a pod on another node, with a small ping and a full-size one (DF set): small packets
   passing while full-size ones vanish is the MTU symptom
4. the ClusterIP (or the destination's port): several connections, since kube-proxy picks an endpoint at
   random per connection
5. DNS: the name resolved with the pod's own resolv.conf

A step whose probes all succeed passes; one that has nothing to probe is skipped, saying why.
"""

from __future__ import annotations

from dataclasses import dataclass

from podnet.diagnose.facts import LabFacts, PodFacts

SERVICE_TRIES = 8          # connections to a ClusterIP: one bad endpoint of two is missed with p = 1/256

QUESTIONS = {
    1: ("basic", "basic connectivity", "Can the pod reach anything?"),
    2: ("same-node", "same-node pods", "Can the pod reach other pods on the same node?"),
    3: ("cross-node", "cross-node pods", "Can the pod reach pods on other nodes?"),
    4: ("service", "ClusterIP", "Can the pod reach the ClusterIP?"),
    5: ("dns", "DNS", "Is DNS working?"),
}

# what the failure of each step means (the article's words)
MEANING = {
    1: "a basic connectivity problem (CNI, veth, bridge)",
    2: "a bridge or veth problem",
    3: "an overlay problem",
    4: "a kube-proxy/iptables problem",
    5: "a DNS problem (CoreDNS, resolv.conf)",
}


@dataclass(frozen=True, slots=True)
class Subject:
    """The destination as diagnose understood it."""

    kind: str                     # service, pod, ip
    label: str                    # "svc default/my-service", "pod default/pod-b", "10.1.2.3"
    ip: str
    port: int | None
    proto: str                    # tcp, udp, sctp (icmp when no port)
    name: str | None = None       # the DNS name the user gave (my-service), to resolve in step 5
    service: str | None = None    # ns/name of the Service
    endpoints: tuple[tuple[str, int, str, str], ...] = ()   # (ip, port, node, pod key)
    pod: str | None = None        # ns/name when the destination is a pod


@dataclass(frozen=True, slots=True)
class PlannedProbe:
    kind: str                     # ping | ping-df | connect | dns
    dst: str                      # IP (or the name, for dns)
    about: str
    port: int | None = None
    proto: str = "icmp"
    size: int | None = None       # ping-df: the IP packet size
    tries: int = 1                # connect: how many connections
    expect: str | None = None     # dns: the address the answer must hold


@dataclass(frozen=True, slots=True)
class StepPlan:
    n: int
    probes: tuple[PlannedProbe, ...] = ()
    skip: str = ""                # why there is nothing to probe
    retitle: tuple[str, str] | None = None    # (title, question) when the destination is no Service

    @property
    def name(self) -> str:
        return QUESTIONS[self.n][0]

    @property
    def title(self) -> str:
        return self.retitle[0] if self.retitle else QUESTIONS[self.n][1]

    @property
    def question(self) -> str:
        return self.retitle[1] if self.retitle else QUESTIONS[self.n][2]


def _about(p: PodFacts) -> str:
    return f"pod {p.key} on {p.node}"


def _pick(candidates: list[PodFacts], prefer: list[str]) -> PodFacts | None:
    for ip in prefer:
        for p in candidates:
            if p.ip == ip:
                return p
    # plain workloads first, then cluster components (coredns), by name
    ordered = sorted(candidates, key=lambda p: (p.namespace == "kube-system", p.key))
    return ordered[0] if ordered else None


def plan(facts: LabFacts, src: PodFacts, subject: Subject, src_mtu: int | None) -> list[StepPlan]:
    node = facts.node(src.node)
    steps: list[StepPlan] = []
    # 1. basic
    basic = []
    if node is not None:
        if facts.bridge_mode:
            basic.append(PlannedProbe("ping", node.gateway, f"node {node.name}, cni0: the pod's gateway"))
        basic.append(PlannedProbe("ping", node.ip, f"node {node.name}"))
    steps.append(StepPlan(1, tuple(basic), "" if basic else "the source pod's node is unknown"))

    others = [p for p in facts.pods if not p.host_network and p.running and p.key != src.key and p.ip != src.ip]
    prefer = [ip for ip, _, _, _ in subject.endpoints] + ([subject.ip] if subject.kind in ("pod", "ip") else [])
    # 2. same node
    same = _pick([p for p in others if p.node == src.node], prefer)
    steps.append(StepPlan(2, (PlannedProbe("ping", same.ip, _about(same)),) if same else (),
                          "" if same else f"no other running pod on {src.node}"))
    # 3. other nodes
    far = _pick([p for p in others if p.node != src.node], prefer)
    if far is None:
        why = "the lab has one node" if len(facts.nodes) < 2 else f"no running pod on a node other than {src.node}"
        steps.append(StepPlan(3, (), why))
    else:
        probes = [PlannedProbe("ping", far.ip, _about(far))]
        if src_mtu:
            probes.append(PlannedProbe("ping-df", far.ip, _about(far) + f", full size for mtu {src_mtu}",
                                       size=src_mtu))
        steps.append(StepPlan(3, tuple(probes)))
    # 4. the ClusterIP (or the destination's port)
    if subject.kind == "service" and subject.port is not None:
        steps.append(StepPlan(4, (PlannedProbe("connect", subject.ip, subject.label, subject.port, subject.proto,
                                               tries=SERVICE_TRIES),)))
    elif subject.port is not None:
        steps.append(StepPlan(4, (PlannedProbe("connect", subject.ip, subject.label, subject.port, subject.proto),),
                              retitle=("destination port", f"Can the pod reach {subject.ip}:{subject.port}?")))
    else:
        steps.append(StepPlan(4, (), "no port given (DST:PORT): nothing to connect to",
                              retitle=("destination port", "Can the pod reach the destination's port?")))
    # 5. DNS
    if facts.dns_ip is None:
        steps.append(StepPlan(5, (), "the lab has no cluster DNS"))
    else:
        name, expect = dns_question(facts, src, subject)
        steps.append(StepPlan(5, (PlannedProbe("dns", name, "the pod's resolv.conf", expect=expect),)))
    return steps


def dns_question(facts: LabFacts, src: PodFacts, subject: Subject) -> tuple[str, str | None]:
    """The name step 5 resolves and the address the answer must contain."""
    if subject.kind == "service" and subject.service:
        ns, name = subject.service.split("/", 1)
        if subject.name:
            return subject.name, subject.ip
        return (name if ns == src.namespace else f"{name}.{ns}"), subject.ip
    dns = facts.service_by_ip(facts.dns_ip or "")
    if dns is not None:
        return (f"{dns.name}.{dns.namespace}.svc.{facts.dns_domain}", dns.cluster_ip)
    return (f"kube-dns.kube-system.svc.{facts.dns_domain}", facts.dns_ip)
