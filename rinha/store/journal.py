"""The intake journal: where an intake-only instance records the payments it accepts, in an
append-only file of its own, before a thread of the instance moves them into the shared store.

Why a file of its own. Every process sharing a SQLite database waits for one write lock. An
intake instance's commit took it about 1 accept in 9 while another process held it (the other
intake instance, or the payer's claims and paid records), and when that holder was off a CPU,
the accept waited milliseconds: at twice the contest's load, most of the accepts over 5 ms
(``benchmarks/README.md``). A journal is written by its instance alone: an accept never waits
for another process.

Why a plain file and not a SQLite database (as it was until the twelfth session). An accept
committed to a SQLite journal (a row in a table with a unique index, its own WAL: ~7 ``pwrite``
and 8 ``fcntl``) took 26-29 µs of the event loop on a quiet machine; a line appended with one
``write``, after the store's read that finds duplicates, takes ~11 µs. At the contest's load the
api instances used 3-10 % less CPU for the same work; their latencies moved less than the host's
noise (``benchmarks/README.md``, twelfth session).

What holds:

* An accept is durable when it is answered: its line was written with one ``write`` (the file
  is opened ``O_APPEND``). Like the store's WAL at ``synchronous = NORMAL``, that outlives the
  process (``kill -9``), not necessarily the machine: nothing is fsynced.
* A line is ``<correlationId> <cents> <acceptedAtMs> <crc32>``, after a header line that names
  the format. A last line without its newline was torn by a crash before it was answered: it is
  ignored (so is a torn header: nothing was accepted before it was whole). A complete line
  whose checksum fails is logged and skipped; a dead instance's journal with such lines is
  kept, renamed ``.unreadable``, once its good lines are in the store.
* The lines reach the store in order, a few milliseconds later, with ``INSERT ... ON CONFLICT
  DO NOTHING`` in one transaction per batch. The file is emptied (back to its header) only once
  every line in it is in the store and it has grown past :data:`ROTATE_BYTES`; a crash between a
  batch's commit and that moves the batch again, which changes nothing.
* A correlation id the journal or the store already holds is answered from there (same amount:
  already accepted; another: conflict). The journal's lines not yet in the store are also kept
  in memory (id → cents, ~150 bytes each) until their batch committed: an accept reads that,
  then the store. Two instances accepting the same id within the same few milliseconds both
  answer 202; the second to reach the store finds the first there: the same amount is the same
  payment; another amount is logged and counted (``conflicts``), not paid.
* A payment accepted before the latest purge (``POST /purge-payments`` on any instance) is
  dropped when it reaches the store, as the dispatchers drop it.
* Each journal is held with ``flock`` by its instance for its lifetime. The journal of an
  instance that died (its lock free) is moved by whichever instance sweeps first; then its
  files are removed. Journals in the SQLite format of earlier versions (``*.journal``) are
  swept too.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import sqlite3
import threading
import zlib

from rinha.store.sqlite import locked

log = logging.getLogger(__name__)

#: The first line of every journal file: the format and its version.
HEADER = b"rinha intake journal 1\n"
_SUFFIX = ".log"
#: Rows moved per store transaction: a transaction on the shared store holds every instance's
#: write lock, so a backlog (a journal swept after a crash) moves in bounded bites.
MOVE_LIMIT = 256
#: A journal is emptied once everything in it is in the store and it is at least this long.
ROTATE_BYTES = 1 << 20
#: Bytes read from a journal at a time (a line is under 100).
_READ_BYTES = 1 << 16
_AMOUNT_IN_STORE = "SELECT amount_cents FROM payments WHERE correlation_id = ?"

#: Journals of earlier versions: SQLite files, a table ``accepts`` (seq, correlation_id,
#: amount_cents, accepted_at_ms). Only swept.
_LEGACY_SUFFIX = ".journal"
_LEGACY_BATCH = ("SELECT seq, correlation_id, amount_cents, accepted_at_ms FROM accepts WHERE seq > ? "
                 "ORDER BY seq LIMIT ?")


def journal_dir(db: str) -> str:
    """The folder of the journals of the instances sharing store file ``db``."""
    return db + ".intake"


def _file_name(instance: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", instance) + _SUFFIX


def encode(correlation_id: str, amount_cents: int, accepted_at_ms: int) -> bytes:
    """One journal line, newline included."""
    body = b"%s %d %d" % (correlation_id.encode(), amount_cents, accepted_at_ms)
    return body + b" %08x\n" % zlib.crc32(body)


def decode(line: bytes) -> tuple[str, int, int] | None:
    """``(correlation_id, amount_cents, accepted_at_ms)`` from a line (without its newline), or
    None if :func:`encode` did not write it so."""
    body, _, crc = line.rpartition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(body):
            return None
        correlation_id, cents, at_ms = body.split(b" ")
        return correlation_id.decode("ascii"), int(cents), int(at_ms)
    except ValueError:  # a field missing, not a number, not ASCII
        return None


def _records(data: bytes, offset: int, limit: int, path: str) -> tuple[list[tuple[str, int, int]], int, int]:
    """The records of the first ``limit`` complete lines of ``data`` (read at ``offset``), how many
    lines that was, and the bytes they take. A line that fails to decode is logged and skipped."""
    lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1][:limit]
    records = []
    at = offset
    for line in lines:
        record = decode(line)
        if record is None:
            log.error("intake journal %s: the line at byte %d is damaged (%r); skipped", path, at, line[:120])
        else:
            records.append(record)
        at += len(line) + 1
    return records, len(lines), at - offset


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
    """One instance's journal. :meth:`accept` runs on the event loop; :meth:`move` and
    :meth:`rotate` on one other thread (the mover). They share the file, the lines not yet moved
    (a dict), and a lock that only :meth:`rotate` ever waits for."""

    def __init__(self, db: str, instance: str, rotate_bytes: int = ROTATE_BYTES):
        folder = journal_dir(db)
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, _file_name(instance))
        self.rotate_bytes = rotate_bytes
        self._lock_fd = _hold(self.path + ".lock")
        if self._lock_fd is None:
            raise RuntimeError(f"intake journal {self.path} is held by another process")
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
            os.write(self._fd, HEADER)
        except BaseException:
            os.close(self._lock_fd)
            raise
        #: Reads of the store (duplicates); on the event loop only.
        self._store = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=1.0)
        #: Lines written and not yet in the store: correlation id → cents (each id is written once).
        self._unmoved: dict[str, int] = {}
        #: Held by a write, and by the truncation of :meth:`rotate`.
        self._writing = threading.Lock()
        #: The file's length as written (under ``_writing``), and how much of it is in the store.
        self._size = self._moved_at = len(HEADER)

    def accept(self, correlation_id: str, amount_cents: int, accepted_at_ms: int) -> str:
        """Record a payment: "new"; or "same" / "conflict" if the journal or the store holds that
        correlation id already (same amount or not). Raises ``OSError`` (the file) or
        ``sqlite3.Error`` (the store's read); nothing was recorded then."""
        known = self._unmoved.get(correlation_id)
        if known is None:
            row = self._store.execute(_AMOUNT_IN_STORE, (correlation_id,)).fetchone()
            if row is None:
                self._append(correlation_id, amount_cents, accepted_at_ms)
                return "new"
            known = row[0]
        return "same" if known == amount_cents else "conflict"

    def _append(self, correlation_id: str, amount_cents: int, accepted_at_ms: int) -> None:
        line = encode(correlation_id, amount_cents, accepted_at_ms)
        # Known before its line exists: the mover forgets it only after moving that line.
        self._unmoved[correlation_id] = amount_cents
        with self._writing:
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    # A full disk: take the torn line back, or the next line would run into it.
                    os.ftruncate(self._fd, self._size)
                    raise OSError(errno.ENOSPC, f"{self.path}: short write ({written} of {len(line)} bytes)")
            except BaseException:
                del self._unmoved[correlation_id]
                raise
            self._size += written

    def pending(self) -> int:
        """Payments accepted and not yet in the store."""
        return len(self._unmoved)

    def move(self, admit) -> int:
        """On the mover's thread: hand the next lines (at most ``MOVE_LIMIT``) to ``admit`` (one
        store transaction; it returns how many were new to the store and the correlation ids the
        store held with another amount) and return how many lines were moved."""
        data = os.pread(self._fd, _READ_BYTES, self._moved_at)
        records, lines, length = _records(data, self._moved_at, MOVE_LIMIT, self.path)
        if not lines:
            return 0
        if records:
            _log_conflicts(admit(records)[1], self.path)
        unmoved = self._unmoved
        for correlation_id, _cents, _at in records:
            unmoved.pop(correlation_id, None)
        self._moved_at += length
        return lines

    def rotate(self) -> None:
        """On the mover's thread: empty the file (back to its header) once everything in it is
        in the store and it has grown past ``rotate_bytes``. Accepts wait for the truncation."""
        if self._moved_at < self.rotate_bytes:
            return
        with self._writing:
            if self._moved_at != self._size:
                return  # lines written since the last move: next time
            os.ftruncate(self._fd, len(HEADER))
            self._size = self._moved_at = len(HEADER)

    def size(self) -> int:
        """The file's length in bytes."""
        return self._size

    def close(self) -> None:
        """Close the file; remove it if every line was moved (else the next sweep moves them)."""
        self._store.close()
        with self._writing:
            empty = self._moved_at == self._size
            os.close(self._fd)
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
        if name.endswith(_SUFFIX):
            move_all = _move_all
        elif name.endswith(_LEGACY_SUFFIX):
            move_all = _move_all_legacy
        else:
            continue
        if path == own:
            continue
        fd = _hold(path + ".lock")
        if fd is None:
            continue  # its instance is alive
        try:
            if not os.path.exists(path):
                continue  # another sweeper moved and removed it meanwhile
            try:
                count = move_all(path, admit)
            except _Unreadable as exc:
                log.error("intake journal %s cannot be read (%s); renamed to %s.unreadable", path, exc, path)
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
    """A journal whose payments could not all be read; the message says which were moved."""


def _move_all(path: str, admit) -> int:
    """Every line of a dead instance's journal into the store; how many were new to it (lines it
    had moved before dying are there already)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        header = os.pread(fd, len(HEADER), 0)
        if header != HEADER:
            if HEADER.startswith(header):
                return 0  # its instance died writing the header: before any accept
            raise _Unreadable(f"no journal header ({header[:40]!r}); nothing was moved, the file is as it was")
        offset = len(HEADER)
        new = damaged = 0
        while True:
            data = os.pread(fd, _READ_BYTES, offset)
            records, lines, length = _records(data, offset, MOVE_LIMIT, path)
            if not lines:
                if len(data) == _READ_BYTES:
                    raise _Unreadable(f"no line end in the {_READ_BYTES} bytes at {offset}; the lines before were moved")
                if data:
                    log.warning("intake journal %s ends in a torn line (its instance died writing it, before "
                                "answering): ignored", path)
                break
            if records:
                added, conflicts = admit(records)
                _log_conflicts(conflicts, path)
                new += added
            damaged += lines - len(records)
            offset += length
        if damaged:
            raise _Unreadable(f"{damaged} damaged lines, logged; every other line was moved")
        return new
    finally:
        os.close(fd)


def _move_all_legacy(path: str, admit) -> int:
    """Every row of a SQLite journal (earlier versions) into the store; how many were new to it."""
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    try:
        seq = new = 0
        while rows := _read_legacy(conn, seq):
            added, conflicts = admit([row[1:] for row in rows])
            _log_conflicts(conflicts, path)
            seq = rows[-1][0]
            new += added
        return new
    finally:
        conn.close()


def _read_legacy(conn: sqlite3.Connection, seq: int) -> list[tuple]:
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'accepts'").fetchone() is None:
            return []  # created, and its instance died before it made the table
        return conn.execute(_LEGACY_BATCH, (seq, MOVE_LIMIT)).fetchall()
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and locked(exc):
            raise  # its instance's last transaction, or another sweeper: the next sweep
        raise _Unreadable(f"{exc}; the rows not moved are still in it: open it with sqlite3, table accepts") from exc
