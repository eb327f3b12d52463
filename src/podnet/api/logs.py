"""``GET .../pods/NAME/log``: a container's log file (what the pod's process wrote), plain or followed.

Parameters as kube-apiserver: ``container``, ``tailLines``, ``limitBytes``, ``timestamps``, ``sinceSeconds``,
``sinceTime``, ``follow``, ``previous`` (podnet keeps no previous container: 400). Log files carry no
separate time per line, so a line's time is the one it starts with (klog's ``I1122 18:55:58.901303``, as
kube-proxy and flannel write, or RFC 3339, as the built-in server writes), else the time of the line before
it, else the file's modification time; followed lines are stamped when they are read.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from podnet.api import view
from podnet.api.resources import Resource
from podnet.api.status import bad_request, not_found
from podnet.dataplane import lab as labrt

if TYPE_CHECKING:
    from podnet.api.server import Handler

KLOG = re.compile(rb"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,6})")
RFC3339 = re.compile(rb"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z")


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


def line_time(line: bytes, year: int) -> float | None:
    """The time a log line starts with (klog or RFC 3339), or None."""
    try:
        m = KLOG.match(line)
        if m:
            mo, d, h, mi, s, frac = (int(x) for x in m.groups())
            return datetime(year, mo, d, h, mi, s, tzinfo=UTC).timestamp() + frac / 10 ** len(m.group(6))
        m = RFC3339.match(line)
        if m:
            y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
            frac = m.group(7) or b"0"
            return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp() + int(frac) / 10 ** len(frac)
    except ValueError:
        return None
    return None


def stamped(lines: list[bytes], fallback: float) -> list[tuple[float, bytes]]:
    """Each line with its time (its own, else the previous line's, else ``fallback``)."""
    year = datetime.fromtimestamp(fallback, UTC).year
    out, last = [], None
    for ln in lines:
        t = line_time(ln, year)
        last = t if t is not None else last
        out.append((last if last is not None else fallback, ln))
    return out


def _param(q: dict[str, list[str]], k: str) -> str | None:
    v = q.get(k)
    return v[-1] if v and v[-1] != "" else None


def _int(q: dict[str, list[str]], k: str) -> int | None:
    v = _param(q, k)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise bad_request(f"invalid value for {k}: {v}") from None


def _since(q: dict[str, list[str]]) -> float | None:
    secs = _int(q, "sinceSeconds")
    if secs is not None:
        return time.time() - secs
    ts = _param(q, "sinceTime")
    if ts is None:
        return None
    t = line_time(ts.encode(), 0)
    if t is None:
        raise bad_request(f"invalid value for sinceTime: {ts}")
    return t


def serve(h: Handler, res: Resource, ns: str, name: str, q: dict[str, list[str]]) -> None:
    store = h.server.thread_store()
    it = store.get(view.key(res, ns, name))
    if it is None:
        raise not_found(res, name)
    pod = it.value["object"]
    container = container_of(pod, name, _param(q, "container"))
    if _param(q, "previous") == "true":
        raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
    tail = _int(q, "tailLines")
    limit = _int(q, "limitBytes")
    since = _since(q)
    stamps = _param(q, "timestamps") == "true"
    follow = _param(q, "follow") == "true"
    path = labrt.log_path(h.server.lab, ns, name, container)
    try:
        fh = open(path, "rb")  # noqa: SIM115 (kept open while following)
    except FileNotFoundError:
        fh = open(os.devnull, "rb")  # noqa: SIM115
    with fh:
        lines = stamped(fh.read().splitlines(keepends=True), os.fstat(fh.fileno()).st_mtime)
        if since is not None:
            lines = [(t, ln) for t, ln in lines if t >= since]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        out = b"".join(rfc3339nano(t).encode() + b" " + ln if stamps else ln for t, ln in lines)
        if limit is not None:
            out = out[:limit]
        if not follow:
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(out)))
            h.end_headers()
            h.wfile.write(out)
            return
        _follow(h, fh, out, limit, stamps, lambda: store.get(view.key(res, ns, name)) is None)


def _follow(h: Handler, fh, first: bytes, limit: int | None, stamps: bool, gone) -> None:
    h.start_chunked("text/plain")
    sent = len(first)
    try:
        h.chunk(first)
        pending = b""
        while limit is None or sent < limit:
            chunk = fh.read()
            if chunk:
                pending += chunk
                done, _, pending = pending.rpartition(b"\n")
                if done:
                    text = done + b"\n"
                    if stamps:
                        now = rfc3339nano(time.time()).encode()
                        text = b"".join(now + b" " + ln for ln in text.splitlines(keepends=True))
                    if limit is not None:
                        text = text[:limit - sent]
                    h.chunk(text)
                    sent += len(text)
                continue
            if h.client_gone() or h.server.stop.is_set() or gone():
                break
            time.sleep(0.2)
    except OSError:
        h.close_connection = True
        return
    h.end_chunked()
