"""NetworkPolicy parsing: API validation (one line naming file:line, object, field) and defaulting."""

import ipaddress

import pytest

from podnet.errors import PodnetError
from podnet.model.manifest import parse_docs
from podnet.model.netpol import EGRESS, INGRESS, IPBlock, LabelSelector, Requirement
from podnet.model.source import load_text


def policy(spec: str, name: str = "p", ns: str = "x") -> str:
    return f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {name}
  namespace: {ns}
spec:
{spec}"""


def parse(spec: str):
    m = parse_docs(load_text(policy(spec), "np.yaml"))
    return m.networkpolicies[0], m.warnings


def error_of(spec: str) -> str:
    with pytest.raises(PodnetError) as e:
        parse(spec)
    return str(e.value)


def test_policy_types_inferred_as_the_api_server_does():
    pol, _ = parse("  podSelector: {}\n  egress: [{}]")
    assert pol.policy_types == (INGRESS, EGRESS) and pol.types_inferred
    pol, _ = parse("  podSelector: {}\n  egress: []")        # empty egress: Ingress only
    assert pol.policy_types == (INGRESS,)
    pol, _ = parse("  podSelector: {}")                       # nothing: deny-all ingress
    assert pol.policy_types == (INGRESS,) and pol.ingress == ()
    pol, warnings = parse("  podSelector: {}\n  policyTypes: [Egress]\n  ingress: [{}]")
    assert pol.policy_types == (EGRESS,) and not pol.types_inferred
    assert any("spec.ingress" in w and "ignored" in w for w in warnings)


def test_rules_peers_and_ports_are_typed_and_defaulted():
    pol, _ = parse("""  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {ns: y}}
          podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [b, c]}]}
        - ipBlock: {cidr: 10.0.0.0/8, except: [10.244.1.0/24]}
      ports:
        - port: 80
        - {protocol: UDP, port: serve-81-udp}
        - {port: 8000, endPort: 8080}
        - {protocol: SCTP}""")
    rule = pol.ingress[0]
    both, block = rule.peers
    assert both.namespace_selector == LabelSelector((("ns", "y"),))
    assert both.pod_selector.match_expressions == (Requirement("pod", "NotIn", ("b", "c")),)
    assert block.ip_block == IPBlock(ipaddress.IPv4Network("10.0.0.0/8"), (ipaddress.IPv4Network("10.244.1.0/24"),))
    assert [(p.protocol, p.port, p.end_port) for p in rule.ports] == [
        ("TCP", 80, None), ("UDP", "serve-81-udp", None), ("TCP", 8000, 8080), ("SCTP", None, None)]
    assert pol.to_spec()["policyTypes"] == ["Ingress"]
    assert pol.to_spec()["ingress"][0]["ports"][0] == {"protocol": "TCP", "port": 80}


def test_selector_operators():
    labels = {"pod": "a", "tier": "web"}
    assert Requirement("pod", "In", ("a", "b")).matches(labels)
    assert not Requirement("pod", "In", ("b",)).matches(labels)
    assert Requirement("pod", "NotIn", ("b",)).matches(labels)
    assert Requirement("missing", "NotIn", ("b",)).matches(labels)      # absent key: NotIn holds
    assert Requirement("tier", "Exists").matches(labels)
    assert not Requirement("tier", "DoesNotExist").matches(labels)
    assert LabelSelector().matches(labels)                                  # empty selects everything
    sel = LabelSelector((("pod", "a"),), (Requirement("tier", "In", ("db",)),))
    assert not sel.matches(labels) and str(sel) == "pod=a,tier in (db)"


def test_ip_block_networks_subtract_excepts():
    b = IPBlock(ipaddress.IPv4Network("10.0.0.0/8"),
                (ipaddress.IPv4Network("10.1.0.0/16"), ipaddress.IPv4Network("10.2.3.0/24")))
    nets = b.networks()
    assert ipaddress.IPv4Network("10.1.0.0/16") not in nets
    covered = sum(n.num_addresses for n in nets)
    assert covered == 2 ** 24 - 2 ** 16 - 2 ** 8
    for ip in ("10.0.0.1", "10.2.2.255", "10.2.4.0", "10.255.255.255"):
        assert b.contains(ipaddress.IPv4Address(ip))
        assert any(ipaddress.IPv4Address(ip) in n for n in nets)
    for ip in ("10.1.2.3", "10.2.3.9", "11.0.0.1"):
        assert not b.contains(ipaddress.IPv4Address(ip))
        assert not any(ipaddress.IPv4Address(ip) in n for n in nets)


def test_host_bits_are_masked_with_a_warning():
    pol, warnings = parse("  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.244.1.7/4}}]}]")
    assert pol.egress[0].peers[0].ip_block.cidr == ipaddress.IPv4Network("0.0.0.0/4")
    assert any("host bits" in w and "0.0.0.0/4" in w for w in warnings)


@pytest.mark.parametrize("spec, want", [
    ("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0/8}}]}]",
     ["np.yaml:", "NetworkPolicy x/p", "spec.ingress[0].from[0].ipBlock.cidr", "invalid CIDR '10.0.0/8'"]),
    ("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.300/8}}]}]", ["invalid CIDR"]),
    ("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.1}}]}]", ["prefix length is required"]),
    ("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]",
     ["ipBlock.except[0]", "strict subset"]),
    ("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]",
     ["strict subset"]),
    ("  podSelector: {}\n  ingress: [{ports: [{port: 90, endPort: 80}]}]",
     ["spec.ingress[0].ports[0].endPort", "must be greater than or equal to port (80 < 90)"]),
    ("  podSelector: {}\n  ingress: [{ports: [{port: http, endPort: 80}]}]", ["endPort", "port is a name"]),
    ("  podSelector: {}\n  ingress: [{ports: [{endPort: 80}]}]", ["endPort", "without port"]),
    ("  podSelector: {}\n  ingress: [{ports: [{port: 70000}]}]", ["ports[0].port", "out of range"]),
    ("  podSelector: {}\n  ingress: [{ports: [{port: Serve_80}]}]", ["invalid port name 'Serve_80'"]),
    ("  podSelector: {}\n  ingress: [{ports: [{protocol: ICMP}]}]", ["ports[0].protocol", "unsupported protocol"]),
    ("  podSelector: {matchExpressions: [{key: pod, operator: Equals, values: [a]}]}",
     ["spec.podSelector.matchExpressions[0].operator", "unknown operator 'Equals'"]),
    ("  podSelector: {matchExpressions: [{key: pod, operator: In}]}", ["matchExpressions[0].values", "non-empty"]),
    ("  podSelector: {matchExpressions: [{key: pod, operator: Exists, values: [a]}]}", ["must be empty"]),
    ("  podSelector: {}\n  policyTypes: [Ingress, Both]", ["spec.policyTypes[1]", "unsupported value 'Both'"]),
    ("  podSelector: {}\n  ingress: [{from: [{}]}]", ["spec.ingress[0].from[0]", "a peer needs"]),
    ("  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
     ["spec.egress[0].to[0].ipBlock", "may not be combined"]),
    ("  podSelector: {}\n  ingress: [{to: []}]", ["spec.ingress[0].to", "unknown field 'to'"]),
    ("  podSelector: {matchLabels: {pod: 'a b'}}", ["invalid label value"]),
])
def test_invalid_policies_get_one_line_errors(spec, want):
    err = error_of(spec)
    assert "\n" not in err
    for w in want:
        assert w in err, err


def test_error_names_the_line_of_the_field():
    text = policy("  podSelector: {}\n  ingress:\n    - ports:\n        - {port: 90, endPort: 80}")
    with pytest.raises(PodnetError) as e:
        parse_docs(load_text(text, "np.yaml"))
    assert str(e.value).startswith("np.yaml:10: NetworkPolicy x/p: spec.ingress[0].ports[0].endPort:")
