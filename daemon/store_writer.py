"""The store writer: every write of this process, applied in short transactions (batches).

Callers hand it :class:`rinha.store.Op` values. Durability costs one short transaction (tens of
microseconds in SQLite's WAL mode, no fsync), never a disk flush per request; ops that need not
be waited for share the next one.

* ``await writer.write(kind, *args)`` returns once the op's batch has committed (its result),
  or raises :class:`StoreUnavailable` if that batch failed: the caller must not report success.
  When it commits on the spot (below), it returns without yielding to other tasks.
* ``writer.write_nowait(kind, *args)`` queues an op whose outcome the caller does not wait for
  (recording a payment as paid). If its batch fails, it is retried until the store recovers:
  such an op is never dropped while the process lives. A batch of such ops alone lingers up to
  ``LINGER`` seconds to share its commit with more; an awaited op commits at once, and takes
  the lingering ones with it.

Where a batch is written. When the store can commit at once (SQLite, the write lock free or
freed within ``_INLINE_PATIENCE``, only single-row ops), an awaited write commits on the spot, on the event loop,
with whatever fire-and-forget ops are lingering: a few tens of microseconds, less than handing it
to a thread and being woken back, or than waking a flusher task (measured in
``benchmarks/README.md``). A flusher task commits the lingering ones no awaited write took.
Anything else (another process holds the lock, a bulk op like a claim or a purge, an engine
across the network, a failure) goes to the writer thread, which waits, retries and reports, and
batches there whatever queued while it was busy. Until the thread has written all it was given,
later batches follow it there, so batches commit in the order they were gathered.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import asynccontextmanager

import trio

from rinha.daemon.metrics import Histogram
from rinha.store import Op, Store
from rinha.store.base import ACCEPT, ATTEMPT, CLAIM, DEAD, HEALTH, HEARTBEAT, LEASE, PAID, PIN, REBIND

log = logging.getLogger(__name__)

_STOP = [Op("stop", ())]
_RETRY_PAUSE = 0.05
#: Seconds without a failed write before the store counts as recovered.
_RECOVERED_AFTER = 1.0
#: How long fire-and-forget ops wait for company before committing alone (seconds). An awaited
#: write (an accepted payment) usually takes them with it first: at 550 payments/s, 2 ms let half
#: of them commit alone (1.16 commits per payment); 10 ms, almost none (1.02).
LINGER = 0.010
#: After shutdown was asked, unwritten ops are retried this long; the payments they concern stay
#: pending in the store and are settled on the next start (a resend meets the processor's 422).
_SHUTDOWN_RETRY_SECONDS = 5.0
#: Ops that touch a row or two, or a bounded few (a claim takes at most its limit: the
#: dispatcher's is 64 rows, ~0.3 ms of SQLite's lock): a batch of these may commit on the event loop.
_SMALL = frozenset({ACCEPT, PAID, PIN, REBIND, DEAD, ATTEMPT, HEALTH, HEARTBEAT, LEASE, CLAIM})
#: How long the loop waits (in short naps) for another process's commit before handing the batch
#: to the thread. A worker's commit (a claim, a batch of paid records) holds the lock 0.3-1 ms
#: while it drains a backlog; the thread's hand-off costs more: it waits for the lock too, then
#: for the GIL between its statements while holding the lock (1-4 ms), and later batches follow
#: it there. Contest profile at 1,100 VUs, split topology, alternated three times: accepts over
#: 2.5 ms 554-1,004 at 0.3 ms -> 183-285 at 1 ms (-> 48-85 at 3 ms, but no better end to end:
#: the loop's other connections wait meanwhile).
_INLINE_PATIENCE = 0.001
#: Larger batches go to the thread: a commit on the loop delays every connection's answer.
_INLINE_MAX = 64
#: Seconds between checkpoints of what the loop committed (it never checkpoints itself: a
#: checkpoint writes the database file and may wait for the disk).
_CHECKPOINT_EVERY = 0.25


#: Awaited writes that did not commit on the spot, and how long their callers waited. On
#: SQLite, besides the bulk writes, these are the writes that met the write lock held by
#: another process (or followed such a one to the thread): before intake-only instances had a
#: journal (``rinha.store.journal``), 2 % of their accepts at 1,100 VUs and most of those over
#: 5 ms (``benchmarks/README.md``). On PostgreSQL, every awaited write.
DEFERRED_WRITES = Histogram(
    "rinha_store_deferred_write_seconds",
    "Writes a caller waited for that did not commit on the event loop at once (bulk writes, the write lock "
    "held by another process, earlier writes still on the writer thread, or an engine across the network), "
    "from hand-off to commit, in seconds.",
)


class StoreUnavailable(Exception):
    """The store refused a write (locked, read-only, disk full...). Nothing was committed."""


class StoreWriter:
    def __init__(self, store: Store):
        self.store = store
        #: The store's commit-on-the-calling-thread, if it has one (SQLite does; PostgreSQL not).
        self._apply_now = getattr(store, "apply_now", None)
        self._queue: queue.SimpleQueue[list[Op]] = queue.SimpleQueue()
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self._pending: list[Op] = []
        self._has_ops = trio.Event()
        self._urgent = trio.Event()
        #: Batches handed to the thread and not yet written (later ones must follow them).
        self._offloaded = 0
        self._inline_since_checkpoint = 0
        self.batches = 0
        #: Of ``batches``, how many committed on the event loop.
        self.inline_batches = 0
        self.failing = False

    @asynccontextmanager
    async def running(self):
        """Write for the duration of the block; on exit, commit what is queued."""
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._loop, name="rinha-store-writer", daemon=True)
        self._thread.start()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flusher)
                if self._apply_now is not None:
                    nursery.start_soon(self._checkpointer)
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            if self._pending:
                self._queue.put(self._pending)
                self._pending = []
            self._queue.put(_STOP)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._thread.join)

    async def write(self, kind: str, *args) -> object:
        op = Op(kind, args, waiter=trio.lowlevel.current_task())
        self._pending.append(op)
        if self._offloaded == 0 and len(self._pending) <= _INLINE_MAX:
            # Commit now, with the fire-and-forget ops lingering: no task switch at all.
            batch, self._pending = self._pending, []
            if self._commit_here(batch, op.waiter):
                if len(batch) > 1:
                    self._urgent.set()  # the flusher's lingering ops are written: no timer wake-up for it
                return op.result
            self._offloaded += 1
            self._queue.put(batch)
        else:
            self._has_ops.set()
            self._urgent.set()
        handed_off = time.perf_counter()
        # Not cancellable while queued: the op will commit or fail, and the caller must learn which.
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        DEFERRED_WRITES.observe(time.perf_counter() - handed_off)
        if op.error is not None:
            raise StoreUnavailable(str(op.error)) from op.error
        return op.result

    def write_nowait(self, kind: str, *args) -> None:
        self._pending.append(Op(kind, args))
        self._has_ops.set()

    async def _flusher(self) -> None:
        while True:
            await self._has_ops.wait()  # a checkpoint even when set: this tick's writers join
            if not self._urgent.is_set():
                with trio.move_on_after(LINGER):
                    await self._urgent.wait()
            batch, self._pending = self._pending, []
            self._has_ops = trio.Event()
            self._urgent = trio.Event()
            if not batch:  # an awaited write took them
                continue
            if not (self._offloaded == 0 and len(batch) <= _INLINE_MAX and self._commit_here(batch)):
                self._offloaded += 1
                self._queue.put(batch)

    def _commit_here(self, batch: list[Op], current=None) -> bool:
        """Commit on the loop if the store can without waiting longer than ``_INLINE_PATIENCE``;
        False: the thread must. Wakes the waiters of the batch but ``current``, the task
        committing it."""
        if self._apply_now is None or any(op.kind not in _SMALL for op in batch):
            return False
        try:
            if not self._apply_now(batch, _INLINE_PATIENCE):
                return False
        except Exception:
            return False  # the thread retries it, and logs if it keeps failing
        self.batches += 1
        self.inline_batches += 1
        self._inline_since_checkpoint += 1
        for op in batch:
            if op.waiter is not None and op.waiter is not current:
                trio.lowlevel.reschedule(op.waiter)
        return True

    async def _checkpointer(self) -> None:
        while True:
            await trio.sleep(_CHECKPOINT_EVERY)
            if self._inline_since_checkpoint:
                self._inline_since_checkpoint = 0
                await trio.to_thread.run_sync(self.store.checkpoint)

    def _written(self, waiters: list, batches: int) -> None:
        """On the loop: the thread has written ``batches`` of the batches it was given."""
        self._offloaded -= batches
        for task in waiters:
            trio.lowlevel.reschedule(task)

    def _loop(self) -> None:
        get = self._queue.get
        stopping = False
        retry: list[Op] = []
        taken = 0  # batches taken from the queue and not yet reported written
        give_up_at = float("inf")
        last_failure = 0.0
        while not (stopping and not retry):
            if stopping and time.monotonic() > give_up_at:
                log.error("store still failing at shutdown; %d writes left for the next start to settle", len(retry))
                return
            batch = retry
            retry = []
            items = [] if batch else [get()]
            while True:  # and whatever else is queued
                try:
                    items.append(get(block=False))
                except queue.Empty:
                    break
            for item in items:
                if item is _STOP:
                    stopping = True
                    give_up_at = time.monotonic() + _SHUTDOWN_RETRY_SECONDS
                else:
                    batch.extend(item)
                    taken += 1
            if batch:
                try:
                    self.store.apply(batch)
                    self.batches += 1
                    # A full disk lets small batches through between failures: recovered means no
                    # write held back and none failed for a while, so the log says it once.
                    if self.failing and time.monotonic() - last_failure >= _RECOVERED_AFTER:
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
            if waiters or (taken and not retry):
                done, taken = (0, taken) if retry else (taken, 0)
                self._token.run_sync_soon(self._written, waiters, done)
