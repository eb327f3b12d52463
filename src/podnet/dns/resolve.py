"""Stub-resolver semantics of glibc (res_search), pure: what a pod's libc asks, in which order.

Used by the lab (the pods' resolv.conf) and by trace/diagnose (explaining search-path expansion
with ndots). The rules follow glibc's resolv/res_query.c (__res_context_search) and res_init.c:

* a name ending in "." is absolute: asked as is, nothing else;
* a name with at least `ndots` dots is asked as is first, then with each search domain;
* otherwise each search domain first, the name as is last;
* `options no-tld-query` drops the final as-is query for single-label names;
* a search domain "." stands for the as-is query (asked in its place, not again at the end).

While walking the list (`walk`), NXDOMAIN, NODATA and SERVFAIL move on to the next search domain;
any other failure (REFUSED, FORMERR, NOTIMP, a timeout) ends the search-domain loop, after which
glibc still tries the name as is if it has not yet done so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

MAXNS = 3             # glibc: further nameserver lines are ignored
MAXNDOTS = 15         # RES_MAXNDOTS
MAXTIMEOUT = 30       # RES_MAXRETRANS
MAXATTEMPTS = 5       # RES_MAXRETRY
DEFAULT_NDOTS = 1
DEFAULT_TIMEOUT = 5   # RES_TIMEOUT
DEFAULT_ATTEMPTS = 2  # RES_DFLRETRY

Outcome = Literal["answer", "nodata", "nxdomain", "servfail", "refused", "formerr", "notimp", "timeout"]
CONTINUE = frozenset({"nodata", "nxdomain", "servfail"})


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = DEFAULT_NDOTS
    timeout: int = DEFAULT_TIMEOUT
    attempts: int = DEFAULT_ATTEMPTS
    flags: frozenset[str] = field(default_factory=frozenset)   # rotate, use-vc, no-tld-query, ...

    @property
    def effective_nameservers(self) -> tuple[str, ...]:
        """glibc falls back to the local host when no nameserver is configured."""
        return self.nameservers or ("127.0.0.1",)


def _int_option(value: str, default: int, maximum: int) -> int:
    try:
        return min(max(int(value), 0), maximum)
    except ValueError:
        return default


def parse_resolv_conf(text: str) -> ResolvConf:
    """Parse resolv.conf text as glibc does (last `search`/`domain` wins, at most 3 nameservers).

    Without `search` or `domain` glibc would derive the search list from the host name's domain;
    this pure parser leaves it empty.
    """
    nameservers: list[str] = []
    search: list[str] = []
    ndots, timeout, attempts = DEFAULT_NDOTS, DEFAULT_TIMEOUT, DEFAULT_ATTEMPTS
    flags: set[str] = set()
    for line in text.splitlines():
        words = line.split()
        if not words or words[0][0] in "#;":
            continue
        key, args = words[0], words[1:]
        for i, w in enumerate(args):     # a comment may follow the values
            if w[0] in "#;":
                args = args[:i]
                break
        if key == "nameserver" and args and len(nameservers) < MAXNS:
            nameservers.append(args[0])
        elif key == "domain" and args:
            search = [args[0]]
        elif key == "search" and args:
            search = list(args)
        elif key == "options":
            for opt in args:
                name, _, value = opt.partition(":")
                if name == "ndots":
                    ndots = _int_option(value, ndots, MAXNDOTS)
                elif name == "timeout":
                    timeout = max(1, _int_option(value, timeout, MAXTIMEOUT))
                elif name == "attempts":
                    attempts = max(1, _int_option(value, attempts, MAXATTEMPTS))
                else:
                    flags.add(name)
    return ResolvConf(tuple(nameservers), tuple(search), ndots, timeout, attempts, frozenset(flags))


def _join(name: str, domain: str) -> str:
    domain = domain.strip(".")
    return f"{name}.{domain}." if domain else f"{name}."


def candidates(name: str, resolv: ResolvConf) -> list[str]:
    """The absolute names (with trailing dot) glibc queries for `name`, in order."""
    name = name.strip()
    if not name or name == ".":
        return ["."]
    dots = name.count(".")
    if name.endswith("."):
        return [name]
    out: list[str] = []
    tried_as_is = False
    if dots >= resolv.ndots:
        out.append(name + ".")
        tried_as_is = True
    root_on_list = False
    for domain in resolv.search:
        if not domain.strip("."):
            root_on_list = True
        out.append(_join(name, domain))    # glibc does not de-duplicate the search list
    searched = bool(resolv.search)
    no_tld = "no-tld-query" in resolv.flags
    if not tried_as_is and not root_on_list and (dots or not searched or not no_tld):
        out.append(name + ".")
    return out


@dataclass(frozen=True)
class Walk:
    """What the stub resolver did: each (query name, outcome), and the name that answered."""

    steps: tuple[tuple[str, Outcome], ...]
    answered: str | None

    @property
    def ok(self) -> bool:
        return self.answered is not None


def walk(name: str, resolv: ResolvConf, ask: Callable[[str], Outcome]) -> Walk:
    """Walk the candidates like glibc, asking `ask(fqdn)` for each one, stopping as glibc stops."""
    cands = candidates(name, resolv)
    steps: list[tuple[str, Outcome]] = []
    as_is = name.strip().rstrip(".") + "."
    search_done = False
    for cand in cands:
        is_as_is = cand == as_is
        if search_done and not is_as_is:
            continue                      # the search loop stopped; only the as-is query remains
        outcome = ask(cand)
        steps.append((cand, outcome))
        if outcome == "answer":
            return Walk(tuple(steps), cand)
        if not is_as_is and outcome not in CONTINUE:
            search_done = True
    return Walk(tuple(steps), None)


def kubernetes_resolv_conf(namespace: str, domain: str = "cluster.local", dns_ip: str = "10.96.0.10") -> str:
    """The resolv.conf kubelet writes for a pod with dnsPolicy ClusterFirst."""
    domain = domain.strip(".")
    return f"nameserver {dns_ip}\nsearch {namespace}.svc.{domain} svc.{domain} {domain}\noptions ndots:5\n"
