"""`podnet trace` on a running lab, checked against the kernel: the live read-back equals the dump
format, the seed flow holds on the real state, and many generated flows (pods, services, node
ports, a service without endpoints, an external client, a missing listener, MTU) agree with what the
kernel does with the real packet (`--verify`), for flannel VXLAN + kube-proxy iptables and for
host-gw + kube-proxy nftables. One lab per backend, shared by the module."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.lab.conftest import Lab, run, sh

EXTRA = (Path(__file__).parents[1] / "fixtures" / "trace" / "make_fixtures.py").read_text().split('EXTRA = """', 1)[1]
EXTRA = EXTRA.split('"""', 1)[0]
EXT_HOST = {"\nnodes:\n": "\nexternalHosts:\n  - name: ext1\n    ip: 192.168.1.50\nnodes:\n"}
BACKENDS = {
    "vxlan-iptables": ("seed-vxlan.yaml", {}),
    "hostgw-nftables": ("seed-hostgw.yaml", {"kubeProxyMode: iptables": "kubeProxyMode: nftables"}),
}
# (src, dst, extra args): pods, services, node ports, no endpoints, external client, nodes, ICMP, UDP
FLOWS = [
    ("pod-a", "pod-b:8080", ()),
    ("pod-b", "pod-c:8080", ()),
    ("pod-c", "pod-a:8080", ()),
    ("pod-a", "my-service:8080", ()),
    ("pod-b", "my-service:8080", ()),
    ("pod-c", "svc/default/my-nodeport:8090", ()),
    ("pod-a", "no-endpoints:80", ()),
    ("pod-c", "no-endpoints:80", ()),
    ("pod-a", "node/node2:30080", ()),
    ("host/ext1", "node/node1:30080", ()),
    ("host/ext1", "node/node2:30080", ()),
    ("node/node1", "my-service:8080", ()),
    ("node/node2", "pod-a:8080", ()),
    ("pod-a", "pod-c:9999", ()),
    ("pod-a", "pod-c", ("-p", "icmp")),
    ("pod-b", "svc/kube-system/kube-dns:53", ("-p", "udp")),
]


def _wait_programmed(lab: Lab, mode: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if mode == "iptables":
            out = lab.node("node1", "iptables-save").stdout
            if "default/no-endpoints:http has no endpoints" in out and "default/my-nodeport:http" in out:
                return
        else:
            out = lab.node("node1", "nft", "list", "ruleset").stdout
            if "default/my-nodeport" in out and "default/no-endpoints" in out:
                return
        time.sleep(0.5)
    raise AssertionError(f"kube-proxy did not program the services of {lab.name} in 30 s")


@pytest.fixture(scope="module", params=list(BACKENDS))
def lab(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    example, replace = BACKENDS[request.param]
    lb = Lab(tmp_path_factory.mktemp("trace"), example, **{**EXT_HOST, **replace})
    lb.file.write_text(lb.file.read_text() + EXTRA)
    lb.backend = request.param  # type: ignore[attr-defined]
    try:
        lb.up()
        _wait_programmed(lb, "nftables" if "nftables" in request.param else "iptables")
        yield lb
    finally:
        lb.down()
        assert not lb.namespaces()


def trace(lab: Lab, *args: str, check: bool = False) -> tuple[int, dict]:
    p = run("trace", *args, "--lab", lab.name, "-o", "json", check=False, timeout=120)
    assert p.returncode in (0, 1, 2), p.stderr
    return p.returncode, json.loads(p.stdout)


def test_saved_snapshot_is_the_live_state(lab: Lab, tmp_path: Path) -> None:
    import time

    from podnet.dataplane.readback import read_snapshot
    from podnet.sim.dumpdir import load_snapshot

    def stable(st):  # type: ignore[no-untyped-def]
        return {n: (s.links, s.addresses, s.routes, s.rules, s.sockets) for n, s in st.namespaces.items()}

    # a fresh lab is still settling (IPv6 link-local routes appear as links come up): wait for two
    # reads in a row to agree, then save and compare
    deadline = time.monotonic() + 15
    live = read_snapshot(lab.namespaces())
    while True:
        again = read_snapshot(lab.namespaces())
        if stable(again) == stable(live) or time.monotonic() > deadline:
            break
        live = again
        time.sleep(0.5)
    run("snapshot", "save", str(tmp_path / "snap"), "--lab", lab.name)
    saved = load_snapshot(tmp_path / "snap")
    live = read_snapshot(lab.namespaces())
    assert set(saved.namespaces) == set(live.namespaces) == set(lab.namespaces())
    for name, st in live.namespaces.items():
        s = saved[name]
        assert (s.links, s.addresses, s.routes, s.rules, s.sockets, s.netns_ids) == \
               (st.links, st.addresses, st.routes, st.rules, st.sockets, st.netns_ids), name
        assert [(t, c, [r.text for r in ch.rules]) for t, tb in s.iptables.tables.items()
                for c, ch in tb.chains.items()] == \
               [(t, c, [r.text for r in ch.rules]) for t, tb in st.iptables.tables.items()
                for c, ch in tb.chains.items()]
    assert (tmp_path / "snap" / "podnet-places.json").is_file()
    # and tracing the saved state needs no lab
    p = run("trace", "pod-a", "my-service:8080", "--snapshot", str(tmp_path / "snap"), check=False)
    assert p.returncode == 0 and "result   DELIVERED" in p.stdout


def test_seed_flow_on_the_live_state(lab: Lab) -> None:
    code, doc = trace(lab, "pod-a", "my-service:8080")
    assert code == 0 and doc["disposition"] == "delivered"
    assert sorted((o["endpoint"], o["probability"]) for o in doc["outcomes"]) == [
        ("10.244.2.8:8080", 0.5), ("10.244.2.9:8080", 0.5)]
    for o in doc["outcomes"]:
        reply = o["reply"]
        assert reply["disposition"] == "delivered" and "from 10.96.45.67:8080" in reply["summary"]
    kinds = {s["kind"] for h in doc["outcomes"][0]["forward"]["hops"] for s in h["steps"]}
    assert ("encap" in kinds) == lab.backend.startswith("vxlan")  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def live(lab: Lab):  # type: ignore[no-untyped-def]
    """The lab's state read back once for the generated flows (the probes change only conntrack
    entries of their own, fresh source ports, and counters, which the model does not read)."""
    from podnet.dataplane import lab as labrt
    from podnet.dataplane.readback import read_snapshot
    from podnet.trace.places import from_lab, infer

    model, store = labrt.load(lab.name)
    store.close()
    snap = read_snapshot(lab.namespaces())
    return model, snap, infer(snap, from_lab(model))


def _question(src: str, dst: str, extra: tuple[str, ...]):  # type: ignore[no-untyped-def]
    from podnet.trace.engine import Question

    return Question(src, dst, extra[1] if extra else "tcp")


@pytest.mark.parametrize("src,dst,extra", FLOWS, ids=[f"{s}->{d}{'-' + e[1] if e else ''}" for s, d, e in FLOWS])
def test_model_and_kernel_agree(live, src: str, dst: str, extra: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    from podnet.dataplane.verify import verify_trace
    from podnet.trace.engine import run_trace

    model, snap, places = live
    q = _question(src, dst, extra)
    report = verify_trace(model, snap, places, q, run_trace(snap, places, q))
    bad = report.disagreements()
    assert report.skipped is None and report.agree, f"{src} -> {dst}: {report.result.disposition}: {bad}"
    assert any(c.what == "probe" for c in report.checks)
    if len(report.result.outcomes) > 1:
        assert report.kernel_endpoint in {o.endpoint for o in report.result.outcomes}


def test_mtu_1500_pod_over_vxlan_is_too_big_and_the_kernel_agrees(lab: Lab) -> None:
    if not lab.backend.startswith("vxlan"):  # type: ignore[attr-defined]
        pytest.skip("VXLAN only")
    # give pod-a (and its host veth and cni0) MTU 1500: flannel.1 stays at 1450
    link = json.loads(sh("ip", "netns", "exec", lab.ns("default-pod-a"), "ip", "-j", "link", "show", "eth0").stdout)[0]
    veth = next(lk["ifname"] for lk in json.loads(lab.node("node1", "ip", "-j", "link").stdout)
                if lk["ifindex"] == link["link_index"])
    lab.node("node1", "ip", "link", "set", veth, "mtu", "1500")
    lab.node("node1", "ip", "link", "set", "cni0", "mtu", "1500")
    lab.exec("pod-a", "ip", "link", "set", "eth0", "mtu", "1500")
    code, doc = trace(lab, "pod-a", "pod-c", "-p", "icmp", "--size", "1480", "--verify")
    assert code == 1 and doc["disposition"] == "too_big"
    assert "too big at flannel.1: 1480 B > mtu 1450" in doc["outcomes"][0]["forward"]["summary"]
    assert doc["verify"]["agree"], doc["verify"]
    # (a sender that learned the path MTU refuses locally instead: unit-tested with a dumped route cache)
    subprocess.run(["ip", "netns", "exec", lab.ns("default-pod-a"), "ip", "route", "flush", "cache"], check=False)
