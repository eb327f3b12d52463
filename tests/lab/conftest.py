"""Real-lab fixtures: every test gets its own uniquely named lab, always removed afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PODNET = [sys.executable, "-m", "podnet"]

pytestmark = pytest.mark.lab


def pytest_collection_modifyitems(items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="real-lab tests need root")
        for item in items:
            if "tests/lab" in str(item.fspath):
                item.add_marker(skip)


def run(*args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run([*PODNET, *args], capture_output=True, text=True, timeout=timeout, env=env, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"podnet {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


class Lab:
    def __init__(self, tmp: Path, example: str, **replace: str) -> None:
        self.name = "t" + secrets.token_hex(3)
        text = (EXAMPLES / example).read_text()
        text = re.sub(r"(kind: Cluster\nmetadata:\n  name: )\S+", lambda m: m.group(1) + self.name, text, count=1)
        for old, new in replace.items():
            text = text.replace(old, new)
        self.file = tmp / f"{self.name}.yaml"
        self.file.write_text(text)

    def up(self) -> subprocess.CompletedProcess:
        return run("up", str(self.file))

    def down(self) -> None:
        run("down", self.name, check=False)

    def ns(self, suffix: str) -> str:
        return f"pn-{self.name}-{suffix}"

    def exec(self, pod: str, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns(f"default-{pod}"), *argv, check=check, timeout=timeout)

    def node(self, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns(node), *argv, check=check)

    def get_json(self, *args: str) -> dict:
        return json.loads(run("get", *args, "-o", "json", "--lab", self.name).stdout)

    def namespaces(self) -> list[str]:
        return [n.split()[0] for n in sh("ip", "netns", "list").stdout.splitlines()
                if n.startswith(f"pn-{self.name}-")]


@pytest.fixture
def make_lab(tmp_path):
    labs: list[Lab] = []

    def factory(example: str = "seed-vxlan.yaml", up: bool = True, **replace: str) -> Lab:
        lab = Lab(tmp_path, example, **replace)
        labs.append(lab)
        if up:
            lab.up()
        return lab

    yield factory
    for lab in labs:
        lab.down()
        assert not lab.namespaces(), f"lab {lab.name} left namespaces behind"


@contextlib.contextmanager
def running_lab(tmp: Path, example: str, **replace: str):
    """A lab for a whole test module (module-scoped fixtures): always removed, even on failure."""
    lab = Lab(tmp, example, **replace)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def wait_for(cond, timeout: float = 10.0, step: float = 0.1) -> float:
    """Poll ``cond`` until it is true; returns the seconds it took, fails the test after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")
