"""What only the PostgreSQL engine has to get right, against a real server (tests/support/pg.py):
the schema mirrors SQLite's, migrations from several processes at once, claiming that skips
locked rows, batches retried after a deadlock, broken connections replaced, and the one-line
errors of a missing driver, a bad URL or an unreachable server.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from contextlib import closing

import psycopg
import pytest

from rinha.daemon.config import ConfigError, default_control_path, make_config
from rinha.store import Op, display, open_store
from rinha.store import postgres as pg_engine
from rinha.store.base import ACCEPT, CLAIM, PIN
from rinha.store.postgres import PostgresStore
from rinha.store.schema import MIGRATIONS
from tests.support.cli import one_line_error, rinha
from tests.support.wait import wait_until


@pytest.fixture
def url(postgres_server) -> str:
    return postgres_server.create_database()


@pytest.fixture
def store(url):
    store = open_store(url)
    store.migrate()
    yield store
    store.close()


def version_of(url: str) -> int:
    store = PostgresStore(url)
    try:
        return store.schema_version()
    finally:
        store.close()


def apply(store, kind, *args):
    op = Op(kind, args)
    store.apply([op])
    return op.result


# --- schema and migrations -------------------------------------------------------------------


def sqlite_schema(path: str) -> tuple[dict, set]:
    with closing(sqlite3.connect(path)) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = {table: [(name, bool(notnull) or bool(pk)) for _, name, _, notnull, _, pk in
                           db.execute(f"PRAGMA table_info({table})")] for table in tables}
        indexes = {(table, name, "WHERE" in (sql or "")) for name, table, sql in
                   db.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    return columns, indexes


def postgres_schema(url: str) -> tuple[dict, set]:
    with psycopg.connect(url) as conn:
        columns: dict[str, list] = {}
        for table, name, nullable in conn.execute(
                "SELECT table_name, column_name, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name <> 'rinha_schema' ORDER BY table_name, ordinal_position"):
            columns.setdefault(table, []).append((name, nullable == "NO"))
        indexes = {(table, name, " WHERE " in definition) for table, name, definition in conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexname NOT LIKE '%%_pkey'")}
    return columns, indexes


def test_the_schema_mirrors_sqlites_table_by_table_column_by_column(tmp_path, store, url):
    sqlite_store = open_store(str(tmp_path / "s.db"))
    sqlite_store.migrate()
    sqlite_store.close()
    assert len(pg_engine.MIGRATIONS) == len(MIGRATIONS), "each SQLite migration needs its PostgreSQL twin"
    assert store.schema_version() == len(MIGRATIONS)
    lite_columns, lite_indexes = sqlite_schema(str(tmp_path / "s.db"))
    pg_columns, pg_indexes = postgres_schema(url)
    assert pg_columns == lite_columns
    assert pg_indexes == lite_indexes
    assert ("payments", "payments_paid", True) in pg_indexes  # the summary's partial covering index


def test_migrations_from_several_processes_at_once_run_once(url):
    code = "import sys; from rinha.store import open_store; s = open_store(sys.argv[1]); s.migrate(); s.close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(proc.wait(60), proc.stderr.read()) for proc in procs]
    assert results == [(0, "")] * 6
    store = open_store(url)
    try:
        assert store.schema_version() == len(MIGRATIONS)
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM rinha_schema").fetchone()[0] == 1


def test_rinha_migrate_creates_the_schema_on_a_url(url):
    first = rinha("migrate", "--db", url)
    assert first.exit_code == 0 and "schema up to date" in first.stdout, first.stderr
    assert version_of(url) == len(MIGRATIONS)
    assert rinha("migrate", "--db", url).exit_code == 0


def test_a_database_newer_than_this_rinha_is_refused(store, url):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE rinha_schema SET version = %s", (len(MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError, match="newer than this rinha knows"):
        store.migrate()
    assert "newer than this rinha knows" in one_line_error(rinha("summary", "--db", url), 1)


# --- claiming, batches, connections ------------------------------------------------------------


def test_a_claim_skips_rows_another_host_has_locked_instead_of_waiting(store, url):
    for cid in ("locked", "free1", "free2"):
        apply(store, ACCEPT, cid, 100, 1, None, 0)
    with psycopg.connect(url) as other:  # another host, in the middle of a transaction on one row
        other.execute("SELECT 1 FROM payments WHERE correlation_id = 'locked' FOR UPDATE")
        claimed = []
        thread = threading.Thread(target=lambda: claimed.extend(apply(store, CLAIM, "B", 10, 5000, 10)), daemon=True)
        thread.start()
        thread.join(5)
        waited = thread.is_alive()
        other.rollback()  # lets a claim that waited go on
        thread.join(5)
    assert not waited, "the claim waited for the locked row"
    assert sorted(c.correlation_id for c in claimed) == ["free1", "free2"]
    assert [c.correlation_id for c in apply(store, CLAIM, "C", 10, 5000, 10)] == ["locked"]


def test_a_batch_picked_as_a_deadlock_victim_is_retried_whole(store, url):
    apply(store, ACCEPT, "r1", 1, 1, None, 0)
    apply(store, ACCEPT, "r2", 1, 1, None, 0)
    failures: list[BaseException] = []
    with psycopg.connect(url) as other:
        other.execute("UPDATE payments SET pinned = 'other' WHERE correlation_id = 'r2'")  # holds r2

        def batch() -> None:
            try:  # takes r1, then waits for r2
                store.apply([Op(PIN, ("r1", "fallback", False)), Op(PIN, ("r2", "fallback", False))])
            except BaseException as exc:  # reported below
                failures.append(exc)

        thread = threading.Thread(target=batch)
        thread.start()
        with psycopg.connect(url, autocommit=True) as watcher:
            wait_until(lambda: watcher.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'rinha' AND wait_event_type = 'Lock'"
            ).fetchone()[0] == 1, timeout=10, what="the batch waiting for r2")
        # r1 now closes the cycle: the batch waited first, so its deadlock check fires first and
        # PostgreSQL aborts it; this transaction goes on and commits.
        other.execute("UPDATE payments SET pinned = 'other' WHERE correlation_id = 'r1'")
        other.commit()
        thread.join(20)
    assert failures == []
    assert (store.payment("r1")["pinned"], store.payment("r2")["pinned"]) == ("fallback", "fallback")


def test_a_broken_connection_is_replaced(store, url):
    apply(store, ACCEPT, "a", 1, 1, None, 0)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as admin:  # what a server restart does to the pool
        killed = admin.execute("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = %s AND application_name = 'rinha'", (name,)).fetchone()[0]
    assert killed >= 1
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(apply(store, ACCEPT, "b", 1, 1, None, 0))
        except store.errors as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes[-1] in ("new", "same"), outcomes
    assert store.counts()["pending"] == 2


def test_connections_are_pooled_not_one_per_thread(store, url):
    def read() -> None:
        store.summary(None, None)

    for _ in range(30):  # threads that come and go, as trio's thread cache has them
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    assert len(store._idle) == 1
    # a burst of readers waits for a connection rather than opening one each
    name = url.rsplit("/", 1)[1]
    threads = [threading.Thread(target=store._read, args=("SELECT pg_sleep(0.3)",)) for _ in range(20)]
    for thread in threads:
        thread.start()
    with psycopg.connect(url, autocommit=True) as admin:
        peak = 0
        while any(thread.is_alive() for thread in threads):
            peak = max(peak, admin.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = %s "
                                           "AND application_name = 'rinha'", (name,)).fetchone()[0])
    for thread in threads:
        thread.join()
    assert peak == pg_engine._MAX_CONNECTIONS


# --- options and errors ------------------------------------------------------------------------


def config(db: str):
    return make_config("127.0.0.1:9999", db, "http://localhost:8001", "http://localhost:8002", "api,dispatch,health")


def test_db_option_takes_a_path_or_a_postgresql_url_and_says_which_it_expected():
    assert config("postgresql://u@db.example:5432/rinha").db == "postgresql://u@db.example:5432/rinha"
    assert config("postgres://u@db.example/rinha").db == "postgres://u@db.example/rinha"
    assert config("/var/lib/rinha/rinha.db").db == "/var/lib/rinha/rinha.db"
    with pytest.raises(ConfigError) as info:
        config("mysql://u:secret@h/rinha")
    assert str(info.value) == ("--db 'mysql://u:***@h/rinha': unknown database scheme; expected a SQLite file path "
                               "or a postgresql://user@host/dbname URL")
    with pytest.raises(ConfigError, match="^--db ' ': expected a SQLite file path or a postgresql://"):
        config(" ")
    with pytest.raises(ConfigError, match="Port out of range") as info:
        config("postgresql://u:secret@h:99999/rinha")
    assert "secret" not in str(info.value)


def test_the_default_control_socket_of_a_url_is_derived_from_it_without_its_password():
    first = default_control_path("postgresql://rinha:one@db/rinha")
    assert first == default_control_path("postgresql://rinha:two@db/rinha")
    assert first != default_control_path("postgresql://rinha@db/other")
    assert first.endswith(".control.sock") and "://" not in first
    assert display("postgresql://rinha:pw@db:5432/x?sslmode=require") == "postgresql://rinha:***@db:5432/x?sslmode=require"


NO_PSYCOPG = "import sys; sys.modules['psycopg'] = None; from rinha.cli.main import app; app(prog_name='rinha')"


@pytest.mark.parametrize("command,code", [(["summary"], 1), (["serve", "--listen", "127.0.0.1:1"], 2)])
def test_without_psycopg_a_postgresql_url_names_the_extra_to_install(command, code):
    result = subprocess.run([sys.executable, "-c", NO_PSYCOPG, *command, "--db", "postgresql://u:pw@127.0.0.1/x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    assert "pip install 'rinha[postgres]'" in " ".join(result.stderr.replace("│", " ").split())
    if code == 1:
        assert result.stderr.strip().splitlines() == [
            "error: --db 'postgresql://u:***@127.0.0.1/x': PostgreSQL needs psycopg 3: pip install 'rinha[postgres]'"]


def test_cli_errors_for_an_unreachable_server_and_a_database_without_schema(url, postgres_server):
    from tests.support.procs import free_port

    down = f"postgresql://u:secret@127.0.0.1:{free_port()}/rinha"
    line = one_line_error(rinha("summary", "--db", down), 1)
    assert line.startswith("error: cannot read postgresql://u:***@127.0.0.1:") and "secret" not in line
    assert "not a rinha database" in one_line_error(rinha("payment", "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3",
                                                          "--db", url), 1)
    assert version_of(url) == 0  # the CLI never creates a schema
