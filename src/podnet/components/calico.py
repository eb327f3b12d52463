"""calico-node-<node>: the per-node Calico agent of a bgp lab (a hostNetwork pod in kube-system).

What it does, as calico-node does with BIRD, confd and felix:
- renders the node's BIRD configuration (compile/bird.py) to ``/run/podnet/<lab>/bird/<node>.conf`` and
  runs ``bird -f`` as its child, control socket ``<node>.ctl`` next to it; BIRD logs to this pod's log;
- keeps the node's workload routes: a ``<pod IP>/32 dev cali...`` route and the proxy-ARP settings per
  local pod, removing any other route through a pod's cali interface (felix's job);
- whenever the store's revision moves (``podnet apply``/``delete``) and every 2 s it reconciles, and
  re-renders the BIRD configuration, applying a change with ``birdc configure``.

If BIRD exits (``birdc down``, a crash, a kill), this pod exits too, saying why: the node stops
advertising its pod CIDR (its peers withdraw it), ``podnet status`` shows the pod down, ``podnet bgp
status`` explains the sessions, and ``podnet up`` restarts the pod, which starts BIRD again.
On SIGTERM it stops BIRD gracefully (BIRD sends a Cease to its peers) and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from podnet.compile import bird as birdconf
from podnet.compile import calico
from podnet.compile.state import NetnsSpec
from podnet.dataplane import bird
from podnet.dataplane import lab as labrt
from podnet.dataplane.apply import Applier
from podnet.model.lab import Lab

RESYNC = 2.0
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def log(msg: str, where: str = "startup/startup.go 427", level: str = "INFO") -> None:
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
    sys.stdout.write(f"{ts} [{level}][{os.getpid()}] {where}: {msg}\n")
    sys.stdout.flush()


def _die_with_parent() -> None:  # runs in the child before exec: BIRD gets SIGTERM if we vanish
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def workload_spec(lab: Lab, node: str, links: set[str]) -> NetnsSpec:
    """The /32 routes and cali settings of the node's pods whose veth exists."""
    spec = NetnsSpec(name=lab.node(node).netns, role="node", owner=node)
    for r in calico.workload_routes(lab, node):
        if r.dev in links:
            spec.routes.append(r)
            spec.sysctls.update(calico.cali_sysctls(r.dev or ""))
    return spec


def prune(applier: Applier, lab: Lab, node: str) -> list[str]:
    """Delete routes that point a local pod's cali interface at an address that is not the pod's.

    A cali interface no pod of this lab owns is left alone: it belongs to a pod being created right now
    (its route comes with it) or being removed (its routes go with its interface)."""
    h = applier.handle(lab.node(node).netns)
    owner = {r.dev: r.dst for r in calico.workload_routes(lab, node)}
    by_index = {info["index"]: name for name, info in h.links().items()}
    gone = []
    for r in h.ipr.get_routes(family=socket.AF_INET, table=254):
        dev = by_index.get(r.get("RTA_OIF"))
        dst = r.get("RTA_DST")
        if dev not in owner or dst is None:
            continue
        cidr = f"{dst}/{r['dst_len']}"
        if cidr != owner[dev]:
            h.ipr.route("del", dst=cidr, oif=r.get("RTA_OIF"), table=254)
            gone.append(f"{cidr} dev {dev}")
    return gone


class Agent:
    def __init__(self, lab_name: str, node: str) -> None:
        self.lab_name = lab_name
        self.node = node
        self.lab, self.store = labrt.load_when_saved(lab_name)
        self.paths = bird.paths(lab_name, node)
        self.bird: subprocess.Popen | None = None
        self.stopping = False

    # -- BIRD ------------------------------------------------------------------------------------
    def render(self) -> bool:
        changed = bird.write_config(self.paths.conf, birdconf.node_config(self.lab, self.node))
        if changed:
            bird.check_config(self.paths)
        return changed

    def stop_stale(self) -> None:
        """A BIRD left by an earlier calico-node of this node (killed with SIGKILL): stop it first."""
        pid = bird.running(self.lab_name, self.node, self.lab.node(self.node).netns)
        if pid:
            log(f"Stopping BIRD left running by a previous calico-node (pid {pid})", "bird/bird.go 88")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not bird.running(self.lab_name, self.node, self.lab.node(self.node).netns):
                    break
                time.sleep(0.05)
        for f in (self.paths.ctl, self.paths.pid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)

    def start_bird(self) -> None:
        self.bird = subprocess.Popen(bird.argv(self.paths), stdin=subprocess.DEVNULL, stdout=sys.stdout,
                                     stderr=sys.stdout, preexec_fn=_die_with_parent, close_fds=True)
        log(f"Started BIRD (pid {self.bird.pid}): config {self.paths.conf}, control socket {self.paths.ctl}",
            "bird/bird.go 112")

    def stop_bird(self, *_: object) -> None:
        self.stopping = True
        if self.bird and self.bird.poll() is None:
            log("Shutting down BIRD (SIGTERM): peers get a Cease and withdraw this node's routes",
                "bird/bird.go 140")
            self.bird.terminate()
            try:
                self.bird.wait(5)
            except subprocess.TimeoutExpired:
                self.bird.kill()
        sys.exit(0)

    # -- routes ----------------------------------------------------------------------------------
    def reconcile(self, applier: Applier, reload: bool) -> None:
        if reload:
            self.lab, fresh = labrt.load(self.lab_name)
            fresh.close()
            if self.render() and self.bird and self.bird.poll() is None:
                log(f"BIRD configuration changed: birdc configure: {bird.reconfigure(self.paths)}",
                    "confd/resource.go 210")
        h = applier.handle(self.lab.node(self.node).netns)
        h.refresh()
        applier.apply(workload_spec(self.lab, self.node, set(h.links())))
        for gone in prune(applier, self.lab, self.node):
            log(f"Removed a stale workload route: {gone}", "felix/route_table.go 760")

    def run(self) -> int:
        lab, node = self.lab, self.lab.node(self.node)
        fab = calico.fabric_of(lab)
        log(f"Using autodetected IPv4 address on interface eth0: {node.ip}/{fab.underlay.subnet.prefixlen}")
        log(f"Using AS number {fab.node_asns[self.node]}; pod CIDR {node.pod_cidr} (host-local IPAM, "
            f"usePodCidr); routed pods (cali veths, /32 routes), no encapsulation")
        peers = fab.sessions(self.node)
        if peers:
            log("BGP peers: " + ", ".join(f"{s.peer} {s.peer_ip} AS {s.peer_asn} ({s.peer_type})" for s in peers))
        else:
            log("No BGP peer configured: node-to-node mesh is disabled and no router serves this node",
                level="WARNING")
        self.stop_stale()
        self.render()
        signal.signal(signal.SIGTERM, self.stop_bird)
        signal.signal(signal.SIGINT, self.stop_bird)
        self.start_bird()
        log("Calico node started successfully")
        applier = Applier()
        seen, last = -1, 0.0
        while True:
            assert self.bird is not None
            code = self.bird.poll()
            if code is not None:
                why = "it was shut down (birdc down)" if code == 0 else f"it exited with status {code}"
                log(f"BIRD is not running: {why}. calico-node exits; `podnet up` restarts it", "bird/bird.go 151",
                    "ERROR")
                return 1
            rev = self.store.revision
            if rev != seen or time.monotonic() - last > RESYNC:
                try:
                    self.reconcile(applier, reload=rev != seen)
                    seen, last = rev, time.monotonic()
                except Exception as e:  # keep running and say why, as calico-node does
                    log(f"Error reconciling: {e}", "felix/int_dataplane.go 1320", "ERROR")
                    last = time.monotonic()
                finally:
                    applier.close()
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="calico-node")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--node", required=True)
    a = ap.parse_args(argv)
    sys.exit(Agent(a.lab, a.node).run())


if __name__ == "__main__":
    main()
