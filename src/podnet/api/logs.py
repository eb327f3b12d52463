"""``GET .../pods/NAME/log``: a container's log file (what the pod's process wrote), plain or followed.

Parameters as kube-apiserver: ``container``, ``tailLines``, ``limitBytes``, ``timestamps``, ``follow``,
``previous`` (podnet keeps no previous container: 400). Log files carry no per-line time, so
``timestamps=true`` prefixes lines already written with the file's modification time and followed lines
with the time they were read; ``sinceSeconds``/``sinceTime`` are accepted and not applied.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from podnet.api import view
from podnet.api.resources import Resource
from podnet.api.status import bad_request, not_found
from podnet.dataplane import lab as labrt

if TYPE_CHECKING:
    from podnet.api.server import Handler


def container_of(pod: dict[str, Any], name: str, wanted: str | None, verb: str = "") -> str:
    """The container a log or exec request means (kubectl sends ``container``; others may not)."""
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if wanted:
        if wanted not in names:
            raise bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted
    default = ((pod.get("metadata") or {}).get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if default in names:
        return default
    if len(names) == 1:
        return names[0]
    raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")


def rfc3339nano(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _int(q: dict[str, list[str]], k: str) -> int | None:
    v = q.get(k)
    if not v or v[-1] == "":
        return None
    try:
        return int(v[-1])
    except ValueError:
        raise bad_request(f"invalid value for {k}: {v[-1]}") from None


def serve(h: Handler, res: Resource, ns: str, name: str, q: dict[str, list[str]]) -> None:
    store = h.server.thread_store()
    it = store.get(view.key(res, ns, name))
    if it is None:
        raise not_found(res, name)
    pod = it.value["object"]
    container = container_of(pod, name, (q.get("container") or [None])[-1])
    if (q.get("previous") or ["false"])[-1] == "true":
        raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
    tail = _int(q, "tailLines")
    limit = _int(q, "limitBytes")
    stamps = (q.get("timestamps") or ["false"])[-1] == "true"
    follow = (q.get("follow") or ["false"])[-1] == "true"
    path = labrt.log_path(h.server.lab, ns, name, container)
    try:
        f = open(path, "rb")  # noqa: SIM115 (kept open while following)
    except FileNotFoundError:
        f = None
    with f if f is not None else open(os.devnull, "rb") as fh:
        data = fh.read()
        lines = data.splitlines(keepends=True)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        if stamps:
            mtime = os.fstat(fh.fileno()).st_mtime if f is not None else time.time()
            lines = [rfc3339nano(mtime).encode() + b" " + ln for ln in lines]
        out = b"".join(lines)
        if limit is not None:
            out = out[:limit]
        if not follow:
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(out)))
            h.end_headers()
            h.wfile.write(out)
            return
        h.start_chunked("text/plain")
        sent = len(out)
        try:
            h.chunk(out)
            pending = b""
            while limit is None or sent < limit:
                chunk = fh.read()
                if chunk:
                    pending += chunk
                    done, _, pending = pending.rpartition(b"\n")
                    if done:
                        text = done + b"\n"
                        if stamps:
                            text = b"".join(rfc3339nano(time.time()).encode() + b" " + ln
                                            for ln in text.splitlines(keepends=True))
                        if limit is not None:
                            text = text[:limit - sent]
                        h.chunk(text)
                        sent += len(text)
                    continue
                if h.client_gone() or h.server.stop.is_set() or store.get(view.key(res, ns, name)) is None:
                    break
                time.sleep(0.2)
        except OSError:
            h.close_connection = True
            return
        h.end_chunked()


