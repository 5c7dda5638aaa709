"""One emulated processor (``rinha processors --only default``) under k6: POST /payments.

Phase 1: a constant arrival rate (default 1,000/s for 15 s, ``k6/post_payments.js``).
Phase 2: as fast as possible, a closed loop of VUs posting back to back (15 s).
Each payment has a fresh correlationId; connections are kept alive. For each phase it prints
k6's request rate and latency and the processor's CPU seconds, from which the rate one core
could sustain follows. The processor is pinned to one core and k6 to the others when the
machine has two or more. Prints only; asserts nothing.

    python -m benchmarks.processor_k6 [--rate 1000] [--seconds 15] [--vus 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from benchmarks.procstat import cpu_seconds
from tests.support.procs import Service, free_port, rinha_command

HERE = Path(__file__).parent

# The closed-loop phase; same output shape as k6/post_payments.js.
AS_FAST_AS_POSSIBLE = """
import http from "k6/http";
export const options = {
  summaryTrendStats: ["p(50)", "p(90)", "p(99)", "max", "count"],
  scenarios: { payments: { executor: "constant-vus", vus: parseInt(__ENV.VUS, 10), duration: __ENV.DURATION } },
};
const params = { headers: { "Content-Type": "application/json" }, timeout: "1500ms" };
export default function () {
  http.post(`${__ENV.TARGET}/payments`, `{"correlationId":"${crypto.randomUUID()}","amount":19.90}`, params);
}
export function handleSummary(data) {
  const d = data.metrics.http_req_duration.values;
  const failed = data.metrics.http_req_failed ? data.metrics.http_req_failed.values.passes : 0;
  const out = { count: d.count, p50: d["p(50)"], p90: d["p(90)"], p99: d["p(99)"], max: d.max, failed };
  return { [__ENV.SUMMARY_PATH]: JSON.stringify(out) };
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="arrival rate of phase 1 (per second)")
    parser.add_argument("--seconds", type=int, default=15, help="length of each phase")
    parser.add_argument("--vus", type=int, default=64, help="concurrent VUs of phase 2")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    pin_processor, pin_k6 = ([], []) if len(cores) < 2 else (
        ["taskset", "-c", str(cores[0])], ["taskset", "-c", ",".join(map(str, cores[1:]))])
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rinha-processor-bench-"))
    closed_loop = workdir / "as_fast_as_possible.js"
    closed_loop.write_text(AS_FAST_AS_POSSIBLE)
    target = f"http://127.0.0.1:{port}"
    processor = Service(pin_processor + rinha_command("processors", "--host", "127.0.0.1", "--only", "default",
                                                      "--port", str(port)),
                        ready_url=f"{target}/", name="processors")
    phases = [(f"constant {args.rate}/s", HERE / "k6" / "post_payments.js", {"RATE": str(args.rate)}),
              (f"as fast as possible ({args.vus} VUs)", closed_loop, {"VUS": str(args.vus)})]
    print(f"processor pinned to core {cores[0]}" if pin_processor else "processor not pinned (one core)")
    with processor:
        for name, script, env in phases:
            summary_path = workdir / "summary.json"
            cpu_before = cpu_seconds(processor.pid)
            subprocess.run(pin_k6 + ["k6", "run", "-q", "--no-usage-report", str(script)],
                           env={**os.environ, **env, "TARGET": target, "DURATION": f"{args.seconds}s",
                                "SUMMARY_PATH": str(summary_path)},
                           check=True, stdout=subprocess.DEVNULL)
            cpu = cpu_seconds(processor.pid) - cpu_before
            report(name, json.loads(summary_path.read_text()), args.seconds, cpu)


def report(name: str, k6: dict, seconds: int, cpu: float) -> None:
    count = k6["count"]
    print(f"{name}: {count} POSTs in {seconds} s = {count / seconds:.0f} req/s, {k6['failed']} failed; "
          f"latency ms p50 {k6['p50']:.3f} p99 {k6['p99']:.3f} max {k6['max']:.1f}; "
          f"processor CPU {cpu:.2f} s = {cpu / max(count, 1) * 1e6:.0f} µs/request "
          f"(≈ {count / cpu if cpu else float('inf'):.0f} req/s per core)")


if __name__ == "__main__":
    main()
