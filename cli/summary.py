"""``rinha summary``: the payments summary from the store, and its audit against the processors.

Reads the store only (the daemon may be stopped). ``--audit`` sets the processors' own
``/admin/payments-summary`` for the same window beside it and names every difference.
Exit codes: 0 (agree, or no audit), 1 (they differ), 2 (a processor cannot be read, or a bad option).
"""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import typer
from rich.console import Console
from rich.table import Table

from rinha.cli.control_client import db_option, fail, open_db, parse_instant_option
from rinha.clock import iso_from_us
from rinha.money import format_cents
from rinha.processor import DEFAULT, FALLBACK, PROCESSORS
from rinha.store.base import Summary

#: The contest's fees (the processors report theirs as ``feePerTransaction``; --audit uses those).
FEES = {DEFAULT: Decimal("0.05"), FALLBACK: Decimal("0.15")}
#: Bounds that stand for "unbounded" when only one of --from/--to is given. The processors count
#: everything when either bound is missing, so both sides are given both bounds.
FAR_PAST, FAR_FUTURE = "1970-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"


def summary(
    from_: str = typer.Option(None, "--from", help="Window start, ISO-8601 (inclusive); default: unbounded."),
    to: str = typer.Option(None, "--to", help="Window end, ISO-8601 (inclusive); default: unbounded."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the contest's shape; see the README for --audit)."),
    audit: bool = typer.Option(False, "--audit", help="Compare with the processors' /admin/payments-summary."),
    db: str = db_option(),
    default_url: str = typer.Option("http://localhost:8001", envvar="RINHA_DEFAULT_URL", help="Default processor (for --audit)."),
    fallback_url: str = typer.Option("http://localhost:8002", envvar="RINHA_FALLBACK_URL", help="Fallback processor (for --audit)."),
    token: str = typer.Option("123", envvar="RINHA_TOKEN", help="The processors' admin token (X-Rinha-Token, for --audit)."),
    timeout: float = typer.Option(10.0, help="Seconds to wait for each processor (for --audit)."),
) -> None:
    """Payments recorded paid, by processor: requests, amount, fee and net, from the store.

    Works with the daemon stopped. Exit status with --audit: 0 when the store and the processors agree, 1 when they differ, 2 when a processor cannot be read.

    Examples:

      rinha summary

      rinha summary --from 2025-07-15T12:00:00Z --to 2025-07-15T12:01:00Z --json

      RINHA_TOKEN=secret rinha summary --audit --db /var/lib/rinha/rinha.db
    """
    if not 0 < timeout <= 3600:  # NaN too
        raise typer.BadParameter(f"{timeout}: expected seconds, more than 0 and at most 3600", param_hint="'--timeout'")
    from_us, to_us = parse_instant_option(from_, "--from"), parse_instant_option(to, "--to")
    bounds = (from_, to)
    if (from_us is None) != (to_us is None):
        bounds = (from_ if from_us is not None else FAR_PAST, to if to_us is not None else FAR_FUTURE)
        from_us = from_us if from_us is not None else parse_instant_option(FAR_PAST, "--from")
        to_us = to_us if to_us is not None else parse_instant_option(FAR_FUTURE, "--to")
    store = open_db(db)
    try:
        ours = store.summary(from_us, to_us)
    finally:
        store.close()
    window = (None if from_us is None else iso_from_us(from_us), None if to_us is None else iso_from_us(to_us))
    if not audit:
        if as_json:
            typer.echo(ours.contest_json().decode())
        else:
            Console().print(_table(ours, window))
        return
    theirs = {name: _fetch(name, default_url if name == DEFAULT else fallback_url, token, bounds, timeout)
              for name in PROCESSORS}
    differences = compare(ours, theirs)
    if as_json:
        typer.echo(json.dumps({
            "from": window[0], "to": window[1],
            "ours": json.loads(ours.contest_json()),
            "processors": {name: {key: _number(value) for key, value in side.items()} for name, side in theirs.items()},
            "differences": [{**d, "ours": _number(d["ours"]), "theirs": _number(d["theirs"])} for d in differences],
            "agree": not differences,
        }))
    else:
        console = Console()
        console.print(_audit_table(ours, theirs, differences, window))
        if differences:
            for d in differences:
                console.print(f"DIFFERENCE {d['processor']} {d['field']}: store {d['ours']}, processor {d['theirs']}",
                              markup=False, highlight=False)
        else:
            console.print("The store and the processors agree.", markup=False, highlight=False)
    raise typer.Exit(1 if differences else 0)


def compare(ours: Summary, theirs: dict[str, dict]) -> list[dict]:
    """Every field that differs: requests and amount (to the cent), per processor."""
    differences = []
    for name in PROCESSORS:
        side = ours.default if name == DEFAULT else ours.fallback
        their = theirs[name]
        if side.requests != their["totalRequests"]:
            differences.append({"processor": name, "field": "totalRequests", "ours": side.requests,
                                "theirs": their["totalRequests"]})
        amount = Decimal(format_cents(side.amount_cents))
        if amount != their["totalAmount"]:
            differences.append({"processor": name, "field": "totalAmount", "ours": amount, "theirs": their["totalAmount"]})
    return differences


def _fetch(name: str, url: str, token: str, bounds: tuple[str | None, str | None], timeout: float) -> dict:
    params = {key: value for key, value in zip(("from", "to"), bounds) if value}
    endpoint = f"{url.rstrip('/')}/admin/payments-summary"
    try:
        reply = httpx.get(endpoint, params=params, headers={"X-Rinha-Token": token}, timeout=timeout)
    except httpx.HTTPError as exc:
        fail(f"cannot read the {name} processor's summary at {endpoint}: {type(exc).__name__} {exc}".rstrip(), 2)
    if reply.status_code == 401:
        fail(f"the {name} processor refused the admin token (401 at {endpoint}): pass --token or set RINHA_TOKEN", 2)
    if reply.status_code != 200:
        fail(f"the {name} processor answered {reply.status_code} at {endpoint}", 2)
    try:
        data = json.loads(reply.text, parse_float=Decimal, parse_int=Decimal)
        side = {key: Decimal(data[key]) for key in ("totalRequests", "totalAmount", "totalFee", "feePerTransaction")}
        side["totalRequests"] = int(side["totalRequests"])
    except (ValueError, KeyError, TypeError, ArithmeticError):
        fail(f"the {name} processor's summary at {endpoint} is unreadable: {reply.text[:120]!r}", 2)
    return side


def _number(value):
    """Decimals as JSON numbers (exact for the amounts at hand)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _money(value: Decimal) -> str:
    """An exact amount with at least two decimals (fees may have four)."""
    text = format(value.normalize(), "f")
    whole, _, part = text.partition(".")
    return f"{whole}.{part.ljust(2, '0')}"


def _fee(cents: int, rate: Decimal) -> Decimal:
    return Decimal(cents) / 100 * rate


def _title(window: tuple[str | None, str | None]) -> str:
    if window[0] is None:
        return "Payments recorded paid (all time)"
    return f"Payments recorded paid, {window[0]} to {window[1]}"


def _table(ours: Summary, window) -> Table:
    table = Table(title=_title(window))
    for column in ("processor", "requests", "amount", "fee", "net"):
        table.add_column(column, justify="left" if column == "processor" else "right")
    total_requests, total_amount, total_fee = 0, Decimal(0), Decimal(0)
    for name in PROCESSORS:
        side = ours.default if name == DEFAULT else ours.fallback
        amount, fee = Decimal(side.amount_cents) / 100, _fee(side.amount_cents, FEES[name])
        table.add_row(name, str(side.requests), _money(amount), _money(fee), _money(amount - fee))
        total_requests, total_amount, total_fee = total_requests + side.requests, total_amount + amount, total_fee + fee
    table.add_row("total", str(total_requests), _money(total_amount), _money(total_fee), _money(total_amount - total_fee),
                  style="bold")
    return table


def _audit_table(ours: Summary, theirs: dict[str, dict], differences: list[dict], window) -> Table:
    table = Table(title=_title(window) + ": store vs processors")
    for column in ("processor", "requests", "processor's", "amount", "processor's ", "fee", "net", "verdict"):
        table.add_column(column, justify="left" if column in ("processor", "verdict") else "right")
    differing = {(d["processor"], d["field"]) for d in differences}
    for name in PROCESSORS:
        side, their = (ours.default if name == DEFAULT else ours.fallback), theirs[name]
        amount = Decimal(side.amount_cents) / 100
        fee = _fee(side.amount_cents, their["feePerTransaction"])
        requests_differ = (name, "totalRequests") in differing
        amount_differs = (name, "totalAmount") in differing
        verdict = ", ".join(label for label, bad in (("requests", requests_differ), ("amount", amount_differs)) if bad)
        table.add_row(
            name, str(side.requests), f"{their['totalRequests']}{' ≠' if requests_differ else ''}",
            _money(amount), f"{_money(their['totalAmount'])}{' ≠' if amount_differs else ''}",
            _money(fee), _money(amount - fee),
            f"DIFFERS: {verdict}" if verdict else "agrees",
            style="red" if verdict else None,
        )
    return table
