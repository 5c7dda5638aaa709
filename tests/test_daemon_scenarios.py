"""End-to-end scenarios: a real daemon paying through real (emulated) processors, fee-first.

Each ends with the same verdict: every accepted payment is paid exactly once, at the default
processor, and the daemon's summary equals the processors' own records.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.engines import both_engines, query
from tests.support.load import PaymentStream
from tests.support.scenario import audit, explain, run_stages, settle, worst_filing_delay
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


@both_engines
def test_contest_stages_compressed(daemon_factory, processors):
    daemon = daemon_factory()
    stream = PaymentStream(daemon.url, rate=150).start()
    try:
        mismatches = run_stages(daemon, processors)
    finally:
        stream.stop()
    assert stream.failed == []
    assert len(stream.accepted) > 1000
    assert mismatches == []
    paid = settle(daemon, processors, stream.accepted)
    # no payment was filed so far in the past that an audit could have caught one side without it
    assert worst_filing_delay(daemon)[0] < 1500, worst_filing_delay(daemon)
    assert paid["fallback"] == set()
    ours, theirs, _ = audit(daemon, processors)
    assert ours == theirs


@both_engines
def test_timed_out_attempt_that_was_stored_is_recorded_once_with_the_processors_timestamp(daemon_factory, processors):
    daemon = daemon_factory("--timeout", "0.3")
    processors.set("default", delay=800)
    cid = str(uuid.uuid4())
    assert daemon.post('{"correlationId":"%s","amount":7.77}' % cid).status_code == 202
    held = wait_until(lambda: processors.payment("default", cid), timeout=10, what="stored despite the timeout")
    processors.set("default", delay=0)
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 1, timeout=15, what="recorded")
    [(requested_at, ambiguous, attempts)] = query(
        daemon.db, "SELECT requested_at, ambiguous, attempts FROM payments WHERE correlation_id = ?", cid)
    assert requested_at.rstrip("Z").rstrip("0") == held["requestedAt"].rstrip("0")
    assert ambiguous == 1 and attempts >= 2
    window = (held["requestedAt"] + "Z",) * 2
    assert daemon.summary(*window)["default"] == {"totalRequests": 1, "totalAmount": 7.77}
    assert processors.summary("default")["totalRequests"] == 1
    assert processors.summary("fallback")["totalRequests"] == 0


@both_engines
def test_kill_9_and_restart_loses_nothing_and_pays_nothing_twice(daemon_factory, processors):
    daemon = daemon_factory("--lease-seconds", "1")
    port = int(daemon.url.rsplit(":", 1)[1])
    processors.set("default", delay=50)
    stream = PaymentStream(daemon.url, rate=150).start()
    try:
        stream.wait_for(300)
        daemon.service.kill()
        failed_before = len(stream.failed)
        restarted = daemon_factory("--lease-seconds", "1", port=port)
        stream.wait_for(len(stream.accepted) + len(stream.failed) + 300)
    finally:
        stream.stop()
    # answers lost in the crash are ambiguous to the client: paid or not, never twice
    maybe = frozenset(cid for cid, _ in stream.failed)
    assert len(maybe) >= failed_before
    paid = settle(restarted, processors, stream.accepted, maybe)
    assert paid["fallback"] == set()


def test_payments_purged_while_waiting_are_never_paid(daemon_factory, processors):
    """A test harness purges between runs; what the daemon still held must not reach a processor."""
    daemon = daemon_factory()
    processors.set("default", failure=True)
    purged = [str(uuid.uuid4()) for _ in range(20)]
    for cid in purged:
        assert daemon.post('{"correlationId":"%s","amount":1.00}' % cid).status_code == 202
    wait_until(lambda: processors.in_flight("default") == 0, timeout=10, what="attempts answered")
    assert httpx.post(daemon.url + "/purge-payments", timeout=10).status_code == 200
    processors.set("default", failure=False)
    fresh = str(uuid.uuid4())
    assert daemon.post('{"correlationId":"%s","amount":2.00}' % fresh).status_code == 202
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 1, timeout=30, what="the new payment paid")
    # the old jobs were retrying alongside it: each has met the purge by now, or is about to
    wait_until(lambda: processors.in_flight("default") == 0, timeout=10, what="nothing in flight")
    assert [cid for cid in purged if processors.payment("default", cid)] == []
    assert processors.summary("default")["totalRequests"] == 1
    assert daemon.summary()["default"] == {"totalRequests": 1, "totalAmount": 2.0}


def test_a_failed_audit_names_the_payment_the_sides_count_differently(daemon_factory, processors):
    """The diagnostic a disagreeing audit prints must name what differs, and only that."""
    daemon = daemon_factory()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for cid in ids:
        assert daemon.post('{"correlationId":"%s","amount":1.00}' % cid).status_code == 202
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 3, timeout=10, what="3 recorded")
    window = ("2026-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z")
    assert explain(daemon, processors, window) == []
    # one of them paid a second time, at the fallback, behind the daemon's back
    assert httpx.post(processors.fallback_url + "/payments", timeout=10, json={
        "correlationId": ids[1], "amount": 1.00, "requestedAt": "2026-06-01T00:00:00.000Z"}).status_code == 200
    (differing,) = explain(daemon, processors, window)
    assert differing["id"] == ids[1]
    assert differing["ours"][:2] == ("paid", "default")
    assert differing["theirs"]["default"] and differing["theirs"]["fallback"] == "2026-06-01T00:00:00"
    # a window that ends before the fallback's stamp: the sides agree again
    assert explain(daemon, processors, (window[0], "2026-05-31T23:59:59.999Z")) == []
