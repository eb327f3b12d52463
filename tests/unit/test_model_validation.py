"""Bad input: one error naming file (with line), object and field. No traceback, nothing built."""


import pytest

from podnet.errors import PodnetError
from podnet.model.lab import resolve
from podnet.model.manifest import parse_docs
from podnet.model.source import load_text

CLUSTER = """\
apiVersion: podnet.dev/v1alpha1
kind: Cluster
metadata: {name: t}
networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12, backend: vxlan}
nodes:
  - {name: node1, ip: 192.168.1.10, podCIDR: 10.244.1.0/24}
  - {name: node2, ip: 192.168.1.11, podCIDR: 10.244.2.0/24}
"""


def pod(name="p", ip=None, node=None, ns="default"):
    ann = f"\n  annotations: {{podnet.dev/ip: {ip}}}" if ip else ""
    nn = f"\n  nodeName: {node}" if node else ""
    return f"""---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}{ann}
spec:{nn}
  containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]
"""


def lab_of(text):
    return resolve(parse_docs(load_text(text, "lab.yaml")))


def error_of(text) -> str:
    with pytest.raises(PodnetError) as e:
        lab_of(text)
    return str(e.value)


def test_seed_like_cluster_resolves():
    lab = lab_of(CLUSTER + pod("a", "10.244.1.5") + pod("b", node="node2") + pod("c"))
    placed = {p.name: (p.node, str(p.ip)) for p in lab.pods if not p.component}
    assert placed["a"] == ("node1", "10.244.1.5")
    assert placed["b"] == ("node2", "10.244.2.2")
    assert placed["c"][0] == "node1" and placed["c"][1] == "10.244.1.2"


@pytest.mark.parametrize("text, want", [
    (CLUSTER.replace("10.244.0.0/16", "10.244.0.0/33"), ["lab.yaml:4", "Cluster t", "networking.podSubnet",
                                                           "invalid CIDR"]),
    (CLUSTER.replace("10.244.0.0/16", "10.244.0.1/16"), ["networking.podSubnet", "host bits"]),
    (CLUSTER.replace("backend: vxlan", "backend: geneve"), ["networking.backend", "unknown backend 'geneve'"]),
    (CLUSTER.replace("podCIDR: 10.244.2.0/24", "podCIDR: 10.244.1.128/25"), ["podCIDR", "overlaps node node1"]),
    (CLUSTER.replace("podCIDR: 10.244.2.0/24", "podCIDR: 10.245.2.0/24"), ["outside podSubnet"]),
    (CLUSTER.replace("192.168.1.11", "192.168.1.10"), ["nodes[1].ip", "duplicate IP 192.168.1.10"]),
    (CLUSTER.replace("name: node2", "name: node1"), ["nodes[1].name", "duplicate name 'node1'"]),
    (CLUSTER.replace("name: t}", "name: a-very-long-lab-name-indeed}"), ["metadata.name", "too long"]),
    (CLUSTER + pod("a", "10.244.3.5"), ["Pod default/a", "podnet.dev/ip", "in no node's pod CIDR"]),
    (CLUSTER + pod("a", "10.244.2.5", node="node1"), ["podnet.dev/ip", "outside node node1's pod CIDR"]),
    (CLUSTER + pod("a", "10.244.1.1"), ["podnet.dev/ip", "bridge (gateway) address"]),
    (CLUSTER + pod("a", "10.244.1.5") + pod("b", "10.244.1.5"), ["Pod default/b", "duplicate pod IP 10.244.1.5",
                                                                  "default/a"]),
    (CLUSTER + pod("a") + pod("a"), ["Pod default/a", "duplicate Pod default/a", "lab.yaml:9"]),
    (CLUSTER + pod("a", node="node9"), ["spec.nodeName", "node 'node9' does not exist"]),
    (CLUSTER + pod("a", ns="nowhere"), ["metadata.namespace", 'namespace "nowhere" not found']),
    (CLUSTER + pod("A_b"), ["metadata.name", "invalid name 'A_b'"]),
    (CLUSTER + pod("x" * 254), ["metadata.name", "invalid name"]),
    (CLUSTER + "---\napiVersion: v1\nkind: Widget\nmetadata: {name: w}\n", ["unknown kind 'Widget'"]),
    (CLUSTER + "---\napiVersion: v2\nkind: Pod\nmetadata: {name: w}\n", ["apiVersion 'v2' is not served for Pod"]),
    (CLUSTER + pod("a").replace("containers:", "contianers: []\n  containers:"), ["spec.contianers",
                                                                                 "unknown field"]),
    (CLUSTER + pod("a").replace("containerPort: 8080", "containerPort: 70000"), ["containers[0].ports[0]"
                                                                                 ".containerPort", "out of range"]),
    (CLUSTER + "---\nkind: Pod\n  bad: [\n", ["lab.yaml:", "YAML syntax error"]),
    ("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", ["no Cluster document"]),
])
def test_bad_input_names_file_object_field(text, want):
    msg = error_of(text)
    assert "\n" not in msg
    for w in want:
        assert w in msg, msg


def test_yaml_error_has_line():
    msg = error_of(CLUSTER + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: [x\n")
    assert "lab.yaml:11" in msg or "lab.yaml:12" in msg, msg


def test_field_line_numbers_point_at_the_field():
    text = CLUSTER + pod("a", node="node9")
    msg = error_of(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "nodeName" in ln)
    assert f"lab.yaml:{line}:" in msg, msg


def test_ignored_fields_are_reported_not_silent():
    text = CLUSTER + pod("a").replace("  containers:", "  volumes: []\n  containers:")
    lab = lab_of(text)
    assert any("spec.volumes" in w and "not honoured" in w for w in lab.warnings)


def test_image_is_accepted_silently():
    lab = lab_of(CLUSTER + pod("a").replace("{name: c,", "{name: c, image: nginx,"))
    assert lab.warnings == []
