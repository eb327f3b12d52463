from __future__ import annotations

import os

import click

from podnet.dataplane import bird
from podnet.dataplane import lab as labrt
from podnet.errors import PodnetError
from podnet.model import names


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("target", required=False)
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, required=True)
@click.option("-n", "--namespace", default="default", help="The pod's namespace.")
@click.option("--node", default=None, help="Run on a node, router or external host instead of a pod.")
@click.option("--lab", default=None, help="Lab name (default: the only running lab).")
def command(target: str | None, cmd: tuple[str, ...], namespace: str, node: str | None, lab: str | None) -> None:
    """Run CMD inside a pod (`exec POD -- CMD...`) or a node (`exec --node NODE -- CMD...`).

    The same as `ip netns exec <netns> CMD...`: the pod's /etc/netns files (resolv.conf) and the node's
    CNI config are visible, and the exit status is CMD's. In a bgp lab, `birdc` on a node or router
    talks to that host's BIRD (podnet adds `-s <its control socket>`).
    """
    the_lab, store = labrt.load(lab)
    store.close()
    argv = list(cmd)
    if node is not None:
        if target is not None:
            argv = [target, *argv]
        hosts = {n.name for n in the_lab.nodes} | {h.name for h in the_lab.cluster.external_hosts} | {
            r.name for r in the_lab.cluster.routers} | {names.UNDERLAY}
        if node not in hosts:
            raise PodnetError(f"no node, router or host named {node!r} (have: {', '.join(sorted(hosts))})")
        ns = names.host_ns(the_lab.name, node)
    else:
        if target is None:
            raise PodnetError("name a pod (exec POD -- CMD) or a node (exec --node NODE -- CMD)")
        pod_ns, _, pod_name = target.rpartition("/")
        pod = the_lab.pod(pod_ns or namespace, pod_name)
        if pod is None:
            raise PodnetError(f'pod "{pod_name}" not found in namespace "{pod_ns or namespace}"')
        ns = pod.netns
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise PodnetError("no command given (usage: podnet exec POD -- CMD...)")
    if node is not None and the_lab.cluster.bgp and os.path.basename(argv[0]) in ("birdc", "birdcl") and (
            "-s" not in argv[1:]) and node != names.UNDERLAY:
        # birdc's default socket is the host's /run/bird/bird.ctl: talk to this node's or router's BIRD
        argv = [argv[0], "-s", bird.paths(the_lab.name, node).ctl, *argv[1:]]
    os.execvp("ip", ["ip", "netns", "exec", ns, *argv])
