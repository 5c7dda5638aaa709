"""The processor's two admission controls, as ASP.NET Core's rate limiting middleware runs them.

* :class:`ConcurrencyLimiter` (``POST /payments`` and ``GET /payments/{id}``): 800 permits,
  then a FIFO queue of 500, then rejection. A permit is held until the endpoint returns.
* :class:`HealthLimiter` (``GET /payments/service-health``): one global fixed-window partition,
  1 permit per window, a FIFO queue of 2 served at the next refills, then rejection. Refills
  happen on a housekeeping tick every 100 ms, at the first tick at least one window after the
  previous refill. The partition is created by the first request (permit available at once,
  window anchored there) and discarded once idle (permit unused, queue empty) for more than
  10 s; the next request creates a fresh one.

Both are plain trio objects for one event loop; ``acquire()`` returns False for a rejection.
"""

from __future__ import annotations

from collections import deque

import trio

#: ``PermitLimit`` and ``QueueLimit`` of the "concurrency" policy.
CONCURRENCY_PERMITS = 800
CONCURRENCY_QUEUE = 500
#: ``QueueLimit`` of the health policy (its ``PermitLimit`` is 1).
HEALTH_QUEUE = 2
#: The partitioned limiter's housekeeping period and idle limit (framework constants).
HOUSEKEEPING_TICK = 0.1
IDLE_LIMIT = 10.0

# Tick times are sums of floats; a refill due "at least W after" must not slip a tick on rounding.
_EPSILON = 1e-6


class ConcurrencyLimiter:
    """``permits`` run at once, ``queue_limit`` wait in arrival order, the rest are refused."""

    def __init__(self, permits: int = CONCURRENCY_PERMITS, queue_limit: int = CONCURRENCY_QUEUE):
        self.queue_limit = queue_limit
        self._available = permits
        self._queue: deque[trio.Event] = deque()

    async def acquire(self) -> bool:
        """Take a permit, waiting in the queue if there is room; False if refused.

        Every True must be matched by one :meth:`release`.
        """
        if self._available:
            self._available -= 1
            return True
        if len(self._queue) >= self.queue_limit:
            return False
        grant = trio.Event()
        self._queue.append(grant)
        try:
            await grant.wait()
        except BaseException:
            if grant.is_set():
                self.release()
            else:
                self._queue.remove(grant)
            raise
        return True

    def release(self) -> None:
        """Return a permit: it goes straight to the oldest waiter, if any."""
        if self._queue:
            self._queue.popleft().set()
        else:
            self._available += 1


class _Window:
    """The live partition: its permit, last refill, idle start and waiters."""

    __slots__ = ("permit", "last_refill", "idle_since", "queue")

    def __init__(self, now: float):
        self.permit = True
        self.last_refill = now
        self.idle_since: float | None = now
        self.queue: deque[trio.Event] = deque()


class HealthLimiter:
    """The fixed-window limiter of the health endpoint; :meth:`run` must be running beside it."""

    def __init__(self, window: float, *, queue_limit: int = HEALTH_QUEUE, idle_limit: float = IDLE_LIMIT,
                 tick: float = HOUSEKEEPING_TICK):
        self.window = window
        self.queue_limit = queue_limit
        self.idle_limit = idle_limit
        self.tick = tick
        self._partition: _Window | None = None

    async def acquire(self) -> bool:
        """Take this window's permit, or wait for a later one if the queue has room; False if refused."""
        partition = self._partition
        if partition is None:
            partition = self._partition = _Window(trio.current_time())
        if partition.permit:
            partition.permit = False
            partition.idle_since = None
            return True
        if len(partition.queue) >= self.queue_limit:
            return False
        grant = trio.Event()
        partition.queue.append(grant)
        try:
            await grant.wait()
        except BaseException:
            if not grant.is_set():
                partition.queue.remove(grant)
            raise
        return True

    def housekeep(self, now: float) -> None:
        """One housekeeping tick at ``now``: discard an idle partition, or refill a due one."""
        partition = self._partition
        if partition is None:
            return
        if partition.idle_since is not None and now - partition.idle_since > self.idle_limit:
            self._partition = None
            return
        if now - partition.last_refill < self.window - _EPSILON:
            return
        partition.last_refill = now
        if partition.permit:
            return
        if partition.queue:
            partition.queue.popleft().set()
        else:
            partition.permit = True
            partition.idle_since = now

    async def run(self) -> None:
        """Tick every ``tick`` seconds from now on, in a fixed phase, until cancelled."""
        start = trio.current_time()
        count = 0
        while True:
            count += 1
            await trio.sleep_until(start + count * self.tick)
            now = trio.current_time()
            self.housekeep(now)
            count = max(count, int((now - start) / self.tick))
