"""The resources the lab's API serves: group, version, kind, names, scope, verbs."""

from __future__ import annotations

from dataclasses import dataclass, field

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    writable: bool = True            # False: derived by the lab (nodes, endpoints, events)
    subresources: tuple[str, ...] = ()
    schema: str = ""                 # definition name in the Kubernetes JSON schema
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def verbs(self) -> list[str]:
        return [*READ, *WRITE] if self.writable else list(READ)

    @property
    def qualified(self) -> str:
        """``pods`` or ``networkpolicies.networking.k8s.io`` (how errors name it)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",), (), True, ("status",),
             "io.k8s.api.core.v1.Namespace"),
    Resource("", "v1", "Node", "nodes", "node", False, ("no",), (), False, ("status",),
             "io.k8s.api.core.v1.Node"),
    Resource("", "v1", "Pod", "pods", "pod", True, ("po",), ("all",), True, ("exec", "log", "status"),
             "io.k8s.api.core.v1.Pod"),
    Resource("", "v1", "Service", "services", "service", True, ("svc",), ("all",), True, ("status",),
             "io.k8s.api.core.v1.Service"),
    Resource("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",), (), False, (),
             "io.k8s.api.core.v1.Endpoints"),
    Resource("", "v1", "Event", "events", "event", True, ("ev",), (), False, (), "io.k8s.api.core.v1.Event"),
    Resource("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), ("all",), True,
             ("scale", "status"), "io.k8s.api.apps.v1.Deployment"),
    Resource("apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, ("ds",), ("all",), False, ("status",),
             "io.k8s.api.apps.v1.DaemonSet"),
    Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True, (), (), True,
             (), "io.k8s.api.discovery.v1.EndpointSlice"),
    Resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", True, ("netpol",),
             (), True, ("status",), "io.k8s.api.networking.v1.NetworkPolicy"),
)
BY_PATH: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}
GROUPS: dict[str, list[str]] = {}
for _r in RESOURCES:
    GROUPS.setdefault(_r.group, [])
    if _r.version not in GROUPS[_r.group]:
        GROUPS[_r.group].append(_r.version)


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return BY_PATH.get((group, version, plural))


def of_group_version(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]
