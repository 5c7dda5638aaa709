"""Instants as the processors see them: UTC ISO-8601 strings and integer microseconds.

``requestedAt`` is sent with millisecond precision and a ``Z`` (what the processors store and
what the contest's auditor compares); windows are compared as integer microseconds since the
Unix epoch, the processors' own precision.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


class InstantError(ValueError):
    """A timestamp that cannot be parsed; the message names the expected shape."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_second_text = (0, "1970-01-01T00:00:00")


def iso_from_ms(ms: int) -> str:
    """``1752582896789`` → ``"2025-07-15T12:34:56.789Z"`` (one per attempt: the second's text
    is kept for the next call)."""
    global _second_text
    seconds, millis = divmod(ms, 1000)
    second, text = _second_text
    if second != seconds:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second_text = (seconds, text)
    return f"{text}.{millis:03d}Z"


def iso_from_us(us: int) -> str:
    """Milliseconds when exact, else microseconds; always UTC with ``Z``."""
    if us % 1000 == 0:
        return iso_from_ms(us // 1000)
    seconds, micros = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def parse_instant_us(text: str) -> int:
    """Microseconds since the epoch from an ISO-8601 instant; no offset means UTC.

    Accepts what ``datetime.fromisoformat`` accepts (``Z``, offsets, a date alone, a space for
    ``T``); digits past the microsecond are truncated, as the processors do.
    """
    cleaned = text.strip()
    if not cleaned:
        raise InstantError("empty timestamp")
    head, dot, fraction = cleaned.partition(".")
    if dot:  # truncate a fraction longer than 6 digits, keep any zone suffix
        digits = len(fraction) - len(fraction.lstrip("0123456789"))
        if digits > 6:
            cleaned = f"{head}.{fraction[:6]}{fraction[digits:]}"
    try:
        instant = datetime.fromisoformat(cleaned)
    except ValueError:
        raise InstantError(f"{text!r} is not an ISO-8601 timestamp (e.g. 2025-07-15T12:34:56.000Z)") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=timezone.utc)
    return (instant - _EPOCH) // _US
