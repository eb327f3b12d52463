"""Discovery and OpenAPI documents as kubectl and the Python client read them."""

from __future__ import annotations

from podnet.api import discovery
from podnet.api.resources import BY_KIND
from podnet.api.status import invalid, not_found

KUBECTL_ACCEPT = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;"
                  "g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")


def test_aggregated_discovery_lists_every_resource_with_short_names():
    assert discovery.wants_aggregated(KUBECTL_ACCEPT) == "v2"
    assert discovery.wants_aggregated("application/json") is None
    core = discovery.aggregated(legacy=True)
    assert core["items"][0]["metadata"] == {}
    res = {r["resource"]: r for r in core["items"][0]["versions"][0]["resources"]}
    assert res["pods"]["shortNames"] == ["po"] and res["pods"]["categories"] == ["all"]
    assert {s["subresource"] for s in res["pods"]["subresources"]} == {"exec", "log", "status"}
    assert res["nodes"]["scope"] == "Cluster" and "create" not in res["nodes"]["verbs"]
    groups = {i["metadata"]["name"] for i in discovery.aggregated(legacy=False)["items"]}
    assert groups == {"apps", "discovery.k8s.io", "networking.k8s.io"}


def test_legacy_discovery():
    assert discovery.api_versions()["versions"] == ["v1"]
    names = [r["name"] for r in discovery.resource_list("networking.k8s.io", "v1")["resources"]]
    assert names == ["networkpolicies", "networkpolicies/status"]
    assert discovery.resource_list("nope", "v1") is None
    assert {g["name"] for g in discovery.api_groups()["groups"]} == {"apps", "discovery.k8s.io", "networking.k8s.io"}


def test_openapi_v3_has_a_patch_op_per_kind_with_field_validation():
    index = discovery.openapi_index()
    assert set(index["paths"]) == {"api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1", "apis/networking.k8s.io/v1"}
    assert "?hash=" in index["paths"]["api/v1"]["serverRelativeURL"]
    doc = discovery.openapi_doc("", "v1")
    op = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert any(p["name"] == "fieldValidation" for p in op["parameters"])
    assert doc["components"] == {"schemas": {}}
    assert discovery.version()["minor"] == "32"


def test_status_messages_match_kube_apiserver():
    e = not_found(BY_KIND["NetworkPolicy"], "nope")
    assert e.message == 'networkpolicies.networking.k8s.io "nope" not found'
    assert e.status()["details"] == {"name": "nope", "group": "networking.k8s.io", "kind": "networkpolicies"}
    e = invalid(BY_KIND["Pod"], "Web_1", [("FieldValueInvalid", "metadata.name", "Invalid value: \"Web_1\"")])
    assert e.code == 422 and e.message == 'Pod "Web_1" is invalid: metadata.name: Invalid value: "Web_1"'
    assert e.status()["apiVersion"] == "v1" and e.status()["reason"] == "Invalid"
