"""kube-network-policies-<node>: the per-node NetworkPolicy agent (a hostNetwork pod in kube-system).

It lives in its node's namespace and keeps that node's netfilter rules equal to what the lab's
policies, pods and namespace labels say (``compile.netpol_iptables``):

- level-triggered: it polls the store's revision every 0.2 s; when it moved (``podnet apply`` /
  ``delete`` of a policy, a pod's or a namespace's labels, a pod added or removed) it recomputes the
  node's rules and, when they differ from what it applied, writes them with ONE
  ``iptables-restore --noflush`` (our chains rewritten atomically, chains no longer needed deleted);
- every second it reads the filter table back: when our rules were changed or flushed by hand, or
  another component pushed its jump above ours in ``FORWARD``/``INPUT``, it restores them and says so;
- after each sync it writes ``nodes/<node>/run/netpol/status.json`` under the lab's run directory
  (the store revision it reflects), so ``podnet netpol matrix --probe`` knows the rules are current.

Established connections are left alone on a change (the rules only judge new connections), as the
API allows. Killing this process freezes the node's rules as they are, as on a real node.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from podnet.compile import netpol_iptables as npt
from podnet.dataplane import lab as labrt
from podnet.dataplane import netpol as dp
from podnet.model.netpol_eval import PolicySet

POLL = 0.2       # store revision
RESYNC = 1.0     # read-back of the kernel's rules


def log(msg: str, level: str = "I", where: str = "controller.go:120") -> None:
    ts = time.strftime("%m%d %H:%M:%S", time.gmtime())
    frac = f"{time.time() % 1:.6f}"[1:]
    sys.stdout.write(f"{level}{ts}{frac} {os.getpid():>7} {where}] {msg}\n")
    sys.stdout.flush()


def status_path(lab: str, node: str) -> str:
    return os.path.join(labrt.lab_dir(lab), "nodes", node, "run", "netpol", "status.json")


def write_status(lab: str, node: str, status: dict) -> None:
    path = status_path(lab, node)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(status, f)
    os.replace(tmp, path)


def read_status(lab: str, node: str) -> dict | None:
    try:
        with open(status_path(lab, node)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Agent:
    def __init__(self, lab: str, node: str) -> None:
        self.lab = lab
        self.node = node
        self.rules: npt.NetpolRules | None = None
        self.view: dp.KernelView | None = None
        self.exact = True
        self.jumps = npt.jump_rules()

    def desired(self) -> tuple[npt.NetpolRules, int]:
        """The node's rules from the store, and the number of policies."""
        lab, store = labrt.load(self.lab)
        store.close()
        return npt.build_rules(PolicySet.from_lab(lab), self.node), len(lab.networkpolicies)

    def sync(self, rev: int) -> None:
        """Bring the kernel to the store (read after the store was at revision ``rev``)."""
        t0 = time.monotonic()
        rules, n_policies = self.desired()
        if rules != self.rules or self.view is None:
            self.apply(rules)
            iso = rules.isolated
            log(f"Synced {n_policies} network policies at revision {rev}: {len(rules.rules)} rules in "
                f"{len(rules.chains)} chains; isolated for egress: {', '.join(iso['Egress']) or 'none'}; "
                f"for ingress: {', '.join(iso['Ingress']) or 'none'} ({(time.monotonic() - t0) * 1000:.0f} ms)")
        self.report(rev)

    def check(self) -> None:
        """Read the rules back; restore them when the kernel does not hold exactly what we want (someone
        flushed or edited them, or another component pushed its jump above ours or rewrote the table)."""
        if self.rules is None:
            return
        now = dp.KernelView.parse(dp.save_filter())
        why = now.drift(self.rules, self.jumps, compare_rules=self.exact)
        if not why and not self.exact and self.view is not None and now.rules != self.view.rules:
            why = "rules changed outside the agent"
        if not why:
            return
        log(f"Re-syncing: {why}", level="W", where="controller.go:210")
        self.apply(self.rules)

    def apply(self, rules: npt.NetpolRules) -> None:
        """Write ``rules`` and read them back. Normally the kernel prints them exactly as written and later
        checks compare with what we want. When another writer raced us (a whole-table restore from an
        older save), one more write fixes it; when even that read-back differs in the rules themselves
        (an iptables that prints matches differently), later checks compare with that read-back."""
        for attempt in (1, 2):
            self.view = dp.apply(rules, self.jumps)
            why = self.view.drift(rules, self.jumps)
            if not why:
                break
            log(f"Read-back differs right after writing ({why})" + (", writing again" if attempt == 1 else ""),
                level="W", where="controller.go:230")
        self.rules = rules
        self.exact = not why

    def report(self, rev: int) -> None:
        assert self.rules is not None
        write_status(self.lab, self.node, {"revision": rev, "pid": os.getpid(), "time": time.time(),
                                           "rules": len(self.rules.rules), "chains": len(self.rules.chains),
                                           "isolated": self.rules.isolated})


def unlimit_icmp() -> None:
    """No rate limit on the node's ICMP errors: a policy REJECTs many probes of one pod at once, and the
    kernel's default (net.ipv4.icmp_ratelimit=1000 ms per peer, burst 6) would turn the 7th into a
    1 s timeout. The component runs in its node's namespace, so this is that namespace's sysctl."""
    try:
        with open("/proc/sys/net/ipv4/icmp_ratelimit", "w") as f:
            f.write("0")
        log("Set net.ipv4.icmp_ratelimit=0 in the node's namespace (denied connections fail at once)",
            where="main.go:95")
    except OSError as e:
        log(f"Cannot set net.ipv4.icmp_ratelimit: {e}", level="W", where="main.go:95")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="kube-network-policies")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--node", required=True)
    a = ap.parse_args(argv)
    log(f"Starting kube-network-policies on node {a.node}: iptables (filter table, chains {npt.CHAIN_PREFIX}*, "
        f"jumps first in FORWARD and INPUT), deny = REJECT icmp-admin-prohibited", where="main.go:90")
    unlimit_icmp()
    agent = Agent(a.lab, a.node)
    _, store = labrt.load_when_saved(a.lab, a.node)
    seen_rev = -1
    last_check = time.monotonic()
    last_error = ""
    while True:
        try:
            rev = store.revision
            if rev != seen_rev:
                agent.sync(rev)
                seen_rev = rev
            if time.monotonic() - last_check > RESYNC:
                agent.check()
                last_check = time.monotonic()
            last_error = ""
        except Exception as e:  # keep running and say why (once); the next change or check retries
            if str(e) != last_error:
                log(f"Error syncing network policies: {e}", level="E", where="controller.go:150")
            last_error = str(e)
            seen_rev = -1
            time.sleep(1)
        time.sleep(POLL)


if __name__ == "__main__":
    main()
