"""Fixtures: real processors and real daemons, as processes on free ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import httpx
import pytest
from hypothesis import HealthCheck, settings

# The suite shares two cores with the processes it starts: input generation and examples may be
# slow at times, which says nothing about what a property test checks.
settings.register_profile("rinha", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rinha")

from tests.support.wait import wait_until
from tests.support.procs import Service, free_port, rinha_command

TOKEN = "123"


@pytest.fixture
def anyio_backend():
    """Async tests run on trio, the daemon's event loop."""
    return "trio"


@dataclass
class Processors:
    """The emulated processor pair and their admin API."""

    default_url: str
    fallback_url: str
    service: Service
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))  # keep-alive

    def url(self, name: str) -> str:
        return self.default_url if name == "default" else self.fallback_url

    def admin(self, name: str, method: str, path: str, **kwargs) -> httpx.Response:
        return self.client.request(method, self.url(name) + path, headers={"X-Rinha-Token": TOKEN}, **kwargs)

    def set(self, name: str, delay: int | None = None, failure: bool | None = None) -> None:
        if delay is not None:
            assert self.admin(name, "PUT", "/admin/configurations/delay", json={"delay": delay}).status_code == 200
        if failure is not None:
            assert self.admin(name, "PUT", "/admin/configurations/failure", json={"failure": failure}).status_code == 200

    def summary(self, name: str, from_: str | None = None, to: str | None = None) -> dict:
        params = {k: v for k, v in (("from", from_), ("to", to)) if v}
        reply = self.admin(name, "GET", "/admin/payments-summary", params=params)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def payment(self, name: str, correlation_id: str) -> dict | None:
        reply = self.client.get(f"{self.url(name)}/payments/{correlation_id}")
        return reply.json() if reply.status_code == 200 else None

    def in_flight(self, name: str) -> int:
        return self.admin(name, "GET", "/admin/in-flight").json()["payments"]

    def reset(self) -> None:
        """Healthy and empty. Payments still held in a delay (an earlier test's) land first."""
        for name in ("default", "fallback"):
            self.set(name, delay=0, failure=False)
        for name in ("default", "fallback"):
            wait_until(lambda: self.in_flight(name) == 0, timeout=30, what=f"{name}'s held payments to land")
            assert self.admin(name, "POST", "/admin/purge-payments").status_code == 200


@pytest.fixture(scope="session")
def processors_session():
    default_port, fallback_port = free_port(), free_port()
    service = Service(
        rinha_command("processors", "--host", "127.0.0.1", "--default-port", str(default_port),
                      "--fallback-port", str(fallback_port), "--token", TOKEN, "--rate-limit-seconds", "1"),
        ready_url=f"http://127.0.0.1:{fallback_port}/", name="processors",
    )
    service.start()
    service.wait_ready()
    # both must answer before any test runs
    Service(["default"], ready_url=f"http://127.0.0.1:{default_port}/").wait_ready()
    yield Processors(f"http://127.0.0.1:{default_port}", f"http://127.0.0.1:{fallback_port}", service)
    service.stop()


@pytest.fixture
def processors(processors_session) -> Processors:
    """The processor pair, purged and healthy (delay 0, no failure) for this test."""
    processors_session.reset()
    return processors_session


@dataclass
class Daemon:
    url: str
    db: str
    service: Service

    def summary(self, from_: str | None = None, to: str | None = None) -> dict:
        params = {k: v for k, v in (("from", from_), ("to", to)) if v}
        reply = httpx.get(self.url + "/payments-summary", params=params, timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def post(self, body: bytes | str, content_type: str = "application/json") -> httpx.Response:
        return httpx.post(self.url + "/payments", content=body, headers={"Content-Type": content_type}, timeout=10)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (started on first use; see tests/support/pg.py)."""
    from tests.support.pg import PostgresMissing, PostgresServer

    try:
        server = PostgresServer().start()
    except PostgresMissing as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def engine(request) -> str:
    """The store engine of this test: "sqlite" unless parametrised (``@both_engines``)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def db_url(engine, tmp_path, request) -> str:
    """A fresh, empty store for this test: a SQLite file path, or a new PostgreSQL database's URL."""
    if engine == "postgres":
        return request.getfixturevalue("postgres_server").create_database()
    return str(tmp_path / "rinha.db")


@pytest.fixture
def daemon_factory(db_url, processors) -> Callable[..., Daemon]:
    """Start `rinha serve` processes (stopped at the end of the test); ``db`` is shared by default."""
    started: list[Service] = []
    db = db_url

    def start(*extra: str, port: int | None = None, db_path: str | None = None) -> Daemon:
        port = port or free_port()
        service = Service(
            rinha_command("serve", "--listen", f"127.0.0.1:{port}", "--db", db_path or db,
                          "--default-url", processors.default_url, "--fallback-url", processors.fallback_url, *extra),
            ready_url=f"http://127.0.0.1:{port}/payments-summary", name="serve",
        )
        started.append(service)
        service.start()
        return Daemon(f"http://127.0.0.1:{port}", db_path or db, service)

    yield start
    for service in started:
        service.stop()
