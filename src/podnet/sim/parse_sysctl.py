"""Parser for sysctl output (``sysctl -a``, ``sysctl KEY...``) and sysctl.conf-style files. Pure."""

from __future__ import annotations

from podnet.sim.snapshot import SnapshotError


def parse_sysctl(text: str, source: str = "sysctl.txt") -> dict[str, str]:
    """``net.ipv4.ip_forward = 1`` or ``net.ipv4.ip_forward=1`` lines; ``#``/``;`` comments and blank
    lines are skipped; keys with ``/`` are normalised to dots; whitespace in values is collapsed
    (``ip_local_port_range = 32768\\t60999`` -> ``"32768 60999"``)."""
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or " " in key:
            raise SnapshotError(f"expected 'key = value', got {line[:60]!r}", where=f"{source}:{lineno}")
        out[key.replace("/", ".")] = " ".join(value.split())
    return out


def render_sysctl(values: dict[str, str]) -> str:
    return "".join(f"{k} = {v}\n" for k, v in values.items())
