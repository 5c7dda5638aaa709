"""Where the contest's slowest requests fall: per second of the run, and what each process used meanwhile.

The p99 is the slowest 1 % (~330 requests of a run at 1,100 VUs). For each second of one run of
``profiles/contest.js`` this prints the requests over the whole run's p99, the p99 within that
second, the CPU each process group used in it (k6, the processors, nginx, each instance), the
time its threads waited for a core while runnable (the scheduler's run-queue delay), how long the
cores stayed idle and how long the VM's host gave them to another guest (``steal``), so that a
tail can be put on its cause: a drain (the worker and the processors busy after 40 s), k6's own
garbage collector (k6's CPU doubling for a second), contention for the cores (waits high while
the machine still has idle time), a busy host (steal), or the load itself. Then the seconds
that hold most of the tail, and the bursts it comes in (slow requests each ending less than
50 ms after the one before). k6 writes every request to a CSV file for this (``--out csv``),
which costs it some CPU: compare runs of this script with each other, not with
``contest_stack``. ``--topology floor`` runs the same against nginx answering alone
(``floor.py``). Prints only; asserts nothing.

    python -m benchmarks.tail [--vus 1100] [--topology split|all|floor] [--stage-seconds 10]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from benchmarks.floor import nginx_alone
from benchmarks.procstat import thread_sched_seconds
from benchmarks.stack import local_stack


def group_of(pid: int) -> str | None:
    """The process group a pid belongs to, from its command line; None: not part of the run."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    name = os.path.basename(argv[0])
    if name == "k6":
        return "k6"
    if name.startswith("nginx"):
        return "nginx"
    if "processors" in argv:
        return "processors"
    if "serve" in argv and "--listen" in argv:  # `rinha serve --listen unix:/run/.../api1.sock`
        return os.path.basename(argv[argv.index("--listen") + 1]).removesuffix(".sock")
    return None


def machine_seconds() -> dict[str, float]:
    """CPU seconds since boot, all cores: idle (iowait counts as idle) and stolen by the VM's host."""
    with open("/proc/stat") as f:
        fields = f.readline().split()  # cpu user nice system idle iowait irq softirq steal ...
    tick = os.sysconf("SC_CLK_TCK")
    return {"idle": (int(fields[4]) + int(fields[5])) / tick, "steal": int(fields[8]) / tick}


class SchedPerSecond(threading.Thread):
    """Every second, per process group (every process on the machine, by group): the CPU seconds
    its threads used in it and the seconds they waited, runnable, for a core (run-queue delay);
    and how long the machine's cores stayed idle (``idle``: 2.0 is an idle 2-core machine) or ran
    another guest of the host (``steal``)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.rows: list[tuple[float, dict[str, list[float]]]] = []
        self.stopped = threading.Event()
        self._groups: dict[int, str] = {}
        self._last: dict[tuple[int, int], tuple[float, float]] = {}
        self._machine = machine_seconds()

    def run(self) -> None:
        self._sample()
        while not self.stopped.wait(1.0):
            self.rows.append((time.time(), self._sample()))

    def _sample(self) -> dict[str, list[float]]:
        used: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            group = self._groups.get(pid) or group_of(pid)  # unknown pids again: a shim may exec k6
            if group is None:
                continue
            self._groups[pid] = group
            try:
                threads = thread_sched_seconds(pid)
            except OSError:
                continue
            for tid, (ran, waited) in threads.items():
                last = self._last.get((pid, tid))
                if last is not None:
                    used[group][0] += ran - last[0]
                    used[group][1] += waited - last[1]
                self._last[(pid, tid)] = (ran, waited)
        machine = machine_seconds()
        for name, seconds in machine.items():
            used[name] = [seconds - self._machine[name], 0.0]
        self._machine = machine
        return used


def durations(csv_path: Path) -> list[tuple[float, float]]:
    """(unix seconds, ms) of every request the contest's p99 covers (expected responses)."""
    found = []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["metric_name"] == "http_req_duration" and row["expected_response"] == "true":
                found.append((int(row["timestamp"]) / 1000, float(row["metric_value"])))
    return found


def _cell(group: str, used: list[float] | None) -> str:
    if used is None:
        return f"{'-':>11}"
    if group in ("idle", "steal"):
        return f"{used[0]:>11.2f}"
    return f"{used[0]:>6.2f}/{used[1]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="split", choices=["split", "all", "floor"])
    parser.add_argument("--vus", type=int, default=1100)
    parser.add_argument("--stage-seconds", type=int, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rinha-tail-"))
    try:
        target = nginx_alone(workdir) if args.topology == "floor" else local_stack(str(workdir / "rinha.db"), args.topology)
        sampler = SchedPerSecond()
        with target as stack:
            sampler.start()
            k6 = stack.start_contest(workdir / "summary.json", args.vus, args.stage_seconds, workdir / "requests.csv")
            k6.wait()
            sampler.stopped.set()
            sampler.join()
        requests = durations(workdir / "requests.csv")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not requests:
        raise SystemExit("k6 recorded no request")

    ordered = sorted(ms for _, ms in requests)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    start = min(at for at, _ in requests)
    per_second = defaultdict(list)
    for at, ms in requests:
        per_second[int(at - start)].append(ms)
    sched = {int(at - start) - 1: used for at, used in sampler.rows}  # a sample covers the second before it
    groups = sorted({g for _, used in sampler.rows for g in used})
    print(f"{args.topology}, {args.vus} VUs: {len(ordered)} requests, p50 {ordered[len(ordered) // 2]:.2f} ms, "
          f"p99 {p99:.2f} ms (k6 writing a CSV)")
    print(f"{'second':>6} {'requests':>8} {'> p99':>6} {'its p99':>8} | seconds on a CPU / waiting for one: "
          + " ".join(f"{g:>11}" for g in groups))
    for second in sorted(per_second):
        its = sorted(per_second[second])
        used = sched.get(second, {})
        print(f"{second:>6} {len(its):>8} {sum(ms > p99 for ms in its):>6} {its[min(len(its) - 1, int(len(its) * 0.99))]:>8.2f} | "
              f"{'':36}" + " ".join(_cell(g, used.get(g)) for g in groups))
    over = Counter({second: sum(ms > p99 for ms in its) for second, its in per_second.items()})
    total = sum(over.values())
    top = [(second, n) for second, n in over.most_common(8) if n]
    print(f"the {total} requests over p99: {sum(n for _, n in top) * 100 // max(total, 1)} % in seconds "
          + ", ".join(f"{second} ({n})" for second, n in sorted(top)))
    bursts = tail_bursts([(at - start, ms) for at, ms in requests if ms > p99])
    biggest = sorted(bursts, key=len, reverse=True)[:8]
    print(f"they end in {len(bursts)} bursts (over p99 less than {BURST_GAP * 1000:.0f} ms apart); the 8 biggest hold "
          f"{sum(map(len, biggest)) * 100 // max(total, 1)} %: "
          + ", ".join(f"{b[0][0]:.2f} s ({len(b)} in {(b[-1][0] - b[0][0]) * 1000:.0f} ms, up to {max(ms for _, ms in b):.0f} ms)"
                      for b in sorted(biggest)))


#: Requests over p99 that end less than this apart (seconds) belong to one burst.
BURST_GAP = 0.05


def tail_bursts(slow: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """The slow requests (end time, ms) grouped into bursts: a tail made of a few bursts of dozens
    of requests is a few stalls of something every request goes through (a loop, nginx, k6, the
    cores), not requests slow one by one."""
    bursts: list[list[tuple[float, float]]] = []
    for at, ms in sorted(slow):
        if bursts and at - bursts[-1][-1][0] < BURST_GAP:
            bursts[-1].append((at, ms))
        else:
            bursts.append([(at, ms)])
    return bursts


if __name__ == "__main__":
    main()
