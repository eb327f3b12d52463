"""What clients read first: ``/version``, discovery (aggregated ``apidiscovery.k8s.io/v2`` and the legacy
``APIVersions``/``APIGroupList``/``APIResourceList`` forms) and a minimal OpenAPI v3."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from podnet.api.resources import GROUPS, RESOURCES, Resource, of_group_version

# The reported version picks the kubectl a gcloud-SDK dispatcher runs: keep it on 1.32 (tested).
VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0+podnet", "gitCommit": "podnet",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0",
           "compiler": "gc", "platform": "linux/amd64"}
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"


def version() -> dict[str, Any]:
    return dict(VERSION)


def wants_aggregated(accept: str) -> str | None:
    """The discovery version asked for (``v2`` or ``v2beta1``), or None for the legacy form."""
    for part in accept.split(","):
        if "as=APIGroupDiscoveryList" in part and "g=apidiscovery.k8s.io" in part:
            return "v2beta1" if "v=v2beta1" in part else "v2"
    return None


def _resource_entry(r: Resource) -> dict[str, Any]:
    gvk = {"group": r.group, "version": r.version, "kind": r.kind}
    e: dict[str, Any] = {"resource": r.plural, "responseKind": gvk,
                         "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular,
                         "verbs": r.verbs}
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if r.categories:
        e["categories"] = list(r.categories)
    subs = []
    for s in r.subresources:
        kind = {"log": ("", "v1", "Pod"), "exec": ("", "v1", "PodExecOptions"),
                "scale": ("autoscaling", "v1", "Scale")}.get(s, (r.group, r.version, r.kind))
        subs.append({"subresource": s, "responseKind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
                     "verbs": ["get"] if s == "log" else ["create", "get"] if s == "exec" else ["get", "patch",
                                                                                                 "update"]})
    if subs:
        e["subresources"] = subs
    return e


def aggregated(legacy: bool, v: str = "v2") -> dict[str, Any]:
    items = []
    for group, versions in GROUPS.items():
        if (group == "") != legacy:
            continue
        item: dict[str, Any] = {"metadata": {"name": group} if group else {},
                                "versions": [{"version": ver, "freshness": "Current",
                                              "resources": [_resource_entry(r) for r in of_group_version(group, ver)]}
                                             for ver in versions]}
        items.append(item)
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{v}", "metadata": {},
            "items": items}


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def api_group(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUPS[group]]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
            "preferredVersion": versions[0]}


def api_groups() -> dict[str, Any]:
    groups = [api_group(g) for g in GROUPS if g]
    for g in groups:
        g.pop("kind")
        g.pop("apiVersion")
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    rs = of_group_version(group, version)
    if not rs:
        return None
    out = []
    for r in rs:
        e: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                             "kind": r.kind, "verbs": r.verbs}
        if r.short_names:
            e["shortNames"] = list(r.short_names)
        if r.categories:
            e["categories"] = list(r.categories)
        out.append(e)
        for s in r.subresources:
            kind = {"log": "Pod", "exec": "PodExecOptions", "scale": "Scale"}.get(s, r.kind)
            out.append({"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced, "kind": kind,
                        "verbs": ["get"] if s == "log" else ["create", "get"] if s == "exec" else
                        ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": out}


# ------------------------------------------------------------------------------------------- OpenAPI v3
def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_doc(group: str, version: str) -> dict[str, Any] | None:
    """A minimal OpenAPI v3 document for one group-version: a PATCH operation per kind, carrying the GVK and
    the ``fieldValidation`` parameter (so kubectl lets the server validate fields), and empty schemas
    (``kubectl explain`` then says the kind is not in the schema)."""
    rs = of_group_version(group, version)
    if not rs:
        return None
    prefix = "/" + _gv_path(group, version)
    paths = {}
    for r in rs:
        item = (f"{prefix}/namespaces/{{namespace}}/{r.plural}/{{name}}" if r.namespaced
                else f"{prefix}/{r.plural}/{{name}}")
        paths[item] = {"patch": {
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
            "parameters": [{"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                           for p in ("fieldValidation", "dryRun")],
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (podnet lab)", "version": VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": {}}}


def _hash(doc: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def openapi_index() -> dict[str, Any]:
    paths = {}
    for group, versions in GROUPS.items():
        for v in versions:
            doc = openapi_doc(group, v)
            assert doc is not None
            p = _gv_path(group, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={_hash(doc)}"}
    return {"paths": paths}


def all_resources() -> tuple[Resource, ...]:
    return RESOURCES
