"""The protobuf Namespace `kubectl create namespace` sends."""

from __future__ import annotations

import pytest

from podnet.api import protobuf
from podnet.api.status import ApiError


def _ld(num: int, data: bytes) -> bytes:
    return bytes([num << 3 | 2, len(data)]) + data


def test_decodes_kubectl_create_namespace():
    label = _ld(1, b"team") + _ld(2, b"a")
    meta = _ld(1, b"team1") + _ld(2, b"") + _ld(11, label)
    raw = b"k8s\x00" + _ld(1, _ld(1, b"v1") + _ld(2, b"Namespace")) + _ld(2, _ld(1, meta) + _ld(2, b"")) + \
        _ld(3, b"") + _ld(4, b"")
    assert protobuf.decode(raw) == {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": "team1", "labels": {"team": "a"}}}


def test_other_kinds_and_garbage_are_415():
    raw = b"k8s\x00" + _ld(1, _ld(1, b"apps/v1") + _ld(2, b"Deployment"))
    for body in (raw, b"not protobuf", b"k8s\x00\xff"):
        with pytest.raises(ApiError) as e:
            protobuf.decode(body)
        assert e.value.code == 415
