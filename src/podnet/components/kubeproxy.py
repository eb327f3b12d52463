"""kube-proxy-<node>: the per-node Service proxy (a hostNetwork pod in kube-system), as kube-proxy runs.

It watches the lab's store (Services, EndpointSlices, pods and their readiness) and programs the node's
netfilter rules the way upstream's proxier does:

- **iptables mode**: later syncs are one ``iptables-restore --noflush`` transaction (filter and nat)
  with only the chains that changed (``partial_payload``). The first sync after start writes the
  filter table's chains with ``--noflush`` (other agents, such as the NetworkPolicy one, write that
  table too) and replaces the nat table whole (``table_replacement``: what kube-proxy does not own is
  read with ``iptables-save -c`` and kept, counters included; its stale chains vanish), because
  iptables-nft loads a large ``--noflush`` payload hundreds of times slower. The jumps from
  the built-in chains are ensured separately (``-C``, then ``-I``), and the canary chains
  ``KUBE-PROXY-CANARY`` tell it when someone flushed the tables: then it re-syncs fully.
- **nftables mode**: table ``ip kube-proxy`` loaded with ``nft -f`` in bounded transactions; later syncs
  send element and chain diffs.
- after each sync, stale UDP conntrack entries toward removed endpoints are deleted
  (``compile.conntrack_cleanup``).

It syncs when the store's revision moves (``podnet apply``/``delete``) and re-checks pod readiness every
second, so a pod whose process died leaves its Services within about a second. Killing this process
stops the node's syncs (the rules stay as they were), as on a real node.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import time

from podnet.compile import conntrack_cleanup
from podnet.compile import kubeproxy_iptables as kpt
from podnet.compile import kubeproxy_nftables as kpn
from podnet.dataplane import lab as labrt
from podnet.dataplane import netfilter
from podnet.model.lab import Lab
from podnet.model.services import ServicePortInfo

POLL = 0.1          # store revision
READINESS = 1.0     # pod liveness -> endpoint readiness
CANARY = 5.0        # flushed tables -> full sync


def log(msg: str, level: str = "I", where: str = "proxier.go:800") -> None:
    ts = time.strftime("%m%d %H:%M:%S", time.gmtime())
    frac = f"{time.time() % 1:.6f}"[1:]
    sys.stdout.write(f"{level}{ts}{frac} {os.getpid():>7} {where}] {msg}\n")
    sys.stdout.flush()


def proxy_node(lab: Lab, node: str) -> kpt.ProxyNode:
    """The flags the lab runs kube-proxy with: --hostname-override, node IP, --cluster-cidr."""
    net = lab.cluster.networking
    return kpt.ProxyNode(name=node, node_ips=(str(lab.node(node).ip),), cluster_cidr=str(net.pod_subnet),
                         service_cidrs=(str(net.service_subnet),))


class IptablesProxier:
    mode = "iptables"

    def __init__(self, node: kpt.ProxyNode) -> None:
        self.node = node
        self.rules: kpt.IptablesRules | None = None

    def needs_full_sync(self) -> bool:
        return self.rules is None or not all(netfilter.chain_exists(t, kpt.KUBE_PROXY_CANARY)
                                             for t in kpt.CANARY_TABLES)

    def sync(self, ports: list[ServicePortInfo], full: bool = False) -> int:
        """Bring the node to ``ports``; returns the payload size in lines (0: nothing to do)."""
        new = kpt.build_rules(ports, self.node, previous=self.rules)
        if full or self.rules is None:
            netfilter.ensure_chains(kpt.ensured_chains())
            netfilter.ensure_jumps(kpt.jump_rules())
            # filter (small; other agents write this table too): --noflush, our chains only
            filter_payload = new.payload(tables=("filter",))
            netfilter.iptables_restore(filter_payload)
            # nat (kube-proxy's alone; 10k services = 200k lines): the whole table replaced
            nat = kpt.table_replacement(netfilter.iptables_save("nat", counters=True), new, tables=("nat",))
            netfilter.iptables_replace(nat)
            self.rules = new
            return filter_payload.count("\n") + nat.count("\n")
        payload = kpt.partial_payload(self.rules, new)
        if payload:
            netfilter.iptables_restore(payload)
        self.rules = new
        return payload.count("\n")


class NftablesProxier:
    mode = "nftables"

    def __init__(self, node: kpt.ProxyNode) -> None:
        self.node = node
        self.rules: kpn.NftRules | None = None

    def needs_full_sync(self) -> bool:
        return self.rules is None or not netfilter.nft_table_exists("ip", "kube-proxy")

    def sync(self, ports: list[ServicePortInfo], full: bool = False) -> int:
        new = kpn.build_nft(ports, self.node, previous=self.rules)
        scripts = kpn.full_scripts(new) if full or self.rules is None else kpn.partial_scripts(self.rules, new)
        for script in scripts:
            netfilter.nft_apply(script)
        self.rules = new
        return sum(s.count("\n") for s in scripts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="kube-proxy")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--node", required=True)
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    lab, store = labrt.load_when_saved(a.lab, a.node)
    node = proxy_node(lab, a.node)
    mode = lab.cluster.networking.kube_proxy_mode
    log(f'"Using {mode} Proxier"', where="server_linux.go:170")
    log(f'"Setting up {mode} proxier" ipFamily="IPv4" hostname="{a.node}" nodeIP="{node.primary_ip}" '
        f'clusterCIDR="{node.cluster_cidr}"', where="server.go:491")
    if mode == "iptables":
        log(f'"Using iptables mark for masquerade" ipFamily="IPv4" mark="{node.masquerade_mark}"',
            where="proxier.go:265")
    proxier: IptablesProxier | NftablesProxier = IptablesProxier(node) if mode == "iptables" else NftablesProxier(node)
    ports: list[ServicePortInfo] | None = None
    seen_rev = -1
    last_ready = last_canary = 0.0
    ready: set[str] | None = None
    while True:
        now = time.monotonic()
        rev = store.revision
        due = rev != seen_rev or now - last_ready >= READINESS
        full = now - last_canary >= CANARY and proxier.needs_full_sync()
        if full:
            last_canary = now
            if proxier.rules is not None:
                log('"Proxier canary missing, re-syncing everything"', where="proxier.go:730")
        if due or full:
            try:
                if rev != seen_rev:
                    lab, fresh = labrt.load(a.lab)
                    fresh.close()
                now_ready = labrt.ready_pods(lab, store)
                # nothing moved (same objects, same ready pods): no need to resolve the Services again
                new_ports = ports if (rev == seen_rev and now_ready == ready and not full and ports is not None) \
                    else labrt.resolved_services(lab, store, now_ready).ports()
                ready = now_ready
                if new_ports != ports or full:
                    t0 = time.monotonic()
                    lines = proxier.sync(new_ports, full=full)
                    if ports is not None:
                        for f in conntrack_cleanup.stale_entries(ports, new_ports):
                            n = netfilter.conntrack_delete(f)
                            log(f'"Deleted conntrack entries" filter="{" ".join(f.argv())}" count={n} '
                                f'reason="{f.why}"', where="cleanup.go:110")
                    log(f'"SyncProxyRules complete" elapsed="{(time.monotonic() - t0) * 1000:.1f}ms" '
                        f'servicePorts={len(new_ports)} lines={lines} full={str(full or ports is None).lower()}')
                    ports = new_ports
                    gc.freeze()   # the rules and ports live until the next sync: keep the cyclic GC off them
                seen_rev, last_ready = rev, now
            except Exception as e:   # keep running and retry, as kube-proxy does, and say why
                log(f'"Failed to sync proxy rules" err="{e}"', level="E")
                proxier.rules = None   # the next attempt is a full sync
                time.sleep(1)
        time.sleep(POLL)


if __name__ == "__main__":
    main()
