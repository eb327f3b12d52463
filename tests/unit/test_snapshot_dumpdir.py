"""Dump directories: load the real fixtures, save and reload, errors naming file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from podnet.sim.dumpdir import DUMP_FILES, dump_commands, load_snapshot, netns_from_dumps, save_snapshot
from podnet.sim.snapshot import NetnsState, Snapshot, SnapshotError

FIX = Path(__file__).parent.parent / "fixtures" / "snapshot"


def test_dump_commands_are_the_documented_ones() -> None:
    cmds = dump_commands()
    assert cmds[0] == "ip -j -d link show > ip-link.json"
    assert "iptables-save -c > iptables-save.txt" in cmds
    assert "nft -j list ruleset > nft.json" in cmds
    assert "conntrack -L -o extended > conntrack.txt" in cmds
    assert "bridge -j -d link show > bridge-link.json" in cmds
    assert len(cmds) == len(DUMP_FILES) == 14
    doc = (Path(__file__).parents[2] / "docs" / "snapshot.md").read_text()
    for c in cmds:
        assert c in doc, f"docs/snapshot.md does not show: {c}"


def test_load_fixture_snapshot() -> None:
    snap = load_snapshot(FIX)
    assert set(snap.namespaces) == {"node1", "node2", "pod"}
    node1 = snap["node1"]
    assert node1.ip_forward and node1.bridge_nf_call_iptables and node1.rp_filter("eth0") in (0, 1, 2)
    assert not snap["pod"].ip_forward and not node1.route_localnet("eth0")
    assert node1.link("flannel.1").vxlan.vni == 1  # type: ignore[union-attr]
    assert [r.table for r in node1.rules] == ["local", "100", "main", "main", "default"]
    assert node1.iptables.chain("nat", "KUBE-SERVICES") is not None
    assert node1.conntrack and snap["node2"].nft.table("ip", "kube-proxy") is not None
    assert [str(a.interface) for a in node1.addresses_of("cni0") if a.family == "inet"] == ["10.244.1.1/24"]
    assert any(r.dev == "flannel.1" for r in node1.table("main"))
    # veth ends across namespaces, through ifindexes
    assert snap.veth_peer("node1", "veth1a2b3c4d")[0] == "pod"  # type: ignore[index]
    ns, peer = snap.veth_peer("pod", "eth0")  # type: ignore[misc]
    assert (ns, peer.name) == ("node1", "veth1a2b3c4d")
    assert snap.veth_peer("node1", "eth0")[0] == "node2"  # type: ignore[index]
    assert snap.veth_peer("node1", "cni0") is None


def test_single_namespace_directory() -> None:
    snap = load_snapshot(FIX / "node2")
    assert list(snap.namespaces) == ["node2"]


def test_identical_dumps_are_parsed_once(tmp_path: Path) -> None:
    for n in ("a", "b"):
        shutil.copytree(FIX / "node1", tmp_path / n)
    snap = load_snapshot(tmp_path)
    assert snap["a"].iptables is snap["b"].iptables
    assert snap["a"].routes is snap["b"].routes


def test_save_and_reload(tmp_path: Path) -> None:
    snap = load_snapshot(FIX)
    save_snapshot(snap, tmp_path / "out")
    again = load_snapshot(tmp_path / "out")
    assert again == snap
    for f in DUMP_FILES:
        assert (tmp_path / "out" / "node1" / f.name).read_text() == (FIX / "node1" / f.name).read_text()


def test_save_renders_without_sources(tmp_path: Path) -> None:
    snap = load_snapshot(FIX)
    n1 = snap["node1"]
    bare = NetnsState(name="n", iptables=n1.iptables, nft=n1.nft, conntrack=n1.conntrack, sysctls=n1.sysctls)
    save_snapshot(Snapshot({"n": bare}), tmp_path)
    back = load_snapshot(tmp_path)["n"]
    assert back.iptables.tables == n1.iptables.tables
    assert back.conntrack == n1.conntrack and back.sysctls == n1.sysctls
    assert back.nft.tables == n1.nft.tables


def test_missing_files_are_empty_state() -> None:
    ns = netns_from_dumps("x", {"ip-link.json": (FIX / "pod" / "ip-link.json").read_text()})
    assert len(ns.links) == 2 and ns.routes == () and ns.iptables.tables == {} and ns.sysctls == {}


def test_malformed_file_error_names_file_and_line(tmp_path: Path) -> None:
    shutil.copytree(FIX / "node1", tmp_path / "node1")
    p = tmp_path / "node1" / "iptables-save.txt"
    lines = p.read_text().splitlines()
    bad = next(i for i, line in enumerate(lines) if "-A KUBE-SERVICES" in line)
    lines[bad] = lines[bad].replace("-d 10.96.", "-d 10.300.")
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(SnapshotError) as e:
        load_snapshot(tmp_path)
    assert str(e.value).startswith(f"{p}:{bad + 1}: bad address")
    assert "\n" not in str(e.value)


def test_bad_directories(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no dump files"):
        load_snapshot(tmp_path)
    with pytest.raises(SnapshotError, match="not a directory"):
        load_snapshot(tmp_path / "nope")
    with pytest.raises(SnapshotError, match="unknown dump file"):
        netns_from_dumps("x", {"ip-links.json": "[]"})
