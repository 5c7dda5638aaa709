"""Graceful shutdown: SIGTERM / SIGINT drain the daemon, lose nothing and exit 0.

Draining: new payments get 503 with Retry-After, attempts in flight run to their answer within
``--grace-seconds``, the rest is handed back to the store (ambiguous where an attempt was cut),
and the next start pays all of it exactly once.
"""

from __future__ import annotations

import signal
import uuid

import httpx
import pytest

from tests.support.engines import both_engines, query
from tests.support.scenario import settle
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def post_new(daemon, accepted: list[str]) -> httpx.Response:
    cid = str(uuid.uuid4())
    reply = daemon.post('{"correlationId":"%s","amount":3.30}' % cid)
    if reply.status_code in (200, 202):
        accepted.append(cid)
    return reply


def rows(db: str) -> dict[str, tuple]:
    return {cid: tuple(rest) for cid, *rest in query(
        db, "SELECT correlation_id, state, owner, pinned, ambiguous FROM payments")}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_in_flight_payments_refuses_new_ones_and_exits_0(daemon_factory, processors, signum):
    daemon = daemon_factory("--grace-seconds", "10")
    processors.set("default", delay=1500)
    accepted: list[str] = []
    for _ in range(20):
        assert post_new(daemon, accepted).status_code == 202
    wait_until(lambda: processors.in_flight("default") == 20, timeout=10, what="20 attempts in flight")
    daemon.service.signal(signum)

    refused = wait_until(lambda: (r := post_new(daemon, accepted)).status_code == 503 and r, timeout=5,
                         what="a 503 while draining")
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["Connection"] == "close"
    assert "error" in refused.json()
    assert daemon.service.wait(timeout=15) == 0
    log = daemon.service.log_text()
    assert "draining" in log and "shutdown complete" in log and "Traceback" not in log

    # the 20 in flight were answered and recorded before the exit; anything accepted between the
    # signal and the drain was handed back, unowned
    state = rows(daemon.db)
    assert all(state[cid][0] == "paid" for cid in accepted[:20])
    assert all(owner is None for _, owner, *_ in state.values())
    processors.set("default", delay=0)
    restarted = daemon_factory()
    paid = settle(restarted, processors, accepted)
    assert len(paid["default"]) == len(accepted) and paid["fallback"] == set()


@both_engines
@pytest.mark.parametrize("cut", ["grace-ends", "second-signal"])
def test_attempts_cut_at_shutdown_are_pinned_ambiguous_and_paid_once_after_restart(daemon_factory, processors, cut):
    grace = "0.5" if cut == "grace-ends" else "60"
    daemon = daemon_factory("--grace-seconds", grace)
    processors.set("default", delay=4000)
    accepted: list[str] = []
    for _ in range(10):
        assert post_new(daemon, accepted).status_code == 202
    wait_until(lambda: processors.in_flight("default") == 10, timeout=10, what="10 attempts in flight")
    daemon.service.signal(signal.SIGTERM)
    if cut == "second-signal":
        wait_until(lambda: post_new(daemon, accepted).status_code == 503, timeout=5, what="draining")
        daemon.service.signal(signal.SIGINT)
    assert daemon.service.wait(timeout=15) == 0
    # gone without their answers: the processor still holds the attempts (each for 4 s)
    assert processors.in_flight("default") >= 10

    state = rows(daemon.db)
    assert {cid: state[cid] for cid in accepted} == {cid: ("pending", None, "default", 1) for cid in accepted}
    # the processor still holds them and stores them when its delay ends; a restart pays each once
    processors.set("default", delay=0)
    restarted = daemon_factory()
    paid = settle(restarted, processors, accepted)
    assert paid["default"] == set(accepted)
