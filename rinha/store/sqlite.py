"""The embedded store: one SQLite file in WAL mode, shared safely by several processes.

Durability: ``synchronous=NORMAL`` in WAL mode writes every commit to the WAL file before the
commit returns, so a committed payment survives the death of the process (``kill -9``); it is
flushed to the disk at checkpoints, so a power loss may cost the last commits since one.

Each thread gets its own connection (SQLite connections are thread-affine). Several processes
on one host coordinate through SQLite's file locks; ``BEGIN IMMEDIATE`` takes the write lock at
the start of a batch and ``busy_timeout`` waits for another writer instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading

from rinha.store.base import (
    ACCEPT,
    ATTEMPT,
    CLAIM,
    DEAD,
    HEALTH,
    LEASE,
    PAID,
    PIN,
    PURGE,
    RELEASE,
    RENEW,
    Claimed,
    Health,
    Op,
    Side,
    Summary,
)
from rinha.store.schema import migrate

_BUSY_TIMEOUT_MS = 5000

_INSERT = (
    "INSERT INTO payments (correlation_id, amount_cents, accepted_at_ms, state, owner, lease_until_ms) "
    "VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT (correlation_id) DO NOTHING"
)
_AMOUNT_OF = "SELECT amount_cents FROM payments WHERE correlation_id = ?"
_PAID = (
    "UPDATE payments SET state = 'paid', processor = ?, requested_at = ?, requested_at_us = ?, "
    "paid_at_ms = ?, attempts = ?, owner = NULL WHERE correlation_id = ? AND state = 'pending'"
)
_PIN = "UPDATE payments SET pinned = ?, ambiguous = ? WHERE correlation_id = ? AND state = 'pending'"
_DEAD = (
    "UPDATE payments SET state = 'dead', dead_reason = ?, paid_at_ms = ?, owner = NULL "
    "WHERE correlation_id = ? AND state = 'pending'"
)
_RENEW = "UPDATE payments SET lease_until_ms = ? WHERE owner = ? AND state = 'pending'"
_RELEASE = "UPDATE payments SET owner = NULL, lease_until_ms = 0 WHERE owner = ? AND state = 'pending'"
_CLAIM = (
    "UPDATE payments SET owner = ?, lease_until_ms = ? WHERE correlation_id IN ("
    " SELECT correlation_id FROM payments WHERE state = 'pending' AND lease_until_ms < ?"
    " ORDER BY lease_until_ms LIMIT ?) "
    "RETURNING correlation_id, amount_cents, pinned, ambiguous, accepted_at_ms"
)
_LEASE = (
    "INSERT INTO leases (name, holder, until_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms "
    "WHERE leases.holder = excluded.holder OR leases.until_ms < ?"
)
_HEALTH = (
    "INSERT INTO processor_health (processor, failing, min_response_time, checked_at_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (processor) DO UPDATE SET failing = excluded.failing, "
    "min_response_time = excluded.min_response_time, checked_at_ms = excluded.checked_at_ms"
)
_ATTEMPT = (
    "INSERT INTO attempts (correlation_id, processor, requested_at, outcome, status, latency_ms, at_ms, detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SUMMARY = "SELECT processor, COUNT(*), COALESCE(SUM(amount_cents), 0) FROM payments WHERE state = 'paid'"
_SUMMARY_BETWEEN = _SUMMARY + " AND requested_at_us BETWEEN ? AND ?"


class SQLiteStore:
    """The SQLite engine of :class:`rinha.store.base.Store`."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode; batches use explicit transactions)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def migrate(self) -> None:
        migrate(self.connection())

    def apply(self, ops: list[Op]) -> None:
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                op.result = _APPLY[op.kind](conn, *op.args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def summary(self, from_us: int | None, to_us: int | None) -> Summary:
        conn = self.connection()
        if from_us is None or to_us is None:
            rows = conn.execute(_SUMMARY + " GROUP BY processor").fetchall()
        else:
            rows = conn.execute(_SUMMARY_BETWEEN + " GROUP BY processor", (from_us, to_us)).fetchall()
        sides = {name: Side(count, cents) for name, count, cents in rows}
        return Summary(default=sides.get("default", Side()), fallback=sides.get("fallback", Side()))

    def counts(self) -> dict[str, int]:
        rows = self.connection().execute("SELECT state, COUNT(*) FROM payments GROUP BY state").fetchall()
        return {"pending": 0, "paid": 0, "dead": 0, **dict(rows)}

    def health(self) -> dict[str, Health]:
        rows = self.connection().execute(
            "SELECT processor, failing, min_response_time, checked_at_ms FROM processor_health").fetchall()
        return {name: Health(name, bool(failing), mrt, at) for name, failing, mrt, at in rows}

    def oldest_pending_ms(self) -> int | None:
        return self.connection().execute(
            "SELECT MIN(accepted_at_ms) FROM payments WHERE state = 'pending'").fetchone()[0]

    def payment(self, correlation_id: str) -> dict | None:
        """One payment's row as a dict, or None."""
        conn = self.connection()
        cursor = conn.execute("SELECT * FROM payments WHERE correlation_id = ?", (correlation_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cursor.description], row))

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:
                pass  # created in another thread that is gone; the GC closes it
        self._local = threading.local()


def _accept(conn: sqlite3.Connection, correlation_id: str, cents: int, at_ms: int, owner: str | None, lease_until: int) -> str:
    if conn.execute(_INSERT, (correlation_id, cents, at_ms, owner, lease_until)).rowcount == 1:
        return "new"
    (stored,) = conn.execute(_AMOUNT_OF, (correlation_id,)).fetchone()
    return "same" if stored == cents else "conflict"


def _paid(conn, correlation_id, processor, requested_at, requested_at_us, paid_at_ms, attempts) -> None:
    conn.execute(_PAID, (processor, requested_at, requested_at_us, paid_at_ms, attempts, correlation_id))


def _pin(conn, correlation_id, processor, ambiguous) -> None:
    conn.execute(_PIN, (processor, int(ambiguous), correlation_id))


def _dead(conn, correlation_id, reason, at_ms) -> None:
    conn.execute(_DEAD, (reason, at_ms, correlation_id))


def _renew(conn, owner, lease_until_ms) -> None:
    conn.execute(_RENEW, (lease_until_ms, owner))


def _release(conn, owner) -> None:
    conn.execute(_RELEASE, (owner,))


def _claim(conn, owner, now_ms, lease_until_ms, limit) -> list[Claimed]:
    rows = conn.execute(_CLAIM, (owner, lease_until_ms, now_ms, limit)).fetchall()
    return [Claimed(cid, cents, pinned, bool(ambiguous), accepted) for cid, cents, pinned, ambiguous, accepted in rows]


def _purge(conn) -> None:
    conn.execute("DELETE FROM payments")
    conn.execute("DELETE FROM attempts")


def _lease(conn, name, holder, now_ms, until_ms) -> bool:
    conn.execute(_LEASE, (name, holder, until_ms, now_ms))
    row = conn.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
    return row is not None and row[0] == holder


def _health(conn, processor, failing, min_response_time, checked_at_ms) -> None:
    conn.execute(_HEALTH, (processor, int(failing), min_response_time, checked_at_ms))


def _attempt(conn, *row) -> None:
    conn.execute(_ATTEMPT, row)


_APPLY = {
    ACCEPT: _accept,
    PAID: _paid,
    PIN: _pin,
    DEAD: _dead,
    RENEW: _renew,
    RELEASE: _release,
    CLAIM: _claim,
    PURGE: _purge,
    LEASE: _lease,
    HEALTH: _health,
    ATTEMPT: _attempt,
}
