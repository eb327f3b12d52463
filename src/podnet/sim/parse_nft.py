"""Parser for ``nft -j list ruleset``: the JSON is kept as nft printed it, and indexed by table,
chain, set and map so the tracer finds a chain's rules or a verdict map without scanning. Pure."""

from __future__ import annotations

from typing import Any

from podnet.sim.parse_json import load_json
from podnet.sim.snapshot import NftChain, NftRule, NftRuleset, NftSet, NftTable, SnapshotError

_KINDS = ("table", "chain", "rule", "set", "map", "flowtable", "counter", "quota", "ct helper",
          "limit", "ct timeout", "ct expectation", "secmark", "synproxy", "element", "metainfo")


def parse_nft(text: str, source: str = "nft.json") -> NftRuleset:
    data = load_json(text, source)
    if data == []:
        return NftRuleset()
    if not isinstance(data, dict) or not isinstance(data.get("nftables"), list):
        raise SnapshotError("expected {\"nftables\": [...]} (the output of nft -j list ruleset)",
                            where=f"{source}:1")
    items: list[Any] = data["nftables"]
    version = None
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    chain_rules: dict[tuple[str, str, str], list[NftRule]] = {}
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}

    def bad(i: int, msg: str) -> SnapshotError:
        return SnapshotError(f"nftables[{i}]: {msg}", where=source)

    for i, item in enumerate(items):
        if not isinstance(item, dict) or len(item) != 1:
            raise bad(i, "each entry must be an object with one key")
        kind, body = next(iter(item.items()))
        if not isinstance(body, dict):
            raise bad(i, f"{kind!r} must be an object")
        if kind == "metainfo":
            version = body.get("version")
            continue
        fam = body.get("family")
        if kind == "table":
            tables[(fam, body["name"])] = {"handle": body.get("handle"), "comment": body.get("comment"),
                                           "sets": {}}
            continue
        tkey = (fam, body.get("table"))
        if kind in ("chain", "rule", "set", "map") and tkey not in tables:
            raise bad(i, f"{kind} in unknown table {tkey[0]} {tkey[1]}")
        if kind == "chain":
            chains[(fam, body["table"], body["name"])] = body
        elif kind == "rule":
            ckey = (fam, body["table"], body.get("chain"))
            if ckey not in chains:
                raise bad(i, f"rule in unknown chain {body.get('chain')!r}")
            lst = chain_rules.setdefault(ckey, [])
            lst.append(NftRule(family=fam, table=body["table"], chain=body["chain"],
                               handle=body.get("handle"), num=len(lst) + 1,
                               expr=tuple(body.get("expr") or ()), comment=body.get("comment")))
        elif kind in ("set", "map"):
            tables[tkey]["sets"][body["name"]] = NftSet(
                family=fam, table=body["table"], name=body["name"], type=body.get("type"),
                map=body.get("map") if kind == "map" else None,
                flags=tuple(body.get("flags") or ()) if isinstance(body.get("flags"), list)
                else ((body["flags"],) if body.get("flags") else ()),
                elements=tuple(body.get("elem") or ()), handle=body.get("handle"))
    out: dict[tuple[str, str], NftTable] = {}
    for (fam, name), t in tables.items():
        tchains = {
            cname: NftChain(family=fam, table=name, name=cname, handle=c.get("handle"), type=c.get("type"),
                            hook=c.get("hook"), prio=c.get("prio"), policy=c.get("policy"),
                            dev=c.get("dev"), rules=tuple(chain_rules.get((fam, name, cname), ())))
            for (cf, ct, cname), c in chains.items() if cf == fam and ct == name}
        out[(fam, name)] = NftTable(family=fam, name=name, handle=t["handle"], chains=tchains,
                                    sets=t["sets"], comment=t["comment"])
    return NftRuleset(tables=out, raw=tuple(items), version=version)
