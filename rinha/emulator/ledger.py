"""The processor's payments table, in memory: what is stored, read back and summed.

The real processor writes each payment with Npgsql into PostgreSQL (``amount numeric``,
``requested_at timestamp without time zone``). This module reproduces what that storage does to
the values, as pure functions and a dict:

* the amount is ``decimal.Round(amount, 2)`` (banker's rounding), keeping a scale of 2 or less
  as it came; ``numeric`` has no negative zero;
* the timestamp becomes microseconds since 2000-01-01 (PostgreSQL's epoch) by Npgsql's integer
  division of the ticks, which truncates toward that epoch; ``DateTime.MinValue`` and
  ``MaxValue`` become ``-infinity`` and ``infinity``;
* reading back gives a ``DateTime`` without kind, which System.Text.Json writes as
  ``yyyy-MM-ddTHH:mm:ss[.fffffff]`` with trailing fraction zeros trimmed and no zone.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from rinha.emulator.binding import EXACT, MAX_TICKS, TICKS_PER_DAY, TICKS_PER_SECOND

#: Ticks of 2000-01-01T00:00:00, PostgreSQL's timestamp epoch.
POSTGRES_EPOCH_TICKS = 630_822_816_000_000_000
#: Stored forms of ``-infinity`` and ``infinity`` (Npgsql writes them as the extreme int64 values).
MINUS_INFINITY = -(2**63)
INFINITY = 2**63 - 1

_CENT = Decimal("0.01")
_ZERO = Decimal(0)


def stored_amount(amount: Decimal) -> Decimal:
    """``decimal.Round(amount, 2)`` as ``numeric`` keeps it: half to even, scale kept when ≤ 2."""
    if amount.as_tuple().exponent < -2:
        amount = amount.quantize(_CENT, context=EXACT)
    return amount.copy_abs() if amount.is_zero() else amount


def stored_timestamp(ticks: int) -> int:
    """A ``DateTime`` (ticks) as the ``timestamp`` column holds it (see the module docstring)."""
    if ticks == 0:
        return MINUS_INFINITY
    if ticks == MAX_TICKS:
        return INFINITY
    since_epoch = ticks - POSTGRES_EPOCH_TICKS
    return since_epoch // 10 if since_epoch >= 0 else -(-since_epoch // 10)


def format_timestamp(stored: int) -> str:
    """A stored timestamp as ``GET /payments/{id}`` shows it."""
    if stored == MINUS_INFINITY:
        return "0001-01-01T00:00:00"
    ticks = MAX_TICKS if stored == INFINITY else stored * 10 + POSTGRES_EPOCH_TICKS
    days, rest = divmod(ticks, TICKS_PER_DAY)
    seconds, fraction = divmod(rest, TICKS_PER_SECOND)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{date.fromordinal(days + 1).isoformat()}T{hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}.{fraction:07d}".rstrip("0") if fraction else text


class Ledger:
    """Stored payments by lower-case hyphenated correlation id: ``(amount, stored timestamp)``."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[Decimal, int]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def insert(self, correlation_id: str, amount: Decimal, requested_at_ticks: int) -> bool:
        """Store a payment as bound; False (nothing changes) if the id is already there."""
        rows = self._rows
        if correlation_id in rows:
            return False
        rows[correlation_id] = (stored_amount(amount), stored_timestamp(requested_at_ticks))
        return True

    def get(self, correlation_id: str) -> tuple[Decimal, int] | None:
        return self._rows.get(correlation_id)

    def purge(self) -> None:
        self._rows.clear()

    def summary(self, lower_ticks: int | None, upper_ticks: int | None) -> tuple[int, Decimal]:
        """``(count, exact sum of amounts)`` with ``requested_at BETWEEN lower AND upper``, both
        bounds inclusive at microsecond precision; every payment when either bound is None."""
        rows = self._rows.values()
        if lower_ticks is not None and upper_ticks is not None:
            lower, upper = stored_timestamp(lower_ticks), stored_timestamp(upper_ticks)
            rows = [row for row in rows if lower <= row[1] <= upper]
        total = _ZERO  # COALESCE(SUM(amount), 0): exact, at the largest scale among the amounts
        for amount, _ in rows:
            total = EXACT.add(total, amount)
        return len(rows), total
