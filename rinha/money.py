"""Money as integer cents. Amounts never pass through a float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

#: The largest single payment accepted: 1,000,000,000.00 (a sane bound far above any real one).
MAX_AMOUNT_CENTS = 100_000_000_000
_MAX_AMOUNT = Decimal(MAX_AMOUNT_CENTS).scaleb(-2)


class AmountError(ValueError):
    """An amount that is not a positive decimal with at most two decimal places in range."""


def parse_cents(value: object) -> int:
    """Cents from a JSON amount parsed as Decimal (or int) or a decimal string.

    Raises AmountError with a message fit for the client.
    """
    if isinstance(value, bool) or value is None:
        raise AmountError("amount must be a number")
    if isinstance(value, int):
        value = Decimal(value)
    elif isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise AmountError("amount must be a number") from None
    elif not isinstance(value, Decimal):
        raise AmountError("amount must be a number")
    if not value.is_finite():
        raise AmountError("amount must be finite")
    if value <= 0:
        raise AmountError("amount must be positive")
    # Range first: comparisons are exact at any exponent, where arithmetic on 1e999999999
    # would overflow the decimal context.
    if value > _MAX_AMOUNT:
        raise AmountError(f"amount must be at most {format_cents(MAX_AMOUNT_CENTS)}")
    # Exact from the digits: the context's arithmetic would round (or underflow 1e-9999999).
    _sign, digits, exponent = value.as_tuple()
    if exponent < -2:
        below_a_cent = -2 - exponent
        if below_a_cent >= len(digits) or any(digits[-below_a_cent:]):
            raise AmountError("amount must have at most 2 decimal places")
        digits, exponent = digits[:-below_a_cent], -2
    return int("".join(map(str, digits))) * 10 ** (exponent + 2)


def format_cents(cents: int) -> str:
    """``1990`` → ``"19.90"``; exact, always two decimals."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"
