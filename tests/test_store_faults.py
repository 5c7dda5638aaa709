"""Store faults, inflicted for real from outside a running daemon: the database locked by another
process, made read-only, or on a full disk.

While the fault lasts, ``POST /payments`` answers 503 with ``Retry-After`` and stores nothing;
never a 2xx for a payment that was not committed. When the fault clears, the same process
recovers by itself (its store writer retries; no restart), and every payment it answered 2xx is
in the store and paid exactly once. Payments in flight when the fault strikes are paid by the
processor meanwhile; recording them waits for the store (the writer keeps retrying those writes)
and is checked afterwards. No mocks: each fault is what the operating system does to the
daemon's own file descriptors.

How each fault is made (all were tried on this machine, as root, and in the reasoning below for a
CI container):

* **locked**: this test process holds a ``BEGIN IMMEDIATE`` write transaction on the database
  for longer than the daemon's busy timeout (5 s). Works anywhere.
* **disk full (fsize)**: ``prlimit(RLIMIT_FSIZE)`` of the running daemon lowered to 1 byte, so
  every write the kernel gets from it at an offset past the limit fails with ``EFBIG`` (Python
  ignores ``SIGXFSZ``); SQLite reports ``SQLITE_IOERR_WRITE`` where a full disk gives
  ``SQLITE_FULL``: the same refusal to write, a different errno. Unprivileged: works anywhere.
  (The daemon's own log lines are refused too while it lasts, as on a full disk.)
* **disk full (tmpfs)**: the real ``ENOSPC``: the database on a small tmpfs that a filler file
  then fills. Needs ``mount`` (CAP_SYS_ADMIN): skipped, with the reason, where it is refused
  (a default Docker container).
* **read-only**: ``chattr +i`` on the database file and its WAL: the kernel refuses writes even
  through descriptors already open (``EPERM``). Needs CAP_LINUX_IMMUTABLE and a file system with
  the flag (ext4, xfs, tmpfs on recent kernels); skipped, with the reason, where refused (a
  default Docker container does not grant that capability). Not ``-shm``: it is mmap'd, and a
  store to an immutable mapping is a SIGBUS, not an error SQLite could report.

  What does *not* work, for the record: running the daemon as an unprivileged user and
  ``chmod``-ing its files or directory. Permissions are checked at ``open()``; the daemon keeps
  its connections (and their descriptors) open, so a running daemon never notices; only a new
  connection opens read-only. (As root, ``chmod`` does not even bind the daemon itself.) A
  remount read-only is refused (EBUSY) while files are open for writing.
"""

from __future__ import annotations

import concurrent.futures
import os
import resource
import sqlite3
import subprocess
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.support.cli import control_get, metric, wait_for_control
from tests.support.scenario import settle
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

STORE_DOWN = {"error": "payment store unavailable; retry later"}


class Recorder:
    """Posts new payments, one client per thread, and files every id by its answer."""

    def __init__(self, url: str):
        self.url = url + "/payments"
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.answers: list[httpx.Response] = []

    def post(self) -> httpx.Response:
        cid = str(uuid.uuid4())
        # long enough for a batch that waits out the busy timeout twice (queued behind another)
        reply = httpx.post(self.url, content='{"correlationId":"%s","amount":4.20}' % cid,
                           headers={"Content-Type": "application/json"}, timeout=30)
        self.answers.append(reply)
        if reply.status_code in (200, 202):
            self.accepted.append(cid)
        elif reply.status_code == 503:
            self.refused.append(cid)
        else:
            raise AssertionError(f"unexpected answer {reply.status_code}: {reply.text}")
        return reply

    def post_many(self, count: int) -> list[httpx.Response]:
        """``count`` payments at once, from as many connections."""
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: self.post(), range(count)))


def assert_refused(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.headers["Retry-After"] == "1"
    assert reply.json() == STORE_DOWN  # the store's own error (a path, errno text) is not shown


def stored_ids(db: str) -> set[str]:
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        return {cid for (cid,) in conn.execute("SELECT correlation_id FROM payments")}


def verdict(daemon, processors, recorder: Recorder) -> None:
    """Every 2xx is stored and paid once; nothing refused was stored or paid."""
    stored = stored_ids(daemon.db)
    assert [cid for cid in recorder.accepted if cid not in stored] == [], "answered 2xx but not stored"
    assert [cid for cid in recorder.refused if cid in stored] == [], "answered 503 but stored"
    settle(daemon, processors, recorder.accepted)
    held = [cid for cid in recorder.refused for name in ("default", "fallback") if processors.payment(name, cid)]
    assert held == [], "a refused payment was paid"


def in_flight_when_struck(daemon, processors, recorder: Recorder, delay: int = 300) -> None:
    """Three payments accepted and in flight at the processor (held ``delay`` ms) when the fault strikes."""
    processors.set("default", delay=delay)
    for _ in range(3):
        assert recorder.post().status_code == 202
    wait_until(lambda: processors.in_flight("default") == 3, timeout=10, what="3 attempts in flight")


def paid_meanwhile(processors, recorder: Recorder) -> None:
    """The processor answered every accepted payment during the fault (the 3 in flight, and any
    accepted as the fault began): recording them paid waits for the store (the writer keeps those
    writes and retries them), and ``verdict`` checks they were recorded."""
    wait_until(lambda: processors.in_flight("default") == 0
               and processors.summary("default")["totalRequests"] == len(recorder.accepted),
               timeout=10, what=f"the {len(recorder.accepted)} accepted payments answered")


def exercise(daemon, processors, inject, clear) -> Recorder:
    """Payments before, during and after a fault that ``inject()`` makes and ``clear()`` removes."""
    recorder = Recorder(daemon.url)
    in_flight_when_struck(daemon, processors, recorder)
    inject()
    try:
        # The first writes may still fit: space the WAL file already has (a checkpoint rewinds it).
        first = wait_until(lambda: (reply := recorder.post()).status_code == 503 and reply, timeout=20,
                           what="a payment refused while the fault lasts")
        assert_refused(first)
        for reply in recorder.post_many(4):  # the fault lasts: each one refused, from any connection
            assert_refused(reply)
        paid_meanwhile(processors, recorder)
        assert httpx.get(daemon.url + "/payments-summary", timeout=10).status_code == 200  # reads still answer
        assert daemon.service.proc.poll() is None, "the daemon died of the fault"
    finally:
        clear()
    processors.set("default", delay=0)
    # Recovers by itself: the same process, no restart, the next payment is taken.
    wait_until(lambda: recorder.post().status_code == 202, timeout=20, what="a payment accepted after the fault")
    for reply in recorder.post_many(4):
        assert reply.status_code == 202
    assert daemon.service.proc.poll() is None
    verdict(daemon, processors, recorder)
    return recorder


def test_database_locked_by_another_process_answers_503_then_recovers(daemon_factory, processors):
    daemon = daemon_factory()
    recorder = Recorder(daemon.url)
    in_flight_when_struck(daemon, processors, recorder, delay=1000)
    with closing(sqlite3.connect(daemon.db, isolation_level=None, timeout=30)) as locker:
        locker.execute("BEGIN IMMEDIATE")  # the write lock, held past the daemon's 5 s busy timeout
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            pending = [pool.submit(recorder.post) for _ in range(6)]
            answers = [future.result() for future in pending]  # the lock is still held: all are refused
        for reply in answers:
            assert_refused(reply)
        paid_meanwhile(processors, recorder)
        with closing(sqlite3.connect(daemon.db, timeout=10)) as reader:  # not recorded yet: the store is locked
            assert reader.execute("SELECT COUNT(*) FROM payments WHERE state = 'paid'").fetchone()[0] == 0
        assert httpx.get(daemon.url + "/payments-summary", timeout=10).status_code == 200  # readers never wait
        assert daemon.service.proc.poll() is None
        locker.execute("ROLLBACK")
    processors.set("default", delay=0)
    wait_until(lambda: recorder.post().status_code == 202, timeout=20, what="a payment accepted after the lock")
    for reply in recorder.post_many(4):
        assert reply.status_code == 202
    assert len(recorder.refused) == 6
    assert "store write failed" in daemon.service.log_text()
    wait_until(lambda: "store writes recovered" in daemon.service.log_text(), timeout=10, what="recovery logged")
    verdict(daemon, processors, recorder)


def test_disk_full_as_a_file_size_limit_answers_503_then_recovers(daemon_factory, processors):
    daemon = daemon_factory()
    pid = daemon.service.pid
    limits = resource.prlimit(pid, resource.RLIMIT_FSIZE)

    recorder = exercise(daemon, processors,
                        inject=lambda: resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, limits[1])),
                        clear=lambda: resource.prlimit(pid, resource.RLIMIT_FSIZE, limits))
    assert len(recorder.refused) >= 5


@pytest.fixture
def small_tmpfs():
    """A 16 MiB tmpfs of its own, or a skip saying why it cannot be mounted here."""
    mountpoint = tempfile.mkdtemp(prefix="rinha-full-")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", mountpoint],
                            capture_output=True, text=True)
    if result.returncode != 0:
        os.rmdir(mountpoint)
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {result.stderr.strip()}")
    yield Path(mountpoint)
    if subprocess.run(["umount", mountpoint], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    os.rmdir(mountpoint)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system says ENOSPC."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\0" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != 28:
                    raise
                if len(block) == 1:
                    return
                block = block[: len(block) // 16]
    finally:
        os.close(fd)


def test_disk_full_on_a_real_file_system_answers_503_then_recovers(daemon_factory, processors, small_tmpfs):
    daemon = daemon_factory(db_path=str(small_tmpfs / "rinha.db"))
    filler = small_tmpfs / "filler"
    try:
        recorder = exercise(daemon, processors, inject=lambda: fill(filler), clear=filler.unlink)
        assert len(recorder.refused) >= 5
        assert "store write failed, retrying: database or disk is full" in daemon.service.log_text()
    finally:
        daemon.service.stop()  # before the tmpfs is unmounted
        filler.unlink(missing_ok=True)


def chattr(flag: str, *paths: str) -> subprocess.CompletedProcess:
    return subprocess.run(["chattr", flag, *paths], capture_output=True, text=True)


def test_read_only_database_answers_503_then_recovers(daemon_factory, processors, tmp_path):
    probe = tmp_path / "chattr-probe"
    probe.touch()
    try:
        refused = chattr("+i", str(probe))
    except FileNotFoundError:
        pytest.skip("chattr is not installed (e2fsprogs)")
    chattr("-i", str(probe))
    if refused.returncode != 0:
        pytest.skip(f"cannot make a file immutable here (needs CAP_LINUX_IMMUTABLE and a file system "
                    f"with the flag): {refused.stderr.strip()}")
    daemon = daemon_factory()
    files = [daemon.db, daemon.db + "-wal"]

    def inject() -> None:
        result = chattr("+i", *files)
        assert result.returncode == 0, result.stderr

    try:
        recorder = exercise(daemon, processors, inject=inject, clear=lambda: chattr("-i", *files))
    finally:
        chattr("-i", *files)  # never leave an undeletable file behind
    assert len(recorder.refused) >= 5
    assert "store write failed" in daemon.service.log_text()


def test_a_payment_rerouted_while_the_store_is_locked_waits_for_it_instead_of_crashing(daemon_factory, processors):
    """The dispatcher binds a payment to its new processor in the store before sending it there;
    while the store refuses that write, the payment waits (neither sent nor lost) and the daemon
    keeps running. (It used to die of the unhandled StoreUnavailable.)"""
    daemon = daemon_factory("--roles", "api,dispatch", "--policy", "deadline", "--deadline", "1", "--no-control")
    processors.set("default", failure=True)
    recorder = Recorder(daemon.url)
    for _ in range(5):
        assert recorder.post().status_code == 202
    wait_until(lambda: "processor default failing" in daemon.service.log_text(), timeout=15, what="default's breaker open")
    with closing(sqlite3.connect(daemon.db, isolation_level=None, timeout=30)) as locker:
        locker.execute("BEGIN IMMEDIATE")
        # Past the 1 s deadline the policy moves the five to the fallback: the binding write is
        # queued within a second, so it has failed once two batches in a row have failed after it.
        for _ in range(2):
            assert_refused(recorder.post())
        assert daemon.service.proc.poll() is None, daemon.service.log_text()
        assert processors.summary("fallback")["totalRequests"] == 0  # not bound, not sent
        locker.execute("ROLLBACK")
    wait_until(lambda: recorder.post().status_code == 202, timeout=20, what="a payment accepted after the lock")
    paid = settle(daemon, processors, recorder.accepted)
    assert len(paid["fallback"]) == len(recorder.accepted) == 6
    assert daemon.service.proc.poll() is None and "Traceback" not in daemon.service.log_text()


def test_the_event_loop_counts_its_waits_for_the_write_lock_another_process_holds(daemon_factory, processors):
    """`/metrics` tells how often, and how long, the event loop's commits found the shared store's
    write lock held by another process: time in which the instance answered nobody. (An instance
    with a dispatcher commits its accepts to the store; an intake-only one to its journal, which
    no other process locks: tests/test_intake_journal.py.)"""
    daemon = daemon_factory("--roles", "api,dispatch")
    wait_for_control(daemon.db)

    def read(*names: str) -> tuple[float, ...]:
        text = control_get(daemon.db, "/metrics").text
        return tuple(metric(text, name) for name in names)

    def waits() -> tuple[float, ...]:
        return read("rinha_store_lock_waits_total", "rinha_store_lock_wait_seconds_total")

    def deferred() -> tuple[float, ...]:
        """The writes that went to the writer thread: how many, and how long they waited in all."""
        return read("rinha_store_deferred_write_seconds_count", "rinha_store_deferred_write_seconds_sum")

    recorder = Recorder(daemon.url)
    assert recorder.post().status_code == 202
    assert waits() == (0, 0)  # a free lock is no wait
    before, waited_before = deferred()  # bulk writes (housekeeping) always go to the thread
    with closing(sqlite3.connect(daemon.db, isolation_level=None, timeout=30)) as locker:
        locker.execute("BEGIN IMMEDIATE")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            posting = pool.submit(recorder.post)
            wait_until(lambda: waits()[0] >= 1, timeout=10, what="a wait counted")
            # The loop counts a wait as it gives up and hands that write (the accept, or a
            # heartbeat) to the writer thread, in the same turn: when /metrics (served by that
            # loop) shows it, a write is on the thread until the lock is released.
            handed_off_by = time.monotonic()
            locker.execute("ROLLBACK")
            released_at = time.monotonic()
            assert posting.result().status_code == 202  # it waited on the writer thread, then committed
    count, seconds = waits()  # read after the release: a heartbeat may have waited for the lock too
    assert count >= 1 and seconds > 0
    handed_off, waited = deferred()
    assert handed_off >= before + 1 and waited - waited_before >= released_at - handed_off_by  # waited out the lock
    assert recorder.post().status_code == 202
    assert waits() == (count, seconds)  # the lock is free again: nothing more
    assert stored_ids(daemon.db) == set(recorder.accepted) and len(recorder.accepted) == 3


def test_an_intake_only_instance_refuses_while_its_journal_cannot_be_written_then_recovers(daemon_factory):
    """The intake journal (``--roles api`` on SQLite) under a full disk: 503 while it lasts, nothing
    refused is stored, every 2xx reaches the store, and the same process recovers by itself."""
    daemon = daemon_factory("--roles", "api")
    recorder = Recorder(daemon.url)
    assert recorder.post().status_code == 202
    pid = daemon.service.pid
    limits = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, limits[1]))
    try:
        first = wait_until(lambda: (reply := recorder.post()).status_code == 503 and reply, timeout=20,
                           what="a payment refused while the journal cannot be written")
        assert_refused(first)
        for reply in recorder.post_many(4):
            assert_refused(reply)
        assert daemon.service.proc.poll() is None, "the daemon died of the fault"
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)
    wait_until(lambda: recorder.post().status_code == 202, timeout=20, what="a payment accepted after the fault")
    wait_until(lambda: set(recorder.accepted) <= stored_ids(daemon.db), timeout=20, what="every 2xx in the store")
    assert set(recorder.refused) & stored_ids(daemon.db) == set(), "answered 503 but stored"
    # The error line was written while the disk refused the log too; the recovery line is not.
    assert "intake journal writes recovered" in daemon.service.log_text()
