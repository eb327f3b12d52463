"""glibc stub-resolver semantics (pure): resolv.conf parsing, candidates, the search walk."""

from __future__ import annotations

from podnet.dns.records import RecordSet
from podnet.dns.resolve import (
    ResolvConf,
    candidates,
    kubernetes_resolv_conf,
    parse_resolv_conf,
    walk,
)

K8S = parse_resolv_conf(kubernetes_resolv_conf("default", "cluster.local", "10.96.0.10"))


def test_kubernetes_resolv_conf_exact_text() -> None:
    assert kubernetes_resolv_conf("default", "cluster.local", "10.96.0.10") == (
        "nameserver 10.96.0.10\n"
        "search default.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )
    assert kubernetes_resolv_conf("team-a", "corp.example.", "10.32.0.10").splitlines()[1] == (
        "search team-a.svc.corp.example svc.corp.example corp.example")


def test_parse_kubernetes_resolv_conf() -> None:
    expected = ResolvConf(("10.96.0.10",), ("default.svc.cluster.local", "svc.cluster.local", "cluster.local"),
                          ndots=5)
    assert expected == K8S


def test_parse_glibc_rules() -> None:
    text = """
# comment
; another
nameserver 10.0.0.1
nameserver 10.0.0.2  # trailing comment
nameserver 10.0.0.3
nameserver 10.0.0.4
search a.example b.example
domain only.example
options ndots:40 timeout:0 attempts:9 rotate use-vc
options edns0 timeout:3 bogus:x
"""
    rc = parse_resolv_conf(text)
    assert rc.nameservers == ("10.0.0.1", "10.0.0.2", "10.0.0.3")      # MAXNS = 3
    assert rc.search == ("only.example",)                              # last of search/domain wins
    assert rc.ndots == 15                                              # capped
    assert rc.timeout == 3 and rc.attempts == 5
    assert {"rotate", "use-vc", "edns0", "bogus"} <= rc.flags


def test_defaults() -> None:
    rc = parse_resolv_conf("")
    assert (rc.ndots, rc.timeout, rc.attempts, rc.search) == (1, 5, 2, ())
    assert rc.effective_nameservers == ("127.0.0.1",)


def test_short_name_walks_the_search_list_then_as_is() -> None:
    assert candidates("my-service", K8S) == [
        "my-service.default.svc.cluster.local.",
        "my-service.svc.cluster.local.",
        "my-service.cluster.local.",
        "my-service.",
    ]


def test_fewer_dots_than_ndots_still_searches_first() -> None:
    assert candidates("my-service.default", K8S)[:2] == [
        "my-service.default.default.svc.cluster.local.",
        "my-service.default.svc.cluster.local.",
    ]
    # 4 dots < ndots 5: even the full service name goes through the search list first
    assert candidates("my-service.default.svc.cluster.local", K8S)[0] == (
        "my-service.default.svc.cluster.local.default.svc.cluster.local.")
    assert candidates("my-service.default.svc.cluster.local", K8S)[-1] == "my-service.default.svc.cluster.local."


def test_enough_dots_tries_as_is_first() -> None:
    assert candidates("a.b.c.d.e.f", K8S) == [
        "a.b.c.d.e.f.", "a.b.c.d.e.f.default.svc.cluster.local.", "a.b.c.d.e.f.svc.cluster.local.",
        "a.b.c.d.e.f.cluster.local.",
    ]
    assert candidates("example.com", parse_resolv_conf("search x.y\n"))[0] == "example.com."   # ndots 1


def test_trailing_dot_is_absolute() -> None:
    assert candidates("my-service.default.svc.cluster.local.", K8S) == ["my-service.default.svc.cluster.local."]


def test_no_tld_query_and_root_in_search() -> None:
    rc = parse_resolv_conf("search a.example\noptions no-tld-query\n")
    assert candidates("host", rc) == ["host.a.example."]
    assert candidates("host.sub", rc) == ["host.sub.", "host.sub.a.example."]
    assert candidates("host", parse_resolv_conf("search a.example .\n")) == ["host.a.example.", "host."]
    assert candidates("host", parse_resolv_conf("")) == ["host."]


def oracle(rs: RecordSet):  # type: ignore[no-untyped-def]
    def ask(name: str):  # type: ignore[no-untyped-def]
        ans = rs.lookup(name, "A")
        if ans.rcode == "NOERROR":
            return "answer" if ans.answer else "nodata"
        return ans.rcode.lower()
    return ask


def test_walk_against_the_records() -> None:
    rs = RecordSet([("default", "my-service", "10.96.45.67", [], [])])
    ask = oracle(rs)
    w = walk("my-service", K8S, ask)
    assert w.ok and w.answered == "my-service.default.svc.cluster.local." and len(w.steps) == 1
    w = walk("my-service.default", K8S, ask)
    assert [o for _, o in w.steps] == ["nxdomain", "answer"]
    w = walk("example.com", K8S, ask)
    assert not w.ok and [o for _, o in w.steps] == ["nxdomain", "nxdomain", "nxdomain", "refused"]


def test_walk_stops_the_search_loop_on_refused_but_tries_as_is() -> None:
    outcomes = {"x.a.": "refused", "x.": "answer"}
    w = walk("x", parse_resolv_conf("search a b\n"), lambda n: outcomes.get(n, "nxdomain"))  # type: ignore[arg-type,return-value]
    assert [n for n, _ in w.steps] == ["x.a.", "x."] and w.answered == "x."


def test_walk_continues_after_servfail_and_nodata() -> None:
    outcomes = {"x.a.": "servfail", "x.b.": "nodata", "x.c.": "answer"}
    w = walk("x", parse_resolv_conf("search a b c\n"), lambda n: outcomes[n])  # type: ignore[arg-type,return-value]
    assert w.answered == "x.c." and len(w.steps) == 3
