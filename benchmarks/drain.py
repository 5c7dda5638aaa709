"""Draining a backlog: 10,000 payments waiting, default back at 20 ms delay, new POSTs still arriving.

Through `rinha stack up --with-processors` (the default topology, or ``--topology``): the
default processor fails while ``--backlog`` payments are posted (fee-first keeps them waiting),
then it recovers with a 20 ms delay while k6 posts new payments at ``--rate``. Prints how fast
the backlog is paid (from the recovery to the last of them recorded paid in the store), what
paying cost the payers (the worker; in topology ``all`` the instances, which take the new POSTs
too) in CPU per payment, and the latency of the new POSTs meanwhile. Prints only; asserts nothing.

    python -m benchmarks.drain [--backlog 10000] [--rate 200] [--topology split]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.procstat import cpu_seconds
from benchmarks.stack import local_stack

HERE = Path(__file__).parent
TOKEN = {"X-Rinha-Token": "123"}


def k6(target: str, rate: int, seconds: int, summary: Path) -> subprocess.Popen:
    return subprocess.Popen(["k6", "run", "-q", "--no-usage-report", str(HERE / "k6" / "post_payments.js")],
                            env={**os.environ, "TARGET": target, "RATE": str(rate), "DURATION": f"{seconds}s",
                                 "SUMMARY_PATH": str(summary)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200, help="new POSTs per second while draining")
    parser.add_argument("--delay", type=int, default=20, help="default processor's delay while draining (ms)")
    parser.add_argument("--topology", default="split", choices=["all", "split"])
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="rinha-drain-"))
    db = workdir / "rinha.db"
    try:
        with local_stack(str(db), args.topology) as stack, \
                httpx.Client(base_url=stack.default_url, headers=TOKEN, timeout=10) as admin:

            def count(state: str) -> int:
                with sqlite3.connect(db, timeout=10) as conn:
                    return conn.execute("SELECT COUNT(*) FROM payments WHERE state = ?", (state,)).fetchone()[0]

            admin.put("/admin/configurations/failure", json={"failure": True})
            fill_rate = 2000
            k6(stack.url, fill_rate, max(1, round(args.backlog / fill_rate)), workdir / "fill.json").wait()
            backlog = count("pending")
            print(f"backlog: {backlog} payments pending (fill: {json.loads((workdir / 'fill.json').read_text())})")

            seconds = max(10, round(backlog / 1000) + 5)
            stream = k6(stack.url, args.rate, seconds, workdir / "stream.json")
            time.sleep(1)  # the stream's own warm-up, before the drain starts
            admin.put("/admin/configurations/delay", json={"delay": args.delay})
            payers = [c["pid"] for c in stack.children("instance") if args.topology == "all" or c["name"] == "worker"]
            payers_cpu = sum(cpu_seconds(pid) for pid in payers)
            admin.put("/admin/configurations/failure", json={"failure": False})
            started = time.monotonic()
            paid = 0
            while paid < backlog and time.monotonic() - started < 120:
                time.sleep(0.1)
                paid = count("paid")
            drained = time.monotonic() - started
            payers_cpu = sum(cpu_seconds(pid) for pid in payers) - payers_cpu
            stream.wait()
        new = json.loads((workdir / "stream.json").read_text())
        print(f"drain: {paid} paid in {drained:.2f} s after the recovery = {paid / drained:.0f} payments/s "
              f"(default delay {args.delay} ms, topology {args.topology})")
        print(f"payers' CPU meanwhile: {payers_cpu:.2f} s = {payers_cpu / max(paid, 1) * 1000:.3f} CPU-ms per payment "
              f"({'the instances' if args.topology == 'all' else 'the worker'})")
        print(f"new POSTs meanwhile ({args.rate}/s): {new['count']} sent, {new['failed']} failed, "
              f"p50 {new['p50']:.2f} ms p99 {new['p99']:.2f} ms max {new['max']:.1f} ms")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
