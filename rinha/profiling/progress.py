"""A run's progress while it goes, from k6's REST API (``k6 run --address HOST:PORT``).

The live view reads it once a second: k6's execution status gives the phase; its counters the
requests and payments so far and the processor stages applied (``contest_processor_stages``,
counted by ``profiles/lib/harness.js``); the trend of expected responses' ``http_req_duration``
the p95 and max so far. k6's API gives p90 and p95 over the whole run, not p99 nor the last
seconds: the run's p99 is in its summary at the end.

Unlike k6's JSON output stream (:mod:`.timeline`, which ``--plot`` still needs), nothing here grows
with the request count: a handful of small requests a second, each answered from k6's own sinks.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import quote

import httpx

#: k6's execution status (``lib.ExecutionStatus``) -> the phase the view shows; before 6, "starting".
_PHASES = {6: "setup", 7: "load", 8: "teardown", 9: "done", 10: "interrupted"}
#: The metrics read, each by its id (``/v1/metrics/{id}``: k6 computes that one metric's figures).
METRICS = {
    "requests": "http_reqs",
    "accepted": "contest_payments_accepted",
    "rejected": "contest_payments_rejected",
    "stages": "contest_processor_stages",
    "latency": "http_req_duration{expected_response:true}",
}


@dataclass(frozen=True)
class Progress:
    phase: str = "starting"  #: starting | setup | load | teardown | done | interrupted
    stage: int = 0  #: processor stages applied so far
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    p95: float | None = None  #: ms, expected responses, since the start
    max: float | None = None  #: ms, expected responses, since the start


def from_api(status: dict, metrics: dict[str, dict | None]) -> Progress:
    """The progress in k6's answers: ``status`` is ``GET /v1/status``'s document, ``metrics`` the
    ``GET /v1/metrics/{id}`` documents by :data:`METRICS` key (None: k6 has no such metric yet,
    as a counter nothing has added to)."""
    code = status["data"]["attributes"]["status"]

    def sample(key: str) -> dict:
        document = metrics.get(key)
        return document["data"]["attributes"]["sample"] if document else {}

    def count(key: str) -> int:
        return int(sample(key).get("count", 0))

    latency = sample("latency")
    return Progress(
        phase=_PHASES.get(code, "starting"),
        stage=count("stages"),
        requests=count("requests"), accepted=count("accepted"), rejected=count("rejected"),
        p95=latency.get("p(95)"), max=latency.get("max"),
    )


def read(client: httpx.Client) -> Progress | None:
    """The progress now (``client``'s base URL is k6's API); None if k6 does not answer (not up
    yet, or gone) or answers something else."""
    try:
        status = client.get("/v1/status")
        status.raise_for_status()
        metrics = {}
        for key, metric_id in METRICS.items():
            answer = client.get("/v1/metrics/" + quote(metric_id, safe=""))
            metrics[key] = answer.json() if answer.status_code == 200 else None
        return from_api(status.json(), metrics)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def free_address(host: str = "127.0.0.1") -> str:
    """``host:port`` with a port free now, for k6's API (its default, 6565, would make two runs at
    once collide: k6 exits with code 106 when its API cannot listen)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return f"{host}:{probe.getsockname()[1]}"
