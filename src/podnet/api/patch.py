"""The three patch types kube-apiserver accepts: JSON patch (RFC 6902, by ``jsonpatch``), JSON merge patch
(RFC 7386) and strategic merge patch (lists merged by the schema's merge keys, with the ``$patch``,
``$setElementOrder``, ``$retainKeys`` and ``$deleteFromPrimitiveList`` directives kubectl sends)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from podnet.api import schema
from podnet.api.status import ApiError, bad_request

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
_DELETE = object()


def apply(content_type: str, original: dict[str, Any], patch: Any, node: schema.Node | None) -> dict[str, Any]:
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            out = jsonpatch.apply_patch(original, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as e:
            raise ApiError(422, f"the server rejected our request due to an error in our request: {e}",
                           "Invalid") from None
        return out
    if not isinstance(patch, dict):
        raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
    if ctype == MERGE_PATCH:
        return merge_patch(original, patch)
    if ctype == STRATEGIC:
        out = strategic(original, patch, node)
        return out if isinstance(out, dict) else {}
    raise ApiError(415, f"the body of the request was in an unknown format - accepted media types include: "
                   f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC}", "UnsupportedMediaType")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic(original: Any, patch: Any, node: schema.Node | None) -> Any:
    """Strategic merge of ``patch`` into ``original`` following ``node`` (a schema node)."""
    if not isinstance(patch, dict) or not isinstance(original, dict):
        return _strip(copy.deepcopy(patch))
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return _DELETE
    out = copy.deepcopy(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(("$setElementOrder/", "$deleteFromPrimitiveList/")):
            continue
        sub = schema.child(node, key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            merged = strategic(out[key], value, sub)
            if merged is _DELETE:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _merge_list(out.get(key), value, sub)
        else:
            merged = strategic(None, value, sub)
            if merged is _DELETE:
                out.pop(key, None)
            else:
                out[key] = merged
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(out.get(name), list):
                out[name] = [x for x in out[name] if x not in value]
        elif key.startswith("$setElementOrder/"):
            name = key.split("/", 1)[1]
            if isinstance(out.get(name), list):
                out[name] = _order(out[name], value, schema.list_strategy(schema.child(node, name))[1])
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(original: Any, patch: list[Any], node: schema.Node | None) -> list[Any]:
    strategy, key = schema.list_strategy(node)
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [_strip(x) for x in patch if not (isinstance(x, dict) and x.get("$patch") == "replace")]
    if strategy != "merge" or not isinstance(original, list):
        return [_strip(x) for x in patch if not (isinstance(x, dict) and x.get("$patch") == "delete")]
    out = copy.deepcopy(original)
    if not key:  # a list of primitives merged as a set (finalizers)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    item_node = schema.items(node)
    for item in patch:
        if not isinstance(item, dict):
            continue
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip(item))
        else:
            out[idx] = strategic(out[idx], item, item_node)
    return out


def _order(items: list[Any], order: list[Any], key: str) -> list[Any]:
    def ident(x: Any) -> Any:
        return x.get(key) if key and isinstance(x, dict) else x

    rank = {repr(ident(o)): i for i, o in enumerate(order)}
    listed = sorted((x for x in items if repr(ident(x)) in rank), key=lambda x: rank[repr(ident(x))])
    rest = [x for x in items if repr(ident(x)) not in rank]
    return listed + rest


def _strip(v: Any) -> Any:
    """Drop patch directives from a value that is inserted as is."""
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v
