"""``rinha payment ID``: one payment's story, from the store (the daemon may be stopped)."""

from __future__ import annotations

import json
import re

import typer
from rich.console import Console
from rich.table import Table

from rinha.cli.control_client import db_option, fail, open_db
from rinha.clock import iso_from_ms
from rinha.money import format_cents

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def payment(
    correlation_id: str = typer.Argument(..., help="The payment's correlationId (a UUID)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (shape in the README)."),
    db: str = db_option(),
) -> None:
    """One payment's story: acceptance, every attempt, where it was paid or why it is dead.

    Each attempt shows its processor, requestedAt, outcome, HTTP status and latency; operator events (a replay re-queuing it, a replay finding it already paid) appear in the same list.

    Attempts older than the daemon's --attempts-retention (7 days by default) are pruned.

    Examples:

      rinha payment 4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3

      rinha payment 4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3 --json --db /var/lib/rinha/rinha.db
    """
    cid = correlation_id.strip().lower()
    if not _UUID.fullmatch(cid):
        raise typer.BadParameter(f"{correlation_id!r} is not a UUID like 4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3",
                                 param_hint="'CORRELATION_ID'")
    store = open_db(db)
    try:
        found = store.payment_story(cid)
    finally:
        store.close()
    if found is None:
        from rinha.store import display

        fail(f"no payment {cid} in {display(db)}")
    story = story_json(*found)
    if as_json:
        typer.echo(json.dumps(story))
        return
    _print(story)


def story_json(row: dict, history: list[dict]) -> dict:
    first = row.get("first_accepted_at_ms")
    state = row["state"]
    since_replay = history
    for index, event in enumerate(history):
        if event["outcome"] == "requeued":
            since_replay = history[index + 1:]
    if state == "paid" and not any(e["outcome"] in ("paid", "duplicate", "found") for e in since_replay):
        # The dispatcher keeps no attempt row for a first-try success: the payment's row tells it.
        history = [*history, {"at_ms": row["paid_at_ms"], "processor": row["processor"],
                              "requested_at": row["requested_at"], "outcome": "paid", "status": None,
                              "latency_ms": None, "detail": "from the payment's row (no attempt row is kept for a first-try success)"}]
    return {
        "correlationId": row["correlation_id"],
        "amount": format_cents(row["amount_cents"]),
        "state": state,
        "acceptedAt": _iso(first if first is not None else row["accepted_at_ms"]),
        "requeuedAt": _iso(row["accepted_at_ms"]) if first is not None else None,
        "pinned": row["pinned"],
        "ambiguous": bool(row["ambiguous"]),
        "paid": {"processor": row["processor"], "requestedAt": row["requested_at"], "at": _iso(row["paid_at_ms"])}
        if state == "paid" else None,
        "dead": {"reason": row["dead_reason"], "at": _iso(row["paid_at_ms"])} if state == "dead" else None,
        "attempts": [
            {"at": _iso(a["at_ms"]), "processor": a["processor"] if a["processor"] != "-" else None,
             "requestedAt": a["requested_at"], "outcome": a["outcome"], "status": a["status"],
             "latencyMs": a["latency_ms"], "detail": a["detail"] or None}
            for a in history
        ],
    }


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_from_ms(ms)


def _print(story: dict) -> None:
    console = Console()
    out = lambda text="": console.print(text, markup=False, highlight=False)  # noqa: E731
    out(f"payment {story['correlationId']}  amount {story['amount']}  state {story['state']}")
    out(f"accepted at {story['acceptedAt']}")
    if story["requeuedAt"]:
        out(f"re-queued from the dead letters at {story['requeuedAt']}")
    if story["pinned"]:
        out(f"pinned to {story['pinned']}{' (an attempt there had an unknown outcome)' if story['ambiguous'] else ''}")
    if story["attempts"]:
        table = Table(title=f"{len(story['attempts'])} attempts and events")
        for column in ("at", "processor", "requestedAt", "outcome", "status", "latency ms", "detail"):
            table.add_column(column, overflow="fold")
        for a in story["attempts"]:
            table.add_row(a["at"], a["processor"] or "-", a["requestedAt"] or "-", a["outcome"],
                          "-" if a["status"] is None else str(a["status"]),
                          "-" if a["latencyMs"] is None else f"{a['latencyMs']:.1f}", a["detail"] or "")
        console.print(table)
    else:
        out("no attempts recorded (none yet, or pruned after the retention)")
    if story["paid"]:
        paid = story["paid"]
        out(f"paid at {paid['processor']}, requestedAt {paid['requestedAt']} (recorded {paid['at']})")
    elif story["dead"]:
        out(f"dead since {story['dead']['at']}: {story['dead']['reason']}")
        out("replay it with: rinha replay-dlq (it is checked at both processors first)")
    else:
        out("not paid yet: waiting in the queue")
