"""The little of Kubernetes' protobuf encoding podnet reads: ``kubectl create namespace`` sends its Namespace
as protobuf (``application/vnd.kubernetes.protobuf``). The envelope is the magic ``k8s\\0`` and a
``runtime.Unknown`` {typeMeta{apiVersion, kind}, raw}; ``raw`` is the object, of which podnet decodes the
ObjectMeta (name, generateName, namespace, labels, annotations) of a Namespace. Other kinds get a 415."""

from __future__ import annotations

from typing import Any

from podnet.api.status import ApiError

MAGIC = b"k8s\x00"


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, i


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message: varints as int, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
            out.append((num, v))
        elif wire == 2:
            n, i = _varint(buf, i)
            out.append((num, buf[i:i + n]))
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _str(v: int | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _meta(buf: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for num, v in fields(buf):
        if num in names and _str(v):
            meta[names[num]] = _str(v)
        elif num in (11, 12) and isinstance(v, bytes):
            entry = dict(fields(v))
            meta.setdefault("labels" if num == 11 else "annotations", {})[_str(entry.get(1, b""))] = \
                _str(entry.get(2, b""))
    return meta


def decode(raw: bytes) -> dict[str, Any]:
    unsupported = ApiError(415, "podnet's API server reads JSON and YAML (and, in protobuf, only the Namespace "
                           "`kubectl create namespace` sends): use `kubectl apply -f` or `kubectl create -f`",
                           "UnsupportedMediaType")
    if not raw.startswith(MAGIC):
        raise unsupported
    try:
        env = dict(fields(raw[len(MAGIC):]))
        type_meta = dict(fields(env.get(1, b"")))   # type: ignore[arg-type]
        api, kind = _str(type_meta.get(1, b"")), _str(type_meta.get(2, b""))
        if (api, kind) != ("v1", "Namespace"):
            raise unsupported
        obj = dict(fields(env.get(2, b"")))   # type: ignore[arg-type]
        meta = _meta(obj.get(1, b""))   # type: ignore[arg-type]
    except (ValueError, UnicodeDecodeError, TypeError):
        raise unsupported from None
    return {"apiVersion": api, "kind": kind, "metadata": meta}
