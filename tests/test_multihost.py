"""Several daemons as separate "hosts": separate processes, each its own port and control socket,
nothing shared but the database (a SQLite file on one host; a PostgreSQL URL across hosts).

They share the load, one dies by ``kill -9`` holding payments, the others adopt them after the
lease, and at the end every accepted payment is paid exactly once and every survivor's summary
equals the processors' own records.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

import httpx
import pytest

from tests.support.engines import both_engines, query
from tests.support.load import PaymentStream
from tests.support.scenario import settle
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, both_engines]


def owners(db: str) -> dict[int, int]:
    """Pending payments per owning pid (the owner is ``host:pid:nonce``)."""
    counts: dict[int, int] = {}
    for owner, count in query(db, "SELECT owner, COUNT(*) FROM payments WHERE state = 'pending' "
                                  "AND owner IS NOT NULL GROUP BY owner"):
        pid = int(owner.split(":")[1])
        counts[pid] = counts.get(pid, 0) + count
    return counts


def status(control: str) -> dict:
    with httpx.Client(transport=httpx.HTTPTransport(uds=control), base_url="http://control", timeout=10) as client:
        reply = client.get("/status")
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture
def machine_dirs():
    """A private directory per "machine" (short: unix socket paths hold 107 bytes); removed after."""
    made: list[str] = []

    def make() -> str:
        made.append(tempfile.mkdtemp(prefix="rh-"))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def test_hosts_share_the_load_and_adopt_a_killed_hosts_payments(daemon_factory, processors, machine_dirs):
    hosts = []
    for _ in range(3):
        control = os.path.join(machine_dirs(), "control.sock")  # its own "machine"
        hosts.append((daemon_factory("--lease-seconds", "1", "--control", control), control))
    victim, victim_control = hosts[0]
    survivors = hosts[1:]
    processors.set("default", failure=True)  # payments pile up, each owned by the host that took it
    streams = [PaymentStream(daemon.url, rate=40).start() for daemon, _ in hosts]
    try:
        wait_until(lambda: all(owners(victim.db).get(daemon.service.pid, 0) >= 15 for daemon, _ in hosts),
                   timeout=30, what="every host owning payments")
        os.kill(victim.service.pid, signal.SIGKILL)
        victim.service.wait(10)
        streams[0].stop()
        orphaned = {cid for (cid,) in query(victim.db, "SELECT correlation_id FROM payments WHERE state = 'pending' "
                                                       "AND owner LIKE ?", f"%:{victim.service.pid}:%")}
        assert len(orphaned) >= 15
        processors.set("default", failure=False)
        for stream in streams[1:]:
            stream.wait_for(len(stream.accepted) + len(stream.failed) + 40)
    finally:
        for stream in streams:
            stream.stop()
    assert [stream.failed for stream in streams[1:]] == [[], []]
    # a request in flight when the victim died: the client saw no answer, it may or may not be paid
    maybe = frozenset(cid for cid, _ in streams[0].failed)
    accepted = [cid for stream in streams for cid in stream.accepted]

    for daemon, _ in survivors:
        paid = settle(daemon, processors, accepted, maybe)  # each survivor's summary equals the processors'
        assert paid["fallback"] == set()
    wait_until(lambda: not query(victim.db, "SELECT 1 FROM payments WHERE state = 'pending'"), timeout=30,
               what="nothing left pending")
    marks = ",".join("?" * len(orphaned))
    assert query(victim.db, f"SELECT DISTINCT state FROM payments WHERE correlation_id IN ({marks})",
                 *orphaned) == [("paid",)], "the killed host's payments were adopted and paid"
    # both survivors paid (their own and adopted payments): the load was shared
    paid_by = [status(control)["dispatcher"]["paid"] for _, control in survivors]
    assert all(count >= 40 for count in paid_by), paid_by
    assert sum(paid_by) >= len(orphaned) + sum(len(s.accepted) for s in streams[1:])
    assert os.path.exists(victim_control)  # a kill -9 leaves its socket: nobody else needed that file
