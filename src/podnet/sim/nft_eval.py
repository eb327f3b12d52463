"""nftables evaluation over ``nft -j list ruleset``: base chains at their hooks, rule by rule, with
the expressions kube-proxy's nftables mode and hand-written firewalls use: payload/meta/ct/fib
matches, anonymous and named sets, verdict maps (``vmap``, looked up in a dict, not scanned),
``numgen`` (the walk forks with each value's probability), mark and ct mark, dnat/snat/masquerade/
redirect, reject, jumps and gotos. Unknown expressions are reported and treated as not matching.
Pure.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from podnet.sim.netfilter import ChainRun, HookCtx, _ct_states, _Stop, nat_dst, nat_src
from podnet.sim.packet import PROTO_NUMBERS, Packet
from podnet.sim.snapshot import IPAddress, NftChain, NftRule, NftSet, NftTable
from podnet.trace.model import RuleRef

MAX_DEPTH = 64
_NUM_PROTO = {v: k for k, v in PROTO_NUMBERS.items()}


class _Unknown(Exception):
    pass


def _norm(v: Any) -> Any:
    """A JSON literal as a comparable value: addresses, ints, lower-case names, tuples."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return ipaddress.ip_address(v)
        except ValueError:
            return v.lower()
    if isinstance(v, dict):
        if "concat" in v:
            return tuple(_norm(x) for x in v["concat"])
        if "prefix" in v:
            p = v["prefix"]
            return ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False)
        if "range" in v:
            lo, hi = v["range"]
            return ("range", _norm(lo), _norm(hi))
        if "elem" in v:
            return _norm(v["elem"].get("val"))
    if isinstance(v, list):
        return tuple(_norm(x) for x in v)
    return v


def _contains(member: Any, value: Any) -> bool:
    """``value`` matches one set member (exact, prefix or range; concatenations elementwise)."""
    if isinstance(member, tuple) and member and member[0] == "range":
        _, lo, hi = member
        try:
            return lo <= value <= hi
        except TypeError:
            return False
    if isinstance(member, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address) and value in member
    if isinstance(member, tuple) and isinstance(value, tuple) and len(member) == len(value):
        return all(_contains(m, v) for m, v in zip(member, value, strict=True))
    return member == value


class _SetIndex:
    """A named set or map: exact members in a dict, intervals in a list."""

    __slots__ = ("comments", "exact", "intervals")

    def __init__(self, s: NftSet | None, elems: Any = None) -> None:
        self.exact: dict[Any, Any] = {}
        self.intervals: list[tuple[Any, Any]] = []
        self.comments: dict[Any, str] = {}
        raw = s.elements if s is not None else (elems or ())
        is_map = s.is_map if s is not None else None
        for e in raw:
            if is_map or (is_map is None and isinstance(e, list) and len(e) == 2):
                key, val = e[0], e[1]
            else:
                key, val = e, True
            k = _norm(key)
            if isinstance(key, dict) and isinstance(key.get("elem"), dict) and key["elem"].get("comment"):
                self.comments[k] = str(key["elem"]["comment"])
            if self._exact_key(k):
                self.exact.setdefault(k, val)
            else:
                self.intervals.append((k, val))

    @staticmethod
    def _exact_key(k: Any) -> bool:
        if isinstance(k, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return False
        if isinstance(k, tuple):
            return not (k and k[0] == "range") and all(_SetIndex._exact_key(x) for x in k)
        return True

    def get(self, value: Any) -> Any:
        hit = self.exact.get(value)
        if hit is not None:
            return hit
        for k, v in self.intervals:
            if _contains(k, value):
                return v
        return None

    def comment(self, value: Any) -> str | None:
        hit = self.comments.get(value)
        if hit is None and self.comments:
            hit = next((c for k, c in self.comments.items() if _contains(k, value)), None)
        return hit


def _text(e: Any) -> str:
    """nft's own syntax for an expression (for display)."""
    if isinstance(e, dict):
        if "payload" in e:
            p = e["payload"]
            return f"{p.get('protocol')} {p.get('field')}"
        if "meta" in e:
            return f"meta {e['meta'].get('key')}"
        if "ct" in e:
            return f"ct {e['ct'].get('key')}"
        if "fib" in e:
            f = e["fib"]
            return f"fib {' . '.join(f.get('flags') or [])} {f.get('result')}"
        if "concat" in e:
            return " . ".join(_text(x) for x in e["concat"])
        if "prefix" in e:
            return f"{e['prefix']['addr']}/{e['prefix']['len']}"
        if "range" in e:
            return f"{_text(e['range'][0])}-{_text(e['range'][1])}"
        if "set" in e:
            items = e["set"] if isinstance(e["set"], list) else [e["set"]]
            return "{ " + ", ".join(_text(x) for x in items) + " }"
        if "numgen" in e:
            n = e["numgen"]
            return f"numgen {n.get('mode')} mod {n.get('mod')}"
        for op in ("&", "|", "^"):
            if op in e:
                a, b = e[op]
                return f"{_text(a)} {dict(zip('&|^', ('and', 'or', 'xor'), strict=True))[op]} {_text(b)}"
        for verdict in ("jump", "goto"):
            if verdict in e:
                return f"{verdict} {e[verdict]['target']}"
        return next(iter(e), "?")
    if isinstance(e, list):
        if len(e) == 2 and isinstance(e[1], dict) and ({"jump", "goto"} & set(e[1])):
            return f"{_text(e[0])} : {_text(e[1])}"
        return ", ".join(_text(x) for x in e)
    if isinstance(e, int) and not isinstance(e, bool) and e > 255:
        return hex(e)
    return str(e)


def rule_text(rule: NftRule) -> str:
    parts: list[str] = []
    for st in rule.expr:
        if not isinstance(st, dict) or not st:
            continue
        k, v = next(iter(st.items()))
        if k == "match":
            op = v.get("op", "==")
            rhs = _text(v.get("right"))
            parts.append(f"{_text(v.get('left'))} {'' if op in ('==', 'in') else op + ' '}{rhs}".replace("  ", " "))
        elif k == "vmap":
            parts.append(f"{_text(v.get('key'))} vmap {_text(v.get('data'))}")
        elif k in ("jump", "goto"):
            parts.append(f"{k} {v['target']}")
        elif k in ("accept", "drop", "return", "continue", "notrack"):
            parts.append(k)
        elif k == "counter":
            parts.append("counter")
        elif k == "reject":
            parts.append("reject" + (f" with {v.get('type')} {v.get('expr')}" if isinstance(v, dict) and v else ""))
        elif k in ("dnat", "snat"):
            addr = _text(v.get("addr")) if v.get("addr") is not None else ""
            port = f":{v['port']}" if v.get("port") is not None else ""
            parts.append(f"{k} to {addr}{port}")
        elif k == "masquerade":
            parts.append("masquerade" + (f" {_text(v.get('flags'))}" if isinstance(v, dict) and v.get("flags") else ""))
        elif k == "mangle":
            parts.append(f"{_text(v.get('key'))} set {_text(v.get('value'))}")
        else:
            parts.append(k)
    if rule.comment:
        parts.append(f'comment "{rule.comment}"')
    return " ".join(parts)


class NftEval:
    """Evaluates the base chains of one namespace's nftables ruleset."""

    def __init__(self, table: NftTable) -> None:
        self.table = table
        self.name = f"{table.family} {table.name}"
        self._sets: dict[str, _SetIndex] = {}
        self._anon: dict[int, _SetIndex] = {}

    # -- values ------------------------------------------------------------------------------------
    def _set(self, ref: str) -> _SetIndex:
        name = ref[1:]
        idx = self._sets.get(name)
        if idx is None:
            s = self.table.sets.get(name)
            if s is None:
                raise _Unknown(f"set @{name} not found")
            idx = self._sets[name] = _SetIndex(s)
        return idx

    def _anon_set(self, data: Any) -> _SetIndex:
        key = id(data)
        idx = self._anon.get(key)
        if idx is None:
            items = data if isinstance(data, list) else [data]
            idx = self._anon[key] = _SetIndex(None, items)
        return idx

    def _value(self, e: Any, pkt: Packet, ctx: HookCtx, where: str) -> Any:
        if not isinstance(e, dict):
            return _norm(e)
        if "payload" in e:
            p = e["payload"]
            proto, fld = p.get("protocol"), p.get("field")
            if proto in ("ip", "ip6"):
                if fld == "saddr":
                    return pkt.src
                if fld == "daddr":
                    return pkt.dst
                if fld in ("protocol", "nexthdr"):
                    return pkt.proto
                if fld == "length":
                    return pkt.size
                if fld == "ttl":
                    return pkt.ttl
                raise _Unknown(f"payload {proto} {fld}")
            if proto in ("tcp", "udp", "sctp", "th", "udplite", "dccp"):
                if proto != "th" and pkt.proto != proto:
                    return None
                if not pkt.has_ports:
                    return None
                if fld == "dport":
                    return pkt.dport
                if fld == "sport":
                    return pkt.sport
                raise _Unknown(f"payload {proto} {fld}")
            if proto == "icmp":
                if pkt.proto != "icmp":
                    return None
                return {"type": pkt.icmp_type, "code": pkt.icmp_code, "id": pkt.icmp_id}.get(fld)
            raise _Unknown(f"payload {proto} {fld}")
        if "meta" in e:
            key = e["meta"].get("key")
            if key in ("l4proto", "protocol"):
                return pkt.proto if key == "l4proto" else "ip"
            if key == "nfproto":
                return "ipv4" if pkt.version == 4 else "ipv6"
            if key in ("iifname", "iif"):
                return ctx.in_dev
            if key in ("oifname", "oif"):
                return ctx.out_dev
            if key == "mark":
                return pkt.mark
            if key == "length":
                return pkt.size
            if key == "pkttype":
                return "unicast"
            raise _Unknown(f"meta {key}")
        if "ct" in e:
            key = e["ct"].get("key")
            ct = ctx.ct
            if key == "state":
                return {s.lower() for s in _ct_states(ct) if s not in ("DNAT", "SNAT")}
            if key == "status":
                st = {s.lower() for s in (ct.entry.status if ct.entry else ())}
                if ct.entry is not None and ct.entry.dnat:
                    st.add("dnat")
                if ct.entry is not None and ct.entry.snat:
                    st.add("snat")
                return st
            if key == "mark":
                return ct.entry.mark if ct.entry else 0
            if key == "direction":
                return "reply" if ct.reply else "original"
            raise _Unknown(f"ct {key}")
        if "fib" in e:
            f = e["fib"]
            flags = f.get("flags") or []
            flags = flags if isinstance(flags, list) else [flags]
            if f.get("result") == "type":
                ip = pkt.dst if "daddr" in flags else pkt.src
                return ctx.fib.addr_type(ip).lower()
            raise _Unknown(f"fib {f.get('result')}")
        if "concat" in e:
            return tuple(self._value(x, pkt, ctx, where) for x in e["concat"])
        for op in ("&", "|", "^"):
            if op in e:
                a, b = (self._value(x, pkt, ctx, where) for x in e[op])
                if not isinstance(a, int) or not isinstance(b, int):
                    raise _Unknown(f"binary {op} on non-integers")
                return a & b if op == "&" else (a | b if op == "|" else a ^ b)
        if "numgen" in e or "jhash" in e or "symhash" in e:
            kind = next(k for k in ("numgen", "jhash", "symhash") if k in e)
            n = e[kind]
            mod, offset = int(n.get("mod", 1)), int(n.get("offset", 0))
            if mod <= 1:
                return offset
            pick = ctx.chooser.branch(f"{where} {kind}", [(f"{kind} {k} of {mod}", 1 / mod) for k in range(mod)])
            return pick + offset
        if "prefix" in e or "range" in e or "set" in e:
            return _norm(e)
        raise _Unknown(next(iter(e), "?"))

    def _match(self, m: dict[str, Any], pkt: Packet, ctx: HookCtx, where: str) -> bool:
        op = m.get("op", "==")
        left = self._value(m.get("left"), pkt, ctx, where)
        right = m.get("right")
        if left is None:
            return op == "!="
        if isinstance(right, str) and right.startswith("@"):
            hit = self._set(right).get(left) is not None
            return hit if op in ("==", "in") else not hit
        if isinstance(right, dict) and "set" in right:
            if isinstance(left, set):
                vals = {_norm(x) for x in (right["set"] if isinstance(right["set"], list) else [right["set"]])}
                hit = bool(left & vals)
            else:
                hit = self._anon_set(right["set"]).get(left) is not None
            return hit if op in ("==", "in") else not hit
        if isinstance(left, set):                   # ct state / status flags
            vals = right if isinstance(right, list) else [right]
            hit = bool(left & {str(v).lower() for v in vals})
            return hit if op in ("==", "in") else not hit
        rv = _norm(right)
        if isinstance(rv, ipaddress.IPv4Network | ipaddress.IPv6Network) or (
                isinstance(rv, tuple) and rv and rv[0] == "range"):
            hit = _contains(rv, left)
            return hit if op in ("==", "in") else not hit
        if isinstance(left, str) and isinstance(rv, int) and left in PROTO_NUMBERS:
            rv = _NUM_PROTO.get(rv, rv)
        try:
            if op in ("==", "in"):
                return bool(left == rv)
            if op == "!=":
                return bool(left != rv)
            if op == "<":
                return bool(left < rv)
            if op == ">":
                return bool(left > rv)
            if op == "<=":
                return bool(left <= rv)
            if op == ">=":
                return bool(left >= rv)
        except TypeError:
            return False
        raise _Unknown(f"operator {op}")

    # -- chains ------------------------------------------------------------------------------------
    def run(self, chain_name: str, pkt: Packet, ctx: HookCtx) -> ChainRun:
        chain = self.table.chains[chain_name]
        run = ChainRun("nftables", self.name, chain_name, [], "")
        try:
            self._chain(chain, pkt, ctx, run, 0)
        except _Stop as s:
            run.verdict, run.decided_by, run.reject_with = s.verdict, s.ref, s.reject_with
            return run
        policy = (chain.policy or "accept").upper()
        ref = RuleRef("nftables", self.name, chain_name, 0, policy, None, f"policy {policy.lower()}")
        run.verdict, run.decided_by = policy, ref
        if policy != "ACCEPT":
            run.rules.append(ref)
        return run

    def _ref(self, rule: NftRule, target: str, note: str | None) -> RuleRef:
        return RuleRef("nftables", self.name, rule.chain, rule.num, target, rule.comment, rule_text(rule), note,
                       rule.handle)

    def _chain(self, chain: NftChain, pkt: Packet, ctx: HookCtx, run: ChainRun, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Stop("DROP", RuleRef("nftables", self.name, chain.name, 0, "loop"))
        for rule in chain.rules:
            where = f"{self.name}/{chain.name} #{rule.num}"
            n_dec = len(ctx.chooser.made)
            try:
                outcome = self._rule(rule, pkt, ctx, run, where, n_dec, depth)
            except _Unknown as e:
                ctx.warnings.append(f"{where}: {e} is not modelled; the rule is assumed not to match")
                continue
            if outcome == "return":
                return
            if outcome == "goto-done":
                return

    def _jump(self, target: str, goto: bool, pkt: Packet, ctx: HookCtx, run: ChainRun, depth: int) -> str:
        ch = self.table.chains.get(target)
        if ch is None:
            raise _Unknown(f"chain {target!r} not found")
        self._chain(ch, pkt, ctx, run, depth + 1)
        return "goto-done" if goto else "next"

    def _rule(self, rule: NftRule, pkt: Packet, ctx: HookCtx, run: ChainRun, where: str, n_dec: int,
              depth: int) -> str:
        """Evaluate one rule; returns "next" (go on), "return", "goto-done"; raises _Stop on verdicts."""
        recorded = False

        def note() -> str | None:
            return ctx.chooser.made[-1].label if len(ctx.chooser.made) > n_dec else None

        def record_note(target: str, extra: str | None = None) -> None:
            nonlocal recorded
            if not recorded:
                n = note()
                if extra:
                    n = f"{n}; {extra}" if n else extra
                run.rules.append(self._ref(rule, target, n))
                recorded = True

        def record(target: str) -> None:
            record_note(target)

        for st in rule.expr:
            if not isinstance(st, dict) or not st:
                continue
            k, v = next(iter(st.items()))
            if k == "match":
                if not self._match(v, pkt, ctx, where):
                    return "next"
                continue
            if k in ("counter", "log", "limit", "quota", "meter"):
                continue
            if k == "vmap":
                key = self._value(v.get("key"), pkt, ctx, where)
                data = v.get("data")
                idx = self._set(data) if isinstance(data, str) else self._anon_set(
                    data.get("set") if isinstance(data, dict) else data)
                verdict = idx.get(key) if key is not None else None
                if verdict is None:
                    return "next"
                elem_note = idx.comment(key)
                if elem_note:
                    what = data if isinstance(data, str) else "element"
                    base = record_note

                    def record_note_elem(target: str, _base: Any = base, _n: str = f'{what} "{elem_note}"') -> None:
                        _base(target, _n)
                    return self._verdict(verdict, rule, pkt, ctx, run, depth, record_note_elem)
                return self._verdict(verdict, rule, pkt, ctx, run, depth, record)
            if k in ("jump", "goto", "accept", "drop", "return", "continue", "reject", "queue"):
                return self._verdict(st, rule, pkt, ctx, run, depth, record)
            if k == "mangle":
                key = v.get("key") or {}
                val = self._value(v.get("value"), pkt, ctx, where)
                if "meta" in key and key["meta"].get("key") == "mark" and isinstance(val, int):
                    pkt.mark = val & 0xFFFFFFFF
                elif "ct" in key and key["ct"].get("key") == "mark" and isinstance(val, int):
                    if ctx.ct.entry is not None:
                        ctx.ct.entry.mark = val & 0xFFFFFFFF
                else:
                    raise _Unknown(f"{_text(key)} set")
                record("mark")
                continue
            if k == "notrack":
                ctx.ct.state, ctx.ct.entry = "UNTRACKED", None
                record("notrack")
                continue
            if k in ("dnat", "snat", "masquerade", "redirect"):
                record(k.upper())
                change = self._nat(k, v, pkt, ctx, where)
                if change is not None:
                    run.nat.append(change)
                raise _Stop("ACCEPT", run.rules[-1])
            raise _Unknown(f"statement {k!r}")
        record("")
        return "next"

    def _verdict(self, st: Any, rule: NftRule, pkt: Packet, ctx: HookCtx, run: ChainRun, depth: int,
                 record: Any) -> str:
        if not isinstance(st, dict) or not st:
            raise _Unknown(f"verdict {st!r}")
        k, v = next(iter(st.items()))
        if k in ("jump", "goto"):
            target = v["target"]
            record(target)
            return self._jump(target, k == "goto", pkt, ctx, run, depth)
        if k in ("accept", "drop"):
            record(k.upper())
            raise _Stop(k.upper(), run.rules[-1])
        if k == "reject":
            record("REJECT")
            why = "icmp-port-unreachable"
            if isinstance(v, dict) and v:
                why = "tcp-reset" if v.get("type") == "tcp reset" else f"{v.get('type', 'icmp')}-{v.get('expr', '')}"
            raise _Stop("REJECT", run.rules[-1], why)
        if k == "return":
            record("RETURN")
            return "return"
        if k == "continue":
            record("")
            return "next"
        if k == "queue":
            record("QUEUE")
            raise _Stop("QUEUE", run.rules[-1])
        raise _Unknown(f"verdict {k!r}")

    def _nat(self, kind: str, v: Any, pkt: Packet, ctx: HookCtx, where: str) -> Any:
        v = v if isinstance(v, dict) else {}
        port = v.get("port")
        port_i = int(port) if isinstance(port, int) or (isinstance(port, str) and port.isdigit()) else None
        addr = v.get("addr")
        ip: IPAddress | None = None
        if isinstance(addr, str):
            ip = ipaddress.ip_address(addr)
        elif addr is not None:
            raise _Unknown(f"{kind} to {_text(addr)}")
        if kind == "dnat":
            return nat_dst(pkt, ip, port_i, "dnat")
        if kind == "snat":
            return nat_src(pkt, ip, port_i, "snat")
        if kind == "masquerade":
            src = ctx.masquerade_src(ctx.out_dev, pkt.dst) if ctx.masquerade_src else None
            return nat_src(pkt, src, port_i, "masquerade")
        dst = ipaddress.ip_address("127.0.0.1") if ctx.hook == "OUTPUT" else ctx.fib.primary_address(
            ctx.in_dev or "", pkt.dst.version)
        return nat_dst(pkt, dst, port_i, "redirect")
