"""The contest profile against `rinha stack up --with-processors`, topologies alternated (A/B).

For each round and each topology: start the stack on free ports, run ``profiles/contest.js``
with k6, stop the stack, and print one line: the score's figures (accepted, lag, fallback,
inconsistencies, p50/p99, profit) and the backend's cost: CPU seconds of the instances and
nginx over the run, the busiest 100 ms of each process as a share of one CPU, how many 100 ms
windows it spent over its compose ``cpus`` limit (where its container would be throttled), and
the peak RSS of the backend processes together; then what the rest of the machine's load used
over the run (the processors, k6), since all of it shares this machine's two cores, and the
backend's and the processors' CPU per CPU-second of k6 (the host's speed in that run). Prints
only; asserts nothing.

    python -m benchmarks.contest_stack [--topology all split] [--rounds 3] [--stage-seconds 10] [--vus 550]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml

from benchmarks.procstat import children as child_pids, cpu_seconds, rss_mb, thread_sched_seconds
from benchmarks.stack import ROOT, local_stack
from rinha.score import load_summary, score


class Sampler(threading.Thread):
    """Every 100 ms: each process's CPU time, from its threads' ``schedstat`` (nanoseconds: the
    ticks of ``/proc/<pid>/stat`` are 10 ms, a tenth of the window); keeps the busiest window per
    process."""

    def __init__(self, pids: dict[str, int], limits: dict[str, float], period: float = 0.1):
        super().__init__(daemon=True)
        self.pids = pids
        self.limits = limits
        self.period = period
        self.peak_share = {name: 0.0 for name in pids}
        self.windows = 0
        self.over_limit = {name: 0 for name in pids}  # windows over its compose ``cpus``
        self.stopped = threading.Event()

    def run(self) -> None:
        last = {name: self._ran(pid) for name, pid in self.pids.items()}
        last_at = time.monotonic()
        while not self.stopped.wait(self.period):
            now = time.monotonic()
            for name, pid in self.pids.items():
                try:
                    ran = self._ran(pid)
                except OSError:
                    continue
                # a thread born in the window counts from zero; one that ended drops out
                used = sum(seconds - last[name].get(tid, 0.0) for tid, seconds in ran.items())
                share = used / (now - last_at)
                self.peak_share[name] = max(self.peak_share[name], share)
                self.over_limit[name] += share > self.limits.get(name, float("inf"))
                last[name] = ran
            self.windows += 1
            last_at = now

    @staticmethod
    def _ran(pid: int) -> dict[int, float]:
        return {tid: ran for tid, (ran, _) in thread_sched_seconds(pid).items()}


def compose_limits(backend: dict[str, int]) -> dict[str, float]:
    """Each backend process's ``cpus`` in docker-compose.yml (nginx's workers: nginx's)."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    cpus = {name: float(svc["deploy"]["resources"]["limits"]["cpus"]) for name, svc in services.items()}
    service = {name: name.split("-w")[0] for name in backend}  # nginx-w1 -> nginx
    return {name: cpus[service[name]] for name in backend if service[name] in cpus}


def run_once(topology: str, stage_seconds: int, vus: int, workdir: Path) -> dict:
    summary_path = workdir / f"{topology}-{time.monotonic_ns()}.json"
    with local_stack(str(workdir / f"{topology}-{time.monotonic_ns()}.db"), topology) as stack:
        backend = {c["name"]: c["pid"] for c in stack.children("instance")}
        nginx = stack.children("nginx")[0]["pid"]
        for index, worker in enumerate(child_pids(nginx), start=1):  # the master only waits
            backend[f"nginx-w{index}"] = worker
        others = {c["name"]: c["pid"] for c in stack.children("processors")}
        cpu_before = {name: cpu_seconds(pid) for name, pid in {**backend, **others}.items()}
        k6_before = _children_cpu()
        sampler = Sampler(backend, compose_limits(backend))
        sampler.start()
        stack.run_contest(summary_path, vus, stage_seconds)
        sampler.stopped.set()
        sampler.join()
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in backend.items()}
        other_cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in others.items()}
        other_cpu["k6"] = _children_cpu() - k6_before  # k6 is the only child waited for meanwhile
        rss = {name: rss_mb(pid) for name, pid in backend.items()}
    summary = load_summary(summary_path)
    return {"topology": topology, "score": score(summary), "http": summary["http"], "cpu": cpu, "rss": rss,
            "other_cpu": other_cpu, "peak_share": sampler.peak_share, "over_limit": sampler.over_limit, "windows": sampler.windows}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(run: dict) -> None:
    s, http = run["score"], run["http"]
    cpu_total = sum(run["cpu"].values())
    shares = " ".join(f"{name} {share:.2f}" for name, share in sorted(run["peak_share"].items()))
    over = " ".join(f"{name} {n}" for name, n in sorted(run["over_limit"].items()))
    print(f"{run['topology']:>6}: accepted {s.accepted} lag {s.lag} fallback {s.fallback_payments} "
          f"inconsistencies {s.inconsistencies} | p50 {http['p50']:.2f} ms p99 {http['p99']:.2f} ms "
          f"max {http['max']:.0f} ms | profit {s.profit:.2f} | backend CPU {cpu_total:.1f} s "
          f"({', '.join(f'{n} {c:.1f}' for n, c in sorted(run['cpu'].items()))}) | busiest 100 ms: {shares} "
          f"| of {run['windows']} windows over its compose cpus: {over} | peak RSS {sum(run['rss'].values()):.0f} MB "
          f"| the rest's CPU: {', '.join(f'{n} {c:.1f}' for n, c in sorted(run['other_cpu'].items()))} s "
          f"| per k6 CPU-second: {per_k6_second(run)}", flush=True)


def per_k6_second(run: dict) -> str:
    """The CPU of the backend and the processors per CPU-second k6 took in the same run. k6's CPU
    is fixed by the load, not by our code, so it gauges how fast the shared host was meanwhile: the
    ratio lets a variant's CPU be compared across runs where the raw seconds drift with the host."""
    k6 = run["other_cpu"]["k6"]
    if k6 <= 0:
        return "-"
    groups = {"backend": sum(run["cpu"].values()), **{n: c for n, c in run["other_cpu"].items() if n != "k6"}}
    return ", ".join(f"{name} {cpu / k6:.3f}" for name, cpu in groups.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", nargs="+", default=["all", "split"], choices=["all", "split"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stage-seconds", type=int, default=10, help="10 is the contest; 2 is a quick look")
    parser.add_argument("--vus", type=int, default=550)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rinha-contest-stack-"))
    runs: dict[str, list[dict]] = {t: [] for t in args.topology}
    for _ in range(args.rounds):
        for topology in args.topology:
            run = run_once(topology, args.stage_seconds, args.vus, workdir)
            runs[topology].append(run)
            report(run)
    print("medians:")
    for topology, done in runs.items():
        def median(get) -> float:
            return statistics.median(get(r) for r in done)
        print(f"{topology:>6}: p50 {median(lambda r: r['http']['p50']):.2f} ms, p99 {median(lambda r: r['http']['p99']):.2f} ms, "
              f"lag {median(lambda r: r['score'].lag):.0f}, profit {median(lambda r: float(r['score'].profit)):.2f}, "
              f"backend CPU {median(lambda r: sum(r['cpu'].values())):.1f} s, "
              f"peak RSS {median(lambda r: sum(r['rss'].values())):.0f} MB")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
