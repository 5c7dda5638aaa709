"""The data plane: ``POST /payments``, ``GET /payments-summary``, ``POST /purge-payments``.

A payment is answered 202 only once it is committed to the store (see
:mod:`rinha.daemon.store_writer`), or written to the instance's intake journal (an intake-only
instance on SQLite: :mod:`rinha.store.journal`), then handed to this process's dispatcher if it
has one; otherwise a dispatching instance claims it from the store.
"""

from __future__ import annotations

import logging
import sqlite3
from urllib.parse import parse_qs

import trio

from rinha.daemon.dispatcher import Dispatcher, Job
from rinha.daemon.metrics import INTAKE_LATENCY, timed
from rinha.daemon.store_writer import StoreUnavailable, StoreWriter
from rinha.clock import InstantError, now_ms, parse_instant_us
from rinha.http.response import error_json, json_response, response
from rinha.http.server import Request
from rinha.payment import PaymentError, parse_payment
from rinha.store import Store
from rinha.store.base import ACCEPT, PURGE
from rinha.store.journal import IntakeJournal

log = logging.getLogger(__name__)

ACCEPTED = response(202, b'{"status":"accepted"}')
ALREADY_ACCEPTED = response(200, b'{"status":"already accepted"}')
CONFLICT = error_json(409, "correlationId already used with a different amount")
UNSUPPORTED = error_json(415, "Content-Type must be application/json")
NOT_FOUND = error_json(404, "no such endpoint; try POST /payments or GET /payments-summary")
PURGED = response(200, b'{"message":"payments purged"}')
DRAINING = response(503, b'{"error":"shutting down; retry on another instance"}',
                    headers=((b"Retry-After", b"1"), (b"Connection", b"close")))
STORE_DOWN = response(503, b'{"error":"payment store unavailable; retry later"}', headers=((b"Retry-After", b"1"),))

_ROUTES = {
    b"/payments": b"POST",
    b"/payments-summary": b"GET",
    b"/purge-payments": b"POST",
}
_METHOD_NOT_ALLOWED = {
    path: response(405, b'{"error":"method not allowed"}', headers=((b"Allow", method),))
    for path, method in _ROUTES.items()
}
_FAR_PAST, _FAR_FUTURE = -(2**62), 2**62


class Intake:
    def __init__(self, writer: StoreWriter, store: Store, dispatcher: Dispatcher | None,
                 journal: IntakeJournal | None = None):
        self.writer = writer
        self.journal = journal
        self.journal_failing = False
        self.store = store
        self.dispatcher = dispatcher
        self.accepted = 0
        #: Shutting down: payments (and purges) are refused with 503; summaries are still answered.
        self.draining = False

    async def handle(self, request: Request) -> bytes:
        path = request.path
        if path.endswith(b"/") and len(path) > 1:
            path = path[:-1]
        method = _ROUTES.get(path)
        if method is None:
            return NOT_FOUND
        if request.method != method:
            return _METHOD_NOT_ALLOWED[path]
        if path == b"/payments-summary":
            return await self.summary(request)
        if self.draining:
            request.keep_alive = False
            return DRAINING
        if path == b"/payments":
            return await self.accept(request)
        return await self.purge()

    @timed(INTAKE_LATENCY)  # the one observation on the payment path (< 1 µs)
    async def accept(self, request: Request) -> bytes:
        content_type = request.headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != b"application/json" and not content_type.endswith(b"+json"):
            return UNSUPPORTED
        try:
            payment = parse_payment(request.body)
        except PaymentError as exc:
            return json_response(400, {"error": exc.message, "field": exc.field})
        dispatcher = self.dispatcher
        accepted_at = now_ms()
        if self.journal is not None:  # intake-only on SQLite: no dispatcher here (rinha.store.journal)
            try:
                result = self.journal.accept(payment.correlation_id, payment.amount_cents, accepted_at)
            except (OSError, sqlite3.Error) as exc:
                if not self.journal_failing:  # once per outage: a full disk would flood the log
                    log.error("intake journal write failed (answering 503 until it works again): %s", exc)
                    self.journal_failing = True
                return STORE_DOWN
            if self.journal_failing:
                log.warning("intake journal writes recovered")
                self.journal_failing = False
        else:
            owner, lease = dispatcher.owner_lease() if dispatcher is not None else (None, 0)
            try:
                result = await self.writer.write(ACCEPT, payment.correlation_id, payment.amount_cents, accepted_at,
                                                 owner, lease)
            except StoreUnavailable:
                return STORE_DOWN
        if result == "new":
            self.accepted += 1
            if dispatcher is not None:
                dispatcher.submit(Job(payment.correlation_id, payment.amount_cents, accepted_at))
            return ACCEPTED
        if result == "same":
            return ALREADY_ACCEPTED
        return CONFLICT

    async def summary(self, request: Request) -> bytes:
        try:
            params = parse_qs(request.query.decode("utf-8", "strict"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return error_json(400, "query string is not valid UTF-8")
        bounds = []
        for name, unbounded in (("from", _FAR_PAST), ("to", _FAR_FUTURE)):
            values = params.get(name)
            if not values or not values[-1].strip():
                bounds.append(unbounded)
                continue
            try:
                bounds.append(parse_instant_us(values[-1]))
            except InstantError as exc:
                return error_json(400, f"{name}: {exc}")
        summary = await trio.to_thread.run_sync(self.store.summary, bounds[0], bounds[1])
        return response(200, summary.contest_json())

    async def purge(self) -> bytes:
        at_ms = now_ms()
        try:
            await self.writer.write(PURGE, at_ms)
        except StoreUnavailable:
            return STORE_DOWN
        if self.dispatcher is not None:  # the others learn it from the store within a second
            self.dispatcher.purged(at_ms)
        return PURGED
