"""The cluster DNS's view of the lab: records data for the coredns pods, resolv.conf for every pod.

Pure. Service records come from the resolved Services (ClusterIP, or for a headless Service its ready
endpoints from the EndpointSlices, as CoreDNS's kubernetes plugin reads them); pod records from the
pods' IPs. Ports come from the Service spec (SRV records for named ports).
"""

from __future__ import annotations

from podnet.dns.data import EndpointData, PodData, PortData, ServiceData
from podnet.dns.resolve import kubernetes_resolv_conf
from podnet.model.lab import Lab, PlacedPod
from podnet.model.services import ResolvedServices


def service_records(resolved: ResolvedServices) -> list[ServiceData]:
    out = []
    for rs in resolved.services:
        svc = rs.service
        ports = [PortData(p.name or None, p.port, p.protocol) for p in svc.ports]
        endpoints: dict[str, EndpointData] = {}
        for sl in resolved.slices_of(rs.key):
            for ep in sl.endpoints:
                ready = ep.ready or svc.publish_not_ready
                pod = ep.target_ref.split("/", 1)[1] if "/" in ep.target_ref else None
                for addr in ep.addresses:
                    if addr not in endpoints or ready:
                        endpoints[addr] = EndpointData(addr, None, ready, pod)
        out.append(ServiceData(svc.meta.namespace, svc.meta.name, None if svc.headless else rs.cluster_ip,
                               tuple(ports), tuple(endpoints[a] for a in sorted(endpoints))))
    return out


def pod_records(lab: Lab) -> list[PodData]:
    return [PodData(p.namespace, p.name, str(p.ip)) for p in lab.pods if not p.host_network]


def resolv_conf(lab: Lab, p: PlacedPod) -> str:
    """What kubelet writes for a pod with dnsPolicy ClusterFirst."""
    net = lab.cluster.networking
    return kubernetes_resolv_conf(p.namespace, net.dns_domain, str(net.dns_ip))
