"""Metrics in the Prometheus text format (version 0.0.4), hand-written and tiny.

The only metric fed on every payment is :data:`INTAKE_LATENCY`, a histogram with fixed
buckets: :meth:`Histogram.observe` is one bisect and two additions (well under a microsecond),
and :func:`timed` wraps ``Intake.accept`` with it (the store writer feeds another, on the rare
writes that cannot commit at once). Everything else is read when ``/metrics`` is scraped, from
counters the daemon keeps anyway and from the store (see ``rinha.daemon.control``).
"""

from __future__ import annotations

import functools
import math
from bisect import bisect_left
from time import perf_counter

#: Upper bounds (seconds) of the intake latency buckets: 100 µs to 2.5 s; +Inf is implicit.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Counts observations into fixed buckets (``le`` bounds, inclusive) plus a sum."""

    __slots__ = ("name", "help", "bounds", "counts", "sum")

    def __init__(self, name: str, help: str, bounds: tuple[float, ...] = LATENCY_BUCKETS):
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be strictly increasing")
        self.name = name
        self.help = help
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (None without observations)."""
        total = self.count
        if not total:
            return None
        rank, seen = q * total, 0
        for bound, count in zip((*self.bounds, math.inf), self.counts):
            seen += count
            if seen >= rank:
                return bound
        return math.inf

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines.append(f"{self.name}_sum {_number(self.sum)}")
        lines.append(f"{self.name}_count {cumulative}")
        return "\n".join(lines) + "\n"


#: Time spent in ``Intake.accept`` per ``POST /payments`` (parse, commit, answer), this process.
INTAKE_LATENCY = Histogram(
    "rinha_intake_latency_seconds",
    "Time to answer POST /payments, from parsing to the committed answer, in seconds.",
)


def timed(histogram: Histogram):
    """Decorate a coroutine function so that each call's duration is observed into ``histogram``."""

    def decorate(function):
        observe = histogram.observe

        @functools.wraps(function)
        async def measured(*args):
            started = perf_counter()
            try:
                return await function(*args)
            finally:
                observe(perf_counter() - started)

        return measured

    return decorate


def metric(name: str, kind: str, help: str, samples: list[tuple[dict[str, str], float]] | float | None) -> str:
    """One metric family: ``samples`` is a value, or (labels, value) pairs; None renders nothing."""
    if samples is None:
        return ""
    if not isinstance(samples, list):
        samples = [({}, samples)]
    lines = [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
        lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
