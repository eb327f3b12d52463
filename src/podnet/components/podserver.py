"""podnet's built-in server: what a container without a ``command`` runs, on each containerPort.

TCP: HTTP/1.1 (any method and path). The body is three lines: pod name, pod IP, and the client address
the server saw (so load balancing and SNAT are visible); with ``Accept: application/json`` the same as
JSON (plus the client port and the server port). ``GET /bytes/N`` answers N bytes (for MTU checks).
Non-HTTP TCP clients get the three lines and the connection closes. UDP: each datagram is answered with
the three lines. SCTP (where the kernel has it): as non-HTTP TCP.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

HTTP_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")
MAX_BYTES = 1 << 30


def answer(pod: str, pod_ip: str, client: tuple[str, int], port: int, as_json: bool) -> bytes:
    if as_json:
        return (json.dumps({"pod": pod, "podIP": pod_ip, "client": client[0], "clientPort": client[1],
                            "port": port}) + "\n").encode()
    return f"{pod}\n{pod_ip}\n{client[0]}\n".encode()


def log(msg: str) -> None:
    sys.stdout.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {msg}\n")
    sys.stdout.flush()


def _handle_tcp(conn: socket.socket, addr: tuple[str, int], pod: str, pod_ip: str, port: int) -> None:
    try:
        conn.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
                if data.split(b" ", 1)[0].upper() not in HTTP_METHODS and len(data.split(b" ", 1)) > 1:
                    break
        except TimeoutError:
            pass
        first = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        parts = first.split()
        if len(parts) >= 2 and parts[0].upper() in HTTP_METHODS:
            method, target = parts[0].decode(), parts[1].decode(errors="replace")
            headers = data.decode(errors="replace").lower()
            as_json = "accept: application/json" in headers
            if target.startswith("/bytes/") and target[7:].isdigit():
                n = min(int(target[7:]), MAX_BYTES)
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n"
                        f"Connection: close\r\n\r\n").encode()
                conn.sendall(head)
                if method != "HEAD":
                    block = b"x" * 65536
                    left = n
                    while left > 0:
                        conn.sendall(block[: min(left, len(block))])
                        left -= len(block)
            else:
                body = answer(pod, pod_ip, addr, port, as_json)
                ctype = "application/json" if as_json else "text/plain; charset=utf-8"
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                        f"X-Pod-Name: {pod}\r\nConnection: close\r\n\r\n").encode()
                conn.sendall(head + (b"" if method == "HEAD" else body))
            log(f"tcp {addr[0]}:{addr[1]} -> :{port} {method} {target}")
        else:
            conn.sendall(answer(pod, pod_ip, addr, port, False))
            log(f"tcp {addr[0]}:{addr[1]} -> :{port} raw")
    except OSError as e:
        log(f"tcp {addr[0]}:{addr[1]} -> :{port} error {e}")
    finally:
        conn.close()


def _serve_stream(sock: socket.socket, pod: str, pod_ip: str, port: int) -> None:
    while True:
        conn, addr = sock.accept()
        threading.Thread(target=_handle_tcp, args=(conn, addr, pod, pod_ip, port), daemon=True).start()


def _serve_udp(sock: socket.socket, pod: str, pod_ip: str, port: int) -> None:
    while True:
        data, addr = sock.recvfrom(65535)
        as_json = b"json" in data[:64].lower()
        sock.sendto(answer(pod, pod_ip, addr, port, as_json), addr)
        log(f"udp {addr[0]}:{addr[1]} -> :{port} {len(data)}B")


def open_sockets(ports: list[tuple[int, str]]) -> list[tuple[socket.socket, int, str]]:
    """Bind every port (in the caller's network namespace). Raises OSError on failure."""
    out = []
    for port, proto in ports:
        if proto == "UDP":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        elif proto == "SCTP":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        if proto != "UDP":
            s.listen(512)
        out.append((s, port, proto))
    return out


def serve(pod: str, pod_ip: str, sockets: list[tuple[socket.socket, int, str]]) -> None:
    """Serve forever on already-bound sockets."""
    log(f"podnet built-in server for pod {pod} ({pod_ip}) listening on "
        + ", ".join(f"{p}/{proto}" for _, p, proto in sockets))
    threads = []
    for s, port, proto in sockets:
        target = _serve_udp if proto == "UDP" else _serve_stream
        t = threading.Thread(target=target, args=(s, pod, pod_ip, port), daemon=True)
        t.start()
        threads.append(t)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="podnet-server", description=__doc__)
    ap.add_argument("--pod", required=True)
    ap.add_argument("--ip", required=True)
    ap.add_argument("--port", action="append", default=[], help="PORT[/TCP|UDP|SCTP], repeatable")
    a = ap.parse_args(argv)
    ports = []
    for spec in a.port:
        p, _, proto = spec.partition("/")
        ports.append((int(p), (proto or "TCP").upper()))
    serve(a.pod, a.ip, open_sockets(ports))


if __name__ == "__main__":
    main()
