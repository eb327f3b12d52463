"""``podnet proxy render`` against hand-checked payloads (tests/golden/proxy/<case>/).

Each case has ``input.yaml``, ``args`` (the render flags) and ``expected.iptables`` /
``expected.nftables``. Regenerate with PODNET_UPDATE_GOLDEN=1, then review the diff by hand.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from podnet.cli.proxy import proxy

CASES = Path(__file__).parent.parent / "golden" / "proxy"


def render(case: Path, mode: str) -> str:
    args = ["render", *shlex.split((case / "args").read_text()), "--mode", mode, "-f", str(case / "input.yaml")]
    result = CliRunner().invoke(proxy, args)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if (p / "args").exists()))
def test_golden(case: str, mode: str) -> None:
    got = render(CASES / case, mode)
    expected = CASES / case / f"expected.{mode}"
    if os.environ.get("PODNET_UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()


def test_overall_golden_is_upstream_modulo_api_validation() -> None:
    """The manifests' payload is upstream's dump once the forced differences are mapped back."""
    from test_kubeproxy_iptables import sort_like_upstream
    got = (CASES / "overall" / "expected.iptables").read_text()
    for a, b in (("30001", "3001"), ("30002", "3002"), ("30003", "3003"), ("0x00004000", "0x4000"),
                 (" --random-fully", "")):
        got = got.replace(a, b)
    want = (CASES / "overall" / "upstream-TestOverallIPTablesRules.txt").read_text()
    want = want.replace(" -m nfacct --nfacct-name ct_state_invalid_dropped_pkts", "")
    want = "\n".join(x for x in want.splitlines() if "nfacct" not in x) + "\n"
    assert sort_like_upstream(got) == sort_like_upstream(want)


def test_render_errors_are_one_line() -> None:
    result = CliRunner().invoke(proxy, ["render", "--node", "nope", "-f", str(CASES / "seed" / "input.yaml")])
    assert result.exit_code != 0 and "node 'nope' is not in the Cluster" in result.output
