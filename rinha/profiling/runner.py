"""One k6 run of a profile, as a subprocess, with a live view of its progress.

The profile's ``handleSummary`` writes the JSON summary to ``SUMMARY_PATH`` in a temporary
directory; k6's own output goes to ``k6.log`` beside it, whose last lines explain a failure.

The run costs the machine as little as it can besides k6's load, since the backend under test
shares its cores. While k6 runs, a sampler thread, once a second, reads k6's REST API for the live
view (:mod:`.progress`), and the daemon's control plane (``GET /status``: paid and pending
payments) when its socket answers, or, for ``--plot`` without one, the backend's ``GET
/payments-summary`` (paid only). Without a live view nor a plot there is no thread at all. Only a
plot needs k6's metric points (``--out json=``, ~12 per request): k6 streams them into a FIFO that
a reader thread feeds to :class:`~rinha.profiling.timeline.Timeline` (nothing reaches the disk).

The live view shows elapsed / planned time, the phase and processor stage, requests and payments,
the p95 and max so far, and the daemon's queue when known. On a terminal it is a rich ``Live``;
elsewhere (CI logs) a line every 10 s.

Ctrl-C stops the run the way k6 stops on one: teardown and the summary still happen (the
summary is then stored with the note ``interrupted``); a second Ctrl-C kills k6.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from rinha.profiling import progress
from rinha.profiling.timeline import USED_PREFIXES, Timeline
from rinha.score import load_summary

#: How often the view is refreshed and the sampler polls.
_REFRESH_S = 0.25
_SAMPLE_S = 1.0
_PLAIN_LINE_S = 10.0


class RunFailed(Exception):
    """The run could not be made or gave no summary; the message says why, in one line."""


class ProfileInvalid(RunFailed):
    """The profile does not load with these parameters (k6's or the script's own message)."""


@dataclass
class RunRequest:
    profile: str  #: its name
    script: Path
    target: str
    default_url: str
    fallback_url: str
    k6: str  #: the k6 binary
    vus: int | None = None  #: MAX_REQUESTS; None: the profile's default
    token: str = "123"  #: the processors' current admin token (PROCESSOR_TOKEN)
    env: dict[str, str] = field(default_factory=dict)  #: more profile parameters
    control: str | None = None  #: the daemon's control socket to sample (if it answers)
    sample_backend: bool = False  #: without a control plane, sample the backend's summary
    live: bool = True  #: show the live view (on stderr)
    timeline: bool = False  #: keep the per-second timeline (k6's point stream: only for a plot)


@dataclass
class RunResult:
    summary: dict | None  #: the profile's JSON summary, fractions as Decimal; None if none was written
    summary_text: str | None  #: the same, as k6 wrote it
    exit_code: int  #: k6's
    started_at_ms: int
    finished_at_ms: int
    planned_seconds: float | None
    interrupted: bool
    log_tail: list[str]  #: k6's last output lines
    timeline: list[dict]  #: per second, from Timeline.rows(); ``at`` is epoch seconds (empty unless asked)
    samples: list[dict]  #: {"at": epoch s, "paid", "pending" (None from the backend)}; empty without a view or plot
    sampled_from: str | None  #: "control", "backend" or None


def k6_command(request: RunRequest, summary_path: str, api: str, stream: str | None = None) -> list[str]:
    """The ``k6 run`` command line for a request: its summary file, its REST API's address, and the
    file for its metric points if any."""
    env = {"TARGET": request.target, "DEFAULT_URL": request.default_url, "FALLBACK_URL": request.fallback_url,
           "PROCESSOR_TOKEN": request.token, **request.env, "SUMMARY_PATH": summary_path}
    if request.vus is not None:
        env["MAX_REQUESTS"] = str(request.vus)
    command = [request.k6, "run", "--no-usage-report", "--quiet", "--no-color", "--address", api]
    if stream is not None:
        command += ["--out", f"json={stream}"]
    for key, value in env.items():
        command += ["-e", f"{key}={value}"]
    return command + [str(request.script)]


def check_target(target: str, timeout: float = 5.0) -> None:
    """:class:`RunFailed` unless the backend answers HTTP at all (any status will do)."""
    url = target.rstrip("/") + "/payments-summary"
    try:
        httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RunFailed(f"the backend does not answer at {url}: {type(exc).__name__} {exc}".rstrip()) from None


def planned_seconds(request: RunRequest) -> float:
    """How long the profile's scenarios last (``k6 inspect``); :class:`RunFailed` if the script
    does not load (a bad parameter: the script's own message)."""
    command = [request.k6, "inspect"]
    env_args = []
    for key, value in {"TARGET": request.target, **request.env,
                       **({"MAX_REQUESTS": str(request.vus)} if request.vus is not None else {})}.items():
        env_args += ["-e", f"{key}={value}"]
    try:
        done = subprocess.run(command + env_args + [str(request.script)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunFailed(f"cannot run {request.k6} inspect: {exc}") from None
    if done.returncode != 0:
        raise ProfileInvalid(f"profile {request.profile} does not load: {k6_error(done.stderr or done.stdout)}")
    try:
        scenarios = json.loads(done.stdout).get("scenarios") or {}
    except ValueError:
        raise RunFailed(f"k6 inspect gave no JSON for {request.script}") from None
    return max((_scenario_seconds(s) for s in scenarios.values()), default=0.0)


def run(request: RunRequest, console: Console | None = None, planned: float | None = None) -> RunResult:
    """Run k6 to its end; the live view on ``console`` (stderr by default) unless ``request.live``
    is false. ``planned``: :func:`planned_seconds`, if already known. Raises :class:`RunFailed`
    when k6 cannot start."""
    console = console or Console(stderr=True)
    if planned is None:
        planned = planned_seconds(request)
    workdir = Path(tempfile.mkdtemp(prefix="rinha-profile-"))
    try:
        return _run(request, console, planned, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(request: RunRequest, console: Console, planned: float, workdir: Path) -> RunResult:
    summary_path, log_path = workdir / "summary.json", workdir / "k6.log"
    stream, reader, timeline = None, None, Timeline()
    if request.timeline:
        stream = workdir / "points.fifo"
        os.mkfifo(stream)
        reader = threading.Thread(target=_read_stream, args=(stream, timeline), name="k6-stream", daemon=True)
        reader.start()
    api = progress.free_address()
    sampler = _Sampler(request, api)
    command = k6_command(request, str(summary_path), api, None if stream is None else str(stream))
    started_at_ms = int(time.time() * 1000)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            if reader is not None:
                _release_reader(stream, reader)
            raise RunFailed(f"cannot start k6 ({request.k6}): {exc}") from None
    sampler.start()
    interrupted = False
    view = _View(request, planned, sampler, started, console)
    try:
        interrupted = view.follow(proc)
    finally:
        if proc.poll() is None:  # an exception in the view: do not leave k6 behind
            proc.kill()
            proc.wait()
        sampler.stop()
        if reader is not None:
            _release_reader(stream, reader)
    finished_at_ms = int(time.time() * 1000)
    summary, summary_text = None, None
    if summary_path.is_file():
        summary_text = summary_path.read_text(encoding="utf-8")
        try:
            summary = load_summary(summary_path)
        except ValueError:
            summary, summary_text = None, None
    rows = timeline.rows()
    for row in rows:
        row["at"] = (timeline.start_s or 0) + row["t"]
    samples = sampler.samples
    if timeline.load_start_s is not None:  # before the load, the store still held the previous run (setup purges it)
        samples = [sample for sample in samples if sample["at"] >= timeline.load_start_s]
    return RunResult(
        summary=summary, summary_text=summary_text, exit_code=proc.returncode, started_at_ms=started_at_ms,
        finished_at_ms=finished_at_ms, planned_seconds=planned, interrupted=interrupted,
        log_tail=_tail(log_path), timeline=rows, samples=samples, sampled_from=sampler.source,
    )


def _read_stream(stream: Path, timeline: Timeline) -> None:
    # Opening a FIFO for reading waits for its writer (k6, or _release_reader if k6 never opens it).
    # The timeline is read only after this thread has ended.
    with open(stream, "rb", buffering=1 << 20) as points:
        for line in points:
            if line.startswith(USED_PREFIXES):
                timeline.feed(line.decode("utf-8", "replace"))


def _release_reader(stream: Path, reader: threading.Thread) -> None:
    """Let the reader finish: it has the rest of the stream, or is still waiting for a writer
    (k6 failed before opening the FIFO), which this open-and-close provides."""
    reader.join(timeout=2)
    if reader.is_alive():
        try:
            fd = os.open(stream, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
        reader.join(timeout=10)


class _Sampler:
    """Once a second, in a thread: k6's progress (for the live view) and the daemon's control plane
    (or the backend's summary). Not started when nothing would show or keep what it reads."""

    def __init__(self, request: RunRequest, api: str):
        self.request, self.api = request, api
        self.samples: list[dict] = []
        self.source: str | None = None
        self.latest: dict | None = None
        self.progress: progress.Progress | None = None  #: the latest k6 answered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rinha-sampler", daemon=True)

    def start(self) -> None:
        if self.request.live or self.request.timeline:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        control = self.request.control if self.request.control and os.path.exists(self.request.control) else None
        clients = []
        if control:
            clients.append(("control", httpx.Client(transport=httpx.HTTPTransport(uds=control),
                                                    base_url="http://rinha-control", timeout=2)))
        if self.request.sample_backend:
            clients.append(("backend", httpx.Client(base_url=self.request.target.rstrip("/"), timeout=2)))
        k6 = httpx.Client(base_url=f"http://{self.api}", timeout=2) if self.request.live else None
        try:
            while not self._stop.is_set():
                if k6 is not None:
                    self.progress = progress.read(k6) or self.progress
                for source, client in clients:
                    sample = self._sample(source, client)
                    if sample is not None:
                        self.source = self.source or source
                        if source == self.source:
                            self.samples.append(sample)
                            self.latest = sample
                            break
                self._stop.wait(_SAMPLE_S)
        finally:
            for client in [client for _, client in clients] + ([k6] if k6 is not None else []):
                client.close()

    @staticmethod
    def _sample(source: str, client: httpx.Client) -> dict | None:
        try:
            if source == "control":
                status = client.get("/status").json()
                queue = status.get("queue") or {}
                return {"at": time.time(), "paid": queue.get("paid"), "pending": queue.get("pending"),
                        "pid": status.get("pid")}
            summary = client.get("/payments-summary").json()
            paid = sum(int(summary[name]["totalRequests"]) for name in ("default", "fallback"))
            return {"at": time.time(), "paid": paid, "pending": None}
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            return None


class _View:
    """The live view, refreshed until k6 exits; returns whether the run was interrupted."""

    def __init__(self, request, planned, sampler, started, console: Console):
        self.request, self.planned, self.sampler, self.started, self.console = request, planned, sampler, started, console

    def follow(self, proc: subprocess.Popen) -> bool:
        interrupted = False
        if not self.request.live:
            return self._wait(proc)
        if self.console.is_terminal:
            with Live(self._render(), console=self.console, refresh_per_second=4, transient=False) as live:
                while True:
                    try:
                        while proc.poll() is None:
                            live.update(self._render())
                            time.sleep(_REFRESH_S)
                        break
                    except KeyboardInterrupt:
                        interrupted = self._interrupt(proc, interrupted)
                live.update(self._render(done=True))
            return interrupted
        last = 0.0
        while True:
            try:
                while proc.poll() is None:
                    elapsed = time.monotonic() - self.started
                    if elapsed - last >= _PLAIN_LINE_S:
                        last = elapsed
                        self.console.print(self._line(), markup=False, highlight=False, soft_wrap=True)
                    time.sleep(_REFRESH_S)
                break
            except KeyboardInterrupt:
                interrupted = self._interrupt(proc, interrupted)
        self.console.print(self._line(), markup=False, highlight=False, soft_wrap=True)
        return interrupted

    def _wait(self, proc: subprocess.Popen) -> bool:
        interrupted = False
        while True:
            try:
                proc.wait()
                return interrupted
            except KeyboardInterrupt:
                interrupted = self._interrupt(proc, interrupted)

    def _interrupt(self, proc: subprocess.Popen, already: bool) -> bool:
        if proc.poll() is None:
            if already:
                proc.kill()
            else:
                proc.send_signal(signal.SIGINT)
                self.console.print("interrupted: k6 is stopping (teardown and summary); Ctrl-C again to kill it",
                                   markup=False, highlight=False)
        return True

    def _line(self) -> str:
        f = self.sampler.progress or progress.Progress()
        elapsed = time.monotonic() - self.started
        text = (f"{elapsed:6.1f} s / {self.planned:.0f} s  {f.phase}  stage {f.stage}  "
                f"requests {f.requests}  accepted {f.accepted}  rejected {f.rejected}  "
                f"p95 {_ms(f.p95)}  max {_ms(f.max)}")
        daemon = self.sampler.latest
        if daemon and daemon.get("pending") is not None and daemon.get("paid") is not None:
            text += f"  pending {daemon['pending']}  paid {daemon['paid']}"
        return text

    def _render(self, done: bool = False):
        f = self.sampler.progress or progress.Progress()
        elapsed = time.monotonic() - self.started
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        bar = ProgressBar(total=max(self.planned, 1.0), completed=min(elapsed, self.planned), width=40)
        grid.add_row("elapsed", Group(Text(f"{elapsed:.1f} s of {self.planned:.0f} s planned"
                                           + (" (done)" if done else "")), bar))
        grid.add_row("phase", f"{f.phase} · processor stage {f.stage}")
        grid.add_row("requests", f"{f.requests:,}")
        grid.add_row("payments", f"{f.accepted:,} accepted, {f.rejected:,} rejected")
        grid.add_row("latency", f"p95 {_ms(f.p95)}, max {_ms(f.max)} (so far; p99 in the summary)")
        daemon = self.sampler.latest
        if daemon is not None and daemon.get("paid") is not None:
            queue = f"{daemon['paid']:,} paid" + ("" if daemon.get("pending") is None else f", {daemon['pending']:,} pending")
            grid.add_row("daemon", queue + f" ({self.sampler.source})")
        title = f"rinha profile run {self.request.profile} → {self.request.target}"
        table = Table(title=title, show_header=False, box=None)
        table.add_row(grid)
        return table


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_S = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _duration_s(text: str | None) -> float:
    if not text:
        return 0.0
    return sum(float(number) * _UNIT_S[unit] for number, unit in _DURATION.findall(str(text)))


def _scenario_seconds(scenario: dict) -> float:
    """The planned length of one scenario of ``k6 inspect`` (its start time included)."""
    start = _duration_s(scenario.get("startTime"))
    if scenario.get("stages"):
        return start + sum(_duration_s(stage.get("duration")) for stage in scenario["stages"])
    if scenario.get("duration"):
        return start + _duration_s(scenario["duration"])
    return start


def k6_error(output: str) -> str:
    """The line of k6's output that says what went wrong (its message, without a JS stack trace)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if "level=error" in line or "Error" in line or "error" in line:
            match = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
            message = (match.group(1) if match else line).replace('\\"', '"')
            message = message.split("\\n")[0].strip()  # the first line, not the JS stack trace
            cause = re.search(r' error="((?:[^"\\]|\\.)*)"', line) if match else None
            if cause:  # k6's own errors put the reason in a field of its own
                message += ": " + cause.group(1).replace('\\"', '"')
            return message.removeprefix("Error: ")[:300]
    return lines[-1][:300] if lines else "no output"


def _tail(path: Path, count: int = 20) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-count:]
    except OSError:
        return []
