"""The compiled kernel state matches what flannel and the CNI bridge plugin program."""

from pathlib import Path

from podnet.compile import fabric
from podnet.model.lab import resolve
from podnet.model.manifest import parse_docs
from podnet.model.source import load_files

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def seed(name="seed-vxlan.yaml"):
    return resolve(parse_docs(load_files([str(EXAMPLES / name)])))


def spec_of(specs, name):
    return next(s for s in specs if s.name == name)


def test_seed_matches_the_article():
    lab = seed()
    pods = {p.name: (p.node, str(p.ip)) for p in lab.pods if not p.component}
    assert pods == {"pod-a": ("node1", "10.244.1.5"), "pod-b": ("node2", "10.244.2.8"),
                    "pod-c": ("node2", "10.244.2.9")}
    assert [(n.name, str(n.ip)) for n in lab.nodes] == [("node1", "192.168.1.10"), ("node2", "192.168.1.11")]
    assert [s.cluster_ip for s in lab.services] == ["10.96.45.67", "10.96.0.10"]   # + kube-system/kube-dns


def test_vxlan_node_state_is_flannels():
    lab = seed()
    specs = fabric.compile_lab(lab)
    n1 = spec_of(specs, "pn-seed-node1")
    vx = next(link for link in n1.links if link.name == "flannel.1")
    assert (vx.kind, vx.mtu, vx.vxlan.vni, vx.vxlan.port, vx.vxlan.learning, vx.vxlan.local) == (
        "vxlan", 1450, 1, 8472, False, "192.168.1.10")
    assert ("flannel.1", "10.244.1.0", 32) in {(a.dev, a.ip, a.prefixlen) for a in n1.addrs}
    assert ("cni0", "10.244.1.1", 24) in {(a.dev, a.ip, a.prefixlen) for a in n1.addrs}
    route = next(r for r in n1.routes if r.dst == "10.244.2.0/24")
    assert (route.via, route.dev, route.onlink) == ("10.244.2.0", "flannel.1", True)
    n2 = spec_of(specs, "pn-seed-node2")
    n2_mac = next(link.mac for link in n2.links if link.name == "flannel.1")
    assert [(n.ip, n.mac) for n in n1.neighs] == [("10.244.2.0", n2_mac)]
    assert [(f.mac, f.dst) for f in n1.fdb] == [(n2_mac, "192.168.1.11")]
    assert n1.sysctls["net.ipv4.ip_forward"] == "1"
    assert "default" in {r.dst for r in n1.routes}


def test_pod_wiring_and_mtu():
    lab = seed()
    specs = fabric.compile_lab(lab)
    n2 = spec_of(specs, "pn-seed-node2")
    veths = [link for link in n2.links if link.kind == "veth"]
    assert len(veths) == 3 and all(   # pod-b, pod-c and a coredns replica
        v.master == "cni0" and v.hairpin and v.mtu == 1450 for v in veths)
    assert all(v.name.startswith("veth") and len(v.name) == 12 for v in veths)
    pod_b = spec_of(specs, "pn-seed-default-pod-b")
    assert [(a.dev, a.ip, a.prefixlen) for a in pod_b.addrs] == [("eth0", "10.244.2.8", 24)]
    assert [(r.dst, r.via) for r in pod_b.routes] == [("default", "10.244.2.1")]


def test_host_gw_routes_via_node_ip_and_full_mtu():
    lab = seed("seed-hostgw.yaml")
    specs = fabric.compile_lab(lab)
    n1 = spec_of(specs, "pn-seed-hgw-node1")
    assert not [link for link in n1.links if link.kind == "vxlan"]
    route = next(r for r in n1.routes if r.dst == "10.244.2.0/24")
    assert (route.via, route.dev, route.onlink) == ("192.168.1.11", "eth0", False)
    assert all(link.mtu == 1500 for link in n1.links if link.kind == "veth")
    assert n1.neighs == [] and n1.fdb == []


def test_cni_config_is_on_every_node():
    specs = fabric.compile_lab(seed())
    for s in specs:
        if s.role == "node":
            assert '"type": "flannel"' in s.files["cni/net.d/10-flannel.conflist"]
