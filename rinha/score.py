"""The contest's score, computed from a summary written by ``profiles/contest.js``.

Source: the contest's own k6 script, ``rinha-test/rinha.js`` in ``zanfranceschi/rinha-de-backend-2025``
(its ``teardown`` and ``handleSummary``), restated in ``shared/spec/rinha-2025.md``::

    gross   = backend default totalAmount + backend fallback totalAmount   (final 70 s window)
    fees    = Σ over both processors of  processor feePerTransaction × backend totalAmount
    p99     = p(99) of http_req_duration{expected_response:true}, in ms, rounded half-up to 2
              decimals; that is over every HTTP request of the run (setup, payments, stages,
              audits, teardown) that got a 2xx/3xx answer: timeouts and errors are left out
    bonus   = max(round_half_up((11 − p99) × 0.02, 2), 0)
    fine    = 0.35 if the audits counted any inconsistency, else 0
    profit  = (gross − fees) × (1 + bonus − fine)
    lag     = accepted payments − (backend default + fallback totalRequests); < 0 disqualifies

The contest does its money arithmetic with big.js (exact decimals, round half-up by default); here it
is done with :class:`decimal.Decimal`, exactly, and never with floats. Two details of the contest's
rounding are reproduced:

- p99 is rounded from the number as k6's JavaScript prints it (``String(p99)``), which is the text
  ``profiles/contest.js`` writes into the summary; read it as Decimal (:func:`load_summary`).
- the contest computes ``(11 − p99) × 0.02`` with doubles before rounding it half-up. Here the product
  is exact; for every p99 that can earn a bonus (0.00 … 11.00 in steps of 0.01) both give the same
  2-decimal result, which ``tests/test_score.py`` checks against k6 itself. So p99 = 1.25 gives
  9.75 × 0.02 = 0.195 → 0.20: any p99 below 1.255 ms earns at least 20 %. The bonus is not capped
  at 20 %: it reaches 21 % below 0.755 ms and 22 % (its maximum) below 0.255 ms; it is 1 % up to
  10.75 ms and 0 from 10.755 ms.

Lag has no term of its own in the formula; it costs the profit those payments would have made.
:attr:`Score.lag_cost` values it as if they had been paid through the default processor:
``lag × amount × (1 − default fee) × (1 + bonus − fine)``.

Usage: ``python -m rinha.score SUMMARY.json`` prints the table.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

#: The contest's figures.
P99_BONUS_BASE_MS = 11
P99_BONUS_RATE = Decimal("0.02")
INCONSISTENCY_FINE = Decimal("0.35")
DEFAULT_AMOUNT = Decimal("19.90")

_CENT = Decimal("0.01")
_PROCESSORS = ("default", "fallback")


@dataclass(frozen=True)
class Score:
    """The contest's score of one run, with the figures it is made of. Money is exact."""

    accepted: int  #: payments the backend accepted (200/201/202/204)
    recorded: int  #: payments the backend's final summary reports, both processors
    fallback_payments: int  #: of which through the fallback processor
    lag: int  #: accepted − recorded; negative = disqualified
    lag_cost: Decimal  #: profit lost to the lag (see module doc)
    gross: Decimal
    fee_default: Decimal
    fee_fallback: Decimal
    fees: Decimal
    p99_ms: Decimal | None  #: as the contest rounds it (2 decimals); None if no request succeeded
    bonus: Decimal  #: 0.00 … 0.22
    inconsistencies: int
    fine: Decimal  #: 0 or 0.35
    profit: Decimal  #: the contest's score ("total_liquido")

    @property
    def net(self) -> Decimal:
        """Gross minus fees, before bonus and fine."""
        return self.gross - self.fees

    @property
    def disqualified(self) -> bool:
        """More payments recorded than accepted ("caixa dois")."""
        return self.lag < 0


def score(summary: dict[str, Any]) -> Score:
    """The contest's score of a ``profiles/contest.js`` summary (shape documented in that file).

    Money fields must be decimal strings, ints or Decimals (load files with :func:`load_summary`);
    a float amount raises TypeError rather than be trusted.
    """
    backend = summary["backend"]
    processors = summary["processors"]
    amounts = {name: _money(backend[name]["totalAmount"]) for name in _PROCESSORS}
    rates = {name: _money(processors[name]["feePerTransaction"]) for name in _PROCESSORS}
    counts = {name: int(backend[name]["totalRequests"]) for name in _PROCESSORS}

    gross = amounts["default"] + amounts["fallback"]
    fee_default = rates["default"] * amounts["default"]
    fee_fallback = rates["fallback"] * amounts["fallback"]
    fees = fee_default + fee_fallback

    p99 = contest_p99(summary["http"].get("p99"))
    bonus = p99_bonus(p99)
    inconsistencies = int(summary.get("inconsistencies", 0))
    fine = INCONSISTENCY_FINE if inconsistencies > 0 else Decimal(0)
    factor = 1 + bonus - fine

    accepted = int(summary["payments"]["accepted"])
    recorded = counts["default"] + counts["fallback"]
    lag = accepted - recorded
    amount = _money(summary.get("params", {}).get("amount", DEFAULT_AMOUNT))
    lag_cost = max(lag, 0) * amount * (1 - rates["default"]) * factor

    return Score(
        accepted=accepted,
        recorded=recorded,
        fallback_payments=counts["fallback"],
        lag=lag,
        lag_cost=lag_cost,
        gross=gross,
        fee_default=fee_default,
        fee_fallback=fee_fallback,
        fees=fees,
        p99_ms=p99,
        bonus=bonus,
        inconsistencies=inconsistencies,
        fine=fine,
        profit=(gross - fees) * factor,
    )


def contest_p99(p99_ms: float | Decimal | int | str | None) -> Decimal | None:
    """k6's p99 in ms rounded the contest's way: 2 decimals, half-up, from its shortest decimal form."""
    if p99_ms is None:
        return None
    return _shortest_decimal(p99_ms).quantize(_CENT, rounding=ROUND_HALF_UP)


def p99_bonus(p99_ms: Decimal | None) -> Decimal:
    """The bonus rate for a p99 already rounded by :func:`contest_p99` (0 when there is none)."""
    if p99_ms is None:
        return Decimal("0.00")
    bonus = ((P99_BONUS_BASE_MS - p99_ms) * P99_BONUS_RATE).quantize(_CENT, rounding=ROUND_HALF_UP)
    return max(bonus, Decimal("0.00"))


def render_rows(result: Score) -> list[tuple[str, str]]:
    """(label, value) rows for a table, money to the cent."""
    p99 = "n/a" if result.p99_ms is None else f"{result.p99_ms} ms"
    lag = f"{result.lag}" + ("  DISQUALIFIED (more recorded than accepted)" if result.disqualified else "")
    return [
        ("payments accepted", f"{result.accepted:,}"),
        ("payments recorded", f"{result.recorded:,} ({result.fallback_payments:,} via fallback)"),
        ("lag", lag),
        ("lag cost", _fmt_money(result.lag_cost)),
        ("gross", _fmt_money(result.gross)),
        ("fees", f"{_fmt_money(result.fees)} (default {_fmt_money(result.fee_default)}, "
                 f"fallback {_fmt_money(result.fee_fallback)})"),
        ("p99", p99),
        ("bonus", _fmt_rate(result.bonus)),
        ("inconsistencies", f"{result.inconsistencies}"),
        ("fine", _fmt_rate(result.fine)),
        ("profit", _fmt_money(result.profit)),
    ]


def load_summary(path: str | Path) -> dict[str, Any]:
    """A summary file, with every JSON fraction read as Decimal."""
    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_float=Decimal)


def _money(value: object) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"money must not be a float ({value!r}): load summaries with parse_float=Decimal")
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise TypeError(f"money must be a decimal string, int or Decimal, not {value!r}")
    return Decimal(value)


def _shortest_decimal(value: float | Decimal | int | str) -> Decimal:
    """A number as a Decimal; a float goes through its shortest form (repr).

    k6's JavaScript prints the same shortest form except in rare cases (String((11 - 0.22) * 0.02) is
    "0.2156", repr gives "0.21559999999999999"), which is why summaries are read as Decimal from the
    text k6 wrote rather than as floats.
    """
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _fmt_money(value: Decimal) -> str:
    return f"{value.quantize(_CENT, rounding=ROUND_HALF_UP):,}"


def _fmt_rate(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f} %"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rinha.score SUMMARY.json", file=sys.stderr)
        return 2
    rows = render_rows(score(load_summary(args[0])))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
