"""NetworkPolicy (networking.k8s.io/v1): a typed, validated, defaulted model.

Parsing does what the API server does on create: validation (``ValidateNetworkPolicy``: selectors and
their operators, peers, ``ipBlock`` CIDRs and ``except``, ports, ``endPort``, ``policyTypes``) and
defaulting (``SetDefaults_NetworkPolicy``: ``policyTypes`` inferred as ``[Ingress]`` plus ``Egress``
when egress rules exist; ``protocol`` TCP). Every error is one line naming file:line, the object and the
field. What the rules *mean* for pods lives in ``podnet.model.netpol_eval``; how they reach the kernel in
``podnet.compile.netpol_iptables``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from podnet.model.fields import Context, Fields, check_label
from podnet.model.meta import ObjectMeta, parse_meta
from podnet.model.source import plain
from podnet.model.workloads import PROTOCOLS

INGRESS = "Ingress"
EGRESS = "Egress"
POLICY_TYPES = (INGRESS, EGRESS)
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
# IANA_SVC_NAME (validation.IsValidPortName): 1-15 lowercase alphanumerics or '-', at least one letter,
# no leading/trailing '-', no "--"
_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels   # DoesNotExist

    def __str__(self) -> str:
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        op = "in" if self.operator == "In" else "notin"
        return f"{self.key} {op} ({','.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    """``metav1.LabelSelector``: matchLabels AND matchExpressions; empty selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions)

    def __str__(self) -> str:
        """As kubectl prints selectors (``k=v,k2 in (a,b)``); ``<all>`` when empty."""
        parts = [f"{k}={v}" for k, v in self.match_labels] + [str(r) for r in self.match_expressions]
        return ",".join(parts) if parts else "<all>"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [{"key": r.key, "operator": r.operator,
                                        **({"values": list(r.values)} if r.values else {})}
                                       for r in self.match_expressions]
        return out


@dataclass(frozen=True)
class IPBlock:
    cidr: ipaddress.IPv4Network
    excepts: tuple[ipaddress.IPv4Network, ...] = ()

    def contains(self, ip: ipaddress.IPv4Address) -> bool:
        return ip in self.cidr and not any(ip in e for e in self.excepts)

    def networks(self) -> list[ipaddress.IPv4Network]:
        """``cidr`` minus every ``except``, as the fewest CIDRs (what an address match needs)."""
        nets = [self.cidr]
        for ex in self.excepts:
            out: list[ipaddress.IPv4Network] = []
            for n in nets:
                if ex.supernet_of(n):
                    continue
                if n.supernet_of(ex):
                    out.extend(n.address_exclude(ex))
                else:
                    out.append(n)
            nets = out
        return sorted(ipaddress.collapse_addresses(nets))

    def __str__(self) -> str:
        return str(self.cidr) + (f" except {', '.join(map(str, self.excepts))}" if self.excepts else "")


@dataclass(frozen=True)
class Peer:
    """One ``from``/``to`` entry: selectors (ANDed when both are set) or an ipBlock."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    def __str__(self) -> str:
        if self.ip_block is not None:
            return f"ipBlock {self.ip_block}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces {self.namespace_selector}")
        if self.pod_selector is not None:
            parts.append(f"pods {self.pod_selector}")
        return " and ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        if self.ip_block is not None:
            b: dict[str, Any] = {"cidr": str(self.ip_block.cidr)}
            if self.ip_block.excepts:
                b["except"] = [str(e) for e in self.ip_block.excepts]
            return {"ipBlock": b}
        out: dict[str, Any] = {}
        if self.pod_selector is not None:
            out["podSelector"] = self.pod_selector.to_dict()
        if self.namespace_selector is not None:
            out["namespaceSelector"] = self.namespace_selector.to_dict()
        return out


@dataclass(frozen=True)
class PolicyPort:
    """One ``ports`` entry. ``port`` None: every port of ``protocol``; a str is a named port."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def __str__(self) -> str:
        if self.port is None:
            return f"all {self.protocol} ports"
        if self.end_port is not None:
            return f"{self.port}-{self.end_port}/{self.protocol}"
        return f"{self.port}/{self.protocol}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.port is not None:
            out["port"] = self.port
        if self.end_port is not None:
            out["endPort"] = self.end_port
        return out


@dataclass(frozen=True)
class Rule:
    """One ingress or egress rule. Empty ``peers``: every peer; empty ``ports``: every port."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()

    def to_dict(self, direction: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.peers:
            out["from" if direction == INGRESS else "to"] = [p.to_dict() for p in self.peers]
        if self.ports:
            out["ports"] = [p.to_dict() for p in self.ports]
        return out


@dataclass
class NetworkPolicy:
    meta: ObjectMeta
    pod_selector: LabelSelector = field(default_factory=LabelSelector)
    policy_types: tuple[str, ...] = (INGRESS,)    # effective (after defaulting)
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    types_inferred: bool = False                   # policyTypes was absent and got defaulted
    spec: dict = field(default_factory=dict)       # the spec as written (plain data)
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"

    @property
    def namespace(self) -> str:
        return self.meta.namespace

    def applies(self, direction: str) -> bool:
        return direction in self.policy_types

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == INGRESS else self.egress

    def to_spec(self) -> dict[str, Any]:
        """The spec as the API server stores it (defaults filled in)."""
        spec: dict[str, Any] = {"podSelector": self.pod_selector.to_dict(), "policyTypes": list(self.policy_types)}
        if self.ingress:
            spec["ingress"] = [r.to_dict(INGRESS) for r in self.ingress]
        if self.egress:
            spec["egress"] = [r.to_dict(EGRESS) for r in self.egress]
        return spec

    def to_object(self) -> dict[str, Any]:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": self.meta.to_dict(),
                "spec": self.to_spec()}


# ----------------------------------------------------------------------------------------------- parsing

def parse_selector(ctx: Context, f: Fields) -> LabelSelector:
    f.check({"matchLabels", "matchExpressions"})
    labels = f.labels("matchLabels")
    exprs = []
    for ef in f.maps("matchExpressions"):
        ef.check({"key", "operator", "values"})
        key = ef.str("key", required=True)
        op = ef.str("operator", required=True)
        assert key is not None and op is not None
        check_label(ctx, ef.sub("key"), key, "")
        if op not in OPERATORS:
            raise ctx.error(ef.sub("operator"), f"unknown operator {op!r} (In, NotIn, Exists or DoesNotExist)")
        values = ef.strs("values")
        if op in ("In", "NotIn") and not values:
            raise ctx.error(ef.sub("values"), f"must be non-empty for operator {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise ctx.error(ef.sub("values"), f"must be empty for operator {op}")
        for i, v in enumerate(values):
            check_label(ctx, f"{ef.sub('values')}[{i}]", key, v)
        exprs.append(Requirement(key, op, tuple(values)))
    return LabelSelector(tuple(sorted(labels.items())), tuple(exprs))


def _cidr(ctx: Context, path: str, raw: Any) -> ipaddress.IPv4Network:
    if not isinstance(raw, str) or not raw:
        raise ctx.error(path, "must be a CIDR string such as 10.0.0.0/8")
    if "/" not in raw:
        raise ctx.error(path, f"invalid CIDR {raw!r}: a prefix length is required (e.g. {raw}/32)")
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError as e:
        raise ctx.error(path, f"invalid CIDR {raw!r}: {e}") from None
    if net.version != 4:
        raise ctx.error(path, f"{raw}: only IPv4 is supported")
    if str(net) != raw:  # host bits set: read as the network, as iptables does (never as a /32)
        ctx.warn(path, f"{raw} has host bits set; read as {net}")
    return net  # type: ignore[return-value]


def _ip_block(ctx: Context, f: Fields) -> IPBlock:
    f.check({"cidr", "except"})
    if not f.has("cidr"):
        raise ctx.error(f.sub("cidr"), "required field is missing")
    cidr = _cidr(ctx, f.sub("cidr"), f.raw("cidr"))
    excepts = []
    for i, raw in enumerate(f.list("except")):
        path = f"{f.sub('except')}[{i}]"
        ex = _cidr(ctx, path, raw)
        if not (ex.subnet_of(cidr) and ex.prefixlen > cidr.prefixlen):
            raise ctx.error(path, f"{ex} must be a strict subset of cidr {cidr}")
        excepts.append(ex)
    return IPBlock(cidr, tuple(excepts))


def _peer(ctx: Context, f: Fields) -> Peer:
    f.check({"podSelector", "namespaceSelector", "ipBlock"})
    present = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if k in f.data]
    if not present:
        raise ctx.error(f.path, "a peer needs podSelector, namespaceSelector or ipBlock")
    if "ipBlock" in present and len(present) > 1:
        raise ctx.error(f.sub("ipBlock"), "may not be combined with podSelector or namespaceSelector")
    if "ipBlock" in present:
        return Peer(ip_block=_ip_block(ctx, f.map("ipBlock")))
    pod = parse_selector(ctx, f.map("podSelector")) if "podSelector" in f.data else None
    ns = parse_selector(ctx, f.map("namespaceSelector")) if "namespaceSelector" in f.data else None
    return Peer(pod_selector=pod, namespace_selector=ns)


def _port(ctx: Context, f: Fields) -> PolicyPort:
    f.check({"protocol", "port", "endPort"})
    proto = f.str("protocol", "TCP") or "TCP"
    if proto not in PROTOCOLS:
        raise ctx.error(f.sub("protocol"), f"unsupported protocol {proto!r} (TCP, UDP or SCTP)")
    raw = f.raw("port")
    port: int | str | None
    if raw is None:
        port = None
    elif isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ctx.error(f.sub("port"), "must be a port number or a port name")
    elif isinstance(raw, int) or raw.isdigit():
        port = int(raw)
        if not 1 <= port <= 65535:
            raise ctx.error(f.sub("port"), f"{port} is out of range [1, 65535]")
    else:
        port = raw
        if len(raw) > 15 or not _SVC_NAME.match(raw) or "--" in raw or not re.search("[a-z]", raw):
            raise ctx.error(f.sub("port"), f"invalid port name {raw!r}: at most 15 lowercase letters, digits "
                            "and '-', with at least one letter")
    end = f.int("endPort", lo=1, hi=65535)
    if end is not None:
        if port is None:
            raise ctx.error(f.sub("endPort"), "may not be set without port")
        if isinstance(port, str):
            raise ctx.error(f.sub("endPort"), f"may not be set when port is a name ({port!r})")
        if end < port:
            raise ctx.error(f.sub("endPort"), f"must be greater than or equal to port ({end} < {port})")
    return PolicyPort(proto, port, end)


def _rules(ctx: Context, spec: Fields, key: str, peers_key: str) -> tuple[Rule, ...]:
    out = []
    for rf in spec.maps(key):
        rf.check({peers_key, "ports"})
        peers = tuple(_peer(ctx, pf) for pf in rf.maps(peers_key))
        ports = tuple(_port(ctx, pf) for pf in rf.maps("ports"))
        out.append(Rule(peers, ports))
    return tuple(out)


def parse_networkpolicy(ctx: Context, body: Fields) -> NetworkPolicy:
    body.check({"apiVersion", "kind", "metadata", "spec"}, {"status"})
    meta = parse_meta(ctx, body, namespaced=True)
    spec = body.map("spec")
    spec.check({"podSelector", "policyTypes", "ingress", "egress"})
    selector = parse_selector(ctx, spec.map("podSelector"))
    ingress = _rules(ctx, spec, "ingress", "from")
    egress = _rules(ctx, spec, "egress", "to")
    types = spec.strs("policyTypes")
    for i, t in enumerate(types):
        if t not in POLICY_TYPES:
            raise ctx.error(f"spec.policyTypes[{i}]", f"unsupported value {t!r} (Ingress or Egress)")
        if t in types[:i]:
            raise ctx.error(f"spec.policyTypes[{i}]", f"duplicate value {t!r}")
    inferred = not types
    if inferred:   # SetDefaults_NetworkPolicy
        types = [INGRESS] + ([EGRESS] if egress else [])
    else:
        if ingress and INGRESS not in types:
            ctx.warn("spec.ingress", "ignored: policyTypes does not include Ingress")
        if egress and EGRESS not in types:
            ctx.warn("spec.egress", "ignored: policyTypes does not include Egress")
    return NetworkPolicy(meta=meta, pod_selector=selector, policy_types=tuple(t for t in POLICY_TYPES if t in types),
                         ingress=ingress, egress=egress, types_inferred=inferred, spec=plain(spec.data),
                         source=ctx.where() or "")
