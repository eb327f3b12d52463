from __future__ import annotations

import click

from podnet.cli.output import dump, echo, table
from podnet.dataplane import lab as labrt
from podnet.errors import PodnetError
from podnet.model import k8s
from podnet.model.lab import Lab
from podnet.store.kv import Store

ALIASES = {
    "nodes": "nodes", "node": "nodes", "no": "nodes",
    "pods": "pods", "pod": "pods", "po": "pods",
    "namespaces": "namespaces", "namespace": "namespaces", "ns": "namespaces",
    "services": "services", "service": "services", "svc": "services",
    "endpoints": "endpoints", "ep": "endpoints",
    "endpointslices": "endpointslices", "endpointslice": "endpointslices",
    "networkpolicies": "networkpolicies", "networkpolicy": "networkpolicies", "netpol": "networkpolicies",
}
NAMESPACED = ("pods", "services", "endpoints", "endpointslices", "networkpolicies")
SINGULAR = {"nodes": "node", "pods": "pod", "namespaces": "namespace", "services": "service",
            "endpoints": "endpoints", "endpointslices": "endpointslice.discovery.k8s.io",
            "networkpolicies": "networkpolicy.networking.k8s.io"}
FORMATS = ("wide", "json", "yaml", "name")


def _pods(lab: Lab, store: Store, ns: str | None, name: str | None) -> list[dict]:
    out = []
    for p in lab.pods:
        if ns is not None and p.namespace != ns:
            continue
        if name is not None and p.name != name:
            continue
        out.append(k8s.pod_object(lab, p, labrt.container_state(store, p)))
    return out


def objects(lab: Lab, store: Store, kind: str, ns: str | None, name: str | None) -> list[dict]:
    if kind == "nodes":
        objs = [k8s.node_object(lab, n) for n in lab.nodes]
    elif kind == "namespaces":
        objs = [k8s.namespace_object(n) for n in lab.namespaces.values()]
    elif kind == "pods":
        return _pods(lab, store, ns, name)
    elif kind == "networkpolicies":
        objs = [np.to_object() for np in lab.networkpolicies if ns is None or np.meta.namespace == ns]
    else:
        resolved = labrt.resolved_services(lab, store)
        services = [rs for rs in resolved.services if ns is None or rs.service.meta.namespace == ns]
        if kind == "services":
            objs = [k8s.service_object(rs) for rs in services]
        elif kind == "endpoints":
            objs = [k8s.endpoints_object(rs, resolved.slices_of(rs.key)) for rs in services]
        else:
            objs = [k8s.endpointslice_object(sl) for sl in resolved.endpointslices
                    if ns is None or sl.meta.namespace == ns]
    return [o for o in objs if name is None or o["metadata"]["name"] == name]


def _selector_text(sel: dict) -> str:
    """kubectl's LabelSelectorAsSelector().String(): "<none>" for an empty selector."""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, key, vals = e["operator"], e["key"], ",".join(e.get("values") or [])
        parts.append({"In": f"{key} in ({vals})", "NotIn": f"{key} notin ({vals})", "Exists": key,
                      "DoesNotExist": f"!{key}"}.get(op, key))
    return ",".join(parts) or "<none>"


def _more(items: list[str], n: int = 3) -> str:
    """kubectl's list cell: the first three, then "+ N more..."."""
    if not items:
        return "<none>"
    return ",".join(items[:n]) + (f" + {len(items) - n} more..." if len(items) > n else "")


def _service_row(o: dict) -> list[str]:
    spec = o["spec"]
    ports = ",".join(f"{p['port']}:{p['nodePort']}/{p['protocol']}" if p.get("nodePort") else
                     f"{p['port']}/{p['protocol']}" for p in spec["ports"]) or "<none>"
    ext = spec.get("externalIPs", []) + [i["ip"] for i in o["status"]["loadBalancer"].get("ingress", [])]
    external = ",".join(ext) if ext else "<pending>" if spec["type"] == "LoadBalancer" else "<none>"
    return [o["metadata"]["name"], spec["type"], spec.get("clusterIP", "<none>"), external, ports, _age()]


def _age() -> str:
    return "<lab>"


def render_rows(kind: str, objs: list[dict], wide: bool, all_ns: bool) -> str:
    if kind == "nodes":
        headers = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        if wide:
            headers += ["INTERNAL-IP", "EXTERNAL-IP", "POD-CIDR", "OS-IMAGE", "CONTAINER-RUNTIME"]
        rows = []
        for o in objs:
            ready = o["status"]["conditions"][0]["status"] == "True"
            row = [o["metadata"]["name"], "Ready" if ready else "NotReady", "<none>", _age(),
                   o["status"]["nodeInfo"]["kubeletVersion"]]
            if wide:
                row += [o["status"]["addresses"][0]["address"], "<none>", o["spec"]["podCIDR"],
                        o["status"]["nodeInfo"]["osImage"], o["status"]["nodeInfo"]["containerRuntimeVersion"]]
            rows.append(row)
    elif kind == "pods":
        headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        if wide:
            headers += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
        rows = []
        for o in objs:
            st = o["status"]["containerStatuses"]
            ready = sum(1 for c in st if c["ready"])
            status = "Running" if ready == len(st) else "Error" if ready == 0 else "NotReady"
            row = [o["metadata"]["name"], f"{ready}/{len(st)}", status, "0", _age()]
            if wide:
                row += [o["status"]["podIP"], o["spec"]["nodeName"], "<none>", "<none>"]
            rows.append(row)
        if all_ns:
            headers = ["NAMESPACE", *headers]
            rows = [[o["metadata"]["namespace"], *r] for o, r in zip(objs, rows, strict=True)]
    elif kind == "namespaces":
        headers = ["NAME", "STATUS", "AGE"]
        rows = [[o["metadata"]["name"], o["status"]["phase"], _age()] for o in objs]
    elif kind == "services":
        headers = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
        rows = [_service_row(o) for o in objs]
        if wide:
            headers.append("SELECTOR")
            rows = [[*r, ",".join(f"{k}={v}" for k, v in (o["spec"].get("selector") or {}).items()) or "<none>"]
                    for o, r in zip(objs, rows, strict=True)]
    elif kind == "networkpolicies":
        headers = ["NAME", "POD-SELECTOR", "AGE"]
        rows = [[o["metadata"]["name"], _selector_text(o["spec"].get("podSelector") or {}), _age()] for o in objs]
    elif kind == "endpoints":
        headers = ["NAME", "ENDPOINTS", "AGE"]
        rows = [[o["metadata"]["name"], _more([f"{a['ip']}:{p['port']}" for sub in o["subsets"]
                                               for p in sub["ports"] for a in sub.get("addresses", [])]), _age()]
                for o in objs]
    else:
        headers = ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
        rows = [[o["metadata"]["name"], o["addressType"],
                 ",".join(str(p["port"]) for p in o["ports"]) or "<unset>",
                 _more([a for e in o["endpoints"] for a in e["addresses"]]), _age()] for o in objs]
    if all_ns and kind not in ("nodes", "namespaces", "pods"):
        headers = ["NAMESPACE", *headers]
        rows = [[o["metadata"]["namespace"], *r] for o, r in zip(objs, rows, strict=True)]
    return table(headers, rows)


@click.command("get")
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-o", "--output", type=click.Choice(FORMATS), default=None, help="Output format.")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
def command(kind: str, name: str | None, namespace: str | None, all_namespaces: bool, output: str | None,
            lab: str | None) -> None:
    """Show lab objects as kubectl does: nodes, pods, namespaces, services, endpoints, endpointslices,
    networkpolicies (aliases no, po, ns, svc, ep, netpol).

    -o json|yaml prints them in Kubernetes shape with what podnet assigned (status.podIP,
    status.hostIP, spec.nodeName, spec.podCIDR, spec.clusterIP, spec.ports[].nodePort). Endpoints and
    EndpointSlices reflect pod readiness now (a pod whose process exited is not ready).
    """
    k = ALIASES.get(kind.lower())
    if k is None:
        raise PodnetError(f'the server doesn\'t have a resource type "{kind}" '
                          f"(known: {', '.join(sorted(set(ALIASES.values())))})")
    the_lab, store = labrt.load(lab)
    try:
        namespaced = k in NAMESPACED
        ns = None if (all_namespaces or not namespaced) else (namespace or "default")
        objs = objects(the_lab, store, k, ns, name)
    finally:
        store.close()
    if name is not None and not objs:
        raise PodnetError(f'{k} "{name}" not found' + (f' in namespace "{ns}"' if ns else ""))
    if output in ("json", "yaml"):
        echo(dump(objs[0] if name is not None else k8s.list_object(objs), output))
    elif output == "name":
        singular = SINGULAR[k]
        for o in objs:
            echo(f"{singular}/{o['metadata']['name']}")
    elif not objs:
        echo(f"No resources found in {ns} namespace." if ns else "No resources found")
    else:
        echo(render_rows(k, objs, output == "wide", all_namespaces and namespaced))
