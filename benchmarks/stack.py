"""`rinha stack up --with-processors` on free ports for a benchmark, and the contest profile against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

from rinha.profiling import tools
from tests.support.procs import free_port, rinha_command

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LocalStack:
    port: int
    default_port: int
    fallback_port: int
    runtime: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def default_url(self) -> str:
        return f"http://127.0.0.1:{self.default_port}"

    @property
    def fallback_url(self) -> str:
        return f"http://127.0.0.1:{self.fallback_port}"

    def children(self, role: str | None = None) -> list[dict]:
        """The stack's processes (``stack.json``): name, role, pid, address."""
        children = json.loads((self.runtime / "stack.json").read_text())["children"]
        return [c for c in children if role is None or c["role"] == role]

    def run_contest(self, summary_path: Path, vus: int = 550, stage_seconds: int = 10) -> None:
        """``profiles/contest.js`` with k6 against this stack; its JSON summary to ``summary_path``."""
        k6 = self.start_contest(summary_path, vus, stage_seconds)
        if k6.wait():
            raise subprocess.CalledProcessError(k6.returncode, k6.args)

    def start_contest(self, summary_path: Path, vus: int = 550, stage_seconds: int = 10,
                      csv_path: Path | None = None) -> subprocess.Popen:
        """k6 started on ``profiles/contest.js``; with ``csv_path``, every request's metrics too."""
        out = ["--out", f"csv={csv_path}"] if csv_path else []
        return subprocess.Popen([tools.k6(), "run", "-q", "--no-usage-report", *out, str(ROOT / "profiles" / "contest.js")],
                                env={**os.environ, "TARGET": self.url, "DEFAULT_URL": self.default_url,
                                     "FALLBACK_URL": self.fallback_url, "MAX_REQUESTS": str(vus),
                                     "STAGE_SECONDS": str(stage_seconds), "SUMMARY_PATH": str(summary_path),
                                     "K6_CSV_TIME_FORMAT": "unix_milli"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def local_stack(db: str, topology: str = "split") -> Iterator[LocalStack]:
    """Start the stack (processors included) and wait until it answers through nginx; stop it after."""
    stack = LocalStack(free_port(), free_port(), free_port(), Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp")))
    proc = subprocess.Popen(
        rinha_command("stack", "up", "--with-processors", "--topology", topology, "--port", str(stack.port),
                      "--db", db, "--runtime-dir", str(stack.runtime), "--log-level", "warning",
                      "--default-url", stack.default_url, "--fallback-url", stack.fallback_url),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (stack.runtime / "stack.json").exists() and httpx.get(
                        stack.url + "/payments-summary", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"rinha stack up ({topology}) did not start")
            time.sleep(0.1)
        yield stack
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        shutil.rmtree(stack.runtime, ignore_errors=True)
