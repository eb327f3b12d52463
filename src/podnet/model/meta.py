"""ObjectMeta, shared by every Kubernetes object podnet reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from podnet.model.fields import Context, Fields, check_name

# metadata fields podnet honours, and those it accepts without effect
META_KNOWN = {"name", "namespace", "labels", "annotations"}
META_IGNORED = {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                "ownerReferences", "finalizers", "generateName", "deletionTimestamp",
                "deletionGracePeriodSeconds", "selfLink"}


@dataclass
class ObjectMeta:
    name: str
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d: dict = {"name": self.name}
        if self.namespace:
            d["namespace"] = self.namespace
        if self.labels:
            d["labels"] = dict(self.labels)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


def parse_meta(ctx: Context, body: Fields, *, namespaced: bool, name_rule: str = "subdomain") -> ObjectMeta:
    m = body.map("metadata")
    m.check(META_KNOWN, META_IGNORED)
    name = m.str("name", required=True)
    assert name is not None
    check_name(ctx, "metadata.name", name, name_rule)
    ns = ""
    if namespaced:
        ns = m.str("namespace", "default") or "default"
        check_name(ctx, "metadata.namespace", ns, "label")
    elif m.has("namespace"):
        raise ctx.error("metadata.namespace", "this kind is not namespaced")
    annotations = {}
    for k, v in m.map("annotations").data.items():
        if not isinstance(v, str):
            raise ctx.error(f"metadata.annotations.{k}", "annotation values must be strings")
        annotations[k] = v
    return ObjectMeta(name=name, namespace=ns, labels=m.labels("labels"), annotations=annotations)


def display(kind: str, body: dict) -> str:
    """``Kind ns/name`` for error messages, robust to malformed metadata."""
    meta = body.get("metadata") if isinstance(body, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    if not isinstance(name, str):
        return kind
    if kind in CLUSTER_SCOPED:
        return f"{kind} {name}"
    return f"{kind} {ns if isinstance(ns, str) and ns else 'default'}/{name}"


CLUSTER_SCOPED = ("Cluster", "Namespace", "Node", "object")
