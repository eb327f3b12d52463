"""create / update / patch / delete through the lab's own write path (``dataplane.lab.apply_docs`` and
``delete_docs``, what ``podnet apply -f`` and ``delete -f`` use): a change made with kubectl reaches the
dataplane exactly as one made with podnet. The store keeps each object as the client wrote it (without
the fields the server fills in); the served object is rebuilt from it by ``view``.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Callable
from typing import Any

from podnet.api import patch as patches
from podnet.api import schema, view
from podnet.api.resources import BY_KIND, Resource
from podnet.api.selectors import selectable
from podnet.api.status import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    method_not_allowed,
    namespace_not_found,
    not_found,
    success,
)
from podnet.dataplane import lab as labrt
from podnet.errors import PodnetError
from podnet.model.lab import SYSTEM_NAMESPACES
from podnet.model.manifest import parse_docs
from podnet.model.source import Doc, rebuild
from podnet.store.kv import Store

Obj = dict[str, Any]
POD_MUTABLE_MSG = ("Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                   "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions "
                   "to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it "
                   "was previously negative)")


class Writer:
    """Serialises the lab's writes (one at a time, as ``podnet apply`` does) and keeps the view current."""

    def __init__(self, lab: str, store: Callable[[], Store]) -> None:
        self.lab = lab
        self.store = store
        self.lock = threading.RLock()

    # -- helpers ------------------------------------------------------------------------------------
    def current(self, res: Resource, ns: str, name: str) -> tuple[Obj, int] | None:
        it = self.store().get(view.key(res, ns, name))
        if it is None:
            return None
        obj = copy.deepcopy(it.value["object"])
        obj["metadata"]["resourceVersion"] = str(it.mod_revision)
        return obj, it.mod_revision

    def declared(self, res: Resource, ns: str, name: str) -> Obj | None:
        it = self.store().get(f"{labrt.OBJECTS}{res.kind}/{ns if res.namespaced else ''}/{name}")
        return it.value["body"] if it else None

    def _check_namespace(self, res: Resource, ns: str) -> None:
        if res.namespaced and self.store().get(view.key(BY_KIND["Namespace"], "", ns)) is None:
            raise namespace_not_found(ns)

    def _prepare(self, res: Resource, ns: str, body: Any, validation: str, warnings: list[str],
                 keep_status: bool = False) -> Obj:
        """The body to store: known fields only (or 400 with ``Strict``), server fields dropped, validated by
        the lab's model (422 naming the field)."""
        if not isinstance(body, dict):
            raise bad_request(f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: "
                              "the object must be a JSON object")
        api = body.get("apiVersion") or res.group_version
        kind = body.get("kind") or res.kind
        if api != res.group_version or kind != res.kind:
            raise bad_request(f"the API version in the data ({api}) does not match the expected API version "
                              f"({res.group_version})" if api != res.group_version else
                              f"{kind} in version \"{res.version}\" cannot be handled as a {res.kind}: "
                              f"the kind in the data ({kind}) does not match the resource ({res.kind})")
        node = schema.definition(res.schema)
        unknown = schema.unknown_fields(body, node)
        if unknown and validation == "Strict":
            raise bad_request(f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: strict '
                              "decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
        if unknown:
            if validation != "Ignore":
                warnings.extend(f'unknown field "{u}"' for u in unknown)
            body = schema.prune(body, node)
        out = copy.deepcopy(body)
        out["apiVersion"], out["kind"] = res.group_version, res.kind
        meta = out.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        for f in view.SERVER_META:
            meta.pop(f, None)
        if res.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not keep_status or not out.get("status"):
            out.pop("status", None)
        for k in [k for k, v in meta.items() if v in ({}, None)]:
            del meta[k]
        return out

    def _validate(self, res: Resource, name: str, body: Obj, warnings: list[str]) -> Doc:
        """The lab model's validation (422 naming the field); what podnet accepts but does not honour comes
        back as warnings (kubectl prints them as ``Warning: ...``)."""
        path = f"<api {res.plural}/{body['metadata'].get('namespace', '')}/{name}>".replace("//", "/")
        doc = Doc(path, 0, rebuild(body, 1))
        try:
            parsed = parse_docs([doc])
        except PodnetError as e:
            raise _invalid(res, name, e) from None
        warnings.extend(w.removeprefix(f"{path}:1: ") for w in parsed.warnings)
        return doc

    def _mark_terminating(self, res: Resource, ns: str, name: str, served: Obj) -> None:
        k = view.key(res, ns, name)
        it = self.store().get(k)
        if it is None:
            return
        obj = {kk: v for kk, v in served.items()}
        obj["metadata"] = {kk: v for kk, v in served["metadata"].items() if kk != "resourceVersion"}
        rev = self.store().put(k, {"object": obj, "created": False, "prev": selectable(it.value["object"])})
        served["metadata"]["resourceVersion"] = str(rev)

    def _apply(self, res: Resource, name: str, doc: Doc) -> None:
        try:
            labrt.apply_docs([doc], self.lab)
        except PodnetError as e:
            raise _invalid(res, name, e) from None
        view.sync(self.store())

    # -- verbs --------------------------------------------------------------------------------------
    def create(self, res: Resource, ns: str, body: Any, *, dry_run: bool, validation: str,
               warnings: list[str]) -> Obj:
        if not res.writable:
            raise method_not_allowed()
        with self.lock:
            if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
                meta = body["metadata"]
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            body = self._prepare(res, ns, body, validation, warnings, keep_status=res.kind == "Service")
            name = body["metadata"].get("name") or ""
            if not name:
                raise invalid(res, "", [("FieldValueRequired", "metadata.name",
                                         "Required value: name or generateName is required")])
            self._check_namespace(res, ns)
            if self.current(res, ns, name) is not None:
                raise already_exists(res, name)
            doc = self._validate(res, name, body, warnings)
            if dry_run:
                return _dry(body)
            self._apply(res, name, doc)
            got = self.current(res, ns, name)
            if got is None:
                raise ApiError(500, f"{res.qualified} \"{name}\" was applied but is not served")
            return got[0]

    def update(self, res: Resource, ns: str, name: str, body: Any, *, dry_run: bool, validation: str,
               warnings: list[str], expect_rv: str | None = None) -> Obj:
        if not res.writable:
            raise method_not_allowed()
        with self.lock:
            got = self.current(res, ns, name)
            if got is None:
                raise not_found(res, name)
            served, rev = got
            if not isinstance(body, dict):
                raise bad_request("the object must be a JSON object")
            rv = expect_rv or (body.get("metadata") or {}).get("resourceVersion")
            if rv and str(rv) != str(rev):
                raise conflict(res, name)
            if (body.get("metadata") or {}).get("name") not in (None, name):
                raise bad_request(f'the name of the object ({body["metadata"]["name"]}) does not match the name on '
                                  f"the URL ({name})")
            old = self.declared(res, ns, name)
            if old is None:
                raise _derived(res, name, served)
            new = self._prepare(res, ns, view.unfill(body, served, old), validation, warnings,
                                keep_status=res.kind == "Service")
            new["metadata"]["name"] = name
            if res.kind == "Pod":
                _check_pod_update(res, name, old, new)
            if new == old:
                return served
            doc = self._validate(res, name, new, warnings)
            if dry_run:
                out = view.fill(new, served)
                out["metadata"]["resourceVersion"] = served["metadata"]["resourceVersion"]
                return out
            self._apply(res, name, doc)
            now = self.current(res, ns, name)
            return now[0] if now else served

    def patch(self, res: Resource, ns: str, name: str, content_type: str, body: Any, *, dry_run: bool,
              validation: str, warnings: list[str]) -> Obj:
        if content_type.split(";")[0].strip() == patches.APPLY:
            raise ApiError(415, "server-side apply is not supported by podnet's API server: use client-side "
                           "`kubectl apply` (the default)", "UnsupportedMediaType")
        if not res.writable:
            raise method_not_allowed()
        with self.lock:
            got = self.current(res, ns, name)
            if got is None:
                raise not_found(res, name)
            served, _ = got
            patched = patches.apply(content_type, served, body, schema.definition(res.schema))
            return self.update(res, ns, name, patched, dry_run=dry_run, validation=validation, warnings=warnings)

    def delete(self, res: Resource, ns: str, name: str, *, dry_run: bool, options: Obj | None = None) -> Obj:
        if not res.writable:
            raise method_not_allowed()
        with self.lock:
            got = self.current(res, ns, name)
            if got is None:
                raise not_found(res, name)
            served, rev = got
            pre = (options or {}).get("preconditions") or {}
            if pre.get("resourceVersion") and str(pre["resourceVersion"]) != str(rev):
                raise conflict(res, name)
            if pre.get("uid") and pre["uid"] != served["metadata"].get("uid"):
                raise conflict(res, name)
            if res.kind == "Namespace" and name in SYSTEM_NAMESPACES:
                raise ApiError(403, f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                               "Forbidden", {"name": name, "kind": "namespaces"})
            if self.declared(res, ns, name) is None:
                raise _derived(res, name, served)
            if res.kind == "Pod":   # graceful, as kubelet: Terminating first (watches see it), then gone
                served["metadata"]["deletionTimestamp"] = view.now_rfc3339()
                served["metadata"]["deletionGracePeriodSeconds"] = 30
                if not dry_run:
                    self._mark_terminating(res, ns, name, served)
            if not dry_run:
                doc = Doc("<api delete>", 0, rebuild({"apiVersion": res.group_version, "kind": res.kind,
                                                      "metadata": {"name": name,
                                                                   **({"namespace": ns} if res.namespaced else {})}},
                                                     1))
                try:
                    labrt.delete_docs([doc], self.lab)
                except PodnetError as e:
                    raise _invalid(res, name, e) from None
                view.sync(self.store())
            if res.kind in ("Pod", "Service"):   # kube-apiserver answers these with the object
                return served
            return success(res, name, served["metadata"].get("uid", ""))


def _dry(body: Obj) -> Obj:
    out = copy.deepcopy(body)
    out["metadata"].update({"uid": "00000000-0000-0000-0000-000000000000", "creationTimestamp": view.now_rfc3339()})
    return out


def _invalid(res: Resource, name: str, e: PodnetError) -> ApiError:
    msg = e.msg
    if msg.startswith("Forbidden:"):
        return invalid(res, name, [("FieldValueForbidden", e.field or "spec", msg)])
    if "not found" in msg and (e.field or "") == "metadata.namespace":
        return namespace_not_found(msg.split('"')[1] if '"' in msg else "")
    return invalid(res, name, [("FieldValueInvalid", e.field or "", f"Invalid value: {msg}")])


def _derived(res: Resource, name: str, served: Obj) -> ApiError:
    owners = [f"{r.get('kind')}/{r.get('name')}" for r in served["metadata"].get("ownerReferences") or []]
    why = f"it belongs to {owners[0]}" if owners else "the lab derives it (it is not a declared object)"
    return ApiError(403, f'{res.qualified} "{name}" is forbidden: podnet cannot change it: {why}', "Forbidden",
                    {"name": name, "kind": res.plural})


def _mutable_view(spec: Obj) -> Obj:
    """A pod spec without the fields Kubernetes lets an update change."""
    out = copy.deepcopy(spec or {})
    for f in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        out.pop(f, None)
    for c in (out.get("containers") or []) + (out.get("initContainers") or []):
        if isinstance(c, dict):
            c.pop("image", None)
    return out


def _check_pod_update(res: Resource, name: str, old: Obj, new: Obj) -> None:
    if _mutable_view(old.get("spec")) != _mutable_view(new.get("spec")):
        raise invalid(res, name, [("FieldValueForbidden", "spec", POD_MUTABLE_MSG)])
