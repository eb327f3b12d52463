"""Every name podnet derives, in one place (an interface: see docs/names.md).

Names are deterministic functions of the lab name and object names, so a lab can be found, traced and
removed by name alone, and so `ip netns list` and `ip link` read the same on every run.
"""

from __future__ import annotations

import hashlib

PREFIX = "pn-"
NETNS_MAX = 64          # longer netns names are shortened with a hash
IFNAMSIZ = 15           # Linux interface names: at most 15 characters
UNDERLAY = "underlay"   # the underlay switch's namespace: pn-<lab>-underlay
UNDERLAY_BRIDGE = "br0"
VXLAN_DEV = "flannel.1"
VXLAN_VNI = 1
VXLAN_PORT = 8472
BRIDGE = "cni0"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"   # Kubernetes' rand.SafeEncodeString alphabet


def digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def lab_prefix(lab: str) -> str:
    return f"{PREFIX}{lab}-"


def _shorten(name: str, key: str) -> str:
    if len(name) <= NETNS_MAX:
        return name
    return f"{name[:NETNS_MAX - 9]}-{digest(key)[:8]}"


def host_ns(lab: str, host: str) -> str:
    """Namespace of a node, a router or an external host."""
    return _shorten(f"{PREFIX}{lab}-{host}", f"{lab}/{host}")


def underlay_ns(lab: str) -> str:
    return host_ns(lab, UNDERLAY)


def pod_ns(lab: str, namespace: str, pod: str) -> str:
    return _shorten(f"{PREFIX}{lab}-{namespace}-{pod}", f"{lab}/{namespace}/{pod}")


def host_veth(lab: str, namespace: str, pod: str) -> str:
    """Bridge-mode host-side veth, as the CNI bridge plugin names them: veth + 8 hex."""
    return "veth" + digest(lab, namespace, pod)[:8]


def cali_veth(lab: str, namespace: str, pod: str) -> str:
    """Routed-mode host-side veth, Calico style: cali + 11 hex."""
    return "cali" + digest(lab, namespace, pod)[:11]


def underlay_port(lab: str, host: str) -> str:
    """The underlay switch's port toward a host: u-<host>, or u + 12 hex when that is too long."""
    name = f"u-{host}"
    return name if len(name) <= IFNAMSIZ else "u" + digest(lab, host)[:12]


def mac_from_ip(ip: str, prefix: str = "0a:58") -> str:
    """Kubernetes-style deterministic MAC: 0a:58 followed by the IPv4 bytes (as kubenet/ovn do)."""
    return prefix + ":" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def vtep_mac(lab: str, node: str) -> str:
    """flannel.1's MAC on a node: locally administered, stable per lab and node."""
    h = digest("vtep", lab, node)
    return "0e:" + ":".join(h[i:i + 2] for i in range(0, 10, 2))


def safe_encode(data: str, n: int) -> str:
    h = hashlib.sha256(data.encode()).digest()
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in h[:n])


def template_hash(template_repr: str) -> str:
    return safe_encode("template/" + template_repr, 10)


def replica_name(deployment: str, thash: str, index: int) -> str:
    return f"{deployment}-{thash}-{safe_encode(f'{deployment}/{thash}/{index}', 5)}"
