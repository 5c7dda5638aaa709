"""The floor under any backend on this machine: the contest profile against nginx answering alone.

nginx (one worker, as in the stack) answers ``POST /payments`` with 202 and
``GET /payments-summary`` with zeros by itself: no instance, no store, no dispatch. The
processors are the emulator (the profile's admin calls and audits need them). What k6 then
measures is what k6, nginx and the machine cost: no backend behind the same load balancer can
answer faster. Compare the stack's figures (``contest_stack.py``) with these, from the same
session. Prints only; asserts nothing. (The score's lag and fallback figures mean nothing here:
nothing is paid.)

    python -m benchmarks.floor [--vus 550 1100] [--rounds 1] [--stage-seconds 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from benchmarks.stack import LocalStack
from rinha.score import load_summary
from rinha.stack import find_nginx, nginx_args
from tests.support.procs import Service, free_port, rinha_command

CONF = """
worker_processes 1;
error_log stderr warn;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    server {
        listen %(port)d backlog=4096;
        default_type application/json;
        location = /payments { return 202 '{"status":"accepted"}'; }
        location = /purge-payments { return 200 '{"message":"payments purged"}'; }
        location = /payments-summary {
            return 200 '{"default":{"totalRequests":0,"totalAmount":0.00},"fallback":{"totalRequests":0,"totalAmount":0.00}}';
        }
    }
}
"""


@contextmanager
def nginx_alone(workdir: Path) -> Iterator[LocalStack]:
    """nginx answering by itself (and the processors, for the profile's admin calls)."""
    port, default_port, fallback_port = free_port(), free_port(), free_port()
    prefix = tempfile.mkdtemp(prefix="floor-nginx-", dir=workdir)
    conf = Path(prefix) / "nginx.conf"
    conf.write_text(CONF % {"port": port})
    processors = Service(rinha_command("processors", "--host", "127.0.0.1", "--default-port", str(default_port),
                                       "--fallback-port", str(fallback_port)),
                         ready_url=f"http://127.0.0.1:{default_port}/", name="processors")
    nginx = Service(nginx_args(find_nginx(), prefix, str(conf)), ready_url=f"http://127.0.0.1:{port}/payments-summary",
                    name="nginx")
    with processors, nginx:
        yield LocalStack(port, default_port, fallback_port, Path(prefix))


def run_once(vus: int, stage_seconds: int, workdir: Path) -> dict:
    summary_path = workdir / f"floor-{vus}-{os.getpid()}-{free_port()}.json"
    with nginx_alone(workdir) as target:
        target.run_contest(summary_path, vus, stage_seconds)
    return load_summary(summary_path)["http"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vus", type=int, nargs="+", default=[550, 1100])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--stage-seconds", type=int, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rinha-floor-"))
    for _ in range(args.rounds):
        for vus in args.vus:
            http = run_once(vus, args.stage_seconds, workdir)
            print(f"nginx alone, {vus} VUs: {http['count']} requests | p50 {http['p50']:.2f} ms "
                  f"p90 {http['p90']:.2f} ms p99 {http['p99']:.2f} ms max {http['max']:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
