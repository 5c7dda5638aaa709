"""The floor under any backend on this machine: the contest profile against nginx with no backend.

``--upstream none`` (the default): nginx (one worker, as in the stack) answers ``POST /payments``
with 202 and ``GET /payments-summary`` with zeros by itself: no instance, no store, no dispatch.
What k6 then measures is what k6, nginx and the machine cost: no backend behind the same load
balancer can answer faster.

Two more floors put one hop behind nginx, as the stack does (two upstreams on unix sockets,
``least_conn``, keep-alive), each answering those constants at once:

* ``nginx``: a second nginx; what the hop itself costs;
* ``trio``: two Python processes on the daemon's lean HTTP server (``benchmarks/const_upstream.py``);
  what any request costs in a trio process before the daemon does anything, and the upstreams'
  CPU for it.

The processors are the emulator (the profile's admin calls and audits need them). Compare the
stack's figures (``contest_stack.py``) with these, from the same session; several upstreams are
alternated in each round. Prints only; asserts nothing. (The score's lag and fallback figures
mean nothing here: nothing is paid.)

    python -m benchmarks.floor [--vus 550 1100] [--upstream none nginx trio] [--rounds 1] [--stage-seconds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from benchmarks.procstat import children, cpu_seconds
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


#: The proxying of the stack's nginx.conf (upstream, keep-alive, buffers; not its retries and
#: timeouts, which a constant upstream never meets), in front of two upstreams that answer alone.
PROXY = CONF.split("    server {")[0] + """
    upstream floor {
        least_conn;
        server unix:%(first)s;
        server unix:%(second)s;
        keepalive 256;
        keepalive_requests 100000;
        keepalive_timeout 60s;
    }
    server {
        listen %(port)d backlog=4096;
        location / {
            proxy_pass http://floor;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering on;
            proxy_buffer_size 4k;
            proxy_buffers 4 4k;
        }
    }
}
"""
#: nginx answering alone on the two unix sockets.
ANSWERING_ON_SOCKETS = CONF.replace("listen %(port)d backlog=4096;", "listen unix:%(first)s; listen unix:%(second)s;")

UPSTREAMS = ("none", "nginx", "trio")


@contextmanager
def floor(workdir: Path, upstream: str) -> Iterator[tuple[LocalStack, list[int]]]:
    """nginx on a free port with ``upstream`` behind it (see the module docstring), and the
    processors; yields the target and the pids whose CPU is the upstreams' (nginx: its workers)."""
    port, default_port, fallback_port = free_port(), free_port(), free_port()
    prefix = Path(tempfile.mkdtemp(prefix=f"floor-{upstream}-", dir=workdir))
    sockets = {"first": str(prefix / "first.sock"), "second": str(prefix / "second.sock")}
    with ExitStack() as running:
        running.enter_context(Service(
            rinha_command("processors", "--host", "127.0.0.1", "--default-port", str(default_port),
                          "--fallback-port", str(fallback_port)),
            ready_url=f"http://127.0.0.1:{default_port}/", name="processors"))
        upstream_pids: list[int] = []
        if upstream == "nginx":
            back = prefix / "upstream"
            back.mkdir()
            (back / "nginx.conf").write_text(ANSWERING_ON_SOCKETS % sockets)
            master = running.enter_context(Service(nginx_args(find_nginx(), str(back), str(back / "nginx.conf")),
                                                   ready_unix=sockets["second"], name="nginx-upstream"))
            upstream_pids = children(master.pid)
        elif upstream == "trio":
            for path in sockets.values():
                upstream_pids.append(running.enter_context(Service(
                    [sys.executable, "-m", "benchmarks.const_upstream", f"unix:{path}"],
                    ready_unix=path, name="const-upstream")).pid)
        conf = prefix / "nginx.conf"
        conf.write_text((CONF if upstream == "none" else PROXY) % {"port": port, **sockets})
        running.enter_context(Service(nginx_args(find_nginx(), str(prefix), str(conf)),
                                      ready_url=f"http://127.0.0.1:{port}/payments-summary", name="nginx"))
        yield LocalStack(port, default_port, fallback_port, prefix), upstream_pids


@contextmanager
def nginx_alone(workdir: Path) -> Iterator[LocalStack]:
    """nginx answering by itself (and the processors, for the profile's admin calls)."""
    with floor(workdir, "none") as (target, _):
        yield target


def run_once(vus: int, stage_seconds: int, workdir: Path, upstream: str = "none") -> dict:
    """One contest run against a floor: k6's figures, plus ``upstream_cpu`` (seconds, over the run)."""
    summary_path = workdir / f"floor-{upstream}-{vus}-{os.getpid()}-{free_port()}.json"
    with floor(workdir, upstream) as (target, pids):
        before = sum(cpu_seconds(pid) for pid in pids)
        target.run_contest(summary_path, vus, stage_seconds)
        used = sum(cpu_seconds(pid) for pid in pids) - before
    return {**load_summary(summary_path)["http"], "upstream_cpu": used}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vus", type=int, nargs="+", default=[550, 1100])
    parser.add_argument("--upstream", nargs="+", default=["none"], choices=UPSTREAMS,
                        help="none: nginx answers; nginx / trio: it proxies to two upstreams answering constants")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--stage-seconds", type=int, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rinha-floor-"))
    for _ in range(args.rounds):
        for vus in args.vus:
            for upstream in args.upstream:
                http = run_once(vus, args.stage_seconds, workdir, upstream)
                name = "nginx alone" if upstream == "none" else f"nginx -> {upstream}"
                cost = "" if upstream == "none" else f" | upstreams' CPU {http['upstream_cpu']:.2f} s"
                print(f"{name}, {vus} VUs: {http['count']} requests | p50 {http['p50']:.2f} ms "
                      f"p90 {http['p90']:.2f} ms p99 {http['p99']:.2f} ms max {http['max']:.0f} ms{cost}", flush=True)


if __name__ == "__main__":
    main()
