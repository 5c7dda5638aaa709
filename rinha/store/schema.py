"""The schema and its migrations, applied in order and recorded in ``PRAGMA user_version``.

Tables are created with sqlite-utils (readable column lists, defaults, NOT NULLs); the partial
covering indexes, which it cannot express, in plain SQL. A migration never edits an earlier
one: add the next function to ``MIGRATIONS``.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils


def _v1_payments(db: sqlite_utils.Database) -> None:
    db["payments"].create(
        {
            "correlation_id": str,
            "amount_cents": int,
            "accepted_at_ms": int,
            "state": str,  # pending | paid | dead
            "pinned": str,  # processor the payment is bound to; NULL = none yet (default)
            "ambiguous": int,  # 1 while an attempt at `pinned` has an unknown outcome
            "attempts": int,
            "processor": str,  # where it was paid
            "requested_at": str,  # the exact requestedAt the processor holds
            "requested_at_us": int,
            "paid_at_ms": int,  # when it was paid or declared dead
            "owner": str,  # instance that claimed it
            "lease_until_ms": int,
            "dead_reason": str,
        },
        pk="correlation_id",
        not_null={"amount_cents", "accepted_at_ms", "state", "ambiguous", "attempts", "lease_until_ms"},
        defaults={"state": "pending", "ambiguous": 0, "attempts": 0, "lease_until_ms": 0},
    )
    # The summary reads only this index: paid rows by requestedAt, with processor and amount.
    db.execute(
        "CREATE INDEX payments_paid ON payments (requested_at_us, processor, amount_cents) WHERE state = 'paid'"
    )
    # Claiming scans only pending rows, oldest lease first.
    db.execute("CREATE INDEX payments_pending ON payments (lease_until_ms) WHERE state = 'pending'")


def _v2_leases_health_attempts(db: sqlite_utils.Database) -> None:
    # Named leases: exactly one holder at a time across the instances sharing the store.
    db["leases"].create({"name": str, "holder": str, "until_ms": int}, pk="name", not_null={"holder", "until_ms"})
    # The health monitor's latest reading per processor, shared with every instance.
    db["processor_health"].create(
        {"processor": str, "failing": int, "min_response_time": int, "checked_at_ms": int},
        pk="processor", not_null={"failing", "min_response_time", "checked_at_ms"},
    )
    # Every attempt of every payment: a payment's story and a dead letter's history.
    db["attempts"].create(
        {"id": int, "correlation_id": str, "processor": str, "requested_at": str, "outcome": str,
         "status": int, "latency_ms": float, "at_ms": int, "detail": str},
        pk="id", not_null={"correlation_id", "processor", "outcome", "at_ms"},
    )
    db["attempts"].create_index(["correlation_id"])
    db["attempts"].create_index(["at_ms"])


def _v3_operations(db: sqlite_utils.Database) -> None:
    # A replayed dead letter restarts its age (the dispatcher's max-age and deadline count from
    # accepted_at_ms); the first acceptance is kept here for its story. NULL: never replayed.
    db.execute("ALTER TABLE payments ADD COLUMN first_accepted_at_ms INTEGER")
    # Dead letters by the time they died: the DLQ listing and its count read only this index.
    db.execute("CREATE INDEX payments_dead ON payments (paid_at_ms) WHERE state = 'dead'")
    # Every daemon instance sharing the store, refreshed by its heartbeat (`rinha status`).
    db["instances"].create(
        {"instance": str, "roles": str, "control": str, "pid": int, "started_at_ms": int, "seen_at_ms": int},
        pk="instance", not_null={"roles", "started_at_ms", "seen_at_ms"},
    )


def _v4_profile_runs(db: sqlite_utils.Database) -> None:
    # `rinha profile run`: one row per load-profile run. The k6 summary and the contest's score
    # are JSON text (money as decimal strings); baseline = 1 marks the run others are compared
    # against (at most one per profile, kept so by the store's profile-run methods).
    db["profile_runs"].create(
        {"id": int, "profile": str, "started_at_ms": int, "finished_at_ms": int, "target": str, "vus": int,
         "baseline": int, "summary_json": str, "score_json": str, "notes": str},
        pk="id", not_null={"profile", "started_at_ms", "finished_at_ms", "baseline", "summary_json"},
        defaults={"baseline": 0},
    )
    db.execute("CREATE INDEX profile_runs_profile ON profile_runs (profile, id)")


MIGRATIONS = [_v1_payments, _v2_leases_health_attempts, _v3_operations, _v4_profile_runs]


def refuse_foreign(conn: sqlite3.Connection) -> None:
    """Raise if the database holds tables but no rinha schema: another application's file,
    which a migration must not add rinha's tables to.

    The tables are read before the version: a migration commits both at once, so a file that
    another process migrates meanwhile is never mistaken for a foreign one, even outside a
    transaction."""
    others = sorted(name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
    if others and conn.execute("PRAGMA user_version").fetchone()[0] == 0:
        raise RuntimeError(f"not a rinha database: it holds other tables ({', '.join(others[:5])}"
                           f"{', ...' if len(others) > 5 else ''}); not adding rinha's to it")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to the latest version; returns it. Safe to call from several processes.

    sqlite-utils (and what it imports: ~20 MB resident, more with numpy installed) is loaded only
    when a migration is due, so a daemon started on an up-to-date database never carries it."""
    if conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
        return len(MIGRATIONS)
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            refuse_foreign(conn)  # consistent here: this transaction holds the write lock
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema version {version} is newer than this rinha knows ({len(MIGRATIONS)}); upgrade rinha"
            )
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            step(db)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)
