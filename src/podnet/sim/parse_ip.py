"""Parsers for iproute2 JSON: ``ip -j -d link``, ``ip -j addr``, ``ip -j route show table all``,
``ip -j rule``, ``ip -j neigh``. Pure: text in, snapshot values out."""

from __future__ import annotations

import ipaddress
from typing import Any

from podnet.sim.parse_json import entry_error, ip, load_json_array, network, opt_ip, require
from podnet.sim.snapshot import (
    Address,
    BridgeAttrs,
    BridgePortAttrs,
    IPNetwork,
    Link,
    Neighbour,
    NextHop,
    Route,
    RoutingRule,
    VxlanAttrs,
)

_DEFAULT4 = ipaddress.ip_network("0.0.0.0/0")
_DEFAULT6 = ipaddress.ip_network("::/0")


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.lower() in ("1", "true", "on", "yes")
    return bool(v)


def _int(v: Any, default: int | None = None) -> int | None:
    if v is None or v == "":
        return default
    if isinstance(v, int):
        return v
    try:
        return int(str(v), 0)
    except ValueError:
        return default


# --- links ---------------------------------------------------------------------------------------


def _vxlan(data: dict[str, Any], source: str, i: int, e: dict[str, Any]) -> VxlanAttrs:
    group = data.get("group") or data.get("remote") or data.get("group6") or data.get("remote6")
    return VxlanAttrs(
        vni=int(data.get("id", 0)),
        port=_int(data.get("port")),
        local=opt_ip(data.get("local") or data.get("local6"), source, i, e),
        dev=data.get("link"),
        learning=_bool(data.get("learning", True)),
        group=opt_ip(group, source, i, e),
        ttl=_int(data.get("ttl"), 0) or 0,
        df=str(data.get("df", "unset")),
        ageing=_int(data.get("ageing")),
    )


def _bridge(data: dict[str, Any]) -> BridgeAttrs:
    return BridgeAttrs(
        vlan_filtering=_bool(data.get("vlan_filtering", 0)),
        stp_state=_int(data.get("stp_state"), 0) or 0,
        ageing_time=_int(data.get("ageing_time")),
        nf_call_iptables=_bool(data.get("nf_call_iptables", 0)),
    )


def bridge_port(data: dict[str, Any]) -> BridgePortAttrs:
    """Bridge-port attributes from ``info_slave_data`` (ip -d link) or ``bridge -d -j link`` entries."""
    return BridgePortAttrs(
        hairpin=_bool(data.get("hairpin", False)),
        state=str(data.get("state", "forwarding")),
        learning=_bool(data.get("learning", True)),
        flood=_bool(data.get("flood", True)),
        isolated=_bool(data.get("isolated", False)),
        neigh_suppress=_bool(data.get("neigh_suppress", False)),
    )


def parse_ip_link(text: str, source: str = "ip-link.json") -> tuple[Link, ...]:
    """``ip -j -d link show`` (without ``-d`` kinds and attributes are unknown)."""
    links: list[Link] = []
    for i, e in enumerate(load_json_array(text, source)):
        info = e.get("linkinfo") or {}
        kind = info.get("info_kind")
        if not kind:
            kind = "loopback" if e.get("link_type") == "loopback" else "device"
        data = info.get("info_data") or {}
        slave_kind = info.get("info_slave_kind")
        slave = info.get("info_slave_data") or {}
        link_name = e.get("link")
        try:
            links.append(Link(
                ifindex=int(require(e, "ifindex", source, i)),
                name=str(require(e, "ifname", source, i)),
                kind=kind,
                mtu=int(require(e, "mtu", source, i)),
                mac=e.get("address"),
                master=e.get("master"),
                state=str(e.get("operstate", "UNKNOWN")),
                flags=tuple(e.get("flags") or ()),
                link_index=_int(e.get("link_index")),
                link_netnsid=_int(e.get("link_netnsid")),
                link=link_name if isinstance(link_name, str) else None,
                slave_kind=slave_kind,
                vxlan=_vxlan(data, source, i, e) if kind == "vxlan" else None,
                bridge=_bridge(data) if kind == "bridge" else None,
                port=bridge_port(slave) if slave_kind == "bridge" else None,
            ))
        except (TypeError, ValueError) as exc:
            raise entry_error(source, i, e, str(exc)) from None
    return tuple(links)


# --- addresses -----------------------------------------------------------------------------------


def parse_ip_addr(text: str, source: str = "ip-addr.json") -> tuple[Address, ...]:
    """``ip -j addr show``: one Address per ``addr_info`` entry."""
    out: list[Address] = []
    for i, e in enumerate(load_json_array(text, source)):
        dev = str(require(e, "ifname", source, i))
        ifindex = int(require(e, "ifindex", source, i))
        for a in e.get("addr_info") or ():
            if "local" not in a:
                continue
            local = ip(a["local"], source, i, e)
            peer = a.get("address")
            out.append(Address(
                dev=dev,
                ifindex=ifindex,
                family=str(a.get("family", "inet" if local.version == 4 else "inet6")),
                local=local,
                prefixlen=int(a.get("prefixlen", 32 if local.version == 4 else 128)),
                scope=str(a.get("scope", "global")),
                broadcast=opt_ip(a.get("broadcast"), source, i, e),
                peer=opt_ip(peer, source, i, e) if peer and peer != a["local"] else None,
                label=a.get("label"),
                secondary=_bool(a.get("secondary", False)),
            ))
    return tuple(out)


# --- routes --------------------------------------------------------------------------------------


def _route_family(e: dict[str, Any]) -> int:
    """``ip -j route show table all`` carries no family: infer it from any address in the entry,
    else from ``pref`` (printed for IPv6 routes only)."""
    for key in ("dst", "gateway", "prefsrc", "src"):
        v = e.get(key)
        if isinstance(v, str) and v not in ("default", "all"):
            return 6 if ":" in v else 4
    via = e.get("via")
    if isinstance(via, dict) and via.get("family") == "inet6":
        return 6
    for nh in e.get("nexthops") or ():
        gw = nh.get("gateway")
        if isinstance(gw, str):
            return 6 if ":" in gw else 4
    return 6 if "pref" in e else 4


def _gateway(e: dict[str, Any], source: str, i: int) -> Any:
    gw = e.get("gateway")
    if gw is None and isinstance(e.get("via"), dict):
        gw = e["via"].get("host")
    return opt_ip(gw, source, i, e)


def _mtu(e: dict[str, Any]) -> int | None:
    for m in e.get("metrics") or ():
        if isinstance(m, dict) and "mtu" in m:
            v = m["mtu"]
            return _int(v.get("mtu") if isinstance(v, dict) else v)
    return None


def parse_ip_route(text: str, source: str = "ip-route.json") -> tuple[Route, ...]:
    """``ip -j route show table all`` (IPv4 and IPv6; the main table is implicit in ip's output)."""
    out: list[Route] = []
    for i, e in enumerate(load_json_array(text, source)):
        dst_s = str(require(e, "dst", source, i))
        version = _route_family(e)
        if dst_s == "default":
            dst: IPNetwork = _DEFAULT6 if version == 6 else _DEFAULT4
        else:
            dst = network(dst_s, source, i, e)
        flags = tuple(e.get("flags") or ())
        nexthops = tuple(
            NextHop(gateway=_gateway(nh, source, i), dev=nh.get("dev"), weight=int(nh.get("weight", 1)),
                    onlink="onlink" in (nh.get("flags") or ()))
            for nh in e.get("nexthops") or ())
        out.append(Route(
            table=str(e.get("table", "main")),
            dst=dst,
            gateway=_gateway(e, source, i),
            dev=e.get("dev"),
            onlink="onlink" in flags,
            scope=str(e.get("scope", "global")),
            src=opt_ip(e.get("prefsrc"), source, i, e),
            protocol=str(e.get("protocol", "boot")),
            type=str(e.get("type", "unicast")),
            metric=_int(e.get("metric"), 0) or 0,
            family="inet6" if dst.version == 6 else "inet",
            nexthops=nexthops,
            mtu=_mtu(e),
            flags=flags,
        ))
    return tuple(out)


def parse_ip_route_cache(text: str, source: str = "ip-route-cache.json") -> tuple[Route, ...]:
    """``ip -j route show cached``: exceptions the kernel learned (path MTU from ICMP "fragmentation
    needed", redirects), each with its ``mtu`` metric; kept apart from the tables as table "cache"."""
    import dataclasses

    return tuple(dataclasses.replace(r, table="cache") for r in parse_ip_route(text, source))


# --- policy routing rules ------------------------------------------------------------------------


def _port_range(v: Any) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, int):
        return (v, v)
    lo, _, hi = str(v).partition("-")
    return (int(lo), int(hi or lo))


def _rule_net(e: dict[str, Any], key: str, source: str, i: int) -> IPNetwork | None:
    v = e.get(key)
    if v is None or v == "all":
        return None
    return network(str(v), source, i, e, prefixlen=_int(e.get(f"{key}len")))


def parse_ip_rule(text: str, source: str = "ip-rule.json") -> tuple[RoutingRule, ...]:
    """``ip -j rule show``."""
    out: list[RoutingRule] = []
    for i, e in enumerate(load_json_array(text, source)):
        src = _rule_net(e, "src", source, i)
        dst = _rule_net(e, "dst", source, i)
        table = e.get("table")
        action = str(e.get("action") or ("goto" if "goto" in e else "lookup" if table else "nop"))
        fam = next((n.version for n in (src, dst) if n is not None), 4)
        out.append(RoutingRule(
            priority=int(e.get("priority", 0)),
            table=str(table) if table is not None else None,
            action=action,
            src=src,
            dst=dst,
            iif=e.get("iif"),
            oif=e.get("oif"),
            fwmark=_int(e.get("fwmark")),
            fwmask=_int(e.get("fwmask")),
            invert=_bool(e.get("not", False)),
            family="inet6" if fam == 6 else "inet",
            ipproto=e.get("ipproto"),
            sport=_port_range(e.get("sport")),
            dport=_port_range(e.get("dport")),
            goto=_int(e.get("goto")),
        ))
    return tuple(out)


# --- neighbours ----------------------------------------------------------------------------------


def parse_ip_neigh(text: str, source: str = "ip-neigh.json") -> tuple[Neighbour, ...]:
    """``ip -j neigh show`` (IPv4 ARP and IPv6 ND entries)."""
    out: list[Neighbour] = []
    for i, e in enumerate(load_json_array(text, source)):
        state = e.get("state") or ()
        out.append(Neighbour(
            ip=ip(require(e, "dst", source, i), source, i, e),
            mac=e.get("lladdr"),
            dev=str(require(e, "dev", source, i)),
            state=(state,) if isinstance(state, str) else tuple(state),
            router="router" in e,
        ))
    return tuple(out)


# --- peer namespace ids --------------------------------------------------------------------------


def parse_ip_netns(text: str, source: str = "ip-netns.json") -> dict[int, str]:
    """``ip -j netns list-id``: the ids this namespace gives its peers' namespaces, with the names
    iproute2 found for them (ids of unnamed namespaces are skipped)."""
    out: dict[int, str] = {}
    for i, e in enumerate(load_json_array(text, source)):
        nsid = require(e, "nsid", source, i)
        name = e.get("name")
        if not isinstance(nsid, int):
            raise entry_error(source, i, e, f"bad nsid {nsid!r}")
        if isinstance(name, str) and name:
            out[nsid] = name
    return out
