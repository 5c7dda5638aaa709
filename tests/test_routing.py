"""Routing scenarios against the emulated processors, each compressed in time, each ending with
"summary equals processors, every accepted payment paid exactly once or dead-lettered"."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.engines import both_engines, query
from tests.support.load import PaymentStream
from tests.support.wait import wait_until
from tests.support.scenario import run_stages, settle, worst_filing_delay

pytestmark = pytest.mark.slow


@both_engines
def test_contest_stages_under_deadline_use_fallback_only_while_default_fails(daemon_factory, processors):
    daemon = daemon_factory("--policy", "deadline", "--deadline", "1", "--health-interval", "1")
    stream = PaymentStream(daemon.url, rate=120).start()
    try:
        mismatches = run_stages(daemon, processors)
    finally:
        stream.stop()
    assert stream.failed == [] and mismatches == []
    paid = settle(daemon, processors, stream.accepted)
    # no payment was filed so far in the past that an audit could have caught one side without it
    assert worst_filing_delay(daemon)[0] < 1500, worst_filing_delay(daemon)
    assert paid["fallback"], "the fallback should have paid some payments while default was failing"
    assert len(paid["default"]) > len(paid["fallback"])


def test_long_default_outage_pays_through_fallback_within_the_deadline(daemon_factory, processors):
    daemon = daemon_factory("--policy", "deadline", "--deadline", "1", "--health-interval", "1")
    processors.set("default", failure=True)
    stream = PaymentStream(daemon.url, rate=50).start()
    try:
        stream.wait_for(150)
    finally:
        stream.stop()
    paid = settle(daemon, processors, stream.accepted)
    assert len(paid["fallback"]) == len(stream.accepted)
    waits = [paid_at - accepted_at for paid_at, accepted_at in
             query(daemon.db, "SELECT paid_at_ms, accepted_at_ms FROM payments WHERE state = 'paid'")]
    # the deadline (1 s) plus the breaker's probe interval and scheduling: never the outage's length
    assert max(waits) < 3000, max(waits)


def test_both_down_then_back_pays_everything_after_recovery(daemon_factory, processors):
    daemon = daemon_factory("--policy", "deadline", "--deadline", "0.5", "--health-interval", "1")
    processors.set("default", failure=True)
    processors.set("fallback", failure=True)
    stream = PaymentStream(daemon.url, rate=50).start()
    try:
        stream.wait_for(100)
    finally:
        stream.stop()
    assert sum(side["totalRequests"] for side in daemon.summary().values()) == 0
    processors.set("fallback", failure=False)
    processors.set("default", failure=False)
    paid = settle(daemon, processors, stream.accepted)
    assert len(paid["default"]) + len(paid["fallback"]) == len(stream.accepted)


@both_engines
def test_slow_processor_that_stores_after_the_timeout_is_never_paid_twice(daemon_factory, processors):
    daemon = daemon_factory("--policy", "deadline", "--deadline", "0.2", "--timeout", "0.3", "--health-interval", "1")
    processors.set("default", delay=800)
    ids = [str(uuid.uuid4()) for _ in range(10)]
    for cid in ids:
        assert daemon.post('{"correlationId":"%s","amount":3.33}' % cid).status_code == 202
    # every first attempt times out while default stores it; none may go to the fallback
    wait_until(lambda: all(processors.payment("default", cid) for cid in ids), timeout=15, what="stored at default")
    processors.set("default", delay=0)
    paid = settle(daemon, processors, ids)
    assert paid["fallback"] == set()


@both_engines
def test_one_health_poller_across_instances_and_takeover(daemon_factory, processors):
    first = daemon_factory("--health-interval", "1")
    second = daemon_factory("--health-interval", "1")

    def holder():
        rows = query(first.db, "SELECT holder, until_ms FROM leases WHERE name = 'health-monitor'")
        return rows[0][0] if rows else None

    def fresh_readings():
        rows = query(first.db, "SELECT processor, checked_at_ms FROM processor_health")
        now = time.time() * 1000
        return len(rows) == 2 and all(now - at < 3000 for _, at in rows)

    wait_until(fresh_readings, timeout=10, what="both processors polled")
    polling = holder()
    pids = {first.service.pid: first, second.service.pid: second}
    owner_pid = int(polling.split(":")[1])
    survivor = second if owner_pid == first.service.pid else first
    pids[owner_pid].service.kill()
    wait_until(lambda: holder() not in (None, polling), timeout=10, what="another instance takes the health lease")
    processors.set("default", delay=123)
    wait_until(lambda: query(survivor.db, "SELECT min_response_time FROM processor_health WHERE processor = 'default'")
               [0][0] == 123, timeout=10, what="survivor's readings")
    assert "429: another client polls it too" not in survivor.service.log_text()  # the health monitor's words for a 429
