"""The durable store of payments: schema, writes batched by one writer, summary reads.

``open_store(db)`` picks the engine from the ``--db`` value: a path is SQLite (the embedded
default), a ``postgresql://`` (or ``postgres://``) URL is PostgreSQL (several hosts, one
database; needs the ``postgres`` extra). Everything above this package talks to
:class:`rinha.store.base.Store` only.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from rinha.store.base import Op, Store, Summary
from rinha.store.sqlite import SQLiteStore

POSTGRES_SCHEMES = ("postgresql", "postgres")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
EXPECTED = "expected a SQLite file path or a postgresql://user@host/dbname URL"
INSTALL_HINT = "PostgreSQL needs psycopg 3: pip install 'rinha[postgres]'"


class EngineMissing(RuntimeError):
    """The engine the ``--db`` value names is not installed; the message says what to install."""


def is_url(db: str) -> bool:
    """Is this ``--db`` value a URL (``scheme://...``) rather than a file path?"""
    return _URL.match(db.strip()) is not None


def is_postgres(db: str) -> bool:
    match = _URL.match(db.strip())
    return match is not None and match[1].lower() in POSTGRES_SCHEMES


def display(db: str) -> str:
    """The ``--db`` value fit for a log line or a message: a URL's password is masked."""
    if not is_url(db):
        return db
    parts = urlsplit(db)
    if parts.password is None:
        return db
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def check_db(db: str) -> str:
    """The ``--db`` value if it can be opened, else ValueError saying why in one line (no option name)."""
    if not db.strip():
        raise ValueError(f"{db!r}: {EXPECTED}")
    if is_url(db):
        if not is_postgres(db):
            raise ValueError(f"{display(db)!r}: unknown database scheme; {EXPECTED}")
        try:
            parts = urlsplit(db)
            parts.port
        except ValueError as exc:
            raise ValueError(f"{display(db)!r}: {exc}") from None
        try:
            _psycopg()
        except EngineMissing as exc:
            raise EngineMissing(f"{display(db)!r}: {exc}") from None
    return db


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise EngineMissing(INSTALL_HINT) from None
    return psycopg


def open_store(db: str) -> Store:
    """The store for a ``--db`` value: a SQLite file path or a PostgreSQL URL."""
    if is_postgres(db):
        _psycopg()
        from rinha.store.postgres import PostgresStore

        return PostgresStore(db.strip())
    return SQLiteStore(db)


__all__ = ["Op", "Store", "Summary", "SQLiteStore", "EngineMissing", "open_store", "is_url", "is_postgres",
           "check_db", "display"]
