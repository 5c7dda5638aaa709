"""A steady stream of payments from a background thread, remembering every answer."""

from __future__ import annotations

import threading
import time
import uuid

import httpx


class PaymentStream:
    """Posts ``{"correlationId": uuid4, "amount": 19.90}`` at about ``rate`` per second.

    ``accepted`` holds the ids answered 2xx; ``failed`` the (id, status or error) of the others.
    """

    def __init__(self, url: str, rate: float = 100.0, amount: str = "19.90", transport: httpx.HTTPTransport | None = None):
        self.url = url.rstrip("/") + "/payments"
        self.rate = rate
        self.amount = amount
        self.transport = transport
        self.accepted: list[str] = []
        self.failed: list[tuple[str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "PaymentStream":
        self._thread.start()
        return self

    def stop(self) -> "PaymentStream":
        self._stop.set()
        self._thread.join(30)
        return self

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` payments have been answered (accepted or not)."""
        deadline = time.monotonic() + timeout
        while len(self.accepted) + len(self.failed) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.accepted) + len(self.failed)} of {count} payments answered")
            time.sleep(0.01)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        with httpx.Client(transport=self.transport, timeout=5.0) as client:
            while not self._stop.is_set():
                correlation_id = str(uuid.uuid4())
                body = '{"correlationId":"%s","amount":%s}' % (correlation_id, self.amount)
                try:
                    reply = client.post(self.url, content=body, headers={"Content-Type": "application/json"})
                    if 200 <= reply.status_code < 300:
                        self.accepted.append(correlation_id)
                    else:
                        self.failed.append((correlation_id, reply.status_code))
                except httpx.HTTPError as exc:
                    self.failed.append((correlation_id, repr(exc)))
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)
                else:
                    next_at = time.monotonic()
