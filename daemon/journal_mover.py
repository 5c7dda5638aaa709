"""The journal mover: a thread that moves the payments this instance's intake journal accepted
into the shared store, and sweeps the journals of instances that died (see
:mod:`rinha.store.journal`). Every instance on a SQLite store runs one; only intake-only
instances have a journal of their own.

It never wakes the event loop, and the loop never wakes it: it looks at the journal's counters
every ``BUSY_POLL`` seconds while payments come in (``IDLE_POLL`` after a second without), so a
payment reaches the store, where the dispatchers claim it, within about ``BUSY_POLL`` of its
answer, and a busy second costs ~20 store transactions per instance instead of one per payment.

Why 50 ms and not less: each move is a store transaction whose cost hardly depends on the
batch's size. At 10 ms an intake-only instance used 11 % more CPU per payment (measured with the
SQLite journals of earlier versions, whose moves cost more), and at twice the contest's load the api
instances 0.7-1.4 s more each per run, with no better p99 (benchmarks/README.md, tenth session).
What waits the extra 40 ms is the payment's trip to the store, not its answer.
"""

from __future__ import annotations

import logging
import threading
import time

from rinha.store import Op, Store
from rinha.store.base import ADMIT
from rinha.store.journal import IntakeJournal, sweep

log = logging.getLogger(__name__)

BUSY_POLL = 0.050
IDLE_POLL = 0.100
#: Seconds between two sweeps for the journals of dead instances.
SWEEP_EVERY = 1.0
_RETRY_PAUSE = 0.05
#: After shutdown was asked, a failing store is retried this long; then the journal stays for
#: the next sweep (any instance's, or this one's successor).
_SHUTDOWN_RETRY_SECONDS = 5.0


class JournalMover:
    def __init__(self, store: Store, db: str, journal: IntakeJournal | None):
        self.store = store
        self.db = db
        self.journal = journal
        #: Payments moved from this instance's journal, and from dead instances' journals.
        self.moved = 0
        self.swept = 0
        #: Correlation ids the store held with another amount when their journal row arrived.
        self.conflicts = 0
        self.failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rinha-journal-mover", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Move what is left and close the journal (blocks: call it from a thread)."""
        self._stop.set()
        self._thread.join()

    def _admit(self, rows: list[tuple]) -> tuple[int, list[str]]:
        op = Op(ADMIT, (rows,))
        self.store.apply([op])
        self.conflicts += len(op.result[1])
        return op.result

    def _run(self) -> None:
        journal = self.journal
        own = journal.path if journal is not None else None
        next_sweep = 0.0
        last_busy = give_up_at = 0.0
        while True:
            stopping = self._stop.is_set()
            now = time.monotonic()
            try:
                if journal is not None:
                    while journal.pending() > 0:
                        moved = journal.move(self._admit)
                        if not moved:
                            break
                        self.moved += moved
                        last_busy = now
                    journal.rotate()
                if now >= next_sweep and not stopping:
                    self.swept += sweep(self.db, self._admit, own)
                    next_sweep = now + SWEEP_EVERY
                if self.failing:
                    log.warning("intake journal moves recovered")
                    self.failing = False
            except Exception as exc:
                if not self.failing:
                    log.error("moving intake journals into the store failed, retrying: %s", exc)
                    self.failing = True
                if stopping:
                    give_up_at = give_up_at or now + _SHUTDOWN_RETRY_SECONDS
                    if now >= give_up_at:
                        log.error("store still failing at shutdown; %d payments stay in the intake journal %s "
                                  "for the next sweep", journal.pending() if journal else 0, own)
                        break
                time.sleep(_RETRY_PAUSE)
                continue
            if stopping:
                break
            self._stop.wait(BUSY_POLL if now - last_busy < 1.0 else IDLE_POLL)
        if journal is not None:
            journal.close()
