"""Server-side Tables (``Accept: application/json;as=Table;g=meta.k8s.io``): kubectl's ``get`` columns,
as kube-apiserver's printers make them (every cell, priority-1 columns included; kubectl hides those
unless ``-o wide``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
Col = tuple[str, str, int]       # name, type, priority

DESCRIPTIONS = {"Name": "Name must be unique within a namespace.",
                "Age": "CreationTimestamp is a timestamp representing the server time when this object was created."}


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 192:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        dy = (h // 24) % 365
        return f"{h // 24 // 365}y{dy}d" if dy else f"{h // 24 // 365}y"
    return f"{h // 24 // 365}y"


def parse_time(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def age(obj: Obj, now: float | None = None) -> str:
    t = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    if t is None:
        return "<unknown>"
    return human_duration((now or time.time()) - t)


def fmt_labels(m: dict[str, str] | None) -> str:
    if not m:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(m.items()))


def fmt_selector(sel: dict[str, Any] | None) -> str:
    """metav1.FormatLabelSelector."""
    if not sel or (not sel.get("matchLabels") and not sel.get("matchExpressions")):
        return "<none>"
    reqs: list[tuple[str, str]] = [(k, f"{k}={v}") for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e.get("key", ""), e.get("operator", ""), sorted(e.get("values") or [])
        text = {"In": f"{k} in ({','.join(vals)})", "NotIn": f"{k} notin ({','.join(vals)})",
                "Exists": k, "DoesNotExist": f"!{k}"}.get(op, k)
        reqs.append((k, text))
    return ",".join(t for _, t in sorted(reqs))


def _cap(items: list[str], empty: str) -> str:
    if not items:
        return empty
    if len(items) > 3:
        return ",".join(items[:3]) + f" + {len(items) - 3} more..."
    return ",".join(items)


# ----------------------------------------------------------------------------------------- kinds
def pod_row(o: Obj, now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    containers = spec.get("containers") or []
    statuses = st.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready") and "running" in (c.get("state") or {}))
    reason = st.get("reason") or st.get("phase") or ""
    restarts = 0
    has_running = False
    for c in reversed(statuses):
        restarts += int(c.get("restartCount") or 0)
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            t = state["terminated"]
            reason = t.get("reason") or (f"Signal:{t['signal']}" if t.get("signal") else
                                         f"ExitCode:{t.get('exitCode', 0)}")
        elif "running" in state and c.get("ready"):
            has_running = True
    if reason == "Completed" and has_running:
        reason = "Running"
    if (o.get("metadata") or {}).get("deletionTimestamp") and st.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    ips = st.get("podIPs") or ([{"ip": st["podIP"]}] if st.get("podIP") else [])
    gates = spec.get("readinessGates") or []
    return [o["metadata"]["name"], f"{ready}/{len(containers)}", reason, str(restarts), age(o, now),
            ips[0]["ip"] if ips else "<none>", spec.get("nodeName") or "<none>",
            st.get("nominatedNodeName") or "<none>", f"0/{len(gates)}" if gates else "<none>"]


def service_row(o: Obj, now: float) -> list[Any]:
    spec = o.get("spec") or {}
    stype = spec.get("type", "ClusterIP")
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ext = spec.get("externalIPs") or []
    if stype == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in
                   ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
        external = ",".join([*ingress, *ext]) or "<pending>"
    elif stype == "ExternalName":
        external = spec.get("externalName", "<none>")
    else:
        external = ",".join(ext) or "<none>"
    ports = []
    for p in spec.get("ports") or []:
        node_port = f":{p['nodePort']}" if p.get("nodePort") else ""
        ports.append(f"{p.get('port')}{node_port}/{p.get('protocol', 'TCP')}")
    return [o["metadata"]["name"], stype, ips[0] if ips else "<none>", external, ",".join(ports) or "<none>",
            age(o, now), fmt_labels(spec.get("selector"))]


def endpoints_row(o: Obj, now: float) -> list[Any]:
    items = []
    for ss in o.get("subsets") or []:
        ports = ss.get("ports") or []
        for a in ss.get("addresses") or []:
            if ports:
                items += [f"{a['ip']}:{p['port']}" for p in ports]
            else:
                items.append(a["ip"])
    return [o["metadata"]["name"], _cap(items, "<none>"), age(o, now)]


def endpointslice_row(o: Obj, now: float) -> list[Any]:
    ports = [str(p["port"]) if p.get("port") is not None else (p.get("name") or "*") for p in o.get("ports") or []]
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    return [o["metadata"]["name"], o.get("addressType", ""), _cap(ports, "<unset>"), _cap(addrs, "<unset>"),
            age(o, now)]


def node_row(o: Obj, now: float) -> list[Any]:
    st, spec = o.get("status") or {}, o.get("spec") or {}
    ready = next((c.get("status") for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    status = {"True": "Ready", "False": "NotReady"}.get(ready or "", "Unknown")
    if spec.get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = (o.get("metadata") or {}).get("labels") or {}
    roles = sorted({k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")}
                   | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set()))
    info = st.get("nodeInfo") or {}

    def addr(kind: str) -> str:
        return next((a["address"] for a in st.get("addresses") or [] if a.get("type") == kind), "<none>")

    return [o["metadata"]["name"], status, ",".join(roles) or "<none>", age(o, now), info.get("kubeletVersion", ""),
            addr("InternalIP"), addr("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


def namespace_row(o: Obj, now: float) -> list[Any]:
    return [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), age(o, now)]


def networkpolicy_row(o: Obj, now: float) -> list[Any]:
    return [o["metadata"]["name"], fmt_selector((o.get("spec") or {}).get("podSelector")), age(o, now)]


def deployment_row(o: Obj, now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [o["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(o, now),
            ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers),
            fmt_selector(spec.get("selector"))]


def daemonset_row(o: Obj, now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    tspec = (spec.get("template") or {}).get("spec") or {}
    containers = tspec.get("containers") or []
    return [o["metadata"]["name"], st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
            st.get("numberReady", 0), st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0),
            fmt_labels(tspec.get("nodeSelector")), age(o, now), ",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers), fmt_selector(spec.get("selector"))]


def event_row(o: Obj, now: float) -> list[Any]:
    first = o.get("firstTimestamp") or o.get("eventTime")
    last = o.get("lastTimestamp") or first
    inv = o.get("involvedObject") or {}
    src = o.get("source") or {}

    def ago(ts: str | None) -> str:
        t = parse_time(ts)
        return "<unknown>" if t is None else human_duration(now - t)

    return [ago(last), o.get("type", ""), o.get("reason", ""), f"{inv.get('kind', '').lower()}/{inv.get('name', '')}",
            inv.get("fieldPath", ""), ", ".join(x for x in (src.get("component"), src.get("host")) if x),
            o.get("message", ""), ago(first), o.get("count", 1), o["metadata"]["name"]]


COLUMNS: dict[str, tuple[list[Col], Callable[[Obj, float], list[Any]]]] = {
    "pods": ([("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
              ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
              ("Readiness Gates", "string", 1)], pod_row),
    "services": ([("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0),
                  ("External-IP", "string", 0), ("Port(s)", "string", 0), ("Age", "string", 0),
                  ("Selector", "string", 1)], service_row),
    "endpoints": ([("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)], endpoints_row),
    "endpointslices": ([("Name", "string", 0), ("AddressType", "string", 0), ("Ports", "string", 0),
                        ("Endpoints", "string", 0), ("Age", "string", 0)], endpointslice_row),
    "nodes": ([("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0),
               ("Version", "string", 0), ("Internal-IP", "string", 1), ("External-IP", "string", 1),
               ("OS-Image", "string", 1), ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)],
              node_row),
    "namespaces": ([("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)], namespace_row),
    "networkpolicies": ([("Name", "string", 0), ("Pod-Selector", "string", 0), ("Age", "string", 0)],
                        networkpolicy_row),
    "deployments": ([("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "integer", 0),
                     ("Available", "integer", 0), ("Age", "string", 0), ("Containers", "string", 1),
                     ("Images", "string", 1), ("Selector", "string", 1)], deployment_row),
    "daemonsets": ([("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
                    ("Ready", "integer", 0), ("Up-to-date", "integer", 0), ("Available", "integer", 0),
                    ("Node Selector", "string", 0), ("Age", "string", 0), ("Containers", "string", 1),
                    ("Images", "string", 1), ("Selector", "string", 1)], daemonset_row),
    "events": ([("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
                ("Object", "string", 0), ("Subobject", "string", 1), ("Source", "string", 1),
                ("Message", "string", 0), ("First Seen", "string", 1), ("Count", "integer", 1),
                ("Name", "string", 1)], event_row),
}


def partial(o: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata") or {}}


def table(plural: str, objs: list[Obj], resource_version: str, include: str = "Metadata",
          now: float | None = None) -> Obj:
    cols, row = COLUMNS[plural]
    now = now or time.time()
    rows = []
    for o in objs:
        r: Obj = {"cells": row(o, now)}
        if include == "Object":
            r["object"] = o
        elif include != "None":
            r["object"] = partial(o)
        rows.append(r)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": [{"name": n, "type": t, "format": "name" if n == "Name" and i == 0 else "",
                                   "description": DESCRIPTIONS.get(n, n), "priority": p}
                                  for i, (n, t, p) in enumerate(cols)],
            "rows": rows}
