"""A payment request as the data plane accepts it: validation of ``POST /payments`` bodies."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal

from rinha.money import MAX_AMOUNT_CENTS, AmountError, parse_cents

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_DEPTH_HINT = 32


class PaymentError(ValueError):
    """An invalid request body. ``field`` names the offending field (or ``body``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Payment:
    correlation_id: str  # lower-case hyphenated UUID
    amount_cents: int


#: The body every client of the contest sends (``JSON.stringify`` of the two fields, in this
#: order): a valid UUID and a JSON number with at most two decimals, JSON whitespace only.
#: A body of this shape means exactly what the JSON path would make of it, so it skips the
#: decoder and ``Decimal`` (4.2 -> 1.6 µs); anything else takes the JSON path.
_CANONICAL = re.compile(
    rb'[ \t\n\r]*\{[ \t\n\r]*"correlationId"[ \t\n\r]*:[ \t\n\r]*'
    rb'"(' + _UUID.pattern.encode() + rb')"'
    rb'[ \t\n\r]*,[ \t\n\r]*"amount"[ \t\n\r]*:[ \t\n\r]*(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?'
    rb'[ \t\n\r]*\}[ \t\n\r]*'
)


def parse_payment(body: bytes) -> Payment:
    """Validate a body ``{"correlationId": "<uuid>", "amount": 19.90}``; raise PaymentError."""
    canonical = _CANONICAL.fullmatch(body)
    if canonical is not None:
        uuid, whole, fraction = canonical.groups()
        cents = int(whole) * 100 + (int(fraction.ljust(2, b"0")) if fraction else 0)
        if 0 < cents <= MAX_AMOUNT_CENTS:
            return Payment(uuid.decode().lower(), cents)
        # out of range: the JSON path words the error
    return _parse_json(body)


def _parse_json(body: bytes) -> Payment:
    """The general path: any JSON encoding, key order and number form."""
    if not body:
        raise PaymentError("body", "request body is empty; expected a JSON object")
    if body.count(b"[") + body.count(b"{") > _MAX_DEPTH_HINT:
        raise PaymentError("body", "request body is nested too deeply")
    try:
        data = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except PaymentError:
        raise
    except (ValueError, RecursionError):
        raise PaymentError("body", "request body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise PaymentError("body", "request body must be a JSON object")
    correlation_id = data.get("correlationId")
    if not isinstance(correlation_id, str) or not _UUID.fullmatch(correlation_id):
        raise PaymentError("correlationId", "correlationId must be a UUID string like 4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3")
    if "amount" not in data:
        raise PaymentError("amount", "amount is required")
    amount = data["amount"]
    if isinstance(amount, str):
        raise PaymentError("amount", "amount must be a JSON number")
    try:
        cents = parse_cents(amount)
    except AmountError as exc:
        raise PaymentError("amount", str(exc)) from None
    return Payment(correlation_id.lower(), cents)


def _reject_constant(name: str) -> None:
    raise PaymentError("amount", f"{name} is not a valid amount")


#: ``json.loads(body, parse_float=Decimal, ...)``, without building a decoder per request.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)
