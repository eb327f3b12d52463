import time

import pytest

from podnet.store.kv import Compacted, Conflict, Store


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "store.db"))
    yield s
    s.close()


def test_revisions_and_versions(store):
    r1 = store.put("/a", {"x": 1})
    r2 = store.put("/b", {"y": 2})
    r3 = store.put("/a", {"x": 3})
    assert (r1, r2, r3) == (1, 2, 3)
    a = store.get("/a")
    assert (a.value, a.create_revision, a.mod_revision, a.version) == ({"x": 3}, 1, 3, 2)
    assert store.put("/a", {"x": 3}) == 3  # unchanged: no new revision
    items, rev = store.list("/")
    assert [i.key for i in items] == ["/a", "/b"] and rev == 3


def test_watch_and_compaction(store):
    store.put("/p/a", 1)
    store.put("/q/x", 1)
    store.put("/p/b", 2)
    store.delete("/p/a")
    ev = store.watch("/p/", 0)
    assert [(e.type, e.key, e.revision) for e in ev] == [("PUT", "/p/a", 1), ("PUT", "/p/b", 3), ("DELETE", "/p/a", 4)]
    assert [e.key for e in store.watch("/p/", 3)] == ["/p/a"]
    store.compact(3)
    with pytest.raises(Compacted):
        store.watch("/p/", 1)
    assert [e.revision for e in store.watch("/p/", 3)] == [4]


def test_compare_and_swap(store):
    rev = store.put("/k", "v1")
    store.put("/k", "v2", expect_mod_rev=rev)
    with pytest.raises(Conflict):
        store.put("/k", "v3", expect_mod_rev=rev)


def test_leases_expire(store):
    lease = store.grant(0.2)
    store.put("/lease/k", "v", lease=lease)
    assert store.keepalive(lease)
    time.sleep(0.3)
    assert store.expire() == 1
    assert store.get("/lease/k") is None
    assert store.watch("/lease/", 0)[-1].type == "DELETE"
