"""A finished run as a ``profile_runs`` row, and a stored row back as its summary and score.

The summary is stored as k6 wrote it; the score as :func:`score_record` gives it: every money
figure and rate a decimal string (exact, never a float), counts as integers. A run whose summary
cannot be scored (a foreign script's shape) is stored with ``score_json`` NULL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from rinha.score import Score, score
from rinha.store.base import ProfileRun

#: Fields of the stored score, in table order.
_DECIMALS = ("lag_cost", "gross", "fee_default", "fee_fallback", "fees", "net", "p99_ms", "bonus", "fine", "profit")


def score_record(result: Score) -> dict:
    """The score as stored (JSON-ready; Decimals as strings, p99 None when there was no response)."""
    record = {
        "accepted": result.accepted,
        "recorded": result.recorded,
        "default_payments": result.recorded - result.fallback_payments,
        "fallback_payments": result.fallback_payments,
        "lag": result.lag,
        "inconsistencies": result.inconsistencies,
        "disqualified": result.disqualified,
    }
    for name in _DECIMALS:
        value = getattr(result, name)
        record[name] = None if value is None else str(value)
    return record


def score_summary(summary: dict) -> dict | None:
    """:func:`score_record` of a summary, or None if it lacks what the contest's score needs."""
    try:
        return score_record(score(summary))
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None


def new_run(profile: str, summary_text: str, score: dict | None, *, started_at_ms: int, finished_at_ms: int,
            target: str | None, vus: int | None, baseline: bool = False, notes: str | None = None) -> ProfileRun:
    """The row to store (``id`` 0: the store assigns it)."""
    return ProfileRun(id=0, profile=profile, started_at_ms=started_at_ms, finished_at_ms=finished_at_ms,
                      target=target, vus=vus, baseline=baseline, summary_json=summary_text,
                      score_json=None if score is None else json.dumps(score), notes=notes)


@dataclass(frozen=True)
class LoadedRun:
    """A stored run with its JSON parsed (fractions of the summary as Decimal)."""

    row: ProfileRun
    summary: dict
    score: dict | None

    @property
    def id(self) -> int:
        return self.row.id

    def decimal(self, field: str) -> Decimal | None:
        """A Decimal figure of the score (None if absent or unscored)."""
        if self.score is None or self.score.get(field) is None:
            return None
        return Decimal(self.score[field])

    def latency(self, stat: str) -> Decimal | None:
        """``http.<stat>`` of the summary (ms), e.g. p50, p99, max."""
        value = (self.summary.get("http") or {}).get(stat)
        return None if value is None else Decimal(str(value))


def load(row: ProfileRun) -> LoadedRun:
    summary = json.loads(row.summary_json, parse_float=Decimal)
    stored_score = None if row.score_json is None else json.loads(row.score_json)
    return LoadedRun(row=row, summary=summary, score=stored_score)
