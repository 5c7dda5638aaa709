"""Event-loop stalls: turns of trio's loop that kept it away from its sockets for over 1 ms.

Every request an instance holds waits while its loop runs one turn (the ready tasks, one after
another, between two polls of the sockets). A turn that lasts longer than :data:`STALL` is
observed into :data:`LOOP_STALLS`, and the part of it the loop's thread spent off a CPU is added
to :attr:`StallWatch.off_cpu_seconds`: time it waited, runnable, for a core held by another
process, for the GIL held by another thread, or in a blocking call (the store's short naps for
SQLite's write lock). Stalls that are mostly off-CPU say the machine is short of cores (on the
2-core test machine, 4-9 ms waits for a core in the middle of a 0.3 ms request were the
1,100-VU tail: ``benchmarks/README.md``); stalls that are mostly on-CPU say this process has too
much to do in one turn.

Cost: two clock reads per turn (one of them the thread's CPU clock, ~0.6 µs) and a comparison;
with trio's calls of the hooks, 1.9 µs per turn (3.4 -> 5.4 µs in a loop of bare checkpoints).

A turn is timed from the moment the loop's poll returns, so a stall misses the wait before it:
the loop's thread woken by a request and left waiting for a core. The kernel counts that wait
(``schedstat``); :meth:`StallWatch.runqueue_wait_seconds` reads it when asked (``/metrics``), at
no cost per turn. On the 2-core test machine an api instance's loop waited for a core ~0.16 ms
per request it served, four to five times what its stalls counted off a CPU
(``benchmarks/README.md``, eleventh session).
"""

from __future__ import annotations

import threading
from time import perf_counter, thread_time

import trio

from rinha.daemon.metrics import Histogram

#: A turn longer than this counts as a stall (seconds).
STALL = 0.001

LOOP_STALLS = Histogram(
    "rinha_loop_stall_seconds",
    "Turns of the event loop that kept it from its sockets for over 1 ms, by duration, in seconds.",
    (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


class StallWatch(trio.abc.Instrument):
    """A trio instrument timing each turn of the loop (from one poll of the sockets to the next)."""

    def __init__(self) -> None:
        # Timing starts at the loop's first poll: until then nothing waits on its sockets.
        self._started = float("inf")
        self._cpu_at_start = 0.0
        #: Of the stalls' time, seconds the loop's thread was not running on a CPU.
        self.off_cpu_seconds = 0.0
        #: The loop's thread (its kernel id), once :meth:`install` ran on it.
        self.thread_id: int | None = None

    def install(self) -> None:
        """Watch the running trio loop (call it from the loop)."""
        self.thread_id = threading.get_native_id()
        trio.lowlevel.add_instrument(self)

    def runqueue_wait_seconds(self) -> float | None:
        """Seconds the loop's thread has spent runnable but waiting for a core, since it started
        (the kernel's ``schedstat``): each request the loop held meanwhile waited as long. None
        before :meth:`install`, or where the kernel does not say."""
        if self.thread_id is None:
            return None
        try:
            with open(f"/proc/self/task/{self.thread_id}/schedstat") as schedstat:
                return int(schedstat.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return None

    def after_io_wait(self, timeout: float) -> None:
        self._started = perf_counter()
        self._cpu_at_start = thread_time()

    def before_io_wait(self, timeout: float) -> None:
        wall = perf_counter() - self._started
        if wall > STALL:
            LOOP_STALLS.observe(wall)
            self.off_cpu_seconds += max(0.0, wall - (thread_time() - self._cpu_at_start))


#: This process's watch (``rinha serve`` installs it on its loop; ``/metrics`` reads it).
WATCH = StallWatch()
