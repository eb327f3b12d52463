"""NetworkPolicy rules into the kernel of the calling process's network namespace (a node's).

The ``kube-network-policies-<node>`` component runs inside its node's namespace and calls these: one
``iptables-restore --noflush`` per sync (every chain of ours rewritten in one transaction), the jumps
from ``FORWARD``/``INPUT`` kept first, and a read-back (``iptables-save -t filter``) to notice when
someone changed or flushed our rules. Argument vectors only, never a shell.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from podnet.compile.netpol_iptables import JumpRule, NetpolRules, is_netpol_chain
from podnet.errors import PodnetError

WAIT = ["-w", "5"]     # the xtables lock is shared with kube-proxy: wait instead of failing


def _run(argv: list[str], stdin: str | None = None, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    if p.returncode not in ok:
        raise PodnetError(f"{' '.join(argv[:2])} failed ({p.returncode}): {(p.stderr or p.stdout).strip()}")
    return p


def save_filter() -> str:
    return _run(["iptables-save", "-t", "filter"]).stdout


@dataclass(frozen=True)
class KernelView:
    """Our part of the filter table as the kernel holds it, and the first rule of each hooked chain."""

    chains: tuple[str, ...]
    rules: tuple[str, ...]
    first: tuple[tuple[str, str], ...]     # (built-in chain, its first rule)

    @classmethod
    def parse(cls, save_text: str, hooks: tuple[str, ...] = ("FORWARD", "INPUT")) -> KernelView:
        chains, rules, first = [], [], {}
        for line in save_text.splitlines():
            if line.startswith(":"):
                name = line[1:].split(" ", 1)[0]
                if is_netpol_chain(name):
                    chains.append(name)
            elif line.startswith("-A "):
                chain = line.split(" ", 2)[1]
                if is_netpol_chain(chain):
                    rules.append(line)
                elif chain in hooks and chain not in first:
                    first[chain] = line
        return cls(tuple(chains), tuple(rules), tuple(sorted(first.items())))

    def first_rule(self, chain: str) -> str:
        return dict(self.first).get(chain, "")

    def drift(self, rules: NetpolRules, jumps: list[JumpRule], compare_rules: bool = True) -> str:
        """Why the kernel does not hold ``rules`` (as ``iptables-save`` prints them) with the jumps first;
        "" when it does. ``compare_rules`` False: only our chains and the jumps are checked."""
        if sorted(self.chains) != sorted(rules.chains):
            missing = sorted(set(rules.chains) - set(self.chains))
            extra = sorted(set(self.chains) - set(rules.chains))
            return f"chains differ (missing: {', '.join(missing) or '-'}; extra: {', '.join(extra) or '-'})"
        if compare_rules and _by_chain(self.rules) != _by_chain(rules.rules):
            return "rules changed outside the agent"
        moved = [j.chain for j in jumps if self.first_rule(j.chain) != j.spec]
        if moved:
            return f"our jump is no longer first in {' and '.join(moved)}"
        return ""


def _by_chain(lines: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        out.setdefault(line.split(" ", 2)[1], []).append(line)
    return out


def apply(rules: NetpolRules, jumps: list[JumpRule]) -> KernelView:
    """Write ``rules`` (deleting our chains the kernel has but ``rules`` lacks), keep the jumps first,
    and return the kernel's view afterwards (to compare with on the next check)."""
    before = KernelView.parse(save_filter())
    _run(["iptables-restore", *WAIT, "--noflush"], stdin=rules.payload(before.chains))
    ensure_jumps_first(jumps, before)
    return KernelView.parse(save_filter())


def ensure_jumps_first(jumps: list[JumpRule], view: KernelView) -> int:
    """Each jump must be rule 1 of its chain (above kube-proxy's ACCEPT of marked traffic). Returns
    how many were (re)inserted."""
    moved = 0
    for j in jumps:
        if view.first_rule(j.chain) == j.spec:
            continue
        while _run(["iptables", *WAIT, "-D", j.chain, *j.args], ok=(0, 1, 2)).returncode == 0:
            pass
        _run(["iptables", *WAIT, "-I", j.chain, "1", *j.args])
        moved += 1
    return moved


def remove_all(jumps: list[JumpRule]) -> None:
    """Take every rule and chain of ours out of the filter table (the jumps first)."""
    for j in jumps:
        while _run(["iptables", *WAIT, "-D", j.chain, *j.args], ok=(0, 1, 2)).returncode == 0:
            pass
    view = KernelView.parse(save_filter())
    if view.chains:
        payload = "\n".join(["*filter", *(f":{c} - [0:0]" for c in view.chains),
                             *(f"-X {c}" for c in view.chains), "COMMIT"]) + "\n"
        _run(["iptables-restore", *WAIT, "--noflush"], stdin=payload)
