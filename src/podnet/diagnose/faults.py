"""``podnet break FAULT`` and ``podnet repair FAULT``: each classic failure done to a running lab the way it
happens in life (a process killed, a rule inserted, a sysctl flipped, a file edited, a conntrack entry
left behind), with commands a person could type (argument vectors run with ``ip netns exec``).

``break`` keeps no record for ``diagnose`` to read. ``repair`` works from the state too: it finds what is
wrong now (whoever broke it, ``break`` or a person) and applies the fix a person would: restart the
component, delete the rule, set the sysctl, re-attach the veth, restore the file, delete the entry.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from podnet.compile import dns as dnscompile
from podnet.compile import fabric
from podnet.dataplane import lab as labrt
from podnet.dataplane import procs
from podnet.diagnose import catalogue
from podnet.errors import PodnetError
from podnet.model import names
from podnet.model.lab import Lab, LabNode, PlacedPod
from podnet.model.services import resolve_services
from podnet.store.kv import Store

ETC_NETNS = "/etc/netns"
IPT_WAIT = ["-w", "5"]
STALE_SPORT = 40053
DENY_POLICY = "default-deny-ingress"


@dataclass
class Ctx:
    lab: Lab
    store: Store
    node: str | None = None
    pod: str | None = None
    service: str | None = None
    namespace: str | None = None
    done: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.done.append(line)


def nsrun(ns: str, argv: list[str], check: bool = True, stdin: str | None = None,
          timeout: float = 30) -> subprocess.CompletedProcess:
    """``ip netns exec NS argv...`` (a namespace podnet made: names start with pn-)."""
    if not ns.startswith(names.PREFIX):
        raise PodnetError(f"refusing to act in namespace {ns!r}")
    p = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise PodnetError(f"{shlex.join(argv)} failed in {ns}: {(p.stderr or p.stdout).strip()}")
    return p


def _cmd(ctx: Ctx, ns: str, argv: list[str]) -> subprocess.CompletedProcess:
    p = nsrun(ns, argv)
    ctx.say(f"ip netns exec {ns} {shlex.join(argv)}")
    return p


# -- picking the subjects ------------------------------------------------------------------------------
def _nodes(ctx: Ctx, default_all: bool) -> list[LabNode]:
    if ctx.node:
        return [ctx.lab.node(ctx.node)]
    return list(ctx.lab.nodes) if default_all else [ctx.lab.nodes[0]]


def _workloads(lab: Lab) -> list[PlacedPod]:
    return [p for p in lab.pods if not p.host_network and not p.component and p.namespace != "kube-system"]


def _pod(ctx: Ctx, default: Callable[[Lab], PlacedPod | None] | None = None) -> PlacedPod:
    lab = ctx.lab
    if ctx.pod:
        ns, _, name = ctx.pod.rpartition("/")
        cand = [p for p in lab.pods if p.name == name and (not ns or p.namespace == ns) and not p.host_network]
        if not cand:
            raise PodnetError(f"no pod {ctx.pod!r} in lab {lab.name}", field="--pod")
        return cand[0]
    p = default(lab) if default else next(iter(_workloads(lab)), None)
    if p is None:
        raise PodnetError(f"lab {lab.name} has no pod to break (name one with --pod)", field="--pod")
    return p


def _pods(ctx: Ctx) -> list[PlacedPod]:
    """The pods repair looks at: the one named, else all of the pod network."""
    if ctx.pod:
        return [_pod(ctx)]
    return [p for p in ctx.lab.pods if not p.host_network]


def _first_backing_pod(lab: Lab) -> PlacedPod | None:
    for sp in resolve_services(lab).ports():
        if sp.namespace == "kube-system":
            continue
        for e in sp.endpoints:
            p = next((x for x in lab.pods if not x.host_network and str(x.ip) == e.ip), None)
            if p is not None:
                return p
    return None


def _need_backend(ctx: Ctx, f: catalogue.Fault) -> None:
    backend = ctx.lab.cluster.networking.backend
    if backend not in f.backends:
        raise PodnetError(f"fault {f.id} needs backend {' or '.join(f.backends)}; lab {ctx.lab.name} uses {backend}")


def _need_component(ctx: Ctx, component: str, what: str) -> None:
    if not any(p.component == component for p in ctx.lab.pods):
        raise PodnetError(f"lab {ctx.lab.name} runs no {what}")


# -- processes -------------------------------------------------------------------------------------------
def _kill(ctx: Ctx, pods: list[PlacedPod], sig: int = signal.SIGKILL) -> int:
    killed = 0
    for p in pods:
        for cname, pid in labrt.runtime(ctx.store, p).items():
            if procs.alive(pid, p.netns):
                os.kill(pid, sig)
                ctx.say(f"kill -{signal.Signals(sig).name.removeprefix('SIG')} {pid}   # {p.key} ({cname})")
                killed += 1
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(any(labrt.container_state(ctx.store, p).values()) for p in pods):
        time.sleep(0.05)
    return killed


def proc_state(pid: int) -> str:
    """The kernel's one-letter state of a process (R, S, D, T stopped, Z zombie; "" when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _stopped(ctx: Ctx, p: PlacedPod) -> list[int]:
    return [pid for pid in labrt.runtime(ctx.store, p).values()
            if procs.alive(pid, p.netns) and proc_state(pid) in ("T", "t")]


def _freeze(ctx: Ctx, pods: list[PlacedPod]) -> int:
    """SIGSTOP: the process stays (the kubelet sees no exit, so nothing restarts it) but does nothing."""
    n = 0
    for p in pods:
        for cname, pid in labrt.runtime(ctx.store, p).items():
            if procs.alive(pid, p.netns) and proc_state(pid) not in ("T", "t"):
                os.kill(pid, signal.SIGSTOP)
                ctx.say(f"kill -STOP {pid}   # {p.key} ({cname}): hung, syncs nothing")
                n += 1
    return n


def _restart(ctx: Ctx, pods: list[PlacedPod]) -> int:
    """Start the containers of ``pods`` that are not running (what `podnet up` does for every pod)."""
    dead = [p for p in pods if not all(labrt.container_state(ctx.store, p).values())]
    if not dead:
        return 0
    n = labrt.start_processes(replace(ctx.lab, pods=dead), ctx.store)
    for p in dead:
        ctx.say(f"started {p.key} again (podnet up does the same)")
    return n


def _log_size(lab: Lab, p: PlacedPod) -> int:
    try:
        return os.path.getsize(labrt.log_path(lab.name, p.namespace, p.name, p.pod.spec.containers[0].name))
    except OSError:
        return 0


def _wait_log(lab: Lab, p: PlacedPod, since: int, text: str, timeout: float = 15.0) -> bool:
    path = labrt.log_path(lab.name, p.namespace, p.name, p.pod.spec.containers[0].name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                f.seek(since)
                if text.encode() in f.read():
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def _kube_proxies(ctx: Ctx, nodes: list[LabNode]) -> list[PlacedPod]:
    want = {n.name for n in nodes}
    return [p for p in ctx.lab.pods if p.component == "kubeproxy" and p.node in want]


def _restart_kube_proxy(ctx: Ctx, pods: list[PlacedPod], force: bool) -> None:
    sizes = {p.key: _log_size(ctx.lab, p) for p in pods}
    if force:
        _kill(ctx, pods, signal.SIGTERM)
    _restart(ctx, pods)
    for p in pods:
        if not _wait_log(ctx.lab, p, sizes[p.key], "SyncProxyRules complete"):
            raise PodnetError(f"{p.key} did not finish a sync within 15 s (podnet logs -n kube-system {p.name})")
        ctx.say(f"{p.key}: full sync done")


# -- iptables rules ----------------------------------------------------------------------------------------
def rules_matching(save_text: str, pred: Callable[[str, str], bool]) -> list[tuple[str, str]]:
    """(table, rule line) for each ``-A`` line of an iptables-save text that ``pred(table, line)`` keeps."""
    out = []
    table = ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A ") and pred(table, line):
            out.append((table, line))
    return out


def _delete_rules(ctx: Ctx, ns: str, pred: Callable[[str, str], bool]) -> int:
    save = nsrun(ns, ["iptables-save"]).stdout
    n = 0
    for table, line in rules_matching(save, pred):
        args = shlex.split(line)[1:]      # CHAIN and the rule spec, as iptables-save quotes them
        _cmd(ctx, ns, ["iptables", *IPT_WAIT, "-t", table, "-D", *args])
        n += 1
    return n


def _drops(line: str) -> bool:
    return " -j DROP" in line or " -j REJECT" in line


def is_vxlan_block(_table: str, line: str) -> bool:
    return _drops(line) and "-p udp" in line and "8472" in line


def is_icmp_frag_block(_table: str, line: str) -> bool:
    if not _drops(line) or "-p icmp" not in line:
        return False
    return any(t in line for t in ("fragmentation-needed", "--icmp-type 3/4", "--icmp-type 3 ",
                                   "destination-unreachable")) or "--icmp-type" not in line


def is_bgp_block(_table: str, line: str) -> bool:
    return _drops(line) and "-p tcp" in line and ("--dport 179" in line or "--sport 179" in line)


# -- the faults ----------------------------------------------------------------------------------------------
def break_kube_proxy(ctx: Ctx) -> None:
    pods = _kube_proxies(ctx, _nodes(ctx, default_all=True))
    if not pods:
        raise PodnetError(f"lab {ctx.lab.name} runs no kube-proxy (kubeProxyMode none)")
    if not _freeze(ctx, pods):
        raise PodnetError("kube-proxy is not running there already")


def repair_kube_proxy(ctx: Ctx) -> None:
    pods = _kube_proxies(ctx, _nodes(ctx, default_all=True))
    hung = [p for p in pods if _stopped(ctx, p)]
    if hung:
        _kill(ctx, hung)
    dead = [p for p in pods if not all(labrt.container_state(ctx.store, p).values())]
    if dead:
        _restart_kube_proxy(ctx, dead, force=False)


def _service(ctx: Ctx, udp: bool = False):
    ports = [sp for sp in resolve_services(ctx.lab).ports() if sp.cluster_ip and sp.cluster_ip != "None"]
    if ctx.service:
        ns, _, rest = ctx.service.rpartition("/")
        name, _, port = rest.partition(":")
        cand = [sp for sp in ports if sp.name == name and (not ns or sp.namespace == ns)
                and (not port or str(sp.port) == port) and (not udp or sp.protocol == "UDP")]
        if not cand:
            raise PodnetError(f"no {'UDP ' if udp else ''}Service port {ctx.service!r} in lab {ctx.lab.name}",
                              field="--service")
        return cand
    if udp:
        cand = [sp for sp in ports if sp.protocol == "UDP" and sp.endpoints]
        cand.sort(key=lambda sp: (sp.namespace != "kube-system" or sp.name != "kube-dns", sp.namespace, sp.name))
    else:
        cand = [sp for sp in ports if sp.namespace != "kube-system"]
        if cand:
            first = (cand[0].namespace, cand[0].name)
            cand = [sp for sp in cand if (sp.namespace, sp.name) == first]
    if not cand:
        raise PodnetError(f"lab {ctx.lab.name} has no {'UDP ' if udp else ''}Service to break (name one with "
                          "--service)", field="--service")
    return cand


def _service_rule_pred(ips: set[str]) -> Callable[[str, str], bool]:
    def pred(table: str, line: str) -> bool:
        return table in ("nat", "filter") and line.startswith("-A KUBE-SERVICES ") and any(
            f"-d {ip}/32 " in line for ip in ips)
    return pred


def break_service_rules(ctx: Ctx) -> None:
    _need_component(ctx, "kubeproxy", "kube-proxy")
    ports = _service(ctx)
    mode = ctx.lab.cluster.networking.kube_proxy_mode
    for n in _nodes(ctx, default_all=False):
        done = 0
        if mode == "iptables":
            done = _delete_rules(ctx, n.netns, _service_rule_pred({sp.cluster_ip for sp in ports}))
        else:
            for sp in ports:
                elem = f"{{ {sp.cluster_ip} . {sp.protocol.lower()} . {sp.port} }}"
                for m in ("service-ips", "no-endpoint-services"):
                    if nsrun(n.netns, ["nft", "delete", "element", "ip", "kube-proxy", m, elem],
                             check=False).returncode == 0:
                        ctx.say(f"ip netns exec {n.netns} nft delete element ip kube-proxy {m} {elem}")
                        done += 1
        if not done:
            raise PodnetError(f"{n.name} has no rules for {ports[0].namespace}/{ports[0].name} (already missing?)")


def repair_service_rules(ctx: Ctx) -> None:
    _restart_kube_proxy(ctx, _kube_proxies(ctx, _nodes(ctx, default_all=True)), force=True)


def break_veth(ctx: Ctx) -> None:
    p = _pod(ctx)
    _cmd(ctx, ctx.lab.node(p.node).netns, ["ip", "link", "set", p.host_veth, "nomaster"])


def _link_json(ns: str, dev: str) -> dict | None:
    r = nsrun(ns, ["ip", "-j", "-d", "link", "show", "dev", dev], check=False)
    try:
        got = json.loads(r.stdout) if r.returncode == 0 else []
    except ValueError:
        return None
    return got[0] if got else None


def repair_veth(ctx: Ctx) -> None:
    for p in _pods(ctx):
        if not p.host_veth or not p.host_veth.startswith("veth"):
            continue
        ns = ctx.lab.node(p.node).netns
        info = _link_json(ns, p.host_veth)
        if info is not None and info.get("master") != names.BRIDGE:
            _cmd(ctx, ns, ["ip", "link", "set", p.host_veth, "master", names.BRIDGE])
            _cmd(ctx, ns, ["bridge", "link", "set", "dev", p.host_veth, "hairpin", "on"])


def break_pod_route(ctx: Ctx) -> None:
    p = _pod(ctx)
    _cmd(ctx, p.netns, ["ip", "route", "del", "default"])


def repair_pod_route(ctx: Ctx) -> None:
    for p in _pods(ctx):
        spec = fabric.pod(ctx.lab, p)
        want = next((r for r in spec.routes if r.dst == "default"), None)
        if want is None:
            continue
        got = nsrun(p.netns, ["ip", "-j", "route", "show", "default"], check=False)
        try:
            cur = json.loads(got.stdout or "[]")
        except ValueError:
            cur = []
        if cur and cur[0].get("gateway") == want.via and cur[0].get("dev") == (want.dev or "eth0"):
            continue
        argv = ["ip", "route", "replace", "default", "via", str(want.via), "dev", want.dev or "eth0"]
        if want.onlink:
            argv.append("onlink")
        _cmd(ctx, p.netns, argv)


def _cni_dir(n: LabNode) -> str:
    return os.path.join(ETC_NETNS, n.netns, "cni", "net.d")


def break_cni_config(ctx: Ctx) -> None:
    for n in _nodes(ctx, default_all=False):
        path = os.path.join(_cni_dir(n), "10-flannel.conflist")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise PodnetError(f"cannot read {path}: {e.strerror}") from None
        if '"type": "flannel"' not in text:
            raise PodnetError(f"{path} has no flannel plugin to misspell (already broken?)")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace('"type": "flannel"', '"type": "flanel"', 1))
        ctx.say(f"edited {path}: \"type\": \"flannel\" -> \"flanel\"")


def repair_cni_config(ctx: Ctx) -> None:
    for n in _nodes(ctx, default_all=True):
        want = {rel.split("/")[-1]: text for rel, text in fabric.node(ctx.lab, n).files.items()
                if rel.startswith("cni/net.d/")}
        d = _cni_dir(n)
        os.makedirs(d, exist_ok=True)
        for name in sorted(os.listdir(d)):
            if name not in want:
                os.remove(os.path.join(d, name))
                ctx.say(f"removed {os.path.join(d, name)}")
        for name, text in want.items():
            path = os.path.join(d, name)
            try:
                with open(path, encoding="utf-8") as f:
                    same = f.read() == text
            except OSError:
                same = False
            if not same:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                ctx.say(f"restored {path}")


def _set_mtus(ctx: Ctx, mtu: int) -> None:
    for n in ctx.lab.nodes:
        pods = [p for p in ctx.lab.pods_on(n.name) if not p.host_network]
        for p in pods:
            _cmd(ctx, n.netns, ["ip", "link", "set", p.host_veth, "mtu", str(mtu)])
            _cmd(ctx, p.netns, ["ip", "link", "set", "eth0", "mtu", str(mtu)])
        _cmd(ctx, n.netns, ["ip", "link", "set", names.BRIDGE, "mtu", str(mtu)])


def break_mtu(ctx: Ctx) -> None:
    net = ctx.lab.cluster.networking
    _set_mtus(ctx, net.mtu)
    for n in ctx.lab.nodes:
        _cmd(ctx, n.netns, ["iptables", *IPT_WAIT, "-I", "OUTPUT", "-p", "icmp", "--icmp-type",
                            "fragmentation-needed", "-j", "DROP"])


def repair_mtu(ctx: Ctx) -> None:
    for n in ctx.lab.nodes:
        _delete_rules(ctx, n.netns, is_icmp_frag_block)
    _set_mtus(ctx, ctx.lab.cluster.networking.pod_mtu)
    for p in ctx.lab.pods:
        if not p.host_network:
            _cmd(ctx, p.netns, ["ip", "route", "flush", "cache"])


DENY_YAML = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {name}
  namespace: {ns}
spec:
  podSelector: {{}}
  policyTypes: [Ingress]
"""


def break_netpol(ctx: Ctx) -> None:
    from podnet.model.source import load_text

    _need_component(ctx, "netpol", "NetworkPolicy agent (kube-network-policies)")
    ns = ctx.namespace or "default"
    if ns not in ctx.lab.namespaces:
        raise PodnetError(f"no namespace {ns!r} in lab {ctx.lab.name}", field="--namespace")
    docs = load_text(DENY_YAML.format(name=DENY_POLICY, ns=ns), "<podnet break netpol-blocking>")
    ctx.store.close()
    for c in labrt.apply_docs(docs, ctx.lab.name):
        ctx.say(f"kubectl apply: {c.line()} (podSelector {{}}, policyTypes [Ingress], no rules)")
    _wait_policy_rules(ctx, present=True)


def _wait_policy_rules(ctx: Ctx, present: bool, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = any(DENY_POLICY in nsrun(n.netns, ["iptables-save", "-t", "filter"], check=False).stdout
                    for n in ctx.lab.nodes)
        if found == present:
            return
        time.sleep(0.2)


def repair_netpol(ctx: Ctx) -> None:
    """Deletes the deny-all ingress policies (empty podSelector, Ingress, no rules) of the namespace (all
    namespaces when none is named)."""
    from podnet.model.source import load_text

    targets = [np for np in ctx.lab.networkpolicies
               if (ctx.namespace is None or np.namespace == ctx.namespace) and np.pod_selector.empty
               and "Ingress" in np.policy_types and not np.ingress]
    if not targets:
        return
    text = "\n---\n".join(f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: "
                          f"{np.meta.name}\n  namespace: {np.namespace}\n" for np in targets)
    ctx.store.close()
    for c in labrt.delete_docs(load_text(text, "<podnet repair netpol-blocking>"), ctx.lab.name):
        ctx.say(f"kubectl delete: {c.line()}")
    _wait_policy_rules(ctx, present=False)


def break_vxlan(ctx: Ctx) -> None:
    for n in _nodes(ctx, default_all=True):
        _cmd(ctx, n.netns, ["iptables", *IPT_WAIT, "-I", "INPUT", "-p", "udp", "--dport", "8472", "-j", "DROP"])


def repair_vxlan(ctx: Ctx) -> None:
    for n in ctx.lab.nodes:
        _delete_rules(ctx, n.netns, is_vxlan_block)


def _coredns(ctx: Ctx) -> list[PlacedPod]:
    pods = [p for p in ctx.lab.pods if p.component == "coredns"]
    if not pods:
        raise PodnetError(f"lab {ctx.lab.name} has no cluster DNS (networking.clusterDNS: false)")
    return pods


def break_dns_down(ctx: Ctx) -> None:
    if not _kill(ctx, _coredns(ctx)):
        raise PodnetError("no coredns replica is running already")


def repair_dns_down(ctx: Ctx) -> None:
    from podnet.dataplane import dnsprobe

    _restart(ctx, _coredns(ctx))
    net = ctx.lab.cluster.networking
    name = f"kube-dns.kube-system.svc.{net.dns_domain}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:     # until kube-proxy has the endpoints back
        if all(dnsprobe.query(n.netns, str(net.dns_ip), name).ok for n in ctx.lab.nodes):
            ctx.say(f"kube-dns {net.dns_ip} answers again from every node")
            return
        time.sleep(0.2)


def _resolv_path(p: PlacedPod) -> str:
    return os.path.join(ETC_NETNS, p.netns, "resolv.conf")


def break_resolv_conf(ctx: Ctx) -> None:
    _coredns(ctx)
    p = _pod(ctx)
    net = ctx.lab.cluster.networking
    wrong = str(ipaddress.ip_address(net.dns_ip) + 1)
    text = dnscompile.resolv_conf(ctx.lab, p).replace(f"nameserver {net.dns_ip}", f"nameserver {wrong}")
    with open(_resolv_path(p), "w", encoding="utf-8") as f:
        f.write(text)
    ctx.say(f"wrote {_resolv_path(p)}: nameserver {wrong} (the cluster DNS is {net.dns_ip})")


def repair_resolv_conf(ctx: Ctx) -> None:
    for p in _pods(ctx):
        want = dnscompile.resolv_conf(ctx.lab, p)
        path = _resolv_path(p)
        try:
            with open(path, encoding="utf-8") as f:
                if f.read() == want:
                    continue
        except OSError:
            pass
        with open(path, "w", encoding="utf-8") as f:
            f.write(want)
        ctx.say(f"rewrote {path} as the kubelet writes it")


def _unused_ip(lab: Lab, node: LabNode) -> str:
    used = {str(p.ip) for p in lab.pods}
    hosts = list(node.pod_cidr.hosts())
    for ip in reversed(hosts[:250] if len(hosts) > 250 else hosts):
        if str(ip) not in used and ip != node.gateway:
            return str(ip)
    raise PodnetError(f"no unused address in {node.pod_cidr}")


def break_stale_conntrack(ctx: Ctx) -> None:
    p = _pod(ctx)
    sp = _service(ctx, udp=True)[0]
    if not sp.endpoints:
        raise PodnetError(f"Service {sp.namespace}/{sp.name} has no endpoints to go stale")
    ep = sp.endpoints[0]
    ep_node = ctx.lab.node(ep.node_name) if ep.node_name else ctx.lab.node(p.node)
    dead = _unused_ip(ctx.lab, ep_node)
    _cmd(ctx, ctx.lab.node(p.node).netns,
         ["conntrack", "-I", "-p", sp.protocol.lower(), "-s", str(p.ip), "-d", sp.cluster_ip, "--sport",
          str(STALE_SPORT), "--dport", str(sp.port), "-t", "600", "--dst-nat", f"{dead}:{ep.port}"])


def repair_stale_conntrack(ctx: Ctx) -> None:
    from podnet.diagnose import checks
    from podnet.diagnose.facts import from_lab
    from podnet.sim.parse_conntrack import parse_conntrack
    from podnet.sim.snapshot import NetnsState

    ready = labrt.ready_pods(ctx.lab, ctx.store)
    facts = from_lab(ctx.lab, ready, {})
    for n in ctx.lab.nodes:
        text = nsrun(n.netns, ["conntrack", "-L", "-o", "extended"], check=False).stdout
        state = NetnsState(n.netns, conntrack=parse_conntrack(text))
        for e, _ in checks.stale_entries(facts, state):
            _cmd(ctx, n.netns, ["conntrack", "-D", "-p", e.proto, "-s", str(e.orig.src), "-d", str(e.orig.dst),
                                "--sport", str(e.orig.sport), "--dport", str(e.orig.dport)])


def _bgp_sessions(ctx: Ctx, node: str) -> list[str]:
    fab = ctx.lab.cluster.bgp
    return [s.protocol for s in fab.sessions(node)] if fab else []


def break_bgp(ctx: Ctx) -> None:
    from podnet.dataplane import bird

    for n in _nodes(ctx, default_all=False):
        for flag in ("--dport", "--sport"):
            for chain in ("INPUT", "OUTPUT"):
                _cmd(ctx, n.netns, ["iptables", *IPT_WAIT, "-I", chain, "-p", "tcp", flag, "179", "-j", "DROP"])
        ctl = bird.paths(ctx.lab.name, n.name).ctl
        for proto in _bgp_sessions(ctx, n.name):
            bird.birdc(ctl, "restart", proto)
            ctx.say(f"birdc -s {ctl} restart {proto}")
    deadline = time.monotonic() + 20           # the peer notices when its hold timer (9 s) expires
    while time.monotonic() < deadline:
        states = bird.session_states(ctx.lab)
        peers = [s for n in _nodes(ctx, default_all=False) for s in (ctx.lab.cluster.bgp.sessions(n.name)
                                                                       if ctx.lab.cluster.bgp else [])]
        if all(states.get(s.peer, {}).get(_peer_protocol(ctx, s)) != "Established" for s in peers):
            ctx.say("the peers' sessions are down (hold timer expired)")
            return
        time.sleep(0.5)


def _peer_protocol(ctx: Ctx, s) -> str:
    fab = ctx.lab.cluster.bgp
    for back in fab.sessions(s.peer):
        if back.peer == s.local:
            return back.protocol
    return ""


def repair_bgp(ctx: Ctx) -> None:
    from podnet.dataplane import bird
    from podnet.sim import bird as birdparse

    fab = ctx.lab.cluster.bgp
    if fab is None:
        return
    for sp in fab.speakers():
        ns = names.host_ns(ctx.lab.name, sp)
        _delete_rules(ctx, ns, is_bgp_block)
        ctl = bird.paths(ctx.lab.name, sp).ctl
        text = bird.birdc(ctl, "show", "protocols")
        for p in birdparse.parse_protocols(text or ""):
            if p.proto == "BGP" and p.state == "down":
                bird.birdc(ctl, "enable", p.name)
                ctx.say(f"birdc -s {ctl} enable {p.name}")
    up, total = bird.wait_established(ctx.lab, timeout=20)
    ctx.say(f"BGP: {up}/{total} sessions Established")


def break_br_netfilter(ctx: Ctx) -> None:
    for n in _nodes(ctx, default_all=True):
        _cmd(ctx, n.netns, ["sysctl", "-w", "net.bridge.bridge-nf-call-iptables=0"])


def repair_br_netfilter(ctx: Ctx) -> None:
    for n in ctx.lab.nodes:
        cur = nsrun(n.netns, ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"], check=False).stdout.strip()
        if cur == "0":
            _cmd(ctx, n.netns, ["sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1"])


def break_hairpin(ctx: Ctx) -> None:
    p = _pod(ctx, _first_backing_pod)
    _cmd(ctx, ctx.lab.node(p.node).netns, ["bridge", "link", "set", "dev", p.host_veth, "hairpin", "off"])


def repair_hairpin(ctx: Ctx) -> None:
    for p in _pods(ctx):
        if not p.host_veth.startswith("veth"):
            continue
        ns = ctx.lab.node(p.node).netns
        r = nsrun(ns, ["bridge", "-j", "-d", "link", "show", "dev", p.host_veth], check=False)
        try:
            info = json.loads(r.stdout or "[]")
        except ValueError:
            info = []
        if info and info[0].get("hairpin") is False:
            _cmd(ctx, ns, ["bridge", "link", "set", "dev", p.host_veth, "hairpin", "on"])


ACTIONS: dict[str, tuple[Callable[[Ctx], None], Callable[[Ctx], None]]] = {
    "kube-proxy-down": (break_kube_proxy, repair_kube_proxy),
    "service-rules-missing": (break_service_rules, repair_service_rules),
    "cni-veth-detached": (break_veth, repair_veth),
    "cni-pod-route": (break_pod_route, repair_pod_route),
    "cni-config": (break_cni_config, repair_cni_config),
    "mtu-mismatch": (break_mtu, repair_mtu),
    "netpol-blocking": (break_netpol, repair_netpol),
    "vxlan-blocked": (break_vxlan, repair_vxlan),
    "dns-down": (break_dns_down, repair_dns_down),
    "dns-resolv-conf": (break_resolv_conf, repair_resolv_conf),
    "stale-conntrack": (break_stale_conntrack, repair_stale_conntrack),
    "bgp-session-down": (break_bgp, repair_bgp),
    "br-netfilter-off": (break_br_netfilter, repair_br_netfilter),
    "hairpin-off": (break_hairpin, repair_hairpin),
}


def _context(lab_name: str | None, opts: dict[str, str | None]) -> Ctx:
    lab, store = labrt.load(lab_name)
    ctx = Ctx(lab, store, node=opts.get("node"), pod=opts.get("pod"), service=opts.get("service"),
              namespace=opts.get("namespace"))
    if ctx.node:
        try:
            lab.node(ctx.node)
        except PodnetError:
            store.close()
            raise PodnetError(f"no node {ctx.node!r} in lab {lab.name} (nodes: "
                              f"{', '.join(n.name for n in lab.nodes)})", field="--node") from None
    return ctx


def do(fault_id: str, action: str, lab_name: str | None, opts: dict[str, str | None]) -> list[str]:
    """Break (``action`` "break") or repair one fault; returns what was done, one line each."""
    f = catalogue.fault(fault_id)
    given = {k for k, v in opts.items() if v}
    extra = given - set(f.options)
    if extra:
        raise PodnetError(f"fault {f.id} takes no --{sorted(extra)[0]} (its options: "
                          f"{', '.join('--' + o for o in f.options) or 'none'})")
    ctx = _context(lab_name, opts)
    try:
        if action == "break":
            _need_backend(ctx, f)
        brk, rep = ACTIONS[f.id]
        (brk if action == "break" else rep)(ctx)
    finally:
        ctx.store.close()
    return ctx.done
