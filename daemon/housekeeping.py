"""Housekeeping: the instance heartbeat and the pruning of old attempts. Never on the payment path.

* Every instance writes a heartbeat row (``instances`` table) every ``HEARTBEAT_SECONDS``:
  ``rinha status`` lists the instances sharing the store, their roles and control sockets.
* One instance at a time (the store lease ``attempts-pruner``) deletes attempts older than
  the retention, ``PRUNE_BATCH`` rows per write, so that no single transaction holds the
  writer for long (intake commits share the writer and wait behind it).
"""

from __future__ import annotations

import logging

import trio

from rinha.clock import now_ms
from rinha.daemon.store_writer import StoreUnavailable, StoreWriter
from rinha.store.base import HEARTBEAT, LEASE, PRUNE_ATTEMPTS

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
#: An instance whose heartbeat is older than this is shown as gone.
ALIVE_MS = int(HEARTBEAT_SECONDS * 3 * 1000)
PRUNE_BATCH = 500
PRUNER_LEASE = "attempts-pruner"


def prune_interval(retention: float) -> float:
    """How often the pruner runs: a quarter of the retention, between 0.5 s and 5 minutes."""
    return min(max(retention / 4, 0.5), 300.0)


async def heartbeat(writer: StoreWriter, instance: str, roles: str, control: str, started_at_ms: int,
                    pid: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    while True:
        writer.write_nowait(HEARTBEAT, instance, roles, control, pid, started_at_ms, now_ms())
        await trio.sleep(HEARTBEAT_SECONDS)


async def prune_attempts(writer: StoreWriter, instance: str, retention: float, *,
                         task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Delete attempts older than ``retention`` seconds, forever (0: keep them forever)."""
    task_status.started()
    if retention <= 0:
        return
    interval = prune_interval(retention)
    lease_ms = int(interval * 3000)
    while True:
        try:
            now = now_ms()
            if await writer.write(LEASE, PRUNER_LEASE, instance, now, now + lease_ms):
                deleted = 0
                while True:
                    count = await writer.write(PRUNE_ATTEMPTS, now_ms() - int(retention * 1000), PRUNE_BATCH)
                    deleted += count
                    if count < PRUNE_BATCH:
                        break
                    await trio.sleep(0.01)  # let other writes in between two batches
                if deleted:
                    log.info("pruned %d attempts older than %g s", deleted, retention)
        except StoreUnavailable as exc:
            log.warning("attempt pruning postponed: %s", exc)
        await trio.sleep(interval)
