"""Service model: validation, allocation, endpoint derivation and selection."""

from __future__ import annotations

import pytest

from podnet.errors import PodnetError
from podnet.model.lab import resolve as resolve_lab
from podnet.model.manifest import parse_docs
from podnet.model.services import EndpointInfo as E
from podnet.model.services import ServicePortInfo as S
from podnet.model.services import resolve, resolve_services, select_endpoints
from podnet.model.source import load_text

CLUSTER = """
apiVersion: podnet.dev/v1alpha1
kind: Cluster
metadata: {name: t}
networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12, loadBalancerPool: 192.168.1.240/28}
nodes:
  - {name: node1, ip: 192.168.1.10, podCIDR: 10.244.1.0/24}
  - {name: node2, ip: 192.168.1.11, podCIDR: 10.244.2.0/24}
"""


def svc(spec: str, name: str = "s") -> str:
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n"


def loose(text: str):
    m = parse_docs(load_text(text, "t.yaml"))
    return resolve(m.services, m.endpointslices, [], m.cluster.networking if m.cluster else None)


@pytest.mark.parametrize(("spec", "field", "words"), [
    ("  ports: [{port: 70000}]", "spec.ports[0].port", "out of range"),
    ("  ports: [{port: 80, protocol: ICMP}]", "spec.ports[0].protocol", "unknown protocol"),
    ("  ports: [{port: 80}, {port: 81}]", "spec.ports[0].name", "required"),
    ("  type: ClusterIP\n  ports: [{port: 80, nodePort: 30000}]", "spec.ports[0].nodePort", "may not be used"),
    ("  loadBalancerSourceRanges: [nope]\n  ports: [{port: 80}]", "spec.loadBalancerSourceRanges[0]", "invalid"),
    ("  sessionAffinity: Sticky\n  ports: [{port: 80}]", "spec.sessionAffinity", "unsupported"),
])
def test_invalid_services_name_object_and_field(spec: str, field: str, words: str) -> None:
    with pytest.raises(PodnetError) as e:
        loose(svc(spec))
    msg = str(e.value)
    assert "t.yaml:" in msg and "Service default/s" in msg and field in msg and words in msg
    assert "\n" not in msg


def test_cluster_ip_outside_subnet() -> None:
    with pytest.raises(PodnetError, match=r"t\.yaml:\d+: Service default/s: spec.clusterIP: 172.30.0.1 is not in"):
        loose(svc("  clusterIP: 172.30.0.1\n  ports: [{port: 80}]"))


def test_duplicate_node_port() -> None:
    text = svc("  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]", "a") + \
        svc("  type: NodePort\n  ports: [{port: 81, nodePort: 30080}]", "b")
    with pytest.raises(PodnetError, match=r"Service default/b: spec.ports\[0\].nodePort: provided port 30080 is "
                                          r"already allocated \(to service default/a\)"):
        loose(text)


def test_node_port_out_of_range() -> None:
    with pytest.raises(PodnetError, match=r"spec.ports\[0\].nodePort: 3001 is not in the valid range 30000-32767"):
        loose(svc("  type: NodePort\n  ports: [{port: 80, nodePort: 3001}]"))


def test_dns_ip_reserved_and_allocation_deterministic() -> None:
    with pytest.raises(PodnetError, match="reserved for service kube-system/kube-dns"):
        loose(svc("  clusterIP: 10.96.0.10\n  ports: [{port: 80}]"))
    text = svc("  ports: [{port: 53, protocol: UDP}]", "kube-dns").replace("namespace: default}",
                                                                           "namespace: kube-system}")
    text += svc("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{port: 80}]", "web")
    a, b = loose(text), loose(text)
    dns, web = a.get("kube-system", "kube-dns"), a.get("default", "web")
    assert dns and web and dns.cluster_ip == "10.96.0.10"
    assert web.cluster_ip == b.get("default", "web").cluster_ip      # deterministic
    assert 30000 <= web.node_ports[0] <= 32767 and 30000 <= web.health_check_node_port <= 32767
    assert web.node_ports[0] != web.health_check_node_port
    assert web.lb_ingress == []                                       # no pool: pending


def test_lb_pool_ingress_and_ipmode() -> None:
    text = CLUSTER + svc("  type: LoadBalancer\n  ports: [{port: 80}]", "lb1") + \
        svc("  type: LoadBalancer\n  loadBalancerIP: 192.168.1.250\n  ports: [{port: 80}]", "lb2") + \
        svc("  type: LoadBalancer\n  ports: [{port: 80}]", "lb3") + \
        "status: {loadBalancer: {ingress: [{ip: 203.0.113.9, ipMode: Proxy}]}}\n"
    rs = loose(text)
    lb1, lb2 = (rs.get("default", n) for n in ("lb1", "lb2"))
    assert lb2 and lb2.lb_ingress[0].ip == "192.168.1.250"
    assert lb1 and lb1.lb_ingress[0].ip.startswith("192.168.1.2") and lb1.lb_ingress[0].ip != "192.168.1.250"
    ports = {p.name: p for p in rs.ports()}
    assert ports["lb3"].lb_vips == ()                                 # ipMode Proxy: no rules


LAB = CLUSTER + """
---
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: w}, annotations: {podnet.dev/ip: 10.244.1.7}}
spec: {nodeName: node1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {app: w}, annotations: {podnet.dev/ip: 10.244.2.7}}
spec: {nodeName: node2, containers: [{name: c, ports: [{name: http, containerPort: 9090}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, labels: {app: w}, annotations: {podnet.dev/ip: 10.244.2.8}}
spec: {nodeName: node2, containers: [{name: c}]}
""" + svc("  selector: {app: w}\n  ports: [{name: web, port: 80, targetPort: http}]", "w")


def test_derived_slices_named_target_port_per_pod_and_readiness() -> None:
    lab = resolve_lab(parse_docs(load_text(LAB, "t.yaml")))
    rs = resolve_services(lab, ready=lambda p: p.name != "b")
    slices = rs.slices_of("default/w")
    # pods are grouped by their port mapping; pod c has no "http" port: its slice has no ports (as upstream)
    assert sorted(tuple(p.port for p in s.ports) for s in slices) == [(), (8080,), (9090,)]
    assert all(s.derived and s.meta.name.startswith("w-") for s in slices)
    (port,) = [p for p in rs.ports() if p.service_key == "default/w"]
    assert [(e.key, e.ready, e.node_name) for e in port.endpoints] == [
        ("10.244.1.7:8080", True, "node1"), ("10.244.2.7:9090", False, "node2")]


def test_select_endpoints_upstream_categories() -> None:
    eps = (E("10.0.0.1", 80, ready=False, serving=True, terminating=True, node_name="n1"),
           E("10.0.0.2", 80, ready=False, serving=False, terminating=True, node_name="n1"),
           E("10.0.0.3", 80, node_name="n2"))
    sp = S("ns", "s", "", "TCP", "10.96.0.1", 80, node_port=30000, external_policy_local=True, endpoints=eps)
    sel = select_endpoints(sp, "n1")
    assert [e.ip for e in sel.cluster] == ["10.0.0.3"]
    assert [e.ip for e in sel.local] == ["10.0.0.1"]
    assert [e.ip for e in sel.reachable] == ["10.0.0.1", "10.0.0.3"] and sel.has_any
    itp = S("ns", "s", "", "TCP", "10.96.0.1", 80, internal_policy_local=True, endpoints=eps[2:])
    sel = select_endpoints(itp, "n1")
    assert sel.cluster == () and sel.local == () and sel.has_any
    none = select_endpoints(S("ns", "s", "", "TCP", "10.96.0.1", 80, endpoints=eps[1:2]), "n1")
    assert not none.has_any


def test_sort_by_string_as_upstream() -> None:
    text = svc("  ports: [{port: 11}]") + """---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s-1, labels: {kubernetes.io/service-name: s}}
addressType: IPv4
endpoints: [{addresses: [10.1.1.1]}, {addresses: [10.1.1.11]}]
ports: [{port: 11}]
"""
    (p,) = loose(text).ports()
    assert [e.key for e in p.endpoints] == ["10.1.1.11:11", "10.1.1.1:11"]
