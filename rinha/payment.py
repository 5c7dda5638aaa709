"""A payment request as the data plane accepts it: validation of ``POST /payments`` bodies."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal

from rinha.money import MAX_AMOUNT_CENTS, AmountError, format_cents, parse_cents

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


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
    try:
        data = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except PaymentError:
        raise
    except RecursionError:
        raise PaymentError("body", "request body is nested too deeply") from None
    except ValueError:
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
    if amount is _OUT_OF_RANGE:
        raise PaymentError("amount", f"amount must be at most {format_cents(MAX_AMOUNT_CENTS)}, with at most 2 decimal places")
    try:
        cents = parse_cents(amount)
    except AmountError as exc:
        raise PaymentError("amount", str(exc)) from None
    return Payment(correlation_id.lower(), cents)


def _reject_constant(name: str) -> None:
    raise PaymentError("amount", f"{name} is not a valid amount")


#: A JSON number no decimal can hold (``9e999999999999999999``): refused if it is the amount.
_OUT_OF_RANGE = object()


def _number(text: str) -> Decimal | object:
    """Every JSON number as an exact decimal: integers too, whatever their length (``int`` stops
    at 4,300 digits, and its error would read as invalid JSON)."""
    try:
        return Decimal(text)
    except ArithmeticError:
        return _OUT_OF_RANGE


def _object(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object; a key given twice makes the body ambiguous (which amount is meant?)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise PaymentError("body", f"request body has the key {repeated!r} more than once")
    return data


#: ``json.loads(body, parse_float=Decimal, ...)``, without building a decoder per request.
_DECODER = json.JSONDecoder(parse_float=_number, parse_int=_number, parse_constant=_reject_constant,
                            object_pairs_hook=_object)
