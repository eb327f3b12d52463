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
from podnet.model.services import ResolvedServices, resolve_services
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


def load(name: str | None = None, store: Store | None = None) -> tuple[Lab, Store]:
    """The lab as declared in its store (no kernel access)."""
    store = store or open_store(default_lab(name))
    docs = _ordered(store, stored_docs(store))
    lab = resolve(parse_docs(docs), previous=_assignments(store))
    return lab, store


def load_when_saved(name: str, node: str | None = None, timeout: float = 30.0) -> tuple[Lab, Store]:
    """:func:`load` for components: ``up`` starts them before it saves the lab's objects (the store is
    written last, once everything runs), so a fresh lab's store may not hold them (or this node) yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            lab, store = load(name)
            if node is None or any(n.name == node for n in lab.nodes):
                return lab, store
            store.close()
            if time.monotonic() > deadline:
                raise PodnetError(f"node {node!r} is not in lab {name}")
        except PodnetError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


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
    netns.check_kernel(["br_netfilter"])
    existed = os.path.exists(os.path.join(lab_dir(name), "store.db"))
    store = open_store(name, create=True)
    old = None
    if existed:
        with contextlib.suppress(PodnetError):
            old, _ = load(name, store=store)
    # re-running up keeps the objects added since with `apply`: the files replace what they name
    if existed:
        docs = _merge_docs(stored_docs(store), docs)
        manifests = parse_docs(docs)
    lab = resolve(manifests, previous=_assignments(store) if existed else None)
    created: list[str] = []
    api = _api().start(name)   # its start-up overlaps the wiring
    try:
        started = converge(old, lab, store, docs, created.append, progress)
        _api().wait(name, api)
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


def converge(old: Lab | None, lab: Lab, store: Store, docs: list[Doc], on_create: Callable[[str], None],
             progress: Progress = lambda s: None, deleted_keys: tuple[str, ...] = ()) -> int:
    """Bring the kernel and the store from ``old`` (None: nothing yet) to ``lab``; returns how many
    processes were started. New namespaces are reported to ``on_create`` (the caller's rollback list);
    pods that ``lab`` no longer has are stopped and their namespaces removed, last."""
    specs = fabric.compile_lab(lab)
    progress(f"wiring {len(specs)} namespaces")
    apply_specs(specs, on_create)
    write_etc_files(specs)
    progress("starting pods")
    try:
        started = start_processes(lab, store)
    except BaseException:
        for p in lab.pods:   # forget the processes of pods this run added (their namespaces go too)
            if old is None or old.pod(p.namespace, p.name) is None:
                store.delete(f"{RUNTIME}{p.key}")
        raise
    _save(store, lab, docs, deleted_keys)   # last: components act on the store once everything runs
    if lab.cluster.bgp:   # backend bgp: routers' BIRDs (nodes' run in calico-node), then the sessions
        from podnet.dataplane import bird
        routers = bird.ensure_routers(lab, store)
        started += routers
        if routers or bird.nodes_starting(lab, store):
            bird.wait_established(lab, progress=progress)
    if old is not None:
        keep = {p.key for p in lab.pods}
        for p in old.pods:
            if p.key in keep:
                continue
            if not p.host_network:
                _remove_netns(p.netns)
            for prefix in (ASSIGN, RUNTIME, "/registry/pods/"):
                store.delete(f"{prefix}{p.key}")
        for ns in old.namespaces:
            if ns not in lab.namespaces:
                store.delete(f"/registry/namespaces/{ns}")
    return started


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
            if "/" in rel:
                # `ip netns exec` bind-mounts /etc/netns/<ns>/<top> onto /etc/<top>, which must exist
                os.makedirs(os.path.join("/etc", rel.split("/", 1)[0]), exist_ok=True)
            p = os.path.join(ETC_NETNS, s.name, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(content)


def _save(store: Store, lab: Lab, docs: list[Doc], deleted_keys: tuple[str, ...] = ()) -> None:
    """Write the lab's objects in ONE transaction: components never read a half-written lab (objects
    without their address assignments would resolve to other pod IPs)."""
    with store.txn():
        _save_all(store, lab, docs, deleted_keys)


def _save_all(store: Store, lab: Lab, docs: list[Doc], deleted_keys: tuple[str, ...]) -> None:
    keys = []
    for d in docs:
        key = _object_key(d)
        keys.append(key)
        value = {"source": d.where(), "body": plain(d.body)}
        cur = store.get(key)
        if cur is None or cur.value != value:
            store.put(key, value)
    for key in deleted_keys:
        store.delete(key)
    prev = store.get("/podnet/order")
    order = [k for k in (prev.value if prev else []) if k not in deleted_keys]
    order += [k for k in keys if k not in order]
    if prev is None or prev.value != order:
        store.put("/podnet/order", order)
    _put_changed(store, {f"{ASSIGN}{p.key}": {"node": p.node, "ip": str(p.ip)} for p in lab.pods
                         if not p.host_network})
    _put_changed(store, {f"/registry/nodes/{n.name}": k8s.node_object(lab, n) for n in lab.nodes})
    _put_changed(store, {f"/registry/namespaces/{ns.meta.name}": k8s.namespace_object(ns)
                         for ns in lab.namespaces.values()})
    _put_changed(store, {f"/registry/pods/{p.key}": k8s.pod_object(lab, p) for p in lab.pods})


def _put_changed(store: Store, values: dict[str, object]) -> None:
    """Write only what differs, so the revision (what components watch) moves only on real changes."""
    for key, value in values.items():
        cur = store.get(key)
        if cur is None or cur.value != value:
            store.put(key, value)


# -- apply / delete ------------------------------------------------------------------------------
@dataclass
class Change:
    kind: str
    key: str            # ns/name, or name for cluster-scoped objects
    action: str         # created, configured, unchanged, deleted, not found

    def line(self) -> str:
        resource = self.kind.lower()
        name = self.key.split("/", 1)[-1]
        if self.action == "not found":
            return f'Error from server (NotFound): {resource}s "{name}" not found'
        return f"{resource}/{name} {self.action}"


def _merge_docs(current: list[Doc], new: list[Doc]) -> list[Doc]:
    """``current`` with every object ``new`` names replaced (whole: its labels become the file's),
    and the others appended."""
    by_key = {_object_key(d): d for d in new}
    out = [by_key.pop(_object_key(d), d) for d in current]
    return out + [d for d in new if _object_key(d) in by_key]


def _check_cluster(stored: list[Doc], new: list[Doc]) -> list[Doc]:
    """A Cluster document in applied files must be the lab's own, unchanged: changing nodes or networking
    needs `down` and `up`. Returns the documents without it."""
    old = next((d for d in stored if d.body.get("kind") == "Cluster"), None)
    out = []
    for d in new:
        if d.body.get("kind") != "Cluster":
            out.append(d)
            continue
        if old is None or plain(d.body) != plain(old.body):
            name = (d.body.get("metadata") or {}).get("name", "")
            raise PodnetError("the Cluster of a running lab cannot be changed with apply (nodes and networking are "
                              "wired): run `podnet down` and `podnet up` with the new file",
                              where=d.where(), obj=f"Cluster {name}")
    return out


def _check_pod_updates(old: Lab, new: Lab) -> None:
    """As the API server: a pod's spec is immutable (labels and annotations may change in place)."""
    for p in new.pods:
        if p.component or p.pod.owner:
            continue
        before = old.pod(p.namespace, p.name)
        if before is None or before.pod.owner:
            continue
        if before.pod.spec != p.pod.spec or before.pod.requested_ip != p.pod.requested_ip:
            what = "spec" if before.pod.spec != p.pod.spec else "metadata.annotations.podnet.dev/ip"
            raise PodnetError("Forbidden: pod updates may not change fields other than labels and annotations "
                              "(delete the pod and apply it again)", where=p.pod.source or None,
                              obj=f"Pod {p.key}", field=what)


def _doc_kind_key(d: Doc) -> tuple[str, str]:
    key = _object_key(d)[len(OBJECTS):]
    kind, ns, name = key.split("/", 2)
    return kind, f"{ns}/{name}" if ns else name


def apply(files: list[str], lab_name: str | None = None, progress: Progress = lambda s: None) -> list[Change]:
    """``kubectl apply -f``: add or replace the files' objects in a running lab and converge it."""
    return apply_docs(load_files(files), lab_name, progress)


def apply_docs(new_docs: list[Doc], lab_name: str | None = None,
               progress: Progress = lambda s: None) -> list[Change]:
    """:func:`apply` for documents already loaded (the API server's path: one source of truth)."""
    netns.require_root()
    parse_docs(new_docs)   # each document valid on its own, errors naming the file
    cluster = next((d for d in new_docs if d.body.get("kind") == "Cluster"), None)
    name = default_lab(lab_name or ((cluster.body.get("metadata") or {}).get("name") if cluster else None))
    old, store = load(name)
    try:
        stored = stored_docs(store)
        new_docs = _check_cluster(stored, new_docs)
        current = {_object_key(d): plain(d.body) for d in stored}
        changes = []
        for d in new_docs:
            kind, key = _doc_kind_key(d)
            before = current.get(_object_key(d))
            action = "created" if before is None else "unchanged" if before == plain(d.body) else "configured"
            changes.append(Change(kind, key, action))
        docs = _merge_docs(_ordered(store, stored), new_docs)
        lab = resolve(parse_docs(docs), previous=_assignments(store))
        _check_pod_updates(old, lab)
        _converge_running(old, lab, store, docs, progress)
        return changes
    finally:
        store.close()


def delete(files: list[str], lab_name: str | None = None, progress: Progress = lambda s: None) -> list[Change]:
    """``kubectl delete -f``: remove the files' objects (a Namespace takes its objects with it)."""
    return delete_docs(load_files(files), lab_name, progress)


def delete_docs(targets: list[Doc], lab_name: str | None = None,
                progress: Progress = lambda s: None) -> list[Change]:
    """:func:`delete` for documents naming objects (kind, metadata.namespace, metadata.name suffice)."""
    netns.require_root()
    old, store = load(default_lab(lab_name))
    try:
        stored = _ordered(store, stored_docs(store))
        present = {_object_key(d) for d in stored}
        changes, gone = [], set()
        for d in targets:
            kind, key = _doc_kind_key(d)
            if kind == "Cluster":
                raise PodnetError("a lab's Cluster is removed with `podnet down`, not delete", where=d.where(),
                                  obj=f"Cluster {key}")
            okey = _object_key(d)
            if okey not in present:
                changes.append(Change(kind, key, "not found"))
                continue
            gone.add(okey)
            changes.append(Change(kind, key, "deleted"))
            if kind == "Namespace":   # the namespace's objects go with it
                gone |= {k for k in present if k.split("/")[4:5] == [key] and k.split("/")[3] != "Namespace"}
        docs = [d for d in stored if _object_key(d) not in gone]
        lab = resolve(parse_docs(docs), previous=_assignments(store))
        _converge_running(old, lab, store, docs, progress, deleted_keys=tuple(sorted(gone)))
        return changes
    finally:
        store.close()


def _ordered(store: Store, docs: list[Doc]) -> list[Doc]:
    order = store.get("/podnet/order")
    if order is None:
        return docs
    rank = {k: i for i, k in enumerate(order.value)}
    return sorted(docs, key=lambda d: rank.get(_object_key(d), len(rank)))


def _converge_running(old: Lab, lab: Lab, store: Store, docs: list[Doc], progress: Progress,
                      deleted_keys: tuple[str, ...] = ()) -> None:
    created: list[str] = []
    try:
        converge(old, lab, store, docs, created.append, progress, deleted_keys)
    except BaseException:
        progress("failed: rolling back the namespaces this run created")
        for ns_name in reversed(created):
            _remove_netns(ns_name)
        raise


# -- processes ---------------------------------------------------------------------------------
def runtime(store: Store, p: PlacedPod) -> dict[str, int]:
    it = store.get(f"{RUNTIME}{p.key}")
    return dict(it.value) if it else {}


def container_state(store: Store, p: PlacedPod) -> dict[str, bool]:
    pids = runtime(store, p)
    return {c.name: c.name in pids and procs.alive(pids[c.name], p.netns) for c in p.pod.spec.containers}


def ready_pods(lab: Lab, store: Store) -> set[str]:
    """Keys of the pods whose every container runs: the lab's readiness (a pod whose process exited is
    not ready, so it leaves its Services' endpoints, as a failing readiness probe would)."""
    items, _ = store.list(RUNTIME)
    pids = {it.key[len(RUNTIME):]: it.value for it in items}
    inodes: dict[str, int | None] = {}
    out = set()
    for p in lab.pods:
        run = pids.get(p.key) or {}
        if p.netns not in inodes:
            got = netns.inode(p.netns)
            inodes[p.netns] = got[1] if got else None
        if inodes[p.netns] is None:
            continue
        if all(c.name in run and procs.alive(run[c.name], inode=inodes[p.netns]) for c in p.pod.spec.containers):
            out.add(p.key)
    return out


def resolved_services(lab: Lab, store: Store, ready: set[str] | None = None) -> ResolvedServices:
    """The lab's Services with EndpointSlices derived from the pods that are ready (``ready``: pod keys,
    default: :func:`ready_pods` now)."""
    ready = ready_pods(lab, store) if ready is None else ready
    return resolve_services(lab, ready=lambda p: p.key in ready)


def start_processes(lab: Lab, store: Store) -> int:
    """Start every container and component that is not running. Returns how many were started."""
    started = 0
    changed: dict[str, dict[str, int]] = {}
    builtins: list[tuple[str, str, procs.Builtin]] = []   # (pod key, container, what to start)
    for p in lab.pods:
        pids = runtime(store, p)
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
                builtins.append((p.key, c.name, (p.netns, p.name, str(p.ip), ports, log)))
            started += 1
            changed[p.key] = pids
    # the built-in servers in one batch (forked from small helper processes when there are many)
    for (key, container, _), pid in zip(builtins, procs.start_builtins([b for _, _, b in builtins]), strict=True):
        changed[key][container] = pid
    for key, pids in changed.items():
        store.put(f"{RUNTIME}{key}", pids)
    return started


# -- down ----------------------------------------------------------------------------------------
def _remove_netns(name: str) -> None:
    procs.kill_in([name])
    netns.remove(name)
    shutil.rmtree(os.path.join(ETC_NETNS, name), ignore_errors=True)


def lab_namespaces(name: str) -> list[str]:
    prefix = names.lab_prefix(name)
    return [n for n in netns.list_all() if n.startswith(prefix)]


def _api():
    """The lab's Kubernetes API server (``podnet.api.process``: a root-namespace process on 127.0.0.1)."""
    from podnet.api import process

    return process


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
    _api().stop(name)
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
    _api().stop(None)
    procs.kill_in(nss)
    for n in nss:
        netns.remove(n)
    with contextlib.suppress(FileNotFoundError):
        for d in os.listdir(ETC_NETNS):
            if d.startswith(names.PREFIX):
                shutil.rmtree(os.path.join(ETC_NETNS, d), ignore_errors=True)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    return nss
