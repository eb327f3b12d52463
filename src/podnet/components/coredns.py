"""coredns-<hash>-<id>: a cluster DNS replica (Deployment kube-system/coredns, in the pod network).

Like CoreDNS's kubernetes plugin it watches the cluster (the lab's store) and answers from what it
holds: it rebuilds its record set whenever the store's revision moves, and re-reads pod readiness every
second (headless Services list their ready pods). It serves UDP and TCP 53 on the pod's address; the
Service kube-system/kube-dns (networking.dnsIP) load-balances over the replicas through kube-proxy.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from podnet.compile import dns as dnsc
from podnet.dataplane import lab as labrt
from podnet.dns.records import RecordSet
from podnet.dns.server import ClusterDNSServer, stdout_log
from podnet.model.lab import Lab
from podnet.store.kv import Store

POLL = 0.2
READINESS = 1.0


def build(lab: Lab, store: Store, ready: set[str]) -> RecordSet:
    resolved = labrt.resolved_services(lab, store, ready)
    return RecordSet(dnsc.service_records(resolved), dnsc.pod_records(lab), lab.cluster.networking.dns_domain,
                     serial=int(time.time()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="coredns")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--port", type=int, default=53)
    a = ap.parse_args(argv)
    lab, store = labrt.load_when_saved(a.lab)
    ready = labrt.ready_pods(lab, store)
    seen = store.revision
    records = build(lab, store, ready)
    server = ClusterDNSServer(records, "0.0.0.0", a.port).start()
    stdout_log(f".:{a.port} on 0.0.0.0 (udp, tcp)")
    stdout_log(f"CoreDNS-podnet  zone {records.domain} ({len(records.services)} services, {len(records.pods)} pods)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    last = time.monotonic()
    signature = _signature(records)
    while not stop.wait(POLL):
        rev = store.revision
        if rev == seen and time.monotonic() - last < READINESS:
            continue
        try:
            if rev != seen:
                lab, fresh_store = labrt.load(a.lab)
                fresh_store.close()
            now_ready = labrt.ready_pods(lab, store)
            last = time.monotonic()
            if rev == seen and now_ready == ready:
                continue   # same objects, same ready pods: same records
            fresh = build(lab, store, now_ready)
        except Exception as e:   # keep answering from the last good set, and say why
            stdout_log(f"[ERROR] plugin/kubernetes: {e}")
            continue
        seen, ready = rev, now_ready
        sig = _signature(fresh)
        if sig != signature:
            server.update(fresh)
            signature = sig
            stdout_log(f"[INFO] plugin/kubernetes: records updated ({len(fresh.services)} services, "
                       f"{len(fresh.pods)} pods)")
    server.stop()
    return 0


def _signature(rs: RecordSet) -> tuple:
    return (rs.services, rs.pods)


if __name__ == "__main__":
    sys.exit(main())
