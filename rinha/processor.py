"""The processor wire client: one payment attempt, classified by what it proves.

An attempt's outcome says what the processor may now hold:

========== ============================================ ==============================
outcome    cause                                        the processor holds it?
========== ============================================ ==============================
PAID       200                                          yes, at this ``requested_at``
DUPLICATE  422 (correlationId already exists)           yes, at an earlier ``requestedAt``
FAILED     500 (failure mode, DB error), 429 (limiter)  not from this attempt
NOT_SENT   could not connect                            not from this attempt
AMBIGUOUS  timeout / reset after sending, other 5xx     maybe: retry the same processor
REJECTED   other 4xx (the request itself is wrong)      no, and it never will
========== ============================================ ==============================
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from rinha.clock import iso_from_ms, iso_from_us, now_ms, parse_instant_us, InstantError
from rinha.http.client import Ambiguous, NotSent, Pool
from rinha.money import format_cents

DEFAULT = "default"
FALLBACK = "fallback"
PROCESSORS = (DEFAULT, FALLBACK)


class Outcome(enum.Enum):
    PAID = "paid"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    NOT_SENT = "not_sent"
    AMBIGUOUS = "ambiguous"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: Outcome
    requested_at: str
    requested_at_us: int
    status: int  # 0 when no HTTP answer
    seconds: float
    detail: str = ""


def payment_body(correlation_id: str, amount_cents: int, requested_at: str) -> bytes:
    """The JSON body of ``POST /payments``: compact, its three fields in a fixed order."""
    return b'{"correlationId":"%s","amount":%s,"requestedAt":"%s"}' % (
        correlation_id.encode(), format_cents(amount_cents).encode(), requested_at.encode())


class LookupFailed(Exception):
    """``GET /payments/{id}`` gave no usable answer; try again later."""


class Processor:
    """One payment processor reached through a keep-alive pool."""

    def __init__(self, name: str, url: str, max_connections: int = 64, timeout: float = 10.0):
        self.name = name
        self.url = url
        self.timeout = timeout
        self.pool = Pool(url, max_connections=max_connections)
        probe = self.pool.build("POST", "/payments", b"")
        # Everything before the Content-Length value, built once.
        self._head = probe[: probe.index(b"Content-Length: ") + len(b"Content-Length: ")]

    async def pay(self, correlation_id: str, amount_cents: int, lead_ms: int = 0,
                  guard: Callable[[], bool] | None = None) -> Attempt:
        """Send one attempt, stamped with ``requestedAt`` = now + ``lead_ms`` (ms, UTC; see
        ``rinha.policy.stamp_lead_ms``). ``guard``: see :meth:`rinha.http.client.Pool.send`."""
        stamp_ms = now_ms() + lead_ms
        requested_at = iso_from_ms(stamp_ms)
        body = payment_body(correlation_id, amount_cents, requested_at)
        raw = self._head + b"%d\r\n\r\n" % len(body) + body
        started = time.monotonic()
        try:
            reply = await self.pool.send(raw, self.timeout, guard=guard)
        except NotSent as exc:
            return Attempt(Outcome.NOT_SENT, requested_at, stamp_ms * 1000, 0, time.monotonic() - started, str(exc))
        except Ambiguous as exc:
            return Attempt(Outcome.AMBIGUOUS, requested_at, stamp_ms * 1000, 0, time.monotonic() - started, str(exc))
        seconds = time.monotonic() - started
        status = reply.status
        if status == 200:
            outcome = Outcome.PAID
        elif status == 422:
            outcome = Outcome.DUPLICATE
        elif status in (500, 429):
            outcome = Outcome.FAILED
        elif 400 <= status < 500:
            outcome = Outcome.REJECTED
        else:
            outcome = Outcome.AMBIGUOUS
        detail = "" if outcome is Outcome.PAID else reply.body[:200].decode(errors="replace")
        return Attempt(outcome, requested_at, stamp_ms * 1000, status, seconds, detail)

    async def lookup(self, correlation_id: str) -> tuple[str, int] | None:
        """The ``requestedAt`` this processor holds for a payment (as ``Z`` ISO and µs), or None if 404."""
        raw = self.pool.build("GET", f"/payments/{correlation_id}")
        try:
            reply = await self.pool.send(raw, self.timeout)
        except (NotSent, Ambiguous) as exc:
            raise LookupFailed(str(exc)) from None
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise LookupFailed(f"GET /payments/{correlation_id} answered {reply.status}")
        try:
            held = json.loads(reply.body)["requestedAt"]
            us = parse_instant_us(held)
        except (ValueError, KeyError, TypeError, InstantError):
            raise LookupFailed(f"GET /payments/{correlation_id} answered an unreadable body") from None
        return iso_from_us(us), us

    async def aclose(self) -> None:
        await self.pool.aclose()
