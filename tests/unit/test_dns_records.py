"""Cluster DNS records (pure): the Kubernetes DNS specification, record by record."""

from __future__ import annotations

import json

import pytest

from podnet.dns.data import EndpointData, PodData, PortData, ServiceData, load_document, make_document
from podnet.dns.records import DEFAULT_TTL, SCHEMA_VERSION, RecordSet, Soa, Srv, dashed, fqdn, reverse_name

SVC = "my-service.default.svc.cluster.local."
HL = "web.default.svc.cluster.local."


def seed(**options: object) -> RecordSet:
    services = [
        ServiceData("default", "my-service", "10.96.45.67", [PortData("http", 8080, "TCP"), PortData(None, 9090)],
                    [EndpointData("10.244.2.8", None, True, "backend-1"),
                     EndpointData("10.244.2.9", None, True, "backend-2")]),
        ServiceData("default", "web", None, [PortData("http", 80, "TCP"), PortData("", 81, "TCP")],
                    [EndpointData("10.244.1.7", "web-0", True, "web-0"),
                     EndpointData("10.244.2.7", None, True, "web-1"),
                     EndpointData("10.244.2.6", "web-2", False, "web-2")]),
        ServiceData("default", "empty-hl", None, [], [EndpointData("10.244.2.5", None, False, "x")]),
        ("kube-system", "kube-dns", "10.96.0.10",
         [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")], []),
    ]
    pods = [PodData("default", "pod-a", "10.244.1.5"), ("default", "backend-1", "10.244.2.8"),
            ("default", "web-0", "10.244.1.7")]
    return RecordSet(services, pods, **options)  # type: ignore[arg-type]


def data(rs: RecordSet, name: str, qtype: str) -> list[object]:
    ans = rs.lookup(name, qtype)
    assert ans.rcode == "NOERROR", ans
    return [r.data for r in ans.answer]


def test_helpers() -> None:
    assert fqdn("My-Service.Default") == "my-service.default."
    assert fqdn("x.") == "x." and fqdn("") == "."
    assert dashed("10.244.1.5") == "10-244-1-5"
    assert reverse_name("10.96.45.67") == "67.45.96.10.in-addr.arpa."


def test_clusterip_a_record() -> None:
    rs = seed()
    ans = rs.lookup(SVC, "A")
    assert ans.authoritative and [r.data for r in ans.answer] == ["10.96.45.67"]
    assert ans.answer[0].ttl == DEFAULT_TTL == 30


def test_names_are_case_insensitive_and_echo_the_question() -> None:
    ans = seed().lookup("My-Service.DEFAULT.svc.Cluster.Local", "a")
    assert [r.data for r in ans.answer] == ["10.96.45.67"]
    assert ans.answer[0].name == "My-Service.DEFAULT.svc.Cluster.Local."


def test_srv_for_named_ports_only() -> None:
    rs = seed()
    assert data(rs, f"_http._tcp.{SVC}", "SRV") == [Srv(0, 100, 8080, SVC)]
    ans = rs.lookup(f"_http._tcp.{SVC}", "SRV")
    assert [(r.name, r.data) for r in ans.additional] == [(SVC, "10.96.45.67")]
    assert rs.lookup(f"_http._udp.{SVC}", "SRV").rcode == "NXDOMAIN"
    assert data(rs, "_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV") == [
        Srv(0, 100, 53, "kube-dns.kube-system.svc.cluster.local.")]
    assert data(rs, "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local", "SRV")[0].port == 53  # type: ignore[union-attr]


def test_headless_a_records_are_the_ready_endpoints() -> None:
    rs = seed()
    assert sorted(data(rs, HL, "A")) == ["10.244.1.7", "10.244.2.7"]   # web-2 is not ready
    assert data(rs, f"web-0.{HL}", "A") == ["10.244.1.7"]
    assert data(rs, f"10-244-2-7.{HL}", "A") == ["10.244.2.7"]         # no hostname: dashed IP
    assert rs.lookup(f"web-2.{HL}", "A").rcode == "NXDOMAIN"


def test_headless_without_ready_endpoints_is_nxdomain() -> None:
    assert seed().lookup("empty-hl.default.svc.cluster.local", "A").rcode == "NXDOMAIN"


def test_headless_srv_one_per_endpoint_with_additional_a() -> None:
    rs = seed()
    ans = rs.lookup(f"_http._tcp.{HL}", "SRV")
    assert sorted(r.data for r in ans.answer) == [Srv(0, 50, 80, f"10-244-2-7.{HL}"), Srv(0, 50, 80, f"web-0.{HL}")]
    assert sorted((r.name, r.data) for r in ans.additional) == [
        (f"10-244-2-7.{HL}", "10.244.2.7"), (f"web-0.{HL}", "10.244.1.7")]


def test_endpoint_pod_names_option() -> None:
    rs = seed(endpoint_pod_names=True)
    assert data(rs, f"web-1.{HL}", "A") == ["10.244.2.7"]


def test_ptr_for_services_endpoints_and_pods() -> None:
    rs = seed()
    assert data(rs, "67.45.96.10.in-addr.arpa", "PTR") == [SVC]
    assert data(rs, "7.1.244.10.in-addr.arpa", "PTR") == [f"web-0.{HL}"]        # headless endpoint wins
    assert data(rs, "5.1.244.10.in-addr.arpa", "PTR") == ["10-244-1-5.default.pod.cluster.local."]
    assert rs.lookup("1.1.1.1.in-addr.arpa", "PTR").rcode == "NXDOMAIN"
    assert rs.lookup("1.244.10.in-addr.arpa", "PTR").nodata                     # empty non-terminal


def test_pod_records_verified_insecure_disabled() -> None:
    assert data(seed(), "10-244-1-5.default.pod.cluster.local", "A") == ["10.244.1.5"]
    assert seed().lookup("10-244-1-5.other.pod.cluster.local", "A").rcode == "NXDOMAIN"
    assert seed().lookup("10-1-2-3.default.pod.cluster.local", "A").rcode == "NXDOMAIN"
    insecure = seed(pod_mode="insecure")
    assert data(insecure, "10-1-2-3.any.pod.cluster.local", "A") == ["10.1.2.3"]
    assert insecure.lookup("999-1-2-3.any.pod.cluster.local", "A").rcode == "NXDOMAIN"
    assert seed(pod_mode="disabled").lookup("10-244-1-5.default.pod.cluster.local", "A").rcode == "NXDOMAIN"
    with pytest.raises(ValueError):
        seed(pod_mode="nope")


def test_negative_answers_carry_the_soa() -> None:
    rs = seed(serial=42)
    nx = rs.lookup("nope.default.svc.cluster.local", "A")
    assert nx.rcode == "NXDOMAIN" and not nx.answer
    (soa,) = nx.authority
    assert soa.name == "cluster.local." and soa.rtype == "SOA"
    assert soa.data == Soa("ns.dns.cluster.local.", "hostmaster.cluster.local.", 42, 7200, 1800, 86400, 30)
    nodata = rs.lookup(SVC, "AAAA")
    assert nodata.rcode == "NOERROR" and nodata.nodata and nodata.authority == nx.authority
    assert rs.lookup(SVC, "TXT").nodata


def test_empty_non_terminals_are_nodata_not_nxdomain() -> None:
    rs = seed()
    for name in ("default.svc.cluster.local", "svc.cluster.local", "cluster.local", f"_tcp.{SVC}"):
        assert rs.lookup(name, "A").nodata, name
    assert rs.lookup("nons.svc.cluster.local", "A").rcode == "NXDOMAIN"


def test_apex_soa_and_schema_version() -> None:
    rs = seed()
    assert [r.rtype for r in rs.lookup("cluster.local", "SOA").answer] == ["SOA"]
    assert data(rs, "dns-version.cluster.local", "TXT") == [SCHEMA_VERSION]


def test_outside_the_zones_is_refused() -> None:
    for name in ("example.com", "local", "cluster.local.evil.com", "my-service"):
        ans = seed().lookup(name, "A")
        assert ans.rcode == "REFUSED" and not ans.authoritative and ans.zone is None


def test_any_returns_everything_at_the_name() -> None:
    assert data(seed(), SVC, "ANY") == ["10.96.45.67"]


def test_custom_domain_and_ttl() -> None:
    rs = RecordSet([("ns1", "s", "10.96.0.5", [], [])], domain="Corp.Example.", ttl=5)
    ans = rs.lookup("s.ns1.svc.corp.example", "A")
    assert ans.answer[0].ttl == 5 and ans.answer[0].data == "10.96.0.5"
    assert rs.lookup("s.ns1.svc.cluster.local", "A").rcode == "REFUSED"


def test_document_round_trip() -> None:
    rs = seed()
    doc = json.loads(json.dumps(make_document(rs.services, rs.pods, "cluster.local")))
    again = RecordSet.from_document(doc)
    assert again.records() == rs.records()
    domain, services, pods = load_document({"services": [{"namespace": "a", "name": "b"}]})
    assert domain == "cluster.local" and services[0].cluster_ip is None and pods == []
    with pytest.raises(TypeError):
        load_document([])  # type: ignore[arg-type]


def test_bad_ip_is_rejected() -> None:
    with pytest.raises(ValueError):
        RecordSet([("default", "x", "10.96.0.300", [], [])])
