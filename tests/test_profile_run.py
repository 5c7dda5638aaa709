"""``rinha profile`` end to end: short contest runs (``STAGE_SECONDS=2``: 12 s, the contest's shape)
with the real k6 against a real daemon and the processor emulator, then through ``rinha stack up``.

Nothing here asserts a time or a latency: the figures checked are counts and what was stored.
"""

from __future__ import annotations

import json
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from rinha.profiling import runs
from rinha.score import score
from rinha.stack import NginxNotFound, find_nginx
from rinha.store.sqlite import SQLiteStore
from tests.support.cli import rinha, wait_for_control

DATA = Path(__file__).parent / "data" / "k6"
SHORT = ("-e", "STAGE_SECONDS=2", "--vus", "40")

pytestmark = pytest.mark.slow


def stored_runs(db: str):
    store = SQLiteStore(db)
    try:
        return store.profile_runs()
    finally:
        store.close()


def test_a_short_contest_baseline_is_scored_stored_plotted_and_profiled(daemon_factory, processors, tmp_path):
    daemon = daemon_factory()
    wait_for_control(daemon.db)
    svg, png = tmp_path / "daemon.svg", tmp_path / "run.png"
    result = rinha("profile", "baseline", "contest", *SHORT, "--target", daemon.url,
                   "--processors", f"{processors.default_url},{processors.fallback_url}",
                   "--db", daemon.db, "--json", "--flamegraph", str(svg), "--plot", str(png), "--notes", "first")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    document = json.loads(result.stdout)

    [row] = stored_runs(daemon.db)
    assert (document["id"], document["profile"], document["baseline"]) == (row.id, "contest", True)
    assert row.baseline and row.profile == "contest" and row.vus == 40 and row.notes == "first"
    assert row.target == daemon.url and row.finished_at_ms > row.started_at_ms
    # the summary is k6's, the score is the contest's formula of it, money exact
    summary = json.loads(row.summary_json, parse_float=Decimal)
    assert summary["params"]["stage_seconds"] == 2 and summary["params"]["target"] == daemon.url
    assert summary["errors"] == {"admin": 0, "backend_summary": 0}  # every stage was applied
    assert summary["audit"]["checks"] > 0
    assert json.loads(row.score_json) == runs.score_record(score(summary)) == document["score"]
    accepted = summary["payments"]["accepted"]
    assert accepted > 0 and document["score"]["accepted"] == accepted
    assert 0 <= accepted - document["score"]["recorded"] <= accepted  # never more recorded than accepted
    # what the daemon recorded is what the processors hold
    for name in ("default", "fallback"):
        assert summary["backend"][name]["totalRequests"] == summary["processors"][name]["totalRequests"]

    assert document["flamegraph"] == str(svg) and svg.read_text().lstrip().startswith("<?xml")
    assert document["plot"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"


def test_a_short_contest_run_through_rinha_stack_up_then_compare(tmp_path, stack_with_processors):
    stack = stack_with_processors
    db = str(tmp_path / "runs.db")
    # A recorded baseline of the real contest: the short run cannot match its profit.
    store = SQLiteStore(db)
    store.migrate()
    text = (DATA / "perfect.json").read_text()
    base = store.add_profile_run(runs.new_run("contest", text, runs.score_summary(json.loads(text, parse_float=Decimal)),
                                              started_at_ms=0, finished_at_ms=60_000, target=None, vus=550,
                                              baseline=True))
    store.close()

    result = rinha("profile", "run", "contest", *SHORT, "--target", stack["url"],
                   "--processors", f"{stack['default_url']},{stack['fallback_url']}", "--db", db)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    latest = stored_runs(db)[0]
    assert latest.id != base and not latest.baseline
    stored_score = json.loads(latest.score_json)
    # the score table, as printed
    assert f"contest run #{latest.id}" in result.stdout
    for label in ("accepted", "paid via default", "paid via fallback", "lag", "inconsistencies",
                  "p50 / p99 / max", "bonus", "fine", "profit"):
        assert label in result.stdout
    assert f"{Decimal(stored_score['profit']).quantize(Decimal('0.01')):,}" in result.stdout
    assert f"stored as run #{latest.id}" in result.stdout
    # the plain progress lines (not a terminal here) went to stderr; the last one, read from k6's API
    # just before it ended, has the load's figures
    last = [line for line in result.stderr.splitlines() if " s / " in line][-1]
    figures = dict(re.findall(r"(stage|requests|accepted|rejected) (\d+)", last))
    assert int(figures["stage"]) >= 1 and int(figures["accepted"]) > 0, last
    assert int(figures["requests"]) >= int(figures["accepted"]) and figures["rejected"] == "0", last
    assert re.search(r"p95 \d+\.\d\d ms", last), last

    compared = rinha("profile", "compare", "--db", db)
    assert compared.exit_code == 1, compared.stdout
    assert "REGRESSION profit" in compared.stdout


@pytest.fixture
def stack_with_processors(tmp_path):
    """``rinha stack up --with-processors`` on free ports (two instances behind nginx)."""
    try:
        find_nginx()
    except NginxNotFound:
        pytest.skip("nginx is not installed")
    import tempfile

    import httpx

    from tests.support.procs import Service, free_port, rinha_command
    from tests.support.wait import wait_until

    port, default_port, fallback_port = free_port(), free_port(), free_port()
    runtime_dir = Path(tempfile.mkdtemp(prefix="rp-"))  # unix socket paths must stay short
    default_url, fallback_url = f"http://127.0.0.1:{default_port}", f"http://127.0.0.1:{fallback_port}"
    service = Service(rinha_command("stack", "up", "--port", str(port), "--db", str(tmp_path / "stack.db"),
                                    "--runtime-dir", str(runtime_dir), "--default-url", default_url,
                                    "--fallback-url", fallback_url, "--with-processors"), name="stack")
    service.start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if service.proc.poll() is not None:
            raise AssertionError(f"stack exited with {service.proc.returncode}:\n{service.log_text()}")
        try:
            return httpx.get(url + "/payments-summary", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=60, what="the stack answering through nginx")
        yield {"url": url, "default_url": default_url, "fallback_url": fallback_url}
    finally:
        service.stop(timeout=30)
        shutil.rmtree(runtime_dir, ignore_errors=True)
