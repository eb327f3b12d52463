"""The upstream e2e model (namespaces x, y, z x pods a, b, c) and a random policy generator, shared by the
NetworkPolicy unit tests and the real-lab tests."""

from __future__ import annotations

import ipaddress
import random
import re

from podnet.model.lab import resolve
from podnet.model.manifest import parse_docs
from podnet.model.netpol_eval import PolicySet
from podnet.model.source import load_text

NSS = ("x", "y", "z")
PODS = ("a", "b", "c")
ALL = [f"{n}/{p}" for n in NSS for p in PODS]

CLUSTER = """apiVersion: podnet.dev/v1alpha1
kind: Cluster
metadata: {name: np}
networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12, backend: vxlan, clusterDNS: false}
nodes:
  - {name: node1, ip: 192.168.1.10, podCIDR: 10.244.1.0/24}
  - {name: node2, ip: 192.168.1.11, podCIDR: 10.244.2.0/24}
"""


def base(extra_ports: str = "") -> str:
    docs = [CLUSTER]
    for ns in NSS:
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n")
    for ns in NSS:
        for pod in PODS:
            node = "node2" if pod == "b" else "node1"
            docs.append(f"""apiVersion: v1
kind: Pod
metadata: {{name: {pod}, namespace: {ns}, labels: {{pod: {pod}}}}}
spec:
  nodeName: {node}
  containers:
    - name: c
      ports:
        - {{name: serve-80-tcp, containerPort: 80}}
        - {{name: serve-81-tcp, containerPort: 81}}
        - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}
        - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}{extra_ports}
""")
    return "---\n".join(docs)


def np(name: str, spec: str, ns: str = "x") -> str:
    return f"""---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
{spec}
"""


def policy_set(*policies: str, pods: str | None = None) -> PolicySet:
    text = (pods if pods is not None else base()) + "".join(policies)
    return PolicySet.from_lab(resolve(parse_docs(load_text(text, "np.yaml"))))


def denied(ps: PolicySet, port: int = 80, protocol: str = "TCP") -> set[tuple[str, str]]:
    m = ps.matrix(port, protocol)
    assert m.pods == ALL
    assert all(m.allowed(p, p) for p in ALL), "a pod's own IP is always reachable"
    return {(a, b) for a in ALL for b in ALL if a != b and not m.allowed(a, b)}


def pairs(src: list[str] | str, dst: list[str] | str) -> set[tuple[str, str]]:
    """Off-diagonal cells from src pods to dst pods (a bare namespace name means its three pods)."""
    def expand(v: list[str] | str) -> list[str]:
        items = [v] if isinstance(v, str) else v
        return [q for i in items for q in ([f"{i}/{p}" for p in PODS] if "/" not in i else [i])]
    return {(a, b) for a in expand(src) for b in expand(dst) if a != b}



EVERYONE = list(NSS)


def selector(rng: random.Random, key_values: dict[str, list[str]]) -> str:
    key = rng.choice(list(key_values))
    kind = rng.randrange(5)
    if kind == 0:
        return "{}"
    if kind == 1:
        return f"{{matchLabels: {{{key}: {rng.choice(key_values[key])}}}}}"
    op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
    vals = f", values: [{', '.join(rng.sample(key_values[key], 2))}]" if op in ("In", "NotIn") else ""
    return f"{{matchExpressions: [{{key: {key}, operator: {op}{vals}}}]}}"


def random_policy(rng: random.Random, i: int, ips: list[str]) -> str:
    pods = {"pod": list(PODS)}
    nss = {"ns": list(NSS), "kubernetes.io/metadata.name": list(NSS)}
    lines = [f"  podSelector: {selector(rng, pods)}"]
    types = rng.choice([[], ["Ingress"], ["Egress"], ["Ingress", "Egress"]])
    if types:
        lines.append(f"  policyTypes: [{', '.join(types)}]")
    for direction, word in (("ingress", "from"), ("egress", "to")):
        if rng.random() < 0.3:
            continue
        lines.append(f"  {direction}:")
        for _ in range(rng.randrange(3)):
            lines.append("    - ports: [" + ", ".join(rng.sample(
                ["{port: 80}", "{port: 81, protocol: UDP}", "{port: serve-81-tcp}",
                 "{port: serve-80-udp, protocol: UDP}", "{port: 79, endPort: 81}", "{protocol: UDP}",
                 "{port: 80, protocol: SCTP}"], rng.randrange(3))) + "]")
            peers = []
            for _ in range(rng.randrange(3)):
                kind = rng.randrange(4)
                if kind == 0:
                    peers.append(f"{{podSelector: {selector(rng, pods)}}}")
                elif kind == 1:
                    peers.append(f"{{namespaceSelector: {selector(rng, nss)}}}")
                elif kind == 2:
                    peers.append(f"{{podSelector: {selector(rng, pods)}, namespaceSelector: {selector(rng, nss)}}}")
                else:
                    ip = ipaddress.IPv4Address(rng.choice(ips))
                    wide = ipaddress.IPv4Network(f"{ip}/{rng.choice([16, 24])}", strict=False)
                    peers.append(f'{{ipBlock: {{cidr: "{wide}", except: ["{rng.choice(ips)}/32"]}}}}'
                                 if ipaddress.IPv4Address(rng.choice(ips)) in wide and rng.random() < 0.7
                                 else f'{{ipBlock: {{cidr: "{wide}"}}}}')
            if peers:
                lines.append(f"      {word}: [{', '.join(peers)}]")
    ns = rng.choice(NSS)
    return np(f"random-{i}", "\n".join(lines).rstrip(), ns=ns)


def valid_random_policy(rng: random.Random, i: int, ips: list[str]) -> str:
    """A random policy the API accepts (an ``except`` outside its ``cidr`` is dropped)."""
    fixed = []
    for line in random_policy(rng, i, ips).splitlines():
        for m in re.finditer(r'\{ipBlock: \{cidr: "([^"]+)", except: \["([^"]+)"\]\}\}', line):
            if not ipaddress.IPv4Network(m.group(2)).subnet_of(ipaddress.IPv4Network(m.group(1))):
                line = line.replace(m.group(0), f'{{ipBlock: {{cidr: "{m.group(1)}"}}}}')
        fixed.append(line)
    return "\n".join(fixed) + "\n"
