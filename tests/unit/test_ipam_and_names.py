import ipaddress

from podnet.model import names
from podnet.model.ipam import PodAllocator
from podnet.model.lab import resolve
from podnet.model.manifest import parse_docs
from podnet.model.source import load_text

CLUSTER = """\
apiVersion: podnet.dev/v1alpha1
kind: Cluster
metadata: {name: t}
networking: {podSubnet: 10.244.0.0/16}
nodes:
  - {name: n1, ip: 192.168.1.10}
  - {name: n2, ip: 192.168.1.11}
  - {name: n3, ip: 192.168.1.12}
"""

DEPLOY = """---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 5
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
"""


def lab_of(text, previous=None):
    return resolve(parse_docs(load_text(text, "x.yaml")), previous=previous)


def test_node_cidrs_follow_flannel_subnet_min():
    lab = lab_of(CLUSTER)
    assert [str(n.pod_cidr) for n in lab.nodes] == ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    assert [str(n.gateway) for n in lab.nodes] == ["10.244.1.1", "10.244.2.1", "10.244.3.1"]


def test_host_local_allocation_skips_reserved_and_pinned():
    a = PodAllocator(ipaddress.IPv4Network("10.0.0.0/29"))
    a.reserve(ipaddress.IPv4Address("10.0.0.3"))
    got = [str(a.allocate()) for _ in range(4)]
    assert got == ["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert a.allocate() is None  # .7 is broadcast


def test_deployment_replicas_spread_and_are_deterministic():
    lab1 = lab_of(CLUSTER + DEPLOY)
    lab2 = lab_of(CLUSTER + DEPLOY)
    pods1 = [(p.name, p.node, str(p.ip)) for p in lab1.pods if not p.component]
    assert pods1 == [(p.name, p.node, str(p.ip)) for p in lab2.pods if not p.component]
    per_node = {}
    for _, node, _ in pods1:
        per_node[node] = per_node.get(node, 0) + 1
    assert sorted(per_node.values()) == [1, 2, 2]
    for name, _, _ in pods1:
        assert name.startswith("web-") and len(name.split("-")[1]) == 10 and len(name.split("-")[2]) == 5
    assert all(p.pod.meta.labels["app"] == "web" and "pod-template-hash" in p.pod.meta.labels
               for p in lab1.pods if not p.component)


def test_addresses_are_sticky_across_changes():
    first = lab_of(CLUSTER + DEPLOY)
    prev = {p.key: (p.node, str(p.ip)) for p in first.pods if not p.component}
    # a new pod declared before the deployment must not shift the existing replicas
    extra = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: extra}\nspec: {containers: [{name: c}]}\n"
    second = lab_of(CLUSTER + extra + DEPLOY, previous=prev)
    for p in second.pods:
        if p.key in prev:
            assert (p.node, str(p.ip)) == prev[p.key]


def test_names_fit_kernel_limits():
    long_pod = "p" * 200
    ns = names.pod_ns("lab", "default", long_pod)
    assert len(ns) <= names.NETNS_MAX and ns.startswith("pn-lab-default-")
    assert names.pod_ns("lab", "default", long_pod) == ns
    assert len(names.host_veth("lab", "default", long_pod)) <= 15
    assert names.host_veth("lab", "default", "a").startswith("veth") and len(names.host_veth("l", "n", "p")) == 12
    assert len(names.cali_veth("l", "n", "p")) == 15
    assert len(names.underlay_port("lab", "a-very-long-node-name")) <= 15
    assert names.mac_from_ip("10.244.1.5") == "0a:58:0a:f4:01:05"


def test_component_pods_are_hostnetwork_in_kube_system():
    lab = lab_of(CLUSTER)
    comps = [p for p in lab.pods if p.component and p.host_network]
    assert [p.key for p in comps] == [f"kube-system/{c}-{n}" for n in ("n1", "n2", "n3")
                                      for c in ("kube-flannel", "kube-proxy", "kube-network-policies")]
    assert all(p.netns == lab.node(p.node).netns for p in comps)


def test_cluster_dns_is_two_replicas_on_different_nodes_behind_kube_dns():
    lab = lab_of(CLUSTER)
    dns = [p for p in lab.pods if p.component == "coredns"]
    assert len(dns) == 2 and len({p.node for p in dns}) == 2
    assert all(not p.host_network and p.namespace == "kube-system" and p.pod.meta.labels["k8s-app"] == "kube-dns"
               and p.ip in lab.node(p.node).pod_cidr for p in dns)
    svc = next(s for s in lab.services if s.key == "kube-system/kube-dns")
    assert svc.cluster_ip == str(lab.cluster.networking.dns_ip)
    assert [(p.port, p.protocol) for p in svc.ports][:2] == [(53, "UDP"), (53, "TCP")]
