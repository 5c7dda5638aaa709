"""``rinha replay-dlq``: re-queue dead-lettered payments, safely.

Safety: a dead letter is re-queued only after both processors said they do not hold it
(``GET /payments/{id}``); one that a processor holds is recorded paid there with the
``requestedAt`` that processor holds; one that cannot be checked stays dead. The check is made
by the running daemon (through its control socket) or, when no daemon answers there, by this
command, which then writes to the store itself: the payments are paid by whichever dispatching
instance claims them (within 50 ms if one runs, else on the next start).
"""

from __future__ import annotations

import json
import os
import socket
import time

import trio
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rinha.cli.control_client import (
    ControlClient,
    ControlUnavailable,
    control_option,
    control_path,
    db_option,
    fail,
    open_db,
    parse_instant_option,
    probe,
    run,
)
from rinha.clock import iso_from_us, now_ms
from rinha.store.base import Op

POLL_SECONDS = 0.2


def replay_dlq(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be replayed (after checking the processors); change nothing."),
    since: str = typer.Option(None, "--since", help="Only payments dead-lettered at or after this ISO-8601 instant."),
    reason: str = typer.Option(None, "--reason", help="Only dead letters whose reason contains this text (case-insensitive)."),
    limit: int = typer.Option(1000, "--limit", min=1, max=10_000, help="At most this many, oldest first."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    wait: float = typer.Option(60.0, "--wait", min=0, help="Seconds to wait for the re-queued payments to be paid (0: don't wait)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON (shape in the README); no tables, no progress bar."),
    db: str = db_option(),
    control: str = control_option(),
    default_url: str = typer.Option("http://localhost:8001", envvar="RINHA_DEFAULT_URL", help="Default processor (checked when no daemon runs)."),
    fallback_url: str = typer.Option("http://localhost:8002", envvar="RINHA_FALLBACK_URL", help="Fallback processor (checked when no daemon runs)."),
) -> None:
    """Re-queue dead-lettered payments, never one that a processor already has.

    Lists what matches, asks (unless --yes), checks each at both processors (one already held there is recorded paid with the requestedAt that processor holds), re-queues the rest through the running daemon (or in the store when no daemon runs: paid on its next start), then shows a progress bar until they are paid or dead again. Exit status 0 when everything replayed was paid (or found paid), 1 otherwise.

    Examples:

      rinha replay-dlq --dry-run

      rinha replay-dlq --since 2025-07-15T12:00:00Z --reason expired --yes

      rinha replay-dlq --limit 100 --wait 120 --db /var/lib/rinha/rinha.db
    """
    since_us = parse_instant_option(since, "--since")
    from rinha.daemon.config import ConfigError, check_url

    try:  # checked up front: they are needed only after the listing, when no daemon runs
        default_url = check_url("--default-url", default_url)
        fallback_url = check_url("--fallback-url", fallback_url)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    path = control_path(db, control)
    store = open_db(db)
    console = Console(stderr=as_json)
    try:
        try:
            mode = "daemon" if probe(path) == "running" else "store"
        except ControlUnavailable as exc:
            fail(str(exc))
        since_ms = None if since_us is None else since_us // 1000
        if mode == "daemon":
            listing = run(_list_via_daemon, path, since_us, reason, limit)
        else:
            from rinha.daemon.control import dead_letter_json

            listing = {"total": store.dead_letter_count(since_ms, reason),
                       "deadLetters": [dead_letter_json(row) for row in store.dead_letters(since_ms, reason, limit)]}
        letters = listing["deadLetters"]
        if not letters:
            if as_json:
                typer.echo(json.dumps(_outcome_json(mode, dry_run, 0, 0, None)))
            else:
                console.print("No dead letters match.", markup=False, highlight=False)
            return
        if not as_json:
            console.print(_letters_table(letters, listing["total"]))
            if mode == "store":
                console.print(f"No daemon answers on {path}: the replay writes to the store; the payments are paid "
                              "by a running dispatcher, or on the next start.", markup=False, highlight=False)
        ids = [letter["correlationId"] for letter in letters]
        if not dry_run and not yes:
            try:
                confirmed = typer.confirm(f"Replay {len(ids)} dead letters (each checked at both processors first)?")
            except typer.Abort:
                confirmed = False
            if not confirmed:
                fail("not confirmed; nothing replayed (pass --yes to skip the question)")
        if mode == "daemon":
            result = run(_replay_via_daemon, path, ids, dry_run)
        else:
            result = trio.run(_replay_in_store, store, ids, default_url, fallback_url, dry_run)
        final = None
        dispatching = _dispatcher_alive(store)
        if not dry_run and result["requeued"] and wait > 0 and dispatching:
            final = _follow(mode, path, store, result["requeued"], wait, console, show=not as_json)
        outcome = _outcome_json(mode, dry_run, len(ids), listing["total"], result, final)
        if as_json:
            typer.echo(json.dumps(outcome))
        else:
            _print_outcome(console, outcome, dispatching)
        if outcome["unverified"] or outcome["deadAgain"] or outcome["pending"]:
            raise typer.Exit(1)
    finally:
        store.close()


async def _list_via_daemon(path: str, since_us: int | None, reason: str | None, limit: int) -> dict:
    async with ControlClient(path) as client:
        return await client.get("/dlq", since=None if since_us is None else iso_from_us(since_us), reason=reason,
                                limit=limit)


async def _replay_via_daemon(path: str, ids: list[str], dry_run: bool) -> dict:
    async with ControlClient(path, timeout=120.0) as client:
        return await client.post("/dlq/replay", {"ids": ids, "dryRun": dry_run})


async def _replay_in_store(store, ids: list[str], default_url: str, fallback_url: str, dry_run: bool) -> dict:
    from rinha.daemon.control import lookup_processors, replay

    async def write(kind, *args):
        op = Op(kind, args)
        await trio.to_thread.run_sync(store.apply, [op])
        return op.result

    processors = lookup_processors(default_url, fallback_url)
    try:
        states = await trio.to_thread.run_sync(store.states, ids)
        return (await replay(ids, states, processors, write, dry_run)).as_json()
    finally:
        for processor in processors.values():
            await processor.aclose()


def _dispatcher_alive(store) -> bool:
    """Does a dispatching instance run? By its heartbeat in the store and, on this host, its pid."""
    from rinha.daemon.housekeeping import ALIVE_MS

    now, host = now_ms(), socket.gethostname()
    for row in store.instances():
        if "dispatch" not in row["roles"].split(",") or now - row["seen_at_ms"] > ALIVE_MS:
            continue
        if row["instance"].split(":", 1)[0] == host and row["pid"]:
            try:
                os.kill(row["pid"], 0)
            except ProcessLookupError:
                continue  # died since its last heartbeat
            except PermissionError:
                pass
        return True
    return False


def _follow(mode: str, path: str, store, ids: list[str], wait: float, console: Console, show: bool) -> dict[str, str]:
    """Poll the payments' states until each is paid or dead, or ``wait`` seconds passed."""
    if mode == "daemon":
        async def states() -> dict:
            async with ControlClient(path) as client:
                return (await client.post("/payments/states", {"ids": ids}))["states"]

        read = lambda: run(states)  # noqa: E731
    else:
        read = lambda: store.states(ids)  # noqa: E731
    deadline = time.monotonic() + wait
    with Progress(TextColumn("paying re-queued payments"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not show, transient=False) as progress:
        task = progress.add_task("replay", total=len(ids))
        while True:
            current = read()
            done = sum(1 for cid in ids if current.get(cid) in ("paid", "dead"))
            progress.update(task, completed=done)
            if done == len(ids) or time.monotonic() > deadline:
                return current
            time.sleep(POLL_SECONDS)


def _outcome_json(mode: str, dry_run: bool, selected: int, total: int, result: dict | None,
                  final: dict[str, str] | None = None) -> dict:
    result = result or {"requeued": [], "alreadyPaid": [], "unverified": [], "notDead": []}
    requeued = result["requeued"]
    followed = final is not None
    return {
        "mode": mode,
        "dryRun": dry_run,
        "matching": total,
        "selected": selected,
        "requeued": requeued,
        "alreadyPaid": result["alreadyPaid"],
        "unverified": result["unverified"],
        "notDead": result["notDead"],
        "followed": followed,
        "paid": [cid for cid in requeued if followed and final.get(cid) == "paid"],
        "deadAgain": [cid for cid in requeued if followed and final.get(cid) == "dead"],
        "pending": [cid for cid in requeued if followed and final.get(cid) not in ("paid", "dead")],
    }


def _letters_table(letters: list[dict], total: int) -> Table:
    shown = len(letters)
    title = f"{shown} dead letters" + (f" (of {total} matching; raise --limit for more)" if total > shown else "")
    table = Table(title=title)
    for column in ("correlationId", "amount", "dead at", "attempts", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(letter["correlationId"], letter["amount"], letter["deadAt"] or "-", str(letter["attempts"]),
                      letter["reason"] or "")
    return table


def _print_outcome(console: Console, outcome: dict, dispatching: bool) -> None:
    out = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    verb = "would be" if outcome["dryRun"] else "were"
    for paid in outcome["alreadyPaid"]:
        out(f"{paid['correlationId']}: already held by {paid['processor']} (requestedAt {paid['requestedAt']}): "
            f"{'would be recorded' if outcome['dryRun'] else 'recorded'} paid, not replayed")
    for item in outcome["unverified"]:
        out(f"{item['correlationId']}: could not be checked ({item['error']}): left dead")
    for cid in outcome["notDead"]:
        out(f"{cid}: no longer dead (paid or replayed meanwhile): left alone")
    out(f"{len(outcome['requeued'])} {verb} re-queued, {len(outcome['alreadyPaid'])} {verb} found paid at a processor, "
        f"{len(outcome['unverified'])} could not be checked, {len(outcome['notDead'])} no longer dead.")
    if outcome["dryRun"]:
        out("Dry run: nothing changed.")
        return
    if outcome["followed"]:
        out(f"Outcome: {len(outcome['paid'])} paid, {len(outcome['deadAgain'])} dead again, "
            f"{len(outcome['pending'])} still pending.")
        for cid in outcome["deadAgain"]:
            out(f"{cid}: dead again; see `rinha payment {cid}`")
        if outcome["pending"]:
            out("The pending ones are still being paid; follow them with `rinha status` or `rinha payment ID`.")
    elif outcome["requeued"]:
        if not dispatching:
            out("No dispatching daemon runs: they are paid when `rinha serve` starts on this database.")
        else:
            out("Not waiting (--wait 0): follow them with `rinha status` or `rinha payment ID`.")
