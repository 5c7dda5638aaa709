"""rinha.score: the contest's formula, fed by recorded summaries in profiles/contest.js's shape.

Fixtures (tests/data/k6/):
- perfect.json: 16,752 payments all through default, p99 1.25 ms, no lag, no inconsistency
  (the ceiling the spec states);
- lag_fallback.json: 746 payments never recorded, 2,994 through fallback, p99 41.7 ms (no bonus);
- inconsistency.json: one audit inconsistency (35 % fine), p99 3.249 ms (rounds to 3.25: a half-up
  bonus edge, 7.75 × 0.02 = 0.155 → 16 %).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from rinha.score import Score, contest_p99, load_summary, main, p99_bonus, render_rows, score

DATA = Path(__file__).parent / "data" / "k6"


def fixture(name: str) -> dict:
    return load_summary(DATA / f"{name}.json")


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# --- recorded summaries ---------------------------------------------------------------------


def test_perfect_run_reaches_the_spec_ceiling():
    result = score(fixture("perfect"))
    assert result.accepted == result.recorded == 16_752
    assert result.lag == 0 and result.lag_cost == 0 and not result.disqualified
    assert result.gross == Decimal("333364.80")
    assert result.fee_default == Decimal("16668.24")
    assert result.fee_fallback == 0
    assert result.p99_ms == Decimal("1.25")
    assert result.bonus == Decimal("0.20")
    assert result.fine == 0
    # (333,364.80 − 16,668.24) × 1.20, exactly; the spec's "≈ 380,036".
    assert result.profit == Decimal("380035.872")
    assert round(result.profit) == 380_036


def test_lag_and_fallback_fees_to_the_cent():
    result = score(fixture("lag_fallback"))
    assert (result.accepted, result.recorded, result.fallback_payments) == (16_740, 15_994, 2_994)
    assert result.lag == 746
    assert result.gross == Decimal("318280.60")
    assert result.fee_default == Decimal("12935.00")  # 258,700.00 × 0.05
    assert result.fee_fallback == Decimal("8937.09")  # 59,580.60 × 0.15
    assert result.fees == Decimal("21872.09")
    assert result.p99_ms == Decimal("41.70") and result.bonus == 0
    assert result.profit == Decimal("296408.51")
    # 746 payments × 19.90 × (1 − 0.05) × (1 + 0 − 0)
    assert cents(result.lag_cost) == Decimal("14103.13")


def test_one_inconsistency_costs_35_percent():
    result = score(fixture("inconsistency"))
    assert result.inconsistencies == 1
    assert result.fine == Decimal("0.35")
    assert result.p99_ms == Decimal("3.25")
    assert result.bonus == Decimal("0.16")  # 7.75 × 0.02 = 0.155, half-up
    assert result.fees == Decimal("16771.72")  # 16,616.50 + 155.22
    assert result.net == Decimal("316593.08")
    assert result.profit == Decimal("316593.08") * Decimal("0.81")
    assert cents(result.profit) == Decimal("256440.39")


def test_the_same_run_without_the_inconsistency_earns_the_fine_back():
    summary = fixture("inconsistency")
    summary["inconsistencies"] = 0
    result = score(summary)
    assert result.fine == 0
    assert result.profit == Decimal("316593.08") * Decimal("1.16")


def test_recording_more_than_accepted_is_disqualified():
    summary = fixture("perfect")
    summary["payments"]["accepted"] = 16_751
    result = score(summary)
    assert result.lag == -1 and result.disqualified
    assert result.lag_cost == 0


def test_fee_uses_the_processor_rate_times_the_backend_amount():
    # The contest never reads the processors' totalFee: only their rate, times the backend's amount.
    summary = fixture("lag_fallback")
    summary["processors"]["fallback"]["totalFee"] = "0"
    summary["processors"]["fallback"]["totalAmount"] = "0"
    assert score(summary).fee_fallback == Decimal("8937.09")


# --- p99 and bonus rounding -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("p99", "rounded", "bonus"),
    [
        ("1.25", "1.25", "0.20"),  # 9.75 × 0.02 = 0.195 → 0.20
        ("1.2549", "1.25", "0.20"),
        ("1.255", "1.26", "0.19"),  # p99 rounds half-up first
        ("0.755", "0.76", "0.20"),
        ("0.7549", "0.75", "0.21"),
        ("0.254", "0.25", "0.22"),  # 10.75 × 0.02 = 0.215 → 0.22: the maximum, not capped at 20 %
        ("0", "0.00", "0.22"),
        ("10.7549", "10.75", "0.01"),
        ("10.755", "10.76", "0.00"),
        ("11", "11.00", "0.00"),
        ("250.5", "250.50", "0.00"),  # never negative
    ],
)
def test_p99_and_bonus_rounding(p99, rounded, bonus):
    assert contest_p99(Decimal(p99)) == Decimal(rounded)
    assert p99_bonus(contest_p99(Decimal(p99))) == Decimal(bonus)


def test_p99_accepts_the_float_k6_would_write():
    assert contest_p99(1.25) == Decimal("1.25")
    assert contest_p99(1.2549999) == Decimal("1.25")


def test_no_successful_request_means_no_bonus():
    summary = fixture("perfect")
    summary["http"]["p99"] = None
    result = score(summary)
    assert result.p99_ms is None and result.bonus == 0
    assert result.profit == Decimal("316696.56")


@pytest.mark.skipif(shutil.which("k6") is None, reason="k6 is not on PATH")
def test_exact_bonus_matches_the_contests_double_arithmetic(tmp_path):
    """The contest computes (11 − p99) × 0.02 in k6's JavaScript doubles, then rounds String(x) half-up.

    For every p99 that can earn a bonus (already rounded to 2 decimals), that must give the bonus
    p99_bonus computes exactly.
    """
    out = tmp_path / "products.json"
    script = tmp_path / "products.js"
    script.write_text(
        "export const options = { vus: 1, iterations: 1 };\n"
        "export default function () {}\n"
        "export function handleSummary() {\n"
        "  const products = [];\n"
        "  for (let i = 0; i <= 1200; i++) {\n"
        "    const p99 = Number((i / 100).toFixed(2));\n"
        "    products.push(String((11 - p99) * 0.02));\n"
        "  }\n"
        "  return { [__ENV.OUT]: JSON.stringify(products) };\n"
        "}\n"
    )
    subprocess.run(
        ["k6", "run", "--quiet", "--no-usage-report", "-e", f"OUT={out}", str(script)],
        check=True, capture_output=True, timeout=60,
    )
    products = json.loads(out.read_text())
    assert len(products) == 1201
    for i, product in enumerate(products):
        contest = max(Decimal(product).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), Decimal(0))
        assert p99_bonus(Decimal(i) / 100) == contest, f"p99 {i / 100}: k6 gives {product}"


# --- money hygiene and output ---------------------------------------------------------------


def test_summaries_load_money_and_latencies_as_decimals():
    summary = fixture("perfect")
    assert isinstance(summary["http"]["p99"], Decimal)
    assert isinstance(score(summary).gross, Decimal)


def test_float_amounts_are_refused():
    summary = copy.deepcopy(fixture("perfect"))
    summary["backend"]["default"]["totalAmount"] = 333364.8
    with pytest.raises(TypeError, match="float"):
        score(summary)


def test_score_is_frozen():
    result = score(fixture("perfect"))
    assert isinstance(result, Score)
    with pytest.raises(AttributeError):
        result.profit = Decimal(0)  # type: ignore[misc]


def test_render_rows():
    rows = dict(render_rows(score(fixture("lag_fallback"))))
    assert rows["profit"] == "296,408.51"
    assert rows["fees"] == "21,872.09 (default 12,935.00, fallback 8,937.09)"
    assert rows["bonus"] == "0 %"
    assert rows["lag"] == "746"
    assert rows["lag cost"] == "14,103.13"
    assert dict(render_rows(score(fixture("perfect"))))["bonus"] == "20 %"
    assert dict(render_rows(score(fixture("inconsistency"))))["fine"] == "35 %"


def test_main_prints_the_table(capsys):
    assert main([str(DATA / "perfect.json")]) == 0
    out = capsys.readouterr().out
    assert "profit" in out and "380,035.87" in out
    assert main([]) == 2
