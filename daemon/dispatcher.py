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

The policy picks the processor for each attempt (``rinha.policy``), except for an ambiguous
payment: it stays with its processor until that processor answers 200 or 422 for it, or until
``GET /payments/{id}`` there says 404 at least ``unpin_after`` seconds after its last ambiguous
attempt was sent (longer than any delay a processor applies, so no earlier attempt can still
land). With ``max_age`` set, a payment older than that which no processor may hold is
dead-lettered as expired; nothing else ever leaves the retry loop. Every attempt is kept in
the store's ``attempts`` table (the payment's story), except a first-try success, which the
payment's own row tells.

Leases: the payments this instance owns are renewed every third of the lease; on shutdown they
are released so that another instance adopts them at once. A payment adopted from an instance
that died (its lease ran out) may have had an attempt in flight: it is adopted as ambiguous at
the processor it was bound to (the store's claim marks it so). An instance that stalls (stopped,
frozen) past its lease may find, once it runs again, that another instance adopted its payments
and moved some elsewhere: it sends nothing it has not confirmed as still its own since the stall
(``_lease_holds``, asked again just before the first byte leaves). What no client can close is a
stall in the few microseconds between that check and the send itself.

Shutdown (``drain``): no attempt starts any more; attempts in flight run to their answer for up
to the grace period, and one still unanswered then is pinned ambiguous before it is dropped.
The payments left are released when ``run`` ends.
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
from rinha.policy import Signals, stamp_lead_ms
from rinha.processor import DEFAULT, LookupFailed, Outcome, Processor
from rinha.store import Store
from rinha.store.base import ATTEMPT, CLAIM, DEAD, PAID, PIN, PURGED_MARK, REBIND, RELEASE, RENEW

log = logging.getLogger(__name__)

#: Payments per claim. A claim holds the store's write lock ~4-5 µs per row (SQLite), and the api
#: instances beside this one wait for it: 500 rows held it 2-12 ms during a drain and sent their
#: accepts to the writer thread (p99 of an accept 5 ms); 64 rows hold it ~0.3 ms, short enough to
#: commit on the event loop (see ``rinha.daemon.store_writer``).
_CLAIM_BATCH = 64
_CLAIM_IDLE_POLL = 0.05
_LOOKUP_RETRY = 0.2
_STORE_RETRY = 0.2
_HEALTH_REFRESH = 1.0


class Job:
    """A payment being paid by this process."""

    __slots__ = ("correlation_id", "amount_cents", "accepted_at_ms", "pinned", "ambiguous", "ambiguous_at_ms", "attempts",
                 "purge_checked_ms", "lease_epoch")

    def __init__(self, correlation_id: str, amount_cents: int, accepted_at_ms: int, pinned: str | None = None,
                 ambiguous: bool = False):
        self.correlation_id = correlation_id
        self.amount_cents = amount_cents
        self.accepted_at_ms = accepted_at_ms
        self.pinned = pinned
        self.ambiguous = ambiguous
        # Adopted ambiguous payments: their last send time is unknown, so count from now.
        self.ambiguous_at_ms = now_ms() if ambiguous else 0
        self.attempts = 0
        #: The purge this job was last checked against (its row was still there).
        self.purge_checked_ms = 0
        #: The dispatcher's lease epoch when this payment was last known to be its own.
        self.lease_epoch = 0


class Dispatcher:
    def __init__(self, writer: StoreWriter, store: Store, processors: dict[str, Processor], policy, instance: str,
                 concurrency: int, lease_seconds: float, max_age: float = 0.0, unpin_after: float = 30.0):
        self.writer = writer
        self.store = store
        self.processors = processors
        self.policy = policy
        self.instance = instance
        self.concurrency = concurrency
        self.lease_ms = int(lease_seconds * 1000)
        #: Seconds after a renewal during which this instance trusts its leases. Renewals come
        #: every third of the lease: two thirds leave a third for a slow renewal and another for
        #: clocks that disagree between hosts.
        self._lease_trust = lease_seconds * 2 / 3
        self.max_age_ms = int(max_age * 1000)
        self.unpin_after_ms = int(unpin_after * 1000)
        self.signals = Signals()
        #: The latency of each processor's latest answer (ms): its current delay, as observed.
        self.observed_ms = {name: 0.0 for name in processors}
        #: Send instants of unanswered attempts per processor, oldest first (insertion order).
        self._outstanding: dict[str, dict[str, float]] = {name: {} for name in processors}
        self.breakers = {name: Breaker() for name in processors}
        self._breaker_closed = {name: trio.Event() for name in processors}
        self._send, self._receive = trio.open_memory_channel[Job](math.inf)
        self.in_flight = 0
        #: The latest purge (``POST /purge-payments`` on any instance): jobs for payments accepted
        #: before it are dropped once the store confirms their row is gone.
        self.purged_at_ms = 0
        #: Payments with a job in this process (queued or being paid): never two jobs for one.
        self._active: set[str] = set()
        self.draining = False
        #: Cancel scopes of the attempts being sent: shielded from shutdown until the grace ends.
        self._sending: set[trio.CancelScope] = set()
        self._send_deadline = math.inf
        self._work: trio.CancelScope | None = None
        self._stopped = trio.Event()
        #: When the latest lease renewal started (monotonic), and how many times the leases were
        #: found lapsed (the process stalled): see ``_lease_holds``.
        self._renewed_at = time.monotonic()
        self._lease_epoch = 0
        self._renewing = trio.Lock()
        self.paid = 0
        self.dead = 0
        self.attempts = 0

    @property
    def queued(self) -> int:
        return self._send.statistics().current_buffer_used

    def submit(self, job: Job) -> None:
        """Hand over a payment that this instance owns (committed with ``owner`` = instance)."""
        self._active.add(job.correlation_id)
        job.lease_epoch = self._lease_epoch
        self._send.send_nowait(job)

    def purged(self, at_ms: int) -> None:
        """Every payment accepted before ``at_ms`` was purged: stop paying them."""
        self.purged_at_ms = max(self.purged_at_ms, at_ms)

    async def _was_purged(self, job: Job) -> bool:
        """Accepted before the latest purge and gone from the store. (A payment accepted by a host
        whose clock is behind may look older than the purge: its row is still there, keep it.)"""
        try:
            row = await trio.to_thread.run_sync(self.store.payment, job.correlation_id)
        except Exception:  # a store fault: keep paying, as before the purge
            return False
        if row is None:
            return True
        job.purge_checked_ms = self.purged_at_ms  # still there: do not ask again for this purge
        return False

    def owner_lease(self) -> tuple[str, int]:
        """The owner and lease to write with a payment this instance will pay itself."""
        return self.instance, now_ms() + self.lease_ms

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._work = nursery.cancel_scope
                self._renewed_at = time.monotonic()  # the leases written from now on run from now
                if self.draining:  # a signal came before this started: stop at once
                    nursery.cancel_scope.cancel()
                for _ in range(self.concurrency * len(self.processors)):
                    nursery.start_soon(self._worker)
                nursery.start_soon(self._renew_leases)
                nursery.start_soon(self._claim_loop)
                nursery.start_soon(self._watch_health)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self.writer.write(RELEASE, self.instance)
                except StoreUnavailable:
                    log.warning("could not release claimed payments; they are adopted when their lease expires")
                for processor in self.processors.values():
                    await processor.aclose()
                self._stopped.set()

    async def drain(self, grace: float) -> None:
        """Stop paying: let attempts in flight finish within ``grace`` seconds, hand back the rest.

        Returns once ``run`` has ended (its payments released). Cancelled, it cuts the attempts
        in flight at once (they are pinned ambiguous first)."""
        self.draining = True
        self._send_deadline = trio.current_time() + grace
        for scope in self._sending:
            scope.deadline = self._send_deadline
        if self._work is not None:
            self._work.cancel()  # every wait ends now; shielded sends carry on
        try:
            await self._stopped.wait()
        except trio.Cancelled:
            for scope in self._sending:
                scope.cancel()
            raise

    async def _worker(self) -> None:
        async for job in self._receive:
            self.in_flight += 1
            try:
                await self._pay(job)
            finally:
                self.in_flight -= 1
                self._active.discard(job.correlation_id)

    async def _pay(self, job: Job) -> None:
        while True:
            now = now_ms()
            if self.max_age_ms and not job.ambiguous and now - job.accepted_at_ms > self.max_age_ms:
                self._dead_letter(job, f"expired: not paid within {self.max_age_ms / 1000:g} s")
                return
            name = self.policy.choose(now - job.accepted_at_ms, now, self.signals)
            if job.ambiguous and name != job.pinned:
                verdict = await self._release_pin(job)
                if verdict in ("paid", "lost"):
                    return
                if verdict == "stay":
                    name = job.pinned
            if name != (job.pinned or DEFAULT):
                # Bind the payment to its new processor durably before the first send there.
                try:
                    still_ours = await self.writer.write(REBIND, job.correlation_id, name, self.instance)
                except StoreUnavailable:
                    # Not bound, so not sent: wait for the store, then ask the policy again.
                    await trio.sleep(_STORE_RETRY * random.uniform(0.5, 1.5))
                    continue
                if not still_ours:
                    self._lost(job)
                    return
                job.pinned = name
            if not await self._wait_for_breaker(name, self.policy.revisit_ms(now - job.accepted_at_ms) / 1000):
                continue  # waited as long as the policy's choice holds: ask it again
            if self.draining:
                return  # handed back when run() ends
            if not self._lease_holds(job):
                ours = await self._still_ours(job)
                if ours is None:
                    await trio.sleep(_STORE_RETRY * random.uniform(0.5, 1.5))
                    continue
                if not ours:
                    self._lost(job)
                    return
            if (job.accepted_at_ms < self.purged_at_ms and job.purge_checked_ms < self.purged_at_ms
                    and await self._was_purged(job)):
                return  # paying it now would put at the processor what the store no longer has
            outstanding = self._outstanding[name]
            outstanding[job.correlation_id] = time.monotonic()
            # A send runs to its answer even while shutting down, until the grace period ends.
            with trio.CancelScope(shield=True, deadline=self._send_deadline) as sending:
                self._sending.add(sending)
                try:
                    attempt = await self.processors[name].pay(job.correlation_id, job.amount_cents,
                                                              stamp_lead_ms(self._expected_delay_ms(name)),
                                                              guard=lambda: self._lease_holds(job))
                finally:
                    self._sending.discard(sending)
                    del outstanding[job.correlation_id]
            if sending.cancelled_caught:
                # Cut at the end of the grace period: the processor may still store it.
                self.writer.write_nowait(PIN, job.correlation_id, name, True)
                return
            if attempt.outcome is Outcome.NOT_SENT and not self._lease_holds(job):
                continue  # withdrawn at the last moment (this process stalled): not the processor's failure
            if attempt.status:
                self.observed_ms[name] = attempt.seconds * 1000
            job.attempts += 1
            self.attempts += 1
            outcome = attempt.outcome
            if outcome is not Outcome.PAID or job.attempts > 1:
                # A first-try success is told by the payment's row alone; keep the story of the rest.
                self.writer.write_nowait(ATTEMPT, job.correlation_id, name, attempt.requested_at, outcome.value,
                                         attempt.status, round(attempt.seconds * 1000, 3), now_ms(), attempt.detail)
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
                self._dead_letter(job, f"{name} answered {attempt.status}: {attempt.detail}")
                return
            if outcome is Outcome.AMBIGUOUS:
                job.ambiguous_at_ms = now_ms()
                if not job.ambiguous:
                    job.ambiguous = True
                    job.pinned = name
                    self.writer.write_nowait(PIN, job.correlation_id, name, True)
            self._failed(name)

    def _expected_delay_ms(self, name: str) -> float:
        """The processor's current delay as far as we can tell: its latest answer's latency, or
        longer if an attempt has been waiting longer than that (the delay just went up)."""
        outstanding = self._outstanding[name]
        if not outstanding:
            return self.observed_ms[name]
        oldest = next(iter(outstanding.values()))
        return max(self.observed_ms[name], (time.monotonic() - oldest) * 1000)

    async def _release_pin(self, job: Job) -> str:
        """May an ambiguous payment leave its processor? Only on a late enough 404 there.

        Returns "released" (no longer ambiguous), "paid" (the processor had it: recorded), "stay",
        or "lost" (another instance owns it now).
        """
        if now_ms() - job.ambiguous_at_ms < self.unpin_after_ms:
            return "stay"
        try:
            held = await self.processors[job.pinned].lookup(job.correlation_id)
        except LookupFailed:
            return "stay"
        if held is not None:
            self._record_paid(job, job.pinned, *held)
            return "paid"
        try:
            still_ours = await self.writer.write(REBIND, job.correlation_id, job.pinned, self.instance)
        except StoreUnavailable:
            return "stay"  # still pinned in the store: stay until it can be released
        if not still_ours:
            self._lost(job)
            return "lost"
        job.ambiguous = False
        return "released"

    def _lost(self, job: Job) -> None:
        """Another instance adopted this payment (this one stalled past its lease): it pays it now.
        Moving it to another processor from here could pay it twice; drop it instead."""
        log.warning("payment %s was adopted by another instance while this one stalled; leaving it to it",
                    job.correlation_id)

    def _dead_letter(self, job: Job, reason: str) -> None:
        self.dead += 1
        self.writer.write_nowait(DEAD, job.correlation_id, reason, now_ms())
        log.warning("payment %s dead-lettered: %s", job.correlation_id, reason)

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

    async def _wait_for_breaker(self, name: str, patience: float) -> bool:
        """Wait until the breaker lets an attempt go (True), or ``patience`` seconds (False)."""
        breaker = self.breakers[name]
        give_up_at = time.monotonic() + patience
        while True:
            now = time.monotonic()
            wait = breaker.wait_time(now)
            if wait <= 0:
                return True
            if now >= give_up_at:
                return False
            with trio.move_on_after(min(wait, give_up_at - now)):
                await self._breaker_closed[name].wait()

    def _succeeded(self, name: str) -> None:
        if self.breakers[name].success(time.monotonic()):
            log.warning("processor %s recovered", name)
            self.signals.breaker_open[name] = False
            self._breaker_closed[name].set()

    def _failed(self, name: str) -> None:
        if self.breakers[name].failure(time.monotonic()):
            log.warning("processor %s failing; probing it while payments wait", name)
            self.signals.breaker_open[name] = True
            self._breaker_closed[name] = trio.Event()

    async def _watch_health(self) -> None:
        """Keep the health readings (written by whichever instance polls) in the signals."""
        while True:
            try:
                self.signals.health = await trio.to_thread.run_sync(self.store.health)
                mark = await trio.to_thread.run_sync(self.store.lease_holder, PURGED_MARK)
                if mark is not None:
                    self.purged(mark[1])
            except Exception as exc:  # a store fault: keep the last readings
                log.debug("health readings unavailable: %s", exc)
            await trio.sleep(_HEALTH_REFRESH)

    async def _renew_leases(self) -> None:
        while True:
            await trio.sleep(self.lease_ms / 3000)
            async with self._renewing:
                await self._renew()

    async def _renew(self) -> None:
        """Extend the leases of every pending payment this instance owns (those another instance
        adopted meanwhile stay with it). If they had lapsed (this process stalled), start a new
        lease epoch: a payment of an earlier epoch is checked in the store before it is sent."""
        started = time.monotonic()
        try:
            await self.writer.write(RENEW, self.instance, now_ms() + self.lease_ms)
        except StoreUnavailable:
            return  # the leases may run out: _lease_holds says so in time
        if not self._leases_fresh(started):
            self._lease_epoch += 1
        self._renewed_at = started

    def _lease_holds(self, job: Job) -> bool:
        """May this process send ``job`` now without asking the store? Not if its leases may
        have run out (no renewal for too long: the process stalled), nor if the payment dates
        from before a lapse: another instance may have adopted it meanwhile."""
        return job.lease_epoch == self._lease_epoch and self._leases_fresh()

    def _leases_fresh(self, at: float | None = None) -> bool:
        """Renewed recently enough (monotonic ``at``, default now) to trust that none has run out."""
        return (time.monotonic() if at is None else at) - self._renewed_at < self._lease_trust

    async def _still_ours(self, job: Job) -> bool | None:
        """After a stall: renew the leases, then ask the store whether ``job`` is still ours
        (adopted before the renewal, its owner is the adopter; after it, it could not be).
        None: the store could not tell (renewal or read failed)."""
        async with self._renewing:
            if not self._leases_fresh():
                await self._renew()
        if not self._leases_fresh():
            return None
        try:
            row = await trio.to_thread.run_sync(self.store.payment, job.correlation_id)
        except Exception:
            return None
        if row is None or row["owner"] != self.instance or row["state"] != "pending":
            return False
        job.lease_epoch = self._lease_epoch
        return True

    def _maybe_claimable(self, now: int) -> bool:
        """False only if the store says at once that nothing is claimable (a cheap read, where
        the store has one): the claim, a write, is then not worth making."""
        claimable_now = getattr(self.store, "claimable_now", None)
        if claimable_now is None:
            return True
        try:
            return claimable_now(now)
        except Exception:  # a store fault: let the claim meet it and report it
            return True

    async def _claim_loop(self) -> None:
        """Adopt pending payments nobody owns (api-only instances) or whose owner died."""
        while True:
            now = now_ms()
            if self.queued < self.concurrency * 4 and self._maybe_claimable(now):
                try:
                    claimed = await self.writer.write(CLAIM, self.instance, now, now + self.lease_ms, _CLAIM_BATCH)
                except StoreUnavailable:
                    claimed = []
                for row in claimed:
                    if row.correlation_id in self._active:
                        continue  # our own, re-claimed after a store outage outlived its lease: one job is enough
                    self.submit(Job(row.correlation_id, row.amount_cents, row.accepted_at_ms, row.pinned, row.ambiguous))
                if len(claimed) == _CLAIM_BATCH:
                    await trio.lowlevel.checkpoint()  # the lock free a moment for the other writers
                    continue
            await trio.sleep(_CLAIM_IDLE_POLL)
