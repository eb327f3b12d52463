"""The kubeconfig of a lab: one cluster, one user (a bearer token), one context named after the lab."""

from __future__ import annotations

import base64
from typing import Any


def build(lab: str, server: str, token: str, ca_pem: bytes | None) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    user = f"podnet-{lab}"
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": lab, "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": lab, "context": {"cluster": lab, "user": user, "namespace": "default"}}],
            "current-context": lab}
