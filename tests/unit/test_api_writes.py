"""What a write stores: field validation (Strict / Warn / Ignore), server fields dropped, pod immutability."""

from __future__ import annotations

import pytest

from podnet.api.resources import BY_KIND
from podnet.api.status import ApiError
from podnet.api.writes import Writer, _check_pod_update

SVC = BY_KIND["Service"]
POD = BY_KIND["Pod"]


def writer() -> Writer:
    return Writer("unit", store=lambda: None)   # _prepare needs no store


def body(**spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "uid": "u", "resourceVersion": "7",
                                                                "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"ports": [{"port": 80}], **spec}, "status": {"loadBalancer": {}}}


def test_strict_rejects_unknown_fields_as_kube_apiserver_does():
    with pytest.raises(ApiError) as e:
        writer()._prepare(SVC, "default", body(foo=1, bar=2), "Strict", [])
    assert e.value.code == 400
    assert e.value.message == ('Service in version "v1" cannot be handled as a Service: strict decoding error: '
                               'unknown field "spec.foo", unknown field "spec.bar"')


def test_warn_and_ignore_drop_unknown_fields():
    warnings: list[str] = []
    out = writer()._prepare(SVC, "default", body(foo=1), "Warn", warnings)
    assert warnings == ['unknown field "spec.foo"'] and "foo" not in out["spec"]
    warnings = []
    out = writer()._prepare(SVC, "default", body(foo=1), "Ignore", warnings)
    assert warnings == [] and "foo" not in out["spec"]


def test_server_fields_are_not_stored_and_the_namespace_must_match():
    out = writer()._prepare(POD, "team", {"metadata": {"name": "p", "uid": "x", "managedFields": []},
                                          "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}},
                            "Strict", [])
    assert out == {"metadata": {"name": "p", "namespace": "team"}, "spec": {"containers": [{"name": "c"}]},
                   "apiVersion": "v1", "kind": "Pod"}
    with pytest.raises(ApiError) as e:
        writer()._prepare(POD, "team", {"metadata": {"name": "p", "namespace": "other"}}, "Strict", [])
    assert e.value.code == 400 and "does not match the namespace" in e.value.message
    with pytest.raises(ApiError) as e:
        writer()._prepare(POD, "team", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "p"}}, "Strict",
                          [])
    assert e.value.code == 400


def test_pod_spec_is_immutable_but_the_image_may_change():
    old = {"spec": {"containers": [{"name": "c", "image": "a", "command": ["sleep", "1"]}]}}
    _check_pod_update(POD, "p", old, {"spec": {"containers": [{"name": "c", "image": "b", "command": ["sleep", "1"]}]}})
    with pytest.raises(ApiError) as e:
        _check_pod_update(POD, "p", old, {"spec": {"containers": [{"name": "c", "image": "a",
                                                                   "command": ["sleep", "2"]}]}})
    assert e.value.code == 422 and e.value.status()["details"]["causes"][0]["field"] == "spec"
    assert e.value.message.startswith('Pod "p" is invalid: spec: Forbidden: pod updates may not change fields other '
                                      "than `spec.containers[*].image`")
