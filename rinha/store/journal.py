"""The intake journal: where an intake-only instance commits the payments it accepts, in a SQLite
file of its own, before a thread of the instance moves them into the shared store.

Why a file of its own. Every process sharing a SQLite database waits for one write lock. An
intake instance's commit took it about 1 accept in 9 while another process held it (the other
intake instance, or the payer's claims and paid records), and when that holder was off a CPU,
the accept waited milliseconds: at twice the contest's load, most of the accepts over 5 ms
(``benchmarks/README.md``). A journal is written by its instance alone: an accept never waits
for another process.

What holds:

* An accept is durable when it is answered: committed to the journal (WAL, as the store).
* The journal's rows reach the store in order, a few milliseconds later, with ``INSERT ... ON
  CONFLICT DO NOTHING`` in one transaction per batch; rows are deleted from the journal only
  after that transaction committed, so a crash between the two moves them again, which changes
  nothing.
* A correlation id the store already holds is answered from the store (same amount: already
  accepted; another: conflict). Two instances accepting the same id within the same few
  milliseconds both answer 202; the second to reach the store finds the first there: the same
  amount is the same payment; another amount is logged and counted (``conflicts``), not paid.
* A payment accepted before the latest purge (``POST /purge-payments`` on any instance) is
  dropped when it reaches the store, as the dispatchers drop it.
* Each journal is held with ``flock`` by its instance for its lifetime. The journal of an
  instance that died (its lock free) is moved by whichever instance sweeps first; then its
  files are removed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3

from rinha.store.sqlite import begin_immediate, locked

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS accepts ("
    " seq INTEGER PRIMARY KEY, correlation_id TEXT NOT NULL UNIQUE,"
    " amount_cents INTEGER NOT NULL, accepted_at_ms INTEGER NOT NULL)"
)
_INSERT = (
    "INSERT INTO accepts (correlation_id, amount_cents, accepted_at_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (correlation_id) DO NOTHING"
)
#: The common case in one statement, its own transaction: a correlation id neither in the journal
#: nor in the store (attached as ``store``) is inserted. One call instead of four (BEGIN, INSERT,
#: the store's read, COMMIT): less CPU per payment for an intake-only instance in 7 of 8 pairs,
#: ~5 % on average (benchmarks/README.md, tenth session).
_INSERT_NEW = (
    "INSERT INTO accepts (correlation_id, amount_cents, accepted_at_ms) "
    "SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM store.payments WHERE correlation_id = ?1) "
    "ON CONFLICT (correlation_id) DO NOTHING"
)
_AMOUNT_IN_JOURNAL = "SELECT amount_cents FROM accepts WHERE correlation_id = ?"
_AMOUNT_IN_STORE = "SELECT amount_cents FROM payments WHERE correlation_id = ?"
_BATCH = "SELECT seq, correlation_id, amount_cents, accepted_at_ms FROM accepts WHERE seq > ? ORDER BY seq LIMIT ?"
#: The newest moved row stays: seq is the rowid, and an empty table would hand out 1 again.
_FORGET = "DELETE FROM accepts WHERE seq < ?"
#: Rows moved per store transaction: a transaction on the shared store holds every instance's
#: write lock, so a backlog (a journal swept after a crash) moves in bounded bites.
MOVE_LIMIT = 256
_SUFFIX = ".journal"
#: Seconds an accept waits for the journal's lock before it fails (503): only the mover takes it.
_PATIENCE = 5.0


def journal_dir(db: str) -> str:
    """The folder of the journals of the instances sharing store file ``db``."""
    return db + ".intake"


def _file_name(instance: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", instance) + _SUFFIX


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _loop_connection(path: str) -> sqlite3.Connection:
    """A journal connection the event loop commits on: it never checkpoints (the mover does, off
    the loop) and never sleeps in SQLite's busy handler (accept waits in begin_immediate's naps,
    or takes the slow path)."""
    conn = _connect(path)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("PRAGMA busy_timeout = 0")
    return conn


def _hold(lock_path: str) -> int | None:
    """An exclusive ``flock`` on ``lock_path`` (created if need be), or None if a live process holds it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove(path: str) -> None:
    for name in (path + "-wal", path + "-shm", path, path + ".lock"):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


class IntakeJournal:
    """One instance's journal. :meth:`accept` runs on the event loop; :meth:`move` on one other
    thread (the mover); they share nothing but the file and two integers."""

    def __init__(self, db: str, instance: str):
        folder = journal_dir(db)
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, _file_name(instance))
        self._lock_fd = _hold(self.path + ".lock")
        if self._lock_fd is None:
            raise RuntimeError(f"intake journal {self.path} is held by another process")
        self._loop = _loop_connection(self.path)
        self._loop.execute(_SCHEMA)
        #: _INSERT_NEW's own connection, with the store attached. Its own because a BEGIN
        #: IMMEDIATE on a connection starts a write transaction on every database attached to it:
        #: the slow path's, on this one, would take the store's write lock, which the journal
        #: exists to avoid (tests/test_intake_journal.py posts repeats while the store is locked).
        self._fast = _loop_connection(self.path)
        self._fast.execute("ATTACH DATABASE ? AS store", (db,))
        #: The slow path's reads of the store, inside the journal's transaction.
        self._store = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=1.0)
        self._mover = _connect(self.path)
        #: The newest row the loop committed, and the newest the mover moved (its seq).
        self.accepted_seq = 0
        self.moved_seq = 0
        self._forgotten_seq = 0

    def accept(self, correlation_id: str, amount_cents: int, accepted_at_ms: int) -> str:
        """Commit a payment to the journal: "new"; or "same" / "conflict" if the journal or the
        store holds that correlation id already (same amount or not). Raises sqlite3 errors."""
        try:
            cursor = self._fast.execute(_INSERT_NEW, (correlation_id, amount_cents, accepted_at_ms))
        except sqlite3.OperationalError as exc:
            if not locked(exc):
                raise
        else:
            if cursor.rowcount == 1:
                self.accepted_seq = cursor.lastrowid
                return "new"
        # Known already, or the journal's lock taken: again in a transaction that says which.
        conn = self._loop
        # The mover takes the journal's lock only to forget moved rows, for a fraction of a
        # millisecond: wait for it in short naps (SQLite's own handler sleeps 1 ms at least).
        if not begin_immediate(conn, _PATIENCE):
            raise sqlite3.OperationalError(f"intake journal {self.path} locked for over {_PATIENCE:g} s")
        try:
            cursor = conn.execute(_INSERT, (correlation_id, amount_cents, accepted_at_ms))
            if cursor.rowcount == 1:
                # Not in the journal: moved already (and forgotten, which the mover does only
                # once the store committed it) or never seen. The journal's lock keeps the
                # answer true until this transaction ends.
                stored = self._store.execute(_AMOUNT_IN_STORE, (correlation_id,)).fetchone()
                if stored is None:
                    seq = cursor.lastrowid
                    conn.execute("COMMIT")
                    self.accepted_seq = seq
                    return "new"
            else:
                stored = conn.execute(_AMOUNT_IN_JOURNAL, (correlation_id,)).fetchone()
            conn.execute("ROLLBACK")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return "same" if stored[0] == amount_cents else "conflict"

    def pending(self) -> int:
        """Rows accepted and not yet moved."""
        return self.accepted_seq - self.moved_seq

    def move(self, admit) -> int:
        """On the mover's thread: hand the rows not yet moved to ``admit`` (one store transaction
        per call, at most ``MOVE_LIMIT`` rows; it returns how many were new to the store and the
        correlation ids the store held with another amount) and return how many were moved."""
        rows = self._mover.execute(_BATCH, (self.moved_seq, MOVE_LIMIT)).fetchall()
        if not rows:
            return 0
        _log_conflicts(admit(rows)[1], self.path)
        self.moved_seq = rows[-1][0]
        return len(rows)

    def forget_moved(self) -> None:
        """On the mover's thread: delete the moved rows from the journal and checkpoint it."""
        if self.moved_seq == self._forgotten_seq:
            return
        conn = self._mover
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_FORGET, (self.moved_seq,))
        conn.execute("COMMIT")
        self._forgotten_seq = self.moved_seq
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def close(self) -> None:
        """Close the files; remove them if every row was moved (else the next sweep moves them)."""
        empty = self._mover.execute("SELECT 1 FROM accepts WHERE seq > ? LIMIT 1", (self.moved_seq,)).fetchone() is None
        for conn in (self._fast, self._loop, self._mover, self._store):
            conn.close()
        if empty:
            _remove(self.path)
        os.close(self._lock_fd)


def _log_conflicts(conflicts: list[str], path: str) -> None:
    for correlation_id in conflicts:
        log.error("payment %s was accepted by two instances with different amounts at once; the store keeps "
                  "the first and the second is not paid (journal %s)", correlation_id, path)


def sweep(db: str, admit, own: str | None = None) -> int:
    """Move the journals of dead instances (their lock free) into the store, then remove them;
    returns how many payments were new to the store. ``own``: the caller's journal path, skipped."""
    folder = journal_dir(db)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return 0
    moved = 0
    for name in names:
        path = os.path.join(folder, name)
        if not name.endswith(_SUFFIX) or path == own:
            continue
        fd = _hold(path + ".lock")
        if fd is None:
            continue  # its instance is alive
        try:
            if not os.path.exists(path):
                continue  # another sweeper moved and removed it meanwhile
            try:
                count = _move_all(path, admit)
            except _Unreadable as exc:
                log.error("intake journal %s cannot be read (%s); renamed to %s.unreadable, its payments were not "
                          "moved: inspect it with sqlite3", path, exc, path)
                for part in ("", "-wal", "-shm"):
                    if os.path.exists(path + part):
                        os.replace(path + part, path + ".unreadable" + part)
                continue
            if count:
                log.warning("moved %d payments into the store from the intake journal of a stopped instance (%s)",
                            count, path)
            _remove(path)
            moved += count
        finally:
            os.close(fd)
    return moved


class _Unreadable(Exception):
    """A journal file that SQLite cannot read (not a database, corrupt)."""


def _read(conn: sqlite3.Connection, seq: int) -> list[tuple]:
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'accepts'").fetchone() is None:
            return []  # created, and its instance died before it made the table
        return conn.execute(_BATCH, (seq, MOVE_LIMIT)).fetchall()
    except sqlite3.OperationalError as exc:
        if locked(exc):
            raise
        raise _Unreadable(str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise _Unreadable(str(exc)) from exc


def _move_all(path: str, admit) -> int:
    """Every row of a dead instance's journal into the store; how many were new to it (the
    newest row its instance had moved is still there, and any it moved before dying unforgotten)."""
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    try:
        seq = new = 0
        while rows := _read(conn, seq):
            added, conflicts = admit(rows)
            _log_conflicts(conflicts, path)
            seq = rows[-1][0]
            new += added
        return new
    finally:
        conn.close()
