"""Driving the operator commands in-process (Typer's runner) against real daemons and processors."""

from __future__ import annotations

import json
import uuid

import httpx
from typer.testing import CliRunner

from rinha.cli.control_client import probe
from rinha.cli.main import app
from rinha.daemon.config import default_control_path
from tests.support.engines import query
from tests.support.wait import wait_until

#: The commands read these; the tests pass every value explicitly.
_CLEAN_ENV = {name: None for name in ("RINHA_DB", "RINHA_CONTROL", "RINHA_TOKEN", "RINHA_DEFAULT_URL",
                                      "RINHA_FALLBACK_URL")}


def rinha(*args: str, input: str | None = None):
    """Run ``rinha ARGS`` in-process; returns click's Result (``exit_code``, ``stdout``, ``stderr``).

    Unexpected exceptions propagate (an expected failure must never show a traceback).
    """
    return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "220", **_CLEAN_ENV},
                              catch_exceptions=False)


def rinha_json(*args: str, code: int = 0):
    result = rinha(*args, "--json")
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_line_error(result, code: int) -> str:
    """The failure is exactly one line on stderr, no traceback, with this exit code."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def control_socket(db: str) -> str:
    return default_control_path(db)


def wait_for_control(db: str) -> str:
    path = control_socket(db)
    wait_until(lambda: probe(path) == "running", timeout=15, what="control socket")
    return path


def new_id() -> str:
    return str(uuid.uuid4())


def payment_body(cid: str, amount: str = "19.90") -> str:
    return '{"correlationId":"%s","amount":%s}' % (cid, amount)


def row(db: str, cid: str) -> dict | None:
    """A payment's row, read straight from the store (either engine)."""
    from rinha.store import open_store

    store = open_store(db)
    try:
        return store.payment(cid)
    finally:
        store.close()


def state(db: str, cid: str) -> str | None:
    found = row(db, cid)
    return None if found is None else found["state"]


def control_get(db: str, endpoint: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=control_socket(db)), base_url="http://control",
                      timeout=10) as client:
        return client.get(endpoint)


def metric(text: str, line_start: str) -> float:
    """The value on the first line of a ``/metrics`` text that starts with ``line_start``."""
    return float(next(line for line in text.splitlines() if line.startswith(line_start)).rsplit(" ", 1)[1])


def make_dead_letter(daemon, processors) -> str:
    """A genuine dead letter: default failing, the daemon started with ``--max-age 1``."""
    processors.set("default", failure=True)
    cid = new_id()
    assert daemon.post(payment_body(cid)).status_code == 202
    wait_until(lambda: state(daemon.db, cid) == "dead", timeout=15, what="payment dead-lettered")
    return cid
