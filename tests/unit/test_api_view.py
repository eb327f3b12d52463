"""The served view of a lab (pure: the seed lab resolved without a kernel), and its round trip for writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from podnet.api import patch, schema, view
from podnet.api.resources import BY_KIND
from podnet.model.lab import resolve
from podnet.model.manifest import parse_docs
from podnet.model.services import resolve_services
from podnet.model.source import load_files, plain

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed-vxlan.yaml"


@pytest.fixture(scope="module")
def served():
    docs = load_files([str(SEED)])
    lab = resolve(parse_docs(docs))
    declared = {}
    for d in docs:
        kind, meta = d.body["kind"], d.body.get("metadata") or {}
        ns = "" if kind in ("Cluster", "Namespace") else meta.get("namespace", "default")
        declared[(kind, ns, meta["name"])] = plain(d.body)
    states = {p.key: {c.name: True for c in p.pod.spec.containers} for p in lab.pods}
    return view.build(lab, resolve_services(lab), states, declared), declared


def _get(objs, kind, ns, name):
    return objs[view.key(BY_KIND[kind], ns, name)]


def test_seed_objects_are_served_as_a_real_cluster_has_them(served):
    objs, _ = served
    pod = _get(objs, "Pod", "default", "pod-a")
    assert pod["status"]["podIP"] == "10.244.1.5" and pod["spec"]["nodeName"] == "node1"
    assert pod["spec"]["containers"][0]["image"] == "curlimages/curl"     # as written
    assert pod["status"]["containerStatuses"][0]["image"] == "curlimages/curl"
    ep = _get(objs, "Endpoints", "default", "my-service")
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.2.8", "10.244.2.9"]
    svc = _get(objs, "Service", "default", "my-service")
    assert svc["spec"]["clusterIP"] == "10.96.45.67" and svc["spec"]["ports"][0]["protocol"] == "TCP"
    proxies = [o for o in objs.values() if o["kind"] == "Pod" and
               (o["metadata"].get("labels") or {}).get("k8s-app") == "kube-proxy"]
    assert {p["spec"]["nodeName"] for p in proxies} == {"node1", "node2"}
    assert {o["metadata"]["name"] for o in objs.values() if o["kind"] == "Namespace"} >= {"default", "kube-system"}


def test_served_objects_have_only_fields_kubernetes_knows(served):
    objs, _ = served
    for k, obj in objs.items():
        res = BY_KIND[obj["kind"]]
        assert schema.unknown_fields(obj, schema.definition(res.schema)) == [], k


def test_required_fields_for_the_python_client(served):
    objs, _ = served
    node = _get(objs, "Node", "", "node1")
    assert set(node["status"]["nodeInfo"]) >= {"machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                                               "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion",
                                               "operatingSystem", "architecture"}
    for obj in objs.values():
        if obj["kind"] == "Pod":
            for cs in obj["status"]["containerStatuses"]:
                assert {"name", "ready", "restartCount", "image", "imageID"} <= set(cs)
        if obj["kind"] == "EndpointSlice":
            assert obj["addressType"] == "IPv4" and "endpoints" in obj
            assert obj["metadata"]["labels"]["kubernetes.io/service-name"]


def test_unfill_recovers_what_was_declared(served):
    objs, declared = served
    for kind, ns, name in [("Pod", "default", "pod-b"), ("Service", "default", "my-service")]:
        obj = _get(objs, kind, ns, name)
        back = view.unfill(obj, obj, declared[(kind, ns, name)])
        back.pop("status", None)
        assert back == declared[(kind, ns, name)]


def test_a_patched_served_object_maps_back_to_the_declaration_plus_the_change(served):
    objs, declared = served
    svc = _get(objs, "Service", "default", "my-service")
    patched = patch.strategic(svc, {"metadata": {"labels": {"tier": "be"}},
                                    "spec": {"ports": [{"port": 8080, "targetPort": 9090}]}},
                              schema.definition("io.k8s.api.core.v1.Service"))
    back = view.unfill(patched, svc, declared[("Service", "default", "my-service")])
    back.pop("status", None)
    want = declared[("Service", "default", "my-service")]
    assert back["metadata"]["labels"] == {"tier": "be"}
    assert back["spec"]["ports"] == [{**want["spec"]["ports"][0], "targetPort": 9090}]
    assert "clusterIPs" not in back["spec"] and "ipFamilies" not in back["spec"]


def test_fill_keeps_what_was_written():
    assert view.fill({"a": 1, "l": [{"x": 1}]}, {"a": 2, "b": 3, "l": [{"x": 2, "y": 3}]}) == {
        "a": 1, "b": 3, "l": [{"x": 1, "y": 3}]}
