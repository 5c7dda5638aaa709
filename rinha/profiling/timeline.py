"""The per-second timeline of a run, from k6's JSON output stream (``k6 run --out json=FILE``).

Only ``rinha profile run --plot`` asks k6 for the stream: at 1,100 VUs it is ~400,000 lines
(~110 MB) that k6 encodes and a reader thread parses, on the cores the backend under test uses.
The live view reads k6's REST API instead (:mod:`.progress`).

:class:`Timeline` is fed the stream's lines (one JSON object each) and keeps, per second,
requests, payments accepted and rejected, and the latencies of the expected responses; and when
the load began (after setup). It does no I/O and is not thread-safe: the runner feeds it from one
thread and reads it after the run.

Only the few metrics it uses are parsed (a cheap prefix test skips the rest: k6 writes ~12 points
per request). Latencies are k6's ``http_req_duration`` of expected responses (2xx/3xx), the
population the contest's p99 is taken over; percentiles interpolate linearly, as k6's do.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

_DURATION = '{"metric":"http_req_duration",'
_REQS = '{"metric":"http_reqs",'
_ACCEPTED = '{"metric":"contest_payments_accepted",'
_REJECTED = '{"metric":"contest_payments_rejected",'
#: The lines :meth:`Timeline.feed` uses, as bytes: a reader may skip the others undecoded (k6
#: writes ~12 points per request: 400,000 lines, ~110 MB, at 1,100 VUs; decoding each (and, then,
#: a lock per line) took 0.62 CPU-s of the cores the backend under test uses, skipping them 0.45).
USED_PREFIXES = tuple(prefix.encode() for prefix in (_DURATION, _REQS, _ACCEPTED, _REJECTED))


def percentile(sorted_values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (0–100) of sorted values, interpolated linearly as k6 does."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class Second:
    """One second of the run (by k6's clock, counted from its first point)."""

    latencies: list[float] = field(default_factory=list)  #: ms, expected responses
    requests: int = 0
    accepted: int = 0
    rejected: int = 0


@dataclass
class Timeline:
    phase: str = "starting"  #: starting | setup | load | teardown
    seconds: dict[int, Second] = field(default_factory=dict)
    start_s: float | None = None  #: k6's clock (epoch seconds) at its first point
    load_start_s: float | None = None  #: k6's clock at the first point of a scenario (after setup)
    malformed: int = 0
    _last_at: float | None = None

    def feed(self, line: str) -> None:
        """One line of the stream."""
        if line.startswith(_DURATION):
            kind = "duration"
        elif line.startswith(_REQS):
            kind = "reqs"
        elif line.startswith(_ACCEPTED):
            kind = "accepted"
        elif line.startswith(_REJECTED):
            kind = "rejected"
        else:
            return
        try:
            point = json.loads(line)["data"]
            tags = point.get("tags") or {}
            second = self._second(point["time"])
        except (ValueError, KeyError, TypeError):
            self.malformed += 1
            return
        self._phase(tags)
        if kind == "duration":
            if tags.get("expected_response") == "true":
                second.latencies.append(float(point["value"]))
        elif kind == "reqs":
            second.requests += 1
        elif kind == "accepted":
            second.accepted += 1
        else:
            second.rejected += 1

    def rows(self) -> list[dict]:
        """Per second from the first point: t (s), requests, accepted and rejected (in that second
        and cumulative), p50/p99/max latency (ms, None without responses)."""
        rows, accepted, rejected = [], 0, 0
        if not self.seconds:
            return rows
        for t in range(0, max(self.seconds) + 1):
            second = self.seconds.get(t, Second())
            values = sorted(second.latencies)
            accepted += second.accepted
            rejected += second.rejected
            rows.append({
                "t": t, "requests": second.requests, "accepted": second.accepted,
                "accepted_total": accepted, "rejected_total": rejected,
                "p50": percentile(values, 50), "p99": percentile(values, 99), "max": values[-1] if values else None,
            })
        return rows

    def _second(self, time_text: str) -> Second:
        at = self._last_at = _epoch_seconds(time_text)
        if self.start_s is None:
            self.start_s = math.floor(at)
        index = max(int(at - self.start_s), 0)
        second = self.seconds.get(index)
        if second is None:
            second = self.seconds[index] = Second()
        return second

    def _phase(self, tags: dict) -> None:
        group = tags.get("group", "")
        if group == "::teardown":
            self.phase = "teardown"
        elif group == "::setup":
            self.phase = "setup"
        elif tags.get("scenario") and self.phase in ("starting", "setup"):
            self.phase = "load"
            self.load_start_s = self._last_at


_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _epoch_seconds(text: str) -> float:
    """k6's RFC 3339 time with nanoseconds (``2026-11-26T01:02:09.27101508Z``, or a local offset
    such as ``+02:00``) as epoch seconds."""
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, fraction, zone = match.groups()
    whole = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    return whole + (float(fraction) if fraction else 0.0)
