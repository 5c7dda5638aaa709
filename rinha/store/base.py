"""The store interface: what the daemon and the CLI may ask of any engine.

Writes are :class:`Op` values applied in batches, one short transaction per batch, by a single
writer per process (see ``rinha.daemon.store_writer``): every op of a batch commits together or
not at all. Reads (summary, claims) are plain calls. All calls are synchronous; callers run
them off the event loop.

Payment life cycle, one row each::

    pending ──(200 / 422 from a processor)──▶ paid(processor, requested_at)
       │
       └──(permanent rejection)──▶ dead(reason)

``pinned`` is the processor a pending payment is bound to (NULL: none yet, which means the
default processor). A payment is only ever sent to its pinned processor; re-pinning is written
before the first send to the new one, and never happens while ``ambiguous`` (an attempt whose
outcome is unknown) is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from rinha.money import format_cents

# Op kinds
ACCEPT = "accept"  # (correlation_id, amount_cents, accepted_at_ms, owner|None, lease_until_ms) → "new" | "same" | "conflict"
#: (rows,) → (new, conflicts): payments an intake journal accepted (``rinha.store.journal``),
#: rows of (correlation_id, amount_cents, accepted_at_ms), into the store unowned, as ACCEPT
#: would; those accepted before the latest purge are dropped. Returns how many were new to the
#: store and the ids it held with another amount.
ADMIT = "admit"
PAID = "paid"  # (correlation_id, processor, requested_at, requested_at_us, paid_at_ms, attempts) → None
PIN = "pin"  # (correlation_id, processor, ambiguous) → None
#: (correlation_id, processor, owner) → bool: bind a pending payment to ``processor``, not
#: ambiguous, only while ``owner`` still holds it (False: another instance adopted it meanwhile).
REBIND = "rebind"
DEAD = "dead"  # (correlation_id, reason, at_ms) → None
RENEW = "renew"  # (owner, lease_until_ms) → None
RELEASE = "release"  # (owner,) → None: hand pending payments back for others to claim
CLAIM = "claim"  # (owner, now_ms, lease_until_ms, limit) → list[Claimed]
PURGE = "purge"  # (at_ms=0) → None: every payment and attempt deleted; at_ms kept as the lease "purged"
#: The lease row whose until_ms is the instant of the latest purge (dispatchers drop older jobs).
PURGED_MARK = "purged"
LEASE = "lease"  # (name, holder, now_ms, until_ms) → bool: True if holder has the lease until until_ms
HEALTH = "health"  # (processor, failing, min_response_time, checked_at_ms) → None
ATTEMPT = "attempt"  # (correlation_id, processor, requested_at, outcome, status, latency_ms, at_ms, detail) → None
REQUEUE = "requeue"  # (correlation_ids, at_ms) → list[str]: dead → pending (unowned, age from at_ms); others untouched
SETTLE_DEAD = "settle_dead"  # (correlation_id, processor, requested_at, requested_at_us, at_ms) → bool: dead → paid (a processor holds it)
PRUNE_ATTEMPTS = "prune_attempts"  # (before_ms, limit) → int: attempts older than before_ms deleted, at most limit
HEARTBEAT = "heartbeat"  # (instance, roles, control, pid, started_at_ms, seen_at_ms) → None


@dataclass(slots=True)
class Op:
    """One write; ``result`` is set when its batch has committed (or ``error`` if it failed)."""

    kind: str
    args: tuple
    result: object = None
    error: BaseException | None = None
    waiter: object = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A pending payment now owned by the claimer."""

    correlation_id: str
    amount_cents: int
    pinned: str | None
    ambiguous: bool
    accepted_at_ms: int


@dataclass(frozen=True, slots=True)
class Health:
    """A processor's last health reading, as its monitor stored it."""

    processor: str
    failing: bool
    min_response_time: int
    checked_at_ms: int


@dataclass(frozen=True, slots=True)
class Side:
    requests: int = 0
    amount_cents: int = 0


@dataclass(frozen=True, slots=True)
class Summary:
    default: Side = Side()
    fallback: Side = Side()

    def contest_json(self) -> bytes:
        """The contest's shape; amounts are JSON numbers with exactly two decimals."""
        return (
            b'{"default":{"totalRequests":%d,"totalAmount":%s},"fallback":{"totalRequests":%d,"totalAmount":%s}}'
            % (self.default.requests, format_cents(self.default.amount_cents).encode(),
               self.fallback.requests, format_cents(self.fallback.amount_cents).encode())
        )


@dataclass(frozen=True, slots=True)
class ProfileRun:
    """One stored `rinha profile run`: the k6 summary and the contest's score as JSON text."""

    id: int
    profile: str
    started_at_ms: int
    finished_at_ms: int
    target: str | None
    vus: int | None
    baseline: bool  #: the run others of its profile are compared against (at most one per profile)
    summary_json: str  #: the profile's handleSummary JSON, as k6 wrote it
    score_json: str | None  #: rinha.profiling.runs.score_json of the summary; None if it could not be scored
    notes: str | None


class Store(Protocol):
    def migrate(self) -> None: ...

    def schema_version(self) -> int:
        """The schema version the database is at (0: not a rinha database)."""

    def apply(self, ops: list[Op]) -> None:
        """Apply a batch in one transaction; set each op's result. Raises if the batch failed."""

    def summary(self, from_us: int | None, to_us: int | None) -> Summary: ...

    def counts(self) -> dict[str, int]:
        """Payments by state (pending, paid, dead)."""

    def health(self) -> dict[str, Health]:
        """The latest health reading per processor."""

    def oldest_pending_ms(self) -> int | None:
        """``accepted_at_ms`` of the oldest pending payment."""

    def lease_holder(self, name: str) -> tuple[str, int] | None:
        """(holder, until_ms) of a named lease (``PURGED_MARK``: until_ms = the latest purge)."""

    def payment(self, correlation_id: str) -> dict | None:
        """One payment's row as a dict, or None."""

    # Profile runs (`rinha profile`): operator records, written outside the writer's batches.

    def add_profile_run(self, run: ProfileRun) -> int:
        """Store a run (its ``id`` is ignored) and return the new id; with ``run.baseline`` it
        becomes its profile's baseline (any other baseline of that profile is unmarked), atomically."""

    def profile_run(self, run_id: int) -> ProfileRun | None: ...

    def profile_runs(self, profile: str | None = None, limit: int | None = None) -> list[ProfileRun]:
        """Runs, newest first (highest id), of one profile or all."""

    def baseline_run(self, profile: str) -> ProfileRun | None:
        """The profile's baseline run, or None."""

    def mark_baseline(self, run_id: int) -> bool:
        """Make a stored run its profile's baseline (unmarking the previous one); False if no such run."""

    def close(self) -> None: ...
