"""The processor's delay filter (``Task.Delay``): many requests' waits on one timer.

``trio.sleep`` costs each waiting request a cancel scope, a deadline in trio's table and a
``Cancelled`` raised and caught when it runs out. When the daemon drains a backlog through a
processor at 20 ms (~2,700 requests/s on the 2-core test machine) that machinery was ~40 % of
the emulator's CPU (``py-spy``), CPU the contest's compiled processors would not take from the
backend. Here a waiting request only parks, filed under the millisecond its delay ends on, and
one timer task (:meth:`DelayTimer.run`) sleeps until the earliest such millisecond and wakes
every request due by then.

Ends are rounded up to whole milliseconds of trio's clock, so a delay of D ms lasts from D to
D + 1 ms (plus the loop's own latency, as with ``trio.sleep``): the resolution of the .NET timer
the real processor waits on. A request cancelled in its delay leaves at once.
"""

from __future__ import annotations

import heapq
import math

import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled


class DelayTimer:
    """Requests wait in :meth:`wait`; :meth:`run` must be running (it is the processor's housekeeping)."""

    def __init__(self) -> None:
        #: Waiting tasks by the millisecond (of trio's clock) their delay ends on.
        self._due: dict[int, list[Task]] = {}
        #: The keys of ``_due``, as a heap. A list may be empty: its requests were cancelled.
        self._ends: list[int] = []
        #: The timer task's current sleep, while it sleeps.
        self._sleep: trio.CancelScope | None = None

    async def wait(self, delay_ms: int) -> None:
        """Return once ``delay_ms`` (> 0) milliseconds have passed. A checkpoint: it may raise Cancelled.

        A wait made before :meth:`run` starts (both are started soon, in either order) ends on
        time once it does; without :meth:`run`, it never ends."""
        end = math.ceil(trio.current_time() * 1000) + delay_ms
        task = current_task()
        waiting = self._due.get(end)
        if waiting is None:
            self._due[end] = waiting = [task]
            heapq.heappush(self._ends, end)
            if self._sleep is not None and end / 1000 < self._sleep.deadline:
                self._sleep.deadline = end / 1000  # earlier than anything else: wake the timer for it
        else:
            waiting.append(task)

        def abort(_) -> Abort:
            waiting.remove(task)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    async def run(self) -> None:
        """Wake each waiting request when its delay is over; runs until cancelled."""
        try:
            while True:
                with trio.CancelScope(deadline=self._ends[0] / 1000 if self._ends else math.inf) as self._sleep:
                    await trio.sleep_forever()
                self._sleep = None
                self._wake_due(trio.current_time())
        finally:
            self._sleep = None

    def _wake_due(self, now: float) -> None:
        ends, due = self._ends, self._due
        while ends and ends[0] / 1000 <= now:  # the same float as the deadline that woke the timer
            for task in due.pop(heapq.heappop(ends)):
                reschedule(task)
