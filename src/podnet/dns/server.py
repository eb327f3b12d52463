"""The cluster DNS server: UDP and TCP on one address/port, answering from a swappable RecordSet.

    python -m podnet.dns.server --records FILE --listen 0.0.0.0 --port 53

runs one DNS replica (one per DNS pod, inside the pod's network namespace). FILE is the JSON
document of `podnet.dns.data`; it is re-read when its mtime, size or inode changes (polled every
0.2 s), so the lab updates records by writing a new file (write to a temporary file, then rename).

One log line per query on stdout, in CoreDNS's `log` plugin format:

    [INFO] 10.244.1.5:41234 - 4711 "A IN my-service.default.svc.cluster.local. udp 66 false 512"
        NOERROR qr,aa,rd 122 0.000211s

(on one line). Malformed packets give an `[ERROR]` line and a FORMERR answer, or are dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from podnet.dns.records import RecordSet
from podnet.dns.wire import Exchange, Transport, handle

LogFn = Callable[[str], None]
_print_lock = threading.Lock()


def stdout_log(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class _UDPHandler(socketserver.BaseRequestHandler):
    server: _UDP

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.owner.answer(data, "udp", self.client_address)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    """RFC 7766: several length-prefixed queries may arrive on one connection (glibc sends A and
    AAAA back to back), so read until the client closes or stays idle."""

    server: _TCP

    def _read(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self) -> None:
        owner = self.server.owner
        self.request.settimeout(owner.tcp_idle_timeout)
        try:
            while True:
                head = self._read(2)
                if head is None:
                    return
                data = self._read(int.from_bytes(head, "big"))
                if data is None:
                    return
                reply = owner.answer(data, "tcp", self.client_address)
                if reply is None:
                    return
                self.request.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:      # timeouts, resets: the connection just ends
            return


class _UDP(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ClusterDNSServer


class _TCP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ClusterDNSServer


class _UDP6(_UDP):
    address_family = socket.AF_INET6


class _TCP6(_TCP):
    address_family = socket.AF_INET6


class ClusterDNSServer:
    """UDP + TCP DNS on (address, port); port 0 picks a free port shared by both."""

    def __init__(self, records: RecordSet, address: str = "0.0.0.0", port: int = 53, *,
                 log: LogFn | None = stdout_log, tcp_idle_timeout: float = 10.0) -> None:
        self._records = records
        self.address = address
        self._port = port
        self.log = log
        self.tcp_idle_timeout = tcp_idle_timeout
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    @property
    def records(self) -> RecordSet:
        return self._records

    @property
    def port(self) -> int:
        return self._port

    def update(self, records: RecordSet) -> None:
        """Swap the record set; queries in flight finish with the set they started with."""
        self._records = records   # a single reference assignment: atomic for readers

    def answer(self, data: bytes, transport: Transport, client: tuple[Any, ...]) -> bytes | None:
        start = time.perf_counter()
        ex = handle(data, self._records, transport)
        if self.log is not None:
            self.log(self._log_line(ex, transport, client, len(data), time.perf_counter() - start))
        return ex.response

    @staticmethod
    def _log_line(ex: Exchange, transport: str, client: tuple[Any, ...], size: int, took: float) -> str:
        who = f"{client[0]}:{client[1]}"
        if ex.response is None or (ex.error and ex.qname == "-"):
            outcome = ex.rcode if ex.response else "dropped"
            return f"[ERROR] {who} - {ex.qid} {transport} {size}: {ex.error} -> {outcome}"
        bufsize = ex.edns_size if ex.edns_size is not None else 512
        line = (f'[INFO] {who} - {ex.qid} "{ex.qtype} IN {ex.qname} {transport} {size} '
                f'{str(ex.do).lower()} {bufsize}" {ex.rcode} {ex.flags} {len(ex.response)} {took:.6f}s')
        return line + (f" ({ex.error})" if ex.error else "")

    def _bind(self) -> None:
        v6 = ":" in self.address
        for _ in range(20):
            udp = (_UDP6 if v6 else _UDP)((self.address, self._port), _UDPHandler)
            port = udp.server_address[1]
            try:
                tcp = (_TCP6 if v6 else _TCP)((self.address, port), _TCPHandler)
            except OSError:
                udp.server_close()
                if self._port:
                    raise
                continue           # the free UDP port is taken on TCP: pick another
            self._port = port
            self._servers = [udp, tcp]
            return
        raise OSError(f"no free port on {self.address} for both UDP and TCP")

    def start(self) -> ClusterDNSServer:
        self._bind()
        for srv in self._servers:
            srv.owner = self  # type: ignore[attr-defined]
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                 name=f"dns-{type(srv).__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=2)
        self._servers, self._threads = [], []

    def __enter__(self) -> ClusterDNSServer:
        return self.start() if not self._servers else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# -- the process: python -m podnet.dns.server ---------------------------------------------------

def load_records(path: str, **options: Any) -> RecordSet:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    st = os.stat(path)
    return RecordSet.from_document(doc, serial=int(st.st_mtime), **options)


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FileWatcher:
    """Reload `path` into `server` when it changes; a bad file keeps the previous records."""

    def __init__(self, server: ClusterDNSServer, path: str, log: LogFn = stdout_log, **options: Any) -> None:
        self.server, self.path, self.log, self.options = server, path, log, options
        self.seen: tuple[int, int, int] | None = None

    def poll(self) -> bool:
        sig = _signature(self.path)
        if sig is None or sig == self.seen:
            return False
        self.seen = sig
        try:
            records = load_records(self.path, **self.options)
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.log(f"[ERROR] records {self.path}: {e}; keeping the previous records")
            return False
        self.server.update(records)
        self.log(f"[INFO] records loaded from {self.path}: {len(records.services)} services, "
                 f"{len(records.pods)} pods, {len(records.records())} records (serial {records.serial})")
        return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m podnet.dns.server", description="podnet cluster DNS")
    p.add_argument("--records", required=True, help="JSON records file (podnet.dns.data)")
    p.add_argument("--listen", default="0.0.0.0")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--domain", default="cluster.local", help="used until the records file is readable")
    p.add_argument("--pods", choices=("verified", "insecure", "disabled"), default="verified")
    p.add_argument("--poll", type=float, default=0.2, help="seconds between checks of the records file")
    args = p.parse_args(argv)

    server = ClusterDNSServer(RecordSet(domain=args.domain, pod_mode=args.pods), args.listen, args.port)
    watcher = FileWatcher(server, args.records, pod_mode=args.pods)
    watcher.poll()
    server.start()
    stdout_log(f"[INFO] podnet cluster DNS listening on {args.listen}:{server.port} (udp, tcp), "
               f"zone {server.records.domain}")
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop.wait(args.poll):
        watcher.poll()
    server.stop()
    stdout_log("[INFO] podnet cluster DNS stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
