"""The three patch types, with the directives kubectl's client-side apply sends."""

from __future__ import annotations

import json

import pytest

from podnet.api import patch, schema
from podnet.api.status import ApiError

POD = schema.definition("io.k8s.api.core.v1.Pod")
SVC = schema.definition("io.k8s.api.core.v1.Service")


def test_kubectl_apply_patch_of_a_changed_pod():
    live = {"metadata": {"name": "web-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx",
                                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "1"}],
                                     "ports": [{"containerPort": 80}]}]}}
    # what kubectl apply sent (observed), verbatim
    sent = json.loads('{"metadata":{"labels":{"tier":"be"}},"spec":{"$setElementOrder/containers":[{"name":"app"}],'
                      '"containers":[{"$setElementOrder/env":[{"name":"B"}],"$setElementOrder/ports":[{"containerPort":'
                      '80},{"containerPort":443}],"env":[{"name":"B","value":"2"},{"$patch":"delete","name":"A"}],'
                      '"name":"app","ports":[{"containerPort":443}]}]}}')
    out = patch.apply(patch.STRATEGIC, live, sent, POD)
    c = out["spec"]["containers"][0]
    assert out["metadata"]["labels"] == {"app": "web", "tier": "be"}
    assert c["env"] == [{"name": "B", "value": "2"}]
    assert c["ports"] == [{"containerPort": 80}, {"containerPort": 443}]
    assert c["image"] == "nginx"
    assert live["spec"]["containers"][0]["env"][0]["name"] == "A"   # the original is not modified


def test_service_ports_merge_by_port_and_delete():
    live = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 81}]}}
    out = patch.strategic(live, {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"$patch": "delete",
                                                                                      "port": 81}]}}, SVC)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}]


def test_atomic_lists_replace_and_null_deletes():
    netpol = schema.definition("io.k8s.api.networking.v1.NetworkPolicy")
    live = {"spec": {"ingress": [{"from": [{"podSelector": {}}]}], "policyTypes": ["Ingress"]}}
    out = patch.strategic(live, {"spec": {"ingress": [{"ports": [{"port": 80}]}], "policyTypes": None}}, netpol)
    assert out["spec"] == {"ingress": [{"ports": [{"port": 80}]}]}


def test_replace_directives_and_primitive_merge():
    live = {"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}}, "spec": {"containers": [
        {"name": "a"}, {"name": "b"}]}}
    out = patch.strategic(live, {"metadata": {"finalizers": ["b"], "labels": {"$patch": "replace", "z": "3"}},
                                 "spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}, POD)
    assert out["metadata"] == {"finalizers": ["a", "b"], "labels": {"z": "3"}}
    assert out["spec"]["containers"] == [{"name": "c"}]
    out = patch.strategic(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, POD)
    assert out["metadata"]["finalizers"] == []


def test_retain_keys():
    dep = schema.definition("io.k8s.api.apps.v1.Deployment")
    live = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = patch.strategic(live, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, dep)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_merge_and_json_patch():
    live = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [{"port": 1}, {"port": 2}]}}
    assert patch.apply(patch.MERGE_PATCH, live, {"metadata": {"labels": {"a": None, "c": "3"}},
                                                 "spec": {"ports": [{"port": 9}]}}, SVC) == {
        "metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"ports": [{"port": 9}]}}
    out = patch.apply(patch.JSON_PATCH, live, [{"op": "replace", "path": "/spec/ports/1/port", "value": 3}], SVC)
    assert out["spec"]["ports"][1] == {"port": 3}


def test_bad_patches_get_the_api_servers_codes():
    with pytest.raises(ApiError) as e:
        patch.apply(patch.JSON_PATCH, {}, [{"op": "remove", "path": "/nope"}], None)
    assert e.value.code == 422
    with pytest.raises(ApiError) as e:
        patch.apply("text/plain", {}, {}, None)
    assert e.value.code == 415 and e.value.reason == "UnsupportedMediaType"
    with pytest.raises(ApiError) as e:
        patch.apply(patch.MERGE_PATCH, {}, [1], None)
    assert e.value.code == 400
