"""The routing policies and the breaker, as pure objects: no I/O, time passed in."""

from __future__ import annotations

import random

import pytest

from rinha.breaker import Breaker
from rinha.policy import (AUDIT_SAFE_MS, HEALTH_FRESH_MS, STAMP_LEAD_ABOVE_MS, Deadline, FeeFirst, Latency, Signals,
                          make_policy, stamp_lead_ms)
from rinha.store.base import Health

NOW = 1_000_000_000


def signals(default=(False, 0), fallback=(False, 0), open_default=False, open_fallback=False, age_ms=0) -> Signals:
    return Signals(
        breaker_open={"default": open_default, "fallback": open_fallback},
        health={
            "default": Health("default", default[0], default[1], NOW - age_ms),
            "fallback": Health("fallback", fallback[0], fallback[1], NOW - age_ms),
        },
    )


def test_stamp_leads_by_the_expected_delay_only_once_it_is_long():
    assert stamp_lead_ms(0) == 0
    assert stamp_lead_ms(100) == 0
    assert stamp_lead_ms(STAMP_LEAD_ABOVE_MS) == 0
    # an attempt waiting 600 ms (a delay rising to 2 s) already moves the next stamp: sent now and
    # filed 2 s later, it lands 1.4 s in the past, inside the audit's 1.5 s margin
    assert stamp_lead_ms(600.7) == 600
    assert stamp_lead_ms(2000) == 2000


def test_fee_first_always_default():
    policy = FeeFirst()
    for s in (signals(), signals(default=(True, 2000)), signals(open_default=True)):
        assert policy.choose(10**9, NOW, s) == "default"


def test_deadline_waits_for_default_until_the_deadline():
    policy = Deadline(deadline_s=5)
    failing = signals(default=(True, 100))
    assert policy.choose(4_999, NOW, failing) == "default"
    assert policy.choose(5_000, NOW, failing) == "fallback"
    assert policy.choose(60_000, NOW, signals()) == "default"  # default healthy: never fallback


def test_deadline_counts_breaker_and_slowness_as_bad_default():
    policy = Deadline(deadline_s=1)
    assert policy.choose(2_000, NOW, signals(open_default=True)) == "fallback"
    assert policy.choose(2_000, NOW, signals(default=(False, AUDIT_SAFE_MS + 1))) == "fallback"
    assert policy.choose(2_000, NOW, signals(default=(False, AUDIT_SAFE_MS))) == "default"


def test_deadline_never_uses_an_unusable_fallback():
    policy = Deadline(deadline_s=1)
    assert policy.choose(2_000, NOW, signals(default=(True, 0), fallback=(True, 0))) == "default"
    assert policy.choose(2_000, NOW, signals(default=(True, 0), open_fallback=True)) == "default"
    # audit-unsafe: the fallback's answers would come after the auditor's window closed
    assert policy.choose(2_000, NOW, signals(default=(True, 0), fallback=(False, 5000))) == "default"


def test_stale_health_is_ignored():
    policy = Deadline(deadline_s=1)
    stale = signals(default=(True, 0), age_ms=HEALTH_FRESH_MS + 1)
    assert policy.choose(2_000, NOW, stale) == "default"


def test_latency_rule():
    policy = Latency(gap_ms=250)
    assert policy.choose(0, NOW, signals(default=(False, 300), fallback=(False, 0))) == "fallback"
    assert policy.choose(0, NOW, signals(default=(False, 249), fallback=(False, 0))) == "default"
    assert policy.choose(0, NOW, signals(open_default=True)) == "fallback"
    assert policy.choose(0, NOW, signals(default=(False, 900), fallback=(True, 0))) == "default"
    assert policy.choose(0, NOW, Signals()) == "default"  # nothing known: the cheap one


def test_make_policy_names():
    assert make_policy("fee-first").name == "fee-first"
    assert make_policy("deadline", deadline_s=3).deadline_s == 3
    with pytest.raises(ValueError, match="fee-first"):
        make_policy("cheapest")


def test_breaker_opens_after_threshold_and_probes_at_growing_capped_intervals():
    breaker = Breaker(threshold=3, base=0.02, cap=0.25, rng=random.Random(1))
    assert breaker.wait_time(0.0) == 0
    assert not breaker.failure(0.0) and not breaker.failure(0.0)
    assert breaker.failure(0.0)  # third failure opens it
    assert breaker.wait_time(0.0) > 0
    intervals = []
    now = 0.0
    for _ in range(12):
        now += breaker.wait_time(now)
        assert breaker.wait_time(now) == 0  # the probe slot is taken...
        assert breaker.wait_time(now) > 0  # ...by exactly one caller
        breaker.failure(now)
        intervals.append(breaker.next_probe_at - now)
    assert intervals[-1] <= 0.25 * 1.2
    assert intervals[0] < intervals[4]
    assert breaker.success(now)  # any success closes it
    assert breaker.wait_time(now) == 0 and not breaker.is_open
