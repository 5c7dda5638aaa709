"""`rinha summary`, with and without `--audit`, against a real daemon's store and real processors."""

from __future__ import annotations

import sqlite3

import httpx

from tests.support.engines import both_engines, query
from tests.support.cli import new_id, one_line_error, payment_body, rinha, rinha_json
from tests.support.procs import free_port
from tests.support.wait import wait_until


def audit_args(daemon, processors, *extra: str) -> list[str]:
    return ["summary", "--audit", "--db", daemon.db, "--default-url", processors.default_url,
            "--fallback-url", processors.fallback_url, "--token", "123", *extra]


def pay(daemon, count: int, amount: str = "19.90") -> list[str]:
    ids = [new_id() for _ in range(count)]
    for cid in ids:
        assert daemon.post(payment_body(cid, amount)).status_code == 202
    return ids


@both_engines
def test_summary_reads_the_store_with_the_daemon_stopped(daemon_factory, processors):
    daemon = daemon_factory()
    pay(daemon, 3)
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 3, what="3 paid")
    served = daemon.summary()
    daemon.service.stop()

    assert rinha_json("summary", "--db", daemon.db) == served
    assert served == {"default": {"totalRequests": 3, "totalAmount": 59.7},
                      "fallback": {"totalRequests": 0, "totalAmount": 0}}
    table = rinha("summary", "--db", daemon.db)
    assert table.exit_code == 0
    default_line = next(line for line in table.stdout.splitlines() if "default" in line)
    assert [cell.strip() for cell in default_line.split("│")[1:6]] == ["default", "3", "59.70", "2.985", "56.715"]

    [(first,)] = query(daemon.db, "SELECT MIN(requested_at) FROM payments")
    assert rinha_json("summary", "--db", daemon.db, "--from", first, "--to", first)["default"]["totalRequests"] == 1
    assert rinha_json("summary", "--db", daemon.db, "--to", "2000-01-01T00:00:00Z")["default"]["totalRequests"] == 0
    assert rinha_json("summary", "--db", daemon.db, "--from", "2000-01-01")["default"]["totalRequests"] == 3


def test_audit_agrees_then_names_a_payment_made_behind_the_daemons_back(daemon_factory, processors):
    daemon = daemon_factory()
    pay(daemon, 2)
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 2, what="2 paid")

    agreeing = rinha(*audit_args(daemon, processors))
    assert agreeing.exit_code == 0, agreeing.stdout
    assert "agree" in agreeing.stdout
    report = rinha_json(*audit_args(daemon, processors))
    assert report["agree"] is True and report["differences"] == []
    assert report["processors"]["default"]["totalRequests"] == 2
    assert report["processors"]["default"]["feePerTransaction"] == 0.05

    sneaky = httpx.post(processors.default_url + "/payments", timeout=10,
                        json={"correlationId": new_id(), "amount": 5.00, "requestedAt": "2025-07-15T12:00:00.000Z"})
    assert sneaky.status_code == 200

    differing = rinha(*audit_args(daemon, processors))
    assert differing.exit_code == 1
    assert "DIFFERS: requests, amount" in differing.stdout
    assert "DIFFERENCE default totalRequests: store 2, processor 3" in differing.stdout
    assert "DIFFERENCE default totalAmount: store 39.80, processor 44.80" in differing.stdout
    report = rinha_json(*audit_args(daemon, processors), code=1)
    assert report["agree"] is False
    assert report["differences"] == [
        {"processor": "default", "field": "totalRequests", "ours": 2, "theirs": 3},
        {"processor": "default", "field": "totalAmount", "ours": 39.8, "theirs": 44.8},
    ]
    # a window that leaves the sneaky payment out agrees again
    after = rinha_json(*audit_args(daemon, processors, "--from", "2025-07-16T00:00:00Z"))
    assert after["agree"] is True and after["to"] == "9999-12-31T23:59:59.999Z"


def test_audit_exits_2_when_a_processor_cannot_be_read(daemon_factory, processors):
    daemon = daemon_factory()
    daemon.service.stop()
    wrong_token = one_line_error(rinha(*audit_args(daemon, processors)[:-1], "not-the-token"), 2)
    assert "401" in wrong_token and "--token" in wrong_token
    closed = f"http://127.0.0.1:{free_port()}"
    args = audit_args(daemon, processors)
    args[args.index("--fallback-url") + 1] = closed
    unreachable = one_line_error(rinha(*args), 2)
    assert "fallback" in unreachable and closed in unreachable


def test_summary_errors(tmp_path):
    assert "no database at" in one_line_error(rinha("summary", "--db", str(tmp_path / "missing.db")), 1)
    assert not (tmp_path / "missing.db").exists()  # never created
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    assert str(junk) in one_line_error(rinha("summary", "--db", str(junk)), 1)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert "not a rinha database" in one_line_error(rinha("summary", "--db", str(empty)), 1)
    bad_date = rinha("summary", "--from", "2025-13-45", "--db", str(junk))
    assert bad_date.exit_code == 2 and "--from" in bad_date.stderr and "Traceback" not in bad_date.stderr
    for timeout in ("-1", "0", "nan", "inf"):
        bad_timeout = rinha("summary", "--audit", "--timeout", timeout, "--db", str(junk))
        assert bad_timeout.exit_code == 2 and "--timeout" in bad_timeout.stderr, bad_timeout.stderr
