"""The intake journal of intake-only instances (``--roles api`` on SQLite; ``rinha.store.journal``).

Real daemons on one SQLite file. What must hold: an intake-only instance answers 202 once the
payment is in its journal, even while another process holds the store's write lock; the payment
reaches the store by itself; a journal left by an instance killed with ``kill -9`` is moved by
another instance and removed; a correlation id answers the same (202, 200, 409) whether the
payment is still in the journal or already in the store; a payment accepted before a purge is
dropped on its way to the store.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from rinha.store.base import ADMIT, PURGE
from rinha.store.journal import IntakeJournal
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
    journal = [name for name in _journals(api.db) if name.endswith(".journal")]
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
        # Repeats take the journal's slower path (a transaction that reads the store): it must not
        # take the store's lock either. In the store, in the journal, in the journal with another amount:
        assert [_post(api, first), _post(api, ids[0]), _post(api, ids[1], "20.00")] == [200, 200, 409]
        api.service.kill()  # kill -9: the 20 payments are only in its journal
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert len(_stored(api.db)) == 1
    assert any(name.endswith(".journal") for name in _journals(api.db))
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
        assert apply(store, ADMIT, [(1, before, 100, 999), (2, at, 200, 1_000), (3, after, 300, 1_001)]) == (2, [])
        assert {cid: cents for cid, (cents, _) in _stored(db).items()} == {at: 200, after: 300}
        # moved twice (a crash between the store's commit and the journal's delete): nothing changes
        assert apply(store, ADMIT, [(2, at, 200, 1_000)]) == (0, [])
        # the same id with another amount: reported, the store keeps the first
        assert apply(store, ADMIT, [(4, after, 999, 1_002)]) == (0, [after])
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
    assert journal["moved"] == 5 and journal["pending"] == 0 and journal["path"].endswith(".journal")
    assert Path(journal["path"]).exists()
    table = rinha("status", "--db", api.db)
    assert table.exit_code == 0, table.stderr
    assert "intake journal: 0 not yet in the store" in table.stdout and "5 moved" in table.stdout


def test_a_journal_sqlite_cannot_read_is_set_aside_and_named(daemon_factory, tmp_path):
    db = str(tmp_path / "rinha.db")
    folder = Path(db + ".intake")
    folder.mkdir()
    (folder / "dead_1_abc.journal").write_bytes(b"not a database, a torn copy" * 100)
    api = daemon_factory("--roles", "api", db_path=db)
    wait_until(lambda: (folder / "dead_1_abc.journal.unreadable").exists(), timeout=10,
               what="the unreadable journal renamed")
    assert not (folder / "dead_1_abc.journal").exists()
    assert "dead_1_abc.journal cannot be read" in api.service.log_text()
    cid = new_id()
    assert _post(api, cid) == 202  # the instance goes on, and its own journal moves
    wait_until(lambda: cid in _stored(db), timeout=10, what="a payment moved after the sweep")


def test_accepts_never_checkpoint_the_journal_on_the_event_loop(tmp_path):
    """SQLite checkpoints a connection's WAL after its commits once it passes 1,000 pages, unless
    told not to: on a connection that accepts, that is file copying on the event loop. Only the
    mover checkpoints; here it does not run, so every accept's pages must still be in the WAL."""
    db = str(tmp_path / "rinha.db")
    migrated_store(db).close()
    journal = IntakeJournal(db, "api-test")
    try:
        ids = [new_id() for _ in range(1_500)]
        assert {journal.accept(cid, 100, 1_000) for cid in ids} == {"new"}
        assert journal.accept(ids[0], 100, 1_000) == "same"  # the slower path's connection, too
        with closing(sqlite3.connect(journal.path, isolation_level=None)) as reader:
            _busy, wal_frames, _copied = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert wal_frames > 1_000, f"the WAL was checkpointed by an accept: {wal_frames} frames left"
    finally:
        journal.close()
