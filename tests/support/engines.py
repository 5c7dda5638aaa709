"""Running a test against both store engines, and reading either engine's tables from a test."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from rinha.store import Op, is_postgres, open_store

ENGINES = ["sqlite", "postgres"]

#: Run the test once per engine: its ``db_url`` (and ``daemon_factory``'s store) is a SQLite file,
#: then a fresh database on the session's real PostgreSQL server.
both_engines = pytest.mark.parametrize("engine", ENGINES, indirect=True)


def query(db: str, sql: str, *args) -> list[tuple]:
    """Rows of ``sql`` (``?`` placeholders) read straight from the store at ``db``, either engine."""
    if is_postgres(db):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            return conn.execute(sql.replace("?", "%s"), args).fetchall()
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute(sql, args).fetchall()


def migrated_store(db: str):
    """The store at ``db`` (either engine), migrated: for tests of the store itself."""
    store = open_store(db)
    store.migrate()
    return store


def apply(store, kind: str, *args):
    """Apply one op as a batch of its own; its result."""
    op = Op(kind, args)
    store.apply([op])
    return op.result
