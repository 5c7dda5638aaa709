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
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.procstat import children as child_pids, cpu_seconds, rss_mb
from rinha.score import load_summary, score
from tests.support.procs import free_port, rinha_command

ROOT = Path(__file__).resolve().parent.parent


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
    port, default_port, fallback_port = free_port(), free_port(), free_port()
    runtime = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    stack = subprocess.Popen(
        rinha_command("stack", "up", "--with-processors", "--topology", "all", "--port", str(port), "--db", db,
                      "--runtime-dir", str(runtime), "--log-level", "warning",
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
                raise RuntimeError(f"stack ({engine}) did not start")
            time.sleep(0.1)
        children = json.loads((runtime / "stack.json").read_text())["children"]
        groups = {c["name"]: [c["pid"]] for c in children if c["role"] == "instance"}
        nginx = next(c["pid"] for c in children if c["role"] == "nginx")
        groups["nginx"] = child_pids(nginx)  # the master only waits
        if server is not None:
            groups["postgres"] = postgres_pids(postmaster)
        cpu_before = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
        summary_path = workdir / f"{engine}-{port}.json"
        subprocess.run(["k6", "run", "-q", "--no-usage-report", str(ROOT / "profiles" / "contest.js")],
                       env={**os.environ, "TARGET": f"http://127.0.0.1:{port}",
                            "DEFAULT_URL": f"http://127.0.0.1:{default_port}",
                            "FALLBACK_URL": f"http://127.0.0.1:{fallback_port}",
                            "MAX_REQUESTS": str(vus), "STAGE_SECONDS": str(stage_seconds),
                            "SUMMARY_PATH": str(summary_path)},
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if server is not None:  # backends that ended are in the postmaster's children's time
            groups["postgres"] = postgres_pids(postmaster)
        cpu = {}
        for name, pids in groups.items():
            total = 0.0
            for pid in pids:
                try:
                    total += cpu_seconds(pid)
                except OSError:
                    pass
            cpu[name] = total - cpu_before[name]
        rss = {}
        for name, pids in groups.items():
            values = []
            for pid in pids:
                try:
                    values.append(rss_mb(pid))
                except OSError:
                    pass
            rss[name] = sum(values)
    finally:
        stack.terminate()
        try:
            stack.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, 9)
        shutil.rmtree(runtime, ignore_errors=True)
        if server is not None:
            server.stop()
    summary = load_summary(summary_path)
    label = engine if server is None else f"postgres (synchronous_commit={synchronous_commit})"
    return {"engine": label, "score": score(summary), "http": summary["http"], "cpu": cpu, "rss": rss}


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
