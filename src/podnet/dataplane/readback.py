"""Live snapshot of a running lab: the kernel state of every namespace, read back with the same
commands an SRE runs on a real node (``podnet.sim.dumpdir.DUMP_FILES``), each inside its namespace
with ``ip netns exec``, and parsed by the same parsers. The result equals what ``load_snapshot``
gives for a dump directory of the same state (``podnet snapshot save`` writes exactly these texts).

Namespaces are read in parallel threads (the cost is process start-up, not parsing).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from podnet.errors import PodnetError
from podnet.sim.dumpdir import DUMP_FILES, DumpFile, netns_from_dumps
from podnet.sim.snapshot import NetnsState, Snapshot

TIMEOUT = 30.0
# commands whose failure means "nothing to show" rather than a broken read-back
_EMPTY_OK = {"nft.json", "conntrack.txt", "ss-listen.txt", "ip-netns.json", "bridge-link.json"}


def _env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "LANG": "C"}


def _run(netns: str, f: DumpFile) -> str | None:
    argv = ["ip", "netns", "exec", netns, *f.argv]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=_env(), check=False)
    except FileNotFoundError:
        raise PodnetError(f"cannot read {f.name}: command {f.argv[0]!r} not found (install it)",
                          where=netns) from None
    except subprocess.TimeoutExpired:
        raise PodnetError(f"{' '.join(f.argv)} did not finish in {TIMEOUT:.0f}s", where=netns) from None
    if p.returncode != 0:
        if f.name in _EMPTY_OK:
            return None
        reason = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise PodnetError(f"{' '.join(f.argv)} failed: {reason}", where=netns)
    return p.stdout      # stderr (conntrack's summary line, sysctl warnings) is not part of the dump


def read_texts(netns: str) -> dict[str, str]:
    """The dump texts of one namespace (file name -> stdout of its command)."""
    out: dict[str, str] = {}
    for f in DUMP_FILES:
        text = _run(netns, f)
        if text is not None:
            out[f.name] = text
    return out


def read_all_texts(namespaces: Iterable[str], workers: int = 8) -> dict[str, dict[str, str]]:
    names = list(namespaces)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names)))) as pool:
        texts = list(pool.map(read_texts, names))
    return dict(zip(names, texts, strict=True))


def read_snapshot(namespaces: Iterable[str], workers: int = 8) -> Snapshot:
    """A snapshot of the named network namespaces (each must exist), named as the kernel names them."""
    texts = read_all_texts(namespaces, workers)
    cache: dict[tuple[str, str], Any] = {}
    states: dict[str, NetnsState] = {}
    for name, t in texts.items():
        states[name] = netns_from_dumps(name, t, where=f"netns {name}", cache=cache)
    return Snapshot(states)
