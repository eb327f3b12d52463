"""``python -m podnet.api --lab NAME [--port N] [--http]``: the lab's API server (``podnet up`` starts it)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import ssl
import sys

import yaml

from podnet.api import kubeconfig, process, server, tls, view
from podnet.dataplane import lab as labrt


def _write_atomic(path: str, text: str, mode: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m podnet.api")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    args = ap.parse_args()
    lab = args.lab
    store_path = os.path.join(labrt.lab_dir(lab), "store.db")
    if not os.path.exists(store_path):
        sys.exit(f"no lab named {lab!r}")
    d = process.api_dir(lab)
    os.makedirs(d, exist_ok=True)
    token_path = os.path.join(d, "token")
    if not os.path.exists(token_path):
        _write_atomic(token_path, secrets.token_urlsafe(32), 0o600)
    with open(token_path) as f:
        token = f.read().strip()
    ctx = None
    ca_pem = None
    if not args.http:
        ca, crt, key = tls.ensure(d, lab)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        with open(ca, "rb") as f:
            ca_pem = f.read()
    store = labrt.open_store(lab)
    try:   # a lab being created has nothing to serve yet: the sync loop fills the view once it has
        view.sync(store)
    except Exception as e:
        print(f"initial sync: {e}", flush=True)
    store.close()
    try:
        srv = server.ApiServer(lab, store_path, args.port, token, ctx)
    except OSError:   # the previous port is taken: any free one
        srv = server.ApiServer(lab, store_path, 0, token, ctx)
    port = srv.server_address[1]
    scheme = "http" if args.http else "https"
    url = f"{scheme}://127.0.0.1:{port}"
    cfg = kubeconfig.build(lab, url, token, ca_pem)
    _write_atomic(process.kubeconfig_path(lab), yaml.safe_dump(cfg, sort_keys=False), 0o600)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    srv.exit_when_lab_gone = True
    srv.start_background()
    _write_atomic(process.state_path(lab), json.dumps({"pid": os.getpid(), "port": port, "scheme": scheme,
                                                       "server": url}), 0o644)
    print(f"serving lab {lab} on {url}", flush=True)
    srv.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
