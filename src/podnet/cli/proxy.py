"""``podnet proxy``: what kube-proxy writes on a node, from manifests alone."""

from __future__ import annotations

import ipaddress

import click

from podnet.compile.kubeproxy_iptables import ProxyNode, render_iptables
from podnet.compile.kubeproxy_nftables import DEFAULT_CHUNK, render_nftables
from podnet.errors import PodnetError
from podnet.model.manifest import Manifests, parse_docs
from podnet.model.services import DEFAULT_SERVICE_SUBNET, ResolvedServices, resolve, resolve_services
from podnet.model.source import load_files

RENDER_HELP = """Print the exact ruleset kube-proxy writes on NODE, touching nothing.

\b
Reads Services and EndpointSlices (and, with a Cluster document, Pods and
Deployments, whose EndpointSlices are derived from selectors as the
EndpointSlice controller does). No lab, no root needed.

\b
iptables mode prints the `iptables-restore --noflush` input of a full sync
(tables filter and nat); the jumps from INPUT/FORWARD/OUTPUT/PREROUTING/
POSTROUTING are ensured separately by kube-proxy and are not part of it.
nftables mode prints the `nft -f` script for table `ip kube-proxy`; large
rulesets are split into transactions, each headed by a `# transaction` comment
(the whole output is still one valid script).

\b
Endpoints whose nodeName equals NODE are local. The node's local addresses
are the --node-ip values (the first is the primary; with a Cluster document
the default is the node's ip) plus 127.0.0.1. Without --cluster-cidr there is
no local-traffic detector, as upstream (off-cluster traffic to ClusterIPs is
then not masqueraded, and pods lose the externalTrafficPolicy=Local
short-circuit); the lab runs kube-proxy with --cluster-cidr=<podSubnet>.

\b
Examples:
  podnet proxy render --node node1 --cluster-cidr 10.244.0.0/16 -f examples/seed-vxlan.yaml
  podnet proxy render --node node1 --mode nftables --node-ip 192.168.1.10 -f svc.yaml -f slices.yaml
"""


@click.group("proxy", help="kube-proxy: render the rules a node gets.")
def proxy() -> None:
    pass


def _cidrs(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    out = []
    for part in value.split(","):
        part = part.strip()
        if part == "primary":
            out.append(part)
            continue
        try:
            out.append(str(ipaddress.IPv4Network(part, strict=False)))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not an IPv4 CIDR (or 'primary')") from None
    return tuple(out)


def _cidr(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.IPv4Network(value, strict=False))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IPv4 CIDR") from None


def _ips(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(str(ipaddress.IPv4Address(v)) for v in value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@proxy.command("render", help=RENDER_HELP)
@click.option("--node", required=True, help="The node kube-proxy runs on (its --hostname-override).")
@click.option("-f", "--filename", "files", multiple=True, required=True, type=click.Path(),
              help="Manifest file or directory; repeatable.")
@click.option("--mode", type=click.Choice(["iptables", "nftables"]), default=None,
              help="Proxier (default: the Cluster's kubeProxyMode, else iptables).")
@click.option("--node-ip", "node_ips", multiple=True, callback=_ips,
              help="A local address of the node; repeatable; the first is the primary.")
@click.option("--cluster-cidr", callback=_cidr, help="Pod CIDR of the cluster: enables the local-traffic "
              "detector (masquerade off-cluster traffic, short-circuit pod traffic).")
@click.option("--masquerade-all", is_flag=True, help="SNAT all traffic sent to ClusterIPs.")
@click.option("--nodeport-addresses", callback=_cidrs, metavar="CIDR[,CIDR]",
              help="Accept NodePorts only on local addresses in these CIDRs ('primary': the node IP). "
              "Default: every local address (iptables), the primary IP (nftables).")
@click.option("--localhost-nodeports", type=click.BOOL, default=True, show_default=True,
              metavar="true|false", help="iptables: NodePorts also answer on 127.0.0.1 (IPv4).")
@click.option("--chunk", type=click.IntRange(1), default=DEFAULT_CHUNK, show_default=True,
              help="nftables: service ports per transaction.")
def render(node: str, files: tuple[str, ...], mode: str | None, node_ips: tuple[str, ...],
           cluster_cidr: str | None, masquerade_all: bool, nodeport_addresses: tuple[str, ...],
           localhost_nodeports: bool, chunk: int) -> None:
    try:
        m = parse_docs(load_files(list(files)))
        resolved, default_ips = _resolve(m, node)
    except PodnetError as e:
        raise click.ClickException(str(e)) from None
    for w in [*m.warnings, *resolved.warnings]:
        click.echo(f"warning: {w}", err=True)
    subnet = m.cluster.networking.service_subnet if m.cluster else DEFAULT_SERVICE_SUBNET
    pnode = ProxyNode(name=node, node_ips=node_ips or default_ips, cluster_cidr=cluster_cidr,
                      masquerade_all=masquerade_all, nodeport_addresses=nodeport_addresses,
                      localhost_nodeports=localhost_nodeports, service_cidrs=(str(subnet),))
    mode = mode or (m.cluster.networking.kube_proxy_mode if m.cluster and
                    m.cluster.networking.kube_proxy_mode != "none" else "iptables")
    ports = resolved.ports()
    if mode == "iptables":
        click.echo(render_iptables(ports, pnode), nl=False)
        return
    scripts = render_nftables(ports, pnode, chunk=chunk)
    for i, script in enumerate(scripts, 1):
        if len(scripts) > 1:
            click.echo(f"# transaction {i} of {len(scripts)}")
        click.echo(script, nl=False)


def _resolve(m: Manifests, node: str) -> tuple[ResolvedServices, tuple[str, ...]]:
    """With a Cluster document: the whole lab (pods placed, slices derived). Without: loose parts."""
    if m.cluster is None:
        if m.pods or m.deployments:
            m.warnings.append("Pods and Deployments are ignored without a Cluster document "
                              "(only hand-written EndpointSlices give endpoints)")
        return resolve(m.services, m.endpointslices, [], None), ()
    from podnet.model.lab import resolve as resolve_lab
    lab = resolve_lab(m)
    spec = m.cluster.node(node)
    if spec is None:
        raise PodnetError(f"node {node!r} is not in the Cluster (nodes: "
                          f"{', '.join(n.name for n in m.cluster.nodes)})", where=m.cluster.source or None)
    return resolve_services(lab), (str(spec.ip),)
