"""Times of log lines (for timestamps=true, sinceSeconds and sinceTime)."""

from __future__ import annotations

from datetime import UTC, datetime

from podnet.api import logs


def test_klog_and_rfc3339_lines_carry_their_time():
    t = logs.line_time(b'I1122 18:55:58.901303   14926 server_linux.go:170] "Using iptables Proxier"\n', 2026)
    assert t == datetime(2026, 11, 22, 18, 55, 58, tzinfo=UTC).timestamp() + 0.901303
    t = logs.line_time(b"2026-11-22T18:56:08Z tcp 10.244.1.5:51710 -> :8080 GET /\n", 0)
    assert t == datetime(2026, 11, 22, 18, 56, 8, tzinfo=UTC).timestamp()
    assert logs.line_time(b"plain text\n", 2026) is None


def test_lines_without_a_time_take_the_previous_one_or_the_files():
    lines = [b"no time yet\n", b"I0102 03:04:05.000000 x\n", b"continuation\n"]
    got = [t for t, _ in logs.stamped(lines, fallback=1_800_000_000.0)]
    jan2 = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert got == [1_800_000_000.0, jan2, jan2]


def test_rfc3339nano():
    assert logs.rfc3339nano(0.5) == "1970-01-01T00:00:00.500000000Z"
