"""Two runs side by side, and the regressions between them. Pure: no I/O, no clock.

A regression is, of the run compared (``current``) against the reference (a baseline, usually):

- its p99 (the contest's, rounded to 2 decimals) higher by more than ``max_p99_regression`` per
  cent, or missing (no successful request) when the reference has one;
- its profit lower by more than ``max_profit_regression`` per cent of the reference's profit
  (when the reference's profit is not positive, any lower profit);
- being disqualified (more payments recorded than accepted) when the reference is not.

Inconsistencies, lag and fallback payments are shown; they regress through the profit they cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rinha.profiling.runs import LoadedRun

_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Row:
    """One figure of both runs; ``change_pct`` is (current − reference) / reference × 100."""

    name: str
    label: str
    current: Decimal | int | None
    reference: Decimal | int | None
    better: str  #: "higher" or "lower": which way is an improvement
    change_pct: Decimal | None


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    regressions: list[str]  #: one sentence each; empty = no regression beyond the thresholds

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)


#: (name, label, where it comes from, which way is better)
_FIGURES = [
    ("profit", "profit", "score", "higher"),
    ("p99_ms", "p99 (ms)", "score", "lower"),
    ("p50", "p50 (ms)", "http", "lower"),
    ("max", "max (ms)", "http", "lower"),
    ("accepted", "accepted", "score", "higher"),
    ("default_payments", "paid via default", "score", "higher"),
    ("fallback_payments", "paid via fallback", "score", "lower"),
    ("lag", "lag", "score", "lower"),
    ("inconsistencies", "inconsistencies", "score", "lower"),
    ("bonus", "bonus", "score", "higher"),
    ("fine", "fine", "score", "lower"),
]


def compare(current: LoadedRun, reference: LoadedRun, *, max_p99_regression: Decimal,
            max_profit_regression: Decimal) -> Comparison:
    """Both runs' figures and the regressions of ``current`` beyond the thresholds (per cent)."""
    rows = [_row(name, label, source, better, current, reference) for name, label, source, better in _FIGURES]
    regressions = []
    p99, p99_ref = current.decimal("p99_ms"), reference.decimal("p99_ms")
    if p99_ref is not None and p99 is None:
        regressions.append(f"p99: none (no successful request) against {p99_ref} ms")
    elif p99 is not None and p99_ref is not None:
        change = _change_pct(p99, p99_ref)
        if change is None and p99 > p99_ref or change is not None and change > max_p99_regression:
            regressions.append(f"p99 {p99} ms against {p99_ref} ms: {_pct(change)} "
                               f"(more than +{max_p99_regression.normalize():f} %)")
    profit, profit_ref = current.decimal("profit"), reference.decimal("profit")
    if profit is not None and profit_ref is not None:
        if profit_ref > 0:
            loss = (profit_ref - profit) / profit_ref * _HUNDRED
            if loss > max_profit_regression:
                regressions.append(f"profit {_money(profit)} against {_money(profit_ref)}: {_pct(-loss)} "
                                   f"(more than -{max_profit_regression.normalize():f} %)")
        elif profit < profit_ref:
            regressions.append(f"profit {_money(profit)} against {_money(profit_ref)}")
    elif profit is None and profit_ref is not None:
        regressions.append("profit: this run has no score")
    if _disqualified(current) and not _disqualified(reference):
        regressions.append("disqualified: more payments recorded than accepted")
    return Comparison(rows=rows, regressions=regressions)


def _row(name, label, source, better, current: LoadedRun, reference: LoadedRun) -> Row:
    value, ref = _figure(current, name, source), _figure(reference, name, source)
    change = None if value is None or ref is None else _change_pct(Decimal(value), Decimal(ref))
    return Row(name=name, label=label, current=value, reference=ref, better=better, change_pct=change)


def _figure(run: LoadedRun, name: str, source: str):
    if source == "http":
        return run.latency(name)
    if run.score is None or run.score.get(name) is None:
        return None
    value = run.score[name]
    return value if isinstance(value, int) else Decimal(value)


def _change_pct(value: Decimal, reference: Decimal) -> Decimal | None:
    if reference == 0:
        return Decimal(0) if value == 0 else None
    return (value - reference) / abs(reference) * _HUNDRED


def _disqualified(run: LoadedRun) -> bool:
    return bool(run.score and run.score.get("disqualified"))


def _pct(change: Decimal | None) -> str:
    if change is None:
        return "up from 0"
    return f"{change.quantize(Decimal('0.1')):+} %"


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"
