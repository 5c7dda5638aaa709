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
import time
from contextlib import closing

from rinha.store.base import (
    ACCEPT,
    ADMIT,
    ATTEMPT,
    CLAIM,
    DEAD,
    HEALTH,
    HEARTBEAT,
    LEASE,
    PAID,
    PIN,
    REBIND,
    PRUNE_ATTEMPTS,
    PURGE,
    PURGED_MARK,
    RELEASE,
    RENEW,
    REQUEUE,
    SETTLE_DEAD,
    Claimed,
    Health,
    Op,
    ProfileRun,
    Side,
    Summary,
)
from rinha.store.schema import migrate, refuse_foreign

_BUSY_TIMEOUT_MS = 5000
#: Seconds between two tries of a write transaction while another process holds the lock.
_BUSY_NAP = 0.00005

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
_REBIND = (
    "UPDATE payments SET pinned = ?, ambiguous = 0 "
    "WHERE correlation_id = ? AND state = 'pending' AND owner = ?"
)
_DEAD = (
    "UPDATE payments SET state = 'dead', dead_reason = ?, paid_at_ms = ?, owner = NULL "
    "WHERE correlation_id = ? AND state = 'pending'"
)
_RENEW = "UPDATE payments SET lease_until_ms = ? WHERE owner = ? AND state = 'pending'"
_RELEASE = "UPDATE payments SET owner = NULL, lease_until_ms = 0 WHERE owner = ? AND state = 'pending'"
_CLAIM = (
    # A lease that ran out (not 0: released or never owned) belonged to an instance that died,
    # perhaps with an attempt in flight: adopt the payment as ambiguous where it was bound.
    "UPDATE payments SET owner = ?, lease_until_ms = ?, "
    " ambiguous = CASE WHEN lease_until_ms > 0 THEN 1 ELSE ambiguous END, "
    " pinned = CASE WHEN lease_until_ms > 0 THEN COALESCE(pinned, 'default') ELSE pinned END "
    "WHERE correlation_id IN ("
    " SELECT correlation_id FROM payments WHERE state = 'pending' AND lease_until_ms < ?"
    " ORDER BY lease_until_ms LIMIT ?) "
    "RETURNING correlation_id, amount_cents, pinned, ambiguous, accepted_at_ms"
)
_CLAIMABLE = "SELECT 1 FROM payments WHERE state = 'pending' AND lease_until_ms < ? LIMIT 1"
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


class LockWaits:
    """Commits that found another connection holding the write lock, and the seconds they waited
    for it (those that gave up included)."""

    __slots__ = ("count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds


class SQLiteStore:
    """The SQLite engine of :class:`rinha.store.base.Store`."""

    #: What a failing database raises (the CLI turns these into one line).
    errors = (sqlite3.DatabaseError,)

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        #: The connection of :meth:`apply_now` (used by one thread at a time: the event loop's).
        self._now: sqlite3.Connection | None = None
        #: The waits of :meth:`apply_now`: naps of the thread calling it (a daemon's event loop,
        #: which serves nothing meanwhile) while another process committed.
        self.loop_lock_waits = LockWaits()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode; batches use explicit transactions)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open(busy_timeout_ms=_BUSY_TIMEOUT_MS)
        return conn

    def _open(self, busy_timeout_ms: int, check_same_thread: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_ms / 1000,
                               check_same_thread=check_same_thread)
        _wal(conn, _BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        with self._lock:
            self._all.append(conn)
        return conn

    def migrate(self) -> None:
        with closing(self._plain()) as plain:  # before this store's WAL setting touches the file
            refuse_foreign(plain)
        conn = self.connection()
        if getattr(self._local, "napping", False):  # migrations wait with SQLite's own handler
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            self._local.napping = False
        migrate(conn)

    def schema_version(self) -> int:
        """The schema version the database is at (0: not a rinha database). Read without this
        store's settings, so asking a foreign file leaves it as it was (WAL is set on first use)."""
        with closing(self._plain()) as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    def _plain(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)

    def apply(self, ops: list[Op]) -> None:
        conn = self.connection()
        if not getattr(self._local, "napping", False):
            conn.execute("PRAGMA busy_timeout = 0")  # waits are begin_immediate's, in short naps
            self._local.napping = True
        if not _transaction(conn, ops, _BUSY_TIMEOUT_MS / 1000):
            raise sqlite3.OperationalError("database is locked (another process held it too long)")

    def apply_now(self, ops: list[Op], patience: float = 0.0) -> bool:
        """Apply a batch in one transaction unless another connection holds the write lock for
        longer than ``patience`` seconds: then False, nothing applied. Raises if the batch failed
        (rolled back).

        Its connection never checkpoints on commit (a checkpoint writes the database file and may
        wait for the disk): whoever calls this calls :meth:`checkpoint` from another thread."""
        return _transaction(self._loop_connection(), ops, patience, self.loop_lock_waits)

    def claimable_now(self, now_ms: int) -> bool:
        """Is any payment claimable (pending, its lease run out or never taken)? A read on the
        calling thread (the event loop's, as :meth:`apply_now`): it never waits for a writer.

        The claim itself is a write transaction on the writer thread, and a dispatcher polls 20
        times a second: asking first took an idle daemon from 1.7 to 1.2 % of a CPU."""
        return self._loop_connection().execute(_CLAIMABLE, (now_ms,)).fetchone() is not None

    def _loop_connection(self) -> sqlite3.Connection:
        """The connection of :meth:`apply_now` and :meth:`claimable_now`."""
        conn = self._now
        if conn is None:
            conn = self._now = self._open(busy_timeout_ms=0, check_same_thread=False)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        return conn

    def checkpoint(self) -> None:
        """Copy committed pages from the WAL into the database file, without waiting for anyone."""
        try:
            self.connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.OperationalError:
            pass  # another process is checkpointing: it does the same work

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
        self._now = None

    # Operator reads (the control plane and the CLI). None of them is on the payment path.

    def state_counts(self) -> dict[str, int]:
        """Payments by state, each counted from its partial index (no table scan)."""
        conn = self.connection()
        return {state: conn.execute(_COUNT_STATE[state]).fetchone()[0] for state in ("pending", "paid", "dead")}

    def dead_letters(self, since_ms: int | None = None, reason: str | None = None, limit: int | None = None) -> list[dict]:
        """Dead payments, oldest death first: dead at or after ``since_ms``, ``reason`` containing
        the text (case-insensitive). Each: correlation_id, amount_cents, accepted_at_ms,
        dead_at_ms, reason, attempts (real attempts made, from the attempt history)."""
        where, params = _dead_filter(since_ms, reason)
        sql = (
            "SELECT correlation_id, amount_cents, COALESCE(first_accepted_at_ms, accepted_at_ms), paid_at_ms, dead_reason,"
            " (SELECT COUNT(*) FROM attempts a WHERE a.correlation_id = p.correlation_id"
            f" AND a.outcome NOT IN ({_EVENT_OUTCOMES})) FROM payments p WHERE {where} ORDER BY paid_at_ms, correlation_id"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.connection().execute(sql, params).fetchall()
        keys = ("correlation_id", "amount_cents", "accepted_at_ms", "dead_at_ms", "reason", "attempts")
        return [dict(zip(keys, row)) for row in rows]

    def dead_letter_count(self, since_ms: int | None = None, reason: str | None = None) -> int:
        where, params = _dead_filter(since_ms, reason)
        return self.connection().execute(f"SELECT COUNT(*) FROM payments p WHERE {where}", params).fetchone()[0]

    def payment_story(self, correlation_id: str) -> tuple[dict, list[dict]] | None:
        """A payment's row (as :meth:`payment`) and its history: every attempt and operator event
        (outcome ``requeued`` or ``found``) in order, each a dict of the ``attempts`` table's columns."""
        row = self.payment(correlation_id)
        if row is None:
            return None
        cursor = self.connection().execute(
            "SELECT processor, requested_at, outcome, status, latency_ms, at_ms, detail FROM attempts"
            " WHERE correlation_id = ? ORDER BY id", (correlation_id,))
        keys = [c[0] for c in cursor.description]
        return row, [dict(zip(keys, attempt)) for attempt in cursor.fetchall()]

    def states(self, correlation_ids: list[str]) -> dict[str, str]:
        """The state of each payment that exists (pending, paid, dead)."""
        conn = self.connection()
        found: dict[str, str] = {}
        for start in range(0, len(correlation_ids), 500):
            chunk = correlation_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(conn.execute(
                f"SELECT correlation_id, state FROM payments WHERE correlation_id IN ({marks})", chunk).fetchall())
        return found

    def instances(self) -> list[dict]:
        """Every instance that has sent a heartbeat in the last day, most recent first."""
        cursor = self.connection().execute(
            "SELECT instance, roles, control, pid, started_at_ms, seen_at_ms FROM instances ORDER BY seen_at_ms DESC")
        keys = [c[0] for c in cursor.description]
        return [dict(zip(keys, row)) for row in cursor.fetchall()]

    def lease_holder(self, name: str) -> tuple[str, int] | None:
        """(holder, until_ms) of a named lease, or None if it was never taken."""
        return self.connection().execute("SELECT holder, until_ms FROM leases WHERE name = ?", (name,)).fetchone()

    # Profile runs (`rinha profile`); see rinha.store.base.Store.

    def add_profile_run(self, run: ProfileRun) -> int:
        conn = self.connection()
        if not begin_immediate(conn, _BUSY_TIMEOUT_MS / 1000):
            raise sqlite3.OperationalError("database is locked (another process held it too long)")
        try:
            if run.baseline:
                conn.execute(_UNMARK_BASELINE, (run.profile,))
            run_id = conn.execute(_ADD_PROFILE_RUN, (
                run.profile, run.started_at_ms, run.finished_at_ms, run.target, run.vus, int(run.baseline),
                run.summary_json, run.score_json, run.notes)).lastrowid
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return run_id

    def profile_run(self, run_id: int) -> ProfileRun | None:
        row = self.connection().execute(_PROFILE_RUNS + " WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _profile_run(row)

    def profile_runs(self, profile: str | None = None, limit: int | None = None) -> list[ProfileRun]:
        sql, params = _PROFILE_RUNS, []
        if profile is not None:
            sql += " WHERE profile = ?"
            params.append(profile)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_profile_run(row) for row in self.connection().execute(sql, params).fetchall()]

    def baseline_run(self, profile: str) -> ProfileRun | None:
        row = self.connection().execute(
            _PROFILE_RUNS + " WHERE profile = ? AND baseline = 1 ORDER BY id DESC LIMIT 1", (profile,)).fetchone()
        return None if row is None else _profile_run(row)

    def mark_baseline(self, run_id: int) -> bool:
        conn = self.connection()
        if not begin_immediate(conn, _BUSY_TIMEOUT_MS / 1000):
            raise sqlite3.OperationalError("database is locked (another process held it too long)")
        try:
            row = conn.execute("SELECT profile FROM profile_runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None:
                conn.execute(_UNMARK_BASELINE, (row[0],))
                conn.execute("UPDATE profile_runs SET baseline = 1 WHERE id = ?", (run_id,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return row is not None


def _accept(conn: sqlite3.Connection, correlation_id: str, cents: int, at_ms: int, owner: str | None, lease_until: int) -> str:
    if conn.execute(_INSERT, (correlation_id, cents, at_ms, owner, lease_until)).rowcount == 1:
        return "new"
    (stored,) = conn.execute(_AMOUNT_OF, (correlation_id,)).fetchone()
    return "same" if stored == cents else "conflict"


def _admit(conn: sqlite3.Connection, rows: list[tuple]) -> tuple[int, list[str]]:
    mark = conn.execute("SELECT until_ms FROM leases WHERE name = ?", (PURGED_MARK,)).fetchone()
    purged_at = mark[0] if mark else 0
    new, conflicts = 0, []
    for correlation_id, cents, at_ms in rows:
        if at_ms >= purged_at:
            outcome = _accept(conn, correlation_id, cents, at_ms, None, 0)
            if outcome == "new":
                new += 1
            elif outcome == "conflict":
                conflicts.append(correlation_id)
    return new, conflicts


def _paid(conn, correlation_id, processor, requested_at, requested_at_us, paid_at_ms, attempts) -> None:
    conn.execute(_PAID, (processor, requested_at, requested_at_us, paid_at_ms, attempts, correlation_id))


def _pin(conn, correlation_id, processor, ambiguous) -> None:
    conn.execute(_PIN, (processor, int(ambiguous), correlation_id))


def _transaction(conn: sqlite3.Connection, ops: list[Op], patience: float, waits: LockWaits | None = None) -> bool:
    """Apply ``ops`` in one write transaction; False (nothing applied) if another process held
    the write lock for longer than ``patience`` seconds. Raises (rolled back) if an op failed."""
    if not begin_immediate(conn, patience, waits):
        return False
    try:
        for op in ops:
            op.result = _APPLY[op.kind](conn, *op.args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return True


def _wal(conn: sqlite3.Connection, patience: float) -> None:
    """Put the file in WAL mode (a no-op once it is). Turning a new file to WAL needs it to
    itself, and SQLite refuses at once, without its busy handler, while another process reads
    it: several daemons starting on one new file (compose) failed so, ~1 in 100 starts."""
    give_up_at = time.monotonic() + patience
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not locked(exc) or time.monotonic() >= give_up_at:
                raise
            time.sleep(0.005)


def locked(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds a lock (worth another try)."""
    return "locked" in str(exc) or "busy" in str(exc)


def begin_immediate(conn: sqlite3.Connection, patience: float, waits: LockWaits | None = None) -> bool:
    """``BEGIN IMMEDIATE``, waiting up to ``patience`` seconds, in short naps, while another
    process holds the write lock; False if it still does. A wait is added to ``waits``.

    SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries: a commit of another
    instance (a tenth of a millisecond) cost the waiting one at least a whole millisecond, on
    ~1.5 % of the payments of an api instance beside a worker: the contest's p99. Measured under
    550 POST/s (split topology): commits waiting >= 1 ms per api instance 100 -> 40, p99 of the
    BEGIN 1.1 -> 0.27 ms."""
    give_up_at = first_refusal = None
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            if first_refusal is not None and waits is not None:
                waits.add(time.monotonic() - first_refusal)
            return True
        except sqlite3.OperationalError as exc:
            if conn.in_transaction or not locked(exc):
                raise
            now = time.monotonic()
            if give_up_at is None:
                first_refusal, give_up_at = now, now + patience
            if now >= give_up_at:
                if waits is not None:
                    waits.add(now - first_refusal)
                return False
            time.sleep(_BUSY_NAP)


def _rebind(conn, correlation_id, processor, owner) -> bool:
    return conn.execute(_REBIND, (processor, correlation_id, owner)).rowcount == 1


def _dead(conn, correlation_id, reason, at_ms) -> None:
    conn.execute(_DEAD, (reason, at_ms, correlation_id))


def _renew(conn, owner, lease_until_ms) -> None:
    conn.execute(_RENEW, (lease_until_ms, owner))


def _release(conn, owner) -> None:
    conn.execute(_RELEASE, (owner,))


def _claim(conn, owner, now_ms, lease_until_ms, limit) -> list[Claimed]:
    rows = conn.execute(_CLAIM, (owner, lease_until_ms, now_ms, limit)).fetchall()
    return [Claimed(cid, cents, pinned, bool(ambiguous), accepted) for cid, cents, pinned, ambiguous, accepted in rows]


def _purge(conn, at_ms: int = 0) -> None:
    conn.execute("DELETE FROM payments")
    conn.execute("DELETE FROM attempts")
    if at_ms:
        conn.execute("INSERT INTO leases (name, holder, until_ms) VALUES ('purged', '', ?) "
                     "ON CONFLICT (name) DO UPDATE SET until_ms = excluded.until_ms", (at_ms,))


def _lease(conn, name, holder, now_ms, until_ms) -> bool:
    conn.execute(_LEASE, (name, holder, until_ms, now_ms))
    row = conn.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
    return row is not None and row[0] == holder


def _health(conn, processor, failing, min_response_time, checked_at_ms) -> None:
    conn.execute(_HEALTH, (processor, int(failing), min_response_time, checked_at_ms))


def _attempt(conn, *row) -> None:
    conn.execute(_ATTEMPT, row)


_EVENT_OUTCOMES = "'requeued', 'found'"  # rows of the attempts table that are operator events, not attempts
_COUNT_STATE = {state: f"SELECT COUNT(*) FROM payments WHERE state = '{state}'" for state in ("pending", "paid", "dead")}
_REQUEUE_READ = "SELECT dead_reason FROM payments WHERE correlation_id = ? AND state = 'dead'"
_REQUEUE = (
    "UPDATE payments SET state = 'pending', owner = NULL, lease_until_ms = 0, dead_reason = NULL, paid_at_ms = NULL, "
    "first_accepted_at_ms = COALESCE(first_accepted_at_ms, accepted_at_ms), accepted_at_ms = ? "
    "WHERE correlation_id = ? AND state = 'dead'"
)
_SETTLE_DEAD = (
    "UPDATE payments SET state = 'paid', processor = ?, requested_at = ?, requested_at_us = ?, paid_at_ms = ?, "
    "dead_reason = NULL, owner = NULL WHERE correlation_id = ? AND state = 'dead'"
)
_PRUNE_ATTEMPTS = "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE at_ms < ? ORDER BY at_ms LIMIT ?)"
_HEARTBEAT = (
    "INSERT INTO instances (instance, roles, control, pid, started_at_ms, seen_at_ms) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (instance) DO UPDATE SET roles = excluded.roles, control = excluded.control, "
    "seen_at_ms = excluded.seen_at_ms"
)
_INSTANCE_FORGOTTEN_MS = 86_400_000
_PROFILE_RUN_COLUMNS = (
    "id, profile, started_at_ms, finished_at_ms, target, vus, baseline, summary_json, score_json, notes")
_PROFILE_RUNS = f"SELECT {_PROFILE_RUN_COLUMNS} FROM profile_runs"
_ADD_PROFILE_RUN = (
    "INSERT INTO profile_runs (profile, started_at_ms, finished_at_ms, target, vus, baseline, summary_json, "
    "score_json, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UNMARK_BASELINE = "UPDATE profile_runs SET baseline = 0 WHERE profile = ? AND baseline = 1"


def _profile_run(row: tuple) -> ProfileRun:
    run_id, profile, started, finished, target, vus, baseline, summary_json, score_json, notes = row
    return ProfileRun(run_id, profile, started, finished, target, vus, bool(baseline), summary_json, score_json, notes)


def _dead_filter(since_ms: int | None, reason: str | None) -> tuple[str, list]:
    where, params = ["state = 'dead'"], []
    if since_ms is not None:
        where.append("paid_at_ms >= ?")
        params.append(since_ms)
    if reason:
        where.append("instr(lower(dead_reason), lower(?)) > 0")
        params.append(reason)
    return " AND ".join(where), params


def _requeue(conn, correlation_ids, at_ms) -> list[str]:
    """Dead letters back to pending, unowned (claimed within a claim poll), their age counted from
    ``at_ms``; an attempts row ``requeued`` keeps the reason they died for in the history."""
    requeued = []
    for correlation_id in correlation_ids:
        row = conn.execute(_REQUEUE_READ, (correlation_id,)).fetchone()
        if row is None:
            continue
        conn.execute(_REQUEUE, (at_ms, correlation_id))
        conn.execute(_ATTEMPT, (correlation_id, "-", None, "requeued", None, None, at_ms, f"was dead: {row[0]}"))
        requeued.append(correlation_id)
    return requeued


def _settle_dead(conn, correlation_id, processor, requested_at, requested_at_us, at_ms) -> bool:
    row = conn.execute(_REQUEUE_READ, (correlation_id,)).fetchone()
    if row is None:
        return False
    conn.execute(_SETTLE_DEAD, (processor, requested_at, requested_at_us, at_ms, correlation_id))
    conn.execute(_ATTEMPT, (correlation_id, processor, requested_at, "found", None, None, at_ms,
                            f"was dead: {row[0]}; {processor} holds it: recorded paid, not replayed"))
    return True


def _prune_attempts(conn, before_ms, limit) -> int:
    return conn.execute(_PRUNE_ATTEMPTS, (before_ms, limit)).rowcount


def _heartbeat(conn, instance, roles, control, pid, started_at_ms, seen_at_ms) -> None:
    conn.execute(_HEARTBEAT, (instance, roles, control, pid, started_at_ms, seen_at_ms))
    conn.execute("DELETE FROM instances WHERE seen_at_ms < ?", (seen_at_ms - _INSTANCE_FORGOTTEN_MS,))


_APPLY = {
    ACCEPT: _accept,
    ADMIT: _admit,
    PAID: _paid,
    PIN: _pin,
    REBIND: _rebind,
    DEAD: _dead,
    RENEW: _renew,
    RELEASE: _release,
    CLAIM: _claim,
    PURGE: _purge,
    LEASE: _lease,
    HEALTH: _health,
    ATTEMPT: _attempt,
    REQUEUE: _requeue,
    SETTLE_DEAD: _settle_dead,
    PRUNE_ATTEMPTS: _prune_attempts,
    HEARTBEAT: _heartbeat,
}
