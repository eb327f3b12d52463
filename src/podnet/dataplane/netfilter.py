"""iptables / nft / conntrack in the calling process's network namespace (argv lists, never a shell).

Components run inside their node's namespace, so these act there. Every call names the command and
its stderr in the error, so a component's log says exactly what the kernel refused.
"""

from __future__ import annotations

import re
import subprocess

from podnet.compile.conntrack_cleanup import ConntrackFilter
from podnet.compile.kubeproxy_iptables import JumpRule
from podnet.errors import PodnetError

WAIT = ["-w", "5"]    # the xtables lock: wait as kube-proxy does instead of failing


def _run(argv: list[str], stdin: str | None = None, ok: tuple[int, ...] = (0,),
         timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    if p.returncode not in ok:
        raise PodnetError(f"{' '.join(argv[:3])} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def iptables_restore(payload: str) -> None:
    """One ``iptables-restore --noflush`` transaction (all tables in the payload commit atomically)."""
    _run(["iptables-restore", *WAIT, "--noflush"], stdin=payload, timeout=1800)   # cold 10k: minutes


def iptables_replace(tables_text: str) -> None:
    """Replace whole tables (every table in the text) in one transaction, keeping the given counters."""
    _run(["iptables-restore", *WAIT, "--counters"], stdin=tables_text, timeout=1800)


def iptables_save(table: str, counters: bool = False) -> str:
    return _run(["iptables-save", *(["-c"] if counters else []), "-t", table]).stdout


def chains_in(save_text: str) -> set[str]:
    return {line[1:].split(" ", 1)[0] for line in save_text.splitlines() if line.startswith(":")}


def ensure_chains(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Create the (table, chain) pairs that do not exist; returns the ones it created."""
    existing = {t: chains_in(iptables_save(t)) for t in {t for t, _ in pairs}}
    made = []
    for table, chain in pairs:
        if chain not in existing[table]:
            _run(["iptables", *WAIT, "-t", table, "-N", chain], ok=(0, 1))
            made.append((table, chain))
    return made


def ensure_jumps(jumps: list[JumpRule]) -> int:
    """``EnsureRule(Prepend, ...)``: ``-C``, and ``-I`` when missing. Returns how many were inserted."""
    inserted = 0
    for j in jumps:
        if _run(["iptables", *WAIT, *j.check_argv()], ok=(0, 1, 2)).returncode != 0:
            _run(["iptables", *WAIT, *j.insert_argv()])
            inserted += 1
    return inserted


def chain_exists(table: str, chain: str) -> bool:
    return _run(["iptables", *WAIT, "-t", table, "-S", chain, "1"], ok=(0, 1, 2)).returncode == 0


def nft_apply(script: str) -> None:
    _run(["nft", "-f", "-"], stdin=script, timeout=1800)


def nft_table_exists(family: str, table: str) -> bool:
    return _run(["nft", "list", "table", family, table], ok=(0, 1)).returncode == 0


def conntrack_delete(f: ConntrackFilter) -> int:
    """``conntrack -D`` with the filter's flags; returns how many entries were deleted."""
    p = _run(["conntrack", "-D", *f.argv()], ok=(0, 1))
    m = re.search(r"(\d+) flow entries have been deleted", p.stderr + p.stdout)
    return int(m.group(1)) if m else 0
