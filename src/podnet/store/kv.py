"""An etcd-like key-value store on SQLite, one file per lab under /run/podnet/<lab>/store.db.

Semantics follow etcd v3 where podnet needs them:
- every write bumps one global revision; each key keeps create_revision, mod_revision and version
  (its resourceVersion is its mod_revision);
- ``watch(prefix, since)`` returns the events after revision ``since``; asking for a revision older than
  the compacted one raises ``Compacted`` (the API's "410 Gone: too old resource version": re-list);
- leases: a key attached to a lease is deleted when the lease expires (TTL in seconds), checked on
  every write and by ``expire()``.
Several processes (podnet commands, components) share the file; SQLite serialises the writers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, create_rev INTEGER NOT NULL,
                               mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER);
CREATE TABLE IF NOT EXISTS events (rev INTEGER PRIMARY KEY, type TEXT NOT NULL, key TEXT NOT NULL,
                                   value TEXT);
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl REAL NOT NULL, expires REAL NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
"""


class Compacted(Exception):
    """The requested revision was compacted away: re-list, then watch from the list's revision."""

    def __init__(self, compacted: int) -> None:
        super().__init__(f"required revision has been compacted (oldest available: {compacted + 1})")
        self.compacted = compacted


class Conflict(Exception):
    """A compare-and-swap failed: the key's mod_revision is not the expected one."""


@dataclass(frozen=True)
class Item:
    key: str
    value: Any
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True)
class Event:
    revision: int
    type: str          # PUT | DELETE
    key: str
    value: Any         # the new value (PUT) or the last value (DELETE)


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def txn(self) -> Iterator[sqlite3.Connection]:
        """One atomic transaction; nested uses join the outer one, so a batch of puts and deletes
        (``with store.txn(): ...``) is seen by other readers all at once or not at all."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self._depth = 0
            self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.execute("COMMIT")

    # -- reads --------------------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._meta("revision")

    def _meta(self, k: str) -> int:
        return self.db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()[0]

    def get(self, key: str) -> Item | None:
        row = self.db.execute("SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key=?",
                              (key,)).fetchone()
        return _item(row) if row else None

    def list(self, prefix: str) -> tuple[list[Item], int]:
        """Items under ``prefix`` and the revision the list is consistent with."""
        with self.txn() as db:
            rows = db.execute("SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key >= ? AND "
                              "key < ? ORDER BY key", (prefix, prefix + "\uffff")).fetchall()
            rev = self._meta("revision")
        return [_item(r) for r in rows], rev

    def watch(self, prefix: str, since: int) -> list[Event]:
        """Events under ``prefix`` with revision > ``since``."""
        compacted = self._meta("compacted")
        if since < compacted:
            raise Compacted(compacted)
        rows = self.db.execute("SELECT rev, type, key, value FROM events WHERE rev > ? AND key >= ? AND key < ? "
                               "ORDER BY rev", (since, prefix, prefix + "\uffff")).fetchall()
        return [Event(r[0], r[1], r[2], json.loads(r[3]) if r[3] is not None else None) for r in rows]

    # -- writes -------------------------------------------------------------------------------------
    def put(self, key: str, value: Any, *, expect_mod_rev: int | None = None, lease: int | None = None) -> int:
        with self.txn() as db:
            self._expire(db)
            row = db.execute("SELECT create_rev, mod_rev, version, value FROM kv WHERE key=?", (key,)).fetchone()
            if expect_mod_rev is not None and (row[1] if row else 0) != expect_mod_rev:
                raise Conflict(key)
            text = json.dumps(value, sort_keys=True)
            if row and row[3] == text and lease is None:
                return row[1]  # unchanged: no new revision (as an apply that changes nothing)
            rev = self._bump(db)
            if row:
                db.execute("UPDATE kv SET value=?, mod_rev=?, version=?, lease=? WHERE key=?",
                           (text, rev, row[2] + 1, lease, key))
            else:
                db.execute("INSERT INTO kv VALUES (?,?,?,?,?,?)", (key, text, rev, rev, 1, lease))
            db.execute("INSERT INTO events VALUES (?,?,?,?)", (rev, "PUT", key, text))
            return rev

    def delete(self, key: str) -> int | None:
        with self.txn() as db:
            return self._delete(db, key)

    def delete_prefix(self, prefix: str) -> int:
        with self.txn() as db:
            keys = [r[0] for r in db.execute("SELECT key FROM kv WHERE key >= ? AND key < ?",
                                             (prefix, prefix + "\uffff"))]
            for k in keys:
                self._delete(db, k)
            return len(keys)

    def _delete(self, db: sqlite3.Connection, key: str) -> int | None:
        row = db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        rev = self._bump(db)
        db.execute("DELETE FROM kv WHERE key=?", (key,))
        db.execute("INSERT INTO events VALUES (?,?,?,?)", (rev, "DELETE", key, row[0]))
        return rev

    def _bump(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE meta SET v = v + 1 WHERE k='revision'")
        return db.execute("SELECT v FROM meta WHERE k='revision'").fetchone()[0]

    def compact(self, revision: int) -> None:
        """Forget events up to ``revision``; watches from before it get ``Compacted``."""
        with self.txn() as db:
            revision = min(revision, self._meta("revision"))
            db.execute("DELETE FROM events WHERE rev <= ?", (revision,))
            db.execute("UPDATE meta SET v=? WHERE k='compacted' AND v < ?", (revision, revision))

    # -- leases -------------------------------------------------------------------------------------
    def grant(self, ttl: float) -> int:
        with self.txn() as db:
            cur = db.execute("INSERT INTO leases (ttl, expires) VALUES (?, ?)", (ttl, time.time() + ttl))
            return int(cur.lastrowid or 0)

    def keepalive(self, lease: int) -> bool:
        with self.txn() as db:
            cur = db.execute("UPDATE leases SET expires = ? + ttl WHERE id=? AND expires > ?",
                             (time.time(), lease, time.time()))
            return cur.rowcount == 1

    def expire(self) -> int:
        with self.txn() as db:
            return self._expire(db)

    def _expire(self, db: sqlite3.Connection) -> int:
        now = time.time()
        dead = [r[0] for r in db.execute("SELECT id FROM leases WHERE expires <= ?", (now,))]
        n = 0
        for lease in dead:
            for (k,) in db.execute("SELECT key FROM kv WHERE lease=?", (lease,)).fetchall():
                self._delete(db, k)
                n += 1
            db.execute("DELETE FROM leases WHERE id=?", (lease,))
        return n


def _item(row) -> Item:
    return Item(row[0], json.loads(row[1]), row[2], row[3], row[4])
