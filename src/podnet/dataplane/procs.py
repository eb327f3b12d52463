"""Processes inside namespaces: pod containers (built-in server or command) and components.

The built-in server is started by forking the calling process (about 1 ms and a few hundred KiB each,
so 1,000 pods cost seconds, not minutes); the child enters the pod's namespace, binds its ports, reports
"ready" through a pipe and serves. Commands run as ``ip netns exec <ns> CMD...`` (an argument vector,
never a shell string), which also applies the namespace's /etc/netns files (resolv.conf, CNI config).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import subprocess
import sys
import time
import traceback

from podnet.dataplane import netns
from podnet.errors import PodnetError

PR_SET_NAME = 15
_libc = ctypes.CDLL(None, use_errno=True)


def _open_log(log_path: str) -> int:
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    return os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def start_builtin(ns: str, pod: str, pod_ip: str, ports: list[tuple[int, str]], log_path: str) -> int:
    """Fork the built-in server into namespace ``ns``; returns its PID once its ports are bound."""
    from podnet.components import podserver

    log_fd = _open_log(log_path)
    r, w = os.pipe()
    gc.freeze()   # the child's collector leaves the parent's objects (and their pages) alone
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            os.setsid()
            fd = os.open(netns.path(ns), os.O_RDONLY)
            if _libc.setns(fd, 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
            os.close(fd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
            sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
            _libc.prctl(PR_SET_NAME, b"podnet-server", 0, 0, 0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            socks = podserver.open_sockets(ports)
            keep = {w} | {s.fileno() for s, _, _ in socks}
            _close_fds_except(keep)
            os.write(w, b"ok")
            os.close(w)
            podserver.serve(pod, pod_ip, socks)
        except BaseException as e:
            with contextlib.suppress(Exception):
                os.write(w, f"error: {e}".encode())
                traceback.print_exc()
        finally:
            os._exit(code)
    os.close(log_fd)
    os.close(w)
    gc.unfreeze()
    msg = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        msg += chunk
    os.close(r)
    if msg != b"ok":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise PodnetError(f"pod {pod}: built-in server failed: {msg.decode(errors='replace') or 'exited'}")
    return pid


Builtin = tuple[str, str, str, list[tuple[int, str]], str]   # (netns, pod, pod IP, ports, log path)
ZYGOTE_BATCH = 64


def start_builtins(batch: list[Builtin]) -> list[int]:
    """Start many built-in servers; returns their PIDs in order.

    Forking hundreds of children from one process gets slower with every child (the kernel's anon_vma
    chains of the forking process grow), so large batches are split: a short-lived "zygote" child forks
    at most ZYGOTE_BATCH servers and reports their PIDs, then exits (the servers live on)."""
    if len(batch) <= ZYGOTE_BATCH // 4:
        return [start_builtin(*b) for b in batch]
    pids: list[int] = []
    for start in range(0, len(batch), ZYGOTE_BATCH):
        pids += _zygote(batch[start:start + ZYGOTE_BATCH])
    return pids


def _zygote(batch: list[Builtin]) -> list[int]:
    r, w = os.pipe()
    gc.freeze()
    pid = os.fork()
    if pid == 0:   # the zygote
        code = 0
        try:
            os.close(r)
            for b in batch:
                os.write(w, f"{start_builtin(*b)}\n".encode())
        except BaseException as e:
            code = 1
            with contextlib.suppress(Exception):
                os.write(w, f"error: {e}\n".encode())
        finally:
            os._exit(code)
    os.close(w)
    gc.unfreeze()
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    out: list[int] = []
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("error: "):
            raise PodnetError(line[len("error: "):])
        out.append(int(line))
    if len(out) != len(batch):
        raise PodnetError(f"a process starter exited after {len(out)} of {len(batch)} pod servers")
    return out


def _close_fds_except(keep: set[int]) -> None:
    for fd in range(3, _max_fd()):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _max_fd() -> int:
    try:
        return max(int(x) for x in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return 1024


def start_command(ns: str, argv: list[str], log_path: str, env: dict[str, str] | None = None,
                  cwd: str | None = None) -> int:
    """Run ``argv`` inside namespace ``ns`` (via ``ip netns exec``), detached, output to ``log_path``."""
    log_fd = _open_log(log_path)
    full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root",
                **(env or {})}
    try:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL, stdout=log_fd,
                                stderr=log_fd, start_new_session=True, env=full_env, cwd=cwd or None,
                                close_fds=True)
    except FileNotFoundError as e:
        raise PodnetError(f"cannot start {argv[0]!r} in {ns}: {e.strerror}") from None
    finally:
        os.close(log_fd)
    return proc.pid


def stopped(pid: int) -> bool:
    """True if ``pid`` is stopped (SIGSTOP): it exists but does nothing, as a hung process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except OSError:
        return False


def alive(pid: int, ns: str | None = None, *, inode: int | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when ``ns`` (or its ``inode``) is given, lives in that
    namespace."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state in ("Z", "X"):
        return False
    if ns is None and inode is None:
        return True
    if inode is None:
        got = netns.inode(ns) if ns else None
        if got is None:
            return False
        inode = got[1]
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == inode
    except OSError:
        return False


def kill_in(names: list[str], timeout: float = 2.0) -> int:
    """Terminate every process living in these namespaces (SIGTERM, then SIGKILL)."""
    victims = [pid for pids in netns.pids_in(names).values() for pid in pids if pid != os.getpid()]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = victims
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap()
        left = [p for p in left if alive(p)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap()
    return len(victims)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
