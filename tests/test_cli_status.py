"""The control plane and `rinha status` / `rinha health` against real daemons."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading

import httpx

from tests.support.engines import both_engines
from tests.support.cli import (
    control_get,
    control_socket,
    metric,
    new_id,
    one_line_error,
    payment_body,
    rinha,
    rinha_json,
    wait_for_control,
)
from tests.support.procs import free_port, rinha_command
from tests.support.wait import wait_until


@both_engines
def test_status_health_and_metrics_of_a_running_daemon(daemon_factory, processors):
    daemon = daemon_factory()
    path = wait_for_control(daemon.db)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for _ in range(3):
        assert daemon.post(payment_body(new_id())).status_code == 202
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 3, what="3 paid")

    status = rinha_json("status", "--db", daemon.db)
    assert status["roles"] == ["api", "dispatch", "health"] and status["policy"] == "fee-first"
    assert status["queue"] == {"pending": 0, "paid": 3, "dead": 0}
    assert status["oldestPendingAgeSeconds"] is None
    assert status["intake"]["accepted"] == 3 and status["dispatcher"]["paid"] == 3
    assert status["processors"]["default"]["breaker"] == "closed"
    assert status["processors"]["default"]["url"] == processors.default_url
    assert status["control"] == os.path.abspath(path)
    assert [(i["instance"], i["alive"]) for i in status["instances"]] == [(status["instance"], True)]

    health = wait_until(lambda: (h := rinha_json("health", "--db", daemon.db))["processors"]["default"]["health"] and h,
                        timeout=15, what="a health reading")
    assert health["processors"]["default"]["health"]["failing"] is False
    assert health["healthMonitor"]["holder"] == status["instance"] and health["healthMonitor"]["thisInstance"]

    table = rinha("status", "--db", daemon.db)
    assert table.exit_code == 0
    assert status["instance"] in table.stdout and "processors" in table.stdout and "closed" in table.stdout
    assert "health monitor:" in rinha("health", "--control", path).stdout

    text = control_get(daemon.db, "/metrics").text
    assert metric(text, "rinha_accepted_total") == 3
    assert metric(text, 'rinha_paid_total{processor="default"}') == 3
    assert metric(text, 'rinha_intake_latency_seconds_bucket{le="+Inf"}') == 3
    assert metric(text, "rinha_intake_latency_seconds_count") == 3
    assert metric(text, 'rinha_breaker_open{processor="default"}') == 0
    assert metric(text, 'rinha_payments{state="dead"}') == 0
    assert metric(text, "rinha_retries_total") == 0
    stalls = metric(text, 'rinha_loop_stall_seconds_bucket{le="+Inf"}')
    assert stalls == metric(text, "rinha_loop_stall_seconds_count") and stalls >= 0
    assert 0 <= metric(text, "rinha_loop_stall_off_cpu_seconds_total") <= metric(text, "rinha_loop_stall_seconds_sum")
    if os.path.exists("/proc/self/schedstat"):  # the kernel's count for the loop's thread
        assert metric(text, "rinha_loop_runqueue_wait_seconds_total") >= 0
    # SQLite's lock waits (counted in tests/test_store_faults.py); PostgreSQL has no such lock
    for name in ("rinha_store_lock_waits_total", "rinha_store_lock_wait_seconds_total"):
        assert (f"\n{name} " in text) == ("://" not in daemon.db), name
    deferred = metric(text, "rinha_store_deferred_write_seconds_count")
    assert deferred == metric(text, 'rinha_store_deferred_write_seconds_bucket{le="+Inf"}')
    assert deferred >= (3 if "://" in daemon.db else 0)  # PostgreSQL: every awaited write, the 3 accepts among them
    assert control_get(daemon.db, "/nowhere").status_code == 404
    for limit in ("0", "abc", "%C2%B2", "100001"):  # "²" passes str.isdigit, not int()
        refused = control_get(daemon.db, f"/dlq?limit={limit}")
        assert refused.status_code == 400 and "expected 1-100000" in refused.json()["error"], refused.text
    with httpx.Client(transport=httpx.HTTPTransport(uds=control_socket(daemon.db)), timeout=10) as client:
        too_big = client.post("http://control/payments/states", content=b" " * (2 << 20))
    assert too_big.status_code == 413 and "body larger than" in too_big.json()["error"]


def test_breaker_and_queue_show_a_failing_processor(daemon_factory, processors):
    daemon = daemon_factory()
    wait_for_control(daemon.db)
    processors.set("default", failure=True)
    assert daemon.post(payment_body(new_id())).status_code == 202
    status = wait_until(lambda: (s := rinha_json("status", "--db", daemon.db))["processors"]["default"]["breaker"] == "open" and s,
                        timeout=15, what="breaker open")
    assert status["queue"]["pending"] == 1 and status["oldestPendingAgeSeconds"] > 0
    text = control_get(daemon.db, "/metrics").text
    assert metric(text, 'rinha_breaker_open{processor="default"}') == 1
    assert metric(text, "rinha_retries_total") >= 5
    assert "open (" in rinha("health", "--db", daemon.db).stdout


def test_watch_refreshes_until_interrupted(daemon_factory, processors):
    daemon = daemon_factory()
    wait_for_control(daemon.db)
    env = {**os.environ, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "200"}
    for args, marker in ((["--json"], b'"processors"'), ([], b"health monitor:")):
        proc = subprocess.Popen(rinha_command("health", "--watch", "--interval", "0.1", "--db", daemon.db, *args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        seen = bytearray()

        def read() -> None:
            while chunk := proc.stdout.read1(4096):
                seen.extend(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_until(lambda: seen.count(marker) >= 2, timeout=15, what="two refreshes")
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(10)
            reader.join(5)
        assert code == 0, proc.stderr.read()
        if args:
            lines = bytes(seen).decode().splitlines()
            assert all(json.loads(line)["processors"] for line in lines if line.strip())


def test_a_second_instance_on_the_same_database_runs_without_taking_the_socket(daemon_factory, processors):
    first = daemon_factory()
    wait_for_control(first.db)
    second = daemon_factory()
    wait_until(lambda: "no control plane" in second.service.log_text(), timeout=15, what="second instance warning")
    status = wait_until(lambda: (s := rinha_json("status", "--db", first.db)) and len(s["instances"]) == 2 and s,
                        timeout=15, what="two instances listed")
    assert all(instance["alive"] for instance in status["instances"])
    controls = sorted((i["control"] or "") for i in status["instances"])
    assert controls == ["", os.path.abspath(control_socket(first.db))]
    assert second.post(payment_body(new_id())).status_code == 202


def test_a_socket_file_left_by_a_killed_daemon_is_named_stale():
    folder = tempfile.mkdtemp(prefix="rst-")
    try:
        db = os.path.join(folder, "rinha.db")
        assert rinha("migrate", "--db", db).exit_code == 0
        left = socket.socket(socket.AF_UNIX)
        left.bind(control_socket(db))
        left.close()  # the file stays: what a daemon killed with -9 leaves
        assert "stale" in one_line_error(rinha("status", "--db", db), 1)
        assert "stale" in one_line_error(rinha("health", "--db", db), 1)
        assert "stale" in one_line_error(rinha("status", "--db", db, "--control", "  "), 1)  # blank: the default
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_no_daemon_stale_socket_and_bad_control_options(tmp_path, daemon_factory, processors):
    db = str(tmp_path / "rinha.db")
    assert "no control socket" in one_line_error(rinha("status", "--db", db), 1)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(control_socket(db))  # bound, never listening: what a crashed daemon leaves
    try:
        assert "stale" in one_line_error(rinha("health", "--db", db), 1)
        assert "stale" in one_line_error(rinha("status", "--db", db, "--json"), 1)
    finally:
        stale.close()
    assert rinha("status", "--interval", "0").exit_code == 2

    daemon = daemon_factory("--no-control", db_path=str(tmp_path / "quiet.db"))
    assert daemon.post(payment_body(new_id())).status_code == 202
    assert not os.path.exists(control_socket(daemon.db))

    too_long = str(tmp_path / ("x" * 120) / "c.sock")
    refused = subprocess.run(rinha_command("serve", "--listen", f"127.0.0.1:{free_port()}", "--db", db,
                                           "--control", too_long), capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "--control" in refused.stderr and "Traceback" not in refused.stderr


def test_histogram_text_format_counts_bounds_inclusively():
    from rinha.daemon.metrics import Histogram, metric

    histogram = Histogram("t_seconds", "test", (0.001, 0.01))
    for value in (0.0005, 0.001, 0.002, 0.01, 5.0):
        histogram.observe(value)
    lines = histogram.render().splitlines()
    assert lines[2:] == ['t_seconds_bucket{le="0.001"} 2', 't_seconds_bucket{le="0.01"} 4',
                         't_seconds_bucket{le="+Inf"} 5', "t_seconds_sum 5.0135", "t_seconds_count 5"]
    assert histogram.quantile(0.5) == 0.01 and histogram.quantile(1.0) == float("inf")
    assert metric("m", "gauge", "h", [({"p": 'a"b'}, 1.5)]).splitlines()[-1] == 'm{p="a\\"b"} 1.5'
