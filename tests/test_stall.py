"""An instance that stalls (SIGSTOP) past its lease while another adopts its payments.

The adopter pays them; the stalled one, once it resumes, must not move any of them to another
processor (it no longer owns them): each payment is still paid exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import uuid
from contextlib import closing

import pytest

from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def query(db: str, sql: str, *args):
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute(sql, args).fetchall()


def test_a_stalled_instance_does_not_move_payments_another_instance_adopted(daemon_factory, processors):
    options = ("--policy", "latency", "--health-interval", "1", "--lease-seconds", "1", "--no-control")
    stalled = daemon_factory(*options)
    adopter = daemon_factory(*options)
    processors.set("default", failure=True)
    processors.set("fallback", delay=300)
    wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM processor_health WHERE processor = 'default' "
                                         "AND failing = 1")[0][0] == 1, timeout=15, what="default seen failing")
    ids = [str(uuid.uuid4()) for _ in range(30)]
    for cid in ids:
        assert stalled.post('{"correlationId":"%s","amount":1.00}' % cid).status_code == 202
    wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM payments WHERE pinned = 'fallback'")[0][0] >= 5,
               timeout=20, what="payments bound to the fallback")
    processors.set("fallback", failure=True)
    wait_until(lambda: query(stalled.db, "SELECT COUNT(*) FROM attempts WHERE processor = 'fallback' "
                                         "AND outcome = 'failed'")[0][0] >= 5, timeout=20, what="fallback failing")
    os.kill(stalled.service.pid, signal.SIGSTOP)
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
