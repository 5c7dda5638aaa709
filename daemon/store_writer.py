"""The store writer: one thread applies every write of this process, in group commits.

Callers hand it :class:`rinha.store.Op` values. The thread takes whatever has queued while
the previous transaction was committing and applies it as one transaction, so every request
that arrived during a commit shares the next one: durability costs one short transaction per
batch, not one per request, and the event loop never waits on the database itself.

* ``await writer.write(kind, *args)`` returns once the op's batch has committed (its result),
  or raises :class:`StoreUnavailable` if that batch failed: the caller must not report success.
* ``writer.write_nowait(kind, *args)`` queues an op whose outcome the caller does not wait for
  (recording a payment as paid). If its batch fails, it is retried until the store recovers:
  such an op is never dropped while the process lives. A batch of such ops alone lingers up to
  ``LINGER`` seconds to share its commit with more; an awaited op commits at once, and takes
  the lingering ones with it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import asynccontextmanager

import trio

from rinha.store import Op, Store

log = logging.getLogger(__name__)

_STOP = Op("stop", ())
_RETRY_PAUSE = 0.05
#: Seconds without a failed write before the store counts as recovered.
_RECOVERED_AFTER = 1.0
#: How long fire-and-forget ops wait for company before committing alone (seconds).
LINGER = 0.002
#: After shutdown was asked, unwritten ops are retried this long; the payments they concern stay
#: pending in the store and are settled on the next start (a resend meets the processor's 422).
_SHUTDOWN_RETRY_SECONDS = 5.0


class StoreUnavailable(Exception):
    """The store refused a write (locked, read-only, disk full...). Nothing was committed."""


class StoreWriter:
    def __init__(self, store: Store):
        self.store = store
        self._queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.failing = False

    @asynccontextmanager
    async def running(self):
        """Run the writer thread for the duration of the block; on exit, commit what is queued."""
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._loop, name="rinha-store-writer", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._queue.put(_STOP)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._thread.join)

    async def write(self, kind: str, *args) -> object:
        op = Op(kind, args, waiter=trio.lowlevel.current_task())
        self._queue.put(op)
        # Not cancellable while queued: the op will commit or fail, and the caller must learn which.
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        if op.error is not None:
            raise StoreUnavailable(str(op.error)) from op.error
        return op.result

    def write_nowait(self, kind: str, *args) -> None:
        self._queue.put(Op(kind, args))

    def _loop(self) -> None:
        get = self._queue.get
        stopping = False
        retry: list[Op] = []
        give_up_at = float("inf")
        last_failure = 0.0
        while not (stopping and not retry):
            if stopping and time.monotonic() > give_up_at:
                log.error("store still failing at shutdown; %d writes left for the next start to settle", len(retry))
                return
            batch = retry
            retry = []
            if not batch:
                op = get()
                if op is _STOP:
                    stopping = True
                    give_up_at = time.monotonic() + _SHUTDOWN_RETRY_SECONDS
                else:
                    batch.append(op)
            # Gather what is queued; while nobody waits for this batch, linger for company.
            linger_until = time.monotonic() + LINGER
            waited = any(op.waiter is not None for op in batch)
            while True:
                timeout = 0 if (waited or stopping) else linger_until - time.monotonic()
                try:
                    op = get(timeout=timeout) if timeout > 0 else get(block=False)
                except queue.Empty:
                    break
                if op is _STOP:
                    stopping = True
                    give_up_at = time.monotonic() + _SHUTDOWN_RETRY_SECONDS
                else:
                    batch.append(op)
                    waited = waited or op.waiter is not None
            if not batch:
                continue
            try:
                self.store.apply(batch)
                self.batches += 1
                # A full disk lets small batches through between failures: recovered means no
                # write held back and none failed for a while, so the log says it once.
                if self.failing and not retry and time.monotonic() - last_failure >= _RECOVERED_AFTER:
                    log.warning("store writes recovered")
                    self.failing = False
            except Exception as exc:
                last_failure = time.monotonic()
                if not self.failing:
                    log.error("store write failed, retrying: %s", exc)
                    self.failing = True
                for op in batch:
                    if op.waiter is None:
                        retry.append(op)
                    else:
                        op.error = exc
                if retry:
                    time.sleep(_RETRY_PAUSE)
            waiters = [op.waiter for op in batch if op.waiter is not None]
            if waiters:
                self._token.run_sync_soon(_wake, waiters)


def _wake(tasks: list) -> None:
    for task in tasks:
        trio.lowlevel.reschedule(task)
