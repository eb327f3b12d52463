"""BIRD processes of a bgp lab: files, starting, reconfiguring and querying them.

Per speaker (node or router) ``/run/podnet/<lab>/bird/<name>.{conf,ctl,pid}``: the configuration
(compile/bird.py), BIRD's control socket (``birdc -s``) and its PID file.

Who runs which BIRD:
- a **node**'s BIRD is a child of its ``calico-node-<node>`` component pod (components/calico.py), as in
  Calico; its log is the pod's log;
- a **router**'s BIRD is started by ``podnet up`` itself (routers are not Kubernetes objects), inside
  ``pn-<lab>-<router>``, logging to ``/run/podnet/<lab>/logs/router_<name>_bird.log``; ``up`` on a
  running lab restarts a dead one and reconfigures a live one whose configuration changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from podnet.compile import bird as birdconf
from podnet.dataplane import lab as labrt
from podnet.dataplane import procs
from podnet.errors import PodnetError
from podnet.model import names
from podnet.model.lab import Lab
from podnet.sim import bgp_status as birdstatus
from podnet.sim import bird as birdparse
from podnet.store.kv import Store

SUN_PATH_MAX = 107
ROUTERS = "/podnet/bird/"        # store: router name -> {"pid": ...}
BIRDC_TIMEOUT = 3.0


@dataclass(frozen=True)
class Paths:
    conf: str
    ctl: str
    pid: str


def paths(lab: str, speaker: str) -> Paths:
    d = os.path.join(labrt.lab_dir(lab), "bird")
    p = Paths(os.path.join(d, f"{speaker}.conf"), os.path.join(d, f"{speaker}.ctl"), os.path.join(d, f"{speaker}.pid"))
    if len(p.ctl) > SUN_PATH_MAX:
        raise PodnetError(f"BIRD control socket path {p.ctl} is longer than {SUN_PATH_MAX} characters "
                          "(shorten the lab or host name, or PODNET_RUN_DIR)")
    return p


def router_log(lab: str, router: str) -> str:
    return os.path.join(labrt.lab_dir(lab), "logs", f"router_{router}_bird.log")


def write_config(path: str, text: str) -> bool:
    """Write ``text`` atomically when it differs; True when the file changed."""
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return True


def argv(p: Paths) -> list[str]:
    """BIRD in the foreground (so its PID is the one we start), with our socket and PID file."""
    return ["bird", "-f", "-c", p.conf, "-s", p.ctl, "-P", p.pid]


def check_config(p: Paths) -> None:
    """``bird -p``: parse the configuration only; a one-line error when it is invalid."""
    try:
        r = subprocess.run(["bird", "-p", "-c", p.conf], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise PodnetError("bird is not installed (Debian package bird2; `make deps` installs it)") from None
    if r.returncode != 0:
        raise PodnetError(f"BIRD rejects {p.conf}: {(r.stderr or r.stdout).strip().splitlines()[-1]}")


def birdc(ctl: str, *command: str, timeout: float = BIRDC_TIMEOUT) -> str | None:
    """Run one birdc command against a control socket; None when nobody answers there."""
    if not os.path.exists(ctl):
        return None
    try:
        r = subprocess.run(["birdc", "-s", ctl, *command], capture_output=True, text=True, timeout=timeout)
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return None
    out = r.stdout
    if r.returncode != 0 or "Unable to connect to server" in out or "Unable to connect" in r.stderr:
        return None
    return out


def pid_of(p: Paths) -> int | None:
    try:
        with open(p.pid) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def running(lab: str, speaker: str, netns: str) -> int | None:
    """The PID of the speaker's BIRD if it runs in ``netns``."""
    pid = pid_of(paths(lab, speaker))
    return pid if pid and procs.alive(pid, netns) and _is_bird(pid) else None


def _is_bird(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == "bird"
    except OSError:
        return False


def reconfigure(p: Paths) -> str:
    out = birdc(p.ctl, "configure")
    return (out or "no answer").strip().splitlines()[-1]


# -- routers -------------------------------------------------------------------------------------
def ensure_routers(lab: Lab, store: Store) -> int:
    """Start every router's BIRD that does not run; reconfigure those whose configuration changed."""
    fab = lab.cluster.bgp
    if fab is None:
        return 0
    if shutil.which("bird") is None or shutil.which("birdc") is None:
        raise PodnetError("backend bgp needs BIRD 2 (bird, birdc: Debian package bird2; `make deps` installs it)")
    started = 0
    for r in fab.routers:
        ns = names.host_ns(lab.name, r.name)
        p = paths(lab.name, r.name)
        changed = write_config(p.conf, birdconf.router_config(lab, r))
        if changed:
            check_config(p)
        if running(lab.name, r.name, ns):
            if changed:
                reconfigure(p)
            continue
        for stale in (p.ctl, p.pid):
            if os.path.exists(stale):
                os.unlink(stale)
        pid = procs.start_command(ns, argv(p), router_log(lab.name, r.name))
        store.put(f"{ROUTERS}{r.name}", {"pid": pid})
        started += 1
    return started


# -- convergence -----------------------------------------------------------------------------------
def nodes_starting(lab: Lab, store: Store) -> list[str]:
    """Nodes whose BIRD is not (yet) the child of their current calico-node: just (re)started ones."""
    out = []
    for n in lab.nodes:
        pod = lab.pod("kube-system", f"calico-node-{n.name}")
        agent = labrt.runtime(store, pod).get("calico-node") if pod else None
        pid = running(lab.name, n.name, n.netns)
        if agent is None or pid is None or _ppid(pid) != agent:
            out.append(n.name)
    return out


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def session_states(lab: Lab) -> dict[str, dict[str, str]]:
    """speaker -> {protocol: info} for every BGP protocol BIRD reports (empty when BIRD is not up)."""
    fab = lab.cluster.bgp
    out: dict[str, dict[str, str]] = {}
    if fab is None:
        return out
    for sp in fab.speakers():
        text = birdc(paths(lab.name, sp).ctl, "show", "protocols")
        protos = birdparse.parse_protocols(text or "")
        out[sp] = {p.name: p.info for p in protos if p.proto == "BGP"}
    return out


def wait_established(lab: Lab, timeout: float = 20.0,
                     progress: Callable[[str], None] = lambda s: None) -> tuple[int, int]:
    """Wait until every planned session is Established; returns (established, planned)."""
    fab = lab.cluster.bgp
    if fab is None:
        return 0, 0
    planned = {(s.local, s.protocol) for s in fab.all_sessions()}
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        states = session_states(lab)
        up = sum(1 for sp, proto in planned if states.get(sp, {}).get(proto) == "Established")
        if up != last:
            progress(f"BGP: {up}/{len(planned)} sessions established")
            last = up
        if up == len(planned):
            return up, len(planned)
        if time.monotonic() > deadline:
            progress(f"BGP: only {up}/{len(planned)} sessions established after {timeout:.0f}s: "
                     "`podnet bgp status` says why")
            return up, len(planned)
        time.sleep(0.2)


# -- read-back for `podnet bgp status` ----------------------------------------------------------------
def firewall_179(netns: str) -> list[str]:
    """Rules in ``netns`` that drop or reject BGP (TCP 179), from iptables-save, else the nft ruleset."""
    def grab(cmd: list[str]) -> list[str]:
        try:
            r = subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True, timeout=5)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            return []
        return [ln.strip() for ln in r.stdout.splitlines()
                if re.search(r"\b179\b", ln) and re.search(r"DROP|REJECT|\bdrop\b|\breject\b", ln)]
    return grab(["iptables-save"]) or grab(["nft", "list", "ruleset"])


def collect(lab: Lab, store: Store, with_firewall: bool | None = None) -> dict[str, birdstatus.SpeakerFacts]:
    """What every speaker's BIRD says; firewall rules are read when a session is down (or when asked)."""
    fab = lab.cluster.bgp
    if fab is None:
        raise PodnetError(f"lab {lab.name} uses the {lab.cluster.networking.backend} backend: no BGP (backend bgp)")
    out: dict[str, birdstatus.SpeakerFacts] = {}
    for sp in fab.speakers():
        ns = names.host_ns(lab.name, sp)
        p = paths(lab.name, sp)
        pid = running(lab.name, sp, ns)
        text = birdc(p.ctl, "show", "protocols", "all") if pid else None
        f = birdstatus.SpeakerFacts(name=sp, netns=ns, running=text is not None, pid=pid, socket=p.ctl)
        if text is None:
            f.not_running_why = _why_not_running(lab, store, sp)
        else:
            f.protocols = birdparse.parse_protocols(text)
            f.routes = birdparse.parse_routes(birdc(p.ctl, "show", "route") or "")
        out[sp] = f
    down = any(not f.running or any(not p.info.startswith("Established") for p in f.bgp()) for f in out.values())
    if with_firewall or (with_firewall is None and down):
        for f in out.values():
            f.firewall = firewall_179(f.netns)
        _ping_failing_peers(out.values())
    return out


def _ping_failing_peers(speakers: Iterable[birdstatus.SpeakerFacts]) -> None:
    """One ping (1 s) from each speaker to every peer of a session that is not Established, in parallel."""
    probes = []
    for f in speakers:
        for proto in f.bgp():
            if f.running and proto.neighbor and not proto.info.startswith("Established"):
                argv = ["ip", "netns", "exec", f.netns, "ping", "-n", "-q", "-c", "1", "-W", "1", proto.neighbor]
                try:
                    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                except FileNotFoundError:
                    return
                probes.append((f, proto.neighbor, p))
    for f, neighbor, p in probes:
        try:
            if p.wait(timeout=5) != 0:
                f.unreachable.add(neighbor)
        except subprocess.TimeoutExpired:
            p.kill()
            f.unreachable.add(neighbor)


def _why_not_running(lab: Lab, store: Store, speaker: str) -> str:
    if lab.cluster.bgp and lab.cluster.bgp.is_node(speaker):
        pod = lab.pod("kube-system", f"calico-node-{speaker}")
        if pod is not None and not all(labrt.container_state(store, pod).values()):
            return f"its calico-node-{speaker} pod is not running; `podnet up` restarts it"
        return f"calico-node-{speaker} runs but BIRD does not answer on its socket"
    return f"the router's BIRD exited (log: {router_log(lab.name, speaker)}); `podnet up` restarts it"
