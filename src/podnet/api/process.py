"""Running a lab's API server: started by ``podnet up`` (kept when it already runs), stopped by ``down``.

It is a process in the root network namespace listening on 127.0.0.1 only (binding a loopback socket
changes no network configuration), because kubectl runs there. Its files live in
``/run/podnet/<lab>/api/`` (``server.json``: pid, port, scheme; ``token``; ``ca.crt``, ``tls.crt``,
``tls.key``; ``server.log``) and the kubeconfig at ``/run/podnet/<lab>/kubeconfig``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time

from podnet.dataplane import lab as labrt
from podnet.errors import PodnetError

START_TIMEOUT = 15.0


def api_dir(lab: str) -> str:
    return os.path.join(labrt.lab_dir(lab), "api")


def kubeconfig_path(lab: str) -> str:
    return os.path.join(labrt.lab_dir(lab), "kubeconfig")


def state_path(lab: str) -> str:
    return os.path.join(api_dir(lab), "server.json")


def read_state(lab: str) -> dict | None:
    try:
        with open(state_path(lab)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def is_server(pid: int, lab: str) -> bool:
    """True if ``pid`` is the API server of ``lab`` (not a reused PID)."""
    argv = _cmdline(pid)
    return "podnet.api" in argv and any(a == "--lab" and b == lab for a, b in itertools.pairwise(argv))


def server_pids(lab: str | None = None) -> list[int]:
    """API server processes of ``lab`` (any lab: None), found by their exact command line."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        argv = _cmdline(int(d))
        if "podnet.api" not in argv or "--lab" not in argv:
            continue
        name = argv[argv.index("--lab") + 1] if argv.index("--lab") + 1 < len(argv) else ""
        if lab is None or name == lab:
            out.append(int(d))
    return out


def running(lab: str) -> dict | None:
    st = read_state(lab)
    if st and is_server(int(st.get("pid", 0)), lab):
        return st
    return None


def ensure(lab: str) -> dict:
    """Start the lab's API server unless it runs; returns its state (pid, port, scheme)."""
    return wait(lab, start(lab))


def start(lab: str) -> subprocess.Popen | None:
    """Spawn the lab's API server unless it runs (None then); :func:`wait` for it to serve. ``up`` spawns it
    before wiring the lab, so its start-up overlaps the wiring."""
    if running(lab):
        return None
    old = read_state(lab) or {}
    port = int(old.get("port") or os.environ.get("PODNET_API_PORT") or 0)
    http = os.environ.get("PODNET_API_HTTP", "") not in ("", "0", "false")
    os.makedirs(api_dir(lab), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path(lab))
    log = os.open(os.path.join(api_dir(lab), "server.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    argv = [sys.executable, "-m", "podnet.api", "--lab", lab, "--port", str(port), *(["--http"] if http else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                cwd="/", env=env, close_fds=True)
    finally:
        os.close(log)


def wait(lab: str, proc: subprocess.Popen | None) -> dict:
    """The server's state once it serves (it wrote ``server.json``); a PodnetError if it does not start."""
    if proc is None:
        st = running(lab)
        if st:
            return st
        proc = start(lab)
        assert proc is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        st = read_state(lab)
        if st and st.get("pid") == proc.pid:
            return st
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    tail = ""
    with contextlib.suppress(OSError), open(os.path.join(api_dir(lab), "server.log"), errors="replace") as f:
        tail = " | ".join(f.read().strip().splitlines()[-3:])
    raise PodnetError(f"the lab's API server did not start{': ' + tail if tail else ''}",
                      obj=f"lab {lab}")


def stop(lab: str | None, timeout: float = 2.0) -> int:
    """Stop the API server of ``lab`` (every lab's: None); returns how many processes were stopped."""
    pids = set(server_pids(lab))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if os.path.exists(f"/proc/{p}") and _alive(p)}
        time.sleep(0.02)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
