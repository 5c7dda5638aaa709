"""Routing policies: which processor a payment's next attempt goes to. Pure objects, no I/O.

Whatever a policy says, the same-processor rule wins: a payment whose last attempt had an
unknown outcome goes back to that processor (the dispatcher enforces it before asking).
"""

from __future__ import annotations

from dataclasses import dataclass

from rinha.processor import DEFAULT


@dataclass(frozen=True)
class FeeFirst:
    """Default processor only: the cheapest fee; wait for it while it fails."""

    name: str = "fee-first"

    def choose(self, pinned: str | None) -> str:
        return DEFAULT


POLICIES = {"fee-first": FeeFirst}


def make_policy(name: str):
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of: {', '.join(POLICIES)}") from None
