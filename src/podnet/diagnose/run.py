"""``podnet diagnose SRC DST[:PORT]`` end to end: the five steps probed for real from the source pod, the
lab's kernel state read back meanwhile (a snapshot of the nodes, the underlay and the pods involved), the
state checks, and the first failing step's probe traced to the hop and the entry where it stops.
"""

from __future__ import annotations

import ipaddress
import os
from concurrent.futures import ThreadPoolExecutor

from podnet.dataplane import icmpprobe
from podnet.dataplane import lab as labrt
from podnet.dataplane.readback import read_snapshot
from podnet.diagnose import checks, locate, probing, steps
from podnet.diagnose.facts import LabFacts, PodFacts, from_lab
from podnet.diagnose.faults import proc_state
from podnet.diagnose.report import Diagnosis, StepResult
from podnet.errors import PodnetError
from podnet.sim.world import World
from podnet.trace import places as placesmod
from podnet.trace.endpoints import Origin, resolve_destination

ETC_NETNS = "/etc/netns"


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:240] if lines else ""


def lab_facts(lab_name: str | None, bgp_status: bool = True) -> tuple[object, LabFacts]:
    """The lab and what diagnose knows of it: declared objects, processes, component logs, BGP."""
    lab, store = labrt.load(lab_name)
    try:
        running, states = {}, {}
        for p in lab.pods:
            alive = labrt.container_state(store, p)
            pids = labrt.runtime(store, p)
            stopped = [c for c, ok in alive.items() if ok and proc_state(pids[c]) in ("T", "t")]
            running[p.key] = all(alive.values()) and not stopped
            states[p.key] = "stopped" if stopped else "running" if running[p.key] else "exited"
        ready = labrt.ready_pods(lab, store)
        tails = {}
        for p in lab.pods:
            if p.component and not running.get(p.key, True) and p.pod.spec.containers:
                c = p.pod.spec.containers[0].name
                tails[p.key] = _last_line(labrt.log_path(lab.name, p.namespace, p.name, c))
        bgp = None
        if lab.cluster.bgp is not None and bgp_status:
            from podnet.dataplane import bird
            from podnet.sim import bgp_status as bgp_doc

            bgp = bgp_doc.status(lab.name, lab.cluster.bgp, bird.collect(lab, store))
    finally:
        store.close()
    facts = from_lab(lab, ready, running, tails, states)
    facts.bgp = bgp
    return lab, facts


def resolve_src(facts: LabFacts, spec: str) -> PodFacts:
    pods = [p for p in facts.pods if not p.host_network]
    parts = spec.split("/")
    cand: list[PodFacts] = []
    if parts[0] in ("pod", "po") and len(parts) == 3:
        cand = [p for p in pods if p.key == f"{parts[1]}/{parts[2]}"]
    elif len(parts) == 2 and parts[0] not in ("node", "host", "no", "router", "svc", "service"):
        cand = [p for p in pods if p.key == spec]
    elif len(parts) == 1:
        try:
            ip = str(ipaddress.ip_address(spec))
            cand = [p for p in pods if p.ip == ip]
        except ValueError:
            cand = [p for p in pods if p.name == spec]
        if len(cand) > 1:
            raise PodnetError(f"pod name {spec!r} is ambiguous: {', '.join(p.key for p in cand)} (write "
                              "NAMESPACE/NAME)", field="SRC")
    else:
        raise PodnetError(f"diagnose starts in a pod (its five steps are what a pod sees); {spec!r} is not one "
                          "(use podnet trace for nodes and hosts)", field="SRC")
    if not cand:
        known = ", ".join(p.key for p in pods if p.namespace != "kube-system") or "none"
        raise PodnetError(f"no pod {spec!r} in lab {facts.lab} (pods: {known})", field="SRC")
    return cand[0]


def resolve_subject(facts: LabFacts, places: placesmod.Places, src: PodFacts, spec: str,
                    proto: str | None) -> steps.Subject:
    origin = Origin(src.netns, ipaddress.ip_address(src.ip), f"pod {src.key}")
    target = resolve_destination(spec, places, origin)
    host = spec.rsplit(":", 1)[0] if target.port is not None and spec.count(":") == 1 else spec
    ip = str(target.ip)
    port = target.port
    if target.service is not None:
        sp = target.service
        svc = next((s for s in facts.services if s.key == sp.key and s.port == sp.port), None)
        eps = tuple((e.ip, e.port, e.node, e.pod) for e in svc.endpoints) if svc else ()
        name = host if target.dns is not None else None
        return steps.Subject("service", f"svc {sp.key}", ip, port, sp.protocol if port else "icmp", name, sp.key, eps)
    pod = facts.pod_by_ip(ip)
    p = proto or "tcp"
    if pod is not None:
        return steps.Subject("pod", f"pod {pod.key}", ip, port, p if port else "icmp",
                             endpoints=((ip, port or 0, pod.node, pod.key),), pod=pod.key)
    return steps.Subject("ip", ip, ip, port, p if port else "icmp")


def snapshot_namespaces(lab, facts: LabFacts, src: PodFacts, subject: steps.Subject,
                        plans: list[steps.StepPlan]) -> list[str]:
    pod_ns = {p.netns for p in facts.pods if not p.host_network}
    base = [ns for ns in lab.all_netns() if ns not in pod_ns]
    want = {src.netns}
    ips = {pr.dst for s in plans for pr in s.probes} | {e[0] for e in subject.endpoints} | {subject.ip}
    for p in facts.pods:
        if p.host_network:
            continue
        if p.ip in ips or p.component == "coredns":
            want.add(p.netns)
    return base + sorted(want)


def read_files(directory: str) -> dict[str, str] | None:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None
    out = {}
    for n in names:
        p = os.path.join(directory, n)
        if os.path.isfile(p):
            try:
                with open(p, encoding="utf-8", errors="replace") as f:
                    out[n] = f.read()
            except OSError:
                continue
    return out


def symptom(results: list[StepResult], backend: str = "vxlan") -> str:
    failed = next((s for s in results if s.status == "fail"), None)
    if failed is None:
        return ""
    if failed.n == 3:
        small = [p for p in failed.probes if p.kind == "ping"]
        big = [p for p in failed.probes if p.kind == "ping-df"]
        if small and all(p.ok for p in small) and big and not all(p.ok for p in big):
            return (f"small packets reach pods on other nodes, full-size ones ({big[0].size} B) vanish: an MTU "
                    "problem (step 3)")
    passed = [s.title for s in results if s.status == "pass" and s.n < failed.n]
    why = steps.MEANING[failed.n]
    if failed.n == 3 and backend != "vxlan":
        why = "a routing problem between the nodes" + (" (BGP)" if backend == "bgp" else " (host-gw routes)")
    head = f"step {failed.n} ({failed.title}) fails"
    if failed.n == 4 and failed.title != steps.QUESTIONS[4][1]:
        why = "the destination itself (its port, a policy, the way there)"
    listed = passed[0] if len(passed) == 1 else ", ".join(passed[:-1]) + f" and {passed[-1]}" if passed else ""
    verb = "works" if len(passed) == 1 else "work"
    return head + (f" while {listed} {verb}" if passed else "") + f": {why}"


def diagnose(lab_name: str | None, src_spec: str, dst_spec: str, proto: str | None = None,
             timeout: float = probing.TIMEOUT) -> Diagnosis:
    lab, facts = lab_facts(lab_name)
    base_places = placesmod.from_lab(lab)
    src = resolve_src(facts, src_spec)
    if not src.running:
        raise PodnetError(f"pod {src.key} is not running: its probes would say nothing (podnet up restarts it)",
                          field="SRC")
    subject = resolve_subject(facts, base_places, src, dst_spec, proto)
    plans = steps.plan(facts, src, subject, icmpprobe.link_mtu(src.netns))
    namespaces = snapshot_namespaces(lab, facts, src, subject, plans)
    with ThreadPoolExecutor(max_workers=1) as ex:
        fut = ex.submit(read_snapshot, namespaces)
        results = probing.run_steps(src.netns, plans, timeout)
        snap = fut.result()
    for n in facts.nodes:
        facts.cni_configs[n.name] = read_files(os.path.join(ETC_NETNS, n.netns, "cni", "net.d"))
    for ns in namespaces:
        if facts.pod_by_netns(ns) is not None:
            facts.resolv_confs[ns] = probing.resolv_conf_text(ns)
    places = placesmod.infer(snap, base_places)
    world = World(snap)
    findings = checks.run_checks(facts, snap, world, places)
    flow = {"srcIP": src.ip, "srcNode": src.node, "dstIP": subject.ip, "port": subject.port,
            "proto": subject.proto, "srcMTU": next((p.size for s in plans for p in s.probes if p.kind == "ping-df"),
                                                    None)}
    diag = Diagnosis(lab=facts.lab, src=f"pod {src.key}", dst=subject.label, flow=flow, steps=results,
                     symptom=symptom(results, facts.backend))
    failed = diag.failed_step
    if failed is not None:
        probe = _probe_to_trace(failed)
        loc = locate.locate(facts, world, places, src, probe, findings)
        cause = locate.to_finding(loc, failed.n, findings)
        if loc.cause == "netpol-blocking":
            cause.evidence += _netpol_evidence(facts, subject)
        if cause in findings:
            findings.remove(cause)
        findings.insert(0, cause)
        diag.cause = cause
        diag.trace = loc.trace
    _follow_stale_entries(facts, world, places, src, subject, findings)
    diag.findings = findings
    diag.notes = [f"state read from {len(namespaces)} namespaces: the nodes, the underlay and the pods the probes "
                  "involve"]
    return diag


def _follow_stale_entries(facts: LabFacts, world: World, places: placesmod.Places, src: PodFacts,
                          subject: steps.Subject, findings: list) -> None:
    """A stale entry of the source pod's own flow: trace that flow from the client's socket (its source
    port), through the entry, to where it dies."""
    from podnet.diagnose.report import ProbeResult

    for f in findings:
        d = f.data
        if f.cause != "stale-conntrack" or d.get("src") != src.ip:
            continue
        probe = ProbeResult("connect", f"{d['dst']}:{d['dport']}/{d['proto']}", "the client's socket", False,
                            "stale", proto=d["proto"], dst=d["dst"], port=d["dport"], sport=d["sport"])
        loc = locate.locate(facts, world, places, src, probe, [])
        f.evidence += [e.replace("trace ", "trace of the client's flow ", 1) for e in loc.evidence
                       if e.startswith("trace ")]
        if subject.ip == d["dst"] and subject.port == d["dport"]:
            f.explains_flow = True


def _probe_to_trace(step: StepResult):
    bad = [p for p in step.probes if not p.ok]
    # the full-size probe is the one to follow when small ones pass (the MTU symptom)
    df = [p for p in bad if p.kind == "ping-df"]
    small_ok = all(p.ok for p in step.probes if p.kind == "ping")
    return df[0] if df and small_ok else bad[0]


def _netpol_evidence(facts: LabFacts, subject: steps.Subject) -> list[str]:
    ns = (subject.pod or subject.service or "default/").split("/", 1)[0]
    pols = [k for k in facts.netpols if k.startswith(ns + "/")]
    return [f"kubectl get networkpolicy -n {ns}: {', '.join(k.split('/', 1)[1] for k in pols) or '<none>'}"]
