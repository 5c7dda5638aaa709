"""An instance that stalls (SIGSTOP) past its lease while another adopts its payments.

The adopter pays them; the stalled one, once it resumes, must not move any of them to another
processor (it no longer owns them): each payment is still paid exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import uuid

import pytest

from tests.support.engines import query
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def stall(instance) -> None:
    """SIGSTOP ``instance`` at a moment it holds no SQLite write lock. Stopped inside one of its
    commits (a tenth of a millisecond, ~2 % of the time while it records failing attempts), it
    would hold every instance's writes until it resumes: SQLite's lock belongs to the process
    (SECURITY.md, "Not promised"). PostgreSQL has no such lock."""
    for _ in range(50):
        os.kill(instance.service.pid, signal.SIGSTOP)
        if "://" in instance.db or _write_lock_free(instance.db):
            return
        os.kill(instance.service.pid, signal.SIGCONT)
    raise AssertionError("the instance held the store's write lock at every one of 50 stops")


def _write_lock_free(db: str) -> bool:
    conn = sqlite3.connect(db, isolation_level=None, timeout=0.2)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def two_instances_default_failing(daemon_factory, processors, fallback_delay: int, *extra: str):
    """The instance that will stall and the one that will adopt its payments (1 s leases), once
    they see the default failing (the fallback at ``fallback_delay`` ms)."""
    options = ("--policy", "latency", "--health-interval", "1", "--lease-seconds", "1", "--no-control", *extra)
    stalled = daemon_factory(*options)
    adopter = daemon_factory(*options)
    processors.set("default", failure=True)
    processors.set("fallback", delay=fallback_delay)
    wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM processor_health WHERE processor = 'default' "
                                         "AND failing = 1")[0][0] == 1, timeout=15, what="default seen failing")
    return stalled, adopter


def test_a_stalled_instance_does_not_move_payments_another_instance_adopted(daemon_factory, processors):
    stalled, adopter = two_instances_default_failing(daemon_factory, processors, 300)
    ids = [str(uuid.uuid4()) for _ in range(30)]
    for cid in ids:
        assert stalled.post('{"correlationId":"%s","amount":1.00}' % cid).status_code == 202
    wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM payments WHERE pinned = 'fallback'")[0][0] >= 5,
               timeout=20, what="payments bound to the fallback")
    processors.set("fallback", failure=True)
    wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM attempts WHERE processor = 'fallback' "
                                         "AND outcome = 'failed'")[0][0] >= 5, timeout=20, what="fallback failing")
    stall(stalled)
    try:
        wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM payments WHERE owner LIKE ?",
                                 f"%:{adopter.service.pid}:%")[0][0] >= 5, timeout=20, what="the adopter taking over")
        # both processors healthy again: the resumed instance's jobs would like the default
        processors.set("default", delay=0, failure=False)
        processors.set("fallback", delay=200, failure=False)
    finally:
        os.kill(stalled.service.pid, signal.SIGCONT)
    wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM payments WHERE state = 'pending'")[0][0] == 0,
               timeout=60, what="every payment paid")
    wait_until(lambda: processors.in_flight("default") == 0 and processors.in_flight("fallback") == 0, timeout=10,
               what="nothing left in flight")
    both = [cid for cid in ids if processors.payment("default", cid) and processors.payment("fallback", cid)]
    assert both == [], f"{len(both)} payments paid at both processors"
    held = sum(processors.summary(name)["totalRequests"] for name in ("default", "fallback"))
    ours = adopter.summary()
    assert held == ours["default"]["totalRequests"] + ours["fallback"]["totalRequests"] == len(ids)


def test_an_instance_stalled_between_binding_and_sending_does_not_send_what_another_adopted(daemon_factory, processors):
    """The stalled instance bound a payment to the fallback and waits for a connection there
    when it stops. Another instance adopts it, and after the unpin delay (30 s) with a 404 at
    the fallback, pays it at the default. Once resumed, the stalled instance must withdraw its
    send (its leases lapsed): sending would pay it a second time, at the fallback."""
    # One connection per processor: the second payment bound to the fallback waits for the first
    # (held 1 s: a slower fallback would be audit-unsafe, and no payment would be bound to it).
    stalled, adopter = two_instances_default_failing(daemon_factory, processors, 1000, "--concurrency", "1")
    first, waiting = str(uuid.uuid4()), str(uuid.uuid4())
    for cid in (first, waiting):
        assert stalled.post('{"correlationId":"%s","amount":1.00}' % cid).status_code == 202
    # one attempt at the fallback in flight (1 s), the other bound there and waiting for the connection
    wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM payments WHERE pinned = 'fallback'")[0][0] == 2
               and processors.in_flight("fallback") == 1, timeout=20, what="both bound to the fallback, one sent")
    stall(stalled)
    try:
        processors.set("default", failure=False)
        processors.set("fallback", delay=0, failure=True)  # so the adopter pays `waiting` at the default
        wait_until(lambda: processors.payment("default", waiting) is not None, timeout=90,
                   what="the adopter paying it at the default after the unpin delay")
        processors.set("fallback", failure=False)  # a send from the stalled instance would now succeed
    finally:
        os.kill(stalled.service.pid, signal.SIGCONT)
    withdrawn = f"payment {waiting} was adopted by another instance"
    wait_until(lambda: withdrawn in stalled.service.log_text() or processors.payment("fallback", waiting),
               timeout=30, what="the resumed instance dropping the payment (or sending it)")
    assert processors.payment("fallback", waiting) is None, "paid at both processors"
    wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM payments WHERE state = 'pending'")[0][0] == 0,
               timeout=60, what="every payment paid")
    held = sum(processors.summary(name)["totalRequests"] for name in ("default", "fallback"))
    ours = adopter.summary()
    assert held == ours["default"]["totalRequests"] + ours["fallback"]["totalRequests"] == 2
