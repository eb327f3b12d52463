"""Destination index over an iptables chain: candidate rules for a packet without a linear scan.

kube-proxy's ``KUBE-SERVICES`` holds one rule per service port (``-d CLUSTER_IP/32 -p tcp --dport P``)
and ``KUBE-NODEPORTS`` one per node port (``-p tcp --dport P``). A :class:`RuleIndex` files each rule
under one key: its destination prefix when it has a non-negated ``-d``; else its protocol and
destination ports when both are non-negated and few; else it is a wildcard (always a candidate).
``candidates`` returns, in rule order, a superset of the rules whose ``-d``/``-p``/``--dport`` can
match the packet; the walker still evaluates every match of each candidate, so first-match order
and all other semantics are unchanged.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Sequence

from podnet.sim.snapshot import IPAddress, Iptables, Rule

MAX_PORT_KEYS = 64     # rules matching more ports than this are wildcards


def rule_may_match(rule: Rule, dst: IPAddress, proto: str | None, dport: int | None) -> bool:
    """The reference predicate the index accelerates: ``-d``, ``-p`` and destination ports only."""
    if rule.dst is not None and not rule.dst.contains(dst):
        return False
    if rule.proto is not None and rule.proto != "all" and (proto == rule.proto) == rule.proto_negated:
        return False
    if rule.dport is not None:
        if dport is None or rule.proto is None or rule.proto_negated or proto != rule.proto:
            return False
        if not rule.dport.contains(dport):
            return False
    return True


class RuleIndex:
    """Index of one chain's rules (0-based positions)."""

    __slots__ = ("_by_port", "_by_prefix", "_wild", "size")

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.size = len(rules)
        # (version, prefixlen) -> {network as int: [positions]}
        self._by_prefix: dict[tuple[int, int], dict[int, list[int]]] = {}
        self._by_port: dict[tuple[str, int], list[int]] = {}
        self._wild: list[int] = []
        for pos, r in enumerate(rules):
            d = r.dst
            if d is not None and not d.negated:
                self._by_prefix.setdefault((d.version, d.prefixlen), {}).setdefault(d.addr, []).append(pos)
                continue
            ports = self._port_keys(r)
            if ports is not None:
                for key in ports:
                    self._by_port.setdefault(key, []).append(pos)
                continue
            self._wild.append(pos)

    @staticmethod
    def _port_keys(r: Rule) -> list[tuple[str, int]] | None:
        if (r.dport is None or r.dport.negated or r.proto is None or r.proto_negated
                or r.proto == "all"):
            return None
        if sum(hi - lo + 1 for lo, hi in r.dport.ranges) > MAX_PORT_KEYS:
            return None
        return sorted({(r.proto, p) for lo, hi in r.dport.ranges for p in range(lo, hi + 1)})

    def candidates(self, dst: IPAddress | str, proto: str | None = None, dport: int | None = None) -> list[int]:
        """Positions (ascending) of the rules that may match a packet to ``dst[:dport]``."""
        if isinstance(dst, str):
            dst = ipaddress.ip_address(dst)
        lists: list[list[int]] = []
        if self._wild:
            lists.append(self._wild)
        addr = int(dst)
        bits = 32 if dst.version == 4 else 128
        for (version, plen), table in self._by_prefix.items():
            if version != dst.version:
                continue
            mask = ((1 << plen) - 1) << (bits - plen)
            hit = table.get(addr & mask)
            if hit:
                lists.append(hit)
        if proto is not None and dport is not None:
            hit = self._by_port.get((proto, dport))
            if hit:
                lists.append(hit)
        if not lists:
            return []
        if len(lists) == 1:
            return list(lists[0])
        out: list[int] = []
        last = -1
        for p in heapq.merge(*lists):
            if p != last:           # a multi-port rule can sit in one list only once, but be safe
                out.append(p)
                last = p
        return out


class IptablesIndex:
    """Lazily built :class:`RuleIndex` per (table, chain) of one ruleset. Build one per distinct
    ``Iptables`` object: namespaces loaded from identical dumps share the object, hence the index."""

    __slots__ = ("_indexes", "iptables")

    def __init__(self, iptables: Iptables) -> None:
        self.iptables = iptables
        self._indexes: dict[tuple[str, str], RuleIndex] = {}

    def chain(self, table: str, chain: str) -> RuleIndex:
        key = (table, chain)
        idx = self._indexes.get(key)
        if idx is None:
            ch = self.iptables.chain(table, chain)
            idx = self._indexes[key] = RuleIndex(ch.rules if ch is not None else ())
        return idx

    def candidates(self, table: str, chain: str, dst: IPAddress | str, proto: str | None = None,
                   dport: int | None = None) -> list[Rule]:
        ch = self.iptables.chain(table, chain)
        if ch is None:
            return []
        return [ch.rules[p] for p in self.chain(table, chain).candidates(dst, proto, dport)]
