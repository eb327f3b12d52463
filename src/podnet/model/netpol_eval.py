"""What a set of NetworkPolicies means for pods: pure evaluation, attribution and the truth table.

The semantics are upstream's (``reference/networkpolicy.md``, the e2e suite, Cyclonus' matcher):

- a pod is isolated in a direction once a policy of its own namespace selects it (``spec.podSelector``)
  and has that direction in its effective ``policyTypes``; a pod not isolated accepts everything;
- an isolated pod accepts a connection when at least one rule of one of those policies matches the
  peer (``from``/``to``: any of its peers; none listed: every peer) and the port (any ``ports`` entry;
  none listed: every port and protocol); policies are a union, without order or deny rules;
- a connection between pods needs the source's egress and the destination's ingress;
- peers: ``podSelector`` alone selects pods of the policy's namespace, ``namespaceSelector`` alone every
  pod of the matching namespaces, both in one peer the AND; ``ipBlock`` matches addresses, pod IPs
  included (as the upstream e2e suite expects), minus its ``except`` CIDRs;
- named ports are resolved per pod: against the destination pod (ingress: the selected pod; egress:
  the peer), and never match a destination that is not a pod; ``endPort`` is an inclusive range;
- hostNetwork pods are not pods for policy purposes: selectors never match them and they are never
  isolated (their traffic is node traffic, which an ``ipBlock`` of the node IP can match);
- a pod's traffic to its own IP never leaves its network namespace: policy does not apply to it.

Everything here is computed from the lab model (``Lab``), so the same code answers ``netpol matrix``,
attributes drops, and feeds the rule compiler (``podnet.compile.netpol_iptables``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from podnet.model.lab import Lab, PlacedPod
from podnet.model.netpol import EGRESS, INGRESS, NetworkPolicy, Peer, PolicyPort, Rule

SYSTEM_NAMESPACE = "kube-system"


@dataclass(frozen=True)
class PodPort:
    name: str
    port: int
    protocol: str


@dataclass(frozen=True)
class PodInfo:
    """What policy needs to know about one (pod-network) pod."""

    namespace: str
    name: str
    ip: ipaddress.IPv4Address
    node: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[PodPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def named_port(self, name: str, protocol: str) -> int | None:
        """The container port called ``name`` with ``protocol`` (Kubernetes resolves names per pod)."""
        return next((p.port for p in self.ports if p.name == name and p.protocol == protocol), None)

    @classmethod
    def of(cls, p: PlacedPod) -> PodInfo:
        ports = tuple(PodPort(cp.name, cp.container_port, cp.protocol)
                      for c in p.pod.spec.containers for cp in c.ports)
        return cls(p.namespace, p.name, p.ip, p.node, tuple(sorted(p.pod.meta.labels.items())), ports)


@dataclass(frozen=True)
class RuleRef:
    """Rule ``index`` of ``direction`` in policy ``policy`` (``ns/name``): ``x/p ingress[0]``."""

    policy: str
    direction: str
    index: int

    def __str__(self) -> str:
        return f"{self.policy} {self.direction.lower()}[{self.index}]"


@dataclass(frozen=True)
class DirectionVerdict:
    """The decision of one side: the source's egress or the destination's ingress."""

    direction: str
    pod: str                                  # ns/name, "" when that side is not a pod
    isolated: bool
    allowed: bool
    policies: tuple[str, ...] = ()            # policies isolating the pod in this direction
    allowed_by: tuple[RuleRef, ...] = ()      # every rule that allows the flow
    port_misses: tuple[str, ...] = ()         # policies with a rule matching the peer but not the port
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "pod": self.pod or None, "isolated": self.isolated,
                "allowed": self.allowed, "policies": list(self.policies),
                "allowedBy": [str(r) for r in self.allowed_by], "reason": self.reason}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress: DirectionVerdict
    ingress: DirectionVerdict
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "reason": self.reason, "egress": self.egress.to_dict(),
                "ingress": self.ingress.to_dict()}


@dataclass(frozen=True)
class Endpoint:
    """One end of a flow: a pod, or a bare address (a node, an external host)."""

    ip: ipaddress.IPv4Address
    pod: PodInfo | None = None

    @property
    def label(self) -> str:
        return self.pod.key if self.pod else str(self.ip)


def deny_reason(direction: str, pod: str, policies: Iterable[str]) -> str:
    """The sentence naming a default deny (also the comment of the kernel rule that enforces it)."""
    return (f"dropped by the default deny {direction.lower()} of pod {pod} "
            f"(policies selecting it: {', '.join(policies)})")


def port_miss_reason(policies: Iterable[str], port: int, protocol: str) -> str:
    pols = list(policies)
    noun = "policy" if len(pols) == 1 else "policies"
    return f"no rule of {noun} {', '.join(pols)} allows port {port}/{protocol}"


@dataclass
class PolicySet:
    """The policies of a lab, with the pods and namespace labels they are evaluated against."""

    policies: list[NetworkPolicy]
    pods: list[PodInfo]
    namespaces: dict[str, dict[str, str]]              # name -> labels (incl. kubernetes.io/metadata.name)
    _by_ip: dict[ipaddress.IPv4Address, PodInfo] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.policies = sorted(self.policies, key=lambda p: p.key)
        self.pods = sorted(self.pods, key=lambda p: p.key)
        self._by_ip = {p.ip: p for p in self.pods}

    @classmethod
    def from_lab(cls, lab: Lab) -> PolicySet:
        pods = [PodInfo.of(p) for p in lab.pods if not p.host_network]
        return cls(list(lab.networkpolicies), pods, {n: dict(ns.labels) for n, ns in lab.namespaces.items()})

    # -- lookups --------------------------------------------------------------------------------------
    def pod(self, key: str) -> PodInfo | None:
        return next((p for p in self.pods if p.key == key), None)

    def pod_by_ip(self, ip: ipaddress.IPv4Address) -> PodInfo | None:
        return self._by_ip.get(ip)

    def endpoint(self, ip: ipaddress.IPv4Address | str) -> Endpoint:
        ip = ipaddress.IPv4Address(ip)
        return Endpoint(ip, self._by_ip.get(ip))

    def selecting(self, pod: PodInfo, direction: str) -> list[NetworkPolicy]:
        """Policies that isolate ``pod`` in ``direction`` (sorted by ns/name)."""
        return [p for p in self.policies if p.namespace == pod.namespace and p.applies(direction)
                and p.pod_selector.matches(pod.label_map)]

    def isolated(self, pod: PodInfo, direction: str) -> bool:
        return bool(self.selecting(pod, direction))

    def peer_pods(self, policy: NetworkPolicy, peer: Peer) -> list[PodInfo]:
        """The pods a selector peer selects (an ipBlock peer: the pods whose IP it holds)."""
        if peer.ip_block is not None:
            return [p for p in self.pods if peer.ip_block.contains(p.ip)]
        return [p for p in self.pods if self._selector_peer_matches(policy, peer, p)]

    def _selector_peer_matches(self, policy: NetworkPolicy, peer: Peer, pod: PodInfo) -> bool:
        if peer.namespace_selector is None:
            if pod.namespace != policy.namespace:
                return False
        elif not peer.namespace_selector.matches(self.namespaces.get(pod.namespace, {})):
            return False
        return peer.pod_selector is None or peer.pod_selector.matches(pod.label_map)

    def peer_matches(self, policy: NetworkPolicy, peer: Peer, ep: Endpoint) -> bool:
        if peer.ip_block is not None:
            return peer.ip_block.contains(ep.ip)
        return ep.pod is not None and self._selector_peer_matches(policy, peer, ep.pod)

    @staticmethod
    def port_matches(pp: PolicyPort, port: int, protocol: str, target: PodInfo | None) -> bool:
        """Does ``ports`` entry ``pp`` allow ``port``/``protocol`` toward ``target`` (the destination pod)?"""
        if pp.protocol != protocol:
            return False
        if pp.port is None:
            return True
        if isinstance(pp.port, str):
            return target is not None and target.named_port(pp.port, protocol) == port
        if pp.end_port is not None:
            return pp.port <= port <= pp.end_port
        return pp.port == port

    def rule_matches(self, policy: NetworkPolicy, rule: Rule, peer: Endpoint, port: int, protocol: str,
                     target: PodInfo | None) -> tuple[bool, bool]:
        """(peer matches, peer and port match)."""
        peer_ok = not rule.peers or any(self.peer_matches(policy, p, peer) for p in rule.peers)
        if not peer_ok:
            return False, False
        port_ok = not rule.ports or any(self.port_matches(pp, port, protocol, target) for pp in rule.ports)
        return True, port_ok

    # -- evaluation ---------------------------------------------------------------------------------
    def direction(self, pod: PodInfo | None, direction: str, peer: Endpoint, port: int, protocol: str,
                  target: PodInfo | None) -> DirectionVerdict:
        """The verdict of ``pod``'s ``direction`` for a flow with ``peer`` on ``port``/``protocol``."""
        if pod is None:
            return DirectionVerdict(direction, "", False, True, reason=f"{direction.lower()}: not a pod")
        policies = self.selecting(pod, direction)
        names = tuple(p.key for p in policies)
        if not policies:
            return DirectionVerdict(direction, pod.key, False, True,
                                    reason=f"{direction.lower()} of pod {pod.key} is not isolated "
                                           f"(no policy selects it for {direction})")
        allowed_by: list[RuleRef] = []
        misses: list[str] = []
        for pol in policies:
            for i, rule in enumerate(pol.rules(direction)):
                peer_ok, ok = self.rule_matches(pol, rule, peer, port, protocol, target)
                if ok:
                    allowed_by.append(RuleRef(pol.key, direction, i))
                elif peer_ok and pol.key not in misses:
                    misses.append(pol.key)
        if allowed_by:
            return DirectionVerdict(direction, pod.key, True, True, names, tuple(allowed_by),
                                    reason=f"{direction.lower()} of pod {pod.key} allowed by {allowed_by[0]}")
        reason = (port_miss_reason(misses, port, protocol) if misses
                  else deny_reason(direction, pod.key, names))
        return DirectionVerdict(direction, pod.key, True, False, names, (), tuple(misses), reason)

    def evaluate(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> Verdict:
        """Is a new connection from ``src`` to ``dst``:``port``/``protocol`` allowed (after Service DNAT)?"""
        if src.pod is not None and dst.pod is not None and src.pod.key == dst.pod.key:
            why = "a pod's traffic to its own IP never leaves its network namespace (no policy applies)"
            eg = DirectionVerdict(EGRESS, src.pod.key, False, True, reason=why)
            ing = DirectionVerdict(INGRESS, dst.pod.key, False, True, reason=why)
            return Verdict(True, eg, ing, why)
        eg = self.direction(src.pod, EGRESS, dst, port, protocol, dst.pod)
        ing = self.direction(dst.pod, INGRESS, src, port, protocol, dst.pod)
        allowed = eg.allowed and ing.allowed
        if allowed:
            parts = [v.reason for v in (eg, ing) if v.isolated]
            reason = "; ".join(parts) if parts else "neither side is isolated"
        else:
            reason = "; ".join(v.reason for v in (eg, ing) if not v.allowed)
        return Verdict(allowed, eg, ing, reason)

    def matrix(self, port: int, protocol: str = "TCP", pods: list[PodInfo] | None = None) -> Matrix:
        pods = self.matrix_pods() if pods is None else pods
        cells = {(a.key, b.key): self.evaluate(Endpoint(a.ip, a), Endpoint(b.ip, b), port, protocol)
                 for a in pods for b in pods}
        return Matrix([p.key for p in pods], port, protocol, cells)

    def matrix_pods(self, namespaces: Iterable[str] | None = None) -> list[PodInfo]:
        """The pods of a truth table: those of ``namespaces``, else every pod outside kube-system."""
        if namespaces:
            wanted = set(namespaces)
            return [p for p in self.pods if p.namespace in wanted]
        return [p for p in self.pods if p.namespace != SYSTEM_NAMESPACE]


@dataclass
class Matrix:
    """The truth table: rows are sources, columns destinations (``ns/pod`` keys)."""

    pods: list[str]
    port: int
    protocol: str
    cells: dict[tuple[str, str], Verdict]

    def allowed(self, src: str, dst: str) -> bool:
        return self.cells[(src, dst)].allowed

    def grid(self) -> list[list[bool]]:
        return [[self.allowed(a, b) for b in self.pods] for a in self.pods]
