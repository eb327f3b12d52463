"""The packet the simulator walks: IPv4/IPv6 header fields, L4 ports or ICMP fields, size, DF,
the skb mark, and (while inside a tunnel) the outer headers. Pure.

``Packet`` is mutable on purpose: the walker rewrites it in place as the kernel rewrites an skb
(NAT, MARK, encapsulation), and takes ``copy()`` where a path forks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from podnet.sim.snapshot import IPAddress

PROTOCOLS = ("tcp", "udp", "sctp", "icmp")
PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132, "ipv6-icmp": 58}
IPV4_HEADER = 20
L4_HEADER = {"tcp": 20, "udp": 8, "sctp": 12, "icmp": 8}
# VXLAN overhead on the underlay: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14)
VXLAN_OVERHEAD = 50
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
DEFAULT_SPORT = 40000       # the source port podnet's probes use unless told otherwise


@dataclass(slots=True)
class Packet:
    src: IPAddress
    dst: IPAddress
    proto: str                    # tcp, udp, sctp, icmp
    sport: int | None = None      # TCP/UDP/SCTP
    dport: int | None = None
    icmp_type: int | None = None  # ICMP
    icmp_code: int | None = None
    icmp_id: int | None = None
    size: int = 60                # IP total length in bytes
    df: bool = True               # don't fragment
    mark: int = 0                 # skb->mark
    tcp_flags: frozenset[str] = frozenset({"SYN"})
    ttl: int = 64
    src_mac: str | None = None    # the Ethernet header while on a link
    dst_mac: str | None = None
    inner: Packet | None = None   # the encapsulated packet, while this one is a tunnel's outer packet

    def copy(self) -> Packet:
        return replace(self)

    @property
    def version(self) -> int:
        return self.src.version

    @property
    def has_ports(self) -> bool:
        return self.proto in ("tcp", "udp", "sctp")

    def endpoint(self, which: str) -> str:
        """``10.0.0.1:80`` (or the bare address without ports)."""
        ip = self.src if which == "src" else self.dst
        port = self.sport if which == "src" else self.dport
        host = f"[{ip}]" if ip.version == 6 and port is not None else str(ip)
        return f"{host}:{port}" if port is not None and self.has_ports else str(ip)

    def summary(self) -> str:
        head = f"{self.endpoint('src')} -> {self.endpoint('dst')} {self.proto.upper()}"
        if self.proto == "icmp" and self.icmp_type is not None:
            head += f" type {self.icmp_type}"
            if self.icmp_id is not None:
                head += f" id {self.icmp_id}"
        return head

    def reply(self) -> Packet:
        """The answer the receiver sends back (ports swapped; ICMP echo becomes echo reply)."""
        r = Packet(src=self.dst, dst=self.src, proto=self.proto, sport=self.dport, dport=self.sport,
                   icmp_type=self.icmp_type, icmp_code=self.icmp_code, icmp_id=self.icmp_id,
                   size=self.size, df=self.df, mark=0, tcp_flags=frozenset({"SYN", "ACK"}))
        if self.proto == "icmp" and self.icmp_type == ICMP_ECHO_REQUEST:
            r.icmp_type = ICMP_ECHO_REPLY
        return r


def is_loopback(ip: IPAddress) -> bool:
    """127.0.0.0/8 (or ::1), without ipaddress's network containment test (hot path)."""
    return (int(ip) >> 24) == 127 if ip.version == 4 else ip.is_loopback


def is_multicast(ip: IPAddress) -> bool:
    return (int(ip) >> 28) == 14 if ip.version == 4 else ip.is_multicast


def default_size(proto: str) -> int:
    """A small first packet: TCP SYN with options (60 B), an empty UDP datagram (28 B), an
    ICMP echo of ping's default 56 data bytes (84 B)."""
    return {"tcp": 60, "udp": 28, "sctp": 32, "icmp": 84}.get(proto, 60)


def make_packet(src: str | IPAddress, dst: str | IPAddress, proto: str = "tcp", dport: int | None = None,
                sport: int | None = None, size: int | None = None, df: bool = True,
                icmp_id: int | None = None) -> Packet:
    s = ipaddress.ip_address(src) if isinstance(src, str) else src
    d = ipaddress.ip_address(dst) if isinstance(dst, str) else dst
    pkt = Packet(src=s, dst=d, proto=proto, size=size or default_size(proto), df=df)
    if proto in ("tcp", "udp", "sctp"):
        pkt.sport = sport if sport is not None else DEFAULT_SPORT
        pkt.dport = dport
    elif proto == "icmp":
        pkt.icmp_type, pkt.icmp_code = ICMP_ECHO_REQUEST, 0
        pkt.icmp_id = icmp_id if icmp_id is not None else (sport if sport is not None else 4242)
        pkt.tcp_flags = frozenset()
    if proto != "tcp":
        pkt.tcp_flags = frozenset()
    return pkt
