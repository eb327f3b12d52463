"""Snapshots as directories of dump files: one subdirectory per namespace (node, pod, router), one
file per command, exactly as a user produces them on a real node (see docs/snapshot.md).

``netns_from_dumps`` is pure (texts in); ``load_snapshot``/``save_snapshot`` do the file I/O.
Identical files (the same kube-proxy ruleset on 1,000 nodes) are parsed once and shared.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podnet.sim.parse_bridge import parse_bridge_fdb, parse_bridge_link, with_bridge_ports
from podnet.sim.parse_conntrack import parse_conntrack, render_conntrack
from podnet.sim.parse_ip import (
    parse_ip_addr,
    parse_ip_link,
    parse_ip_neigh,
    parse_ip_netns,
    parse_ip_route,
    parse_ip_route_cache,
    parse_ip_rule,
)
from podnet.sim.parse_iptables import gc_paused, parse_iptables_save, render_iptables_save
from podnet.sim.parse_nft import parse_nft
from podnet.sim.parse_ss import parse_ss, render_ss
from podnet.sim.parse_sysctl import parse_sysctl, render_sysctl
from podnet.sim.snapshot import Iptables, NetnsState, NftRuleset, Snapshot, SnapshotError

SYSCTL_PATTERN = (r"^net\.(ipv4\.(ip_forward|conf\.|ip_local_port_range|ip_nonlocal_bind)"
                  r"|ipv6\.conf\.|bridge\.|netfilter\.nf_conntrack_)")


@dataclass(frozen=True, slots=True)
class DumpFile:
    name: str                     # file name inside the namespace's directory
    argv: tuple[str, ...]         # the command whose stdout is the file
    what: str

    @property
    def shell(self) -> str:
        return f"{shlex.join(self.argv)} > {self.name}"


DUMP_FILES: tuple[DumpFile, ...] = (
    DumpFile("ip-link.json", ("ip", "-j", "-d", "link", "show"), "links with kind, MTU, master, vxlan"),
    DumpFile("ip-addr.json", ("ip", "-j", "addr", "show"), "addresses"),
    DumpFile("ip-route.json", ("ip", "-j", "route", "show", "table", "all"), "routes of every table"),
    DumpFile("ip-rule.json", ("ip", "-j", "rule", "show"), "policy routing rules"),
    DumpFile("ip-neigh.json", ("ip", "-j", "neigh", "show"), "ARP/ND neighbours"),
    DumpFile("bridge-fdb.json", ("bridge", "-j", "fdb", "show"), "bridge and VXLAN forwarding entries"),
    DumpFile("bridge-link.json", ("bridge", "-j", "-d", "link", "show"), "bridge ports (hairpin)"),
    DumpFile("iptables-save.txt", ("iptables-save", "-c"), "iptables rules with counters"),
    DumpFile("nft.json", ("nft", "-j", "list", "ruleset"), "nftables ruleset"),
    DumpFile("conntrack.txt", ("conntrack", "-L", "-o", "extended"), "connection tracking entries"),
    DumpFile("sysctl.txt", ("sysctl", "-a", "-r", SYSCTL_PATTERN), "forwarding, rp_filter, br_netfilter"),
    DumpFile("ss-listen.txt", ("ss", "-H", "-l", "-n", "-t", "-u", "-S"), "listening sockets"),
    DumpFile("ip-netns.json", ("ip", "-j", "netns", "list-id"), "names of peer namespaces (veth pairs)"),
    DumpFile("ip-route-cache.json", ("ip", "-j", "route", "show", "cached"), "learned path MTUs"),
)
FILE_NAMES = frozenset(f.name for f in DUMP_FILES)


def dump_commands() -> list[str]:
    """The shell commands to run on a node (as root, in the directory to fill), one per file."""
    return [f.shell for f in DUMP_FILES]


def netns_from_dumps(name: str, texts: Mapping[str, str], *, where: str = "",
                     cache: dict[tuple[str, str], Any] | None = None) -> NetnsState:
    """Parse one namespace's dump texts (file name -> content; missing files mean empty state).

    ``where`` prefixes file names in errors (e.g. the directory); ``cache`` shares parse results of
    identical texts across namespaces (pass the same dict for every namespace of a snapshot)."""
    unknown = set(texts) - FILE_NAMES
    if unknown:
        raise SnapshotError(f"unknown dump file(s) {', '.join(sorted(unknown))}", where=where or name)

    def parse(fname: str, fn: Callable[[str, str], Any], empty: Any) -> Any:
        text = texts.get(fname)
        if text is None:
            return empty
        key = (fname, text)
        if cache is not None and key in cache:
            return cache[key]
        result = fn(text, os.path.join(where, fname) if where else fname)
        if cache is not None:
            cache[key] = result
        return result

    links = parse("ip-link.json", parse_ip_link, ())
    ports = parse("bridge-link.json", parse_bridge_link, {})
    return NetnsState(
        name=name,
        links=with_bridge_ports(links, ports),
        addresses=parse("ip-addr.json", parse_ip_addr, ()),
        routes=parse("ip-route.json", parse_ip_route, ()),
        rules=parse("ip-rule.json", parse_ip_rule, ()),
        neighbours=parse("ip-neigh.json", parse_ip_neigh, ()),
        fdb=parse("bridge-fdb.json", parse_bridge_fdb, ()),
        iptables=parse("iptables-save.txt", parse_iptables_save, Iptables()),
        nft=parse("nft.json", parse_nft, NftRuleset()),
        conntrack=parse("conntrack.txt", parse_conntrack, ()),
        sysctls=parse("sysctl.txt", parse_sysctl, {}),
        sockets=parse("ss-listen.txt", parse_ss, None),
        netns_ids=parse("ip-netns.json", parse_ip_netns, {}),
        route_cache=parse("ip-route-cache.json", parse_ip_route_cache, ()),
        sources=dict(texts),
    )


def _read_dir(d: Path, interned: dict[str, str], by_inode: dict[tuple[int, int, int, int], str]) -> dict[str, str]:
    texts: dict[str, str] = {}
    for f in DUMP_FILES:
        p = d / f.name
        try:
            st = p.stat()
        except OSError:
            continue
        if not p.is_file():
            continue
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        text = by_inode.get(key)                 # hard links to one dump are read once
        if text is None:
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise SnapshotError(f"cannot read: {e}", where=str(p)) from None
            text = by_inode[key] = interned.setdefault(text, text)   # identical files share one string
        texts[f.name] = text
    return texts


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Load a dump directory: each subdirectory holding dump files is a namespace named after it;
    a directory that holds dump files itself is a single namespace named after the directory."""
    root = Path(path)
    if not root.is_dir():
        raise SnapshotError("not a directory", where=str(root))
    interned: dict[str, str] = {}
    by_inode: dict[tuple[int, int, int, int], str] = {}
    cache: dict[tuple[str, str], Any] = {}
    if any((root / n).is_file() for n in FILE_NAMES):
        dirs = [root]
    else:
        dirs = sorted(d for d in root.iterdir() if d.is_dir() and any((d / n).is_file() for n in FILE_NAMES))
    if not dirs:
        raise SnapshotError("no dump files (expected ip-link.json, iptables-save.txt, ... or one "
                            "subdirectory of them per namespace)", where=str(root))
    namespaces: dict[str, NetnsState] = {}
    with gc_paused():      # millions of small acyclic objects: collection passes would only cost time
        for d in dirs:
            name = d.resolve().name
            namespaces[name] = netns_from_dumps(name, _read_dir(d, interned, by_inode), where=str(d), cache=cache)
    return Snapshot(namespaces)


def render_dumps(ns: NetnsState) -> dict[str, str]:
    """The dump texts of a namespace: the loaded sources where present, else rendered from the model
    (iptables-save, nft, conntrack, sysctl, ss and netns ids only: iproute2 link/addr/route JSON is
    never re-synthesised)."""
    texts = dict(ns.sources)
    if "iptables-save.txt" not in texts and ns.iptables.tables:
        texts["iptables-save.txt"] = render_iptables_save(ns.iptables)
    if "nft.json" not in texts and ns.nft.raw:
        texts["nft.json"] = json.dumps({"nftables": list(ns.nft.raw)})
    if "conntrack.txt" not in texts and ns.conntrack:
        texts["conntrack.txt"] = render_conntrack(ns.conntrack)
    if "sysctl.txt" not in texts and ns.sysctls:
        texts["sysctl.txt"] = render_sysctl(dict(ns.sysctls))
    if "ss-listen.txt" not in texts and ns.sockets is not None:
        texts["ss-listen.txt"] = render_ss(ns.sockets)
    if "ip-netns.json" not in texts and ns.netns_ids:
        texts["ip-netns.json"] = json.dumps([{"nsid": k, "name": v} for k, v in ns.netns_ids.items()])
    return texts


def save_snapshot(snapshot: Snapshot, path: str | os.PathLike[str]) -> None:
    """Write ``snapshot`` as a dump directory (one subdirectory per namespace) that
    ``load_snapshot`` reads back."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    for name, ns in snapshot.namespaces.items():
        if not name or "/" in name or name in (".", ".."):
            raise SnapshotError(f"namespace name {name!r} cannot be a directory name", where=str(root))
        d = root / name
        d.mkdir(exist_ok=True)
        for fname, text in render_dumps(ns).items():
            (d / fname).write_text(text, encoding="utf-8")
