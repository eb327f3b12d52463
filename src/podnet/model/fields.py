"""Typed access to a YAML mapping with errors that name file, object and field.

Every parser reads its object through a ``Fields`` view, which knows the document (for file:line),
the object's display name and the dotted path, and reports unknown fields: fields Kubernetes does not
have are errors (as ``kubectl --validate=strict``); Kubernetes fields podnet does not honour are
warnings collected on the view.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from podnet.errors import PodnetError
from podnet.model.source import Doc, Mapping, line_of

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass
class Context:
    """Where an object came from: its document and display name; collects warnings."""

    doc: Doc | None
    obj: str
    warnings: list[str] = field(default_factory=list)

    def where(self, path: str = "") -> str | None:
        if self.doc is None:
            return None
        line = line_of(self.doc.body, path) if path else None
        return self.doc.where(line)

    def error(self, path: str, msg: str) -> PodnetError:
        return PodnetError(msg, where=self.where(path), obj=self.obj, field=path or None)

    def warn(self, path: str, msg: str) -> None:
        self.warnings.append(str(PodnetError(msg, where=self.where(path), obj=self.obj, field=path)))


class Fields:
    """A view of one mapping at ``path`` inside an object."""

    def __init__(self, ctx: Context, data: Any, path: str = "") -> None:
        if data is None:
            data = Mapping()
        if not isinstance(data, dict):
            raise ctx.error(path, f"must be a mapping, got {_tname(data)}")
        self.ctx = ctx
        self.data = data
        self.path = path

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def check(self, known: set[str], ignored: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        for key in self.data:
            if key in known:
                continue
            if key in ignored:
                self.ctx.warn(self.sub(key), "not honoured by podnet (ignored)")
                continue
            raise self.ctx.error(self.sub(key), f"unknown field {key!r}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        v = self.data.get(key)
        return default if v is None else v

    def str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        v = self.data.get(key)
        if v is None:
            if required:
                raise self.ctx.error(self.sub(key), "required field is missing")
            return default
        if not isinstance(v, str):
            raise self.ctx.error(self.sub(key), f"must be a string, got {_tname(v)}")
        return v

    def int(self, key: str, default: int | None = None, *, required: bool = False,
            lo: int | None = None, hi: int | None = None) -> int | None:
        v = self.data.get(key)
        if v is None:
            if required:
                raise self.ctx.error(self.sub(key), "required field is missing")
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.ctx.error(self.sub(key), f"must be an integer, got {_tname(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.ctx.error(self.sub(key), f"{v} is out of range [{lo}, {hi}]")
        return v

    def bool(self, key: str, default: bool | None = None) -> bool | None:
        v = self.data.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.ctx.error(self.sub(key), f"must be true or false, got {_tname(v)}")
        return v

    def map(self, key: str) -> Fields:
        return Fields(self.ctx, self.data.get(key), self.sub(key))

    def list(self, key: str) -> list[Any]:
        v = self.data.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.ctx.error(self.sub(key), f"must be a list, got {_tname(v)}")
        return v

    def maps(self, key: str) -> Iterator[Fields]:
        for i, item in enumerate(self.list(key)):
            yield Fields(self.ctx, item, f"{self.sub(key)}[{i}]")

    def strs(self, key: str) -> list[str]:
        out = []
        for i, item in enumerate(self.list(key)):
            if not isinstance(item, str | int) or isinstance(item, bool):
                raise self.ctx.error(f"{self.sub(key)}[{i}]", f"must be a string, got {_tname(item)}")
            out.append(str(item))
        return out

    def labels(self, key: str) -> dict[str, str]:
        m = self.map(key)
        out: dict[str, str] = {}
        for k, v in m.data.items():
            if isinstance(v, bool) or v is None or not isinstance(v, str | int | float):
                raise self.ctx.error(m.sub(k), f"label value must be a string, got {_tname(v)}")
            v = str(v)
            check_label(self.ctx, m.sub(k), k, v)
            out[k] = v
        return out

    def network(self, key: str, *, required: bool = False,
                default: str | None = None) -> ipaddress.IPv4Network | None:
        v = self.str(key, default, required=required)
        if v is None:
            return None
        return parse_network(self.ctx, self.sub(key), v)

    def address(self, key: str, *, required: bool = False) -> ipaddress.IPv4Address | None:
        v = self.str(key, required=required)
        if v is None:
            return None
        return parse_address(self.ctx, self.sub(key), v)


def parse_network(ctx: Context, path: str, v: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError as e:
        raise ctx.error(path, f"invalid CIDR {v!r}: {e}") from None
    if net.version != 4:
        raise ctx.error(path, f"{v}: only IPv4 is supported")
    return net  # type: ignore[return-value]


def parse_address(ctx: Context, path: str, v: str) -> ipaddress.IPv4Address:
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        raise ctx.error(path, f"invalid IP address {v!r}") from None
    if ip.version != 4:
        raise ctx.error(path, f"{v}: only IPv4 is supported")
    return ip  # type: ignore[return-value]


def check_label(ctx: Context, path: str, key: str, value: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        raise ctx.error(path, f"invalid label key {key!r}: prefix must be a DNS subdomain")
    if not name or len(name) > 63 or not LABEL_NAME.match(name):
        raise ctx.error(path, f"invalid label key {key!r}")
    if len(value) > 63 or not LABEL_VALUE.match(value):
        raise ctx.error(path, f"invalid label value {value!r}")


def check_name(ctx: Context, path: str, name: str, rule: str = "subdomain") -> None:
    """Kubernetes object name rules: DNS-1123 subdomain, DNS-1123 label or DNS-1035 label."""
    if rule == "label":
        ok = len(name) <= 63 and DNS1123_LABEL.match(name)
        what = "a DNS-1123 label (lowercase alphanumerics and '-', at most 63 characters)"
    elif rule == "1035":
        ok = len(name) <= 63 and DNS1035_LABEL.match(name)
        what = "a DNS-1035 label (starts with a letter; lowercase alphanumerics and '-', at most 63)"
    else:
        ok = len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)
        what = "a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', at most 253 characters)"
    if not ok:
        raise ctx.error(path, f"invalid name {name!r}: must be {what}")


def _tname(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", bool: "a boolean",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__) if not isinstance(
        v, dict | list) else ("a mapping" if isinstance(v, dict) else "a list")
