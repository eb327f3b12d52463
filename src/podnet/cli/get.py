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
}
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
    else:
        objs = [svc_object(s) for s in lab.services if ns is None or s.meta.namespace == ns]
    return [o for o in objs if name is None or o["metadata"]["name"] == name]


def svc_object(s) -> dict:
    spec: dict = {"type": s.type, "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol,
                                             "targetPort": p.target_port or p.port} for p in s.ports]}
    if s.cluster_ip:
        spec["clusterIP"] = s.cluster_ip
    if s.selector is not None:
        spec["selector"] = s.selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": s.meta.to_dict(), "spec": spec}


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
    else:
        headers = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
        rows = []
        for o in objs:
            ports = ",".join(f"{p['port']}/{p['protocol']}" for p in o["spec"]["ports"]) or "<none>"
            rows.append([o["metadata"]["name"], o["spec"]["type"], o["spec"].get("clusterIP", "<pending>"),
                         "<none>", ports, _age()])
        if all_ns:
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
    """Show lab objects as kubectl does: nodes, pods, namespaces, services (aliases no, po, ns, svc).

    -o json|yaml prints them in Kubernetes shape with what podnet assigned (status.podIP,
    status.hostIP, spec.nodeName, spec.podCIDR).
    """
    k = ALIASES.get(kind.lower())
    if k is None:
        raise PodnetError(f'the server doesn\'t have a resource type "{kind}" '
                          f"(known: {', '.join(sorted(set(ALIASES.values())))})")
    the_lab, store = labrt.load(lab)
    try:
        namespaced = k in ("pods", "services")
        ns = None if (all_namespaces or not namespaced) else (namespace or "default")
        objs = objects(the_lab, store, k, ns, name)
    finally:
        store.close()
    if name is not None and not objs:
        raise PodnetError(f'{k} "{name}" not found' + (f' in namespace "{ns}"' if ns else ""))
    if output in ("json", "yaml"):
        echo(dump(objs[0] if name is not None else k8s.list_object(objs), output))
    elif output == "name":
        singular = {"nodes": "node", "pods": "pod", "namespaces": "namespace", "services": "service"}[k]
        for o in objs:
            echo(f"{singular}/{o['metadata']['name']}")
    elif not objs:
        echo(f"No resources found in {ns} namespace." if ns else "No resources found")
    else:
        echo(render_rows(k, objs, output == "wide", all_namespaces and namespaced))
