"""NetworkPolicy semantics on the upstream e2e model (x, y, z x a, b, c): the truth tables upstream expects."""

from __future__ import annotations

import pytest
from netpol_cases import EVERYONE, base, denied, np, pairs, policy_set

from podnet.model.netpol_eval import Endpoint


def test_no_policy_allows_everything():
    assert denied(policy_set()) == set()


def test_default_deny_ingress():
    ps = policy_set(np("deny", "  podSelector: {}\n  policyTypes: [Ingress]"))
    assert denied(ps) == pairs(EVERYONE, "x")
    assert denied(ps, 81, "UDP") == pairs(EVERYONE, "x")


def test_default_deny_all_ingress_and_egress():
    ps = policy_set(np("deny", "  podSelector: {}\n  policyTypes: [Ingress, Egress]"))
    assert denied(ps) == pairs(EVERYONE, "x") | pairs("x", EVERYONE)


def test_allow_all_ingress():
    ps = policy_set(np("deny", "  podSelector: {}\n  policyTypes: [Ingress]"),
                    np("allow-all", "  podSelector: {}\n  ingress: [{}]"))
    assert denied(ps) == set()


def test_same_namespace_only():
    ps = policy_set(np("same-ns", "  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]"))
    assert denied(ps) == pairs(["y", "z"], "x")


def test_pod_selector_within_the_policy_namespace():
    ps = policy_set(np("a-from-b", "  podSelector: {matchLabels: {pod: a}}\n"
                                   "  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]"))
    assert denied(ps) == pairs(EVERYONE, "x/a") - {("x/b", "x/a")}


def test_namespace_and_pod_selector_in_one_peer_is_and():
    spec = """  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}
          podSelector: {matchLabels: {pod: b}}"""
    assert denied(policy_set(np("and", spec))) == pairs(EVERYONE, "x/a") - {("y/b", "x/a"), ("z/b", "x/a")}


def test_namespace_and_pod_selector_in_two_peers_is_or():
    spec = """  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}
        - podSelector: {matchLabels: {pod: b}}"""
    assert denied(policy_set(np("or", spec))) == {("x/c", "x/a")}


def test_multiple_pod_selector_values_and_namespace_selector():
    spec = """  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]}
          podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}"""
    allowed = {(f"{n}/{p}", "x/a") for n in ("y", "z") for p in ("b", "c")}
    assert denied(policy_set(np("multi", spec))) == pairs(EVERYONE, "x/a") - allowed


def test_exists_and_does_not_exist():
    spec = """  podSelector: {matchExpressions: [{key: pod, operator: Exists}]}
  ingress:
    - from:
        - namespaceSelector: {matchExpressions: [{key: ns, operator: DoesNotExist}]}"""
    assert denied(policy_set(np("exists", spec))) == pairs(EVERYONE, "x")     # every namespace has ns=


def test_namespace_selector_does_not_imply_the_policy_namespace():
    spec = "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]"
    assert denied(policy_set(np("from-y", spec))) == pairs(["x", "z"], "x")


def test_ports_allow_81_from_namespace_y():
    spec = """  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {ns: y}}}]
      ports: [{port: 81, protocol: TCP}]"""
    ps = policy_set(np("p81", spec))
    assert denied(ps, 80) == pairs(EVERYONE, "x/a")
    assert denied(ps, 81) == pairs(["x", "z"], "x/a")


def test_stacked_policies_are_additive():
    p80 = """  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {ns: y}}}]
      ports: [{port: 80}]"""
    p81 = p80.replace("port: 80", "port: 81")
    ps = policy_set(np("p80", p80), np("p81", p81))
    assert denied(ps, 80) == denied(ps, 81) == pairs(["x", "z"], "x/a")


def test_named_ingress_port():
    ps = policy_set(np("named", "  podSelector: {}\n  ingress: [{ports: [{port: serve-81-tcp}]}]"))
    assert denied(ps, 80) == pairs(EVERYONE, "x")
    assert denied(ps, 81) == set()
    assert denied(ps, 81, "UDP") == pairs(EVERYONE, "x")       # the name is TCP's


def test_named_egress_port_resolved_per_destination_pod():
    text = base()
    # y/b serves "serve-80-tcp" on 8080: only it, on 8080, matches the name among y's pods
    text = text.replace("name: b, namespace: y, labels: {pod: b}}\nspec:\n  nodeName: node2\n  containers:\n"
                        "    - name: c\n      ports:\n        - {name: serve-80-tcp, containerPort: 80}",
                        "name: b, namespace: y, labels: {pod: b}}\nspec:\n  nodeName: node2\n  containers:\n"
                        "    - name: c\n      ports:\n        - {name: serve-80-tcp, containerPort: 8080}")
    assert "containerPort: 8080" in text
    ps = policy_set(np("named", "  podSelector: {}\n  policyTypes: [Egress]\n"
                                "  egress: [{ports: [{port: serve-80-tcp}]}]"), pods=text)
    assert denied(ps, 80) == {("x/a", "y/b"), ("x/b", "y/b"), ("x/c", "y/b")}
    m = ps.matrix(8080, "TCP")
    assert m.allowed("x/a", "y/b") and not m.allowed("x/a", "y/a")


def test_named_egress_port_never_matches_a_non_pod():
    ps = policy_set(np("named", "  podSelector: {}\n  policyTypes: [Egress]\n"
                                "  egress: [{ports: [{port: serve-80-tcp}]}]"))
    src = ps.endpoint(ps.pod("x/a").ip)
    v = ps.evaluate(src, Endpoint(ps.pod("x/a").ip.__class__("192.168.1.100")), 80)
    assert not v.allowed and "no rule of policy x/named allows port 80/TCP" in v.reason


def test_egress_on_one_port_only():
    ps = policy_set(np("e80", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n"
                              "  egress: [{ports: [{port: 80}]}]"))
    assert denied(ps, 80) == set()
    assert denied(ps, 81) == pairs("x/a", EVERYONE)


def test_egress_deny_keeps_ingress_open_and_is_enforced_on_the_client_side():
    deny = np("deny-egress", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]")
    allow = np("allow-xa", "  podSelector: {matchLabels: {pod: b}}\n  ingress: [{from: [{namespaceSelector: "
                           "{matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]", ns="y")
    ps = policy_set(deny, allow)
    want = pairs("x/a", EVERYONE) | (pairs(EVERYONE, "y/b") - {("x/a", "y/b")})
    assert denied(ps) == want
    v = ps.matrix(80).cells[("x/a", "y/b")]
    assert v.ingress.allowed and not v.egress.allowed
    assert v.reason == "dropped by the default deny egress of pod x/a (policies selecting it: x/deny-egress)"


def test_egress_to_pod_and_namespace_selector():
    spec = """  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]"""
    assert denied(policy_set(np("to-ya", spec))) == pairs("x/a", EVERYONE) - {("x/a", "y/a")}


def test_ingress_any_port_on_one_protocol():
    ps = policy_set(np("tcp", "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{ports: [{protocol: TCP}]}]"))
    assert denied(ps, 80) == denied(ps, 81) == set()
    assert denied(ps, 80, "UDP") == pairs(EVERYONE, "x/a")


def test_udp_only_policy_does_not_open_tcp_and_sctp_is_not_tcp():
    udp = policy_set(np("udp", "  podSelector: {matchLabels: {pod: a}}\n"
                               "  ingress: [{ports: [{protocol: UDP, port: 81}]}]"))
    assert denied(udp, 81, "TCP") == pairs(EVERYONE, "x/a")
    assert denied(udp, 81, "UDP") == set()
    sctp = policy_set(np("sctp", "  podSelector: {matchLabels: {pod: a}}\n"
                                 "  ingress: [{ports: [{protocol: SCTP, port: 80}]}]"))
    assert denied(sctp, 80, "TCP") == pairs(EVERYONE, "x/a")
    assert denied(sctp, 80, "SCTP") == set()


def test_end_port_range_is_inclusive():
    ps = policy_set(np("range", "  podSelector: {matchLabels: {pod: a}}\n"
                                "  ingress: [{ports: [{port: 80, endPort: 81}]}]"))
    assert denied(ps, 80) == denied(ps, 81) == set()
    assert denied(ps, 79) == denied(ps, 82) == pairs(EVERYONE, "x/a")


def test_ip_block_with_except_matches_pod_ips():
    probe = policy_set()
    yb = probe.pod("y/b").ip
    spec = f"""  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Egress]
  egress:
    - to: [{{ipBlock: {{cidr: 10.244.0.0/16, except: ["{yb}/32"]}}}}]"""
    ps = policy_set(np("cidr", spec))
    assert denied(ps) == {("x/a", "y/b")}
    v = ps.matrix(80).cells[("x/a", "y/b")]
    assert v.egress.policies == ("x/cidr",) and not v.allowed


def test_except_overridden_by_another_peer():
    probe = policy_set()
    yb = probe.pod("y/b").ip
    spec = f"""  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Egress]
  egress:
    - to:
        - ipBlock: {{cidr: 10.244.0.0/16, except: ["{yb}/32"]}}
        - ipBlock: {{cidr: "{yb}/32"}}"""
    assert denied(policy_set(np("cidr", spec))) == set()


def test_policy_types_inference_makes_an_egress_only_policy_deny_ingress():
    ps = policy_set(np("egress-only", "  podSelector: {matchLabels: {pod: a}}\n"
                                      "  egress: [{to: [{podSelector: {}}]}]"))
    assert denied(ps) == pairs(EVERYONE, "x/a") | pairs("x/a", ["y", "z"])


def test_policies_in_other_namespaces_never_select():
    ps = policy_set(np("deny", "  podSelector: {}\n  policyTypes: [Ingress]", ns="z"))
    assert denied(ps) == pairs(EVERYONE, "z")


def test_reasons_name_the_policies_and_rules():
    ps = policy_set(np("deny", "  podSelector: {}\n  policyTypes: [Ingress]"),
                    np("allow-81", "  podSelector: {}\n  ingress: [{ports: [{port: 81}]}]"))
    m = ps.matrix(80)
    v = m.cells[("y/a", "x/b")]
    assert v.reason == "no rule of policy x/allow-81 allows port 80/TCP"
    assert v.ingress.policies == ("x/allow-81", "x/deny")
    ok = ps.matrix(81).cells[("y/a", "x/b")]
    assert ok.allowed and str(ok.ingress.allowed_by[0]) == "x/allow-81 ingress[0]"
    nothing = policy_set(np("deny", "  podSelector: {}\n  policyTypes: [Ingress]")).matrix(80)
    assert nothing.cells[("y/a", "x/b")].reason == \
        "dropped by the default deny ingress of pod x/b (policies selecting it: x/deny)"


def test_host_network_and_component_pods_are_never_selected():
    text = base() + """---
apiVersion: v1
kind: Pod
metadata: {name: hn, namespace: x, labels: {pod: a}}
spec:
  hostNetwork: true
  nodeName: node1
  containers: [{name: c, ports: [{containerPort: 9000}]}]
"""
    ps = policy_set(np("deny", "  podSelector: {}\n  policyTypes: [Ingress]"), pods=text)
    assert ps.pod("x/hn") is None
    assert all(p.namespace != "kube-system" for p in ps.matrix_pods())
    node = ps.endpoint("192.168.1.10")          # the hostNetwork pod's traffic is node traffic
    assert node.pod is None and not ps.evaluate(node, ps.endpoint(ps.pod("x/a").ip), 80).allowed


@pytest.mark.parametrize("labels, denied_from_y", [("{ns: y}", False), ("{ns: other}", True)])
def test_namespace_labels_drive_selection(labels, denied_from_y):
    text = base().replace("metadata: {name: y, labels: {ns: y}}", f"metadata: {{name: y, labels: {labels}}}")
    ps = policy_set(np("from-y", "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: "
                                 "{matchLabels: {ns: y}}}]}]"), pods=text)
    assert (("y/a", "x/a") in denied(ps)) == denied_from_y
