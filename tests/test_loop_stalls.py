"""The event-loop stall watch (``rinha.daemon.stalls``) on a real trio loop: a turn that blocks
off-CPU and one that computes are both stalls; only the first counts as off-CPU time. And the
loop thread's waits for a core, as the kernel counts them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import trio

from rinha.daemon.metrics import Histogram
from rinha.daemon.stalls import StallWatch


def spin(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU (however long the machine makes that take)."""
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass


def test_blocking_and_computing_turns_are_stalls_and_only_blocking_is_off_cpu(monkeypatch):
    stalls = Histogram("t_seconds", "test", (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
    monkeypatch.setattr("rinha.daemon.stalls.LOOP_STALLS", stalls)
    watch = StallWatch()

    async def main() -> None:
        await trio.sleep(0.01)
        count, total, off_cpu = stalls.count, stalls.sum, watch.off_cpu_seconds
        time.sleep(0.03)  # blocks the loop off a CPU
        await trio.sleep(0.01)
        assert stalls.count > count and stalls.sum - total >= 0.03
        assert watch.off_cpu_seconds - off_cpu >= 0.025

        count, total, off_cpu = stalls.count, stalls.sum, watch.off_cpu_seconds
        spin(0.03)  # holds the loop on a CPU for 30 ms of its thread's time
        await trio.sleep(0.01)
        assert stalls.count > count and stalls.sum - total >= 0.03
        # off-CPU is the stall's time minus the CPU the thread used: at least 30 ms less than the stall
        assert watch.off_cpu_seconds - off_cpu <= stalls.sum - total - 0.03 + 1e-6

    trio.run(main, instruments=[watch])


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="this kernel keeps no schedstat")
def test_the_loop_threads_waits_for_a_core_are_read_from_the_kernel():
    """The loop's thread pinned to one core beside a process spinning there: it waits for that core,
    and the watch reads the wait."""
    assert StallWatch().runqueue_wait_seconds() is None  # not installed: no thread to read
    core = min(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    watch = StallWatch()

    async def main() -> tuple[float, float]:
        watch.install()
        before = watch.runqueue_wait_seconds()
        mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {core})  # this thread only: the loop's
        try:
            deadline = time.monotonic() + 10
            while watch.runqueue_wait_seconds() - before < 0.02 and time.monotonic() < deadline:
                spin(0.01)  # runnable all along: whenever the spinner holds the core, this thread waits
        finally:
            os.sched_setaffinity(0, mask)
        return before, watch.runqueue_wait_seconds()

    try:
        before, after = trio.run(main)
    finally:
        spinner.kill()
        spinner.wait()
    assert after - before >= 0.02
