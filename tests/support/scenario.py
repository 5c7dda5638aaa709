"""The contest's scenario pieces for tests: processor stages, the auditor's check, settling."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from rinha.clock import parse_instant_us
from tests.support.engines import query
from tests.support.wait import wait_until

#: The contest's six processor stages: (default delay, default failing, fallback delay, fallback failing).
CONTEST_STAGES = [
    (0, False, 0, False),
    (100, False, 0, False),
    (100, True, 0, False),
    (2000, True, 1000, True),
    (20, False, 20, False),
    (0, False, 5000, False),
]
#: The contest holds each stage for 10 s; the tests for 3 s. Not less: a processor that goes to a
#: 2 s delay and recovers within 2.5 s files the first requests it held before anyone could
#: learn its new delay (see rinha.policy.stamp_lead_ms).
STAGE_SECONDS = 3.0


def iso(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def audit(daemon, processors) -> tuple[int, int, tuple[str, str]]:
    """The contest's audit: totalRequests over [now-15 s, now-1.5 s], ours and the processors' (both
    summed), and the window."""
    now = datetime.now(timezone.utc)
    window = (iso(now - timedelta(seconds=15)), iso(now - timedelta(seconds=1.5)))
    ours = daemon.summary(*window)
    theirs = sum(processors.summary(name, *window)["totalRequests"] for name in ("default", "fallback"))
    return ours["default"]["totalRequests"] + ours["fallback"]["totalRequests"], theirs, window


def worst_filing_delay(daemon) -> tuple[int, str, str]:
    """The paid payment recorded longest after its ``requestedAt`` (ms, id, processor). Above the
    audit's 1.5 s margin an audit may count it at the processor and not here: the race that
    :func:`audit` catches only when it happens to read at that moment."""
    return max(query(daemon.db, "SELECT paid_at_ms - requested_at_us / 1000, correlation_id, processor "
                                "FROM payments WHERE state = 'paid'"))


def explain(daemon, processors, window: tuple[str, str]) -> list:
    """The payments one side counts in ``window`` and the other does not, each with our row and
    attempts (as read now, just after the audit that disagreed): what a failed audit needs to say.
    Only payments this store has a row for are looked up (the processors cannot list theirs)."""
    low, high = (parse_instant_us(bound) for bound in window)

    def inside(stamp: str | None) -> bool:  # ours ends in Z; a processor's does not, and has 7 digits
        return stamp is not None and low <= parse_instant_us(stamp) <= high

    rows = query(daemon.db, "SELECT correlation_id, state, processor, requested_at, accepted_at_ms, paid_at_ms "
                            "FROM payments")
    differing = []
    for cid, state, processor, requested_at, *times in rows:
        held = {name: processors.payment(name, cid) for name in ("default", "fallback")}
        theirs = [name for name, found in held.items() if found and inside(found["requestedAt"])]
        ours = [processor] if state == "paid" and inside(requested_at) else []
        if ours != theirs:
            attempts = query(daemon.db, "SELECT processor, requested_at, outcome, status, latency_ms, at_ms "
                                        "FROM attempts WHERE correlation_id = ? ORDER BY id", cid)
            differing.append({"id": cid, "ours": (state, processor, requested_at, *times),
                              "theirs": {n: f and f["requestedAt"] for n, f in held.items()}, "attempts": attempts})
    return differing


def run_stages(daemon, processors, stages=CONTEST_STAGES, seconds: float = STAGE_SECONDS) -> list:
    """Apply each stage for ``seconds``, auditing twice a second; returns the audits that disagreed."""
    mismatches = []
    for stage in stages:
        default_delay, default_failing, fallback_delay, fallback_failing = stage
        processors.set("default", delay=default_delay, failure=default_failing)
        processors.set("fallback", delay=fallback_delay, failure=fallback_failing)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ours, theirs, window = audit(daemon, processors)
            if ours != theirs:
                mismatches.append((stage, ours, theirs, window, explain(daemon, processors, window)))
            time.sleep(0.5)
    return mismatches


def settle(daemon, processors, accepted: list[str], maybe_accepted: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    """Wait until every accepted payment is recorded, then check that each is held by exactly one
    processor (the one the daemon recorded), that nothing else was paid but what a client may have
    sent without seeing the answer, and that the summaries agree to the cent. Returns ids by processor."""
    wait_until(lambda: sum(side["totalRequests"] for side in daemon.summary().values()) >= len(accepted),
               timeout=60, what=f"{len(accepted)} payments recorded")
    recorded = dict(query(daemon.db, "SELECT correlation_id, processor FROM payments WHERE state = 'paid'"))
    by_processor: dict[str, set[str]] = {"default": set(), "fallback": set()}
    for cid in accepted:
        held = [name for name in ("default", "fallback") if processors.payment(name, cid) is not None]
        assert held == [recorded.get(cid)], (cid, held, recorded.get(cid))
        by_processor[held[0]].add(cid)
    unexpected = set(recorded) - set(accepted) - set(maybe_accepted)
    assert unexpected == set(), f"paid but never sent: {sorted(unexpected)[:5]}"

    def agree() -> bool:
        ours = daemon.summary()
        return all(ours[name]["totalRequests"] == processors.summary(name)["totalRequests"] for name in by_processor)

    # payments a client sent without seeing the answer may still be settling (adopted after a lease)
    try:
        wait_until(agree, timeout=30, what="summaries agree")
    except AssertionError:
        rows = {cid: rest for cid, *rest in query(
            daemon.db, "SELECT correlation_id, state, processor, owner, lease_until_ms, attempts FROM payments")}
        differing = {cid: (rows.get(cid), [n for n in ("default", "fallback") if processors.payment(n, cid)])
                     for cid in set(maybe_accepted) | set(accepted)
                     if (rows.get(cid) or [None])[0] != "paid" and any(processors.payment(n, cid) for n in by_processor)}
        theirs = {name: processors.summary(name) for name in by_processor}
        held = sum(1 for cid in set(maybe_accepted) | set(accepted) if processors.payment("default", cid))
        raise AssertionError(f"summaries disagree: ours {daemon.summary()}, theirs {theirs}; of the ids a client "
                             f"sent, default holds {held}; held but not recorded: {differing}")
    ours = daemon.summary()
    for name in ("default", "fallback"):
        theirs = processors.summary(name)
        assert ours[name]["totalRequests"] == theirs["totalRequests"]
        assert round(ours[name]["totalAmount"] * 100) == round(float(theirs["totalAmount"]) * 100)
    return by_processor
