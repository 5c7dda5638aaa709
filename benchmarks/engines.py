"""The contest profile on each store engine, side by side: SQLite file vs PostgreSQL server.

For each engine: start ``rinha stack up --with-processors --topology all`` (two instances, each
taking and paying payments, and nginx) on free ports
with ``--db`` a SQLite file or a database on a PostgreSQL server started here (initdb + pg_ctl,
as the tests do, but with durable, small settings like docker-compose.postgres.yml's:
``fsync = on``, ``synchronous_commit`` as given, 16 MB of shared buffers), run
``profiles/contest.js`` with k6, and print one line: the score's figures, the latency, the CPU
seconds of the instances, nginx and PostgreSQL (every server process) over the run, and their
peak RSS. Prints only; asserts nothing. k6, the processors and the backend share this machine.

    flock /tmp/rinha-load.lock python -m benchmarks.engines [--engines sqlite postgres] [--stage-seconds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.procstat import children as child_pids, cpu_seconds, rss_mb
from rinha.score import load_summary, score
from benchmarks.stack import local_stack



def postgres_pids(postmaster: int) -> list[int]:
    return [postmaster, *child_pids(postmaster)]


def run_once(engine: str, stage_seconds: int, vus: int, workdir: Path, synchronous_commit: str) -> dict:
    server = None
    if engine == "postgres":
        from tests.support.pg import PostgresServer

        server = PostgresServer({"fsync": "on", "full_page_writes": "on", "synchronous_commit": synchronous_commit,
                                 "shared_buffers": "16MB", "max_connections": "30", "wal_writer_delay": "10ms"})
        server.start()
        db = server.create_database()
        postmaster = int(Path(server.datadir, "postmaster.pid").read_text().split()[0])
    else:
        db = str(workdir / f"sqlite-{os.getpid()}.db")
    summary_path = workdir / f"{engine}-{time.monotonic_ns()}.json"
    try:
        with local_stack(db, "all") as stack:
            groups = {c["name"]: [c["pid"]] for c in stack.children("instance")}
            groups["nginx"] = child_pids(stack.children("nginx")[0]["pid"])  # the master only waits
            if server is not None:
                groups["postgres"] = postgres_pids(postmaster)
            cpu_before = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
            stack.run_contest(summary_path, vus, stage_seconds)
            if server is not None:  # backends that ended are in the postmaster's children's time
                groups["postgres"] = postgres_pids(postmaster)
            cpu = {name: sum(_alive(cpu_seconds, pids)) - cpu_before[name] for name, pids in groups.items()}
            rss = {name: sum(_alive(rss_mb, pids)) for name, pids in groups.items()}
    finally:
        if server is not None:
            server.stop()
    summary = load_summary(summary_path)
    label = engine if server is None else f"postgres (synchronous_commit={synchronous_commit})"
    return {"engine": label, "score": score(summary), "http": summary["http"], "cpu": cpu, "rss": rss}


def _alive(read, pids: list[int]) -> list[float]:
    """``read(pid)`` for each process still there (a backend may end during the run)."""
    values = []
    for pid in pids:
        try:
            values.append(read(pid))
        except OSError:
            pass
    return values


def report(run: dict) -> None:
    s, http = run["score"], run["http"]
    print(f"{run['engine']}: accepted {s.accepted} lag {s.lag} fallback {s.fallback_payments} "
          f"inconsistencies {s.inconsistencies} | p50 {http['p50']:.2f} ms p99 {http['p99']:.2f} ms "
          f"max {http['max']:.0f} ms | profit {s.profit:.2f} | CPU s {sum(run['cpu'].values()):.1f} "
          f"({', '.join(f'{n} {c:.1f}' for n, c in sorted(run['cpu'].items()))}) "
          f"| peak RSS MB ({', '.join(f'{n} {m:.0f}' for n, m in sorted(run['rss'].items()))})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--stage-seconds", type=int, default=10, help="10 is the contest; 2 is a quick look")
    parser.add_argument("--vus", type=int, default=550)
    parser.add_argument("--synchronous-commit", default="on", choices=["on", "off"],
                        help="PostgreSQL's synchronous_commit (on: a 2xx survives a crash of the server)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rinha-engines-"))
    try:
        for engine in args.engines:
            report(run_once(engine, args.stage_seconds, args.vus, workdir, args.synchronous_commit))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
