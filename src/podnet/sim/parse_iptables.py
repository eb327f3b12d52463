"""Parser for ``iptables-save -c`` (also without ``-c``, and ``-c P B`` restore-style counters).

Tables, chains with policy and counters, and every rule with its counters, the basic matches
(``-s -d -i -o -p -f`` with ``!``), each ``-m module --option values`` (``!`` kept per option) and the
target with its options. Module options are kept generically (``Match.options``) so every module
round-trips; the ones the tracer needs most are also lifted into typed fields (``Rule.comment``,
``Rule.dport``, ``Rule.sport``, ``Target.nat_range``, ``Target.mark``). Pure, and fast enough for
kube-proxy rulesets of tens of thousands of rules.
"""

from __future__ import annotations

import gc
import ipaddress
import re
from collections.abc import Iterator
from contextlib import contextmanager

from podnet.sim.snapshot import (
    AddrMatch,
    Chain,
    Counters,
    IfaceMatch,
    Iptables,
    IptTable,
    Match,
    Option,
    PortMatch,
    Rule,
    SnapshotError,
    Target,
)

PROTO_NAMES = {"1": "icmp", "2": "igmp", "6": "tcp", "17": "udp", "41": "ipv6", "47": "gre", "50": "esp",
               "51": "ah", "58": "ipv6-icmp", "132": "sctp", "136": "udplite", "33": "dccp"}
_PORT_MODULES = frozenset({"tcp", "udp", "sctp", "udplite", "dccp"})
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
_UNESCAPE = re.compile(r"\\(.)")
_BASIC_WITH_VALUE = {"-s": "s", "--source": "s", "--src": "s", "-d": "d", "--destination": "d",
                     "--dst": "d", "-i": "i", "--in-interface": "i", "-o": "o", "--out-interface": "o",
                     "-p": "p", "--protocol": "p"}


_STOP = frozenset({"-m", "--match", "-j", "--jump", "-g", "--goto", "-c", "--set-counters", "-f",
                   "--fragment", *_BASIC_WITH_VALUE})


class _Err(Exception):
    pass


def _tokenize(line: str) -> tuple[list[str], set[int]]:
    """Split like iptables-restore: double quotes group, backslash escapes inside quotes."""
    if '"' not in line:
        return line.split(), set()
    if "\\" not in line:                     # fast path: quotes without escapes
        toks = []
        quoted = set()
        for k, part in enumerate(line.split('"')):
            if k % 2:
                quoted.add(len(toks))
                toks.append(part)
            else:
                toks.extend(part.split())
        return toks, quoted
    toks: list[str] = []
    quoted: set[int] = set()
    for m in _TOKEN.finditer(line):
        q, plain = m.group(1), m.group(2)
        if q is not None:
            quoted.add(len(toks))
            toks.append(_UNESCAPE.sub(r"\1", q))
        else:
            toks.append(plain)
    return toks, quoted


def parse_ports(spec: str) -> tuple[tuple[int, int], ...]:
    """``80``, ``8000:8100``, ``80,443,8000:8100`` -> inclusive ranges (``:8100`` and ``8000:`` too)."""
    out = []
    for part in spec.split(","):
        lo, sep, hi = part.partition(":")
        a = int(lo) if lo else 0
        b = (int(hi) if hi else 65535) if sep else a
        out.append((a, b))
    return tuple(out)


def _ports(opt: Option) -> PortMatch | None:
    if not opt.values:
        return None
    try:
        return PortMatch(parse_ports(opt.values[0]), opt.negated)
    except ValueError:          # service names: not lifted (the option is still in Match)
        return None


def _addr_match(spec: str, neg: bool) -> AddrMatch:
    addr, _, plen = spec.partition("/")
    parts = addr.split(".")
    if len(parts) == 4 and (not plen or plen.isdigit()) and all(p.isdigit() and int(p) < 256 for p in parts):
        n = int(plen) if plen else 32                  # fast path: dotted quad / prefix length
        if n <= 32:
            value = (int(parts[0]) << 24) | (int(parts[1]) << 16) | (int(parts[2]) << 8) | int(parts[3])
            mask = ((1 << n) - 1) << (32 - n)
            return AddrMatch(4, value & mask, n, neg)
    try:
        return AddrMatch.of(ipaddress.ip_network(spec, strict=False), neg)
    except ValueError:
        raise _Err(f"bad address {spec!r}") from None


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.addrs: dict[tuple[str, bool], AddrMatch] = {}
        self.segments: dict[tuple[object, ...], tuple[object, ...]] = {}
        self.match_tuples: dict[tuple[int, ...], tuple[Match, ...]] = {}
        self.options: dict[tuple[object, ...], Option] = {}

    def addr(self, spec: str, neg: bool) -> AddrMatch:
        key = (spec, neg)
        a = self.addrs.get(key)
        if a is None:
            a = self.addrs[key] = _addr_match(spec, neg)
        return a

    def option(self, name: str, values: tuple[str, ...], neg: bool) -> Option:
        key = (name, neg, *values)
        o = self.options.get(key)
        if o is None:
            o = self.options[key] = Option(name, values, neg)
        return o

    def segment_end(self, toks: list[str], quoted: set[int], j: int) -> int:
        """End of the options that start at ``j`` (the next -m/-j/-g/basic option, or its '!')."""
        n = len(toks)
        while j < n:
            t = toks[j]
            if j not in quoted:
                if t in _STOP:
                    break
                if t == "!" and j + 1 < n and toks[j + 1] in _STOP:
                    break
            j += 1
        return j

    def options_of(self, toks: list[str], quoted: set[int], start: int, end: int) -> tuple[Option, ...]:
        opts: list[Option] = []
        neg = False
        i = start
        while i < end:
            t = toks[i]
            if i not in quoted and t == "!":
                neg = True
                i += 1
                continue
            if i in quoted or not t.startswith("--"):
                raise _Err(f"unexpected {t!r}")
            i += 1
            v0 = i
            while i < end and (i in quoted or (toks[i][0] != "-" and toks[i] != "!")):
                i += 1
            opts.append(self.option(t[2:], tuple(toks[v0:i]), neg))
            neg = False
        if neg:
            raise _Err("dangling '!'")
        return tuple(opts)

    def segment(self, kind: str, name: str, toks: list[str], quoted: set[int], start: int,
                end: int) -> tuple[object, ...]:
        """A match or target with its options, cached: kube-proxy repeats most of them."""
        key: tuple[object, ...] = (kind, name, *toks[start:end])
        if quoted:
            qs = tuple(q - start for q in quoted if start <= q < end)
            if qs:
                key = (*key, qs)
        hit = self.segments.get(key)
        if hit is not None:
            return hit
        opts = self.options_of(toks, quoted, start, end)
        if kind == "j" or kind == "g":
            entry: tuple[object, ...] = (Target(name, opts, kind == "g"),)
        else:
            m = Match(name, opts)
            comment = dport = sport = None
            if name == "comment":
                comment = m.value("comment")
            elif name in _PORT_MODULES or name == "multiport":
                for o in opts:
                    if o.name in ("dport", "destination-port", "dports", "destination-ports"):
                        dport = _ports(o)
                    elif o.name in ("sport", "source-port", "sports", "source-ports"):
                        sport = _ports(o)
            entry = (m, comment, dport, sport)
        self.segments[key] = entry
        return entry

    def rule(self, chain: str, num: int, counters: Counters, toks: list[str], quoted: set[int],
             text: str, start: int = 0) -> Rule:
        src = dst = None
        in_if = out_if = None
        proto: str | None = None
        proto_neg = False
        frag: bool | None = None
        matches: list[Match] = []
        target: Target | None = None
        comment: str | None = None
        dport = sport = None
        neg = False
        i, n = start, len(toks)
        while i < n:
            t = toks[i]
            i += 1
            if (i - 1) in quoted:
                raise _Err(f"unexpected {t!r}")
            if t == "!":
                neg = True
                continue
            kind = _BASIC_WITH_VALUE.get(t)
            if kind is not None:
                if i >= n:
                    raise _Err(f"{t} needs a value")
                v = toks[i]
                i += 1
                if kind == "s":
                    src = self.addr(v, neg)
                elif kind == "d":
                    dst = self.addr(v, neg)
                elif kind == "i":
                    in_if = IfaceMatch(v, neg)
                elif kind == "o":
                    out_if = IfaceMatch(v, neg)
                else:
                    proto = PROTO_NAMES.get(v, v.lower())
                    proto_neg = neg
                neg = False
                continue
            if neg:
                raise _Err(f"'!' before {t!r}")
            if t in ("-f", "--fragment"):
                frag = not neg
                continue
            if t in ("-c", "--set-counters"):
                i += 2                      # counters were taken from the line already
                continue
            if t in ("-m", "--match", "-j", "--jump", "-g", "--goto"):
                if i >= n:
                    raise _Err(f"{t} needs a name")
                name = toks[i]
                i += 1
                seg_kind = t[1] if len(t) == 2 else t[2]
                end = self.segment_end(toks, quoted, i)
            elif t.startswith("--"):       # implicit protocol match: -p tcp --dport 80
                if proto is None:
                    raise _Err(f"option {t} outside any match")
                name, seg_kind = proto, "m"
                i -= 1
                end = self.segment_end(toks, quoted, i)
            else:
                raise _Err(f"unexpected {t!r}")
            if target is not None:
                raise _Err(f"{t} after the target")
            entry = self.segment(seg_kind, name, toks, quoted, i, end)
            i = end
            if seg_kind == "m":
                m, c, dp, sp = entry
                matches.append(m)  # type: ignore[arg-type]
                if c is not None:
                    comment = c if comment is None else f"{comment}; {c}"  # type: ignore[str-bytes-safe]
                if dp is not None:
                    dport = dp
                if sp is not None:
                    sport = sp
            else:
                target = entry[0]  # type: ignore[assignment]
        if neg:
            raise _Err("dangling '!'")
        mkey = tuple(map(id, matches))          # Match objects are cached, so ids are stable
        mtuple = self.match_tuples.get(mkey)
        if mtuple is None:
            mtuple = self.match_tuples[mkey] = tuple(matches)
        return Rule(chain, num, counters, src, dst, in_if, out_if, proto, proto_neg, frag,
                    mtuple, target, comment, dport, sport, text)  # type: ignore[arg-type]


_ZERO = Counters()


def _counters(spec: str) -> Counters:
    if spec == "[0:0]":
        return _ZERO
    p, _, b = spec.strip("[]").partition(":")
    return Counters(int(p), int(b))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Building ~10^5 small immutable objects triggers many useless full GC passes (they hold no
    cycles); pausing the collector halves the parse time of large kube-proxy rulesets."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse_iptables_save(text: str, source: str = "iptables-save.txt") -> Iptables:
    """Parse ``iptables-save [-c]`` output; errors name ``source:line``."""
    with gc_paused():
        return _parse(text, source)


def _parse(text: str, source: str) -> Iptables:
    parser = _Parser(source)
    tables: dict[str, IptTable] = {}
    header: str | None = None
    table: str | None = None
    table_line = 0
    chains: dict[str, tuple[str | None, Counters, list[Rule]]] = {}

    def err(lineno: int, msg: str) -> SnapshotError:
        return SnapshotError(msg, where=f"{source}:{lineno}")

    lineno = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        c = line[0]
        if c == "#":
            if header is None and line.startswith("# Generated by"):
                header = line
            continue
        if c == "*":
            if table is not None:
                raise err(lineno, f"table {line[1:]!r} starts before COMMIT of table {table!r}")
            table, table_line, chains = line[1:].strip(), lineno, {}
            if not table:
                raise err(lineno, "empty table name")
            if table in tables:
                raise err(lineno, f"table {table!r} appears twice")
            continue
        if table is None:
            raise err(lineno, f"{line.split()[0]!r} outside a table (missing '*table')")
        if line == "COMMIT":
            tables[table] = IptTable(table, {name: Chain(name, pol, cnt, tuple(rules))
                                             for name, (pol, cnt, rules) in chains.items()})
            table = None
            continue
        if c == ":":
            parts = line[1:].split()
            if not parts or len(parts) > 3:
                raise err(lineno, "chain declaration must be ':NAME POLICY [packets:bytes]'")
            name = parts[0]
            policy = parts[1] if len(parts) > 1 else "-"
            try:
                cnt = _counters(parts[2]) if len(parts) > 2 else Counters()
            except ValueError:
                raise err(lineno, f"bad counters {parts[2]!r}") from None
            chains[name] = (None if policy == "-" else policy, cnt, [])
            continue
        counters = Counters()
        body = line
        if c == "[":
            end = line.find("]")
            if end < 0:
                raise err(lineno, "unterminated counters '['")
            try:
                counters = _counters(line[: end + 1])
            except ValueError:
                raise err(lineno, f"bad counters {line[: end + 1]!r}") from None
            body = line[end + 1:].lstrip()
        if not body.startswith("-A "):
            raise err(lineno, f"expected '-A CHAIN ...', got {body.split()[0] if body else 'nothing'!r}")
        toks, quoted = _tokenize(body)
        if len(toks) < 2:
            raise err(lineno, "-A without a chain")
        chain = toks[1]
        entry = chains.get(chain)
        if entry is None:
            raise err(lineno, f"chain {chain!r} not declared in table {table!r}")
        if (" -c " in body or "--set-counters" in body) and ("-c" in toks or "--set-counters" in toks):
            k = toks.index("-c") if "-c" in toks else toks.index("--set-counters")
            try:
                counters = Counters(int(toks[k + 1]), int(toks[k + 2]))
            except (IndexError, ValueError):
                raise err(lineno, "-c needs PACKETS BYTES") from None
        rules = entry[2]
        try:
            rule = parser.rule(chain, len(rules) + 1, counters, toks, quoted, body, 2)
        except _Err as e:
            raise err(lineno, f"{e} (chain {chain})") from None
        rules.append(rule)
    if table is not None:
        raise err(table_line, f"table {table!r} has no COMMIT")
    return Iptables(tables, header)


def render_iptables_save(ipt: Iptables) -> str:
    """iptables-save -c text of a parsed ruleset (``Rule.text`` keeps each rule's own spelling)."""
    out: list[str] = []
    for t in ipt.tables.values():
        out.append(f"*{t.name}")
        for ch in t.chains.values():
            out.append(f":{ch.name} {ch.policy or '-'} [{ch.counters.packets}:{ch.counters.bytes}]")
        for ch in t.chains.values():
            for r in ch.rules:
                out.append(f"[{r.counters.packets}:{r.counters.bytes}] {r.text}")
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
