"""NetworkPolicy as iptables rules: the ``iptables-restore`` payload of one node (pure).

Where: the node's ``filter`` table. ``FORWARD`` jumps first to ``KUBE-NP-FORWARD`` (pod to pod, pod to
anything routed, anything to a pod: bridged same-node traffic reaches it through br_netfilter, routed
``cali*`` traffic directly), ``INPUT`` to ``KUBE-NP-INPUT`` (a pod's egress to its own node). FORWARD
runs after ``nat PREROUTING``, so a connection to a ClusterIP is judged on its DNATed destination, as
upstream requires. Traffic a node sends itself (``OUTPUT``) is never filtered: ingress from the pod's own
node is always allowed.

Rules key on pod IPs only (no interface names, no ipsets), so they work on every backend and every
tool that reads ``iptables-save`` (``podnet trace``) can follow them:

```
KUBE-NP-FORWARD   replies (ctstate RELATED,ESTABLISHED) RETURN; then, per pod of this node,
                  -s <pod IP> -j KUBE-NP-E-<hash>   when the pod is isolated for egress
                  -d <pod IP> -j KUBE-NP-I-<hash>   when the pod is isolated for ingress
KUBE-NP-INPUT     replies RETURN; -s <pod IP> -j KUBE-NP-E-<hash> (egress to the node itself)
KUBE-NP-E-<hash>  one rule per (policy rule, peer address, port): -d <peer> [-p P --dport N] -j RETURN,
                  comment "<ns/policy> egress[<i>]: to <peer> <port>"; last rule: the default deny,
                  -j REJECT --reject-with icmp-admin-prohibited, comment
                  "dropped by the default deny egress of pod <ns/pod> (policies selecting it: ...)"
KUBE-NP-I-<hash>  the same for ingress (-s <peer>)
```

A flow passes when each chain it meets RETURNs; the chains never ACCEPT, so kube-proxy's own filter
rules still run after them. Peers are expanded to addresses here (selected pods' /32s; an ipBlock
minus its ``except`` CIDRs as the fewest covering CIDRs); named ports become numbers per destination
pod. Rejecting with ICMP "administratively prohibited" makes denied connections fail at once
(EHOSTUNREACH), and distinguishes them from a pod that has no listener (connection refused).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass, field

from podnet.model.netpol import EGRESS, INGRESS, NetworkPolicy, PolicyPort, Rule
from podnet.model.netpol_eval import PodInfo, PolicySet, deny_reason

FORWARD_CHAIN = "KUBE-NP-FORWARD"
INPUT_CHAIN = "KUBE-NP-INPUT"
CHAIN_PREFIX = "KUBE-NP-"
EGRESS_PREFIX = "KUBE-NP-E-"
INGRESS_PREFIX = "KUBE-NP-I-"
JUMP_COMMENT = "kubernetes network policies"
REPLIES_COMMENT = "replies of allowed connections"
REJECT = "REJECT --reject-with icmp-admin-prohibited"
MAX_COMMENT = 255       # xt_comment keeps 256 bytes including the NUL
ANY = ipaddress.IPv4Network("0.0.0.0/0")


def pod_chain(direction: str, pod_key: str) -> str:
    """``KUBE-NP-E-``/``KUBE-NP-I-`` + base32(sha256(direction/ns/pod))[:16] (26 characters)."""
    digest = base64.b32encode(hashlib.sha256(f"{direction}/{pod_key}".encode()).digest()).decode()[:16]
    return (EGRESS_PREFIX if direction == EGRESS else INGRESS_PREFIX) + digest


def is_netpol_chain(name: str) -> bool:
    return name.startswith(CHAIN_PREFIX)


def comment(text: str) -> str:
    if len(text) > MAX_COMMENT:
        text = text[: MAX_COMMENT - 3] + "..."
    return f'-m comment --comment "{text}"'


@dataclass(frozen=True)
class JumpRule:
    """A jump from a built-in chain, kept first in it (before kube-proxy's ACCEPTs), as argv words."""

    chain: str
    target: str

    @property
    def args(self) -> tuple[str, ...]:
        return ("-m", "comment", "--comment", JUMP_COMMENT, "-j", self.target)

    @property
    def spec(self) -> str:
        """As ``iptables -S`` prints it."""
        return f'-A {self.chain} -m comment --comment "{JUMP_COMMENT}" -j {self.target}'


def jump_rules() -> list[JumpRule]:
    return [JumpRule("FORWARD", FORWARD_CHAIN), JumpRule("INPUT", INPUT_CHAIN)]


@dataclass
class NetpolRules:
    """One node's chains and rules (``-A CHAIN ...`` lines), in declaration order."""

    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    isolated: dict[str, list[str]] = field(default_factory=dict)     # direction -> local pods isolated

    def payload(self, present_chains: list[str] | tuple[str, ...] = ()) -> str:
        """The ``iptables-restore --noflush`` input: every chain declared (so flushed) and rewritten,
        chains of ours that are ``present_chains`` in the kernel but no longer wanted deleted last."""
        stale = sorted(c for c in present_chains if is_netpol_chain(c) and c not in set(self.chains))
        out = ["*filter", *(f":{c} - [0:0]" for c in [*self.chains, *stale]), *self.rules,
               *(f"-X {c}" for c in stale), "COMMIT"]
        return "\n".join(out) + "\n"

    def table(self) -> dict[str, list[str]]:
        """Chain -> its rules without the ``-A CHAIN`` prefix."""
        out: dict[str, list[str]] = {c: [] for c in self.chains}
        for line in self.rules:
            _, chain, rest = line.split(" ", 2)
            out[chain].append(rest)
        return out


# --------------------------------------------------------------------------- matches

def _addr(flag: str, net: ipaddress.IPv4Network | None) -> str:
    return "" if net is None or net == ANY else f"{flag} {net}"


def _port_match(protocol: str, lo: int | None, hi: int | None = None) -> str:
    p = protocol.lower()
    if lo is None:
        return f"-p {p}"
    dport = f"{lo}:{hi}" if hi is not None and hi != lo else str(lo)
    return f"-p {p} -m {p} --dport {dport}"


def _port_text(pp: PolicyPort, number: int | None = None) -> str:
    if pp.port is None:
        return f"all {pp.protocol} ports"
    if isinstance(pp.port, str):
        return f"port {pp.port}={number}/{pp.protocol}"
    if pp.end_port is not None and pp.end_port != pp.port:
        return f"ports {pp.port}-{pp.end_port}/{pp.protocol}"
    return f"port {pp.port}/{pp.protocol}"


@dataclass(frozen=True)
class _Clause:
    """One allow rule of a pod chain: peer address x port, and the policy rule it comes from."""

    peer: ipaddress.IPv4Network | None      # None: any address
    port: str                                # iptables protocol/port match ("" = any)
    text: str                                # comment


def _peer_addresses(ps: PolicySet, pol: NetworkPolicy, rule: Rule, direction: str
                    ) -> list[tuple[ipaddress.IPv4Network | None, PodInfo | None, str]]:
    """(address, the pod when it is one, description) for every peer of ``rule``."""
    word = "from" if direction == INGRESS else "to"
    if not rule.peers:
        return [(None, None, f"{word} anywhere")]
    out: list[tuple[ipaddress.IPv4Network | None, PodInfo | None, str]] = []
    for peer in rule.peers:
        if peer.ip_block is not None:
            for net in peer.ip_block.networks():
                out.append((net, None, f"{word} {peer.ip_block}"))
        else:
            for pod in ps.peer_pods(pol, peer):
                out.append((ipaddress.IPv4Network(f"{pod.ip}/32"), pod, f"{word} pod {pod.key}"))
    return out


def _named_targets(ps: PolicySet, pol: NetworkPolicy, rule: Rule) -> list[PodInfo]:
    """Egress named ports only ever match pods: the pods among ``rule``'s destinations."""
    if not rule.peers:
        return list(ps.pods)
    seen: dict[str, PodInfo] = {}
    for peer in rule.peers:
        for pod in ps.peer_pods(pol, peer):
            seen.setdefault(pod.key, pod)
    return list(seen.values())


def clauses(ps: PolicySet, pod: PodInfo, direction: str) -> list[_Clause]:
    """The allow rules of ``pod``'s chain for ``direction``, in policy/rule/peer/port order."""
    out: list[_Clause] = []
    for pol in ps.selecting(pod, direction):
        for i, rule in enumerate(pol.rules(direction)):
            head = f"{pol.key} {direction.lower()}[{i}]:"
            peers = _peer_addresses(ps, pol, rule, direction)
            if not rule.ports:
                out += [_Clause(net, "", f"{head} {desc} any port") for net, _, desc in peers]
                continue
            for pp in rule.ports:
                if isinstance(pp.port, str):
                    out += _named(ps, pol, rule, pod, direction, pp, head, peers)
                    continue
                match = _port_match(pp.protocol, pp.port, pp.end_port)
                out += [_Clause(net, match, f"{head} {desc} {_port_text(pp)}") for net, _, desc in peers]
    return out


def _named(ps: PolicySet, pol: NetworkPolicy, rule: Rule, pod: PodInfo, direction: str, pp: PolicyPort,
           head: str, peers: list[tuple[ipaddress.IPv4Network | None, PodInfo | None, str]]) -> list[_Clause]:
    assert isinstance(pp.port, str)
    if direction == INGRESS:   # resolved against the selected pod itself
        number = pod.named_port(pp.port, pp.protocol)
        if number is None:
            return []
        match = _port_match(pp.protocol, number)
        return [_Clause(net, match, f"{head} {desc} {_port_text(pp, number)}") for net, _, desc in peers]
    out = []   # egress: resolved against each destination pod
    for target in _named_targets(ps, pol, rule):
        number = target.named_port(pp.port, pp.protocol)
        if number is None or target.key == pod.key:
            continue
        out.append(_Clause(ipaddress.IPv4Network(f"{target.ip}/32"), _port_match(pp.protocol, number),
                           f"{head} to pod {target.key} {_port_text(pp, number)}"))
    return out


# --------------------------------------------------------------------------- the node's rules

def build_rules(ps: PolicySet, node: str) -> NetpolRules:
    """Every chain and rule of node ``node``: its pods' egress and ingress isolation."""
    r = NetpolRules(chains=[FORWARD_CHAIN, INPUT_CHAIN], isolated={EGRESS: [], INGRESS: []})
    replies = f"{comment(REPLIES_COMMENT)} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    r.rules += [f"-A {FORWARD_CHAIN} {replies}", f"-A {INPUT_CHAIN} {replies}"]
    local = [p for p in ps.pods if p.node == node]
    bodies: list[str] = []
    for direction, flag, peer_flag in ((EGRESS, "-s", "-d"), (INGRESS, "-d", "-s")):
        for pod in local:
            policies = [p.key for p in ps.selecting(pod, direction)]
            if not policies:
                continue
            chain = pod_chain(direction, pod.key)
            r.isolated[direction].append(pod.key)
            r.chains.append(chain)
            note = comment(f"{direction.lower()} of pod {pod.key} (isolated by {', '.join(policies)})")
            jump = f"{flag} {pod.ip}/32 {note} -j {chain}"
            r.rules.append(f"-A {FORWARD_CHAIN} {jump}")
            if direction == EGRESS:
                r.rules.append(f"-A {INPUT_CHAIN} {jump}")
            seen: set[tuple[str, str]] = set()
            for c in clauses(ps, pod, direction):
                addr = _addr(peer_flag, c.peer)
                if (addr, c.port) in seen:
                    continue
                seen.add((addr, c.port))
                words = [f"-A {chain}", addr, c.port, comment(c.text), "-j RETURN"]
                bodies.append(" ".join(w for w in words if w))
            bodies.append(f"-A {chain} {comment(deny_reason(direction, pod.key, policies))} -j {REJECT}")
    r.rules += bodies
    return r


def render(ps: PolicySet, node: str) -> str:
    """The full ``iptables-restore --noflush`` payload for ``node`` (no stale chains)."""
    return build_rules(ps, node).payload()
