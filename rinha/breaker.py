"""A circuit breaker per processor, fed by real outcomes. Pure: time is passed in.

* **closed**: every attempt may go. ``threshold`` consecutive failures open it.
* **open**: attempts wait; one *probe* may go per probe interval. The interval grows
  exponentially with the failures seen while open (``base`` × 2ⁿ, capped at ``cap``) with
  ±20 % jitter, so a dead processor is not hammered and a recovered one is noticed within
  about one interval. Probes do not wait for each other: a probe stuck in a processor's
  delay does not hide the recovery that the next probe would see.
* Any success closes it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Breaker:
    threshold: int = 5
    base: float = 0.02
    cap: float = 0.25
    rng: random.Random = field(default_factory=random.Random, repr=False)
    consecutive_failures: int = 0
    is_open: bool = False
    next_probe_at: float = 0.0
    opened_at: float = 0.0

    def wait_time(self, now: float) -> float:
        """0 if an attempt may go now (taking the probe slot when open), else seconds to wait."""
        if not self.is_open:
            return 0.0
        if now >= self.next_probe_at:
            self.next_probe_at = now + self._interval()
            return 0.0
        return self.next_probe_at - now

    def success(self, now: float) -> bool:
        """Record a success; True if this closed the breaker."""
        self.consecutive_failures = 0
        if self.is_open:
            self.is_open = False
            return True
        return False

    def failure(self, now: float) -> bool:
        """Record a failure; True if this opened the breaker."""
        self.consecutive_failures += 1
        if not self.is_open and self.consecutive_failures >= self.threshold:
            self.is_open = True
            self.opened_at = now
            self.next_probe_at = now + self._interval()
            return True
        return False

    def _interval(self) -> float:
        exponent = max(0, self.consecutive_failures - self.threshold)
        interval = min(self.cap, self.base * (2 ** min(exponent, 16)))
        return interval * self.rng.uniform(0.8, 1.2)
