"""NetworkPolicy (networking.k8s.io/v1): parsed and kept; enforcement lives in compile/."""

from __future__ import annotations

from dataclasses import dataclass, field

from podnet.model.fields import Context, Fields
from podnet.model.meta import ObjectMeta, parse_meta
from podnet.model.source import plain


@dataclass
class NetworkPolicy:
    meta: ObjectMeta
    spec: dict = field(default_factory=dict)
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"


def parse_networkpolicy(ctx: Context, body: Fields) -> NetworkPolicy:
    body.check({"apiVersion", "kind", "metadata", "spec"}, {"status"})
    meta = parse_meta(ctx, body, namespaced=True)
    spec = body.map("spec")
    spec.check({"podSelector", "policyTypes", "ingress", "egress"})
    return NetworkPolicy(meta=meta, spec=plain(spec.data), source=ctx.where() or "")

