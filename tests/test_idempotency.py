"""Idempotency by correlationId under a real race: the same payment posted at the same instant
from two connections to two instances that share one store is taken once and paid once.

Two threads, each with its own keep-alive connection to its own instance, meet at a barrier
before each round and post the same correlationId. Every round must end with one 202 and one
200 (same amount) or one 202 and one 409 (different amounts), whichever instance wins; the
processor holds the payment once, with the amount that was answered 202. The test also checks
that the race was real: in most rounds both requests were outstanding at the same time, and
each instance won some rounds.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from tests.support.scenario import settle
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

ROUNDS = 500
AMOUNTS = ("12.34", "43.21")


def test_same_correlation_id_posted_concurrently_to_two_instances_is_taken_and_paid_once(daemon_factory, processors):
    instances = [daemon_factory("--no-control"), daemon_factory("--no-control")]
    ids = [str(uuid.uuid4()) for _ in range(ROUNDS)]
    conflicting = [i % 2 == 1 for i in range(ROUNDS)]  # every other round: the second sends another amount
    answers: list[list] = [[None] * ROUNDS, [None] * ROUNDS]  # per side: (status, body, sent, answered)
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def side(index: int) -> None:
        try:
            with httpx.Client(base_url=instances[index].url, timeout=10) as client:
                client.get("/payments-summary")  # the connection is open before the first round
                for i, cid in enumerate(ids):
                    amount = AMOUNTS[index] if conflicting[i] else AMOUNTS[0]
                    body = '{"correlationId":"%s","amount":%s}' % (cid, amount)
                    barrier.wait()
                    sent = time.perf_counter()
                    reply = client.post("/payments", content=body, headers={"Content-Type": "application/json"})
                    answers[index][i] = (reply.status_code, reply.json(), sent, time.perf_counter())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=side, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []

    overlapping = 0
    wins = [0, 0]
    expected_amount: dict[str, float] = {}
    for i, cid in enumerate(ids):
        (status_a, body_a, sent_a, done_a), (status_b, body_b, sent_b, done_b) = answers[0][i], answers[1][i]
        loser = 409 if conflicting[i] else 200
        assert sorted((status_a, status_b)) == sorted((202, loser)), (i, cid, answers[0][i], answers[1][i])
        winner = 0 if status_a == 202 else 1
        wins[winner] += 1
        assert (body_a, body_b)[winner] == {"status": "accepted"}
        loser_body = (body_a, body_b)[1 - winner]
        if conflicting[i]:
            assert "different amount" in loser_body["error"]
        else:
            assert loser_body == {"status": "already accepted"}
        expected_amount[cid] = float(AMOUNTS[winner] if conflicting[i] else AMOUNTS[0])
        overlapping += max(sent_a, sent_b) < min(done_a, done_b)
    print(f"{overlapping} of {ROUNDS} rounds had both requests in flight at once; wins per instance {wins}")
    assert overlapping >= ROUNDS // 2, f"the race rarely happened: {overlapping} of {ROUNDS} rounds overlapped"
    assert min(wins) >= ROUNDS // 20, f"one instance (nearly) always won: {wins}"

    paid = settle(instances[0], processors, ids)
    assert paid["default"] == set(ids)
    wrong = {cid: (held["amount"], expected_amount[cid]) for cid in ids
             if (held := processors.payment("default", cid))["amount"] != expected_amount[cid]}
    assert wrong == {}, "the processor holds another amount than the one answered 202"
    wait_until(lambda: instances[1].summary() == instances[0].summary(), timeout=10, what="both instances agree")
