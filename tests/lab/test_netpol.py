"""NetworkPolicy on the real dataplane: every semantic probed with real connections in one lab.

The lab is examples/netpol-demo.yaml (namespaces x, y, z; pods a, c on node1 and b on node2 in each;
80 and 81 over TCP and UDP; Service x/s-x-a). Each test applies its policies with `podnet apply`, asks
`podnet netpol matrix --probe -o json` for the computed and the probed truth tables, requires both to
equal the table written here by hand (upstream's expectations), and deletes its policies again.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest

from podnet.cli import netpol as netpol_cli
from podnet.dataplane import lab as labrt
from podnet.dataplane.probe import Probe, probe
from tests.lab.conftest import run, running_lab, sh
from tests.lab.conftest import wait_for as conftest_wait_for
from tests.unit.netpol_cases import valid_random_policy

NSS = ("x", "y", "z")
PODS = ("a", "b", "c")
ALL = [f"{n}/{p}" for n in NSS for p in PODS]
DEMO_POLICIES = ("x/default-deny-ingress", "x/allow-from-y", "y/allow-b-80", "z/c-egress-80")


def pairs(src, dst) -> set[tuple[str, str]]:
    """Off-diagonal cells from src pods to dst pods (a bare namespace name means its three pods)."""
    def expand(v):
        items = [v] if isinstance(v, str) else v
        return [q for i in items for q in ([f"{i}/{p}" for p in PODS] if "/" not in i else [i])]
    return {(a, b) for a in expand(src) for b in expand(dst) if a != b}


EVERYONE = list(NSS)


def policy(name: str, ns: str, spec: str) -> str:
    return f"""---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
{spec}
"""


def pod_doc(ns: str, name: str, labels: str) -> str:
    node = "node2" if name == "b" else "node1"
    return f"""---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
  labels: {labels}
spec:
  nodeName: {node}
  containers:
    - name: server
      ports:
        - {{name: serve-80-tcp, containerPort: 80, protocol: TCP}}
        - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}
        - {{name: serve-81-tcp, containerPort: 81, protocol: TCP}}
        - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}
"""


class NetpolLab:
    def __init__(self, lab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.n = 0
        self.demo = True        # the demo's policies are in the lab
        pods = lab.get_json("pods", "-A")["items"]
        self.ip = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["status"]["podIP"] for p in pods}
        self.netns = {f"{p['metadata']['namespace']}/{p['metadata']['name']}":
                      p["metadata"]["annotations"]["podnet.dev/netns"] for p in pods}

    def file(self, text: str) -> str:
        self.n += 1
        f = self.tmp / f"doc{self.n}.yaml"
        f.write_text(text)
        return str(f)

    def apply(self, text: str, check: bool = True):
        return run("apply", "-f", self.file(text), "--lab", self.lab.name, check=check)

    def delete(self, text: str):
        return run("delete", "-f", self.file(text), "--lab", self.lab.name, check=False)

    def matrix(self, port: int = 80, protocol: str = "tcp") -> dict:
        """What `podnet netpol matrix --probe -o json` prints (the same code, without a process start)."""
        lab, store = labrt.load(self.lab.name)
        revision = store.revision
        store.close()
        _, m, probed, _ = netpol_cli.compute(lab, revision, port, protocol.upper(), probe=True)
        return netpol_cli.matrix_json(lab, m, probed)

    def denied(self, port: int = 80, protocol: str = "tcp") -> set[tuple[str, str]]:
        """The denied off-diagonal cells, after checking that computed and probed agree on every cell."""
        doc = self.matrix(port, protocol)
        assert doc["pods"] == ALL
        bad = [f"{c['from']}->{c['to']}: computed {c['allowed']} ({c['reason']}), probed {c['probe']}"
               for c in doc["cells"] if not c["agree"]]
        assert not bad, f"{port}/{protocol}: computed and probed disagree:\n" + "\n".join(bad)
        return {(c["from"], c["to"]) for c in doc["cells"] if c["from"] != c["to"] and not c["allowed"]}

    def probe(self, src: str, dst: str, port: int = 80, protocol: str = "TCP"):
        return probe(Probe(self.netns[src], self.ip.get(dst, dst), port, protocol))


@pytest.fixture(scope="module")
def np_lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("netpol")
    with running_lab(tmp, "netpol-demo.yaml") as lab:
        yield NetpolLab(lab, tmp)


@pytest.fixture
def policies(np_lab):
    """Apply policies for one test; whatever it applied is deleted afterwards."""
    if np_lab.demo:         # the semantic tests start from no policy at all
        np_lab.delete(demo_text())
        np_lab.demo = False
    applied: list[str] = []

    def add(*texts: str) -> None:
        text = "".join(texts)
        np_lab.apply(text)
        applied.append(text)

    yield add
    for text in reversed(applied):
        np_lab.delete(text)


wait_for = functools.partial(conftest_wait_for, timeout=5.0, step=0.02)


def demo_text() -> str:
    text = (Path(__file__).resolve().parents[2] / "examples" / "netpol-demo.yaml").read_text()
    return "---\n" + "\n---\n".join(d for d in text.split("\n---\n") if "kind: NetworkPolicy" in d) + "\n"


# ----------------------------------------------------------------------------------------------- the demo

def test_01_demo_truth_tables_computed_equal_probed(np_lab):
    # x accepts only y; y/b accepts 80 (named serve-80-tcp) from every pod; z/c may only open 80/TCP
    assert np_lab.denied(80) == pairs(["x", "z"], "x")
    assert np_lab.denied(81) == pairs(["x", "z"], "x") | pairs(EVERYONE, "y/b") | pairs("z/c", EVERYONE)
    assert np_lab.denied(81, "udp") == pairs(["x", "z"], "x") | pairs(EVERYONE, "y/b") | pairs("z/c", EVERYONE)
    text = run("netpol", "matrix", "--probe", "--lab", np_lab.lab.name).stdout
    assert "computed and probed agree" in text and "x/a ingress: x/allow-from-y, x/default-deny-ingress" in text
    doc = json.loads(run("netpol", "matrix", "--probe", "--port", "81", "-o", "json", "--lab", np_lab.lab.name).stdout)
    assert doc["kind"] == "NetpolMatrix" and doc["schemaVersion"] == 1 and doc["agree"] is True
    assert doc["computed"] == doc["probed"] and doc["pods"] == ALL


def test_02_rules_name_policy_and_rule_and_deny_is_attributed(np_lab):
    saved = np_lab.lab.node("node1", "iptables-save", "-t", "filter").stdout
    forward = [line for line in saved.splitlines() if line.startswith("-A FORWARD")]
    assert forward[0] == '-A FORWARD -m comment --comment "kubernetes network policies" -j KUBE-NP-FORWARD'
    assert f'-d {np_lab.ip["x/a"]}/32 -m comment --comment "ingress of pod x/a (isolated by x/allow-from-y, ' \
           'x/default-deny-ingress)"' in saved
    assert f'-s {np_lab.ip["y/a"]}/32 -m comment --comment "x/allow-from-y ingress[0]: from pod y/a any port" ' \
           '-j RETURN' in saved
    assert ('"dropped by the default deny ingress of pod x/a (policies selecting it: x/allow-from-y, '
            'x/default-deny-ingress)" -j REJECT --reject-with icmp-admin-prohibited') in saved
    # the deny rule counts the rejected connection
    r = np_lab.probe("z/a", "x/a")
    assert r.outcome == "filtered", r
    counted = np_lab.lab.node("node1", "iptables", "-L", "-v", "-n", "-x").stdout
    line = next(x for x in counted.splitlines() if "default deny ingress of pod x/a" in x)
    assert int(line.split()[0]) >= 1
    doc = np_lab.matrix(81)
    cell = next(c for c in doc["cells"] if c["from"] == "x/a" and c["to"] == "y/b")
    assert cell["reason"] == "no rule of policy y/allow-b-80 allows port 81/TCP"
    assert cell["probe"]["outcome"] == "filtered"


def test_03_agent_restores_flushed_rules_and_keeps_its_jump_first(np_lab):
    node = np_lab.lab.node
    node("node1", "iptables", "-F", "KUBE-NP-FORWARD")
    assert np_lab.probe("z/a", "x/a").reached          # nothing enforces for a moment ...
    wait_for(lambda: not np_lab.probe("z/a", "x/a").reached, timeout=5)     # ... until the agent re-syncs
    node("node1", "iptables", "-D", "FORWARD", "-m", "comment", "--comment", "kubernetes network policies",
         "-j", "KUBE-NP-FORWARD")
    node("node1", "iptables", "-A", "FORWARD", "-m", "comment", "--comment", "kubernetes network policies",
         "-j", "KUBE-NP-FORWARD")
    wait_for(lambda: node("node1", "iptables", "-S", "FORWARD").stdout.splitlines()[1].endswith(
        "-j KUBE-NP-FORWARD"))
    logs = run("logs", "kube-network-policies-node1", "-n", "kube-system", "--lab", np_lab.lab.name).stdout
    assert "Re-syncing" in logs and "Synced 4 network policies" in logs


def test_04_policy_deleted_restores_access_within_a_second(np_lab):
    demo = demo_text()
    if not np_lab.demo:
        np_lab.apply(demo)
        wait_for(lambda: not np_lab.probe("z/a", "x/a").reached)
    assert not np_lab.probe("z/a", "x/a").reached
    np_lab.delete(demo)
    took = wait_for(lambda: np_lab.probe("z/a", "x/a").reached, timeout=5)
    assert took < 1.0, f"took {took:.2f}s"
    assert np_lab.denied(80) == set() and np_lab.denied(81, "udp") == set()
    np_lab.apply(demo)
    took = wait_for(lambda: not np_lab.probe("z/a", "x/a").reached, timeout=5)
    assert took < 1.0, f"took {took:.2f}s"
    np_lab.delete(demo)     # the other tests start from no policy at all
    np_lab.demo = False
    wait_for(lambda: np_lab.probe("z/a", "x/a").reached)


# ------------------------------------------------------------------------------------------- semantics

def test_default_deny_ingress_and_egress(np_lab, policies):
    policies(policy("deny-all", "x", "  podSelector: {}\n  policyTypes: [Ingress, Egress]"))
    assert np_lab.denied(80) == pairs(EVERYONE, "x") | pairs("x", EVERYONE)
    assert np_lab.denied(81, "udp") == pairs(EVERYONE, "x") | pairs("x", EVERYONE)


def test_default_deny_ingress_keeps_replies_of_outgoing_connections(np_lab, policies):
    policies(policy("deny-in", "x", "  podSelector: {}\n  policyTypes: [Ingress]"),
             policy("deny-out", "y", "  podSelector: {}\n  policyTypes: [Egress]"))
    # x -> y/z still works while x is ingress-isolated; y -> x fails twice over; z -> y works although
    # y may not send: replies are never judged
    assert np_lab.denied(80) == pairs(EVERYONE, "x") | pairs("y", EVERYONE)
    assert np_lab.denied(80, "udp") == pairs(EVERYONE, "x") | pairs("y", EVERYONE)


def test_allow_all_after_deny(np_lab, policies):
    policies(policy("deny", "x", "  podSelector: {}\n  policyTypes: [Ingress]"),
             policy("allow-all", "x", "  podSelector: {}\n  ingress: [{}]"))
    assert np_lab.denied(80) == set()


def test_same_namespace_only(np_lab, policies):
    policies(policy("same-ns", "y", "  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]"))
    assert np_lab.denied(80) == pairs(["x", "z"], "y")


def test_namespace_and_pod_selector_one_peer_is_and_two_peers_is_or(np_lab, policies):
    and_ = """  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from:
        - namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]}
          podSelector: {matchLabels: {pod: b}}"""
    policies(policy("and", "x", and_))
    assert np_lab.denied(80) == pairs(EVERYONE, "x/a") - {("y/b", "x/a"), ("z/b", "x/a")}
    or_ = and_.replace("          podSelector:", "        - podSelector:")
    np_lab.apply(policy("and", "x", or_))              # the same policy, replaced
    assert np_lab.denied(80) == {("x/c", "x/a")}


def test_match_expressions_exists_and_does_not_exist(np_lab, policies):
    policies(policy("exists", "z", """  podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
  ingress:
    - from: [{podSelector: {matchExpressions: [{key: pod, operator: DoesNotExist}]}},
             {namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}}]"""))
    assert np_lab.denied(80) == pairs(EVERYONE, ["z/a", "z/b"])       # no pod lacks "pod", no ns has "team"


def test_named_ports(np_lab, policies):
    policies(policy("named-in", "x", "  podSelector: {}\n  ingress: [{ports: [{port: serve-81-tcp}]}]"),
             policy("named-out", "y", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n"
                                      "  egress: [{ports: [{port: serve-80-udp, protocol: UDP}]}]"))
    assert np_lab.denied(80) == pairs(EVERYONE, "x") | pairs("y/a", EVERYONE)
    assert np_lab.denied(81) == pairs("y/a", EVERYONE)
    assert np_lab.denied(80, "udp") == pairs(EVERYONE, "x")
    assert np_lab.denied(81, "udp") == pairs(EVERYONE, "x") | pairs("y/a", EVERYONE)


def test_end_port_range(np_lab, policies):
    policies(policy("range", "x", "  podSelector: {matchLabels: {pod: b}}\n"
                                  "  ingress: [{ports: [{port: 81, endPort: 90}]}]"))
    assert np_lab.denied(80) == pairs(EVERYONE, "x/b")
    assert np_lab.denied(81) == set()
    assert np_lab.denied(81, "udp") == pairs(EVERYONE, "x/b")       # the range is TCP's


def test_ip_block_with_except_matches_pod_ips(np_lab, policies):
    policies(policy("cidr", "x", f"""  podSelector: {{matchLabels: {{pod: a}}}}
  policyTypes: [Egress]
  egress:
    - to: [{{ipBlock: {{cidr: 10.244.0.0/16, except: ["{np_lab.ip['y/b']}/32"]}}}}]"""))
    assert np_lab.denied(80) == {("x/a", "y/b")}


def test_egress_allowed_only_on_one_port(np_lab, policies):
    policies(policy("e80", "z", "  podSelector: {matchLabels: {pod: b}}\n  policyTypes: [Egress]\n"
                                "  egress: [{ports: [{port: 80, protocol: TCP}]}]"))
    assert np_lab.denied(80) == set()
    assert np_lab.denied(81) == pairs("z/b", EVERYONE)
    assert np_lab.denied(80, "udp") == pairs("z/b", EVERYONE)


def test_client_side_egress_deny_wins_over_server_allow(np_lab, policies):
    policies(policy("deny-out", "x", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]"),
             policy("allow-xa", "y", """  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}},
                     podSelector: {matchLabels: {pod: a}}}]}]"""))
    assert np_lab.denied(80) == pairs("x/a", EVERYONE) | (pairs(EVERYONE, "y/b") - {("x/a", "y/b")})


def test_protocols_udp_only_and_sctp_not_tcp(np_lab, policies):
    policies(policy("udp-81", "x", "  podSelector: {matchLabels: {pod: a}}\n"
                                   "  ingress: [{ports: [{protocol: UDP, port: 81}]}]"),
             policy("sctp-80", "y", "  podSelector: {matchLabels: {pod: a}}\n"
                                    "  ingress: [{ports: [{protocol: SCTP, port: 80}]}]"))
    assert np_lab.denied(81) == pairs(EVERYONE, ["x/a", "y/a"])
    assert np_lab.denied(81, "udp") == pairs(EVERYONE, "y/a")
    assert np_lab.denied(80) == pairs(EVERYONE, ["x/a", "y/a"])
    # SCTP (an INIT on a raw socket where the kernel has no SCTP sockets): 80 passes to y/a, 81 does not
    assert np_lab.denied(80, "sctp") == pairs(EVERYONE, "x/a")
    assert np_lab.denied(81, "sctp") == pairs(EVERYONE, ["x/a", "y/a"])


def test_policy_types_inference_egress_rules_only_still_isolate_ingress(np_lab, policies):
    policies(policy("egress-only", "z", "  podSelector: {matchLabels: {pod: c}}\n"
                                        "  egress: [{to: [{podSelector: {}}]}]"))
    assert np_lab.denied(80) == pairs(EVERYONE, "z/c") | pairs("z/c", ["x", "y"])


def test_traffic_to_a_cluster_ip_is_judged_after_dnat(np_lab, policies):
    svc = json.loads(run("get", "svc", "s-x-a", "-n", "x", "-o", "json", "--lab", np_lab.lab.name).stdout)
    svc = svc.get("items", [svc])[0] if "items" in svc else svc
    vip = svc["spec"]["clusterIP"]
    wait_for(lambda: np_lab.probe("y/a", vip).outcome == "connected")
    policies(policy("from-y", "x", "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: "
                                   "{matchLabels: {kubernetes.io/metadata.name: y}}}]}]"),
             policy("to-xa", "z", """  podSelector: {matchLabels: {pod: c}}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}, podSelector: {matchLabels: {pod: a}}}]
      ports: [{port: 80}]"""))
    np_lab.matrix()         # waits until every node applied the policies
    assert np_lab.probe("y/a", vip).outcome == "connected"          # ingress of x/a allows y
    assert np_lab.probe("z/a", vip).outcome == "filtered"           # ... and not z
    assert np_lab.probe("y/a", vip, 81).outcome == "connected"
    # egress selectors see the DNATed destination: z/c may reach x/a only, on 80, also through the VIP
    policies(policy("and-z", "x", "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: "
                                  "[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]}]"))
    np_lab.matrix()
    assert np_lab.probe("z/c", vip).outcome == "connected"
    assert np_lab.probe("z/c", vip, 81).outcome == "filtered"
    assert np_lab.probe("z/c", "y/a").outcome == "filtered"


def test_pod_label_change_takes_effect_in_place_within_a_second(np_lab, policies):
    policies(policy("trusted-only", "y", "  podSelector: {matchLabels: {pod: c}}\n  ingress: [{from: "
                                         "[{namespaceSelector: {}, podSelector: {matchLabels: {role: trusted}}}]}]"))
    np_lab.matrix()
    assert not np_lab.probe("x/b", "y/c").reached
    before = sh("ip", "netns", "pids", np_lab.netns["x/b"]).stdout.split()
    try:
        np_lab.apply(pod_doc("x", "b", "{pod: b, role: trusted}"))
        took = wait_for(lambda: np_lab.probe("x/b", "y/c").reached)
        assert took < 1.0, f"took {took:.2f}s"
        assert sh("ip", "netns", "pids", np_lab.netns["x/b"]).stdout.split() == before, "the pod was recreated"
        assert np_lab.denied(80) == pairs(EVERYONE, "y/c") - {("x/b", "y/c")}
    finally:
        np_lab.apply(pod_doc("x", "b", "{pod: b}"))
    wait_for(lambda: not np_lab.probe("x/b", "y/c").reached)


def test_namespace_label_change_takes_effect_within_a_second(np_lab, policies):
    policies(policy("from-blue", "x", "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: "
                                      "{matchLabels: {team: blue}}}]}]"))
    np_lab.matrix()
    assert not np_lab.probe("z/a", "x/a").reached
    ns = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: z\n  labels: {team: blue}\n"
    try:
        np_lab.apply(ns)
        took = wait_for(lambda: np_lab.probe("z/a", "x/a").reached)
        assert took < 1.0, f"took {took:.2f}s"
        assert np_lab.denied(80) == pairs(["x", "y"], "x")
    finally:
        np_lab.apply(ns.replace("  labels: {team: blue}\n", ""))
    wait_for(lambda: not np_lab.probe("z/a", "x/a").reached)


def test_invalid_policies_are_one_line_errors_and_change_nothing(np_lab):
    bad = {
        "bad-cidr": ("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]",
                     "spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR '10.0.0.0/33'"),
        "bad-range": ("  podSelector: {}\n  ingress: [{ports: [{port: 81, endPort: 80}]}]",
                      "spec.ingress[0].ports[0].endPort: must be greater than or equal to port (80 < 81)"),
        "bad-op": ("  podSelector: {matchExpressions: [{key: pod, operator: Equals, values: [a]}]}",
                   "spec.podSelector.matchExpressions[0].operator: unknown operator 'Equals'"),
    }
    for name, (spec, want) in bad.items():
        p = np_lab.apply(policy(name, "x", spec), check=False)
        assert p.returncode == 1
        err = p.stderr.strip()
        assert "\n" not in err and want in err and f"NetworkPolicy x/{name}" in err, err
    assert np_lab.denied(80) == set()


@pytest.mark.parametrize("seed", [3, 11, 24])
def test_random_policies_computed_equal_probed(np_lab, policies, seed):
    rng = random.Random(seed)
    ips = [np_lab.ip[k] for k in ALL]
    policies(*(valid_random_policy(rng, i, ips) for i in range(rng.randrange(2, 5))))
    for port, proto in ((80, "tcp"), (81, "udp")):
        np_lab.denied(port, proto)          # asserts computed == probed on all 81 cells


@pytest.mark.parametrize("backend", ["host-gw", "bgp"])
def test_other_backends_enforce_the_demo(tmp_path, backend):
    """The same rules on host-gw (routes via node IPs) and bgp (routed cali* veths, no bridge, BIRD)."""
    with running_lab(tmp_path, "netpol-demo.yaml", **{"backend: vxlan": f"backend: {backend}"}) as lab:
        np = NetpolLab(lab, tmp_path)
        assert np.denied(80) == pairs(["x", "z"], "x")
        assert np.denied(81, "udp") == pairs(["x", "z"], "x") | pairs(EVERYONE, "y/b") | pairs("z/c", EVERYONE)
        assert np.denied(80, "sctp") == pairs(["x", "z"], "x") | pairs(EVERYONE, "y/b") | pairs("z/c", EVERYONE)
