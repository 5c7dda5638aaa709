"""The durable store of payments: schema, writes batched by one writer, summary reads.

``open_store(url)`` picks the engine from the ``--db`` value: a path is SQLite (the embedded
default). Everything above this package talks to :class:`rinha.store.base.Store` only.
"""

from rinha.store.base import Op, Store, Summary
from rinha.store.sqlite import SQLiteStore


def open_store(db: str) -> Store:
    """The store for a ``--db`` value (a SQLite file path)."""
    return SQLiteStore(db)


__all__ = ["Op", "Store", "Summary", "SQLiteStore", "open_store"]
