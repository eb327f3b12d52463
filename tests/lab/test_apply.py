"""`podnet apply -f` / `delete -f` on a running lab: kubectl semantics, converged dataplane, rollback."""

from __future__ import annotations

import pytest

from tests.lab.conftest import run, running_lab, sh

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: team}}
spec:
  replicas: {n}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}
"""
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team, labels: {owner: me}}\n"
POD_A = """apiVersion: v1
kind: Pod
metadata:
  name: pod-a
  labels: {{{labels}}}
  annotations: {{podnet.dev/ip: 10.244.1.5}}
spec:
  nodeName: node1
  containers: [{{name: client, image: curlimages/curl, command: [sleep, {arg}]}}]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("apply"), "seed-vxlan.yaml") as lab:
        yield lab


def apply(lab, tmp_path, text: str, check: bool = True, verb: str = "apply"):
    f = tmp_path / f"{verb}.yaml"
    f.write_text(text)
    return run(verb, "-f", str(f), "--lab", lab.name, check=check)


def pids(lab, pod: str, ns: str = "default") -> list[str]:
    return sh("ip", "netns", "pids", lab.ns(f"{ns}-{pod}")).stdout.split()


def pods_of(lab, ns: str) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in lab.get_json("pods", "-n", ns)["items"]}


def test_labels_change_in_place_spec_is_immutable(lab, tmp_path):
    before = pids(lab, "pod-a")
    out = apply(lab, tmp_path, POD_A.format(labels="app: client, role: tester", arg="infinity"))
    assert out.stdout.strip() == "pod/pod-a configured"
    assert pids(lab, "pod-a") == before, "the pod was recreated"
    assert pods_of(lab, "default")["pod-a"]["metadata"]["labels"] == {"app": "client", "role": "tester"}
    # labels are replaced whole, as kubectl apply does for the labels it manages
    apply(lab, tmp_path, POD_A.format(labels="role: tester", arg="infinity"))
    assert pods_of(lab, "default")["pod-a"]["metadata"]["labels"] == {"role": "tester"}
    bad = apply(lab, tmp_path, POD_A.format(labels="role: tester", arg="1000"), check=False)
    assert bad.returncode == 1 and "Pod default/pod-a: spec: Forbidden" in bad.stderr
    assert pids(lab, "pod-a") == before


def test_deployment_scale_and_namespace_cascade(lab, tmp_path):
    out = apply(lab, tmp_path, NAMESPACE + "---\n" + DEPLOY.format(n=3))
    assert out.stdout.split("\n")[:2] == ["namespace/team created", "deployment/web created"]
    web = pods_of(lab, "team")
    assert len(web) == 3 and all(p["status"]["containerStatuses"][0]["ready"] for p in web.values())
    ip = next(iter(web.values()))["status"]["podIP"]
    assert lab.exec("pod-a", "curl", "-s", "--max-time", "3", f"{ip}:8080").stdout.startswith("web-")
    assert apply(lab, tmp_path, DEPLOY.format(n=1)).stdout.strip() == "deployment/web configured"
    left = pods_of(lab, "team")
    assert len(left) == 1 and set(left) <= set(web)
    gone = [lab.ns(f"team-{name}") for name in web if name not in left]
    assert not set(gone) & set(lab.namespaces())
    assert lab.get_json("namespaces", "team")["metadata"]["labels"]["owner"] == "me"
    out = apply(lab, tmp_path, NAMESPACE, verb="delete")
    assert out.stdout.strip() == "namespace/team deleted"
    assert not [n for n in lab.namespaces() if n.startswith(lab.ns("team-"))]
    assert run("get", "pods", "-n", "team", "--lab", lab.name).stdout.startswith("No resources found")


def test_bad_input_names_the_file_and_changes_nothing(lab, tmp_path):
    before = sorted(lab.namespaces())
    bad = apply(lab, tmp_path, "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 70000}]\n",
                check=False)
    assert bad.returncode == 1 and "apply.yaml:" in bad.stderr and "Service default/s" in bad.stderr
    assert "ports[0].port" in bad.stderr
    # a pod whose two containers want the same port fails to start: its namespace is rolled back
    clash = ("apiVersion: v1\nkind: Pod\nmetadata: {name: clash}\nspec:\n  containers:\n"
             "  - {name: a, ports: [{containerPort: 80}]}\n  - {name: b, ports: [{containerPort: 80}]}\n")
    bad = apply(lab, tmp_path, clash, check=False)
    assert bad.returncode == 1
    assert sorted(lab.namespaces()) == before
    assert run("get", "pods", "clash", "--lab", lab.name, check=False).returncode == 1
