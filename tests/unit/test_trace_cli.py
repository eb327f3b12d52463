"""`podnet trace --snapshot` and `podnet snapshot commands` from the command line (no root needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from podnet.cli.main import cli
from podnet.sim.dumpdir import dump_commands

FIX = Path(__file__).parent.parent / "fixtures" / "trace" / "seed-iptables"


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_text_and_exit_status() -> None:
    r = run("trace", "pod-a", "my-service:8080", "--snapshot", str(FIX))
    assert r.exit_code == 0, r.output
    assert r.output.startswith("flow     10.244.1.5:40000 -> 10.96.45.67:8080 TCP")
    assert "result   DELIVERED" in r.output and "\nreply    DELIVERED" in r.output
    r = run("trace", "pod-a", "no-endpoints:80", "--snapshot", str(FIX))
    assert r.exit_code == 1 and "REJECTED" in r.output


def test_json_schema() -> None:
    r = run("trace", "pod-a", "svc/default/my-service:8080", "--snapshot", str(FIX), "-o", "json")
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert doc["apiVersion"] == "podnet.dev/trace/v1" and doc["kind"] == "Trace"
    assert doc["disposition"] == "delivered" and doc["ok"] is True
    assert doc["flow"]["dst_ip"] == "10.96.45.67" and doc["flow"]["dport"] == 8080
    assert [o["probability"] for o in doc["outcomes"]] == [0.5, 0.5]
    fwd = doc["outcomes"][0]["forward"]
    kinds = [s["kind"] for h in fwd["hops"] for s in h["steps"]]
    assert {"originate", "route", "netfilter", "nat", "encap", "decap", "deliver"} <= set(kinds)
    nat = next(s["nat"] for h in fwd["hops"] for s in h["steps"] if s["kind"] == "nat")
    assert nat == {"kind": "dnat", "field": "dst", "before": "10.96.45.67:8080", "after": "10.244.2.8:8080"}
    rule = next(r for h in fwd["hops"] for s in h["steps"] for r in s["rules"] if r["target"] == "DNAT")
    assert set(rule) == {"backend", "table", "chain", "num", "target", "comment", "text", "note", "handle"}
    assert doc["outcomes"][0]["reply"]["disposition"] == "delivered"


def test_mermaid() -> None:
    r = run("trace", "pod-a", "my-service:8080", "--snapshot", str(FIX), "-o", "mermaid", "--endpoint", "10.244.2.9")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0] == "sequenceDiagram"
    assert "    participant P1 as pod default/pod-a (node1)" in lines
    assert any(line.startswith("    P1->>P2: ") for line in lines)
    assert any("-->>" in line for line in lines)              # the reply
    assert not any("#1" in line for line in lines)             # '#' is escaped for Mermaid
    assert any("DNAT dst 10.96.45.67:8080 -> 10.244.2.9:8080" in line for line in lines)


def test_malformed_dump_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "snap"
    shutil.copytree(FIX, bad)
    f = bad / "pn-fix-node1" / "iptables-save.txt"
    lines = f.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if "-A KUBE-SERVICES" in line and "-d 10.96.45.67" in line)
    lines[n] = lines[n].replace("-d 10.96.45.67/32", "-d 10.300.45.67/32")
    f.write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(cli, ["trace", "pod-a", "my-service:8080", "--snapshot", str(bad)])
    assert r.exit_code == 1
    msg = r.output.strip()
    assert "\n" not in msg
    assert msg == (f"error: {f}:{n + 1}: bad address '10.300.45.67/32' (chain KUBE-SERVICES)")


def test_errors_name_the_argument() -> None:
    r = CliRunner().invoke(cli, ["trace", "pod-z", "my-service:8080", "--snapshot", str(FIX)])
    assert r.exit_code == 1 and r.output.startswith("error: SRC: unknown source 'pod-z'")
    r = CliRunner().invoke(cli, ["trace", "pod-a", "nope:80", "--snapshot", str(FIX)])
    assert r.exit_code == 1 and "DST: 'nope' is no pod, node or Service" in r.output
    assert "nope.default.svc.cluster.local." in r.output
    r = CliRunner().invoke(cli, ["trace", "pod-a", "my-service", "--snapshot", str(FIX)])
    assert r.exit_code == 0          # a Service with one port needs no :PORT
    r = CliRunner().invoke(cli, ["trace", "pod-a", "10.244.2.8", "--snapshot", str(FIX)])
    assert r.exit_code == 1 and "needs a port for tcp" in r.output
    r = CliRunner().invoke(cli, ["trace", "pod-a", "my-service:8080", "--snapshot", str(FIX), "--verify"])
    assert r.exit_code == 1 and "--verify" in r.output


def test_snapshot_commands() -> None:
    r = run("snapshot", "commands")
    assert r.exit_code == 0 and r.output.splitlines() == dump_commands()
