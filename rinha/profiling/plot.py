"""A PNG of one run over time: latency percentiles, accepted vs paid, and the daemon's queue.

Panels, sharing the time axis (seconds from the run's first point):

1. p50, p99 and max latency of each second (k6's expected responses, log scale);
2. payments accepted (k6) and paid (the daemon's control plane, or the backend's summary), cumulative;
3. pending payments, when the control plane was sampled.

matplotlib is an optional dependency (the ``profile`` extra): :func:`require` says so in one line
before a run starts rather than after it.
"""

from __future__ import annotations

from pathlib import Path

INSTALL_HINT = "pip install 'rinha[profile]'"


class PlotUnavailable(Exception):
    """matplotlib is missing; the message says how to get it."""


def require() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def write(path: Path, timeline: list[dict], samples: list[dict], title: str) -> Path:
    """Draw ``timeline`` (rows of Timeline.rows() with ``at``) and ``samples`` (the sampler's:
    ``at``, ``paid``, ``pending``) into a PNG at ``path``."""
    require()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    starts = [rows[0]["at"] for rows in (timeline, samples) if rows]
    t0 = min(starts) if starts else 0.0
    queue = [s for s in samples if s.get("pending") is not None]
    panels = 3 if queue else 2
    figure, axes = pyplot.subplots(panels, 1, sharex=True, figsize=(11, 3.2 * panels), constrained_layout=True)
    figure.suptitle(title)

    latency = axes[0]
    seconds = [row["at"] - t0 for row in timeline]
    for key, style in (("p50", "-"), ("p99", "-"), ("max", ":")):
        points = [(t, row[key]) for t, row in zip(seconds, timeline) if row[key] is not None]
        if points:
            latency.plot([t for t, _ in points], [max(v, 0.01) for _, v in points], style, label=key)
    latency.set_yscale("log")
    latency.set_ylabel("latency (ms)")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(loc="upper left")

    payments = axes[1]
    payments.plot(seconds, [row["accepted_total"] for row in timeline], label="accepted (k6)")
    paid = [s for s in samples if s.get("paid") is not None]
    if paid:
        payments.plot([s["at"] - t0 for s in paid], [s["paid"] for s in paid], label="paid (daemon)")
    payments.set_ylabel("payments")
    payments.grid(True, alpha=0.3)
    payments.legend(loc="upper left")

    if queue:
        pending = axes[2]
        pending.plot([s["at"] - t0 for s in queue], [s["pending"] for s in queue], color="tab:red", label="pending")
        pending.set_ylabel("queue depth")
        pending.grid(True, alpha=0.3)
        pending.legend(loc="upper left")
    axes[-1].set_xlabel("seconds")
    path = Path(path)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path
