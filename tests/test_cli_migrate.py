"""``rinha migrate``: the schema created or upgraded by a short process of its own."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from rinha.store.schema import MIGRATIONS
from tests.support.cli import one_line_error, rinha


def test_migrate_creates_the_schema_and_a_second_run_changes_nothing(tmp_path):
    db = str(tmp_path / "new.db")
    first = rinha("migrate", "--db", db)
    assert first.exit_code == 0 and "schema up to date" in first.stdout
    with sqlite3.connect(db) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert version == len(MIGRATIONS)
    assert {"payments", "attempts", "leases", "instances"} <= tables
    assert rinha("migrate", "--db", db).exit_code == 0


def test_a_database_newer_than_this_rinha_is_refused(tmp_path):
    db = str(tmp_path / "future.db")
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    assert "newer than this rinha knows" in one_line_error(rinha("migrate", "--db", db), 1)


def test_an_unknown_scheme_is_a_usage_error_and_an_unopenable_file_an_error(tmp_path):
    result = rinha("migrate", "--db", "mysql://db/rinha")
    assert result.exit_code == 2 and "unknown database scheme" in result.stderr
    assert "cannot migrate" in one_line_error(rinha("migrate", "--db", str(tmp_path / "no" / "such" / "dir.db")), 1)


def test_a_foreign_database_is_left_as_it_was(tmp_path):
    """Another application's SQLite file: no command adds rinha's tables to it or changes its
    journal mode, and each says it is not a rinha database."""
    foreign = tmp_path / "notes.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    before = foreign.read_bytes()
    assert "not a rinha database" in one_line_error(
        rinha("payment", "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3", "--db", str(foreign)), 1)
    assert "not a rinha database" in one_line_error(rinha("summary", "--db", str(foreign)), 1)
    message = one_line_error(rinha("migrate", "--db", str(foreign)), 1)
    assert "not a rinha database: it holds other tables (notes)" in message
    with sqlite3.connect(foreign) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [name for (name,) in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert foreign.read_bytes() == before


def test_processes_starting_together_on_a_new_file_all_migrate_it(tmp_path):
    """docker-compose starts its instances at once on an empty volume, each migrating the same
    new file. Turning it to WAL needs the file to itself, and SQLite refused that at once while
    another process read it: ~1 start in 100 failed with "database is locked"."""
    code = ("import sys, time\nfrom rinha.store.sqlite import SQLiteStore\nstore = SQLiteStore(sys.argv[1])\n"
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\nstore.migrate()")
    for round_ in range(8):
        db = tmp_path / f"new{round_}.db"
        start_at = time.time() + 0.4  # after every interpreter started: they all open the file at once
        procs = [subprocess.Popen([sys.executable, "-c", code, str(db), str(start_at)], stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        failures = [err for proc in procs if (err := proc.communicate(timeout=60)[1]) and proc.returncode != 0]
        assert failures == [], failures[0]
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
