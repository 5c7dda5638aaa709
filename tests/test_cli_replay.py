"""`rinha replay-dlq` against a real daemon and real processors: genuine dead letters, replayed."""

from __future__ import annotations

import json

import httpx

from tests.support.engines import both_engines
from tests.support.cli import (
    control_socket,
    make_dead_letter,
    one_line_error,
    rinha,
    rinha_json,
    row,
    state,
    wait_for_control,
)
from tests.support.procs import free_port
from tests.support.wait import wait_until


@both_engines
def test_replay_through_the_daemon_pays_a_genuine_dead_letter(daemon_factory, processors):
    daemon = daemon_factory("--max-age", "1")
    wait_for_control(daemon.db)
    cid = make_dead_letter(daemon, processors)
    assert row(daemon.db, cid)["dead_reason"].startswith("expired")
    processors.set("default", failure=False)

    # not confirmed: nothing happens
    refused = rinha("replay-dlq", "--db", daemon.db, input="n\n")
    assert refused.exit_code == 1 and "not confirmed" in refused.stderr
    assert cid in refused.stdout  # it showed what it would replay
    assert state(daemon.db, cid) == "dead"

    # a dry run checks the processors and changes nothing
    dry = rinha_json("replay-dlq", "--db", daemon.db, "--dry-run")
    assert dry["mode"] == "daemon" and dry["dryRun"] is True
    assert dry["requeued"] == [cid] and dry["alreadyPaid"] == [] and dry["paid"] == []
    assert state(daemon.db, cid) == "dead"

    # other filters select nothing
    nothing = rinha("replay-dlq", "--db", daemon.db, "--reason", "no such reason", "--yes")
    assert nothing.exit_code == 0 and "No dead letters match" in nothing.stdout

    result = rinha("replay-dlq", "--db", daemon.db, "--reason", "EXPIRED", "--since", "2020-01-01T00:00:00Z",
                   input="y\n")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "1 were re-queued" in result.stdout
    assert "Outcome: 1 paid, 0 dead again, 0 still pending" in result.stdout
    assert state(daemon.db, cid) == "paid"
    held = processors.payment("default", cid)
    assert held is not None
    assert row(daemon.db, cid)["requested_at"].rstrip("Z").rstrip("0") == held["requestedAt"].rstrip("0")
    assert processors.summary("fallback")["totalRequests"] == 0

    # its story keeps the failed attempts, the replay and the payment
    story = rinha_json("payment", cid, "--db", daemon.db)
    outcomes = [attempt["outcome"] for attempt in story["attempts"]]
    assert outcomes[0] == "failed" and "requeued" in outcomes and outcomes[-1] == "paid"
    assert story["state"] == "paid" and story["requeuedAt"] is not None
    assert story["acceptedAt"] < story["requeuedAt"]

    # nothing left to replay
    assert rinha_json("replay-dlq", "--db", daemon.db, "--yes")["requeued"] == []


def test_replay_records_a_payment_a_processor_already_holds_instead_of_replaying_it(daemon_factory, processors):
    daemon = daemon_factory("--max-age", "1")
    wait_for_control(daemon.db)
    cid = make_dead_letter(daemon, processors)
    processors.set("default", failure=False)
    # behind the daemon's back, the fallback processor got it
    reply = httpx.post(processors.fallback_url + "/payments", timeout=10,
                       json={"correlationId": cid, "amount": 19.90, "requestedAt": "2025-07-15T12:34:56.789Z"})
    assert reply.status_code == 200

    outcome = rinha_json("replay-dlq", "--db", daemon.db, "--yes")
    assert outcome["requeued"] == []
    assert outcome["alreadyPaid"] == [{"correlationId": cid, "processor": "fallback",
                                       "requestedAt": "2025-07-15T12:34:56.789Z"}]
    paid = row(daemon.db, cid)
    assert (paid["state"], paid["processor"], paid["requested_at"]) == ("paid", "fallback", "2025-07-15T12:34:56.789Z")
    assert processors.payment("default", cid) is None  # never sent twice
    audit = rinha("summary", "--audit", "--db", daemon.db, "--default-url", processors.default_url,
                  "--fallback-url", processors.fallback_url, "--token", "123")
    assert audit.exit_code == 0, audit.stdout
    story = rinha_json("payment", cid, "--db", daemon.db)
    assert story["attempts"][-1]["outcome"] == "found"
    assert story["paid"]["processor"] == "fallback"


@both_engines
def test_replay_without_a_daemon_requeues_in_the_store_and_the_next_start_pays(daemon_factory, processors):
    daemon = daemon_factory("--max-age", "1")
    wait_for_control(daemon.db)
    cid = make_dead_letter(daemon, processors)
    daemon.service.kill()  # SIGKILL: the control socket file stays behind, stale
    socket_path = control_socket(daemon.db)
    assert state(daemon.db, cid) == "dead"
    processors.set("default", failure=False)

    # a processor that cannot be asked: the dead letter stays dead
    closed = f"http://127.0.0.1:{free_port()}"
    unverified = rinha("replay-dlq", "--db", daemon.db, "--yes", "--json", "--default-url", closed,
                       "--fallback-url", processors.fallback_url)
    assert unverified.exit_code == 1
    outcome = json.loads(unverified.stdout)
    assert outcome["mode"] == "store" and outcome["requeued"] == []
    assert [item["correlationId"] for item in outcome["unverified"]] == [cid]
    assert state(daemon.db, cid) == "dead"

    result = rinha("replay-dlq", "--db", daemon.db, "--yes", "--default-url", processors.default_url,
                   "--fallback-url", processors.fallback_url)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "No daemon answers" in result.stdout and "paid when `rinha serve` starts" in result.stdout
    assert state(daemon.db, cid) == "pending"
    assert processors.payment("default", cid) is None

    restarted = daemon_factory()  # same database; replaces the stale socket
    wait_for_control(restarted.db)
    wait_until(lambda: state(daemon.db, cid) == "paid", timeout=15, what="replayed payment paid after restart")
    assert processors.payment("default", cid) is not None
    assert rinha("status", "--db", daemon.db).exit_code == 0
    assert socket_path == control_socket(restarted.db)


def test_replay_errors(tmp_path, daemon_factory):
    missing = one_line_error(rinha("replay-dlq", "--db", str(tmp_path / "nope.db"), "--yes"), 1)
    assert "no database at" in missing
    bad = rinha("replay-dlq", "--since", "yesterday-ish", "--yes")
    assert bad.exit_code == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    assert rinha("replay-dlq", "--limit", "0").exit_code == 2
    for option in ("--default-url", "--fallback-url"):  # refused before anything is listed
        bad = rinha("replay-dlq", "--db", str(tmp_path / "nope.db"), "--dry-run", option, "https://x")
        assert bad.exit_code == 2 and f"{option} 'https://x'" in bad.stderr and "Traceback" not in bad.stderr
    daemon = daemon_factory()
    wait_for_control(daemon.db)
    empty = rinha_json("replay-dlq", "--db", daemon.db, "--yes")
    assert empty["selected"] == 0 and empty["requeued"] == []
