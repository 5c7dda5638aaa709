"""End-to-end scenarios: a real daemon paying through real (emulated) processors.

Each ends with the same verdict: every accepted payment is paid exactly once, at the default
processor, and the daemon's summary equals the processors' own records.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.load import PaymentStream
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

#: The contest's six processor stages: (default delay, default failing, fallback delay, fallback failing).
CONTEST_STAGES = [
    (0, False, 0, False),
    (100, False, 0, False),
    (100, True, 0, False),
    (2000, True, 1000, True),
    (20, False, 20, False),
    (0, False, 5000, False),
]


def iso(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def audit(daemon, processors) -> tuple[int, int, int]:
    """The contest's audit: totalRequests over [now-15 s, now-1.5 s] on the daemon and both processors."""
    now = datetime.now(timezone.utc)
    window = (iso(now - timedelta(seconds=15)), iso(now - timedelta(seconds=1.5)))
    ours = daemon.summary(*window)
    return (ours["default"]["totalRequests"] + ours["fallback"]["totalRequests"],
            processors.summary("default", *window)["totalRequests"],
            processors.summary("fallback", *window)["totalRequests"])


def assert_settled(daemon, processors, accepted: list[str], maybe_accepted: set[str] = frozenset()) -> None:
    """Everything accepted is paid once at default; the summaries agree to the cent."""
    expected = len(accepted)
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] >= expected, timeout=60,
               what=f"{expected} payments paid")
    ours = daemon.summary()
    theirs = processors.summary("default")
    assert processors.summary("fallback")["totalRequests"] == 0
    assert ours["fallback"]["totalRequests"] == 0
    assert ours["default"]["totalRequests"] == theirs["totalRequests"]
    assert round(ours["default"]["totalAmount"] * 100) == round(float(theirs["totalAmount"]) * 100)
    extra = ours["default"]["totalRequests"] - expected
    assert 0 <= extra <= len(maybe_accepted)
    missing = [cid for cid in accepted if processors.payment("default", cid) is None]
    assert missing == []


def test_contest_stages_compressed(daemon_factory, processors):
    daemon = daemon_factory()
    stream = PaymentStream(daemon.url, rate=150).start()
    mismatches = []
    try:
        for stage in CONTEST_STAGES:
            default_delay, default_failing, fallback_delay, fallback_failing = stage
            processors.set("default", delay=default_delay, failure=default_failing)
            processors.set("fallback", delay=fallback_delay, failure=fallback_failing)
            stage_end = time.monotonic() + 2.0
            while time.monotonic() < stage_end:
                ours, default_count, fallback_count = audit(daemon, processors)
                if ours != default_count + fallback_count:
                    mismatches.append((stage, ours, default_count, fallback_count))
                time.sleep(0.5)
    finally:
        stream.stop()
    assert stream.failed == []
    assert len(stream.accepted) > 1000
    assert mismatches == []
    assert_settled(daemon, processors, stream.accepted)
    assert audit(daemon, processors)[0] == audit(daemon, processors)[1]


def test_timed_out_attempt_that_was_stored_is_recorded_once_with_the_processors_timestamp(daemon_factory, processors):
    daemon = daemon_factory("--timeout", "0.3")
    processors.set("default", delay=800)
    cid = str(uuid.uuid4())
    assert daemon.post('{"correlationId":"%s","amount":7.77}' % cid).status_code == 202
    held = wait_until(lambda: processors.payment("default", cid), timeout=10, what="stored despite the timeout")
    processors.set("default", delay=0)
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 1, timeout=15, what="recorded")
    with sqlite3.connect(daemon.db) as db:
        requested_at, ambiguous, attempts = db.execute(
            "SELECT requested_at, ambiguous, attempts FROM payments WHERE correlation_id = ?", (cid,)).fetchone()
    assert requested_at.rstrip("Z").rstrip("0") == held["requestedAt"].rstrip("0")
    assert ambiguous == 1 and attempts >= 2
    window = (held["requestedAt"] + "Z",) * 2
    assert daemon.summary(*window)["default"] == {"totalRequests": 1, "totalAmount": 7.77}
    assert processors.summary("default")["totalRequests"] == 1
    assert processors.summary("fallback")["totalRequests"] == 0


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
    maybe = {cid for cid, _ in stream.failed}
    assert len(maybe) >= failed_before
    assert_settled(restarted, processors, stream.accepted, maybe)
