"""``rinha status`` and ``rinha health``: the running daemon's view, from its control plane."""

from __future__ import annotations

import json

import trio
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rinha.cli.control_client import (
    ControlClient,
    ControlError,
    ControlUnavailable,
    control_option,
    control_path,
    db_option,
    run,
)


def status(
    as_json: bool = typer.Option(False, "--json", help="Print the control plane's JSON (shape in the README)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh in place until Ctrl-C (with --json: one line per refresh)."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between refreshes with --watch."),
    db: str = db_option(),
    control: str = control_option(),
) -> None:
    """The running daemon's view: instances, queue depth, oldest unpaid payment, processors, policy.

    Shows the instances sharing the store and their roles, payments by state, the age of the oldest unpaid one, the breaker and last health reading per processor, and the routing policy.

    Examples:

      rinha status

      rinha status --watch --interval 0.5

      rinha status --json --db /var/lib/rinha/rinha.db
    """
    _show(control_path(db, control), "/status", render_status, as_json, watch, interval)


def health(
    as_json: bool = typer.Option(False, "--json", help="Print the control plane's JSON (shape in the README)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh in place until Ctrl-C (with --json: one line per refresh)."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between refreshes with --watch."),
    db: str = db_option(),
    control: str = control_option(),
) -> None:
    """The processors as the daemon sees them: breakers, health readings, who polls them.

    The breaker state comes from real payment outcomes; the health reading (failing, minResponseTime, its age) from the one instance that polls the processors.

    Examples:

      rinha health

      rinha health --watch

      rinha health --json --control /run/rinha/control.sock
    """
    _show(control_path(db, control), "/health", render_health, as_json, watch, interval)


def _show(path: str, endpoint: str, render, as_json: bool, watch: bool, interval: float) -> None:
    if not watch:
        data = run(_fetch_once, path, endpoint)
        if as_json:
            typer.echo(json.dumps(data))
        else:
            Console().print(render(data))
        return
    try:
        run(_watch, path, endpoint, render, as_json, interval)
    except KeyboardInterrupt:
        pass


async def _fetch_once(path: str, endpoint: str) -> dict:
    async with ControlClient(path) as client:
        return await client.get(endpoint)


async def _watch(path: str, endpoint: str, render, as_json: bool, interval: float) -> None:
    async with ControlClient(path, timeout=max(interval * 3, 5.0)) as client:
        if as_json:
            while True:
                try:
                    typer.echo(json.dumps(await client.get(endpoint)))
                except (ControlUnavailable, ControlError) as exc:
                    typer.echo(json.dumps({"error": str(exc)}))
                await trio.sleep(interval)
        console = Console()
        with Live(Text("asking the daemon..."), console=console, auto_refresh=False) as live:
            while True:
                try:
                    view = render(await client.get(endpoint))
                except (ControlUnavailable, ControlError) as exc:
                    view = Text(f"{exc} (retrying every {interval:g} s; Ctrl-C to stop)", style="red")
                live.update(view, refresh=True)
                await trio.sleep(interval)


# ---------------------------------------------------------------------------------------------
# rendering


def render_status(data: dict) -> Group:
    queue = data["queue"]
    head = Text()
    head.append(f"instance {data['instance']}", style="bold")
    head.append(f"  roles {','.join(data['roles'])}  policy {data['policy'] or '-'}  up {_duration(data['uptimeSeconds'])}")
    oldest = data["oldestPendingAgeSeconds"]
    queue_table = Table(title="payments (the whole store)")
    for column in ("pending", "paid", "dead", "oldest unpaid", "in memory", "in flight", "accepted here"):
        queue_table.add_column(column, justify="right")
    dispatcher, intake = data["dispatcher"] or {}, data["intake"] or {}
    queue_table.add_row(
        str(queue["pending"]), str(queue["paid"]), str(queue["dead"]),
        "-" if oldest is None else _duration(oldest),
        str(dispatcher.get("queued", "-")), str(dispatcher.get("inFlight", "-")), str(intake.get("accepted", "-")),
    )
    instances = Table(title="instances sharing the store")
    for column in ("instance", "roles", "pid", "control", "last seen", "state"):
        instances.add_column(column, overflow="fold")
    for row in data["instances"]:
        instances.add_row(row["instance"], ",".join(row["roles"]), str(row["pid"] or "-"), row["control"] or "-",
                          row["seenAt"], "alive" if row["alive"] else "gone", style=None if row["alive"] else "dim")
    parts = [head, queue_table]
    journal = data.get("journal")
    if journal is not None and journal.get("path") is not None:
        parts.append(_journal_line(journal))
    return Group(*parts, render_health(data), instances)


def _journal_line(journal: dict) -> Text:
    """This instance's intake journal: what is not yet in the store (so not in the counts above)."""
    failing = journal["failing"]
    line = Text(f"intake journal: {journal['pending']} not yet in the store, "
                f"{journal['moved']} moved, {journal['swept']} swept from dead instances, "
                f"{journal['conflicts']} conflicts  ({journal['path']})", style="red" if failing else None)
    if failing:
        line.append("  FAILING: the store refuses the moves (see the daemon's log)")
    return line


def render_health(data: dict) -> Group:
    table = Table(title="processors")
    for column in ("processor", "url", "breaker", "failing", "min response", "reading age"):
        table.add_column(column)
    for name, p in data["processors"].items():
        h = p["health"]
        breaker = p["breaker"] or "-"
        if p["breaker"] == "open":
            breaker = f"open ({p['consecutiveFailures']} failures)"
        table.add_row(
            name, p["url"], breaker,
            "-" if h is None else ("FAILING" if h["failing"] else "no"),
            "-" if h is None else f"{h['minResponseTime']} ms",
            "no reading" if h is None else _duration(h["ageSeconds"]),
            style="red" if (p["breaker"] == "open" or (h and h["failing"])) else None,
        )
    monitor = data["healthMonitor"]
    if monitor["holder"] is None:
        line = Text("health monitor: nobody polls the processors right now (no instance with the health role?)", style="yellow")
    else:
        here = " (this instance)" if monitor["thisInstance"] else ""
        line = Text(f"health monitor: {monitor['holder']}{here} polls the processors")
    return Group(table, line)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
