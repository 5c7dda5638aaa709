"""`rinha payment ID`: a payment's story from the store, and the pruning of old attempts."""

from __future__ import annotations

from tests.support.engines import both_engines
from tests.support.cli import new_id, one_line_error, payment_body, rinha, rinha_json, row, state
from tests.support.wait import wait_until


@both_engines
def test_story_of_a_payment_paid_after_retries(daemon_factory, processors):
    daemon = daemon_factory()
    processors.set("default", failure=True)
    cid = new_id()
    assert daemon.post(payment_body(cid, "7.77")).status_code == 202
    wait_until(lambda: len(rinha_json("payment", cid.upper(), "--db", daemon.db)["attempts"]) >= 2,
               timeout=15, what="two failed attempts")
    pending = rinha_json("payment", cid, "--db", daemon.db)
    assert pending["state"] == "pending" and pending["paid"] is None and pending["dead"] is None
    assert "not paid yet" in rinha("payment", cid, "--db", daemon.db).stdout
    processors.set("default", failure=False)
    wait_until(lambda: state(daemon.db, cid) == "paid", timeout=15, what="paid after the retries")

    story = rinha_json("payment", cid, "--db", daemon.db)
    held = processors.payment("default", cid)
    assert story["correlationId"] == cid and story["amount"] == "7.77" and story["state"] == "paid"
    assert story["acceptedAt"] <= story["attempts"][0]["at"] and story["requeuedAt"] is None
    failed, last = story["attempts"][:-1], story["attempts"][-1]
    assert failed and all((a["processor"], a["outcome"], a["status"]) == ("default", "failed", 500) for a in failed)
    assert all(a["latencyMs"] is not None and a["requestedAt"] for a in failed)
    assert (last["processor"], last["outcome"], last["status"]) == ("default", "paid", 200)
    assert story["paid"]["processor"] == "default"
    assert story["paid"]["requestedAt"] == last["requestedAt"]
    assert story["paid"]["requestedAt"].rstrip("Z").rstrip("0") == held["requestedAt"].rstrip("0")

    text = rinha("payment", cid, "--db", daemon.db)
    assert text.exit_code == 0
    assert f"paid at default, requestedAt {story['paid']['requestedAt']}" in text.stdout
    assert text.stdout.count("failed") >= len(failed)


def test_story_of_a_first_try_payment_and_of_a_dead_letter(daemon_factory, processors):
    daemon = daemon_factory("--max-age", "1")
    quick = new_id()
    assert daemon.post(payment_body(quick)).status_code == 202
    wait_until(lambda: state(daemon.db, quick) == "paid", timeout=15, what="paid at once")
    story = rinha_json("payment", quick, "--db", daemon.db)
    assert [a["outcome"] for a in story["attempts"]] == ["paid"]
    assert story["attempts"][0]["requestedAt"] == row(daemon.db, quick)["requested_at"]

    processors.set("default", failure=True)
    dead = new_id()
    assert daemon.post(payment_body(dead)).status_code == 202
    wait_until(lambda: state(daemon.db, dead) == "dead", timeout=15, what="dead-lettered")
    story = rinha_json("payment", dead, "--db", daemon.db)
    assert story["dead"]["reason"].startswith("expired") and story["paid"] is None
    assert story["attempts"] and all(a["outcome"] == "failed" for a in story["attempts"])
    assert "replay-dlq" in rinha("payment", dead, "--db", daemon.db).stdout


def test_attempts_are_pruned_after_the_retention(daemon_factory, processors):
    daemon = daemon_factory("--attempts-retention", "1")
    processors.set("default", failure=True)
    cid = new_id()
    assert daemon.post(payment_body(cid)).status_code == 202
    wait_until(lambda: len(rinha_json("payment", cid, "--db", daemon.db)["attempts"]) >= 3, timeout=15,
               what="attempts recorded")
    processors.set("default", failure=False)
    wait_until(lambda: state(daemon.db, cid) == "paid", timeout=15, what="paid")
    # every attempt older than 1 s goes; the payment itself stays
    wait_until(lambda: [a["outcome"] for a in rinha_json("payment", cid, "--db", daemon.db)["attempts"]] == ["paid"]
               and "no attempt row" in rinha_json("payment", cid, "--db", daemon.db)["attempts"][0]["detail"],
               timeout=15, what="attempts pruned")
    assert row(daemon.db, cid)["state"] == "paid"


def test_payment_errors(tmp_path, daemon_factory, processors):
    assert rinha("payment", "not-a-uuid").exit_code == 2
    assert "no database at" in one_line_error(rinha("payment", new_id(), "--db", str(tmp_path / "none.db")), 1)
    daemon = daemon_factory()
    missing = new_id()
    assert f"no payment {missing}" in one_line_error(rinha("payment", missing, "--db", daemon.db), 1)
    assert rinha("serve", "--attempts-retention", "-5").exit_code == 2
