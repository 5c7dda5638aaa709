"""One `rinha serve` under k6 at a constant rate, paying through local processors.

Prints the POST latency (p50/p99 as k6 measures it) and the daemon's CPU seconds per 1,000
payments, counted until every accepted payment is paid (so dispatch is included).

    python -m benchmarks.intake [--rate 550] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import httpx

from benchmarks.procstat import cpu_seconds, rss_mb
from tests.support.procs import Service, free_port, rinha_command

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=550)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--roles", default="api,dispatch,health",
                        help="the daemon's roles; without dispatch (an intake-only instance) the CPU is per 1,000 "
                             "payments accepted and in the store")
    args = parser.parse_args()
    pays = "dispatch" in args.roles.split(",")

    workdir = tempfile.mkdtemp(prefix="rinha-bench-")
    default_port, fallback_port, port = free_port(), free_port(), free_port()
    processors = Service(rinha_command("processors", "--host", "127.0.0.1", "--default-port", str(default_port),
                                       "--fallback-port", str(fallback_port)),
                         ready_url=f"http://127.0.0.1:{default_port}/", name="processors")
    daemon = Service(rinha_command("serve", "--listen", f"127.0.0.1:{port}", "--db", f"{workdir}/rinha.db",
                                   "--default-url", f"http://127.0.0.1:{default_port}",
                                   "--fallback-url", f"http://127.0.0.1:{fallback_port}",
                                   "--concurrency", str(args.concurrency), "--roles", args.roles,
                                   "--log-level", "warning"),
                     ready_url=f"http://127.0.0.1:{port}/payments-summary", name="serve")
    with processors, daemon:
        target = f"http://127.0.0.1:{port}"
        cpu_before = cpu_seconds(daemon.pid)
        summary_path = f"{workdir}/k6.json"
        subprocess.run(["k6", "run", "-q", "--no-usage-report", str(HERE / "k6" / "post_payments.js")],
                       env={**os.environ, "TARGET": target, "RATE": str(args.rate),
                            "DURATION": f"{args.seconds}s", "SUMMARY_PATH": summary_path},
                       check=True, stdout=subprocess.DEVNULL)
        k6 = json.loads(Path(summary_path).read_text())
        accepted = k6["count"] - k6["failed"]
        started = time.monotonic()
        while True:
            if pays:
                paid = httpx.get(target + "/payments-summary").json()["default"]["totalRequests"]
            else:  # "paid" here: in the store (moved from the intake journal)
                with closing(sqlite3.connect(f"{workdir}/rinha.db")) as conn:
                    paid = conn.execute("SELECT COUNT(*) FROM payments").fetchone()[0]
            if paid >= accepted or time.monotonic() - started > 60:
                break
            time.sleep(0.1)
        cpu = cpu_seconds(daemon.pid) - cpu_before
        rss = rss_mb(daemon.pid)
    print(f"rate {args.rate}/s for {args.seconds} s: {k6['count']} POSTs, {k6['failed']} failed, {paid} "
          f"{'paid' if pays else 'in the store'}")
    print(f"POST latency ms: p50 {k6['p50']:.3f}  p90 {k6['p90']:.3f}  p99 {k6['p99']:.3f}  max {k6['max']:.1f}")
    print(f"daemon CPU: {cpu:.2f} s total, {cpu / max(paid, 1) * 1000:.3f} CPU-s per 1,000 payments{'' if pays else ' (intake only)'}; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
