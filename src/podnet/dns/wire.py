"""DNS wire format for the cluster DNS: request bytes + RecordSet -> response bytes (dnslib).

No sockets here, so every packet-level rule is testable on its own:
* malformed queries get FORMERR when their header is readable, otherwise they are dropped;
  responses (QR=1) are dropped, never answered (no loops);
* opcodes other than QUERY get NOTIMP, classes other than IN/ANY get REFUSED;
* UDP answers larger than 512 bytes, or than the client's EDNS0 buffer size (capped at 1232,
  the DNS Flag Day 2020 value), are sent with TC=1 and no records so the client retries over TCP;
* RA=0: this server never recurses (as CoreDNS answers for cluster names).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from dnslib import AAAA, EDNS0, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSHeader, DNSRecord

from podnet.dns.records import Answer, Record, RecordSet, Soa, Srv

Transport = Literal["udp", "tcp"]
UDP_DEFAULT = 512
EDNS_MAX = 1232
OPT = 41
CLASS_IN, CLASS_ANY = 1, 255


@dataclass(frozen=True)
class Exchange:
    """One handled packet: the bytes to send back (None = drop) and what to log about it."""

    response: bytes | None
    qid: int = 0
    qname: str = "-"
    qtype: str = "-"
    rcode: str = "-"
    truncated: bool = False
    edns_size: int | None = None
    do: bool = False
    flags: str = ""
    error: str | None = None


def _rdata(rec: Record) -> object:
    data = rec.data
    if isinstance(data, Srv):
        return SRV(priority=data.priority, weight=data.weight, port=data.port, target=data.target)
    if isinstance(data, Soa):
        return SOA(data.mname, data.rname, (data.serial, data.refresh, data.retry, data.expire, data.minimum))
    return {"A": A, "AAAA": AAAA, "PTR": PTR, "TXT": TXT}[rec.rtype](data)


def _rr(rec: Record) -> RR:
    return RR(rec.name, getattr(QTYPE, rec.rtype), rdata=_rdata(rec), ttl=rec.ttl)


def _flags(h: DNSHeader) -> str:
    return ",".join(f for f in ("qr", "aa", "tc", "rd", "ra") if getattr(h, f))


def _bare_reply(data: bytes, rcode: int) -> bytes:
    """A header-only reply echoing the id, opcode and RD of an unparsable query."""
    qid, flags = struct.unpack("!HH", data[:4])
    header = DNSHeader(id=qid, qr=1, opcode=(flags >> 11) & 0xF, rd=(flags >> 8) & 1, ra=0, rcode=rcode)
    return bytes(DNSRecord(header).pack())


def build_response(request: DNSRecord, answer: Answer, edns: bool) -> DNSRecord:
    header = DNSHeader(id=request.header.id, qr=1, opcode=request.header.opcode,
                       aa=int(answer.authoritative), rd=request.header.rd, ra=0,
                       rcode=getattr(RCODE, answer.rcode))
    reply = DNSRecord(header, q=request.q)
    for rec in answer.answer:
        reply.add_answer(_rr(rec))
    for rec in answer.authority:
        reply.add_auth(_rr(rec))
    for rec in answer.additional:
        reply.add_ar(_rr(rec))
    if edns:
        reply.add_ar(EDNS0(udp_len=EDNS_MAX))
    return reply


def _truncated(reply: DNSRecord, edns: bool) -> DNSRecord:
    h = reply.header
    header = DNSHeader(id=h.id, qr=1, opcode=h.opcode, aa=h.aa, tc=1, rd=h.rd, ra=0, rcode=h.rcode)
    out = DNSRecord(header, q=reply.q)
    if edns:
        out.add_ar(EDNS0(udp_len=EDNS_MAX))
    return out


def handle(data: bytes, records: RecordSet, transport: Transport = "udp") -> Exchange:
    """Answer one DNS message from `records`. Never raises."""
    if len(data) < 12:
        return Exchange(None, error=f"short packet ({len(data)} bytes)")
    if data[2] & 0x80:
        return Exchange(None, qid=struct.unpack("!H", data[:2])[0], error="not a query (QR=1)")
    try:
        request = DNSRecord.parse(data)
    except Exception as e:  # dnslib raises DNSError, but also struct/Unicode/Index errors
        qid = struct.unpack("!H", data[:2])[0]
        return Exchange(_bare_reply(data, RCODE.FORMERR), qid=qid, rcode="FORMERR", error=f"malformed: {e}")
    qid = request.header.id
    opt = next((rr for rr in request.ar if rr.rtype == OPT), None)
    edns = opt is not None
    edns_size = int(opt.rclass) if opt is not None else None
    do = bool(opt is not None and (int(opt.ttl) >> 15) & 1)
    if request.header.opcode != 0:
        return Exchange(_bare_reply(data, RCODE.NOTIMP), qid=qid, rcode="NOTIMP", error="opcode not QUERY")
    if len(request.questions) != 1:
        return Exchange(_bare_reply(data, RCODE.FORMERR), qid=qid, rcode="FORMERR",
                        error=f"{len(request.questions)} questions")
    q = request.q
    qname, qtype = str(q.qname), str(QTYPE[q.qtype])
    error: str | None = None
    if q.qclass not in (CLASS_IN, CLASS_ANY):
        answer = Answer("REFUSED", authoritative=False)
    else:
        try:
            answer = records.lookup(qname, qtype)
        except Exception as e:  # a bug must cost one answer, not the server
            answer = Answer("SERVFAIL", authoritative=False)
            error = f"lookup failed: {e!r}"
    reply = build_response(request, answer, edns)
    wire = bytes(reply.pack())
    limit = min(max(edns_size or 0, UDP_DEFAULT), EDNS_MAX) if edns else UDP_DEFAULT
    truncated = transport == "udp" and len(wire) > limit
    if truncated:
        reply = _truncated(reply, edns)
        wire = bytes(reply.pack())
    return Exchange(wire, qid=qid, qname=qname, qtype=qtype, rcode=answer.rcode, truncated=truncated,
                    edns_size=edns_size, do=do, flags=_flags(reply.header), error=error)
