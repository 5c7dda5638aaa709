"""``rinha profile``: the stored runs, the comparison, the live stream's figures, the plot, and the
command's refusals. Fast: no load is run here (see tests/test_profile_run.py for real runs).

Recorded summaries come from tests/data/k6/ (see tests/test_score.py): ``perfect`` (p99 1.25 ms,
profit 380,035.872), ``lag_fallback`` (p99 41.7 ms, 746 lagging, profit 296,408.51),
``inconsistency`` (p99 3.25 ms, 35 % fine).
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from rinha.profiling import plot, profiles, progress, runner, runs, timeline, tools
from rinha.profiling.compare import compare
from rinha.score import load_summary, score
from rinha.store.sqlite import SQLiteStore
from tests.support.cli import one_line_error, rinha
from tests.support.procs import free_port
from tests.support.wait import wait_until

DATA = Path(__file__).parent / "data" / "k6"
ROOT = Path(__file__).resolve().parents[1]


def summary_text(name: str) -> str:
    return (DATA / f"{name}.json").read_text()


def stored(store: SQLiteStore, name: str, *, profile: str = "contest", baseline: bool = False,
           text: str | None = None) -> int:
    """Store a recorded summary as a run, scored as `rinha profile run` scores it."""
    text = text or summary_text(name)
    summary = json.loads(text, parse_float=Decimal)
    return store.add_profile_run(runs.new_run(profile, text, runs.score_summary(summary), started_at_ms=1_000,
                                              finished_at_ms=61_000, target="http://localhost:9999", vus=550,
                                              baseline=baseline))


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(str(tmp_path / "rinha.db"))
    store.migrate()
    yield store
    store.close()


def loaded(store: SQLiteStore, run_id: int) -> runs.LoadedRun:
    return runs.load(store.profile_run(run_id))


# --- the store's profile_runs -----------------------------------------------------------------


def test_runs_are_stored_with_their_summary_and_exact_score(store):
    run_id = stored(store, "lag_fallback")
    run = loaded(store, run_id)
    assert run.row.profile == "contest" and run.row.vus == 550 and not run.row.baseline
    assert run.summary == load_summary(DATA / "lag_fallback.json")
    # money is stored as exact decimal strings, never floats
    assert isinstance(run.score["profit"], str) and Decimal(run.score["profit"]) == Decimal("296408.51")
    assert run.decimal("profit") == score(run.summary).profit
    assert (run.score["accepted"], run.score["default_payments"], run.score["fallback_payments"]) == (16_740, 13_000, 2_994)
    assert run.score["lag"] == 746 and run.score["p99_ms"] == "41.70" and run.score["bonus"] == "0.00"


def test_one_baseline_per_profile(store):
    first = stored(store, "perfect", baseline=True)
    other_profile = stored(store, "perfect", profile="spike", baseline=True)
    second = stored(store, "lag_fallback", baseline=True)
    assert store.baseline_run("contest").id == second
    assert not store.profile_run(first).baseline
    assert store.baseline_run("spike").id == other_profile  # untouched: another profile
    assert store.mark_baseline(first) and store.baseline_run("contest").id == first
    assert not store.profile_run(second).baseline
    assert store.mark_baseline(9999) is False
    assert [run.id for run in store.profile_runs("contest")] == [second, first]
    assert [run.id for run in store.profile_runs(limit=1)] == [second]


def test_a_summary_without_the_contest_shape_is_stored_unscored(store):
    run_id = stored(store, "", text='{"profile": "mine", "http": {"p99": 3.5}}')
    run = loaded(store, run_id)
    assert run.score is None and run.decimal("profit") is None and run.latency("p99") == Decimal("3.5")


# --- the comparison -------------------------------------------------------------------------------


def test_a_worse_run_regresses_on_p99_and_profit(store):
    baseline = loaded(store, stored(store, "perfect", baseline=True))
    worse = loaded(store, stored(store, "lag_fallback"))
    result = compare(worse, baseline, max_p99_regression=Decimal(10), max_profit_regression=Decimal(1))
    assert result.regressed
    assert [r.split(" ")[0] for r in result.regressions] == ["p99", "profit"]
    p99 = next(row for row in result.rows if row.name == "p99_ms")
    assert (p99.current, p99.reference) == (Decimal("41.70"), Decimal("1.25"))
    assert p99.change_pct == (Decimal("41.70") - Decimal("1.25")) / Decimal("1.25") * 100
    profit = next(row for row in result.rows if row.name == "profit")
    assert (profit.current, profit.reference) == (Decimal("296408.51"), Decimal("380035.872"))


def test_thresholds_decide_what_is_a_regression(store):
    baseline = loaded(store, stored(store, "perfect", baseline=True))
    worse = loaded(store, stored(store, "lag_fallback"))
    # p99 +3236 %, profit −22.0 %: within generous thresholds there is no regression
    lenient = compare(worse, baseline, max_p99_regression=Decimal(4000), max_profit_regression=Decimal(23))
    assert not lenient.regressed
    just_under = compare(worse, baseline, max_p99_regression=Decimal(4000), max_profit_regression=Decimal(22))
    assert [r.split(" ")[0] for r in just_under.regressions] == ["profit"]


def test_a_better_run_never_regresses(store):
    baseline = loaded(store, stored(store, "lag_fallback", baseline=True))
    better = loaded(store, stored(store, "perfect"))
    assert not compare(better, baseline, max_p99_regression=Decimal(0), max_profit_regression=Decimal(0)).regressed
    same = compare(baseline, baseline, max_p99_regression=Decimal(0), max_profit_regression=Decimal(0))
    assert not same.regressed and all(row.change_pct in (None, 0) for row in same.rows)


def test_disqualification_and_a_missing_p99_are_regressions(store):
    baseline = loaded(store, stored(store, "perfect", baseline=True))
    summary = json.loads(summary_text("perfect"))
    summary["payments"]["accepted"] -= 1  # one more recorded than accepted
    summary["http"]["p99"] = None
    broken = loaded(store, stored(store, "", text=json.dumps(summary)))
    result = compare(broken, baseline, max_p99_regression=Decimal(1000), max_profit_regression=Decimal(100))
    assert [r.split(" ")[0].rstrip(":") for r in result.regressions] == ["p99", "disqualified"]


# --- the point stream (for a plot) and the live progress ---------------------------------------


def point(metric: str, value: float, second: float, **tags) -> str:
    whole, fraction = divmod(second, 1)
    time = f"2026-11-26T01:00:{int(whole):02d}.{int(round(fraction * 1e6)):06d}Z"
    return json.dumps({"metric": metric, "type": "Point", "data": {"time": time, "value": value, "tags": tags}},
                      separators=(",", ":"))


def test_the_timeline_follows_phases_and_latency_per_second():
    stats = timeline.Timeline()
    stats.feed('{"type":"Metric","data":{"name":"http_reqs"},"metric":"http_reqs"}')  # declarations are skipped
    stats.feed(point("http_reqs", 1, 0.1, group="::setup", name="default PUT /admin/configurations/failure"))
    assert stats.phase == "setup"
    for i in range(100):
        second = 1 + i / 100
        stats.feed(point("http_reqs", 1, second, scenario="payments", name="backend POST /payments"))
        stats.feed(point("http_req_duration", float(i + 1), second, scenario="payments", expected_response="true"))
        stats.feed(point("contest_payments_accepted", 1, second, scenario="payments"))
    stats.feed(point("http_req_duration", 5000.0, 1.5, scenario="payments", expected_response="false"))  # a timeout
    stats.feed(point("contest_payments_rejected", 1, 1.5, scenario="payments"))
    stats.feed(point("http_reqs", 1, 2.0, scenario="processor_stages", name="default PUT /admin/configurations/failure"))
    stats.feed(point("http_reqs", 1, 2.0, scenario="processor_stages", name="fallback PUT /admin/configurations/failure"))
    assert stats.phase == "load"
    assert stats.load_start_s - stats.start_s == pytest.approx(1.0)  # the first scenario point, after setup
    rows = stats.rows()
    assert [row["t"] for row in rows] == [0, 1, 2]
    assert [row["requests"] for row in rows] == [1, 100, 2]
    assert rows[1]["accepted"] == 100 and rows[1]["max"] == 100.0 and rows[1]["p50"] == 50.5
    assert rows[1]["p99"] == pytest.approx(99.01)  # k6's interpolation over 1..100 ms, the timeout left out
    assert rows[-1]["accepted_total"] == 100 and rows[-1]["rejected_total"] == 1
    stats.feed(point("http_reqs", 1, 3.0, group="::teardown", name="backend GET /payments-summary"))
    assert stats.phase == "teardown"
    stats.feed('{"metric":"http_reqs","type":"Point","data":{"time":"yesterday"}}')
    assert stats.malformed == 1


def test_percentiles_interpolate_like_k6():
    assert timeline.percentile([], 99) is None
    assert timeline.percentile([7.0], 99) == 7.0
    assert timeline.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def k6_metric(metric_id: str, **sample) -> dict:
    """A ``GET /v1/metrics/{id}`` answer of k6's REST API (its shape in k6 1.1)."""
    return {"data": {"type": "metrics", "id": metric_id, "attributes": {"type": "counter", "sample": sample}}}


def k6_status(code: int) -> dict:
    return {"data": {"type": "status", "id": "default", "attributes": {"status": code, "running": True}}}


def test_progress_reads_k6s_rest_api_answers():
    assert progress.from_api(k6_status(3), {}) == progress.Progress()  # k6 starting: nothing counted yet
    assert progress.from_api(k6_status(6), {}).phase == "setup"
    during = progress.from_api(k6_status(7), {
        "requests": k6_metric("http_reqs", count=1203, rate=400.1),
        "accepted": k6_metric("contest_payments_accepted", count=1190, rate=396.0),
        "rejected": None,  # no payment rejected: k6 has no such metric yet (404)
        "stages": k6_metric("contest_processor_stages", count=2, rate=0.1),
        "latency": k6_metric("http_req_duration{expected_response:true}", avg=1.1, max=9.5, med=0.9,
                             min=0.2, **{"p(90)": 2.0, "p(95)": 3.25}),
    })
    assert during == progress.Progress(phase="load", stage=2, requests=1203, accepted=1190, rejected=0,
                                       p95=3.25, max=9.5)
    assert progress.from_api(k6_status(8), {}).phase == "teardown"


def counting_script(tmp_path, seconds: int) -> Path:
    """A k6 script with the metrics the live view reads: each iteration one accepted payment, and
    one request to k6's own API if its address is given as ``API``."""
    script = tmp_path / "progress.js"
    script.write_text(
        'import http from "k6/http";\n'
        'import { sleep } from "k6";\n'
        'import { Counter } from "k6/metrics";\n'
        'const accepted = new Counter("contest_payments_accepted");\n'
        f'export const options = {{ vus: 2, duration: "{seconds}s" }};\n'
        'export default function () {\n'
        '  if (__ENV.API) http.get(`http://${__ENV.API}/v1/status`);\n'
        '  accepted.add(1);\n'
        '  sleep(0.05);\n'
        '}\n')
    return script


def test_progress_reads_a_real_k6s_api_and_the_address_is_free(tmp_path):
    """k6's API on a free port, read while it runs."""
    script = counting_script(tmp_path, 30)
    api = progress.free_address()
    proc = subprocess.Popen([tools.k6(), "run", "--quiet", "--no-usage-report", "--address", api, "-e", f"API={api}",
                             str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://{api}", timeout=2) as client:
            def counted():
                now = progress.read(client)  # None until k6's API listens
                return now if now is not None and now.accepted >= 5 else None

            seen = wait_until(counted, timeout=30, what="k6's API counting payments")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert seen.phase == "load" and seen.requests >= 5 and seen.rejected == 0 and seen.stage == 0
    assert seen.p95 is not None and 0 < seen.p95 <= seen.max
    with httpx.Client(base_url=f"http://{api}", timeout=1) as client:
        assert progress.read(client) is None  # k6 gone: no progress, no exception


def test_k6s_api_port_taken_is_named_in_the_error(tmp_path):
    """k6 cannot listen for its API (two runs racing for one port): the one-line error says why."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run([tools.k6(), "run", "--quiet", "--no-usage-report", "--address", address,
                               str(counting_script(tmp_path, 1))], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    message = runner.k6_error(done.stderr + done.stdout)
    assert "address already in use" in message and address in message, message


def test_the_terminal_view_follows_a_real_k6_run(tmp_path):
    """runner.run with a terminal console: the rich view, fed from k6's API, is drawn to the end."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    request = runner.RunRequest(profile="counting", script=counting_script(tmp_path, 3), target="http://127.0.0.1:1",
                                default_url="", fallback_url="", k6=tools.k6())
    result = runner.run(request, console, planned=3.0)
    assert result.exit_code == 0 and result.summary is None  # the script writes no summary
    assert result.timeline == []  # no point stream without a plot
    drawn = out.getvalue()
    assert "rinha profile run counting" in drawn and "(done)" in drawn
    accepted = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) accepted", drawn)]
    assert accepted and max(accepted) > 0  # k6's counts reached the view


# --- profiles, k6 and the plot --------------------------------------------------------------------


def test_profiles_are_found_by_name_or_path():
    known = profiles.available()
    assert {"contest", "spike", "long-outage", "soak"} <= set(known)
    assert profiles.resolve("contest") == ("contest", (ROOT / "profiles" / "contest.js").resolve())
    assert profiles.resolve(str(ROOT / "profiles" / "soak.js"))[0] == "soak"
    with pytest.raises(profiles.UnknownProfile, match="known: contest"):
        profiles.resolve("nope")


@pytest.mark.parametrize(("name", "env", "seconds"), [
    ("contest", {}, 60), ("contest", {"STAGE_SECONDS": "2"}, 12),
    ("spike", {}, 81), ("spike", {"SPIKES": "1", "SPIKE_SECONDS": "2", "CALM_SECONDS": "3"}, 10),
    ("long-outage", {}, 250), ("soak", {}, 600), ("soak", {"SOAK_SECONDS": "15"}, 15),
])
def test_every_profile_loads_in_k6_with_its_planned_length(name, env, seconds):
    _, script = profiles.resolve(name)
    request = runner.RunRequest(profile=name, script=script, target="http://127.0.0.1:1", default_url="",
                                fallback_url="", k6=tools.k6(), env=env)
    assert runner.planned_seconds(request) == seconds


def test_a_bad_profile_parameter_is_the_scripts_own_message():
    _, script = profiles.resolve("contest")
    request = runner.RunRequest(profile="contest", script=script, target="http://127.0.0.1:1", default_url="",
                                fallback_url="", k6=tools.k6(), env={"STAGE_SECONDS": "soon"})
    with pytest.raises(runner.ProfileInvalid, match='STAGE_SECONDS must be a number above 0, got "soon"'):
        runner.planned_seconds(request)


def test_the_k6_command_carries_the_options():
    request = runner.RunRequest(profile="contest", script=Path("/p/contest.js"), target="http://t:1",
                                default_url="http://d:2", fallback_url="http://f:3", k6="k6", vus=40, token="tok",
                                env={"STAGE_SECONDS": "2"})
    command = runner.k6_command(request, "/tmp/summary.json", "127.0.0.1:4242")
    assert command[:2] == ["k6", "run"] and command[-1] == "/p/contest.js"
    assert command[command.index("--address") + 1] == "127.0.0.1:4242"
    assert "--out" not in command  # no point stream unless a plot needs it
    with_stream = runner.k6_command(request, "/tmp/summary.json", "127.0.0.1:4242", "/tmp/s.fifo")
    assert with_stream[with_stream.index("--out") + 1] == "json=/tmp/s.fifo"
    pairs = {command[i + 1] for i, arg in enumerate(command) if arg == "-e"}
    assert {"TARGET=http://t:1", "DEFAULT_URL=http://d:2", "FALLBACK_URL=http://f:3", "PROCESSOR_TOKEN=tok",
            "MAX_REQUESTS=40", "STAGE_SECONDS=2", "SUMMARY_PATH=/tmp/summary.json"} == pairs


def test_the_plot_is_a_png(tmp_path):
    stats = timeline.Timeline()
    for i in range(300):
        stats.feed(point("http_req_duration", 1 + i % 7, i / 10, scenario="payments", expected_response="true"))
        stats.feed(point("contest_payments_accepted", 1, i / 10, scenario="payments"))
    rows = stats.rows()
    for row in rows:
        row["at"] = stats.start_s + row["t"]
    samples = [{"at": stats.start_s + t, "paid": 10 * t, "pending": 30 - t} for t in range(30)]
    out = plot.write(tmp_path / "run.png", rows, samples, "test run")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the command's refusals and compare ----------------------------------------------------------


def test_unknown_profile_bad_urls_and_bad_env_are_refused(tmp_path):
    db = str(tmp_path / "runs.db")
    assert "unknown profile 'nope'" in one_line_error(rinha("profile", "run", "nope", "--db", db), 2)
    bad_target = rinha("profile", "run", "contest", "--target", "localhost:9999", "--db", db)
    assert bad_target.exit_code == 2 and "--target" in bad_target.stderr and "Traceback" not in bad_target.stderr
    one_url = rinha("profile", "run", "contest", "--processors", "http://127.0.0.1:8001", "--db", db)
    assert one_url.exit_code == 2 and "--processors" in one_url.stderr
    bad_env = rinha("profile", "run", "contest", "-e", "STAGE_SECONDS", "--db", db)
    assert bad_env.exit_code == 2 and "KEY=VALUE" in bad_env.stderr
    reserved = rinha("profile", "run", "contest", "-e", "TARGET=http://x", "--db", db)
    assert reserved.exit_code == 2 and "TARGET" in reserved.stderr
    assert rinha("profile", "run", "contest", "--vus", "0", "--db", db).exit_code == 2
    bad_value = one_line_error(rinha("profile", "run", "contest", "-e", "STAGE_SECONDS=soon", "--db", db), 2)
    assert 'profile contest does not load: STAGE_SECONDS must be a number above 0, got "soon"' in bad_value
    assert not Path(db).exists()  # refused before anything was created


def test_missing_k6_and_matplotlib_are_one_line_each(tmp_path, monkeypatch):
    db = str(tmp_path / "runs.db")
    monkeypatch.setenv("RINHA_K6", str(tmp_path / "no-k6"))
    assert "RINHA_K6" in one_line_error(rinha("profile", "run", "contest", "--db", db), 1)
    monkeypatch.delenv("RINHA_K6")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    message = one_line_error(rinha("profile", "run", "contest", "--plot", str(tmp_path / "p.png"), "--db", db), 1)
    assert "matplotlib" in message and "pip install 'rinha[profile]'" in message


def test_a_backend_that_does_not_answer_is_one_line(tmp_path):
    target = f"http://127.0.0.1:{free_port()}"
    message = one_line_error(rinha("profile", "run", "contest", "--target", target, "--db", str(tmp_path / "r.db")), 1)
    assert f"the backend does not answer at {target}/payments-summary" in message
    assert not (tmp_path / "r.db").exists()


def test_flamegraph_needs_a_daemon_or_a_pid(tmp_path, processors):
    db = str(tmp_path / "runs.db")
    target = processors.default_url  # answers HTTP: enough to get past the backend check
    no_daemon = one_line_error(rinha("profile", "run", "contest", "--target", target,
                                     "--flamegraph", str(tmp_path / "f.svg"), "--db", db), 1)
    assert "no daemon" in no_daemon
    # a pid that is no Python process (nor any process)
    message = one_line_error(rinha("profile", "run", "contest", "--target", target,
                                   "--flamegraph", str(tmp_path / "f.svg"), "--pid", "999999", "--db", db), 1)
    assert "999999" in message
    assert rinha("profile", "run", "contest", "--pid", "1", "--db", db).exit_code == 2  # --pid without --flamegraph


def test_compare_exits_1_on_a_regression_and_0_within_thresholds(tmp_path):
    db = str(tmp_path / "runs.db")
    store = SQLiteStore(db)
    store.migrate()
    base = stored(store, "perfect", baseline=True)
    worse = stored(store, "lag_fallback")
    store.close()

    result = rinha("profile", "compare", "--db", db)  # the latest run against its profile's baseline
    assert result.exit_code == 1, result.stdout
    assert "REGRESSION p99 41.70 ms against 1.25 ms" in result.stdout
    assert "REGRESSION profit 296,408.51 against 380,035.87" in result.stdout

    lenient = rinha("profile", "compare", str(worse), "--max-p99-regression", "5000", "--max-profit-regression", "50",
                    "--db", db, "--json")
    assert lenient.exit_code == 0, lenient.stdout
    document = json.loads(lenient.stdout)
    assert (document["run"]["id"], document["against"]["id"], document["regressed"]) == (worse, base, False)
    profit = next(f for f in document["figures"] if f["name"] == "profit")
    assert (Decimal(profit["run"]), Decimal(profit["against"])) == (Decimal("296408.51"), Decimal("380035.872"))

    reverse = rinha("profile", "compare", str(base), "--against", str(worse), "--db", db)
    assert reverse.exit_code == 0 and "No regression" in reverse.stdout

    assert "is the contest baseline itself" in one_line_error(rinha("profile", "compare", str(base), "--db", db), 1)
    assert "no run #77" in one_line_error(rinha("profile", "compare", "77", "--db", db), 1)
    assert "before #1" in one_line_error(rinha("profile", "compare", str(base), "--against", "previous", "--db", db), 1)
    assert rinha("profile", "compare", "--against", "yesterday", "--db", db).exit_code == 2

    listed = json.loads(rinha("profile", "list", "--db", db, "--json").stdout)
    assert [(run["id"], run["baseline"]) for run in listed] == [(worse, False), (base, True)]


def test_compare_without_runs_or_database(tmp_path):
    assert "no database" in one_line_error(rinha("profile", "compare", "--db", str(tmp_path / "none.db")), 1)
    db = str(tmp_path / "empty.db")
    SQLiteStore(db).migrate()
    assert "no profile run" in one_line_error(rinha("profile", "compare", "--db", db), 1)
