"""The health monitor: polls each processor's ``/payments/service-health`` from one instance.

The endpoint allows one call per window (5 s) for all callers together and *holds* early calls
(up to two) instead of rejecting them. So exactly one instance polls (it holds the store's
``health-monitor`` lease, renewed before and after each round), each processor has at most one
call outstanding, and the next call starts a full interval after the previous one ended: a
held call only makes the next one later, never a 429. Readings go to the store for every
instance; polling runs in its own task, so a held call never stalls dispatch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from rinha.clock import now_ms
from rinha.daemon.store_writer import StoreUnavailable, StoreWriter
from rinha.store.base import HEALTH, LEASE

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

LEASE_NAME = "health-monitor"


class HealthMonitor:
    def __init__(self, writer: StoreWriter, urls: dict[str, str], instance: str, interval: float = 5.0):
        self.writer = writer
        self.urls = urls
        self.instance = instance
        self.interval = interval
        self.lease_ms = int(interval * 3000)
        self.holding = False
        self.polls = 0
        self.rejected = 0  # 429s seen: should stay 0
        self._trouble: dict[str, str] = {}  # the last problem logged per processor

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        import httpx  # here, not at the top: an api-only instance never loads it (~8 MB)

        timeout = httpx.Timeout(2 * self.interval + 1, connect=2.0)
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                task_status.started()
                while True:
                    if await self._hold_lease():
                        async with trio.open_nursery() as nursery:
                            for name, url in self.urls.items():
                                nursery.start_soon(self._poll, client, name, url)
                        await self._hold_lease()
                    await trio.sleep(self.interval)
        finally:
            if self.holding:  # hand the polling over at once instead of after the lease
                with trio.CancelScope(shield=True):
                    now = now_ms()
                    try:
                        await self.writer.write(LEASE, LEASE_NAME, self.instance, now, now)
                    except StoreUnavailable:
                        pass

    async def _hold_lease(self) -> bool:
        now = now_ms()
        try:
            holding = bool(await self.writer.write(LEASE, LEASE_NAME, self.instance, now, now + self.lease_ms))
        except StoreUnavailable:
            holding = False
        if holding != self.holding:
            log.info("health monitor %s", "polling the processors" if holding else "standing by (another instance polls)")
            self.holding = holding
        return holding

    async def _poll(self, client: httpx.AsyncClient, name: str, url: str) -> None:
        import httpx

        try:
            reply = await client.get(url + "/payments/service-health")
        except httpx.HTTPError as exc:
            self._trouble_with(name, f"unreachable ({type(exc).__name__})")
            return
        self.polls += 1
        if reply.status_code == 429:
            self.rejected += 1
            self._trouble_with(name, "429: another client polls it too")
            return
        try:
            data = reply.json()
            failing, min_response_time = bool(data["failing"]), int(data["minResponseTime"])
        except (ValueError, KeyError, TypeError):
            self._trouble_with(name, f"unreadable answer (status {reply.status_code})")
            return
        if self._trouble.pop(name, None) is not None:
            log.info("health of %s readable again", name)
        self.writer.write_nowait(HEALTH, name, failing, min_response_time, now_ms())

    def _trouble_with(self, name: str, problem: str) -> None:
        """Log a polling problem once, not at every poll."""
        if self._trouble.get(name) != problem:
            log.warning("health of %s: %s", name, problem)
            self._trouble[name] = problem
