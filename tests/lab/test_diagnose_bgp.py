"""A BGP session down, on the bgp-backend lab (examples/seed-bgp.yaml): `podnet break` it (TCP 179 blocked
on a node, the session reset), diagnose names it with BIRD's state and the rule; repair; healthy. Then by
hand with `birdc disable` on the other node."""

from __future__ import annotations

import json

import pytest

from tests.lab.conftest import run, running_lab, sh


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("diagbgp"), "seed-bgp.yaml") as lab:
        yield lab


def diagnose(lab, src: str, dst: str) -> tuple[int, dict]:
    p = run("diagnose", src, dst, "--lab", lab.name, "-o", "json", check=False, timeout=180)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)


def test_healthy_bgp_lab(lab):
    rc, doc = diagnose(lab, "pod-a", "my-service:8080")
    assert rc == 0 and doc["healthy"], json.dumps(doc, indent=1)


def test_bgp_session_down(lab):
    try:
        run("break", "bgp-session-down", "--node", "node1", "--lab", lab.name, timeout=120)
        rc, doc = diagnose(lab, "pod-a", "my-service:8080")
        assert rc == 1 and doc["failedStep"] == 3, json.dumps(doc, indent=1)
        assert doc["cause"]["cause"] == "bgp-session-down"
        assert "TCP 179" in doc["cause"]["summary"] and doc["cause"]["where"]["node"] == "node1"
    finally:
        run("repair", "bgp-session-down", "--lab", lab.name, timeout=120)
    rc, doc = diagnose(lab, "pod-a", "my-service:8080")
    assert rc == 0, json.dumps(doc, indent=1)


def test_bgp_session_disabled_by_hand(lab):
    ctl = f"/run/podnet/{lab.name}/bird/node2.ctl"
    protos = [ln.split()[0] for ln in sh("birdc", "-s", ctl, "show", "protocols").stdout.splitlines()
              if " BGP " in ln]
    assert protos
    try:
        sh("birdc", "-s", ctl, "disable", protos[0])
        rc, doc = diagnose(lab, "pod-c", "pod-a")
        assert rc == 1, json.dumps(doc, indent=1)
        f = next(x for x in doc["findings"] if x["cause"] == "bgp-session-down")
        assert "disabled" in f["summary"] and f["where"]["node"] == "node2"
        assert doc["cause"]["cause"] == "bgp-session-down"
    finally:
        run("repair", "bgp-session-down", "--lab", lab.name, timeout=120)
    rc, doc = diagnose(lab, "pod-c", "pod-a")
    assert rc == 0, json.dumps(doc, indent=1)
