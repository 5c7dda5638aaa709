"""CPU seconds and peak RSS of running processes, read from /proc (Linux)."""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, including its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICKS


def thread_sched_seconds(pid: int) -> dict[int, tuple[float, float]]:
    """Per thread of a process: (seconds on a CPU, seconds runnable but waiting for one), from
    ``/proc/<pid>/task/<tid>/schedstat``. The wait is the scheduler's run-queue delay: time a
    thread was ready to run while other tasks held the cores."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ran, waited, _ = f.read().split()
        except OSError:
            continue  # the thread ended
        found[int(tid)] = (int(ran) / 1e9, int(waited) / 1e9)
    return found


def rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    """The direct children of a process (nginx's workers under its master, for instance)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found
