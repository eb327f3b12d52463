"""Named network namespaces, created and entered in-process (no helper processes).

Namespaces are created the way ``ip netns add`` does (a bind mount of a new net namespace under
/run/netns), so ``ip netns list`` / ``ip netns exec`` work on them. Netlink sockets are opened *inside*
a namespace by switching the calling thread there just long enough to create the socket: a socket
stays bound to the namespace it was created in. Every switch returns to the original namespace in a
``finally``; podnet never opens a netlink socket, nor writes a sysctl, in the root namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from collections.abc import Iterator

from pyroute2 import IPRoute

from podnet.errors import MissingFeatureError, NotRootError, PodnetError
from podnet.model.names import PREFIX

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
NETLINK_ROUTE = 0

_libc = ctypes.CDLL(None, use_errno=True)
_origin_fd: int | None = None


def _origin() -> int:
    global _origin_fd
    if _origin_fd is None:
        _origin_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    return _origin_fd


def _guard(name: str) -> None:
    if not name.startswith(PREFIX) or "/" in name or name in (".", ".."):
        raise PodnetError(f"refusing to touch namespace {name!r}: podnet only manages {PREFIX}* namespaces")


def path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRootError("podnet needs root to create network namespaces (run it with sudo)")


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def list_all() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with this thread inside namespace ``name`` (and always come back)."""
    _guard(name)
    origin = _origin()
    try:
        fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PodnetError(f"network namespace {name} does not exist") from None
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(origin)
    finally:
        os.close(fd)


def _prepare_rundir() -> None:
    os.makedirs(NETNS_DIR, exist_ok=True)
    # as iproute2: make /run/netns a shared mount point so the bind mounts propagate
    if _libc.mount(b"", NETNS_DIR.encode(), b"none", MS_SHARED | MS_REC, None) != 0:
        if _libc.mount(NETNS_DIR.encode(), NETNS_DIR.encode(), b"none", MS_BIND | MS_REC, None) != 0:
            e = ctypes.get_errno()
            raise PodnetError(f"cannot bind-mount {NETNS_DIR}: {os.strerror(e)}")
        if _libc.mount(b"", NETNS_DIR.encode(), b"none", MS_SHARED | MS_REC, None) != 0:
            e = ctypes.get_errno()
            raise PodnetError(f"cannot make {NETNS_DIR} shared: {os.strerror(e)}")


_rundir_ready = False


def create(name: str) -> None:
    """Create a named namespace (like ``ip netns add``); an existing one is an error."""
    global _rundir_ready
    _guard(name)
    if not _rundir_ready:
        _prepare_rundir()
        _rundir_ready = True
    p = path(name)
    fd = os.open(p, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    os.close(fd)
    origin = _origin()
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise PodnetError(f"cannot create network namespace {name}: {os.strerror(e)}")
        try:
            if _libc.mount(b"/proc/thread-self/ns/net", p.encode(), b"none", MS_BIND, None) != 0:
                e = ctypes.get_errno()
                raise PodnetError(f"cannot bind network namespace {name}: {os.strerror(e)}")
        finally:
            _setns(origin)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(p)
        raise


def remove(name: str) -> None:
    """Remove a named namespace (like ``ip netns del``); a missing one is not an error."""
    _guard(name)
    p = path(name)
    _libc.umount2(p.encode(), MNT_DETACH)
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise


def iproute(name: str) -> IPRoute:
    """An IPRoute handle whose netlink socket lives in namespace ``name``."""
    with entered(name):
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    return IPRoute(fileno=s.detach())


def write_sysctls(name: str, values: dict[str, str]) -> None:
    """Write net.* sysctls inside namespace ``name`` (/proc/sys/net resolves to the caller's netns)."""
    if not values:
        return
    with entered(name):
        for key, value in values.items():
            if not key.startswith("net."):
                raise PodnetError(f"refusing non-namespaced sysctl {key}")
            p = "/proc/sys/" + key.replace(".", "/")
            try:
                with open(p, "w") as f:
                    f.write(value)
            except FileNotFoundError:
                raise MissingFeatureError(f"sysctl {key} does not exist: the kernel lacks the feature "
                                          f"({'br_netfilter' if 'bridge' in key else key})") from None


def read_sysctl(name: str, key: str) -> str | None:
    with entered(name):
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None


def inode(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path(name))
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in(names: list[str]) -> dict[str, list[int]]:
    """PIDs whose network namespace is one of ``names`` (like ``ip netns pids``)."""
    by_inode: dict[int, str] = {}
    for n in names:
        st = inode(n)
        if st is not None:
            by_inode[st[1]] = n
    out: dict[str, list[int]] = {}
    if not by_inode:
        return out
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry}/ns/net").st_ino
        except OSError:
            continue
        n = by_inode.get(ino)
        if n is not None:
            out.setdefault(n, []).append(int(entry))
    return out


def netns_of_pid(pid: int) -> str | None:
    try:
        ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None
    for n in list_all():
        st = inode(n)
        if st and st[1] == ino:
            return n
    return None


def check_kernel(features: list[str]) -> None:
    """Fail early, with a clear message, when the kernel lacks something the lab needs."""
    if not os.path.exists("/proc/self/ns/net"):
        raise MissingFeatureError("this kernel has no network namespaces (CONFIG_NET_NS)")
    for f in features:
        if f == "br_netfilter" and not os.path.exists("/proc/sys/net/bridge"):
            raise MissingFeatureError("the kernel lacks br_netfilter (net.bridge.bridge-nf-call-iptables); "
                                      "load it with 'modprobe br_netfilter'")
