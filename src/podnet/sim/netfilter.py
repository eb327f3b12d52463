"""Netfilter as the kernel runs it for one packet at one hook: iptables tables and nftables base
chains in priority order, rule by rule, with the matches and targets kube-proxy, flannel,
Calico-style and NetworkPolicy rules use. Pure.

A hook is a list of entries sorted by priority (raw -300, conntrack -200, mangle -150, dstnat -100,
filter 0, security 50, srcnat 100, plus every nftables base chain at its own priority). The nat
entries only run for a packet that starts a connection; later packets get the conntrack entry's
binding instead (the walker applies it). Rules are found through ``podnet.sim.ruleindex`` (candidates
by destination), then every match is evaluated exactly; the first terminal verdict wins.

Matches: -s -d -i -o -p -f; modules comment, tcp/udp/sctp (ports, --tcp-flags, --syn), multiport,
icmp, statistic (random and nth: the walk forks, see ``podnet.sim.choices``), mark, connmark,
conntrack/state, addrtype, physdev, recent (lists start empty: they are not in dumps), iprange,
pkttype, length, limit/hashlimit (a first packet passes), mac, dscp/tos. Targets: ACCEPT, DROP,
REJECT, RETURN, jumps and gotos, DNAT, SNAT, MASQUERADE, REDIRECT, MARK, CONNMARK, NOTRACK/CT,
and the logging targets (LOG, NFLOG, TRACE...) which do not decide. Anything else is reported as a
warning and treated as not matching.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from podnet.sim.choices import Chooser
from podnet.sim.conntrack_sim import CtInfo
from podnet.sim.packet import Packet, is_multicast
from podnet.sim.parse_iptables import parse_ports
from podnet.sim.routing import Fib
from podnet.sim.ruleindex import IptablesIndex
from podnet.sim.snapshot import IPAddress, Iptables, Match, NftRuleset, Rule, Target
from podnet.trace.model import NatChange, RuleRef

HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
TABLE_PRIO = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
NAT_PRIO = {"PREROUTING": -100, "OUTPUT": -100, "INPUT": 100, "POSTROUTING": 100}
TABLE_HOOKS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": HOOKS,
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
CONNTRACK_PRIO = -200
COMPAT_TABLES = frozenset(TABLE_HOOKS)
NON_DECIDING = frozenset({"LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "CHECKSUM", "TCPMSS", "CLASSIFY", "DSCP",
                          "TOS", "TTL", "SET", "IDLETIMER", "LED", "NFACCT", "SECMARK", "CONNSECMARK"})
ICMP_TYPES = {"any": (None, None), "echo-reply": (0, None), "pong": (0, None),
              "destination-unreachable": (3, None), "network-unreachable": (3, 0), "host-unreachable": (3, 1),
              "protocol-unreachable": (3, 2), "port-unreachable": (3, 3), "fragmentation-needed": (3, 4),
              "source-quench": (4, None), "redirect": (5, None), "echo-request": (8, None), "ping": (8, None),
              "time-exceeded": (11, None), "parameter-problem": (12, None), "timestamp-request": (13, None),
              "timestamp-reply": (14, None)}
MAX_DEPTH = 64


# ---------------------------------------------------------------------------------------------------
# what a hook needs from the walker, and what it gives back


@dataclass(slots=True)
class HookCtx:
    hook: str
    in_dev: str | None
    out_dev: str | None
    fib: Fib
    chooser: Chooser
    ct: CtInfo
    physdev_in: str | None = None
    physdev_out: str | None = None
    bridged: bool = False                     # br_netfilter: the frame is being bridged (L2 forward)
    src_mac: str | None = None
    recent: dict[str, set[IPAddress]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    masquerade_src: Callable[[str | None, IPAddress], IPAddress | None] | None = None
    nat_new: bool = True                      # nat chains run (the packet starts a connection)


@dataclass(slots=True)
class ChainRun:
    """What one table/base chain did at this hook."""

    backend: str
    table: str
    chain: str
    rules: list[RuleRef]
    verdict: str                              # ACCEPT, DROP, REJECT, QUEUE, or "" (fell through)
    decided_by: RuleRef | None = None         # the rule (or policy) that gave the verdict
    nat: list[NatChange] = field(default_factory=list)
    reject_with: str | None = None


@dataclass(slots=True)
class HookResult:
    runs: list[ChainRun]
    verdict: str                              # ACCEPT, DROP, REJECT, QUEUE
    decided_by: RuleRef | None = None
    reject_with: str | None = None


class _Stop(Exception):
    """A terminal verdict inside a nested chain."""

    def __init__(self, verdict: str, ref: RuleRef, reject_with: str | None = None) -> None:
        self.verdict = verdict
        self.ref = ref
        self.reject_with = reject_with


# ---------------------------------------------------------------------------------------------------
# NAT helpers (shared with nftables)


def nat_dst(pkt: Packet, ip: IPAddress | None, port: int | None, kind: str) -> NatChange:
    before = pkt.endpoint("dst")
    if ip is not None:
        pkt.dst = ip
    if port is not None and pkt.has_ports:
        pkt.dport = port
    return NatChange(kind, "dst", before, pkt.endpoint("dst"))


def nat_src(pkt: Packet, ip: IPAddress | None, port: int | None, kind: str) -> NatChange:
    before = pkt.endpoint("src")
    if ip is not None:
        pkt.src = ip
    if port is not None and pkt.has_ports:
        pkt.sport = port
    return NatChange(kind, "src", before, pkt.endpoint("src"))


# ---------------------------------------------------------------------------------------------------
# iptables matches


def _ports_in(spec: str, port: int | None) -> bool:
    if port is None:
        return False
    try:
        return any(lo <= port <= hi for lo, hi in parse_ports(spec))
    except ValueError:
        return False


def _mark_match(value: str, mark: int) -> bool:
    v, _, m = value.partition("/")
    mask = int(m, 0) if m else 0xFFFFFFFF
    return (mark & mask) == int(v, 0)


def _addr_in(spec: str, ip: IPAddress) -> bool:
    try:
        return ip in ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return False


def _range_in(spec: str, ip: IPAddress) -> bool:
    lo, _, hi = spec.partition("-")
    a = ipaddress.ip_address(lo)
    b = ipaddress.ip_address(hi) if hi else a
    return a.version == ip.version and a <= ip <= b  # type: ignore[operator]


def _ct_states(ct: CtInfo) -> set[str]:
    states = {ct.state}
    if ct.entry is not None and ct.state != "UNTRACKED":
        if ct.entry.dnat:
            states.add("DNAT")
        if ct.entry.snat:
            states.add("SNAT")
    return states


def _icmp_type(spec: str, pkt: Packet) -> bool:
    if pkt.proto != "icmp":
        return False
    if spec in ICMP_TYPES:
        t, c = ICMP_TYPES[spec]
    else:
        t_s, _, c_s = spec.partition("/")
        t, c = int(t_s), (int(c_s) if c_s else None)
    if t is None:
        return True
    return pkt.icmp_type == t and (c is None or pkt.icmp_code == c)


class Unsupported(Exception):
    pass


def _match_module(m: Match, pkt: Packet, ctx: HookCtx, table: str, rule: Rule) -> bool:
    mod = m.module
    if mod == "comment":
        return True
    if mod in ("tcp", "udp", "sctp", "udplite", "dccp"):
        if pkt.proto != mod:
            return False
        for o in m.options:
            n = o.name
            if n in ("dport", "destination-port"):
                hit = _ports_in(o.values[0], pkt.dport)
            elif n in ("sport", "source-port"):
                hit = _ports_in(o.values[0], pkt.sport)
            elif n == "tcp-flags" and len(o.values) == 2:
                mask = set(o.values[0].split(","))
                comp = set(o.values[1].split(",")) - {"NONE"}
                if "ALL" in mask:
                    mask = {"SYN", "ACK", "FIN", "RST", "URG", "PSH", "ECE", "CWR"}
                hit = (set(pkt.tcp_flags) & mask) == (comp & mask)
            elif n == "syn":
                hit = "SYN" in pkt.tcp_flags and not ({"ACK", "RST", "FIN"} & pkt.tcp_flags)
            elif n in ("chunk-types", "tcp-option"):
                raise Unsupported(f"{mod} --{n}")
            else:
                continue
            if hit == o.negated:
                return False
        return True
    if mod == "multiport":
        for o in m.options:
            if o.name in ("dports", "destination-ports"):
                hit = _ports_in(o.values[0], pkt.dport)
            elif o.name in ("sports", "source-ports"):
                hit = _ports_in(o.values[0], pkt.sport)
            elif o.name == "ports":
                hit = _ports_in(o.values[0], pkt.dport) or _ports_in(o.values[0], pkt.sport)
            else:
                continue
            if not pkt.has_ports or hit == o.negated:
                return False
        return True
    if mod == "statistic":
        mode = m.value("mode")
        if mode == "random":
            o = m.get("probability")
            p = float(o.value or 0) if o else 0.0
            if o is not None and o.negated:
                p = 1 - p
            if p >= 1.0:
                return True
            if p <= 0.0:
                return False
            return ctx.chooser.branch(_where(table, rule), [(f"statistic p={p:.4f} taken", p),
                                              (f"statistic p={p:.4f} not taken", 1 - p)]) == 0
        if mode == "nth":
            every = int(m.value("every") or 1)
            p = 1.0 / every
            if every <= 1:
                return True
            return ctx.chooser.branch(_where(table, rule), [(f"nth every {every} taken", p),
                                              (f"nth every {every} not taken", 1 - p)]) == 0
        raise Unsupported(f"statistic --mode {mode}")
    if mod == "mark":
        o = m.get("mark")
        return o is None or _mark_match(o.values[0], pkt.mark) != o.negated
    if mod == "connmark":
        o = m.get("mark")
        cm = ctx.ct.entry.mark if ctx.ct.entry is not None else 0
        return o is None or _mark_match(o.values[0], cm) != o.negated
    if mod in ("conntrack", "state"):
        ct = ctx.ct
        for o in m.options:
            n = o.name
            if n in ("ctstate", "state"):
                hit = bool(set(o.values[0].split(",")) & _ct_states(ct))
            elif n == "ctstatus":
                st = set(ct.entry.status) if ct.entry else set()
                if ct.confirmed:
                    st.add("CONFIRMED")
                hit = bool(set(o.values[0].split(",")) & st)
            elif n == "ctdir":
                hit = (o.values[0].upper() == "REPLY") == ct.reply
            elif n == "ctproto":
                hit = o.values[0].lower() == pkt.proto
            elif n in ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"):
                e = ct.entry
                if e is None:
                    hit = False
                else:
                    tup = e.orig if "orig" in n else (e.reply or e.orig.inverse())
                    ip = tup.src if n.endswith("src") else tup.dst
                    hit = _addr_in(o.values[0], ip)
            elif n in ("ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport"):
                e = ct.entry
                if e is None:
                    hit = False
                else:
                    tup = e.orig if "orig" in n else (e.reply or e.orig.inverse())
                    port = tup.sport if "srcport" in n else tup.dport
                    hit = _ports_in(o.values[0].replace("-", ":"), port)
            else:
                raise Unsupported(f"conntrack --{n}")
            if hit == o.negated:
                return False
        return True
    if mod == "addrtype":
        for o in m.options:
            if o.name in ("src-type", "dst-type"):
                ip = pkt.src if o.name == "src-type" else pkt.dst
                types = set(o.values[0].upper().split(","))
                hit = ctx.fib.addr_type(ip) in types
            elif o.name in ("limit-iface-in", "limit-iface-out"):
                continue       # types are per-namespace here: the interface limit does not change them
            else:
                raise Unsupported(f"addrtype --{o.name}")
            if hit == o.negated:
                return False
        return True
    if mod == "physdev":
        for o in m.options:
            n = o.name
            if n == "physdev-in":
                dev = ctx.physdev_in
                hit = dev is not None and _iface_glob(o.values[0], dev)
            elif n == "physdev-out":
                dev = ctx.physdev_out
                hit = dev is not None and _iface_glob(o.values[0], dev)
            elif n == "physdev-is-in":
                hit = ctx.physdev_in is not None
            elif n == "physdev-is-out":
                hit = ctx.physdev_out is not None
            elif n == "physdev-is-bridged":
                hit = ctx.bridged
            else:
                raise Unsupported(f"physdev --{n}")
            if hit == o.negated:
                return False
        return True
    if mod == "recent":
        name = m.value("name") or "DEFAULT"
        use_dst = m.has("rdest")
        ip = pkt.dst if use_dst else pkt.src
        lst = ctx.recent.setdefault(name, set())
        neg = any(o.negated for o in m.options if o.name in ("set", "rcheck", "update", "remove"))
        if m.has("set"):
            lst.add(ip)
            hit = True
        elif m.has("remove"):
            hit = ip in lst
            lst.discard(ip)
        else:                      # --rcheck / --update (with --seconds/--hitcount: same first packet)
            hit = ip in lst and not m.has("hitcount")
        return hit != neg
    if mod == "icmp":
        o = m.get("icmp-type")
        return o is None or _icmp_type(o.values[0], pkt) != o.negated
    if mod == "iprange":
        for o in m.options:
            if o.name == "src-range":
                hit = _range_in(o.values[0], pkt.src)
            elif o.name == "dst-range":
                hit = _range_in(o.values[0], pkt.dst)
            else:
                continue
            if hit == o.negated:
                return False
        return True
    if mod == "pkttype":
        o = m.get("pkt-type")
        if o is None:
            return True
        kind = "multicast" if is_multicast(pkt.dst) else (
            "broadcast" if ctx.fib.addr_type(pkt.dst) == "BROADCAST" else "unicast")
        return (o.values[0].lower() == kind) != o.negated
    if mod == "length":
        o = m.get("length")
        return o is None or _ports_in(o.values[0], pkt.size) != o.negated
    if mod in ("limit", "hashlimit"):
        return True
    if mod == "mac":
        o = m.get("mac-source")
        if o is None:
            return True
        if ctx.src_mac is None:
            return o.negated
        return (o.values[0].lower() == ctx.src_mac.lower()) != o.negated
    if mod in ("dscp", "tos"):
        o = m.get("dscp") or m.get("tos")
        return o is None or (int(o.values[0], 0) == 0) != o.negated
    if mod == "ttl":
        for o in m.options:
            v = int(o.values[0])
            hit = {"ttl-eq": pkt.ttl == v, "ttl-lt": pkt.ttl < v, "ttl-gt": pkt.ttl > v}.get(o.name, False)
            if hit == o.negated:
                return False
        return True
    raise Unsupported(f"-m {mod}")


def _iface_glob(pattern: str, dev: str) -> bool:
    return dev.startswith(pattern[:-1]) if pattern.endswith("+") else dev == pattern


def _where(table: str, rule: Rule) -> str:
    return f"{table}/{rule.chain} #{rule.num}"


def rule_matches(rule: Rule, pkt: Packet, ctx: HookCtx, table: str) -> bool:
    if rule.src is not None and not rule.src.contains(pkt.src):
        return False
    if rule.dst is not None and not rule.dst.contains(pkt.dst):
        return False
    if rule.proto is not None and rule.proto != "all" and (pkt.proto == rule.proto) == rule.proto_negated:
        return False
    if rule.in_iface is not None and not rule.in_iface.matches(ctx.in_dev):
        return False
    if rule.out_iface is not None and not rule.out_iface.matches(ctx.out_dev):
        return False
    if rule.fragment is True:
        return False               # -f: second and later fragments only
    for m in rule.matches:
        try:
            if not _match_module(m, pkt, ctx, table, rule):
                return False
        except (Unsupported, ValueError) as e:
            ctx.warnings.append(f"{_where(table, rule)}: {e} is not modelled; the rule is assumed not to match")
            return False
    return True


# ---------------------------------------------------------------------------------------------------
# iptables evaluation


def _ref(table: str, rule: Rule, target: str, note: str | None = None) -> RuleRef:
    return RuleRef("iptables", table, rule.chain, rule.num, target, rule.comment, rule.text, note)


class IptablesEval:
    """Evaluates one namespace's iptables (shared between namespaces with identical rulesets)."""

    def __init__(self, ipt: Iptables) -> None:
        self.ipt = ipt
        self.index = IptablesIndex(ipt)
        self.chains = {(t.name, c.name): c for t in ipt.tables.values() for c in t.chains.values()}
        self._cands: dict[tuple[str, str], object] = {}

    def run(self, table: str, hook: str, pkt: Packet, ctx: HookCtx) -> ChainRun | None:
        ch = self.chains.get((table, hook))
        if ch is None:
            return None
        run = ChainRun("iptables", table, hook, [], "")
        try:
            self._chain(table, hook, pkt, ctx, run, 0)
        except _Stop as s:
            run.verdict, run.decided_by, run.reject_with = s.verdict, s.ref, s.reject_with
            return run
        policy = ch.policy or "ACCEPT"
        run.verdict = policy
        pref = RuleRef("iptables", table, hook, 0, policy, None, f":{hook} {policy}")
        run.decided_by = pref
        if policy != "ACCEPT":
            run.rules.append(pref)
        return run

    def _chain(self, table: str, chain: str, pkt: Packet, ctx: HookCtx, run: ChainRun, depth: int) -> None:
        """Run ``chain`` until a terminal verdict (raised as _Stop), a RETURN or its end."""
        if depth > MAX_DEPTH:
            raise _Stop("DROP", RuleRef("iptables", table, chain, 0, "loop"), None)
        ch = self.chains.get((table, chain))
        if ch is None:
            return
        rules = ch.rules
        if len(rules) > 8:
            cands: Iterable[Rule] = [rules[p] for p in self.index.chain(table, chain).candidates(
                pkt.dst, pkt.proto, pkt.dport)]
        else:
            cands = rules
        made = ctx.chooser.made
        skipped: list[str] = []          # random branches not taken on the way (shown on the next match)
        for rule in cands:
            n_dec = len(made)
            if not rule_matches(rule, pkt, ctx, table):
                if len(made) > n_dec:
                    skipped.append(f"#{rule.num} {made[-1].label}")
                continue
            note = None
            if skipped or len(made) > n_dec:
                notes = [*skipped]
                skipped = []
                if len(made) > n_dec:
                    notes.append(made[-1].label)
                note = "; ".join(notes)
            t = rule.target
            if t is None:
                run.rules.append(_ref(table, rule, "", note))
                continue
            name = t.name
            if name in ("ACCEPT", "DROP"):
                ref = _ref(table, rule, name, note)
                run.rules.append(ref)
                raise _Stop(name, ref)
            if name == "REJECT":
                ref = _ref(table, rule, name, note)
                run.rules.append(ref)
                raise _Stop("REJECT", ref, t.value("reject-with") or "icmp-port-unreachable")
            if name == "RETURN":
                run.rules.append(_ref(table, rule, name, note))
                return
            if name in ("QUEUE", "NFQUEUE"):
                ref = _ref(table, rule, name, note)
                run.rules.append(ref)
                raise _Stop("QUEUE", ref)
            if name in ("DNAT", "SNAT", "MASQUERADE", "REDIRECT"):
                ref = _ref(table, rule, name, note)
                run.rules.append(ref)
                change = self._nat(t, pkt, ctx, _where(table, rule))
                if change is not None:
                    run.nat.append(change)
                raise _Stop("ACCEPT", ref)
            if name == "MARK":
                mk = t.mark
                if mk is not None:
                    value, mask = mk
                    pkt.mark = (pkt.mark & ~mask & 0xFFFFFFFF) ^ value
                run.rules.append(_ref(table, rule, name, note))
                continue
            if name == "CONNMARK":
                self._connmark(t, pkt, ctx)
                run.rules.append(_ref(table, rule, name, note))
                continue
            if name == "NOTRACK" or (name == "CT" and t.has("notrack")):
                ctx.ct.state = "UNTRACKED"
                ctx.ct.entry = None
                run.rules.append(_ref(table, rule, name, note))
                continue
            if name == "CT" or name in NON_DECIDING:
                run.rules.append(_ref(table, rule, name, note))
                continue
            if (table, name) in self.chains:
                run.rules.append(_ref(table, rule, name, note))
                self._chain(table, name, pkt, ctx, run, depth + 1)
                if t.goto:
                    return         # -g: when the target chain ends, this chain ends too
                continue
            ctx.warnings.append(f"{_where(table, rule)}: target {name} is not modelled; the rule is skipped")
            run.rules.append(_ref(table, rule, name, note))

    def _nat(self, t: Target, pkt: Packet, ctx: HookCtx, where: str) -> NatChange | None:
        name = t.name
        if name == "MASQUERADE":
            ip = ctx.masquerade_src(ctx.out_dev, pkt.dst) if ctx.masquerade_src else None
            ports = t.value("to-ports")
            port = int(ports.split("-")[0]) if ports else None
            return nat_src(pkt, ip, port, "masquerade")
        if name == "REDIRECT":
            ports = t.value("to-ports")
            port = int(ports.split("-")[0]) if ports else None
            if ctx.hook == "OUTPUT":
                ip: IPAddress | None = ipaddress.ip_address("127.0.0.1")
            else:
                ip = ctx.fib.primary_address(ctx.in_dev or "", pkt.dst.version)
            return nat_dst(pkt, ip, port, "redirect")
        rng = t.nat_range
        if rng is None:
            return None
        if rng.addr_min != rng.addr_max or rng.port_min != rng.port_max:
            ctx.warnings.append(f"{where}: {name} to a range; the first address/port is shown")
        if name == "DNAT":
            return nat_dst(pkt, rng.addr_min, rng.port_min, "dnat")
        return nat_src(pkt, rng.addr_min, rng.port_min, "snat")

    @staticmethod
    def _connmark(t: Target, pkt: Packet, ctx: HookCtx) -> None:
        e = ctx.ct.entry
        if e is None:
            return
        for o in t.options:
            if o.name in ("set-xmark", "set-mark") and o.value:
                v, _, m = o.value.partition("/")
                value, mask = int(v, 0), int(m, 0) if m else 0xFFFFFFFF
                e.mark = (e.mark & ~mask & 0xFFFFFFFF) ^ value
            elif o.name == "save-mark":
                e.mark = pkt.mark
            elif o.name == "restore-mark":
                pkt.mark = e.mark


# ---------------------------------------------------------------------------------------------------
# the hook: every table and base chain in priority order


@dataclass(frozen=True, slots=True)
class HookEntry:
    prio: int
    kind: str                 # iptables, nft, conntrack
    table: str = ""           # iptables table, or "family table" for nft
    chain: str = ""           # nft base chain name
    nat: bool = False         # a nat-type chain (runs for NEW connections only)


def _nft_prio(value: object) -> int:
    names = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        s = value.replace(" ", "")
        for name, base in names.items():
            if s.startswith(name):
                rest = s[len(name):]
                return base + (int(rest) if rest else 0)
        try:
            return int(s)
        except ValueError:
            return 0
    return 0


def hook_plan(ipt: Iptables, nft: NftRuleset) -> dict[str, list[HookEntry]]:
    """Per hook, what runs in which order (conntrack included at -200 where it runs)."""
    plan: dict[str, list[HookEntry]] = {h: [] for h in HOOKS}
    for table, hooks in TABLE_HOOKS.items():
        if table not in ipt.tables:
            continue
        for h in hooks:
            if ipt.chain(table, h) is None:
                continue
            prio = NAT_PRIO[h] if table == "nat" else TABLE_PRIO[table]
            plan[h].append(HookEntry(prio, "iptables", table, h, table == "nat"))
    for (fam, tname), t in nft.tables.items():
        if fam not in ("ip", "inet"):
            continue
        if fam == "ip" and tname in COMPAT_TABLES and tname in ipt.tables:
            continue                         # iptables-nft's own tables: iptables-save is authoritative
        for c in t.chains.values():
            if not c.base or c.hook is None:
                continue
            h = c.hook.upper()
            if h not in plan:
                continue
            plan[h].append(HookEntry(_nft_prio(c.prio), "nft", f"{fam} {tname}", c.name, c.type == "nat"))
    for h in ("PREROUTING", "OUTPUT"):
        plan[h].append(HookEntry(CONNTRACK_PRIO, "conntrack"))
    for entries in plan.values():
        entries.sort(key=lambda e: (e.prio, e.kind != "conntrack"))
    return plan
