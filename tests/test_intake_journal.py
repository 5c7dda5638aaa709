"""The intake journal of intake-only instances (``--roles api`` on SQLite; ``rinha.store.journal``).

Real daemons on one SQLite file. What must hold: an intake-only instance answers 202 once the
payment is in its journal, even while another process holds the store's write lock; the payment
reaches the store by itself; a journal left by an instance killed with ``kill -9`` is moved by
another instance and removed (a line torn by the crash ignored, a damaged one logged and the file
set aside; journals of the earlier SQLite format too); a full disk never tears a line; a correlation id answers the same (202, 200, 409) whether the
payment is still in the journal or already in the store; a payment accepted before a purge is
dropped on its way to the store.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from rinha.store.base import ADMIT, PURGE
from rinha.store.journal import HEADER, IntakeJournal, decode, encode
from tests.support.cli import control_get, metric, new_id, payment_body, rinha, wait_for_control
from tests.support.engines import apply, migrated_store, query
from tests.support.wait import wait_until


def _stored(db: str) -> dict[str, tuple[int, str]]:
    return {cid: (cents, state) for cid, cents, state in query(db, "SELECT correlation_id, amount_cents, state FROM payments")}


def _journals(db: str) -> list[str]:
    folder = Path(db + ".intake")
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _post(daemon, cid: str, amount: str = "19.90") -> int:
    return daemon.post(payment_body(cid, amount)).status_code


def test_an_intake_only_instance_journals_then_moves_its_payments(daemon_factory):
    api = daemon_factory("--roles", "api")
    ids = [new_id() for _ in range(50)]
    assert [_post(api, cid) for cid in ids] == [202] * 50
    wait_until(lambda: len(_stored(api.db)) == 50, timeout=10, what="the journal's payments in the store")
    assert _stored(api.db) == {cid: (1990, "pending") for cid in ids}
    journal = [name for name in _journals(api.db) if name.endswith(".log")]
    assert len(journal) == 1, _journals(api.db)
    assert api.service.stop() == 0
    assert _journals(api.db) == [], "a clean stop leaves no journal behind"


def test_accepts_do_not_wait_for_the_store_lock_and_a_killed_instance_journal_is_swept(daemon_factory):
    api = daemon_factory("--roles", "api")
    first = new_id()
    _post(api, first)  # the schema is there (migrated at start); this one is moved at once
    wait_until(lambda: len(_stored(api.db)) == 1, timeout=10, what="the first payment in the store")
    blocker = sqlite3.connect(api.db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the store's write lock, held by this test
    try:
        ids = [new_id() for _ in range(20)]
        # Committed to the store, each would wait out the 5 s busy timeout and answer 503.
        assert [_post(api, cid) for cid in ids] == [202] * 20
        # Repeats are answered from the journal's lines not yet moved, or from a read of the store:
        # neither takes the store's lock. In the store, in the journal, in the journal with another amount:
        assert [_post(api, first), _post(api, ids[0]), _post(api, ids[1], "20.00")] == [200, 200, 409]
        api.service.kill()  # kill -9: the 20 payments are only in its journal
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert len(_stored(api.db)) == 1
    assert any(name.endswith(".log") for name in _journals(api.db))
    other = daemon_factory()  # any instance on the store sweeps (this one pays, too)
    wait_until(lambda: _journals(api.db) == [], timeout=15, what="the dead instance's journal swept")
    stored = _stored(api.db)
    assert set(ids) <= set(stored) and len(stored) == 21
    wait_until(lambda: all(state == "paid" for _, state in _stored(api.db).values()), timeout=15,
               what="every payment paid")
    assert "moved 20 payments into the store from the intake journal of a stopped instance" in other.service.log_text()


def test_a_correlation_id_answers_alike_in_the_journal_and_in_the_store(daemon_factory):
    one = daemon_factory("--roles", "api")
    two = daemon_factory("--roles", "api")
    cid = new_id()
    assert _post(one, cid) == 202
    assert _post(one, cid) == 200  # the journal holds it (or the store, if moved already)
    assert _post(one, cid, "20.00") == 409
    wait_until(lambda: cid in _stored(one.db), timeout=10, what="the payment in the store")
    assert _post(two, cid) == 200  # the other instance finds it in the store
    assert _post(two, cid, "20.00") == 409
    assert _post(one, cid) == 200
    assert _stored(one.db)[cid][0] == 1990


def test_payments_accepted_before_a_purge_are_dropped_on_their_way_to_the_store(tmp_path):
    db = str(tmp_path / "rinha.db")
    store = migrated_store(db)
    try:
        before, at, after = new_id(), new_id(), new_id()
        apply(store, PURGE, 1_000)
        assert apply(store, ADMIT, [(before, 100, 999), (at, 200, 1_000), (after, 300, 1_001)]) == (2, [])
        assert {cid: cents for cid, (cents, _) in _stored(db).items()} == {at: 200, after: 300}
        # moved twice (a crash between the store's commit and the journal's delete): nothing changes
        assert apply(store, ADMIT, [(at, 200, 1_000)]) == (0, [])
        # the same id with another amount: reported, the store keeps the first
        assert apply(store, ADMIT, [(after, 999, 1_002)]) == (0, [after])
        assert _stored(db)[after] == (300, "pending")
    finally:
        store.close()


def test_the_journal_is_on_metrics_and_status(daemon_factory):
    api = daemon_factory("--roles", "api")
    wait_for_control(api.db)
    ids = [new_id() for _ in range(5)]
    assert [_post(api, cid) for cid in ids] == [202] * 5
    wait_until(lambda: metric(control_get(api.db, "/metrics").text, "rinha_journal_moved_total") == 5, timeout=10,
               what="five payments moved, on /metrics")
    text = control_get(api.db, "/metrics").text
    assert metric(text, "rinha_journal_pending") == 0
    assert metric(text, "rinha_journal_conflicts_total") == 0 and metric(text, "rinha_journal_failing") == 0
    journal = control_get(api.db, "/status").json()["journal"]
    assert journal["moved"] == 5 and journal["pending"] == 0 and journal["path"].endswith(".log")
    assert Path(journal["path"]).exists()
    table = rinha("status", "--db", api.db)
    assert table.exit_code == 0, table.stderr
    assert "intake journal: 0 not yet in the store" in table.stdout and "5 moved" in table.stdout


def _admit_into(store):
    return lambda rows: apply(store, ADMIT, rows)


def _dead_journal(db: str, name: str, content: bytes) -> Path:
    """A journal file as an instance that died would leave it (no lock held)."""
    folder = Path(db + ".intake")
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


def test_lines_move_in_order_answer_alike_before_and_after_and_the_file_is_emptied_once_moved(tmp_path):
    db = str(tmp_path / "rinha.db")
    store = migrated_store(db)
    journal = IntakeJournal(db, "api-test", rotate_bytes=1_000)
    try:
        ids = [new_id() for _ in range(30)]
        assert [journal.accept(cid, 100 + n, 5_000 + n) for n, cid in enumerate(ids)] == ["new"] * 30
        assert Path(journal.path).read_bytes().startswith(HEADER)
        assert journal.pending() == 30 and _stored(db) == {}
        # Not in the store yet: answered from the journal's memory.
        assert (journal.accept(ids[0], 100, 1), journal.accept(ids[0], 999, 1)) == ("same", "conflict")
        moved = 0
        while journal.pending():
            moved += journal.move(_admit_into(store))
        assert moved == 30
        assert query(db, "SELECT correlation_id, amount_cents, accepted_at_ms FROM payments ORDER BY rowid") == [
            (cid, 100 + n, 5_000 + n) for n, cid in enumerate(ids)]
        # In the store now: answered from there.
        assert (journal.accept(ids[1], 101, 1), journal.accept(ids[1], 999, 1)) == ("same", "conflict")
        assert journal.size() > 1_000
        journal.rotate()
        assert Path(journal.path).read_bytes() == HEADER
        later = new_id()
        assert journal.accept(later, 700, 9_000) == "new"
        assert journal.move(_admit_into(store)) == 1
        assert _stored(db)[later] == (700, "pending")
    finally:
        journal.close()
        store.close()
    assert not Path(journal.path).exists(), "everything was moved: a closed journal leaves no file"


def test_a_full_disk_never_tears_a_line(tmp_path):
    """RLIMIT_FSIZE cuts a write short at a file size, as a full disk does: the accept fails and
    its partial line is taken back, so the next accept (room again) starts on a clean line."""
    db = str(tmp_path / "rinha.db")
    migrated_store(db).close()
    ids = [new_id() for _ in range(3)]
    script = f"""
import resource, signal, sys
from rinha.store.journal import IntakeJournal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
journal = IntakeJournal({db!r}, "api-full")
assert journal.accept({ids[0]!r}, 100, 1) == "new"
resource.setrlimit(resource.RLIMIT_FSIZE, (journal.size() + 20, resource.RLIM_INFINITY))
try:
    journal.accept({ids[1]!r}, 200, 2)
except OSError as exc:
    print("refused:", exc)
assert journal.size() == len(open(journal.path, "rb").read()), "the torn line was taken back"
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
assert journal.accept({ids[1]!r}, 200, 2) == "new" and journal.accept({ids[2]!r}, 300, 3) == "new"
print(journal.path)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    refused, path = done.stdout.splitlines()
    assert refused.startswith("refused:") and "short write" in refused
    lines = Path(path).read_bytes().split(b"\n")
    assert lines[0] + b"\n" == HEADER and lines[-1] == b""
    assert [decode(line) for line in lines[1:-1]] == [(ids[0], 100, 1), (ids[1], 200, 2), (ids[2], 300, 3)]


def test_a_dead_instance_journal_torn_at_its_end_moves_all_but_the_torn_line(daemon_factory, tmp_path):
    db = str(tmp_path / "rinha.db")
    migrated_store(db).close()
    ids = [new_id() for _ in range(3)]
    torn = encode(new_id(), 400, 4)[:-9]  # the instance died writing it: it was never answered
    path = _dead_journal(db, "dead_1_abc.log", HEADER + b"".join(encode(cid, 100, 1) for cid in ids) + torn)
    # An instance that died writing its header had accepted nothing: removed, not set aside.
    headerless = _dead_journal(db, "dead_4_abc.log", HEADER[:9])
    api = daemon_factory("--roles", "api", db_path=db)
    wait_until(lambda: not path.exists() and not headerless.exists(), timeout=10,
               what="the dead journals swept and removed")
    assert _stored(db) == {cid: (100, "pending") for cid in ids}
    log_text = api.service.log_text()
    assert "moved 3 payments into the store" in log_text and "ends in a torn line" in log_text
    assert [name for name in _journals(db) if name.startswith(("dead_1_abc", "dead_4_abc"))] == [], \
        "their lock files removed too, nothing set aside"


def test_a_damaged_journal_moves_its_good_lines_and_is_set_aside_and_named(daemon_factory, tmp_path):
    db = str(tmp_path / "rinha.db")
    migrated_store(db).close()
    good, damaged = new_id(), new_id()
    bad_line = encode(damaged, 100, 1).replace(b" 100 ", b" 900 ")  # its checksum no longer holds
    path = _dead_journal(db, "dead_2_abc.log", HEADER + bad_line + encode(good, 100, 1))
    headless = _dead_journal(db, "dead_3_abc.log", b"not a journal at all\n" + encode(new_id(), 100, 1))
    api = daemon_factory("--roles", "api", db_path=db)
    wait_until(lambda: Path(str(path) + ".unreadable").exists() and Path(str(headless) + ".unreadable").exists(),
               timeout=10, what="both journals set aside")
    assert _stored(db) == {good: (100, "pending")}, "the good line moved, the damaged one and the headless file did not"
    log_text = api.service.log_text()
    assert "dead_2_abc.log: the line at byte" in log_text and "1 damaged lines, logged" in log_text
    assert "dead_3_abc.log cannot be read (no journal header" in log_text
    cid = new_id()
    assert _post(api, cid) == 202  # the instance goes on, and its own journal moves
    wait_until(lambda: cid in _stored(db), timeout=10, what="a payment moved after the sweep")


def test_a_sqlite_journal_of_an_earlier_version_is_still_swept(daemon_factory, tmp_path):
    db = str(tmp_path / "rinha.db")
    migrated_store(db).close()
    folder = Path(db + ".intake")
    folder.mkdir()
    ids = [new_id() for _ in range(3)]
    with closing(sqlite3.connect(folder / "old_1_abc.journal", isolation_level=None)) as old:
        old.execute("CREATE TABLE accepts (seq INTEGER PRIMARY KEY, correlation_id TEXT NOT NULL UNIQUE,"
                    " amount_cents INTEGER NOT NULL, accepted_at_ms INTEGER NOT NULL)")
        old.executemany("INSERT INTO accepts (correlation_id, amount_cents, accepted_at_ms) VALUES (?, ?, ?)",
                        [(cid, 250, 7) for cid in ids])
    (folder / "torn_1_abc.journal").write_bytes(b"not a database, a torn copy" * 100)
    api = daemon_factory("--roles", "api", db_path=db)
    wait_until(lambda: not (folder / "old_1_abc.journal").exists() and (folder / "torn_1_abc.journal.unreadable").exists(),
               timeout=10, what="the old journal swept, the torn one set aside")
    assert _stored(db) == {cid: (250, "pending") for cid in ids}
    assert "torn_1_abc.journal cannot be read" in api.service.log_text()
