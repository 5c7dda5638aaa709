"""The contest profile against `rinha stack up --with-processors`, topologies alternated (A/B).

For each round and each topology: start the stack on free ports, run ``profiles/contest.js``
with k6, stop the stack, and print one line: the score's figures (accepted, lag, fallback,
inconsistencies, p50/p99, profit) and the backend's cost: CPU seconds of the instances and
nginx over the run, the busiest 100 ms of each process as a share of one CPU (compare with its
compose ``cpus`` limit), and the peak RSS of the backend processes together. Prints only;
asserts nothing. k6, the processors and the backend share this machine's cores.

    python -m benchmarks.contest_stack [--topology all split] [--rounds 3] [--stage-seconds 10] [--vus 550]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.procstat import children as child_pids, cpu_seconds, rss_mb
from rinha.score import load_summary, score
from tests.support.procs import free_port, rinha_command

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Every 100 ms: each process's CPU ticks; keeps the busiest window per process."""

    def __init__(self, pids: dict[str, int], period: float = 0.1):
        super().__init__(daemon=True)
        self.pids = pids
        self.period = period
        self.peak_share = {name: 0.0 for name in pids}
        self.stopped = threading.Event()

    def run(self) -> None:
        last = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        last_at = time.monotonic()
        while not self.stopped.wait(self.period):
            now = time.monotonic()
            for name, pid in self.pids.items():
                try:
                    cpu = cpu_seconds(pid)
                except OSError:
                    continue
                self.peak_share[name] = max(self.peak_share[name], (cpu - last[name]) / (now - last_at))
                last[name] = cpu
            last_at = now


def run_once(topology: str, stage_seconds: int, vus: int, workdir: Path) -> dict:
    port, default_port, fallback_port = free_port(), free_port(), free_port()
    runtime = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    db = workdir / f"{topology}-{port}.db"
    stack = subprocess.Popen(
        rinha_command("stack", "up", "--with-processors", "--topology", topology, "--port", str(port),
                      "--db", str(db), "--runtime-dir", str(runtime), "--log-level", "warning",
                      "--default-url", f"http://127.0.0.1:{default_port}",
                      "--fallback-url", f"http://127.0.0.1:{fallback_port}"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (runtime / "stack.json").exists() and httpx.get(
                        f"http://127.0.0.1:{port}/payments-summary", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or stack.poll() is not None:
                raise RuntimeError(f"stack ({topology}) did not start")
            time.sleep(0.1)
        children = json.loads((runtime / "stack.json").read_text())["children"]
        backend = {c["name"]: c["pid"] for c in children if c["role"] == "instance"}
        nginx = next(c["pid"] for c in children if c["role"] == "nginx")
        for index, worker in enumerate(child_pids(nginx), start=1):  # the master only waits
            backend[f"nginx-w{index}"] = worker
        cpu_before = {name: cpu_seconds(pid) for name, pid in backend.items()}
        sampler = Sampler(backend)
        sampler.start()
        summary_path = workdir / f"{topology}-{port}.json"
        subprocess.run(["k6", "run", "-q", "--no-usage-report", str(ROOT / "profiles" / "contest.js")],
                       env={**os.environ, "TARGET": f"http://127.0.0.1:{port}",
                            "DEFAULT_URL": f"http://127.0.0.1:{default_port}",
                            "FALLBACK_URL": f"http://127.0.0.1:{fallback_port}",
                            "MAX_REQUESTS": str(vus), "STAGE_SECONDS": str(stage_seconds),
                            "SUMMARY_PATH": str(summary_path)},
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sampler.stopped.set()
        sampler.join()
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in backend.items()}
        rss = {name: rss_mb(pid) for name, pid in backend.items()}
    finally:
        stack.terminate()
        try:
            stack.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, 9)
        shutil.rmtree(runtime, ignore_errors=True)
    summary = load_summary(summary_path)
    result = score(summary)
    return {"topology": topology, "score": result, "http": summary["http"], "cpu": cpu, "rss": rss,
            "peak_share": sampler.peak_share}


def report(run: dict) -> None:
    s, http = run["score"], run["http"]
    cpu_total = sum(run["cpu"].values())
    shares = " ".join(f"{name} {share:.2f}" for name, share in sorted(run["peak_share"].items()))
    print(f"{run['topology']:>6}: accepted {s.accepted} lag {s.lag} fallback {s.fallback_payments} "
          f"inconsistencies {s.inconsistencies} | p50 {http['p50']:.2f} ms p99 {http['p99']:.2f} ms "
          f"max {http['max']:.0f} ms | profit {s.profit:.2f} | backend CPU {cpu_total:.1f} s "
          f"({', '.join(f'{n} {c:.1f}' for n, c in sorted(run['cpu'].items()))}) | busiest 100 ms: {shares} "
          f"| peak RSS {sum(run['rss'].values()):.0f} MB", flush=True)


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
