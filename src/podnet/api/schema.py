"""The Kubernetes v1.32 object schemas (from the ``kubernetes-validate`` package): which fields exist, for
strict field validation, and each list's patch strategy and merge key, for strategic merge patches.

Only the schema data is used (``_definitions.json``, the OpenAPI definitions of kube-apiserver v1.32
converted to JSON Schema); validation of values is the lab model's job (``podnet.model``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_VERSION = "v1.32.0"
Node = dict[str, Any]


@cache
def definitions() -> dict[str, Node]:
    path = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"{SCHEMA_VERSION}-local"
    return json.loads((path / "_definitions.json").read_text())["$defs"]


def resolve(node: Node | None) -> Node:
    """Follow ``$ref`` (and a single-entry ``allOf``) to the schema node."""
    seen = 0
    while node and seen < 20:
        seen += 1
        if "$ref" in node:
            node = definitions().get(node["$ref"].rsplit("/", 1)[-1], {})
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = node["allOf"][0]
        else:
            break
    return node or {}


def definition(name: str) -> Node:
    return definitions().get(name, {})


def child(node: Node | None, key: str) -> Node | None:
    """The schema of field ``key`` of an object node; None when the field is unknown; {} when anything goes."""
    node = resolve(node)
    props = node.get("properties")
    if props is not None and key in props:
        return props[key]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    if props is None or extra is True or node.get("x-kubernetes-preserve-unknown-fields"):
        return {}
    return None


def items(node: Node | None) -> Node:
    node = resolve(node)
    it = node.get("items")
    return it if isinstance(it, dict) else {}


def list_strategy(node: Node | None) -> tuple[str, str]:
    """(patch strategy, merge key) of a list field's schema node: ('merge', 'name'), ('', '') for atomic."""
    if not node:
        return "", ""
    strategy = node.get("x-kubernetes-patch-strategy", "")
    return ("merge" if "merge" in strategy.split(",") else ""), node.get("x-kubernetes-patch-merge-key", "")


def retain_keys(node: Node | None) -> bool:
    return bool(node) and "retainKeys" in str(node.get("x-kubernetes-patch-strategy", ""))


def _path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def unknown_fields(obj: Any, node: Node | None, path: str = "") -> list[str]:
    """Dotted paths (``spec.containers[0].foo``) of the fields ``obj`` has that the schema does not."""
    out: list[str] = []
    node = resolve(node)
    if isinstance(obj, dict):
        if not node.get("properties") and not isinstance(node.get("additionalProperties"), dict):
            return out
        for k, v in obj.items():
            sub = child(node, k)
            if sub is None:
                out.append(_path(path, k))
            else:
                out.extend(unknown_fields(v, sub, _path(path, k)))
    elif isinstance(obj, list):
        it = items(node)
        for i, v in enumerate(obj):
            out.extend(unknown_fields(v, it, f"{path}[{i}]"))
    return out


def prune(obj: Any, node: Node | None) -> Any:
    """``obj`` without the fields the schema does not know (what ``fieldValidation=Ignore`` stores)."""
    node = resolve(node)
    if isinstance(obj, dict):
        if not node.get("properties") and not isinstance(node.get("additionalProperties"), dict):
            return obj
        return {k: prune(v, child(node, k)) for k, v in obj.items() if child(node, k) is not None}
    if isinstance(obj, list):
        it = items(node)
        return [prune(v, it) for v in obj]
    return obj
