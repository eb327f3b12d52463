"""The classic failures: what ``podnet break`` injects and what ``podnet diagnose`` names (pure).

A fault id is also the cause id diagnose reports for it, whoever made the fault (``podnet break`` or a
person with ``ip``/``iptables``/``sysctl``/``conntrack``): diagnose finds causes from the kernel state
and the lab's declared objects, never from a record of what ``break`` did. A few causes have no
``break`` (they are found all the same: a Service without endpoints, nothing listening, ...).
Ids are stable: scripts may match on them (docs/diagnose.md).
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_BACKENDS = ("vxlan", "host-gw", "bgp")


@dataclass(frozen=True, slots=True)
class Cause:
    id: str
    title: str                    # one line: what is wrong
    fix: str                      # what a person does about it
    family: str = "other"         # proxy, cni, overlay, mtu, policy, dns, conntrack, bgp, bridge, pod


@dataclass(frozen=True, slots=True)
class Fault:
    cause: Cause
    life: str                     # how it happens on a real cluster
    injects: str                  # what `podnet break` does (as commands)
    symptom: str                  # what users see (the article's words where it has them)
    heals: str = ""               # which agent undoes it by itself, and when
    options: tuple[str, ...] = ()     # break options it takes: node, pod, service, namespace
    defaults: str = ""            # what it picks when the options are left out
    backends: tuple[str, ...] = ALL_BACKENDS
    needs: str = ""               # a component the lab must run (kube-proxy, cluster DNS, ...)

    @property
    def id(self) -> str:
        return self.cause.id


def _c(id_: str, title: str, fix: str, family: str) -> Cause:
    return Cause(id_, title, fix, family)


FAULTS: tuple[Fault, ...] = (
    Fault(_c("kube-proxy-down", "kube-proxy is not running on the node: its rules are no longer synced",
             "restart kube-proxy (kubectl -n kube-system delete pod kube-proxy-<node>; here `podnet repair "
             "kube-proxy-down` or `podnet up FILE`) and read its log", "proxy"),
          life="the kube-proxy pod crash-loops or hangs; the rules it wrote stay, so existing Services keep "
               "working, but Services and endpoints changed since get no rules",
          injects="kill -STOP the kube-proxy-<node> process (hung: nothing restarts it, as in CrashLoopBackOff)",
          symptom="ClusterIP doesn't work, direct pod IP works (for Services created or changed since)",
          options=("node",), defaults="every node", needs="kube-proxy"),
    Fault(_c("service-rules-missing", "a Service's rules are missing on one node while kube-proxy runs",
             "let kube-proxy re-sync everything (restart it); find who deletes KUBE-* rules (a firewall script, "
             "a second proxy)", "proxy"),
          life="a host firewall script or an `iptables -F` removed kube-proxy's rules; kube-proxy only writes "
               "them again on its next full sync",
          injects="iptables -t nat -D KUBE-SERVICES <the Service's rules> (nftables: nft delete element ip "
                  "kube-proxy service-ips {...})",
          symptom="the ClusterIP works from some nodes and not from others",
          heals="kube-proxy, on its next full sync (a restart, or any Service change that rewrites KUBE-SERVICES)",
          options=("service", "node"), defaults="the first Service outside kube-system, on the first node",
          needs="kube-proxy"),
    Fault(_c("cni-veth-detached", "a pod's host-side veth is not attached to the bridge cni0",
             "attach it again (ip link set <veth> master cni0; bridge link set dev <veth> hairpin on) or "
             "recreate the pod", "cni"),
          life="a CNI DEL/ADD race or a person's `ip link set ... nomaster`: the pod's frames never reach cni0",
          injects="ip link set veth<hex> nomaster (in the pod's node)",
          symptom="the pod can't reach anything, not even its gateway; other pods are fine",
          options=("pod",), defaults="the first pod outside kube-system", backends=("vxlan", "host-gw")),
    Fault(_c("cni-pod-route", "a pod's routes are wrong: no default route, or a gateway that is not its node",
             "recreate the pod with a correct CNI config (isDefaultGateway); by hand: ip route replace default via "
             "<node's cni0 address> dev eth0 in the pod", "cni"),
          life="a CNI config without isDefaultGateway (or a wrong gateway) gives pods only their subnet route",
          injects="ip route del default (in the pod)",
          symptom="same-node pods answer, everything else (other nodes, Services, DNS) fails",
          options=("pod",), defaults="the first pod outside kube-system"),
    Fault(_c("cni-config", "a node's CNI configuration (/etc/cni/net.d) is missing or invalid",
             "restore the CNI config (reinstall the CNI DaemonSet's ConfigMap; here `podnet repair cni-config`)",
             "cni"),
          life="a botched edit or upgrade of /etc/cni/net.d: running pods keep working, new pods on the node stay "
               "ContainerCreating (NetworkPluginNotReady)",
          injects="rewrites /etc/cni/net.d/10-flannel.conflist with a misspelt plugin type (flanel)",
          symptom="pods already running work; new pods on that node get no network",
          options=("node",), defaults="the first node", backends=("vxlan", "host-gw")),
    Fault(_c("mtu-mismatch", "pods use MTU 1500 over a 1450-byte VXLAN path and ICMP fragmentation-needed is "
             "dropped", "configure the CNI with the right MTU (flannel: FLANNEL_MTU, here 1450) and let ICMP "
             "fragmentation-needed through", "mtu"),
          life="the CNI was configured with the underlay's MTU; path MTU discovery would save it, but a firewall "
               "drops the ICMP 'fragmentation needed' messages",
          injects="ip link set eth0/veth/cni0 mtu 1500 (every pod and node); iptables -I OUTPUT -p icmp "
                  "--icmp-type fragmentation-needed -j DROP (every node)",
          symptom="small packets work, large ones vanish: pings work, transfers stall",
          backends=("vxlan",)),
    Fault(_c("netpol-blocking", "a NetworkPolicy denies the flow",
             "add a NetworkPolicy rule that allows it (kubectl get networkpolicy -A shows the policies selecting "
             "the pod)", "policy"),
          life="a default-deny policy applied to a namespace without the allow rules its clients need",
          injects="applies NetworkPolicy default-deny-ingress (podSelector {}, policyTypes [Ingress]) in the "
                  "namespace", symptom="some pods can't connect, others can",
          options=("namespace",), defaults="namespace default", needs="kube-network-policies"),
    Fault(_c("vxlan-blocked", "a firewall drops VXLAN (UDP 8472) between nodes",
             "open UDP 8472 between the nodes (host firewall, security group)", "overlay"),
          life="a host firewall or a cloud security group without the VXLAN port",
          injects="iptables -I INPUT -p udp --dport 8472 -j DROP (every node)",
          symptom="cross-node fails, same-node works", options=("node",), defaults="every node",
          backends=("vxlan",)),
    Fault(_c("dns-down", "the cluster DNS does not answer: no coredns replica is running",
             "get CoreDNS running again (kubectl -n kube-system get pods -l k8s-app=kube-dns; logs; here "
             "`podnet repair dns-down`)", "dns"),
          life="the coredns pods crash-loop (bad Corefile, OOM): kube-dns has no endpoints",
          injects="kill -9 every coredns process", symptom="IPs work, names don't", needs="cluster DNS"),
    Fault(_c("dns-resolv-conf", "the pod's /etc/resolv.conf does not point at the cluster DNS",
             "fix the kubelet's --cluster-dns / the pod's dnsPolicy and recreate the pod", "dns"),
          life="kubelet started with a wrong --cluster-dns, or a pod with dnsPolicy Default/None",
          injects="rewrites the pod's resolv.conf with nameserver <cluster DNS IP + 1>",
          symptom="IPs work, names don't, from that pod only", options=("pod",),
          defaults="the first pod outside kube-system", needs="cluster DNS"),
    Fault(_c("stale-conntrack", "a conntrack entry sends a flow to an endpoint that no longer exists",
             "delete the entry: conntrack -D -p udp --orig-dst <ClusterIP> --reply-src <old endpoint> "
             "(kube-proxy does this itself when it sees the endpoint go)", "conntrack"),
          life="an endpoint pod went away while a UDP client kept sending from the same socket, and the entry "
               "was not cleaned up (older kube-proxy, no conntrack binary): its packets still go to the old IP",
          injects="conntrack -I a UDP entry from the pod to the Service, DNATed to an unused pod IP",
          symptom="one client's UDP flow to a Service gets no answers while new sockets work",
          options=("pod", "service"), defaults="the first pod outside kube-system, Service kube-system/kube-dns",
          needs="a UDP Service"),
    Fault(_c("bgp-session-down", "a BGP session is not Established: routes to that node's pods are withdrawn",
             "find why the session is down (birdc show protocols all; calicoctl node status) and fix it: open "
             "TCP 179, enable the session, fix the AS", "bgp"),
          life="a firewall change blocks TCP 179 and the session resets; or the peer was disabled",
          injects="iptables -I INPUT/OUTPUT -p tcp --dport/--sport 179 -j DROP on the node, then birdc restart "
                  "of its sessions", symptom="pods on that node can't be reached from other nodes",
          options=("node",), defaults="the first node", backends=("bgp",)),
    Fault(_c("br-netfilter-off", "bridged traffic skips iptables on a node (net.bridge.bridge-nf-call-iptables=0)",
             "sysctl -w net.bridge.bridge-nf-call-iptables=1 (and load br_netfilter at boot)", "bridge"),
          life="br_netfilter not loaded or the sysctl reset by a host tuning profile",
          injects="sysctl -w net.bridge.bridge-nf-call-iptables=0 (every node)",
          symptom="a Service fails from pods on the node of the endpoint it picks (replies not un-DNATed)",
          options=("node",), defaults="every node", backends=("vxlan", "host-gw")),
    Fault(_c("hairpin-off", "hairpin mode is off on a pod's bridge port",
             "bridge link set dev <veth> hairpin on (the CNI's hairpinMode: true)", "bridge"),
          life="a CNI config with hairpinMode false, or a port re-attached by hand (attaching resets it)",
          injects="bridge link set dev veth<hex> hairpin off",
          symptom="a pod can't reach itself through its own Service (when the Service picks it)",
          options=("pod",), defaults="the first pod backing a Service outside kube-system",
          backends=("vxlan", "host-gw")),
)

EXTRA_CAUSES: tuple[Cause, ...] = (
    _c("no-endpoints", "the Service has no ready endpoints", "check the pods behind it (selector, readiness): "
       "kubectl get endpoints <svc>", "proxy"),
    _c("no-listener", "the packet arrives but nothing listens on that port",
       "check the container's port and the Service's targetPort", "pod"),
    _c("cni-agent-down", "the node's CNI agent (kube-flannel / calico-node) is not running",
       "restart the agent pod and read its log", "cni"),
    _c("component-down", "a cluster component is not running", "restart it and read its log", "other"),
    _c("ip-forward-off", "the node does not forward IPv4 (net.ipv4.ip_forward=0)", "sysctl -w net.ipv4.ip_forward=1",
       "bridge"),
    _c("unexplained", "the flow fails, and no known cause explains it",
       "follow the trace: the hop and the rule, route or entry where the packet stops", "other"),
)

FAULT_BY_ID: dict[str, Fault] = {f.id: f for f in FAULTS}
CAUSES: dict[str, Cause] = {**{f.id: f.cause for f in FAULTS}, **{c.id: c for c in EXTRA_CAUSES}}


def cause(cause_id: str) -> Cause:
    return CAUSES[cause_id]


def fault(fault_id: str) -> Fault:
    from podnet.errors import PodnetError

    f = FAULT_BY_ID.get(fault_id)
    if f is None:
        raise PodnetError(f"no fault {fault_id!r} (podnet break --list shows them: {', '.join(FAULT_BY_ID)})",
                          field="FAULT")
    return f
