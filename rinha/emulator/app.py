"""One payment processor as a handler for :class:`rinha.http.server.Server`: state, routes, replies.

:class:`Processor` holds what the real one keeps in memory (delay, failure flag, token) and in
its database (a :class:`~rinha.emulator.ledger.Ledger`), and answers every request the way
``spec/processor-api.md`` describes, step for step in the real order: routing (405/404), rate
limiter (429), binding (400/415), delay, failure (500), then the endpoint itself.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Awaitable, Callable
from urllib.parse import unquote_to_bytes

import trio

from rinha.emulator.binding import (
    EXACT,
    BindingError,
    bind_field,
    bind_payment,
    bind_summary_bounds,
    fold,
    net_decimal,
    parse_guid,
    read_bool,
    read_int32,
    read_nullable_string,
)
from rinha.emulator.delay import DelayTimer
from rinha.emulator.ledger import Ledger, format_timestamp
from rinha.emulator.limiters import IDLE_LIMIT, ConcurrencyLimiter, HealthLimiter
from rinha.http.response import JSON_UTF8, response
from rinha.http.server import Request

_SERVER = ((b"Server", b"Kestrel"),)


def reply(status: int, body: bytes = b"", content_type: bytes | None = JSON_UTF8,
          headers: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A whole response as Kestrel sends it (``Server: Kestrel``; Content-Type only with a body)."""
    return response(status, body, content_type, _SERVER + headers)


def json_number(value: Decimal) -> str:
    """A ``decimal`` as System.Text.Json writes it: plain digits, scale kept, never an exponent."""
    text = format(value, "f")
    return text[1:] if value.is_zero() and text[0] == "-" else text


def net_json_string(text: str) -> str:
    """The inside of a JSON string as System.Text.Json's default encoder writes it: ASCII only,
    quotes and HTML-sensitive characters as ``\\uXXXX``, short escapes for control characters."""
    short = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
    return "".join(short.get(char) or (char if " " <= char <= "~" and char not in "\"&'+<>`" else f"\\u{ord(char):04X}")
                   for char in text)


OK_PAYMENT = reply(200, b'{"message":"payment processed successfully"}')
PURGED = reply(200, b'{"message":"All payments purged."}')
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nServer: Kestrel\r\n\r\n"
EMPTY = {status: reply(status) for status in (400, 401, 404, 415, 500)}
TOO_MANY_BODY = b"Calm down, bitch. Try again later."
HOME = reply(200, b"<!DOCTYPE html><html><head><title>Payment Processor</title></head><body>"
                  b"<h1>Payment Processor</h1><p>POST /payments, GET /payments/{id}, "
                  b"GET /payments/service-health, /admin/... (X-Rinha-Token)</p></body></html>",
             b"text/html; charset=utf-8")

#: Stands for the exception text Npgsql gives on a primary-key violation (the real one carries
#: its stack trace; the exact frames vary with versions, the shape does not).
DUPLICATE_DETAILS = (
    'Npgsql.PostgresException (0x80004005): 23505: duplicate key value violates unique constraint "payments_pkey"\n'
    "\n"
    "DETAIL: Detail redacted as it may contain sensitive data. Specify 'Include Error Detail' in the connection"
    " string to include this information.\n"
    "   at Npgsql.Internal.NpgsqlConnector.ReadMessageLong(Boolean async, DataRowLoadingMode dataRowLoadingMode,"
    " Boolean readingNotifications, Boolean isReadingPrelude)\n"
    "   at System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder`1.StateMachineBox`1"
    ".System.Threading.Tasks.Sources.IValueTaskSource<TResult>.GetResult(Int16 token)\n"
    "   at Npgsql.NpgsqlDataReader.NextResult(Boolean async, Boolean isConsuming, CancellationToken cancellationToken)\n"
    "   at Npgsql.NpgsqlCommand.ExecuteReader(Boolean async, CommandBehavior behavior, CancellationToken cancellationToken)\n"
    "   at Npgsql.NpgsqlCommand.ExecuteNonQuery(Boolean async, CancellationToken cancellationToken)\n"
    "  Exception data:\n"
    "    Severity: ERROR\n"
    "    SqlState: 23505\n"
    '    MessageText: duplicate key value violates unique constraint "payments_pkey"\n'
    "    SchemaName: public\n"
    "    TableName: payments\n"
    "    ConstraintName: payments_pkey\n"
    "    File: nbtinsert.c\n"
    "    Line: 666\n"
    "    Routine: _bt_check_unique"
)
_DUPLICATE_HEAD = b'{"message":"Payment could not be processed. CorrelationId already exists: '
_DUPLICATE_TAIL = (". Error details: " + net_json_string(DUPLICATE_DETAILS) + '"}').encode()


def duplicate_reply(correlation_id: str) -> bytes:
    """The 422 for an id already stored."""
    return reply(422, _DUPLICATE_HEAD + correlation_id.encode() + _DUPLICATE_TAIL)


# --- Routing -------------------------------------------------------------------------------------

Endpoint = Callable[[Request, "str | None"], Awaitable[bytes]]


class _Route:
    """The endpoints of one path by method, and the 405 that lists them."""

    __slots__ = ("endpoints", "not_allowed")

    def __init__(self, endpoints: dict[bytes, Endpoint]):
        self.endpoints = endpoints
        self.not_allowed = reply(405, headers=((b"Allow", b", ".join(sorted(endpoints))),))


def route_segments(path: bytes) -> list[str]:
    """The path's segments as ASP.NET routing sees them.

    Each segment is percent-decoded as UTF-8 (``%2F`` stays inside its segment, as Kestrel
    leaves it undecoded), dot segments are resolved, and one trailing slash is ignored.
    """
    decoded = [unquote_to_bytes(part).decode("utf-8", "replace") for part in path[1:].split(b"/")]
    segments: list[str] = []
    for segment in decoded:
        if segment == "..":
            if segments:
                segments.pop()
        elif segment != ".":
            segments.append(segment)
    if decoded[-1] in (".", ".."):
        segments.append("")  # "/a/b/.." is "/a/"
    if segments and segments[-1] == "":
        segments.pop()
    return segments


class Processor:
    """One processor: ``handle`` is the server's handler, ``run`` its housekeeping (keep it running).

    ``health_idle_seconds`` exists for tests; the framework's value is 10 s.
    """

    def __init__(self, fee: Decimal, *, token: str | None = "123", rate_limit_seconds: int = 5,
                 health_idle_seconds: float = IDLE_LIMIT):
        self.fee = fee
        self.ledger = Ledger()
        self.concurrency = ConcurrencyLimiter()
        self.health_limiter = HealthLimiter(rate_limit_seconds, idle_limit=health_idle_seconds)
        self.delays = DelayTimer()
        self._too_many = reply(429, TOO_MANY_BODY, None, ((b"Retry-After", str(rate_limit_seconds).encode()),))
        self._set_state(delay_ms=0, failing=False)
        self._set_token(token)
        #: ``POST /payments`` requests being answered (in their delay, typically).
        self.paying = 0
        self._literal = {
            (): _Route({b"GET": self._home}),
            ("PAYMENTS",): _Route({b"POST": self._post_payment}),
            ("PAYMENTS", "SERVICE-HEALTH"): _Route({b"GET": self._health_check}),
            ("ADMIN", "CONFIGURATIONS", "TOKEN"): _Route({b"PUT": self._put_token}),
            ("ADMIN", "CONFIGURATIONS", "DELAY"): _Route({b"PUT": self._put_delay}),
            ("ADMIN", "CONFIGURATIONS", "FAILURE"): _Route({b"PUT": self._put_failure}),
            ("ADMIN", "PURGE-PAYMENTS"): _Route({b"POST": self._purge}),
            ("ADMIN", "PAYMENTS-SUMMARY"): _Route({b"GET": self._summary}),
            ("ADMIN", "IN-FLIGHT"): _Route({b"GET": self._in_flight}),
        }
        self._payment_by_id = _Route({b"GET": self._get_payment})
        self._exact = {("/" + "/".join(key)).lower().encode(): route for key, route in self._literal.items()}

    async def run(self) -> None:
        """The housekeeping: the health limiter's ticks and the delay's timer; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.health_limiter.run)
            nursery.start_soon(self.delays.run)

    async def handle(self, request: Request) -> bytes:
        """Answer one request (see the module docstring for the order of the steps)."""
        route = self._exact.get(request.path)
        argument = None
        if route is None:
            route, argument = self._match(request.path)
            if route is None:
                return EMPTY[404]
        endpoint = route.endpoints.get(request.method) or route.endpoints.get(request.method.upper())
        if endpoint is None:
            return route.not_allowed
        return await endpoint(request, argument)

    def _match(self, path: bytes) -> tuple[_Route | None, str | None]:
        segments = route_segments(path)
        key = tuple(fold(segment) for segment in segments)
        route = self._literal.get(key)
        if route is not None:
            return route, None
        if len(key) == 2 and key[0] == "PAYMENTS" and segments[1]:  # a route value is never empty
            return self._payment_by_id, segments[1]
        return None, None

    # --- state ---

    def _set_state(self, delay_ms: int, failing: bool) -> None:
        """Set the delay and failure flag, and the health reply that shows them."""
        self.delay_ms = delay_ms
        self.failing = failing
        body = f'{{"failing":{"true" if failing else "false"},"minResponseTime":{delay_ms}}}'
        self._health = reply(200, body.encode())

    def _set_token(self, token: str | None) -> None:
        """Set the admin token (None: only requests without the header are admitted)."""
        self.token = token
        self._token_header = None if token is None else token.encode()

    def _authorized(self, request: Request) -> bool:
        """``X-Rinha-Token`` equals the token exactly; a null token admits only requests without it."""
        return request.headers.get(b"x-rinha-token") == self._token_header

    # --- payments ---

    async def _home(self, request: Request, _: str | None) -> bytes:
        return HOME

    async def _post_payment(self, request: Request, _: str | None) -> bytes:
        if not await self.concurrency.acquire():
            return self._too_many
        self.paying += 1
        try:
            return await self._pay(request)
        finally:
            self.paying -= 1
            self.concurrency.release()

    async def _pay(self, request: Request) -> bytes:
        try:
            payment = bind_payment(request.body, request.headers.get(b"content-type"))
        except BindingError as exc:
            return EMPTY[exc.status]
        delay_ms = self.delay_ms
        if delay_ms > 0:
            await self.delays.wait(delay_ms)
        if self.failing:
            return EMPTY[500]
        if self.ledger.insert(payment.correlation_id, payment.amount, payment.requested_at):
            return OK_PAYMENT
        return duplicate_reply(payment.correlation_id)

    async def _get_payment(self, request: Request, raw_id: str | None) -> bytes:
        if not await self.concurrency.acquire():
            return self._too_many
        try:
            correlation_id = parse_guid(raw_id or "")
            if correlation_id is None:
                return EMPTY[400]
            row = self.ledger.get(correlation_id)
            if row is None:
                return EMPTY[404]
            amount, requested_at = row
            body = (f'{{"correlationId":"{correlation_id}","amount":{json_number(amount)},'
                    f'"requestedAt":"{format_timestamp(requested_at)}"}}')
            return reply(200, body.encode())
        finally:
            self.concurrency.release()

    async def _health_check(self, request: Request, _: str | None) -> bytes:
        if not await self.health_limiter.acquire():
            return self._too_many
        return self._health

    # --- admin: body first, then the token ---

    async def _put_token(self, request: Request, _: str | None) -> bytes:
        try:
            token = bind_field(request.body, request.headers.get(b"content-type"), "token", read_nullable_string, None)
        except BindingError as exc:
            return EMPTY[exc.status]
        if not self._authorized(request):
            return EMPTY[401]
        self._set_token(token)
        return NO_CONTENT

    async def _put_delay(self, request: Request, _: str | None) -> bytes:
        try:
            delay_ms = bind_field(request.body, request.headers.get(b"content-type"), "delay", read_int32, 0)
        except BindingError as exc:
            return EMPTY[exc.status]
        if not self._authorized(request):
            return EMPTY[401]
        was = self.delay_ms
        self._set_state(delay_ms, self.failing)
        return reply(200, f'{{"config":"delay","was":{was},"is":{delay_ms}}}'.encode())

    async def _put_failure(self, request: Request, _: str | None) -> bytes:
        try:
            failing = bind_field(request.body, request.headers.get(b"content-type"), "failure", read_bool, False)
        except BindingError as exc:
            return EMPTY[exc.status]
        if not self._authorized(request):
            return EMPTY[401]
        was = self.failing
        self._set_state(self.delay_ms, failing)
        return reply(200, f'{{"config":"failure","was":{str(was).lower()},"is":{str(failing).lower()}}}'.encode())

    async def _in_flight(self, request: Request, _: str | None) -> bytes:
        """An extension for tests: a payment held in its delay is stored after a purge made meanwhile."""
        if not self._authorized(request):
            return EMPTY[401]
        return reply(200, f'{{"payments":{self.paying}}}'.encode())

    async def _purge(self, request: Request, _: str | None) -> bytes:
        if not self._authorized(request):
            return EMPTY[401]
        self.ledger.purge()
        return PURGED

    async def _summary(self, request: Request, _: str | None) -> bytes:
        # A query-string error marks the request 400 but the token filter still runs first.
        try:
            bounds = bind_summary_bounds(request.query)
        except BindingError:
            bounds = None
        if not self._authorized(request):
            return EMPTY[401]
        if bounds is None:
            return EMPTY[400]
        count, total = self.ledger.summary(*bounds)
        total_fee = net_decimal(EXACT.multiply(total, self.fee))
        if total_fee is None or net_decimal(total) is None:
            return EMPTY[500]  # the sum no longer fits a .NET decimal: Npgsql's read throws
        body = (f'{{"totalAmount":{json_number(total)},"totalRequests":{count},'
                f'"totalFee":{json_number(total_fee)},"feePerTransaction":{json_number(self.fee)}}}')
        return reply(200, body.encode())
