"""Real processes under test: start, wait until they answer, stop, kill.

Readiness is awaited by polling the service's own socket (an event, not a guess at a delay):
``start()`` returns once an HTTP request to ``ready_url`` gets any answer.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rinha_command(*args: str) -> list[str]:
    """The `rinha` console script, run by this interpreter (works without the venv on PATH)."""
    return [sys.executable, "-m", "rinha.cli", *args]


class Service:
    """One real process; its combined output goes to a temporary log file (``log_text()``)."""

    def __init__(self, args: list[str], ready_url: str | None = None, env: dict[str, str] | None = None,
                 name: str = "", ready_unix: str | None = None, cwd: str | None = None):
        self.args = args
        self.ready_url = ready_url
        self.ready_unix = ready_unix
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.name = name or Path(args[0]).name
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        fd, self.log_path = tempfile.mkstemp(prefix=f"rinha-test-{self.name}-", suffix=".log")
        os.close(fd)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> "Service":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, start_new_session=True)
        log.close()
        if self.ready_url or self.ready_unix:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        transport = httpx.HTTPTransport(uds=self.ready_unix) if self.ready_unix else None
        url = self.ready_url or "http://localhost/"
        with httpx.Client(transport=transport, timeout=1.0) as client:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()}")
                try:
                    client.get(url)
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.log_text()}")
                    time.sleep(0.02)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then wait; SIGKILL the whole session after ``timeout``. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the process and anything it started."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def log_text(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def __enter__(self) -> "Service":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
