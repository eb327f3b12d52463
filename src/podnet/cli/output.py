"""Shared output helpers: kubectl-style tables, JSON/YAML, errors."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import yaml


def table(headers: list[str], rows: list[list[str]]) -> str:
    """kubectl's plain table: upper-case headers, columns padded, three spaces apart."""
    cols = [headers, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(headers))]
    lines = ["   ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cols]
    return "\n".join(lines)


def dump(obj: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(obj, indent=4)
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip()


def echo(text: str = "") -> None:
    click.echo(text)


def warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def progress(msg: str) -> None:
    if sys.stderr.isatty():
        click.echo(click.style(f"• {msg}", dim=True), err=True)
