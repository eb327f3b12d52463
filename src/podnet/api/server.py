"""The HTTP side of the lab's API server: routing, discovery, reads (get, list, Tables), watches, writes.

One thread per connection (TLS handshakes happen in that thread, so a stuck client blocks nobody); each
thread has its own store connection. A ``Hub`` thread follows the store's revision and wakes the watches;
a ``Syncer`` thread keeps the served view current (``view.sync``) when the store moves and every second
(pod readiness), and compacts the store's history every five minutes, as kube-apiserver compacts etcd.
"""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from podnet.api import discovery, exec_, logs, protobuf, tables, view
from podnet.api.resources import GROUPS, Resource, lookup
from podnet.api.selectors import matcher, selectable
from podnet.api.status import ApiError, bad_request, expired, no_resource, not_found
from podnet.api.writes import Writer
from podnet.errors import PodnetError
from podnet.store.kv import Compacted, Store

WATCH_DEFAULT_TIMEOUT = 1800.0        # seconds, when the client names none (kube-apiserver: 30-60 min)
COMPACT_EVERY = 300.0
READINESS_EVERY = 1.0
TABLE = "as=Table"


class Hub:
    """Follows the store's revision; watches wait on it instead of polling the store each."""

    def __init__(self, open_store) -> None:
        self.cond = threading.Condition()
        self.revision = 0
        self.open_store = open_store

    def run(self, stop: threading.Event) -> None:
        store = self.open_store()
        while not stop.is_set():
            try:
                rev = store.revision
            except Exception:
                rev = self.revision
            if rev != self.revision:
                with self.cond:
                    self.revision = rev
                    self.cond.notify_all()
            stop.wait(0.05)

    def wait_past(self, rev: int, timeout: float) -> None:
        with self.cond:
            if self.revision <= rev:
                self.cond.wait(timeout)


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, lab: str, store_path: str, port: int, token: str, ssl_ctx: ssl.SSLContext | None) -> None:
        self.lab = lab
        self.store_path = store_path
        self.token = token
        self.ssl_ctx = ssl_ctx
        self.local = threading.local()
        self.stop = threading.Event()
        self.exit_when_lab_gone = False     # the server process sets it; tests running it in-process do not
        self.hub = Hub(self.new_store)
        self.writer = Writer(lab, self.thread_store)
        super().__init__(("127.0.0.1", port), Handler)

    def new_store(self) -> Store:
        return Store(self.store_path)

    def thread_store(self) -> Store:
        st = getattr(self.local, "store", None)
        if st is None:
            st = self.local.store = self.new_store()
        return st

    def finish_request(self, request, client_address) -> None:  # runs in the connection's thread
        if self.ssl_ctx is not None:
            try:
                request.settimeout(10)
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ssl.SSLError):
                return
        self.RequestHandlerClass(request, client_address, self)

    def start_background(self) -> None:
        threading.Thread(target=self.hub.run, args=(self.stop,), daemon=True, name="hub").start()
        threading.Thread(target=self.sync_loop, daemon=True, name="sync").start()

    def sync_loop(self) -> None:
        store = self.new_store()
        seen, last_sync, last_compact = -1, 0.0, time.monotonic()
        compact_to = store.revision
        last_error = ""
        while not self.stop.is_set():
            if not os.path.exists(self.store_path):   # the lab was removed
                if self.exit_when_lab_gone:
                    os._exit(0)
                self.stop.set()
                return
            try:
                rev = store.revision
                now = time.monotonic()
                if rev != seen or now - last_sync >= READINESS_EVERY:
                    with self.writer.lock:
                        view.sync(store)
                    seen, last_sync = store.revision, now
                if now - last_compact >= COMPACT_EVERY:
                    store.compact(compact_to)   # history older than one interval, as kube-apiserver does
                    compact_to, last_compact = store.revision, now
            except PodnetError as e:   # e.g. a lab still being created
                if str(e) != last_error:
                    print(f"sync: {e}", flush=True)
                last_error = str(e)
                time.sleep(0.2)
            except Exception:
                traceback.print_exc()
                time.sleep(1)
            self.stop.wait(0.1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer
    server_version = "podnet-apiserver"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stdout.write(f"{time.strftime('%H:%M:%S')} {format % args}\n")

    # -- plumbing -----------------------------------------------------------------------------------
    def send_json(self, code: int, body: Any, ctype: str = "application/json",
                  warnings: list[str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for w in warnings or []:
            self.send_header("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def end_chunked(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def client_gone(self) -> bool:
        """A watch or log client never sends after its request: readable means closed."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            return self.connection.recv(1) == b""
        except (OSError, ValueError, ssl.SSLError):
            return True

    def body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if not raw:
            return None
        if ctype in ("application/yaml", "application/apply-patch+yaml"):
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as e:
                raise bad_request(f"error converting YAML to JSON: {e}") from None
        if "protobuf" in ctype:
            return protobuf.decode(raw)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"couldn't get version/kind; json parse error: {e}") from None

    # -- entry points -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_HEAD(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def dispatch(self, method: str) -> None:
        try:
            if not self.authorized():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            url = urlsplit(self.path)
            q = {k: v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            self.route(method, url.path.rstrip("/") or "/", q)
        except ApiError as e:
            self.fail(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:  # never a crash: a 500 Status, and the trace in the server log
            traceback.print_exc()
            self.fail(ApiError(500, f"Internal error occurred: {type(e).__name__}: {e}", "InternalError"))

    def fail(self, e: ApiError) -> None:
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if n and self.command in ("POST", "PUT", "PATCH", "DELETE") and not getattr(self, "_body_read", False):
                self.rfile.read(n)
            self.send_json(e.code, e.status())
        except OSError:
            self.close_connection = True

    def authorized(self) -> bool:
        if not self.server.token:
            return True
        auth = self.headers.get("Authorization") or ""
        return auth == f"Bearer {self.server.token}"

    def route(self, method: str, path: str, q: dict[str, list[str]]) -> None:
        accept = self.headers.get("Accept") or ""
        if method == "GET":
            if path == "/version":
                return self.send_json(200, discovery.version())
            if path in ("/healthz", "/livez", "/readyz"):
                return self.send_text(200, "ok")
            if path in ("/api", "/apis"):
                v = discovery.wants_aggregated(accept)
                if v:
                    return self.send_json(200, discovery.aggregated(path == "/api", v),
                                          discovery.AGGREGATED.format(v=v))
                return self.send_json(200, discovery.api_versions() if path == "/api" else discovery.api_groups())
            if path == "/api/v1":
                return self.send_json(200, discovery.resource_list("", "v1"))
            if path == "/openapi/v3":
                return self.send_json(200, discovery.openapi_index())
            if path.startswith("/openapi/v3/"):
                gv = path[len("/openapi/v3/"):].split("/")
                doc = None
                if gv[0] == "api" and len(gv) == 2:
                    doc = discovery.openapi_doc("", gv[1])
                elif gv[0] == "apis" and len(gv) == 3:
                    doc = discovery.openapi_doc(gv[1], gv[2])
                if doc is None:
                    raise no_resource()
                return self.send_json(200, doc)
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) >= 2 and parts[1] in GROUPS and parts[1]:
            group = parts[1]
            if len(parts) == 2 and method == "GET":
                return self.send_json(200, discovery.api_group(group))
            if len(parts) == 3 and method == "GET":
                rl = discovery.resource_list(group, parts[2])
                if rl is None:
                    raise no_resource()
                return self.send_json(200, rl)
            if len(parts) >= 4:
                return self.resource(method, group, parts[2], parts[3:], q)
        if parts[0] == "api" and len(parts) >= 3 and parts[1] == "v1":
            return self.resource(method, "", "v1", parts[2:], q)
        raise no_resource()

    # -- resources ----------------------------------------------------------------------------------
    def resource(self, method: str, group: str, version: str, rest: list[str], q: dict[str, list[str]]) -> None:
        ns: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            ns, rest = rest[1], rest[2:]
        res = lookup(group, version, rest[0])
        if res is None:
            raise no_resource()
        if ns is not None and not res.namespaced:
            raise no_resource()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (sub and sub not in res.subresources):
            raise no_resource()
        if res.namespaced and name is not None and ns is None:
            raise no_resource()
        dry_run = _q(q, "dryRun") == "All"
        validation = _q(q, "fieldValidation") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f"fieldValidation parameter unsupported: {validation}")
        store = self.server.thread_store()
        writer = self.server.writer
        warnings: list[str] = []
        if sub == "log" and method == "GET":
            return logs.serve(self, res, ns or "", name or "", q)
        if sub == "exec" and method in ("GET", "POST"):
            return exec_.serve(self, ns or "", name or "", q)
        if sub == "scale" and name is not None:
            return self.scale(method, res, ns or "", name, dry_run, validation)
        if sub == "status" and method == "GET":
            sub = None
        if sub is not None:
            raise ApiError(405, "podnet serves status subresources read-only", "MethodNotAllowed")
        if method == "GET":
            if name is None:
                if _q(q, "watch") in ("true", "1"):
                    return self.watch(res, ns, q)
                return self.list(res, ns, q, store)
            it = store.get(view.key(res, ns or "", name))
            if it is None:
                raise not_found(res, name)
            obj = _with_rv(it.value["object"], it.mod_revision)
            if TABLE in (self.headers.get("Accept") or ""):
                return self.send_json(200, tables.table(res.plural, [obj], str(it.mod_revision),
                                                        _q(q, "includeObject") or "Metadata"))
            return self.send_json(200, obj)
        self._body_read = True
        body = self.body()
        if method == "POST" and name is None:
            if res.namespaced and ns is None:
                raise no_resource()
            obj = writer.create(res, ns or "", body, dry_run=dry_run, validation=validation, warnings=warnings)
            return self.send_json(201, obj, warnings=warnings)
        if method == "PUT" and name is not None:
            obj = writer.update(res, ns or "", name, body, dry_run=dry_run, validation=validation, warnings=warnings)
            return self.send_json(200, obj, warnings=warnings)
        if method == "PATCH" and name is not None:
            ctype = self.headers.get("Content-Type") or ""
            obj = writer.patch(res, ns or "", name, ctype, body, dry_run=dry_run, validation=validation,
                               warnings=warnings)
            return self.send_json(200, obj, warnings=warnings)
        if method == "DELETE" and name is not None:
            return self.send_json(200, writer.delete(res, ns or "", name, dry_run=dry_run,
                                                     options=body if isinstance(body, dict) else None))
        if method == "DELETE" and name is None:
            return self.delete_collection(res, ns, q, store, dry_run)
        raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")

    def scale(self, method: str, res: Resource, ns: str, name: str, dry_run: bool, validation: str) -> None:
        """``deployments/NAME/scale`` (autoscaling/v1 Scale): what ``kubectl scale`` reads and patches."""
        writer = self.server.writer
        got = writer.current(res, ns, name)
        if got is None:
            raise not_found(res, name)
        if method in ("PUT", "PATCH"):
            self._body_read = True
            body = self.body()
            scale = _scale(got[0])
            if method == "PATCH":
                from podnet.api import patch as patches

                scale = patches.apply(self.headers.get("Content-Type") or "", scale, body, None)
            else:
                scale = body if isinstance(body, dict) else {}
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise bad_request("spec.replicas must be a non-negative integer")
            writer.patch(res, ns, name, "application/merge-patch+json", {"spec": {"replicas": replicas}},
                         dry_run=dry_run, validation=validation, warnings=[])
            got = writer.current(res, ns, name) or got
        elif method != "GET":
            raise ApiError(405, "the server does not allow this method on the requested resource",
                           "MethodNotAllowed")
        return self.send_json(200, _scale(got[0]))

    def selected(self, res: Resource, ns: str | None, q: dict[str, list[str]], store: Store) \
            -> tuple[list[dict[str, Any]], int]:
        match = matcher(res.kind, _q(q, "labelSelector"), _q(q, "fieldSelector"))
        items, rev = store.list(view.collection(res, ns))
        objs = [_with_rv(it.value["object"], it.mod_revision) for it in items]
        return [o for o in objs if match(selectable(o))], rev

    def list(self, res: Resource, ns: str | None, q: dict[str, list[str]], store: Store) -> None:
        objs, rev = self.selected(res, ns, q, store)
        if TABLE in (self.headers.get("Accept") or ""):
            return self.send_json(200, tables.table(res.plural, objs, str(rev), _q(q, "includeObject") or "Metadata"))
        return self.send_json(200, {"kind": f"{res.kind}List", "apiVersion": res.group_version,
                                    "metadata": {"resourceVersion": str(rev)}, "items": objs})

    def delete_collection(self, res: Resource, ns: str | None, q: dict[str, list[str]], store: Store,
                          dry_run: bool) -> None:
        objs, rev = self.selected(res, ns, q, store)
        done = []
        for o in objs:
            meta = o["metadata"]
            self.server.writer.delete(res, meta.get("namespace", ""), meta["name"], dry_run=dry_run)
            done.append(o)
        self.send_json(200, {"kind": f"{res.kind}List", "apiVersion": res.group_version,
                             "metadata": {"resourceVersion": str(rev)}, "items": done})

    # -- watch --------------------------------------------------------------------------------------
    def watch(self, res: Resource, ns: str | None, q: dict[str, list[str]]) -> None:
        store = self.server.thread_store()
        match = matcher(res.kind, _q(q, "labelSelector"), _q(q, "fieldSelector"))
        as_table = TABLE in (self.headers.get("Accept") or "")
        include = _q(q, "includeObject") or "Metadata"
        timeout = float(_q(q, "timeoutSeconds") or WATCH_DEFAULT_TIMEOUT)
        bookmarks = _q(q, "allowWatchBookmarks") == "true"
        initial_end = _q(q, "sendInitialEvents") == "true"
        prefix = view.collection(res, ns)
        rv = _q(q, "resourceVersion") or ""
        try:
            since = int(rv) if rv not in ("", "0") else None
        except ValueError:
            raise bad_request(f"invalid resource version: {rv}") from None
        if since is not None:
            try:
                store.watch(prefix, since)[:0]
            except Compacted:
                raise expired(rv) from None
        self.start_chunked("application/json")

        def send(etype: str, obj: dict[str, Any], rev: int) -> None:
            obj = _with_rv(obj, rev)
            if as_table and etype != "BOOKMARK":
                obj = tables.table(res.plural, [obj], str(rev), include)
            self.chunk(json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n")

        def bookmark(rev: int, initial: bool = False) -> None:
            obj: dict[str, Any] = {"kind": res.kind, "apiVersion": res.group_version,
                                   "metadata": {"resourceVersion": str(rev)}}
            if initial:
                obj["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
            self.chunk(json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n")

        try:
            if since is None or initial_end:
                items, since = store.list(prefix)
                for it in items:
                    if match(selectable(it.value["object"])):
                        send("ADDED", it.value["object"], it.mod_revision)
                if initial_end and bookmarks:
                    bookmark(since, initial=True)
            deadline = time.monotonic() + timeout
            last_mark = time.monotonic()
            while time.monotonic() < deadline:
                try:
                    events = store.watch(prefix, since)
                except Compacted:
                    self.chunk(json.dumps({"type": "ERROR", "object": expired(since).status()}).encode() + b"\n")
                    break
                for ev in events:
                    etype = _event_type(ev, match)
                    if etype:
                        send(etype, ev.value["object"], ev.revision)
                    since = ev.revision
                if bookmarks and time.monotonic() - last_mark > 60:
                    bookmark(since)
                    last_mark = time.monotonic()
                if self.client_gone() or self.server.stop.is_set():
                    break
                self.server.hub.wait_past(since, min(1.0, max(0.0, deadline - time.monotonic())))
        except OSError:
            self.close_connection = True
            return
        self.end_chunked()


def _event_type(ev, match) -> str | None:
    """ADDED / MODIFIED / DELETED as seen through the watch's selectors (None: not for this watch)."""
    value = ev.value or {}
    now = match(selectable(value.get("object") or {}))
    if ev.type == "DELETE":
        return "DELETED" if now else None
    if value.get("created"):
        return "ADDED" if now else None
    prev = value.get("prev")
    before = match(prev) if prev else now
    if now and before:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if before else None


def _scale(dep: dict[str, Any]) -> dict[str, Any]:
    meta = dep["metadata"]
    sel = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": (dep.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (dep.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(sel.items()))}}


def _with_rv(obj: dict[str, Any], rev: int) -> dict[str, Any]:
    out = dict(obj)
    out["metadata"] = {**obj.get("metadata", {}), "resourceVersion": str(rev)}
    return out


def _q(q: dict[str, list[str]], k: str) -> str | None:
    v = q.get(k)
    return v[-1] if v else None


def serve(lab: str, store_path: str, port: int, token: str, ssl_ctx: ssl.SSLContext | None,
          ready: socket.socket | None = None) -> ApiServer:
    srv = ApiServer(lab, store_path, port, token, ssl_ctx)
    srv.start_background()
    return srv
