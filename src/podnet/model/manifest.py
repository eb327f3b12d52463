"""Turn YAML documents into typed objects: one registry of the kinds podnet understands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import PodnetError
from podnet.model.cluster import API_VERSION, Cluster, parse_cluster
from podnet.model.fields import Context, Fields
from podnet.model.meta import display
from podnet.model.netpol import NetworkPolicy, parse_networkpolicy
from podnet.model.service import EndpointSlice, Service, parse_endpointslice, parse_service
from podnet.model.source import Doc
from podnet.model.workloads import Deployment, Namespace, Pod, parse_deployment, parse_namespace, parse_pod

# (apiVersion, kind) -> (parser, attribute of Manifests)
KINDS: dict[tuple[str, str], tuple[Callable[[Context, Fields], Any], str]] = {
    (API_VERSION, "Cluster"): (parse_cluster, "clusters"),
    ("v1", "Namespace"): (parse_namespace, "namespaces"),
    ("v1", "Pod"): (parse_pod, "pods"),
    ("apps/v1", "Deployment"): (parse_deployment, "deployments"),
    ("v1", "Service"): (parse_service, "services"),
    ("discovery.k8s.io/v1", "EndpointSlice"): (parse_endpointslice, "endpointslices"),
    ("networking.k8s.io/v1", "NetworkPolicy"): (parse_networkpolicy, "networkpolicies"),
}
KNOWN_ELSEWHERE = {"ReplicaSet", "DaemonSet", "StatefulSet", "Job", "CronJob", "ConfigMap", "Secret",
                   "Ingress", "ServiceAccount", "Endpoints", "Role", "RoleBinding", "ClusterRole",
                   "ClusterRoleBinding", "PersistentVolumeClaim", "Node"}


@dataclass
class Manifests:
    clusters: list[Cluster] = field(default_factory=list)
    namespaces: list[Namespace] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    endpointslices: list[EndpointSlice] = field(default_factory=list)
    networkpolicies: list[NetworkPolicy] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def cluster(self) -> Cluster | None:
        return self.clusters[0] if self.clusters else None


def parse_docs(docs: list[Doc]) -> Manifests:
    out = Manifests()
    seen: dict[tuple[str, str, str], str] = {}
    for doc in docs:
        body = doc.body
        kind = body.get("kind")
        api = body.get("apiVersion")
        if kind == "List" and api == "v1":
            raise PodnetError("kind List is not supported: write one document per object", where=doc.where())
        if not isinstance(kind, str) or not kind:
            raise PodnetError("missing field 'kind'", where=doc.where(), obj=display("object", body))
        if not isinstance(api, str) or not api:
            raise PodnetError("missing field 'apiVersion'", where=doc.where(), obj=display(kind, body))
        entry = KINDS.get((api, kind))
        if entry is None:
            known = [a for (a, k) in KINDS if k == kind]
            if known:
                msg = f"apiVersion {api!r} is not served for {kind} (use {known[0]})"
                raise PodnetError(msg, where=doc.where(), obj=display(kind, body), field="apiVersion")
            hint = " (podnet does not run it)" if kind in KNOWN_ELSEWHERE else ""
            raise PodnetError(f"unknown kind {kind!r}{hint}", where=doc.where(), obj=display(kind, body),
                              field="kind")
        parser, attr = entry
        ctx = Context(doc=doc, obj=display(kind, body))
        obj = parser(ctx, Fields(ctx, body))
        out.warnings.extend(ctx.warnings)
        meta = getattr(obj, "meta", None)
        name = meta.name if meta else obj.name
        ns = meta.namespace if meta else ""
        ident = (kind, ns, name)
        if ident in seen:
            raise PodnetError(f"duplicate {kind} {ns + '/' if ns else ''}{name} (first defined at {seen[ident]})",
                              where=doc.where(), obj=display(kind, body), field="metadata.name")
        seen[ident] = doc.where()
        getattr(out, attr).append(obj)
    if len(out.clusters) > 1:
        raise PodnetError(f"more than one Cluster document (first at {out.clusters[0].source})",
                          where=out.clusters[1].source)
    return out
