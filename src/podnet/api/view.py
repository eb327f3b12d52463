"""The served objects: the lab's declared objects as written, with what the lab assigned and observed filled
in (IPs, nodes, cluster IPs, node ports, endpoints, readiness), in Kubernetes shape.

``build`` is pure: from the resolved lab, the observed container states and the declared bodies to one
object per served key. ``sync`` writes the difference into the lab's store under ``/podnet/api/`` (as the
endpoints controllers and kubelets of a real cluster write status into etcd), so every change the API
serves is a store revision: its resourceVersion and the events its watches stream. Each stored value is
``{"object": ..., "created": bool, "prev": selectable(previous object) | None}``: enough for a watch to
tell ADDED from MODIFIED and to notice an object entering or leaving a selector.
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from typing import Any

from podnet.api import schema
from podnet.api.resources import BY_KIND, Resource
from podnet.api.selectors import selectable
from podnet.dataplane import lab as labrt
from podnet.dataplane import netns, procs
from podnet.model import k8s
from podnet.model.lab import Lab
from podnet.model.services import ResolvedServices, resolve_services
from podnet.store.kv import Store

PREFIX = "/podnet/api/"
SERVER_META = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink",
               "deletionTimestamp", "deletionGracePeriodSeconds")
Obj = dict[str, Any]


def key(res: Resource, ns: str, name: str) -> str:
    return f"{PREFIX}{res.plural}/{ns if res.namespaced else ''}/{name}"


def collection(res: Resource, ns: str | None) -> str:
    return f"{PREFIX}{res.plural}/" + (f"{ns}/" if ns is not None and res.namespaced else "")


def fill(declared: Any, model: Any, node: schema.Node | None = None) -> Any:
    """``declared`` (as written) with ``model``'s fields filled in where it has none. Lists that merge by key
    (containers, ports) are filled element-wise; atomic lists (a NetworkPolicy's rules) stay as written, so
    kubectl's three-way merge finds them unchanged."""
    if isinstance(declared, dict) and isinstance(model, dict):
        out = copy.deepcopy(declared)
        for k, v in model.items():
            sub = schema.child(node, k) if node is not None else None
            out[k] = fill(declared[k], v, sub) if k in declared else copy.deepcopy(v)
        return out
    if isinstance(declared, list) and isinstance(model, list) and len(declared) == len(model):
        if node is not None and schema.list_strategy(node)[0] != "merge":
            return copy.deepcopy(declared)
        item = schema.items(node) if node is not None else None
        return [fill(d, m, item) for d, m in zip(declared, model, strict=True)]
    return copy.deepcopy(declared)


def unfill(new: Any, served: Any, declared: Any) -> Any:
    """The inverse of :func:`fill` for an edited served object: drop what the server filled in and the user
    left as it was (``declared`` None: nothing was declared at this level)."""
    if isinstance(new, dict) and isinstance(served, dict):
        decl = declared if isinstance(declared, dict) else {}
        out = {}
        for k, v in new.items():
            if k in served and k not in decl:
                if v == served[k]:
                    continue
                out[k] = unfill(v, served[k], None)
            elif k in served:
                out[k] = unfill(v, served[k], decl[k])
            else:
                out[k] = v
        return out
    if isinstance(new, list) and isinstance(served, list) and len(new) == len(served):
        decl_list = declared if isinstance(declared, list) and len(declared) == len(new) else [None] * len(new)
        return [unfill(n, s, d) for n, s, d in zip(new, served, decl_list, strict=True)]
    return new


# ------------------------------------------------------------------------------------------- observing
def container_states(lab: Lab, store: Store) -> dict[str, dict[str, bool]]:
    """Pod key -> container name -> running (the process lives in the pod's namespace)."""
    items, _ = store.list(labrt.RUNTIME)
    pids = {it.key[len(labrt.RUNTIME):]: it.value for it in items}
    inodes: dict[str, int | None] = {}
    out = {}
    for p in lab.pods:
        if p.netns not in inodes:
            got = netns.inode(p.netns)
            inodes[p.netns] = got[1] if got else None
        run = pids.get(p.key) or {}
        ino = inodes[p.netns]
        out[p.key] = {c.name: ino is not None and c.name in run and procs.alive(run[c.name], inode=ino)
                      for c in p.pod.spec.containers}
    return out


def declared_bodies(store: Store) -> dict[tuple[str, str, str], Obj]:
    items, _ = store.list(labrt.OBJECTS)
    out = {}
    for it in items:
        kind, ns, name = it.key[len(labrt.OBJECTS):].split("/", 2)
        out[(kind, ns, name)] = it.value["body"]
    return out


# ------------------------------------------------------------------------------------------- building
def _schema(kind: str) -> schema.Node:
    return schema.definition(BY_KIND[kind].schema)


def _pod(lab: Lab, p, states: dict[str, dict[str, bool]], declared: dict) -> Obj:
    model = k8s.pod_object(lab, p, states.get(p.key, {}))
    body = declared.get(("Pod", p.namespace, p.name)) if not p.pod.owner and not p.component else None
    obj = fill(body, model, _schema("Pod")) if body else model
    obj["status"] = model["status"]
    images = {c["name"]: c.get("image", "") for c in obj["spec"].get("containers") or []}
    for cs in obj["status"]["containerStatuses"]:
        cs["image"] = images.get(cs["name"]) or cs["image"]
    if p.component:
        obj["spec"]["containers"][0]["image"] = f"podnet/{p.component}"
    st = obj["status"]
    ready = all(c["ready"] for c in st["containerStatuses"])
    st["conditions"] = [{"type": t, "status": "True" if ok else "False"} for t, ok in
                        (("PodReadyToStartContainers", True), ("Initialized", True), ("Ready", ready),
                         ("ContainersReady", ready), ("PodScheduled", True))]
    st["qosClass"] = "BestEffort"
    spec = obj["spec"]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for c in spec.get("containers") or []:
        c.setdefault("imagePullPolicy", "IfNotPresent")
        for port in c.get("ports") or []:
            port.setdefault("protocol", "TCP")
    return obj


def _deployment(d, lab: Lab, states: dict[str, dict[str, bool]], body: Obj | None) -> Obj:
    pods = [p for p in lab.pods if p.pod.owner == f"Deployment/{d.meta.name}" and p.namespace == d.meta.namespace]
    ready = sum(1 for p in pods if all(states.get(p.key, {}).values()) and states.get(p.key))
    template = {"metadata": {"labels": dict(d.template_meta.labels)},
                "spec": {"containers": [{"name": c.name} for c in d.template.containers]}}
    model = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": d.meta.to_dict(),
             "spec": {"replicas": d.replicas, "selector": {"matchLabels": dict(d.selector)}, "template": template,
                      "strategy": {"type": "RollingUpdate",
                                   "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                      "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}}
    obj = fill(body, model, _schema("Deployment")) if body else model
    obj["status"] = {"observedGeneration": 1, "replicas": len(pods), "updatedReplicas": len(pods),
                     "readyReplicas": ready, "availableReplicas": ready,
                     "conditions": [{"type": "Available", "status": "True" if ready >= d.replicas else "False",
                                     "reason": "MinimumReplicasAvailable" if ready >= d.replicas
                                     else "MinimumReplicasUnavailable"}]}
    if not ready:
        del obj["status"]["readyReplicas"], obj["status"]["availableReplicas"]
    return obj


def _owned(kind: str, ns: str, name: str, pods: list, states: dict[str, dict[str, bool]]) -> Obj:
    """A read-only workload for pods the lab makes itself (coredns, the per-node components)."""
    common = dict(pods[0].pod.meta.labels)
    for p in pods[1:]:
        common = {k: v for k, v in common.items() if p.pod.meta.labels.get(k) == v}
    common.pop("pod-template-hash", None)
    ready = sum(1 for p in pods if states.get(p.key) and all(states[p.key].values()))
    spec: Obj = {"selector": {"matchLabels": common},
                 "template": {"metadata": {"labels": dict(common)},
                              "spec": {"containers": [{"name": c.name, "image": f"podnet/{pods[0].component}"}
                                                      for c in pods[0].pod.spec.containers]}}}
    if pods[0].host_network:
        spec["template"]["spec"]["hostNetwork"] = True
    meta = {"name": name, "namespace": ns, "labels": dict(common), "generation": 1}
    if kind == "DaemonSet":
        n = len(pods)
        spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
        status: Obj = {"currentNumberScheduled": n, "desiredNumberScheduled": n, "numberMisscheduled": 0,
                       "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": n,
                       "observedGeneration": 1}
    else:
        spec["replicas"] = len(pods)
        status = {"observedGeneration": 1, "replicas": len(pods), "updatedReplicas": len(pods),
                  "readyReplicas": ready, "availableReplicas": ready}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec, "status": status}


def build(lab: Lab, resolved: ResolvedServices, states: dict[str, dict[str, bool]],
          declared: dict[tuple[str, str, str], Obj]) -> dict[str, Obj]:
    """Every served object by its store key (without uid, creationTimestamp and resourceVersion)."""
    out: dict[str, Obj] = {}

    def put(obj: Obj, kind: str) -> None:
        meta = obj["metadata"]
        out[key(BY_KIND[kind], meta.get("namespace", ""), meta["name"])] = obj

    for ns in lab.namespaces.values():
        model = k8s.namespace_object(ns)
        model["spec"] = {"finalizers": ["kubernetes"]}
        body = declared.get(("Namespace", "", ns.meta.name))
        put(fill(body, model, _schema("Namespace")) if body else model, "Namespace")
    for n in lab.nodes:
        put(k8s.node_object(lab, n), "Node")
    for p in lab.pods:
        put(_pod(lab, p, states, declared), "Pod")
    for rs in resolved.services:
        s = rs.service
        body = declared.get(("Service", s.meta.namespace, s.meta.name))
        obj = fill(body, k8s.service_object(rs), _schema("Service")) if body else k8s.service_object(rs)
        put(obj, "Service")
        if s.selector and s.type != "ExternalName":
            put(k8s.endpoints_object(rs, resolved.slices_of(rs.key)), "Endpoints")
    for sl in resolved.endpointslices:
        model = k8s.endpointslice_object(sl)
        body = None if sl.derived else declared.get(("EndpointSlice", sl.meta.namespace, sl.meta.name))
        if sl.derived:
            model["metadata"]["generateName"] = f"{sl.service}-"
            model["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = \
                "endpointslice-controller.k8s.io"
            model["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service", "name": sl.service,
                                                     "controller": True, "blockOwnerDeletion": True}]
        put(fill(body, model, _schema("EndpointSlice")) if body else model, "EndpointSlice")
    for np in lab.networkpolicies:
        body = declared.get(("NetworkPolicy", np.meta.namespace, np.meta.name))
        put(fill(body, np.to_object(), _schema("NetworkPolicy")) if body else np.to_object(), "NetworkPolicy")
    for d in lab.deployments:
        put(_deployment(d, lab, states, declared.get(("Deployment", d.meta.namespace, d.meta.name))), "Deployment")
    owned: dict[tuple[str, str, str], list] = {}
    for p in lab.pods:
        kind, _, name = p.pod.owner.partition("/")
        if kind in ("Deployment", "DaemonSet"):
            owned.setdefault((kind, p.namespace, name), []).append(p)
    declared_deployments = {d.key for d in lab.deployments}
    for (kind, ns, name), pods in owned.items():
        if kind == "DaemonSet" or f"{ns}/{name}" not in declared_deployments:
            put(_owned(kind, ns, name, pods, states), kind)
    return out


def _owner_uids(objs: dict[str, Obj], uids: dict[str, str]) -> None:
    """Fill ``ownerReferences[].uid`` from the owners' uids (made up for owners the API does not serve)."""
    for k, obj in objs.items():
        ns = obj["metadata"].get("namespace", "")
        for ref in obj["metadata"].get("ownerReferences") or []:
            owner = BY_KIND.get(ref.get("kind", ""))
            owner_key = key(owner, ns, ref["name"]) if owner else ""
            ref["uid"] = uids.get(owner_key) or str(uuid.uuid5(uuid.NAMESPACE_URL, f"podnet:{k}:{ref['kind']}"))


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sync(store: Store, lab: Lab | None = None) -> int:
    """Bring ``/podnet/api/`` to the lab as it is now; returns how many keys were written or deleted."""
    if lab is None:
        lab, _ = labrt.load(store=store)
    states = container_states(lab, store)
    resolved = resolve_services(lab, ready=lambda p: bool(states.get(p.key)) and all(states[p.key].values()))
    want = build(lab, resolved, states, declared_bodies(store))
    for obj in want.values():
        if obj["kind"] == "Node":   # the nodes share the host's kernel
            obj["status"]["nodeInfo"]["kernelVersion"] = os.uname().release
    items, _ = store.list(PREFIX)
    have = {it.key: it.value for it in items}
    uids = {}
    for k, obj in want.items():
        old = have.get(k)
        meta = obj["metadata"]
        if old is not None:
            ometa = old["object"]["metadata"]
            meta["uid"], meta["creationTimestamp"] = ometa["uid"], ometa["creationTimestamp"]
        else:
            meta["uid"], meta["creationTimestamp"] = str(uuid.uuid4()), now_rfc3339()
        uids[k] = meta["uid"]
        if obj["kind"] == "Pod":
            obj["status"]["startTime"] = meta["creationTimestamp"]
    _owner_uids(want, uids)
    changed = 0
    for k, obj in want.items():
        old = have.get(k)
        if old is not None and old["object"] == obj:
            continue
        value = {"object": obj, "created": old is None, "prev": selectable(old["object"]) if old else None}
        store.put(k, value)
        changed += 1
    for k in have:
        if k not in want:
            store.delete(k)
            changed += 1
    return changed
