"""The store interface, op by op, on both engines: a SQLite file and a real PostgreSQL server.

What the daemon and the CLI rely on must hold the same on each: batches all-or-nothing, every op
kind's result, the operator reads, profile runs, and claiming by several claimers at once.
"""

from __future__ import annotations

import threading

import pytest

from rinha.store import Op, open_store
from rinha.store.base import (
    ACCEPT,
    ATTEMPT,
    CLAIM,
    DEAD,
    HEALTH,
    HEARTBEAT,
    PAID,
    PRUNE_ATTEMPTS,
    PURGE,
    REBIND,
    REQUEUE,
    SETTLE_DEAD,
    ProfileRun,
)
from rinha.store.schema import MIGRATIONS
from tests.support.engines import apply, both_engines, migrated_store

pytestmark = both_engines


@pytest.fixture
def store(db_url):
    store = migrated_store(db_url)
    yield store
    store.close()


def test_a_batch_gives_each_op_its_result_in_order(store):
    ops = [Op(ACCEPT, ("x", 100, 1, None, 0)), Op(ACCEPT, ("x", 100, 2, None, 0)), Op(ACCEPT, ("x", 101, 3, None, 0)),
           Op(ACCEPT, ("y", 5, 1, "A", 10)), Op(CLAIM, ("B", 5, 100, 10))]
    store.apply(ops)
    assert [op.result for op in ops[:4]] == ["new", "same", "conflict", "new"]
    assert [c.correlation_id for c in ops[4].result] == ["x"]  # y is A's until 10
    again = [Op(ACCEPT, ("y", 5, 3, None, 0)), Op(ACCEPT, ("z", 7, 3, None, 0)), Op(ACCEPT, ("x", 99, 3, None, 0))]
    store.apply(again)
    assert [op.result for op in again] == ["same", "new", "conflict"]
    assert store.schema_version() == len(MIGRATIONS)


def test_a_failing_op_rolls_the_whole_batch_back(store):
    apply(store, ACCEPT, "before", 1, 1, None, 0)
    ops = [Op(ACCEPT, ("a", 100, 1, None, 0)), Op(PAID, ("before", "default", "t", 1, 2, 1)),
           Op(ACCEPT, ("b", None, 1, None, 0))]  # amount NOT NULL: the batch fails
    with pytest.raises(store.errors):
        store.apply(ops)
    assert store.payment("a") is None
    assert store.payment("before")["state"] == "pending"
    assert store.counts() == {"pending": 1, "paid": 0, "dead": 0}
    # the store is usable after the failure
    assert apply(store, ACCEPT, "a", 100, 1, None, 0) == "new"


def test_amounts_are_integer_cents_end_to_end(store):
    big = 100_000_000_000  # 1,000,000,000.00: the largest amount a payment may have
    for cid in ("a", "b", "c"):
        apply(store, ACCEPT, cid, big, 1, None, 0)
        apply(store, PAID, cid, "default", "t", 10, 11, 1)
    summary = store.summary(None, None)
    assert summary.default.amount_cents == 3 * big and type(summary.default.amount_cents) is int
    assert type(store.payment("a")["amount_cents"]) is int
    assert summary.contest_json().startswith(b'{"default":{"totalRequests":3,"totalAmount":3000000000.00}')


def test_dead_letters_requeue_and_settle(store):
    for cid in ("d1", "d2", "live"):
        apply(store, ACCEPT, cid, 250, 1, None, 0)
    apply(store, ATTEMPT, "d1", "default", "t1", "rejected", 400, 1.5, 5, "bad request")
    apply(store, DEAD, "d1", "default answered 400: bad", 10)
    apply(store, DEAD, "d2", "expired: not paid within 1 s", 20)
    assert store.state_counts() == {"pending": 1, "paid": 0, "dead": 2}
    letters = store.dead_letters()
    assert [(d["correlation_id"], d["dead_at_ms"], d["attempts"]) for d in letters] == [("d1", 10, 1), ("d2", 20, 0)]
    assert [d["correlation_id"] for d in store.dead_letters(reason="EXPIRED")] == ["d2"]
    assert [d["correlation_id"] for d in store.dead_letters(since_ms=15)] == ["d2"]
    assert store.dead_letter_count(reason="answered 400") == 1 and store.dead_letter_count() == 2
    assert [d["correlation_id"] for d in store.dead_letters(limit=1)] == ["d1"]

    assert apply(store, REQUEUE, ["d1", "live", "nope"], 30) == ["d1"]
    row = store.payment("d1")
    assert (row["state"], row["accepted_at_ms"], row["first_accepted_at_ms"], row["owner"]) == ("pending", 30, 1, None)
    assert apply(store, SETTLE_DEAD, "d2", "fallback", "t9", 900, 40) is True
    assert apply(store, SETTLE_DEAD, "d2", "fallback", "t9", 900, 41) is False  # no longer dead
    assert store.states(["d1", "d2", "live", "nope"]) == {"d1": "pending", "d2": "paid", "live": "pending"}
    assert store.summary(900, 900).fallback.requests == 1

    row, history = store.payment_story("d1")
    assert [event["outcome"] for event in history] == ["rejected", "requeued"]
    assert history[1]["detail"] == "was dead: default answered 400: bad"
    assert store.payment_story("nope") is None


def test_attempts_are_pruned_oldest_first_within_the_limit(store):
    apply(store, ACCEPT, "a", 1, 1, None, 0)
    for at in (1, 2, 3, 50):
        apply(store, ATTEMPT, "a", "default", None, "failed", 500, 1.0, at, None)
    assert apply(store, PRUNE_ATTEMPTS, 10, 2) == 2
    assert apply(store, PRUNE_ATTEMPTS, 10, 100) == 1
    assert [e["at_ms"] for e in store.payment_story("a")[1]] == [50]


def test_health_heartbeats_leases_and_purge(store):
    apply(store, HEALTH, "default", True, 120, 1000)
    apply(store, HEALTH, "default", False, 7, 2000)
    assert store.health()["default"].failing is False and store.health()["default"].min_response_time == 7
    day = 86_400_000
    apply(store, HEARTBEAT, "old", "api", "", 1, 0, 5)
    apply(store, HEARTBEAT, "h:1:a", "api,dispatch", "/c.sock", 1, 0, day + 10)
    assert [i["instance"] for i in store.instances()] == ["h:1:a"]  # "old" was forgotten
    assert store.lease_holder("health-monitor") is None
    apply(store, ACCEPT, "p", 1, 7, None, 0)
    assert store.oldest_pending_ms() == 7
    apply(store, PURGE)
    assert store.counts() == {"pending": 0, "paid": 0, "dead": 0} and store.oldest_pending_ms() is None


def test_profile_runs_and_their_baseline(store):
    def run(profile: str, baseline: bool) -> ProfileRun:
        return ProfileRun(0, profile, 1, 2, "http://x", 550, baseline, '{"a": 1}', None, None)

    first = store.add_profile_run(run("contest", True))
    second = store.add_profile_run(run("contest", False))
    third = store.add_profile_run(run("contest", True))
    assert store.baseline_run("contest").id == third
    assert [r.id for r in store.profile_runs("contest")] == [third, second, first]
    assert store.mark_baseline(first) is True and store.mark_baseline(12345) is False
    assert [r.baseline for r in store.profile_runs(limit=3)] == [False, False, True]
    assert store.profile_run(second).summary_json == '{"a": 1}' and store.profile_run(999) is None


def test_concurrent_claimers_share_the_backlog_and_never_take_a_payment_twice(db_url, store):
    store.apply([Op(ACCEPT, (f"p{i:04}", 1, 1, None, 0)) for i in range(600)])
    claimed: dict[str, list[str]] = {}
    errors = []

    def claimer(name: str) -> None:
        own = open_store(db_url)  # its own connections, as another process would have
        try:
            mine = claimed.setdefault(name, [])
            while True:
                batch = apply(own, CLAIM, name, 100, 10_000, 25)
                if not batch:
                    return
                mine.extend(c.correlation_id for c in batch)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=claimer, args=(f"c{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    everything = [cid for ids in claimed.values() for cid in ids]
    assert len(everything) == len(set(everything)) == 600
    owners = {store.payment(cid)["owner"] for cid in ("p0000", "p0300", "p0599")}
    assert owners <= set(claimed)


def test_rebind_moves_a_payment_only_while_its_owner_still_holds_it(store):
    apply(store, ACCEPT, "p", 100, 1, "A", 1000)
    assert apply(store, REBIND, "p", "fallback", "A") is True
    row = store.payment("p")
    assert (row["pinned"], row["ambiguous"]) == ("fallback", 0)
    # A stalled past its lease; B adopted the payment (ambiguous where it was bound)
    [claimed] = apply(store, CLAIM, "B", 2000, 9000, 10)
    assert (claimed.pinned, claimed.ambiguous) == ("fallback", True)
    assert apply(store, REBIND, "p", "default", "A") is False  # A may no longer move it
    assert store.payment("p")["pinned"] == "fallback"
    assert apply(store, REBIND, "p", "default", "B") is True


def test_a_purge_leaves_its_instant_for_the_dispatchers(store):
    apply(store, ACCEPT, "p", 100, 1, None, 0)
    assert store.lease_holder("purged") is None
    apply(store, PURGE, 5000)
    assert store.payment("p") is None
    assert store.lease_holder("purged")[1] == 5000
    apply(store, PURGE, 7000)
    assert store.lease_holder("purged")[1] == 7000
