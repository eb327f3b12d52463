"""A lab's life: bring it up (converging, rolling back on failure), load it, take it down.

State lives under /run/podnet/<lab>/: the store (store.db: the declared objects, the assignments and
the runtime record of processes), logs/ (one file per container), and per-node files. Every namespace
is named pn-<lab>-..., so `down` can also sweep what a killed `up` left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from podnet.compile import fabric
from podnet.compile.state import NetnsSpec
from podnet.dataplane import netns, procs
from podnet.dataplane.apply import Applier
from podnet.errors import PodnetError
from podnet.model import k8s, names
from podnet.model.lab import Lab, PlacedPod, resolve
from podnet.model.manifest import parse_docs
from podnet.model.source import Doc, load_files, plain, rebuild
from podnet.store.kv import Store

RUN_DIR = os.environ.get("PODNET_RUN_DIR", "/run/podnet")
ETC_NETNS = "/etc/netns"
OBJECTS = "/podnet/objects/"
ASSIGN = "/podnet/assign/"
RUNTIME = "/podnet/runtime/"
Progress = Callable[[str], None]


def lab_dir(name: str) -> str:
    return os.path.join(RUN_DIR, name)


def log_path(lab: str, namespace: str, pod: str, container: str) -> str:
    return os.path.join(lab_dir(lab), "logs", f"{namespace}_{pod}_{container}.log")


def list_labs() -> list[str]:
    try:
        return sorted(d for d in os.listdir(RUN_DIR) if os.path.exists(os.path.join(RUN_DIR, d, "store.db")))
    except FileNotFoundError:
        return []


def open_store(name: str, create: bool = False) -> Store:
    d = lab_dir(name)
    if not os.path.exists(os.path.join(d, "store.db")) and not create:
        raise PodnetError(f"no lab named {name!r} (labs: {', '.join(list_labs()) or 'none'})")
    os.makedirs(d, exist_ok=True)
    return Store(os.path.join(d, "store.db"))


def default_lab(name: str | None) -> str:
    if name:
        return name
    labs = list_labs()
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise PodnetError("no lab is running (start one with 'podnet up FILE')")
    raise PodnetError(f"several labs are running ({', '.join(labs)}): name one with --lab")


# -- the declared objects, kept in the store -------------------------------------------------------
def _object_key(doc: Doc) -> str:
    meta = doc.body.get("metadata") or {}
    kind = doc.body.get("kind", "")
    ns = meta.get("namespace", "") if kind not in ("Cluster", "Namespace") else ""
    if kind not in ("Cluster", "Namespace") and not ns:
        ns = "default"
    return f"{OBJECTS}{kind}/{ns}/{meta.get('name', '')}"


def stored_docs(store: Store) -> list[Doc]:
    items, _ = store.list(OBJECTS)
    docs = []
    for i, it in enumerate(items):
        path, line = it.value["source"].rsplit(":", 1) if ":" in it.value["source"] else (it.value["source"], "1")
        docs.append(Doc(path, i, rebuild(it.value["body"], int(line) if line.isdigit() else 1)))
    # the Cluster first, then the rest in their declaration order
    docs.sort(key=lambda d: (d.body.get("kind") != "Cluster", 0))
    return docs


def load(name: str | None = None) -> tuple[Lab, Store]:
    """The lab as declared in its store (no kernel access)."""
    store = open_store(default_lab(name))
    docs = stored_docs(store)
    order = store.get("/podnet/order")
    if order is not None:
        rank = {k: i for i, k in enumerate(order.value)}
        docs.sort(key=lambda d: rank.get(_object_key(d), len(rank)))
    lab = resolve(parse_docs(docs), previous=_assignments(store))
    return lab, store


def _assignments(store: Store) -> dict[str, tuple[str, str]]:
    items, _ = store.list(ASSIGN)
    return {it.key[len(ASSIGN):]: (it.value["node"], it.value["ip"]) for it in items}


# -- up ------------------------------------------------------------------------------------------
@dataclass
class UpResult:
    lab: Lab
    created: list[str]
    started: int
    seconds: float


def up(files: list[str], progress: Progress = lambda s: None) -> UpResult:
    t0 = time.monotonic()
    netns.require_root()
    docs = load_files(files)
    manifests = parse_docs(docs)
    if manifests.cluster is None:
        raise PodnetError("no Cluster document (apiVersion podnet.dev/v1alpha1, kind Cluster) in "
                          + ", ".join(files))
    name = manifests.cluster.name
    netns.require_root()
    netns.check_kernel(["br_netfilter"])
    existed = os.path.exists(os.path.join(lab_dir(name), "store.db"))
    store = open_store(name, create=True)
    lab = resolve(manifests, previous=_assignments(store) if existed else None)
    created: list[str] = []
    started = 0
    try:
        specs = fabric.compile_lab(lab)
        progress(f"wiring {len(specs)} namespaces")
        apply_specs(specs, created.append)
        write_etc_files(specs)
        _save(store, lab, docs)
        progress("starting pods")
        started = start_processes(lab, store)
    except BaseException:
        progress("failed: rolling back")
        if existed:
            for ns_name in reversed(created):
                _remove_netns(ns_name)
        else:
            store.close()
            teardown(name)
        raise
    store.close()
    return UpResult(lab=lab, created=created, started=started, seconds=time.monotonic() - t0)


def apply_specs(specs: list[NetnsSpec], on_create: Callable[[str], None] | None = None) -> None:
    applier = Applier(on_create=on_create)
    try:
        for s in specs:
            applier.ensure_netns(s.name)
        for s in specs:
            applier.apply(s)
    finally:
        applier.close()


def write_etc_files(specs: list[NetnsSpec]) -> None:
    """Per-namespace files under /etc/netns/<ns>/, which `ip netns exec` bind-mounts over /etc."""
    for s in specs:
        for rel, content in s.files.items():
            top = rel.split("/", 1)[0]
            # `ip netns exec` bind-mounts /etc/netns/<ns>/<top> onto /etc/<top>, which must exist
            os.makedirs(os.path.join("/etc", top), exist_ok=True)
            p = os.path.join(ETC_NETNS, s.name, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(content)


def _save(store: Store, lab: Lab, docs: list[Doc]) -> None:
    keys = []
    for d in docs:
        key = _object_key(d)
        keys.append(key)
        store.put(key, {"source": d.where(), "body": plain(d.body)})
    prev = store.get("/podnet/order")
    order = list(prev.value) if prev else []
    order += [k for k in keys if k not in order]
    store.put("/podnet/order", order)
    for p in lab.pods:
        if not p.host_network:
            store.put(f"{ASSIGN}{p.key}", {"node": p.node, "ip": str(p.ip)})
    for n in lab.nodes:
        store.put(f"/registry/nodes/{n.name}", k8s.node_object(lab, n))
    for ns in lab.namespaces.values():
        store.put(f"/registry/namespaces/{ns.meta.name}", k8s.namespace_object(ns))
    for p in lab.pods:
        store.put(f"/registry/pods/{p.key}", k8s.pod_object(lab, p))


# -- processes ---------------------------------------------------------------------------------
def runtime(store: Store, p: PlacedPod) -> dict[str, int]:
    it = store.get(f"{RUNTIME}{p.key}")
    return dict(it.value) if it else {}


def container_state(store: Store, p: PlacedPod) -> dict[str, bool]:
    pids = runtime(store, p)
    return {c.name: c.name in pids and procs.alive(pids[c.name], p.netns) for c in p.pod.spec.containers}


def start_processes(lab: Lab, store: Store) -> int:
    """Start every container and component that is not running. Returns how many were started."""
    started = 0
    for p in lab.pods:
        pids = runtime(store, p)
        changed = False
        for c in p.pod.spec.containers:
            pid = pids.get(c.name)
            if pid and procs.alive(pid, p.netns):
                continue
            log = log_path(lab.name, p.namespace, p.name, c.name)
            if p.component:
                argv = [sys.executable, "-m", f"podnet.components.{p.component}", "--lab", lab.name,
                        "--node", p.node]
                pids[c.name] = procs.start_command(p.netns, argv, log)
            elif c.argv:
                pids[c.name] = procs.start_command(p.netns, c.argv, log, env=c.env, cwd=c.working_dir)
            else:
                ports = [(cp.container_port, cp.protocol) for cp in c.ports]
                pids[c.name] = procs.start_builtin(p.netns, p.name, str(p.ip), ports, log)
            started += 1
            changed = True
        if changed:
            store.put(f"{RUNTIME}{p.key}", pids)
    return started


# -- down ----------------------------------------------------------------------------------------
def _remove_netns(name: str) -> None:
    procs.kill_in([name])
    netns.remove(name)
    shutil.rmtree(os.path.join(ETC_NETNS, name), ignore_errors=True)


def lab_namespaces(name: str) -> list[str]:
    prefix = names.lab_prefix(name)
    return [n for n in netns.list_all() if n.startswith(prefix)]


def teardown(name: str) -> list[str]:
    """Remove every namespace, process and file of lab ``name``; works from the names alone."""
    netns.require_root()
    nss = lab_namespaces(name)
    # namespaces of this lab are pn-<name>-*: another lab named <name>-x would share the prefix, so
    # keep the namespaces another lab's store claims
    others = [lab for lab in list_labs() if lab != name and lab.startswith(name + "-")]
    if others:
        claimed = set()
        for other in others:
            with contextlib.suppress(Exception):
                o, st = load(other)
                claimed.update(o.all_netns())
                st.close()
        nss = [n for n in nss if n not in claimed]
    procs.kill_in(nss)
    for n in nss:
        netns.remove(n)
        shutil.rmtree(os.path.join(ETC_NETNS, n), ignore_errors=True)
    shutil.rmtree(lab_dir(name), ignore_errors=True)
    return nss


def teardown_all() -> list[str]:
    """Every podnet lab and every pn-* leftover, whatever state it is in."""
    netns.require_root()
    nss = [n for n in netns.list_all() if n.startswith(names.PREFIX)]
    procs.kill_in(nss)
    for n in nss:
        netns.remove(n)
    with contextlib.suppress(FileNotFoundError):
        for d in os.listdir(ETC_NETNS):
            if d.startswith(names.PREFIX):
                shutil.rmtree(os.path.join(ETC_NETNS, d), ignore_errors=True)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    return nss
