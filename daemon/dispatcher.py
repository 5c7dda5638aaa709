"""The dispatcher: pays pending payments through the processors, each exactly once.

Work arrives two ways: handed over in memory by this process's intake right after the payment
committed (the fast path), or claimed from the store (payments accepted by an api-only
instance, or left behind by an instance that died: their lease expired). A fixed set of worker
tasks per process takes payments from one queue; there is no task per payment.

Per attempt (see ``rinha.processor`` for the outcomes):

* PAID → recorded paid with the ``requestedAt`` this attempt sent.
* DUPLICATE → an earlier attempt was stored: recorded with the ``requestedAt`` the processor
  holds (``GET /payments/{id}``), never this attempt's.
* AMBIGUOUS → the payment is pinned to that processor (written before anything else is tried)
  and only ever retried there.
* FAILED / NOT_SENT → retried, when the processor's breaker allows.
* REJECTED → dead-lettered with the processor's answer.

Leases: the payments this instance owns are renewed every third of the lease; on shutdown they
are released so that another instance adopts them at once.
"""

from __future__ import annotations

import logging
import math
import random
import time

import trio

from rinha.daemon.store_writer import StoreUnavailable, StoreWriter
from rinha.breaker import Breaker
from rinha.clock import now_ms
from rinha.processor import DEFAULT, LookupFailed, Outcome, Processor
from rinha.store.base import CLAIM, DEAD, PAID, PIN, RELEASE, RENEW

log = logging.getLogger(__name__)

_CLAIM_BATCH = 500
_CLAIM_IDLE_POLL = 0.05
_LOOKUP_RETRY = 0.2


class Job:
    """A payment being paid by this process."""

    __slots__ = ("correlation_id", "amount_cents", "pinned", "ambiguous", "attempts")

    def __init__(self, correlation_id: str, amount_cents: int, pinned: str | None = None, ambiguous: bool = False):
        self.correlation_id = correlation_id
        self.amount_cents = amount_cents
        self.pinned = pinned
        self.ambiguous = ambiguous
        self.attempts = 0


class Dispatcher:
    def __init__(self, writer: StoreWriter, processors: dict[str, Processor], policy, instance: str,
                 concurrency: int, lease_seconds: float):
        self.writer = writer
        self.processors = processors
        self.policy = policy
        self.instance = instance
        self.concurrency = concurrency
        self.lease_ms = int(lease_seconds * 1000)
        self.breakers = {name: Breaker() for name in processors}
        self._breaker_closed = {name: trio.Event() for name in processors}
        self._send, self._receive = trio.open_memory_channel[Job](math.inf)
        self.in_flight = 0
        self.paid = 0

    @property
    def queued(self) -> int:
        return self._send.statistics().current_buffer_used

    def submit(self, job: Job) -> None:
        """Hand over a payment that this instance owns (committed with ``owner`` = instance)."""
        self._send.send_nowait(job)

    def owner_lease(self) -> tuple[str, int]:
        """The owner and lease to write with a payment this instance will pay itself."""
        return self.instance, now_ms() + self.lease_ms

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.concurrency * len(self.processors)):
                    nursery.start_soon(self._worker)
                nursery.start_soon(self._renew_leases)
                nursery.start_soon(self._claim_loop)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self.writer.write(RELEASE, self.instance)
                except StoreUnavailable:
                    log.warning("could not release claimed payments; they are adopted when their lease expires")
                for processor in self.processors.values():
                    await processor.aclose()

    async def _worker(self) -> None:
        async for job in self._receive:
            self.in_flight += 1
            try:
                await self._pay(job)
            finally:
                self.in_flight -= 1

    async def _pay(self, job: Job) -> None:
        while True:
            name = job.pinned if job.ambiguous else self.policy.choose(job.pinned)
            if name != (job.pinned or DEFAULT):
                # Bind the payment to its new processor durably before the first send there.
                await self.writer.write(PIN, job.correlation_id, name, False)
                job.pinned = name
            await self._wait_for_breaker(name)
            attempt = await self.processors[name].pay(job.correlation_id, job.amount_cents)
            job.attempts += 1
            outcome = attempt.outcome
            if outcome is Outcome.PAID:
                self._succeeded(name)
                self._record_paid(job, name, attempt.requested_at, attempt.requested_at_us)
                return
            if outcome is Outcome.DUPLICATE:
                self._succeeded(name)
                held = await self._held_requested_at(name, job)
                if held is not None:
                    self._record_paid(job, name, *held)
                    return
                continue  # 422 then 404: an impossible answer; try again
            if outcome is Outcome.REJECTED:
                self.writer.write_nowait(DEAD, job.correlation_id,
                                         f"{name} answered {attempt.status}: {attempt.detail}", now_ms())
                log.warning("payment %s dead-lettered: %s answered %s", job.correlation_id, name, attempt.status)
                return
            if outcome is Outcome.AMBIGUOUS and not job.ambiguous:
                job.ambiguous = True
                job.pinned = name
                self.writer.write_nowait(PIN, job.correlation_id, name, True)
            self._failed(name)

    async def _held_requested_at(self, name: str, job: Job) -> tuple[str, int] | None:
        while True:
            try:
                return await self.processors[name].lookup(job.correlation_id)
            except LookupFailed as exc:
                log.debug("lookup of %s failed: %s", job.correlation_id, exc)
                await trio.sleep(_LOOKUP_RETRY * random.uniform(0.5, 1.5))

    def _record_paid(self, job: Job, name: str, requested_at: str, requested_at_us: int) -> None:
        self.paid += 1
        self.writer.write_nowait(PAID, job.correlation_id, name, requested_at, requested_at_us, now_ms(), job.attempts)

    async def _wait_for_breaker(self, name: str) -> None:
        breaker = self.breakers[name]
        while True:
            wait = breaker.wait_time(time.monotonic())
            if wait <= 0:
                return
            with trio.move_on_after(wait):
                await self._breaker_closed[name].wait()

    def _succeeded(self, name: str) -> None:
        if self.breakers[name].success(time.monotonic()):
            log.warning("processor %s recovered", name)
            self._breaker_closed[name].set()

    def _failed(self, name: str) -> None:
        if self.breakers[name].failure(time.monotonic()):
            log.warning("processor %s failing; probing it while payments wait", name)
            self._breaker_closed[name] = trio.Event()

    async def _renew_leases(self) -> None:
        while True:
            await trio.sleep(self.lease_ms / 3000)
            self.writer.write_nowait(RENEW, self.instance, now_ms() + self.lease_ms)

    async def _claim_loop(self) -> None:
        """Adopt pending payments nobody owns (api-only instances) or whose owner died."""
        while True:
            if self.queued < self.concurrency * 4:
                now = now_ms()
                try:
                    claimed = await self.writer.write(CLAIM, self.instance, now, now + self.lease_ms, _CLAIM_BATCH)
                except StoreUnavailable:
                    claimed = []
                for row in claimed:
                    self.submit(Job(row.correlation_id, row.amount_cents, row.pinned, row.ambiguous))
                if len(claimed) == _CLAIM_BATCH:
                    continue
            await trio.sleep(_CLAIM_IDLE_POLL)
