"""``pods/NAME/exec`` over WebSocket (``v5.channel.k8s.io``, and ``v4.channel.k8s.io``), what kubectl 1.30+
and the official Python client use: the command runs in the pod's network namespace
(``ip netns exec``, so the pod's resolv.conf applies), with stdin, stdout, stderr, a TTY and its resizes,
and its exit code reported on the status channel as kubelet does.

Frames are binary; the first byte is the channel: 0 stdin, 1 stdout, 2 stderr, 3 status (a Status
JSON), 4 resize (``{"Width":W,"Height":H}``), 255 close (v5: ``[255, 0]`` closes stdin). kubectl's SPDY
fallback (and kubectl <= 1.29, SPDY only) gets a 400.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import queue
import select
import signal
import ssl
import struct
import subprocess
import termios
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import generate_accept_token

from podnet.api import view
from podnet.api.logs import container_of
from podnet.api.resources import BY_KIND
from podnet.api.status import bad_request, not_found

if TYPE_CHECKING:
    from podnet.api.server import Handler

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def exit_status(code: int) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def _flag(q: dict[str, list[str]], k: str) -> bool:
    return (q.get(k) or ["false"])[-1] in ("true", "1")


def serve(h: Handler, ns: str, name: str, q: dict[str, list[str]]) -> None:
    res = BY_KIND["Pod"]
    it = h.server.thread_store().get(view.key(res, ns, name))
    if it is None:
        raise not_found(res, name)
    pod = it.value["object"]
    container_of(pod, name, (q.get("container") or [None])[-1])
    command = q.get("command") or []
    if not command:
        raise bad_request("you must specify at least 1 command")
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    if (h.headers.get("Upgrade") or "").lower() != "websocket":
        raise bad_request("podnet's API server runs exec over WebSocket only (v5.channel.k8s.io or "
                          "v4.channel.k8s.io: kubectl 1.30 or later, or the Python client); SPDY is not supported")
    offered = [p.strip() for p in (h.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
    proto = next((p for p in PROTOCOLS if p in offered), None)
    if proto is None:
        raise bad_request(f"no supported exec protocol among {offered} (supported: {', '.join(PROTOCOLS)})")
    netns = ((pod.get("metadata") or {}).get("annotations") or {}).get("podnet.dev/netns")
    if not netns:
        raise bad_request(f"pod {name} has no network namespace")
    h.send_response(101)
    h.send_header("Upgrade", "websocket")
    h.send_header("Connection", "Upgrade")
    h.send_header("Sec-WebSocket-Accept",
                  generate_accept_token(h.headers.get("Sec-WebSocket-Key", "").encode()).decode())
    h.send_header("Sec-WebSocket-Protocol", proto)
    h.end_headers()
    h.wfile.flush()
    h.close_connection = True
    session = Session(h, ["ip", "netns", "exec", netns, *command], tty=_flag(q, "tty"), stdin=_flag(q, "stdin"),
                      stderr=_flag(q, "stderr"))
    try:
        session.run()
    except Exception as e:   # after the upgrade, errors go on the status channel (never an HTTP answer)
        traceback.print_exc()
        with contextlib.suppress(Exception):
            session.send(ERROR, json.dumps({"metadata": {}, "status": "Failure", "reason": "InternalError",
                                            "message": f"exec failed: {e}"}).encode())
            session.sock.sendall(session.ws.send(CloseConnection(code=1011)))


class Session:
    def __init__(self, h: Handler, argv: list[str], *, tty: bool, stdin: bool, stderr: bool) -> None:
        self.h = h
        self.sock = h.connection
        self.ws = Connection(ConnectionType.SERVER)
        self.tty = tty
        self.argv = argv
        self.want_stdin, self.want_stderr = stdin, stderr
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root"}
        self.master: int | None = None
        self.slave: int | None = None
        self.outs: dict[int, int] = {}
        self.stdin_q: queue.Queue[bytes | None] = queue.Queue()
        self.stdin_fd: int | None = None
        self.resized = False
        self.pending = b""
        if tty:
            self.env["TERM"] = "xterm"
            self.master, self.slave = pty.openpty()
            self.stdin_fd = self.master if stdin else None

    def spawn(self) -> None:
        if self.tty:
            assert self.master is not None and self.slave is not None
            self.proc = subprocess.Popen(["setsid", "--ctty", *self.argv], stdin=self.slave, stdout=self.slave,
                                         stderr=self.slave, env=self.env, close_fds=True)
            os.close(self.slave)
            self.outs[self.master] = STDOUT
        else:
            err = subprocess.PIPE if self.want_stderr else subprocess.STDOUT
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE if self.want_stdin else subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err, env=self.env, close_fds=True,
                                         start_new_session=True)
            assert self.proc.stdout is not None
            self.outs[self.proc.stdout.fileno()] = STDOUT
            if self.proc.stderr is not None:
                self.outs[self.proc.stderr.fileno()] = STDERR
            self.stdin_fd = self.proc.stdin.fileno() if self.proc.stdin is not None else None
        if self.stdin_fd is not None:
            threading.Thread(target=self._stdin_pump, daemon=True).start()

    # -- stdin --------------------------------------------------------------------------------------
    def _stdin_pump(self) -> None:
        while True:
            data = self.stdin_q.get()
            try:
                if data is None:
                    if self.tty:
                        os.write(self.stdin_fd, b"\x04")   # type: ignore[arg-type]
                    elif self.proc.stdin is not None:
                        self.proc.stdin.close()
                    return
                view_ = memoryview(data)
                while view_:
                    n = os.write(self.stdin_fd, view_)   # type: ignore[arg-type]
                    view_ = view_[n:]
            except OSError:
                return

    # -- websocket ----------------------------------------------------------------------------------
    def send(self, channel: int, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=bytes([channel]) + data)))

    def _on_message(self, data: bytes) -> None:
        if not data:
            return
        channel, payload = data[0], data[1:]
        if channel == STDIN and payload and self.stdin_fd is not None:
            self.stdin_q.put(payload)
        elif channel == RESIZE and self.master is not None:
            with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
                size = json.loads(payload)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))
                self.resized = True
        elif channel == CLOSE and payload[:1] == bytes([STDIN]) and self.stdin_fd is not None:
            self.stdin_q.put(None)

    def _from_client(self) -> bool:
        """Read what the client sent; False when it closed the connection."""
        try:
            data = self.sock.recv(65536)
            while isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                data += self.sock.recv(self.sock.pending())
        except ssl.SSLWantReadError:
            return True
        except OSError:
            data = b""
        self.ws.receive_data(data or None)
        alive = bool(data)
        for ev in self.ws.events():
            if isinstance(ev, BytesMessage | TextMessage):
                chunk = ev.data if isinstance(ev.data, bytes) else ev.data.encode()
                self.pending += chunk
                if ev.message_finished:
                    self._on_message(self.pending)
                    self.pending = b""
            elif isinstance(ev, Ping):
                self.sock.sendall(self.ws.send(ev.response()))
            elif isinstance(ev, CloseConnection):
                with contextlib.suppress(Exception):
                    self.sock.sendall(self.ws.send(ev.response()))
                alive = False
        return alive

    def run(self) -> None:
        client_open = True
        if self.tty:   # kubectl sends the terminal size first: give the command its real size from the start
            deadline = time.monotonic() + 0.5
            while client_open and not self.resized and time.monotonic() < deadline:
                r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
                if r or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                    client_open = self._from_client()
        if not client_open:
            for fd in (self.master, self.slave):
                if fd is not None:
                    os.close(fd)
            return
        self.spawn()
        try:
            while self.outs or self.proc.poll() is None:
                watch = list(self.outs) + ([self.sock] if client_open else [])
                r, _, _ = select.select(watch, [], [], 0.2)
                if client_open and (self.sock in r or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending())):
                    client_open = self._from_client()
                    if not client_open:
                        self._stop()
                        break
                for fd in [f for f in r if isinstance(f, int)]:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if data:
                        self.send(self.outs[fd], data)
                    else:
                        del self.outs[fd]
            code = self.proc.wait()
            if client_open:
                code = code if code >= 0 else 128 - code
                self.send(ERROR, json.dumps(exit_status(code)).encode())
                self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except OSError:
            self._stop()
        finally:
            if self.master is not None:
                with contextlib.suppress(OSError):
                    os.close(self.master)
            self.stdin_q.put(None)
            for f in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()

    def _stop(self) -> None:
        """The client went away: end the command (a hangup, as when a terminal closes)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGHUP if self.tty else signal.SIGKILL)
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
